//! Small process helpers.

use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

pub fn cmd(program: &str) -> Command {
    Command::new(program)
}

/// Runs a command, inheriting stdio; fails on a non-zero exit.
pub fn run(cmd: &mut Command) -> Result<()> {
    let desc = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {desc}"))?;
    if !status.success() {
        bail!("{desc} failed: {status}");
    }
    Ok(())
}

/// Runs a command and returns its standard output; fails on a non-zero exit.
pub fn output(cmd: &mut Command) -> Result<String> {
    let desc = format!("{cmd:?}");
    let out = cmd.stderr(Stdio::inherit()).output().with_context(|| format!("starting {desc}"))?;
    if !out.status.success() {
        bail!("{desc} failed: {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True when `program` is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
