//! `cargo xtask soak --minutes N`: `tap agent` under steady traffic for N minutes, reloaded every
//! few seconds (filter swaps; a second tap added and removed in turn), its memory sampled
//! throughout. At the end: the memory must be flat (the last third's average RSS within 10 %
//! plus 8 MiB of the first third's), and the accounting balanced (every matched packet of every tap
//! written or counted as dropped, sampled out or rate limited).
//!
//! Not part of the test suite: it takes as long as it is asked to.

use std::{
    fs,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use tap_tests::{
    agent::{Agent, scrape},
    process::Background,
    topology::B_V4,
};

use crate::util;

const METRICS: &str = "127.0.0.1:9750";
/// Between two reloads, and two memory samples.
const PERIOD: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub(crate) struct SoakArgs {
    /// How long the traffic runs, in minutes.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// UDP datagrams per second sent through the taps.
    #[arg(long, default_value_t = 5000)]
    pub rate: u32,
}

/// Sends `rate` datagrams per second of 200 bytes to port 9 of the host for `secs` seconds, in
/// 10 ms bursts; prints how many it sent.
const SENDER: &str = r"
import socket, sys, time
host, rate, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = bytes(200)
per_tick, sent, start = max(1, rate // 100), 0, time.monotonic()
while True:
    now = time.monotonic() - start
    if now >= secs:
        break
    due = int(now * rate) + per_tick
    while sent < due:
        s.sendto(payload, (host, 9))
        sent += 1
    time.sleep(0.01)
print(sent, flush=True)
";

/// The agent's file: tap `steady` always (its filter alternating), tap `extra` when `extra`.
fn config(dir: &Path, round: u64, extra: bool) -> String {
    let filter = if round.is_multiple_of(2) {
        "udp port 9 or icmp"
    } else {
        "udp port 9 or udp port 7"
    };
    let d = dir.display();
    let mut text = format!(
        r#"[agent]
control_socket = "{d}/ctl.sock"
metrics_listen = "{METRICS}"

[[tap]]
name = "steady"
interfaces = ["veth*"]
hook = "tc-ingress"
filter = "{filter}"
snaplen = 128
[tap.file]
path = "{d}/steady.pcap"
file_size_mb = 20
ring_files = 4
"#
    );
    if extra {
        text.push_str(&format!(
            r#"
[[tap]]
name = "extra"
interfaces = ["veth-b"]
hook = "tc-ingress"
filter = "udp"
[tap.file]
path = "{d}/extra.pcap.zst"
file_size_mb = 5
ring_files = 3
"#
        ));
    }
    text
}

/// Resident set size of `pid` in KiB.
fn rss_kib(pid: i32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .context("reading the agent's /proc status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

/// `key=value` of a log line, as a number.
fn field(line: &str, key: &str) -> Option<i64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

pub(crate) fn run(root: &Path, args: &SoakArgs) -> Result<()> {
    util::require_root("cargo xtask soak")?;
    util::catch_interrupts();
    let tap = root.join("target/release/tap");
    // SAFETY: set before any other thread exists; the helpers find the binary through it.
    unsafe { std::env::set_var("TAP_BIN", &tap) };
    let dir = root.join("target/soak");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let config_path = dir.join("tap.toml");
    let secs = (args.minutes * 60.0).max(10.0);

    let topo = util::topology()?;
    let mut round = 0u64;
    let mut extra = true;
    fs::write(&config_path, config(&dir, round, extra))?;
    let mut agent = Agent::start(&topo.b, &config_path, &dir.join("ctl.sock"));
    agent.wait_for_tap("steady", "capturing", 1);
    let pid = agent.process.pid();
    println!(
        "soak: agent pid {pid}, {} datagrams/s for {secs:.0} s, a reload every {} s",
        args.rate,
        PERIOD.as_secs()
    );

    let mut sender = topo.a.cmd("python3");
    sender
        .args([
            "-c",
            SENDER,
            B_V4,
            &args.rate.to_string(),
            &secs.to_string(),
        ])
        .stdin(Stdio::null());
    let sender = Background::spawn_collecting_stdout("traffic", sender);
    let started = Instant::now();
    // (extra tap present, KiB): compared within each phase, the extra tap's ring and buffers
    // come and go with it.
    let mut rss: Vec<(bool, u64)> = vec![(extra, rss_kib(pid)?)];
    let mut reloads = 0u64;
    while started.elapsed().as_secs_f64() < secs {
        util::sleep(PERIOD.min(Duration::from_secs_f64(
            (secs - started.elapsed().as_secs_f64()).max(0.0),
        )))?;
        round += 1;
        // Every round swaps steady's filter and adds or removes the extra tap.
        extra = !extra;
        fs::write(&config_path, config(&dir, round, extra))?;
        agent.hangup();
        reloads += 1;
        // Sampled once the reload is done, so each sample belongs to one phase.
        agent.wait_for_count(
            "configuration reloaded",
            reloads as usize,
            Duration::from_secs(30),
        );
        let status = agent.status();
        let kib = rss_kib(pid)?;
        rss.push((extra, kib));
        let steady = status["taps"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["name"] == "steady"))
            .cloned()
            .unwrap_or_default();
        println!(
            "soak: {:>5.0} s  rss {:>6} KiB  steady: {} matched, {} written, {} ring drops, {} sink drops  taps {}",
            started.elapsed().as_secs_f64(),
            kib,
            steady["stats"]["kernel"]["matched"],
            steady["stats"]["written"],
            steady["stats"]["kernel"]["ring_full"],
            steady["stats"]["writer_dropped"],
            status["taps"].as_array().map_or(0, Vec::len),
        );
    }
    let sent = sender.wait(Duration::from_secs(60));
    ensure!(
        sent.status.success(),
        "the traffic generator failed: {}",
        sent.stderr
    );
    let sent: u64 = sent
        .stdout
        .trim()
        .parse()
        .context("the traffic generator's count")?;
    // Let the last reload settle and the writers flush (1 s flush interval).
    agent.wait_for_count(
        "configuration reloaded",
        reloads as usize,
        Duration::from_secs(30),
    );
    util::sleep(Duration::from_secs(3))?;
    let metrics = scrape(&topo.b, METRICS);
    let exited = agent.stop();

    // Accounting: each tap instance's final line.
    let mut failures = Vec::new();
    let stopped: Vec<&str> = exited
        .stderr
        .lines()
        .filter(|l| l.contains(": stopped "))
        .collect();
    for line in &stopped {
        let get = |k: &str| field(line, k).unwrap_or(-1);
        let (matched, written) = (get("matched"), get("written"));
        let dropped = get("ring_dropped") + get("writer_dropped");
        let skipped = get("sampled_out") + get("rate_limited");
        if get("unaccounted") != 0 || matched != written + dropped + skipped {
            failures.push(format!("unbalanced: {line}"));
        }
    }
    if stopped.is_empty() {
        failures.push("no tap reported its final counts".into());
    }
    let steady_line = stopped
        .iter()
        .find(|l| l.contains("tap{name=steady}"))
        .copied()
        .unwrap_or("");
    let steady_matched = field(steady_line, "matched").unwrap_or(0);
    let log = dir.join("agent.log");
    fs::write(&log, &exited.stderr)?;
    for line in exited
        .stderr
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN") || l.contains("panicked"))
    {
        failures.push(format!("the agent logged: {line}"));
    }
    if metrics.tap("tap_packets_read_total", "steady")
        != metrics.tap("tap_packets_written_total", "steady")
            + metrics.tap("tap_sink_drops_total", "steady")
    {
        failures.push("metrics: steady's packets read != written + sink drops".into());
    }

    // Memory: the last third against the first third, within each phase.
    let mut flat = true;
    let mut memory = Vec::new();
    for phase in [true, false] {
        let samples: Vec<u64> = rss
            .iter()
            .filter(|(p, _)| *p == phase)
            .map(|(_, k)| *k)
            .collect();
        if samples.len() < 3 {
            continue;
        }
        let third = samples.len() / 3;
        let avg = |s: &[u64]| s.iter().map(|k| *k as f64).sum::<f64>() / s.len() as f64;
        let (first, last) = (
            avg(&samples[..third]),
            avg(&samples[samples.len() - third..]),
        );
        let limit = first * 1.10 + 8.0 * 1024.0;
        let ok = last <= limit;
        flat &= ok;
        memory.push(format!(
            "rss with{} the extra tap: first third {first:.0} KiB, last third {last:.0} KiB, limit {limit:.0} KiB: {}",
            if phase { "" } else { "out" },
            if ok { "flat" } else { "GROWING" }
        ));
        if !ok {
            failures.push(format!(
                "memory grew: {first:.0} KiB -> {last:.0} KiB (limit {limit:.0})"
            ));
        }
    }
    if memory.is_empty() {
        failures.push("too short to compare memory: run at least a minute".into());
    }

    println!("\n== soak: {secs:.0} s, {reloads} reloads ==");
    println!("traffic: {sent} datagrams sent; steady matched {steady_matched} in its last run");
    for line in &stopped {
        let tap = line
            .split("tap{name=")
            .nth(1)
            .and_then(|r| r.split('}').next())
            .unwrap_or("?");
        println!(
            "tap {tap}: matched {} written {} ring drops {} writer drops {} files {} unaccounted {}",
            field(line, "matched").unwrap_or(-1),
            field(line, "written").unwrap_or(-1),
            field(line, "ring_dropped").unwrap_or(-1),
            field(line, "writer_dropped").unwrap_or(-1),
            field(line, "files").unwrap_or(-1),
            field(line, "unaccounted").unwrap_or(-1),
        );
    }
    println!(
        "extra tap: started {} times, stopped {} times",
        exited.stderr.matches("tap{name=extra}: starting").count(),
        exited.stderr.matches("tap{name=extra}: stopped").count()
    );
    let kib: Vec<String> = rss
        .iter()
        .map(|(p, k)| format!("{k}{}", if *p { "+" } else { "" }))
        .collect();
    println!(
        "rss KiB every {} s (+: with the extra tap): {}",
        PERIOD.as_secs(),
        kib.join(" ")
    );
    for line in &memory {
        println!("{line}");
    }
    println!(
        "memory: {}; agent log: {}",
        if flat { "flat" } else { "growing" },
        log.display()
    );
    if !failures.is_empty() {
        bail!("soak failed:\n  {}", failures.join("\n  "));
    }
    println!("soak: passed");
    drop(topo);
    Ok(())
}
