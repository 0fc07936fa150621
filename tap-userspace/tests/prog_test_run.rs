//! The programs under BPF_PROG_TEST_RUN: a crafted frame in, exactly one record out, counters
//! advanced. Needs root (BPF): run through `cargo xtask test`.

use tap::{
    kernel::testrun::{ProgRunner, RingState, RunnerSpec, udp_frame, udp_frame_to},
    model::Hook,
};
use tap_common::event::{DIR_INBOUND, DIR_OUTBOUND, HOOK_TC_EGRESS, HOOK_TC_INGRESS, HOOK_XDP};

const XDP_PASS: u32 = 2;
/// TC_ACT_UNSPEC (-1): tcx's TCX_NEXT, so programs after the tap's (another tap, a CNI's) run.
const TC_ACT_UNSPEC: u32 = -1i32 as u32;

/// Privileged tests fail loudly rather than skip.
fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "BPF_PROG_TEST_RUN needs root: run the tests as root, e.g. via `cargo xtask test`"
    );
}

fn runner(spec: RunnerSpec) -> ProgRunner {
    require_root();
    ProgRunner::load(spec).unwrap_or_else(|e| panic!("loading the object: {e}"))
}

/// One frame through `hook`'s program: one record with the frame's bytes and lengths, tagged
/// with the hook and direction, and the counters advanced by one.
fn one_frame_one_record(hook: Hook, verdict: u32, record_hook: u8, direction: u8) {
    let mut r = runner(RunnerSpec::new(hook));
    let frame = udp_frame(98).unwrap();
    let before = r.counters();
    let result = r.run(&frame, 1).unwrap();
    assert_eq!(
        result.return_value, verdict,
        "the tap lets every packet through"
    );

    let records = r.take_records().unwrap();
    assert_eq!(records.len(), 1, "one run, one record");
    let h = records[0].header;
    assert_eq!(h.orig_len as usize, frame.len());
    assert_eq!(h.cap_len as usize, frame.len());
    assert_eq!(h.hook, record_hook);
    assert_eq!(h.direction, direction);
    // A test run delivers the packet on the loopback device of the caller's namespace.
    assert_eq!(h.ifindex, 1);
    assert_ne!(h.ts_ns, 0);
    assert_eq!(records[0].data, frame);

    let after = r.counters();
    assert_eq!(after.seen - before.seen, 1, "SEEN");
    assert_eq!(after.matched - before.matched, 1, "MATCHED");
    assert_eq!(after.copied - before.copied, 1, "COPIED");
    assert_eq!(
        after.copied_bytes - before.copied_bytes,
        frame.len() as u64,
        "COPIED_BYTES"
    );
    assert_eq!(after.ring_full, before.ring_full, "RING_FULL");
}

#[test]
fn xdp_frame_becomes_one_record() {
    one_frame_one_record(Hook::Xdp, XDP_PASS, HOOK_XDP, DIR_INBOUND);
}

#[test]
fn tc_ingress_frame_becomes_one_record() {
    one_frame_one_record(Hook::TcIngress, TC_ACT_UNSPEC, HOOK_TC_INGRESS, DIR_INBOUND);
}

#[test]
fn tc_egress_frame_becomes_one_record() {
    one_frame_one_record(Hook::TcEgress, TC_ACT_UNSPEC, HOOK_TC_EGRESS, DIR_OUTBOUND);
}

#[test]
fn snaplen_truncates_and_keeps_the_original_length() {
    for hook in [Hook::Xdp, Hook::TcIngress] {
        let mut r = runner(RunnerSpec {
            snaplen: 64,
            ..RunnerSpec::new(hook)
        });
        let frame = udp_frame(1500).unwrap();
        r.run(&frame, 1).unwrap();
        let records = r.take_records().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].header.orig_len, 1500, "{hook:?}");
        assert_eq!(records[0].header.cap_len, 64, "{hook:?}");
        assert_eq!(records[0].data, frame[..64], "{hook:?}");
    }
}

#[test]
fn repeat_copies_every_run() {
    let mut r = runner(RunnerSpec::new(Hook::TcIngress));
    let frame = udp_frame(64).unwrap();
    r.run(&frame, 100).unwrap();
    let records = r.take_records().unwrap();
    assert_eq!(records.len(), 100);
    assert!(records.iter().all(|rec| rec.data == frame));
    assert_eq!(r.counters().copied, 100);
}

#[test]
fn a_full_ring_counts_drops() {
    // One page of ring holds two records of a 1500-byte frame (a 1,536-byte payload class plus
    // a 40-byte header and the ring's 8: 1,584 bytes each).
    let mut r = runner(RunnerSpec {
        ring_size: 4096,
        ..RunnerSpec::new(Hook::Xdp)
    });
    let frame = udp_frame(1500).unwrap();
    r.run(&frame, 4).unwrap();
    let c = r.counters();
    assert_eq!((c.seen, c.copied, c.ring_full), (4, 2, 2));
    assert_eq!(r.take_records().unwrap().len(), 2);
    // Room again after the drain.
    r.run(&frame, 1).unwrap();
    assert_eq!(r.counters().copied, 3);
}

#[test]
fn timings_take_the_path_they_claim() {
    for hook in [Hook::Xdp, Hook::TcIngress] {
        let mut r = runner(RunnerSpec {
            ring_size: 1 << 20,
            ..RunnerSpec::new(hook)
        });
        let frame = udp_frame(64).unwrap();
        // More runs than the ring holds: the room timing drains between calls.
        let room = r.time(&frame, 20_000, RingState::Room).unwrap();
        let full = r.time(&frame, 1_000, RingState::Full).unwrap();
        assert_eq!((room.runs, full.runs), (20_000, 1_000));
        assert!(
            room.ns_per_run > 0.0 && full.ns_per_run > 0.0,
            "{room:?} {full:?}"
        );
        assert_eq!(
            r.take_records().unwrap().len(),
            0,
            "timings leave the ring empty"
        );
    }
}

/// Pins the calling thread to one CPU: the programs keep their keep predictor per CPU, so a
/// sequence of runs sees one predictor only when every run happens on the same CPU.
fn pin_to_one_cpu() {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity (0: the
    // calling thread) only read and write it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set)
    };
    assert_eq!(rc, 0, "pinning the test thread to CPU 0");
}

const KEPT_DST: [u8; 4] = [198, 51, 100, 7];
const OTHER_DST: [u8; 4] = [198, 51, 100, 8];

/// Runs each frame once, in order, through a fresh program with `dst host 198.51.100.7`.
/// Returns the runner and the frames the filter selects.
fn run_sequence(ring_size: u32, kept: &[bool]) -> (ProgRunner, Vec<Vec<u8>>) {
    pin_to_one_cpu();
    let r = runner(RunnerSpec {
        ring_size,
        filter: tap::filter::image("dst host 198.51.100.7").unwrap(),
        ..RunnerSpec::new(Hook::TcIngress)
    });
    let mut selected = Vec::new();
    for (i, &keep) in kept.iter().enumerate() {
        // Both small record classes (64 and 128 bytes), where records are reserved early.
        let len = if i % 2 == 0 { 60 } else { 100 };
        let frame = udp_frame_to(len, if keep { KEPT_DST } else { OTHER_DST }).unwrap();
        r.run(&frame, 1).unwrap();
        if keep {
            selected.push(frame);
        }
    }
    (r, selected)
}

/// Ring bytes the records of `frames` take (40-byte header, the payload class, the ring's 8).
fn slots(frames: &[Vec<u8>]) -> u64 {
    frames
        .iter()
        .map(|f| 8 + 40 + if f.len() <= 64 { 64 } else { 128 })
        .sum()
}

#[test]
fn records_reserved_before_the_filter_are_discarded_when_it_rejects() {
    // Mostly kept, with rejected frames between: the programs reserve before filtering and
    // discard the record of a rejected frame. The ring must still hold exactly the selected
    // frames, in order, and the counters must not count the discarded ones.
    let pattern = "KKKKKKRKKKRRRKKKKRKRKKKKKKKKRK";
    let kept: Vec<bool> = pattern.chars().map(|c| c == 'K').collect();
    let (mut r, selected) = run_sequence(1 << 20, &kept);
    let produced = r.ring().producer_pos();
    let records = r.take_records().unwrap();
    let data: Vec<&Vec<u8>> = records.iter().map(|rec| &rec.data).collect();
    assert_eq!(
        data,
        selected.iter().collect::<Vec<_>>(),
        "the selected frames, in order"
    );
    let c = r.counters();
    let n = kept.len() as u64;
    let k = selected.len() as u64;
    assert_eq!(
        (c.seen, c.matched, c.copied, c.ring_full, c.filter_error),
        (n, k, k, 0, 0)
    );
    assert!(
        produced > slots(&selected),
        "some rejected frames had a record reserved and discarded (the early path ran): \
         {produced} ring bytes produced for {} of kept records",
        slots(&selected)
    );
}

#[test]
fn mostly_rejected_traffic_reserves_nothing_it_does_not_keep() {
    // One frame in ten kept: records are reserved after the filter, so the ring holds nothing
    // but the kept records, not even discarded ones.
    let kept: Vec<bool> = (0..100).map(|i| i % 10 == 3).collect();
    let (mut r, selected) = run_sequence(1 << 20, &kept);
    assert_eq!(r.ring().producer_pos(), slots(&selected));
    assert_eq!(r.take_records().unwrap().len(), selected.len());
    let c = r.counters();
    assert_eq!((c.matched, c.copied), (10, 10));
}

#[test]
fn a_full_ring_counts_only_selected_frames_as_drops() {
    // 4 KiB of ring holds 36 records of 64-byte frames. 40 kept frames, then 10 rejected ones,
    // then 10 kept ones: 14 kept frames find the ring full; the rejected ones are no drops,
    // whichever path (reserve first or filter first) they took.
    let kept: Vec<bool> = (0..60).map(|i| !(40..50).contains(&i)).collect();
    let mut r = {
        pin_to_one_cpu();
        runner(RunnerSpec {
            ring_size: 4096,
            filter: tap::filter::image("dst host 198.51.100.7").unwrap(),
            ..RunnerSpec::new(Hook::Xdp)
        })
    };
    let mut selected = Vec::new();
    for &keep in &kept {
        let frame = udp_frame_to(60, if keep { KEPT_DST } else { OTHER_DST }).unwrap();
        r.run(&frame, 1).unwrap();
        if keep {
            selected.push(frame);
        }
    }
    let c = r.counters();
    assert_eq!(
        (c.seen, c.matched, c.copied, c.ring_full),
        (60, 50, 36, 14),
        "{c:?}"
    );
    let records = r.take_records().unwrap();
    assert_eq!(records.len(), 36);
    assert!(records.iter().zip(&selected).all(|(rec, f)| &rec.data == f));
}

/// Frames longer than the largest size class (multi-buffer XDP frames in the test run) are
/// recorded whole in a record of their exact size: header, lengths and every byte.
#[test]
fn xdp_frames_above_the_largest_class_are_captured_whole() {
    use tap_common::config::{LARGE_CHUNK, MAX_CLASS};
    let mut r = runner(RunnerSpec::new(Hook::Xdp));
    // Just above the largest class, one piece and a bit, many pieces with a short last one,
    // and the longest IPv4 packet: 65,549 bytes.
    let lens = [
        MAX_CLASS as usize + 1,
        LARGE_CHUNK as usize * 2 + 1,
        20_000,
        64 * 1024,
        tap::kernel::testrun::MAX_UDP_FRAME,
    ];
    for len in lens {
        let frame = udp_frame(len).unwrap();
        let before = r.counters();
        r.run(&frame, 1).unwrap();
        let records = r.take_records().unwrap();
        assert_eq!(records.len(), 1, "{len}: one record");
        let h = records[0].header;
        assert_eq!((h.orig_len, h.cap_len), (len as u32, len as u32), "{len}");
        assert_eq!(h.hook, HOOK_XDP);
        assert!(records[0].data == frame, "{len}: the bytes differ");
        let after = r.counters();
        assert_eq!(after.copied - before.copied, 1, "{len}: COPIED");
        assert_eq!(
            after.copied_bytes - before.copied_bytes,
            len as u64,
            "{len}: COPIED_BYTES"
        );
        assert_eq!(after.truncated, 0, "{len}: TRUNCATED");
        assert_eq!(after.read_error, 0, "{len}: READ_ERROR");
    }
}

/// A record above the largest class takes exactly its size in the ring (the ring's 8-byte
/// header, the 40-byte record header and the bytes, rounded up to 8), not a power of two.
#[test]
fn large_records_take_their_exact_size_in_the_ring() {
    let mut r = runner(RunnerSpec::new(Hook::Xdp));
    let len = 20_001;
    let frame = udp_frame(len).unwrap();
    let before = r.ring().producer_pos();
    r.run(&frame, 1).unwrap();
    let used = r.ring().producer_pos() - before;
    assert_eq!(used, (8 + 40 + len as u64).next_multiple_of(8));
    assert_eq!(r.take_records().unwrap().len(), 1);
}

/// A snap length between the largest class and the frame's length keeps exactly that many
/// bytes; one of the class sizes keeps the class path.
#[test]
fn long_snap_lengths_truncate_large_frames() {
    for snaplen in [9216u32, 9217, 16_384, 30_001] {
        let mut r = runner(RunnerSpec {
            snaplen,
            ..RunnerSpec::new(Hook::Xdp)
        });
        let frame = udp_frame(40_000).unwrap();
        r.run(&frame, 1).unwrap();
        let records = r.take_records().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(
            (records[0].header.orig_len, records[0].header.cap_len),
            (40_000, snaplen)
        );
        assert!(records[0].data == frame[..snaplen as usize]);
        assert_eq!(r.counters().truncated, 0, "what -s asked is no truncation");
    }
}

/// A large record the ring cannot hold is a counted drop, like a small one.
#[test]
fn a_ring_too_small_for_a_large_record_counts_a_drop() {
    let mut r = runner(RunnerSpec {
        ring_size: 16_384,
        ..RunnerSpec::new(Hook::Xdp)
    });
    let frame = udp_frame(20_000).unwrap();
    r.run(&frame, 1).unwrap();
    let c = r.counters();
    assert_eq!((c.seen, c.copied, c.ring_full), (1, 0, 1), "{c:?}");
    assert!(r.take_records().unwrap().is_empty());
}

/// Seen, matched and ring-full drops are counted per interface and hook too, under the hook the
/// program serves, and add up to the capture-wide counters.
#[test]
fn counters_per_interface_and_hook() {
    for (hook, code) in [
        (Hook::Xdp, HOOK_XDP),
        (Hook::TcIngress, HOOK_TC_INGRESS),
        (Hook::TcEgress, HOOK_TC_EGRESS),
    ] {
        let mut r = runner(RunnerSpec {
            ring_size: 4096,
            filter: tap::filter::image("dst host 198.51.100.7").unwrap(),
            per_interface: true,
            ..RunnerSpec::new(hook)
        });
        // 36 records of 64-byte frames fill the page: 40 kept frames leave 4 drops.
        for i in 0..50 {
            let dst = if i < 40 { KEPT_DST } else { OTHER_DST };
            r.run(&udp_frame_to(60, dst).unwrap(), 1).unwrap();
        }
        let total = r.counters();
        assert_eq!(
            (total.seen, total.matched, total.ring_full),
            (50, 40, 4),
            "{hook:?}"
        );
        let per = r.interface_counters();
        let ours: Vec<_> = per.iter().filter(|c| c.hook == code).collect();
        assert_eq!(ours.len(), 1, "{hook:?}: {per:?}");
        let c = ours[0];
        assert_eq!(c.ifindex, tap::kernel::testrun::TEST_RUN_IFINDEX);
        assert_eq!((c.seen, c.matched, c.ring_full), (50, 40, 4), "{hook:?}");
        assert!(
            per.iter()
                .filter(|c| c.hook != code)
                .all(|c| c.seen == 0 && c.matched == 0 && c.ring_full == 0),
            "{hook:?}: nothing under the other hooks: {per:?}"
        );
        r.take_records().unwrap();
    }
}

/// Switched off (the default, for pcap outputs), the programs count nothing per interface.
#[test]
fn no_counters_per_interface_unless_asked() {
    let mut r = runner(RunnerSpec::new(Hook::TcIngress));
    r.run(&udp_frame(64).unwrap(), 10).unwrap();
    assert_eq!(r.counters().seen, 10);
    assert!(
        r.interface_counters()
            .iter()
            .all(|c| c.seen == 0 && c.matched == 0),
        "{:?}",
        r.interface_counters()
    );
    r.take_records().unwrap();
}

// ---- The per-flow budget ---------------------------------------------------------------------

use tap::model::{FlowBudget, FlowUnit};

#[expect(clippy::unnecessary_wraps, reason = "it fills an optional field")]
fn budget(limit: u64, unit: FlowUnit) -> Option<FlowBudget> {
    Some(FlowBudget {
        limit,
        unit,
        table_size: tap_common::flow::DEFAULT_FLOW_TABLE,
    })
}

fn budget_runner(hook: Hook, b: Option<FlowBudget>) -> ProgRunner {
    runner(RunnerSpec {
        flow_budget: b,
        ..RunnerSpec::new(hook)
    })
}

/// Ethernet + IPv4 + TCP (20-byte header) from `src:sport` to `dst:dport` with `flags`, padded
/// to `len` bytes.
fn tcp_frame(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8, len: usize) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&((len - 14) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.resize(len, 0x61);
    f
}

const HOST_A: [u8; 4] = [192, 0, 2, 1];
const HOST_B: [u8; 4] = [198, 51, 100, 7];
const ACK: u8 = 0x10;

/// Runs each frame once; returns which were copied.
fn copied(r: &mut ProgRunner, frames: &[Vec<u8>]) -> Vec<bool> {
    frames
        .iter()
        .map(|f| {
            let before = r.counters().copied;
            r.run(f, 1).unwrap();
            r.counters().copied > before
        })
        .collect()
}

#[test]
fn a_byte_budget_keeps_the_first_bytes_of_a_flow() {
    for hook in [Hook::Xdp, Hook::TcIngress] {
        let mut r = budget_runner(hook, budget(4096, FlowUnit::Bytes));
        let frame = udp_frame(1000).unwrap();
        let frames = vec![frame.clone(); 10];
        // Copied while the flow has used less than 4096 bytes before the packet: 5 of them.
        assert_eq!(
            copied(&mut r, &frames),
            [
                true, true, true, true, true, false, false, false, false, false
            ],
            "{hook:?}"
        );
        let c = r.counters();
        assert_eq!((c.seen, c.matched, c.copied), (10, 10, 5), "{hook:?}");
        assert_eq!((c.over_budget, c.flows_new), (5, 1), "{hook:?}");
        let records = r.take_records().unwrap();
        assert!(records.iter().all(|rec| rec.data == frame), "copied whole");
        // The table holds the flow under the key user space computes for the frame.
        let key = tap::kernel::flow::flow_of(&frame).unwrap().key;
        let table = r.flows().unwrap();
        assert_eq!(table.used(&key), Some(5000), "{hook:?}");
        assert_eq!(table.entries(), 1);
    }
}

#[test]
fn both_directions_share_a_packet_budget() {
    let mut r = budget_runner(Hook::TcIngress, budget(4, FlowUnit::Packets));
    let ab = tcp_frame(HOST_A, 40000, HOST_B, 80, ACK, 100);
    let ba = tcp_frame(HOST_B, 80, HOST_A, 40000, ACK, 100);
    let frames: Vec<Vec<u8>> = (0..8)
        .map(|i| if i % 2 == 0 { ab.clone() } else { ba.clone() })
        .collect();
    assert_eq!(
        copied(&mut r, &frames),
        [true, true, true, true, false, false, false, false]
    );
    assert_eq!(r.counters().flows_new, 1, "one flow");
    // Another port pair is another flow, with a budget of its own.
    let other = tcp_frame(HOST_A, 40001, HOST_B, 80, ACK, 100);
    assert_eq!(copied(&mut r, &[other]), [true]);
    assert_eq!(r.counters().flows_new, 2);
    r.take_records().unwrap();
}

#[test]
fn syn_fin_and_rst_are_copied_past_the_budget() {
    let mut r = budget_runner(Hook::Xdp, budget(1, FlowUnit::Packets));
    let f = |flags| tcp_frame(HOST_A, 40000, HOST_B, 80, flags, 80);
    let frames = [
        f(0x02),       // SYN: the first, within the budget anyway
        f(0x12),       // SYN-ACK
        f(ACK),        // over
        f(ACK | 0x08), // over
        f(ACK | 0x01), // FIN
        f(0x04),       // RST
        f(ACK),        // over
    ];
    assert_eq!(
        copied(&mut r, &frames),
        [true, true, false, false, true, true, false]
    );
    assert_eq!(r.counters().over_budget, 3);
    r.take_records().unwrap();
}

#[test]
fn frames_without_a_flow_are_not_budgeted() {
    // XDP: a TC test run refuses an IPv4 frame too short for its header.
    let mut r = budget_runner(Hook::Xdp, budget(1, FlowUnit::Packets));
    // ARP, and an IPv4 frame too short for its header.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    arp.resize(60, 0);
    let mut short = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0, 0];
    short.resize(20, 0);
    let frames = vec![arp.clone(), arp.clone(), arp, short.clone(), short];
    assert!(copied(&mut r, &frames).iter().all(|&c| c));
    let c = r.counters();
    assert_eq!((c.over_budget, c.flows_new), (0, 0));
    r.take_records().unwrap();
}

#[test]
fn vlans_and_fragments_make_flows_of_their_own() {
    let mut r = budget_runner(Hook::TcIngress, budget(1, FlowUnit::Packets));
    let plain = udp_frame(100).unwrap();
    let tagged = |vid: u8| {
        let mut f = plain[..12].to_vec();
        f.extend_from_slice(&[0x81, 0x00, 0x00, vid]);
        f.extend_from_slice(&plain[12..]);
        f
    };
    // Fragments of a datagram: offset 0 with MF (ports), then offset 185 (no ports).
    let fragment = |offset: u16| {
        let mut f = plain.clone();
        f[20..22].copy_from_slice(&(0x2000 | offset).to_be_bytes());
        f
    };
    let frames = [
        plain.clone(),
        tagged(7),
        tagged(8),
        tagged(7),
        fragment(0),
        fragment(185),
        fragment(370),
    ];
    // The first fragment belongs to the datagram's flow (over budget); the later ones, without
    // ports, to a flow of their own.
    assert_eq!(
        copied(&mut r, &frames),
        [true, true, true, false, false, true, false]
    );
    assert_eq!(r.counters().flows_new, 4);
    r.take_records().unwrap();
}

#[test]
fn tunnel_ids_make_flows_of_their_own() {
    let mut r = runner(RunnerSpec {
        flow_budget: budget(1, FlowUnit::Packets),
        decap: tap_common::config::decap::VXLAN,
        ..RunnerSpec::new(Hook::Xdp)
    });
    let inner = udp_frame(100).unwrap();
    let vxlan = |vni: u32| {
        let mut f = vec![2, 0, 0, 0, 0, 9, 2, 0, 0, 0, 0, 8, 0x08, 0x00];
        let len = (20 + 8 + 8 + inner.len()) as u16;
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&len.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 203, 0, 113, 1, 203, 0, 113, 2]);
        f.extend_from_slice(&[0xc0, 0x00, 0x12, 0xb5]);
        f.extend_from_slice(&(len - 20).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x08, 0, 0, 0]);
        f.extend_from_slice(&(vni << 8).to_be_bytes());
        f.extend_from_slice(&inner);
        f
    };
    assert_eq!(
        copied(&mut r, &[vxlan(1), vxlan(2), vxlan(1), vxlan(2)]),
        [true, true, false, false]
    );
    let records = r.take_records().unwrap();
    assert!(
        records.iter().all(|rec| rec.data == inner),
        "the inner frame"
    );
    assert_eq!(r.counters().flows_new, 2);
}

#[test]
fn a_full_table_evicts_and_the_evictions_are_flows_added_less_entries() {
    let mut r = runner(RunnerSpec {
        flow_budget: Some(FlowBudget {
            limit: 1,
            unit: FlowUnit::Packets,
            table_size: 64,
        }),
        ..RunnerSpec::new(Hook::TcIngress)
    });
    let frames: Vec<Vec<u8>> = (0..500)
        .map(|i| tcp_frame(HOST_A, 10_000 + i, HOST_B, 80, ACK, 80))
        .collect();
    assert!(
        copied(&mut r, &frames).iter().all(|&c| c),
        "every flow is new"
    );
    let c = r.counters();
    assert_eq!(c.flows_new, 500);
    let entries = r.flows().unwrap().entries();
    assert!(entries <= 64 && entries > 0, "{entries} entries");
    // The oldest flows were evicted: back, they start over (copied) rather than being over.
    let before = r.counters().copied;
    r.run(&frames[0], 1).unwrap();
    assert_eq!(
        r.counters().copied,
        before + 1,
        "an evicted flow starts over"
    );
    assert_eq!(r.counters().flows_new, 501);
    r.take_records().unwrap();
}

#[test]
fn without_a_budget_the_table_is_not_used() {
    let mut r = budget_runner(Hook::Xdp, None);
    let frame = udp_frame(1000).unwrap();
    r.run(&frame, 20).unwrap();
    let c = r.counters();
    assert_eq!((c.copied, c.over_budget, c.flows_new), (20, 0, 0));
    assert!(r.flows().is_none());
    r.take_records().unwrap();
}
