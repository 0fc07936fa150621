//! Evidence from alerts: Suricata's EVE alerts in, [`EvidenceRequest`]s out (the flow, its
//! Community ID and Suricata `flow_id`, the window [first alert − before, last alert + after],
//! the alerts), and the function that writes one request's packets as a commented pcapng file.
//!
//! Pipeline ([`follow`]): lines from `eve.json` ([`follow::EveFile`]: rotation, truncation,
//! partial and overlong lines) or from Suricata's unix-socket output ([`socket`]) → alerts
//! ([`eve::parse_line`]) → [`Selector`] → cases ([`cases::Cases`]: the rule for many alerts on
//! one flow, the rate limit, the bounds) → requests on a bounded channel, in order of their
//! windows' ends. Every line is counted in [`Stats`]: read, skipped for its length, not an
//! alert, malformed, not selected, merged, covered, rate-limited, over the open-case bound.
//!
//! The flow and its Community ID come from the alert itself: Suricata writes `community_id`
//! when its eve-log output has `community-id: true` (requests without it name their file by
//! `flow_id`). Nothing is recomputed here, so the ID in the file is exactly the one the
//! analyst searches for in Suricata's logs.

pub mod cases;
pub mod cli;
pub mod eve;
pub mod follow;
pub mod socket;
pub mod write;

use std::{
    future::Future,
    ops::RangeInclusive,
    path::PathBuf,
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use tokio::sync::mpsc;
use tracing::{debug, warn};

pub use self::{
    cases::{CaseConfig, CaseCounts, Cases, EvidenceRequest},
    eve::{Alert, AlertMeta, FlowKey},
    follow::{FollowCounts, Start},
    write::{EvidencePacket, Written, write_evidence},
};

/// Default bound on one EVE line, bytes (alerts with payloads and HTTP bodies run to a few KiB).
pub const DEFAULT_MAX_LINE: usize = 256 * 1024;

/// Errors of the follower and the evidence writer.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error(
        "bad signature id list '{value}': {reason} (use ids and ranges, e.g. 2100498,2200000-2299999)"
    )]
    Sids { value: String, reason: String },
    #[error("reading {path}: {source}")]
    Eve {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the EVE socket {path}: {source}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing evidence: {0}")]
    Storage(#[source] crate::sink::StorageError),
    #[error("recording evidence in the manifest: {0}")]
    Custody(#[source] crate::custody::CustodyError),
}

/// Which alerts make evidence: not excluded, and (when any criterion is given) a listed
/// signature id or a severity at or below `max_severity` (1 is the most severe). With no
/// criterion every alert is selected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub sids: Vec<RangeInclusive<u64>>,
    pub max_severity: Option<u8>,
    pub exclude: Vec<RangeInclusive<u64>>,
}

impl Selector {
    /// Parses `2100498,2200000-2299999`.
    ///
    /// # Errors
    /// An item that is not an id or a range of ids.
    pub fn parse_sids(text: &str) -> Result<Vec<RangeInclusive<u64>>, EvidenceError> {
        let bad = |reason: &str| EvidenceError::Sids {
            value: text.to_string(),
            reason: reason.to_string(),
        };
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|item| {
                let (lo, hi) = item.split_once('-').unwrap_or((item, item));
                let n = |s: &str| {
                    s.trim()
                        .parse::<u64>()
                        .map_err(|_| bad(&format!("'{item}' is not an id or a range")))
                };
                let (lo, hi) = (n(lo)?, n(hi)?);
                if lo > hi {
                    return Err(bad(&format!("'{item}' runs backwards")));
                }
                Ok(lo..=hi)
            })
            .collect()
    }

    #[must_use]
    pub fn selects(&self, a: &AlertMeta) -> bool {
        if self.exclude.iter().any(|r| r.contains(&a.sid)) {
            return false;
        }
        if self.sids.is_empty() && self.max_severity.is_none() {
            return true;
        }
        self.sids.iter().any(|r| r.contains(&a.sid))
            || self.max_severity.is_some_and(|m| a.severity <= m)
    }
}

/// Where the alerts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `eve.json`, followed.
    File { path: PathBuf, start: Start },
    /// A socket tap listens on; Suricata connects to it.
    Socket {
        path: PathBuf,
        max_connections: usize,
    },
}

/// The follower's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowConfig {
    pub source: Source,
    pub selector: Selector,
    pub cases: CaseConfig,
    /// Longest EVE line, bytes.
    pub max_line: usize,
    /// How often the file is looked at and due cases are closed.
    pub poll: Duration,
    /// Files only: read to the end once, close every case, and stop.
    pub once: bool,
}

/// The agent's `[evidence]`, validated: the follower, where files go, and which taps' history
/// serves.
#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceConfig {
    pub follow: FollowConfig,
    pub dir: PathBuf,
    /// Tap names, in the file's order (each has a pre-trigger memory or a store).
    pub taps: Vec<String>,
    /// Longest file, bytes.
    pub max_file_bytes: u64,
}

/// What the follower did, from its start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Whole lines read.
    pub lines: u64,
    pub long_lines: u64,
    /// Lines that are not JSON or an alert without the fields tap needs.
    pub bad_lines: u64,
    /// Well-formed events other than alerts.
    pub other_events: u64,
    pub alerts: u64,
    pub selected: u64,
    pub not_selected: u64,
    /// Requests handed over.
    pub requests: u64,
    pub rotations: u64,
    pub truncations: u64,
    pub partial_dropped: u64,
    pub connections: u64,
    pub refused_connections: u64,
    pub cases: CaseCounts,
}

/// Wall clock, ns since the epoch.
fn now_ns() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The alert-to-case step, shared by both sources.
struct Core {
    selector: Selector,
    cases: Cases,
    stats: Stats,
    warned_bad: bool,
}

impl Core {
    fn line(&mut self, line: &[u8], now: u64) {
        match eve::parse_line(line) {
            Ok(Some(alert)) => {
                self.stats.alerts += 1;
                if self.selector.selects(&alert.meta) {
                    self.stats.selected += 1;
                    self.cases.offer(&alert, now);
                } else {
                    self.stats.not_selected += 1;
                }
            }
            Ok(None) => self.stats.other_events += 1,
            Err(e) => {
                self.stats.bad_lines += 1;
                if self.warned_bad {
                    debug!(error = %e, "eve: a bad line");
                } else {
                    self.warned_bad = true;
                    warn!(error = %e, "eve: a line that is not a usable event (more are only counted)");
                }
            }
        }
    }

    /// Hands over `requests`; false when the receiver is gone.
    async fn send(
        &mut self,
        requests: Vec<EvidenceRequest>,
        out: &mpsc::Sender<EvidenceRequest>,
    ) -> bool {
        for r in requests {
            if out.send(r).await.is_err() {
                return false;
            }
            self.stats.requests += 1;
        }
        true
    }

    fn publish(&mut self, shared: &Mutex<Stats>) {
        self.stats.cases = self.cases.counts;
        if let Ok(mut s) = shared.lock() {
            *s = self.stats;
        }
    }
}

/// Runs the follower until `shutdown` (or, with `once`, the end of the file), sending each
/// request to `out` (waiting when it is full) and keeping `stats` current. At the end every
/// open case is closed and sent.
///
/// # Errors
/// The file cannot be read (other than not existing yet), or the socket cannot be bound.
pub async fn follow(
    config: FollowConfig,
    stats: Arc<Mutex<Stats>>,
    out: mpsc::Sender<EvidenceRequest>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), EvidenceError> {
    let mut core = Core {
        selector: config.selector,
        cases: Cases::new(config.cases),
        stats: Stats::default(),
        warned_bad: false,
    };
    let source = Run {
        max_line: config.max_line,
        poll: config.poll,
        once: config.once,
        stats: &stats,
        out: &out,
    };
    let result = match config.source {
        Source::File { path, start } => source.file(&mut core, &path, start, shutdown).await,
        Source::Socket {
            path,
            max_connections,
        } => {
            source
                .socket(&mut core, &path, max_connections, shutdown)
                .await
        }
    };
    let rest = core.cases.flush();
    core.send(rest, &out).await;
    core.publish(&stats);
    result
}

/// What both sources' loops share.
struct Run<'a> {
    max_line: usize,
    poll: Duration,
    once: bool,
    stats: &'a Mutex<Stats>,
    out: &'a mpsc::Sender<EvidenceRequest>,
}

impl Run<'_> {
    async fn file(
        &self,
        core: &mut Core,
        path: &std::path::Path,
        start: Start,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), EvidenceError> {
        tokio::pin!(shutdown);
        let mut eve = follow::EveFile::new(path, start, self.max_line);
        loop {
            let now = now_ns();
            let more = eve.poll(&mut |l| core.line(l, now));
            let c = eve.counts;
            (
                core.stats.lines,
                core.stats.long_lines,
                core.stats.rotations,
                core.stats.truncations,
                core.stats.partial_dropped,
            ) = (
                c.lines,
                c.long_lines,
                c.rotations,
                c.truncations,
                c.partial_dropped,
            );
            let more = more.map_err(|source| EvidenceError::Eve {
                path: path.to_path_buf(),
                source,
            })?;
            let due = core.cases.due(now_ns());
            if !core.send(due, self.out).await {
                return Ok(());
            }
            core.publish(self.stats);
            if self.once && !more {
                return Ok(());
            }
            if !more {
                tokio::select! {
                    () = tokio::time::sleep(self.poll) => {}
                    () = &mut shutdown => return Ok(()),
                }
            }
        }
    }

    async fn socket(
        &self,
        core: &mut Core,
        path: &std::path::Path,
        max_connections: usize,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), EvidenceError> {
        tokio::pin!(shutdown);
        let listener = socket::bind(path)?;
        let counts = Arc::new(socket::SocketCounts::default());
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1024);
        let server = tokio::spawn(socket::serve(
            listener,
            path.to_path_buf(),
            max_connections,
            self.max_line,
            tx,
            Arc::clone(&counts),
        ));
        let copy_counts = |stats: &mut Stats| {
            let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            stats.lines = load(&counts.lines);
            stats.long_lines = load(&counts.long_lines);
            stats.partial_dropped = load(&counts.partial_dropped);
            stats.connections = load(&counts.connections);
            stats.refused_connections = load(&counts.refused);
        };
        let mut tick = tokio::time::interval(self.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                line = rx.recv() => match line {
                    Some(l) => core.line(&l, now_ns()),
                    None => break,
                },
                _ = tick.tick() => {
                    copy_counts(&mut core.stats);
                    let due = core.cases.due(now_ns());
                    if !core.send(due, self.out).await {
                        break;
                    }
                    core.publish(self.stats);
                }
                () = &mut shutdown => break,
            }
        }
        server.abort();
        // Lines already read are still taken.
        while let Ok(l) = rx.try_recv() {
            core.line(&l, now_ns());
        }
        copy_counts(&mut core.stats);
        let _ = std::fs::remove_file(path);
        Ok(())
    }
}
