//! The network interfaces of this namespace, followed through rtnetlink: link events as they
//! happen (`RTM_NEWLINK` / `RTM_DELLINK` on a `NETLINK_ROUTE` socket subscribed to the link
//! group), and a full `RTM_GETLINK` dump to start with and on [`Links::resync`].
//!
//! The table changes only on positive evidence: an interface is added or renamed by a link
//! message that names it, and removed by an `RTM_DELLINK` or by its absence from a complete,
//! consistent dump. Whatever fails (a socket error, a message that does not decode, a dump the
//! kernel marks interrupted, lost events) is an error that leaves the table as it was; lost
//! events make the next [`Links::changed`] resynchronise.
//!
//! Both sockets are opened once, by [`Links::open`], and kept: following interfaces never needs
//! a new descriptor, so running out of them (see [`crate::support::listener`]) cannot blind it. Both are
//! non-blocking, driven by Tokio's [`AsyncFd`]. Needs Linux 2.6 rtnetlink; no privileges.

use std::{
    collections::BTreeMap,
    io,
    os::fd::{AsRawFd as _, RawFd},
    time::Duration,
};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkFlags, LinkMessage},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use tokio::io::{Interest, unix::AsyncFd};

use crate::model::Interface;

/// `RTMGRP_LINK`: the multicast group of link events.
const RTMGRP_LINK: u32 = 1;

/// Receive buffer asked of the kernel for events (bytes); it caps it at `net.core.rmem_max`.
/// A burst of link changes larger than this overruns it, which costs a resync, not the table.
const EVENT_BUFFER: usize = 1 << 20;

/// Size of one read: link messages of a dump come several to a datagram.
const READ_SIZE: usize = 64 << 10;

/// Longest a dump may take before it counts as failed.
pub const DUMP_TIMEOUT: Duration = Duration::from_secs(5);

/// Times an interrupted dump (the link table changed while it ran) is tried again.
const DUMP_TRIES: u32 = 3;

/// Why the link table could not be read or followed. The table stays as it was.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("rtnetlink socket ({op}): {source}")]
    Socket {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("listing the interfaces (RTM_GETLINK): the kernel answered {source}")]
    Refused {
        #[source]
        source: io::Error,
    },
    #[error("listing the interfaces: a link message does not decode: {0}")]
    Decode(String),
    #[error("listing the interfaces: no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("listing the interfaces: the table kept changing during {DUMP_TRIES} dumps")]
    Interrupted,
}

/// The interfaces by index, followed by rtnetlink.
#[derive(Debug)]
pub struct Links {
    events: AsyncFd<Socket>,
    requests: AsyncFd<Socket>,
    sequence: u32,
    table: BTreeMap<u32, Entry>,
    /// Events were lost (the socket overran) or did not decode: resync before trusting them.
    stale: bool,
    buf: Vec<u8>,
}

fn socket(op: &'static str, groups: u32) -> Result<Socket, LinkError> {
    let fail = |source| LinkError::Socket { op, source };
    let mut s = Socket::new(NETLINK_ROUTE).map_err(fail)?;
    s.bind(&SocketAddr::new(0, groups)).map_err(fail)?;
    s.set_non_blocking(true).map_err(fail)?;
    Ok(s)
}

/// What the table keeps of an interface: its name and its `IFF_*` flags.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    flags: LinkFlags,
}

/// One interface with its state, as [`Links::links`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    /// Administratively up (`IFF_UP`, `ip link set NAME up`).
    pub up: bool,
    /// Up and with a carrier (`IFF_RUNNING`).
    pub running: bool,
    pub loopback: bool,
}

/// The interface a link message describes, if it names one.
fn link_of(msg: &LinkMessage) -> Option<(u32, Entry)> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some((
            msg.header.index,
            Entry {
                name: name.clone(),
                flags: msg.header.flags,
            },
        )),
        _ => None,
    })
}

/// What one netlink message says.
enum Said {
    /// `RTM_NEWLINK`: this interface exists under this name, with these flags.
    Link(u32, Entry),
    /// `RTM_DELLINK`: this index is gone.
    Gone(u32),
    /// The end of a dump.
    Done,
    /// An error answer (`errno`).
    Error(i32),
    /// Anything else (a no-op, an acknowledgement, another message type).
    Other,
}

/// Splits a datagram into messages and reads each: `(sequence, flags, what it says)`.
fn messages(buf: &[u8]) -> Result<Vec<(u32, u16, Said)>, LinkError> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < 16 || len > rest.len() {
            return Err(LinkError::Decode(format!(
                "a message claims {len} bytes of {}",
                rest.len()
            )));
        }
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len])
            .map_err(|e| LinkError::Decode(e.to_string()))?;
        let said = match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => match link_of(&l) {
                Some((index, entry)) => Said::Link(index, entry),
                None => Said::Other,
            },
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => {
                Said::Gone(l.header.index)
            }
            NetlinkPayload::Done(_) => Said::Done,
            NetlinkPayload::Error(e) => match e.code {
                Some(code) => Said::Error(-code.get()),
                None => Said::Other,
            },
            _ => Said::Other,
        };
        out.push((msg.header.sequence_number, msg.header.flags, said));
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    Ok(out)
}

/// Applies one event to the table: true when it changed it (a name, or an interface going up or
/// down).
fn apply(table: &mut BTreeMap<u32, Entry>, said: Said) -> bool {
    match said {
        Said::Link(index, entry) => table.insert(index, entry.clone()) != Some(entry),
        Said::Gone(index) => table.remove(&index).is_some(),
        Said::Done | Said::Error(_) | Said::Other => false,
    }
}

/// Reads one datagram without waiting; `Ok(None)` when there is none.
fn recv_now(fd: RawFd, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
    buf.resize(READ_SIZE, 0);
    // SAFETY: buf is valid for READ_SIZE bytes of writing; the descriptor is ours and open.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock => Ok(None),
            io::ErrorKind::Interrupted => recv_now(fd, buf),
            _ => Err(e),
        };
    }
    Ok(Some(usize::try_from(n).unwrap_or(0)))
}

impl Links {
    /// Opens the event and request sockets and reads the table.
    ///
    /// # Errors
    /// A socket that cannot be opened or bound, or a first dump that fails.
    pub async fn open() -> Result<Self, LinkError> {
        let events = socket("events", RTMGRP_LINK)?;
        // Best effort: a smaller buffer only makes overruns (and resyncs) likelier.
        let _ = events.set_rx_buf_sz(EVENT_BUFFER);
        let requests = socket("requests", 0)?;
        let wrap = |s: Socket, op| {
            // SAFETY: the AsyncFd owns the socket, whose descriptor stays open until the AsyncFd
            // has deregistered it and drops it.
            unsafe { AsyncFd::register_with_interest(s, Interest::READABLE) }.map_err(|e| {
                LinkError::Socket {
                    op,
                    source: io::Error::from(e),
                }
            })
        };
        let mut links = Self {
            events: wrap(events, "events")?,
            requests: wrap(requests, "requests")?,
            sequence: 0,
            table: BTreeMap::new(),
            stale: false,
            buf: Vec::with_capacity(READ_SIZE),
        };
        links.resync().await?;
        Ok(links)
    }

    /// The interfaces now, by index.
    #[must_use]
    pub fn interfaces(&self) -> Vec<Interface> {
        self.table
            .iter()
            .map(|(&ifindex, e)| Interface {
                name: e.name.clone(),
                ifindex,
            })
            .collect()
    }

    /// The interfaces now with their state, by index.
    #[must_use]
    pub fn links(&self) -> Vec<Link> {
        self.table
            .iter()
            .map(|(&ifindex, e)| Link {
                ifindex,
                name: e.name.clone(),
                up: e.flags.contains(LinkFlags::Up),
                running: e.flags.contains(LinkFlags::Running),
                loopback: e.flags.contains(LinkFlags::Loopback),
            })
            .collect()
    }

    /// Waits for link events and applies them: true when the table changed. Lost or undecodable
    /// events are made good by a dump first. Cancel-safe: nothing is read until the socket is
    /// readable, and what is read is applied before returning.
    ///
    /// # Errors
    /// A socket error, or a resync (see [`Links::resync`]) that fails; the table stays.
    pub async fn changed(&mut self) -> Result<bool, LinkError> {
        if self.stale {
            return self.resync().await;
        }
        let mut guard = self
            .events
            .readable()
            .await
            .map_err(|source| LinkError::Socket {
                op: "waiting for events",
                source,
            })?;
        let fd = guard.get_inner().as_raw_fd();
        let mut changed = false;
        loop {
            match recv_now(fd, &mut self.buf) {
                Ok(Some(n)) => match messages(&self.buf[..n]) {
                    Ok(said) => {
                        for (_, _, s) in said {
                            changed |= apply(&mut self.table, s);
                        }
                    }
                    Err(e) => {
                        self.stale = true;
                        tracing::warn!(error = %e, "a link event does not decode: re-reading the interfaces");
                    }
                },
                Ok(None) => {
                    guard.clear_ready();
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // The kernel dropped events: only a dump tells what they were.
                    tracing::info!("link events overran the socket: re-reading the interfaces");
                    self.stale = true;
                }
                Err(source) => {
                    return Err(LinkError::Socket {
                        op: "reading events",
                        source,
                    });
                }
            }
        }
        if self.stale {
            return Ok(self.resync().await? || changed);
        }
        Ok(changed)
    }

    /// Reads the whole table again (an `RTM_GETLINK` dump) and replaces it: true when it
    /// changed.
    ///
    /// # Errors
    /// The kernel refused the dump, a message did not decode, the dump took longer than
    /// [`DUMP_TIMEOUT`] or kept being interrupted: the table stays as it was.
    pub async fn resync(&mut self) -> Result<bool, LinkError> {
        for _ in 0..DUMP_TRIES {
            match tokio::time::timeout(DUMP_TIMEOUT, self.dump()).await {
                Err(_) => return Err(LinkError::Timeout(DUMP_TIMEOUT)),
                Ok(Err(LinkError::Interrupted)) => {}
                Ok(Err(e)) => return Err(e),
                Ok(Ok(table)) => {
                    self.stale = false;
                    let changed = table != self.table;
                    self.table = table;
                    return Ok(changed);
                }
            }
        }
        Err(LinkError::Interrupted)
    }

    /// One dump, complete and consistent, or an error.
    async fn dump(&mut self) -> Result<BTreeMap<u32, Entry>, LinkError> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let mut request =
            NetlinkMessage::from(RouteNetlinkMessage::GetLink(LinkMessage::default()));
        request.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        request.header.sequence_number = sequence;
        request.finalize();
        let mut bytes = vec![0u8; request.buffer_len()];
        request.serialize(&mut bytes);
        let socket = |source| LinkError::Socket {
            op: "requesting the interfaces",
            source,
        };
        // Answers to an earlier dump that timed out would be taken for this one's.
        while recv_now(self.requests.get_ref().as_raw_fd(), &mut self.buf)
            .map_err(socket)?
            .is_some()
        {}
        self.requests.get_ref().send(&bytes, 0).map_err(socket)?;
        let mut table = BTreeMap::new();
        let mut interrupted = false;
        loop {
            let mut guard = self.requests.readable().await.map_err(socket)?;
            let fd = guard.get_inner().as_raw_fd();
            loop {
                let Some(n) = recv_now(fd, &mut self.buf).map_err(socket)? else {
                    guard.clear_ready();
                    break;
                };
                for (seq, flags, said) in messages(&self.buf[..n])? {
                    if seq != sequence {
                        continue;
                    }
                    interrupted |= flags & NLM_F_DUMP_INTR != 0;
                    match said {
                        Said::Link(index, entry) => {
                            table.insert(index, entry);
                        }
                        Said::Gone(_) | Said::Other => {}
                        Said::Error(errno) => {
                            return Err(LinkError::Refused {
                                source: io::Error::from_raw_os_error(errno),
                            });
                        }
                        Said::Done if interrupted => return Err(LinkError::Interrupted),
                        Said::Done => return Ok(table),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `ip ARGS` (in this thread's network namespace: the child inherits it).
    fn ip(args: &str) {
        let out = std::process::Command::new("ip")
            .args(args.split_whitespace())
            .output()
            .expect("running ip");
        assert!(out.status.success(), "ip {args}: {out:?}");
    }

    /// In a network namespace of this test's thread alone (root): the table starts with `lo`,
    /// follows a veth pair that appears, is renamed and goes, and a resync agrees with it.
    #[test]
    fn the_table_follows_links_that_come_and_go() {
        // SAFETY: unshare only changes this thread's namespaces; nothing else runs on it.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET) needs root: {}",
            io::Error::last_os_error()
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut links = Links::open().await.expect("rtnetlink");
            assert_eq!(names(&links), ["lo"]);
            ip("link add tapl-a type veth peer name tapl-b");
            until(&mut links, &["lo", "tapl-a", "tapl-b"]).await;
            ip("link set tapl-a name tapl-c");
            until(&mut links, &["lo", "tapl-b", "tapl-c"]).await;
            assert!(!links.resync().await.unwrap(), "the events had it all");
            ip("link del tapl-c");
            until(&mut links, &["lo"]).await;
            assert!(!links.resync().await.unwrap());
        });
    }

    fn names(links: &Links) -> Vec<String> {
        let mut v: Vec<String> = links.interfaces().into_iter().map(|i| i.name).collect();
        v.sort();
        v
    }

    /// Follows events until the table holds `want` (sorted), at most 10 s.
    async fn until(links: &mut Links, want: &[&str]) {
        for _ in 0..50 {
            if names(links) == want {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), links.changed()).await;
        }
        panic!("links {:?}, wanted {want:?}", names(links));
    }

    #[test]
    fn junk_is_an_error_not_a_panic() {
        assert!(messages(&[0u8; 15]).unwrap().is_empty());
        let mut bad = vec![0u8; 32];
        bad[0] = 200;
        assert!(matches!(messages(&bad), Err(LinkError::Decode(_))));
        bad[0] = 8;
        assert!(matches!(messages(&bad), Err(LinkError::Decode(_))));
        let mut x: u32 = 7;
        for len in 0..300 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    x.to_be_bytes()[1]
                })
                .collect();
            let _ = messages(&junk);
        }
    }
}
