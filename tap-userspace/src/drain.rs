//! Drains the ring buffer in batches.
//!
//! The ring's file descriptor is registered with epoll (Tokio's [`AsyncFd`]), so the drain sleeps
//! until the kernel signals data and then takes everything available, up to a batch limit, in one
//! go. Each record is checked before it is trusted and copied once into the batch's buffer; the
//! batch is then frozen into [`Bytes`] and handed on without per-packet allocation.

use std::io;

use aya::maps::{MapData, RingBuf};
use bytes::{Bytes, BytesMut};
use tap_common::{
    config::MAX_FRAME,
    event::{HEADER_LEN, PacketHeader},
};
use tokio::io::unix::AsyncFd;

use crate::clock;

/// Why a ring record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record of {0} bytes is shorter than a header")]
    Short(usize),
    #[error("captured length {cap} exceeds the record's {avail} payload bytes")]
    CapBeyondRecord { cap: u32, avail: usize },
    #[error("captured length {cap} exceeds the original length {orig}")]
    CapBeyondOrig { cap: u32, orig: u32 },
    #[error("captured length {0} is zero or above the largest frame")]
    CapOutOfRange(u32),
}

/// Splits a ring record into its header and packet bytes, checking every length.
pub fn parse_record(record: &[u8]) -> Result<(PacketHeader, &[u8]), RecordError> {
    if record.len() < HEADER_LEN {
        return Err(RecordError::Short(record.len()));
    }
    // SAFETY: at least HEADER_LEN bytes; PacketHeader is plain integers, any bit pattern is valid;
    // read_unaligned copes with any alignment.
    let header: PacketHeader = unsafe { std::ptr::read_unaligned(record.as_ptr().cast()) };
    let avail = record.len() - HEADER_LEN;
    let cap = header.cap_len;
    if cap == 0 || cap > MAX_FRAME {
        return Err(RecordError::CapOutOfRange(cap));
    }
    if cap as usize > avail {
        return Err(RecordError::CapBeyondRecord { cap, avail });
    }
    if cap > header.orig_len {
        return Err(RecordError::CapBeyondOrig { cap, orig: header.orig_len });
    }
    Ok((header, &record[HEADER_LEN..HEADER_LEN + cap as usize]))
}

/// A run of packets taken from the ring in one go.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Packed `[PacketHeader][cap_len bytes]` entries, already validated.
    buf: Bytes,
    len: usize,
    /// CLOCK_MONOTONIC → CLOCK_REALTIME offset for this batch, in ns.
    offset_ns: i64,
}

/// One packet of a [`Batch`].
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    pub header: PacketHeader,
    /// Wall-clock time, ns since the Unix epoch.
    pub ts_ns: u64,
    pub data: &'a [u8],
}

impl Batch {
    /// Number of packets.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Packet bytes plus headers held, in bytes.
    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    /// CLOCK_MONOTONIC → CLOCK_REALTIME offset of this batch, in ns.
    pub fn offset_ns(&self) -> i64 {
        self.offset_ns
    }

    pub fn packets(&self) -> impl Iterator<Item = Packet<'_>> {
        let mut rest: &[u8] = &self.buf;
        let offset = self.offset_ns;
        std::iter::from_fn(move || {
            // Entries were validated when the batch was built.
            let (header, data) = parse_record(rest).ok()?;
            rest = &rest[HEADER_LEN + data.len()..];
            Some(Packet { header, ts_ns: clock::to_realtime_ns(header.ts_ns, offset), data })
        })
    }
}

/// Builds a [`Batch`] from records.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    len: usize,
}

impl BatchBuilder {
    pub fn with_capacity(bytes: usize) -> Self {
        Self { buf: BytesMut::with_capacity(bytes), len: 0 }
    }

    /// Appends a ring record after checking it.
    pub fn push(&mut self, record: &[u8]) -> Result<(), RecordError> {
        let (header, data) = parse_record(record)?;
        self.buf.extend_from_slice(&record[..HEADER_LEN]);
        self.buf.extend_from_slice(data);
        debug_assert_eq!(header.cap_len as usize, data.len());
        self.len += 1;
        Ok(())
    }

    /// Appends a packet from its parts; `header.cap_len` is set to `data.len()`.
    pub fn push_parts(&mut self, header: &PacketHeader, data: &[u8]) {
        let mut h = *header;
        h.cap_len = data.len() as u32;
        h.orig_len = h.orig_len.max(h.cap_len);
        // SAFETY: PacketHeader is plain old data of HEADER_LEN bytes.
        let bytes = unsafe { std::slice::from_raw_parts((&h as *const PacketHeader).cast::<u8>(), HEADER_LEN) };
        self.buf.extend_from_slice(bytes);
        self.buf.extend_from_slice(data);
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    /// Freezes the batch, stamping it with the current clock offset.
    pub fn finish(&mut self) -> Batch {
        self.finish_with_offset(clock::realtime_offset_ns())
    }

    /// Freezes the batch with a given clock offset (a batch derived from another keeps its time).
    pub fn finish_with_offset(&mut self, offset_ns: i64) -> Batch {
        let buf = self.buf.split().freeze();
        let len = std::mem::take(&mut self.len);
        Batch { buf, len, offset_ns }
    }
}

/// How often the drain looks at the ring when no wake-up came: the worst-case latency of a
/// packet that arrived without one.
pub const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Limits of one batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_packets: usize,
    pub max_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self { max_packets: 8192, max_bytes: 1 << 20 }
    }
}

/// What one [`Drain::take`] produced.
#[derive(Debug)]
pub struct Taken {
    pub batch: Batch,
    /// Records refused by [`parse_record`] (never expected; counted, not silently lost).
    pub malformed: u64,
    /// The ring still held records when the batch filled up.
    pub more: bool,
}

/// The ring, registered with epoll.
pub struct Drain {
    ring: AsyncFd<RingBuf<MapData>>,
    limits: BatchLimits,
    builder: BatchBuilder,
}

impl Drain {
    pub fn new(ring: RingBuf<MapData>, limits: BatchLimits) -> io::Result<Self> {
        // SAFETY: the RingBuf owns its map fd for as long as the AsyncFd holds it, and the AsyncFd
        // deregisters before dropping it.
        let ring = unsafe { AsyncFd::register(ring) }.map_err(io::Error::from)?;
        Ok(Self { ring, limits, builder: BatchBuilder::with_capacity(limits.max_bytes) })
    }

    /// Waits until the kernel signals records (or the poll interval passes), then takes a batch
    /// of at most `max_packets`.
    ///
    /// The programs wake the reader only once enough bytes wait or a millisecond passed since
    /// the last wake-up (see `wakeup_flags` in tap-ebpf), so a lone packet may arrive without a
    /// wake-up: the poll interval bounds how long it waits.
    pub async fn next_batch(&mut self, max_packets: usize) -> io::Result<Taken> {
        loop {
            match tokio::time::timeout(POLL_INTERVAL, self.ring.readable_mut()).await {
                Ok(guard) => {
                    let mut guard = guard?;
                    let taken = Self::fill(guard.get_inner_mut(), &mut self.builder, self.limits, max_packets);
                    if !taken.more {
                        guard.clear_ready();
                    }
                    if !taken.batch.is_empty() || taken.malformed > 0 {
                        return Ok(taken);
                    }
                }
                Err(_elapsed) => {
                    let taken = Self::fill(self.ring.get_mut(), &mut self.builder, self.limits, max_packets);
                    if !taken.batch.is_empty() || taken.malformed > 0 {
                        return Ok(taken);
                    }
                }
            }
        }
    }

    /// Takes what the ring holds now without waiting (used at shutdown).
    pub fn take_now(&mut self, max_packets: usize) -> Taken {
        Self::fill(self.ring.get_mut(), &mut self.builder, self.limits, max_packets)
    }

    fn fill(ring: &mut RingBuf<MapData>, builder: &mut BatchBuilder, limits: BatchLimits, max_packets: usize) -> Taken {
        let max_packets = max_packets.min(limits.max_packets);
        let mut malformed = 0;
        let mut more = false;
        while builder.len() < max_packets {
            if builder.byte_len() + HEADER_LEN + MAX_FRAME as usize > limits.max_bytes {
                more = true;
                break;
            }
            let Some(item) = ring.next() else { break };
            if builder.push(&item).is_err() {
                malformed += 1;
            }
        }
        if builder.len() >= max_packets {
            more = true;
        }
        Taken { batch: builder.finish(), malformed, more }
    }
}

/// How full the ring is, read from its producer and consumer positions.
///
/// aya's [`RingBuf`] does not expose them, but the kernel lets anyone holding the map map its
/// first two pages read-only: the consumer position at the start of the first, the producer
/// position at the start of the second (kernel 5.8+, as ring buffers themselves).
pub struct RingLevel {
    base: std::ptr::NonNull<libc::c_void>,
    len: usize,
    page: usize,
    /// Size of the data area in bytes.
    pub size: u64,
}

// SAFETY: a read-only shared mapping; the positions are read with atomic loads.
unsafe impl Send for RingLevel {}
// SAFETY: as above: nothing is written through the mapping.
unsafe impl Sync for RingLevel {}

impl RingLevel {
    /// Maps the position pages of the ring map behind `fd`, of `size` data bytes.
    pub fn new(fd: std::os::fd::BorrowedFd<'_>, size: u32) -> io::Result<Self> {
        use std::os::fd::AsRawFd as _;
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let len = 2 * page;
        // SAFETY: a fresh read-only shared mapping of a valid fd; the kernel checks the range.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, fd.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = std::ptr::NonNull::new(ptr).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self { base, len, page, size: u64::from(size) })
    }

    fn load(&self, offset: usize) -> u64 {
        // SAFETY: offset is 0 or one page into a live mapping of two pages; the kernel keeps the
        // positions 8-byte aligned at the start of each page and updates them atomically.
        unsafe { (*self.base.as_ptr().cast::<u8>().add(offset).cast::<std::sync::atomic::AtomicU64>()).load(std::sync::atomic::Ordering::Acquire) }
    }

    /// Bytes written by the programs and not yet consumed (record headers included).
    pub fn pending(&self) -> u64 {
        let consumer = self.load(0);
        let producer = self.load(self.page);
        producer.saturating_sub(consumer).min(self.size)
    }
}

impl Drop for RingLevel {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr(), self.len) };
    }
}

impl std::fmt::Debug for RingLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingLevel").field("size", &self.size).field("pending", &self.pending()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(cap: u32, orig: u32, payload: &[u8]) -> Vec<u8> {
        let header = PacketHeader { ts_ns: 1_000, ifindex: 3, orig_len: orig, cap_len: cap, hook: 1, direction: 1, ..Default::default() };
        // SAFETY: PacketHeader is plain old data.
        let bytes: [u8; HEADER_LEN] = unsafe { std::mem::transmute(header) };
        let mut v = bytes.to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn good_record_parses() {
        let r = record(4, 60, &[1, 2, 3, 4, 0, 0, 0, 0]);
        let (h, data) = parse_record(&r).unwrap();
        assert_eq!(h.orig_len, 60);
        assert_eq!(data, &[1, 2, 3, 4]);
    }

    #[test]
    fn hostile_records_are_refused() {
        assert_eq!(parse_record(&[0; 5]), Err(RecordError::Short(5)));
        assert!(matches!(parse_record(&record(10, 60, &[0; 4])), Err(RecordError::CapBeyondRecord { .. })));
        assert!(matches!(parse_record(&record(8, 4, &[0; 8])), Err(RecordError::CapBeyondOrig { .. })));
        assert!(matches!(parse_record(&record(0, 4, &[0; 8])), Err(RecordError::CapOutOfRange(0))));
        assert!(matches!(parse_record(&record(u32::MAX, u32::MAX, &[0; 8])), Err(RecordError::CapOutOfRange(_))));
    }

    #[test]
    fn batch_roundtrip_keeps_order_and_bytes() {
        let mut b = BatchBuilder::with_capacity(1024);
        b.push(&record(3, 3, &[9, 8, 7, 0])).unwrap();
        assert!(b.push(&record(9, 3, &[0; 4])).is_err());
        b.push(&record(2, 100, &[5, 6])).unwrap();
        let batch = b.finish();
        assert_eq!(batch.len(), 2);
        let packets: Vec<_> = batch.packets().collect();
        assert_eq!(packets[0].data, &[9, 8, 7]);
        assert_eq!(packets[1].data, &[5, 6]);
        assert_eq!(packets[1].header.orig_len, 100);
        assert!(b.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz of the record parser.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..512 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            if let Ok((h, d)) = parse_record(&buf) {
                assert_eq!(h.cap_len as usize, d.len());
            }
        }
    }
}
