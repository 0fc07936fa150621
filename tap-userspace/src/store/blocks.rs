//! pcapng blocks out of a buffer: the store's own reader, for reading a block of the index at
//! an offset (with the interfaces its file's header described), for scanning a whole file when
//! (re)indexing it, and for finding where a crashed file's last whole block ends.
//!
//! Either byte order (the section header says which); every length is checked before it is
//! trusted, and a block that does not add up is an error naming its offset, never a panic.

use tap_common::event::{
    TUNNEL_ERSPAN2, TUNNEL_ERSPAN3, TUNNEL_GENEVE, TUNNEL_GRE, TUNNEL_NONE, TUNNEL_VXLAN,
};

/// Largest block accepted, in bytes.
pub const MAX_BLOCK: usize = 16 << 20;

/// A damaged block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("damaged pcapng at byte {offset}: {what}")]
pub struct BlockError {
    /// Offset in the (decompressed) data.
    pub offset: u64,
    pub what: &'static str,
}

/// An interface described by an interface description block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub linktype: u16,
    pub snaplen: u32,
    /// Timestamp units per second (`if_tsresol`; 1,000,000 without it).
    pub units: u64,
    pub name: String,
    pub description: String,
    /// `if_filter` text (libpcap syntax), empty without.
    pub filter: String,
}

/// A packet of an enhanced (or simple) packet block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketRef<'a> {
    pub interface: u32,
    /// In the interface's units.
    pub ts: u64,
    pub orig_len: u32,
    pub data: &'a [u8],
    /// `epb_flags` (0 without).
    pub flags: u32,
    /// `opt_comment` (tap's: the tunnel a decapsulated packet came from).
    pub comment: Option<&'a [u8]>,
}

/// One block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block<'a> {
    /// A section header; `big`: its byte order.
    Section {
        big: bool,
    },
    Interface(Interface),
    Packet(PacketRef<'a>),
    /// Statistics, name resolution, custom blocks: skipped.
    Other,
}

/// Byte order state of a section.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Order {
    pub big: bool,
}

impl Order {
    fn u16(self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.big {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        }
    }

    fn u32(self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.big {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }
}

const SHB: u32 = 0x0A0D_0D0A;

/// Options of a block body (from the first option): (code, value).
fn options(order: Order, mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let code = order.u16(&b[0..2]);
        let len = usize::from(order.u16(&b[2..4]));
        let padded = (len + 3) & !3;
        if code == 0 || b.len() < 4 + padded {
            return None;
        }
        let v = &b[4..4 + len];
        b = &b[4 + padded..];
        Some((code, v))
    })
}

/// The block at the start of `buf`, and its length; `Ok(None)` when `buf` holds less than a
/// whole block. `order` is the section's (updated by a section header); `at` is the offset of
/// `buf` in the data, for errors.
///
/// # Errors
///
/// When a file cannot be read or written, or holds what it should not (the error says which).
#[expect(
    clippy::too_many_lines,
    reason = "one match over the block types, each short"
)]
pub fn next<'a>(
    buf: &'a [u8],
    order: &mut Order,
    at: u64,
) -> Result<Option<(Block<'a>, usize)>, BlockError> {
    let err = |what| BlockError { offset: at, what };
    if buf.len() < 12 {
        return Ok(None);
    }
    let raw_type = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if raw_type == SHB {
        order.big = match u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) {
            0x1A2B_3C4D => false,
            0x4D3C_2B1A => true,
            _ => return Err(err("bad byte-order magic")),
        };
    }
    let o = *order;
    let kind = o.u32(&buf[0..4]);
    let total = o.u32(&buf[4..8]) as usize;
    if !(12..=MAX_BLOCK).contains(&total) || !total.is_multiple_of(4) {
        return Err(err("bad block length"));
    }
    if buf.len() < total {
        return Ok(None);
    }
    if o.u32(&buf[total - 4..total]) as usize != total {
        return Err(err("trailing block length differs"));
    }
    let body = &buf[8..total - 4];
    let block = match kind {
        SHB => {
            if body.len() < 16 {
                return Err(err("short section header"));
            }
            Block::Section { big: o.big }
        }
        1 => {
            if body.len() < 8 {
                return Err(err("short interface description"));
            }
            let mut iface = Interface {
                linktype: o.u16(&body[0..2]),
                snaplen: o.u32(&body[4..8]),
                units: 1_000_000,
                name: String::new(),
                description: String::new(),
                filter: String::new(),
            };
            for (code, v) in options(o, &body[8..]) {
                let text = || String::from_utf8_lossy(v).into_owned();
                match code {
                    2 => iface.name = text(),
                    3 => iface.description = text(),
                    9 if !v.is_empty() => {
                        let exp = u32::from(v[0] & 0x7f);
                        iface.units = if v[0] & 0x80 != 0 {
                            2u64.checked_pow(exp)
                        } else {
                            10u64.checked_pow(exp)
                        }
                        .ok_or(err("bad if_tsresol"))?
                        .max(1);
                    }
                    11 if v.len() > 1 && v[0] == 0 => {
                        iface.filter = String::from_utf8_lossy(&v[1..]).into_owned();
                    }
                    _ => {}
                }
            }
            Block::Interface(iface)
        }
        6 => {
            if body.len() < 20 {
                return Err(err("short packet block"));
            }
            let cap = o.u32(&body[12..16]) as usize;
            if cap > body.len() - 20 {
                return Err(err("packet longer than its block"));
            }
            let opts = body.get(20 + ((cap + 3) & !3)..).unwrap_or(&[]);
            let mut p = PacketRef {
                interface: o.u32(&body[0..4]),
                ts: (u64::from(o.u32(&body[4..8])) << 32) | u64::from(o.u32(&body[8..12])),
                orig_len: o
                    .u32(&body[16..20])
                    .max(u32::try_from(cap).unwrap_or(u32::MAX)),
                data: &body[20..20 + cap],
                flags: 0,
                comment: None,
            };
            for (code, v) in options(o, opts) {
                match code {
                    2 if v.len() == 4 => p.flags = o.u32(v),
                    1 => p.comment = Some(v),
                    _ => {}
                }
            }
            Block::Packet(p)
        }
        3 => {
            if body.len() < 4 {
                return Err(err("short simple packet block"));
            }
            let orig = o.u32(&body[0..4]);
            let cap = (orig as usize).min(body.len() - 4);
            Block::Packet(PacketRef {
                interface: 0,
                ts: 0,
                orig_len: orig,
                data: &body[4..4 + cap],
                flags: 0,
                comment: None,
            })
        }
        _ => Block::Other,
    };
    Ok(Some((block, total)))
}

/// The tunnel a packet comment names ("vxlan vni=42", as tap writes it): (kind, id).
#[must_use]
pub fn tunnel_of_comment(comment: Option<&[u8]>) -> (u8, u32) {
    let Some(c) = comment.and_then(|c| std::str::from_utf8(c).ok()) else {
        return (TUNNEL_NONE, 0);
    };
    let parsed = c.split_once(' ').and_then(|(kind, rest)| {
        let (_, id) = rest.split_once('=')?;
        let kind = match kind {
            "vxlan" => TUNNEL_VXLAN,
            "geneve" => TUNNEL_GENEVE,
            "gre" => TUNNEL_GRE,
            "erspan-ii" => TUNNEL_ERSPAN2,
            "erspan-iii" => TUNNEL_ERSPAN3,
            _ => return None,
        };
        Some((kind, id.parse().ok()?))
    });
    parsed.unwrap_or((TUNNEL_NONE, 0))
}

/// Converts a timestamp in `units` per second to ns.
#[must_use]
pub fn to_ns(ts: u64, units: u64) -> u64 {
    if units == 1_000_000_000 {
        return ts;
    }
    u64::try_from(u128::from(ts) * 1_000_000_000 / u128::from(units.max(1))).unwrap_or(u64::MAX)
}

/// Where the whole blocks at the start of `buf` end (0 when it does not start with a section
/// header): the length a crashed file is cut back to.
#[must_use]
pub fn whole_prefix(buf: &[u8]) -> usize {
    if buf.len() < 4 || u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) != SHB {
        return 0;
    }
    let mut order = Order::default();
    let mut off = 0;
    while let Ok(Some((_, n))) = next(&buf[off..], &mut order, off as u64) {
        off += n;
    }
    off
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::pcapng::{self, InterfaceDesc, SectionInfo};

    fn sample() -> Vec<u8> {
        let mut v = Vec::new();
        pcapng::section_header(&mut v, &SectionInfo::of_this_host());
        pcapng::interface_description(&mut v, &InterfaceDesc::new("ve", 3, 2), 9216, "icmp");
        pcapng::enhanced_packet(&mut v, 0, 1_500, 90, &[1, 2, 3], 1, Some(b"gre key=9"));
        pcapng::enhanced_packet(&mut v, 0, 1_501, 4, &[4, 5, 6, 7], 2, None);
        v
    }

    #[test]
    fn reads_what_the_encoder_writes() {
        let v = sample();
        let mut order = Order::default();
        let mut off = 0;
        let mut seen = Vec::new();
        while let Some((b, n)) = next(&v[off..], &mut order, off as u64).unwrap() {
            seen.push(b);
            off += n;
        }
        assert_eq!(off, v.len());
        assert!(matches!(seen[0], Block::Section { big: false }));
        let Block::Interface(i) = &seen[1] else {
            panic!("{seen:?}")
        };
        assert_eq!(
            (i.units, i.filter.as_str(), i.name.as_str()),
            (1_000_000_000, "icmp", "ve")
        );
        let Block::Packet(p) = &seen[2] else { panic!() };
        assert_eq!(
            (p.ts, p.orig_len, p.data, p.flags),
            (1_500, 90, &[1u8, 2, 3][..], 1)
        );
        assert_eq!(tunnel_of_comment(p.comment), (TUNNEL_GRE, 9));
        let Block::Packet(p) = &seen[3] else { panic!() };
        assert_eq!((p.data, p.flags, p.comment), (&[4u8, 5, 6, 7][..], 2, None));
        assert_eq!(whole_prefix(&v), v.len());
    }

    #[test]
    fn cut_and_damaged_data() {
        let v = sample();
        let full = whole_prefix(&v);
        let ends: Vec<usize> = {
            let mut order = Order::default();
            let mut off = 0;
            let mut e = Vec::new();
            while let Some((_, n)) = next(&v[off..], &mut order, 0).unwrap() {
                off += n;
                e.push(off);
            }
            e
        };
        for cut in 0..full {
            let want = ends
                .iter()
                .copied()
                .filter(|&e| e <= cut)
                .max()
                .unwrap_or(0);
            assert_eq!(whole_prefix(&v[..cut]), want, "cut at {cut}");
        }
        let mut x: u32 = 1;
        for _ in 0..500 {
            let mut d = v.clone();
            for _ in 0..4 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let i = (x >> 8) as usize % d.len();
                d[i] = x.to_be_bytes()[1];
            }
            let mut order = Order::default();
            let mut off = 0;
            while let Ok(Some((_, n))) = next(&d[off..], &mut order, 0) {
                off += n;
            }
            let _ = whole_prefix(&d);
        }
        assert_eq!(to_ns(3, 1_000_000), 3_000);
        assert_eq!(tunnel_of_comment(Some(b"nonsense")), (TUNNEL_NONE, 0));
    }
}
