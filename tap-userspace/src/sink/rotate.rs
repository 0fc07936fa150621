//! Rotation: file names from a pattern, when to start the next file, the ring of files this
//! capture created, and the command run on each finished file.
//!
//! Names. Without rotation the `-w` name is used as given. With rotation (`-C`, `-G`) every file
//! gets a sequence number, `_NNNNN` from `_00001` (more digits past 99999), inserted before
//! the extension (`.pcap`, `.pcapng`, and a compression suffix with the extension before it,
//! e.g. `.pcapng.zst`), and strftime fields in the file name are filled in with the local time
//! at which the file starts: `%Y %m %d %H %M %S %j %y %s %%`. So `-w cap-%Y%m%d-%H%M%S.pcapng
//! -G 60` gives `cap-20261127-101500_00001.pcapng`, `cap-20261127-101600_00002.pcapng`, ...
//!
//! Time. `-G SECS` starts files at multiples of SECS on the local clock (midnight, then every
//! SECS; with 60, at each minute): a packet belongs to the file of its timestamp, and an idle
//! capture still starts a new (empty) file at each boundary, so consumers get one file per
//! interval.

use std::{
    collections::VecDeque,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tracing::{info, warn};

/// A bad `-w` pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("unknown field %{0} in the file name: use %Y %m %d %H %M %S %j %y %s or %%")]
    UnknownField(char),
    #[error("the file name ends in a lone %")]
    TrailingPercent,
    #[error("with rotation the file name must be UTF-8")]
    NotUtf8,
    #[error("the output path has no file name")]
    NoFileName,
}

pub use crate::support::localtime::LocalTime;

/// Expands the strftime fields of `pattern`.
pub fn expand_time(pattern: &str, t: &LocalTime) -> Result<String, PatternError> {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let _ = match chars.next().ok_or(PatternError::TrailingPercent)? {
            'Y' => write!(out, "{:04}", t.year),
            'y' => write!(out, "{:02}", t.year.rem_euclid(100)),
            'm' => write!(out, "{:02}", t.month),
            'd' => write!(out, "{:02}", t.day),
            'H' => write!(out, "{:02}", t.hour),
            'M' => write!(out, "{:02}", t.minute),
            'S' => write!(out, "{:02}", t.second),
            'j' => write!(out, "{:03}", t.yday),
            's' => write!(out, "{}", t.epoch),
            '%' => write!(out, "%"),
            other => return Err(PatternError::UnknownField(other)),
        };
    }
    Ok(out)
}

/// Splits a file name into stem and extension: `cap.pcapng.zst` → (`cap`, `.pcapng.zst`).
pub fn split_extension(name: &str) -> (&str, &str) {
    let last_dot = |s: &str| s.rfind('.').filter(|&i| i > 0);
    let Some(i) = last_dot(name) else {
        return (name, "");
    };
    let ext = &name[i..];
    let compressed = [".zst", ".zstd", ".gz", ".lz4"]
        .iter()
        .any(|c| ext.eq_ignore_ascii_case(c));
    if compressed {
        if let Some(j) = last_dot(&name[..i]) {
            return (&name[..j], &name[j..]);
        }
    }
    (&name[..i], ext)
}

/// How output files are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamePattern {
    /// One file, named as given.
    Single(PathBuf),
    /// Rotating files: `dir/stem_NNNNN.ext`, time fields expanded.
    Rotating {
        dir: PathBuf,
        stem: String,
        ext: String,
    },
}

impl NamePattern {
    /// Checks the pattern now, so a bad field fails before anything is loaded.
    pub fn new(path: &Path, rotating: bool) -> Result<Self, PatternError> {
        if !rotating {
            return Ok(Self::Single(path.to_path_buf()));
        }
        let name = path
            .file_name()
            .ok_or(PatternError::NoFileName)?
            .to_str()
            .ok_or(PatternError::NotUtf8)?;
        let (stem, ext) = split_extension(name);
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let pattern = Self::Rotating {
            dir,
            stem: stem.to_string(),
            ext: ext.to_string(),
        };
        pattern.name(1, &LocalTime::utc(0))?;
        Ok(pattern)
    }

    /// The name of file number `seq` (from 1), started at `t`.
    pub fn name(&self, seq: u64, t: &LocalTime) -> Result<PathBuf, PatternError> {
        match self {
            Self::Single(p) => Ok(p.clone()),
            Self::Rotating { dir, stem, ext } => {
                let stem = expand_time(stem, t)?;
                let ext = expand_time(ext, t)?;
                Ok(dir.join(format!("{stem}_{seq:05}{ext}")))
            }
        }
    }
}

/// The name a file carries while it is written: `.NAME.part` in the same directory, so the
/// rename to `NAME` is atomic and a consumer that watches the directory (and skips dot files)
/// only ever sees whole files.
pub fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.part"))
}

/// The first whole multiple of `interval` seconds of local time after `now` (seconds since the
/// epoch), as seconds since the epoch. `gmtoff`: local offset from UTC in seconds.
pub fn next_boundary(now: i64, gmtoff: i64, interval: u64) -> i64 {
    let i = interval.max(1) as i64;
    let local = now + gmtoff;
    (local.div_euclid(i) + 1) * i - gmtoff
}

/// Whether adding `record` bytes would push a file of `len` bytes past `limit`, leaving
/// `reserve` bytes for what is written at close. A file always takes at least one packet, so a
/// packet larger than the limit still gets written.
pub fn size_exceeded(limit: u64, len: u64, record: u64, reserve: u64, packets: u64) -> bool {
    packets > 0 && len + record + reserve > limit
}

/// A file this capture created: its identity guards the ring against deleting a file someone
/// else put at the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
}

/// The ring of finished files (`-W`): at most `max` files of this capture exist at once.
#[derive(Debug, Default)]
pub struct Ring {
    max: Option<u32>,
    finished: VecDeque<Created>,
}

impl Ring {
    pub fn new(max: Option<u32>) -> Self {
        Self {
            max,
            finished: VecDeque::new(),
        }
    }

    pub fn push(&mut self, file: Created) {
        if self.max.is_some() {
            self.finished.push_back(file);
        }
    }

    /// The files to delete before starting another, oldest first.
    pub fn make_room(&mut self) -> Vec<Created> {
        let Some(max) = self.max else {
            return Vec::new();
        };
        let keep = (max as usize).saturating_sub(1);
        let excess = self.finished.len().saturating_sub(keep);
        self.finished.drain(..excess).collect()
    }

    /// Deletes `file` if it is still the file this capture created; true when it did.
    pub fn delete(file: &Created) -> bool {
        match std::fs::symlink_metadata(&file.path) {
            Ok(m) if m.dev() == file.dev && m.ino() == file.ino => {
                match std::fs::remove_file(&file.path) {
                    Ok(()) => {
                        info!(path = %file.path.display(), "ring: deleted the oldest file");
                        true
                    }
                    Err(e) => {
                        warn!(path = %file.path.display(), error = %e, "ring: cannot delete the oldest file");
                        false
                    }
                }
            }
            Ok(_) => {
                warn!(path = %file.path.display(), "ring: the oldest file was replaced by another; left alone");
                false
            }
            // Moved or deleted by someone else (a post-rotate command, say): nothing to do.
            Err(_) => false,
        }
    }
}

/// `--post-rotate CMD`: run on each finished file, in the background.
#[derive(Debug, Default)]
pub struct PostRotate {
    command: Option<String>,
    running: Vec<(Child, PathBuf)>,
    /// Also told of each finished file (the Suricata driver listens here).
    notify: Option<std::sync::mpsc::Sender<PathBuf>>,
}

impl PostRotate {
    pub fn new(command: Option<String>) -> Self {
        Self {
            command,
            running: Vec::new(),
            notify: None,
        }
    }

    /// Also sends each finished file's path to `notify`.
    #[must_use]
    pub fn notifying(mut self, notify: Option<std::sync::mpsc::Sender<PathBuf>>) -> Self {
        self.notify = notify;
        self
    }

    /// Starts `sh -c 'CMD "$1"' tap-post-rotate FILE`; a failure to start is logged.
    pub fn spawn(&mut self, file: &Path) {
        self.reap();
        if let Some(n) = &self.notify {
            let _ = n.send(file.to_path_buf());
        }
        let Some(cmd) = &self.command else { return };
        let script = format!("{cmd} \"$1\"");
        let child = Command::new("/bin/sh")
            .args(["-c", &script, "tap-post-rotate"])
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn();
        match child {
            Ok(c) => self.running.push((c, file.to_path_buf())),
            Err(e) => {
                warn!(command = %cmd, file = %file.display(), error = %e, "cannot start the post-rotate command");
            }
        }
    }

    /// Collects the commands that ended and logs the ones that failed.
    pub fn reap(&mut self) {
        self.running.retain_mut(|(child, file)| match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                if !status.success() {
                    warn!(file = %file.display(), %status, "the post-rotate command failed");
                }
                false
            }
            Err(e) => {
                warn!(file = %file.display(), error = %e, "cannot wait for the post-rotate command");
                false
            }
        });
    }

    /// Waits up to `timeout` for the commands still running; those left go on unobserved.
    pub fn finish(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.reap();
            if self.running.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                warn!(
                    running = self.running.len(),
                    "post-rotate commands still running at exit; not waiting for them"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_fields_expand() {
        let t = LocalTime::utc(1_795_774_507);
        assert_eq!(
            expand_time("cap-%Y%m%d-%H%M%S", &t).unwrap(),
            "cap-20261127-101507"
        );
        assert_eq!(
            expand_time("%y.%j.%s.100%%", &t).unwrap(),
            "26.331.1795774507.100%"
        );
        assert_eq!(expand_time("x%Q", &t), Err(PatternError::UnknownField('Q')));
        assert_eq!(expand_time("x%", &t), Err(PatternError::TrailingPercent));
    }

    #[test]
    fn extensions_split() {
        assert_eq!(split_extension("cap.pcapng"), ("cap", ".pcapng"));
        assert_eq!(split_extension("cap.pcapng.zst"), ("cap", ".pcapng.zst"));
        assert_eq!(split_extension("a.b.pcap"), ("a.b", ".pcap"));
        assert_eq!(split_extension("capture"), ("capture", ""));
        assert_eq!(split_extension(".hidden"), (".hidden", ""));
        assert_eq!(split_extension("x.zst"), ("x", ".zst"));
    }

    #[test]
    fn names_carry_sequence_and_time() {
        let t = LocalTime::utc(1_795_774_500);
        let p = NamePattern::new(Path::new("/d/cap-%Y%m%d-%H%M%S.pcapng.zst"), true).unwrap();
        assert_eq!(
            p.name(1, &t).unwrap(),
            Path::new("/d/cap-20261127-101500_00001.pcapng.zst")
        );
        assert_eq!(
            p.name(123_456, &t).unwrap(),
            Path::new("/d/cap-20261127-101500_123456.pcapng.zst")
        );
        let p = NamePattern::new(Path::new("out"), true).unwrap();
        assert_eq!(p.name(7, &t).unwrap(), Path::new("out_00007"));
        let p = NamePattern::new(Path::new("/d/100%.pcap"), false).unwrap();
        assert_eq!(p.name(9, &t).unwrap(), Path::new("/d/100%.pcap"));
        assert_eq!(
            NamePattern::new(Path::new("/d/x-%q.pcap"), true),
            Err(PatternError::UnknownField('q'))
        );
        assert_eq!(
            temp_name(Path::new("/d/cap_00001.pcap")),
            Path::new("/d/.cap_00001.pcap.part")
        );
    }

    #[test]
    fn boundaries_align_to_the_local_clock() {
        // 10:15:07 UTC → 10:16:00
        assert_eq!(next_boundary(1_795_774_507, 0, 60), 1_795_774_560);
        // Exactly on a boundary: the next one.
        assert_eq!(next_boundary(1_795_774_560, 0, 60), 1_795_774_620);
        // Hourly at UTC+05:30: the next local full hour is 16:00 local = 10:30 UTC.
        assert_eq!(next_boundary(1_795_774_507, 19_800, 3600), 1_795_775_400);
        // Daily at UTC-08:00: local midnight.
        let b = next_boundary(1_795_774_507, -28_800, 86_400);
        assert_eq!((b - 28_800).rem_euclid(86_400), 0);
        assert!(b > 1_795_774_507 && b - 1_795_774_507 <= 86_400);
    }

    #[test]
    fn size_decisions() {
        // The first packet always goes in, even when larger than the limit.
        assert!(!size_exceeded(100, 24, 500, 0, 0));
        assert!(!size_exceeded(100, 24, 76, 0, 1));
        assert!(size_exceeded(100, 24, 77, 0, 1));
        assert!(size_exceeded(100, 24, 60, 20, 1));
    }

    #[test]
    fn ring_deletes_only_beyond_its_size() {
        let f = |n: u64| Created {
            path: PathBuf::from(format!("f{n}")),
            dev: 1,
            ino: n,
        };
        let mut ring = Ring::new(Some(3));
        ring.push(f(1));
        ring.push(f(2));
        assert!(ring.make_room().is_empty());
        ring.push(f(3));
        assert_eq!(ring.make_room(), [f(1)]);
        ring.push(f(4));
        assert_eq!(ring.make_room(), [f(2)]);
        let mut one = Ring::new(Some(1));
        one.push(f(9));
        assert_eq!(one.make_room(), [f(9)]);
        let mut unbounded = Ring::new(None);
        unbounded.push(f(1));
        assert!(unbounded.make_room().is_empty());
    }

    #[test]
    fn ring_leaves_a_replaced_file_alone() {
        let dir = std::env::temp_dir().join(format!("tap-ring-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.pcap");
        std::fs::write(&path, b"ours").unwrap();
        let m = std::fs::metadata(&path).unwrap();
        let ours = Created {
            path: path.clone(),
            dev: m.dev(),
            ino: m.ino(),
        };
        // Someone replaces it: a new inode at the same name (the old one kept alive elsewhere,
        // so its number cannot be reused).
        std::fs::rename(&path, dir.join("moved")).unwrap();
        std::fs::write(dir.join("b"), b"theirs").unwrap();
        std::fs::rename(dir.join("b"), &path).unwrap();
        Ring::delete(&ours);
        assert_eq!(std::fs::read(&path).unwrap(), b"theirs");
        let m = std::fs::metadata(&path).unwrap();
        Ring::delete(&Created {
            path: path.clone(),
            dev: m.dev(),
            ino: m.ino(),
        });
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
