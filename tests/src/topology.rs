//! A [`Topology`] guard: two network namespaces joined by a veth pair, removed on drop (also when
//! the test panics). Static neighbours and disabled IPv6 autoconfiguration keep the wire quiet,
//! so packet counts are exactly the test's own traffic.

use std::{
    process::{Child, Command},
    time::Duration,
};

use crate::{require_root, run_ok, unique_suffix, wait_until};

/// True once `ifname` in `ns` is operationally up and has sent its unsolicited MLD reports.
fn mld_settled(ns: &Netns, ifname: &str) -> bool {
    // The robustness variable (how many times each report goes out) is global: only the initial
    // namespace, where the tests run, shows it.
    let robustness: u64 = std::fs::read_to_string("/proc/sys/net/ipv6/mld_qrv")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("reading /proc/sys/net/ipv6/mld_qrv");
    let state = ns.sh(&format!(
        "cat /sys/class/net/{ifname}/operstate; grep -w Icmp6OutMLDv2Reports /proc/net/dev_snmp6/{ifname}"
    ));
    let mut words = state.split_whitespace();
    let up = words.next() == Some("up");
    let sent: u64 = words
        .nth(1)
        .and_then(|w| w.parse().ok())
        .expect("Icmp6OutMLDv2Reports");
    up && sent >= robustness
}

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
        let out =
            run_ok(Command::new("ip").args(["netns", "exec", &self.name, "sh", "-c", script]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a shell snippet inside the namespace and returns whether it succeeded.
    pub fn sh_status(&self, script: &str) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", script])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts a shell snippet in the background inside the namespace.
    pub fn spawn_sh(&self, script: &str) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", script])
            .spawn()
            .expect("spawn in netns")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill whatever still runs inside, then delete: veth ends inside go with it.
        let _ = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "ip netns pids {0} 2>/dev/null | xargs -r kill -9; ip netns del {0}",
                    self.name
                ),
            ])
            .status();
    }
}

/// Addresses of the two ends (documentation ranges).
pub const A_V4: &str = "192.0.2.1";
pub const B_V4: &str = "192.0.2.2";
pub const A_V6: &str = "2001:db8::1";
pub const B_V6: &str = "2001:db8::2";

/// The addresses of the two ends of one link: /24 for IPv4, /64 for IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addrs {
    pub a_v4: &'static str,
    pub b_v4: &'static str,
    pub a_v6: &'static str,
    pub b_v6: &'static str,
}

/// The first link of every [`Topology`].
pub const FIRST: Addrs = Addrs {
    a_v4: A_V4,
    b_v4: B_V4,
    a_v6: A_V6,
    b_v6: B_V6,
};
/// A second link, for [`Topology::add_link`] (another documentation range).
pub const SECOND: Addrs = Addrs {
    a_v4: "198.51.100.1",
    b_v4: "198.51.100.2",
    a_v6: "2001:db8:1::1",
    b_v6: "2001:db8:1::2",
};

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

    /// A topology whose link has this MTU in bytes on both ends (9000 for jumbo frames).
    pub fn with_mtu(mtu: u32) -> Self {
        let topo = Self {
            a: Netns::new("a"),
            b: Netns::new("b"),
            a_if: "veth-a".into(),
            b_if: "veth-b".into(),
        };
        topo.connect(&topo.a_if, &topo.b_if, mtu, &FIRST);
        topo
    }

    /// Adds another veth pair between `a` and `b`, named `a_if` in `a` and `b_if` in `b`.
    pub fn add_link(&self, a_if: &str, b_if: &str, addrs: &Addrs) {
        self.connect(a_if, b_if, 1500, addrs);
    }

    fn connect(&self, a_if: &str, b_if: &str, mtu: u32, addrs: &Addrs) {
        let link = format!(
            "link add {a_if} netns {} mtu {mtu} type veth peer name {b_if} netns {} mtu {mtu}",
            self.a.name, self.b.name
        );
        run_ok(Command::new("ip").args(link.split_whitespace()));
        for (ns, ifname, v4, v6) in [
            (&self.a, a_if, addrs.a_v4, addrs.a_v6),
            (&self.b, b_if, addrs.b_v4, addrs.b_v6),
        ] {
            ns.sh(&format!(
                "sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.{ifname}.accept_ra=0 net.ipv6.conf.{ifname}.autoconf=0 \
                 net.ipv6.conf.{ifname}.dad_transmits=0 net.ipv6.conf.{ifname}.addr_gen_mode=1 \
                 net.ipv6.conf.{ifname}.mldv2_unsolicited_report_interval=0 net.ipv6.conf.{ifname}.mldv1_unsolicited_report_interval=0 \
                 net.ipv6.conf.all.router_solicitations=0 net.ipv6.conf.{ifname}.router_solicitations=0 && \
                 ip link set {ifname} multicast off && \
                 ip addr add {v4}/24 dev {ifname} && ip -6 addr add {v6}/64 dev {ifname} nodad && ip link set {ifname} up"
            ));
        }
        let mac_a = self
            .a
            .sh(&format!("cat /sys/class/net/{a_if}/address"))
            .trim()
            .to_string();
        let mac_b = self
            .b
            .sh(&format!("cat /sys/class/net/{b_if}/address"))
            .trim()
            .to_string();
        self.a.sh(&format!(
            "ip neigh replace {} lladdr {mac_b} dev {a_if} nud permanent && ip -6 neigh replace {} lladdr {mac_b} dev {a_if} nud permanent",
            addrs.b_v4, addrs.b_v6
        ));
        self.b.sh(&format!(
            "ip neigh replace {} lladdr {mac_a} dev {b_if} nud permanent && ip -6 neigh replace {} lladdr {mac_a} dev {b_if} nud permanent",
            addrs.a_v4, addrs.a_v6
        ));
        // Joining the solicited-node group of the IPv6 address sends MLD reports (the kernel offers
        // no way to turn them off), and they leave only once the link is operationally up, which
        // the kernel's link watcher may settle up to a second later: wait until each end has sent
        // all of them (the robustness variable's count), so none lands in a test's capture.
        wait_until(
            "the MLD reports of a new link",
            Duration::from_secs(10),
            || {
                [(&self.a, a_if), (&self.b, b_if)]
                    .iter()
                    .all(|(ns, ifname)| mld_settled(ns, ifname))
                    .then_some(())
            },
        );
    }
}

impl Default for Topology {
    fn default() -> Self {
        Self::new()
    }
}
