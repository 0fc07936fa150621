//! Classic pcap with nanosecond timestamps (magic `0xa1b23c4d`), in host byte order as libpcap
//! writes it. Readers: tcpdump, tshark, Wireshark, Suricata, tcpreplay.

use std::io::{self, BufWriter, Write};

/// Magic of a nanosecond-resolution pcap file.
pub const MAGIC_NS: u32 = 0xa1b2_3c4d;
/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Global header length in bytes.
pub const GLOBAL_HEADER_LEN: usize = 24;
/// Per-record header length in bytes.
pub const RECORD_HEADER_LEN: usize = 16;

/// The 24-byte global header.
pub fn global_header(snaplen: u32, linktype: u32) -> [u8; GLOBAL_HEADER_LEN] {
    let mut h = [0u8; GLOBAL_HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC_NS.to_ne_bytes());
    h[4..6].copy_from_slice(&2u16.to_ne_bytes());
    h[6..8].copy_from_slice(&4u16.to_ne_bytes());
    // thiszone and sigfigs stay 0.
    h[16..20].copy_from_slice(&snaplen.to_ne_bytes());
    h[20..24].copy_from_slice(&linktype.to_ne_bytes());
    h
}

/// The 16-byte record header for a packet stamped `ts_ns` (ns since the epoch).
pub fn record_header(ts_ns: u64, cap_len: u32, orig_len: u32) -> [u8; RECORD_HEADER_LEN] {
    let mut h = [0u8; RECORD_HEADER_LEN];
    let secs = (ts_ns / 1_000_000_000) as u32;
    let nanos = (ts_ns % 1_000_000_000) as u32;
    h[0..4].copy_from_slice(&secs.to_ne_bytes());
    h[4..8].copy_from_slice(&nanos.to_ne_bytes());
    h[8..12].copy_from_slice(&cap_len.to_ne_bytes());
    h[12..16].copy_from_slice(&orig_len.to_ne_bytes());
    h
}

/// Appends one record (header and packet bytes) to `out`.
pub fn record(out: &mut Vec<u8>, ts_ns: u64, orig_len: u32, data: &[u8]) {
    out.reserve(RECORD_HEADER_LEN + data.len());
    out.extend_from_slice(&record_header(ts_ns, data.len() as u32, orig_len));
    out.extend_from_slice(data);
}

/// Writes pcap to any [`Write`] (used by `tap replay`; captures go through
/// [`super::writer::CaptureWriter`]).
pub struct PcapWriter<W: Write> {
    out: BufWriter<W>,
}

impl<W: Write> PcapWriter<W> {
    /// Buffer size: large writes, few syscalls.
    pub const BUFFER: usize = 1 << 20;

    /// Writes the global header and returns the writer.
    pub fn new(out: W, snaplen: u32) -> io::Result<Self> {
        let mut out = BufWriter::with_capacity(Self::BUFFER, out);
        out.write_all(&global_header(snaplen, LINKTYPE_ETHERNET))?;
        Ok(Self { out })
    }

    /// Appends one packet.
    pub fn write_packet(&mut self, ts_ns: u64, orig_len: u32, data: &[u8]) -> io::Result<u64> {
        self.out
            .write_all(&record_header(ts_ns, data.len() as u32, orig_len))?;
        self.out.write_all(data)?;
        Ok((RECORD_HEADER_LEN + data.len()) as u64)
    }

    pub fn into_inner(self) -> io::Result<W> {
        self.out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_header_bytes() {
        let h = global_header(65535, LINKTYPE_ETHERNET);
        #[cfg(target_endian = "little")]
        assert_eq!(
            h,
            [
                0x4d, 0x3c, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0,
                0, 0
            ]
        );
    }

    #[test]
    fn golden_record_bytes() {
        let mut w = PcapWriter::new(Vec::new(), 9216).unwrap();
        w.write_packet(1_700_000_000_123_456_789, 60, &[0xde, 0xad])
            .unwrap();
        let v = w.into_inner().unwrap();
        assert_eq!(v.len(), 24 + 16 + 2);
        let rec = &v[24..];
        assert_eq!(
            u32::from_ne_bytes(rec[0..4].try_into().unwrap()),
            1_700_000_000
        );
        assert_eq!(
            u32::from_ne_bytes(rec[4..8].try_into().unwrap()),
            123_456_789
        );
        assert_eq!(u32::from_ne_bytes(rec[8..12].try_into().unwrap()), 2);
        assert_eq!(u32::from_ne_bytes(rec[12..16].try_into().unwrap()), 60);
        assert_eq!(&rec[16..], &[0xde, 0xad]);
    }
}
