//! `tap capture`: load, attach, drain, write, and on the way out detach and summarise.
//!
//! The drain (Tokio, epoll on the ring) and the writer (a thread of its own) are decoupled by a
//! bounded queue of batches. A full queue drops the batch and counts it as writer drops: a slow
//! disk never stalls the ring, so the kernel side keeps its own accounting honest.

use std::{
    future::Future,
    io::{self, Write},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
    },
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
    sink::{self, CaptureStats, Sink, SinkReport, SinkSetup, SinkStop, StatsSource},
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

/// The writer's end of the queue, with the count of batches it could not take (the statistics
/// a pcapng file reports need it while the capture runs).
struct WriterTx {
    tx: SyncSender<Batch>,
    dropped: Arc<AtomicU64>,
}

/// Reads the capture's counters for the writer: the kernel's, and the queue's drops.
fn stats_source(counters: &Arc<PerCpuArray<MapData, u64>>, dropped: &Arc<AtomicU64>) -> StatsSource {
    let (counters, dropped) = (Arc::clone(counters), Arc::clone(dropped));
    Box::new(move || CaptureStats { kernel: read_counters(&counters), writer_dropped: dropped.load(Ordering::Relaxed) })
}

/// Opens the capture's output and its consumers, as one [`sink::fanout::Fanout`].
fn open_output(config: &CaptureConfig, stats: StatsSource) -> Result<Box<dyn Sink>, CaptureError> {
    use sink::{
        fanout::{Consumer, Fanout},
        inject::InjectSink,
        stream::{FifoSink, ServeSink},
        suricata::SuricataDriver,
        vxlan::VxlanSink,
    };
    let c = &config.consumers;
    let (suricata, finished) = match &c.suricata_socket {
        Some(socket) => {
            let (driver, tx) = SuricataDriver::start(socket.clone(), c.suricata_output.clone());
            (Some(driver), Some(tx))
        }
        None => (None, None),
    };
    let primary: Option<Box<dyn Sink>> = match &config.output.target {
        Output::None => None,
        // A named pipe: readers come and go, each gets its own header.
        Output::File(path) if FifoSink::is_fifo(path) => Some(Box::new(FifoSink::new(path, config.snaplen))),
        _ => Some(
            sink::open(SinkSetup {
                output: &config.output,
                interfaces: &config.interfaces,
                hooks: &config.hooks,
                snaplen: config.snaplen,
                filter: &config.filter.expression,
                stats,
                finished,
            })
            .map_err(CaptureError::Storage)?,
        ),
    };
    let mut consumers = Vec::new();
    if let Some(path) = &c.serve {
        let serve = ServeSink::bind(path, config.snaplen)
            .map_err(|source| CaptureError::Output { path: path.clone(), source })?;
        consumers.push(Consumer { name: format!("serve {}", path.display()), sink: Box::new(serve) });
    }
    if let Some(iface) = &c.inject {
        let inject = InjectSink::open(iface).map_err(|e| CaptureError::Consumer(e.to_string()))?;
        consumers.push(Consumer { name: format!("inject {iface}"), sink: Box::new(inject) });
    }
    for target in &c.forward {
        let name = format!("forward {}", target.collector);
        let fwd = VxlanSink::open(target.clone()).map_err(|e| CaptureError::Consumer(e.to_string()))?;
        consumers.push(Consumer { name, sink: Box::new(fwd) });
    }
    Ok(Box::new(Fanout::new(primary, consumers, c.fix_checksums, suricata)))
}

/// Feeds batches to the sink until the drain hangs up or the sink stops (a closed pipe, a full
/// disk, a failure: the report says which), then finishes it with the final counters. Returning
/// drops `done`, which tells the drain the writer is gone.
fn writer_loop(mut sink: Box<dyn Sink>, rx: Receiver<Batch>, stats: StatsSource, done: tokio::sync::oneshot::Sender<()>) -> SinkReport {
    let _done = done;
    let step = |sink: &mut Box<dyn Sink>, batch: Batch| -> Result<(), SinkStop> {
        sink.write_batch(&batch)?;
        while let Ok(next) = rx.try_recv() {
            sink.write_batch(&next)?;
        }
        // Nothing waiting: write what is due.
        sink.idle()
    };
    loop {
        let next = match sink.deadline() {
            Some(at) => rx.recv_timeout(at.saturating_duration_since(std::time::Instant::now())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let result = match next {
            Ok(batch) => step(&mut sink, batch),
            Err(RecvTimeoutError::Timeout) => sink.idle(),
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if result.is_err() {
            break;
        }
    }
    // Detached and drained by now (or stopped early): these are the final counts.
    drop(rx);
    sink.finish(&stats())
}

/// Hands a batch to the writer; a full queue is a counted drop. Returns false once the writer
/// is gone (its output closed or failed).
fn hand_off(tx: &WriterTx, batch: Batch, summary: &mut Summary, queued: &mut u64) -> bool {
    let n = batch.len() as u64;
    match tx.tx.try_send(batch) {
        Ok(()) => {
            *queued += n;
            true
        }
        Err(TrySendError::Full(_)) => {
            summary.writer_dropped += n;
            tx.dropped.fetch_add(n, Ordering::Relaxed);
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
    if let Some(user) = &config.run_as {
        // The programs are attached and the maps open: nothing further needs root. Files are
        // created after this, so they belong to the user.
        user.switch()?;
    }
    let counters = Arc::new(maps.counters);
    let queue_dropped = Arc::new(AtomicU64::new(0));
    let sink = open_output(&config, stats_source(&counters, &queue_dropped))?;
    let mut filter_maps = maps.filter;
    let mut drain = Drain::new(maps.ring, BatchLimits::default()).map_err(CaptureError::Poll)?;
    let (tx, rx) = mpsc::sync_channel::<Batch>(WRITER_QUEUE);
    let tx = WriterTx { tx, dropped: Arc::clone(&queue_dropped) };
    let (done_tx, mut writer_done) = tokio::sync::oneshot::channel::<()>();
    let writer_stats = stats_source(&counters, &queue_dropped);
    let writer = thread::Builder::new()
        .name("tap-writer".into())
        .spawn(move || writer_loop(sink, rx, writer_stats, done_tx))
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
            // The writer stopped by itself (closed pipe, full disk, failure).
            _ = &mut writer_done => { writer_alive = false; break; }
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
    let mut report = writer
        .join()
        .map_err(|_| CaptureError::Write { what: "writer thread".into(), source: io::Error::other("panicked") })?;
    if let Some(e) = report.error {
        return Err(CaptureError::Storage(e));
    }
    if let Some(e) = poll_error {
        return Err(CaptureError::Poll(e));
    }
    summary.kernel = read_counters(&counters);
    if filter_maps.current().graph.is_some() {
        summary.rules = filter_maps.rule_hits();
    }
    summary.filter_installs = filter_maps.installs;
    summary.notes = std::mem::take(&mut report.notes);
    summary.written = report.written;
    summary.written_bytes = report.bytes;
    summary.output_closed = report.closed;
    if let Some((path, stopped)) = report.disk_full {
        summary.output_error = Some(format!("disk full writing {}", path.display()));
        summary.output_stopped = stopped;
    }
    // Everything handed to the writer that did not reach the output (a reader that left, a full
    // disk) is lost: count it.
    summary.writer_dropped += queued.saturating_sub(report.written);
    Ok(summary)
}

/// At shutdown the drain may wait for the writer: nothing else is running any more.
fn hand_off_blocking(tx: &WriterTx, batch: Batch, summary: &mut Summary, queued: &mut u64) -> bool {
    let n = batch.len() as u64;
    if tx.tx.send(batch).is_err() {
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
