//! The oracles: tcpdump capturing next to tap, and tcpdump and tshark reading tap's files back.

use std::{
    collections::{HashMap, VecDeque},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::{
    Netns, TempDir,
    pcap::{Pcap, Record},
    process::Background,
    run_ok,
    tap::{self, Summary},
    wait_until,
};

/// tcpdump writing everything it sees on one interface to a file.
#[derive(Debug)]
pub struct Tcpdump {
    process: Background,
    pub file: PathBuf,
}

impl Tcpdump {
    /// Starts `tcpdump -i IFACE -s 0 -w FILE` in `ns` and returns once it is listening. `extra`
    /// adds options, e.g. `-Q in`, or `-s 100` (a later `-s` wins).
    ///
    /// Packets are delivered at once (`--immediate-mode`) and written one by one (`-U`), so the
    /// file shows every packet within milliseconds; timestamps are in nanoseconds, like tap's.
    pub fn start(ns: &Netns, iface: &str, file: PathBuf, extra: &[&str]) -> Self {
        let mut cmd = ns.cmd("tcpdump");
        cmd.args([
            "-i",
            iface,
            "-s",
            "0",
            "-U",
            "--immediate-mode",
            "--time-stamp-precision",
            "nano",
        ])
        .args(extra)
        .arg("-w")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
        let mut process = Background::spawn("tcpdump", cmd);
        process.wait_for_stderr("listening on", Duration::from_secs(30));
        Self { process, file }
    }

    /// Complete records in the file so far.
    pub fn records(&self) -> usize {
        // The global header reaches the file with the first packet.
        match std::fs::read(&self.file) {
            Ok(bytes) if bytes.len() >= 24 => Pcap::parse_prefix(&bytes).records.len(),
            _ => 0,
        }
    }

    /// Waits until no new packet has arrived for `quiet`, at most 20 s: the traffic, late TCP
    /// acknowledgements included, is over.
    pub fn wait_quiet(&self, quiet: Duration) {
        let mut last = (self.records(), Instant::now());
        wait_until("the capture to fall quiet", Duration::from_secs(20), || {
            let n = self.records();
            if n != last.0 {
                last = (n, Instant::now());
            }
            (last.1.elapsed() >= quiet).then_some(())
        });
    }

    /// Stops tcpdump (SIGINT) and reads its file.
    pub fn stop(self) -> Pcap {
        let exited = self.process.interrupt(Duration::from_secs(30));
        assert!(
            exited.status.success(),
            "tcpdump failed ({}):\n{}",
            exited.status,
            exited.stderr
        );
        Pcap::read(&self.file)
    }
}

/// What [`capture_with_tcpdump`] recorded.
#[derive(Debug)]
pub struct SideBySide {
    /// tap's exit summary.
    pub summary: Summary,
    pub tap_file: PathBuf,
    /// One file per tcpdump, in the order they were asked for.
    pub tcpdump_files: Vec<PathBuf>,
    /// Wall clock (ns since the epoch) just before the traffic and once it was over.
    pub before_ns: u128,
    pub after_ns: u128,
}

/// Runs `traffic` while tap (`tap capture <tap_args> -w DIR/tap.pcap`, in `ns`) and one tcpdump
/// per `(interface, extra args)` of `tcpdumps` capture it, all in `ns`; stops them once the wire
/// is quiet, tap first, and returns the files.
pub fn capture_with_tcpdump(
    ns: &Netns,
    dir: &TempDir,
    tap_args: &[&str],
    tcpdumps: &[(&str, &[&str])],
    traffic: impl FnOnce(),
) -> SideBySide {
    let dumps: Vec<Tcpdump> = tcpdumps
        .iter()
        .enumerate()
        .map(|(k, (iface, extra))| {
            Tcpdump::start(ns, iface, dir.join(&format!("tcpdump-{k}.pcap")), extra)
        })
        .collect();
    let tap_file = dir.join("tap.pcap");
    let tap_file_arg = tap_file.to_string_lossy();
    let tap = tap::start(ns, &[tap_args, &["-w", &tap_file_arg]].concat());
    let before_ns = now_ns();
    traffic();
    // Late acknowledgements and FINs: wait until the wire is quiet before stopping anything.
    for d in &dumps {
        d.wait_quiet(Duration::from_millis(500));
    }
    let after_ns = now_ns();
    let summary = Summary::parse(&tap::stop(tap).stderr);
    // tcpdump took every packet tap did, since the wire has been quiet; make sure it wrote them.
    let written = Pcap::read(&tap_file).records.len();
    wait_until(
        &format!("tcpdump to write {written} packets"),
        Duration::from_secs(10),
        || (dumps.iter().map(Tcpdump::records).sum::<usize>() >= written).then_some(()),
    );
    let tcpdump_files = dumps
        .into_iter()
        .map(|d| {
            let file = d.file.clone();
            d.stop();
            file
        })
        .collect();
    SideBySide {
        summary,
        tap_file,
        tcpdump_files,
        before_ns,
        after_ns,
    }
}

/// Wall clock in nanoseconds since the epoch.
pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos()
}

/// tcpdump's decoding of a file, one line per packet, without timestamps (`-t`), names (`-nn`)
/// but with link-level headers (`-e`). Fails unless tcpdump reads the file cleanly.
pub fn tcpdump_read(path: &Path) -> Vec<String> {
    let out = run_ok(
        Command::new("tcpdump")
            .args(["-r"])
            .arg(path)
            .args(["-nn", "-t", "-e", "-v"]),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("reading from file "))
        .collect();
    assert!(
        complaints.is_empty(),
        "tcpdump complained reading {}:\n{stderr}",
        path.display()
    );
    // -v continues long packets on indented lines: fold them into their packet's line.
    let mut packets: Vec<String> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        match packets.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => {
                last.push(' ');
                last.push_str(line.trim());
            }
            _ => packets.push(line.to_string()),
        }
    }
    packets
}

/// Fields of tshark's decoding compared between captures: lengths, the protocol stack (where a
/// malformed packet would show as `_ws.malformed`) and the headers of our traffic. Not the info
/// column or the expert analysis: they refer to other packets by number and judge a TCP stream by
/// the order of its two directions in the file, which may differ between hooks (see
/// [`assert_same_packets`]).
const TSHARK_FIELDS: &[&str] = &[
    "frame.len",
    "frame.cap_len",
    "frame.protocols",
    "eth.src",
    "eth.dst",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "icmp.type",
    "icmp.seq",
    "icmpv6.type",
    "udp.srcport",
    "udp.dstport",
    "udp.length",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags.str",
    "tcp.seq",
    "tcp.len",
    "http.request.line",
    "http.response.code",
];

/// tshark's decoding of a file, one line per packet ([`TSHARK_FIELDS`], `|`-separated). Fails
/// unless tshark reads the file cleanly and finds no malformed packet.
pub fn tshark_read(path: &Path) -> Vec<String> {
    let lines = tshark_lines(path, TSHARK_FIELDS);
    let malformed: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("_ws.malformed"))
        .collect();
    assert!(
        malformed.is_empty(),
        "tshark finds malformed packets in {}: {malformed:#?}",
        path.display()
    );
    lines
}

/// `tshark -r FILE -T fields -e F1 -e F2 ...`: one row per packet. Fails unless tshark reads
/// the file without a complaint.
pub fn tshark_fields(path: &Path, fields: &[&str]) -> Vec<Vec<String>> {
    tshark_lines(path, fields)
        .iter()
        .map(|l| l.split('|').map(ToString::to_string).collect())
        .collect()
}

/// tshark's `fields` output, `|`-separated, one line per packet.
fn tshark_lines(path: &Path, fields: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(path)
        .args(["-n", "-T", "fields", "-E", "separator=|"]);
    for field in fields {
        cmd.args(["-e", field]);
    }
    let out = run_ok(&mut cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // tshark warns about running as root; anything else is a complaint about the file.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("Running as user \"root\""))
        .collect();
    assert!(
        complaints.is_empty(),
        "tshark complained reading {}:\n{stderr}",
        path.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(ToString::to_string)
        .collect()
}

/// `capinfos FILE` as text; fails unless capinfos reads the file.
pub fn capinfos(path: &Path) -> String {
    crate::run_stdout(Command::new("capinfos").arg(path))
}

/// Two captures of the same traffic, matched packet by packet.
#[derive(Debug)]
pub struct Matched {
    pub tap: Pcap,
    pub oracle: Pcap,
    /// (index in `tap`, index in `oracle`) of each packet, in tap's order.
    pub pairs: Vec<(usize, usize)>,
}

/// The stream a frame belongs to: its source MAC address, i.e. one direction of one link.
fn stream(data: &[u8]) -> &[u8] {
    data.get(6..12).unwrap_or(data)
}

/// Asserts two captures hold the same packets: the same number, and in each direction of each
/// link (each source MAC) the same packets in the same order, with the same original lengths and
/// bytes (by this crate's parser) and the same decoding by tcpdump and by tshark, which must both
/// read each file without a complaint.
///
/// Order is compared per direction because the hooks sit on different sides of tcpdump's tap:
/// tcx ingress runs after AF_PACKET has seen a packet, tcx egress before. An inbound and an
/// outbound packet crossing at the same moment (two FINs of a TCP close, on two CPUs) can reach
/// the two captures in opposite orders, and both are right.
pub fn assert_same_packets(tap_file: &Path, oracle_file: &Path) -> Matched {
    let tap = Pcap::read(tap_file);
    let oracle = Pcap::read(oracle_file);
    let tap_text = tcpdump_read(tap_file);
    let oracle_text = tcpdump_read(oracle_file);
    let tap_shark = tshark_read(tap_file);
    let oracle_shark = tshark_read(oracle_file);
    let listing = || side_by_side(&tap_text, &oracle_text);
    for (what, pcap, text, shark) in [
        ("tap", &tap, &tap_text, &tap_shark),
        ("tcpdump", &oracle, &oracle_text, &oracle_shark),
    ] {
        assert_eq!(
            pcap.records.len(),
            text.len(),
            "tcpdump shows a different number of packets than {what}'s file holds"
        );
        assert_eq!(
            pcap.records.len(),
            shark.len(),
            "tshark shows a different number of packets than {what}'s file holds"
        );
    }
    assert_eq!(
        tap.records.len(),
        oracle.records.len(),
        "tap captured {} packets, tcpdump {}:\n{}",
        tap.records.len(),
        oracle.records.len(),
        listing()
    );
    let mut pairs = Vec::with_capacity(tap.records.len());
    for (i, j) in pair_by_stream(&tap, &oracle, &listing) {
        let t = &tap.records[i];
        let o = &oracle.records[j];
        assert_eq!(
            t.orig_len,
            o.orig_len,
            "tap's packet {i} (tcpdump's {j}): original length differs:\n{}",
            listing()
        );
        if t.data != o.data {
            let at = t
                .data
                .iter()
                .zip(&o.data)
                .position(|(a, b)| a != b)
                .unwrap_or(t.data.len().min(o.data.len()));
            panic!(
                "tap's packet {i} (tcpdump's {j}): bytes differ (tap {} bytes, tcpdump {}, first difference at {at}):\n{}",
                t.data.len(),
                o.data.len(),
                listing()
            );
        }
        assert_eq!(
            tap_text[i], oracle_text[j],
            "tcpdump decodes tap's packet {i} and tcpdump's {j} differently"
        );
        assert_eq!(
            tap_shark[i], oracle_shark[j],
            "tshark decodes tap's packet {i} and tcpdump's {j} differently"
        );
        pairs.push((i, j));
    }
    Matched { tap, oracle, pairs }
}

/// How far ahead in a stream a packet may have reached the other capture: two packets of one
/// direction received on two CPUs at once (the sender ran on both) meet the hook and AF_PACKET
/// in either order, since each CPU runs the hook and then tcpdump's tap on its own packet.
const REORDER_WINDOW: usize = 8;

/// Whether two records hold the same packet: the same original length, and the bytes of the
/// shorter a prefix of the longer's (the two may keep different amounts of a big packet).
fn same_packet(a: &Record, b: &Record) -> bool {
    let n = a.data.len().min(b.data.len());
    a.orig_len == b.orig_len && a.data[..n] == b.data[..n]
}

/// Pairs each packet of `tap` with its counterpart in `oracle`: within a stream (a source MAC
/// address, see [`assert_same_packets`]) the first of the next [`REORDER_WINDOW`] packets of
/// `oracle` that is the same packet, or else the next one, whose difference the caller reports.
/// Panics, with `listing()`, when a packet of `tap` has none.
pub fn pair_by_stream(
    tap: &Pcap,
    oracle: &Pcap,
    listing: &dyn Fn() -> String,
) -> Vec<(usize, usize)> {
    let mut queues: HashMap<&[u8], VecDeque<usize>> = HashMap::new();
    for (j, r) in oracle.records.iter().enumerate() {
        queues.entry(stream(&r.data)).or_default().push_back(j);
    }
    tap.records
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let j = queues
                .get_mut(stream(&t.data))
                .and_then(|q| {
                    let at = q
                        .iter()
                        .take(REORDER_WINDOW)
                        .position(|&j| same_packet(t, &oracle.records[j]))
                        .unwrap_or(0);
                    q.remove(at)
                })
                .unwrap_or_else(|| {
                    panic!(
                        "tap's packet {i} has no counterpart in tcpdump's capture:\n{}",
                        listing()
                    )
                });
            (i, j)
        })
        .collect()
}

fn side_by_side(tap: &[String], oracle: &[String]) -> String {
    let mut s = String::from("   # | tap | tcpdump\n");
    for i in 0..tap.len().max(oracle.len()).min(60) {
        let get = |v: &[String]| {
            v.get(i)
                .map_or("-".to_string(), |l| l.chars().take(90).collect())
        };
        s.push_str(&format!("{i:4} | {}\n     | {}\n", get(tap), get(oracle)));
    }
    s
}
