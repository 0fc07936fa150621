//! The per-flow budget's table seen from user space (`tap_common::flow`): how many flows it
//! holds, and, for the bench and the tests, reading and setting a flow's use.
//!
//! Evictions. An LRU hash map does not report the entries it evicts. The programs count every
//! flow they add (`FLOWS_NEW`), and nothing but the LRU removes one (neither the programs nor
//! tap delete entries), so the flows evicted are the flows added less the entries in the table:
//! exact once the programs are detached, and while they run short by the flows added since the
//! count of entries began.

use aya::maps::{HashMap, MapData, MapError};
use tap_common::flow::{FlowKey, FlowOf};

/// The flow table: [`FlowKey`] → bytes or packets used.
pub struct FlowTable {
    map: HashMap<MapData, FlowKey, u64>,
    size: u32,
}

impl std::fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowTable")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl FlowTable {
    pub(crate) fn new(map: HashMap<MapData, FlowKey, u64>, size: u32) -> Self {
        Self { map, size }
    }

    /// Flows the table holds at most.
    #[must_use]
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Flows in the table now: one look-up per entry (about a microsecond each), at most the
    /// table's size.
    #[must_use]
    pub fn entries(&self) -> u64 {
        self.map.keys().take(self.size as usize).flatten().count() as u64
    }

    /// The bytes or packets `key`'s flow has used (None: not in the table).
    #[must_use]
    pub fn used(&self, key: &FlowKey) -> Option<u64> {
        self.map.get(key, 0).ok()
    }

    /// Sets `key`'s flow's use (adding the flow when it is not there).
    ///
    /// # Errors
    /// The map update's, e.g. a full table refusing a new flow.
    pub fn set(&mut self, key: &FlowKey, used: u64) -> Result<(), MapError> {
        self.map.insert(key, used, 0)
    }
}

/// The flow of an Ethernet frame as the programs read it (no tunnel), or None for a frame the
/// budget leaves alone.
#[must_use]
pub fn flow_of(frame: &[u8]) -> Option<FlowOf> {
    tap_common::flow::parse(frame, (0, 0))
}
