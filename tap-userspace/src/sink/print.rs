//! Packets printed as text on standard output ([`crate::print`]), as tcpdump prints them.
//!
//! Formatting runs on a thread of its own. The writer hands it copies of the batches over a
//! queue bounded in packets ([`PRINT_QUEUE_PACKETS`]); when the printer is behind, a batch that
//! does not fit is not printed and counted, so printing never slows the writer, the drain or
//! the ring. Standard output is written in blocks, or packet by packet with `-l` and on a
//! terminal. A reader that goes away (`tap capture | head`) ends the printing; when printing is
//! the capture's only output, that ends the capture too, as it does tcpdump.

use std::{
    collections::HashMap,
    io::{self, IsTerminal as _, Write},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc::{self, SyncSender, TrySendError},
    },
    thread::{self, JoinHandle},
};

use tap_common::event::{DIR_INBOUND, DIR_OUTBOUND};

use super::{CaptureStats, Sink, SinkReport, SinkStop};
use crate::{
    kernel::batch::Batch,
    model::{Interface, PrintConfig},
    print::{Direction, LINKTYPE_ETHERNET, PacketRef, Printer},
};

/// Packets the printer may have queued before the writer stops handing it more (a few seconds
/// of what a terminal can show, a fraction of a second of what a pipe to a file takes).
pub const PRINT_QUEUE_PACKETS: usize = 65_536;

/// Bytes written to standard output at a time, without `-l`.
const BLOCK: usize = 64 * 1024;

/// Counts of the printer, shared with the metrics.
#[derive(Debug, Default)]
pub struct PrintCounts {
    /// Packets printed.
    pub printed: AtomicU64,
    /// Packets not printed because the printer was behind.
    pub behind: AtomicU64,
}

/// The printing consumer: see the module documentation.
pub struct PrintSink {
    tx: Option<SyncSender<Batch>>,
    queued: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
    counts: Arc<PrintCounts>,
    thread: Option<JoinHandle<io::Result<()>>>,
    /// Packets taken (printed or counted as behind).
    taken: u64,
}

impl PrintSink {
    /// Starts the printing thread. With several interfaces, each line names the packet's
    /// interface and direction.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn start(
        config: &PrintConfig,
        interfaces: &[Interface],
        counts: Arc<PrintCounts>,
    ) -> io::Result<Self> {
        let names: HashMap<u32, String> = if interfaces.len() > 1 {
            interfaces
                .iter()
                .map(|i| (i.ifindex, i.name.clone()))
                .collect()
        } else {
            HashMap::new()
        };
        let (tx, rx) = mpsc::sync_channel::<Batch>(1024);
        let queued = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicBool::new(false));
        let line_buffered = config.line_buffered || io::stdout().is_terminal();
        let mut printer = Printer::new(config.options.clone());
        let (q, c, n) = (
            Arc::clone(&queued),
            Arc::clone(&closed),
            Arc::clone(&counts),
        );
        let thread = thread::Builder::new()
            .name("tap-print".into())
            .spawn(move || {
                let stdout = io::stdout();
                let mut out = stdout.lock();
                let mut buf = Vec::with_capacity(BLOCK * 2);
                let result = (|| {
                    for batch in rx {
                        for p in batch.packets() {
                            let interface = (!names.is_empty())
                                .then(|| names.get(&p.header.ifindex).map_or("?", String::as_str));
                            printer.format(
                                &PacketRef {
                                    ts_ns: p.ts_ns,
                                    interface,
                                    direction: match p.header.direction {
                                        DIR_INBOUND => Direction::In,
                                        DIR_OUTBOUND => Direction::Out,
                                        _ => Direction::Unknown,
                                    },
                                    linktype: LINKTYPE_ETHERNET,
                                    orig_len: p.header.orig_len.max(p.header.cap_len),
                                    data: p.data,
                                },
                                &mut buf,
                            );
                            if line_buffered || buf.len() >= BLOCK {
                                out.write_all(&buf)?;
                                if line_buffered {
                                    out.flush()?;
                                }
                                buf.clear();
                            }
                        }
                        n.printed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        q.fetch_sub(batch.len(), Ordering::Relaxed);
                    }
                    out.write_all(&buf)?;
                    out.flush()
                })();
                if result.is_err() {
                    c.store(true, Ordering::Relaxed);
                }
                match result {
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
                    other => other,
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            queued,
            closed,
            counts,
            thread: Some(thread),
            taken: 0,
        })
    }

    fn behind(&self, n: usize) {
        self.counts.behind.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Sink for PrintSink {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkStop> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(SinkStop::Closed);
        }
        let n = batch.len();
        if n == 0 {
            return Ok(());
        }
        self.taken += n as u64;
        if self.queued.load(Ordering::Relaxed) + n > PRINT_QUEUE_PACKETS {
            self.behind(n);
            return Ok(());
        }
        let Some(tx) = &self.tx else {
            return Err(SinkStop::Closed);
        };
        self.queued.fetch_add(n, Ordering::Relaxed);
        match tx.try_send(batch.clone()) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.queued.fetch_sub(n, Ordering::Relaxed);
                self.behind(n);
                Ok(())
            }
            Err(TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(n, Ordering::Relaxed);
                Err(SinkStop::Closed)
            }
        }
    }

    fn finish(mut self: Box<Self>, _stats: &CaptureStats) -> SinkReport {
        drop(self.tx.take());
        let result = self.thread.take().map(JoinHandle::join);
        let mut report = SinkReport {
            written: self.taken,
            closed: self.closed.load(Ordering::Relaxed),
            not_printed: self.counts.behind.load(Ordering::Relaxed),
            ..SinkReport::default()
        };
        match result {
            Some(Ok(Err(e))) => report.notes.push(format!("printing stopped: {e}")),
            Some(Err(_)) => report
                .notes
                .push("printing stopped: the printer panicked".into()),
            _ => {}
        }
        report
    }
}
