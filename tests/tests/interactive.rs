//! `tap capture` for a person at a terminal: the live status line (and its absence with -q or
//! without a terminal), and the final summary as JSON.

use std::{process::Command, time::Duration};

use tap_tests::{
    TempDir, Topology, pcap::Pcap, process::Background, tap, tap::Capture, tap_bin, topology::B_V4,
    traffic,
};

#[test]
fn stats_json_holds_the_summary() {
    let t = Topology::new();
    let dir = TempDir::new();
    let (out, json) = (dir.join("x.pcap"), dir.join("stats.json"));
    let running = Capture::on(&t.b_if)
        .args(&[
            "--hook",
            "tc-ingress",
            "-w",
            out.to_str().unwrap(),
            "--stats-json",
            json.to_str().unwrap(),
            "icmp",
        ])
        .start(&t.b);
    traffic::ping(&t.a, B_V4, 5, &[]);
    let exited = tap::stop(running);
    // Not a terminal: no status line, the summary as before.
    assert!(!exited.stderr.contains("pkt/s"), "{}", exited.stderr);
    let summary = tap::Summary::parse(&exited.stderr);
    let text = std::fs::read_to_string(&json).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["written"], summary.captured, "{text}");
    assert_eq!(v["written"], 5, "{text}");
    assert_eq!(v["kernel"]["matched"], summary.received, "{text}");
    assert_eq!(v["kernel"]["ring_full"], 0, "{text}");
    assert_eq!(v["writer_dropped"], 0, "{text}");
    assert_eq!(v["unaccounted"], 0, "{text}");
    assert_eq!(
        v["written_bytes"],
        std::fs::metadata(&out).unwrap().len(),
        "{text}"
    );
    assert_eq!(v["rules"][0][0], "icmp", "{text}");
    assert_eq!(Pcap::read(&out).records.len(), 5);
}

/// Runs `tap capture ARGS` for `secs` seconds in `t.b` under script(1), so its stderr is a
/// terminal, with echoes flowing; returns what the terminal showed.
fn on_a_terminal(t: &Topology, dir: &TempDir, extra: &str) -> String {
    let out = dir.join(&format!("t{}.pcap", extra.len()));
    let cmd = format!(
        "ip netns exec {} {} capture -i {} --hook tc-ingress --duration 2 -w {} {extra} icmp",
        t.b.name,
        tap_bin().display(),
        t.b_if,
        out.display()
    );
    let mut ping = t.a.cmd("ping");
    ping.args(["-n", "-q", "-c", "30", "-i", "0.05", B_V4])
        .stdout(std::process::Stdio::null());
    let ping = Background::spawn("ping", ping);
    let mut script = Command::new("script");
    script
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("TAP_LOG")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    let shown = Background::spawn_collecting_stdout("script", script).wait(Duration::from_secs(30));
    assert!(shown.status.success(), "{}{}", shown.stdout, shown.stderr);
    let _ = ping.wait(Duration::from_secs(10));
    shown.stdout
}

#[test]
fn a_terminal_gets_a_live_status_line_unless_quiet() {
    let t = Topology::new();
    let dir = TempDir::new();
    let shown = on_a_terminal(&t, &dir, "");
    // Redrawn in place: carriage returns, a line cleared, packets and rate; gone before the summary.
    assert!(shown.matches("pkt/s").count() >= 2, "{shown:?}");
    assert!(
        shown.contains('\r') && shown.contains("\x1b[K"),
        "{shown:?}"
    );
    assert!(
        shown.contains(" packets, ") && shown.contains(" dropped, "),
        "{shown:?}"
    );
    assert!(
        shown.contains("packets captured"),
        "the summary follows: {shown:?}"
    );
    let quiet = on_a_terminal(&t, &dir, "-q");
    assert!(
        !quiet.contains("pkt/s") && !quiet.contains("packets captured"),
        "{quiet:?}"
    );
}
