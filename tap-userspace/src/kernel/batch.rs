//! The records the programs write into the ring, and batches of them: checked before they are
//! trusted, and left where the programs wrote them. A batch is a range of the ring
//! ([`super::ring::View`]) that goes back to the kernel when the batch drops, or packed copies
//! built in user space (checksums fixed, synthetic ones).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tap_common::{
    config::MAX_SNAPLEN,
    event::{HEADER_LEN, PacketHeader},
};

use super::{
    clock,
    ring::{self, Ring, View},
};

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
    if cap == 0 || cap > MAX_SNAPLEN {
        return Err(RecordError::CapOutOfRange(cap));
    }
    if cap as usize > avail {
        return Err(RecordError::CapBeyondRecord { cap, avail });
    }
    if cap > header.orig_len {
        return Err(RecordError::CapBeyondOrig {
            cap,
            orig: header.orig_len,
        });
    }
    Ok((header, &record[HEADER_LEN..HEADER_LEN + cap as usize]))
}

/// A run of packets taken from the ring in one go.
///
/// Packets taken by the drain stay in the ring's memory (a [`View`], given back to the kernel
/// when the batch drops); batches built in user space (checksums fixed, synthetic ones) hold
/// packed copies.
#[derive(Debug)]
pub struct Batch {
    storage: Storage,
    len: usize,
    /// Header and packet bytes of the valid records.
    bytes: usize,
    /// CLOCK_MONOTONIC → CLOCK_REALTIME offset for this batch, in ns.
    offset_ns: i64,
}

#[derive(Debug)]
enum Storage {
    /// Packed `[PacketHeader][cap_len bytes]` entries, already validated.
    Packed(Bytes),
    /// Ring records as the programs wrote them; the malformed ones (counted when walked) are
    /// skipped again when read.
    Ring(View),
}

/// One packet of a [`Batch`].
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    pub header: PacketHeader,
    /// Wall-clock time, ns since the Unix epoch.
    pub ts_ns: u64,
    pub data: &'a [u8],
}

impl Clone for Batch {
    /// A copy that holds no ring memory (a clone kept around must not hold the ring's space).
    fn clone(&self) -> Self {
        match &self.storage {
            Storage::Packed(buf) => Self {
                storage: Storage::Packed(buf.clone()),
                ..*self
            },
            Storage::Ring(_) => {
                let mut builder = BatchBuilder::with_capacity(self.bytes);
                for p in self.packets() {
                    builder.push_parts(&p.header, p.data);
                }
                builder.finish_with_offset(self.offset_ns)
            }
        }
    }
}

impl Batch {
    /// Number of packets.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Packet bytes plus headers ([`HEADER_LEN`] each) held, in bytes.
    pub fn byte_len(&self) -> usize {
        self.bytes
    }

    /// CLOCK_MONOTONIC → CLOCK_REALTIME offset of this batch, in ns.
    pub fn offset_ns(&self) -> i64 {
        self.offset_ns
    }

    /// A packed copy of every packet, whatever the storage (what [`Clone`] does to a ring
    /// batch): for benches of the consumers that keep batches.
    #[must_use]
    pub fn packed_copy(&self) -> Self {
        let mut builder = BatchBuilder::with_capacity(self.bytes);
        for p in self.packets() {
            builder.push_parts(&p.header, p.data);
        }
        builder.finish_with_offset(self.offset_ns)
    }

    /// The packed buffer of a batch built in user space (a clone of a ring batch is one), which
    /// its packets' bytes are slices of; `None` for a range of the ring.
    pub fn packed_bytes(&self) -> Option<&Bytes> {
        match &self.storage {
            Storage::Packed(buf) => Some(buf),
            Storage::Ring(_) => None,
        }
    }

    pub fn packets(&self) -> Packets<'_> {
        let (rest, ring): (&[u8], bool) = match &self.storage {
            Storage::Packed(buf) => (buf, false),
            Storage::Ring(view) => (view.bytes(), true),
        };
        Packets {
            rest,
            ring,
            offset: self.offset_ns,
        }
    }
}

/// The packets of a [`Batch`], in order.
#[derive(Debug)]
pub struct Packets<'a> {
    rest: &'a [u8],
    /// Ring records (each behind the ring's header, malformed ones to skip) rather than packed
    /// entries.
    ring: bool,
    offset: i64,
}

impl<'a> Iterator for Packets<'a> {
    type Item = Packet<'a>;

    #[inline]
    fn next(&mut self) -> Option<Packet<'a>> {
        let (header, data) = if self.ring {
            loop {
                if let Ok(parsed) = parse_record(ring::next_record(&mut self.rest)?) {
                    break parsed;
                }
            }
        } else {
            // Entries were validated when the batch was built.
            let (header, data) = parse_record(self.rest).ok()?;
            self.rest = &self.rest[HEADER_LEN + data.len()..];
            (header, data)
        };
        Some(Packet {
            header,
            ts_ns: clock::to_realtime_ns(header.ts_ns, self.offset),
            data,
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
        Self {
            buf: BytesMut::with_capacity(bytes),
            len: 0,
        }
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
        let bytes = unsafe { std::slice::from_raw_parts((&raw const h).cast::<u8>(), HEADER_LEN) };
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
        Batch {
            bytes: buf.len(),
            storage: Storage::Packed(buf),
            len,
            offset_ns,
        }
    }
}

impl Batch {
    /// The records of `ring` from `from` to `end` (walked already: `len` valid ones holding
    /// `bytes` bytes), viewed in place until the batch drops.
    pub(crate) fn from_ring(
        ring: &Arc<Ring>,
        from: u64,
        end: u64,
        len: usize,
        bytes: usize,
    ) -> Self {
        // A range of discarded or malformed records only is given back when its (empty) batch
        // drops; an empty range needs no view.
        let storage = if end == from {
            Storage::Packed(Bytes::new())
        } else {
            Storage::Ring(View::new(Arc::clone(ring), from, end))
        };
        // An empty batch (most polls of an idle ring) needs no clock readings.
        let offset_ns = if len > 0 {
            clock::realtime_offset_ns()
        } else {
            0
        };
        Self {
            storage,
            len,
            bytes,
            offset_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(cap: u32, orig: u32, payload: &[u8]) -> Vec<u8> {
        let header = PacketHeader {
            ts_ns: 1_000,
            ifindex: 3,
            orig_len: orig,
            cap_len: cap,
            hook: 1,
            direction: 1,
            ..Default::default()
        };
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
        assert!(matches!(
            parse_record(&record(10, 60, &[0; 4])),
            Err(RecordError::CapBeyondRecord { .. })
        ));
        assert!(matches!(
            parse_record(&record(8, 4, &[0; 8])),
            Err(RecordError::CapBeyondOrig { .. })
        ));
        assert!(matches!(
            parse_record(&record(0, 4, &[0; 8])),
            Err(RecordError::CapOutOfRange(0))
        ));
        assert!(matches!(
            parse_record(&record(u32::MAX, u32::MAX, &[0; 8])),
            Err(RecordError::CapOutOfRange(_))
        ));
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
