//! Writer runs: `tap bench-writer` (synthetic batches through the real capture writer, pcap and
//! pcapng, 1500-byte packets, final fsync included) next to `dd bs=1M conv=fsync` into the same
//! directory, both pinned to the tool CPU.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::capture::TOOL_CPU;

/// Where the writer runs write.
pub(super) const PLACES: [(&str, &str); 2] = [("/dev/shm", "tmpfs"), ("/var/tmp", "disk")];

/// What writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Writer {
    TapPcap,
    TapPcapng,
    Dd,
}

impl Writer {
    pub(super) const ALL: [Writer; 3] = [Writer::TapPcap, Writer::TapPcapng, Writer::Dd];

    pub(super) fn key(self) -> &'static str {
        match self {
            Writer::TapPcap => "tap-pcap",
            Writer::TapPcapng => "tap-pcapng",
            Writer::Dd => "dd",
        }
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Writer::TapPcap => "tap bench-writer --format pcap",
            Writer::TapPcapng => "tap bench-writer --format pcapng",
            Writer::Dd => "dd bs=1M conv=fsync",
        }
    }
}

/// A scratch directory for one place, removed on drop.
pub(super) struct Scratch(PathBuf);

impl Scratch {
    pub(super) fn new(place: &str) -> Result<Self> {
        let dir = Path::new(place).join(format!("tap-bench-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `bytes` with `writer` into `dir`; returns MB/s (10^6 bytes of packets, or of zeros
/// for dd, per second).
pub(super) fn run(tap: &Path, dir: &Scratch, writer: Writer, bytes: u64) -> Result<f64> {
    crate::util::check_interrupted()?;
    let mut cmd = Command::new("taskset");
    super::own_sched_group(&mut cmd);
    cmd.args(["-c", &TOOL_CPU.to_string()]);
    match writer {
        Writer::TapPcap | Writer::TapPcapng => {
            let format = if writer == Writer::TapPcap {
                "pcap"
            } else {
                "pcapng"
            };
            cmd.arg(tap)
                .args(["bench-writer", "--to"])
                .arg(&dir.0)
                .args(["--bytes", &bytes.to_string(), "--format", format]);
        }
        Writer::Dd => {
            let file = dir.0.join("dd.out");
            cmd.args(["dd", "if=/dev/zero", "bs=1M", "conv=fsync"])
                .arg(format!("of={}", file.display()))
                .arg(format!("count={}", bytes.div_ceil(1 << 20)));
        }
    }
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            stdout,
            stderr.trim_end()
        );
    }
    let _ = std::fs::remove_file(dir.0.join("dd.out"));
    match writer {
        Writer::Dd => dd_rate(&stderr),
        _ => tap_rate(&stdout),
    }
    .with_context(|| format!("no rate in the output of {cmd:?}:\n{stdout}{stderr}"))
}

/// `tap bench-writer`'s "..., in 0.52 s: 1922 MB/s, 1.28 Mpackets/s".
fn tap_rate(stdout: &str) -> Option<f64> {
    let line = stdout.lines().find(|l| l.contains(" MB/s"))?;
    let before = &line[..line.find(" MB/s")?];
    before.rsplit(' ').next()?.parse().ok()
}

/// dd's "1048576000 bytes (1.0 GB, 1000 MiB) copied, 0.630 s, 1.7 GB/s": bytes / seconds.
fn dd_rate(stderr: &str) -> Option<f64> {
    let line = stderr.lines().find(|l| l.contains(" copied, "))?;
    let bytes: f64 = line.split_whitespace().next()?.parse().ok()?;
    let after = &line[line.find(" copied, ")? + " copied, ".len()..];
    let secs: f64 = after.split_whitespace().next()?.parse().ok()?;
    (secs > 0.0).then(|| bytes / secs / 1e6)
}

pub(super) fn to_json(place: &str, writer: Writer, rates: &[f64]) -> Value {
    json!({
        "place": place,
        "writer": writer.key(),
        "label": writer.label(),
        "median_mb_per_s": super::median(rates.to_vec()),
        "runs_mb_per_s": rates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_from_outputs() {
        let tap = "/dev/shm/x/tap-bench-writer-1.pcap: 666667 packets, 1000 MB of packets, 1011 MB on disk, in 0.52 s: 1922 MB/s, 1.28 Mpackets/s\n";
        assert_eq!(tap_rate(tap), Some(1922.0));
        let dd = "1000+0 records in\n1000+0 records out\n1048576000 bytes (1.0 GB, 1000 MiB) copied, 0.5 s, 2.1 GB/s\n";
        assert_eq!(dd_rate(dd), Some(1_048_576_000.0 / 0.5 / 1e6));
        assert_eq!(dd_rate("nothing"), None);
        assert_eq!(tap_rate("nothing"), None);
    }
}
