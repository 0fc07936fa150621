//! Packets as text, one line (or a few) per packet, in the layout of `tcpdump -r FILE` (tcpdump
//! 4.99.3) for the same flags: the timestamp styles of `-t`, `-tt`, `-ttt`, `-tttt` and
//! `-ttttt`, the link layer with `-e`, IPv4 and IPv6 (with extension headers), TCP (flags,
//! relative sequence numbers, `-S`, options), UDP, ICMP, ICMPv6, ARP, 802.1Q and QinQ tags,
//! VXLAN, GENEVE and GRE, `-v`/`-vv` detail, `-q`, and the `-x`/`-xx`/`-X`/`-XX`/`-A`/`-AA`
//! dumps. Truncated packets end with tcpdump's `[|proto]` marker at the same place.
//!
//! The caller streams packets through one [`Printer`], which keeps the little state tcpdump
//! keeps: the previous timestamp (`-ttt`), the first one (`-ttttt`), and each TCP connection's
//! initial sequence numbers for relative numbering, in a bounded table ([`FlowTable`]). A line is
//! built in a reused buffer with no allocation per packet.
//!
//! # Names
//! tap never looks names up. Without `-n` it prints what `tcpdump -n` prints (numeric
//! addresses and ports; tcpdump without `-n` would ask DNS for host names, read `/etc/services`
//! for port names, `/etc/ethers` and its OUI table for `-e` addresses, and print protocol names
//! for non-first fragments). `-n` and `-nn` are therefore the same as no flag.
//!
//! # Several interfaces
//! When a capture covers several interfaces, the caller passes each packet's interface name and
//! direction, and the line carries them after the timestamp as tcpdump prints an `-i any`
//! (LINUX_SLL2) capture: the name left-justified in five columns, then `In`, `Out`, `B`
//! (broadcast) or `M` (multicast) in three, e.g. `12:00:00.000000 eth0  In  IP ...`. tap
//! knows only ingress or egress, so `B` and `M` come from the destination MAC of an inbound
//! frame, and `P` (another host's unicast, `PACKET_OTHERHOST`) shows as `In`.
//!
//! # Intended differences from tcpdump 4.99.3
//! - Application protocols are not decoded. TCP and UDP lines end with the transport summary
//!   (`length N`, `UDP, length N`) where tcpdump would go on to decode DNS, HTTP, NTP, SSH,
//!   DHCP, SNMP, syslog, BGP and the others it recognises by port; the ports concerned are in
//!   [`APP_PORTS_TCP`] and [`APP_PORTS_UDP`]. VXLAN (4789) and GENEVE (6081) are decoded.
//! - Link-layer protocols other than IPv4, IPv6, ARP, RARP and VLAN tags are printed as tcpdump
//!   prints an ethertype it does not know (`MAC > MAC, ethertype NAME (0x....), length N:` and
//!   a hex dump), where tcpdump would decode LLDP, PPPoE, MPLS, MACsec, EAPOL, PTP, CFM, and
//!   802.3/LLC frames (STP, CDP) are printed as `MAC > MAC, 802.3, length N:` and a hex dump.
//! - IP protocols other than TCP, UDP, ICMP, ICMPv6, GRE and IP-in-IP (SCTP, IGMP, OSPF, ESP,
//!   AH, PIM, VRRP, ...) are printed as tcpdump prints a protocol it does not know
//!   (`src > dst:  ip-proto-N LEN`); IPv6 mobility headers likewise.
//! - ICMPv6 messages other than errors, echo, neighbour discovery and MLD (router renumbering,
//!   node information, RPL, ...) and ND options other than link-layer address, prefix, MTU,
//!   RDNSS, advertisement interval and route information print as their type and a hex dump.
//!   TCP's MPTCP, TCP-AO, fast-open and MD5 options print as an unknown option's bytes (no
//!   signature check, as tcpdump without a secret), and IPv4's ICMP multi-part extensions are
//!   left out.
//! - TCP relative numbering forgets the least recently seen connections beyond
//!   [`PrintOptions::tcp_flows`]; a forgotten connection's next packet prints absolute numbers,
//!   as tcpdump prints the first packet of a connection it never saw (tcpdump's table grows
//!   without bound).
//! - Link types other than Ethernet (1) and raw IP (101) print `[unsupported link type N]`.

pub mod bench;
mod dump;
mod emit;
mod flows;
mod icmp;
mod ip;
mod link;
mod time;
mod transport;
mod tunnel;

use std::io::{self, Write};

pub use flows::{DEFAULT_TCP_FLOWS, FlowTable};
pub use ip::TCPDUMP_DECODES_PROTOCOLS;
pub use link::TCPDUMP_DECODES_ETHERTYPES;
pub use transport::{APP_PORTS_TCP, APP_PORTS_UDP, tcpdump_decodes_tcp, tcpdump_decodes_udp};

use emit::Emit;

/// pcap link type of Ethernet.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// pcap link type of raw IPv4/IPv6 without a link-layer header.
pub const LINKTYPE_RAW: u32 = 101;

/// libpcap's largest snap length; tcpdump refuses longer records as invalid.
const MAXIMUM_SNAPLEN: usize = 262_144;

/// The timestamp at the start of each line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeStyle {
    /// Local time of day, `HH:MM:SS.ffffff` (tcpdump's default).
    #[default]
    Clock,
    /// None (`-t`).
    None,
    /// Seconds since the epoch, `SSSSSSSSSS.ffffff` (`-tt`).
    Epoch,
    /// Time since the previous packet, ` HH:MM:SS.ffffff` (`-ttt`).
    Delta,
    /// Local date and time, `YYYY-MM-DD HH:MM:SS.ffffff` (`-tttt`).
    Date,
    /// Time since the first packet (`-ttttt`).
    SinceFirst,
}

/// What a raw dump after each packet shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpStyle {
    /// Hex (`-x`).
    Hex,
    /// Hex and ASCII (`-X`).
    HexAscii,
    /// ASCII (`-A`).
    Ascii,
}

/// A raw dump after each packet's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dump {
    pub style: DumpStyle,
    /// Include the link-layer header (`-xx`, `-XX`, `-AA`).
    pub link_layer: bool,
}

/// How packets are printed; each field is a tcpdump flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrintOptions {
    /// `-t` .. `-ttttt`.
    pub time: TimeStyle,
    /// Fractions of a second in nanoseconds (`--nano`) rather than microseconds.
    pub nanos: bool,
    /// Print the link-layer header (`-e`).
    pub link_header: bool,
    /// `-v` count: 1 adds IP header fields and checksums, 2 (`-vv`) a few more details.
    pub verbose: u8,
    /// Less protocol detail (`-q`).
    pub quiet: bool,
    /// Absolute TCP sequence numbers (`-S`).
    pub absolute_seq: bool,
    /// `-x`, `-X`, `-A` and their link-layer variants.
    pub dump: Option<Dump>,
    /// TCP connections remembered for relative sequence numbers (at most; about 100 bytes
    /// each). 0 behaves as 1.
    pub tcp_flows: usize,
}

impl Default for PrintOptions {
    fn default() -> Self {
        Self {
            time: TimeStyle::Clock,
            nanos: false,
            link_header: false,
            verbose: 0,
            quiet: false,
            absolute_seq: false,
            dump: None,
            tcp_flows: DEFAULT_TCP_FLOWS,
        }
    }
}

/// Which way a packet crossed its interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    Unknown,
    /// Received (TC ingress, XDP).
    In,
    /// Sent (TC egress).
    Out,
}

/// One packet to print.
#[derive(Debug, Clone, Copy)]
pub struct PacketRef<'a> {
    /// ns since the Unix epoch.
    pub ts_ns: u64,
    /// The interface's name, given when the capture covers several interfaces: the line then
    /// names it and the direction, as tcpdump's `-i any` does.
    pub interface: Option<&'a str>,
    pub direction: Direction,
    /// pcap link type ([`LINKTYPE_ETHERNET`], [`LINKTYPE_RAW`]).
    pub linktype: u32,
    /// Length on the wire, in bytes (at least `data.len()`).
    pub orig_len: u32,
    /// The captured bytes.
    pub data: &'a [u8],
}

/// Prints packets one after another; see the module documentation.
#[derive(Debug)]
pub struct Printer {
    opts: PrintOptions,
    clock: time::Clock,
    flows: FlowTable,
    line: Vec<u8>,
}

/// A printer stopped because the captured bytes ended (tcpdump's longjmp): the caller's line
/// gets ` [|proto]` with the protocol being printed at the time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Trunc;

pub(crate) type R<T> = Result<T, Trunc>;

#[inline]
pub(crate) fn u8_at(b: &[u8], i: usize) -> R<u8> {
    b.get(i).copied().ok_or(Trunc)
}

#[inline]
pub(crate) fn be16(b: &[u8], i: usize) -> R<u16> {
    match b.get(i..i + 2) {
        Some(s) => Ok(u16::from_be_bytes([s[0], s[1]])),
        None => Err(Trunc),
    }
}

#[inline]
pub(crate) fn be24(b: &[u8], i: usize) -> R<u32> {
    match b.get(i..i + 3) {
        Some(s) => Ok(u32::from_be_bytes([0, s[0], s[1], s[2]])),
        None => Err(Trunc),
    }
}

#[inline]
pub(crate) fn be32(b: &[u8], i: usize) -> R<u32> {
    match b.get(i..i + 4) {
        Some(s) => Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]])),
        None => Err(Trunc),
    }
}

#[inline]
pub(crate) fn bytes(b: &[u8], i: usize, n: usize) -> R<&[u8]> {
    b.get(i..i.checked_add(n).ok_or(Trunc)?).ok_or(Trunc)
}

/// `b` cut to at most `len` bytes (tcpdump's `nd_push_snaplen`).
#[inline]
pub(crate) fn cap(b: &[u8], len: usize) -> &[u8] {
    &b[..b.len().min(len)]
}

/// Names of the bits set in `v`, in table order, joined by `sep`; `none` when no bit of the
/// table is set (tcpdump's `bittok2str`).
pub(crate) fn bits(out: &mut Vec<u8>, table: &[(u32, &str)], v: u32, sep: &str, none: &str) {
    let mut first = true;
    for &(bit, name) in table {
        if bit != 0 && v & bit == bit {
            if !first {
                out.s(sep);
            }
            out.s(name);
            first = false;
        }
    }
    if first {
        out.s(none);
    }
}

/// The printing state of one packet.
pub(crate) struct Ctx<'a> {
    pub(crate) out: &'a mut Vec<u8>,
    pub(crate) o: &'a PrintOptions,
    /// What a truncation marker names (tcpdump's `ndo_protocol`).
    pub(crate) proto: &'static str,
    pub(crate) flows: &'a mut FlowTable,
}

impl Ctx<'_> {
    /// ` [|proto]`.
    pub(crate) fn trunc_mark(&mut self) {
        self.out.s(" [|");
        self.out.s(self.proto);
        self.out.c(b']');
    }

    pub(crate) fn invalid(&mut self) {
        self.out.s(" (invalid)");
    }

    pub(crate) fn v(&self) -> u8 {
        self.o.verbose
    }

    pub(crate) fn e(&self) -> bool {
        self.o.link_header
    }

    /// `-q`, `-x` and `-X` (not `-A`) turn off the dumps of payloads tcpdump cannot decode
    /// (`ndo_suppress_default_print`).
    pub(crate) fn suppress_default(&self) -> bool {
        self.o.quiet
            || self
                .o
                .dump
                .is_some_and(|d| matches!(d.style, DumpStyle::Hex | DumpStyle::HexAscii))
    }

    /// What tcpdump prints for a payload it cannot decode (`ND_DEFAULTPRINT`).
    pub(crate) fn default_print(&mut self, b: &[u8]) {
        dump::hex_ascii(self.out, "\n\t", b, 0);
    }
}

impl Printer {
    /// A printer with these options and no history.
    #[must_use]
    pub fn new(opts: PrintOptions) -> Self {
        Self {
            clock: time::Clock::new(opts.time, opts.nanos),
            flows: FlowTable::new(opts.tcp_flows),
            opts,
            line: Vec::with_capacity(256),
        }
    }

    #[must_use]
    pub fn options(&self) -> &PrintOptions {
        &self.opts
    }

    /// Appends the text of `p` to `out`, ending with a newline.
    pub fn format(&mut self, p: &PacketRef<'_>, out: &mut Vec<u8>) {
        let caplen = p.data.len();
        let len = p.orig_len as usize;
        let mut invalid = Vec::new();
        if caplen == 0 {
            invalid.push("caplen==0".to_string());
        }
        if len == 0 {
            invalid.push("len==0".to_string());
        } else if len < caplen {
            invalid.push(format!("len({len}) < caplen({caplen})"));
        }
        if caplen > MAXIMUM_SNAPLEN {
            invalid.push(format!("caplen({caplen}) > {MAXIMUM_SNAPLEN}"));
        }
        if len > MAXIMUM_SNAPLEN {
            invalid.push(format!("len({len}) > {MAXIMUM_SNAPLEN}"));
        }
        if !invalid.is_empty() {
            out.s("[Invalid header: ");
            out.s(&invalid.join(", "));
            out.s("]\n");
            return;
        }
        self.clock.write(out, p.ts_ns);
        if let Some(name) = p.interface {
            out.pad_right(name, 5);
            out.c(b' ');
            out.pad_right(direction_text(p), 3);
            out.c(b' ');
        }
        let mut cx = Ctx {
            out,
            o: &self.opts,
            proto: "",
            flows: &mut self.flows,
        };
        let hdrlen = match p.linktype {
            LINKTYPE_ETHERNET => {
                cx.proto = "ether";
                cx.ether(p.data, len)
            }
            LINKTYPE_RAW => {
                cx.proto = "raw";
                if cx.e() {
                    cx.out.s("ip: ");
                }
                cx.ip_n(p.data, len).map(|()| 0)
            }
            other => {
                cx.out.s("[unsupported link type ");
                cx.out.dec(u64::from(other));
                cx.out.c(b']');
                Ok(0)
            }
        };
        let hdrlen = if let Ok(h) = hdrlen {
            h
        } else {
            cx.trunc_mark();
            0
        };
        if let Some(d) = self.opts.dump {
            let from = if d.link_layer { 0 } else { hdrlen };
            if from == 0 || caplen > from {
                let b = &p.data[from.min(caplen)..];
                match d.style {
                    DumpStyle::HexAscii => dump::hex_ascii(out, "\n\t", b, 0),
                    DumpStyle::Hex => dump::hex(out, "\n\t", b),
                    DumpStyle::Ascii => dump::ascii(out, b),
                }
            }
        }
        out.c(b'\n');
    }

    /// Writes the text of `p` to `out` in one `write_all`.
    ///
    /// # Errors
    /// The writer's error (a closed pipe, a full disk).
    pub fn write<W: Write + ?Sized>(&mut self, out: &mut W, p: &PacketRef<'_>) -> io::Result<()> {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        self.format(p, &mut line);
        let r = out.write_all(&line);
        self.line = line;
        r
    }
}

fn direction_text(p: &PacketRef<'_>) -> &'static str {
    match p.direction {
        Direction::Out => "Out",
        Direction::Unknown => "?",
        Direction::In => match (p.linktype, p.data.first()) {
            (LINKTYPE_ETHERNET, Some(_)) if p.data.len() >= 6 && p.data[..6] == [0xff; 6] => "B",
            (LINKTYPE_ETHERNET, Some(b)) if b & 1 == 1 => "M",
            _ => "In",
        },
    }
}
