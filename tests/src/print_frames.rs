//! Frames for the packet printer's golden test against `tcpdump -r`: every protocol the
//! printer covers (TCP conversations with options over IPv4 and IPv6, UDP, ICMP and ICMPv6
//! messages, ARP, 802.1Q and QinQ tags, IPv4 options and fragments, IPv6 extension headers,
//! IP-in-IP, GRE), odd and malformed headers, and frames cut short at every layer as a small
//! snap length leaves them. Built byte by byte in a fixed order, documentation addresses only.

use crate::{
    corpus::{MAC_A, MAC_B, MAC_BCAST, Mac, inet_checksum},
    frames::{self, be16},
};

/// A frame and the length it had on the wire (more than its bytes when cut short).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub data: Vec<u8>,
    pub orig_len: u32,
}

impl Frame {
    fn whole(data: Vec<u8>) -> Self {
        let orig_len = data.len() as u32;
        Self { data, orig_len }
    }

    /// The frame cut to its first `n` bytes, as a snap length of `n` keeps it.
    fn cut(&self, n: usize) -> Self {
        Self {
            data: self.data[..n.min(self.data.len())].to_vec(),
            orig_len: self.orig_len,
        }
    }
}

const V4_A: [u8; 4] = [192, 0, 2, 1];
const V4_B: [u8; 4] = [198, 51, 100, 2];
const V4_R: [u8; 4] = [203, 0, 113, 9];

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>()
        .expect("IPv6 literal")
        .octets()
}

fn ether_tagged(
    dst: Mac,
    src: Mac,
    tags: &[(u16, u16)],
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    frames::ether(dst, src, tags, ethertype, payload)
}

fn ether(dst: Mac, src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = ether_tagged(dst, src, &[], ethertype, payload);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// IPv4 header fields the frames vary.
#[derive(Debug, Clone)]
struct Ip4 {
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    id: u16,
    tos: u8,
    ttl: u8,
    /// Flags and fragment offset word (DF 0x4000, MF 0x2000, offset in 8-byte units).
    frag: u16,
    options: Vec<u8>,
}

impl Ip4 {
    fn new(src: [u8; 4], dst: [u8; 4], proto: u8, id: u16) -> Self {
        Self {
            src,
            dst,
            proto,
            id,
            tos: 0,
            ttl: 64,
            frag: 0x4000,
            options: Vec::new(),
        }
    }

    fn packet(&self, payload: &[u8]) -> Vec<u8> {
        let mut opts = self.options.clone();
        while !opts.len().is_multiple_of(4) {
            opts.push(0);
        }
        let hlen = 20 + opts.len();
        let mut h = vec![0x40 | (hlen / 4) as u8, self.tos];
        h.extend_from_slice(&be16((hlen + payload.len()) as u16));
        h.extend_from_slice(&be16(self.id));
        h.extend_from_slice(&be16(self.frag));
        h.extend_from_slice(&[self.ttl, self.proto, 0, 0]);
        h.extend_from_slice(&self.src);
        h.extend_from_slice(&self.dst);
        h.extend_from_slice(&opts);
        let c = inet_checksum(&h);
        h[10..12].copy_from_slice(&be16(c));
        h.extend_from_slice(payload);
        h
    }
}

fn ip6_packet(src: [u8; 16], dst: [u8; 16], next: u8, flow: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = (0x6000_0000u32 | flow).to_be_bytes().to_vec();
    p.extend_from_slice(&be16(payload.len() as u16));
    p.extend_from_slice(&[next, 64]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

/// Stores the pseudo-header checksum of an upper-layer segment at `at`.
fn checksum(src: &[u8], dst: &[u8], proto: u8, seg: &mut [u8], at: usize) {
    frames::l4_checksum(src, dst, proto, seg, at);
}

/// A TCP segment (checksum left zero: see [`checksum`]).
fn tcp(
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    opts: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut o = opts.to_vec();
    while !o.len().is_multiple_of(4) {
        o.push(0);
    }
    let mut s = Vec::new();
    s.extend_from_slice(&be16(sport));
    s.extend_from_slice(&be16(dport));
    s.extend_from_slice(&seq.to_be_bytes());
    s.extend_from_slice(&ack.to_be_bytes());
    s.push((((20 + o.len()) / 4) as u8) << 4);
    s.push(flags);
    s.extend_from_slice(&be16(64_240));
    s.extend_from_slice(&[0, 0, 0, 0]);
    s.extend_from_slice(&o);
    s.extend_from_slice(payload);
    s
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&be16(sport));
    s.extend_from_slice(&be16(dport));
    s.extend_from_slice(&be16((8 + payload.len()) as u16));
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(payload);
    s
}

fn icmp(ty: u8, code: u8, rest: &[u8]) -> Vec<u8> {
    let mut s = vec![ty, code, 0, 0];
    s.extend_from_slice(rest);
    let c = inet_checksum(&s);
    s[2..4].copy_from_slice(&be16(c));
    s
}

/// A TCP/IPv4 frame with a valid checksum.
fn tcp4(src: [u8; 4], dst: [u8; 4], id: u16, seg: Vec<u8>) -> Vec<u8> {
    let mut seg = seg;
    checksum(&src, &dst, 6, &mut seg, 16);
    let (d, s) = if src == V4_A {
        (MAC_B, MAC_A)
    } else {
        (MAC_A, MAC_B)
    };
    ether(d, s, 0x0800, &Ip4::new(src, dst, 6, id).packet(&seg))
}

fn tcp6(src: [u8; 16], dst: [u8; 16], seg: Vec<u8>) -> Vec<u8> {
    let mut seg = seg;
    checksum(&src, &dst, 6, &mut seg, 16);
    ether(MAC_B, MAC_A, 0x86dd, &ip6_packet(src, dst, 6, 0, &seg))
}

fn udp4(src: [u8; 4], dst: [u8; 4], id: u16, seg: Vec<u8>) -> Vec<u8> {
    let mut seg = seg;
    checksum(&src, &dst, 17, &mut seg, 6);
    ether(
        MAC_B,
        MAC_A,
        0x0800,
        &Ip4::new(src, dst, 17, id).packet(&seg),
    )
}

fn icmp4(src: [u8; 4], dst: [u8; 4], id: u16, msg: Vec<u8>) -> Vec<u8> {
    ether(
        MAC_B,
        MAC_A,
        0x0800,
        &Ip4::new(src, dst, 1, id).packet(&msg),
    )
}

fn icmp6(src: [u8; 16], dst: [u8; 16], msg: Vec<u8>) -> Vec<u8> {
    let mut m = msg;
    checksum(&src, &dst, 58, &mut m, 2);
    ether(MAC_B, MAC_A, 0x86dd, &ip6_packet(src, dst, 58, 0, &m))
}

fn text(n: usize) -> Vec<u8> {
    let line = b"GET /index.html HTTP/1.1\r\nHost: example.test\r\n\tUser-Agent: tap\r\n";
    (0..n).map(|i| line[i % line.len()]).collect()
}

fn binary(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

// TCP option bytes.
const MSS: [u8; 4] = [2, 4, 0x05, 0xb4];
const SACK_OK: [u8; 2] = [4, 2];
const NOP: u8 = 1;
const WSCALE7: [u8; 3] = [3, 3, 7];

fn ts_opt(val: u32, ecr: u32) -> Vec<u8> {
    let mut o = vec![8, 10];
    o.extend_from_slice(&val.to_be_bytes());
    o.extend_from_slice(&ecr.to_be_bytes());
    o
}

/// A TCP conversation over IPv4 between 192.0.2.1:40000 and 198.51.100.2:5001.
fn tcp_v4_conversation(v: &mut Vec<Frame>) {
    let (c, s) = (40_000, 5001);
    let (ci, si) = (1_000_000u32, 3_000_000_000u32);
    let syn_opts = [&MSS[..], &SACK_OK, &ts_opt(100, 0), &[NOP], &WSCALE7].concat();
    let ts = |a, b| [&[NOP, NOP][..], &ts_opt(a, b)].concat();
    let f = |src, id, seg| Frame::whole(tcp4(src, if src == V4_A { V4_B } else { V4_A }, id, seg));
    v.push(f(V4_A, 1, tcp(c, s, ci, 0, 0x02, &syn_opts, &[])));
    v.push(f(V4_B, 2, tcp(s, c, si, ci + 1, 0x12, &syn_opts, &[])));
    v.push(f(
        V4_A,
        3,
        tcp(c, s, ci + 1, si + 1, 0x10, &ts(101, 200), &[]),
    ));
    v.push(f(
        V4_A,
        4,
        tcp(c, s, ci + 1, si + 1, 0x18, &ts(102, 200), &text(100)),
    ));
    let sack = {
        let mut o = vec![NOP, NOP, 5, 10];
        o.extend_from_slice(&(ci + 201).to_be_bytes());
        o.extend_from_slice(&(ci + 301).to_be_bytes());
        o
    };
    v.push(f(V4_B, 5, tcp(s, c, si + 1, ci + 101, 0x10, &sack, &[])));
    // A full 1500-byte frame.
    v.push(f(
        V4_B,
        6,
        tcp(
            s,
            c,
            si + 1,
            ci + 101,
            0x10,
            &ts(201, 102),
            &binary(1448, 3),
        ),
    ));
    v.push(f(V4_A, 7, tcp(c, s, ci + 101, si + 1449, 0x11, &[], &[])));
    v.push(f(V4_B, 8, tcp(s, c, si + 1449, ci + 102, 0x11, &[], &[])));
    v.push(f(V4_A, 9, tcp(c, s, ci + 102, si + 1450, 0x10, &[], &[])));
    // Urgent data, ECE and CWR, no flags at all, every flag.
    let mut urg = tcp(c, s, ci + 102, si + 1450, 0x38, &[], b"!");
    urg[18..20].copy_from_slice(&be16(1));
    v.push(f(V4_A, 10, urg));
    v.push(f(V4_A, 11, tcp(c, s, ci + 103, si + 1450, 0xd0, &[], &[])));
    v.push(f(V4_A, 12, tcp(c, s, ci + 103, si + 1450, 0x00, &[], &[])));
    v.push(f(V4_A, 13, tcp(c, s, ci + 103, si + 1450, 0xff, &[], &[])));
    // A reset carrying text (RFC 1122), and one over 30 bytes.
    v.push(f(
        V4_B,
        14,
        tcp(s, c, si + 1450, 0, 0x04, &[], b"connection\x01reset\xff"),
    ));
    v.push(f(
        V4_B,
        15,
        tcp(s, c, si + 1450, ci + 103, 0x14, &[], &text(40)),
    ));
    // Odd options: unknown kind, UTO, echo, SCPS, fast open, experimental, a bad length.
    let odd = [
        &[99u8, 4, 0xab, 0xcd][..],
        &[28, 4, 0x81, 0x2c],
        &[6, 6, 0, 0, 1, 0],
        &[34, 2],
        &[34, 10, 1, 2, 3, 4, 5, 6, 7, 8],
        &[254, 4, 0xf9, 0x89],
        &[254, 6, 0x12, 0x34, 0, 0],
        &[20, 4, 0x5a, 7],
    ]
    .concat();
    v.push(f(V4_A, 16, tcp(c, s, ci + 103, si + 1450, 0x10, &odd, &[])));
    v.push(f(
        V4_A,
        17,
        tcp(c, s, ci + 103, si + 1450, 0x10, &[NOP, 2, 1, 0], &[]),
    ));
    v.push(f(
        V4_A,
        18,
        tcp(c, s, ci + 103, si + 1450, 0x10, &[2, 9, 0, 0], &[]),
    ));
    v.push(f(
        V4_A,
        19,
        tcp(c, s, ci + 103, si + 1450, 0x10, &[0, 2, 4, 5, 0xb4], &[]),
    ));
    // A bad checksum, and a header length shorter than 20 and longer than the segment.
    let mut bad = tcp4(
        V4_A,
        V4_B,
        20,
        tcp(c, s, ci + 103, si + 1450, 0x18, &[], b"xyz"),
    );
    bad[50] ^= 0x55;
    v.push(Frame::whole(bad));
    let mut short = tcp(c, s, ci + 103, si + 1450, 0x10, &[], &[]);
    short[12] = 0x40;
    v.push(f(V4_A, 21, short));
    let mut long = tcp(c, s, ci + 103, si + 1450, 0x10, &[], &[]);
    long[12] = 0xf0;
    v.push(f(V4_A, 22, long));
    // The same ports, other direction first: a SYN-ACK retransmission and a data segment
    // whose connection the printer has not seen.
    v.push(f(V4_B, 23, tcp(s, c, si, ci + 1, 0x12, &[], &[])));
    v.push(Frame::whole(tcp4(
        V4_R,
        V4_A,
        24,
        tcp(443, 40_001, 77, 88, 0x18, &[], &binary(10, 9)),
    )));
    // Equal ports, so the addresses decide the orientation.
    v.push(Frame::whole(tcp4(
        V4_B,
        V4_A,
        25,
        tcp(7777, 7777, 5, 6, 0x10, &[], &[]),
    )));
    v.push(Frame::whole(tcp4(
        V4_A,
        V4_B,
        26,
        tcp(7777, 7777, 7, 8, 0x10, &[], &[]),
    )));
}

fn tcp_v6_conversation(v: &mut Vec<Frame>) {
    let (a, b) = (v6("2001:db8::1"), v6("2001:db8:0:1::2"));
    let (c, s) = (40_002, 5002);
    let syn_opts = [&MSS[..], &SACK_OK, &ts_opt(1, 0), &[NOP], &WSCALE7].concat();
    v.push(Frame::whole(tcp6(
        a,
        b,
        tcp(c, s, 10, 0, 0x02, &syn_opts, &[]),
    )));
    v.push(Frame::whole(tcp6(
        b,
        a,
        tcp(s, c, 20, 11, 0x12, &syn_opts, &[]),
    )));
    v.push(Frame::whole(tcp6(a, b, tcp(c, s, 11, 21, 0x10, &[], &[]))));
    v.push(Frame::whole(tcp6(
        a,
        b,
        tcp(c, s, 11, 21, 0x18, &[], &text(300)),
    )));
    v.push(Frame::whole(tcp6(b, a, tcp(s, c, 21, 311, 0x11, &[], &[]))));
}

fn udp_frames(v: &mut Vec<Frame>) {
    v.push(Frame::whole(udp4(
        V4_A,
        V4_B,
        30,
        udp(40_003, 5003, &binary(32, 1)),
    )));
    v.push(Frame::whole(udp4(
        V4_A,
        V4_B,
        31,
        udp(40_003, 5003, &binary(1472, 2)),
    )));
    // No checksum (`-vv` says so), a bad one, a length beyond the packet and one below 8.
    let mut nosum = udp4(V4_A, V4_B, 32, udp(40_003, 5003, b"abc"));
    nosum[40..42].copy_from_slice(&[0, 0]);
    v.push(Frame::whole(nosum));
    let mut badsum = udp4(V4_A, V4_B, 33, udp(40_003, 5003, b"abcd"));
    badsum[41] ^= 1;
    v.push(Frame::whole(badsum));
    let mut long = udp(40_003, 5003, b"abcdef");
    long[4..6].copy_from_slice(&be16(200));
    v.push(Frame::whole(ether(
        MAC_B,
        MAC_A,
        0x0800,
        &Ip4::new(V4_A, V4_B, 17, 34).packet(&long),
    )));
    let mut tiny = udp(40_003, 5003, b"abcdef");
    tiny[4..6].copy_from_slice(&be16(4));
    v.push(Frame::whole(ether(
        MAC_B,
        MAC_A,
        0x0800,
        &Ip4::new(V4_A, V4_B, 17, 35).packet(&tiny),
    )));
    // IPv6.
    let (a, b) = (v6("2001:db8::1"), v6("2001:db8::2"));
    let mut seg = udp(40_004, 5004, &binary(20, 5));
    checksum(&a, &b, 17, &mut seg, 6);
    v.push(Frame::whole(ether(
        MAC_B,
        MAC_A,
        0x86dd,
        &ip6_packet(a, b, 17, 0x12345, &seg),
    )));
}

fn icmp_frames(v: &mut Vec<Frame>) {
    let echo = |ty, id: u16, seq: u16| {
        let mut r = be16(id).to_vec();
        r.extend_from_slice(&be16(seq));
        r.extend_from_slice(&binary(56, 7));
        icmp(ty, 0, &r)
    };
    v.push(Frame::whole(icmp4(V4_A, V4_B, 40, echo(8, 0x1234, 1))));
    v.push(Frame::whole(icmp4(V4_B, V4_A, 41, echo(0, 0x1234, 1))));
    // Errors quoting the offending datagram's header and first 8 bytes.
    let quoted = Ip4::new(V4_A, V4_B, 17, 99).packet(&udp(40_005, 5005, &binary(12, 3)));
    let quoted_tcp = Ip4::new(V4_A, V4_B, 6, 98).packet(&tcp(40_005, 5005, 1, 0, 2, &[], &[]));
    let err = |ty, code, word: [u8; 4], q: &[u8]| {
        let mut r = word.to_vec();
        r.extend_from_slice(&q[..28.min(q.len())]);
        icmp(ty, code, &r)
    };
    for (ty, code, word, q) in [
        (3u8, 3u8, [0u8; 4], &quoted),
        (3, 3, [0; 4], &quoted_tcp),
        (3, 1, [0; 4], &quoted),
        (3, 0, [0; 4], &quoted),
        (3, 2, [0; 4], &quoted),
        (3, 4, [0, 0, 0x05, 0x78], &quoted),
        (3, 13, [0; 4], &quoted),
        (3, 99, [0; 4], &quoted),
        (11, 0, [0; 4], &quoted),
        (11, 1, [0; 4], &quoted),
        (5, 1, V4_R, &quoted),
        (12, 0, [20, 0, 0, 0], &quoted),
        (4, 0, [0; 4], &quoted),
    ] {
        v.push(Frame::whole(icmp4(V4_R, V4_A, 42, err(ty, code, word, q))));
    }
    // Queries and odd types.
    let mut ts = vec![0, 7, 0, 1];
    for t in [3_600_000u32, 3_600_001, 86_399_999] {
        ts.extend_from_slice(&t.to_be_bytes());
    }
    v.push(Frame::whole(icmp4(V4_A, V4_B, 43, icmp(13, 0, &ts))));
    v.push(Frame::whole(icmp4(V4_B, V4_A, 44, icmp(14, 0, &ts))));
    v.push(Frame::whole(icmp4(
        V4_B,
        V4_A,
        45,
        icmp(18, 0, &[0, 1, 0, 2, 255, 255, 255, 0]),
    )));
    let mut adv = vec![2, 2, 0x07, 0x08];
    adv.extend_from_slice(&V4_R);
    adv.extend_from_slice(&10u32.to_be_bytes());
    adv.extend_from_slice(&V4_B);
    adv.extend_from_slice(&0u32.to_be_bytes());
    v.push(Frame::whole(icmp4(
        V4_R,
        [255, 255, 255, 255],
        46,
        icmp(9, 0, &adv),
    )));
    v.push(Frame::whole(icmp4(V4_A, V4_B, 47, icmp(42, 0, &[0; 4]))));
    // A wrong ICMP checksum.
    let mut bad = echo(8, 1, 2);
    bad[2] ^= 0xff;
    v.push(Frame::whole(icmp4(V4_A, V4_B, 48, bad)));
}

fn icmp6_frames(v: &mut Vec<Frame>) {
    let (a, b) = (v6("2001:db8::1"), v6("2001:db8::2"));
    let ll = v6("fe80::200:5eff:fe10:1");
    let echo = |ty, seq: u16| {
        let mut m = vec![ty, 0, 0, 0, 0x12, 0x34];
        m.extend_from_slice(&be16(seq));
        m.extend_from_slice(&binary(32, 4));
        m
    };
    v.push(Frame::whole(icmp6(a, b, echo(128, 1))));
    v.push(Frame::whole(icmp6(b, a, echo(129, 1))));
    // Neighbour discovery with options.
    let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&b);
    ns.extend_from_slice(&[1, 1]);
    ns.extend_from_slice(&MAC_A);
    v.push(Frame::whole(icmp6(a, v6("ff02::1:ff00:2"), ns)));
    let mut na = vec![136, 0, 0, 0, 0x60, 0, 0, 0];
    na.extend_from_slice(&b);
    na.extend_from_slice(&[2, 1]);
    na.extend_from_slice(&MAC_B);
    v.push(Frame::whole(icmp6(b, a, na)));
    let mut rs = vec![133, 0, 0, 0, 0, 0, 0, 0, 1, 1];
    rs.extend_from_slice(&MAC_A);
    v.push(Frame::whole(icmp6(ll, v6("ff02::2"), rs)));
    let mut ra = vec![134, 0, 0, 0, 64, 0xc8, 0x07, 0x08];
    ra.extend_from_slice(&30_000u32.to_be_bytes());
    ra.extend_from_slice(&1_000u32.to_be_bytes());
    ra.extend_from_slice(&[3, 4, 64, 0xc0]);
    ra.extend_from_slice(&86_400u32.to_be_bytes());
    ra.extend_from_slice(&u32::MAX.to_be_bytes());
    ra.extend_from_slice(&[0; 4]);
    ra.extend_from_slice(&v6("2001:db8:1::"));
    ra.extend_from_slice(&[5, 1, 0, 0]);
    ra.extend_from_slice(&1500u32.to_be_bytes());
    ra.extend_from_slice(&[25, 3, 0, 0]);
    ra.extend_from_slice(&600u32.to_be_bytes());
    ra.extend_from_slice(&v6("2001:db8::53"));
    ra.extend_from_slice(&[1, 1]);
    ra.extend_from_slice(&MAC_B);
    v.push(Frame::whole(icmp6(ll, v6("ff02::1"), ra)));
    // Errors.
    let quoted = ip6_packet(a, b, 17, 0, &udp(40_006, 5006, &binary(8, 1)));
    for (ty, code, word) in [
        (1u8, 4u8, [0u8; 4]),
        (1, 0, [0; 4]),
        (1, 2, [0; 4]),
        (2, 0, 1280u32.to_be_bytes()),
        (3, 0, [0; 4]),
        (3, 1, [0; 4]),
        (4, 1, 40u32.to_be_bytes()),
    ] {
        let mut m = vec![ty, code, 0, 0];
        m.extend_from_slice(&word);
        m.extend_from_slice(&quoted);
        v.push(Frame::whole(icmp6(v6("2001:db8::ff"), a, m)));
    }
    // MLDv1 query and report, MLDv2 report behind a hop-by-hop router alert.
    let mut q = vec![130, 0, 0, 0, 0x03, 0xe8, 0, 0];
    q.extend_from_slice(&[0; 16]);
    v.push(Frame::whole(icmp6(ll, v6("ff02::1"), q)));
    let mut rep = vec![131, 0, 0, 0, 0, 0, 0, 0];
    rep.extend_from_slice(&v6("ff02::1:3"));
    v.push(Frame::whole(icmp6(ll, v6("ff02::1:3"), rep)));
    let mut r2 = vec![143, 0, 0, 0, 0, 0, 0, 2];
    for (t, g, srcs) in [(4u8, "ff02::fb", 0u16), (1, "ff05::2", 1)] {
        r2.extend_from_slice(&[t, 0]);
        r2.extend_from_slice(&be16(srcs));
        r2.extend_from_slice(&v6(g));
        for _ in 0..srcs {
            r2.extend_from_slice(&b);
        }
    }
    let dst = v6("ff02::16");
    checksum(&ll, &dst, 58, &mut r2, 2);
    let mut hbh = vec![58, 0, 5, 2, 0, 0, 1, 0];
    hbh.extend_from_slice(&r2);
    v.push(Frame::whole(ether(
        MAC_B,
        MAC_A,
        0x86dd,
        &ip6_packet(ll, dst, 0, 0, &hbh),
    )));
}

fn arp_frames(v: &mut Vec<Frame>) {
    let arp = |op: u16, sha: Mac, spa: [u8; 4], tha: Mac, tpa: [u8; 4]| {
        let mut b = vec![0, 1, 8, 0, 6, 4];
        b.extend_from_slice(&be16(op));
        b.extend_from_slice(&sha);
        b.extend_from_slice(&spa);
        b.extend_from_slice(&tha);
        b.extend_from_slice(&tpa);
        b
    };
    v.push(Frame::whole(ether(
        MAC_BCAST,
        MAC_A,
        0x0806,
        &arp(1, MAC_A, V4_A, [0; 6], V4_B),
    )));
    v.push(Frame::whole(ether(
        MAC_A,
        MAC_B,
        0x0806,
        &arp(2, MAC_B, V4_B, MAC_A, V4_A),
    )));
    v.push(Frame::whole(ether(
        MAC_BCAST,
        MAC_A,
        0x0806,
        &arp(1, MAC_A, V4_A, MAC_B, V4_A),
    )));
    v.push(Frame::whole(ether(
        MAC_BCAST,
        MAC_A,
        0x8035,
        &arp(3, MAC_A, [0; 4], MAC_A, [0; 4]),
    )));
    v.push(Frame::whole(ether(
        MAC_A,
        MAC_B,
        0x8035,
        &arp(4, MAC_B, V4_B, MAC_A, V4_A),
    )));
    v.push(Frame::whole(ether(
        MAC_A,
        MAC_B,
        0x0806,
        &arp(9, MAC_B, V4_B, MAC_A, V4_A),
    )));
    let mut odd = arp(1, MAC_A, V4_A, [0; 6], V4_B);
    odd[2..4].copy_from_slice(&be16(0x86dd));
    v.push(Frame::whole(ether(MAC_BCAST, MAC_A, 0x0806, &odd)));
}

fn vlan_frames(v: &mut Vec<Frame>) {
    let inner = Ip4::new(V4_A, V4_B, 17, 60).packet(&udp(40_007, 5007, b"tagged"));
    v.push(Frame::whole(ether_tagged(
        MAC_B,
        MAC_A,
        &[(0x8100, 10)],
        0x0800,
        &inner,
    )));
    v.push(Frame::whole(ether_tagged(
        MAC_B,
        MAC_A,
        &[(0x8100, 0xb000 | 0x12c)],
        0x0800,
        &inner,
    )));
    v.push(Frame::whole(ether_tagged(
        MAC_B,
        MAC_A,
        &[(0x88a8, 100), (0x8100, 0x2000 | 0xc8)],
        0x0800,
        &inner,
    )));
    v.push(Frame::whole(ether_tagged(
        MAC_B,
        MAC_A,
        &[(0x9100, 5), (0x8100, 6)],
        0x0806,
        &[
            0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0x5e, 0x10, 0, 1, 192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 198,
            51, 100, 2,
        ],
    )));
}

fn ip_frames(v: &mut Vec<Frame>) {
    // ToS and ECN, no DF, TTL 1 and 0.
    let mut ip = Ip4::new(V4_A, V4_B, 17, 70);
    ip.tos = 0xb9;
    ip.frag = 0;
    ip.ttl = 1;
    v.push(Frame::whole(ether(
        MAC_B,
        MAC_A,
        0x0800,
        &ip.packet(&udp(1, 2, b"")),
    )));
    ip.ttl = 0;
    ip.tos = 0x02;
    v.push(Frame::whole(ether(
        MAC_B,
        MAC_A,
        0x0800,
        &ip.packet(&udp(1, 2, b"")),
    )));
    // Options: router alert, record route, timestamps, NOPs and EOL.
    let mut ip = Ip4::new(V4_A, V4_B, 17, 71);
    ip.options = vec![148, 4, 0, 0];
    v.push(Frame::whole(ether(
        MAC_B,
        MAC_A,
        0x0800,
        &ip.packet(&udp(1, 2, b"x")),
    )));
    ip.options = vec![1, 7, 11, 8, 203, 0, 113, 1, 0, 0, 0, 0, 0];
    v.push(Frame::whole(ether(
        MAC_B,
        MAC_A,
        0x0800,
        &ip.packet(&udp(1, 2, b"x")),
    )));
    ip.options = vec![68, 12, 9, 0, 0, 0, 0, 1, 0, 0, 0, 0];
    v.push(Frame::whole(ether(
        MAC_B,
        MAC_A,
        0x0800,
        &ip.packet(&udp(1, 2, b"x")),
    )));
    ip.options = vec![68, 12, 13, 1, 203, 0, 113, 1, 0, 0, 0, 5];
    v.push(Frame::whole(ether(
        MAC_B,
        MAC_A,
        0x0800,
        &ip.packet(&udp(1, 2, b"x")),
    )));
    ip.options = vec![131, 7, 4, 203, 0, 113, 1];
    v.push(Frame::whole(ether(
        MAC_B,
        MAC_A,
        0x0800,
        &ip.packet(&udp(1, 2, b"x")),
    )));
    ip.options = vec![0x44, 1];
    v.push(Frame::whole(ether(
        MAC_B,
        MAC_A,
        0x0800,
        &ip.packet(&udp(1, 2, b"x")),
    )));
    // Fragments: the first (with the UDP header) and a later one.
    let mut ip = Ip4::new(V4_A, V4_B, 17, 72);
    ip.frag = 0x2000;
    v.push(Frame::whole(ether(
        MAC_B,
        MAC_A,
        0x0800,
        &ip.packet(&udp(40_008, 5008, &binary(24, 1))),
    )));
    ip.frag = 4;
    v.push(Frame::whole(ether(
        MAC_B,
        MAC_A,
        0x0800,
        &ip.packet(&binary(16, 2)),
    )));
    // A protocol nobody decodes, and a bad header checksum.
    v.push(Frame::whole(ether(
        MAC_B,
        MAC_A,
        0x0800,
        &Ip4::new(V4_A, V4_B, 253, 73).packet(b"exp"),
    )));
    let mut bad = ether(
        MAC_B,
        MAC_A,
        0x0800,
        &Ip4::new(V4_A, V4_B, 17, 74).packet(&udp(1, 2, b"")),
    );
    bad[24] ^= 0x10;
    v.push(Frame::whole(bad));
    // Header length below 20, a total length below the header, and one beyond the frame.
    let mut f = ether(
        MAC_B,
        MAC_A,
        0x0800,
        &Ip4::new(V4_A, V4_B, 17, 75).packet(&udp(1, 2, b"")),
    );
    f[14] = 0x44;
    v.push(Frame::whole(f.clone()));
    f[14] = 0x45;
    f[16..18].copy_from_slice(&be16(10));
    v.push(Frame::whole(f.clone()));
    f[16..18].copy_from_slice(&be16(400));
    v.push(Frame::whole(f));
    // IP in IP and IPv6 in IP.
    let inner = Ip4::new(V4_R, V4_B, 1, 76).packet(&icmp(8, 0, &[0, 1, 0, 1]));
    v.push(Frame::whole(ether(
        MAC_B,
        MAC_A,
        0x0800,
        &Ip4::new(V4_A, V4_B, 4, 77).packet(&inner),
    )));
    let inner6 = ip6_packet(v6("2001:db8::1"), v6("2001:db8::2"), 59, 0, &[]);
    v.push(Frame::whole(ether(
        MAC_B,
        MAC_A,
        0x0800,
        &Ip4::new(V4_A, V4_B, 41, 78).packet(&inner6),
    )));
    // IPv6: traffic class and flow label, no next header, extension headers.
    let (a, b) = (v6("2001:db8::1"), v6("2001:db8::2"));
    v.push(Frame::whole(ether(
        MAC_B,
        MAC_A,
        0x86dd,
        &ip6_packet(a, b, 59, 0x0b8_1234, &[]),
    )));
    let mut seg = udp(40_009, 5009, b"behind options");
    // Destination options, routing type 0 and a first fragment before UDP.
    let mut chain = vec![43, 0, 1, 4, 0, 0, 0, 0];
    chain.extend_from_slice(&[44, 2, 0, 0, 0, 0, 0, 0]);
    chain.extend_from_slice(&v6("2001:db8:ffff::1"));
    chain.extend_from_slice(&[17, 0, 0, 1, 0, 0, 0x12, 0x34]);
    let final_dst = v6("2001:db8:ffff::1");
    checksum(&a, &final_dst, 17, &mut seg, 6);
    chain.extend_from_slice(&seg);
    v.push(Frame::whole(ether(
        MAC_B,
        MAC_A,
        0x86dd,
        &ip6_packet(a, b, 60, 0, &chain),
    )));
    // A later IPv6 fragment.
    let mut later = vec![17, 0, 0, 0x20, 0, 0, 0x12, 0x34];
    later.extend_from_slice(&binary(16, 4));
    v.push(Frame::whole(ether(
        MAC_B,
        MAC_A,
        0x86dd,
        &ip6_packet(a, b, 44, 0, &later),
    )));
    // IPv6 version error, and IPv6 in an IPv4 ethertype.
    let mut bad6 = ip6_packet(a, b, 59, 0, &[]);
    bad6[0] = 0x50;
    v.push(Frame::whole(ether(MAC_B, MAC_A, 0x86dd, &bad6)));
    v.push(Frame::whole(ether(
        MAC_B,
        MAC_A,
        0x0800,
        &ip6_packet(a, b, 59, 0, &[]),
    )));
    // An ethertype nobody decodes: its bytes as hex.
    v.push(Frame::whole(ether(MAC_B, MAC_A, 0x88b5, &binary(40, 6))));
}

fn gre_frames(v: &mut Vec<Frame>) {
    let inner = Ip4::new(V4_R, V4_B, 17, 80).packet(&udp(40_010, 5010, b"in gre"));
    let gre = |flags: u16, proto: u16, extra: &[u8], payload: &[u8]| {
        let mut g = be16(flags).to_vec();
        g.extend_from_slice(&be16(proto));
        g.extend_from_slice(extra);
        g.extend_from_slice(payload);
        g
    };
    let outer = |id, g: Vec<u8>| {
        Frame::whole(ether(
            MAC_B,
            MAC_A,
            0x0800,
            &Ip4::new(V4_A, V4_B, 47, id).packet(&g),
        ))
    };
    v.push(outer(81, gre(0, 0x0800, &[], &inner)));
    v.push(outer(82, gre(0x2000, 0x0800, &[0, 0, 0, 42], &inner)));
    v.push(outer(
        83,
        gre(
            0xb000,
            0x0800,
            &[0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 7],
            &inner,
        ),
    ));
    v.push(outer(
        84,
        gre(
            0,
            0x86dd,
            &[],
            &ip6_packet(v6("2001:db8::1"), v6("2001:db8::2"), 59, 0, &[]),
        ),
    ));
    v.push(outer(
        85,
        gre(
            0x3081,
            0x880b,
            &[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3],
            b"ppp",
        ),
    ));
    v.push(outer(
        86,
        gre(0x2081, 0x880b, &[0, 0, 0, 1, 0, 0, 0, 3], &[]),
    ));
    v.push(outer(87, gre(0, 0x1234, &[], b"other")));
    v.push(outer(88, gre(5, 0x0800, &[], &inner)));
    // Ethernet over GRE (gretap) and ERSPAN type II, whose header tcpdump 4.99.3 leaves undecoded.
    let frame = ether(MAC_A, MAC_B, 0x0800, &inner);
    v.push(outer(89, gre(0x2000, 0x6558, &[0, 1, 0x23, 0x45], &frame)));
    let erspan = [0x10, 0x0a, 0x00, 0x05, 0, 0, 0, 1];
    v.push(outer(
        90,
        gre(
            0x1000,
            0x88be,
            &[0, 0, 0, 9],
            &[&erspan[..], &frame].concat(),
        ),
    ));
}

/// VXLAN and GENEVE, over IPv4 and IPv6, carrying TCP, UDP and a tagged frame.
fn udp_tunnel_frames(v: &mut Vec<Frame>) {
    let (oa, ob) = ([198, 51, 100, 10], [198, 51, 100, 20]);
    let in_udp = ether(
        MAC_A,
        MAC_B,
        0x0800,
        &Ip4::new(V4_R, V4_B, 17, 90).packet(&udp(40_011, 5011, b"inner")),
    );
    let mut seg = tcp(40_012, 5012, 1, 2, 0x18, &[], b"inner tcp");
    checksum(&V4_R, &V4_B, 6, &mut seg, 16);
    let in_tcp = ether(
        MAC_A,
        MAC_B,
        0x0800,
        &Ip4::new(V4_R, V4_B, 6, 91).packet(&seg),
    );
    let in_tagged = ether_tagged(
        MAC_A,
        MAC_B,
        &[(0x8100, 42)],
        0x0800,
        &Ip4::new(V4_R, V4_B, 1, 92).packet(&icmp(8, 0, &[0, 9, 0, 1])),
    );
    let vx = |vni: u32, flags: u8| {
        let mut h = vec![flags, 0, 0, 0];
        h.extend_from_slice(&vni.to_be_bytes()[1..]);
        h.push(0);
        h
    };
    let udp_out = |id, sport, dport, payload: &[u8]| {
        let mut seg = udp(sport, dport, payload);
        checksum(&oa, &ob, 17, &mut seg, 6);
        Frame::whole(ether(
            MAC_B,
            MAC_A,
            0x0800,
            &Ip4::new(oa, ob, 17, id).packet(&seg),
        ))
    };
    v.push(udp_out(
        100,
        50_000,
        4789,
        &[&vx(42, 8)[..], &in_udp].concat(),
    ));
    v.push(udp_out(101, 4789, 4789, &[&vx(7, 8)[..], &in_tcp].concat()));
    v.push(udp_out(
        102,
        50_001,
        4789,
        &[&vx(0x00ab_cdef, 8)[..], &in_tagged].concat(),
    ));
    v.push(udp_out(
        103,
        50_002,
        4789,
        &[&vx(1, 0)[..], &in_udp].concat(),
    ));
    v.push(udp_out(104, 50_003, 4789, b"short"));
    let geneve = |opts: &[u8], proto: u16, vni: u32, flags: u8| {
        let mut h = vec![(opts.len() / 4) as u8, flags];
        h.extend_from_slice(&be16(proto));
        h.extend_from_slice(&vni.to_be_bytes()[1..]);
        h.push(0);
        h.extend_from_slice(opts);
        h
    };
    let opts = [
        0x01, 0x01, 0x81, 0x01, 0xca, 0xfe, 0xf0, 0x0d, 0xff, 0xf0, 0x02, 0x00,
    ];
    v.push(udp_out(
        105,
        50_004,
        6081,
        &[&geneve(&opts, 0x6558, 11, 0)[..], &in_udp].concat(),
    ));
    v.push(udp_out(
        106,
        50_005,
        6081,
        &[&geneve(&[], 0x6558, 12, 0xc0)[..], &in_tcp].concat(),
    ));
    let inner_ip = Ip4::new(V4_R, V4_B, 17, 93).packet(&udp(40_013, 5013, b"ip in geneve"));
    v.push(udp_out(
        107,
        50_006,
        6081,
        &[&geneve(&[], 0x0800, 13, 0)[..], &inner_ip].concat(),
    ));
    v.push(udp_out(108, 50_007, 6081, &geneve(&[], 0x1234, 14, 0)));
    // Over IPv6.
    let (a6, b6) = (v6("2001:db8:2::10"), v6("2001:db8:2::20"));
    let mut seg = udp(50_008, 4789, &[&vx(99, 8)[..], &in_udp].concat());
    checksum(&a6, &b6, 17, &mut seg, 6);
    v.push(Frame::whole(ether(
        MAC_B,
        MAC_A,
        0x86dd,
        &ip6_packet(a6, b6, 17, 0, &seg),
    )));
}

/// Every frame of the printer's golden test, whole.
#[must_use]
pub fn whole_frames() -> Vec<Frame> {
    let mut v = Vec::new();
    tcp_v4_conversation(&mut v);
    tcp_v6_conversation(&mut v);
    udp_frames(&mut v);
    icmp_frames(&mut v);
    icmp6_frames(&mut v);
    arp_frames(&mut v);
    vlan_frames(&mut v);
    ip_frames(&mut v);
    gre_frames(&mut v);
    udp_tunnel_frames(&mut v);
    v
}

/// `frame` cut short at every length below `up_to` bytes and one byte short of whole, as snap
/// lengths leave it: the Ethernet header, tags, IP headers and options, TCP/UDP/ICMP headers,
/// tunnels, each end at every byte.
#[must_use]
pub fn cuts(frame: &Frame, up_to: usize) -> Vec<Frame> {
    let n = frame.data.len();
    let mut lens: Vec<usize> = (1..n.min(up_to)).collect();
    if n > 1 && !lens.contains(&(n - 1)) {
        lens.push(n - 1);
    }
    lens.into_iter().map(|l| frame.cut(l)).collect()
}

impl Frame {
    /// A frame recorded whole.
    #[must_use]
    pub fn of(data: Vec<u8>) -> Self {
        Self::whole(data)
    }
}
