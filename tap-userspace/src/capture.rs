//! `tap capture`: load, attach, drain, write, and on the way out detach and summarise.
//!
//! The drain (Tokio, epoll on the ring) and the writer (a thread of its own) are decoupled by a
//! bounded queue of batches. A full queue drops the batch and counts it as writer drops: a slow
//! disk never stalls the ring, so the kernel side keeps its own accounting honest.

use std::{
    fs::OpenOptions,
    future::Future,
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    sync::mpsc::{self, Receiver, SyncSender, TrySendError},
    thread,
};

use aya::maps::{MapData, PerCpuArray};
use tap_common::counters;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::{
    config::{CaptureConfig, Output},
    drain::{Batch, BatchLimits, Drain},
    error::CaptureError,
    filter::maps::FilterImage,
    loader::{self, LoadSpec},
    sink::{Sink, pcap::PcapWriter},
    summary::{KernelCounters, Summary},
};

/// Batches the writer may have queued before the drain starts dropping.
const WRITER_QUEUE: usize = 64;

/// Sums the per-CPU counters.
pub fn read_counters(map: &PerCpuArray<MapData, u64>) -> KernelCounters {
    let get = |index: u32| map.get(&index, 0).map(|v| v.iter().sum::<u64>()).unwrap_or(0);
    KernelCounters {
        seen: get(counters::SEEN),
        matched: get(counters::MATCHED),
        copied: get(counters::COPIED),
        copied_bytes: get(counters::COPIED_BYTES),
        ring_full: get(counters::RING_FULL),
        read_error: get(counters::READ_ERROR),
        sampled_out: get(counters::SAMPLED_OUT),
        rate_limited: get(counters::RATE_LIMITED),
        filter_error: get(counters::FILTER_ERROR),
    }
}

/// What the writer thread reports at the end.
#[derive(Debug, Default)]
struct WriterReport {
    written: u64,
    bytes: u64,
    output_closed: bool,
}

fn open_output(output: &Output, snaplen: u32) -> Result<Box<dyn Sink>, CaptureError> {
    match output {
        Output::Stdout => {
            let w = PcapWriter::new(io::stdout(), snaplen)
                .map_err(|source| CaptureError::Write { what: "standard output".into(), source })?;
            Ok(Box::new(w))
        }
        Output::File(path) => {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(path)
                .map_err(|source| CaptureError::Output { path: path.clone(), source })?;
            let w = PcapWriter::new(file, snaplen)
                .map_err(|source| CaptureError::Write { what: path.display().to_string(), source })?;
            Ok(Box::new(w))
        }
    }
}

fn writer_loop(mut sink: Box<dyn Sink>, rx: Receiver<Batch>, what: String) -> Result<WriterReport, CaptureError> {
    let mut report = WriterReport::default();
    let write_err = |source: io::Error| CaptureError::Write { what: what.clone(), source };
    let closed = |e: &io::Error| e.kind() == io::ErrorKind::BrokenPipe;
    'outer: while let Ok(mut batch) = rx.recv() {
        loop {
            match sink.write_batch(&batch) {
                Ok(bytes) => {
                    report.written += batch.len() as u64;
                    report.bytes += bytes;
                }
                Err(e) if closed(&e) => {
                    report.output_closed = true;
                    break 'outer;
                }
                Err(e) => return Err(write_err(e)),
            }
            match rx.try_recv() {
                Ok(next) => batch = next,
                Err(_) => break,
            }
        }
        // Idle: push what we have so readers of a pipe see packets within milliseconds.
        match sink.flush() {
            Ok(()) => {}
            Err(e) if closed(&e) => {
                report.output_closed = true;
                break;
            }
            Err(e) => return Err(write_err(e)),
        }
    }
    if report.output_closed {
        // Packets written into the buffer but never delivered are not "written".
        drop(sink);
        return Ok(report);
    }
    match sink.finish() {
        Ok(()) => Ok(report),
        Err(e) if closed(&e) => {
            report.output_closed = true;
            Ok(report)
        }
        Err(e) => Err(write_err(e)),
    }
}

/// Hands a batch to the writer; a full queue is a counted drop. Returns false once the writer
/// is gone (its output closed or failed).
fn hand_off(tx: &SyncSender<Batch>, batch: Batch, summary: &mut Summary, queued: &mut u64) -> bool {
    let n = batch.len() as u64;
    match tx.try_send(batch) {
        Ok(()) => {
            *queued += n;
            true
        }
        Err(TrySendError::Full(_)) => {
            summary.writer_dropped += n;
            true
        }
        Err(TrySendError::Disconnected(_)) => {
            summary.writer_dropped += n;
            false
        }
    }
}

/// Runs a capture until `shutdown` resolves, the count or duration is reached, or the output
/// closes. Detaches before returning, also on error.
pub async fn run(config: CaptureConfig, shutdown: impl Future<Output = ()>) -> Result<Summary, CaptureError> {
    let (_keep, updates) = mpsc_filter_channel();
    run_with_updates(config, shutdown, updates).await
}

/// A channel of filter replacements for [`run_with_updates`].
pub fn mpsc_filter_channel() -> (tokio::sync::mpsc::Sender<FilterImage>, tokio::sync::mpsc::Receiver<FilterImage>) {
    tokio::sync::mpsc::channel(4)
}

/// [`run`], plus filter replacements: each image received is installed atomically in the
/// running programs (no detach, no window where a packet both filters select is lost).
pub async fn run_with_updates(
    config: CaptureConfig,
    shutdown: impl Future<Output = ()>,
    mut updates: tokio::sync::mpsc::Receiver<FilterImage>,
) -> Result<Summary, CaptureError> {
    let spec = LoadSpec {
        interfaces: &config.interfaces,
        hooks: &config.hooks,
        xdp_mode: config.xdp_mode,
        snaplen: config.snaplen,
        ring_size: config.ring_size,
        xdp_program: config.xdp_program.as_deref(),
        filter: config.filter.clone(),
        sample: config.sample,
        rate_per_cpu: config.rate_per_cpu,
        decap: config.decap.bits,
        vxlan_port: config.decap.vxlan_port,
        consume: config.consume,
    };
    let (attached, maps) = loader::load_and_attach(&spec)?;
    // From here on, any early return drops `attached`, which detaches.
    let sink = open_output(&config.output, config.snaplen)?;
    let what = match &config.output {
        Output::Stdout => "standard output".to_string(),
        Output::File(p) => p.display().to_string(),
    };
    let mut filter_maps = maps.filter;
    let mut drain = Drain::new(maps.ring, BatchLimits::default()).map_err(CaptureError::Poll)?;
    let (tx, rx) = mpsc::sync_channel::<Batch>(WRITER_QUEUE);
    let writer = thread::Builder::new()
        .name("tap-writer".into())
        .spawn(move || writer_loop(sink, rx, what))
        .map_err(|source| CaptureError::Write { what: "writer thread".into(), source })?;
    info!(attachments = attached.attachments.len(), "capturing");

    let mut summary = Summary::default();
    // Packets read from the ring and meant for the writer, and those it accepted.
    let mut delivered: u64 = 0;
    let mut queued: u64 = 0;
    let remaining = |delivered: u64| config.count.map_or(usize::MAX, |c| c.saturating_sub(delivered) as usize);
    let deadline = config.duration.map(|d| Instant::now() + d);
    let sleep_until = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(shutdown, sleep_until);
    let mut writer_alive = true;
    let mut poll_error = None;
    while remaining(delivered) > 0 && writer_alive {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = &mut sleep_until => break,
            Some(image) = updates.recv() => {
                let expression = image.expression.clone();
                match filter_maps.install(image) {
                    Ok(()) => info!(filter = %expression, "filter replaced"),
                    Err(e) => warn!(error = %e, "replacing the filter failed; the old one stays"),
                }
            }
            taken = drain.next_batch(remaining(delivered)) => {
                let taken = match taken {
                    Ok(t) => t,
                    Err(e) => { poll_error = Some(e); break; }
                };
                summary.malformed += taken.malformed;
                delivered += taken.batch.len() as u64;
                debug!(packets = taken.batch.len(), bytes = taken.batch.byte_len(), "batch");
                writer_alive = hand_off(&tx, taken.batch, &mut summary, &mut queued);
            }
        }
    }

    // Detach first, so nothing new arrives, then take what the ring still holds.
    drop(attached);
    loop {
        let want = if writer_alive { remaining(delivered) } else { 0 };
        let taken = drain.take_now(want.max(1));
        summary.malformed += taken.malformed;
        let n = taken.batch.len() as u64;
        if n == 0 && taken.malformed == 0 {
            break;
        }
        if want == 0 {
            // Past -c (or the output is gone): accounted, not written.
            if writer_alive { summary.beyond_count += n } else { summary.writer_dropped += n }
            continue;
        }
        delivered += n;
        writer_alive = hand_off_blocking(&tx, taken.batch, &mut summary, &mut queued);
    }
    drop(tx);
    let report = writer
        .join()
        .unwrap_or_else(|_| Err(CaptureError::Write { what: "writer thread".into(), source: io::Error::other("panicked") }))?;
    if let Some(e) = poll_error {
        return Err(CaptureError::Poll(e));
    }
    summary.kernel = read_counters(&maps.counters);
    if filter_maps.current().graph.is_some() {
        summary.rules = filter_maps.rule_hits();
    }
    summary.filter_installs = filter_maps.installs;
    summary.written = report.written;
    summary.written_bytes = report.bytes;
    summary.output_closed = report.output_closed;
    if report.output_closed {
        // Everything handed to a writer whose reader left is lost to that reader: count it.
        summary.writer_dropped += queued.saturating_sub(report.written);
    }
    Ok(summary)
}

/// At shutdown the drain may wait for the writer: nothing else is running any more.
fn hand_off_blocking(tx: &SyncSender<Batch>, batch: Batch, summary: &mut Summary, queued: &mut u64) -> bool {
    let n = batch.len() as u64;
    if tx.send(batch).is_err() {
        summary.writer_dropped += n;
        return false;
    }
    *queued += n;
    true
}

/// Flushes standard output, treating a closed pipe as a normal end.
pub fn flush_stdout() -> io::Result<()> {
    match io::stdout().flush() {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
