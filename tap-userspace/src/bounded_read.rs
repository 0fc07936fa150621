//! The one way tap reads a file it is given as configuration (a `-F` filter file, the agent's
//! TOML, its `filter_file`s, and the tokens and keys to come): bounded in size and in time.
//!
//! - Only regular files are read: a device (`/dev/zero`, `/dev/urandom`), a FIFO, a socket or a
//!   directory is refused at once, naming what it is. The file is opened with `O_NONBLOCK`, so
//!   opening a FIFO cannot wait for a writer either.
//! - A file larger than its limit is refused from its size alone (a 1 GB sparse file costs one
//!   `fstat`), and at most the limit plus one byte is ever read, so a file that grows meanwhile
//!   is refused too instead of being read to its end.
//! - The text must be UTF-8; the error gives the byte offset of the first bad byte.

use std::{
    fs::File,
    io::{self, Read as _},
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

/// Largest `-F` / `filter_file` filter file, in bytes (4 MiB). Comments count: the expression
/// left once they are removed has its own, smaller bound
/// ([`crate::filter::MAX_EXPRESSION_LEN`]).
pub const FILTER_FILE_MAX: u64 = 4 << 20;

/// Largest agent configuration file, in bytes (1 MiB). Large filters belong in `filter_file`.
pub const AGENT_CONFIG_MAX: u64 = 1 << 20;

/// Largest token or key file, in bytes (64 KiB).
pub const SECRET_FILE_MAX: u64 = 64 << 10;

/// Why a configuration file was not read.
#[derive(Debug, thiserror::Error)]
pub enum BoundedReadError {
    #[error("cannot read {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {path}: it is {kind}, not a regular file")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{path} is {size} bytes; the limit is {} ({limit} bytes)", human(*limit))]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{path} grew past the limit of {} ({limit} bytes) while it was read", human(*limit))]
    Grew { path: PathBuf, limit: u64 },
    #[error("{path} is not UTF-8 text (invalid byte at offset {offset})")]
    NotText { path: PathBuf, offset: usize },
}

impl BoundedReadError {
    /// The file the error is about.
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            Self::Open { path, .. }
            | Self::NotRegular { path, .. }
            | Self::TooLarge { path, .. }
            | Self::Grew { path, .. }
            | Self::NotText { path, .. } => path,
        }
    }
}

/// `limit` in the unit people write it in (KiB or MiB when it is a whole number of them).
fn human(limit: u64) -> String {
    if limit >= 1 << 20 && limit.is_multiple_of(1 << 20) {
        format!("{} MiB", limit >> 20)
    } else if limit >= 1 << 10 && limit.is_multiple_of(1 << 10) {
        format!("{} KiB", limit >> 10)
    } else {
        format!("{limit} bytes")
    }
}

/// What a file that is not regular is, for the error.
fn kind_of(ft: std::fs::FileType) -> &'static str {
    if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_fifo() {
        "a named pipe"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_dir() {
        "a directory"
    } else {
        "a special file"
    }
}

/// Reads the regular file at `path`, at most `limit` bytes.
///
/// # Errors
/// See [`BoundedReadError`]: the file cannot be opened or read, is not a regular file, or is
/// (or grows) larger than `limit`.
pub fn read_bytes(path: &Path, limit: u64) -> Result<Vec<u8>, BoundedReadError> {
    let open = |source| BoundedReadError::Open {
        path: path.to_path_buf(),
        source,
    };
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(open)?;
    let meta = file.metadata().map_err(open)?;
    if !meta.file_type().is_file() {
        return Err(BoundedReadError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_of(meta.file_type()),
        });
    }
    if meta.len() > limit {
        return Err(BoundedReadError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            limit,
        });
    }
    // The size as of the fstat; the file may grow, so the read stops one byte past the limit.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit + 1).read_to_end(&mut bytes).map_err(open)?;
    if bytes.len() as u64 > limit {
        return Err(BoundedReadError::Grew {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(bytes)
}

/// Reads the regular file at `path` as UTF-8 text, at most `limit` bytes.
///
/// # Errors
/// As [`read_bytes`], and [`BoundedReadError::NotText`].
pub fn read_text(path: &Path, limit: u64) -> Result<String, BoundedReadError> {
    String::from_utf8(read_bytes(path, limit)?).map_err(|e| BoundedReadError::NotText {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tap-bounded-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn small_files_are_read() {
        let dir = scratch("small");
        let path = dir.join("f");
        std::fs::write(&path, "udp port 53\n").unwrap();
        assert_eq!(read_text(&path, 100).unwrap(), "udp port 53\n");
        assert_eq!(read_text(&path, 12).unwrap().len(), 12, "exactly the limit");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn devices_pipes_and_directories_are_refused() {
        for (path, kind) in [
            ("/dev/zero", "a character device"),
            ("/dev/urandom", "a character device"),
            ("/", "a directory"),
        ] {
            let e = read_text(Path::new(path), FILTER_FILE_MAX).unwrap_err();
            assert!(
                matches!(&e, BoundedReadError::NotRegular { kind: k, .. } if *k == kind),
                "{path}: {e}"
            );
            assert_eq!(
                e.to_string(),
                format!("cannot read {path}: it is {kind}, not a regular file")
            );
        }
        let dir = scratch("fifo");
        let fifo = dir.join("p");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid path; mkfifo creates the pipe.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // No writer: a blocking open would wait forever.
        let e = read_text(&fifo, 100).unwrap_err();
        assert!(e.to_string().contains("a named pipe"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn large_and_sparse_files_are_refused_from_their_size() {
        let dir = scratch("large");
        let path = dir.join("sparse");
        let f = File::create(&path).unwrap();
        f.set_len(1 << 30).unwrap();
        let e = read_text(&path, FILTER_FILE_MAX).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{} is 1073741824 bytes; the limit is 4 MiB (4194304 bytes)",
                path.display()
            )
        );
        std::fs::write(&path, "x".repeat(2000)).unwrap();
        assert!(matches!(
            read_text(&path, SECRET_FILE_MAX / 64),
            Err(BoundedReadError::TooLarge {
                size: 2000,
                limit: 1024,
                ..
            })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn binary_is_not_text() {
        let dir = scratch("binary");
        let path = dir.join("b");
        std::fs::write(&path, b"tcp \xff\xfe").unwrap();
        let e = read_text(&path, 100).unwrap_err();
        assert!(
            matches!(e, BoundedReadError::NotText { offset: 4, .. }),
            "{e}"
        );
        assert_eq!(read_bytes(&path, 100).unwrap().len(), 6);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn limits_read_as_people_write_them() {
        assert_eq!(human(4 << 20), "4 MiB");
        assert_eq!(human(64 << 10), "64 KiB");
        assert_eq!(human(1000), "1000 bytes");
    }
}
