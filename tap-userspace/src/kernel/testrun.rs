//! A BPF_PROG_TEST_RUN harness: the kernel programs of [`crate::BPF_OBJECT`] run over crafted
//! frames, with no interface involved (kernel 4.12+; frags-capable XDP test runs 5.18+).
//!
//! The program tests feed a frame and check the ring and the counters; `tap bench-prog` (and so
//! `cargo xtask bench`) times the programs with the test run's `repeat`.
//!
//! The object is loaded the way a capture loads it ([`loader::load`]: same globals, maps and
//! filter), but nothing is attached. A test run executes the program on the calling CPU; in the
//! kernel's eyes the packet arrived on the loopback device of the caller's namespace.

use std::time::Duration;

use aya::programs::{Program, ProgramError, SchedClassifier, TestRun, TestRunOptions, Xdp};
use tap_common::{
    config::{DEFAULT_SNAPLEN, MAX_SNAPLEN},
    event::PacketHeader,
    frame,
};

use crate::{
    filter::maps::FilterImage,
    kernel::batch::{RecordError, parse_record},
    kernel::counters::KernelCounters,
    kernel::counters::read_counters,
    kernel::loader::LoadError,
    kernel::loader::{self, Attached, LoadSpec, Maps},
    model::{Hook, XdpMode},
};

/// Interface a test run's packet arrives on: the loopback device of the caller's namespace.
pub const TEST_RUN_IFINDEX: u32 = 1;

/// Shortest frame the kernel test-runs: an Ethernet header, in bytes.
pub const MIN_TEST_FRAME: usize = 14;

/// Shortest frame [`udp_frame`] builds: Ethernet + IPv4 + UDP headers, in bytes.
pub const MIN_UDP_FRAME: usize = frame::MIN_UDP4;
/// Longest: an IPv4 packet of 65,535 bytes in an Ethernet frame.
pub const MAX_UDP_FRAME: usize = frame::MAX_UDP4;

/// Size of the kernel's header in front of each ring record (`BPF_RINGBUF_HDR_SZ`), in bytes.
const RINGBUF_HDR_LEN: usize = 8;

/// Errors of the test-run harness. The large aya errors are boxed: a test run returns often.
#[derive(Debug, thiserror::Error)]
pub enum TestRunError {
    #[error(transparent)]
    Load(Box<LoadError>),
    #[error("BPF_PROG_TEST_RUN of {program} failed: {source}")]
    Run {
        program: &'static str,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("a frame of {len} bytes is out of range: use {min} to {max}")]
    FrameLen { len: usize, min: usize, max: usize },
    #[error("malformed ring record: {0}")]
    Record(#[source] RecordError),
    #[error("the flow table: {0}")]
    Map(#[source] Box<aya::maps::MapError>),
    #[error("{what}: expected {expected}, got {got}")]
    Unexpected {
        what: &'static str,
        expected: u64,
        got: u64,
    },
}

impl From<LoadError> for TestRunError {
    fn from(e: LoadError) -> Self {
        Self::Load(Box::new(e))
    }
}

/// What to load.
#[derive(Debug, Clone)]
pub struct RunnerSpec {
    pub hook: Hook,
    /// Snap length in bytes, 1..=[`MAX_SNAPLEN`].
    pub snaplen: u32,
    /// Ring buffer size in bytes (a power of two, at least a page).
    pub ring_size: u32,
    pub filter: FilterImage,
    /// Count per interface and hook too, as for a pcapng output or the agent.
    pub per_interface: bool,
    /// The per-flow budget (`--flow-budget`), if any.
    pub flow_budget: Option<crate::model::FlowBudget>,
    /// Decapsulation bits (`tap_common::config::decap`; VXLAN on its IANA port).
    pub decap: u32,
}

impl RunnerSpec {
    /// The program serving `hook`, no filter, the default snap length and a 16 MiB ring.
    pub fn new(hook: Hook) -> Self {
        Self {
            hook,
            snaplen: DEFAULT_SNAPLEN,
            ring_size: 16 << 20,
            filter: FilterImage::default(),
            per_interface: false,
            flow_budget: None,
            decap: 0,
        }
    }
}

/// One test run's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunResult {
    /// The program's verdict (`XDP_PASS`, `TC_ACT_UNSPEC`, ...).
    pub return_value: u32,
    /// The kernel's mean time of one repetition, truncated to whole nanoseconds.
    pub per_run: Duration,
}

/// A ring record, copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub header: PacketHeader,
    pub data: Vec<u8>,
}

/// The state of the ring while [`ProgRunner::time`] runs the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingState {
    /// The ring has room: every run reserves a record, copies the packet and submits it (the
    /// ring is drained between test-run calls, outside the timed loop).
    Room,
    /// The ring is full: every run's reserve fails and counts `RING_FULL` (a kernel drop).
    Full,
    /// The filter rejects the frame: every run classifies it and returns, the ring untouched.
    Unused,
    /// The filter selects the frame and its flow has used its budget: every run looks the flow
    /// up, counts the packet over budget and returns, the ring untouched.
    OverBudget,
}

/// The cost of one program run, as the kernel's test-run timer measures it.
///
/// `ns_per_run` is the mean over `runs` repetitions of the time the kernel measures around its
/// repeat loop (`bpf_test_run`): the program itself plus the loop's few nanoseconds of
/// per-repetition overhead (disabling bottom halves, setting the run context). The syscall, the
/// one-off setup of the skb or XDP buffer and the user-space draining of the ring are outside
/// it. The kernel reports whole nanoseconds per test-run call; calls are averaged weighted by
/// their repetitions, so the resolution is about 1 ns.
///
/// Not included either: waking the reader. A submit wakes user space only when the reader has
/// caught up (an irq_work, then a wake-up of the reader's task); in a live capture at moderate
/// rates that can happen for many packets and cost more than the program, while within one
/// test-run call the reader never catches up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub ring: RingState,
    pub frame_len: usize,
    pub runs: u64,
    pub ns_per_run: f64,
}

/// A loaded (not attached) program of the object, its ring and its counters.
pub struct ProgRunner {
    loaded: Attached,
    maps: Maps,
    spec: RunnerSpec,
}

impl std::fmt::Debug for ProgRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgRunner")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl ProgRunner {
    /// Loads the object and the program for `spec.hook`. Needs root (or CAP_BPF + CAP_NET_ADMIN).
    pub fn load(spec: RunnerSpec) -> Result<Self, TestRunError> {
        let hooks = [spec.hook];
        let load_spec = LoadSpec {
            interfaces: &[],
            hooks: &hooks,
            xdp_mode: XdpMode::Auto,
            snaplen: spec.snaplen,
            ring_size: spec.ring_size,
            xdp_program: None,
            filter: spec.filter.clone(),
            sample: 1,
            rate_per_cpu: 0,
            decap: spec.decap,
            vxlan_port: tap_common::config::VXLAN_PORT,
            consume: false,
            per_interface: spec.per_interface,
            flow_budget: spec.flow_budget,
        };
        let (ebpf, mut maps) = loader::load(&load_spec)?;
        // Test runs count on the loopback interface, as a capture counts on an attached one.
        if let Some(slots) = maps.slots.as_mut() {
            slots.assign(TEST_RUN_IFINDEX);
        }
        let loaded = loader::load_program(ebpf, spec.hook, None)?;
        Ok(Self { loaded, maps, spec })
    }

    pub fn hook(&self) -> Hook {
        self.spec.hook
    }

    fn program_name(&self) -> &'static str {
        loader::program_name(self.spec.hook, None)
    }

    /// Runs the program over `frame` `repeat` times (at least once) in one test-run call. The
    /// kernel takes frames of up to a page less its headroom for TC, and for XDP beyond that in
    /// fragments (5.18+), up to about 70 KiB.
    pub fn run(&self, frame: &[u8], repeat: u32) -> Result<RunResult, TestRunError> {
        check_frame_len(frame.len(), MIN_TEST_FRAME, MAX_SNAPLEN as usize)?;
        let name = self.program_name();
        let program = self.loaded.ebpf().program(name).ok_or(LoadError::Missing {
            kind: "program",
            name: name.into(),
        })?;
        let opts = TestRunOptions {
            data_in: Some(frame),
            repeat: repeat.max(1),
            ..Default::default()
        };
        let result = match program {
            Program::Xdp(p) => <Xdp as TestRun>::test_run(p, opts),
            Program::SchedClassifier(p) => <SchedClassifier as TestRun>::test_run(p, opts),
            _ => unreachable!("the runner loads XDP or TC programs only"),
        }
        .map_err(|source| TestRunError::Run {
            program: name,
            source: Box::new(source),
        })?;
        Ok(RunResult {
            return_value: result.return_value,
            per_run: result.duration,
        })
    }

    /// The ring, to read records directly.
    pub fn ring(&self) -> &crate::kernel::ring::Ring {
        &self.maps.ring.ring
    }

    /// The per-CPU counters, summed.
    pub fn counters(&self) -> KernelCounters {
        read_counters(&self.maps.counters)
    }

    /// The flow budget's table (with a budget).
    pub fn flows(&mut self) -> Option<&mut crate::kernel::flow::FlowTable> {
        self.maps.flows.as_mut()
    }

    /// The per-interface counters of [`TEST_RUN_IFINDEX`], one entry per hook.
    pub fn interface_counters(&self) -> Vec<crate::kernel::ifstats::IfCounts> {
        self.maps.interfaces.read()
    }

    /// Takes every record out of the ring, checking each. All are consumed even when one is
    /// malformed; the first such error is returned.
    pub fn take_records(&mut self) -> Result<Vec<Record>, TestRunError> {
        let mut records = Vec::new();
        let mut first_error = None;
        self.maps
            .ring
            .ring
            .consume(|item| match parse_record(item) {
                Ok((header, data)) => records.push(Record {
                    header,
                    data: data.to_vec(),
                }),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            });
        match first_error {
            Some(e) => Err(TestRunError::Record(e)),
            None => Ok(records),
        }
    }

    /// Consumes every record in the ring; returns how many there were.
    pub fn discard_records(&mut self) -> u64 {
        self.maps.ring.ring.consume(|_| ()) as u64
    }

    /// Size in bytes of the ring slot one record of `frame` takes (record plus the kernel's
    /// header, 8-byte aligned). Runs the program once; leaves the ring empty.
    fn slot_len(&mut self, frame: &[u8]) -> Result<usize, TestRunError> {
        self.discard_records();
        self.run(frame, 1)?;
        let mut len = None;
        self.maps.ring.ring.consume(|item| {
            len.get_or_insert(item.len());
        });
        self.discard_records();
        let len = len.ok_or(TestRunError::Unexpected {
            what: "records after one run",
            expected: 1,
            got: 0,
        })?;
        Ok(ring_slot_len(len))
    }

    /// Times `runs` runs of the program over `frame` with the ring in state `ring`, and checks
    /// with the counters that every run took the intended path.
    pub fn time(
        &mut self,
        frame: &[u8],
        runs: u64,
        ring: RingState,
    ) -> Result<Timing, TestRunError> {
        match ring {
            RingState::Unused | RingState::OverBudget => {
                return self.time_uncopied(frame, runs, ring);
            }
            RingState::Room | RingState::Full => {}
        }
        let slot = self.slot_len(frame)?;
        let capacity = (self.spec.ring_size as usize / slot) as u64;
        let mut total_ns = 0u128;
        let start = match ring {
            RingState::Unused | RingState::OverBudget => unreachable!("handled above"),
            RingState::Room => {
                let start = self.counters();
                // Half the ring per call leaves a margin for anything the estimate missed; the
                // counters below catch a run that found the ring full anyway.
                for chunk in chunks(runs, (capacity / 2).max(1)) {
                    let result = self.run(frame, chunk)?;
                    total_ns += result.per_run.as_nanos() * u128::from(chunk);
                    let drained = self.discard_records();
                    if drained != u64::from(chunk) {
                        return Err(TestRunError::Unexpected {
                            what: "records per call",
                            expected: chunk.into(),
                            got: drained,
                        });
                    }
                }
                start
            }
            RingState::Full => {
                let before = self.counters();
                self.run(frame, u32::try_from(capacity + 1).unwrap_or(u32::MAX))?;
                let start = self.counters();
                if start.ring_full == before.ring_full {
                    return Err(TestRunError::Unexpected {
                        what: "ring-full drops while filling the ring",
                        expected: 1,
                        got: 0,
                    });
                }
                for chunk in chunks(runs, u64::from(u32::MAX)) {
                    let result = self.run(frame, chunk)?;
                    total_ns += result.per_run.as_nanos() * u128::from(chunk);
                }
                start
            }
        };
        let after = self.counters();
        self.discard_records();
        let (copied, dropped) = (
            after.copied - start.copied,
            after.ring_full - start.ring_full,
        );
        let (want_copied, want_dropped) = match ring {
            RingState::Room => (runs, 0),
            RingState::Full => (0, runs),
            RingState::Unused | RingState::OverBudget => unreachable!("handled above"),
        };
        if copied != want_copied {
            return Err(TestRunError::Unexpected {
                what: "records copied",
                expected: want_copied,
                got: copied,
            });
        }
        if dropped != want_dropped {
            return Err(TestRunError::Unexpected {
                what: "ring-full drops",
                expected: want_dropped,
                got: dropped,
            });
        }
        Ok(Timing {
            ring,
            frame_len: frame.len(),
            runs,
            ns_per_run: mean_ns(total_ns, runs),
        })
    }

    /// Whether the loaded filter selects `frame`: one run, then the ring is emptied.
    pub fn matches(&mut self, frame: &[u8]) -> Result<bool, TestRunError> {
        self.discard_records();
        let before = self.counters();
        self.run(frame, 1)?;
        let after = self.counters();
        self.discard_records();
        Ok(after.matched > before.matched)
    }

    /// Times `runs` runs over a frame that is never copied: a selected frame whose flow is over
    /// its budget ([`RingState::OverBudget`]) or one the filter rejects ([`RingState::Unused`]),
    /// checking with the counters that every run was counted so and no record was written.
    fn time_uncopied(
        &mut self,
        frame: &[u8],
        runs: u64,
        ring: RingState,
    ) -> Result<Timing, TestRunError> {
        self.discard_records();
        let start = self.counters();
        let mut total_ns = 0u128;
        for chunk in chunks(runs, u64::from(u32::MAX)) {
            let result = self.run(frame, chunk)?;
            total_ns += result.per_run.as_nanos() * u128::from(chunk);
        }
        let after = self.counters();
        let records = self.discard_records();
        let counted = if ring == RingState::OverBudget {
            (
                "packets over budget",
                runs,
                after.over_budget - start.over_budget,
            )
        } else {
            ("packets seen", runs, after.seen - start.seen)
        };
        let matched = if ring == RingState::OverBudget {
            runs
        } else {
            0
        };
        let checks = [
            ("packets matched", matched, after.matched - start.matched),
            counted,
            ("records", 0, records),
        ];
        for (what, expected, got) in checks {
            if got != expected {
                return Err(TestRunError::Unexpected {
                    what,
                    expected,
                    got,
                });
            }
        }
        Ok(Timing {
            ring,
            frame_len: frame.len(),
            runs,
            ns_per_run: mean_ns(total_ns, runs),
        })
    }
}

/// What `tap bench-prog` times.
#[derive(Debug, Clone)]
pub struct BenchSpec {
    pub hook: Hook,
    /// Length of the test frames in bytes.
    pub frame_len: usize,
    /// Program runs per measurement.
    pub repeat: u64,
    /// The filter the program applies (none: every frame matches).
    pub filter: FilterImage,
    /// IPv4 destinations: one [`udp_frame_to`] frame each, timed in turn with one load.
    pub dsts: Vec<[u8; 4]>,
    /// Count per interface and hook too ([`RunnerSpec::per_interface`]).
    pub per_interface: bool,
    /// With a per-flow budget: this many flows in its table (the frame's own among them,
    /// [`bench_prog`] adds the others).
    pub flows: Option<u32>,
}

/// What one frame cost: with the ring having room and full when the filter selects it, or the
/// cost of rejecting it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BenchOutcome {
    Copied {
        room: Timing,
        full: Timing,
        /// With a budget: the frame's flow over it.
        over_budget: Option<Timing>,
    },
    Rejected(Timing),
}

/// What `tap bench-prog` measured for one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProgBench {
    pub hook: Hook,
    pub frame_len: usize,
    pub repeat: u64,
    pub dst: [u8; 4],
    pub outcome: BenchOutcome,
    /// With a budget: the flows in its table while timing.
    pub flows: Option<u64>,
}

/// One line of JSON. A selected frame has `ns_per_packet_copied` ([`RingState::Room`]'s
/// [`Timing::ns_per_run`]) and `ns_per_packet_ring_full` ([`RingState::Full`]'s), and with a
/// budget `ns_per_packet_over_budget` ([`RingState::OverBudget`]'s) and `flows` (in the table);
/// a rejected one has `ns_per_packet_rejected` ([`RingState::Unused`]'s); the others are null.
impl std::fmt::Display for ProgBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ns = |t: Option<&Timing>| {
            t.map_or_else(|| "null".to_string(), |t| format!("{:.2}", t.ns_per_run))
        };
        let (matched, room, full, over, rejected) = match &self.outcome {
            BenchOutcome::Copied {
                room,
                full,
                over_budget,
            } => (true, Some(room), Some(full), over_budget.as_ref(), None),
            BenchOutcome::Rejected(t) => (false, None, None, None, Some(t)),
        };
        let [a, b, c, d] = self.dst;
        let flows = self
            .flows
            .map_or_else(|| "null".to_string(), |n| n.to_string());
        write!(
            f,
            r#"{{"hook":"{}","frame_len":{},"repeat":{},"dst":"{a}.{b}.{c}.{d}","matched":{matched},"ns_per_packet_copied":{},"ns_per_packet_ring_full":{},"ns_per_packet_rejected":{},"flows":{flows},"ns_per_packet_over_budget":{}}}"#,
            self.hook.name(),
            self.frame_len,
            self.repeat,
            ns(room),
            ns(full),
            ns(rejected),
            ns(over),
        )
    }
}

/// Ring size for [`bench_prog`], in bytes. For an XDP test run with `repeat` above 1 the kernel
/// registers the program with its XDP dispatcher before the loop and unregisters it after (text
/// patching: milliseconds per call, outside the timed loop), so a large ring, drained between
/// calls, keeps the calls few.
pub const BENCH_RING_SIZE: u32 = 128 << 20;

/// `tap bench-prog`: loads the program for `spec.hook` with `spec.filter` once, then times
/// each frame: `repeat` runs with the ring having room and `repeat` with it full when the
/// filter selects the frame, `repeat` runs otherwise; each after a warm-up of a tenth of that.
pub fn bench_prog(spec: &BenchSpec) -> Result<Vec<ProgBench>, TestRunError> {
    let flow_budget = spec.flows.map(|n| crate::model::FlowBudget {
        // Never reached while timing the copies: the over-budget timing sets the flow past it.
        limit: BENCH_UNREACHED_BUDGET,
        unit: crate::model::FlowUnit::Bytes,
        // Room for every flow: an LRU map may evict before it is full.
        table_size: (n.saturating_mul(2)).clamp(
            tap_common::flow::DEFAULT_FLOW_TABLE,
            tap_common::flow::MAX_FLOW_TABLE,
        ),
    });
    let mut runner = ProgRunner::load(RunnerSpec {
        ring_size: BENCH_RING_SIZE,
        filter: spec.filter.clone(),
        per_interface: spec.per_interface,
        flow_budget,
        ..RunnerSpec::new(spec.hook)
    })?;
    let repeat = spec.repeat.max(1);
    let mut out = Vec::with_capacity(spec.dsts.len());
    for &dst in &spec.dsts {
        let frame = udp_frame_to(spec.frame_len, dst)?;
        let flows = match spec.flows {
            Some(n) => Some(runner.fill_flow_table(&frame, n)?),
            None => None,
        };
        let outcome = if runner.matches(&frame)? {
            runner.time(&frame, (repeat / 10).max(1), RingState::Room)?;
            let room = runner.time(&frame, repeat, RingState::Room)?;
            let full = runner.time(&frame, repeat, RingState::Full)?;
            let over_budget = match spec.flows {
                Some(_) => {
                    runner.set_flow_used(&frame, BENCH_UNREACHED_BUDGET)?;
                    runner.time(&frame, (repeat / 10).max(1), RingState::OverBudget)?;
                    Some(runner.time(&frame, repeat, RingState::OverBudget)?)
                }
                None => None,
            };
            BenchOutcome::Copied {
                room,
                full,
                over_budget,
            }
        } else {
            runner.time(&frame, (repeat / 10).max(1), RingState::Unused)?;
            BenchOutcome::Rejected(runner.time(&frame, repeat, RingState::Unused)?)
        };
        out.push(ProgBench {
            hook: spec.hook,
            frame_len: spec.frame_len,
            repeat,
            dst,
            outcome,
            flows,
        });
    }
    Ok(out)
}

/// The budget [`bench_prog`] loads: more bytes than any timing copies.
const BENCH_UNREACHED_BUDGET: u64 = 1 << 62;

impl ProgRunner {
    /// Puts `frame`'s flow and `n - 1` others (distinct ports and addresses) in the flow
    /// table, each with nothing used; returns the entries the table then holds.
    fn fill_flow_table(&mut self, frame: &[u8], n: u32) -> Result<u64, TestRunError> {
        let key = crate::kernel::flow::flow_of(frame)
            .ok_or(TestRunError::Unexpected {
                what: "a flow for the test frame",
                expected: 1,
                got: 0,
            })?
            .key;
        let table = self.flows().ok_or(TestRunError::Unexpected {
            what: "a flow table",
            expected: 1,
            got: 0,
        })?;
        let map_err = |e| TestRunError::Map(Box::new(e));
        table.set(&key, 0).map_err(map_err)?;
        for i in 1..n {
            let mut other = key;
            // Port 0 at the high end never occurs in the frame's own key (port 9).
            other.port_hi = (i & 0xffff) as u16;
            other.addr_hi[4] = 1 + (i >> 16) as u8;
            table.set(&other, 0).map_err(map_err)?;
        }
        Ok(table.entries())
    }

    /// Sets how much `frame`'s flow has used.
    fn set_flow_used(&mut self, frame: &[u8], used: u64) -> Result<(), TestRunError> {
        let key = crate::kernel::flow::flow_of(frame).map(|f| f.key);
        match (key, self.flows()) {
            (Some(key), Some(table)) => table
                .set(&key, used)
                .map_err(|e| TestRunError::Map(Box::new(e))),
            _ => Err(TestRunError::Unexpected {
                what: "a flow table with the test frame's flow",
                expected: 1,
                got: 0,
            }),
        }
    }
}

/// Splits `total` runs into test-run calls of at most `max` repetitions.
fn chunks(total: u64, max: u64) -> impl Iterator<Item = u32> {
    let max = max.clamp(1, u64::from(u32::MAX));
    let mut left = total;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = left.min(max);
        left -= n;
        Some(n as u32)
    })
}

/// Ring bytes one record of `record_len` bytes takes: the kernel's 8-byte header in front, the
/// whole rounded up to 8 bytes.
fn ring_slot_len(record_len: usize) -> usize {
    (RINGBUF_HDR_LEN + record_len).next_multiple_of(8)
}

fn mean_ns(total_ns: u128, runs: u64) -> f64 {
    if runs == 0 {
        0.0
    } else {
        total_ns as f64 / runs as f64
    }
}

fn check_frame_len(len: usize, min: usize, max: usize) -> Result<(), TestRunError> {
    if (min..=max).contains(&len) {
        Ok(())
    } else {
        Err(TestRunError::FrameLen { len, min, max })
    }
}

/// Source MAC of [`udp_frame`]s (locally administered).
pub const FRAME_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Destination MAC of [`udp_frame`]s.
pub const FRAME_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// IPv4 source and destination of [`udp_frame`]s (documentation range).
pub const FRAME_SRC_V4: [u8; 4] = [192, 0, 2, 1];
pub const FRAME_DST_V4: [u8; 4] = [192, 0, 2, 2];
/// UDP ports of [`udp_frame`]s: an ephemeral one to the discard port.
pub const FRAME_SRC_PORT: u16 = 40000;
pub const FRAME_DST_PORT: u16 = 9;

/// An Ethernet/IPv4/UDP frame of exactly `len` bytes (no FCS), with valid IPv4 and UDP
/// checksums and a payload of `i % 251` bytes. `len` is [`MIN_UDP_FRAME`]..=[`MAX_UDP_FRAME`].
pub fn udp_frame(len: usize) -> Result<Vec<u8>, TestRunError> {
    udp_frame_to(len, FRAME_DST_V4)
}

/// A [`udp_frame`] to another IPv4 destination.
pub fn udp_frame_to(len: usize, dst: [u8; 4]) -> Result<Vec<u8>, TestRunError> {
    check_frame_len(len, MIN_UDP_FRAME, MAX_UDP_FRAME)?;
    let ends = frame::Ends {
        macs: (FRAME_SRC_MAC, FRAME_DST_MAC),
        ips: (FRAME_SRC_V4, dst),
        ports: (FRAME_SRC_PORT, FRAME_DST_PORT),
    };
    Ok(frame::udp4(len, &ends).expect("a checked length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_frame_to_sets_the_destination() {
        let f = udp_frame_to(64, [10, 1, 2, 3]).unwrap();
        assert_eq!(&f[30..34], &[10, 1, 2, 3]);
        assert_eq!(udp_frame(64).unwrap()[30..34], FRAME_DST_V4);
    }

    #[test]
    fn bench_lines_are_json() {
        let t = |ring, ns| Timing {
            ring,
            frame_len: 64,
            runs: 10,
            ns_per_run: ns,
        };
        let copied = ProgBench {
            hook: Hook::Xdp,
            frame_len: 64,
            repeat: 10,
            dst: [192, 0, 2, 2],
            outcome: BenchOutcome::Copied {
                room: t(RingState::Room, 30.0),
                full: t(RingState::Full, 12.5),
                over_budget: None,
            },
            flows: None,
        };
        let v: serde_json::Value = serde_json::from_str(&copied.to_string()).unwrap();
        assert_eq!(v["matched"], true);
        assert!(v["flows"].is_null() && v["ns_per_packet_over_budget"].is_null());
        assert_eq!(v["dst"], "192.0.2.2");
        assert_eq!(v["ns_per_packet_copied"], 30.0);
        assert_eq!(v["ns_per_packet_ring_full"], 12.5);
        assert!(v["ns_per_packet_rejected"].is_null());
        let rejected = ProgBench {
            outcome: BenchOutcome::Rejected(t(RingState::Unused, 9.0)),
            ..copied
        };
        let v: serde_json::Value = serde_json::from_str(&rejected.to_string()).unwrap();
        assert_eq!(
            (v["matched"].as_bool(), v["ns_per_packet_rejected"].as_f64()),
            (Some(false), Some(9.0))
        );
        assert!(v["ns_per_packet_copied"].is_null());
        let budget = ProgBench {
            outcome: BenchOutcome::Copied {
                room: t(RingState::Room, 50.0),
                full: t(RingState::Full, 20.0),
                over_budget: Some(t(RingState::OverBudget, 40.25)),
            },
            flows: Some(65_536),
            ..copied
        };
        let v: serde_json::Value = serde_json::from_str(&budget.to_string()).unwrap();
        assert_eq!(
            (v["flows"].as_u64(), v["ns_per_packet_over_budget"].as_f64()),
            (Some(65_536), Some(40.25))
        );
    }

    #[test]
    fn udp_frame_goes_between_the_test_addresses() {
        // Checksums and layout: tap_common::frame's tests.
        for len in [MIN_UDP_FRAME, 64, 9216, MAX_UDP_FRAME] {
            let f = udp_frame(len).unwrap();
            assert_eq!(f.len(), len);
            assert_eq!(
                (&f[0..6], &f[6..12]),
                (&FRAME_DST_MAC[..], &FRAME_SRC_MAC[..])
            );
            assert_eq!(&f[26..30], &FRAME_SRC_V4);
            assert_eq!(&f[34..38], &[0x9c, 0x40, 0, 9], "ports 40000 -> 9");
        }
    }

    #[test]
    fn udp_frame_refuses_impossible_lengths() {
        assert!(matches!(
            udp_frame(41),
            Err(TestRunError::FrameLen {
                len: 41,
                min: 42,
                ..
            })
        ));
        assert!(matches!(
            udp_frame(MAX_UDP_FRAME + 1),
            Err(TestRunError::FrameLen { .. })
        ));
    }

    #[test]
    fn chunks_cover_the_total() {
        assert_eq!(chunks(10, 4).collect::<Vec<_>>(), [4, 4, 2]);
        assert_eq!(chunks(3, 0).collect::<Vec<_>>(), [1, 1, 1]);
        assert_eq!(chunks(0, 4).count(), 0);
        let big: u64 = chunks(u64::from(u32::MAX) + 5, u64::MAX)
            .map(u64::from)
            .sum();
        assert_eq!(big, u64::from(u32::MAX) + 5);
    }

    #[test]
    fn ring_slots_are_aligned_records_with_a_header() {
        assert_eq!(ring_slot_len(40 + 64), 112);
        assert_eq!(ring_slot_len(41), 56);
    }

    #[test]
    fn mean_is_weighted_by_runs() {
        assert_eq!(mean_ns(0, 0), 0.0);
        assert_eq!(mean_ns(30 * 4 + 40 * 2, 6), 200.0 / 6.0);
    }
}
