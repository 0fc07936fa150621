//! `tap agent`: several named taps from one configuration file, as a long-running service.
//!
//! Each tap is a capture of its own ([`crate::pipeline::run::run_tap`]: its loaded object, ring,
//! programs and writer), started with its validated [`crate::settings::agent_file::TapConfig`] and stopped by its own
//! shutdown future. The agent's loop owns the set of taps and does what changes it:
//!
//! - it follows the interfaces through rtnetlink ([`crate::kernel::links`]: link events, and a dump
//!   every [`RESYNC`]) and tells each tap the ones its names and globs match now
//!   ([`Control::Interfaces`]): new ones are attached, vanished ones released, without touching
//!   the ring, the writer or the other interfaces. An interface is released only on positive
//!   evidence that it is gone; failing to read the interfaces changes nothing attached;
//! - every [`TICK`] it accounts for each interface a tap should be attached to and is not
//!   ([`detached`]: a counter, a WARN with the reason, `tap ctl status`);
//! - SIGHUP and `tap ctl reload` re-read the file: an invalid file is refused and logged, the old
//!   configuration runs on; otherwise filters and limits are swapped in place, taps are added and
//!   removed, and a tap whose other settings changed is restarted alone;
//! - a tap that fails (its output failed, it could not load) is marked failed; the next reload
//!   starts it again.
//!
//! Alongside run the control socket ([`control`]) and the metrics endpoint ([`metrics`]), which
//! read the taps' [`LiveStats`] directly. Both are bounded listeners ([`crate::support::listener`]): no
//! client can take the descriptors the capture needs.

pub mod control;
pub mod detached;
pub mod evidence;
pub mod follow;
pub mod metrics;
pub mod query;

use std::{
    collections::HashMap,
    future::Future,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

pub use crate::settings::agent_file::DEFAULT_CONTROL_SOCKET;
use crate::settings::agent_file::{AgentConfig, AgentConfigError, TapConfig};
use serde::Serialize;
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tracing::{Instrument as _, error, info, info_span, warn};

use crate::{
    kernel::links::{Link, LinkError, Links},
    model::Interface,
    pipeline::live::{LiveStats, Snapshot},
    pipeline::run::Control,
};
use detached::{Detached, DetachedView, Reason};

/// How often the agent accounts for interfaces not attached, and sends a tap the interfaces its
/// queue could not take before.
pub const TICK: Duration = Duration::from_millis(250);

/// How often the whole interface table is read again, besides following its events.
pub const RESYNC: Duration = Duration::from_secs(10);

/// Errors that keep the agent from starting.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] AgentConfigError),
    #[error("control socket {path}: {source}")]
    Control {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics endpoint {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("query endpoint {addr}: {source}")]
    Query {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot follow the network interfaces: {0}")]
    Links(#[from] LinkError),
}

/// Where a tap is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TapState {
    /// Loading its programs and opening its sinks.
    Starting,
    /// Capturing: attached to at least one interface.
    Running,
    /// Loaded and ready, but no interface matches now.
    Waiting,
    /// It stopped on an error (kept until the next reload, which starts it again).
    Failed,
    /// Being stopped (removed or restarted by a reload, or the agent is exiting).
    Stopping,
}

/// What the status and metrics readers see of one tap.
#[derive(Debug)]
pub struct TapShared {
    pub name: String,
    pub patterns: Vec<String>,
    pub hooks: Vec<&'static str>,
    pub live: Arc<LiveStats>,
    state: Mutex<(TapState, Option<String>)>,
    /// Restarts by reloads since the agent started (counters start over at each).
    pub restarts: u64,
    pub started: Instant,
    /// Time not attached where it should be, by interface (kept across restarts).
    pub detached: Arc<Detached>,
}

impl TapShared {
    /// The state, with [`TapState::Running`] and [`TapState::Waiting`] told apart by the
    /// attachments in place, and the error of a failed tap.
    pub fn state(&self, snapshot: &Snapshot) -> (TapState, Option<String>) {
        let (state, error) = self.state.lock().expect("tap state lock").clone();
        match state {
            TapState::Starting if snapshot.ready && snapshot.attachments.is_empty() => {
                (TapState::Waiting, error)
            }
            TapState::Starting if snapshot.ready => (TapState::Running, error),
            other => (other, error),
        }
    }

    fn set_state(&self, state: TapState, error: Option<String>) {
        *self.state.lock().expect("tap state lock") = (state, error);
    }
}

/// What the control socket and metrics read: the taps in file order and the agent's counters.
#[derive(Debug)]
pub struct AgentShared {
    pub config_path: PathBuf,
    pub taps: Mutex<Vec<Arc<TapShared>>>,
    /// Reloads applied.
    pub reloads: AtomicU64,
    /// Reloads refused (the file did not validate).
    pub reload_failures: AtomicU64,
    pub last_reload_error: Mutex<Option<String>>,
    pub started: Instant,
    /// The evidence writer's counts, while `[evidence]` runs.
    pub evidence: Mutex<Option<Arc<evidence::EvidenceShared>>>,
}

impl AgentShared {
    pub fn new(config_path: PathBuf) -> Self {
        Self {
            config_path,
            taps: Mutex::default(),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            last_reload_error: Mutex::default(),
            started: Instant::now(),
            evidence: Mutex::default(),
        }
    }

    /// The taps now, in file order.
    pub fn taps(&self) -> Vec<Arc<TapShared>> {
        self.taps.lock().expect("agent taps lock").clone()
    }
}

/// A request from the control socket to the agent's loop.
#[derive(Debug)]
pub enum Request {
    /// Re-read the file; answered with what was done, or why the file was refused.
    Reload(oneshot::Sender<Result<String, String>>),
}

/// One tap as the loop holds it.
struct Running {
    config: TapConfig,
    shared: Arc<TapShared>,
    control: mpsc::Sender<Control>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    generation: u64,
    /// The interface set last sent: only a change is sent again.
    sent: Option<Vec<Interface>>,
}

/// A tap task's end, reported to the loop.
struct Ended {
    name: String,
    generation: u64,
    error: Option<String>,
}

/// The agent's loop and its state.
struct Agent {
    config: AgentConfig,
    shared: Arc<AgentShared>,
    taps: HashMap<String, Running>,
    restarts: HashMap<String, u64>,
    next_generation: u64,
    ended_tx: mpsc::Sender<Ended>,
    interfaces: Vec<Link>,
    /// Each tap's detached time, by tap name (kept while the tap is in the file).
    detached: HashMap<String, Arc<Detached>>,
    control_server: Option<control::Server>,
    metrics_server: Option<metrics::Server>,
    query_server: Option<query::Server>,
    requests_tx: mpsc::Sender<Request>,
    evidence: Option<evidence::Runner>,
    /// The taps realizing fleet sessions here ([`crate::fleet::agent`]), in its order.
    fleet: Vec<TapConfig>,
}

/// Tells systemd (Type=notify) how the service is doing; nothing without $NOTIFY_SOCKET.
pub fn sd_notify(state: &str) {
    use std::os::{linux::net::SocketAddrExt as _, unix::net::UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let result = match path.strip_prefix('@') {
        Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a)),
        None => sock.send_to(state.as_bytes(), &path),
    };
    if let Err(e) = result {
        warn!(error = %e, "cannot notify systemd");
    }
}

/// Runs the agent from the file at `path` until `shutdown` resolves; each message on `hangups`
/// (SIGHUP) reloads. The file must validate for the agent to start.
pub async fn run(
    path: &Path,
    shutdown: impl Future<Output = ()>,
    mut hangups: mpsc::Receiver<()>,
) -> Result<(), AgentError> {
    let config = AgentConfig::load(path)?;
    // Before any listener: the descriptor budget of their clients follows the raised limit.
    let nofile = crate::support::listener::descriptor_limit();
    let mut links = Links::open().await?;
    let shared = Arc::new(AgentShared::new(path.to_path_buf()));
    let (requests_tx, mut requests) = mpsc::channel::<Request>(8);
    let (ended_tx, mut ended) = mpsc::channel::<Ended>(64);
    let control_server = Some(control::Server::start(
        &config.control_socket,
        Arc::clone(&shared),
        requests_tx.clone(),
    )?);
    let metrics_server = match config.metrics_listen {
        Some(addr) => Some(metrics::Server::start(addr, Arc::clone(&shared)).await?),
        None => None,
    };
    let query_server = match &config.query {
        Some(q) => Some(query::Server::start(q, query::stores(&config)).await?),
        None => None,
    };
    let mut agent = Agent {
        config,
        shared,
        taps: HashMap::new(),
        restarts: HashMap::new(),
        next_generation: 0,
        ended_tx,
        interfaces: links.links(),
        detached: HashMap::new(),
        control_server,
        metrics_server,
        query_server,
        requests_tx,
        evidence: None,
        fleet: Vec::new(),
    };
    // The fleet's side: the taps it wants arrive on `fleet_rx`; it reads their counters from the
    // shared view.
    let (fleet_tx, mut fleet_rx) = mpsc::channel::<Vec<TapConfig>>(4);
    let (fleet_stop, fleet_stopped) = oneshot::channel::<()>();
    let fleet_task = agent.config.fleet.clone().map(|fleet| {
        let view = Arc::clone(&agent.shared);
        let reports: crate::fleet::agent::Reports = Arc::new(move |name: &str| {
            let tap = view.taps().into_iter().find(|t| t.name == name)?;
            let snapshot = tap.live.snapshot();
            let (state, error) = tap.state(&snapshot);
            Some((
                snapshot,
                (state == TapState::Failed).then_some(error).flatten(),
            ))
        });
        info!(host = %fleet.host, etcd = %fleet.etcd.join(","), "realizing the fleet's sessions");
        tokio::spawn(
            crate::fleet::agent::run(fleet, fleet_tx, reports, async move {
                let _ = fleet_stopped.await;
            })
            .instrument(info_span!("fleet")),
        )
    });
    if agent.config.taps.is_empty() && agent.config.fleet.is_none() {
        warn!(config = %path.display(), "no [[tap]] in the configuration: nothing to capture until a reload adds one");
    }
    for tap in agent.config.taps.clone() {
        agent.start(tap);
    }
    agent.publish();
    agent.start_evidence();
    info!(
        config = %path.display(),
        taps = agent.taps.len(),
        descriptors = nofile,
        client_connections = crate::support::listener::connection_budget(),
        "agent ready"
    );
    sd_notify("READY=1");

    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resync = tokio::time::interval(RESYNC);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync.reset();
    // Link events are read while this holds; after an error they wait for the next resync, so
    // a socket that keeps failing cannot spin the loop.
    let mut following = true;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(()) = hangups.recv() => {
                info!("SIGHUP: reloading the configuration");
                let _ = agent.reload().await;
            }
            Some(request) = requests.recv() => match request {
                Request::Reload(reply) => {
                    info!("control socket: reloading the configuration");
                    let _ = reply.send(agent.reload().await);
                }
            },
            Some(end) = ended.recv() => agent.ended(end),
            Some(taps) = fleet_rx.recv() => agent.set_fleet(taps).await,
            changed = links.changed(), if following => match changed {
                Ok(true) => agent.set_interfaces(links.links()),
                Ok(false) => {}
                Err(e) => {
                    warn!(error = %e, "following the interfaces failed: nothing changes until the next resync");
                    following = false;
                }
            },
            _ = resync.tick() => match links.resync().await {
                Ok(changed) => {
                    if changed {
                        info!("the interface table had changed unseen: following the dump");
                        agent.set_interfaces(links.links());
                    }
                    following = true;
                }
                Err(e) => warn!(error = %e, "reading the interfaces failed: the taps stay attached as they are"),
            },
            _ = tick.tick() => {
                agent.follow_interfaces();
                agent.account();
            }
        }
    }
    sd_notify("STOPPING=1");
    info!("agent stopping");
    // Before the taps: the open cases are written from their histories.
    agent.stop_evidence().await;
    // The fleet's task next: it revokes its lease, so the statuses go at once.
    let _ = fleet_stop.send(());
    if let Some(task) = fleet_task {
        let _ = task.await;
    }
    let names: Vec<String> = agent
        .config
        .taps
        .iter()
        .chain(&agent.fleet)
        .map(|t| t.name.clone())
        .collect();
    for name in names {
        agent.stop(&name).await;
    }
    if let Some(s) = agent.control_server.take() {
        s.stop();
    }
    if let Some(s) = agent.metrics_server.take() {
        s.stop();
    }
    info!("agent stopped");
    Ok(())
}

impl Agent {
    /// Starts `[evidence]`, when the configuration has it.
    fn start_evidence(&mut self) {
        if let Some(config) = self.config.evidence.clone() {
            let runner = evidence::Runner::start(
                config,
                Arc::clone(&self.shared),
                query::stores(&self.config),
            );
            *self.shared.evidence.lock().expect("evidence lock") = Some(Arc::clone(&runner.shared));
            self.evidence = Some(runner);
        }
    }

    async fn stop_evidence(&mut self) {
        if let Some(runner) = self.evidence.take() {
            runner.stop().await;
        }
    }

    /// The interfaces now: each tap is told the ones it matches.
    fn set_interfaces(&mut self, interfaces: Vec<Link>) {
        self.interfaces = interfaces;
        self.follow_interfaces();
        self.account();
    }

    /// The interfaces tap `tap` should be attached to now.
    fn wanted(&self, tap: &TapConfig) -> Vec<Interface> {
        follow::select(&self.interfaces, &tap.patterns)
    }

    /// Records, for each tap, the interfaces it should be attached to and is not, and why.
    fn account(&self) {
        let at = Instant::now();
        for tap in self.taps.values() {
            let attachment = tap.shared.live.attachment_state();
            let (state, error) = tap.shared.state.lock().expect("tap state lock").clone();
            let down = match state {
                TapState::Failed => Some(Reason::TapDown(error.unwrap_or_else(|| "failed".into()))),
                TapState::Stopping => Some(Reason::TapDown("stopping".into())),
                _ => None,
            };
            let missing = follow::missing(
                &self.wanted(&tap.config),
                &tap.config.capture.hooks,
                &attachment,
                down.as_ref(),
            );
            tap.shared.detached.update(&tap.config.name, at, &missing);
        }
    }

    fn start(&mut self, tap: TapConfig) {
        let live = Arc::new(LiveStats::new(true));
        let restarts = self.restarts.get(&tap.name).copied().unwrap_or(0);
        let detached = Arc::clone(self.detached.entry(tap.name.clone()).or_default());
        let shared = Arc::new(TapShared {
            name: tap.name.clone(),
            patterns: tap.patterns.clone(),
            hooks: tap.capture.hooks.iter().map(|h| h.name()).collect(),
            live: Arc::clone(&live),
            state: Mutex::new((TapState::Starting, None)),
            restarts,
            started: Instant::now(),
            detached,
        });
        let (control, control_rx) = crate::pipeline::run::control_channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        self.next_generation += 1;
        let generation = self.next_generation;
        let ended = self.ended_tx.clone();
        let name = tap.name.clone();
        let capture = tap.capture.clone();
        let span = info_span!("tap", name = %tap.name);
        let task = tokio::spawn(
            async move {
                info!("starting");
                let result = crate::pipeline::run::run_tap(
                    capture,
                    async move {
                        let _ = stop_rx.await;
                    },
                    control_rx,
                    live,
                )
                .await;
                let error = match result {
                    Ok(summary) => {
                        info!(
                            matched = summary.kernel.matched,
                            captured = summary.kernel.copied,
                            written = summary.written,
                            ring_dropped = summary.kernel.ring_full,
                            writer_dropped = summary.writer_dropped,
                            sampled_out = summary.kernel.sampled_out,
                            rate_limited = summary.kernel.rate_limited,
                            over_budget = summary.kernel.over_budget,
                            files = summary.files,
                            unaccounted = summary.unaccounted() as i64,
                            "stopped"
                        );
                        for note in &summary.notes {
                            info!("{note}");
                        }
                        summary
                            .output_error
                            .clone()
                            .or_else(|| summary.output_closed.then(|| "output closed".to_string()))
                    }
                    Err(e) => {
                        let text = crate::support::excerpt::one_line(&e);
                        error!(error = %text, "failed");
                        Some(text)
                    }
                };
                let _ = ended
                    .send(Ended {
                        name,
                        generation,
                        error,
                    })
                    .await;
            }
            .instrument(span),
        );
        self.taps.insert(
            tap.name.clone(),
            Running {
                config: tap,
                shared,
                control,
                stop: Some(stop),
                task,
                generation,
                sent: None,
            },
        );
        self.follow_interfaces();
        self.account();
    }

    /// Stops a tap and waits until its files are finished.
    async fn stop(&mut self, name: &str) {
        let Some(mut tap) = self.taps.remove(name) else {
            return;
        };
        tap.shared.set_state(TapState::Stopping, None);
        if let Some(stop) = tap.stop.take() {
            let _ = stop.send(());
        }
        if let Err(e) = (&mut tap.task).await {
            error!(tap = name, error = %e, "tap task ended abnormally");
        }
        // Detached from here until a restart attaches again (or the tap is removed, and with
        // it this account).
        let missing: Vec<(String, Reason)> = self
            .wanted(&tap.config)
            .into_iter()
            .map(|i| (i.name, Reason::Starting))
            .collect();
        tap.shared.detached.update(name, Instant::now(), &missing);
    }

    /// A tap task ended by itself (a failure, its output gone): mark it.
    fn ended(&mut self, end: Ended) {
        let Some(tap) = self.taps.get_mut(&end.name) else {
            return;
        };
        if tap.generation != end.generation {
            return;
        }
        let error = end.error.unwrap_or_else(|| "stopped".to_string());
        warn!(tap = %end.name, error = %error, "tap is down until the next reload");
        tap.shared.set_state(TapState::Failed, Some(error));
        tap.stop = None;
    }

    /// Sends each tap the interfaces it matches now, when that changed.
    fn follow_interfaces(&mut self) {
        for tap in self.taps.values_mut() {
            let want = follow::select(&self.interfaces, &tap.config.patterns);
            if tap.sent.as_ref() == Some(&want) {
                continue;
            }
            // A full queue (the tap still loading) is tried again at the next poll.
            if tap
                .control
                .try_send(Control::Interfaces(want.clone()))
                .is_ok()
            {
                tap.sent = Some(want);
            }
        }
    }

    /// Starts `tap`, or brings the running tap of its name to it: in place (filter, limits,
    /// interfaces) when it can, by a restart when other settings changed or it had failed.
    async fn apply(&mut self, tap: &TapConfig, by: &str, done: &mut Vec<String>) {
        let Some(running) = self.taps.get(&tap.name) else {
            info!(tap = %tap.name, "added by {by}");
            self.start(tap.clone());
            done.push(format!("added {}", tap.name));
            return;
        };
        let change = running.config.change_to(tap);
        let failed = running.shared.state.lock().expect("tap state lock").0 == TapState::Failed;
        if change.restart || failed {
            info!(tap = %tap.name, "restarting: {}", if failed { "it had failed" } else { "its settings changed" });
            self.stop(&tap.name).await;
            *self.restarts.entry(tap.name.clone()).or_default() += 1;
            self.start(tap.clone());
            done.push(format!("restarted {}", tap.name));
            return;
        }
        let running = self.taps.get_mut(&tap.name).expect("present above");
        if change.filter {
            // Installed in place by the tap; the old filter stays if the kernel refuses it.
            let _ = running
                .control
                .send(Control::Filter(tap.capture.filter.clone()))
                .await;
            done.push(format!("filter of {}", tap.name));
        }
        if change.limits {
            let _ = running
                .control
                .send(Control::Limits {
                    sample: tap.capture.sample,
                    rate_per_cpu: tap.capture.rate_per_cpu,
                })
                .await;
            done.push(format!("limits of {}", tap.name));
        }
        if change.interfaces {
            done.push(format!("interfaces of {}", tap.name));
            running.sent = None;
        }
        running.config = tap.clone();
    }

    /// The fleet's taps now: those no longer wanted are stopped, the others started or changed
    /// as a reload changes the file's.
    async fn set_fleet(&mut self, mut taps: Vec<TapConfig>) {
        taps.retain(|tap| {
            let clash = self.config.taps.iter().any(|t| t.name == tap.name);
            if clash {
                warn!(tap = %tap.name, "a tap of the file has the fleet tap's name: the file's wins");
            }
            !clash
        });
        let gone: Vec<String> = self
            .fleet
            .iter()
            .filter(|o| !taps.iter().any(|n| n.name == o.name))
            .map(|o| o.name.clone())
            .collect();
        let mut done: Vec<String> = Vec::new();
        for name in gone {
            info!(tap = %name, "no longer wanted by the fleet");
            self.stop(&name).await;
            self.restarts.remove(&name);
            self.detached.remove(&name);
            done.push(format!("removed {name}"));
        }
        for tap in &taps {
            self.apply(tap, "the fleet", &mut done).await;
        }
        self.fleet = taps;
        self.follow_interfaces();
        self.publish();
        if !done.is_empty() {
            info!(changes = %done.join(", "), "fleet taps changed");
        }
    }

    /// Mirrors the taps into the shared view, in file order.
    fn publish(&self) {
        let taps = self
            .config
            .taps
            .iter()
            .chain(&self.fleet)
            .filter_map(|t| self.taps.get(&t.name))
            .map(|r| Arc::clone(&r.shared))
            .collect();
        *self.shared.taps.lock().expect("agent taps lock") = taps;
    }

    /// Re-reads the file and applies it; on error nothing changes.
    async fn reload(&mut self) -> Result<String, String> {
        let mut new = match AgentConfig::load(&self.config.path) {
            Ok(c) => c,
            Err(e) => {
                let text = e.to_string();
                error!(error = %text, "reload refused; the running configuration stays");
                self.shared.reload_failures.fetch_add(1, Relaxed);
                *self.shared.last_reload_error.lock().expect("lock") = Some(text.clone());
                sd_notify(&format!("STATUS=reload refused: {text}"));
                return Err(text);
            }
        };
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec to fill.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut now) };
        sd_notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}",
            now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000
        ));
        let mut done: Vec<String> = Vec::new();
        // Agent-wide settings first: a control socket or metrics address that changed moves.
        if new.control_socket != self.config.control_socket {
            match control::Server::start(
                &new.control_socket,
                Arc::clone(&self.shared),
                self.requests_tx.clone(),
            ) {
                Ok(server) => {
                    if let Some(old) = self.control_server.replace(server) {
                        old.stop();
                    }
                    done.push(format!("control socket {}", new.control_socket.display()));
                }
                Err(e) => {
                    error!(error = %e, "the new control socket cannot be opened; the old one stays");
                }
            }
        }
        if new.metrics_listen != self.config.metrics_listen {
            if let Some(old) = self.metrics_server.take() {
                old.stop();
            }
            if let Some(addr) = new.metrics_listen {
                match metrics::Server::start(addr, Arc::clone(&self.shared)).await {
                    Ok(server) => self.metrics_server = Some(server),
                    Err(e) => error!(error = %e, "the metrics endpoint cannot be opened"),
                }
            }
            done.push(format!(
                "metrics {}",
                new.metrics_listen
                    .map_or("off".to_string(), |a| a.to_string())
            ));
        }
        if new.query != self.config.query {
            if let Some(old) = self.query_server.take() {
                old.stop();
            }
            if let Some(q) = &new.query {
                match query::Server::start(q, query::stores(&new)).await {
                    Ok(server) => self.query_server = Some(server),
                    Err(e) => error!(error = %e, "the query endpoint cannot be opened"),
                }
            }
            done.push(format!("queries {}", query::describe(new.query.as_ref())));
        } else if let Some(server) = &self.query_server {
            server.set_stores(query::stores(&new));
        }
        let gone: Vec<String> = self
            .config
            .taps
            .iter()
            .filter(|o| !new.taps.iter().any(|n| n.name == o.name))
            .map(|o| o.name.clone())
            .collect();
        for name in gone {
            info!(tap = %name, "removed by reload");
            self.stop(&name).await;
            self.restarts.remove(&name);
            self.detached.remove(&name);
            done.push(format!("removed {name}"));
        }
        for tap in &new.taps {
            self.apply(tap, "reload", &mut done).await;
        }
        let evidence_changed = new.evidence != self.config.evidence;
        if new.fleet != self.config.fleet {
            warn!("[fleet] changed: it takes effect when the agent is restarted");
            done.push("[fleet] unchanged until a restart".into());
        }
        new.fleet.clone_from(&self.config.fleet);
        self.config = new;
        self.follow_interfaces();
        self.publish();
        if evidence_changed {
            // Open cases are written as they stand; the new follower starts at the file's end.
            self.stop_evidence().await;
            *self.shared.evidence.lock().expect("evidence lock") = None;
            self.start_evidence();
            done.push("evidence".into());
        }
        self.shared.reloads.fetch_add(1, Relaxed);
        *self.shared.last_reload_error.lock().expect("lock") = None;
        let summary = if done.is_empty() {
            "no change".to_string()
        } else {
            done.join(", ")
        };
        info!(changes = %summary, "configuration reloaded");
        sd_notify(&format!("READY=1\nSTATUS=reloaded: {summary}"));
        Ok(summary)
    }
}

/// Status of the agent, as `tap ctl status` receives it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub config: PathBuf,
    pub uptime_secs: u64,
    pub reloads: u64,
    pub reload_failures: u64,
    pub last_reload_error: Option<String>,
    pub taps: Vec<TapStatus>,
}

/// One tap in [`Status`].
#[derive(Debug, Clone, Serialize)]
pub struct TapStatus {
    pub name: String,
    pub state: TapState,
    pub error: Option<String>,
    pub patterns: Vec<String>,
    pub hooks: Vec<&'static str>,
    pub restarts: u64,
    pub uptime_secs: u64,
    pub stats: Snapshot,
    /// Interfaces it should have been attached to and was not, with the time.
    pub detached: Vec<DetachedView>,
}

impl AgentShared {
    /// Everything `tap ctl status` shows.
    pub fn status(&self) -> Status {
        Status {
            config: self.config_path.clone(),
            uptime_secs: self.started.elapsed().as_secs(),
            reloads: self.reloads.load(Relaxed),
            reload_failures: self.reload_failures.load(Relaxed),
            last_reload_error: self.last_reload_error.lock().expect("lock").clone(),
            taps: self
                .taps()
                .iter()
                .map(|t| {
                    let stats = t.live.snapshot();
                    let (state, error) = t.state(&stats);
                    TapStatus {
                        name: t.name.clone(),
                        state,
                        error,
                        patterns: t.patterns.clone(),
                        hooks: t.hooks.clone(),
                        restarts: t.restarts,
                        uptime_secs: t.started.elapsed().as_secs(),
                        stats,
                        detached: t.detached.view(Instant::now()),
                    }
                })
                .collect(),
        }
    }
}
