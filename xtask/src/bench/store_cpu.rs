//! Store writer runs: `tap bench-writer --store` next to plain pcapng, CPU per packet (all of
//! the tool's threads: writer, indexer, index files, custody), for 64- and 1500-byte packets
//! over 1, 100, 10k and 100k flows in turn, pinned to the tool CPU. The goal of issue 16: the
//! store costs at most [`GOAL`] times plain `-w`.

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::capture::TOOL_CPU;

/// Packet sizes and flow counts measured.
pub(super) const SIZES: [u32; 2] = [64, 1500];
pub(super) const FLOWS: [u32; 4] = [1, 100, 10_000, 100_000];

/// The ratio the store must stay under.
pub(super) const GOAL: f64 = 1.25;

/// Bytes of packets per run: enough for a few hundred thousand 1500-byte packets.
const BYTES: u64 = 300_000_000;

/// ns of CPU per packet of one `tap bench-writer` run.
fn run(tap: &Path, size: u32, flows: u32, store: bool) -> Result<f64> {
    crate::util::check_interrupted()?;
    let mut cmd = Command::new("taskset");
    super::own_sched_group(&mut cmd);
    cmd.args(["-c", &TOOL_CPU.to_string()])
        .arg(tap)
        .args(["bench-writer", "--to", "/dev/shm", "--format", "pcapng"])
        .args(["--bytes", &BYTES.to_string()])
        .args(["--packet-size", &size.to_string()])
        .args(["--flows", &flows.to_string()]);
    if store {
        cmd.arg("--store");
    }
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    cpu_per_packet(&stdout).with_context(|| format!("no CPU figure in {cmd:?}'s output:\n{stdout}"))
}

/// `..., 135.7 ns CPU per packet`.
fn cpu_per_packet(stdout: &str) -> Option<f64> {
    let line = stdout.lines().find(|l| l.contains(" ns CPU per packet"))?;
    let before = &line[..line.find(" ns CPU per packet")?];
    before.rsplit(' ').next()?.parse().ok()
}

/// Every size and flow count, `runs` times each (plain and store alternating); the medians and
/// their ratio as JSON, a line each on stderr as they come.
pub(super) fn runs(tap: &Path, runs: usize) -> Result<Value> {
    let mut rows = Vec::new();
    for size in SIZES {
        for flows in FLOWS {
            let (mut plain, mut store) = (Vec::new(), Vec::new());
            for _ in 0..runs.max(1) {
                plain.push(run(tap, size, flows, false)?);
                store.push(run(tap, size, flows, true)?);
            }
            let (p, s) = (
                super::median(plain.clone()).unwrap_or(0.0),
                super::median(store.clone()).unwrap_or(0.0),
            );
            let ratio = if p > 0.0 { s / p } else { 0.0 };
            eprintln!(
                "bench: store CPU {size:>4} B {flows:>6} flows: plain {p:6.1} ns, store {s:6.1} ns per packet: {ratio:.2}x (goal {GOAL}x)"
            );
            rows.push(json!({
                "packet_size": size,
                "flows": flows,
                "plain_ns_per_packet": p,
                "store_ns_per_packet": s,
                "ratio": ratio,
                "goal": GOAL,
                "runs_plain": plain,
                "runs_store": store,
            }));
        }
    }
    Ok(Value::Array(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_from_output() {
        let out = "/dev/shm/x: 1564672 packets, 100 MB of packets, 169 MB on disk, in 0.21 s: 472 MB/s, 7.37 Mpackets/s, 135.7 ns CPU per packet\n";
        assert_eq!(cpu_per_packet(out), Some(135.7));
        assert_eq!(cpu_per_packet("nothing"), None);
    }
}
