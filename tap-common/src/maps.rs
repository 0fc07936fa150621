//! Names of the maps and programs in the BPF object: the one place they are spelled.

/// Ring buffer carrying [`crate::event::PacketHeader`] + packet bytes to user space.
pub const RING: &str = "TAP_RING";
/// Per-CPU array of `u64`, indexed by [`crate::counters::Counter`].
pub const COUNTERS: &str = "TAP_COUNTERS";

/// Scratch space for the header window the filter reads (per CPU).
pub const SCRATCH: &str = "TAP_SCRATCH";
/// Filter control: [`crate::filter::FilterCtl`], one entry.
pub const FILTER_CTL: &str = "TAP_FILTER_CTL";
/// Filter slots: [`crate::filter::FilterSlot`], [`crate::filter::SLOTS`] entries.
pub const FILTER_SLOTS: &str = "TAP_FILTER_SLOTS";
/// Filter graph nodes: [`crate::filter::FilterNode`], `SLOTS * MAX_NODES` entries.
pub const FILTER_NODES: &str = "TAP_FILTER_NODES";
/// IPv4 LPM trie: [`crate::filter::Addr4Key`] → `u64` set mask.
pub const FILTER_ADDR4: &str = "TAP_FILTER_ADDR4";
/// IPv6 LPM trie: [`crate::filter::Addr6Key`] → `u64` set mask.
pub const FILTER_ADDR6: &str = "TAP_FILTER_ADDR6";
/// Port sets: array of `u64` masks indexed by `slot * 65536 + port`.
pub const FILTER_PORTS: &str = "TAP_FILTER_PORTS";
/// MAC sets: [`crate::filter::MacKey`] → `u64` set mask.
pub const FILTER_MACS: &str = "TAP_FILTER_MACS";
/// Per-CPU rule hit counters, indexed by `slot * MAX_RULES + rule`.
pub const RULE_HITS: &str = "TAP_RULE_HITS";
/// Per-CPU sampling and rate-cap state: `[sample counter, window start ns, window count, 0]`.
pub const LIMIT_STATE: &str = "TAP_LIMIT_STATE";

/// Per-interface counters (see [`crate::ifstats`]): the direct slot table,
/// [`crate::ifstats::IfSlot`] at `ifindex % IF_SLOT_ENTRIES`.
pub const IF_SLOTS: &str = "TAP_IF_SLOTS";
/// ... the interfaces whose direct entry another one holds: ifindex → slot (hash).
pub const IF_SLOTS_MORE: &str = "TAP_IF_SLOTS_MORE";
/// ... the counters: per-CPU array of `u64`, indexed by [`crate::ifstats::base`] + counter.
pub const IF_COUNTERS: &str = "TAP_IF_COUNTERS";
/// ... per CPU, the base index of the packet being looked at (the programs' own scratch).
pub const IF_CURRENT: &str = "TAP_IF_CURRENT";

/// The per-flow budget's table: LRU hash of [`crate::flow::FlowKey`] → `u64` bytes or packets
/// used. The loader sizes it to `--flow-table-size`.
pub const FLOWS: &str = "TAP_FLOWS";

/// XDP entry point.
pub const PROG_XDP: &str = "xdp_tap";
/// TC classifier entry point for ingress.
pub const PROG_TC_INGRESS: &str = "tc_tap_ingress";
/// TC classifier entry point for egress.
pub const PROG_TC_EGRESS: &str = "tc_tap_egress";
/// An XDP program the verifier must refuse (unbounded packet read): used by the tests that
/// check how a refused object is reported. Never attached in normal use.
pub const PROG_XDP_REJECTED: &str = "xdp_tap_rejected";

/// Global (`.rodata`): decapsulation bits, `tap_common::config::decap`.
pub const GLOBAL_DECAP: &str = "TAP_DECAP";
/// Global (`.rodata`): VXLAN UDP port, host order.
pub const GLOBAL_VXLAN_PORT: &str = "TAP_VXLAN_PORT";
/// Global (`.rodata`): 1 to drop every packet after copying (XDP_DROP / TC_ACT_SHOT).
pub const GLOBAL_CONSUME: &str = "TAP_CONSUME";
/// Global (`.rodata`): wake the reader once this many bytes wait in the ring.
pub const GLOBAL_WAKEUP_BYTES: &str = "TAP_WAKEUP_BYTES";
/// Global (`.rodata`): ... or once this many ns passed since the CPU last woke it.
pub const GLOBAL_WAKEUP_NS: &str = "TAP_WAKEUP_NS";
/// Global (`.rodata`): 1 to count per interface and hook ([`crate::ifstats`]).
pub const GLOBAL_IF_STATS: &str = "TAP_IF_STATS";
/// Global (`.rodata`, `u64`): the per-flow budget, in bytes or packets (0: no budget).
pub const GLOBAL_FLOW_BUDGET: &str = "TAP_FLOW_BUDGET";
/// Global (`.rodata`): what the budget counts, [`crate::flow::UNIT_BYTES`] or `UNIT_PACKETS`.
pub const GLOBAL_FLOW_UNIT: &str = "TAP_FLOW_UNIT";
/// Global (`.rodata`) holding the snap length, set by the loader: [`crate::config::SNAPLEN`].
pub const GLOBAL_SNAPLEN: &str = "TAP_SNAPLEN";
