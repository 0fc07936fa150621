//! Index files on disk, and (re)building them: after a crash (`kill -9`, a power cut), for
//! files put in the store by hand, and for `tap store reindex DIR`.
//!
//! Recovery of the file a writer was writing (`.NAME.part`): it is read through, cut back to
//! its last whole pcapng block (zstd frame), renamed to `NAME` (never over an existing file),
//! and indexed. A file that is not pcapng, or is damaged before its first packet, is skipped
//! with a warning and counted, never deleted.

use std::{
    fs::OpenOptions,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use bytes::Bytes;
use tracing::{info, warn};

use super::{
    StoreError,
    capfile::{self, Scanned},
    index::{Block, FileIndex},
    layout::{self, CaptureFile},
    table::{self, FlowRow, Meta},
};
use crate::sink::{file::OutFile, rotate};

/// Writes the index files of capture file `capture` (`file_len` bytes): blocks first, then
/// flows, each under a temporary name renamed when complete, so a reader that finds the flows
/// file finds its blocks too. Returns the bytes written.
///
/// # Errors
///
/// When a file cannot be read or written, or holds what it should not (the error says which).
pub fn write_index(capture: &Path, index: &FileIndex, file_len: u64) -> Result<u64, StoreError> {
    let name = capture
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (first_ns, last_ns) = index.span();
    let meta = Meta {
        file: name,
        bytes: file_len,
        compressed: capfile::is_compressed(capture),
        packets: index.packets(),
        flows: index.flows.len() as u64,
        first_ns,
        last_ns,
    };
    let flows_path = layout::flows_path(capture);
    let (flows, blocks) = table::encode(index, &meta).map_err(|source| StoreError::Table {
        path: flows_path.clone(),
        source,
    })?;
    let mut total = 0;
    for (path, bytes) in [(layout::blocks_path(capture), blocks), (flows_path, flows)] {
        let mut f = OutFile::create(&path, Some(rotate::temp_name(&path)), true)?;
        if let Err(e) = f.append(&bytes, |_| 0) {
            let temp = f.current_name().to_path_buf();
            f.discard();
            return Err(StoreError::Storage(crate::sink::StorageError::Write {
                path: temp,
                source: e.error,
            }));
        }
        f.finish(true)?;
        total += bytes.len() as u64;
    }
    Ok(total)
}

fn read(path: &Path) -> Result<Bytes, StoreError> {
    std::fs::read(path)
        .map(Bytes::from)
        .map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn check(capture: &CaptureFile, meta: &Meta, path: &Path) -> Result<(), StoreError> {
    if meta.file != capture.name || meta.bytes != capture.len {
        return Err(StoreError::Table {
            path: path.to_path_buf(),
            source: table::TableError::Invalid {
                what: format!(
                    "stale: made for {} of {} bytes, the file has {}",
                    meta.file, meta.bytes, capture.len
                ),
            },
        });
    }
    Ok(())
}

/// The footer of a capture file's flows index, checked against the file.
///
/// # Errors
///
/// When a file cannot be read or written, or holds what it should not (the error says which).
pub fn load_meta(capture: &CaptureFile) -> Result<Meta, StoreError> {
    let path = layout::flows_path(&capture.path);
    let meta = table::read_meta(read(&path)?).map_err(|source| StoreError::Table {
        path: path.clone(),
        source,
    })?;
    check(capture, &meta, &path)?;
    Ok(meta)
}

/// The flows of a capture file, from its index (checked against the file), read once:
/// `None` when its footer's metadata does not pass `keep` (the rows are then not decoded).
/// Only the rows `want_blocks` keeps get their block runs.
///
/// # Errors
///
/// When a file cannot be read or written, or holds what it should not (the error says which).
pub fn load_flows(
    capture: &CaptureFile,
    keep: &dyn Fn(&Meta) -> bool,
    want_blocks: &dyn Fn(&FlowRow) -> bool,
) -> Result<Option<(Meta, Vec<FlowRow>)>, StoreError> {
    let path = layout::flows_path(&capture.path);
    let err = |source| StoreError::Table {
        path: path.clone(),
        source,
    };
    let bytes = read(&path)?;
    let meta = table::read_meta(bytes.clone()).map_err(err)?;
    check(capture, &meta, &path)?;
    if !keep(&meta) {
        return Ok(None);
    }
    let (meta, rows) = table::read_flows(bytes, want_blocks).map_err(err)?;
    Ok(Some((meta, rows)))
}

/// The blocks of a capture file, from its index (checked against the file).
///
/// # Errors
///
/// When a file cannot be read or written, or holds what it should not (the error says which).
pub fn load_blocks(capture: &CaptureFile) -> Result<Vec<Block>, StoreError> {
    let path = layout::blocks_path(&capture.path);
    let (meta, blocks) = table::read_blocks(read(&path)?).map_err(|source| StoreError::Table {
        path: path.clone(),
        source,
    })?;
    check(capture, &meta, &path)?;
    if blocks
        .last()
        .is_some_and(|b| b.offset + b.len > capture.len)
    {
        return Err(StoreError::Table {
            path,
            source: table::TableError::Invalid {
                what: "blocks beyond the end of the file".into(),
            },
        });
    }
    Ok(blocks)
}

/// Indexes `capture` by reading it through; its index files are written when `write`.
///
/// # Errors
///
/// When a file cannot be read or written, or holds what it should not (the error says which).
pub fn index_capture(capture: &CaptureFile, write: bool) -> Result<Scanned, StoreError> {
    let scanned = capfile::scan(&capture.path)?;
    if scanned.whole_len < scanned.file_len {
        warn!(path = %capture.path.display(), whole = scanned.whole_len, bytes = scanned.file_len,
            "the file ends in a torn block: indexed up to its last whole one");
    }
    if write {
        write_index(&capture.path, &scanned.index, capture.len)?;
    }
    Ok(scanned)
}

/// Recovers a `.NAME.part` file a writer left: cuts it back to its last whole block, renames
/// it to `NAME` and indexes it. Returns the final path.
///
/// # Errors
///
/// When a file cannot be read or written, or holds what it should not (the error says which).
pub fn recover_part(part: &Path) -> Result<PathBuf, StoreError> {
    let scanned = capfile::scan(part)?;
    let io = |source| StoreError::Io {
        path: part.to_path_buf(),
        source,
    };
    if scanned.whole_len < scanned.file_len {
        let f = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(part)
            .map_err(io)?;
        f.set_len(scanned.whole_len).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    let name = part
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix('.'))
        .and_then(|n| n.strip_suffix(".part"))
        .ok_or_else(|| io(std::io::ErrorKind::InvalidInput.into()))?;
    let target = part.with_file_name(name);
    // A hard link refuses to replace an existing file (unlike rename).
    std::fs::hard_link(part, &target).map_err(|source| StoreError::Io {
        path: target.clone(),
        source,
    })?;
    std::fs::remove_file(part).map_err(io)?;
    write_index(&target, &scanned.index, scanned.whole_len)?;
    Ok(target)
}

/// What [`reindex`] did.
#[derive(Debug, Default)]
pub struct ReindexReport {
    /// Capture files whose index was (re)built.
    pub indexed: u64,
    /// Files a writer left unfinished, recovered.
    pub recovered: u64,
    /// Files already indexed (when not rebuilding all).
    pub up_to_date: u64,
    /// Index files without a capture file, removed.
    pub orphans: u64,
    /// Files skipped, with why.
    pub skipped: Vec<(PathBuf, String)>,
}

impl std::fmt::Display for ReindexReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} files indexed, {} recovered, {} already indexed, {} orphaned index files removed, {} skipped",
            self.indexed,
            self.recovered,
            self.up_to_date,
            self.orphans,
            self.skipped.len()
        )
    }
}

/// Recovers the files writers left and indexes every capture file of `dir` (with `all`) or
/// those without a valid index. The caller holds the store's lock.
///
/// # Errors
///
/// When a file cannot be read or written, or holds what it should not (the error says which).
pub fn reindex(dir: &Path, all: bool) -> Result<ReindexReport, StoreError> {
    let mut report = ReindexReport::default();
    let listing = layout::list(dir)?;
    for part in &listing.parts {
        match recover_part(part) {
            Ok(path) => {
                info!(path = %path.display(), "recovered the file a writer left unfinished");
                report.recovered += 1;
            }
            Err(e) => {
                warn!(path = %part.display(), error = %e, "cannot recover; skipped");
                report.skipped.push((part.clone(), e.to_string()));
            }
        }
    }
    let listing = layout::list(dir)?;
    for capture in &listing.captures {
        if !all && load_meta(capture).is_ok() && load_blocks(capture).is_ok() {
            report.up_to_date += 1;
            continue;
        }
        match index_capture(capture, true) {
            Ok(_) => report.indexed += 1,
            Err(e) => {
                warn!(path = %capture.path.display(), error = %e, "cannot index; skipped");
                report.skipped.push((capture.path.clone(), e.to_string()));
            }
        }
    }
    for orphan in &listing.orphans {
        if std::fs::remove_file(orphan).is_ok() {
            report.orphans += 1;
        }
    }
    for other in &listing.others {
        warn!(path = %other.display(), "not a file of the store; skipped");
        report
            .skipped
            .push((other.clone(), "not a file of the store".into()));
    }
    Ok(report)
}
