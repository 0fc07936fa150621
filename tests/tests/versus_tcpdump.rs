//! tap and tcpdump on the same interface at the same time see the same packets: the same count,
//! the same bytes, in the same order in each direction, with timestamps that agree. tcpdump and
//! tshark both read tap's file without a complaint and decode it as they decode tcpdump's own.

use std::collections::HashMap;

use tap_tests::{
    TempDir, Topology,
    oracle::{assert_same_packets, capture_with_tcpdump},
    pcap::Kind,
    topology::{B_V4, B_V6},
    traffic::{self, HttpServer},
};

/// Tolerance between tap's and tcpdump's timestamp of one packet. Both are taken on the packet's
/// way through the same softirq run, microseconds apart (tcx right after or before AF_PACKET's
/// tap; XDP in veth's NAPI poll just before the stack), and tap converts the monotonic clock to
/// wall time once per batch with sub-microsecond error: the typical gap is tens of microseconds.
/// The slack covers a vCPU of a busy two-core VM being preempted between the two points.
const TS_TOLERANCE_NS: u128 = 5_000_000;
/// Half or more of the packets must agree within this (the "~1 ms" the design promises).
const TS_TYPICAL_NS: u128 = 1_000_000;

/// ICMP, UDP and TCP from `a` to `b`, each over IPv4 and IPv6: 3 pings each way, 3 UDP
/// datagrams echoed back, one HTTP GET.
fn converse(t: &Topology) {
    for dst in [B_V4, B_V6] {
        traffic::ping(&t.a, dst, 3, &[]);
    }
    traffic::udp_echo(&t.a, &t.b, &[B_V4, B_V6], &[1, 100, 1400]);
    for dst in [B_V4, B_V6] {
        traffic::http_get(&t.a, dst);
    }
}

/// Captures [`converse`] on `b`'s end with tap (`hook_args`) and tcpdump (`tcpdump_args`) and
/// compares them. `ways`: 2 when the hook sees replies too.
fn compare(hook_args: &[&str], tcpdump_args: &[&str], ways: usize) {
    let t = Topology::new();
    let dir = TempDir::new();
    let www = dir.join("www");
    std::fs::create_dir(&www).unwrap();
    let _http = HttpServer::start(&t.b, &www);
    let tap_args = [&["-i", t.b_if.as_str()][..], hook_args].concat();
    let run = capture_with_tcpdump(&t.b, &dir, &tap_args, &[(&t.b_if, tcpdump_args)], || {
        converse(&t);
    });
    let matched = assert_same_packets(&run.tap_file, &run.tcpdump_files[0]);
    let tap = &matched.tap;
    assert_eq!(
        run.summary.captured as usize,
        tap.records.len(),
        "summary vs file: {:?}",
        run.summary
    );
    assert!(tap.nanos, "tap writes nanosecond pcap");
    let (before, after) = (run.before_ns, run.after_ns);

    // Not vacuous: every kind of traffic is there, in the numbers sent.
    let kinds: HashMap<Kind, usize> = tap.records.iter().fold(HashMap::new(), |mut m, r| {
        *m.entry(r.kind()).or_default() += 1;
        m
    });
    for (kind, n) in [
        (Kind::Icmp4, 3),
        (Kind::Icmp6, 3),
        (Kind::Udp4, 3),
        (Kind::Udp6, 3),
    ] {
        assert_eq!(
            kinds.get(&kind).copied().unwrap_or(0),
            n * ways,
            "{kind:?} packets in {kinds:?}"
        );
    }
    // A handshake, a request, a response, two FINs and their ACKs at the very least.
    for kind in [Kind::Tcp4, Kind::Tcp6] {
        assert!(
            kinds.get(&kind).copied().unwrap_or(0) >= 4 * ways,
            "{kind:?} packets in {kinds:?}"
        );
    }
    assert_eq!(tap.records.len(), kinds.values().sum::<usize>());
    assert!(
        !kinds.contains_key(&Kind::Other) && !kinds.contains_key(&Kind::Arp),
        "stray packets: {kinds:?}"
    );

    // Timestamps: close to tcpdump's for the same packet, and to the clock at capture time.
    let mut gaps: Vec<u128> = Vec::with_capacity(matched.pairs.len());
    for &(i, j) in &matched.pairs {
        let (ts, theirs) = (tap.ts_ns(i), matched.oracle.ts_ns(j));
        let gap = ts.abs_diff(theirs);
        assert!(
            gap <= TS_TOLERANCE_NS,
            "packet {i}: tap's timestamp {ts} is {gap} ns from tcpdump's {theirs}"
        );
        assert!(
            ts + 1_000_000_000 >= before && ts <= after + 1_000_000_000,
            "packet {i}: timestamp {ts} is not within a second of the capture ({before}..{after})"
        );
        gaps.push(gap);
    }
    gaps.sort_unstable();
    let median = gaps[gaps.len() / 2];
    eprintln!(
        "{} packets; gap to tcpdump's timestamps: median {median} ns, largest {} ns",
        gaps.len(),
        gaps[gaps.len() - 1]
    );
    assert!(
        median <= TS_TYPICAL_NS,
        "median gap to tcpdump is {median} ns (sorted gaps: {gaps:?})"
    );
}

#[test]
fn tc_sees_both_directions_like_tcpdump() {
    compare(&["--hook", "tc"], &[], 2);
}

#[test]
fn xdp_native_sees_ingress_like_tcpdump() {
    compare(&["--hook", "xdp", "--xdp-mode", "native"], &["-Q", "in"], 1);
}

#[test]
fn xdp_generic_sees_ingress_like_tcpdump() {
    compare(
        &["--hook", "xdp", "--xdp-mode", "generic"],
        &["-Q", "in"],
        1,
    );
}
