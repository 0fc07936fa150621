//! Kernel counters per interface and hook (`tap_common::ifstats`): the slots the loader gives
//! the interfaces it attaches to, and the counters read back, with the packets the writer's
//! queue dropped per interface and hook beside them. pcapng's interface statistics blocks and
//! the agent's metrics show them.
//!
//! An interface keeps its slot for the whole capture (detached and attached again, it counts on
//! where it left off). Once the [`MAX_IF_SLOTS`] - 1 slots are taken, further interfaces count in
//! slot 0 together, which no interface reports; the capture-wide counters count every packet
//! whatever the slots.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray},
};
use tap_common::{
    event::{HOOK_TC_EGRESS, HOOK_TC_INGRESS, HOOK_XDP},
    ifstats::{IF_MATCHED, IF_RING_FULL, IF_SEEN, IF_SLOT_ENTRIES, IfSlot, MAX_IF_SLOTS, base},
    maps,
};
use tracing::warn;

use crate::kernel::batch::Batch;

/// A per-interface map the eBPF object lacks, or holds in another shape (the loader words it as
/// its own load error, so the message is the same as for every other map).
#[derive(Debug, thiserror::Error)]
pub enum IfMapError {
    /// The object has no map of this name.
    #[error("the eBPF object has no map {0}")]
    Missing(&'static str),
    /// The map is not of the type tap expects.
    #[error("map {name}: {source}")]
    Map {
        /// The map's name.
        name: &'static str,
        /// What aya said.
        #[source]
        source: MapError,
    },
}

/// The counters of one interface and hook since the capture started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IfCounts {
    pub ifindex: u32,
    /// `tap_common::event::HOOK_*`.
    pub hook: u8,
    /// Packets the program ran on.
    pub seen: u64,
    /// Packets the filter selected.
    pub matched: u64,
    /// Selected packets lost because the ring was full.
    pub ring_full: u64,
    /// Packets taken from the ring and dropped because the writer's queue was full.
    pub writer_dropped: u64,
}

/// Interface index by slot (index 0: slot 1), shared by the slot giver and the readers.
type SlotTable = Arc<Mutex<Vec<u32>>>;

fn lock(table: &SlotTable) -> std::sync::MutexGuard<'_, Vec<u32>> {
    // A panic elsewhere while holding the lock leaves a plain list: still usable.
    table
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Gives interfaces their slots in the programs' tables. Lives with the loaded programs.
pub struct IfSlots {
    direct: Array<MapData, IfSlot>,
    more: HashMap<MapData, u32, u32>,
    table: SlotTable,
    warned_full: bool,
}

impl std::fmt::Debug for IfSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IfSlots")
            .field("interfaces", &*lock(&self.table))
            .finish_non_exhaustive()
    }
}

/// Reads the per-interface counters. Outlives the programs (the last read follows the detach).
pub struct IfCounters {
    map: PerCpuArray<MapData, u64>,
    table: SlotTable,
}

impl std::fmt::Debug for IfCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IfCounters")
            .field("interfaces", &*lock(&self.table))
            .finish_non_exhaustive()
    }
}

fn take<T>(
    ebpf: &mut Ebpf,
    name: &'static str,
    convert: impl FnOnce(aya::maps::Map) -> Result<T, MapError>,
) -> Result<T, IfMapError> {
    let map = ebpf.take_map(name).ok_or(IfMapError::Missing(name))?;
    convert(map).map_err(|source| IfMapError::Map { name, source })
}

/// Takes the per-interface maps out of a loaded object.
///
/// # Errors
/// A map missing or of another type.
pub fn take_maps(ebpf: &mut Ebpf) -> Result<(IfSlots, IfCounters), IfMapError> {
    let direct = take(ebpf, maps::IF_SLOTS, Array::try_from)?;
    let more = take(ebpf, maps::IF_SLOTS_MORE, HashMap::try_from)?;
    let map = take(ebpf, maps::IF_COUNTERS, PerCpuArray::try_from)?;
    let table = SlotTable::default();
    Ok((
        IfSlots {
            direct,
            more,
            table: Arc::clone(&table),
            warned_full: false,
        },
        IfCounters { map, table },
    ))
}

impl IfSlots {
    /// Gives `ifindex` a slot unless it has one: from then on its packets count apart. When all
    /// are taken it counts in slot 0 (logged once); a map update that fails is logged.
    pub fn assign(&mut self, ifindex: u32) {
        let slot = {
            let mut table = lock(&self.table);
            if table.contains(&ifindex) {
                return;
            }
            if table.len() + 1 >= MAX_IF_SLOTS as usize {
                if !self.warned_full {
                    warn!(
                        ifindex,
                        slots = MAX_IF_SLOTS - 1,
                        "no per-interface counter slot left: this and later interfaces count only in the totals"
                    );
                    self.warned_full = true;
                }
                return;
            }
            table.push(ifindex);
            table.len() as u32
        };
        if let Err(e) = self.install(ifindex, slot) {
            warn!(ifindex, error = %e, "cannot give the interface its counter slot");
        }
    }

    fn install(&mut self, ifindex: u32, slot: u32) -> Result<(), MapError> {
        let at = ifindex & (IF_SLOT_ENTRIES - 1);
        let held = self.direct.get(&at, 0)?;
        if held.slot == 0 {
            self.direct.set(at, IfSlot { ifindex, slot }, 0)
        } else {
            self.more.insert(ifindex, slot, 0)
        }
    }
}

impl IfCounters {
    /// The counters of every interface with a slot, for each hook, now. A look-up per counter,
    /// hook and interface.
    pub fn read(&self) -> Vec<IfCounts> {
        let interfaces = lock(&self.table).clone();
        let get = |index: u32| self.map.get(&index, 0).map_or(0, |v| v.iter().sum::<u64>());
        let mut out = Vec::with_capacity(interfaces.len() * 3);
        for (i, &ifindex) in interfaces.iter().enumerate() {
            for hook in [HOOK_XDP, HOOK_TC_INGRESS, HOOK_TC_EGRESS] {
                let at = base(i as u32 + 1, hook);
                out.push(IfCounts {
                    ifindex,
                    hook,
                    seen: get(at + IF_SEEN),
                    matched: get(at + IF_MATCHED),
                    ring_full: get(at + IF_RING_FULL),
                    writer_dropped: 0,
                });
            }
        }
        out
    }
}

/// Packets the writer's queue dropped, per (ifindex, hook), since the capture started.
#[derive(Debug, Default)]
pub struct QueueDrops(Mutex<BTreeMap<(u32, u8), u64>>);

impl QueueDrops {
    /// Counts every packet of a dropped batch.
    pub fn add(&self, batch: &Batch) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for p in batch.packets() {
            *map.entry((p.header.ifindex, p.header.hook)).or_default() += 1;
        }
    }

    /// `counts` with their queue drops filled in.
    pub fn fill(&self, counts: &mut [IfCounts]) {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for c in counts {
            c.writer_dropped = map.get(&(c.ifindex, c.hook)).copied().unwrap_or(0);
        }
    }
}

/// What a capture shares for its per-interface statistics: the kernel's counters and the
/// queue's drops.
#[derive(Debug, Clone, Default)]
pub struct PerInterface {
    pub kernel: Option<Arc<IfCounters>>,
    pub queue_drops: Arc<QueueDrops>,
}

impl PerInterface {
    /// Every interface with a slot, each hook: its counters now.
    pub fn read(&self) -> Vec<IfCounts> {
        let mut counts = self.kernel.as_ref().map(|k| k.read()).unwrap_or_default();
        self.queue_drops.fill(&mut counts);
        counts
    }
}
