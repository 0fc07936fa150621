//! Helpers for the packet store tests: `tap query` and its oracle (`tcpdump -r` of every
//! store file with the same expression, windowed, merged in time order by `mergecap`), DuckDB
//! reading the Parquet index, `tshark -z conv`, and Suricata's Community IDs.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use crate::{TempDir, pcap::Pcap, process::Background, run_ok, run_stdout, tap_bin};

/// Capture files of a store, in name order (the order `tap query` merges them in).
pub fn capture_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            !name.starts_with('.') && (name.ends_with(".pcapng") || name.ends_with(".pcapng.zst"))
        })
        .collect();
    files.sort();
    files
}

/// A time window, ns since the epoch: `[since, until)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub since: Option<u128>,
    pub until: Option<u128>,
}

impl Window {
    fn holds(&self, ts: u128) -> bool {
        self.since.is_none_or(|s| ts >= s) && self.until.is_none_or(|u| ts < u)
    }
}

/// RFC 3339 (UTC, nanoseconds) of `ns` since the epoch, by `date`.
pub fn rfc3339(ns: u128) -> String {
    let secs = ns / 1_000_000_000;
    let date = run_stdout(Command::new("date").args([
        "-u",
        "-d",
        &format!("@{secs}"),
        "+%Y-%m-%dT%H:%M:%S",
    ]));
    format!("{}.{:09}Z", date.trim(), ns % 1_000_000_000)
}

/// `tap query DIR [window] -w OUT EXPR`; panics unless it succeeds. Returns the packets and
/// tap's standard error.
pub fn query(
    dir: &Path,
    work: &TempDir,
    window: Window,
    expr: &str,
    extra: &[&str],
) -> (Pcap, String) {
    let out = work.join(&format!("query-{}.pcap", crate::unique_suffix()));
    let mut cmd = Command::new(tap_bin());
    cmd.arg("query").arg(dir);
    if let Some(s) = window.since {
        cmd.args(["--since", &rfc3339(s)]);
    }
    if let Some(u) = window.until {
        cmd.args(["--until", &rfc3339(u)]);
    }
    cmd.arg("-w")
        .arg(&out)
        .args(extra)
        .args(expr.split_whitespace());
    cmd.env_remove("TAP_LOG").stdin(Stdio::null());
    let done = run_ok(&mut cmd);
    let pcap = Pcap::read(&out);
    let _ = std::fs::remove_file(&out);
    (pcap, String::from_utf8_lossy(&done.stderr).into_owned())
}

/// Each file's packets as `tcpdump -r FILE EXPR` selects them (nanosecond timestamps), one
/// filtered pcap per file in `work`; cached per expression by the caller.
pub fn tcpdump_each(files: &[PathBuf], work: &TempDir, expr: &str) -> Vec<Pcap> {
    files
        .iter()
        .map(|f| {
            let out = work.join(&format!("tcpdump-{}.pcap", crate::unique_suffix()));
            let mut cmd = Command::new("tcpdump");
            cmd.args(["-r"])
                .arg(f)
                .args(["--time-stamp-precision", "nano", "-w"])
                .arg(&out)
                .args(expr.split_whitespace());
            run_ok(&mut cmd);
            let p = Pcap::read(&out);
            let _ = std::fs::remove_file(&out);
            p
        })
        .collect()
}

/// The oracle: each file's tcpdump selection cut to the window, merged by `mergecap` in time
/// order (files in the order given).
pub fn merged(per_file: &[Pcap], window: Window, work: &TempDir) -> Pcap {
    let mut inputs = Vec::new();
    for p in per_file {
        let mut cut = p.clone();
        let ts: Vec<u128> = (0..p.records.len()).map(|i| p.ts_ns(i)).collect();
        cut.records = p
            .records
            .iter()
            .zip(ts)
            .filter(|(_, t)| window.holds(*t))
            .map(|(r, _)| r.clone())
            .collect();
        let path = work.join(&format!("cut-{}.pcap", crate::unique_suffix()));
        cut.write(&path);
        inputs.push(path);
    }
    let out = work.join(&format!("merged-{}.pcap", crate::unique_suffix()));
    run_ok(
        Command::new("mergecap")
            .args(["-F", "nsecpcap", "-w"])
            .arg(&out)
            .args(&inputs),
    );
    let p = Pcap::read(&out);
    for i in inputs.iter().chain([&out]) {
        let _ = std::fs::remove_file(i);
    }
    p
}

/// Asserts two captures hold the same packets in the same order: timestamps (ns), original
/// lengths and bytes.
pub fn assert_same(got: &Pcap, want: &Pcap, what: &str) {
    let key = |p: &Pcap, i: usize| (p.ts_ns(i), p.records[i].orig_len);
    let hex = |d: &[u8]| {
        d.iter()
            .take(80)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    for i in 0..got.records.len().min(want.records.len()) {
        assert!(
            key(got, i) == key(want, i) && got.records[i].data == want.records[i].data,
            "{what}: packet {i} differs: tap query has {:?} ({} bytes) {}, tcpdump {:?} ({} bytes) {} ({} and {} packets in all)",
            key(got, i),
            got.records[i].data.len(),
            hex(&got.records[i].data),
            key(want, i),
            want.records[i].data.len(),
            hex(&want.records[i].data),
            got.records.len(),
            want.records.len()
        );
    }
    assert_eq!(
        got.records.len(),
        want.records.len(),
        "{what}: tap query gave {} packets, tcpdump {}",
        got.records.len(),
        want.records.len()
    );
}

/// Rows of a DuckDB query as text (`|`-separated columns).
pub fn duckdb(sql: &str) -> Vec<String> {
    let script = format!(
        "import duckdb\nfor row in duckdb.sql({sql:?}).fetchall():\n    print('|'.join('' if v is None else str(v) for v in row))\n"
    );
    run_stdout(Command::new("python3").args(["-c", &script]))
        .lines()
        .map(ToString::to_string)
        .collect()
}

/// One conversation of `tshark -q -z conv,tcp|udp`: the two endpoints ("addr:port", in
/// tshark's order) and the frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub a: String,
    pub b: String,
    pub frames: u64,
}

/// `tshark -r FILE -q -z conv,PROTO` without IP reassembly (a fragment belongs to no
/// conversation but its first, as in the store's index).
pub fn tshark_conversations(file: &Path, proto: &str) -> Vec<Conversation> {
    let out = run_stdout(
        Command::new("tshark")
            .arg("-r")
            .arg(file)
            .args([
                "-n",
                "-o",
                "ip.defragment:FALSE",
                "-o",
                "ipv6.defragment:FALSE",
                "-q",
                "-z",
            ])
            .arg(format!("conv,{proto}")),
    );
    out.lines()
        .filter(|l| l.contains("<->"))
        .map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            assert!(
                t.len() >= 10 && t[1] == "<->",
                "a conversation line tshark wrote oddly: {l}"
            );
            // a <-> b, frames bytes unit (<-), frames bytes unit (->), frames bytes unit (total).
            let frames = t[9]
                .replace(',', "")
                .parse()
                .unwrap_or_else(|_| panic!("frames in {l}"));
            Conversation {
                a: t[0].to_string(),
                b: t[2].to_string(),
                frames,
            }
        })
        .collect()
}

/// "addr:port" as tshark prints an endpoint (IPv6 without brackets).
pub fn endpoint(addr: &str, port: &str) -> String {
    format!("{addr}:{port}")
}

/// Suricata 7's flows of a capture file, read offline (`suricata -r FILE`) with the
/// Community ID in its eve log: (proto, {src "addr:port", dst "addr:port"}) → Community ID.
pub fn suricata_community_ids(file: &Path) -> BTreeMap<(String, [String; 2]), String> {
    crate::suricata::require_suricata();
    let dir = TempDir::new();
    let yaml = format!(
        "%YAML 1.1\n---\nvars:\n  address-groups:\n    HOME_NET: \"any\"\n    EXTERNAL_NET: \"any\"\n\
         default-log-dir: {log}\nclassification-file: {log}/classification.config\noutputs:\n  - eve-log:\n      enabled: yes\n      filetype: regular\n\
         \x20     filename: eve.json\n      community-id: true\n      community-id-seed: 0\n      types:\n        - flow\n\
         logging:\n  default-log-level: warning\n  outputs:\n    - console:\n        enabled: yes\n\
         unix-command:\n  enabled: no\n",
        log = dir.path().display()
    );
    std::fs::write(dir.join("suricata.yaml"), yaml).expect("writing suricata.yaml");
    std::fs::write(dir.join("empty.rules"), "").expect("writing the rules");
    std::fs::write(dir.join("classification.config"), "").expect("writing classification");
    let mut cmd = Command::new("suricata");
    cmd.arg("-c")
        .arg(dir.join("suricata.yaml"))
        .arg("-S")
        .arg(dir.join("empty.rules"))
        .arg("-l")
        .arg(dir.path())
        .args(["-k", "none", "--runmode", "single", "-r"])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let exited = Background::spawn("suricata -r", cmd).wait(Duration::from_secs(120));
    assert!(
        exited.status.success(),
        "suricata -r failed ({}):\n{}",
        exited.status,
        exited.stderr
    );
    let eve = std::fs::read_to_string(dir.join("eve.json")).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in eve.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["event_type"] != "flow" {
            continue;
        }
        let (Some(proto), Some(cid)) = (v["proto"].as_str(), v["community_id"].as_str()) else {
            continue;
        };
        // Suricata writes IPv6 addresses in full: the canonical (RFC 5952) text, as the index.
        let end = |ip: &str, port: &str| {
            let text = v[ip].as_str().unwrap_or("");
            let addr = text
                .parse::<std::net::IpAddr>()
                .map_or_else(|_| text.to_string(), |a| a.to_string());
            format!("{addr}:{}", v[port].as_u64().unwrap_or(0))
        };
        let mut ends = [end("src_ip", "src_port"), end("dest_ip", "dest_port")];
        ends.sort();
        out.insert((proto.to_string(), ends), cid.to_string());
    }
    out
}
