//! A vTAP on a Linux bridge: a tap on every VM port with `direction = "in"` records each
//! VM-to-VM packet once, where it enters the bridge, and not a second time where it leaves by the
//! receiver's port. The oracle is tcpdump `-Q in` on each port.

use std::{process::Command, time::Duration};

use tap_tests::{
    Netns, TempDir,
    agent::Agent,
    oracle::Tcpdump,
    pcap::{Kind, Pcap, Record},
    run_ok, traffic, unique_suffix, wait_until,
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

#[test]
fn direction_in_on_bridge_ports_records_each_vm_to_vm_packet_once() {
    let host = Netns::new("host");
    host.sh(
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 && \
         ip link add br0 type bridge && ip link set br0 up",
    );
    // Port names are per namespace, but unique anyway (the pid is in them).
    let prefix = format!("vm{}", unique_suffix());
    let (port1, port2) = (format!("{prefix}a"), format!("{prefix}b"));
    let (ip1, ip2) = ("192.0.2.11", "192.0.2.12");
    let vm1 = plug_vm(&host, &port1, ip1);
    let vm2 = plug_vm(&host, &port2, ip2);
    // Static neighbours: no ARP, only the test's datagrams cross the bridge.
    let (mac1, mac2) = (mac(&vm1, "eth0"), mac(&vm2, "eth0"));
    vm1.sh(&format!(
        "ip neigh replace {ip2} lladdr {mac2} dev eth0 nud permanent"
    ));
    vm2.sh(&format!(
        "ip neigh replace {ip1} lladdr {mac1} dev eth0 nud permanent"
    ));

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
interfaces = ["{prefix}*"]
hook = "tc"
direction = "in"
filter = "udp"
[tap.file]
path = "{}"
flush_interval_ms = 50
"#,
            socket.display(),
            out.display()
        ),
    )
    .unwrap();
    let mut agent = Agent::start(&host, &config, &socket);
    agent.wait_for_tap("vms", "capturing", 1);
    agent.wait_attached("vms", &[&port1, &port2]);
    let dumps: Vec<Tcpdump> = [&port1, &port2]
        .iter()
        .map(|port| {
            Tcpdump::start(
                &host,
                port,
                dir.join(&format!("{port}-in.pcap")),
                &["-Q", "in"],
            )
        })
        .collect();

    // Each way across the bridge: every datagram enters by the sender's port and leaves by the
    // receiver's, two hooks of the tapped set.
    traffic::udp_burst(&vm1, ip2, 20, 200);
    traffic::udp_burst(&vm2, ip1, 9, 300);
    for d in &dumps {
        d.wait_quiet(Duration::from_millis(500));
    }
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
    let tap = Pcap::read(&out);
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
    // Per sender, the same packets in the same order, byte for byte, as tcpdump saw entering.
    for (sender, want) in [(&mac1, &oracle[0]), (&mac2, &oracle[1])] {
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
    drop((vm1, vm2));
}
