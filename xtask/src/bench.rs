//! `cargo xtask bench`: the project's performance record. One invocation measures, side by side
//! on the same machine and topology, tap next to tcpdump and xdpdump at the generator's full
//! rate, the programs' own cost under BPF_PROG_TEST_RUN by filter size, and the writer next to
//! `dd`; prints markdown tables, the ratios tap/tcpdump and tap/xdpdump, and a block of targets
//! with PASS/MISS, and writes everything (each run, not only medians) to
//! `target/bench/bench.json`. Every number comes from the run; nothing is typed in.
//!
//! `--quick` (one run, smaller counts) takes about a minute and a half, the default (three runs)
//! about five, plus the build. `--only capture|programs|writer|store`, `--tool`, `--frame-len` and
//! `--matching` narrow it down while tuning (the no-capture baseline always runs).
//!
//! # Capture runs ([`capture`])
//! Two throwaway namespaces joined by veth. The generator ([`traffic`]: AF_PACKET TX ring,
//! qdisc bypass, like trafgen's default mode) sends a fixed count of UDP frames out of veth-a
//! as fast as the kernel takes them, pinned to CPU 0; the capture tool runs in namespace b on
//! veth-b, pinned to CPU 1, and writes pcap to /dev/shm. veth delivers on the sender's CPU, so
//! veth-b's whole receive path (XDP or TC program, AF_PACKET's copy and filter for tcpdump, the
//! IP stack, the ICMP port-unreachable it answers with) runs on CPU 0 in softirq, inside the
//! generator's `send()`: a costlier receive path shows as a lower rate ("sent kpps"), the
//! back-pressure a real NIC would turn into drops. Configurations: no capture, tap with
//! `--hook xdp`, `--hook tc-ingress` and `--hook xdp --consume` (the frames never enter the
//! stack), tcpdump (`-B 262144`), xdpdump (XDP entry, loading its own program); 64 and
//! 1500-byte frames; all frames matching, or 1 in 100 (frame `i` goes to port 5000 + i % 100;
//! every tool but xdpdump, which has no filter, gets `udp dst port 5000`). Runs interleave
//! the configurations, so a slow patch of the shared machine spreads over all of them, and
//! each run rotates the order of every table's tools ([`run_order`]).
//!
//! After the runs, each tap configuration with 64-byte frames runs once more with
//! `--program-stats`: the programs' live ns per run from the kernel's BPF run-time statistics,
//! printed as its own table (not among the medians: the statistics cost each run two clock
//! reads).
//!
//! Per run:
//! - offered: frames the generator sent; selected: those the filter selects; written: selected
//!   frames found in the file (by length, source MAC and port); lost = selected - written.
//! - system CPU: busy time (user + nice + system + irq + softirq) of both CPUs in /proc/stat
//!   over the window (first frame until the tool's CPU time stops growing), per offered frame,
//!   and "added over none", the same minus the no-capture run's. /proc/stat samples at each
//!   timer tick (no IRQ_TIME_ACCOUNTING here): a few percent over a window of seconds.
//! - our threads: the same from the scheduler's nanosecond accounting of the threads doing the
//!   run's work (the generator thread, which runs the receive softirq raised in its context;
//!   ksoftirqd; the tool's threads). On a quiet machine it agrees with /proc/stat within a few
//!   percent (what it misses: interrupt work landing in idle or other tasks); on a busy one
//!   /proc/stat counts others' compilers too and only this figure is usable. Target (a) uses
//!   /proc/stat when the machine was quiet before the runs, this otherwise, and says which.
//! - tool CPU: the capture process's user + system time from the first frame to its exit (all
//!   threads; start-up, for tap loading and verifying its programs, not counted), per written
//!   frame; its voluntary context switches are its wake-ups; max RSS from wait4.
//! - tcpdump is stopped 1.3 s after the last frame, not sooner: libpcap's TPACKET_V3 ring hands
//!   a partly filled block over only when its 1 s timeout passes, and stopping earlier would
//!   lose that block (an artefact, not tcpdump's loss).
//!
//! Everything the bench starts (generator, tools, bench-prog, bench-writer, dd) gets a session
//! and so an autogroup of its own at nice -15 ([`own_sched_group`]): with autogroup scheduling,
//! nice values work only within a session, and the machine is shared with others' builds. With
//! it the generator keeps its quiet-machine rate while two compilers run.
//!
//! # Program runs ([`progs`])
//! `tap bench-prog` (see `tap::testrun`): the kernel's mean time of one program run over a
//! crafted 64-byte frame (and 1500 without a filter), the program loaded as a capture loads it,
//! with no filter and with 1, 64, 1024 and 4096 rules (`host A or host B ...`, and `net A/24 or
//! ...`); a frame to an address of the last rule is timed with the ring having room (record
//! reserved, filled, submitted) and full (reserve fails, counted), a frame to 192.0.2.2 as
//! rejected. The wake-up a live submit may cause (irq_work, then a reschedule of the reader)
//! is not part of it.
//!
//! # Writer runs ([`writer`])
//! `tap bench-writer` (synthetic 1500-byte packets through the real sink, fsync at the end),
//! pcap and pcapng, next to `dd bs=1M conv=fsync`, into /dev/shm and /var/tmp. Each run is
//! preceded by an unmeasured dd of the same size, deleted at once, and the writers take
//! turns going first ([`writer_order`]): whichever writer followed a pause otherwise met memory
//! the VM had handed back to its host and ran at a third of its speed (593 MB/s against 2,900).
//! Even so a run now and then drops to ~750 MB/s for no reason the guest can see: the medians
//! of 3 leave one such run out.
//!
//! # What the numbers said (2 vCPUs under Firecracker, kernel 6.18, November 2026)
//! 64-byte frames, all matching, CPU of our threads added over no capture, per offered frame
//! (median of 3, six full runs): tap --hook tc-ingress 187-259 ns (125-160 on CPU 0, 55-75 in
//! the tool), tcpdump 281-400 (about 200-250 + 85-90), always 0.63-0.69 of tcpdump's; tap
//! --hook xdp 0.95-1.18 of tcpdump's; xdpdump 2.5-3 times tcpdump's; tap --consume about -170
//! (it saves CPU 0 the stack). What got tap there, and what is left:
//! - Wake-ups. The self-IPI `bpf_ringbuf_submit` raises for one (`irq_work_queue`, a VM exit
//!   here) costs tens of µs; with the ring's default policy (wake a reader that caught up) that
//!   was about one per packet. Now the programs wake the reader each time an eighth of the ring
//!   (at most 4 MiB) has been written, or 100 ms after the last wake-up, and the drain polls
//!   every 10 ms: 0.3 wake-ups per 1000 packets at 64 bytes.
//! - No copy in user space. The drain walks the ring's headers and hands the writer ranges of
//!   the ring itself; a range goes back to the kernel (one consumer-position store per batch,
//!   not per record) once written. Copying every record into batches, then into the writer's
//!   buffer, cost ~220 ns per packet in the tool; reading in place, ~50 (the cache misses of
//!   moving records to the other CPU, prefetched ahead; formatting; tmpfs's `write`).
//! - The programs: a selected 64-byte frame costs ~100 ns in TC (~92 in XDP) under
//!   BPF_PROG_TEST_RUN (~95 and ~85 before records were reserved ahead of the filter, see
//!   below). Of that, `bpf_ktime_get_ns` alone is 22 ns on this VM (measured by
//!   stubbing it out), the ring's reserve and submit ~30, the filter ~25 (one helper call to
//!   copy the header window, the graph walk); a capture that fits the window is copied into the
//!   record from there instead of a second helper call. A rejected frame costs ~40 ns (XDP) and
//!   ~53 ns (TC) whatever the filter's size; /24 sets grow with the rule count (a selected
//!   frame: 91 ns with one rule, 137 with 4,096).
//! - XDP on veth costs more than TC: with a program attached veth moves frames through its own
//!   NAPI ring and rebuilds or copies each skb (`veth_xdp_rcv_skb`, `skb_copy_ubufs` for the
//!   generator's zero-copy frames) before the program runs, ~120 ns. On a NIC with native XDP
//!   the order is the other way round; on veth, tap --hook tc-ingress is the cheaper tap.
//! - Every frame that enters the stack costs the ICMP port-unreachable path (route lookups
//!   before the rate limit): about a quarter of CPU 0 in every configuration but `--consume`,
//!   which is why consume mode runs faster than no capture at all, and why 1500-byte frames
//!   under consume are the writer's hardest case (some 950 kpps, over 1.4 GB/s).
//! - 1500-byte frames: what looked like tmpfs stalling now and then (`copy_folio_from_iter_atomic`
//!   taking the whole CPU) is the VM's memory. The guest hands freed memory back to the host
//!   (virtio-balloon free page reporting, a couple of seconds after it is freed), and the host
//!   backs a page again only when the guest next writes it, at the cost of a host page fault.
//!   `dd` of 4 GB into /dev/shm: 2.1 GB/s, the same again at once 2.8 GB/s, and again 10 s later
//!   0.6 GB/s. That is the "0.5 GB/s per process" the issue measured. A capture file grows into
//!   such memory: runs of 3 million 1500-byte frames (4.5 GB, 4 s at full rate) lost 23-45%
//!   with tap --hook tc-ingress in three tries, its writer at 1.3-2.4 µs per frame, and 27%
//!   with tcpdump in one. The bench's runs (1 million frames) last about as long as tap's 256 MiB ring
//!   and tcpdump's `-B` can absorb the difference; with a 32 MiB ring tap lost 1-7% in such
//!   runs, with 256 MiB nothing: hence the ring size above. (Writing and deleting a few GB first
//!   does not help: the pages go back to the host before the runs reach them.) The tool that
//!   writes first after the no-capture run meets such memory: tap --hook xdp, always that tool
//!   in a fixed order, lost 12-17% in such runs, and tap --hook tc-ingress 13% the one time it
//!   came first, where the tools after them lost nothing; first after a 12 s pause, tcpdump lost
//!   16% and 12% in two tries, tap --hook tc-ingress 0 and 12%. Hence the rotation
//!   ([`run_order`]).
//! - Live, the programs cost more than under test-run: the ring's cache lines are not in the
//!   receiving CPU's cache (the reader on the other CPU took them, or the ring wrapped past the
//!   cache), and the submit's locked exchange waits for every store into them. Measured with
//!   the kernel's BPF run-time statistics (the "programs live" table; the statistics add their
//!   own clock reads, so compare such runs with each other): TC was 156-160 ns per 64-byte
//!   frame; reserving small
//!   records before the filter when most packets are kept (a per-CPU predictor) lets the
//!   filter's work overlap that wait: 145-152 ns. Under test-run the same change reads ~5 ns
//!   worse (99 against 94 for a selected frame), the ring lines arriving quickly there; with
//!   1% matching the predictor keeps the plain path (75-82 ns live, against 74-80).
//! - Tried without gain: a smaller ring to keep records in cache (4 MiB, 32 MiB and 256 MiB
//!   cost the same at 64 bytes within the noise), the walk stopping one step earlier.
//! - Tried as a prototype and left out: staging records per CPU (a 4 KiB per-CPU buffer, one
//!   `bpf_ringbuf_output` per 36 records). `perf` put the ring's part at ~20 ns per frame less,
//!   but it gives up the ring's arrival order across CPUs and needs a timer to flush a CPU that
//!   goes quiet: not worth it for ~10% of tap's cost.
//! - The hook and the filter alone, live: with 1% of frames matching, tap --hook tc-ingress
//!   adds ~100 ns per frame over no capture where test-run puts the rejecting program at 54.
//!   `perf` on CPU 0 (TC, 1% matching): the program ~27 ns, the graph walk's `bpf_loop`
//!   callback ~24, `bpf_skb_load_bytes` ~7; the hottest instructions are the loads of the
//!   graph node and the port set's entry, just after the callback returns: the filter's tables
//!   leave the cache between frames. A walk with no callback (a `may_goto` loop inlined into
//!   the program, the window's length kept in map memory so the verifier's states repeat)
//!   loaded and measured the same under test-run (rejected 54 ns in TC, 43 in XDP), with twice
//!   the program size: not kept.
//! - Why half of tcpdump's CPU is out of reach on this machine: tcpdump adds ~300-345 ns per
//!   64-byte frame, so half is ~150-175. tap's kernel part is ~140-160 (of which a rejecting
//!   hook and filter ~100 live), and its tool ~70, half of which is tmpfs's `write` of the 80
//!   bytes per frame into fresh pages (tcpdump writes the same bytes). With no filter at all (73
//!   against 100 ns under test-run) tap would still add ~185-200.

mod capture;
mod evidence;
mod printing;
mod progs;
mod report;
mod stat;
mod store_cpu;
mod traffic;
mod writer;

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use self::{
    capture::{Bed, FRAME_LENS, LiveProgram, Matching, ShmDir, Tool},
    progs::ProgConfig,
    report::{Capture, Results},
    writer::{PLACES, Writer},
};
use crate::util;

#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Runs per configuration; the tables show medians.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Frames per capture run with 64-byte frames.
    #[arg(long, default_value_t = 2_000_000)]
    pub frames_64: u64,
    /// Frames per capture run with 1500-byte frames.
    #[arg(long, default_value_t = 1_000_000)]
    pub frames_1500: u64,
    /// Program runs per BPF_PROG_TEST_RUN measurement.
    #[arg(long, default_value_t = 1_000_000)]
    pub repeat: u64,
    /// Bytes each writer run writes.
    #[arg(long, default_value_t = 1_000_000_000)]
    pub writer_bytes: u64,
    /// A quick look (under 3 minutes): one run per configuration, fewer frames and program
    /// runs, smaller writer runs.
    #[arg(long)]
    pub quick: bool,
    /// Measure only these parts (repeatable; default: all).
    #[arg(long, value_enum)]
    pub only: Vec<Part>,
    /// Capture runs with only these tools (repeatable; the no-capture baseline always runs).
    #[arg(long, value_enum)]
    pub tool: Vec<Tool>,
    /// Capture runs with only these frame lengths (repeatable: 64, 1500).
    #[arg(long, value_parser = parse_frame_len)]
    pub frame_len: Vec<usize>,
    /// Capture runs with only these shares of matching frames (repeatable).
    #[arg(long, value_enum)]
    pub matching: Vec<Matching>,
    /// Where to write the JSON results (default: target/bench/bench.json).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// A part of the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Part {
    /// Capture runs on veth.
    Capture,
    /// BPF_PROG_TEST_RUN by filter size.
    Programs,
    /// The writer next to dd.
    Writer,
    /// Alert to closed evidence file (after = 0), and the pre-trigger memory's CPU cost.
    Evidence,
    /// The packet printer's cost per packet.
    Printing,
    /// `--store` against plain pcapng: writer CPU per packet by packet size and flows.
    Store,
}

/// The settings after `--quick`.
pub(crate) struct Plan {
    pub runs: usize,
    pub tools: Vec<Tool>,
    pub frame_lens: Vec<usize>,
    pub matchings: Vec<Matching>,
    pub count_64: u64,
    pub count_1500: u64,
    pub repeat: u64,
    pub writer_bytes: u64,
    pub parts: Vec<Part>,
}

impl Plan {
    fn from(args: &BenchArgs) -> Result<Self> {
        let parts = if args.only.is_empty() {
            vec![
                Part::Capture,
                Part::Programs,
                Part::Writer,
                Part::Evidence,
                Part::Printing,
                Part::Store,
            ]
        } else {
            args.only.clone()
        };
        let mut tools: Vec<Tool> = pick(&Tool::ALL, &args.tool);
        if !tools.contains(&Tool::None) {
            tools.insert(0, Tool::None);
        }
        let (tools, frame_lens, matchings) = (
            tools,
            pick(&FRAME_LENS, &args.frame_len),
            pick(&Matching::ALL, &args.matching),
        );
        let plan = if args.quick {
            Plan {
                runs: 1,
                tools,
                frame_lens,
                matchings,
                count_64: 500_000,
                count_1500: 250_000,
                repeat: 200_000,
                writer_bytes: 250_000_000,
                parts,
            }
        } else {
            Plan {
                runs: args.runs,
                tools,
                frame_lens,
                matchings,
                count_64: args.frames_64,
                count_1500: args.frames_1500,
                repeat: args.repeat,
                writer_bytes: args.writer_bytes,
                parts,
            }
        };
        if plan.runs == 0 || plan.repeat == 0 || plan.count_64 == 0 || plan.count_1500 == 0 {
            bail!("--runs, --repeat and the frame counts must be at least 1");
        }
        Ok(plan)
    }

    fn count(&self, len: usize) -> u64 {
        if len == 64 {
            self.count_64
        } else {
            self.count_1500
        }
    }

    fn has(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }
}

/// The text written to `/proc/self/autogroup` by [`own_sched_group`]: [`capture::NICE`].
const AUTOGROUP_NICE: &[u8] = b"-15";

/// Makes `cmd` start in a session, and so a scheduling group, of its own, with the group's nice
/// value at [`capture::NICE`].
///
/// With autogroup scheduling (this kernel's default), CPU time is shared fairly between
/// sessions first and by nice value only within one: a process's own nice value does nothing
/// against a compiler another session runs. A new session gets a new group, whose nice value
/// `/proc/self/autogroup` sets; on a shared machine others' work then gets a few percent of a
/// CPU while ours is busy, instead of half. The children lose the controlling terminal: a
/// Ctrl-C reaches only xtask, which stops them.
pub(crate) fn own_sched_group(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: between fork and exec the closure calls only async-signal-safe functions (setsid,
    // open, write, close) on static data, and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = libc::open(
                c"/proc/self/autogroup".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = libc::write(fd, AUTOGROUP_NICE.as_ptr().cast(), AUTOGROUP_NICE.len());
            libc::close(fd);
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// `xtask bench-generator` (internal: the bench starts it).
pub(crate) fn generator_main() -> Result<()> {
    traffic::child_main()
}

fn parse_frame_len(s: &str) -> Result<usize, String> {
    s.parse()
        .ok()
        .filter(|l| FRAME_LENS.contains(l))
        .ok_or_else(|| format!("{s} is not one of {FRAME_LENS:?}"))
}

/// `asked`, or `all` when nothing was asked.
fn pick<T: Clone>(all: &[T], asked: &[T]) -> Vec<T> {
    if asked.is_empty() {
        all.to_vec()
    } else {
        asked.to_vec()
    }
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
pub(crate) fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        f64::midpoint(values[n / 2 - 1], values[n / 2])
    })
}

pub(crate) fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    util::require_root("cargo xtask bench")?;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpus < 2 {
        bail!(
            "the bench needs two CPUs (one for the generator, one for the capture tool); this machine has {cpus}"
        );
    }
    let plan = Plan::from(args)?;
    let mut needed = vec!["taskset"];
    if plan.has(Part::Capture) {
        needed.extend(["tcpdump", "xdpdump"]);
    }
    if plan.has(Part::Writer) {
        needed.push("dd");
    }
    for tool in needed {
        if !util::have(tool) {
            bail!("{tool} is missing: run cargo xtask setup");
        }
    }
    util::catch_interrupts();
    let tap = root.join("target/release/tap");
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| root.join("target/bench/bench.json"));
    let started = Instant::now();
    let mut results = Results::default();
    let shm = ShmDir::new()?;

    if plan.has(Part::Capture) {
        capture_runs(&plan, &tap, &shm.0, &mut results)?;
    }
    if plan.has(Part::Programs) {
        prog_runs(&plan, &tap, &shm.0, &mut results)?;
    }
    if plan.has(Part::Writer) {
        writer_runs(&plan, &tap, &mut results)?;
    }
    if plan.has(Part::Store) {
        eprintln!("bench: store writer CPU against plain pcapng");
        results.store_cpu = store_cpu::runs(&tap, plan.runs)?;
    }
    if plan.has(Part::Evidence) {
        eprintln!("bench: evidence latency and the pre-trigger memory's cost");
        results.evidence = evidence::runs(&tap, plan.runs)?;
    }

    if plan.has(Part::Printing) {
        let packets = if args.quick { 500_000 } else { 2_000_000 };
        eprintln!("bench: printing path, {packets} packets per measurement");
        let runs = (0..plan.runs)
            .map(|_| printing::run(&tap, packets))
            .collect::<Result<Vec<_>>>()?;
        results.printing = printing::gather(&runs);
    }

    let targets = report::targets(&results);
    println!("{}", report::markdown(&results, &plan));
    println!("{}", report::targets_text(&targets));
    let json = report::json(&results, &plan, &targets, started.elapsed());
    if let Some(dir) = json_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    println!(
        "JSON: {} ({:.0} s)",
        json_path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The order of the capture configurations in each run: the tables in turn (frame length,
/// matching); within a table the no-capture run first, then the tools rotated by one per run.
///
/// The first tool to write after the no-capture run (and the small files of the table before)
/// writes into memory the VM has handed back to its host meanwhile, and pays a host page fault
/// on every page (see "What the numbers said"). With 1500-byte frames that alone costs the
/// first tool 10-17% of the frames: in a fixed order always tap --hook xdp. Rotated, each tool
/// is first in one run of several, and the medians leave that run out.
fn run_order(captures: &[Capture], runs: usize) -> Vec<Vec<usize>> {
    let mut tables: Vec<Vec<usize>> = Vec::new();
    for (i, c) in captures.iter().enumerate() {
        match tables.last_mut() {
            Some(t) if captures[t[0]].len == c.len && captures[t[0]].matching == c.matching => {
                t.push(i);
            }
            _ => tables.push(vec![i]),
        }
    }
    (0..runs)
        .map(|run| {
            tables
                .iter()
                .flat_map(|t| {
                    let (none, tools): (Vec<usize>, Vec<usize>) =
                        t.iter().partition(|&&i| captures[i].tool == Tool::None);
                    let k = if tools.is_empty() {
                        0
                    } else {
                        run % tools.len()
                    };
                    none.into_iter()
                        .chain(tools[k..].iter().chain(&tools[..k]).copied())
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .collect()
}

fn capture_runs(plan: &Plan, tap: &Path, dir: &Path, results: &mut Results) -> Result<()> {
    let configs: Vec<(usize, Matching, Tool)> = plan
        .frame_lens
        .iter()
        .flat_map(|&len| plan.matchings.iter().map(move |&m| (len, m)))
        .flat_map(|(len, m)| plan.tools.iter().map(move |&t| (len, m, t)))
        .collect();
    eprintln!(
        "bench: {} capture configurations x {} runs ({} and {} frames per run)",
        configs.len(),
        plan.runs,
        plan.count_64,
        plan.count_1500
    );
    let topo = util::topology()?;
    let bed = Bed::new(&topo, tap, dir)?;
    results.captures = configs
        .iter()
        .map(|&(len, matching, tool)| Capture {
            tool,
            len,
            matching,
            runs: Vec::new(),
            live: Vec::new(),
        })
        .collect();
    // Runs interleave the configurations, so a slow patch of the (shared) machine spreads over
    // all of them instead of hitting one; and each run starts every table's tools at the next
    // one, so no tool always comes first after the no-capture run (see [`run_order`]).
    let order = run_order(&results.captures, plan.runs);
    for (run, indices) in order.iter().enumerate() {
        for &i in indices {
            let c = &mut results.captures[i];
            let r = bed.run(c.tool, c.len, c.matching, plan.count(c.len), run, false)?;
            eprintln!(
                "bench: run {}/{} {:>4} B {:<4} {:<26} {:>5.0} kpps written {:>8}/{:<8} system {:>5} ours {:>5} ns/pkt tool {:>5} ns/written{}",
                run + 1,
                plan.runs,
                c.len,
                c.matching.key(),
                c.tool.label(),
                r.send.pps() / 1e3,
                r.written,
                r.selected,
                r.system_ns().map_or("-".into(), |v| format!("{v:.0}")),
                r.ours_ns().map_or("-".into(), |v| format!("{v:.0}")),
                r.tool_ns().map_or("-".into(), |v| format!("{v:.0}")),
                if r.background > 0.1 {
                    format!(" (machine {:.0}% busy before)", 100.0 * r.background)
                } else {
                    String::new()
                }
            );
            c.runs.push(r);
        }
    }
    // One more run of each tap configuration with 64-byte frames, tap timing its programs
    // (`--program-stats`): their live cost, which BPF_PROG_TEST_RUN cannot show (live, the
    // ring's cache lines are on the reader's CPU).
    for c in results
        .captures
        .iter_mut()
        .filter(|c| c.tool.is_tap() && c.len == 64)
    {
        let r = bed.run(
            c.tool,
            c.len,
            c.matching,
            plan.count(c.len),
            plan.runs,
            true,
        )?;
        c.live = LiveProgram::parse(&r.tool_report);
        if c.live.is_empty() {
            bail!(
                "{} reported no program cost with --program-stats:\n{}",
                c.tool.label(),
                r.tool_report
            );
        }
        for p in &c.live {
            eprintln!(
                "bench: programs live {:>4} B {:<4} {:<26} {}: {:.1} ns per run",
                c.len,
                c.matching.key(),
                c.tool.label(),
                p.name,
                p.ns_per_run
            );
        }
    }
    Ok(())
}

fn prog_runs(plan: &Plan, tap: &Path, dir: &Path, results: &mut Results) -> Result<()> {
    let configs = ProgConfig::all();
    eprintln!(
        "bench: {} program configurations x {} runs",
        configs.len(),
        plan.runs
    );
    let mut all: Vec<(ProgConfig, Vec<progs::ProgRun>)> =
        configs.into_iter().map(|c| (c, Vec::new())).collect();
    for _ in 0..plan.runs {
        for (config, runs) in &mut all {
            let r = progs::run(tap, dir, config, plan.repeat)?;
            eprintln!(
                "bench: program {:<14} {:<14} {:>4} B: copied {} ring full {} rejected {} over budget {}{}",
                config.program(),
                format!("{}{}", config.rules.label(), config.extra.label()),
                config.frame_len,
                r.copied_ns.map_or("-".into(), |v| format!("{v:.1}")),
                r.ring_full_ns.map_or("-".into(), |v| format!("{v:.1}")),
                r.rejected_ns.map_or("-".into(), |v| format!("{v:.1}")),
                r.over_budget_ns.map_or("-".into(), |v| format!("{v:.1}")),
                r.refused
                    .as_ref()
                    .map_or(String::new(), |why| format!(" refused: {why}")),
            );
            runs.push(r);
        }
    }
    results.progs = all;
    Ok(())
}

/// The writers of run `run` at each place: rotated by one per run, like the tools of a capture
/// table ([`run_order`]), because the first writer of a place meets the most memory the VM has
/// handed back to its host.
fn writer_order(run: usize) -> impl Iterator<Item = Writer> {
    let n = Writer::ALL.len();
    (0..n).map(move |k| Writer::ALL[(k + run) % n])
}

fn writer_runs(plan: &Plan, tap: &Path, results: &mut Results) -> Result<()> {
    eprintln!("bench: writer runs, {} bytes each", plan.writer_bytes);
    let scratch: Vec<writer::Scratch> = PLACES
        .iter()
        .map(|(p, _)| writer::Scratch::new(p))
        .collect::<Result<_>>()?;
    let mut all: Vec<(&'static str, Writer, Vec<f64>)> = PLACES
        .iter()
        .flat_map(|(p, _)| Writer::ALL.map(|w| (*p, w, Vec::new())))
        .collect();
    for run in 0..plan.runs {
        for (pi, (place, _)) in PLACES.iter().enumerate() {
            for w in writer_order(run) {
                // Unmeasured: so that the run after it writes into memory the guest has just
                // freed, as every run then does, rather than into memory the VM has handed back
                // to its host meanwhile (a host page fault per page).
                writer::run(tap, &scratch[pi], Writer::Dd, plan.writer_bytes)?;
                let rate = writer::run(tap, &scratch[pi], w, plan.writer_bytes)?;
                eprintln!(
                    "bench: writer {place:<9} {:<34} {rate:>6.0} MB/s",
                    w.label()
                );
                all.iter_mut()
                    .find(|(p, aw, _)| p == place && *aw == w)
                    .expect("every place and writer has an entry")
                    .2
                    .push(rate);
            }
        }
    }
    results.writers = all;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_writer_goes_first_once_in_as_many_runs_as_writers() {
        let n = Writer::ALL.len();
        let firsts: Vec<Writer> = (0..n)
            .map(|run| writer_order(run).next().expect("writers"))
            .collect();
        for w in Writer::ALL {
            assert_eq!(firsts.iter().filter(|&&f| f == w).count(), 1, "{w:?}");
        }
        for run in 0..n {
            let order: Vec<Writer> = writer_order(run).collect();
            assert_eq!(order.len(), n);
            for w in Writer::ALL {
                assert_eq!(
                    order.iter().filter(|&&o| o == w).count(),
                    1,
                    "run {run}: {w:?}"
                );
            }
        }
    }

    #[test]
    fn each_run_rotates_the_tools_of_each_table() {
        let capture = |len, tool| Capture {
            tool,
            len,
            matching: Matching::All,
            runs: Vec::new(),
            live: Vec::new(),
        };
        let captures: Vec<Capture> = [64, 1500]
            .into_iter()
            .flat_map(|len| {
                [Tool::None, Tool::TapXdp, Tool::TapTc, Tool::Tcpdump].map(|t| capture(len, t))
            })
            .collect();
        let order = run_order(&captures, 3);
        // The no-capture run first, then the tools rotated: each tool first in one run.
        assert_eq!(
            order,
            [
                vec![0, 1, 2, 3, 4, 5, 6, 7],
                vec![0, 2, 3, 1, 4, 6, 7, 5],
                vec![0, 3, 1, 2, 4, 7, 5, 6],
            ]
        );
    }

    #[test]
    fn autogroup_nice_is_the_bench_nice() {
        assert_eq!(
            std::str::from_utf8(AUTOGROUP_NICE).unwrap(),
            capture::NICE.to_string()
        );
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
