//! Capture storage: pcapng with interfaces, directions and drop statistics; rotation by size,
//! by time and into a ring; zstd; crash safety (kill -9, a full disk); file safety (no
//! overwriting, no symbolic links); privilege drop. The oracles are tshark, capinfos, tcpdump
//! and zstd reading tap's files, plus a block reader for what they do not show.

use std::{path::Path, process::Command, time::Duration};

use tap_tests::{
    TempDir, Topology,
    bpf::assert_nothing_attached,
    oracle::{Tcpdump, capinfos, tcpdump_read, tshark_fields},
    pcap::Pcap,
    process::Background,
    storage_util::{
        ISB_FILTERACCEPT, ISB_IFDROP, ISB_IFRECV, ISB_OSDROP, ISB_USRDELIV, Pcapng, Tmpfs,
        list_dir, owner, uid_of, zstd_decompress, zstd_decompress_prefix,
    },
    tap::Capture,
    tap::{self, Summary},
    topology::{B_V4, SECOND},
    traffic, wait_until,
};

fn arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Starts tap in `b` on `b`'s end with `args`, runs `traffic`, stops tap and parses its summary.
fn capture(t: &Topology, args: &[&str], traffic: impl FnOnce()) -> Summary {
    let tap = tap::start(&t.b, &[&["-i", t.b_if.as_str()][..], args].concat());
    traffic();
    Summary::parse(&tap::stop(tap).stderr)
}

/// `count` pings of `size` payload bytes from `a` to `b`.
fn pings(t: &Topology, count: u32, size: u32) {
    traffic::ping(&t.a, B_V4, count, &["-s", &size.to_string()]);
}

fn uname_r() -> String {
    String::from_utf8(Command::new("uname").arg("-r").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn pcapng_names_interfaces_hooks_and_directions() {
    let t = Topology::new();
    let dir = TempDir::new();
    let file = dir.join("cap.pcapng");
    let tcpdump = Tcpdump::start(&t.b, &t.b_if, dir.join("tcpdump.pcap"), &[]);
    let summary = capture(&t, &["-w", &arg(&file), "-f", "icmp"], || {
        pings(&t, 4, 56);
        wait_until(
            "tcpdump to write 8 packets",
            Duration::from_secs(10),
            || (tcpdump.records() >= 8).then_some(()),
        );
    });
    let oracle = tcpdump.stop();
    assert_eq!(summary.captured, 8);

    // tshark: interface, hook and direction of each packet.
    let rows = tshark_fields(
        &file,
        &[
            "frame.interface_name",
            "frame.interface_description",
            "frame.packet_flags_direction",
            "icmp.type",
        ],
    );
    let inbound = ["veth-b", "veth-b (tc-ingress)", "0x00000001", "8"];
    let outbound = ["veth-b", "veth-b (tc-egress)", "0x00000002", "0"];
    assert_eq!(rows.len(), 8, "{rows:?}");
    assert_eq!(
        rows.iter().filter(|r| *r == &inbound).count(),
        4,
        "{rows:?}"
    );
    assert_eq!(
        rows.iter().filter(|r| *r == &outbound).count(),
        4,
        "{rows:?}"
    );

    // capinfos: the section says where the file comes from; both interfaces carry the filter.
    let info = capinfos(&file);
    for line in [
        "Number of interfaces in file: 2",
        "Capture application: tap ",
        &format!("Capture oper-sys:    Linux {}", uname_r()),
        "Description = veth-b (tc-ingress)",
        "Description = veth-b (tc-egress)",
        "Filter string = icmp",
        "Time precision = nanoseconds (9)",
    ] {
        assert!(info.contains(line), "capinfos lacks {line:?}:\n{info}");
    }

    // The bytes are tcpdump's, packet for packet.
    let ng = Pcapng::read(&file);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        ng.section.get(&2).map(String::as_str),
        Some(hostname.trim())
    );
    assert!(
        ng.interfaces
            .iter()
            .all(|i| i.tsresol == Some(9) && i.linktype == 1 && i.snaplen > 0)
    );
    let mut ours: Vec<(u32, Vec<u8>)> = ng
        .packets
        .iter()
        .map(|p| (p.orig_len, p.data.clone()))
        .collect();
    let mut theirs: Vec<(u32, Vec<u8>)> = oracle
        .records
        .iter()
        .map(|r| (r.orig_len, r.data.clone()))
        .collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs, "packet bytes differ from tcpdump's");
    // Timestamps agree with tcpdump's within 5 ms.
    let mut ts: Vec<u64> = ng.packets.iter().map(|p| p.ts).collect();
    ts.sort_unstable();
    let mut ots: Vec<u128> = (0..oracle.records.len()).map(|i| oracle.ts_ns(i)).collect();
    ots.sort_unstable();
    for (a, b) in ts.iter().zip(&ots) {
        assert!(
            (i128::from(*a) - *b as i128).abs() < 5_000_000,
            "timestamps {a} and {b}"
        );
    }

    // Statistics at the end, per interface and hook: what the program saw and the filter
    // selected, what was lost, what was written; the selections add up to the summary's.
    assert_eq!(ng.stat(0, ISB_USRDELIV), Some(4));
    assert_eq!(ng.stat(1, ISB_USRDELIV), Some(4));
    assert_eq!(ng.stat(0, ISB_IFDROP), Some(0));
    assert_eq!(ng.stat(0, ISB_OSDROP), Some(0));
    assert_eq!(
        (ng.stat(0, ISB_FILTERACCEPT), ng.stat(1, ISB_FILTERACCEPT)),
        (Some(4), Some(4)),
        "the echo requests in, the replies out"
    );
    assert_eq!(
        ng.stat(0, ISB_FILTERACCEPT).unwrap() + ng.stat(1, ISB_FILTERACCEPT).unwrap(),
        summary.received
    );
    assert!(ng.stat(0, ISB_IFRECV) >= Some(4) && ng.stat(1, ISB_IFRECV) >= Some(4));
    assert_eq!(
        ng.stat(1, ISB_IFDROP),
        Some(0),
        "each interface and hook has counters of its own"
    );
}

#[test]
fn pcapng_two_interfaces_and_xdp() {
    let t = Topology::new();
    t.add_link("veth2-a", "veth2-b", &SECOND);
    let dir = TempDir::new();
    let file = dir.join("two.pcapng");
    let summary = capture(
        &t,
        &["-i", "veth2-b", "--hook", "xdp", "-w", &arg(&file)],
        || {
            traffic::ping(&t.a, B_V4, 2, &[]);
            traffic::ping(&t.a, SECOND.b_v4, 3, &[]);
        },
    );
    assert_eq!(summary.captured, 5);
    let rows = tshark_fields(
        &file,
        &[
            "frame.interface_id",
            "frame.interface_description",
            "frame.packet_flags_direction",
        ],
    );
    let count = |id: &str, desc: &str| {
        rows.iter()
            .filter(|r| r[0] == id && r[1] == desc && r[2] == "0x00000001")
            .count()
    };
    assert_eq!(
        (count("0", "veth-b (xdp)"), count("1", "veth2-b (xdp)")),
        (2, 3),
        "{rows:?}"
    );
    let info = capinfos(&file);
    assert!(info.contains("Number of interfaces in file: 2"), "{info}");
    let ng = Pcapng::read(&file);
    assert_eq!(
        ng.interfaces
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>(),
        ["veth-b", "veth2-b"]
    );
    assert_eq!(
        (ng.stat(0, ISB_USRDELIV), ng.stat(1, ISB_USRDELIV)),
        (Some(2), Some(3))
    );
}

#[test]
fn pcapng_reports_drops_in_statistics_blocks() {
    let t = Topology::new();
    let dir = TempDir::new();
    let file = dir.join("drops.pcapng");
    // A one-page ring holds two large packets: a burst overflows it.
    let summary = capture(
        &t,
        &["--ring-size", "4096", "-w", &arg(&file), "udp"],
        || {
            traffic::udp_burst(&t.a, B_V4, 2000, 1400);
        },
    );
    assert!(
        summary.ring_dropped > 0,
        "no ring drops to report: {summary:?}"
    );
    let ng = Pcapng::read(&file);
    assert_eq!(ng.packets.len() as u64, summary.captured);
    assert_eq!(ng.stat(0, ISB_IFDROP), Some(summary.ring_dropped));
    assert_eq!(ng.stat(0, ISB_OSDROP), Some(summary.writer_dropped));
    assert_eq!(ng.stat(0, ISB_FILTERACCEPT), Some(summary.received));
    let delivered: u64 = (0..ng.interfaces.len() as u32)
        .filter_map(|i| ng.stat(i, ISB_USRDELIV))
        .sum();
    assert_eq!(delivered, summary.captured);
    let (_, _, comment) = ng.stats.iter().find(|(i, _, _)| *i == 0).unwrap();
    assert!(
        comment.contains("whole capture"),
        "interface 0's statistics explain themselves: {comment}"
    );
    assert_eq!(
        tshark_fields(&file, &["frame.number"]).len() as u64,
        summary.captured
    );
}

/// 20 pings of 1000 bytes, both ways: 40 frames of 1042 bytes, pcap records of 1058. Under
/// `-C 0.01` (10,000 bytes) a file takes 9 of them after its 24-byte header.
fn size_rotated(t: &Topology, dir: &Path, extra: &[&str]) -> Summary {
    let pattern = dir.join("cap.pcap");
    capture(
        t,
        &[
            &["-w", &arg(&pattern), "-C", "0.01", "-f", "icmp"][..],
            extra,
        ]
        .concat(),
        || pings(t, 20, 1000),
    )
}

/// The chain-of-custody manifest every capture keeps next to its files.
const MANIFEST: &str = "tap-custody.jsonl";

/// The files in `dir` besides the manifest.
fn capture_files(dir: &Path) -> Vec<String> {
    list_dir(dir)
        .into_iter()
        .filter(|n| n != MANIFEST)
        .collect()
}

fn pcap_files(dir: &Path) -> Vec<String> {
    list_dir(dir)
        .into_iter()
        .filter(|n| n.starts_with("cap"))
        .collect()
}

#[test]
fn size_rotation_makes_exactly_the_expected_files() {
    let t = Topology::new();
    let dir = TempDir::new();
    let summary = size_rotated(&t, dir.path(), &[]);
    assert_eq!(summary.captured, 40);
    assert_eq!(
        list_dir(dir.path()),
        [
            "cap_00001.pcap",
            "cap_00002.pcap",
            "cap_00003.pcap",
            "cap_00004.pcap",
            "cap_00005.pcap",
            MANIFEST,
        ]
    );
    let names = capture_files(dir.path());
    let mut seqs = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let path = dir.join(name);
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len <= 10_000, "{name} has {len} bytes, over -C");
        let pcap = Pcap::read(&path);
        assert_eq!(pcap.records.len(), if k < 4 { 9 } else { 4 }, "{name}");
        assert_eq!(tcpdump_read(&path).len(), pcap.records.len());
        // ICMP sequence numbers, in order across the files.
        seqs.extend(
            pcap.records
                .iter()
                .map(|r| u16::from_be_bytes([r.data[40], r.data[41]])),
        );
    }
    let expected: Vec<u16> = (1..=20).flat_map(|s| [s, s]).collect();
    assert_eq!(seqs, expected);
}

#[test]
fn ring_keeps_the_newest_files_and_nothing_else_is_touched() {
    let t = Topology::new();
    let dir = TempDir::new();
    std::fs::write(dir.join("cap_notes.txt"), b"not tap's").unwrap();
    std::fs::write(dir.join("cap_00099.pcap"), b"not tap's either").unwrap();
    let summary = size_rotated(&t, dir.path(), &["-W", "2"]);
    assert_eq!(summary.captured, 40);
    assert_eq!(
        pcap_files(dir.path()),
        [
            "cap_00004.pcap",
            "cap_00005.pcap",
            "cap_00099.pcap",
            "cap_notes.txt"
        ]
    );
    assert_eq!(
        std::fs::read(dir.join("cap_notes.txt")).unwrap(),
        b"not tap's"
    );
    assert_eq!(
        std::fs::read(dir.join("cap_00099.pcap")).unwrap(),
        b"not tap's either"
    );
    assert_eq!(Pcap::read(&dir.join("cap_00004.pcap")).records.len(), 9);
    assert_eq!(Pcap::read(&dir.join("cap_00005.pcap")).records.len(), 4);
}

#[test]
fn post_rotate_command_sees_each_whole_file() {
    let t = Topology::new();
    let dir = TempDir::new();
    let copies = TempDir::new();
    let cmd = format!("cp -t {}", arg(copies.path()));
    let summary = size_rotated(&t, dir.path(), &["--post-rotate", &cmd]);
    assert_eq!(summary.captured, 40);
    let names = capture_files(dir.path());
    assert_eq!(names.len(), 5);
    // tap waits a little for the last commands on its way out; the copies are bounded anyway.
    wait_until("a copy of every file", Duration::from_secs(10), || {
        (list_dir(copies.path()) == names).then_some(())
    });
    for name in &names {
        assert_eq!(
            std::fs::read(copies.join(name)).unwrap(),
            std::fs::read(dir.join(name)).unwrap(),
            "{name}"
        );
    }
}

/// The number in `t-<secs>_<seq>.pcap`.
fn name_secs(name: &str) -> (i64, u64) {
    let core = name
        .strip_prefix("t-")
        .and_then(|n| n.strip_suffix(".pcap"))
        .unwrap_or_else(|| panic!("odd name {name}"));
    let (secs, seq) = core.split_once('_').unwrap();
    (secs.parse().unwrap(), seq.parse().unwrap())
}

#[test]
fn time_rotation_follows_the_clock() {
    let t = Topology::new();
    let dir = TempDir::new();
    let pattern = dir.join("t-%s.pcap");
    let summary = capture(&t, &["-w", &arg(&pattern), "-G", "2", "icmp"], || {
        traffic::ping(&t.a, B_V4, 40, &[]);
        // Idle for more than one interval: tap starts files without packets too.
        std::thread::sleep(Duration::from_millis(4500));
    });
    assert_eq!(summary.captured, 80);
    let names = capture_files(dir.path());
    let parsed: Vec<(i64, u64)> = names.iter().map(|n| name_secs(n)).collect();
    assert!(parsed.len() >= 4, "{names:?}");
    let mut total = 0;
    for (k, (secs, seq)) in parsed.iter().enumerate() {
        assert_eq!(*seq, k as u64 + 1, "sequence numbers run on: {names:?}");
        if k > 0 {
            assert_eq!(secs % 2, 0, "files start on even seconds: {names:?}");
            // The first file is named for the moment it opened, the others for their interval.
            let step = secs - parsed[k - 1].0;
            assert!(
                if k == 1 {
                    (1..=2).contains(&step)
                } else {
                    step == 2
                },
                "one file per interval: {names:?}"
            );
        }
        let pcap = Pcap::read(&dir.join(&names[k]));
        let end = parsed.get(k + 1).map_or(i64::MAX, |n| n.0);
        for i in 0..pcap.records.len() {
            let s = (pcap.ts_ns(i) / 1_000_000_000) as i64;
            assert!(
                s >= *secs && s < end,
                "{}: packet at {s} outside [{secs}, {end})",
                names[k]
            );
        }
        total += pcap.records.len() as u64;
    }
    assert_eq!(total, summary.captured);
    let last = Pcap::read(&dir.join(names.last().unwrap()));
    assert!(
        last.records.is_empty(),
        "the idle interval's file is empty: {names:?}"
    );
}

#[test]
fn zstd_files_read_directly() {
    let t = Topology::new();
    let dir = TempDir::new();
    let ng = dir.join("cap.pcapng.zst");
    let plain = dir.join("cap.pcap");
    let summary = capture(&t, &["-w", &arg(&ng), "icmp"], || pings(&t, 5, 500));
    assert_eq!(summary.captured, 10);
    let other = capture(
        &t,
        &["-w", &arg(&plain), "--compress", "zstd:9", "icmp"],
        || pings(&t, 3, 500),
    );
    assert_eq!(other.captured, 6);
    // Debian's tshark (Wireshark 4.0, built with libzstd) reads zstd files itself.
    assert_eq!(
        tshark_fields(&ng, &["frame.interface_description"]).len(),
        10
    );
    assert!(
        capinfos(&ng).contains("(zstd compressed)"),
        "{}",
        capinfos(&ng)
    );
    assert_eq!(tshark_fields(&plain, &["icmp.type"]).len(), 6);
    // zstd agrees, and what it gives is whole pcapng with statistics.
    let blocks = Pcapng::parse(&zstd_decompress(&ng));
    assert_eq!(blocks.packets.len(), 10);
    assert_eq!(blocks.stat(0, ISB_USRDELIV), Some(5));
    assert_eq!(Pcap::parse(&zstd_decompress(&plain)).records.len(), 6);
    assert!(
        std::fs::metadata(&ng).unwrap().len() < 10 * 542,
        "compressed"
    );
}

/// Starts tap on `b`, pings from `a` in the background, waits until `file` holds at least 10
/// packets by `count`, then kills tap with SIGKILL.
fn kill_mid_capture(
    t: &Topology,
    args: &[&str],
    file: &Path,
    count: impl Fn(&[u8]) -> usize,
) -> usize {
    let tap = tap::start(
        &t.b,
        &[
            &["-i", t.b_if.as_str(), "--flush-interval", "100"][..],
            args,
        ]
        .concat(),
    );
    let mut ping =
        t.a.spawn_sh(&format!("ping -n -q -c 200 -i 0.05 {B_V4} >/dev/null"));
    let seen = wait_until("10 packets in the file", Duration::from_secs(20), || {
        let bytes = std::fs::read(file).ok()?;
        let n = count(&bytes);
        (n >= 10).then_some(n)
    });
    let exited = tap.kill();
    let _ = ping.kill();
    let _ = ping.wait();
    assert!(!exited.status.success());
    seen
}

#[test]
fn kill_9_leaves_a_readable_pcap() {
    let t = Topology::new();
    let dir = TempDir::new();
    let file = dir.join("k.pcap");
    let seen = kill_mid_capture(&t, &["-w", &arg(&file), "icmp"], &file, |b| {
        if b.len() < 24 {
            0
        } else {
            Pcap::parse_prefix(b).records.len()
        }
    });
    // Whole records only, and tcpdump reads them without a complaint.
    let pcap = Pcap::read(&file);
    assert!(pcap.records.len() >= seen);
    assert_eq!(tcpdump_read(&file).len(), pcap.records.len());
    assert_nothing_attached(&t.b, &t.b_if);
}

#[test]
fn kill_9_leaves_a_readable_compressed_part_file() {
    let t = Topology::new();
    let dir = TempDir::new();
    let pattern = dir.join("k.pcapng.zst");
    let part = dir.join(".k_00001.pcapng.zst.part");
    let count = |b: &[u8]| Pcapng::count_packets(&zstd_decompress_prefix(b));
    let seen = kill_mid_capture(
        &t,
        &["-w", &arg(&pattern), "-G", "3600", "icmp"],
        &part,
        count,
    );
    assert_eq!(
        list_dir(dir.path()),
        [".k_00001.pcapng.zst.part"],
        "the file being written keeps its temporary name"
    );
    let rows = tshark_fields(&part, &["frame.interface_description"]);
    assert!(
        rows.len() >= seen,
        "{} packets read, {seen} seen before the kill",
        rows.len()
    );
    assert_eq!(
        Pcapng::parse(&zstd_decompress(&part)).packets.len(),
        rows.len()
    );
}

/// A full disk: a 1 MiB tmpfs, a file of someone else's on it, and a 3 MB UDP burst.
fn fill_disk(extra: &[&str]) -> (Topology, Tmpfs, Background) {
    let t = Topology::new();
    let fs = Tmpfs::new("1m");
    std::fs::write(fs.join("keep.bin"), vec![0x5a; 100_000]).unwrap();
    let file = fs.join("f.pcap");
    let tap = tap::start(
        &t.b,
        &[
            &["-i", t.b_if.as_str(), "-w", &arg(&file), "-f", "udp"][..],
            extra,
        ]
        .concat(),
    );
    traffic::udp_burst(&t.a, B_V4, 3000, 1000);
    (t, fs, tap)
}

/// The file on the full disk ends at a whole record and holds what the summary says.
fn assert_clean_file(fs: &Tmpfs, summary: &Summary) {
    let file = fs.join("f.pcap");
    let pcap = Pcap::read(&file);
    assert!(!pcap.records.is_empty());
    assert_eq!(pcap.records.len() as u64, summary.captured);
    assert_eq!(tcpdump_read(&file).len(), pcap.records.len());
    assert_eq!(
        std::fs::read(fs.join("keep.bin")).unwrap(),
        vec![0x5a; 100_000],
        "someone else's file changed"
    );
    // The manifest is there too, though its entry for f.pcap found no room on the full disk.
    assert_eq!(capture_files(fs.path()), ["f.pcap", "keep.bin"]);
}

#[test]
fn full_disk_stops_cleanly() {
    let (t, fs, tap) = fill_disk(&[]);
    // tap stops by itself.
    let exited = tap.wait(tap::STOP_TIMEOUT);
    assert_eq!(exited.status.code(), Some(1), "{}", exited.stderr);
    let errors: Vec<&str> = exited
        .stderr
        .lines()
        .filter(|l| l.contains("disk full"))
        .collect();
    assert_eq!(
        errors.len(),
        2,
        "one error, one summary line:\n{}",
        exited.stderr
    );
    assert!(
        errors[0].contains("ERROR") && errors[1].starts_with("capture stopped: disk full writing"),
        "{errors:?}"
    );
    let summary = Summary::parse(&exited.stderr);
    assert!(summary.writer_dropped > 0, "{summary:?}");
    assert_clean_file(&fs, &summary);
    assert_nothing_attached(&t.b, &t.b_if);
}

#[test]
fn full_disk_drop_keeps_counting() {
    let (t, fs, mut tap) = fill_disk(&["--on-disk-full", "drop"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(tap.running(), "tap stopped:\n{}", tap.stderr());
    traffic::udp_burst(&t.a, B_V4, 100, 1000);
    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    assert!(summary.writer_dropped >= 100, "{summary:?}");
    assert!(
        summary
            .extra
            .iter()
            .any(|l| l.contains("disk full writing") && l.contains("later packets dropped")),
        "{summary:?}"
    );
    assert_eq!(
        exited
            .stderr
            .lines()
            .filter(|l| l.contains("ERROR") && l.contains("disk full"))
            .count(),
        1
    );
    assert_clean_file(&fs, &summary);
}

#[test]
fn relinquished_privileges_own_the_files() {
    let t = Topology::new();
    let dir = TempDir::world_writable();
    let file = dir.join("z.pcapng");
    let tap = Capture::on(&t.b_if)
        .args(&["-Z", "nobody", "-w", &arg(&file), "icmp"])
        .start(&t.b);
    let nobody = uid_of("nobody");
    let status = std::fs::read_to_string(format!("/proc/{}/status", tap.pid())).unwrap();
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_string();
    assert_eq!(
        uid_line
            .split_whitespace()
            .skip(1)
            .map(|u| u.parse::<u32>().unwrap())
            .collect::<Vec<_>>(),
        [nobody; 4]
    );
    let cap_line = status
        .lines()
        .find(|l| l.starts_with("CapEff:"))
        .unwrap()
        .to_string();
    assert!(cap_line.ends_with("0000000000000000"), "{cap_line}");
    pings(&t, 3, 56);
    let summary = Summary::parse(&tap::stop(tap).stderr);
    assert_eq!(summary.captured, 6);
    assert_eq!(owner(&file), nobody);
    assert_eq!(tshark_fields(&file, &["icmp.type"]).len(), 6);
    // Detaching needs no privilege: closing the links is enough.
    assert_nothing_attached(&t.b, &t.b_if);
}

/// tap refused to start: one line on stderr with each of `expected`, exit status 1, nothing
/// attached.
fn assert_refused(t: &Topology, args: &[&str], expected: &[&str]) {
    let exited = tap::run(&t.b, &[&["-i", t.b_if.as_str()][..], args].concat());
    assert_eq!(exited.status.code(), Some(1), "{}", exited.stderr);
    let lines: Vec<&str> = exited.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", exited.stderr);
    for e in expected {
        assert!(lines[0].contains(e), "{:?} lacks {e:?}", lines[0]);
    }
    assert_nothing_attached(&t.b, &t.b_if);
}

#[test]
fn symbolic_link_at_the_output_is_refused() {
    let t = Topology::new();
    let dir = TempDir::new();
    let target = dir.join("precious");
    std::fs::write(&target, b"precious").unwrap();
    let link = dir.join("out.pcap");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for force in [&[][..], &["--force"][..]] {
        assert_refused(
            &t,
            &[&["-w", &arg(&link)][..], force].concat(),
            &["refusing to write", "symbolic link"],
        );
    }
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    // A dangling link is no better: nothing is created where it points.
    let dangling = dir.join("dangling.pcap");
    std::os::unix::fs::symlink(dir.join("nowhere"), &dangling).unwrap();
    assert_refused(&t, &["-w", &arg(&dangling)], &["symbolic link"]);
    assert!(!dir.join("nowhere").exists());
}

#[test]
fn existing_file_needs_force() {
    let t = Topology::new();
    let dir = TempDir::new();
    let file = dir.join("old.pcap");
    std::fs::write(&file, b"precious").unwrap();
    assert_refused(&t, &["-w", &arg(&file)], &["old.pcap exists: use --force"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    // The first file of a rotation, too.
    let first = dir.join("r_00001.pcap");
    std::fs::write(&first, b"precious").unwrap();
    assert_refused(
        &t,
        &["-w", &arg(&dir.join("r.pcap")), "-C", "1"],
        &["r_00001.pcap exists"],
    );
    assert_eq!(std::fs::read(&first).unwrap(), b"precious");
    let summary = capture(&t, &["-w", &arg(&file), "--force", "icmp"], || {
        pings(&t, 2, 56);
    });
    assert_eq!(Pcap::read(&file).records.len() as u64, summary.captured);
    assert_eq!(summary.captured, 4);
    // A device is not a file to protect: -w /dev/null writes to it, no --force needed.
    let null = capture(&t, &["-w", "/dev/null", "icmp"], || pings(&t, 1, 56));
    assert_eq!(null.captured, 2);
}

#[test]
fn bad_output_options_are_refused_before_loading() {
    let t = Topology::new();
    let dir = TempDir::new();
    let out = arg(&dir.join("x-%Q.pcap"));
    for (args, expected) in [
        (vec!["-w", "-", "-C", "1"], "standard output cannot rotate"),
        (vec!["-w", &out, "-W", "3"], "-W needs -C or -G"),
        (vec!["-w", &out, "-G", "1"], "unknown field %Q"),
        (
            vec!["-w", &out, "--compress", "lz4"],
            "unknown --compress 'lz4'",
        ),
        (
            vec!["-w", &out, "-Z", "no-such-user-tap"],
            "unknown user 'no-such-user-tap'",
        ),
    ] {
        assert_refused(&t, &args, &[expected]);
    }
    assert!(list_dir(dir.path()).is_empty());
}
