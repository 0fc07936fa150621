//! `tap verify DIR`: the manifest's chain, its signatures, and every file against its entry.
//!
//! In order, stopping at the first broken link: each line of the manifest (whole, canonical,
//! hashing to its `hash`, numbered one more than the line before, its `prev` the hash of the line
//! before, its signature valid, by the trusted key when one is given), the head signed when a
//! trusted key is given, then each file named by its latest entry (an `add`: present, a regular
//! file, the same size and SHA-256; a `remove`: absent), then the directory's other files: every
//! regular file or symbolic link not hidden (a name starting with `.`, such as a capture's
//! `.NAME.part`) must be in the manifest.

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
};

use super::{
    Entry, GENESIS, MANIFEST_NAME, MAX_LINE, Op, PublicKey, check_signature, hash_reader, hex,
    open_to_hash,
};

/// Errors that keep the check from being made at all.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{dir}: no {MANIFEST_NAME}: nothing to verify")]
    NoManifest { dir: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// A manifest line that is not a readable entry.
    Line { line: u64, name: Option<String> },
    /// An entry, and the file it names.
    Entry { seq: u64, name: Option<String> },
    /// A file of the directory that no entry names.
    File { name: String },
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line { line, name: None } => write!(f, "line {line} of {MANIFEST_NAME}"),
            Self::Line {
                line,
                name: Some(n),
            } => write!(f, "line {line} of {MANIFEST_NAME} ({n})"),
            Self::Entry { seq, name: None } => write!(f, "entry {seq}"),
            Self::Entry { seq, name: Some(n) } => write!(f, "{n} (entry {seq})"),
            Self::File { name } => write!(f, "{name}"),
        }
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Intact(Intact),
    Broken(Broken),
}

/// An intact directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intact {
    pub dir: PathBuf,
    pub entries: u64,
    /// Files checked against their entries.
    pub files: u64,
    /// The last entry's `seq` and `hash`; `None` for an empty manifest.
    pub head: Option<(u64, String)>,
    /// The key of the last signed entry and its `seq`.
    pub signed: Option<(String, u64)>,
    /// A trusted key was given and signed the head.
    pub trusted: bool,
}

impl fmt::Display for Intact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: intact: {} entries, {} files",
            self.dir.display(),
            self.entries,
            self.files
        )?;
        if let Some((seq, hash)) = &self.head {
            write!(f, ", head {seq}:{hash}")?;
        }
        match (&self.signed, &self.head) {
            (Some((key, at)), Some((head, _))) => {
                let short = &key[..key.len().min(16)];
                if at == head {
                    write!(f, ", head signed by {short}…")?;
                } else {
                    write!(f, ", signed by {short}… up to entry {at}")?;
                }
                if self.trusted {
                    write!(f, " (the trusted key)")?;
                } else {
                    write!(f, " (no --public-key given: the signer is not checked)")?;
                }
            }
            _ => write!(f, ", unsigned")?,
        }
        Ok(())
    }
}

/// A broken directory: the first broken link and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub dir: PathBuf,
    pub link: Link,
    pub reason: String,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: broken at {}: {}",
            self.dir.display(),
            self.link,
            self.reason
        )
    }
}

/// What the chain check keeps of each entry.
struct Seen {
    seq: u64,
    op: Op,
    name: Option<String>,
    size: Option<u64>,
    sha256: Option<String>,
}

/// A broken link and why.
type Failure = (Link, String);

/// Checks `dir` (or the directory of a manifest path); `trusted`: the public key that must sign
/// the head and every signed entry.
///
/// # Errors
/// `dir` has no manifest, or the manifest or the directory cannot be read. A broken chain is a
/// [`Verdict::Broken`].
pub fn verify_dir(dir: &Path, trusted: Option<&PublicKey>) -> Result<Verdict, VerifyError> {
    let dir = if dir.file_name().is_some_and(|n| n == MANIFEST_NAME) {
        dir.parent().unwrap_or(Path::new("."))
    } else {
        dir
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let manifest = dir.join(MANIFEST_NAME);
    match std::fs::symlink_metadata(&manifest) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(VerifyError::NoManifest {
                dir: dir.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(VerifyError::Read {
                path: manifest,
                source,
            });
        }
        Ok(_) => {}
    }
    let trusted_hex = trusted.map(PublicKey::to_hex);
    let outcome = check_chain(&manifest, trusted_hex.as_deref())?.and_then(|chain| {
        let files = check_files(dir, &chain)?;
        Ok((chain, files))
    });
    let (chain, files) = match outcome {
        Ok(done) => done,
        Err((link, reason)) => {
            return Ok(Verdict::Broken(Broken {
                dir: dir.to_path_buf(),
                link,
                reason,
            }));
        }
    };
    if let Some(name) = unrecorded(dir, &chain)? {
        return Ok(Verdict::Broken(Broken {
            dir: dir.to_path_buf(),
            link: Link::File { name },
            reason: "not in the manifest (put there by someone else, or its entry was cut from the end of the manifest)".into(),
        }));
    }
    Ok(Verdict::Intact(Intact {
        dir: dir.to_path_buf(),
        entries: chain.seen.len() as u64,
        files,
        head: chain.seen.last().map(|s| (s.seq, chain.head.clone())),
        trusted: trusted.is_some() && chain.last_signed.is_some(),
        signed: chain.last_signed,
    }))
}

/// A manifest whose chain holds.
struct Chain {
    seen: Vec<Seen>,
    /// The last entry's hash.
    head: String,
    /// The key of the last signed entry and its `seq`.
    last_signed: Option<(String, u64)>,
}

impl Chain {
    /// The `seq` of the latest entry naming each file.
    fn latest(&self) -> HashMap<&str, u64> {
        let mut latest = HashMap::new();
        for s in &self.seen {
            if let Some(n) = &s.name {
                latest.insert(n.as_str(), s.seq);
            }
        }
        latest
    }
}

/// The partial-entry report for line `line`.
fn partial(line: u64) -> String {
    format!(
        "a partial entry (an append cut short, or the manifest was cut); {}; the next append repairs it",
        if line > 1 {
            format!("entries 1 to {} verify", line - 1)
        } else {
            "no entry before it".into()
        }
    )
}

/// What is wrong with `entry` as line `line` after the entry hashed `prev`, if anything.
fn link_error(entry: &Entry, line: u64, prev: &str, trusted: Option<&str>) -> Option<String> {
    if entry.seq != line {
        Some(format!(
            "its number is {} on line {line}: an entry was deleted before it, or entries were moved",
            entry.seq
        ))
    } else if entry.prev != prev {
        Some(if line == 1 {
            "the first entry does not start the chain: entries before it were deleted".into()
        } else {
            format!(
                "it does not follow entry {}: that entry was replaced, or entries were moved",
                line - 1
            )
        })
    } else if let Err(r) = check_signature(entry) {
        Some(r)
    } else if let (Some(key), Some(t)) = (&entry.key, trusted) {
        (key != t).then(|| format!("signed by {key}, not by the trusted key {t}"))
    } else {
        shape_error(entry)
    }
}

/// Reads the manifest and checks its chain; the inner `Err` is the first broken link.
fn check_chain(
    manifest: &Path,
    trusted: Option<&str>,
) -> Result<Result<Chain, Failure>, VerifyError> {
    let mut chain = Chain {
        seen: Vec::new(),
        head: GENESIS.to_string(),
        last_signed: None,
    };
    let mut failure: Option<Failure> = None;
    super::read_lines(manifest, |line, bytes, ended| {
        let name_hint = || {
            serde_json::from_slice::<serde_json::Value>(bytes)
                .ok()
                .and_then(|v| v["name"].as_str().map(str::to_string))
        };
        let at_line = |name| Link::Line { line, name };
        let entry = if bytes.len() > MAX_LINE {
            Err((
                at_line(None),
                format!("longer than any entry ({MAX_LINE} bytes)"),
            ))
        } else if !ended {
            Err((at_line(name_hint()), partial(line)))
        } else {
            Entry::parse(bytes).map_err(|reason| (at_line(name_hint()), reason))
        };
        let entry = match entry {
            Ok(e) => e,
            Err(f) => {
                failure = Some(f);
                return false;
            }
        };
        if let Some(reason) = link_error(&entry, line, &chain.head, trusted) {
            failure = Some((
                Link::Entry {
                    seq: entry.seq,
                    name: entry.name,
                },
                reason,
            ));
            return false;
        }
        if let Some(key) = &entry.key {
            chain.last_signed = Some((key.clone(), entry.seq));
        }
        chain.head.clone_from(&entry.hash);
        chain.seen.push(Seen {
            seq: entry.seq,
            op: entry.op,
            name: entry.name,
            size: entry.size,
            sha256: entry.sha256,
        });
        true
    })
    .map_err(|source| VerifyError::Read {
        path: manifest.to_path_buf(),
        source,
    })?;
    if let Some(f) = failure {
        return Ok(Err(f));
    }
    if let (Some(_), Some(last)) = (trusted, chain.seen.last()) {
        let signed_at = chain.last_signed.as_ref().map_or(0, |(_, at)| *at);
        if signed_at != last.seq {
            return Ok(Err((
                Link::Entry {
                    seq: last.seq,
                    name: last.name.clone(),
                },
                format!(
                    "the head is not signed: entries {} to {} come after the last signature",
                    signed_at + 1,
                    last.seq
                ),
            )));
        }
    }
    Ok(Ok(chain))
}

/// Checks each file against its latest entry; returns how many were checked.
fn check_files(dir: &Path, chain: &Chain) -> Result<u64, Failure> {
    let latest = chain.latest();
    let mut files = 0u64;
    for s in &chain.seen {
        let Some(name) = &s.name else { continue };
        if latest.get(name.as_str()) != Some(&s.seq) {
            continue;
        }
        let fail = |reason: String| {
            Err((
                Link::Entry {
                    seq: s.seq,
                    name: Some(name.clone()),
                },
                reason,
            ))
        };
        let path = dir.join(name);
        let present = std::fs::symlink_metadata(&path).is_ok();
        match s.op {
            Op::Remove if present => {
                return fail(
                    "the file is there, though this entry records that tap removed it".into(),
                );
            }
            Op::Add if !present => return fail("the file is missing".into()),
            Op::Add => {
                let (size, digest) =
                    match open_to_hash(&path)
                        .map_err(|e| e.to_string())
                        .and_then(|mut f| {
                            hash_reader(&mut f).map_err(|e| format!("cannot read the file: {e}"))
                        }) {
                        Ok(d) => d,
                        Err(reason) => return fail(reason),
                    };
                let digest = hex(&digest);
                if Some(size) != s.size {
                    return fail(format!(
                        "the file has {size} bytes, the manifest says {}",
                        s.size.unwrap_or(0)
                    ));
                }
                if Some(&digest) != s.sha256.as_ref() {
                    return fail(format!(
                        "the file's SHA-256 is {digest}, the manifest says {} (the file was altered or replaced)",
                        s.sha256.as_deref().unwrap_or("")
                    ));
                }
                files += 1;
            }
            Op::Remove | Op::Seal => {}
        }
    }
    Ok(files)
}

/// The first (by name) file of `dir` that no `add` entry accounts for.
fn unrecorded(dir: &Path, chain: &Chain) -> Result<Option<String>, VerifyError> {
    let latest = chain.latest();
    let read_err = |source| VerifyError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut names: Vec<String> = Vec::new();
    for item in std::fs::read_dir(dir).map_err(read_err)? {
        let item = item.map_err(read_err)?;
        let kind = item.file_type().map_err(read_err)?;
        if !(kind.is_file() || kind.is_symlink()) {
            continue;
        }
        let name = item.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == MANIFEST_NAME {
            continue;
        }
        let recorded = latest.get(name.as_str()).is_some_and(|&seq| {
            chain
                .seen
                .iter()
                .find(|s| s.seq == seq)
                .is_some_and(|s| s.op == Op::Add)
        });
        if !recorded {
            names.push(name);
        }
    }
    names.sort();
    Ok(names.into_iter().next())
}

/// What is wrong with the fields an entry's `op` needs, if anything.
fn shape_error(entry: &Entry) -> Option<String> {
    let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let name_ok = entry.name.as_deref().is_some_and(|n| {
        !n.is_empty() && n != "." && n != ".." && !n.contains('/') && n != MANIFEST_NAME
    });
    match entry.op {
        Op::Add if !name_ok => Some("an add entry without a valid file name".into()),
        Op::Add if entry.size.is_none() => Some("an add entry without a size".into()),
        Op::Add if !entry.sha256.as_deref().is_some_and(hex64) => {
            Some("an add entry without a valid sha256".into())
        }
        Op::Remove if !name_ok || entry.size.is_some() || entry.sha256.is_some() => {
            Some("a remove entry must name a file and nothing else".into())
        }
        Op::Seal if entry.name.is_some() || entry.size.is_some() || entry.sha256.is_some() => {
            Some("a seal entry names no file".into())
        }
        Op::Seal if entry.sig.is_none() => Some("a seal entry without a signature".into()),
        _ => None,
    }
}
