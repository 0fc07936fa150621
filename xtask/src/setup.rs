//! `cargo xtask setup`: make a fresh machine of this kind ready to build and test tap.
//!
//! Idempotent and quick when everything is there: each piece is checked first and installed only
//! when missing. Nothing is downloaded but through the ordinary clients (apt, rustup, cargo).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::util::{self, have};

/// Debian packages and a command each provides, or an absolute path of a file it installs (checked
/// to decide whether to install).
const PACKAGES: &[(&str, &str)] = &[
    ("tcpdump", "tcpdump"),
    ("tshark", "tshark"),
    ("wireshark-common", "capinfos"),
    ("tcpreplay", "tcpreplay"),
    ("netsniff-ng", "trafgen"),
    ("iperf3", "iperf3"),
    ("bpftool", "bpftool"),
    ("socat", "socat"),
    ("nginx-light", "nginx"),
    ("iproute2", "ip"),
    ("iputils-ping", "ping"),
    ("curl", "curl"),
    ("ethtool", "ethtool"),
    ("xdp-tools", "xdpdump"),
    ("util-linux", "setpriv"),
    ("zstd", "zstd"),
    ("python3", "python3"),
    ("kmod", "modprobe"),
    // The fleet's control plane in the tests: etcd 3.4 members and etcdctl.
    ("etcd-server", "etcd"),
    ("etcd-client", "etcdctl"),
    // etcd-client's build script compiles etcd's gRPC definitions with protoc, which needs the
    // well-known types (descriptor.proto) from libprotobuf-dev.
    ("protobuf-compiler", "protoc"),
    (
        "libprotobuf-dev",
        "/usr/include/google/protobuf/descriptor.proto",
    ),
];

/// Python packages the tests use as oracles (DuckDB reads the store's Parquet index), with the
/// module each provides. Pinned, so a new release cannot change what the tests see.
const PYTHON_PACKAGES: &[(&str, &str)] = &[("duckdb==1.1.3", "duckdb")];

/// Suricata 7 comes from bookworm-backports.
const BACKPORTS_LIST: &str = "/etc/apt/sources.list.d/tap-bookworm-backports.list";

pub fn run() -> Result<()> {
    debian_packages()?;
    python_packages()?;
    nightly_rust_src()?;
    clippy()?;
    bpf_linker()?;
    Ok(())
}

fn apt(args: &[&str]) -> Result<()> {
    util::run(
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn debian_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, provides)| {
            if provides.starts_with('/') {
                !Path::new(provides).exists()
            } else {
                !have(provides)
            }
        })
        .map(|(pkg, _)| *pkg)
        .collect();
    let need_suricata = !have("suricata");
    if missing.is_empty() && !need_suricata {
        return Ok(());
    }
    eprintln!(
        "setup: installing {} {}",
        missing.join(" "),
        if need_suricata {
            "suricata (backports)"
        } else {
            ""
        }
    );
    if need_suricata && !backports_configured() {
        std::fs::write(
            BACKPORTS_LIST,
            "deb http://deb.debian.org/debian bookworm-backports main\n",
        )
        .with_context(|| format!("writing {BACKPORTS_LIST}"))?;
    }
    apt(&["update", "-q"])?;
    if !missing.is_empty() {
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend(&missing);
        apt(&args)?;
    }
    if need_suricata {
        apt(&[
            "install",
            "-y",
            "-q",
            "-t",
            "bookworm-backports",
            "suricata",
        ])?;
    }
    // The packages start system services; tests run their own instances.
    for service in ["suricata", "etcd"] {
        let _ = Command::new("systemctl")
            .args(["disable", "--now", service])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
    Ok(())
}

fn python_packages() -> Result<()> {
    let missing: Vec<&str> = PYTHON_PACKAGES
        .iter()
        .filter(|(_, module)| {
            !Command::new("python3")
                .args(["-c", &format!("import {module}")])
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing Python packages {}", missing.join(" "));
    util::run(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(&missing),
    )
    .context("installing Python packages with pip")
}

fn backports_configured() -> bool {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(dir.flatten().map(|e| e.path()));
    }
    files
        .iter()
        .any(|f| std::fs::read_to_string(f).is_ok_and(|s| s.contains("bookworm-backports")))
}

fn nightly_sysroot() -> Result<PathBuf> {
    let out = util::output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .context("the nightly toolchain is needed for the eBPF build")?;
    Ok(PathBuf::from(out.trim()))
}

fn nightly_rust_src() -> Result<()> {
    let sysroot = nightly_sysroot()?;
    if sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        return Ok(());
    }
    eprintln!("setup: adding rust-src to the nightly toolchain");
    util::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
}

/// `cargo xtask test` runs clippy. No `+toolchain` here: rustup hands xtask's own toolchain (stable
/// unless overridden) down through RUSTUP_TOOLCHAIN, so this checks and completes the toolchain
/// the test step's `cargo clippy` will run on.
fn clippy() -> Result<()> {
    let present = Command::new("cargo")
        .args(["clippy", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    eprintln!("setup: adding clippy to the toolchain");
    util::run(Command::new("rustup").args(["component", "add", "clippy"]))
}

fn bpf_linker_works() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// bpf-linker must use the same LLVM as the nightly rustc that emits the bitcode: build it against
/// the nightly toolchain's own shared libLLVM through a prefix folder of links.
fn bpf_linker() -> Result<()> {
    if bpf_linker_works() {
        return Ok(());
    }
    let sysroot = nightly_sysroot()?;
    let libdir = sysroot.join("lib");
    // The real shared object (libLLVM.so.<ver>-rust-...), not the linker script beside it.
    let real = std::fs::read_dir(&libdir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM"))
                && is_elf(p)
        })
        .with_context(|| format!("no shared libLLVM under {}", libdir.display()))?;
    let version = util::output(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let major = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("rustc +nightly -vV names no LLVM version")?
        .to_string();
    // A stable place: the installed bpf-linker finds libLLVM through this folder (rpath).
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo")
        });
    let prefix = home.join(format!("tap-llvm-{major}"));
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib)?;
    for name in [
        "libLLVM.so".to_string(),
        real.file_name().unwrap().to_string_lossy().into_owned(),
    ] {
        let link = lib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&real, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    eprintln!(
        "setup: building bpf-linker against LLVM {major} from {}",
        real.display()
    );
    util::run(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--no-default-features",
                "--features",
            ])
            .arg(format!("llvm-{major}"))
            .env("LLVM_PREFIX", &prefix)
            .env_remove("RUSTC")
            .env_remove("RUSTFLAGS"),
    )?;
    if !bpf_linker_works() {
        bail!("bpf-linker was installed but does not run; is ~/.cargo/bin on PATH?");
    }
    Ok(())
}

fn is_elf(path: &Path) -> bool {
    use std::io::Read as _;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}
