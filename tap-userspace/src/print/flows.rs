//! The TCP connections the printer remembers for relative sequence numbers.
//!
//! tcpdump keeps, per connection and direction, the first sequence and acknowledgement numbers
//! it saw and subtracts them from later ones; its table never shrinks. Ours holds at most
//! `capacity` connections in two generations: lookups and new connections go to the young one;
//! when it holds half the capacity it becomes the old one and the previous old one is dropped,
//! and a connection found in the old generation moves back to the young one. So a connection
//! seen within the last `capacity / 2` new connections is always remembered, memory stays
//! bounded (about 100 bytes a connection), and every step is O(1).

use std::collections::HashMap;

/// Connections remembered by default: 65,536 (about 6.5 MB at most).
pub const DEFAULT_TCP_FLOWS: usize = 65_536;

/// A connection in tcpdump's orientation: the side with the lower port (or address on a tie)
/// first; IPv4 addresses in the first four bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FlowKey {
    pub(crate) v6: bool,
    pub(crate) src: [u8; 16],
    pub(crate) dst: [u8; 16],
    /// `sport << 16 | dport` of the oriented connection.
    pub(crate) ports: u32,
}

/// The numbers subtracted from a connection's sequence and acknowledgement numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlowBase {
    pub(crate) seq: u32,
    pub(crate) ack: u32,
}

/// Bounded table of TCP connections; see the module documentation.
#[derive(Debug)]
pub struct FlowTable {
    half: usize,
    young: HashMap<FlowKey, FlowBase>,
    old: HashMap<FlowKey, FlowBase>,
}

impl FlowTable {
    /// A table remembering at most `capacity` connections (at least 2).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            half: (capacity / 2).max(1),
            young: HashMap::new(),
            old: HashMap::new(),
        }
    }

    /// Connections remembered now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn make_room(&mut self) {
        if self.young.len() >= self.half {
            std::mem::swap(&mut self.young, &mut self.old);
            self.young.clear();
        }
    }

    pub(crate) fn get(&mut self, key: &FlowKey) -> Option<FlowBase> {
        if let Some(b) = self.young.get(key) {
            return Some(*b);
        }
        let b = self.old.remove(key)?;
        self.make_room();
        self.young.insert(*key, b);
        Some(b)
    }

    pub(crate) fn insert(&mut self, key: FlowKey, base: FlowBase) {
        if let Some(b) = self.young.get_mut(&key) {
            *b = base;
            return;
        }
        self.old.remove(&key);
        self.make_room();
        self.young.insert(key, base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> FlowKey {
        FlowKey {
            v6: false,
            src: [0; 16],
            dst: [0; 16],
            ports: n,
        }
    }

    #[test]
    fn bounded_and_keeps_recent_connections() {
        let mut t = FlowTable::new(100);
        let base = FlowBase { seq: 1, ack: 2 };
        t.insert(key(0), base);
        for n in 1..10_000 {
            t.insert(key(n), base);
            // Connection 0 stays alive by being looked up now and then.
            if n % 40 == 0 {
                assert_eq!(t.get(&key(0)), Some(base), "after {n}");
            }
            assert!(t.len() <= 100);
        }
        assert_eq!(t.get(&key(5)), None, "an idle connection is forgotten");
        assert_eq!(t.get(&key(9_999)), Some(base));
    }
}
