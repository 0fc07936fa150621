//! A store's directory: what is in it, the writer's lock, and the index files of each capture
//! file.
//!
//! ```text
//! DIR/
//!   .tap-store.lock                               the writer's lock (flock), its pid inside
//!   tap-20261203-140200_00001.pcapng[.zst]        a finished capture file
//!   tap-20261203-140200_00001.pcapng.flows.parquet   its flows
//!   tap-20261203-140200_00001.pcapng.blocks.parquet  its blocks
//!   .tap-20261203-140300_00002.pcapng.part        the file being written
//! ```
//!
//! One writer per directory: it holds an exclusive `flock` on the lock file for as long as it
//! runs (the kernel drops it when the process dies, `kill -9` included), so a second writer is
//! refused with the first one's pid. Readers take no lock: they see finished files only (a
//! file is renamed to its final name once complete, and its index is written right after).

use std::{
    fs::{File, OpenOptions},
    io::{self, Read as _, Seek as _, Write as _},
    os::unix::{fs::OpenOptionsExt as _, io::AsRawFd as _},
    path::{Path, PathBuf},
};

use super::StoreError;

/// The lock file's name.
pub const LOCK_NAME: &str = ".tap-store.lock";
/// Suffixes of a capture file's index files.
pub const FLOWS_SUFFIX: &str = ".flows.parquet";
pub const BLOCKS_SUFFIX: &str = ".blocks.parquet";
/// Names of the files a store writes: `tap-%Y%m%d-%H%M%S_NNNNN.pcapng[.zst]`.
pub const NAME_PATTERN: &str = "tap-%Y%m%d-%H%M%S.pcapng";

/// `NAME.flows.parquet` of a capture file.
#[must_use]
pub fn flows_path(capture: &Path) -> PathBuf {
    suffixed(capture, FLOWS_SUFFIX)
}

/// `NAME.blocks.parquet` of a capture file.
#[must_use]
pub fn blocks_path(capture: &Path) -> PathBuf {
    suffixed(capture, BLOCKS_SUFFIX)
}

fn suffixed(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// A capture file of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureFile {
    pub path: PathBuf,
    /// Its name (no directory).
    pub name: String,
    /// Bytes.
    pub len: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: u64,
}

/// What a store directory holds.
#[derive(Debug, Default)]
pub struct Listing {
    /// Capture files (`*.pcapng`, `*.pcapng.zst`), by name.
    pub captures: Vec<CaptureFile>,
    /// Files being written, or left by a writer that died (`.NAME.part`).
    pub parts: Vec<PathBuf>,
    /// Index files whose capture file is gone, and index files left half-written
    /// (`.NAME.flows.parquet.part`) by a writer that died.
    pub orphans: Vec<PathBuf>,
    /// Anything else (not counting the lock, directories, and temporary index files).
    pub others: Vec<PathBuf>,
}

/// Whether `name` is a capture file's name.
#[must_use]
pub fn is_capture_name(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".pcapng") || name.ends_with(".pcapng.zst"))
}

/// Lists `dir`.
///
/// # Errors
///
/// When a file cannot be read or written, or holds what it should not (the error says which).
pub fn list(dir: &Path) -> Result<Listing, StoreError> {
    let err = |source| StoreError::Dir {
        dir: dir.to_path_buf(),
        source,
    };
    let mut out = Listing::default();
    let mut indexes = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        let path = entry.path();
        let Ok(name) = entry.file_name().into_string() else {
            out.others.push(path);
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            // Gone meanwhile (retention, a rename).
            continue;
        };
        if !meta.is_file() {
            if !meta.is_dir() {
                out.others.push(path);
            }
            continue;
        }
        // The writer's lock, and the chain-of-custody manifest the capture writer keeps in
        // every directory it writes (the store's files are recorded there as they finish).
        if name == LOCK_NAME || name == crate::custody::MANIFEST_NAME {
            continue;
        }
        if let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".part")) {
            if is_capture_name(inner) {
                out.parts.push(path);
            } else if inner.ends_with(FLOWS_SUFFIX) || inner.ends_with(BLOCKS_SUFFIX) {
                out.orphans.push(path);
            } else {
                out.others.push(path);
            }
            continue;
        }
        if name.ends_with(FLOWS_SUFFIX) || name.ends_with(BLOCKS_SUFFIX) {
            indexes.push((name, path));
            continue;
        }
        if is_capture_name(&name) {
            use std::os::unix::fs::MetadataExt as _;
            let mtime_ns = u64::try_from(meta.mtime()).unwrap_or(0) * 1_000_000_000
                + u64::try_from(meta.mtime_nsec()).unwrap_or(0);
            out.captures.push(CaptureFile {
                path,
                name,
                len: meta.len(),
                mtime_ns,
            });
        } else {
            out.others.push(path);
        }
    }
    out.captures.sort_by(|a, b| a.name.cmp(&b.name));
    for (name, path) in indexes {
        let capture = name
            .strip_suffix(FLOWS_SUFFIX)
            .or_else(|| name.strip_suffix(BLOCKS_SUFFIX))
            .unwrap_or(&name);
        if !out.captures.iter().any(|c| c.name == capture) {
            out.orphans.push(path);
        }
    }
    out.parts.sort();
    out.others.sort();
    Ok(out)
}

/// The writer's lock on a store directory; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the lock of `dir`, or fails naming the writer that holds it.
    ///
    /// # Errors
    ///
    /// When a file cannot be read or written, or holds what it should not (the error says which).
    pub fn acquire(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(LOCK_NAME);
        let err = |source| StoreError::Lock {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(err)?;
        // SAFETY: a valid descriptor for the duration of the call; flock has no other
        // preconditions.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                    pid: text.trim().parse().ok(),
                });
            }
            return Err(err(e));
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(err)?;
        Ok(Self { _file: file })
    }
}

/// Creates the store directory (0700) if it is not there.
///
/// # Errors
///
/// When a file cannot be read or written, or holds what it should not (the error says which).
pub fn create_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt as _;
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(StoreError::Dir {
            dir: dir.to_path_buf(),
            source: io::Error::new(io::ErrorKind::AlreadyExists, "not a directory"),
        }),
        Err(_) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StoreError::Dir {
                dir: dir.to_path_buf(),
                source,
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_sorts_out_what_is_what() {
        let dir = std::env::temp_dir().join(format!("tap-layout-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        create_dir(&dir).unwrap();
        for name in [
            "tap-1_00002.pcapng.zst",
            "tap-1_00001.pcapng",
            "tap-1_00001.pcapng.flows.parquet",
            "tap-1_00001.pcapng.blocks.parquet",
            "gone.pcapng.flows.parquet",
            ".tap-1_00003.pcapng.part",
            "notes.txt",
        ] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        let l = list(&dir).unwrap();
        let names: Vec<&str> = l.captures.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["tap-1_00001.pcapng", "tap-1_00002.pcapng.zst"]);
        assert_eq!(l.parts, [dir.join(".tap-1_00003.pcapng.part")]);
        assert_eq!(l.orphans, [dir.join("gone.pcapng.flows.parquet")]);
        assert_eq!(l.others, [dir.join("notes.txt")]);
        assert_eq!(
            flows_path(&dir.join("a.pcapng")),
            dir.join("a.pcapng.flows.parquet")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_writer_is_refused() {
        let dir = std::env::temp_dir().join(format!("tap-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        create_dir(&dir).unwrap();
        let first = Lock::acquire(&dir).unwrap();
        match Lock::acquire(&dir) {
            Err(StoreError::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        drop(first);
        Lock::acquire(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
