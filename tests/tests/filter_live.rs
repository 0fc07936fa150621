//! The filter on live traffic: replacement of a running capture's filter without loss, per-rule
//! hit counters, sampling and the rate cap (each skip counted), and bad expressions refused.

use std::{path::Path, time::Duration};

use tap_tests::{
    Netns, TempDir, Topology,
    pcap::Pcap,
    process::Background,
    tap::Capture,
    tap::{self, Summary},
    topology::B_V4,
};

/// ICMP echo requests in a pcap file.
fn echo_requests(path: &Path) -> usize {
    Pcap::read(path)
        .records
        .iter()
        .filter(|r| {
            r.data.len() > 34
                && r.data[12..14] == [0x08, 0x00]
                && r.data[23] == 1
                && r.data[34] == 8
        })
        .count()
}

/// A bounded ping flood: `count` echoes, `interval` seconds apart.
fn ping_background(ns: &Netns, count: u32, interval: &str) -> Background {
    let mut cmd = ns.cmd("ping");
    cmd.args([
        "-n",
        "-q",
        "-c",
        &count.to_string(),
        "-i",
        interval,
        "-w",
        "60",
        B_V4,
    ]);
    Background::spawn("ping", cmd)
}

/// The value of an extra summary line "N <suffix>", or 0 when the line is absent.
fn extra_count(summary: &Summary, suffix: &str) -> u64 {
    summary
        .extra
        .iter()
        .find_map(|l| l.strip_suffix(suffix).and_then(|n| n.trim().parse().ok()))
        .unwrap_or(0)
}

#[test]
fn filter_swaps_in_place_without_losing_packets_both_filters_select() {
    let t = Topology::new();
    let dir = TempDir::new();
    let filter = dir.join("filter");
    let out = dir.join("swap.pcap");
    std::fs::write(&filter, "icmp or udp port 1000\n").unwrap();
    let mut tap = Capture::on(&t.b_if)
        .args(&[
            "--hook",
            "tc-ingress",
            "-F",
            filter.to_str().unwrap(),
            "-w",
            out.to_str().unwrap(),
        ])
        .start(&t.b);
    let pings = 1500;
    let ping = ping_background(&t.a, pings, "0.002");
    // Swap back and forth while the echoes flow: every echo matches both filters.
    for i in 0..10 {
        std::thread::sleep(Duration::from_millis(150));
        let text = if i % 2 == 0 {
            "icmp or udp port 2000 # new\n"
        } else {
            "icmp or udp port 1000\n"
        };
        std::fs::write(&filter, text).unwrap();
        tap.signal(libc::SIGHUP);
    }
    let ping = ping.wait(Duration::from_secs(90));
    assert!(ping.status.success(), "ping failed: {}", ping.stderr);
    // The last filter selects UDP 1000 (10 swaps: back to the first); 2000 must no longer match.
    std::fs::write(&filter, "icmp or udp port 2000\n").unwrap();
    tap.signal(libc::SIGHUP);
    tap.wait_for_stderr("filter replaced", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    tap_tests::traffic::udp_burst(&t.a, B_V4, 7, 20); // to port 9: matches neither
    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    assert_eq!(
        echo_requests(&out),
        pings as usize,
        "echo requests lost across filter swaps:\n{}",
        exited.stderr
    );
    assert!(
        exited.stderr.matches("filter replaced").count() >= 10,
        "swaps not all applied:\n{}",
        exited.stderr
    );
    assert_eq!(
        summary.ring_dropped + summary.writer_dropped,
        0,
        "{}",
        exited.stderr
    );
    assert_eq!(summary.captured as usize, Pcap::read(&out).records.len());
}

#[test]
fn an_invalid_replacement_keeps_the_old_filter() {
    let t = Topology::new();
    let dir = TempDir::new();
    let filter = dir.join("filter");
    let out = dir.join("keep.pcap");
    std::fs::write(&filter, "icmp").unwrap();
    let mut tap = Capture::on(&t.b_if)
        .args(&[
            "--hook",
            "tc-ingress",
            "-F",
            filter.to_str().unwrap(),
            "-w",
            out.to_str().unwrap(),
        ])
        .start(&t.b);
    std::fs::write(&filter, "icmp and bogus-keyword").unwrap();
    tap.signal(libc::SIGHUP);
    tap.wait_for_stderr("the old one stays", Duration::from_secs(10));
    tap_tests::traffic::ping(&t.a, B_V4, 5, &[]);
    let exited = tap::stop(tap);
    assert_eq!(echo_requests(&out), 5, "{}", exited.stderr);
}

#[test]
fn rule_hits_are_counted_per_top_level_alternative() {
    let t = Topology::new();
    let dir = TempDir::new();
    let out = dir.join("rules.pcap");
    let tap = Capture::on(&t.b_if)
        .args(&[
            "--hook",
            "tc-ingress",
            "-w",
            out.to_str().unwrap(),
            "icmp",
            "or",
            "udp",
            "port",
            "9",
        ])
        .start(&t.b);
    tap_tests::traffic::ping(&t.a, B_V4, 4, &[]);
    tap_tests::traffic::udp_burst(&t.a, B_V4, 6, 20);
    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    assert_eq!(summary.captured, 10, "{}", exited.stderr);
    let rules: Vec<&String> = summary
        .extra
        .iter()
        .filter(|l| l.starts_with("rule "))
        .collect();
    assert_eq!(rules.len(), 2, "{}", exited.stderr);
    assert!(rules[0].starts_with("rule 0: 4 packets: icmp"), "{rules:?}");
    assert!(
        rules[1].starts_with("rule 1: 6 packets: udp port 9"),
        "{rules:?}"
    );
}

#[test]
fn sampling_keeps_one_in_n_and_counts_the_rest() {
    let t = Topology::new();
    let dir = TempDir::new();
    let out = dir.join("sample.pcap");
    let tap = Capture::on(&t.b_if)
        .args(&[
            "--hook",
            "tc-ingress",
            "--sample",
            "10",
            "-w",
            out.to_str().unwrap(),
            "udp",
            "port",
            "9",
        ])
        .start(&t.b);
    tap_tests::traffic::udp_burst(&t.a, B_V4, 1000, 20);
    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    let sampled_out = extra_count(&summary, " matched packets skipped by sampling");
    assert_eq!(summary.received, 1000, "{}", exited.stderr);
    assert_eq!(
        summary.captured + sampled_out + summary.ring_dropped,
        1000,
        "{}",
        exited.stderr
    );
    // 1 in 10 per CPU: at most one short per CPU of an exact tenth.
    let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get) as u64;
    assert!(
        (100 - cpus..=100).contains(&summary.captured),
        "{}",
        exited.stderr
    );
}

#[test]
fn the_rate_cap_keeps_at_most_the_rate_and_counts_the_rest() {
    let t = Topology::new();
    let dir = TempDir::new();
    let out = dir.join("rate.pcap");
    let tap = Capture::on(&t.b_if)
        .args(&[
            "--hook",
            "tc-ingress",
            "--max-rate",
            "100",
            "-w",
            out.to_str().unwrap(),
            "udp",
            "port",
            "9",
        ])
        .start(&t.b);
    // 2,000 datagrams in well under the cap's one-second window.
    tap_tests::traffic::udp_burst(&t.a, B_V4, 2000, 20);
    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    let limited = extra_count(&summary, " matched packets skipped by the rate cap");
    assert_eq!(summary.received, 2000, "{}", exited.stderr);
    assert!(limited > 0, "{}", exited.stderr);
    assert_eq!(
        summary.captured + limited + summary.ring_dropped,
        2000,
        "{}",
        exited.stderr
    );
    // Per-CPU windows: at most the cap per window, a few windows at most in this short run.
    assert!(summary.captured <= 100 * 4, "{}", exited.stderr);
}

#[test]
fn bad_expressions_are_one_line_errors_naming_the_token() {
    let t = Topology::new();
    for (expr, token) in [
        ("tcp and gateway foo", "gateway"),
        ("host 192.0.2.300", "192.0.2.300"),
        ("port 80 and (", "("),
    ] {
        let mut args = vec!["-i", t.b_if.as_str(), "-w", "/nonexistent/never.pcap"];
        args.extend(expr.split(' '));
        let exited = tap::run(&t.b, &args);
        assert!(!exited.status.success(), "{expr}: {}", exited.stderr);
        let lines: Vec<&str> = exited.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{expr}: {}", exited.stderr);
        assert!(lines[0].starts_with("tap: "), "{expr}: {}", exited.stderr);
        assert!(lines[0].contains(token), "{expr}: {}", exited.stderr);
    }
}
