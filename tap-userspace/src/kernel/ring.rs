//! The ring buffer's memory, read in place.
//!
//! A BPF ring buffer map can be mapped by user space: its first page holds the consumer position
//! (writable), the second the producer position, then the data area, mapped twice in a row so a
//! record that wraps around the end reads as one contiguous run (kernel 5.8+, as ring buffers).
//! Each record is an 8-byte header (length with a busy and a discard bit, then a page offset the
//! kernel uses) followed by the record, the whole rounded up to 8 bytes.
//!
//! tap reads records where the programs wrote them: the drain walks the headers and hands the
//! range it walked on as a [`View`]; the sinks read the packets from the ring's memory, and
//! dropping the view gives the range back to the kernel. The consumer position is written once
//! per view rather than once per record, so the producer (which reads it on every reserve) does
//! not take a cache miss per packet, and no packet is copied before the sink formats it.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
    ptr::NonNull,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
};

/// Record header length, and the records' alignment, in bytes.
pub const RECORD_HEADER: u64 = 8;
/// Set while the producer fills the record: the reader must stop there.
const BUSY_BIT: u32 = 1 << 31;
/// Set for a record the producer gave up on: skipped.
const DISCARD_BIT: u32 = 1 << 30;

/// A record header's length word, decoded.
#[derive(Debug, Clone, Copy)]
struct Header {
    /// Record bytes after the header.
    len: u64,
    /// Header, record and padding: where the next record starts.
    total: u64,
    busy: bool,
    discarded: bool,
}

impl Header {
    fn decode(word: u32) -> Self {
        let len = u64::from(word & !(BUSY_BIT | DISCARD_BIT));
        Self {
            len,
            total: (RECORD_HEADER + len).next_multiple_of(RECORD_HEADER),
            busy: word & BUSY_BIT != 0,
            discarded: word & DISCARD_BIT != 0,
        }
    }
}

/// How far ahead of the record being read the walk prefetches, in bytes.
const PREFETCH_AHEAD: u64 = 1024;

#[expect(
    clippy::inline_always,
    reason = "one instruction on the drain's hot path, per record"
)]
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// One shared mapping, unmapped on drop.
struct Mapping {
    base: NonNull<libc::c_void>,
    len: usize,
}

impl Mapping {
    fn new(fd: BorrowedFd<'_>, len: usize, prot: libc::c_int, offset: usize) -> io::Result<Self> {
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::other("ring offset out of range"))?;
        // SAFETY: a fresh shared mapping of a valid fd; the kernel checks the range and the
        // protection against the map.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self { base, len })
    }

    fn at(&self, offset: usize) -> *mut u8 {
        debug_assert!(offset < self.len);
        // SAFETY: within the mapping (callers pass offsets below its length).
        unsafe { self.base.as_ptr().cast::<u8>().add(offset) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr(), self.len) };
    }
}

/// Ranges handed back out of order wait here until the ones before them are back.
#[derive(Debug, Default)]
struct Releases {
    /// Everything before this position is back with the kernel.
    released: u64,
    /// `(start, end)` of ranges given back ahead of their turn.
    early: Vec<(u64, u64)>,
}

impl Releases {
    /// Takes `[start, end)` back; the new consumer position when it moved.
    fn give_back(&mut self, start: u64, end: u64) -> Option<u64> {
        if start != self.released {
            self.early.push((start, end));
            return None;
        }
        self.released = end;
        while let Some(i) = self.early.iter().position(|&(s, _)| s == self.released) {
            self.released = self.early.swap_remove(i).1;
        }
        Some(self.released)
    }
}

/// The mapped ring. Shared (`Arc`) by the drain and every [`View`] still alive.
pub struct Ring {
    consumer: Mapping,
    /// The producer page, then the data area twice.
    data: Mapping,
    page: usize,
    size: u64,
    releases: Mutex<Releases>,
}

// SAFETY: the positions are read and written with atomics; the data area is read-only here and
// only the ranges the producer has committed (and not been given back) are read.
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

impl Ring {
    /// Maps the ring map behind `fd`, of `size` data bytes (a power of two, a multiple of the
    /// page size, as the kernel requires of the map).
    pub fn new(fd: BorrowedFd<'_>, size: u32) -> io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        if !size.is_power_of_two() || !(size as usize).is_multiple_of(page) {
            return Err(io::Error::other(format!(
                "ring size {size} is not a power-of-two number of pages"
            )));
        }
        let consumer = Mapping::new(fd, page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let data = Mapping::new(fd, page + 2 * size as usize, libc::PROT_READ, page)?;
        let ring = Self {
            consumer,
            data,
            page,
            size: u64::from(size),
            releases: Mutex::default(),
        };
        let start = ring.consumer_pos();
        ring.releases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .released = start;
        Ok(ring)
    }

    /// Size of the data area in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn consumer_atomic(&self) -> &AtomicU64 {
        // SAFETY: the consumer position is the 8-byte-aligned start of its page, which lives as
        // long as `self`; the kernel reads it atomically too.
        unsafe { &*self.consumer.at(0).cast::<AtomicU64>() }
    }

    /// Where the kernel may write up to: everything before it has been given back.
    pub fn consumer_pos(&self) -> u64 {
        self.consumer_atomic().load(Ordering::Acquire)
    }

    /// Where the producer has reserved up to (records before it may still be busy).
    pub fn producer_pos(&self) -> u64 {
        // SAFETY: as `consumer_atomic`, for the producer page.
        unsafe { &*self.data.at(0).cast::<AtomicU64>() }.load(Ordering::Acquire)
    }

    /// Bytes reserved by the programs and not yet given back (record headers included).
    pub fn pending(&self) -> u64 {
        self.producer_pos()
            .saturating_sub(self.consumer_pos())
            .min(self.size)
    }

    /// The data at position `pos`, valid for `size` bytes on (the second mapping follows the
    /// first).
    fn data_at(&self, pos: u64) -> *const u8 {
        self.data
            .at(self.page + (pos & (self.size - 1)) as usize)
            .cast_const()
    }

    /// The record header at `pos`: its length and flags, read with acquire ordering so that
    /// the record's bytes the producer wrote before committing are visible.
    fn header_at(&self, pos: u64) -> u32 {
        // SAFETY: headers are 8-byte aligned inside the data area; the producer writes them with
        // atomic stores.
        unsafe { &*self.data_at(pos).cast::<AtomicU32>() }.load(Ordering::Acquire)
    }

    /// Walks committed records from `from`, stopping at `limit` records or past `max_bytes` (a
    /// walk takes at least one record), at a record still being filled, or at the producer
    /// position. Calls `record` with each committed, not discarded record's bytes (which stay
    /// valid until the walked range is given back).
    pub fn walk(
        &self,
        from: u64,
        limit: usize,
        max_bytes: u64,
        mut record: impl FnMut(&[u8]),
    ) -> Walked {
        let producer = self.producer_pos();
        let mut pos = from;
        let mut taken = 0;
        let mut full = false;
        while pos < producer {
            if taken >= limit {
                full = true;
                break;
            }
            // Each header says where the next one is: without help the walk waits on one
            // cache miss after another. Ask for the lines a few records ahead, but only those
            // already reserved: pulling a line the producer is about to write would cost it a
            // cache miss.
            // Two lines: a small record takes up to two (the walk moves a record at a time).
            if pos + PREFETCH_AHEAD + 64 < producer {
                prefetch(self.data_at(pos + PREFETCH_AHEAD));
                prefetch(self.data_at(pos + PREFETCH_AHEAD + 64));
            }
            let Header {
                len,
                total,
                busy,
                discarded,
            } = Header::decode(self.header_at(pos));
            if busy {
                break;
            }
            if total > producer - pos {
                // Past what the producer reserved: never, from a sane kernel.
                break;
            }
            if pos != from && pos + total - from > max_bytes {
                // The byte budget is spent: the next walk starts here.
                full = true;
                break;
            }
            if !discarded {
                // SAFETY: a committed record of `len` bytes after its header, inside the doubly
                // mapped data area (total <= size), not given back while the caller holds it.
                let bytes = unsafe {
                    std::slice::from_raw_parts(self.data_at(pos + RECORD_HEADER), len as usize)
                };
                record(bytes);
                taken += 1;
            }
            pos += total;
        }
        Walked { end: pos, full }
    }

    /// Walks every committed record from the consumer position and gives them all back; for a
    /// single reader with nothing else in flight (program tests). Returns the records walked.
    pub fn consume(&self, record: impl FnMut(&[u8])) -> usize {
        let from = self.consumer_pos();
        let mut n = 0;
        let mut record = record;
        let walked = self.walk(from, usize::MAX, u64::MAX, |r| {
            n += 1;
            record(r);
        });
        self.release(from, walked.end);
        n
    }

    /// The bytes of `[start, end)` as one slice (records and their ring headers).
    ///
    /// # Safety
    /// The range must have been walked and not given back yet, and be at most `size` long.
    pub unsafe fn bytes(&self, start: u64, end: u64) -> &[u8] {
        debug_assert!(end - start <= self.size);
        // SAFETY: per the caller; the double mapping makes the range contiguous.
        unsafe { std::slice::from_raw_parts(self.data_at(start), (end - start) as usize) }
    }

    /// Gives `[start, end)` back to the kernel once every range before it is back.
    pub fn release(&self, start: u64, end: u64) {
        let mut r = self
            .releases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(pos) = r.give_back(start, end) {
            self.consumer_atomic().store(pos, Ordering::Release);
        }
    }
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("size", &self.size)
            .field("pending", &self.pending())
            .finish_non_exhaustive()
    }
}

/// Where a [`Ring::walk`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walked {
    /// The position after the last record walked.
    pub end: u64,
    /// It stopped at its record or byte limit, not for want of committed records.
    pub full: bool,
}

/// A walked range of the ring, given back to the kernel when dropped.
pub struct View {
    ring: Arc<Ring>,
    start: u64,
    end: u64,
}

impl View {
    /// Takes `[start, end)` of `ring`, which the caller has walked.
    pub fn new(ring: Arc<Ring>, start: u64, end: u64) -> Self {
        Self { ring, start, end }
    }

    /// The range's bytes: ring records, each behind its 8-byte header.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: walked by whoever made the view, and given back only when it drops.
        unsafe { self.ring.bytes(self.start, self.end) }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        self.ring.release(self.start, self.end);
    }
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("start", &self.start)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

/// Takes the next committed, not discarded record off the front of a range of ring bytes (as
/// [`View::bytes`] gives them); `None` at the end.
#[inline]
pub fn next_record<'a>(bytes: &mut &'a [u8]) -> Option<&'a [u8]> {
    loop {
        let header = Header::decode(u32::from_ne_bytes(bytes.get(..4)?.try_into().ok()?));
        let (start, total) = (RECORD_HEADER as usize, header.total as usize);
        let record = bytes.get(start..start + header.len as usize);
        *bytes = bytes.get(total..).unwrap_or(&[]);
        if !header.discarded {
            return record;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
        std::iter::from_fn(move || next_record(&mut bytes))
    }

    fn ring_bytes(records: &[(&[u8], bool)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (r, discarded) in records {
            let mut header = r.len() as u32;
            if *discarded {
                header |= DISCARD_BIT;
            }
            out.extend_from_slice(&header.to_ne_bytes());
            out.extend_from_slice(&0u32.to_ne_bytes());
            out.extend_from_slice(r);
            out.resize(out.len().next_multiple_of(8), 0xAA);
        }
        out
    }

    #[test]
    fn records_skip_discarded_and_padding() {
        let bytes = ring_bytes(&[
            (b"abc", false),
            (b"discarded", true),
            (b"12345678", false),
            (b"x", false),
        ]);
        let got: Vec<&[u8]> = records(&bytes).collect();
        assert_eq!(got, vec![&b"abc"[..], b"12345678", b"x"]);
    }

    #[test]
    fn ranges_go_back_in_order() {
        let mut r = Releases {
            released: 100,
            early: Vec::new(),
        };
        // The second and third ranges come back before the first: the position waits for it.
        assert_eq!(r.give_back(200, 300), None);
        assert_eq!(r.give_back(300, 350), None);
        assert_eq!(r.give_back(100, 200), Some(350));
        assert!(r.early.is_empty());
        assert_eq!(r.give_back(350, 350), Some(350));
        assert_eq!(r.give_back(350, 400), Some(400));
    }

    #[test]
    fn records_stop_at_a_truncated_record() {
        let mut bytes = ring_bytes(&[(b"abc", false), (b"defghijk", false)]);
        bytes.truncate(bytes.len() - 3);
        let got: Vec<&[u8]> = records(&bytes).collect();
        assert_eq!(got, vec![&b"abc"[..]]);
    }
}
