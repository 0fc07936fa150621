//! What a packager takes from tap: shell completions and man pages generated from the command
//! line's definitions, and `tap agent --check` on the example configuration (and a broken one).

use std::{path::Path, process::Command};

use tap_tests::{TempDir, process::Background, run_ok, tap_bin};

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/tap.toml")
}

#[test]
fn completions_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _tap"),
        ("zsh", "#compdef tap"),
        ("fish", "complete -c tap"),
    ] {
        let out = run_ok(Command::new(tap_bin()).args(["generate", "completions", shell]));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker), "{shell}: {text}");
        assert!(
            text.contains("agent") && text.contains("capture") && text.contains("ctl"),
            "{shell}"
        );
    }
}

#[test]
fn man_pages_for_each_command() {
    let dir = TempDir::new();
    run_ok(
        Command::new(tap_bin())
            .args(["generate", "man"])
            .arg(dir.path()),
    );
    for page in [
        "tap.1",
        "tap-capture.1",
        "tap-agent.1",
        "tap-ctl.1",
        "tap-ctl-status.1",
        "tap-ctl-reload.1",
        "tap-replay.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.starts_with(".ie"),
            "{page} is roff: {}",
            &text[..40.min(text.len())]
        );
        assert!(text.contains(".SH NAME"), "{page}");
    }
    let agent = std::fs::read_to_string(dir.join("tap-agent.1")).unwrap();
    assert!(
        agent.contains("\\-\\-config") && agent.contains("\\-\\-check"),
        "{agent}"
    );
    // `tap generate` is listed in `tap --help`, so it has its page; the hidden bench commands
    // stay out of the manual.
    assert!(dir.join("tap-generate.1").exists());
    assert!(!dir.join("tap-bench-writer.1").exists());
}

#[test]
fn check_accepts_the_example_and_names_the_line_of_an_error() {
    let out = run_ok(
        Command::new(tap_bin())
            .args(["agent", "--check", "--config"])
            .arg(example()),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("valid, 3 taps"),
        "{out:?}"
    );
    let dir = TempDir::new();
    let broken = dir.join("tap.toml");
    let text = std::fs::read_to_string(example()).unwrap().replacen(
        "snaplen = 256",
        "snaplen = 256\nsnap_len = 96",
        1,
    );
    let line = text
        .lines()
        .position(|l| l.starts_with("snap_len"))
        .unwrap()
        + 1;
    std::fs::write(&broken, text).unwrap();
    let out = Command::new(tap_bin())
        .args(["agent", "--check", "--config"])
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("tap: {}:{line}:", broken.display())),
        "{err}"
    );
    assert!(
        err.contains("snap_len") && err.contains("unknown field"),
        "{err}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    // An agent with no tap needs no privileges: enough to see its log lines.
    let dir = TempDir::new();
    let config = dir.join("tap.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\ncontrol_socket = \"{}\"\n",
            dir.join("ctl.sock").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(tap_bin());
    cmd.args(["--log", "info", "--log-format", "json", "agent", "--config"])
        .arg(&config)
        .env_remove("TAP_LOG")
        .stdout(std::process::Stdio::null());
    let mut agent = Background::spawn("tap agent", cmd);
    agent.wait_for_stderr("agent ready", std::time::Duration::from_secs(30));
    agent.signal(libc::SIGTERM);
    let exited = agent.wait(std::time::Duration::from_secs(30));
    assert!(exited.status.success(), "{}", exited.stderr);
    let lines: Vec<serde_json::Value> = exited
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let ready = lines
        .iter()
        .find(|v| v["message"] == "agent ready")
        .expect("the ready line");
    assert_eq!(ready["level"], "INFO");
    assert_eq!(ready["taps"], 0);
    assert!(ready["timestamp"].is_string(), "{ready}");
    assert!(lines.iter().any(|v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("no [[tap]]"))
            && v["level"] == "WARN"
    }));
}
