//! The index of one capture file, built while it is written (or read back by `tap store
//! reindex`): its flows, each with its counters and the blocks holding its packets, and its
//! blocks, each with its place in the file, time span and packets.
//!
//! Blocks. A query reads whole blocks, so they are the index's granularity: every zstd frame
//! of a compressed file (one writer buffer, up to 1 MiB of records), and for an uncompressed
//! file runs of whole records of about [`BLOCK`] bytes, so that a flow of a few packets among
//! heavy traffic costs a few small reads.
//!
//! Cost on the writer's thread, per packet: the key parse, one hash lookup (none when the
//! packet belongs to the flow of the packet before), and a 24-byte entry staged until its write
//! reaches the file; counters are applied per write, so packets lost to a full disk are never
//! counted. The Community IDs and the Parquet files are made on another thread.

use rustc_hash::FxHashMap;

use super::{
    flow::{self, FlowKey, Parsed},
    sigs::{self, Sig, SigTable},
};
use crate::sink::writer::{Chunk, ChunkKind};

/// Bytes of records per block of an uncompressed file (a block ends at the first record
/// boundary past this).
pub const BLOCK: usize = 64 << 10;

/// Flows one file's index holds before the writer is asked to start a new file: bounds the
/// memory of the index (about 150 bytes per flow) whatever the traffic.
pub const MAX_FLOWS: usize = 2_000_000;
/// (flow, block) pairs likewise (12 bytes each).
pub const MAX_PAIRS: usize = 16_000_000;

/// What a block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    Header,
    Packets,
    Trailer,
}

impl BlockKind {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Header => "header",
            Self::Packets => "packets",
            Self::Trailer => "trailer",
        }
    }

    #[must_use]
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "header" => Some(Self::Header),
            "packets" => Some(Self::Packets),
            "trailer" => Some(Self::Trailer),
            _ => None,
        }
    }
}

/// One block of a capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub kind: BlockKind,
    /// Where it starts in the file, bytes.
    pub offset: u64,
    /// Bytes it takes in the file.
    pub len: u64,
    /// Bytes of pcapng blocks it holds (decompressed).
    pub raw_len: u64,
    pub packets: u64,
    /// Time span of its packets, ns since the epoch (0 without packets).
    pub first_ns: u64,
    pub last_ns: u64,
    /// pcapng interfaces described by the end of it (in the file's header or in blocks up to
    /// and including this one).
    pub interfaces: u32,
}

/// One flow of a capture file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub key: FlowKey,
    /// The file's first packet of the flow went from `key.a` to `key.b`.
    pub first_forward: bool,
    /// ns since the epoch.
    pub first_ns: u64,
    pub last_ns: u64,
    /// Packets and wire bytes (original lengths) from `a` to `b` (`[0]`) and back (`[1]`).
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// Ordinals (into the file's blocks) of the blocks holding its packets, ascending.
    pub blocks: Vec<u32>,
}

/// A file's index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileIndex {
    pub flows: Vec<Flow>,
    pub blocks: Vec<Block>,
}

impl FileIndex {
    /// Packets in the file.
    #[must_use]
    pub fn packets(&self) -> u64 {
        self.blocks.iter().map(|b| b.packets).sum()
    }

    /// Time span of the file's packets (0, 0 without packets).
    #[must_use]
    pub fn span(&self) -> (u64, u64) {
        let with = || self.blocks.iter().filter(|b| b.packets > 0);
        (
            with().map(|b| b.first_ns).min().unwrap_or(0),
            with().map(|b| b.last_ns).max().unwrap_or(0),
        )
    }
}

/// Counters of a flow while its file is written: one cache line, apart from its key, since
/// they are touched for every packet.
#[derive(Debug, Clone)]
#[repr(align(64))]
struct Live {
    first_ns: u64,
    last_ns: u64,
    packets: [u64; 2],
    bytes: [u64; 2],
    /// The last block a packet of it went into (`u32::MAX`: none yet).
    last_block: u32,
}

/// Packets whose signature table lookup waits until its line has been asked for.
const LAG: usize = 16;

/// A packet waiting for its flow (see [`LAG`]).
#[derive(Debug, Clone, Copy, Default)]
struct Pending {
    sig: Sig,
    hash: u64,
    /// Its entry in `staged`.
    staged: u32,
    /// Same signature as the packet before it: same flow.
    again: bool,
}

/// A packet told but not yet written.
#[derive(Debug, Clone, Copy)]
struct Staged {
    flow: u32,
    forward: bool,
    /// Original length in bytes.
    len: u32,
    ts_ns: u64,
    /// Offset of its record in the chunk's records.
    at: u32,
    /// Interfaces described by the time of this packet.
    interfaces: u32,
}

/// Builds a [`FileIndex`] from what the writer tells (see the module notes).
#[derive(Debug, Default)]
pub struct Indexer {
    map: FxHashMap<FlowKey, u32>,
    /// Key and first direction of each flow, and its counters.
    keys: Vec<(FlowKey, bool)>,
    flows: Vec<Live>,
    /// (flow, block ordinal), in block order.
    pairs: Vec<(u32, u32)>,
    blocks: Vec<Block>,
    staged: Vec<Staged>,
    /// Flow and direction by signature: the key is parsed once per flow and direction.
    sigs: SigTable,
    /// Packets waiting for their lookup, oldest at `head` (a ring of `2 * LAG`).
    pending: [Pending; 2 * LAG],
    head: usize,
    waiting: usize,
    /// The last packet's signature, and the flow the last resolved signature gave.
    last_sig: Option<Sig>,
    last_hit: (u32, bool),
    /// Interfaces described so far (ids seen + 1, at least).
    interfaces: u32,
    /// Interface descriptions met so far (when scanning a file: [`Indexer::described`]).
    described: u32,
    /// Whether the file is compressed (a block per chunk) or not (blocks of about [`BLOCK`]).
    compressed: bool,
}

impl Indexer {
    #[must_use]
    pub fn new(compressed: bool) -> Self {
        Self {
            compressed,
            staged: Vec::with_capacity(16 << 10),
            ..Self::default()
        }
    }

    /// Forgets everything: a new file starts.
    pub fn reset(&mut self) {
        self.map.clear();
        self.keys.clear();
        self.flows.clear();
        self.pairs.clear();
        self.blocks.clear();
        self.staged.clear();
        self.sigs.clear();
        self.head = 0;
        self.waiting = 0;
        self.last_sig = None;
        self.interfaces = 0;
        self.described = 0;
    }

    /// `n` interfaces are described by now (a file being scanned, where a description may come
    /// well before the first packet that uses it). Attributed to the next packet's block.
    pub fn described(&mut self, n: u32) {
        self.described = self.described.max(n);
    }

    /// True when the index reached its memory bounds ([`MAX_FLOWS`], [`MAX_PAIRS`]).
    #[must_use]
    pub fn full(&self) -> bool {
        self.flows.len() >= MAX_FLOWS
            || self.pairs.len() >= MAX_PAIRS
            || self.sigs.len() >= 2 * MAX_FLOWS
    }

    /// A packet of the chunk being filled: `frame` its bytes, `at` where its record starts in
    /// the chunk's records.
    #[inline]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "flows stop at MAX_FLOWS, offsets at the writer's buffer size"
    )]
    pub fn packet(
        &mut self,
        frame: &[u8],
        tunnel: (u8, u32),
        ts_ns: u64,
        orig_len: u32,
        interface: u32,
        at: usize,
    ) {
        let (flow, forward) = if let Some(sig) = sigs::signature(frame, tunnel) {
            let again = self.last_sig.as_ref().is_some_and(|l| sigs::same(l, &sig));
            let hash = if again { 0 } else { sigs::hash(&sig) };
            if !again {
                self.sigs.prefetch(hash);
                self.last_sig = Some(sig);
            }
            if self.waiting == LAG {
                self.resolve_one();
            }
            let slot = (self.head + self.waiting) % (2 * LAG);
            self.pending[slot] = Pending {
                sig,
                hash,
                staged: self.staged.len() as u32,
                again,
            };
            self.waiting += 1;
            (u32::MAX, false)
        } else {
            // Flows are numbered in the order their first packets came.
            self.resolve();
            self.lookup(flow::parse(frame, tunnel.0, tunnel.1))
        };
        self.staged.push(Staged {
            flow,
            forward,
            len: orig_len,
            ts_ns,
            at: at as u32,
            interfaces: (interface.saturating_add(1)).max(self.described),
        });
    }

    /// The oldest waiting packet gets its flow.
    fn resolve_one(&mut self) {
        let p = self.pending[self.head];
        self.head = (self.head + 1) % (2 * LAG);
        self.waiting -= 1;
        let hit = if p.again {
            self.last_hit
        } else if let Some(hit) = self.sigs.get(&p.sig, p.hash) {
            hit
        } else {
            let hit = self.lookup(sigs::key_of(&p.sig));
            self.sigs.insert(&p.sig, p.hash, hit);
            hit
        };
        self.last_hit = hit;
        if let Some(s) = self.staged.get_mut(p.staged as usize) {
            s.flow = hit.0;
            s.forward = hit.1;
        }
    }

    /// Every waiting packet gets its flow.
    fn resolve(&mut self) {
        while self.waiting > 0 {
            self.resolve_one();
        }
    }

    /// The flow of a packet by its key, and its direction.
    #[expect(clippy::cast_possible_truncation, reason = "flows stop at MAX_FLOWS")]
    fn lookup(&mut self, parsed: Parsed) -> (u32, bool) {
        let next = self.flows.len() as u32;
        let i = *self.map.entry(parsed.key).or_insert(next);
        if i == next {
            self.keys.push((parsed.key, parsed.forward));
            self.flows.push(Live {
                first_ns: u64::MAX,
                last_ns: 0,
                packets: [0; 2],
                bytes: [0; 2],
                last_block: u32::MAX,
            });
        }
        (i, parsed.forward)
    }

    /// A chunk reached the file: its packets (the first `chunk.packets` staged) are counted
    /// and their blocks recorded.
    pub fn chunk(&mut self, chunk: &Chunk) {
        self.resolve();
        let kept =
            usize::try_from(chunk.packets).map_or(self.staged.len(), |n| n.min(self.staged.len()));
        let staged = std::mem::take(&mut self.staged);
        if chunk.len > 0 {
            match chunk.kind {
                ChunkKind::Header | ChunkKind::Trailer => {
                    self.interfaces = self.interfaces.max(self.described);
                    self.blocks.push(Block {
                        kind: if chunk.kind == ChunkKind::Header {
                            BlockKind::Header
                        } else {
                            BlockKind::Trailer
                        },
                        offset: chunk.offset,
                        len: chunk.len,
                        raw_len: chunk.raw_len,
                        packets: 0,
                        first_ns: 0,
                        last_ns: 0,
                        interfaces: self.interfaces,
                    });
                }
                ChunkKind::Packets => self.packet_blocks(chunk, &staged[..kept]),
            }
        }
        self.staged = staged;
        self.staged.clear();
    }

    #[expect(
        clippy::cast_possible_truncation,
        reason = "blocks and offsets of one file and one buffer fit"
    )]
    #[expect(
        clippy::many_single_char_names,
        reason = "indices and the staged entry"
    )]
    fn packet_blocks(&mut self, chunk: &Chunk, staged: &[Staged]) {
        // Block starts, as offsets in the chunk's records.
        let mut start = 0usize;
        let mut i = 0;
        while i < staged.len() {
            let ordinal = self.blocks.len() as u32;
            let mut block = Block {
                kind: BlockKind::Packets,
                offset: chunk.offset + start as u64,
                len: 0,
                raw_len: 0,
                packets: 0,
                first_ns: u64::MAX,
                last_ns: 0,
                interfaces: self.interfaces,
            };
            let mut j = i;
            while j < staged.len() {
                let s = staged[j];
                if let Some(ahead) = staged.get(j + LAG) {
                    sigs::prefetch(self.flows.as_ptr().wrapping_add(ahead.flow as usize));
                }
                if !self.compressed && j > i && s.at as usize - start >= BLOCK {
                    break;
                }
                let f = &mut self.flows[s.flow as usize];
                let d = usize::from(!s.forward);
                f.packets[d] += 1;
                f.bytes[d] += u64::from(s.len);
                f.first_ns = f.first_ns.min(s.ts_ns);
                f.last_ns = f.last_ns.max(s.ts_ns);
                if f.last_block != ordinal {
                    f.last_block = ordinal;
                    self.pairs.push((s.flow, ordinal));
                }
                block.packets += 1;
                block.first_ns = block.first_ns.min(s.ts_ns);
                block.last_ns = block.last_ns.max(s.ts_ns);
                self.interfaces = self.interfaces.max(s.interfaces);
                j += 1;
            }
            block.interfaces = self.interfaces;
            let end = if j < staged.len() {
                staged[j].at as usize
            } else {
                chunk.raw_len as usize
            };
            if self.compressed {
                block.len = chunk.len;
                block.raw_len = chunk.raw_len;
            } else {
                block.len = (end - start) as u64;
                block.raw_len = block.len;
            }
            self.blocks.push(block);
            start = end;
            i = j;
        }
    }

    /// The file's index; the indexer is reset for the next file.
    pub fn take(&mut self) -> FileIndex {
        self.resolve();
        // Each flow's blocks in one allocation of the right size.
        let mut counts = vec![0usize; self.flows.len()];
        for &(f, _) in &self.pairs {
            counts[f as usize] += 1;
        }
        let mut lists: Vec<Vec<u32>> = counts.iter().map(|&n| Vec::with_capacity(n)).collect();
        for &(f, b) in &self.pairs {
            lists[f as usize].push(b);
        }
        let flows = self
            .flows
            .drain(..)
            .zip(self.keys.drain(..))
            .zip(lists)
            .filter(|((l, _), _)| l.packets[0] + l.packets[1] > 0)
            .map(|((l, (key, first_forward)), blocks)| Flow {
                key,
                first_forward,
                first_ns: l.first_ns,
                last_ns: l.last_ns,
                packets: l.packets,
                bytes: l.bytes,
                blocks,
            })
            .collect();
        let blocks = std::mem::take(&mut self.blocks);
        self.reset();
        FileIndex { flows, blocks }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(sp: u16, dp: u16) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
        f.extend_from_slice(&sp.to_be_bytes());
        f.extend_from_slice(&dp.to_be_bytes());
        f.extend_from_slice(&[0, 8, 0, 0]);
        f
    }

    fn chunk(offset: u64, raw_len: u64, packets: u64) -> Chunk {
        Chunk {
            kind: ChunkKind::Packets,
            offset,
            len: raw_len,
            raw_len,
            packets,
        }
    }

    #[test]
    fn blocks_and_flows_of_an_uncompressed_file() {
        let mut ix = Indexer::new(false);
        ix.chunk(&Chunk {
            kind: ChunkKind::Header,
            offset: 0,
            len: 100,
            raw_len: 100,
            packets: 0,
        });
        // 3 000 records of 100 bytes: blocks of 64 KiB (656 records) and a rest.
        for i in 0..3000u64 {
            let f = if i % 1000 == 7 {
                udp(9, 9)
            } else {
                udp(1000, 53)
            };
            ix.packet(
                &f,
                (0, 0),
                1_000 + i,
                60,
                0,
                usize::try_from(i * 100).unwrap(),
            );
        }
        ix.chunk(&chunk(100, 300_000, 3000));
        let index = ix.take();
        let sizes: Vec<u64> = index.blocks.iter().map(|b| b.len).collect();
        assert_eq!(sizes, [100, 65_600, 65_600, 65_600, 65_600, 37_600]);
        assert_eq!(index.blocks[1].offset, 100);
        assert_eq!(index.blocks[2].offset, 100 + 65_600);
        assert_eq!(index.packets(), 3000);
        assert_eq!(index.flows.len(), 2);
        let big = &index.flows[0];
        assert_eq!(big.packets[0] + big.packets[1], 2997);
        assert_eq!(big.blocks, [1, 2, 3, 4, 5]);
        let small = &index.flows[1];
        assert_eq!(small.packets, [3, 0]);
        assert_eq!(small.blocks, [1, 2, 4]);
        assert_eq!((small.first_ns, small.last_ns), (1_007, 3_007));
    }

    #[test]
    fn a_partial_write_counts_only_what_reached_the_file() {
        let mut ix = Indexer::new(true);
        for i in 0..10u64 {
            ix.packet(
                &udp(1, 2),
                (0, 0),
                i,
                60,
                0,
                usize::try_from(i * 100).unwrap(),
            );
        }
        // Compressed: the frame did not make it at all.
        ix.chunk(&Chunk {
            kind: ChunkKind::Packets,
            offset: 50,
            len: 0,
            raw_len: 1000,
            packets: 0,
        });
        ix.packet(&udp(1, 2), (0, 0), 99, 60, 0, 0);
        ix.chunk(&Chunk {
            kind: ChunkKind::Packets,
            offset: 50,
            len: 40,
            raw_len: 100,
            packets: 1,
        });
        let index = ix.take();
        assert_eq!(index.flows.len(), 1);
        assert_eq!(index.flows[0].packets, [1, 0]);
        assert_eq!(index.blocks.len(), 1);
        assert_eq!((index.blocks[0].offset, index.blocks[0].len), (50, 40));
    }
}
