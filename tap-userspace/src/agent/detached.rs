//! The time a tap is not attached where its configuration says it should be: for each tap and
//! each existing interface its names and globs match, from the moment the agent knows it should
//! be attached (the interface appeared, the tap started) until every one of the tap's hooks is
//! attached to it. It is kept per tap name, so it survives the tap's restarts.
//!
//! Shown as `tap_detached_seconds_total{tap,interface}` and `tap_interfaces_detached{tap}`, in
//! `tap ctl status`, and logged: a WARN with the reason when an attachment fails or the tap is
//! down, or when an interface is still not attached after [`GRACE`] (a tap loading its programs,
//! an interface being attached); an INFO when it is attached again after a WARN.

use std::{
    collections::BTreeMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::Serialize;
use tracing::{info, warn};

/// How long an interface may wait for its attachment without a reason before it is logged.
pub const GRACE: Duration = Duration::from_secs(10);

/// Why an interface is not attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The tap is loading its programs or opening its sinks.
    Starting,
    /// The tap is loaded and the interface is on its way to being attached.
    Pending,
    /// Attaching failed (the kernel's error).
    AttachFailed(String),
    /// The tap is down (it failed, or is stopping for a restart).
    TapDown(String),
}

impl Reason {
    /// A failure, logged at once; the others only after [`GRACE`].
    fn is_failure(&self) -> bool {
        matches!(self, Self::AttachFailed(_) | Self::TapDown(_))
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Starting => f.write_str("the tap is starting"),
            Self::Pending => f.write_str("being attached"),
            Self::AttachFailed(e) => write!(f, "attaching failed: {e}"),
            Self::TapDown(e) => write!(f, "the tap is down: {e}"),
        }
    }
}

#[derive(Debug, Default)]
struct Entry {
    /// Time detached in intervals that ended.
    done: Duration,
    /// The interval going on, if detached now: since when and why.
    now: Option<(Instant, Reason)>,
    /// A WARN was logged for the interval going on.
    warned: bool,
}

impl Entry {
    fn total(&self, at: Instant) -> Duration {
        self.done
            + self.now.as_ref().map_or(Duration::ZERO, |(since, _)| {
                at.saturating_duration_since(*since)
            })
    }
}

/// One interface in [`Detached::view`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetachedView {
    pub interface: String,
    /// Seconds detached in all, the interval going on included.
    pub seconds_total: f64,
    /// Detached now: for how many seconds, and why.
    pub now_secs: Option<f64>,
    pub reason: Option<String>,
}

/// A tap's detached time, by interface name.
#[derive(Debug, Default)]
pub struct Detached {
    entries: Mutex<BTreeMap<String, Entry>>,
}

impl Detached {
    /// Records the state at `at`: `missing` are the interfaces the tap should be attached to and
    /// is not, with why; every other interface is attached or not wanted. `tap` names the tap in
    /// logs.
    pub fn update(&self, tap: &str, at: Instant, missing: &[(String, Reason)]) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (iface, entry) in entries.iter_mut() {
            if missing.iter().any(|(m, _)| m == iface) {
                continue;
            }
            if let Some((since, _)) = entry.now.take() {
                let lasted = at.saturating_duration_since(since);
                entry.done += lasted;
                if entry.warned {
                    info!(tap, iface = %iface, seconds = lasted.as_secs_f64(), "attached again");
                }
                entry.warned = false;
            }
        }
        for (iface, reason) in missing {
            let entry = entries.entry(iface.clone()).or_default();
            let since = match &mut entry.now {
                None => {
                    entry.now = Some((at, reason.clone()));
                    at
                }
                Some((since, r)) => {
                    if r != reason {
                        *r = reason.clone();
                        // A new failure is worth its own line.
                        if reason.is_failure() {
                            entry.warned = false;
                        }
                    }
                    *since
                }
            };
            let lasted = at.saturating_duration_since(since);
            if !entry.warned && (reason.is_failure() || lasted >= GRACE) {
                warn!(
                    tap,
                    iface = %iface,
                    reason = %reason,
                    seconds = lasted.as_secs_f64(),
                    "not attached where the configuration says: its packets are not seen"
                );
                entry.warned = true;
            }
        }
    }

    /// Every interface that was ever detached, with its time, as of `at`.
    pub fn view(&self, at: Instant) -> Vec<DetachedView> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(iface, e)| DetachedView {
                interface: iface.clone(),
                seconds_total: e.total(at).as_secs_f64(),
                now_secs: e
                    .now
                    .as_ref()
                    .map(|(since, _)| at.saturating_duration_since(*since).as_secs_f64()),
                reason: e.now.as_ref().map(|(_, r)| r.to_string()),
            })
            .collect()
    }

    /// Interfaces detached now.
    pub fn detached_now(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|e| e.now.is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_adds_up_over_intervals_and_stops_when_attached() {
        let d = Detached::default();
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        d.update("t", t0, &[("vm-a".into(), Reason::Starting)]);
        d.update("t", s(2), &[("vm-a".into(), Reason::Pending)]);
        let v = d.view(s(3));
        assert_eq!(v.len(), 1);
        assert_eq!(
            (
                v[0].seconds_total.to_bits(),
                v[0].now_secs.map(f64::to_bits)
            ),
            (3.0f64.to_bits(), Some(3.0f64.to_bits()))
        );
        assert_eq!(v[0].reason.as_deref(), Some("being attached"));
        d.update("t", s(4), &[]);
        assert_eq!(d.detached_now(), 0);
        let v = d.view(s(100));
        assert_eq!(
            (v[0].seconds_total.to_bits(), v[0].now_secs),
            (4.0f64.to_bits(), None)
        );
        d.update(
            "t",
            s(100),
            &[("vm-a".into(), Reason::AttachFailed("busy".into()))],
        );
        d.update("t", s(101), &[("vm-b".into(), Reason::TapDown("x".into()))]);
        let v = d.view(s(103));
        assert!(
            (v[0].seconds_total - 5.0).abs() < 1e-9,
            "vm-a: 4 s, then 1 s"
        );
        assert_eq!(
            (v[1].interface.as_str(), v[1].now_secs),
            ("vm-b", Some(2.0))
        );
        assert_eq!(d.detached_now(), 1);
    }
}
