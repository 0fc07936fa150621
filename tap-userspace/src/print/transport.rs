//! TCP and UDP, as tcpdump's `print-tcp.c` and `print-udp.c` lay them out (without the
//! application protocols tcpdump decodes by port).

use super::{
    Ctx, R, Trunc, be16, be32, bits,
    emit::Emit,
    flows::{FlowBase, FlowKey},
    ip::{IPPROTO_TCP, IPPROTO_UDP, IpHdr, cksum_shouldbe},
    u8_at,
};

/// TCP ports whose payload tcpdump decodes (telnet, SMTP, whois, BGP, PPTP, Redis, SSH,
/// NetBIOS, SMB, BEEP, OpenFlow, FTP, HTTP, RTSP, DNS, MSDP, RPKI-RTR, LDP, NFS) and tap does
/// not: lines of segments with a payload to or from them differ after `length N`.
pub const APP_PORTS_TCP: &[u16] = &[
    23, 25, 43, 179, 1723, 6379, 22, 139, 445, 10288, 6633, 6653, 21, 80, 8080, 554, 8554, 53, 639,
    323, 646, 2049,
];

/// UDP ports whose payload tcpdump decodes and tap does not (either port, except those only
/// as destination or source noted in [`udp_app`]); VXLAN and GENEVE are decoded by both.
pub const APP_PORTS_UDP: &[u16] = &[
    53, 5353, 525, 69, 67, 68, 520, 654, 500, 4500, 7500, 8500, 161, 162, 123, 88, 750, 1701, 137,
    138, 3456, 2103, 2104, 7000, 7001, 7002, 7003, 7004, 7005, 7006, 7007, 7008, 7009, 521, 546,
    547, 5359, 6696, 6697, 8231, 4567, 496, 1645, 1812, 1646, 1813, 1700, 3799, 1985, 921, 646,
    698, 3503, 49152, 3784, 4784, 6784, 3785, 701, 1589, 6343, 12223, 12222, 5060, 514, 8472, 4342,
    4790, 17754, 6635, 319, 320, 30490, 2049,
];

const VXLAN_PORT: u16 = 4789;
const GENEVE_PORT: u16 = 6081;

/// What tcpdump makes of a UDP payload by its ports, in the order of its `udp_print`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UdpApp {
    /// A protocol tap does not decode.
    Other,
    Vxlan,
    Geneve,
    /// Nothing: `UDP, length N`.
    None,
}

fn atalk_port(p: u16) -> bool {
    p.wrapping_sub(16_512) < 128 || p.wrapping_sub(200) < 128 || p.wrapping_sub(768) < 128
}

/// The application tcpdump's `udp_print` picks for a datagram (`first` is the payload's first
/// three bytes as far as captured, for its AppleTalk test).
pub(crate) fn udp_app(sport: u16, dport: u16, payload: &[u8]) -> UdpApp {
    let either = |p: u16| sport == p || dport == p;
    let before_vxlan: &[u16] = &[
        53, 5353, 525, 69, 68, 67, 520, 654, 500, 4500, 7500, 8500, 161, 162, 123, 88, 750, 1701,
        137, 138,
    ];
    if before_vxlan.iter().any(|&p| either(p)) || dport == 3456 || either(2103) || either(2104) {
        return UdpApp::Other;
    }
    if (7000..=7009).contains(&sport) || (7000..=7009).contains(&dport) {
        return UdpApp::Other;
    }
    let more: &[u16] = &[521, 546, 547, 5359, 6696, 6697, 8231];
    if more.iter().any(|&p| either(p)) || dport == 4567 || either(496) {
        return UdpApp::Other;
    }
    let radius: &[u16] = &[1645, 1812, 1646, 1813, 1700, 3799];
    if radius.iter().any(|&p| either(p)) || dport == 1985 {
        return UdpApp::Other;
    }
    if [921, 646, 698, 3503].iter().any(|&p| either(p)) || sport == 49152 {
        return UdpApp::Other;
    }
    if [3784, 4784, 6784, 3785].contains(&dport) {
        return UdpApp::Other;
    }
    if either(701) || either(1589) || either(6343) || dport == 12223 || sport == 12223 {
        return UdpApp::Other;
    }
    if either(12222) || either(5060) || either(514) || either(8472) {
        return UdpApp::Other;
    }
    if either(VXLAN_PORT) {
        return UdpApp::Vxlan;
    }
    if either(GENEVE_PORT) {
        return UdpApp::Geneve;
    }
    if [4342, 4790, 17754, 6635].iter().any(|&p| either(p)) {
        return UdpApp::Other;
    }
    if payload.get(2) == Some(&2) && (atalk_port(sport) || atalk_port(dport)) {
        return UdpApp::Other;
    }
    if [319, 320, 30490].iter().any(|&p| either(p)) {
        return UdpApp::Other;
    }
    UdpApp::None
}

/// True when tcpdump decodes the payload of a UDP datagram between these ports (so its line
/// goes on where tap's ends), including its NFS-over-UDP check on port 2049.
#[must_use]
pub fn tcpdump_decodes_udp(sport: u16, dport: u16, payload: &[u8]) -> bool {
    udp_app(sport, dport, payload) == UdpApp::Other || sport == 2049 || dport == 2049
}

/// True when tcpdump decodes the payload of a TCP segment between these ports.
#[must_use]
pub fn tcpdump_decodes_tcp(sport: u16, dport: u16) -> bool {
    APP_PORTS_TCP.iter().any(|&p| sport == p || dport == p)
}

const TH_FIN: u8 = 0x01;
const TH_SYN: u8 = 0x02;
const TH_RST: u8 = 0x04;
const TH_ACK: u8 = 0x10;
const TH_URG: u8 = 0x20;

const TCP_FLAGS: &[(u32, &str)] = &[
    (0x01, "F"),
    (0x02, "S"),
    (0x04, "R"),
    (0x08, "P"),
    (0x10, "."),
    (0x20, "U"),
    (0x40, "E"),
    (0x80, "W"),
];

fn tcp_option_name(opt: u8) -> Option<&'static str> {
    Some(match opt {
        0 => "eol",
        1 => "nop",
        2 => "mss",
        3 => "wscale",
        4 => "sackOK",
        5 => "sack",
        6 => "echo",
        7 => "echoreply",
        8 => "TS",
        11 => "cc",
        12 => "ccnew",
        13 => "",
        19 => "md5",
        20 => "scps",
        28 => "uto",
        29 => "tcp-ao",
        30 => "mptcp",
        34 => "tfo",
        254 => "exp",
        _ => return None,
    })
}

/// How the options loop ended early.
enum OptEnd {
    /// `[bad opt]`.
    Bad,
    /// tcpdump's local `goto trunc`.
    Trunc,
}

impl Ctx<'_> {
    fn addr(&mut self, v6: bool, a: &[u8]) {
        if v6 {
            self.out.ipv6(a);
        } else {
            self.out.ipv4(a);
        }
    }

    fn addr_pair(&mut self, iph: IpHdr<'_>) {
        self.addr(iph.v6, iph.src());
        self.out.s(" > ");
        self.addr(iph.v6, iph.dst());
    }

    /// `src.sport > dst.dport: `, or `sport > dport: ` when the addresses were printed already
    /// (behind IPv6 extension headers).
    fn ports_line(&mut self, iph: IpHdr<'_>, proto: u8, sport: u16, dport: u16) {
        if iph.first_proto == proto {
            self.addr(iph.v6, iph.src());
            self.out.c(b'.');
            self.out.dec(u64::from(sport));
            self.out.s(" > ");
            self.addr(iph.v6, iph.dst());
            self.out.c(b'.');
            self.out.dec(u64::from(dport));
        } else {
            self.out.dec(u64::from(sport));
            self.out.s(" > ");
            self.out.dec(u64::from(dport));
        }
        self.out.s(": ");
    }

    /// A TCP segment: `bp` its captured bytes, `length` its length by the IP header.
    pub(crate) fn tcp(
        &mut self,
        bp: &[u8],
        length: usize,
        iph: IpHdr<'_>,
        fragmented: bool,
    ) -> R<()> {
        self.proto = "tcp";
        if bp.len() < 4 {
            self.addr_pair(iph);
            self.out.c(b':');
            self.trunc_mark();
            return Ok(());
        }
        let sport = be16(bp, 0)?;
        let dport = be16(bp, 2)?;
        self.ports_line(iph, IPPROTO_TCP, sport, dport);
        if bp.len() < 20 {
            self.trunc_mark();
            return Ok(());
        }
        let hlen = usize::from(bp[12] >> 4) * 4;
        let len32 = length as u32;
        if hlen < 20 {
            self.out.s(" tcp ");
            self.out.dec(u64::from(len32.wrapping_sub(hlen as u32)));
            self.out.s(" [bad hdr length ");
            self.out.dec(hlen as u64);
            self.out.s(" - too short, < 20]");
            return Ok(());
        }
        let mut seq = be32(bp, 4)?;
        let mut ack = be32(bp, 8)?;
        let win = be16(bp, 14)?;
        let urp = be16(bp, 18)?;
        if self.o.quiet {
            self.out.s("tcp ");
            self.out.dec(u64::from(len32.wrapping_sub(hlen as u32)));
            if hlen > length {
                self.bad_hdr_too_long(hlen, length);
            }
            return Ok(());
        }
        let flags = bp[13];
        self.out.s("Flags [");
        bits(self.out, TCP_FLAGS, u32::from(flags), "", "none");
        self.out.c(b']');
        let (mut thseq, mut thack, mut rev) = (0u32, 0u32, false);
        if !self.o.absolute_seq && flags & TH_ACK != 0 {
            let (src, dst) = (iph.src(), iph.dst());
            rev = sport > dport || (sport == dport && src > dst);
            let mut key = FlowKey {
                v6: iph.v6,
                src: [0; 16],
                dst: [0; 16],
                ports: 0,
            };
            let (a, b) = if rev { (dst, src) } else { (src, dst) };
            key.src[..a.len()].copy_from_slice(a);
            key.dst[..b.len()].copy_from_slice(b);
            key.ports = if rev {
                (u32::from(dport) << 16) | u32::from(sport)
            } else {
                (u32::from(sport) << 16) | u32::from(dport)
            };
            let base = match self.flows.get(&key) {
                Some(base) if flags & TH_SYN == 0 => {
                    if rev {
                        seq = seq.wrapping_sub(base.ack);
                        ack = ack.wrapping_sub(base.seq);
                    } else {
                        seq = seq.wrapping_sub(base.seq);
                        ack = ack.wrapping_sub(base.ack);
                    }
                    base
                }
                _ => {
                    let base = if rev {
                        FlowBase {
                            ack: seq,
                            seq: ack.wrapping_sub(1),
                        }
                    } else {
                        FlowBase {
                            seq,
                            ack: ack.wrapping_sub(1),
                        }
                    };
                    self.flows.insert(key, base);
                    base
                }
            };
            thseq = base.seq;
            thack = base.ack;
        }
        if hlen > length {
            self.bad_hdr_too_long(hlen, length);
            return Ok(());
        }
        if self.v() > 0 && !fragmented && bp.len() >= length {
            let sum = iph.upper_cksum(IPPROTO_TCP, &bp[..length]);
            let field = be16(bp, 16)?;
            self.out.s(", cksum 0x");
            self.out.hex_w(u64::from(field), 4);
            if sum == 0 {
                self.out.s(" (correct)");
            } else {
                self.out.s(" (incorrect -> 0x");
                self.out.hex_w(u64::from(cksum_shouldbe(field, sum)), 4);
                self.out.c(b')');
            }
        }
        let data_len = length - hlen;
        if self.v() > 1 || data_len > 0 || flags & (TH_SYN | TH_FIN | TH_RST) != 0 {
            self.out.s(", seq ");
            self.out.dec(u64::from(seq));
            if data_len > 0 {
                self.out.c(b':');
                self.out.dec(u64::from(seq.wrapping_add(data_len as u32)));
            }
        }
        if flags & TH_ACK != 0 {
            self.out.s(", ack ");
            self.out.dec(u64::from(ack));
        }
        self.out.s(", win ");
        self.out.dec(u64::from(win));
        if flags & TH_URG != 0 {
            self.out.s(", urg ");
            self.out.dec(u64::from(urp));
        }
        if hlen > 20 {
            self.out.s(", options [");
            match self.tcp_options(bp, hlen - 20, rev, thseq, thack)? {
                Ok(()) => self.out.c(b']'),
                Err((OptEnd::Bad, ch)) => {
                    self.out.s("[bad opt]");
                    if ch {
                        self.out.c(b']');
                    }
                    return Ok(());
                }
                Err((OptEnd::Trunc, ch)) => {
                    self.trunc_mark();
                    if ch {
                        self.out.c(b'>');
                    }
                    return Ok(());
                }
            }
        }
        self.out.s(", length ");
        self.out.dec(data_len as u64);
        if data_len == 0 {
            return Ok(());
        }
        if bp.len() < hlen {
            self.out.s(" [remaining caplen(");
            self.out.dec(bp.len() as u64);
            self.out.s(") < header length(");
            self.out.dec(hlen as u64);
            self.out.s(")]");
            return Err(Trunc);
        }
        let payload = &bp[hlen..];
        if flags & TH_RST != 0 && self.v() > 0 {
            self.rst_data(payload, data_len);
        }
        Ok(())
    }

    fn bad_hdr_too_long(&mut self, hlen: usize, length: usize) {
        self.out.s(" [bad hdr length ");
        self.out.dec(hlen as u64);
        self.out.s(" - too long, > ");
        self.out.dec(length as u64);
        self.out.c(b']');
    }

    /// The options of a TCP header of `20 + hlen` bytes. The outer result is a truncation of
    /// the captured bytes (tcpdump's longjmp); the inner one how the loop ended, with whether
    /// an option had been printed.
    fn tcp_options(
        &mut self,
        tp: &[u8],
        mut hlen: usize,
        rev: bool,
        thseq: u32,
        thack: u32,
    ) -> R<Result<(), (OptEnd, bool)>> {
        let mut cp = 20usize;
        let mut ch = false;
        while hlen > 0 {
            if ch {
                self.out.c(b',');
            }
            let opt = u8_at(tp, cp)?;
            cp += 1;
            let len = if opt <= 1 {
                1
            } else {
                let l = usize::from(u8_at(tp, cp)?);
                cp += 1;
                if l < 2 || l > hlen {
                    return Ok(Err((OptEnd::Bad, ch)));
                }
                hlen -= 1;
                l
            };
            hlen -= 1;
            if let Some(n) = tcp_option_name(opt) {
                self.out.s(n);
            } else {
                self.out.s("unknown-");
                self.out.dec(u64::from(opt));
            }
            // Whether `l` more bytes of the option are in the header and were captured.
            macro_rules! lencheck {
                ($l:expr) => {{
                    let l = $l;
                    if l > hlen {
                        return Ok(Err((OptEnd::Bad, ch)));
                    }
                    if tp.len() < cp + l {
                        return Ok(Err((OptEnd::Trunc, ch)));
                    }
                }};
            }
            let mut datalen = 0usize;
            match opt {
                2 => {
                    datalen = 2;
                    lencheck!(datalen);
                    self.out.c(b' ');
                    self.out.dec(u64::from(be16(tp, cp)?));
                }
                3 => {
                    datalen = 1;
                    lencheck!(datalen);
                    self.out.c(b' ');
                    self.out.dec(u64::from(tp[cp]));
                }
                5 => {
                    datalen = len - 2;
                    if datalen.is_multiple_of(8) {
                        self.out.c(b' ');
                        self.out.dec((datalen / 8) as u64);
                        self.out.c(b' ');
                        let mut i = 0;
                        while i < datalen {
                            lencheck!(i + 4);
                            let mut s = be32(tp, cp + i)?;
                            lencheck!(i + 8);
                            let mut e = be32(tp, cp + i + 4)?;
                            let base = if rev { thseq } else { thack };
                            s = s.wrapping_sub(base);
                            e = e.wrapping_sub(base);
                            self.out.c(b'{');
                            self.out.dec(u64::from(s));
                            self.out.c(b':');
                            self.out.dec(u64::from(e));
                            self.out.c(b'}');
                            i += 8;
                        }
                    } else {
                        self.out.s(" invalid sack");
                    }
                }
                6 | 7 | 11 | 12 | 13 => {
                    datalen = 4;
                    lencheck!(datalen);
                    self.out.c(b' ');
                    self.out.dec(u64::from(be32(tp, cp)?));
                }
                8 => {
                    datalen = 8;
                    lencheck!(datalen);
                    self.out.s(" val ");
                    self.out.dec(u64::from(be32(tp, cp)?));
                    self.out.s(" ecr ");
                    self.out.dec(u64::from(be32(tp, cp + 4)?));
                }
                19 => {
                    datalen = 16;
                    lencheck!(datalen);
                    // As tcpdump built with libcrypto prints it without -M.
                    self.out.s(" ");
                    self.out
                        .s("shared secret not supplied with -M, can't check - ");
                    for i in 0..16 {
                        self.out.hex_w(u64::from(tp[cp + i]), 2);
                    }
                }
                20 => {
                    datalen = 2;
                    lencheck!(datalen);
                    self.out.s(" cap ");
                    self.out.hex_w(u64::from(tp[cp]), 2);
                    self.out.s(" id ");
                    self.out.dec(u64::from(tp[cp + 1]));
                }
                29 => {
                    datalen = len - 2;
                    if datalen < 2 {
                        self.invalid();
                    } else {
                        lencheck!(1);
                        self.out.s(" keyid ");
                        self.out.dec(u64::from(tp[cp]));
                        lencheck!(2);
                        self.out.s(" rnextkeyid ");
                        self.out.dec(u64::from(tp[cp + 1]));
                        if datalen > 2 {
                            self.out.s(" mac 0x");
                            for i in 2..datalen {
                                lencheck!(i + 1);
                                self.out.hex_w(u64::from(tp[cp + i]), 2);
                            }
                        }
                    }
                }
                0 | 1 | 4 => {}
                28 => {
                    datalen = 2;
                    lencheck!(datalen);
                    let mut uto = u32::from(be16(tp, cp)?);
                    self.out.s(" 0x");
                    self.out.hex(u64::from(uto));
                    uto = if uto & 1 != 0 {
                        (uto >> 1) * 60
                    } else {
                        uto >> 1
                    };
                    self.out.c(b' ');
                    self.out.dec(u64::from(uto));
                }
                34 => {
                    datalen = len - 2;
                    lencheck!(datalen);
                    self.out.c(b' ');
                    self.fastopen(&tp[cp..cp + datalen], false);
                }
                254 => {
                    datalen = len - 2;
                    lencheck!(datalen);
                    if datalen < 2 {
                        return Ok(Err((OptEnd::Bad, ch)));
                    }
                    let magic = be16(tp, cp)?;
                    self.out.c(b'-');
                    if magic == 0xf989 {
                        self.fastopen(&tp[cp + 2..cp + datalen], true);
                    } else {
                        self.out.hex_w(u64::from(magic), 4);
                    }
                }
                _ => {
                    // Unknown options, and MPTCP (not decoded): their bytes.
                    datalen = len - 2;
                    if datalen > 0 {
                        self.out.s(" 0x");
                    }
                    for i in 0..datalen {
                        lencheck!(i + 1);
                        self.out.hex_w(u64::from(tp[cp + i]), 2);
                    }
                }
            }
            cp += datalen;
            hlen -= datalen;
            let mut total = datalen + 1;
            if opt > 1 {
                total += 1;
            }
            if total != len {
                self.out.s("[len ");
                self.out.dec(len as u64);
                self.out.c(b']');
            }
            ch = true;
            if opt == 0 {
                break;
            }
        }
        Ok(Ok(()))
    }

    fn fastopen(&mut self, cookie: &[u8], exp: bool) {
        if exp {
            self.out.s("tfo");
        }
        if cookie.is_empty() {
            self.out.s(" cookiereq");
        } else if !cookie.len().is_multiple_of(2) || cookie.len() < 4 || cookie.len() > 16 {
            self.invalid();
        } else {
            self.out.s(" cookie ");
            for &b in cookie {
                self.out.hex_w(u64::from(b), 2);
            }
        }
    }

    /// The text a RST carries (RFC 1122), at most 30 bytes, with `-v`.
    fn rst_data(&mut self, sp: &[u8], length: usize) {
        self.out.s(if sp.len() >= length {
            " [RST"
        } else {
            " [!RST"
        });
        let mut n = length;
        if n > 30 {
            n = 30;
            self.out.c(b'+');
        }
        self.out.c(b' ');
        for &c in sp.iter().take(n) {
            print_char(self.out, c);
        }
        self.out.c(b']');
    }

    fn udp_addrs(&mut self, iph: IpHdr<'_>, ports: Option<(u16, u16)>) {
        if iph.first_proto == IPPROTO_UDP {
            match ports {
                None => {
                    self.addr_pair(iph);
                    self.out.s(": ");
                }
                Some((s, d)) => self.ports_line(iph, IPPROTO_UDP, s, d),
            }
        } else if let Some((s, d)) = ports {
            self.ports_line(iph, IPPROTO_UDP, s, d);
        }
    }

    /// A UDP datagram: `bp` its captured bytes, `length` its length by the IP header.
    pub(crate) fn udp(
        &mut self,
        bp: &[u8],
        mut length: usize,
        iph: IpHdr<'_>,
        fragmented: bool,
    ) -> R<()> {
        self.proto = "udp";
        if bp.len() < 4 {
            self.udp_addrs(iph, None);
            self.trunc_mark();
            return Ok(());
        }
        let sport = be16(bp, 0)?;
        let dport = be16(bp, 2)?;
        if length < 8 {
            self.udp_addrs(iph, Some((sport, dport)));
            self.out.s("truncated-udp ");
            self.out.dec(length as u64);
            return Ok(());
        }
        if bp.len() < 6 {
            self.udp_addrs(iph, Some((sport, dport)));
            self.trunc_mark();
            return Ok(());
        }
        let mut ulen = usize::from(be16(bp, 4)?);
        // A jumbogram's UDP length is 0 (RFC 2675).
        if ulen == 0 && length > 65_535 {
            ulen = length;
        }
        if ulen < 8 {
            self.udp_addrs(iph, Some((sport, dport)));
            self.out.s("truncated-udplength ");
            self.out.dec(ulen as u64);
            return Ok(());
        }
        ulen -= 8;
        length -= 8;
        if ulen < length {
            length = ulen;
        }
        if bp.len() < 8 {
            self.udp_addrs(iph, Some((sport, dport)));
            self.trunc_mark();
            return Ok(());
        }
        let cp = &bp[8..];
        self.udp_addrs(iph, Some((sport, dport)));
        if self.v() > 0 && !fragmented {
            let covered = cp.len() >= length;
            if !iph.v6 && self.v() > 1 {
                let field = be16(bp, 6)?;
                if field == 0 {
                    self.out.s("[no cksum] ");
                } else if covered {
                    let sum = iph.upper_cksum(IPPROTO_UDP, &bp[..length + 8]);
                    self.udp_sum_text(field, sum);
                }
            } else if iph.v6 && covered {
                let sum = iph.upper_cksum(IPPROTO_UDP, &bp[..length + 8]);
                let field = be16(bp, 6)?;
                self.udp_sum_text(field, sum);
            }
        }
        let app = if self.o.quiet {
            UdpApp::None
        } else {
            udp_app(sport, dport, cp)
        };
        match app {
            UdpApp::Vxlan => self.vxlan(cp, length),
            UdpApp::Geneve => self.geneve(cp, length),
            UdpApp::Other | UdpApp::None => {
                if ulen > length && !fragmented {
                    self.out.s("UDP, bad length ");
                    self.out.dec(ulen as u64);
                    self.out.s(" > ");
                    self.out.dec(length as u64);
                } else {
                    self.out.s("UDP, length ");
                    self.out.dec(ulen as u64);
                }
                Ok(())
            }
        }
    }

    fn udp_sum_text(&mut self, field: u16, sum: u16) {
        if sum == 0 {
            self.out.s("[udp sum ok] ");
        } else {
            self.out.s("[bad udp cksum 0x");
            self.out.hex_w(u64::from(field), 4);
            self.out.s(" -> 0x");
            self.out.hex_w(u64::from(cksum_shouldbe(field, sum)), 4);
            self.out.s("!] ");
        }
    }
}

/// tcpdump's `fn_print_char`: `M-` for the high bit, `^` for control characters.
pub(crate) fn print_char(out: &mut Vec<u8>, mut c: u8) {
    if !c.is_ascii() {
        c &= 0x7f;
        out.s("M-");
    }
    if !(0x20..0x7f).contains(&c) {
        c ^= 0x40;
        out.c(b'^');
    }
    out.c(c);
}
