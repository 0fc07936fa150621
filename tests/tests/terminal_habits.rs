//! tcpdump's habits at the terminal: `-D` lists the interfaces, `-Q in|out` picks the direction
//! on the TC hook as tcpdump's `-Q` does, and a glob follows the interfaces that match, those
//! that appear after the start included. The oracles are `ip link` and tcpdump on the same
//! interface at the same time.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use tap_tests::{
    TempDir, Topology,
    oracle::{assert_same_packets, capture_with_tcpdump},
    pcap::Pcap,
    process::Background,
    tap::{self, Summary},
    topology::{A_V4, Addrs, B_V4, SECOND},
    traffic, unique_suffix, wait_until,
};

/// A third link for the glob test (another documentation range).
const THIRD: Addrs = Addrs {
    a_v4: "203.0.113.1",
    b_v4: "203.0.113.2",
    a_v6: "2001:db8:2::1",
    b_v6: "2001:db8:2::2",
};

/// How long a new interface may take to be attached: the follower hears of it from netlink at
/// once and resyncs every few seconds; bounded so a follower that never attaches fails the test.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(20);

/// `-D` names every interface of the namespace with the index `ip link` gives it, and says it
/// is up and which hooks it takes.
#[test]
fn list_interfaces_names_each_with_its_index() {
    let t = Topology::new();
    let exited = Background::spawn_collecting_stdout("tap -D", tap::command(&t.b, &[], &["-D"]))
        .wait(tap::START_TIMEOUT);
    assert!(exited.status.success(), "{}", exited.stderr);
    let listed = exited.stdout;
    // `ip -o link`: "4: veth-b@if5: <...> ..."
    let links = t.b.sh("ip -o link");
    let mut want = BTreeSet::new();
    for line in links.lines() {
        let mut fields = line.split(": ");
        let index = fields.next().unwrap_or_default().trim();
        let name = fields
            .next()
            .unwrap_or_default()
            .split('@')
            .next()
            .unwrap_or_default();
        want.insert(format!("{index}.{name}"));
    }
    assert_eq!(want.len(), 2, "lo and the veth end:\n{links}");
    let got: BTreeSet<String> = listed
        .lines()
        .map(|l| l.split(' ').next().unwrap_or("").to_string())
        .collect();
    assert_eq!(got, want, "tap -D:\n{listed}\nip -o link:\n{links}");
    let veth = listed
        .lines()
        .find(|l| l.contains(&format!(".{} ", t.b_if)))
        .unwrap_or_else(|| panic!("{} not listed:\n{listed}", t.b_if));
    assert!(
        veth.contains("Up") && veth.contains("tc") && veth.contains("xdp"),
        "{veth}"
    );
}

/// `-Q in` and `-Q out` on the TC hook record what tcpdump `-Q in` and `-Q out` record on the
/// same interface: the datagrams and echo requests arriving, the replies and port unreachables
/// leaving.
#[test]
fn direction_on_tc_is_what_tcpdump_q_records() {
    for dir in ["in", "out"] {
        let t = Topology::new();
        let tmp = TempDir::new();
        let side = capture_with_tcpdump(
            &t.b,
            &tmp,
            &["-i", &t.b_if, "--hook", "tc", "-Q", dir],
            &[(&t.b_if, &["-Q", dir])],
            || {
                traffic::udp_burst(&t.a, B_V4, 10, 100);
                traffic::ping(&t.a, B_V4, 3, &[]);
            },
        );
        let matched = assert_same_packets(&side.tap_file, &side.tcpdump_files[0]);
        let records = &matched.tap.records;
        assert!(records.len() >= 3, "-Q {dir}: {} packets", records.len());
        assert_eq!(side.summary.captured, records.len() as u64, "-Q {dir}");
        // Each packet goes the way asked: arriving ones come from a's address, leaving ones
        // from b's.
        let from = if dir == "in" { A_V4 } else { B_V4 };
        for r in records {
            let (src, _) = r.ipv4_addrs().expect("IPv4 only");
            assert_eq!(src.to_string(), from, "-Q {dir}");
        }
    }
}

/// `-Q` on XDP, which sees only arriving packets, is refused with one line unless it is `in`.
#[test]
fn direction_out_on_xdp_is_refused() {
    let t = Topology::new();
    let tmp = TempDir::new();
    let out = tmp.join("never.pcap");
    let exited = tap::run(
        &t.b,
        &[
            "-i",
            &t.b_if,
            "--hook",
            "xdp",
            "-Q",
            "out",
            "-w",
            &out.to_string_lossy(),
        ],
    );
    assert!(!exited.status.success(), "{}", exited.stderr);
    let line = exited.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains("-Q out"), "{line}");
    assert!(!line.contains("panicked"), "{line}");
    assert!(!out.exists(), "a refused capture wrote {}", out.display());
}

/// `-i 'PREFIX*'` taps the matching interfaces there at the start and one that appears later,
/// and not the others: every datagram sent over a matching link is recorded, none of the first
/// link's.
#[test]
fn a_glob_follows_interfaces_that_appear() {
    let t = Topology::new();
    // Names are per namespace, but unique anyway (the pid is in them).
    let prefix = format!("tg{}", unique_suffix());
    let (early, late) = (format!("{prefix}e"), format!("{prefix}l"));
    t.add_link(&format!("{early}a"), &early, &SECOND);
    let tmp = TempDir::new();
    let out = tmp.join("glob.pcap");
    let glob = format!("{prefix}*");
    let tap = tap::start(
        &t.b,
        &[
            "-i",
            &glob,
            "--hook",
            "tc",
            "-Q",
            "in",
            "-w",
            &out.to_string_lossy(),
            "udp",
        ],
    );
    t.add_link(&format!("{late}a"), &late, &THIRD);
    wait_until(&format!("tap to attach to {late}"), FOLLOW_TIMEOUT, || {
        tap.stderr()
            .lines()
            .any(|l| l.contains("attached") && l.contains(&late))
            .then_some(())
    });
    traffic::udp_burst(&t.a, B_V4, 7, 100);
    traffic::udp_burst(&t.a, SECOND.b_v4, 11, 100);
    traffic::udp_burst(&t.a, THIRD.b_v4, 13, 100);
    // The datagrams are sent when udp_burst returns; let the receiving side run its hooks before
    // SIGINT (tap drains the ring on the way out).
    std::thread::sleep(Duration::from_millis(500));
    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    let pcap = Pcap::read(&out);
    let mut per_dst = BTreeMap::new();
    for r in &pcap.records {
        if let Some((_, dst)) = r.ipv4_addrs() {
            *per_dst.entry(dst.to_string()).or_insert(0) += 1;
        }
    }
    assert_eq!(per_dst.get(B_V4), None, "{per_dst:?}");
    assert_eq!(per_dst.get(SECOND.b_v4), Some(&11), "{per_dst:?}");
    assert_eq!(per_dst.get(THIRD.b_v4), Some(&13), "{per_dst:?}");
    assert_eq!(pcap.records.len(), 24, "{per_dst:?}");
    assert_eq!(summary.captured, 24, "{}", exited.stderr);
}

/// `-i any` taps every interface that is up, loopback included, and one that comes up after the
/// start: every datagram arriving on any of them is recorded once.
#[test]
fn any_taps_every_interface_up_and_those_that_come() {
    let t = Topology::new();
    let tmp = TempDir::new();
    let out = tmp.join("any.pcap");
    let tap = tap::start(
        &t.b,
        &[
            "-i",
            "any",
            "--hook",
            "tc",
            "-Q",
            "in",
            "-w",
            &out.to_string_lossy(),
            "udp",
        ],
    );
    let late = format!("ny{}", unique_suffix());
    t.add_link(&format!("{late}a"), &late, &SECOND);
    wait_until(&format!("tap to attach to {late}"), FOLLOW_TIMEOUT, || {
        tap.stderr()
            .lines()
            .any(|l| l.contains("attached") && l.contains(&late))
            .then_some(())
    });
    traffic::udp_burst(&t.a, B_V4, 7, 100);
    traffic::udp_burst(&t.a, SECOND.b_v4, 11, 100);
    traffic::udp_burst(&t.b, "127.0.0.1", 5, 100);
    // As above: the receiving side's hooks run before SIGINT.
    std::thread::sleep(Duration::from_millis(500));
    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    let pcap = Pcap::read(&out);
    let mut per_dst = BTreeMap::new();
    for r in &pcap.records {
        if let Some((_, dst)) = r.ipv4_addrs() {
            *per_dst.entry(dst.to_string()).or_insert(0) += 1;
        }
    }
    assert_eq!(per_dst.get(B_V4), Some(&7), "{per_dst:?}");
    assert_eq!(per_dst.get(SECOND.b_v4), Some(&11), "{per_dst:?}");
    assert_eq!(per_dst.get("127.0.0.1"), Some(&5), "{per_dst:?}");
    assert_eq!(pcap.records.len(), 23, "{per_dst:?}");
    assert_eq!(summary.captured, 23, "{}", exited.stderr);
}
