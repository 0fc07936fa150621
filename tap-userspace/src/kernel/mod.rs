//! The kernel side: loading and attaching the programs, the ring they fill, their counters, the
//! clock they stamp, the interfaces they attach to, and BPF_PROG_TEST_RUN.

pub mod batch;
pub mod capability;
pub mod clock;
pub mod counters;
pub mod flow;
pub mod iface;
pub mod ifstats;
pub mod links;
pub mod loader;
pub mod ring;
pub mod testrun;
