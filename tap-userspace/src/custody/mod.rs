//! Chain of custody: every file tap finishes gets its SHA-256 into a manifest next to it, each
//! entry chained to the one before, optionally signed with ed25519, and `tap verify DIR` checks
//! the whole directory against it.
//!
//! # The manifest
//!
//! `DIR/tap-custody.jsonl` ([`MANIFEST_NAME`]), one JSON object per line (JSON Lines, UTF-8, each
//! line ended by `\n`), created 0600. Fields, always in this order, absent ones left out:
//!
//! | field | meaning |
//! |---|---|
//! | `v` | format version, `1` |
//! | `seq` | entry number, 1 for the first line, one more on each line |
//! | `op` | `add`: a file was finished; `remove`: tap deleted a file it had added (rotation's `-W` ring); `seal`: the head was signed (`tap key sign`), no file |
//! | `name` | the file's name in DIR (no directory part), for `add` and `remove` |
//! | `size` | bytes hashed, for `add` |
//! | `sha256` | the file's SHA-256, 64 lowercase hex digits, for `add` |
//! | `time` | when the entry was made, RFC 3339 UTC with nanoseconds (`2026-11-27T10:15:07.123456789Z`) |
//! | `prev` | the previous entry's `hash`; 64 zeros on the first entry |
//! | `key` | the ed25519 public key (64 hex digits) that signs this entry, when signed |
//! | `hash` | SHA-256 (hex) of the entry's *body*: the line as serialised with only the fields above, `{"v":1,...,"key":"…"}` |
//! | `sig` | the ed25519 signature (128 hex digits) of `"tap-custody-v1\n"` followed by the 32 bytes of `hash`, when signed |
//!
//! A line must be exactly the canonical serialisation of its fields (`serde_json`'s, no spaces), so
//! any edit shows either as a line that is not canonical or as a hash that does not match; each
//! `prev` ties the line to the one before, so a deleted, inserted or moved line breaks the chain
//! at the next one, and `seq` says where. The head (the last entry's hash) commits to every entry
//! and, through them, to every file's bytes; a signed entry's signature covers the head as it was
//! then. Signing needs the secret key; checking a signature means something only against a public
//! key the checker trusts (`tap verify --public-key`): anyone can rewrite an unsigned manifest
//! whole. Removing the last entries and their files together cannot be seen from the directory
//! alone: keep the head elsewhere (`tap verify` prints it) or sign it.
//!
//! # Appending: one writer at a time, crash safe
//!
//! Each append takes an exclusive `flock` on the manifest (waiting at most [`LOCK_WAIT`]), reads
//! the last line to learn `seq` and `hash`, writes the new line with one `pwrite` after the last
//! whole line, `fdatasync`s, and unlocks. So several writers (a capture, the evidence writer, `tap
//! key sign`) may share a directory, one append at a time. A `kill -9` (or a power cut) part-way
//! through leaves a last line without its `\n`: `tap verify` reports it (every entry before it
//! verifies), and the next append repairs it: a tail that is a whole, correctly chained entry
//! missing only its newline gets the newline; anything else is cut off (it was never
//! acknowledged) and logged. The file the torn entry was for is then not in the manifest, which
//! `tap verify` reports by name.

pub mod cli;
mod key;
mod recorder;
pub mod verify;

use std::{
    fs::{File, OpenOptions},
    io::{self, Read as _},
    os::unix::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ed25519_dalek::Signer as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tracing::warn;

pub use self::{
    key::{KeyError, PublicKey, SecretKey, generate_key_pair, read_bounded},
    recorder::Recorder,
};

/// The manifest's file name in each directory.
pub const MANIFEST_NAME: &str = "tap-custody.jsonl";

/// Format version written in every entry.
pub const VERSION: u32 = 1;

/// Longest manifest line accepted, in bytes. A file name is at most 255 bytes; JSON escaping can
/// grow it six-fold, and the rest of an entry takes under 500.
pub const MAX_LINE: usize = 4096;

/// Longest wait for another writer's lock before an append gives up.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// What a signature signs: this, then the 32 bytes of the entry's hash.
pub const SIGNATURE_CONTEXT: &[u8] = b"tap-custody-v1\n";

/// The `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Errors while recording files.
#[derive(Debug, thiserror::Error)]
pub enum CustodyError {
    #[error("cannot open the manifest {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the manifest {path} is locked by another writer (waited {}s)", LOCK_WAIT.as_secs())]
    Locked { path: PathBuf },
    #[error("cannot lock the manifest {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading the manifest {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing the manifest {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the manifest {path} is damaged at line {line}: {reason}; `tap verify` tells more, and nothing is appended to it"
    )]
    Damaged {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("cannot hash {path}: {source}")]
    Hash {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a regular file")]
    NotRegular { path: PathBuf },
    #[error("{path} is not in the manifest's directory {dir}")]
    OtherDirectory { path: PathBuf, dir: PathBuf },
    #[error("{path}: the file name must be UTF-8 and not the manifest's own")]
    BadName { path: PathBuf },
    #[error("a seal needs a signing key")]
    SealWithoutKey,
}

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// A file was finished: its name, size and SHA-256.
    Add,
    /// tap deleted a file it had added (the rotation ring).
    Remove,
    /// The head was signed, with no file.
    Seal,
}

/// The hashed part of an entry, in serialisation order.
#[derive(Debug, Serialize)]
struct Body<'a> {
    v: u32,
    seq: u64,
    op: Op,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<&'a str>,
    time: &'a str,
    prev: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
}

/// One manifest line, as written and read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub v: u32,
    pub seq: u64,
    pub op: Op,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub time: String,
    pub prev: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
}

impl Entry {
    fn body(&self) -> Body<'_> {
        Body {
            v: self.v,
            seq: self.seq,
            op: self.op,
            name: self.name.as_deref(),
            size: self.size,
            sha256: self.sha256.as_deref(),
            time: &self.time,
            prev: &self.prev,
            key: self.key.as_deref(),
        }
    }

    /// The SHA-256 (hex) of the entry's body.
    #[must_use]
    pub fn body_hash(&self) -> String {
        let body = serde_json::to_string(&self.body()).unwrap_or_default();
        hex(&Sha256::digest(body.as_bytes()))
    }

    /// The line as it must appear in the manifest (without the newline).
    #[must_use]
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a line, which must be canonical and carry the hash of its body. `Err` says why
    /// not, in words for a one-line report.
    ///
    /// # Errors
    /// A line that is not UTF-8, not an entry of this version, not canonical, or whose hash
    /// does not match its body.
    pub fn parse(line: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string())?;
        let entry: Self =
            serde_json::from_str(text).map_err(|e| format!("not a manifest entry ({e})"))?;
        if entry.v != VERSION {
            return Err(format!(
                "format version {} (this tap reads {VERSION})",
                entry.v
            ));
        }
        if entry.canonical() != text {
            return Err("not in canonical form (the line was edited)".into());
        }
        if entry.body_hash() != entry.hash {
            return Err("its hash does not match its content (the entry was altered)".into());
        }
        Ok(entry)
    }
}

/// Lower-case hex of `bytes`.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Bytes of lower-case (or upper-case) hex of exactly `N` bytes.
#[must_use]
pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// The message a signature of `hash` (hex) signs.
fn signed_message(hash: &str) -> Option<Vec<u8>> {
    let bytes: [u8; 32] = unhex(hash)?;
    let mut m = SIGNATURE_CONTEXT.to_vec();
    m.extend_from_slice(&bytes);
    Some(m)
}

/// Whether `entry`'s signature is valid for the public key it names.
///
/// # Errors
/// Why not, in words: a key without a signature or the reverse, a malformed key or signature,
/// or a signature that does not verify.
pub fn check_signature(entry: &Entry) -> Result<(), String> {
    let (Some(key), Some(sig)) = (&entry.key, &entry.sig) else {
        return match (&entry.key, &entry.sig) {
            (Some(_), None) => Err("it names a signing key but carries no signature".into()),
            (None, Some(_)) => Err("it carries a signature but names no key".into()),
            _ => Ok(()),
        };
    };
    let key = unhex::<32>(key)
        .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k).ok())
        .ok_or("its key is not an ed25519 public key")?;
    let sig = unhex::<64>(sig)
        .map(|s| ed25519_dalek::Signature::from_bytes(&s))
        .ok_or("its signature is not 64 bytes of hex")?;
    let message = signed_message(&entry.hash).ok_or("its hash is not 32 bytes of hex")?;
    key.verify_strict(&message, &sig).map_err(|_| {
        "its signature does not verify (the entry or the signature was altered)".into()
    })
}

/// Hashes what `file` holds from its start: (bytes read, SHA-256).
///
/// # Errors
/// A read that fails.
pub fn hash_reader(file: &mut impl io::Read) -> io::Result<(u64, [u8; 32])> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                size += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((size, hasher.finalize().into()))
}

/// Now as RFC 3339 UTC with nanoseconds.
#[must_use]
pub fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(
        i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
        now.subsec_nanos(),
    )
}

/// `secs` since the epoch and `nanos` as `2026-11-27T10:15:07.123456789Z`.
#[must_use]
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let t = crate::support::localtime::LocalTime::utc(secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// The last whole entry of a manifest, as an append needs it.
struct Tail {
    seq: u64,
    hash: String,
    /// Bytes of whole lines: where the next line goes.
    len: u64,
}

/// Opens (creating when missing) the manifest at `path` for appending.
fn open_manifest(path: &Path) -> Result<File, CustodyError> {
    crate::support::safe_create::open_private(path).map_err(|source| CustodyError::Open {
        path: path.to_path_buf(),
        source,
    })
}

/// An exclusive `flock` on the manifest, released on drop.
struct Lock<'a>(&'a File);

impl<'a> Lock<'a> {
    fn take(file: &'a File, path: &Path) -> Result<Self, CustodyError> {
        use std::os::fd::AsRawFd as _;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            // SAFETY: flock on a file descriptor we own for the duration of the call.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(Self(file));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EWOULDBLOCK) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Some(libc::EWOULDBLOCK) => {
                    return Err(CustodyError::Locked {
                        path: path.to_path_buf(),
                    });
                }
                Some(libc::EINTR) => {}
                _ => {
                    return Err(CustodyError::Lock {
                        path: path.to_path_buf(),
                        source: e,
                    });
                }
            }
        }
    }
}

impl Drop for Lock<'_> {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd as _;
        // SAFETY: as above; unlocking cannot fail in a way that matters (closing unlocks too).
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Reads the last whole entry of the locked manifest, repairing a torn last line (see the
/// module notes).
fn read_tail(file: &File, path: &Path) -> Result<Tail, CustodyError> {
    let read_err = |source| CustodyError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = file.metadata().map_err(read_err)?.len();
    if size == 0 {
        return Ok(Tail {
            seq: 0,
            hash: GENESIS.into(),
            len: 0,
        });
    }
    // Two lines' worth is enough for the last whole entry and a torn one after it.
    let window = size.min(2 * MAX_LINE as u64 + 2);
    let start = size - window;
    let mut buf = vec![0u8; usize::try_from(window).unwrap_or(0)];
    file.read_exact_at(&mut buf, start).map_err(read_err)?;
    let damaged = |reason: &str| CustodyError::Damaged {
        path: path.to_path_buf(),
        line: 0,
        reason: reason.to_string(),
    };
    // `whole`: bytes of `buf` up to and including the last newline.
    let whole = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if whole == 0 && start > 0 {
        return Err(damaged("its last line is longer than any entry"));
    }
    let last_line = |upto: usize| -> Option<&[u8]> {
        if upto == 0 {
            return None;
        }
        let begin = buf[..upto - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        (begin > 0 || start == 0).then(|| &buf[begin..upto - 1])
    };
    let mut tail = match last_line(whole) {
        Some(line) => {
            let entry =
                Entry::parse(line).map_err(|r| damaged(&format!("its last entry is {r}")))?;
            Tail {
                seq: entry.seq,
                hash: entry.hash,
                len: start + whole as u64,
            }
        }
        None if whole == 0 => Tail {
            seq: 0,
            hash: GENESIS.into(),
            len: 0,
        },
        None => return Err(damaged("its last line is longer than any entry")),
    };
    if whole < buf.len() {
        let torn = &buf[whole..];
        match Entry::parse(torn) {
            Ok(e) if e.seq == tail.seq + 1 && e.prev == tail.hash => {
                // A whole entry missing only its newline: keep it.
                file.write_all_at(b"\n", size)
                    .and_then(|()| file.sync_data())
                    .map_err(|source| CustodyError::Write {
                        path: path.to_path_buf(),
                        source,
                    })?;
                warn!(manifest = %path.display(), seq = e.seq, "custody: completed the last entry's line (an append was cut short after writing it)");
                tail = Tail {
                    seq: e.seq,
                    hash: e.hash,
                    len: size + 1,
                };
            }
            _ => {
                file.set_len(tail.len)
                    .and_then(|()| file.sync_data())
                    .map_err(|source| CustodyError::Write {
                        path: path.to_path_buf(),
                        source,
                    })?;
                warn!(manifest = %path.display(), bytes = torn.len(), after_seq = tail.seq, "custody: cut off a partial last entry (an append was cut short)");
            }
        }
    }
    Ok(tail)
}

/// The manifest of one directory, and the key that signs its entries.
pub struct Custody {
    dir: PathBuf,
    /// (device, inode) of `dir`: a recorded file's directory must be this one.
    dir_id: (u64, u64),
    path: PathBuf,
    file: File,
    signer: Option<SecretKey>,
}

impl std::fmt::Debug for Custody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Custody")
            .field("path", &self.path)
            .field("signed", &self.signer.is_some())
            .finish_non_exhaustive()
    }
}

impl Custody {
    /// Opens (creating when missing) the manifest of `dir`; entries are signed with `signer`.
    ///
    /// # Errors
    /// `dir` or the manifest cannot be opened (a symbolic link at the manifest's name is
    /// refused).
    pub fn open(dir: &Path, signer: Option<SecretKey>) -> Result<Self, CustodyError> {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let path = dir.join(MANIFEST_NAME);
        let meta = std::fs::metadata(dir).map_err(|source| CustodyError::Open {
            path: path.clone(),
            source,
        })?;
        let file = open_manifest(&path)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            dir_id: (meta.dev(), meta.ino()),
            path,
            file,
            signer,
        })
    }

    /// The manifest's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The name `path` has in the manifest, checking it lies in this directory.
    fn name_of(&self, path: &Path) -> Result<String, CustodyError> {
        let bad = || CustodyError::BadName {
            path: path.to_path_buf(),
        };
        let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(bad)?;
        if name == MANIFEST_NAME {
            return Err(bad());
        }
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let same = std::fs::metadata(parent).is_ok_and(|m| (m.dev(), m.ino()) == self.dir_id);
        if !same {
            return Err(CustodyError::OtherDirectory {
                path: path.to_path_buf(),
                dir: self.dir.clone(),
            });
        }
        Ok(name.to_string())
    }

    /// Hashes the finished file at `path` and appends its `add` entry.
    ///
    /// # Errors
    /// As [`Custody::record_file`], and when the file cannot be opened or is not regular.
    pub fn record(&mut self, path: &Path) -> Result<Entry, CustodyError> {
        let file = open_to_hash(path)?;
        self.record_file(path, file)
    }

    /// Hashes `file`, already open (from its start), and appends an `add` entry for `path`, its
    /// name: the bytes hashed are the ones the file held when opened, even if it was renamed or
    /// deleted since.
    ///
    /// # Errors
    /// `path` is not in this directory or is the manifest itself; the file cannot be read; the
    /// lock cannot be had within [`LOCK_WAIT`]; the manifest's last entry is damaged; the write
    /// fails (then nothing of the entry stays).
    pub fn record_file(&mut self, path: &Path, mut file: File) -> Result<Entry, CustodyError> {
        let name = self.name_of(path)?;
        let (size, digest) = hash_reader(&mut file).map_err(|source| CustodyError::Hash {
            path: path.to_path_buf(),
            source,
        })?;
        self.append(Op::Add, Some(&name), Some(size), Some(&hex(&digest)))
    }

    /// Appends a `remove` entry: tap deleted `path`, which it had added.
    ///
    /// # Errors
    /// As [`Custody::record_file`].
    pub fn record_removal(&mut self, path: &Path) -> Result<Entry, CustodyError> {
        let name = self.name_of(path)?;
        self.append(Op::Remove, Some(&name), None, None)
    }

    /// Appends a signed `seal` entry: a signature of the head as it is now.
    ///
    /// # Errors
    /// No signing key, and as [`Custody::record_file`].
    pub fn seal(&mut self) -> Result<Entry, CustodyError> {
        if self.signer.is_none() {
            return Err(CustodyError::SealWithoutKey);
        }
        self.append(Op::Seal, None, None, None)
    }

    fn append(
        &mut self,
        op: Op,
        name: Option<&str>,
        size: Option<u64>,
        sha256: Option<&str>,
    ) -> Result<Entry, CustodyError> {
        let _lock = Lock::take(&self.file, &self.path)?;
        let tail = read_tail(&self.file, &self.path)?;
        let mut entry = Entry {
            v: VERSION,
            seq: tail.seq + 1,
            op,
            name: name.map(str::to_string),
            size,
            sha256: sha256.map(str::to_string),
            time: rfc3339_now(),
            prev: tail.hash,
            key: self.signer.as_ref().map(SecretKey::public_hex),
            hash: String::new(),
            sig: None,
        };
        entry.hash = entry.body_hash();
        if let Some(signer) = &self.signer {
            let message = signed_message(&entry.hash).unwrap_or_default();
            entry.sig = Some(hex(&signer.key().sign(&message).to_bytes()));
        }
        let mut line = entry.canonical();
        line.push('\n');
        let write_err = |source| CustodyError::Write {
            path: self.path.clone(),
            source,
        };
        if let Err(e) = self
            .file
            .write_all_at(line.as_bytes(), tail.len)
            .and_then(|()| self.file.sync_data())
        {
            // A full disk: take back what part of the line got in.
            let _ = self.file.set_len(tail.len);
            return Err(write_err(e));
        }
        if tail.len == 0 {
            // The manifest's name is new: make it durable with the directory.
            if let Err(e) = File::open(&self.dir).and_then(|d| d.sync_all()) {
                warn!(dir = %self.dir.display(), error = %e, "custody: cannot sync the directory");
            }
        }
        Ok(entry)
    }
}

/// Opens a finished file for hashing: no symbolic links, regular files only.
///
/// # Errors
/// The file cannot be opened, or is not a regular file.
pub fn open_to_hash(path: &Path) -> Result<File, CustodyError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| CustodyError::Hash {
            path: path.to_path_buf(),
            source,
        })?;
    let regular = file.metadata().is_ok_and(|m| m.file_type().is_file());
    if !regular {
        return Err(CustodyError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    Ok(file)
}

/// Reads a whole manifest line by line, each bounded by [`MAX_LINE`]: `(line number, bytes,
/// whether it ended in a newline)`.
pub(crate) fn read_lines(
    path: &Path,
    mut each: impl FnMut(u64, &[u8], bool) -> bool,
) -> io::Result<()> {
    use std::io::BufRead as _;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let mut reader = io::BufReader::new(file);
    let mut line = Vec::with_capacity(MAX_LINE);
    let mut number = 0u64;
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        number += 1;
        let ended = line.last() == Some(&b'\n');
        let body = if ended {
            &line[..line.len() - 1]
        } else {
            &line[..]
        };
        if !each(number, body, ended) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests;
