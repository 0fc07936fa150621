//! tap: a packet tap built on XDP and TC eBPF programs.
//!
//! The kernel programs copy packets into a BPF ring buffer; this crate loads and attaches them
//! ([`loader`]), drains the ring in batches ([`drain`]), converts kernel time to wall-clock time
//! ([`clock`]) and hands the batches to sinks ([`sink`]) that write pcap.
//!
//! The `tap` binary is a thin layer over [`cli`] → [`config`] → [`capture::run`]; `tap agent`
//! runs several captures from one configuration file as a service ([`agent`]), with live
//! counters ([`live`]) for its control socket and metrics.

pub mod agent;
pub mod bench_writer;
pub mod bounded_read;
pub mod capture;
pub mod capture_file;
pub mod cli;
pub mod clock;
pub mod config;
pub mod custody;
pub mod drain;
pub mod error;
pub mod evidence;
pub mod excerpt;
pub mod filter;
pub mod fleet;
pub mod flow;
pub mod iface;
pub mod ifstats;
pub mod links;
pub mod listener;
pub mod live;
pub mod loader;
pub mod print;
pub mod privilege;
pub mod reader;
pub mod replay;
pub mod ring;
pub mod safe_create;
pub mod sink;
pub mod store;
pub mod summary;
pub mod testrun;

/// The BPF object built by `cargo xtask build-ebpf`, embedded so the binary is self-contained.
pub static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("TAP_BPF_OBJECT"));
