//! Reads this host's [`Inventory`] from rtnetlink and follows its changes.
//!
//! - [`read_inventory`]: four dumps on one `NETLINK_ROUTE` socket: links (`RTM_GETLINK`),
//!   addresses (`RTM_GETADDR`), neighbours (`RTM_GETNEIGH`, IPv4 and IPv6) and the bridges'
//!   forwarding tables (`RTM_GETNEIGH` with family `AF_BRIDGE`, what `bridge fdb show` reads).
//!   Blocking, each dump bounded by [`DUMP_TIMEOUT`] and tried again when the kernel marks it
//!   interrupted (the table changed while it ran).
//! - [`InventoryEvents`]: a socket subscribed to link, address and neighbour events; bridge FDB
//!   changes come as neighbour events too (`RTNLGRP_NEIGH`), so a MAC learned behind a new port
//!   wakes [`InventoryEvents::changed`] as the bridge learns it. The caller then reads the
//!   inventory again: events only say *that* something changed, a dump says what is.
//!
//! Both work in the network namespace of the thread that opens them. Needs no privileges
//! (rtnetlink dumps are readable by any user); Linux 3.x or later for `AF_BRIDGE` FDB dumps.

use std::{
    io,
    net::IpAddr,
    os::fd::{AsRawFd as _, RawFd},
    time::{Duration, Instant},
};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressMessage},
    link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage},
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use tokio::io::{Interest, unix::AsyncFd};

use super::inventory::{Address, FdbEntry, Inventory, Link, LinkKind, Neighbour};

/// Longest a dump may take.
pub const DUMP_TIMEOUT: Duration = Duration::from_secs(5);
/// Interrupted dumps tried again before giving up.
const DUMP_TRIES: u32 = 5;
/// One read: dumps come several messages to a datagram.
const READ_SIZE: usize = 64 << 10;
/// Receive buffer asked for the event socket (capped by `net.core.rmem_max`): an overrun costs a
/// dump, nothing else.
const EVENT_BUFFER: usize = 1 << 20;

/// `RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR`.
const EVENT_GROUPS: u32 = 0x1 | 0x4 | 0x10 | 0x100;

/// Why the inventory could not be read or followed.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("rtnetlink socket ({op}): {source}")]
    Socket {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("rtnetlink {what} dump: the kernel answered {source}")]
    Refused {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("rtnetlink {what} dump: a message does not decode: {reason}")]
    Decode { what: &'static str, reason: String },
    #[error("rtnetlink {what} dump: no complete answer within {DUMP_TIMEOUT:?}")]
    Timeout { what: &'static str },
    #[error("rtnetlink {what} dump: the table kept changing during {DUMP_TRIES} dumps")]
    Interrupted { what: &'static str },
}

fn socket_error(op: &'static str) -> impl Fn(io::Error) -> InventoryError {
    move |source| InventoryError::Socket { op, source }
}

/// Waits up to `timeout` for `fd` to be readable.
fn wait_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd for the duration of the call.
    let rc = unsafe { libc::poll(&raw mut pfd, 1, ms) };
    match rc {
        0 => Ok(false),
        n if n > 0 => Ok(true),
        _ => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// Reads one datagram without waiting; `Ok(None)` when there is none.
fn recv_now(fd: RawFd, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
    buf.resize(READ_SIZE, 0);
    loop {
        // SAFETY: buf is valid for READ_SIZE bytes of writing; the descriptor is ours and open.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n >= 0 {
            return Ok(Some(n.unsigned_abs()));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => return Ok(None),
            io::ErrorKind::Interrupted => {}
            _ => return Err(e),
        }
    }
}

/// What one message of a dump says.
#[derive(Debug, PartialEq, Eq)]
enum Item {
    Link(Link),
    Address(Address),
    Fdb(FdbEntry),
    Neighbour(Neighbour),
    /// A message of the dump that carries nothing we keep (a failed neighbour, a non-Ethernet
    /// link address).
    Skip,
    Done,
    Error(i32),
}

fn mac_of(bytes: &[u8]) -> Option<[u8; 6]> {
    bytes.try_into().ok()
}

fn link_item(m: &LinkMessage) -> Item {
    let mut link = Link {
        index: m.header.index,
        name: String::new(),
        mac: None,
        kind: LinkKind::Other(String::new()),
        master: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name.clone_from(n),
            LinkAttribute::Address(b) => link.mac = mac_of(b),
            LinkAttribute::Controller(c) => link.master = Some(*c),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        link.kind = match k {
                            InfoKind::Bridge => LinkKind::Bridge,
                            InfoKind::Veth => LinkKind::Veth,
                            InfoKind::Tun => LinkKind::Tun,
                            other => LinkKind::Other(other.to_string()),
                        };
                    }
                }
            }
            _ => {}
        }
    }
    if link.name.is_empty() {
        Item::Skip
    } else {
        Item::Link(link)
    }
}

fn address_item(m: &AddressMessage) -> Item {
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS the peer's on point-to-point links.
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    });
    match local.or(address) {
        Some(addr) => Item::Address(Address {
            index: m.header.index,
            addr,
            prefix: m.header.prefix_len,
        }),
        None => Item::Skip,
    }
}

fn neighbour_item(m: &NeighbourMessage) -> Item {
    let mac = m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) => mac_of(b),
        _ => None,
    });
    let Some(mac) = mac else { return Item::Skip };
    if m.header.family == AddressFamily::Bridge {
        let mut e = FdbEntry {
            mac,
            port: m.header.ifindex,
            bridge: None,
            vlan: None,
            local: m.header.state == NeighbourState::Permanent,
        };
        for a in &m.attributes {
            match a {
                NeighbourAttribute::Controller(b) => e.bridge = Some(*b),
                NeighbourAttribute::Vlan(v) => e.vlan = Some(*v),
                _ => {}
            }
        }
        return Item::Fdb(e);
    }
    if matches!(
        m.header.state,
        NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
    ) {
        return Item::Skip;
    }
    let ip = m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        _ => None,
    });
    match ip {
        Some(ip) => Item::Neighbour(Neighbour {
            index: m.header.ifindex,
            ip,
            mac,
        }),
        None => Item::Skip,
    }
}

/// Splits a datagram into messages: `(sequence, flags, item)`.
fn items(what: &'static str, buf: &[u8]) -> Result<Vec<(u32, u16, Item)>, InventoryError> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < 16 || len > rest.len() {
            return Err(InventoryError::Decode {
                what,
                reason: format!("a message claims {len} bytes of {}", rest.len()),
            });
        }
        let msg =
            NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len]).map_err(|e| {
                InventoryError::Decode {
                    what,
                    reason: e.to_string(),
                }
            })?;
        let item = match &msg.payload {
            NetlinkPayload::InnerMessage(m) => match m {
                RouteNetlinkMessage::NewLink(l) => link_item(l),
                RouteNetlinkMessage::NewAddress(a) => address_item(a),
                RouteNetlinkMessage::NewNeighbour(n) => neighbour_item(n),
                _ => Item::Skip,
            },
            NetlinkPayload::Done(_) => Item::Done,
            NetlinkPayload::Error(e) => match e.code {
                Some(code) => Item::Error(-code.get()),
                None => Item::Skip,
            },
            _ => Item::Skip,
        };
        out.push((msg.header.sequence_number, msg.header.flags, item));
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    Ok(out)
}

/// A blocking rtnetlink socket for dumps.
struct Dumper {
    socket: Socket,
    sequence: u32,
    buf: Vec<u8>,
}

impl Dumper {
    fn open() -> Result<Self, InventoryError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(socket_error("open"))?;
        socket
            .bind(&SocketAddr::new(0, 0))
            .map_err(socket_error("bind"))?;
        Ok(Self {
            socket,
            sequence: 0,
            buf: Vec::with_capacity(READ_SIZE),
        })
    }

    /// One complete dump of `request`, its items appended to `into`.
    fn dump(
        &mut self,
        what: &'static str,
        request: &RouteNetlinkMessage,
        into: &mut Inventory,
    ) -> Result<(), InventoryError> {
        for _ in 0..DUMP_TRIES {
            let mut got = Inventory::default();
            if self.dump_once(what, request.clone(), &mut got)? {
                into.links.extend(got.links);
                into.addresses.extend(got.addresses);
                into.fdb.extend(got.fdb);
                into.neighbours.extend(got.neighbours);
                return Ok(());
            }
        }
        Err(InventoryError::Interrupted { what })
    }

    /// `Ok(false)` when the kernel marked the dump interrupted.
    fn dump_once(
        &mut self,
        what: &'static str,
        request: RouteNetlinkMessage,
        into: &mut Inventory,
    ) -> Result<bool, InventoryError> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let mut msg = NetlinkMessage::from(request);
        msg.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        msg.header.sequence_number = sequence;
        msg.finalize();
        let mut bytes = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut bytes);
        let fd = self.socket.as_raw_fd();
        // Answers to an earlier dump that failed would be taken for this one's.
        while recv_now(fd, &mut self.buf)
            .map_err(socket_error("draining"))?
            .is_some()
        {}
        self.socket
            .send(&bytes, 0)
            .map_err(socket_error("sending a dump request"))?;
        let deadline = Instant::now() + DUMP_TIMEOUT;
        let mut interrupted = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero()
                || !wait_readable(fd, left).map_err(socket_error("waiting for a dump"))?
            {
                if Instant::now() >= deadline {
                    return Err(InventoryError::Timeout { what });
                }
                continue;
            }
            let Some(n) = recv_now(fd, &mut self.buf).map_err(socket_error("reading a dump"))?
            else {
                continue;
            };
            for (seq, flags, item) in items(what, &self.buf[..n])? {
                if seq != sequence {
                    continue;
                }
                interrupted |= flags & NLM_F_DUMP_INTR != 0;
                match item {
                    Item::Link(l) => into.links.push(l),
                    Item::Address(a) => into.addresses.push(a),
                    Item::Fdb(f) => into.fdb.push(f),
                    Item::Neighbour(n) => into.neighbours.push(n),
                    Item::Skip => {}
                    Item::Error(errno) => {
                        return Err(InventoryError::Refused {
                            what,
                            source: io::Error::from_raw_os_error(errno),
                        });
                    }
                    Item::Done => return Ok(!interrupted),
                }
            }
        }
    }
}

/// Reads the inventory of the calling thread's network namespace. Blocking: at most four dumps,
/// each bounded by [`DUMP_TIMEOUT`] per try.
///
/// # Errors
/// A socket error, a refused, undecodable, interrupted or overlong dump.
pub fn read_inventory() -> Result<Inventory, InventoryError> {
    let mut d = Dumper::open()?;
    let mut inv = Inventory::default();
    d.dump(
        "link",
        &RouteNetlinkMessage::GetLink(LinkMessage::default()),
        &mut inv,
    )?;
    d.dump(
        "address",
        &RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        &mut inv,
    )?;
    d.dump(
        "neighbour",
        &RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
        &mut inv,
    )?;
    let mut fdb = NeighbourMessage::default();
    fdb.header.family = AddressFamily::Bridge;
    d.dump(
        "bridge fdb",
        &RouteNetlinkMessage::GetNeighbour(fdb),
        &mut inv,
    )?;
    inv.links.sort_by_key(|l| l.index);
    Ok(inv)
}

/// Link, address, neighbour and FDB events of the namespace it was opened in.
#[derive(Debug)]
pub struct InventoryEvents {
    socket: AsyncFd<Socket>,
    buf: Vec<u8>,
}

impl InventoryEvents {
    /// Subscribes. Open it before the first [`read_inventory`], so that no change falls between
    /// the read and the subscription. Needs a Tokio runtime.
    ///
    /// # Errors
    /// The socket cannot be opened or registered.
    pub fn open() -> Result<Self, InventoryError> {
        let mut s = Socket::new(NETLINK_ROUTE).map_err(socket_error("open events"))?;
        s.bind(&SocketAddr::new(0, EVENT_GROUPS))
            .map_err(socket_error("subscribe"))?;
        s.set_non_blocking(true)
            .map_err(socket_error("non-blocking"))?;
        // Best effort: a smaller buffer only makes overruns (and re-reads) likelier.
        let _ = s.set_rx_buf_sz(EVENT_BUFFER);
        // SAFETY: the AsyncFd owns the socket, whose descriptor stays open until the AsyncFd has
        // deregistered it and drops it.
        let socket = unsafe { AsyncFd::register_with_interest(s, Interest::READABLE) }
            .map_err(|e| socket_error("register with the runtime")(io::Error::from(e)))?;
        Ok(Self {
            socket,
            buf: Vec::with_capacity(READ_SIZE),
        })
    }

    /// Waits for at least one event and reads all that are pending; the caller then reads the
    /// inventory again. An overrun (events the kernel dropped) counts as a change. Cancel-safe.
    ///
    /// # Errors
    /// The socket failed.
    pub async fn changed(&mut self) -> Result<(), InventoryError> {
        loop {
            let mut guard = self
                .socket
                .readable()
                .await
                .map_err(socket_error("waiting for events"))?;
            let fd = guard.get_inner().as_raw_fd();
            let mut any = false;
            loop {
                match recv_now(fd, &mut self.buf) {
                    Ok(Some(_)) => any = true,
                    Ok(None) => {
                        guard.clear_ready();
                        break;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => any = true,
                    Err(e) => return Err(socket_error("reading events")(e)),
                }
            }
            if any {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junk_is_an_error_not_a_panic() {
        assert!(items("link", &[0u8; 15]).unwrap().is_empty());
        let mut bad = vec![0u8; 32];
        bad[0] = 200;
        assert!(items("link", &bad).is_err());
        bad[0] = 8;
        assert!(items("link", &bad).is_err());
        let mut x: u32 = 7;
        for len in 0..400 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = items("link", &junk);
        }
    }

    /// The loopback namespace of this process has at least `lo`, with its address.
    #[test]
    fn reads_this_namespace() {
        let inv = read_inventory().expect("rtnetlink dumps");
        let lo = inv.links.iter().find(|l| l.name == "lo").expect("lo");
        assert_eq!(lo.index, 1);
        assert!(
            inv.addresses
                .iter()
                .any(|a| a.index == 1 && a.addr == IpAddr::from([127, 0, 0, 1]) && a.prefix == 8),
            "{inv:?}"
        );
    }
}
