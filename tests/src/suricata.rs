//! A real Suricata 7 for the consumer tests, in any of the ways tap feeds it: reading a pcap
//! stream (`-r FIFO`), listening on an interface (`--af-packet=IFACE`), or taking files over its
//! unix socket (`--unix-socket=PATH`).
//!
//! Each instance gets a private directory with a minimal `suricata.yaml` (no unix command socket
//! unless asked for, no pid file, an eve log of alerts only) and two rules: [`SID_ICMP`] fires on
//! every ICMP echo request, [`SID_TOKEN`] on an HTTP request whose URI holds the test's token.
//! The process is killed (SIGKILL: a Suricata waiting on a FIFO nobody opens ignores SIGTERM) and
//! the directory removed on drop, also when the test panics.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use crate::{
    Netns, TempDir,
    process::{Background, Exited},
    run_stdout, unique_suffix, wait_until,
};

/// Rule id of the alert on ICMP echo requests.
pub const SID_ICMP: u32 = 1_000_001;
/// Rule id of the alert on an HTTP URI holding the token.
pub const SID_TOKEN: u32 = 1_000_002;

/// Suricata logs this (on standard output) once its threads run, in every mode.
const ENGINE_STARTED: &str = "Engine started";

/// Startup is a second or two here; the bound keeps a hung start from hanging the suite.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Alerts follow the traffic within a second or two (eve is flushed per packet batch).
pub const ALERT_TIMEOUT: Duration = Duration::from_secs(30);

/// Fails the test unless Suricata 7 is installed: these tests exist to run the real thing.
pub fn require_suricata() {
    let out = Command::new("suricata").arg("-V").output();
    let version = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => panic!(
            "`suricata -V` failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "Suricata is not installed ({e}): `cargo xtask setup` installs it (bookworm-backports)"
        ),
    };
    assert!(
        version.contains("version 7."),
        "these tests are written for Suricata 7, found: {version}"
    );
}

/// A token no other run (nor a stale log) can contain, for [`SID_TOKEN`] to look for.
pub fn unique_token() -> String {
    format!("tap-token-{}", unique_suffix())
}

/// The eve-log output of [`config`]: alerts into `eve.json` in the log directory, with each
/// flow's Community ID (`community_id`).
const EVE_FILE: &str = "  - eve-log:
      enabled: yes
      filetype: regular
      filename: eve.json
      community-id: true
      types:
        - alert
";

/// The configuration: what a minimal deployment sets, with every path inside `dir`.
fn config(dir: &Path, log_dir: &Path) -> String {
    config_with_outputs(dir, log_dir, EVE_FILE)
}

/// [`config`] with `outputs` (YAML list items under `outputs:`) instead of its eve-log.
fn config_with_outputs(dir: &Path, log_dir: &Path, outputs: &str) -> String {
    // AF_PACKET fanout groups are per namespace, yet two instances may share one: each gets a
    // cluster id of its own. The ring is enlarged: with the default one, a burst of injected
    // frames outruns the single worker and Suricata loses packets.
    let cluster = 1000 + std::process::id() % 30_000 + instance_number();
    format!(
        r#"%YAML 1.1
---
vars:
  address-groups:
    HOME_NET: "any"
    EXTERNAL_NET: "any"
  port-groups:
    HTTP_PORTS: "any"
    VXLAN_PORTS: "4789"
    GENEVE_PORTS: "6081"
default-log-dir: {log}
default-rule-path: {dir}
classification-file: {dir}/classification.config
outputs:
{outputs}logging:
  default-log-level: notice
  outputs:
    - console:
        enabled: yes
    - file:
        enabled: yes
        level: info
        filename: suricata.log
app-layer:
  protocols:
    http:
      enabled: yes
decoder:
  vxlan:
    enabled: true
    ports: $VXLAN_PORTS
unix-command:
  enabled: no
af-packet:
  - interface: default
    threads: 1
    cluster-id: {cluster}
    cluster-type: cluster_flow
    defrag: yes
    use-mmap: yes
    ring-size: 16384
"#,
        log = log_dir.display(),
        dir = dir.display(),
    )
}

/// Where an offline run's eve-log outputs write, each with `community-id: true`.
#[derive(Debug, Clone)]
pub enum Eve {
    /// `eve.json` in the log directory, appended to.
    File,
    /// A unix socket someone listens on (`filetype: unix_stream`).
    UnixStream(PathBuf),
}

/// Runs `suricata -r PCAP -k none` to its end with `rules`, logging into `log_dir` through
/// `eve`, and returns what it printed. Panics when it fails or takes longer than
/// [`START_TIMEOUT`].
pub fn run_offline(pcap: &Path, log_dir: &Path, rules: &str, eve: &[Eve]) -> String {
    require_suricata();
    let dir = TempDir::new();
    let outputs: String = eve
        .iter()
        .map(|e| {
            let (filetype, filename) = match e {
                Eve::File => ("regular", "eve.json".to_string()),
                Eve::UnixStream(p) => ("unix_stream", p.display().to_string()),
            };
            format!(
                "  - eve-log:\n      enabled: yes\n      filetype: {filetype}\n      filename: {filename}\n      community-id: true\n      types:\n        - alert\n"
            )
        })
        .collect();
    std::fs::write(
        dir.join("suricata.yaml"),
        config_with_outputs(dir.path(), log_dir, &outputs),
    )
    .expect("writing suricata.yaml");
    std::fs::write(dir.join("tap.rules"), rules).expect("writing the rules");
    std::fs::write(dir.join("classification.config"), "").expect("writing classification");
    let cmd = Suricata::command(
        None,
        &dir,
        log_dir,
        &["-r", pcap.to_str().expect("UTF-8 path"), "-k", "none"],
    );
    let exited =
        Background::spawn_collecting_stdout("suricata -r (offline)", cmd).wait(START_TIMEOUT);
    let said = format!("{}{}", exited.stdout, exited.stderr);
    assert!(
        exited.status.success(),
        "suricata -r failed ({}):\n{said}",
        exited.status
    );
    said
}

/// A number that differs between the instances of one test process.
fn instance_number() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The two rules; `token` is what the URI must hold.
fn rules(token: &str) -> String {
    format!(
        "alert icmp any any -> any any (msg:\"tap test: ICMP echo request\"; itype:8; sid:{SID_ICMP}; rev:1;)\n\
         alert http any any -> any any (msg:\"tap test: token in the URI\"; flow:established,to_server; \
         http.uri; content:\"{token}\"; sid:{SID_TOKEN}; rev:1;)\n"
    )
}

/// One Suricata process and its private directory.
#[derive(Debug)]
pub struct Suricata {
    process: Option<Background>,
    /// Configuration, rules and (unless told otherwise) logs.
    dir: TempDir,
    /// Where eve.json goes (the unix-socket mode writes each file's results to the directory the
    /// client names instead).
    pub log_dir: PathBuf,
}

impl Suricata {
    /// Writes the configuration for `token` into a fresh directory.
    fn prepare(token: &str) -> (TempDir, PathBuf) {
        require_suricata();
        let dir = TempDir::new();
        let log_dir = dir.join("log");
        std::fs::create_dir_all(&log_dir).expect("creating Suricata's log dir");
        std::fs::write(dir.join("suricata.yaml"), config(dir.path(), &log_dir))
            .expect("writing suricata.yaml");
        std::fs::write(dir.join("tap.rules"), rules(token)).expect("writing the rules");
        // An empty classification file keeps Suricata from reading the system one.
        std::fs::write(dir.join("classification.config"), "").expect("writing classification");
        (dir, log_dir)
    }

    /// `suricata -c CONF -S RULES -l LOG <mode...>`, in `ns` when given.
    fn command(ns: Option<&Netns>, dir: &TempDir, log_dir: &Path, mode: &[&str]) -> Command {
        let mut cmd = match ns {
            Some(ns) => ns.cmd("suricata"),
            None => Command::new("suricata"),
        };
        cmd.arg("-c")
            .arg(dir.join("suricata.yaml"))
            .arg("-S")
            .arg(dir.join("tap.rules"))
            .arg("-l")
            .arg(log_dir)
            .args(mode)
            .stdin(Stdio::null());
        cmd
    }

    /// `suricata -r SOURCE` (a named pipe, `/dev/stdin`): reads a pcap stream live. It opens the
    /// source in the background; call [`Suricata::wait_started`] once a writer is there (opening
    /// a FIFO waits for one). `extra`: more options, e.g. `-k none`.
    pub fn read(ns: Option<&Netns>, source: &Path, token: &str, extra: &[&str]) -> Self {
        let (dir, log_dir) = Self::prepare(token);
        let mut mode = vec!["-r", source.to_str().expect("UTF-8 path")];
        mode.extend_from_slice(extra);
        let cmd = Self::command(ns, &dir, &log_dir, &mode);
        let process = Background::spawn_collecting_stdout("suricata -r", cmd);
        Self {
            process: Some(process),
            dir,
            log_dir,
        }
    }

    /// `suricata --af-packet=IFACE` inside `ns`; returns once it listens on the interface.
    pub fn af_packet(ns: &Netns, iface: &str, token: &str, extra: &[&str]) -> Self {
        let (dir, log_dir) = Self::prepare(token);
        let af = format!("--af-packet={iface}");
        let mut mode = vec![af.as_str()];
        mode.extend_from_slice(extra);
        let cmd = Self::command(Some(ns), &dir, &log_dir, &mode);
        let mut s = Self {
            process: Some(Background::spawn_collecting_stdout(
                "suricata --af-packet",
                cmd,
            )),
            dir,
            log_dir,
        };
        s.wait_started();
        // The engine starts its capture threads before they have bound their sockets: wait until
        // a packet socket on the interface is running, so no early frame goes unseen.
        let ifindex = ns
            .sh(&format!("cat /sys/class/net/{iface}/ifindex"))
            .trim()
            .to_string();
        let pid = s.pid();
        wait_until(
            &format!("Suricata's AF_PACKET socket on {iface}"),
            START_TIMEOUT,
            || {
                let inodes = ns.sh(&format!(
                    "awk 'NR > 1 && $5 == {ifindex} && $6 == 1 {{ print $9 }}' /proc/net/packet"
                ));
                inodes
                    .split_whitespace()
                    .any(|inode| owns_socket(pid, inode))
                    .then_some(())
            },
        );
        s
    }

    /// `suricata --unix-socket=PATH`: the socket is `self.dir/suricata.sock`, or `socket` when
    /// given (a restarted instance taking over its predecessor's path). Returns once the socket
    /// answers the handshake.
    pub fn unix_socket(token: &str, socket: Option<&Path>) -> Self {
        let (dir, log_dir) = Self::prepare(token);
        let path = socket.map_or_else(|| dir.join("suricata.sock"), Path::to_path_buf);
        let arg = format!("--unix-socket={}", path.display());
        let cmd = Self::command(None, &dir, &log_dir, &[&arg]);
        let mut s = Self {
            process: Some(Background::spawn_collecting_stdout(
                "suricata --unix-socket",
                cmd,
            )),
            dir,
            log_dir,
        };
        s.wait_started();
        wait_until("Suricata's unix socket", START_TIMEOUT, || {
            command_reply(&path, &[]).ok().map(|_| ())
        });
        s
    }

    /// The default unix socket of [`Suricata::unix_socket`].
    pub fn socket(&self) -> PathBuf {
        self.dir.join("suricata.sock")
    }

    pub fn pid(&self) -> i32 {
        self.process.as_ref().expect("running").pid()
    }

    /// Waits for the engine to start (panics with Suricata's output if it exits first).
    pub fn wait_started(&mut self) {
        self.process
            .as_mut()
            .expect("running")
            .wait_for_stdout(ENGINE_STARTED, START_TIMEOUT);
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        self.process.as_mut().is_some_and(Background::running)
    }

    /// What Suricata printed so far (its log goes to standard output, errors to both).
    pub fn output(&self) -> String {
        self.process
            .as_ref()
            .map(|p| format!("{}{}", p.stdout(), p.stderr()))
            .unwrap_or_default()
    }

    /// `eve.json` in the log directory.
    pub fn eve(&self) -> PathBuf {
        self.log_dir.join("eve.json")
    }

    /// Waits until `eve` holds an ICMP alert and the alert on an HTTP URL holding `token`;
    /// returns the alerts.
    pub fn wait_icmp_and_token(&mut self, eve: &Path, token: &str) -> Vec<Alert> {
        self.wait_alerts(
            eve,
            &format!("the ICMP alert and the alert on {token}"),
            |alerts| {
                alerts.iter().any(|a| a.sid == u64::from(SID_ICMP)) && has_token(alerts, token)
            },
        )
    }

    /// Waits until `eve` holds the alert on an HTTP URL holding `token`; returns the alerts.
    pub fn wait_token(&mut self, eve: &Path, token: &str) -> Vec<Alert> {
        self.wait_alerts(eve, &format!("the alert on {token}"), |alerts| {
            has_token(alerts, token)
        })
    }

    /// Waits until the alerts in `eve` satisfy `done`, at most [`ALERT_TIMEOUT`] (or until
    /// Suricata exits); panics with the log and Suricata's output when they do not.
    fn wait_alerts(
        &mut self,
        eve: &Path,
        what: &str,
        done: impl Fn(&[Alert]) -> bool,
    ) -> Vec<Alert> {
        let found = || {
            let alerts = alerts(eve);
            done(&alerts).then_some(alerts)
        };
        let deadline = std::time::Instant::now() + ALERT_TIMEOUT;
        loop {
            if let Some(alerts) = found() {
                return alerts;
            }
            if std::time::Instant::now() > deadline || !self.running() {
                // One last look: the alerts may have landed as it exited.
                if let Some(alerts) = found() {
                    return alerts;
                }
                panic!(
                    "no {what} in {} within {ALERT_TIMEOUT:?} (Suricata {}):\n\
                     eve.json:\n{}\nSuricata said:\n{}",
                    eve.display(),
                    if self.running() { "running" } else { "exited" },
                    std::fs::read_to_string(eve).unwrap_or_else(|e| format!("({e})")),
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for Suricata to exit by itself (e.g. at the end of its pcap stream).
    pub fn wait_exit(&mut self, timeout: Duration) -> Exited {
        self.process.take().expect("running").wait(timeout)
    }

    /// Kills the process (SIGKILL) and returns how it ended; the directory stays until drop.
    pub fn kill(&mut self) -> Exited {
        self.process.take().expect("running").kill()
    }
}

/// True when one of `alerts` is the token rule's, on a URL holding `token`.
fn has_token(alerts: &[Alert], token: &str) -> bool {
    alerts.iter().any(|a| {
        a.sid == u64::from(SID_TOKEN) && a.url.as_deref().is_some_and(|u| u.contains(token))
    })
}

/// One alert of an eve log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The rule's `sid`.
    pub sid: u64,
    pub src_ip: String,
    pub dest_ip: String,
    /// The HTTP URL of the transaction, for alerts on HTTP.
    pub url: Option<String>,
}

/// The alerts in an eve log; a line still being written is skipped.
pub fn alerts(eve: &Path) -> Vec<Alert> {
    let text = std::fs::read_to_string(eve).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event_type"] == "alert")
        .filter_map(|v| {
            let text = |x: &serde_json::Value| x.as_str().map(ToString::to_string);
            Some(Alert {
                sid: v["alert"]["signature_id"].as_u64()?,
                src_ip: text(&v["src_ip"]).unwrap_or_default(),
                dest_ip: text(&v["dest_ip"]).unwrap_or_default(),
                url: text(&v["http"]["url"]),
            })
        })
        .collect()
}

/// True when process `pid` holds the socket of inode `inode`.
fn owns_socket(pid: i32, inode: &str) -> bool {
    let target = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == target))
    })
}

/// Sends `commands` (JSON texts) over Suricata's unix socket after the handshake and returns
/// the replies, one per command.
pub fn command_reply(socket: &Path, commands: &[&str]) -> std::io::Result<Vec<String>> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut replies = Vec::new();
    for c in std::iter::once("{\"version\": \"0.2\"}").chain(commands.iter().copied()) {
        writer.write_all(c.as_bytes())?;
        writer.write_all(b"\n")?;
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.is_empty() {
            return Err(std::io::Error::other("Suricata closed the socket"));
        }
        replies.push(line.trim().to_string());
    }
    // The handshake's reply is not one of the caller's.
    replies.remove(0);
    Ok(replies)
}

/// Suricata's version line, for reports.
pub fn version() -> String {
    run_stdout(Command::new("suricata").arg("-V"))
        .trim()
        .to_string()
}
