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
    kernel::batch::{Batch, BatchBuilder},
    model::{
        Compression, DiskFull, Format, Hook, Interface, Output, OutputConfig, Rotation, StoreConfig,
    },
    sink::{self, CaptureStats, SinkSetup},
    store::StoreError,
};

/// What `tap bench-writer` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchWriterSpec {
    /// Directory to write the file into (it is deleted afterwards unless `keep`).
    pub to: PathBuf,
    /// Packet bytes to write.
    pub bytes: u64,
    pub format: Format,
    /// zstd level (clamped to 1-19); none: uncompressed.
    pub zstd: Option<i32>,
    /// Captured bytes per packet.
    pub packet_size: u32,
    /// Keep the file.
    pub keep: bool,
    /// Write a packet store (pcapng files and their flow index) into a fresh directory under
    /// `to` instead of one file: the store's cost over plain pcapng.
    pub store: bool,
    /// Distinct flows the packets cycle through (source ports and addresses), 1: all one flow.
    /// More flows than one batch holds take that many distinct batches in memory (1M flows of
    /// 1500 bytes: 1.5 GB). 1..=[`MAX_FLOWS`].
    pub flows: u32,
    /// Also fill a pre-trigger memory with every batch.
    pub pretrigger: Option<crate::model::PretriggerLimits>,
}

/// Most flows a run may cycle through (`--flows`).
pub const MAX_FLOWS: i64 = 1_000_000;

/// What the packets go into: a plain file, or a store (with its index), and how many flows
/// they belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    pub store: bool,
    pub flows: u32,
    /// Also fill a pre-trigger memory, each batch copied first as one from the ring is.
    pub pretrigger: Option<crate::model::PretriggerLimits>,
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
    /// CPU time of the process (user and system, all threads: the index thread too).
    pub cpu: Duration,
}

impl BenchResult {
    /// Packet bytes per second, in MB/s (10^6).
    pub fn mb_per_s(&self) -> f64 {
        self.packet_bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }

    pub fn packets_per_s(&self) -> f64 {
        self.packets as f64 / self.elapsed.as_secs_f64()
    }

    /// CPU ns per packet.
    pub fn cpu_ns_per_packet(&self) -> f64 {
        self.cpu.as_nanos() as f64 / self.packets.max(1) as f64
    }
}

/// CPU time of this process so far (all threads).
fn cpu_time() -> Duration {
    // SAFETY: rusage is plain old data; getrusage only writes into it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer for the duration of the call.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut u) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Batches as the drain builds them (up to 8192 packets or 4 MiB each), packet `g` of them of
/// flow `g % flows` (source port `10000 + f % 50000`, source address `192.0.2.(1 + f / 50000)`):
/// one batch, or as many as it takes for every flow to appear.
fn synthetic_batches(packet_size: usize, flows: u32) -> Vec<Batch> {
    let flows = flows.max(1) as usize;
    let count = (4usize << 20).div_ceil(HEADER_LEN + packet_size).min(8192);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rec = Vec::with_capacity(HEADER_LEN + packet_size);
    let mut frame = vec![0u8; packet_size];
    let mut batches = Vec::new();
    for b in 0..flows.div_ceil(count) {
        let mut builder = BatchBuilder::with_capacity(count * (HEADER_LEN + packet_size));
        for i in 0..count {
            let g = b * count + i;
            let header = PacketHeader {
                ts_ns: 1_000_000 * g as u64,
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
            let head: [u8; 42] = [
                2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0, 0x05, 0xdc, 0, 0, 0x40, 0,
                64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2, 0x30, 0x39, 0x00, 0x35, 0x05, 0xc8, 0, 0,
            ];
            let n = head.len().min(packet_size);
            frame[..n].copy_from_slice(&head[..n]);
            let f = g % flows;
            if n >= 36 {
                frame[29] = 1 + (f / 50_000) as u8;
                let port = 10_000 + (f % 50_000) as u16;
                frame[34..36].copy_from_slice(&port.to_be_bytes());
            }
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
            builder.push(&rec).expect("a well-formed synthetic record");
        }
        batches.push(builder.finish());
    }
    batches
}

/// Writes `bytes` of `packet_size`-byte packets into a file in `dir` and times it.
pub fn measure(
    dir: &std::path::Path,
    bytes: u64,
    format: Format,
    compression: Compression,
    packet_size: u32,
    keep: bool,
    mode: Mode,
) -> Result<(BenchResult, PathBuf), StoreError> {
    let Mode {
        store,
        flows,
        pretrigger,
    } = mode;
    let history = pretrigger.map(sink::pretrigger::History::new);
    let packet_size = packet_size.clamp(1, tap_common::config::MAX_SNAPLEN);
    let batches = synthetic_batches(packet_size as usize, flows);
    let ext = match (format, compression) {
        (Format::Pcap, Compression::None) => "pcap",
        (Format::Pcapng, Compression::None) => "pcapng",
        (Format::Pcap, Compression::Zstd { .. }) => "pcap.zst",
        (Format::Pcapng, Compression::Zstd { .. }) => "pcapng.zst",
    };
    let path = dir.join(format!("tap-bench-writer-{}.{ext}", std::process::id()));
    let store_dir = dir.join(format!("tap-bench-store-{}", std::process::id()));
    let output = if store {
        let store = StoreConfig {
            dir: store_dir.clone(),
            max_bytes: None,
            max_age: None,
        };
        crate::store::bench::output(store, compression)
    } else {
        OutputConfig {
            target: Output::File(path.clone()),
            format,
            compression,
            rotation: Rotation::default(),
            post_rotate: None,
            flush_interval: Duration::from_secs(1),
            on_disk_full: DiskFull::Stop,
            force: false,
            resume: false,
            store: None,
            sign_key: None,
        }
    };
    let interfaces = [Interface {
        name: "bench0".into(),
        ifindex: 2,
    }];
    let started = Instant::now();
    let cpu_before = cpu_time();
    let setup = SinkSetup {
        output: &output,
        interfaces: &interfaces,
        hooks: &[Hook::TcIngress],
        snaplen: tap_common::config::MAX_SNAPLEN,
        filter: "",
        stats: Box::new(CaptureStats::default),
        finished: None,
        progress: None,
    };
    let mut sink = match &output.store {
        Some(store) => crate::store::sink::open(setup, store, std::sync::Arc::default())?,
        None => sink::open(setup)?,
    };
    let mut written = 0;
    for batch in batches.iter().cycle() {
        if written >= bytes || sink.write_batch(batch).is_err() {
            break;
        }
        if let Some(h) = &history {
            h.push(&batch.packed_copy());
        }
        written += batch.len() as u64 * u64::from(packet_size);
    }
    let report = sink.finish(&CaptureStats::default());
    let elapsed = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    if let Some(e) = report.error {
        return Err(e.into());
    }
    if !keep {
        let _ = std::fs::remove_file(&path);
        if store {
            let _ = std::fs::remove_dir_all(&store_dir);
        }
    }
    let result = BenchResult {
        packets: report.written,
        packet_bytes: report.written * u64::from(packet_size),
        file_bytes: report.bytes,
        elapsed,
        cpu,
    };
    Ok((result, if store { store_dir } else { path }))
}

/// `tap bench-writer`: measures and prints one line.
pub fn run(args: &BenchWriterSpec) -> Result<BenchResult, StoreError> {
    let format = args.format;
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
        Mode {
            store: args.store,
            flows: args.flows,
            pretrigger: args.pretrigger,
        },
    )?;
    println!(
        "{}{}: {} packets, {:.0} MB of packets, {:.0} MB on disk, in {:.2} s: {:.0} MB/s, {:.2} Mpackets/s, {:.1} ns CPU per packet",
        path.display(),
        if args.pretrigger.is_some() {
            " (with the pre-trigger memory)"
        } else {
            ""
        },
        r.packets,
        r.packet_bytes as f64 / 1e6,
        r.file_bytes as f64 / 1e6,
        r.elapsed.as_secs_f64(),
        r.mb_per_s(),
        r.packets_per_s() / 1e6,
        r.cpu_ns_per_packet()
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Mode {
                pretrigger: None,
                store: false,
                flows: 1,
            },
        )
        .unwrap();
        assert!(r.packet_bytes >= 10_000_000);
        assert!(r.file_bytes > r.packet_bytes);
        assert!(!path.exists());
    }
}
