//! Program runs: `tap bench-prog` (BPF_PROG_TEST_RUN) per hook and filter size, over a frame the
//! filter selects and one it rejects; and without a filter, with the per-interface counters
//! (pcapng, the agent) and with a per-flow budget (1 and 65,536 flows in its table).

use std::{net::Ipv4Addr, path::Path, process::Command};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::{capture::TOOL_CPU, median};

/// Rule counts of the filter variants.
pub(super) const RULE_COUNTS: [usize; 4] = [1, 64, 1024, 4096];

/// Which filter the program applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rules {
    /// No filter: every frame is selected.
    None,
    /// `host A or host B or ...`: distinct addresses in 10.0.0.0/8.
    Hosts(usize),
    /// `net A/24 or net B/24 or ...`: distinct /24 prefixes in 10.0.0.0/8.
    Nets(usize),
}

impl Rules {
    /// Every variant measured, in table order.
    pub(super) fn all() -> Vec<Rules> {
        let mut v = vec![Rules::None];
        v.extend(RULE_COUNTS.map(Rules::Hosts));
        v.extend(RULE_COUNTS.map(Rules::Nets));
        v
    }

    pub(super) fn count(self) -> usize {
        match self {
            Rules::None => 0,
            Rules::Hosts(n) | Rules::Nets(n) => n,
        }
    }

    pub(super) fn kind(self) -> &'static str {
        match self {
            Rules::None => "none",
            Rules::Hosts(_) => "hosts",
            Rules::Nets(_) => "nets",
        }
    }

    pub(super) fn label(self) -> String {
        match self {
            Rules::None => "no filter".into(),
            Rules::Hosts(n) => format!("{n} × host"),
            Rules::Nets(n) => format!("{n} × net /24"),
        }
    }

    /// The i-th host (10.0.0.1, 10.0.0.2, ...).
    fn host(i: usize) -> Ipv4Addr {
        Ipv4Addr::from(0x0a00_0000 + i as u32 + 1)
    }

    /// The i-th /24 (10.0.0.0/24, 10.0.1.0/24, ...).
    fn net(i: usize) -> Ipv4Addr {
        Ipv4Addr::from(0x0a00_0000 + ((i as u32) << 8))
    }

    /// The filter expression; `None` without one.
    pub(super) fn expression(self) -> Option<String> {
        let words: Vec<String> = match self {
            Rules::None => return None,
            Rules::Hosts(n) => (0..n).map(|i| format!("host {}", Self::host(i))).collect(),
            Rules::Nets(n) => (0..n).map(|i| format!("net {}/24", Self::net(i))).collect(),
        };
        Some(words.join(" or "))
    }

    /// A destination the filter selects: in the last rule.
    pub(super) fn selected_dst(self) -> Ipv4Addr {
        match self {
            Rules::None => REJECTED_DST,
            Rules::Hosts(n) => Self::host(n - 1),
            Rules::Nets(n) => Ipv4Addr::from(u32::from(Self::net(n - 1)) + 77),
        }
    }
}

/// A destination outside 10.0.0.0/8 (and the frames' usual one): no rule selects it.
pub(super) const REJECTED_DST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// What the programs do besides filtering and copying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Extra {
    None,
    /// Counting per interface and hook (`--per-interface`).
    PerInterface,
    /// A per-flow budget with this many flows in its table (`--flows`).
    FlowBudget {
        flows: u32,
    },
}

impl Extra {
    /// Flow counts the budget is timed with.
    pub(super) const FLOWS: [u32; 2] = [1, 65_536];

    /// Words for the table (empty for none).
    pub(super) fn label(self) -> String {
        match self {
            Extra::None => String::new(),
            Extra::PerInterface => ", counted per interface".into(),
            Extra::FlowBudget { flows: 1 } => ", flow budget (1 flow)".into(),
            Extra::FlowBudget { flows } => format!(", flow budget ({flows} flows)"),
        }
    }

    fn args(self) -> Vec<String> {
        match self {
            Extra::None => Vec::new(),
            Extra::PerInterface => vec!["--per-interface".into()],
            Extra::FlowBudget { flows } => vec!["--flows".into(), flows.to_string()],
        }
    }
}

/// One `tap bench-prog` run: ns per program run.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct ProgRun {
    /// A selected frame, the ring having room: the record is reserved, filled and submitted.
    pub copied_ns: Option<f64>,
    /// A selected frame, the ring full: the reserve fails and is counted.
    pub ring_full_ns: Option<f64>,
    /// A rejected frame: classified and passed on.
    pub rejected_ns: Option<f64>,
    /// With a flow budget: a selected frame whose flow has used its budget, counted, not copied.
    pub over_budget_ns: Option<f64>,
    /// Why the program could not be loaded with this filter (then nothing was timed).
    pub refused: Option<String>,
}

impl ProgRun {
    pub(super) fn to_json(&self) -> Value {
        json!({
            "ns_per_packet_copied": self.copied_ns,
            "ns_per_packet_ring_full": self.ring_full_ns,
            "ns_per_packet_rejected": self.rejected_ns,
            "ns_per_packet_over_budget": self.over_budget_ns,
            "refused": self.refused,
        })
    }
}

/// One configuration: a hook, a filter and a frame length.
#[derive(Debug, Clone)]
pub(super) struct ProgConfig {
    /// `xdp` or `tc`.
    pub hook: &'static str,
    pub rules: Rules,
    pub frame_len: usize,
    pub extra: Extra,
}

impl ProgConfig {
    /// The matrix: both hooks; without a filter at 64 and 1500 bytes, with each filter at 64;
    /// without a filter at 64 bytes, counted per interface and with each flow budget.
    pub(super) fn all() -> Vec<ProgConfig> {
        let mut v = Vec::new();
        for hook in ["xdp", "tc"] {
            v.push(ProgConfig {
                hook,
                rules: Rules::None,
                frame_len: 1500,
                extra: Extra::None,
            });
            for rules in Rules::all() {
                v.push(ProgConfig {
                    hook,
                    rules,
                    frame_len: 64,
                    extra: Extra::None,
                });
            }
            let extras = std::iter::once(Extra::PerInterface)
                .chain(Extra::FLOWS.map(|flows| Extra::FlowBudget { flows }));
            for extra in extras {
                v.push(ProgConfig {
                    hook,
                    rules: Rules::None,
                    frame_len: 64,
                    extra,
                });
            }
        }
        v
    }

    pub(super) fn program(&self) -> &'static str {
        if self.hook == "xdp" {
            "xdp_tap"
        } else {
            "tc_tap_ingress"
        }
    }
}

/// Medians of a configuration's runs.
pub(super) fn medians(runs: &[ProgRun]) -> ProgRun {
    let m = |f: fn(&ProgRun) -> Option<f64>| median(runs.iter().filter_map(f).collect());
    ProgRun {
        copied_ns: m(|r| r.copied_ns),
        ring_full_ns: m(|r| r.ring_full_ns),
        rejected_ns: m(|r| r.rejected_ns),
        over_budget_ns: m(|r| r.over_budget_ns),
        refused: runs.iter().find_map(|r| r.refused.clone()),
    }
}

/// Runs `tap bench-prog` once for `config`, pinned to the tool CPU. The filter goes through a
/// file in `dir`.
pub(super) fn run(tap: &Path, dir: &Path, config: &ProgConfig, repeat: u64) -> Result<ProgRun> {
    crate::util::check_interrupted()?;
    let mut cmd = Command::new("taskset");
    super::own_sched_group(&mut cmd);
    cmd.args(["-c", &TOOL_CPU.to_string()]).arg(tap).args([
        "bench-prog",
        "--hook",
        config.hook,
        "--frame-len",
        &config.frame_len.to_string(),
        "--repeat",
        &repeat.to_string(),
    ]);
    cmd.args(config.extra.args());
    if let Some(expr) = config.rules.expression() {
        let file = dir.join(format!(
            "filter-{}-{}.txt",
            config.rules.kind(),
            config.rules.count()
        ));
        std::fs::write(&file, expr).with_context(|| format!("writing {}", file.display()))?;
        cmd.arg("--filter-file").arg(&file);
        cmd.args(["--dst", &config.rules.selected_dst().to_string()]);
        cmd.args(["--dst", &REJECTED_DST.to_string()]);
    }
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // A filter the loader refuses is a result (the table says so), not a failed bench.
        if config.rules != Rules::None {
            return Ok(ProgRun {
                refused: Some(stderr.trim().to_string()),
                ..Default::default()
            });
        }
        anyhow::bail!("{cmd:?} failed ({}):\n{}", out.status, stderr.trim_end());
    }
    parse_lines(&String::from_utf8_lossy(&out.stdout))
}

/// Reads `tap bench-prog`'s JSON lines.
fn parse_lines(stdout: &str) -> Result<ProgRun> {
    let mut run = ProgRun::default();
    for line in stdout.lines().filter(|l| l.starts_with('{')) {
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("tap bench-prog printed {line:?}"))?;
        if v["matched"].as_bool() == Some(true) {
            run.copied_ns = v["ns_per_packet_copied"].as_f64();
            run.ring_full_ns = v["ns_per_packet_ring_full"].as_f64();
            run.over_budget_ns = v["ns_per_packet_over_budget"].as_f64();
        } else {
            run.rejected_ns = v["ns_per_packet_rejected"].as_f64();
        }
    }
    if run.copied_ns.is_none() && run.rejected_ns.is_none() {
        anyhow::bail!("tap bench-prog printed no measurement:\n{stdout}");
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_have_distinct_rules_and_a_selected_destination() {
        let hosts = Rules::Hosts(3).expression().unwrap();
        assert_eq!(hosts, "host 10.0.0.1 or host 10.0.0.2 or host 10.0.0.3");
        assert_eq!(Rules::Hosts(3).selected_dst(), Ipv4Addr::new(10, 0, 0, 3));
        let nets = Rules::Nets(2).expression().unwrap();
        assert_eq!(nets, "net 10.0.0.0/24 or net 10.0.1.0/24");
        assert_eq!(Rules::Nets(2).selected_dst(), Ipv4Addr::new(10, 0, 1, 77));
        assert_eq!(
            Rules::Hosts(4096)
                .expression()
                .unwrap()
                .matches("host ")
                .count(),
            4096
        );
        assert_eq!(
            Rules::Hosts(300).selected_dst(),
            Ipv4Addr::new(10, 0, 1, 44)
        );
        assert_eq!(
            Rules::Nets(4096).selected_dst(),
            Ipv4Addr::new(10, 15, 255, 77)
        );
        assert!(Rules::None.expression().is_none());
    }

    #[test]
    fn bench_prog_lines() {
        let out = r#"{"hook":"xdp","frame_len":64,"repeat":10,"dst":"10.0.0.1","matched":true,"ns_per_packet_copied":31.50,"ns_per_packet_ring_full":12.00,"ns_per_packet_rejected":null}
{"hook":"xdp","frame_len":64,"repeat":10,"dst":"192.0.2.2","matched":false,"ns_per_packet_copied":null,"ns_per_packet_ring_full":null,"ns_per_packet_rejected":9.25}
"#;
        let r = parse_lines(out).unwrap();
        assert_eq!(
            (r.copied_ns, r.ring_full_ns, r.rejected_ns),
            (Some(31.5), Some(12.0), Some(9.25))
        );
        assert!(parse_lines("nothing\n").is_err());
        assert_eq!(r.over_budget_ns, None, "an older line without the field");
        let budget = parse_lines(
            r#"{"hook":"tc-ingress","frame_len":64,"repeat":10,"dst":"192.0.2.2","matched":true,"ns_per_packet_copied":80.00,"ns_per_packet_ring_full":50.00,"ns_per_packet_rejected":null,"flows":65536,"ns_per_packet_over_budget":61.50}"#,
        )
        .unwrap();
        assert_eq!(budget.over_budget_ns, Some(61.5));
        let m = medians(&[
            r.clone(),
            ProgRun {
                copied_ns: Some(40.0),
                ..r.clone()
            },
            r,
        ]);
        assert_eq!(m.copied_ns, Some(31.5));
    }
}
