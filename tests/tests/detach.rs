//! Every attachment goes away with tap: after SIGINT or SIGTERM (tap detaches on its way out) and
//! after SIGKILL (the kernel drops the BPF links with their last file descriptor). Checked with
//! `ip -d link`, `bpftool net` and a tcx query, each first seen to report the attachment while
//! tap runs, so an empty answer afterwards means something.

use tap_tests::{
    TempDir, Topology,
    bpf::{Attachments, assert_nothing_attached},
    tap,
    topology::B_V4,
    traffic,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Interrupt,
    Terminate,
    Kill,
}

fn detaches(hook_args: &[&str], stop: Stop) {
    let t = Topology::new();
    let dir = TempDir::new();
    let file = dir.join("tap.pcap");
    assert_nothing_attached(&t.b, &t.b_if);
    let tap = tap::start(
        &t.b,
        &[
            &["-i", t.b_if.as_str(), "-w", &file.to_string_lossy()][..],
            hook_args,
        ]
        .concat(),
    );

    let live = Attachments::of(&t.b, &t.b_if);
    if hook_args.contains(&"xdp") {
        let flag = if hook_args.contains(&"generic") {
            "xdpgeneric"
        } else {
            "xdp"
        };
        assert!(
            live.ip_link_xdp.iter().any(|w| w == flag),
            "ip -d link shows no {flag} while tap runs: {live:#?}"
        );
        assert!(
            live.ip_link_xdp.iter().any(|w| w == "prog/xdp"),
            "ip -d link shows no program: {live:#?}"
        );
        assert!(
            !live.bpftool.is_empty(),
            "bpftool net shows no XDP program while tap runs: {live:#?}"
        );
        assert_eq!((live.tcx_ingress, live.tcx_egress), (0, 0), "{live:#?}");
    } else {
        assert_eq!(
            (live.tcx_ingress, live.tcx_egress),
            (1, 1),
            "tcx programs while tap runs: {live:#?}"
        );
        assert!(
            live.ip_link_xdp.is_empty() && live.bpftool.is_empty(),
            "{live:#?}"
        );
    }
    traffic::ping(&t.a, B_V4, 1, &[]);

    match stop {
        Stop::Interrupt => {
            tap::stop(tap);
        }
        Stop::Terminate => {
            tap.signal(libc::SIGTERM);
            let exited = tap.wait(tap::STOP_TIMEOUT);
            assert!(
                exited.status.success(),
                "tap failed after SIGTERM ({}):\n{}",
                exited.status,
                exited.stderr
            );
        }
        Stop::Kill => {
            let exited = tap.kill();
            assert_eq!(
                std::os::unix::process::ExitStatusExt::signal(&exited.status),
                Some(libc::SIGKILL)
            );
        }
    }
    // No waiting: the process is reaped, so its descriptors are closed and its links released.
    assert_nothing_attached(&t.b, &t.b_if);
    // And the link still carries traffic.
    traffic::ping(&t.a, B_V4, 1, &[]);
}

#[test]
fn tc_detaches_on_sigint() {
    detaches(&["--hook", "tc"], Stop::Interrupt);
}

#[test]
fn tc_detaches_on_sigterm() {
    detaches(&["--hook", "tc"], Stop::Terminate);
}

#[test]
fn tc_detaches_on_sigkill() {
    detaches(&["--hook", "tc"], Stop::Kill);
}

#[test]
fn xdp_native_detaches_on_sigint() {
    detaches(&["--hook", "xdp", "--xdp-mode", "native"], Stop::Interrupt);
}

#[test]
fn xdp_native_detaches_on_sigkill() {
    detaches(&["--hook", "xdp", "--xdp-mode", "native"], Stop::Kill);
}

#[test]
fn xdp_generic_detaches_on_sigkill() {
    detaches(&["--hook", "xdp", "--xdp-mode", "generic"], Stop::Kill);
}
