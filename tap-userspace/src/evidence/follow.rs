//! Following `eve.json` through rotation by rename and truncation in place, never missing or
//! repeating a line tap could have read.
//!
//! The follower holds the file open and remembers its device and inode, the offset it has read
//! up to, and the last bytes before that offset (a fingerprint). At each poll:
//! - the path is looked up again: a different inode means the file was renamed away and a new
//!   one created (logrotate's default; Suricata reopens on SIGHUP). The old file is read to its
//!   end and kept open for [`ROTATE_GRACE`] after it last grew, for the lines Suricata still
//!   writes into it before it reopens; the new file is read from its start.
//! - the open file is checked for truncation (`copytruncate`): shorter than the offset, or its
//!   bytes before the offset no longer the fingerprint (truncated and rewritten past the offset
//!   between two polls). It is then read again from its start. Lines written after the last
//!   poll and before the truncation were copied away, not to this file: tap cannot see them,
//!   as no follower can; the poll interval bounds that window.
//! - new bytes are split into lines. A last line without its newline is held until the rest
//!   arrives; a line longer than `max_line` is skipped to its end and counted.

use std::{
    fs::File,
    io,
    os::unix::fs::{FileExt as _, MetadataExt as _},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use tracing::{info, warn};

/// How long a renamed file is still read after it last grew.
pub const ROTATE_GRACE: Duration = Duration::from_secs(5);

/// Bytes read from one file per poll: a backlog is taken in steps, not at once.
const READ_PER_POLL: usize = 4 << 20;

const CHUNK: usize = 64 * 1024;

/// Bytes of the fingerprint: the last ones before the offset.
const FINGERPRINT: usize = 64;

/// Where to start in the file found at the first poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Its beginning: every alert it holds.
    Beginning,
    /// Its end: only alerts written from now on. Files that appear later are read whole.
    End,
}

/// Counts of the follower.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FollowCounts {
    /// Whole lines handed over.
    pub lines: u64,
    /// Lines longer than the limit, skipped.
    pub long_lines: u64,
    /// Renamed files seen.
    pub rotations: u64,
    /// Truncations seen.
    pub truncations: u64,
    /// Partial last lines dropped (the file was truncated or retired before they were ended).
    pub partial_dropped: u64,
}

/// Splits bytes into lines, holding a partial last line and skipping overlong ones.
#[derive(Debug)]
pub struct LineBuffer {
    partial: Vec<u8>,
    skipping: bool,
    max_line: usize,
}

impl LineBuffer {
    #[must_use]
    pub fn new(max_line: usize) -> Self {
        Self {
            partial: Vec::new(),
            skipping: false,
            max_line,
        }
    }

    /// Bytes of a line still waiting for its end.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Drops a partial line; true when there was one.
    pub fn reset(&mut self) -> bool {
        let had = !self.partial.is_empty() || self.skipping;
        self.partial.clear();
        self.skipping = false;
        had
    }

    /// Feeds `data`; calls `line` with each whole line (without its newline) and `long` for each
    /// line skipped for its length.
    pub fn push(&mut self, mut data: &[u8], line: &mut dyn FnMut(&[u8]), long: &mut dyn FnMut()) {
        while !data.is_empty() {
            let nl = data.iter().position(|&b| b == b'\n');
            let (piece, rest, ended) = match nl {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &[][..], false),
            };
            data = rest;
            if self.skipping {
                if ended {
                    self.skipping = false;
                }
                continue;
            }
            if self.partial.len() + piece.len() > self.max_line {
                self.partial.clear();
                long();
                self.skipping = !ended;
                continue;
            }
            if !ended {
                self.partial.extend_from_slice(piece);
                continue;
            }
            if self.partial.is_empty() {
                line(piece);
            } else {
                self.partial.extend_from_slice(piece);
                line(&self.partial);
                self.partial.clear();
            }
        }
    }
}

/// One open file being read.
#[derive(Debug)]
struct Open {
    file: File,
    id: (u64, u64),
    offset: u64,
    fingerprint: Vec<u8>,
    lines: LineBuffer,
    /// When it last grew (for retiring a renamed file).
    grew: Instant,
}

impl Open {
    fn at(file: File, offset: u64, max_line: usize) -> io::Result<Self> {
        let meta = file.metadata()?;
        let mut o = Self {
            file,
            id: (meta.dev(), meta.ino()),
            offset,
            fingerprint: Vec::new(),
            lines: LineBuffer::new(max_line),
            grew: Instant::now(),
        };
        o.fingerprint = o.read_fingerprint()?;
        Ok(o)
    }

    fn read_fingerprint(&self) -> io::Result<Vec<u8>> {
        let len = self.offset.min(FINGERPRINT as u64);
        let mut fp = vec![0u8; usize::try_from(len).unwrap_or(0)];
        self.file.read_exact_at(&mut fp, self.offset - len)?;
        Ok(fp)
    }

    /// Whether the file was truncated under the offset (see the module notes).
    fn truncated(&self) -> io::Result<bool> {
        let size = self.file.metadata()?.len();
        if size < self.offset {
            return Ok(true);
        }
        if self.fingerprint.is_empty() {
            return Ok(false);
        }
        let mut now = vec![0u8; self.fingerprint.len()];
        let at = self.offset - now.len() as u64;
        self.file.read_exact_at(&mut now, at)?;
        Ok(now != self.fingerprint)
    }

    /// Reads what is new (at most [`READ_PER_POLL`]); true when more may be waiting.
    fn read_new(
        &mut self,
        counts: &mut FollowCounts,
        each: &mut dyn FnMut(&[u8]),
    ) -> io::Result<bool> {
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0;
        while total < READ_PER_POLL {
            let n = match self.file.read_at(&mut buf, self.offset) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(false);
            }
            total += n;
            self.offset += n as u64;
            self.grew = Instant::now();
            let data = &buf[..n];
            if n >= FINGERPRINT {
                self.fingerprint.clear();
                self.fingerprint.extend_from_slice(&data[n - FINGERPRINT..]);
            } else {
                self.fingerprint.extend_from_slice(data);
                let excess = self.fingerprint.len().saturating_sub(FINGERPRINT);
                self.fingerprint.drain(..excess);
            }
            let mut long = 0u64;
            let mut lines = 0u64;
            self.lines.push(
                data,
                &mut |l| {
                    lines += 1;
                    each(l);
                },
                &mut || long += 1,
            );
            counts.lines += lines;
            counts.long_lines += long;
        }
        Ok(true)
    }
}

/// Follows one `eve.json` path.
#[derive(Debug)]
pub struct EveFile {
    path: PathBuf,
    start: Option<Start>,
    max_line: usize,
    current: Option<Open>,
    /// Renamed files still read for a while.
    retiring: Vec<Open>,
    pub counts: FollowCounts,
}

impl EveFile {
    /// A follower of `path` (which need not exist yet); lines longer than `max_line` bytes are
    /// skipped.
    #[must_use]
    pub fn new(path: &Path, start: Start, max_line: usize) -> Self {
        Self {
            path: path.to_path_buf(),
            start: Some(start),
            max_line,
            current: None,
            retiring: Vec::new(),
            counts: FollowCounts::default(),
        }
    }

    /// The file's (device, inode) and the offset read up to, for a caller that keeps its place
    /// across restarts.
    #[must_use]
    pub fn position(&self) -> Option<((u64, u64), u64)> {
        self.current.as_ref().map(|o| (o.id, o.offset))
    }

    fn open_path(&mut self) -> io::Result<Option<Open>> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let offset = match self.start.take() {
            Some(Start::End) => file.metadata()?.len(),
            _ => 0,
        };
        let mut open = Open::at(file, offset, self.max_line)?;
        // Started at the end of a line being written: its rest is not a line.
        if open.fingerprint.last().is_some_and(|&b| b != b'\n') {
            open.lines.skipping = true;
        }
        Ok(Some(open))
    }

    /// Reads every whole line that is new, calling `each` with it. Returns true when more may
    /// be waiting (the per-poll bound was reached).
    ///
    /// # Errors
    /// The file cannot be opened or read (other than not existing yet).
    pub fn poll(&mut self, each: &mut dyn FnMut(&[u8])) -> io::Result<bool> {
        let mut more = false;
        // A rename: the path names another file now.
        match std::fs::metadata(&self.path) {
            Ok(m) => {
                let id = (m.dev(), m.ino());
                if self.current.as_ref().is_some_and(|o| o.id != id) {
                    if let Some(old) = self.current.take() {
                        self.counts.rotations += 1;
                        info!(path = %self.path.display(), "eve: the file was rotated; reading the new one, and the old one to its end");
                        self.retiring.push(old);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // The old files first: their lines come before the new file's.
        let counts = &mut self.counts;
        for old in &mut self.retiring {
            more |= old.read_new(counts, each)?;
        }
        // A line never ended in a retired file is lost with it.
        let mut dropped = 0;
        self.retiring.retain(|o| {
            let keep = o.grew.elapsed() < ROTATE_GRACE;
            if !keep && o.lines.pending() > 0 {
                dropped += 1;
            }
            keep
        });
        counts.partial_dropped += dropped;
        if self.current.is_none() {
            self.current = self.open_path()?;
        }
        let Some(current) = self.current.as_mut() else {
            return Ok(more);
        };
        if current.truncated()? {
            self.counts.truncations += 1;
            if current.lines.reset() {
                self.counts.partial_dropped += 1;
            }
            warn!(path = %self.path.display(), "eve: the file was truncated; reading it from its start");
            current.offset = 0;
            current.fingerprint.clear();
        }
        more |= current.read_new(&mut self.counts, each)?;
        Ok(more)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tap-eve-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn poll(f: &mut EveFile) -> Vec<String> {
        let mut out = Vec::new();
        while f
            .poll(&mut |l| out.push(String::from_utf8_lossy(l).into_owned()))
            .unwrap()
        {}
        out
    }

    #[test]
    fn lines_are_split_held_and_bounded() {
        let mut b = LineBuffer::new(10);
        let mut lines = Vec::new();
        let mut long = 0;
        let feed = |b: &mut LineBuffer, d: &[u8], lines: &mut Vec<Vec<u8>>, long: &mut i32| {
            b.push(d, &mut |l| lines.push(l.to_vec()), &mut || *long += 1);
        };
        feed(&mut b, b"ab\ncd", &mut lines, &mut long);
        assert_eq!(lines, [b"ab".to_vec()]);
        assert_eq!(b.pending(), 2);
        feed(&mut b, b"ef\n", &mut lines, &mut long);
        assert_eq!(lines.last().unwrap(), b"cdef");
        // 11 bytes: skipped to its end, however it arrives.
        feed(&mut b, b"0123456", &mut lines, &mut long);
        feed(&mut b, b"7890", &mut lines, &mut long);
        feed(&mut b, b"xyz\nok\n", &mut lines, &mut long);
        assert_eq!(long, 1);
        assert_eq!(lines.last().unwrap(), b"ok");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn follows_renames_and_truncations() {
        let dir = scratch("follow");
        let path = dir.join("eve.json");
        let mut f = EveFile::new(&path, Start::Beginning, 1000);
        assert!(poll(&mut f).is_empty(), "no file yet");
        append(&path, "a1\na2\na");
        assert_eq!(poll(&mut f), ["a1", "a2"]);
        append(&path, "3\n");
        assert_eq!(poll(&mut f), ["a3"]);
        // Renamed, and the old file still written once before the new one appears.
        std::fs::rename(&path, dir.join("eve.json.1")).unwrap();
        append(&dir.join("eve.json.1"), "a4\n");
        assert_eq!(poll(&mut f), ["a4"]);
        append(&path, "b1\n");
        append(&dir.join("eve.json.1"), "a5\n");
        assert_eq!(poll(&mut f), ["a5", "b1"]);
        assert_eq!(f.counts.rotations, 1);
        // Truncated to less than was read.
        std::fs::write(&path, "").unwrap();
        append(&path, "c1\n");
        assert_eq!(poll(&mut f), ["c1"]);
        // Truncated and rewritten past the offset between two polls.
        std::fs::write(&path, "").unwrap();
        append(&path, "d1 a longer line than before\nd2\n");
        assert_eq!(poll(&mut f), ["d1 a longer line than before", "d2"]);
        assert_eq!(f.counts.truncations, 2);
        assert_eq!(f.counts.lines, 9);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn starts_at_the_end_when_asked() {
        let dir = scratch("end");
        let path = dir.join("eve.json");
        append(&path, "old\n");
        append(&path, "half a li");
        let mut f = EveFile::new(&path, Start::End, 1000);
        assert!(poll(&mut f).is_empty());
        append(&path, "ne\nnew\n");
        assert_eq!(
            poll(&mut f),
            ["new"],
            "the rest of the line started before is no line"
        );
        // A file after rotation is read from its start.
        std::fs::rename(&path, dir.join("old.json")).unwrap();
        append(&path, "next\n");
        assert_eq!(poll(&mut f), ["next"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_backlog_is_read_in_steps() {
        let dir = scratch("backlog");
        let path = dir.join("eve.json");
        let line = "x".repeat(999);
        let text = format!("{line}\n").repeat(10_000);
        append(&path, &text);
        let mut f = EveFile::new(&path, Start::Beginning, 1000);
        let mut n = 0;
        assert!(
            f.poll(&mut |_| n += 1).unwrap(),
            "more after the first 4 MiB"
        );
        assert!(n < 10_000);
        while f.poll(&mut |_| n += 1).unwrap() {}
        assert_eq!(n, 10_000);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
