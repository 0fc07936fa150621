//! Flow keys from Ethernet frames: what the store's index groups packets by.
//!
//! A key is direction-free: the endpoints are ordered as the Community ID orders them (the
//! smaller address and port first), so both directions of a conversation share one key, and
//! [`Parsed::forward`] says which way a packet went. Keyed are:
//! - TCP, UDP, SCTP over IPv4 and IPv6: addresses, protocol and ports;
//! - ICMP and `ICMPv6`: addresses and the type mapped to ports as the Community ID does (an echo
//!   request and its reply are one flow; a one-way message keeps the packet's order);
//! - other IP protocols: the address pair and the protocol;
//! - frames that are not IP: the MAC address pair and the `EtherType`;
//! - all of them with up to two VLAN ids (802.1Q, 802.1ad, `QinQ`) and, for packets tap
//!   decapsulated (`--decap`), the tunnel and its id.
//!
//! Fragments. A non-first IPv4 fragment (offset > 0) and an IPv6 fragment with offset > 0 carry
//! no transport header: they are keyed by the address pair and the protocol with
//! [`flags::FRAGMENT`] set, a flow of their own, whatever flow their first fragment belongs to
//! (no reassembly). A first fragment has its ports and joins its flow.
//!
//! Flags record what makes a key less than a plain 5-tuple ([`flags`]): the query planner
//! answers "unknown" for such keys wherever the filter's result could depend on it, so no packet
//! is ever missed because of how it was keyed.

use tap_common::event::TUNNEL_NONE;

use super::community::{self, ICMP, ICMP6, SCTP, TCP, UDP};

/// Bits of [`FlowKey::flags`].
pub mod flags {
    /// A non-first fragment: no transport header, no ports.
    pub const FRAGMENT: u8 = 1;
    /// IPv6 extension headers before the transport header (the filter language reads the
    /// protocol right after the fixed header: its answer may differ from the key's protocol).
    pub const EXT_HEADERS: u8 = 2;
    /// The packet ended (snap length, damage) before the fields the key needs.
    pub const TRUNCATED: u8 = 4;
    /// More than two VLAN tags: keyed by the first two, the `EtherType` is the third tag's.
    pub const DEEP_VLAN: u8 = 8;
}

/// Address family of a key.
pub const FAMILY_L2: u8 = 0;
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// A flow, direction-free. Addresses are network byte order: IPv4 in the first 4 bytes, a MAC
/// in the first 6 (non-IP frames), the rest zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FlowKey {
    /// [`FAMILY_V4`], [`FAMILY_V6`] or [`FAMILY_L2`].
    pub family: u8,
    /// IP protocol (0 for non-IP frames).
    pub proto: u8,
    /// [`flags`].
    pub flags: u8,
    /// VLAN tags in front of the `EtherType` (0, 1 or 2).
    pub vlans: u8,
    /// VLAN ids, outer first (0 where absent).
    pub vlan: [u16; 2],
    /// The `EtherType` after the VLAN tags.
    pub ethertype: u16,
    /// `tap_common::event::TUNNEL_*` of a decapsulated packet, [`TUNNEL_NONE`] otherwise.
    pub tunnel: u8,
    /// VNI, GRE key or ERSPAN session (0 when not decapsulated).
    pub tunnel_id: u32,
    /// The lower endpoint (see the module notes).
    pub a: [u8; 16],
    pub b: [u8; 16],
    /// Ports of `a` and `b` (host order); for ICMP the Community ID's type mapping; 0 without.
    pub port_a: u16,
    pub port_b: u16,
    /// ICMP one-way message: `a` is the sender, not the lower address.
    pub one_way: bool,
}

/// A packet's key and which way it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub key: FlowKey,
    /// The packet went from `a` to `b`.
    pub forward: bool,
}

impl FlowKey {
    /// Address bytes of this family: 4, 16 or 6 (MAC).
    #[must_use]
    pub fn addr_len(&self) -> usize {
        match self.family {
            FAMILY_V4 => 4,
            FAMILY_V6 => 16,
            _ => 6,
        }
    }

    /// Whether the key has transport ports (TCP, UDP, SCTP with its header seen).
    #[must_use]
    pub fn has_ports(&self) -> bool {
        self.family != FAMILY_L2
            && matches!(self.proto, TCP | UDP | SCTP)
            && self.flags & (flags::FRAGMENT | flags::TRUNCATED) == 0
    }

    /// Whether the key carries an ICMP type mapping.
    #[must_use]
    pub fn has_icmp(&self) -> bool {
        matches!(
            (self.family, self.proto),
            (FAMILY_V4, ICMP) | (FAMILY_V6, ICMP6)
        ) && self.flags & (flags::FRAGMENT | flags::TRUNCATED) == 0
    }

    /// The Community ID v1 (seed 0); `None` for frames that are not IP.
    #[must_use]
    pub fn community_id(&self) -> Option<String> {
        if self.family == FAMILY_L2 {
            return None;
        }
        let n = self.addr_len();
        let ports = (self.has_ports() || self.has_icmp()).then_some((self.port_a, self.port_b));
        Some(community::community_id(
            &community::Tuple {
                src: &self.a[..n],
                dst: &self.b[..n],
                proto: self.proto,
                ports,
            },
            0,
            self.one_way,
        ))
    }
}

/// A key from its parts (an index row): `base` holds everything but the endpoints, which are
/// given in the packet's direction (`src` sent to `dst`).
#[must_use]
pub fn key_from(
    mut base: FlowKey,
    src: &[u8],
    dst: &[u8],
    sp: u16,
    dp: u16,
    one_way: bool,
) -> Parsed {
    base.a = [0; 16];
    base.b = [0; 16];
    let forward = endpoints(&mut base, src, dst, sp, dp, one_way);
    Parsed { key: base, forward }
}

fn u16_at(d: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(off)?, *d.get(off + 1)?]))
}

/// Orders the endpoints into a key.
fn endpoints(key: &mut FlowKey, src: &[u8], dst: &[u8], sp: u16, dp: u16, one_way: bool) -> bool {
    let n = src.len();
    let forward = one_way || community::ordered(src, sp, dst, dp);
    let (a, b, pa, pb) = if forward {
        (src, dst, sp, dp)
    } else {
        (dst, src, dp, sp)
    };
    key.a[..n].copy_from_slice(a);
    key.b[..n].copy_from_slice(b);
    key.port_a = pa;
    key.port_b = pb;
    key.one_way = one_way;
    forward
}

/// The transport part: ports or ICMP mapping from `l4` (the bytes after the IP headers).
fn transport(key: &mut FlowKey, src: &[u8], dst: &[u8], l4: &[u8]) -> bool {
    let ports = match key.proto {
        TCP | UDP | SCTP if key.flags & flags::FRAGMENT == 0 => {
            let ports = u16_at(l4, 0)
                .zip(u16_at(l4, 2))
                .map(|(sp, dp)| (sp, dp, false));
            if ports.is_none() {
                key.flags |= flags::TRUNCATED;
            }
            ports
        }
        ICMP | ICMP6 if key.flags & flags::FRAGMENT == 0 => {
            let ports = l4
                .first()
                .zip(l4.get(1))
                .map(|(&t, &c)| community::icmp_ports(key.proto, t, c));
            if ports.is_none() {
                key.flags |= flags::TRUNCATED;
            }
            ports
        }
        _ => None,
    };
    match ports {
        Some((sp, dp, one_way)) => endpoints(key, src, dst, sp, dp, one_way),
        None => endpoints(key, src, dst, 0, 0, false),
    }
}

/// The key of an Ethernet frame. `tunnel`, `tunnel_id`: from the record header (or a pcapng
/// comment) of a decapsulated packet. Never fails: a frame too short for anything is keyed by
/// what it has, flagged [`flags::TRUNCATED`].
#[must_use]
pub fn parse(frame: &[u8], tunnel: u8, tunnel_id: u32) -> Parsed {
    let mut key = FlowKey {
        tunnel,
        tunnel_id: if tunnel == TUNNEL_NONE { 0 } else { tunnel_id },
        ..FlowKey::default()
    };
    let Some(mut ethertype) = u16_at(frame, 12) else {
        key.flags |= flags::TRUNCATED;
        let n = frame.len().min(12);
        let (dst, src) = frame[..n].split_at(n.min(6));
        let forward = endpoints(&mut key, &pad6(src), &pad6(dst), 0, 0, false);
        return Parsed { key, forward };
    };
    let mut off = 14;
    while matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
        if key.vlans == 2 {
            key.flags |= flags::DEEP_VLAN;
            break;
        }
        let (Some(tci), Some(next)) = (u16_at(frame, off), u16_at(frame, off + 2)) else {
            key.flags |= flags::TRUNCATED;
            break;
        };
        key.vlan[usize::from(key.vlans)] = tci & 0x0fff;
        key.vlans += 1;
        ethertype = next;
        off += 4;
    }
    key.ethertype = ethertype;
    let l3 = frame.get(off..).unwrap_or(&[]);
    let forward = match ethertype {
        _ if key.flags & (flags::DEEP_VLAN | flags::TRUNCATED) != 0 => None,
        0x0800 => ipv4(&mut key, l3),
        0x86dd => ipv6(&mut key, l3),
        _ => None,
    };
    let forward = if let Some(f) = forward {
        f
    } else {
        // Not IP (or no room for the IP header): the MAC pair and the EtherType.
        key.family = FAMILY_L2;
        key.proto = 0;
        key.a = [0; 16];
        key.b = [0; 16];
        let mac = |r: std::ops::Range<usize>| pad6(frame.get(r).unwrap_or(&[]));
        endpoints(&mut key, &mac(6..12), &mac(0..6), 0, 0, false)
    };
    Parsed { key, forward }
}

fn pad6(b: &[u8]) -> [u8; 6] {
    let mut m = [0u8; 6];
    let n = b.len().min(6);
    m[..n].copy_from_slice(&b[..n]);
    m
}

/// `None` when the IPv4 header is not all there.
fn ipv4(key: &mut FlowKey, l3: &[u8]) -> Option<bool> {
    let ihl = usize::from(*l3.first()? & 0x0f) * 4;
    if l3.len() < 20 || ihl < 20 {
        return None;
    }
    key.family = FAMILY_V4;
    key.proto = l3[9];
    if u16_at(l3, 6)? & 0x1fff != 0 {
        key.flags |= flags::FRAGMENT;
    }
    let (src, dst) = (&l3[12..16], &l3[16..20]);
    let l4 = l3.get(ihl..).unwrap_or(&[]);
    Some(transport(key, src, dst, l4))
}

/// Extension headers followed to find the transport protocol, at most.
const MAX_EXT: usize = 8;

fn ipv6(key: &mut FlowKey, l3: &[u8]) -> Option<bool> {
    if l3.len() < 40 {
        return None;
    }
    key.family = FAMILY_V6;
    let (src, dst) = (&l3[8..24], &l3[24..40]);
    let mut nh = l3[6];
    let mut off = 40;
    for _ in 0..MAX_EXT {
        let len = match nh {
            // Hop-by-hop, routing, destination options: (hdr ext len + 1) * 8.
            0 | 43 | 60 => l3.get(off + 1).map(|&l| (usize::from(l) + 1) * 8),
            44 => {
                if let Some(frag) = u16_at(l3, off + 2) {
                    if frag & 0xfff8 != 0 {
                        key.flags |= flags::FRAGMENT;
                    }
                }
                Some(8)
            }
            // Authentication header: (payload len + 2) * 4.
            51 => l3.get(off + 1).map(|&l| (usize::from(l) + 2) * 4),
            _ => break,
        };
        key.flags |= flags::EXT_HEADERS;
        if let (Some(len), Some(&next)) = (len, l3.get(off)) {
            nh = next;
            off += len;
        } else {
            key.flags |= flags::TRUNCATED;
            break;
        }
        if key.flags & flags::FRAGMENT != 0 {
            break;
        }
    }
    if matches!(nh, 0 | 43 | 60 | 44 | 51) && key.flags & flags::FRAGMENT == 0 {
        // Still an extension header after MAX_EXT of them: no transport header found.
        key.flags |= flags::TRUNCATED;
    }
    key.proto = nh;
    let l4 = l3.get(off..).unwrap_or(&[]);
    Some(transport(key, src, dst, l4))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + optional VLAN tags + IPv4/UDP.
    fn udp4(vlans: &[u16], src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        for v in vlans {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&v.to_be_bytes());
        }
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&sp.to_be_bytes());
        f.extend_from_slice(&dp.to_be_bytes());
        f.extend_from_slice(&[0, 8, 0, 0]);
        f
    }

    #[test]
    fn both_directions_share_a_key() {
        let out = parse(&udp4(&[], [192, 0, 2, 9], [192, 0, 2, 1], 5000, 53), 0, 0);
        let back = parse(&udp4(&[], [192, 0, 2, 1], [192, 0, 2, 9], 53, 5000), 0, 0);
        assert_eq!(out.key, back.key);
        assert!(!out.forward && back.forward);
        assert_eq!(out.key.a[..4], [192, 0, 2, 1]);
        assert_eq!((out.key.port_a, out.key.port_b), (53, 5000));
        assert_eq!(
            out.key.community_id(),
            community::community_id(
                &community::Tuple {
                    src: &[192, 0, 2, 9],
                    dst: &[192, 0, 2, 1],
                    proto: 17,
                    ports: Some((5000, 53))
                },
                0,
                false
            )
            .into()
        );
    }

    #[test]
    fn vlans_and_tunnels_are_part_of_the_key() {
        let plain = parse(&udp4(&[], [192, 0, 2, 1], [192, 0, 2, 2], 1, 2), 0, 0).key;
        let tagged = parse(&udp4(&[10], [192, 0, 2, 1], [192, 0, 2, 2], 1, 2), 0, 0).key;
        let qinq = parse(&udp4(&[10, 20], [192, 0, 2, 1], [192, 0, 2, 2], 1, 2), 0, 0).key;
        let deep = parse(
            &udp4(&[1, 2, 3], [192, 0, 2, 1], [192, 0, 2, 2], 1, 2),
            0,
            0,
        )
        .key;
        let tunnel = parse(&udp4(&[], [192, 0, 2, 1], [192, 0, 2, 2], 1, 2), 1, 42).key;
        assert_eq!((tagged.vlans, tagged.vlan), (1, [10, 0]));
        assert_eq!((qinq.vlans, qinq.vlan), (2, [10, 20]));
        assert_eq!(deep.flags & flags::DEEP_VLAN, flags::DEEP_VLAN);
        assert_eq!(deep.family, FAMILY_L2);
        assert_eq!((tunnel.tunnel, tunnel.tunnel_id), (1, 42));
        let keys = [plain, tagged, qinq, deep, tunnel];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // The Community ID ignores VLANs and tunnels (v1 does not cover them).
        assert_eq!(plain.community_id(), tagged.community_id());
    }

    #[test]
    fn fragments_and_icmp() {
        let mut first = udp4(&[], [192, 0, 2, 1], [192, 0, 2, 2], 7, 9);
        first[20] = 0x20; // MF, offset 0
        let k = parse(&first, 0, 0).key;
        assert_eq!((k.flags, k.port_a, k.port_b), (0, 7, 9));
        let mut later = first.clone();
        later[20] = 0x00;
        later[21] = 0x10; // offset 16 * 8
        let k = parse(&later, 0, 0).key;
        assert_eq!(
            (k.flags, k.proto, k.port_a, k.port_b),
            (flags::FRAGMENT, 17, 0, 0)
        );
        assert!(!k.has_ports());
        // ICMP echo request and reply are one flow.
        let mut echo = udp4(&[], [192, 0, 2, 1], [192, 0, 2, 2], 0x0800, 0);
        echo[23] = 1;
        let mut reply = udp4(&[], [192, 0, 2, 2], [192, 0, 2, 1], 0, 0);
        reply[23] = 1;
        let (e, r) = (parse(&echo, 0, 0), parse(&reply, 0, 0));
        assert_eq!(e.key, r.key);
        assert_eq!((e.key.port_a, e.key.port_b), (8, 0));
        assert!(e.forward && !r.forward);
    }

    #[test]
    fn ipv6_extension_headers_and_fragments() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x86, 0xdd]);
        let mut ip = vec![0x60, 0, 0, 0, 0, 16, 0, 64];
        ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        f.extend_from_slice(&ip);
        // Hop-by-hop (8 bytes) then UDP.
        f.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 8, 0, 0]);
        let k = parse(&f, 0, 0).key;
        assert_eq!((k.family, k.proto, k.flags), (6, 17, flags::EXT_HEADERS));
        assert_eq!((k.port_a, k.port_b), (5000, 53));
        // A later fragment of the same.
        f[14 + 6] = 44;
        f[54..62].copy_from_slice(&[17, 0, 0, 0x10, 0, 0, 0, 1]);
        let k = parse(&f, 0, 0).key;
        assert_eq!(
            (k.proto, k.flags),
            (17, flags::EXT_HEADERS | flags::FRAGMENT)
        );
        assert_eq!((k.port_a, k.port_b), (0, 0));
    }

    #[test]
    fn hostile_frames_never_panic() {
        let base = udp4(&[10, 20], [192, 0, 2, 1], [192, 0, 2, 2], 1, 2);
        for n in 0..base.len() {
            let _ = parse(&base[..n], 0, 0);
        }
        let mut x: u32 = 7;
        for _ in 0..2000 {
            let len = (x % 120) as usize;
            let f: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    x.to_be_bytes()[1]
                })
                .collect();
            let p = parse(&f, 0, 0);
            let _ = p.key.community_id();
        }
    }
}
