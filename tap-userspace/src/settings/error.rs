//! What a rule says when a value is refused: the setting's key and the reason, in words that fit
//! a flag and a file alike. Each reader names the keys in its own syntax ([`Namer`]).

use std::fmt;

/// A setting, by its canonical name (the agent file's and a session's key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    Interfaces,
    Hook,
    /// Which packets of an interface (`-Q`, `direction`).
    Direction,
    XdpMode,
    Filter,
    FilterFile,
    Snaplen,
    RingSize,
    Sample,
    MaxRate,
    Decap,
    Serve,
    Inject,
    Forward,
    SuricataSocket,
    /// The output file (`-w`, `file.path`).
    Write,
    Format,
    Compress,
    FileSize,
    RotateSeconds,
    RingFiles,
    PostRotate,
    SignKey,
    FlushInterval,
    RunAs,
    /// A packet store's directory (`--store`).
    Store,
    StoreMaxBytes,
    StoreMaxAge,
    /// A capture's sinks as a whole: the file and the consumers.
    Sinks,
    /// A tap's name (agent file, sessions).
    Name,
    MetricsListen,
    FlowBudget,
    FlowTableSize,
    /// The agent's query endpoint (`agent.query_listen`).
    QueryListen,
    QueryTokenFile,
    /// A tap's pre-trigger memory (`pretrigger`).
    Pretrigger,
    /// `[evidence]`: `eve` or `socket`.
    EvidenceSource,
    EvidenceDir,
    EvidenceTaps,
    EvidenceSids,
    EvidenceSeverity,
    /// `before`, `after`, `max_window`, `settle`.
    EvidenceWindow,
    /// `rate`, `burst`, `max_open`, `max_alerts`, `max_file_mb`.
    EvidenceLimits,
    /// Packets printed as text (`--print` and tcpdump's printing flags; the command line only).
    Print,
    /// A capture file read instead of interfaces (`tap capture -r`; the command line only).
    Read,
    /// The agent's `[fleet]` table: etcd endpoints, host name, key root, lease, resync, TLS.
    FleetEtcd,
    FleetHost,
    FleetPrefix,
    FleetUplinks,
    FleetLease,
    FleetResync,
    FleetTls,
    FleetUser,
}

impl Key {
    /// Every key, for readers that map them all (and their tests).
    pub const ALL: [Key; 53] = [
        Key::Interfaces,
        Key::Hook,
        Key::Direction,
        Key::XdpMode,
        Key::Filter,
        Key::FilterFile,
        Key::Snaplen,
        Key::RingSize,
        Key::Sample,
        Key::MaxRate,
        Key::Decap,
        Key::Serve,
        Key::Inject,
        Key::Forward,
        Key::SuricataSocket,
        Key::Write,
        Key::Format,
        Key::Compress,
        Key::FileSize,
        Key::RotateSeconds,
        Key::RingFiles,
        Key::PostRotate,
        Key::SignKey,
        Key::FlushInterval,
        Key::RunAs,
        Key::Store,
        Key::StoreMaxBytes,
        Key::StoreMaxAge,
        Key::Sinks,
        Key::Name,
        Key::MetricsListen,
        Key::FlowBudget,
        Key::FlowTableSize,
        Key::QueryListen,
        Key::QueryTokenFile,
        Key::Pretrigger,
        Key::EvidenceSource,
        Key::EvidenceDir,
        Key::EvidenceTaps,
        Key::EvidenceSids,
        Key::EvidenceSeverity,
        Key::EvidenceWindow,
        Key::EvidenceLimits,
        Key::Print,
        Key::Read,
        Key::FleetEtcd,
        Key::FleetHost,
        Key::FleetPrefix,
        Key::FleetUplinks,
        Key::FleetLease,
        Key::FleetResync,
        Key::FleetTls,
        Key::FleetUser,
    ];

    /// The canonical name: the agent file's key within a `[[tap]]` (dotted for its tables) and a
    /// session's JSON key path.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Key::Interfaces => "interfaces",
            Key::Hook => "hook",
            Key::Direction => "direction",
            Key::XdpMode => "xdp_mode",
            Key::Filter => "filter",
            Key::FilterFile => "filter_file",
            Key::Snaplen => "snaplen",
            Key::RingSize => "ring_size",
            Key::Sample => "sample",
            Key::MaxRate => "max_rate",
            Key::Decap => "decap",
            Key::Serve => "serve",
            Key::Inject => "inject",
            Key::Forward => "forward",
            Key::SuricataSocket => "suricata.socket",
            Key::Write => "file.path",
            Key::Format => "file.format",
            Key::Compress => "file.compress",
            Key::FileSize => "file.file_size_mb",
            Key::RotateSeconds => "file.rotate_seconds",
            Key::RingFiles => "file.ring_files",
            Key::PostRotate => "file.post_rotate",
            Key::SignKey => "file.sign_key",
            Key::FlushInterval => "file.flush_interval_ms",
            Key::RunAs => "run_as",
            Key::Store => "store.dir",
            Key::StoreMaxBytes => "store.max_bytes",
            Key::StoreMaxAge => "store.max_age",
            Key::Sinks => "(tap)",
            Key::Name => "name",
            Key::MetricsListen => "agent.metrics_listen",
            Key::FlowBudget => "flow_budget",
            Key::FlowTableSize => "flow_table_size",
            Key::QueryListen => "agent.query_listen",
            Key::QueryTokenFile => "agent.query_token_file",
            Key::Pretrigger => "pretrigger",
            Key::EvidenceSource => "evidence.eve",
            Key::EvidenceDir => "evidence.dir",
            Key::EvidenceTaps => "evidence.taps",
            Key::EvidenceSids => "evidence.sids",
            Key::EvidenceSeverity => "evidence.severity",
            Key::EvidenceWindow => "evidence.before",
            Key::EvidenceLimits => "evidence.rate",
            Key::Print => "(print)",
            Key::Read => "(read)",
            Key::FleetEtcd => "fleet.etcd",
            Key::FleetHost => "fleet.host",
            Key::FleetPrefix => "fleet.prefix",
            Key::FleetUplinks => "fleet.uplinks",
            Key::FleetLease => "fleet.lease_seconds",
            Key::FleetResync => "fleet.resync_seconds",
            Key::FleetTls => "fleet.ca_file",
            Key::FleetUser => "fleet.user",
        }
    }

    /// The `tap capture` flag that sets it (`--sample`, `-W`): how the command line, and a
    /// fleet session that speaks in the capture's words, name it.
    #[must_use]
    pub fn flag(self) -> &'static str {
        match self {
            Key::Interfaces => "-i",
            Key::Hook => "--hook",
            Key::Direction => "-Q",
            Key::XdpMode => "--xdp-mode",
            Key::Filter => "filter",
            Key::FilterFile => "-F",
            Key::Snaplen => "-s",
            Key::RingSize => "--ring-size",
            Key::Sample => "--sample",
            Key::MaxRate => "--max-rate",
            Key::Decap => "--decap",
            Key::Serve => "--serve",
            Key::Inject => "--inject",
            Key::Forward => "--forward",
            Key::SuricataSocket => "--suricata-socket",
            Key::Write => "-w",
            Key::Format => "--format",
            Key::Compress => "--compress",
            Key::FileSize => "-C",
            Key::RotateSeconds => "-G",
            Key::RingFiles => "-W",
            Key::PostRotate => "--post-rotate",
            Key::SignKey => "--sign-key",
            Key::FlushInterval => "--flush-interval",
            Key::RunAs => "-Z",
            Key::Store => "--store",
            Key::StoreMaxBytes => "--store-max-bytes",
            Key::StoreMaxAge => "--store-max-age",
            Key::Sinks => "(capture)",
            Key::Name => "(name)",
            Key::MetricsListen => "(metrics)",
            Key::FlowBudget => "--flow-budget",
            Key::FlowTableSize => "--flow-table-size",
            Key::QueryListen => "(query)",
            Key::QueryTokenFile => "(query token)",
            Key::Pretrigger => "--pretrigger",
            Key::EvidenceSource => "--eve",
            Key::EvidenceDir => "(evidence dir)",
            Key::EvidenceTaps => "(evidence taps)",
            Key::EvidenceSids => "--sid",
            Key::EvidenceSeverity => "--severity",
            Key::EvidenceWindow => "--before",
            Key::EvidenceLimits => "--rate",
            Key::Print => "--print",
            Key::Read => "-r",
            Key::FleetEtcd => "(fleet etcd)",
            Key::FleetHost => "(fleet host)",
            Key::FleetPrefix => "(fleet prefix)",
            Key::FleetUplinks => "(fleet uplinks)",
            Key::FleetLease => "(fleet lease)",
            Key::FleetResync => "(fleet resync)",
            Key::FleetTls => "(fleet TLS)",
            Key::FleetUser => "(fleet user)",
        }
    }
}

/// One piece of a reason: words, or a setting the reader names in its own syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Key(Key),
}

/// Why a value is refused, naming settings by [`Key`] so each reader words them its own way.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reason(Vec<Part>);

impl Reason {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends words.
    #[must_use]
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.0.push(Part::Text(text.into()));
        self
    }

    /// Appends the name of a setting.
    #[must_use]
    pub fn key(mut self, key: Key) -> Self {
        self.0.push(Part::Key(key));
        self
    }

    /// The reason in words, each key named by `name`.
    pub fn render(&self, name: &dyn Fn(Key) -> String) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.clone(),
                Part::Key(k) => name(*k),
            })
            .collect()
    }

    /// The reason without a leading mention of `key`: for readers that put the key before it
    /// (`sample: must be at least 1` rather than `sample: sample must be ...`).
    pub fn render_after(&self, key: Key, name: &dyn Fn(Key) -> String) -> String {
        match self.0.split_first() {
            Some((Part::Key(k), rest)) if *k == key => {
                let text = Reason(rest.to_vec()).render(name);
                text.strip_prefix(": ")
                    .or_else(|| text.strip_prefix(' '))
                    .map_or_else(|| text.clone(), str::to_string)
            }
            _ => self.render(name),
        }
    }
}

/// A refused setting: which one (and which item of a list), and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.reason.render(&|k| k.name().to_string()))]
pub struct SettingError {
    pub key: Key,
    /// The item of a list setting (`forward`, `interfaces`) that is refused.
    pub index: Option<usize>,
    pub reason: Reason,
}

impl SettingError {
    #[must_use]
    pub fn new(key: Key, reason: Reason) -> Self {
        Self {
            key,
            index: None,
            reason,
        }
    }

    #[must_use]
    pub fn at(mut self, index: usize) -> Self {
        self.index = Some(index);
        self
    }
}

/// A [`SettingError`] worded by a reader: the message its front door prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worded {
    pub key: Key,
    pub message: String,
}

impl fmt::Display for Worded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
