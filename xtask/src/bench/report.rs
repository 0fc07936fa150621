//! The bench's tables, targets and JSON, all from one run's results.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{
    Plan,
    capture::{
        self, CaptureMedian, CaptureRun, FRAME_LENS, LiveProgram, Matching, TAP_RING_SIZE, Tool,
    },
    printing,
    progs::{self, Extra, ProgConfig, ProgRun, Rules},
    writer::{self, PLACES, Writer},
};

/// What tap may hold beyond its ring for target (d), in bytes: the binary, the runtime, the
/// batch being built and the writer's buffers.
pub(super) const RSS_BUDGET: u64 = 64 << 20;

/// Target (a) compares system CPU (/proc/stat) when the machine was at most this busy (in
/// CPUs, median over the runs involved) just before the runs, our threads' CPU otherwise.
pub(super) const QUIET_MACHINE: f64 = 0.25;

/// Everything one `cargo xtask bench` measured.
#[derive(Debug, Default)]
pub(super) struct Results {
    pub captures: Vec<Capture>,
    pub progs: Vec<(ProgConfig, Vec<ProgRun>)>,
    /// `(place, writer, MB/s of each run)`.
    pub writers: Vec<(&'static str, Writer, Vec<f64>)>,
    /// `tap bench-writer --store` against plain pcapng: CPU per packet by size and flows.
    pub store_cpu: Value,
    /// Alert to evidence file, and the pre-trigger memory's cost ([`super::evidence`]).
    pub evidence: Value,
    /// `(packets, flags, ns per packet of each run)` of the packet printer.
    pub printing: Vec<(String, String, Vec<f64>)>,
}

/// One capture configuration and its runs.
#[derive(Debug)]
pub(super) struct Capture {
    pub tool: Tool,
    pub len: usize,
    pub matching: Matching,
    pub runs: Vec<CaptureRun>,
    /// The programs' live cost from the extra `--program-stats` run (tap, 64-byte frames).
    pub live: Vec<LiveProgram>,
}

impl Results {
    fn capture(&self, tool: Tool, len: usize, matching: Matching) -> Option<CaptureMedian> {
        self.captures
            .iter()
            .find(|c| {
                c.tool == tool && c.len == len && c.matching == matching && !c.runs.is_empty()
            })
            .map(|c| CaptureMedian::of(&c.runs))
    }

    /// System CPU per offered frame that `tool` adds over the no-capture run, in ns.
    fn added(&self, tool: Tool, len: usize, matching: Matching) -> Option<f64> {
        let base = self.capture(Tool::None, len, matching)?.system_ns?;
        Some(self.capture(tool, len, matching)?.system_ns? - base)
    }

    /// Our threads' CPU per offered frame that `tool` adds over the no-capture run, in ns.
    fn added_ours(&self, tool: Tool, len: usize, matching: Matching) -> Option<f64> {
        let base = self.capture(Tool::None, len, matching)?.ours_ns?;
        Some(self.capture(tool, len, matching)?.ours_ns? - base)
    }

    fn prog(&self, hook: &str, rules: Rules, len: usize) -> Option<ProgRun> {
        self.prog_with(hook, rules, len, Extra::None)
    }

    fn prog_with(&self, hook: &str, rules: Rules, len: usize, extra: Extra) -> Option<ProgRun> {
        self.progs
            .iter()
            .find(|(c, _)| {
                c.hook == hook && c.rules == rules && c.frame_len == len && c.extra == extra
            })
            .map(|(_, runs)| progs::medians(runs))
    }

    fn writer(&self, place: &str, w: Writer) -> Option<f64> {
        self.writers
            .iter()
            .find(|(p, x, _)| *p == place && *x == w)
            .and_then(|(_, _, rates)| super::median(rates.clone()))
    }
}

fn n0(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.0}"))
}

fn n1(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn r2(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

const TAPS: [Tool; 3] = [Tool::TapXdp, Tool::TapTc, Tool::TapConsume];

pub(super) fn markdown(r: &Results, plan: &Plan) -> String {
    let mut s = String::new();
    if !r.captures.is_empty() {
        capture_tables(&mut s, r, plan);
    }
    if !r.progs.is_empty() {
        prog_table(&mut s, r, plan);
    }
    if !r.writers.is_empty() {
        writer_table(&mut s, r, plan);
    }
    if !r.printing.is_empty() {
        printing_table(&mut s, r, plan);
    }
    if let Some(rows) = r.store_cpu.as_array().filter(|rows| !rows.is_empty()) {
        store_table(&mut s, rows, plan);
    }
    s
}

/// The printer's cost per packet, and the capture printing beside `-w` next to plain `-w`.
fn printing_table(s: &mut String, r: &Results, plan: &Plan) {
    let _ = writeln!(
        s,
        "\n### Printing path: ns per packet formatted (tap bench-print, median of {})\n",
        plan.runs
    );
    s.push_str("| packets | flags | ns/packet |\n|---|---|---:|\n");
    for (packets, flags, ns) in &r.printing {
        let _ = writeln!(
            s,
            "| {packets} | `{flags}` | {} |",
            n1(super::median(ns.clone()))
        );
    }
}

/// The `store_cpu` rows: `--store` against plain pcapng, writer CPU per packet.
fn store_table(s: &mut String, rows: &[Value], plan: &Plan) {
    let _ = writeln!(
        s,
        "\n### store_cpu: `tap bench-writer --format pcapng` CPU per packet, plain and `--store` (median of {})\n",
        plan.runs
    );
    s.push_str("| packet B | flows | plain ns | --store ns | ratio | goal |\n");
    s.push_str("|---:|---:|---:|---:|---:|---|\n");
    for row in rows {
        let f = |k: &str| row[k].as_f64().unwrap_or(f64::NAN);
        let ratio = f("ratio");
        let goal = f("goal");
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.1} | {ratio:.2}x | {} {goal}x |",
            row["packet_size"],
            row["flows"],
            f("plain_ns_per_packet"),
            f("store_ns_per_packet"),
            if ratio <= goal { "PASS" } else { "MISS" },
        );
    }
}

/// Printing beside `-w` at the generator's full rate next to plain `-w`: loss in the file and
/// packets the printer counted as skipped.
fn print_capture_table(s: &mut String, r: &Results) {
    let mut rows = String::new();
    for len in FRAME_LENS {
        for matching in Matching::ALL {
            for tool in [Tool::TapXdp, Tool::TapPrint] {
                let Some(m) = r.capture(tool, len, matching) else {
                    continue;
                };
                let _ = writeln!(
                    rows,
                    "| {len} | {} | {} | {:.0} | {:.0} | {:.2} | {} | {} | {} |",
                    matching.label(),
                    tool.label(),
                    m.selected,
                    m.lost,
                    m.lost_pct,
                    if tool == Tool::TapPrint {
                        format!("{:.0}", m.not_printed)
                    } else {
                        "-".into()
                    },
                    n0(m.tool_ns),
                    n0(m.system_ns),
                );
            }
        }
    }
    if rows.is_empty() {
        return;
    }
    s.push_str("\n### Printing beside -w at the generator's full rate (stdout /dev/null)\n\n");
    s.push_str("| frames | matching | capture | selected | lost in the file | lost % | not printed (counted) | tool CPU ns/written | system CPU ns/offered |\n");
    s.push_str("|---:|---|---|---:|---:|---:|---:|---:|---:|\n");
    s.push_str(&rows);
}

fn capture_tables(s: &mut String, r: &Results, plan: &Plan) {
    capture_tables_by_frame(s, r, plan);
    print_capture_table(s, r);
}

fn capture_tables_by_frame(s: &mut String, r: &Results, plan: &Plan) {
    let plural = if plan.runs == 1 { "" } else { "s" };
    for len in FRAME_LENS {
        for matching in Matching::ALL {
            let _ = writeln!(
                s,
                "\n### veth, {len}-byte frames at the generator's full rate, {}, filter `{}` (median of {} run{plural})\n",
                matching.label(),
                capture::filter(),
                plan.runs
            );
            s.push_str("| capture | offered | sent kpps | selected | written | lost | lost % | system CPU ns/offered | added over none | our threads ns/offered | added over none | of which CPU 0: send + receive path | of which CPU 1: tool | tool CPU ns/written | tool user % | tool wake-ups /1000 written | tool max RSS MiB |\n");
            s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
            for tool in Tool::ALL {
                let Some(m) = r.capture(tool, len, matching) else {
                    continue;
                };
                let none = tool == Tool::None;
                let dash = |v: String| if none { "-".to_string() } else { v };
                let _ = writeln!(
                    s,
                    "| {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    tool.label(),
                    m.offered,
                    m.sent_pps / 1e3,
                    dash(format!("{:.0}", m.selected)),
                    dash(format!("{:.0}", m.written)),
                    dash(format!("{:.0}", m.lost)),
                    dash(format!("{:.2}", m.lost_pct)),
                    n0(m.system_ns),
                    dash(n0(r.added(tool, len, matching))),
                    n0(m.ours_ns),
                    dash(n0(r.added_ours(tool, len, matching))),
                    n0(m.receive_path_ns),
                    dash(n0(m.tool_window_ns)),
                    dash(n0(m.tool_ns)),
                    dash(n0(m.tool_user_share.map(|u| 100.0 * u))),
                    dash(n1(m.wakeups_per_k)),
                    dash(n0(m.max_rss.map(|b| b as f64 / f64::from(1 << 20)))),
                );
            }
        }
    }
    s.push_str(
        "\nThe generator (CPU 0) sends a fixed count as fast as the kernel takes the frames; veth delivers on \
         the sender's CPU, so veth-b's receive path (XDP, TC, AF_PACKET's copy for tcpdump, the IP stack) runs \
         in softirq on CPU 0 and a costlier receive path lowers the rate (\"sent kpps\"). System CPU is the \
         busy time (user + nice + system + irq + softirq) of both CPUs from /proc/stat over the run, per \
         offered frame; \"added over none\" subtracts the no-capture run of the same table. \"Our threads\" is \
         the same from the scheduler's nanosecond accounting of the threads doing the run's work only (the \
         sending thread, which also runs the receive softirq work raised in its context, ksoftirqd and the \
         tool): on a shared machine it leaves out others' work, which /proc/stat counts; it splits into CPU 0's \
         part (sending and veth-b's receive path in softirq) and CPU 1's (the tool). Tool CPU is the capture process's user + system time from the first frame to its exit, \
         per selected frame written. Wake-ups are its voluntary context switches. xdpdump 1.3 has no filter: \
         it writes every frame, so with 1% matching it writes a hundred times what the others write.\n",
    );
    let _ = writeln!(
        s,
        "\n### Ratios: tap / tcpdump and tap / xdpdump (same table, same run)\n"
    );
    s.push_str("| frames | matching | tap | added system CPU ÷ tcpdump's | ÷ xdpdump's | added CPU of our threads ÷ tcpdump's | ÷ xdpdump's | tool CPU per written ÷ tcpdump's | ÷ xdpdump's | lost % tap / tcpdump / xdpdump |\n");
    s.push_str("|---:|---|---|---:|---:|---:|---:|---:|---:|---|\n");
    for len in FRAME_LENS {
        for matching in Matching::ALL {
            for tap in TAPS {
                let Some(t) = r.capture(tap, len, matching) else {
                    continue;
                };
                let tcpdump = r.capture(Tool::Tcpdump, len, matching);
                let xdpdump = r.capture(Tool::Xdpdump, len, matching);
                let added = |tool| r.added(tool, len, matching);
                let ours = |tool| r.added_ours(tool, len, matching);
                let lost = |m: &Option<CaptureMedian>| {
                    m.as_ref()
                        .map_or_else(|| "-".into(), |m| format!("{:.1}", m.lost_pct))
                };
                let _ = writeln!(
                    s,
                    "| {len} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} |",
                    matching.key(),
                    tap.label(),
                    r2(ratio(added(tap), added(Tool::Tcpdump))),
                    r2(ratio(added(tap), added(Tool::Xdpdump))),
                    r2(ratio(ours(tap), ours(Tool::Tcpdump))),
                    r2(ratio(ours(tap), ours(Tool::Xdpdump))),
                    r2(ratio(t.tool_ns, tcpdump.as_ref().and_then(|m| m.tool_ns))),
                    r2(ratio(t.tool_ns, xdpdump.as_ref().and_then(|m| m.tool_ns))),
                    lost(&Some(t.clone())),
                    lost(&tcpdump),
                    lost(&xdpdump),
                );
            }
        }
    }
    s.push_str("\nBelow 1 is tap cheaper. A negative added CPU (tap --consume) means the capture costs less than letting the frames into the stack.\n");
    live_table(s, r);
}

/// The programs' live cost per packet, from one extra run per tap configuration.
fn live_table(s: &mut String, r: &Results) {
    if r.captures.iter().all(|c| c.live.is_empty()) {
        return;
    }
    s.push_str("\n### tap's programs live: ns per program run (one extra run each, `tap capture --program-stats`)\n\n");
    s.push_str(
        "| frames | matching | tap | program | runs | ns per run |\n|---:|---|---|---|---:|---:|\n",
    );
    for c in &r.captures {
        for p in &c.live {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {:.1} |",
                c.len,
                c.matching.key(),
                c.tool.label(),
                p.name,
                p.runs,
                p.ns_per_run
            );
        }
    }
    s.push_str("\nThe kernel's BPF run-time statistics: the time of every run of the program while the capture ran, frames the filter rejects included, over the runs. They add two clock reads to each run (some 20-30 ns here), so these runs are not among the medians above; compare them with each other. Under BPF_PROG_TEST_RUN (below) the ring's cache lines are at hand; live they are on the reader's CPU, which is what the difference shows.\n");
}

fn prog_table(s: &mut String, r: &Results, plan: &Plan) {
    let _ = writeln!(
        s,
        "\n### Programs under BPF_PROG_TEST_RUN: ns per program run (median of {}, {} runs each)\n",
        plan.runs, plan.repeat
    );
    s.push_str("| program | filter | frame | selected, ring has room (record copied) | selected, ring full (drop counted) | rejected by the filter | over its flow's budget (counted) |\n");
    s.push_str("|---|---|---:|---:|---:|---:|---:|\n");
    for (config, _) in &r.progs {
        let Some(m) = r.prog_with(config.hook, config.rules, config.frame_len, config.extra) else {
            continue;
        };
        let filter = format!("{}{}", config.rules.label(), config.extra.label());
        if let Some(why) = &m.refused {
            let _ = writeln!(
                s,
                "| {} | {} | {} B | refused: {} | | | |",
                config.program(),
                filter,
                config.frame_len,
                why.lines().last().unwrap_or_default().replace('|', "/")
            );
            continue;
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} B | {} | {} | {} | {} |",
            config.program(),
            filter,
            config.frame_len,
            n1(m.copied_ns),
            n1(m.ring_full_ns),
            n1(m.rejected_ns),
            n1(m.over_budget_ns),
        );
    }
    s.push_str(
        "\nThe kernel's own timing of its test-run loop (whole ns per call, averaged over calls): the program plus a few ns \
         of loop overhead. Selected frames go to an address in the filter's last rule, rejected ones to 192.0.2.2. The \
         ring (128 MiB) is drained between calls, so records are written to memory that is not in cache. Counted per \
         interface: what a pcapng output or the agent adds. Flow budget: `--flow-budget` with its table holding 1 or \
         65,536 flows (the frame's own among them; within the budget, then over it); the one flow the loop repeats \
         stays in cache, so a live table of many flows costs its cache misses on top.\n",
    );
}

fn writer_table(s: &mut String, r: &Results, plan: &Plan) {
    let _ = writeln!(
        s,
        "\n### Writer throughput, MB/s of packets (1500-byte packets, {} MB, fsync at the end; median of {})\n",
        plan.writer_bytes / 1_000_000,
        plan.runs
    );
    s.push_str("| place | tap pcap | tap pcapng | dd bs=1M | pcap ÷ dd | pcapng ÷ dd |\n|---|---:|---:|---:|---:|---:|\n");
    for (place, kind) in PLACES {
        let (p, png, dd) = (
            r.writer(place, Writer::TapPcap),
            r.writer(place, Writer::TapPcapng),
            r.writer(place, Writer::Dd),
        );
        if p.is_none() && dd.is_none() {
            continue;
        }
        let _ = writeln!(
            s,
            "| {place} ({kind}) | {} | {} | {} | {} | {} |",
            n0(p),
            n0(png),
            n0(dd),
            r2(ratio(p, dd)),
            r2(ratio(png, dd))
        );
    }
    if let Some(m) = r.capture(Tool::TapXdp, 1500, Matching::All) {
        let _ = writeln!(
            s,
            "\nThe 1500-byte, all-matching capture above was offered {:.0} kpps: writing all of it takes {:.0} MB/s of packets.",
            m.sent_pps / 1e3,
            m.sent_pps * 1500.0 / 1e6
        );
    }
}

/// One evaluated target.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub id: &'static str,
    pub what: String,
    pub measured: String,
    /// `None`: not measured in this run.
    pub pass: Option<bool>,
}

pub(super) fn targets(r: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    // Others' work lands in /proc/stat's figure: on a busy machine the comparison is made on
    // our threads' CPU instead (they agree within a few percent on a quiet one).
    let involved = [Tool::None, Tool::Tcpdump, Tool::TapXdp, Tool::TapTc];
    let background = super::median(
        r.captures
            .iter()
            .filter(|c| c.len == 64 && c.matching == Matching::All && involved.contains(&c.tool))
            .flat_map(|c| c.runs.iter().map(|run| run.background))
            .collect(),
    );
    let quiet = background.is_some_and(|b| b <= QUIET_MACHINE);
    for tap in [Tool::TapXdp, Tool::TapTc] {
        let m = r.capture(tap, 64, Matching::All);
        let system = (
            r.added(tap, 64, Matching::All),
            r.added(Tool::Tcpdump, 64, Matching::All),
        );
        let ours = (
            r.added_ours(tap, 64, Matching::All),
            r.added_ours(Tool::Tcpdump, 64, Matching::All),
        );
        let (tap_adds, tcpdump_adds) = if quiet { system } else { ours };
        let pass = match (&m, tap_adds, tcpdump_adds) {
            (Some(m), Some(a), Some(b)) => Some(m.lost_max <= 0 && a <= 0.5 * b),
            _ => None,
        };
        t.push(Target {
            id: "a",
            what: format!(
                "64 B, all matching, {}: loses nothing, adds at most half the CPU per packet tcpdump adds",
                tap.label()
            ),
            measured: match &m {
                Some(m) => format!(
                    "largest loss of any run {} of {:.0}; {}: adds {} ns/pkt, tcpdump {} ns/pkt, ratio {} \
                     ({}: {} vs {}, ratio {}; machine {:.0}% busy before the runs)",
                    m.lost_max,
                    m.selected,
                    if quiet { "system CPU" } else { "our threads' CPU" },
                    n0(tap_adds),
                    n0(tcpdump_adds),
                    r2(ratio(tap_adds, tcpdump_adds)),
                    if quiet { "our threads' CPU" } else { "system CPU, others' work included" },
                    n0(if quiet { ours.0 } else { system.0 }),
                    n0(if quiet { ours.1 } else { system.1 }),
                    r2(if quiet { ratio(ours.0, ours.1) } else { ratio(system.0, system.1) }),
                    100.0 * background.unwrap_or(0.0),
                ),
                None => "not measured".into(),
            },
            pass,
        });
    }
    // The generator's full rate depends on the receive path it pays for: with --consume the
    // frames skip the stack and it runs fastest, the hardest case for the writer.
    for tap in TAPS {
        let m = r.capture(tap, 1500, Matching::All);
        t.push(Target {
            id: "b",
            what: format!(
                "1500 B, all matching, to /dev/shm, {}: at most 5% lost at full rate",
                tap.label()
            ),
            measured: m.as_ref().map_or_else(
                || "not measured".into(),
                |m| {
                    format!(
                        "{:.2}% lost (median; largest loss of any run {} of {:.0}) at {:.0} kpps",
                        m.lost_pct,
                        m.lost_max,
                        m.selected,
                        m.sent_pps / 1e3
                    )
                },
            ),
            pass: m.map(|m| m.lost_pct <= 5.0),
        });
    }
    for rules in [Rules::Hosts(4096), Rules::Nets(4096)] {
        let m = r.prog("xdp", rules, 64);
        let ns = m.as_ref().and_then(|m| m.rejected_ns);
        t.push(Target {
            id: "c",
            what: format!("xdp_tap, {}: a rejected packet under 50 ns", rules.label()),
            measured: match (&m, ns) {
                (Some(m), _) if m.refused.is_some() => "filter refused by the loader".into(),
                (_, Some(ns)) => format!("{ns:.1} ns"),
                _ => "not measured".into(),
            },
            pass: match &m {
                Some(m) if m.refused.is_some() => Some(false),
                _ => ns.map(|ns| ns < 50.0),
            },
        });
    }
    let rss = r
        .captures
        .iter()
        .filter(|c| c.tool.is_tap())
        .flat_map(|c| {
            c.runs
                .iter()
                .filter_map(move |run| run.tool.map(|u| (u.max_rss, c)))
        })
        .max_by_key(|(rss, _)| *rss);
    let bound = 2 * TAP_RING_SIZE + RSS_BUDGET;
    t.push(Target {
        id: "d",
        what: format!(
            "tap's max RSS at most 2 × ring ({} MiB, its data pages are mapped twice) + {} MiB",
            TAP_RING_SIZE >> 20,
            RSS_BUDGET >> 20
        ),
        measured: rss.map_or_else(
            || "not measured".into(),
            |(rss, c)| {
                format!(
                    "largest {:.1} MiB ({}, {} B, {}), bound {} MiB",
                    rss as f64 / f64::from(1 << 20),
                    c.tool.label(),
                    c.len,
                    c.matching.key(),
                    bound >> 20
                )
            },
        ),
        pass: rss.map(|(rss, _)| rss <= bound),
    });
    t
}

pub(super) fn targets_text(targets: &[Target]) -> String {
    let mut s = String::from("\n### Targets (from this run)\n\n");
    for t in targets {
        let verdict = match t.pass {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "----",
        };
        let _ = writeln!(s, "- {verdict} ({}) {}: {}", t.id, t.what, t.measured);
    }
    s
}

pub(super) fn json(
    r: &Results,
    plan: &Plan,
    targets: &[Target],
    elapsed: std::time::Duration,
) -> Value {
    let captures: Vec<Value> = r
        .captures
        .iter()
        .map(|c| {
            json!({
                "tool": c.tool.key(),
                "label": c.tool.label(),
                "frame_len": c.len,
                "matching": c.matching.key(),
                "filter": if c.tool.filters() { Some(capture::filter()) } else { None },
                "median": CaptureMedian::of(&c.runs).to_json(),
                "added_system_cpu_ns_per_offered": r.added(c.tool, c.len, c.matching),
                "live_programs": c.live.iter().map(LiveProgram::to_json).collect::<Vec<_>>(),
                "runs": c.runs.iter().map(CaptureRun::to_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    let programs: Vec<Value> = r
        .progs
        .iter()
        .map(|(c, runs)| {
            json!({
                "program": c.program(),
                "filter": c.rules.kind(),
                "rules": c.rules.count(),
                "per_interface": c.extra == Extra::PerInterface,
                "flows": match c.extra {
                    Extra::FlowBudget { flows } => Some(flows),
                    _ => None,
                },
                "frame_len": c.frame_len,
                "repeat": plan.repeat,
                "median": progs::medians(runs).to_json(),
                "runs": runs.iter().map(ProgRun::to_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    let writers: Vec<Value> = r
        .writers
        .iter()
        .map(|(place, w, rates)| writer::to_json(place, *w, rates))
        .collect();
    let printing: Vec<Value> = r
        .printing
        .iter()
        .map(|(p, f, ns)| printing::to_json(p, f, ns))
        .collect();
    json!({
        "settings": {
            "runs": plan.runs,
            "frames_per_run": { "64": plan.count_64, "1500": plan.count_1500 },
            "repeat": plan.repeat,
            "writer_bytes": plan.writer_bytes,
            "generator": "AF_PACKET TX_RING (TPACKET_V2, qdisc bypass), full rate",
            "generator_cpu": capture::GENERATOR_CPU,
            "tool_cpu": capture::TOOL_CPU,
            "tap_ring_size": TAP_RING_SIZE,
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default(),
            "cpus": std::thread::available_parallelism().map_or(0, usize::from),
        },
        "elapsed_seconds": elapsed.as_secs_f64(),
        "capture": captures,
        "programs": programs,
        "writer": writers,
        "store_cpu": r.store_cpu,
        "evidence": r.evidence,
        "printing": printing,
        "targets": targets.iter().map(|t| json!({
            "id": t.id, "what": t.what, "measured": t.measured, "pass": t.pass,
        })).collect::<Vec<_>>(),
    })
}
