//! Sinks: where batches go. Each sink owns its output.
//!
//! The capture writer ([`writer::CaptureWriter`]) encodes packets as pcap or pcapng
//! ([`pcap`], [`pcapng`]) into a large buffer of whole records, optionally compresses each
//! buffer into one zstd frame, and appends it to standard output or to files ([`file`]) that
//! rotate by size and time into a ring ([`rotate`]).

pub mod checksum;
pub mod fanout;
pub mod file;
pub mod inject;
mod mmsg;
pub mod pcap;
pub mod pcapng;
pub mod pretrigger;
pub mod print;
pub mod rotate;
pub mod stream;
pub mod suricata;
pub mod vxlan;
pub mod writer;

use std::{io, path::PathBuf, time::Instant};

use crate::{
    kernel::batch::Batch,
    kernel::counters::KernelCounters,
    model::{Hook, Interface, OutputConfig},
};

/// Counters of the capture, as the statistics blocks of a pcapng file report them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureStats {
    pub kernel: KernelCounters,
    /// Packets lost between the ring and the writer (its queue was full), since the start.
    pub writer_dropped: u64,
    /// The same per interface and hook, for the interfaces with a counter slot (empty when the
    /// source has none: the totals then stand for the whole capture).
    pub interfaces: Vec<crate::kernel::ifstats::IfCounts>,
}

/// Reads the capture's counters now (the writer calls it when it closes a file).
pub type StatsSource = Box<dyn Fn() -> CaptureStats + Send>;

/// Errors of the output.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path} exists: use --force to overwrite it")]
    Exists { path: PathBuf },
    #[error("refusing to write {path}: it is a symbolic link")]
    Symlink { path: PathBuf },
    #[error("cannot open {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing {path} failed: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot rename {from} to {to}: {source}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing standard output failed: {0}")]
    Stdout(#[source] io::Error),
    #[error("zstd: {0}")]
    Compress(#[source] io::Error),
    #[error("file name: {0}")]
    Pattern(#[from] rotate::PatternError),
}

impl From<crate::support::safe_create::CreateError> for StorageError {
    fn from(e: crate::support::safe_create::CreateError) -> Self {
        use crate::support::safe_create::CreateError as E;
        match e {
            E::Exists { path } => Self::Exists { path },
            E::Symlink { path } => Self::Symlink { path },
            E::Linked { ref path } => Self::Create {
                path: path.clone(),
                source: io::Error::other(e.to_string()),
            },
            E::Open { path, source } => Self::Create { path, source },
        }
    }
}

/// Why a sink stopped taking packets.
#[derive(Debug)]
pub enum SinkStop {
    /// The reader of a pipe went away.
    Closed,
    /// The disk filled up and `--on-disk-full stop` is in force.
    DiskFull,
    /// Any other failure (the report says which).
    Failed,
}

/// What a sink did, reported when it finishes.
#[derive(Debug, Default)]
pub struct SinkReport {
    /// Packets that reached the output.
    pub written: u64,
    /// Bytes that reached the output (headers included; compressed bytes when compressing).
    pub bytes: u64,
    /// Packets handed to the sink that did not reach the output.
    pub lost: u64,
    /// Files finished (renamed to their final names).
    pub files: u64,
    /// The reader of a pipe went away.
    pub closed: bool,
    /// The disk filled up: where, and whether the capture stopped because of it.
    pub disk_full: Option<(PathBuf, bool)>,
    /// A failure that ended the output (besides a full disk or a closed pipe).
    pub error: Option<StorageError>,
    /// Lines for the summary from consumers (streams, forwarders, the monitor interface).
    pub notes: Vec<String>,
    /// Packets the printer skipped because it was behind ([`print::PrintSink`]).
    pub not_printed: u64,
}

/// A consumer of packet batches. Runs on the writer thread, so it may block.
pub trait Sink: Send {
    /// Takes every packet of the batch (buffered, rotated, written as due).
    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkStop>;
    /// Called when no batch is waiting and when [`Sink::deadline`] passes: writes what is due,
    /// starts the next file when its time has come.
    fn idle(&mut self) -> Result<(), SinkStop> {
        Ok(())
    }
    /// When [`Sink::idle`] must run even if no batch arrives.
    fn deadline(&self) -> Option<Instant> {
        None
    }
    /// Writes what is left and the final statistics, closes the output.
    fn finish(self: Box<Self>, stats: &CaptureStats) -> SinkReport;
}

/// What a sink needs to know about the capture.
pub struct SinkSetup<'a> {
    pub output: &'a OutputConfig,
    pub interfaces: &'a [Interface],
    pub hooks: &'a [Hook],
    /// Bytes kept of each packet.
    pub snaplen: u32,
    /// The filter expression, empty for none.
    pub filter: &'a str,
    /// The capture's counters, for files closed before the end.
    pub stats: StatsSource,
    /// Told the path of each finished file (rotation), e.g. for the Suricata driver.
    pub finished: Option<std::sync::mpsc::Sender<PathBuf>>,
    /// Where the writer publishes its counts while it runs (status line, metrics).
    pub progress: Option<std::sync::Arc<WriterProgress>>,
}

/// Live counts of the capture writer for status and metrics: copies of its report, updated
/// after each batch it takes and each idle call.
#[derive(Debug, Default)]
pub struct WriterProgress {
    /// Packets that reached the output.
    pub written: std::sync::atomic::AtomicU64,
    /// Bytes that reached the output.
    pub bytes: std::sync::atomic::AtomicU64,
    /// Files finished (rotated).
    pub files: std::sync::atomic::AtomicU64,
    /// Packets handed to the writer that did not reach the output.
    pub lost: std::sync::atomic::AtomicU64,
}

/// Opens the output the configuration names (the first file, when writing files).
pub fn open(setup: SinkSetup<'_>) -> Result<Box<dyn Sink>, StorageError> {
    Ok(Box::new(writer::CaptureWriter::open(setup)?))
}
