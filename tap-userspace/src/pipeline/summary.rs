//! The exit summary, in tcpdump's words.

use std::fmt;

pub use crate::kernel::counters::KernelCounters;

/// The per-flow budget at the end of a capture.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlowSummary {
    /// The budget, as given (`4096 bytes`, `200 packets`).
    pub budget: String,
    /// Flows the table holds at most.
    pub table_size: u32,
    /// Flows in it at the end.
    pub entries: u64,
    /// Flows it evicted to make room: flows added less its entries.
    pub evicted: u64,
}

/// What a capture did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub kernel: KernelCounters,
    /// Packets written to the output.
    pub written: u64,
    /// Bytes written to the output (pcap headers included).
    pub written_bytes: u64,
    /// Files finished (with rotation, one per file).
    pub files: u64,
    /// Packets dropped because the writer was behind (its queue was full).
    pub writer_dropped: u64,
    /// Packets read from the ring after `-c` was reached, not written on purpose.
    pub beyond_count: u64,
    /// Ring records refused as malformed.
    pub malformed: u64,
    /// The output went away (a closed pipe): packets after that were not written.
    pub output_closed: bool,
    /// Hits per rule of the filter in use at the end: `(rule, packets)`; empty without a filter.
    pub rules: Vec<(String, u64)>,
    /// Filters installed (1 + replacements).
    pub filter_installs: u64,
    /// Lines from the consumers (streams, forwarders, monitor interface, Suricata).
    pub notes: Vec<String>,
    /// What went wrong with the output (a full disk), if anything.
    pub output_error: Option<String>,
    /// The capture ended early because of [`Summary::output_error`].
    pub output_stopped: bool,
    /// The programs' own cost while the capture ran (`--program-stats`); empty otherwise.
    pub programs: Vec<ProgramCost>,
    /// The per-flow budget, when the capture had one.
    pub flow_budget: Option<FlowSummary>,
    /// Packets captured but not printed because the printer was behind (`tap capture`
    /// printing at the terminal).
    pub not_printed: u64,
}

/// A kernel program's runs and the time they took, from the kernel's BPF run-time statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProgramCost {
    pub name: String,
    pub runs: u64,
    pub run_time_ns: u64,
}

impl ProgramCost {
    /// Mean nanoseconds per run (0 without runs).
    pub fn ns_per_run(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.run_time_ns as f64 / self.runs as f64
        }
    }
}

impl Summary {
    /// The summary as one JSON object (`tap capture --stats-json`), with the balance of
    /// [`Summary::unaccounted`] added.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            map.insert(
                "unaccounted".into(),
                serde_json::Value::from(self.unaccounted() as i64),
            );
        }
        v
    }

    /// Packets the kernel copied that are neither written nor counted as dropped.
    /// Zero unless something is wrong.
    pub fn unaccounted(&self) -> i128 {
        i128::from(self.kernel.copied)
            - i128::from(self.written)
            - i128::from(self.writer_dropped)
            - i128::from(self.beyond_count)
            - i128::from(self.malformed)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} packets captured", self.written)?;
        writeln!(f, "{} packets received by filter", self.kernel.matched)?;
        writeln!(
            f,
            "{} packets dropped by kernel (ring buffer full)",
            self.kernel.ring_full
        )?;
        write!(f, "{} packets dropped by writer", self.writer_dropped)?;
        if self.beyond_count > 0 {
            write!(
                f,
                "\n{} packets not written after the -c limit",
                self.beyond_count
            )?;
        }
        if self.kernel.sampled_out > 0 {
            write!(
                f,
                "\n{} matched packets skipped by sampling",
                self.kernel.sampled_out
            )?;
        }
        if self.kernel.rate_limited > 0 {
            write!(
                f,
                "\n{} matched packets skipped by the rate cap",
                self.kernel.rate_limited
            )?;
        }
        if self.kernel.truncated > 0 {
            write!(
                f,
                "\n{} packets cut short of the snap length (XDP reads at most {} bytes of a frame)",
                self.kernel.truncated,
                tap_common::config::XDP_MAX_END
            )?;
        }
        if let Some(b) = &self.flow_budget {
            write!(
                f,
                "\n{} packets over the flow budget of {} (not copied)\n{} flows, {} evicted from the flow table of {}",
                self.kernel.over_budget, b.budget, self.kernel.flows_new, b.evicted, b.table_size
            )?;
        }
        if self.kernel.filter_error > 0 {
            write!(
                f,
                "\n{} packets the filter could not evaluate",
                self.kernel.filter_error
            )?;
        }
        for (i, (rule, hits)) in self.rules.iter().enumerate() {
            write!(f, "\nrule {i}: {hits} packets: {rule}")?;
        }
        if self.not_printed > 0 {
            write!(
                f,
                "\n{} packets not printed (printer behind)",
                self.not_printed
            )?;
        }
        for note in &self.notes {
            write!(f, "\n{note}")?;
        }
        if self.kernel.read_error > 0 {
            write!(
                f,
                "\n{} packets the kernel could not read",
                self.kernel.read_error
            )?;
        }
        if self.malformed > 0 {
            write!(f, "\n{} malformed ring records", self.malformed)?;
        }
        for p in &self.programs {
            write!(
                f,
                "\nprogram {}: {} runs, {:.1} ns per run",
                p.name,
                p.runs,
                p.ns_per_run()
            )?;
        }
        if self.output_closed {
            write!(f, "\noutput closed by the reader")?;
        }
        if let Some(e) = &self.output_error {
            if self.output_stopped {
                write!(f, "\ncapture stopped: {e}")?;
            } else {
                write!(f, "\n{e}: later packets dropped by writer")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcpdump_like_lines() {
        let s = Summary {
            kernel: KernelCounters {
                seen: 12,
                matched: 12,
                copied: 10,
                ring_full: 2,
                ..Default::default()
            },
            written: 9,
            writer_dropped: 1,
            ..Default::default()
        };
        let text = s.to_string();
        assert!(text.starts_with(
            "9 packets captured\n12 packets received by filter\n2 packets dropped by kernel"
        ));
        assert!(text.ends_with("1 packets dropped by writer"));
        assert_eq!(s.unaccounted(), 0);
    }

    #[test]
    fn the_flow_budget_shows_only_when_set() {
        let mut s = Summary {
            kernel: KernelCounters {
                seen: 10,
                matched: 10,
                copied: 4,
                over_budget: 6,
                flows_new: 3,
                ..Default::default()
            },
            written: 4,
            ..Default::default()
        };
        assert!(!s.to_string().contains("budget"));
        s.flow_budget = Some(FlowSummary {
            budget: "4096 bytes".into(),
            table_size: 65_536,
            entries: 2,
            evicted: 1,
        });
        assert!(
            s.to_string().ends_with(
                "0 packets dropped by writer\n6 packets over the flow budget of 4096 bytes (not copied)\n\
                 3 flows, 1 evicted from the flow table of 65536"
            ),
            "{s}"
        );
        assert_eq!(s.to_json()["flow_budget"]["evicted"], 1);
    }
}
