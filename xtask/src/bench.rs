//! `cargo xtask bench`: filled in below.
use std::path::Path;

use anyhow::Result;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

pub fn run(_root: &Path, _args: &BenchArgs) -> Result<()> {
    anyhow::bail!("bench: not written yet")
}
