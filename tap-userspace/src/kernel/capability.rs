//! Which hooks an interface can take, for `tap capture -D`: TC (clsact) on any interface, XDP
//! in generic (skb) mode on any, and native XDP where the driver says so. The driver's word is
//! the kernel's `xdp-features` of the interface (`NETDEV_XDP_ACT_BASIC`), read from the
//! `netdev` generic netlink family (Linux 6.3, as `ynl --family netdev --dump dev-get` does).
//! No privileges needed.

use std::{collections::BTreeMap, io, os::fd::AsRawFd as _, time::Duration};

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};

use super::links::Link;

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
/// The driver runs XDP programs itself (XDP_PASS, XDP_DROP, XDP_TX, XDP_ABORTED).
const NETDEV_XDP_ACT_BASIC: u64 = 1;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Longest the kernel may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Appends a netlink attribute (4-byte aligned).
fn attr(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = u16::try_from(4 + data.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// A generic netlink request: header, `cmd`, attributes.
fn request(kind: u16, flags: u16, sequence: u32, cmd: u8, attrs: &[u8]) -> Vec<u8> {
    let len = u32::try_from(16 + 4 + attrs.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(len as usize);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&sequence.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&[cmd, 1, 0, 0]);
    out.extend_from_slice(attrs);
    out
}

/// The attributes of a generic netlink message body (after its 4-byte header): (type, data).
fn attributes(body: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut rest = body.get(4..).unwrap_or_default();
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > rest.len() {
            break;
        }
        out.push((kind, &rest[4..len]));
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    out
}

/// Messages of one datagram: (type, body). A truncated one ends the list.
fn messages(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < 16 || len > rest.len() {
            break;
        }
        out.push((u16::from_ne_bytes([rest[4], rest[5]]), &rest[16..len]));
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    out
}

fn u32_of(data: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(data.get(..4)?.try_into().ok()?))
}

fn u64_of(data: &[u8]) -> Option<u64> {
    Some(u64::from_ne_bytes(data.get(..8)?.try_into().ok()?))
}

/// Sends `req` and collects the answer's messages until a done, an error or (without `dump`)
/// the first answer. `Err` for an error answer or no answer in time.
fn ask(socket: &Socket, req: &[u8], dump: bool) -> io::Result<Vec<(u16, Vec<u8>)>> {
    socket.send(req, 0)?;
    let mut answers = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        // SAFETY: buf is valid for its length; the descriptor is the socket's, open.
        let n = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        for (kind, body) in messages(&buf[..n]) {
            match kind {
                NLMSG_DONE => return Ok(answers),
                NLMSG_ERROR => {
                    let errno = body
                        .get(..4)
                        .map_or(0, |b| i32::from_ne_bytes(b.try_into().unwrap_or_default()));
                    if errno == 0 && !dump {
                        return Ok(answers);
                    }
                    if errno != 0 {
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                }
                _ => {
                    answers.push((kind, body.to_vec()));
                    if !dump {
                        return Ok(answers);
                    }
                }
            }
        }
    }
}

/// Each interface's XDP features (`NETDEV_XDP_ACT_*` bits), by index.
///
/// # Errors
/// No `netdev` family (a kernel before 6.3), a socket that cannot be opened, or no answer.
pub fn xdp_features() -> io::Result<BTreeMap<u32, u64>> {
    let mut socket = Socket::new(NETLINK_GENERIC)?;
    socket.bind(&SocketAddr::new(0, 0))?;
    let timeout = libc::timeval {
        tv_sec: libc::time_t::try_from(ANSWER_TIMEOUT.as_secs()).unwrap_or(2),
        tv_usec: 0,
    };
    // SAFETY: a valid timeval of the size given, on our open socket.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::from_ref(&timeout).cast(),
            u32::try_from(size_of::<libc::timeval>()).unwrap_or(16),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut name = Vec::new();
    attr(&mut name, CTRL_ATTR_FAMILY_NAME, b"netdev\0");
    let family = ask(
        &socket,
        &request(GENL_ID_CTRL, NLM_F_REQUEST, 1, CTRL_CMD_GETFAMILY, &name),
        false,
    )?
    .iter()
    .flat_map(|(_, body)| {
        attributes(body)
            .into_iter()
            .filter(|(k, _)| *k == CTRL_ATTR_FAMILY_ID)
            .filter_map(|(_, d)| Some(u16::from_ne_bytes(d.get(..2)?.try_into().ok()?)))
            .collect::<Vec<_>>()
    })
    .next()
    .ok_or_else(|| io::Error::other("no netdev family id in the answer"))?;
    let mut out = BTreeMap::new();
    for (_, body) in ask(
        &socket,
        &request(
            family,
            NLM_F_REQUEST | NLM_F_DUMP,
            2,
            NETDEV_CMD_DEV_GET,
            &[],
        ),
        true,
    )? {
        let attrs = attributes(&body);
        let find = |k| attrs.iter().find(|(kind, _)| *kind == k).map(|(_, d)| *d);
        if let (Some(index), Some(features)) = (
            find(NETDEV_A_DEV_IFINDEX).and_then(u32_of),
            find(NETDEV_A_DEV_XDP_FEATURES).and_then(u64_of),
        ) {
            out.insert(index, features);
        }
    }
    Ok(out)
}

/// One line of `tap capture -D`: `INDEX.NAME [State, ...] (hooks)`, as tcpdump -D numbers and
/// flags them; `features` is the interface's XDP features, `None` when the kernel does not say.
#[must_use]
pub fn line(link: &Link, features: Option<u64>) -> String {
    let mut state = vec![if link.up { "Up" } else { "Down" }];
    if link.running {
        state.push("Running");
    }
    if link.loopback {
        state.push("Loopback");
    }
    let xdp = match features {
        Some(f) if f & NETDEV_XDP_ACT_BASIC != 0 => "xdp native|generic",
        Some(_) => "xdp generic",
        None => "xdp generic (native: unknown)",
    };
    format!(
        "{}.{} [{}] ({xdp}, tc)",
        link.ifindex,
        link.name,
        state.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_state_and_hooks() {
        let link = Link {
            ifindex: 2,
            name: "eth0".into(),
            up: true,
            running: true,
            loopback: false,
        };
        assert_eq!(
            line(&link, Some(0x7)),
            "2.eth0 [Up, Running] (xdp native|generic, tc)"
        );
        let lo = Link {
            ifindex: 1,
            name: "lo".into(),
            up: false,
            running: false,
            loopback: true,
        };
        assert_eq!(
            line(&lo, Some(0)),
            "1.lo [Down, Loopback] (xdp generic, tc)"
        );
    }

    #[test]
    fn junk_answers_are_no_attributes() {
        assert!(messages(&[0u8; 15]).is_empty());
        assert!(attributes(&[0u8; 3]).is_empty());
        let mut a = Vec::new();
        attr(&mut a, NETDEV_A_DEV_IFINDEX, &7u32.to_ne_bytes());
        let body = [&[0u8; 4][..], &a].concat();
        assert_eq!(
            attributes(&body),
            [(NETDEV_A_DEV_IFINDEX, &7u32.to_ne_bytes()[..])]
        );
    }

    /// In this namespace the loopback interface is listed with its features (Linux 6.3).
    #[test]
    fn the_kernel_lists_features() {
        let features = xdp_features().expect("netdev generic netlink family (Linux 6.3)");
        assert!(features.contains_key(&1), "{features:?}");
    }
}
