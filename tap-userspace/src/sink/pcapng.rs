//! pcapng (draft-ietf-opsawg-pcapng) in host byte order: one section per file, one interface
//! description block per captured (interface, hook), each packet an enhanced packet block with
//! its direction in `epb_flags`, and interface statistics blocks at the end of the file. A packet
//! decapsulated from a tunnel (`--decap`) carries the tunnel and its id in its `opt_comment`
//! ([`TunnelComment`]: "vxlan vni=42", "gre key=7", "erspan-ii session=3"), which Wireshark shows
//! as the packet comment (`frame.comment`).
//!
//! Blocks are appended to a caller's `Vec<u8>` whole: the writer only ever hands complete blocks
//! to the file, so a prefix of the file that ends at a block boundary is a valid pcapng file.
//!
//! Statistics. Each interface block (an interface and a hook) gets its own counters, which
//! `capinfos` and Wireshark's capture file properties show per interface (and Wireshark adds
//! up): `isb_ifrecv` = packets the program saw, `isb_filteraccept` = packets the filter
//! selected, `isb_ifdrop` = selected packets lost because the ring buffer was full (the kernel
//! counts these per interface and hook, [`crate::kernel::ifstats`]), `isb_osdrop` = packets lost in tap
//! (the writer's queue full, the disk full), `isb_usrdeliv` = packets written, with a comment
//! saying so on each. An interface without a counter slot of its own (more than 255 in one
//! capture) gets only `isb_usrdeliv` and `isb_osdrop`. When the statistics source knows no
//! interfaces (a source without the kernel's per-interface counters), the capture-wide
//! counters go on interface 0's block only, so that a reader adding them up does not multiply
//! them, with a comment saying so. As the format asks, all counters run from the start of the
//! capture, also in rotated files.

use std::fmt::Write as _;

use tap_common::event::{
    DIR_INBOUND, DIR_OUTBOUND, HOOK_TC_EGRESS, HOOK_TC_INGRESS, HOOK_XDP, Hook as HookId,
    TUNNEL_ERSPAN2, TUNNEL_ERSPAN3, TUNNEL_GENEVE, TUNNEL_GRE, TUNNEL_VXLAN,
};

use super::{CaptureStats, pcap::LINKTYPE_ETHERNET};
use crate::{
    kernel::batch::Packet,
    model::{Hook, Interface},
};

/// Block types.
pub const SHB: u32 = 0x0A0D_0D0A;
pub const IDB: u32 = 0x0000_0001;
pub const ISB: u32 = 0x0000_0005;
pub const EPB: u32 = 0x0000_0006;
/// Byte-order magic of a section header.
pub const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

const OPT_ENDOFOPT: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_HARDWARE: u16 = 2;
const SHB_OS: u16 = 3;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;
const IF_FILTER: u16 = 11;
const EPB_FLAGS: u16 = 2;
const ISB_STARTTIME: u16 = 2;
const ISB_ENDTIME: u16 = 3;
const ISB_IFRECV: u16 = 4;
const ISB_IFDROP: u16 = 5;
const ISB_FILTERACCEPT: u16 = 6;
const ISB_OSDROP: u16 = 7;
const ISB_USRDELIV: u16 = 8;

/// `epb_flags` direction bits (the two low bits).
pub const FLAG_INBOUND: u32 = 1;
pub const FLAG_OUTBOUND: u32 = 2;

/// Bytes an enhanced packet block adds to the packet: header 28, `epb_flags` 8, end of options
/// 4, trailing length 4.
pub const EPB_OVERHEAD: usize = 28 + 8 + 4 + 4;

/// Length of an enhanced packet block holding `cap_len` bytes (and no comment).
pub const fn epb_len(cap_len: usize) -> usize {
    EPB_OVERHEAD + pad4(cap_len)
}

/// Bytes an `opt_comment` of `len` bytes adds to a block.
const fn comment_len(len: usize) -> usize {
    4 + pad4(len)
}

/// The `opt_comment` of a packet decapsulated from a tunnel: the tunnel and its id, e.g.
/// "vxlan vni=42", "geneve vni=7", "gre key=9", "erspan-ii session=3", "erspan-iii session=3".
/// Built on the stack: no allocation per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelComment {
    buf: [u8; 32],
    len: usize,
}

impl TunnelComment {
    /// The comment for a record's `tunnel` kind and `tunnel_id`; `None` when not decapsulated.
    pub fn of(tunnel: u8, id: u32) -> Option<Self> {
        let label: &[u8] = match tunnel {
            TUNNEL_VXLAN => b"vxlan vni=",
            TUNNEL_GENEVE => b"geneve vni=",
            TUNNEL_GRE => b"gre key=",
            TUNNEL_ERSPAN2 => b"erspan-ii session=",
            TUNNEL_ERSPAN3 => b"erspan-iii session=",
            _ => return None,
        };
        let mut c = Self {
            buf: [0; 32],
            len: label.len(),
        };
        c.buf[..label.len()].copy_from_slice(label);
        let mut digits = [0u8; 10];
        let mut n = 0;
        let mut v = id;
        loop {
            digits[n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        for d in digits[..n].iter().rev() {
            c.buf[c.len] = *d;
            c.len += 1;
        }
        Some(c)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

const fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// What the section header says about where the file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionInfo {
    /// `shb_hardware`: the host name.
    pub hardware: String,
    /// `shb_os`: `uname -sr`.
    pub os: String,
    /// `shb_userappl`: "tap <version>".
    pub application: String,
}

impl SectionInfo {
    /// Describes this host and this build of tap.
    pub fn of_this_host() -> Self {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        Self {
            hardware: read("/proc/sys/kernel/hostname"),
            os: format!(
                "{} {}",
                read("/proc/sys/kernel/ostype"),
                read("/proc/sys/kernel/osrelease")
            )
            .trim()
            .to_string(),
            application: format!("tap {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// One interface description block: a kernel interface seen through one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceDesc {
    pub ifindex: u32,
    /// `tap_common::event::HOOK_*`.
    pub hook: HookId,
    /// `if_name`, e.g. "veth-b".
    pub name: String,
    /// `if_description`, e.g. "veth-b (tc-ingress)".
    pub description: String,
}

/// The `HOOK_*` id the programs put in records for a configured hook.
pub fn hook_id(hook: Hook) -> HookId {
    HookId::from(hook)
}

fn hook_name(hook: HookId) -> &'static str {
    match hook {
        HOOK_XDP => "xdp",
        HOOK_TC_INGRESS => "tc-ingress",
        HOOK_TC_EGRESS => "tc-egress",
        _ => "unknown hook",
    }
}

impl InterfaceDesc {
    pub fn new(name: &str, ifindex: u32, hook: HookId) -> Self {
        Self {
            ifindex,
            hook,
            name: name.to_string(),
            description: format!("{name} ({})", hook_name(hook)),
        }
    }

    /// Interfaces in file order: for each interface, each hook. Interface id `i * hooks + h`.
    pub fn list(interfaces: &[Interface], hooks: &[Hook]) -> Vec<Self> {
        interfaces
            .iter()
            .flat_map(|i| {
                hooks
                    .iter()
                    .map(move |h| Self::new(&i.name, i.ifindex, hook_id(*h)))
            })
            .collect()
    }
}

/// Appends an option: code, length, value, zero padding to 4 bytes.
fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_ne_bytes());
    out.extend_from_slice(&(value.len() as u16).to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + pad4(value.len()) - value.len(), 0);
}

fn option_u64(out: &mut Vec<u8>, code: u16, value: u64) {
    option(out, code, &value.to_ne_bytes());
}

/// A timestamp as pcapng stores it: high 32 bits, then low 32 bits, each in host order.
fn ts_words(ts: u64) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0..4].copy_from_slice(&((ts >> 32) as u32).to_ne_bytes());
    b[4..8].copy_from_slice(&(ts as u32).to_ne_bytes());
    b
}

/// Starts a block; returns its start so [`end_block`] can fill in the lengths.
fn begin_block(out: &mut Vec<u8>, kind: u32) -> usize {
    let start = out.len();
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    start
}

/// Closes the options and the block: end of options (when `options`), the trailing length, and
/// the leading length.
fn end_block(out: &mut Vec<u8>, start: usize, options: bool) {
    if options {
        out.extend_from_slice(&OPT_ENDOFOPT.to_ne_bytes());
        out.extend_from_slice(&0u16.to_ne_bytes());
    }
    let len = (out.len() - start + 4) as u32;
    out.extend_from_slice(&len.to_ne_bytes());
    out[start + 4..start + 8].copy_from_slice(&len.to_ne_bytes());
}

/// Appends a section header block with an unspecified section length (the file is written as a
/// stream).
pub fn section_header(out: &mut Vec<u8>, info: &SectionInfo) {
    section_header_with_comments(out, info, &[]);
}

/// [`section_header`] with `opt_comment`s, which capinfos and Wireshark show as the capture's
/// comments; each is cut to 65,532 bytes (at a character boundary) to fit an option.
pub fn section_header_with_comments(out: &mut Vec<u8>, info: &SectionInfo, comments: &[String]) {
    let start = begin_block(out, SHB);
    out.extend_from_slice(&BYTE_ORDER_MAGIC.to_ne_bytes());
    out.extend_from_slice(&1u16.to_ne_bytes());
    out.extend_from_slice(&0u16.to_ne_bytes());
    out.extend_from_slice(&u64::MAX.to_ne_bytes());
    for (code, text) in [
        (SHB_HARDWARE, &info.hardware),
        (SHB_OS, &info.os),
        (SHB_USERAPPL, &info.application),
    ] {
        if !text.is_empty() {
            option(out, code, text.as_bytes());
        }
    }
    for c in comments {
        let mut end = c.len().min(65_532);
        while !c.is_char_boundary(end) {
            end -= 1;
        }
        option(out, OPT_COMMENT, &c.as_bytes()[..end]);
    }
    end_block(out, start, true);
}

/// Appends an interface description block: Ethernet, `snaplen`, nanosecond timestamps, and the
/// filter expression (libpcap syntax) when there is one.
pub fn interface_description(out: &mut Vec<u8>, iface: &InterfaceDesc, snaplen: u32, filter: &str) {
    let start = begin_block(out, IDB);
    out.extend_from_slice(&(LINKTYPE_ETHERNET as u16).to_ne_bytes());
    out.extend_from_slice(&0u16.to_ne_bytes());
    out.extend_from_slice(&snaplen.to_ne_bytes());
    option(out, IF_NAME, iface.name.as_bytes());
    option(out, IF_DESCRIPTION, iface.description.as_bytes());
    option(out, IF_TSRESOL, &[9]);
    if !filter.is_empty() {
        // The first byte says which syntax: 0 is a libpcap filter string.
        let start_opt = out.len();
        out.extend_from_slice(&IF_FILTER.to_ne_bytes());
        out.extend_from_slice(&((filter.len() + 1) as u16).to_ne_bytes());
        out.push(0);
        out.extend_from_slice(filter.as_bytes());
        let used = out.len() - start_opt - 4;
        out.resize(out.len() + pad4(used) - used, 0);
    }
    end_block(out, start, true);
}

/// The `epb_flags` direction bits of a record.
pub fn direction_flags(direction: u8) -> u32 {
    match direction {
        DIR_INBOUND => FLAG_INBOUND,
        DIR_OUTBOUND => FLAG_OUTBOUND,
        _ => 0,
    }
}

/// Appends an enhanced packet block, with `comment` (a tunnel's, see [`TunnelComment`]) as its
/// `opt_comment` when given. `ts_ns`: ns since the epoch (the interfaces say `if_tsresol` = 9).
/// On the hot path: a few copies, no per-field bounds checks.
pub fn enhanced_packet(
    out: &mut Vec<u8>,
    interface_id: u32,
    ts_ns: u64,
    orig_len: u32,
    data: &[u8],
    flags: u32,
    comment: Option<&[u8]>,
) {
    let total = (epb_len(data.len()) + comment.map_or(0, |c| comment_len(c.len()))) as u32;
    let mut head = [0u8; 28];
    head[0..4].copy_from_slice(&EPB.to_ne_bytes());
    head[4..8].copy_from_slice(&total.to_ne_bytes());
    head[8..12].copy_from_slice(&interface_id.to_ne_bytes());
    head[12..20].copy_from_slice(&ts_words(ts_ns));
    head[20..24].copy_from_slice(&(data.len() as u32).to_ne_bytes());
    head[24..28].copy_from_slice(&orig_len.to_ne_bytes());
    // Padding of the data (up to 3 bytes) and epb_flags; then the comment, if any; then end of
    // options and trailing length.
    let mut tail = [0u8; 11];
    let pad = pad4(data.len()) - data.len();
    tail[pad..pad + 2].copy_from_slice(&EPB_FLAGS.to_ne_bytes());
    tail[pad + 2..pad + 4].copy_from_slice(&4u16.to_ne_bytes());
    tail[pad + 4..pad + 8].copy_from_slice(&flags.to_ne_bytes());
    let mut end = [0u8; 8];
    end[4..8].copy_from_slice(&total.to_ne_bytes());
    out.reserve(total as usize);
    out.extend_from_slice(&head);
    out.extend_from_slice(data);
    out.extend_from_slice(&tail[..pad + 8]);
    if let Some(c) = comment {
        option(out, OPT_COMMENT, c);
    }
    out.extend_from_slice(&end);
}

/// Counters of one interface statistics block; `None` leaves the option out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IfStats {
    pub start_ns: u64,
    pub end_ns: u64,
    pub ifrecv: Option<u64>,
    pub ifdrop: Option<u64>,
    pub filteraccept: Option<u64>,
    pub osdrop: Option<u64>,
    pub usrdeliv: Option<u64>,
}

/// Appends an interface statistics block stamped `end_ns`.
pub fn interface_statistics(out: &mut Vec<u8>, interface_id: u32, stats: &IfStats, comment: &str) {
    let start = begin_block(out, ISB);
    out.extend_from_slice(&interface_id.to_ne_bytes());
    out.extend_from_slice(&ts_words(stats.end_ns));
    if !comment.is_empty() {
        option(out, OPT_COMMENT, comment.as_bytes());
    }
    option(out, ISB_STARTTIME, &ts_words(stats.start_ns));
    option(out, ISB_ENDTIME, &ts_words(stats.end_ns));
    for (code, value) in [
        (ISB_IFRECV, stats.ifrecv),
        (ISB_IFDROP, stats.ifdrop),
        (ISB_FILTERACCEPT, stats.filteraccept),
        (ISB_OSDROP, stats.osdrop),
        (ISB_USRDELIV, stats.usrdeliv),
    ] {
        if let Some(v) = value {
            option_u64(out, code, v);
        }
    }
    end_block(out, start, true);
}

/// Comment on interface 0's statistics block when the counters are the whole capture's.
pub const CAPTURE_WIDE: &str = "ifrecv, filteraccept, ifdrop (ring buffer full) and osdrop (dropped in tap) count the \
     whole capture, all interfaces and hooks";

/// Comment on each statistics block when the counters are the interface's.
pub const PER_INTERFACE: &str = "ifrecv (seen by the program), filteraccept (selected by the filter), ifdrop (lost: \
     ring buffer full), osdrop (lost in tap) and usrdeliv (written) count this interface and hook; \
     the whole capture's counts are their sums";

/// Encodes a capture as pcapng, keeping the interface table and the per-interface counts.
#[derive(Debug)]
pub struct PcapngEncoder {
    section: SectionInfo,
    snaplen: u32,
    filter: String,
    interfaces: Vec<InterfaceDesc>,
    /// Packets written per interface id, since the capture started.
    delivered: Vec<u64>,
    /// Packets encoded or taken for an interface id but not written (output failed or full).
    lost: Vec<u64>,
    /// The interface id of the last packet's (ifindex, hook): consecutive packets mostly share it.
    last: Option<(u32, HookId, u32)>,
}

impl PcapngEncoder {
    pub fn new(
        section: SectionInfo,
        interfaces: Vec<InterfaceDesc>,
        snaplen: u32,
        filter: &str,
    ) -> Self {
        let delivered = vec![0; interfaces.len()];
        Self {
            section,
            snaplen,
            filter: filter.to_string(),
            lost: delivered.clone(),
            interfaces,
            delivered,
            last: None,
        }
    }

    /// Section header and every known interface: the start of each file.
    pub fn header(&self, out: &mut Vec<u8>) {
        section_header(out, &self.section);
        for iface in &self.interfaces {
            interface_description(out, iface, self.snaplen, &self.filter);
        }
    }

    /// Bytes [`PcapngEncoder::packet`] will append for `p` (an unknown interface's block aside).
    pub fn record_len(p: &Packet<'_>) -> usize {
        epb_len(p.data.len())
            + TunnelComment::of(p.header.tunnel, p.header.tunnel_id)
                .map_or(0, |c| comment_len(c.as_bytes().len()))
    }

    /// Appends `p` as an enhanced packet block and returns its interface id. A packet from an
    /// interface and hook that is not in the table (never expected) gets an interface
    /// description block of its own first.
    pub fn packet(&mut self, out: &mut Vec<u8>, p: &Packet<'_>) -> u32 {
        let key = (p.header.ifindex, p.header.hook);
        let id = match self.last {
            Some((ifindex, hook, id)) if (ifindex, hook) == key => id,
            _ => {
                let id = if let Some(i) = self
                    .interfaces
                    .iter()
                    .position(|i| (i.ifindex, i.hook) == key)
                {
                    i as u32
                } else {
                    let desc = InterfaceDesc::new(&format!("ifindex {}", key.0), key.0, key.1);
                    interface_description(out, &desc, self.snaplen, &self.filter);
                    self.interfaces.push(desc);
                    self.delivered.push(0);
                    self.lost.push(0);
                    (self.interfaces.len() - 1) as u32
                };
                self.last = Some((key.0, key.1, id));
                id
            }
        };
        let comment = TunnelComment::of(p.header.tunnel, p.header.tunnel_id);
        enhanced_packet(
            out,
            id,
            p.ts_ns,
            p.header.orig_len,
            p.data,
            direction_flags(p.header.direction),
            comment.as_ref().map(TunnelComment::as_bytes),
        );
        id
    }

    /// Counts a packet of interface `id` as written to the file (called once it is there).
    pub fn count_delivered(&mut self, id: u32) {
        if let Some(d) = self.delivered.get_mut(id as usize) {
            *d += 1;
        }
    }

    /// Counts a packet of interface `id` as lost in tap (encoded, but the output failed).
    pub fn count_lost(&mut self, id: u32) {
        if let Some(l) = self.lost.get_mut(id as usize) {
            *l += 1;
        }
    }

    /// Counts `p` as lost in tap before it was encoded (an interface not yet described is not
    /// described for it: there is no file to describe it in).
    pub fn lose_packet(&mut self, p: &Packet<'_>) {
        let key = (p.header.ifindex, p.header.hook);
        if let Some(id) = self
            .interfaces
            .iter()
            .position(|i| (i.ifindex, i.hook) == key)
        {
            self.lost[id] += 1;
        }
    }

    /// One statistics block per interface: see the module notes for what each counter means.
    pub fn trailer(&self, out: &mut Vec<u8>, stats: &CaptureStats, start_ns: u64, end_ns: u64) {
        if !stats.interfaces.is_empty() {
            self.trailer_per_interface(out, stats, start_ns, end_ns);
            return;
        }
        for (id, delivered) in self.delivered.iter().enumerate() {
            let mut s = IfStats {
                start_ns,
                end_ns,
                usrdeliv: Some(*delivered),
                ..Default::default()
            };
            let comment = if id == 0 {
                s.ifrecv = Some(stats.kernel.seen);
                s.filteraccept = Some(stats.kernel.matched);
                s.ifdrop = Some(stats.kernel.ring_full);
                s.osdrop = Some(stats.writer_dropped);
                CAPTURE_WIDE
            } else {
                ""
            };
            interface_statistics(out, id as u32, &s, comment);
        }
    }

    /// The most bytes [`PcapngEncoder::trailer`] appends for the interfaces known now.
    pub fn trailer_len(&self) -> usize {
        let every = CaptureStats {
            interfaces: self
                .interfaces
                .iter()
                .map(|i| crate::kernel::ifstats::IfCounts {
                    ifindex: i.ifindex,
                    hook: i.hook,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let (mut wide, mut per) = (Vec::new(), Vec::new());
        self.trailer(&mut wide, &CaptureStats::default(), 0, 0);
        self.trailer(&mut per, &every, 0, 0);
        wide.len().max(per.len())
    }

    fn trailer_per_interface(
        &self,
        out: &mut Vec<u8>,
        stats: &CaptureStats,
        start_ns: u64,
        end_ns: u64,
    ) {
        for (id, iface) in self.interfaces.iter().enumerate() {
            let kernel = stats
                .interfaces
                .iter()
                .find(|c| (c.ifindex, c.hook) == (iface.ifindex, iface.hook));
            let lost = self.lost[id];
            let s = IfStats {
                start_ns,
                end_ns,
                ifrecv: kernel.map(|c| c.seen),
                ifdrop: kernel.map(|c| c.ring_full),
                filteraccept: kernel.map(|c| c.matched),
                osdrop: Some(kernel.map_or(0, |c| c.writer_dropped) + lost),
                usrdeliv: Some(self.delivered[id]),
            };
            interface_statistics(out, id as u32, &s, PER_INTERFACE);
        }
    }

    /// A description of the interface table for logs.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for (i, iface) in self.interfaces.iter().enumerate() {
            let _ = write!(
                s,
                "{}{i}: {}",
                if i > 0 { ", " } else { "" },
                iface.description
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tap_common::event::PacketHeader;

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_ne_bytes(b[o..o + 4].try_into().unwrap())
    }

    /// Walks the blocks of `b`: (type, body), checking both lengths of each.
    fn blocks(b: &[u8]) -> Vec<(u32, &[u8])> {
        let mut out = Vec::new();
        let mut off = 0;
        while off < b.len() {
            let len = u32_at(b, off + 4) as usize;
            assert_eq!(
                len % 4,
                0,
                "block length {len} at {off} is not a multiple of 4"
            );
            assert_eq!(
                u32_at(b, off + len - 4),
                len as u32,
                "trailing length at {off}"
            );
            out.push((u32_at(b, off), &b[off + 8..off + len - 4]));
            off += len;
        }
        assert_eq!(off, b.len());
        out
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn golden_section_header() {
        let mut v = Vec::new();
        section_header(
            &mut v,
            &SectionInfo {
                hardware: "h".into(),
                os: "Linux 6".into(),
                application: "tap 1".into(),
            },
        );
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0x0a, 0x0d, 0x0d, 0x0a, 64, 0, 0, 0,
            0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            2, 0, 1, 0, b'h', 0, 0, 0,
            3, 0, 7, 0, b'L', b'i', b'n', b'u', b'x', b' ', b'6', 0,
            4, 0, 5, 0, b't', b'a', b'p', b' ', b'1', 0, 0, 0,
            0, 0, 0, 0,
            64, 0, 0, 0,
        ];
        assert_eq!(v, expected);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn golden_interface_description() {
        let mut v = Vec::new();
        interface_description(
            &mut v,
            &InterfaceDesc::new("ve", 7, HOOK_TC_EGRESS),
            9216,
            "icmp",
        );
        #[rustfmt::skip]
        let expected: &[u8] = &[
            1, 0, 0, 0, 72, 0, 0, 0,
            1, 0, 0, 0, 0x00, 0x24, 0, 0,
            2, 0, 2, 0, b'v', b'e', 0, 0,
            3, 0, 14, 0, b'v', b'e', b' ', b'(', b't', b'c', b'-', b'e', b'g', b'r', b'e', b's', b's', b')', 0, 0,
            9, 0, 1, 0, 9, 0, 0, 0,
            11, 0, 5, 0, 0, b'i', b'c', b'm', b'p', 0, 0, 0,
            0, 0, 0, 0,
            72, 0, 0, 0,
        ];
        assert_eq!(v, expected);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn golden_enhanced_packet() {
        let mut v = Vec::new();
        enhanced_packet(
            &mut v,
            3,
            0x0000_0001_0000_0002,
            60,
            &[0xde, 0xad, 0xbe],
            FLAG_OUTBOUND,
            None,
        );
        #[rustfmt::skip]
        let expected: &[u8] = &[
            6, 0, 0, 0, 48, 0, 0, 0,
            3, 0, 0, 0,
            1, 0, 0, 0, 2, 0, 0, 0,
            3, 0, 0, 0, 60, 0, 0, 0,
            0xde, 0xad, 0xbe, 0,
            2, 0, 4, 0, 2, 0, 0, 0,
            0, 0, 0, 0,
            48, 0, 0, 0,
        ];
        assert_eq!(v, expected);
        assert_eq!(v.len(), epb_len(3));
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn golden_enhanced_packet_with_tunnel_comment() {
        let comment = TunnelComment::of(TUNNEL_VXLAN, 42).unwrap();
        assert_eq!(comment.as_bytes(), b"vxlan vni=42");
        let mut v = Vec::new();
        enhanced_packet(
            &mut v,
            0,
            0,
            2,
            &[0xab, 0xcd],
            FLAG_INBOUND,
            Some(comment.as_bytes()),
        );
        #[rustfmt::skip]
        let expected: &[u8] = &[
            6, 0, 0, 0, 64, 0, 0, 0,
            0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0,
            2, 0, 0, 0, 2, 0, 0, 0,
            0xab, 0xcd, 0, 0,
            2, 0, 4, 0, 1, 0, 0, 0,
            1, 0, 12, 0, b'v', b'x', b'l', b'a', b'n', b' ', b'v', b'n', b'i', b'=', b'4', b'2',
            0, 0, 0, 0,
            64, 0, 0, 0,
        ];
        assert_eq!(v, expected);
    }

    #[test]
    fn tunnel_comments_name_the_tunnel_and_its_id() {
        use tap_common::event::TUNNEL_NONE;
        let text = |kind, id| {
            TunnelComment::of(kind, id).map(|c| String::from_utf8(c.as_bytes().to_vec()).unwrap())
        };
        assert_eq!(text(TUNNEL_NONE, 5), None);
        assert_eq!(text(TUNNEL_VXLAN, 0).as_deref(), Some("vxlan vni=0"));
        assert_eq!(
            text(TUNNEL_GENEVE, 0xff_ffff).as_deref(),
            Some("geneve vni=16777215")
        );
        assert_eq!(
            text(TUNNEL_GRE, u32::MAX).as_deref(),
            Some("gre key=4294967295")
        );
        assert_eq!(
            text(TUNNEL_ERSPAN2, 1023).as_deref(),
            Some("erspan-ii session=1023")
        );
        assert_eq!(
            text(TUNNEL_ERSPAN3, 7).as_deref(),
            Some("erspan-iii session=7")
        );
        assert_eq!(text(99, 1), None);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn golden_interface_statistics() {
        let mut v = Vec::new();
        let s = IfStats {
            start_ns: 5,
            end_ns: 6,
            ifdrop: Some(7),
            usrdeliv: Some(8),
            ..Default::default()
        };
        interface_statistics(&mut v, 1, &s, "");
        #[rustfmt::skip]
        let expected: &[u8] = &[
            5, 0, 0, 0, 76, 0, 0, 0,
            1, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0,
            2, 0, 8, 0, 0, 0, 0, 0, 5, 0, 0, 0,
            3, 0, 8, 0, 0, 0, 0, 0, 6, 0, 0, 0,
            5, 0, 8, 0, 7, 0, 0, 0, 0, 0, 0, 0,
            8, 0, 8, 0, 8, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0,
            76, 0, 0, 0,
        ];
        assert_eq!(v, expected);
    }

    fn packet(ifindex: u32, hook: u8, direction: u8, data: &[u8]) -> Packet<'_> {
        let header = PacketHeader {
            ifindex,
            hook,
            direction,
            orig_len: 100,
            cap_len: data.len() as u32,
            ..Default::default()
        };
        Packet {
            header,
            ts_ns: 1_700_000_000_000_000_001,
            data,
        }
    }

    #[test]
    fn interfaces_map_by_ifindex_and_hook() {
        let ifaces = [
            Interface {
                name: "a".into(),
                ifindex: 4,
            },
            Interface {
                name: "b".into(),
                ifindex: 9,
            },
        ];
        let list = InterfaceDesc::list(&ifaces, &[Hook::TcIngress, Hook::TcEgress]);
        assert_eq!(
            list.iter()
                .map(|i| i.description.as_str())
                .collect::<Vec<_>>(),
            [
                "a (tc-ingress)",
                "a (tc-egress)",
                "b (tc-ingress)",
                "b (tc-egress)"
            ]
        );
        let mut enc = PcapngEncoder::new(SectionInfo::of_this_host(), list, 9216, "");
        let mut v = Vec::new();
        enc.header(&mut v);
        let header_len = v.len();
        for (ifindex, hook, dir) in [
            (9, HOOK_TC_EGRESS, DIR_OUTBOUND),
            (4, HOOK_TC_INGRESS, DIR_INBOUND),
            (9, HOOK_TC_EGRESS, DIR_OUTBOUND),
        ] {
            let id = enc.packet(&mut v, &packet(ifindex, hook, dir, &[1, 2, 3, 4, 5]));
            enc.count_delivered(id);
        }
        // A hook nobody configured: described on the fly, then used.
        let id = enc.packet(&mut v, &packet(9, HOOK_XDP, DIR_INBOUND, &[1]));
        enc.count_delivered(id);
        let found = blocks(&v);
        let kinds: Vec<u32> = found.iter().map(|b| b.0).collect();
        assert_eq!(kinds, [SHB, IDB, IDB, IDB, IDB, EPB, EPB, EPB, IDB, EPB]);
        let epbs: Vec<(u32, u32)> = found
            .iter()
            .filter(|b| b.0 == EPB)
            .map(|(_, body)| {
                (
                    u32_at(body, 0),
                    u32_at(body, 20 + pad4(u32_at(body, 12) as usize) + 4),
                )
            })
            .collect();
        assert_eq!(
            epbs,
            [
                (3, FLAG_OUTBOUND),
                (0, FLAG_INBOUND),
                (3, FLAG_OUTBOUND),
                (4, FLAG_INBOUND)
            ]
        );
        assert!(header_len > 0);
        let mut t = Vec::new();
        let stats = CaptureStats {
            kernel: crate::kernel::counters::KernelCounters {
                seen: 10,
                ring_full: 2,
                ..Default::default()
            },
            writer_dropped: 1,
            interfaces: Vec::new(),
        };
        enc.trailer(&mut t, &stats, 1, 2);
        assert_eq!(blocks(&t).len(), 5);
        assert_eq!(enc.delivered, [1, 0, 0, 2, 1]);
    }

    #[test]
    fn statistics_per_interface_when_the_source_has_them() {
        use crate::kernel::ifstats::IfCounts;
        let list = InterfaceDesc::list(
            &[
                Interface {
                    name: "a".into(),
                    ifindex: 4,
                },
                Interface {
                    name: "b".into(),
                    ifindex: 9,
                },
            ],
            &[Hook::TcIngress],
        );
        let mut enc = PcapngEncoder::new(SectionInfo::of_this_host(), list, 9216, "");
        let mut v = Vec::new();
        for _ in 0..3 {
            let id = enc.packet(&mut v, &packet(9, HOOK_TC_INGRESS, DIR_INBOUND, &[1, 2]));
            enc.count_delivered(id);
        }
        let id = enc.packet(&mut v, &packet(9, HOOK_TC_INGRESS, DIR_INBOUND, &[1, 2]));
        enc.count_lost(id);
        let stats = CaptureStats {
            kernel: crate::kernel::counters::KernelCounters {
                seen: 100,
                ..Default::default()
            },
            writer_dropped: 5,
            interfaces: vec![
                IfCounts {
                    ifindex: 4,
                    hook: HOOK_TC_INGRESS,
                    seen: 10,
                    matched: 0,
                    ring_full: 0,
                    writer_dropped: 0,
                },
                IfCounts {
                    ifindex: 9,
                    hook: HOOK_TC_INGRESS,
                    seen: 90,
                    matched: 80,
                    ring_full: 70,
                    writer_dropped: 5,
                },
            ],
        };
        let mut t = Vec::new();
        enc.trailer(&mut t, &stats, 1, 2);
        assert!(enc.trailer_len() >= t.len());
        let found = blocks(&t);
        assert_eq!(found.len(), 2);
        // Options from byte 12 of the body: code, length, value.
        let options = |body: &[u8]| {
            let mut out = std::collections::BTreeMap::new();
            let mut off = 12;
            while off + 4 <= body.len() {
                let code = u16::from_ne_bytes([body[off], body[off + 1]]);
                let len = u16::from_ne_bytes([body[off + 2], body[off + 3]]) as usize;
                if code == 0 {
                    break;
                }
                if (ISB_IFRECV..=ISB_USRDELIV).contains(&code) {
                    let v = u64::from_ne_bytes(body[off + 4..off + 12].try_into().unwrap());
                    out.insert(code, v);
                }
                off += 4 + pad4(len);
            }
            out
        };
        let (a, b) = (options(found[0].1), options(found[1].1));
        assert_eq!(u32_at(found[1].1, 0), 1, "interface id");
        let want = |recv, accept, drop, os, deliv| {
            [
                (ISB_IFRECV, recv),
                (ISB_IFDROP, drop),
                (ISB_FILTERACCEPT, accept),
                (ISB_OSDROP, os),
                (ISB_USRDELIV, deliv),
            ]
            .into_iter()
            .collect::<std::collections::BTreeMap<u16, u64>>()
        };
        assert_eq!(a, want(10, 0, 0, 0, 0));
        assert_eq!(
            b,
            want(90, 80, 70, 5 + 1, 3),
            "queue drops plus the writer's own"
        );
        let comment = String::from_utf8_lossy(found[1].1);
        assert!(comment.contains(PER_INTERFACE), "{comment}");
    }
}
