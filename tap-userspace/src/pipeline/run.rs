//! `tap capture`: load, attach, drain, write, and on the way out detach and summarise.
//!
//! The drain (Tokio, epoll on the ring) and the writer (a thread of its own) are decoupled by a
//! bounded queue of batches. A batch is a range of the ring itself, given back to the kernel once
//! written, so the ring is the buffer between the programs and the output: an output slower than
//! the traffic fills it, and the programs count what no longer fits (ring full). A full queue
//! drops the batch and counts it as writer drops; the drain never blocks.

use std::{
    future::Future,
    io::{self, Write},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
    },
    thread,
};

use aya::maps::{MapData, PerCpuArray};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::{
    filter::maps::FilterImage,
    kernel::batch::Batch,
    kernel::counters::read_counters,
    kernel::ifstats::{PerInterface, QueueDrops},
    kernel::loader::{self, LoadSpec},
    model::{CaptureConfig, Format, Interface, Output},
    pipeline::drain::{BatchLimits, Drain, POLL_INTERVAL},
    pipeline::live::LiveStats,
    pipeline::summary::{FlowSummary, ProgramCost, Summary},
    sink::{self, CaptureStats, Sink, SinkReport, SinkSetup, SinkStop, StatsSource},
};

/// Errors of a running capture.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Load(#[from] loader::LoadError),
    #[error("cannot open {path}: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing {what} failed: {source}")]
    Write {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Storage(#[from] sink::StorageError),
    #[error(transparent)]
    Store(Box<crate::store::StoreError>),
    #[error("{0}")]
    Consumer(String),
    #[error(transparent)]
    Privileges(#[from] crate::support::privilege::PrivilegeError),
    #[error("ring buffer polling failed: {0}")]
    Poll(#[source] io::Error),
    #[error("cannot switch on BPF run-time statistics (--program-stats): {0}")]
    ProgramStats(#[source] io::Error),
    #[error("cannot install the {signal} handler: {source}")]
    Signal {
        signal: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Batches the writer may have queued before the drain starts dropping. A batch is a range of the
/// ring, not a copy, so what it holds is bounded by the ring: the bound is on their number, and
/// high enough that the ring (the batches' space) fills before the queue does.
const WRITER_QUEUE: usize = 1024;

/// The writer's end of the queue, with the count of packets it could not take, in all and per
/// interface and hook (the statistics a pcapng file reports need them while the capture runs).
struct WriterTx {
    tx: SyncSender<Batch>,
    dropped: Arc<AtomicU64>,
    by_interface: Arc<QueueDrops>,
}

/// Reads the capture's counters for the writer: the kernel's, and the queue's drops, in all
/// and per interface and hook.
fn stats_source(
    counters: &Arc<PerCpuArray<MapData, u64>>,
    dropped: &Arc<AtomicU64>,
    per_interface: &PerInterface,
) -> StatsSource {
    let (counters, dropped) = (Arc::clone(counters), Arc::clone(dropped));
    let per_interface = per_interface.clone();
    Box::new(move || CaptureStats {
        kernel: read_counters(&counters),
        writer_dropped: dropped.load(Ordering::Relaxed),
        interfaces: per_interface.read(),
    })
}

/// Opens the capture's output and its consumers, as one [`sink::fanout::Fanout`]. True with it
/// when the primary output publishes its own progress (the capture writer); otherwise the writer
/// loop counts what it hands over.
fn open_output(
    config: &CaptureConfig,
    stats: StatsSource,
    live: &LiveStats,
) -> Result<(Box<dyn Sink>, bool), CaptureError> {
    use sink::{
        fanout::{Consumer, Fanout},
        inject::InjectSink,
        stream::{FifoSink, ServeSink},
        suricata::SuricataDriver,
        vxlan::VxlanSink,
    };
    let progress = Arc::clone(&live.writer);
    let c = &config.consumers;
    let (suricata, finished) = match &c.suricata_socket {
        Some(socket) => {
            let (driver, tx) = SuricataDriver::start(socket.clone(), c.suricata_output.clone());
            (Some(driver), Some(tx))
        }
        None => (None, None),
    };
    let mut publishes = false;
    let primary: Option<Box<dyn Sink>> = match &config.output.target {
        Output::None => None,
        // A named pipe: readers come and go, each gets its own header.
        Output::File(path) if FifoSink::is_fifo(path) => {
            Some(Box::new(FifoSink::new(path, config.snaplen)))
        }
        _ => Some({
            publishes = true;
            let setup = SinkSetup {
                output: &config.output,
                interfaces: &config.interfaces,
                hooks: &config.hooks,
                snaplen: config.snaplen,
                filter: &config.filter.expression,
                stats,
                finished,
                progress: Some(progress),
            };
            match &config.output.store {
                Some(store) => {
                    let counters = Arc::default();
                    live.set_store(Arc::clone(&counters));
                    crate::store::sink::open(setup, store, counters)
                        .map_err(|e| CaptureError::Store(Box::new(e)))?
                }
                None => sink::open(setup).map_err(CaptureError::Storage)?,
            }
        }),
    };
    let mut consumers = Vec::new();
    // Printing is the output when there is no other (then a closed pipe ends the capture),
    // otherwise a consumer beside it.
    let mut primary = primary;
    if let Some(print) = &config.print {
        let printer =
            sink::print::PrintSink::start(print, &config.interfaces, Arc::clone(&live.printed))
                .map_err(|source| CaptureError::Write {
                    what: "printer thread".into(),
                    source,
                })?;
        if primary.is_none() && !c.any() {
            primary = Some(Box::new(printer));
        } else {
            consumers.push(Consumer {
                name: "print".into(),
                sink: Box::new(printer),
            });
        }
    }
    if let Some(path) = &c.serve {
        let serve =
            ServeSink::bind(path, config.snaplen).map_err(|source| CaptureError::Output {
                path: path.clone(),
                source,
            })?;
        consumers.push(Consumer {
            name: format!("serve {}", path.display()),
            sink: Box::new(serve),
        });
    }
    if let Some(iface) = &c.inject {
        let inject = InjectSink::open(iface).map_err(|e| CaptureError::Consumer(e.to_string()))?;
        consumers.push(Consumer {
            name: format!("inject {iface}"),
            sink: Box::new(inject),
        });
    }
    if let Some(limits) = c.pretrigger {
        let history = Arc::new(sink::pretrigger::History::new(limits));
        live.set_history(Arc::clone(&history));
        consumers.push(Consumer {
            name: "pretrigger".into(),
            sink: Box::new(sink::pretrigger::PretriggerSink::new(history)),
        });
    }
    for target in &c.forward {
        let name = format!("forward {}", target.collector);
        let fwd =
            VxlanSink::open(target.clone()).map_err(|e| CaptureError::Consumer(e.to_string()))?;
        consumers.push(Consumer {
            name,
            sink: Box::new(fwd),
        });
    }
    Ok((
        Box::new(Fanout::new(primary, consumers, c.fix_checksums, suricata)),
        publishes,
    ))
}

/// Feeds batches to the sink until the drain hangs up or the sink stops (a closed pipe, a full
/// disk, a failure: the report says which), then finishes it with the final counters. Returning
/// drops `done`, which tells the drain the writer is gone.
///
/// `count`: where to count the packets handed to the sink, for outputs that publish no progress
/// of their own (consumers only, a named pipe).
fn writer_loop(
    mut sink: Box<dyn Sink>,
    rx: Receiver<Batch>,
    stats: StatsSource,
    done: tokio::sync::oneshot::Sender<()>,
    count: Option<Arc<sink::WriterProgress>>,
) -> SinkReport {
    let _done = done;
    let handed = |n: usize| {
        if let Some(c) = &count {
            c.written.fetch_add(n as u64, Ordering::Relaxed);
        }
    };
    // Each batch is dropped as soon as it is written: that gives its ring space back.
    let take = |sink: &mut Box<dyn Sink>, batch: Batch| -> Result<(), SinkStop> {
        sink.write_batch(&batch)?;
        handed(batch.len());
        Ok(())
    };
    let step = |sink: &mut Box<dyn Sink>, batch: Batch| -> Result<(), SinkStop> {
        take(sink, batch)?;
        while let Ok(next) = rx.try_recv() {
            take(sink, next)?;
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

/// How often the drain must look at the ring without a wake-up: as often as the output flushes
/// when the output is only files (nobody sees a packet before its flush), and every
/// [`POLL_INTERVAL`] when a stream or a consumer takes packets live.
fn poll_interval(config: &CaptureConfig) -> std::time::Duration {
    let c = &config.consumers;
    // The pre-trigger memory is read when an alert's window closes: it must be current.
    let live_consumers = c.any();
    match &config.output.target {
        Output::File(path) if !live_consumers && !sink::stream::FifoSink::is_fifo(path) => {
            config.output.flush_interval
        }
        _ => POLL_INTERVAL,
    }
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
        Err(TrySendError::Full(batch)) => {
            summary.writer_dropped += n;
            tx.dropped.fetch_add(n, Ordering::Relaxed);
            tx.by_interface.add(&batch);
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
pub async fn run(
    config: CaptureConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<Summary, CaptureError> {
    let (_keep, control) = control_channel();
    run_tap(config, shutdown, control, Arc::new(LiveStats::new(false))).await
}

/// What a running capture can be told.
#[derive(Debug, Clone)]
pub enum Control {
    /// Install this filter atomically in the running programs (no detach, no window where a
    /// packet both filters select is lost).
    Filter(FilterImage),
    /// Change sampling (keep 1 in `sample`) and the per-CPU rate cap (packets per second, 0:
    /// none) in place.
    Limits { sample: u32, rate_per_cpu: u32 },
    /// The interfaces to be attached to now: the others are detached, the new ones attached
    /// (an interface that cannot be attached is logged and skipped, the capture goes on).
    Interfaces(Vec<Interface>),
}

/// A channel of [`Control`] messages for [`run_tap`].
pub fn control_channel() -> (
    tokio::sync::mpsc::Sender<Control>,
    tokio::sync::mpsc::Receiver<Control>,
) {
    tokio::sync::mpsc::channel(16)
}

/// Loads on a worker of a multi-threaded runtime without holding up its other tasks (other
/// taps' drains); on a current-thread runtime (`tap capture`) there is nothing else to hold up.
fn load_blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Attachments wanted versus those in place: detaches what is no longer wanted, attaches what
/// is new. An interface that cannot be attached is remembered with its error and not tried
/// again until it goes away and comes back (or gets a new index).
fn reconcile(
    attached: &mut loader::Attached,
    failed: &mut Vec<(Interface, String)>,
    want: &[Interface],
    config: &CaptureConfig,
    live: &LiveStats,
) {
    let current: Vec<Interface> = attached
        .attachments
        .iter()
        .map(|a| a.iface.clone())
        .collect();
    for gone in current.iter().filter(|i| !want.contains(i)) {
        attached.detach_interface(gone.ifindex);
    }
    failed.retain(|(i, _)| want.contains(i));
    for iface in want {
        if attached.attachments.iter().any(|a| a.iface == *iface)
            || failed.iter().any(|(i, _)| i == iface)
        {
            continue;
        }
        if let Err(e) = attached.attach_interface(
            iface,
            &config.hooks,
            config.xdp_mode,
            config.xdp_program.as_deref(),
        ) {
            warn!(iface = %iface.name, error = %e, "cannot attach; the capture goes on without it");
            failed.push((iface.clone(), e.to_string()));
        }
    }
    live.set_attachments(
        &attached.attachments,
        failed
            .iter()
            .map(|(i, e)| (i.name.clone(), e.clone()))
            .collect(),
    );
}

/// The loaded programs' runs and run time, as the kernel's BPF run-time statistics counted them.
/// The object's other programs (never loaded) are left out; a loaded one whose information the
/// kernel refuses is logged, not silently missing.
fn program_costs(ebpf: &aya::Ebpf) -> Vec<ProgramCost> {
    ebpf.programs()
        .filter_map(|(name, program)| {
            let info = match program.info() {
                Ok(info) => info,
                Err(aya::programs::ProgramError::NotLoaded) => return None,
                Err(e) => {
                    warn!(program = name, error = %e, "cannot read the program's run-time statistics");
                    return None;
                }
            };
            Some(ProgramCost {
                name: name.to_owned(),
                runs: info.run_count(),
                run_time_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
            })
        })
        .collect()
}

/// Whether the programs count per interface and hook: for the statistics blocks of a pcapng
/// output, and for readers of `live` that show them (the agent's metrics). Elsewhere nobody
/// reads them, and the programs are spared their few ns per packet.
fn counts_per_interface(config: &CaptureConfig, live: &LiveStats) -> bool {
    let pcapng = config.output.format == Format::Pcapng
        && match &config.output.target {
            Output::None => false,
            Output::Stdout => true,
            Output::File(path) => !sink::stream::FifoSink::is_fifo(path),
        };
    pcapng || live.counts_per_interface()
}

/// [`run`], plus control messages (filter replacements, limits, interfaces) and counters
/// published into `live` while it runs.
pub async fn run_tap(
    config: CaptureConfig,
    shutdown: impl Future<Output = ()>,
    mut control: tokio::sync::mpsc::Receiver<Control>,
    live: Arc<LiveStats>,
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
        per_interface: counts_per_interface(&config, &live),
        flow_budget: config.flow_budget,
    };
    let (mut attached, maps) = load_blocking(|| loader::load_and_attach(&spec))?;
    // From here on, any early return drops `attached`, which detaches.
    // The kernel keeps the statistics on while this descriptor is open.
    let program_stats = config
        .program_stats
        .then(|| aya::sys::enable_stats(aya::sys::Stats::RunTime))
        .transpose()
        .map_err(|e| CaptureError::ProgramStats(e.io_error))?;
    let mut failed: Vec<(Interface, String)> = Vec::new();
    live.set_attachments(&attached.attachments, Vec::new());
    if let Some(user) = &config.run_as {
        // The programs are attached and the maps open: nothing further needs root. Files are
        // created after this, so they belong to the user.
        user.switch()?;
    }
    let counters = Arc::new(maps.counters);
    let flows = maps.flows.map(Arc::new);
    if let Some(f) = &flows {
        live.set_flows(Arc::clone(f));
    }
    let mut drain = Drain::new(maps.ring, BatchLimits::default()).map_err(CaptureError::Poll)?;
    drain.set_poll_interval(poll_interval(&config));
    live.set_maps(Arc::clone(&counters), Some(drain.ring()));
    let per_interface = PerInterface {
        kernel: spec.per_interface.then(|| Arc::clone(&maps.interfaces)),
        queue_drops: Arc::clone(&live.queue_drops),
    };
    live.set_per_interface(per_interface.clone());
    let queue_dropped = Arc::clone(&live.queue_dropped);
    let (sink, publishes) = open_output(
        &config,
        stats_source(&counters, &queue_dropped, &per_interface),
        &live,
    )?;
    let count = (!publishes).then(|| Arc::clone(&live.writer));
    let mut filter_maps = maps.filter;
    live.set_filter(&filter_maps.current().expression);
    live.filter_installs
        .store(filter_maps.installs, Ordering::Relaxed);
    let (tx, rx) = mpsc::sync_channel::<Batch>(WRITER_QUEUE);
    let tx = WriterTx {
        tx,
        dropped: Arc::clone(&queue_dropped),
        by_interface: Arc::clone(&per_interface.queue_drops),
    };
    let (done_tx, mut writer_done) = tokio::sync::oneshot::channel::<()>();
    let writer_stats = stats_source(&counters, &queue_dropped, &per_interface);
    // The writer's log lines (files written, finished) carry the capture's span (a tap's name).
    let span = tracing::Span::current();
    let writer = thread::Builder::new()
        .name("tap-writer".into())
        .spawn(move || span.in_scope(|| writer_loop(sink, rx, writer_stats, done_tx, count)))
        .map_err(|source| CaptureError::Write {
            what: "writer thread".into(),
            source,
        })?;
    info!(attachments = attached.attachments.len(), "capturing");
    live.ready.store(true, Ordering::Relaxed);

    let mut summary = Summary::default();
    // Packets read from the ring and meant for the writer, and those it accepted.
    let mut delivered: u64 = 0;
    let mut queued: u64 = 0;
    let remaining = |delivered: u64| {
        config
            .count
            .map_or(usize::MAX, |c| c.saturating_sub(delivered) as usize)
    };
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
            Some(message) = control.recv() => match message {
                Control::Filter(image) => {
                    let expression = image.expression.clone();
                    match filter_maps.install(image) {
                        Ok(()) => {
                            info!(filter = %expression, "filter replaced");
                            live.set_filter(&expression);
                            live.filter_installs.store(filter_maps.installs, Ordering::Relaxed);
                        }
                        Err(e) => warn!(error = %e, "replacing the filter failed; the old one stays"),
                    }
                }
                Control::Limits { sample, rate_per_cpu } => match filter_maps.set_limits(sample, rate_per_cpu) {
                    Ok(()) => info!(sample, rate_per_cpu, "limits changed"),
                    Err(e) => warn!(error = %e, "changing the limits failed; the old ones stay"),
                },
                Control::Interfaces(want) => reconcile(&mut attached, &mut failed, &want, &config, &live),
            },
            taken = drain.next_batch(remaining(delivered)) => {
                let taken = match taken {
                    Ok(t) => t,
                    Err(e) => { poll_error = Some(e); break; }
                };
                summary.malformed += taken.malformed;
                live.malformed.fetch_add(taken.malformed, Ordering::Relaxed);
                delivered += taken.batch.len() as u64;
                live.count_batch(&taken.batch);
                debug!(packets = taken.batch.len(), bytes = taken.batch.byte_len(), "batch");
                writer_alive = hand_off(&tx, taken.batch, &mut summary, &mut queued);
            }
        }
    }

    if program_stats.is_some() {
        summary.programs = program_costs(attached.ebpf());
    }
    // Detach first, so nothing new arrives, then take what the ring still holds.
    drop(attached);
    drop(program_stats);
    live.set_attachments(&[], Vec::new());
    live.ready.store(false, Ordering::Relaxed);
    loop {
        let want = if writer_alive {
            remaining(delivered)
        } else {
            0
        };
        let taken = drain.take_now(want.max(1));
        summary.malformed += taken.malformed;
        live.malformed.fetch_add(taken.malformed, Ordering::Relaxed);
        let n = taken.batch.len() as u64;
        if n == 0 && taken.malformed == 0 {
            break;
        }
        live.count_batch(&taken.batch);
        if want == 0 {
            // Past -c (or the output is gone): accounted, not written.
            if writer_alive {
                summary.beyond_count += n;
            } else {
                summary.writer_dropped += n;
            }
            continue;
        }
        delivered += n;
        writer_alive = hand_off_blocking(&tx, taken.batch, &mut summary, &mut queued);
    }
    drop(tx);
    let mut report = writer.join().map_err(|_| CaptureError::Write {
        what: "writer thread".into(),
        source: io::Error::other("panicked"),
    })?;
    if let Some(e) = report.error {
        return Err(CaptureError::Storage(e));
    }
    if let Some(e) = poll_error {
        return Err(CaptureError::Poll(e));
    }
    summary.kernel = read_counters(&counters);
    if let (Some(budget), Some(table)) = (config.flow_budget, &flows) {
        let entries = table.entries();
        summary.flow_budget = Some(FlowSummary {
            budget: budget.to_string(),
            table_size: table.size(),
            entries,
            evicted: summary.kernel.flows_new.saturating_sub(entries),
        });
    }
    if filter_maps.current().graph.is_some() {
        summary.rules = filter_maps.rule_hits();
    }
    summary.filter_installs = filter_maps.installs;
    summary.notes = std::mem::take(&mut report.notes);
    summary.written = report.written;
    summary.written_bytes = report.bytes;
    summary.files = report.files;
    summary.output_closed = report.closed;
    summary.not_printed = report.not_printed;
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
