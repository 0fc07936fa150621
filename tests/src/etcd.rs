//! [`EtcdCluster`]: a three-member etcd cluster of the test's own (Debian's etcd 3.4), with its
//! own data directories and ports, stopped and removed on drop (also when the test panics).
//!
//! Members listen on loopback by default ([`EtcdCluster::start`]). A namespace's loopback is its
//! own, so tests whose agents run in other namespaces start the members inside a namespace of
//! their own on addresses those namespaces can route to ([`EtcdCluster::start_in`]).

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{Netns, TempDir, process::Background, unique_suffix};

/// Longest wait for the cluster to elect a leader and answer (etcd's default election timeout is
/// one second; a loaded machine stretches it).
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Member {
    name: String,
    client: String,
    peer: String,
    data: PathBuf,
    process: Option<Background>,
}

/// Three etcd members.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    token: String,
    netns: Option<String>,
    /// Holds the data directories; removed last.
    dir: TempDir,
}

/// A free TCP port on 127.0.0.1 (released before etcd binds it: another process could take it
/// in between, which would fail the start loudly, never silently).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl EtcdCluster {
    /// Three members on 127.0.0.1, on free ports.
    #[must_use]
    pub fn start() -> Self {
        let hosts: Vec<(String, String)> = (0..3)
            .map(|_| {
                (
                    format!("http://127.0.0.1:{}", free_port()),
                    format!("http://127.0.0.1:{}", free_port()),
                )
            })
            .collect();
        Self::launch(None, hosts)
    }

    /// Three members inside `ns`, on `addrs` (addresses the test has configured in `ns`, one per
    /// member), ports 2379 (clients) and 2380 (peers).
    #[must_use]
    pub fn start_in(ns: &Netns, addrs: [&str; 3]) -> Self {
        let hosts = addrs
            .iter()
            .map(|a| (format!("http://{a}:2379"), format!("http://{a}:2380")))
            .collect();
        Self::launch(Some(ns.name.clone()), hosts)
    }

    fn launch(netns: Option<String>, hosts: Vec<(String, String)>) -> Self {
        let dir = TempDir::new();
        let suffix = unique_suffix();
        let members: Vec<Member> = hosts
            .into_iter()
            .enumerate()
            .map(|(i, (client, peer))| Member {
                name: format!("m{i}"),
                client,
                peer,
                data: dir.join(&format!("m{i}.etcd")),
                process: None,
            })
            .collect();
        let mut cluster = Self {
            members,
            token: format!("tap-test-{suffix}"),
            netns,
            dir,
        };
        for i in 0..3 {
            cluster.start_member(i);
        }
        cluster.wait_healthy();
        cluster
    }

    fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        }
    }

    fn start_member(&mut self, i: usize) {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer))
            .collect();
        let m = &self.members[i];
        let mut cmd = self.command("etcd");
        cmd.args([
            "--name",
            &m.name,
            "--data-dir",
            &m.data.to_string_lossy(),
            "--listen-client-urls",
            &m.client,
            "--advertise-client-urls",
            &m.client,
            "--listen-peer-urls",
            &m.peer,
            "--initial-advertise-peer-urls",
            &m.peer,
            "--initial-cluster",
            &initial.join(","),
            "--initial-cluster-token",
            &self.token,
            "--initial-cluster-state",
            "new",
            "--logger",
            "zap",
            "--log-level",
            "error",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
        let what = format!("etcd {}", m.name);
        self.members[i].process = Some(Background::spawn(&what, cmd));
    }

    /// The client URLs of all members, comma-separated (for `--etcd` and `TAP_ETCD`).
    #[must_use]
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The client URLs of the members running now.
    #[must_use]
    pub fn running_endpoints(&self) -> String {
        self.members
            .iter()
            .filter(|m| m.process.is_some())
            .map(|m| m.client.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `etcdctl` (v3 API) against every member, in the cluster's namespace.
    #[must_use]
    pub fn etcdctl(&self) -> Command {
        let mut c = self.command("etcdctl");
        c.env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.endpoints())
            .arg("--command-timeout=5s")
            .arg("--dial-timeout=3s")
            .stdin(Stdio::null());
        c
    }

    /// Runs etcdctl with `args`; panics with its output when it fails.
    pub fn ctl(&self, args: &[&str]) -> String {
        crate::run_stdout(self.etcdctl().args(args))
    }

    /// The status of each running member: (index, is leader).
    fn statuses(&self) -> Option<Vec<(usize, bool)>> {
        let mut out = Vec::new();
        for (i, m) in self.members.iter().enumerate() {
            if m.process.is_none() {
                continue;
            }
            let o = self
                .command("etcdctl")
                .env("ETCDCTL_API", "3")
                .args([
                    "--endpoints",
                    &m.client,
                    "--command-timeout=2s",
                    "--dial-timeout=1s",
                ])
                .args(["endpoint", "status", "-w", "json"])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .ok()?;
            if !o.status.success() {
                return None;
            }
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
            let s = &v.get(0)?["Status"];
            let me = s["header"]["member_id"].as_u64()?;
            let leader = s["leader"].as_u64()?;
            if leader == 0 {
                return None;
            }
            out.push((i, me == leader));
        }
        Some(out)
    }

    /// Waits until every running member answers and one of them leads.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        loop {
            if let Some(s) = self.statuses() {
                if s.iter().filter(|(_, l)| *l).count() == 1 {
                    return;
                }
            }
            for m in &self.members {
                if let Some(p) = &m.process {
                    let err = p.stderr();
                    assert!(
                        !err.contains("bind: address already in use"),
                        "{} could not bind its ports:\n{err}",
                        m.name
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "the etcd cluster was not healthy within {HEALTH_TIMEOUT:?}; stderr:\n{}",
                self.members
                    .iter()
                    .filter_map(|m| m.process.as_ref().map(|p| format!(
                        "{}: {}",
                        m.name,
                        p.stderr()
                    )))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Index of the current leader.
    #[must_use]
    pub fn leader(&self) -> usize {
        self.wait_healthy();
        self.statuses()
            .and_then(|s| s.into_iter().find(|(_, l)| *l).map(|(i, _)| i))
            .expect("a leader after wait_healthy")
    }

    /// SIGKILLs the leader; returns its index. The other two elect a new one.
    pub fn kill_leader(&mut self) -> usize {
        let i = self.leader();
        self.kill(i);
        i
    }

    /// SIGKILLs member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(p) = self.members[i].process.take() {
            p.kill();
        }
    }

    /// Starts member `i` again on its data directory.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].process.is_none(), "member {i} is running");
        self.start_member(i);
    }

    /// Stops every member (SIGTERM, then SIGKILL after the bound).
    pub fn stop_all(&mut self) {
        for m in &mut self.members {
            if let Some(p) = m.process.take() {
                let _ = p.interrupt(Duration::from_secs(10));
            }
        }
    }

    /// Starts every stopped member again and waits for the cluster to be healthy.
    pub fn start_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].process.is_none() {
                self.start_member(i);
            }
        }
        self.wait_healthy();
    }

    /// Where the members keep their data.
    #[must_use]
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        // The Background guards kill the members; then TempDir removes the data.
        for m in &mut self.members {
            m.process.take();
        }
    }
}
