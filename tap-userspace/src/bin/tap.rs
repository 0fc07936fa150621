//! The `tap` binary: parse → validate → run(config, shutdown) → summary.

use std::{io::IsTerminal as _, process::ExitCode, sync::Arc};

use anyhow::Context as _;
use clap::Parser;
use tap::{
    agent, capture,
    cli::{Cli, Command, CtlCommand, GenerateCommand, HookArg, LogFormatArg},
    config::{self, CaptureConfig, Hook},
    error::{CaptureError, LoadError},
    live::LiveStats,
    replay::{self, ReplayConfig},
};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colours only for a person at a terminal: never escape codes in a journal or a file.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi);
    match cli.log_format {
        LogFormatArg::Human => logs.init(),
        LogFormatArg::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    match real_main(cli) {
        Ok(code) => code,
        Err(err) => {
            // One line: the error and its causes.
            eprintln!("tap: {}", chain(&err));
            if let Some(CaptureError::Load(LoadError::Rejected { verifier_log, .. })) =
                err.downcast_ref::<CaptureError>()
            {
                if !verifier_log.is_empty() && std::env::var_os("TAP_VERIFIER_LOG").is_some() {
                    eprintln!("{verifier_log}");
                }
            }
            ExitCode::FAILURE
        }
    }
}

fn chain(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    tap::excerpt::line(&parts.join(": ").replace('\n', " ")).into_owned()
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Capture(args) => {
            let config = CaptureConfig::from_args(&args)?;
            // Raised to the hard limit before anything is opened (see tap::listener).
            let _ = tap::listener::descriptor_limit();
            // Created now, before anything is attached, as the -Z user would create it: a path
            // that cannot be written fails here, not after the capture.
            let stats_file = args
                .stats_json
                .as_deref()
                .map(|path| StatsFile::create(path, config.output.force, config.run_as.as_ref()))
                .transpose()?;
            let quiet = config.quiet;
            let filter_args = args.filter.clone();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let live = Arc::new(LiveStats::new(false));
            // The status line: only for a person watching a terminal.
            let status_line = !quiet && std::io::stderr().is_terminal();
            let summary = runtime.block_on(async {
                let shutdown = shutdown_signal()?;
                let (tx, rx) = capture::control_channel();
                let mut hup = signal(SignalKind::hangup())
                    .map_err(|source| CaptureError::Signal { signal: "SIGHUP", source })?;
                // SIGHUP re-reads the -F file and swaps the filter in place.
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        if filter_args.filter_file.is_none() {
                            tracing::warn!("SIGHUP: no -F filter file to re-read; the filter stays");
                            continue;
                        }
                        match config::filter_from_args(&filter_args) {
                            Ok(image) => {
                                if tx.send(capture::Control::Filter(image)).await.is_err() {
                                    break;
                                }
                            }
                            Err(e) => tracing::error!(error = %e, "SIGHUP: the new filter is invalid; the old one stays"),
                        }
                    }
                });
                let status = status_line.then(|| tokio::spawn(status::run(Arc::clone(&live))));
                let result = capture::run_tap(config, shutdown, rx, Arc::clone(&live)).await;
                if let Some(task) = status {
                    task.abort();
                    status::clear();
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
            capture::flush_stdout().context("flushing standard output")?;
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
        Command::Agent(mut args) => {
            // Status and errors name the file in full; relative paths in it follow its directory.
            args.config = std::path::absolute(&args.config).unwrap_or(args.config);
            if args.check {
                let config = agent::config::AgentConfig::load(&args.config)?;
                println!(
                    "{}: valid, {} taps",
                    args.config.display(),
                    config.taps.len()
                );
                return Ok(ExitCode::SUCCESS);
            }
            // Each tap allocates a few large buffers (batches, the writer's, zstd's) and frees
            // them when it stops. glibc raises its mmap threshold after the first such free and
            // then keeps them in the heap, which it rarely gives back: a service that restarts
            // taps for months would grow. A fixed threshold serves them from mmap, returned to
            // the system as soon as they are freed (`cargo xtask soak` watches this).
            #[cfg(target_env = "gnu")]
            // SAFETY: mallopt only changes allocator settings; called before other threads exist.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
            }
            // Several taps, each with its drain: two workers so a tap loading (the verifier
            // can take a while) never holds up the others' rings.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(async {
                let shutdown = shutdown_signal()?;
                let mut hup =
                    signal(SignalKind::hangup()).map_err(|source| CaptureError::Signal {
                        signal: "SIGHUP",
                        source,
                    })?;
                let (tx, rx) = tokio::sync::mpsc::channel(4);
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        if tx.send(()).await.is_err() {
                            break;
                        }
                    }
                });
                agent::run(&args.config, shutdown, rx)
                    .await
                    .map_err(anyhow::Error::from)
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ctl(args) => {
            use agent::control;
            let command = match args.command {
                CtlCommand::Status { .. } => "status",
                CtlCommand::Reload => "reload",
            };
            let answer =
                control::request(&args.socket, command, std::time::Duration::from_secs(120))?;
            match args.command {
                CtlCommand::Status { json: true } => {
                    println!("{}", serde_json::to_string_pretty(&answer["status"])?)
                }
                CtlCommand::Status { json: false } => {
                    print!("{}", control::format_status(&answer["status"]))
                }
                CtlCommand::Reload => {
                    println!("reloaded: {}", answer["reload"].as_str().unwrap_or(""))
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Session(args) => {
            tap::fleet::command::main(&args, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(what) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            match what {
                GenerateCommand::Completions { shell } => {
                    clap_complete::generate(shell, &mut command, "tap", &mut std::io::stdout());
                }
                GenerateCommand::Man { dir, force } => {
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    let mut command = command.disable_help_subcommand(true);
                    command.build();
                    write_man_pages(command, &dir, force)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(args) => Ok(one_line(tap::custody::cli::verify(&args)?)),
        Command::Key(command) => Ok(one_line(tap::custody::cli::key(&command)?)),
        Command::Alerts(args) => {
            tap::evidence::cli::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Query(args) => {
            tap::store::cli::run_query(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Store(command) => {
            tap::store::cli::run_store(&command)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchWriter(args) => {
            tap::bench_writer::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchProg(args) => {
            let hook = match args.hook {
                HookArg::Xdp => Hook::Xdp,
                HookArg::TcIngress | HookArg::Tc => Hook::TcIngress,
                HookArg::TcEgress => Hook::TcEgress,
            };
            let filter = config::filter_from_args(&tap::cli::FilterArgs {
                filter: args.filter,
                filter_file: args.filter_file,
                expression: Vec::new(),
            })?;
            let dsts = if args.dsts.is_empty() {
                vec![tap::testrun::FRAME_DST_V4]
            } else {
                args.dsts.iter().map(|a| a.octets()).collect()
            };
            let spec = tap::testrun::BenchSpec {
                hook,
                frame_len: args.frame_len,
                repeat: args.repeat,
                filter,
                dsts,
                per_interface: args.per_interface,
                flows: args.flows,
            };
            for line in tap::testrun::bench_prog(&spec)? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay(args) => {
            let hook = match args.hook {
                HookArg::Xdp => Hook::Xdp,
                HookArg::TcIngress | HookArg::Tc => Hook::TcIngress,
                HookArg::TcEgress => Hook::TcEgress,
            };
            let decap: config::Decap = match &args.decap {
                Some(d) => d.parse()?,
                None => config::Decap::default(),
            };
            let config = ReplayConfig {
                input: args.read.clone(),
                output: args.write.clone(),
                hook,
                filter: config::filter_from_args(&args.filter)?,
                decap: decap.bits,
                vxlan_port: decap.vxlan_port,
                force: args.force,
            };
            let summary = replay::run(&config)?;
            capture::flush_stdout().context("flushing standard output")?;
            if !args.quiet {
                eprintln!("{summary}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints a command's one-line outcome: on standard output with status 0, or as an error with 1.
fn one_line(outcome: tap::custody::cli::Outcome) -> ExitCode {
    if outcome.ok {
        println!("{}", outcome.line);
        ExitCode::SUCCESS
    } else {
        eprintln!("tap: {}", outcome.line);
        ExitCode::FAILURE
    }
}

/// `tap.1` and a page per visible subcommand, as clap_mangen names them, each written through
/// the one safe-create path.
fn write_man_pages(cmd: clap::Command, dir: &std::path::Path, force: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
        write_man_pages(sub, dir, force)?;
    }
    let man = clap_mangen::Man::new(cmd);
    let path = dir.join(man.get_filename());
    let mut text = Vec::new();
    man.render(&mut text).context("rendering a man page")?;
    tap::safe_create::create(&path, force)?
        .write_all(&text)
        .with_context(|| format!("writing {}", path.display()))
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
        path: &std::path::Path,
        force: bool,
        run_as: Option<&tap::privilege::RunAs>,
    ) -> anyhow::Result<Self> {
        let new = std::fs::symlink_metadata(path).is_err();
        let create = || tap::safe_create::create(path, force);
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

/// Resolves on the first SIGINT or SIGTERM.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, CaptureError> {
    let mut int = signal(SignalKind::interrupt()).map_err(|source| CaptureError::Signal {
        signal: "SIGINT",
        source,
    })?;
    let mut term = signal(SignalKind::terminate()).map_err(|source| CaptureError::Signal {
        signal: "SIGTERM",
        source,
    })?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
    })
}

/// The live status line of `tap capture` on a terminal: packets, rate, drops, bytes, redrawn in
/// place twice a second.
mod status {
    use std::{
        io::Write as _,
        sync::Arc,
        time::{Duration, Instant},
    };

    use tap::{agent::control::human_bytes, live::LiveStats};

    const EVERY: Duration = Duration::from_millis(500);

    pub async fn run(live: Arc<LiveStats>) {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<(Instant, u64)> = None;
        loop {
            tick.tick().await;
            let s = live.snapshot();
            let now = Instant::now();
            let rate = match last {
                Some((at, n)) => {
                    (s.read_packets.saturating_sub(n)) as f64
                        / now.duration_since(at).as_secs_f64().max(1e-3)
                }
                None => 0.0,
            };
            last = Some((now, s.read_packets));
            let dropped = s.kernel.ring_full + s.writer_dropped;
            let line = format!(
                "{} packets, {:.0} pkt/s, {} dropped, {} captured",
                s.read_packets,
                rate,
                dropped,
                human_bytes(s.read_bytes)
            );
            let mut err = std::io::stderr().lock();
            // Carriage return, the line, then clear what a longer previous line left.
            let _ = write!(err, "\r{line}\x1b[K");
            let _ = err.flush();
        }
    }

    /// Removes the status line before the summary.
    pub fn clear() {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K");
        let _ = err.flush();
    }
}
