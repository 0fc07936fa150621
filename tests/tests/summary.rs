//! The exit summary's numbers: what was written, what the programs selected, and what was lost
//! where, adding up both under light traffic and when a tiny ring overflows.

use tap_tests::{
    TempDir, Topology,
    oracle::tcpdump_read,
    pcap::Pcap,
    tap::Capture,
    tap::{self, Summary},
    topology::B_V4,
    traffic,
};

#[test]
fn light_traffic_is_all_captured() {
    let t = Topology::new();
    let dir = TempDir::new();
    let file = dir.join("tap.pcap");
    let tap = Capture::on(&t.b_if)
        .write(&file.to_string_lossy())
        .start(&t.b);
    traffic::ping(&t.a, B_V4, 3, &[]);
    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    // The topology is quiet: three requests in, three replies out, and nothing else.
    let expected = Summary {
        captured: 6,
        received: 6,
        ring_dropped: 0,
        writer_dropped: 0,
        extra: vec![],
    };
    assert_eq!(summary, expected, "tap said:\n{}", exited.stderr);
    assert_eq!(Pcap::read(&file).records.len(), 6);
}

#[test]
fn ring_overflow_is_counted_and_accounts_balance() {
    const BURST: u64 = 5000;
    let t = Topology::new();
    let dir = TempDir::new();
    let file = dir.join("tap.pcap");
    // One page of ring holds a single record of a 1042-byte frame (a 2 KiB slot): a burst must
    // overflow it, whatever the drain's pace.
    let tap = Capture::on(&t.b_if)
        .args(&[
            "--hook",
            "tc-ingress",
            "--ring-size",
            "4096",
            "-w",
            &file.to_string_lossy(),
        ])
        .start(&t.b);
    traffic::udp_burst(&t.a, B_V4, BURST as u32, 1000);
    let exited = tap::stop(tap);
    let s = Summary::parse(&exited.stderr);
    assert!(
        s.ring_dropped > 0,
        "no ring-full drops with a one-page ring:\n{}",
        exited.stderr
    );
    assert_eq!(
        s.captured + s.ring_dropped + s.writer_dropped,
        s.received,
        "accounting does not balance:\n{}",
        exited.stderr
    );
    assert!(
        s.extra.is_empty(),
        "unexpected summary lines: {:?}",
        s.extra
    );
    // Ingress on a quiet link is the burst alone; the kernel may drop some of it before tc under
    // pressure (the backlog queue), never add to it.
    assert!(
        s.received <= BURST && s.received >= BURST / 2,
        "{} of {BURST} datagrams selected",
        s.received
    );
    assert_eq!(
        Pcap::read(&file).records.len() as u64,
        s.captured,
        "summary vs file"
    );
    assert_eq!(
        tcpdump_read(&file).len() as u64,
        s.captured,
        "what tcpdump reads back"
    );
}

#[test]
fn program_stats_report_the_programs_runs_and_time() {
    const BURST: u32 = 2000;
    let t = Topology::new();
    let dir = TempDir::new();
    let file = dir.join("tap.pcap");
    let json = dir.join("summary.json");
    let tap = Capture::on(&t.b_if)
        .args(&[
            "--hook",
            "tc-ingress",
            "--program-stats",
            "--stats-json",
            &json.to_string_lossy(),
            "-w",
            &file.to_string_lossy(),
        ])
        .start(&t.b);
    traffic::udp_burst(&t.a, B_V4, BURST, 100);
    let exited = tap::stop(tap);
    let text = std::fs::read_to_string(&json).expect("the summary JSON");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let programs = v["programs"].as_array().expect("a programs list");
    assert_eq!(programs.len(), 1, "one program loaded: {text}");
    let p = &programs[0];
    assert_eq!(p["name"], "tc_tap_ingress");
    let runs = p["runs"].as_u64().unwrap();
    let seen = v["kernel"]["seen"].as_u64().unwrap();
    let received = v["kernel"]["matched"].as_u64().unwrap();
    // The program runs once per packet it sees. The statistics go on just after the programs
    // are attached, so a packet in between (a fresh link's IPv6 chatter) is seen, not timed.
    assert!(
        runs <= seen && runs + 16 >= seen,
        "{runs} timed runs, {seen} packets seen"
    );
    assert!(
        received >= u64::from(BURST) / 2,
        "{received} of {BURST} datagrams"
    );
    let ns = p["run_time_ns"].as_u64().unwrap() as f64 / runs as f64;
    assert!(
        (1.0..100_000.0).contains(&ns),
        "{ns} ns per run is no program's cost"
    );
    let line = format!("program tc_tap_ingress: {runs} runs, {ns:.1} ns per run");
    assert!(
        exited.stderr.contains(&line),
        "the summary says {line:?}:\n{}",
        exited.stderr
    );
}
