//! Error types of the library. The binary turns them into one-line messages.

use std::{io, path::PathBuf};

use crate::excerpt::excerpt;

/// Errors while validating what the user asked for.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown interface '{}'", excerpt(iface))]
    UnknownInterface { iface: String },
    #[error("no default route to pick an interface from; choose one with -i")]
    NoDefaultInterface,
    #[error(
        "snap length {snaplen} is out of range: use 1 to {max} (tcpdump's largest), or 0 for whole packets up to {max}"
    )]
    SnapLen { snaplen: u32, max: u32 },
    #[error(
        "ring size {size} is invalid: it must be a power of two of at least {min} bytes (the page size)"
    )]
    RingSize { size: u64, min: u64 },
    #[error("the same interface and hook is listed twice: {iface}")]
    DuplicateInterface { iface: String },
    #[error("--xdp-mode applies only to --hook xdp")]
    XdpModeWithoutXdp,
    #[error("filter file: {0}")]
    FilterFile(#[source] crate::bounded_read::BoundedReadError),
    #[error("filter: {0}")]
    Filter(#[source] crate::filter::FilterError),
    #[error("--sample must be at least 1")]
    Sample,
    #[error("nothing to write to: give -w FILE (or -), --serve, --inject or --forward")]
    NoOutput,
    #[error("--serve '{}': use unix:PATH", excerpt(value))]
    Serve { value: String },
    #[error("--forward {0}")]
    Forward(#[source] crate::sink::vxlan::VxlanError),
    #[error("--suricata-socket submits finished files: it needs -C or -G")]
    SuricataWithoutRotation,
    #[error(transparent)]
    Output(#[from] crate::config::OutputConfigError),
    #[error(
        "unknown --decap item '{}': use vxlan[:PORT], geneve, gre, erspan",
        excerpt(item)
    )]
    Decap { item: String },
    #[error(
        "flow budget '{value}' is not a budget: give bytes (4096, 64K) or packets (200p), at least 1"
    )]
    FlowBudget { value: String },
    #[error("flow table size {size} is out of range: use 1 to {max}")]
    FlowTableSize { size: u32, max: u32 },
    #[error(transparent)]
    Store(#[from] Box<crate::store::StoreError>),
}

/// Errors while loading and attaching the programs. aya's `ProgramError` is boxed: it is large,
/// and every loader step and each error that wraps this one (capture, replay) returns it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "permission denied while {op}: tap needs root (or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)"
    )]
    NotPermitted { op: &'static str },
    #[error("the kernel refused program {program}: {message}")]
    Rejected {
        program: String,
        message: String,
        verifier_log: String,
    },
    #[error("interface {iface} does not support native XDP: use --xdp-mode generic or auto")]
    NativeXdpUnsupported {
        iface: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("attaching {program} to {iface} failed: {source}")]
    Attach {
        program: String,
        iface: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("loading the BPF object failed: {0}")]
    Object(#[source] aya::EbpfError),
    #[error("the BPF object has no {kind} named {name}")]
    Missing { kind: &'static str, name: String },
    #[error("installing the filter failed: {0}")]
    Filter(#[source] crate::filter::maps::FilterMapError),
    #[error("mapping the ring buffer failed: {source}")]
    RingMap {
        #[source]
        source: std::io::Error,
    },
    #[error("BPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

/// Errors of a running capture.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("cannot open {path}: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing {what} failed: {source}")]
    Write {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Storage(#[from] crate::sink::StorageError),
    #[error("{0}")]
    Consumer(String),
    #[error(transparent)]
    Privileges(#[from] crate::privilege::PrivilegeError),
    #[error("ring buffer polling failed: {0}")]
    Poll(#[source] io::Error),
    #[error("cannot switch on BPF run-time statistics (--program-stats): {0}")]
    ProgramStats(#[source] io::Error),
    #[error("cannot install the {signal} handler: {source}")]
    Signal {
        signal: &'static str,
        #[source]
        source: io::Error,
    },
}

/// An error and its causes on one line, each cause once ("a: b: c").
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    crate::excerpt::line(&parts.join(": ").replace('\n', " ")).into_owned()
}
