//! The kernel side of a filter: writes a compiled filter into the inactive slot of the filter
//! maps and flips the active slot in one update (see `tap_common::filter` for why that is atomic).

use aya::maps::{
    Array, HashMap, LpmTrie, MapData, MapError, PerCpuArray, PerCpuValues, lpm_trie::Key,
};
use tap_common::{
    filter::{
        Addr4Data, Addr6Data, FilterCtl, FilterNode, FilterSlot, MAX_NODES, MAX_RULES, MacKey,
        SLOTS,
    },
    maps,
};

/// One slot's worth of filter: the graph and the entries of its set maps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterImage {
    /// `None`: no filter, every packet matches (rule 0).
    pub graph: Option<Graph>,
    /// IPv4 LPM entries: address (network order), prefix length (0..=32), set mask.
    pub addr4: Vec<([u8; 4], u8, u64)>,
    /// IPv6 LPM entries: address, prefix length (0..=128), set mask.
    pub addr6: Vec<([u8; 16], u8, u64)>,
    /// Port set masks, by port number (host order).
    pub ports: Vec<(u16, u64)>,
    /// MAC set masks.
    pub macs: Vec<([u8; 6], u64)>,
    /// Text of each rule, by rule number (for the hit counters).
    pub rules: Vec<String>,
    /// The expression, as given.
    pub expression: String,
}

/// A decision graph and where it starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Graph {
    pub nodes: Vec<FilterNode>,
    pub entry: u16,
    pub uses: u32,
}

/// Errors writing a filter into the kernel maps.
#[derive(Debug, thiserror::Error)]
pub enum FilterMapError {
    #[error("the BPF object has no map {0}")]
    Missing(&'static str),
    #[error("filter map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("the filter has {nodes} nodes; at most {MAX_NODES} fit")]
    TooManyNodes { nodes: usize },
    #[error("cannot count CPUs: {0}")]
    Cpus(String),
}

fn map_err(map: &'static str) -> impl FnOnce(MapError) -> FilterMapError {
    move |source| FilterMapError::Map { map, source }
}

/// Handles of the filter maps, taken out of the loaded object.
pub struct FilterMaps {
    ctl: Array<MapData, FilterCtl>,
    slots: Array<MapData, FilterSlot>,
    nodes: Array<MapData, FilterNode>,
    addr4: LpmTrie<MapData, Addr4Data, u64>,
    addr6: LpmTrie<MapData, Addr6Data, u64>,
    ports: Array<MapData, u64>,
    macs: HashMap<MapData, MacKey, u64>,
    hits: PerCpuArray<MapData, u64>,
    /// What each slot holds, to clear it before reuse and to name the rules.
    images: [FilterImage; SLOTS as usize],
    active: u32,
    ncpus: usize,
    /// Swaps done (the first install counts).
    pub installs: u64,
}

impl std::fmt::Debug for FilterMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterMaps")
            .field("active", &self.active)
            .field("installs", &self.installs)
            .finish_non_exhaustive()
    }
}

fn take<T>(ebpf: &mut aya::Ebpf, name: &'static str) -> Result<T, FilterMapError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(FilterMapError::Missing(name))?;
    T::try_from(map).map_err(map_err(name))
}

impl FilterMaps {
    /// Takes the filter maps out of a loaded (not necessarily attached) object.
    pub fn take(ebpf: &mut aya::Ebpf) -> Result<Self, FilterMapError> {
        let ncpus = aya::util::nr_cpus()
            .map_err(|(what, e)| FilterMapError::Cpus(format!("{what}: {e}")))?;
        Ok(Self {
            ctl: take(ebpf, maps::FILTER_CTL)?,
            slots: take(ebpf, maps::FILTER_SLOTS)?,
            nodes: take(ebpf, maps::FILTER_NODES)?,
            addr4: take(ebpf, maps::FILTER_ADDR4)?,
            addr6: take(ebpf, maps::FILTER_ADDR6)?,
            ports: take(ebpf, maps::FILTER_PORTS)?,
            macs: take(ebpf, maps::FILTER_MACS)?,
            hits: take(ebpf, maps::RULE_HITS)?,
            images: Default::default(),
            active: 0,
            ncpus,
            installs: 0,
        })
    }

    /// The filter in use.
    pub fn current(&self) -> &FilterImage {
        &self.images[self.active as usize]
    }

    /// Sets sampling (keep 1 in `sample`) and the per-CPU rate cap (packets per second, 0: none).
    pub fn set_limits(&mut self, sample: u32, rate_per_cpu: u32) -> Result<(), FilterMapError> {
        let ctl = FilterCtl {
            active: self.active,
            sample,
            rate_per_cpu,
            _pad: 0,
        };
        self.ctl.set(0, ctl, 0).map_err(map_err(maps::FILTER_CTL))
    }

    /// Writes `image` into the inactive slot, then makes it the active one. Packets see either
    /// the old filter or the new one, never a mix; nothing is detached.
    pub fn install(&mut self, image: FilterImage) -> Result<(), FilterMapError> {
        if let Some(g) = &image.graph {
            if g.nodes.len() > MAX_NODES as usize {
                return Err(FilterMapError::TooManyNodes {
                    nodes: g.nodes.len(),
                });
            }
        }
        let slot = if self.installs == 0 {
            self.active
        } else {
            1 - self.active
        };
        self.clear_slot(slot)?;
        self.write_slot(slot, &image)?;
        let mut ctl = self.ctl.get(&0, 0).map_err(map_err(maps::FILTER_CTL))?;
        ctl.active = slot;
        self.ctl.set(0, ctl, 0).map_err(map_err(maps::FILTER_CTL))?;
        self.active = slot;
        self.images[slot as usize] = image;
        self.installs += 1;
        Ok(())
    }

    fn clear_slot(&mut self, slot: u32) -> Result<(), FilterMapError> {
        let s = slot as u8;
        let old = std::mem::take(&mut self.images[slot as usize]);
        for (addr, len, _) in &old.addr4 {
            // Missing keys are fine: the slot may never have been written.
            let _ = self.addr4.remove(&Key::new(
                8 + u32::from(*len),
                Addr4Data {
                    slot: s,
                    addr: *addr,
                    _pad: [0; 3],
                },
            ));
        }
        for (addr, len, _) in &old.addr6 {
            let _ = self.addr6.remove(&Key::new(
                8 + u32::from(*len),
                Addr6Data {
                    slot: s,
                    addr: *addr,
                    _pad: [0; 3],
                },
            ));
        }
        for (port, _) in &old.ports {
            self.ports
                .set(slot * 65536 + u32::from(*port), 0, 0)
                .map_err(map_err(maps::FILTER_PORTS))?;
        }
        for (mac, _) in &old.macs {
            let _ = self.macs.remove(&MacKey {
                slot: s,
                _pad: 0,
                mac: *mac,
            });
        }
        for rule in 0..MAX_RULES {
            let zeros = PerCpuValues::try_from(vec![0u64; self.ncpus])
                .map_err(|e| FilterMapError::Cpus(e.to_string()))?;
            self.hits
                .set(slot * MAX_RULES + rule, zeros, 0)
                .map_err(map_err(maps::RULE_HITS))?;
        }
        Ok(())
    }

    fn write_slot(&mut self, slot: u32, image: &FilterImage) -> Result<(), FilterMapError> {
        let s = slot as u8;
        for (addr, len, mask) in &image.addr4 {
            let key = Key::new(
                8 + u32::from(*len),
                Addr4Data {
                    slot: s,
                    addr: *addr,
                    _pad: [0; 3],
                },
            );
            self.addr4
                .insert(&key, mask, 0)
                .map_err(map_err(maps::FILTER_ADDR4))?;
        }
        for (addr, len, mask) in &image.addr6 {
            let key = Key::new(
                8 + u32::from(*len),
                Addr6Data {
                    slot: s,
                    addr: *addr,
                    _pad: [0; 3],
                },
            );
            self.addr6
                .insert(&key, mask, 0)
                .map_err(map_err(maps::FILTER_ADDR6))?;
        }
        for (port, mask) in &image.ports {
            self.ports
                .set(slot * 65536 + u32::from(*port), mask, 0)
                .map_err(map_err(maps::FILTER_PORTS))?;
        }
        for (mac, mask) in &image.macs {
            self.macs
                .insert(
                    MacKey {
                        slot: s,
                        _pad: 0,
                        mac: *mac,
                    },
                    mask,
                    0,
                )
                .map_err(map_err(maps::FILTER_MACS))?;
        }
        let info = match &image.graph {
            None => FilterSlot::default(),
            Some(g) => {
                for (i, node) in g.nodes.iter().enumerate() {
                    self.nodes
                        .set(slot * MAX_NODES + i as u32, node, 0)
                        .map_err(map_err(maps::FILTER_NODES))?;
                }
                FilterSlot {
                    enabled: 1,
                    entry: g.entry,
                    _pad: 0,
                    uses: g.uses,
                    _pad2: 0,
                }
            }
        };
        self.slots
            .set(slot, info, 0)
            .map_err(map_err(maps::FILTER_SLOTS))
    }

    /// Hits per rule of the active filter, summed over CPUs: `(rule text, packets)`.
    pub fn rule_hits(&self) -> Vec<(String, u64)> {
        let image = self.current();
        let count = image.rules.len().max(1);
        (0..count)
            .map(|rule| {
                let hits = self
                    .hits
                    .get(&(self.active * MAX_RULES + rule as u32), 0)
                    .map_or(0, |v| v.iter().sum());
                let name = image
                    .rules
                    .get(rule)
                    .cloned()
                    .unwrap_or_else(|| "(all packets)".to_string());
                (name, hits)
            })
            .collect()
    }
}
