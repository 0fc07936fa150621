//! Pre-trigger memory: the last `max_age` (and at most `max_bytes`) of a tap's matched packets,
//! held in memory for the evidence writer ([`crate::evidence`]) to take a flow's packets from
//! after an alert, the ones before it included.
//!
//! A consumer of the capture like the others ([`PretriggerSink`], on the writer thread): each
//! batch is packed once into one buffer ([`Batch::clone`] gives no ring memory away) and every
//! packet is held as a `bytes::Bytes` slice of it, so a batch costs one allocation and a copy of
//! its bytes, and a packet a queue entry. Each held packet is accounted as its captured bytes
//! plus [`RECORD_OVERHEAD`] (its header and its entry). The oldest packets go first: those older
//! than `max_age` behind the newest (`expired`), and, while the accounted bytes exceed
//! `max_bytes`, the oldest whatever their age (`overwritten`: the history is then shorter than
//! `max_age`, the wrap an operator wants to see in the metrics). A batch buffer is freed when its
//! last packet goes, so the memory in use exceeds the accounted bytes by at most one batch.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use bytes::Bytes;
use serde::Serialize;
use tap_common::event::{HEADER_LEN, PacketHeader};

use super::{CaptureStats, Sink, SinkReport, SinkStop};
use crate::{kernel::batch::Batch, model::PretriggerLimits};

/// Bytes accounted per held packet besides its captured bytes: its record header and its queue
/// entry.
pub const RECORD_OVERHEAD: u64 = (HEADER_LEN + size_of::<Held>()) as u64;

/// One packet in memory.
#[derive(Debug, Clone)]
pub struct Held {
    pub header: PacketHeader,
    /// Wall-clock time, ns since the epoch.
    pub ts_ns: u64,
    /// The captured bytes.
    pub data: Bytes,
}

/// Counters of a history, for the tap's stats and metrics.
#[derive(Debug, Default)]
pub struct PretriggerStats {
    /// Packets taken in.
    pub packets: AtomicU64,
    /// Packets dropped for their age (the window moved on).
    pub expired: AtomicU64,
    /// Packets dropped for the size limit before their age: each is a wrap of the memory.
    pub overwritten: AtomicU64,
    /// Packets and accounted bytes held now.
    pub held_packets: AtomicU64,
    pub held_bytes: AtomicU64,
    /// The oldest packet held, ns since the epoch (0: none).
    pub oldest_ns: AtomicU64,
}

/// [`PretriggerStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PretriggerSnapshot {
    pub packets: u64,
    pub expired: u64,
    pub overwritten: u64,
    pub held_packets: u64,
    pub held_bytes: u64,
    /// The limits, for readers (0: none).
    pub max_bytes: u64,
    pub max_age_ns: u64,
    /// ns of history held now (newest minus oldest).
    pub span_ns: u64,
}

#[derive(Debug, Default)]
struct Ring {
    packets: VecDeque<Held>,
    bytes: u64,
}

/// The memory of one tap, shared by its writer (which fills it) and the evidence writer (which
/// reads it).
#[derive(Debug)]
pub struct History {
    limits: PretriggerLimits,
    ring: Mutex<Ring>,
    pub stats: PretriggerStats,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl History {
    #[must_use]
    pub fn new(limits: PretriggerLimits) -> Self {
        Self {
            limits,
            ring: Mutex::default(),
            stats: PretriggerStats::default(),
        }
    }

    #[must_use]
    pub fn limits(&self) -> PretriggerLimits {
        self.limits
    }

    /// Takes a batch's packets in, dropping the oldest as the limits say.
    pub fn push(&self, batch: &Batch) {
        if batch.is_empty() {
            return;
        }
        let held = held_packets(batch);
        let mut ring = self.ring.lock().expect("pretrigger lock");
        let mut newest = ring.packets.back().map_or(0, |h| h.ts_ns);
        for h in held {
            ring.bytes += h.data.len() as u64 + RECORD_OVERHEAD;
            newest = newest.max(h.ts_ns);
            ring.packets.push_back(h);
        }
        self.stats.packets.fetch_add(batch.len() as u64, Relaxed);
        let (mut expired, mut overwritten) = (0, 0);
        if let Some(age) = self.limits.max_age {
            let cutoff = newest.saturating_sub(ns(age));
            while ring.packets.front().is_some_and(|h| h.ts_ns < cutoff) {
                let h = ring.packets.pop_front().expect("a front");
                ring.bytes -= h.data.len() as u64 + RECORD_OVERHEAD;
                expired += 1;
            }
        }
        if let Some(max) = self.limits.max_bytes {
            while ring.bytes > max {
                let Some(h) = ring.packets.pop_front() else {
                    break;
                };
                ring.bytes -= h.data.len() as u64 + RECORD_OVERHEAD;
                overwritten += 1;
            }
        }
        self.stats.expired.fetch_add(expired, Relaxed);
        self.stats.overwritten.fetch_add(overwritten, Relaxed);
        self.stats
            .held_packets
            .store(ring.packets.len() as u64, Relaxed);
        self.stats.held_bytes.store(ring.bytes, Relaxed);
        self.stats
            .oldest_ns
            .store(ring.packets.front().map_or(0, |h| h.ts_ns), Relaxed);
    }

    /// The packets held with a time in `[start_ns, end_ns]`, oldest first (in the order taken).
    /// Only the handles are copied under the lock; the bytes stay shared.
    #[must_use]
    pub fn window(&self, start_ns: u64, end_ns: u64) -> Vec<Held> {
        let ring = self.ring.lock().expect("pretrigger lock");
        // Packets of different CPUs arrive a little out of order: the binary search finds a
        // start a second early, the test below is exact.
        let margin = 1_000_000_000;
        let from = ring
            .packets
            .partition_point(|h| h.ts_ns < start_ns.saturating_sub(margin));
        ring.packets
            .range(from..)
            .filter(|h| (start_ns..=end_ns).contains(&h.ts_ns))
            .cloned()
            .collect()
    }

    #[must_use]
    pub fn snapshot(&self) -> PretriggerSnapshot {
        let s = &self.stats;
        let ring = self.ring.lock().expect("pretrigger lock");
        let span_ns = match (ring.packets.front(), ring.packets.back()) {
            (Some(a), Some(b)) => b.ts_ns.saturating_sub(a.ts_ns),
            _ => 0,
        };
        drop(ring);
        PretriggerSnapshot {
            packets: s.packets.load(Relaxed),
            expired: s.expired.load(Relaxed),
            overwritten: s.overwritten.load(Relaxed),
            held_packets: s.held_packets.load(Relaxed),
            held_bytes: s.held_bytes.load(Relaxed),
            max_bytes: self.limits.max_bytes.unwrap_or(0),
            max_age_ns: self.limits.max_age.map_or(0, ns),
            span_ns,
        }
    }
}

/// The batch's packets as shared slices of one packed copy.
fn held_packets(batch: &Batch) -> Vec<Held> {
    let packed = batch.clone();
    let Some(buf) = packed.packed_bytes() else {
        return Vec::new();
    };
    let base = buf.as_ptr() as usize;
    packed
        .packets()
        .map(|p| {
            let at = p.data.as_ptr() as usize - base;
            Held {
                header: p.header,
                ts_ns: p.ts_ns,
                data: buf.slice(at..at + p.data.len()),
            }
        })
        .collect()
}

/// The consumer that fills a [`History`].
pub struct PretriggerSink {
    history: Arc<History>,
}

impl PretriggerSink {
    #[must_use]
    pub fn new(history: Arc<History>) -> Self {
        Self { history }
    }
}

impl Sink for PretriggerSink {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkStop> {
        self.history.push(batch);
        Ok(())
    }

    fn finish(self: Box<Self>, _stats: &CaptureStats) -> SinkReport {
        let s = self.history.snapshot();
        SinkReport {
            notes: vec![format!(
                "pretrigger: {} packets taken, {} held ({} bytes), {} expired, {} overwritten before their time",
                s.packets, s.held_packets, s.held_bytes, s.expired, s.overwritten
            )],
            ..SinkReport::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::batch::BatchBuilder;

    const S: u64 = 1_000_000_000;

    /// A batch of `n` packets of `len` bytes, the k-th at `t0 + k * step` (realtime, with the
    /// batch's offset 0 so kernel time is wall time).
    fn batch(t0: u64, step: u64, n: u64, len: usize) -> Batch {
        let mut b = BatchBuilder::with_capacity(4096);
        for k in 0..n {
            let h = PacketHeader {
                ts_ns: t0 + k * step,
                orig_len: len as u32,
                ..PacketHeader::default()
            };
            b.push_parts(&h, &vec![k as u8; len]);
        }
        b.finish_with_offset(0)
    }

    #[test]
    fn old_packets_expire_and_the_size_limit_wraps() {
        let h = History::new(PretriggerLimits {
            max_age: Some(Duration::from_secs(10)),
            max_bytes: None,
        });
        // 30 packets a second apart: the last 10 s stay (t = 19 .. 29 s: 11 packets).
        h.push(&batch(S, S, 30, 100));
        let s = h.snapshot();
        assert_eq!((s.packets, s.held_packets, s.expired), (30, 11, 19));
        assert_eq!(s.held_bytes, 11 * (100 + RECORD_OVERHEAD));
        assert_eq!(s.span_ns, 10 * S);
        let w = h.window(20 * S, 22 * S);
        assert_eq!(
            w.iter().map(|p| p.ts_ns / S).collect::<Vec<_>>(),
            [20, 21, 22]
        );
        assert_eq!(&w[0].data[..], &[19u8; 100][..]);

        let h = History::new(PretriggerLimits {
            max_age: Some(Duration::from_secs(3600)),
            max_bytes: Some(5 * (100 + RECORD_OVERHEAD)),
        });
        for k in 0..4 {
            h.push(&batch(k * 10 * S, S, 3, 100));
        }
        let s = h.snapshot();
        assert_eq!((s.held_packets, s.overwritten, s.expired), (5, 7, 0));
        assert!(s.held_bytes <= 5 * (100 + RECORD_OVERHEAD));
        // The newest five: 21, 22 and 30, 31, 32 s.
        let w = h.window(0, u64::MAX);
        assert_eq!(
            w.iter().map(|p| p.ts_ns / S).collect::<Vec<_>>(),
            [21, 22, 30, 31, 32]
        );
    }
}
