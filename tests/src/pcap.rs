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

/// What an Ethernet frame carries, as far as the tests need to tell traffic apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Icmp4,
    Icmp6,
    Udp4,
    Udp6,
    Tcp4,
    Tcp6,
    Arp,
    Other,
}

impl Record {
    /// The EtherType and the IP protocol of the frame (no VLAN tags or IPv6 extension headers:
    /// the tests' traffic has none).
    pub fn kind(&self) -> Kind {
        let d = &self.data;
        let at = |i: usize| d.get(i).copied();
        match (at(12), at(13)) {
            (Some(0x08), Some(0x00)) => match at(23) {
                Some(1) => Kind::Icmp4,
                Some(6) => Kind::Tcp4,
                Some(17) => Kind::Udp4,
                _ => Kind::Other,
            },
            (Some(0x86), Some(0xdd)) => match at(20) {
                Some(58) => Kind::Icmp6,
                Some(6) => Kind::Tcp6,
                Some(17) => Kind::Udp6,
                _ => Kind::Other,
            },
            (Some(0x08), Some(0x06)) => Kind::Arp,
            _ => Kind::Other,
        }
    }

    /// IPv4 source and destination of an IPv4 frame.
    pub fn ipv4_addrs(&self) -> Option<(std::net::Ipv4Addr, std::net::Ipv4Addr)> {
        let addr = |b: &[u8]| std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]);
        (self.data.get(12..14) == Some(&[0x08, 0x00][..]) && self.data.len() >= 34)
            .then(|| (addr(&self.data[26..30]), addr(&self.data[30..34])))
    }
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
        let pcap = Self::parse_prefix(bytes);
        let used = 24
            + pcap
                .records
                .iter()
                .map(|r| 16 + r.data.len())
                .sum::<usize>();
        assert_eq!(
            used,
            bytes.len(),
            "truncated record at byte {used} of {}",
            bytes.len()
        );
        pcap
    }

    /// Parses the complete records of a file still being written: a record cut short at the end
    /// is left out. Panics unless the global header is there and valid.
    pub fn parse_prefix(bytes: &[u8]) -> Self {
        assert!(
            bytes.len() >= 24,
            "pcap shorter than its global header ({} bytes)",
            bytes.len()
        );
        let magic = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
        let (le, nanos) = match magic {
            0xa1b2_c3d4 => (true, false),
            0xa1b2_3c4d => (true, true),
            0xd4c3_b2a1 => (false, false),
            0x4d3c_b2a1 => (false, true),
            m => panic!("not a pcap file (magic {m:#x})"),
        };
        let u32_at = |b: &[u8], o: usize| {
            let a: [u8; 4] = b[o..o + 4].try_into().unwrap();
            if le {
                u32::from_le_bytes(a)
            } else {
                u32::from_be_bytes(a)
            }
        };
        let snaplen = u32_at(bytes, 16);
        let linktype = u32_at(bytes, 20);
        let mut records = Vec::new();
        let mut off = 24;
        while off + 16 <= bytes.len() {
            let incl = u32_at(bytes, off + 8) as usize;
            if off + 16 + incl > bytes.len() {
                break;
            }
            let rec = Record {
                ts_sec: u32_at(bytes, off),
                ts_frac: u32_at(bytes, off + 4),
                orig_len: u32_at(bytes, off + 12),
                data: bytes[off + 16..off + 16 + incl].to_vec(),
            };
            off += 16 + incl;
            records.push(rec);
        }
        Self {
            nanos,
            snaplen,
            linktype,
            records,
        }
    }

    pub fn read(path: &std::path::Path) -> Self {
        Self::parse(
            &std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())),
        )
    }

    /// Writes the records as a little-endian pcap file (e.g. several captures merged into one,
    /// for the readers to decode together).
    pub fn write(&self, path: &std::path::Path) {
        let magic: u32 = if self.nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let mut out = Vec::new();
        for v in [
            magic.to_le_bytes(),
            [2, 0, 4, 0],
            [0; 4],
            [0; 4],
            self.snaplen.to_le_bytes(),
            self.linktype.to_le_bytes(),
        ] {
            out.extend_from_slice(&v);
        }
        for r in &self.records {
            for v in [r.ts_sec, r.ts_frac, r.data.len() as u32, r.orig_len] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&r.data);
        }
        std::fs::write(path, out).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Timestamp of record `i` in ns since the epoch.
    pub fn ts_ns(&self, i: usize) -> u128 {
        let r = &self.records[i];
        u128::from(r.ts_sec) * 1_000_000_000
            + u128::from(r.ts_frac) * if self.nanos { 1 } else { 1000 }
    }

    /// Number of records of each kind.
    pub fn count(&self, kind: Kind) -> usize {
        self.records.iter().filter(|r| r.kind() == kind).count()
    }
}
