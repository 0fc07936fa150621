//! Each way a capture cannot start ends the same way: one clear line on stderr, exit code 1, no
//! output file (tap attaches before it opens the output), and nothing left attached.

use std::process::Stdio;

use tap_tests::{
    Netns, TempDir, Topology,
    bpf::{assert_nothing_attached, try_native_xdp},
    process::{Background, Exited},
    tap,
    tap::Capture,
};

/// Asserts the run failed with exactly one line on stderr, `tap: ` and containing each of
/// `expected`, and created no output file.
fn assert_refused(exited: &Exited, output: &std::path::Path, expected: &[&str]) {
    assert_eq!(
        exited.status.code(),
        Some(1),
        "exit status ({}), stderr:\n{}",
        exited.status,
        exited.stderr
    );
    let lines: Vec<&str> = exited.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "not exactly one line on stderr:\n{}",
        exited.stderr
    );
    assert!(lines[0].starts_with("tap: "), "error line: {}", lines[0]);
    for part in expected {
        assert!(
            lines[0].contains(part),
            "error line lacks {part:?}: {}",
            lines[0]
        );
    }
    assert!(!output.exists(), "{} was created", output.display());
}

#[test]
fn unknown_interface() {
    let ns = Netns::new("err");
    let dir = TempDir::new();
    let out = dir.join("out.pcap");
    let exited = tap::run(&ns, &["-i", "nosuch0", "-w", &out.to_string_lossy()]);
    assert_refused(&exited, &out, &["tap: unknown interface 'nosuch0'"]);
    assert_nothing_attached(&ns, "lo");
}

#[test]
fn not_root() {
    let t = Topology::new();
    // Writable by nobody, so a missing file is tap's doing, not the directory's.
    let dir = TempDir::world_writable();
    let out = dir.join("out.pcap");
    let mut cmd = t.b.cmd("setpriv");
    cmd.args([
        "--reuid",
        "nobody",
        "--regid",
        "nogroup",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ])
    .arg(tap_tests::tap_bin())
    .args(["capture", "-i", &t.b_if, "-w", &out.to_string_lossy()])
    .env_remove("TAP_LOG")
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    let exited = Background::spawn("tap as nobody", cmd).wait(tap::START_TIMEOUT);
    assert_refused(&exited, &out, &["permission denied", "tap needs root"]);
    assert_nothing_attached(&t.b, &t.b_if);
}

#[test]
fn native_xdp_unsupported() {
    let ns = Netns::new("err");
    // The dummy driver is a module this kernel lacks; a bridge is built in and has no native XDP.
    ns.sh("ip link add br0 type bridge && ip link set br0 up");
    let refusal =
        try_native_xdp(&ns, "br0").expect_err("the kernel took a native XDP program on a bridge");
    assert_eq!(
        refusal.raw_os_error(),
        Some(libc::EOPNOTSUPP),
        "the kernel's refusal: {refusal}"
    );
    let dir = TempDir::new();
    let out = dir.join("out.pcap");
    let exited = tap::run(
        &ns,
        &[
            "-i",
            "br0",
            "--hook",
            "xdp",
            "--xdp-mode",
            "native",
            "-w",
            &out.to_string_lossy(),
        ],
    );
    assert_refused(&exited, &out, &["br0 does not support native XDP"]);
    assert_nothing_attached(&ns, "br0");
}

#[test]
fn program_rejected_by_the_verifier() {
    let t = Topology::new();
    let dir = TempDir::new();
    let out = dir.join("out.pcap");
    let exited = Capture::on(&t.b_if)
        .args(&[
            "--hook",
            "xdp",
            "--xdp-program",
            "xdp_tap_rejected",
            "-w",
            &out.to_string_lossy(),
        ])
        .run(&t.b);
    assert_refused(
        &exited,
        &out,
        &["tap: the kernel refused program xdp_tap_rejected: invalid access to packet"],
    );
    assert_nothing_attached(&t.b, &t.b_if);
}

#[test]
fn native_xdp_probe_accepts_veth() {
    // The probe `native_xdp_unsupported` relies on says yes where native XDP exists.
    let t = Topology::new();
    try_native_xdp(&t.b, &t.b_if).expect("native XDP on veth");
    assert_nothing_attached(&t.b, &t.b_if);
}

#[test]
fn output_cannot_be_opened() {
    // The one failure after attaching: tap must detach again on its way out.
    let t = Topology::new();
    let dir = TempDir::new();
    let out = dir.join("no-such-dir/out.pcap");
    let exited = Capture::on(&t.b_if).write(&out.to_string_lossy()).run(&t.b);
    assert_refused(
        &exited,
        &out,
        &[&out.to_string_lossy(), "No such file or directory"],
    );
    assert_nothing_attached(&t.b, &t.b_if);
}

/// `--sign-key` with a key that cannot sign: missing, readable by others, not a key. Each is
/// refused before anything is attached, in one line naming the file and what is wrong with it.
#[test]
fn unusable_sign_key() {
    use std::os::unix::fs::PermissionsExt as _;
    let ns = Netns::new("err");
    let dir = TempDir::new();
    let out = dir.join("out.pcap");
    let exposed = dir.join("exposed.key");
    let exited = Background::spawn("tap key generate", {
        let mut cmd = std::process::Command::new(tap_tests::tap_bin());
        cmd.args(["key", "generate"])
            .arg(&exposed)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    })
    .wait(tap::START_TIMEOUT);
    assert!(
        exited.status.success(),
        "tap key generate: {}",
        exited.stderr
    );
    std::fs::set_permissions(&exposed, std::fs::Permissions::from_mode(0o644))
        .expect("chmod 644 the key");
    let garbage = dir.join("garbage.key");
    std::fs::write(&garbage, "not a key\n").expect("writing a file that is no key");
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600))
        .expect("chmod 600 the file");
    let missing = dir.join("missing.key");
    for (key, expected) in [
        (&missing, "--sign-key"),
        (&exposed, "readable by others"),
        (&garbage, "is not an ed25519 secret key"),
    ] {
        let exited = tap::run(
            &ns,
            &[
                "-i",
                "lo",
                "-w",
                &out.to_string_lossy(),
                "--sign-key",
                &key.to_string_lossy(),
            ],
        );
        assert_refused(&exited, &out, &[expected, &key.to_string_lossy()]);
    }
    assert_nothing_attached(&ns, "lo");
}
