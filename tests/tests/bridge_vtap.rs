//! A vTAP on a Linux bridge: a tap on every VM port with `direction = "in"` records each
//! VM-to-VM packet once, where it enters the bridge, and not a second time where it leaves by the
//! receiver's port. The oracle is tcpdump `-Q in` on each port.

use std::{process::Command, time::Duration};

use tap_tests::{
    Netns, TempDir,
    agent::Agent,
    oracle::Tcpdump,
    pcap::{Kind, Pcap, Record},
    run_ok,
    tap::{self, Summary},
    traffic, unique_suffix, wait_until,
};

/// A VM: a namespace whose `eth0` is plugged into the host's bridge `br0` as `port`, addressed
/// `ip`/24, with IPv6 off so it sends nothing of its own.
fn plug_vm(host: &Netns, port: &str, ip: &str) -> Netns {
    let vm = Netns::new("vm");
    run_ok(Command::new("ip").args([
        "link", "add", port, "netns", &host.name, "type", "veth", "peer", "name", "eth0", "netns",
        &vm.name,
    ]));
    host.sh(&format!(
        "ip link set {port} master br0 && ip link set {port} up"
    ));
    vm.sh(&format!(
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && ip addr add {ip}/24 dev eth0 && ip link set eth0 up"
    ));
    vm
}

fn mac(ns: &Netns, ifname: &str) -> String {
    ns.sh(&format!("cat /sys/class/net/{ifname}/address"))
        .trim()
        .to_string()
}

/// The source MAC address of a frame, as `ip link` writes it.
fn source(data: &[u8]) -> String {
    data[6..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A host with a bridge and two VMs on it, each port named after `prefix`.
struct Bridge {
    host: Netns,
    vms: [Netns; 2],
    ports: [String; 2],
    ips: [&'static str; 2],
    macs: [String; 2],
    prefix: String,
}

impl Bridge {
    fn new() -> Self {
        let host = Netns::new("host");
        host.sh(
            "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 && \
             ip link add br0 type bridge && ip link set br0 up",
        );
        // Port names are per namespace, but unique anyway (the pid is in them).
        let prefix = format!("vm{}", unique_suffix());
        let ports = [format!("{prefix}a"), format!("{prefix}b")];
        let ips = ["192.0.2.11", "192.0.2.12"];
        let vms = [
            plug_vm(&host, &ports[0], ips[0]),
            plug_vm(&host, &ports[1], ips[1]),
        ];
        // Static neighbours: no ARP, only the test's datagrams cross the bridge.
        let macs = [mac(&vms[0], "eth0"), mac(&vms[1], "eth0")];
        for (me, other) in [(0, 1), (1, 0)] {
            vms[me].sh(&format!(
                "ip neigh replace {} lladdr {} dev eth0 nud permanent",
                ips[other], macs[other]
            ));
        }
        Self {
            host,
            vms,
            ports,
            ips,
            macs,
            prefix,
        }
    }

    /// tcpdump `-Q in` on each port.
    fn tcpdumps(&self, dir: &TempDir) -> Vec<Tcpdump> {
        self.ports
            .iter()
            .map(|port| {
                Tcpdump::start(
                    &self.host,
                    port,
                    dir.join(&format!("{port}-in.pcap")),
                    &["-Q", "in"],
                )
            })
            .collect()
    }

    /// Each way across the bridge: every datagram enters by the sender's port and leaves by the
    /// receiver's, two hooks of the tapped set. 29 datagrams in all.
    fn traffic(&self, dumps: &[Tcpdump]) {
        traffic::udp_burst(&self.vms[0], self.ips[1], 20, 200);
        traffic::udp_burst(&self.vms[1], self.ips[0], 9, 300);
        for d in dumps {
            d.wait_quiet(Duration::from_millis(500));
        }
    }

    /// Asserts `tap` holds each datagram once: per sender, the same packets in the same order,
    /// byte for byte, as tcpdump saw entering by the sender's port.
    fn assert_each_once(&self, tap: &Pcap, dumps: Vec<Tcpdump>) {
        // tcpdump also sees the port unreachables the datagrams draw: only the datagrams count.
        let oracle: Vec<Vec<Record>> = dumps
            .into_iter()
            .map(|d| {
                d.stop()
                    .records
                    .into_iter()
                    .filter(|r| r.kind() == Kind::Udp4)
                    .collect()
            })
            .collect();
        assert_eq!(
            (oracle[0].len(), oracle[1].len()),
            (20, 9),
            "tcpdump -Q in on each port"
        );
        assert_eq!(tap.records.len(), 29, "each datagram once");
        for (sender, want) in self.macs.iter().zip(&oracle) {
            let got: Vec<(u32, &[u8])> = tap
                .records
                .iter()
                .filter(|r| &source(&r.data) == sender)
                .map(|r| (r.orig_len, r.data.as_slice()))
                .collect();
            let want: Vec<(u32, &[u8])> = want
                .iter()
                .map(|r| (r.orig_len, r.data.as_slice()))
                .collect();
            assert!(
                got == want,
                "from {sender}: tap {} packets, tcpdump {}",
                got.len(),
                want.len()
            );
        }
    }
}

#[test]
fn direction_in_on_bridge_ports_records_each_vm_to_vm_packet_once() {
    let b = Bridge::new();
    let dir = TempDir::new();
    let (socket, config, out) = (
        dir.join("ctl.sock"),
        dir.join("tap.toml"),
        dir.join("vms.pcap"),
    );
    std::fs::write(
        &config,
        format!(
            r#"[agent]
control_socket = "{}"

[[tap]]
name = "vms"
interfaces = ["{}*"]
hook = "tc"
direction = "in"
filter = "udp"
[tap.file]
path = "{}"
flush_interval_ms = 50
"#,
            socket.display(),
            b.prefix,
            out.display()
        ),
    )
    .unwrap();
    let mut agent = Agent::start(&b.host, &config, &socket);
    agent.wait_for_tap("vms", "capturing", 1);
    agent.wait_attached("vms", &[&b.ports[0], &b.ports[1]]);
    let dumps = b.tcpdumps(&dir);
    b.traffic(&dumps);
    wait_until(
        "tap to write the 29 datagrams",
        Duration::from_secs(10),
        || {
            std::fs::read(&out)
                .ok()
                .filter(|b| b.len() >= 24 && Pcap::parse_prefix(b).records.len() >= 29)
                .map(|_| ())
        },
    );
    let exited = agent.stop();
    assert!(
        !exited.stderr.contains("WARN") && !exited.stderr.contains("ERROR"),
        "{}",
        exited.stderr
    );
    b.assert_each_once(&Pcap::read(&out), dumps);
}

/// The same at the terminal: `tap capture -i 'vm*' -Q in`.
#[test]
fn capture_q_in_on_bridge_ports_records_each_vm_to_vm_packet_once() {
    let b = Bridge::new();
    let dir = TempDir::new();
    let out = dir.join("vms.pcap");
    let glob = format!("{}*", b.prefix);
    let dumps = b.tcpdumps(&dir);
    let tap = tap::start(
        &b.host,
        &["-i", &glob, "-Q", "in", "-w", &out.to_string_lossy(), "udp"],
    );
    b.traffic(&dumps);
    let exited = tap::stop(tap);
    assert_eq!(
        Summary::parse(&exited.stderr).captured,
        29,
        "{}",
        exited.stderr
    );
    b.assert_each_once(&Pcap::read(&out), dumps);
}
