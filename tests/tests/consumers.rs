//! Live consumers, end to end with the real readers: Suricata 7 fed through a named pipe, a
//! monitor interface (`--inject`) and its unix socket (`--suricata-socket`); tcpdump and tshark
//! reading `--serve` streams; a Linux VXLAN device and Suricata as `--forward` collectors.
//!
//! The traffic is real: pings and an HTTP GET whose URI holds a token unique to the run, between
//! two namespaces; tap captures on b's end of the link. Suricata must raise the alerts of both of
//! its rules (ICMP echo request; the token in `http.uri`) within a deadline.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Read as _,
    os::unix::{fs::PermissionsExt as _, net::UnixStream},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use tap_tests::{
    Netns, TempDir, Topology,
    oracle::Tcpdump,
    pcap::Pcap,
    process::{Background, Exited},
    run_ok,
    suricata::{self, Suricata},
    tap::{self, Summary},
    topology::{A_V4, B_V4},
    traffic::{self, HttpServer},
    wait_until,
};

/// Two namespaces, an HTTP server in b with a page named after the run's token.
struct Scene {
    t: Topology,
    token: String,
    www: TempDir,
    _http: HttpServer,
}

impl Scene {
    fn new() -> Self {
        suricata::require_suricata();
        let t = Topology::new();
        let www = TempDir::new();
        let http = HttpServer::start(&t.b, www.path());
        let mut s = Self {
            t,
            token: String::new(),
            www,
            _http: http,
        };
        s.token = s.new_token();
        s
    }

    /// A fresh token, with a page of its name for the GET.
    fn new_token(&self) -> String {
        let token = suricata::unique_token();
        std::fs::write(self.www.join(&token), "the page of the token\n").expect("writing a page");
        token
    }

    /// What the rules look for: ICMP echo requests, and a GET of the token, from a to b.
    fn traffic(&self) {
        self.traffic_with(&self.token);
    }

    fn traffic_with(&self, token: &str) {
        traffic::ping(&self.t.a, B_V4, 3, &[]);
        traffic::http_get_path(&self.t.a, B_V4, &format!("/{token}"));
    }
}

fn mkfifo(path: &Path) {
    run_ok(Command::new("mkfifo").arg("-m").arg("0600").arg(path));
}

fn arg(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The summary line of a consumer, found by its start.
fn note<'a>(summary: &'a Summary, start: &str) -> &'a str {
    summary
        .extra
        .iter()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no summary line starting {start:?}: {:?}", summary.extra))
}

/// Asserts tap lost nothing between the programs and its outputs.
fn assert_nothing_lost(summary: &Summary, stderr: &str) {
    assert_eq!(
        (summary.ring_dropped, summary.writer_dropped),
        (0, 0),
        "tap dropped packets:\n{stderr}"
    );
    assert_eq!(summary.captured, summary.received, "tap said:\n{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Suricata, three ways

/// `suricata -r FIFO` reads tap's pipe live and alerts while tap still runs; tap's exit closes
/// the stream and Suricata ends cleanly.
#[test]
fn suricata_reads_a_named_pipe() {
    let s = Scene::new();
    let dir = TempDir::new();
    let fifo = dir.join("tap.fifo");
    mkfifo(&fifo);
    // Suricata opens the pipe and waits for a writer; tap opens it once a reader is there.
    let mut suri = Suricata::read(None, &fifo, &s.token, &["-k", "none"]);
    let mut tap = tap::start(&s.t.b, &["-i", &s.t.b_if, "-w", arg(&fifo)]);
    tap.wait_for_stderr("stream reader connected", Duration::from_secs(30));
    s.traffic();
    suri.wait_icmp_and_token(&suri.eve(), &s.token);
    assert!(tap.running(), "tap ended early:\n{}", tap.stderr());

    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    assert_nothing_lost(&summary, &exited.stderr);
    assert_eq!(
        note(&summary, "pipe "),
        format!(
            "pipe {}: 1 readers, {} packets delivered, 0 dropped by a slow reader, 0 with no reader",
            fifo.display(),
            summary.captured
        )
    );
    // The end of the stream is the end of Suricata's run.
    let ended = suri.wait_exit(Duration::from_secs(30));
    assert!(
        ended.status.success(),
        "Suricata failed at the end of the stream ({}):\n{}",
        ended.status,
        ended.stderr
    );
    assert!(
        ended
            .stdout
            .contains(&format!("{} packets", summary.captured)),
        "Suricata did not read the {} packets tap delivered:\n{}",
        summary.captured,
        ended.stdout
    );
}

/// A pipe's reader leaves while no packet flows, a new one opens the pipe: the new reader gets
/// a stream of its own, header first, then the packets from then on. Packets while nobody reads
/// are counted, not delivered.
#[test]
fn a_new_pipe_reader_gets_a_fresh_header() {
    let t = Topology::new();
    let dir = TempDir::new();
    let fifo = dir.join("tap.fifo");
    mkfifo(&fifo);
    let tap = tap::start(&t.b, &["-i", &t.b_if, "-w", arg(&fifo)]);
    // `tcpdump -c N` reads N packets and leaves; the traffic of each step is exactly that, so no
    // packet is ever written to a pipe whose reader is about to leave.
    let tcpdump = |count: u32| {
        let mut cmd = Command::new("tcpdump");
        cmd.arg("-r")
            .arg(&fifo)
            .args(["-nn", "-l", "-c", &count.to_string()])
            .stdin(Stdio::null());
        Background::spawn_collecting_stdout("tcpdump -r FIFO", cmd)
    };
    let readers = |tap: &Background, what: &str, n: usize| {
        wait_until(
            &format!("tap to log {n} times {what:?}"),
            Duration::from_secs(10),
            || (tap.stderr().matches(what).count() == n).then_some(()),
        );
    };

    let first = tcpdump(2);
    readers(&tap, "stream reader connected", 1);
    traffic::ping(&t.a, B_V4, 1, &[]);
    let first = wait_reader(first);
    assert_eq!(first.stdout.lines().count(), 2, "{}", first.stdout);

    // Nothing is written after the first reader left: tap must notice by itself, or the next
    // reader would get the rest of the old stream, without a header.
    readers(&tap, "stream reader left", 1);
    let second = tcpdump(4);
    readers(&tap, "stream reader connected", 2);
    traffic::ping(&t.a, B_V4, 2, &[]);
    let second = wait_reader(second);
    let lines: Vec<&str> = second.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", second.stdout);
    assert!(
        lines[0].contains("ICMP echo request") && lines[0].contains("seq 1"),
        "{}",
        second.stdout
    );

    // Nobody reads now: an echo and its reply go nowhere, counted.
    readers(&tap, "stream reader left", 2);
    traffic::ping(&t.a, B_V4, 1, &[]);
    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    assert_eq!(
        (summary.received, summary.captured),
        (8, 6),
        "{}",
        exited.stderr
    );
    assert_eq!(
        note(&summary, "pipe "),
        format!(
            "pipe {}: 2 readers, 6 packets delivered, 0 dropped by a slow reader, 2 with no reader",
            fifo.display()
        )
    );
}

/// Waits for a reader that ends with tap's stream: a clean exit, no complaint.
fn wait_reader(reader: Background) -> Exited {
    let ended = reader.wait(Duration::from_secs(20));
    assert!(
        ended.status.success(),
        "reader failed ({}): {}",
        ended.status,
        ended.stderr
    );
    let complaints: Vec<&str> = ended
        .stderr
        .lines()
        .filter(|l| !l.starts_with("reading from file") && !l.starts_with("Running as user"))
        .collect();
    assert!(complaints.is_empty(), "reader complained: {}", ended.stderr);
    ended
}

/// `--inject` creates a TAP device that Suricata reads in af-packet mode, like a SPAN port.
/// `--fix-checksums` is what makes its HTTP alert fire: Suricata checks the checksums of what it
/// reads there, and frames captured on a veth carry offload-partial ones.
#[test]
fn suricata_reads_the_monitor_interface() {
    let s = Scene::new();
    let mon = "tapmon0";
    let tap = tap::start(
        &s.t.b,
        &["-i", &s.t.b_if, "--inject", mon, "--fix-checksums"],
    );
    let mut suri = Suricata::af_packet(&s.t.b, mon, &s.token, &[]);
    s.traffic();
    suri.wait_icmp_and_token(&suri.eve(), &s.token);

    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    assert_nothing_lost(&summary, &exited.stderr);
    assert_eq!(
        note(&summary, "inject "),
        format!(
            "inject {mon}: {} frames written, 0 truncated to the MTU, 0 lost",
            summary.captured
        )
    );
    // The device was tap's: it goes with tap.
    assert!(
        !s.t.b.sh_status(&format!("ip link show {mon} 2>/dev/null")),
        "{mon} outlived tap"
    );
}

/// `--inject` into an existing veth end: frames arrive on it as captured, and those longer than
/// its MTU arrive cut to it, counted.
#[test]
fn injected_frames_arrive_whole_or_cut_to_the_mtu() {
    let t = Topology::with_mtu(9000);
    let (mon, peer) = ("mon-in", "mon-out");
    t.b.sh(&format!(
        "ip link add {mon} mtu 1500 type veth peer name {peer} mtu 1500 && \
         sysctl -qw net.ipv6.conf.{mon}.disable_ipv6=1 net.ipv6.conf.{peer}.disable_ipv6=1 && \
         ip link set {mon} up && ip link set {peer} up"
    ));
    let dir = TempDir::new();
    let seen = Tcpdump::start(&t.b, mon, dir.join("mon.pcap"), &["-Q", "in", "-s", "2048"]);
    let file = dir.join("tap.pcap");
    let tap = tap::start(&t.b, &["-i", &t.b_if, "--inject", mon, "-w", arg(&file)]);
    traffic::ping(&t.a, B_V4, 2, &[]);
    traffic::ping(&t.a, B_V4, 2, &["-s", "3000"]);
    seen.wait_quiet(Duration::from_millis(500));
    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    assert_nothing_lost(&summary, &exited.stderr);
    assert_eq!(summary.captured, 8, "{}", exited.stderr);
    assert_eq!(
        note(&summary, "inject "),
        format!("inject {mon}: 8 frames written, 4 truncated to the MTU, 0 lost")
    );
    wait_until(
        "8 frames on the monitor end",
        Duration::from_secs(10),
        || (seen.records() >= 8).then_some(()),
    );
    let arrived = seen.stop();
    let captured = Pcap::read(&file);
    assert_eq!(arrived.records.len(), 8);
    for (k, (got, sent)) in arrived.records.iter().zip(&captured.records).enumerate() {
        let want = &sent.data[..sent.data.len().min(1514)];
        assert_eq!(got.data, want, "frame {k} on {mon} differs from tap's");
    }
    assert_eq!(
        arrived
            .records
            .iter()
            .filter(|r| r.data.len() == 1514)
            .count(),
        4
    );
}

/// `--suricata-socket` with `-G 1`: every finished file goes to Suricata's unix socket and the
/// alerts come while tap still runs. Suricata restarts: the driver reconnects and the files go to
/// the new instance.
#[test]
fn suricata_takes_rotated_files_over_its_socket() {
    let s = Scene::new();
    let mut suri = Suricata::unix_socket(&s.token, None);
    let socket = suri.socket();
    let dir = TempDir::new();
    let results = dir.join("results");
    std::fs::create_dir(&results).expect("results dir");
    let pattern = dir.join("cap.pcap");
    let mut tap = tap::start(
        &s.t.b,
        &[
            "-i",
            &s.t.b_if,
            "-w",
            arg(&pattern),
            "-G",
            "1",
            "--fix-checksums",
            "--suricata-socket",
            arg(&socket),
            "--suricata-output",
            arg(&results),
        ],
    );
    // Files cut on the second, and Suricata resets flows per file: keep the exchange in one.
    start_of_a_second();
    s.traffic();
    let eve = results.join("eve.json");
    suri.wait_icmp_and_token(&eve, &s.token);
    assert!(tap.running(), "tap ended early:\n{}", tap.stderr());

    // A restart: the same socket path, a new process, whose rules look for a new token. The
    // results go to the same eve.json: the new token tells the new alerts apart.
    suri.kill();
    let token = s.new_token();
    let mut again = Suricata::unix_socket(&token, Some(&socket));
    start_of_a_second();
    s.traffic_with(&token);
    again.wait_token(&eve, &token);

    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    assert_nothing_lost(&summary, &exited.stderr);
    let line = note(&summary, "suricata: ");
    let submitted: u64 = line
        .strip_prefix("suricata: ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(submitted >= 2, "{line}");
    assert!(
        line.contains(" files submitted, 0 refused, 0 not submitted"),
        "{line}"
    );
    // The first file ended before the first traffic: at least that one had no packet.
    let skipped: u64 = line
        .strip_suffix(" without packets skipped")
        .and_then(|r| r.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(skipped >= 1, "{line}");
    assert!(
        exited.stderr.matches("connected to Suricata").count() >= 2,
        "the driver did not reconnect:\n{}",
        exited.stderr
    );
    // Files without packets were never submitted (Suricata 7 stops answering after one): the
    // new instance still answers.
    // (Suricata may reset a connection while it moves on to the next file: ask again.)
    wait_until(
        "Suricata to answer after tap's run",
        Duration::from_secs(30),
        || {
            suricata::command_reply(&socket, &[r#"{"command": "pcap-current"}"#])
                .ok()
                .filter(|r| r[0].contains("\"return\":\"OK\""))
        },
    );
}

/// Sleeps until the wall clock is just past the next whole second.
fn start_of_a_second() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    std::thread::sleep(Duration::from_millis(
        u64::from(1000 - now.subsec_millis()) + 20,
    ));
}

// ---------------------------------------------------------------------------------------------
// Streams on a unix socket

/// A reader of `--serve`: `socat -u UNIX-CONNECT:PATH -` piped into `reader` (tcpdump or
/// tshark reading standard input).
struct StreamReader {
    _socat: Background,
    reader: Background,
}

impl StreamReader {
    fn start(socket: &Path, reader: &str, args: &[&str]) -> Self {
        let mut socat = Command::new("socat");
        socat
            .arg("-u")
            .arg(format!("UNIX-CONNECT:{}", socket.display()))
            .arg("-")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut socat = Background::spawn("socat", socat);
        let mut cmd = Command::new(reader);
        cmd.args(args).stdin(Stdio::from(socat.take_stdout()));
        let reader = Background::spawn_collecting_stdout(reader, cmd);
        Self {
            _socat: socat,
            reader,
        }
    }
}

/// tcpdump and tshark read `--serve` streams live through socat; the socket is 0600; tap's exit
/// ends both streams cleanly.
#[test]
fn tcpdump_and_tshark_read_served_streams() {
    let t = Topology::new();
    let dir = TempDir::new();
    let socket = dir.join("tap.sock");
    let serve = format!("unix:{}", socket.display());
    let mut tap = tap::start(&t.b, &["-i", &t.b_if, "--serve", &serve]);
    let mode = std::fs::metadata(&socket)
        .expect("the socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    let mut tcpdump = StreamReader::start(&socket, "tcpdump", &["-r", "-", "-nn", "-l"]);
    let mut tshark = StreamReader::start(&socket, "tshark", &["-r", "-", "-n", "-l"]);
    wait_until("two stream readers", Duration::from_secs(30), || {
        (tap.stderr().matches("stream reader connected").count() == 2).then_some(())
    });
    traffic::ping(&t.a, B_V4, 3, &[]);
    // Live: both show the six packets while tap still runs.
    for (what, r) in [("tcpdump", &mut tcpdump), ("tshark", &mut tshark)] {
        wait_until(
            &format!("{what} to show 6 packets"),
            Duration::from_secs(30),
            || (r.reader.stdout().lines().count() >= 6).then_some(()),
        );
    }
    assert!(tap.running(), "tap ended early:\n{}", tap.stderr());

    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    assert_nothing_lost(&summary, &exited.stderr);
    assert_eq!(summary.captured, 6, "{}", exited.stderr);
    assert_eq!(
        note(&summary, "serve "),
        format!(
            "serve {}: 2 clients; client 1: 6 packets delivered; client 2: 6 packets delivered; 0 packets while no client was connected",
            socket.display()
        )
    );
    assert!(!socket.exists(), "tap left its socket behind");
    for (what, r, request) in [
        ("tcpdump", tcpdump, "ICMP echo request"),
        ("tshark", tshark, "Echo (ping) request"),
    ] {
        let ended = wait_reader(r.reader);
        let lines: Vec<&str> = ended.stdout.lines().collect();
        assert_eq!(lines.len(), 6, "{what} read:\n{}", ended.stdout);
        let requests = lines.iter().filter(|l| l.contains(request)).count();
        assert_eq!(requests, 3, "{what} read:\n{}", ended.stdout);
    }
}

/// A client that connects and never reads costs nobody else: the capture loses nothing, the
/// other client gets every packet, and the summary counts the idle client's drops.
#[test]
fn a_client_that_never_reads_slows_nobody() {
    let t = Topology::new();
    let dir = TempDir::new();
    let socket = dir.join("tap.sock");
    let serve = format!("unix:{}", socket.display());
    let tap = tap::start(
        &t.b,
        &["-i", &t.b_if, "--hook", "tc-ingress", "--serve", &serve],
    );
    let _idle = UnixStream::connect(&socket).expect("connecting the idle client");
    let mut reader = UnixStream::connect(&socket).expect("connecting the reading client");
    let got = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).expect("reading the stream");
        bytes
    });
    wait_until("two stream readers", Duration::from_secs(30), || {
        (tap.stderr().matches("stream reader connected").count() == 2).then_some(())
    });
    // Enough to fill the idle client's socket buffer and its queue of batches many times over,
    // paced so the ring and the reading client keep up.
    traffic::paced_udp(&t.a, B_V4, 30_000, 1000, Duration::from_secs(4));

    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    assert_nothing_lost(&summary, &exited.stderr);
    assert!(summary.captured >= 25_000, "{}", exited.stderr);
    let stream = Pcap::parse(&got.join().expect("reader thread"));
    assert_eq!(
        stream.records.len() as u64,
        summary.captured,
        "the reading client did not get every packet"
    );
    // Per client: what it got, what it lost and why; each adds up to every packet captured.
    let line = note(&summary, "serve ");
    let parts: Vec<&str> = line.split("; ").collect();
    assert_eq!(parts.len(), 4, "{line}");
    assert_eq!(parts[0], format!("serve {}: 2 clients", socket.display()));
    assert_eq!(
        parts[2],
        format!("client 2: {} packets delivered", summary.captured),
        "the reading client: {line}"
    );
    assert_eq!(
        parts[3], "0 packets while no client was connected",
        "{line}"
    );
    let number = |suffix: &str| -> u64 {
        parts[1]
            .split(", ")
            .find_map(|p| p.strip_suffix(suffix))
            .map_or(0, |n| {
                n.trim_start_matches("client 1: ")
                    .parse()
                    .unwrap_or_else(|_| panic!("{line}"))
            })
    };
    let delivered = number(" packets delivered");
    let dropped = number(" dropped (it did not keep up)");
    let undelivered = number(" undelivered (still queued at the end)");
    assert!(dropped > 0, "the idle client lost nothing? {line}");
    assert_eq!(
        delivered + dropped + undelivered,
        summary.captured,
        "the idle client's packets do not add up: {line}"
    );
}

// ---------------------------------------------------------------------------------------------
// VXLAN collectors

/// The collector's side of the underlay.
const COLLECTOR: &str = "198.51.100.2";
const UNDERLAY_B: &str = "198.51.100.1";
const UPLINK: &str = "uplink";

/// The collector's IPv6 address on the underlay, and b's.
const COLLECTOR_V6: &str = "2001:db8:2::2";
const UNDERLAY_B_V6: &str = "2001:db8:2::1";

/// A third namespace, the collector, reached from b over a veth of its own (b: `to-col`,
/// 198.51.100.1 and 2001:db8:2::1; collector: [`UPLINK`], [`COLLECTOR`] and [`COLLECTOR_V6`]),
/// with static neighbours. IPv6 only when asked for (its multicast reports are noise).
fn collector(t: &Topology, v6: bool) -> Netns {
    let c = Netns::new("col");
    run_ok(Command::new("ip").args([
        "link", "add", "to-col", "netns", &t.b.name, "type", "veth", "peer", "name", UPLINK,
        "netns", &c.name,
    ]));
    for (ns, ifname, addr, addr6) in [
        (&t.b, "to-col", UNDERLAY_B, UNDERLAY_B_V6),
        (&c, UPLINK, COLLECTOR, COLLECTOR_V6),
    ] {
        let ipv6 = if v6 {
            format!(
                "sysctl -qw net.ipv6.conf.{ifname}.disable_ipv6=0 net.ipv6.conf.{ifname}.accept_ra=0 \
                 net.ipv6.conf.{ifname}.addr_gen_mode=1 && ip -6 addr add {addr6}/64 dev {ifname} nodad"
            )
        } else {
            format!("sysctl -qw net.ipv6.conf.{ifname}.disable_ipv6=1")
        };
        ns.sh(&format!(
            "{ipv6} && ip link set {ifname} multicast off && \
             ip addr add {addr}/24 dev {ifname} && ip link set {ifname} up"
        ));
    }
    let mac = |ns: &Netns, ifname: &str| {
        ns.sh(&format!("cat /sys/class/net/{ifname}/address"))
            .trim()
            .to_string()
    };
    let (mac_b, mac_c) = (mac(&t.b, "to-col"), mac(&c, UPLINK));
    t.b.sh(&format!(
        "ip neigh replace {COLLECTOR} lladdr {mac_c} dev to-col nud permanent"
    ));
    c.sh(&format!(
        "ip neigh replace {UNDERLAY_B} lladdr {mac_b} dev {UPLINK} nud permanent"
    ));
    if v6 {
        t.b.sh(&format!(
            "ip -6 neigh replace {COLLECTOR_V6} lladdr {mac_c} dev to-col nud permanent"
        ));
        c.sh(&format!(
            "ip -6 neigh replace {UNDERLAY_B_V6} lladdr {mac_b} dev {UPLINK} nud permanent"
        ));
    }
    c
}

/// A receive-only VXLAN device in `ns`: bound to `local` on `port`, no learning, no IPv6, up.
fn vxlan_receiver(ns: &Netns, name: &str, vni: u32, port: u16, local: &str) {
    ns.sh(&format!(
        "ip link add {name} type vxlan id {vni} dstport {port} local {local} nolearning && \
         sysctl -qw net.ipv6.conf.{name}.disable_ipv6=1 && ip link set {name} up"
    ));
}

/// The two (address, port) ends of a flow, in order: the same set for both directions.
type Ends = BTreeSet<([u8; 4], u16)>;

/// The inner flow of a frame, the same for both directions: protocol and ends. Frames other
/// than IPv4 have none.
fn flow_of(frame: &[u8]) -> Option<(u8, Ends)> {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let proto = frame[23];
    let l4 = 14 + ihl;
    let ports = if matches!(proto, 6 | 17) && frame.len() >= l4 + 4 {
        (
            u16::from_be_bytes([frame[l4], frame[l4 + 1]]),
            u16::from_be_bytes([frame[l4 + 2], frame[l4 + 3]]),
        )
    } else {
        (0, 0)
    };
    let addr = |o: usize| -> [u8; 4] { frame[o..o + 4].try_into().unwrap() };
    Some((
        proto,
        BTreeSet::from([(addr(26), ports.0), (addr(30), ports.1)]),
    ))
}

/// Sends one datagram from each of `sports` (in `ns`) to `host`:9.
fn udp_from_ports(ns: &Netns, host: &str, sports: std::ops::Range<u16>) {
    const SEND: &str = r#"
import socket, sys
host, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for port in range(first, last):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    s.sendto(b"flow from port %d" % port, (host, 9))
    s.close()
"#;
    run_ok(ns.cmd("python3").args([
        "-c",
        SEND,
        host,
        &sports.start.to_string(),
        &sports.end.to_string(),
    ]));
}

/// `--forward vxlan://` to a Linux VXLAN device in a third namespace: the device delivers the
/// frames tap captured, byte for byte. The outer UDP source port is one per inner flow (both
/// directions alike) and varies across flows; DF is set; `max_len` truncates, and counts it.
#[test]
fn a_linux_vxlan_device_receives_the_forwarded_frames() {
    let t = Topology::new();
    let www = TempDir::new();
    let _http = HttpServer::start(&t.b, www.path());
    let c = collector(&t, false);
    vxlan_receiver(&c, "vx42", 42, 4789, COLLECTOR);
    vxlan_receiver(&c, "vx43", 43, 4790, COLLECTOR);
    let dir = TempDir::new();
    // The datagrams leave in bursts (one sendmmsg per socket per batch). In immediate mode
    // libpcap sizes its ring's slots by the snap length: with `-s 0` a 2 MB ring has a handful
    // of slots and tcpdump drops. Snap lengths that fit what is compared keep it roomy.
    let whole = Tcpdump::start(
        &c,
        "vx42",
        dir.join("vx42.pcap"),
        &["-Q", "in", "-s", "2048"],
    );
    let cut = Tcpdump::start(
        &c,
        "vx43",
        dir.join("vx43.pcap"),
        &["-Q", "in", "-s", "2048"],
    );
    let outer = Tcpdump::start(
        &c,
        UPLINK,
        dir.join("uplink.pcap"),
        &["-Q", "in", "-s", "256"],
    );
    let file = dir.join("tap.pcap");
    let tap = tap::start(
        &t.b,
        &[
            "-i",
            &t.b_if,
            "-w",
            arg(&file),
            "--forward",
            &format!("vxlan://{COLLECTOR}?vni=42"),
            "--forward",
            &format!("vxlan://{COLLECTOR}:4790?vni=43&max_len=100"),
        ],
    );
    // Flows: one ICMP, three TCP, eight UDP (one way).
    traffic::ping(&t.a, B_V4, 2, &[]);
    for _ in 0..3 {
        traffic::http_get(&t.a, B_V4);
    }
    udp_from_ports(&t.a, B_V4, 31_000..31_008);
    whole.wait_quiet(Duration::from_millis(500));
    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    assert_nothing_lost(&summary, &exited.stderr);
    let captured = Pcap::read(&file);
    let n = captured.records.len();
    let long = captured
        .records
        .iter()
        .filter(|r| r.data.len() > 100)
        .count();
    assert_eq!(
        note(&summary, &format!("forward {COLLECTOR}:4789 ")),
        format!(
            "forward {COLLECTOR}:4789 (vni 42): {n} packets sent, 0 truncated to 1464 bytes, 0 lost (send errors)"
        )
    );
    assert_eq!(
        note(&summary, &format!("forward {COLLECTOR}:4790 ")),
        format!(
            "forward {COLLECTOR}:4790 (vni 43): {n} packets sent, {long} truncated to 100 bytes, 0 lost (send errors)"
        )
    );
    for d in [&whole, &cut] {
        wait_until(
            &format!("{n} frames at the collector"),
            Duration::from_secs(10),
            || (d.records() >= n).then_some(()),
        );
    }
    wait_until("the outer packets", Duration::from_secs(10), || {
        (outer.records() >= 2 * n).then_some(())
    });

    // Byte for byte, as a multiset: frames of different flows leave through different sockets,
    // so only each flow keeps its order.
    let sorted = |frames: Vec<Vec<u8>>| {
        let mut f = frames;
        f.sort();
        f
    };
    let ours: Vec<Vec<u8>> = captured.records.iter().map(|r| r.data.clone()).collect();
    let delivered = whole.stop();
    assert_eq!(
        sorted(delivered.records.iter().map(|r| r.data.clone()).collect()),
        sorted(ours.clone()),
        "vx42 did not deliver exactly the frames tap captured"
    );
    let truncated = cut.stop();
    assert_eq!(
        sorted(truncated.records.iter().map(|r| r.data.clone()).collect()),
        sorted(
            ours.iter()
                .map(|f| f[..f.len().min(100)].to_vec())
                .collect()
        ),
        "vx43 did not deliver the frames cut to 100 bytes"
    );

    // The outer packets: IPv4 with DF, UDP to the VXLAN port, the VNI, and one source port per
    // inner flow (on both collectors alike: the same socket pool).
    let underlay = outer.stop();
    type Flow = (u16, u8, Ends);
    let mut ports: BTreeMap<Flow, BTreeSet<u16>> = BTreeMap::new();
    for r in &underlay.records {
        let d = &r.data;
        assert_eq!(&d[12..14], &[0x08, 0x00], "outer IPv4");
        assert_eq!(d[20] & 0x40, 0x40, "DF set");
        assert_eq!(d[23], 17, "outer UDP");
        let sport = u16::from_be_bytes([d[34], d[35]]);
        let dport = u16::from_be_bytes([d[36], d[37]]);
        let vni = u32::from_be_bytes([0, d[46], d[47], d[48]]);
        assert_eq!(d[42], 0x08, "VXLAN I flag");
        assert_eq!(
            (dport, vni),
            if dport == 4789 {
                (4789, 42)
            } else {
                (4790, 43)
            }
        );
        if let Some((proto, ends)) = flow_of(&d[50..]) {
            ports.entry((dport, proto, ends)).or_default().insert(sport);
        }
    }
    // Per collector (each forwarder has a pool of its own): twelve flows, each from one port.
    for collector_port in [4789, 4790] {
        let flows: Vec<_> = ports
            .iter()
            .filter(|(f, _)| f.0 == collector_port)
            .collect();
        assert!(
            flows.len() >= 12,
            "flows seen by :{collector_port}: {}",
            flows.len()
        );
        for (flow, sports) in &flows {
            assert_eq!(sports.len(), 1, "flow {flow:?} left from ports {sports:?}");
        }
        let distinct: BTreeSet<u16> = flows.iter().flat_map(|(_, p)| p.iter().copied()).collect();
        assert!(
            distinct.len() >= 2,
            "{} flows to :{collector_port} all left from one source port: {distinct:?}",
            flows.len()
        );
    }
}

/// An IPv6 collector: the outer header is 20 bytes longer, so by default inner frames are cut to
/// 1444 bytes (not 1464) to fit a 1500-byte path. Sent with DF, a longer datagram would be a send
/// error: full-size frames arrive cut, counted, none lost.
#[test]
fn an_ipv6_collector_gets_full_size_frames_cut_to_fit() {
    let t = Topology::new();
    let c = collector(&t, true);
    vxlan_receiver(&c, "vx42", 42, 4789, COLLECTOR_V6);
    let dir = TempDir::new();
    let seen = Tcpdump::start(
        &c,
        "vx42",
        dir.join("vx42.pcap"),
        &["-Q", "in", "-s", "2048"],
    );
    let file = dir.join("tap.pcap");
    let tap = tap::start(
        &t.b,
        &[
            "-i",
            &t.b_if,
            "--hook",
            "tc-ingress",
            "-w",
            arg(&file),
            "--forward",
            &format!("vxlan://[{COLLECTOR_V6}]?vni=42"),
        ],
    );
    // Echo requests of 1514 bytes (the link's MTU), then small ones.
    traffic::ping(&t.a, B_V4, 2, &["-s", "1472"]);
    traffic::ping(&t.a, B_V4, 2, &[]);
    seen.wait_quiet(Duration::from_millis(300));
    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    assert_nothing_lost(&summary, &exited.stderr);
    assert_eq!(summary.captured, 4, "{}", exited.stderr);
    assert_eq!(
        note(&summary, "forward "),
        format!(
            "forward [{COLLECTOR_V6}]:4789 (vni 42): 4 packets sent, 2 truncated to 1444 bytes, 0 lost (send errors)"
        )
    );
    wait_until("4 frames at the collector", Duration::from_secs(10), || {
        (seen.records() >= 4).then_some(())
    });
    let arrived = seen.stop();
    let captured = Pcap::read(&file);
    let mut want: Vec<Vec<u8>> = captured
        .records
        .iter()
        .map(|r| r.data[..r.data.len().min(1444)].to_vec())
        .collect();
    let mut got: Vec<Vec<u8>> = arrived.records.iter().map(|r| r.data.clone()).collect();
    want.sort();
    got.sort();
    assert_eq!(
        got, want,
        "the collector's frames are not tap's, cut to 1444 bytes"
    );
    assert_eq!(captured.records[0].data.len(), 1514);
}

/// Suricata on the collector's underlay decodes tap's VXLAN (port 4789) and alerts on the inner
/// traffic, as a cloud vTAP's collector would.
#[test]
fn suricata_on_a_vxlan_collector_alerts_on_the_inner_traffic() {
    let s = Scene::new();
    let c = collector(&s.t, false);
    // The device takes the datagrams: without a listener the collector would answer with port
    // unreachables, which tap's sockets would count as send errors.
    vxlan_receiver(&c, "vx42", 42, 4789, COLLECTOR);
    let mut suri = Suricata::af_packet(&c, UPLINK, &s.token, &[]);
    let tap = tap::start(
        &s.t.b,
        &[
            "-i",
            &s.t.b_if,
            "--fix-checksums",
            "--forward",
            &format!("vxlan://{COLLECTOR}?vni=42"),
        ],
    );
    s.traffic();
    let alerts = suri.wait_icmp_and_token(&suri.eve(), &s.token);
    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    assert_nothing_lost(&summary, &exited.stderr);
    assert_eq!(
        note(&summary, "forward "),
        format!(
            "forward {COLLECTOR}:4789 (vni 42): {} packets sent, 0 truncated to 1464 bytes, 0 lost (send errors)",
            summary.captured
        )
    );
    // The alerts are on the inner addresses, not the tunnel's.
    assert!(
        alerts.iter().all(|a| a.src_ip == A_V4 && a.dest_ip == B_V4),
        "{alerts:#?}"
    );
}
