//! CPU time as `/proc` reports it: the machine's, per CPU and per kind (`/proc/stat`), and one
//! process's user and system time (`/proc/PID/stat`).
//!
//! The kernel counts both in clock ticks (USER_HZ, 100 per second in the files); without
//! CONFIG_IRQ_TIME_ACCOUNTING (this machine's kernel has none) it charges each timer tick
//! (CONFIG_HZ per second) wholly to what the CPU was doing at that tick, so a figure is a sample
//! whose error shrinks with the window: over a window of a second or more on two CPUs it is a
//! few percent.

use std::time::Duration;

use anyhow::{Context as _, Result};

/// Ticks per kind of one CPU (or of all, the aggregate line), in `/proc/stat`'s order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Ticks {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl Ticks {
    fn parse(fields: &[u64]) -> Self {
        let f = |i: usize| fields.get(i).copied().unwrap_or(0);
        Self {
            user: f(0),
            nice: f(1),
            system: f(2),
            idle: f(3),
            iowait: f(4),
            irq: f(5),
            softirq: f(6),
            steal: f(7),
        }
    }

    fn minus(&self, o: &Self) -> Self {
        Self {
            user: self.user.saturating_sub(o.user),
            nice: self.nice.saturating_sub(o.nice),
            system: self.system.saturating_sub(o.system),
            idle: self.idle.saturating_sub(o.idle),
            iowait: self.iowait.saturating_sub(o.iowait),
            irq: self.irq.saturating_sub(o.irq),
            softirq: self.softirq.saturating_sub(o.softirq),
            steal: self.steal.saturating_sub(o.steal),
        }
    }

    /// Ticks spent working: user + nice + system + irq + softirq (idle, iowait and steal, the
    /// time the hypervisor gave to others, are not).
    pub(super) fn busy(&self) -> u64 {
        self.user + self.nice + self.system + self.irq + self.softirq
    }
}

/// A snapshot of `/proc/stat`'s CPU lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct CpuTimes {
    pub all: Ticks,
    pub per_cpu: Vec<Ticks>,
}

impl CpuTimes {
    pub(super) fn now() -> Result<Self> {
        let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        parse_stat(&text).context("no cpu lines in /proc/stat")
    }

    /// What happened between `before` and `self`.
    pub(super) fn since(&self, before: &Self) -> Self {
        Self {
            all: self.all.minus(&before.all),
            per_cpu: self
                .per_cpu
                .iter()
                .zip(&before.per_cpu)
                .map(|(a, b)| a.minus(b))
                .collect(),
        }
    }
}

fn parse_stat(text: &str) -> Option<CpuTimes> {
    let mut times = CpuTimes::default();
    let mut seen_all = false;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(name) = words.next() else { continue };
        if !name.starts_with("cpu") {
            continue;
        }
        let fields: Vec<u64> = words.filter_map(|w| w.parse().ok()).collect();
        if name == "cpu" {
            times.all = Ticks::parse(&fields);
            seen_all = true;
        } else {
            times.per_cpu.push(Ticks::parse(&fields));
        }
    }
    seen_all.then_some(times)
}

/// Clock ticks per second in `/proc` (USER_HZ).
fn user_hz() -> u64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64
}

/// `ticks` as time.
pub(super) fn ticks(ticks: u64) -> Duration {
    Duration::from_nanos(ticks * 1_000_000_000 / user_hz())
}

/// User and system time of a process so far (all its threads), from `/proc/PID/stat`.
pub(super) fn process_times(pid: libc::pid_t) -> Result<(Duration, Duration)> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let (user, system) = parse_process_stat(&text).with_context(|| format!("parsing {path}"))?;
    Ok((ticks(user), ticks(system)))
}

/// utime and stime, fields 14 and 15; the command name (field 2) may hold spaces and
/// parentheses, so counting starts after its last ')'.
fn parse_process_stat(text: &str) -> Option<(u64, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        let text = "cpu  10 1 20 300 4 5 66 7 0 0\ncpu0 5 0 10 150 2 2 33 3 0 0\ncpu1 5 1 10 150 2 3 33 4 0 0\nintr 1\n";
        let t = parse_stat(text).unwrap();
        assert_eq!(t.all.softirq, 66);
        assert_eq!(t.all.steal, 7);
        assert_eq!(t.all.busy(), 10 + 1 + 20 + 5 + 66);
        assert_eq!(t.per_cpu.len(), 2);
        assert_eq!(t.per_cpu[1].irq, 3);
        let later = parse_stat(&text.replace("cpu  10", "cpu  15")).unwrap();
        assert_eq!(later.since(&t).all.user, 5);
        assert_eq!(later.since(&t).all.idle, 0);
        assert!(parse_stat("intr 1\n").is_none());
    }

    #[test]
    fn process_stat_fields() {
        let text = "1234 (tap (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 42 17 0 0 20 0 3 0";
        assert_eq!(parse_process_stat(text), Some((42, 17)));
        assert_eq!(parse_process_stat("garbage"), None);
    }
}
