//! `-s 100` keeps the first 100 bytes of each packet and its original length, exactly as
//! `tcpdump -s 100` does, and says 100 in the file header.

use tap_tests::{
    TempDir, Topology,
    oracle::{assert_same_packets, capture_with_tcpdump},
    topology::B_V4,
    traffic,
};

const SNAPLEN: usize = 100;
/// `ping -s 1000`: 1000 + 8 (ICMP) + 20 (IPv4) + 14 (Ethernet) bytes.
const LONG: u32 = 1042;
/// A default ping: 56 + 8 + 20 + 14 bytes, shorter than the snap length.
const SHORT: u32 = 98;

/// `ways`: 2 when the hook sees replies too.
fn snaplen(hook_args: &[&str], tcpdump_args: &[&str], ways: usize) {
    let t = Topology::new();
    let dir = TempDir::new();
    let tap_args = [&["-i", t.b_if.as_str(), "-s", "100"][..], hook_args].concat();
    let tcpdump_args = [&["-s", "100"][..], tcpdump_args].concat();
    let run = capture_with_tcpdump(&t.b, &dir, &tap_args, &[(&t.b_if, &tcpdump_args)], || {
        traffic::ping(&t.a, B_V4, 3, &["-s", "1000"]);
        traffic::ping(&t.a, B_V4, 2, &[]);
    });
    let tap = assert_same_packets(&run.tap_file, &run.tcpdump_files[0]).tap;
    assert_eq!(
        tap.snaplen as usize, SNAPLEN,
        "snap length in the file header"
    );
    for (i, r) in tap.records.iter().enumerate() {
        assert_eq!(
            r.data.len(),
            (r.orig_len as usize).min(SNAPLEN),
            "packet {i}: {} of {} bytes kept",
            r.data.len(),
            r.orig_len
        );
    }
    let long = tap.records.iter().filter(|r| r.orig_len == LONG).count();
    let short = tap.records.iter().filter(|r| r.orig_len == SHORT).count();
    assert_eq!(
        (long, short),
        (3 * ways, 2 * ways),
        "packets by original length"
    );
    assert_eq!(tap.records.len(), long + short);
}

#[test]
fn tc_truncates_and_keeps_original_length() {
    snaplen(&["--hook", "tc"], &[], 2);
}

#[test]
fn xdp_truncates_and_keeps_original_length() {
    snaplen(&["--hook", "xdp", "--xdp-mode", "native"], &["-Q", "in"], 1);
}
