//! `tap capture --store DIR`: the capture writer with an indexing observer, and retention.
//!
//! The writer thread indexes each packet as it is encoded ([`Indexer`]). When a file is
//! finished (renamed to its final name), its index is handed to the index thread, which makes
//! the Community IDs and writes the Parquet files; until they are there a query indexes the file
//! on the fly, so a finished file is queryable at once, also after `kill -9`.
//!
//! Retention (`--store-max-bytes`, `--store-max-age`) deletes the oldest capture files of the
//! directory with their index, oldest first: before a new file starts, after each write that
//! takes the store past its size, and once a second for age. When a write finds the disk full,
//! the writer asks for room before giving up: retention deletes the oldest file (even inside
//! the limits) and the write is tried again; only when nothing is left to delete do packets
//! drop, counted as writer drops with the disk full as the reason.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
        mpsc::{Receiver, SyncSender, sync_channel},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tracing::{info, warn};

use super::{
    StoreConfig, StoreError,
    index::{FileIndex, Indexer},
    layout::{self, Lock},
    reindex,
};
use crate::{
    kernel::batch::Packet,
    sink::{
        Sink, SinkSetup, StorageError,
        writer::{CaptureWriter, Chunk, WriteObserver},
    },
};

/// Counters of a store while it is written, for the summary and the agent's metrics: the caller
/// hands them in, and reads them while the writer runs.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Capture files indexed.
    pub files_indexed: AtomicU64,
    /// Flows in those indexes (each file counts its own).
    pub flows_indexed: AtomicU64,
    /// Bytes of index files written.
    pub index_bytes: AtomicU64,
    /// Files whose index could not be written (a query indexes them on the fly).
    pub index_failed: AtomicU64,
    /// Capture files deleted by retention, and their bytes (index included).
    pub deleted_files: AtomicU64,
    pub deleted_bytes: AtomicU64,
    /// Of those, deleted to make room on a full disk.
    pub deleted_for_room: AtomicU64,
    /// Files recovered or indexed at the start (a writer that died before).
    pub recovered: AtomicU64,
}

/// A capture file of the store, for retention.
#[derive(Debug, Clone)]
struct Entry {
    path: PathBuf,
    /// Capture and index files, bytes.
    bytes: u64,
    /// Its last packet (its modification time without an index), ns since the epoch.
    last_ns: u64,
    name: String,
}

/// The store's files, oldest first.
#[derive(Debug, Default)]
struct Catalogue {
    entries: Vec<Entry>,
}

impl Catalogue {
    fn total(&self) -> u64 {
        self.entries.iter().map(|e| e.bytes).sum()
    }

    fn insert(&mut self, e: Entry) {
        let at = self
            .entries
            .partition_point(|x| (x.last_ns, &x.name) <= (e.last_ns, &e.name));
        self.entries.insert(at, e);
    }
}

fn file_bytes(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// What the writer thread and the index thread share.
#[derive(Debug)]
struct Shared {
    catalogue: Mutex<Catalogue>,
    /// Bytes of the file being written.
    current: AtomicU64,
    stats: Arc<StoreStats>,
    config: StoreConfig,
}

impl Shared {
    /// Deletes the oldest file; `why` for the log. Returns false when there is none.
    fn delete_oldest(&self, why: &str) -> bool {
        let Some(e) = ({
            let mut c = self
                .catalogue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (!c.entries.is_empty()).then(|| c.entries.remove(0))
        }) else {
            return false;
        };
        for p in [
            layout::flows_path(&e.path),
            layout::blocks_path(&e.path),
            e.path.clone(),
        ] {
            if let Err(err) = std::fs::remove_file(&p) {
                if err.kind() != std::io::ErrorKind::NotFound {
                    warn!(path = %p.display(), error = %err, "retention: cannot delete");
                }
            }
        }
        self.stats.deleted_files.fetch_add(1, Relaxed);
        self.stats.deleted_bytes.fetch_add(e.bytes, Relaxed);
        info!(path = %e.path.display(), bytes = e.bytes, reason = why, "retention: deleted the oldest file");
        true
    }

    /// Applies the limits: size (with `current` bytes of the file being written) and age.
    fn enforce(&self, current: u64) {
        if let Some(max) = self.config.max_bytes {
            loop {
                let total = self
                    .catalogue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .total();
                if total + current <= max || !self.delete_oldest("--store-max-bytes") {
                    break;
                }
            }
        }
        if let Some(age) = self.config.max_age {
            let cutoff = now_ns().saturating_sub(u64::try_from(age.as_nanos()).unwrap_or(u64::MAX));
            loop {
                let old = self
                    .catalogue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entries
                    .first()
                    .is_some_and(|e| e.last_ns < cutoff);
                if !old || !self.delete_oldest("--store-max-age") {
                    break;
                }
            }
        }
    }
}

/// A finished file for the index thread.
struct Job {
    path: PathBuf,
    index: FileIndex,
    file_len: u64,
}

/// Writes indexes as files finish (see the module notes).
#[expect(clippy::needless_pass_by_value, reason = "the thread owns them")]
fn index_thread(jobs: Receiver<Job>, shared: Arc<Shared>) {
    for job in jobs {
        let (_, last_ns) = job.index.span();
        let flows = job.index.flows.len() as u64;
        let mut result = reindex::write_index(&job.path, &job.index, job.file_len);
        // A full disk: retention makes room (when it is on), then the index is tried again.
        while matches!(&result, Err(StoreError::Storage(StorageError::Write { source, .. })) if crate::sink::file::is_disk_full(source))
            && shared.config.retention()
            && shared.delete_oldest("disk full")
        {
            shared.stats.deleted_for_room.fetch_add(1, Relaxed);
            result = reindex::write_index(&job.path, &job.index, job.file_len);
        }
        let index_bytes = match result {
            Ok(n) => {
                shared.stats.files_indexed.fetch_add(1, Relaxed);
                shared.stats.flows_indexed.fetch_add(flows, Relaxed);
                shared.stats.index_bytes.fetch_add(n, Relaxed);
                n
            }
            Err(e) => {
                warn!(path = %job.path.display(), error = %e, "cannot write the index; queries index the file on the fly, `tap store reindex` writes it");
                shared.stats.index_failed.fetch_add(1, Relaxed);
                0
            }
        };
        if !job.path.exists() {
            // Retention took the file meanwhile: no index without its file.
            let _ = std::fs::remove_file(layout::flows_path(&job.path));
            let _ = std::fs::remove_file(layout::blocks_path(&job.path));
            continue;
        }
        let mut c = shared
            .catalogue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(e) = c.entries.iter_mut().find(|e| e.path == job.path) {
            e.bytes = job.file_len + index_bytes;
            if last_ns > 0 {
                e.last_ns = last_ns;
            }
        }
        drop(c);
        // The index counts towards the size too.
        shared.enforce(shared.current.load(Relaxed));
    }
}

/// The observer the capture writer calls (see the module notes).
pub struct StoreObserver {
    ix: Indexer,
    jobs: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    /// Bytes of the file being written.
    current: u64,
    last_age_check: Instant,
    /// The lock: held for as long as the writer runs.
    _lock: Lock,
}

impl std::fmt::Debug for StoreObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreObserver").finish_non_exhaustive()
    }
}

impl StoreObserver {
    /// Takes the store's lock, recovers what an earlier writer left, and starts the index thread.
    ///
    /// # Errors
    ///
    /// When a file cannot be read or written, or holds what it should not (the error says which).
    pub fn open(
        config: &StoreConfig,
        compressed: bool,
        stats: Arc<StoreStats>,
    ) -> Result<Self, StoreError> {
        layout::create_dir(&config.dir)?;
        let lock = Lock::acquire(&config.dir)?;
        let report = reindex::reindex(&config.dir, false)?;
        let fixed = report.recovered + report.indexed;
        if fixed > 0 {
            info!(dir = %config.dir.display(), "{report}");
        }
        stats.recovered.store(fixed, Relaxed);
        let mut catalogue = Catalogue::default();
        for c in layout::list(&config.dir)?.captures {
            let last_ns = reindex::load_meta(&c)
                .ok()
                .filter(|m| m.last_ns > 0)
                .map_or(c.mtime_ns, |m| m.last_ns);
            catalogue.insert(Entry {
                bytes: c.len
                    + file_bytes(&layout::flows_path(&c.path))
                    + file_bytes(&layout::blocks_path(&c.path)),
                path: c.path,
                last_ns,
                name: c.name,
            });
        }
        let shared = Arc::new(Shared {
            catalogue: Mutex::new(catalogue),
            current: AtomicU64::new(0),
            stats,
            config: config.clone(),
        });
        let (tx, rx) = sync_channel::<Job>(4);
        let thread_shared = Arc::clone(&shared);
        let span = tracing::Span::current();
        let thread = std::thread::Builder::new()
            .name("tap-index".into())
            .spawn(move || span.in_scope(|| index_thread(rx, thread_shared)))
            .map_err(|source| StoreError::Io {
                path: config.dir.clone(),
                source,
            })?;
        Ok(Self {
            ix: Indexer::new(compressed),
            jobs: Some(tx),
            thread: Some(thread),
            shared,
            current: 0,
            last_age_check: Instant::now(),
            _lock: lock,
        })
    }

    fn age_check(&mut self) {
        if self.shared.config.max_age.is_some()
            && self.last_age_check.elapsed() >= Duration::from_secs(1)
        {
            self.last_age_check = Instant::now();
            self.shared.enforce(self.current);
        }
    }
}

impl WriteObserver for StoreObserver {
    fn file_started(&mut self, _path: &Path) {
        self.ix.reset();
        self.current = 0;
        self.shared.current.store(0, Relaxed);
        self.shared.enforce(0);
    }

    #[inline]
    fn packet(&mut self, p: &Packet<'_>, interface: u32, at: usize) {
        self.ix.packet(
            p.data,
            (p.header.tunnel, p.header.tunnel_id),
            p.ts_ns,
            p.header.orig_len,
            interface,
            at,
        );
    }

    fn chunk_written(&mut self, chunk: &Chunk) {
        self.ix.chunk(chunk);
        self.current += chunk.len;
        self.shared.current.store(self.current, Relaxed);
        if let Some(max) = self.shared.config.max_bytes {
            let total = self
                .shared
                .catalogue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .total();
            if total + self.current > max {
                self.shared.enforce(self.current);
            }
        }
        self.age_check();
    }

    fn file_finished(&mut self, path: &Path) {
        let index = self.ix.take();
        let file_len = file_bytes(path);
        self.shared
            .catalogue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(Entry {
                path: path.to_path_buf(),
                bytes: file_len,
                last_ns: index.span().1.max(1),
                name: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            });
        self.current = 0;
        self.shared.current.store(0, Relaxed);
        let job = Job {
            path: path.to_path_buf(),
            index,
            file_len,
        };
        if let Some(tx) = &self.jobs {
            if tx.send(job).is_err() {
                warn!(path = %path.display(), "the index thread is gone: the file stays unindexed");
                self.shared.stats.index_failed.fetch_add(1, Relaxed);
            }
        }
    }

    fn file_discarded(&mut self) {
        self.ix.reset();
        self.current = 0;
        self.shared.current.store(0, Relaxed);
    }

    fn make_room(&mut self) -> bool {
        if !self.shared.config.retention() {
            return false;
        }
        let freed = self.shared.delete_oldest("disk full");
        if freed {
            self.shared.stats.deleted_for_room.fetch_add(1, Relaxed);
        }
        freed
    }

    fn idle(&mut self) {
        self.age_check();
    }

    fn rotate_due(&self) -> bool {
        self.ix.full()
    }

    fn finish(&mut self) -> Vec<String> {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let s = &self.shared.stats;
        let mut notes = vec![format!(
            "store {}: {} files indexed ({} flows, {} index bytes)",
            self.shared.config.dir.display(),
            s.files_indexed.load(Relaxed),
            s.flows_indexed.load(Relaxed),
            s.index_bytes.load(Relaxed)
        )];
        let deleted = s.deleted_files.load(Relaxed);
        if deleted > 0 || self.shared.config.retention() {
            notes.push(format!(
                "store retention: {deleted} files ({} bytes) deleted, {} of them to make room on a full disk",
                s.deleted_bytes.load(Relaxed),
                s.deleted_for_room.load(Relaxed)
            ));
        }
        let failed = s.index_failed.load(Relaxed);
        if failed > 0 {
            notes.push(format!(
                "store: {failed} files left without an index (queries index them on the fly; `tap store reindex` writes it)"
            ));
        }
        let recovered = s.recovered.load(Relaxed);
        if recovered > 0 {
            notes.push(format!(
                "store: {recovered} files of an earlier writer recovered or indexed at the start"
            ));
        }
        notes
    }
}

/// Opens the store the output names: its observer (lock, recovery, index thread), then the
/// capture writer with it.
///
/// # Errors
///
/// When a file cannot be read or written, or holds what it should not (the error says which).
pub fn open(
    setup: SinkSetup<'_>,
    config: &StoreConfig,
    stats: Arc<StoreStats>,
) -> Result<Box<dyn Sink>, StoreError> {
    let compressed = setup.output.compression != crate::model::Compression::None;
    let observer = StoreObserver::open(config, compressed, stats)?;
    Ok(Box::new(CaptureWriter::open_observed(
        setup,
        Some(Box::new(observer)),
    )?))
}
