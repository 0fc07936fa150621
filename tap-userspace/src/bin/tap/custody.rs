//! `tap verify` and `tap key`: one line each, on standard output with status 0, or as an error
//! with 1.

use std::{path::Path, process::ExitCode};

use tap::custody::cli::{self, KeyCommand, Outcome};

pub(crate) fn verify(dir: &Path, public_key: Option<&Path>) -> anyhow::Result<ExitCode> {
    Ok(one_line(cli::verify(dir, public_key)?))
}

pub(crate) fn key(command: &KeyCommand) -> anyhow::Result<ExitCode> {
    Ok(one_line(cli::key(command)?))
}

fn one_line(outcome: Outcome) -> ExitCode {
    if outcome.ok {
        println!("{}", outcome.line);
        ExitCode::SUCCESS
    } else {
        eprintln!("tap: {}", outcome.line);
        ExitCode::FAILURE
    }
}
