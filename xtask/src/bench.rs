//! `cargo xtask bench`: tap next to tcpdump under the same offered load on a veth pair, and the
//! programs' own cost under BPF_PROG_TEST_RUN. Prints markdown tables and writes
//! `target/bench/bench.json`; every number in them is measured by the run.
//!
//! # Capture runs
//! Two throwaway namespaces joined by veth. trafgen in namespace a, pinned to CPU 0, sends a
//! fixed number of UDP frames at an asked rate out of veth-a; the capture tool runs in namespace
//! b on veth-b, pinned to CPU 1, and writes to /dev/shm. veth delivers on the sender's CPU, so
//! veth-b's receive path (the XDP program, the TC classifier, AF_PACKET's copy for tcpdump) runs
//! there in softirq; a tool costs its own process time plus softirq time. Per run:
//! - offered: the frames trafgen sent;
//! - captured: records of those frames in the file (tcpdump also records b's ICMP errors going
//!   the other way: a record counts when its length and source MAC are the offered frame's);
//! - lost: offered - captured;
//! - tool CPU: the capture process's user + system time from the start of the load to its exit
//!   (all threads: `/proc/PID/task/*/schedstat` at the start, wait4's rusage at the end), so its
//!   start-up (for tap, loading and verifying the programs) is not counted;
//! - softirq: the softirq time of all CPUs in `/proc/stat` over the same window (clock ticks of
//!   10 ms; the kernel samples it at each timer tick unless built with IRQ_TIME_ACCOUNTING). It
//!   includes the veth and IP receive work every configuration pays; the "no capture" row shows
//!   that baseline.
//!
//! CPU per captured packet is (tool CPU + softirq) / captured. Each figure in the table is the
//! median of its own column over the runs; bench.json has every run.
//!
//! trafgen runs in rate mode (`-b`): one sendto per frame on a blocking socket, which waits when
//! the receiving side holds the socket's buffer (an XDP program on veth-b makes veth queue frames
//! in its ring). trafgen's default TX_RING mode can abort then ("Flushing TX_RING failed")
//! unless it raises the system's socket buffer limits, which it cannot do inside a namespace
//! (`--no-sock-mem` stops it from trying). The generator shares CPU 0 with veth-b's receive path,
//! so a costlier path makes it fall behind the asked rate: the table shows the rate it reached.
//!
//! # Program runs
//! `tap bench-prog` (see `tap::testrun`): the kernel's mean time of one program run over a
//! crafted frame, once with the ring having room (the record is reserved, filled and submitted)
//! and once with the ring full (the reserve fails and is counted).

use std::{
    fmt::Write as _,
    fs,
    io::BufReader,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use tap_tests::{
    Netns, Topology,
    topology::{A_V4, B_V4},
};

use crate::{
    process::{self, Background},
    util,
};

/// CPU the generator runs on (and with it veth-b's receive path).
const GENERATOR_CPU: &str = "0";
/// CPU the capture tool runs on.
const TOOL_CPU: &str = "1";
/// Frame lengths offered, in bytes (the whole Ethernet frame, no FCS).
const FRAME_LENS: [usize; 2] = [64, 1500];

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Seconds of offered load per capture run.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Runs per configuration; the tables show medians.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Offered rate of 64-byte frames, in packets per second.
    #[arg(long, default_value_t = 300_000)]
    pub pps_64: u64,
    /// Offered rate of 1500-byte frames, in packets per second.
    #[arg(long, default_value_t = 150_000)]
    pub pps_1500: u64,
    /// Program runs per BPF_PROG_TEST_RUN measurement.
    #[arg(long, default_value_t = 1_000_000)]
    pub repeat: u64,
    /// A quick look: 1 s per capture run, one run per configuration, fewer program runs.
    #[arg(long)]
    pub quick: bool,
    /// Where to write the JSON results (default: target/bench/bench.json).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// What captures on veth-b.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    None,
    TapXdp,
    TapTcIngress,
    Tcpdump,
}

impl Tool {
    const ALL: [Tool; 4] = [Tool::None, Tool::TapXdp, Tool::TapTcIngress, Tool::Tcpdump];

    fn key(self) -> &'static str {
        match self {
            Tool::None => "none",
            Tool::TapXdp => "tap-xdp",
            Tool::TapTcIngress => "tap-tc-ingress",
            Tool::Tcpdump => "tcpdump",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Tool::None => "no capture (baseline)",
            Tool::TapXdp => "tap --hook xdp",
            Tool::TapTcIngress => "tap --hook tc-ingress",
            Tool::Tcpdump => "tcpdump -B 65536",
        }
    }

    /// The command line (run in namespace b) and what it says on standard error once it
    /// captures.
    fn command(self, tap: &Path, iface: &str, out: &Path) -> Option<(Vec<String>, &'static str)> {
        let out = out.to_string_lossy().into_owned();
        let tap = tap.to_string_lossy().into_owned();
        let tap_args = |hook: &str| -> Vec<String> {
            let args = [
                "capture", "-i", iface, "--hook", hook, "-w", &out, "--log", "info",
            ];
            std::iter::once(tap.clone())
                .chain(args.iter().map(ToString::to_string))
                .collect()
        };
        match self {
            Tool::None => None,
            Tool::TapXdp => Some((tap_args("xdp"), "capturing")),
            Tool::TapTcIngress => Some((tap_args("tc-ingress"), "capturing")),
            Tool::Tcpdump => Some((
                ["tcpdump", "-i", iface, "-B", "65536", "-w", &out, "-s", "0"]
                    .map(String::from)
                    .to_vec(),
                "listening on",
            )),
        }
    }
}

/// One capture run's measurements.
#[derive(Debug, Clone, Default, PartialEq)]
struct CaptureRun {
    offered: u64,
    captured: u64,
    /// Records in the file, of any kind.
    records: u64,
    /// Packets veth-b received (its rx_packets counter).
    veth_rx: u64,
    tool_cpu: Duration,
    softirq: Duration,
    /// How long trafgen took to send.
    send_time: Duration,
    /// The tool's own summary (its standard error without log lines).
    tool_report: String,
}

impl CaptureRun {
    /// The rate trafgen achieved, in packets per second.
    fn sent_pps(&self) -> f64 {
        self.offered as f64 / self.send_time.as_secs_f64().max(1e-9)
    }

    fn lost(&self) -> i64 {
        self.offered as i64 - self.captured as i64
    }

    /// Nanoseconds of `t` per packet: per captured packet, or per offered one when nothing was
    /// captured (the baseline).
    fn per_packet(&self, t: Duration) -> Option<f64> {
        let n = if self.captured > 0 {
            self.captured
        } else {
            self.offered
        };
        (n > 0).then(|| t.as_nanos() as f64 / n as f64)
    }

    fn to_json(&self) -> Value {
        json!({
            "offered": self.offered,
            "captured": self.captured,
            "lost": self.lost(),
            "records_in_file": self.records,
            "veth_b_rx_packets": self.veth_rx,
            "tool_cpu_ns": self.tool_cpu.as_nanos() as u64,
            "softirq_ns": self.softirq.as_nanos() as u64,
            "send_seconds": self.send_time.as_secs_f64(),
            "sent_pps": self.sent_pps(),
            "tool_cpu_ns_per_packet": self.per_packet(self.tool_cpu),
            "softirq_ns_per_packet": self.per_packet(self.softirq),
            "cpu_ns_per_captured_packet": (self.captured > 0).then(|| (self.tool_cpu + self.softirq).as_nanos() as f64 / self.captured as f64),
            "tool_report": self.tool_report,
        })
    }
}

/// Medians of one configuration's runs.
#[derive(Debug, Clone, PartialEq)]
struct CaptureMedian {
    offered: f64,
    sent_pps: f64,
    captured: f64,
    lost: f64,
    lost_pct: f64,
    tool_ns: Option<f64>,
    softirq_ns: Option<f64>,
    cpu_ns: Option<f64>,
}

impl CaptureMedian {
    fn of(runs: &[CaptureRun]) -> Self {
        let m =
            |f: &dyn Fn(&CaptureRun) -> Option<f64>| median(runs.iter().filter_map(f).collect());
        let all =
            |f: &dyn Fn(&CaptureRun) -> f64| median(runs.iter().map(f).collect()).unwrap_or(0.0);
        Self {
            offered: all(&|r| r.offered as f64),
            sent_pps: all(&|r| r.sent_pps()),
            captured: all(&|r| r.captured as f64),
            lost: all(&|r| r.lost() as f64),
            lost_pct: all(&|r| {
                if r.offered > 0 {
                    100.0 * r.lost() as f64 / r.offered as f64
                } else {
                    0.0
                }
            }),
            tool_ns: m(&|r| {
                if r.captured > 0 {
                    r.per_packet(r.tool_cpu)
                } else {
                    None
                }
            }),
            softirq_ns: m(&|r| r.per_packet(r.softirq)),
            cpu_ns: m(&|r| {
                (r.captured > 0)
                    .then(|| (r.tool_cpu + r.softirq).as_nanos() as f64 / r.captured as f64)
            }),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "offered": self.offered,
            "sent_pps": self.sent_pps,
            "captured": self.captured,
            "lost": self.lost,
            "lost_percent": self.lost_pct,
            "tool_cpu_ns_per_packet": self.tool_ns,
            "softirq_ns_per_packet": self.softirq_ns,
            "cpu_ns_per_captured_packet": self.cpu_ns,
        })
    }
}

/// One program measurement (`tap bench-prog`), ns per program run.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ProgRun {
    copied_ns: f64,
    ring_full_ns: f64,
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// The settings after `--quick`.
struct Plan {
    seconds: f64,
    runs: usize,
    repeat: u64,
}

impl Plan {
    fn from(args: &BenchArgs) -> Result<Self> {
        let plan = if args.quick {
            Plan {
                seconds: 1.0,
                runs: 1,
                repeat: 200_000,
            }
        } else {
            Plan {
                seconds: args.seconds,
                runs: args.runs,
                repeat: args.repeat,
            }
        };
        if !(plan.seconds > 0.0 && plan.seconds <= 60.0) {
            bail!("--seconds must be above 0 and at most 60");
        }
        if plan.runs == 0 || plan.repeat == 0 {
            bail!("--runs and --repeat must be at least 1");
        }
        Ok(plan)
    }

    fn count(&self, pps: u64) -> u64 {
        ((pps as f64 * self.seconds) as u64).max(1)
    }
}

pub fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    util::require_root("cargo xtask bench")?;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpus < 2 {
        bail!(
            "the bench needs two CPUs (one for the generator, one for the capture tool); this machine has {cpus}"
        );
    }
    for tool in ["trafgen", "tcpdump", "taskset"] {
        if !util::have(tool) {
            bail!("{tool} is missing: run cargo xtask setup");
        }
    }
    util::catch_interrupts();
    let plan = Plan::from(args)?;
    let tap = root.join("target/release/tap");
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| root.join("target/bench/bench.json"));
    let pps = |len: usize| {
        if len == 64 {
            args.pps_64
        } else {
            args.pps_1500
        }
    };
    let estimate =
        plan.runs as f64 * FRAME_LENS.len() as f64 * Tool::ALL.len() as f64 * (plan.seconds + 1.2);
    eprintln!(
        "bench: {} runs x {} frame lengths x {} configurations, {} s of load each (at least {:.0} s), then the programs",
        plan.runs,
        FRAME_LENS.len(),
        Tool::ALL.len(),
        plan.seconds,
        estimate
    );

    let shm = ShmDir::new()?;
    let topo = util::topology()?;
    let bed = Bed::new(&topo, &tap, &shm.0)?;
    let started = Instant::now();

    // Runs interleave the configurations, so a slow patch of the (shared) machine spreads over
    // all of them instead of hitting one.
    let mut results: Vec<(Tool, usize, Vec<CaptureRun>)> = FRAME_LENS
        .iter()
        .flat_map(|&len| Tool::ALL.map(|t| (t, len, Vec::new())))
        .collect();
    for run in 0..plan.runs {
        for (tool, len, runs) in &mut results {
            let r = bed.capture_run(*tool, *len, pps(*len), plan.count(pps(*len)), run)?;
            eprintln!(
                "bench: run {}/{} {:>4} B {:<24} offered {:>8} captured {:>8} tool {:>7.1} ms softirq {:>7.1} ms",
                run + 1,
                plan.runs,
                len,
                tool.label(),
                r.offered,
                r.captured,
                r.tool_cpu.as_secs_f64() * 1e3,
                r.softirq.as_secs_f64() * 1e3
            );
            runs.push(r);
        }
    }
    drop(topo);

    let mut progs = Vec::new();
    for hook in ["xdp", "tc"] {
        for len in FRAME_LENS {
            let mut runs = Vec::new();
            for _ in 0..plan.runs {
                runs.push(bench_prog(&tap, hook, len, plan.repeat)?);
            }
            let list = |f: fn(&ProgRun) -> f64| {
                runs.iter()
                    .map(|r| format!("{:.1}", f(r)))
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            eprintln!(
                "bench: program {hook} {len} B: record copied {} ns, ring full {} ns",
                list(|r| r.copied_ns),
                list(|r| r.ring_full_ns)
            );
            progs.push((hook, len, runs));
        }
    }

    let report = Report {
        plan: &plan,
        pps_64: args.pps_64,
        pps_1500: args.pps_1500,
        captures: &results,
        progs: &progs,
    };
    println!("{}", report.markdown());
    let json = report.json(started.elapsed());
    if let Some(dir) = json_path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(&json_path, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    println!("JSON: {}", json_path.display());
    Ok(())
}

/// A directory under /dev/shm for the captures, removed on drop.
struct ShmDir(PathBuf);

impl ShmDir {
    fn new() -> Result<Self> {
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

/// The topology and what every run needs of it.
struct Bed<'a> {
    topo: &'a Topology,
    tap: &'a Path,
    dir: &'a Path,
    /// veth-a's MAC: the source of every offered frame.
    mac_a: [u8; 6],
    mac_b: String,
}

impl<'a> Bed<'a> {
    fn new(topo: &'a Topology, tap: &'a Path, dir: &'a Path) -> Result<Self> {
        let mac = |ns: &Netns, iface: &str| -> Result<String> {
            Ok(
                util::ns_output(ns, "cat", &[&format!("/sys/class/net/{iface}/address")])?
                    .trim()
                    .to_string(),
            )
        };
        let mac_a_text = mac(&topo.a, &topo.a_if)?;
        let mac_a =
            parse_mac(&mac_a_text).with_context(|| format!("veth-a's MAC {mac_a_text:?}"))?;
        Ok(Self {
            topo,
            tap,
            dir,
            mac_a,
            mac_b: mac(&topo.b, &topo.b_if)?,
        })
    }

    /// trafgen's description of a UDP frame of `len` bytes from a to b's discard port.
    fn trafgen_config(&self, len: usize) -> Result<PathBuf> {
        let path = self.dir.join(format!("frame-{len}.cfg"));
        let mac_a = self.mac_a.map(|b| format!("{b:02x}")).join(":");
        let payload = len
            .checked_sub(14 + 20 + 8)
            .context("frame shorter than its headers")?;
        fs::write(
            &path,
            format!(
                "{{ eth(da={}, sa={mac_a}), ipv4(saddr={A_V4}, daddr={B_V4}, ttl=64), udp(sp=40000, dp=9), fill(0x41, {payload}) }}\n",
                self.mac_b
            ),
        )?;
        Ok(path)
    }

    fn veth_b_rx(&self) -> Result<u64> {
        let path = format!("/sys/class/net/{}/statistics/rx_packets", self.topo.b_if);
        util::ns_output(&self.topo.b, "cat", &[&path])?
            .trim()
            .parse()
            .context("veth-b rx_packets")
    }

    fn capture_run(
        &self,
        tool: Tool,
        len: usize,
        pps: u64,
        count: u64,
        run: usize,
    ) -> Result<CaptureRun> {
        util::check_interrupted()?;
        let out = self.dir.join(format!("{}-{len}-{run}.pcap", tool.key()));
        let config = self.trafgen_config(len)?;
        let mut capture = match tool.command(self.tap, &self.topo.b_if, &out) {
            None => None,
            Some((argv, ready)) => {
                let mut cmd = self.topo.b.cmd("taskset");
                cmd.args(["-c", TOOL_CPU]).args(&argv).env("NO_COLOR", "1");
                let mut p = Background::spawn(tool.label(), &mut cmd)?;
                p.wait_for_stderr(ready, Duration::from_secs(30))?;
                Some(p)
            }
        };
        // Let the tool settle (tap's drain starts right after it reports the attachment).
        util::sleep(Duration::from_millis(200))?;

        let rx_before = self.veth_b_rx()?;
        let cpu_before = capture.as_ref().map(Background::cpu_now).transpose()?;
        let softirq_before = process::softirq_time()?;
        let sent_at = Instant::now();
        let mut generator = self.topo.a.cmd("taskset");
        generator
            .args([
                "-c",
                GENERATOR_CPU,
                "trafgen",
                "-P",
                "1",
                "--no-sock-mem",
                "--no-cpu-stats",
                "-o",
            ])
            .arg(&self.topo.a_if)
            .arg("-i")
            .arg(&config)
            .args(["-n", &count.to_string(), "-b", &format!("{pps}pps")]);
        let gen_out = generator.output().context("running trafgen")?;
        let send_time = sent_at.elapsed();
        let gen_text = String::from_utf8_lossy(&gen_out.stdout).into_owned()
            + &String::from_utf8_lossy(&gen_out.stderr);
        if !gen_out.status.success() {
            bail!(
                "trafgen failed ({}):\n{}",
                gen_out.status,
                gen_text.trim_end()
            );
        }
        let offered = trafgen_sent(&gen_text)
            .with_context(|| format!("trafgen did not say how many frames it sent:\n{gen_text}"))?;
        // What is in flight reaches the tool.
        util::sleep(Duration::from_millis(300))?;

        let (tool_cpu, tool_report) = match capture.take() {
            None => (Duration::ZERO, String::new()),
            Some(p) => {
                let exited = p.stop(libc::SIGINT, Duration::from_secs(60))?;
                if !exited.status.success() {
                    bail!(
                        "{} failed ({}):\n{}",
                        tool.label(),
                        exited.status,
                        exited.stderr.trim_end()
                    );
                }
                (
                    exited.cpu.saturating_sub(cpu_before.unwrap_or_default()),
                    report_lines(&exited.stderr),
                )
            }
        };
        let softirq = process::softirq_time()?.saturating_sub(softirq_before);
        let veth_rx = self.veth_b_rx()? - rx_before;
        let (captured, records) = if tool == Tool::None {
            (0, 0)
        } else {
            let counts = count_frames(&out, len, &self.mac_a)?;
            fs::remove_file(&out).with_context(|| format!("removing {}", out.display()))?;
            counts
        };
        Ok(CaptureRun {
            offered,
            captured,
            records,
            veth_rx,
            tool_cpu,
            softirq,
            send_time,
            tool_report,
        })
    }
}

/// The tool's summary lines: its standard error without log lines and tcpdump's banner.
fn report_lines(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| {
            let b = l.as_bytes();
            let log = b.len() > 11
                && b[..4].iter().all(u8::is_ascii_digit)
                && b[4] == b'-'
                && b[10] == b'T';
            !log && !l.trim().is_empty() && !l.contains("listening on")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|h| u8::from_str_radix(h, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    bytes.try_into().ok()
}

/// trafgen's "N packets outgoing".
fn trafgen_sent(output: &str) -> Option<u64> {
    output
        .lines()
        .find(|l| l.contains("packets outgoing"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Counts the records of a pcap file: `(offered frames, all records)`, where an offered frame is
/// one of `len` bytes on the wire from `src_mac`.
fn count_frames(path: &Path, len: usize, src_mac: &[u8; 6]) -> Result<(u64, u64)> {
    let file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    count_frames_in(BufReader::with_capacity(1 << 20, file), len, src_mac)
        .with_context(|| format!("reading {}", path.display()))
}

fn count_frames_in(
    mut r: impl std::io::BufRead,
    len: usize,
    src_mac: &[u8; 6],
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
    let (mut offered, mut records) = (0u64, 0u64);
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
        records += 1;
        if orig == len && data.len() >= 12 && data[6..12] == src_mac[..] {
            offered += 1;
        }
    }
    Ok((offered, records))
}

/// `tap bench-prog`, pinned to the tool CPU.
fn bench_prog(tap: &Path, hook: &str, len: usize, repeat: u64) -> Result<ProgRun> {
    util::check_interrupted()?;
    let out = util::output(
        Command::new("taskset")
            .args(["-c", TOOL_CPU])
            .arg(tap)
            .args([
                "bench-prog",
                "--hook",
                hook,
                "--frame-len",
                &len.to_string(),
                "--repeat",
                &repeat.to_string(),
            ]),
    )?;
    let line = out.lines().last().unwrap_or_default();
    let v: Value =
        serde_json::from_str(line).with_context(|| format!("tap bench-prog printed {line:?}"))?;
    let field = |name: &str| {
        v[name]
            .as_f64()
            .with_context(|| format!("no {name} in {line}"))
    };
    Ok(ProgRun {
        copied_ns: field("ns_per_packet_copied")?,
        ring_full_ns: field("ns_per_packet_ring_full")?,
    })
}

struct Report<'a> {
    plan: &'a Plan,
    pps_64: u64,
    pps_1500: u64,
    captures: &'a [(Tool, usize, Vec<CaptureRun>)],
    progs: &'a [(&'static str, usize, Vec<ProgRun>)],
}

impl Report<'_> {
    fn markdown(&self) -> String {
        let mut s = String::new();
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"));
        for len in FRAME_LENS {
            let pps = if len == 64 {
                self.pps_64
            } else {
                self.pps_1500
            };
            let _ = writeln!(
                s,
                "\n### Capture on veth, {len}-byte frames at {pps} packets/s for {} s (median of {} run{})\n",
                self.plan.seconds,
                self.plan.runs,
                if self.plan.runs == 1 { "" } else { "s" }
            );
            s.push_str("| capture | offered | sent at pkt/s | captured | lost | lost % | tool CPU ns/pkt | softirq ns/pkt | CPU ns per captured pkt |\n");
            s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
            for (tool, _, runs) in self.captures.iter().filter(|(_, l, _)| *l == len) {
                let m = CaptureMedian::of(runs);
                if *tool == Tool::None {
                    let _ = writeln!(
                        s,
                        "| {} | {:.0} | {:.0} | - | - | - | - | {} (per offered) | - |",
                        tool.label(),
                        m.offered,
                        m.sent_pps,
                        opt(m.softirq_ns)
                    );
                } else {
                    let _ = writeln!(
                        s,
                        "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {} | {} | {} |",
                        tool.label(),
                        m.offered,
                        m.sent_pps,
                        m.captured,
                        m.lost,
                        m.lost_pct,
                        opt(m.tool_ns),
                        opt(m.softirq_ns),
                        opt(m.cpu_ns)
                    );
                }
            }
        }
        s.push_str(
            "\nPer-packet CPU figures are per captured packet: the tool's process time (CPU 1), and the softirq time of all \
             CPUs, which includes veth's and the IP stack's own receive work (the baseline row shows that per offered packet). \
             veth-b's receive path runs on the sender's CPU 0: when it costs more, trafgen falls behind the asked rate \
             (\"sent at\"), the same work pushing back on the sender that would be drops on a real NIC.\n\n",
        );
        let _ = writeln!(
            s,
            "### Programs under BPF_PROG_TEST_RUN: ns per program run (median of {}, {} runs each)\n",
            self.plan.runs, self.plan.repeat
        );
        s.push_str(
            "| program | frame | ring has room (record copied) | ring full (drop counted) |\n",
        );
        s.push_str("|---|---:|---:|---:|\n");
        for (hook, len, runs) in self.progs {
            let copied = median(runs.iter().map(|r| r.copied_ns).collect());
            let full = median(runs.iter().map(|r| r.ring_full_ns).collect());
            let name = if *hook == "xdp" {
                "xdp_tap"
            } else {
                "tc_tap_ingress"
            };
            let _ = writeln!(
                s,
                "| {name} | {len} B | {} | {} |",
                opt1(copied),
                opt1(full)
            );
        }
        s.push_str(
            "\nThe kernel's own timing of its test-run loop: the program plus a few ns of loop overhead, whole ns per call. \
             The ring (128 MiB) is drained between calls, so records are written to memory that is not in cache.\n",
        );
        s
    }

    fn json(&self, elapsed: Duration) -> Value {
        let captures: Vec<Value> = self
            .captures
            .iter()
            .map(|(tool, len, runs)| {
                json!({
                    "tool": tool.key(),
                    "label": tool.label(),
                    "frame_len": len,
                    "pps": if *len == 64 { self.pps_64 } else { self.pps_1500 },
                    "median": CaptureMedian::of(runs).to_json(),
                    "runs": runs.iter().map(CaptureRun::to_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        let progs: Vec<Value> = self
            .progs
            .iter()
            .map(|(hook, len, runs)| {
                json!({
                    "hook": if *hook == "xdp" { "xdp" } else { "tc-ingress" },
                    "frame_len": len,
                    "repeat": self.plan.repeat,
                    "median": {
                        "ns_per_packet_copied": median(runs.iter().map(|r| r.copied_ns).collect()),
                        "ns_per_packet_ring_full": median(runs.iter().map(|r| r.ring_full_ns).collect()),
                    },
                    "runs": runs.iter().map(|r| json!({"ns_per_packet_copied": r.copied_ns, "ns_per_packet_ring_full": r.ring_full_ns})).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "settings": {
                "seconds": self.plan.seconds,
                "runs": self.plan.runs,
                "repeat": self.plan.repeat,
                "pps": { "64": self.pps_64, "1500": self.pps_1500 },
                "generator": "trafgen -b (rate mode), pinned to CPU 0",
                "tool_cpu": 1,
                "kernel": kernel_release(),
                "cpus": std::thread::available_parallelism().map_or(0, usize::from),
            },
            "elapsed_seconds": elapsed.as_secs_f64(),
            "capture": captures,
            "programs": progs,
        })
    }
}

fn opt1(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"))
}

fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
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
    fn counts_offered_frames_by_length_and_source() {
        let mac = [2, 0, 0, 0, 0, 1];
        let mut ours = vec![0xff; 12];
        ours[6..12].copy_from_slice(&mac);
        let theirs = vec![0xee; 20];
        for little in [true, false] {
            let f = pcap(
                little,
                &[(64, &ours), (64, &theirs), (64, &ours), (100, &ours)],
            );
            assert_eq!(count_frames_in(&f[..], 64, &mac).unwrap(), (2, 4));
        }
        let f = pcap(true, &[(64, &ours)]);
        assert!(
            count_frames_in(&f[..f.len() - 1], 64, &mac).is_err(),
            "a truncated record is an error"
        );
        assert!(count_frames_in(&b"\x0a\x0d\x0d\x0a"[..], 64, &mac).is_err());
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn trafgen_output() {
        let out = "     1 packets to schedule\nRunning! Hang up with ^C!\n\n        3000 packets outgoing\n      180000 bytes outgoing\n";
        assert_eq!(trafgen_sent(out), Some(3000));
        assert_eq!(trafgen_sent("nothing"), None);
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
    fn baseline_is_per_offered_packet() {
        let r = CaptureRun {
            offered: 1000,
            softirq: Duration::from_micros(100),
            ..Default::default()
        };
        assert_eq!(r.per_packet(r.softirq), Some(100.0));
        let m = CaptureMedian::of(&[r]);
        assert_eq!((m.lost, m.cpu_ns, m.tool_ns), (1000.0, None, None));
    }

    #[test]
    fn tool_reports_lose_logs_and_banners() {
        let stderr = "tcpdump: listening on veth-b, link-type EN10MB\n2026-11-27T02:30:08Z  INFO attached\n5 packets captured\n";
        assert_eq!(report_lines(stderr), "5 packets captured");
    }
}
