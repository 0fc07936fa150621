//! `tap alerts`: run the alert follower on its own and print the evidence requests it makes, one
//! JSON object per line, and its counts at the end (on standard error, as one JSON object after
//! `tap alerts: `). For trying a selection on a live `eve.json`, and for the tests.

use std::{path::PathBuf, time::Duration};

use super::{CaseConfig, EvidenceError, FollowConfig, Selector, Source, Start};

/// `tap alerts`: what to follow, select and how to group alerts into cases (defaults as
/// the command line gives them).
#[derive(Debug, Clone)]
pub struct AlertsOptions {
    /// Follow this eve.json (through rotation and truncation).
    pub eve: Option<PathBuf>,
    /// Listen on this unix socket for Suricata's `filetype: unix_stream` eve-log output.
    pub eve_socket: Option<PathBuf>,
    /// Read the file from its start (default: only alerts written from now on).
    pub from_start: bool,
    /// Read the file to its end once, close every case, print, and exit.
    pub once: bool,
    /// Signature ids (and ranges) to select, e.g. 2100498,2200000-2299999.
    pub sid: Option<String>,
    /// Select alerts of this severity or more severe (1 is the most severe).
    pub severity: Option<u8>,
    /// Signature ids never to select.
    pub exclude_sid: Option<String>,
    /// Seconds of history before the first alert.
    pub before: f64,
    /// Seconds after each alert.
    pub after: f64,
    /// Longest window, seconds.
    pub max_window: f64,
    /// Seconds after a window's end before its request is made.
    pub settle: f64,
    /// Evidence files per second, on average.
    pub rate: f64,
    /// Evidence files at once.
    pub burst: u32,
    /// Flows with an open window, at most.
    pub max_open: usize,
    /// Alerts listed per file, at most.
    pub max_alerts: usize,
    /// Longest EVE line, bytes.
    pub max_line: usize,
    /// Suricata connections served at once (socket only).
    pub max_connections: usize,
}

fn ns(secs: f64) -> u64 {
    Duration::try_from_secs_f64(secs.max(0.0)).map_or(u64::MAX, |d| {
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    })
}

impl AlertsOptions {
    /// The follower's settings.
    ///
    /// # Errors
    /// A signature id list that does not parse.
    pub fn config(&self) -> Result<FollowConfig, EvidenceError> {
        let sids = |s: &Option<String>| {
            s.as_deref()
                .map(Selector::parse_sids)
                .transpose()
                .map(Option::unwrap_or_default)
        };
        let source = match (&self.eve, &self.eve_socket) {
            (Some(path), _) => Source::File {
                path: path.clone(),
                start: if self.from_start {
                    Start::Beginning
                } else {
                    Start::End
                },
            },
            (None, Some(path)) => Source::Socket {
                path: path.clone(),
                max_connections: self.max_connections.max(1),
            },
            (None, None) => Source::Socket {
                path: PathBuf::new(),
                max_connections: 1,
            },
        };
        Ok(FollowConfig {
            source,
            selector: Selector {
                sids: sids(&self.sid)?,
                max_severity: self.severity,
                exclude: sids(&self.exclude_sid)?,
            },
            cases: CaseConfig {
                before_ns: ns(self.before),
                after_ns: ns(self.after),
                max_window_ns: ns(self.max_window),
                settle_ns: ns(self.settle),
                max_open: self.max_open.max(1),
                max_alerts: self.max_alerts.max(1),
                rate: self.rate.max(0.0),
                burst: self.burst.max(1),
                ..CaseConfig::default()
            },
            max_line: self.max_line.max(1),
            poll: Duration::from_millis(100),
            once: self.once,
        })
    }
}

/// Runs `tap alerts` until SIGINT or SIGTERM (or, with `--once`, the end of the file): each
/// request as one line of JSON on standard output (its fields and the evidence file's name),
/// then the counts on standard error.
///
/// # Errors
/// Bad arguments, a file that cannot be read, a socket that cannot be bound.
pub fn run(args: &AlertsOptions) -> Result<super::Stats, EvidenceError> {
    use std::io::Write as _;
    let config = args.config()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| EvidenceError::Eve {
            path: PathBuf::from("(runtime)"),
            source,
        })?;
    let stats = std::sync::Arc::new(std::sync::Mutex::new(super::Stats::default()));
    let result = runtime.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<super::EvidenceRequest>(64);
        let printer = tokio::spawn(async move {
            while let Some(r) = rx.recv().await {
                let line = serde_json::json!({ "file": r.file_name(), "request": r });
                let mut out = std::io::stdout().lock();
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    break;
                }
            }
        });
        let result = super::follow(config, std::sync::Arc::clone(&stats), tx, shutdown()).await;
        let _ = printer.await;
        result
    });
    let stats = stats.lock().map(|s| *s).unwrap_or_default();
    eprintln!(
        "tap alerts: {}",
        serde_json::to_string(&stats).unwrap_or_default()
    );
    result.map(|()| stats)
}

/// The first SIGINT or SIGTERM (never, when they cannot be watched).
async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
        }
        _ => std::future::pending().await,
    }
}
