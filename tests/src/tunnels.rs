//! Tunnelled frames built by hand, byte by byte, for the decapsulation tests: what a switch's
//! mirroring session (GRE, ERSPAN type II and III) or a cloud's (VXLAN, GENEVE) sends to a
//! monitor port. Each [`Case`] is an outer frame, the inner frame tap must record from it, and
//! the comment its pcapng packet must carry; a few cases are not tunnels tap strips, and are
//! recorded whole, without a comment.
//!
//! Formats: GRE (RFC 2784/2890: C, K and S bits), ERSPAN type II and III (the Cisco headers
//! Linux's erspan driver and Wireshark follow: version, VLAN, CoS, session id, index; type III
//! with its timestamp word, the hardware-id word and the optional 8-byte platform subheader when
//! the O bit is set), GENEVE (RFC 8926, with options), VXLAN (RFC 7348).

use std::path::Path;

use crate::{
    corpus::{MAC_A, MAC_B, Mac, inet_checksum},
    frames,
    pcap::{Pcap, Record},
};

/// Destination of the outer frames: not the monitor interface's own address, as on a SPAN port,
/// so the host's stack ignores them (PACKET_OTHERHOST) whatever tap does.
pub const COLLECTOR_MAC: Mac = [0x02, 0x00, 0x5e, 0x20, 0x00, 0x01];
/// Source of the outer frames: the switch or hypervisor doing the mirroring.
pub const MIRROR_MAC: Mac = [0x02, 0x00, 0x5e, 0x20, 0x00, 0x02];

const OUTER_V4: ([u8; 4], [u8; 4]) = ([198, 51, 100, 10], [198, 51, 100, 20]);
const OUTER_V6: ([u8; 16], [u8; 16]) = (
    [
        0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ],
    [
        0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20,
    ],
);

/// VXLAN's UDP port (IANA).
pub const VXLAN_PORT: u16 = 4789;
/// GENEVE's UDP port (IANA).
pub const GENEVE_PORT: u16 = 6081;

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: u16 = 0x8100;
const ETH_TEB: u16 = 0x6558;
const ETH_ERSPAN2: u16 = 0x88be;
const ETH_ERSPAN3: u16 = 0x22eb;
const GRE: u8 = 47;
const UDP: u8 = 17;
const ICMP: u8 = 1;

/// One frame for the monitor port and what tap must make of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub name: &'static str,
    /// The frame on the wire.
    pub outer: Vec<u8>,
    /// The frame tap records: the inner frame of a tunnel it strips, else `outer` itself.
    pub inner: Vec<u8>,
    /// The packet's pcapng comment, `None` when not decapsulated.
    pub comment: Option<String>,
}

/// Ethernet frame, optionally with one 802.1Q tag.
fn ether(dst: Mac, src: Mac, vlan: Option<u16>, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let tags: Vec<frames::Tag> = vlan.map(|id| (ETH_VLAN, id)).into_iter().collect();
    frames::ether(dst, src, &tags, ethertype, payload)
}

/// IPv4 packet (no options, DF, TTL 64) with a valid header checksum.
fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, id: u16, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x40, 0, 64, proto, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let c = inet_checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// IPv6 packet (hop limit 64).
fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, 64]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

/// UDP datagram with its checksum over the IPv4 or IPv6 pseudo-header of `src`/`dst`.
fn udp(src: &[u8], dst: &[u8], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut d = frames::udp(sport, dport, payload);
    frames::l4_checksum(src, dst, UDP, &mut d, 6);
    d
}

/// An inner frame: a UDP datagram between two hosts of the mirrored network, unique by `n`.
fn inner_udp(n: u16) -> Vec<u8> {
    let (src, dst) = ([203, 0, 113, 1], [203, 0, 113, 2]);
    let payload = format!("inner frame {n:03} from the mirrored network");
    let l4 = udp(&src, &dst, 40_000 + n, 53, payload.as_bytes());
    ether(MAC_B, MAC_A, None, ETH_IPV4, &ipv4(src, dst, UDP, n, &l4))
}

/// An inner ICMP echo request, with an 802.1Q tag (the mirrored port's VLAN kept).
fn inner_tagged_ping(n: u16) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0];
    icmp.extend_from_slice(&n.to_be_bytes());
    icmp.extend_from_slice(&1u16.to_be_bytes());
    icmp.extend_from_slice(b"tagged inner echo request");
    let c = inet_checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let ip = ipv4([203, 0, 113, 1], [203, 0, 113, 2], ICMP, n, &icmp);
    ether(MAC_B, MAC_A, Some(100), ETH_IPV4, &ip)
}

/// The outer frame around an IP payload of protocol `proto`: IPv4, or IPv6 with a VLAN tag.
fn outer(v6: bool, proto: u8, id: u16, payload: &[u8]) -> Vec<u8> {
    if v6 {
        let ip = ipv6(OUTER_V6.0, OUTER_V6.1, proto, payload);
        ether(COLLECTOR_MAC, MIRROR_MAC, Some(42), ETH_IPV6, &ip)
    } else {
        let ip = ipv4(OUTER_V4.0, OUTER_V4.1, proto, id, payload);
        ether(COLLECTOR_MAC, MIRROR_MAC, None, ETH_IPV4, &ip)
    }
}

/// The outer frame around a UDP payload to `dport`.
fn outer_udp(v6: bool, id: u16, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let l4 = if v6 {
        udp(&OUTER_V6.0, &OUTER_V6.1, sport, dport, payload)
    } else {
        udp(&OUTER_V4.0, &OUTER_V4.1, sport, dport, payload)
    };
    outer(v6, UDP, id, &l4)
}

/// A GRE header: the checksum (C), key (K) and sequence (S) fields when given.
fn gre(checksum: bool, key: Option<u32>, seq: Option<u32>, proto: u16) -> Vec<u8> {
    let mut flags = 0u16;
    if checksum {
        flags |= 0x8000;
    }
    if key.is_some() {
        flags |= 0x2000;
    }
    if seq.is_some() {
        flags |= 0x1000;
    }
    let mut h = Vec::new();
    h.extend_from_slice(&flags.to_be_bytes());
    h.extend_from_slice(&proto.to_be_bytes());
    if checksum {
        // Checksum and reserved; the tests' readers do not verify it.
        h.extend_from_slice(&[0, 0, 0, 0]);
    }
    if let Some(k) = key {
        h.extend_from_slice(&k.to_be_bytes());
    }
    if let Some(s) = seq {
        h.extend_from_slice(&s.to_be_bytes());
    }
    h
}

/// ERSPAN type II header: version 1, VLAN, CoS 0, encapsulation 0, T 0, session (10 bits),
/// reserved, index (20 bits).
fn erspan2(vlan: u16, session: u16, index: u32) -> [u8; 8] {
    let w0 = (1u16 << 12) | (vlan & 0x0fff);
    let w1 = session & 0x03ff;
    let w2 = index & 0x000f_ffff;
    let mut h = [0u8; 8];
    h[0..2].copy_from_slice(&w0.to_be_bytes());
    h[2..4].copy_from_slice(&w1.to_be_bytes());
    h[4..8].copy_from_slice(&w2.to_be_bytes());
    h
}

/// ERSPAN type III header: version 2, VLAN, session, a timestamp, SGT 0, hardware id, and the O
/// bit with the 8-byte platform subheader (platform id 3: a timestamp's upper word) when
/// `platform` is set.
fn erspan3(vlan: u16, session: u16, timestamp: u32, platform: bool) -> Vec<u8> {
    let w0 = (2u16 << 12) | (vlan & 0x0fff);
    let w1 = session & 0x03ff;
    let mut h = Vec::with_capacity(20);
    h.extend_from_slice(&w0.to_be_bytes());
    h.extend_from_slice(&w1.to_be_bytes());
    h.extend_from_slice(&timestamp.to_be_bytes());
    // SGT (16), P (1), FT (5), hardware id (6), D (1), Gra (2), O (1).
    let hw_id: u16 = 5;
    let last = (hw_id << 4) | u16::from(platform);
    h.extend_from_slice(&0u16.to_be_bytes());
    h.extend_from_slice(&last.to_be_bytes());
    if platform {
        // Platform id 3 (6 bits), port id / upper timestamp.
        h.extend_from_slice(&[3 << 2, 0, 0, 0, 0, 0, 0, 1]);
    }
    h
}

/// GENEVE header for Ethernet payloads, with `options` (a multiple of 4 bytes).
fn geneve(vni: u32, options: &[u8]) -> Vec<u8> {
    assert!(options.len().is_multiple_of(4) && options.len() <= 252);
    let mut h = vec![(options.len() / 4) as u8, 0];
    h.extend_from_slice(&ETH_TEB.to_be_bytes());
    h.extend_from_slice(&vni.to_be_bytes()[1..]);
    h.push(0);
    h.extend_from_slice(options);
    h
}

/// VXLAN header with the I flag.
fn vxlan(vni: u32) -> Vec<u8> {
    let mut h = vec![0x08, 0, 0, 0];
    h.extend_from_slice(&vni.to_be_bytes()[1..]);
    h.push(0);
    h
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Every case, in replay order; inner frames are unique, so a recorded frame names its case.
pub fn cases() -> Vec<Case> {
    let tunnelled = |name, outer: Vec<u8>, inner: Vec<u8>, comment: &str| Case {
        name,
        outer,
        inner,
        comment: Some(comment.to_string()),
    };
    let plain = |name, frame: Vec<u8>| Case {
        name,
        outer: frame.clone(),
        inner: frame,
        comment: None,
    };
    let mut v = Vec::new();

    let i = inner_udp(1);
    let g = gre(false, Some(0x0001_2345), None, ETH_TEB);
    v.push(tunnelled(
        "gretap with a key",
        outer(false, GRE, 1, &cat(&[&g, &i])),
        i,
        "gre key=74565",
    ));

    let i = inner_udp(2);
    let g = gre(true, None, Some(7), ETH_TEB);
    v.push(tunnelled(
        "gretap with checksum and sequence, no key",
        outer(false, GRE, 2, &cat(&[&g, &i])),
        i,
        "gre key=0",
    ));

    let i = inner_udp(3);
    let g = gre(false, None, Some(1), ETH_ERSPAN2);
    let e = erspan2(10, 5, 0x12345);
    v.push(tunnelled(
        "ERSPAN type II",
        outer(false, GRE, 3, &cat(&[&g, &e, &i])),
        i,
        "erspan-ii session=5",
    ));

    let i = inner_tagged_ping(4);
    let g = gre(false, None, Some(2), ETH_ERSPAN2);
    let e = erspan2(0, 1023, 1);
    v.push(tunnelled(
        "ERSPAN type II over IPv6 and a VLAN, tagged inner frame",
        outer(true, GRE, 0, &cat(&[&g, &e, &i])),
        i,
        "erspan-ii session=1023",
    ));

    let i = inner_udp(5);
    let g = gre(false, None, Some(3), ETH_ERSPAN3);
    let e = erspan3(20, 700, 0xdead_beef, false);
    v.push(tunnelled(
        "ERSPAN type III",
        outer(false, GRE, 5, &cat(&[&g, &e, &i])),
        i,
        "erspan-iii session=700",
    ));

    let i = inner_udp(6);
    let g = gre(false, None, Some(4), ETH_ERSPAN3);
    let e = erspan3(20, 9, 1, true);
    v.push(tunnelled(
        "ERSPAN type III with the platform subheader",
        outer(false, GRE, 6, &cat(&[&g, &e, &i])),
        i,
        "erspan-iii session=9",
    ));

    let i = inner_udp(7);
    // One option: class 0x0101, type 1, 4 bytes of data (length in 4-byte words: 1).
    let opts = [0x01, 0x01, 0x01, 0x01, 0xca, 0xfe, 0xf0, 0x0d];
    let h = geneve(0x00ab_cdef, &opts);
    v.push(tunnelled(
        "GENEVE with an option",
        outer_udp(false, 7, 50_000, GENEVE_PORT, &cat(&[&h, &i])),
        i,
        "geneve vni=11259375",
    ));

    let i = inner_udp(8);
    let h = geneve(7, &[]);
    v.push(tunnelled(
        "GENEVE over IPv6 and a VLAN",
        outer_udp(true, 0, 50_001, GENEVE_PORT, &cat(&[&h, &i])),
        i,
        "geneve vni=7",
    ));

    let i = inner_tagged_ping(9);
    let h = vxlan(42);
    v.push(tunnelled(
        "VXLAN, tagged inner frame",
        outer_udp(false, 9, 50_002, VXLAN_PORT, &cat(&[&h, &i])),
        i,
        "vxlan vni=42",
    ));

    // Not stripped: recorded as they are.
    v.push(plain("a frame outside any tunnel", inner_udp(10)));
    let inner_ip = ipv4(
        [203, 0, 113, 1],
        [203, 0, 113, 2],
        UDP,
        11,
        &udp(&[203, 0, 113, 1], &[203, 0, 113, 2], 1, 2, b"x"),
    );
    let g = gre(false, Some(9), None, ETH_IPV4);
    v.push(plain(
        "GRE carrying IP, not Ethernet",
        outer(false, GRE, 11, &cat(&[&g, &inner_ip])),
    ));
    let h = vxlan(44);
    v.push(plain(
        "VXLAN on a port not configured",
        outer_udp(false, 12, 50_003, 4790, &cat(&[&h, &inner_udp(12)])),
    ));
    v
}

/// Writes the outer frames of `cases` to a pcap file, 1 ms apart.
pub fn write_pcap(path: &Path, cases: &[Case]) {
    let records = cases
        .iter()
        .enumerate()
        .map(|(k, c)| Record {
            ts_sec: 1_700_000_000,
            ts_frac: (k as u32) * 1_000_000,
            orig_len: c.outer.len() as u32,
            data: c.outer.clone(),
        })
        .collect();
    Pcap {
        nanos: true,
        snaplen: 65_535,
        linktype: 1,
        records,
    }
    .write(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_frames_are_unique_and_inside_their_outer_frame() {
        let cases = cases();
        for (k, c) in cases.iter().enumerate() {
            assert!(
                c.outer.ends_with(&c.inner),
                "{}: the inner frame ends the outer one",
                c.name
            );
            for d in &cases[k + 1..] {
                assert_ne!(
                    c.inner, d.inner,
                    "{} and {} share an inner frame",
                    c.name, d.name
                );
            }
        }
    }

    #[test]
    fn ipv4_headers_verify() {
        for c in cases() {
            if c.outer[12..14] == ETH_IPV4.to_be_bytes() {
                assert_eq!(inet_checksum(&c.outer[14..34]), 0, "{}", c.name);
            }
        }
    }
}
