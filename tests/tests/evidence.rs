//! The alert follower against a real Suricata 7 reading crafted conversations offline (`suricata
//! -r`), with community-id on: alerts from `eve.json` while it is renamed and truncated between
//! batches, and from Suricata's unix-socket output; none missed, none doubled; selection by
//! signature id and severity; one request for many alerts on one flow; a burst of 10,000 alerts
//! rate-limited, bounded and counted. The follower runs as `tap alerts`, which prints each
//! request as a line of JSON and its counts at the end.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use tap_tests::{
    TempDir,
    process::Background,
    sessions::Frames,
    suricata::{self, Eve},
    tap_bin, unique_suffix, wait_until,
};

const SID_TOKEN: u64 = 1_000_002;
const SID_ECHO: u64 = 1_000_001;

/// The token rule (default severity 3) and an echo-request rule at priority 1 (severity 1).
fn rules(token: &str) -> String {
    format!(
        "alert icmp any any -> any any (msg:\"tap test: ICMP echo request\"; itype:8; priority:1; sid:{SID_ECHO}; rev:1;)\n\
         alert http any any -> any any (msg:\"tap test: token in the URI\"; flow:established,to_server; \
         http.uri; content:\"{token}\"; sid:{SID_TOKEN}; rev:1;)\n"
    )
}

/// Seconds of the first frame (November 2023): alerts are stamped with their packets' times.
const T0: u64 = 1_700_000_000_000_000_000;
const MS: u64 = 1_000_000;

fn client(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(192, 0, 2, 10)) + n % 200)
}

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);

/// A pcap of `sessions` HTTP conversations (one GET with the token each) from ports `first..`,
/// starting at `t0`; returns its path.
fn http_pcap(dir: &Path, name: &str, token: &str, first: u16, sessions: u16, t0: u64) -> PathBuf {
    let mut f = Frames::default();
    let mut t = t0;
    for k in 0..sessions {
        let port = first + k;
        t = f.http(
            client(u32::from(k)),
            port,
            SERVER,
            &[format!("/{token}/{port}")],
            t,
            MS,
        );
    }
    let path = dir.join(name);
    f.write(&path);
    path
}

/// The community ids of the alerts in an eve file, with their counts.
fn eve_ids(path: &Path) -> BTreeMap<String, u32> {
    let mut ids = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let v: Value = serde_json::from_str(line).expect("eve lines are JSON");
        if v["event_type"] == "alert" {
            let id = v["community_id"]
                .as_str()
                .expect("community-id is on")
                .to_string();
            *ids.entry(id).or_insert(0) += 1;
        }
    }
    ids
}

/// `tap alerts ARGS` running in the background.
struct Follower {
    process: Background,
}

impl Follower {
    fn start(args: &[&str]) -> Self {
        let mut cmd = Command::new(tap_bin());
        cmd.args(["--log", "info", "alerts"])
            .args(args)
            .env_remove("TAP_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        Self {
            process: Background::spawn_collecting_stdout("tap alerts", cmd),
        }
    }

    fn requests(&self) -> Vec<Value> {
        self.process
            .stdout()
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON request per line"))
            .collect()
    }

    /// Waits until `n` requests are printed.
    fn wait_requests(&self, n: usize) {
        wait_until(
            &format!("{n} evidence requests"),
            Duration::from_secs(30),
            || (self.requests().len() >= n).then_some(()),
        );
    }

    /// SIGINT; the requests and the final counts.
    fn stop(self) -> (Vec<Value>, Value) {
        let exited = self.process.interrupt(Duration::from_secs(30));
        finish(&exited.stdout, &exited.stderr, exited.status.success())
    }
}

fn finish(stdout: &str, stderr: &str, ok: bool) -> (Vec<Value>, Value) {
    assert!(ok, "tap alerts failed:\n{stderr}");
    let requests = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON request per line"))
        .collect();
    let stats = stderr
        .lines()
        .find_map(|l| l.strip_prefix("tap alerts: "))
        .unwrap_or_else(|| panic!("no counts from tap alerts:\n{stderr}"));
    (
        requests,
        serde_json::from_str(stats).expect("counts are JSON"),
    )
}

/// `tap alerts --eve EVE --from-start --once ARGS` to its end.
fn once(eve: &Path, args: &[&str]) -> (Vec<Value>, Value) {
    let out = Command::new(tap_bin())
        .args(["alerts", "--eve"])
        .arg(eve)
        .args(["--from-start", "--once"])
        .args(args)
        .env_remove("TAP_LOG")
        .output()
        .expect("running tap alerts");
    finish(
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
        out.status.success(),
    )
}

/// The community ids of `requests`, with their counts.
fn request_ids(requests: &[Value]) -> BTreeMap<String, u32> {
    let mut ids = BTreeMap::new();
    for r in requests {
        let id = r["request"]["community_id"]
            .as_str()
            .expect("a community id");
        *ids.entry(id.to_string()).or_insert(0) += 1;
    }
    ids
}

/// Settings that make a request for every alert at once (the pcap's times are long past).
const EVERY_ALERT: [&str; 10] = [
    "--before", "1", "--after", "1", "--settle", "0", "--rate", "1000000", "--burst", "1000000",
];

#[test]
fn eve_json_followed_through_rename_and_truncation() {
    let dir = TempDir::new();
    let log = dir.join("log");
    std::fs::create_dir_all(&log).unwrap();
    let token = suricata::unique_token();
    let eve = log.join("eve.json");
    let follower = Follower::start(
        &[
            &["--eve", eve.to_str().unwrap(), "--from-start"][..],
            &EVERY_ALERT,
        ]
        .concat(),
    );
    let mut expected: BTreeMap<String, u32> = BTreeMap::new();
    let batch = |name: &str, first: u16, n: u16, t0: u64| {
        let pcap = http_pcap(dir.path(), name, &token, first, n, t0);
        suricata::run_offline(&pcap, &log, &rules(&token), &[Eve::File]);
    };
    // Batch 1: five alerts into a new eve.json.
    batch("b1.pcap", 10_000, 5, T0);
    let ids1 = eve_ids(&eve);
    assert_eq!(ids1.values().sum::<u32>(), 5, "Suricata's alerts: {ids1:?}");
    expected.extend(ids1);
    follower.wait_requests(5);
    // Rotated by rename; batch 2 goes into a new eve.json.
    std::fs::rename(&eve, log.join("eve.json.1")).unwrap();
    batch("b2.pcap", 11_000, 3, T0 + 60_000 * MS);
    let ids2 = eve_ids(&eve);
    assert_eq!(ids2.values().sum::<u32>(), 3);
    expected.extend(ids2);
    follower.wait_requests(8);
    // Truncated in place (copytruncate); batch 3, larger, is appended to the emptied file and
    // grows it past the offset already read.
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&eve)
        .unwrap();
    batch("b3.pcap", 12_000, 7, T0 + 120_000 * MS);
    let ids3 = eve_ids(&eve);
    assert_eq!(ids3.values().sum::<u32>(), 7);
    expected.extend(ids3);
    follower.wait_requests(15);
    let (requests, stats) = follower.stop();
    assert_eq!(
        request_ids(&requests),
        expected,
        "each alert once, none missed"
    );
    assert_eq!(stats["alerts"], 15, "{stats}");
    assert_eq!(stats["rotations"], 1, "{stats}");
    assert_eq!(stats["truncations"], 1, "{stats}");
    assert_eq!(stats["bad_lines"], 0, "{stats}");
    // What a request says: the flow, Suricata's ids, the window, the alert.
    let r = &requests[0]["request"];
    assert_eq!(r["flow"]["proto"], 6);
    assert_eq!(r["flow"]["dest_ip"], SERVER.to_string());
    assert_eq!(r["flow"]["dest_port"], 80);
    assert!(r["flow_id"].as_u64().is_some(), "{r}");
    assert_eq!(r["alerts"][0]["sid"], SID_TOKEN);
    let t = r["alerts"][0]["time_ns"].as_u64().unwrap();
    assert_eq!(r["start_ns"].as_u64().unwrap(), t - 1_000 * MS);
    assert_eq!(r["end_ns"].as_u64().unwrap(), t + 1_000 * MS);
    let file = requests[0]["file"].as_str().unwrap();
    assert!(
        file.starts_with("20231114T2213") && file.contains(&format!("-{SID_TOKEN}-1_")),
        "{file}"
    );
}

#[test]
fn eve_from_the_unix_socket() {
    let dir = TempDir::new();
    let socket = dir.join(&format!("eve-{}.sock", unique_suffix()));
    let token = suricata::unique_token();
    let follower = Follower::start(
        &[
            &["--eve-socket", socket.to_str().unwrap()][..],
            &EVERY_ALERT,
        ]
        .concat(),
    );
    wait_until("the EVE socket", Duration::from_secs(10), || {
        socket.exists().then_some(())
    });
    let pcap = http_pcap(dir.path(), "s.pcap", &token, 20_000, 6, T0);
    // The same alerts into a file as well: the oracle.
    suricata::run_offline(
        &pcap,
        dir.path(),
        &rules(&token),
        &[Eve::File, Eve::UnixStream(socket.clone())],
    );
    let expected = eve_ids(&dir.join("eve.json"));
    assert_eq!(expected.values().sum::<u32>(), 6);
    follower.wait_requests(6);
    let (requests, stats) = follower.stop();
    assert_eq!(request_ids(&requests), expected);
    assert_eq!(stats["alerts"], 6, "{stats}");
    assert_eq!(stats["connections"], 1, "{stats}");
    assert!(!socket.exists(), "the socket is removed at the end");
}

#[test]
fn selection_and_many_alerts_on_one_flow() {
    let dir = TempDir::new();
    let token = suricata::unique_token();
    let mut f = Frames::default();
    let mut t = T0;
    // Three conversations with one request each, one with three requests (three alerts).
    for k in 0..3u16 {
        t = f.http(
            client(u32::from(k)),
            30_000 + k,
            SERVER,
            &[format!("/{token}/{k}")],
            t,
            MS,
        );
    }
    let three: Vec<String> = (0..3).map(|i| format!("/{token}/again/{i}")).collect();
    t = f.http(client(9), 30_100, SERVER, &three, t, MS);
    // Echo requests from three hosts.
    for k in 0..3u8 {
        f.echo(
            Ipv4Addr::new(203, 0, 113, 1 + k),
            SERVER,
            7,
            t + u64::from(k) * MS,
        );
    }
    let pcap = dir.join("mixed.pcap");
    f.write(&pcap);
    suricata::run_offline(&pcap, dir.path(), &rules(&token), &[Eve::File]);
    let eve = dir.join("eve.json");
    let sids = |requests: &[Value]| -> Vec<u64> {
        let mut v: Vec<u64> = requests
            .iter()
            .map(|r| r["request"]["alerts"][0]["sid"].as_u64().unwrap())
            .collect();
        v.sort_unstable();
        v
    };
    let (all, stats) = once(&eve, &EVERY_ALERT);
    assert_eq!(stats["alerts"], 9, "{stats}");
    assert_eq!(
        sids(&all),
        [
            SID_ECHO, SID_ECHO, SID_ECHO, SID_TOKEN, SID_TOKEN, SID_TOKEN, SID_TOKEN
        ]
    );
    // The conversation with three alerts: one request listing all three, its window from the
    // first alert − 1 s to the last + 1 s.
    let merged: Vec<&Value> = all
        .iter()
        .filter(|r| r["request"]["alerts"].as_array().unwrap().len() == 3)
        .collect();
    assert_eq!(merged.len(), 1, "{all:?}");
    let m = &merged[0]["request"];
    let times: Vec<u64> = m["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["time_ns"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    assert_eq!(m["start_ns"].as_u64().unwrap(), times[0] - 1_000 * MS);
    assert_eq!(m["end_ns"].as_u64().unwrap(), times[2] + 1_000 * MS);
    assert_eq!(stats["cases"]["merged"], 2, "{stats}");

    let (by_sid, _) = once(&eve, &[&EVERY_ALERT[..], &["--sid", "1000002"]].concat());
    assert_eq!(sids(&by_sid), [SID_TOKEN; 4]);
    let (by_severity, stats) = once(&eve, &[&EVERY_ALERT[..], &["--severity", "1"]].concat());
    assert_eq!(sids(&by_severity), [SID_ECHO; 3]);
    assert_eq!(stats["not_selected"], 6, "{stats}");
    let (by_range, _) = once(
        &eve,
        &[&EVERY_ALERT[..], &["--sid", "999999-1000001"]].concat(),
    );
    assert_eq!(sids(&by_range), [SID_ECHO; 3]);
    let (excluded, _) = once(
        &eve,
        &[
            &EVERY_ALERT[..],
            &["--severity", "3", "--exclude-sid", "1000001"],
        ]
        .concat(),
    );
    assert_eq!(sids(&excluded), [SID_TOKEN; 4]);
}

#[test]
fn a_burst_of_10000_alerts_is_rate_limited_and_counted() {
    let dir = TempDir::new();
    // 10,000 echo requests from 250 × 40 distinct host pairs (10,000 flows) within one second.
    let mut f = Frames::default();
    for k in 0..10_000u32 {
        let src = Ipv4Addr::new(192, 0, 2, u8::try_from(1 + k % 250).unwrap());
        let dst = Ipv4Addr::new(198, 51, 100, u8::try_from(1 + k / 250).unwrap());
        f.echo(src, dst, 1, T0 + u64::from(k) * 100_000);
    }
    let pcap = dir.join("burst.pcap");
    f.write(&pcap);
    suricata::run_offline(&pcap, dir.path(), &rules("unused-token"), &[Eve::File]);
    let eve = dir.join("eve.json");
    assert_eq!(
        eve_ids(&eve).values().sum::<u32>(),
        10_000,
        "Suricata alerted on each"
    );

    // At most 50 files at once, 10 per second after that.
    let started = std::time::Instant::now();
    let (requests, stats) = once(&eve, &["--rate", "10", "--burst", "50", "--settle", "0"]);
    let elapsed = started.elapsed().as_secs_f64();
    let c = &stats["cases"];
    let opened = c["opened"].as_u64().unwrap();
    assert_eq!(requests.len() as u64, opened, "{stats}");
    assert!(opened >= 50, "{stats}");
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a few seconds"
    )]
    let bound = 50 + (10.0 * elapsed).ceil() as u64;
    assert!(opened <= bound, "at most the burst and the refill: {stats}");
    assert_eq!(
        opened + c["rate_limited"].as_u64().unwrap() + c["too_many_open"].as_u64().unwrap(),
        10_000,
        "every alert counted: {stats}"
    );
    assert_eq!(stats["alerts"], 10_000);

    // Without a rate limit, the open cases are bounded (none closes before the end here).
    let (requests, stats) = once(
        &eve,
        &[
            "--rate",
            "1000000",
            "--burst",
            "1000000",
            "--max-open",
            "1000",
            "--settle",
            "1000000000",
        ],
    );
    assert_eq!(requests.len(), 1000);
    assert_eq!(stats["cases"]["opened"], 1000, "{stats}");
    assert_eq!(stats["cases"]["too_many_open"], 9000, "{stats}");
}
