//! GSO and GRO packets: a bulk TCP transfer over veth with offloads on hands the receiving end
//! 64 KiB super-packets (veth passes the sender's GSO packets on unsegmented). tap on TC records
//! what tcpdump records, the super-packet, whole; generic XDP, which runs on the same packet,
//! too. Native XDP on veth turns segmentation offload off on the sending end, and so sees, as
//! tcpdump does then, the wire-sized segments. BIG TCP packets (up to 300,000 bytes here) are
//! kept up to the snap length on TC, and up to XDP's reach (counted) on XDP; tcpdump's ring
//! keeps only their first 64 KiB, so there tcpdump's bytes are a prefix of tap's.

use tap_tests::{
    Netns, TempDir, Topology,
    oracle::{assert_same_packets, capture_with_tcpdump, pair_by_stream},
    pcap::Pcap,
    topology::{B_V4, B_V6},
    traffic,
};

/// Largest payload of a fixed-size ring record class: longer captures take the exact-size path.
const MAX_CLASS: u32 = 9216;
/// The default snap length, tcpdump's.
const SNAPLEN: u32 = 262_144;
/// The furthest byte XDP can copy (`tap_common::config::XDP_MAX_END`).
const XDP_MAX_END: u32 = 65_535 + 8192;

/// Whether `ethtool -k` shows `feature` on for `iface` in `ns`.
fn offload_on(ns: &Netns, iface: &str, feature: &str) -> bool {
    let out = ns.sh(&format!("ethtool -k {iface}"));
    out.lines()
        .any(|l| l.trim().starts_with(&format!("{feature}: on")))
}

fn assert_offloads_on(t: &Topology) {
    for feature in ["tcp-segmentation-offload", "generic-segmentation-offload"] {
        assert!(
            offload_on(&t.a, &t.a_if, feature),
            "{feature} must be on for the sending veth end"
        );
    }
}

/// tap (`hook_args`) and tcpdump (`tcpdump_args`) on the receiving end of a transfer of `bytes`
/// (iperf3's `-n`): the same packets, byte for byte. Returns tap's packets.
fn bulk_transfer(hook_args: &[&str], tcpdump_args: &[&str], bytes: &str) -> Pcap {
    let t = Topology::new();
    assert_offloads_on(&t);
    let dir = TempDir::new();
    let tap_args = [&["-i", t.b_if.as_str()][..], hook_args].concat();
    // A big buffer, so tcpdump drops none of the packets arriving at full speed. With offloads
    // on, libpcap sizes each slot of its ring for a 64 KiB packet: 128 MiB is about 2,000 slots.
    let tcpdump_args = [&["-B", "131072"][..], tcpdump_args].concat();
    let run = capture_with_tcpdump(&t.b, &dir, &tap_args, &[(&t.b_if, &tcpdump_args)], || {
        traffic::tcp_bulk(&t.a, &t.b, B_V4, bytes);
    });
    assert!(
        !run.summary.extra.iter().any(|l| l.contains("cut short")),
        "nothing is cut short: {:?}",
        run.summary.extra
    );
    let tap = assert_same_packets(&run.tap_file, &run.tcpdump_files[0]).tap;
    for (i, r) in tap.records.iter().enumerate() {
        assert_eq!(
            r.data.len(),
            r.orig_len as usize,
            "packet {i} is cut short: {} of {} bytes",
            r.data.len(),
            r.orig_len
        );
    }
    tap
}

fn largest(p: &Pcap) -> u32 {
    p.records.iter().map(|r| r.orig_len).max().unwrap_or(0)
}

#[test]
fn tc_records_64k_gso_packets_whole_as_tcpdump_does() {
    let tap = bulk_transfer(&["--hook", "tc"], &[], "8M");
    let large = tap.records.iter().filter(|r| r.orig_len > 60_000).count();
    assert!(
        large >= 10,
        "an 8 MB transfer with TSO on makes many 64 KiB packets: {large} above 60,000 bytes, the largest {}",
        largest(&tap)
    );
}

#[test]
fn xdp_generic_records_64k_gso_packets_whole_as_tcpdump_does() {
    let tap = bulk_transfer(
        &["--hook", "xdp", "--xdp-mode", "generic"],
        &["-Q", "in"],
        "8M",
    );
    assert!(
        largest(&tap) > 60_000,
        "generic XDP runs on the unsegmented packet: the largest is {}",
        largest(&tap)
    );
}

#[test]
fn xdp_native_on_veth_sees_wire_sized_segments_as_tcpdump_does() {
    // 2 MB: at most about 1,450 segments, which tcpdump's ring holds even while it falls behind.
    let tap = bulk_transfer(
        &["--hook", "xdp", "--xdp-mode", "native"],
        &["-Q", "in"],
        "2M",
    );
    assert!(
        largest(&tap) <= 1514,
        "native XDP on veth turns the sender's segmentation offload off: the largest is {}",
        largest(&tap)
    );
    // iperf3 may end the transfer before all of it is sent (the server closes the data
    // connection once told the test is over), so only a lower bound.
    let full = tap.records.iter().filter(|r| r.orig_len == 1514).count();
    assert!(full > 200, "full-size segments: {full}");
}

/// Gives the link BIG TCP (IPv6 GSO and GRO packets of up to 300,000 bytes), runs a 16 MB
/// transfer over IPv6, and checks tap's capture against tcpdump's: the same packets with the
/// same original lengths, tap keeping each up to `keep` bytes and tcpdump's bytes a prefix of
/// tap's. Returns tap's packets and summary.
fn big_tcp(
    hook_args: &[&str],
    tcpdump_args: &[&str],
    keep: u32,
) -> (Pcap, tap_tests::tap::Summary) {
    let t = Topology::new();
    assert_offloads_on(&t);
    t.a.sh(&format!("ip link set {} gso_max_size 300000", t.a_if));
    t.b.sh(&format!("ip link set {} gro_max_size 300000", t.b_if));
    let dir = TempDir::new();
    let tap_args = [&["-i", t.b_if.as_str()][..], hook_args].concat();
    let tcpdump_args = [&["-B", "131072"][..], tcpdump_args].concat();
    let run = capture_with_tcpdump(&t.b, &dir, &tap_args, &[(&t.b_if, &tcpdump_args)], || {
        traffic::tcp_bulk(&t.a, &t.b, B_V6, "16M");
    });
    let tap = Pcap::read(&run.tap_file);
    let oracle = Pcap::read(&run.tcpdump_files[0]);
    assert_eq!(
        tap.snaplen, SNAPLEN,
        "tap's file header says tcpdump's snap length"
    );
    assert_eq!(
        tap.records.len(),
        oracle.records.len(),
        "tap captured {} packets, tcpdump {}",
        tap.records.len(),
        oracle.records.len()
    );
    let listing = || String::new();
    for (i, j) in pair_by_stream(&tap, &oracle, &listing) {
        let (a, o) = (&tap.records[i], &oracle.records[j]);
        assert_eq!(a.orig_len, o.orig_len, "packet {i}: original length");
        assert_eq!(
            a.data.len(),
            a.orig_len.min(keep) as usize,
            "packet {i} of {} bytes: captured length",
            a.orig_len
        );
        assert!(
            o.data.len() <= a.data.len() && a.data[..o.data.len()] == o.data[..],
            "packet {i}: tcpdump's {} bytes are not the start of tap's {}",
            o.data.len(),
            a.data.len()
        );
    }
    assert!(
        largest(&tap) > XDP_MAX_END,
        "BIG TCP makes packets above 64 KiB: the largest is {}",
        largest(&tap)
    );
    (tap, run.summary)
}

#[test]
fn tc_keeps_big_tcp_packets_up_to_the_snap_length() {
    let (tap, summary) = big_tcp(&["--hook", "tc"], &[], SNAPLEN);
    assert!(
        !summary.extra.iter().any(|l| l.contains("cut short")),
        "cut at the snap length is what -s asked: {:?}",
        summary.extra
    );
    assert!(tap.records.iter().any(|r| r.data.len() as u32 > MAX_CLASS));
}

#[test]
fn xdp_generic_counts_big_tcp_packets_past_its_reach() {
    let (tap, summary) = big_tcp(
        &["--hook", "xdp", "--xdp-mode", "generic"],
        &["-Q", "in"],
        XDP_MAX_END,
    );
    let cut = tap
        .records
        .iter()
        .filter(|r| r.orig_len > XDP_MAX_END)
        .count();
    assert!(cut > 0);
    let line = format!(
        "{cut} packets cut short of the snap length (XDP reads at most {XDP_MAX_END} bytes of a frame)"
    );
    assert!(
        summary.extra.contains(&line),
        "the summary counts them: {line:?} in {:?}",
        summary.extra
    );
}
