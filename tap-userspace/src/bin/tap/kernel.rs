//! `tap replay` and `tap bench-prog`: the programs under BPF_PROG_TEST_RUN.

use std::process::ExitCode;

use anyhow::Context as _;
use tap::{
    kernel::testrun::{self, BenchSpec},
    pipeline::run,
    replay::{self, ReplayConfig},
    settings::{
        flags::{self, BenchProgRequest, ReplayRequest},
        rules,
    },
};

pub(crate) fn bench_prog(request: BenchProgRequest) -> anyhow::Result<ExitCode> {
    let filter = rules::filter(&request.filter).map_err(|e| flags::worded(&e))?;
    let dsts = if request.dsts.is_empty() {
        vec![testrun::FRAME_DST_V4]
    } else {
        request
            .dsts
            .iter()
            .map(std::net::Ipv4Addr::octets)
            .collect()
    };
    let spec = BenchSpec {
        hook: request.hook.program(),
        frame_len: request.frame_len,
        repeat: request.repeat,
        filter,
        dsts,
        per_interface: request.per_interface,
        flows: request.flows,
    };
    for line in testrun::bench_prog(&spec)? {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn replay(request: &ReplayRequest) -> anyhow::Result<ExitCode> {
    let worded = |e: tap::settings::SettingError| flags::worded(&e);
    let decap = rules::decap(request.decap.as_deref()).map_err(worded)?;
    let config = ReplayConfig {
        input: request.read.clone(),
        output: request.write.clone(),
        hook: request.hook.program(),
        filter: rules::filter(&request.filter).map_err(worded)?,
        decap: decap.bits,
        vxlan_port: decap.vxlan_port,
        force: request.force,
    };
    let summary = replay::run(&config)?;
    run::flush_stdout().context("flushing standard output")?;
    if !request.quiet {
        eprintln!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}
