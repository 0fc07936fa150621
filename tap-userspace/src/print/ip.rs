//! IPv4 and IPv6 (with extension headers) and the dispatch to what they carry, as tcpdump's
//! `print-ip.c`, `print-ip6.c`, `print-ip6opts.c`, `print-frag6.c`, `print-rt6.c` and
//! `print-ip-demux.c` lay them out.

use etherparse::checksum::Sum16BitWords;

use super::{Ctx, R, Trunc, be16, be32, bits, bytes, cap, emit::Emit, u8_at};

pub(crate) const IPPROTO_HOPOPTS: u8 = 0;
pub(crate) const IPPROTO_ICMP: u8 = 1;
pub(crate) const IPPROTO_IPV4: u8 = 4;
pub(crate) const IPPROTO_TCP: u8 = 6;
pub(crate) const IPPROTO_UDP: u8 = 17;
const IPPROTO_DCCP: u8 = 33;
pub(crate) const IPPROTO_IPV6: u8 = 41;
pub(crate) const IPPROTO_ROUTING: u8 = 43;
pub(crate) const IPPROTO_FRAGMENT: u8 = 44;
pub(crate) const IPPROTO_GRE: u8 = 47;
pub(crate) const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_NONE: u8 = 59;
pub(crate) const IPPROTO_DSTOPTS: u8 = 60;
const IPPROTO_ND: u8 = 77;
const IPPROTO_SCTP: u8 = 132;
const IPPROTO_MOBILITY: u8 = 135;
const IPPROTO_ETHERNET: u8 = 143;

/// tcpdump's `ipproto_values`.
const IPPROTO_NAMES: &[(u8, &str)] = &[
    (0, "Options"),
    (1, "ICMP"),
    (2, "IGMP"),
    (4, "IPIP"),
    (6, "TCP"),
    (8, "EGP"),
    (9, "IGRP"),
    (17, "UDP"),
    (33, "DCCP"),
    (41, "IPv6"),
    (43, "Routing"),
    (44, "Fragment"),
    (46, "RSVP"),
    (47, "GRE"),
    (50, "ESP"),
    (51, "AH"),
    (55, "Mobile IP"),
    (58, "ICMPv6"),
    (62, "Mobile IP (old)"),
    (88, "EIGRP"),
    (89, "OSPF"),
    (103, "PIM"),
    (108, "Compressed IP"),
    (112, "VRRP"),
    (113, "PGM"),
    (132, "SCTP"),
    (135, "Mobility"),
    (143, "Ethernet"),
];

/// IP protocols tcpdump decodes and tap prints as unknown ones (see the module documentation).
pub const TCPDUMP_DECODES_PROTOCOLS: &[u8] = &[
    2, 8, 9, 33, 46, 50, 51, 55, 62, 88, 89, 103, 108, 112, 113, 132, 135,
];

pub(crate) fn ipproto_name(p: u8) -> &'static str {
    IPPROTO_NAMES
        .iter()
        .find(|(v, _)| *v == p)
        .map_or("unknown", |(_, n)| n)
}

const IP_MF: u16 = 0x2000;
const IP_DF: u16 = 0x4000;
const IP_RES: u16 = 0x8000;
const IP_OFFMASK: u16 = 0x1fff;

/// The IP header an upper layer was carried in: what it prints addresses from and computes
/// checksums over.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IpHdr<'a> {
    pub(crate) v6: bool,
    /// The header from its first byte to the end of the captured packet (as cut to the IP
    /// length).
    pub(crate) hdr: &'a [u8],
    /// The header's protocol (IPv4) or first next header (IPv6): when it is not the upper
    /// layer's own, the addresses were printed already.
    pub(crate) first_proto: u8,
}

impl<'a> IpHdr<'a> {
    pub(crate) fn src(&self) -> &'a [u8] {
        if self.v6 {
            &self.hdr[8..24]
        } else {
            &self.hdr[12..16]
        }
    }

    pub(crate) fn dst(&self) -> &'a [u8] {
        if self.v6 {
            &self.hdr[24..40]
        } else {
            &self.hdr[16..20]
        }
    }

    /// The address the upper-layer checksum's pseudo-header uses as destination: the last hop
    /// of a source route when there is one (tcpdump's `ip_finddst` / `ip6_finddst`).
    fn final_dst(&self) -> &'a [u8] {
        if self.v6 {
            ip6_final_dst(self.hdr)
        } else {
            ip4_final_dst(self.hdr)
        }
    }

    /// tcpdump's `in_cksum` over the pseudo-header and `seg` (0 when the checksum verifies),
    /// as a host-order value.
    pub(crate) fn upper_cksum(&self, proto: u8, seg: &[u8]) -> u16 {
        let mut sum = Sum16BitWords::new()
            .add_slice(self.src())
            .add_slice(self.final_dst());
        if self.v6 {
            sum = sum
                .add_4bytes((seg.len() as u32).to_be_bytes())
                .add_4bytes([0, 0, 0, proto]);
        } else {
            sum = sum
                .add_2bytes([0, proto])
                .add_2bytes((seg.len() as u16).to_be_bytes());
        }
        let r = sum.add_slice(seg).ones_complement();
        u16::from_be_bytes(r.to_ne_bytes())
    }
}

/// `in_cksum` of `b` alone, host order (0 when it verifies).
pub(crate) fn cksum(b: &[u8]) -> u16 {
    let r = Sum16BitWords::new().add_slice(b).ones_complement();
    u16::from_be_bytes(r.to_ne_bytes())
}

/// The checksum field value that would verify, given the field `sum` and a failing `computed`
/// (`in_cksum_shouldbe`).
pub(crate) fn cksum_shouldbe(sum: u16, computed: u16) -> u16 {
    let mut v = u32::from(sum) + u32::from(computed);
    v = (v & 0xffff) + (v >> 16);
    v = (v & 0xffff) + (v >> 16);
    v as u16
}

fn ip4_final_dst(h: &[u8]) -> &[u8] {
    let hlen = usize::from(h[0] & 0xf) * 4;
    let mut opts = h.get(20..hlen.max(20)).unwrap_or(&[]);
    while let Some(&t) = opts.first() {
        let len = match t {
            0 => break,
            1 => 1,
            _ => match opts.get(1) {
                Some(&l) if l >= 2 => usize::from(l),
                _ => break,
            },
        };
        if opts.len() < len {
            break;
        }
        if (t == 0x89 || t == 0x83) && len >= 7 {
            return &opts[len - 4..len];
        }
        opts = &opts[len..];
    }
    &h[16..20]
}

fn ip6_final_dst(h: &[u8]) -> &[u8] {
    let mut dst = &h[24..40];
    let mut at = 40;
    let mut nh = h[6];
    while at < h.len() {
        match nh {
            IPPROTO_HOPOPTS | IPPROTO_DSTOPTS | IPPROTO_MOBILITY | 62 => {
                let (Some(&next), Some(&l)) = (h.get(at), h.get(at + 1)) else {
                    break;
                };
                nh = next;
                at += (usize::from(l) + 1) << 3;
            }
            IPPROTO_FRAGMENT => {
                let Some(&next) = h.get(at) else { break };
                nh = next;
                at += 8;
            }
            IPPROTO_ROUTING => {
                let (Some(&len), Some(&ty)) = (h.get(at + 1), h.get(at + 2)) else {
                    break;
                };
                if h.len() < at + 8 || len % 2 == 1 {
                    break;
                }
                match ty {
                    0 | 2 => {
                        for i in 0..usize::from(len / 2) {
                            match h.get(at + 8 + 16 * i..at + 24 + 16 * i) {
                                Some(a) => dst = a,
                                None => break,
                            }
                        }
                    }
                    4 => {
                        if let Some(a) = h.get(at + 8..at + 24) {
                            dst = a;
                        }
                    }
                    _ => {}
                }
                break;
            }
            _ => break,
        }
    }
    dst
}

const IP_OPTION_NAMES: &[(u8, &str)] = &[
    (0, "EOL"),
    (1, "NOP"),
    (68, "timestamp"),
    (130, "security"),
    (7, "RR"),
    (137, "SSRR"),
    (131, "LSRR"),
    (148, "RA"),
    (82, "traceroute"),
];

impl Ctx<'_> {
    fn ipv4_addr_pair(&mut self, h: &[u8]) {
        self.out.ipv4(&h[12..16]);
        self.out.s(" > ");
        self.out.ipv4(&h[16..20]);
    }

    /// An IPv4 packet of `length` bytes (by the layer below) whose captured bytes are `bp`.
    pub(crate) fn ip(&mut self, bp: &[u8], length: usize) -> R<()> {
        self.proto = "ip";
        let vhl = u8_at(bp, 0)?;
        if vhl >> 4 != 4 {
            if vhl >> 4 == 6 {
                self.out.s("IP6, wrong link-layer encapsulation");
            } else {
                self.out.s("IP");
                self.out.dec(u64::from(vhl >> 4));
            }
            self.invalid();
            return Ok(());
        }
        if !self.e() {
            self.out.s("IP ");
        }
        if bp.len() < 20 {
            self.trunc_mark();
            return Ok(());
        }
        if length < 20 {
            self.out.s("truncated-ip ");
            self.out.dec(length as u64);
            return Ok(());
        }
        let hlen = usize::from(vhl & 0xf) * 4;
        if hlen < 20 {
            self.out.s("bad-hlen ");
            self.out.dec(hlen as u64);
            return Ok(());
        }
        let mut len = usize::from(be16(bp, 2)?);
        if length < len {
            self.out.s("truncated-ip - ");
            self.out.dec((len - length) as u64);
            self.out.s(" bytes missing! ");
        }
        if len < hlen {
            self.out.s("bad-len ");
            self.out.dec(len as u64);
            return Ok(());
        }
        let ip = cap(bp, len);
        len -= hlen;
        let off = be16(ip, 6)?;
        let proto = ip[9];
        if self.v() > 0 {
            let tos = ip[1];
            self.out.s("(tos 0x");
            self.out.hex(u64::from(tos));
            match tos & 3 {
                1 => self.out.s(",ECT(1)"),
                2 => self.out.s(",ECT(0)"),
                3 => self.out.s(",CE"),
                _ => {}
            }
            let ttl = ip[8];
            if ttl >= 1 {
                self.out.s(", ttl ");
                self.out.dec(u64::from(ttl));
            }
            self.out.s(", id ");
            self.out.dec(u64::from(be16(ip, 4)?));
            self.out.s(", offset ");
            self.out.dec(u64::from(off & IP_OFFMASK) * 8);
            self.out.s(", flags [");
            bits(
                self.out,
                &[
                    (u32::from(IP_MF), "+"),
                    (u32::from(IP_DF), "DF"),
                    (u32::from(IP_RES), "rsvd"),
                ],
                u32::from(off & (IP_RES | IP_DF | IP_MF)),
                ", ",
                "none",
            );
            self.out.s("], proto ");
            self.out.s(ipproto_name(proto));
            self.out.s(" (");
            self.out.dec(u64::from(proto));
            self.out.s("), length ");
            self.out.dec(u64::from(be16(ip, 2)?));
            let mut truncated = false;
            if hlen > 20 {
                self.out.s(", options (");
                if self.ip_options(&ip[20..], hlen - 20)? {
                    self.out.s(" [truncated-option]");
                    truncated = true;
                }
                self.out.c(b')');
            }
            if hlen <= ip.len() {
                let sum = cksum(&ip[..hlen]);
                if sum != 0 {
                    let field = be16(ip, 10)?;
                    self.out.s(", bad cksum ");
                    self.out.hex(u64::from(field));
                    self.out.s(" (->");
                    self.out.hex(u64::from(cksum_shouldbe(field, sum)));
                    self.out.s(")!");
                }
            }
            self.out.s(")\n    ");
            if truncated {
                self.ipv4_addr_pair(ip);
                self.out.s(": ");
                self.trunc_mark();
                return Ok(());
            }
        }
        if off & IP_OFFMASK == 0 {
            if !matches!(
                proto,
                IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_DCCP
            ) {
                self.ipv4_addr_pair(ip);
                self.out.s(": ");
            }
            if ip.len() < hlen {
                self.out.s(" [remaining caplen(");
                self.out.dec(ip.len() as u64);
                self.out.s(") < header length(");
                self.out.dec(hlen as u64);
                self.out.s(")]");
                return Err(Trunc);
            }
            let iph = IpHdr {
                v6: false,
                hdr: ip,
                first_proto: proto,
            };
            self.demux(&ip[hlen..], len, iph, off & IP_MF != 0, proto)?;
        } else {
            // A later fragment: no upper-layer header to print.
            self.ipv4_addr_pair(ip);
            self.out.s(": ip-proto-");
            self.out.dec(u64::from(proto));
        }
        Ok(())
    }

    /// IPv4 options; `Ok(true)` when cut short (tcpdump's `ip_optprint` returning -1).
    fn ip_options(&mut self, mut cp: &[u8], mut length: usize) -> R<bool> {
        let mut sep = "";
        while length > 0 {
            self.out.s(sep);
            sep = ",";
            let code = u8_at(cp, 0)?;
            if let Some((_, n)) = IP_OPTION_NAMES.iter().find(|(c, _)| *c == code) {
                self.out.s(n);
            } else {
                self.out.s("unknown ");
                self.out.dec(u64::from(code));
            }
            let option_len = if code <= 1 {
                1
            } else {
                let l = usize::from(u8_at(cp, 1)?);
                if l < 2 {
                    self.out.s(" [bad length ");
                    self.out.dec(l as u64);
                    self.out.c(b']');
                    return Ok(false);
                }
                l
            };
            if option_len > length {
                self.out.s(" [bad length ");
                self.out.dec(option_len as u64);
                self.out.c(b']');
                return Ok(false);
            }
            if cp.len() < option_len {
                return Ok(true);
            }
            let opt = &cp[..option_len];
            match code {
                0 => return Ok(false),
                68 if self.ip_timestamp(opt, option_len) => return Ok(true),
                7 | 137 | 131 if self.ip_route(opt, option_len) => return Ok(true),
                148 => {
                    if option_len < 4 {
                        self.out.s(" [bad length ");
                        self.out.dec(option_len as u64);
                        self.out.c(b']');
                    } else {
                        let v = be16(opt, 2)?;
                        if v != 0 {
                            self.out.s(" value ");
                            self.out.dec(u64::from(v));
                        }
                    }
                }
                _ => {}
            }
            cp = &cp[option_len..];
            length -= option_len;
        }
        Ok(false)
    }

    /// A record route or source route option; true when truncated.
    fn ip_route(&mut self, cp: &[u8], length: usize) -> bool {
        if length < 3 {
            self.out.s(" [bad length ");
            self.out.dec(length as u64);
            self.out.c(b']');
            return false;
        }
        if (length + 1) & 3 != 0 {
            self.out.s(" [bad length ");
            self.out.dec(length as u64);
            self.out.c(b']');
        }
        let ptr = usize::from(cp[2]).wrapping_sub(1);
        if ptr < 3 || (ptr + 1) & 3 != 0 || ptr > length + 1 {
            self.out.s(" [bad ptr ");
            self.out.dec(u64::from(cp[2]));
            self.out.c(b']');
        }
        let mut len = 3;
        while len < length {
            let Some(a) = cp.get(len..len + 4) else {
                return true;
            };
            self.out.c(b' ');
            self.out.ipv4(a);
            if ptr > len {
                self.out.c(b',');
            }
            len += 4;
        }
        false
    }

    /// The timestamp option; true when truncated.
    fn ip_timestamp(&mut self, cp: &[u8], length: usize) -> bool {
        if length < 4 {
            self.out.s("[bad length ");
            self.out.dec(length as u64);
            self.out.c(b']');
            return false;
        }
        self.out.s(" TS{");
        let flags = cp[3];
        let hoplen = if flags & 0xf == 0 { 4 } else { 8 };
        if (length - 4) & (hoplen - 1) != 0 {
            self.out.s("[bad length ");
            self.out.dec(length as u64);
            self.out.c(b']');
        }
        let ptr = usize::from(cp[2]).wrapping_sub(1);
        let mut len = 0;
        if ptr < 4 || (ptr.wrapping_sub(4)) & (hoplen - 1) != 0 || ptr > length + 1 {
            self.out.s("[bad ptr ");
            self.out.dec(u64::from(cp[2]));
            self.out.c(b']');
        }
        let known = match flags & 0xf {
            0 => Some("TSONLY"),
            1 => Some("TS+ADDR"),
            3 => Some("PRESPEC"),
            _ => None,
        };
        if let Some(k) = known {
            self.out.s(k);
            let mut kind = " ";
            len = 4;
            while len < length {
                if ptr == len {
                    kind = " ^ ";
                }
                let Some(hop) = cp.get(len..len + hoplen) else {
                    return true;
                };
                self.out.s(kind);
                let t = u32::from_be_bytes([
                    hop[hoplen - 4],
                    hop[hoplen - 3],
                    hop[hoplen - 2],
                    hop[hoplen - 1],
                ]);
                self.out.dec(u64::from(t));
                self.out.c(b'@');
                if hoplen == 8 {
                    self.out.ipv4(&hop[..4]);
                }
                kind = " ";
                len += hoplen;
            }
        } else {
            self.out.s("[bad ts type ");
            self.out.dec(u64::from(flags & 0xf));
            self.out.c(b']');
        }
        if ptr == len {
            self.out.s(" ^ ");
        }
        if flags >> 4 != 0 {
            self.out.s(" [");
            self.out.dec(u64::from(flags >> 4));
            self.out.s(" hops not recorded]} ");
        } else {
            self.out.c(b'}');
        }
        false
    }

    /// An IPv6 packet of `length` bytes whose captured bytes are `bp`.
    pub(crate) fn ip6(&mut self, bp: &[u8], length: usize) -> R<()> {
        self.proto = "ip6";
        if bp.len() < 40 {
            self.trunc_mark();
            return Ok(());
        }
        if length < 40 {
            self.out.s("truncated-ip6 ");
            self.out.dec(length as u64);
            return Ok(());
        }
        if !self.e() {
            self.out.s("IP6 ");
        }
        if bp[0] >> 4 != 6 {
            self.out.s("version error: ");
            self.out.dec(u64::from(bp[0] >> 4));
            self.out.s(" != 6");
            return Ok(());
        }
        let payload_len = usize::from(be16(bp, 4)?);
        let mut len = if payload_len != 0 {
            let len = payload_len + 40;
            if length < len {
                self.out.s("truncated-ip6 - ");
                self.out.dec((len - length) as u64);
                self.out.s(" bytes missing!");
            }
            len
        } else {
            length + 40
        };
        let mut nh = bp[6];
        if self.v() > 0 {
            let flow = be32(bp, 0)?;
            self.out.c(b'(');
            if flow & 0x0ff0_0000 != 0 {
                self.out.s("class 0x");
                self.out.hex_w(u64::from((flow & 0x0ff0_0000) >> 20), 2);
                self.out.s(", ");
            }
            if flow & 0x000f_ffff != 0 {
                self.out.s("flowlabel 0x");
                self.out.hex_w(u64::from(flow & 0x000f_ffff), 5);
                self.out.s(", ");
            }
            self.out.s("hlim ");
            self.out.dec(u64::from(bp[7]));
            self.out.s(", next-header ");
            self.out.s(ipproto_name(nh));
            self.out.s(" (");
            self.out.dec(u64::from(nh));
            self.out.s(") payload length: ");
            self.out.dec(payload_len as u64);
            self.out.s(") ");
        }
        let ip6 = cap(bp, len);
        let iph = IpHdr {
            v6: true,
            hdr: ip6,
            first_proto: nh,
        };
        let mut cp = 0usize;
        let mut advance = 40usize;
        let mut found_ext = false;
        let mut found_hbh = false;
        let mut fragmented = false;
        let mut first = true;
        let mut payload_len = payload_len;
        while cp < ip6.len() && advance > 0 {
            if len < advance {
                self.trunc_mark();
                return Ok(());
            }
            cp += advance;
            len -= advance;
            if cp == 40 && !matches!(nh, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_DCCP | IPPROTO_SCTP) {
                self.out.ipv6(&ip6[8..24]);
                self.out.s(" > ");
                self.out.ipv6(&ip6[24..40]);
                self.out.s(": ");
            }
            let here = &ip6[cp.min(ip6.len())..];
            match nh {
                IPPROTO_HOPOPTS => {
                    if found_hbh {
                        self.out
                            .s("[The Hop-by-Hop Options header was already found]");
                        self.invalid();
                        return Ok(());
                    }
                    if !first {
                        self.out
                            .s("[The Hop-by-Hop Options header don't follow the IPv6 header]");
                        self.invalid();
                        return Ok(());
                    }
                    let (adv, found_jumbo) = self.hbhopt(here, &mut payload_len)?;
                    if payload_len == 0 && !found_jumbo {
                        self.out
                            .s("[No valid Jumbo Payload Hop-by-Hop option found]");
                        self.invalid();
                        return Ok(());
                    }
                    let Some(adv) = adv else { return Ok(()) };
                    advance = adv;
                    found_ext = true;
                    found_hbh = true;
                    nh = u8_at(here, 0)?;
                }
                IPPROTO_DSTOPTS => {
                    let Some(adv) = self.dstopt(here)? else {
                        return Ok(());
                    };
                    advance = adv;
                    found_ext = true;
                    nh = u8_at(here, 0)?;
                }
                IPPROTO_FRAGMENT => {
                    let Some(adv) = self.frag6(here, ip6, cp)? else {
                        return Ok(());
                    };
                    if ip6.len() <= cp + adv {
                        return Ok(());
                    }
                    advance = adv;
                    found_ext = true;
                    nh = u8_at(here, 0)?;
                    fragmented = true;
                }
                IPPROTO_ROUTING => {
                    if here.is_empty() {
                        self.trunc_mark();
                        return Ok(());
                    }
                    let Some(adv) = self.rt6(here)? else {
                        return Ok(());
                    };
                    advance = adv;
                    found_ext = true;
                    nh = u8_at(here, 0)?;
                }
                _ => {
                    let mut upper = here;
                    if payload_len == 0 {
                        // A jumbogram's length is in its hop-by-hop option; without one the
                        // packet ends with the header.
                        if found_ext {
                            self.trunc_mark();
                            return Ok(());
                        }
                        len = 0;
                        upper = &here[..0];
                    }
                    return self.demux(upper, len, iph, fragmented, nh);
                }
            }
            first = false;
            self.proto = "ip6";
        }
        Ok(())
    }

    /// A hop-by-hop options header: (its length, or `None` when it ended the packet's
    /// printing; whether a jumbo payload option was found).
    fn hbhopt(&mut self, dp: &[u8], payload_len: &mut usize) -> R<(Option<usize>, bool)> {
        self.proto = "hbhopt";
        let hbhlen = (usize::from(u8_at(dp, 1)?) + 1) << 3;
        if dp.len() < hbhlen {
            self.trunc_mark();
            return Ok((None, false));
        }
        self.out.s("HBH ");
        let mut found_jumbo = false;
        if !self.ip6_opts(&dp[2..hbhlen], Some(payload_len), &mut found_jumbo)? {
            self.trunc_mark();
            return Ok((None, found_jumbo));
        }
        Ok((Some(hbhlen), found_jumbo))
    }

    fn dstopt(&mut self, dp: &[u8]) -> R<Option<usize>> {
        self.proto = "dstopt";
        let len = (usize::from(u8_at(dp, 1)?) + 1) << 3;
        if dp.len() < len {
            self.trunc_mark();
            return Ok(None);
        }
        self.out.s("DSTOPT ");
        if self.v() > 0 {
            let mut jumbo = false;
            if !self.ip6_opts(&dp[2..len], None, &mut jumbo)? {
                self.trunc_mark();
                return Ok(None);
            }
        }
        Ok(Some(len))
    }

    /// Hop-by-hop or destination options; false when they run past their header.
    fn ip6_opts(
        &mut self,
        bp: &[u8],
        payload_len: Option<&mut usize>,
        found: &mut bool,
    ) -> R<bool> {
        let len = bp.len();
        let v = self.v() > 0;
        let payload_zero = payload_len.as_ref().map(|p| **p == 0);
        let mut i = 0;
        while i < len {
            let t = bp[i];
            let optlen = if t == 0 {
                1
            } else if i + 1 < len {
                usize::from(bp[i + 1]) + 2
            } else {
                return Ok(false);
            };
            if i + optlen > len {
                return Ok(false);
            }
            match t {
                0 => {
                    if v {
                        self.out.s("(pad1)");
                    }
                }
                1 => {
                    if len - i < 2 {
                        self.out.s("(padn: trunc)");
                        return Ok(false);
                    }
                    if v {
                        self.out.s("(padn)");
                    }
                }
                5 => {
                    if len - i < 4 {
                        self.out.s("(rtalert: trunc)");
                        return Ok(false);
                    }
                    if bp[i + 1] != 2 {
                        self.out.s("(rtalert: invalid len ");
                        self.out.dec(u64::from(bp[i + 1]));
                        self.out.c(b')');
                        return Ok(false);
                    }
                    if v {
                        self.out.s("(rtalert: 0x");
                        self.out.hex_w(u64::from(be16(bp, i + 2)?), 4);
                        self.out.s(") ");
                    }
                }
                0xc2 => {
                    if len - i < 6 {
                        self.out.s("(jumbo: trunc)");
                        return Ok(false);
                    }
                    if bp[i + 1] != 4 {
                        self.out.s("(jumbo: invalid len ");
                        self.out.dec(u64::from(bp[i + 1]));
                        self.out.c(b')');
                        return Ok(false);
                    }
                    let jumbolen = be32(bp, i + 2)?;
                    if *found {
                        if v {
                            self.out.s("(jumbo: ");
                            self.out.dec(u64::from(jumbolen));
                            self.out.s(" - already seen) ");
                        }
                    } else {
                        *found = true;
                        let what = match payload_zero {
                            None => " - not a hop-by-hop option",
                            Some(false) => " - payload len != 0",
                            Some(true) if jumbolen < 65_536 => " - < 65536",
                            Some(true) => "",
                        };
                        if v {
                            self.out.s("(jumbo: ");
                            self.out.dec(u64::from(jumbolen));
                            self.out.s(what);
                            self.out.s(") ");
                        }
                    }
                }
                _ => {
                    if len - i < 2 {
                        self.out.s("(type ");
                        self.out.dec(u64::from(t));
                        self.out.s(": trunc)");
                        return Ok(false);
                    }
                    if v {
                        self.out.s("(opt_type 0x");
                        self.out.hex_w(u64::from(t), 2);
                        self.out.s(": len=");
                        self.out.dec(u64::from(bp[i + 1]));
                        self.out.c(b')');
                    }
                }
            }
            i += optlen;
        }
        if v {
            self.out.c(b' ');
        }
        let _ = payload_len;
        Ok(true)
    }

    /// A fragment header at offset `at` of the IPv6 packet `ip6`: its length, or `None` for a
    /// later fragment (nothing more to print).
    fn frag6(&mut self, dp: &[u8], ip6: &[u8], at: usize) -> R<Option<usize>> {
        self.proto = "frag6";
        let ident = if self.v() > 0 { be32(dp, 4)? } else { 0 };
        let offlg = be16(dp, 2)?;
        let plen = usize::from(be16(ip6, 4)?);
        let rest = (40 + plen).wrapping_sub(at).wrapping_sub(8);
        if self.v() > 0 {
            self.out.s("frag (0x");
            self.out.hex_w(u64::from(ident), 8);
            self.out.c(b':');
        } else {
            self.out.s("frag (");
        }
        self.out.dec(u64::from(offlg & 0xfff8));
        self.out.c(b'|');
        // tcpdump prints this as a size_t, so a negative value wraps to 64 bits.
        self.out.dec(rest as u64);
        self.out.c(b')');
        if offlg & 0xfff8 != 0 {
            return Ok(None);
        }
        self.out.c(b' ');
        Ok(Some(8))
    }

    fn rt6(&mut self, dp: &[u8]) -> R<Option<usize>> {
        self.proto = "rt6";
        self.out.s("RT6");
        let len = u8_at(dp, 1)?;
        self.out.s(" (len=");
        self.out.dec(u64::from(len));
        let ty = u8_at(dp, 2)?;
        self.out.s(", type=");
        self.out.dec(u64::from(ty));
        if ty == 0 {
            self.out.s(" [Deprecated]");
        }
        let segleft = u8_at(dp, 3)?;
        self.out.s(", segleft=");
        self.out.dec(u64::from(segleft));
        match ty {
            0 | 2 => {
                let rsv = be32(dp, 4)?;
                if rsv != 0 || self.v() > 0 {
                    self.out.s(", rsv=0x");
                    self.out.hex(u64::from(rsv));
                }
                if len % 2 == 1 {
                    self.out.s(" (invalid length ");
                    self.out.dec(u64::from(len));
                    self.out.c(b')');
                    self.invalid();
                    return Ok(None);
                }
                for i in 0..usize::from(len / 2) {
                    let a = bytes(dp, 8 + 16 * i, 16)?;
                    self.out.s(", [");
                    self.out.dec(i as u64);
                    self.out.c(b']');
                    self.out.ipv6(a);
                }
            }
            4 => {
                let last = u8_at(dp, 4)?;
                self.out.s(", last-entry=");
                self.out.dec(u64::from(last));
                let flags = u8_at(dp, 5)?;
                if flags != 0 || self.v() > 0 {
                    self.out.s(", flags=0x");
                    self.out.hex(u64::from(flags));
                }
                let tag = be16(dp, 6)?;
                self.out.s(", tag=");
                self.out.hex(u64::from(tag));
                if len % 2 == 1 {
                    self.out.s(" (invalid length ");
                    self.out.dec(u64::from(len));
                    self.out.c(b')');
                    self.invalid();
                    return Ok(None);
                }
                for i in 0..usize::from(len / 2) {
                    let a = bytes(dp, 8 + 16 * i, 16)?;
                    self.out.s(", [");
                    self.out.dec(i as u64);
                    self.out.c(b']');
                    self.out.ipv6(a);
                }
            }
            _ => {
                self.out.s(" (unknown type)");
                self.invalid();
                return Ok(None);
            }
        }
        self.out.s(") ");
        Ok(Some((usize::from(len) + 1) << 3))
    }

    /// What an IP header carries (`ip_demux_print`): `bp` the captured bytes, `length` the
    /// payload's length by the IP header.
    pub(crate) fn demux(
        &mut self,
        bp: &[u8],
        length: usize,
        iph: IpHdr<'_>,
        fragmented: bool,
        nh: u8,
    ) -> R<()> {
        match nh {
            IPPROTO_TCP => self.tcp(bp, length, iph, fragmented),
            IPPROTO_UDP => self.udp(bp, length, iph, fragmented),
            IPPROTO_ICMP if !iph.v6 => self.icmp(bp, length, iph, fragmented),
            IPPROTO_ICMPV6 if iph.v6 => self.icmp6(bp, length, iph, fragmented),
            IPPROTO_ICMP | IPPROTO_ICMPV6 => {
                self.out.c(b'[');
                self.out.s(ipproto_name(nh));
                self.out.s(if nh == IPPROTO_ICMP {
                    " requires IPv4]"
                } else {
                    " requires IPv6]"
                });
                self.invalid();
                Ok(())
            }
            IPPROTO_IPV4 => self.ip(bp, length),
            IPPROTO_IPV6 => self.ip6(bp, length),
            IPPROTO_GRE => self.gre(bp, length),
            IPPROTO_ND => {
                self.out.s(" nd ");
                self.out.dec(length as u64);
                Ok(())
            }
            IPPROTO_NONE => {
                self.out.s("no next header");
                Ok(())
            }
            IPPROTO_ETHERNET if iph.v6 => self.ether(bp, length).map(|_| ()),
            IPPROTO_ETHERNET => {
                self.out.s("[Ethernet requires IPv6]");
                self.invalid();
                Ok(())
            }
            _ => {
                if matches!(nh, IPPROTO_SCTP | IPPROTO_DCCP) {
                    // tcpdump's SCTP and DCCP printers print the addresses themselves.
                    if iph.v6 {
                        self.out.ipv6(iph.src());
                        self.out.s(" > ");
                        self.out.ipv6(iph.dst());
                    } else {
                        self.out.ipv4(iph.src());
                        self.out.s(" > ");
                        self.out.ipv4(iph.dst());
                    }
                    self.out.s(": ");
                }
                self.out.s(" ip-proto-");
                self.out.dec(u64::from(nh));
                self.out.c(b' ');
                self.out.dec(length as u64);
                Ok(())
            }
        }
    }
}
