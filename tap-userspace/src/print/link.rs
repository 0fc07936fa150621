//! Ethernet (with 802.1Q/QinQ tags) and ARP, as tcpdump's `print-ether.c` and `print-arp.c`
//! lay them out.

use super::{Ctx, R, Trunc, be16, bytes, emit::Emit, u8_at};

pub(crate) const ETHERTYPE_IP: u16 = 0x0800;
pub(crate) const ETHERTYPE_IPV6: u16 = 0x86dd;
pub(crate) const ETHERTYPE_ARP: u16 = 0x0806;
pub(crate) const ETHERTYPE_REVARP: u16 = 0x8035;
pub(crate) const ETHERTYPE_TEB: u16 = 0x6558;
const ETHERTYPE_TRAIL: u16 = 0x1000;
const VLAN_TYPES: [u16; 4] = [0x8100, 0x9100, 0x9200, 0x88a8];
/// Type/length values up to this are 802.3 lengths.
const MAX_ETHERNET_LENGTH_VAL: u16 = 1500;

/// tcpdump's `ethertype_values`: the names `-e` and unknown payloads show.
const ETHERTYPE_NAMES: &[(u16, &str)] = &[
    (0x0800, "IPv4"),
    (0x8847, "MPLS unicast"),
    (0x8848, "MPLS multicast"),
    (0x86dd, "IPv6"),
    (0x8100, "802.1Q"),
    (0x9100, "802.1Q-9100"),
    (0x88a8, "802.1Q-QinQ"),
    (0x9200, "802.1Q-9200"),
    (0x88e5, "802.1AE MACsec"),
    (0x0200, "PUP"),
    (0x0806, "ARP"),
    (0x8035, "Reverse ARP"),
    (0x0600, "NS"),
    (0x0500, "Sprite"),
    (0x1000, "Trail"),
    (0x6001, "MOP DL"),
    (0x6002, "MOP RC"),
    (0x6003, "DN"),
    (0x6004, "LAT"),
    (0x6007, "SCA"),
    (0x6558, "TEB"),
    (0x8038, "Lanbridge"),
    (0x803c, "DEC DNS"),
    (0x803e, "DEC DTS"),
    (0x805b, "VEXP"),
    (0x805c, "VPROD"),
    (0x809b, "Appletalk"),
    (0x80f3, "Appletalk ARP"),
    (0x8137, "IPX"),
    (0x880b, "PPP"),
    (0x8808, "MPCP"),
    (0x8809, "Slow Protocols"),
    (0x8863, "PPPoE D"),
    (0x8864, "PPPoE S"),
    (0x888e, "EAPOL"),
    (0x8899, "Realtek protocols"),
    (0x886f, "MS NLB heartbeat"),
    (0x8870, "Jumbo"),
    (0x894f, "NSH"),
    (0x9000, "Loopback"),
    (0xfefe, "OSI"),
    (0x00fe, "GRE-OSI"),
    (0xabcd, "CFM (old)"),
    (0x8902, "CFM"),
    (0x893a, "IEEE1905.1"),
    (0x88cc, "LLDP"),
    (0x88ca, "TIPC"),
    (0x0707, "GeoNet (old)"),
    (0x8947, "GeoNet"),
    (0x1111, "CALM FAST"),
    (0x88a2, "AoE"),
    (0x88f7, "PTP"),
    (0xd28b, "Arista Vendor Specific Protocol"),
];

/// Ethertypes tcpdump decodes and tap prints as unknown ones (see the module documentation).
pub const TCPDUMP_DECODES_ETHERTYPES: &[u16] = &[
    0x6003, 0x809b, 0x80f3, 0x8137, 0xfefe, 0x8863, 0x8864, 0x3c12, 0x3c13, 0x888e, 0x8899, 0x880b,
    0x8808, 0x8809, 0x8902, 0xabcd, 0x88cc, 0x894f, 0x9000, 0x8847, 0x8848, 0x88ca, 0x886f, 0x0707,
    0x8947, 0x1111, 0x88a2, 0x88f7, 0x88e5, 0x8870, 0xd28b,
];

pub(crate) fn ethertype_name(t: u16) -> Option<&'static str> {
    ETHERTYPE_NAMES
        .iter()
        .find(|(v, _)| *v == t)
        .map(|(_, n)| *n)
}

const ARPOP_NAMES: &[(u16, &str)] = &[
    (1, "Request"),
    (2, "Reply"),
    (3, "Reverse Request"),
    (4, "Reverse Reply"),
    (8, "Inverse Request"),
    (9, "Inverse Reply"),
    (10, "NACK Reply"),
];

const ARPHRD_NAMES: &[(u16, &str)] = &[
    (1, "Ethernet"),
    (6, "TokenRing"),
    (7, "ArcNet"),
    (15, "FrameRelay"),
    (23, "Strip"),
    (24, "IEEE 1394"),
    (19, "ATM"),
    (32, "InfiniBand"),
];

fn name_of<T: PartialEq + Copy>(table: &[(T, &'static str)], v: T) -> Option<&'static str> {
    table.iter().find(|(k, _)| *k == v).map(|(_, n)| *n)
}

/// 802.1Q TCI text: `vlan ID, p PRI[, DEI]`.
fn tci(out: &mut Vec<u8>, tag: u16) {
    out.s("vlan ");
    out.dec(u64::from(tag & 0xfff));
    out.s(", p ");
    out.dec(u64::from(tag >> 13));
    if tag & 0x1000 != 0 {
        out.s(", DEI");
    }
}

impl Ctx<'_> {
    fn ether_addresses(&mut self, src: &[u8], dst: &[u8]) {
        self.out.mac(src);
        self.out.s(" > ");
        self.out.mac(dst);
        self.out.s(", ");
    }

    fn ether_type(&mut self, t: u16) {
        if self.o.quiet {
            if let Some(n) = ethertype_name(t) {
                self.out.s(n);
            } else {
                self.out.s("Unknown Ethertype (0x");
                self.out.hex_w(u64::from(t), 4);
                self.out.c(b')');
            }
        } else {
            self.out.s("ethertype ");
            self.out.s(ethertype_name(t).unwrap_or("Unknown"));
            self.out.s(" (0x");
            self.out.hex_w(u64::from(t), 4);
            self.out.c(b')');
        }
    }

    fn length_colon(&mut self, length: usize) {
        self.out.s(", length ");
        self.out.dec(length as u64);
        self.out.s(": ");
    }

    /// An Ethernet frame: `p` holds the captured bytes, `length` the frame's length on the
    /// wire. Returns the link-layer header length (what `-x` leaves out).
    pub(crate) fn ether(&mut self, p: &[u8], mut length: usize) -> R<usize> {
        self.proto = "ether";
        let mut caplen = p.len();
        if length < caplen {
            self.out.s("[length ");
            self.out.dec(length as u64);
            self.out.s(" < caplen ");
            self.out.dec(caplen as u64);
            self.out.c(b']');
            self.invalid();
            return Ok(length);
        }
        if caplen < 14 {
            self.trunc_mark();
            return Ok(caplen);
        }
        let (dst, src) = (&p[0..6], &p[6..12]);
        let orig_length = length;
        length -= 12;
        caplen -= 12;
        let mut hdrlen = 12;
        if self.e() {
            self.ether_addresses(src, dst);
        }
        let mut length_type = be16(p, hdrlen)?;
        length -= 2;
        caplen -= 2;
        hdrlen += 2;
        let mut printed_length = false;
        while VLAN_TYPES.contains(&length_type) {
            if caplen < 4 {
                self.proto = "vlan";
                self.trunc_mark();
                return Ok(hdrlen + caplen);
            }
            if length < 4 {
                self.proto = "vlan";
                self.trunc_mark();
                return Ok(hdrlen + length);
            }
            if self.e() {
                let tag = be16(p, hdrlen)?;
                self.ether_type(length_type);
                if printed_length {
                    self.out.s(", ");
                } else {
                    self.length_colon(orig_length);
                    printed_length = true;
                }
                tci(self.out, tag);
                self.out.s(", ");
            }
            length_type = be16(p, hdrlen + 2)?;
            hdrlen += 4;
            length -= 4;
            caplen -= 4;
        }
        let rest = &p[hdrlen..];
        if length_type <= MAX_ETHERNET_LENGTH_VAL {
            // 802.3 with an LLC header (STP, CDP, ...): not decoded.
            let len = usize::from(length_type).min(length);
            if self.e() {
                self.out.s("802.3");
                if !printed_length {
                    self.length_colon(len);
                }
            } else {
                self.ether_addresses(src, dst);
                self.out.s("802.3");
                self.length_colon(len);
            }
            if !self.suppress_default() {
                self.default_print(super::cap(rest, len));
            }
            return Ok(hdrlen);
        }
        if self.e() {
            self.ether_type(length_type);
            if printed_length {
                self.out.s(", ");
            } else {
                self.length_colon(orig_length);
            }
        }
        if !self.ethertype(length_type, rest, length)? {
            if !self.e() {
                self.ether_addresses(src, dst);
                self.ether_type(length_type);
                self.length_colon(orig_length);
            }
            if !self.suppress_default() {
                self.default_print(rest);
            }
        }
        Ok(hdrlen)
    }

    /// The payload of an ethertype tap decodes; `false` for the others.
    pub(crate) fn ethertype(&mut self, t: u16, p: &[u8], length: usize) -> R<bool> {
        match t {
            ETHERTYPE_IP => self.ip(p, length)?,
            ETHERTYPE_IPV6 => self.ip6(p, length)?,
            ETHERTYPE_ARP | ETHERTYPE_REVARP => self.arp(p, length)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// An IPv4 or IPv6 packet by its version nibble (raw IP link type).
    pub(crate) fn ip_n(&mut self, p: &[u8], length: usize) -> R<()> {
        self.proto = "ipn";
        if length < 1 {
            self.out.s("truncated-ip ");
            self.out.dec(length as u64);
            return Ok(());
        }
        match u8_at(p, 0)? & 0xf0 {
            0x40 => self.ip(p, length),
            0x60 => self.ip6(p, length),
            v => {
                self.out.s("unknown ip ");
                self.out.dec(u64::from(v >> 4));
                Ok(())
            }
        }
    }

    fn linkaddr(&mut self, a: &[u8]) {
        // tcpdump prints any length as colon-separated hex; six bytes are an Ethernet address.
        self.out.mac(a);
    }

    fn arp(&mut self, p: &[u8], length: usize) -> R<()> {
        self.proto = "arp";
        if p.len() < 8 {
            return Err(Trunc);
        }
        let hrd = be16(p, 0)?;
        let pro = be16(p, 2)?;
        let hln = usize::from(p[4]);
        let pln = usize::from(p[5]);
        let op = be16(p, 6)?;
        if hrd == 19 {
            // ATM ARP (RFC 2225) has a different layout: not decoded.
            if !self.e() {
                self.out.s("ARP, ");
            }
            self.out.s("ATM ARP, length ");
            self.out.dec(length as u64);
            return Ok(());
        }
        let sha = 8;
        let spa = sha + hln;
        let tha = spa + pln;
        let tpa = tha + hln;
        bytes(p, tpa, pln)?;
        if !self.e() {
            self.out.s("ARP, ");
        }
        let ip_like = pro == ETHERTYPE_IP || pro == ETHERTYPE_TRAIL;
        if !ip_like || pln != 4 || hln == 0 || self.v() > 0 {
            if let Some(n) = name_of(ARPHRD_NAMES, hrd) {
                self.out.s(n);
            } else {
                self.out.s("Unknown Hardware (");
                self.out.dec(u64::from(hrd));
                self.out.c(b')');
            }
            self.out.s(" (len ");
            self.out.dec(hln as u64);
            self.out.s("), ");
            if let Some(n) = ethertype_name(pro) {
                self.out.s(n);
            } else {
                self.out.s("Unknown Protocol (0x");
                self.out.hex_w(u64::from(pro), 4);
                self.out.c(b')');
            }
            self.out.s(" (len ");
            self.out.dec(pln as u64);
            self.out.c(b')');
            if self.v() == 0 {
                self.length_tail(length);
                return Ok(());
            }
        }
        if self.v() > 0 {
            self.out.s(", ");
        }
        if let Some(n) = name_of(ARPOP_NAMES, op) {
            self.out.s(n);
        } else {
            self.out.s("Unknown (");
            self.out.dec(u64::from(op));
            self.out.c(b')');
        }
        self.out.c(b' ');
        let paddr = |cx: &mut Self, at: usize| {
            if !ip_like {
                cx.out.s("<wrong proto type>");
            } else if pln != 4 {
                cx.out.s("<wrong len>");
            } else {
                cx.out.ipv4(&p[at..at + 4]);
            }
        };
        match op {
            1 => {
                self.out.s("who-has ");
                paddr(self, tpa);
                let t = bytes(p, tha, hln)?;
                if t.iter().any(|&b| b != 0) {
                    self.out.s(" (");
                    self.linkaddr(t);
                    self.out.c(b')');
                }
                self.out.s(" tell ");
                paddr(self, spa);
            }
            2 => {
                paddr(self, spa);
                self.out.s(" is-at ");
                self.linkaddr(bytes(p, sha, hln)?);
            }
            3 | 8 => {
                self.out.s("who-is ");
                self.linkaddr(bytes(p, tha, hln)?);
                self.out.s(" tell ");
                self.linkaddr(bytes(p, sha, hln)?);
            }
            4 => {
                self.linkaddr(bytes(p, tha, hln)?);
                self.out.s(" at ");
                paddr(self, tpa);
            }
            9 => {
                self.linkaddr(bytes(p, sha, hln)?);
                self.out.s(" at ");
                paddr(self, spa);
            }
            _ => {
                self.default_print(p);
                return Ok(());
            }
        }
        self.length_tail(length);
        Ok(())
    }

    fn length_tail(&mut self, length: usize) {
        self.out.s(", length ");
        self.out.dec(length as u64);
    }
}
