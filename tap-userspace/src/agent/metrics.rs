//! Prometheus metrics: `GET /metrics` on `agent.metrics_listen`, in the OpenMetrics text format
//! (which Prometheus scrapes natively).
//!
//! Everything is read at scrape time from the taps' [`crate::pipeline::live::LiveStats`]: the kernel
//! counters (per tap, and seen, matched and ring drops per interface and hook too), the
//! writer's counts, and the packets and bytes read from the ring per interface and hook (from
//! each record's header). A tap restarted by a reload starts its
//! counters over, which Prometheus' `rate()` handles as a counter reset.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info};

use super::{AgentError, AgentShared, TapState};
use crate::support::listener::{Conn, Limits, Listener};

type Labels = Vec<(String, String)>;

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Longest request head read.
const MAX_REQUEST: usize = 8192;

fn tap_label(name: &str) -> Labels {
    vec![("tap".to_string(), name.to_string())]
}

/// A family of counters, one per label set, registered under `name` (`_total` is appended).
struct Counters<'r> {
    registry: &'r mut Registry,
}

impl Counters<'_> {
    fn counter(&mut self, name: &str, help: &str) -> Family<Labels, Counter> {
        let f = Family::<Labels, Counter>::default();
        self.registry.register(name, help, f.clone());
        f
    }

    fn gauge(&mut self, name: &str, help: &str) -> Family<Labels, Gauge> {
        let f = Family::<Labels, Gauge>::default();
        self.registry.register(name, help, f.clone());
        f
    }
}

/// The metrics of the agent now, as OpenMetrics text.
pub fn render(shared: &AgentShared) -> String {
    let mut registry = Registry::with_prefix("tap");
    let mut r = Counters {
        registry: &mut registry,
    };
    let reloads = r.counter(
        "agent_reloads",
        "Configuration reloads, by result (applied, refused)",
    );
    let up = r.gauge(
        "up",
        "1 when the tap is capturing or waiting for an interface, 0 when it failed or is starting",
    );
    let state = r.gauge("state", "The tap's state: 1 for the current one");
    let restarts = r.counter("restarts", "Restarts of the tap by configuration reloads");
    let attached = r.gauge(
        "interfaces_attached",
        "Interfaces the tap's programs are attached to now",
    );
    let attachment = r.gauge(
        "attachment_info",
        "One per program attached: interface, hook and how",
    );
    let seen = r.counter(
        "packets_seen",
        "Packets the tap's programs ran on (kernel, all interfaces and hooks)",
    );
    let matched = r.counter("packets_matched", "Packets the filter selected (kernel)");
    let captured = r.counter("packets_captured", "Packets copied into the ring (kernel)");
    let captured_bytes = r.counter(
        "captured_bytes",
        "Packet bytes copied into the ring, at most the snap length each (kernel)",
    );
    let ring_drops = r.counter(
        "ring_drops",
        "Matched packets lost because the ring was full (kernel)",
    );
    let sampled = r.counter(
        "packets_sampled_out",
        "Matched packets skipped by sampling (kernel)",
    );
    let limited = r.counter(
        "packets_rate_limited",
        "Matched packets skipped by the rate cap (kernel)",
    );
    let filter_errors = r.counter(
        "filter_errors",
        "Packets the filter could not evaluate (kernel)",
    );
    let read_errors = r.counter("read_errors", "Packets the kernel could not read (kernel)");
    let over_budget = r.counter(
        "packets_over_budget",
        "Selected packets not copied: their flow had used its budget (kernel, --flow-budget)",
    );
    let flows_new = r.counter("flows", "Flows added to the flow budget's table (kernel)");
    let flows_evicted = r.counter(
        "flows_evicted",
        "Flows the full flow budget's table evicted: flows added less its entries",
    );
    let flow_entries = r.gauge("flow_table_entries", "Flows in the flow budget's table now");
    let flow_size = r.gauge(
        "flow_table_size",
        "Flows the flow budget's table holds at most",
    );
    let truncated = r.counter(
        "packets_truncated",
        "Packets copied shorter than the snap length asked for (kernel; XDP frames past its reach)",
    );
    let read = r.counter("packets_read", "Packets taken from the ring by the agent");
    let per_if = r.counter(
        "interface_packets",
        "Packets taken from the ring, by interface and hook",
    );
    let per_if_bytes = r.counter(
        "interface_bytes",
        "Packet bytes taken from the ring, by interface and hook",
    );
    let per_if_seen = r.counter(
        "interface_packets_seen",
        "Packets the tap's program ran on, by interface and hook (kernel)",
    );
    let per_if_matched = r.counter(
        "interface_packets_matched",
        "Packets the filter selected, by interface and hook (kernel)",
    );
    let per_if_ring_drops = r.counter(
        "interface_ring_drops",
        "Matched packets lost because the ring was full, by interface and hook (kernel)",
    );
    let per_if_queue_drops = r.counter(
        "interface_queue_drops",
        "Packets taken from the ring and lost because the writer's queue was full, by interface and hook",
    );
    let written = r.counter(
        "packets_written",
        "Packets written to the tap's file output (or handed to its consumers when it has no file)",
    );
    let written_bytes = r.counter(
        "written_bytes",
        "Bytes written to the tap's files (compressed bytes when compressing)",
    );
    let sink_drops = r.counter(
        "sink_drops",
        "Packets taken from the ring that did not reach the output (writer behind, output failed)",
    );
    let files = r.counter(
        "files_rotated",
        "Files finished (renamed to their final names)",
    );
    let swaps = r.counter(
        "filter_installs",
        "Filters installed in the running programs (the first one and each reload's)",
    );
    let malformed = r.counter("malformed_records", "Ring records refused as malformed");
    let detached_seconds = Family::<Labels, Counter<f64, AtomicU64>>::default();
    r.registry.register(
        "detached_seconds",
        "Seconds the tap was not attached to an interface its configuration matches (starting, restarting, attach failed, tap down)",
        detached_seconds.clone(),
    );
    let detached_now = r.gauge(
        "interfaces_detached",
        "Interfaces the tap should be attached to and is not, now",
    );
    let store_indexed = r.counter(
        "store_files_indexed",
        "Capture files of the tap's store indexed ([tap.store])",
    );
    let store_index_bytes = r.counter("store_index_bytes", "Bytes of index files written");
    let store_index_failed = r.counter(
        "store_index_failures",
        "Store files left without an index (queries index them on the fly)",
    );
    let store_deleted = r.counter(
        "store_files_deleted",
        "Store files deleted by retention (max_bytes, max_age, or room on a full disk)",
    );
    let store_deleted_bytes = r.counter(
        "store_deleted_bytes",
        "Bytes of the store files retention deleted, index included",
    );
    let store_deleted_for_room = r.counter(
        "store_files_deleted_for_room",
        "Store files deleted to make room on a full disk",
    );
    let pre_packets = r.counter(
        "pretrigger_packets",
        "Packets taken into the tap's pre-trigger memory (pretrigger)",
    );
    let pre_expired = r.counter(
        "pretrigger_expired",
        "Packets dropped from the pre-trigger memory for their age",
    );
    let pre_overwritten = r.counter(
        "pretrigger_overwritten",
        "Packets dropped from the pre-trigger memory for its size before their age (wraps: the history is shorter than its age)",
    );
    let pre_held = r.gauge(
        "pretrigger_held_packets",
        "Packets in the pre-trigger memory now",
    );
    let pre_bytes = r.gauge(
        "pretrigger_held_bytes",
        "Bytes accounted in the pre-trigger memory now (captured bytes plus a record overhead each)",
    );
    let pre_span = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    r.registry.register(
        "pretrigger_span_seconds",
        "Seconds of history in the pre-trigger memory now (newest minus oldest packet)",
        pre_span.clone(),
    );
    let fill = r.gauge("ring_fill_bytes", "Bytes waiting in the ring now");
    let size = r.gauge("ring_size_bytes", "Size of the ring in bytes");

    reloads
        .get_or_create(&vec![("result".into(), "applied".into())])
        .inc_by(shared.reloads.load(std::sync::atomic::Ordering::Relaxed));
    reloads
        .get_or_create(&vec![("result".into(), "refused".into())])
        .inc_by(
            shared
                .reload_failures
                .load(std::sync::atomic::Ordering::Relaxed),
        );
    for tap in shared.taps() {
        let s = tap.live.snapshot();
        let (current, _) = tap.state(&s);
        let l = tap_label(&tap.name);
        up.get_or_create(&l).set(i64::from(matches!(
            current,
            TapState::Running | TapState::Waiting
        )));
        for st in [
            TapState::Starting,
            TapState::Running,
            TapState::Waiting,
            TapState::Failed,
            TapState::Stopping,
        ] {
            let name = serde_json::to_value(&st)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let mut labels = l.clone();
            labels.push(("state".into(), name));
            state.get_or_create(&labels).set(i64::from(st == current));
        }
        restarts.get_or_create(&l).inc_by(tap.restarts);
        let mut ifaces: Vec<&str> = s.attachments.iter().map(|a| a.interface.as_str()).collect();
        ifaces.dedup();
        attached.get_or_create(&l).set(ifaces.len() as i64);
        for a in &s.attachments {
            let mut labels = l.clone();
            labels.extend([
                ("interface".into(), a.interface.clone()),
                ("hook".into(), a.hook.to_string()),
                ("how".into(), a.how.to_string()),
            ]);
            attachment.get_or_create(&labels).set(1);
        }
        let k = &s.kernel;
        for (family, value) in [
            (&seen, k.seen),
            (&matched, k.matched),
            (&captured, k.copied),
            (&captured_bytes, k.copied_bytes),
            (&ring_drops, k.ring_full),
            (&sampled, k.sampled_out),
            (&limited, k.rate_limited),
            (&filter_errors, k.filter_error),
            (&read_errors, k.read_error),
            (&truncated, k.truncated),
            (&over_budget, k.over_budget),
            (&read, s.read_packets),
            (&written, s.written),
            (&written_bytes, s.written_bytes),
            (&sink_drops, s.writer_dropped),
            (&files, s.files),
            (&swaps, s.filter_installs),
            (&malformed, s.malformed),
        ] {
            family.get_or_create(&l).inc_by(value);
        }
        for i in &s.interfaces {
            let mut labels = l.clone();
            labels.extend([
                ("interface".into(), i.interface.clone()),
                ("hook".into(), i.hook.to_string()),
            ]);
            per_if.get_or_create(&labels).inc_by(i.count.packets);
            per_if_bytes.get_or_create(&labels).inc_by(i.count.bytes);
        }
        for i in &s.kernel_interfaces {
            let mut labels = l.clone();
            labels.extend([
                ("interface".into(), i.interface.clone()),
                ("hook".into(), i.hook.to_string()),
            ]);
            per_if_seen.get_or_create(&labels).inc_by(i.seen);
            per_if_matched.get_or_create(&labels).inc_by(i.matched);
            per_if_ring_drops.get_or_create(&labels).inc_by(i.ring_full);
            per_if_queue_drops
                .get_or_create(&labels)
                .inc_by(i.writer_dropped);
        }
        if let Some((entries, table)) = tap.live.flow_table() {
            flows_new.get_or_create(&l).inc_by(k.flows_new);
            flows_evicted
                .get_or_create(&l)
                .inc_by(k.flows_new.saturating_sub(entries));
            flow_entries.get_or_create(&l).set(entries as i64);
            flow_size.get_or_create(&l).set(i64::from(table));
        }
        if let Some(st) = tap.live.store() {
            for (family, value) in [
                (&store_indexed, &st.files_indexed),
                (&store_index_bytes, &st.index_bytes),
                (&store_index_failed, &st.index_failed),
                (&store_deleted, &st.deleted_files),
                (&store_deleted_bytes, &st.deleted_bytes),
                (&store_deleted_for_room, &st.deleted_for_room),
            ] {
                family
                    .get_or_create(&l)
                    .inc_by(value.load(std::sync::atomic::Ordering::Relaxed));
            }
        }
        if let Some(p) = &s.pretrigger {
            pre_packets.get_or_create(&l).inc_by(p.packets);
            pre_expired.get_or_create(&l).inc_by(p.expired);
            pre_overwritten.get_or_create(&l).inc_by(p.overwritten);
            pre_held
                .get_or_create(&l)
                .set(i64::try_from(p.held_packets).unwrap_or(i64::MAX));
            pre_bytes
                .get_or_create(&l)
                .set(i64::try_from(p.held_bytes).unwrap_or(i64::MAX));
            #[expect(clippy::cast_precision_loss, reason = "seconds for a gauge")]
            pre_span.get_or_create(&l).set(p.span_ns as f64 / 1e9);
        }
        let now = std::time::Instant::now();
        for d in tap.detached.view(now) {
            let mut labels = l.clone();
            labels.push(("interface".into(), d.interface.clone()));
            detached_seconds
                .get_or_create(&labels)
                .inc_by(d.seconds_total);
        }
        detached_now
            .get_or_create(&l)
            .set(tap.detached.detached_now() as i64);
        if let (Some(pending), Some(total)) = (s.ring_pending, s.ring_size) {
            fill.get_or_create(&l).set(pending as i64);
            size.get_or_create(&l).set(total as i64);
        }
    }
    if let Some(ev) = shared.evidence.lock().expect("evidence lock").clone() {
        let f = ev.follower();
        let none: Labels = Vec::new();
        for (name, help, value) in [
            ("evidence_eve_lines", "EVE lines read", f.lines),
            (
                "evidence_bad_lines",
                "EVE lines that are not JSON or an alert without the fields tap needs",
                f.bad_lines,
            ),
            ("evidence_alerts", "Alerts read", f.alerts),
            (
                "evidence_alerts_selected",
                "Alerts selected by sid or severity",
                f.selected,
            ),
            (
                "evidence_alerts_merged",
                "Selected alerts that joined an open case on their flow",
                f.cases.merged,
            ),
            (
                "evidence_alerts_covered",
                "Selected alerts within a window already written",
                f.cases.covered,
            ),
            (
                "evidence_alerts_rate_limited",
                "Selected alerts that found the rate limit's bucket empty",
                f.cases.rate_limited,
            ),
            (
                "evidence_alerts_too_many_open",
                "Selected alerts refused because max_open cases were open",
                f.cases.too_many_open,
            ),
            (
                "evidence_eve_rotations",
                "Rotations of eve.json followed",
                f.rotations,
            ),
            (
                "evidence_eve_truncations",
                "Truncations of eve.json followed",
                f.truncations,
            ),
            (
                "evidence_files",
                "Evidence files written, closed and recorded in the manifest",
                ev.files.load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "evidence_packets",
                "Packets in evidence files",
                ev.packets.load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "evidence_bytes",
                "Bytes of evidence files",
                ev.bytes.load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "evidence_failures",
                "Evidence files that could not be written",
                ev.failures.load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "evidence_history_short",
                "Evidence files whose window began before the oldest packet the pre-trigger memory held",
                ev.history_short.load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "evidence_packets_left_out",
                "Packets of a window left out for the file size limit",
                ev.left_out.load(std::sync::atomic::Ordering::Relaxed),
            ),
        ] {
            r.counter(name, help).get_or_create(&none).inc_by(value);
        }
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

/// Clients served at once, and how long each may take: a scraper sends its request at once.
pub const LIMITS: Limits = Limits {
    max_connections: 16,
    header_timeout: Duration::from_secs(2),
    idle_timeout: Duration::from_secs(10),
};

/// The listening socket; dropping it (or [`Server::stop`]) closes it.
#[derive(Debug)]
pub struct Server {
    _listener: Listener,
}

impl Server {
    pub async fn start(addr: SocketAddr, shared: Arc<AgentShared>) -> Result<Self, AgentError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AgentError::Metrics { addr, source })?;
        info!(%addr, "metrics at /metrics");
        let listener = Listener::spawn("metrics", listener, LIMITS, move |conn| {
            let shared = Arc::clone(&shared);
            async move {
                if let Err(e) = serve(conn, &shared).await {
                    debug!(error = %e, "metrics connection");
                }
            }
        });
        Ok(Self {
            _listener: listener,
        })
    }

    pub fn stop(self) {
        drop(self);
    }
}

/// Answers one HTTP/1 request: `GET /metrics`, or 404; then closes.
async fn serve(mut conn: Conn<TcpStream>, shared: &AgentShared) -> std::io::Result<()> {
    let head = conn.read_head(MAX_REQUEST, b"\r\n\r\n").await?;
    let text = String::from_utf8_lossy(&head);
    let mut words = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => ("200 OK", CONTENT_TYPE, render(shared)),
        ("GET" | "HEAD", "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "tap agent: metrics at /metrics\n".to_string(),
        ),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: try /metrics\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "use GET\n".to_string(),
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        response.push_str(&body);
    }
    conn.write_all(response.as_bytes()).await?;
    conn.shutdown().await
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, atomic::Ordering::Relaxed};

    use super::*;
    use crate::{agent::TapShared, pipeline::live::LiveStats};

    /// `name{labels} value` lines, the `# EOF` and comments left out.
    fn samples(text: &str) -> Vec<(String, f64)> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (name, value) = l.rsplit_once(' ').unwrap();
                (name.to_string(), value.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn per_tap_counters_and_agent_reloads() {
        let shared = AgentShared::new("/etc/tap/tap.toml".into());
        shared.reloads.store(3, Relaxed);
        shared.reload_failures.store(1, Relaxed);
        let live = Arc::new(LiveStats::new(true));
        live.read_packets.store(42, Relaxed);
        live.writer.written.store(40, Relaxed);
        live.writer.bytes.store(4096, Relaxed);
        live.writer.files.store(2, Relaxed);
        live.queue_dropped.store(2, Relaxed);
        live.filter_installs.store(1, Relaxed);
        live.ready.store(true, Relaxed);
        let tap = Arc::new(TapShared {
            name: "vms".into(),
            patterns: vec!["vm*".into()],
            hooks: vec!["tc-ingress"],
            live,
            state: Mutex::new((TapState::Starting, None)),
            restarts: 1,
            started: std::time::Instant::now(),
            detached: Arc::default(),
        });
        let t0 = std::time::Instant::now()
            .checked_sub(Duration::from_millis(1500))
            .unwrap();
        tap.detached.update(
            "vms",
            t0,
            &[(
                "vm-b".into(),
                crate::agent::detached::Reason::AttachFailed("busy".into()),
            )],
        );
        shared.taps.lock().unwrap().push(tap);
        let text = render(&shared);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            text.contains("# TYPE tap_packets_written counter\n"),
            "{text}"
        );
        let s = samples(&text);
        let get = |name: &str| {
            s.iter()
                .find(|(n, _)| n == name)
                .map_or_else(|| panic!("{name} missing:\n{text}"), |(_, v)| *v)
        };
        assert_eq!(get("tap_agent_reloads_total{result=\"applied\"}"), 3.0);
        assert_eq!(get("tap_agent_reloads_total{result=\"refused\"}"), 1.0);
        assert_eq!(get("tap_packets_read_total{tap=\"vms\"}"), 42.0);
        assert_eq!(get("tap_packets_written_total{tap=\"vms\"}"), 40.0);
        assert_eq!(get("tap_written_bytes_total{tap=\"vms\"}"), 4096.0);
        assert_eq!(get("tap_files_rotated_total{tap=\"vms\"}"), 2.0);
        assert_eq!(get("tap_sink_drops_total{tap=\"vms\"}"), 2.0);
        assert_eq!(get("tap_restarts_total{tap=\"vms\"}"), 1.0);
        assert_eq!(get("tap_packets_matched_total{tap=\"vms\"}"), 0.0);
        // Ready and attached nowhere: waiting for an interface, which counts as up.
        assert_eq!(get("tap_up{tap=\"vms\"}"), 1.0);
        assert_eq!(get("tap_state{tap=\"vms\",state=\"waiting\"}"), 1.0);
        assert_eq!(get("tap_state{tap=\"vms\",state=\"running\"}"), 0.0);
        assert_eq!(get("tap_interfaces_attached{tap=\"vms\"}"), 0.0);
        let detached = get("tap_detached_seconds_total{tap=\"vms\",interface=\"vm-b\"}");
        assert!((1.5..60.0).contains(&detached), "{detached}");
        assert_eq!(get("tap_interfaces_detached{tap=\"vms\"}"), 1.0);
        assert!(
            !text.contains("tap_store_files_deleted_total{"),
            "a tap without a store has no store samples:\n{text}"
        );

        let store = Arc::new(crate::store::sink::StoreStats::default());
        store.files_indexed.store(5, Relaxed);
        store.deleted_files.store(3, Relaxed);
        store.deleted_bytes.store(3 << 20, Relaxed);
        store.deleted_for_room.store(1, Relaxed);
        shared.taps()[0].live.set_store(store);
        let text = render(&shared);
        let s = samples(&text);
        let get = |name: &str| {
            s.iter()
                .find(|(n, _)| n == name)
                .map_or_else(|| panic!("{name} missing:\n{text}"), |(_, v)| *v)
        };
        assert_eq!(get("tap_store_files_indexed_total{tap=\"vms\"}"), 5.0);
        assert_eq!(get("tap_store_files_deleted_total{tap=\"vms\"}"), 3.0);
        assert_eq!(
            get("tap_store_deleted_bytes_total{tap=\"vms\"}"),
            f64::from(3 << 20)
        );
        assert_eq!(
            get("tap_store_files_deleted_for_room_total{tap=\"vms\"}"),
            1.0
        );
        assert_eq!(get("tap_store_index_failures_total{tap=\"vms\"}"), 0.0);
    }
}
