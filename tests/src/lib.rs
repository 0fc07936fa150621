//! Test support for tap's integration tests: throwaway network namespaces joined by veth pairs,
//! the tap binary, and the external oracles (tcpdump, tshark).
//!
//! Everything privileged fails loudly when it cannot run (not root, no netns): a test never skips.

pub mod pcap;
pub mod topology;

use std::{
    path::PathBuf,
    process::{Command, Output},
};

pub use topology::{Netns, Topology};

/// Path of the `tap` binary under test: `$TAP_BIN`, else the release then debug build next to
/// this test executable.
pub fn tap_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TAP_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> → target/<profile>/tap
    let profile_dir = exe.parent().and_then(|p| p.parent()).expect("test binary in target/<profile>/deps");
    let candidate = profile_dir.join("tap");
    assert!(candidate.exists(), "tap binary not found at {}: run `cargo xtask build` or set TAP_BIN", candidate.display());
    candidate
}

/// Fails the test unless running as root: privileged tests must not skip silently.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "this test needs root (network namespaces, BPF): run it as root, e.g. via `cargo xtask test`");
}

/// Runs a command to completion and panics with its stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let desc = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    assert!(
        out.status.success(),
        "{desc} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A unique short suffix for names (namespaces, interfaces ≤ 15 chars).
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{:x}", std::process::id() % 0xfffff, n)
}
