//! The packet printer against tcpdump 4.99.3: for a fixed capture holding every protocol the
//! printer covers (tests/src/print_frames.rs, the filter corpus, the tunnel cases) and each of
//! them cut short at every byte, `tap::print` prints what `tcpdump -r FILE` prints, line for
//! line, for each flag set tcpdump users reach for. The packets whose lines differ on purpose
//! (the printer's module documentation lists why) are taken out of the file first, each with
//! its reason, and counted; nothing is skipped silently.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use tap::{
    print::{
        Direction, Dump, DumpStyle, LINKTYPE_ETHERNET, PacketRef, PrintOptions, Printer,
        TCPDUMP_DECODES_ETHERTYPES, TCPDUMP_DECODES_PROTOCOLS, TimeStyle, tcpdump_decodes_tcp,
        tcpdump_decodes_udp,
    },
    replay::capture_file::{Compression as FileCompression, open_capture},
    sink::pcapng::{self, InterfaceDesc, SectionInfo},
};
use tap_common::event::{DIR_INBOUND, DIR_OUTBOUND, HOOK_TC_EGRESS, HOOK_TC_INGRESS};
use tap_tests::{
    TempDir, corpus,
    pcap::{Pcap, Record},
    print_frames::{self, Frame},
    tunnels,
};

const BASE_NS: u64 = 1_700_000_000_123_456_789;

fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]))
}

/// Why tcpdump's line for this (whole) frame differs from tap's on purpose, if it does.
fn exclusion(d: &[u8]) -> Option<&'static str> {
    let mut at = 12;
    let mut et = be16(d, at)?;
    while [0x8100, 0x88a8, 0x9100, 0x9200].contains(&et) {
        at += 4;
        et = be16(d, at)?;
    }
    at += 2;
    if et <= 1500 {
        return Some("802.3/LLC frame (STP, CDP, ...): tcpdump decodes LLC");
    }
    if TCPDUMP_DECODES_ETHERTYPES.contains(&et) {
        return Some("ethertype tcpdump decodes (LLDP, PPPoE, MPLS, ...)");
    }
    let p = d.get(at..)?;
    match et {
        0x0800 => ipv4(p),
        0x86dd => ipv6(p),
        _ => None,
    }
}

fn ipv4(p: &[u8]) -> Option<&'static str> {
    if p.first()? >> 4 != 4 {
        return None;
    }
    let hlen = usize::from(p[0] & 0xf) * 4;
    let total = usize::from(be16(p, 2)?);
    if be16(p, 6)? & 0x1fff != 0 || hlen < 20 {
        return None;
    }
    let proto = *p.get(9)?;
    upper(
        proto,
        p.get(hlen..total.max(hlen).min(p.len()))?,
        total.saturating_sub(hlen),
    )
}

fn ipv6(p: &[u8]) -> Option<&'static str> {
    if p.first()? >> 4 != 6 {
        return None;
    }
    let mut nh = *p.get(6)?;
    let mut at = 40;
    loop {
        match nh {
            0 | 60 | 43 => {
                nh = *p.get(at)?;
                at += (usize::from(*p.get(at + 1)?) + 1) * 8;
            }
            44 => {
                if be16(p, at + 2)? & 0xfff8 != 0 {
                    return None;
                }
                nh = *p.get(at)?;
                at += 8;
            }
            135 => return Some("IPv6 mobility header: tcpdump decodes it"),
            _ => {
                let claimed = (40 + usize::from(be16(p, 4)?)).saturating_sub(at);
                return upper(nh, p.get(at..)?, claimed);
            }
        }
    }
}

/// `seg` as captured, `claimed` its length by the IP header.
fn upper(proto: u8, seg: &[u8], claimed: usize) -> Option<&'static str> {
    if TCPDUMP_DECODES_PROTOCOLS.contains(&proto) {
        return Some("IP protocol tcpdump decodes (SCTP, IGMP, OSPF, ESP, ...)");
    }
    match proto {
        6 => {
            let (sport, dport) = (be16(seg, 0)?, be16(seg, 2)?);
            let hlen = usize::from(seg.get(12)? >> 4) * 4;
            let mut opts = seg.get(20..hlen.min(seg.len())).unwrap_or(&[]);
            while let Some(&k) = opts.first() {
                if k == 30 {
                    return Some("MPTCP option: tcpdump decodes it");
                }
                let l = if k <= 1 {
                    1
                } else {
                    usize::from(*opts.get(1)?).max(2)
                };
                opts = opts.get(l..).unwrap_or(&[]);
            }
            (claimed > hlen && tcpdump_decodes_tcp(sport, dport))
                .then_some("TCP application tcpdump decodes by port (HTTP, SSH, DNS, ...)")
        }
        17 => {
            let (sport, dport) = (be16(seg, 0)?, be16(seg, 2)?);
            let payload = seg.get(8..).unwrap_or(&[]);
            if tcpdump_decodes_udp(sport, dport, payload) {
                return Some("UDP application tcpdump decodes by port (DNS, NTP, DHCP, ...)");
            }
            if sport == 4789 || dport == 4789 {
                return exclusion(payload.get(8..)?);
            }
            if sport == 6081 || dport == 6081 {
                let opts = usize::from(payload.first()? & 0x3f) * 4;
                let inner = payload.get(8 + opts..)?;
                return match be16(payload, 2)? {
                    0x6558 => exclusion(inner),
                    0x0800 => ipv4(inner),
                    0x86dd => ipv6(inner),
                    _ => None,
                };
            }
            None
        }
        58 => {
            let ty = *seg.first()?;
            if [138, 139, 140, 145, 147, 155, 200, 201].contains(&ty) {
                return Some("ICMPv6 message tcpdump decodes further (renumbering, NI, RPL)");
            }
            None
        }
        47 => {
            let flags = be16(seg, 0)?;
            let proto = be16(seg, 2)?;
            if flags & 7 == 1 && proto == 0x880b && flags & 0x1000 != 0 {
                return Some("PPP in GRE (PPTP): tcpdump decodes it");
            }
            if flags & 7 != 0 {
                return None;
            }
            let mut at = 4;
            for (bit, n) in [(0x8000u16 | 0x4000, 4usize), (0x2000, 4), (0x1000, 4)] {
                if flags & bit != 0 {
                    at += n;
                }
            }
            if flags & 0x4000 != 0 {
                return Some("GRE source routes: not in the corpus");
            }
            let inner = seg.get(at..)?;
            match proto {
                0x6558 => exclusion(inner),
                0x0800 => ipv4(inner),
                0x86dd => ipv6(inner),
                0x8847 | 0x8848 | 0x8137 | 0x809b | 0x00fe => {
                    Some("GRE payload tcpdump decodes (MPLS, IPX, ...)")
                }
                _ => None,
            }
        }
        // With -v an ICMP error prints the datagram it quotes.
        1 if [3, 4, 5, 11, 12].contains(seg.first()?) => ipv4(seg.get(8..)?),
        4 => ipv4(seg),
        41 => ipv6(seg),
        // Later fragments and the like: the caller's header said it all.
        _ => None,
    }
}

/// The capture: whole frames, the tunnel cases, the filter corpus, then cuts of the first
/// two groups. Returns the kept frames and the count of each exclusion reason.
fn capture() -> (Vec<Frame>, BTreeMap<&'static str, usize>) {
    let mut whole = print_frames::whole_frames();
    whole.extend(tunnels::cases().into_iter().map(|c| Frame::of(c.outer)));
    let cut_from = whole.clone();
    whole.extend(corpus::frames().into_iter().map(Frame::of));
    let mut all: Vec<(Frame, Option<&'static str>)> = whole
        .into_iter()
        .map(|f| {
            let why = exclusion(&f.data);
            (f, why)
        })
        .collect();
    for f in &cut_from {
        let why = exclusion(&f.data);
        for c in print_frames::cuts(f, 100) {
            all.push((c, why));
        }
    }
    let mut excluded = BTreeMap::new();
    let mut kept = Vec::new();
    for (f, why) in all {
        match why {
            Some(w) => *excluded.entry(w).or_insert(0) += 1,
            None => kept.push(f),
        }
    }
    (kept, excluded)
}

fn ts_of(i: usize) -> u64 {
    // Irregular gaps, some over a second, some backwards (for -ttt's negative deltas).
    let i = i as u64;
    let step = 1_234_567 * i + (i % 7) * 1_000_000_003;
    if i % 50 == 49 {
        BASE_NS + step - 2_000_000_000
    } else {
        BASE_NS + step
    }
}

fn write_pcap(path: &Path, frames: &[Frame], nanos: bool) {
    let records = frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let ts = ts_of(i);
            let frac = ts % 1_000_000_000;
            Record {
                ts_sec: (ts / 1_000_000_000) as u32,
                ts_frac: if nanos { frac } else { frac / 1000 } as u32,
                orig_len: f.orig_len,
                data: f.data.clone(),
            }
        })
        .collect();
    Pcap {
        nanos,
        snaplen: 262_144,
        linktype: 1,
        records,
    }
    .write(path);
}

/// tcpdump's text for `path` with `flags`; fails unless tcpdump reads the file cleanly.
fn tcpdump(path: &Path, flags: &[&str]) -> String {
    let out = Command::new("tcpdump")
        .arg("-r")
        .arg(path)
        .args(flags)
        .env("TZ", "UTC")
        .output()
        .expect("tcpdump runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("reading from file "))
        // LINUX_SLL2 files name interfaces by this host's indexes (the SLL2 test uses lo's).
        .filter(|l| *l != "Warning: interface names might be incorrect")
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "tcpdump -r {} {flags:?}: {stderr}",
        path.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The printer's options for tcpdump `flags` (the mapping the CLI will make).
fn options(flags: &[&str]) -> PrintOptions {
    let mut o = PrintOptions::default();
    let mut x = 0;
    let mut big_x = 0;
    let mut a = 0;
    for f in flags {
        match *f {
            "-n" | "-nn" => {}
            "--nano" => o.nanos = true,
            "-e" => o.link_header = true,
            "-q" => o.quiet = true,
            "-S" => o.absolute_seq = true,
            "-t" => o.time = TimeStyle::None,
            "-tt" => o.time = TimeStyle::Epoch,
            "-ttt" => o.time = TimeStyle::Delta,
            "-tttt" => o.time = TimeStyle::Date,
            "-ttttt" => o.time = TimeStyle::SinceFirst,
            "-v" => o.verbose = 1,
            "-vv" => o.verbose = 2,
            "-x" => x = 1,
            "-xx" => x = 2,
            "-X" => big_x = 1,
            "-XX" => big_x = 2,
            "-A" => a = 1,
            "-AA" => a = 2,
            other => panic!("no mapping for {other}"),
        }
    }
    o.dump = if big_x > 0 {
        Some(Dump {
            style: DumpStyle::HexAscii,
            link_layer: big_x > 1,
        })
    } else if x > 0 {
        Some(Dump {
            style: DumpStyle::Hex,
            link_layer: x > 1,
        })
    } else if a > 0 {
        Some(Dump {
            style: DumpStyle::Ascii,
            link_layer: a > 1,
        })
    } else {
        None
    };
    o
}

/// tap's text for the capture at `path` (read through the opener, so `.zst` too), naming each
/// packet's interface when the file has several.
fn ours(path: &Path, opts: &PrintOptions) -> String {
    ours_naming(path, opts, true)
}

/// [`ours`], naming interfaces only if `names`.
fn ours_naming(path: &Path, opts: &PrintOptions, names: bool) -> String {
    let (mut r, _) = open_capture(path).expect("opens");
    let mut printer = Printer::new(opts.clone());
    let mut out = Vec::new();
    while let Some(p) = r.next_packet().expect("reads") {
        let several = names && r.interface_count() > 1;
        let name = r.interface_name(p.interface).map(str::to_string);
        let direction = match p.flags & 3 {
            1 => Direction::In,
            2 => Direction::Out,
            _ => Direction::Unknown,
        };
        printer.format(
            &PacketRef {
                ts_ns: p.ts_ns,
                interface: if several { name.as_deref() } else { None },
                direction,
                linktype: p.linktype,
                orig_len: p.orig_len,
                data: &p.data,
            },
            &mut out,
        );
    }
    String::from_utf8(out).expect("ASCII output")
}

/// Fails with the first differing lines (and how many differ) unless the texts are equal.
fn assert_same(what: &str, theirs: &str, mine: &str) {
    if theirs == mine {
        return;
    }
    let t: Vec<&str> = theirs.lines().collect();
    let m: Vec<&str> = mine.lines().collect();
    let mut report = String::new();
    let mut differing = 0;
    for i in 0..t.len().max(m.len()) {
        let (a, b) = (t.get(i).copied(), m.get(i).copied());
        if a != b {
            differing += 1;
            if differing <= 40 {
                report.push_str(&format!(
                    "line {}:\n  tcpdump: {:?}\n  tap:     {:?}\n",
                    i + 1,
                    a.unwrap_or("<none>"),
                    b.unwrap_or("<none>")
                ));
            }
        }
    }
    panic!(
        "{what}: {differing} of {} lines differ ({} from tap)\n{report}",
        t.len(),
        m.len()
    );
}

const FLAG_SETS: &[&[&str]] = &[
    &["-n"],
    &["-nn"],
    &["-n", "-e"],
    &["-n", "-v"],
    &["-n", "-vv"],
    &["-n", "-e", "-v"],
    &["-n", "-q"],
    &["-n", "-q", "-e"],
    &["-n", "-S"],
    &["-n", "-x"],
    &["-n", "-xx"],
    &["-n", "-X"],
    &["-n", "-XX"],
    &["-n", "-A"],
    &["-n", "-AA"],
    &["-n", "-t"],
    &["-n", "-tt"],
    &["-n", "-ttt"],
    &["-n", "-tttt"],
    &["-n", "-ttttt"],
    &["-n", "-e", "-X", "-v"],
];

#[test]
fn prints_what_tcpdump_prints() {
    let (frames, excluded) = capture();
    let total: usize = excluded.values().sum();
    eprintln!(
        "{} packets compared; {total} left out on purpose:",
        frames.len()
    );
    for (why, n) in &excluded {
        eprintln!("  {n:5}  {why}");
    }
    assert!(
        frames.len() > 5_000,
        "the capture covers the protocols and their cuts"
    );
    let dir = TempDir::new();
    let file = dir.join("golden.pcap");
    write_pcap(&file, &frames, false);
    for flags in FLAG_SETS {
        assert_same(
            &format!("tcpdump {flags:?}"),
            &tcpdump(&file, flags),
            &ours(&file, &options(flags)),
        );
    }
    // Without -n tap prints what tcpdump -n prints (it never looks names up).
    assert_same(
        "no -n",
        &tcpdump(&file, &["-n"]),
        &ours(&file, &PrintOptions::default()),
    );
    // Nanosecond files and --nano.
    let nano = dir.join("golden-ns.pcap");
    write_pcap(&nano, &frames, true);
    for flags in [
        &["-n", "--nano"][..],
        &["-n", "--nano", "-ttt"],
        &["-n", "--nano", "-tt"],
        &["-n"],
    ] {
        assert_same(
            &format!("ns file, tcpdump {flags:?}"),
            &tcpdump(&nano, flags),
            &ours(&nano, &options(flags)),
        );
    }
}

/// Interface ids, names and directions of the pcapng test: packet `i` on `IFACES[i % 3]`,
/// inbound on even `i`.
const IFACES: [&str; 3] = ["veth-a", "eth0", "br-lan0"];

fn write_pcapng(path: &Path, frames: &[Frame]) {
    let mut out = Vec::new();
    pcapng::section_header(&mut out, &SectionInfo::of_this_host());
    for (k, name) in IFACES.iter().enumerate() {
        let hook = if k == 1 {
            HOOK_TC_EGRESS
        } else {
            HOOK_TC_INGRESS
        };
        pcapng::interface_description(
            &mut out,
            &InterfaceDesc::new(name, 3 + k as u32, hook),
            262_144,
            "",
        );
    }
    for (i, f) in frames.iter().enumerate() {
        let dir = if i % 2 == 0 {
            DIR_INBOUND
        } else {
            DIR_OUTBOUND
        };
        pcapng::enhanced_packet(
            &mut out,
            (i % 3) as u32,
            ts_of(i),
            f.orig_len,
            &f.data,
            pcapng::direction_flags(dir),
            None,
        );
    }
    std::fs::write(path, out).expect("writes the pcapng file");
}

/// The `%-5s %-3s ` prefix tcpdump's `-i any` lines carry after the timestamp.
fn prefix(name: &str, dir: &str) -> String {
    format!("{name:<5} {dir:<3} ")
}

fn direction_of(i: usize, data: &[u8]) -> &'static str {
    if i % 2 == 1 {
        "Out"
    } else if data.len() >= 6 && data[..6] == [0xff; 6] {
        "B"
    } else if data.first().is_some_and(|b| b & 1 == 1) {
        "M"
    } else {
        "In"
    }
}

#[test]
fn pcapng_with_several_interfaces_names_them_as_tcpdump_any_does() {
    let (frames, _) = capture();
    let dir = TempDir::new();
    let file = dir.join("multi.pcapng");
    write_pcapng(&file, &frames);
    for flags in [&["-n"][..], &["-n", "-v"], &["-n", "-e"]] {
        // tcpdump 4.99 prints no interface for pcapng: put the prefix tap prints into its
        // lines, after each packet's timestamp.
        let theirs = tcpdump(&file, flags);
        let mut expected = String::new();
        let mut k = 0;
        for line in theirs.lines() {
            let starts_packet = line.len() > 16
                && line.as_bytes()[2] == b':'
                && line.as_bytes()[5] == b':'
                && line.as_bytes()[8] == b'.'
                && line.as_bytes()[15] == b' ';
            if starts_packet {
                let (ts, rest) = line.split_at(16);
                expected.push_str(ts);
                expected.push_str(&prefix(IFACES[k % 3], direction_of(k, &frames[k].data)));
                expected.push_str(rest);
                k += 1;
            } else {
                expected.push_str(line);
            }
            expected.push('\n');
        }
        assert_eq!(k, frames.len(), "one first line per packet");
        assert_same(
            &format!("pcapng {flags:?}"),
            &expected,
            &ours(&file, &options(flags)),
        );
    }
}

/// The prefix itself is tcpdump's: the same packets as LINUX_SLL2 records of interface 1
/// (`lo`, which `if_indextoname` finds on any host) print as tap prints them for `lo`.
#[test]
fn interface_prefix_matches_tcpdump_sll2() {
    let (frames, _) = capture();
    let untagged: Vec<&Frame> = frames
        .iter()
        // Untagged IP and ARP: tcpdump prints other SLL2 payloads its own way (`ifindex N`).
        .filter(|f| {
            f.data.len() >= 14
                && [[8, 0], [0x86, 0xdd], [8, 6], [0x80, 0x35]].contains(&[f.data[12], f.data[13]])
        })
        .collect();
    let mut records = Vec::new();
    let mut mine = Vec::new();
    let mut printer = Printer::new(options(&["-n"]));
    for (i, f) in untagged.iter().enumerate() {
        let dir = direction_of(i, &f.data);
        let pkttype = match dir {
            "Out" => 4u8,
            "B" => 1,
            "M" => 2,
            _ => 0,
        };
        let mut d = f.data[12..14].to_vec();
        d.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 1, pkttype, 6]);
        d.extend_from_slice(&f.data[6..12]);
        d.extend_from_slice(&[0, 0]);
        d.extend_from_slice(&f.data[14..]);
        let ts = ts_of(i);
        records.push(Record {
            ts_sec: (ts / 1_000_000_000) as u32,
            ts_frac: (ts % 1_000_000_000 / 1000) as u32,
            orig_len: f.orig_len + 6,
            data: d,
        });
        printer.format(
            &PacketRef {
                ts_ns: ts,
                interface: Some("lo"),
                direction: if i % 2 == 1 {
                    Direction::Out
                } else {
                    Direction::In
                },
                linktype: LINKTYPE_ETHERNET,
                orig_len: f.orig_len,
                data: &f.data,
            },
            &mut mine,
        );
    }
    let dir = TempDir::new();
    let file = dir.join("sll2.pcap");
    Pcap {
        nanos: false,
        snaplen: 262_144,
        linktype: 276,
        records,
    }
    .write(&file);
    assert_same(
        "LINUX_SLL2 on lo",
        &tcpdump(&file, &["-n"]),
        &String::from_utf8(mine).unwrap(),
    );
}

/// Files tap's own writer produces, compressed, read back through the opener: the same
/// packets as tcpdump and tshark find in them.
#[test]
fn reads_compressed_files_tap_writes() {
    use std::time::Duration;
    use tap::{
        kernel::batch::BatchBuilder,
        model::{Compression, DiskFull, Format, Hook, Interface, Output, OutputConfig, Rotation},
        sink::{CaptureStats, SinkSetup},
    };
    use tap_common::event::PacketHeader;

    let frames: Vec<Frame> = print_frames::whole_frames()
        .into_iter()
        .filter(|f| exclusion(&f.data).is_none())
        .collect();
    let dir = TempDir::new();
    for (name, format) in [
        ("w.pcap.zst", Format::Pcap),
        ("w.pcapng.zst", Format::Pcapng),
    ] {
        let path = dir.join(name);
        let output = OutputConfig {
            target: Output::File(path.clone()),
            format,
            compression: Compression::Zstd { level: 3 },
            rotation: Rotation::default(),
            post_rotate: None,
            flush_interval: Duration::from_secs(1),
            on_disk_full: DiskFull::Stop,
            force: false,
            resume: false,
            store: None,
            sign_key: None,
        };
        let ifaces = [
            Interface {
                name: "veth-a".into(),
                ifindex: 7,
            },
            Interface {
                name: "veth-b".into(),
                ifindex: 8,
            },
        ];
        let mut sink = tap::sink::open(SinkSetup {
            output: &output,
            interfaces: &ifaces,
            hooks: &[Hook::TcIngress, Hook::TcEgress],
            snaplen: 9216,
            filter: "",
            stats: Box::new(CaptureStats::default),
            finished: None,
            progress: None,
        })
        .expect("opens the writer");
        // Several batches, so several zstd frames.
        for chunk in frames.chunks(17) {
            let mut b = BatchBuilder::with_capacity(64 * 1024);
            for (i, f) in chunk.iter().enumerate() {
                let header = PacketHeader {
                    ts_ns: 1_000_000 + i as u64,
                    ifindex: 7 + (i % 2) as u32,
                    orig_len: f.orig_len,
                    cap_len: f.data.len() as u32,
                    hook: if i % 3 == 0 {
                        HOOK_TC_EGRESS
                    } else {
                        HOOK_TC_INGRESS
                    },
                    direction: if i % 3 == 0 {
                        DIR_OUTBOUND
                    } else {
                        DIR_INBOUND
                    },
                    ..Default::default()
                };
                b.push_parts(&header, &f.data);
            }
            sink.write_batch(&b.finish()).expect("writes");
        }
        let report = sink.finish(&CaptureStats::default());
        assert_eq!(report.written as usize, frames.len(), "{name}");

        let (mut r, compression) = open_capture(&path).expect("opens");
        assert_eq!(
            compression,
            FileCompression::Zstd,
            "{name}: told by its magic"
        );
        let mut n = 0;
        while r.next_packet().expect("reads").is_some() {
            n += 1;
        }
        assert_eq!(n, frames.len(), "{name}");

        // Decompressed, tcpdump sees the same packets, byte for byte and to the nanosecond.
        let plain: PathBuf = dir.join(name.trim_end_matches(".zst"));
        let bytes = zstd::decode_all(std::fs::File::open(&path).unwrap()).unwrap();
        std::fs::write(&plain, bytes).unwrap();
        let flags = ["-nn", "-tt", "--nano", "-xx"];
        let mut opts = options(&flags);
        opts.tcp_flows = 16;
        let theirs = tcpdump(&plain, &flags);
        // Without interface names: tcpdump prints none for pcapng files.
        let mine = ours_naming(&path, &opts, false);
        assert_same(&format!("{name} decompressed"), &theirs, &mine);
        // tshark reads the compressed file itself: the same count and lengths.
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&path)
            .args(["-T", "fields", "-e", "frame.len", "-e", "frame.cap_len"])
            .output()
            .expect("tshark runs");
        let lens: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        let want: Vec<String> = frames
            .iter()
            .map(|f| format!("{}\t{}", f.orig_len, f.data.len()))
            .collect();
        assert_eq!(lens, want, "{name}: tshark");
    }
}

/// `tap capture -r FILE FLAGS` run as a user runs it.
fn tap_read(path: &Path, flags: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tap"))
        .args(["capture", "-r"])
        .arg(path)
        .args(flags)
        .env("TZ", "UTC")
        .env_remove("TAP_LOG")
        .output()
        .expect("tap runs");
    assert!(
        out.status.success(),
        "tap capture -r {} {flags:?}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("ASCII output")
}

/// The command line, end to end: `tap capture -r FILE` with tcpdump's flags prints what
/// `tcpdump -r FILE` prints with the same flags, for the golden capture (the same packets left
/// out on purpose as above), on pcap files in µs and ns.
#[test]
fn tap_capture_r_prints_what_tcpdump_r_prints() {
    let (frames, _) = capture();
    let dir = TempDir::new();
    let file = dir.join("golden.pcap");
    write_pcap(&file, &frames, false);
    for flags in FLAG_SETS {
        // tcpdump reads `-nn` as one flag; tap's clap reads it as `-n` twice: the same.
        assert_same(
            &format!("tap capture -r, tcpdump {flags:?}"),
            &tcpdump(&file, flags),
            &tap_read(&file, flags),
        );
    }
    let nano = dir.join("golden-ns.pcap");
    write_pcap(&nano, &frames, true);
    for flags in [&["-nn", "-tttt"][..], &["-nn", "-v", "-e"]] {
        assert_same(
            &format!("ns file, tap capture -r, tcpdump {flags:?}"),
            &tcpdump(&nano, flags),
            &tap_read(&nano, flags),
        );
    }
}
