//! The `tap` binary: parse → validate → run(config, shutdown) → summary.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use tap::{
    capture,
    cli::{Cli, Command, HookArg},
    config::{self, CaptureConfig, Hook},
    error::{CaptureError, LoadError},
    replay::{self, ReplayConfig},
};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
    match real_main(cli) {
        Ok(code) => code,
        Err(err) => {
            // One line: the error and its causes.
            eprintln!("tap: {}", chain(&err));
            if let Some(CaptureError::Load(LoadError::Rejected { verifier_log, .. })) = err.downcast_ref::<CaptureError>() {
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
    parts.join(": ").replace('\n', " ")
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Capture(args) => {
            let config = CaptureConfig::from_args(&args)?;
            let quiet = config.quiet;
            let filter_args = args.filter.clone();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let summary = runtime.block_on(async {
                let shutdown = shutdown_signal()?;
                let (tx, rx) = capture::mpsc_filter_channel();
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
                                if tx.send(image).await.is_err() {
                                    break;
                                }
                            }
                            Err(e) => tracing::error!(error = %e, "SIGHUP: the new filter is invalid; the old one stays"),
                        }
                    }
                });
                capture::run_with_updates(config, shutdown, rx).await
            })?;
            capture::flush_stdout().context("flushing standard output")?;
            if !quiet {
                eprintln!("{summary}");
            }
            // A full disk that ended the capture early is a failure, reported after the summary.
            Ok(if summary.output_stopped { ExitCode::FAILURE } else { ExitCode::SUCCESS })
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
            println!("{}", tap::testrun::bench_prog(hook, args.frame_len, args.repeat)?);
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

/// Resolves on the first SIGINT or SIGTERM.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, CaptureError> {
    let mut int = signal(SignalKind::interrupt())
        .map_err(|source| CaptureError::Signal { signal: "SIGINT", source })?;
    let mut term = signal(SignalKind::terminate())
        .map_err(|source| CaptureError::Signal { signal: "SIGTERM", source })?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
    })
}
