use super::*;

fn expr(s: &str) -> Expr {
    match parse(s) {
        Ok(Some(e)) => e,
        other => panic!("{s:?} -> {other:?}"),
    }
}

/// Fully parenthesised form; primitives as their text, `@d` for a VLAN depth d > 0.
fn sx(e: &Expr) -> String {
    match e {
        Expr::Prim(p) if p.depth > 0 => format!("{}@{}", p.text, p.depth),
        Expr::Prim(p) => p.text.clone(),
        Expr::Not(a) => format!("(not {})", sx(a)),
        Expr::And(items) => format!(
            "(and {})",
            items.iter().map(sx).collect::<Vec<_>>().join(" ")
        ),
        Expr::Or(items) => format!(
            "(or {})",
            items.iter().map(sx).collect::<Vec<_>>().join(" ")
        ),
    }
}

fn tree(s: &str) -> String {
    sx(&expr(s))
}

/// The test of a one-primitive expression.
fn test(s: &str) -> Test {
    match expr(s) {
        Expr::Prim(p) => p.test,
        e => panic!("{s:?} is not one primitive: {}", sx(&e)),
    }
}

fn err(s: &str) -> FilterError {
    match parse(s) {
        Err(e) => e,
        Ok(e) => panic!("{s:?} parsed: {:?}", e.map(|e| sx(&e))),
    }
}

/// Asserts that `s` fails on `token` at `column`, with a message containing `needle`.
fn fails_at(s: &str, token: &str, column: usize, needle: &str) {
    let e = err(s);
    let (t, c) = match &e {
        FilterError::Unsupported { token, column, .. }
        | FilterError::Unexpected { token, column, .. }
        | FilterError::Invalid { token, column, .. } => (token.as_str(), *column),
        other => panic!("{s:?}: no position in {other:?}"),
    };
    assert_eq!((t, c), (token, column), "{s:?}: {e}");
    let msg = e.to_string();
    assert!(msg.contains(needle), "{s:?}: {msg:?} lacks {needle:?}");
    assert!(!msg.contains('\n'), "one line: {msg:?}");
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn empty_expression_is_no_filter() {
    assert_eq!(parse(""), Ok(None));
    assert_eq!(parse("  \t\n "), Ok(None));
}

#[test]
fn and_or_have_equal_precedence_left_to_right() {
    assert_eq!(tree("tcp or udp and icmp"), "(and (or tcp udp) icmp)");
    assert_eq!(tree("tcp and udp or icmp"), "(or (and tcp udp) icmp)");
    assert_eq!(tree("tcp || udp && icmp"), "(and (or tcp udp) icmp)");
    assert_eq!(tree("tcp or (udp and icmp)"), "(or tcp (and udp icmp))");
    assert_eq!(tree("tcp and udp and icmp"), "(and tcp udp icmp)");
}

#[test]
fn not_binds_tightest() {
    assert_eq!(tree("not tcp and udp"), "(and (not tcp) udp)");
    assert_eq!(
        tree("tcp or not udp and icmp"),
        "(and (or tcp (not udp)) icmp)"
    );
    assert_eq!(tree("! tcp || !udp"), "(or (not tcp) (not udp))");
    assert_eq!(tree("not not tcp"), "(not (not tcp))");
    assert_eq!(tree("not (tcp or udp)"), "(not (or tcp udp))");
}

#[test]
fn abbreviations_repeat_the_last_qualifiers() {
    assert_eq!(tree("port 21 or 22"), "(or port 21 port 22)");
    assert_eq!(
        tree("host 192.0.2.1 or 192.0.2.2"),
        "(or host 192.0.2.1 host 192.0.2.2)"
    );
    assert_eq!(
        tree("tcp dst port 80 or 8080"),
        "(or tcp dst port 80 tcp dst port 8080)"
    );
    assert_eq!(tree("port 21 or 22 or 23"), "(or port 21 port 22 port 23)");
    assert_eq!(
        tree("src or dst port ftp or ssh"),
        "(or src or dst port ftp src or dst port ssh)"
    );
}

#[test]
fn abbreviations_and_not() {
    // pcap-filter(7): "not host vs and ace" is "not host vs and host ace".
    assert_eq!(
        tree("not host 192.0.2.1 and 192.0.2.2"),
        "(and (not host 192.0.2.1) host 192.0.2.2)"
    );
    // "ip host foo and not bar" is "ip host foo and not ip host bar".
    assert_eq!(
        tree("ip host 192.0.2.1 and not 192.0.2.2"),
        "(and ip host 192.0.2.1 (not ip host 192.0.2.2))"
    );
    assert_eq!(tree("port 1 and ! 2"), "(and port 1 (not port 2))");
}

#[test]
fn abbreviations_with_parentheses() {
    assert_eq!(
        tree("host 192.0.2.1 and (192.0.2.2 or 192.0.2.3)"),
        "(and host 192.0.2.1 (or host 192.0.2.2 host 192.0.2.3))"
    );
    assert_eq!(tree("ip proto (6 or 17)"), "(or ip proto 6 ip proto 17)");
    assert_eq!(
        tree("port 1 and not (2 or 3)"),
        "(and port 1 (not (or port 2 port 3)))"
    );
    // After a parenthesised expression the qualifiers are those before it (libpcap).
    assert_eq!(
        tree("host 192.0.2.1 or (port 80) or 53"),
        "(or host 192.0.2.1 port 80 host 53)"
    );
    assert_eq!(
        test("host 53"),
        Test::Net4 {
            proto: V4Proto::Any,
            dir: Dir::SrcOrDst,
            addr: v4("0.0.0.53"),
            prefix: 32
        }
    );
    assert_eq!(
        tree("port 80 and (udp or port 81) or 82"),
        "(or (and port 80 (or udp port 81)) port 82)"
    );
    // Inside parentheses, after `tcp` there is nothing to repeat (libpcap: syntax error).
    fails_at("port 80 and (tcp or 81)", "81", 21, "needs a qualifier");
    fails_at("port 80 and (81 or tcp)", "tcp", 20, "expected an address");
}

#[test]
fn abbreviation_without_qualifiers_is_an_error() {
    fails_at("tcp or 80", "80", 8, "needs a qualifier");
    fails_at("vlan 10 or 20", "20", 12, "needs a qualifier");
    fails_at(
        "(host 192.0.2.1) or 192.0.2.2",
        "192.0.2.2",
        21,
        "needs a qualifier",
    );
    fails_at("192.0.2.1", "192.0.2.1", 1, "needs a qualifier");
    fails_at(
        "host 192.0.2.1 and (192.0.2.2 or tcp)",
        "tcp",
        34,
        "expected an address",
    );
}

#[test]
fn host_and_net_v4() {
    let any = |dir, addr: &str, prefix| Test::Net4 {
        proto: V4Proto::Any,
        dir,
        addr: v4(addr),
        prefix,
    };
    assert_eq!(test("host 192.0.2.1"), any(Dir::SrcOrDst, "192.0.2.1", 32));
    assert_eq!(test("src host 192.0.2.1"), any(Dir::Src, "192.0.2.1", 32));
    assert_eq!(test("dst 192.0.2.1"), any(Dir::Dst, "192.0.2.1", 32));
    assert_eq!(
        test("src or dst host 192.0.2.1"),
        any(Dir::SrcOrDst, "192.0.2.1", 32)
    );
    assert_eq!(
        test("dst or src host 192.0.2.1"),
        any(Dir::SrcOrDst, "192.0.2.1", 32)
    );
    assert_eq!(
        test("src and dst host 192.0.2.1"),
        any(Dir::SrcAndDst, "192.0.2.1", 32)
    );
    assert_eq!(
        test("dst and src 192.0.2.1"),
        any(Dir::SrcAndDst, "192.0.2.1", 32)
    );
    assert_eq!(test("net 10.0.0.0/8"), any(Dir::SrcOrDst, "10.0.0.0", 8));
    assert_eq!(test("net 0.0.0.0/0"), any(Dir::SrcOrDst, "0.0.0.0", 0));
    assert_eq!(
        test("src net 10.0.0.0 mask 255.255.0.0"),
        any(Dir::Src, "10.0.0.0", 16)
    );
    assert_eq!(
        test("net 10.0.0.0 mask 255.0.0"),
        any(Dir::SrcOrDst, "10.0.0.0", 8)
    );
    // Short forms, promoted as libpcap does.
    assert_eq!(test("net 192.0.2"), any(Dir::SrcOrDst, "192.0.2.0", 24));
    assert_eq!(test("net 10"), any(Dir::SrcOrDst, "10.0.0.0", 8));
    assert_eq!(test("net 0x0a01"), any(Dir::SrcOrDst, "10.1.0.0", 16));
    assert_eq!(test("net 0"), any(Dir::SrcOrDst, "0.0.0.0", 32));
    assert_eq!(test("host 10.1"), any(Dir::SrcOrDst, "10.1.0.0", 16));
    assert_eq!(test("host 16909060"), any(Dir::SrcOrDst, "1.2.3.4", 32));
    assert_eq!(test("net 10.0/8"), any(Dir::SrcOrDst, "10.0.0.0", 8));
}

#[test]
fn host_protocol_qualifiers() {
    let t = |proto, prefix| Test::Net4 {
        proto,
        dir: Dir::SrcOrDst,
        addr: v4("192.0.2.0"),
        prefix,
    };
    assert_eq!(test("ip host 192.0.2.0"), t(V4Proto::Ip, 32));
    assert_eq!(test("arp host 192.0.2.0"), t(V4Proto::Arp, 32));
    assert_eq!(test("rarp host 192.0.2.0"), t(V4Proto::Rarp, 32));
    assert_eq!(test("arp net 192.0.2.0/24"), t(V4Proto::Arp, 24));
    assert_eq!(
        test("rarp src 192.0.2.0"),
        Test::Net4 {
            proto: V4Proto::Rarp,
            dir: Dir::Src,
            addr: v4("192.0.2.0"),
            prefix: 32
        }
    );
    fails_at(
        "tcp host 192.0.2.1",
        "192.0.2.1",
        10,
        "'tcp' modifier applied to host",
    );
    fails_at(
        "udp net 10.0.0.0/8",
        "10.0.0.0",
        9,
        "'udp' modifier applied to net",
    );
    fails_at(
        "ip6 host 192.0.2.1",
        "192.0.2.1",
        10,
        "'ip6' modifier applied to ip host",
    );
    fails_at(
        "ether host 192.0.2.1",
        "192.0.2.1",
        12,
        "illegal link layer address",
    );
    fails_at("ether net 10", "10", 11, "illegal link layer address");
}

#[test]
fn host_and_net_v6() {
    let t = |dir, a: &str, prefix| Test::Net6 {
        dir,
        addr: v6(a),
        prefix,
    };
    assert_eq!(
        test("host 2001:db8::1"),
        t(Dir::SrcOrDst, "2001:db8::1", 128)
    );
    assert_eq!(test("ip6 host ::1"), t(Dir::SrcOrDst, "::1", 128));
    assert_eq!(test("host ::"), t(Dir::SrcOrDst, "::", 128));
    assert_eq!(
        test("host ::ffff:1.2.3.4"),
        t(Dir::SrcOrDst, "::ffff:1.2.3.4", 128)
    );
    assert_eq!(
        test("host 1:2:3:4:5:6:7:8"),
        t(Dir::SrcOrDst, "1:2:3:4:5:6:7:8", 128)
    );
    assert_eq!(test("src host fe80::1:2"), t(Dir::Src, "fe80::1:2", 128));
    assert_eq!(
        test("ip6 net 2001:db8::/32"),
        t(Dir::SrcOrDst, "2001:db8::", 32)
    );
    assert_eq!(test("ip6 dst net ::/0"), t(Dir::Dst, "::", 0));
    assert_eq!(
        test("net 2001:db8::1/128"),
        t(Dir::SrcOrDst, "2001:db8::1", 128)
    );
    assert_eq!(
        test("host 2001:db8::1/128"),
        t(Dir::SrcOrDst, "2001:db8::1", 128)
    );
    assert_eq!(tree("host ::1 or ::2"), "(or host ::1 host ::2)");
}

#[test]
fn address_errors() {
    fails_at(
        "host 2001:db8::/32",
        "2001:db8::",
        6,
        "Mask syntax for networks only",
    );
    fails_at(
        "host 10.0.0.0/8",
        "10.0.0.0",
        6,
        "Mask syntax for networks only",
    );
    fails_at(
        "net 10.1.2.3/8",
        "10.1.2.3",
        5,
        "non-network bits set in \"10.1.2.3/8\"",
    );
    fails_at(
        "ip6 net 2001:db8::1/32",
        "2001:db8::1",
        9,
        "non-network bits set",
    );
    fails_at("net 1.2.3.4/33", "1.2.3.4", 5, "mask length must be <= 32");
    fails_at("ip6 net ::/129", "::", 9, "mask length must be <= 128");
    fails_at(
        "net 10.0.0.0 mask 255.0.255.0",
        "10.0.0.0",
        5,
        "non-contiguous netmask",
    );
    fails_at(
        "net 10.1.0.0 mask 255.0.0.0",
        "10.1.0.0",
        5,
        "non-network bits set in \"10.1.0.0 mask 255.0.0.0\"",
    );
    fails_at(
        "host 1.2.3.256",
        "1.2.3.256",
        6,
        "invalid IPv4 address '1.2.3.256'",
    );
    fails_at("host 0x1.2.3.4", "0x1.2.3.4", 6, "invalid IPv4 address");
    fails_at("ip host ::1", "::1", 9, "'ip' modifier applied to ip6 host");
    fails_at(
        "arp host ::1",
        "::1",
        10,
        "'arp' modifier applied to ip6 host",
    );
    fails_at(
        "ether host ::1",
        "::1",
        12,
        "link-layer modifier applied to ip6 host",
    );
    fails_at(
        "host 1::2::3",
        "1::2::3",
        6,
        "not a valid IPv6 or MAC address",
    );
    fails_at("host fe80::1%eth0", "%", 13, "not supported");
    fails_at("host foo.example.com", "foo.example.com", 6, "DNS");
    fails_at("net loopback", "loopback", 5, "/etc/networks");
    fails_at(
        "port 192.0.2.1",
        "192.0.2.1",
        6,
        "'port' modifier applied to IP address",
    );
    fails_at(
        "proto ::1",
        "::1",
        7,
        "'proto' modifier applied to IP address",
    );
    fails_at("net 10 / 8", "/", 8, "expected 'and', 'or'");
    assert!(matches!(
        err("net 10.0.0.0/"),
        FilterError::UnexpectedEnd {
            expected: "a prefix length",
            ..
        }
    ));
}

#[test]
fn mac_addresses() {
    let mac = [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];
    for s in [
        "aa:bb:cc:dd:ee:ff",
        "AA-BB-CC-DD-EE-FF",
        "aa.bb.cc.dd.ee.ff",
        "aabb.ccdd.eeff",
        "aabbccddeeff",
    ] {
        assert_eq!(
            test(&format!("ether host {s}")),
            Test::EtherAddr {
                dir: Dir::SrcOrDst,
                mac
            },
            "{s}"
        );
    }
    assert_eq!(
        test("ether src 1:2:3:4:5:6"),
        Test::EtherAddr {
            dir: Dir::Src,
            mac: [1, 2, 3, 4, 5, 6]
        }
    );
    assert_eq!(
        test("ether dst host 01-02-03-04-05-06"),
        Test::EtherAddr {
            dir: Dir::Dst,
            mac: [1, 2, 3, 4, 5, 6]
        }
    );
    assert_eq!(
        test("ether src and dst aa:bb:cc:dd:ee:ff"),
        Test::EtherAddr {
            dir: Dir::SrcAndDst,
            mac
        }
    );
    assert_eq!(
        test("link host 123456789012"),
        Test::EtherAddr {
            dir: Dir::SrcOrDst,
            mac: [0x12, 0x34, 0x56, 0x78, 0x90, 0x12]
        }
    );
    assert_eq!(
        tree("ether host 1:2:3:4:5:6 or 1:2:3:4:5:7"),
        "(or ether host 1:2:3:4:5:6 ether host 1:2:3:4:5:7)"
    );
    fails_at(
        "host aa:bb:cc:dd:ee:ff",
        "aa:bb:cc:dd:ee:ff",
        6,
        "ethernet address used in non-ether expression",
    );
    fails_at(
        "port aa:bb:cc:dd:ee:ff",
        "aa:bb:cc:dd:ee:ff",
        6,
        "non-ether",
    );
    fails_at("ether host router1", "router1", 12, "/etc/ethers");
    fails_at(
        "ether net aa:bb:cc:dd:ee:ff",
        "aa:bb:cc:dd:ee:ff",
        11,
        "non-ether",
    );
}

#[test]
fn ports() {
    let t = |l4, dir, ports| Test::Port { l4, dir, ports };
    assert_eq!(test("port 80"), t(L4::Any, Dir::SrcOrDst, 80..=80));
    assert_eq!(test("port 0x50"), t(L4::Any, Dir::SrcOrDst, 80..=80));
    assert_eq!(test("port 010"), t(L4::Any, Dir::SrcOrDst, 8..=8));
    assert_eq!(test("tcp port 80"), t(L4::Tcp, Dir::SrcOrDst, 80..=80));
    assert_eq!(test("udp src port 53"), t(L4::Udp, Dir::Src, 53..=53));
    assert_eq!(test("sctp dst port 9"), t(L4::Sctp, Dir::Dst, 9..=9));
    assert_eq!(
        test("src and dst port 80"),
        t(L4::Any, Dir::SrcAndDst, 80..=80)
    );
    assert_eq!(
        test("portrange 1000-2000"),
        t(L4::Any, Dir::SrcOrDst, 1000..=2000)
    );
    assert_eq!(
        test("portrange 2000-1000"),
        t(L4::Any, Dir::SrcOrDst, 1000..=2000)
    );
    assert_eq!(test("portrange 80"), t(L4::Any, Dir::SrcOrDst, 80..=80));
    assert_eq!(
        test("udp portrange 1000-2000"),
        t(L4::Udp, Dir::SrcOrDst, 1000..=2000)
    );
    assert_eq!(
        test("tcp dst portrange 0-65535"),
        t(L4::Tcp, Dir::Dst, 0..=65535)
    );
}

#[test]
fn port_names_carry_their_transport() {
    let t = |l4, ports| Test::Port {
        l4,
        dir: Dir::SrcOrDst,
        ports,
    };
    assert_eq!(test("port http"), t(L4::Tcp, 80..=80));
    assert_eq!(test("port ssh"), t(L4::Tcp, 22..=22));
    assert_eq!(test("port ntp"), t(L4::Udp, 123..=123));
    assert_eq!(test("port domain"), t(L4::Any, 53..=53));
    assert_eq!(test("sctp port domain"), t(L4::Sctp, 53..=53));
    assert_eq!(test("tcp port https"), t(L4::Tcp, 443..=443));
    assert_eq!(test("port ftp-data"), t(L4::Tcp, 20..=20));
    assert_eq!(test("portrange ssh-http"), t(L4::Tcp, 22..=80));
    assert_eq!(test("tcp portrange 1-ntp"), t(L4::Tcp, 1..=123));
    assert_eq!(test("portrange 1-ntp"), t(L4::Any, 1..=123));
    assert_eq!(test("port \\www"), t(L4::Tcp, 80..=80));
    fails_at("udp port ssh", "ssh", 10, "port 'ssh' is tcp");
    fails_at("tcp port ntp", "ntp", 10, "port 'ntp' is udp");
    fails_at("sctp port http", "http", 11, "port 'http' is tcp");
    fails_at("port nosuch", "nosuch", 6, "unknown port 'nosuch'");
    fails_at("port 1000-2000", "1000-2000", 6, "unknown port '1000-2000'");
    fails_at(
        "portrange 1-nosuch",
        "1-nosuch",
        11,
        "unknown port in range",
    );
    fails_at("udp portrange ssh-http", "ssh-http", 15, "is tcp");
    fails_at(
        "port 70000",
        "70000",
        6,
        "illegal port number 70000 > 65535",
    );
    fails_at(
        "portrange 1-70000",
        "1-70000",
        11,
        "illegal port number 70000 > 65535",
    );
    fails_at("ip port 80", "80", 9, "illegal qualifier of 'port'");
    fails_at(
        "ip6 portrange 1-2",
        "1-2",
        15,
        "illegal qualifier of 'portrange'",
    );
    fails_at("ether port 80", "80", 12, "illegal qualifier of 'port'");
}

#[test]
fn protocols() {
    let ip = |family, proto| Test::IpProto { family, proto };
    assert_eq!(test("ip"), Test::EtherType(0x0800));
    assert_eq!(test("ip6"), Test::EtherType(0x86dd));
    assert_eq!(test("arp"), Test::EtherType(0x0806));
    assert_eq!(test("rarp"), Test::EtherType(0x8035));
    assert_eq!(test("tcp"), ip(Family::Any, 6));
    assert_eq!(test("udp"), ip(Family::Any, 17));
    assert_eq!(test("sctp"), ip(Family::Any, 132));
    assert_eq!(test("icmp"), ip(Family::V4, 1));
    assert_eq!(test("icmp6"), ip(Family::V6, 58));
    assert_eq!(test("igmp"), ip(Family::V4, 2));
    assert_eq!(test("pim"), ip(Family::Any, 103));
    assert_eq!(test("vrrp"), ip(Family::V4, 112));
    assert_eq!(test("esp"), ip(Family::Any, 50));
    assert_eq!(test("ah"), ip(Family::Any, 51));
    assert_eq!(test("proto 47"), ip(Family::Any, 47));
    assert_eq!(test("proto \\tcp"), ip(Family::Any, 6));
    assert_eq!(test("proto tcp"), ip(Family::Any, 6));
    assert_eq!(test("proto \\TCP"), ip(Family::Any, 6));
    assert_eq!(test("ip proto \\udp"), ip(Family::V4, 17));
    assert_eq!(test("ip proto gre"), ip(Family::V4, 47));
    assert_eq!(test("ip6 proto 58"), ip(Family::V6, 58));
    assert_eq!(test("ip6 proto icmp6"), ip(Family::V6, 58));
    assert_eq!(test("ip proto 300"), ip(Family::V4, 300));
    assert_eq!(test("ether proto 0x88cc"), Test::EtherType(0x88cc));
    assert_eq!(test("ether proto \\ip"), Test::EtherType(0x0800));
    assert_eq!(test("ether proto ip6"), Test::EtherType(0x86dd));
    assert_eq!(test("ether proto \\loopback"), Test::EtherType(0x9000));
    assert_eq!(test("ether proto 70000"), Test::EtherType(70000));
    assert_eq!(
        test("ip protochain 6"),
        Test::Protochain {
            family: Family::V4,
            proto: 6
        }
    );
    assert_eq!(
        test("ip6 protochain \\tcp"),
        Test::Protochain {
            family: Family::V6,
            proto: 6
        }
    );
    assert_eq!(
        test("protochain udp"),
        Test::Protochain {
            family: Family::Any,
            proto: 17
        }
    );
    assert_eq!(
        tree("ip6 proto \\tcp or \\udp"),
        "(or ip6 proto \\tcp ip6 proto \\udp)"
    );
    // A keyword after `or` is a primitive, not a repeated `proto` value.
    assert_eq!(tree("ip proto 6 or udp"), "(or ip proto 6 udp)");
}

#[test]
fn protocol_errors() {
    fails_at("ether proto 100", "100", 13, "802.2 LLC");
    fails_at("ether proto \\stp", "stp", 13, "802.2 LLC");
    fails_at("ether proto 0x809b", "0x809b", 13, "AppleTalk");
    fails_at(
        "ether proto \\nosuch",
        "nosuch",
        13,
        "unknown ether proto 'nosuch'",
    );
    fails_at("proto \\nosuch", "nosuch", 7, "unknown ip proto 'nosuch'");
    fails_at(
        "arp proto 6",
        "6",
        11,
        "arp does not encapsulate another protocol",
    );
    fails_at("tcp proto 6", "6", 11, "'tcp proto' is bogus");
    fails_at(
        "tcp protochain 6",
        "6",
        16,
        "bad protocol applied for 'protochain'",
    );
    fails_at("ether", "ether", 1, "link layer applied in wrong context");
    fails_at(
        "ip proto 09",
        "09",
        10,
        "number 09 contains non-octal digit",
    );
    fails_at(
        "ip proto 4294967296",
        "4294967296",
        10,
        "number 4294967296 overflows 32 bits",
    );
    fails_at("src proto 6", "proto", 5, "expected an address");
}

#[test]
fn vlan_depth_counts_vlan_keywords_before() {
    assert_eq!(tree("vlan"), "vlan");
    assert_eq!(test("vlan 10"), Test::Vlan(Some(10)));
    assert_eq!(test("vlan (0x0a)"), Test::Vlan(Some(10)));
    assert_eq!(
        tree("vlan 10 and host 192.0.2.1"),
        "(and vlan 10 host 192.0.2.1@1)"
    );
    assert_eq!(
        tree("vlan and vlan 20 and tcp"),
        "(and vlan vlan 20@1 tcp@2)"
    );
    // In text order, whatever the structure: libpcap's quirk.
    assert_eq!(
        tree("host 192.0.2.1 or vlan and tcp"),
        "(and (or host 192.0.2.1 vlan) tcp@1)"
    );
    assert_eq!(
        tree("not vlan 1 or (vlan 2 and ip) or udp"),
        "(or (not vlan 1) (and vlan 2@1 ip@2) udp@2)"
    );
    assert_eq!(
        tree("vlan and port 80 or 81"),
        "(or (and vlan port 80@1) port 81@1)"
    );
    assert_eq!(tree("vlan and vlan and vlan"), "(and vlan vlan@1 vlan@2)");
    fails_at(
        "vlan and vlan and vlan and ip",
        "ip",
        28,
        "at most 2 VLAN tags",
    );
    fails_at(
        "vlan and vlan and vlan and vlan",
        "vlan",
        28,
        "at most 2 VLAN tags",
    );
    fails_at(
        "vlan 4096",
        "4096",
        6,
        "VLAN tag 4096 greater than maximum 4095",
    );
    fails_at("vlan (ip)", "ip", 7, "expected a number");
}

#[test]
fn unsupported_features_are_named() {
    fails_at(
        "less 100",
        "less",
        1,
        "packet length tests are not supported",
    );
    fails_at("tcp and greater 1000", "greater", 9, "packet length");
    fails_at("tcp[13] & 2 != 0", "[", 4, "byte-offset expressions");
    fails_at("len > 100", "len", 1, "packet length");
    fails_at("ip[0] = 69", "[", 3, "byte-offset");
    fails_at("gateway router", "gateway", 1, "gateway");
    fails_at("ether broadcast", "broadcast", 7, "broadcast");
    fails_at("ip multicast", "multicast", 4, "multicast");
    fails_at("host 192.0.2.1 and multicast", "multicast", 20, "multicast");
    fails_at("mpls 100", "mpls", 1, "MPLS");
    fails_at("inbound", "inbound", 1, "capture direction");
    fails_at("host less", "less", 6, "packet length");
    fails_at("tcp = 1", "=", 5, "arithmetic");
    let msg = err("less 100").to_string();
    assert!(msg.contains(super::super::SUPPORTED), "{msg}");
}

#[test]
fn syntax_errors_are_named() {
    assert!(matches!(err("host"), FilterError::UnexpectedEnd { ref last, .. } if last == "host"));
    assert!(matches!(err("tcp and"), FilterError::UnexpectedEnd { ref last, .. } if last == "and"));
    assert!(matches!(
        err("net 10.0.0.0 mask"),
        FilterError::UnexpectedEnd { .. }
    ));
    assert!(matches!(err("not"), FilterError::UnexpectedEnd { .. }));
    fails_at("(tcp", "(", 1, "not closed");
    fails_at("tcp)", ")", 4, "expected 'and', 'or' or the end");
    fails_at("tcp udp", "udp", 5, "expected 'and', 'or'");
    fails_at("and tcp", "and", 1, "expected a primitive");
    fails_at("tcp or or udp", "or", 8, "expected a primitive");
    fails_at("()", ")", 2, "expected a primitive");
    fails_at("net 192.0.0.0 mask 255.0.0.0 x", "x", 30, "expected 'and'");
    fails_at("net 10.0.0.0 mask ::1", "::1", 19, "dotted netmask");
    fails_at("port $1", "$", 6, "expected an address");
    fails_at("\\", "\\", 1, "expected a primitive");
    fails_at("\\tcp", "tcp", 1, "needs a qualifier");
    fails_at("vlan 1 2", "2", 8, "expected 'and'");
}

#[test]
fn nesting_is_bounded_and_long_chains_are_flat() {
    let deep = format!("{}tcp{}", "(".repeat(200), ")".repeat(200));
    assert_eq!(tree(&deep), "tcp");
    fails_at(
        &format!("{}tcp{}", "(".repeat(201), ")".repeat(201)),
        "(",
        201,
        "nest deeper than 200",
    );
    fails_at(
        &format!("{}tcp", "not ".repeat(201)),
        "not",
        801,
        "nest deeper",
    );
    fails_at(
        &format!("port 1 and {}2{}", "(".repeat(201), ")".repeat(201)),
        "(",
        212,
        "nest deeper",
    );
    let long = vec!["tcp"; 100_000].join(" or ");
    match expr(&long) {
        Expr::Or(items) => assert_eq!(items.len(), 100_000),
        other => panic!("{other:?}"),
    }
}

#[test]
fn display_reads_back_to_the_same_tree() {
    for s in [
        "tcp or udp and icmp",
        "tcp or (udp and icmp)",
        "not (tcp or udp)",
        "port 21 or 22 and not 23",
        "host 192.0.2.1 and (192.0.2.2 or 192.0.2.3)",
        "vlan 10 and (ip6 net 2001:db8::/32 or ether src aa:bb:cc:dd:ee:ff)",
        "proto \\tcp or ip proto 17",
    ] {
        let e = expr(s);
        let again = expr(&e.to_string());
        assert_eq!(sx(&again), sx(&e), "{s} -> {e}");
    }
}

#[test]
fn numbers() {
    assert_eq!(number("0"), Ok(Some(0)));
    assert_eq!(number("80"), Ok(Some(80)));
    assert_eq!(number("0x50"), Ok(Some(80)));
    assert_eq!(number("0X5a"), Ok(Some(90)));
    assert_eq!(number("017"), Ok(Some(15)));
    assert_eq!(number("4294967295"), Ok(Some(u32::MAX)));
    assert!(number("4294967296").is_err());
    assert!(number("0x100000000").is_err());
    assert!(number("08").is_err());
    assert_eq!(number("0x"), Ok(None));
    assert_eq!(number("12ab"), Ok(None));
    assert_eq!(number(""), Ok(None));
}
