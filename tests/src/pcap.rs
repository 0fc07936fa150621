//! A small pcap reader for assertions (the oracles are tcpdump and tshark; this reads the bytes
//! back so tests can compare packet data exactly).

/// One packet of a pcap file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub ts_sec: u32,
    /// Nanoseconds (ns-resolution files) or microseconds (µs files).
    pub ts_frac: u32,
    pub orig_len: u32,
    pub data: Vec<u8>,
}

/// A parsed pcap file.
#[derive(Debug, Clone)]
pub struct Pcap {
    pub nanos: bool,
    pub snaplen: u32,
    pub linktype: u32,
    pub records: Vec<Record>,
}

impl Pcap {
    /// Parses a little- or big-endian, µs or ns pcap file; panics on anything malformed.
    pub fn parse(bytes: &[u8]) -> Self {
        assert!(bytes.len() >= 24, "pcap shorter than its global header ({} bytes)", bytes.len());
        let magic = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
        let (le, nanos) = match magic {
            0xa1b2c3d4 => (true, false),
            0xa1b23c4d => (true, true),
            0xd4c3b2a1 => (false, false),
            0x4d3cb2a1 => (false, true),
            m => panic!("not a pcap file (magic {m:#x})"),
        };
        let u32_at = |b: &[u8], o: usize| {
            let a: [u8; 4] = b[o..o + 4].try_into().unwrap();
            if le { u32::from_le_bytes(a) } else { u32::from_be_bytes(a) }
        };
        let snaplen = u32_at(bytes, 16);
        let linktype = u32_at(bytes, 20);
        let mut records = Vec::new();
        let mut off = 24;
        while off < bytes.len() {
            assert!(off + 16 <= bytes.len(), "truncated record header at {off}");
            let incl = u32_at(bytes, off + 8) as usize;
            let rec = Record {
                ts_sec: u32_at(bytes, off),
                ts_frac: u32_at(bytes, off + 4),
                orig_len: u32_at(bytes, off + 12),
                data: bytes[off + 16..off + 16 + incl].to_vec(),
            };
            off += 16 + incl;
            records.push(rec);
        }
        Self { nanos, snaplen, linktype, records }
    }

    pub fn read(path: &std::path::Path) -> Self {
        Self::parse(&std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())))
    }

    /// Timestamp of record `i` in ns since the epoch.
    pub fn ts_ns(&self, i: usize) -> u128 {
        let r = &self.records[i];
        u128::from(r.ts_sec) * 1_000_000_000 + u128::from(r.ts_frac) * if self.nanos { 1 } else { 1000 }
    }
}
