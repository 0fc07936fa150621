//! `tap agent` with `[fleet]`: two "hypervisor" namespaces, each with a Linux bridge and its own
//! agent, a "VM" namespace plugged into a bridge by veth, a collector namespace with a Linux
//! VXLAN device, and a three-member etcd cluster on the hosts' underlay (a control namespace
//! whose bridge is the underlay switch). tcpdump on the VM's port is the oracle of what the
//! collector must receive; etcdctl and `tap session show` read the statuses.

use std::{
    path::PathBuf,
    process::{Command, Output, Stdio},
    time::Duration,
};

use tap_tests::{
    Netns, TempDir,
    agent::Agent,
    etcd::EtcdCluster,
    oracle::{Tcpdump, assert_same_packets},
    pcap::{Pcap, Record},
    process::Background,
    run_ok, tap_bin, wait_until,
};

const VM_MAC: &str = "02:00:5e:00:53:01";
const VM_IP: &str = "192.0.2.10";
/// The hypervisors' bridge address and MAC: the same on every host (an anycast gateway), so the
/// VM's static neighbour entry holds after a move.
const GW_IP: &str = "192.0.2.1";
const GW_MAC: &str = "02:00:5e:00:53:fe";
const ETCD: [&str; 3] = ["198.51.100.1", "198.51.100.2", "198.51.100.3"];
const COLLECTOR: &str = "198.51.100.20";
const UNDERLAY: [&str; 2] = ["198.51.100.11", "198.51.100.12"];
const HOSTS: [&str; 2] = ["hva", "hvb"];
const OUI_SOURCE: &str = "mac:02:00:5e:00:53:01";

/// Longest wait for an agent to realize a change.
const REALIZE: Duration = Duration::from_secs(30);

/// IPv6 off before any interface exists: no MLD or router solicitations on the test's wires.
const QUIET: &str = "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && sysctl -qw net.ipv6.conf.default.disable_ipv6=1";

/// A veth pair from `a` (named `a_if`) to `b` (named `b_if`).
fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    run_ok(Command::new("ip").args([
        "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]));
}

struct Fleet {
    dir: TempDir,
    /// The underlay switch (bridge `ul0`) and the etcd members.
    ctl: Netns,
    collector: Netns,
    hv: Vec<Netns>,
    agents: Vec<Option<Agent>>,
    cluster: EtcdCluster,
}

impl Fleet {
    fn new() -> Self {
        let ctl = Netns::new("fctl");
        ctl.sh(&format!(
            "{QUIET} && ip link add ul0 type bridge && ip link set ul0 up"
        ));
        for a in ETCD {
            ctl.sh(&format!("ip addr add {a}/24 dev ul0"));
        }
        let collector = Netns::new("fcol");
        collector.sh(QUIET);
        veth(&ctl, "ul-col", &collector, "up0");
        ctl.sh("ip link set ul-col master ul0 && ip link set ul-col up");
        collector.sh(&format!(
            "ip addr add {COLLECTOR}/24 dev up0 && ip link set up0 up && \
             ip link add vx42 type vxlan id 42 dstport 4789 local {COLLECTOR} nolearning && ip link set vx42 up && \
             ip link add vx43 type vxlan id 43 dstport 4789 local {COLLECTOR} nolearning && ip link set vx43 up"
        ));
        let mut hv = Vec::new();
        for (i, host) in HOSTS.iter().enumerate() {
            let ns = Netns::new(host);
            ns.sh(QUIET);
            let port = format!("ul-{host}");
            veth(&ctl, &port, &ns, "up0");
            ctl.sh(&format!(
                "ip link set {port} master ul0 && ip link set {port} up"
            ));
            ns.sh(&format!(
                "ip addr add {}/24 dev up0 && ip link set up0 up && \
                 ip link add br0 type bridge && ip link set br0 address {GW_MAC} && \
                 ip addr add {GW_IP}/24 dev br0 && ip link set br0 up && \
                 ip neigh replace {VM_IP} lladdr {VM_MAC} dev br0 nud permanent",
                UNDERLAY[i]
            ));
            hv.push(ns);
        }
        let cluster = EtcdCluster::start_in(&ctl, ETCD);
        let mut fleet = Self {
            dir: TempDir::new(),
            ctl,
            collector,
            hv,
            agents: Vec::new(),
            cluster,
        };
        for i in 0..HOSTS.len() {
            let agent = fleet.start_agent(i);
            fleet.agents.push(Some(agent));
        }
        fleet
    }

    fn start_agent(&self, i: usize) -> Agent {
        let socket = self.dir.join(&format!("{}.sock", HOSTS[i]));
        let config = self.dir.join(&format!("{}.toml", HOSTS[i]));
        let endpoints: Vec<String> = ETCD
            .iter()
            .map(|a| format!("\"http://{a}:2379\""))
            .collect();
        std::fs::write(
            &config,
            format!(
                "[agent]\ncontrol_socket = \"{}\"\n\n[fleet]\netcd = [{}]\nhost = \"{}\"\nuplinks = [\"up0\"]\nlease_seconds = 3\nresync_seconds = 2\n",
                socket.display(),
                endpoints.join(", "),
                HOSTS[i]
            ),
        )
        .unwrap();
        Agent::start(&self.hv[i], &config, &socket)
    }

    /// `tap session ARGS`, from the underlay (where etcd is).
    fn session(&self, args: &[&str]) -> Output {
        let out = self
            .ctl
            .cmd(&tap_bin().to_string_lossy())
            .arg("session")
            .args(args)
            .env("TAP_ETCD", self.cluster.endpoints())
            .env_remove("TAP_LOG")
            .env_remove("TAP_TENANT")
            .env_remove("TAP_ETCD_USER")
            .stdin(Stdio::null())
            .output()
            .expect("running tap session");
        assert!(
            out.status.success(),
            "tap session {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `tap session show NAME --tenant TENANT --json`.
    fn show(&self, tenant: &str, name: &str) -> serde_json::Value {
        let out = self.session(&["show", name, "--tenant", tenant, "--json"]);
        serde_json::from_slice(&out.stdout).expect("show --json prints JSON")
    }

    /// Waits until the session's statuses are exactly `want`: (host, state).
    fn wait_states(&self, tenant: &str, name: &str, want: &[(&str, &str)]) -> serde_json::Value {
        wait_until(&format!("{tenant}/{name} to be {want:?}"), REALIZE, || {
            let v = self.show(tenant, name);
            let mut got: Vec<(String, String)> = v["hosts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|h| {
                    let attached = h["interfaces"].as_array().is_some_and(|a| !a.is_empty());
                    let state = h["state"].as_str().unwrap_or("?");
                    // Active counts once it is attached somewhere.
                    let state = if state == "active" && !attached {
                        "pending"
                    } else {
                        state
                    };
                    (
                        h["host"].as_str().unwrap_or("?").to_string(),
                        state.to_string(),
                    )
                })
                .collect();
            got.sort();
            let mut want: Vec<(String, String)> = want
                .iter()
                .map(|(h, s)| ((*h).to_string(), (*s).to_string()))
                .collect();
            want.sort();
            (got == want).then_some(v)
        })
    }

    /// Plugs the VM's `eth0` into host `i`'s bridge as `port`.
    fn plug(&self, vm: &Netns, i: usize, port: &str) {
        veth(&self.hv[i], port, vm, "eth0");
        self.hv[i].sh(&format!(
            "ip link set {port} master br0 && ip link set {port} up"
        ));
    }

    /// Brings the VM's `eth0` up with its MAC, address and gateway.
    fn vm_up(vm: &Netns) {
        vm.sh(&format!(
            "ip link set eth0 address {VM_MAC} && ip addr add {VM_IP}/24 dev eth0 && ip link set eth0 up && \
             ip neigh replace {GW_IP} lladdr {GW_MAC} dev eth0 nud permanent"
        ));
    }

    fn create_vm(&self, i: usize, port: &str) -> Netns {
        let vm = Netns::new("fvm");
        vm.sh(QUIET);
        self.plug(&vm, i, port);
        Self::vm_up(&vm);
        vm
    }

    fn collector_dump(&self, dev: &str, name: &str) -> Tcpdump {
        Tcpdump::start(&self.collector, dev, self.dir.join(name), &[])
    }
}

/// Sends `count` UDP datagrams to the gateway's discard port, `gap_ms` apart, each carrying
/// `seq NNNNNNNN` from `first` on; send errors (the VM's interface gone) are ignored.
fn udp_seq(vm: &Netns, first: u32, count: u32, gap_ms: u32) -> Background {
    const SEND: &str = r#"
import socket, sys, time
host, first, count, gap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]) / 1000
for n in range(first, first + count):
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"seq %08d" % n, (host, 9))
        s.close()
    except OSError:
        pass
    time.sleep(gap)
"#;
    let mut cmd = vm.cmd("python3");
    cmd.args([
        "-c",
        SEND,
        GW_IP,
        &first.to_string(),
        &count.to_string(),
        &gap_ms.to_string(),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    Background::spawn("UDP sender", cmd)
}

fn finish(sender: Background) {
    let exited = sender.wait(Duration::from_secs(120));
    assert!(exited.status.success(), "sender: {}", exited.stderr);
}

/// The sequence number of a datagram [`udp_seq`] sent, when `r` is one (an untagged IPv4 UDP
/// frame: the gateway's ICMP port unreachable quotes the datagram, and is not one).
fn seq_of(r: &Record) -> Option<u32> {
    let d = &r.data;
    if d.get(12..14) != Some(&[0x08, 0x00][..]) || d.get(23) != Some(&17) {
        return None;
    }
    let at = d.windows(4).position(|w| w == b"seq ")?;
    std::str::from_utf8(d.get(at + 4..at + 12)?)
        .ok()?
        .parse()
        .ok()
}

fn ns_of(r: &Record) -> u128 {
    u128::from(r.ts_sec) * 1_000_000_000 + u128::from(r.ts_frac)
}

fn stopped(dump: Tcpdump) -> (PathBuf, Pcap) {
    let file = dump.file.clone();
    let pcap = dump.stop();
    (file, pcap)
}

/// Drops the agents first (they write into etcd), then the rest.
impl Drop for Fleet {
    fn drop(&mut self) {
        self.agents.clear();
    }
}

#[test]
fn a_session_by_mac_mirrors_the_vm_byte_for_byte_and_refuses_other_tenants() {
    let f = Fleet::new();
    let vm = f.create_vm(0, "vm1a");
    // The bridge learns the VM's MAC on its port from its first frame.
    tap_tests::traffic::ping(&vm, GW_IP, 1, &[]);

    f.session(&["owner", "set", OUI_SOURCE, "--tenant", "acme"]);
    let target = format!("vxlan://{COLLECTOR}?vni=42");
    // A datagram every 10 ms while the session is created: the time from the create to the
    // first one mirrored is measured (and printed, not held to a time).
    let first = f.collector_dump("vx42", "first.pcap");
    let sender = udp_seq(&vm, 100_000, 3000, 10);
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    f.session(&[
        "create", "web", "--tenant", "acme", "--source", OUI_SOURCE, "--target", &target,
    ]);
    wait_until("the first mirrored datagram", REALIZE, || {
        // The global header reaches the file with the first packet.
        let bytes = std::fs::read(&first.file).unwrap_or_default();
        (bytes.len() >= 24)
            .then(|| Pcap::parse_prefix(&bytes))?
            .records
            .iter()
            .find(|r| seq_of(r).is_some())
            .map(ns_of)
    });
    sender.signal(libc::SIGKILL);
    let _ = sender.wait(Duration::from_secs(10));
    let (_, first) = stopped(first);
    let at = first
        .records
        .iter()
        .find(|r| seq_of(r).is_some())
        .map(ns_of)
        .expect("seen above");
    eprintln!(
        "session create to first mirrored packet: {} ms",
        at.saturating_sub(created) / 1_000_000
    );
    // Tenant "other" names a source it does not own: the host that has it says so.
    f.session(&[
        "create", "spy", "--tenant", "other", "--source", OUI_SOURCE, "--target", &target,
    ]);
    // A value written behind tap's back: ignored, with a status entry.
    f.cluster
        .ctl(&["put", "/tap/v1/sessions/acme/broken", "{\"version\":1,"]);

    let web = f.wait_states("acme", "web", &[("hva", "active")]);
    assert_eq!(web["hosts"][0]["interfaces"][0]["name"], "vm1a", "{web}");
    // etcd's view: the status is hva's, under a lease (gone with the agent).
    let raw: serde_json::Value =
        serde_json::from_str(
            &f.cluster
                .ctl(&["get", "-w", "json", "/tap/v1/status/acme/web/hva"]),
        )
        .expect("etcdctl -w json prints JSON");
    assert!(
        raw["kvs"][0]["lease"].as_i64().is_some_and(|l| l != 0),
        "{raw}"
    );
    let spy = f.wait_states("other", "spy", &[("hva", "refused")]);
    assert_eq!(
        spy["hosts"][0]["error"], "tenant 'other' does not own mac:02:00:5e:00:53:01",
        "{spy}"
    );
    let broken = wait_until("the broken value's status", REALIZE, || {
        let out = f.cluster.ctl(&[
            "get",
            "--print-value-only",
            "/tap/v1/status/acme/broken/hva",
        ]);
        (!out.trim().is_empty()).then_some(out)
    });
    let broken: serde_json::Value = serde_json::from_str(broken.trim()).unwrap();
    assert_eq!(broken["state"], "invalid", "{broken}");
    assert!(
        broken["error"]
            .as_str()
            .is_some_and(|e| e.contains("not session JSON")),
        "{broken}"
    );

    // The VM's traffic, both ways, as its port sees it: the collector receives it byte for
    // byte, once (the refused session adds nothing).
    let port = Tcpdump::start(&f.hv[0], "vm1a", f.dir.join("port.pcap"), &[]);
    let col = f.collector_dump("vx42", "col.pcap");
    tap_tests::traffic::ping(&vm, GW_IP, 20, &["-i", "0.05"]);
    finish(udp_seq(&vm, 0, 30, 5));
    col.wait_quiet(Duration::from_millis(500));
    let (port_file, port_pcap) = stopped(port);
    let (col_file, _) = stopped(col);
    let matched = assert_same_packets(&col_file, &port_file);
    assert_eq!(matched.pairs.len(), port_pcap.records.len());
    assert!(port_pcap.records.len() >= 70, "{}", port_pcap.records.len());

    // `tap session show` counts what the host mirrored (at least this test's packets).
    let web = wait_until("the counters to be written", REALIZE, || {
        let v = f.show("acme", "web");
        (v["total"]["packets"].as_u64().unwrap_or(0) >= 70).then_some(v)
    });
    let text = String::from_utf8(f.session(&["show", "web", "--tenant", "acme"]).stdout).unwrap();
    assert!(
        text.contains("on hva: active on vm1a (tc-ingress, tc-egress)"),
        "{text}\n{web}"
    );

    // Deleted: the tap goes, the status with it.
    f.session(&["delete", "web", "--tenant", "acme"]);
    wait_until("the status to go", REALIZE, || {
        f.cluster
            .ctl(&["get", "--prefix", "--keys-only", "/tap/v1/status/acme/web/"])
            .trim()
            .is_empty()
            .then_some(())
    });
    drop(vm);
}

#[test]
fn the_vm_moves_to_another_host_and_its_mirror_follows() {
    let f = Fleet::new();
    let vm = f.create_vm(0, "vm1a");
    tap_tests::traffic::ping(&vm, GW_IP, 1, &[]);
    f.session(&["owner", "set", OUI_SOURCE, "--tenant", "acme"]);
    let target = format!("vxlan://{COLLECTOR}?vni=42");
    f.session(&[
        "create", "web", "--tenant", "acme", "--source", OUI_SOURCE, "--target", &target,
    ]);
    f.wait_states("acme", "web", &[("hva", "active")]);

    let col = f.collector_dump("vx42", "col.pcap");
    // 10 ms apart for 6 s: the move happens in the middle.
    let sender = udp_seq(&vm, 0, 600, 10);
    std::thread::sleep(Duration::from_secs(2));
    // Migration: the port leaves A's bridge, the same MAC and IP appear behind B's.
    f.hv[0].sh("ip link del vm1a");
    veth(&f.hv[1], "vm1b", &vm, "eth0");
    // Up (tcpdump wants that) but not yet in the bridge: the oracle sees B's first datagram.
    f.hv[1].sh("ip link set vm1b up");
    let b_port = Tcpdump::start(&f.hv[1], "vm1b", f.dir.join("b.pcap"), &["-Q", "in"]);
    f.hv[1].sh("ip link set vm1b master br0");
    Fleet::vm_up(&vm);
    finish(sender);
    f.wait_states("acme", "web", &[("hvb", "active")]);
    col.wait_quiet(Duration::from_millis(500));
    let (_, b_pcap) = stopped(b_port);
    let (_, col_pcap) = stopped(col);

    let first_b = b_pcap
        .records
        .iter()
        .find(|r| seq_of(r).is_some())
        .expect("the VM's datagrams behind B");
    let seq_b = seq_of(first_b).unwrap();
    let at_collector: Vec<(u32, u128)> = col_pcap
        .records
        .iter()
        .filter_map(|r| seq_of(r).map(|s| (s, ns_of(r))))
        .collect();
    let from_b = at_collector
        .iter()
        .find(|(s, _)| *s >= seq_b)
        .expect("the collector receives the VM's datagrams from B");
    let gap_ms = (from_b.1.saturating_sub(ns_of(first_b))) / 1_000_000;
    eprintln!(
        "migration gap: {gap_ms} ms from the first datagram behind B (seq {seq_b}) to the first mirrored from B (seq {})",
        from_b.0
    );
    // The gap is measured, not held to a time here (a loaded machine stretches it): the
    // README's fleet section gives the figures and the command.
    assert!(from_b.1 >= ns_of(first_b));
    // No datagram mirrored twice, before, during or after the move.
    let mut seen = std::collections::BTreeSet::new();
    for (s, _) in &at_collector {
        assert!(seen.insert(*s), "datagram {s} mirrored twice");
    }

    // Settled: the collector gets exactly what B's port sees.
    let port = Tcpdump::start(&f.hv[1], "vm1b", f.dir.join("port.pcap"), &[]);
    let col = f.collector_dump("vx42", "col2.pcap");
    finish(udp_seq(&vm, 1000, 40, 5));
    col.wait_quiet(Duration::from_millis(500));
    let (port_file, _) = stopped(port);
    let (col_file, _) = stopped(col);
    assert_same_packets(&col_file, &port_file);
    drop(vm);
}

#[test]
fn etcd_faults_leave_the_captures_running_and_priorities_pick_one_session() {
    let mut f = Fleet::new();
    let vm = f.create_vm(0, "vm1a");
    tap_tests::traffic::ping(&vm, GW_IP, 1, &[]);
    f.session(&["owner", "set", OUI_SOURCE, "--tenant", "acme"]);
    let target = format!("vxlan://{COLLECTOR}?vni=42");
    f.session(&[
        "create", "web", "--tenant", "acme", "--source", OUI_SOURCE, "--target", &target,
    ]);
    f.wait_states("acme", "web", &[("hva", "active")]);

    let mirrored_while = |f: &mut Fleet, name: &str, first: u32, during: &dyn Fn(&mut Fleet)| {
        let port = Tcpdump::start(
            &f.hv[0],
            "vm1a",
            f.dir.join(&format!("{name}-port.pcap")),
            &[],
        );
        let col = f.collector_dump("vx42", &format!("{name}-col.pcap"));
        let sender = udp_seq(&vm, first, 300, 10);
        std::thread::sleep(Duration::from_millis(500));
        during(f);
        finish(sender);
        col.wait_quiet(Duration::from_millis(500));
        let (port_file, port_pcap) = stopped(port);
        let (col_file, _) = stopped(col);
        assert_same_packets(&col_file, &port_file);
        assert_eq!(
            port_pcap
                .records
                .iter()
                .filter(|r| seq_of(r).is_some())
                .count(),
            300
        );
    };
    // The leader killed mid-stream: nothing lost, nothing doubled.
    mirrored_while(&mut f, "leader", 0, &|f| {
        let killed = f.cluster.kill_leader();
        eprintln!("killed etcd member {killed}, the leader");
    });
    // The whole cluster stopped: the sessions realized go on.
    mirrored_while(&mut f, "outage", 1000, &|f| f.cluster.stop_all());
    // Longer than the lease: the agents keep capturing without etcd.
    std::thread::sleep(Duration::from_secs(4));
    mirrored_while(&mut f, "outage2", 2000, &|_| {});
    f.cluster.start_all();
    f.wait_states("acme", "web", &[("hva", "active")]);

    // A session created once etcd is back is realized. It selects the VM's UDP with a lower
    // priority number than web's: those packets go to its collector only.
    f.session(&[
        "create",
        "udp",
        "--tenant",
        "acme",
        "--source",
        OUI_SOURCE,
        "--filter",
        "udp port 9",
        "--priority",
        "50",
        "--target",
        &format!("vxlan://{COLLECTOR}?vni=43"),
    ]);
    f.wait_states("acme", "udp", &[("hva", "active")]);
    let c42 = f.collector_dump("vx42", "p42.pcap");
    let c43 = f.collector_dump("vx43", "p43.pcap");
    finish(udp_seq(&vm, 5000, 20, 5));
    tap_tests::traffic::ping(&vm, GW_IP, 3, &["-i", "0.05"]);
    c43.wait_quiet(Duration::from_millis(500));
    let (_, p42) = stopped(c42);
    let (_, p43) = stopped(c43);
    let udp = |p: &Pcap| p.records.iter().filter(|r| seq_of(r).is_some()).count();
    assert_eq!(
        (udp(&p42), udp(&p43)),
        (0, 20),
        "UDP to the lower number only"
    );
    assert_eq!(p43.records.len(), 20, "only UDP port 9 on VNI 43");
    // The rest is web's: the pings, and the gateway's port unreachables (rate limited by the
    // kernel, so only counted as ICMP).
    let icmp_type = |r: &Record| {
        let d = &r.data;
        (d.get(12..14) == Some(&[0x08, 0x00][..]) && d.get(23) == Some(&1))
            .then(|| d.get(14 + usize::from(d[14] & 0x0f) * 4).copied())
            .flatten()
    };
    let echoes = p42
        .records
        .iter()
        .filter(|r| matches!(icmp_type(r), Some(0 | 8)))
        .count();
    assert_eq!(echoes, 6, "the pings stay web's");
    assert!(p42.records.iter().all(|r| icmp_type(r).is_some()));

    for a in &mut f.agents {
        let agent = a.take().expect("running");
        let exited = agent.stop();
        assert!(!exited.stderr.contains("panicked"), "{}", exited.stderr);
    }
    // The agents revoked their leases on the way out: no status is left.
    assert!(
        f.cluster
            .ctl(&["get", "--prefix", "--keys-only", "/tap/v1/status/"])
            .trim()
            .is_empty()
    );
    drop(vm);
}
