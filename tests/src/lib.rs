//! Test support for tap's integration tests: throwaway network namespaces joined by veth pairs,
//! the tap binary, and the external oracles (tcpdump, tshark, Suricata).
//!
//! Everything privileged fails loudly when it cannot run (not root, no netns): a test never skips.
//! Every wait is bounded; every process and namespace is owned by a guard that cleans up on drop,
//! also when the test panics.

pub mod agent;
pub mod bpf;
pub mod corpus;
pub mod etcd;
pub mod oracle;
pub mod pcap;
pub mod print_frames;
pub mod process;
pub mod sessions;
pub mod storage_util;
pub mod store;
pub mod suricata;
pub mod tap;
pub mod topology;
pub mod traffic;
pub mod tunnels;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
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
    let profile_dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("test binary in target/<profile>/deps");
    let candidate = profile_dir.join("tap");
    assert!(
        candidate.exists(),
        "tap binary not found at {}: run `cargo xtask build` or set TAP_BIN",
        candidate.display()
    );
    candidate
}

/// Fails the test unless running as root: privileged tests must not skip silently.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (network namespaces, BPF): run it as root, e.g. via `cargo xtask test`"
    );
}

/// Runs a command to completion and panics with its stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let desc = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    assert!(
        out.status.success(),
        "{desc} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command to completion, panicking when it fails, and returns its stdout as text.
pub fn run_stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run_ok(cmd).stdout).into_owned()
}

/// A unique short suffix for names (namespaces, interfaces ≤ 15 chars).
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{:x}", std::process::id() % 0xfffff, n)
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `timeout`; panics naming
/// `what` when time runs out.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A scratch directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("tap-tests-{}", unique_suffix()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        Self { path }
    }

    /// A directory anyone may write to (sticky, like /tmp): for runs as an unprivileged user, so
    /// that a missing output file means tap did not create it, not that it could not.
    pub fn world_writable() -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = Self::new();
        std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o1777))
            .expect("chmod scratch dir");
        dir
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
