//! Types shared by the eBPF programs (`tap-ebpf`) and the agent (`tap-userspace`).
//!
//! Everything here is `#[repr(C)]`, made of fixed-width integers with explicit padding, so both
//! sides agree on the layout byte for byte. Kinds are integer constants; the user side converts
//! them with `TryFrom`.
#![no_std]

pub mod config;
pub mod counters;
pub mod event;
pub mod filter;
pub mod flow;
#[cfg(feature = "user")]
pub mod frame;
pub mod ifstats;
pub mod maps;

#[cfg(any(test, feature = "user"))]
extern crate std;
