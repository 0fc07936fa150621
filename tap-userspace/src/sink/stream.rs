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
    os::unix::{
        fs::{FileTypeExt, OpenOptionsExt, PermissionsExt},
        net::UnixListener,
    },
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{self, SyncSender, TrySendError},
    },
    thread,
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::{
    CaptureStats, Sink, SinkReport, SinkStop,
    pcap::{LINKTYPE_ETHERNET, global_header, record_header},
};
use crate::drain::Batch;

/// Chunks a reader may have queued before it starts losing packets.
const READER_QUEUE: usize = 256;

/// Encodes a batch as pcap records (no global header), once for all readers.
pub fn encode(batch: &Batch) -> Bytes {
    let mut out = Vec::with_capacity(batch.byte_len() + batch.len() * 16);
    for p in batch.packets() {
        out.extend_from_slice(&record_header(p.ts_ns, p.data.len() as u32, p.header.orig_len));
        out.extend_from_slice(p.data);
    }
    Bytes::from(out)
}

/// Per-reader accounting, shared with its writer thread.
#[derive(Debug, Default)]
pub struct ReaderStats {
    pub packets: AtomicU64,
    pub dropped: AtomicU64,
    pub gone: AtomicBool,
}

struct Reader {
    tx: SyncSender<(Bytes, u64)>,
    stats: Arc<ReaderStats>,
    id: u64,
}

/// Counters of a stream sink, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamReport {
    /// Readers served, over the run.
    pub readers: u64,
    /// Packets delivered to readers (a packet counts once per reader).
    pub delivered: u64,
    /// Packets dropped because a reader's queue was full.
    pub reader_drops: u64,
    /// Packets captured while no reader was connected.
    pub no_reader: u64,
}

/// Starts a writer thread for one reader: header first, then chunks, until the reader goes.
fn spawn_reader(mut out: Box<dyn Write + Send>, snaplen: u32, id: u64) -> Reader {
    let (tx, rx) = mpsc::sync_channel::<(Bytes, u64)>(READER_QUEUE);
    let stats = Arc::new(ReaderStats::default());
    let s = Arc::clone(&stats);
    let _ = thread::Builder::new().name(format!("tap-reader-{id}")).spawn(move || {
        let header = global_header(snaplen, LINKTYPE_ETHERNET);
        if out.write_all(&header).and_then(|()| out.flush()).is_err() {
            s.gone.store(true, Ordering::Relaxed);
            return;
        }
        while let Ok((chunk, packets)) = rx.recv() {
            if out.write_all(&chunk).and_then(|()| out.flush()).is_err() {
                s.dropped.fetch_add(packets, Ordering::Relaxed);
                break;
            }
            s.packets.fetch_add(packets, Ordering::Relaxed);
        }
        s.gone.store(true, Ordering::Relaxed);
        // Whatever was still queued for this reader is lost to it.
        while let Ok((_, packets)) = rx.try_recv() {
            s.dropped.fetch_add(packets, Ordering::Relaxed);
        }
    });
    Reader { tx, stats, id }
}

/// Fans a chunk out to readers; full queues drop and count; returns false if no reader took it.
fn fan_out(readers: &mut Vec<Reader>, chunk: &Bytes, packets: u64, report: &mut StreamReport) -> bool {
    let mut any = false;
    readers.retain(|r| {
        if r.stats.gone.load(Ordering::Relaxed) {
            harvest(r, report);
            return false;
        }
        match r.tx.try_send((chunk.clone(), packets)) {
            Ok(()) => any = true,
            Err(TrySendError::Full(_)) => {
                r.stats.dropped.fetch_add(packets, Ordering::Relaxed);
                any = true;
            }
            Err(TrySendError::Disconnected(_)) => {
                harvest(r, report);
                return false;
            }
        }
        true
    });
    any
}

fn harvest(r: &Reader, report: &mut StreamReport) {
    report.delivered += r.stats.packets.load(Ordering::Relaxed);
    report.reader_drops += r.stats.dropped.load(Ordering::Relaxed);
    tracing::info!(reader = r.id, "stream reader left");
}

/// `--serve unix:PATH`: every client that connects gets its own pcap stream.
pub struct ServeSink {
    path: PathBuf,
    readers: Arc<Mutex<Vec<Reader>>>,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    report: StreamReport,
    written: u64,
}

impl ServeSink {
    /// Binds the socket (mode 0600; a stale socket file is replaced, anything else refused) and
    /// starts accepting clients.
    pub fn bind(path: &Path, snaplen: u32) -> io::Result<Self> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if meta.file_type().is_socket() {
                std::fs::remove_file(path)?;
            } else {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a socket"));
            }
        }
        // The socket file takes its mode from the umask at bind time: make it 0600 from birth.
        // SAFETY: umask has no preconditions; restored right after.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let listener = bound?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        let readers: Arc<Mutex<Vec<Reader>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let (r, s, a) = (Arc::clone(&readers), Arc::clone(&stop), Arc::clone(&accepted));
        thread::Builder::new().name("tap-serve".into()).spawn(move || {
            let mut next_id = 0;
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        next_id += 1;
                        a.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(reader = next_id, "stream reader connected");
                        let reader = spawn_reader(Box::new(stream), snaplen, next_id);
                        r.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(reader);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(20)),
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a stream reader failed");
                        thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
        Ok(Self { path: path.to_path_buf(), readers, stop, accepted, report: StreamReport::default(), written: 0 })
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
        let mut readers = self.readers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !fan_out(&mut readers, &chunk, packets, &mut self.report) {
            self.report.no_reader += packets;
        }
        self.written += packets;
        Ok(())
    }

    fn idle(&mut self) -> Result<(), SinkStop> {
        Ok(())
    }

    fn deadline(&self) -> Option<Instant> {
        None
    }

    fn finish(mut self: Box<Self>, _stats: &CaptureStats) -> SinkReport {
        self.stop.store(true, Ordering::Relaxed);
        let readers = std::mem::take(&mut *self.readers.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        // Closing the queues lets each reader thread drain and end.
        let waiting: Vec<Arc<ReaderStats>> = readers.iter().map(|r| Arc::clone(&r.stats)).collect();
        drop(readers);
        let deadline = Instant::now() + Duration::from_secs(2);
        for s in &waiting {
            while !s.gone.load(Ordering::Relaxed) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            self.report.delivered += s.packets.load(Ordering::Relaxed);
            self.report.reader_drops += s.dropped.load(Ordering::Relaxed);
        }
        let _ = std::fs::remove_file(&self.path);
        let r = &self.report;
        let note = format!(
            "serve {}: {} readers, {} packets delivered, {} dropped by slow readers, {} with no reader",
            self.path.display(),
            self.accepted.load(Ordering::Relaxed),
            r.delivered,
            r.reader_drops,
            r.no_reader
        );
        SinkReport { written: self.written, notes: vec![note], ..Default::default() }
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
        Self { path: path.to_path_buf(), snaplen, reader: None, next_id: 0, report: StreamReport::default(), written: 0 }
    }

    /// True when `path` is a named pipe.
    pub fn is_fifo(path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
    }

    /// Opens the pipe if a reader waits on it (O_NONBLOCK fails with ENXIO otherwise).
    fn try_connect(&mut self) {
        if self.reader.as_ref().is_some_and(|r| !r.stats.gone.load(Ordering::Relaxed)) {
            return;
        }
        if let Some(old) = self.reader.take() {
            harvest(&old, &mut self.report);
        }
        let Ok(file) = OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(&self.path)
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
        self.reader = Some(spawn_reader(Box::new(file), self.snaplen, self.next_id));
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
            self.report.delivered += stats.packets.load(Ordering::Relaxed);
            self.report.reader_drops += stats.dropped.load(Ordering::Relaxed);
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
        SinkReport { written: r.delivered, notes: vec![note], ..Default::default() }
    }
}
