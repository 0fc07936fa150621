//! Chain of custody: a real capture under rotation leaves a manifest that `tap verify` accepts,
//! and every kind of tampering (a flipped byte, a deleted manifest line, two files swapped, a
//! manifest cut mid-line, a signature altered) makes it fail, naming the file or the line.

use std::{path::Path, process::Command};

use tap_tests::{
    TempDir, Topology, run_ok,
    storage_util::list_dir,
    tap::Capture,
    tap::{self, Summary},
    tap_bin,
    topology::B_V4,
    traffic,
};

const MANIFEST: &str = "tap-custody.jsonl";

fn arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `tap verify DIR [extra]`: (exit status 0, the one line it printed).
fn verify(dir: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(tap_bin())
        .arg("verify")
        .arg(dir)
        .args(extra)
        .env_remove("TAP_LOG")
        .output()
        .expect("running tap verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.trim().lines().count(), 1, "one line: {text}");
    match out.status.code() {
        Some(0) => (true, text.trim().to_string()),
        Some(1) => (false, text.trim().to_string()),
        other => panic!("tap verify exited with {other:?}: {text}"),
    }
}

fn assert_intact(dir: &Path, extra: &[&str]) -> String {
    let (ok, line) = verify(dir, extra);
    assert!(ok, "expected intact: {line}");
    assert!(line.contains(": intact: "), "{line}");
    line
}

fn assert_broken(dir: &Path, extra: &[&str], names: &str) -> String {
    let (ok, line) = verify(dir, extra);
    assert!(!ok, "expected a broken chain naming {names}: {line}");
    assert!(line.contains(names), "the message names {names}: {line}");
    line
}

/// Runs `f` on a copy of `dir`, so each tampering starts from the untouched capture.
fn with_copy(dir: &Path, f: impl FnOnce(&Path)) {
    let copy = TempDir::new();
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", arg(dir)))
            .arg(copy.path()),
    );
    f(copy.path());
}

#[test]
fn a_rotated_capture_verifies_and_tampering_is_named() {
    let t = Topology::new();
    let dir = TempDir::new();
    // 40 frames of 1042 bytes into files of at most 10,000 bytes: five files, the ring keeping
    // the last three (two recorded as removed).
    let tap = Capture::on(t.b_if.as_str())
        .args(&[
            "-w",
            &arg(&dir.join("cap.pcap")),
            "-C",
            "0.01",
            "-W",
            "3",
            "-f",
            "icmp",
        ])
        .start(&t.b);
    traffic::ping(&t.a, B_V4, 20, &["-s", "1000"]);
    let summary = Summary::parse(&tap::stop(tap).stderr);
    assert_eq!(summary.captured, 40);
    assert_eq!(
        list_dir(dir.path()),
        [
            "cap_00003.pcap",
            "cap_00004.pcap",
            "cap_00005.pcap",
            MANIFEST
        ]
    );
    let manifest = std::fs::read_to_string(dir.join(MANIFEST)).unwrap();
    assert_eq!(
        manifest.lines().count(),
        7,
        "5 added, 2 removed:\n{manifest}"
    );
    // sha256sum agrees with the manifest on each file.
    let sums = tap_tests::run_stdout(Command::new("sha256sum").current_dir(dir.path()).args([
        "cap_00003.pcap",
        "cap_00004.pcap",
        "cap_00005.pcap",
    ]));
    for line in sums.lines() {
        let (sum, name) = line.split_once("  ").unwrap();
        let entry = manifest
            .lines()
            .find(|l| l.contains(&format!("\"name\":\"{name}\",\"size\"")))
            .unwrap_or_else(|| panic!("no add entry for {name}:\n{manifest}"));
        assert!(entry.contains(&format!("\"sha256\":\"{sum}\"")), "{entry}");
    }
    let line = assert_intact(dir.path(), &[]);
    assert!(line.contains("7 entries, 3 files"), "{line}");

    // One byte flipped in a file.
    with_copy(dir.path(), |d| {
        let f = d.join("cap_00004.pcap");
        let mut bytes = std::fs::read(&f).unwrap();
        bytes[100] ^= 0x20;
        std::fs::write(&f, bytes).unwrap();
        assert_broken(d, &[], "cap_00004.pcap (entry");
    });
    // A manifest line deleted (entry 5, which added cap_00004.pcap): the next entry (6, the
    // ring removing cap_00002.pcap) no longer follows.
    with_copy(dir.path(), |d| {
        let text = std::fs::read_to_string(d.join(MANIFEST)).unwrap();
        let mut kept = String::new();
        for l in text
            .lines()
            .filter(|l| !l.contains("\"name\":\"cap_00004.pcap\",\"size\""))
        {
            kept.push_str(l);
            kept.push('\n');
        }
        std::fs::write(d.join(MANIFEST), kept).unwrap();
        assert_broken(d, &[], "cap_00002.pcap (entry 6)");
    });
    // Two files swapped.
    with_copy(dir.path(), |d| {
        std::fs::rename(d.join("cap_00003.pcap"), d.join("x")).unwrap();
        std::fs::rename(d.join("cap_00005.pcap"), d.join("cap_00003.pcap")).unwrap();
        std::fs::rename(d.join("x"), d.join("cap_00005.pcap")).unwrap();
        assert_broken(d, &[], "cap_00003.pcap (entry");
    });
    // The manifest cut mid-line, as a kill -9 during an append leaves it.
    with_copy(dir.path(), |d| {
        let text = std::fs::read(d.join(MANIFEST)).unwrap();
        std::fs::write(d.join(MANIFEST), &text[..text.len() - 30]).unwrap();
        let line = assert_broken(d, &[], "line 7 of tap-custody.jsonl");
        assert!(line.contains("partial entry"), "{line}");
    });
    signed(dir.path());
}

/// A key pair, a seal of `dir`'s manifest, a check against the public key; then a signature
/// altered.
fn signed(dir: &Path) {
    let keys = TempDir::new();
    let secret = keys.join("tap.key");
    run_ok(Command::new(tap_bin()).args(["key", "generate", &arg(&secret)]));
    let public = format!("{}.pub", arg(&secret));
    run_ok(Command::new(tap_bin()).args(["key", "sign", "--sign-key", &arg(&secret), &arg(dir)]));
    let line = assert_intact(dir, &["--public-key", &public]);
    assert!(line.contains("head signed by"), "{line}");
    // Without the key nothing changes for the files; with another key the check fails.
    let other = keys.join("other.key");
    run_ok(Command::new(tap_bin()).args(["key", "generate", &arg(&other)]));
    assert_broken(
        dir,
        &["--public-key", &format!("{}.pub", arg(&other))],
        "entry 8",
    );
    with_copy(dir, |d| {
        let text = std::fs::read_to_string(d.join(MANIFEST)).unwrap();
        let last = text.lines().last().unwrap();
        let at = last.find("\"sig\":\"").unwrap() + 7;
        let mut tampered = last.to_string();
        let c = if &last[at..=at] == "0" { "1" } else { "0" };
        tampered.replace_range(at..=at, c);
        std::fs::write(d.join(MANIFEST), text.replace(last, &tampered)).unwrap();
        let line = assert_broken(d, &["--public-key", &public], "entry 8");
        assert!(line.contains("signature"), "{line}");
    });
}
