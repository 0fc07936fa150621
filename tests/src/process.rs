//! [`Background`]: a child process owned by a guard. Its stderr (and on request its stdout) is
//! collected while it runs, so a test can wait for a readiness line; every wait is bounded; a
//! process still running when the guard drops (a failed assertion, a panic) is killed.

use std::{
    io::Read,
    process::{Child, ChildStdout, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// Output of a stream, filled by a reader thread until EOF.
#[derive(Default)]
struct Collected {
    bytes: Mutex<Vec<u8>>,
    eof: AtomicBool,
}

impl Collected {
    fn start(mut from: impl Read + Send + 'static) -> Arc<Self> {
        let sink = Arc::new(Self::default());
        let writer = Arc::clone(&sink);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                writer.bytes.lock().unwrap().extend_from_slice(&buf[..n]);
            }
            writer.eof.store(true, Ordering::Release);
        });
        sink
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }
}

impl std::fmt::Debug for Collected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

/// How a [`Background`] process ended.
#[derive(Debug)]
pub struct Exited {
    pub status: ExitStatus,
    /// Collected stdout (empty unless the process was spawned with stdout collection).
    pub stdout: String,
    pub stderr: String,
    /// From spawn to the observed exit.
    pub elapsed: Duration,
}

/// A running child process; killed (SIGKILL) on drop if still running.
#[derive(Debug)]
pub struct Background {
    what: String,
    child: Child,
    started: Instant,
    stderr: Arc<Collected>,
    stdout: Option<Arc<Collected>>,
}

impl Background {
    /// Spawns `cmd` with stderr collected. Stdin and stdout stay as the caller set them.
    pub fn spawn(what: &str, cmd: Command) -> Self {
        Self::spawn_inner(what, cmd, false)
    }

    /// Spawns `cmd` with both stdout and stderr collected.
    pub fn spawn_collecting_stdout(what: &str, cmd: Command) -> Self {
        Self::spawn_inner(what, cmd, true)
    }

    fn spawn_inner(what: &str, mut cmd: Command, collect_stdout: bool) -> Self {
        cmd.stderr(Stdio::piped());
        if collect_stdout {
            cmd.stdout(Stdio::piped());
        }
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what} ({cmd:?}): {e}"));
        let stderr = Collected::start(child.stderr.take().expect("stderr piped"));
        let stdout =
            collect_stdout.then(|| Collected::start(child.stdout.take().expect("stdout piped")));
        Self {
            what: what.to_string(),
            child,
            started,
            stderr,
            stdout,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The child's stdout, for piping into another process (spawned with `Stdio::piped()`).
    pub fn take_stdout(&mut self) -> ChildStdout {
        self.child
            .stdout
            .take()
            .expect("stdout was piped and not taken yet")
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// What the process wrote to stdout so far (with stdout collection).
    pub fn stdout(&self) -> String {
        self.stdout
            .as_ref()
            .expect("spawned without stdout collection")
            .text()
    }

    /// True while the process has not exited.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until stderr contains `needle`; panics (with the stderr so far) on timeout or when
    /// the process exits first.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) {
        self.wait_for_text(needle, timeout, false);
    }

    /// Waits until stdout (collected) contains `needle`.
    pub fn wait_for_stdout(&mut self, needle: &str, timeout: Duration) {
        self.wait_for_text(needle, timeout, true);
    }

    fn wait_for_text(&mut self, needle: &str, timeout: Duration, stdout: bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let text = if stdout { self.stdout() } else { self.stderr() };
            if text.contains(needle) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // It may have printed the line just before exiting.
                self.wait_eof();
                let text = if stdout { self.stdout() } else { self.stderr() };
                assert!(
                    text.contains(needle),
                    "{} exited ({status}) before printing {needle:?}:\nstdout: {}\nstderr: {}",
                    self.what,
                    self.stdout.as_ref().map(|s| s.text()).unwrap_or_default(),
                    self.stderr()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not print {needle:?} within {timeout:?}; stderr so far:\n{}",
                self.what,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (e.g. `libc::SIGINT`) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory preconditions; the pid is our unreaped child, so it cannot
        // have been recycled for another process.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(
            rc,
            0,
            "kill({}, {signal}) on {}: {}",
            self.pid(),
            self.what,
            std::io::Error::last_os_error()
        );
    }

    /// Waits for the process to exit by itself, at most `timeout`; on timeout it is killed and
    /// the test fails.
    pub fn wait(mut self, timeout: Duration) -> Exited {
        let what = self.what.clone();
        let status = {
            let child = &mut self.child;
            let deadline = Instant::now() + timeout;
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => break status,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Ok(None) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!(
                            "{what} did not exit within {timeout:?}; stderr:\n{}",
                            self.stderr.text()
                        );
                    }
                    Err(e) => panic!("waiting for {what}: {e}"),
                }
            }
        };
        let elapsed = self.started.elapsed();
        self.wait_eof();
        Exited {
            status,
            stdout: self.stdout.as_ref().map(|s| s.text()).unwrap_or_default(),
            stderr: self.stderr.text(),
            elapsed,
        }
    }

    /// Lets the output readers reach EOF, which follows the exit unless a grandchild still holds
    /// the pipe: bounded, so such a grandchild cannot hang the test.
    fn wait_eof(&self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        let eof = |s: &Collected| s.eof.load(Ordering::Acquire);
        while !(eof(&self.stderr) && self.stdout.as_deref().is_none_or(eof))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGINT, then [`Background::wait`].
    pub fn interrupt(self, timeout: Duration) -> Exited {
        self.signal(libc::SIGINT);
        self.wait(timeout)
    }

    /// SIGKILL, then [`Background::wait`].
    pub fn kill(self) -> Exited {
        self.signal(libc::SIGKILL);
        self.wait(Duration::from_secs(10))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How a process run by [`run_measured`] ended, and the most memory it held.
#[derive(Debug)]
pub struct Measured {
    pub status: ExitStatus,
    pub stderr: String,
    /// Peak resident memory (`ru_maxrss` of wait4), KiB.
    pub max_rss_kib: u64,
    pub elapsed: Duration,
}

/// Runs `cmd` to its end, at most `timeout` (killed and failing the test past it), collecting
/// its stderr and its peak resident memory. `ip netns exec` and `prlimit` exec the program they
/// run, so the process measured is that program.
pub fn run_measured(what: &str, mut cmd: Command, timeout: Duration) -> Measured {
    use std::os::unix::process::ExitStatusExt as _;
    cmd.stderr(Stdio::piped())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let started = Instant::now();
    #[expect(
        clippy::zombie_processes,
        reason = "reaped by wait4 below, which also gives its resource usage"
    )]
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what} ({cmd:?}): {e}"));
    let stderr = Collected::start(child.stderr.take().expect("stderr piped"));
    let pid = child.id() as i32;
    let deadline = started + timeout;
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain old data for wait4 to fill.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers; the pid is our own unreaped child.
        let rc = unsafe { libc::wait4(pid, &raw mut status, libc::WNOHANG, &raw mut usage) };
        assert!(
            rc >= 0,
            "wait4 on {what}: {}",
            std::io::Error::last_os_error()
        );
        if rc == pid {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !stderr.eof.load(Ordering::Acquire) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            return Measured {
                status: ExitStatus::from_raw(status),
                stderr: stderr.text(),
                max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
                elapsed: started.elapsed(),
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not end within {timeout:?}; stderr:\n{}",
                stderr.text()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The peak resident memory of a running process (`VmHWM`), KiB.
pub fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"))
}

/// Descriptors a running process has open now.
pub fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Runs `cmd` to its end with stdin closed and both outputs collected, at most `timeout`
/// (killed and failing the test past it); panics naming `what` unless it succeeds. For helper
/// programs (a scripted client, `tcpdump -r`) that must not be able to hang a test.
pub fn run_bounded(what: &str, mut cmd: Command, timeout: Duration) -> Exited {
    cmd.stdin(Stdio::null());
    let exited = Background::spawn_collecting_stdout(what, cmd).wait(timeout);
    assert!(
        exited.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        exited.status,
        exited.stdout,
        exited.stderr
    );
    exited
}
