//! Reads capture files: pcap (µs or ns, either byte order) and pcapng (enhanced and simple
//! packet blocks, per-interface `if_tsresol`). Used by `tap replay`.
//!
//! Every length is checked before it is trusted; a damaged file is an error naming the offset,
//! never a panic.

use std::io::{self, Read};

/// One packet read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePacket {
    /// ns since the Unix epoch.
    pub ts_ns: u64,
    /// Length on the wire, in bytes.
    pub orig_len: u32,
    /// Link type of the interface it was captured on.
    pub linktype: u32,
    /// Captured bytes.
    pub data: Vec<u8>,
    /// pcapng interface id (0 in pcap): see [`CaptureReader::interface_name`].
    pub interface: u32,
    /// pcapng `epb_flags` (0 when absent, and in pcap); the two low bits are the direction
    /// (1 inbound, 2 outbound).
    pub flags: u32,
}

/// Errors reading a capture file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading failed: {0}")]
    Io(#[from] io::Error),
    #[error("not a pcap or pcapng file (magic {0:#010x})")]
    Magic(u32),
    #[error("damaged file at byte {offset}: {what}")]
    Damaged { offset: u64, what: &'static str },
}

/// Largest record we accept, in bytes (pcapng allows more; nothing real is that big).
const MAX_RECORD: usize = 256 << 20;

enum Format {
    Pcap {
        big: bool,
        nanos: bool,
        linktype: u32,
    },
    PcapNg {
        big: bool,
        interfaces: Vec<(u32, u64)>,
    },
}

/// A pcap or pcapng reader over any [`Read`].
pub struct CaptureReader<R: Read> {
    input: R,
    format: Format,
    offset: u64,
    /// pcapng `if_name` of each interface of the current section.
    names: Vec<Option<String>>,
}

fn u32_of(b: &[u8], big: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

fn u16_of(b: &[u8], big: bool) -> u16 {
    let a = [b[0], b[1]];
    if big {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

impl<R: Read> CaptureReader<R> {
    pub fn new(mut input: R) -> Result<Self, ReadError> {
        let mut magic = [0u8; 4];
        input.read_exact(&mut magic)?;
        let le = u32::from_le_bytes(magic);
        let mut reader = Self {
            input,
            format: Format::Pcap {
                big: false,
                nanos: false,
                linktype: 1,
            },
            offset: 4,
            names: Vec::new(),
        };
        match le {
            0xa1b2_c3d4 | 0xa1b2_3c4d | 0xd4c3_b2a1 | 0x4d3c_b2a1 => {
                let big = matches!(le, 0xd4c3_b2a1 | 0x4d3c_b2a1);
                let nanos = matches!(le, 0xa1b2_3c4d | 0x4d3c_b2a1);
                let mut rest = [0u8; 20];
                reader.read_exact(&mut rest)?;
                let linktype = u32_of(&rest[16..20], big) & 0x0fff_ffff;
                reader.format = Format::Pcap {
                    big,
                    nanos,
                    linktype,
                };
            }
            0x0a0d_0d0a => {
                reader.format = Format::PcapNg {
                    big: false,
                    interfaces: Vec::new(),
                };
                reader.section_header()?;
            }
            other => return Err(ReadError::Magic(other)),
        }
        Ok(reader)
    }

    /// The `if_name` of pcapng interface `id` of the current section, if it has one.
    pub fn interface_name(&self, id: u32) -> Option<&str> {
        self.names.get(id as usize)?.as_deref()
    }

    /// Interfaces described so far in the current section (1 for pcap).
    pub fn interface_count(&self) -> usize {
        match &self.format {
            Format::Pcap { .. } => 1,
            Format::PcapNg { interfaces, .. } => interfaces.len(),
        }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ReadError> {
        self.input.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                ReadError::Damaged {
                    offset: self.offset,
                    what: "truncated",
                }
            } else {
                ReadError::Io(e)
            }
        })?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// Reads exactly `len` bytes. The buffer grows with what the file holds, not with what a
    /// length field claims: a 100-byte file that announces a 256 MiB record costs 100 bytes.
    fn read_vec(&mut self, len: usize) -> Result<Vec<u8>, ReadError> {
        let mut buf = Vec::with_capacity(len.min(64 << 10));
        (&mut self.input)
            .take(len as u64)
            .read_to_end(&mut buf)
            .map_err(ReadError::Io)?;
        if buf.len() < len {
            return Err(ReadError::Damaged {
                offset: self.offset + buf.len() as u64,
                what: "truncated",
            });
        }
        self.offset += len as u64;
        Ok(buf)
    }

    /// Reads exactly `buf.len()` bytes, or returns false at a clean end of file.
    fn read_or_eof(&mut self, buf: &mut [u8]) -> Result<bool, ReadError> {
        let mut got = 0;
        while got < buf.len() {
            match self.input.read(&mut buf[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => {
                    return Err(ReadError::Damaged {
                        offset: self.offset,
                        what: "truncated record",
                    });
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.offset += buf.len() as u64;
        Ok(true)
    }

    /// Reads a section header block whose type (4 bytes) was already consumed.
    fn section_header(&mut self) -> Result<(), ReadError> {
        let start = self.offset - 4;
        let mut head = [0u8; 8];
        self.read_exact(&mut head)?;
        let big = match u32::from_le_bytes([head[4], head[5], head[6], head[7]]) {
            0x1a2b_3c4d => false,
            0x4d3c_2b1a => true,
            _ => {
                return Err(ReadError::Damaged {
                    offset: start,
                    what: "bad byte-order magic",
                });
            }
        };
        let total = u32_of(&head[0..4], big) as usize;
        if !(28..=MAX_RECORD).contains(&total) || !total.is_multiple_of(4) {
            return Err(ReadError::Damaged {
                offset: start,
                what: "bad section header length",
            });
        }
        let rest = self.read_vec(total - 12)?;
        if u32_of(&rest[rest.len() - 4..], big) as usize != total {
            return Err(ReadError::Damaged {
                offset: start,
                what: "section header's trailing length differs from its leading one",
            });
        }
        self.format = Format::PcapNg {
            big,
            interfaces: Vec::new(),
        };
        self.names.clear();
        Ok(())
    }

    /// The next packet, or `None` at the end.
    pub fn next_packet(&mut self) -> Result<Option<FilePacket>, ReadError> {
        match self.format {
            Format::Pcap {
                big,
                nanos,
                linktype,
            } => {
                let mut h = [0u8; 16];
                let at = self.offset;
                if !self.read_or_eof(&mut h)? {
                    return Ok(None);
                }
                let (sec, frac) = (
                    u64::from(u32_of(&h[0..4], big)),
                    u64::from(u32_of(&h[4..8], big)),
                );
                let incl = u32_of(&h[8..12], big) as usize;
                let orig_len = u32_of(&h[12..16], big);
                if incl > MAX_RECORD {
                    return Err(ReadError::Damaged {
                        offset: at,
                        what: "record longer than 256 MiB",
                    });
                }
                let data = self.read_vec(incl)?;
                let ts_ns = sec * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
                Ok(Some(FilePacket {
                    ts_ns,
                    orig_len: orig_len.max(incl as u32),
                    linktype,
                    data,
                    interface: 0,
                    flags: 0,
                }))
            }
            Format::PcapNg { .. } => self.next_ng(),
        }
    }

    fn next_ng(&mut self) -> Result<Option<FilePacket>, ReadError> {
        loop {
            let at = self.offset;
            let mut ty = [0u8; 4];
            if !self.read_or_eof(&mut ty)? {
                return Ok(None);
            }
            if u32::from_le_bytes(ty) == 0x0a0d_0d0a {
                self.section_header()?;
                continue;
            }
            let Format::PcapNg { big, .. } = self.format else {
                unreachable!("pcapng state")
            };
            let block_type = u32_of(&ty, big);
            let mut len = [0u8; 4];
            self.read_exact(&mut len)?;
            let total = u32_of(&len, big) as usize;
            if !(12..=MAX_RECORD).contains(&total) || !total.is_multiple_of(4) {
                return Err(ReadError::Damaged {
                    offset: at,
                    what: "bad block length",
                });
            }
            let body = self.read_vec(total - 12)?;
            let mut trailer = [0u8; 4];
            self.read_exact(&mut trailer)?;
            if u32_of(&trailer, big) as usize != total {
                return Err(ReadError::Damaged {
                    offset: at,
                    what: "block's trailing length differs from its leading one",
                });
            }
            let Format::PcapNg {
                big,
                ref mut interfaces,
            } = self.format
            else {
                unreachable!("pcapng state")
            };
            match block_type {
                // Interface description: link type, then options (if_tsresol = 9).
                1 => {
                    if body.len() < 8 {
                        return Err(ReadError::Damaged {
                            offset: at,
                            what: "short interface block",
                        });
                    }
                    let linktype = u32::from(u16_of(&body[0..2], big));
                    let mut units_per_sec = 1_000_000u64;
                    let mut name = None;
                    let mut opts = &body[8..];
                    while opts.len() >= 4 {
                        let code = u16_of(&opts[0..2], big);
                        let olen = usize::from(u16_of(&opts[2..4], big));
                        let padded = (olen + 3) & !3;
                        if opts.len() < 4 + padded {
                            break;
                        }
                        if code == 9 && olen >= 1 {
                            let v = opts[4];
                            let exp = u32::from(v & 0x7f);
                            units_per_sec = if v & 0x80 != 0 {
                                2u64.checked_pow(exp)
                            } else {
                                10u64.checked_pow(exp)
                            }
                            .ok_or(ReadError::Damaged {
                                offset: at,
                                what: "bad if_tsresol",
                            })?;
                        }
                        if code == 2 {
                            name = Some(String::from_utf8_lossy(&opts[4..4 + olen]).into_owned());
                        }
                        if code == 0 {
                            break;
                        }
                        opts = &opts[4 + padded..];
                    }
                    interfaces.push((linktype, units_per_sec.max(1)));
                    self.names.push(name);
                }
                // Enhanced packet.
                6 => {
                    if body.len() < 20 {
                        return Err(ReadError::Damaged {
                            offset: at,
                            what: "short packet block",
                        });
                    }
                    let iface = u32_of(&body[0..4], big) as usize;
                    let &(linktype, units) = interfaces.get(iface).ok_or(ReadError::Damaged {
                        offset: at,
                        what: "unknown interface",
                    })?;
                    let ts = (u64::from(u32_of(&body[4..8], big)) << 32)
                        | u64::from(u32_of(&body[8..12], big));
                    let cap = u32_of(&body[12..16], big) as usize;
                    let orig_len = u32_of(&body[16..20], big);
                    if cap > body.len() - 20 {
                        return Err(ReadError::Damaged {
                            offset: at,
                            what: "packet longer than its block",
                        });
                    }
                    let ts_ns = (u128::from(ts) * 1_000_000_000 / u128::from(units)) as u64;
                    let data = body[20..20 + cap].to_vec();
                    let flags = epb_flags(&body[20 + ((cap + 3) & !3).min(body.len() - 20)..], big);
                    return Ok(Some(FilePacket {
                        ts_ns,
                        orig_len: orig_len.max(cap as u32),
                        linktype,
                        data,
                        interface: iface as u32,
                        flags,
                    }));
                }
                // Simple packet: interface 0, no timestamp.
                3 => {
                    if body.len() < 4 {
                        return Err(ReadError::Damaged {
                            offset: at,
                            what: "short simple packet block",
                        });
                    }
                    let &(linktype, _) = interfaces.first().ok_or(ReadError::Damaged {
                        offset: at,
                        what: "no interface",
                    })?;
                    let orig_len = u32_of(&body[0..4], big);
                    let cap = (orig_len as usize).min(body.len() - 4);
                    return Ok(Some(FilePacket {
                        ts_ns: 0,
                        orig_len,
                        linktype,
                        data: body[4..4 + cap].to_vec(),
                        interface: 0,
                        flags: 0,
                    }));
                }
                _ => {}
            }
        }
    }
}

/// The `epb_flags` option (code 2) among an enhanced packet block's options, 0 if absent.
fn epb_flags(mut opts: &[u8], big: bool) -> u32 {
    while opts.len() >= 4 {
        let code = u16_of(&opts[0..2], big);
        let olen = usize::from(u16_of(&opts[2..4], big));
        if code == 0 || opts.len() < 4 + olen {
            break;
        }
        if code == 2 && olen == 4 {
            return u32_of(&opts[4..8], big);
        }
        opts = &opts[(4 + ((olen + 3) & !3)).min(opts.len())..];
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::pcap::PcapWriter;

    #[test]
    fn reads_back_what_the_pcap_writer_wrote() {
        let mut w = PcapWriter::new(Vec::new(), 100).unwrap();
        w.write_packet(1_700_000_000_000_000_001, 200, &[1, 2, 3])
            .unwrap();
        w.write_packet(1_700_000_001_000_000_000, 4, &[4, 5, 6, 7])
            .unwrap();
        let bytes = w.into_inner().unwrap();
        let mut r = CaptureReader::new(&bytes[..]).unwrap();
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(
            (p.ts_ns, p.orig_len, p.data.as_slice()),
            (1_700_000_000_000_000_001, 200, &[1, 2, 3][..])
        );
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(p.data, [4, 5, 6, 7]);
        assert!(r.next_packet().unwrap().is_none());
    }

    #[test]
    fn microsecond_big_endian_pcap() {
        let mut f = vec![
            0xa1, 0xb2, 0xc3, 0xd4, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0,
            1,
        ];
        f.extend_from_slice(&[0, 0, 0, 10, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0, 0, 2, 0xaa, 0xbb]);
        let mut r = CaptureReader::new(&f[..]).unwrap();
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(p.ts_ns, 10_000_005_000);
        assert_eq!(p.data, [0xaa, 0xbb]);
    }

    #[test]
    fn damaged_files_are_errors_not_panics() {
        assert!(matches!(
            CaptureReader::new(&[1, 2, 3, 4][..]),
            Err(ReadError::Magic(_))
        ));
        let mut w = PcapWriter::new(Vec::new(), 100).unwrap();
        w.write_packet(1, 10, &[1, 2, 3]).unwrap();
        let bytes = w.into_inner().unwrap();
        for cut in 25..bytes.len() {
            let mut r = CaptureReader::new(&bytes[..cut]).unwrap();
            assert!(r.next_packet().is_err(), "cut at {cut}");
        }
        // Arbitrary junk after a valid header.
        let mut x: u32 = 12345;
        for n in 0..200 {
            let mut f = bytes[..24].to_vec();
            for _ in 0..n {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                f.push((x >> 16) as u8);
            }
            let mut r = CaptureReader::new(&f[..]).unwrap();
            for _ in 0..10 {
                if !matches!(r.next_packet(), Ok(Some(_))) {
                    break;
                }
            }
        }
    }

    #[test]
    fn pcapng_with_nanosecond_interface() {
        let mut f = Vec::new();
        // Section header: type, len 28, BOM, version 1.0, section length -1, len.
        for v in [0x0a0d_0d0au32, 28, 0x1a2b_3c4d] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.extend_from_slice(&[1, 0, 0, 0]);
        f.extend_from_slice(&(-1i64).to_le_bytes());
        f.extend_from_slice(&28u32.to_le_bytes());
        // Interface description: linktype 1, snaplen 0, if_tsresol 9, end of options.
        let idb_len = 8 + 8 + 8 + 4 + 4;
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(&(idb_len as u32).to_le_bytes());
        f.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0]);
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.extend_from_slice(&(idb_len as u32).to_le_bytes());
        // Enhanced packet: iface 0, ts = 1_500_000_000 ns, cap 3, orig 60, data padded.
        let epb_len = 12 + 20 + 4;
        f.extend_from_slice(&6u32.to_le_bytes());
        f.extend_from_slice(&(epb_len as u32).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        let ts: u64 = 1_500_000_000;
        f.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        f.extend_from_slice(&(ts as u32).to_le_bytes());
        f.extend_from_slice(&3u32.to_le_bytes());
        f.extend_from_slice(&60u32.to_le_bytes());
        f.extend_from_slice(&[7, 8, 9, 0]);
        f.extend_from_slice(&(epb_len as u32).to_le_bytes());
        let mut r = CaptureReader::new(&f[..]).unwrap();
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(
            (p.ts_ns, p.orig_len, p.data.as_slice()),
            (1_500_000_000, 60, &[7, 8, 9][..])
        );
        assert!(r.next_packet().unwrap().is_none());
    }

    #[test]
    fn pcapng_blocks_with_mismatched_trailing_lengths_are_refused() {
        let good = pcapng_sample();
        assert!(
            CaptureReader::new(&good[..])
                .unwrap()
                .next_packet()
                .unwrap()
                .is_some()
        );
        // The enhanced packet block's trailing length (its last 4 bytes) off by 4.
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 4] = bad[n - 4].wrapping_add(4);
        let e = CaptureReader::new(&bad[..])
            .unwrap()
            .next_packet()
            .unwrap_err();
        assert!(e.to_string().contains("trailing length"), "{e}");
        // The section header's (bytes 24..28).
        let mut bad = good;
        bad[24] = 32;
        assert!(matches!(
            CaptureReader::new(&bad[..]),
            Err(ReadError::Damaged { offset: 0, .. })
        ));
    }

    #[test]
    fn a_short_file_that_claims_a_huge_record_costs_its_size() {
        let mut f = PcapWriter::new(Vec::new(), 100)
            .unwrap()
            .into_inner()
            .unwrap();
        // One record header claiming 200 MiB, and 10 bytes.
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&(200u32 << 20).to_le_bytes());
        f.extend_from_slice(&(200u32 << 20).to_le_bytes());
        f.extend_from_slice(&[0; 10]);
        let e = CaptureReader::new(&f[..])
            .unwrap()
            .next_packet()
            .unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::Damaged {
                    what: "truncated",
                    ..
                }
            ),
            "{e}"
        );
    }

    /// A section header, an interface block and one enhanced packet block (little-endian).
    fn pcapng_sample() -> Vec<u8> {
        let mut f = Vec::new();
        for v in [0x0a0d_0d0au32, 28, 0x1a2b_3c4d] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.extend_from_slice(&[1, 0, 0, 0]);
        f.extend_from_slice(&(-1i64).to_le_bytes());
        f.extend_from_slice(&28u32.to_le_bytes());
        for v in [1u32, 20, 1, 0, 20] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        for v in [6u32, 36, 0, 0, 1, 3, 60] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.extend_from_slice(&[7, 8, 9, 0]);
        f.extend_from_slice(&36u32.to_le_bytes());
        f
    }

    /// Bounded fuzzing: damaged and arbitrary files never panic the reader, and what it holds
    /// while reading stays in proportion to the file, whatever lengths the file claims.
    mod fuzz {
        use proptest::prelude::*;

        use super::*;

        /// A valid file of either kind, then flips, cuts and junk.
        fn damaged() -> impl Strategy<Value = Vec<u8>> {
            let base = prop_oneof![
                Just(pcapng_sample()),
                Just({
                    let mut w = PcapWriter::new(Vec::new(), 1500).unwrap();
                    w.write_packet(1, 60, &[1; 60]).unwrap();
                    w.write_packet(2, 9000, &[2; 100]).unwrap();
                    w.into_inner().unwrap()
                }),
            ];
            (
                base,
                prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
                any::<usize>(),
                prop::collection::vec(any::<u8>(), 0..64),
            )
                .prop_map(|(mut f, flips, cut, junk)| {
                    for (at, v) in flips {
                        let n = f.len();
                        f[at % n] = v;
                    }
                    f.truncate(cut % (f.len() + 1));
                    f.extend_from_slice(&junk);
                    f
                })
        }

        fn read_all(bytes: &[u8]) {
            let Ok(mut r) = CaptureReader::new(bytes) else {
                return;
            };
            // Each packet is at least 12 bytes of the file: this bounds the loop.
            for _ in 0..=bytes.len() {
                match r.next_packet() {
                    Ok(Some(p)) => assert!(p.data.len() <= bytes.len()),
                    Ok(None) | Err(_) => return,
                }
            }
            panic!("more packets than bytes");
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 1024, max_shrink_iters: 256, ..ProptestConfig::default() })]

            #[test]
            fn damaged_files_never_panic(bytes in damaged()) {
                read_all(&bytes);
            }

            #[test]
            fn arbitrary_bytes_never_panic(
                magic in prop::sample::select(vec![0xa1b2_c3d4u32, 0xd4c3_b2a1, 0xa1b2_3c4d, 0x0a0d_0d0a, 0]),
                rest in prop::collection::vec(any::<u8>(), 0..512),
            ) {
                let mut bytes = magic.to_le_bytes().to_vec();
                bytes.extend_from_slice(&rest);
                read_all(&bytes);
            }
        }
    }
}
