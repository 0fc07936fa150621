//! Drop counts where Wireshark looks: a pcapng capture of two interfaces, one of which a burst
//! overflows (a one-page ring), reports each interface and hook's own counters in its interface
//! statistics block: what the program saw (`isb_ifrecv`, equal to what tcpdump saw arriving on
//! that interface), selected, lost to the full ring (`isb_ifdrop`, which Wireshark's capture
//! file properties show as the interface's dropped packets) and wrote. The interface that was
//! quiet during the burst lost nothing; the per-interface counts add up to the summary's
//! capture-wide ones. capinfos and tshark read the file and its statistics blocks cleanly.
//! The agent's metrics carry the same per-interface counters.

use std::{path::Path, time::Duration};

use tap_tests::{
    TempDir, Topology,
    agent::{Agent, scrape},
    oracle::{Tcpdump, capinfos, tshark_fields},
    storage_util::{ISB_FILTERACCEPT, ISB_IFDROP, ISB_IFRECV, ISB_OSDROP, ISB_USRDELIV, Pcapng},
    tap::{self, Summary},
    topology::{B_V4, FIRST, SECOND},
    traffic, wait_until,
};

fn arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn pcapng_statistics_count_each_interface_and_hook() {
    let t = Topology::new();
    t.add_link("veth2-a", "veth2-b", &SECOND);
    let dir = TempDir::new();
    let file = dir.join("two.pcapng");
    // tcpdump counts what arrives on each interface: the oracle of isb_ifrecv. Its ring must
    // hold the whole burst (libpcap sizes its slots for 64 KiB offload packets here).
    let oracles = [&t.b_if, "veth2-b"].map(|iface| {
        Tcpdump::start(
            &t.b,
            iface,
            dir.join(&format!("{iface}.pcap")),
            &["-Q", "in", "-B", "131072"],
        )
    });
    let tap = tap::start(
        &t.b,
        &[
            "-i",
            &t.b_if,
            "-i",
            "veth2-b",
            "--ring-size",
            "4096",
            "-w",
            &arg(&file),
        ],
    );
    // A one-page ring holds two of these: the burst overflows it.
    let burst: u32 = 600;
    traffic::udp_burst(&t.a, B_V4, burst, 1400);
    wait_until("tcpdump to see the burst", Duration::from_secs(20), || {
        (oracles[0].records() >= burst as usize).then_some(())
    });
    // The drain empties the ring at its next poll or wake-up; then the other interface's
    // traffic finds room.
    std::thread::sleep(Duration::from_millis(1500));
    traffic::ping(&t.a, SECOND.b_v4, 3, &[]);
    oracles[1].wait_quiet(Duration::from_millis(500));
    oracles[0].wait_quiet(Duration::from_millis(500));
    let summary = Summary::parse(&tap::stop(tap).stderr);
    let [seen_b, seen_b2] = oracles.map(|o| o.stop().records.len() as u64);
    assert!(
        summary.ring_dropped > 0,
        "the burst overflowed nothing: {summary:?}"
    );

    let ng = Pcapng::read(&file);
    let names: Vec<String> = ng
        .interfaces
        .iter()
        .map(|i| i.description.clone())
        .collect();
    let id = |desc: &str| {
        names
            .iter()
            .position(|d| d == desc)
            .unwrap_or_else(|| panic!("no interface {desc} in {names:?}")) as u32
    };
    let (b_in, b_out) = (id("veth-b (tc-ingress)"), id("veth-b (tc-egress)"));
    let (b2_in, b2_out) = (id("veth2-b (tc-ingress)"), id("veth2-b (tc-egress)"));
    let stat = |i: u32, code: u16| {
        ng.stat(i, code)
            .unwrap_or_else(|| panic!("interface {i} has no option {code}"))
    };
    for i in 0..names.len() as u32 {
        assert_eq!(
            ng.stats.iter().filter(|(id, _, _)| *id == i).count(),
            1,
            "one statistics block for interface {i}"
        );
    }

    // What each program saw arriving is what tcpdump saw arriving there.
    assert_eq!(stat(b_in, ISB_IFRECV), seen_b, "veth-b in: seen");
    assert_eq!(stat(b2_in, ISB_IFRECV), seen_b2, "veth2-b in: seen");
    // The burst's interface lost what did not fit; the quiet one lost nothing.
    assert!(stat(b_in, ISB_IFDROP) > 0);
    assert_eq!(stat(b2_in, ISB_IFDROP), 0, "veth2-b in: nothing lost");
    assert_eq!(stat(b2_out, ISB_IFDROP), 0, "veth2-b out: nothing lost");
    for i in [b_in, b_out, b2_in, b2_out] {
        // No filter: everything seen is selected, and either written or lost to the ring.
        assert_eq!(stat(i, ISB_FILTERACCEPT), stat(i, ISB_IFRECV), "{i}");
        assert_eq!(
            stat(i, ISB_FILTERACCEPT),
            stat(i, ISB_USRDELIV) + stat(i, ISB_IFDROP) + stat(i, ISB_OSDROP),
            "interface {i}: selected = written + lost"
        );
    }
    assert_eq!(stat(b2_in, ISB_USRDELIV), 3, "the three echo requests");
    // The per-interface counts add up to the capture-wide ones of the summary.
    let sum = |code: u16| -> u64 { (0..names.len() as u32).map(|i| stat(i, code)).sum() };
    assert_eq!(sum(ISB_IFDROP), summary.ring_dropped);
    assert_eq!(sum(ISB_FILTERACCEPT), summary.received);
    assert_eq!(sum(ISB_USRDELIV), summary.captured);
    assert_eq!(sum(ISB_OSDROP), summary.writer_dropped);

    // Wireshark's readers: capinfos lists each interface with its statistics block and the
    // packets it holds, tshark reads every packet under its interface.
    let info = capinfos(&file);
    assert!(info.contains("Number of interfaces in file: 4"), "{info}");
    assert_eq!(
        info.matches("Number of stat entries = 1").count(),
        4,
        "{info}"
    );
    let rows = tshark_fields(&file, &["frame.interface_id"]);
    assert_eq!(rows.len() as u64, summary.captured);
    for i in [b_in, b2_in] {
        let in_file = rows.iter().filter(|r| r[0] == i.to_string()).count() as u64;
        assert_eq!(
            in_file,
            stat(i, ISB_USRDELIV),
            "interface {i}: packets in the file"
        );
        assert!(
            info.contains(&format!("Number of packets = {in_file}")),
            "capinfos counts interface {i}'s {in_file} packets:\n{info}"
        );
    }
}

#[test]
fn agent_metrics_count_each_interface_and_hook() {
    const METRICS: &str = "127.0.0.1:9751";
    let t = Topology::new();
    t.add_link("veth2-a", "veth2-b", &SECOND);
    let dir = TempDir::new();
    let (socket, config) = (dir.join("ctl.sock"), dir.join("tap.toml"));
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
control_socket = "{socket}"
metrics_listen = "{METRICS}"

[[tap]]
name = "both"
interfaces = ["{b_if}", "veth2-b"]
hook = "tc"
filter = "icmp"
[tap.file]
path = "{d}/both.pcap"
flush_interval_ms = 50
"#,
            socket = socket.display(),
            b_if = t.b_if,
            d = dir.path().display(),
        ),
    )
    .unwrap();
    let mut agent = Agent::start(&t.b, &config, &socket);
    agent.wait_for_tap("both", "capturing", 1);
    agent.wait_attached("both", &["veth-b", "veth2-b"]);
    traffic::ping(&t.a, FIRST.b_v4, 4, &[]);
    traffic::ping(&t.a, SECOND.b_v4, 6, &[]);
    let get = |m: &tap_tests::agent::Metrics, name: &str, iface: &str, hook: &str| {
        m.get(
            name,
            &format!("tap=\"both\",interface=\"{iface}\",hook=\"{hook}\""),
        )
    };
    let m = wait_until("the echoes counted", Duration::from_secs(15), || {
        let m = scrape(&t.b, METRICS);
        (m.get("tap_packets_written_total", "tap=\"both\"") == Some(20.0)).then_some(m)
    });
    for (iface, n) in [("veth-b", 4.0), ("veth2-b", 6.0)] {
        for hook in ["tc-ingress", "tc-egress"] {
            assert_eq!(
                get(&m, "tap_interface_packets_matched_total", iface, hook),
                Some(n),
                "{iface} {hook}: the echo requests in, the replies out:\n{}",
                m.text
            );
            assert!(
                get(&m, "tap_interface_packets_seen_total", iface, hook) >= Some(n),
                "{}",
                m.text
            );
            assert_eq!(
                get(&m, "tap_interface_ring_drops_total", iface, hook),
                Some(0.0),
                "{}",
                m.text
            );
        }
    }
    agent.stop();
}
