//! Per-CPU counters: an index into the [`crate::maps::COUNTERS`] array of `u64`.

/// Counter index. The values are stable: user space reads them by number.
pub type Counter = u32;

/// Packets the program ran on.
pub const SEEN: Counter = 0;
/// Packets copied into the ring (submitted records).
pub const COPIED: Counter = 1;
/// Packets lost because the ring had no room (a failed reserve).
pub const RING_FULL: Counter = 2;
/// Bytes copied into the ring (packet bytes, not headers).
pub const COPIED_BYTES: Counter = 3;
/// Packets whose bytes could not be read (a helper failed); never expected.
pub const READ_ERROR: Counter = 4;
/// Packets the filter selected (equal to `SEEN` while no filter is set).
pub const MATCHED: Counter = 5;

/// Matched packets skipped by `--sample` (1 in N kept).
pub const SAMPLED_OUT: Counter = 6;
/// Matched packets skipped by the packet-rate cap.
pub const RATE_LIMITED: Counter = 7;
/// Packets the filter could not evaluate (graph walk too long, missing node); never expected.
pub const FILTER_ERROR: Counter = 8;

/// Packets copied shorter than the snap length asked for: XDP frames longer than the helper
/// can read (`crate::config::XDP_MAX_END`). Never expected on the TC hooks.
pub const TRUNCATED: Counter = 9;

/// Selected packets not copied because their flow had used its budget (`--flow-budget`).
pub const OVER_BUDGET: Counter = 10;
/// Flows added to the flow table (`--flow-budget`); those evicted are this less the table's
/// entries.
pub const FLOWS_NEW: Counter = 11;

/// Number of counters; the size of the array.
pub const COUNT: u32 = 12;

/// Names for the summary and metrics, by index.
pub const NAMES: [&str; COUNT as usize] = [
    "seen",
    "copied",
    "ring_full",
    "copied_bytes",
    "read_error",
    "matched",
    "sampled_out",
    "rate_limited",
    "filter_error",
    "truncated",
    "over_budget",
    "flows_new",
];
