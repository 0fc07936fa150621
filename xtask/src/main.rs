//! Project automation: `cargo xtask <command>`.
//!
//! - `setup`: installs what a fresh machine lacks (idempotent, quick when all is there)
//! - `build-ebpf`: builds the BPF object into `target/bpf/tap.bpf.o`
//! - `build`: build-ebpf, then the user-space crates
//! - `test`: setup, build-ebpf, clippy (warnings are errors), build, then the whole test suite
//!   (unit + integration against the kernel)
//! - `demo`: a capture between two throwaway namespaces, summarised
//! - `bench`: tap next to tcpdump and xdpdump on a veth pair at full rate, BPF_PROG_TEST_RUN
//!   costs by filter size, the writer next to dd; tables, targets and target/bench/bench.json
//!
//! Every command but `setup` runs setup first.

mod bench;
mod demo;
mod process;
mod setup;
mod soak;
mod util;

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Build, set up, test and benchmark tap")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the toolchain pieces and Debian packages tap's build and tests need.
    Setup,
    /// Build the eBPF object (nightly, build-std, bpf-linker).
    BuildEbpf,
    /// Build the eBPF object and the user-space crates (release).
    Build,
    /// Run clippy and the whole test suite, setup included. Extra arguments go to `cargo test`.
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run a demo capture between two throwaway network namespaces.
    Demo,
    /// Benchmark tap against tcpdump and xdpdump on a veth pair, the programs with
    /// BPF_PROG_TEST_RUN, and the writer against dd.
    Bench(bench::BenchArgs),
    /// The bench's packet generator (internal: `bench` starts it).
    #[command(hide = true)]
    BenchGenerator,
    /// Run `tap agent` under steady traffic and reloads for N minutes; check memory stays flat
    /// and every matched packet is accounted for.
    Soak(soak::SoakArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    std::env::set_current_dir(&root).context("entering the workspace root")?;
    match cli.command {
        Command::Setup => setup::run(),
        Command::BuildEbpf => {
            setup::run()?;
            build_ebpf(&root)
        }
        Command::Build => {
            setup::run()?;
            build(&root)
        }
        Command::Test { args } => {
            setup::run()?;
            test(&root, &args)
        }
        Command::Demo => {
            setup::run()?;
            build(&root)?;
            demo::run(&root)
        }
        Command::Bench(args) => {
            setup::run()?;
            build(&root)?;
            bench::run(&root, &args)
        }
        Command::BenchGenerator => bench::generator_main(),
        Command::Soak(args) => {
            setup::run()?;
            build(&root)?;
            soak::run(&root, &args)
        }
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Builds the eBPF crate for bpfel-unknown-none and copies the object to `target/bpf/tap.bpf.o`.
pub fn build_ebpf(root: &std::path::Path) -> Result<()> {
    let target_dir = root.join("target/ebpf");
    util::run(
        util::cmd("cargo")
            .args([
                "+nightly",
                "build",
                "--package",
                "tap-ebpf",
                "--release",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--target-dir",
            ])
            .arg(&target_dir)
            .current_dir(root)
            // The user-space toolchain's settings must not leak into the nightly build.
            .env_remove("RUSTC")
            .env_remove("RUSTC_WRAPPER")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env("CARGO_TARGET_BPFEL_UNKNOWN_NONE_LINKER", "bpf-linker")
            .env(
                "CARGO_TARGET_BPFEL_UNKNOWN_NONE_RUSTFLAGS",
                "-C debuginfo=2 -C link-arg=--btf",
            ),
    )
    .context("building the eBPF object (cargo xtask setup installs what it needs)")?;
    let built = target_dir.join("bpfel-unknown-none/release/tap-ebpf");
    let dest_dir = root.join("target/bpf");
    std::fs::create_dir_all(&dest_dir)?;
    let dest = dest_dir.join("tap.bpf.o");
    // An object cargo did not relink since the last copy is left alone, so the user-space crate
    // (which embeds it) is not rebuilt for nothing.
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let unchanged = matches!((modified(&dest), modified(&built)), (Some(d), Some(b)) if d >= b)
        && std::fs::read(&dest).ok()
            == Some(std::fs::read(&built).with_context(|| format!("reading {}", built.display()))?);
    if !unchanged {
        std::fs::copy(&built, &dest).with_context(|| format!("copying {}", built.display()))?;
        // Fresh mtime, so the user-space build script sees an up-to-date object.
        std::fs::File::options()
            .append(true)
            .open(&dest)?
            .set_modified(std::time::SystemTime::now())?;
    }
    println!("BPF object: {}", dest.display());
    Ok(())
}

/// build-ebpf, then the user-space crates in release mode (the binary the tests and bench run).
pub fn build(root: &std::path::Path) -> Result<()> {
    build_ebpf(root)?;
    build_userspace(root)
}

/// The writer bench (`tap bench-writer`) is no part of the product's library: the binary the
/// tests and the bench run is built with it.
const BENCH_FEATURE: &str = "tap-userspace/bench-writer";

/// The user-space crates in release mode; the BPF object must be built already.
fn build_userspace(root: &std::path::Path) -> Result<()> {
    util::run(
        util::cmd("cargo")
            .args([
                "build",
                "--release",
                "--workspace",
                "--exclude",
                "tap-ebpf",
                "--all-targets",
                "--features",
                BENCH_FEATURE,
            ])
            .current_dir(root),
    )
}

/// Clippy over the user-space crates, warnings as errors. The user-space build script embeds the
/// BPF object, so it needs build-ebpf first.
fn clippy(root: &std::path::Path) -> Result<()> {
    util::run(
        util::cmd("cargo")
            .args([
                "clippy",
                "--workspace",
                "--exclude",
                "tap-ebpf",
                "--all-targets",
                "--features",
                BENCH_FEATURE,
                "--",
                "-D",
                "warnings",
            ])
            .current_dir(root),
    )
    .context("clippy found warnings (cargo xtask test treats them as errors)")
}

fn test(root: &std::path::Path, extra: &[String]) -> Result<()> {
    use std::io::{BufRead as _, BufReader, Write as _};
    build_ebpf(root)?;
    // Before the release build: a lint fails the run in seconds, not after minutes of building.
    clippy(root)?;
    build_userspace(root)?;
    // Integration tests share the machine's two cores with the traffic they generate: two at a
    // time keeps timing-sensitive captures honest.
    let mut child = util::cmd("cargo")
        .args([
            "test",
            "--release",
            "--no-fail-fast",
            "--workspace",
            "--exclude",
            "tap-ebpf",
            "--features",
            BENCH_FEATURE,
        ])
        .args(extra)
        .args(["--", "--test-threads=2"])
        .current_dir(root)
        .env("TAP_BIN", root.join("target/release/tap"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    // Pass the output through, adding up every test binary's result line, so the run ends with
    // one total (the last binary alone, often doc tests, says little).
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    let stdout = child.stdout.take().context("cargo test's stdout")?;
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        writeln!(out, "{line}")?;
        if let Some(rest) = line.strip_prefix("test result: ") {
            let number = |word: &str| -> u64 {
                rest.split(';')
                    .find_map(|part| {
                        part.trim()
                            .strip_suffix(word)
                            .and_then(|n| n.trim().split(' ').next_back()?.parse().ok())
                    })
                    .unwrap_or(0)
            };
            passed += number(" passed");
            failed += number(" failed");
            ignored += number(" ignored");
        }
    }
    let status = child.wait()?;
    writeln!(
        out,
        "\nall test binaries: {passed} passed, {failed} failed, {ignored} ignored"
    )?;
    writeln!(out, "{passed} passed, {failed} failed")?;
    if !status.success() || failed > 0 {
        anyhow::bail!("cargo test failed: {status}");
    }
    // No test may be set aside: an ignored test is one that did not run, and the suite holds
    // that a test which cannot run fails.
    if ignored > 0 {
        anyhow::bail!("{ignored} tests are marked #[ignore]: every test must run");
    }
    Ok(())
}
