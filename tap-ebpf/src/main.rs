//! tap's kernel side: an XDP program and a TC classifier (ingress and egress) that copy each
//! packet, truncated to the snap length, into a ring buffer record and let it continue untouched.
//!
//! One object; the loader picks the programs it attaches. See `tap-common` for the record layout.
#![no_std]
#![no_main]

mod emit;

use aya_ebpf::{
    bindings::{TC_ACT_OK, xdp_action},
    macros::{classifier, map, xdp},
    maps::{PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
};
use tap_common::{
    config::{DEFAULT_RING_SIZE, DEFAULT_SNAPLEN},
    counters,
    event::{DIR_INBOUND, DIR_OUTBOUND, HOOK_TC_EGRESS, HOOK_TC_INGRESS, HOOK_XDP},
};

use crate::emit::{Meta, SkbSource, XdpSource};

/// Records for user space. The loader resizes it to `--ring-size`.
#[map]
static TAP_RING: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_SIZE, 0);

/// Per-CPU counters, indexed by `tap_common::counters`.
#[map]
static TAP_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counters::COUNT, 0);

/// Snap length in bytes, set by the loader (`.rodata`, so the verifier sees a constant).
#[unsafe(no_mangle)]
static TAP_SNAPLEN: u32 = DEFAULT_SNAPLEN;

#[inline(always)]
fn snaplen() -> u32 {
    // SAFETY: a plain read of a global the loader initialised; volatile so the compiler does not
    // fold in the default.
    unsafe { core::ptr::read_volatile(&TAP_SNAPLEN) }
}

/// Adds `n` to a counter of this CPU.
#[inline(always)]
pub(crate) fn count(counter: counters::Counter, n: u64) {
    if let Some(slot) = TAP_COUNTERS.get_ptr_mut(counter) {
        // SAFETY: per-CPU slot; programs do not migrate CPUs while running.
        unsafe { *slot += n };
    }
}

#[xdp(frags)]
pub fn xdp_tap(ctx: XdpContext) -> u32 {
    try_xdp_tap(&ctx);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn try_xdp_tap(ctx: &XdpContext) {
    count(counters::SEEN, 1);
    let source = XdpSource::new(ctx);
    let meta = Meta {
        ifindex: ctx.ingress_ifindex() as u32,
        queue: ctx.rx_queue_index(),
        hook: HOOK_XDP,
        direction: DIR_INBOUND,
        rule: 0,
    };
    count(counters::MATCHED, 1);
    emit::copy_to_ring(&source, &meta, snaplen());
}

#[classifier]
pub fn tc_tap_ingress(ctx: TcContext) -> i32 {
    try_tc_tap(&ctx, HOOK_TC_INGRESS, DIR_INBOUND);
    TC_ACT_OK
}

#[classifier]
pub fn tc_tap_egress(ctx: TcContext) -> i32 {
    try_tc_tap(&ctx, HOOK_TC_EGRESS, DIR_OUTBOUND);
    TC_ACT_OK
}

#[inline(always)]
fn try_tc_tap(ctx: &TcContext, hook: u8, direction: u8) {
    count(counters::SEEN, 1);
    let source = SkbSource::new(ctx);
    // SAFETY: the context pointer is the kernel's __sk_buff for this run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let meta = Meta { ifindex, queue: 0, hook, direction, rule: 0 };
    count(counters::MATCHED, 1);
    emit::copy_to_ring(&source, &meta, snaplen());
}

/// Deliberately refused by the verifier (reads the packet without a bounds check). Used only by
/// the test that checks how tap reports a program the kernel refuses.
#[xdp]
pub fn xdp_tap_rejected(ctx: XdpContext) -> u32 {
    // SAFETY: not safe at all, on purpose: the verifier must refuse this load.
    let first = unsafe { core::ptr::read_volatile(ctx.data() as *const u8) };
    if first == 0 { xdp_action::XDP_DROP } else { xdp_action::XDP_PASS }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
