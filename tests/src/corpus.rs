//! A reproducible corpus of Ethernet frames and the filter expressions that run over it: the
//! input of the differential test against tcpdump (`tests/filter_diff.rs`).
//!
//! Every frame is built by hand, byte by byte, in a fixed order: no randomness, no network, so
//! the written pcap is the same on every machine and every run. Frames are unique (an IPv4 ID or
//! an IPv6 flow label counts up), so a frame's bytes name its index in the corpus.
//!
//! Addresses are from the documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
//! 2001:db8::/32) plus a few private, link-local and multicast ones for `net`/`mask` filters.

use std::{io::Write as _, path::Path};

use crate::frames::{self, Tag, be16, ether, pad60, udp};
pub use crate::frames::{Mac, inet_checksum};

/// IPv4 address, network byte order.
pub type Ip4 = [u8; 4];

/// Locally administered unicast addresses; they repeat across frames so `ether host` filters
/// select a real subset.
pub const MAC_A: Mac = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01];
pub const MAC_B: Mac = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x02];
pub const MAC_C: Mac = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x03];
/// A "router" with a vendor-looking (globally administered) address.
pub const MAC_R: Mac = [0x00, 0x1b, 0x21, 0xaa, 0xbb, 0xcc];
pub const MAC_BCAST: Mac = [0xff; 6];
const MAC_V4_MCAST: Mac = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];
const MAC_V6_MCAST: Mac = [0x33, 0x33, 0x00, 0x00, 0x00, 0x01];
const MAC_V6_SNMC: Mac = [0x33, 0x33, 0xff, 0x00, 0x00, 0x02];
const MAC_LLDP: Mac = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e];
const MAC_STP: Mac = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x00];

/// Unicast (dst, src) pairs the IP frames rotate through.
const MAC_PAIRS: [(Mac, Mac); 6] = [
    (MAC_B, MAC_A),
    (MAC_A, MAC_B),
    (MAC_R, MAC_C),
    (MAC_C, MAC_R),
    (MAC_B, MAC_C),
    (MAC_R, MAC_A),
];

pub const ETH_IPV4: u16 = 0x0800;
pub const ETH_ARP: u16 = 0x0806;
pub const ETH_RARP: u16 = 0x8035;
pub const ETH_IPV6: u16 = 0x86dd;
pub const ETH_VLAN: u16 = 0x8100;
pub const ETH_QINQ: u16 = 0x88a8;
pub const ETH_QINQ_OLD: u16 = 0x9100;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMP6: u8 = 58;
const SCTP: u8 = 132;
const IGMP: u8 = 2;
const GRE: u8 = 47;
const ESP: u8 = 50;
const OSPF: u8 = 89;
const HOPOPT: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DSTOPTS: u8 = 60;
const NONXT: u8 = 59;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const RST: u8 = 0x04;
const FIN: u8 = 0x01;

/// Ports the TCP/UDP grid covers, as source and as destination.
pub const PORTS: &[u16] = &[
    0, 53, 80, 443, 1024, 8080, 65535, 22, 123, 1023, 1025, 8079, 8081, 5353,
];

/// IPv4 hosts the grid rotates through (documentation ranges, then private ones for `net` and
/// `mask` tests; 172.32.0.1 sits just outside 172.16.0.0/12).
pub const HOSTS_V4: &[Ip4] = &[
    [192, 0, 2, 1],
    [192, 0, 2, 2],
    [192, 0, 2, 77],
    [198, 51, 100, 7],
    [198, 51, 100, 200],
    [203, 0, 113, 5],
    [203, 0, 113, 254],
    [10, 1, 2, 3],
    [10, 200, 0, 1],
    [172, 16, 5, 4],
    [172, 31, 255, 1],
    [172, 32, 0, 1],
    [192, 168, 1, 10],
];

/// IPv6 hosts the grid rotates through (2001:db9::1 sits just outside 2001:db8::/32).
pub const HOSTS_V6: &[&str] = &[
    "2001:db8::1",
    "2001:db8::2",
    "2001:db8::77",
    "2001:db8:1::10",
    "2001:db8:1:ffff::1",
    "2001:db8:abcd::5",
    "2001:db9::1",
    "fe80::1",
    "fd00::1",
];

/// Filter expressions for the differential test, in tcpdump syntax. Each one is accepted by
/// tcpdump 4.99 / libpcap 1.10 and, on this corpus, selects some but (nearly always) not all
/// frames.
///
/// Left out on purpose, because libpcap's answer there is an accident of its code generator
/// that a kernel program walking the headers cannot reasonably mirror:
/// - `vlan or tcp`, `not vlan and tcp`: `vlan` shifts the offsets of everything compiled after
///   it, in every branch, also under `or` and `not`; so `tcp` after a `vlan` in an `or` branch
///   reads an untagged frame 4 bytes off. (`vlan` last, as in `not vlan`, is well defined.)
/// - `vlan and vlan and vlan and ...`: tap looks through at most two tags and refuses a third
///   `vlan` with a clear error (a design limit, not a difference); the corpus keeps a triple-tagged
///   frame so the two-tag filters see one.
/// - ARP with hardware/protocol lengths other than 6/4, IPv4 with IHL < 5: libpcap reads the
///   addresses and ports at fixed or IHL-derived offsets regardless; a header walk may reject
///   such frames first. The corpus has none.
/// - IPv4 frames whose version nibble is not 4 (and IPv6 ones not 6): libpcap never checks the
///   version, a header walk may; the corpus has none.
/// - `ip[...]`, `tcp[...]` byte-offset expressions, `greater`/`less`, `broadcast`/`multicast`,
///   protocol names after `proto`: outside this corpus's scope (qualifiers, protocols, hosts,
///   nets, ports, VLANs and their combinations).
///
/// Where libpcap's optimizer changes the answer on a truncated frame (it drops loads that cannot
/// matter, e.g. every load of `net ::/0`), the differential test accepts either answer for that
/// frame; those expressions stay in.
pub const EXPRESSIONS: &[&str] = &[
    // Protocols.
    "ip",
    "ip6",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "sctp",
    "arp",
    "rarp",
    "proto 47",
    "proto 17",
    "ip proto 50",
    "ip proto 132",
    "ip6 proto 6",
    "ip6 proto 17",
    "ip6 proto 58",
    "ip6 proto 0",
    "ip6 proto 44",
    "ip proto 0",
    "ether proto 0x88cc",
    "ether proto 0x8863",
    "ether proto 0x0806",
    "ip and tcp",
    "ip6 and tcp",
    "ip6 and udp",
    // Hosts and nets.
    "host 192.0.2.1",
    "src host 192.0.2.1",
    "dst host 192.0.2.2",
    "src or dst host 203.0.113.5",
    "src and dst host 172.16.5.4",
    "ip host 192.0.2.1",
    "host 192.0.2.1 or 192.0.2.2",
    "src host 198.51.100.7 or 203.0.113.254",
    "net 192.0.2.0/24",
    "src net 198.51.100.0/24",
    "dst net 203.0.113.0/24",
    "src and dst net 192.0.2.0/24",
    "net 10.0.0.0/8",
    "net 172.16.0.0/12",
    "net 192.168",
    "net 198.51.100.0 mask 255.255.255.0",
    "net 172.16.0.0 mask 255.240.0.0",
    "dst net 10.200.0.0 mask 255.255.0.0",
    "host 2001:db8::1",
    "ip6 host 2001:db8::2",
    "src host 2001:db8::77",
    "net 2001:db8::/32",
    "dst net 2001:db8:1::/48",
    "src net fe80::/10",
    "dst host ff02::1",
    "host 192.0.2.1 and host 192.0.2.2",
    "host 192.0.2.1 or 2001:db8::1",
    "host 192.0.2.77",
    "arp or rarp and src host 192.0.2.1",
    "dst net ff00::/8",
    "host 0.0.0.0",
    "dst host 255.255.255.255",
    "net 192.0.2.1/32",
    "net 192.0.2.64/26",
    "net 0.0.0.0/0",
    "net ::/0",
    "src net 2001:db8::/47",
    "net 2001:db8:ab00::/40",
    "net 2001:db8::1/128",
    // Ports.
    "port 53",
    "tcp port 80",
    "udp port 53",
    "sctp port 2905",
    "src port 1024",
    "dst port 443",
    "src or dst port 8080",
    "src and dst port 53",
    "port 0",
    "port 65535",
    "tcp dst port 8080",
    "udp src port 123",
    "port 53 or 80",
    "dst port 53 or 80 or 443",
    "portrange 8080-1024",
    "portrange 0-65535",
    "tcp port 80 or 443",
    "portrange 1024-8080",
    "tcp portrange 1-1023",
    "udp src portrange 50000-65535",
    "dst portrange 0-53",
    "ip6 and port 53",
    "ip and port 80",
    // Ethernet.
    "ether host 02:00:5e:10:00:01",
    "ether src 02:00:5e:10:00:02",
    "ether dst ff:ff:ff:ff:ff:ff",
    "ether dst 01:00:5e:00:00:fb",
    "ether src 00:1b:21:aa:bb:cc and ip6",
    // VLAN.
    "vlan",
    "vlan 100",
    "vlan 4095",
    "vlan and tcp",
    "vlan and ip6",
    "vlan 100 and vlan 200 and udp",
    "vlan and vlan",
    "not vlan",
    "vlan 0",
    "vlan and not ip",
    "vlan and ether proto 0x88cc",
    "vlan and ether src 02:00:5e:10:00:01",
    "vlan and host 192.0.2.1",
    "vlan 200 and udp port 53",
    "vlan and arp",
    "vlan and (tcp port 80 or udp port 53)",
    // Boolean structure and precedence.
    "tcp and port 80",
    "tcp && dst port 443",
    "udp or icmp",
    "tcp || sctp",
    "not ip",
    "! tcp",
    "not tcp and not udp",
    "! (tcp or udp)",
    "udp or tcp and port 80",
    "(udp or tcp) and port 80",
    "udp or (tcp and port 80)",
    "icmp or host 192.0.2.1 and tcp",
    "not port 53 or 80",
    "not tcp and port 53",
    "not not tcp",
    "tcp and not port 80 or udp",
    "tcp or udp and port 53 or icmp",
    "not host 192.0.2.1 and not host 192.0.2.2",
    "ip and not net 192.0.2.0/24",
    "(ip or ip6) and not (tcp or udp)",
    "tcp and (port 80 or port 443) and not host 198.51.100.7",
    // Fragments: libpcap matches IPv4 ports only in fragments with offset 0.
    "udp port 53 and ip",
    "ip and udp and not port 53",
    "ip proto 17",
    // Negations on truncated frames: a read past the end rejects the whole frame.
    "not port 80",
    "not tcp port 80",
    "not host 192.0.2.1",
    "not ip6 host 2001:db8::1",
    "not udp src port 53",
    "not src host 192.0.2.1",
    "not host 2001:db8::1",
    "not ip6 proto 17",
    "not icmp6",
    "ip protochain 6",
    "ip6 protochain 6",
    "protochain 17",
    "not protochain 6",
    "ip6 protochain 58 or ip protochain 1",
];

/// Filters with many alternatives, generated: 60 hosts (some of them in the corpus), 40 ports,
/// and a mix of nets.
pub fn big_expressions() -> Vec<String> {
    let mut hosts: Vec<String> = (0..54)
        .map(|i| format!("host 198.51.100.{}", 100 + i))
        .collect();
    hosts.extend(
        [
            "192.0.2.77",
            "203.0.113.254",
            "10.1.2.3",
            "172.31.255.1",
            "2001:db8::2",
            "2001:db8:abcd::5",
        ]
        .map(|h| format!("host {h}")),
    );
    let ports: Vec<String> = (0..34)
        .map(|i| format!("port {}", 2000 + i))
        .chain(
            [
                "port 53",
                "port 443",
                "port 0",
                "port 8081",
                "port 22",
                "port 5353",
            ]
            .map(String::from),
        )
        .collect();
    let nets: Vec<String> = (0..30)
        .map(|i| format!("net 100.{i}.0.0/16"))
        .chain(
            [
                "net 203.0.113.0/25",
                "src net 10.200.0.0/16",
                "dst net 2001:db8:1::/48",
            ]
            .map(String::from),
        )
        .collect();
    vec![
        hosts.join(" or "),
        ports.join(" or "),
        format!("tcp and ({})", ports.join(" or ")),
        nets.join(" or "),
    ]
}

/// The corpus, in file order.
pub fn frames() -> Vec<Vec<u8>> {
    let mut c = Corpus::default();
    c.ipv4_grid();
    c.ipv4_misc();
    c.ipv4_options();
    c.ipv4_fragments();
    c.ipv6_grid();
    c.ipv6_ext_headers();
    c.vlans();
    c.arp();
    c.other_ethertypes();
    c.odd_lengths();
    c.truncated();
    c.frames
}

/// Seconds of the first frame's timestamp; frame i is `i` ms later.
pub const TS_BASE_SEC: u32 = 1_700_000_000;

/// Timestamp of frame `index` as (seconds, microseconds).
pub fn timestamp(index: usize) -> (u32, u32) {
    let ms = u32::try_from(index).expect("corpus index fits u32");
    (TS_BASE_SEC + ms / 1000, (ms % 1000) * 1000)
}

/// Writes [`frames`] as a microsecond pcap (linktype 1, Ethernet) and returns the frame count.
pub fn write_corpus(path: &Path) -> usize {
    let bytes = pcap_bytes(&frames());
    let mut f =
        std::fs::File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    f.write_all(&bytes.0)
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    bytes.1
}

/// The pcap file of `frames` with [`timestamp`]s, and the frame count.
pub fn pcap_bytes(frames: &[Vec<u8>]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        let (sec, usec) = timestamp(i);
        let len = u32::try_from(f.len()).expect("frame length fits u32");
        for v in [sec, usec, len, len] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(f);
    }
    (out, frames.len())
}

// ---------------------------------------------------------------------------------------------
// Byte-level builders.

/// CRC-32C (Castagnoli), as SCTP uses it.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(20 + payload.len());
    s.extend_from_slice(&be16(sport));
    s.extend_from_slice(&be16(dport));
    s.extend_from_slice(&(0x1000_0000u32 + u32::from(sport)).to_be_bytes()); // seq
    let ack = if flags & ACK != 0 {
        0x2000_0000u32 + u32::from(dport)
    } else {
        0
    };
    s.extend_from_slice(&ack.to_be_bytes());
    s.push(5 << 4);
    s.push(flags);
    s.extend_from_slice(&be16(64240)); // window
    s.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    s.extend_from_slice(payload);
    s
}

/// SCTP common header and one INIT chunk; the CRC-32C is complete (it covers no pseudo-header).
fn sctp(sport: u16, dport: u16, vtag: u32) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&be16(sport));
    s.extend_from_slice(&be16(dport));
    s.extend_from_slice(&vtag.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 0]);
    // INIT: type 1, flags 0, length 20, initiate tag, a_rwnd, out streams, in streams, TSN.
    s.extend_from_slice(&[1, 0, 0, 20]);
    s.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    s.extend_from_slice(&65536u32.to_be_bytes());
    s.extend_from_slice(&[0, 10, 0, 10]);
    s.extend_from_slice(&0x0000_0001u32.to_be_bytes());
    let crc = crc32c(&s);
    s[8..12].copy_from_slice(&crc.to_le_bytes());
    s
}

fn icmp(ty: u8, code: u8, rest: &[u8]) -> Vec<u8> {
    let mut s = vec![ty, code, 0, 0];
    s.extend_from_slice(rest);
    let c = inet_checksum(&s);
    s[2..4].copy_from_slice(&be16(c));
    s
}

/// ICMPv6 without its checksum (it needs the pseudo-header: see [`l4_checksum_v6`]).
fn icmp6(ty: u8, code: u8, rest: &[u8]) -> Vec<u8> {
    let mut s = vec![ty, code, 0, 0];
    s.extend_from_slice(rest);
    s
}

/// Offset of the checksum field in an upper-layer segment whose checksum covers a pseudo-header.
fn checksum_offset(proto: u8) -> Option<usize> {
    match proto {
        TCP => Some(16),
        UDP => Some(6),
        ICMP6 => Some(2),
        _ => None,
    }
}

fn l4_checksum_v4(src: Ip4, dst: Ip4, proto: u8, seg: &mut [u8]) {
    if let Some(at) = checksum_offset(proto).filter(|at| seg.len() >= at + 2) {
        frames::l4_checksum(&src, &dst, proto, seg, at);
    }
}

fn l4_checksum_v6(src: [u8; 16], dst: [u8; 16], proto: u8, seg: &mut [u8]) {
    if let Some(at) = checksum_offset(proto).filter(|at| seg.len() >= at + 2) {
        frames::l4_checksum(&src, &dst, proto, seg, at);
    }
}

/// An IPv4 header; [`V4::packet`] fills the lengths and the header checksum.
#[derive(Debug, Clone)]
struct V4 {
    src: Ip4,
    dst: Ip4,
    proto: u8,
    id: u16,
    ttl: u8,
    tos: u8,
    df: bool,
    mf: bool,
    /// Fragment offset in 8-byte units.
    frag_off: u16,
    /// Options; padded with EOL to a multiple of 4 bytes.
    options: Vec<u8>,
    /// Total length to claim instead of the real one.
    total_len: Option<u16>,
}

impl V4 {
    fn new(src: Ip4, dst: Ip4, proto: u8) -> Self {
        Self {
            src,
            dst,
            proto,
            id: 0,
            ttl: 64,
            tos: 0,
            df: false,
            mf: false,
            frag_off: 0,
            options: Vec::new(),
            total_len: None,
        }
    }

    fn packet(&self, payload: &[u8]) -> Vec<u8> {
        let mut opts = self.options.clone();
        while !opts.len().is_multiple_of(4) {
            opts.push(0);
        }
        let ihl = 5 + opts.len() / 4;
        assert!(ihl <= 15, "IPv4 options longer than 40 bytes");
        let total = u16::try_from(ihl * 4 + payload.len()).expect("IPv4 total length");
        let mut h = Vec::with_capacity(ihl * 4 + payload.len());
        h.push(0x40 | ihl as u8);
        h.push(self.tos);
        h.extend_from_slice(&be16(self.total_len.unwrap_or(total)));
        h.extend_from_slice(&be16(self.id));
        let flags =
            (u16::from(self.df) << 14) | (u16::from(self.mf) << 13) | (self.frag_off & 0x1fff);
        h.extend_from_slice(&be16(flags));
        h.push(self.ttl);
        h.push(self.proto);
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(&self.src);
        h.extend_from_slice(&self.dst);
        h.extend_from_slice(&opts);
        let c = inet_checksum(&h);
        h[10..12].copy_from_slice(&be16(c));
        h.extend_from_slice(payload);
        h
    }
}

/// IPv6 extension headers, each in 8-byte units as on the wire.
#[derive(Debug, Clone, Copy)]
enum Ext {
    /// Hop-by-hop options: Router Alert plus padding, `units` × 8 bytes.
    HopByHop(u8),
    /// Routing header type 0 with one address and segments left 0.
    Routing,
    /// Destination options: padding only, `units` × 8 bytes.
    DestOpts(u8),
    /// Fragment header; `offset` in 8-byte units.
    Fragment { offset: u16, more: bool, id: u32 },
}

impl Ext {
    fn proto(self) -> u8 {
        match self {
            Ext::HopByHop(_) => HOPOPT,
            Ext::Routing => ROUTING,
            Ext::DestOpts(_) => DSTOPTS,
            Ext::Fragment { .. } => FRAGMENT,
        }
    }

    fn bytes(self, next: u8) -> Vec<u8> {
        match self {
            Ext::HopByHop(units) | Ext::DestOpts(units) => {
                let len = 8 * usize::from(units);
                let mut b = vec![next, units - 1];
                if matches!(self, Ext::HopByHop(_)) {
                    b.extend_from_slice(&[0x05, 0x02, 0x00, 0x00]); // Router Alert: MLD
                }
                let pad = len - b.len();
                if pad == 1 {
                    b.push(0); // Pad1
                } else {
                    b.push(0x01); // PadN
                    b.push(u8::try_from(pad - 2).expect("PadN length"));
                    b.resize(len, 0);
                }
                b
            }
            Ext::Routing => {
                let mut b = vec![next, 2, 0, 0, 0, 0, 0, 0];
                b.extend_from_slice(&v6("2001:db8:ffff::1"));
                b
            }
            Ext::Fragment { offset, more, id } => {
                let mut b = vec![next, 0];
                b.extend_from_slice(&be16((offset << 3) | u16::from(more)));
                b.extend_from_slice(&id.to_be_bytes());
                b
            }
        }
    }
}

/// Parses an IPv6 literal (test data only).
fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>()
        .unwrap_or_else(|e| panic!("bad IPv6 literal {s}: {e}"))
        .octets()
}

/// An IPv6 packet: fixed header, `exts` in order, then `upper` (whose protocol is `proto`). The
/// upper-layer checksum is filled when `checksum` is set (not for non-first fragments).
fn v6_packet(
    src: [u8; 16],
    dst: [u8; 16],
    flow: u32,
    exts: &[Ext],
    proto: u8,
    upper: &[u8],
    checksum: bool,
) -> Vec<u8> {
    let mut seg = upper.to_vec();
    if checksum {
        l4_checksum_v6(src, dst, proto, &mut seg);
    }
    let mut chain = Vec::new();
    for (i, e) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(proto, |n| n.proto());
        chain.extend_from_slice(&e.bytes(next));
    }
    let first = exts.first().map_or(proto, |e| e.proto());
    let mut p = Vec::with_capacity(40 + chain.len() + seg.len());
    p.extend_from_slice(&(0x6000_0000u32 | (flow & 0x000f_ffff)).to_be_bytes());
    p.extend_from_slice(&be16(
        u16::try_from(chain.len() + seg.len()).expect("IPv6 payload length"),
    ));
    p.push(first);
    p.push(64);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&chain);
    p.extend_from_slice(&seg);
    p
}

fn arp_body(oper: u16, sha: Mac, spa: Ip4, tha: Mac, tpa: Ip4) -> Vec<u8> {
    let mut b = Vec::with_capacity(28);
    b.extend_from_slice(&be16(1)); // Ethernet
    b.extend_from_slice(&be16(ETH_IPV4));
    b.extend_from_slice(&[6, 4]);
    b.extend_from_slice(&be16(oper));
    b.extend_from_slice(&sha);
    b.extend_from_slice(&spa);
    b.extend_from_slice(&tha);
    b.extend_from_slice(&tpa);
    b
}

/// Payload bytes that look like "ports" `a`, `b` to a filter that reads them where an L4 header
/// would be (non-first fragments, trailing garbage).
fn port_lookalike(a: u16, b: u16, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(len.max(4));
    p.extend_from_slice(&be16(a));
    p.extend_from_slice(&be16(b));
    p.extend((0..len.saturating_sub(4)).map(|i| (i * 7 + 3) as u8));
    p
}

/// Deterministic filler: `len` bytes whose content depends on `seed`.
fn filler(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + seed * 17) % 251) as u8)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The corpus, section by section.

#[derive(Default)]
struct Corpus {
    frames: Vec<Vec<u8>>,
    /// IPv4 ID and IPv6 flow label source: keeps frames unique.
    next_id: u16,
    /// Rotates through [`MAC_PAIRS`].
    next_mac: usize,
}

/// An upper-layer segment for [`Corpus::v4`] / [`Corpus::v6`].
enum L4 {
    Tcp(u16, u16, u8),
    Udp(u16, u16),
    Sctp(u16, u16),
    Icmp(u8, u8),
    Icmp6(u8, u8),
    Raw(u8),
}

impl L4 {
    fn proto(&self) -> u8 {
        match self {
            L4::Tcp(..) => TCP,
            L4::Udp(..) => UDP,
            L4::Sctp(..) => SCTP,
            L4::Icmp(..) => ICMP,
            L4::Icmp6(..) => ICMP6,
            L4::Raw(p) => *p,
        }
    }

    fn bytes(&self, payload: &[u8], id: u16) -> Vec<u8> {
        match *self {
            L4::Tcp(s, d, flags) => tcp(s, d, flags, payload),
            L4::Udp(s, d) => udp(s, d, payload),
            L4::Sctp(s, d) => sctp(s, d, 0xc0ff_0000 | u32::from(id)),
            L4::Icmp(t, c) => {
                let mut rest = be16(id).to_vec();
                rest.extend_from_slice(&be16(1));
                rest.extend_from_slice(payload);
                icmp(t, c, &rest)
            }
            L4::Icmp6(t, c) => {
                let mut rest = be16(id).to_vec();
                rest.extend_from_slice(&be16(1));
                rest.extend_from_slice(payload);
                icmp6(t, c, &rest)
            }
            L4::Raw(_) => payload.to_vec(),
        }
    }
}

impl Corpus {
    fn id(&mut self) -> u16 {
        self.next_id = self.next_id.wrapping_add(1);
        0x1000 + self.next_id
    }

    fn macs(&mut self) -> (Mac, Mac) {
        let m = MAC_PAIRS[self.next_mac % MAC_PAIRS.len()];
        self.next_mac += 1;
        m
    }

    fn push(&mut self, f: Vec<u8>) {
        assert!(
            (14..=1514).contains(&f.len()),
            "frame {} is {} bytes",
            self.frames.len(),
            f.len()
        );
        self.frames.push(f);
    }

    /// An IPv4 packet with a checksummed L4 segment, in an Ethernet frame padded to 60 bytes.
    fn v4(&mut self, src: Ip4, dst: Ip4, l4: L4, payload: &[u8]) -> Vec<u8> {
        let mut ip = V4::new(src, dst, l4.proto());
        ip.id = self.id();
        ip.df = matches!(l4, L4::Tcp(..));
        self.v4_with(ip, l4, payload)
    }

    #[expect(
        clippy::unused_self,
        reason = "one of the builder's steps, beside those that number packets"
    )]
    fn v4_with(&mut self, ip: V4, l4: L4, payload: &[u8]) -> Vec<u8> {
        let mut seg = l4.bytes(payload, ip.id);
        l4_checksum_v4(ip.src, ip.dst, ip.proto, &mut seg);
        ip.packet(&seg)
    }

    fn v6(&mut self, src: &str, dst: &str, exts: &[Ext], l4: L4, payload: &[u8]) -> Vec<u8> {
        let id = self.id();
        let seg = l4.bytes(payload, id);
        v6_packet(
            v6(src),
            v6(dst),
            u32::from(id),
            exts,
            l4.proto(),
            &seg,
            true,
        )
    }

    fn eth(&mut self, ethertype: u16, packet: &[u8]) {
        let (d, s) = self.macs();
        self.push(pad60(ether(d, s, &[], ethertype, packet)));
    }

    /// TCP and UDP over IPv4, every port in [`PORTS`] as destination (client to server) and as
    /// source (the reply), a few with equal ports on both sides, addresses rotating.
    fn ipv4_grid(&mut self) {
        let n = HOSTS_V4.len();
        for (k, &port) in PORTS.iter().enumerate() {
            let a = HOSTS_V4[k % n];
            let b = HOSTS_V4[(k * 5 + 3) % n];
            let eph = 40000 + k as u16;
            let p = self.v4(a, b, L4::Tcp(eph, port, SYN), &[]);
            self.eth(ETH_IPV4, &p);
            let p = self.v4(b, a, L4::Tcp(port, eph, SYN | ACK), &[]);
            self.eth(ETH_IPV4, &p);
            let a = HOSTS_V4[(k + 4) % n];
            let b = HOSTS_V4[(k * 3 + 1) % n];
            let eph = 50000 + k as u16;
            let p = self.v4(a, b, L4::Udp(eph, port), &filler(k, 12 + k));
            self.eth(ETH_IPV4, &p);
            let p = self.v4(b, a, L4::Udp(port, eph), &filler(k, 30 + 2 * k));
            self.eth(ETH_IPV4, &p);
        }
        for (s, d) in [(53, 53), (80, 80), (123, 123), (65535, 0)] {
            let p = self.v4(
                [192, 0, 2, 1],
                [198, 51, 100, 7],
                L4::Udp(s, d),
                b"same-ports",
            );
            self.eth(ETH_IPV4, &p);
            let p = self.v4(
                [192, 0, 2, 1],
                [192, 0, 2, 2],
                L4::Tcp(s, d, PSH | ACK),
                b"same-ports",
            );
            self.eth(ETH_IPV4, &p);
        }
        // A conversation with data, 192.0.2.1 <-> 192.0.2.2 on port 80 and 443.
        for (i, (flags, len)) in [
            (SYN, 0),
            (SYN | ACK, 0),
            (ACK, 0),
            (PSH | ACK, 120),
            (ACK, 0),
            (PSH | ACK, 333),
            (FIN | ACK, 0),
            (RST, 0),
        ]
        .into_iter()
        .enumerate()
        {
            let (s, d, sp, dp) = if i % 2 == 0 {
                ([192, 0, 2, 1], [192, 0, 2, 2], 41000, 80)
            } else {
                ([192, 0, 2, 2], [192, 0, 2, 1], 80, 41000)
            };
            let p = self.v4(s, d, L4::Tcp(sp, dp, flags), &filler(i, len));
            self.eth(ETH_IPV4, &p);
            let (sp, dp) = if i % 2 == 0 {
                (41001, 443)
            } else {
                (443, 41001)
            };
            let p = self.v4(s, d, L4::Tcp(sp, dp, flags), &filler(i + 9, len));
            self.eth(ETH_IPV4, &p);
        }
        // SCTP.
        for (i, (s, d)) in [
            (36412, 36412),
            (2905, 2905),
            (40000, 80),
            (5060, 2905),
            (2905, 9899),
        ]
        .into_iter()
        .enumerate()
        {
            let p = self.v4(HOSTS_V4[i], HOSTS_V4[(i + 5) % n], L4::Sctp(s, d), &[]);
            self.eth(ETH_IPV4, &p);
        }
    }

    /// ICMP and other IP protocols.
    fn ipv4_misc(&mut self) {
        let pairs: [(Ip4, Ip4); 4] = [
            ([192, 0, 2, 1], [192, 0, 2, 2]),
            ([192, 0, 2, 2], [192, 0, 2, 1]),
            ([198, 51, 100, 7], [203, 0, 113, 5]),
            ([10, 1, 2, 3], [192, 0, 2, 77]),
        ];
        for (i, &(s, d)) in pairs.iter().enumerate() {
            let p = self.v4(s, d, L4::Icmp(8, 0), &filler(i, 56));
            self.eth(ETH_IPV4, &p);
            let p = self.v4(d, s, L4::Icmp(0, 0), &filler(i, 56));
            self.eth(ETH_IPV4, &p);
        }
        // Port unreachable quoting a UDP/53 datagram: the quoted ports must not match `port 53`.
        let quoted = {
            let mut ip = V4::new([192, 0, 2, 2], [203, 0, 113, 5], UDP);
            ip.id = 0x7777;
            let mut u = udp(53, 53, b"");
            l4_checksum_v4(ip.src, ip.dst, UDP, &mut u);
            ip.packet(&u)
        };
        let mut rest = vec![0, 0, 0, 0];
        rest.extend_from_slice(&quoted);
        let mut ip = V4::new([203, 0, 113, 5], [192, 0, 2, 2], ICMP);
        ip.id = self.id();
        let p = ip.packet(&icmp(3, 3, &rest));
        self.eth(ETH_IPV4, &p);
        let mut ip = V4::new([10, 200, 0, 1], [192, 0, 2, 1], ICMP);
        ip.id = self.id();
        let p = ip.packet(&icmp(11, 0, &rest));
        self.eth(ETH_IPV4, &p);
        // Other protocols.
        for (i, proto) in [GRE, GRE, ESP, IGMP, OSPF, 253, 0].into_iter().enumerate() {
            let dst = if proto == IGMP || proto == OSPF {
                [224, 0, 0, 5]
            } else {
                HOSTS_V4[(i * 2 + 1) % HOSTS_V4.len()]
            };
            let p = self.v4(
                HOSTS_V4[i],
                dst,
                L4::Raw(proto),
                &port_lookalike(80, 53, 24),
            );
            let (d, s) = if proto == IGMP || proto == OSPF {
                (MAC_V4_MCAST, MAC_C)
            } else {
                self.macs()
            };
            self.push(pad60(ether(d, s, &[], ETH_IPV4, &p)));
        }
        // Multicast DNS: UDP 5353 to 224.0.0.251.
        let p = self.v4(
            [192, 0, 2, 77],
            [224, 0, 0, 251],
            L4::Udp(5353, 5353),
            b"\0\0\0\0\0\x01\0\0\0\0\0\0",
        );
        self.push(pad60(ether(MAC_V4_MCAST, MAC_C, &[], ETH_IPV4, &p)));
        // Limited broadcast (DHCP discover).
        let p = self.v4(
            [0, 0, 0, 0],
            [255, 255, 255, 255],
            L4::Udp(68, 67),
            &filler(3, 240),
        );
        self.push(ether(MAC_BCAST, MAC_A, &[], ETH_IPV4, &p));
    }

    /// IPv4 with options: the L4 header starts after IHL × 4 bytes.
    fn ipv4_options(&mut self) {
        let router_alert = vec![0x94, 0x04, 0x00, 0x00];
        let nops = vec![0x01; 8];
        let max = {
            let mut o = vec![0x07, 39, 4]; // record route, 9 slots
            o.resize(39, 0);
            o.push(0); // EOL
            o
        };
        let cases: [(Vec<u8>, L4, Ip4, Ip4); 8] = [
            (
                router_alert.clone(),
                L4::Tcp(40100, 80, SYN),
                [192, 0, 2, 1],
                [192, 0, 2, 2],
            ),
            (
                router_alert.clone(),
                L4::Udp(40101, 53),
                [192, 0, 2, 77],
                [198, 51, 100, 7],
            ),
            (
                nops.clone(),
                L4::Tcp(443, 40102, SYN | ACK),
                [203, 0, 113, 5],
                [192, 0, 2, 1],
            ),
            (nops, L4::Udp(123, 123), [10, 1, 2, 3], [172, 16, 5, 4]),
            (
                max.clone(),
                L4::Tcp(40103, 8080, SYN),
                [198, 51, 100, 200],
                [203, 0, 113, 254],
            ),
            (
                max.clone(),
                L4::Udp(53, 40104),
                [192, 0, 2, 2],
                [192, 0, 2, 1],
            ),
            (max, L4::Sctp(2905, 2905), [192, 0, 2, 1], [198, 51, 100, 7]),
            (router_alert, L4::Raw(IGMP), [192, 0, 2, 1], [224, 0, 0, 22]),
        ];
        for (opts, l4, s, d) in cases {
            let mut ip = V4::new(s, d, l4.proto());
            ip.id = self.id();
            ip.options = opts;
            let p = self.v4_with(ip, l4, &port_lookalike(80, 80, 8));
            self.eth(ETH_IPV4, &p);
        }
    }

    /// IPv4 fragments: first fragments carry the ports; later ones start with bytes that look
    /// like matching ports but must not match port filters (offset > 0).
    fn ipv4_fragments(&mut self) {
        // (src, dst, l4 of the first fragment, look-alike ports of the later fragments)
        let cases: [(Ip4, Ip4, L4, (u16, u16)); 4] = [
            ([192, 0, 2, 2], [192, 0, 2, 1], L4::Udp(53, 40200), (53, 53)),
            (
                [192, 0, 2, 1],
                [203, 0, 113, 5],
                L4::Tcp(40201, 80, PSH | ACK),
                (80, 80),
            ),
            (
                [198, 51, 100, 7],
                [192, 0, 2, 77],
                L4::Icmp(8, 0),
                (8080, 443),
            ),
            (
                [10, 1, 2, 3],
                [172, 16, 5, 4],
                L4::Udp(40202, 443),
                (0, 443),
            ),
        ];
        for (s, d, l4, (la, lb)) in cases {
            let id = self.id();
            let proto = l4.proto();
            let first_body = {
                let mut seg = l4.bytes(&filler(usize::from(id), 64), id);
                l4_checksum_v4(s, d, proto, &mut seg);
                seg
            };
            let mut ip = V4::new(s, d, proto);
            ip.id = id;
            ip.mf = true;
            let p = ip.packet(&first_body);
            self.eth(ETH_IPV4, &p);
            // A middle fragment (MF) and the last one (no MF), both offset > 0.
            let body_off = (first_body.len() / 8) as u16;
            ip.frag_off = body_off;
            let p = ip.packet(&port_lookalike(la, lb, 64));
            self.eth(ETH_IPV4, &p);
            ip.mf = false;
            ip.frag_off = body_off + 8;
            let p = ip.packet(&port_lookalike(la, lb, 21));
            self.eth(ETH_IPV4, &p);
        }
        // A lone non-first fragment whose payload reads as TCP 80 -> 80.
        let mut ip = V4::new([192, 0, 2, 1], [192, 0, 2, 2], TCP);
        ip.id = self.id();
        ip.frag_off = 185;
        let p = ip.packet(&port_lookalike(80, 80, 40));
        self.eth(ETH_IPV4, &p);
        // DF set, offset 0: not a fragment.
        let mut ip = V4::new([192, 0, 2, 1], [192, 0, 2, 2], UDP);
        ip.id = self.id();
        ip.df = true;
        let p = self.v4_with(ip, L4::Udp(40203, 53), b"df");
        self.eth(ETH_IPV4, &p);
        // A tiny first fragment that ends after the ports (8 bytes of TCP header).
        let mut ip = V4::new([203, 0, 113, 254], [192, 0, 2, 2], TCP);
        ip.id = self.id();
        ip.mf = true;
        let p = ip.packet(&tcp(40204, 80, SYN, &[])[..8]);
        self.eth(ETH_IPV4, &p);
    }

    /// TCP, UDP, ICMPv6 and SCTP over IPv6, no extension headers.
    fn ipv6_grid(&mut self) {
        let n = HOSTS_V6.len();
        for (k, &port) in PORTS.iter().enumerate() {
            let a = HOSTS_V6[k % n];
            let b = HOSTS_V6[(k * 4 + 1) % n];
            let p = self.v6(a, b, &[], L4::Tcp(42000 + k as u16, port, SYN), &[]);
            self.eth(ETH_IPV6, &p);
            let a = HOSTS_V6[(k + 2) % n];
            let b = HOSTS_V6[(k * 2 + 5) % n];
            let p = self.v6(
                a,
                b,
                &[],
                L4::Udp(port, 52000 + k as u16),
                &filler(k, 20 + k),
            );
            self.eth(ETH_IPV6, &p);
        }
        for (s, d) in [(53, 53), (443, 443)] {
            let p = self.v6(
                "2001:db8::1",
                "2001:db8::2",
                &[],
                L4::Udp(s, d),
                b"v6 same ports",
            );
            self.eth(ETH_IPV6, &p);
        }
        // ICMPv6: echo, echo reply, a neighbour solicitation to the solicited-node group, a
        // router advertisement to all nodes.
        let p = self.v6(
            "2001:db8::1",
            "2001:db8::2",
            &[],
            L4::Icmp6(128, 0),
            &filler(1, 32),
        );
        self.eth(ETH_IPV6, &p);
        let p = self.v6(
            "2001:db8::2",
            "2001:db8::1",
            &[],
            L4::Icmp6(129, 0),
            &filler(1, 32),
        );
        self.eth(ETH_IPV6, &p);
        let ns = v6("2001:db8::2"); // target address
        let p = self.v6("2001:db8::1", "ff02::1:ff00:2", &[], L4::Icmp6(135, 0), &ns);
        self.push(pad60(ether(MAC_V6_SNMC, MAC_A, &[], ETH_IPV6, &p)));
        let p = self.v6("fe80::1", "ff02::1", &[], L4::Icmp6(134, 0), &filler(2, 12));
        self.push(pad60(ether(MAC_V6_MCAST, MAC_R, &[], ETH_IPV6, &p)));
        // SCTP.
        for (s, d) in [
            ("2001:db8::1", "2001:db8:1::10"),
            ("2001:db8:abcd::5", "2001:db8::2"),
        ] {
            let p = self.v6(s, d, &[], L4::Sctp(2905, 36412), &[]);
            self.eth(ETH_IPV6, &p);
        }
        // Other next headers: ESP, GRE, no next header.
        for proto in [ESP, GRE, NONXT] {
            let p = self.v6(
                "2001:db8::77",
                "2001:db8::1",
                &[],
                L4::Raw(proto),
                &port_lookalike(80, 53, 16),
            );
            self.eth(ETH_IPV6, &p);
        }
    }

    /// IPv6 extension headers: alone, in chains, and fragments (first and later).
    fn ipv6_ext_headers(&mut self) {
        let frag = |offset, more, id| Ext::Fragment { offset, more, id };
        let cases: Vec<(Vec<Ext>, L4)> = vec![
            (vec![Ext::HopByHop(1)], L4::Tcp(43000, 80, SYN)),
            (vec![Ext::HopByHop(2)], L4::Udp(43001, 53)),
            (vec![Ext::Routing], L4::Tcp(43002, 443, SYN)),
            (vec![Ext::DestOpts(1)], L4::Udp(53, 43003)),
            (vec![Ext::DestOpts(2)], L4::Tcp(80, 43004, SYN | ACK)),
            (vec![frag(0, true, 0xf001)], L4::Udp(53, 43005)),
            (vec![frag(0, true, 0xf002)], L4::Tcp(43006, 80, PSH | ACK)),
            (vec![frag(0, false, 0xf003)], L4::Udp(43007, 123)),
            (
                vec![
                    Ext::HopByHop(1),
                    Ext::DestOpts(1),
                    Ext::Routing,
                    frag(0, true, 0xf004),
                ],
                L4::Tcp(43008, 80, PSH | ACK),
            ),
            (vec![Ext::HopByHop(1), Ext::Routing], L4::Udp(43009, 53)),
            (
                vec![Ext::DestOpts(1), frag(0, true, 0xf005)],
                L4::Tcp(443, 43010, ACK),
            ),
            (
                vec![Ext::HopByHop(1), Ext::DestOpts(1)],
                L4::Sctp(2905, 2905),
            ),
            (vec![frag(0, true, 0xf006)], L4::Icmp6(128, 0)),
            (vec![Ext::HopByHop(1)], L4::Icmp6(143, 0)),
            (vec![Ext::HopByHop(1)], L4::Raw(NONXT)),
            (vec![frag(0, true, 0xf007)], L4::Sctp(2905, 80)),
        ];
        let n = HOSTS_V6.len();
        for (i, (exts, l4)) in cases.into_iter().enumerate() {
            let (s, d) = (HOSTS_V6[i % 3], HOSTS_V6[(i + 1) % 6]);
            let (s, d) = if s == d { (HOSTS_V6[n - 1], d) } else { (s, d) };
            let p = self.v6(s, d, &exts, l4, &filler(i, 24));
            self.eth(ETH_IPV6, &p);
        }
        // Non-first fragments whose first bytes read as ports 53/80 (`udp port 53` must not
        // match them; `ip6 proto 17` / `udp` look through the fragment header and do).
        let later: [(Vec<Ext>, u8, (u16, u16)); 4] = [
            (vec![frag(8, true, 0xf001)], UDP, (53, 53)),
            (vec![frag(16, false, 0xf002)], TCP, (80, 80)),
            (
                vec![Ext::HopByHop(1), frag(8, false, 0xf004)],
                TCP,
                (80, 443),
            ),
            (
                vec![Ext::DestOpts(1), frag(4, false, 0xf005)],
                UDP,
                (53, 80),
            ),
        ];
        for (i, (exts, proto, (a, b))) in later.into_iter().enumerate() {
            let id = self.id();
            let p = v6_packet(
                v6(HOSTS_V6[i % 3]),
                v6(HOSTS_V6[(i + 1) % 6]),
                u32::from(id),
                &exts,
                proto,
                &port_lookalike(a, b, 32),
                false,
            );
            self.eth(ETH_IPV6, &p);
        }
    }

    /// 802.1Q, 802.1ad and the old 0x9100 tags, single and stacked, over IPv4, IPv6 and ARP.
    fn vlans(&mut self) {
        const Q: u16 = ETH_VLAN;
        const S: u16 = ETH_QINQ;
        let (a1, a2, a77) = ([192, 0, 2, 1], [192, 0, 2, 2], [192, 0, 2, 77]);
        let (b7, b200) = ([198, 51, 100, 7], [198, 51, 100, 200]);
        let (c5, c254) = ([203, 0, 113, 5], [203, 0, 113, 254]);
        // Single 802.1Q tags; TCI 0xa000 is priority 5 with VID 0, 0xf064 is PCP 7, DEI, VID 100.
        self.tagged_v4(&[(Q, 100)], a1, a2, L4::Tcp(44000, 80, SYN));
        self.tagged_v4(&[(Q, 100)], a77, b7, L4::Udp(44001, 53));
        self.tagged_v4(&[(Q, 100)], c5, a1, L4::Icmp(8, 0));
        self.tagged_v4(&[(Q, 200)], a2, a1, L4::Udp(53, 44002));
        self.tagged_v4(
            &[(Q, 200)],
            b200,
            [10, 1, 2, 3],
            L4::Tcp(443, 44003, SYN | ACK),
        );
        self.tagged_v4(&[(Q, 4095)], [172, 16, 5, 4], a1, L4::Tcp(44004, 8080, SYN));
        self.tagged_v4(&[(Q, 4095)], a2, c254, L4::Udp(44005, 1024));
        self.tagged_v4(&[(Q, 0xa000)], a1, a2, L4::Udp(44006, 53));
        self.tagged_v4(&[(Q, 0xf000 | 0x64)], b7, a1, L4::Tcp(44007, 80, ACK));
        let p = self.v6(
            "2001:db8::1",
            "2001:db8::2",
            &[],
            L4::Tcp(44008, 80, SYN),
            &[],
        );
        self.tagged(&[(Q, 1)], ETH_IPV6, &p);
        let p = self.v6(
            "2001:db8:1::10",
            "2001:db8::1",
            &[],
            L4::Udp(44009, 53),
            b"q",
        );
        self.tagged(&[(Q, 100)], ETH_IPV6, &p);
        let hbh = [Ext::HopByHop(1)];
        let p = self.v6(
            "2001:db8::2",
            "2001:db8::77",
            &hbh,
            L4::Tcp(44010, 80, SYN),
            &[],
        );
        self.tagged(&[(Q, 100)], ETH_IPV6, &p);
        self.tagged(&[(Q, 100)], ETH_ARP, &arp_body(1, MAC_A, a1, [0; 6], a2));
        self.tagged(&[(Q, 200)], ETH_ARP, &arp_body(2, MAC_B, a2, MAC_A, a1));
        self.tagged(&[(Q, 300)], 0x88cc, &filler(1, 30));
        // QinQ: an 802.1ad S-tag outside a C-tag.
        self.tagged_v4(&[(S, 100), (Q, 200)], a1, b7, L4::Udp(44011, 53));
        self.tagged_v4(&[(S, 100), (Q, 200)], a2, c5, L4::Tcp(44012, 80, SYN));
        let p = self.v6(
            "2001:db8::1",
            "2001:db8:abcd::5",
            &[],
            L4::Udp(44013, 53),
            b"qinq",
        );
        self.tagged(&[(S, 100), (Q, 200)], ETH_IPV6, &p);
        self.tagged_v4(&[(S, 200), (Q, 100)], b7, a1, L4::Udp(53, 44014));
        self.tagged_v4(&[(S, 100), (Q, 300)], a77, a1, L4::Udp(44015, 53));
        // Two 802.1Q tags, the pre-standard 0x9100 outer tag, and three tags.
        self.tagged_v4(&[(Q, 100), (Q, 200)], a2, a1, L4::Udp(44016, 53));
        self.tagged_v4(
            &[(Q, 100), (Q, 200)],
            [10, 1, 2, 3],
            a1,
            L4::Tcp(44017, 443, SYN),
        );
        self.tagged_v4(&[(Q, 200), (Q, 100)], a1, a2, L4::Udp(44018, 53));
        self.tagged_v4(&[(ETH_QINQ_OLD, 100), (Q, 200)], c5, a2, L4::Udp(44019, 53));
        self.tagged_v4(&[(S, 100), (Q, 200), (Q, 300)], a1, a2, L4::Udp(44020, 53));
    }

    /// A tagged frame (padded to 60 bytes) with the next unicast address pair.
    fn tagged(&mut self, tags: &[Tag], ethertype: u16, payload: &[u8]) {
        let (d, s) = self.macs();
        self.push(pad60(ether(d, s, tags, ethertype, payload)));
    }

    fn tagged_v4(&mut self, tags: &[Tag], src: Ip4, dst: Ip4, l4: L4) {
        let p = self.v4(src, dst, l4, b"in a vlan");
        self.tagged(tags, ETH_IPV4, &p);
    }

    /// ARP and RARP requests and replies.
    fn arp(&mut self) {
        let cases: [(u16, u16, Mac, Mac, Ip4, Mac, Ip4); 8] = [
            (
                ETH_ARP,
                1,
                MAC_BCAST,
                MAC_A,
                [192, 0, 2, 1],
                [0; 6],
                [192, 0, 2, 2],
            ),
            (
                ETH_ARP,
                2,
                MAC_A,
                MAC_B,
                [192, 0, 2, 2],
                MAC_A,
                [192, 0, 2, 1],
            ),
            (
                ETH_ARP,
                1,
                MAC_BCAST,
                MAC_C,
                [198, 51, 100, 7],
                [0; 6],
                [198, 51, 100, 7],
            ), // gratuitous
            (
                ETH_ARP,
                1,
                MAC_BCAST,
                MAC_R,
                [203, 0, 113, 254],
                [0; 6],
                [203, 0, 113, 5],
            ),
            (
                ETH_ARP,
                2,
                MAC_R,
                MAC_C,
                [203, 0, 113, 5],
                MAC_R,
                [203, 0, 113, 254],
            ),
            (
                ETH_ARP,
                1,
                MAC_BCAST,
                MAC_B,
                [10, 1, 2, 3],
                [0; 6],
                [192, 0, 2, 77],
            ),
            (
                ETH_RARP,
                3,
                MAC_BCAST,
                MAC_C,
                [0, 0, 0, 0],
                MAC_C,
                [0, 0, 0, 0],
            ),
            (
                ETH_RARP,
                4,
                MAC_C,
                MAC_R,
                [192, 0, 2, 1],
                MAC_C,
                [192, 0, 2, 77],
            ),
        ];
        for (ethertype, oper, dst, src, spa, tha, tpa) in cases {
            let body = arp_body(oper, src, spa, tha, tpa);
            self.push(pad60(ether(dst, src, &[], ethertype, &body)));
        }
        // An unpadded ARP request (42 bytes, as a sending host's own capture shows it).
        let body = arp_body(1, MAC_B, [192, 0, 2, 2], [0; 6], [192, 0, 2, 1]);
        self.push(ether(MAC_BCAST, MAC_B, &[], ETH_ARP, &body));
    }

    /// LLDP, PPPoE, MPLS, 802.3 with LLC, and others tap only sees as EtherTypes.
    fn other_ethertypes(&mut self) {
        // LLDP: chassis ID, port ID, TTL, end.
        let mut lldp = vec![0x02, 0x07, 0x04];
        lldp.extend_from_slice(&MAC_R);
        lldp.extend_from_slice(&[
            0x04, 0x04, 0x05, b'g', b'e', b'1', 0x06, 0x02, 0x00, 0x78, 0x00, 0x00,
        ]);
        self.push(pad60(ether(MAC_LLDP, MAC_R, &[], 0x88cc, &lldp)));
        lldp[8] = b'2';
        self.push(pad60(ether(MAC_LLDP, MAC_C, &[], 0x88cc, &lldp)));
        // PPPoE discovery (PADI) and a session frame carrying IPv4/UDP 53 (not `ip` to libpcap).
        let padi = [0x11, 0x09, 0x00, 0x00, 0x00, 0x04, 0x01, 0x01, 0x00, 0x00];
        self.push(pad60(ether(MAC_BCAST, MAC_A, &[], 0x8863, &padi)));
        let inner = self.v4([192, 0, 2, 1], [192, 0, 2, 2], L4::Udp(45000, 53), b"pppoe");
        let mut sess = vec![0x11, 0x00, 0x00, 0x2a];
        sess.extend_from_slice(&be16(u16::try_from(inner.len() + 2).expect("pppoe length")));
        sess.extend_from_slice(&[0x00, 0x21]);
        sess.extend_from_slice(&inner);
        self.push(pad60(ether(MAC_R, MAC_A, &[], 0x8864, &sess)));
        // MPLS with IPv4/TCP 80 inside.
        let inner = self.v4(
            [198, 51, 100, 7],
            [203, 0, 113, 5],
            L4::Tcp(45001, 80, SYN),
            &[],
        );
        let mut mpls = vec![0x00, 0x01, 0x01, 0x40];
        mpls.extend_from_slice(&inner);
        self.push(pad60(ether(MAC_R, MAC_C, &[], 0x8847, &mpls)));
        // 802.3 length field with LLC: a spanning tree BPDU.
        let mut bpdu = vec![0x42, 0x42, 0x03, 0x00, 0x00, 0x00, 0x00];
        bpdu.extend_from_slice(&filler(5, 32));
        let len = u16::try_from(bpdu.len()).expect("llc length");
        self.push(pad60(ether(MAC_STP, MAC_R, &[], len, &bpdu)));
        // 802.1X EAPOL-Start, Wake-on-LAN, IPX, a local experimental EtherType.
        self.push(pad60(ether(
            [0x01, 0x80, 0xc2, 0, 0, 3],
            MAC_A,
            &[],
            0x888e,
            &[0x01, 0x01, 0x00, 0x00],
        )));
        let mut wol = vec![0xff; 6];
        for _ in 0..16 {
            wol.extend_from_slice(&MAC_B);
        }
        self.push(ether(MAC_BCAST, MAC_C, &[], 0x0842, &wol));
        self.push(pad60(ether(MAC_BCAST, MAC_B, &[], 0x8137, &filler(6, 30))));
        self.push(pad60(ether(
            MAC_A,
            MAC_B,
            &[],
            0x88b5,
            &port_lookalike(80, 53, 40),
        )));
    }

    /// Odd sizes: unpadded short frames, odd byte counts, full-size 1514-byte frames, and IPv4
    /// total lengths that disagree with the frame.
    fn odd_lengths(&mut self) {
        // Unpadded short frames with odd lengths.
        for (i, len) in [1usize, 3, 7].into_iter().enumerate() {
            let p = self.v4(
                [192, 0, 2, 1],
                [192, 0, 2, 2],
                L4::Udp(46000 + i as u16, 53),
                &filler(i, len),
            );
            let (d, s) = self.macs();
            self.push(ether(d, s, &[], ETH_IPV4, &p));
        }
        let p = self.v6("2001:db8::1", "2001:db8::2", &[], L4::Udp(46003, 53), b"x");
        let (d, s) = self.macs();
        self.push(ether(d, s, &[], ETH_IPV6, &p));
        // Odd lengths above the minimum.
        for (i, len) in [47usize, 945, 1413].into_iter().enumerate() {
            let p = self.v4(
                [198, 51, 100, 200],
                [192, 0, 2, 1],
                L4::Tcp(443, 46010 + i as u16, PSH | ACK),
                &filler(i, len),
            );
            self.eth(ETH_IPV4, &p);
        }
        // Full-size frames: 1514 bytes (1460 bytes of TCP data; 1452 of UDP data over IPv6).
        let p = self.v4(
            [203, 0, 113, 5],
            [192, 0, 2, 2],
            L4::Tcp(443, 46020, ACK),
            &filler(7, 1460),
        );
        self.eth(ETH_IPV4, &p);
        let p = self.v4(
            [192, 0, 2, 2],
            [203, 0, 113, 5],
            L4::Tcp(46021, 80, PSH | ACK),
            &filler(8, 1459),
        );
        self.eth(ETH_IPV4, &p);
        let p = self.v6(
            "2001:db8::2",
            "2001:db8:1::10",
            &[],
            L4::Udp(46022, 53),
            &filler(9, 1452),
        );
        self.eth(ETH_IPV6, &p);
        // IPv4 total length larger than the frame.
        let mut ip = V4::new([192, 0, 2, 1], [192, 0, 2, 2], TCP);
        ip.id = self.id();
        ip.total_len = Some(1000);
        let p = self.v4_with(ip, L4::Tcp(46030, 80, PSH | ACK), &filler(1, 40));
        self.eth(ETH_IPV4, &p);
        // Total length smaller than the frame; the trailer looks like more ports.
        let mut ip = V4::new([192, 0, 2, 2], [192, 0, 2, 1], UDP);
        ip.id = self.id();
        ip.total_len = Some(28);
        let mut p = self.v4_with(ip, L4::Udp(46031, 123), &[]);
        p.extend_from_slice(&port_lookalike(53, 53, 60));
        self.eth(ETH_IPV4, &p);
        // Total length smaller than the header itself.
        let mut ip = V4::new([198, 51, 100, 7], [192, 0, 2, 77], TCP);
        ip.id = self.id();
        ip.total_len = Some(12);
        let p = self.v4_with(ip, L4::Tcp(46032, 443, SYN), &[]);
        self.eth(ETH_IPV4, &p);
        // IPv6 payload length larger than what follows.
        let mut p = self.v6(
            "2001:db8::77",
            "2001:db8::1",
            &[],
            L4::Tcp(46033, 80, SYN),
            &[],
        );
        p[4..6].copy_from_slice(&be16(900));
        self.eth(ETH_IPV6, &p);
    }

    /// Frames that end inside a header: reads past the end make libpcap reject the frame, even
    /// under `not`.
    fn truncated(&mut self) {
        let full_tcp = self.v4([192, 0, 2, 1], [192, 0, 2, 2], L4::Tcp(80, 80, SYN), &[]);
        let full_udp = self.v4([192, 0, 2, 2], [192, 0, 2, 1], L4::Udp(53, 53), b"dns");
        let full_opt = {
            let mut ip = V4::new([192, 0, 2, 1], [198, 51, 100, 7], TCP);
            ip.id = self.id();
            ip.options = vec![0x01; 12];
            self.v4_with(ip, L4::Tcp(80, 443, SYN), &[])
        };
        let full_v6 = self.v6("2001:db8::1", "2001:db8::2", &[], L4::Tcp(80, 80, SYN), &[]);
        let full_v6_udp = self.v6("2001:db8::2", "2001:db8::1", &[], L4::Udp(53, 53), b"dns");
        let full_v6_ext = self.v6(
            "2001:db8::1",
            "2001:db8::2",
            &[Ext::HopByHop(2)],
            L4::Udp(53, 53),
            b"dns",
        );
        let full_arp = arp_body(1, MAC_A, [192, 0, 2, 1], [0; 6], [192, 0, 2, 2]);
        let full_icmp = self.v4(
            [192, 0, 2, 1],
            [192, 0, 2, 2],
            L4::Icmp(8, 0),
            &filler(2, 16),
        );
        let later_frag = {
            let mut ip = V4::new([192, 0, 2, 1], [192, 0, 2, 2], TCP);
            ip.id = self.id();
            ip.frag_off = 100;
            ip.packet(&port_lookalike(80, 80, 16))
        };
        let v6_frag = self.v6(
            "2001:db8::2",
            "2001:db8::1",
            &[Ext::Fragment {
                offset: 0,
                more: true,
                id: 0xf00f,
            }],
            L4::Udp(53, 53),
            b"dns",
        );
        // (what, cut after this many bytes of the L3 packet)
        let cuts: [(u16, &[u8], usize); 21] = [
            (ETH_IPV4, &full_tcp, 0),     // EtherType only
            (ETH_IPV4, &full_tcp, 10),    // middle of the IPv4 header, before the addresses
            (ETH_IPV4, &full_tcp, 15),    // middle of the source address
            (ETH_IPV4, &full_tcp, 18),    // source address complete, destination cut
            (ETH_IPV4, &full_tcp, 20),    // IPv4 header only
            (ETH_IPV4, &full_icmp, 20),   // ICMP: port filters need not read past the header
            (ETH_IPV4, &later_frag, 20),  // non-first fragment: port filters stop at the offset
            (ETH_IPV4, &full_tcp, 21),    // one byte of TCP
            (ETH_IPV4, &full_tcp, 22),    // right after the source port
            (ETH_IPV4, &full_tcp, 23),    // half the destination port
            (ETH_IPV4, &full_tcp, 24),    // ports only
            (ETH_IPV4, &full_udp, 22),    // UDP, right after the source port
            (ETH_IPV4, &full_opt, 30),    // IHL 8, cut inside the options
            (ETH_IPV4, &full_opt, 34),    // IHL 8, right after the source port
            (ETH_IPV6, &full_v6, 20),     // middle of the source address
            (ETH_IPV6, &full_v6, 30),     // source address complete, destination cut
            (ETH_IPV6, &full_v6, 39),     // one byte short of the fixed header
            (ETH_IPV6, &v6_frag, 40),     // next header "fragment", but no fragment header
            (ETH_IPV6, &full_v6, 42),     // right after the source port
            (ETH_IPV6, &full_v6_udp, 41), // one byte of UDP
            (ETH_IPV6, &full_v6_ext, 50), // inside the hop-by-hop header
        ];
        for (ethertype, packet, cut) in cuts {
            let (d, s) = self.macs();
            self.push(ether(d, s, &[], ethertype, &packet[..cut]));
        }
        // ARP cut in the target protocol address.
        self.push(ether(MAC_BCAST, MAC_A, &[], ETH_ARP, &full_arp[..26]));
        // A VLAN tag with nothing after it, and one whose inner EtherType is the last thing.
        let mut f = ether(MAC_B, MAC_A, &[], ETH_VLAN, &[]);
        f.extend_from_slice(&be16(100));
        self.push(f);
        self.push(ether(MAC_B, MAC_C, &[(ETH_VLAN, 100)], ETH_IPV4, &[]));
        // QinQ cut after the outer tag.
        let mut f = ether(MAC_A, MAC_B, &[], ETH_QINQ, &[]);
        f.extend_from_slice(&be16(100));
        self.push(f);
        // A VLAN-tagged IPv4 frame cut right after the UDP source port.
        let inner = self.v4([192, 0, 2, 1], [192, 0, 2, 2], L4::Udp(53, 53), b"");
        self.push(ether(
            MAC_B,
            MAC_A,
            &[(ETH_VLAN, 100)],
            ETH_IPV4,
            &inner[..22],
        ));
        // The bare Ethernet header of an IPv6 frame.
        self.push(ether(MAC_A, MAC_C, &[], ETH_IPV6, &[]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_unique() {
        let a = frames();
        let b = frames();
        assert_eq!(a, b, "two runs built different corpora");
        assert_eq!(pcap_bytes(&a).0, pcap_bytes(&b).0);
        let mut seen = std::collections::HashMap::new();
        for (i, f) in a.iter().enumerate() {
            if let Some(j) = seen.insert(f.clone(), i) {
                panic!("frames {j} and {i} are identical");
            }
        }
        assert!(
            (200..=400).contains(&a.len()),
            "corpus has {} frames",
            a.len()
        );
    }

    #[test]
    fn sizes_in_range() {
        let f = frames();
        assert!(f.iter().all(|f| (14..=1514).contains(&f.len())));
        assert!(f.iter().any(|f| f.len() == 1514));
        assert!(f.iter().any(|f| f.len() == 60));
        assert!(f.iter().any(|f| f.len() % 2 == 1 && f.len() > 60));
    }

    #[test]
    fn ipv4_header_checksums_verify() {
        for (i, f) in frames().iter().enumerate() {
            if f.len() >= 34 && f[12..14] == be16(ETH_IPV4) {
                let ihl = usize::from(f[14] & 0x0f) * 4;
                if f.len() >= 14 + ihl {
                    assert_eq!(
                        inet_checksum(&f[14..14 + ihl]),
                        0,
                        "frame {i}: bad IPv4 header checksum"
                    );
                }
            }
        }
    }

    #[test]
    fn checksum_known_value() {
        // RFC 1071's example words sum to 0xddf2, so the checksum is its complement.
        assert_eq!(
            inet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        // CRC-32C check value.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn tcpdump_reads_the_file() {
        let dir = std::env::temp_dir().join(format!("tap-corpus-{}", crate::unique_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("corpus.pcap");
        let n = write_corpus(&path);
        let out = std::process::Command::new("tcpdump")
            .args(["-nn", "-#", "-t", "-e", "-r"])
            .arg(&path)
            .output()
            .expect("running tcpdump (is it installed?)");
        let _ = std::fs::remove_dir_all(&dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "tcpdump -r failed: {stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let numbered = stdout
            .lines()
            .filter(|l| {
                l.trim_start()
                    .split_once(' ')
                    .is_some_and(|(n, _)| n.parse::<usize>().is_ok())
            })
            .count();
        assert_eq!(
            numbered, n,
            "tcpdump printed {numbered} packets of {n}:\n{stdout}"
        );
    }
}
