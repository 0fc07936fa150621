//! Running `tap capture` inside a namespace, and reading the summary it prints when it ends.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use crate::{
    Netns,
    process::{Background, Exited},
    tap_bin,
};

/// What tap logs at info level once the programs are attached, the output is open and the ring
/// is being polled: from then on every packet is captured.
pub const READY: &str = "capturing";

/// Loading and attaching takes well under a second, but the verifier and a busy two-core machine
/// can stretch that: generous, still bounded.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Detach, drain and flush on SIGINT are quick; the bound only keeps a hung tap from hanging the
/// suite.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// `tap <global args> capture <args>` inside `ns`, with stdin and stdout closed and the caller's
/// `TAP_LOG` removed so the environment cannot change what tap prints.
pub fn command(ns: &Netns, global: &[&str], args: &[&str]) -> Command {
    let mut cmd = ns.cmd(&tap_bin().to_string_lossy());
    cmd.args(global)
        .arg("capture")
        .args(args)
        .env_remove("TAP_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

/// Starts `tap capture <args>` with info logs and returns once it is capturing.
pub fn start(ns: &Netns, args: &[&str]) -> Background {
    start_command(command(ns, &["--log", "info"], args))
}

/// Starts a tap command built with [`command`] (and `--log info`) and waits until it captures.
pub fn start_command(cmd: Command) -> Background {
    let mut tap = Background::spawn("tap", cmd);
    tap.wait_for_stderr(READY, START_TIMEOUT);
    tap
}

/// SIGINT, then the exit, which must be a success.
pub fn stop(tap: Background) -> Exited {
    let exited = tap.interrupt(STOP_TIMEOUT);
    assert!(
        exited.status.success(),
        "tap failed after SIGINT ({}):\n{}",
        exited.status,
        exited.stderr
    );
    exited
}

/// Runs tap to its end with default logging (errors only), e.g. for a case that must fail.
pub fn run(ns: &Netns, args: &[&str]) -> Exited {
    Background::spawn("tap", command(ns, &[], args)).wait(START_TIMEOUT)
}

/// A `tap capture` argument list, built rather than spelled out:
/// `Capture::on(&t.b_if).write(&out).args(&["--snaplen", "96", "icmp"])`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capture(Vec<String>);

impl Capture {
    /// `-i IFACE`.
    #[must_use]
    pub fn on(iface: &str) -> Self {
        Self(vec!["-i".into(), iface.into()])
    }

    /// `-w FILE` (or `-`).
    #[must_use]
    pub fn write(self, file: &str) -> Self {
        self.args(&["-w", file])
    }

    /// More arguments, as written.
    #[must_use]
    pub fn args(mut self, args: &[&str]) -> Self {
        self.0.extend(args.iter().map(ToString::to_string));
        self
    }

    /// The arguments, for [`command`], [`start`] and [`run`].
    #[must_use]
    pub fn to_args(&self) -> Vec<&str> {
        self.0.iter().map(String::as_str).collect()
    }

    /// Starts it with info logs and returns once it is capturing (see [`start`]).
    pub fn start(&self, ns: &Netns) -> Background {
        start(ns, &self.to_args())
    }

    /// Runs it to its end (see [`run`]).
    pub fn run(&self, ns: &Netns) -> Exited {
        run(ns, &self.to_args())
    }
}

/// The exit summary, in tcpdump's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// "N packets captured": packets written to the output.
    pub captured: u64,
    /// "M packets received by filter": packets the programs selected.
    pub received: u64,
    /// "K packets dropped by kernel (ring buffer full)".
    pub ring_dropped: u64,
    /// "W packets dropped by writer".
    pub writer_dropped: u64,
    /// Lines after the four above (e.g. packets left over after `-c`).
    pub extra: Vec<String>,
}

impl Summary {
    /// Parses the last summary in tap's stderr; panics, quoting stderr, when there is none.
    pub fn parse(stderr: &str) -> Self {
        let lines: Vec<&str> = stderr.lines().collect();
        let start = lines
            .iter()
            .rposition(|l| l.ends_with(" packets captured"))
            .unwrap_or_else(|| panic!("no summary in tap's stderr:\n{stderr}"));
        let number = |i: usize, suffix: &str| -> u64 {
            let line = lines
                .get(start + i)
                .unwrap_or_else(|| panic!("summary cut short:\n{stderr}"));
            line.strip_suffix(suffix)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| {
                    panic!("summary line {line:?} is not \"<n>{suffix}\":\n{stderr}")
                })
        };
        Self {
            captured: number(0, " packets captured"),
            received: number(1, " packets received by filter"),
            ring_dropped: number(2, " packets dropped by kernel (ring buffer full)"),
            writer_dropped: number(3, " packets dropped by writer"),
            extra: lines[start + 4..].iter().map(ToString::to_string).collect(),
        }
    }
}
