use std::{fmt::Write as _, net::Ipv4Addr};

use tap_common::filter::{MAX_RULES, l4};

use super::*;
use crate::filter::{compile, eval::eval, image};

/// Compiles a non-empty expression and checks the graph invariants.
fn c(s: &str) -> CompiledFilter {
    let cf = match compile(s) {
        Ok(Some(cf)) => cf,
        other => panic!("{s:?} -> {other:?}"),
    };
    check_graph(&cf);
    cf
}

/// The invariants the kernel relies on.
pub(crate) fn check_graph(cf: &CompiledFilter) {
    let n = cf.nodes.len();
    assert!(n <= MAX_NODES as usize);
    let valid = |from: Option<usize>, t: u16| {
        if t == TARGET_REJECT {
            return;
        }
        if t & TARGET_ACCEPT != 0 {
            assert!(
                usize::from(t & !TARGET_ACCEPT) < cf.rules.len().max(1),
                "rule {t:#x} of {:?}",
                cf.rules
            );
            return;
        }
        assert!(usize::from(t) < n, "target {t} of {n} nodes");
        if let Some(i) = from {
            assert!(usize::from(t) > i, "backward jump {i} -> {t}");
        }
    };
    valid(None, cf.entry);
    for (i, node) in cf.nodes.iter().enumerate() {
        valid(Some(i), node.jt);
        valid(Some(i), node.jf);
        assert!(node.op < op::COUNT);
        assert!(node.depth <= tap_common::filter::MAX_VLAN_DEPTH);
        let sets = match node.op {
            op::ADDR4 | op::ARP_ADDR => cf.addr4_sets.len(),
            op::ADDR6 => cf.addr6_sets.len(),
            op::PORT4 | op::PORT6 => cf.port_sets.len(),
            op::ETHER_ADDR => cf.mac_sets.len(),
            _ => {
                assert_eq!((node.set, node.dir), (0, 0), "non-set atom {node:?}");
                continue;
            }
        };
        assert!(usize::from(node.set) < sets, "set {} of {sets}", node.set);
        assert!((dir::SRC..=dir::SRC_AND_DST).contains(&node.dir));
    }
    assert!(longest_walk(&cf.nodes, cf.entry) <= MAX_STEPS as usize);
    assert!(cf.rules.len() <= MAX_RULES as usize);
}

/// `(op, depth, dir, set, arg)` of each node.
fn atoms(cf: &CompiledFilter) -> Vec<(u8, u8, u8, u8, u32)> {
    cf.nodes
        .iter()
        .map(|n| (n.op, n.depth, n.dir, n.set, n.arg))
        .collect()
}

/// `(jt, jf)` of each node.
fn jumps(cf: &CompiledFilter) -> Vec<(u16, u16)> {
    cf.nodes.iter().map(|n| (n.jt, n.jf)).collect()
}

const A0: u16 = TARGET_ACCEPT;
const R: u16 = TARGET_REJECT;

fn too_large(s: &str) -> (&'static str, usize, usize) {
    match compile(s) {
        Err(FilterError::TooLarge { what, count, max }) => (what, count, max),
        other => panic!("{s:?} -> {other:?}"),
    }
}

#[test]
fn empty_expression_is_no_filter() {
    assert_eq!(compile(""), Ok(None));
    let img = image("   ").unwrap();
    assert_eq!(img.graph, None);
    assert!(img.rules.is_empty());
}

#[test]
fn single_atoms_and_targets() {
    let cf = c("ip");
    assert_eq!(atoms(&cf), vec![(op::ETHERTYPE, 0, 0, 0, 0x0800)]);
    assert_eq!(jumps(&cf), vec![(A0, R)]);
    assert_eq!(
        (cf.entry, cf.uses, cf.rules.clone()),
        (0, 0, vec!["ip".to_string()])
    );

    let cf = c("tcp");
    assert_eq!(
        atoms(&cf),
        vec![(op::IP4_PROTO, 0, 0, 0, 6), (op::IP6_PROTO, 0, 0, 0, 6)]
    );
    assert_eq!(jumps(&cf), vec![(A0, 1), (A0, R)]);

    let cf = c("icmp6");
    assert_eq!(atoms(&cf), vec![(op::IP6_PROTO, 0, 0, 0, 58)]);
    let cf = c("proto 47");
    assert_eq!(
        atoms(&cf),
        vec![(op::IP4_PROTO, 0, 0, 0, 47), (op::IP6_PROTO, 0, 0, 0, 47)]
    );
    let cf = c("ether proto 0x88cc");
    assert_eq!(atoms(&cf), vec![(op::ETHERTYPE, 0, 0, 0, 0x88cc)]);
    let cf = c("protochain 6");
    assert_eq!(atoms(&cf), vec![(op::PROTOCHAIN, 0, 0, 0, 6)]);
    let cf = c("ip6 protochain 17");
    assert_eq!(
        atoms(&cf),
        vec![
            (op::ETHERTYPE, 0, 0, 0, 0x86dd),
            (op::PROTOCHAIN, 0, 0, 0, 17)
        ]
    );
    assert_eq!(jumps(&cf), vec![(1, R), (A0, R)]);
}

#[test]
fn host_is_ip_arp_rarp_sharing_one_set() {
    let cf = c("host 192.0.2.1");
    let d = dir::SRC_OR_DST;
    assert_eq!(
        atoms(&cf),
        vec![
            (op::ADDR4, 0, d, 0, 0),
            (op::ARP_ADDR, 0, d, 0, 0x0806),
            (op::ARP_ADDR, 0, d, 0, 0x8035)
        ]
    );
    assert_eq!(jumps(&cf), vec![(A0, 1), (A0, 2), (A0, R)]);
    assert_eq!(cf.addr4_sets, vec![vec![([192, 0, 2, 1], 32)]]);
    assert_eq!(cf.uses, uses::ADDR4 | uses::ARP);

    let cf = c("ip src host 192.0.2.1");
    assert_eq!(atoms(&cf), vec![(op::ADDR4, 0, dir::SRC, 0, 0)]);
    let cf = c("arp dst net 192.0.2.0/24");
    assert_eq!(atoms(&cf), vec![(op::ARP_ADDR, 0, dir::DST, 0, 0x0806)]);
    assert_eq!(cf.addr4_sets, vec![vec![([192, 0, 2, 0], 24)]]);
    assert_eq!(cf.uses, uses::ARP);

    let cf = c("src and dst host 2001:db8::1");
    assert_eq!(atoms(&cf), vec![(op::ADDR6, 0, dir::SRC_AND_DST, 0, 0)]);
    assert_eq!(cf.uses, uses::ADDR6);

    let cf = c("ether src aa:bb:cc:dd:ee:ff");
    assert_eq!(atoms(&cf), vec![(op::ETHER_ADDR, 0, dir::SRC, 0, 0)]);
    assert_eq!(
        cf.mac_sets,
        vec![vec![[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]]]
    );
    assert_eq!(cf.uses, uses::MAC);
}

#[test]
fn port_is_port6_then_port4() {
    let cf = c("port 80");
    let d = dir::SRC_OR_DST;
    assert_eq!(
        atoms(&cf),
        vec![(op::PORT6, 0, d, 0, l4::ANY), (op::PORT4, 0, d, 0, l4::ANY)]
    );
    assert_eq!(cf.port_sets, vec![vec![80..=80]]);
    assert_eq!(cf.uses, uses::PORTS);
    let cf = c("tcp dst portrange 1000-2000");
    assert_eq!(
        atoms(&cf),
        vec![
            (op::PORT6, 0, dir::DST, 0, l4::TCP),
            (op::PORT4, 0, dir::DST, 0, l4::TCP)
        ]
    );
    assert_eq!(cf.port_sets, vec![vec![1000..=2000]]);
    let cf = c("port ntp");
    assert_eq!(cf.nodes[0].arg, l4::UDP);
}

#[test]
fn and_or_not_graphs() {
    // ip and not arp: ETHERTYPE 0x800 -> ETHERTYPE 0x806 -> reject / accept.
    let cf = c("ip and not arp");
    assert_eq!(jumps(&cf), vec![(1, R), (R, A0)]);
    // (ip or arp) and vlan: both tests jump to the vlan test.
    let cf = c("ip or arp and vlan");
    assert_eq!(
        atoms(&cf).iter().map(|a| a.0).collect::<Vec<_>>(),
        vec![op::ETHERTYPE, op::ETHERTYPE, op::VLAN]
    );
    assert_eq!(jumps(&cf), vec![(2, 1), (2, R), (A0, R)]);
    // not (ip or arp)
    let cf = c("not (ip or arp)");
    assert_eq!(jumps(&cf), vec![(R, 1), (R, A0)]);
    // Rules: two alternatives.
    let cf = c("ip and udp or arp");
    assert_eq!(cf.rules, vec!["ip and udp".to_string(), "arp".to_string()]);
    assert_eq!(jumps(&cf), vec![(1, 3), (A0, 2), (A0, 3), (A0 | 1, R)]);
}

#[test]
fn vlan_depth_reaches_the_nodes() {
    let cf = c("vlan 10 and vlan and tcp");
    assert_eq!(
        atoms(&cf),
        vec![
            (op::VLAN, 0, 0, 0, 10),
            (op::VLAN, 1, 0, 0, VLAN_ANY),
            (op::IP4_PROTO, 2, 0, 0, 6),
            (op::IP6_PROTO, 2, 0, 0, 6)
        ]
    );
    // Same host at different depths: separate atoms, one shared set.
    let cf = c("host 192.0.2.1 or vlan and host 192.0.2.1");
    assert_eq!(cf.nodes.len(), 7);
    assert_eq!(cf.addr4_sets.len(), 1);
}

#[test]
fn zero_length_prefixes_test_only_the_protocol() {
    let cf = c("ip6 src net ::/0");
    assert_eq!(atoms(&cf), vec![(op::ETHERTYPE, 0, 0, 0, 0x86dd)]);
    let cf = c("src and dst net 0.0.0.0/0");
    assert_eq!(
        atoms(&cf),
        vec![
            (op::ETHERTYPE, 0, 0, 0, 0x0800),
            (op::ETHERTYPE, 0, 0, 0, 0x0806),
            (op::ETHERTYPE, 0, 0, 0, 0x8035)
        ]
    );
    assert_eq!(cf.uses, 0);
}

#[test]
fn constant_filters() {
    let cf = c("ip proto 300");
    assert!(cf.nodes.is_empty());
    assert_eq!(cf.entry, TARGET_REJECT);
    let cf = c("not ether proto 70000");
    assert!(cf.nodes.is_empty());
    assert_eq!(cf.entry, TARGET_ACCEPT);
    let cf = c("ip proto 300 or tcp");
    assert_eq!(cf.rules.len(), 2);
    assert_eq!(jumps(&cf), vec![(A0 | 1, 1), (A0 | 1, R)]);
    let cf = c("tcp and not protochain 256");
    assert_eq!(cf.nodes.len(), 2);
}

#[test]
fn four_thousand_hosts_are_three_atoms() {
    let hosts: Vec<String> = (0..4096u32)
        .map(|i| format!("host {}", Ipv4Addr::from(0x0a00_0000 + i)))
        .collect();
    let cf = c(&hosts.join(" or "));
    assert!(cf.nodes.len() <= 4, "{}", cf.nodes.len());
    assert_eq!(cf.nodes.len(), 3);
    assert_eq!(cf.addr4_sets.len(), 1);
    assert_eq!(cf.addr4_sets[0].len(), 4096);
    assert_eq!(
        cf.rules,
        vec!["host 10.0.0.0 or host 10.0.0.1 or … (4096 alternatives)".to_string()]
    );
    assert_eq!(lpm4_entries(&cf.addr4_sets).len(), 4096);
    // The abbreviated form is the same filter.
    let mut short = String::from("host 10.0.0.0");
    for i in 1..4096u32 {
        write!(short, " or {}", Ipv4Addr::from(0x0a00_0000 + i)).unwrap();
    }
    let cf2 = c(&short);
    assert_eq!(
        (cf2.nodes.clone(), cf2.addr4_sets.clone()),
        (cf.nodes.clone(), cf.addr4_sets.clone())
    );
    // And it matches what it should.
    let packet = pkt_v4([10, 0, 15, 255], [1, 1, 1, 1], 6, 1, 2);
    assert_eq!(eval(&cf, &packet), Some(0));
    assert_eq!(
        eval(&cf, &pkt_v4([10, 0, 16, 0], [1, 1, 1, 1], 6, 1, 2)),
        None
    );
}

#[test]
fn four_thousand_nets_and_ipv6_hosts() {
    let nets: Vec<String> = (0..4096u32)
        .map(|i| format!("net {}/24", Ipv4Addr::from(0x0a00_0000 + (i << 8))))
        .collect();
    let cf = c(&nets.join(" or "));
    assert_eq!(cf.nodes.len(), 3);
    assert_eq!(cf.addr4_sets[0].len(), 4096);
    let hosts: Vec<String> = (0..4096u32)
        .map(|i| format!("ip6 src host 2001:db8::{i:x}"))
        .collect();
    let cf = c(&hosts.join(" || "));
    assert_eq!(atoms(&cf), vec![(op::ADDR6, 0, dir::SRC, 0, 0)]);
    assert_eq!(lpm6_entries(&cf.addr6_sets).len(), 4096);
}

#[test]
fn thousand_ports_are_two_atoms() {
    let ports: Vec<String> = (1..=1000).map(|p| p.to_string()).collect();
    let cf = c(&format!("port {}", ports.join(" or ")));
    assert_eq!(cf.nodes.len(), 2);
    assert_eq!(cf.port_sets, vec![vec![1..=1000]]);
    assert_eq!(port_masks(&cf.port_sets).len(), 1000);
    let cf = c(&format!(
        "tcp dst port {} or udp port 53",
        ports.join(" or ")
    ));
    assert_eq!(cf.nodes.len(), 4);
    assert_eq!(cf.rules.len(), 2);
}

#[test]
fn merging_inside_expressions() {
    // Under and: the or of ports merges.
    let cf = c("tcp and (port 80 or port 443 or 8080)");
    assert_eq!(cf.nodes.len(), 4);
    assert_eq!(cf.port_sets, vec![vec![80..=80, 443..=443, 8080..=8080]]);
    // not a and not b is not (a or b).
    let cf = c("not host 192.0.2.1 and not host 192.0.2.2 and tcp");
    assert_eq!(cf.nodes.len(), 5);
    assert_eq!(
        cf.addr4_sets,
        vec![vec![([192, 0, 2, 1], 32), ([192, 0, 2, 2], 32)]]
    );
    // Equal sets share a number; different sets do not.
    let cf = c("host 192.0.2.1 and not port 80 or tcp and host 192.0.2.1");
    assert_eq!(cf.addr4_sets.len(), 1);
    // Only same kind, depth, direction and argument merge.
    let cf = c("src host 192.0.2.1 or dst host 192.0.2.2 or tcp port 1 or udp port 1");
    assert_eq!(cf.nodes.len(), 10);
}

#[test]
fn src_and_dst_is_never_merged() {
    let cf = c("src and dst host 192.0.2.1 or src and dst host 192.0.2.2");
    assert_eq!(cf.nodes.len(), 6);
    assert_eq!(cf.addr4_sets.len(), 2);
    assert_eq!(cf.rules.len(), 2);
    let cf = c("src and dst port 1 or 2");
    assert_eq!(cf.nodes.len(), 4);
    // A packet from 192.0.2.1 to 192.0.2.2 matches neither.
    let merged_would_match = pkt_v4([192, 0, 2, 1], [192, 0, 2, 2], 6, 1, 2);
    assert_eq!(
        eval(
            &c("src and dst host 192.0.2.1 or 192.0.2.2"),
            &merged_would_match
        ),
        None
    );
    assert_eq!(
        eval(&c("src and dst port 1 or 2"), &merged_would_match),
        None
    );
}

#[test]
fn rules_number_alternatives_and_merged_ones_share() {
    let cf = c("tcp or host 192.0.2.1 or udp or host 192.0.2.2 or (vlan 7 and icmp)");
    assert_eq!(
        cf.rules,
        vec![
            "tcp".to_string(),
            "host 192.0.2.1 or host 192.0.2.2".to_string(),
            "udp".to_string(),
            "vlan 7 and icmp".to_string()
        ]
    );
    // Each node accepts with its alternative's rule.
    let accepts: Vec<u16> = cf
        .nodes
        .iter()
        .map(|n| n.jt)
        .filter(|t| *t & TARGET_ACCEPT != 0 && *t != R)
        .collect();
    assert_eq!(
        accepts,
        vec![A0, A0, A0 | 1, A0 | 1, A0 | 1, A0 | 2, A0 | 2, A0 | 3]
    );
    assert_eq!(
        eval(&cf, &pkt_v4([192, 0, 2, 2], [1, 1, 1, 1], 1, 0, 0)),
        Some(1)
    );
    assert_eq!(
        eval(&cf, &pkt_v4([192, 0, 2, 3], [1, 1, 1, 1], 17, 0, 0)),
        Some(2)
    );
}

#[test]
fn rules_past_the_limit_fold_into_the_last() {
    let never = vec!["ip proto 300"; 300].join(" or ");
    let cf = c(&format!("{never} or tcp"));
    assert_eq!(cf.rules.len(), MAX_RULES as usize);
    assert_eq!(cf.rules[254], "ip proto 300");
    assert_eq!(
        cf.rules[255],
        "ip proto 300 or ip proto 300 or … (46 alternatives)"
    );
    assert_eq!(jumps(&cf), vec![(A0 | 255, 1), (A0 | 255, R)]);
}

#[test]
fn limits() {
    let many: Vec<String> = (0..=255).map(|p| format!("ip proto {p}")).collect();
    let (what, count, max) = too_large(&format!("{} or ip6 proto 1", many.join(" or ")));
    assert_eq!((what, count, max), ("graph nodes", 257, 256));
    // 64 tests in a row fit, 65 do not.
    let chain = |n: u32| {
        (1..=n)
            .map(|p| format!("ip proto {p}"))
            .collect::<Vec<_>>()
            .join(" and ")
    };
    c(&chain(64));
    assert_eq!(too_large(&chain(65)), ("tests on its longest path", 65, 64));
    let hosts = |n: u32| {
        (1..=n)
            .map(|i| format!("ip host 10.0.0.{i}"))
            .collect::<Vec<_>>()
            .join(" and ")
    };
    c(&hosts(64));
    assert_eq!(
        too_large(&hosts(65)),
        ("distinct IPv4 address sets", 65, 64)
    );
}

#[test]
fn longest_walk_counts_nodes() {
    let cf = c("tcp or udp");
    assert_eq!(longest_walk(&cf.nodes, cf.entry), 4);
    assert_eq!(longest_walk(&cf.nodes, TARGET_ACCEPT), 0);
    let cf = c("ip and tcp");
    assert_eq!(longest_walk(&cf.nodes, cf.entry), 3);
}

#[test]
fn canonical_sets() {
    assert_eq!(
        canonical4(&[
            ([10, 1, 2, 3], 8),
            ([10, 0, 0, 0], 8),
            ([10, 9, 0, 0], 16),
            ([11, 0, 0, 1], 32)
        ]),
        vec![([10, 0, 0, 0], 8), ([11, 0, 0, 1], 32)]
    );
    let a: [u8; 16] = "2001:db8::1"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let net: [u8; 16] = "2001:db8::".parse::<std::net::Ipv6Addr>().unwrap().octets();
    assert_eq!(canonical6(&[(a, 128), (a, 32)]), vec![(net, 32)]);
    assert_eq!(
        canonical_ports(vec![5..=9, 1..=2, 3..=3, 20..=30, 25..=26]),
        vec![1..=3, 5..=9, 20..=30]
    );
    assert_eq!(
        canonical_ports(vec![65535..=65535, 0..=65534]),
        vec![0..=65535]
    );
}

#[test]
fn lpm4_entries_fold_covering_prefixes() {
    let sets = vec![
        vec![([192, 0, 2, 0], 24)],
        vec![([192, 0, 2, 1], 32)],
        vec![([10, 1, 2, 3], 8), ([192, 0, 2, 0], 24)],
    ];
    assert_eq!(
        lpm4_entries(&sets),
        vec![
            ([10, 0, 0, 0], 8, 0b100),
            ([192, 0, 2, 0], 24, 0b101),
            ([192, 0, 2, 1], 32, 0b111)
        ]
    );
    let sets = vec![vec![([0, 0, 0, 0], 0)], vec![([10, 0, 0, 0], 8)]];
    assert_eq!(
        lpm4_entries(&sets),
        vec![([0, 0, 0, 0], 0, 0b01), ([10, 0, 0, 0], 8, 0b11)]
    );
    assert!(lpm4_entries(&[]).is_empty());
}

#[test]
fn lpm6_entries_fold_covering_prefixes() {
    let p = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
    let sets = vec![
        vec![(p("2001:db8::"), 32)],
        vec![(p("2001:db8::1"), 128), (p("fe80::"), 10)],
    ];
    assert_eq!(
        lpm6_entries(&sets),
        vec![
            (p("2001:db8::"), 32, 0b01),
            (p("2001:db8::1"), 128, 0b11),
            (p("fe80::"), 10, 0b10)
        ]
    );
}

#[test]
fn port_and_mac_entries() {
    assert_eq!(
        port_masks(&[vec![1..=3], vec![3..=4, 65535..=65535]]),
        vec![(1, 1), (2, 1), (3, 3), (4, 2), (65535, 2)]
    );
    assert_eq!(port_masks(&[vec![0..=65535]]).len(), 65536);
    let (a, b) = ([1, 2, 3, 4, 5, 6], [0xff; 6]);
    assert_eq!(
        mac_entries(&[vec![b, a], vec![a]]),
        vec![(a, 0b11), (b, 0b01)]
    );
}

#[test]
fn image_carries_the_map_entries() {
    let img = image("net 192.0.2.0/24 or src host 192.0.2.1 or port 80 or ether host 1:2:3:4:5:6")
        .unwrap();
    let g = img.graph.as_ref().unwrap();
    assert_eq!(g.nodes.len(), 3 + 3 + 2 + 1);
    assert_eq!(
        img.addr4,
        vec![([192, 0, 2, 0], 24, 0b01), ([192, 0, 2, 1], 32, 0b11)]
    );
    assert_eq!(img.ports, vec![(80, 1)]);
    assert_eq!(img.macs, vec![([1, 2, 3, 4, 5, 6], 1)]);
    assert_eq!(img.rules.len(), 4);
    assert_eq!(
        img.expression,
        "net 192.0.2.0/24 or src host 192.0.2.1 or port 80 or ether host 1:2:3:4:5:6"
    );
    assert!(matches!(
        image("tcp[0] = 1"),
        Err(FilterError::Unsupported { .. })
    ));
}

// Packets for the evaluator.

/// Ethernet + IPv4 (no options) + 4 bytes of ports, padded to 60 bytes.
pub(crate) fn pkt_v4(src: [u8; 4], dst: [u8; 4], proto: u8, sport: u16, dport: u16) -> Vec<u8> {
    let mut p = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    p.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0, 0, 64, proto, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.resize(60, 0);
    p
}

#[test]
fn evaluator_follows_the_graph() {
    let http = pkt_v4([192, 0, 2, 1], [198, 51, 100, 7], 6, 40000, 80);
    assert_eq!(eval(&c("tcp port 80"), &http), Some(0));
    assert_eq!(eval(&c("udp port 80"), &http), None);
    assert_eq!(
        eval(&c("src net 192.0.2.0/24 and dst port http"), &http),
        Some(0)
    );
    assert_eq!(eval(&c("dst net 192.0.2.0/24"), &http), None);
    assert_eq!(
        eval(&c("net 198.51.100.0/24 and not host 198.51.100.7"), &http),
        None
    );
    assert_eq!(
        eval(&c("net 198.51.100.0/24 and not host 198.51.100.8"), &http),
        Some(0)
    );
    assert_eq!(eval(&c("vlan or arp"), &http), None);
    assert_eq!(eval(&c("ether src 2:0:0:0:0:1"), &http), Some(0));
    // A fragment carries no ports.
    let mut frag = http.clone();
    frag[20] = 0x00;
    frag[21] = 0x10;
    assert_eq!(eval(&c("port 80"), &frag), None);
    // Truncated: the port bytes are missing, the packet is rejected outright.
    assert_eq!(eval(&c("port 80 or tcp"), &http[..35]), None);
    assert_eq!(eval(&c("tcp or port 80"), &http[..35]), Some(0));
}
