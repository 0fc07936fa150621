//! Traffic for captures: ping, UDP datagrams with echoes, an HTTP server and a GET, a UDP burst.
//! Each generator is bounded in count and in time.

use std::{path::Path, process::Stdio, time::Duration};

use crate::{Netns, process::Background, run_ok, wait_until};

/// `ping -c COUNT DST` from `ns` (IPv4 or IPv6 by the address), 0.1 s apart. Fails unless every
/// echo is answered: `-w` makes a missing reply an error instead of a shrug.
pub fn ping(ns: &Netns, dst: &str, count: u32, extra: &[&str]) {
    let deadline = (count / 5 + 10).to_string();
    run_ok(
        ns.cmd("ping")
            .args([
                "-n",
                "-q",
                "-c",
                &count.to_string(),
                "-i",
                "0.1",
                "-w",
                &deadline,
            ])
            .args(extra)
            .arg(dst),
    );
}

/// A UDP echo server on `[::]:port` (IPv4 too, through mapped addresses) that answers `count`
/// datagrams and exits; it gives up after 60 s without one.
const UDP_ECHO: &str = r#"
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", port))
s.settimeout(60)
print("ready", file=sys.stderr, flush=True)
for _ in range(count):
    data, peer = s.recvfrom(65535)
    s.sendto(data, peer)
"#;

/// Sends one datagram of each size to each host and waits for its echo (5 s each at most).
const UDP_CLIENT: &str = r#"
import socket, sys
port, sizes, hosts = int(sys.argv[1]), [int(n) for n in sys.argv[2].split(",")], sys.argv[3:]
for host in hosts:
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    for size in sizes:
        payload = bytes(i % 251 for i in range(size))
        s.sendto(payload, (host, port))
        data, _ = s.recvfrom(65535)
        assert data == payload, f"echo of {size} bytes from {host} differs"
"#;

/// Sends `count` datagrams of `size` bytes to `host:port` as fast as it can.
const UDP_BURST: &str = r#"
import socket, sys
host, port, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
payload = bytes(size)
for _ in range(count):
    s.sendto(payload, (host, port))
"#;

/// UDP port the echo server listens on.
pub const UDP_PORT: u16 = 7777;

/// Exchanges UDP datagrams of `sizes` bytes between `client` and an echo server started in
/// `server`, once per host in `hosts` (addresses of `server`).
pub fn udp_echo(client: &Netns, server: &Netns, hosts: &[&str], sizes: &[usize]) {
    let count = hosts.len() * sizes.len();
    let mut cmd = server.cmd("python3");
    cmd.args(["-c", UDP_ECHO, &UDP_PORT.to_string(), &count.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut echo = Background::spawn("UDP echo server", cmd);
    echo.wait_for_stderr("ready", Duration::from_secs(30));
    let sizes: Vec<String> = sizes.iter().map(ToString::to_string).collect();
    run_ok(
        client
            .cmd("python3")
            .args(["-c", UDP_CLIENT, &UDP_PORT.to_string(), &sizes.join(",")])
            .args(hosts),
    );
    let exited = echo.wait(Duration::from_secs(10));
    assert!(
        exited.status.success(),
        "UDP echo server failed ({}):\n{}",
        exited.status,
        exited.stderr
    );
}

/// Sends a burst of `count` datagrams of `size` bytes from `ns` to `host` (to the discard port:
/// nobody needs to answer).
pub fn udp_burst(ns: &Netns, host: &str, count: u32, size: usize) {
    run_ok(ns.cmd("python3").args([
        "-c",
        UDP_BURST,
        host,
        "9",
        &count.to_string(),
        &size.to_string(),
    ]));
}

/// Sends one datagram of `size` bytes from each of `flows` fresh sockets (so as many source
/// ports) to `host:port`: many short flows.
const UDP_FLOWS: &str = r#"
import socket, sys
host, port, flows, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
for i in range(flows):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.sendto(bytes([i % 251]) * size, (host, port))
    s.close()
"#;

/// Sends `count` datagrams of `size` bytes from one socket to `host:port`, `gap_ms` apart: a
/// long flow (bounded by `count * gap_ms`).
const UDP_STREAM: &str = r#"
import socket, sys, time
host, port, count, size, gap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
for i in range(count):
    s.sendto(bytes([i % 251]) * size, (host, port))
    time.sleep(gap / 1000)
"#;

/// Many short UDP flows from `ns` to `host:port`, one datagram each (see [`UDP_FLOWS`]).
pub fn udp_flows(ns: &Netns, host: &str, port: u16, flows: u32, size: usize) {
    run_ok(ns.cmd("python3").args([
        "-c",
        UDP_FLOWS,
        host,
        &port.to_string(),
        &flows.to_string(),
        &size.to_string(),
    ]));
}

/// A long UDP flow from `ns` to `host:port` in the background: `count` datagrams `gap_ms`
/// apart. Wait for it with [`Background::wait`].
pub fn udp_stream(
    ns: &Netns,
    host: &str,
    port: u16,
    count: u32,
    size: usize,
    gap_ms: u32,
) -> Background {
    let mut cmd = ns.cmd("python3");
    cmd.args([
        "-c",
        UDP_STREAM,
        host,
        &port.to_string(),
        &count.to_string(),
        &size.to_string(),
        &gap_ms.to_string(),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    Background::spawn("UDP stream", cmd)
}

/// Waits until something in `ns` listens on TCP `port`.
pub fn wait_tcp_listening(ns: &Netns, port: u16) {
    wait_until(
        &format!("a TCP listener on port {port}"),
        Duration::from_secs(30),
        || {
            let out = ns.sh(&format!("ss -Hltn 'sport = :{port}'"));
            (!out.trim().is_empty()).then_some(())
        },
    );
}

/// TCP port of [`HttpServer`].
pub const HTTP_PORT: u16 = 8080;

/// Python's HTTP server in a namespace, on every address (IPv4 and IPv6), serving an empty
/// directory: a small listing, so every response fits in a segment or two of a 1500-byte MTU.
/// Stopped on drop.
#[derive(Debug)]
pub struct HttpServer {
    _process: Background,
}

impl HttpServer {
    pub fn start(ns: &Netns, root: &Path) -> Self {
        let mut cmd = ns.cmd("python3");
        cmd.args(["-m", "http.server", "--bind", "::", "--directory"])
            .arg(root)
            .arg(HTTP_PORT.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let process = Background::spawn("HTTP server", cmd);
        wait_tcp_listening(ns, HTTP_PORT);
        Self { _process: process }
    }
}

/// An HTTP GET from `ns` to `host` (an address; IPv6 without brackets) on [`HTTP_PORT`], which
/// must answer 200.
pub fn http_get(ns: &Netns, host: &str) {
    http_get_path(ns, host, "/");
}

/// An HTTP GET of `path` (starting with '/') from `ns` to `host` on [`HTTP_PORT`], which must
/// answer 200: the file must exist in the server's directory.
pub fn http_get_path(ns: &Netns, host: &str, path: &str) {
    let url = if host.contains(':') {
        format!("http://[{host}]:{HTTP_PORT}{path}")
    } else {
        format!("http://{host}:{HTTP_PORT}{path}")
    };
    let out = run_ok(ns.cmd("curl").args([
        "-sS",
        "-g",
        "--max-time",
        "10",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url,
    ]));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "GET {url}");
}

/// TCP port of [`tcp_bulk`]'s iperf3 server.
pub const IPERF_PORT: u16 = 15201;

/// One bulk TCP transfer of `bytes` (iperf3's `-n`: `8M`, `100K`, ...) from `client` to an
/// iperf3 server started in `server` for this one test, at `host` (an address of `server`;
/// IPv6 picks `-6`). At full speed, so the sender's TCP builds 64 KiB GSO packets where the
/// link offloads segmentation. Bounded: 60 s at most.
pub fn tcp_bulk(client: &Netns, server: &Netns, host: &str, bytes: &str) {
    TcpBulk::start(client, server, host, bytes).finish();
}

/// [`tcp_bulk`] running in the background, for traffic beside it.
#[derive(Debug)]
pub struct TcpBulk {
    server: Background,
    client: Background,
}

impl TcpBulk {
    pub fn start(client: &Netns, server: &Netns, host: &str, bytes: &str) -> Self {
        let mut cmd = server.cmd("iperf3");
        cmd.args(["-s", "-1", "-p", &IPERF_PORT.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let srv = Background::spawn("iperf3 server", cmd);
        wait_tcp_listening(server, IPERF_PORT);
        let family = if host.contains(':') { "-6" } else { "-4" };
        let mut cmd = client.cmd("iperf3");
        cmd.args([
            family,
            "-c",
            host,
            "-p",
            &IPERF_PORT.to_string(),
            "-n",
            bytes,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
        Self {
            server: srv,
            client: Background::spawn("iperf3 client", cmd),
        }
    }

    /// Waits for the transfer to end (60 s at most); both ends must succeed.
    pub fn finish(self) {
        for (what, p) in [("client", self.client), ("server", self.server)] {
            let exited = p.wait(Duration::from_secs(60));
            assert!(
                exited.status.success(),
                "iperf3 {what} failed ({}):\n{}",
                exited.status,
                exited.stderr
            );
        }
    }
}

/// nginx in a namespace, listening on `addr`:[`HTTP_PORT`] and serving `root`, in the
/// foreground as one process with everything (configuration, pid, temporary files) under
/// `dir`. Stopped on drop.
#[derive(Debug)]
pub struct Nginx {
    _process: Background,
}

impl Nginx {
    pub fn start(ns: &Netns, addr: &str, root: &Path, dir: &Path) -> Self {
        let d = dir.display();
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log stderr warn;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{\n  access_log off;\n  default_type text/plain;\n\
                 client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n\
                 uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n\
                 server {{ listen {addr}:{HTTP_PORT}; root {root}; }}\n}}\n",
                root = root.display()
            ),
        )
        .unwrap_or_else(|e| panic!("writing {}: {e}", conf.display()));
        let mut cmd = ns.cmd("nginx");
        cmd.arg("-c")
            .arg(&conf)
            .args(["-e", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let process = Background::spawn("nginx", cmd);
        wait_tcp_listening(ns, HTTP_PORT);
        Self { _process: process }
    }
}

/// `count` HTTP GETs of `path` from `ns` to `host`:[`HTTP_PORT`], each on a connection of its
/// own (so each is a TCP flow of its own, opened and closed), one after the other; each must
/// answer 200. Bounded: 120 s in all.
pub fn http_gets(ns: &Netns, host: &str, path: &str, count: u32) {
    const CLIENT: &str = r#"
import http.client, sys
host, port, path, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
for i in range(count):
    c = http.client.HTTPConnection(host, port, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    assert r.status == 200, f"GET {path}: {r.status}"
    c.close()
"#;
    run_ok(ns.cmd("timeout").args([
        "120",
        "python3",
        "-c",
        CLIENT,
        host,
        &HTTP_PORT.to_string(),
        path,
        &count.to_string(),
    ]));
}

/// Sends `count` UDP datagrams of `size` bytes from `ns` to `host`:9, spread evenly over
/// `over`.
pub fn paced_udp(ns: &Netns, host: &str, count: u32, size: usize, over: Duration) {
    const PACED: &str = r"
import socket, sys, time
host, count, size, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = bytes(size)
start = time.monotonic()
for i in range(count):
    s.sendto(payload, (host, 9))
    if i % 100 == 99:
        ahead = start + secs * (i + 1) / count - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
";
    run_ok(ns.cmd("python3").args([
        "-c",
        PACED,
        host,
        &count.to_string(),
        &size.to_string(),
        &over.as_secs_f64().to_string(),
    ]));
}
