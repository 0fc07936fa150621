//! The agent's configuration file: TOML, checked completely before anything is loaded or
//! attached. Every error names the file, the line and the key.
//!
//! ```toml
//! [agent]
//! control_socket = "/run/tap/tap.sock"   # default
//! metrics_listen = "127.0.0.1:9750"      # off unless given
//!
//! [[tap]]
//! name = "vms"
//! interfaces = ["vm*"]                   # names or shell globs
//! hook = "tc"                            # xdp | tc | tc-ingress | tc-egress
//! filter = "not arp"
//! snaplen = 256
//! flow_budget = "64K"                    # or "200p"; flow_table_size = 65536
//! serve = "/run/tap/vms.sock"
//!
//! [tap.file]
//! path = "/var/lib/tap/vms-%Y%m%d-%H%M%S.pcapng.zst"
//! rotate_seconds = 600
//! ring_files = 144
//! ```
//!
//! A reader that only translates: each `[[tap]]` is a [`super::document`] like a session's,
//! turned into the raw settings and validated by [`super::rules`] as a service's capture. A
//! refusal is placed at its key's position (`path:line:column`), found in the parsed document.
//!
//! A packet store (`[tap.store]`: `dir`, `max_bytes`, `max_age`, `compress`, `file_size_mb`,
//! `rotate_seconds`, `flush_interval_ms`) takes the place of `[tap.file]`, validated by the rules
//! of `tap capture --store`; `agent.query_listen` (and `agent.query_token_file`, required off
//! loopback) answers queries of the stores over HTTP ([`crate::agent::query`]).

use std::{
    net::SocketAddr,
    ops::Range,
    path::{Path, PathBuf},
};

use serde::Deserialize;
#[cfg(test)]
use tap_common::config::DEFAULT_SNAPLEN;
use toml::{
    Spanned,
    de::{DeTable, DeValue},
};

use super::{
    document::TapDoc,
    error::{Key, SettingError},
    raw::{Purpose, RawCapture, RawEvidence},
    rules,
};
#[cfg(test)]
use crate::model::{Hook, XdpMode};
use crate::{
    evidence::EvidenceConfig,
    model::{CaptureConfig, FleetConfig, Output, QueryListen},
    support::excerpt,
};

/// Where `tap ctl` and the agent meet when the file does not say.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/tap/tap.sock";

/// Errors of the configuration file.
#[derive(Debug, thiserror::Error)]
pub enum AgentConfigError {
    #[error(transparent)]
    Read(#[from] crate::support::bounded_read::BoundedReadError),
    /// `path:line:column: key: message`.
    #[error("{path}:{line}:{column}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
}

impl AgentConfigError {
    /// 1-based line of the error, if it has one.
    #[must_use]
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Invalid { line, .. } => Some(*line),
            Self::Read(_) => None,
        }
    }
}

/// The file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    agent: Option<AgentDoc>,
    fleet: Option<FleetDoc>,
    #[serde(default)]
    tap: Vec<TapDoc>,
    evidence: Option<EvidenceDoc>,
}

/// `[evidence]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvidenceDoc {
    eve: Option<PathBuf>,
    socket: Option<PathBuf>,
    from_start: Option<bool>,
    dir: Option<PathBuf>,
    taps: Option<Vec<String>>,
    before: Option<f64>,
    after: Option<f64>,
    max_window: Option<f64>,
    settle: Option<f64>,
    sids: Option<String>,
    exclude_sids: Option<String>,
    severity: Option<u8>,
    rate: Option<f64>,
    burst: Option<u32>,
    max_open: Option<usize>,
    max_alerts: Option<usize>,
    max_file_mb: Option<f64>,
}

impl EvidenceDoc {
    fn into_raw(self, resolve: &dyn Fn(&Path) -> PathBuf) -> RawEvidence {
        RawEvidence {
            eve: self.eve.as_deref().map(resolve),
            socket: self.socket.as_deref().map(resolve),
            from_start: self.from_start.unwrap_or(false),
            dir: self.dir.as_deref().map(|d| {
                if d.as_os_str().is_empty() {
                    d.to_path_buf()
                } else {
                    resolve(d)
                }
            }),
            taps: self.taps.unwrap_or_default(),
            before: self.before,
            after: self.after,
            max_window: self.max_window,
            settle: self.settle,
            sids: self.sids,
            exclude_sids: self.exclude_sids,
            severity: self.severity,
            rate: self.rate,
            burst: self.burst,
            max_open: self.max_open,
            max_alerts: self.max_alerts,
            max_file_mb: self.max_file_mb,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentDoc {
    control_socket: Option<PathBuf>,
    metrics_listen: Option<String>,
    query_listen: Option<String>,
    query_token_file: Option<PathBuf>,
}

/// `[fleet]`: this agent realizes the fleet's sessions (see [`crate::fleet::agent`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetDoc {
    #[serde(default)]
    etcd: Vec<String>,
    host: Option<String>,
    prefix: Option<String>,
    #[serde(default)]
    uplinks: Vec<String>,
    lease_seconds: Option<u64>,
    resync_seconds: Option<u64>,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    user: Option<String>,
    password_file: Option<PathBuf>,
}

// ---- Validated -----------------------------------------------------------------------------

/// A validated configuration file.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The file it came from.
    pub path: PathBuf,
    pub control_socket: PathBuf,
    /// Where to serve Prometheus metrics; `None`: not at all.
    pub metrics_listen: Option<SocketAddr>,
    /// Where to answer packet store queries over HTTP; `None`: not at all.
    pub query: Option<QueryListen>,
    /// `[fleet]`: the fleet's sessions realized here besides the file's taps.
    pub fleet: Option<FleetConfig>,
    pub taps: Vec<TapConfig>,
    /// `[evidence]`: files from Suricata's alerts.
    pub evidence: Option<EvidenceConfig>,
}

/// One validated tap.
#[derive(Debug, Clone)]
pub struct TapConfig {
    pub name: String,
    /// Interface names or shell globs.
    pub patterns: Vec<String>,
    /// The capture, with no interfaces: the agent attaches them as they match.
    pub capture: CaptureConfig,
    /// What needs a restart when it changes (see [`RawCapture::restart_key`]).
    restart_key: RawCapture,
}

/// What a reload has to do to a tap that exists before and after it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TapChange {
    /// Anything but the keys below changed: stop the tap and start it anew.
    pub restart: bool,
    pub filter: bool,
    pub limits: bool,
    pub interfaces: bool,
}

impl TapConfig {
    /// Validates one tap of a service (a `[[tap]]`, a session) by the rules.
    ///
    /// # Errors
    /// The first setting a rule refuses.
    pub fn from_raw(raw: super::raw::RawTap) -> Result<Self, SettingError> {
        rules::tap_name(&raw.name)?;
        let capture = rules::capture(&raw.capture, Purpose::Service)?;
        Ok(Self {
            name: raw.name,
            patterns: raw.capture.interfaces.clone(),
            capture,
            restart_key: raw.capture.restart_key(),
        })
    }

    /// True when interface `name` is one of this tap's (by name or glob).
    #[must_use]
    pub fn matches(&self, name: &str) -> bool {
        self.patterns.iter().any(|p| glob_match(p, name))
    }

    /// How `new` differs from `self`.
    #[must_use]
    pub fn change_to(&self, new: &TapConfig) -> TapChange {
        TapChange {
            restart: self.restart_key != new.restart_key,
            filter: self.capture.filter != new.capture.filter,
            limits: (self.capture.sample, self.capture.rate_per_cpu)
                != (new.capture.sample, new.capture.rate_per_cpu),
            interfaces: self.patterns != new.patterns,
        }
    }
}

/// Shell-style match of an interface name (`*`, `?`, `[...]`), as fnmatch(3) without flags.
#[must_use]
pub fn glob_match(pattern: &str, name: &str) -> bool {
    if !pattern.contains(['*', '?', '[']) {
        return pattern == name;
    }
    let (Ok(p), Ok(n)) = (
        std::ffi::CString::new(pattern),
        std::ffi::CString::new(name),
    ) else {
        return false;
    };
    // SAFETY: two valid NUL-terminated strings.
    unsafe { libc::fnmatch(p.as_ptr(), n.as_ptr(), 0) == 0 }
}

/// The file as a tree of positioned values, to find where a key is written.
fn document(text: &str) -> Option<Spanned<DeValue<'_>>> {
    let table = DeTable::parse(text).ok()?;
    let span = table.span();
    Some(Spanned::new(span, DeValue::Table(table.into_inner())))
}

/// A setting's name within the file, where a reason mentions it.
pub(super) fn file_name(key: Key) -> String {
    match key {
        Key::Write => "[tap.file]".to_string(),
        Key::Store => "[tap.store]".to_string(),
        Key::SuricataSocket => "[tap.suricata]".to_string(),
        other => {
            let name = other.name();
            name.rsplit('.').next().unwrap_or(name).to_string()
        }
    }
}

/// Turns byte positions into `path:line:column` errors.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
        (line, column)
    }

    fn error(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> AgentConfigError {
        let (line, column) = self.position(span.start);
        AgentConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        }
    }

    /// The key a syntax or type error is about: the table header or the `key =` of its line.
    fn key_at(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        let start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let end = self.text[offset..]
            .find('\n')
            .map_or(self.text.len(), |i| offset + i);
        let line = self.text[start..end].trim();
        if line.starts_with('[') {
            return excerpt::excerpt(line.trim_matches(|c| c == '[' || c == ']').trim())
                .to_string();
        }
        match line.split_once('=') {
            Some((key, _)) if !key.trim().is_empty() => {
                excerpt::excerpt(key.trim().trim_matches('"')).to_string()
            }
            _ => "(file)".to_string(),
        }
    }

    /// Where tap `tap` (its index) says `key` (and its item `index`): the value, or the
    /// nearest table that holds it.
    fn span_of(&self, tap: usize, key: Key, index: Option<usize>) -> Range<usize> {
        let Some(doc) = document(self.text) else {
            return 0..0;
        };
        let Some(table) = doc.get_ref().get("tap").and_then(|t| t.get_ref().get(tap)) else {
            return 0..0;
        };
        let mut at: &Spanned<DeValue<'_>> = table;
        if key == Key::Sinks {
            return at.span();
        }
        let path = match key {
            Key::SuricataSocket => "suricata",
            other => other.name(),
        };
        for part in path.split('.') {
            match at.get_ref().get(part) {
                Some(v) => at = v,
                None => return at.span(),
            }
        }
        if let Some(item) = index.and_then(|i| at.get_ref().get(i)) {
            at = item;
        }
        at.span()
    }

    /// A rule's refusal, placed at its key in tap number `tap` (named `name`).
    fn refusal(&self, tap: usize, name: &str, e: &SettingError) -> AgentConfigError {
        let span = self.span_of(tap, e.key, e.index);
        let key = match e.key {
            Key::Name => "name".to_string(),
            k => format!("tap '{name}': {}", k.name()),
        };
        let name_of = |k: Key| file_name(k);
        self.error(span, key, e.reason.render_after(e.key, &name_of))
    }
}

impl AgentConfig {
    /// Reads and validates the file.
    ///
    /// # Errors
    /// The file cannot be read, does not parse, or a setting is refused.
    pub fn load(path: &Path) -> Result<Self, AgentConfigError> {
        let text = crate::support::bounded_read::read_text(
            path,
            crate::support::bounded_read::AGENT_CONFIG_MAX,
        )?;
        Self::parse(path, &text)
    }

    /// Validates `text`, the contents of `path` (relative paths in it are relative to the
    /// directory of `path`).
    ///
    /// # Errors
    /// As [`AgentConfig::load`].
    pub fn parse(path: &Path, text: &str) -> Result<Self, AgentConfigError> {
        let src = Source { path, text };
        let raw: FileDoc = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let key = src.key_at(span.start);
            // toml's and serde's messages quote the offending value: cut long ones.
            src.error(span, key, excerpt::words(e.message().trim()))
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let agent = raw.agent.unwrap_or_default();
        let control_socket = agent
            .control_socket
            .as_deref()
            .map_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET), resolve);
        let metrics_listen = match &agent.metrics_listen {
            None => None,
            Some(s) => Some(rules::metrics_listen(s).map_err(|e| {
                let span = document(text)
                    .and_then(|d| {
                        d.get_ref()
                            .get("agent")
                            .and_then(|a| a.get_ref().get("metrics_listen"))
                            .map(Spanned::span)
                    })
                    .unwrap_or(0..0);
                src.error(span, Key::MetricsListen.name(), e.to_string())
            })?),
        };
        let query = rules::query_listen(
            agent.query_listen.as_deref(),
            agent.query_token_file.as_deref().map(resolve).as_deref(),
        )
        .map_err(|e| {
            let key = match e.key {
                Key::QueryTokenFile => "query_token_file",
                _ => "query_listen",
            };
            let span = document(text)
                .and_then(|d| {
                    d.get_ref()
                        .get("agent")
                        .and_then(|a| a.get_ref().get(key))
                        .map(Spanned::span)
                })
                .unwrap_or(0..0);
            src.error(
                span,
                e.key.name(),
                e.reason.render_after(e.key, &|k| file_name(k)),
            )
        })?;
        let fleet = match raw.fleet {
            None => None,
            Some(f) => {
                let raw_fleet = super::raw::RawFleet {
                    etcd: f.etcd,
                    host: f.host,
                    prefix: f.prefix,
                    uplinks: f.uplinks,
                    lease_seconds: f.lease_seconds,
                    resync_seconds: f.resync_seconds,
                    ca_file: f.ca_file.as_deref().map(resolve),
                    cert_file: f.cert_file.as_deref().map(resolve),
                    key_file: f.key_file.as_deref().map(resolve),
                    user: f.user,
                    password_file: f.password_file.as_deref().map(resolve),
                };
                Some(rules::fleet(&raw_fleet).map_err(|e| {
                    let name = e.key.name();
                    let field = name.strip_prefix("fleet.").unwrap_or(name);
                    let span = document(text)
                        .and_then(|d| {
                            let table = d.get_ref().get("fleet")?;
                            let Some(v) = table.get_ref().get(field) else {
                                return Some(table.span());
                            };
                            Some(e.index.and_then(|i| v.get_ref().get(i)).unwrap_or(v).span())
                        })
                        .unwrap_or(0..0);
                    src.error(span, name, e.reason.render_after(e.key, &|k| file_name(k)))
                })?)
            }
        };
        let mut taps: Vec<TapConfig> = Vec::with_capacity(raw.tap.len());
        let mut sinks: Vec<(PathBuf, String)> = Vec::new();
        for (i, doc) in raw.tap.into_iter().enumerate() {
            let tap = doc.into_raw(&resolve);
            let name = tap.name.clone();
            let t = TapConfig::from_raw(tap).map_err(|e| src.refusal(i, &name, &e))?;
            if taps.iter().any(|o| o.name == t.name) {
                return Err(src.error(
                    src.span_of(i, Key::Name, None),
                    "name",
                    format!("a tap named '{}' is already defined", t.name),
                ));
            }
            // Two taps writing the same file or serving the same socket would clobber each other.
            let mut mine: Vec<(PathBuf, Key)> = Vec::new();
            if let Some(st) = &t.capture.output.store {
                mine.push((st.dir.clone(), Key::Store));
            } else if let Output::File(p) = &t.capture.output.target {
                mine.push((p.clone(), Key::Write));
            }
            if let Some(p) = &t.capture.consumers.serve {
                mine.push((p.clone(), Key::Serve));
            }
            for (p, key) in mine {
                if let Some((_, other)) = sinks.iter().find(|(q, _)| *q == p) {
                    return Err(src.error(
                        src.span_of(i, key, None),
                        format!("tap '{}': {}", t.name, key.name()),
                        format!("{} is already used by tap '{other}'", p.display()),
                    ));
                }
                sinks.push((p, t.name.clone()));
            }
            taps.push(t);
        }
        let evidence = match raw.evidence {
            None => None,
            Some(doc) => Some(evidence(&src, doc.into_raw(&resolve), &taps)?),
        };
        Ok(Self {
            path: path.to_path_buf(),
            control_socket,
            metrics_listen,
            query,
            fleet,
            taps,
            evidence,
        })
    }
}

/// `[evidence]` by its rule, and its history taps against the taps: each named one exists and
/// holds a history (a pre-trigger memory long enough for a window, or a store); none named
/// means every tap that does.
fn evidence(
    src: &Source<'_>,
    raw: RawEvidence,
    taps: &[TapConfig],
) -> Result<EvidenceConfig, AgentConfigError> {
    let at = |key: Key| {
        let path = key.name();
        document(src.text)
            .and_then(|d| {
                let mut v: &Spanned<DeValue<'_>> = d.get_ref().get("evidence")?;
                for part in path.split('.').skip(1) {
                    match v.get_ref().get(part) {
                        Some(next) => v = next,
                        None => break,
                    }
                }
                Some(v.span())
            })
            .unwrap_or(0..0)
    };
    let mut config = rules::evidence(&raw).map_err(|e| {
        src.error(
            at(e.key),
            e.key.name(),
            e.reason.render_after(e.key, &|k| file_name(k)),
        )
    })?;
    let has_history = |t: &TapConfig| {
        t.capture.consumers.pretrigger.is_some() || t.capture.output.store.is_some()
    };
    if config.taps.is_empty() {
        config.taps = taps
            .iter()
            .filter(|t| has_history(t))
            .map(|t| t.name.clone())
            .collect();
        if config.taps.is_empty() {
            return Err(src.error(
                at(Key::EvidenceTaps),
                Key::EvidenceTaps.name(),
                "no tap holds a history: give a [[tap]] pretrigger (\"30s\", \"256MiB\") or a [tap.store]",
            ));
        }
    }
    let c = &config.follow.cases;
    let needed = c
        .before_ns
        .saturating_add(c.after_ns)
        .saturating_add(c.settle_ns);
    for name in &config.taps {
        let Some(t) = taps.iter().find(|t| &t.name == name) else {
            return Err(src.error(
                at(Key::EvidenceTaps),
                Key::EvidenceTaps.name(),
                format!("no tap is named '{}'", excerpt::excerpt(name)),
            ));
        };
        if !has_history(t) {
            return Err(src.error(
                at(Key::EvidenceTaps),
                Key::EvidenceTaps.name(),
                format!("tap '{name}' holds no history: give it pretrigger or [tap.store]"),
            ));
        }
        let age = t
            .capture
            .consumers
            .pretrigger
            .and_then(|p| p.max_age)
            .map(|a| u64::try_from(a.as_nanos()).unwrap_or(u64::MAX));
        if t.capture.output.store.is_none() && age.is_some_and(|a| a < needed) {
            return Err(src.error(
                at(Key::EvidenceWindow),
                Key::EvidenceWindow.name(),
                format!(
                    "before + after + settle ({} s) is longer than tap '{name}' holds (pretrigger {} s): a window's start would be gone when its file is written",
                    needed as f64 / 1e9,
                    age.unwrap_or(0) as f64 / 1e9
                ),
            ));
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn parse(text: &str) -> Result<AgentConfig, AgentConfigError> {
        AgentConfig::parse(Path::new("/etc/tap/tap.toml"), text)
    }

    /// The error as `line: key: message`, for assertions.
    fn error(text: &str) -> (usize, String, String) {
        match parse(text) {
            Err(AgentConfigError::Invalid {
                line,
                key,
                message,
                path,
                ..
            }) => {
                assert_eq!(path, Path::new("/etc/tap/tap.toml"));
                (line, key, message)
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    const GOOD: &str = r#"
[agent]
control_socket = "/run/tap/test.sock"
metrics_listen = "127.0.0.1:9750"

[[tap]]
name = "vms"
interfaces = ["vm*", "tap[0-9]"]
filter = "icmp or udp port 53"
snaplen = 128
sample = 2
max_rate = 1000
serve = "vms.sock"

[tap.file]
path = "/var/lib/tap/vms-%Y%m%d-%H%M%S.pcapng.zst"
rotate_seconds = 600
ring_files = 6

[[tap]]
name = "uplink"
interfaces = ["eth0"]
hook = "xdp"
xdp_mode = "generic"
forward = ["vxlan://192.0.2.9?vni=7"]
"#;

    #[test]
    fn a_good_file_validates() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.control_socket, Path::new("/run/tap/test.sock"));
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9750".parse().unwrap()));
        assert_eq!(c.taps.len(), 2);
        let vms = &c.taps[0];
        assert_eq!(vms.name, "vms");
        assert_eq!(vms.capture.snaplen, 128);
        assert_eq!(vms.capture.sample, 2);
        assert_eq!(vms.capture.hooks, [Hook::TcIngress, Hook::TcEgress]);
        assert_eq!(vms.capture.filter.expression, "icmp or udp port 53");
        assert_eq!(
            vms.capture.consumers.serve.as_deref(),
            Some(Path::new("/etc/tap/vms.sock")),
            "relative to the file"
        );
        assert_eq!(vms.capture.output.format, crate::model::Format::Pcapng);
        assert_eq!(vms.capture.output.rotation.interval_secs, Some(600));
        let up = &c.taps[1];
        assert_eq!(
            (up.capture.hooks.as_slice(), up.capture.xdp_mode),
            (&[Hook::Xdp][..], XdpMode::Generic)
        );
        assert_eq!(up.capture.output.target, Output::None);
        assert_eq!(up.capture.consumers.forward.len(), 1);
    }

    #[test]
    fn flow_budget_per_tap() {
        let c = parse(&GOOD.replace(
            "snaplen = 128",
            "snaplen = 128\nflow_budget = \"200p\"\nflow_table_size = 1024",
        ))
        .unwrap();
        let b = c.taps[0].capture.flow_budget.unwrap();
        assert_eq!(
            (b.limit, b.unit, b.table_size),
            (200, crate::model::FlowUnit::Packets, 1024)
        );
        assert_eq!(c.taps[1].capture.flow_budget, None);
    }

    #[test]
    fn defaults_without_agent_table() {
        let c = parse("[[tap]]\nname = \"a\"\ninterfaces = [\"lo\"]\nserve = \"/tmp/a.sock\"\n")
            .unwrap();
        assert_eq!(c.control_socket, Path::new(DEFAULT_CONTROL_SOCKET));
        assert_eq!(c.metrics_listen, None);
        assert_eq!(c.taps[0].capture.snaplen, DEFAULT_SNAPLEN);
        assert!(parse("").unwrap().taps.is_empty());
    }

    #[test]
    fn unknown_keys_are_errors_with_their_line() {
        let text = GOOD.replace("snaplen = 128", "snaplen = 128\nfitler = \"tcp\"");
        let (line, key, message) = error(&text);
        assert_eq!(line, 11);
        assert_eq!(key, "fitler");
        assert!(message.contains("unknown field `fitler`"), "{message}");
        let (line, key, _) = error("[agent]\nmetrics = \"x\"\n");
        assert_eq!((line, key.as_str()), (2, "metrics"));
        let (line, key, _) = error(&GOOD.replace("ring_files = 6", "ring_files = 6\nrotate = 5"));
        assert_eq!((line, key.as_str()), (19, "rotate"));
        let (line, key, _) = error("[tapz]\n");
        assert_eq!((line, key.as_str()), (1, "tapz"));
    }

    #[test]
    fn type_and_syntax_errors_name_line_and_key() {
        let (line, key, message) = error(&GOOD.replace("snaplen = 128", "snaplen = \"big\""));
        assert_eq!((line, key.as_str()), (10, "snaplen"));
        assert!(message.contains("invalid type"), "{message}");
        let (line, key, message) = error(&GOOD.replace("hook = \"xdp\"", "hook = \"tcx\""));
        assert_eq!((line, key.as_str()), (23, "hook"));
        assert!(
            message.contains("tc-ingress"),
            "lists the choices: {message}"
        );
        let (line, _, _) = error("[[tap]]\nname = \"a\"\ninterfaces = [\"lo\"\n");
        assert!(line >= 3, "{line}");
        let (line, key, message) = error("[[tap]]\ninterfaces = [\"lo\"]\nserve = \"/x\"\n");
        assert_eq!((line, key.as_str()), (1, "tap"));
        assert!(message.contains("missing field `name`"), "{message}");
    }

    #[test]
    fn semantic_errors_name_line_and_key() {
        let cases: &[(&str, &str, usize, &str, &str)] = &[
            (
                "filter = \"icmp or udp port 53\"",
                "filter = \"icmp and bogus\"",
                9,
                "tap 'vms': filter",
                "bogus",
            ),
            (
                "snaplen = 128",
                "snaplen = 128\nflow_budget = \"0p\"",
                11,
                "tap 'vms': flow_budget",
                "200p",
            ),
            (
                "snaplen = 128",
                "snaplen = 128\nflow_budget = \"4K\"\nflow_table_size = 0",
                12,
                "tap 'vms': flow_table_size",
                "1 to 16777216",
            ),
            (
                "snaplen = 128",
                "snaplen = 128\nflow_table_size = 10",
                11,
                "tap 'vms': flow_table_size",
                "needs flow_budget",
            ),
            (
                "snaplen = 128",
                "snaplen = 300000",
                10,
                "tap 'vms': snaplen",
                "use 1 to 262144",
            ),
            (
                "snaplen = 128",
                "snaplen = 128\nring_size = 1000",
                11,
                "tap 'vms': ring_size",
                "power of two",
            ),
            (
                "sample = 2",
                "sample = 0",
                11,
                "tap 'vms': sample",
                "at least 1",
            ),
            (
                "rotate_seconds = 600",
                "rotate_seconds = 0",
                17,
                "tap 'vms': file.rotate_seconds",
                "at least 1",
            ),
            (
                "rotate_seconds = 600",
                "compress = \"lz4\"",
                17,
                "tap 'vms': file.compress",
                "lz4",
            ),
            (
                "rotate_seconds = 600",
                "file_size_mb = -1.0",
                17,
                "tap 'vms': file.file_size_mb",
                "positive",
            ),
            (
                "rotate_seconds = 600\n",
                "",
                17,
                "tap 'vms': file.ring_files",
                "needs file_size_mb",
            ),
            ("\"vm*\", ", "\"a/b\", ", 8, "tap 'vms': interfaces", "a/b"),
            (
                "[\"vm*\", \"tap[0-9]\"]",
                "[]",
                8,
                "tap 'vms': interfaces",
                "at least one",
            ),
            (
                "name = \"uplink\"",
                "name = \"vms\"",
                21,
                "name",
                "already defined",
            ),
            (
                "name = \"uplink\"",
                "name = \"up link\"",
                21,
                "name",
                "letters",
            ),
            (
                "xdp_mode = \"generic\"",
                "xdp_mode = \"generic\"\nserve = \"vms.sock\"",
                25,
                "tap 'uplink': serve",
                "already used by tap 'vms'",
            ),
            (
                "hook = \"xdp\"",
                "hook = \"tc\"",
                24,
                "tap 'uplink': xdp_mode",
                "xdp",
            ),
            (
                "forward = [\"vxlan://192.0.2.9?vni=7\"]",
                "forward = [\"http://x\"]",
                25,
                "tap 'uplink': forward",
                "vxlan",
            ),
            (
                "forward = [\"vxlan://192.0.2.9?vni=7\"]",
                "decap = \"ipip\"\nserve = \"/s\"",
                25,
                "tap 'uplink': decap",
                "ipip",
            ),
            (
                "forward = [\"vxlan://192.0.2.9?vni=7\"]",
                "consume = false",
                20,
                "tap 'uplink': (tap)",
                "no sink",
            ),
            (
                "metrics_listen = \"127.0.0.1:9750\"",
                "metrics_listen = \"localhost\"",
                4,
                "agent.metrics_listen",
                "address",
            ),
        ];
        for (from, to, line, key, needle) in cases {
            assert!(GOOD.contains(from), "{from}");
            let (l, k, m) = error(&GOOD.replacen(from, to, 1));
            assert_eq!((l, k.as_str()), (*line, *key), "{to}: {m}");
            assert!(m.contains(needle), "{to}: {m}");
        }
    }

    #[test]
    fn the_error_text_names_file_line_and_key() {
        let e = parse(&GOOD.replace("sample = 2", "sample = 0")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/tap/tap.toml:11:10: tap 'vms': sample: must be at least 1 (1: keep every packet)"
        );
        assert_eq!(e.line(), Some(11));
    }

    #[test]
    fn globs_match_interface_names() {
        assert!(glob_match("vm*", "vm-a"));
        assert!(glob_match("vm*", "vm"));
        assert!(!glob_match("vm*", "xvm-a"));
        assert!(glob_match("tap[0-9]", "tap3"));
        assert!(!glob_match("tap[0-9]", "tap10"));
        assert!(glob_match("eth?", "eth1"));
        assert!(glob_match("eth0", "eth0"));
        assert!(!glob_match("eth0", "eth01"));
        let c = parse(GOOD).unwrap();
        assert!(
            c.taps[0].matches("vm-b") && c.taps[0].matches("tap7") && !c.taps[0].matches("eth0")
        );
    }

    #[test]
    fn changes_are_classified() {
        let old = parse(GOOD).unwrap();
        let changed = |from: &str, to: &str| {
            old.taps[0].change_to(&parse(&GOOD.replacen(from, to, 1)).unwrap().taps[0])
        };
        assert_eq!(old.taps[0].change_to(&old.taps[0]), TapChange::default());
        assert_eq!(
            changed("udp port 53", "udp port 54"),
            TapChange {
                filter: true,
                ..Default::default()
            }
        );
        assert_eq!(
            changed("sample = 2", "sample = 3"),
            TapChange {
                limits: true,
                ..Default::default()
            }
        );
        assert_eq!(
            changed("\"vm*\", ", ""),
            TapChange {
                interfaces: true,
                ..Default::default()
            }
        );
        assert_eq!(
            changed("snaplen = 128", "snaplen = 129"),
            TapChange {
                restart: true,
                ..Default::default()
            }
        );
        assert_eq!(
            changed("ring_files = 6", "ring_files = 7"),
            TapChange {
                restart: true,
                ..Default::default()
            }
        );
        // Moving a key within the file changes no value.
        assert_eq!(
            changed("snaplen = 128\n", "\nsnaplen = 128\n"),
            TapChange::default()
        );
    }

    #[test]
    fn the_packaged_example_is_valid() {
        let text = include_str!("../../../packaging/tap.toml");
        let c = parse(text).unwrap_or_else(|e| panic!("packaging/tap.toml: {e}"));
        assert!(!c.taps.is_empty());
        assert_eq!(c.control_socket, Path::new(DEFAULT_CONTROL_SOCKET));
    }

    /// Bounded fuzzing of the configuration reader: arbitrary files, mutations of a good one,
    /// and long or deeply nested values never panic, and every error is one bounded line that
    /// names the file.
    mod fuzz {
        use proptest::prelude::*;

        use super::*;

        const PIECES: &[&str] = &[
            "[agent]",
            "[[tap]]",
            "[tap.file]",
            "[tap.suricata]",
            "name = ",
            "interfaces = ",
            "filter = ",
            "filter_file = ",
            "snaplen = ",
            "ring_size = ",
            "sample = ",
            "hook = ",
            "serve = ",
            "forward = ",
            "path = ",
            "rotate_seconds = ",
            "ring_files = ",
            "metrics_listen = ",
            "control_socket = ",
            "\"vms\"",
            "\"vm*\"",
            "[\"eth0\"]",
            "[",
            "]",
            "{",
            "}",
            "=",
            "\"",
            "'",
            "'''",
            "\"\"\"",
            "#",
            "\n",
            ",",
            "0",
            "-1",
            "1e400",
            "4294967296",
            "true",
            "1979-05-27T07:32:00Z",
            "\"/dev/zero\"",
            "\"icmp or\"",
            "\"tc\"",
            "\"xdp\"",
            "\\u0000",
            "é",
        ];

        /// `GOOD` with `piece` inserted near `at` and up to 63 bytes cut off its end.
        fn mutated(at: usize, piece: &str, cut: usize) -> String {
            let mut text = GOOD.to_string();
            let mut at = at % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text.insert_str(at, piece);
            let mut end = text.len() - cut % 64;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text
        }

        fn soup() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::collection::vec(prop::sample::select(PIECES), 0..40)
                    .prop_map(|w| w.join(" ")),
                prop::collection::vec(prop::sample::select(PIECES), 0..40).prop_map(|w| w.concat()),
                "(?s).{0,200}",
                (any::<usize>(), prop::sample::select(PIECES), any::<usize>())
                    .prop_map(|(at, piece, cut)| mutated(at, piece, cut)),
                (
                    prop::sample::select(vec!["[", "{a=", "[[", "\"", "a."]),
                    1usize..3000
                )
                    .prop_map(|(open, n)| format!("x = {}", open.repeat(n))),
                (1usize..100_000).prop_map(|n| format!("[[tap]]\nname = \"{}\"\n", "n".repeat(n))),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, max_shrink_iters: 256, ..ProptestConfig::default() })]

            #[test]
            fn hostile_files_never_panic(text in soup()) {
                if let Err(e) = parse(&text) {
                    let line = e.to_string();
                    prop_assert!(line.starts_with("/etc/tap/tap.toml"), "{line}");
                    prop_assert!(line.len() < 2000, "{} bytes", line.len());
                    prop_assert!(!line.contains('\n'));
                }
            }
        }
    }

    fn message(text: &str) -> String {
        match parse(text) {
            Err(e) => e.to_string(),
            Ok(c) => panic!("expected an error, got {c:?}"),
        }
    }

    const TAP: &str = "[[tap]]\nname = \"up\"\ninterfaces = [\"eth0\"]\n";

    #[test]
    fn a_store_sink_is_a_store_output() {
        let c = parse(&format!(
            "[agent]\nquery_listen = \"127.0.0.1:9751\"\n{TAP}[tap.store]\ndir = \"store\"\nmax_bytes = \"2G\"\nmax_age = \"7d\"\n"
        ))
        .unwrap();
        let q = c.query.unwrap();
        assert_eq!(q.addr, "127.0.0.1:9751".parse().unwrap());
        assert_eq!(q.token, None);
        let store = c.taps[0].capture.output.store.clone().unwrap();
        assert_eq!(store.dir, Path::new("/etc/tap/store"));
        assert_eq!(store.max_bytes, Some(2 << 30));
        assert_eq!(
            store.max_age,
            Some(std::time::Duration::from_secs(7 * 86_400))
        );
        assert_eq!(
            c.taps[0].capture.output.format,
            crate::model::Format::Pcapng
        );
        let c = parse(&format!(
            "{TAP}[tap.store]\ndir = \"/s\"\nmax_bytes = 1000000\n"
        ))
        .unwrap();
        assert_eq!(
            c.taps[0].capture.output.store.clone().unwrap().max_bytes,
            Some(1_000_000)
        );
    }

    #[test]
    fn store_refusals_name_the_key() {
        let m = message(&format!(
            "{TAP}[tap.store]\ndir = \"/s\"\nmax_age = \"soon\"\n"
        ));
        assert!(m.contains("tap 'up': store.max_age"), "{m}");
        let m = message(&format!(
            "{TAP}[tap.store]\ndir = \"/s\"\nmax_bytes = \"lots\"\n"
        ));
        assert!(m.contains("store.max_bytes"), "{m}");
        let m = message(&format!(
            "{TAP}[tap.store]\ndir = \"/s\"\n[tap.file]\npath = \"/x.pcap\"\n"
        ));
        assert!(m.contains("store") && m.contains("not both"), "{m}");
        let m = message(&format!(
            "{TAP}[tap.store]\ndir = \"/s\"\n[[tap]]\nname = \"b\"\ninterfaces = [\"eth1\"]\n[tap.store]\ndir = \"/s\"\n"
        ));
        assert!(m.contains("already used by tap 'up'"), "{m}");
    }

    #[test]
    fn off_loopback_needs_a_private_token_file() {
        let m = message(&format!(
            "[agent]\nquery_listen = \"0.0.0.0:9751\"\n{TAP}[tap.store]\ndir = \"/s\"\n"
        ));
        assert!(
            m.contains("agent.query_listen") && m.contains("query_token_file"),
            "{m}"
        );
        let m = message(&format!(
            "[agent]\nquery_listen = \"[::]:9751\"\n{TAP}[tap.store]\ndir = \"/s\"\n"
        ));
        assert!(m.contains("not loopback"), "{m}");
        let m = message(&format!(
            "[agent]\nquery_token_file = \"/t\"\n{TAP}[tap.store]\ndir = \"/s\"\n"
        ));
        assert!(m.contains("give query_listen"), "{m}");
        let dir = std::env::temp_dir().join(format!("tap-query-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "s3cret-token\n").unwrap();
        let text = format!(
            "[agent]\nquery_listen = \"0.0.0.0:9751\"\nquery_token_file = \"{}\"\n{TAP}[tap.store]\ndir = \"/s\"\n",
            token.display()
        );
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
        let m = message(&text);
        assert!(m.contains("mode 0644") && m.contains("chmod 600"), "{m}");
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = parse(&text).unwrap();
        assert_eq!(
            c.query.clone().unwrap().token.as_deref(),
            Some("s3cret-token")
        );
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the token stays out of logs"
        );
        std::fs::write(&token, "\n").unwrap();
        assert!(message(&text).contains("holds no token"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    const EVIDENCE_TAP: &str =
        "[[tap]]\nname = \"uplink\"\ninterfaces = [\"eth0\"]\npretrigger = \"90s,64MiB\"\n";

    #[test]
    fn evidence_follows_alerts_with_the_taps_history() {
        let c = parse(&format!(
            "{EVIDENCE_TAP}[evidence]\neve = \"/var/log/suricata/eve.json\"\ndir = \"ev\"\nbefore = 20\nafter = 5\nsids = \"1000002,2000000-2000010\"\nseverity = 2\nrate = 2\nburst = 4\n"
        ))
        .unwrap();
        let e = c.evidence.unwrap();
        assert_eq!(e.dir, Path::new("/etc/tap/ev"));
        assert_eq!(e.taps, ["uplink"], "every tap with a history, by default");
        assert_eq!(e.follow.cases.before_ns, 20_000_000_000);
        assert_eq!(e.follow.cases.after_ns, 5_000_000_000);
        assert_eq!((e.follow.cases.rate, e.follow.cases.burst), (2.0, 4));
        assert_eq!(
            e.follow.selector.sids,
            [1_000_002..=1_000_002, 2_000_000..=2_000_010]
        );
        assert_eq!(e.follow.selector.max_severity, Some(2));
        assert!(matches!(
            e.follow.source,
            crate::evidence::Source::File { ref path, .. } if path == Path::new("/var/log/suricata/eve.json")
        ));
        assert_eq!(
            c.taps[0].capture.consumers.pretrigger,
            Some(crate::model::PretriggerLimits {
                max_age: Some(std::time::Duration::from_secs(90)),
                max_bytes: Some(64 << 20),
            })
        );
    }

    #[test]
    fn evidence_refusals_name_their_key() {
        let ev = |body: &str| error(&format!("{EVIDENCE_TAP}[evidence]\n{body}"));
        let (line, key, m) = ev("dir = \"/ev\"\n");
        assert_eq!((line, key.as_str()), (5, "evidence.eve"), "{m}");
        assert!(m.contains("give eve"), "{m}");
        let (_, key, _) = ev("eve = \"/e\"\nsocket = \"/s\"\ndir = \"/ev\"\n");
        assert_eq!(key, "evidence.eve");
        let (_, key, m) = ev("eve = \"/e\"\n");
        assert_eq!(key, "evidence.dir", "{m}");
        let (line, key, m) = ev("eve = \"/e\"\ndir = \"/ev\"\nsids = \"12,x\"\n");
        assert_eq!((line, key.as_str()), (8, "evidence.sids"), "{m}");
        let (_, key, _) = ev("eve = \"/e\"\ndir = \"/ev\"\nseverity = 0\n");
        assert_eq!(key, "evidence.severity");
        let (_, key, m) = ev("eve = \"/e\"\ndir = \"/ev\"\nbefore = -1\n");
        assert_eq!(key, "evidence.before", "{m}");
        let (_, key, m) = ev("eve = \"/e\"\ndir = \"/ev\"\nrate = 0\n");
        assert_eq!(key, "evidence.rate", "{m}");
        let (line, key, m) = ev("eve = \"/e\"\ndir = \"/ev\"\ntaps = [\"nope\"]\n");
        assert_eq!((line, key.as_str()), (8, "evidence.taps"), "{m}");
        assert!(m.contains("no tap is named 'nope'"), "{m}");
        let (_, _, m) = ev("eve = \"/e\"\ndir = \"/ev\"\nbefore = 80\nafter = 30\n");
        assert!(m.contains("longer than tap 'uplink' holds"), "{m}");
        let (_, key, m) = error(
            "[[tap]]\nname = \"a\"\ninterfaces = [\"lo\"]\nserve = \"/s\"\n[evidence]\neve = \"/e\"\ndir = \"/ev\"\n",
        );
        assert_eq!(key, "evidence.taps");
        assert!(m.contains("no tap holds a history"), "{m}");
    }
}
