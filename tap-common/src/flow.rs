//! The per-flow budget (`--flow-budget`): the programs copy the first N bytes (or packets) of
//! every flow and nothing past them, except TCP packets with SYN, FIN or RST, so that every
//! flow's start and end stay visible. Flows live in an LRU hash map ([`crate::maps::FLOWS`]) of
//! [`FlowKey`] → bytes or packets used so far (`u64`).
//!
//! A flow is what [`FlowKey`] holds: both addresses and both ports in a canonical order (so the
//! two directions are one flow), the IP protocol and version, the VLAN ids and, for a
//! decapsulated packet, the tunnel and its id. A packet is copied when its flow has used less
//! than the budget before it; the packet's whole original length (from the Ethernet header of
//! the frame recorded) then counts. Not budgeted, always copied: packets that are not IPv4 or
//! IPv6 (ARP, LLDP, ...: no flow to speak of), and those too short for their IP header.
//! Non-first IPv4 fragments carry no ports: they are keyed with ports 0, a flow of their own per
//! address pair and protocol, budgeted like any other. So are IPv6 packets whose first next
//! header is not TCP, UDP, SCTP or UDP-Lite (extension headers are not walked).

/// Default number of flows the table holds (`--flow-table-size`).
pub const DEFAULT_FLOW_TABLE: u32 = 65_536;
/// Largest flow table (entries).
pub const MAX_FLOW_TABLE: u32 = 1 << 24;

/// `TAP_FLOW_UNIT`: the budget counts bytes.
pub const UNIT_BYTES: u32 = 0;
/// `TAP_FLOW_UNIT`: the budget counts packets.
pub const UNIT_PACKETS: u32 = 1;

/// TCP flags that make a packet always copied: FIN, SYN, RST.
pub const TCP_ALWAYS: u8 = 0x01 | 0x02 | 0x04;

/// A flow, both directions in one. Addresses are in network byte order (IPv4 in the first 4
/// bytes, the rest zero), ports in host byte order; `(addr_lo, port_lo)` is the lesser of the
/// two ends by [`FlowKey::ordered`]'s order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub addr_lo: [u8; 16],
    pub addr_hi: [u8; 16],
    pub port_lo: u16,
    pub port_hi: u16,
    /// IP protocol (the first next header for IPv6).
    pub proto: u8,
    /// 4 or 6.
    pub version: u8,
    /// `crate::event::TUNNEL_*` the packet was decapsulated from (0: none).
    pub tunnel: u8,
    pub _pad: u8,
    /// Outer VLAN id << 16 | inner VLAN id (0: untagged).
    pub vlan: u32,
    /// VNI, GRE key or ERSPAN session of the tunnel (0: none).
    pub tunnel_id: u32,
}

impl FlowKey {
    /// Puts the two ends in canonical order: the lesser `(address, port)` first.
    #[expect(
        clippy::inline_always,
        reason = "the programs call it: the verifier wants it inlined"
    )]
    #[inline(always)]
    fn order(&mut self) {
        let swap = match less(&self.addr_hi, &self.addr_lo) {
            Some(hi_first) => hi_first,
            None => self.port_hi < self.port_lo,
        };
        if swap {
            let mut i = 0;
            while i < 16 {
                core::mem::swap(&mut self.addr_lo[i], &mut self.addr_hi[i]);
                i += 1;
            }
            core::mem::swap(&mut self.port_lo, &mut self.port_hi);
        }
    }
}

/// Whether `a` orders before `b` (None: equal), comparing 8 bytes at a time.
#[expect(
    clippy::inline_always,
    reason = "the programs call it: the verifier wants it inlined"
)]
#[inline(always)]
fn less(a: &[u8; 16], b: &[u8; 16]) -> Option<bool> {
    let word = |x: &[u8; 16], i: usize| {
        u64::from_be_bytes([
            x[i],
            x[i + 1],
            x[i + 2],
            x[i + 3],
            x[i + 4],
            x[i + 5],
            x[i + 6],
            x[i + 7],
        ])
    };
    let (a0, b0) = (word(a, 0), word(b, 0));
    if a0 != b0 {
        return Some(a0 < b0);
    }
    let (a1, b1) = (word(a, 8), word(b, 8));
    if a1 != b1 {
        return Some(a1 < b1);
    }
    None
}

/// What a packet's headers say for the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowOf {
    pub key: FlowKey,
    /// A TCP packet with SYN, FIN or RST: copied whatever the budget.
    pub always: bool,
}

/// Reads a frame's flow into `key` (every field written): `byte(i)` is the frame's byte `i` and
/// `quad(i)` its bytes `i..i + 4` (None past its end or the part the caller can see; the
/// programs read those at once). Returns whether the packet is always
/// copied (a TCP SYN, FIN or RST), or None for a packet that is not budgeted (see the module
/// notes; `key` is then partly written). `tunnel`: the tunnel the frame was decapsulated from
/// and its id.
///
/// The programs (into per-CPU scratch memory: a key is too big for their stack alongside the
/// rest) and user space (the bench, the tests, through [`parse`]) read keys the same way.
#[expect(
    clippy::inline_always,
    reason = "the programs call it: the verifier wants it inlined"
)]
#[inline(always)]
pub fn parse_into(
    byte: impl Fn(u32) -> Option<u8>,
    quad: impl Fn(u32) -> Option<[u8; 4]>,
    tunnel: (u8, u32),
    key: &mut FlowKey,
) -> Option<bool> {
    let u16_at = |off: u32| Some(u16::from(byte(off)?) << 8 | u16::from(byte(off + 1)?));
    let mut l3 = 14u32;
    let mut ethertype = u16_at(12)?;
    let mut vlan = 0u32;
    let mut tags = 0;
    while tags < 2 && (ethertype == 0x8100 || ethertype == 0x88a8) {
        vlan = (vlan << 16) | u32::from(u16_at(l3)? & 0x0fff);
        ethertype = u16_at(l3 + 2)?;
        l3 += 4;
        tags += 1;
    }
    let (version, proto, l4, first, src, dst, len) = match ethertype {
        0x0800 => {
            let ihl = u32::from(byte(l3)? & 0x0f) * 4;
            let fragment = u16_at(l3 + 6)? & 0x1fff;
            (
                4,
                byte(l3 + 9)?,
                l3 + ihl,
                fragment == 0,
                l3 + 12,
                l3 + 16,
                4,
            )
        }
        0x86dd => (6, byte(l3 + 6)?, l3 + 40, true, l3 + 8, l3 + 24, 16),
        _ => return None,
    };
    let mut i = 0u32;
    while i < 16 {
        let (a, b) = if i < len {
            (quad(src + i)?, quad(dst + i)?)
        } else {
            ([0; 4], [0; 4])
        };
        let at = i as usize;
        key.addr_lo[at..at + 4].copy_from_slice(&a);
        key.addr_hi[at..at + 4].copy_from_slice(&b);
        i += 4;
    }
    let ported = first && matches!(proto, 6 | 17 | 132 | 136);
    if ported {
        key.port_lo = u16_at(l4).unwrap_or(0);
        key.port_hi = u16_at(l4 + 2).unwrap_or(0);
    } else {
        key.port_lo = 0;
        key.port_hi = 0;
    }
    key.proto = proto;
    key.version = version;
    key.tunnel = tunnel.0;
    #[expect(
        clippy::used_underscore_binding,
        reason = "padding, zeroed so equal keys hash alike"
    )]
    {
        key._pad = 0;
    }
    key.vlan = vlan;
    key.tunnel_id = tunnel.1;
    key.order();
    Some(ported && proto == 6 && byte(l4 + 13).is_some_and(|f| f & TCP_ALWAYS != 0))
}

/// [`parse_into`] a key of its own, from a frame's bytes.
#[must_use]
pub fn parse(frame: &[u8], tunnel: (u8, u32)) -> Option<FlowOf> {
    let mut key = FlowKey::default();
    let byte = |i: u32| frame.get(i as usize).copied();
    let quad = |i: u32| {
        let i = i as usize;
        frame.get(i..i + 4).map(|q| [q[0], q[1], q[2], q[3]])
    };
    let always = parse_into(byte, quad, tunnel, &mut key)?;
    Some(FlowOf { key, always })
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: repr(C), integers and byte arrays, explicit padding (48 bytes, no gaps).
    unsafe impl aya::Pod for super::FlowKey {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ethertype: u16, l3: &[u8]) -> std::vec::Vec<u8> {
        let mut f = std::vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(l3);
        f
    }

    fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, l4: &[u8]) -> std::vec::Vec<u8> {
        let mut h = std::vec![0x45, 0, 0, 0, 0, 0];
        h.extend_from_slice(&frag.to_be_bytes());
        h.extend_from_slice(&[64, proto, 0, 0]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h.extend_from_slice(l4);
        h
    }

    fn tcp(sport: u16, dport: u16, flags: u8) -> std::vec::Vec<u8> {
        let mut t = std::vec::Vec::new();
        t.extend_from_slice(&sport.to_be_bytes());
        t.extend_from_slice(&dport.to_be_bytes());
        t.extend_from_slice(&[0; 9]);
        t.push(flags);
        t.extend_from_slice(&[0; 6]);
        t
    }

    fn of(f: &[u8]) -> Option<FlowOf> {
        parse(f, (0, 0))
    }

    const A: [u8; 4] = [192, 0, 2, 1];
    const B: [u8; 4] = [198, 51, 100, 7];

    #[test]
    fn both_directions_are_one_flow() {
        let ab = of(&frame(0x0800, &ipv4(A, B, 6, 0, &tcp(40000, 80, 0x10)))).unwrap();
        let ba = of(&frame(0x0800, &ipv4(B, A, 6, 0, &tcp(80, 40000, 0x10)))).unwrap();
        assert_eq!(ab.key, ba.key);
        assert!(!ab.always);
        assert_eq!(ab.key.version, 4);
        assert_eq!((ab.key.port_lo, ab.key.port_hi), (40000, 80));
        assert_eq!(&ab.key.addr_lo[..4], &A);
        // Same addresses, other ports: another flow.
        let other = of(&frame(0x0800, &ipv4(A, B, 6, 0, &tcp(40001, 80, 0x10)))).unwrap();
        assert_ne!(other.key, ab.key);
        // Same host both ends: ordered by port.
        let same = of(&frame(0x0800, &ipv4(A, A, 17, 0, &tcp(9, 7, 0)))).unwrap();
        assert_eq!((same.key.port_lo, same.key.port_hi), (7, 9));
    }

    #[test]
    fn syn_fin_rst_are_always_copied() {
        for (flags, always) in [
            (0x02, true),
            (0x12, true),
            (0x11, true),
            (0x04, true),
            (0x18, false),
        ] {
            let f = of(&frame(0x0800, &ipv4(A, B, 6, 0, &tcp(1, 2, flags)))).unwrap();
            assert_eq!(f.always, always, "{flags:#x}");
        }
        // UDP bytes where TCP's flags would be do not count.
        let u = of(&frame(0x0800, &ipv4(A, B, 17, 0, &tcp(1, 2, 0x02)))).unwrap();
        assert!(!u.always);
    }

    #[test]
    fn vlans_and_tunnels_tell_flows_apart() {
        let l3 = ipv4(A, B, 17, 0, &tcp(5, 6, 0));
        let plain = of(&frame(0x0800, &l3)).unwrap().key;
        let mut tagged = std::vec![0u8; 12];
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x07, 0x08, 0x00]);
        tagged.extend_from_slice(&l3);
        let vlan7 = of(&tagged).unwrap().key;
        assert_eq!(vlan7.vlan, 7);
        assert_ne!(vlan7, plain);
        let tunnelled = parse(&frame(0x0800, &l3), (1, 42)).unwrap().key;
        assert_eq!((tunnelled.tunnel, tunnelled.tunnel_id), (1, 42));
        assert_ne!(tunnelled, plain);
    }

    #[test]
    fn fragments_ipv6_and_other_frames() {
        // A non-first fragment: no ports.
        let frag = of(&frame(0x0800, &ipv4(A, B, 17, 0x00b9, &tcp(5, 6, 0)))).unwrap();
        assert_eq!((frag.key.port_lo, frag.key.port_hi), (0, 0));
        // The first fragment (MF set, offset 0) has them.
        let first = of(&frame(0x0800, &ipv4(A, B, 17, 0x2000, &tcp(5, 6, 0)))).unwrap();
        assert_eq!((first.key.port_lo, first.key.port_hi), (5, 6));
        let mut v6 = std::vec![0x60, 0, 0, 0, 0, 20, 6, 64];
        v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        v6.extend_from_slice(&tcp(443, 50000, 0x02));
        let f = of(&frame(0x86dd, &v6)).unwrap();
        assert_eq!((f.key.version, f.key.proto, f.always), (6, 6, true));
        assert_eq!((f.key.port_lo, f.key.port_hi), (50000, 443));
        assert_eq!(f.key.addr_lo[15], 1);
        assert_eq!(of(&frame(0x0806, &[0; 28])), None, "ARP is no flow");
        assert_eq!(of(&frame(0x0800, &[0x45, 0])), None, "too short");
        assert_eq!(size_of::<FlowKey>(), 48);
    }
}
