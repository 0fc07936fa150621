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
//! The packet store (`[tap.store]`) and the query endpoint (`agent.query_listen`) are in
//! [`store`].
//!
//! Raw structures mirror the file (`serde`, unknown keys refused); [`AgentConfig::parse`] turns
//! them into one [`crate::config::CaptureConfig`] per tap through the same validation as the
//! command line, with the key's position kept for the error.

use std::{
    net::SocketAddr,
    ops::Range,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use tap_common::config::{DEFAULT_RING_SIZE, DEFAULT_SNAPLEN};
use toml::Spanned;

use crate::{
    cli::{ConsumerArgs, DiskFullArg, FilterArgs, FormatArg, OutputArgs},
    config::{
        self, CaptureConfig, Consumers, Decap, Hook, Output, OutputConfig, OutputConfigError,
        XdpMode,
    },
    error::ConfigError,
    excerpt,
};

mod store;
pub use store::{QueryListen, is_loopback};

/// Where `tap ctl` and the agent meet when the file does not say.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/tap/tap.sock";

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// Errors of the configuration file.
#[derive(Debug, thiserror::Error)]
pub enum AgentConfigError {
    #[error(transparent)]
    Read(#[from] crate::bounded_read::BoundedReadError),
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
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Invalid { line, .. } => Some(*line),
            Self::Read(_) => None,
        }
    }
}

// ---- The file as written -------------------------------------------------------------------

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    agent: Option<RawAgent>,
    #[serde(default)]
    tap: Vec<Spanned<RawTap>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    control_socket: Option<Spanned<PathBuf>>,
    metrics_listen: Option<Spanned<String>>,
    query_listen: Option<Spanned<String>>,
    query_token_file: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawHook {
    Xdp,
    Tc,
    TcIngress,
    TcEgress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawXdpMode {
    Auto,
    Native,
    Generic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawFormat {
    Pcap,
    Pcapng,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawDiskFull {
    Stop,
    Drop,
}

/// One `[[tap]]`. Equality ignores positions (see [`Spanned`]'s `PartialEq`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTap {
    name: Spanned<String>,
    interfaces: Spanned<Vec<Spanned<String>>>,
    hook: Option<Spanned<RawHook>>,
    xdp_mode: Option<Spanned<RawXdpMode>>,
    filter: Option<Spanned<String>>,
    filter_file: Option<Spanned<PathBuf>>,
    snaplen: Option<Spanned<u32>>,
    ring_size: Option<Spanned<u64>>,
    sample: Option<Spanned<u32>>,
    max_rate: Option<Spanned<u32>>,
    decap: Option<Spanned<String>>,
    consume: Option<bool>,
    serve: Option<Spanned<PathBuf>>,
    inject: Option<Spanned<String>>,
    forward: Option<Spanned<Vec<Spanned<String>>>>,
    fix_checksums: Option<bool>,
    flow_budget: Option<Spanned<String>>,
    flow_table_size: Option<Spanned<u32>>,
    file: Option<Spanned<RawFileSink>>,
    store: Option<Spanned<store::RawStoreSink>>,
    suricata: Option<Spanned<RawSuricata>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFileSink {
    path: Spanned<PathBuf>,
    format: Option<Spanned<RawFormat>>,
    compress: Option<Spanned<String>>,
    file_size_mb: Option<Spanned<f64>>,
    rotate_seconds: Option<Spanned<u64>>,
    ring_files: Option<Spanned<u32>>,
    post_rotate: Option<Spanned<String>>,
    flush_interval_ms: Option<Spanned<u64>>,
    on_disk_full: Option<Spanned<RawDiskFull>>,
    force: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuricata {
    socket: Spanned<PathBuf>,
    output: Option<Spanned<PathBuf>>,
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
    pub taps: Vec<TapConfig>,
}

/// One validated tap.
#[derive(Debug, Clone)]
pub struct TapConfig {
    pub name: String,
    /// Interface names or shell globs.
    pub patterns: Vec<String>,
    /// The capture, with no interfaces: the agent attaches them as they match.
    pub capture: CaptureConfig,
    /// What of the file needs a restart when it changes (the live-applicable keys blanked).
    restart_key: RawTap,
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
    /// True when interface `name` is one of this tap's (by name or glob).
    pub fn matches(&self, name: &str) -> bool {
        self.patterns.iter().any(|p| glob_match(p, name))
    }

    /// How `new` differs from `self`.
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
}

impl AgentConfig {
    /// Reads and validates the file.
    pub fn load(path: &Path) -> Result<Self, AgentConfigError> {
        let text = crate::bounded_read::read_text(path, crate::bounded_read::AGENT_CONFIG_MAX)?;
        Self::parse(path, &text)
    }

    /// Validates `text`, the contents of `path` (relative paths in it are relative to the
    /// directory of `path`).
    pub fn parse(path: &Path, text: &str) -> Result<Self, AgentConfigError> {
        let src = Source { path, text };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
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
        let control_socket = agent.control_socket.as_ref().map_or_else(
            || PathBuf::from(DEFAULT_CONTROL_SOCKET),
            |s| resolve(s.get_ref()),
        );
        let metrics_listen = match &agent.metrics_listen {
            None => None,
            Some(s) => Some(s.get_ref().parse::<SocketAddr>().map_err(|_| {
                src.error(
                    s.span(),
                    "agent.metrics_listen",
                    format!(
                        "'{}' is not an address and port (e.g. 127.0.0.1:9750)",
                        excerpt::excerpt(s.get_ref())
                    ),
                )
            })?),
        };
        let query = store::query_listen(
            &src,
            agent.query_listen.as_ref(),
            agent.query_token_file.as_ref(),
            &resolve,
        )?;
        let mut taps: Vec<TapConfig> = Vec::with_capacity(raw.tap.len());
        let mut sinks: Vec<(PathBuf, String)> = Vec::new();
        for tap in &raw.tap {
            let t = validate_tap(&src, tap, &resolve)?;
            if taps.iter().any(|o| o.name == t.name) {
                return Err(src.error(
                    tap.get_ref().name.span(),
                    "name",
                    format!("a tap named '{}' is already defined", t.name),
                ));
            }
            // Two taps writing the same file or serving the same socket would clobber each other.
            let mut mine: Vec<(PathBuf, Range<usize>, &str)> = Vec::new();
            if let (Output::File(p), Some(f)) = (&t.capture.output.target, &tap.get_ref().file) {
                mine.push((p.clone(), f.get_ref().path.span(), "file.path"));
            }
            if let (Some(st), Some(s)) = (&t.capture.output.store, &tap.get_ref().store) {
                mine.push((st.dir.clone(), s.span(), "store.dir"));
            }
            if let (Some(p), Some(s)) = (&t.capture.consumers.serve, &tap.get_ref().serve) {
                mine.push((p.clone(), s.span(), "serve"));
            }
            for (p, span, key) in mine {
                if let Some((_, other)) = sinks.iter().find(|(q, _)| *q == p) {
                    return Err(src.error(
                        span,
                        format!("tap '{}': {key}", t.name),
                        format!("{} is already used by tap '{other}'", p.display()),
                    ));
                }
                sinks.push((p, t.name.clone()));
            }
            taps.push(t);
        }
        Ok(Self {
            path: path.to_path_buf(),
            control_socket,
            metrics_listen,
            query,
            taps,
        })
    }
}

fn validate_tap(
    src: &Source<'_>,
    spanned: &Spanned<RawTap>,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<TapConfig, AgentConfigError> {
    let raw = spanned.get_ref();
    let name = raw.name.get_ref().clone();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(src.error(
            raw.name.span(),
            "name",
            "use 1 to 64 letters, digits, '-', '_' or '.'",
        ));
    }
    let err = |span: Range<usize>, key: &str, message: String| {
        src.error(span, format!("tap '{name}': {key}"), message)
    };

    let patterns: Vec<String> = raw
        .interfaces
        .get_ref()
        .iter()
        .map(|p| p.get_ref().clone())
        .collect();
    if patterns.is_empty() {
        return Err(err(
            raw.interfaces.span(),
            "interfaces",
            "list at least one interface name or glob".into(),
        ));
    }
    for p in raw.interfaces.get_ref() {
        let text = p.get_ref();
        if text.is_empty()
            || text.len() > IFNAME_MAX
            || text.contains(['/', ':'])
            || text.chars().any(char::is_whitespace)
        {
            return Err(err(
                p.span(),
                "interfaces",
                format!(
                    "'{}' is not an interface name or glob (at most {IFNAME_MAX} characters, no '/', ':' or spaces)",
                    excerpt::excerpt(text)
                ),
            ));
        }
    }

    let hooks = match raw.hook.as_ref().map(|h| *h.get_ref()) {
        Some(RawHook::Xdp) => vec![Hook::Xdp],
        None | Some(RawHook::Tc) => vec![Hook::TcIngress, Hook::TcEgress],
        Some(RawHook::TcIngress) => vec![Hook::TcIngress],
        Some(RawHook::TcEgress) => vec![Hook::TcEgress],
    };
    let xdp_mode = match &raw.xdp_mode {
        Some(m) if hooks != [Hook::Xdp] => {
            return Err(err(
                m.span(),
                "xdp_mode",
                "applies only to hook = \"xdp\"".into(),
            ));
        }
        Some(m) => match m.get_ref() {
            RawXdpMode::Auto => XdpMode::Auto,
            RawXdpMode::Native => XdpMode::Native,
            RawXdpMode::Generic => XdpMode::Generic,
        },
        None => XdpMode::Auto,
    };

    let filter_args = match (&raw.filter, &raw.filter_file) {
        (Some(_), Some(f)) => {
            return Err(err(
                f.span(),
                "filter_file",
                "give filter or filter_file, not both".into(),
            ));
        }
        (Some(f), None) => FilterArgs {
            filter: Some(f.get_ref().clone()),
            ..FilterArgs::default()
        },
        (None, Some(f)) => FilterArgs {
            filter_file: Some(resolve(f.get_ref())),
            ..FilterArgs::default()
        },
        (None, None) => FilterArgs::default(),
    };
    let filter_span = raw
        .filter
        .as_ref()
        .map(Spanned::span)
        .or(raw.filter_file.as_ref().map(Spanned::span))
        .unwrap_or(spanned.span());
    let filter_key = if raw.filter_file.is_some() {
        "filter_file"
    } else {
        "filter"
    };
    let filter = config::filter_from_args(&filter_args)
        .map_err(|e| err(filter_span.clone(), filter_key, error_text(&e)))?;

    let snaplen = match &raw.snaplen {
        None => DEFAULT_SNAPLEN,
        Some(s) => config::snaplen(Some(*s.get_ref()))
            .map_err(|e| err(s.span(), "snaplen", error_text(&e)))?,
    };
    let ring_size = match &raw.ring_size {
        None => u64::from(DEFAULT_RING_SIZE),
        Some(r) => {
            let size = *r.get_ref();
            let min = config::page_size();
            if !size.is_power_of_two() || size < min || size > 1 << 31 {
                return Err(err(
                    r.span(),
                    "ring_size",
                    format!(
                        "{size} is not a power of two from {min} (the page size) to 2147483648"
                    ),
                ));
            }
            size
        }
    };
    let sample = match &raw.sample {
        Some(s) if *s.get_ref() == 0 => {
            return Err(err(
                s.span(),
                "sample",
                "must be at least 1 (1: keep every packet)".into(),
            ));
        }
        Some(s) => *s.get_ref(),
        None => 1,
    };
    let rate_per_cpu = match raw.max_rate.as_ref().map(|r| *r.get_ref()) {
        None | Some(0) => 0,
        Some(pps) => pps.div_ceil(config::ncpus()),
    };
    let flow_budget = match (&raw.flow_budget, &raw.flow_table_size) {
        (None, None) => None,
        (None, Some(size)) => {
            return Err(err(
                size.span(),
                "flow_table_size",
                "needs flow_budget".into(),
            ));
        }
        (Some(b), size) => {
            let budget = config::FlowBudget::parse(b.get_ref())
                .map_err(|e| err(b.span(), "flow_budget", error_text(&e)))?;
            Some(match size {
                None => budget,
                Some(size) => budget
                    .with_table_size(*size.get_ref())
                    .map_err(|e| err(size.span(), "flow_table_size", error_text(&e)))?,
            })
        }
    };
    let decap = match &raw.decap {
        None => Decap::default(),
        Some(d) => d
            .get_ref()
            .parse::<Decap>()
            .map_err(|e| err(d.span(), "decap", error_text(&e)))?,
    };

    let output = match (&raw.file, &raw.store) {
        (Some(_), Some(s)) => {
            return Err(err(
                s.span(),
                "store",
                "a store takes the place of [tap.file]: give one of them".into(),
            ));
        }
        (None, Some(s)) => store::store_sink(src, &name, s, resolve)?,
        (None, None) => {
            let mut o = OutputConfig::from_args(Path::new("-"), &OutputArgs::default_values())
                .map_err(|e| err(spanned.span(), "file", e.to_string()))?;
            o.target = Output::None;
            o
        }
        (Some(f), None) => file_sink(src, &name, f, resolve)?,
    };
    let consumer_args = ConsumerArgs {
        serve: raw
            .serve
            .as_ref()
            .map(|s| format!("unix:{}", resolve(s.get_ref()).display())),
        inject: raw.inject.as_ref().map(|s| s.get_ref().clone()),
        forward: raw
            .forward
            .as_ref()
            .map(|f| f.get_ref().iter().map(|u| u.get_ref().clone()).collect())
            .unwrap_or_default(),
        fix_checksums: raw.fix_checksums.unwrap_or(false),
        suricata_socket: raw
            .suricata
            .as_ref()
            .map(|s| resolve(s.get_ref().socket.get_ref())),
        suricata_output: raw
            .suricata
            .as_ref()
            .and_then(|s| s.get_ref().output.as_ref())
            .map_or_else(
                || PathBuf::from("/var/log/suricata"),
                |o| resolve(o.get_ref()),
            ),
    };
    if let Some(i) = &raw.inject {
        let text = i.get_ref();
        if text.is_empty() || text.len() > IFNAME_MAX || text.contains(['/', ':', '*', '?', '[']) {
            return Err(err(
                i.span(),
                "inject",
                format!("'{}' is not an interface name", excerpt::excerpt(text)),
            ));
        }
    }
    let consumers = Consumers::from_args(&consumer_args).map_err(|e| {
        // Only --forward can fail here: say which URL.
        let span = raw.forward.as_ref().map_or(spanned.span(), |f| {
            f.get_ref()
                .iter()
                .find(|u| crate::sink::vxlan::VxlanTarget::parse(u.get_ref()).is_err())
                .map_or(f.span(), Spanned::span)
        });
        err(
            span,
            "forward",
            error_text(&e).trim_start_matches("--forward ").to_string(),
        )
    })?;
    if output.target == Output::None && !consumers.any() {
        return Err(err(
            spanned.span(),
            "(tap)",
            "no sink: give [tap.file], [tap.store], serve, inject or forward".into(),
        ));
    }
    if let Some(s) = &raw.suricata {
        if !output.rotation.active() {
            return Err(err(
                s.span(),
                "suricata",
                "submits finished files: [tap.file] needs file_size_mb or rotate_seconds".into(),
            ));
        }
    }

    let mut restart_key = raw.clone();
    restart_key.interfaces = Spanned::new(0..0, Vec::new());
    restart_key.filter = None;
    restart_key.filter_file = None;
    restart_key.sample = None;
    restart_key.max_rate = None;

    let capture = CaptureConfig {
        interfaces: Vec::new(),
        hooks,
        xdp_mode,
        snaplen,
        count: None,
        duration: None,
        ring_size: ring_size as u32,
        output,
        consumers,
        run_as: None,
        quiet: true,
        xdp_program: None,
        filter,
        filter_file: filter_args.filter_file,
        sample,
        rate_per_cpu,
        decap,
        consume: raw.consume.unwrap_or(false),
        program_stats: false,
        flow_budget,
    };
    Ok(TapConfig {
        name,
        patterns,
        capture,
        restart_key,
    })
}

/// `[tap.file]`, validated by the command line's rules, errors worded for the file.
fn file_sink(
    src: &Source<'_>,
    tap: &str,
    f: &Spanned<RawFileSink>,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<OutputConfig, AgentConfigError> {
    let raw = f.get_ref();
    let err = |span: Range<usize>, key: &str, message: String| {
        src.error(span, format!("tap '{tap}': file.{key}"), message)
    };
    let span_of = |s: Option<Range<usize>>| s.unwrap_or(f.span());
    let path = raw.path.get_ref();
    if path.as_os_str().is_empty() || path.as_os_str() == "-" {
        return Err(err(
            raw.path.span(),
            "path",
            "give a file name (standard output is not for a service)".into(),
        ));
    }
    let args = OutputArgs {
        format: raw.format.as_ref().map(|f| match f.get_ref() {
            RawFormat::Pcap => FormatArg::Pcap,
            RawFormat::Pcapng => FormatArg::Pcapng,
        }),
        compress: raw.compress.as_ref().map(|c| c.get_ref().clone()),
        file_size: raw.file_size_mb.as_ref().map(|s| *s.get_ref()),
        rotate_seconds: raw.rotate_seconds.as_ref().map(|s| *s.get_ref()),
        ring_files: raw.ring_files.as_ref().map(|s| *s.get_ref()),
        post_rotate: raw.post_rotate.as_ref().map(|s| s.get_ref().clone()),
        flush_interval: raw
            .flush_interval_ms
            .as_ref()
            .map_or(1000, |s| *s.get_ref()),
        on_disk_full: match raw.on_disk_full.as_ref().map(|s| *s.get_ref()) {
            Some(RawDiskFull::Drop) => DiskFullArg::Drop,
            None | Some(RawDiskFull::Stop) => DiskFullArg::Stop,
        },
        force: raw.force.unwrap_or(false),
        run_as: None,
    };
    let mut output = OutputConfig::from_args(&resolve(path), &args).map_err(|e| {
        use OutputConfigError as E;
        match e {
            E::RingWithoutRotation => err(
                span_of(raw.ring_files.as_ref().map(Spanned::span)),
                "ring_files",
                "needs file_size_mb or rotate_seconds: it keeps the newest files of a rotation"
                    .into(),
            ),
            E::FileSize => err(
                span_of(raw.file_size_mb.as_ref().map(Spanned::span)),
                "file_size_mb",
                "must be a positive number of megabytes".into(),
            ),
            E::Interval => err(
                span_of(raw.rotate_seconds.as_ref().map(Spanned::span)),
                "rotate_seconds",
                "must be at least 1".into(),
            ),
            E::RingFiles => err(
                span_of(raw.ring_files.as_ref().map(Spanned::span)),
                "ring_files",
                "must be at least 1".into(),
            ),
            E::Compress(c) => err(
                span_of(raw.compress.as_ref().map(Spanned::span)),
                "compress",
                format!(
                    "unknown '{}': use none, zstd or zstd:LEVEL (LEVEL 1 to 19)",
                    excerpt::excerpt(&c)
                ),
            ),
            E::Pattern(p) => err(raw.path.span(), "path", p.to_string()),
            other => err(f.span(), "(file)", other.to_string()),
        }
    })?;
    // A tap restarted (a reload, the service) goes on numbering after its earlier files.
    output.resume = true;
    Ok(output)
}

/// An error and its causes on one line.
fn error_text(e: &ConfigError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text.replace('\n', " ")
}

impl OutputArgs {
    /// The command line's defaults, for a tap without a file.
    pub fn default_values() -> Self {
        Self {
            format: None,
            compress: None,
            file_size: None,
            rotate_seconds: None,
            ring_files: None,
            post_rotate: None,
            flush_interval: 1000,
            on_disk_full: DiskFullArg::Stop,
            force: false,
            run_as: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(vms.capture.output.format, config::Format::Pcapng);
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
            (200, config::FlowUnit::Packets, 1024)
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
}
