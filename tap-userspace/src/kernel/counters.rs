//! The programs' counters: a per-CPU array indexed like `tap_common::counters`, summed.

use aya::maps::{MapData, PerCpuArray};
use tap_common::counters;

/// Per-CPU counters summed, indexed like `tap_common::counters`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelCounters {
    pub seen: u64,
    pub matched: u64,
    pub copied: u64,
    pub copied_bytes: u64,
    pub ring_full: u64,
    pub read_error: u64,
    pub sampled_out: u64,
    pub rate_limited: u64,
    pub filter_error: u64,
    /// Packets copied shorter than the snap length asked for (XDP's reach, see
    /// `tap_common::config::XDP_MAX_END`).
    pub truncated: u64,
    /// Selected packets not copied: their flow had used its budget (`--flow-budget`).
    pub over_budget: u64,
    /// Flows added to the budget's table.
    pub flows_new: u64,
}

/// Sums the per-CPU counters.
pub fn read_counters(map: &PerCpuArray<MapData, u64>) -> KernelCounters {
    let get = |index: u32| map.get(&index, 0).map_or(0, |v| v.iter().sum::<u64>());
    KernelCounters {
        seen: get(counters::SEEN),
        matched: get(counters::MATCHED),
        copied: get(counters::COPIED),
        copied_bytes: get(counters::COPIED_BYTES),
        ring_full: get(counters::RING_FULL),
        read_error: get(counters::READ_ERROR),
        sampled_out: get(counters::SAMPLED_OUT),
        rate_limited: get(counters::RATE_LIMITED),
        filter_error: get(counters::FILTER_ERROR),
        truncated: get(counters::TRUNCATED),
        over_budget: get(counters::OVER_BUDGET),
        flows_new: get(counters::FLOWS_NEW),
    }
}
