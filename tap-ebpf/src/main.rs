//! tap's kernel side: an XDP program and a TC classifier (ingress and egress) that copy each
//! packet the filter selects, truncated to the snap length, into a ring buffer record, and let
//! every packet continue untouched.
//!
//! One object; the loader picks the programs it attaches. See `tap-common` for the shared types.
#![no_std]
#![no_main]
// The flow budget's atomic add (see `flow::admit`): the BPF target has no compare-and-swap, so
// core offers its fetch-add only as an intrinsic.
#![feature(core_intrinsics)]
#![expect(internal_features, reason = "core_intrinsics, for BPF_XADD")]

mod decap;
mod emit;
mod filter;
mod flow;
mod ifstats;
mod large;
mod source;

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC, xdp_action},
    helpers::generated::bpf_ktime_get_ns,
    macros::{classifier, map, xdp},
    maps::{Array, HashMap, LpmTrie, PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
};
use tap_common::{
    config::{DEFAULT_RING_SIZE, DEFAULT_SNAPLEN},
    counters,
    event::{DIR_INBOUND, DIR_OUTBOUND, HOOK_TC_EGRESS, HOOK_TC_INGRESS, HOOK_XDP},
    filter::{
        Addr4Data, Addr6Data, FilterCtl, FilterNode, FilterSlot, MAX_ADDRS, MAX_MACS, MAX_NODES,
        MAX_RULES, MacKey, PORT_ENTRIES, SLOTS,
    },
};

use crate::{
    filter::{Verdict, WINDOW, Window},
    source::{Meta, SkbSource, Source, XdpSource},
};

/// Records for user space. The loader resizes it to `--ring-size`.
#[map]
static TAP_RING: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_SIZE, 0);

/// Per-CPU counters, indexed by `tap_common::counters`.
#[map]
static TAP_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counters::COUNT, 0);

/// Per-CPU copy of the packet's first bytes, for the filter.
#[map]
static TAP_SCRATCH: PerCpuArray<[u8; WINDOW]> = PerCpuArray::with_max_entries(1, 0);

#[map]
static TAP_FILTER_CTL: Array<FilterCtl> = Array::with_max_entries(1, 0);
#[map]
static TAP_FILTER_SLOTS: Array<FilterSlot> = Array::with_max_entries(SLOTS, 0);
#[map]
static TAP_FILTER_NODES: Array<FilterNode> = Array::with_max_entries(SLOTS * MAX_NODES, 0);
/// LPM tries need BPF_F_NO_PREALLOC (1).
#[map]
static TAP_FILTER_ADDR4: LpmTrie<Addr4Data, u64> = LpmTrie::with_max_entries(SLOTS * MAX_ADDRS, 1);
#[map]
static TAP_FILTER_ADDR6: LpmTrie<Addr6Data, u64> = LpmTrie::with_max_entries(SLOTS * MAX_ADDRS, 1);
#[map]
static TAP_FILTER_PORTS: Array<u64> = Array::with_max_entries(PORT_ENTRIES, 0);
#[map]
static TAP_FILTER_MACS: HashMap<MacKey, u64> = HashMap::with_max_entries(SLOTS * MAX_MACS, 0);
#[map]
static TAP_RULE_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(SLOTS * MAX_RULES, 0);
/// `[sample counter, rate window start (ns), packets in window, last reader wake-up (ns),
/// keep predictor (see [`likely_kept`])]`, per CPU.
#[map]
static TAP_LIMIT_STATE: PerCpuArray<[u64; 5]> = PerCpuArray::with_max_entries(1, 0);

/// Snap length in bytes, set by the loader (`.rodata`, so the verifier sees a constant).
#[unsafe(no_mangle)]
static TAP_SNAPLEN: u32 = DEFAULT_SNAPLEN;

#[inline(always)]
fn snaplen() -> u32 {
    // SAFETY: a plain read of a global the loader initialised; volatile so the compiler does not
    // fold in the default.
    unsafe { core::ptr::read_volatile(&TAP_SNAPLEN) }
}

/// Adds `n` to a counter of this CPU, and to the current packet's interface and hook's when it
/// is also counted per interface (`counter` is a constant: the test folds away).
#[inline(always)]
pub(crate) fn count(counter: counters::Counter, n: u64) {
    if let Some(slot) = TAP_COUNTERS.get_ptr_mut(counter) {
        // SAFETY: per-CPU slot; programs do not migrate CPUs while running.
        unsafe { *slot += n };
    }
    if let Some(per_interface) = tap_common::ifstats::per_interface(counter) {
        ifstats::count(per_interface, n);
    }
}

/// Decapsulation switches (`tap_common::config::decap`), set by the loader.
#[unsafe(no_mangle)]
static TAP_DECAP: u32 = 0;
/// VXLAN UDP port, set by the loader.
#[unsafe(no_mangle)]
static TAP_VXLAN_PORT: u32 = tap_common::config::VXLAN_PORT as u32;
/// 1: drop every packet after copying (a dedicated monitor interface).
#[unsafe(no_mangle)]
static TAP_CONSUME: u32 = 0;

/// Wake the reader each time this many bytes (a power of two) have been written to the ring,
/// set by the loader.
#[unsafe(no_mangle)]
static TAP_WAKEUP_BYTES: u32 = 4 << 20;
/// ... or once this many ns passed since this CPU last woke it.
#[unsafe(no_mangle)]
static TAP_WAKEUP_NS: u32 = 1_000_000;

/// Notification flags for a ring submit.
///
/// The ring's default wakes the reader whenever it had caught up, which, with a reader fast
/// enough to keep catching up, means a wake-up (an IRQ-work interrupt and a reschedule) per
/// packet: that dominated tap's CPU cost per packet. Instead: no wake-up, unless the producer
/// position just crossed a multiple of `TAP_WAKEUP_BYTES`, or this CPU has not woken the reader
/// for a while. The reader also polls on a timer, which bounds the latency of a lone packet.
///
/// Counting what was written, not what waits: the reader gives ring space back only once the
/// output took the records, so the bytes waiting stay high while it writes, and a threshold on
/// them would fire once and leave the reader asleep with the writer starved.
///
/// `record` is the size of the record just reserved and `now` its timestamp (ns).
#[inline(always)]
pub(crate) fn wakeup_flags(record: u64, now: u64) -> u64 {
    use aya_ebpf::bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_PROD_POS};
    let produced = TAP_RING.query(u64::from(BPF_RB_PROD_POS));
    // The ring's own 8-byte record header counts too. Another CPU's reserve since ours may move
    // the position further: a crossing is then seen twice or not at all, which the timer covers.
    let before = produced.wrapping_sub(record + 8);
    if (produced ^ before) >= u64::from(global(&TAP_WAKEUP_BYTES)) {
        return u64::from(BPF_RB_FORCE_WAKEUP);
    }
    let Some(state) = TAP_LIMIT_STATE.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU map value, this CPU's only.
    let state = unsafe { &mut *state };
    if now.wrapping_sub(state[3]) >= u64::from(global(&TAP_WAKEUP_NS)) {
        state[3] = now;
        return u64::from(BPF_RB_FORCE_WAKEUP);
    }
    u64::from(BPF_RB_NO_WAKEUP)
}

#[inline(always)]
pub(crate) fn global(g: &u32) -> u32 {
    // SAFETY: a plain read of a loader-initialised global; volatile so the default is not folded.
    unsafe { core::ptr::read_volatile(g) }
}

/// The inner frame's offset, as a value the verifier knows only by its bounds. Every tunnel
/// layout (VLAN tags, IP version and options, GRE words, ERSPAN type, GENEVE options) gives the
/// offset a range of its own, and the verifier would walk the filter and the copy once per
/// range: with all tunnels on, close to its 1M-instruction budget. Map memory is not tracked,
/// so a round trip through this CPU's scratch value makes it one state for every layout.
#[inline(always)]
fn forget(offset: u32) -> Option<u32> {
    let scratch = TAP_SCRATCH.get_ptr_mut(0)?.cast::<u32>();
    // SAFETY: the scratch value is WINDOW bytes of this CPU's map value, aligned for u32; the
    // window read from it is not used any more.
    let offset = unsafe {
        core::ptr::write_volatile(scratch, offset);
        core::ptr::read_volatile(scratch)
    };
    // Far past any tunnel header (GENEVE's longest is 350 bytes): never true, but it gives the
    // verifier its bound back.
    (offset <= MAX_INNER_OFFSET).then_some(offset)
}

/// Bound of [`forget`]: the longest outer headers decapsulation strips, in bytes.
const MAX_INNER_OFFSET: u32 = 511;

/// Copies the packet's first bytes from `offset` on (up to [`WINDOW`]) into scratch memory.
#[inline(always)]
pub(crate) fn load_window<S: Source>(src: &S, offset: u32) -> Option<Window> {
    let len = src.len().checked_sub(offset)?;
    if len == 0 {
        return None;
    }
    let scratch = TAP_SCRATCH.get_ptr_mut(0)?;
    let want = if len as usize > WINDOW {
        WINDOW as u32
    } else {
        len
    };
    // SAFETY: a local read; volatile hides the bound from the optimiser so the mask below stays
    // in the very register given to the helper (the verifier needs 1..=WINDOW there).
    let opaque = unsafe { core::ptr::read_volatile(&want) };
    let n = (opaque.wrapping_sub(1) & (WINDOW as u32 - 1)) + 1;
    // SAFETY: scratch is WINDOW bytes of this CPU's map value; n <= WINDOW.
    if unsafe { src.load(offset, scratch.cast(), n) } != 0 {
        return None;
    }
    Some(Window {
        bytes: scratch.cast_const(),
        len: n,
    })
}

/// Applies `--sample` and the rate cap to a matched packet; false when it is skipped on purpose.
#[inline(always)]
fn within_limits() -> bool {
    let Some(ctl) = TAP_FILTER_CTL.get(0) else {
        return true;
    };
    let (sample, rate) = (ctl.sample, ctl.rate_per_cpu);
    if sample <= 1 && rate == 0 {
        return true;
    }
    let Some(state) = TAP_LIMIT_STATE.get_ptr_mut(0) else {
        return true;
    };
    // SAFETY: per-CPU map value, this CPU's only.
    let state = unsafe { &mut *state };
    if sample > 1 {
        state[0] += 1;
        if state[0] % u64::from(sample) != 0 {
            count(counters::SAMPLED_OUT, 1);
            return false;
        }
    }
    if rate > 0 {
        // SAFETY: the helper has no preconditions.
        let now = unsafe { bpf_ktime_get_ns() };
        if now.wrapping_sub(state[1]) >= 1_000_000_000 {
            state[1] = now;
            state[2] = 0;
        }
        if state[2] >= u64::from(rate) {
            count(counters::RATE_LIMITED, 1);
            return false;
        }
        state[2] += 1;
    }
    true
}

/// Whether this CPU's recent packets were kept: a saturating counter from 0 to 3, one up for a
/// packet the filter and limits kept, two down for one they did not, "likely" from 2 on. So
/// traffic where more than about one packet in three is not kept (one direction of a
/// conversation, say) stays on the plain path.
///
/// When they are likely kept, the ring record is reserved before the filter runs
/// ([`emit::copy_early`]). A record's cache lines are seldom in this CPU's cache (the reader
/// on the other CPU took them, or the ring wrapped past the cache), and the submit's locked
/// exchange waits for every store into them; reserved early, the filter's work overlaps that
/// wait. When packets are mostly rejected, a record reserved early would mostly be discarded,
/// so they take the plain path: filter, then reserve.
#[inline(always)]
fn likely_kept() -> bool {
    TAP_LIMIT_STATE
        .get(0)
        .is_some_and(|state| state[KEEP_PREDICTOR] >= 2)
}

/// Index of the keep predictor in `TAP_LIMIT_STATE`.
const KEEP_PREDICTOR: usize = 4;

/// Records whether a packet was kept (see [`likely_kept`]).
#[inline(always)]
fn predict(kept: bool) {
    set_prediction(|p| {
        if kept {
            (p + 1).min(3)
        } else {
            p.saturating_sub(2)
        }
    });
}

/// Sets the keep predictor to `f` of its value.
#[inline(always)]
pub(crate) fn set_prediction(f: impl FnOnce(u64) -> u64) {
    if let Some(state) = TAP_LIMIT_STATE.get_ptr_mut(0) {
        // SAFETY: per-CPU map value, this CPU's only.
        let p = unsafe { &mut (*state)[KEEP_PREDICTOR] };
        let new = f(*p);
        // Mostly it stays put (all kept, or all rejected): no store then.
        if new != *p {
            *p = new;
        }
    }
}

/// Filter, then `--sample` and the rate cap: the rule that selected a packet to keep, or None.
/// `window` is left holding the header window when the filter loaded it.
#[inline(always)]
pub(crate) fn select<S: Source>(src: &S, offset: u32, window: &mut Option<Window>) -> Option<u32> {
    let rule = match filter::classify(|| load_window(src, offset), window) {
        Verdict::Match(rule) => rule,
        Verdict::NoMatch => {
            predict(false);
            return None;
        }
        Verdict::Error => {
            count(counters::FILTER_ERROR, 1);
            predict(false);
            return None;
        }
    };
    count(counters::MATCHED, 1);
    let kept = within_limits();
    predict(kept);
    kept.then_some(rule)
}

/// The common path of every hook: count, decapsulate, classify, limit, copy.
#[inline(always)]
fn tap<S: Source>(src: &S, mut meta: Meta) {
    ifstats::enter(meta.ifindex, meta.hook);
    count(counters::SEEN, 1);
    let decap_bits = global(&TAP_DECAP);
    if decap_bits != 0 {
        if let Some(inner) =
            load_window(src, 0).and_then(|w| decap::inner(&w, decap_bits, global(&TAP_VXLAN_PORT)))
        {
            if let Some(offset) = forget(inner.offset) {
                meta.offset = offset;
                meta.tunnel = inner.kind;
                meta.tunnel_id = inner.id;
            }
        }
    }
    let (orig_len, cap) = emit::lengths(src, &meta, snaplen());
    // The early path reserves before the filter: with a budget, which decides after it, the
    // record would mostly be discarded.
    if likely_kept() && !flow::enabled() && emit::copy_early(src, &mut meta, orig_len, cap) {
        return;
    }
    let mut window = None;
    let Some(rule) = select(src, meta.offset, &mut window) else {
        return;
    };
    meta.rule = rule;
    if flow::enabled() && !flow::admit(src, &meta, orig_len, &mut window) {
        return;
    }
    emit::copy_to_ring(src, &meta, orig_len, cap, window);
}

#[xdp(frags)]
pub fn xdp_tap(ctx: XdpContext) -> u32 {
    try_xdp_tap(&ctx);
    if global(&TAP_CONSUME) != 0 {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

#[inline(always)]
fn try_xdp_tap(ctx: &XdpContext) {
    let meta = Meta {
        ifindex: ctx.ingress_ifindex() as u32,
        queue: ctx.rx_queue_index(),
        hook: HOOK_XDP,
        direction: DIR_INBOUND,
        rule: 0,
        offset: 0,
        tunnel: 0,
        tunnel_id: 0,
    };
    tap(&XdpSource::new(ctx), meta);
}

/// A passive tap's verdict: TC_ACT_UNSPEC, which tcx reads as TCX_NEXT and clsact as "no
/// opinion", so the programs after this one still run (another tap on the same interface and
/// direction, a CNI's own programs); at the end of the chain the packet passes. TC_ACT_OK would
/// end the chain here.
const TC_VERDICT: i32 = TC_ACT_UNSPEC;

#[classifier]
pub fn tc_tap_ingress(ctx: TcContext) -> i32 {
    try_tc_tap(&ctx, HOOK_TC_INGRESS, DIR_INBOUND);
    if global(&TAP_CONSUME) != 0 {
        TC_ACT_SHOT
    } else {
        TC_VERDICT
    }
}

#[classifier]
pub fn tc_tap_egress(ctx: TcContext) -> i32 {
    try_tc_tap(&ctx, HOOK_TC_EGRESS, DIR_OUTBOUND);
    if global(&TAP_CONSUME) != 0 {
        TC_ACT_SHOT
    } else {
        TC_VERDICT
    }
}

#[inline(always)]
fn try_tc_tap(ctx: &TcContext, hook: u8, direction: u8) {
    // SAFETY: the context pointer is the kernel's __sk_buff for this run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    tap(
        &SkbSource::new(ctx),
        Meta {
            ifindex,
            queue: 0,
            hook,
            direction,
            rule: 0,
            offset: 0,
            tunnel: 0,
            tunnel_id: 0,
        },
    );
}

/// Deliberately refused by the verifier (reads the packet without a bounds check). Used only by
/// the test that checks how tap reports a program the kernel refuses.
#[xdp]
pub fn xdp_tap_rejected(ctx: XdpContext) -> u32 {
    // SAFETY: not safe at all, on purpose: the verifier must refuse this load.
    let first = unsafe { core::ptr::read_volatile(ctx.data() as *const u8) };
    if first == 0 {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
