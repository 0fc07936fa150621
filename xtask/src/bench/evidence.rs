//! Evidence: the time from an alert written into `eve.json` to its evidence file closed (renamed
//! into place, recorded in the manifest) with `after = 0`, and the pre-trigger memory's CPU cost
//! over the writer alone (`tap bench-writer` with and without `--pretrigger`).
//!
//! The latency runs `tap agent` in a namespace of its own: one tap on its loopback holding a
//! pre-trigger memory, `[evidence]` following a file this bench appends alerts to (each on a
//! flow of its own, so each makes one file). Between a line written and its file lie: the
//! follower's poll of the file (100 ms), `settle` (the time the packets need to reach the
//! history: 1 s by default, also measured at 0), the case's close on the follower's next poll,
//! and writing the file. Polled here every millisecond.

use std::{
    io::Write as _,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::capture::TOOL_CPU;

/// Alerts per latency run.
const ALERTS: usize = 15;

/// `2026-12-04T13:24:18.123456+0000` for `t`.
fn suricata_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}+0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

fn alert_line(n: usize) -> String {
    json!({
        "timestamp": suricata_time(SystemTime::now()),
        "flow_id": 1_000_000 + n,
        "event_type": "alert",
        "src_ip": "127.0.0.1",
        "src_port": 20_000 + n,
        "dest_ip": "127.0.0.1",
        "dest_port": 9,
        "proto": "UDP",
        "community_id": format!("1:bench{n}="),
        "alert": {"signature_id": 1_000_002, "gid": 1, "rev": 1, "signature": "bench", "category": "", "severity": 3}
    })
    .to_string()
}

fn pcapng_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "pcapng"))
            .count()
    })
}

/// A namespace and the agent in it, removed on drop (also on an error).
struct Cleanup(String, Option<std::process::Child>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut c) = self.1.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Milliseconds from each alert line to its file, with `settle` seconds.
fn latencies(tap: &Path, settle: f64) -> Result<Vec<f64>> {
    let ns = format!("tap-bench-ev-{}", std::process::id());
    let status = Command::new("ip").args(["netns", "add", &ns]).status()?;
    if !status.success() {
        bail!("ip netns add {ns} failed");
    }
    let mut guard = Cleanup(ns.clone(), None);
    Command::new("ip")
        .args(["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])
        .status()?;
    let dir = std::env::temp_dir().join(format!("tap-bench-evidence-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let eve = dir.join("eve.json");
    std::fs::write(&eve, "")?;
    let evidence = dir.join("evidence");
    let config = dir.join("tap.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\ncontrol_socket = \"{d}/tap.sock\"\n\n[[tap]]\nname = \"lo\"\ninterfaces = [\"lo\"]\nfilter = \"udp\"\npretrigger = \"30s\"\n\n\
             [evidence]\neve = \"{eve}\"\ndir = \"{ev}\"\nbefore = 5\nafter = 0\nsettle = {settle}\nrate = 1000\n",
            d = dir.display(),
            eve = eve.display(),
            ev = evidence.display()
        ),
    )?;
    let mut agent = Command::new("ip");
    agent
        .args(["netns", "exec", &ns])
        .arg(tap)
        .args(["agent", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    guard.1 = Some(agent.spawn().context("starting tap agent")?);
    // Ready once the follower has made the evidence directory.
    let start = Instant::now();
    while !evidence.is_dir() {
        if start.elapsed() > Duration::from_secs(60) {
            bail!("the agent did not start its evidence writer within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut out = Vec::new();
    for n in 0..ALERTS {
        crate::util::check_interrupted()?;
        let before = pcapng_files(&evidence);
        let mut f = std::fs::OpenOptions::new().append(true).open(&eve)?;
        let line = alert_line(n);
        let t0 = Instant::now();
        writeln!(f, "{line}")?;
        drop(f);
        while pcapng_files(&evidence) == before {
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("no evidence file 30 s after alert {n}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        out.push(t0.elapsed().as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis(150));
    }
    drop(guard);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

/// ns of CPU per packet of `tap bench-writer`, with or without a pre-trigger memory.
fn writer_cpu(tap: &Path, size: u32, pretrigger: bool) -> Result<f64> {
    crate::util::check_interrupted()?;
    let mut cmd = Command::new("taskset");
    super::own_sched_group(&mut cmd);
    cmd.args(["-c", &TOOL_CPU.to_string()])
        .arg(tap)
        .args(["bench-writer", "--to", "/dev/shm", "--format", "pcapng"])
        .args(["--bytes", "300000000", "--packet-size", &size.to_string()]);
    if pretrigger {
        cmd.args(["--pretrigger", "256MiB"]);
    }
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("{cmd:?} failed ({}):\n{stdout}", out.status);
    }
    let line = stdout
        .lines()
        .find(|l| l.contains(" ns CPU per packet"))
        .context("no CPU figure")?;
    let before = &line[..line.find(" ns CPU per packet").context("no CPU figure")?];
    before
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .context("no CPU figure")
}

/// The latency medians (settle 1 s and 0) and the pre-trigger cost, as JSON; lines on stderr.
pub(super) fn runs(tap: &Path, runs: usize) -> Result<Value> {
    let mut latency = Vec::new();
    for settle in [1.0, 0.0] {
        let ms = latencies(tap, settle)?;
        let median = super::median(ms.clone()).unwrap_or(0.0);
        let max = ms.iter().copied().fold(0.0, f64::max);
        eprintln!(
            "bench: alert to closed evidence file, after = 0, settle = {settle} s: median {median:.0} ms, max {max:.0} ms ({} alerts)",
            ms.len()
        );
        latency.push(
            json!({"settle_s": settle, "median_ms": median, "max_ms": max, "alerts": ms.len()}),
        );
    }
    let mut cost = Vec::new();
    for size in [64u32, 1500] {
        let (mut plain, mut with) = (Vec::new(), Vec::new());
        for _ in 0..runs.max(1) {
            plain.push(writer_cpu(tap, size, false)?);
            with.push(writer_cpu(tap, size, true)?);
        }
        let (p, w) = (
            super::median(plain).unwrap_or(0.0),
            super::median(with).unwrap_or(0.0),
        );
        eprintln!(
            "bench: pre-trigger memory {size:>4} B packets: writer {p:.1} ns, writer + pretrigger {w:.1} ns CPU per packet (+{:.1} ns)",
            w - p
        );
        cost.push(json!({"packet_size": size, "writer_ns_per_packet": p, "with_pretrigger_ns_per_packet": w}));
    }
    Ok(json!({"latency": latency, "pretrigger_cost": cost}))
}
