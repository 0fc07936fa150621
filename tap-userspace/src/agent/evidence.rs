//! The agent's `[evidence]`: the alert follower ([`crate::evidence::follow`]) and the writer of
//! its requests, with each flow's packets taken from the history taps.
//!
//! A request comes when its case closes: the wall clock passed its window's end plus `settle`.
//! By then every packet of the window has reached the history, so the file is written in one go
//! from what the history holds: the packets before the alert (the reason for the history), and
//! the `after` part, which the tap kept taking live while the case was open. A tap with a
//! pre-trigger memory ([`crate::sink::pretrigger::History`]) gives the packets of the window
//! held in memory; a tap with a store answers the same question from disk
//! ([`crate::store::query`]), so its history reaches as far back as its retention. Packets of
//! several history taps are merged by time.
//!
//! Files are written on a blocking thread, one at a time, into `dir` and recorded in its
//! custody manifest; counts go to [`EvidenceShared`] (the metrics' `tap_evidence_*`).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use bytes::Bytes;
use tokio::{sync::oneshot, task::JoinHandle};
use tracing::{Instrument as _, error, info, info_span, warn};

use super::AgentShared;
use crate::{
    custody::Custody,
    evidence::{
        self, EvidenceConfig, EvidenceError, EvidencePacket, EvidenceRequest, FlowKey, Stats,
        write_evidence,
    },
    sink::{pcapng::InterfaceDesc, pretrigger::History},
    store::flow::{self as store_flow, FAMILY_V4, FAMILY_V6},
};

/// Counts of the evidence writer (the follower's own are in `follower`).
#[derive(Debug, Default)]
pub struct EvidenceShared {
    pub follower: Arc<Mutex<Stats>>,
    /// Files written and closed (and recorded in the manifest).
    pub files: AtomicU64,
    /// Packets and bytes in them.
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    /// Requests whose file could not be written.
    pub failures: AtomicU64,
    /// Files whose window starts before the oldest packet a history held (its memory wrapped).
    pub history_short: AtomicU64,
    /// Packets of a window left out for the file's size limit.
    pub left_out: AtomicU64,
}

impl EvidenceShared {
    #[must_use]
    pub fn follower(&self) -> Stats {
        self.follower.lock().map(|s| *s).unwrap_or_default()
    }
}

/// The running follower and writer.
pub struct Runner {
    pub config: EvidenceConfig,
    pub shared: Arc<EvidenceShared>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// Where a history tap's packets come from.
enum Source {
    Memory(String, Arc<History>),
    Store(String, PathBuf),
}

/// One packet for the file.
struct Pkt {
    ts_ns: u64,
    orig_len: u32,
    ifindex: u32,
    hook: u8,
    direction: u8,
    data: Bytes,
}

impl Runner {
    /// Starts following and writing. `stores`: the taps' store directories by name.
    #[must_use]
    pub fn start(
        config: EvidenceConfig,
        agent: Arc<AgentShared>,
        stores: super::query::Stores,
    ) -> Self {
        let shared = Arc::new(EvidenceShared::default());
        let (stop, stop_rx) = oneshot::channel::<()>();
        let span = info_span!("evidence", dir = %config.dir.display());
        let task = tokio::spawn(
            run(config.clone(), Arc::clone(&shared), agent, stores, stop_rx).instrument(span),
        );
        Self {
            config,
            shared,
            stop: Some(stop),
            task,
        }
    }

    /// Stops following; the open cases are closed and written with what the history holds.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Err(e) = (&mut self.task).await {
            error!(error = %e, "the evidence task ended abnormally");
        }
    }
}

async fn run(
    config: EvidenceConfig,
    shared: Arc<EvidenceShared>,
    agent: Arc<AgentShared>,
    stores: super::query::Stores,
    stop: oneshot::Receiver<()>,
) {
    if let Err(e) = create_dir(&config.dir) {
        error!(error = %e, "cannot create the evidence directory: no evidence is written");
        return;
    }
    info!(taps = ?config.taps, "following alerts");
    let (tx, mut rx) = tokio::sync::mpsc::channel::<EvidenceRequest>(64);
    let follower = tokio::spawn(
        evidence::follow(
            config.follow.clone(),
            Arc::clone(&shared.follower),
            tx,
            async move {
                let _ = stop.await;
            },
        )
        .in_current_span(),
    );
    let mut custody: Option<Custody> = None;
    while let Some(request) = rx.recv().await {
        let sources = sources(&config.taps, &agent, &stores);
        let dir = config.dir.clone();
        let max = config.max_file_bytes;
        let counts = Arc::clone(&shared);
        let mut c = custody.take();
        let joined = tokio::task::spawn_blocking(move || {
            let r = write_one(&dir, &request, &sources, max, &mut c, &counts);
            (c, request, r)
        })
        .await;
        match joined {
            Ok((c, request, result)) => {
                custody = c;
                match result {
                    Ok(w) => {
                        shared.files.fetch_add(1, Relaxed);
                        shared.packets.fetch_add(w.packets, Relaxed);
                        shared.bytes.fetch_add(w.bytes, Relaxed);
                        shared.left_out.fetch_add(w.left_out, Relaxed);
                        info!(
                            file = %w.path.display(),
                            packets = w.packets,
                            alerts = request.alerts.len() as u64 + request.more_alerts,
                            flow = %request.flow.describe(),
                            "evidence written"
                        );
                    }
                    Err(e) => {
                        shared.failures.fetch_add(1, Relaxed);
                        warn!(error = %crate::support::excerpt::one_line(&e), flow = %request.flow.describe(), "evidence not written");
                    }
                }
            }
            Err(e) => {
                shared.failures.fetch_add(1, Relaxed);
                error!(error = %e, "the evidence writer panicked");
            }
        }
    }
    match follower.await {
        Ok(Ok(())) => info!("stopped following alerts"),
        Ok(Err(e)) => {
            error!(error = %crate::support::excerpt::one_line(&e), "following alerts failed");
        }
        Err(e) => error!(error = %e, "the alert follower ended abnormally"),
    }
}

/// The evidence directory, made private when it is created here.
fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The history taps now: each named tap's memory, or its store.
fn sources(names: &[String], agent: &AgentShared, stores: &super::query::Stores) -> Vec<Source> {
    let taps = agent.taps();
    names
        .iter()
        .filter_map(|name| {
            let memory = taps
                .iter()
                .find(|t| &t.name == name)
                .and_then(|t| t.live.history());
            match memory {
                Some(h) => Some(Source::Memory(name.clone(), h)),
                None => stores
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, dir)| Source::Store(name.clone(), dir.clone())),
            }
        })
        .collect()
}

/// Whether a packet's key is `flow`'s (either direction; ports only where the protocol has
/// them; VLANs when the packet shows its tags).
fn same_flow(k: &store_flow::FlowKey, flow: &FlowKey) -> bool {
    if k.proto != flow.proto {
        return false;
    }
    let vlans = &k.vlan[..usize::from(k.vlans).min(2)];
    if !vlans.is_empty() && vlans != flow.vlan.as_slice() {
        return false;
    }
    let ip = |b: &[u8; 16]| -> Option<IpAddr> {
        match k.family {
            FAMILY_V4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
            FAMILY_V6 => Some(IpAddr::V6(Ipv6Addr::from(*b))),
            _ => None,
        }
    };
    let (Some(a), Some(b)) = (ip(&k.a), ip(&k.b)) else {
        return false;
    };
    let ports = !matches!(flow.proto, 1 | 58);
    let (pa, pb, ps, pd) = if ports {
        (k.port_a, k.port_b, flow.src_port, flow.dest_port)
    } else {
        (0, 0, 0, 0)
    };
    let want = (flow.src_ip, ps, flow.dest_ip, pd);
    (a, pa, b, pb) == want || (b, pb, a, pa) == want
}

/// A pcap-filter expression close to `flow` (the exact test follows), for a store's query.
fn store_expression(flow: &FlowKey) -> String {
    let proto = match flow.proto {
        6 => "tcp".to_string(),
        17 => "udp".to_string(),
        132 => "sctp".to_string(),
        1 => "icmp".to_string(),
        58 => "icmp6".to_string(),
        n => format!("ip proto {n}"),
    };
    let mut e = format!("{proto} and host {} and host {}", flow.src_ip, flow.dest_ip);
    if matches!(flow.proto, 6 | 17 | 132) {
        e.push_str(&format!(
            " and port {} and port {}",
            flow.src_port, flow.dest_port
        ));
    }
    e
}

/// A writer into shared memory, for a query's output.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer lock").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The packets of a pcap file in memory (the query's output): time, original length, bytes.
fn pcap_packets(buf: &[u8]) -> Vec<(u64, u32, Bytes)> {
    let mut out = Vec::new();
    let Some(magic) = buf.get(..4) else {
        return out;
    };
    let nanos = match u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]) {
        0xa1b2_3c4d => true,
        0xa1b2_c3d4 => false,
        _ => return out,
    };
    let mut at = 24;
    let u32_at =
        |i: usize| -> Option<u32> { Some(u32::from_le_bytes(buf.get(i..i + 4)?.try_into().ok()?)) };
    while let (Some(sec), Some(frac), Some(cap), Some(orig)) =
        (u32_at(at), u32_at(at + 4), u32_at(at + 8), u32_at(at + 12))
    {
        let start = at + 16;
        let Some(data) = buf.get(start..start + cap as usize) else {
            break;
        };
        let frac_ns = if nanos {
            u64::from(frac)
        } else {
            u64::from(frac) * 1000
        };
        out.push((
            u64::from(sec) * 1_000_000_000 + frac_ns,
            orig,
            Bytes::copy_from_slice(data),
        ));
        at = start + cap as usize;
    }
    out
}

/// The window's packets of the flow from every source, by time.
fn collect(request: &EvidenceRequest, sources: &[Source], counts: &EvidenceShared) -> Vec<Pkt> {
    let mut out = Vec::new();
    for source in sources {
        match source {
            Source::Memory(name, h) => {
                let s = h.snapshot();
                let oldest = h.stats.oldest_ns.load(Relaxed);
                if s.overwritten > 0 && oldest > request.start_ns {
                    counts.history_short.fetch_add(1, Relaxed);
                    warn!(tap = %name, flow = %request.flow.describe(), "the pre-trigger memory wrapped: the file starts later than its window");
                }
                for p in h.window(request.start_ns, request.end_ns) {
                    if same_flow(
                        &store_flow::parse(&p.data, p.header.tunnel, p.header.tunnel_id).key,
                        &request.flow,
                    ) {
                        out.push(Pkt {
                            ts_ns: p.ts_ns,
                            orig_len: p.header.orig_len,
                            ifindex: p.header.ifindex,
                            hook: p.header.hook,
                            direction: p.header.direction,
                            data: p.data,
                        });
                    }
                }
            }
            Source::Store(name, dir) => {
                let sel = crate::store::query::Selection {
                    since_ns: Some(request.start_ns),
                    until_ns: Some(request.end_ns.saturating_add(1)),
                    expr: store_expression(&request.flow),
                };
                let buf = SharedBuf::default();
                let result = crate::store::query::packets(
                    dir,
                    &sel,
                    crate::store::query::Format::Pcap,
                    crate::store::query::Sink::Writer(Box::new(buf.clone())),
                );
                if let Err(e) = result {
                    warn!(tap = %name, error = %e, "the store's history could not be read");
                    continue;
                }
                let bytes = std::mem::take(&mut *buf.0.lock().expect("buffer lock"));
                for (ts_ns, orig_len, data) in pcap_packets(&bytes) {
                    if same_flow(&store_flow::parse(&data, 0, 0).key, &request.flow) {
                        out.push(Pkt {
                            ts_ns,
                            orig_len,
                            ifindex: 0,
                            hook: 0,
                            direction: 0,
                            data,
                        });
                    }
                }
            }
        }
    }
    out.sort_by_key(|p| p.ts_ns);
    out
}

fn write_one(
    dir: &Path,
    request: &EvidenceRequest,
    sources: &[Source],
    max_bytes: u64,
    custody: &mut Option<Custody>,
    counts: &EvidenceShared,
) -> Result<evidence::Written, EvidenceError> {
    let packets = collect(request, sources, counts);
    let mut ifaces: Vec<InterfaceDesc> = Vec::new();
    let mut index = |ifindex: u32, hook: u8| -> u32 {
        let i = ifaces
            .iter()
            .position(|d| d.ifindex == ifindex && d.hook == hook)
            .unwrap_or_else(|| {
                let name = if ifindex == 0 {
                    "store".to_string()
                } else {
                    crate::kernel::iface::ifname(ifindex)
                        .unwrap_or_else(|| format!("ifindex{ifindex}"))
                };
                ifaces.push(InterfaceDesc::new(&name, ifindex, hook));
                ifaces.len() - 1
            });
        u32::try_from(i).unwrap_or(u32::MAX)
    };
    let numbered: Vec<u32> = packets.iter().map(|p| index(p.ifindex, p.hook)).collect();
    if custody.is_none() {
        *custody = Some(Custody::open(dir, None).map_err(EvidenceError::Custody)?);
    }
    write_evidence(
        dir,
        request,
        &ifaces,
        packets
            .iter()
            .zip(numbered)
            .map(|(p, interface)| EvidencePacket {
                ts_ns: p.ts_ns,
                orig_len: p.orig_len,
                data: &p.data,
                interface,
                direction: p.direction,
            }),
        max_bytes,
        custody.as_mut(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_expression_names_the_flow() {
        let flow = FlowKey {
            proto: 6,
            src_ip: "192.0.2.1".parse().unwrap(),
            src_port: 40000,
            dest_ip: "198.51.100.2".parse().unwrap(),
            dest_port: 80,
            vlan: Vec::new(),
        };
        assert_eq!(
            store_expression(&flow),
            "tcp and host 192.0.2.1 and host 198.51.100.2 and port 40000 and port 80"
        );
        // Both directions of the flow, not a neighbour with the ports swapped.
        let frame = |src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16| {
            let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
            f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
            f.extend_from_slice(&src);
            f.extend_from_slice(&dst);
            f.extend_from_slice(&sp.to_be_bytes());
            f.extend_from_slice(&dp.to_be_bytes());
            f.extend_from_slice(&[0; 16]);
            f
        };
        let key = |f: Vec<u8>| store_flow::parse(&f, 0, 0).key;
        let (a, b) = ([192, 0, 2, 1], [198, 51, 100, 2]);
        assert!(same_flow(&key(frame(a, b, 40000, 80)), &flow));
        assert!(same_flow(&key(frame(b, a, 80, 40000)), &flow));
        assert!(!same_flow(&key(frame(a, b, 80, 40000)), &flow));
        assert!(!same_flow(&key(frame(a, b, 40001, 80)), &flow));
    }
}
