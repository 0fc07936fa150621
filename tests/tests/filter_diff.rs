//! Differential test of tap's filters against libpcap, with tcpdump as the oracle.
//!
//! Every expression of [`corpus::EXPRESSIONS`] (and the generated [`corpus::big_expressions`])
//! runs over the reproducible corpus twice: in tcpdump (`tcpdump -r corpus -w ref EXPR`) and in
//! tap's kernel program through BPF_PROG_TEST_RUN (`tap replay -r corpus -w out EXPR`). The
//! selected frames must be the same frames, byte for byte, in the same order, with their
//! timestamps. All expressions run; the test then fails once, listing every difference with the
//! corpus index and tcpdump's one-line decoding of each differing frame.
//!
//! The oracle is tcpdump as it runs by default, with libpcap's optimizer. On truncated frames the
//! optimizer can change the answer: it drops loads whose value cannot matter (a `net ::/0`
//! compares nothing; `net 2001:db8::/32` reads only the first word of the address), and a load
//! it drops can no longer run past the end of the frame and reject it. Where tcpdump and
//! `tcpdump -O` (no optimizer) disagree about a frame, libpcap itself gives both answers, and
//! either one is accepted from tap; the table counts those frames as "either".
//!
//! A sample of the expressions also runs on live traffic: the corpus replayed by tcpreplay over
//! a veth pair into `tap capture --hook xdp` on the other end.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tap_tests::{
    TempDir, Topology, corpus,
    pcap::{Pcap, Record},
    process::Background,
    require_root, tap,
    tap::Capture,
    tap_bin,
};

/// Bound on one tcpdump or `tap replay` run (each takes well under a second).
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// Differing frames listed per kind (missed, extra) and expression.
const SHOWN: usize = 6;

/// Expressions run on live traffic: protocols, ports across fragments and truncated frames,
/// stacked VLAN tags, IPv6 extension headers, hosts (with ARP) and a negation.
const LIVE_SAMPLE: &[&str] = &[
    "tcp port 80",
    "udp port 53 or icmp",
    "vlan 100 and vlan 200 and udp",
    "vlan and (tcp port 80 or udp port 53)",
    "host 192.0.2.1 or host 2001:db8::1",
    "ip6 proto 17",
    "not port 80",
];

/// The corpus written to a scratch directory, with an index from frame bytes to position and
/// tcpdump's one-line decoding of every frame.
struct Written {
    path: PathBuf,
    frames: Vec<Vec<u8>>,
    index: HashMap<Vec<u8>, usize>,
    lines: Vec<String>,
}

impl Written {
    fn new(dir: &TempDir) -> Self {
        let path = dir.join("corpus.pcap");
        let n = corpus::write_corpus(&path);
        let frames = corpus::frames();
        assert_eq!(n, frames.len());
        let index: HashMap<Vec<u8>, usize> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| (f.clone(), i))
            .collect();
        assert_eq!(
            index.len(),
            frames.len(),
            "corpus frames must be unique to be told apart"
        );
        let lines = describe(&path, frames.len());
        Self {
            path,
            frames,
            index,
            lines,
        }
    }

    /// `#index [len B] tcpdump's line`.
    fn describe(&self, i: usize) -> String {
        let line: String = self.lines[i].chars().take(170).collect();
        format!("#{i} [{} B] {line}", self.frames[i].len())
    }

    /// Corpus positions of a capture's records; `None` for a frame that is not in the corpus.
    fn positions(&self, pcap: &Pcap) -> Vec<Option<usize>> {
        pcap.records
            .iter()
            .map(|r| self.index.get(&r.data).copied())
            .collect()
    }

    fn ts_ns(i: usize) -> u128 {
        let (sec, usec) = corpus::timestamp(i);
        u128::from(sec) * 1_000_000_000 + u128::from(usec) * 1000
    }
}

/// tcpdump's decoding of every frame of `path` (`-nn -e -t`), by frame position. `-#` numbers the
/// packets, so lines that continue a packet (hex dumps of unknown EtherTypes) are told apart.
fn describe(path: &Path, n: usize) -> Vec<String> {
    let out = Command::new("tcpdump")
        .args(["-nn", "-e", "-t", "-#", "-r"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("running tcpdump (is it installed?)");
    assert!(
        out.status.success(),
        "tcpdump -r {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = vec![String::new(); n];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((num, rest)) = line.trim_start().split_once("  ") else {
            continue;
        };
        if let Ok(k) = num.parse::<usize>() {
            if (1..=n).contains(&k) {
                lines[k - 1] = rest.to_string();
            }
        }
    }
    let blank = lines.iter().filter(|l| l.is_empty()).count();
    assert_eq!(
        blank, 0,
        "tcpdump printed no line for {blank} of {n} frames"
    );
    lines
}

/// `tcpdump -r CORPUS -w OUT EXPR` (with `-O` unless `optimize`); `Err` with tcpdump's
/// complaint when it rejects the expression.
fn tcpdump_select(corpus: &Path, expr: &str, out: &Path, optimize: bool) -> Result<Pcap, String> {
    let mut cmd = Command::new("tcpdump");
    if !optimize {
        cmd.arg("-O");
    }
    // -Z root: Debian's tcpdump drops to its own user before opening the -w file otherwise.
    cmd.args(["-Z", "root", "-r"])
        .arg(corpus)
        .arg("-w")
        .arg(out)
        .arg(expr)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let exited = Background::spawn("tcpdump", cmd).wait(RUN_TIMEOUT);
    if !exited.status.success() {
        return Err(format!(
            "tcpdump failed ({}): {}",
            exited.status,
            exited.stderr.trim()
        ));
    }
    Ok(Pcap::read(out))
}

/// What libpcap selects from the corpus for one expression.
struct Oracle {
    /// Corpus positions tcpdump selects, in order.
    expected: Vec<usize>,
    /// Positions optimized and unoptimized libpcap disagree about: either answer is right.
    either: HashSet<usize>,
}

impl Oracle {
    /// Runs tcpdump with and without its optimizer over `corpus` (or a file of its frames).
    fn new(corpus: &Written, file: &Path, expr: &str, out: &Path) -> Result<Self, String> {
        let select = |optimize: bool| -> Result<Vec<usize>, String> {
            let pcap = tcpdump_select(file, expr, out, optimize)?;
            Ok(corpus
                .positions(&pcap)
                .into_iter()
                .map(|p| p.expect("tcpdump -w writes frames unchanged"))
                .collect())
        };
        let expected = select(true)?;
        let unoptimized: HashSet<usize> = select(false)?.into_iter().collect();
        let optimized: HashSet<usize> = expected.iter().copied().collect();
        let either = optimized
            .symmetric_difference(&unoptimized)
            .copied()
            .collect();
        Ok(Self { expected, either })
    }
}

/// Under test: `tap replay -r CORPUS -w OUT EXPR`. Returns the output and tap's stderr.
fn tap_replay(corpus: &Path, expr: &str, out: &Path) -> Result<(Pcap, String), String> {
    let mut cmd = Command::new(tap_bin());
    cmd.args(["replay", "-r"])
        .arg(corpus)
        .arg("-w")
        .arg(out)
        .arg(expr)
        .env_remove("TAP_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let exited = Background::spawn("tap replay", cmd).wait(RUN_TIMEOUT);
    if !exited.status.success() {
        return Err(format!(
            "tap replay failed ({}): {}",
            exited.status,
            exited.stderr.trim()
        ));
    }
    if !out.exists() {
        return Err(format!(
            "tap replay exited 0 but wrote no {}: {}",
            out.display(),
            exited.stderr.trim()
        ));
    }
    Ok((Pcap::read(out), exited.stderr))
}

/// The number `N` of a summary line `N <suffix>`.
fn summary_number(stderr: &str, suffix: &str) -> Option<u64> {
    stderr.lines().rev().find_map(|l| {
        l.trim()
            .strip_suffix(suffix)
            .and_then(|n| n.trim().parse().ok())
    })
}

/// Differences between the frames the oracle selects and the records under test, as lines for
/// the report; empty when they agree.
fn differences(
    corpus: &Written,
    oracle: &Oracle,
    got: &[Record],
    got_pos: &[Option<usize>],
) -> Vec<String> {
    let mut out = Vec::new();
    let firm = |i: &usize| !oracle.either.contains(i);
    let want: HashSet<usize> = oracle.expected.iter().copied().collect();
    let have: HashSet<usize> = got_pos.iter().flatten().copied().collect();
    let missed: Vec<usize> = oracle
        .expected
        .iter()
        .copied()
        .filter(|i| firm(i) && !have.contains(i))
        .collect();
    let extra: Vec<usize> = got_pos
        .iter()
        .flatten()
        .copied()
        .filter(|i| firm(i) && !want.contains(i))
        .collect();
    let foreign: Vec<&Record> = got
        .iter()
        .zip(got_pos)
        .filter(|(_, p)| p.is_none())
        .map(|(r, _)| r)
        .collect();
    let mut list = |what: &str, items: &[usize]| {
        if items.is_empty() {
            return;
        }
        out.push(format!(
            "{} {what} (tcpdump selects them{}):",
            items.len(),
            if what == "missed" {
                ", tap does not"
            } else {
                " not"
            }
        ));
        for &i in items.iter().take(SHOWN) {
            out.push(format!("    {}", corpus.describe(i)));
        }
        if items.len() > SHOWN {
            out.push(format!(
                "    ... and {} more: {:?}",
                items.len() - SHOWN,
                &items[SHOWN..]
            ));
        }
    };
    list("missed", &missed);
    list("extra", &extra);
    if !foreign.is_empty() {
        out.push(format!(
            "{} frames in tap's output are not in the corpus (altered bytes?):",
            foreign.len()
        ));
        for r in foreign.iter().take(SHOWN) {
            let head: String = r.data.iter().take(40).map(|b| format!("{b:02x}")).collect();
            out.push(format!("    [{} B] {head}...", r.data.len()));
        }
    }
    let got_firm: Vec<usize> = got_pos.iter().flatten().copied().filter(firm).collect();
    let want_firm: Vec<usize> = oracle.expected.iter().copied().filter(firm).collect();
    if missed.is_empty() && extra.is_empty() && got_firm != want_firm {
        let at = got_firm
            .iter()
            .zip(&want_firm)
            .position(|(a, b)| a != b)
            .unwrap_or(want_firm.len().min(got_firm.len()));
        out.push(format!(
            "same frames, different sequence (order or duplicates) from position {at}: tap {:?}",
            &got_firm[at..got_firm.len().min(at + 8)]
        ));
    }
    for (r, p) in got.iter().zip(got_pos) {
        let Some(i) = *p else { continue };
        if r.orig_len as usize != r.data.len() {
            out.push(format!(
                "original length {} != captured {} for {}",
                r.orig_len,
                r.data.len(),
                corpus.describe(i)
            ));
            break;
        }
    }
    out
}

/// Timestamp differences between a replay's output and the corpus (first one only).
fn timestamp_difference(corpus: &Written, got: &Pcap, got_pos: &[Option<usize>]) -> Option<String> {
    got_pos.iter().enumerate().find_map(|(k, p)| {
        let i = (*p)?;
        let (have, want) = (got.ts_ns(k), Written::ts_ns(i));
        (have != want).then(|| {
            format!(
                "timestamp {have} ns != the corpus's {want} ns for {}",
                corpus.describe(i)
            )
        })
    })
}

/// One expression's result.
struct Outcome {
    label: String,
    expected: Option<usize>,
    /// Frames either answer is right for (see the module docs).
    either: usize,
    tap: Option<usize>,
    problems: Vec<String>,
}

fn run_one(corpus: &Written, dir: &Path, k: usize, expr: &str) -> Outcome {
    let label: String = if expr.len() > 70 {
        format!("{}... ({} bytes)", &expr[..60], expr.len())
    } else {
        expr.to_string()
    };
    let mut o = Outcome {
        label,
        expected: None,
        either: 0,
        tap: None,
        problems: Vec::new(),
    };
    let oracle = match Oracle::new(
        corpus,
        &corpus.path,
        expr,
        &dir.join(format!("ref-{k}.pcap")),
    ) {
        Ok(o) => o,
        Err(e) => {
            o.problems
                .push(format!("the oracle rejects the expression: {e}"));
            return o;
        }
    };
    o.expected = Some(oracle.expected.len());
    o.either = oracle.either.len();
    let (got, stderr) = match tap_replay(&corpus.path, expr, &dir.join(format!("tap-{k}.pcap"))) {
        Ok(r) => r,
        Err(e) => {
            o.problems.push(e);
            return o;
        }
    };
    o.tap = Some(got.records.len());
    let pos = corpus.positions(&got);
    o.problems
        .extend(differences(corpus, &oracle, &got.records, &pos));
    o.problems.extend(timestamp_difference(corpus, &got, &pos));
    match (
        summary_number(&stderr, " packets read"),
        summary_number(&stderr, " packets matched"),
    ) {
        (Some(read), Some(matched)) => {
            if read != corpus.frames.len() as u64 || matched != got.records.len() as u64 {
                o.problems.push(format!(
                    "summary says {read} read / {matched} matched; the corpus has {} frames, the output {} records",
                    corpus.frames.len(),
                    got.records.len()
                ));
            }
        }
        _ => o.problems.push(format!(
            "no \"N packets read\" / \"M packets matched\" summary on stderr: {}",
            stderr.trim()
        )),
    }
    o
}

/// Every expression through tcpdump and `tap replay`; one failure listing all differences.
#[test]
fn replay_matches_tcpdump() {
    require_root();
    let bin = tap_bin();
    assert!(
        bin.exists(),
        "tap binary {} missing: run `cargo xtask build` or set TAP_BIN",
        bin.display()
    );
    let dir = TempDir::new();
    let corpus = Written::new(&dir);
    let exprs: Vec<String> = corpus::EXPRESSIONS
        .iter()
        .map(|e| (*e).to_string())
        .chain(corpus::big_expressions())
        .collect();

    // A few workers: each run loads a program (tap) or compiles a filter (tcpdump).
    let outcomes: Vec<Mutex<Option<Outcome>>> = exprs.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(2, std::num::NonZero::get)
        .clamp(2, 4);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(expr) = exprs.get(k) else { break };
                    let o = run_one(&corpus, dir.path(), k, expr);
                    *outcomes[k].lock().unwrap() = Some(o);
                }
            });
        }
    });
    let outcomes: Vec<Outcome> = outcomes
        .into_iter()
        .map(|m| m.into_inner().unwrap().expect("every expression ran"))
        .collect();

    let mut table = format!(
        "{} frames, {} expressions\ntcpdump     tap  either  expression\n",
        corpus.frames.len(),
        outcomes.len()
    );
    for o in &outcomes {
        let n = |v: Option<usize>| v.map_or("-".to_string(), |n| n.to_string());
        let mark = if o.problems.is_empty() { ' ' } else { '!' };
        let _ = writeln!(
            table,
            "{:>7} {mark} {:>5}  {:>6}  {}",
            n(o.expected),
            n(o.tap),
            if o.either == 0 {
                String::new()
            } else {
                o.either.to_string()
            },
            o.label
        );
    }
    println!("{table}");

    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.problems.is_empty()).collect();
    if !failed.is_empty() {
        let mut report = format!(
            "{} of {} expressions differ between tcpdump and tap replay:\n",
            failed.len(),
            outcomes.len()
        );
        for o in &failed {
            let _ = writeln!(
                report,
                "\n`{}`: tcpdump {}, tap {}",
                o.label,
                o.expected.map_or("-".into(), |n| n.to_string()),
                o.tap.map_or("-".into(), |n| n.to_string())
            );
            for p in &o.problems {
                let _ = writeln!(report, "  {p}");
            }
        }
        panic!("{report}");
    }
}

/// The expressions are valid tcpdump syntax and select a proper, non-empty subset of the corpus
/// (no root needed: this checks the test data, not tap).
#[test]
fn expressions_are_meaningful() {
    let dir = TempDir::new();
    let corpus = Written::new(&dir);
    assert!(corpus::EXPRESSIONS.len() >= 70);
    let mut bad = Vec::new();
    for (k, expr) in corpus::EXPRESSIONS
        .iter()
        .map(|e| (*e).to_string())
        .chain(corpus::big_expressions())
        .enumerate()
    {
        match tcpdump_select(&corpus.path, &expr, &dir.join(&format!("m-{k}.pcap")), true) {
            Ok(p) if p.records.is_empty() || p.records.len() == corpus.frames.len() => {
                bad.push(format!(
                    "`{expr}` selects {} of {} frames",
                    p.records.len(),
                    corpus.frames.len()
                ));
            }
            Ok(_) => {}
            Err(e) => bad.push(format!("`{expr}`: {e}")),
        }
    }
    assert!(
        bad.is_empty(),
        "expressions without a proper selection:\n{}",
        bad.join("\n")
    );
}

/// A sample of the expressions on live traffic: tcpreplay sends the corpus from namespace a over
/// the veth pair; `tap capture --hook xdp` on veth-b must write what tcpdump selects from the
/// corpus file.
///
/// Every corpus frame reaches XDP on veth-b unchanged and in order (tags included: a packet
/// socket sends them inline, and native XDP on veth runs before any VLAN untagging), so no frame
/// kind is excluded here. Frames the namespaces' own stacks might send are not in the corpus;
/// they may appear only when tcpdump's filter selects them too.
#[test]
fn live_sample_matches_tcpdump() {
    require_root();
    let dir = TempDir::new();
    let corpus = Written::new(&dir);
    let topo = Topology::new();
    let mut report = Vec::new();
    for (k, expr) in LIVE_SAMPLE.iter().enumerate() {
        let out = dir.join(&format!("live-{k}.pcap"));
        let out_arg = out.to_string_lossy().into_owned();
        let capture = Capture::on(&topo.b_if)
            .args(&["--hook", "xdp", "-w", &out_arg, expr])
            .start(&topo.b);
        let mut send = topo.a.cmd("tcpreplay");
        send.args(["-i", &topo.a_if, "--pps", "1000"])
            .arg(&corpus.path)
            .stdin(Stdio::null());
        let sent = Background::spawn_collecting_stdout("tcpreplay", send).wait(RUN_TIMEOUT);
        assert!(
            sent.status.success(),
            "tcpreplay failed ({}):\n{}\n{}",
            sent.status,
            sent.stdout,
            sent.stderr
        );
        let successful = sent.stdout.lines().find_map(|l| {
            l.trim()
                .strip_prefix("Successful packets:")
                .and_then(|n| n.trim().parse::<usize>().ok())
        });
        assert_eq!(
            successful,
            Some(corpus.frames.len()),
            "tcpreplay did not send every frame:\n{}",
            sent.stdout
        );
        // The programs ran while the frames crossed the veth; give the drain a moment.
        std::thread::sleep(Duration::from_millis(500));
        let exited = tap::stop(capture);
        let summary = tap::Summary::parse(&exited.stderr);

        let oracle = Oracle::new(
            &corpus,
            &corpus.path,
            expr,
            &dir.join(&format!("live-ref-{k}.pcap")),
        )
        .unwrap_or_else(|e| panic!("`{expr}`: {e}"));
        let expected = &oracle.expected;
        let got = Pcap::read(&out);
        let pos = corpus.positions(&got);
        let mut problems = Vec::new();
        // Frames from the namespaces' own stacks: allowed when tcpdump's filter selects them.
        let mut known_records = Vec::new();
        let mut known_pos = Vec::new();
        let mut foreign = Vec::new();
        for (r, p) in got.records.iter().zip(&pos) {
            if p.is_some() {
                known_records.push(r.clone());
                known_pos.push(*p);
            } else {
                foreign.push(r.data.clone());
            }
        }
        if !foreign.is_empty() {
            let frames = &foreign;
            let stray = dir.join(&format!("live-stray-{k}.pcap"));
            std::fs::write(&stray, corpus::pcap_bytes(frames).0).expect("writing stray frames");
            let selected = tcpdump_select(
                &stray,
                expr,
                &dir.join(&format!("live-stray-ref-{k}.pcap")),
                true,
            )
            .unwrap_or_else(|e| panic!("`{expr}`: {e}"));
            if selected.records.len() != frames.len() {
                problems.push(format!(
                    "{} of {} frames from outside the corpus in tap's output do not match the filter",
                    frames.len() - selected.records.len(),
                    frames.len()
                ));
            }
            println!(
                "`{expr}`: {} frames not from the corpus (the stacks' own traffic)",
                foreign.len()
            );
        }
        problems.extend(differences(&corpus, &oracle, &known_records, &known_pos));
        if summary.ring_dropped != 0 || summary.writer_dropped != 0 {
            problems.push(format!("tap dropped packets: {summary:?}"));
        }
        println!(
            "live `{expr}`: tcpdump {}, tap {}",
            expected.len(),
            known_records.len()
        );
        if !problems.is_empty() {
            report.push(format!(
                "`{expr}`: tcpdump {}, tap {}\n  {}",
                expected.len(),
                known_records.len(),
                problems.join("\n  ")
            ));
        }
    }
    assert!(
        report.is_empty(),
        "live capture differs from tcpdump -r on the corpus:\n{}",
        report.join("\n")
    );
}
