//! The vocabulary of a capture: plain types every layer may use (the loader, the sinks, the live
//! counters, the agent), and the validated settings built from them. It imports nothing above
//! it; the rules that build these values from what a user wrote are in [`crate::settings`].

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;
use tap_common::event::{HOOK_TC_EGRESS, HOOK_TC_INGRESS, HOOK_XDP};

use crate::{custody::SecretKey, filter::maps::FilterImage, support::privilege::RunAs};

/// A kernel attach point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    Xdp,
    TcIngress,
    TcEgress,
}

impl Hook {
    /// The name users write and reports print.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::TcIngress => "tc-ingress",
            Hook::TcEgress => "tc-egress",
        }
    }
}

/// A record header's hook code (`tap_common::event::HOOK_*`) that names no hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown hook code {0}")]
pub struct UnknownHook(pub tap_common::event::Hook);

impl TryFrom<tap_common::event::Hook> for Hook {
    type Error = UnknownHook;

    fn try_from(code: tap_common::event::Hook) -> Result<Self, Self::Error> {
        match code {
            HOOK_XDP => Ok(Hook::Xdp),
            HOOK_TC_INGRESS => Ok(Hook::TcIngress),
            HOOK_TC_EGRESS => Ok(Hook::TcEgress),
            other => Err(UnknownHook(other)),
        }
    }
}

impl From<Hook> for tap_common::event::Hook {
    fn from(hook: Hook) -> Self {
        match hook {
            Hook::Xdp => HOOK_XDP,
            Hook::TcIngress => HOOK_TC_INGRESS,
            Hook::TcEgress => HOOK_TC_EGRESS,
        }
    }
}

/// Where in the kernel to tap, as a user chooses it: one hook, or TC in both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookChoice {
    /// XDP: ingress only, earliest point, cheapest.
    Xdp,
    /// TC ingress and egress: both directions of the host's traffic.
    #[default]
    Tc,
    /// TC ingress only.
    TcIngress,
    /// TC egress only.
    TcEgress,
}

impl HookChoice {
    /// The hooks attached for this choice.
    #[must_use]
    pub fn hooks(self) -> Vec<Hook> {
        match self {
            HookChoice::Xdp => vec![Hook::Xdp],
            HookChoice::Tc => vec![Hook::TcIngress, Hook::TcEgress],
            HookChoice::TcIngress => vec![Hook::TcIngress],
            HookChoice::TcEgress => vec![Hook::TcEgress],
        }
    }

    /// The one program that runs packets of a file (`tap replay`) or a bench: TC means ingress.
    #[must_use]
    pub fn program(self) -> Hook {
        match self {
            HookChoice::Xdp => Hook::Xdp,
            HookChoice::Tc | HookChoice::TcIngress => Hook::TcIngress,
            HookChoice::TcEgress => Hook::TcEgress,
        }
    }
}

/// Which packets of an interface to record, as tcpdump's `-Q`: those arriving (TC ingress, or
/// XDP), those leaving (TC egress), or both. On a bridge, `In` on every port records each packet
/// crossing it once (on the port it arrives at).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirectionChoice {
    In,
    Out,
    Inout,
}

impl DirectionChoice {
    /// The word tcpdump and the files use.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            DirectionChoice::In => "in",
            DirectionChoice::Out => "out",
            DirectionChoice::Inout => "inout",
        }
    }
}

/// XDP attach mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum XdpMode {
    /// Native (driver) mode, falling back to generic when the driver lacks it.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode.
    Generic,
}

/// One interface to tap, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
}

/// Where packets go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// No file or stream: only the consumers (--serve, --inject, --forward) get packets.
    None,
    Stdout,
    /// A file, or with rotation a name pattern (see [`crate::sink::rotate`]).
    File(PathBuf),
}

/// File format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Classic pcap, nanosecond timestamps.
    Pcap,
    /// pcapng: interface per interface and hook, direction flags, drop statistics.
    Pcapng,
}

/// Compression of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    /// zstd at this level (1..=19); each write is a whole frame.
    Zstd {
        level: i32,
    },
}

/// zstd level when none is given: the fastest, so the writer keeps up (level 1 compresses about
/// twice as fast as zstd's own default, 3, at a slightly lower ratio).
pub const ZSTD_DEFAULT_LEVEL: i32 = 1;

/// What a full disk does to the capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskFull {
    /// Finish the current file and stop capturing.
    #[default]
    Stop,
    /// Finish the current file and count the packets that follow as dropped.
    Drop,
}

/// When to start the next file. All `None`: one file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Bytes a file may hold (on disk, so compressed bytes when compressing).
    pub max_bytes: Option<u64>,
    /// Seconds per file, aligned to the local clock.
    pub interval_secs: Option<u64>,
    /// Files of this capture kept; older ones are deleted.
    pub max_files: Option<u32>,
}

impl Rotation {
    #[must_use]
    pub fn active(&self) -> bool {
        self.max_bytes.is_some() || self.interval_secs.is_some()
    }
}

/// Where and how packets are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputConfig {
    pub target: Output,
    pub format: Format,
    pub compression: Compression,
    pub rotation: Rotation,
    /// Command run on each finished file, with the file as its argument.
    pub post_rotate: Option<String>,
    /// Longest time a packet stays in tap's buffer before it is written.
    pub flush_interval: Duration,
    pub on_disk_full: DiskFull,
    /// Overwrite existing files.
    pub force: bool,
    /// With rotation, a file name already taken (by an earlier run: `tap agent` restarting a
    /// tap) is skipped and the sequence goes on after it, instead of failing. Files of earlier
    /// runs do not count towards `max_files`.
    pub resume: bool,
    /// A packet store (`--store`): the files are indexed, retention applies
    /// ([`crate::store`]).
    pub store: Option<StoreConfig>,
    /// The key that signs each custody entry of the files (`--sign-key`).
    pub sign_key: Option<SignKey>,
}

/// A custody signing key, read when the settings are checked (before `-Z` drops privileges).
#[derive(Debug, Clone)]
pub struct SignKey {
    /// The PKCS#8 PEM file it was read from.
    pub path: PathBuf,
    pub key: SecretKey,
}

impl PartialEq for SignKey {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.key.public_hex() == other.key.public_hex()
    }
}

impl Eq for SignKey {}

/// A packet store: where, and its retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The store's directory, absolute.
    pub dir: PathBuf,
    /// Bytes the store may hold (capture and index files).
    pub max_bytes: Option<u64>,
    /// Age of the last packet beyond which a file is deleted.
    pub max_age: Option<Duration>,
}

impl StoreConfig {
    /// Whether retention is on (it is what may delete files on a full disk).
    #[must_use]
    pub fn retention(&self) -> bool {
        self.max_bytes.is_some() || self.max_age.is_some()
    }
}

/// A collector that gets a VXLAN copy of each packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanTarget {
    pub collector: SocketAddr,
    /// VXLAN network identifier, 24 bits.
    pub vni: u32,
    /// Longest inner frame sent whole, in bytes; longer ones are truncated and counted.
    pub max_inner: usize,
}

/// Live consumers, validated.
#[derive(Debug, Clone, Default)]
pub struct Consumers {
    /// `--serve unix:PATH`.
    pub serve: Option<PathBuf>,
    pub inject: Option<String>,
    pub forward: Vec<VxlanTarget>,
    pub fix_checksums: bool,
    pub suricata_socket: Option<PathBuf>,
    pub suricata_output: PathBuf,
    /// `pretrigger`: the last packets held in memory for evidence.
    pub pretrigger: Option<PretriggerLimits>,
}

impl Consumers {
    /// True when a consumer besides the file output is configured.
    #[must_use]
    pub fn any(&self) -> bool {
        self.serve.is_some()
            || self.inject.is_some()
            || !self.forward.is_empty()
            || self.pretrigger.is_some()
    }
}

/// How much of a tap's recent packets is held in memory: the newest `max_age` of them, and at
/// most `max_bytes` (captured bytes plus a record overhead each); at least one is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PretriggerLimits {
    pub max_age: Option<Duration>,
    pub max_bytes: Option<u64>,
}

/// Which tunnels the programs strip, so filters and files see the inner frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decap {
    /// `tap_common::config::decap` bits.
    pub bits: u32,
    /// VXLAN UDP port, host order.
    pub vxlan_port: u16,
}

impl Default for Decap {
    fn default() -> Self {
        Self {
            bits: 0,
            vxlan_port: tap_common::config::VXLAN_PORT,
        }
    }
}

/// A validated capture: what [`crate::pipeline::run`] needs, checked before anything is loaded
/// or attached.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    pub interfaces: Vec<Interface>,
    /// `tap capture -i` names, globs or `any` to follow as interfaces come and go (the agent's
    /// way); empty: `interfaces` are fixed.
    pub follow: Vec<String>,
    pub hooks: Vec<Hook>,
    pub xdp_mode: XdpMode,
    /// Bytes kept of each packet, 1..=`tap_common::config::MAX_SNAPLEN`.
    pub snaplen: u32,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    /// Ring buffer size in bytes (power of two, at least a page).
    pub ring_size: u32,
    pub output: OutputConfig,
    /// Live consumers besides the output.
    pub consumers: Consumers,
    /// Run as this user once the programs are attached (`-Z`).
    pub run_as: Option<RunAs>,
    pub quiet: bool,
    pub xdp_program: Option<String>,
    pub filter: FilterImage,
    /// Keep 1 in `sample` matched packets (1: all).
    pub sample: u32,
    /// Matched packets per second kept, per CPU (0: no cap).
    pub rate_per_cpu: u32,
    /// Tunnels to decapsulate.
    pub decap: Decap,
    /// Drop every packet after copying it (XDP_DROP / TC_ACT_SHOT).
    pub consume: bool,
    /// Switch on the kernel's BPF run-time statistics and report the programs' cost.
    pub program_stats: bool,
    /// `--flow-budget`: copy only the first bytes or packets of every flow.
    pub flow_budget: Option<FlowBudget>,
    /// Packets printed as text on standard output, if asked (or implied by no output).
    pub print: Option<PrintConfig>,
}

/// How packets are printed at the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrintConfig {
    pub options: crate::print::PrintOptions,
    /// Write each packet's text at once (`-l`, or standard output is a terminal); otherwise in
    /// blocks.
    pub line_buffered: bool,
}

/// What a per-flow budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowUnit {
    /// Bytes of the packets as recorded (original lengths, from the Ethernet header).
    Bytes,
    Packets,
}

/// A per-flow budget: see `tap_common::flow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowBudget {
    /// At least 1, in `unit`s.
    pub limit: u64,
    pub unit: FlowUnit,
    /// Flows the table holds, 1..=`tap_common::flow::MAX_FLOW_TABLE`.
    pub table_size: u32,
}

impl std::fmt::Display for FlowBudget {
    /// `4096 bytes`, `200 packets`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.unit {
            FlowUnit::Bytes => "bytes",
            FlowUnit::Packets => "packets",
        };
        write!(f, "{} {unit}", self.limit)
    }
}

/// The agent's query endpoint, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct QueryListen {
    /// Where to listen (TCP).
    pub addr: SocketAddr,
    /// The bearer token clients must send (`Authorization: Bearer TOKEN`); `None`: none asked
    /// (only on a loopback address).
    pub token: Option<String>,
    /// The file the token came from.
    pub token_file: Option<PathBuf>,
}

impl std::fmt::Debug for QueryListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryListen")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "(secret)"))
            .field("token_file", &self.token_file)
            .finish()
    }
}

/// Whether `addr` only accepts connections from this machine.
#[must_use]
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// A fleet session's priority when it gives none (the higher wins an interface).
pub const DEFAULT_SESSION_PRIORITY: u32 = 100;

/// The root of the fleet's etcd keys when none is given (`--etcd-prefix`, `[fleet] prefix`).
pub const DEFAULT_ETCD_ROOT: &str = "/tap";

/// The agent's place in a fleet (`[fleet]`), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// `http://HOST:PORT` or `https://HOST:PORT`, all of one scheme.
    pub etcd: Vec<String>,
    /// This host's name in the fleet: status keys and `iface:HOST:GLOB` sources use it.
    pub host: String,
    /// Root of tap's keys in etcd.
    pub prefix: String,
    /// Interface globs that are uplinks (never a workload's port).
    pub uplinks: Vec<String>,
    /// Time to live of the status lease: statuses vanish this long after the agent is gone.
    pub lease: Duration,
    /// Full re-read of the inventory besides its events.
    pub resync: Duration,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub user: Option<String>,
    /// The user's password, read from `password_file` (one line).
    pub password: Option<String>,
}

/// Status lease when `[fleet] lease_seconds` is not given.
pub const DEFAULT_FLEET_LEASE_SECS: u64 = 10;
/// Inventory re-read when `[fleet] resync_seconds` is not given.
pub const DEFAULT_FLEET_RESYNC_SECS: u64 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_and_record_codes_convert_both_ways() {
        for hook in [Hook::Xdp, Hook::TcIngress, Hook::TcEgress] {
            let code = tap_common::event::Hook::from(hook);
            assert_eq!(Hook::try_from(code), Ok(hook));
        }
        assert_eq!(Hook::try_from(0), Err(UnknownHook(0)));
        assert_eq!(HookChoice::Tc.hooks(), [Hook::TcIngress, Hook::TcEgress]);
        assert_eq!(HookChoice::Tc.program(), Hook::TcIngress);
    }
}
