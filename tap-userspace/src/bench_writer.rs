//! `tap bench-writer` (hidden): synthetic batches through the real capture writer, to measure
//! how fast it stores packets, e.g.
//!
//! ```text
//! tap bench-writer --to /dev/shm --bytes 2G --format pcapng
//! tap bench-writer --to /var/tmp --bytes 2G --format pcap --zstd 3
//! ```
//!
//! The batches are built once and handed over again and again, as the drain would hand them,
//! so the number is the writer's alone: encoding, buffering, compressing, writing, and the
//! final sync of the file. Packets carry an Ethernet/IPv4/UDP header and a payload that is half
//! a repeated pattern, half pseudo-random, so a zstd ratio is neither best nor worst case.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use tap_common::event::{DIR_INBOUND, HEADER_LEN, HOOK_TC_INGRESS, PacketHeader};

use crate::{
    cli::FormatArg,
    config::{Compression, DiskFull, Format, Hook, Interface, Output, OutputConfig, Rotation},
    drain::{Batch, BatchBuilder},
    sink::{self, CaptureStats, SinkSetup, StorageError},
};

/// Arguments of `tap bench-writer`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchWriterArgs {
    /// Directory to write the file into (it is deleted afterwards unless --keep).
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Packet bytes to write: a number with an optional k, M or G (powers of 1000).
    #[arg(long, value_name = "N", default_value = "1G", value_parser = parse_size)]
    pub bytes: u64,
    /// File format.
    #[arg(long, value_enum, default_value = "pcap")]
    pub format: FormatArg,
    /// Compress with zstd at this level (1-19).
    #[arg(long, value_name = "LEVEL")]
    pub zstd: Option<i32>,
    /// Captured bytes per packet.
    #[arg(long, value_name = "BYTES", default_value_t = 1500)]
    pub packet_size: u32,
    /// Keep the file.
    #[arg(long)]
    pub keep: bool,
}

fn parse_size(s: &str) -> Result<u64, String> {
    crate::cli::scaled_size(s, 1000)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("not a size: {s}"))
}

/// What one run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchResult {
    pub packets: u64,
    /// Packet bytes written (captured bytes, before file headers).
    pub packet_bytes: u64,
    /// Bytes that reached the disk.
    pub file_bytes: u64,
    pub elapsed: Duration,
}

impl BenchResult {
    /// Packet bytes per second, in MB/s (10^6).
    pub fn mb_per_s(&self) -> f64 {
        self.packet_bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }

    pub fn packets_per_s(&self) -> f64 {
        self.packets as f64 / self.elapsed.as_secs_f64()
    }
}

/// One batch as the drain builds them: up to 8192 packets or 4 MiB.
fn synthetic_batch(packet_size: usize) -> Batch {
    let count = (4usize << 20).div_ceil(HEADER_LEN + packet_size).min(8192);
    let mut b = BatchBuilder::with_capacity(count * (HEADER_LEN + packet_size));
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rec = Vec::with_capacity(HEADER_LEN + packet_size);
    for i in 0..count {
        let header = PacketHeader {
            ts_ns: 1_000_000 * i as u64,
            ifindex: 2,
            orig_len: packet_size as u32,
            cap_len: packet_size as u32,
            hook: HOOK_TC_INGRESS,
            direction: DIR_INBOUND,
            ..Default::default()
        };
        // SAFETY: PacketHeader is plain old data of HEADER_LEN bytes.
        let bytes: [u8; HEADER_LEN] = unsafe { std::mem::transmute(header) };
        rec.clear();
        rec.extend_from_slice(&bytes);
        // Ethernet, IPv4, UDP: what a capture mostly holds at the front.
        let mut frame = vec![0u8; packet_size];
        let head: [u8; 42] = [
            2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0, 0x05, 0xdc, 0, 0, 0x40, 0, 64,
            17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2, 0x30, 0x39, 0x00, 0x35, 0x05, 0xc8, 0, 0,
        ];
        let n = head.len().min(packet_size);
        frame[..n].copy_from_slice(&head[..n]);
        for (j, byte) in frame.iter_mut().enumerate().skip(n) {
            *byte = if j % 2 == 0 {
                (j / 2 % 64) as u8 + b' '
            } else {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            };
        }
        rec.extend_from_slice(&frame);
        b.push(&rec).expect("a well-formed synthetic record");
    }
    b.finish()
}

/// Writes `bytes` of `packet_size`-byte packets into a file in `dir` and times it.
pub fn measure(
    dir: &std::path::Path,
    bytes: u64,
    format: Format,
    compression: Compression,
    packet_size: u32,
    keep: bool,
) -> Result<(BenchResult, PathBuf), StorageError> {
    let packet_size = packet_size.clamp(1, tap_common::config::MAX_SNAPLEN);
    let batch = synthetic_batch(packet_size as usize);
    let ext = match (format, compression) {
        (Format::Pcap, Compression::None) => "pcap",
        (Format::Pcapng, Compression::None) => "pcapng",
        (Format::Pcap, Compression::Zstd { .. }) => "pcap.zst",
        (Format::Pcapng, Compression::Zstd { .. }) => "pcapng.zst",
    };
    let path = dir.join(format!("tap-bench-writer-{}.{ext}", std::process::id()));
    let output = OutputConfig {
        target: Output::File(path.clone()),
        format,
        compression,
        rotation: Rotation::default(),
        post_rotate: None,
        flush_interval: Duration::from_secs(1),
        on_disk_full: DiskFull::Stop,
        force: false,
        resume: false,
    };
    let interfaces = [Interface {
        name: "bench0".into(),
        ifindex: 2,
    }];
    let started = Instant::now();
    let mut sink = sink::open(SinkSetup {
        output: &output,
        interfaces: &interfaces,
        hooks: &[Hook::TcIngress],
        snaplen: tap_common::config::MAX_SNAPLEN,
        filter: "",
        stats: Box::new(CaptureStats::default),
        finished: None,
        progress: None,
    })?;
    let per_batch = batch.len() as u64 * u64::from(packet_size);
    let mut written = 0;
    while written < bytes {
        if sink.write_batch(&batch).is_err() {
            break;
        }
        written += per_batch;
    }
    let report = sink.finish(&CaptureStats::default());
    let elapsed = started.elapsed();
    if let Some(e) = report.error {
        return Err(e);
    }
    if !keep {
        let _ = std::fs::remove_file(&path);
    }
    let result = BenchResult {
        packets: report.written,
        packet_bytes: report.written * u64::from(packet_size),
        file_bytes: report.bytes,
        elapsed,
    };
    Ok((result, path))
}

/// `tap bench-writer`: measures and prints one line.
pub fn run(args: &BenchWriterArgs) -> Result<BenchResult, StorageError> {
    let format = match args.format {
        FormatArg::Pcap => Format::Pcap,
        FormatArg::Pcapng => Format::Pcapng,
    };
    let compression = match args.zstd {
        Some(level) => Compression::Zstd {
            level: level.clamp(1, 19),
        },
        None => Compression::None,
    };
    let (r, path) = measure(
        &args.to,
        args.bytes,
        format,
        compression,
        args.packet_size,
        args.keep,
    )?;
    println!(
        "{}: {} packets, {:.0} MB of packets, {:.0} MB on disk, in {:.2} s: {:.0} MB/s, {:.2} Mpackets/s",
        path.display(),
        r.packets,
        r.packet_bytes as f64 / 1e6,
        r.file_bytes as f64 / 1e6,
        r.elapsed.as_secs_f64(),
        r.mb_per_s(),
        r.packets_per_s() / 1e6
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("2G"), Ok(2_000_000_000));
        assert_eq!(parse_size("1.5M"), Ok(1_500_000));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("x").is_err());
    }

    #[test]
    fn a_small_run_writes_what_it_says() {
        let dir = std::env::temp_dir();
        let (r, path) = measure(
            &dir,
            10_000_000,
            Format::Pcapng,
            Compression::None,
            1000,
            false,
        )
        .unwrap();
        assert!(r.packet_bytes >= 10_000_000);
        assert!(r.file_bytes > r.packet_bytes);
        assert!(!path.exists());
    }
}
