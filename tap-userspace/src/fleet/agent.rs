//! The agent's side of the fleet: `tap agent` with a `[fleet]` table follows the sessions in
//! etcd and this host's inventory, and runs the taps that realize the sessions whose sources are
//! here, through the agent's own tap machinery (started, changed in place and stopped as the
//! file's taps are).
//!
//! Two tasks:
//! - the **sync** task ([`sync`]) holds the etcd connection: it reads the session and ownership
//!   prefixes, follows them with watches, keeps the status lease alive and writes the statuses.
//!   When etcd fails (a member gone, the whole cluster down) it connects again and reads both
//!   prefixes anew; nothing it does stops a capture.
//! - the **realizer** ([`run`]) holds the last sessions and ownership map read (kept through an
//!   outage), the inventory (read again on every rtnetlink link, address, neighbour or FDB event
//!   and every `resync`), works out the plan ([`super::reconcile`]) and hands the agent the taps
//!   to run. Every [`STATUS_EVERY`] it hands the sync task the statuses to write.
//!
//! # One tap per session and interface
//! The plan orders the sessions of each interface and hook by priority (lower first). Each
//! session there becomes a tap of its own on that interface, whose filter is the session's rule
//! with the rules of the sessions before it excluded: `not (EARLIER...) and (RULE)`. A packet two
//! sessions select is taken by the one with the lower priority number only. The tap's name is
//! `fleet-` and 16 hex digits (a hash of the session, interface and hooks): file taps should not
//! use such names.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::{
    etcd::{Etcd, EtcdError, EtcdSettings, WatchEvent},
    inventory::Inventory,
    keys::Keys,
    netlink::{InventoryEvents, read_inventory},
    owners::Ownership,
    reconcile::{HostSettings, Plan, reconcile, session_rule},
    session::{FORMAT_VERSION, Session, SessionId},
    status::{Counters, State, Status, StatusInterface},
};
use crate::{
    model::{FleetConfig, Hook},
    pipeline::live::Snapshot,
    settings::agent_file::TapConfig,
};

/// How often statuses (counters) are handed to the sync task.
pub const STATUS_EVERY: Duration = Duration::from_secs(1);
/// Pause before connecting again after etcd failed.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// What the agent tells the realizer of one of its taps: its live counters, and its error if it
/// failed.
pub type TapReport = (Snapshot, Option<String>);

/// Reads a tap's report by name (the agent's shared view of its taps).
pub type Reports = Arc<dyn Fn(&str) -> Option<TapReport> + Send + Sync>;

/// The etcd settings of a `[fleet]` table.
#[must_use]
pub fn etcd_settings(config: &FleetConfig) -> EtcdSettings {
    EtcdSettings {
        endpoints: config.etcd.clone(),
        ca_file: config.ca_file.clone(),
        cert_file: config.cert_file.clone(),
        key_file: config.key_file.clone(),
        user: config.user.clone(),
        password: config.password.clone(),
        root: config.prefix.clone(),
        ..EtcdSettings::default()
    }
}

/// What the sync task read, for the realizer.
#[derive(Debug)]
enum Update {
    /// Both prefixes as of one revision (after connecting): replaces what was known.
    Reset {
        sessions: BTreeMap<String, Vec<u8>>,
        owners: BTreeMap<String, Vec<u8>>,
    },
    Sessions(Vec<WatchEvent>),
    Owners(Vec<WatchEvent>),
}

/// The statuses this host wants in etcd, by key.
type StatusSet = BTreeMap<String, Status>;

/// One tap realizing a session on one interface.
#[derive(Debug, Clone)]
struct Realized {
    session: SessionId,
    interface: String,
    hooks: Vec<Hook>,
}

/// The realizer's state.
struct Realizer {
    config: FleetConfig,
    keys: Keys,
    host: HostSettings,
    /// Session values by key below `sessions/`, as last read (kept through an outage).
    sessions: BTreeMap<String, Vec<u8>>,
    owners: BTreeMap<String, Vec<u8>>,
    /// Whether etcd has been read once: before that nothing is realized.
    known: bool,
    inventory: Inventory,
    plan: Plan,
    /// Invalid values: key below `sessions/` and why.
    invalid: Vec<(String, String)>,
    /// Realizing errors found building the taps, by session.
    tap_errors: BTreeMap<SessionId, Vec<String>>,
    taps: BTreeMap<String, Realized>,
    sent: Option<Vec<String>>,
}

/// Runs the fleet side of the agent until `shutdown`: sends the agent the fleet's taps on
/// `desired` whenever they change, reads their counters through `reports`.
pub async fn run(
    config: FleetConfig,
    desired: mpsc::Sender<Vec<TapConfig>>,
    reports: Reports,
    shutdown: impl Future<Output = ()>,
) {
    let keys = Keys::new(&config.prefix);
    let (updates_tx, mut updates) = mpsc::channel::<Update>(64);
    let (statuses_tx, statuses_rx) = watch::channel::<StatusSet>(StatusSet::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let sync_task = tokio::spawn(sync(config.clone(), updates_tx, statuses_rx, stop_rx));

    let mut events = match InventoryEvents::open() {
        Ok(e) => Some(e),
        Err(e) => {
            warn!(error = %e, "cannot follow the inventory's events: it is read every resync only");
            None
        }
    };
    let mut r = Realizer {
        host: HostSettings {
            host: config.host.clone(),
            uplinks: config.uplinks.clone(),
        },
        keys,
        sessions: BTreeMap::new(),
        owners: BTreeMap::new(),
        known: false,
        inventory: Inventory::default(),
        plan: Plan::default(),
        invalid: Vec::new(),
        tap_errors: BTreeMap::new(),
        taps: BTreeMap::new(),
        sent: None,
        config,
    };
    r.read_inventory().await;
    let mut resync = tokio::time::interval(r.config.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync.reset();
    let mut status = tokio::time::interval(STATUS_EVERY);
    status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(u) = updates.recv() => {
                r.apply(u);
                // A burst of changes (a snapshot's worth of watch events) is one plan.
                while let Ok(u) = updates.try_recv() {
                    r.apply(u);
                }
                r.realize(&desired).await;
                let _ = statuses_tx.send(r.statuses(&reports));
            }
            changed = async { events.as_mut().expect("checked").changed().await }, if events.is_some() => {
                if let Err(e) = changed {
                    warn!(error = %e, "following the inventory failed: it is read every resync only");
                    events = None;
                }
                r.read_inventory().await;
                r.realize(&desired).await;
            }
            _ = resync.tick() => {
                r.read_inventory().await;
                r.realize(&desired).await;
            }
            _ = status.tick() => {
                let _ = statuses_tx.send(r.statuses(&reports));
            }
        }
    }
    let _ = stop_tx.send(true);
    if tokio::time::timeout(Duration::from_secs(3), sync_task)
        .await
        .is_err()
    {
        warn!("the fleet's etcd task did not end in time; its lease expires by itself");
    }
}

fn apply_events(map: &mut BTreeMap<String, Vec<u8>>, prefix: &str, events: Vec<WatchEvent>) {
    for e in events {
        match e {
            WatchEvent::Put { key, value, .. } => {
                if let Some(tail) = Keys::tail(&key, prefix) {
                    map.insert(tail.to_string(), value);
                }
            }
            WatchEvent::Delete { key, .. } => {
                if let Some(tail) = Keys::tail(&key, prefix) {
                    map.remove(tail);
                }
            }
        }
    }
}

/// FNV-1a, 64 bits: a stable short name for a tap.
fn fnv64(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The name of the tap realizing `session` on `interface` with `hooks`: `fleet-` and 16 hex
/// digits, the same on every run.
fn tap_name(session: &SessionId, interface: &str, hooks: &[Hook]) -> String {
    let hooks: Vec<&str> = hooks.iter().map(|h| h.name()).collect();
    format!(
        "fleet-{:016x}",
        fnv64(&format!("{session}\n{interface}\n{}", hooks.join(",")))
    )
}

/// The filter of a session's tap: its own rule `mine`, without the packets the rules `earlier`
/// (of the sessions before it on the interface, by priority) take.
fn after_earlier(earlier: &[String], mine: &str) -> String {
    if earlier.is_empty() {
        return mine.to_string();
    }
    let taken: Vec<String> = earlier.iter().map(|r| format!("({r})")).collect();
    format!("not ({}) and ({mine})", taken.join(" or "))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Realizer {
    fn apply(&mut self, u: Update) {
        match u {
            Update::Reset { sessions, owners } => {
                self.sessions = sessions;
                self.owners = owners;
                self.known = true;
            }
            Update::Sessions(events) => {
                apply_events(&mut self.sessions, &self.keys.sessions(), events);
            }
            Update::Owners(events) => apply_events(&mut self.owners, &self.keys.owners(), events),
        }
    }

    async fn read_inventory(&mut self) {
        match tokio::task::spawn_blocking(read_inventory).await {
            Ok(Ok(inv)) => self.inventory = inv,
            Ok(Err(e)) => {
                warn!(error = %e, "reading the inventory failed: the taps stay as they are");
            }
            Err(e) => warn!(error = %e, "the inventory reader ended abnormally"),
        }
    }

    /// Works out the plan and sends the agent its taps when they changed.
    async fn realize(&mut self, desired: &mpsc::Sender<Vec<TapConfig>>) {
        if !self.known {
            return;
        }
        let mut valid: Vec<Session> = Vec::new();
        self.invalid.clear();
        for (tail, value) in &self.sessions {
            let Some(id) = Keys::session_id(tail) else {
                self.invalid.push((
                    tail.clone(),
                    "the key is not sessions/TENANT/NAME with valid names".into(),
                ));
                continue;
            };
            match Session::decode(&id, value) {
                Ok(s) => valid.push(s),
                Err(e) => self.invalid.push((tail.clone(), e.to_string())),
            }
        }
        let owners =
            Ownership::from_entries(self.owners.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
        for (key, why) in &owners.errors {
            warn!(key = %key, error = %why, "ownership entry ignored");
        }
        self.plan = reconcile(&self.host, &valid, &owners, &self.inventory);
        let by_id: BTreeMap<SessionId, &Session> = valid.iter().map(|s| (s.id(), s)).collect();
        let mut taps: Vec<TapConfig> = Vec::new();
        self.taps.clear();
        self.tap_errors.clear();
        for c in &self.plan.captures {
            let mut earlier: Vec<String> = Vec::new();
            for rule in &c.rules {
                let Some(s) = by_id.get(&rule.session) else {
                    continue;
                };
                let mine = session_rule(s);
                let filter = after_earlier(&earlier, &mine);
                earlier.push(mine);
                let name = tap_name(&rule.session, &c.interface.name, &c.hooks);
                match crate::settings::session::fleet_tap(
                    &name,
                    &c.interface.name,
                    &c.hooks,
                    &filter,
                    s.raw.snaplen,
                    &s.raw.target,
                ) {
                    Ok(t) => {
                        self.taps.insert(
                            name,
                            Realized {
                                session: rule.session.clone(),
                                interface: c.interface.name.clone(),
                                hooks: c.hooks.clone(),
                            },
                        );
                        taps.push(t);
                    }
                    Err(e) => self
                        .tap_errors
                        .entry(rule.session.clone())
                        .or_default()
                        .push(format!("{}: {e}", c.interface.name)),
                }
            }
        }
        let names: Vec<String> = taps.iter().map(|t| t.name.clone()).collect();
        // The same names are the same taps only if their settings are too: the agent compares
        // them; sending again costs a comparison, so send on any change of plan.
        let fingerprint: Vec<String> = taps
            .iter()
            .map(|t| {
                format!(
                    "{}|{}|{:?}",
                    t.name, t.capture.filter.expression, t.patterns
                )
            })
            .collect();
        if self.sent.as_ref() == Some(&fingerprint) {
            return;
        }
        info!(
            taps = names.len(),
            sessions = valid.len(),
            "fleet plan changed"
        );
        if desired.send(taps).await.is_ok() {
            self.sent = Some(fingerprint);
        }
    }

    /// The statuses to write now.
    fn statuses(&self, reports: &Reports) -> StatusSet {
        let mut out = StatusSet::new();
        if !self.known {
            return out;
        }
        let at = now_ms();
        let host = &self.config.host;
        for (tail, why) in &self.invalid {
            out.insert(
                self.keys.status_for_key(tail, host),
                Status {
                    version: FORMAT_VERSION,
                    host: host.clone(),
                    session: tail.clone(),
                    state: State::Invalid,
                    interfaces: Vec::new(),
                    counters: Counters::default(),
                    error: Some(why.clone()),
                    updated_ms: at,
                },
            );
        }
        for (id, sp) in &self.plan.sessions {
            let tap_errors = self.tap_errors.get(id);
            if !sp.present() && tap_errors.is_none() {
                continue;
            }
            let mut counters = Counters::default();
            let mut interfaces: BTreeSet<(String, Vec<String>)> = BTreeSet::new();
            let mut last_error: Option<String> = None;
            for (name, t) in self.taps.iter().filter(|(_, t)| &t.session == id) {
                let Some((snap, error)) = reports(name) else {
                    continue;
                };
                counters.packets += snap.read_packets;
                counters.bytes += snap.read_bytes;
                counters.dropped += snap.kernel.ring_full + snap.writer_dropped;
                if !snap.attachments.is_empty() {
                    interfaces.insert((
                        t.interface.clone(),
                        t.hooks.iter().map(|h| h.name().to_string()).collect(),
                    ));
                }
                if let Some((_, e)) = snap.attach_errors.first() {
                    last_error = Some(format!("{}: {e}", t.interface));
                }
                if error.is_some() {
                    last_error = error;
                }
            }
            let errors: Vec<String> = sp
                .errors
                .iter()
                .chain(tap_errors.into_iter().flatten())
                .cloned()
                .collect();
            let state = if sp.refused.is_some() {
                State::Refused
            } else if sp.attachments.is_empty() || (!errors.is_empty() && interfaces.is_empty()) {
                State::Error
            } else {
                State::Active
            };
            let error = sp
                .refused
                .clone()
                .or_else(|| errors.first().cloned())
                .or(last_error);
            out.insert(
                self.keys.status_for_key(&id.to_string(), host),
                Status {
                    version: FORMAT_VERSION,
                    host: host.clone(),
                    session: id.to_string(),
                    state,
                    interfaces: interfaces
                        .into_iter()
                        .map(|(name, hooks)| StatusInterface { name, hooks })
                        .collect(),
                    counters,
                    error,
                    updated_ms: at,
                },
            );
        }
        out
    }
}

/// A status as compared for writing: without its time, so an unchanged one is not written again.
fn comparable(s: &Status) -> String {
    Status {
        updated_ms: 0,
        ..s.clone()
    }
    .to_json()
}

/// The etcd side: connects, reads, follows, keeps the lease and writes the statuses; starts over
/// whenever etcd fails, until `stop`.
async fn sync(
    config: FleetConfig,
    updates: mpsc::Sender<Update>,
    mut statuses: watch::Receiver<StatusSet>,
    mut stop: watch::Receiver<bool>,
) {
    let settings = etcd_settings(&config);
    let mut failures: u64 = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let round = Box::pin(connected(
            &config,
            &settings,
            &updates,
            &mut statuses,
            &mut stop,
        ));
        match round.await {
            Ok(()) => return,
            Err(e) => {
                failures += 1;
                // The first failure of a streak is worth a warning; the rest, a debug line.
                if failures == 1 {
                    warn!(error = %e, "etcd: the sessions running stay as they are; connecting again");
                } else {
                    tracing::debug!(error = %e, failures, "etcd still unreachable");
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(RECONNECT_PAUSE) => {}
        }
    }
}

/// Reads a prefix into a map by key below it.
async fn read_prefix(
    etcd: &Etcd,
    prefix: &str,
) -> Result<(BTreeMap<String, Vec<u8>>, i64), EtcdError> {
    let snap = etcd.get_prefix(prefix).await?;
    let map = snap
        .kvs
        .into_iter()
        .filter_map(|kv| Keys::tail(&kv.key, prefix).map(|t| (t.to_string(), kv.value)))
        .collect();
    Ok((map, snap.revision))
}

/// One connection's life: returns `Ok` on stop, the error that ended it otherwise.
async fn connected(
    config: &FleetConfig,
    settings: &EtcdSettings,
    updates: &mpsc::Sender<Update>,
    statuses: &mut watch::Receiver<StatusSet>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), EtcdError> {
    let etcd = Etcd::connect(settings).await?;
    let keys = etcd.keys().clone();
    let (sessions, rev_s) = read_prefix(&etcd, &keys.sessions()).await?;
    let (owners, rev_o) = read_prefix(&etcd, &keys.owners()).await?;
    let mut watch_s = etcd.watch_prefix(&keys.sessions(), rev_s + 1).await?;
    let mut watch_o = etcd.watch_prefix(&keys.owners(), rev_o + 1).await?;
    info!(
        sessions = sessions.len(),
        owners = owners.len(),
        host = %config.host,
        "etcd: sessions read, following them"
    );
    if updates
        .send(Update::Reset { sessions, owners })
        .await
        .is_err()
    {
        return Ok(());
    }
    let mut lease = etcd.grant_lease(config.lease).await?;
    let mut written: BTreeMap<String, String> = BTreeMap::new();
    statuses.mark_changed();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            events = watch_s.next() => {
                if updates.send(Update::Sessions(events?)).await.is_err() { break; }
            }
            events = watch_o.next() => {
                if updates.send(Update::Owners(events?)).await.is_err() { break; }
            }
            why = lease.wait_lost() => {
                warn!(reason = %why, "etcd: the status lease was lost; writing the statuses under a new one");
                lease = etcd.grant_lease(config.lease).await?;
                written.clear();
                statuses.mark_changed();
            }
            changed = statuses.changed() => {
                if changed.is_err() { break; }
                let want = statuses.borrow_and_update().clone();
                write_statuses(&etcd, lease.id(), &want, &mut written).await?;
            }
        }
    }
    // Stopping: the statuses go with the lease at once rather than after its time to live.
    if let Err(e) = lease.revoke().await {
        warn!(error = %e, "etcd: the status lease could not be revoked; it expires by itself");
    }
    Ok(())
}

/// Writes the statuses that changed and deletes the ones no longer wanted.
async fn write_statuses(
    etcd: &Etcd,
    lease: i64,
    want: &StatusSet,
    written: &mut BTreeMap<String, String>,
) -> Result<(), EtcdError> {
    let gone: Vec<String> = written
        .keys()
        .filter(|k| !want.contains_key(*k))
        .cloned()
        .collect();
    for key in gone {
        match etcd.delete(&key).await {
            Ok(_) | Err(EtcdError::Denied { .. }) => {
                written.remove(&key);
            }
            Err(e) => return Err(e),
        }
    }
    for (key, status) in want {
        let c = comparable(status);
        if written.get(key) == Some(&c) {
            continue;
        }
        match etcd.put(key, status.to_json().as_bytes(), lease).await {
            Ok(_) => {
                written.insert(key.clone(), c);
            }
            Err(EtcdError::Denied { .. }) => {
                warn!(key = %key, "etcd refused the status write: give the agent's user the status prefix");
                written.insert(key.clone(), c);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(tenant: &str, name: &str) -> SessionId {
        SessionId {
            tenant: tenant.into(),
            name: name.into(),
        }
    }

    #[test]
    fn tap_names_are_stable_and_tell_sessions_interfaces_and_hooks_apart() {
        let web = id("acme", "web");
        let both = [Hook::TcIngress, Hook::TcEgress];
        let name = tap_name(&web, "vm1a", &both);
        assert_eq!(name, tap_name(&web, "vm1a", &both));
        assert!(name.starts_with("fleet-") && name.len() == 22, "{name}");
        assert_ne!(name, tap_name(&id("acme", "db"), "vm1a", &both));
        assert_ne!(name, tap_name(&web, "vm1b", &both));
        assert_ne!(name, tap_name(&web, "vm1a", &[Hook::TcIngress]));
    }

    #[test]
    fn a_later_session_does_not_take_what_an_earlier_one_does() {
        let first = "ether host 02:00:5e:00:53:01 and udp port 9";
        let second = "ether host 02:00:5e:00:53:01";
        assert_eq!(after_earlier(&[], first), first);
        let f = after_earlier(&[first.to_string()], second);
        assert_eq!(
            f,
            "not ((ether host 02:00:5e:00:53:01 and udp port 9)) and (ether host 02:00:5e:00:53:01)"
        );
        // What the agent hands the capture: an expression the filter compiler takes.
        crate::filter::compile(&f).expect("compiles");
        let third = after_earlier(&[first.to_string(), second.to_string()], "ip");
        assert!(third.starts_with("not ((ether host"), "{third}");
        crate::filter::compile(&third).expect("compiles");
    }
}
