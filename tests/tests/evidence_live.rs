//! Evidence from a live alert: `tap agent` captures veth-b with a pre-trigger memory and feeds
//! Suricata 7 through a monitor interface (`inject`); its `[evidence]` follows Suricata's
//! eve.json. An HTTP request holding the token is sent two seconds into a connection that already
//! carried two requests; the evidence file holds exactly that flow's packets within the window,
//! the earlier ones included (oracle: tcpdump's full capture of veth-b made at the same time,
//! read back with `tcpdump -r` and the flow's 5-tuple), its Community ID (computed here from the
//! file's packets by the spec) equals Suricata's `community_id`, and `tap verify` accepts the
//! directory, and names the file once one of its bytes is flipped. The tap also writes its own
//! file with `sign_key` (what `--sign-key` sets): `tap verify --public-key` finds its head signed
//! by that key, and names the file once one of its bytes is flipped.
//!
//! Every program the test runs is bounded in time (the scripted client and server time out on
//! their sockets, each run is killed past its bound), so a lost packet or a stuck peer fails the
//! test with what it waited for instead of hanging it; the namespaces, the monitor interface
//! (named per run) and every process go with their guards, also on failure.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use tap_tests::{
    TempDir, Topology,
    agent::{Agent, scrape},
    oracle::Tcpdump,
    process::{Background, run_bounded},
    suricata::{self, SID_TOKEN, Suricata},
    tap_bin,
    topology::{A_V4, B_V4},
    traffic::wait_tcp_listening,
    unique_suffix, wait_until,
};

const PORT: u16 = 8080;
const BEFORE: f64 = 10.0;
const AFTER: f64 = 2.0;

/// Bound of one helper program (the client's three requests take two seconds).
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// A keep-alive HTTP responder: `ok` to every request, until the client closes; then it closes
/// its end. The file object holds the socket open past `c.close()`, so both are closed by their
/// `with`: a socket left open keeps the client waiting for its FIN (the hang this test had).
const SERVER: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(8)
while True:
    c, _ = s.accept()
    c.settimeout(20)
    with c, c.makefile('rb') as f:
        try:
            for line in f:
                if line in (b"\r\n", b"\n"):
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\nok\n")
        except OSError:
            pass
"#;

/// One connection: two requests a second apart, then the token's two seconds in; prints the
/// client port. Every socket wait is bounded: a missing answer or FIN fails it (exit status 1).
const CLIENT: &str = r#"
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
print(c.getsockname()[1], flush=True)
def get(path, close=False):
    extra = "Connection: close\r\n" if close else ""
    c.sendall(("GET %s HTTP/1.1\r\nHost: www\r\n%s\r\n" % (path, extra)).encode())
    data = b""
    while not data.endswith(b"ok\n"):
        d = c.recv(4096)
        if not d:
            break
        data += d
get("/warmup")
time.sleep(1)
get("/warmup-again")
time.sleep(1)
get("/" + sys.argv[3], True)
c.shutdown(socket.SHUT_WR)
while c.recv(4096):
    pass
c.close()
"#;

/// Community ID v1 (seed 0) of a TCP/IPv4 flow, by the spec, in Python's words.
const COMMUNITY_ID: &str = r#"
import base64, hashlib, socket, struct, sys
a, pa, b, pb = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
ia, ib = socket.inet_aton(a), socket.inet_aton(b)
if (ia, pa) > (ib, pb):
    ia, pa, ib, pb = ib, pb, ia, pa
h = hashlib.sha1(struct.pack("!H", 0) + ia + ib + struct.pack("!BB", 6, 0) + struct.pack("!HH", pa, pb))
print("1:" + base64.b64encode(h.digest()).decode())
"#;

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// `cmd`'s standard output, failing the test when it fails or outlives [`RUN_TIMEOUT`].
fn output(what: &str, cmd: Command) -> String {
    run_bounded(what, cmd, RUN_TIMEOUT).stdout
}

/// `tcpdump -r FILE -nn -tt EXPR` as (time in s, the rest of the line).
fn tcpdump_lines(file: &Path, expr: &str) -> Vec<(f64, String)> {
    let mut cmd = Command::new("tcpdump");
    cmd.args(["-r", path(file), "-nn", "-tt"])
        .args(expr.split_whitespace());
    output("tcpdump -r", cmd)
        .lines()
        .map(|l| {
            let (t, rest) = l.split_once(' ').expect("a time and a packet");
            (t.parse().expect("a time"), rest.to_string())
        })
        .collect()
}

/// eve.json's alert on the token.
fn token_alert(eve: &Path, token: &str) -> Value {
    std::fs::read_to_string(eve)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| {
            v["alert"]["signature_id"] == u64::from(SID_TOKEN)
                && v["http"]["url"].as_str().is_some_and(|u| u.contains(token))
        })
        .unwrap_or_else(|| panic!("no alert on {token} in {}", eve.display()))
}

/// A loopback address for the agent's metrics: a port the kernel hands out as free. The agent
/// listens on the loopback of its own namespace, so the number cannot collide with another run.
fn metrics_addr() -> String {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    let port = socket.local_addr().expect("its address").port();
    format!("127.0.0.1:{port}")
}

fn config(dir: &Path, metrics: &str, b_if: &str, mon: &str, eve: Option<&Path>) -> String {
    let mut c = format!(
        "[agent]\ncontrol_socket = \"{d}/tap.sock\"\nmetrics_listen = \"{metrics}\"\n\n\
         [[tap]]\nname = \"b\"\ninterfaces = [\"{b_if}\"]\ninject = \"{mon}\"\nfix_checksums = true\n\
         pretrigger = \"60s,64MiB\"\n\
         [tap.file]\npath = \"{d}/signed/b.pcapng\"\nsign_key = \"{d}/sign.key\"\n",
        d = dir.display()
    );
    if let Some(eve) = eve {
        c.push_str(&format!(
            "\n[evidence]\neve = \"{}\"\nfrom_start = true\ndir = \"{}/evidence\"\nbefore = {BEFORE}\nafter = {AFTER}\nsettle = 1\nsids = \"{SID_TOKEN}\"\n",
            eve.display(),
            dir.display()
        ));
    }
    c
}

#[test]
fn an_alert_makes_a_file_of_its_flow_before_and_after() {
    suricata::require_suricata();
    let t = Topology::new();
    let dir = TempDir::new();
    let token = suricata::unique_token();
    let mon = format!("tapev{}", unique_suffix());
    let metrics_at = metrics_addr();
    let conf = dir.join("tap.toml");
    std::fs::create_dir(dir.join("signed")).expect("creating the signed capture's directory");
    let mut keygen = Command::new(tap_bin());
    keygen.args(["key", "generate"]).arg(dir.join("sign.key"));
    run_bounded("tap key generate", keygen, RUN_TIMEOUT);
    let write_config = |eve: Option<&Path>| {
        std::fs::write(&conf, config(dir.path(), &metrics_at, &t.b_if, &mon, eve))
            .expect("writing the config");
    };
    write_config(None);
    let mut agent = Agent::start(&t.b, &conf, &dir.join("tap.sock"));
    agent.wait_for_tap("b", "capturing", 1);
    let mut suri = Suricata::af_packet(&t.b, &mon, &token, &[]);
    // [evidence] by a reload, now that eve.json's path is known.
    write_config(Some(&suri.eve()));
    agent.hangup();
    agent.wait_for_count("following alerts", 1, Duration::from_secs(30));

    let oracle = Tcpdump::start(&t.b, &t.b_if, dir.join("full.pcap"), &[]);
    let mut server_cmd = t.b.cmd("python3");
    server_cmd
        .args(["-c", SERVER, B_V4, &PORT.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let _server = Background::spawn("HTTP responder", server_cmd);
    wait_tcp_listening(&t.b, PORT);
    // Other traffic, which the file must not hold.
    tap_tests::traffic::ping(&t.a, B_V4, 2, &[]);
    let mut client = t.a.cmd("python3");
    client.args(["-c", CLIENT, B_V4, &PORT.to_string(), &token]);
    let client_port: u16 = output("the HTTP client", client)
        .trim()
        .parse()
        .expect("the client's port");
    tap_tests::traffic::ping(&t.a, B_V4, 2, &[]);
    suri.wait_token(&suri.eve(), &token);

    // The case closes after + settle after the alert.
    let evidence = dir.join("evidence");
    let file = wait_until("the evidence file", Duration::from_secs(60), || {
        std::fs::read_dir(&evidence)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "pcapng"))
    });
    oracle.wait_quiet(Duration::from_millis(500));
    let full = dir.join("full.pcap");
    drop(oracle.stop());
    let metrics = scrape(&t.b, &metrics_at);
    let alert = token_alert(&suri.eve(), &token);
    let exited = agent.stop();
    assert!(
        exited.status.success(),
        "the agent failed:\n{}",
        exited.stderr
    );
    drop(suri);

    // The alert names the flow; its time opens the window.
    let community = alert["community_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no community_id in {alert}"))
        .to_string();
    assert_eq!(alert["src_port"], u64::from(client_port), "{alert}");
    let alert_ts = alert["timestamp"].as_str().expect("a timestamp");
    let alert_s = parse_suricata_time(alert_ts);
    let flow =
        format!("tcp and host {A_V4} and host {B_V4} and port {client_port} and port {PORT}");
    let want: Vec<(f64, String)> = tcpdump_lines(&full, &flow)
        .into_iter()
        .filter(|(t, _)| (alert_s - BEFORE..=alert_s + AFTER).contains(t))
        .collect();
    let got = tcpdump_lines(&file, "");
    let text = |v: &[(f64, String)]| v.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>();
    assert_eq!(
        text(&got),
        text(&want),
        "the evidence file {} holds the flow's packets of the window as tcpdump saw them",
        file.display()
    );
    assert!(
        want.len() >= 10 && want[0].1.contains("Flags [S]"),
        "the whole connection, from its SYN: {want:?}"
    );
    assert!(
        got[0].0 < alert_s - 1.5,
        "packets from two seconds before the alert are in the file: first at {}, alert at {alert_s}",
        got[0].0
    );
    // Its Community ID, by the spec, from the packets in the file.
    let (a, pa, b, pb) = ends(&got[0].1);
    let mut by_spec = Command::new("python3");
    by_spec.args(["-c", COMMUNITY_ID, &a, &pa.to_string(), &b, &pb.to_string()]);
    let computed = output("the Community ID by the spec", by_spec)
        .trim()
        .to_string();
    assert_eq!(
        computed, community,
        "Suricata's community_id is the file's flow"
    );
    let mut capinfos = Command::new("capinfos");
    capinfos.arg(&file);
    let info = output("capinfos", capinfos);
    assert!(
        info.contains(&format!("community_id: {community}")),
        "capinfos shows the Community ID:\n{info}"
    );
    assert!(
        info.contains(&format!("alert: sid {SID_TOKEN} ")),
        "capinfos shows the alert:\n{info}"
    );
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.contains(&format!("-{SID_TOKEN}-")),
        "<time>-<sid>-<community-id>.pcapng: {name}"
    );
    // One file for the flow, recorded in the manifest, which verifies.
    let files: Vec<_> = std::fs::read_dir(&evidence)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "pcapng"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let (ok, line) = verify(&evidence, &[]);
    assert!(ok, "tap verify accepts the evidence directory: {line}");
    assert!(
        line.contains(": intact: ") && line.contains(", 1 files"),
        "{line}"
    );
    // One byte of the file flipped: the chain breaks at that file.
    let mut bytes = std::fs::read(&file).expect("reading the evidence file");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&file, bytes).expect("altering the evidence file");
    let (ok, line) = verify(&evidence, &[]);
    assert!(!ok, "tap verify refuses the altered file: {line}");
    assert!(line.contains(&name), "the message names {name}: {line}");
    // The tap's own file, each entry signed as the capture recorded it: the head is signed by
    // the trusted key; one byte flipped, the file is named.
    let signed = dir.join("signed");
    let public = dir.join("sign.key.pub");
    let trusted = ["--public-key", path(&public)];
    let (ok, line) = verify(&signed, &trusted);
    assert!(ok, "tap verify accepts the signed capture: {line}");
    assert!(line.contains("head signed by"), "{line}");
    let capture = signed.join("b.pcapng");
    let mut bytes = std::fs::read(&capture).expect("reading the signed capture");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&capture, bytes).expect("altering the signed capture");
    let (ok, line) = verify(&signed, &trusted);
    assert!(!ok, "tap verify refuses the altered capture: {line}");
    assert!(
        line.contains("b.pcapng"),
        "the message names b.pcapng: {line}"
    );
    assert_eq!(
        metrics.get("tap_evidence_files_total", ""),
        Some(1.0),
        "{}",
        metrics.text
    );
    assert_eq!(
        metrics.get("tap_evidence_packets_total", ""),
        Some(got.len() as f64),
        "{}",
        metrics.text
    );
    assert!(metrics.tap("tap_pretrigger_packets_total", "b") >= got.len() as u64);
    assert_eq!(metrics.tap("tap_pretrigger_overwritten_total", "b"), 0);
}

/// `tap verify [ARGS] DIR`: (exit status 0, what it printed); any status but 0 or 1 fails the
/// test.
fn verify(dir: &Path, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(tap_bin());
    cmd.arg("verify")
        .args(args)
        .arg(dir)
        .env_remove("TAP_LOG")
        .stdin(Stdio::null());
    let out = Background::spawn_collecting_stdout("tap verify", cmd).wait(RUN_TIMEOUT);
    let text = format!("{}{}", out.stdout, out.stderr).trim().to_string();
    match out.status.code() {
        Some(0) => (true, text),
        Some(1) => (false, text),
        other => panic!("tap verify exited with {other:?}: {text}"),
    }
}

/// The addresses and ports of a tcpdump line `IP A.PA > B.PB: ...`.
fn ends(line: &str) -> (String, u16, String, u16) {
    let rest = line.strip_prefix("IP ").expect("an IPv4 line");
    let (src, rest) = rest.split_once(" > ").expect("src > dst");
    let dst = rest.split_once(':').expect("dst:").0;
    let split = |e: &str| {
        let (ip, port) = e.rsplit_once('.').expect("ip.port");
        (ip.to_string(), port.parse().expect("a port"))
    };
    let ((a, pa), (b, pb)) = (split(src), split(dst));
    (a, pa, b, pb)
}

/// Suricata's `2026-12-04T13:24:18.123456+0000` as seconds since the epoch.
fn parse_suricata_time(ts: &str) -> f64 {
    let mut cmd = Command::new("date");
    cmd.args(["-u", "-d", &ts.replacen('T', " ", 1), "+%s.%N"]);
    output("date -d", cmd)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("a time: {ts}"))
}
