//! Drains the ring buffer in batches.
//!
//! The ring's file descriptor is registered with epoll (Tokio's [`AsyncFd`]), so the drain sleeps
//! until the kernel signals data (or its poll interval passes) and then takes everything
//! available, up to a batch limit, in one go. Each record is checked before it is trusted, and
//! left where the programs wrote it: a batch ([`Batch`]) is a range of the ring that goes back to
//! the kernel when the batch drops, once written. No packet is copied and nothing is allocated
//! per packet; the ring is the capture's buffer.

use std::{io, sync::Arc};

use tap_common::event::HEADER_LEN;
use tokio::io::unix::AsyncFd;

use crate::kernel::{
    batch::{Batch, parse_record},
    loader::RingMap,
    ring::Ring,
};

/// How often the drain looks at the ring when no wake-up came: the worst-case latency of a
/// packet that arrived without one.
pub const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// The longest poll interval: the programs' time-based wake-up (`TAP_WAKEUP_NS`, 100 ms) makes
/// waiting longer pointless.
pub const MAX_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Limits of one batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_packets: usize,
    pub max_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_packets: 8192,
            max_bytes: 1 << 20,
        }
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

/// The ring, registered with epoll, read in place.
pub struct Drain {
    /// Registered for the kernel's wake-ups.
    fd: AsyncFd<RingMap>,
    ring: Arc<Ring>,
    /// Where the next walk starts: ahead of the consumer position by the views still alive.
    read_pos: u64,
    limits: BatchLimits,
    poll: std::time::Duration,
}

impl Drain {
    /// Registers the ring map with epoll.
    pub fn new(map: RingMap, limits: BatchLimits) -> io::Result<Self> {
        let ring = Arc::clone(&map.ring);
        // SAFETY: the RingMap owns the map's fd for as long as the AsyncFd holds it, and the
        // AsyncFd deregisters before dropping it.
        let fd = unsafe { AsyncFd::register(map) }.map_err(io::Error::from)?;
        let read_pos = ring.consumer_pos();
        Ok(Self {
            fd,
            ring,
            read_pos,
            limits,
            poll: POLL_INTERVAL,
        })
    }

    /// Looks at the ring at least this often ([`POLL_INTERVAL`] unless set; at most
    /// [`MAX_POLL_INTERVAL`]). An output that only flushes every so often gains nothing from a
    /// shorter one, and each look costs a wake-up.
    pub fn set_poll_interval(&mut self, poll: std::time::Duration) {
        self.poll = poll.clamp(POLL_INTERVAL, MAX_POLL_INTERVAL);
    }

    /// The mapped ring (its fill level).
    pub fn ring(&self) -> Arc<Ring> {
        Arc::clone(&self.ring)
    }

    /// Waits until the kernel signals records (or the poll interval passes), then takes a batch
    /// of at most `max_packets`.
    ///
    /// The programs wake the reader only each time enough bytes have been written or a while
    /// after the last wake-up (see `wakeup_flags` in tap-ebpf), so a lone packet may arrive without a
    /// wake-up: the poll interval bounds how long it waits.
    pub async fn next_batch(&mut self, max_packets: usize) -> io::Result<Taken> {
        loop {
            // Woken (a guard) or the poll interval passed (none): look either way.
            let woken = match tokio::time::timeout(self.poll, self.fd.readable()).await {
                Ok(guard) => Some(guard?),
                Err(_elapsed) => None,
            };
            let taken = Self::fill(&self.ring, &mut self.read_pos, self.limits, max_packets);
            if let Some(mut guard) = woken {
                if !taken.more {
                    guard.clear_ready();
                }
            }
            if !taken.batch.is_empty() || taken.malformed > 0 {
                return Ok(taken);
            }
        }
    }

    /// Takes what the ring holds now without waiting (used at shutdown).
    pub fn take_now(&mut self, max_packets: usize) -> Taken {
        Self::fill(&self.ring, &mut self.read_pos, self.limits, max_packets)
    }

    /// Walks the committed records after `read_pos` into a batch that views them in place.
    fn fill(
        ring: &Arc<Ring>,
        read_pos: &mut u64,
        limits: BatchLimits,
        max_packets: usize,
    ) -> Taken {
        let max_packets = max_packets.min(limits.max_packets);
        let (mut len, mut bytes, mut malformed) = (0, 0, 0);
        let from = *read_pos;
        let walked =
            ring.walk(
                from,
                max_packets,
                limits.max_bytes as u64,
                |record| match parse_record(record) {
                    Ok((_, data)) => {
                        len += 1;
                        bytes += HEADER_LEN + data.len();
                    }
                    Err(_) => malformed += 1,
                },
            );
        *read_pos = walked.end;
        let batch = Batch::from_ring(ring, from, walked.end, len, bytes);
        Taken {
            batch,
            malformed,
            more: walked.full,
        }
    }
}
