//! `tap agent` and `tap ctl`: the service, and the client of its control socket.

use std::{path::Path, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use tap::{
    agent::{self, control},
    pipeline::run::CaptureError,
    settings::{agent_file::AgentConfig, flags::CtlRequest},
};
use tokio::signal::unix::{SignalKind, signal};

pub(crate) fn run(config: PathBuf, check: bool) -> anyhow::Result<ExitCode> {
    // Status and errors name the file in full; relative paths in it follow its directory.
    let config = std::path::absolute(&config).unwrap_or(config);
    if check {
        let valid = AgentConfig::load(&config)?;
        println!("{}: valid, {} taps", config.display(), valid.taps.len());
        return Ok(ExitCode::SUCCESS);
    }
    // Each tap allocates a few large buffers (batches, the writer's, zstd's) and frees them
    // when it stops. glibc raises its mmap threshold after the first such free and then keeps
    // them in the heap, which it rarely gives back: a service that restarts taps for months
    // would grow. A fixed threshold serves them from mmap, returned to the system as soon as
    // they are freed (`cargo xtask soak` watches this).
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator settings; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
    // Several taps, each with its drain: two workers so a tap loading (the verifier can take a
    // while) never holds up the others' rings.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = crate::shutdown_signal()?;
        let mut hup = signal(SignalKind::hangup()).map_err(|source| CaptureError::Signal {
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
        agent::run(&config, shutdown, rx)
            .await
            .map_err(anyhow::Error::from)
    })?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn ctl(socket: &Path, command: CtlRequest) -> anyhow::Result<ExitCode> {
    let name = match command {
        CtlRequest::Status { .. } => "status",
        CtlRequest::Reload => "reload",
    };
    let answer = control::request(socket, name, std::time::Duration::from_secs(120))?;
    match command {
        CtlRequest::Status { json: true } => {
            println!("{}", serde_json::to_string_pretty(&answer["status"])?);
        }
        CtlRequest::Status { json: false } => {
            print!("{}", control::format_status(&answer["status"]));
        }
        CtlRequest::Reload => {
            println!("reloaded: {}", answer["reload"].as_str().unwrap_or(""));
        }
    }
    Ok(ExitCode::SUCCESS)
}
