//! Jumbo frames (MTU 9000) are captured whole by each hook: original length equals captured
//! length, byte for byte what tcpdump sees. Native XDP on veth hands such frames over in several
//! buffers, which only a frags-capable program may see at all.

use tap_tests::{
    TempDir, Topology,
    oracle::{assert_same_packets, capture_with_tcpdump},
    topology::{B_V4, B_V6},
    traffic,
};

/// `ping -s 8900`: 8900 + 8 (ICMP) + 20 (IPv4) + 14 (Ethernet) bytes.
const JUMBO_V4: u32 = 8942;
/// `ping -6 -s 8900`: 8900 + 8 (ICMPv6) + 40 (IPv6) + 14 (Ethernet) bytes.
const JUMBO_V6: u32 = 8962;

/// `ways`: 2 when the hook sees replies too.
fn jumbo(hook_args: &[&str], tcpdump_args: &[&str], ways: usize) {
    let t = Topology::with_mtu(9000);
    let dir = TempDir::new();
    let tap_args = [&["-i", t.b_if.as_str()][..], hook_args].concat();
    let run = capture_with_tcpdump(&t.b, &dir, &tap_args, &[(&t.b_if, tcpdump_args)], || {
        // -M do: no fragmentation, so each echo is one 9000-byte-MTU frame.
        for dst in [B_V4, B_V6] {
            traffic::ping(&t.a, dst, 3, &["-s", "8900", "-M", "do"]);
        }
    });
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
    let v4 = tap
        .records
        .iter()
        .filter(|r| r.orig_len == JUMBO_V4)
        .count();
    let v6 = tap
        .records
        .iter()
        .filter(|r| r.orig_len == JUMBO_V6)
        .count();
    assert_eq!((v4, v6), (3 * ways, 3 * ways), "jumbo frames by length");
    assert_eq!(tap.records.len(), v4 + v6);
}

#[test]
fn tc_captures_jumbo_frames_whole() {
    jumbo(&["--hook", "tc"], &[], 2);
}

#[test]
fn xdp_native_captures_jumbo_frames_whole() {
    jumbo(&["--hook", "xdp", "--xdp-mode", "native"], &["-Q", "in"], 1);
}

#[test]
fn xdp_generic_captures_jumbo_frames_whole() {
    jumbo(
        &["--hook", "xdp", "--xdp-mode", "generic"],
        &["-Q", "in"],
        1,
    );
}
