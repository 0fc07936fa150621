//! `--flow-budget 4096` on one long transfer (iperf3, up to 20 MiB) beside 200 short HTTP requests
//! (nginx, each on a connection of its own), tcpdump capturing everything on the same
//! interface. The oracle replays the budget over tcpdump's capture: for each flow (both
//! directions, by a canonical key), the packets in order, each kept while the flow has used
//! less than 4096 bytes before it, and TCP SYN, FIN and RST kept always. Then:
//! - every short flow is complete in tap's file, packet for packet;
//! - the long one is cut after its first 4 KiB, its SYN and FIN packets kept;
//! - tap's file holds the packets the replay keeps (up to a packet or two where the budget
//!   runs out, where the two directions' order on two CPUs may differ from tcpdump's);
//! - the summary's over-budget count is what tcpdump saw less what tap kept;
//! - the bytes written fall by the factor the replay predicts (printed).

use std::collections::HashMap;

use tap_common::flow::{FlowKey, TCP_ALWAYS};
use tap_tests::{
    TempDir, Topology,
    oracle::capture_with_tcpdump,
    pcap::{Pcap, Record},
    topology::B_V4,
    traffic::{self, HTTP_PORT, IPERF_PORT, Nginx, TcpBulk},
};

const BUDGET: u64 = 4096;
const REQUESTS: usize = 200;

/// The TCP flags of a TCP/IPv4 frame without VLAN tags or IP options (as our traffic is).
fn tcp_flags(r: &Record) -> Option<u8> {
    (r.data.get(12..14) == Some(&[0x08, 0x00]) && r.data.get(23) == Some(&6))
        .then(|| r.data.get(14 + 20 + 13).copied())
        .flatten()
}

fn always(r: &Record) -> bool {
    tcp_flags(r).is_some_and(|f| f & TCP_ALWAYS != 0)
}

fn key(r: &Record) -> FlowKey {
    tap_common::flow::parse(&r.data, (0, 0))
        .expect("all our traffic is IPv4")
        .key
}

/// The packets of each flow, in capture order.
fn flows(p: &Pcap) -> HashMap<FlowKey, Vec<&Record>> {
    let mut m: HashMap<FlowKey, Vec<&Record>> = HashMap::new();
    for r in &p.records {
        m.entry(key(r)).or_default().push(r);
    }
    m
}

/// The budget replayed over one flow's packets: which ones the programs keep.
fn replay(packets: &[&Record]) -> Vec<bool> {
    let mut used = 0u64;
    packets
        .iter()
        .map(|r| {
            if used < BUDGET {
                used += u64::from(r.orig_len);
                true
            } else {
                always(r)
            }
        })
        .collect()
}

fn port_of(k: &FlowKey, port: u16) -> bool {
    k.port_lo == port || k.port_hi == port
}

/// Bytes of a pcap file holding `records`.
fn file_len<'a>(records: impl Iterator<Item = &'a Record>) -> u64 {
    24 + records.map(|r| 16 + r.data.len() as u64).sum::<u64>()
}

#[test]
fn a_flow_budget_keeps_every_short_flow_and_the_start_and_end_of_a_long_one() {
    let t = Topology::new();
    let dir = TempDir::new();
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::write(www.join("small.txt"), "x".repeat(100)).unwrap();
    let _nginx = Nginx::start(&t.b, B_V4, &www, dir.path());

    let run = capture_with_tcpdump(
        &t.b,
        &dir,
        &["-i", &t.b_if, "--flow-budget", "4096"],
        &[(&t.b_if, &["-B", "131072"])],
        || {
            let bulk = TcpBulk::start(&t.a, &t.b, B_V4, "20M");
            traffic::http_gets(&t.a, B_V4, "/small.txt", REQUESTS as u32);
            bulk.finish();
        },
    );
    let tap = Pcap::read(&run.tap_file);
    let oracle = Pcap::read(&run.tcpdump_files[0]);
    let (ours, theirs) = (flows(&tap), flows(&oracle));

    // Every flow of tap's is one of tcpdump's; tcpdump saw every packet tap kept, and the rest
    // is what the summary counts over budget.
    assert!(ours.keys().all(|k| theirs.contains_key(k)));
    let over = run
        .summary
        .extra
        .iter()
        .find_map(|l| l.strip_suffix(" packets over the flow budget of 4096 bytes (not copied)"))
        .unwrap_or_else(|| panic!("no over-budget line in {:?}", run.summary.extra))
        .parse::<usize>()
        .unwrap();
    assert_eq!(
        over,
        oracle.records.len() - tap.records.len(),
        "over budget = tcpdump's packets less tap's"
    );
    assert_eq!(run.summary.ring_dropped, 0);

    let mut http = 0;
    let mut expected_kept: Vec<&Record> = Vec::new();
    for (k, packets) in &theirs {
        let keep = replay(packets);
        let want: Vec<&Record> = packets
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(r, _)| *r)
            .collect();
        expected_kept.extend(&want);
        let got = ours.get(k).map_or(&[][..], Vec::as_slice);
        let bytes = |rs: &[&Record]| -> Vec<Vec<u8>> {
            let mut v: Vec<Vec<u8>> = rs.iter().map(|r| r.data.clone()).collect();
            v.sort();
            v
        };
        let total: u64 = packets.iter().map(|r| u64::from(r.orig_len)).sum();
        if port_of(k, HTTP_PORT) {
            http += 1;
            assert!(total < BUDGET, "a short flow of {total} bytes");
            assert_eq!(
                bytes(got),
                bytes(packets),
                "an HTTP flow is complete in tap's file"
            );
            continue;
        }
        // Every start and end of a flow is there.
        for r in packets.iter().filter(|r| always(r)) {
            assert!(
                got.iter().any(|g| g.data == r.data),
                "a SYN, FIN or RST is missing"
            );
        }
        if total >= BUDGET {
            // The packets kept are those the replay keeps, but where the budget runs out the two
            // directions may reach the programs in another order than tcpdump's.
            let (want, got) = (bytes(&want), bytes(got));
            let missing = want.iter().filter(|w| !got.contains(w)).count();
            let extra = got.iter().filter(|g| !want.contains(g)).count();
            assert!(
                missing + extra <= 2,
                "a flow of {total} bytes: {} kept, {} expected ({missing} missing, {extra} extra)",
                got.len(),
                want.len()
            );
        } else {
            assert_eq!(bytes(got), bytes(packets), "a short flow is complete");
        }
    }
    assert_eq!(http, REQUESTS, "one flow per HTTP request");

    // The long transfer: 20 MB in, its first 4 KiB kept.
    let (long_key, long) = theirs
        .iter()
        .filter(|(k, _)| port_of(k, IPERF_PORT))
        .max_by_key(|(_, p)| p.iter().map(|r| u64::from(r.orig_len)).sum::<u64>())
        .unwrap();
    let long_total: u64 = long.iter().map(|r| u64::from(r.orig_len)).sum();
    // iperf3 may close the transfer before all of it is sent (see `traffic::tcp_bulk`).
    assert!(long_total > 10_000_000, "{long_total} bytes");
    let kept = &ours[long_key];
    let kept_data: u64 = kept
        .iter()
        .filter(|r| !always(r))
        .map(|r| u64::from(r.orig_len))
        .sum();
    let largest = long.iter().map(|r| u64::from(r.orig_len)).max().unwrap();
    eprintln!(
        "the long flow: {} packets, {long_total} bytes; tap kept {} packets: {:?}",
        long.len(),
        kept.len(),
        kept.iter()
            .map(|r| (r.orig_len, tcp_flags(r).unwrap_or(0)))
            .collect::<Vec<_>>()
    );
    assert!(
        kept_data < BUDGET + 2 * largest,
        "the long flow is cut after its budget: {kept_data} bytes kept"
    );
    // Its end (FIN, or RST when iperf3 closes with data unread) is there.
    assert!(
        kept.iter()
            .any(|r| tcp_flags(r).is_some_and(|f| f & 0x05 != 0)),
        "the long flow's end is kept"
    );

    // The bytes written fall by the factor the replay predicts.
    let tap_bytes = std::fs::metadata(&run.tap_file).unwrap().len();
    let tcpdump_bytes = std::fs::metadata(&run.tcpdump_files[0]).unwrap().len();
    let predicted = file_len(expected_kept.into_iter());
    assert_eq!(tap_bytes, file_len(tap.records.iter()));
    let factor = tcpdump_bytes as f64 / tap_bytes as f64;
    let predicted_factor = tcpdump_bytes as f64 / predicted as f64;
    eprintln!(
        "flow budget 4096: tcpdump wrote {tcpdump_bytes} bytes in {} packets, tap {tap_bytes} in {} \
         ({over} over budget): {factor:.1} times less, the replay predicts {predicted_factor:.1}",
        oracle.records.len(),
        tap.records.len()
    );
    assert!(
        (factor / predicted_factor - 1.0).abs() < 0.05,
        "{factor:.2} against {predicted_factor:.2}"
    );
    assert!(factor > 10.0, "{factor:.1}");
}
