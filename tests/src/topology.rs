//! A [`Topology`] guard: two network namespaces joined by a veth pair, removed on drop (also when
//! the test panics). Static neighbours and disabled IPv6 autoconfiguration keep the wire quiet,
//! so packet counts are exactly the test's own traffic.

use std::process::{Child, Command};

use crate::{require_root, run_ok, unique_suffix};

/// One network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Self {
        require_root();
        let name = format!("tap-{prefix}-{}", unique_suffix());
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self { name };
        ns.sh("ip link set lo up");
        ns
    }

    /// A command to run inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs a shell snippet inside the namespace; panics when it fails.
    pub fn sh(&self, script: &str) -> String {
        let out = run_ok(Command::new("ip").args(["netns", "exec", &self.name, "sh", "-c", script]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a shell snippet inside the namespace and returns whether it succeeded.
    pub fn sh_status(&self, script: &str) -> bool {
        Command::new("ip").args(["netns", "exec", &self.name, "sh", "-c", script]).status().is_ok_and(|s| s.success())
    }

    /// Starts a shell snippet in the background inside the namespace.
    pub fn spawn_sh(&self, script: &str) -> Child {
        Command::new("ip").args(["netns", "exec", &self.name, "sh", "-c", script]).spawn().expect("spawn in netns")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill whatever still runs inside, then delete: veth ends inside go with it.
        let _ = Command::new("sh")
            .args(["-c", &format!("ip netns pids {0} 2>/dev/null | xargs -r kill -9; ip netns del {0}", self.name)])
            .status();
    }
}

/// Addresses of the two ends (documentation ranges).
pub const A_V4: &str = "192.0.2.1";
pub const B_V4: &str = "192.0.2.2";
pub const A_V6: &str = "2001:db8::1";
pub const B_V6: &str = "2001:db8::2";

/// Two namespaces, `a` and `b`, joined by veth `a.iface` <-> `b.iface`, addressed with
/// [`A_V4`]/[`B_V4`] and [`A_V6`]/[`B_V6`], with static neighbours.
#[derive(Debug)]
pub struct Topology {
    pub a: Netns,
    pub b: Netns,
    /// Interface name in `a` (same name in `b`: each namespace has its own).
    pub a_if: String,
    pub b_if: String,
}

impl Topology {
    pub fn new() -> Self {
        Self::with_mtu(1500)
    }

    pub fn with_mtu(mtu: u32) -> Self {
        let a = Netns::new("a");
        let b = Netns::new("b");
        let a_if = "veth-a".to_string();
        let b_if = "veth-b".to_string();
        run_ok(Command::new("ip").args([
            "link", "add", &a_if, "netns", &a.name, "mtu", &mtu.to_string(), "type", "veth", "peer", "name", &b_if, "netns", &b.name,
            "mtu", &mtu.to_string(),
        ]));
        for (ns, ifname, v4, v6) in [(&a, &a_if, A_V4, A_V6), (&b, &b_if, B_V4, B_V6)] {
            ns.sh(&format!(
                "sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.{ifname}.accept_ra=0 net.ipv6.conf.{ifname}.autoconf=0 \
                 net.ipv6.conf.{ifname}.dad_transmits=0 net.ipv6.conf.{ifname}.addr_gen_mode=1 \
                 net.ipv6.conf.{ifname}.mldv2_unsolicited_report_interval=0 net.ipv6.conf.{ifname}.mldv1_unsolicited_report_interval=0 \
                 net.ipv6.conf.all.router_solicitations=0 net.ipv6.conf.{ifname}.router_solicitations=0 && \
                 ip link set {ifname} multicast off && \
                 ip addr add {v4}/24 dev {ifname} && ip -6 addr add {v6}/64 dev {ifname} nodad && ip link set {ifname} up"
            ));
        }
        let topo = Self { a, b, a_if, b_if };
        let mac_a = topo.a.sh(&format!("cat /sys/class/net/{}/address", topo.a_if)).trim().to_string();
        let mac_b = topo.b.sh(&format!("cat /sys/class/net/{}/address", topo.b_if)).trim().to_string();
        topo.a.sh(&format!(
            "ip neigh replace {B_V4} lladdr {mac_b} dev {0} nud permanent && ip -6 neigh replace {B_V6} lladdr {mac_b} dev {0} nud permanent",
            topo.a_if
        ));
        topo.b.sh(&format!(
            "ip neigh replace {A_V4} lladdr {mac_a} dev {0} nud permanent && ip -6 neigh replace {A_V6} lladdr {mac_a} dev {0} nud permanent",
            topo.b_if
        ));
        topo
    }
}

impl Default for Topology {
    fn default() -> Self {
        Self::new()
    }
}
