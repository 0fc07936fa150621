//! Loads the embedded BPF object and attaches its programs. [`Attached`] owns the links: dropping
//! it detaches everything. Every attachment is a BPF link (XDP links, tcx), so a `kill -9` of the
//! process detaches too: the kernel drops a link with its last file descriptor.

use std::{error::Error as _, io, sync::Arc};

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray},
    programs::{ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode as AyaXdpMode},
};
use tap_common::maps;
use tracing::{info, warn};

use crate::{
    filter::maps::{FilterImage, FilterMaps},
    kernel::flow::FlowTable,
    kernel::ifstats::{self, IfCounters, IfSlots},
    model::{Hook, Interface, XdpMode},
};

/// Errors while loading and attaching the programs. aya's `ProgramError` is boxed: it is large,
/// and every loader step and each error that wraps this one (capture, replay) returns it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "permission denied while {op}: tap needs root (or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)"
    )]
    NotPermitted { op: &'static str },
    #[error("the kernel refused program {program}: {message}")]
    Rejected {
        program: String,
        message: String,
        verifier_log: String,
    },
    #[error("interface {iface} does not support native XDP: use --xdp-mode generic or auto")]
    NativeXdpUnsupported {
        iface: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("attaching {program} to {iface} failed: {source}")]
    Attach {
        program: String,
        iface: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("loading the BPF object failed: {0}")]
    Object(#[source] aya::EbpfError),
    #[error("the BPF object has no {kind} named {name}")]
    Missing { kind: &'static str, name: String },
    #[error("installing the filter failed: {0}")]
    Filter(#[source] crate::filter::maps::FilterMapError),
    #[error("mapping the ring buffer failed: {source}")]
    RingMap {
        #[source]
        source: io::Error,
    },
    #[error("BPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

/// What to load and where to attach it.
#[derive(Debug, Clone)]
pub struct LoadSpec<'a> {
    pub interfaces: &'a [Interface],
    pub hooks: &'a [Hook],
    pub xdp_mode: XdpMode,
    pub snaplen: u32,
    pub ring_size: u32,
    /// Name of the XDP program to load instead of [`maps::PROG_XDP`] (tests).
    pub xdp_program: Option<&'a str>,
    /// The filter, installed before anything is attached so no unfiltered packet slips through.
    pub filter: FilterImage,
    /// Keep 1 in `sample` matched packets (0 or 1: all).
    pub sample: u32,
    /// Matched packets per second kept, per CPU (0: no cap).
    pub rate_per_cpu: u32,
    /// Decapsulation bits (`tap_common::config::decap`) and the VXLAN port.
    pub decap: u32,
    pub vxlan_port: u16,
    /// Drop every packet after copying it (a dedicated monitor interface).
    pub consume: bool,
    /// Count per interface and hook too ([`crate::kernel::ifstats`]): a few ns per packet, for pcapng's
    /// statistics and the agent's metrics.
    pub per_interface: bool,
    /// Copy only the first bytes or packets of every flow (`--flow-budget`).
    pub flow_budget: Option<crate::model::FlowBudget>,
}

/// One program attached to one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub iface: Interface,
    pub hook: Hook,
    /// How it is attached, for the log: "xdp native", "xdp generic", "tcx".
    pub how: &'static str,
}

/// Loaded and attached programs. Dropping this detaches them all.
pub struct Attached {
    ebpf: Ebpf,
    pub attachments: Vec<Attachment>,
    /// The program and link of each attachment, same order, to detach one interface at a time.
    links: Vec<(String, LinkId)>,
    /// Gives each interface attached to its per-interface counter slot first.
    slots: Option<IfSlots>,
}

/// aya's handle of one attachment.
#[derive(Debug)]
enum LinkId {
    Xdp(aya::programs::xdp::XdpLinkId),
    Tc(aya::programs::tc::SchedClassifierLinkId),
}

/// The ring buffer map: its descriptor (for epoll) and its memory, mapped once.
pub struct RingMap {
    data: MapData,
    pub ring: Arc<crate::kernel::ring::Ring>,
}

impl RingMap {
    fn new(data: MapData, size: u32) -> io::Result<Self> {
        use std::os::fd::AsFd as _;
        let ring = crate::kernel::ring::Ring::new(data.fd().as_fd(), size)?;
        Ok(Self {
            data,
            ring: Arc::new(ring),
        })
    }
}

impl std::os::fd::AsRawFd for RingMap {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd as _;
        self.data.fd().as_fd().as_raw_fd()
    }
}

/// The maps user space reads, taken out of the object so they outlive the programs: on shutdown
/// the programs are detached first and the ring is drained after, so nothing copied is left behind.
pub struct Maps {
    pub ring: RingMap,
    pub counters: PerCpuArray<MapData, u64>,
    pub filter: FilterMaps,
    /// The kernel counters per interface and hook.
    pub interfaces: Arc<IfCounters>,
    /// Their slots, until [`load_and_attach`] hands them to the [`Attached`] programs.
    pub slots: Option<IfSlots>,
    /// The flow budget's table, when there is a budget.
    pub flows: Option<FlowTable>,
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attached")
            .field("attachments", &self.attachments)
            .finish_non_exhaustive()
    }
}

/// tcx links exist from kernel 6.6 on; aya picks them there.
fn has_tcx() -> bool {
    aya::util::KernelVersion::current().is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0))
}

/// True when an EPERM sits anywhere in the error's chain.
fn is_eperm(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.raw_os_error() == Some(libc::EPERM) {
                return true;
            }
        }
        if let Some(ProgramError::SyscallError(s)) = e.downcast_ref::<ProgramError>() {
            if s.io_error.raw_os_error() == Some(libc::EPERM) {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

/// The kernel's ring records are 8-byte aligned: the smallest wake-up step.
const RING_RECORD_ALIGN: u32 = 8;

/// The verifier's reason for refusing a program: the lines after the last instruction it
/// printed, without the statistics at the end, joined into one line.
pub fn verifier_reason(log: &str) -> String {
    let is_stat = |l: &str| {
        l.starts_with("processed ")
            || l.starts_with("verification time")
            || l.starts_with("stack depth")
    };
    let is_insn = |l: &str| {
        l.split_once(": ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_stat(l))
        .collect();
    let start = lines.iter().rposition(|l| is_insn(l)).map_or(0, |i| i + 1);
    let reason = lines[start..].join("; ");
    if reason.is_empty() {
        lines
            .last()
            .map_or_else(|| "no verifier output".to_string(), ToString::to_string)
    } else {
        reason
    }
}

/// Loads the object with the given settings, takes the maps user space reads, and installs the
/// filter. Nothing is attached yet.
pub fn load(spec: &LoadSpec<'_>) -> Result<(Ebpf, Maps), LoadError> {
    let vxlan_port = u32::from(spec.vxlan_port);
    // Wake the reader each time an eighth of the ring (a power of two, as the ring's size; at
    // most 4 MiB) has been written, or 100 ms after the last wake-up: each wake-up is an
    // interrupt on the producing CPU (a VM exit on this kind of machine, tens of µs), and the
    // drain polls every 10 ms anyway (`drain::POLL_INTERVAL`).
    let wakeup_bytes: u32 = (spec.ring_size / 8).clamp(RING_RECORD_ALIGN, 4 << 20);
    let wakeup_ns: u32 = 100_000_000;
    let consume = u32::from(spec.consume);
    let per_interface = u32::from(spec.per_interface);
    let (flow_budget, flow_unit, flow_table) = match spec.flow_budget {
        None => (0u64, tap_common::flow::UNIT_BYTES, 1),
        Some(b) => (
            b.limit,
            match b.unit {
                crate::model::FlowUnit::Bytes => tap_common::flow::UNIT_BYTES,
                crate::model::FlowUnit::Packets => tap_common::flow::UNIT_PACKETS,
            },
            b.table_size,
        ),
    };
    let mut ebpf = EbpfLoader::new()
        .override_global(maps::GLOBAL_SNAPLEN, &spec.snaplen, true)
        .override_global(maps::GLOBAL_DECAP, &spec.decap, true)
        .override_global(maps::GLOBAL_VXLAN_PORT, &vxlan_port, true)
        .override_global(maps::GLOBAL_CONSUME, &consume, true)
        .override_global(maps::GLOBAL_IF_STATS, &per_interface, true)
        .override_global(maps::GLOBAL_FLOW_BUDGET, &flow_budget, true)
        .override_global(maps::GLOBAL_FLOW_UNIT, &flow_unit, true)
        // Without a budget the table is never used: the smallest one.
        .map_max_entries(maps::FLOWS, flow_table)
        .override_global(maps::GLOBAL_WAKEUP_BYTES, &wakeup_bytes, true)
        .override_global(maps::GLOBAL_WAKEUP_NS, &wakeup_ns, true)
        .map_max_entries(maps::RING, spec.ring_size)
        .load(crate::BPF_OBJECT)
        .map_err(|e| {
            if is_eperm(&e) {
                LoadError::NotPermitted {
                    op: "creating BPF maps",
                }
            } else {
                LoadError::Object(e)
            }
        })?;

    let ring = ebpf.take_map(maps::RING).ok_or(LoadError::Missing {
        kind: "map",
        name: maps::RING.into(),
    })?;
    let ring = match ring {
        aya::maps::Map::RingBuf(data) => {
            RingMap::new(data, spec.ring_size).map_err(|source| LoadError::RingMap { source })?
        }
        _ => {
            return Err(LoadError::Missing {
                kind: "ring buffer map",
                name: maps::RING.into(),
            });
        }
    };
    let counters = ebpf.take_map(maps::COUNTERS).ok_or(LoadError::Missing {
        kind: "map",
        name: maps::COUNTERS.into(),
    })?;
    let counters = PerCpuArray::try_from(counters).map_err(|source| LoadError::Map {
        name: maps::COUNTERS,
        source,
    })?;
    let (slots, interfaces) = ifstats::take_maps(&mut ebpf).map_err(|e| match e {
        ifstats::IfMapError::Missing(name) => LoadError::Missing {
            kind: "map",
            name: name.into(),
        },
        ifstats::IfMapError::Map { name, source } => LoadError::Map { name, source },
    })?;
    let flows = match spec.flow_budget {
        None => None,
        Some(b) => {
            let map = ebpf.take_map(maps::FLOWS).ok_or(LoadError::Missing {
                kind: "map",
                name: maps::FLOWS.into(),
            })?;
            let map = aya::maps::HashMap::try_from(map).map_err(|source| LoadError::Map {
                name: maps::FLOWS,
                source,
            })?;
            Some(FlowTable::new(map, b.table_size))
        }
    };
    let mut filter = FilterMaps::take(&mut ebpf).map_err(LoadError::Filter)?;
    filter
        .install(spec.filter.clone())
        .map_err(LoadError::Filter)?;
    filter
        .set_limits(spec.sample, spec.rate_per_cpu)
        .map_err(LoadError::Filter)?;
    Ok((
        ebpf,
        Maps {
            ring,
            counters,
            filter,
            interfaces: Arc::new(interfaces),
            slots: Some(slots),
            flows,
        },
    ))
}

/// Name of the program serving `hook`.
pub fn program_name(hook: Hook, xdp_program: Option<&str>) -> &str {
    match hook {
        Hook::Xdp => xdp_program.unwrap_or(maps::PROG_XDP),
        Hook::TcIngress => maps::PROG_TC_INGRESS,
        Hook::TcEgress => maps::PROG_TC_EGRESS,
    }
}

/// Loads the object and attaches it. The filter is in place before the first attach, so no
/// unfiltered packet slips through. On any error, whatever was attached is detached again before
/// returning (the partly built [`Attached`] is dropped).
pub fn load_and_attach(spec: &LoadSpec<'_>) -> Result<(Attached, Maps), LoadError> {
    let (ebpf, mut maps) = load(spec)?;
    let mut attached = Attached {
        ebpf,
        attachments: Vec::new(),
        links: Vec::new(),
        slots: maps.slots.take(),
    };
    for hook in spec.hooks {
        let name = program_name(*hook, spec.xdp_program);
        attached.load_program(name, *hook)?;
        for iface in spec.interfaces {
            attached.attach_one(name, *hook, iface, spec.xdp_mode)?;
        }
    }
    Ok((attached, maps))
}

/// Loads (verifies) the program for `hook` in an object from [`load`], without attaching it.
pub fn load_program(
    ebpf: Ebpf,
    hook: Hook,
    xdp_program: Option<&str>,
) -> Result<Attached, LoadError> {
    let mut attached = Attached {
        ebpf,
        attachments: Vec::new(),
        links: Vec::new(),
        slots: None,
    };
    attached.load_program(program_name(hook, xdp_program), hook)?;
    Ok(attached)
}

impl Attached {
    /// The loaded object (for BPF_PROG_TEST_RUN).
    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }

    fn attach_one(
        &mut self,
        name: &str,
        hook: Hook,
        iface: &Interface,
        mode: XdpMode,
    ) -> Result<(), LoadError> {
        if let Some(slots) = &mut self.slots {
            slots.assign(iface.ifindex);
        }
        let (how, link) = self.attach(name, hook, iface, mode)?;
        info!(iface = %iface.name, hook = hook.name(), how, "attached");
        self.attachments.push(Attachment {
            iface: iface.clone(),
            hook,
            how,
        });
        self.links.push((name.to_string(), link));
        Ok(())
    }

    /// Attaches the programs of `hooks` (loaded by [`load_and_attach`]) to one more interface.
    /// All or nothing: when one hook fails, the ones attached before it are detached again.
    pub fn attach_interface(
        &mut self,
        iface: &Interface,
        hooks: &[Hook],
        mode: XdpMode,
        xdp_program: Option<&str>,
    ) -> Result<(), LoadError> {
        let before = self.attachments.len();
        for hook in hooks {
            if let Err(e) = self.attach_one(program_name(*hook, xdp_program), *hook, iface, mode) {
                while self.attachments.len() > before {
                    self.detach_at(self.attachments.len() - 1);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Detaches every program from the interface with index `ifindex` (which may be gone
    /// already: the kernel then released the attachment itself, and this only drops the link).
    pub fn detach_interface(&mut self, ifindex: u32) {
        while let Some(i) = self
            .attachments
            .iter()
            .position(|a| a.iface.ifindex == ifindex)
        {
            let a = &self.attachments[i];
            info!(iface = %a.iface.name, hook = a.hook.name(), "detached");
            self.detach_at(i);
        }
    }

    fn detach_at(&mut self, i: usize) {
        let a = self.attachments.remove(i);
        let (name, link) = self.links.remove(i);
        let result = match (link, self.ebpf.program_mut(&name)) {
            (LinkId::Xdp(id), Some(p)) => <&mut Xdp>::try_from(p).and_then(|p| p.detach(id)),
            (LinkId::Tc(id), Some(p)) => {
                <&mut SchedClassifier>::try_from(p).and_then(|p| p.detach(id))
            }
            (_, None) => Ok(()),
        };
        if let Err(e) = result {
            // An interface that went away took its attachment with it.
            tracing::debug!(iface = %a.iface.name, error = %e, "detach");
        }
    }

    #[expect(
        clippy::match_same_arms,
        reason = "two ways the kernel says permission denied, kept apart for what each checks"
    )]
    fn load_program(&mut self, name: &str, hook: Hook) -> Result<(), LoadError> {
        let program = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| LoadError::Missing {
                kind: "program",
                name: name.into(),
            })?;
        let result = match hook {
            Hook::Xdp => {
                let p: &mut Xdp = program.try_into().map_err(|_| LoadError::Missing {
                    kind: "XDP program",
                    name: name.into(),
                })?;
                p.load()
            }
            Hook::TcIngress | Hook::TcEgress => {
                let p: &mut SchedClassifier =
                    program.try_into().map_err(|_| LoadError::Missing {
                        kind: "TC program",
                        name: name.into(),
                    })?;
                p.load()
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err(ProgramError::LoadError {
                io_error,
                verifier_log,
            }) => {
                if io_error.raw_os_error() == Some(libc::EPERM)
                    && verifier_log.to_string().trim().is_empty()
                {
                    return Err(LoadError::NotPermitted {
                        op: "loading BPF programs",
                    });
                }
                let log = verifier_log.to_string();
                Err(LoadError::Rejected {
                    program: name.into(),
                    message: verifier_reason(&log),
                    verifier_log: log,
                })
            }
            Err(e) if is_eperm(&e) => Err(LoadError::NotPermitted {
                op: "loading BPF programs",
            }),
            // Loading a second hook's program of the same name is not an error.
            Err(ProgramError::AlreadyLoaded) => Ok(()),
            Err(e) => Err(LoadError::Rejected {
                program: name.into(),
                message: e.to_string(),
                verifier_log: String::new(),
            }),
        }
    }

    fn attach(
        &mut self,
        name: &str,
        hook: Hook,
        iface: &Interface,
        mode: XdpMode,
    ) -> Result<(&'static str, LinkId), LoadError> {
        let program = self.ebpf.program_mut(name).expect("loaded above");
        let attach_err = |source: ProgramError| {
            if is_eperm(&source) {
                LoadError::NotPermitted {
                    op: "attaching programs",
                }
            } else {
                LoadError::Attach {
                    program: name.into(),
                    iface: iface.name.clone(),
                    source: Box::new(source),
                }
            }
        };
        match hook {
            Hook::Xdp => {
                let p: &mut Xdp = program.try_into().expect("checked at load");
                match mode {
                    XdpMode::Generic => {
                        let id = p
                            .attach_to_if_index(iface.ifindex, AyaXdpMode::Skb)
                            .map_err(attach_err)?;
                        Ok(("xdp generic", LinkId::Xdp(id)))
                    }
                    XdpMode::Native => {
                        match p.attach_to_if_index(iface.ifindex, AyaXdpMode::Driver) {
                            Ok(id) => Ok(("xdp native", LinkId::Xdp(id))),
                            Err(e) if is_eperm(&e) => Err(attach_err(e)),
                            Err(source) => Err(LoadError::NativeXdpUnsupported {
                                iface: iface.name.clone(),
                                source: Box::new(source),
                            }),
                        }
                    }
                    XdpMode::Auto => {
                        match p.attach_to_if_index(iface.ifindex, AyaXdpMode::Driver) {
                            Ok(id) => Ok(("xdp native", LinkId::Xdp(id))),
                            Err(e) if is_eperm(&e) => Err(attach_err(e)),
                            Err(e) => {
                                warn!(iface = %iface.name, error = %e.source().map_or_else(|| e.to_string(), ToString::to_string), "native XDP unavailable, using generic");
                                let id = p
                                    .attach_to_if_index(iface.ifindex, AyaXdpMode::Skb)
                                    .map_err(attach_err)?;
                                Ok(("xdp generic", LinkId::Xdp(id)))
                            }
                        }
                    }
                }
            }
            Hook::TcIngress | Hook::TcEgress => {
                let p: &mut SchedClassifier = program.try_into().expect("checked at load");
                let direction = if hook == Hook::TcIngress {
                    TcAttachType::Ingress
                } else {
                    TcAttachType::Egress
                };
                if !has_tcx() {
                    // Before tcx, classifiers hang off a clsact qdisc; it may already exist.
                    if let Err(e) = aya::programs::tc::qdisc_add_clsact(&iface.name) {
                        let exists = e
                            .source()
                            .and_then(|s| s.downcast_ref::<io::Error>())
                            .and_then(io::Error::raw_os_error)
                            == Some(libc::EEXIST);
                        if !exists {
                            warn!(iface = %iface.name, error = %e, "adding clsact qdisc failed");
                        }
                    }
                }
                let id = p.attach(&iface.name, direction).map_err(attach_err)?;
                Ok((if has_tcx() { "tcx" } else { "clsact" }, LinkId::Tc(id)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::verifier_reason;

    #[test]
    fn reason_is_what_follows_the_last_instruction() {
        let log = "0: R1=ctx() R10=fp0\n0: (61) r1 = *(u32 *)(r1 +0)          ; R1=pkt(r=0)\n1: (71) r1 = *(u8 *)(r1 +0)\ninvalid access to packet, off=0 size=1, R1(id=0,off=0,r=0)\nR1 offset is outside of the packet\nverification time 21 usec\nstack depth 0\nprocessed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n";
        assert_eq!(
            verifier_reason(log),
            "invalid access to packet, off=0 size=1, R1(id=0,off=0,r=0); R1 offset is outside of the packet"
        );
        assert_eq!(verifier_reason(""), "no verifier output");
    }
}
