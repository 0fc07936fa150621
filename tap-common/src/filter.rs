//! The compiled filter: what the eBPF programs evaluate. User space compiles a pcap-filter
//! expression into this form (`tap-userspace/src/filter`); the kernel side walks it.
//!
//! # Shape
//! A filter is a decision graph of [`FilterNode`]s, like classic BPF: each node tests one
//! [`atom`](op) and jumps to `jt` or `jf`. Targets are node indexes (always forward, so a walk
//! visits each node at most once), [`TARGET_REJECT`], or [`TARGET_ACCEPT`]` | rule` to accept with
//! a rule number (a top-level alternative of the expression, for the per-rule hit counters).
//!
//! # Why this structure (scale)
//! Large rule sets are sets of hosts, subnets and ports. Those never become one node each: OR-ed
//! tests of the same kind are merged into one *set atom*, whose values live in maps that answer in
//! one lookup whatever their size: an LPM trie per address family (longest-prefix match over
//! subnets and hosts), a 65,536-entry array for ports (ranges included), a hash for MAC
//! addresses. A lookup returns a 64-bit mask of the sets that contain the value (the compiler
//! folds covering prefixes into each entry), so 4,096 subnets cost one trie lookup, not 4,096
//! compares. The graph itself stays small (one node per distinct test), and the per-packet cost
//! is bounded by [`MAX_STEPS`].
//!
//! # Atomic replacement
//! Everything is stored twice, in slot 0 and slot 1. The programs read [`FilterCtl::active`]
//! once per packet and use that slot throughout. User space writes a new filter into the inactive
//! slot, then flips `active` with one map update: every packet sees the old filter or the new one,
//! never a mix, and nothing is detached.
//!
//! # Semantics
//! Atoms follow libpcap's generated code (what `tcpdump -r FILE EXPR` selects), including its
//! quirks: fields are read at the offsets of the `vlan` depth the expression reached, IPv6 ports
//! are read only right after the fixed header, and a test whose bytes are missing from a truncated
//! packet rejects the packet outright (classic BPF returns 0 on an out-of-bounds load).

/// Number of filter slots (double buffering).
pub const SLOTS: u32 = 2;
/// Largest graph, in nodes, per slot.
pub const MAX_NODES: u32 = 256;
/// Longest walk through the graph, in nodes.
pub const MAX_STEPS: u32 = 64;
/// Rules (top-level alternatives) with their own hit counter, per slot.
pub const MAX_RULES: u32 = 256;
/// Set atoms per kind (bits of a lookup mask).
pub const MAX_SETS: u32 = 64;
/// Most VLAN tags the programs look through.
pub const MAX_VLAN_DEPTH: u8 = 2;

/// Jump target: reject the packet.
pub const TARGET_REJECT: u16 = 0xffff;
/// Jump target flag: accept the packet; the low 15 bits are the rule number.
pub const TARGET_ACCEPT: u16 = 0x8000;

// Targets share one u16: node indexes must stay below the accept flag, and rule numbers must fit
// in the 15 bits beside it. Checked at compile time, so no build (eBPF included) can break this.
const _: () = assert!(MAX_NODES < TARGET_ACCEPT as u32);
const _: () = assert!(MAX_RULES <= 0x7fff);

/// Atom kinds ([`FilterNode::op`]).
pub mod op {
    /// Always true (a filter that is just `accept`).
    pub const TRUE: u8 = 0;
    /// EtherType at the node's depth equals `arg` (`ether proto`, `ip`, `ip6`, `arp`, `rarp`).
    pub const ETHERTYPE: u8 = 1;
    /// A VLAN tag (TPID 0x8100, 0x88a8 or 0x9100) at the node's depth; VLAN id == `arg` unless
    /// `arg` is [`super::VLAN_ANY`].
    pub const VLAN: u8 = 2;
    /// IPv4 and protocol field == `arg` (fragments included, like `ip proto`).
    pub const IP4_PROTO: u8 = 3;
    /// IPv6 and next header == `arg`, or next header is a fragment header whose next header is
    /// `arg` (libpcap's `ip6 proto`).
    pub const IP6_PROTO: u8 = 4;
    /// IPv4 source/destination address in set `set` (LPM), per `dir`.
    pub const ADDR4: u8 = 5;
    /// IPv6 source/destination address in set `set` (LPM), per `dir`.
    pub const ADDR6: u8 = 6;
    /// ARP/RARP (EtherType `arg`) sender/target protocol address in IPv4 set `set`, per `dir`.
    pub const ARP_ADDR: u8 = 7;
    /// IPv4, protocol in the `arg` mask of [`super::l4`], not a non-first fragment, and the
    /// source/destination port in port set `set`, per `dir`.
    pub const PORT4: u8 = 8;
    /// IPv6, next header (no extension header walk, as libpcap) in the `arg` mask, and the port
    /// in port set `set`, per `dir`.
    pub const PORT6: u8 = 9;
    /// Ethernet source/destination address in MAC set `set`, per `dir`.
    pub const ETHER_ADDR: u8 = 10;
    /// The transport protocol found by walking the IPv6 extension headers (or the IPv4 protocol)
    /// equals `arg` (`ip6 protochain`, `ip protochain`).
    pub const PROTOCHAIN: u8 = 11;
    /// Number of kinds.
    pub const COUNT: u8 = 12;
}

/// Address/port direction ([`FilterNode::dir`]).
pub mod dir {
    /// Source only.
    pub const SRC: u8 = 1;
    /// Destination only.
    pub const DST: u8 = 2;
    /// Source or destination (the default).
    pub const SRC_OR_DST: u8 = 3;
    /// Source and destination.
    pub const SRC_AND_DST: u8 = 4;
}

/// Transport protocol mask bits for [`op::PORT4`]/[`op::PORT6`] (`arg`).
pub mod l4 {
    pub const TCP: u32 = 1;
    pub const UDP: u32 = 2;
    pub const SCTP: u32 = 4;
    pub const ANY: u32 = TCP | UDP | SCTP;
}

/// [`op::VLAN`] without an id.
pub const VLAN_ANY: u32 = 0xffff_ffff;

/// One node of the decision graph. 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterNode {
    /// One of [`op`].
    pub op: u8,
    /// VLAN depth (number of `vlan` keywords before this test in the expression), 0..=2.
    pub depth: u8,
    /// One of [`dir`] for address and port atoms; 0 otherwise.
    pub dir: u8,
    /// Set number (bit of the lookup mask) for set atoms, 0..64.
    pub set: u8,
    /// Operand: EtherType, protocol number, VLAN id, [`l4`] mask.
    pub arg: u32,
    /// Target when the atom holds.
    pub jt: u16,
    /// Target when it does not.
    pub jf: u16,
    pub _pad: u32,
}

/// Per-slot description of a filter. Index `slot` of the filter-slot array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterSlot {
    /// 0: no filter, everything matches (rule 0). 1: walk the graph from `entry`.
    pub enabled: u32,
    /// First node (or a target, for a constant filter).
    pub entry: u16,
    pub _pad: u16,
    /// Which lookups the graph needs ([`uses`] bits), so the others are skipped.
    pub uses: u32,
    pub _pad2: u32,
}

/// [`FilterSlot::uses`] bits.
pub mod uses {
    pub const ADDR4: u32 = 1;
    pub const ADDR6: u32 = 2;
    pub const PORTS: u32 = 4;
    pub const MAC: u32 = 8;
    pub const ARP: u32 = 16;
}

/// Capture-wide control, index 0 of the control array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterCtl {
    /// Slot in use, 0 or 1. Flipped by user space after the other slot is written.
    pub active: u32,
    /// Keep 1 in `sample` matched packets (0 or 1: all), per CPU.
    pub sample: u32,
    /// Most matched packets per second kept, per CPU (0: no cap).
    pub rate_per_cpu: u32,
    pub _pad: u32,
}

/// Data part of the IPv4 LPM trie key (the map key is `{ prefix_len: u32, data }`, packed);
/// the prefix length counts the 8 slot bits too, so one trie serves both slots.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Addr4Data {
    pub slot: u8,
    /// Network byte order.
    pub addr: [u8; 4],
    pub _pad: [u8; 3],
}

/// Data part of the IPv6 LPM trie key; see [`Addr4Data`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Addr6Data {
    pub slot: u8,
    /// Network byte order.
    pub addr: [u8; 16],
    pub _pad: [u8; 3],
}

/// Key of the MAC hash.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MacKey {
    pub slot: u8,
    pub _pad: u8,
    pub mac: [u8; 6],
}

/// Entries of the IPv4 and IPv6 LPM tries (per slot: subnets and hosts of all sets).
pub const MAX_ADDRS: u32 = 65536;
/// Entries of the MAC hash.
pub const MAX_MACS: u32 = 4096;
/// Port array entries: one per port per slot.
pub const PORT_ENTRIES: u32 = SLOTS * 65536;

#[cfg(feature = "user")]
mod user {
    // SAFETY: repr(C), integers and byte arrays only, explicit padding.
    unsafe impl aya::Pod for super::FilterNode {}
    // SAFETY: repr(C), integers and byte arrays only, explicit padding.
    unsafe impl aya::Pod for super::FilterSlot {}
    // SAFETY: repr(C), integers and byte arrays only, explicit padding.
    unsafe impl aya::Pod for super::FilterCtl {}
    // SAFETY: repr(C), integers and byte arrays only, explicit padding.
    unsafe impl aya::Pod for super::Addr4Data {}
    // SAFETY: repr(C), integers and byte arrays only, explicit padding.
    unsafe impl aya::Pod for super::Addr6Data {}
    // SAFETY: repr(C), integers and byte arrays only, explicit padding.
    unsafe impl aya::Pod for super::MacKey {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        assert_eq!(size_of::<FilterNode>(), 16);
        assert_eq!(size_of::<FilterSlot>(), 16);
        assert_eq!(size_of::<FilterCtl>(), 16);
        assert_eq!(size_of::<Addr4Data>(), 8);
        assert_eq!(size_of::<Addr6Data>(), 20);
        assert_eq!(size_of::<MacKey>(), 8);
    }
}
