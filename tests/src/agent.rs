//! Running `tap agent` inside a namespace: start it from a configuration file, wait for its
//! taps, talk to it with `tap ctl`, scrape its metrics, stop it. Used by tests/tests/agent.rs and
//! `cargo xtask soak`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::{
    Netns,
    process::{Background, Exited},
    tap::{START_TIMEOUT, STOP_TIMEOUT},
    tap_bin, wait_until,
};

/// What the agent logs at info level once every tap has been started.
pub const READY: &str = "agent ready";

/// A running agent, killed on drop if still running.
#[derive(Debug)]
pub struct Agent {
    pub process: Background,
    pub config: PathBuf,
    pub socket: PathBuf,
}

impl Agent {
    /// Starts `tap --log info agent --config CONFIG` in `ns` and waits until it is ready.
    /// `socket`: the control socket the file names.
    pub fn start(ns: &Netns, config: &Path, socket: &Path) -> Self {
        Self::start_with(ns.cmd(&tap_bin().to_string_lossy()), config, socket)
    }

    /// As [`Agent::start`], with the command to run tap given (e.g. under setpriv).
    pub fn start_with(mut cmd: Command, config: &Path, socket: &Path) -> Self {
        cmd.args(["--log", "info", "agent", "--config"])
            .arg(config)
            .env_remove("TAP_LOG")
            .env_remove("TAP_LOG_FORMAT")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let mut process = Background::spawn("tap agent", cmd);
        process.wait_for_stderr(READY, START_TIMEOUT);
        Self {
            process,
            config: config.to_path_buf(),
            socket: socket.to_path_buf(),
        }
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// Waits until stderr holds `needle` at least `n` times.
    pub fn wait_for_count(&mut self, needle: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.process.stderr();
            if text.matches(needle).count() >= n {
                return;
            }
            assert!(
                self.process.running(),
                "tap agent exited before printing {needle:?} {n} times:\n{text}"
            );
            assert!(
                Instant::now() < deadline,
                "tap agent did not print {needle:?} {n} times within {timeout:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until a tap logs its line `message` (e.g. "capturing"), `n` times in all.
    pub fn wait_for_tap(&mut self, tap: &str, message: &str, n: usize) {
        self.wait_for_count(&format!("tap{{name={tap}}}: {message}"), n, START_TIMEOUT);
    }

    /// SIGHUP: reload the file.
    pub fn hangup(&self) {
        self.process.signal(libc::SIGHUP);
    }

    /// `tap ctl --socket SOCKET ARGS...` (from the initial namespace: the socket is a file).
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(tap_bin())
            .arg("ctl")
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .env_remove("TAP_LOG")
            .stdin(Stdio::null())
            .output()
            .expect("running tap ctl")
    }

    /// `tap ctl status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let out = self.ctl(&["status", "--json"]);
        assert!(
            out.status.success(),
            "tap ctl status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("tap ctl status --json prints JSON")
    }

    /// The status of tap `name`.
    pub fn tap_status(&self, name: &str) -> serde_json::Value {
        let status = self.status();
        status["taps"]
            .as_array()
            .and_then(|taps| taps.iter().find(|t| t["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no tap {name} in the status: {status}"))
    }

    /// Interfaces tap `name` is attached to now (each once, in order).
    pub fn attached(&self, name: &str) -> Vec<String> {
        let mut names: Vec<String> = self.tap_status(name)["stats"]["attachments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["interface"].as_str().map(str::to_string))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Waits until tap `name` is attached to exactly `want` (sorted names).
    pub fn wait_attached(&self, name: &str, want: &[&str]) {
        wait_until(
            &format!("tap {name} attached to {want:?}"),
            Duration::from_secs(15),
            || (self.attached(name) == want).then_some(()),
        );
    }

    /// SIGTERM, then the exit, which must be a success.
    pub fn stop(self) -> Exited {
        self.process.signal(libc::SIGTERM);
        let exited = self.process.wait(STOP_TIMEOUT);
        assert!(
            exited.status.success(),
            "tap agent failed after SIGTERM ({}):\n{}",
            exited.status,
            exited.stderr
        );
        exited
    }
}

/// One scrape of a metrics endpoint: `name{labels}` → value.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub samples: BTreeMap<String, f64>,
    pub text: String,
}

impl Metrics {
    /// Parses the OpenMetrics / Prometheus text format (comments and `# EOF` skipped).
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (name, value) = l
                    .rsplit_once(' ')
                    .unwrap_or_else(|| panic!("metric line {l:?}"));
                (
                    name.to_string(),
                    value
                        .parse()
                        .unwrap_or_else(|_| panic!("metric value in {l:?}")),
                )
            })
            .collect();
        Self {
            samples,
            text: text.to_string(),
        }
    }

    /// The value of `name{labels}`; labels as `k="v"` joined by commas, in the order exported.
    pub fn get(&self, name: &str, labels: &str) -> Option<f64> {
        let key = if labels.is_empty() {
            name.to_string()
        } else {
            format!("{name}{{{labels}}}")
        };
        self.samples.get(&key).copied()
    }

    /// A per-tap counter (`tap="NAME"` its only label) as an integer; panics when absent.
    pub fn tap(&self, name: &str, tap: &str) -> u64 {
        self.get(name, &format!("tap=\"{tap}\""))
            .unwrap_or_else(|| panic!("no {name}{{tap=\"{tap}\"}} in:\n{}", self.text))
            as u64
    }
}

/// GET http://ADDR/metrics from inside `ns` (curl), parsed.
pub fn scrape(ns: &Netns, addr: &str) -> Metrics {
    let out = crate::run_ok(ns.cmd("curl").args([
        "-sS",
        "--max-time",
        "10",
        &format!("http://{addr}/metrics"),
    ]));
    Metrics::parse(&String::from_utf8_lossy(&out.stdout))
}
