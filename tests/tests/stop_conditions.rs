//! How a capture ends by itself: `-c COUNT` after COUNT packets, `--duration SECS` after SECS.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use tap_tests::{
    TempDir, Topology, pcap::Pcap, process::Background, tap::Capture, tap::Summary, topology::B_V4,
};

#[test]
fn count_stops_after_that_many_packets() {
    let t = Topology::new();
    let dir = TempDir::new();
    let file = dir.join("tap.pcap");
    let mut tap = Capture::on(&t.b_if)
        .args(&["-c", "5", "-w", &file.to_string_lossy()])
        .start(&t.b);
    // Ten packets a second each way for up to 20 s: far more than 5, and bounded should tap
    // never stop (the guard kills ping when the test ends).
    let mut ping = t.a.cmd("ping");
    ping.args(["-n", "-q", "-i", "0.1", "-c", "200", B_V4])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let _ping = Background::spawn("ping", ping);
    let deadline = Instant::now() + Duration::from_secs(20);
    while tap.running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let exited = tap.wait(Duration::from_secs(1));
    assert!(
        exited.status.success(),
        "tap -c 5 failed ({}):\n{}",
        exited.status,
        exited.stderr
    );
    let summary = Summary::parse(&exited.stderr);
    assert_eq!(
        Pcap::read(&file).records.len(),
        5,
        "records in the file; tap said:\n{}",
        exited.stderr
    );
    assert_eq!(summary.captured, 5);
}

#[test]
fn duration_stops_after_that_long() {
    let t = Topology::new();
    let dir = TempDir::new();
    let file = dir.join("tap.pcap");
    let tap = Capture::on(&t.b_if)
        .args(&["--duration", "1", "-w", &file.to_string_lossy()])
        .start(&t.b);
    let ready = Instant::now();
    let exited = tap.wait(Duration::from_secs(20));
    let after_ready = ready.elapsed();
    assert!(
        exited.status.success(),
        "tap --duration 1 failed ({}):\n{}",
        exited.status,
        exited.stderr
    );
    // The clock starts right after tap logs that it captures, which we see a few ms later at
    // most; the exit adds a detach and a flush. The upper bound is slack for a busy machine.
    assert!(
        exited.elapsed >= Duration::from_secs(1),
        "tap ran only {:?}",
        exited.elapsed
    );
    assert!(
        after_ready >= Duration::from_millis(900) && after_ready <= Duration::from_secs(4),
        "tap stopped {after_ready:?} after it began capturing"
    );
    Summary::parse(&exited.stderr);
    Pcap::read(&file);
}
