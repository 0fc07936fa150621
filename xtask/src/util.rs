//! Small process helpers.

use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

pub(crate) fn cmd(program: &str) -> Command {
    Command::new(program)
}

/// Runs a command, inheriting stdio; fails on a non-zero exit.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let desc = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {desc}"))?;
    if !status.success() {
        bail!("{desc} failed: {status}");
    }
    Ok(())
}

/// Runs a command and returns its standard output; fails on a non-zero exit.
pub(crate) fn output(cmd: &mut Command) -> Result<String> {
    let desc = format!("{cmd:?}");
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting {desc}"))?;
    if !out.status.success() {
        bail!("{desc} failed: {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True when `program` is on PATH.
pub(crate) fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Set by SIGINT or SIGTERM once [`catch_interrupts`] ran.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_interrupt(_signal: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// From now on SIGINT and SIGTERM only set a flag, which [`check_interrupted`] turns into an
/// error: the command unwinds and its guards (namespaces, files) clean up. A Ctrl-C reaches the
/// children too (same process group), and they keep the default handling: handlers do not
/// survive exec.
pub(crate) fn catch_interrupts() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(
                signal,
                on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
}

/// Fails once SIGINT or SIGTERM arrived (see [`catch_interrupts`]).
pub(crate) fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps for `d`, failing early when interrupted.
pub(crate) fn sleep(d: std::time::Duration) -> Result<()> {
    let end = std::time::Instant::now() + d;
    loop {
        check_interrupted()?;
        let left = end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(std::time::Duration::from_millis(20)));
    }
}

/// Fails unless running as root.
pub(crate) fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} needs root (network namespaces, BPF): run it with sudo");
    }
    Ok(())
}

/// Two throwaway namespaces joined by a veth pair (see [`tap_tests::Topology`]), removed when
/// dropped, also on an error or a panic. The topology reports its failures by panicking (it is
/// test support): that becomes an error here, after the panic message.
pub(crate) fn topology() -> Result<tap_tests::Topology> {
    std::panic::catch_unwind(tap_tests::Topology::new).map_err(|_| {
        anyhow::anyhow!("creating the network namespaces failed (see the message above)")
    })
}

/// Runs `program` inside `ns` and returns its standard output; fails on a non-zero exit.
pub(crate) fn ns_output(ns: &tap_tests::Netns, program: &str, args: &[&str]) -> Result<String> {
    output(ns.cmd(program).args(args))
}
