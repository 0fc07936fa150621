//! Counters of a running capture, read while it runs: the status line of `tap capture`, `tap ctl
//! status` and the metrics of `tap agent`. The capture publishes into a [`LiveStats`] per batch
//! (never per packet, except the per-interface split the agent asks for); readers take a
//! [`Snapshot`].

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use aya::maps::{MapData, PerCpuArray};
use serde::Serialize;
use tap_common::event::HEADER_LEN;

use crate::{
    kernel::batch::Batch,
    kernel::counters::KernelCounters,
    kernel::flow::FlowTable,
    kernel::ifstats::{PerInterface, QueueDrops},
    kernel::loader::Attachment,
    kernel::ring::Ring,
    model::Hook,
    sink::{
        WriterProgress,
        pretrigger::{History, PretriggerSnapshot},
    },
    store::sink::StoreStats,
};

/// Packets and bytes read from the ring for one interface and hook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    pub packets: u64,
    /// Captured bytes (at most the snap length per packet), record headers not included.
    pub bytes: u64,
}

/// What a capture publishes while it runs. Shared between the capture and its readers.
#[derive(Default)]
pub struct LiveStats {
    kernel: Mutex<Option<Arc<PerCpuArray<MapData, u64>>>>,
    ring: Mutex<Option<Arc<Ring>>>,
    /// Packets taken from the ring.
    pub read_packets: AtomicU64,
    /// Captured bytes taken from the ring (packet bytes only).
    pub read_bytes: AtomicU64,
    /// Packets lost because the writer's queue was full or the writer was gone.
    pub queue_dropped: Arc<AtomicU64>,
    /// The same for a full queue, per (ifindex, hook).
    pub queue_drops: Arc<QueueDrops>,
    /// The kernel's counters per interface and hook, once loaded.
    per_interface_kernel: Mutex<Option<PerInterface>>,
    /// The flow budget's table, when the capture has a budget.
    flows: Mutex<Option<Arc<FlowTable>>>,
    /// The packet store's counters, when the capture writes a store.
    store: Mutex<Option<Arc<StoreStats>>>,
    /// The pre-trigger memory, when the capture holds one.
    history: Mutex<Option<Arc<History>>>,
    /// Ring records refused as malformed.
    pub malformed: AtomicU64,
    /// The writer's own counts (written, bytes, files, lost).
    pub writer: Arc<WriterProgress>,
    /// Filters installed (the first one and every replacement).
    pub filter_installs: AtomicU64,
    /// The printer's counts, when the capture prints packets.
    pub printed: Arc<crate::sink::print::PrintCounts>,
    /// Per (ifindex, hook code) counts, when enabled: costs a look at each packet's header.
    per_interface: Option<Mutex<BTreeMap<(u32, u8), Count>>>,
    /// Interface names seen, by index: kept after an interface is gone so its counts stay named.
    names: Mutex<BTreeMap<u32, String>>,
    attachments: Mutex<Vec<Attachment>>,
    /// Interfaces that matched but could not be attached: (name, error).
    attach_errors: Mutex<Vec<(String, String)>>,
    filter: Mutex<String>,
    /// Loaded, attached, sinks open: capturing.
    pub ready: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for LiveStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveStats")
            .field("read_packets", &self.read_packets)
            .finish_non_exhaustive()
    }
}

/// A capture's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub kernel: KernelCounters,
    pub read_packets: u64,
    pub read_bytes: u64,
    /// Queue drops plus packets the writer could not write.
    pub writer_dropped: u64,
    pub written: u64,
    pub written_bytes: u64,
    pub files: u64,
    pub malformed: u64,
    /// Bytes waiting in the ring (None before the ring exists).
    pub ring_pending: Option<u64>,
    pub ring_size: Option<u64>,
    pub filter_installs: u64,
    pub filter: String,
    pub attachments: Vec<AttachmentView>,
    pub attach_errors: Vec<(String, String)>,
    pub interfaces: Vec<InterfaceCount>,
    /// The kernel's counters per interface and hook (the interfaces with a counter slot).
    pub kernel_interfaces: Vec<KernelInterfaceCount>,
    /// Loaded, attached, sinks open: capturing.
    pub ready: bool,
    /// The pre-trigger memory's counts, when the capture holds one.
    pub pretrigger: Option<PretriggerSnapshot>,
}

/// The kernel's counters for one interface and hook, and the writer queue's drops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelInterfaceCount {
    pub interface: String,
    pub ifindex: u32,
    pub hook: &'static str,
    pub seen: u64,
    pub matched: u64,
    pub ring_full: u64,
    pub writer_dropped: u64,
}

/// What [`LiveStats::attachment_state`] returns.
#[derive(Debug, Clone, Default)]
pub struct AttachmentState {
    /// Programs attached, as (ifindex, hook).
    pub attached: Vec<(u32, Hook)>,
    /// Interfaces that matched but could not be attached: (name, error).
    pub errors: Vec<(String, String)>,
    /// Loaded, attached, sinks open: capturing.
    pub ready: bool,
}

/// One program on one interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttachmentView {
    pub interface: String,
    pub ifindex: u32,
    pub hook: &'static str,
    pub how: &'static str,
}

/// Packets read from the ring for one interface and hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InterfaceCount {
    pub interface: String,
    pub ifindex: u32,
    pub hook: &'static str,
    #[serde(flatten)]
    pub count: Count,
}

/// Name of a hook code of the record header.
fn hook_name(code: u8) -> &'static str {
    Hook::try_from(code).map_or("unknown", Hook::name)
}

impl LiveStats {
    /// `per_interface`: also count packets per interface and hook.
    pub fn new(per_interface: bool) -> Self {
        Self {
            per_interface: per_interface.then(Mutex::default),
            ..Self::default()
        }
    }

    /// The kernel counters and the ring, once loaded.
    pub(crate) fn set_maps(
        &self,
        counters: Arc<PerCpuArray<MapData, u64>>,
        ring: Option<Arc<Ring>>,
    ) {
        *self.kernel.lock().expect("live stats lock") = Some(counters);
        *self.ring.lock().expect("live stats lock") = ring;
    }

    /// The flow budget's table, once loaded.
    pub(crate) fn set_flows(&self, flows: Arc<FlowTable>) {
        *self.flows.lock().expect("live stats lock") = Some(flows);
    }

    /// The packet store's counters, once it is open.
    pub(crate) fn set_store(&self, store: Arc<StoreStats>) {
        *self.store.lock().expect("live stats lock") = Some(store);
    }

    /// The pre-trigger memory, once the capture's sinks are open.
    pub(crate) fn set_history(&self, history: Arc<History>) {
        *self.history.lock().expect("live stats lock") = Some(history);
    }

    /// The pre-trigger memory, when the capture holds one.
    pub fn history(&self) -> Option<Arc<History>> {
        self.history.lock().expect("live stats lock").clone()
    }

    /// The packet store's counters (indexed, deleted by retention), when the capture writes one.
    pub fn store(&self) -> Option<Arc<StoreStats>> {
        self.store.lock().expect("live stats lock").clone()
    }

    /// Flows in the budget's table now and the most it holds, when the capture has a budget:
    /// a look-up per entry, so not part of [`LiveStats::snapshot`].
    pub fn flow_table(&self) -> Option<(u64, u32)> {
        let flows = self.flows.lock().expect("live stats lock").clone()?;
        Some((flows.entries(), flows.size()))
    }

    /// Whether readers want the counts per interface and hook.
    pub fn counts_per_interface(&self) -> bool {
        self.per_interface.is_some()
    }

    /// The per-interface counters, once loaded.
    pub(crate) fn set_per_interface(&self, per: PerInterface) {
        *self.per_interface_kernel.lock().expect("live stats lock") = Some(per);
    }

    pub(crate) fn set_filter(&self, expression: &str) {
        *self.filter.lock().expect("live stats lock") = expression.to_string();
    }

    pub(crate) fn set_attachments(
        &self,
        attachments: &[Attachment],
        errors: Vec<(String, String)>,
    ) {
        let mut names = self.names.lock().expect("live stats lock");
        for a in attachments {
            names.insert(a.iface.ifindex, a.iface.name.clone());
        }
        *self.attachments.lock().expect("live stats lock") = attachments.to_vec();
        *self.attach_errors.lock().expect("live stats lock") = errors;
    }

    /// Counts a batch taken from the ring.
    pub(crate) fn count_batch(&self, batch: &Batch) {
        let n = batch.len() as u64;
        self.read_packets.fetch_add(n, Relaxed);
        self.read_bytes.fetch_add(
            (batch.byte_len() as u64).saturating_sub(n * HEADER_LEN as u64),
            Relaxed,
        );
        if let Some(per) = &self.per_interface {
            let mut per = per.lock().expect("live stats lock");
            let mut last: Option<((u32, u8), Count)> = None;
            // Consecutive packets mostly share their interface: one map update per run.
            for p in batch.packets() {
                let key = (p.header.ifindex, p.header.hook);
                match &mut last {
                    Some((k, c)) if *k == key => {
                        c.packets += 1;
                        c.bytes += p.data.len() as u64;
                    }
                    _ => {
                        if let Some((k, c)) = last.take() {
                            let e = per.entry(k).or_default();
                            e.packets += c.packets;
                            e.bytes += c.bytes;
                        }
                        last = Some((
                            key,
                            Count {
                                packets: 1,
                                bytes: p.data.len() as u64,
                            },
                        ));
                    }
                }
            }
            if let Some((k, c)) = last {
                let e = per.entry(k).or_default();
                e.packets += c.packets;
                e.bytes += c.bytes;
            }
        }
    }

    /// What is attached now. Cheap: no kernel counter is read.
    pub fn attachment_state(&self) -> AttachmentState {
        let attached = self
            .attachments
            .lock()
            .expect("live stats lock")
            .iter()
            .map(|a| (a.iface.ifindex, a.hook))
            .collect();
        let errors = self.attach_errors.lock().expect("live stats lock").clone();
        AttachmentState {
            attached,
            errors,
            ready: self.ready.load(Relaxed),
        }
    }

    /// Reads everything now (the kernel counters too: a look-up per counter and CPU).
    pub fn snapshot(&self) -> Snapshot {
        let kernel = self
            .kernel
            .lock()
            .expect("live stats lock")
            .as_ref()
            .map(|c| crate::kernel::counters::read_counters(c))
            .unwrap_or_default();
        let ring = self.ring.lock().expect("live stats lock").clone();
        let names = self.names.lock().expect("live stats lock").clone();
        let name_of = |ifindex: u32| {
            names
                .get(&ifindex)
                .cloned()
                .or_else(|| crate::kernel::iface::ifname(ifindex))
                .unwrap_or_else(|| format!("ifindex {ifindex}"))
        };
        let interfaces = self
            .per_interface
            .as_ref()
            .map(|per| {
                per.lock()
                    .expect("live stats lock")
                    .iter()
                    .map(|(&(ifindex, hook), &count)| InterfaceCount {
                        interface: name_of(ifindex),
                        ifindex,
                        hook: hook_name(hook),
                        count,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let kernel_interfaces = self
            .per_interface_kernel
            .lock()
            .expect("live stats lock")
            .as_ref()
            .map(PerInterface::read)
            .unwrap_or_default()
            .into_iter()
            // A hook the tap does not use counts nothing.
            .filter(|c| c.seen > 0 || c.writer_dropped > 0)
            .map(|c| KernelInterfaceCount {
                interface: name_of(c.ifindex),
                ifindex: c.ifindex,
                hook: hook_name(c.hook),
                seen: c.seen,
                matched: c.matched,
                ring_full: c.ring_full,
                writer_dropped: c.writer_dropped,
            })
            .collect();
        Snapshot {
            kernel,
            kernel_interfaces,
            read_packets: self.read_packets.load(Relaxed),
            read_bytes: self.read_bytes.load(Relaxed),
            writer_dropped: self.queue_dropped.load(Relaxed) + self.writer.lost.load(Relaxed),
            written: self.writer.written.load(Relaxed),
            written_bytes: self.writer.bytes.load(Relaxed),
            files: self.writer.files.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            ring_pending: ring.as_ref().map(|r| r.pending()),
            ring_size: ring.as_ref().map(|r| r.size()),
            filter_installs: self.filter_installs.load(Relaxed),
            filter: self.filter.lock().expect("live stats lock").clone(),
            attachments: self
                .attachments
                .lock()
                .expect("live stats lock")
                .iter()
                .map(|a| AttachmentView {
                    interface: a.iface.name.clone(),
                    ifindex: a.iface.ifindex,
                    hook: a.hook.name(),
                    how: a.how,
                })
                .collect(),
            attach_errors: self.attach_errors.lock().expect("live stats lock").clone(),
            interfaces,
            ready: self.ready.load(Relaxed),
            pretrigger: self.history().map(|h| h.snapshot()),
        }
    }
}
