//! VXLAN, GENEVE and GRE (with what it carries, ERSPAN included as tcpdump 4.99.3 shows it:
//! `gre-proto-0x88be`), as tcpdump's `print-vxlan.c`, `print-geneve.c` and `print-gre.c` lay
//! them out.

use super::{
    Ctx, R, be16, be24, be32, bits,
    emit::Emit,
    link::{ETHERTYPE_IP, ETHERTYPE_IPV6, ETHERTYPE_TEB, ethertype_name},
    u8_at,
};

const GRE_CP: u16 = 0x8000;
const GRE_RP: u16 = 0x4000;
const GRE_KP: u16 = 0x2000;
const GRE_SP: u16 = 0x1000;
const GRE_AP: u16 = 0x0080;

const GRE_FLAGS: &[(u32, &str)] = &[
    (0x8000, "checksum present"),
    (0x4000, "routing present"),
    (0x2000, "key present"),
    (0x1000, "sequence# present"),
    (0x0800, "source routing present"),
    (0x0080, "ack present"),
];

const GENEVE_FLAGS: &[(u32, &str)] = &[
    (0x80, "O"),
    (0x40, "C"),
    (0x20, "R1"),
    (0x10, "R2"),
    (0x08, "R3"),
    (0x04, "R4"),
    (0x02, "R5"),
    (0x01, "R6"),
];

fn geneve_class(c: u16) -> &'static str {
    match c {
        0x0100 => "Linux",
        0x0101 => "Open vSwitch",
        0x0102 => "Open Virtual Networking (OVN)",
        0x0103 => "In-band Network Telemetry (INT)",
        0x0104 => "VMware",
        0..=0x00ff => "Standard",
        0xfff0..=0xffff => "Experimental",
        _ => "Unknown",
    }
}

impl Ctx<'_> {
    fn proto_e(&mut self, prot: u16) {
        if self.e() {
            self.out.s(", proto ");
            self.out.s(ethertype_name(prot).unwrap_or("unknown"));
            self.out.s(" (0x");
            self.out.hex_w(u64::from(prot), 4);
            self.out.c(b')');
        }
    }

    /// A VXLAN header and its Ethernet frame (UDP port 4789).
    pub(crate) fn vxlan(&mut self, bp: &[u8], len: usize) -> R<()> {
        self.proto = "vxlan";
        self.out.s("VXLAN");
        if len < 8 {
            self.invalid();
            return Ok(());
        }
        let flags = u8_at(bp, 0)?;
        self.out.s(", flags [");
        bits(self.out, &[(0x08, "I")], u32::from(flags), "", "invalid");
        self.out.s("] (0x");
        self.out.hex_w(u64::from(flags), 2);
        self.out.s("), ");
        let vni = be24(bp, 4)?;
        self.out.s("vni ");
        self.out.dec(u64::from(vni));
        self.out.c(b'\n');
        u8_at(bp, 7)?;
        self.ether(&bp[8..], len - 8).map(|_| ())
    }

    /// A GENEVE header and its payload (UDP port 6081).
    pub(crate) fn geneve(&mut self, bp: &[u8], len: usize) -> R<()> {
        self.proto = "geneve";
        self.out.s("Geneve");
        if len < 8 {
            self.out.s(" [length ");
            self.out.dec(len as u64);
            self.out.s(" < 8]");
            self.invalid();
            return Ok(());
        }
        if bp.len() < 8 {
            self.trunc_mark();
            return Ok(());
        }
        let ver_opt = bp[0];
        if ver_opt >> 6 != 0 {
            self.out.s(" ERROR: unknown-version ");
            self.out.dec(u64::from(ver_opt >> 6));
            return Ok(());
        }
        let flags = bp[1];
        let prot = be16(bp, 2)?;
        let vni = be24(bp, 4)?;
        let reserved = bp[7];
        let mut len = len - 8;
        self.out.s(", Flags [");
        bits(self.out, GENEVE_FLAGS, u32::from(flags), "", "none");
        self.out.s("], vni 0x");
        self.out.hex(u64::from(vni));
        if reserved != 0 {
            self.out.s(", rsvd 0x");
            self.out.hex(u64::from(reserved));
        }
        self.proto_e(prot);
        let opts_len = usize::from(ver_opt & 0x3f) * 4;
        if len < opts_len {
            self.out.s(" truncated-geneve - ");
            self.out.dec((opts_len - len) as u64);
            self.out.s(" bytes missing");
            return Ok(());
        }
        if bp.len() < 8 + opts_len {
            self.trunc_mark();
            return Ok(());
        }
        if opts_len > 0 {
            self.out.s(", options [");
            if self.v() > 0 {
                self.geneve_opts(&bp[8..8 + opts_len])?;
            } else {
                self.out.dec(opts_len as u64);
                self.out.s(" bytes");
            }
            self.out.c(b']');
        }
        len -= opts_len;
        let rest = &bp[8 + opts_len..];
        self.out.s(if self.v() < 1 { ": " } else { "\n\t" });
        if !self.ethertype(prot, rest, len)? {
            if prot == ETHERTYPE_TEB {
                self.ether(rest, len)?;
            } else {
                self.out.s("geneve-proto-0x");
                self.out.hex(u64::from(prot));
            }
        }
        Ok(())
    }

    fn geneve_opts(&mut self, mut bp: &[u8]) -> R<()> {
        let mut sep = "";
        while !bp.is_empty() {
            self.out.s(sep);
            sep = ", ";
            let class = be16(bp, 0)?;
            let ty = u8_at(bp, 2)?;
            let olen = 4 + usize::from(u8_at(bp, 3)? & 0x1f) * 4;
            self.out.s("class ");
            self.out.s(geneve_class(class));
            self.out.s(" (0x");
            self.out.hex(u64::from(class));
            self.out.s(") type 0x");
            self.out.hex(u64::from(ty));
            if ty & 0x80 != 0 {
                self.out.s("(C)");
            }
            self.out.s(" len ");
            self.out.dec(olen as u64);
            if olen > bp.len() {
                self.out.s(" [bad length]");
                return Ok(());
            }
            if self.v() > 1 && olen > 4 {
                self.out.s(" data");
                for i in (4..olen).step_by(4) {
                    self.out.c(b' ');
                    self.out.hex_w(u64::from(be32(bp, i)?), 8);
                }
            }
            bp = &bp[olen..];
        }
        Ok(())
    }

    /// A GRE header and what it carries.
    pub(crate) fn gre(&mut self, bp: &[u8], length: usize) -> R<()> {
        self.proto = "gre";
        if bp.len() < 2 || length < 2 {
            self.trunc_mark();
            return Ok(());
        }
        let vers = be16(bp, 0)? & 7;
        self.out.s("GREv");
        self.out.dec(u64::from(vers));
        match vers {
            0 => self.gre0(bp, length),
            1 => self.gre1(bp, length),
            _ => {
                self.out.s(" ERROR: unknown-version");
                Ok(())
            }
        }
    }

    fn gre0(&mut self, bp: &[u8], length: usize) -> R<()> {
        let flags = be16(bp, 0)?;
        if self.v() > 0 {
            self.out.s(", Flags [");
            bits(self.out, GRE_FLAGS, u32::from(flags), ", ", "none");
            self.out.c(b']');
        }
        let mut at = 2;
        let mut len = length - 2;
        // Each field: captured and within the length, or the marker.
        macro_rules! need {
            ($n:expr) => {
                if bp.len() < at + $n || len < $n {
                    self.trunc_mark();
                    return Ok(());
                }
            };
        }
        need!(2);
        let prot = be16(bp, at)?;
        at += 2;
        len -= 2;
        if flags & (GRE_CP | GRE_RP) != 0 {
            need!(2);
            if self.v() > 0 {
                self.out.s(", sum 0x");
                self.out.hex(u64::from(be16(bp, at)?));
            }
            at += 2;
            len -= 2;
            need!(2);
            self.out.s(", off 0x");
            self.out.hex(u64::from(be16(bp, at)?));
            at += 2;
            len -= 2;
        }
        if flags & GRE_KP != 0 {
            need!(4);
            self.out.s(", key=0x");
            self.out.hex(u64::from(be32(bp, at)?));
            at += 4;
            len -= 4;
        }
        if flags & GRE_SP != 0 {
            need!(4);
            self.out.s(", seq ");
            self.out.dec(u64::from(be32(bp, at)?));
            at += 4;
            len -= 4;
        }
        if flags & GRE_RP != 0 {
            loop {
                need!(4);
                let af = be16(bp, at)?;
                let sreoff = bp[at + 2];
                let srelen = usize::from(bp[at + 3]);
                at += 4;
                len -= 4;
                if af == 0 && srelen == 0 {
                    break;
                }
                if !self.gre_sre(af, sreoff, srelen, &bp[at..], len) || len < srelen {
                    self.trunc_mark();
                    return Ok(());
                }
                at += srelen;
                len -= srelen;
            }
        }
        self.proto_e(prot);
        self.out.s(", length ");
        self.out.dec(length as u64);
        self.out.s(if self.v() < 1 { ": " } else { "\n\t" });
        let rest = &bp[at..];
        match prot {
            ETHERTYPE_IP => self.ip(rest, len),
            ETHERTYPE_IPV6 => self.ip6(rest, len),
            ETHERTYPE_TEB => self.ether(rest, len).map(|_| ()),
            _ => {
                // MPLS, IPX, AppleTalk and OSI are not decoded; nor is ERSPAN (nor by tcpdump
                // 4.99.3).
                self.out.s("gre-proto-0x");
                self.out.hex(u64::from(prot));
                Ok(())
            }
        }
    }

    /// A source route entry; false when it runs past the capture.
    fn gre_sre(&mut self, af: u16, sreoff: u8, srelen: usize, bp: &[u8], len: usize) -> bool {
        let (name, unit) = match af {
            0x0800 => ("ip", 4usize),
            0xfffe => ("asn", 2usize),
            _ => {
                self.out.s(", (rtaf=0x");
                self.out.hex(u64::from(af));
                self.out.c(b')');
                return true;
            }
        };
        self.out.s(", (rtaf=");
        self.out.s(name);
        let ok = (|| {
            let off = usize::from(sreoff);
            if off % unit != 0 {
                self.out.s(", badoffset=");
                self.out.dec(off as u64);
                return true;
            }
            if !srelen.is_multiple_of(unit) {
                self.out.s(", badlength=");
                self.out.dec(srelen as u64);
                return true;
            }
            if off >= srelen {
                self.out.s(", badoff/len=");
                self.out.dec(off as u64);
                self.out.c(b'/');
                self.out.dec(srelen as u64);
                return true;
            }
            let mut at = 0;
            let mut left = len;
            while at < srelen {
                if bp.len() < at + unit || left < unit {
                    return false;
                }
                self.out.c(b' ');
                if at == off {
                    self.out.c(b'*');
                }
                if unit == 4 {
                    self.out.ipv4(&bp[at..at + 4]);
                } else {
                    self.out
                        .hex(u64::from(u16::from_be_bytes([bp[at], bp[at + 1]])));
                }
                at += unit;
                left -= unit;
            }
            true
        })();
        self.out.c(b')');
        ok
    }

    fn gre1(&mut self, bp: &[u8], length: usize) -> R<()> {
        let flags = be16(bp, 0)?;
        let mut at = 2;
        let mut len = length - 2;
        if self.v() > 0 {
            self.out.s(", Flags [");
            bits(self.out, GRE_FLAGS, u32::from(flags), ", ", "none");
            self.out.c(b']');
        }
        macro_rules! need {
            ($n:expr) => {
                if bp.len() < at + $n || len < $n {
                    self.trunc_mark();
                    return Ok(());
                }
            };
        }
        need!(2);
        let prot = be16(bp, at)?;
        at += 2;
        len -= 2;
        if flags & GRE_KP != 0 {
            need!(4);
            self.out.s(", call ");
            self.out.dec(u64::from(be32(bp, at)? & 0xffff));
            at += 4;
            len -= 4;
        }
        if flags & GRE_SP != 0 {
            need!(4);
            self.out.s(", seq ");
            self.out.dec(u64::from(be32(bp, at)?));
            at += 4;
            len -= 4;
        }
        if flags & GRE_AP != 0 {
            need!(4);
            self.out.s(", ack ");
            self.out.dec(u64::from(be32(bp, at)?));
            at += 4;
            len -= 4;
        }
        if flags & GRE_SP == 0 {
            self.out.s(", no-payload");
        }
        self.proto_e(prot);
        self.out.s(", length ");
        self.out.dec(length as u64);
        if flags & GRE_SP == 0 {
            return Ok(());
        }
        self.out.s(if self.v() < 1 { ": " } else { "\n\t" });
        // PPP (PPTP) is not decoded.
        let _ = (at, len);
        self.out.s("gre-proto-0x");
        self.out.hex(u64::from(prot));
        Ok(())
    }
}
