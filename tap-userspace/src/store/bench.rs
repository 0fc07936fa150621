//! `tap store bench-fill` (hidden): a large store of synthetic traffic through the real store
//! writer, for measuring queries (`cargo xtask bench`): `flows` background UDP flows in turn,
//! and a needle flow (UDP 203.0.113.77:4242 -> 198.51.100.9:53) of `needle` packets spread
//! evenly over the whole store. Timestamps start `bytes` worth of packets before now, 1 µs
//! apart. Files rotate at 1 GB, as a store does by default.

use std::{path::Path, time::Duration};

use tap_common::event::{DIR_INBOUND, HEADER_LEN, HOOK_TC_INGRESS, PacketHeader};

use super::{StoreConfig, StoreError, layout};
use crate::{
    kernel::batch::BatchBuilder,
    model::{Compression, DiskFull, Format, Hook, Interface, Output, OutputConfig, Rotation},
    sink::{CaptureStats, SinkSetup},
};

/// The needle's filter, for the query to measure.
pub const NEEDLE_FILTER: &str = "host 203.0.113.77 and udp port 4242";

fn frame(packet_size: usize, src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, fill: u8) -> Vec<u8> {
    let mut f = vec![fill; packet_size.max(42)];
    f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = u16::try_from(f.len() - 14).unwrap_or(u16::MAX);
    f[14..26].copy_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    f[34..36].copy_from_slice(&sp.to_be_bytes());
    f[36..38].copy_from_slice(&dp.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f[40..42].copy_from_slice(&[0, 0]);
    f
}

/// A store's output for synthetic runs (`bench-fill`, `tap bench-writer --store`): pcapng files
/// of 1 GB, as a store makes by default, numbered on in the store's directory.
#[must_use]
pub fn output(store: StoreConfig, compression: Compression) -> OutputConfig {
    let mut name = layout::NAME_PATTERN.to_string();
    if compression != Compression::None {
        name.push_str(".zst");
    }
    OutputConfig {
        target: Output::File(store.dir.join(name)),
        format: Format::Pcapng,
        compression,
        rotation: Rotation {
            max_bytes: Some(1_000_000_000),
            interval_secs: None,
            max_files: None,
        },
        post_rotate: None,
        flush_interval: Duration::from_secs(1),
        on_disk_full: DiskFull::Stop,
        force: false,
        resume: true,
        store: Some(store),
        sign_key: None,
    }
}

/// Fills `dir` (a new store) with `bytes` of packets; returns the packets written.
///
/// # Errors
///
/// The store cannot be opened or written.
pub fn fill(
    dir: &Path,
    bytes: u64,
    packet_size: usize,
    flows: u16,
    needle: u64,
    compression: Compression,
) -> Result<u64, StoreError> {
    let config = StoreConfig {
        dir: dir.to_path_buf(),
        max_bytes: None,
        max_age: None,
    };
    let output = output(config.clone(), compression);
    let interfaces = [Interface {
        name: "bench0".into(),
        ifindex: 2,
    }];
    let mut sink = super::sink::open(
        SinkSetup {
            output: &output,
            interfaces: &interfaces,
            hooks: &[Hook::TcIngress],
            snaplen: tap_common::config::MAX_SNAPLEN,
            filter: "",
            stats: Box::new(CaptureStats::default),
            finished: None,
            progress: None,
        },
        &config,
        std::sync::Arc::default(),
    )?;
    let total = bytes / packet_size.max(1) as u64;
    let every = (total / needle.max(1)).max(1);
    let now = crate::kernel::clock::realtime_offset_ns();
    let start_ns = i128::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(0)),
    ) - i128::from(total) * 1000;
    // The batch stamps are monotonic: take the clock offset back off.
    let mono0 = u64::try_from((start_ns - i128::from(now)).max(0)).unwrap_or(0);
    let background: Vec<Vec<u8>> = (0..flows.max(1))
        .map(|i| {
            frame(
                packet_size,
                [192, 0, 2, 1],
                [192, 0, 2, 2],
                10_000 + i,
                5000,
                (i % 251) as u8,
            )
        })
        .collect();
    let needle_frame = frame(
        packet_size,
        [203, 0, 113, 77],
        [198, 51, 100, 9],
        4242,
        53,
        7,
    );
    let per_batch = (4usize << 20) / (HEADER_LEN + packet_size);
    let mut written = 0u64;
    let mut n = 0u64;
    let mut needles = 0u64;
    while n < total {
        let mut b = BatchBuilder::with_capacity(per_batch * (HEADER_LEN + packet_size));
        for _ in 0..per_batch {
            if n >= total {
                break;
            }
            let data = if n % every == every / 2 && needles < needle {
                needles += 1;
                &needle_frame
            } else {
                &background[usize::try_from(n % u64::from(flows.max(1))).unwrap_or(0)]
            };
            let header = PacketHeader {
                ts_ns: mono0 + n * 1000,
                ifindex: 2,
                orig_len: u32::try_from(data.len()).unwrap_or(u32::MAX),
                cap_len: u32::try_from(data.len()).unwrap_or(u32::MAX),
                hook: HOOK_TC_INGRESS,
                direction: DIR_INBOUND,
                ..Default::default()
            };
            b.push_parts(&header, data);
            n += 1;
        }
        let batch = b.finish_with_offset(now);
        if sink.write_batch(&batch).is_err() {
            break;
        }
        written += batch.len() as u64;
    }
    let report = sink.finish(&CaptureStats::default());
    if let Some(e) = report.error {
        return Err(StoreError::Storage(e));
    }
    Ok(written)
}
