//! This host's network inventory as plain data: interfaces with their MACs and addresses, bridge
//! forwarding entries (FDB) and neighbour entries. [`super::netlink`] reads it from rtnetlink;
//! tests build it by hand. [`super::reconcile`] decides from it where each source is.

use std::net::IpAddr;

/// The kinds of interface attribution cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    Bridge,
    /// A veth end: a container's or a namespace's port.
    Veth,
    /// A tun or tap device: a VM's port.
    Tun,
    /// Anything else, by its rtnetlink kind (`vxlan`, `bond`, ...), or empty for a physical NIC.
    Other(String),
}

/// One interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// Link-layer address, when it is a 6-byte one.
    pub mac: Option<[u8; 6]>,
    pub kind: LinkKind,
    /// Index of the bridge (or bond) it is enslaved to.
    pub master: Option<u32>,
}

/// An address configured on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub addr: IpAddr,
    pub prefix: u8,
}

/// A bridge forwarding entry (`bridge fdb`): `mac` is reached through port `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbEntry {
    pub mac: [u8; 6],
    /// The port's interface index.
    pub port: u32,
    /// The bridge whose table holds it (`master BRIDGE`), when it is a bridge entry.
    pub bridge: Option<u32>,
    pub vlan: Option<u16>,
    /// A permanent entry: one of the host's own port addresses, not a workload's.
    pub local: bool,
}

/// A neighbour entry (`ip neigh`): `ip` is at `mac` on interface `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    pub index: u32,
    pub ip: IpAddr,
    pub mac: [u8; 6],
}

/// The host's inventory at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    pub links: Vec<Link>,
    pub addresses: Vec<Address>,
    pub fdb: Vec<FdbEntry>,
    /// Only entries with a link-layer address in a usable state (not failed or incomplete).
    pub neighbours: Vec<Neighbour>,
}

impl Inventory {
    #[must_use]
    pub fn link(&self, index: u32) -> Option<&Link> {
        self.links.iter().find(|l| l.index == index)
    }
}
