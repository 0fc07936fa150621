//! The rtnetlink inventory reader on a real bridge: a "hypervisor" namespace with a Linux bridge
//! and a veth port whose other end is a "VM" namespace. The VM's MAC, once the bridge has learned
//! it from the VM's first packet, is attributed to its port, and its IP through the hypervisor's
//! neighbour entry; the port going away takes the session off it. Events wake the reader.

use std::{
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

use tap::fleet::{
    inventory::{Inventory, LinkKind},
    netlink::{InventoryEvents, read_inventory},
    owners::Ownership,
    reconcile::{HostSettings, reconcile},
    session::{Direction, FORMAT_VERSION, RawSession, validate},
};
use tap_tests::Netns;

const VM_MAC: &str = "02:00:5e:00:53:01";
const VM_MAC_BYTES: [u8; 6] = [0x02, 0, 0x5e, 0, 0x53, 0x01];

/// Runs `f` on a thread inside namespace `ns` (so its sockets are that namespace's).
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns changes only this thread's network namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("the namespace thread")
}

fn session(name: &str, source: &str) -> tap::fleet::session::Session {
    validate(RawSession {
        version: FORMAT_VERSION,
        tenant: "acme".into(),
        name: name.into(),
        source: source.into(),
        direction: Direction::Both,
        filter: String::new(),
        snaplen: 0,
        priority: 100,
        target: "vxlan://203.0.113.9?vni=1".into(),
    })
    .unwrap()
}

fn owners() -> Ownership {
    let acme = br#"{"tenant":"acme"}"#.as_slice();
    Ownership::from_entries([("mac:02:00:5e:00:53:01", acme), ("ip:192.0.2.0/24", acme)])
}

fn port_of_vm(inv: &Inventory) -> Option<String> {
    let e = inv.fdb.iter().find(|e| e.mac == VM_MAC_BYTES && !e.local)?;
    inv.link(e.port).map(|l| l.name.clone())
}

#[test]
fn a_mac_learned_behind_a_bridge_port_is_attributed_to_that_port() {
    let hv = Netns::new("hv");
    let vm = Netns::new("vm");
    hv.sh(&format!(
        "ip link add br0 type bridge && ip link set br0 up && ip addr add 192.0.2.1/24 dev br0 && \
         ip link add vm1p type veth peer name eth0 netns {} && ip link set vm1p master br0 && ip link set vm1p up",
        vm.name
    ));
    // No IPv6 in the VM: its first packet is the test's ping, not a router solicitation.
    vm.sh(&format!(
        "sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1 && ip link set eth0 address {VM_MAC} && \
         ip addr add 192.0.2.11/24 dev eth0 && ip link set eth0 up"
    ));

    let hv_name = hv.name.clone();
    let vm_name = vm.name.clone();
    let (before, after, woke_after) = in_netns(&hv_name, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut events = InventoryEvents::open().expect("rtnetlink events");
            let before = read_inventory().expect("inventory");
            // Drain what setting up the namespace left queued.
            while tokio::time::timeout(Duration::from_millis(300), events.changed())
                .await
                .is_ok()
            {}
            // The VM's first packet teaches the bridge its MAC; the event is awaited while the
            // ping runs.
            let sent = Instant::now();
            let mut ping = std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &vm_name,
                    "ping",
                    "-c",
                    "1",
                    "-W",
                    "2",
                    "192.0.2.1",
                ])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("ping");
            // Bounded: 50 events or 10 s each.
            let mut woke = None;
            let mut after = read_inventory().unwrap();
            for _ in 0..50 {
                if port_of_vm(&after).is_some() {
                    break;
                }
                tokio::time::timeout(Duration::from_secs(10), events.changed())
                    .await
                    .expect("an FDB event within 10 s")
                    .expect("events");
                woke.get_or_insert_with(|| sent.elapsed());
                after = read_inventory().unwrap();
            }
            assert!(ping.wait().expect("ping").success(), "ping failed");
            (before, after, woke)
        })
    });
    // What starting `ip netns exec ... ping` and its first packet cost, and the event: an upper
    // bound on how late a MAC behind a new port is noticed.
    eprintln!("first inventory event {woke_after:?} after starting the VM's ping");

    // Before any packet the bridge knows only its own port addresses.
    assert_eq!(port_of_vm(&before), None, "{before:#?}");
    let br = before.links.iter().find(|l| l.name == "br0").expect("br0");
    assert_eq!(br.kind, LinkKind::Bridge);
    let port = before
        .links
        .iter()
        .find(|l| l.name == "vm1p")
        .expect("vm1p");
    assert_eq!(
        (port.kind.clone(), port.master),
        (LinkKind::Veth, Some(br.index))
    );

    assert_eq!(port_of_vm(&after).as_deref(), Some("vm1p"), "{after:#?}");
    assert!(
        after
            .neighbours
            .iter()
            .any(|n| n.mac == VM_MAC_BYTES && n.ip == std::net::IpAddr::from([192, 0, 2, 11])),
        "the hypervisor answered the VM: it has a neighbour entry: {after:#?}"
    );
    let settings = HostSettings {
        host: "hv".into(),
        uplinks: Vec::new(),
    };
    let sessions = [
        session("bymac", &format!("mac:{VM_MAC}")),
        session("byip", "ip:192.0.2.11"),
    ];
    let plan = reconcile(&settings, &sessions, &owners(), &after);
    let mut on: Vec<(String, String)> = plan
        .captures
        .iter()
        .flat_map(|c| {
            c.rules
                .iter()
                .map(|r| (r.session.name.clone(), c.interface.name.clone()))
        })
        .collect();
    on.sort();
    assert_eq!(
        on,
        [
            ("byip".to_string(), "vm1p".to_string()),
            ("bymac".to_string(), "vm1p".to_string())
        ],
        "{plan:#?}"
    );

    // The port goes (the VM moves away): its entries go with it.
    hv.sh("ip link del vm1p");
    let gone = in_netns(&hv_name, || read_inventory().unwrap());
    assert_eq!(port_of_vm(&gone), None, "{gone:#?}");
    assert!(
        reconcile(&settings, &sessions, &owners(), &gone)
            .captures
            .is_empty()
    );
}
