//! One capture on two interfaces: each packet of each link is in tap's file, as tcpdump sees it
//! on that link.

use tap_tests::{
    TempDir, Topology,
    oracle::{assert_same_packets, capture_with_tcpdump},
    pcap::Pcap,
    topology::{FIRST, SECOND},
    traffic,
};

/// `ways`: 2 when the hook sees replies too.
fn two_links(hook_args: &[&str], tcpdump_args: &[&str], ways: usize) {
    let t = Topology::new();
    let (second_a, second_b) = ("veth2-a", "veth2-b");
    t.add_link(second_a, second_b, &SECOND);
    let dir = TempDir::new();
    let tap_args = [&["-i", t.b_if.as_str(), "-i", second_b][..], hook_args].concat();
    let run = capture_with_tcpdump(
        &t.b,
        &dir,
        &tap_args,
        &[(&t.b_if, tcpdump_args), (second_b, tcpdump_args)],
        || {
            // Alternate between the links, so the two interfaces' packets interleave in the ring.
            for _ in 0..3 {
                traffic::ping(&t.a, FIRST.b_v4, 1, &[]);
                traffic::ping(&t.a, SECOND.b_v4, 1, &[]);
            }
        },
    );
    // tcpdump captures one interface at a time: compare tap's file with both of its files as one.
    let mut both = Pcap::read(&run.tcpdump_files[0]);
    both.records
        .extend(Pcap::read(&run.tcpdump_files[1]).records);
    let merged = dir.join("tcpdump-both.pcap");
    both.write(&merged);
    let tap = assert_same_packets(&run.tap_file, &merged).tap;

    let on_link = |addrs: &tap_tests::topology::Addrs| {
        let ends = [addrs.a_v4.parse().unwrap(), addrs.b_v4.parse().unwrap()];
        tap.records
            .iter()
            .filter(|r| {
                r.ipv4_addrs()
                    .is_some_and(|(s, d)| ends.contains(&s) && ends.contains(&d))
            })
            .count()
    };
    assert_eq!(
        (on_link(&FIRST), on_link(&SECOND)),
        (3 * ways, 3 * ways),
        "packets per link"
    );
    assert_eq!(tap.records.len(), 6 * ways);
    assert_eq!(run.summary.captured as usize, tap.records.len());
}

#[test]
fn tc_on_two_interfaces() {
    two_links(&["--hook", "tc"], &[], 2);
}

#[test]
fn xdp_on_two_interfaces() {
    two_links(&["--hook", "xdp"], &["-Q", "in"], 1);
}
