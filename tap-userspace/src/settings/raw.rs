//! The raw settings: what a front door read, translated from its syntax and not yet checked.
//! Every reader fills these; only [`super::rules`] turns them into the validated
//! [`crate::model`] types.

use std::path::PathBuf;

use crate::model::{DirectionChoice, DiskFull, Format, HookChoice, XdpMode};

/// What the capture is for: the rules differ only where a one-shot command and a service
/// (a tap of the agent, a fleet session) need different things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `tap capture`: interfaces are names resolved now; standard output is an output.
    Command,
    /// A tap run by a service: interfaces are names or globs attached as they appear, the
    /// output is a file (numbered on after an earlier run's files), names are plain names.
    Service,
}

/// Where the filter expression comes from. More than one source is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawFilter {
    /// The expression itself.
    pub expression: Option<String>,
    /// A file holding it (`#` starts a comment, as with tcpdump -F).
    pub file: Option<PathBuf>,
    /// The expression as separate words (tcpdump's trailing words), joined by spaces.
    pub words: Vec<String>,
}

/// The `--serve` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawServe {
    /// As written on the command line: `unix:PATH`.
    Address(String),
    /// A socket path (the agent file and sessions say only that).
    Path(PathBuf),
}

/// The output file and how it is written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawOutput {
    /// A file, a name pattern with rotation, or `-` for standard output.
    pub path: Option<PathBuf>,
    pub format: Option<Format>,
    /// `none`, `zstd` or `zstd:LEVEL`.
    pub compress: Option<String>,
    /// Megabytes (1,000,000 bytes) per file.
    pub file_size_mb: Option<f64>,
    pub rotate_seconds: Option<u64>,
    pub ring_files: Option<u32>,
    pub post_rotate: Option<String>,
    /// A PKCS#8 PEM ed25519 secret key that signs the custody entries.
    pub sign_key: Option<PathBuf>,
    /// Milliseconds; default 1000.
    pub flush_interval_ms: Option<u64>,
    pub on_disk_full: Option<DiskFull>,
    pub force: bool,
    /// A user name (`-Z`).
    pub run_as: Option<String>,
}

/// A size in bytes: a number, or text with a K, M or G suffix (powers of 1024), as a file may
/// write it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum RawSize {
    Bytes(u64),
    Text(String),
}

/// A packet store instead of a file: the directory and its retention.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawStore {
    pub dir: Option<PathBuf>,
    pub max_bytes: Option<RawSize>,
    /// A duration in words (`7d`, `12h`, `90m`).
    pub max_age: Option<String>,
}

/// Packets printed as text (tcpdump's terminal output); only the command line asks for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[expect(clippy::struct_excessive_bools, reason = "tcpdump's switches")]
pub struct RawPrint {
    /// `--print`: print beside the other outputs (without any output, printing is implied).
    pub enabled: bool,
    /// How many `-t` (0: the time of day).
    pub time: u8,
    /// `-e`.
    pub link_header: bool,
    /// How many `-v`.
    pub verbose: u8,
    /// `-q` (less protocol detail).
    pub quiet: bool,
    /// `-S`.
    pub absolute_seq: bool,
    /// How many `-x`, `-X` and `-A` (two: with the link-layer header).
    pub hex: u8,
    pub hex_ascii: u8,
    pub ascii: u8,
    /// `-l`.
    pub line_buffered: bool,
}

/// One capture as a front door described it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawCapture {
    /// Interface names ([`Purpose::Command`]: none means the default-route interface) or, for a
    /// service, names and globs.
    pub interfaces: Vec<String>,
    pub hook: Option<HookChoice>,
    /// `-Q`: which packets of the hook chosen (TC: in, out or both; XDP: in).
    pub direction: Option<DirectionChoice>,
    pub xdp_mode: Option<XdpMode>,
    pub filter: RawFilter,
    /// Bytes; 0 or none: the default.
    pub snaplen: Option<u32>,
    pub count: Option<u64>,
    /// Seconds.
    pub duration: Option<f64>,
    /// Bytes.
    pub ring_size: Option<u64>,
    pub output: RawOutput,
    pub store: RawStore,
    pub serve: Option<RawServe>,
    pub inject: Option<String>,
    /// `vxlan://` URLs.
    pub forward: Vec<String>,
    pub fix_checksums: bool,
    pub suricata_socket: Option<PathBuf>,
    pub suricata_output: Option<PathBuf>,
    pub quiet: bool,
    pub xdp_program: Option<String>,
    pub sample: Option<u32>,
    /// Packets per second over all CPUs; 0 or none: no cap.
    pub max_rate: Option<u32>,
    /// `vxlan[:PORT],geneve,gre,erspan`.
    pub decap: Option<String>,
    pub consume: bool,
    pub program_stats: bool,
    /// `4096`, `64K` (bytes) or `200p` (packets).
    pub flow_budget: Option<String>,
    /// Flows the budget's table holds.
    pub flow_table_size: Option<u32>,
    /// `30s`, `256MiB` or both (`30s,256MiB`): the packets held in memory for evidence.
    pub pretrigger: Option<String>,
    /// Packets printed as text.
    pub print: RawPrint,
}

impl RawCapture {
    /// The settings a running tap can take without a restart, blanked: two captures whose
    /// restart keys differ need the tap stopped and started anew.
    #[must_use]
    pub fn restart_key(&self) -> Self {
        Self {
            interfaces: Vec::new(),
            filter: RawFilter::default(),
            sample: None,
            max_rate: None,
            ..self.clone()
        }
    }
}

/// A tap of a service: a name and its capture.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTap {
    pub name: String,
    pub capture: RawCapture,
}

/// The agent's `[evidence]`: where alerts come from, which make files, and from which taps'
/// history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawEvidence {
    /// `eve.json` to follow.
    pub eve: Option<PathBuf>,
    /// A unix socket to listen on for Suricata's `unix_stream` eve-log output.
    pub socket: Option<PathBuf>,
    /// Read the file from its start rather than only what is written from now on.
    pub from_start: bool,
    pub dir: Option<PathBuf>,
    /// The taps whose history serves (none: every tap with a pre-trigger memory or a store).
    pub taps: Vec<String>,
    /// Seconds.
    pub before: Option<f64>,
    pub after: Option<f64>,
    pub max_window: Option<f64>,
    pub settle: Option<f64>,
    /// `2100498,2200000-2299999`.
    pub sids: Option<String>,
    pub exclude_sids: Option<String>,
    /// 1 (most severe) to 255: alerts at or above it.
    pub severity: Option<u8>,
    /// Files per second, on average, and at once.
    pub rate: Option<f64>,
    pub burst: Option<u32>,
    pub max_open: Option<usize>,
    pub max_alerts: Option<usize>,
    /// Megabytes (1,000,000 bytes) per file at most.
    pub max_file_mb: Option<f64>,
}

/// The agent's `[fleet]` table: how it reaches etcd and who it is in the fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawFleet {
    /// `http://HOST:PORT` or `https://HOST:PORT`.
    pub etcd: Vec<String>,
    pub host: Option<String>,
    /// Root of tap's keys.
    pub prefix: Option<String>,
    /// Interface globs that are uplinks (never a workload's port).
    pub uplinks: Vec<String>,
    /// Time to live of the agent's status lease, seconds.
    pub lease_seconds: Option<u64>,
    /// Seconds between full re-reads of the inventory (besides its events).
    pub resync_seconds: Option<u64>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
}
