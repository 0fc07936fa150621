//! One batch, several consumers: the capture output (a file, standard output or a named pipe)
//! and the live consumers (streams, the monitor interface, VXLAN collectors), with checksum
//! fixing applied once for all of them and the Suricata driver told of each finished file.
//!
//! The primary output decides the capture's fate (a closed pipe or a full disk under `stop` ends
//! it); a consumer that fails is dropped from the set and logged, and the others go on.

use std::time::Instant;

use super::{CaptureStats, Sink, SinkReport, SinkStop, checksum, suricata::SuricataDriver};
use crate::kernel::batch::Batch;

/// A named consumer.
pub struct Consumer {
    pub name: String,
    pub sink: Box<dyn Sink>,
}

/// The set of sinks of a capture.
pub struct Fanout {
    primary: Option<Box<dyn Sink>>,
    consumers: Vec<Consumer>,
    fix_checksums: bool,
    suricata: Option<SuricataDriver>,
    /// Packets taken, for a capture whose only outputs are consumers.
    packets: u64,
    notes: Vec<String>,
    /// Packets consumers that stopped early skipped printing.
    not_printed: u64,
}

impl Fanout {
    pub fn new(
        primary: Option<Box<dyn Sink>>,
        consumers: Vec<Consumer>,
        fix_checksums: bool,
        suricata: Option<SuricataDriver>,
    ) -> Self {
        Self {
            primary,
            consumers,
            fix_checksums,
            suricata,
            packets: 0,
            notes: Vec::new(),
            not_printed: 0,
        }
    }
}

impl Sink for Fanout {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkStop> {
        let fixed;
        let batch = if self.fix_checksums {
            fixed = checksum::fix_batch(batch);
            &fixed
        } else {
            batch
        };
        self.packets += batch.len() as u64;
        let mut i = 0;
        while i < self.consumers.len() {
            if self.consumers[i].sink.write_batch(batch).is_err() {
                let gone = self.consumers.remove(i);
                tracing::warn!(consumer = %gone.name, "consumer stopped; the capture goes on");
                let report = gone.sink.finish(&CaptureStats::default());
                self.not_printed += report.not_printed;
                self.notes.extend(report.notes);
                continue;
            }
            i += 1;
        }
        match &mut self.primary {
            Some(p) => p.write_batch(batch),
            None => Ok(()),
        }
    }

    fn idle(&mut self) -> Result<(), SinkStop> {
        for c in &mut self.consumers {
            let _ = c.sink.idle();
        }
        match &mut self.primary {
            Some(p) => p.idle(),
            None => Ok(()),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.primary
            .iter()
            .map(|p| p.deadline())
            .chain(self.consumers.iter().map(|c| c.sink.deadline()))
            .flatten()
            .min()
    }

    fn finish(self: Box<Self>, stats: &CaptureStats) -> SinkReport {
        let Self {
            primary,
            consumers,
            suricata,
            packets,
            mut notes,
            not_printed,
            ..
        } = *self;
        let mut report = match primary {
            Some(p) => p.finish(stats),
            None => SinkReport {
                written: packets,
                ..Default::default()
            },
        };
        for c in consumers {
            let r = c.sink.finish(stats);
            report.not_printed += r.not_printed;
            notes.extend(r.notes);
        }
        if let Some(driver) = suricata {
            notes.extend(driver.finish());
        }
        report.notes.extend(notes);
        report.not_printed += not_printed;
        report
    }
}
