//! The one way tap creates a file it writes: capture files and their rotation, `tap replay -w`,
//! `--stats-json`, man pages.
//!
//! - Mode 0600 from birth (the umask cannot widen it; nothing else is set on it later).
//! - `O_NOFOLLOW`: a symbolic link at the name is refused, with or without `force`, so nobody
//!   can point tap's output at a file of their choosing.
//! - `O_EXCL` unless `force`: an existing file is refused, never overwritten. With `force` an
//!   existing regular file is emptied only once it is open and checked (still a regular file,
//!   with no other hard link), so a name swapped in between is not truncated either.
//! - An existing device or FIFO (`/dev/null`, a named pipe) is written to as it is: never
//!   created, never truncated.

use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::{FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

/// Mode of every file tap creates.
pub const MODE: u32 = 0o600;

/// Why a file was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{path} exists: use --force to overwrite it")]
    Exists { path: PathBuf },
    #[error("refusing to write {path}: it is a symbolic link")]
    Symlink { path: PathBuf },
    #[error("refusing to overwrite {path}: it has other hard links")]
    Linked { path: PathBuf },
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What is at an output path now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    Nothing,
    /// A regular file (or a directory: opening it fails with a clear error).
    File,
    /// A device or a FIFO (`/dev/null`, a named pipe): written to, never created or truncated.
    Special,
}

/// Refuses a symbolic link at `path`, and an existing file unless `force`.
///
/// # Errors
/// [`CreateError::Symlink`], [`CreateError::Exists`].
pub fn check_target(path: &Path, force: bool) -> Result<Existing, CreateError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(CreateError::Symlink {
            path: path.to_path_buf(),
        }),
        Ok(m)
            if m.file_type().is_char_device()
                || m.file_type().is_fifo()
                || m.file_type().is_block_device() =>
        {
            Ok(Existing::Special)
        }
        Ok(_) if !force => Err(CreateError::Exists {
            path: path.to_path_buf(),
        }),
        Ok(_) => Ok(Existing::File),
        Err(_) => Ok(Existing::Nothing),
    }
}

/// Creates `path` for writing (see the module documentation), or opens the device or FIFO
/// there. The file is write-only and closed on exec.
///
/// # Errors
/// See [`CreateError`].
pub fn create(path: &Path, force: bool) -> Result<File, CreateError> {
    let existing = check_target(path, force)?;
    let mut options = OpenOptions::new();
    options
        .write(true)
        .mode(MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY);
    match existing {
        // Written to as it is: /dev/null, a named pipe.
        Existing::Special => {}
        // Emptied below, once it is known what was opened.
        Existing::File => {
            options.create(true);
        }
        Existing::Nothing => {
            options.create_new(true);
        }
    }
    let file = options
        .open(path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ELOOP) => CreateError::Symlink {
                path: path.to_path_buf(),
            },
            Some(libc::EEXIST) => CreateError::Exists {
                path: path.to_path_buf(),
            },
            _ => CreateError::Open {
                path: path.to_path_buf(),
                source,
            },
        })?;
    if existing == Existing::File {
        let open = |source| CreateError::Open {
            path: path.to_path_buf(),
            source,
        };
        let meta = file.metadata().map_err(open)?;
        if meta.file_type().is_file() {
            if meta.nlink() > 1 {
                return Err(CreateError::Linked {
                    path: path.to_path_buf(),
                });
            }
            file.set_len(0).map_err(open)?;
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use std::{io::Write as _, os::unix::fs::PermissionsExt as _};

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tap-create-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn new_files_are_0600_whatever_the_umask() {
        let dir = scratch("mode");
        let path = dir.join("a");
        // SAFETY: umask has no preconditions; restored right after.
        let old = unsafe { libc::umask(0) };
        let file = create(&path, false);
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        file.unwrap().write_all(b"x").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn existing_files_links_and_hard_links() {
        let dir = scratch("refuse");
        let path = dir.join("x");
        std::fs::write(&path, b"keep").unwrap();
        assert!(matches!(
            create(&path, false),
            Err(CreateError::Exists { .. })
        ));
        let link = dir.join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        for force in [false, true] {
            assert!(matches!(
                create(&link, force),
                Err(CreateError::Symlink { .. })
            ));
        }
        let hard = dir.join("hard");
        std::fs::hard_link(&path, &hard).unwrap();
        assert!(matches!(
            create(&hard, true),
            Err(CreateError::Linked { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"keep");
        std::fs::remove_file(&hard).unwrap();
        // --force empties a plain file and writes it.
        create(&path, true).unwrap().write_all(b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        // A device is written to, not refused: `-w /dev/null`.
        create(Path::new("/dev/null"), false)
            .unwrap()
            .write_all(b"gone")
            .unwrap();
        assert!(matches!(
            create(&dir.join("no/such/dir"), false),
            Err(CreateError::Open { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
