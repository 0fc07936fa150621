//! ICMP and ICMPv6, as tcpdump's `print-icmp.c` and `print-icmp6.c` lay them out.

use super::{
    Ctx, R, Trunc, be16, be32, bits, bytes, cap, dump,
    emit::Emit,
    ip::{
        IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ICMPV6, IPPROTO_ROUTING,
        IPPROTO_TCP, IPPROTO_UDP, IpHdr, cksum, cksum_shouldbe,
    },
    u8_at,
};

const ICMP_ECHOREPLY: u8 = 0;
const ICMP_UNREACH: u8 = 3;
const ICMP_SOURCEQUENCH: u8 = 4;
const ICMP_REDIRECT: u8 = 5;
const ICMP_ECHO: u8 = 8;
const ICMP_ROUTERADVERT: u8 = 9;
const ICMP_TIMXCEED: u8 = 11;
const ICMP_PARAMPROB: u8 = 12;
const ICMP_TSTAMP: u8 = 13;
const ICMP_TSTAMPREPLY: u8 = 14;
const ICMP_MASKREPLY: u8 = 18;

const ICMP_NAMES: &[(u8, &str)] = &[
    (0, "echo reply"),
    (4, "source quench"),
    (8, "echo request"),
    (10, "router solicitation"),
    (13, "time stamp request"),
    (14, "time stamp reply"),
    (15, "information request"),
    (16, "information reply"),
    (17, "address mask request"),
];

const ICMP6_NAMES: &[(u8, &str)] = &[
    (1, "destination unreachable"),
    (2, "packet too big"),
    (3, "time exceeded in-transit"),
    (4, "parameter problem"),
    (128, "echo request"),
    (129, "echo reply"),
    (130, "multicast listener query"),
    (131, "multicast listener report"),
    (132, "multicast listener done"),
    (133, "router solicitation"),
    (134, "router advertisement"),
    (135, "neighbor solicitation"),
    (136, "neighbor advertisement"),
    (137, "redirect"),
    (138, "router renumbering"),
    (141, "inverse neighbor solicitation"),
    (142, "inverse neighbor advertisement"),
    (143, "multicast listener report v2"),
    (144, "ha discovery request"),
    (145, "ha discovery reply"),
    (146, "mobile router solicitation"),
    (147, "mobile router advertisement"),
    (139, "who-are-you request"),
    (140, "who-are-you reply"),
    (201, "mtrace message"),
    (200, "mtrace response"),
    (155, "RPL"),
];

const UNREACH6_NAMES: &[(u8, &str)] = &[
    (0, "unreachable route"),
    (1, " unreachable prohibited"),
    (2, "beyond scope"),
    (3, "unreachable address"),
    (4, "unreachable port"),
];

const ND_OPT_NAMES: &[(u8, &str)] = &[
    (1, "source link-address"),
    (2, "destination link-address"),
    (3, "prefix info"),
    (4, "redirected header"),
    (5, "mtu"),
    (25, "rdnss"),
    (31, "dnssl"),
    (7, "advertisement interval"),
    (8, "homeagent information"),
    (24, "route info"),
];

fn name<'t>(table: &[(u8, &'t str)], v: u8) -> Option<&'t str> {
    table.iter().find(|(k, _)| *k == v).map(|(_, n)| *n)
}

/// Milliseconds since midnight UTC as `HH:MM:SS.mmm`.
fn tstamp(out: &mut Vec<u8>, t: u32) {
    let (ms, sec) = (t % 1000, t / 1000);
    let text = format!(
        "{:02}:{:02}:{:02}.{ms:03}",
        sec / 3600,
        sec / 60 % 60,
        sec % 60
    );
    out.s(&text);
}

fn lifetime(out: &mut Vec<u8>, v: u32) {
    if v == u32::MAX {
        out.s("infinity");
    } else {
        out.dec(u64::from(v));
        out.c(b's');
    }
}

fn rtpref(v: u8) -> &'static str {
    ["medium", "high", "rsv", "low"][usize::from((v & 0x18) >> 3)]
}

/// How building an ICMP description ended early.
enum Cut {
    /// A bounds check of the printer itself (tcpdump's `goto trunc`): the marker, and the
    /// packet's printing goes on.
    Local,
    /// A field read past the capture (tcpdump's longjmp).
    Far,
}

impl From<Trunc> for Cut {
    fn from(_: Trunc) -> Self {
        Cut::Far
    }
}

impl Ctx<'_> {
    /// An ICMP message: `bp` its captured bytes, `plen` its length by the IP header.
    pub(crate) fn icmp(
        &mut self,
        bp: &[u8],
        plen: usize,
        _iph: IpHdr<'_>,
        fragmented: bool,
    ) -> R<()> {
        self.proto = "icmp";
        let mark = self.out.len();
        match self.icmp_text(bp, plen) {
            Ok(ty) => {
                if self.v() > 0 && !fragmented && bp.len() >= plen {
                    let sum = cksum(&bp[..plen]);
                    if sum != 0 {
                        let field = be16(bp, 2)?;
                        self.out.s(" (wrong icmp cksum ");
                        self.out.hex(u64::from(field));
                        self.out.s(" (->");
                        self.out.hex(u64::from(cksum_shouldbe(field, sum)));
                        self.out.s(")!)");
                    }
                }
                let errtype = matches!(
                    ty,
                    ICMP_UNREACH
                        | ICMP_SOURCEQUENCH
                        | ICMP_REDIRECT
                        | ICMP_TIMXCEED
                        | ICMP_PARAMPROB
                );
                if self.v() > 0 && errtype {
                    let inner = bp.get(8..).unwrap_or(&[]);
                    self.out.s("\n\t");
                    let ip_len = usize::from(be16(inner, 2)?);
                    self.ip(cap(inner, ip_len), ip_len)?;
                    self.proto = "icmp";
                }
                Ok(())
            }
            Err(cut) => {
                self.out.truncate(mark);
                match cut {
                    Cut::Local => {
                        self.trunc_mark();
                        Ok(())
                    }
                    Cut::Far => Err(Trunc),
                }
            }
        }
    }

    /// `ICMP <description>, length N`; returns the type.
    fn icmp_text(&mut self, dp: &[u8], plen: usize) -> Result<u8, Cut> {
        let ty = u8_at(dp, 0)?;
        let code = u8_at(dp, 1)?;
        // A cut while building the description leaves nothing of it (the caller truncates).
        self.out.s("ICMP ");
        match ty {
            ICMP_ECHO | ICMP_ECHOREPLY => {
                self.out.s(if ty == ICMP_ECHO {
                    "echo request"
                } else {
                    "echo reply"
                });
                self.out.s(", id ");
                self.out.dec(u64::from(be16(dp, 4)?));
                self.out.s(", seq ");
                self.out.dec(u64::from(be16(dp, 6)?));
            }
            ICMP_UNREACH => {
                let host_net = |cx: &mut Self, what: &str, tail: &str| -> R<()> {
                    cx.out.s(what);
                    cx.out.ipv4(bytes(dp, 24, 4)?);
                    cx.out.s(tail);
                    Ok(())
                };
                match code {
                    0 => host_net(self, "net ", " unreachable")?,
                    1 => host_net(self, "host ", " unreachable")?,
                    2 => {
                        self.out.ipv4(bytes(dp, 24, 4)?);
                        self.out.s(" protocol ");
                        self.out.dec(u64::from(u8_at(dp, 17)?));
                        self.out.s(" unreachable");
                    }
                    3 => {
                        if dp.len() < 18 {
                            return Err(Cut::Local);
                        }
                        let hlen = usize::from(u8_at(dp, 8)? & 0xf) * 4;
                        let dport = be16(dp, 8 + hlen + 2)?;
                        let proto = u8_at(dp, 17)?;
                        self.out.ipv4(bytes(dp, 24, 4)?);
                        match proto {
                            IPPROTO_TCP => self.out.s(" tcp port "),
                            IPPROTO_UDP => self.out.s(" udp port "),
                            p => {
                                self.out.s(" protocol ");
                                self.out.dec(u64::from(p));
                                self.out.s(" port ");
                            }
                        }
                        self.out.dec(u64::from(dport));
                        self.out.s(" unreachable");
                    }
                    4 => {
                        let mtu = be16(dp, 6)?;
                        self.out.ipv4(bytes(dp, 24, 4)?);
                        self.out.s(" unreachable - need to frag");
                        if mtu != 0 {
                            self.out.s(" (mtu ");
                            self.out.dec(u64::from(mtu));
                            self.out.c(b')');
                        }
                    }
                    5 => host_net(self, "", " unreachable - source route failed")?,
                    6 => host_net(self, "net ", " unreachable - unknown")?,
                    7 => host_net(self, "host ", " unreachable - unknown")?,
                    8 => host_net(self, "", " unreachable - source host isolated")?,
                    9 => host_net(self, "net ", " unreachable - admin prohibited")?,
                    10 => host_net(self, "host ", " unreachable - admin prohibited")?,
                    11 => host_net(self, "net ", " unreachable - tos prohibited")?,
                    12 => host_net(self, "host ", " unreachable - tos prohibited")?,
                    13 => host_net(self, "host ", " unreachable - admin prohibited filter")?,
                    14 => {
                        host_net(self, "host ", " unreachable - host precedence violation")?;
                    }
                    15 => host_net(self, "host ", " unreachable - precedence cutoff")?,
                    _ => {
                        self.out.ipv4(bytes(dp, 24, 4)?);
                        self.out.s(" unreachable - #");
                        self.out.dec(u64::from(code));
                    }
                }
            }
            ICMP_REDIRECT => {
                let dst = bytes(dp, 24, 4)?;
                let gw = bytes(dp, 4, 4)?;
                let (word, kind) = match code {
                    0 => ("redirect ", " to net "),
                    1 => ("redirect ", " to host "),
                    2 => ("redirect-tos ", " to net "),
                    3 => ("redirect-tos ", " to host "),
                    _ => ("", " to "),
                };
                if word.is_empty() {
                    self.out.s("redirect-#");
                    self.out.dec(u64::from(code));
                    self.out.c(b' ');
                } else {
                    self.out.s(word);
                }
                self.out.ipv4(dst);
                self.out.s(kind);
                self.out.ipv4(gw);
            }
            ICMP_ROUTERADVERT => {
                self.out.s("router advertisement");
                if dp.len() < 8 {
                    return Err(Cut::Local);
                }
                self.out.s(" lifetime ");
                let life = u32::from(be16(dp, 6)?);
                if life < 60 {
                    self.out.dec(u64::from(life));
                } else if life < 3600 {
                    self.out.dec(u64::from(life / 60));
                    self.out.c(b':');
                    let s = format!("{:02}", life % 60);
                    self.out.s(&s);
                } else {
                    let s = format!("{}:{:02}:{:02}", life / 3600, life % 3600 / 60, life % 60);
                    self.out.s(&s);
                }
                let num = u8_at(dp, 4)?;
                self.out.c(b' ');
                self.out.dec(u64::from(num));
                self.out.c(b':');
                let size = u8_at(dp, 5)?;
                if size == 2 {
                    for i in 0..usize::from(num) {
                        let at = 8 + 8 * i;
                        if dp.len() < at + 8 {
                            return Err(Cut::Local);
                        }
                        self.out.s(" {");
                        self.out.ipv4(&dp[at..at + 4]);
                        self.out.c(b' ');
                        self.out.dec(u64::from(be32(dp, at + 4)?));
                        self.out.c(b'}');
                    }
                } else {
                    self.out.s(" [size ");
                    self.out.dec(u64::from(size));
                    self.out.c(b']');
                }
            }
            ICMP_TIMXCEED => {
                if dp.len() < 28 {
                    return Err(Cut::Local);
                }
                match code {
                    0 => self.out.s("time exceeded in-transit"),
                    1 => self.out.s("ip reassembly time exceeded"),
                    _ => {
                        self.out.s("time exceeded-#");
                        self.out.dec(u64::from(code));
                    }
                }
            }
            ICMP_PARAMPROB => {
                if code == 0 {
                    self.out.s("parameter problem - octet ");
                    self.out.dec(u64::from(u8_at(dp, 4)?));
                } else {
                    self.out.s("parameter problem - code ");
                    self.out.dec(u64::from(code));
                }
            }
            ICMP_MASKREPLY => {
                self.out.s("address mask is 0x");
                self.out.hex_w(u64::from(be32(dp, 8)?), 8);
            }
            ICMP_TSTAMP => {
                self.out.s("time stamp query id ");
                self.out.dec(u64::from(be16(dp, 4)?));
                self.out.s(" seq ");
                self.out.dec(u64::from(be16(dp, 6)?));
            }
            ICMP_TSTAMPREPLY => {
                if dp.len() < 20 {
                    return Err(Cut::Local);
                }
                self.out.s("time stamp reply id ");
                self.out.dec(u64::from(be16(dp, 4)?));
                self.out.s(" seq ");
                self.out.dec(u64::from(be16(dp, 6)?));
                self.out.s(": org ");
                tstamp(self.out, be32(dp, 8)?);
                self.out.s(", recv ");
                tstamp(self.out, be32(dp, 12)?);
                self.out.s(", xmit ");
                tstamp(self.out, be32(dp, 16)?);
            }
            _ => {
                if let Some(n) = name(ICMP_NAMES, ty) {
                    self.out.s(n);
                } else {
                    self.out.s("type-#");
                    self.out.dec(u64::from(ty));
                }
            }
        }
        self.out.s(", length ");
        self.out.dec(plen as u64);
        Ok(ty)
    }

    /// An ICMPv6 message: `bp` its captured bytes, `length` its length by the IPv6 header.
    pub(crate) fn icmp6(
        &mut self,
        bp: &[u8],
        length: usize,
        iph: IpHdr<'_>,
        fragmented: bool,
    ) -> R<()> {
        self.proto = "icmp6";
        if length == 0 {
            self.out.s("ICMP6, length 0");
            self.invalid();
            return Ok(());
        }
        if self.v() > 0 && !fragmented && bp.len() >= length {
            let field = be16(bp, 2)?;
            let sum = iph.upper_cksum(IPPROTO_ICMPV6, &bp[..length]);
            if sum == 0 {
                self.out.s("[icmp6 sum ok] ");
            } else {
                self.out.s("[bad icmp6 cksum 0x");
                self.out.hex_w(u64::from(field), 4);
                self.out.s(" -> 0x");
                self.out.hex_w(u64::from(cksum_shouldbe(field, sum)), 4);
                self.out.s("!] ");
            }
        }
        let ty = u8_at(bp, 0)?;
        self.out.s("ICMP6, ");
        if let Some(n) = name(ICMP6_NAMES, ty) {
            self.out.s(n);
        } else {
            self.out.s("unknown icmp6 type (");
            self.out.dec(u64::from(ty));
            self.out.c(b')');
        }
        if self.v() > 0 && matches!(ty, 133 | 134 | 136 | 135 | 137 | 145 | 147) {
            self.length_tail6(length);
        }
        let code = u8_at(bp, 1)?;
        // The offending packet of an error message starts after the 8-byte header.
        let oip = bp.get(8..).unwrap_or(&[]);
        match self.icmp6_body(bp, oip, ty, code, length) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(Cut::Local) => {
                self.trunc_mark();
                return Ok(());
            }
            Err(Cut::Far) => return Err(Trunc),
        }
        if self.v() == 0 {
            self.length_tail6(length);
        }
        Ok(())
    }

    fn length_tail6(&mut self, length: usize) {
        self.out.s(", length ");
        self.out.dec(length as u64);
    }

    /// tcpdump's `print_unknown_data`: the bytes (as far as captured) in hex.
    fn unknown_data(&mut self, b: &[u8], ident: &str, len: usize) {
        dump::hex(self.out, ident, cap(b, len));
    }

    /// The type-specific part; `Ok(false)` when the message's printing is complete.
    fn icmp6_body(
        &mut self,
        dp: &[u8],
        oip: &[u8],
        ty: u8,
        code: u8,
        length: usize,
    ) -> Result<bool, Cut> {
        let v = self.v();
        match ty {
            1 => {
                self.out.s(", ");
                if let Some(n) = name(UNREACH6_NAMES, code) {
                    self.out.s(n);
                } else {
                    self.out.s("unknown unreach code (");
                    self.out.dec(u64::from(code));
                    self.out.c(b')');
                }
                match code {
                    0 | 1 | 3 => {
                        let dst = bytes(oip, 24, 16)?;
                        self.out.c(b' ');
                        self.out.ipv6(dst);
                    }
                    2 => {
                        let (dst, src) = (bytes(oip, 24, 16)?, bytes(oip, 8, 16)?);
                        self.out.c(b' ');
                        self.out.ipv6(dst);
                        self.out.s(", source address ");
                        self.out.ipv6(src);
                    }
                    4 => {
                        let Some((at, prot)) = upper_layer(oip) else {
                            return Err(Cut::Local);
                        };
                        let dport = be16(oip, at + 2)?;
                        let dst = bytes(oip, 24, 16)?;
                        self.out.s(", ");
                        self.out.ipv6(dst);
                        match prot {
                            IPPROTO_TCP => {
                                self.out.s(" tcp port ");
                                self.out.dec(u64::from(dport));
                            }
                            IPPROTO_UDP => {
                                self.out.s(" udp port ");
                                self.out.dec(u64::from(dport));
                            }
                            p => {
                                self.out.s(" protocol ");
                                self.out.dec(u64::from(p));
                                self.out.s(" port ");
                                self.out.dec(u64::from(dport));
                                self.out.s(" unreachable");
                            }
                        }
                    }
                    _ => {
                        if v <= 1 {
                            self.unknown_data(dp, "\n\t", length);
                            return Ok(false);
                        }
                    }
                }
            }
            2 => {
                let mtu = be32(dp, 4)?;
                self.out.s(", mtu ");
                self.out.dec(u64::from(mtu));
            }
            3 => match code {
                0 => {
                    let dst = bytes(oip, 24, 16)?;
                    self.out.s(" for ");
                    self.out.ipv6(dst);
                }
                1 => self.out.s(" (reassembly)"),
                _ => {
                    self.out.s(", unknown code (");
                    self.out.dec(u64::from(code));
                    self.out.c(b')');
                }
            },
            4 => {
                if oip.len() < 40 {
                    return Err(Cut::Local);
                }
                let what = match code {
                    0 => Some(", erroneous - octet "),
                    1 => Some(", next header - octet "),
                    2 => Some(", option - octet "),
                    3 => Some(", incomplete header chain - octet "),
                    _ => None,
                };
                if let Some(w) = what {
                    self.out.s(w);
                    self.out.dec(u64::from(be32(dp, 4)?));
                } else {
                    self.out.s(", code-#");
                    self.out.dec(u64::from(code));
                }
            }
            128 | 129 => {
                let (id, seq) = (be16(dp, 4)?, be16(dp, 6)?);
                self.out.s(", id ");
                self.out.dec(u64::from(id));
                self.out.s(", seq ");
                self.out.dec(u64::from(seq));
            }
            130 => {
                if length == 24 {
                    self.mld6(dp);
                } else if length >= 28 {
                    self.out.s(" v2");
                    self.mldv2_query(dp, length)?;
                } else {
                    self.out.s(" unknown-version (len ");
                    self.out.dec(length as u64);
                    self.out.s(") ");
                }
            }
            131 | 132 => self.mld6(dp),
            133 => {
                if v > 0 && !self.nd_opts(dp, 8, length)? {
                    return Err(Cut::Local);
                }
            }
            134 => {
                if v > 0 {
                    let (hops, flags) = (u8_at(dp, 4)?, u8_at(dp, 5)?);
                    let (life, reach, retrans) = (be16(dp, 6)?, be32(dp, 8)?, be32(dp, 12)?);
                    self.out.s("\n\thop limit ");
                    self.out.dec(u64::from(hops));
                    self.out.s(", Flags [");
                    bits(
                        self.out,
                        &[
                            (0x80, "managed"),
                            (0x40, "other stateful"),
                            (0x20, "home agent"),
                            (0x02, "ipv6 only"),
                        ],
                        u32::from(flags),
                        ", ",
                        "none",
                    );
                    self.out.s("], pref ");
                    self.out.s(rtpref(flags));
                    self.out.s(", router lifetime ");
                    self.out.dec(u64::from(life));
                    self.out.s("s, reachable time ");
                    self.out.dec(u64::from(reach));
                    self.out.s("ms, retrans timer ");
                    self.out.dec(u64::from(retrans));
                    self.out.s("ms");
                    if !self.nd_opts(dp, 16, length)? {
                        return Err(Cut::Local);
                    }
                }
            }
            135 => {
                let target = bytes(dp, 8, 16)?;
                self.out.s(", who has ");
                self.out.ipv6(target);
                if v > 0 && !self.nd_opts(dp, 24, length)? {
                    return Err(Cut::Local);
                }
            }
            136 => {
                let target = bytes(dp, 8, 16)?;
                self.out.s(", tgt is ");
                self.out.ipv6(target);
                if v > 0 {
                    let flags = be32(dp, 4)?;
                    self.out.s(", Flags [");
                    bits(
                        self.out,
                        &[
                            (0x8000_0000, "router"),
                            (0x4000_0000, "solicited"),
                            (0x2000_0000, "override"),
                        ],
                        flags,
                        ", ",
                        "none",
                    );
                    self.out.c(b']');
                    if !self.nd_opts(dp, 24, length)? {
                        return Err(Cut::Local);
                    }
                }
            }
            137 => {
                let dst = bytes(dp, 24, 16)?;
                self.out.s(", ");
                self.out.ipv6(dst);
                let target = bytes(dp, 8, 16)?;
                self.out.s(" to ");
                self.out.ipv6(target);
                if v > 0 && !self.nd_opts(dp, 40, length)? {
                    return Err(Cut::Local);
                }
            }
            141 | 142 => {}
            143 => {
                if length < 8 {
                    self.out.s(" [invalid len ");
                    self.out.dec(length as u64);
                    self.out.c(b']');
                } else {
                    self.mldv2_report(dp, length)?;
                }
            }
            144 | 146 => {
                let id = be16(dp, 4)?;
                self.out.s(", id 0x");
                self.out.hex_w(u64::from(id), 4);
            }
            _ => {
                self.out.s(", length ");
                self.out.dec(length as u64);
                if v <= 1 {
                    self.unknown_data(dp, "\n\t", length);
                }
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn mld6(&mut self, dp: &[u8]) {
        if dp.len() < 24 {
            return;
        }
        self.out.s("max resp delay: ");
        self.out.dec(u64::from(u16::from_be_bytes([dp[4], dp[5]])));
        self.out.s(" addr: ");
        self.out.ipv6(&dp[8..24]);
    }

    fn mldv2_report(&mut self, bp: &[u8], len: usize) -> R<()> {
        let ngroups = usize::from(be16(bp, 6)?);
        self.out.s(", ");
        self.out.dec(ngroups as u64);
        self.out.s(" group record(s)");
        if self.v() > 0 {
            let mut group = 8;
            for _ in 0..ngroups {
                if len < group + 20 {
                    self.out.s(" [invalid number of groups]");
                    return Ok(());
                }
                let gaddr = bytes(bp, group + 4, 16)?;
                self.out.s(" [gaddr ");
                self.out.ipv6(gaddr);
                let t = u8_at(bp, group)?;
                let names = ["is_in", "is_ex", "to_in", "to_ex", "allow", "block"];
                self.out.c(b' ');
                if let Some(n) = names.get(usize::from(t).wrapping_sub(1)) {
                    self.out.s(n);
                } else {
                    self.out.s(" [v2-report-#");
                    self.out.dec(u64::from(t));
                    self.out.c(b']');
                }
                let nsrcs = usize::from(be16(bp, group + 2)?);
                if len < group + 20 + nsrcs * 16 {
                    self.out.s(" [invalid number of sources ");
                    self.out.dec(nsrcs as u64);
                    self.out.c(b']');
                    return Ok(());
                }
                if self.v() == 1 {
                    self.out.s(", ");
                    self.out.dec(nsrcs as u64);
                    self.out.s(" source(s)");
                } else {
                    self.out.s(" {");
                    for j in 0..nsrcs {
                        let src = bytes(bp, group + 20 + j * 16, 16)?;
                        self.out.c(b' ');
                        self.out.ipv6(src);
                    }
                    self.out.s(" }");
                }
                group += 20 + nsrcs * 16;
                self.out.c(b']');
            }
        }
        Ok(())
    }

    fn mldv2_query(&mut self, bp: &[u8], len: usize) -> R<()> {
        if len < 28 {
            self.out.s(" [invalid len ");
            self.out.dec(len as u64);
            self.out.c(b']');
            return Ok(());
        }
        let mrc = u32::from(be16(bp, 4)?);
        let mrt = if mrc < 32_768 {
            mrc
        } else {
            ((mrc & 0x0fff) | 0x1000) << (((mrc & 0x7000) >> 12) + 3)
        };
        if self.v() > 0 {
            self.out.s(" [max resp delay=");
            self.out.dec(u64::from(mrt));
            self.out.c(b']');
        }
        let gaddr = bytes(bp, 8, 16)?;
        self.out.s(" [gaddr ");
        self.out.ipv6(gaddr);
        if self.v() > 0 {
            let b24 = u8_at(bp, 24)?;
            if b24 & 0x08 != 0 {
                self.out.s(" sflag");
            }
            if b24 & 0x07 != 0 {
                self.out.s(" robustness=");
                self.out.dec(u64::from(b24 & 7));
            }
            let b25 = u32::from(u8_at(bp, 25)?);
            let qqi = if b25 < 128 {
                b25
            } else {
                ((b25 & 0x0f) | 0x10) << (((b25 & 0x70) >> 4) + 3)
            };
            self.out.s(" qqi=");
            self.out.dec(u64::from(qqi));
        }
        let nsrcs = usize::from(be16(bp, 26)?);
        if nsrcs > 0 {
            if len < 28 + nsrcs * 16 {
                self.out.s(" [invalid number of sources]");
            } else if self.v() > 1 {
                self.out.s(" {");
                for i in 0..nsrcs {
                    let src = bytes(bp, 28 + i * 16, 16)?;
                    self.out.c(b' ');
                    self.out.ipv6(src);
                }
                self.out.s(" }");
            } else {
                self.out.s(", ");
                self.out.dec(nsrcs as u64);
                self.out.s(" source(s)");
            }
        }
        self.out.c(b']');
        Ok(())
    }

    /// Neighbour discovery options from offset `from` of the message `dp`; false when they
    /// run past the capture (tcpdump's `goto trunc`).
    fn nd_opts(&mut self, dp: &[u8], from: usize, length: usize) -> R<bool> {
        let mut cp = from;
        let mut resid = length as isize - from as isize;
        while cp < dp.len() {
            if dp.len() < cp + 2 {
                return Ok(false);
            }
            if resid <= 0 {
                return Ok(true);
            }
            let t = dp[cp];
            let l = usize::from(dp[cp + 1]);
            if l == 0 || cp + (l << 3) > dp.len() {
                return Ok(false);
            }
            let op = &dp[cp..cp + (l << 3)];
            self.out.s("\n\t  ");
            self.out.s(name(ND_OPT_NAMES, t).unwrap_or("unknown"));
            self.out.s(" option (");
            self.out.dec(u64::from(t));
            self.out.s("), length ");
            self.out.dec((l << 3) as u64);
            self.out.s(" (");
            self.out.dec(l as u64);
            self.out.s("): ");
            match t {
                1 | 2 => self.out.mac(&op[2..]),
                3 => {
                    self.out.ipv6(bytes(op, 16, 16)?);
                    self.out.c(b'/');
                    self.out.dec(u64::from(u8_at(op, 2)?));
                    if l != 4 {
                        self.out.s("badlen");
                    }
                    self.out.s(", Flags [");
                    bits(
                        self.out,
                        &[(0x80, "onlink"), (0x40, "auto"), (0x20, "router")],
                        u32::from(u8_at(op, 3)?),
                        ", ",
                        "none",
                    );
                    self.out.s("], valid time ");
                    lifetime(self.out, be32(op, 4)?);
                    self.out.s(", pref. time ");
                    lifetime(self.out, be32(op, 8)?);
                }
                4 => self.unknown_data(&dp[from..], "\n\t    ", l << 3),
                5 => {
                    self.out.c(b' ');
                    self.out.dec(u64::from(be32(op, 4)?));
                    if l != 1 {
                        self.out.s("bad option length");
                    }
                }
                25 => {
                    self.out.s(" lifetime ");
                    self.out.dec(u64::from(be32(op, 4)?));
                    self.out.s("s,");
                    for i in 0..(l - 1) / 2 {
                        self.out.s(" addr: ");
                        self.out.ipv6(bytes(op, 8 + 16 * i, 16)?);
                    }
                }
                7 => {
                    self.out.c(b' ');
                    self.out.dec(u64::from(be32(op, 4)?));
                    self.out.s("ms");
                }
                8 => {
                    self.out.s(" preference ");
                    self.out.dec(u64::from(be16(op, 4)?));
                    self.out.s(", lifetime ");
                    self.out.dec(u64::from(be16(op, 6)?));
                }
                24 => {
                    if op.len() < 8 {
                        return Ok(false);
                    }
                    let mut prefix = [0u8; 16];
                    match l {
                        1 => {}
                        2 => prefix[..8].copy_from_slice(bytes(op, 8, 8)?),
                        3 => prefix.copy_from_slice(bytes(op, 8, 16)?),
                        _ => return Ok(false),
                    }
                    self.out.c(b' ');
                    self.out.ipv6(&prefix);
                    self.out.c(b'/');
                    self.out.dec(u64::from(u8_at(op, 2)?));
                    self.out.s(", pref=");
                    self.out.s(rtpref(u8_at(op, 3)?));
                    self.out.s(", lifetime=");
                    lifetime(self.out, be32(op, 4)?);
                }
                _ => {
                    // Including DNSSL, whose domain names tap does not decode.
                    if self.v() <= 1 {
                        self.unknown_data(&op[2..], "\n\t  ", (l << 3) - 2);
                        return Ok(true);
                    }
                }
            }
            if self.v() > 1 {
                self.unknown_data(&op[2..], "\n\t    ", (l << 3) - 2);
            }
            cp += l << 3;
            resid -= (l << 3) as isize;
        }
        Ok(true)
    }
}

/// The offset and protocol of the TCP or UDP header in the IPv6 packet `ip6` quoted by an
/// error message, if its ports were captured (tcpdump's `get_upperlayer`).
fn upper_layer(ip6: &[u8]) -> Option<(usize, u8)> {
    let mut nh = *ip6.get(6)?;
    let mut at = 0;
    let mut hlen = 40;
    while at < ip6.len() {
        at += hlen;
        match nh {
            IPPROTO_UDP | IPPROTO_TCP => {
                return (ip6.len() >= at + 4).then_some((at, nh));
            }
            IPPROTO_HOPOPTS | IPPROTO_DSTOPTS | IPPROTO_ROUTING => {
                let l = *ip6.get(at + 1)?;
                nh = ip6[at];
                hlen = (usize::from(l) + 1) << 3;
            }
            IPPROTO_FRAGMENT => {
                let off = u16::from_be_bytes([*ip6.get(at + 2)?, *ip6.get(at + 3)?]);
                if off & 0xfff8 != 0 {
                    return None;
                }
                nh = ip6[at];
                hlen = 8;
            }
            51 => {
                let l = *ip6.get(at + 1)?;
                nh = ip6[at];
                hlen = (usize::from(l) + 2) << 2;
            }
            _ => return None,
        }
    }
    None
}
