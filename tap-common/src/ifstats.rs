//! Counters per interface and hook, beside the capture-wide ones of [`crate::counters`].
//!
//! The loader gives each interface it attaches to a slot (1..[`MAX_IF_SLOTS`]; 0 holds the
//! packets of interfaces without one): [`crate::maps::IF_SLOTS`] maps an interface index to its
//! slot directly at `ifindex % IF_SLOT_ENTRIES`, and [`crate::maps::IF_SLOTS_MORE`] holds the
//! interfaces whose direct entry another one took. The programs look the slot up once per
//! packet, count it as seen, and count a few more counters ([`per_interface`]) again at
//! `(slot * HOOKS + hook - 1) * IF_COUNT + index` of the per-CPU array
//! [`crate::maps::IF_COUNTERS`].
//!
//! All of it only when the loader switches it on ([`crate::maps::GLOBAL_IF_STATS`]): the
//! verifier then removes it from programs that do not count per interface, at no cost to them.

use crate::counters::{self, Counter};

/// Interface slots, slot 0 included.
pub const MAX_IF_SLOTS: u32 = 256;
/// Entries of the direct slot table (a power of two): interface index modulo this.
pub const IF_SLOT_ENTRIES: u32 = 4096;
/// Hooks counted apart: `crate::event::HOOK_*` 1 to 3.
pub const HOOKS: u32 = 3;

/// Index of a per-interface counter.
pub type IfCounter = u32;
/// Packets the program ran on ([`counters::SEEN`]).
pub const IF_SEEN: IfCounter = 0;
/// Packets the filter selected ([`counters::MATCHED`]).
pub const IF_MATCHED: IfCounter = 1;
/// Packets lost because the ring had no room ([`counters::RING_FULL`]).
pub const IF_RING_FULL: IfCounter = 2;
/// Per-interface counters per (slot, hook).
pub const IF_COUNT: u32 = 3;

/// Entries of [`crate::maps::IF_COUNTERS`].
pub const IF_COUNTER_ENTRIES: u32 = MAX_IF_SLOTS * HOOKS * IF_COUNT;

/// The per-interface counter that `counter` is also counted in, if any. [`IF_SEEN`] is counted
/// where the slot is looked up, not through this.
pub const fn per_interface(counter: Counter) -> Option<IfCounter> {
    match counter {
        counters::MATCHED => Some(IF_MATCHED),
        counters::RING_FULL => Some(IF_RING_FULL),
        _ => None,
    }
}

/// Index in [`crate::maps::IF_COUNTERS`] of the first counter of `slot` and `hook`
/// (`crate::event::HOOK_*`); any slot and hook give an index within the array.
pub const fn base(slot: u32, hook: u8) -> u32 {
    let slot = if slot < MAX_IF_SLOTS { slot } else { 0 };
    let hook = (hook as u32).wrapping_sub(1) % HOOKS;
    (slot * HOOKS + hook) * IF_COUNT
}

/// An entry of the direct slot table: which interface holds it, and its slot (0: none).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfSlot {
    pub ifindex: u32,
    pub slot: u32,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: repr(C), two u32s, no padding.
    unsafe impl aya::Pod for super::IfSlot {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_stay_within_the_array() {
        assert_eq!(base(0, 1), 0);
        assert_eq!(base(1, 1), HOOKS * IF_COUNT);
        assert_eq!(base(1, 3), (HOOKS + 2) * IF_COUNT);
        for slot in [0, 1, MAX_IF_SLOTS - 1, MAX_IF_SLOTS, u32::MAX] {
            for hook in [0, 1, 2, 3, 4, u8::MAX] {
                assert!(base(slot, hook) + IF_COUNT <= IF_COUNTER_ENTRIES);
            }
        }
        assert!(IF_SLOT_ENTRIES.is_power_of_two());
        assert_eq!(size_of::<IfSlot>(), 8);
    }

    #[test]
    fn the_per_interface_counters() {
        assert_eq!(
            per_interface(counters::SEEN),
            None,
            "counted with the look-up"
        );
        assert_eq!(per_interface(counters::MATCHED), Some(IF_MATCHED));
        assert_eq!(per_interface(counters::RING_FULL), Some(IF_RING_FULL));
        assert_eq!(per_interface(counters::COPIED), None);
    }
}
