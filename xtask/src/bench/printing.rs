//! The printing path's cost per packet: `tap bench-print` (typical 64- and 1,500-byte TCP and
//! UDP frames through the packet printer, as `tap capture` formats them for the terminal),
//! pinned to the tool CPU. The capture runs add `tap --hook xdp --print` beside `-w` at the
//! generator's full rate ([`super::capture::Tool::TapPrint`]): whether printing keeps up, or
//! how many packets it counts as skipped.

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::capture::TOOL_CPU;

/// One measurement of one run.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PrintRun {
    pub packets: String,
    pub flags: String,
    pub ns_per_packet: f64,
}

/// `tap bench-print --packets N` once: every measurement it prints.
pub(super) fn run(tap: &Path, packets: u64) -> Result<Vec<PrintRun>> {
    crate::util::check_interrupted()?;
    let mut cmd = Command::new("taskset");
    super::own_sched_group(&mut cmd);
    cmd.args(["-c", &TOOL_CPU.to_string()]).arg(tap).args([
        "bench-print",
        "--packets",
        &packets.to_string(),
    ]);
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    let runs = parse(&stdout);
    if runs.is_empty() {
        bail!("{cmd:?} printed no measurement:\n{stdout}");
    }
    Ok(runs)
}

/// `{"packets": "64-byte TCP", "flags": "-n", "ns_per_packet": 141.2}` lines.
fn parse(stdout: &str) -> Vec<PrintRun> {
    stdout
        .lines()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            Some(PrintRun {
                packets: v["packets"].as_str()?.to_string(),
                flags: v["flags"].as_str()?.to_string(),
                ns_per_packet: v["ns_per_packet"].as_f64()?,
            })
        })
        .collect()
}

/// `(packets, flags, ns per packet of each run)`, in the order `tap bench-print` prints them.
pub(super) fn gather(runs: &[Vec<PrintRun>]) -> Vec<(String, String, Vec<f64>)> {
    let mut all: Vec<(String, String, Vec<f64>)> = Vec::new();
    for r in runs.iter().flatten() {
        match all
            .iter_mut()
            .find(|(p, f, _)| *p == r.packets && *f == r.flags)
        {
            Some(entry) => entry.2.push(r.ns_per_packet),
            None => all.push((r.packets.clone(), r.flags.clone(), vec![r.ns_per_packet])),
        }
    }
    all
}

pub(super) fn to_json(packets: &str, flags: &str, ns: &[f64]) -> Value {
    json!({
        "packets": packets,
        "flags": flags,
        "median_ns_per_packet": super::median(ns.to_vec()),
        "runs_ns_per_packet": ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurements_from_json_lines() {
        let out = "{\"flags\":\"-n\",\"ns_per_packet\":141.5,\"packets\":\"64-byte TCP\"}\nnoise\n";
        let runs = parse(out);
        assert_eq!(
            runs,
            [PrintRun {
                packets: "64-byte TCP".into(),
                flags: "-n".into(),
                ns_per_packet: 141.5
            }]
        );
        let all = gather(&[runs.clone(), runs]);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].2, [141.5, 141.5]);
    }
}
