//! At the terminal, as tcpdump: `tap capture` without an output prints one line per packet,
//! `--print` prints beside `-w`, `-r FILE [EXPR]` reads what tap writes (pcap, pcapng, .zst)
//! through the filter, and `-w -` to a terminal is refused. The oracle is tcpdump, reading a
//! file it captured at the same time, or the file tap wrote beside its printing.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use tap_tests::{
    TempDir, Topology,
    oracle::Tcpdump,
    process::Background,
    run_ok,
    tap::{self, Summary},
    tap_bin,
    topology::{B_V4, FIRST, SECOND},
    traffic,
};

/// The bounded traffic of every test: 20 UDP datagrams (to the discard port, each answered by
/// an ICMP port unreachable) and two pings.
fn traffic(t: &Topology) {
    traffic::udp_burst(&t.a, B_V4, 20, 100);
    traffic::ping(&t.a, B_V4, 2, &[]);
}

/// Lines the traffic prints at least: 20 datagrams, 2 requests and 2 replies (the kernel limits
/// the rate of the port unreachables).
const MIN_LINES: usize = 24;

/// `tcpdump ARGS -r FILE [EXPR]`'s lines, with `TZ=UTC` (as tap is run); a `.zst` file is
/// decompressed with zstd first, since tcpdump does not read it.
fn tcpdump_r(file: &Path, flags: &[&str], expr: &[&str]) -> Vec<String> {
    let plain = if file.extension().is_some_and(|e| e == "zst") {
        let plain = file.with_extension("");
        run_ok(
            Command::new("zstd")
                .args(["-dqf", "-o"])
                .arg(&plain)
                .arg(file),
        );
        plain
    } else {
        file.to_path_buf()
    };
    let out = run_ok(
        Command::new("tcpdump")
            .args(flags)
            .arg("-r")
            .arg(&plain)
            .args(expr)
            .env("TZ", "UTC"),
    );
    lines(&String::from_utf8_lossy(&out.stdout))
}

/// `tap capture -r FILE ARGS [EXPR]`'s lines, which must end in success.
fn tap_r(file: &Path, args: &[&str]) -> Vec<String> {
    let out = run_ok(
        Command::new(tap_bin())
            .args(["capture", "-r"])
            .arg(file)
            .args(args)
            .env("TZ", "UTC")
            .env_remove("TAP_LOG")
            .stdin(Stdio::null()),
    );
    lines(&String::from_utf8_lossy(&out.stdout))
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

/// The same lines, shown side by side where they differ.
fn assert_same_lines(what: &str, want: &[String], got: &[String]) {
    if want == got {
        return;
    }
    let mut report = format!(
        "{what}: tcpdump printed {} lines, tap {}\n",
        want.len(),
        got.len()
    );
    for i in 0..want.len().max(got.len()) {
        let (w, g) = (want.get(i), got.get(i));
        if w != g {
            report.push_str(&format!("  tcpdump: {w:?}\n  tap:     {g:?}\n"));
        }
    }
    panic!("{report}");
}

/// Starts `tap capture ARGS` in `b` with its stdout collected, once it captures.
fn start_printing(t: &Topology, args: &[&str]) -> Background {
    let cmd = tap::command(&t.b, &["--log", "info"], args);
    let mut cmd = cmd;
    cmd.env("TZ", "UTC");
    let mut tap = Background::spawn_collecting_stdout("tap", cmd);
    tap.wait_for_stderr(tap::READY, tap::START_TIMEOUT);
    tap
}

/// No `-w`: tap prints what tcpdump, capturing the same interface at the same time, prints
/// from its file (without timestamps, since the two take them at different points; sorted,
/// since two packets of one direction met on two CPUs may reach each tap in either order).
#[test]
fn without_an_output_tap_prints_what_tcpdump_sees() {
    let t = Topology::new();
    let dir = TempDir::new();
    let tcpdump = Tcpdump::start(&t.b, &t.b_if, dir.join("oracle.pcap"), &[]);
    let tap = start_printing(&t, &["-i", &t.b_if, "-nn", "-t"]);
    traffic(&t);
    tcpdump.wait_quiet(Duration::from_millis(500));
    let exited = tap::stop(tap);
    let oracle = tcpdump.stop();
    assert!(!oracle.records.is_empty());

    let mut want = tcpdump_r(&dir.join("oracle.pcap"), &["-nn", "-t"], &[]);
    let mut got = lines(&exited.stdout);
    want.sort();
    got.sort();
    assert_same_lines("live, -nn -t", &want, &got);
    assert!(got.len() >= MIN_LINES, "{}", exited.stdout);
    let summary = Summary::parse(&exited.stderr);
    assert_eq!(summary.captured, got.len() as u64, "{}", exited.stderr);
    assert!(
        !exited.stderr.contains("not printed"),
        "the printer skipped packets of a small capture:\n{}",
        exited.stderr
    );
}

/// Several interfaces: each line names its interface and direction as tcpdump prints an
/// `-i any` capture, which is the oracle here (tcpdump on `any` in the same namespace).
#[test]
fn several_interfaces_print_interface_and_direction_as_tcpdump_i_any() {
    let t = Topology::new();
    t.add_link("veth-a2", "veth-b2", &SECOND);
    let dir = TempDir::new();
    let tcpdump = Tcpdump::start(&t.b, "any", dir.join("any.pcap"), &[]);
    let tap = start_printing(&t, &["-i", &t.b_if, "-i", "veth-b2", "-nn", "-t", "icmp"]);
    traffic::ping(&t.a, B_V4, 2, &[]);
    traffic::ping(&t.a, SECOND.b_v4, 2, &[]);
    tcpdump.wait_quiet(Duration::from_millis(500));
    let exited = tap::stop(tap);
    tcpdump.stop();
    // A LINUX_SLL2 record holds the interface's index: tcpdump names it from the namespace it
    // reads in.
    let read = run_ok(
        t.b.cmd("tcpdump")
            .args(["-nn", "-t", "-r"])
            .arg(dir.join("any.pcap"))
            .arg("icmp"),
    );
    let mut want = lines(&String::from_utf8_lossy(&read.stdout));
    let mut got = lines(&exited.stdout);
    want.sort();
    got.sort();
    assert_eq!(got.len(), 8, "{}", exited.stdout);
    assert!(got.iter().any(|l| l.starts_with("veth-b2 In  ")), "{got:?}");
    assert_same_lines("two interfaces, -nn -t icmp", &want, &got);
}

/// `--print` beside `-w`: what tap printed (timestamps included, in order) is what
/// `tcpdump -nn -r` prints of the file tap wrote.
#[test]
fn print_beside_w_prints_what_tcpdump_reads_from_the_file() {
    let t = Topology::new();
    let dir = TempDir::new();
    let file = dir.join("tap.pcapng");
    let tap = start_printing(
        &t,
        &[
            "-i",
            &t.b_if,
            "-nn",
            "--print",
            "-w",
            &file.to_string_lossy(),
        ],
    );
    traffic(&t);
    std::thread::sleep(Duration::from_millis(500));
    let exited = tap::stop(tap);
    let want = tcpdump_r(&file, &["-nn"], &[]);
    assert!(want.len() >= MIN_LINES, "{want:?}");
    assert_same_lines("--print -w", &want, &lines(&exited.stdout));
}

/// `-r` reads each form tap writes and filters with the same language as tcpdump: a live
/// pcapng, then `-r` writing it again as pcap and as pcapng.zst (every packet, and the ones an
/// expression selects), each read back with expressions.
#[test]
fn read_filters_pcap_pcapng_and_zst_as_tcpdump() {
    let t = Topology::new();
    let dir = TempDir::new();
    let live = dir.join("live.pcapng");
    let tap = tap::Capture::on(&t.b_if)
        .write(&live.to_string_lossy())
        .start(&t.b);
    traffic(&t);
    std::thread::sleep(Duration::from_millis(500));
    tap::stop(tap);

    let pcap = dir.join("all.pcap");
    let zst = dir.join("all.pcapng.zst");
    for out in [&pcap, &zst] {
        tap_r(&live, &["-q", "-w", &out.to_string_lossy()]);
    }
    let everything = tcpdump_r(&live, &["-nn"], &[]);
    assert!(everything.len() >= MIN_LINES, "{everything:?}");
    let expressions: [&[&str]; 4] = [
        &[],
        &["icmp"],
        &["udp", "and", "dst", "port", "9"],
        &["not", "(icmp", "and", "src", "host", B_V4, ")"],
    ];
    let files: [&PathBuf; 3] = [&live, &pcap, &zst];
    for file in files {
        for expr in expressions {
            let want = tcpdump_r(file, &["-nn"], expr);
            let got = tap_r(file, &[&["-nn"][..], expr].concat());
            assert_same_lines(&format!("-r {} {expr:?}", file.display()), &want, &got);
        }
        // Other flags over the same files.
        for flags in [&["-nn", "-e", "-tt"][..], &["-nn", "-v"]] {
            assert_same_lines(
                &format!("-r {} {flags:?}", file.display()),
                &tcpdump_r(file, flags, &[]),
                &tap_r(file, flags),
            );
        }
    }

    // -w OUT with an expression writes the selected packets, as tcpdump selects them.
    let selected = dir.join("icmp.pcapng.zst");
    tap_r(&live, &["-q", "-w", &selected.to_string_lossy(), "icmp"]);
    assert_same_lines(
        "-r -w icmp",
        &tcpdump_r(&live, &["-nn"], &["icmp"]),
        &tcpdump_r(&selected, &["-nn"], &[]),
    );
}

/// `-w -` with standard output a terminal writes no binary packets there: one line of error and
/// a failing exit, before anything is attached.
#[test]
fn w_dash_to_a_terminal_is_refused() {
    let t = Topology::new();
    let line = format!("{} capture -i {} -w -", tap_bin().display(), t.b_if);
    let out =
        t.b.cmd("script")
            .args(["-qec", &line, "/dev/null"])
            .env_remove("TAP_LOG")
            .stdin(Stdio::null())
            .output()
            .expect("script runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let printed: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .collect();
    assert!(!out.status.success(), "tap -w - on a terminal: {text}");
    assert_eq!(printed.len(), 1, "one line: {text:?}");
    assert!(
        printed[0].starts_with("tap: ") && printed[0].contains("terminal"),
        "{text:?}"
    );
}

/// On a terminal, printed packets are not overwritten by a status line: the lines come as
/// tcpdump's (here the pings'), and no `pkt/s` is drawn between them.
#[test]
fn on_a_terminal_packets_print_without_a_status_line() {
    let t = Topology::new();
    let line = format!(
        "ip netns exec {} {} capture -i {} --duration 3 -nn -t icmp",
        t.b.name,
        tap_bin().display(),
        t.b_if
    );
    let mut ping = t.a.cmd("ping");
    ping.args(["-n", "-q", "-c", "20", "-i", "0.1", B_V4])
        .stdout(Stdio::null());
    let ping = Background::spawn("ping", ping);
    let mut script = Command::new("script");
    script
        .args(["-qec", &line, "/dev/null"])
        .env_remove("TAP_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    let shown = Background::spawn_collecting_stdout("script", script).wait(Duration::from_secs(30));
    let _ = ping.wait(Duration::from_secs(10));
    assert!(shown.status.success(), "{}{}", shown.stdout, shown.stderr);
    assert!(!shown.stdout.contains("pkt/s"), "{:?}", shown.stdout);
    let requests = shown
        .stdout
        .lines()
        .filter(|l| l.starts_with(&format!("IP {} > {B_V4}: ICMP echo request", FIRST.a_v4)))
        .count();
    assert!(requests >= 5, "{:?}", shown.stdout);
    assert!(
        shown.stdout.contains("packets captured"),
        "{:?}",
        shown.stdout
    );
}
