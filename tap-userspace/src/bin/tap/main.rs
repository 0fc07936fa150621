//! The `tap` binary: read the command line, dispatch to the command's module, print one line
//! when it fails.

use std::{io::IsTerminal as _, process::ExitCode};

use tap::{
    kernel::loader::LoadError,
    pipeline::run::CaptureError,
    settings::flags::{self, Request},
};
use tokio::signal::unix::{SignalKind, signal};

mod agent;
mod capture;
mod custody;
mod kernel;
mod read;
mod status;

fn main() -> ExitCode {
    let invocation = flags::from_env();
    let filter = tracing_subscriber::EnvFilter::try_new(&invocation.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colours only for a person at a terminal: never escape codes in a journal or a file.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi);
    if invocation.json_logs {
        logs.json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        logs.init();
    }
    match dispatch(invocation.command) {
        Ok(code) => code,
        Err(err) => {
            // One line: the error and its causes.
            eprintln!("tap: {}", tap::support::excerpt::one_line(err.as_ref()));
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

fn dispatch(request: Request) -> anyhow::Result<ExitCode> {
    match request {
        Request::Capture {
            capture,
            read: Some(path),
            ..
        } => read::run(&path, &capture),
        Request::Capture {
            capture,
            stats_json,
            read: None,
            notes,
        } => capture::run(&capture, stats_json.as_deref(), &notes),
        Request::ListInterfaces => capture::list_interfaces(),
        Request::Agent { config, check } => agent::run(config, check),
        Request::Ctl { socket, command } => agent::ctl(&socket, command),
        Request::Generate(what) => {
            what.run()?;
            Ok(ExitCode::SUCCESS)
        }
        Request::Verify { dir, public_key } => custody::verify(&dir, public_key.as_deref()),
        Request::Key(command) => custody::key(&command),
        Request::Alerts(options) => {
            tap::evidence::cli::run(&options)?;
            Ok(ExitCode::SUCCESS)
        }
        Request::Session(args) => {
            tap::fleet::command::main(&args, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Request::Query(request) => {
            tap::store::cli::run_query(&request)?;
            Ok(ExitCode::SUCCESS)
        }
        Request::Store(command) => {
            tap::store::cli::run_store(&command)?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "bench-writer")]
        Request::BenchWriter(spec) => {
            tap::bench_writer::run(&spec)?;
            Ok(ExitCode::SUCCESS)
        }
        Request::BenchProg(request) => kernel::bench_prog(request),
        Request::BenchPrint { packets } => {
            for r in tap::print::bench::run(packets.max(1)) {
                println!(
                    "{}",
                    serde_json::json!({
                        "packets": r.packets,
                        "flags": r.flags,
                        "ns_per_packet": r.ns_per_packet,
                    })
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Request::Replay(request) => kernel::replay(&request),
    }
}

/// Resolves on the first SIGINT or SIGTERM.
fn shutdown_signal() -> Result<impl Future<Output = ()>, CaptureError> {
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
