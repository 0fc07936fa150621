//! Local streams of pcap for live consumers: a Unix socket every client of which gets its own
//! stream (`--serve unix:PATH`), and a named pipe whose readers come and go (`-w FIFO`).
//!
//! Each reader gets a pcap global header when its stream starts, then packets; one header per
//! reader lifetime (Suricata stops at a second header). Packets are encoded once per batch and
//! shared between readers. A reader that does not keep up never slows capture or the others:
//! each has a bounded queue, and what does not fit is dropped and counted for that reader.

use std::{
    fs::OpenOptions,
    io::{self, Write},
    os::{
        fd::{AsFd, AsRawFd},
        unix::fs::{FileTypeExt, OpenOptionsExt},
    },
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{self, RecvTimeoutError, SyncSender, TrySendError},
    },
    thread,
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::{
    CaptureStats, Sink, SinkReport, SinkStop,
    pcap::{LINKTYPE_ETHERNET, global_header, record_header},
};
use crate::{
    drain::Batch,
    listener::{self, Limits, Listener, Slot, UnixSocketFile},
};

/// Chunks a reader may have queued before it starts losing packets.
const READER_QUEUE: usize = 256;

/// How often a reader's thread, while no packet comes, checks that its reader is still there.
/// A named pipe tells its writer that the reader left only on the next write (EPIPE) or through
/// poll(): had nothing been written in between, a new reader opening the pipe would be handed the
/// old stream, mid-way and without a header. So the window for that is this long, not unbounded.
const HANGUP_CHECK: Duration = Duration::from_millis(10);

/// Encodes a batch as pcap records (no global header), once for all readers.
pub fn encode(batch: &Batch) -> Bytes {
    let mut out = Vec::with_capacity(batch.byte_len() + batch.len() * 16);
    for p in batch.packets() {
        out.extend_from_slice(&record_header(
            p.ts_ns,
            p.data.len() as u32,
            p.header.orig_len,
        ));
        out.extend_from_slice(p.data);
    }
    Bytes::from(out)
}

/// Per-reader accounting, shared with its writer thread.
#[derive(Debug, Default)]
pub struct ReaderStats {
    pub packets: AtomicU64,
    /// Packets lost because the reader's queue was full (it did not keep up).
    pub dropped: AtomicU64,
    /// Packets that were on their way to the reader (queued or being written) when it left.
    pub left: AtomicU64,
    /// Packets handed to the reader's queue and not written yet. What is still there when the
    /// capture ends (a reader that stopped reading) is lost to it.
    pub queued: AtomicU64,
    pub gone: AtomicBool,
}

struct Reader {
    tx: SyncSender<(Bytes, u64)>,
    stats: Arc<ReaderStats>,
    id: u64,
}

/// What one client of a stream got, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientReport {
    pub id: u64,
    /// Packets written to the client.
    pub delivered: u64,
    /// Packets dropped because its queue was full: it did not keep up.
    pub dropped: u64,
    /// Packets queued for it that it never got: on their way when it left, or still queued
    /// when the capture ended (a client that had stopped reading).
    pub undelivered: u64,
    /// It left before the capture ended.
    pub left: bool,
}

impl ClientReport {
    fn of(id: u64, s: &ReaderStats) -> Self {
        let gone = s.gone.load(Ordering::Relaxed);
        Self {
            id,
            delivered: s.packets.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            undelivered: s.left.load(Ordering::Relaxed) + s.queued.load(Ordering::Relaxed),
            left: gone,
        }
    }
}

impl std::fmt::Display for ClientReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "client {}: {} packets delivered",
            self.id, self.delivered
        )?;
        if self.dropped > 0 {
            write!(f, ", {} dropped (it did not keep up)", self.dropped)?;
        }
        if self.undelivered > 0 {
            let when = if self.left {
                "on their way when it left"
            } else {
                "still queued at the end"
            };
            write!(f, ", {} undelivered ({when})", self.undelivered)?;
        }
        Ok(())
    }
}

/// Clients named one by one in a summary; earlier ones are summed up.
const CLIENTS_LISTED: usize = 16;

/// Counters of a stream sink, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamReport {
    /// Readers served, over the run.
    pub readers: u64,
    /// Packets delivered to readers (a packet counts once per reader).
    pub delivered: u64,
    /// Packets dropped because a reader's queue was full, or still queued for a reader that had
    /// stopped reading when the capture ended.
    pub reader_drops: u64,
    /// Packets captured while no reader was connected (or on their way to one that left).
    pub no_reader: u64,
    /// `--serve`: each client, in the order they connected (the last [`CLIENTS_LISTED`]).
    pub clients: Vec<ClientReport>,
    /// `--serve`: the clients left out of `clients`, summed.
    pub earlier: ClientReport,
    /// `--serve`: how many clients `earlier` sums.
    pub earlier_count: u64,
}

impl StreamReport {
    /// Keeps a client's report: listed while there is room, summed after.
    fn push_client(&mut self, c: ClientReport) {
        self.clients.push(c);
        if self.clients.len() > CLIENTS_LISTED {
            let old = self.clients.remove(0);
            self.earlier.delivered += old.delivered;
            self.earlier.dropped += old.dropped;
            self.earlier.undelivered += old.undelivered;
            self.earlier_count += 1;
        }
    }
}

/// True when the other end is gone: a pipe without readers (POLLERR), a closed socket (POLLHUP).
fn hung_up(fd: impl AsFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_fd().as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    let rc = unsafe { libc::poll(&mut p, 1, 0) };
    rc > 0 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// Starts a writer thread for one reader: header first, then chunks, until the reader goes.
///
/// `slot`: the client's place under its listener's caps, given back when the thread ends.
fn spawn_reader<W: Write + AsFd + Send + 'static>(
    mut out: W,
    snaplen: u32,
    id: u64,
    slot: Option<Slot>,
) -> Reader {
    let (tx, rx) = mpsc::sync_channel::<(Bytes, u64)>(READER_QUEUE);
    let stats = Arc::new(ReaderStats::default());
    let s = Arc::clone(&stats);
    let _ = thread::Builder::new()
        .name(format!("tap-reader-{id}"))
        .spawn(move || {
            let header = global_header(snaplen, LINKTYPE_ETHERNET);
            let mut up = out.write_all(&header).and_then(|()| out.flush()).is_ok();
            while up {
                match rx.recv_timeout(HANGUP_CHECK) {
                    Ok((chunk, packets)) => {
                        if out.write_all(&chunk).and_then(|()| out.flush()).is_ok() {
                            s.packets.fetch_add(packets, Ordering::Relaxed);
                        } else {
                            s.left.fetch_add(packets, Ordering::Relaxed);
                            up = false;
                        }
                        s.queued.fetch_sub(packets, Ordering::Relaxed);
                    }
                    Err(RecvTimeoutError::Timeout) => up = !hung_up(&out),
                    Err(RecvTimeoutError::Disconnected) => up = false,
                }
            }
            // Whatever was still queued for this reader is lost to it; later chunks find the queue
            // closed. The output closes before the reader counts as gone, so a pipe reopened for the
            // next reader can never reach this stream.
            while let Ok((_, packets)) = rx.try_recv() {
                s.left.fetch_add(packets, Ordering::Relaxed);
                s.queued.fetch_sub(packets, Ordering::Relaxed);
            }
            drop(rx);
            drop(out);
            drop(slot);
            s.gone.store(true, Ordering::Relaxed);
        });
    Reader { tx, stats, id }
}

/// Fans a chunk out to readers; full queues drop and count; returns false if no reader took it.
fn fan_out(
    readers: &mut Vec<Reader>,
    chunk: &Bytes,
    packets: u64,
    report: &mut StreamReport,
) -> bool {
    let mut any = false;
    readers.retain(|r| {
        if r.stats.gone.load(Ordering::Relaxed) {
            harvest(r, report);
            return false;
        }
        // Counted before the send: the reader's thread may take the chunk at once.
        r.stats.queued.fetch_add(packets, Ordering::Relaxed);
        match r.tx.try_send((chunk.clone(), packets)) {
            Ok(()) => any = true,
            Err(TrySendError::Full(_)) => {
                r.stats.queued.fetch_sub(packets, Ordering::Relaxed);
                r.stats.dropped.fetch_add(packets, Ordering::Relaxed);
                any = true;
            }
            Err(TrySendError::Disconnected(_)) => {
                r.stats.queued.fetch_sub(packets, Ordering::Relaxed);
                harvest(r, report);
                return false;
            }
        }
        true
    });
    any
}

fn harvest(r: &Reader, report: &mut StreamReport) {
    add_stats(&r.stats, report);
    let client = ClientReport::of(r.id, &r.stats);
    tracing::info!(
        reader = r.id,
        delivered = client.delivered,
        dropped = client.dropped,
        undelivered = client.undelivered,
        "stream reader left"
    );
    report.push_client(client);
}

/// Adds a reader's counts to the report, once it is gone or the capture is over: what is still
/// queued then belongs to a reader that stopped reading, and is dropped like a full queue's.
fn add_stats(s: &ReaderStats, report: &mut StreamReport) {
    report.delivered += s.packets.load(Ordering::Relaxed);
    report.reader_drops += s.dropped.load(Ordering::Relaxed) + s.queued.load(Ordering::Relaxed);
    report.no_reader += s.left.load(Ordering::Relaxed);
}

/// Clients of a `--serve` socket served at once, and how long one may leave its stream
/// unread: past that, a write that does not progress ends its stream (its queue had long been
/// dropping packets, counted for it).
pub const SERVE_LIMITS: Limits = Limits {
    max_connections: 16,
    header_timeout: Duration::from_secs(2),
    idle_timeout: Duration::from_secs(30),
};

/// `--serve unix:PATH`: every client that connects gets its own pcap stream.
pub struct ServeSink {
    path: PathBuf,
    readers: Arc<Mutex<Vec<Reader>>>,
    accepted: Arc<AtomicU64>,
    report: StreamReport,
    written: u64,
    /// Packets captured while no client was connected.
    no_client: u64,
    // Field order is drop order: stop accepting, then remove the socket file (also when the
    // capture fails before it finishes this sink).
    listener: Option<Listener>,
    _file: UnixSocketFile,
}

impl ServeSink {
    /// Binds the socket (mode 0600; a stale socket file is replaced, a live one or anything else
    /// refused) and starts accepting clients on the current Tokio runtime, through the bounded
    /// listener ([`SERVE_LIMITS`]).
    pub fn bind(path: &Path, snaplen: u32) -> io::Result<Self> {
        let (listener, file) = listener::bind_unix(path)?;
        let listener = tokio::net::UnixListener::from_std(listener)?;
        let readers: Arc<Mutex<Vec<Reader>>> = Arc::default();
        let accepted = Arc::new(AtomicU64::new(0));
        let (r, a) = (Arc::clone(&readers), Arc::clone(&accepted));
        let name = format!("serve {}", path.display());
        let listener = Listener::spawn(&name, listener, SERVE_LIMITS, move |conn| {
            let idle = conn.limits.idle_timeout;
            let (stream, slot) = conn.into_parts();
            let (r, a) = (Arc::clone(&r), Arc::clone(&a));
            async move {
                // The client's thread writes with blocking calls, each bounded by the timeout.
                let stream = match stream.into_std().and_then(|s| {
                    s.set_nonblocking(false)?;
                    listener::set_send_timeout(&s, idle)?;
                    Ok(s)
                }) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "setting up a stream reader failed");
                        return;
                    }
                };
                let id = a.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::info!(reader = id, "stream reader connected");
                let reader = spawn_reader(stream, snaplen, id, Some(slot));
                r.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(reader);
            }
        });
        Ok(Self {
            path: path.to_path_buf(),
            readers,
            accepted,
            report: StreamReport::default(),
            written: 0,
            no_client: 0,
            listener: Some(listener),
            _file: file,
        })
    }

    /// Counters so far.
    pub fn stream_report(&self) -> StreamReport {
        let mut r = self.report.clone();
        r.readers = self.accepted.load(Ordering::Relaxed);
        r
    }
}

impl Sink for ServeSink {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkStop> {
        let chunk = encode(batch);
        let packets = batch.len() as u64;
        let mut readers = self
            .readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !fan_out(&mut readers, &chunk, packets, &mut self.report) {
            self.report.no_reader += packets;
            self.no_client += packets;
        }
        self.written += packets;
        Ok(())
    }

    fn finish(mut self: Box<Self>, _stats: &CaptureStats) -> SinkReport {
        drop(self.listener.take());
        let readers = std::mem::take(
            &mut *self
                .readers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        // Closing the queues lets each reader thread drain and end.
        let waiting: Vec<(u64, Arc<ReaderStats>)> = readers
            .iter()
            .map(|r| (r.id, Arc::clone(&r.stats)))
            .collect();
        drop(readers);
        let deadline = Instant::now() + Duration::from_secs(2);
        for (id, s) in &waiting {
            while !s.gone.load(Ordering::Relaxed) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            add_stats(s, &mut self.report);
            let mut client = ClientReport::of(*id, s);
            // Connected until the end, however its thread is doing.
            client.left = false;
            self.report.push_client(client);
        }
        let r = &self.report;
        let mut note = format!(
            "serve {}: {} clients",
            self.path.display(),
            self.accepted.load(Ordering::Relaxed),
        );
        if r.earlier_count > 0 {
            let e = &r.earlier;
            note.push_str(&format!(
                "; {} earlier clients: {} packets delivered, {} dropped, {} undelivered",
                r.earlier_count, e.delivered, e.dropped, e.undelivered
            ));
        }
        for c in &r.clients {
            note.push_str(&format!("; {c}"));
        }
        note.push_str(&format!(
            "; {} packets while no client was connected",
            self.no_client
        ));
        SinkReport {
            written: self.written,
            notes: vec![note],
            ..Default::default()
        }
    }
}

/// `-w FIFO`: a named pipe whose reader may come and go. Opened without blocking; while nobody
/// reads, packets are counted as having no reader; each new reader starts with a header.
pub struct FifoSink {
    path: PathBuf,
    snaplen: u32,
    reader: Option<Reader>,
    next_id: u64,
    report: StreamReport,
    written: u64,
}

impl FifoSink {
    pub fn new(path: &Path, snaplen: u32) -> Self {
        Self {
            path: path.to_path_buf(),
            snaplen,
            reader: None,
            next_id: 0,
            report: StreamReport::default(),
            written: 0,
        }
    }

    /// True when `path` is a named pipe.
    pub fn is_fifo(path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
    }

    /// Opens the pipe if a reader waits on it (O_NONBLOCK fails with ENXIO otherwise).
    fn try_connect(&mut self) {
        if self
            .reader
            .as_ref()
            .is_some_and(|r| !r.stats.gone.load(Ordering::Relaxed))
        {
            return;
        }
        if let Some(old) = self.reader.take() {
            harvest(&old, &mut self.report);
        }
        let Ok(file) = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&self.path)
        else {
            return;
        };
        // Blocking writes from here on: the reader's thread may wait, capture does not.
        // SAFETY: valid fd; clearing O_NONBLOCK.
        unsafe {
            use std::os::fd::AsRawFd;
            let fd = file.as_raw_fd();
            let flags = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
        self.next_id += 1;
        self.report.readers += 1;
        tracing::info!(reader = self.next_id, path = %self.path.display(), "stream reader connected");
        self.reader = Some(spawn_reader(file, self.snaplen, self.next_id, None));
    }

    pub fn stream_report(&self) -> StreamReport {
        self.report.clone()
    }
}

impl Sink for FifoSink {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkStop> {
        self.try_connect();
        let packets = batch.len() as u64;
        self.written += packets;
        let mut readers: Vec<Reader> = self.reader.take().into_iter().collect();
        if !fan_out(&mut readers, &encode(batch), packets, &mut self.report) {
            self.report.no_reader += packets;
        }
        self.reader = readers.pop();
        Ok(())
    }

    fn idle(&mut self) -> Result<(), SinkStop> {
        self.try_connect();
        Ok(())
    }

    fn deadline(&self) -> Option<Instant> {
        // Look for a new reader now and then even when no packet arrives.
        Some(Instant::now() + Duration::from_millis(200))
    }

    fn finish(mut self: Box<Self>, _stats: &CaptureStats) -> SinkReport {
        if let Some(r) = self.reader.take() {
            let stats = Arc::clone(&r.stats);
            drop(r);
            let deadline = Instant::now() + Duration::from_secs(2);
            while !stats.gone.load(Ordering::Relaxed) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            add_stats(&stats, &mut self.report);
        }
        let r = &self.report;
        let note = format!(
            "pipe {}: {} readers, {} packets delivered, {} dropped by a slow reader, {} with no reader",
            self.path.display(),
            r.readers,
            r.delivered,
            r.reader_drops,
            r.no_reader
        );
        // "Written" for a pipe: what its readers got.
        SinkReport {
            written: r.delivered,
            notes: vec![note],
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{io::Read, os::fd::FromRawFd, os::unix::net::UnixStream};

    use super::*;

    #[test]
    fn a_reader_that_leaves_is_noticed_without_a_write() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        assert!(!hung_up(&ours));
        drop(theirs);
        assert!(hung_up(&ours));
        // A pipe whose read end is closed: POLLERR.
        let mut fds = [0; 2];
        // SAFETY: a valid array of two fds for pipe(2) to fill.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both fds were just created and are owned here.
        let (read, write) = unsafe {
            (
                std::fs::File::from_raw_fd(fds[0]),
                std::fs::File::from_raw_fd(fds[1]),
            )
        };
        assert!(!hung_up(&write));
        drop(read);
        assert!(hung_up(&write));
    }

    #[test]
    fn a_reader_gets_a_header_then_packets_and_leaves_when_the_queue_closes() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let reader = spawn_reader(ours, 1500, 1, None);
        reader.stats.queued.fetch_add(2, Ordering::Relaxed);
        reader
            .tx
            .send((Bytes::from_static(b"two packets"), 2))
            .unwrap();
        let stats = Arc::clone(&reader.stats);
        drop(reader);
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).unwrap();
        assert_eq!(&got[..24], &global_header(1500, LINKTYPE_ETHERNET));
        assert_eq!(&got[24..], b"two packets");
        while !stats.gone.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(1));
        }
        let mut report = StreamReport::default();
        add_stats(&stats, &mut report);
        assert_eq!(
            report,
            StreamReport {
                readers: 0,
                delivered: 2,
                reader_drops: 0,
                no_reader: 0,
                ..StreamReport::default()
            }
        );
    }
}
