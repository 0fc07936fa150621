//! Capture runs: one capture tool on veth-b under the generator's full rate from veth-a.

use std::{
    fs,
    io::BufReader,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use tap_common::frame::Ends;
use tap_tests::{
    Netns, Topology,
    topology::{A_V4, B_V4},
};

use super::{
    median,
    stat::{self, CpuTimes, Ticks},
    traffic::{self, Generator},
};
use crate::{
    process::{Background, Exited},
    util,
};

/// CPU the generator runs on (and with it veth-b's receive path: veth delivers on the sender's
/// CPU).
pub(super) const GENERATOR_CPU: usize = 0;
/// CPU the capture tool runs on.
pub(super) const TOOL_CPU: usize = 1;
/// Nice value of the scheduling group of everything the bench runs (see
/// [`super::own_sched_group`]).
pub(super) const NICE: i32 = -15;
/// Frame lengths offered, in bytes (the whole Ethernet frame, no FCS).
pub(super) const FRAME_LENS: [usize; 2] = [64, 1500];
/// UDP destination port of the frames every tool is asked for.
pub(super) const PORT: u16 = 5000;
/// UDP source port of every frame.
const SRC_PORT: u16 = 40000;
/// tcpdump's buffer (`-B`), in KiB.
const TCPDUMP_BUFFER_KIB: u64 = 262_144;
/// tap's ring for the capture runs, in bytes: the buffer tcpdump gets, so both ride out the same
/// stalls of the output (tmpfs allocating fresh pages slows to a crawl for tenths of a second
/// here now and then; tap's default ring, 32 MiB, is sized for memory, not for 1 GB/s through
/// such a stall).
pub(super) const TAP_RING_SIZE: u64 = TCPDUMP_BUFFER_KIB * 1024;
/// After the last frame, the tool counts as done once its CPU time grew by less than this in
/// [`IDLE_STEP`].
const IDLE_CPU: Duration = Duration::from_millis(2);
const IDLE_STEP: Duration = Duration::from_millis(100);
/// Longest wait for a tool to catch up after the last frame.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(15);
/// Before the first frame, wait (up to [`QUIET_LIMIT`]) until the machine is less busy than
/// this, in CPUs: on a shared machine others' work lands in the /proc/stat window.
const QUIET_BUSY: f64 = 0.2;
const QUIET_STEP: Duration = Duration::from_millis(200);
const QUIET_LIMIT: Duration = Duration::from_secs(1);

/// The filter every tool is given (xdpdump has none: see [`Tool::filters`]).
pub(super) fn filter() -> String {
    format!("udp dst port {PORT}")
}

/// Which share of the offered frames the filter selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Matching {
    /// Every frame goes to [`PORT`].
    All,
    /// Frame `i` goes to `PORT + i % 100`: one in a hundred is selected.
    #[value(name = "1pct")]
    OnePercent,
}

impl Matching {
    pub(crate) const ALL: [Matching; 2] = [Matching::All, Matching::OnePercent];

    /// Distinct frames, sent round-robin.
    pub(crate) fn variants(self) -> usize {
        match self {
            Matching::All => 1,
            Matching::OnePercent => 100,
        }
    }

    pub(crate) fn key(self) -> &'static str {
        match self {
            Matching::All => "all",
            Matching::OnePercent => "1pct",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Matching::All => "all frames match",
            Matching::OnePercent => "1% of frames match",
        }
    }

    /// Selected frames among the first `sent` of a run (frame `i` is selected when `i` is a
    /// multiple of the variants).
    pub(crate) fn selected(self, sent: u64) -> u64 {
        sent.div_ceil(self.variants() as u64)
    }
}

/// What captures on veth-b.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Tool {
    /// No capture: the baseline.
    None,
    /// tap --hook xdp.
    TapXdp,
    /// tap --hook tc-ingress.
    TapTc,
    /// tap --hook xdp --consume.
    TapConsume,
    /// tap --hook xdp printing every packet (`--print -nn`, standard output /dev/null) beside
    /// the same file: what printing costs and whether it keeps up (or counts what it skips).
    TapPrint,
    Tcpdump,
    Xdpdump,
}

impl Tool {
    pub(crate) const ALL: [Tool; 7] = [
        Tool::None,
        Tool::TapXdp,
        Tool::TapTc,
        Tool::TapConsume,
        Tool::TapPrint,
        Tool::Tcpdump,
        Tool::Xdpdump,
    ];

    pub(crate) fn key(self) -> &'static str {
        match self {
            Tool::None => "none",
            Tool::TapXdp => "tap-xdp",
            Tool::TapTc => "tap-tc-ingress",
            Tool::TapConsume => "tap-xdp-consume",
            Tool::TapPrint => "tap-xdp-print",
            Tool::Tcpdump => "tcpdump",
            Tool::Xdpdump => "xdpdump",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Tool::None => "no capture",
            Tool::TapXdp => "tap --hook xdp",
            Tool::TapTc => "tap --hook tc-ingress",
            Tool::TapConsume => "tap --hook xdp --consume",
            Tool::TapPrint => "tap --hook xdp --print -nn >/dev/null",
            Tool::Tcpdump => "tcpdump -B 262144",
            Tool::Xdpdump => "xdpdump (XDP entry)",
        }
    }

    pub(crate) fn is_tap(self) -> bool {
        matches!(self, Tool::TapXdp | Tool::TapTc | Tool::TapConsume)
    }

    /// How long after the last frame the tool may still be handed frames the kernel holds back:
    /// libpcap's TPACKET_V3 ring hands a block over when it is full or when its timeout (the
    /// capture's 1000 ms packet-buffer timeout, tcpdump's default) passes. Stopping tcpdump
    /// sooner loses the last, partly filled block.
    fn delivery_delay(self) -> Duration {
        match self {
            Tool::Tcpdump => Duration::from_millis(1300),
            _ => Duration::ZERO,
        }
    }

    /// Whether the tool applies the filter. xdpdump (1.3) has none: it writes every frame.
    pub(crate) fn filters(self) -> bool {
        self != Tool::Xdpdump
    }

    /// The command line (run in namespace b) and what it says on standard error once it
    /// captures.
    ///
    /// `program_stats`: tap also measures its programs (`--program-stats`).
    fn command(
        self,
        tap: &Path,
        iface: &str,
        out: &Path,
        program_stats: bool,
    ) -> Option<(Vec<String>, &'static str)> {
        let out = out.to_string_lossy().into_owned();
        let filter = filter();
        let tap_args = |hook: &str, consume: bool, print: bool| -> Vec<String> {
            let mut args = vec![
                tap.to_string_lossy().into_owned(),
                "capture".into(),
                "-i".into(),
                iface.into(),
                "--hook".into(),
                hook.into(),
                "-w".into(),
                out.clone(),
                "--ring-size".into(),
                TAP_RING_SIZE.to_string(),
                "--log".into(),
                "info".into(),
            ];
            if consume {
                args.push("--consume".into());
            }
            if print {
                args.extend(["--print".into(), "-nn".into()]);
            }
            if program_stats {
                args.push("--program-stats".into());
            }
            args.extend(filter.split(' ').map(String::from));
            args
        };
        let strings = |v: &[&str]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        match self {
            Tool::None => None,
            Tool::TapXdp => Some((tap_args("xdp", false, false), "capturing")),
            Tool::TapTc => Some((tap_args("tc-ingress", false, false), "capturing")),
            Tool::TapConsume => Some((tap_args("xdp", true, false), "capturing")),
            Tool::TapPrint => Some((tap_args("xdp", false, true), "capturing")),
            Tool::Tcpdump => {
                let buffer = TCPDUMP_BUFFER_KIB.to_string();
                let mut argv = strings(&[
                    "tcpdump", "-i", iface, "-n", "-B", &buffer, "-s", "0", "-Z", "root", "-w",
                    &out,
                ]);
                argv.extend(filter.split(' ').map(String::from));
                Some((argv, "listening on"))
            }
            Tool::Xdpdump => Some((
                strings(&[
                    "xdpdump",
                    "-i",
                    iface,
                    "--load-xdp-program",
                    "--use-pcap",
                    "-w",
                    &out,
                ]),
                "listening on",
            )),
        }
    }
}

/// CPU time of the threads that do the run's work, in its window, from the scheduler's
/// nanosecond accounting (not ticks): [`CaptureRun::cpu`] minus these is what else ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct OurCpu {
    pub generator: Duration,
    pub ksoftirqd: Duration,
    pub tool: Duration,
}

impl OurCpu {
    pub(super) fn total(&self) -> Duration {
        self.generator + self.ksoftirqd + self.tool
    }
}

/// The capture process's resource use.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct ToolUsage {
    /// User + system time from the first frame to its exit (all threads).
    pub cpu: Duration,
    /// The user part of `cpu` (clock-tick resolution).
    pub user: Duration,
    /// Largest resident set over its whole life, in bytes.
    pub max_rss: u64,
    /// Voluntary context switches from the first frame to its exit: its wake-ups.
    pub wakeups: u64,
    /// Involuntary context switches (preemptions) in the same time.
    pub preempted: u64,
}

/// One capture run's measurements.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct CaptureRun {
    /// Frames the generator sent (the kernel took them).
    pub offered: u64,
    /// Of those, the frames the filter selects.
    pub selected: u64,
    /// Selected frames found in the output file.
    pub written: u64,
    /// Other records in the file: unselected frames (xdpdump) and b's ICMP errors (none of
    /// the filtering tools: they go the other way).
    pub other_records: u64,
    pub send: traffic::Sent,
    /// From the first frame until the tool caught up.
    pub window: Duration,
    /// CPU time of the machine in the window.
    pub cpu: CpuTimes,
    /// The machine's busy share of the 200 ms before the first frame, with the tool ready:
    /// what else ran (on a shared machine, others' work), 0 to 1 per CPU summed.
    pub background: f64,
    /// CPU time of our own threads in the window: the sending thread (with the receive
    /// path's softirq work done in its context), ksoftirqd (the rest of it) and the tool.
    pub ours: OurCpu,
    pub tool: Option<ToolUsage>,
    /// veth-b's rx_packets in the window.
    pub veth_rx: u64,
    /// veth-a's tx_dropped in the window: frames veth refused because veth-b's XDP queue was
    /// full (the generator sent them again).
    pub veth_refused: u64,
    /// The tool's own summary (its standard error without log lines).
    pub tool_report: String,
    /// Packets tap's printer skipped because it was behind (its summary's "N packets not
    /// printed").
    pub not_printed: u64,
}

impl CaptureRun {
    pub(super) fn lost(&self) -> i64 {
        self.selected as i64 - self.written as i64
    }

    pub(super) fn lost_pct(&self) -> f64 {
        if self.selected == 0 {
            0.0
        } else {
            100.0 * self.lost() as f64 / self.selected as f64
        }
    }

    /// Busy CPU time of the whole machine per offered frame, in ns.
    pub(super) fn system_ns(&self) -> Option<f64> {
        per(stat::ticks(self.cpu.all.busy()), self.offered)
    }

    /// Our threads' CPU time per offered frame, in ns (see [`OurCpu`]).
    pub(super) fn ours_ns(&self) -> Option<f64> {
        per(self.ours.total(), self.offered)
    }

    /// CPU 0's part of [`Self::ours_ns`]: sending and the receive path (the generator thread
    /// and ksoftirqd).
    pub(super) fn receive_path_ns(&self) -> Option<f64> {
        per(self.ours.generator + self.ours.ksoftirqd, self.offered)
    }

    /// CPU 1's part of [`Self::ours_ns`]: the tool, in the window.
    pub(super) fn tool_window_ns(&self) -> Option<f64> {
        per(self.ours.tool, self.offered)
    }

    /// Softirq time of the machine per offered frame, in ns.
    pub(super) fn softirq_ns(&self) -> Option<f64> {
        per(stat::ticks(self.cpu.all.softirq), self.offered)
    }

    /// Busy time of one CPU per offered frame, in ns.
    pub(super) fn cpu_ns(&self, cpu: usize) -> Option<f64> {
        per(
            stat::ticks(self.cpu.per_cpu.get(cpu).map_or(0, Ticks::busy)),
            self.offered,
        )
    }

    /// The capture process's CPU time per written frame, in ns.
    pub(super) fn tool_ns(&self) -> Option<f64> {
        per(self.tool?.cpu, self.written)
    }

    /// The capture process's wake-ups per thousand written frames.
    pub(super) fn wakeups_per_k(&self) -> Option<f64> {
        let t = self.tool?;
        (self.written > 0).then(|| 1000.0 * t.wakeups as f64 / self.written as f64)
    }

    pub(super) fn to_json(&self) -> Value {
        json!({
            "offered": self.offered,
            "selected": self.selected,
            "written": self.written,
            "lost": self.lost(),
            "lost_percent": self.lost_pct(),
            "other_records": self.other_records,
            "send_seconds": self.send.elapsed.as_secs_f64(),
            "sent_pps": self.send.pps(),
            "generator_busy_retries": self.send.busy_retries,
            "generator_timed_out": self.send.timed_out,
            "window_seconds": self.window.as_secs_f64(),
            "background_busy_cpus": self.background,
            "cpu_ticks": ticks_json(&self.cpu.all),
            "cpu_ticks_per_cpu": self.cpu.per_cpu.iter().map(ticks_json).collect::<Vec<_>>(),
            "system_cpu_ns_per_offered": self.system_ns(),
            "our_threads_cpu_ns": {
                "generator": self.ours.generator.as_nanos() as u64,
                "ksoftirqd": self.ours.ksoftirqd.as_nanos() as u64,
                "tool": self.ours.tool.as_nanos() as u64,
            },
            "our_threads_cpu_ns_per_offered": self.ours_ns(),
            "softirq_ns_per_offered": self.softirq_ns(),
            "generator_cpu_busy_ns_per_offered": self.cpu_ns(GENERATOR_CPU),
            "tool_cpu_busy_ns_per_offered": self.cpu_ns(TOOL_CPU),
            "tool": self.tool.map(|t| json!({
                "cpu_ns": t.cpu.as_nanos() as u64,
                "user_ns": t.user.as_nanos() as u64,
                "max_rss_bytes": t.max_rss,
                "wakeups": t.wakeups,
                "preemptions": t.preempted,
            })),
            "tool_cpu_ns_per_written": self.tool_ns(),
            "tool_wakeups_per_1000_written": self.wakeups_per_k(),
            "veth_b_rx_packets": self.veth_rx,
            "veth_a_tx_refused": self.veth_refused,
            "tool_report": self.tool_report,
            "not_printed": self.not_printed,
        })
    }
}

fn ticks_json(t: &Ticks) -> Value {
    json!({
        "user": t.user, "nice": t.nice, "system": t.system, "idle": t.idle, "iowait": t.iowait,
        "irq": t.irq, "softirq": t.softirq, "steal": t.steal,
    })
}

fn per(t: Duration, n: u64) -> Option<f64> {
    (n > 0).then(|| t.as_nanos() as f64 / n as f64)
}

/// Medians of one configuration's runs (each column its own median).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct CaptureMedian {
    pub runs: usize,
    pub offered: f64,
    pub sent_pps: f64,
    pub selected: f64,
    pub written: f64,
    pub lost: f64,
    pub lost_pct: f64,
    /// The largest loss of any run, in frames.
    pub lost_max: i64,
    pub system_ns: Option<f64>,
    pub ours_ns: Option<f64>,
    pub receive_path_ns: Option<f64>,
    pub tool_window_ns: Option<f64>,
    pub softirq_ns: Option<f64>,
    pub generator_cpu_ns: Option<f64>,
    pub tool_cpu_busy_ns: Option<f64>,
    pub tool_ns: Option<f64>,
    pub tool_user_share: Option<f64>,
    pub wakeups_per_k: Option<f64>,
    /// The largest max RSS of any run, in bytes.
    pub max_rss: Option<u64>,
    pub background: f64,
    pub veth_refused: f64,
    pub not_printed: f64,
}

impl CaptureMedian {
    pub(super) fn of(runs: &[CaptureRun]) -> Self {
        let m =
            |f: &dyn Fn(&CaptureRun) -> Option<f64>| median(runs.iter().filter_map(f).collect());
        let all =
            |f: &dyn Fn(&CaptureRun) -> f64| median(runs.iter().map(f).collect()).unwrap_or(0.0);
        Self {
            runs: runs.len(),
            offered: all(&|r| r.offered as f64),
            sent_pps: all(&|r| r.send.pps()),
            selected: all(&|r| r.selected as f64),
            written: all(&|r| r.written as f64),
            lost: all(&|r| r.lost() as f64),
            lost_pct: all(&CaptureRun::lost_pct),
            lost_max: runs.iter().map(CaptureRun::lost).max().unwrap_or(0),
            system_ns: m(&CaptureRun::system_ns),
            ours_ns: m(&CaptureRun::ours_ns),
            receive_path_ns: m(&CaptureRun::receive_path_ns),
            tool_window_ns: m(&CaptureRun::tool_window_ns),
            softirq_ns: m(&CaptureRun::softirq_ns),
            generator_cpu_ns: m(&|r| r.cpu_ns(GENERATOR_CPU)),
            tool_cpu_busy_ns: m(&|r| r.cpu_ns(TOOL_CPU)),
            tool_ns: m(&CaptureRun::tool_ns),
            // The start of the user time has clock-tick resolution (10 ms): no share of less.
            tool_user_share: m(&|r| {
                let t = r.tool?;
                (t.cpu >= Duration::from_millis(100))
                    .then(|| t.user.as_secs_f64() / t.cpu.as_secs_f64())
            }),
            wakeups_per_k: m(&CaptureRun::wakeups_per_k),
            max_rss: runs.iter().filter_map(|r| r.tool.map(|t| t.max_rss)).max(),
            background: all(&|r| r.background),
            veth_refused: all(&|r| r.veth_refused as f64),
            not_printed: all(&|r| r.not_printed as f64),
        }
    }

    pub(super) fn to_json(&self) -> Value {
        json!({
            "offered": self.offered,
            "sent_pps": self.sent_pps,
            "selected": self.selected,
            "written": self.written,
            "lost": self.lost,
            "lost_percent": self.lost_pct,
            "lost_max": self.lost_max,
            "system_cpu_ns_per_offered": self.system_ns,
            "our_threads_cpu_ns_per_offered": self.ours_ns,
            "send_and_receive_path_ns_per_offered": self.receive_path_ns,
            "tool_in_window_ns_per_offered": self.tool_window_ns,
            "softirq_ns_per_offered": self.softirq_ns,
            "generator_cpu_busy_ns_per_offered": self.generator_cpu_ns,
            "tool_cpu_busy_ns_per_offered": self.tool_cpu_busy_ns,
            "tool_cpu_ns_per_written": self.tool_ns,
            "tool_user_share": self.tool_user_share,
            "tool_wakeups_per_1000_written": self.wakeups_per_k,
            "max_rss_bytes": self.max_rss,
            "background_busy_cpus": self.background,
            "veth_a_tx_refused": self.veth_refused,
            "not_printed": self.not_printed,
        })
    }
}

/// The topology and what every run needs of it.
pub(super) struct Bed<'a> {
    topo: &'a Topology,
    tap: &'a Path,
    dir: &'a Path,
    /// veth-a's MAC: the source of every offered frame.
    mac_a: [u8; 6],
    mac_b: [u8; 6],
    /// The ksoftirqd threads: softirq work the kernel defers to them is ours too.
    ksoftirqd: Vec<libc::pid_t>,
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|h| u8::from_str_radix(h, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    bytes.try_into().ok()
}

fn ipv4(text: &str) -> Result<[u8; 4]> {
    Ok(text
        .parse::<std::net::Ipv4Addr>()
        .with_context(|| format!("address {text}"))?
        .octets())
}

impl<'a> Bed<'a> {
    pub(super) fn new(topo: &'a Topology, tap: &'a Path, dir: &'a Path) -> Result<Self> {
        let mac = |ns: &Netns, iface: &str| -> Result<[u8; 6]> {
            let text = util::ns_output(ns, "cat", &[&format!("/sys/class/net/{iface}/address")])?;
            parse_mac(text.trim()).with_context(|| format!("{iface}'s MAC {text:?}"))
        };
        Ok(Self {
            topo,
            tap,
            dir,
            mac_a: mac(&topo.a, &topo.a_if)?,
            mac_b: mac(&topo.b, &topo.b_if)?,
            ksoftirqd: ksoftirqd_pids()?,
        })
    }

    /// The frames of a run: `variants` frames of `len` bytes from a to b, to ports
    /// `PORT..PORT + variants`.
    fn frames(&self, len: usize, matching: Matching) -> Result<Vec<Vec<u8>>> {
        let ips = (ipv4(A_V4)?, ipv4(B_V4)?);
        (0..matching.variants())
            .map(|k| {
                traffic::udp_frame(
                    len,
                    &Ends {
                        macs: (self.mac_a, self.mac_b),
                        ips,
                        ports: (SRC_PORT, PORT + k as u16),
                    },
                )
            })
            .collect()
    }

    /// `(veth-b rx_packets, veth-a tx_dropped)`.
    fn veth_counters(&self) -> Result<(u64, u64)> {
        let read = |ns: &Netns, path: String| -> Result<u64> {
            util::ns_output(ns, "cat", &[&path])?
                .trim()
                .parse()
                .with_context(|| format!("parsing {path}"))
        };
        Ok((
            read(
                &self.topo.b,
                format!("/sys/class/net/{}/statistics/rx_packets", self.topo.b_if),
            )?,
            read(
                &self.topo.a,
                format!("/sys/class/net/{}/statistics/tx_dropped", self.topo.a_if),
            )?,
        ))
    }

    /// One run of `tool`; with `program_stats`, tap measures its programs too (which costs every
    /// program run two clock reads: such a run is not one of the medians).
    pub(super) fn run(
        &self,
        tool: Tool,
        len: usize,
        matching: Matching,
        count: u64,
        run: usize,
        program_stats: bool,
    ) -> Result<CaptureRun> {
        util::check_interrupted()?;
        let out = self.dir.join(format!(
            "{}-{len}-{}-{run}.pcap",
            tool.key(),
            matching.key()
        ));
        let generator = Generator::prepare(&traffic::Spec {
            netns: self.topo.a.name.clone(),
            iface: self.topo.a_if.clone(),
            cpu: GENERATOR_CPU,
            nice: NICE,
            frames: self.frames(len, matching)?,
            count,
            time_limit: Duration::from_secs(20),
        })?;
        let mut capture = match tool.command(self.tap, &self.topo.b_if, &out, program_stats) {
            None => None,
            Some((argv, ready)) => {
                let mut cmd = self.topo.b.cmd("taskset");
                cmd.args(["-c", &TOOL_CPU.to_string()])
                    .args(&argv)
                    .env("NO_COLOR", "1")
                    .stdout(Stdio::null());
                super::own_sched_group(&mut cmd);
                let mut p = Background::spawn(tool.label(), &mut cmd)?;
                p.wait_for_stderr(ready, Duration::from_secs(30))?;
                Some(p)
            }
        };
        let (rx_before, refused_before) = self.veth_counters()?;
        let background = settle()?;

        let tool_before = match &capture {
            Some(p) => Some((
                p.cpu_now()?,
                stat::process_times(p.pid())?.0,
                switches(p.pid())?,
            )),
            None => None,
        };
        let ksoftirqd_before = runtime_of(&self.ksoftirqd);
        let cpu_before = CpuTimes::now()?;
        let started = Instant::now();
        let send = generator.send()?;
        let sent_at = Instant::now();
        catch_up(capture.as_ref())?;
        let window = started.elapsed();
        let cpu = CpuTimes::now()?.since(&cpu_before);
        let ours = OurCpu {
            generator: send.thread_cpu,
            ksoftirqd: runtime_of(&self.ksoftirqd).saturating_sub(ksoftirqd_before),
            tool: match (&capture, &tool_before) {
                (Some(p), Some((cpu0, ..))) => p.cpu_now()?.saturating_sub(*cpu0),
                _ => Duration::ZERO,
            },
        };
        let (rx_after, refused_after) = self.veth_counters()?;
        // The window ends once the tool is idle; what the kernel still holds back for it (a
        // fraction of a percent of the work) is handed over before it is stopped.
        util::sleep(tool.delivery_delay().saturating_sub(sent_at.elapsed()))?;

        let (tool_usage, tool_report) = match (capture.take(), tool_before) {
            (Some(p), Some((cpu0, user0, (vol0, invol0)))) => {
                let exited: Exited = p.stop(libc::SIGINT, Duration::from_secs(60))?;
                if !exited.status.success() {
                    bail!(
                        "{} failed ({}):\n{}",
                        tool.label(),
                        exited.status,
                        exited.stderr.trim_end()
                    );
                }
                let usage = ToolUsage {
                    cpu: exited.cpu.saturating_sub(cpu0),
                    user: exited.user.saturating_sub(user0),
                    max_rss: exited.max_rss,
                    wakeups: exited.voluntary_switches.saturating_sub(vol0),
                    preempted: exited.involuntary_switches.saturating_sub(invol0),
                };
                (Some(usage), report_lines(&exited.stderr))
            }
            _ => (None, String::new()),
        };
        let (written, other_records) = if tool == Tool::None {
            (0, 0)
        } else {
            let counts = count_frames(&out, len, &self.mac_a, PORT)?;
            fs::remove_file(&out).with_context(|| format!("removing {}", out.display()))?;
            counts
        };
        Ok(CaptureRun {
            offered: send.sent,
            selected: if tool == Tool::None {
                0
            } else {
                matching.selected(send.sent)
            },
            written,
            other_records,
            send,
            window,
            cpu,
            background,
            ours,
            tool: tool_usage,
            veth_rx: rx_after.saturating_sub(rx_before),
            veth_refused: refused_after.saturating_sub(refused_before),
            not_printed: not_printed(&tool_report),
            tool_report,
        })
    }
}

/// A program's cost as tap's summary reports it with `--program-stats`:
/// `program NAME: RUNS runs, NS ns per run`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LiveProgram {
    pub name: String,
    pub runs: u64,
    pub ns_per_run: f64,
}

impl LiveProgram {
    /// The programs named in a tool report.
    pub(super) fn parse(report: &str) -> Vec<LiveProgram> {
        report
            .lines()
            .filter_map(|line| {
                let (name, rest) = line.strip_prefix("program ")?.split_once(": ")?;
                let (runs, rest) = rest.split_once(" runs, ")?;
                let ns = rest.strip_suffix(" ns per run")?;
                Some(LiveProgram {
                    name: name.to_string(),
                    runs: runs.parse().ok()?,
                    ns_per_run: ns.parse().ok()?,
                })
            })
            .collect()
    }

    pub(super) fn to_json(&self) -> Value {
        json!({ "program": self.name, "runs": self.runs, "ns_per_run": self.ns_per_run })
    }
}

/// Lets a freshly started tool settle, and waits (a bounded time) for the machine to be quiet.
/// Returns how busy it was in the last step, in CPUs.
fn settle() -> Result<f64> {
    let start = Instant::now();
    loop {
        let (before, at) = (CpuTimes::now()?, Instant::now());
        util::sleep(QUIET_STEP)?;
        let busy = stat::ticks(CpuTimes::now()?.since(&before).all.busy()).as_secs_f64()
            / at.elapsed().as_secs_f64();
        if busy < QUIET_BUSY || start.elapsed() > QUIET_LIMIT {
            return Ok(busy);
        }
    }
}

/// The pids of the ksoftirqd threads.
fn ksoftirqd_pids() -> Result<Vec<libc::pid_t>> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").context("reading /proc")? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        if fs::read_to_string(entry.path().join("comm")).is_ok_and(|c| c.starts_with("ksoftirqd/"))
        {
            pids.push(pid);
        }
    }
    if pids.is_empty() {
        bail!("no ksoftirqd threads in /proc");
    }
    Ok(pids)
}

/// Summed run time of `pids` (single-threaded: kernel threads) from `/proc/PID/schedstat`.
fn runtime_of(pids: &[libc::pid_t]) -> Duration {
    let ns: u64 = pids
        .iter()
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

/// Waits until the tool has caught up with the frames sent: its CPU time stops growing.
fn catch_up(tool: Option<&Background>) -> Result<()> {
    let Some(p) = tool else {
        return util::sleep(IDLE_STEP);
    };
    let start = Instant::now();
    let mut last = p.cpu_now()?;
    loop {
        util::sleep(IDLE_STEP)?;
        let now = p.cpu_now()?;
        if now.saturating_sub(last) < IDLE_CPU || start.elapsed() > CATCH_UP_LIMIT {
            return Ok(());
        }
        last = now;
    }
}

/// Voluntary and involuntary context switches of all threads of `pid` so far.
fn switches(pid: libc::pid_t) -> Result<(u64, u64)> {
    let dir = format!("/proc/{pid}/task");
    let (mut vol, mut invol) = (0, 0);
    for task in fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Ok(text) = fs::read_to_string(task?.path().join("status")) else {
            continue;
        };
        let (v, i) = parse_switches(&text);
        vol += v;
        invol += i;
    }
    Ok((vol, invol))
}

fn parse_switches(status: &str) -> (u64, u64) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (
        field("voluntary_ctxt_switches:"),
        field("nonvoluntary_ctxt_switches:"),
    )
}

/// The tool's summary lines: its standard error without log lines and banners.
/// tap's "N packets not printed (printer behind)", 0 without that line.
fn not_printed(report: &str) -> u64 {
    report
        .lines()
        .find_map(|l| l.strip_suffix(" packets not printed (printer behind)"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn report_lines(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| {
            let b = l.as_bytes();
            let log = b.len() > 11
                && b[..4].iter().all(u8::is_ascii_digit)
                && b[4] == b'-'
                && b[10] == b'T';
            let banner = ["listening on", "WARNING", "Will load"]
                .iter()
                .any(|w| l.contains(w));
            !log && !banner && !l.trim().is_empty()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Counts the records of a pcap file: `(selected frames, other records)`, where a selected frame
/// is one of `len` bytes on the wire from `src_mac` to UDP port `port`.
#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "a MAC address is compared where it is borrowed"
)]
fn count_frames(path: &Path, len: usize, src_mac: &[u8; 6], port: u16) -> Result<(u64, u64)> {
    let file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    count_frames_in(BufReader::with_capacity(1 << 20, file), len, src_mac, port)
        .with_context(|| format!("reading {}", path.display()))
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "a MAC address is compared where it is borrowed"
)]
fn count_frames_in(
    mut r: impl std::io::BufRead,
    len: usize,
    src_mac: &[u8; 6],
    port: u16,
) -> Result<(u64, u64)> {
    let mut global = [0u8; 24];
    r.read_exact(&mut global).context("no pcap header")?;
    let little = match u32::from_le_bytes(global[..4].try_into().expect("4 bytes")) {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        magic => bail!("not a pcap file (magic {magic:#010x}; pcapng is not read here)"),
    };
    let u32_at = |b: &[u8]| {
        let a = b[..4].try_into().expect("4 bytes");
        if little {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let (mut selected, mut other) = (0u64, 0u64);
    let mut header = [0u8; 16];
    let mut data = Vec::new();
    loop {
        // A clean end of file between records ends the count; anything else is an error.
        if r.fill_buf()?.is_empty() {
            break;
        }
        r.read_exact(&mut header)
            .context("truncated record header")?;
        let (incl, orig) = (
            u32_at(&header[8..]) as usize,
            u32_at(&header[12..]) as usize,
        );
        data.resize(incl, 0);
        r.read_exact(&mut data).context("truncated record")?;
        let ours = orig == len
            && data.len() >= 38
            && data[6..12] == src_mac[..]
            && data[36..38] == port.to_be_bytes();
        if ours {
            selected += 1;
        } else {
            other += 1;
        }
    }
    Ok((selected, other))
}

/// A directory under /dev/shm for the captures, removed on drop.
pub(super) struct ShmDir(pub PathBuf);

impl ShmDir {
    pub(super) fn new() -> Result<Self> {
        let dir = PathBuf::from(format!("/dev/shm/tap-bench-{}", std::process::id()));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for ShmDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap(little: bool, records: &[(u32, &[u8])]) -> Vec<u8> {
        let w = |v: u32| {
            if little {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            }
        };
        let mut f = Vec::new();
        f.extend_from_slice(&w(0xa1b2_3c4d));
        f.extend_from_slice(&[0; 12]);
        f.extend_from_slice(&w(262_144));
        f.extend_from_slice(&w(1));
        for (orig, data) in records {
            f.extend_from_slice(&[0; 8]);
            f.extend_from_slice(&w(data.len() as u32));
            f.extend_from_slice(&w(*orig));
            f.extend_from_slice(data);
        }
        f
    }

    #[test]
    fn counts_selected_frames_by_length_source_and_port() {
        let mac = [2, 0, 0, 0, 0, 1];
        let frame = |port: u16| {
            traffic::udp_frame(
                64,
                &Ends {
                    macs: (mac, [2, 0, 0, 0, 0, 2]),
                    ips: ([192, 0, 2, 1], [192, 0, 2, 2]),
                    ports: (1, port),
                },
            )
            .unwrap()
        };
        let (ours, other_port) = (frame(PORT), frame(PORT + 1));
        let mut theirs = frame(PORT);
        theirs[6] = 0xee;
        for little in [true, false] {
            let f = pcap(
                little,
                &[
                    (64, &ours),
                    (64, &theirs),
                    (64, &ours),
                    (100, &ours),
                    (64, &other_port),
                    (64, &ours[..20]),
                ],
            );
            assert_eq!(count_frames_in(&f[..], 64, &mac, PORT).unwrap(), (2, 4));
        }
        let f = pcap(true, &[(64, &ours)]);
        assert!(
            count_frames_in(&f[..f.len() - 1], 64, &mac, PORT).is_err(),
            "a truncated record is an error"
        );
        assert!(count_frames_in(&b"\x0a\x0d\x0d\x0a"[..], 64, &mac, PORT).is_err());
    }

    #[test]
    fn one_percent_selects_every_hundredth_frame() {
        assert_eq!(Matching::OnePercent.selected(0), 0);
        assert_eq!(Matching::OnePercent.selected(1), 1);
        assert_eq!(Matching::OnePercent.selected(100), 1);
        assert_eq!(Matching::OnePercent.selected(101), 2);
        assert_eq!(Matching::All.selected(7), 7);
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("36:10:a0:c0:1d:b0"),
            Some([0x36, 0x10, 0xa0, 0xc0, 0x1d, 0xb0])
        );
        assert_eq!(parse_mac("36:10"), None);
        assert_eq!(parse_mac("zz:10:a0:c0:1d:b0"), None);
    }

    #[test]
    fn context_switch_fields() {
        let status = "Name:\ttap\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n";
        assert_eq!(parse_switches(status), (120, 7));
        assert_eq!(parse_switches(""), (0, 0));
    }

    #[test]
    fn live_program_lines_parse() {
        let report = "2000000 packets captured\nprogram tc_tap_ingress: 1999990 runs, 148.3 ns per run\nprogram x: 1 runs, nonsense";
        assert_eq!(
            LiveProgram::parse(report),
            vec![LiveProgram {
                name: "tc_tap_ingress".into(),
                runs: 1_999_990,
                ns_per_run: 148.3
            }]
        );
    }

    #[test]
    fn skipped_prints_from_the_summary() {
        assert_eq!(
            not_printed("10 packets captured\n1234 packets not printed (printer behind)"),
            1234
        );
        assert_eq!(not_printed("10 packets captured"), 0);
    }

    #[test]
    fn tool_reports_lose_logs_and_banners() {
        let stderr = "tcpdump: listening on veth-b, link-type EN10MB\n2026-11-27T02:30:08Z  INFO attached\n5 packets captured\n";
        assert_eq!(report_lines(stderr), "5 packets captured");
    }

    #[test]
    fn medians_of_runs() {
        let r = CaptureRun {
            offered: 1000,
            selected: 1000,
            written: 990,
            cpu: CpuTimes {
                all: Ticks {
                    softirq: 1,
                    ..Default::default()
                },
                per_cpu: Vec::new(),
            },
            ..Default::default()
        };
        let m = CaptureMedian::of(&[r.clone(), CaptureRun { written: 1000, ..r }]);
        assert_eq!((m.lost, m.lost_max), (5.0, 10));
        assert!(m.tool_ns.is_none());
        assert!(m.softirq_ns.unwrap() > 0.0);
    }
}
