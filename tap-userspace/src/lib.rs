//! tap: a packet tap built on XDP and TC eBPF programs.
//!
//! The kernel programs copy packets into a BPF ring buffer; this crate loads and attaches them
//! ([`kernel`]), drains the ring in batches and runs the capture ([`pipeline`]) and hands the
//! batches to sinks ([`sink`]) that write pcap, or to the packet store ([`store`]).
//!
//! The `tap` binary is a thin layer over [`settings`] → [`model`] → [`pipeline::run`]; `tap agent`
//! runs several captures from one configuration file as a service ([`agent`]).

pub mod agent;
#[cfg(feature = "bench-writer")]
pub mod bench_writer;
pub mod custody;
pub mod evidence;
pub mod filter;
pub mod fleet;
pub mod kernel;
pub mod model;
pub mod pipeline;
pub mod print;
pub mod replay;
pub mod settings;
pub mod sink;
pub mod store;
pub mod support;

/// The BPF object built by `cargo xtask build-ebpf`, embedded so the binary is self-contained.
pub static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("TAP_BPF_OBJECT"));
