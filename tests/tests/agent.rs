//! `tap agent`: several taps from one file, each with its own sinks; reloads that swap filters
//! without loss, add taps and refuse broken files; interfaces that come and go (VM ports on a
//! bridge); the metrics endpoint and `tap ctl status` against the files written; the systemd
//! unit's capability set, with taps sharing an interface.

use std::{
    io::Read as _,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use tap_tests::{
    Netns, TempDir, Topology,
    agent::{Agent, Metrics, scrape},
    pcap::{Kind, Pcap},
    process::Background,
    run_ok, tap_bin,
    topology::{FIRST, SECOND},
    traffic, wait_until,
};

const METRICS: &str = "127.0.0.1:9750";

/// ICMP echo requests in pcap records.
fn echo_requests(pcap: &Pcap) -> usize {
    pcap.records
        .iter()
        .filter(|r| r.kind() == Kind::Icmp4 && r.data.get(34) == Some(&8))
        .count()
}

/// The records of a pcap file being written (whole records only).
fn read_prefix(path: &Path) -> Pcap {
    Pcap::parse_prefix(
        &std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())),
    )
}

/// Files in `dir` whose name contains `part`, sorted (the one being written included).
fn files_named(dir: &Path, part: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(part))
        .collect();
    v.sort();
    v
}

/// Scrapes until `ready` holds, at most 15 s.
fn scrape_until(ns: &Netns, what: &str, ready: impl Fn(&Metrics) -> bool) -> Metrics {
    wait_until(what, Duration::from_secs(15), || {
        let m = scrape(ns, METRICS);
        ready(&m).then_some(m)
    })
}

/// A bounded ping flood in the background.
fn ping_background(ns: &Netns, dst: &str, count: u32, interval: &str) -> Background {
    let mut cmd = ns.cmd("ping");
    cmd.args([
        "-n",
        "-q",
        "-c",
        &count.to_string(),
        "-i",
        interval,
        "-w",
        "60",
        dst,
    ])
    .stdout(std::process::Stdio::null());
    Background::spawn("ping", cmd)
}

#[test]
fn two_taps_on_two_links_write_their_own_sinks_and_metrics_agree() {
    let t = Topology::new();
    t.add_link("veth2-a", "veth2-b", &SECOND);
    let dir = TempDir::new();
    let (socket, serve, config) = (
        dir.join("ctl.sock"),
        dir.join("two.sock"),
        dir.join("tap.toml"),
    );
    let d = dir.path().display();
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
control_socket = "{socket}"
metrics_listen = "{METRICS}"

[[tap]]
name = "one"
interfaces = ["{b_if}"]
hook = "tc-ingress"
filter = "icmp"
[tap.file]
path = "{d}/one.pcap"
flush_interval_ms = 50

[[tap]]
name = "two"
interfaces = ["veth2-b"]
hook = "tc-ingress"
filter = "icmp"
serve = "{serve}"
[tap.file]
path = "{d}/two.pcap"
file_size_mb = 0.01
flush_interval_ms = 50
"#,
            socket = socket.display(),
            serve = serve.display(),
            b_if = t.b_if,
        ),
    )
    .unwrap();
    let mut agent = Agent::start(&t.b, &config, &socket);
    agent.wait_for_tap("one", "capturing", 1);
    agent.wait_for_tap("two", "capturing", 1);
    agent.wait_attached("one", &["veth-b"]);
    agent.wait_attached("two", &["veth2-b"]);

    // A live reader of tap two's stream.
    let mut client = UnixStream::connect(&serve).expect("connecting to tap two's stream");
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = client.read_to_end(&mut bytes);
        bytes
    });
    std::thread::sleep(Duration::from_millis(300));

    traffic::ping(&t.a, FIRST.b_v4, 20, &[]);
    // 1042-byte frames: 9 fit a 10 kB file, so 30 make four files.
    traffic::ping(&t.a, SECOND.b_v4, 30, &["-s", "1000"]);

    let m = scrape_until(&t.b, "all packets written", |m| {
        m.get("tap_packets_written_total", "tap=\"one\"") == Some(20.0)
            && m.get("tap_packets_written_total", "tap=\"two\"") == Some(30.0)
    });
    for (tap, n) in [("one", 20), ("two", 30)] {
        assert_eq!(m.tap("tap_packets_matched_total", tap), n, "{}", m.text);
        assert_eq!(m.tap("tap_packets_captured_total", tap), n, "{}", m.text);
        assert_eq!(m.tap("tap_packets_read_total", tap), n, "{}", m.text);
        assert_eq!(m.tap("tap_ring_drops_total", tap), 0, "{}", m.text);
        assert_eq!(m.tap("tap_sink_drops_total", tap), 0, "{}", m.text);
        assert_eq!(m.tap("tap_up", tap), 1, "{}", m.text);
        assert_eq!(m.tap("tap_interfaces_attached", tap), 1, "{}", m.text);
        assert_eq!(m.tap("tap_filter_installs_total", tap), 1, "{}", m.text);
        assert_eq!(
            m.tap("tap_ring_size_bytes", tap),
            u64::from(tap_common::config::DEFAULT_RING_SIZE),
            "{}",
            m.text
        );
    }
    assert_eq!(
        m.get(
            "tap_interface_packets_total",
            "tap=\"one\",interface=\"veth-b\",hook=\"tc-ingress\""
        ),
        Some(20.0),
        "{}",
        m.text
    );
    assert_eq!(
        m.get(
            "tap_interface_packets_total",
            "tap=\"two\",interface=\"veth2-b\",hook=\"tc-ingress\""
        ),
        Some(30.0),
        "{}",
        m.text
    );
    assert_eq!(
        m.get(
            "tap_attachment_info",
            "tap=\"one\",interface=\"veth-b\",hook=\"tc-ingress\",how=\"tcx\""
        ),
        Some(1.0),
        "{}",
        m.text
    );
    assert_eq!(
        m.get("tap_agent_reloads_total", "result=\"applied\""),
        Some(0.0),
        "{}",
        m.text
    );

    // The numbers agree with the files on disk.
    let one = dir.join("one.pcap");
    assert_eq!(echo_requests(&read_prefix(&one)), 20);
    assert_eq!(
        m.tap("tap_written_bytes_total", "one"),
        std::fs::metadata(&one).unwrap().len()
    );
    assert_eq!(m.tap("tap_files_rotated_total", "one"), 0);
    let two = files_named(dir.path(), "two_");
    assert_eq!(two.len(), 4, "{two:?}");
    assert_eq!(m.tap("tap_files_rotated_total", "two"), 3, "{}", m.text);
    let two_bytes: u64 = two
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(m.tap("tap_written_bytes_total", "two"), two_bytes);
    assert_eq!(
        two.iter()
            .map(|p| echo_requests(&read_prefix(p)))
            .sum::<usize>(),
        30
    );

    // The same counts in `tap ctl status`.
    let out = agent.ctl(&["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("tap one: running\n  interfaces: veth-b matching veth-b on tc-ingress\n"),
        "{text}"
    );
    assert!(
        text.contains("20 matched, 20 captured, 20 written, 0 ring drops, 0 sink drops"),
        "{text}"
    );
    assert!(text.contains("tap two: running\n"), "{text}");
    assert!(text.contains("3 files rotated"), "{text}");
    let status = agent.status();
    assert_eq!(status["taps"][1]["stats"]["written"], 30, "{status}");
    assert_eq!(
        status["taps"][1]["stats"]["interfaces"][0]["packets"], 30,
        "{status}"
    );

    let exited = agent.stop();
    assert_eq!(
        exited.stderr.matches(" unaccounted=0").count(),
        2,
        "{}",
        exited.stderr
    );
    assert!(!socket.exists(), "the control socket is removed on exit");
    let stream = Pcap::parse_prefix(&reader.join().unwrap());
    assert_eq!(echo_requests(&stream), 30, "tap two's stream");
    // Finished: four whole files, the last renamed.
    let two = files_named(dir.path(), "two_");
    assert_eq!(
        two.iter()
            .map(|p| Pcap::read(p).records.len())
            .collect::<Vec<_>>(),
        [9, 9, 9, 3],
        "{two:?}"
    );
}

/// The reload test's file: tap a on the first link, and with `with_b` tap b on the second;
/// `broken` puts a string where tap b's snap length goes.
fn reload_config(
    dir: &TempDir,
    socket: &Path,
    filter_a: &str,
    with_b: bool,
    broken: bool,
) -> String {
    let d = dir.path().display();
    let mut text = format!(
        r#"[agent]
control_socket = "{socket}"

[[tap]]
name = "a"
interfaces = ["veth-b"]
hook = "tc-ingress"
filter = "{filter_a}"
[tap.file]
path = "{d}/a.pcap"
flush_interval_ms = 50
"#,
        socket = socket.display()
    );
    if with_b {
        let snaplen = if broken { "\"big\"" } else { "200" };
        text.push_str(&format!(
            r#"
[[tap]]
name = "b"
interfaces = ["veth2-b"]
hook = "tc-ingress"
filter = "icmp"
snaplen = {snaplen}
[tap.file]
path = "{d}/b.pcap"
flush_interval_ms = 50
"#
        ));
    }
    text
}

#[test]
fn reloads_swap_filters_without_loss_add_taps_and_refuse_broken_files() {
    let t = Topology::new();
    t.add_link("veth2-a", "veth2-b", &SECOND);
    let dir = TempDir::new();
    let (socket, config) = (dir.join("ctl.sock"), dir.join("tap.toml"));
    let filters = ["icmp or udp port 1000", "icmp or udp port 2000"];
    std::fs::write(
        &config,
        reload_config(&dir, &socket, filters[0], false, false),
    )
    .unwrap();
    let mut agent = Agent::start(&t.b, &config, &socket);
    agent.wait_for_tap("a", "capturing", 1);
    agent.wait_attached("a", &["veth-b"]);

    // Echoes flow while the filter is swapped back and forth: every echo matches both filters.
    let pings = 1000;
    let ping = ping_background(&t.a, FIRST.b_v4, pings, "0.003");
    for i in 1..=6 {
        std::thread::sleep(Duration::from_millis(150));
        std::fs::write(
            &config,
            reload_config(&dir, &socket, filters[i % 2], false, false),
        )
        .unwrap();
        agent.hangup();
        agent.wait_for_count("configuration reloaded", i, Duration::from_secs(10));
    }
    agent.wait_for_count("tap{name=a}: filter replaced", 6, Duration::from_secs(10));
    let ping = ping.wait(Duration::from_secs(60));
    assert!(ping.status.success(), "ping: {}", ping.stderr);

    // A tap added by a reload; tap a goes on untouched.
    std::fs::write(
        &config,
        reload_config(&dir, &socket, filters[0], true, false),
    )
    .unwrap();
    agent.hangup();
    agent.wait_for_tap("b", "capturing", 1);
    agent.wait_attached("b", &["veth2-b"]);

    // A broken file is refused, with file, line and key; the running taps stay as they were.
    let broken = reload_config(&dir, &socket, "tcp", true, true);
    let line = broken
        .lines()
        .position(|l| l.starts_with("snaplen"))
        .unwrap()
        + 1;
    std::fs::write(&config, &broken).unwrap();
    agent.hangup();
    agent.wait_for_count("reload refused", 1, Duration::from_secs(10));
    let where_ = format!("{}:{line}:", config.display());
    let stderr = agent.stderr();
    let refused = stderr
        .lines()
        .find(|l| l.contains("reload refused"))
        .unwrap();
    assert!(
        refused.contains(&where_) && refused.contains("snaplen"),
        "{refused}"
    );
    let out = agent.ctl(&["reload"]);
    assert!(
        !out.status.success(),
        "a broken file must fail `tap ctl reload`"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&where_) && err.contains("snaplen") && err.contains("invalid type"),
        "{err}"
    );

    traffic::ping(&t.a, FIRST.b_v4, 5, &[]);
    traffic::ping(&t.a, SECOND.b_v4, 5, &[]);

    // Valid again, and the same as what runs: nothing to do.
    std::fs::write(
        &config,
        reload_config(&dir, &socket, filters[0], true, false),
    )
    .unwrap();
    let out = agent.ctl(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "reloaded: no change\n"
    );

    let status = agent.status();
    assert_eq!(
        (
            status["reloads"].as_u64(),
            status["reload_failures"].as_u64()
        ),
        (Some(8), Some(2)),
        "{status}"
    );
    let a = &status["taps"][0];
    assert_eq!(
        (a["name"].as_str(), a["restarts"].as_u64()),
        (Some("a"), Some(0)),
        "{status}"
    );
    assert_eq!(a["stats"]["filter_installs"], 7, "{status}");
    assert_eq!(a["stats"]["filter"], filters[0], "{status}");
    wait_until(
        "tap a's last packets written",
        Duration::from_secs(10),
        || {
            (agent.tap_status("a")["stats"]["written"].as_u64() == Some(u64::from(pings) + 5))
                .then_some(())
        },
    );

    let exited = agent.stop();
    assert_eq!(
        exited.stderr.matches("tap{name=a}: starting").count(),
        1,
        "tap a was restarted:\n{}",
        exited.stderr
    );
    assert_eq!(
        echo_requests(&Pcap::read(&dir.join("a.pcap"))),
        pings as usize + 5,
        "echo requests lost across swaps:\n{}",
        exited.stderr
    );
    assert_eq!(echo_requests(&Pcap::read(&dir.join("b.pcap"))), 5);
    for line in exited.stderr.lines().filter(|l| l.contains(": stopped ")) {
        assert!(
            line.contains("ring_dropped=0 writer_dropped=0") && line.contains("unaccounted=0"),
            "{line}"
        );
    }
}

/// A VM: a namespace whose `eth0` is plugged into the host's bridge as `port`.
fn plug_vm(host: &Netns, port: &str, ip: &str) -> Netns {
    let vm = Netns::new("vm");
    run_ok(Command::new("ip").args([
        "link", "add", port, "netns", &host.name, "type", "veth", "peer", "name", "eth0", "netns",
        &vm.name,
    ]));
    host.sh(&format!(
        "ip link set {port} master br0 && ip link set {port} up"
    ));
    vm.sh(&format!("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && ip addr add {ip}/24 dev eth0 && ip link set eth0 up"));
    vm
}

#[test]
fn vm_ports_that_come_and_go_on_a_bridge_are_followed() {
    // The host: a bridge; its VM ports appear and disappear as VMs start and stop.
    let host = Netns::new("host");
    host.sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && ip link add br0 type bridge && ip link set br0 up");
    let dir = TempDir::new();
    let (socket, config) = (dir.join("ctl.sock"), dir.join("tap.toml"));
    std::fs::write(
        &config,
        format!(
            r#"[agent]
control_socket = "{}"
metrics_listen = "{METRICS}"

[[tap]]
name = "vms"
interfaces = ["vm*"]
hook = "tc-ingress"
filter = "icmp"
[tap.file]
path = "{}/vms.pcap"
flush_interval_ms = 50
"#,
            socket.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let mut agent = Agent::start(&host, &config, &socket);
    agent.wait_for_tap("vms", "capturing", 1);
    assert_eq!(agent.tap_status("vms")["state"], "waiting", "no VM yet");

    let (ip1, ip2, ip3) = ("10.77.0.1", "10.77.0.2", "10.77.0.3");
    let vm1 = plug_vm(&host, "vm-a", ip1);
    let vm2 = plug_vm(&host, "vm-b", ip2);
    agent.wait_attached("vms", &["vm-a", "vm-b"]);
    assert_eq!(agent.tap_status("vms")["state"], "running");
    // VM to VM: the traffic never leaves the host.
    traffic::ping(&vm1, ip2, 10, &[]);

    // A third VM starts: its port is attached without a restart, and its traffic captured.
    let vm3 = plug_vm(&host, "vm-c", ip3);
    agent.wait_attached("vms", &["vm-a", "vm-b", "vm-c"]);
    traffic::ping(&vm3, ip1, 10, &[]);

    // It stops: its port disappears with its namespace and is released, without an error.
    drop(vm3);
    agent.wait_attached("vms", &["vm-a", "vm-b"]);
    agent.wait_for_tap("vms", "detached iface=vm-c hook=\"tc-ingress\"", 1);
    traffic::ping(&vm2, ip1, 5, &[]);

    // Requests are seen entering the bridge on the sender's port, replies on the other's.
    let m = scrape_until(&host, "the VMs' packets written", |m| {
        m.get("tap_packets_written_total", "tap=\"vms\"") == Some(50.0)
    });
    let on = |port: &str| {
        m.get(
            "tap_interface_packets_total",
            &format!("tap=\"vms\",interface=\"{port}\",hook=\"tc-ingress\""),
        )
    };
    assert_eq!(
        (on("vm-a"), on("vm-b"), on("vm-c")),
        (Some(25.0), Some(15.0), Some(10.0)),
        "{}",
        m.text
    );
    assert_eq!(m.tap("tap_interfaces_attached", "vms"), 2);
    assert_eq!(m.tap("tap_restarts_total", "vms"), 0);

    let exited = agent.stop();
    assert!(
        !exited.stderr.contains("WARN") && !exited.stderr.contains("ERROR"),
        "{}",
        exited.stderr
    );
    let pcap = Pcap::read(&dir.join("vms.pcap"));
    assert_eq!(pcap.count(Kind::Icmp4), 50);
    assert_eq!(echo_requests(&pcap), 25);
    drop((vm1, vm2));
}

/// `+bpf,+perfmon,...` from the unit's `CapabilityBoundingSet=CAP_BPF CAP_PERFMON ...`.
fn service_capabilities() -> String {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/tap.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("CapabilityBoundingSet in tap.service");
    let ambient = text
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("AmbientCapabilities in tap.service");
    assert_eq!(line, ambient, "the unit grants what it bounds");
    line.split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn the_agent_runs_unprivileged_with_the_service_capabilities() {
    let t = Topology::new();
    let dir = TempDir::world_writable();
    let (socket, config) = (dir.join("ctl.sock"), dir.join("tap.toml"));
    std::fs::write(
        &config,
        format!(
            "[agent]\ncontrol_socket = \"{}\"\n\n[[tap]]\nname = \"x\"\ninterfaces = [\"veth-b\"]\nhook = \"xdp\"\nfilter = \"icmp\"\n[tap.file]\npath = \"{}/x.pcap\"\nflush_interval_ms = 50\n\n[[tap]]\nname = \"y\"\ninterfaces = [\"veth-b\"]\nhook = \"tc-ingress\"\nfilter = \"icmp\"\nserve = \"{d}/y.sock\"\n\n[[tap]]\nname = \"z\"\ninterfaces = [\"veth-b\"]\nhook = \"tc-ingress\"\nfilter = \"icmp\"\nserve = \"{d}/z.sock\"\n",
            socket.display(),
            dir.path().display(),
            d = dir.path().display()
        ),
    )
    .unwrap();
    let caps = service_capabilities();
    let mut cmd = t.b.cmd("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(format!("--inh-caps=-all,{caps}"))
        .arg(format!("--ambient-caps=-all,{caps}"))
        .arg(format!("--bounding-set=-all,{caps}"))
        .arg(tap_bin());
    let mut agent = Agent::start_with(cmd, &config, &socket);
    agent.wait_for_tap("x", "capturing", 1);
    agent.wait_for_tap("y", "capturing", 1);
    agent.wait_attached("x", &["veth-b"]);
    agent.wait_attached("y", &["veth-b"]);
    agent.wait_attached("z", &["veth-b"]);
    traffic::ping(&t.a, FIRST.b_v4, 3, &[]);
    // Two taps on the same interface and direction both see every packet: a tap's TC program
    // passes the packet on to the next program of the chain.
    for tap in ["x", "y", "z"] {
        wait_until(
            &format!("tap {tap}'s packets delivered"),
            Duration::from_secs(10),
            || (agent.tap_status(tap)["stats"]["written"] == 3).then_some(()),
        );
    }
    let exited = agent.stop();
    assert!(!exited.stderr.contains("ERROR"), "{}", exited.stderr);
    let file = dir.join("x.pcap");
    assert_eq!(echo_requests(&Pcap::read(&file)), 3);
    assert_eq!(
        tap_tests::storage_util::owner(&file),
        tap_tests::storage_util::uid_of("nobody")
    );
}
