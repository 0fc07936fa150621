//! `tap capture`: validate the flags by the rules, run the capture until it ends, print the
//! summary. SIGHUP re-reads the `-F` file through the same filter rule.

use std::{io::IsTerminal as _, path::Path, process::ExitCode, sync::Arc};

use std::io::Write as _;

use anyhow::Context as _;
use tap::{
    pipeline::{
        live::LiveStats,
        run::{self, CaptureError, Control},
    },
    settings::{Purpose, RawCapture, flags, rules},
};
use tokio::signal::unix::{SignalKind, signal};

pub(crate) fn run(
    raw: &RawCapture,
    stats_json: Option<&Path>,
    notes: &[String],
) -> anyhow::Result<ExitCode> {
    let mut config = rules::capture(raw, Purpose::Command).map_err(|e| flags::worded(&e))?;
    if config.output.target == tap::model::Output::Stdout && std::io::stdout().is_terminal() {
        anyhow::bail!(
            "standard output is a terminal: -w - writes binary packets; give -w FILE, pipe it \
             (| tcpdump -r -), or leave -w out to print packets"
        );
    }
    if !config.quiet {
        for note in notes {
            eprintln!("tap: {note}");
        }
    }
    // Raised to the hard limit before anything is opened (see tap::support::listener).
    let _ = tap::support::listener::descriptor_limit();
    // Created now, before anything is attached, as the -Z user would create it: a path that
    // cannot be written fails here, not after the capture.
    let stats_file = stats_json
        .map(|path| StatsFile::create(path, config.output.force, config.run_as.as_ref()))
        .transpose()?;
    let quiet = config.quiet;
    let filter = raw.filter.clone();
    let follow = (!config.follow.is_empty()).then(|| (config.follow.clone(), config.hooks.clone()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let live = Arc::new(LiveStats::new(false));
    // The status line: only for a person watching a terminal, and not when packets are printed
    // (their lines would be overwritten).
    let status_line = !quiet && config.print.is_none() && std::io::stderr().is_terminal();
    if let Some((patterns, _)) = &follow {
        // The interfaces there now are attached before "capturing", as named ones are; the
        // follower then sends only what changes.
        config.interfaces = runtime
            .block_on(tap::kernel::links::Links::open())
            .map(|links| tap::agent::follow::select(&links.links(), patterns))
            .context("reading the interfaces")?;
    }
    let summary = runtime.block_on(async {
        let shutdown = crate::shutdown_signal()?;
        let (tx, rx) = run::control_channel();
        // -i 'veth*' or -i any: the interfaces are followed as the agent follows them.
        if let Some((patterns, hooks)) = follow {
            let detached = Arc::new(tap::agent::detached::Detached::default());
            let follower = tap::agent::follow::follow(
                "capture".to_string(),
                patterns,
                hooks,
                tx.clone(),
                Arc::clone(&live),
                detached,
            );
            tokio::spawn(async move {
                if let Err(e) = follower.await {
                    tracing::error!(error = %e, "cannot follow the interfaces: the capture has none");
                }
            });
        }
        let mut hup = signal(SignalKind::hangup()).map_err(|source| CaptureError::Signal {
            signal: "SIGHUP",
            source,
        })?;
        // SIGHUP re-reads the -F file and swaps the filter in place.
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                if filter.file.is_none() {
                    tracing::warn!("SIGHUP: no -F filter file to re-read; the filter stays");
                    continue;
                }
                match rules::filter(&filter) {
                    Ok(image) => {
                        if tx.send(Control::Filter(image)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => tracing::error!(
                        error = %flags::worded(&e),
                        "SIGHUP: the new filter is invalid; the old one stays"
                    ),
                }
            }
        });
        let status = status_line.then(|| tokio::spawn(crate::status::run(Arc::clone(&live))));
        let result = run::run_tap(config, shutdown, rx, Arc::clone(&live)).await;
        if let Some(task) = status {
            task.abort();
            crate::status::clear();
        }
        result
    });
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            if let Some(f) = stats_file {
                f.discard();
            }
            return Err(e.into());
        }
    };
    run::flush_stdout().context("flushing standard output")?;
    if let Some(f) = stats_file {
        f.write(&summary.to_json())?;
    }
    if !quiet {
        eprintln!("{summary}");
    }
    // A full disk that ended the capture early is a failure, reported after the summary.
    Ok(if summary.output_stopped {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `tap capture -D`: the interfaces of this namespace, one line each (see
/// [`tap::kernel::capability::line`]).
pub(crate) fn list_interfaces() -> anyhow::Result<ExitCode> {
    use tap::kernel::{capability, links::Links};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let links = runtime
        .block_on(async { Links::open().await.map(|l| l.links()) })
        .context("listing the interfaces")?;
    let features = capability::xdp_features()
        .map_err(|e| tracing::info!(error = %e, "the kernel does not say which drivers run XDP natively"))
        .ok();
    let mut out = std::io::stdout().lock();
    for link in &links {
        let f = features
            .as_ref()
            .and_then(|f| f.get(&link.ifindex).copied());
        writeln!(out, "{}", capability::line(link, f)).context("writing the list")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The `--stats-json` file: created (through the one safe-create path) before the capture
/// starts, written when it ends, removed again when the capture fails before it has a summary.
struct StatsFile {
    path: std::path::PathBuf,
    file: std::fs::File,
    /// Created by this run (not a file --force overwrote, nor a device).
    new: bool,
}

impl StatsFile {
    fn create(
        path: &Path,
        force: bool,
        run_as: Option<&tap::support::privilege::RunAs>,
    ) -> anyhow::Result<Self> {
        let new = std::fs::symlink_metadata(path).is_err();
        let create = || tap::support::safe_create::create(path, force);
        let file = match run_as {
            Some(user) => user.as_effective(create)?,
            None => create(),
        }
        .context("--stats-json")?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            new,
        })
    }

    fn write(mut self, summary: &serde_json::Value) -> anyhow::Result<()> {
        use std::io::Write as _;
        let mut text = serde_json::to_string_pretty(summary).context("encoding the summary")?;
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.flush())
            .with_context(|| format!("writing {}", self.path.display()))
    }

    fn discard(self) {
        drop(self.file);
        if self.new {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
