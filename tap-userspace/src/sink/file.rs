//! One output file on disk.
//!
//! Created through [`crate::safe_create`]: 0600 with `O_NOFOLLOW` (a symbolic link at the name
//! is refused) and, unless `--force`, `O_EXCL` (an existing file is refused, never
//! overwritten). Data is appended only in whole records; when a write fails part-way (a full disk) the file is cut back to the last
//! whole record, so what it holds stays readable. Finishing syncs the file and, for a file
//! written under a temporary name, renames it to its final name without replacing anything
//! (unless `--force`).

use std::{
    ffi::CString,
    fs::File,
    io::{self, Seek, SeekFrom, Write},
    os::unix::{ffi::OsStrExt as _, fs::MetadataExt as _},
    path::{Path, PathBuf},
};

use tracing::warn;

use super::{StorageError, rotate::Created};

/// Whether `e` means the file system is out of room (or the file hit its size or quota limit).
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG)
    )
}

/// A write that did not complete: `kept` bytes of the data stayed in the file (a whole-record
/// prefix), the rest did not.
#[derive(Debug)]
pub struct WriteFailure {
    pub kept: usize,
    pub error: io::Error,
}

/// An output file being written.
#[derive(Debug)]
pub struct OutFile {
    file: File,
    /// The name it gets when finished.
    path: PathBuf,
    /// The name it has while written, when that differs.
    temp: Option<PathBuf>,
    /// Bytes in the file, all of them whole records.
    len: u64,
    dev: u64,
    ino: u64,
    /// A regular file (not a device or a FIFO): it can be synced and cut back.
    regular: bool,
}

pub use crate::safe_create::Existing;

/// Refuses a symbolic link at `path`, and an existing file unless `force`.
pub fn check_target(path: &Path, force: bool) -> Result<Existing, StorageError> {
    Ok(crate::safe_create::check_target(path, force)?)
}

impl OutFile {
    /// Creates the file for final name `path`, under a temporary name when `temp` is given.
    pub fn create(path: &Path, temp: Option<PathBuf>, force: bool) -> Result<Self, StorageError> {
        check_target(path, force)?;
        let open_path = temp.as_deref().unwrap_or(path);
        // A temporary name left by a capture that crashed is someone's data now: the one
        // safe-create path checks the name it opens, too.
        let file = crate::safe_create::create(open_path, force)?;
        let meta = file.metadata().map_err(|source| StorageError::Create {
            path: open_path.to_path_buf(),
            source,
        })?;
        let regular = meta.file_type().is_file();
        Ok(Self {
            file,
            path: path.to_path_buf(),
            temp,
            len: 0,
            dev: meta.dev(),
            ino: meta.ino(),
            regular,
        })
    }

    /// Bytes in the file.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A regular file (not a device or a FIFO).
    pub fn is_regular(&self) -> bool {
        self.regular
    }

    /// The name it has now.
    pub fn current_name(&self) -> &Path {
        self.temp.as_deref().unwrap_or(&self.path)
    }

    /// The name it gets when finished.
    pub fn final_name(&self) -> &Path {
        &self.path
    }

    /// Appends `data`. On failure the file is cut back to `whole(written)`: the longest prefix of
    /// the data that ends on a record boundary and was written.
    pub fn append(
        &mut self,
        data: &[u8],
        whole: impl Fn(usize) -> usize,
    ) -> Result<(), WriteFailure> {
        let mut done = 0;
        while done < data.len() {
            match self.file.write(&data[done..]) {
                Ok(0) => return Err(self.cut_back(whole(done), io::ErrorKind::WriteZero.into())),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.cut_back(whole(done), e)),
            }
        }
        self.len += data.len() as u64;
        Ok(())
    }

    fn cut_back(&mut self, kept: usize, error: io::Error) -> WriteFailure {
        let end = self.len + kept as u64;
        if !self.regular {
            return WriteFailure { kept, error };
        }
        if let Err(e) = self
            .file
            .set_len(end)
            .and_then(|()| self.file.seek(SeekFrom::Start(end)).map(drop))
        {
            warn!(path = %self.current_name().display(), error = %e, "cannot cut the file back to its last whole record");
        }
        self.len = end;
        WriteFailure { kept, error }
    }

    /// Syncs the file and gives it its final name.
    pub fn finish(self, force: bool) -> Result<Created, StorageError> {
        let current = self.current_name().to_path_buf();
        if self.regular {
            self.file.sync_all().map_err(|source| StorageError::Write {
                path: current.clone(),
                source,
            })?;
        }
        if let Some(temp) = &self.temp {
            rename(temp, &self.path, force)?;
            sync_dir(&self.path);
        }
        Ok(Created {
            path: self.path,
            dev: self.dev,
            ino: self.ino,
        })
    }

    /// Removes a file that holds nothing worth keeping (its header did not fit).
    pub fn discard(self) {
        let name = self.current_name().to_path_buf();
        drop(self.file);
        if let Err(e) = std::fs::remove_file(&name) {
            warn!(path = %name.display(), error = %e, "cannot remove the unfinished file");
        }
    }
}

/// Renames `from` to `to`, refusing to replace an existing `to` unless `force`.
fn rename(from: &Path, to: &Path, force: bool) -> Result<(), StorageError> {
    let err = |source| StorageError::Rename {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
        source,
    };
    if force {
        return std::fs::rename(from, to).map_err(err);
    }
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes()).map_err(|_| err(io::ErrorKind::InvalidInput.into()))
    };
    let (cf, ct) = (c(from)?, c(to)?);
    // SAFETY: both are valid NUL-terminated paths for the duration of the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            cf.as_ptr(),
            libc::AT_FDCWD,
            ct.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EEXIST) => Err(StorageError::Exists {
            path: to.to_path_buf(),
        }),
        // A file system without RENAME_NOREPLACE: a hard link refuses to replace, too.
        Some(libc::EINVAL | libc::ENOSYS) => match std::fs::hard_link(from, to) {
            Ok(()) => std::fs::remove_file(from).map_err(err),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(StorageError::Exists {
                path: to.to_path_buf(),
            }),
            Err(e) => Err(err(e)),
        },
        _ => Err(err(e)),
    }
}

/// Makes a rename durable; a failure only costs durability, so it is logged, not fatal.
fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        warn!(dir = %dir.display(), error = %e, "cannot sync the directory");
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tap-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn refuses_existing_files_and_links() {
        let dir = scratch("refuse");
        let path = dir.join("x.pcap");
        std::fs::write(&path, b"keep").unwrap();
        assert!(matches!(
            OutFile::create(&path, None, false),
            Err(StorageError::Exists { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"keep");
        let link = dir.join("link.pcap");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(
            OutFile::create(&link, None, false),
            Err(StorageError::Symlink { .. })
        ));
        assert!(matches!(
            OutFile::create(&link, None, true),
            Err(StorageError::Symlink { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"keep");
        // --force overwrites a plain file.
        let mut f = OutFile::create(&path, None, true).unwrap();
        f.append(b"new", |n| n).unwrap();
        f.finish(true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        // A device is written to, not refused: `-w /dev/null`.
        let mut null = OutFile::create(Path::new("/dev/null"), None, false).unwrap();
        null.append(b"discarded", |n| n).unwrap();
        null.finish(false).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporary_name_until_finished() {
        let dir = scratch("temp");
        let path = dir.join("a.pcap");
        let temp = super::super::rotate::temp_name(&path);
        let mut f = OutFile::create(&path, Some(temp.clone()), false).unwrap();
        f.append(b"abc", |n| n).unwrap();
        assert!(temp.exists() && !path.exists());
        assert_eq!(
            std::fs::metadata(&temp).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let created = f.finish(false).unwrap();
        assert!(!temp.exists());
        assert_eq!(std::fs::read(&created.path).unwrap(), b"abc");
        // The final name taken meanwhile: the rename refuses to replace it.
        let mut g = OutFile::create(&dir.join("b.pcap"), Some(dir.join(".b.part")), false).unwrap();
        g.append(b"x", |n| n).unwrap();
        std::fs::write(dir.join("b.pcap"), b"theirs").unwrap();
        assert!(matches!(g.finish(false), Err(StorageError::Exists { .. })));
        assert_eq!(std::fs::read(dir.join("b.pcap")).unwrap(), b"theirs");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
