//! Property tests: hostile input never panics the parser or the compiler; valid expressions
//! compile to graphs that respect the kernel's invariants, read back from their text, and decide
//! every packet the way the expression does (merging and graph building change nothing).

use proptest::{prelude::*, sample::select};

use super::{
    FilterError,
    compile::{compile_expr, tests::check_graph},
    eval::{eval, eval_expr},
    image, parse,
};

/// Words of the language, near misses and junk.
const VOCAB: &[&str] = &[
    "host",
    "net",
    "port",
    "portrange",
    "src",
    "dst",
    "and",
    "or",
    "not",
    "!",
    "&&",
    "||",
    "(",
    ")",
    "(",
    ")",
    "ip",
    "ip6",
    "arp",
    "rarp",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "sctp",
    "proto",
    "protochain",
    "ether",
    "link",
    "vlan",
    "mask",
    "/",
    "\\tcp",
    "\\ip",
    "192.0.2.1",
    "10",
    "10.0",
    "0",
    "2001:db8::1",
    "::",
    "::ffff:1.2.3.4",
    "aa:bb:cc:dd:ee:ff",
    "aabb.ccdd.eeff",
    "80",
    "1000-2000",
    "http",
    "ssh",
    "ntp",
    "0x800",
    "0x",
    "24",
    "33",
    "129",
    "255.255.0.0",
    "255.0.255.0",
    "less",
    "[",
    "]",
    "=",
    "gateway",
    "foo",
    "65536",
    "4294967296",
    "99999999999",
    "09",
    "010",
    "-",
    "\\",
    "%",
    "é",
    "link",
    "broadcast",
    "multicast",
    "1.2.3.256",
    "1::2::3",
    "4096",
    "0xffffffff",
    "igmp",
    "pim",
    "ah",
    "esp",
    "carp",
    "vrrp",
];

fn soup() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(select(VOCAB), 0..24).prop_map(|w| w.join(" ")),
        prop::collection::vec(select(VOCAB), 0..24).prop_map(|w| w.concat()),
        ".{0,64}",
    ]
}

proptest! {
    #[test]
    fn junk_never_panics(s in soup()) {
        match image(&s) {
            Ok(_) | Err(_) => {}
        }
        if let Ok(Some(e)) = parse(&s) {
            if let Ok(cf) = compile_expr(&e) {
                check_graph(&cf);
            }
        }
    }
}

/// A primitive, drawn from small pools so that generated packets often match.
fn leaf() -> impl Strategy<Value = String> {
    let v4 = || {
        select(vec![
            "10.0.0.1",
            "10.0.1.2",
            "192.0.2.1",
            "192.0.2.200",
            "172.16.5.4",
        ])
    };
    let nets = select(vec![
        "10.0.0.0/8",
        "10.0.1.0/24",
        "192.0.2.0/24",
        "192.0.2.128/25",
        "0.0.0.0/0",
        "172.16.0.0/12",
        "192.0.2",
        "10.0.0.0 mask 255.255.0.0",
    ]);
    let v6 = select(vec!["2001:db8::1", "2001:db8:1::5", "fe80::1", "::1"]);
    let nets6 = select(vec![
        "2001:db8::/32",
        "fe80::/10",
        "::/0",
        "2001:db8:1::/48",
    ]);
    let ports = || {
        select(vec![
            "21", "22", "53", "80", "443", "1000", "1500", "2000", "8080",
        ])
    };
    let named = select(vec!["http", "domain", "ntp", "ssh", "https"]);
    let ranges = select(vec!["1000-2000", "20-25", "1-1024", "443-443", "2000-1000"]);
    let macs = select(vec![
        "02:00:00:00:00:01",
        "02:00:00:00:00:02",
        "ff:ff:ff:ff:ff:ff",
    ]);
    let dirs = || select(vec!["", "src ", "dst ", "src or dst ", "src and dst "]);
    let v4q = || select(vec!["", "ip ", "arp ", "rarp "]);
    let l4q = || select(vec!["", "tcp ", "udp ", "sctp "]);
    prop_oneof![
        (v4q(), dirs(), v4()).prop_map(|(p, d, a)| format!("{p}{d}host {a}")),
        (v4q(), dirs(), nets).prop_map(|(p, d, n)| format!("{p}{d}net {n}")),
        (dirs(), v6).prop_map(|(d, a)| format!("ip6 {d}host {a}")),
        (dirs(), nets6).prop_map(|(d, n)| format!("{d}net {n}")),
        (l4q(), dirs(), ports()).prop_map(|(p, d, n)| format!("{p}{d}port {n}")),
        (dirs(), named).prop_map(|(d, n)| format!("{d}port {n}")),
        (l4q(), dirs(), ranges).prop_map(|(p, d, r)| format!("{p}{d}portrange {r}")),
        (dirs(), macs).prop_map(|(d, m)| format!("ether {d}host {m}")),
        // Chains of one shape, which merge (or must not: `src and dst`).
        (v4q(), dirs(), v4(), v4()).prop_map(|(p, d, a, b)| format!("{p}{d}host {a} or {b}")),
        (v4q(), dirs(), v4(), v4())
            .prop_map(|(p, d, a, b)| format!("not {p}{d}host {a} and not {p}{d}host {b}")),
        (l4q(), dirs(), ports(), ports()).prop_map(|(p, d, a, b)| format!("{p}{d}port {a} or {b}")),
        select(vec![
            "ip",
            "ip6",
            "arp",
            "rarp",
            "tcp",
            "udp",
            "icmp",
            "icmp6",
            "sctp",
            "proto 47",
            "ip proto 6",
            "ip6 proto 17",
            "proto \\udp",
            "ether proto 0x88cc",
            "ip protochain 6",
            "ip6 protochain 17",
            "protochain 6",
            "vlan",
            "vlan 10",
            "vlan 20",
            "ip proto 300",
            "igmp",
            "pim",
        ])
        .prop_map(String::from),
    ]
}

fn expression() -> impl Strategy<Value = String> {
    leaf().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} and {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} or {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) && ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) || ({b})")),
            prop::collection::vec(inner.clone(), 2..6).prop_map(|v| v.join(" or ")),
            inner.clone().prop_map(|a| format!("not ({a})")),
            inner.prop_map(|a| format!("! {a}")),
        ]
    })
}

/// An Ethernet frame of at least [`super::eval::WINDOW`] bytes (so no test misses a byte):
/// 0 to 2 VLAN tags, then IPv4, IPv6, ARP/RARP or something else, from the leaves' pools.
fn packet() -> impl Strategy<Value = Vec<u8>> {
    let mac = || {
        select(vec![
            [2u8, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            [0xff; 6],
            [2, 0, 0, 0, 0, 9],
        ])
    };
    let tag = (
        select(vec![0x8100u16, 0x88a8, 0x9100]),
        select(vec![1u16, 10, 20, 4095]),
    );
    let v4 = || {
        select(vec![
            [10u8, 0, 0, 1],
            [10, 0, 1, 2],
            [192, 0, 2, 1],
            [192, 0, 2, 200],
            [172, 16, 5, 4],
            [8, 8, 8, 8],
        ])
    };
    let v6 = || {
        select(vec![
            "2001:db8::1",
            "2001:db8:1::5",
            "fe80::1",
            "::1",
            "2001:db9::1",
        ])
        .prop_map(|s| s.parse::<std::net::Ipv6Addr>().expect("pool").octets())
    };
    let port = || select(vec![21u16, 22, 53, 80, 123, 443, 1000, 1500, 2000, 8080, 9]);
    let proto = select(vec![6u8, 17, 132, 1, 47, 58, 44, 0, 103]);
    let kind = select(vec![
        0x0800u16, 0x0800, 0x86dd, 0x86dd, 0x0806, 0x8035, 0x88cc,
    ]);
    let frag = select(vec![0u16, 0, 0, 0x2000, 0x0010]);
    let ihl = select(vec![5u8, 5, 6]);
    (
        (mac(), mac(), prop::collection::vec(tag, 0..=2), kind),
        (v4(), v4(), v6(), v6(), proto, frag, ihl),
        (port(), port(), prop::collection::vec(any::<u8>(), 160)),
    )
        .prop_map(
            |((dst, src, tags, kind), (a4, b4, a6, b6, proto, frag, ihl), (sport, dport, fill))| {
                let mut p = Vec::with_capacity(256);
                p.extend_from_slice(&dst);
                p.extend_from_slice(&src);
                for (tpid, vid) in tags {
                    p.extend_from_slice(&tpid.to_be_bytes());
                    p.extend_from_slice(&vid.to_be_bytes());
                }
                p.extend_from_slice(&kind.to_be_bytes());
                let ports = [sport.to_be_bytes(), dport.to_be_bytes()].concat();
                match kind {
                    0x0800 => {
                        p.extend_from_slice(&[0x40 | ihl, 0, 0, 60, 0, 1]);
                        p.extend_from_slice(&frag.to_be_bytes());
                        p.extend_from_slice(&[64, proto, 0, 0]);
                        p.extend_from_slice(&a4);
                        p.extend_from_slice(&b4);
                        p.extend(std::iter::repeat_n(1, usize::from(ihl - 5) * 4));
                        p.extend_from_slice(&ports);
                    }
                    0x86dd => {
                        p.extend_from_slice(&[0x60, 0, 0, 0, 0, 40, proto, 64]);
                        p.extend_from_slice(&a6);
                        p.extend_from_slice(&b6);
                        if proto == 44 {
                            // A fragment header whose next header is TCP.
                            p.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 1]);
                        }
                        p.extend_from_slice(&ports);
                    }
                    0x0806 | 0x8035 => {
                        p.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
                        p.extend_from_slice(&src);
                        p.extend_from_slice(&a4);
                        p.extend_from_slice(&dst);
                        p.extend_from_slice(&b4);
                    }
                    _ => {}
                }
                p.extend_from_slice(&fill);
                p.truncate(160);
                p
            },
        )
}

/// Parses a generated expression; `None` when it has more `vlan` keywords than tap looks through
/// (the generator does not count them).
fn parse_generated(s: &str) -> Option<super::Expr> {
    match parse(s) {
        Ok(Some(e)) => Some(e),
        Err(FilterError::Invalid { reason, .. }) if reason.contains("VLAN tags") => None,
        other => panic!("{s:?} -> {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn valid_expressions_compile_to_sound_graphs(s in expression()) {
        let Some(e) = parse_generated(&s) else { return Ok(()) };
        match compile_expr(&e) {
            Ok(cf) => check_graph(&cf),
            Err(FilterError::TooLarge { .. }) => {}
            Err(other) => panic!("{s:?}: {other}"),
        }
        // The canonical text reads back to the same expression.
        prop_assert_eq!(parse(&e.to_string()), Ok(Some(e.clone())), "{}", e);
    }

    #[test]
    fn graphs_decide_like_the_expression(s in expression(), packets in prop::collection::vec(packet(), 16)) {
        let Some(e) = parse_generated(&s) else { return Ok(()) };
        let Ok(cf) = compile_expr(&e) else { return Ok(()) };
        for p in &packets {
            let direct = eval_expr(&e, p);
            prop_assert!(direct.is_some(), "{} rejected a full packet", s);
            let graph = eval(&cf, p);
            prop_assert_eq!(graph.is_some(), direct == Some(true), "{} on {:02x?}", s, p);
            if let Some(rule) = graph {
                prop_assert!(usize::from(rule) < cf.rules.len());
            }
        }
    }
}
