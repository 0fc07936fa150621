//! Ring reserve / copy / submit.
//!
//! The verifier wants a constant size for `bpf_ringbuf_reserve`, and a copy length that is
//! provably non-zero and bounded in the very register handed to the load helper. So a record is
//! reserved in one of a few size classes (`tap_common::config::SIZE_CLASSES`), each a separate
//! code path with its own constant, and the length is masked into `1..=N` right before the
//! helper call. A 64-byte frame takes a 104-byte record (112 bytes of ring with the ring's own
//! header), a 1500-byte MTU's frame 1,576 (1,584). Captures longer than the largest class (GSO
//! packets, long multi-buffer frames) take a record of their exact size: [`crate::large`].
//!
//! Two orders: the plain path filters, then reserves ([`copy_to_ring`]); while most packets
//! are kept, small records are reserved first and discarded when the filter rejects
//! ([`copy_early`]), so the filter's work overlaps the wait for the record's cache lines.

use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP, helpers::generated::bpf_ktime_get_ns, maps::ring_buf::RingBufEntry,
};
use tap_common::{config::MAX_CLASS, counters, event::PacketHeader};

use crate::{
    TAP_RING, count,
    filter::{WINDOW, Window},
    source::{Meta, Source},
};

/// A ring record of payload class `N`.
#[repr(C)]
struct Record<const N: usize> {
    header: PacketHeader,
    data: [u8; N],
}

/// The packet's length past `meta.offset`, and how much of it to capture (0: nothing): at most
/// `snaplen`, which the loader keeps within `tap_common::config::MAX_SNAPLEN`.
#[inline(always)]
pub(crate) fn lengths<S: Source>(src: &S, meta: &Meta, snaplen: u32) -> (u32, u32) {
    let orig_len = src.len().saturating_sub(meta.offset);
    let mut cap = orig_len;
    if cap > snaplen {
        cap = snaplen;
    }
    (orig_len, cap)
}

/// Copies the packet's first `cap` bytes (see [`lengths`]) into the ring, counting the outcome.
///
/// `window`: the packet's first bytes from `meta.offset` on, when the filter loaded them; a
/// short capture is copied from there rather than read from the packet a second time.
#[inline(always)]
pub(crate) fn copy_to_ring<S: Source>(
    src: &S,
    meta: &Meta,
    orig_len: u32,
    cap: u32,
    window: Option<Window>,
) {
    if cap == 0 {
        // Nothing to copy (a zero snap length): count it as read error-free but skipped.
        count(counters::READ_ERROR, 1);
        return;
    }
    if cap <= 64 {
        emit::<S, 64>(src, meta, orig_len, cap, window);
    } else if cap <= 128 {
        emit::<S, 128>(src, meta, orig_len, cap, window);
    } else if cap <= 256 {
        emit::<S, 256>(src, meta, orig_len, cap, window);
    } else if cap <= 512 {
        emit::<S, 512>(src, meta, orig_len, cap, window);
    } else if cap <= 1024 {
        emit::<S, 1024>(src, meta, orig_len, cap, window);
    } else if cap <= 1536 {
        // Ethernet frames of a 1500-byte MTU: a quarter less ring than the 2 KiB class.
        emit::<S, 1536>(src, meta, orig_len, cap, window);
    } else if cap <= 2048 {
        emit::<S, 2048>(src, meta, orig_len, cap, window);
    } else if cap <= 4096 {
        emit::<S, 4096>(src, meta, orig_len, cap, window);
    } else if cap <= 8192 {
        emit::<S, 8192>(src, meta, orig_len, cap, window);
    } else if cap <= MAX_CLASS {
        // Jumbo frames of a 9,000-byte MTU and a little more.
        emit::<S, { MAX_CLASS as usize }>(src, meta, orig_len, cap, window);
    } else {
        crate::large::emit(src, meta, orig_len, cap);
    }
}

/// Reserves the record first, then filters (`crate::select`) and fills it or discards it: see
/// `crate::likely_kept` for why. Only for small records, where the wait for the record's cache
/// lines weighs most against the rest of the work (a big record's copy dwarfs it).
///
/// Returns false, having done nothing but read the clock, when the ring has no room or the
/// capture is not small: the caller then takes the plain path, which counts a full ring only
/// for a packet the filter selects.
#[inline(always)]
pub(crate) fn copy_early<S: Source>(src: &S, meta: &mut Meta, orig_len: u32, cap: u32) -> bool {
    if cap == 0 {
        false
    } else if cap <= 64 {
        early::<S, 64>(src, meta, orig_len, cap)
    } else if cap <= 128 {
        early::<S, 128>(src, meta, orig_len, cap)
    } else {
        false
    }
}

#[inline(always)]
fn early<S: Source, const N: usize>(src: &S, meta: &mut Meta, orig_len: u32, cap: u32) -> bool {
    // SAFETY: the helper has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(mut entry) = TAP_RING.reserve::<Record<N>>(0) else {
        // A full ring: the plain path counts it if the filter selects the packet. While the
        // ring stays full, reserving first would only double the work: start over at "unlikely".
        crate::set_prediction(|_| 0);
        return false;
    };
    // A store into each 64 bytes of the record claims its cache lines now; the filter runs
    // while they arrive. `fill` overwrites these words.
    let words = entry.as_mut_ptr().cast::<u64>();
    let mut i = 0;
    while i < size_of::<Record<N>>() / 8 {
        // SAFETY: word i lies within the reserved record.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
        i += 8;
    }
    // SAFETY: as above; the record's last word.
    unsafe { core::ptr::write_volatile(words.add(size_of::<Record<N>>() / 8 - 1), 0) };
    let mut window = None;
    match crate::select(src, meta.offset, &mut window) {
        Some(rule) => {
            meta.rule = rule;
            fill(entry, src, meta, orig_len, cap, window, now);
        }
        None => entry.discard(u64::from(BPF_RB_NO_WAKEUP)),
    }
    true
}

#[inline(always)]
fn emit<S: Source, const N: usize>(
    src: &S,
    meta: &Meta,
    orig_len: u32,
    cap: u32,
    window: Option<Window>,
) {
    // SAFETY: the helper has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(entry) = TAP_RING.reserve::<Record<N>>(0) else {
        count(counters::RING_FULL, 1);
        return;
    };
    fill(entry, src, meta, orig_len, cap, window, now);
}

/// Writes the header and the packet's first `cap` (1..=N) bytes into a reserved record and
/// submits it, counting the outcome.
#[inline(always)]
fn fill<S: Source, const N: usize>(
    mut entry: RingBufEntry<Record<N>>,
    src: &S,
    meta: &Meta,
    orig_len: u32,
    cap: u32,
    window: Option<Window>,
    now: u64,
) {
    // Hide what the compiler knows about `cap` so the mask below survives optimisation and
    // bounds the register the helper receives: 1..=N.
    // SAFETY: reading a local through a valid reference.
    let opaque = unsafe { core::ptr::read_volatile(&cap) };
    let mut len = ((opaque.wrapping_sub(1)) & (N.next_power_of_two() as u32 - 1)) + 1;
    if !N.is_power_of_two() && len > N as u32 {
        // Never taken (cap <= N picked the class), but it bounds the register by N for the
        // verifier: the mask alone bounds it by the next power of two.
        len = N as u32;
    }
    let record = entry.as_mut_ptr();
    // SAFETY: `record` points at a reserved, writable ring slot of size_of::<Record<N>>() bytes.
    unsafe {
        (*record).header = PacketHeader {
            ts_ns: now,
            ifindex: meta.ifindex,
            orig_len,
            cap_len: len,
            queue: meta.queue,
            hook: meta.hook,
            direction: meta.direction,
            tunnel: meta.tunnel,
            _pad: 0,
            rule: meta.rule,
            tunnel_id: meta.tunnel_id,
            outer_len: meta.offset as u16,
            _pad2: 0,
        };
        let data = core::ptr::addr_of_mut!((*record).data);
        let in_window = window.filter(|w| N <= WINDOW && cap <= w.len);
        if let Some(w) = in_window {
            // The whole capture is in the window: copy the record's N bytes from there (the ones
            // past `cap` are padding nobody reads). Whole words, a constant count.
            let from = w.bytes.cast::<u64>();
            let to = data.cast::<u64>();
            let mut i = 0;
            while i < N / 8 {
                *to.add(i) = *from.add(i);
                i += 1;
            }
        } else if src.load(meta.offset, data.cast::<u8>(), len) != 0 {
            entry.discard(u64::from(BPF_RB_NO_WAKEUP));
            count(counters::READ_ERROR, 1);
            return;
        }
    }
    entry.submit(crate::wakeup_flags(
        core::mem::size_of::<Record<N>>() as u64,
        now,
    ));
    count(counters::COPIED, 1);
    count(counters::COPIED_BYTES, u64::from(len));
}
