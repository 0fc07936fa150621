//! The packet store: a directory of rotating pcapng files, each with a Parquet index of its
//! flows, so any flow is found again in seconds (`tap capture --store DIR`, `tap query DIR`).
//!
//! - Writing is the capture writer itself ([`crate::sink::writer::CaptureWriter`]: pcapng,
//!   rotation, zstd, crash safety) with an observer ([`sink::StoreObserver`]) that indexes what
//!   it writes: each packet's flow ([`flow`], with its [`community`] ID) and the block of the
//!   file it lands in ([`index`]). A finished file's index goes to disk ([`table`]) from a
//!   thread of its own; retention deletes the oldest files, with their index, first.
//! - The directory ([`layout`]): one writer (a lock), any number of readers.
//! - Reading: [`query`] chooses files by time, flows by the filter ([`plan`]), reads only their
//!   blocks ([`capfile`], [`blocks`]), applies the whole filter to each packet and merges the
//!   files in time order. A file without an index (a crash, a file put there by hand) is
//!   indexed on the fly; [`reindex`] rebuilds indexes and recovers the file a crash left.

pub mod bench;
pub mod blocks;
pub mod capfile;
pub mod cli;
pub mod community;
pub mod flow;
pub mod index;
pub mod layout;
pub mod plan;
pub mod query;
pub mod reindex;
pub mod sigs;
pub mod sink;
pub mod table;
pub mod time;

use std::{io, path::PathBuf};

pub use crate::model::StoreConfig;

/// Default rotation of a store: a new file every minute, or at 1 GB (1000 MB).
pub const DEFAULT_ROTATE_SECS: u64 = 60;
pub const DEFAULT_FILE_MB: f64 = 1000.0;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{dir} is written by another tap (pid {}): one writer per store", pid.map_or_else(|| "unknown".to_string(), |p| p.to_string()))]
    Locked { dir: PathBuf, pid: Option<u32> },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("store directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("index {path}: {source}")]
    Table {
        path: PathBuf,
        #[source]
        source: table::TableError,
    },
    #[error(transparent)]
    CapFile(#[from] capfile::CapFileError),
    #[error(transparent)]
    Storage(#[from] crate::sink::StorageError),
    #[error("filter: {0}")]
    Filter(#[from] crate::filter::FilterError),
    #[error("{option} {value:?}: {reason}")]
    Setting {
        option: &'static str,
        value: String,
        reason: String,
    },
    #[error("the index thread stopped")]
    IndexThread,
}
