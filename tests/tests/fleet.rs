//! `tap session` against a real three-member etcd cluster of the test's own: sessions stored as
//! documented (etcdctl is the oracle), the capture's own errors for bad values, malformed values
//! written behind tap's back reported and never a panic, tenants kept apart by etcd's auth, and a
//! cluster that loses its leader or goes away entirely.

use std::{
    process::{Command, Output, Stdio},
    time::Duration,
};

use tap_tests::{TempDir, etcd::EtcdCluster, tap_bin};

const VM1: &str = "mac:02:00:5e:00:53:01";

/// `tap session ARGS` with the cluster's endpoints in `TAP_ETCD` and `env` added.
fn session(cluster: Option<&EtcdCluster>, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(tap_bin());
    c.arg("session")
        .args(args)
        .env_remove("TAP_LOG")
        .env_remove("TAP_ETCD_USER")
        .env_remove("TAP_ETCD_PASSWORD")
        .env_remove("TAP_TENANT")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    match cluster {
        Some(cl) => c.env("TAP_ETCD", cl.endpoints()),
        None => c.env_remove("TAP_ETCD"),
    };
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("running tap session");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "tap panicked: {out:?}"
    );
    out
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "tap session failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The one line of a failed run.
fn refused(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    assert!(lines[0].starts_with("tap: "), "{err}");
    lines[0].to_string()
}

fn create(cluster: &EtcdCluster, env: &[(&str, &str)], extra: &[&str]) -> Output {
    let mut args = vec!["create"];
    args.extend(extra);
    session(Some(cluster), env, &args)
}

#[test]
fn sessions_are_stored_as_documented_and_etcdctl_sees_them() {
    let cluster = EtcdCluster::start();
    let out = create(
        &cluster,
        &[],
        &[
            "web",
            "--tenant",
            "acme",
            "--source",
            "mac:02:00:5E:00:53:01",
            "--target",
            "vxlan://203.0.113.9?vni=42",
            "--direction",
            "out",
            "--filter",
            "tcp port 443",
            "--snaplen",
            "128",
            "--priority",
            "7",
        ],
    );
    assert_eq!(ok(&out), "created acme/web\n");
    let value = cluster.ctl(&["get", "--print-value-only", "/tap/v1/sessions/acme/web"]);
    let json: serde_json::Value = serde_json::from_str(value.trim()).expect("JSON");
    assert_eq!(
        json,
        serde_json::json!({
            "version": 1, "tenant": "acme", "name": "web", "source": VM1,
            "direction": "out", "filter": "tcp port 443", "snaplen": 128, "priority": 7,
            "target": "vxlan://203.0.113.9?vni=42"
        })
    );
    // Once only.
    let again = create(
        &cluster,
        &[],
        &[
            "web",
            "--tenant",
            "acme",
            "--source",
            VM1,
            "--target",
            "vxlan://203.0.113.9?vni=1",
        ],
    );
    assert_eq!(
        refused(&again),
        "tap: session acme/web exists: delete it first"
    );

    // The tenant defaults to the etcd user's name (no auth here: etcd ignores the user... so
    // give it with --tenant); a second session, and the list.
    ok(&create(
        &cluster,
        &[],
        &[
            "db",
            "--tenant",
            "acme",
            "--source",
            "ip:192.0.2.7",
            "--target",
            "file:/var/lib/tap/db-%Y%m%d%H%M%S.pcapng?rotate_seconds=60&ring_files=10",
        ],
    ));
    let list = ok(&session(Some(&cluster), &[], &["list"]));
    assert_eq!(
        list,
        "acme/db  ip:192.0.2.7  both  priority 100  -> file:/var/lib/tap/db-%Y%m%d%H%M%S.pcapng?rotate_seconds=60&ring_files=10\n\
         acme/web  mac:02:00:5e:00:53:01  out  priority 7  -> vxlan://203.0.113.9?vni=42  filter 'tcp port 443'\n"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&session(
        Some(&cluster),
        &[],
        &["list", "--tenant", "acme", "--json"],
    )))
    .unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(2));

    // Where it runs: nowhere yet; then two agents' status entries (written here with etcdctl,
    // as an agent would) with their counters, summed.
    let show = ok(&session(
        Some(&cluster),
        &[],
        &["show", "web", "--tenant", "acme"],
    ));
    assert!(show.contains("not running on any host"), "{show}");
    for (host, packets) in [("hv1", 10), ("hv2", 5)] {
        let status = format!(
            r#"{{"version":1,"host":"{host}","session":"acme/web","state":"active","interfaces":[{{"name":"vm1p","hooks":["tc-ingress"]}}],"counters":{{"packets":{packets},"bytes":{},"dropped":0}},"error":null,"updated_ms":1}}"#,
            packets * 100
        );
        cluster.ctl(&["put", &format!("/tap/v1/status/acme/web/{host}"), &status]);
    }
    let show = ok(&session(
        Some(&cluster),
        &[],
        &["show", "web", "--tenant", "acme"],
    ));
    assert!(
        show.contains("on hv1: active on vm1p (tc-ingress)  10 packets, 1000 bytes, 0 dropped"),
        "{show}"
    );
    assert!(
        show.contains("on hv2: active on vm1p (tc-ingress)  5 packets, 500 bytes, 0 dropped"),
        "{show}"
    );
    assert!(
        show.contains("total: 15 packets, 1500 bytes, 0 dropped"),
        "{show}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&session(
        Some(&cluster),
        &[],
        &["show", "web", "--tenant", "acme", "--json"],
    )))
    .unwrap();
    assert_eq!(json["total"]["packets"], 15);

    assert_eq!(
        ok(&session(
            Some(&cluster),
            &[],
            &["delete", "web", "--tenant", "acme"]
        )),
        "deleted acme/web\n"
    );
    assert_eq!(cluster.ctl(&["get", "/tap/v1/sessions/acme/web"]), "");
    assert_eq!(
        refused(&session(
            Some(&cluster),
            &[],
            &["delete", "web", "--tenant", "acme"]
        )),
        "tap: no session acme/web"
    );
    assert_eq!(
        refused(&session(
            Some(&cluster),
            &[],
            &["show", "web", "--tenant", "acme"]
        )),
        "tap: no session acme/web"
    );

    // The ownership map.
    ok(&session(
        Some(&cluster),
        &[],
        &["owner", "set", "mac:02:00:5E:00:53:01", "--tenant", "acme"],
    ));
    assert_eq!(
        cluster
            .ctl(&[
                "get",
                "--print-value-only",
                "/tap/v1/owners/mac:02:00:5e:00:53:01"
            ])
            .trim(),
        r#"{"tenant":"acme"}"#
    );
    assert_eq!(
        ok(&session(Some(&cluster), &[], &["owner", "list"])),
        "mac:02:00:5e:00:53:01  acme\n"
    );
}

/// The one line `tap capture` prints for a bad value, without its "tap: " and flag prefix.
fn capture_error(args: &[&str]) -> String {
    let mut c = Command::new(tap_bin());
    c.args(["capture", "-i", "lo"])
        .args(args)
        .env_remove("TAP_LOG")
        .stdin(Stdio::null());
    let out = c.output().unwrap();
    refused(&out)
}

#[test]
fn bad_values_get_the_captures_own_errors() {
    let bad_create = |extra: &[&str]| {
        let mut args = vec!["create", "web", "--tenant", "acme", "--source", VM1];
        args.extend(extra);
        // No etcd at all: a bad session is refused before connecting.
        refused(&session(None, &[], &args))
    };
    // The filter: word for word.
    for filter in ["port 99999", "tcp and", "host 300.1.1.1", "frobnicate"] {
        let theirs = capture_error(&["-w", "/dev/null", "--filter", filter]);
        let ours = bad_create(&["--target", "vxlan://203.0.113.9?vni=1", "--filter", filter]);
        assert_eq!(
            ours,
            theirs.replacen("tap: ", "tap: session acme/web: ", 1),
            "{filter}"
        );
    }
    // The VXLAN target: --forward's reason, under the target's name.
    for url in [
        "vxlan://203.0.113.9",
        "vxlan://203.0.113.9?vni=99999999",
        "vxlan://?vni=1",
    ] {
        let theirs = capture_error(&["--forward", url]);
        let ours = bad_create(&["--target", url]);
        assert_eq!(
            ours,
            theirs.replacen("tap: --forward ", "tap: session acme/web: target: ", 1),
            "{url}"
        );
    }
    // File options: the capture's rules (here: -W without rotation).
    let theirs = capture_error(&["-w", "/tmp/x.pcap", "-W", "3"]);
    let ours = bad_create(&["--target", "file:/tmp/x.pcap?ring_files=3"]);
    assert_eq!(
        ours,
        theirs.replacen("tap: ", "tap: session acme/web: target: ", 1)
    );
    // The session's own settings.
    let e = refused(&session(
        None,
        &[],
        &[
            "create",
            "web",
            "--tenant",
            "acme",
            "--source",
            "mac:nope",
            "--target",
            "vxlan://203.0.113.9?vni=1",
        ],
    ));
    assert!(
        e.starts_with("tap: session acme/web: source: 'mac:nope'"),
        "{e}"
    );
    let e = refused(&session(
        None,
        &[],
        &[
            "create",
            "a/b",
            "--tenant",
            "acme",
            "--source",
            VM1,
            "--target",
            "vxlan://203.0.113.9?vni=1",
        ],
    ));
    assert!(e.contains("name: 'a/b'"), "{e}");
    let e = refused(&session(
        None,
        &[],
        &[
            "create",
            "web",
            "--source",
            VM1,
            "--target",
            "vxlan://203.0.113.9?vni=1",
        ],
    ));
    assert!(e.contains("no tenant"), "{e}");
    let e = refused(&session(None, &[], &["list"]));
    assert!(e.contains("no etcd endpoint"), "{e}");
    let e = refused(&session(
        None,
        &[("TAP_ETCD", "https://127.0.0.1:2379")],
        &["list"],
    ));
    assert!(e.contains("--etcd-ca"), "{e}");
}

#[test]
fn malformed_values_written_behind_taps_back_are_reported() {
    let cluster = EtcdCluster::start();
    ok(&create(
        &cluster,
        &[],
        &[
            "good",
            "--tenant",
            "acme",
            "--source",
            VM1,
            "--target",
            "vxlan://203.0.113.9?vni=1",
        ],
    ));
    let big = format!(r#"{{"version":1,"pad":"{}"}}"#, "x".repeat(70_000));
    let deep = "[".repeat(50_000);
    let hostile: Vec<(&str, String)> = vec![
        ("acme/junk", "not json".into()),
        ("acme/empty", String::new()),
        ("acme/future", r#"{"version":2,"whatever":true}"#.into()),
        ("acme/claims", r#"{"version":1,"tenant":"bravo","name":"claims","source":"mac:02:00:5e:00:53:01","target":"vxlan://203.0.113.9?vni=1"}"#.into()),
        ("acme/badfilter", r#"{"version":1,"tenant":"acme","name":"badfilter","source":"mac:02:00:5e:00:53:01","filter":"port 99999","target":"vxlan://203.0.113.9?vni=1"}"#.into()),
        ("acme/big", big),
        ("acme/deep", deep),
        ("acme/x/y", "{}".into()),
        ("nameless", "{}".into()),
    ];
    for (tail, value) in &hostile {
        cluster.ctl(&["put", &format!("/tap/v1/sessions/{tail}"), value]);
    }
    let list = ok(&session(Some(&cluster), &[], &["list"]));
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), hostile.len() + 1, "{list}");
    assert!(
        lines.iter().any(|l| l.starts_with("acme/good  mac:")),
        "{list}"
    );
    for (tail, _) in &hostile {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{tail}  invalid: ")))
            .unwrap_or_else(|| panic!("no line for {tail}: {list}"));
        assert!(
            line.len() < 400,
            "an invalid value is summed up, not echoed: {line}"
        );
    }
    assert!(
        list.contains(
            "acme/claims  invalid: the key says acme/claims, the value says bravo/claims"
        ),
        "{list}"
    );
    assert!(
        list.contains("acme/future  invalid: format version 2 is not supported"),
        "{list}"
    );
    assert!(
        list.contains("acme/badfilter  invalid: filter: '99999' at column 6: illegal port number"),
        "{list}"
    );
    let show = ok(&session(
        Some(&cluster),
        &[],
        &["show", "junk", "--tenant", "acme"],
    ));
    assert!(
        show.contains("invalid: the value is not session JSON"),
        "{show}"
    );
    // A malformed status entry is reported too.
    cluster.ctl(&["put", "/tap/v1/status/acme/good/hv1", "{"]);
    let show = ok(&session(
        Some(&cluster),
        &[],
        &["show", "good", "--tenant", "acme"],
    ));
    assert!(
        show.contains("on hv1: unreadable status: not status JSON"),
        "{show}"
    );
}

#[test]
fn setup_auth_keeps_tenants_apart() {
    let cluster = EtcdCluster::start();
    let dir = TempDir::new();
    let mut pw_args: Vec<String> = Vec::new();
    for user in ["root", "tap-operator", "tap-agent", "acme", "bravo"] {
        let f = dir.join(&format!("{user}.pw"));
        std::fs::write(&f, format!("pw-{user}\n")).unwrap();
        pw_args.push("--password".into());
        pw_args.push(format!("{user}={}", f.display()));
    }
    let mut args: Vec<&str> = vec![
        "setup-auth",
        "--tenant",
        "acme",
        "--tenant",
        "bravo",
        "--enable",
    ];
    args.extend(pw_args.iter().map(String::as_str));
    let done = ok(&session(Some(&cluster), &[], &args));
    for line in [
        "role tap-operator may read and write /tap/",
        "role tap-agent may read /tap/v1/sessions/",
        "role tap-agent may read /tap/v1/owners/",
        "role tap-agent may read and write /tap/v1/status/",
        "role tap-tenant-acme may read and write /tap/v1/sessions/acme/",
        "role tap-tenant-acme may read /tap/v1/status/acme/",
        "user acme has role tap-tenant-acme",
        "authentication enabled",
    ] {
        assert!(done.lines().any(|l| l == line), "no {line:?} in:\n{done}");
    }
    // etcdctl agrees about what the role may do.
    let role = cluster.ctl(&["--user", "root:pw-root", "role", "get", "tap-tenant-acme"]);
    assert!(
        role.contains("[/tap/v1/sessions/acme/, /tap/v1/sessions/acme0)"),
        "{role}"
    );

    let as_user = |user: &str| {
        [
            ("TAP_ETCD_USER", user.to_string()),
            ("TAP_ETCD_PASSWORD", format!("pw-{user}")),
        ]
    };
    let env = |user: &str| as_user(user);
    let run = |user: &str, args: &[&str]| {
        let e = env(user);
        let pairs: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        session(Some(&cluster), &pairs, args)
    };
    let target = "vxlan://203.0.113.9?vni=1";
    // acme's user is acme's tenant.
    assert_eq!(
        ok(&run(
            "acme",
            &["create", "web", "--source", VM1, "--target", target]
        )),
        "created acme/web\n"
    );
    assert!(ok(&run("acme", &["list"])).starts_with("acme/web  "));
    // bravo may not write, read or delete under acme's prefix: etcd refuses, tap says so in one line.
    let e = refused(&run(
        "bravo",
        &[
            "create", "evil", "--tenant", "acme", "--source", VM1, "--target", target,
        ],
    ));
    assert_eq!(
        e,
        "tap: etcd refused create /tap/v1/sessions/acme/evil: permission denied for user 'bravo'"
    );
    let e = refused(&run("bravo", &["list", "--tenant", "acme"]));
    assert!(e.contains("permission denied for user 'bravo'"), "{e}");
    let e = refused(&run("bravo", &["delete", "web", "--tenant", "acme"]));
    assert!(e.contains("permission denied"), "{e}");
    assert!(
        cluster
            .ctl(&[
                "--user",
                "root:pw-root",
                "get",
                "--prefix",
                "--keys-only",
                "/tap/v1/sessions/"
            ])
            .contains("/tap/v1/sessions/acme/web")
    );
    // Tenants cannot touch the ownership map; the operator can.
    let e = refused(&run("acme", &["owner", "set", VM1, "--tenant", "acme"]));
    assert!(e.contains("permission denied"), "{e}");
    ok(&run(
        "tap-operator",
        &["owner", "set", VM1, "--tenant", "acme"],
    ));
    // The agent reads sessions and owners and writes status, nothing else.
    let agent = |args: &[&str]| {
        cluster
            .etcdctl()
            .args(["--user", "tap-agent:pw-tap-agent"])
            .args(args)
            .output()
            .unwrap()
    };
    assert!(
        agent(&["get", "--prefix", "/tap/v1/sessions/"])
            .status
            .success()
    );
    assert!(
        agent(&["get", "--prefix", "/tap/v1/owners/"])
            .status
            .success()
    );
    assert!(
        agent(&["put", "/tap/v1/status/acme/web/hv1", "{}"])
            .status
            .success()
    );
    assert!(
        !agent(&["put", "/tap/v1/sessions/acme/web", "{}"])
            .status
            .success()
    );
    assert!(
        !agent(&["put", "/tap/v1/owners/mac:02:00:5e:00:53:01", "{}"])
            .status
            .success()
    );
    // A wrong password is one line too.
    let e = refused(&session(
        Some(&cluster),
        &[("TAP_ETCD_USER", "acme:wrong")],
        &["list"],
    ));
    assert!(e.contains("authentication failed"), "{e}");
    // Running it again changes nothing that matters and still succeeds.
    let again: Vec<&str> = vec!["setup-auth", "--tenant", "acme"];
    let e = env("root");
    let pairs: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ok(&session(Some(&cluster), &pairs, &again));
}

#[test]
fn the_leader_going_and_the_whole_cluster_going() {
    let mut cluster = EtcdCluster::start();
    let target = "vxlan://203.0.113.9?vni=1";
    ok(&create(
        &cluster,
        &[],
        &["a", "--tenant", "acme", "--source", VM1, "--target", target],
    ));
    let killed = cluster.kill_leader();
    cluster.wait_healthy();
    // All three endpoints given, one dead: the client goes to the others.
    ok(&create(
        &cluster,
        &[],
        &["b", "--tenant", "acme", "--source", VM1, "--target", target],
    ));
    assert_eq!(
        ok(&session(Some(&cluster), &[], &["list"])).lines().count(),
        2
    );
    cluster.restart(killed);
    cluster.wait_healthy();

    cluster.stop_all();
    let out = session(Some(&cluster), &[], &["--etcd-timeout", "2", "list"]);
    let e = refused(&out);
    assert!(e.starts_with("tap: cannot connect to etcd at "), "{e}");
    cluster.start_all();
    assert_eq!(
        ok(&session(Some(&cluster), &[], &["list"])).lines().count(),
        2
    );
    let _ = Duration::ZERO;
}
