//! From selected alerts to evidence requests: one per flow and window, merged, bounded and
//! rate-limited.
//!
//! The rule for many alerts on one flow. A flow is known by Suricata's `flow_id` together with
//! its `community_id` (each as present; the 5-tuple and VLANs when neither is). The first
//! selected alert on a flow opens a *case* with the window [alert − `before`, alert + `after`].
//! Each later alert on that flow while the case is open joins it: its metadata is added (up to
//! `max_alerts` per case, the rest counted) and the window's end moves to its time + `after`,
//! but never past the window's start + `max_window`. A case closes, and becomes one
//! [`EvidenceRequest`] (one file), once the wall clock passes its end + `settle` (the time the
//! packets need to reach the history). An alert on a flow whose case has closed opens a new
//! case whose window starts where the last one ended (packets are never in two files); if its
//! whole window lies within the closed one it is counted as `covered` and opens nothing.
//!
//! Bounds. Opening a case takes a token from a bucket of `burst` tokens refilled at `rate` per
//! second (wall clock): alerts that find it empty are counted as `rate_limited`. At most
//! `max_open` cases are open at once (`too_many_open`). Alerts joining an open case cost no
//! token and a bounded amount of memory. Memory is thus bounded by `max_open` cases of
//! `max_alerts` alerts, and files by `rate`.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use super::eve::{Alert, AlertMeta, FlowKey};

/// How cases are formed, and their bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseConfig {
    /// ns of history before the first alert.
    pub before_ns: u64,
    /// ns after each alert.
    pub after_ns: u64,
    /// Longest window, ns.
    pub max_window_ns: u64,
    /// ns after a window's end before its case closes.
    pub settle_ns: u64,
    pub max_open: usize,
    pub max_alerts: usize,
    /// Cases opened per second, on average.
    pub rate: f64,
    /// Cases that may open at once.
    pub burst: u32,
    /// Closed cases remembered, to continue rather than repeat their windows.
    pub remember: usize,
}

impl Default for CaseConfig {
    fn default() -> Self {
        const S: u64 = 1_000_000_000;
        Self {
            before_ns: 30 * S,
            after_ns: 30 * S,
            max_window_ns: 600 * S,
            settle_ns: S,
            max_open: 1024,
            max_alerts: 32,
            rate: 10.0,
            burst: 100,
            remember: 4096,
        }
    }
}

/// What became of an alert offered to [`Cases::offer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// It opened a case.
    Opened,
    /// It joined an open case.
    Merged,
    /// Its window lies within a file already requested.
    Covered,
    /// The bucket was empty.
    RateLimited,
    /// `max_open` cases were open.
    TooManyOpen,
}

/// One evidence file to write: the packets of `flow` in [`start_ns`, `end_ns`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvidenceRequest {
    pub flow: FlowKey,
    pub community_id: Option<String>,
    pub flow_id: Option<u64>,
    /// Window start, ns since the epoch.
    pub start_ns: u64,
    /// Window end, ns since the epoch.
    pub end_ns: u64,
    /// The alerts, first one first (at most `max_alerts`).
    pub alerts: Vec<AlertMeta>,
    /// Alerts on the flow beyond those.
    pub more_alerts: u64,
}

impl EvidenceRequest {
    /// `<time>-<sid>-<community-id>.pcapng`: the first alert's time in UTC
    /// (`20261127T101507.123456Z`), its signature id, and the Community ID with `:` and the
    /// base64 characters a file name cannot hold mapped (`:`→`_`, `+`→`-`, `/`→`_`, `=`
    /// dropped), or `flow-<flow_id>` (`flow-unknown`) when Suricata gave none.
    #[must_use]
    pub fn file_name(&self) -> String {
        let first = self.alerts.first();
        let ns = first.map_or(self.start_ns, |a| a.time_ns);
        let t = crate::support::localtime::LocalTime::utc(
            i64::try_from(ns / 1_000_000_000).unwrap_or(0),
        );
        let id = match (&self.community_id, self.flow_id) {
            (Some(c), _) => c
                .chars()
                .filter_map(|ch| match ch {
                    ':' | '/' => Some('_'),
                    '+' => Some('-'),
                    '=' => None,
                    c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => Some('_'),
                })
                .collect(),
            (None, Some(f)) => format!("flow-{f}"),
            (None, None) => "flow-unknown".into(),
        };
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}.{:06}Z-{}-{id}.pcapng",
            t.year,
            t.month,
            t.day,
            t.hour,
            t.minute,
            t.second,
            (ns % 1_000_000_000) / 1000,
            first.map_or(0, |a| a.sid)
        )
    }
}

/// How a case is known.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CaseKey {
    Ids(Option<u64>, Option<String>),
    Tuple(FlowKey),
}

impl CaseKey {
    fn of(alert: &Alert) -> Self {
        if alert.flow_id.is_some() || alert.community_id.is_some() {
            Self::Ids(alert.flow_id, alert.community_id.clone())
        } else {
            Self::Tuple(alert.flow.normalized())
        }
    }
}

#[derive(Debug)]
struct Case {
    request: EvidenceRequest,
}

/// Counts of what [`Cases`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CaseCounts {
    pub opened: u64,
    pub merged: u64,
    pub covered: u64,
    pub rate_limited: u64,
    pub too_many_open: u64,
    /// Alerts not kept in a request's metadata (beyond `max_alerts`).
    pub alerts_not_listed: u64,
    pub closed: u64,
}

/// Open cases, closed ones remembered, and the bucket.
#[derive(Debug)]
pub struct Cases {
    config: CaseConfig,
    open: HashMap<CaseKey, Case>,
    /// Closed cases' window ends, oldest first, at most `remember`.
    closed: VecDeque<(CaseKey, u64)>,
    closed_end: HashMap<CaseKey, u64>,
    tokens: f64,
    /// When the bucket was last refilled, ns.
    refilled_ns: Option<u64>,
    pub counts: CaseCounts,
}

impl Cases {
    #[must_use]
    pub fn new(config: CaseConfig) -> Self {
        Self {
            tokens: f64::from(config.burst),
            config,
            open: HashMap::new(),
            closed: VecDeque::new(),
            closed_end: HashMap::new(),
            refilled_ns: None,
            counts: CaseCounts::default(),
        }
    }

    /// Cases open now.
    #[must_use]
    pub fn open_cases(&self) -> usize {
        self.open.len()
    }

    fn take_token(&mut self, now_ns: u64) -> bool {
        if let Some(last) = self.refilled_ns {
            #[expect(
                clippy::cast_precision_loss,
                reason = "ns between two offers: far below 2^52"
            )]
            let elapsed = now_ns.saturating_sub(last) as f64 / 1e9;
            self.tokens =
                (self.tokens + elapsed * self.config.rate).min(f64::from(self.config.burst));
        }
        self.refilled_ns = Some(now_ns.max(self.refilled_ns.unwrap_or(0)));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes a selected alert at wall-clock time `now_ns` (ns since the epoch).
    pub fn offer(&mut self, alert: &Alert, now_ns: u64) -> Offer {
        let key = CaseKey::of(alert);
        let t = alert.meta.time_ns;
        let cfg = &self.config;
        if let Some(case) = self.open.get_mut(&key) {
            let r = &mut case.request;
            let cap = r.start_ns.saturating_add(cfg.max_window_ns);
            r.end_ns = r.end_ns.max(t.saturating_add(cfg.after_ns).min(cap));
            if r.alerts.len() < cfg.max_alerts {
                r.alerts.push(alert.meta.clone());
            } else {
                r.more_alerts += 1;
                self.counts.alerts_not_listed += 1;
            }
            self.counts.merged += 1;
            return Offer::Merged;
        }
        let mut start = t.saturating_sub(cfg.before_ns);
        let end = t.saturating_add(cfg.after_ns);
        if let Some(&last_end) = self.closed_end.get(&key) {
            if last_end >= end {
                self.counts.covered += 1;
                return Offer::Covered;
            }
            start = start.max(last_end);
        }
        if self.open.len() >= cfg.max_open {
            self.counts.too_many_open += 1;
            return Offer::TooManyOpen;
        }
        if !self.take_token(now_ns) {
            self.counts.rate_limited += 1;
            return Offer::RateLimited;
        }
        let end = end.min(start.saturating_add(self.config.max_window_ns));
        self.open.insert(
            key,
            Case {
                request: EvidenceRequest {
                    flow: alert.flow.clone(),
                    community_id: alert.community_id.clone(),
                    flow_id: alert.flow_id,
                    start_ns: start,
                    end_ns: end,
                    alerts: vec![alert.meta.clone()],
                    more_alerts: 0,
                },
            },
        );
        self.counts.opened += 1;
        Offer::Opened
    }

    /// When the next case closes (ns since the epoch), if any is open.
    #[must_use]
    pub fn next_due(&self) -> Option<u64> {
        self.open
            .values()
            .map(|c| c.request.end_ns.saturating_add(self.config.settle_ns))
            .min()
    }

    /// Closes the cases due at `now_ns`, earliest end first.
    pub fn due(&mut self, now_ns: u64) -> Vec<EvidenceRequest> {
        let settle = self.config.settle_ns;
        let keys: Vec<CaseKey> = self
            .open
            .iter()
            .filter(|(_, c)| c.request.end_ns.saturating_add(settle) <= now_ns)
            .map(|(k, _)| k.clone())
            .collect();
        self.close(keys)
    }

    /// Closes every open case (at shutdown), earliest end first.
    pub fn flush(&mut self) -> Vec<EvidenceRequest> {
        let keys: Vec<CaseKey> = self.open.keys().cloned().collect();
        self.close(keys)
    }

    fn close(&mut self, keys: Vec<CaseKey>) -> Vec<EvidenceRequest> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(case) = self.open.remove(&key) else {
                continue;
            };
            let end = case.request.end_ns;
            self.closed_end.insert(key.clone(), end);
            self.closed.push_back((key, end));
            while self.closed.len() > self.config.remember {
                if let Some((old, old_end)) = self.closed.pop_front() {
                    // A key closed again later keeps its newer end.
                    if self.closed_end.get(&old) == Some(&old_end) {
                        self.closed_end.remove(&old);
                    }
                }
            }
            self.counts.closed += 1;
            out.push(case.request);
        }
        out.sort_by_key(|r| (r.end_ns, r.start_ns));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_795_774_507 * S;

    fn alert(flow_id: u64, t: u64, sid: u64) -> Alert {
        Alert {
            meta: AlertMeta {
                time_ns: t,
                timestamp: String::new(),
                sid,
                gid: 1,
                rev: 1,
                signature: format!("rule {sid}"),
                category: String::new(),
                severity: 3,
            },
            flow_id: Some(flow_id),
            community_id: Some(format!("1:abc+/{flow_id}=")),
            flow: FlowKey {
                proto: 6,
                src_ip: "192.0.2.1".parse().unwrap(),
                src_port: u16::try_from(flow_id % 60_000).unwrap(),
                dest_ip: "198.51.100.1".parse().unwrap(),
                dest_port: 80,
                vlan: Vec::new(),
            },
        }
    }

    fn config() -> CaseConfig {
        CaseConfig {
            before_ns: 5 * S,
            after_ns: 2 * S,
            max_window_ns: 20 * S,
            settle_ns: S,
            max_open: 100,
            max_alerts: 3,
            rate: 10.0,
            burst: 5,
            remember: 10,
        }
    }

    #[test]
    fn alerts_on_one_flow_make_one_request() {
        let mut c = Cases::new(config());
        assert_eq!(c.offer(&alert(1, T0, 7), T0), Offer::Opened);
        // 1 s later: the end moves to T0 + 3 s.
        assert_eq!(c.offer(&alert(1, T0 + S, 8), T0 + S), Offer::Merged);
        assert!(c.due(T0 + 3 * S).is_empty(), "not settled yet");
        assert_eq!(c.next_due(), Some(T0 + 4 * S));
        for k in 0..3 {
            c.offer(&alert(1, T0 + 2 * S, 9 + k), T0 + 2 * S);
        }
        let r = c.due(T0 + 10 * S);
        assert_eq!(r.len(), 1);
        let r = &r[0];
        assert_eq!((r.start_ns, r.end_ns), (T0 - 5 * S, T0 + 4 * S));
        assert_eq!(
            r.alerts.iter().map(|a| a.sid).collect::<Vec<_>>(),
            [7, 8, 9]
        );
        assert_eq!(r.more_alerts, 2);
        assert_eq!(c.counts.merged, 4);
        assert_eq!(r.file_name(), "20261127T101507.000000Z-7-1_abc-_1.pcapng");
    }

    #[test]
    fn a_window_stops_growing_at_its_maximum() {
        let mut c = Cases::new(config());
        c.offer(&alert(1, T0, 1), T0);
        for k in 1..30 {
            c.offer(&alert(1, T0 + k * S, 1), T0 + k * S);
        }
        let r = c.flush();
        assert_eq!(r[0].end_ns - r[0].start_ns, 20 * S);
    }

    #[test]
    fn a_later_alert_continues_where_the_last_file_ended() {
        let mut c = Cases::new(config());
        c.offer(&alert(1, T0, 1), T0);
        let first = c.due(T0 + 10 * S);
        assert_eq!(first[0].end_ns, T0 + 2 * S);
        // Within the written window (a repeated alert): nothing new.
        assert_eq!(c.offer(&alert(1, T0, 1), T0 + 10 * S), Offer::Covered);
        // Later: a new window, starting at the old end.
        assert_eq!(
            c.offer(&alert(1, T0 + 4 * S, 1), T0 + 10 * S),
            Offer::Opened
        );
        let second = c.flush();
        assert_eq!(
            (second[0].start_ns, second[0].end_ns),
            (T0 + 2 * S, T0 + 6 * S)
        );
    }

    #[test]
    fn bursts_are_rate_limited_and_bounded() {
        let mut c = Cases::new(config());
        // 10,000 alerts on distinct flows within one second.
        for k in 0..10_000u64 {
            let now = T0 + k * 100_000;
            c.offer(&alert(k, now, 1), now);
        }
        // The burst of 5, plus 10 per second over the 1 s that passed (rounding aside).
        assert_eq!(c.counts.opened, 14, "{:?}", c.counts);
        assert_eq!(c.counts.rate_limited, 10_000 - 14);
        assert_eq!(c.open_cases(), 14);
        // The open cases are bounded too.
        let mut c = Cases::new(CaseConfig {
            rate: 1e9,
            burst: 1_000_000,
            ..config()
        });
        for k in 0..10_000u64 {
            c.offer(&alert(k, T0, 1), T0);
        }
        assert_eq!(c.open_cases(), 100);
        assert_eq!(c.counts.too_many_open, 9_900);
        // Memory of closed cases stays bounded.
        assert_eq!(c.due(T0 + 100 * S).len(), 100);
        assert!(c.closed.len() <= 10 && c.closed_end.len() <= 10);
    }

    #[test]
    fn names_without_a_community_id() {
        let mut a = alert(42, T0 + 1_500_000, 5);
        a.community_id = None;
        let mut c = Cases::new(config());
        c.offer(&a, T0);
        assert_eq!(
            c.flush()[0].file_name(),
            "20261127T101507.001500Z-5-flow-42.pcapng"
        );
    }
}
