//! The reconciler's decisions on inventories built by hand; the combined filters are checked by
//! running frames through the reference evaluator, so "rule i is session i" and "the lower
//! priority number wins" are shown on packets, not on strings.

use std::net::IpAddr;

use super::*;
use crate::fleet::{
    inventory::{Address, FdbEntry, Link, Neighbour},
    session::{DEFAULT_PRIORITY, FORMAT_VERSION, RawSession, validate},
};

const VM1: [u8; 6] = [0x02, 0, 0x5e, 0, 0x53, 0x01];
const VM2: [u8; 6] = [0x02, 0, 0x5e, 0, 0x53, 0x02];
const REMOTE: [u8; 6] = [0x02, 0, 0x5e, 0, 0x53, 0x09];
const HOSTMAC: [u8; 6] = [0x02, 0, 0x5e, 0, 0x53, 0xaa];
const PEER: [u8; 6] = [0x02, 0, 0x5e, 0, 0x53, 0xbb];

const BR: u32 = 2;
const VM1P: u32 = 3;
const VM2P: u32 = 4;
const UPLINK: u32 = 5;
const ETH0: u32 = 6;

fn link(index: u32, name: &str, kind: LinkKind, master: Option<u32>, mac: [u8; 6]) -> Link {
    Link {
        index,
        name: name.into(),
        mac: Some(mac),
        kind,
        master,
    }
}

fn fdb(mac: [u8; 6], port: u32, local: bool) -> FdbEntry {
    FdbEntry {
        mac,
        port,
        bridge: Some(BR),
        vlan: None,
        local,
    }
}

/// A hypervisor: bridge br0 with VM ports vm1p and vm2p (veth) and an uplink (veth too, named as
/// an uplink), and a plain eth0 that is the host's own interface.
fn hypervisor() -> Inventory {
    Inventory {
        links: vec![
            link(BR, "br0", LinkKind::Bridge, None, [2, 0, 0, 0, 0, 0x10]),
            link(
                VM1P,
                "vm1p",
                LinkKind::Veth,
                Some(BR),
                [2, 0, 0, 0, 0, 0x11],
            ),
            link(VM2P, "vm2p", LinkKind::Tun, Some(BR), [2, 0, 0, 0, 0, 0x12]),
            link(
                UPLINK,
                "up0",
                LinkKind::Veth,
                Some(BR),
                [2, 0, 0, 0, 0, 0x13],
            ),
            link(ETH0, "eth0", LinkKind::Other(String::new()), None, HOSTMAC),
        ],
        addresses: vec![
            Address {
                index: BR,
                addr: "192.0.2.1".parse().unwrap(),
                prefix: 24,
            },
            Address {
                index: ETH0,
                addr: "198.51.100.5".parse().unwrap(),
                prefix: 24,
            },
        ],
        fdb: vec![
            fdb(VM1, VM1P, false),
            fdb(VM2, VM2P, false),
            fdb(REMOTE, UPLINK, false),
            // The host's own port addresses.
            fdb([2, 0, 0, 0, 0, 0x11], VM1P, true),
            fdb([2, 0, 0, 0, 0, 0x12], VM2P, true),
        ],
        neighbours: vec![Neighbour {
            index: BR,
            ip: "192.0.2.11".parse().unwrap(),
            mac: VM1,
        }],
    }
}

fn settings() -> HostSettings {
    HostSettings {
        host: "hv1".into(),
        uplinks: vec!["up*".into()],
    }
}

fn session(
    tenant: &str,
    name: &str,
    source: &str,
    dir: Direction,
    filter: &str,
    prio: u32,
) -> Session {
    validate(RawSession {
        version: FORMAT_VERSION,
        tenant: tenant.into(),
        name: name.into(),
        source: source.into(),
        direction: dir,
        filter: filter.into(),
        snaplen: 0,
        priority: prio,
        target: "vxlan://203.0.113.9?vni=1".into(),
    })
    .unwrap()
}

fn id(tenant: &str, name: &str) -> SessionId {
    SessionId {
        tenant: tenant.into(),
        name: name.into(),
    }
}

/// acme owns VM1, VM2, 192.0.2.0/24, vm* on hv1; bravo owns the remote MAC.
fn owners() -> Ownership {
    let acme = br#"{"tenant":"acme"}"#.as_slice();
    let bravo = br#"{"tenant":"bravo"}"#.as_slice();
    Ownership::from_entries([
        ("mac:02:00:5e:00:53:01", acme),
        ("mac:02:00:5e:00:53:02", acme),
        ("mac:02:00:5e:00:53:aa", acme),
        ("mac:02:00:5e:00:53:09", bravo),
        ("ip:192.0.2.0/24", acme),
        ("iface:hv1:vm*", acme),
    ])
}

/// Ethernet + IPv4 + the first 8 bytes of TCP (6) or UDP (17), ports 1000 -> 80.
fn frame(dst: [u8; 6], src: [u8; 6], proto: u8, ip_src: &str, ip_dst: &str) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (ip_src.parse().unwrap(), ip_dst.parse().unwrap()) else {
        panic!("IPv4")
    };
    let mut f = Vec::new();
    f.extend(dst);
    f.extend(src);
    f.extend([0x08, 0x00]);
    let l4_len: u16 = if proto == 6 { 20 } else { 8 };
    f.extend([0x45, 0]);
    f.extend((20 + l4_len).to_be_bytes());
    f.extend([0, 0, 0x40, 0, 64, proto, 0, 0]);
    f.extend(s.octets());
    f.extend(d.octets());
    f.extend(1000u16.to_be_bytes());
    f.extend(80u16.to_be_bytes());
    f.extend(vec![0u8; usize::from(l4_len) - 4]);
    if proto == 6 {
        f[14 + 20 + 12] = 0x50;
    }
    f
}

/// The session the capture's filter hands `frame` to.
fn winner(c: &LocalCapture, frame: &[u8]) -> Option<SessionId> {
    let compiled = crate::filter::compile(&c.filter.expression)
        .unwrap()
        .unwrap();
    crate::filter::eval::eval(&compiled, frame).map(|r| c.rules[usize::from(r)].session.clone())
}

fn capture_on(plan: &Plan, ifindex: u32) -> Vec<&LocalCapture> {
    plan.captures
        .iter()
        .filter(|c| c.interface.ifindex == ifindex)
        .collect()
}

#[test]
fn a_mac_learned_on_a_port_is_mirrored_there_in_both_directions() {
    let s = session(
        "acme",
        "web",
        "mac:02:00:5e:00:53:01",
        Direction::Both,
        "",
        100,
    );
    let plan = reconcile(&settings(), &[s], &owners(), &hypervisor());
    assert_eq!(plan.captures.len(), 1, "{plan:#?}");
    let c = &plan.captures[0];
    assert_eq!(c.interface.name, "vm1p");
    assert_eq!(c.hooks, [Hook::TcIngress, Hook::TcEgress]);
    assert_eq!(
        c.rules,
        [RuleTarget {
            session: id("acme", "web"),
            snaplen: tap_common::config::DEFAULT_SNAPLEN
        }]
    );
    let from = frame(PEER, VM1, 17, "192.0.2.11", "192.0.2.20");
    let to = frame(VM1, PEER, 17, "192.0.2.20", "192.0.2.11");
    let other = frame(PEER, VM2, 17, "192.0.2.12", "192.0.2.20");
    assert_eq!(winner(c, &from), Some(id("acme", "web")));
    assert_eq!(winner(c, &to), Some(id("acme", "web")));
    assert_eq!(winner(c, &other), None);
    let sp = &plan.sessions[&id("acme", "web")];
    assert_eq!(sp.attachments.len(), 1);
    assert!(sp.refused.is_none() && sp.errors.is_empty());
}

#[test]
fn directions_pick_the_hook_by_how_the_interface_faces_the_workload() {
    let out = session(
        "acme",
        "out",
        "mac:02:00:5e:00:53:01",
        Direction::Out,
        "",
        100,
    );
    let inn = session(
        "acme",
        "in",
        "mac:02:00:5e:00:53:02",
        Direction::In,
        "",
        100,
    );
    let own = session(
        "acme",
        "own",
        "mac:02:00:5e:00:53:aa",
        Direction::Out,
        "",
        100,
    );
    let plan = reconcile(&settings(), &[out, inn, own], &owners(), &hypervisor());
    let hooks_of = |ifindex| {
        let c = capture_on(&plan, ifindex);
        assert_eq!(c.len(), 1, "{plan:#?}");
        c[0].hooks.clone()
    };
    // A port: the workload's out is what enters the port.
    assert_eq!(hooks_of(VM1P), [Hook::TcIngress]);
    assert_eq!(hooks_of(VM2P), [Hook::TcEgress]);
    // The workload's own interface: its out is what the interface sends.
    assert_eq!(hooks_of(ETH0), [Hook::TcEgress]);
    let c = capture_on(&plan, VM1P)[0];
    assert_eq!(
        winner(c, &frame(PEER, VM1, 6, "192.0.2.11", "192.0.2.2")),
        Some(id("acme", "out"))
    );
    // `out` does not take what the workload receives, even on the same hook.
    assert_eq!(
        winner(c, &frame(VM1, PEER, 6, "192.0.2.2", "192.0.2.11")),
        None
    );
}

#[test]
fn uplinks_permanent_entries_and_unbridged_links_do_not_carry_a_workload() {
    let mut inv = hypervisor();
    // A veth that is no bridge's port, with an FDB entry (a device's own list).
    inv.links.push(link(
        7,
        "loose",
        LinkKind::Veth,
        None,
        [2, 0, 0, 0, 0, 0x17],
    ));
    inv.fdb.push(FdbEntry {
        mac: VM2,
        port: 7,
        bridge: None,
        vlan: None,
        local: false,
    });
    let remote = session(
        "bravo",
        "remote",
        "mac:02:00:5e:00:53:09",
        Direction::Both,
        "",
        1,
    );
    let port_own = session(
        "acme",
        "portmac",
        "mac:02:00:00:00:00:11",
        Direction::Both,
        "",
        1,
    );
    let vm2 = session(
        "acme",
        "vm2",
        "mac:02:00:5e:00:53:02",
        Direction::Both,
        "",
        1,
    );
    let plan = reconcile(&settings(), &[remote, port_own, vm2], &owners(), &inv);
    assert!(
        !plan.sessions[&id("bravo", "remote")].present(),
        "{plan:#?}"
    );
    assert!(
        !plan.sessions[&id("acme", "portmac")].present(),
        "{plan:#?}"
    );
    let vm2 = &plan.sessions[&id("acme", "vm2")];
    assert_eq!(vm2.attachments.len(), 1);
    assert_eq!(vm2.attachments[0].interface.name, "vm2p");
    // Without the uplink setting the uplink is a veth port like any other.
    let remote = session(
        "bravo",
        "remote",
        "mac:02:00:5e:00:53:09",
        Direction::Both,
        "",
        1,
    );
    let plan = reconcile(
        &HostSettings {
            host: "hv1".into(),
            uplinks: vec![],
        },
        &[remote],
        &owners(),
        &inv,
    );
    assert_eq!(plan.captures.len(), 1);
    assert_eq!(plan.captures[0].interface.name, "up0");
}

#[test]
fn an_ip_is_found_on_an_own_address_or_through_a_neighbour_and_the_fdb() {
    let s = session("acme", "vm1ip", "ip:192.0.2.11", Direction::Both, "", 100);
    let plan = reconcile(&settings(), &[s], &owners(), &hypervisor());
    assert_eq!(plan.captures.len(), 1, "{plan:#?}");
    let c = &plan.captures[0];
    assert_eq!(c.interface.name, "vm1p");
    assert_eq!(
        winner(c, &frame(PEER, VM1, 17, "192.0.2.11", "192.0.2.1")),
        Some(id("acme", "vm1ip"))
    );
    assert_eq!(
        winner(c, &frame(PEER, VM1, 17, "192.0.2.99", "192.0.2.1")),
        None
    );

    // The subnet: the bridge's own address is in it (own interface), and VM1 through its
    // neighbour entry.
    let s = session("acme", "net", "ip:192.0.2.0/24", Direction::Out, "", 100);
    let plan = reconcile(&settings(), &[s], &owners(), &hypervisor());
    let mut names: Vec<(&str, Vec<Hook>)> = plan
        .captures
        .iter()
        .map(|c| (c.interface.name.as_str(), c.hooks.clone()))
        .collect();
    names.sort_by_key(|n| n.0);
    assert_eq!(
        names,
        [
            ("br0", vec![Hook::TcEgress]),
            ("vm1p", vec![Hook::TcIngress])
        ]
    );
}

#[test]
fn the_lower_priority_number_wins_and_rules_stay_apart() {
    let tcp = session(
        "acme",
        "tcp",
        "mac:02:00:5e:00:53:01",
        Direction::Both,
        "tcp",
        10,
    );
    let all = session(
        "acme",
        "all",
        "mac:02:00:5e:00:53:01",
        Direction::Both,
        "",
        20,
    );
    let plan = reconcile(
        &settings(),
        &[all.clone(), tcp.clone()],
        &owners(),
        &hypervisor(),
    );
    let c = &plan.captures[0];
    assert_eq!(
        c.rules
            .iter()
            .map(|r| r.session.clone())
            .collect::<Vec<_>>(),
        [id("acme", "tcp"), id("acme", "all")]
    );
    let t = frame(PEER, VM1, 6, "192.0.2.11", "192.0.2.2");
    let u = frame(PEER, VM1, 17, "192.0.2.11", "192.0.2.2");
    assert_eq!(winner(c, &t), Some(id("acme", "tcp")));
    assert_eq!(winner(c, &u), Some(id("acme", "all")));

    // The other way round, "all" takes everything: "tcp" keeps its rule but never matches.
    let tcp = session(
        "acme",
        "tcp",
        "mac:02:00:5e:00:53:01",
        Direction::Both,
        "tcp",
        30,
    );
    let plan = reconcile(&settings(), &[all, tcp], &owners(), &hypervisor());
    let c = &plan.captures[0];
    assert_eq!(winner(c, &t), Some(id("acme", "all")));

    // Two bare sessions on one port (two MACs behind it): separate rules, each its packets,
    // although the compiler would merge two lone `ether host` tests into one set.
    let mut inv = hypervisor();
    inv.fdb.push(fdb(VM2, VM1P, false));
    let a = session("acme", "a", "mac:02:00:5e:00:53:01", Direction::Both, "", 1);
    let b = session("acme", "b", "mac:02:00:5e:00:53:02", Direction::Both, "", 2);
    let plan = reconcile(&settings(), &[a, b], &owners(), &inv);
    let c = capture_on(&plan, VM1P)[0];
    assert_eq!(c.rules.len(), 2);
    assert_eq!(
        winner(c, &frame(PEER, VM1, 17, "192.0.2.11", "192.0.2.2")),
        Some(id("acme", "a"))
    );
    assert_eq!(
        winner(c, &frame(PEER, VM2, 17, "192.0.2.12", "192.0.2.2")),
        Some(id("acme", "b"))
    );
}

#[test]
fn equal_priorities_order_by_tenant_then_name() {
    let b = session(
        "acme",
        "b",
        "mac:02:00:5e:00:53:01",
        Direction::Both,
        "udp",
        DEFAULT_PRIORITY,
    );
    let a = session(
        "acme",
        "a",
        "mac:02:00:5e:00:53:01",
        Direction::Both,
        "ip",
        DEFAULT_PRIORITY,
    );
    let plan = reconcile(&settings(), &[b, a], &owners(), &hypervisor());
    let c = &plan.captures[0];
    assert_eq!(c.rules[0].session, id("acme", "a"));
    assert_eq!(
        winner(c, &frame(PEER, VM1, 17, "192.0.2.11", "192.0.2.2")),
        Some(id("acme", "a"))
    );
}

#[test]
fn a_source_its_tenant_does_not_own_is_refused_with_the_reason() {
    let s = session(
        "bravo",
        "spy",
        "mac:02:00:5e:00:53:01",
        Direction::Both,
        "",
        1,
    );
    let plan = reconcile(&settings(), &[s], &owners(), &hypervisor());
    assert!(plan.captures.is_empty());
    let sp = &plan.sessions[&id("bravo", "spy")];
    assert_eq!(
        sp.refused.as_deref(),
        Some("tenant 'bravo' does not own mac:02:00:5e:00:53:01")
    );
    assert!(sp.present());
    // Not here at all: nothing to say.
    let s = session(
        "bravo",
        "away",
        "mac:02:00:5e:00:53:77",
        Direction::Both,
        "",
        1,
    );
    let plan = reconcile(&settings(), &[s], &owners(), &hypervisor());
    assert!(!plan.sessions[&id("bravo", "away")].present());
}

#[test]
fn interface_sources_need_this_host_and_each_interface_owned() {
    let s = session("acme", "ports", "iface:hv1:*", Direction::In, "", 1);
    let plan = reconcile(&settings(), &[s], &owners(), &hypervisor());
    let mut names: Vec<&str> = plan
        .captures
        .iter()
        .map(|c| c.interface.name.as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["vm1p", "vm2p"], "{plan:#?}");
    assert!(plan.captures.iter().all(|c| c.hooks == [Hook::TcEgress]));
    let sp = &plan.sessions[&id("acme", "ports")];
    assert!(
        sp.notes
            .iter()
            .any(|n| n.contains("does not own interface eth0")),
        "{sp:?}"
    );
    // An interface source takes every packet of its interface.
    let c = capture_on(&plan, VM2P)[0];
    assert_eq!(
        winner(c, &frame(VM2, PEER, 17, "203.0.113.1", "203.0.113.2")),
        Some(id("acme", "ports"))
    );

    let s = session("acme", "elsewhere", "iface:hv2:vm*", Direction::Both, "", 1);
    let plan = reconcile(&settings(), &[s], &owners(), &hypervisor());
    assert!(plan.captures.is_empty() && !plan.sessions[&id("acme", "elsewhere")].present());
    let s = session("bravo", "theirs", "iface:hv1:vm1p", Direction::Both, "", 1);
    let plan = reconcile(&settings(), &[s], &owners(), &hypervisor());
    assert!(plan.captures.is_empty());
    assert!(plan.sessions[&id("bravo", "theirs")].refused.is_some());
}

#[test]
fn identical_rules_are_shadowed_and_vlan_must_come_last() {
    let first = session(
        "acme",
        "first",
        "mac:02:00:5e:00:53:01",
        Direction::Both,
        "tcp",
        1,
    );
    let same = session(
        "acme",
        "same",
        "mac:02:00:5e:00:53:01",
        Direction::Both,
        "tcp",
        2,
    );
    let plan = reconcile(&settings(), &[first, same], &owners(), &hypervisor());
    assert_eq!(plan.captures[0].rules.len(), 1);
    let sp = &plan.sessions[&id("acme", "same")];
    assert!(sp.attachments.is_empty());
    assert!(
        sp.notes
            .iter()
            .any(|n| n.contains("shadowed by acme/first")),
        "{sp:?}"
    );

    let tagged = session(
        "acme",
        "tagged",
        "mac:02:00:5e:00:53:01",
        Direction::Both,
        "vlan 10",
        1,
    );
    let plain = session(
        "acme",
        "plain",
        "mac:02:00:5e:00:53:01",
        Direction::Both,
        "udp",
        2,
    );
    let plan = reconcile(
        &settings(),
        &[tagged.clone(), plain.clone()],
        &owners(),
        &hypervisor(),
    );
    assert_eq!(plan.captures.len(), 1, "{plan:#?}");
    assert_eq!(
        plan.captures[0].rules,
        [RuleTarget {
            session: id("acme", "plain"),
            snaplen: plain.snaplen
        }]
    );
    let sp = &plan.sessions[&id("acme", "tagged")];
    assert!(sp.errors.iter().any(|e| e.contains("'vlan'")), "{sp:?}");
    // Last, it is fine.
    let tagged = session(
        "acme",
        "tagged",
        "mac:02:00:5e:00:53:01",
        Direction::Both,
        "vlan 10",
        3,
    );
    let plan = reconcile(&settings(), &[tagged, plain], &owners(), &hypervisor());
    assert_eq!(plan.captures[0].rules.len(), 2);
}

#[test]
fn hooks_with_different_rules_get_a_capture_each_and_the_snap_length_is_the_widest() {
    let mut both = session(
        "acme",
        "both",
        "mac:02:00:5e:00:53:01",
        Direction::Both,
        "",
        1,
    );
    both.snaplen = 128;
    let mut out = session(
        "acme",
        "out",
        "mac:02:00:5e:00:53:01",
        Direction::Out,
        "udp",
        2,
    );
    out.snaplen = 96;
    let plan = reconcile(&settings(), &[both, out], &owners(), &hypervisor());
    let caps = capture_on(&plan, VM1P);
    assert_eq!(caps.len(), 2, "{plan:#?}");
    let ingress = caps.iter().find(|c| c.hooks == [Hook::TcIngress]).unwrap();
    let egress = caps.iter().find(|c| c.hooks == [Hook::TcEgress]).unwrap();
    assert_eq!(ingress.rules.len(), 2);
    assert_eq!(egress.rules.len(), 1);
    assert_eq!(ingress.snaplen, 128);
    assert_eq!(ingress.rules[1].snaplen, 96);
    // One attachment per session and interface, with every hook it has there.
    let sp = &plan.sessions[&id("acme", "both")];
    assert_eq!(sp.attachments.len(), 1);
    assert_eq!(sp.attachments[0].hooks, [Hook::TcIngress, Hook::TcEgress]);
}

#[test]
fn a_combination_too_large_for_the_kernel_is_an_error_not_a_partial_capture() {
    // Each session's filter alone fits; together they pass the graph's node limit.
    let big: Vec<String> = (0..60).map(|i| format!("port {}", 1000 + i * 2)).collect();
    let filter = format!("tcp and ({})", big.join(" and not "));
    let sessions: Vec<Session> = (0..8)
        .map(|i| {
            session(
                "acme",
                &format!("s{i}"),
                "mac:02:00:5e:00:53:01",
                Direction::Both,
                &format!("{filter} and not port {}", 5000 + i),
                i,
            )
        })
        .collect();
    let plan = reconcile(&settings(), &sessions, &owners(), &hypervisor());
    assert!(plan.captures.is_empty(), "{plan:#?}");
    let sp = &plan.sessions[&id("acme", "s0")];
    assert!(
        sp.errors.iter().any(|e| e.contains("combined filter")),
        "{sp:?}"
    );
}
