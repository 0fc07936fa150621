//! The packet store (`tap capture --store`, `tap query`, `tap store reindex`) against its
//! oracles: `tap query` gives exactly what `tcpdump -r` of every store file gives with the same
//! expression and window (merged in time order by mergecap); DuckDB reads the Parquet index and
//! its flow and packet counts are tshark's conversations; its Community IDs are Suricata's.
//! Crash safety (kill -9), reindexing, retention, a full disk, one writer per store, and junk
//! in the directory.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use tap_tests::{
    TempDir, Topology, corpus,
    pcap::Pcap,
    run_ok,
    storage_util::Tmpfs,
    store::{
        Window, assert_same, capture_files, duckdb, endpoint, merged, query,
        suricata_community_ids, tcpdump_each, tshark_conversations,
    },
    tap::{self, Summary},
    tap_bin,
    topology::{FIRST, SECOND},
    traffic, wait_until,
};

fn arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// All packets of the store's files, by tcpdump, merged.
fn everything(files: &[PathBuf], work: &TempDir) -> Pcap {
    merged(&tcpdump_each(files, work, ""), Window::default(), work)
}

/// Mixed traffic from `a` to `b` on both links for about four seconds: the test corpus
/// (VLAN and QinQ tags, IPv4 options and fragments, IPv6 extension headers, ARP, other
/// EtherTypes, odd and truncated frames) replayed, IPv4 and IPv6 pings (fragmented ones too),
/// hundreds of short UDP flows, two long UDP flows and an HTTP download.
fn mixed_traffic(t: &Topology, work: &TempDir) {
    let corpus_file = work.join("corpus.pcap");
    corpus::write_corpus(&corpus_file);
    let web = work.join("web");
    std::fs::create_dir_all(&web).unwrap();
    std::fs::write(web.join("big"), vec![7u8; 400_000]).unwrap();
    let _server = traffic::HttpServer::start(&t.b, &web);
    let long_v4 = traffic::udp_stream(&t.a, FIRST.b_v4, 7000, 350, 200, 10);
    let long_v6 = traffic::udp_stream(&t.a, SECOND.b_v6, 7001, 350, 300, 10);
    let mut replay = t.a.cmd("tcpreplay");
    replay
        .args(["-q", "-i", &t.a_if, "--pps", "1500"])
        .arg(&corpus_file);
    run_ok(&mut replay);
    traffic::ping(&t.a, FIRST.b_v4, 5, &[]);
    traffic::ping(&t.a, SECOND.b_v6, 5, &[]);
    traffic::ping(&t.a, FIRST.b_v4, 2, &["-s", "3000"]);
    traffic::ping(&t.a, SECOND.b_v6, 2, &["-s", "3000"]);
    traffic::udp_flows(&t.a, FIRST.b_v4, 9999, 300, 40);
    traffic::udp_flows(&t.a, SECOND.b_v6, 9998, 100, 40);
    traffic::http_get_path(&t.a, FIRST.b_v4, "/big");
    for s in [long_v4, long_v6] {
        let done = s.wait(Duration::from_secs(30));
        assert!(done.status.success(), "UDP stream failed: {}", done.stderr);
    }
}

/// Two links, tap capturing into a store on `b`'s ends with XDP (every frame as the wire
/// carries it, tags included) and a new file every second.
fn mixed_store(store: &Path, work: &TempDir, extra: &[&str]) -> (Topology, Summary) {
    let t = Topology::new();
    t.add_link("veth2-a", "veth2-b", &SECOND);
    let store_arg = arg(store);
    let args = [
        &[
            "-i",
            t.b_if.as_str(),
            "-i",
            "veth2-b",
            "--hook",
            "xdp",
            "--store",
            &store_arg,
            "-G",
            "1",
        ][..],
        extra,
    ]
    .concat();
    let tap = tap::start(&t.b, &args);
    mixed_traffic(&t, work);
    std::thread::sleep(Duration::from_millis(300));
    let summary = Summary::parse(&tap::stop(tap).stderr);
    (t, summary)
}

/// The number from "N <what>" in tap query's summary line.
fn count_in(stderr: &str, what: &str) -> u64 {
    let line = stderr.lines().last().unwrap_or_default();
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[1].trim_end_matches(',') == what)
        .and_then(|w| w[0].trim_start_matches('(').parse().ok())
        .unwrap_or_else(|| panic!("no '{what}' in tap query's summary: {line}"))
}

#[test]
fn query_equals_tcpdump_over_every_file() {
    let work = TempDir::new();
    let store = work.join("store");
    let (_t, summary) = mixed_store(&store, &work, &[]);
    let files = capture_files(&store);
    assert!(files.len() >= 4, "at least three rotations: {files:?}");
    let all = everything(&files, &work);
    assert_eq!(all.records.len() as u64, summary.captured);
    assert!(all.records.len() > 1000, "{} packets", all.records.len());

    // Windows that cross file boundaries: the middle half, the first and the last part.
    let mut times: Vec<u128> = (0..all.records.len()).map(|i| all.ts_ns(i)).collect();
    times.sort_unstable();
    let at = |f: f64| times[((times.len() - 1) as f64 * f) as usize];
    let windows = [
        Window::default(),
        Window {
            since: Some(at(0.25)),
            until: Some(at(0.75)),
        },
        Window {
            since: Some(at(0.6)),
            until: None,
        },
        Window {
            since: None,
            until: Some(at(0.35)),
        },
    ];
    // The middle window spans several files.
    let spans = files
        .iter()
        .filter(|f| {
            let p = &tcpdump_each(&[(*f).clone()], &work, "")[0];
            (0..p.records.len()).any(|i| {
                windows[1].since.unwrap() <= p.ts_ns(i) && p.ts_ns(i) < windows[1].until.unwrap()
            })
        })
        .count();
    assert!(spans >= 2, "the middle window lies in {spans} file(s)");

    let mut exprs: Vec<String> = [
        "",
        "icmp",
        "icmp6",
        "ip6",
        "vlan",
        "vlan and udp",
        "udp port 7000",
        "udp and not port 7000",
        "tcp",
        "tcp port 8080 and host 192.0.2.1",
        "host 198.51.100.2",
        "net 2001:db8:1::/48",
        "src host 192.0.2.1 and udp portrange 9000-9999",
        "not ip and not ip6",
        "ip proto 17",
        "arp or rarp",
        "ip6 and udp port 9998",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    // A sample of the filter tests' expressions; protochain left out: on an IPv6 frame cut
    // short inside its fragment header the evaluator answers false where libpcap rejects the
    // packet outright, so `not protochain 6` differs from tcpdump (a filter matter, reported).
    exprs.extend(
        corpus::EXPRESSIONS
            .iter()
            .filter(|e| !e.contains("protochain"))
            .step_by(5)
            .map(ToString::to_string),
    );
    let mut blocks_all = 0;
    for expr in &exprs {
        let per_file = tcpdump_each(&files, &work, expr);
        for (k, w) in windows.iter().enumerate() {
            let want = merged(&per_file, *w, &work);
            let (got, stderr) = query(&store, &work, *w, expr, &[]);
            assert_same(&got, &want, &format!("`{expr}`, window {k}"));
            assert_eq!(
                count_in(&stderr, "packets"),
                got.records.len() as u64,
                "{stderr}"
            );
            if expr.is_empty() && k == 0 {
                blocks_all = count_in(&stderr, "blocks");
            }
            if expr == "ip6 and udp port 9998" && k == 0 {
                // The index narrows what is read: a few hundred short flows of one burst.
                let blocks = count_in(&stderr, "blocks");
                assert!(
                    blocks < blocks_all,
                    "{blocks} of {blocks_all} blocks read:\n{stderr}"
                );
            }
        }
    }
    // pcapng output holds the same packets (tcpdump reads it back).
    let out = work.join("q.pcapng");
    run_ok(
        Command::new(tap_bin())
            .arg("query")
            .arg(&store)
            .arg("-w")
            .arg(&out)
            .args(["-q", "udp"]),
    );
    let back = work.join("back.pcap");
    run_ok(
        Command::new("tcpdump")
            .arg("-r")
            .arg(&out)
            .args(["--time-stamp-precision", "nano", "-w"])
            .arg(&back),
    );
    let want = merged(
        &tcpdump_each(&files, &work, "udp"),
        Window::default(),
        &work,
    );
    assert_same(&Pcap::read(&back), &want, "pcapng output");
    // A bad expression: the parser's one-line message, a failure, no output.
    let bad = Command::new(tap_bin())
        .arg("query")
        .arg(&store)
        .args(["-w", &arg(&work.join("bad.pcap")), "port", "banana"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let text = String::from_utf8_lossy(&bad.stderr);
    assert!(
        text.starts_with("tap: filter: ") && text.lines().count() == 1,
        "{text}"
    );
    assert!(!work.join("bad.pcap").exists());
}

#[test]
fn flows_match_tshark_and_community_ids_match_suricata() {
    let t = Topology::new();
    let work = TempDir::new();
    let store = work.join("store");
    let web = work.join("web");
    std::fs::create_dir_all(&web).unwrap();
    std::fs::write(web.join("f"), vec![1u8; 30_000]).unwrap();
    let _server = traffic::HttpServer::start(&t.b, &web);
    let tap = tap::start(&t.b, &["-i", &t.b_if, "--store", &arg(&store), "-G", "1"]);
    for i in 0..4 {
        traffic::http_get_path(&t.a, if i % 2 == 0 { FIRST.b_v4 } else { FIRST.b_v6 }, "/f");
        traffic::udp_echo(&t.a, &t.b, &[FIRST.b_v4, FIRST.b_v6], &[100, 900]);
        traffic::ping(&t.a, FIRST.b_v4, 2, &[]);
    }
    std::thread::sleep(Duration::from_millis(500));
    tap::stop(tap);
    let files = capture_files(&store);
    assert!(files.len() >= 2, "{files:?}");
    let (mut compared_conv, mut compared_cid) = (0, 0);
    for file in &files {
        let flows = format!("{}.flows.parquet", file.display());
        for (proto, name) in [(6, "tcp"), (17, "udp")] {
            // DuckDB: one row per flow of the file.
            let mut ours: Vec<(Vec<String>, u64)> = duckdb(&format!(
                "select src, src_port, dst, dst_port, packets from '{flows}' where protocol = {proto}"
            ))
            .iter()
            .map(|r| {
                let c: Vec<&str> = r.split('|').collect();
                let mut ends = vec![endpoint(c[0], c[1]), endpoint(c[2], c[3])];
                ends.sort();
                (ends, c[4].parse().unwrap())
            })
            .collect();
            let mut theirs: Vec<(Vec<String>, u64)> = tshark_conversations(file, name)
                .into_iter()
                .map(|c| {
                    let mut ends = vec![c.a, c.b];
                    ends.sort();
                    (ends, c.frames)
                })
                .collect();
            ours.sort();
            theirs.sort();
            assert_eq!(ours, theirs, "{name} flows of {}", file.display());
            compared_conv += ours.len();
            let totals = duckdb(&format!(
                "select count(*), coalesce(sum(packets), 0) from '{flows}' where protocol = {proto}"
            ));
            let sum: u64 = theirs.iter().map(|t| t.1).sum();
            assert_eq!(
                totals,
                [format!("{}|{sum}", theirs.len())],
                "{name} of {}",
                file.display()
            );
        }
        // Suricata's Community IDs for the same flows.
        let rows = duckdb(&format!(
            "select protocol, src, src_port, dst, dst_port, community_id from '{flows}' where protocol in (6, 17)"
        ));
        if rows.is_empty() {
            // Suricata refuses a file without packets.
            continue;
        }
        let cids = suricata_community_ids(file);
        for r in rows {
            let c: Vec<&str> = r.split('|').collect();
            let mut ends = [endpoint(c[1], c[2]), endpoint(c[3], c[4])];
            ends.sort();
            let proto = if c[0] == "6" { "TCP" } else { "UDP" };
            if let Some(theirs) = cids.get(&(proto.to_string(), ends.clone())) {
                assert_eq!(
                    c[5],
                    theirs,
                    "Community ID of {proto} {ends:?} in {}",
                    file.display()
                );
                compared_cid += 1;
            }
        }
    }
    assert!(
        compared_conv >= 12,
        "{compared_conv} conversations compared"
    );
    assert!(compared_cid >= 12, "{compared_cid} Community IDs compared");
    // A whole fleet's index at once: every file in one DuckDB query.
    let all = duckdb(&format!(
        "select count(distinct community_id) from '{}/*.flows.parquet' where protocol = 6",
        store.display()
    ));
    assert_eq!(all, ["4"], "four HTTP connections");
}

#[test]
fn kill_9_then_query_and_reindex() {
    let t = Topology::new();
    let work = TempDir::new();
    let store = work.join("store");
    let tap = tap::start(
        &t.b,
        &[
            "-i",
            &t.b_if,
            "--store",
            &arg(&store),
            "-G",
            "1",
            "--flush-interval",
            "100",
        ],
    );
    let stream = traffic::udp_stream(&t.a, FIRST.b_v4, 7000, 400, 100, 10);
    traffic::ping(&t.a, FIRST.b_v4, 10, &[]);
    wait_until("three finished files", Duration::from_secs(20), || {
        (capture_files(&store).len() >= 3).then_some(())
    });
    tap.signal(libc::SIGKILL);
    let _ = tap.wait(Duration::from_secs(10));
    let _ = stream.wait(Duration::from_secs(30));
    let parts: Vec<String> = tap_tests::storage_util::list_dir(&store)
        .into_iter()
        .filter(|n| n.ends_with(".pcapng.part"))
        .collect();
    // The file being written is left as .NAME.part (none when the kill fell between a file's
    // rename and the next one's creation).
    assert!(
        parts.len() <= 1,
        "{:?}",
        tap_tests::storage_util::list_dir(&store)
    );

    // Every finished file is queryable at once.
    let check = |what: &str| {
        let files = capture_files(&store);
        for expr in ["", "icmp", "udp port 7000"] {
            let want = merged(&tcpdump_each(&files, &work, expr), Window::default(), &work);
            let (got, stderr) = query(&store, &work, Window::default(), expr, &[]);
            assert_same(&got, &want, &format!("{what}: `{expr}`"));
            assert!(!stderr.contains("skipped"), "{what}: {stderr}");
        }
        capture_files(&store).len()
    };
    let before = check("after kill -9");
    let reindex = |what: &str| {
        let out = run_ok(
            Command::new(tap_bin())
                .args(["store", "reindex"])
                .arg(&store),
        );
        String::from_utf8_lossy(&out.stderr).into_owned() + what
    };
    let said = reindex("");
    assert!(said.contains("1 recovered"), "{said}");
    assert_eq!(
        check("after reindex"),
        before + 1,
        "the .part file is a store file now"
    );
    // Without any index: queries read the files through, then reindex writes the indexes back.
    for f in tap_tests::storage_util::list_dir(&store) {
        if f.ends_with(".parquet") {
            std::fs::remove_file(store.join(&f)).unwrap();
        }
    }
    let (_, stderr) = query(&store, &work, Window::default(), "", &[]);
    assert!(stderr.contains("without an index read through"), "{stderr}");
    check("without an index");
    reindex("");
    let (_, stderr) = query(&store, &work, Window::default(), "", &[]);
    assert!(!stderr.contains("without an index"), "{stderr}");
    check("reindexed");
}

/// Size of the store's files (captures and indexes), bytes.
fn store_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn retention_by_bytes_and_by_age() {
    let t = Topology::new();
    let work = TempDir::new();
    // By size: 600 kB, files of at most a quarter of it.
    let store = work.join("by-size");
    let tap = tap::start(
        &t.b,
        &[
            "-i",
            &t.b_if,
            "--hook",
            "xdp",
            "--store",
            &arg(&store),
            "--store-max-bytes",
            "600K",
        ],
    );
    traffic::udp_burst(&t.a, FIRST.b_v4, 3000, 1000);
    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    assert_eq!(summary.captured, 3000);
    assert!(
        store_bytes(&store) <= 600 * 1024,
        "{} bytes",
        store_bytes(&store)
    );
    let note = summary
        .extra
        .iter()
        .find(|l| l.starts_with("store retention"))
        .unwrap_or_else(|| panic!("{:?}", summary.extra));
    let deleted: u64 = note.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(deleted >= 5, "{note}");
    // What is left are the newest files, and a query returns exactly their packets.
    let files = capture_files(&store);
    let kept = everything(&files, &work);
    assert!(kept.records.len() > 100 && kept.records.len() < 3000);
    let last = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    assert!(exited.stderr.contains(&last(files.last().unwrap())));
    let (got, _) = query(&store, &work, Window::default(), "", &[]);
    assert_same(&got, &kept, "after retention by size");

    // By age: files whose last packet is older than 2 s go.
    let store = work.join("by-age");
    let tap = tap::start(
        &t.b,
        &[
            "-i",
            &t.b_if,
            "--store",
            &arg(&store),
            "-G",
            "1",
            "--store-max-age",
            "2s",
        ],
    );
    let stream = traffic::udp_stream(&t.a, FIRST.b_v4, 7000, 500, 100, 10);
    let _ = stream.wait(Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(1500));
    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    assert!(
        exited.stderr.contains("--store-max-age"),
        "the deletions are logged:\n{}",
        exited.stderr
    );
    let note = summary
        .extra
        .iter()
        .find(|l| l.starts_with("store retention"))
        .unwrap();
    let deleted: u64 = note.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(deleted >= 2, "{note}");
    let left = everything(&capture_files(&store), &work);
    let newest = (0..left.records.len())
        .map(|i| left.ts_ns(i))
        .max()
        .unwrap_or(0);
    let oldest = (0..left.records.len())
        .map(|i| left.ts_ns(i))
        .min()
        .unwrap_or(0);
    assert!(
        newest - oldest < 5_000_000_000,
        "files older than the limit remain"
    );
}

#[test]
fn a_full_small_tmpfs_with_retention_keeps_capturing() {
    let t = Topology::new();
    let fs = Tmpfs::new("3m");
    let store = fs.join("store");
    let tap = tap::start(
        &t.b,
        &[
            "-i",
            &t.b_if,
            "--hook",
            "xdp",
            "--store",
            &arg(&store),
            "--store-max-bytes",
            "1G",
            "-C",
            "0.3",
        ],
    );
    // About 12 MB into 3 MB.
    for _ in 0..4 {
        traffic::udp_burst(&t.a, FIRST.b_v4, 2000, 1400);
    }
    let exited = tap::stop(tap);
    let summary = Summary::parse(&exited.stderr);
    let room = summary
        .extra
        .iter()
        .find(|l| l.starts_with("store retention"))
        .unwrap_or_else(|| panic!("{:?}", summary.extra));
    let made_room: u64 = room
        .split_whitespace()
        .rev()
        .nth(9)
        .unwrap()
        .parse()
        .unwrap();
    assert!(made_room >= 10, "{room}");
    // It kept capturing: every packet written or counted as dropped with its reason.
    assert!(summary.received >= 8000, "{}", exited.stderr);
    assert_eq!(
        summary.captured + summary.writer_dropped + summary.ring_dropped,
        summary.received,
        "{}",
        exited.stderr
    );
    assert!(summary.captured >= 7000, "{}", exited.stderr);
    let work = TempDir::new();
    let files = capture_files(&store);
    let kept = everything(&files, &work);
    let (got, _) = query(&store, &work, Window::default(), "udp", &[]);
    assert_same(&got, &kept, "what the full disk left");
}

#[test]
fn a_second_writer_is_refused() {
    let t = Topology::new();
    let work = TempDir::new();
    let store = work.join("store");
    let first = tap::start(&t.b, &["-i", &t.b_if, "--store", &arg(&store)]);
    let second = tap::run(&t.b, &["-i", &t.b_if, "--store", &arg(&store)]);
    assert!(!second.status.success());
    let msg = format!(
        "is written by another tap (pid {}): one writer per store",
        first.pid()
    );
    assert!(second.stderr.contains(&msg), "{}", second.stderr);
    assert_eq!(second.stderr.lines().count(), 1, "{}", second.stderr);
    // Reindexing takes the writer's lock too; readers need none.
    let reindex = Command::new(tap_bin())
        .args(["store", "reindex"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(!reindex.status.success());
    query(&store, &work, Window::default(), "", &[]);
    tap::stop(first);
    run_ok(
        Command::new(tap_bin())
            .args(["store", "reindex"])
            .arg(&store),
    );
}

#[test]
fn random_and_truncated_files_are_skipped_and_counted() {
    let t = Topology::new();
    let work = TempDir::new();
    let store = work.join("store");
    let tap = tap::start(&t.b, &["-i", &t.b_if, "--store", &arg(&store), "-G", "1"]);
    let stream = traffic::udp_stream(&t.a, FIRST.b_v4, 7000, 250, 200, 10);
    let _ = stream.wait(Duration::from_secs(30));
    tap::stop(tap);
    let good = capture_files(&store);
    assert!(good.len() >= 2);
    // Junk: random bytes under capture names, an index of random bytes, a file cut short.
    let mut x: u32 = 99;
    let mut junk = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect()
    };
    std::fs::write(store.join("random.pcapng"), junk(5000)).unwrap();
    std::fs::write(store.join("random.pcapng.zst"), junk(3000)).unwrap();
    std::fs::write(store.join("empty.pcapng"), b"").unwrap();
    std::fs::write(store.join("notes.txt"), b"not a capture").unwrap();
    let victim = &good[0];
    std::fs::write(format!("{}.flows.parquet", victim.display()), junk(700)).unwrap();
    let whole = std::fs::read(&good[1]).unwrap();
    std::fs::write(store.join("torn.pcapng"), &whole[..whole.len() * 2 / 3]).unwrap();
    std::fs::write(store.join("torn-header.pcapng"), &whole[..20]).unwrap();
    // The torn file counts with its whole blocks: tcpdump reads those from a copy cut there.
    let mut cut = whole[..whole.len() * 2 / 3].to_vec();
    cut.truncate(whole_blocks(&cut));
    let cut_path = work.join("torn-cut.pcapng");
    std::fs::write(&cut_path, &cut).unwrap();

    let mut oracle_files: Vec<PathBuf> = good.clone();
    oracle_files.push(cut_path);
    // The store merges in name order: put the cut copy where torn.pcapng sorts.
    let mut named: Vec<(String, PathBuf)> = oracle_files
        .into_iter()
        .map(|p| {
            let n = p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .replace("torn-cut", "torn");
            (n, p)
        })
        .collect();
    named.sort();
    let oracle_files: Vec<PathBuf> = named.into_iter().map(|(_, p)| p).collect();
    for expr in ["", "udp port 7000"] {
        let want = merged(
            &tcpdump_each(&oracle_files, &work, expr),
            Window::default(),
            &work,
        );
        let (got, stderr) = query(&store, &work, Window::default(), expr, &[]);
        assert_same(&got, &want, &format!("`{expr}` with junk around"));
        assert!(stderr.contains("4 files skipped"), "{stderr}");
        for name in [
            "random.pcapng",
            "random.pcapng.zst",
            "empty.pcapng",
            "torn-header.pcapng",
        ] {
            assert!(stderr.contains(name), "no warning about {name}:\n{stderr}");
        }
    }
    // Flows too; and reindex counts what it skips without touching it.
    run_ok(
        Command::new(tap_bin())
            .arg("query")
            .arg(&store)
            .args(["--flows", "--csv", "-q"]),
    );
    let out = run_ok(
        Command::new(tap_bin())
            .args(["store", "reindex"])
            .arg(&store),
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("5 skipped"), "{said}");
    assert!(store.join("random.pcapng").exists() && store.join("notes.txt").exists());
}

/// Bytes of the whole pcapng blocks at the start of `b`.
fn whole_blocks(b: &[u8]) -> usize {
    let mut off = 0;
    while off + 12 <= b.len() {
        let len = u32::from_le_bytes(b[off + 4..off + 8].try_into().unwrap()) as usize;
        if len < 12 || off + len > b.len() {
            break;
        }
        off += len;
    }
    off
}

#[test]
fn flows_listing_as_table_json_and_csv() {
    let t = Topology::new();
    let work = TempDir::new();
    let store = work.join("store");
    let tap = tap::start(&t.b, &["-i", &t.b_if, "--store", &arg(&store)]);
    traffic::udp_echo(&t.a, &t.b, &[FIRST.b_v4], &[100, 200, 300]);
    tap::stop(tap);
    let run = |extra: &[&str]| {
        let out = run_ok(
            Command::new(tap_bin())
                .arg("query")
                .arg(&store)
                .arg("--flows")
                .args(extra),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let json = run(&["--json", "udp"]);
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{json}");
    let r = &rows[0];
    assert_eq!(
        (r["src"].as_str(), r["dst"].as_str(), r["dst_port"].as_u64()),
        (Some(FIRST.a_v4), Some(FIRST.b_v4), Some(7777))
    );
    assert_eq!(
        (
            r["packets"].as_u64(),
            r["src_packets"].as_u64(),
            r["dst_packets"].as_u64()
        ),
        (Some(6), Some(3), Some(3))
    );
    assert!(r["community_id"].as_str().unwrap().starts_with("1:"));
    let csv = run(&["--csv", "udp"]);
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.starts_with("first,last,proto,src,sport,dst,dport"));
    let table = run(&["udp", "and", "host", FIRST.a_v4]);
    assert!(table.lines().nth(1).unwrap().contains(" udp "), "{table}");
    assert_eq!(run(&["--csv", "tcp"]).lines().count(), 1, "header only");
}
