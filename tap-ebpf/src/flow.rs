//! The per-flow budget (`--flow-budget`, see `tap_common::flow`): after the filter and the
//! limits select a packet, its flow's use so far is looked up in an LRU hash map; a packet of a
//! flow that has used its budget is counted and not copied, unless it is a TCP SYN, FIN or RST.
//! A flow not in the table (new, or evicted by the LRU) starts over.
//!
//! Off unless the loader sets [`TAP_FLOW_BUDGET`]: a constant to the verifier, which then drops
//! all of it, so a capture without a budget runs the very same code as before.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use tap_common::{
    counters,
    flow::{self, DEFAULT_FLOW_TABLE, FlowKey, UNIT_PACKETS},
};

use crate::{
    count,
    filter::Window,
    global, load_window,
    source::{Meta, Source},
};

/// Flow → bytes or packets used. The loader sizes it to `--flow-table-size`.
#[map]
static TAP_FLOWS: LruHashMap<FlowKey, u64> = LruHashMap::with_max_entries(DEFAULT_FLOW_TABLE, 0);

/// Per-CPU room for the key being looked up: too big for the stack beside the rest.
#[map]
static TAP_FLOW_KEY: PerCpuArray<FlowKey> = PerCpuArray::with_max_entries(1, 0);

/// The budget in bytes or packets ([`TAP_FLOW_UNIT`]); 0: no budget. Set by the loader
/// (`.rodata`).
#[unsafe(no_mangle)]
static TAP_FLOW_BUDGET: u64 = 0;
/// `tap_common::flow::UNIT_BYTES` or `UNIT_PACKETS`. Set by the loader.
#[unsafe(no_mangle)]
static TAP_FLOW_UNIT: u32 = 0;

#[inline(always)]
fn budget() -> u64 {
    // SAFETY: a plain read of a loader-initialised global; volatile so the default is not folded.
    unsafe { core::ptr::read_volatile(&TAP_FLOW_BUDGET) }
}

/// Whether the loader set a budget.
#[inline(always)]
pub(crate) fn enabled() -> bool {
    budget() != 0
}

/// Whether a selected packet of `orig_len` bytes is copied under its flow's budget; counts the
/// packets it is not. `window` is the packet's header window, loaded here when the filter did
/// not load it (and left there for the copy).
#[inline(always)]
pub(crate) fn admit<S: Source>(
    src: &S,
    meta: &Meta,
    orig_len: u32,
    window: &mut Option<Window>,
) -> bool {
    let w = match *window {
        Some(w) => w,
        None => match load_window(src, meta.offset) {
            Some(w) => {
                *window = Some(w);
                w
            }
            None => return true,
        },
    };
    admit_window(w.bytes, w.len, meta.tunnel, meta.tunnel_id, orig_len)
}

/// The window's bytes `off..off + 4`, read at once.
#[inline(always)]
fn quad(w: &Window, off: u32) -> Option<[u8; 4]> {
    const LAST: u32 = crate::filter::WINDOW as u32 - 4;
    if off > LAST || off + 4 > w.len {
        return None;
    }
    // SAFETY: a local read; volatile keeps the bound check on the register the load uses.
    let off = unsafe { core::ptr::read_volatile(&off) };
    if off > LAST {
        return None;
    }
    // SAFETY: off + 4 <= WINDOW bytes of the window's map value; unaligned reads of map values
    // are allowed (and the window holds the packet's bytes, at any offset).
    let word = unsafe {
        core::ptr::read_unaligned((w.bytes.cast::<u8>()).add(off as usize).cast::<u32>())
    };
    Some(word.to_ne_bytes())
}

/// [`admit`] for a loaded window. A function of its own (a BPF subprogram) with a stack frame
/// of its own: inlined, its locals would push the program's frame past the verifier's 512
/// bytes.
#[inline(never)]
fn admit_window(
    bytes: *const [u8; crate::filter::WINDOW],
    len: u32,
    tunnel: u8,
    tunnel_id: u32,
    orig_len: u32,
) -> bool {
    let w = Window { bytes, len };
    let Some(key) = TAP_FLOW_KEY.get_ptr_mut(0) else {
        return true;
    };
    // SAFETY: this CPU's scratch value, used by this run alone.
    let key = unsafe { &mut *key };
    let Some(always) = flow::parse_into(|i| w.u8_at(i), |i| quad(&w, i), (tunnel, tunnel_id), key)
    else {
        return true;
    };
    let cost = if global(&TAP_FLOW_UNIT) == UNIT_PACKETS {
        1
    } else {
        u64::from(orig_len)
    };
    if let Some(used) = TAP_FLOWS.get_ptr_mut(&*key) {
        // SAFETY: a map value, 8-byte aligned, valid for this run.
        if unsafe { core::ptr::read_volatile(used) } < budget() {
            // Both directions of a flow may run on two CPUs at once: an atomic add (BPF_XADD),
            // which the target offers only as an intrinsic (it has no compare-and-swap, so no
            // `AtomicU64::fetch_add`). The check before it is not atomic with it: two CPUs at
            // the limit may each copy one packet more.
            // SAFETY: as above; the old value is not used.
            unsafe {
                core::intrinsics::atomic_xadd::<
                    u64,
                    u64,
                    { core::intrinsics::AtomicOrdering::Relaxed },
                >(used, cost);
            }
            return true;
        }
        if always {
            return true;
        }
        count(counters::OVER_BUDGET, 1);
        return false;
    }
    // A new flow (or one the table evicted). Another CPU may add it at the same moment: then
    // this packet is copied and not counted against it.
    if TAP_FLOWS
        .insert(&*key, &cost, u64::from(BPF_NOEXIST))
        .is_ok()
    {
        count(counters::FLOWS_NEW, 1);
    }
    true
}
