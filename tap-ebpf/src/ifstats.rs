//! Counters per interface and hook (`tap_common::ifstats`): the packet's slot is looked up once,
//! when the program starts on it ([`enter`], which counts it as seen), and kept in this CPU's
//! scratch so that `crate::count` can count a per-interface counter again wherever the
//! capture-wide one is counted, without passing it along. Off unless the loader sets
//! [`TAP_IF_STATS`] (a constant to the verifier, which then drops all of it).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use tap_common::ifstats::{
    IF_COUNTER_ENTRIES, IF_SEEN, IF_SLOT_ENTRIES, IfCounter, IfSlot, MAX_IF_SLOTS, base,
};

#[map]
static TAP_IF_SLOTS: Array<IfSlot> = Array::with_max_entries(IF_SLOT_ENTRIES, 0);
#[map]
static TAP_IF_SLOTS_MORE: HashMap<u32, u32> = HashMap::with_max_entries(MAX_IF_SLOTS, 0);
#[map]
static TAP_IF_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(IF_COUNTER_ENTRIES, 0);
#[map]
static TAP_IF_CURRENT: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// 1: count per interface and hook. Set by the loader (`.rodata`).
#[unsafe(no_mangle)]
static TAP_IF_STATS: u32 = 0;

/// Whether the loader switched per-interface counting on.
#[inline(always)]
pub(crate) fn enabled() -> bool {
    crate::global(&TAP_IF_STATS) != 0
}

/// Looks up the slot of `ifindex`, makes it, with `hook`, this CPU's current one, and counts
/// the packet as seen there.
#[inline(always)]
pub(crate) fn enter(ifindex: u32, hook: u8) {
    if !enabled() {
        return;
    }
    let slot = match TAP_IF_SLOTS.get(ifindex & (IF_SLOT_ENTRIES - 1)) {
        Some(entry) if entry.ifindex == ifindex => entry.slot,
        // Another interface took the direct entry (or none has it): the overflow table.
        // SAFETY: a read of a plain u32 value.
        _ => unsafe { TAP_IF_SLOTS_MORE.get(&ifindex) }
            .copied()
            .unwrap_or(0),
    };
    let base = base(slot, hook);
    if let Some(current) = TAP_IF_CURRENT.get_ptr_mut(0) {
        // SAFETY: per-CPU map value, this CPU's only.
        unsafe { *current = base };
    }
    if let Some(seen) = TAP_IF_COUNTERS.get_ptr_mut(base + IF_SEEN) {
        // SAFETY: per-CPU slot; programs do not migrate CPUs while running.
        unsafe { *seen += 1 };
    }
}

/// Adds `n` to per-interface counter `counter` of the current packet's interface and hook.
#[inline(always)]
pub(crate) fn count(counter: IfCounter, n: u64) {
    if !enabled() {
        return;
    }
    let Some(current) = TAP_IF_CURRENT.get(0) else {
        return;
    };
    if let Some(slot) = TAP_IF_COUNTERS.get_ptr_mut(*current + counter) {
        // SAFETY: per-CPU slot; programs do not migrate CPUs while running.
        unsafe { *slot += n };
    }
}
