//! Hardening, tried as a hostile local user and with hostile inputs: an unprivileged user
//! holding connections cannot blind the agent; filter files that are devices or huge fail at
//! once with little memory, at start and on reload; replay writes files the way capture does;
//! `--stats-json` is checked before anything is attached; a failed start leaves no socket.

use std::{
    io::Read as _,
    os::unix::{fs::PermissionsExt as _, net::UnixStream},
    path::Path,
    time::{Duration, Instant},
};

use tap_tests::{
    Netns, TempDir, Topology,
    agent::{Agent, scrape},
    bpf::assert_nothing_attached,
    pcap::Pcap,
    process::{Background, Measured, open_fds, peak_rss_kib, run_measured},
    tap::{self, START_TIMEOUT},
    tap_bin,
    topology::B_V4,
    traffic, wait_until,
};

const METRICS: &str = "127.0.0.1:9750";

/// Memory a refused input may cost on top of a run that refuses a small one, KiB (64 MiB).
const EXTRA_KIB: u64 = 64 << 10;

/// The attacker, run as `nobody`: for SECS seconds it holds up to WANT connections to the
/// metrics endpoint (non-blocking connects; those the agent closes are opened again), and tries
/// the Unix sockets given after. Prints what it did as JSON.
const ATTACKER: &str = r#"
import errno, json, resource, socket, sys, time
host, port, secs, want = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
stats = {"connects": 0, "peak": 0, "closed_by_agent": 0, "unix": {}}
for path in sys.argv[5:]:
    try:
        u = socket.socket(socket.AF_UNIX)
        u.connect(path)
        stats["unix"][path] = "connected"
        u.close()
    except OSError as e:
        stats["unix"][path] = errno.errorcode.get(e.errno, str(e.errno))
socks = []
end = time.monotonic() + secs
while time.monotonic() < end:
    while len(socks) < want:
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect((host, port))
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            break
        socks.append(s)
        stats["connects"] += 1
    stats["peak"] = max(stats["peak"], len(socks))
    alive = []
    for s in socks:
        try:
            if s.recv(1) == b"":
                stats["closed_by_agent"] += 1
                s.close()
                continue
        except BlockingIOError:
            pass
        except OSError:
            stats["closed_by_agent"] += 1
            s.close()
            continue
        alive.append(s)
    socks = alive
    time.sleep(0.05)
print(json.dumps(stats), flush=True)
"#;

/// Defect 1 of issue 13, as it was found: an agent with a 1,024-descriptor limit, an
/// unprivileged user holding 1,500 connections to its metrics endpoint for 6 s, a steady UDP
/// stream meanwhile. Every packet is captured or counted as dropped, the tap never detaches,
/// and `tap ctl status` and the stream socket keep working for their owner.
#[test]
fn an_unprivileged_user_cannot_blind_the_agent() {
    const SENT: u32 = 20_000;
    let t = Topology::new();
    let dir = TempDir::new();
    let (socket, serve, config) = (
        dir.join("ctl.sock"),
        dir.join("u.sock"),
        dir.join("tap.toml"),
    );
    std::fs::write(
        &config,
        format!(
            "[agent]\ncontrol_socket = \"{}\"\nmetrics_listen = \"{METRICS}\"\n\n[[tap]]\nname = \"u\"\ninterfaces = [\"veth-b\"]\nhook = \"tc-ingress\"\nfilter = \"udp dst port 9\"\nserve = \"{}\"\n[tap.file]\npath = \"{}/u.pcap\"\nflush_interval_ms = 50\n",
            socket.display(),
            serve.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let mut cmd = t.b.cmd("prlimit");
    cmd.arg("--nofile=1024:1024").arg(tap_bin());
    let mut agent = Agent::start_with(cmd, &config, &socket);
    agent.wait_for_tap("u", "capturing", 1);
    agent.wait_attached("u", &["veth-b"]);
    let pid = agent.process.pid();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string();
    assert!(
        nofile.split_whitespace().nth(3) == Some("1024"),
        "the agent runs with 1,024 descriptors: {nofile}"
    );
    let detached_key = "tap=\"u\",interface=\"veth-b\"";
    // The start's own detached time is closed at the agent's next accounting tick.
    let before = wait_until("the start accounted", Duration::from_secs(10), || {
        let m = scrape(&t.b, METRICS);
        (m.get("tap_interfaces_detached", "tap=\"u\"") == Some(0.0)).then_some(m)
    });
    let detached_before = before
        .get("tap_detached_seconds_total", detached_key)
        .unwrap_or_else(|| panic!("no detached counter:\n{}", before.text));

    // The owner's own stream client, reading throughout.
    let mut client = UnixStream::connect(&serve).expect("connecting to the stream");
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = client.read_to_end(&mut bytes);
        bytes
    });

    let mut attack = t.b.cmd("setpriv");
    attack
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            // The system's: root's own may live where nobody cannot reach it.
            "/usr/bin/python3",
            "-c",
            ATTACKER,
            "127.0.0.1",
            "9750",
            "6",
            "1500",
        ])
        .arg(&socket)
        .arg(&serve)
        .stdin(std::process::Stdio::null());
    let attacker = Background::spawn_collecting_stdout("attacker", attack);
    let attack_started = Instant::now();
    std::thread::sleep(Duration::from_millis(500));

    let mut fds_peak = 0;
    let mut status_checks = 0;
    std::thread::scope(|s| {
        let a = &t.a;
        let sender = s.spawn(move || {
            traffic::paced_udp(a, B_V4, SENT, 100, Duration::from_secs(6));
        });
        while !sender.is_finished() {
            fds_peak = fds_peak.max(open_fds(pid));
            // The owner's control socket answers, and the tap is attached, all along.
            assert_eq!(
                agent.attached("u"),
                ["veth-b"],
                "detached during the attack"
            );
            status_checks += 1;
            std::thread::sleep(Duration::from_millis(300));
        }
        sender.join().expect("sender");
    });
    let ended = attacker.wait(Duration::from_secs(30));
    let attack_secs = attack_started.elapsed().as_secs_f64();
    assert!(ended.status.success(), "attacker: {}", ended.stderr);
    let report: serde_json::Value =
        serde_json::from_str(ended.stdout.trim()).expect("the attacker's report");
    assert!(
        report["peak"].as_u64().unwrap() >= 1200,
        "the attack held fewer connections than the one that was found: {report}"
    );
    for path in [&socket, &serve] {
        assert_eq!(
            report["unix"][path.to_str().unwrap()],
            "EACCES",
            "nobody reached an owner-only socket: {report}"
        );
    }

    let m = wait_until(
        "every matched packet written or counted (the ring drained)",
        Duration::from_secs(20),
        || {
            let m = scrape(&t.b, METRICS);
            let done = m.tap("tap_packets_written_total", "u")
                + m.tap("tap_ring_drops_total", "u")
                + m.tap("tap_sink_drops_total", "u");
            (done >= m.tap("tap_packets_matched_total", "u")).then_some(m)
        },
    );
    let (matched, written, ring, sink) = (
        m.tap("tap_packets_matched_total", "u"),
        m.tap("tap_packets_written_total", "u"),
        m.tap("tap_ring_drops_total", "u"),
        m.tap("tap_sink_drops_total", "u"),
    );
    eprintln!(
        "attack: {} connections opened by nobody, {} held at once, {} closed by the agent, over {attack_secs:.1} s; \
         agent: at most {fds_peak} descriptors open of 1024, {status_checks} status checks; \
         packets: {SENT} sent, {matched} matched, {written} written, {ring} ring drops, {sink} sink drops",
        report["connects"], report["peak"], report["closed_by_agent"]
    );
    assert_eq!(
        matched,
        u64::from(SENT),
        "packets the tap never saw:\n{}\nagent:\n{}",
        m.text,
        agent.stderr()
    );
    assert_eq!(written + ring + sink, matched, "{}", m.text);
    assert_eq!(
        m.get("tap_detached_seconds_total", detached_key),
        Some(detached_before),
        "detached time grew during the attack:\n{}",
        m.text
    );
    assert_eq!(m.tap("tap_interfaces_detached", "u"), 0);
    assert!(fds_peak < 1024 - 64, "{fds_peak} descriptors open");

    let exited = agent.stop();
    assert!(
        !exited.stderr.contains("detached iface=veth-b") && !exited.stderr.contains("not attached"),
        "{}",
        exited.stderr
    );
    assert!(
        exited.stderr.contains(" unaccounted=0"),
        "{}",
        exited.stderr
    );
    let stream = Pcap::parse(&reader.join().unwrap());
    let line = exited
        .stderr
        .lines()
        .find(|l| l.contains("serve ") && l.contains("client 1: "))
        .unwrap_or_else(|| panic!("no serve line:\n{}", exited.stderr));
    assert!(
        line.contains(&format!(
            "client 1: {} packets delivered",
            stream.records.len()
        )),
        "{line}"
    );
    assert!(
        stream.records.len() as u64 + sink >= written,
        "the owner's stream client got {} of {written}",
        stream.records.len()
    );
    assert_eq!(
        Pcap::read(&dir.join("u.pcap")).records.len() as u64,
        written
    );
}

/// Runs `tap capture -i lo -F FILTER -w OUT` in `ns`, measured.
fn capture_with_filter_file(ns: &Netns, filter: &Path, out: &Path) -> Measured {
    let cmd = tap::command(
        ns,
        &[],
        &[
            "-i",
            "lo",
            "-F",
            &filter.to_string_lossy(),
            "-w",
            &out.to_string_lossy(),
        ],
    );
    run_measured("tap capture -F", cmd, START_TIMEOUT)
}

/// One line, `tap: ` and each of `expected`, exit status 1.
fn assert_one_line_error(m: &Measured, expected: &[&str]) {
    assert_eq!(m.status.code(), Some(1), "{}", m.stderr);
    let lines: Vec<&str> = m.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line:\n{}", m.stderr);
    for e in expected {
        assert!(lines[0].contains(e), "{e:?} missing from {}", lines[0]);
    }
}

/// A file of `len` bytes that holds nothing (a sparse file).
fn sparse(path: &Path, len: u64) {
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

/// `-F /dev/zero` (once killed by the OOM killer at 24 GB), `/dev/urandom` and a 1 GB sparse
/// file (each over a minute) fail at once, naming what is wrong, with little memory.
#[test]
fn filter_files_that_are_devices_or_huge_fail_fast() {
    let ns = Netns::new("hard");
    let dir = TempDir::new();
    let out = dir.join("out.pcap");
    let small = dir.join("small.filter");
    std::fs::write(&small, "udp and bogus\n").unwrap();
    let baseline = capture_with_filter_file(&ns, &small, &out);
    assert_one_line_error(&baseline, &["bogus"]);
    let huge = dir.join("huge.filter");
    sparse(&huge, 1 << 30);
    let long = dir.join("long.filter");
    // Under the file limit, over the expression limit: refused before parsing.
    std::fs::write(&long, "udp or ".repeat(300_000)).unwrap();
    let word = dir.join("word.filter");
    std::fs::write(&word, "x".repeat(900_000)).unwrap();
    for (filter, expected) in [
        (
            Path::new("/dev/zero"),
            &["/dev/zero", "a character device, not a regular file"][..],
        ),
        (
            Path::new("/dev/urandom"),
            &["/dev/urandom", "a character device"][..],
        ),
        (
            huge.as_path(),
            &["is 1073741824 bytes; the limit is 4 MiB"][..],
        ),
        (
            long.as_path(),
            &["the expression is", "bytes; the limit is 1048576"][..],
        ),
        (
            word.as_path(),
            &["'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx… (900000 characters)' at column 1"][..],
        ),
    ] {
        let m = capture_with_filter_file(&ns, filter, &out);
        eprintln!(
            "-F {}: {:.3} s, peak RSS {} KiB (baseline {} KiB): {}",
            filter.display(),
            m.elapsed.as_secs_f64(),
            m.max_rss_kib,
            baseline.max_rss_kib,
            m.stderr.trim()
        );
        assert_one_line_error(&m, expected);
        assert!(m.stderr.len() < 400, "{}", m.stderr);
        assert!(
            m.max_rss_kib < baseline.max_rss_kib + EXTRA_KIB,
            "{}: {} KiB against {} KiB",
            filter.display(),
            m.max_rss_kib,
            baseline.max_rss_kib
        );
        assert!(!out.exists());
    }
}

fn agent_config(dir: &TempDir, filter_file: &Path) -> String {
    format!(
        "[agent]\ncontrol_socket = \"{}\"\n\n[[tap]]\nname = \"f\"\ninterfaces = [\"lo\"]\nfilter_file = \"{}\"\n[tap.file]\npath = \"{}/f.pcap\"\n",
        dir.join("ctl.sock").display(),
        filter_file.display(),
        dir.path().display()
    )
}

/// The same as `filter_file` in the agent: refused at start (the agent does not start) and on
/// reload (the running filter stays), fast and with little memory.
#[test]
fn agent_filter_files_that_are_devices_or_huge_are_refused_at_start_and_on_reload() {
    let ns = Netns::new("hard");
    let dir = TempDir::new();
    let config = dir.join("tap.toml");
    let good = dir.join("good.filter");
    std::fs::write(&good, "icmp # pings\n").unwrap();
    let huge = dir.join("huge.filter");
    sparse(&huge, 1 << 30);
    let bad: [(&Path, &str); 3] = [
        (Path::new("/dev/zero"), "a character device"),
        (Path::new("/dev/urandom"), "a character device"),
        (&huge, "is 1073741824 bytes; the limit is 4 MiB"),
    ];
    let agent_cmd = || {
        let mut c = ns.cmd(&tap_bin().to_string_lossy());
        c.args(["agent", "--config"]).arg(&config);
        c
    };
    // A baseline: an agent that refuses a small, wrong filter file.
    let wrong = dir.join("wrong.filter");
    std::fs::write(&wrong, "icmp and bogus").unwrap();
    std::fs::write(&config, agent_config(&dir, &wrong)).unwrap();
    let baseline = run_measured("tap agent", agent_cmd(), START_TIMEOUT);
    assert_one_line_error(&baseline, &["filter_file", "bogus"]);
    for (file, expected) in bad {
        std::fs::write(&config, agent_config(&dir, file)).unwrap();
        let m = run_measured("tap agent", agent_cmd(), START_TIMEOUT);
        eprintln!(
            "agent start, filter_file {}: {:.3} s, peak RSS {} KiB (baseline {} KiB)",
            file.display(),
            m.elapsed.as_secs_f64(),
            m.max_rss_kib,
            baseline.max_rss_kib
        );
        assert_one_line_error(&m, &["tap.toml:", "filter_file", expected]);
        assert!(m.max_rss_kib < baseline.max_rss_kib + EXTRA_KIB);
        assert!(!dir.join("ctl.sock").exists());
    }

    std::fs::write(&config, agent_config(&dir, &good)).unwrap();
    let mut agent = Agent::start(&ns, &config, &dir.join("ctl.sock"));
    agent.wait_for_tap("f", "capturing", 1);
    let start_peak = peak_rss_kib(agent.process.pid());
    for (n, (file, expected)) in bad.iter().enumerate() {
        std::fs::write(&config, agent_config(&dir, file)).unwrap();
        agent.hangup();
        agent.wait_for_count("reload refused", n + 1, Duration::from_secs(30));
        let text = agent.stderr();
        let line = text
            .lines()
            .filter(|l| l.contains("reload refused"))
            .nth(n)
            .unwrap();
        assert!(
            line.contains(expected) && line.contains("filter_file"),
            "{line}"
        );
    }
    let peak = peak_rss_kib(agent.process.pid());
    eprintln!("agent reloads refused: peak RSS {start_peak} KiB before, {peak} KiB after");
    assert!(
        peak < start_peak + EXTRA_KIB,
        "{peak} KiB against {start_peak} KiB"
    );
    // The file it started with is the filter still running.
    let status = agent.tap_status("f");
    assert_eq!(status["stats"]["filter"], "icmp", "{status}");
    agent.stop();
}

/// Writes a pcap file of `n` 60-byte Ethernet frames.
fn some_frames(path: &Path, n: usize) {
    let mut out = Vec::new();
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for i in 0..n {
        for v in [1_700_000_000 + u32::try_from(i).unwrap(), 0, 60, 60] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let mut frame = [0u8; 60];
        frame[12] = 0x08;
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out).unwrap();
}

/// `tap replay -w` writes the way `tap capture -w` does: an existing file and a symbolic link are
/// refused and left as they are; a new file is 0600; `--force` overwrites a plain file.
#[test]
fn replay_refuses_an_existing_output_and_a_symlink() {
    let ns = Netns::new("hard");
    let dir = TempDir::new();
    let input = dir.join("in.pcap");
    some_frames(&input, 3);
    let replay = |out: &Path, extra: &[&str]| {
        let mut c = ns.cmd(&tap_bin().to_string_lossy());
        c.args(["replay", "-q", "-r"])
            .arg(&input)
            .arg("-w")
            .arg(out)
            .args(extra);
        run_measured("tap replay", c, START_TIMEOUT)
    };
    let existing = dir.join("existing.pcap");
    std::fs::write(&existing, b"keep me").unwrap();
    let m = replay(&existing, &[]);
    assert_one_line_error(&m, &["exists: use --force to overwrite it"]);
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");

    let target = dir.join("target");
    std::fs::write(&target, b"not yours").unwrap();
    let link = dir.join("link.pcap");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for extra in [&[][..], &["--force"][..]] {
        let m = replay(&link, extra);
        assert_one_line_error(&m, &["it is a symbolic link"]);
        assert_eq!(std::fs::read(&target).unwrap(), b"not yours");
    }

    let fresh = dir.join("fresh.pcap");
    let m = replay(&fresh, &[]);
    assert!(m.status.success(), "{}", m.stderr);
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    assert_eq!(Pcap::read(&fresh).records.len(), 3);
    let m = replay(&existing, &["--force"]);
    assert!(m.status.success(), "{}", m.stderr);
    assert_eq!(Pcap::read(&existing).records.len(), 3);
    // A replay that fails leaves no output behind.
    let never = dir.join("never.pcap");
    let mut c = ns.cmd(&tap_bin().to_string_lossy());
    c.args(["replay", "-r", "/nonexistent.pcap", "-w"])
        .arg(&never);
    let m = run_measured("tap replay", c, START_TIMEOUT);
    assert_one_line_error(&m, &["/nonexistent.pcap"]);
    assert!(!never.exists());
}

/// The agent stops at a metrics address already taken, and takes its control socket with it.
#[test]
fn a_failed_start_leaves_no_control_socket() {
    let ns = Netns::new("hard");
    let dir = TempDir::new();
    let (socket, config) = (dir.join("run/ctl.sock"), dir.join("tap.toml"));
    let mut holder = ns.cmd("python3");
    holder.args([
        "-c",
        "import socket, sys, time\ns = socket.socket()\ns.bind(('127.0.0.1', 9750))\ns.listen()\nprint('ready', file=sys.stderr, flush=True)\ntime.sleep(60)\n",
    ]);
    let mut holder = Background::spawn("port holder", holder);
    holder.wait_for_stderr("ready", Duration::from_secs(10));
    std::fs::write(
        &config,
        format!(
            "[agent]\ncontrol_socket = \"{}\"\nmetrics_listen = \"{METRICS}\"\n\n[[tap]]\nname = \"x\"\ninterfaces = [\"lo\"]\n[tap.file]\npath = \"{}/x.pcap\"\n",
            socket.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let mut cmd = ns.cmd(&tap_bin().to_string_lossy());
    cmd.args(["agent", "--config"]).arg(&config);
    let m = run_measured("tap agent", cmd, START_TIMEOUT);
    assert_one_line_error(&m, &["metrics endpoint 127.0.0.1:9750", "in use"]);
    assert!(!socket.exists(), "the control socket was left behind");
    drop(holder);
}

/// `--stats-json` is created before anything is attached, as the `-Z` user would create it: a
/// missing directory or one the user cannot write fails at once, with nothing attached and no
/// capture file; otherwise the file belongs to the user and holds the summary.
#[test]
fn stats_json_is_checked_before_anything_is_attached() {
    let t = Topology::new();
    let open = TempDir::world_writable();
    let closed = TempDir::new();
    std::fs::set_permissions(closed.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = open.join("out.pcap");
    let run = |stats: &Path, extra: &[&str]| {
        let mut args = vec![
            "-i".to_string(),
            t.b_if.clone(),
            "-w".into(),
            out.to_string_lossy().into_owned(),
            "--stats-json".into(),
            stats.to_string_lossy().into_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_measured(
            "tap capture --stats-json",
            tap::command(&t.b, &[], &args),
            START_TIMEOUT,
        )
    };
    let missing = open.join("no/such/dir/s.json");
    let m = run(&missing, &[]);
    assert_one_line_error(&m, &["--stats-json", "no/such/dir/s.json", "No such file"]);
    assert!(!out.exists());
    assert_nothing_attached(&t.b, &t.b_if);

    let unwritable = closed.join("s.json");
    let m = run(&unwritable, &["-Z", "nobody"]);
    assert_one_line_error(&m, &["--stats-json", "Permission denied"]);
    assert!(!out.exists() && !unwritable.exists());
    assert_nothing_attached(&t.b, &t.b_if);

    let existing = open.join("taken.json");
    std::fs::write(&existing, b"{}").unwrap();
    let m = run(&existing, &[]);
    assert_one_line_error(&m, &["taken.json exists: use --force"]);
    assert_eq!(std::fs::read(&existing).unwrap(), b"{}");
    assert!(!out.exists());

    let good = open.join("s.json");
    let m = run(&good, &["-Z", "nobody", "--duration", "0.5"]);
    assert!(m.status.success(), "{}", m.stderr);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&good).unwrap()).expect("the summary as JSON");
    assert_eq!(json["unaccounted"], 0, "{json}");
    assert_eq!(
        tap_tests::storage_util::owner(&good),
        tap_tests::storage_util::uid_of("nobody")
    );
    let mode = std::fs::metadata(&good).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}
