//! The agent's store and its HTTP pull (`[tap.store]`, `agent.query_listen`): `GET /query`
//! gives what `tap query` and `tcpdump -r` of every store file give (pcap and pcapng, read back
//! by tcpdump), `GET /flows` the flows `tap query --flows --json` prints; a bad selection is a
//! 400 with one line, a missing or wrong token a 401 (the listener is off loopback), and the
//! connection cap holds.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use tap_tests::{
    Netns, TempDir, Topology,
    agent::{Agent, scrape},
    pcap::Pcap,
    run_ok,
    store::{Window, assert_same, capture_files, merged, query, rfc3339, tcpdump_each},
    tap_bin,
    topology::FIRST,
    traffic, wait_until,
};

const METRICS: &str = "127.0.0.1:9750";
const TOKEN: &str = "test-token-0123456789";
/// The endpoint's port, on tap's side of the veth pair (not loopback: a token is required).
const PORT: u16 = 9751;

/// `curl` from `ns`: (HTTP status, body).
fn get(ns: &Netns, work: &TempDir, target: &str, token: Option<&str>) -> (u16, Vec<u8>) {
    let out = work.join(&format!("http-{}", tap_tests::unique_suffix()));
    let mut cmd = ns.cmd("curl");
    cmd.args(["-sS", "--max-time", "60", "-o"])
        .arg(&out)
        .args(["-w", "%{http_code}"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    cmd.arg(format!("http://{}:{PORT}{target}", FIRST.b_v4));
    let done = run_ok(&mut cmd);
    let status = String::from_utf8_lossy(&done.stdout)
        .trim()
        .parse()
        .expect("curl's status code");
    let body = std::fs::read(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    (status, body)
}

/// A query string value, percent-encoded.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn selection(expr: &str, w: Window) -> String {
    let mut s = format!("expr={}", enc(expr));
    if let Some(t) = w.since {
        s.push_str(&format!("&since={}", enc(&rfc3339(t))));
    }
    if let Some(t) = w.until {
        s.push_str(&format!("&until={}", enc(&rfc3339(t))));
    }
    s
}

/// `body` (a pcap or pcapng) as tcpdump reads it, rewritten as nanosecond pcap.
fn through_tcpdump(body: &[u8], work: &TempDir) -> Pcap {
    let (input, out) = (
        work.join(&format!("body-{}", tap_tests::unique_suffix())),
        work.join(&format!("read-{}.pcap", tap_tests::unique_suffix())),
    );
    std::fs::write(&input, body).unwrap();
    run_ok(
        Command::new("tcpdump")
            .arg("-r")
            .arg(&input)
            .args(["--time-stamp-precision", "nano", "-w"])
            .arg(&out),
    );
    let p = Pcap::read(&out);
    let _ = std::fs::remove_file(&input);
    let _ = std::fs::remove_file(&out);
    p
}

fn start_agent(t: &Topology, dir: &TempDir, store: &Path) -> Agent {
    let (socket, config, token) = (
        dir.join("ctl.sock"),
        dir.join("tap.toml"),
        dir.join("token"),
    );
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
control_socket = "{socket}"
metrics_listen = "{METRICS}"
query_listen = "{addr}:{PORT}"
query_token_file = "{token}"

[[tap]]
name = "store"
interfaces = ["{b_if}"]
hook = "tc-ingress"
filter = "udp or icmp"
[tap.store]
dir = "{store}"
file_size_mb = 0.01
flush_interval_ms = 50
"#,
            socket = socket.display(),
            addr = FIRST.b_v4,
            token = token.display(),
            b_if = t.b_if,
            store = store.display(),
        ),
    )
    .unwrap();
    let mut agent = Agent::start(&t.b, &config, &socket);
    agent.wait_for_tap("store", "capturing", 1);
    agent.wait_attached("store", &[t.b_if.as_str()]);
    agent
}

#[test]
fn http_pull_gives_what_tap_query_and_tcpdump_give() {
    let t = Topology::new();
    let dir = TempDir::new();
    let work = TempDir::new();
    let store: PathBuf = dir.join("store");
    let agent = start_agent(&t, &dir, &store);

    traffic::udp_flows(&t.a, FIRST.b_v4, 9999, 300, 40);
    traffic::ping(&t.a, FIRST.b_v4, 10, &[]);
    traffic::udp_flows(&t.a, FIRST.b_v4, 7777, 50, 200);
    wait_until("all 360 packets written", Duration::from_secs(20), || {
        (scrape(&t.b, METRICS).get("tap_packets_written_total", "tap=\"store\"") == Some(360.0))
            .then_some(())
    });
    let files = capture_files(&store);
    assert!(files.len() >= 3, "rotations: {files:?}");
    // The store's counters in the metrics: every finished file's index, as the directory holds
    // them, and nothing deleted (no retention asked for).
    let indexes = || {
        std::fs::read_dir(&store)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".flows.parquet")
            })
            .count()
    };
    // The counter is raised just after an index file is complete: wait for both.
    wait_until(
        "each finished file indexed",
        Duration::from_secs(20),
        || {
            let counted =
                scrape(&t.b, METRICS).get("tap_store_files_indexed_total", "tap=\"store\"");
            (indexes() == files.len() && counted == Some(files.len() as f64)).then_some(())
        },
    );
    assert_eq!(
        scrape(&t.b, METRICS).get("tap_store_files_deleted_total", "tap=\"store\""),
        Some(0.0)
    );

    // The whole window and one cut across file boundaries, from the oracle's own timestamps.
    let all = merged(&tcpdump_each(&files, &work, ""), Window::default(), &work);
    let n = all.records.len();
    assert!(n > 100, "{n} packets in the finished files");
    let cut = Window {
        since: Some(all.ts_ns(n / 4)),
        until: Some(all.ts_ns(3 * n / 4)),
    };
    for (expr, w) in [
        ("", Window::default()),
        ("udp", cut),
        ("icmp", Window::default()),
        ("udp and port 7777", Window::default()),
        ("udp dst port 9999 and not icmp", cut),
    ] {
        let want = merged(&tcpdump_each(&files, &work, expr), w, &work);
        let (cli, _) = query(&store, &work, w, expr, &[]);
        assert_same(&cli, &want, &format!("tap query '{expr}' {w:?}"));
        for format in ["pcap", "pcapng"] {
            let (status, body) = get(
                &t.a,
                &work,
                &format!("/query?{}&format={format}", selection(expr, w)),
                Some(TOKEN),
            );
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            let got = through_tcpdump(&body, &work);
            assert_same(
                &got,
                &want,
                &format!("GET /query '{expr}' {w:?} as {format}"),
            );
        }
    }

    // /flows: the objects `tap query --flows --json` prints, in its order.
    for (expr, w) in [("udp", Window::default()), ("port 9999", cut)] {
        let (status, body) = get(
            &t.a,
            &work,
            &format!("/flows?{}", selection(expr, w)),
            Some(TOKEN),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let got: Vec<serde_json::Value> = serde_json::from_slice(&body).expect("a JSON array");
        let mut cmd = Command::new(tap_bin());
        cmd.arg("query").arg(&store).args(["--flows", "--json"]);
        if let Some(s) = w.since {
            cmd.args(["--since", &rfc3339(s)]);
        }
        if let Some(u) = w.until {
            cmd.args(["--until", &rfc3339(u)]);
        }
        cmd.args(expr.split_whitespace()).env_remove("TAP_LOG");
        let text = String::from_utf8(run_ok(&mut cmd).stdout).unwrap();
        let want: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(!want.is_empty(), "flows of '{expr}'");
        assert_eq!(got, want, "GET /flows '{expr}'");
    }

    // Refusals: a bad selection is a 400 with one line; no or a wrong token, a 401.
    for target in [
        "/query?expr=port+99999",
        "/query?expr=%28udp",
        "/flows?since=yesterday",
        "/query?format=csv",
    ] {
        let (status, body) = get(&t.a, &work, target, Some(TOKEN));
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{target}: {text}");
        assert_eq!(text.lines().count(), 1, "{target}: {text}");
    }
    let (_, body) = get(&t.a, &work, "/query?expr=port+99999", Some(TOKEN));
    assert!(String::from_utf8_lossy(&body).contains("99999"));
    for token in [None, Some("test-token-0123456788"), Some("")] {
        let (status, _) = get(&t.a, &work, "/query?expr=udp", token);
        assert_eq!(status, 401, "token {token:?}");
    }

    connection_cap_holds(&t.a);
    drop(agent);
}

/// Eight connections that send nothing hold every slot (the header timeout is 5 s): a ninth
/// request is not answered while they stay, and is once they close.
fn connection_cap_holds(ns: &Netns) {
    let script = format!(
        r#"
import socket, time, sys
addr = ("{addr}", {PORT})
idle = [socket.create_connection(addr, timeout=10) for _ in range(8)]
time.sleep(0.3)
s = socket.create_connection(addr, timeout=10)
s.sendall(b"GET /flows HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
s.settimeout(1.0)
try:
    early = s.recv(1)
except socket.timeout:
    early = None
if early is not None:
    print("answered while 8 connections were open:", early)
    sys.exit(1)
for c in idle:
    c.close()
s.settimeout(10)
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.split(b"\r\n")[0].decode())
"#,
        addr = FIRST.b_v4,
    );
    let out = run_ok(ns.cmd("python3").args(["-c", &script]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), "HTTP/1.1 200 OK", "{text}");
}
