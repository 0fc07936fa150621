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
        let line_buffered = config.line_buffered || io::stdout().is_terminal();
        Self::start_to(
            Box::new(io::stdout()),
            line_buffered,
            config,
            interfaces,
            counts,
        )
    }

    /// [`PrintSink::start`] writing to `out`, packet by packet when `line_buffered`.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn start_to(
        mut out: Box<dyn Write + Send>,
        line_buffered: bool,
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
        let mut printer = Printer::new(config.options.clone());
        let (q, c, n) = (
            Arc::clone(&queued),
            Arc::clone(&closed),
            Arc::clone(&counts),
        );
        let thread = thread::Builder::new()
            .name("tap-print".into())
            .spawn(move || {
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

#[cfg(test)]
mod tests {
    use std::sync::{Condvar, Mutex};

    use tap_common::event::PacketHeader;

    use super::*;
    use crate::{kernel::batch::BatchBuilder, print::PrintOptions};

    /// A writer that blocks until the test opens its gate: a terminal that cannot keep up.
    struct Gated {
        gate: Arc<(Mutex<bool>, Condvar)>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (open, cv) = &*self.gate;
            let mut o = open.lock().unwrap();
            while !*o {
                o = cv.wait(o).unwrap();
            }
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn udp_batch(n: usize) -> Batch {
        let mut frame = vec![0u8; 60];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14] = 0x45;
        frame[16..18].copy_from_slice(&46u16.to_be_bytes());
        frame[22] = 64;
        frame[23] = 17;
        frame[26..30].copy_from_slice(&[192, 0, 2, 1]);
        frame[30..34].copy_from_slice(&[192, 0, 2, 2]);
        frame[34..36].copy_from_slice(&5000u16.to_be_bytes());
        frame[36..38].copy_from_slice(&9u16.to_be_bytes());
        frame[38..40].copy_from_slice(&26u16.to_be_bytes());
        let mut b = BatchBuilder::with_capacity(n * 120);
        let header = PacketHeader {
            orig_len: 60,
            ..PacketHeader::default()
        };
        for _ in 0..n {
            b.push_parts(&header, &frame);
        }
        b.finish_with_offset(0)
    }

    /// A printer that cannot keep up never holds the writer back: what does not fit its queue
    /// is counted, and every packet taken is either printed (one line each) or counted.
    #[test]
    fn a_printer_behind_skips_and_counts() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let out = Arc::new(Mutex::new(Vec::new()));
        let counts = Arc::new(PrintCounts::default());
        let config = PrintConfig {
            options: PrintOptions::default(),
            line_buffered: true,
        };
        let mut sink = Box::new(
            PrintSink::start_to(
                Box::new(Gated {
                    gate: Arc::clone(&gate),
                    out: Arc::clone(&out),
                }),
                true,
                &config,
                &[],
                Arc::clone(&counts),
            )
            .unwrap(),
        );
        let batch = udp_batch(1000);
        let batches = 2 * PRINT_QUEUE_PACKETS / 1000;
        for _ in 0..batches {
            sink.write_batch(&batch).unwrap();
        }
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        let report = sink.finish(&CaptureStats::default());
        let taken = (batches * 1000) as u64;
        assert_eq!(report.written, taken);
        let printed = counts.printed.load(Ordering::Relaxed);
        assert!(report.not_printed > 0, "nothing skipped");
        assert!(printed > 0);
        assert_eq!(printed + report.not_printed, taken);
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count() as u64, printed);
        assert!(
            text.lines()
                .all(|l| l.ends_with("IP 192.0.2.1.5000 > 192.0.2.2.9: UDP, length 18")),
            "{}",
            text.lines().next().unwrap_or_default()
        );
    }
}
