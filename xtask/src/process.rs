//! Background processes (a capture tool, a server) with their standard error collected, stopped
//! by a signal and reaped with their resource usage.

use std::{
    io::{BufRead as _, BufReader},
    os::unix::process::ExitStatusExt as _,
    process::{Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::util;

/// A child running in the background. Dropping it kills it (SIGKILL) and reaps it.
pub(crate) struct Background {
    what: String,
    pid: libc::pid_t,
    stderr: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    exited: Option<Exited>,
}

/// How a background process ended.
#[derive(Debug, Clone)]
pub(crate) struct Exited {
    pub status: ExitStatus,
    /// User plus system CPU time of the whole process (all its threads).
    pub cpu: Duration,
    /// The user part of `cpu`.
    pub user: Duration,
    /// Largest resident set size, in bytes.
    pub max_rss: u64,
    /// Times the process gave up the CPU to wait (voluntary context switches): its wake-ups.
    pub voluntary_switches: u64,
    /// Times it was preempted (involuntary context switches).
    pub involuntary_switches: u64,
    pub stderr: String,
}

impl Background {
    /// Starts `cmd` with standard input closed and standard error collected. Standard output is
    /// left as `cmd` has it.
    pub(crate) fn spawn(what: &str, cmd: &mut Command) -> Result<Self> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {what}: {cmd:?}"))?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&stderr);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut s = sink
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                s.push_str(&line);
                s.push('\n');
            }
        });
        // From here on the process is reaped with wait4 (for its resource usage), not by `child`.
        let pid = child.id() as libc::pid_t;
        Ok(Self {
            what: what.to_string(),
            pid,
            stderr,
            reader: Some(reader),
            exited: None,
        })
    }

    /// What the process wrote to standard error so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Waits until standard error contains `needle`; fails when the process exits first or the
    /// time runs out, with what it wrote.
    pub(crate) fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr().contains(needle) {
                return Ok(());
            }
            if let Some(exited) = self.try_reap()? {
                let exited = exited.clone();
                bail!(
                    "{} exited ({}) before saying '{needle}':\n{}",
                    self.what,
                    exited.status,
                    exited.stderr.trim_end()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not say '{needle}' within {timeout:?}:\n{}",
                    self.what,
                    self.stderr().trim_end()
                );
            }
            util::sleep(Duration::from_millis(20))?;
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// CPU time the process has used so far (all its threads), from `/proc/PID/task/*/schedstat`
    /// (nanoseconds of run time).
    pub(crate) fn cpu_now(&self) -> Result<Duration> {
        let dir = format!("/proc/{}/task", self.pid);
        let mut ns = 0u64;
        for task in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
            let path = task?.path().join("schedstat");
            // A thread that ended in between has nothing left to add.
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            ns += text
                .split_whitespace()
                .next()
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0);
        }
        Ok(Duration::from_nanos(ns))
    }

    /// Sends `signal`, waits up to `timeout` for the process to end (then kills it) and reaps it.
    pub(crate) fn stop(mut self, signal: libc::c_int, timeout: Duration) -> Result<Exited> {
        if self.exited.is_none() {
            // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
            unsafe { libc::kill(self.pid, signal) };
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exited) = self.try_reap()? {
                return Ok(exited.clone());
            }
            if Instant::now() > deadline {
                // SAFETY: as above.
                unsafe { libc::kill(self.pid, libc::SIGKILL) };
                let stderr = self.reap(0)?.map(|e| e.stderr.clone()).unwrap_or_default();
                bail!(
                    "{} did not stop within {timeout:?} and was killed:\n{}",
                    self.what,
                    stderr.trim_end()
                );
            }
            // Not util::sleep: an interrupt must not leave the process half stopped.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the process to end on its own, up to `timeout`.
    pub(crate) fn wait(mut self, timeout: Duration) -> Result<Exited> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exited) = self.try_reap()? {
                return Ok(exited.clone());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not finish within {timeout:?}:\n{}",
                    self.what,
                    self.stderr().trim_end()
                );
            }
            util::sleep(Duration::from_millis(10))?;
        }
    }

    fn try_reap(&mut self) -> Result<Option<&Exited>> {
        if self.exited.is_none() {
            self.reap(libc::WNOHANG)?;
        }
        Ok(self.exited.as_ref())
    }

    /// wait4 with `flags`; on an exit, collects the rest of standard error.
    fn reap(&mut self, flags: libc::c_int) -> Result<Option<&Exited>> {
        let mut status = 0;
        // SAFETY: rusage is plain data that wait4 fills in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let pid = loop {
            // SAFETY: valid pointers to locals; the pid is our child.
            let pid = unsafe { libc::wait4(self.pid, &raw mut status, flags, &raw mut usage) };
            if pid < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
                continue;
            }
            break pid;
        };
        if pid < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("waiting for {}", self.what));
        }
        if pid == 0 {
            return Ok(None);
        }
        if let Some(reader) = self.reader.take() {
            // The pipe closes with the process (unless it left a child holding it: then give up
            // on the rest rather than hang).
            let deadline = Instant::now() + Duration::from_secs(2);
            while !reader.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        self.exited = Some(Exited {
            status: ExitStatus::from_raw(status),
            cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
            user: tv(usage.ru_utime),
            // Linux reports kilobytes.
            max_rss: usage.ru_maxrss.max(0) as u64 * 1024,
            voluntary_switches: usage.ru_nvcsw.max(0) as u64,
            involuntary_switches: usage.ru_nivcsw.max(0) as u64,
            stderr: self.stderr(),
        });
        Ok(self.exited.as_ref())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.exited.is_none() {
            // SAFETY: as in stop.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = self.reap(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_collects_stderr_and_cpu() {
        let mut p = Background::spawn(
            "sh",
            Command::new("sh").args(["-c", "echo ready >&2; exec sleep 5"]),
        )
        .unwrap();
        p.wait_for_stderr("ready", Duration::from_secs(5)).unwrap();
        assert!(p.cpu_now().is_ok());
        let exited = p.stop(libc::SIGTERM, Duration::from_secs(5)).unwrap();
        assert_eq!(exited.status.signal(), Some(libc::SIGTERM));
        assert_eq!(exited.stderr, "ready\n");
    }

    #[test]
    fn early_exit_is_an_error_with_the_output() {
        let mut p = Background::spawn(
            "sh",
            Command::new("sh").args(["-c", "echo oops >&2; exit 3"]),
        )
        .unwrap();
        let err = p
            .wait_for_stderr("never", Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        assert!(err.contains("oops"), "{err}");
    }
}
