//! Opening any capture file tap writes: pcap or pcapng, plain or zstd-compressed (a sequence of
//! zstd frames, as tap's writer produces; `.pcap.zst`, `.pcapng.zst`). Compression is told by
//! the file's first bytes, not by its name.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Read},
    path::{Path, PathBuf},
};

use crate::replay::reader::{CaptureReader, ReadError};

/// The first four bytes of a zstd frame (0xFD2FB528, little-endian).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A skippable zstd frame starts with 0x184D2A5? (little-endian).
fn is_skippable(m: &[u8]) -> bool {
    m.len() >= 4 && m[0] & 0xf0 == 0x50 && m[1..4] == [0x2a, 0x4d, 0x18]
}

/// How a capture file's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd,
}

/// Errors opening a capture file.
#[derive(Debug, thiserror::Error)]
pub enum CaptureFileError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: ReadError,
    },
}

/// A reader of a capture file of either format and compression.
pub type AnyCaptureReader = CaptureReader<Box<dyn Read + Send>>;

/// The compression of a stream whose first bytes are `head` (fewer than four: none).
#[must_use]
pub fn compression_of(head: &[u8]) -> Compression {
    if head.starts_with(&ZSTD_MAGIC) || is_skippable(head) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// A capture reader over `input`, decompressing it when it starts with a zstd frame.
///
/// # Errors
/// Reading fails, or the (decompressed) bytes are not pcap or pcapng.
pub fn capture_reader<R: Read + Send + 'static>(
    input: R,
) -> Result<(AnyCaptureReader, Compression), ReadError> {
    let mut buffered = BufReader::with_capacity(64 * 1024, input);
    let head = loop {
        match buffered.fill_buf() {
            Ok(b) => break b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    };
    let compression = compression_of(head);
    let boxed: Box<dyn Read + Send> = match compression {
        // A stream of frames (the decoder reads on across frame boundaries).
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
        Compression::None => Box::new(buffered),
    };
    Ok((CaptureReader::new(boxed)?, compression))
}

/// Opens the capture file at `path`; see [`capture_reader`].
///
/// # Errors
/// The file cannot be opened or read, or is not a (compressed) pcap or pcapng file; the error
/// names the path.
pub fn open_capture(path: &Path) -> Result<(AnyCaptureReader, Compression), CaptureFileError> {
    let file = File::open(path).map_err(|source| CaptureFileError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    capture_reader(file).map_err(|source| CaptureFileError::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::pcap::PcapWriter;

    fn pcap() -> Vec<u8> {
        let mut w = PcapWriter::new(Vec::new(), 100).unwrap();
        w.write_packet(1_700_000_000_000_000_001, 200, &[1, 2, 3])
            .unwrap();
        w.write_packet(1_700_000_001_000_000_000, 4, &[4, 5, 6, 7])
            .unwrap();
        w.into_inner().unwrap()
    }

    fn packets(bytes: Vec<u8>) -> (Vec<Vec<u8>>, Compression) {
        let (mut r, c) = capture_reader(io::Cursor::new(bytes)).unwrap();
        let mut v = Vec::new();
        while let Some(p) = r.next_packet().unwrap() {
            v.push(p.data);
        }
        (v, c)
    }

    #[test]
    fn plain_and_zstd_frames_read_the_same() {
        let plain = pcap();
        let want = vec![vec![1, 2, 3], vec![4, 5, 6, 7]];
        assert_eq!(packets(plain.clone()), (want.clone(), Compression::None));
        // Several frames, cut at an arbitrary byte, as the writer's flushes make them.
        let mut z = zstd::bulk::compress(&plain[..30], 3).unwrap();
        z.extend(zstd::bulk::compress(&plain[30..], 3).unwrap());
        assert_eq!(packets(z), (want, Compression::Zstd));
    }

    #[test]
    fn damaged_zstd_is_an_error() {
        let mut z = zstd::bulk::compress(&pcap(), 3).unwrap();
        z.truncate(z.len() - 5);
        let r = capture_reader(io::Cursor::new(z));
        let failed = match r {
            Err(_) => true,
            Ok((mut r, _)) => loop {
                match r.next_packet() {
                    Ok(Some(_)) => {}
                    Ok(None) => break false,
                    Err(_) => break true,
                }
            },
        };
        assert!(failed, "a cut frame is an error, not a clean end");
        assert!(matches!(
            capture_reader(io::Cursor::new(vec![0u8; 3])),
            Err(ReadError::Io(_) | ReadError::Magic(_) | ReadError::Damaged { .. })
        ));
    }
}
