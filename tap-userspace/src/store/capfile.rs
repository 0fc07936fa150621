//! A capture file of the store: indexing it by reading it through ([`scan`]), and reading
//! chosen blocks of it at their offsets ([`BlockReader`]).
//!
//! Files are pcapng, plain or zstd-compressed (a sequence of frames). A scan divides a plain
//! file into chunks of about [`SCAN_CHUNK`] bytes (which the indexer divides into its blocks)
//! and a compressed one at its frame boundaries (frames that end inside a pcapng block are
//! joined with the next ones, so every block of the index holds whole pcapng blocks). What
//! follows the last whole block (a crash cut it) is left out and reported, so the file can be
//! cut back to it.

use std::{
    fs::File,
    io::{self, Read},
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
};

use super::{
    blocks::{self, Block as PBlock, BlockError, Interface, Order, PacketRef},
    index::{Block, BlockKind, FileIndex, Indexer},
};
use crate::sink::{
    pcap::LINKTYPE_ETHERNET,
    writer::{Chunk, ChunkKind},
};

/// Bytes of a plain file handed to the indexer at a time while scanning.
pub const SCAN_CHUNK: usize = 1 << 20;
/// Largest zstd frame (compressed) or run of frames a scan or a read accepts, in bytes.
pub const MAX_FRAME_RUN: usize = 256 << 20;

/// Why a capture file cannot be indexed or read.
#[derive(Debug, thiserror::Error)]
pub enum CapFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {source}")]
    Damaged {
        path: PathBuf,
        #[source]
        source: BlockError,
    },
    #[error("{path}: {what}")]
    Unsupported { path: PathBuf, what: String },
}

/// What a scan found.
#[derive(Debug)]
pub struct Scanned {
    pub index: FileIndex,
    /// Bytes of the file up to the end of its last whole block (frame): the rest is a crash's
    /// torn write.
    pub whole_len: u64,
    /// Bytes of the file.
    pub file_len: u64,
}

/// Whether a capture file's name says it is compressed.
#[must_use]
pub fn is_compressed(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "zst")
}

/// Feeds whole pcapng blocks to the indexer, chunk by chunk.
struct Feeder<'p> {
    path: &'p Path,
    ix: Indexer,
    order: Order,
    interfaces: Vec<Interface>,
    /// A packet was seen (the header is over).
    packets_started: bool,
    /// Where the next packet's record starts, when an interface description came before it.
    pending_at: Option<usize>,
}

impl Feeder<'_> {
    /// Parses the whole blocks of `raw` (a chunk's records), stopping before the first packet
    /// while the header is read; returns the bytes used and the packets among them.
    fn blocks(&mut self, raw: &[u8], base: u64) -> Result<(usize, u64), CapFileError> {
        let mut off = 0;
        let mut packets = 0u64;
        let damaged = |source| CapFileError::Damaged {
            path: self.path.to_path_buf(),
            source,
        };
        loop {
            let at = base + off as u64;
            let Some((block, n)) =
                blocks::next(&raw[off..], &mut self.order, at).map_err(damaged)?
            else {
                break;
            };
            match block {
                PBlock::Section { .. } if at > 0 => {
                    return Err(CapFileError::Unsupported {
                        path: self.path.to_path_buf(),
                        what: format!(
                            "a second section at byte {at}: the store indexes single-section files"
                        ),
                    });
                }
                PBlock::Section { .. } | PBlock::Other => {}
                PBlock::Interface(i) => {
                    if u32::from(i.linktype) != LINKTYPE_ETHERNET {
                        return Err(CapFileError::Unsupported {
                            path: self.path.to_path_buf(),
                            what: format!(
                                "link type {}: the store indexes Ethernet only",
                                i.linktype
                            ),
                        });
                    }
                    self.interfaces.push(i);
                    self.ix
                        .described(u32::try_from(self.interfaces.len()).unwrap_or(u32::MAX));
                    if self.packets_started && self.pending_at.is_none() {
                        self.pending_at = Some(off);
                    }
                }
                PBlock::Packet(_) if !self.packets_started && off > 0 => {
                    // The header ends here: a block of its own.
                    self.packets_started = true;
                    break;
                }
                PBlock::Packet(p) => {
                    let units = self
                        .interfaces
                        .get(p.interface as usize)
                        .ok_or_else(|| {
                            damaged(BlockError {
                                offset: at,
                                what: "packet of an undescribed interface",
                            })
                        })?
                        .units;
                    let record_at = self.pending_at.take().unwrap_or(off);
                    self.ix.packet(
                        p.data,
                        blocks::tunnel_of_comment(p.comment),
                        blocks::to_ns(p.ts, units),
                        p.orig_len,
                        p.interface,
                        record_at,
                    );
                    self.packets_started = true;
                    packets += 1;
                }
            }
            off += n;
        }
        Ok((off, packets))
    }

    fn chunk(&mut self, offset: u64, len: u64, raw_len: u64, packets: u64, first: bool) {
        let kind = if first && packets == 0 {
            ChunkKind::Header
        } else {
            ChunkKind::Packets
        };
        self.ix.chunk(&Chunk {
            kind,
            offset,
            len,
            raw_len,
            packets,
        });
    }
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> CapFileError + '_ {
    move |source| CapFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads `file` fully into `buf` from `at` (short only at the end of the file).
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Indexes a capture file by reading it through (see the module notes).
///
/// # Errors
///
/// When a file cannot be read or written, or holds what it should not (the error says which).
pub fn scan(path: &Path) -> Result<Scanned, CapFileError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let file_len = file.metadata().map_err(io_err(path))?.len();
    let compressed = is_compressed(path);
    let mut f = Feeder {
        path,
        ix: Indexer::new(compressed),
        order: Order::default(),
        interfaces: Vec::new(),
        packets_started: false,
        pending_at: None,
    };
    let mut first = [0u8; 4];
    let magic_ok = if compressed {
        true
    } else {
        let n = read_full(&mut file, &mut first).map_err(io_err(path))?;
        n == 4 && u32::from_le_bytes(first) == 0x0A0D_0D0A
    };
    if !magic_ok {
        return Err(CapFileError::Unsupported {
            path: path.to_path_buf(),
            what: "not a pcapng file".into(),
        });
    }
    let whole_len = if compressed {
        scan_zstd(&mut f, &mut file)?
    } else {
        scan_plain(&mut f, &mut file, first)?
    };
    if f.interfaces.is_empty() && whole_len > 0 {
        return Err(CapFileError::Unsupported {
            path: path.to_path_buf(),
            what: "no interface description".into(),
        });
    }
    if whole_len == 0 {
        return Err(CapFileError::Unsupported {
            path: path.to_path_buf(),
            what: "no whole pcapng block (not a pcapng file, or empty)".into(),
        });
    }
    Ok(Scanned {
        index: f.ix.take(),
        whole_len,
        file_len,
    })
}

fn scan_plain(f: &mut Feeder<'_>, file: &mut File, first: [u8; 4]) -> Result<u64, CapFileError> {
    let path = f.path;
    let mut buf = Vec::with_capacity(SCAN_CHUNK * 2);
    buf.extend_from_slice(&first);
    // Offset in the file of buf[0].
    let mut base = 0u64;
    let mut eof = false;
    loop {
        if !eof && buf.len() < SCAN_CHUNK + blocks::MAX_BLOCK {
            let start = buf.len();
            buf.resize(start + SCAN_CHUNK, 0);
            let n = read_full(file, &mut buf[start..]).map_err(io_err(path))?;
            buf.truncate(start + n);
            eof = n < SCAN_CHUNK;
        }
        // Hand at most SCAN_CHUNK bytes of whole blocks as one chunk (a header chunk ends at the
        // first packet so the header block is small).
        let limit = buf.len().min(SCAN_CHUNK);
        let (used, packets) = f.blocks(&buf[..limit], base)?;
        let used = if used == 0 && limit < buf.len() {
            // A block larger than the chunk: take it alone.
            f.blocks(&buf, base)?.0
        } else {
            used
        };
        if used == 0 {
            return Ok(base);
        }
        f.chunk(base, used as u64, used as u64, packets, base == 0);
        base += used as u64;
        buf.drain(..used);
        if eof && buf.is_empty() {
            return Ok(base);
        }
    }
}

fn scan_zstd(f: &mut Feeder<'_>, file: &mut File) -> Result<u64, CapFileError> {
    let path = f.path;
    let mut comp: Vec<u8> = Vec::with_capacity(4 << 20);
    let mut comp_base = 0u64; // file offset of comp[0]
    let mut eof = false;
    // Decompressed bytes not yet taken as whole blocks, and where their chunk starts.
    let mut raw: Vec<u8> = Vec::new();
    let mut chunk_start = 0u64;
    let mut whole = 0u64;
    loop {
        let frame_len = loop {
            match zstd::zstd_safe::find_frame_compressed_size(&comp) {
                Ok(n) if n <= comp.len() => break Some(n),
                _ if eof => break None,
                _ => {
                    if comp.len() > MAX_FRAME_RUN {
                        return Err(CapFileError::Unsupported {
                            path: path.to_path_buf(),
                            what: "a zstd frame larger than 256 MiB".into(),
                        });
                    }
                    let start = comp.len();
                    comp.resize(start + (1 << 20), 0);
                    let n = read_full(file, &mut comp[start..]).map_err(io_err(path))?;
                    comp.truncate(start + n);
                    eof = n == 0;
                }
            }
        };
        let Some(frame_len) = frame_len else {
            // A torn last frame, or none left.
            return Ok(whole);
        };
        let mut frame = &comp[..frame_len];
        let before = raw.len();
        if zstd::stream::copy_decode(&mut frame, &mut raw).is_err() {
            raw.truncate(before);
            return Ok(whole);
        }
        if raw.len() > MAX_FRAME_RUN {
            return Err(CapFileError::Unsupported {
                path: path.to_path_buf(),
                what: "pcapng blocks spanning more than 256 MiB of zstd frames".into(),
            });
        }
        let frame_end = comp_base + frame_len as u64;
        comp.drain(..frame_len);
        comp_base = frame_end;
        // Feed only runs of frames that end on a block boundary: a chunk holds whole blocks.
        let mut order = f.order;
        let mut off = 0;
        while let Some((_, n)) =
            blocks::next(&raw[off..], &mut order, off as u64).map_err(|source| {
                CapFileError::Damaged {
                    path: path.to_path_buf(),
                    source,
                }
            })?
        {
            off += n;
        }
        if off == raw.len() {
            let first = chunk_start == 0;
            let (used, packets) = f.blocks(&raw, 0)?;
            let (used, packets) = if used < raw.len() {
                // The header stopped before the first packet: the rest goes on in this chunk.
                let (more, p) = f.blocks(&raw[used..], used as u64)?;
                (used + more, packets + p)
            } else {
                (used, packets)
            };
            debug_assert_eq!(used, raw.len());
            f.chunk(
                chunk_start,
                frame_end - chunk_start,
                raw.len() as u64,
                packets,
                first,
            );
            raw.clear();
            chunk_start = frame_end;
            whole = frame_end;
        }
    }
}

/// Reads chosen blocks of one capture file.
#[derive(Debug)]
pub struct BlockReader {
    path: PathBuf,
    file: File,
    compressed: bool,
    order: Order,
    /// The file's interfaces, as far as read.
    pub interfaces: Vec<Interface>,
    buf: Vec<u8>,
    raw: Vec<u8>,
    /// Offsets of the blocks whose interface descriptions are in `interfaces` already.
    learned: Vec<u64>,
}

impl BlockReader {
    /// Opens the file and reads its header block (the first block: section header and
    /// interfaces; packets in it are not returned here).
    ///
    /// # Errors
    ///
    /// When a file cannot be read or written, or holds what it should not (the error says which).
    pub fn open(path: &Path, first: &Block) -> Result<Self, CapFileError> {
        let file = File::open(path).map_err(io_err(path))?;
        let mut r = Self {
            path: path.to_path_buf(),
            file,
            compressed: is_compressed(path),
            order: Order::default(),
            interfaces: Vec::new(),
            buf: Vec::new(),
            raw: Vec::new(),
            learned: Vec::new(),
        };
        r.load(first)?;
        r.parse_with(first.offset, &mut |_, _| {})?;
        Ok(r)
    }

    fn load(&mut self, b: &Block) -> Result<(), CapFileError> {
        let len = usize::try_from(b.len).unwrap_or(usize::MAX);
        if len > MAX_FRAME_RUN || b.raw_len > MAX_FRAME_RUN as u64 {
            return Err(CapFileError::Unsupported {
                path: self.path.clone(),
                what: format!("block of {len} bytes at {}", b.offset),
            });
        }
        self.buf.resize(len, 0);
        self.file
            .read_exact_at(&mut self.buf, b.offset)
            .map_err(io_err(&self.path))?;
        self.raw.clear();
        if self.compressed {
            zstd::stream::copy_decode(&self.buf[..], &mut self.raw).map_err(io_err(&self.path))?;
        } else {
            std::mem::swap(&mut self.raw, &mut self.buf);
        }
        Ok(())
    }

    /// Walks the blocks loaded, learning interfaces, calling `f` with each packet and its
    /// interface.
    fn parse_with(
        &mut self,
        at: u64,
        f: &mut dyn FnMut(&PacketRef<'_>, &Interface),
    ) -> Result<(), CapFileError> {
        let learn = !self.learned.contains(&at);
        if learn {
            self.learned.push(at);
        }
        let mut off = 0;
        while off < self.raw.len() {
            let pos = at + off as u64;
            let Some((block, n)) =
                blocks::next(&self.raw[off..], &mut self.order, pos).map_err(|source| {
                    CapFileError::Damaged {
                        path: self.path.clone(),
                        source,
                    }
                })?
            else {
                return Err(CapFileError::Damaged {
                    path: self.path.clone(),
                    source: BlockError {
                        offset: pos,
                        what: "block cut short (the index does not match the file)",
                    },
                });
            };
            match block {
                PBlock::Interface(i) if learn => self.interfaces.push(i),
                PBlock::Packet(p) => {
                    let Some(iface) = self.interfaces.get(p.interface as usize) else {
                        return Err(CapFileError::Damaged {
                            path: self.path.clone(),
                            source: BlockError {
                                offset: pos,
                                what: "packet of an undescribed interface",
                            },
                        });
                    };
                    f(&p, iface);
                }
                _ => {}
            }
            off += n;
        }
        Ok(())
    }

    /// Reads block `b` and calls `f` with each of its packets. `earlier`: the blocks before it
    /// that describe interfaces it may need (see [`interface_blocks`]).
    ///
    /// # Errors
    ///
    /// When a file cannot be read or written, or holds what it should not (the error says which).
    pub fn read(
        &mut self,
        b: &Block,
        f: &mut dyn FnMut(&PacketRef<'_>, &Interface),
    ) -> Result<(), CapFileError> {
        self.load(b)?;
        self.parse_with(b.offset, f)
    }

    /// Learns the interfaces described in block `b` (its packets are skipped).
    ///
    /// # Errors
    ///
    /// When a file cannot be read or written, or holds what it should not (the error says which).
    pub fn learn(&mut self, b: &Block) -> Result<(), CapFileError> {
        if self.learned.contains(&b.offset) {
            return Ok(());
        }
        self.load(b)?;
        let mut order = self.order;
        let mut off = 0;
        while let Ok(Some((block, n))) = blocks::next(&self.raw[off..], &mut order, 0) {
            if let PBlock::Interface(i) = block {
                self.interfaces.push(i);
            }
            off += n;
        }
        self.learned.push(b.offset);
        Ok(())
    }
}

/// Blocks of `all` before `upto` that introduce interface descriptions beyond what the header
/// has (`header_interfaces`), in order: read them before block `upto` when its packets need them.
#[must_use]
pub fn interface_blocks(all: &[Block], upto: usize, have: usize) -> Vec<usize> {
    let mut prev = u32::try_from(have).unwrap_or(u32::MAX);
    let mut out = Vec::new();
    for (i, b) in all.iter().enumerate().take(upto) {
        if b.kind == BlockKind::Packets && b.interfaces > prev {
            out.push(i);
        }
        prev = prev.max(b.interfaces);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::pcapng::{self, InterfaceDesc, SectionInfo};

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tap-capfile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn udp(i: u16) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
        f.extend_from_slice(&(1000 + i % 7).to_be_bytes());
        f.extend_from_slice(&53u16.to_be_bytes());
        f.extend_from_slice(&[0u8; 40]);
        f
    }

    /// A pcapng file of `n` packets; with `frames`, zstd frames of `per` packets.
    fn sample(n: u16, per: Option<u16>) -> Vec<u8> {
        let mut head = Vec::new();
        pcapng::section_header(&mut head, &SectionInfo::of_this_host());
        pcapng::interface_description(&mut head, &InterfaceDesc::new("a", 1, 2), 9216, "");
        let mut chunks = vec![head];
        let mut cur = Vec::new();
        for i in 0..n {
            if i == n / 2 {
                // An interface first seen mid-file.
                pcapng::interface_description(&mut cur, &InterfaceDesc::new("b", 2, 2), 9216, "");
            }
            let id = u32::from(i >= n / 2 && i % 2 == 0);
            pcapng::enhanced_packet(&mut cur, id, 1_000 + u64::from(i), 100, &udp(i), 1, None);
            if per.is_some_and(|p| (i + 1) % p == 0) {
                chunks.push(std::mem::take(&mut cur));
            }
        }
        chunks.push(cur);
        match per {
            None => chunks.concat(),
            Some(_) => chunks
                .iter()
                .filter(|c| !c.is_empty())
                .flat_map(|c| zstd::bulk::compress(c, 1).unwrap())
                .collect(),
        }
    }

    fn read_all(path: &Path, index: &FileIndex) -> Vec<(u64, u32)> {
        let mut r = BlockReader::open(path, &index.blocks[0]).unwrap();
        let mut out = Vec::new();
        for (i, b) in index.blocks.iter().enumerate().skip(1) {
            if b.packets == 0 {
                continue;
            }
            for j in interface_blocks(&index.blocks, i, r.interfaces.len()) {
                if index.blocks[j].interfaces as usize > r.interfaces.len() {
                    r.learn(&index.blocks[j]).unwrap();
                }
            }
            r.read(b, &mut |p, iface| {
                out.push((blocks::to_ns(p.ts, iface.units), p.interface));
            })
            .unwrap();
        }
        out
    }

    #[test]
    fn plain_and_compressed_files_index_and_read_back() {
        let dir = scratch("rt");
        for (name, per) in [("a.pcapng", None), ("a.pcapng.zst", Some(300))] {
            let path = dir.join(name);
            std::fs::write(&path, sample(2000, per)).unwrap();
            let s = scan(&path).unwrap();
            assert_eq!(s.whole_len, s.file_len, "{name}");
            assert_eq!(s.index.packets(), 2000, "{name}");
            assert_eq!(s.index.flows.len(), 7, "{name}");
            if per.is_some() {
                // A header frame and one block per frame.
                assert_eq!(s.index.blocks.len(), 1 + 2000usize.div_ceil(300), "{name}");
            } else {
                assert!(s.index.blocks.len() > 2, "{name}");
                assert!(s.index.blocks[1..].iter().all(|b| b.len < 70_000));
            }
            let got = read_all(&path, &s.index);
            assert_eq!(got.len(), 2000, "{name}");
            assert!(
                got.iter()
                    .enumerate()
                    .all(|(i, &(ts, _))| ts == 1_000 + i as u64)
            );
            assert_eq!(got.iter().filter(|g| g.1 == 1).count(), 500, "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_end_and_junk() {
        let dir = scratch("torn");
        let full = sample(500, None);
        let path = dir.join("t.pcapng");
        std::fs::write(&path, &full[..full.len() - 7]).unwrap();
        let s = scan(&path).unwrap();
        assert_eq!(s.index.packets(), 499);
        assert!(s.whole_len < s.file_len);
        let z = sample(500, Some(100));
        let zpath = dir.join("t.pcapng.zst");
        std::fs::write(&zpath, &z[..z.len() - 3]).unwrap();
        let s = scan(&zpath).unwrap();
        assert_eq!(s.index.packets(), 400);
        for junk in [&b""[..], b"hello", &[0x0a, 0x0d, 0x0d, 0x0a, 1, 2, 3][..]] {
            std::fs::write(&path, junk).unwrap();
            assert!(scan(&path).is_err());
            std::fs::write(&zpath, junk).unwrap();
            assert!(scan(&zpath).is_err());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
