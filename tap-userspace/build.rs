//! Embeds the BPF object built by `cargo xtask build-ebpf`, and refuses to build with a missing
//! or stale one: one build path for the kernel side.

use std::{
    fs,
    path::{Path, PathBuf},
    time::SystemTime,
};

fn newest(dir: &Path, newest_time: &mut SystemTime, newest_path: &mut PathBuf) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            newest(&path, newest_time, newest_path);
        } else if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
            if modified > *newest_time {
                *newest_time = modified;
                *newest_path = path;
            }
        }
    }
}

/// The aya version the lock file pins, for `tap --version`.
fn aya_version(root: &Path) -> String {
    let lock = root.join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = fs::read_to_string(&lock).unwrap_or_default();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"aya\"" {
            if let Some(v) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = "))
            {
                return v.trim_matches('"').to_string();
            }
        }
    }
    "unknown".to_string()
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    println!("cargo:rustc-env=TAP_AYA_VERSION={}", aya_version(&root));
    let object = root.join("target/bpf/tap.bpf.o");
    let sources = [
        root.join("tap-ebpf/src"),
        root.join("tap-ebpf/Cargo.toml"),
        root.join("tap-common/src"),
    ];
    for s in &sources {
        println!("cargo:rerun-if-changed={}", s.display());
    }
    println!("cargo:rerun-if-changed={}", object.display());
    let Ok(object_time) = fs::metadata(&object).and_then(|m| m.modified()) else {
        panic!(
            "\n\nThe BPF object {} is missing.\nBuild it first: cargo xtask build-ebpf\n\n",
            object.display()
        );
    };
    let mut newest_time = SystemTime::UNIX_EPOCH;
    let mut newest_path = PathBuf::new();
    for s in &sources {
        if s.is_dir() {
            newest(s, &mut newest_time, &mut newest_path);
        } else if let Ok(t) = fs::metadata(s).and_then(|m| m.modified()) {
            if t > newest_time {
                newest_time = t;
                newest_path.clone_from(s);
            }
        }
    }
    assert!(
        newest_time <= object_time,
        "\n\nThe BPF object {} is older than {}.\nRebuild it: cargo xtask build-ebpf\n\n",
        object.display(),
        newest_path.display()
    );
    println!("cargo:rustc-env=TAP_BPF_OBJECT={}", object.display());
}
