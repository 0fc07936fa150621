//! The drain's mechanisms, checked end to end: records read in place in batches keep each CPU's
//! order and lose nothing below capacity; a ring too small for the traffic loses packets, but
//! every one of them is counted, and the file holds exactly what the summary says it does.

use std::process::Stdio;

use tap_tests::{
    TempDir, Topology,
    pcap::Pcap,
    process::Background,
    tap::{self, Summary},
    topology::B_V4,
};

/// One sender pinned to a CPU: `count` UDP datagrams to port 9 of `host`, each carrying the
/// sender's number and a sequence number (both big-endian u32) at the start of its payload.
/// veth runs the receiving side's programs on the sending CPU, so a sender's datagrams are one
/// CPU's records, in the order it sent them.
const SENDER: &str = r#"
import os, socket, struct, sys
host, cpu, sender, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
os.sched_setaffinity(0, {cpu})
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
pad = bytes(size - 8)
for seq in range(count):
    s.sendto(struct.pack("!II", sender, seq) + pad, (host, 9))
"#;

/// The datagram count per sender: enough for many batches (a batch is at most 8,192 records).
const PER_SENDER: u32 = 30_000;

/// `(sender, sequence)` of a captured IPv4 UDP datagram to port 9, from its payload.
fn tag(frame: &[u8]) -> Option<(u32, u32)> {
    let is_udp_v4 = frame.get(12..14)? == [0x08, 0x00] && *frame.get(23)? == 17;
    let ihl = usize::from(frame.get(14)? & 0x0f) * 4;
    let udp = 14 + ihl;
    if !is_udp_v4 || frame.get(udp + 2..udp + 4)? != [0, 9] {
        return None;
    }
    let word = |at: usize| Some(u32::from_be_bytes(frame.get(at..at + 4)?.try_into().ok()?));
    Some((word(udp + 8)?, word(udp + 12)?))
}

/// Starts [`SENDER`] in namespace a on `cpu` (its sender number too).
fn sender(t: &Topology, cpu: u32, count: u32, size: usize) -> Background {
    let mut cmd = t.a.cmd("python3");
    let (cpu, count, size) = (cpu.to_string(), count.to_string(), size.to_string());
    cmd.args(["-c", SENDER, B_V4, &cpu, &cpu, &count, &size])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    Background::spawn("UDP sender", cmd)
}

/// Starts tap on namespace b's end of the link, TC ingress, for the senders' datagrams.
fn capture(t: &Topology, file: &std::path::Path, extra: &[&str]) -> Background {
    let file = file.to_string_lossy();
    let mut args = vec!["-i", &t.b_if, "--hook", "tc-ingress", "-w", &file];
    args.extend_from_slice(extra);
    args.push("udp dst port 9");
    tap::start(&t.b, &args)
}

/// Senders, one per CPU: the test is about more than one CPU's records sharing the ring.
const SENDERS: u32 = 2;

#[test]
fn batches_keep_each_cpus_order_and_lose_nothing() {
    let t = Topology::new();
    let dir = TempDir::new();
    let file = dir.join("order.pcap");
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert!(
        cpus >= SENDERS as usize,
        "this test needs {SENDERS} CPUs (one sender on each), the machine has {cpus}"
    );
    let tap = capture(&t, &file, &[]);
    // One sender per CPU, all at once.
    let senders: Vec<Background> = (0..SENDERS)
        .map(|cpu| sender(&t, cpu, PER_SENDER, 64))
        .collect();
    let n_senders = SENDERS;
    for s in senders {
        let exited = s.wait(std::time::Duration::from_secs(120));
        assert!(exited.status.success(), "sender failed:\n{}", exited.stderr);
    }
    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    assert_eq!(
        (summary.ring_dropped, summary.writer_dropped),
        (0, 0),
        "drops below capacity:\n{}",
        exited.stderr
    );
    let pcap = Pcap::read(&file);
    assert_eq!(
        pcap.records.len() as u64,
        summary.captured,
        "{}",
        exited.stderr
    );
    let mut next = vec![0u32; n_senders as usize];
    for (i, r) in pcap.records.iter().enumerate() {
        // The filter selects the senders' datagrams only.
        let (sender, seq) = tag(&r.data).unwrap_or_else(|| panic!("record {i} is no sender's"));
        assert!(sender < n_senders, "record {i}: unknown sender {sender}");
        assert_eq!(
            seq, next[sender as usize],
            "record {i}: sender {sender}'s datagram {seq} where {} was due",
            next[sender as usize]
        );
        next[sender as usize] += 1;
    }
    assert_eq!(
        next,
        vec![PER_SENDER; n_senders as usize],
        "datagrams captured per sender"
    );
}

#[test]
fn an_overflowing_ring_counts_every_loss() {
    let t = Topology::new();
    let dir = TempDir::new();
    let file = dir.join("overflow.pcap");
    // Two pages of ring (five records): a burst of 1,000-byte datagrams from one CPU outruns the
    // drain.
    let tap = capture(&t, &file, &["--ring-size", "8192"]);
    let exited = sender(&t, 0, PER_SENDER, 1000).wait(std::time::Duration::from_secs(120));
    assert!(exited.status.success(), "sender failed:\n{}", exited.stderr);
    let exited = tap::stop(tap);
    let s = Summary::parse(&exited.stderr);
    assert!(
        s.ring_dropped > 0,
        "no loss to count with a 8 KiB ring:\n{}",
        exited.stderr
    );
    assert_eq!(
        s.captured + s.ring_dropped + s.writer_dropped,
        s.received,
        "selected = written + drops:\n{}",
        exited.stderr
    );
    // The kernel may drop some of the burst before tc (its backlog queue), never add to it.
    assert!(s.received <= u64::from(PER_SENDER), "{}", exited.stderr);
    let pcap = Pcap::read(&file);
    assert_eq!(
        pcap.records.len() as u64,
        s.captured,
        "the file holds what the summary says"
    );
    // What was written is still in order, with gaps where the ring was full.
    let seqs: Vec<u32> = pcap
        .records
        .iter()
        .filter_map(|r| tag(&r.data))
        .map(|(_, seq)| seq)
        .collect();
    assert_eq!(seqs.len() as u64, s.captured);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "records out of order");
}
