//! `-w -` writes pcap to standard output, which tcpdump reads from a pipe while the capture runs
//! (tap flushes whenever the ring is idle) and to the end.

use std::{process::Stdio, time::Duration};

use tap_tests::{
    Topology,
    process::Background,
    tap::{self, Summary},
    topology::B_V4,
    traffic,
};

#[test]
fn tcpdump_reads_tap_from_a_pipe() {
    let t = Topology::new();
    let mut tap_cmd = tap::command(&t.b, &["--log", "info"], &["-i", &t.b_if, "-w", "-"]);
    tap_cmd.stdout(Stdio::piped());
    let mut tap = Background::spawn("tap", tap_cmd);
    let mut reader = std::process::Command::new("tcpdump");
    reader
        .args(["-r", "-", "-nn", "-l"])
        .stdin(Stdio::from(tap.take_stdout()));
    let mut tcpdump = Background::spawn_collecting_stdout("tcpdump -r -", reader);
    tap.wait_for_stderr(tap::READY, tap::START_TIMEOUT);

    traffic::ping(&t.a, B_V4, 3, &[]);
    // Three requests and three replies reach tcpdump while tap still runs.
    tcpdump.wait_for_stdout("ICMP echo reply, id", Duration::from_secs(10));
    tap_tests::wait_until("6 packets from the pipe", Duration::from_secs(10), || {
        (tcpdump.stdout().lines().count() >= 6).then_some(())
    });
    assert!(
        tap.running(),
        "tap ended before it was stopped:\n{}",
        tap.stderr()
    );

    let summary = Summary::parse(&tap::stop(tap).stderr);
    // tap's exit closes the pipe: tcpdump reads to the end and exits cleanly.
    let read = tcpdump.wait(Duration::from_secs(10));
    assert!(
        read.status.success(),
        "tcpdump -r - failed ({}):\n{}",
        read.status,
        read.stderr
    );
    let complaints: Vec<&str> = read
        .stderr
        .lines()
        .filter(|l| !l.starts_with("reading from file -"))
        .collect();
    assert!(complaints.is_empty(), "tcpdump complained: {}", read.stderr);
    let lines: Vec<&str> = read.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "tcpdump read:\n{}", read.stdout);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("ICMP echo request"))
            .count(),
        3
    );
    assert_eq!(summary.captured, 6);
}
