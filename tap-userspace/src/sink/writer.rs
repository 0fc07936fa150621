//! The capture writer: packets → records in a buffer → (zstd frame) → standard output or files.
//!
//! Records are encoded into one large buffer (no allocation per packet: the buffer, the list of
//! record ends and the compressor's output are allocated once). The buffer is written in one go
//! when it is full, when the flush interval has passed since its oldest packet, before a file
//! rotates, and at the end; for standard output also whenever no batch is waiting, so a reader
//! of a pipe sees packets within milliseconds.
//!
//! Every write holds whole records only. With compression each write is one complete zstd
//! frame; a zstd file is a sequence of frames, so whatever prefix of whole frames reaches the
//! disk decompresses (`tshark -r` and `zstd -d` read it). When a write fails part-way on a
//! full disk, the file is cut back to the last whole record (the last whole frame), finished,
//! and the packets that did not make it are counted as lost.

use std::{
    io::{self, Write as _},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tap_common::config::MAX_SNAPLEN;
use tracing::{debug, error, info};

use super::{
    CaptureStats, Sink, SinkReport, SinkSetup, SinkStop, StorageError,
    file::{OutFile, WriteFailure, is_disk_full},
    pcap,
    pcapng::{self, InterfaceDesc, PcapngEncoder, SectionInfo},
    rotate::{self, LocalTime, NamePattern, PostRotate, Ring},
};
use crate::{
    custody::Recorder,
    kernel::batch::{Batch, Packet},
    model::{Compression, DiskFull, Format, Output, Rotation},
};

/// Bytes of records gathered before a write: large writes, few system calls.
pub const BUFFER: usize = 1 << 20;
/// Where the manifest of files written at `path` goes: their directory.
fn custody_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Longest a finished file's post-rotate command is waited for at the end.
const POST_ROTATE_WAIT: Duration = Duration::from_secs(5);

/// What a chunk of a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    /// The section header and interface descriptions a file starts with.
    Header,
    /// Packet records (and, rarely, the description of an interface first seen in them).
    Packets,
    /// The statistics a file ends with.
    Trailer,
}

/// One write of the writer: a run of whole records (one zstd frame when compressing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub kind: ChunkKind,
    /// Where it starts in the file, in bytes (of the compressed file when compressing).
    pub offset: u64,
    /// Bytes it takes in the file; 0 when nothing of it reached the file.
    pub len: u64,
    /// Bytes of records it holds (its decompressed size; `len` when not compressing).
    pub raw_len: u64,
    /// Packets of it that reached the file: the first `packets` of those told since the last
    /// chunk (all of them unless the disk filled up part-way).
    pub packets: u64,
}

/// Watches what the writer puts where, for an index of its files (the packet store). Called on
/// the writer thread: [`WriteObserver::packet`] for every packet, the rest per write or file.
pub trait WriteObserver: Send {
    /// A file was created; `path` is the name it has while written.
    fn file_started(&mut self, path: &Path);
    /// `p` was encoded as pcapng interface `interface` into the chunk that is written next,
    /// its record (and the description of an interface first seen with it) starting `at` bytes
    /// into the chunk's records.
    fn packet(&mut self, p: &Packet<'_>, interface: u32, at: usize);
    /// A write reached the current file (or, with `len` 0, did not).
    fn chunk_written(&mut self, chunk: &Chunk);
    /// The current file is complete, synced, under its final name `path`.
    fn file_finished(&mut self, path: &Path);
    /// The current file was removed unfinished (its header did not fit).
    fn file_discarded(&mut self) {}
    /// The disk is full: free room if possible. True when something was freed, so the write is
    /// tried again; false leaves the full disk to `--on-disk-full`.
    fn make_room(&mut self) -> bool {
        false
    }
    /// The writer has nothing to do right now (periodic work: retention by age).
    fn idle(&mut self) {}
    /// True when the current file should end before the next packet (the observer's own
    /// bounds, e.g. the memory its index of the file takes).
    fn rotate_due(&self) -> bool {
        false
    }
    /// The writer finishes (its last file is finished): wait for work in flight, return lines
    /// for the summary.
    fn finish(&mut self) -> Vec<String> {
        Vec::new()
    }
}

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The file format, encoding into a buffer.
#[derive(Debug)]
enum Encoder {
    Pcap { snaplen: u32 },
    Pcapng(Box<PcapngEncoder>),
}

impl Encoder {
    fn header(&self, out: &mut Vec<u8>) {
        match self {
            Self::Pcap { snaplen } => {
                out.extend_from_slice(&pcap::global_header(*snaplen, pcap::LINKTYPE_ETHERNET));
            }
            Self::Pcapng(e) => e.header(out),
        }
    }

    fn record_len(&self, p: &Packet<'_>) -> usize {
        match self {
            Self::Pcap { .. } => pcap::RECORD_HEADER_LEN + p.data.len(),
            Self::Pcapng(_) => PcapngEncoder::record_len(p),
        }
    }

    /// Appends the packet; returns its interface id (0 for pcap).
    fn packet(&mut self, out: &mut Vec<u8>, p: &Packet<'_>) -> u32 {
        match self {
            Self::Pcap { .. } => {
                pcap::record(out, p.ts_ns, p.header.orig_len, p.data);
                0
            }
            Self::Pcapng(e) => e.packet(out, p),
        }
    }

    fn count_delivered(&mut self, id: u32) {
        if let Self::Pcapng(e) = self {
            e.count_delivered(id);
        }
    }

    fn count_lost(&mut self, id: u32) {
        if let Self::Pcapng(e) = self {
            e.count_lost(id);
        }
    }

    fn lose_packet(&mut self, p: &Packet<'_>) {
        if let Self::Pcapng(e) = self {
            e.lose_packet(p);
        }
    }

    /// The most bytes [`Encoder::trailer`] appends for the interfaces known now.
    fn trailer_len(&self) -> usize {
        match self {
            Self::Pcap { .. } => 0,
            Self::Pcapng(e) => e.trailer_len(),
        }
    }

    fn trailer(&self, out: &mut Vec<u8>, stats: &CaptureStats, start_ns: u64, end_ns: u64) {
        if let Self::Pcapng(e) = self {
            e.trailer(out, stats, start_ns, end_ns);
        }
    }
}

/// A compressor and its output buffer, reused for every frame.
struct Zstd {
    cctx: zstd::bulk::Compressor<'static>,
    out: Vec<u8>,
}

impl std::fmt::Debug for Zstd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zstd").finish_non_exhaustive()
    }
}

impl Zstd {
    fn new(level: i32) -> io::Result<Self> {
        let cctx = zstd::bulk::Compressor::new(level)?;
        let out = Vec::with_capacity(zstd::zstd_safe::compress_bound(
            BUFFER + MAX_SNAPLEN as usize + 4096,
        ));
        Ok(Self { cctx, out })
    }

    /// Compresses `data` into one whole frame in `self.out`.
    fn frame(&mut self, data: &[u8]) -> io::Result<&[u8]> {
        let bound = zstd::zstd_safe::compress_bound(data.len());
        if self.out.capacity() < bound {
            self.out.reserve(bound - self.out.len());
        }
        let n = self.cctx.compress_to_buffer(data, &mut self.out)?;
        Ok(&self.out[..n])
    }
}

/// Where the bytes go.
#[derive(Debug)]
enum Target {
    Stdout,
    Files(Box<Files>),
}

/// Files and their rotation.
#[derive(Debug)]
struct Files {
    pattern: NamePattern,
    /// Write under `.NAME.part` and rename when finished (when rotating).
    temp_names: bool,
    force: bool,
    /// Sequence number of the current file.
    seq: u64,
    current: Option<OutFile>,
    ring: Ring,
    post: PostRotate,
    /// Skip names already taken (see [`crate::model::OutputConfig::resume`]).
    resume: bool,
    /// Records each finished file (and each the ring deletes) in the directory's manifest.
    custody: Option<Recorder>,
}

/// Largest sequence number tried when skipping taken names.
const MAX_SEQ: u64 = 10_000_000;

/// Why writing stopped, before it is turned into a [`SinkStop`].
enum Fail {
    Closed,
    DiskFull(PathBuf),
    Other(StorageError),
}

impl From<StorageError> for Fail {
    fn from(e: StorageError) -> Self {
        match &e {
            StorageError::Write { path, source } if is_disk_full(source) => {
                Self::DiskFull(path.clone())
            }
            StorageError::Create { path, source } if is_disk_full(source) => {
                Self::DiskFull(path.clone())
            }
            _ => Self::Other(e),
        }
    }
}

/// Writes a capture to standard output or to (rotating) files. See the module notes.
pub struct CaptureWriter {
    enc: Encoder,
    zstd: Option<Zstd>,
    /// Whole records not yet written.
    buf: Vec<u8>,
    /// For each packet record in `buf`: where it ends, and its interface id.
    marks: Vec<(usize, u32)>,
    /// When the oldest record in `buf` was added.
    pending_since: Option<Instant>,
    flush_interval: Duration,
    target: Target,
    rotation: Rotation,
    on_disk_full: DiskFull,
    stats: super::StatsSource,
    /// Capture start, ns since the epoch.
    start_ns: u64,
    /// With -G: the current file takes packets stamped before this (ns since the epoch).
    boundary_ns: Option<u64>,
    /// Packets in the current file, buffered ones included.
    file_packets: u64,
    /// A compressed file reached -C: the next packet goes to a new file.
    size_due: bool,
    /// Bytes the statistics at the end of a file take (reserved under -C).
    trailer_len: usize,
    scratch: Vec<u8>,
    /// After a full disk under `--on-disk-full drop`: packets are counted, not written.
    dropping: bool,
    report: SinkReport,
    progress: Option<std::sync::Arc<super::WriterProgress>>,
    observer: Option<Box<dyn WriteObserver>>,
}

impl std::fmt::Debug for CaptureWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureWriter")
            .field("target", &self.target)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl CaptureWriter {
    /// Opens the output (the first file) and writes its header.
    pub fn open(setup: SinkSetup<'_>) -> Result<Self, StorageError> {
        Self::open_observed(setup, None)
    }

    /// [`CaptureWriter::open`], telling `observer` what goes where (files only).
    pub fn open_observed(
        setup: SinkSetup<'_>,
        observer: Option<Box<dyn WriteObserver>>,
    ) -> Result<Self, StorageError> {
        let out = setup.output;
        let enc = match out.format {
            Format::Pcap => Encoder::Pcap {
                snaplen: setup.snaplen,
            },
            Format::Pcapng => {
                let interfaces = InterfaceDesc::list(setup.interfaces, setup.hooks);
                Encoder::Pcapng(Box::new(PcapngEncoder::new(
                    SectionInfo::of_this_host(),
                    interfaces,
                    setup.snaplen,
                    setup.filter,
                )))
            }
        };
        let zstd = match out.compression {
            Compression::None => None,
            Compression::Zstd { level } => Some(Zstd::new(level).map_err(StorageError::Compress)?),
        };
        let target = match &out.target {
            // Callers open no writer without an output; standard output is a harmless stand-in.
            Output::Stdout | Output::None => Target::Stdout,
            Output::File(path) => Target::Files(Box::new(Files {
                pattern: NamePattern::new(path, out.rotation.active())?,
                temp_names: out.rotation.active(),
                force: out.force,
                seq: 0,
                current: None,
                ring: Ring::new(out.rotation.max_files),
                post: PostRotate::new(out.post_rotate.clone()).notifying(setup.finished.clone()),
                resume: out.resume,
                custody: Some(Recorder::spawn(
                    custody_dir(path),
                    out.sign_key.as_ref().map(|k| k.key.clone()),
                )),
            })),
        };
        let start_ns = wall_ns();
        let mut w = Self {
            enc,
            zstd,
            buf: Vec::with_capacity(BUFFER + pcapng::epb_len(MAX_SNAPLEN as usize) + 4096),
            marks: Vec::with_capacity(BUFFER / 64),
            pending_since: None,
            flush_interval: out.flush_interval,
            target,
            rotation: out.rotation,
            on_disk_full: out.on_disk_full,
            stats: setup.stats,
            start_ns,
            boundary_ns: None,
            file_packets: 0,
            size_due: false,
            trailer_len: 0,
            scratch: Vec::with_capacity(4096),
            dropping: false,
            report: SinkReport::default(),
            progress: setup.progress.clone(),
            observer,
        };
        if let Encoder::Pcapng(e) = &w.enc {
            debug!(interfaces = %e.describe(), "pcapng interfaces");
        }
        match w.open_next((start_ns / 1_000_000_000) as i64) {
            Ok(()) => Ok(w),
            Err(Fail::Other(e)) => Err(e),
            Err(Fail::DiskFull(path)) => Err(StorageError::Write {
                path,
                source: io::Error::from_raw_os_error(libc::ENOSPC),
            }),
            Err(Fail::Closed) => Err(StorageError::Stdout(io::ErrorKind::BrokenPipe.into())),
        }
    }

    /// Starts the output: the header to standard output, or the next file, started at `start`
    /// (seconds since the epoch).
    fn open_next(&mut self, start: i64) -> Result<(), Fail> {
        self.file_packets = 0;
        self.size_due = false;
        self.scratch.clear();
        self.enc.header(&mut self.scratch);
        let header = std::mem::take(&mut self.scratch);
        let result = self.open_with(start, &header);
        self.scratch = header;
        result
    }

    fn open_with(&mut self, start: i64, header: &[u8]) -> Result<(), Fail> {
        self.trailer_len = self.enc.trailer_len();
        if let Target::Files(files) = &mut self.target {
            let t = LocalTime::at(start);
            self.boundary_ns = self
                .rotation
                .interval_secs
                .map(|i| rotate::next_boundary(start, t.gmtoff, i).max(0) as u64 * 1_000_000_000);
            for old in files.ring.make_room() {
                if Ring::delete(&old) {
                    if let Some(c) = &files.custody {
                        c.removed(&old.path);
                    }
                }
            }
            files.seq += 1;
            let path = loop {
                let path = files
                    .pattern
                    .name(files.seq, &t)
                    .map_err(StorageError::from)?;
                let temp = files.temp_names.then(|| rotate::temp_name(&path));
                match OutFile::create(&path, temp, files.force) {
                    // An earlier run's file: go on after it.
                    Err(StorageError::Exists { .. })
                        if files.resume && files.temp_names && files.seq < MAX_SEQ =>
                    {
                        files.seq += 1;
                    }
                    created => {
                        files.current = Some(created?);
                        break path;
                    }
                }
            };
            info!(path = %path.display(), "writing");
            if let (Some(o), Some(file)) = (&mut self.observer, &files.current) {
                o.file_started(file.current_name());
            }
        }
        if let Err(f) = self.write_raw(header, ChunkKind::Header) {
            // A file whose header did not fit holds nothing: remove it.
            if let Target::Files(files) = &mut self.target {
                if let Some(file) = files.current.take() {
                    file.discard();
                    if let Some(o) = &mut self.observer {
                        o.file_discarded();
                    }
                }
            }
            return Err(f);
        }
        Ok(())
    }

    /// Bytes in the current file.
    fn file_len(&self) -> u64 {
        match &self.target {
            Target::Files(f) => f.current.as_ref().map_or(0, OutFile::len),
            Target::Stdout => 0,
        }
    }

    /// Writes `data` (a prefix of whole records, by `whole`), asking the observer to make room
    /// and trying the rest again while the disk is full and it can. On failure: the bytes that
    /// stayed, and why.
    fn write_retrying(
        target: &mut Target,
        observer: &mut Option<Box<dyn WriteObserver>>,
        data: &[u8],
        whole: impl Fn(usize) -> usize,
    ) -> Result<(), (usize, Fail)> {
        let mut done = 0;
        loop {
            let rest = &data[done..];
            match write_target(target, rest, |n| whole(done + n).saturating_sub(done)) {
                Ok(()) => return Ok(()),
                Err((kept, Fail::DiskFull(path))) => {
                    done += kept;
                    if !observer.as_mut().is_some_and(|o| o.make_room()) {
                        return Err((done, Fail::DiskFull(path)));
                    }
                }
                Err((kept, f)) => return Err((done + kept, f)),
            }
        }
    }

    /// Writes bytes that are not packets (a header, statistics) as one unit.
    fn write_raw(&mut self, raw: &[u8], kind: ChunkKind) -> Result<(), Fail> {
        let offset = self.file_len();
        let data = match &mut self.zstd {
            Some(z) => z
                .frame(raw)
                .map_err(|e| Fail::Other(StorageError::Compress(e)))?,
            None => raw,
        };
        let n = data.len() as u64;
        let r = Self::write_retrying(&mut self.target, &mut self.observer, data, |_| 0);
        if r.is_ok() {
            self.report.bytes += n;
        }
        if let Some(o) = &mut self.observer {
            o.chunk_written(&Chunk {
                kind,
                offset,
                len: if r.is_ok() { n } else { 0 },
                raw_len: raw.len() as u64,
                packets: 0,
            });
        }
        r.map_err(|(_, f)| f)
    }

    /// Writes the buffered records.
    fn flush_buf(&mut self) -> Result<(), Fail> {
        self.pending_since = None;
        if self.buf.is_empty() {
            return Ok(());
        }
        let offset = self.file_len();
        let Self {
            buf,
            marks,
            zstd,
            target,
            observer,
            ..
        } = self;
        let (result, compressed) = if let Some(z) = zstd {
            match z.frame(buf) {
                Ok(frame) => (
                    Self::write_retrying(target, observer, frame, |_| 0).map(|()| frame.len()),
                    true,
                ),
                Err(e) => (Err((0, Fail::Other(StorageError::Compress(e)))), true),
            }
        } else {
            let m: &[(usize, u32)] = marks;
            let whole = |n: usize| {
                m.partition_point(|&(end, _)| end <= n)
                    .checked_sub(1)
                    .map_or(0, |i| m[i].0)
            };
            (
                Self::write_retrying(target, observer, buf, whole).map(|()| buf.len()),
                false,
            )
        };
        let (kept_bytes, kept_packets, fail) = match result {
            Ok(n) => (n, marks.len(), None),
            Err((kept, f)) => {
                let packets = if compressed {
                    0
                } else {
                    marks.partition_point(|&(end, _)| end <= kept)
                };
                (kept, packets, Some(f))
            }
        };
        for &(_, id) in &self.marks[..kept_packets] {
            self.enc.count_delivered(id);
        }
        for &(_, id) in &self.marks[kept_packets..] {
            self.enc.count_lost(id);
        }
        if let Some(o) = &mut self.observer {
            let raw_len = if compressed || kept_packets == self.marks.len() {
                self.buf.len()
            } else {
                kept_bytes
            };
            o.chunk_written(&Chunk {
                kind: ChunkKind::Packets,
                offset,
                len: kept_bytes as u64,
                raw_len: raw_len as u64,
                packets: kept_packets as u64,
            });
        }
        self.report.written += kept_packets as u64;
        self.report.lost += (self.marks.len() - kept_packets) as u64;
        self.report.bytes += kept_bytes as u64;
        self.buf.clear();
        self.marks.clear();
        if let Some(f) = fail {
            return Err(f);
        }
        if let (Some(max), Some(_), Target::Files(files)) =
            (self.rotation.max_bytes, &self.zstd, &self.target)
        {
            if files
                .current
                .as_ref()
                .is_some_and(|f| f.len() + self.trailer_len as u64 >= max)
            {
                self.size_due = true;
            }
        }
        Ok(())
    }

    /// Flushes, appends the statistics, finishes the current file and runs the post-rotate
    /// command on it.
    fn finish_file(&mut self, stats: &CaptureStats) -> Result<(), Fail> {
        self.flush_buf()?;
        let stats = CaptureStats {
            writer_dropped: stats.writer_dropped + self.report.lost,
            ..stats.clone()
        };
        self.scratch.clear();
        self.enc
            .trailer(&mut self.scratch, &stats, self.start_ns, wall_ns());
        let trailer = std::mem::take(&mut self.scratch);
        // Statistics that do not fit are left out: the file is whole without them.
        let trailer_result = if trailer.is_empty() {
            Ok(())
        } else {
            self.write_raw(&trailer, ChunkKind::Trailer)
        };
        self.scratch = trailer;
        self.close_file()?;
        trailer_result
    }

    /// Finishes the current file as it is (renames it, runs the post-rotate command).
    fn close_file(&mut self) -> Result<(), Fail> {
        let Target::Files(files) = &mut self.target else {
            return Ok(());
        };
        let Some(file) = files.current.take() else {
            return Ok(());
        };
        let regular = file.is_regular();
        let created = file.finish(files.force)?;
        info!(path = %created.path.display(), "finished");
        // Opened for hashing before the post-rotate command can touch it.
        if let (true, Some(c)) = (regular, &files.custody) {
            c.record(&created.path);
        }
        if let Some(o) = &mut self.observer {
            o.file_finished(&created.path);
        }
        files.post.spawn(&created.path);
        files.ring.push(created);
        self.report.files += 1;
        Ok(())
    }

    /// Ends the current file and starts the next, stamped `start` (seconds since the epoch).
    fn rotate(&mut self, start: i64) -> Result<(), Fail> {
        let stats = (self.stats)();
        self.finish_file(&stats)?;
        self.open_next(start)
    }

    /// Start of the -G interval that holds `ns` (seconds since the epoch).
    fn interval_start(&self, ns: u64) -> i64 {
        let secs = (ns / 1_000_000_000) as i64;
        match self.rotation.interval_secs {
            Some(i) => rotate::next_boundary(secs, LocalTime::at(secs).gmtoff, i) - i as i64,
            None => secs,
        }
    }

    /// Rotates before `p` when its time or the size limit says so.
    fn before_packet(&mut self, p: &Packet<'_>) -> Result<(), Fail> {
        if !matches!(self.target, Target::Files(_)) {
            return Ok(());
        }
        if self.boundary_ns.is_some_and(|b| p.ts_ns >= b) {
            return self.rotate(self.interval_start(p.ts_ns));
        }
        if self.file_packets > 0 && self.observer.as_ref().is_some_and(|o| o.rotate_due()) {
            return self.rotate((wall_ns() / 1_000_000_000) as i64);
        }
        if let Some(max) = self.rotation.max_bytes {
            let due = if self.zstd.is_some() {
                self.size_due
            } else {
                let len = match &self.target {
                    Target::Files(f) => f.current.as_ref().map_or(0, OutFile::len),
                    Target::Stdout => 0,
                };
                let record = self.enc.record_len(p) as u64;
                rotate::size_exceeded(
                    max,
                    len + self.buf.len() as u64,
                    record,
                    self.trailer_len as u64,
                    self.file_packets,
                )
            };
            if due {
                return self.rotate((wall_ns() / 1_000_000_000) as i64);
            }
        }
        Ok(())
    }

    /// Turns a failure into the sink's answer: a closed pipe or a failure stops; a full disk
    /// finishes the file and stops or, with `--on-disk-full drop`, goes on counting.
    fn fail(&mut self, f: Fail) -> Result<(), SinkStop> {
        match f {
            Fail::Closed => {
                self.report.closed = true;
                Err(SinkStop::Closed)
            }
            Fail::DiskFull(path) => {
                let stop = self.on_disk_full == DiskFull::Stop;
                if self.report.disk_full.is_none() {
                    error!(path = %path.display(), "disk full: the file ends at its last whole packet{}",
                        if stop { "; stopping" } else { "; packets are dropped from now on" });
                }
                self.report.disk_full.get_or_insert((path, stop));
                self.buf.clear();
                self.lose_marked();
                self.marks.clear();
                if let Err(Fail::Other(e)) = self.close_file() {
                    self.report.error.get_or_insert(e);
                }
                if stop {
                    Err(SinkStop::DiskFull)
                } else {
                    self.dropping = true;
                    Ok(())
                }
            }
            Fail::Other(e) => {
                error!(error = %e, "output failed");
                self.lose_marked();
                self.buf.clear();
                self.marks.clear();
                let _ = self.close_file();
                self.report.error = Some(e);
                Err(SinkStop::Failed)
            }
        }
    }

    /// With `--on-disk-full drop` and -G: at each new interval, try a new file.
    fn retry_after_disk_full(&mut self, now_ns: u64) -> Result<(), SinkStop> {
        if self.boundary_ns.is_none_or(|b| now_ns < b) {
            return Ok(());
        }
        match self.open_next(self.interval_start(now_ns)) {
            Ok(()) => {
                info!("disk has room again: writing resumes");
                self.dropping = false;
                Ok(())
            }
            // Still full: the next boundary is set, try again then.
            Err(Fail::DiskFull(_)) => Ok(()),
            Err(f) => self.fail(f),
        }
    }

    fn flush_due(&self, now: Instant) -> bool {
        self.pending_since
            .is_some_and(|t| now.duration_since(t) >= self.flush_interval)
    }
}

/// Writes `data` to the target; on failure, how many bytes stayed (`whole` of what was
/// written, for a file) and why.
fn write_target(
    target: &mut Target,
    data: &[u8],
    whole: impl Fn(usize) -> usize,
) -> Result<(), (usize, Fail)> {
    match target {
        Target::Stdout => {
            let mut out = io::stdout().lock();
            out.write_all(data).and_then(|()| out.flush()).map_err(|e| {
                if e.kind() == io::ErrorKind::BrokenPipe {
                    (0, Fail::Closed)
                } else {
                    (0, Fail::Other(StorageError::Stdout(e)))
                }
            })
        }
        Target::Files(files) => {
            let Some(file) = files.current.as_mut() else {
                return Err((
                    0,
                    Fail::Other(StorageError::Stdout(io::Error::other("no file open"))),
                ));
            };
            file.append(data, whole)
                .map_err(|WriteFailure { kept, error }| {
                    let path = file.current_name().to_path_buf();
                    if is_disk_full(&error) {
                        (kept, Fail::DiskFull(path))
                    } else {
                        (
                            kept,
                            Fail::Other(StorageError::Write {
                                path,
                                source: error,
                            }),
                        )
                    }
                })
        }
    }
}

impl CaptureWriter {
    /// Copies the report's counts where status and metrics read them (once per call of the
    /// writer, not per packet).
    fn publish(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(p) = &self.progress {
            p.written.store(self.report.written, Relaxed);
            p.bytes.store(self.report.bytes, Relaxed);
            p.files.store(self.report.files, Relaxed);
            p.lost.store(self.report.lost, Relaxed);
        }
    }

    /// Counts the packets encoded but not yet written as lost.
    fn lose_marked(&mut self) {
        for &(_, id) in &self.marks {
            self.enc.count_lost(id);
        }
        self.report.lost += self.marks.len() as u64;
    }

    fn take_batch(&mut self, batch: &Batch) -> Result<(), SinkStop> {
        if self.dropping {
            for p in batch.packets() {
                self.enc.lose_packet(&p);
            }
            self.report.lost += batch.len() as u64;
            return self.retry_after_disk_full(wall_ns());
        }
        let total = batch.len() as u64;
        for (done, p) in (0u64..).zip(batch.packets()) {
            let step = self.before_packet(&p).and_then(|()| {
                if self.buf.len() + self.enc.record_len(&p) > BUFFER {
                    self.flush_buf()
                } else {
                    Ok(())
                }
            });
            if let Err(f) = step {
                for p in batch.packets().skip(done as usize) {
                    self.enc.lose_packet(&p);
                }
                self.report.lost += total - done;
                return self.fail(f);
            }
            let at = self.buf.len();
            let id = self.enc.packet(&mut self.buf, &p);
            if let Some(o) = &mut self.observer {
                o.packet(&p, id, at);
            }
            self.marks.push((self.buf.len(), id));
            self.file_packets += 1;
        }
        let now = Instant::now();
        if !self.buf.is_empty() && self.pending_since.is_none() {
            self.pending_since = Some(now);
        }
        if self.flush_due(now) {
            if let Err(f) = self.flush_buf() {
                return self.fail(f);
            }
        }
        Ok(())
    }

    fn on_idle(&mut self) -> Result<(), SinkStop> {
        let now_ns = wall_ns();
        if let Target::Files(files) = &mut self.target {
            files.post.reap();
        }
        if let Some(o) = &mut self.observer {
            o.idle();
        }
        if self.dropping {
            return self.retry_after_disk_full(now_ns);
        }
        if self.boundary_ns.is_some_and(|b| now_ns >= b) {
            if let Err(f) = self.rotate(self.interval_start(now_ns)) {
                return self.fail(f);
            }
        }
        let stdout = matches!(self.target, Target::Stdout);
        if stdout || self.flush_due(Instant::now()) {
            if let Err(f) = self.flush_buf() {
                return self.fail(f);
            }
        }
        Ok(())
    }
}

impl Sink for CaptureWriter {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkStop> {
        let result = self.take_batch(batch);
        self.publish();
        result
    }

    fn idle(&mut self) -> Result<(), SinkStop> {
        let result = self.on_idle();
        self.publish();
        result
    }

    fn deadline(&self) -> Option<Instant> {
        let flush = self.pending_since.map(|t| t + self.flush_interval);
        let boundary = self
            .boundary_ns
            .map(|b| Instant::now() + Duration::from_nanos(b.saturating_sub(wall_ns())));
        match (flush, boundary) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn finish(mut self: Box<Self>, stats: &CaptureStats) -> SinkReport {
        let stopped = self.report.closed
            || self.report.error.is_some()
            || self.report.disk_full.as_ref().is_some_and(|d| d.1);
        if !stopped && !self.dropping {
            let result = match self.target {
                Target::Files(_) => self.finish_file(stats),
                Target::Stdout => self.flush_buf().and_then(|()| {
                    let stats = CaptureStats {
                        writer_dropped: stats.writer_dropped + self.report.lost,
                        ..stats.clone()
                    };
                    let mut trailer = Vec::new();
                    self.enc
                        .trailer(&mut trailer, &stats, self.start_ns, wall_ns());
                    if trailer.is_empty() {
                        Ok(())
                    } else {
                        self.write_raw(&trailer, ChunkKind::Trailer)
                    }
                }),
            };
            if let Err(f) = result {
                let _ = self.fail(f);
            }
        }
        if let Some(o) = &mut self.observer {
            let notes = o.finish();
            self.report.notes.extend(notes);
        }
        if let Target::Files(files) = &mut self.target {
            files.post.finish(POST_ROTATE_WAIT);
            if let Some(c) = files.custody.take() {
                let failures = c.finish();
                if failures > 0 {
                    self.report.notes.push(format!(
                        "{failures} files not recorded in the chain-of-custody manifest (see the log)"
                    ));
                }
            }
        }
        self.publish();
        std::mem::take(&mut self.report)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tap_common::event::{DIR_INBOUND, HEADER_LEN, HOOK_TC_INGRESS, PacketHeader};

    use super::*;
    use crate::{
        kernel::batch::BatchBuilder,
        model::{Hook, Interface, OutputConfig},
        replay::reader::CaptureReader,
    };

    /// `n` packets of `size` bytes stamped `ts_ns` (wall clock, ns since the epoch) onwards.
    pub(crate) fn batch(n: usize, size: usize, ts_ns: u64) -> Batch {
        let mut b = BatchBuilder::with_capacity(n * (HEADER_LEN + size));
        // The batch adds the monotonic → wall clock offset when it is read: take it off here.
        let mono = (i128::from(ts_ns) - i128::from(crate::kernel::clock::realtime_offset_ns()))
            .max(0) as u64;
        for i in 0..n {
            let header = PacketHeader {
                ts_ns: mono + i as u64,
                ifindex: 7,
                orig_len: size as u32 + 10,
                cap_len: size as u32,
                hook: HOOK_TC_INGRESS,
                direction: DIR_INBOUND,
                ..Default::default()
            };
            // SAFETY: PacketHeader is plain old data.
            let bytes: [u8; HEADER_LEN] = unsafe { std::mem::transmute(header) };
            let mut rec = bytes.to_vec();
            rec.extend((0..size).map(|j| (i + j) as u8));
            b.push(&rec).unwrap();
        }
        b.finish()
    }

    fn output(
        path: &Path,
        format: Format,
        compression: Compression,
        rotation: Rotation,
    ) -> OutputConfig {
        OutputConfig {
            target: Output::File(path.to_path_buf()),
            format,
            compression,
            rotation,
            post_rotate: None,
            flush_interval: Duration::from_secs(1),
            on_disk_full: DiskFull::Stop,
            force: false,
            resume: false,
            store: None,
            sign_key: None,
        }
    }

    fn open(out: &OutputConfig) -> Box<dyn Sink> {
        let ifaces = [Interface {
            name: "veth-b".into(),
            ifindex: 7,
        }];
        super::super::open(SinkSetup {
            output: out,
            interfaces: &ifaces,
            hooks: &[Hook::TcIngress],
            snaplen: 9216,
            filter: "icmp",
            stats: Box::new(CaptureStats::default),
            finished: None,
            progress: None,
        })
        .unwrap()
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tap-writer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The directory's chain of custody is intact, with `entries` entries and `files` files.
    fn assert_intact(dir: &Path, entries: u64, files: u64) {
        match crate::custody::verify::verify_dir(dir, None).unwrap() {
            crate::custody::verify::Verdict::Intact(i) => {
                assert_eq!((i.entries, i.files), (entries, files), "{i}");
            }
            crate::custody::verify::Verdict::Broken(b) => panic!("{b}"),
        }
    }

    fn read_packets(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut r = CaptureReader::new(bytes).unwrap();
        let mut v = Vec::new();
        while let Some(p) = r.next_packet().unwrap() {
            v.push(p.data);
        }
        v
    }

    #[test]
    fn pcap_and_pcapng_files_read_back() {
        let dir = scratch("formats");
        for (name, format, compression) in [
            ("a.pcap", Format::Pcap, Compression::None),
            ("a.pcapng", Format::Pcapng, Compression::None),
            (
                "a.pcapng.zst",
                Format::Pcapng,
                Compression::Zstd { level: 3 },
            ),
        ] {
            let path = dir.join(name);
            let mut sink = open(&output(&path, format, compression, Rotation::default()));
            sink.write_batch(&batch(100, 300, 1_700_000_000_000_000_000))
                .unwrap();
            sink.write_batch(&batch(50, 60, 1_700_000_001_000_000_000))
                .unwrap();
            let report = sink.finish(&CaptureStats::default());
            assert_eq!(
                (report.written, report.lost, report.files),
                (150, 0, 1),
                "{name}"
            );
            let mut bytes = std::fs::read(&path).unwrap();
            assert_eq!(report.bytes, bytes.len() as u64);
            if compression != Compression::None {
                bytes = zstd::decode_all(&bytes[..]).unwrap();
            }
            let packets = read_packets(&bytes);
            assert_eq!(packets.len(), 150, "{name}");
            assert_eq!(
                packets[1],
                (0..300).map(|j| (1 + j) as u8).collect::<Vec<_>>()
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn size_rotation_keeps_files_under_the_limit() {
        let dir = scratch("size");
        let rotation = Rotation {
            max_bytes: Some(10_000),
            interval_secs: None,
            max_files: Some(3),
        };
        let mut sink = open(&output(
            &dir.join("r.pcap"),
            Format::Pcap,
            Compression::None,
            rotation,
        ));
        // 100 packets of 16 + 484 = 500 bytes: 19 fit after the 24-byte header.
        sink.write_batch(&batch(100, 484, 1_700_000_000_000_000_000))
            .unwrap();
        let report = sink.finish(&CaptureStats::default());
        assert_eq!(report.files, 6);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "r_00004.pcap",
                "r_00005.pcap",
                "r_00006.pcap",
                crate::custody::MANIFEST_NAME
            ]
        );
        // Six files recorded, three removed by the ring: the three left verify.
        assert_intact(&dir, 9, 3);
        for name in &names[..2] {
            let len = std::fs::metadata(dir.join(name)).unwrap().len();
            assert_eq!(len, 24 + 19 * 500, "{name}");
        }
        assert_eq!(
            read_packets(&std::fs::read(dir.join(&names[2])).unwrap()).len(),
            100 - 5 * 19
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn time_rotation_follows_packet_timestamps() {
        let dir = scratch("time");
        let rotation = Rotation {
            max_bytes: None,
            interval_secs: Some(3600),
            max_files: None,
        };
        let mut out = output(
            &dir.join("t-%s.pcapng"),
            Format::Pcapng,
            Compression::None,
            rotation,
        );
        out.flush_interval = Duration::from_secs(3600);
        let mut sink = open(&out);
        let now = wall_ns();
        // One packet now, then two an hour and two hours later (the writer trusts the stamps).
        sink.write_batch(&batch(1, 60, now)).unwrap();
        sink.write_batch(&batch(2, 60, now + 3_600_000_000_000))
            .unwrap();
        sink.write_batch(&batch(2, 60, now + 7_200_000_000_000))
            .unwrap();
        let report = sink.finish(&CaptureStats::default());
        assert_intact(&dir, 3, 3);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.ends_with(crate::custody::MANIFEST_NAME))
            .collect();
        files.sort();
        let counts: Vec<usize> = files
            .iter()
            .map(|f| read_packets(&std::fs::read(f).unwrap()).len())
            .collect();
        assert_eq!(counts, [1, 2, 2], "{files:?}");
        assert_eq!(report.files, 3);
        // Files 2 and 3 start on hour boundaries (UTC offsets are whole quarter hours).
        for f in &files[1..] {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let secs: i64 = name
                .trim_start_matches("t-")
                .split('_')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(secs % 900, 0, "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_resumed_rotation_goes_on_after_the_files_there() {
        let dir = scratch("resume");
        let rotation = Rotation {
            max_bytes: Some(10_000),
            interval_secs: None,
            max_files: None,
        };
        let mut out = output(
            &dir.join("r.pcap"),
            Format::Pcap,
            Compression::None,
            rotation,
        );
        let mut sink = open(&out);
        sink.write_batch(&batch(2, 100, 1_700_000_000_000_000_000))
            .unwrap();
        sink.finish(&CaptureStats::default());
        // A second run without resume refuses to overwrite; with it, it numbers on.
        let refused = super::super::open(SinkSetup {
            output: &out,
            interfaces: &[],
            hooks: &[Hook::TcIngress],
            snaplen: 9216,
            filter: "",
            stats: Box::new(CaptureStats::default),
            finished: None,
            progress: None,
        });
        assert!(matches!(refused, Err(StorageError::Exists { .. })));
        out.resume = true;
        let mut sink = open(&out);
        sink.write_batch(&batch(3, 100, 1_700_000_000_000_000_000))
            .unwrap();
        sink.finish(&CaptureStats::default());
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "r_00001.pcap",
                "r_00002.pcap",
                crate::custody::MANIFEST_NAME
            ]
        );
        // Both runs append to the one manifest.
        assert_intact(&dir, 2, 2);
        assert_eq!(
            read_packets(&std::fs::read(dir.join("r_00002.pcap")).unwrap()).len(),
            3
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn flush_interval_bounds_the_delay() {
        let dir = scratch("flush");
        let path = dir.join("f.pcap");
        let mut out = output(&path, Format::Pcap, Compression::None, Rotation::default());
        out.flush_interval = Duration::from_millis(50);
        let mut sink = open(&out);
        sink.write_batch(&batch(3, 100, 1)).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            24,
            "buffered, not yet written"
        );
        let deadline = sink.deadline().unwrap();
        assert!(deadline <= Instant::now() + Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(60));
        sink.idle().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24 + 3 * 116);
        assert!(sink.deadline().is_none());
        sink.finish(&CaptureStats::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pcapng_statistics_at_the_end() {
        let dir = scratch("isb");
        let path = dir.join("s.pcapng");
        let mut sink = open(&output(
            &path,
            Format::Pcapng,
            Compression::None,
            Rotation::default(),
        ));
        sink.write_batch(&batch(5, 60, 1)).unwrap();
        let stats = CaptureStats {
            kernel: crate::kernel::counters::KernelCounters {
                seen: 9,
                matched: 8,
                ring_full: 2,
                ..Default::default()
            },
            writer_dropped: 1,
            interfaces: Vec::new(),
        };
        sink.finish(&stats);
        let bytes = std::fs::read(&path).unwrap();
        // The last block is the statistics block of interface 0.
        let len = u32::from_ne_bytes(bytes[bytes.len() - 4..].try_into().unwrap()) as usize;
        let isb = &bytes[bytes.len() - len..];
        assert_eq!(
            u32::from_ne_bytes(isb[0..4].try_into().unwrap()),
            pcapng::ISB
        );
        let mut options = Vec::new();
        let mut off = 20;
        while off + 4 <= len - 4 {
            let code = u16::from_ne_bytes(isb[off..off + 2].try_into().unwrap());
            let olen = u16::from_ne_bytes(isb[off + 2..off + 4].try_into().unwrap()) as usize;
            if code == 0 {
                break;
            }
            if olen == 8 && code >= 4 {
                options.push((
                    code,
                    u64::from_ne_bytes(isb[off + 4..off + 12].try_into().unwrap()),
                ));
            }
            off += 4 + ((olen + 3) & !3);
        }
        assert_eq!(options, [(4, 9), (5, 2), (6, 8), (7, 1), (8, 5)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
