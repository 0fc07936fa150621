//! Names of the maps and programs in the BPF object: the one place they are spelled.

/// Ring buffer carrying [`crate::event::PacketHeader`] + packet bytes to user space.
pub const RING: &str = "TAP_RING";
/// Per-CPU array of `u64`, indexed by [`crate::counters::Counter`].
pub const COUNTERS: &str = "TAP_COUNTERS";

/// XDP entry point.
pub const PROG_XDP: &str = "xdp_tap";
/// TC classifier entry point for ingress.
pub const PROG_TC_INGRESS: &str = "tc_tap_ingress";
/// TC classifier entry point for egress.
pub const PROG_TC_EGRESS: &str = "tc_tap_egress";
/// An XDP program the verifier must refuse (unbounded packet read): used by the tests that
/// check how a refused object is reported. Never attached in normal use.
pub const PROG_XDP_REJECTED: &str = "xdp_tap_rejected";

/// Global (`.rodata`) holding the snap length, set by the loader: [`crate::config::SNAPLEN`].
pub const GLOBAL_SNAPLEN: &str = "TAP_SNAPLEN";
