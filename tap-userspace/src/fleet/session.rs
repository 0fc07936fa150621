//! A fleet session: what to mirror (a source), where to (a target), with which filter, and how it
//! ranks against other sessions selecting the same packets.
//!
//! The JSON stored in etcd (see [`super::keys`] for where):
//!
//! ```json
//! {"version":1,"tenant":"acme","name":"web","source":"mac:02:00:5e:00:53:01",
//!  "direction":"both","filter":"tcp port 443","snaplen":0,"priority":100,
//!  "target":"vxlan://203.0.113.9?vni=42"}
//! ```
//!
//! Every field but `version`, `tenant`, `name`, `source` and `target` may be left out (the
//! defaults are those of [`RawSession`]); unknown fields are refused, so a typo is an error and
//! not a silently ignored setting. The tenant and name must equal the key's: the key is what etcd's
//! permissions protect, so a value claiming another tenant is refused, never realized as theirs.
//!
//! Validation ([`validate`]) is one function that translates the session into the capture's own
//! settings and runs the capture's rules on them, so a session and `tap capture` accept and refuse
//! the same values with the same words.

use std::{fmt, net::IpAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::filter::maps::FilterImage;

/// The format version this build writes and reads (`"version"` in the JSON, `v1` in the keys).
pub const FORMAT_VERSION: u32 = 1;

/// Largest session value read from etcd, in bytes: a hostile value cannot cost more.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Priority of a session that does not give one.
pub const DEFAULT_PRIORITY: u32 = crate::model::DEFAULT_SESSION_PRIORITY;

/// Longest tenant, session or host name.
pub const MAX_NAME: usize = 64;

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// Why a session was refused: the setting (its key in the JSON) and the reason, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("the value is {len} bytes; a session is at most {MAX_VALUE_BYTES}")]
    TooLarge { len: usize },
    #[error("the value is not session JSON: {0}")]
    Json(String),
    #[error("format version {found} is not supported: this tap reads version {FORMAT_VERSION}")]
    Version { found: u32 },
    #[error("the key says {key}, the value says {value}: a session lives under its own tenant")]
    KeyMismatch { key: String, value: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> SessionError {
    SessionError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// Tenant, session and host names: they are parts of etcd keys and of etcd user and role names.
///
/// # Errors
/// One line naming `key` when `name` is empty, longer than [`MAX_NAME`], or holds anything but
/// ASCII letters, digits, `-`, `_` and `.` (or is `.` or `..`).
pub fn check_name(key: &'static str, name: &str) -> Result<(), SessionError> {
    if name.is_empty()
        || name.len() > MAX_NAME
        || name == "."
        || name == ".."
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(invalid(
            key,
            format!("'{name}': use 1 to {MAX_NAME} letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(())
}

/// What a session mirrors.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// A workload's MAC address (`mac:02:00:5e:00:53:01`).
    Mac([u8; 6]),
    /// A workload's IP address or subnet (`ip:192.0.2.7`, `ip:2001:db8::/64`). Host bits zero.
    Ip { addr: IpAddr, prefix: u8 },
    /// Interfaces by name or shell glob on one host (`iface:hv1:vm1-*`), or on every host
    /// (`iface:*:vm1-*`).
    Iface { host: String, glob: String },
}

impl Source {
    /// Parses `mac:MAC`, `ip:ADDR[/LEN]` or `iface:HOST:GLOB`.
    ///
    /// # Errors
    /// One line naming the `source` setting.
    pub fn parse(text: &str) -> Result<Self, SessionError> {
        let bad = |why: &str| {
            invalid(
                "source",
                format!("'{text}': {why}; use mac:MAC, ip:ADDR[/LEN] or iface:HOST:GLOB"),
            )
        };
        if let Some(mac) = text.strip_prefix("mac:") {
            return parse_mac(mac)
                .map(Source::Mac)
                .ok_or_else(|| bad("not a MAC address (six hex pairs with ':')"));
        }
        if let Some(ip) = text.strip_prefix("ip:") {
            let (addr, len) = match ip.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (ip, None),
            };
            let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
            let bits = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match len {
                None => bits,
                Some(l) => match l.parse::<u8>() {
                    Ok(p) if p <= bits => p,
                    _ => return Err(bad(&format!("the prefix length must be 0 to {bits}"))),
                },
            };
            if masked(addr, prefix) != addr {
                return Err(bad("the address has bits set past the prefix length"));
            }
            return Ok(Source::Ip { addr, prefix });
        }
        if let Some(rest) = text.strip_prefix("iface:") {
            let (host, glob) = rest
                .split_once(':')
                .ok_or_else(|| bad("iface: needs a host and an interface"))?;
            if host != "*" {
                check_name("source", host).map_err(|_| bad("not a host name (or *)"))?;
            }
            if glob.is_empty()
                || glob.len() > IFNAME_MAX
                || glob.contains(['/', ':'])
                || glob.chars().any(char::is_whitespace)
            {
                return Err(bad(&format!(
                    "'{glob}' is not an interface name or glob (at most {IFNAME_MAX} characters, no '/', ':' or spaces)"
                )));
            }
            return Ok(Source::Iface {
                host: host.to_string(),
                glob: glob.to_string(),
            });
        }
        Err(bad("unknown kind"))
    }

    /// True when `self` (a session's source) lies within `owned` (an ownership entry): the same
    /// MAC; a subnet inside the owned one; an interface glob on the same host that the owned glob
    /// covers (checked per interface by the reconciler, so here: the same host).
    #[must_use]
    pub fn within(&self, owned: &Source) -> bool {
        match (self, owned) {
            (Source::Mac(a), Source::Mac(b)) => a == b,
            (
                Source::Ip { addr, prefix },
                Source::Ip {
                    addr: net,
                    prefix: len,
                },
            ) => addr.is_ipv4() == net.is_ipv4() && prefix >= len && masked(*addr, *len) == *net,
            (Source::Iface { host: a, .. }, Source::Iface { host: b, .. }) => a == b || b == "*",
            _ => false,
        }
    }
}

/// `addr` with only its first `prefix` bits kept.
pub(crate) fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & mask).into())
        }
    }
}

/// Parses `aa:bb:cc:dd:ee:ff` (any case).
pub(crate) fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// `aa:bb:cc:dd:ee:ff`, lower case.
pub(crate) fn format_mac(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

impl fmt::Display for Source {
    /// The canonical text: the form [`Source::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Mac(m) => write!(f, "mac:{}", format_mac(*m)),
            Source::Ip { addr, prefix } if u32::from(*prefix) == max_prefix(*addr) => {
                write!(f, "ip:{addr}")
            }
            Source::Ip { addr, prefix } => write!(f, "ip:{addr}/{prefix}"),
            Source::Iface { host, glob } => write!(f, "iface:{host}:{glob}"),
        }
    }
}

fn max_prefix(addr: IpAddr) -> u32 {
    if addr.is_ipv4() { 32 } else { 128 }
}

/// Which packets of the source, seen from the workload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Packets the workload receives.
    In,
    /// Packets the workload sends.
    Out,
    #[default]
    Both,
}

impl Direction {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
            Direction::Both => "both",
        }
    }

    #[must_use]
    pub fn wants_in(self) -> bool {
        matches!(self, Direction::In | Direction::Both)
    }

    #[must_use]
    pub fn wants_out(self) -> bool {
        matches!(self, Direction::Out | Direction::Both)
    }
}

/// The session as stored: raw values, before validation. Also what `tap session create` builds
/// from its flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    pub tenant: String,
    pub name: String,
    /// `mac:MAC`, `ip:ADDR[/LEN]` or `iface:HOST:GLOB`.
    pub source: String,
    #[serde(default)]
    pub direction: Direction,
    /// pcap-filter expression; empty: every packet of the source.
    #[serde(default)]
    pub filter: String,
    /// Bytes kept of each packet; 0: the whole packet (as `tap capture -s 0`).
    #[serde(default)]
    pub snaplen: u32,
    /// Lower wins when two sessions select the same packet on the same host.
    #[serde(default = "default_priority")]
    pub priority: u32,
    /// `vxlan://HOST[:PORT]?vni=N`, `file:PATH[?OPTIONS]` or `suricata:SOCKET?file=PATH&...`.
    pub target: String,
}

fn default_priority() -> u32 {
    DEFAULT_PRIORITY
}

/// Where a session's packets go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A VXLAN collector: the wire format of `tap capture --forward`.
    Vxlan(crate::model::VxlanTarget),
    /// Files on the host where the session runs, as `tap capture -w` writes them.
    File(crate::model::OutputConfig),
    /// Rotated files on that host, each finished one submitted to Suricata's unix socket.
    Suricata {
        socket: PathBuf,
        output: crate::model::OutputConfig,
    },
}

/// A validated session.
#[derive(Debug, Clone)]
pub struct Session {
    /// What was stored (canonical source text).
    pub raw: RawSession,
    pub source: Source,
    /// The filter, compiled as `tap capture` compiles it (also checks it fits the kernel's limits).
    pub filter: FilterImage,
    /// The parsed filter, `None` when empty: the reconciler combines sessions from it.
    pub expr: Option<crate::filter::Expr>,
    /// Effective bytes kept of each packet (0 and oversize values resolved as the capture does).
    pub snaplen: u32,
    pub target: Target,
}

impl Session {
    /// `tenant/name`, the session's identity in the fleet.
    #[must_use]
    pub fn id(&self) -> SessionId {
        SessionId {
            tenant: self.raw.tenant.clone(),
            name: self.raw.name.clone(),
        }
    }

    /// The JSON stored in etcd.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.raw).expect("a RawSession always serialises")
    }

    /// Reads a value found at `key` (`tenant`, `name` from the key): bounded, never panics, and
    /// refuses a value whose tenant or name differ from the key's.
    ///
    /// # Errors
    /// [`SessionError`] saying what is wrong, in one line.
    pub fn decode(key: &SessionId, value: &[u8]) -> Result<Self, SessionError> {
        // Peek at the version first: a later format may have fields this one refuses.
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(SessionError::TooLarge { len: value.len() });
        }
        let version: Version = serde_json::from_slice(value).map_err(|e| json_error(&e))?;
        if version.version != FORMAT_VERSION {
            return Err(SessionError::Version {
                found: version.version,
            });
        }
        let raw: RawSession = serde_json::from_slice(value).map_err(|e| json_error(&e))?;
        if raw.tenant != key.tenant || raw.name != key.name {
            return Err(SessionError::KeyMismatch {
                key: key.to_string(),
                value: format!("{}/{}", excerpt(&raw.tenant), excerpt(&raw.name)),
            });
        }
        validate(raw)
    }
}

fn json_error(e: &serde_json::Error) -> SessionError {
    SessionError::Json(excerpt(&e.to_string()))
}

/// At most 80 characters of `text`, for echoing hostile input.
fn excerpt(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        return text.to_string();
    }
    let cut: String = text.chars().take(MAX).collect();
    format!("{cut}…")
}

/// A session's identity: its tenant and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId {
    pub tenant: String,
    pub name: String,
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.name)
    }
}

/// Validates a session: the names and the source by their own syntax, everything the capture
/// also has (filter, snap length, target) by the capture's rules, through the settings' reader
/// of a session ([`crate::settings::session::fleet_capture`]). A rule is not written twice.
///
/// # Errors
/// The first setting that is wrong, with the capture's own reason.
pub fn validate(mut raw: RawSession) -> Result<Session, SessionError> {
    if raw.version != FORMAT_VERSION {
        return Err(SessionError::Version { found: raw.version });
    }
    check_name("tenant", &raw.tenant)?;
    check_name("name", &raw.name)?;
    let source = Source::parse(&raw.source)?;
    raw.source = source.to_string();

    let config = crate::settings::session::fleet_capture(&raw.filter, raw.snaplen, &raw.target)
        .map_err(|e| invalid(e.key, e.reason))?;
    let target = if let Some(v) = config.consumers.forward.first() {
        Target::Vxlan(v.clone())
    } else if let Some(socket) = &config.consumers.suricata_socket {
        Target::Suricata {
            socket: socket.clone(),
            output: config.output.clone(),
        }
    } else {
        Target::File(config.output.clone())
    };
    let expr =
        crate::filter::parse(raw.filter.trim()).map_err(|e| invalid("filter", e.to_string()))?;
    Ok(Session {
        raw,
        source,
        filter: config.filter,
        expr,
        snaplen: config.snaplen,
        target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(source: &str, target: &str) -> RawSession {
        RawSession {
            version: FORMAT_VERSION,
            tenant: "acme".into(),
            name: "web".into(),
            source: source.into(),
            direction: Direction::Both,
            filter: String::new(),
            snaplen: 0,
            priority: DEFAULT_PRIORITY,
            target: target.into(),
        }
    }

    #[test]
    fn sources_parse_and_print_canonically() {
        let s = Source::parse("mac:02:00:5E:00:53:01").unwrap();
        assert_eq!(s, Source::Mac([2, 0, 0x5e, 0, 0x53, 1]));
        assert_eq!(s.to_string(), "mac:02:00:5e:00:53:01");
        assert_eq!(
            Source::parse("ip:192.0.2.7").unwrap().to_string(),
            "ip:192.0.2.7"
        );
        assert_eq!(
            Source::parse("ip:2001:db8::/64").unwrap().to_string(),
            "ip:2001:db8::/64"
        );
        assert_eq!(
            Source::parse("iface:hv1:vm1-*").unwrap(),
            Source::Iface {
                host: "hv1".into(),
                glob: "vm1-*".into()
            }
        );
        for bad in [
            "mac:02:00:5e:00:53",
            "mac:02:00:5e:00:53:01:07",
            "mac:0g:00:5e:00:53:01",
            "ip:192.0.2.7/33",
            "ip:192.0.2.7/24",
            "ip:nope",
            "iface:hv1",
            "iface:hv/1:eth0",
            "iface:hv1:a-very-long-interface-name",
            "vm1",
        ] {
            let e = Source::parse(bad).unwrap_err();
            assert!(e.to_string().starts_with("source: "), "{bad}: {e}");
        }
    }

    #[test]
    fn within_owned_sources() {
        let p = |s| Source::parse(s).unwrap();
        assert!(p("ip:192.0.2.7").within(&p("ip:192.0.2.0/24")));
        assert!(p("ip:192.0.2.0/25").within(&p("ip:192.0.2.0/24")));
        assert!(!p("ip:192.0.2.0/23").within(&p("ip:192.0.2.0/24")));
        assert!(!p("ip:198.51.100.1").within(&p("ip:192.0.2.0/24")));
        assert!(!p("ip:2001:db8::1").within(&p("ip:0.0.0.0/0")));
        assert!(p("mac:02:00:5e:00:53:01").within(&p("mac:02:00:5e:00:53:01")));
        assert!(!p("mac:02:00:5e:00:53:01").within(&p("mac:02:00:5e:00:53:02")));
        assert!(!p("mac:02:00:5e:00:53:01").within(&p("ip:0.0.0.0/0")));
    }

    #[test]
    fn a_valid_session_round_trips_through_json() {
        let mut r = raw("mac:02:00:5E:00:53:01", "vxlan://203.0.113.9?vni=42");
        r.filter = "tcp port 443".into();
        r.snaplen = 96;
        let s = validate(r).unwrap();
        assert_eq!(s.raw.source, "mac:02:00:5e:00:53:01");
        assert_eq!(s.snaplen, 96);
        assert!(matches!(&s.target, Target::Vxlan(v) if v.vni == 42));
        let json = s.to_json();
        assert_eq!(
            json,
            r#"{"version":1,"tenant":"acme","name":"web","source":"mac:02:00:5e:00:53:01","direction":"both","filter":"tcp port 443","snaplen":96,"priority":100,"target":"vxlan://203.0.113.9?vni=42"}"#
        );
        let back = Session::decode(&s.id(), json.as_bytes()).unwrap();
        assert_eq!(back.raw, s.raw);
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let s = Session::decode(
            &SessionId {
                tenant: "acme".into(),
                name: "web".into(),
            },
            br#"{"version":1,"tenant":"acme","name":"web","source":"ip:192.0.2.7","target":"vxlan://203.0.113.9?vni=1"}"#,
        )
        .unwrap();
        assert_eq!(s.raw.direction, Direction::Both);
        assert_eq!(s.raw.priority, DEFAULT_PRIORITY);
        assert_eq!(s.snaplen, tap_common::config::DEFAULT_SNAPLEN);
        assert!(s.expr.is_none());
    }

    /// The capture's own rules and reasons for the same bad values.
    #[test]
    fn errors_are_the_captures() {
        use crate::settings::{
            Key, Purpose,
            flags::{self, Request},
            rules,
        };
        let capture = |args: &[&str]| {
            let mut argv = vec!["tap", "capture", "-i", "lo", "-w", "x.pcap"];
            argv.extend(args);
            let Request::Capture { capture, .. } = flags::try_from_args(argv).unwrap().command
            else {
                unreachable!()
            };
            let e = rules::capture(&capture, Purpose::Command).unwrap_err();
            match e.key {
                Key::Filter | Key::Forward => e
                    .reason
                    .render_after(e.key, &|k| flags::flag(k).to_string()),
                _ => flags::worded(&e).message,
            }
        };
        let mut r = raw("mac:02:00:5e:00:53:01", "vxlan://203.0.113.9?vni=1");
        r.filter = "tcp port 99999".into();
        let e = validate(r).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("filter: {}", capture(&["--filter", "tcp port 99999"]))
        );
        let r = raw("mac:02:00:5e:00:53:01", "vxlan://203.0.113.9");
        let e = validate(r).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("target: {}", capture(&["--forward", "vxlan://203.0.113.9"]))
        );
        let r = raw(
            "mac:02:00:5e:00:53:01",
            "file:/var/lib/tap/x.pcap?ring_files=3",
        );
        let e = validate(r).unwrap_err();
        assert_eq!(e.to_string(), format!("target: {}", capture(&["-W", "3"])));
        let r = raw(
            "mac:02:00:5e:00:53:01",
            "suricata:/run/suricata.sock?file=/var/lib/tap/s.pcap",
        );
        assert_eq!(
            validate(r).unwrap_err().to_string(),
            format!("target: {}", capture(&["--suricata-socket", "/run/s.sock"]))
        );
    }

    #[test]
    fn sink_targets_validate() {
        let s = validate(raw(
            "iface:hv1:vm*",
            "file:/var/lib/tap/web-%Y%m%d-%H%M%S.pcapng?rotate_seconds=60&ring_files=10&compress=zstd",
        ))
        .unwrap();
        let Target::File(o) = &s.target else {
            panic!("file")
        };
        assert_eq!(o.rotation.interval_secs, Some(60));
        assert_eq!(o.rotation.max_files, Some(10));
        let s = validate(raw(
            "iface:hv1:vm*",
            "suricata:/run/suricata/command.socket?file=/var/lib/tap/s.pcap&rotate_seconds=5",
        ))
        .unwrap();
        assert!(matches!(s.target, Target::Suricata { .. }));
        for bad in [
            "file:relative.pcap",
            "file:/x.pcap?rotate=5",
            "file:/x.pcap?rotate_seconds",
            "suricata:/run/s.sock",
            "store:/var/lib/tap/store",
            "http://example.invalid/",
        ] {
            let e = validate(raw("iface:hv1:vm*", bad)).unwrap_err();
            assert!(e.to_string().starts_with("target: "), "{bad}: {e}");
        }
    }

    #[test]
    fn hostile_values_are_errors() {
        let id = SessionId {
            tenant: "acme".into(),
            name: "web".into(),
        };
        let cases: &[&[u8]] = &[
            b"",
            b"\xff\xfe",
            b"null",
            b"[]",
            b"{\"version\":\"1\"}",
            b"{\"version\":2,\"anything\":true}",
            b"{\"version\":1}",
            br#"{"version":1,"tenant":"other","name":"web","source":"mac:02:00:5e:00:53:01","target":"vxlan://203.0.113.9?vni=1"}"#,
            br#"{"version":1,"tenant":"acme","name":"web","source":"mac:02:00:5e:00:53:01","target":"vxlan://203.0.113.9?vni=1","extra":1}"#,
            br#"{"version":1,"tenant":"acme","name":"web","source":"mac:02:00:5e:00:53:01","target":"vxlan://203.0.113.9?vni=1","snaplen":-1}"#,
        ];
        for value in cases {
            let e = Session::decode(&id, value).unwrap_err();
            assert!(!e.to_string().contains('\n'), "{e}");
        }
        let deep = "[".repeat(100_000);
        assert!(Session::decode(&id, deep.as_bytes()).is_err());
        let big = vec![b' '; MAX_VALUE_BYTES + 1];
        assert!(matches!(
            Session::decode(&id, &big),
            Err(SessionError::TooLarge { .. })
        ));
    }

    #[test]
    fn names_are_key_safe() {
        for ok in ["acme", "a.b-c_d", "A1"] {
            check_name("tenant", ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(check_name("tenant", bad).is_err(), "{bad}");
        }
    }
}
