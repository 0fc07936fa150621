//! Records above the largest size class: GSO and GRO packets on the TC hooks (up to 64 KiB,
//! BIG TCP more), and long multi-buffer XDP frames, captured up to the snap length (at most
//! tcpdump's 262,144 bytes).
//!
//! `bpf_ringbuf_reserve` wants a constant size, and size classes up to 256 KiB would waste up to
//! half of a record's ring space on every such packet. Instead the record is reserved at its exact
//! size with `bpf_ringbuf_reserve_dynptr` (5.19+), whose size may be any value, and filled in
//! [`LARGE_CHUNK`]-byte pieces, each a constant-size slice of the record (`bpf_dynptr_data`) that
//! the load helper writes into directly: one copy per byte, as for the small records. The last
//! piece ends at the capture's end (it may overlap the one before it), so every piece has the
//! same constant length the verifier wants.
//!
//! Only captures longer than [`MAX_CLASS`] come here: the small records' path is unchanged.

use core::{ffi::c_void, mem::MaybeUninit};

use aya_ebpf::{
    bindings::{BPF_RB_NO_WAKEUP, bpf_dynptr},
    helpers::generated::{
        bpf_dynptr_data, bpf_ktime_get_ns, bpf_ringbuf_discard_dynptr, bpf_ringbuf_reserve_dynptr,
        bpf_ringbuf_submit_dynptr,
    },
};
use tap_common::{
    config::{LARGE_CHUNK, MAX_CLASS, MAX_SNAPLEN},
    counters,
    event::{HEADER_LEN, PacketHeader},
};

use crate::{
    TAP_RING, count,
    source::{Meta, Source},
};

/// Pieces of the longest capture.
const MAX_CHUNKS: u32 = MAX_SNAPLEN / LARGE_CHUNK;

/// Copies the packet's first `cap` bytes (more than [`MAX_CLASS`]) into a record of exactly that
/// size, counting the outcome. `wanted` is what the snap length asked for: a capture the source
/// cannot read whole (XDP past [`Source::MAX_END`]) is kept as far as it can be read and counted
/// as truncated.
#[inline(always)]
pub(crate) fn emit<S: Source>(src: &S, meta: &Meta, orig_len: u32, wanted: u32) {
    let mut cap = wanted;
    let readable = S::MAX_END.saturating_sub(meta.offset);
    if cap > readable {
        cap = readable;
    }
    // Both bounds for the verifier: the pieces below need LARGE_CHUNK <= cap <= MAX_SNAPLEN.
    if cap <= MAX_CLASS || cap > MAX_SNAPLEN {
        return;
    }
    // SAFETY: the helper has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let size = HEADER_LEN as u32 + cap;
    let mut dynptr = MaybeUninit::<bpf_dynptr>::uninit();
    let dp = dynptr.as_mut_ptr();
    let ring = core::ptr::addr_of!(TAP_RING).cast_mut().cast::<c_void>();
    // SAFETY: `ring` is the ring buffer map; `dp` is stack memory for the dynptr. Even a failed
    // reservation must be released (the verifier tracks the dynptr either way).
    if unsafe { bpf_ringbuf_reserve_dynptr(ring, size, 0, dp) } != 0 {
        // SAFETY: as above; discarding a failed reservation is a no-op.
        unsafe { bpf_ringbuf_discard_dynptr(dp, u64::from(BPF_RB_NO_WAKEUP)) };
        count(counters::RING_FULL, 1);
        return;
    }
    if !fill(src, meta, dp, orig_len, cap, now) {
        // SAFETY: `dp` holds the reservation made above.
        unsafe { bpf_ringbuf_discard_dynptr(dp, u64::from(BPF_RB_NO_WAKEUP)) };
        count(counters::READ_ERROR, 1);
        return;
    }
    // SAFETY: `dp` holds the reservation made above.
    unsafe { bpf_ringbuf_submit_dynptr(dp, crate::wakeup_flags(u64::from(size), now)) };
    count(counters::COPIED, 1);
    count(counters::COPIED_BYTES, u64::from(cap));
    if cap < wanted {
        count(counters::TRUNCATED, 1);
    }
}

/// Writes the header and the packet's first `cap` bytes into the reserved record `dp`; false
/// when a piece could not be had or read.
#[inline(always)]
fn fill<S: Source>(
    src: &S,
    meta: &Meta,
    dp: *mut bpf_dynptr,
    orig_len: u32,
    cap: u32,
    now: u64,
) -> bool {
    // SAFETY: `dp` is an initialised ring buffer dynptr of HEADER_LEN + cap bytes.
    let header = unsafe { bpf_dynptr_data(dp, 0, HEADER_LEN as u32) }.cast::<PacketHeader>();
    if header.is_null() {
        return false;
    }
    // SAFETY: the slice is HEADER_LEN writable bytes of the record, 8-byte aligned (records are).
    unsafe {
        header.write(PacketHeader {
            ts_ns: now,
            ifindex: meta.ifindex,
            orig_len,
            cap_len: cap,
            queue: meta.queue,
            hook: meta.hook,
            direction: meta.direction,
            tunnel: meta.tunnel,
            _pad: 0,
            rule: meta.rule,
            tunnel_id: meta.tunnel_id,
            outer_len: meta.offset as u16,
            _pad2: 0,
        });
    }
    let last = cap - LARGE_CHUNK;
    let mut i = 0;
    while i < MAX_CHUNKS {
        let mut off = i * LARGE_CHUNK;
        if off >= cap {
            break;
        }
        if off > last {
            off = last;
        }
        // SAFETY: a constant-size slice of the record; the helper checks it lies within.
        let piece = unsafe { bpf_dynptr_data(dp, HEADER_LEN as u32 + off, LARGE_CHUNK) };
        if piece.is_null() {
            return false;
        }
        // SAFETY: `piece` is LARGE_CHUNK writable bytes.
        if unsafe { src.load(meta.offset + off, piece.cast(), LARGE_CHUNK) } != 0 {
            return false;
        }
        i += 1;
    }
    true
}
