//! Mirrored traffic on a monitor port: `--decap` strips VXLAN, GENEVE, GRE and ERSPAN II/III so
//! filters see and files record the inner frames, each with its tunnel id (a pcapng packet
//! comment); `--consume` keeps the mirrored packets from the host's stack.
//!
//! The tunnels come from a real Linux VXLAN link, and from frames built by hand
//! ([`tap_tests::tunnels`]) replayed onto the monitor veth with tcpreplay and through
//! `tap replay`.

use std::{collections::BTreeMap, path::Path, process::Command, time::Duration};

use tap_tests::{
    Netns, TempDir, Topology,
    oracle::tshark_fields,
    oracle::{self, Tcpdump},
    pcap::{Pcap, Record},
    process::Background,
    run_ok,
    storage_util::Pcapng,
    tap::Capture,
    tap::{self, Summary},
    topology::B_V4,
    traffic::{self, HttpServer},
    tunnels,
};

fn arg(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Overlay addresses of the VXLAN link (a documentation range apart from the underlay's).
const OVERLAY_A: &str = "203.0.113.1";
const OVERLAY_B: &str = "203.0.113.2";
/// Linux's historical VXLAN port, to exercise `--decap vxlan:PORT`.
const VXLAN_PORT: u16 = 8472;
const VNI: u32 = 100;

/// A VXLAN device `vx0` in `ns` towards `remote` over `dev`, with a fixed MAC, the overlay
/// address, no IPv6, up.
fn vxlan_end(ns: &Netns, dev: &str, local: &str, remote: &str, mac: &str, addr: &str) {
    ns.sh(&format!(
        "ip link add vx0 address {mac} type vxlan id {VNI} dstport {VXLAN_PORT} local {local} remote {remote} dev {dev} && \
         sysctl -qw net.ipv6.conf.vx0.disable_ipv6=1 && ip addr add {addr}/24 dev vx0 && ip link set vx0 up"
    ));
}

/// Writes a pcapng file's packets as a pcap file, for the readers that compare pcap files.
fn pcapng_to_pcap(from: &Path, to: &Path) -> Pcapng {
    let ng = Pcapng::read(from);
    let records = ng
        .packets
        .iter()
        .map(|p| Record {
            ts_sec: (p.ts / 1_000_000_000) as u32,
            ts_frac: (p.ts % 1_000_000_000) as u32,
            orig_len: p.orig_len,
            data: p.data.clone(),
        })
        .collect();
    Pcap {
        nanos: true,
        snaplen: 262_144,
        linktype: 1,
        records,
    }
    .write(to);
    ng
}

/// A real VXLAN link between the namespaces: tap on b's underlay veth with `--decap vxlan:8472`
/// records exactly what tcpdump sees on b's VXLAN device (both directions, byte for byte, as
/// tcpdump and tshark decode them), each packet commented with its VNI.
#[test]
fn decap_of_a_linux_vxlan_link_records_the_inner_frames() {
    let t = Topology::new();
    let (mac_a, mac_b) = ("02:00:5e:30:00:01", "02:00:5e:30:00:02");
    vxlan_end(&t.a, &t.a_if, "192.0.2.1", B_V4, mac_a, OVERLAY_A);
    vxlan_end(&t.b, &t.b_if, B_V4, "192.0.2.1", mac_b, OVERLAY_B);
    t.a.sh(&format!(
        "ip neigh replace {OVERLAY_B} lladdr {mac_b} dev vx0 nud permanent"
    ));
    t.b.sh(&format!(
        "ip neigh replace {OVERLAY_A} lladdr {mac_a} dev vx0 nud permanent"
    ));
    let www = TempDir::new();
    let _http = HttpServer::start(&t.b, www.path());
    let dir = TempDir::new();
    // A snap length above the frames: with `-s 0`, immediate mode leaves libpcap's ring only a
    // few slots, too few for a burst.
    let inner = Tcpdump::start(&t.b, "vx0", dir.join("vx0.pcap"), &["-s", "2048"]);
    let file = dir.join("tap.pcapng");
    let decap = format!("vxlan:{VXLAN_PORT}");
    let tap = Capture::on(&t.b_if)
        .args(&["--decap", &decap, "-w", arg(&file)])
        .start(&t.b);
    traffic::ping(&t.a, OVERLAY_B, 3, &[]);
    traffic::http_get(&t.a, OVERLAY_B);
    inner.wait_quiet(Duration::from_millis(500));
    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    assert_eq!(
        (summary.ring_dropped, summary.writer_dropped),
        (0, 0),
        "{}",
        exited.stderr
    );
    let as_pcap = dir.join("tap.pcap");
    let ng = pcapng_to_pcap(&file, &as_pcap);
    wait_until_records(&inner, ng.packets.len());
    let oracle_file = inner.file.clone();
    inner.stop();
    let matched = oracle::assert_same_packets(&as_pcap, &oracle_file);
    assert!(
        matched.pairs.len() >= 6 + 6,
        "ping and HTTP: {}",
        matched.pairs.len()
    );
    let comment = format!("vxlan vni={VNI}");
    for (k, p) in ng.packets.iter().enumerate() {
        assert_eq!(p.comment.as_deref(), Some(comment.as_str()), "packet {k}");
    }
    // Wireshark shows it as the packet comment.
    let rows = tshark_fields(&file, &["frame.comment"]);
    assert_eq!(rows.len(), ng.packets.len());
    assert!(
        rows.iter().all(|r| r[0] == comment),
        "tshark's frame.comment: {rows:?}"
    );
}

fn wait_until_records(d: &Tcpdump, n: usize) {
    tap_tests::wait_until(
        &format!("tcpdump to write {n} packets"),
        Duration::from_secs(10),
        || (d.records() >= n).then_some(()),
    );
}

/// The tunnels tap strips, by the decoder of an independent reader: tshark must see each
/// hand-built outer frame as the tunnel it is meant to be, and the inner frame inside.
fn assert_tshark_agrees_with_the_generator(pcap: &Path, cases: &[tunnels::Case]) {
    let rows = tshark_fields(pcap, &["frame.protocols"]);
    assert_eq!(rows.len(), cases.len());
    for (row, case) in rows.iter().zip(cases) {
        let protocols = &row[0];
        let want = match case.comment.as_deref() {
            Some(c) if c.starts_with("gre ") => "gre:eth",
            Some(c) if c.starts_with("erspan") => "gre:erspan:eth",
            Some(c) if c.starts_with("geneve") => "geneve:eth",
            Some(c) if c.starts_with("vxlan") => "vxlan:eth",
            _ => "",
        };
        assert!(
            protocols.contains(want) && !protocols.contains("malformed"),
            "{}: tshark decodes {protocols}",
            case.name
        );
    }
}

/// GRE, ERSPAN II and III, GENEVE and VXLAN frames (IPv4 and IPv6 outer headers, VLAN tags
/// outside and in) replayed with tcpreplay onto the monitor veth: tap on XDP with `--decap`
/// records exactly the inner frames, each with its tunnel and id as the pcapng comment, and
/// the frames it must not strip as they are, uncommented.
#[test]
fn decap_records_the_inner_frames_of_replayed_tunnels() {
    let t = Topology::new();
    let dir = TempDir::new();
    let cases = tunnels::cases();
    let pcap = dir.join("tunnels.pcap");
    tunnels::write_pcap(&pcap, &cases);
    assert_tshark_agrees_with_the_generator(&pcap, &cases);

    let file = dir.join("tap.pcapng");
    let count = cases.len().to_string();
    let cmd = tap::command(
        &t.b,
        &["--log", "info"],
        &[
            "-i",
            &t.b_if,
            "--hook",
            "xdp",
            "--decap",
            "vxlan,geneve,gre,erspan",
            "-c",
            &count,
            "-w",
            arg(&file),
        ],
    );
    let tap = tap::start_command(cmd);
    run_ok(
        t.a.cmd("tcpreplay")
            .args(["-q", "--topspeed", "-i", &t.a_if])
            .arg(&pcap),
    );
    // -c: tap ends by itself once it has them all.
    let exited = tap.wait(tap::STOP_TIMEOUT);
    assert!(exited.status.success(), "{}", exited.stderr);
    let ng = Pcapng::read(&file);
    assert_eq!(ng.packets.len(), cases.len(), "{}", exited.stderr);

    // Frames on one veth arrive in order, but match by content anyway: inner frames are unique.
    let mut unmatched: BTreeMap<&[u8], &tunnels::Case> =
        cases.iter().map(|c| (c.inner.as_slice(), c)).collect();
    for p in &ng.packets {
        let case = unmatched.remove(p.data.as_slice()).unwrap_or_else(|| {
            panic!(
                "tap recorded a frame that is no case's expected frame ({} bytes, comment {:?})",
                p.data.len(),
                p.comment
            )
        });
        assert_eq!(p.orig_len as usize, case.inner.len(), "{}", case.name);
        assert_eq!(p.comment, case.comment, "{}: comment", case.name);
    }
    assert!(
        unmatched.is_empty(),
        "not recorded: {:?}",
        unmatched.values().map(|c| c.name).collect::<Vec<_>>()
    );

    // tshark reads the comments too.
    let mut shown: Vec<String> = tshark_fields(&file, &["frame.comment"])
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let mut expected: Vec<String> = cases
        .iter()
        .map(|c| c.comment.clone().unwrap_or_default())
        .collect();
    shown.sort();
    expected.sort();
    assert_eq!(shown, expected, "tshark's frame.comment");
}

/// `tap replay --decap` runs the same program over the file: the filter applies to the inner
/// frames, and the output holds them as a capture would.
#[test]
fn replay_with_decap_filters_and_writes_the_inner_frames() {
    tap_tests::require_root();
    let dir = TempDir::new();
    let cases = tunnels::cases();
    let pcap = dir.join("tunnels.pcap");
    tunnels::write_pcap(&pcap, &cases);
    let out = dir.join("inner.pcap");
    let exited = Background::spawn("tap replay", {
        let mut c = Command::new(tap_tests::tap_bin());
        c.args(["replay", "--decap", "vxlan,geneve,gre,erspan", "-r"])
            .arg(&pcap)
            .arg("-w")
            .arg(&out)
            .args(["udp", "and", "dst", "port", "53"])
            .env_remove("TAP_LOG")
            .stdout(std::process::Stdio::null());
        c
    })
    .wait(Duration::from_secs(60));
    assert!(exited.status.success(), "{}", exited.stderr);
    // Inner UDP to port 53 in every tunnel but the tagged pings, and the plain frame; the GRE
    // carrying IP and the VXLAN on an unconfigured port do not match from the outside.
    let expected: Vec<&tunnels::Case> = cases
        .iter()
        .filter(|c| c.inner.len() > 37 && c.inner[12..14] == [0x08, 0x00] && c.inner[23] == 17)
        .filter(|c| c.inner[36..38] == 53u16.to_be_bytes())
        .collect();
    assert_eq!(expected.len(), 8);
    let written = Pcap::read(&out);
    assert_eq!(
        written.records.iter().map(|r| &r.data).collect::<Vec<_>>(),
        expected.iter().map(|c| &c.inner).collect::<Vec<_>>(),
        "tap replay output:\n{}",
        exited.stderr
    );
    for (r, c) in written.records.iter().zip(&expected) {
        assert_eq!(r.orig_len as usize, c.inner.len(), "{}", c.name);
    }
    assert!(
        exited
            .stderr
            .contains(&format!("{} packets matched", expected.len())),
        "{}",
        exited.stderr
    );
}

/// `--hook xdp --consume` on the receiving end: tap records the echo requests, the host's stack
/// never sees them, so nothing answers; after tap exits, pings work again.
#[test]
fn consume_keeps_captured_packets_from_the_stack() {
    let t = Topology::new();
    let dir = TempDir::new();
    let file = dir.join("tap.pcap");
    let tap = Capture::on(&t.b_if)
        .args(&["--hook", "xdp", "--consume", "-w", arg(&file)])
        .start(&t.b);
    let out =
        t.a.cmd("ping")
            .args(["-n", "-c", "3", "-i", "0.1", "-W", "1", B_V4])
            .output()
            .expect("ping");
    assert!(
        !out.status.success(),
        "the stack answered pings tap consumed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 packets transmitted, 0 received"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    assert_eq!(summary.captured, 3, "{}", exited.stderr);
    let pcap = Pcap::read(&file);
    let requests = oracle::tcpdump_read(&file);
    assert_eq!(pcap.records.len(), 3);
    assert!(
        requests.iter().all(|l| l.contains("ICMP echo request")),
        "{requests:#?}"
    );
    // Detached: the stack gets them again.
    traffic::ping(&t.a, B_V4, 2, &[]);
}
