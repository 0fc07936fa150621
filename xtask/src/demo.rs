//! `cargo xtask demo`: tap on one end of a veth pair between two throwaway namespaces, real
//! traffic across it (ping over IPv4 and IPv6, a UDP datagram, an HTTP GET), then tap's summary
//! and what tcpdump reads back from the file.

use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use tap_tests::{
    Netns,
    topology::{A_V4, A_V6, B_V4, B_V6},
};

use crate::{process::Background, util};

const HTTP_PORT: u16 = 8080;
const UDP_PORT: u16 = 5555;
/// Lines of tcpdump's reading shown.
const SHOWN: usize = 30;

pub(crate) fn run(root: &Path) -> Result<()> {
    util::require_root("cargo xtask demo")?;
    util::catch_interrupts();
    let tap = root.join("target/release/tap");
    let dir = root.join("target/demo");
    fs::create_dir_all(dir.join("www")).with_context(|| format!("creating {}", dir.display()))?;
    fs::write(dir.join("www/index.html"), "hello from tap's demo\n")?;
    let pcap = dir.join("demo.pcap");
    let _ = fs::remove_file(&pcap);

    let topo = util::topology()?;
    let (a, b) = (&topo.a, &topo.b);
    println!("demo: namespace {} ({} {A_V4} {A_V6})", a.name, topo.a_if);
    println!("demo: namespace {} ({} {B_V4} {B_V6})", b.name, topo.b_if);
    let _nginx = start_nginx(b, &dir)?;

    let mut cmd = b.cmd(&tap.to_string_lossy());
    cmd.args(["capture", "-i", &topo.b_if, "--hook", "tc", "-w"])
        .arg(&pcap)
        .args(["--log", "info"]);
    println!(
        "demo: tap capture -i {} --hook tc -w {}",
        topo.b_if,
        pcap.display()
    );
    let mut capture = Background::spawn("tap capture", cmd.env("NO_COLOR", "1"))?;
    capture.wait_for_stderr("capturing", Duration::from_secs(30))?;
    println!(
        "demo: tap is attached; traffic from {} to {}:",
        a.name, b.name
    );

    traffic(a, b)?;
    // The last segments of the HTTP exchange are on their way.
    util::sleep(Duration::from_millis(300))?;
    let exited = capture.stop(libc::SIGINT, Duration::from_secs(10))?;
    if !exited.status.success() {
        bail!(
            "tap failed ({}):\n{}",
            exited.status,
            exited.stderr.trim_end()
        );
    }

    println!("\n== tap's summary ==");
    for line in summary_lines(&exited.stderr) {
        println!("{line}");
    }
    let out = Command::new("tcpdump")
        .arg("-nr")
        .arg(&pcap)
        .stderr(Stdio::null())
        .output()
        .context("running tcpdump")?;
    if !out.status.success() {
        bail!("tcpdump cannot read {}: {}", pcap.display(), out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    println!("\n== tcpdump -nr {} ==", pcap.display());
    for line in lines.iter().take(SHOWN) {
        println!("{line}");
    }
    if lines.len() > SHOWN {
        println!("... and {} more", lines.len() - SHOWN);
    }
    println!(
        "\nThe capture ({} packets) is in {}",
        lines.len(),
        pcap.display()
    );
    Ok(())
}

/// Ping both ways over IPv4 and IPv6, a UDP datagram, an HTTP GET: each must succeed.
fn traffic(a: &Netns, b: &Netns) -> Result<()> {
    for dst in [B_V4, B_V6] {
        let out = util::ns_output(a, "ping", &["-n", "-c", "3", "-i", "0.2", "-W", "2", dst])
            .with_context(|| format!("ping {dst}"))?;
        let stats = out
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or_default();
        println!("  ping {dst}: {}", stats.trim());
    }

    // socat receives one datagram, writes it to its standard error and exits.
    let receiver = Background::spawn(
        "socat (UDP receiver)",
        b.cmd("socat")
            .args(["-u", &format!("UDP4-RECVFROM:{UDP_PORT}"), "STDERR"]),
    )?;
    wait_listening(b, "u", UDP_PORT)?;
    let message = "hello over UDP";
    util::ns_output(
        a,
        "sh",
        &[
            "-c",
            &format!("printf '{message}\\n' | socat -u STDIN UDP4-SENDTO:{B_V4}:{UDP_PORT}"),
        ],
    )
    .context("sending the UDP datagram")?;
    let got = receiver.wait(Duration::from_secs(5))?;
    println!(
        "  UDP to {B_V4}:{UDP_PORT}: {} received {:?}",
        b.name,
        got.stderr.trim_end()
    );

    let url = format!("http://{B_V4}:{HTTP_PORT}/");
    let out = util::ns_output(
        a,
        "curl",
        &[
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
            &url,
        ],
    )
    .with_context(|| format!("GET {url}"))?;
    let (code, size) = out.split_once(' ').unwrap_or((&out, "?"));
    if code != "200" {
        bail!("GET {url} answered {code}");
    }
    println!("  GET {url}: {code}, {size} bytes");
    Ok(())
}

/// nginx in `ns` on [`HTTP_PORT`], in the foreground as one process, everything under `dir`.
fn start_nginx(ns: &Netns, dir: &Path) -> Result<Background> {
    let d = dir.display();
    let conf = dir.join("nginx.conf");
    fs::write(
        &conf,
        format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log stderr warn;\n\
             events {{ worker_connections 16; }}\n\
             http {{\n  access_log off;\n  default_type text/html;\n\
             client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n\
             uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n\
             server {{ listen {B_V4}:{HTTP_PORT}; root {d}/www; }}\n}}\n"
        ),
    )?;
    let nginx = Background::spawn(
        "nginx",
        ns.cmd("nginx").arg("-c").arg(&conf).args(["-e", "stderr"]),
    )?;
    wait_listening(ns, "t", HTTP_PORT)?;
    Ok(nginx)
}

/// Waits until something in `ns` listens on `port` (`proto`: "t" for TCP, "u" for UDP).
fn wait_listening(ns: &Netns, proto: &str, port: u16) -> Result<()> {
    for _ in 0..500 {
        let out = util::ns_output(
            ns,
            "ss",
            &[&format!("-Hln{proto}"), &format!("sport = :{port}")],
        )?;
        if !out.trim().is_empty() {
            return Ok(());
        }
        util::sleep(Duration::from_millis(20))?;
    }
    bail!("nothing listens on port {port} in {} after 10 s", ns.name)
}

/// tap's exit summary: its standard error without the log lines (which start with a timestamp).
fn summary_lines(stderr: &str) -> impl Iterator<Item = &str> {
    let is_log = |l: &str| {
        let b = l.as_bytes();
        b.len() > 11 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b'T'
    };
    stderr
        .lines()
        .filter(move |l| !l.trim().is_empty() && !is_log(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_drops_log_lines() {
        let stderr = "2026-11-27T02:30:08.953406Z  INFO attached iface=veth-b\n\
                      12 packets captured\n12 packets received by filter\n\n\
                      2026-11-27T02:30:09.000000Z  INFO detached\n0 packets dropped by writer\n";
        let lines: Vec<&str> = summary_lines(stderr).collect();
        assert_eq!(
            lines,
            [
                "12 packets captured",
                "12 packets received by filter",
                "0 packets dropped by writer"
            ]
        );
    }
}
