//! The rules through the command line: every case the flags' tests held before there was one
//! rule book, and each rule's bad value through every front door (flags, agent file, session),
//! asserting the same key and the same reason.

use std::{path::Path, time::Duration};

use tap_common::config::{DEFAULT_SNAPLEN, MAX_SNAPLEN};

use super::{
    Key, SettingError,
    agent_file::{self, AgentConfig, AgentConfigError},
    flags::{self, Request},
    raw::Purpose,
    rules, session,
};
use crate::model::{
    CaptureConfig, Compression, DiskFull, Format, Hook, Interface, Output, Rotation,
    ZSTD_DEFAULT_LEVEL,
};

fn config(args: &[&str]) -> Result<CaptureConfig, SettingError> {
    let invocation = flags::try_from_args(["tap", "capture"].iter().chain(args.iter())).unwrap();
    let Request::Capture { capture, .. } = invocation.command else {
        panic!("capture")
    };
    rules::capture(&capture, Purpose::Command)
}

/// The same flags' raw values read as a service (the agent's file and sessions) would be.
fn service_config(args: &[&str]) -> Result<CaptureConfig, SettingError> {
    let invocation = flags::try_from_args(["tap", "capture"].iter().chain(args.iter())).unwrap();
    let Request::Capture { capture, .. } = invocation.command else {
        panic!("capture")
    };
    rules::capture(&capture, Purpose::Service)
}

fn refused(result: &Result<CaptureConfig, SettingError>, key: Key) -> bool {
    matches!(result, Err(e) if e.key == key)
}

/// The refusal is `key`'s, and the command line says `needle` in it.
fn err_is(e: SettingError, key: Key, needle: &str) -> bool {
    e.key == key && flags::worded(&e).message.contains(needle)
}

#[test]
fn loopback_resolves_with_defaults() {
    let c = config(&["-i", "lo", "-w", "-"]).unwrap();
    assert_eq!(
        c.interfaces,
        [Interface {
            name: "lo".into(),
            ifindex: 1
        }]
    );
    assert_eq!(c.hooks, [Hook::TcIngress, Hook::TcEgress]);
    assert_eq!(c.snaplen, DEFAULT_SNAPLEN);
    assert_eq!(c.output.target, Output::Stdout);
    assert_eq!(c.output.format, Format::Pcap);
}

#[test]
fn snaplen_zero_means_whole_packet_and_too_large_is_refused() {
    assert_eq!(
        config(&["-i", "lo", "-s", "0", "-w", "x"]).unwrap().snaplen,
        DEFAULT_SNAPLEN
    );
    assert_eq!(DEFAULT_SNAPLEN, 262_144, "tcpdump's default");
    assert_eq!(
        config(&["-i", "lo", "-s", "65535", "-w", "x"])
            .unwrap()
            .snaplen,
        65535
    );
    assert_eq!(
        config(&["-i", "lo", "-s", "262144", "-w", "x"])
            .unwrap()
            .snaplen,
        MAX_SNAPLEN
    );
    let e = config(&["-i", "lo", "-s", "262145", "-w", "x"]).unwrap_err();
    assert_eq!(e.key, Key::Snaplen);
    let message = flags::worded(&e).message;
    assert!(
        message.contains("262145") && message.contains("262144"),
        "{message}"
    );
    assert_eq!(
        config(&["-i", "lo", "-s", "96", "-w", "x"])
            .unwrap()
            .snaplen,
        96
    );
}

#[test]
fn flow_budgets() {
    use crate::model::FlowUnit;
    let budget = |args: &[&str]| config(&[&["-i", "lo", "-w", "x"][..], args].concat());
    assert_eq!(budget(&[]).unwrap().flow_budget, None);
    let b = budget(&["--flow-budget", "4096"])
        .unwrap()
        .flow_budget
        .unwrap();
    assert_eq!(
        (b.limit, b.unit, b.table_size),
        (4096, FlowUnit::Bytes, 65_536)
    );
    let b = budget(&["--flow-budget", "64K", "--flow-table-size", "1000"])
        .unwrap()
        .flow_budget
        .unwrap();
    assert_eq!((b.limit, b.table_size), (64 << 10, 1000));
    let b = budget(&["--flow-budget", "200p"])
        .unwrap()
        .flow_budget
        .unwrap();
    assert_eq!((b.limit, b.unit), (200, FlowUnit::Packets));
    for bad in ["0", "0p", "p", "-5", "4X", "1.5p", ""] {
        // `=`: clap takes "-5" after a space for a flag, not a value.
        let e = budget(&[&format!("--flow-budget={bad}")]).unwrap_err();
        assert_eq!(e.key, Key::FlowBudget, "{bad}: {e}");
    }
    for size in ["0", "16777217"] {
        assert!(refused(
            &budget(&["--flow-budget", "1K", "--flow-table-size", size]),
            Key::FlowTableSize
        ));
    }
    // A table size means nothing without a budget.
    assert!(flags::try_from_args(["tap", "capture", "--flow-table-size", "5", "-w", "x"]).is_err());
}

#[test]
fn an_output_or_a_consumer_is_required() {
    // The command line prints packets when it has nothing else to do, as tcpdump; a service
    // has no terminal and needs a sink.
    let c = config(&["-i", "lo"]).unwrap();
    assert_eq!(c.output.target, Output::None);
    assert!(c.print.is_some());
    assert!(refused(&service_config(&["-i", "lo"]), Key::Sinks));
    assert!(config(&["-i", "lo", "-w", "x"]).unwrap().print.is_none());
    assert!(
        config(&["-i", "lo", "-w", "x", "--print"])
            .unwrap()
            .print
            .is_some()
    );
    let c = config(&["-i", "lo", "--serve", "unix:/tmp/x.sock"]).unwrap();
    assert_eq!(c.output.target, Output::None);
    assert!(refused(
        &config(&["-i", "lo", "--serve", "/tmp/x.sock"]),
        Key::Serve
    ));
    assert!(refused(
        &config(&["-i", "lo", "--forward", "vxlan://192.0.2.9"]),
        Key::Forward
    ));
    assert!(refused(
        &config(&[
            "-i",
            "lo",
            "-w",
            "x.pcap",
            "--suricata-socket",
            "/run/s.sock"
        ]),
        Key::SuricataSocket
    ));
}

#[test]
fn output_format_and_compression_follow_the_name() {
    let out = |args: &[&str]| config(&[&["-i", "lo"][..], args].concat()).unwrap().output;
    let o = out(&["-w", "/d/x.pcapng.zst"]);
    assert_eq!(
        (o.format, o.compression),
        (
            Format::Pcapng,
            Compression::Zstd {
                level: ZSTD_DEFAULT_LEVEL
            }
        )
    );
    let o = out(&["-w", "/d/x.PCAPNG"]);
    assert_eq!(
        (o.format, o.compression),
        (Format::Pcapng, Compression::None)
    );
    let o = out(&["-w", "/d/x.pcap.zst"]);
    assert_eq!(
        (o.format, o.compression),
        (
            Format::Pcap,
            Compression::Zstd {
                level: ZSTD_DEFAULT_LEVEL
            }
        )
    );
    let o = out(&["-w", "x.pcap", "--format", "pcapng", "--compress", "zstd:7"]);
    assert_eq!(
        (o.format, o.compression),
        (Format::Pcapng, Compression::Zstd { level: 7 })
    );
    let o = out(&["-w", "x.pcap.zst", "--compress", "none"]);
    assert_eq!(o.compression, Compression::None);
    let o = out(&["-w", "-"]);
    assert_eq!(
        (o.target, o.format, o.flush_interval),
        (Output::Stdout, Format::Pcap, Duration::from_secs(1))
    );
    assert!(!o.force && o.on_disk_full == DiskFull::Stop && o.rotation == Rotation::default());
}

#[test]
fn rotation_options() {
    let c = config(&[
        "-i",
        "lo",
        "-w",
        "cap.pcap",
        "-C",
        "2.5",
        "-G",
        "60",
        "-W",
        "4",
        "--flush-interval",
        "250",
        "--on-disk-full",
        "drop",
        "--force",
        "--post-rotate",
        "gzip",
    ])
    .unwrap();
    let o = c.output;
    assert_eq!(
        o.rotation,
        Rotation {
            max_bytes: Some(2_500_000),
            interval_secs: Some(60),
            max_files: Some(4)
        }
    );
    assert_eq!(
        (o.flush_interval, o.on_disk_full, o.force),
        (Duration::from_millis(250), DiskFull::Drop, true)
    );
    assert_eq!(o.post_rotate.as_deref(), Some("gzip"));
    assert_eq!(
        config(&["-i", "lo", "-w", "x", "-Z", "root"])
            .unwrap()
            .run_as
            .unwrap()
            .uid,
        0
    );
}

#[test]
fn bad_output_options_are_refused() {
    let err = |args: &[&str]| match config(&[&["-i", "lo"][..], args].concat()) {
        Err(e) => e,
        Ok(c) => panic!("{args:?}: {c:?}"),
    };
    assert!(err_is(
        err(&["-w", "-", "-C", "1"]),
        Key::Write,
        "standard output cannot rotate"
    ));
    assert!(err_is(
        err(&["-w", "-", "--post-rotate", "true"]),
        Key::PostRotate,
        "--post-rotate needs a file output"
    ));
    assert!(err_is(
        err(&["-w", "x", "-W", "3"]),
        Key::RingFiles,
        "-W needs -C or -G"
    ));
    assert!(err_is(
        err(&["-w", "x", "-C", "0"]),
        Key::FileSize,
        "-C must be a positive"
    ));
    assert!(err_is(
        err(&["-w", "x", "-C", "1e-9"]),
        Key::FileSize,
        "-C must be a positive"
    ));
    assert!(err_is(
        err(&["-w", "x", "-G", "0"]),
        Key::RotateSeconds,
        "-G must be at least 1"
    ));
    assert!(err_is(
        err(&["-w", "x", "-G", "1", "-W", "0"]),
        Key::RingFiles,
        "-W must be at least 1"
    ));
    assert!(err_is(
        err(&["-w", "x", "--compress", "lz4"]),
        Key::Compress,
        "unknown --compress 'lz4'"
    ));
    assert!(err_is(
        err(&["-w", "x", "--compress", "zstd:30"]),
        Key::Compress,
        "unknown --compress 'zstd:30'"
    ));
    assert!(err_is(
        err(&["-w", "x-%Q.pcap", "-G", "5"]),
        Key::Write,
        "%Q"
    ));
    assert!(err_is(
        err(&["-w", "x", "-Z", "no-such-user-tap"]),
        Key::RunAs,
        "unknown user 'no-such-user-tap'"
    ));
    // Without rotation the name is literal.
    assert!(config(&["-i", "lo", "-w", "x-%Q.pcap"]).is_ok());
}

#[test]
fn bad_values_are_refused() {
    assert!(refused(
        &config(&["-i", "no-such-if0", "-w", "x"]),
        Key::Interfaces
    ));
    assert!(refused(
        &config(&["-i", "lo", "--ring-size", "12345", "-w", "x"]),
        Key::RingSize
    ));
    assert!(refused(
        &config(&["-i", "lo", "-i", "lo", "-w", "x"]),
        Key::Interfaces
    ));
    assert!(refused(
        &config(&["-i", "lo", "--xdp-mode", "native", "-w", "x"]),
        Key::XdpMode
    ));
}

/// One rule's bad value as each front door writes it.
struct Case {
    key: Key,
    flags: &'static [&'static str],
    /// The `[[tap]]` body after its name and interfaces; empty for a setting only the command
    /// line has (printing packets), which then has no session member either.
    toml: &'static str,
    /// The session's members after its name and interfaces.
    json: &'static str,
}

const CASES: &[Case] = &[
    Case {
        key: Key::Direction,
        flags: &["--serve", "unix:/s", "--hook", "xdp", "-Q", "out"],
        toml: "serve = \"/s\"\nhook = \"xdp\"\ndirection = \"out\"\n",
        json: r#""serve": "/s", "hook": "xdp", "direction": "out""#,
    },
    Case {
        key: Key::Direction,
        flags: &["--serve", "unix:/s", "--hook", "tc-ingress", "-Q", "inout"],
        toml: "serve = \"/s\"\nhook = \"tc-ingress\"\ndirection = \"inout\"\n",
        json: r#""serve": "/s", "hook": "tc-ingress", "direction": "inout""#,
    },
    Case {
        key: Key::Sample,
        flags: &["--serve", "unix:/s", "--sample", "0"],
        toml: "serve = \"/s\"\nsample = 0\n",
        json: r#""serve": "/s", "sample": 0"#,
    },
    Case {
        key: Key::RingSize,
        flags: &["--serve", "unix:/s", "--ring-size", "1000"],
        toml: "serve = \"/s\"\nring_size = 1000\n",
        json: r#""serve": "/s", "ring_size": 1000"#,
    },
    Case {
        key: Key::XdpMode,
        flags: &["--serve", "unix:/s", "--xdp-mode", "native"],
        toml: "serve = \"/s\"\nxdp_mode = \"native\"\n",
        json: r#""serve": "/s", "xdp_mode": "native""#,
    },
    Case {
        key: Key::Decap,
        flags: &["--serve", "unix:/s", "--decap", "vxlan,ipip"],
        toml: "serve = \"/s\"\ndecap = \"vxlan,ipip\"\n",
        json: r#""serve": "/s", "decap": "vxlan,ipip""#,
    },
    Case {
        key: Key::Filter,
        flags: &["--serve", "unix:/s", "-f", "icmp and bogus"],
        toml: "serve = \"/s\"\nfilter = \"icmp and bogus\"\n",
        json: r#""serve": "/s", "filter": "icmp and bogus""#,
    },
    Case {
        key: Key::FilterFile,
        flags: &["--serve", "unix:/s", "-F", "/nonexistent/tap-filter"],
        toml: "serve = \"/s\"\nfilter_file = \"/nonexistent/tap-filter\"\n",
        json: r#""serve": "/s", "filter_file": "/nonexistent/tap-filter""#,
    },
    Case {
        key: Key::Forward,
        flags: &[
            "--forward",
            "vxlan://192.0.2.9?vni=1",
            "--forward",
            "http://x",
        ],
        toml: "forward = [\"vxlan://192.0.2.9?vni=1\", \"http://x\"]\n",
        json: r#""forward": ["vxlan://192.0.2.9?vni=1", "http://x"]"#,
    },
    Case {
        key: Key::Sinks,
        flags: &[],
        toml: "consume = true\n",
        json: r#""consume": true"#,
    },
    Case {
        key: Key::Print,
        flags: &["-tttttt"],
        toml: "",
        json: "",
    },
    Case {
        key: Key::Print,
        flags: &["--print", "-w", "-"],
        toml: "",
        json: "",
    },
    Case {
        key: Key::Compress,
        flags: &["-w", "/tmp/x.pcap", "--compress", "lz4"],
        toml: "[tap.file]\npath = \"/tmp/x.pcap\"\ncompress = \"lz4\"\n",
        json: r#""file": {"path": "/tmp/x.pcap", "compress": "lz4"}"#,
    },
    Case {
        key: Key::FileSize,
        flags: &["-w", "/tmp/x.pcap", "--file-size=-1"],
        toml: "[tap.file]\npath = \"/tmp/x.pcap\"\nfile_size_mb = -1.0\n",
        json: r#""file": {"path": "/tmp/x.pcap", "file_size_mb": -1.0}"#,
    },
    Case {
        key: Key::RotateSeconds,
        flags: &["-w", "/tmp/x.pcap", "-G", "0"],
        toml: "[tap.file]\npath = \"/tmp/x.pcap\"\nrotate_seconds = 0\n",
        json: r#""file": {"path": "/tmp/x.pcap", "rotate_seconds": 0}"#,
    },
    Case {
        key: Key::RingFiles,
        flags: &["-w", "/tmp/x.pcap", "-W", "3"],
        toml: "[tap.file]\npath = \"/tmp/x.pcap\"\nring_files = 3\n",
        json: r#""file": {"path": "/tmp/x.pcap", "ring_files": 3}"#,
    },
    Case {
        key: Key::RingFiles,
        flags: &["-w", "/tmp/x.pcap", "-G", "1", "-W", "0"],
        toml: "[tap.file]\npath = \"/tmp/x.pcap\"\nrotate_seconds = 1\nring_files = 0\n",
        json: r#""file": {"path": "/tmp/x.pcap", "rotate_seconds": 1, "ring_files": 0}"#,
    },
    Case {
        key: Key::Write,
        flags: &["-w", "/tmp/x-%Q.pcap", "-G", "5"],
        toml: "[tap.file]\npath = \"/tmp/x-%Q.pcap\"\nrotate_seconds = 5\n",
        json: r#""file": {"path": "/tmp/x-%Q.pcap", "rotate_seconds": 5}"#,
    },
    Case {
        key: Key::Snaplen,
        flags: &["--serve", "unix:/s", "-s", "262145"],
        toml: "serve = \"/s\"\nsnaplen = 262145\n",
        json: r#""serve": "/s", "snaplen": 262145"#,
    },
    Case {
        key: Key::Pretrigger,
        flags: &["--serve", "unix:/s", "--pretrigger=30x"],
        toml: "serve = \"/s\"\npretrigger = \"30x\"\n",
        json: r#""serve": "/s", "pretrigger": "30x""#,
    },
    Case {
        key: Key::Pretrigger,
        flags: &["--serve", "unix:/s", "--pretrigger=0s"],
        toml: "serve = \"/s\"\npretrigger = \"0s\"\n",
        json: r#""serve": "/s", "pretrigger": "0s""#,
    },
    Case {
        key: Key::Pretrigger,
        flags: &["--serve", "unix:/s", "--pretrigger=256MiB,1GiB"],
        toml: "serve = \"/s\"\npretrigger = \"256MiB,1GiB\"\n",
        json: r#""serve": "/s", "pretrigger": "256MiB,1GiB""#,
    },
    Case {
        key: Key::Pretrigger,
        flags: &["--serve", "unix:/s", "--pretrigger=2d"],
        toml: "serve = \"/s\"\npretrigger = \"2d\"\n",
        json: r#""serve": "/s", "pretrigger": "2d""#,
    },
    Case {
        key: Key::Pretrigger,
        flags: &["--serve", "unix:/s", "--pretrigger=30s 1m"],
        toml: "serve = \"/s\"\npretrigger = \"30s 1m\"\n",
        json: r#""serve": "/s", "pretrigger": "30s 1m""#,
    },
    Case {
        key: Key::Pretrigger,
        flags: &["--serve", "unix:/s", "--pretrigger="],
        toml: "serve = \"/s\"\npretrigger = \"\"\n",
        json: r#""serve": "/s", "pretrigger": """#,
    },
    Case {
        key: Key::FlowBudget,
        flags: &["--serve", "unix:/s", "--flow-budget", "0p"],
        toml: "serve = \"/s\"\nflow_budget = \"0p\"\n",
        json: r#""serve": "/s", "flow_budget": "0p""#,
    },
    Case {
        key: Key::FlowTableSize,
        flags: &[
            "--serve",
            "unix:/s",
            "--flow-budget",
            "1K",
            "--flow-table-size",
            "0",
        ],
        toml: "serve = \"/s\"\nflow_budget = \"1K\"\nflow_table_size = 0\n",
        json: r#""serve": "/s", "flow_budget": "1K", "flow_table_size": 0"#,
    },
    Case {
        key: Key::Store,
        flags: &["-w", "/tmp/x.pcapng", "--store", "/tmp/s"],
        toml: "[tap.file]\npath = \"/tmp/x.pcapng\"\n[tap.store]\ndir = \"/tmp/s\"\n",
        json: r#""file": {"path": "/tmp/x.pcapng"}, "store": {"dir": "/tmp/s"}"#,
    },
    Case {
        key: Key::StoreMaxBytes,
        flags: &["--store", "/tmp/s", "--store-max-bytes", "0"],
        toml: "[tap.store]\ndir = \"/tmp/s\"\nmax_bytes = 0\n",
        json: r#""store": {"dir": "/tmp/s", "max_bytes": 0}"#,
    },
    Case {
        key: Key::StoreMaxAge,
        flags: &["--store", "/tmp/s", "--store-max-age", "0s"],
        toml: "[tap.store]\ndir = \"/tmp/s\"\nmax_age = \"0s\"\n",
        json: r#""store": {"dir": "/tmp/s", "max_age": "0s"}"#,
    },
    Case {
        key: Key::StoreMaxAge,
        flags: &["--store", "/tmp/s", "--store-max-age", "soon"],
        toml: "[tap.store]\ndir = \"/tmp/s\"\nmax_age = \"soon\"\n",
        json: r#""store": {"dir": "/tmp/s", "max_age": "soon"}"#,
    },
    Case {
        key: Key::SuricataSocket,
        flags: &["-w", "/tmp/x.pcap", "--suricata-socket", "/run/s.sock"],
        toml: "[tap.file]\npath = \"/tmp/x.pcap\"\n[tap.suricata]\nsocket = \"/run/s.sock\"\n",
        json: r#""file": {"path": "/tmp/x.pcap"}, "suricata": {"socket": "/run/s.sock"}"#,
    },
    Case {
        key: Key::SignKey,
        flags: &[
            "-w",
            "/tmp/x.pcap",
            "--sign-key",
            "/nonexistent/tap-sign.key",
        ],
        toml: "[tap.file]\npath = \"/tmp/x.pcap\"\nsign_key = \"/nonexistent/tap-sign.key\"\n",
        json: r#""file": {"path": "/tmp/x.pcap", "sign_key": "/nonexistent/tap-sign.key"}"#,
    },
    Case {
        key: Key::SignKey,
        flags: &["-w", "/tmp/x.pcap", "--sign-key", "/dev/null"],
        toml: "[tap.file]\npath = \"/tmp/x.pcap\"\nsign_key = \"/dev/null\"\n",
        json: r#""file": {"path": "/tmp/x.pcap", "sign_key": "/dev/null"}"#,
    },
];

/// Each rule's bad value through the command line, the agent's file and a session: the same
/// rule refuses it in all three, with the same key and the same reason, each door naming the
/// settings its own way.
#[test]
fn every_front_door_refuses_with_the_same_key_and_reason() {
    for case in CASES {
        let args = [&["-i", "lo"][..], case.flags].concat();
        // The command line prints packets without a sink, so only a service can lack one:
        // the reference is the rule's refusal of the same raw values read as a service.
        let e = if case.key == Key::Sinks {
            service_config(&args)
        } else {
            config(&args)
        }
        .expect_err(case.toml);
        assert_eq!(e.key, case.key, "flags {args:?}: {e}");
        if case.toml.is_empty() {
            continue;
        }

        let text = format!(
            "[[tap]]\nname = \"a\"\ninterfaces = [\"lo\"]\n{}",
            case.toml
        );
        match AgentConfig::parse(Path::new("/etc/tap/tap.toml"), &text) {
            Err(AgentConfigError::Invalid { key, message, .. }) => {
                assert_eq!(key, format!("tap 'a': {}", case.key.name()), "{text}");
                assert_eq!(
                    message,
                    e.reason.render_after(e.key, &agent_file::file_name),
                    "{text}"
                );
            }
            other => panic!("{text}: {other:?}"),
        }

        let json = format!(r#"{{"name": "a", "interfaces": ["lo"], {}}}"#, case.json);
        match session::parse(&json) {
            Err(session::SessionError::Invalid {
                setting, message, ..
            }) => {
                assert_eq!(setting, case.key, "{json}");
                assert_eq!(
                    message,
                    e.reason.render_after(e.key, &|k| k.name().to_string()),
                    "{json}"
                );
            }
            other => panic!("{json}: {other:?}"),
        }
    }
}

/// What the command line says is the reason with the flags' names.
#[test]
fn the_command_line_words_reasons_with_flags() {
    let e = config(&["-i", "lo", "--hook", "xdp", "-Q", "out", "-w", "x"]).unwrap_err();
    assert_eq!(
        flags::worded(&e).message,
        "-Q out: XDP sees only arriving packets (in); leaving ones need --hook tc"
    );
    let e = config(&["-i", "lo", "--serve", "unix:/s", "--sample", "0"]).unwrap_err();
    assert_eq!(
        flags::worded(&e).message,
        "--sample must be at least 1 (1: keep every packet)"
    );
    let e = config(&["-i", "lo", "-w", "x", "-W", "3"]).unwrap_err();
    assert_eq!(
        flags::worded(&e).message,
        "-W needs -C or -G: it keeps the newest files of a rotation"
    );
}

#[test]
fn store_flags_make_a_store_output() {
    use std::path::PathBuf;
    let c = config(&[
        "-i",
        "lo",
        "--store",
        "/tmp/s",
        "--store-max-bytes",
        "400M",
        "--store-max-age",
        "7d",
    ])
    .unwrap();
    let o = &c.output;
    let store = o.store.as_ref().unwrap();
    assert_eq!(store.dir, PathBuf::from("/tmp/s"));
    assert_eq!(store.max_bytes, Some(400 << 20));
    assert_eq!(store.max_age, Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(
        o.target,
        Output::File(PathBuf::from("/tmp/s/tap-%Y%m%d-%H%M%S.pcapng"))
    );
    assert_eq!(
        (o.format, o.on_disk_full, o.resume),
        (Format::Pcapng, DiskFull::Drop, true)
    );
    // Files of at most a quarter of the size limit; the default minute otherwise.
    assert_eq!(o.rotation.max_bytes, Some((400u64 << 20) / 4));
    assert_eq!(
        o.rotation.interval_secs,
        Some(crate::store::DEFAULT_ROTATE_SECS)
    );
    let z = config(&[
        "-i",
        "lo",
        "--store",
        "/tmp/s",
        "--compress",
        "zstd",
        "-G",
        "10",
    ])
    .unwrap()
    .output;
    assert_eq!(
        z.target,
        Output::File(PathBuf::from("/tmp/s/tap-%Y%m%d-%H%M%S.pcapng.zst"))
    );
    assert_eq!(
        (z.rotation.interval_secs, z.rotation.max_bytes),
        (Some(10), None)
    );
}

#[test]
fn bad_store_flags_are_refused() {
    for (args, key) in [
        (
            &["--store", "/tmp/s", "--store-max-age", "soon"][..],
            Key::StoreMaxAge,
        ),
        (
            &["--store", "/tmp/s", "--store-max-bytes", "0"],
            Key::StoreMaxBytes,
        ),
        (&["--store", "/tmp/s", "--format", "pcap"], Key::Format),
        (&["--store", "/tmp/s", "-G", "5", "-W", "3"], Key::RingFiles),
        (&["-w", "x", "--store-max-bytes", "1G"], Key::StoreMaxBytes),
        (
            &["--store-max-age", "1h", "--serve", "unix:/s"],
            Key::StoreMaxAge,
        ),
        (&["--store", "-"], Key::Store),
    ] {
        let args = [&["-i", "lo"][..], args].concat();
        let e = config(&args).unwrap_err();
        let said = flags::worded(&e).message;
        assert_eq!(e.key, key, "{args:?}: {said}");
        assert!(!said.is_empty() && !said.contains('\n'), "{args:?}: {said}");
    }
    // Refused by the rule every door shares, not by clap: the same words as the agent's file.
    let e = config(&["-i", "lo", "--store", "/tmp/s", "-w", "x.pcap"]).unwrap_err();
    assert_eq!(e.key, Key::Store);
    assert_eq!(flags::worded(&e).message, "give -w or --store, not both");
}

#[test]
fn pretrigger_limits() {
    use crate::model::PretriggerLimits;
    let p = |v: &str| {
        config(&["-i", "lo", "--pretrigger", v])
            .unwrap()
            .consumers
            .pretrigger
            .unwrap()
    };
    assert_eq!(
        p("30s"),
        PretriggerLimits {
            max_age: Some(Duration::from_secs(30)),
            max_bytes: None
        }
    );
    assert_eq!(p("256MiB").max_bytes, Some(256 << 20));
    assert_eq!(p("4096B").max_bytes, Some(4096));
    assert_eq!(
        p("5m, 1GiB"),
        PretriggerLimits {
            max_age: Some(Duration::from_secs(300)),
            max_bytes: Some(1 << 30)
        }
    );
    // A pre-trigger memory is a sink of its own: no file needed.
    assert!(config(&["-i", "lo", "--pretrigger", "10s"]).is_ok());
}

/// `tap capture -r FILE`: one rule refuses a live capture's settings (rather than ignore them),
/// rotation included, and accepts the output and printing flags.
#[test]
fn reading_a_file_refuses_live_settings() {
    let read = |args: &[&str]| {
        let invocation = flags::try_from_args(
            ["tap", "capture", "-r", "in.pcapng"]
                .iter()
                .chain(args.iter()),
        )
        .unwrap();
        let Request::Capture { capture, read, .. } = invocation.command else {
            panic!("capture")
        };
        assert_eq!(read.as_deref(), Some(Path::new("in.pcapng")));
        rules::read(&capture)
    };
    for (args, flag) in [
        (&["-i", "lo"][..], "-i"),
        (&["--store", "/tmp/s"], "--store"),
        (&["--serve", "unix:/s"], "--serve"),
        (&["--sample", "2"], "--sample"),
        (&["-w", "x-%s.pcap", "-G", "60"], "-G"),
        (&["-w", "x.pcap", "-C", "10"], "-C"),
        (&["--duration", "5"], "--duration"),
    ] {
        let e = read(args).expect_err(flag);
        assert_eq!(e.key, Key::Read, "{args:?}");
        assert_eq!(
            flags::worded(&e).message,
            format!("-r reads a file: {flag} is for live captures"),
            "{args:?}"
        );
    }
    let o = read(&["-w", "out.pcapng.zst", "-nn", "-e", "icmp"]).unwrap();
    assert_eq!(o.format, Format::Pcapng);
    assert!(matches!(o.compression, Compression::Zstd { .. }));
    assert_eq!(read(&["-nn"]).unwrap().target, Output::None);
}

/// tcpdump's habits: -Q picks the TC direction, -B is KiB rounded up to what the ring takes, -U
/// writes each packet at once, -p is accepted.
#[test]
fn tcpdump_habits_become_settings() {
    use crate::model::Hook;
    let hooks = |args: &[&str]| {
        config(&[&["-i", "lo", "-w", "x"][..], args].concat())
            .unwrap()
            .hooks
    };
    assert_eq!(hooks(&["-Q", "in"]), [Hook::TcIngress]);
    assert_eq!(hooks(&["-Q", "out"]), [Hook::TcEgress]);
    assert_eq!(hooks(&["-Q", "inout"]), hooks(&[]));
    assert_eq!(hooks(&["--hook", "xdp", "-Q", "in"]), [Hook::Xdp]);
    let c = config(&["-i", "lo", "-w", "x", "-B", "3000", "-U", "-p"]).unwrap();
    assert_eq!(c.ring_size, 4 << 20);
    assert_eq!(c.output.flush_interval, Duration::ZERO);
    assert_eq!(
        config(&["-i", "lo", "-w", "x", "-B", "4096"])
            .unwrap()
            .ring_size,
        4 << 20
    );
    // Globs and any are followed, names resolved once.
    let c = config(&["-i", "l*", "-w", "x"]).unwrap();
    assert_eq!(
        (c.interfaces.len(), c.follow.as_slice()),
        (0, &["l*".to_string()][..])
    );
    assert!(config(&["-i", "lo", "-w", "x"]).unwrap().follow.is_empty());
}

/// The `[fleet]` table's bad values: the agent's file is its one front door; each is refused by
/// the fleet rule with its key and line, never a panic, and a good table reads back.
const FLEET_CASES: &[(Key, &str)] = &[
    (Key::FleetEtcd, "host = \"hv1\"\n"),
    (
        Key::FleetEtcd,
        "etcd = [\"127.0.0.1:2379\"]\nhost = \"hv1\"\n",
    ),
    (
        Key::FleetEtcd,
        "etcd = [\"http://127.0.0.1\"]\nhost = \"hv1\"\n",
    ),
    (
        Key::FleetEtcd,
        "etcd = [\"http://127.0.0.1:2379\", \"https://127.0.0.1:2379\"]\nhost = \"hv1\"\n",
    ),
    (
        Key::FleetTls,
        "etcd = [\"https://127.0.0.1:2379\"]\nhost = \"hv1\"\n",
    ),
    (
        Key::FleetTls,
        "etcd = [\"http://127.0.0.1:2379\"]\nhost = \"hv1\"\nca_file = \"/ca.pem\"\n",
    ),
    (Key::FleetHost, "etcd = [\"http://127.0.0.1:2379\"]\n"),
    (
        Key::FleetHost,
        "etcd = [\"http://127.0.0.1:2379\"]\nhost = \"hv/1\"\n",
    ),
    (
        Key::FleetPrefix,
        "etcd = [\"http://127.0.0.1:2379\"]\nhost = \"hv1\"\nprefix = \"tap\"\n",
    ),
    (
        Key::FleetUplinks,
        "etcd = [\"http://127.0.0.1:2379\"]\nhost = \"hv1\"\nuplinks = [\"a/b\"]\n",
    ),
    (
        Key::FleetLease,
        "etcd = [\"http://127.0.0.1:2379\"]\nhost = \"hv1\"\nlease_seconds = 1\n",
    ),
    (
        Key::FleetResync,
        "etcd = [\"http://127.0.0.1:2379\"]\nhost = \"hv1\"\nresync_seconds = 0\n",
    ),
    (
        Key::FleetUser,
        "etcd = [\"http://127.0.0.1:2379\"]\nhost = \"hv1\"\npassword_file = \"/p\"\n",
    ),
];

#[test]
fn fleet_table_bad_values_name_their_key() {
    for (key, body) in FLEET_CASES {
        let text = format!("[agent]\ncontrol_socket = \"/run/t.sock\"\n\n[fleet]\n{body}");
        match AgentConfig::parse(Path::new("/etc/tap/tap.toml"), &text) {
            Err(AgentConfigError::Invalid {
                key: k,
                line,
                message,
                ..
            }) => {
                assert_eq!(k, key.name(), "{text}: {message}");
                assert!(line >= 4, "{text}: line {line}");
                assert!(!message.is_empty() && !message.contains('\n'), "{message}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    let good = AgentConfig::parse(
        Path::new("/etc/tap/tap.toml"),
        "[fleet]\netcd = [\"http://192.0.2.1:2379\", \"http://192.0.2.2:2379\"]\nhost = \"hv1\"\nuplinks = [\"eth*\"]\nlease_seconds = 5\n",
    )
    .unwrap();
    assert!(good.taps.is_empty());
    let f = good.fleet.unwrap();
    assert_eq!(f.host, "hv1");
    assert_eq!(f.prefix, crate::model::DEFAULT_ETCD_ROOT);
    assert_eq!(f.lease, Duration::from_secs(5));
    assert_eq!(f.etcd.len(), 2);
    assert!(
        AgentConfig::parse(
            Path::new("/t.toml"),
            "[fleet]\netcd = []\nhost = \"a\"\nbogus = 1\n"
        )
        .is_err()
    );
}
