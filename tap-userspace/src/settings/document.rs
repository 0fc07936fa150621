//! The shape of a tap as a document says it: the agent's TOML file and a fleet session's JSON
//! share it (`serde`, unknown keys refused), and translate it into the raw settings the same
//! way. Positions are the readers' business.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::raw::{RawCapture, RawFilter, RawOutput, RawServe, RawSize, RawStore, RawTap};
use crate::model::{DirectionChoice, DiskFull, Format, HookChoice, XdpMode};

/// One tap: a `[[tap]]` of the agent's file, or a session.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TapDoc {
    name: String,
    interfaces: Vec<String>,
    hook: Option<HookChoice>,
    direction: Option<DirectionChoice>,
    xdp_mode: Option<XdpMode>,
    filter: Option<String>,
    filter_file: Option<PathBuf>,
    snaplen: Option<u32>,
    ring_size: Option<u64>,
    sample: Option<u32>,
    max_rate: Option<u32>,
    decap: Option<String>,
    consume: Option<bool>,
    serve: Option<PathBuf>,
    inject: Option<String>,
    forward: Option<Vec<String>>,
    fix_checksums: Option<bool>,
    flow_budget: Option<String>,
    flow_table_size: Option<u32>,
    pretrigger: Option<String>,
    file: Option<FileDoc>,
    store: Option<StoreDoc>,
    suricata: Option<SuricataDoc>,
}

/// `[tap.store]`: a packet store instead of `[tap.file]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreDoc {
    dir: PathBuf,
    max_bytes: Option<RawSize>,
    max_age: Option<String>,
    compress: Option<String>,
    file_size_mb: Option<f64>,
    rotate_seconds: Option<u64>,
    flush_interval_ms: Option<u64>,
}

/// `[tap.file]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    path: PathBuf,
    format: Option<Format>,
    compress: Option<String>,
    file_size_mb: Option<f64>,
    rotate_seconds: Option<u64>,
    ring_files: Option<u32>,
    post_rotate: Option<String>,
    sign_key: Option<PathBuf>,
    flush_interval_ms: Option<u64>,
    on_disk_full: Option<DiskFull>,
    force: Option<bool>,
}

/// `[tap.suricata]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuricataDoc {
    socket: PathBuf,
    output: Option<PathBuf>,
}

impl TapDoc {
    /// The raw settings, paths resolved by `resolve` (relative to the file they came from).
    pub(super) fn into_raw(self, resolve: &dyn Fn(&Path) -> PathBuf) -> RawTap {
        let file = self.file;
        let suricata = self.suricata;
        let (store, store_output) = match self.store {
            None => (RawStore::default(), RawOutput::default()),
            Some(s) => (
                RawStore {
                    // An empty name stays empty, for the rule to refuse.
                    dir: Some(if s.dir.as_os_str().is_empty() {
                        s.dir
                    } else {
                        resolve(&s.dir)
                    }),
                    max_bytes: s.max_bytes,
                    max_age: s.max_age,
                },
                RawOutput {
                    compress: s.compress,
                    file_size_mb: s.file_size_mb,
                    rotate_seconds: s.rotate_seconds,
                    flush_interval_ms: s.flush_interval_ms,
                    ..RawOutput::default()
                },
            ),
        };
        RawTap {
            name: self.name,
            capture: RawCapture {
                interfaces: self.interfaces,
                hook: self.hook,
                direction: self.direction,
                xdp_mode: self.xdp_mode,
                filter: RawFilter {
                    expression: self.filter,
                    file: self.filter_file.as_deref().map(resolve),
                    words: Vec::new(),
                },
                snaplen: self.snaplen,
                ring_size: self.ring_size,
                output: file.map_or(store_output, |f| RawOutput {
                    path: Some(resolve(&f.path)),
                    format: f.format,
                    compress: f.compress,
                    file_size_mb: f.file_size_mb,
                    rotate_seconds: f.rotate_seconds,
                    ring_files: f.ring_files,
                    post_rotate: f.post_rotate,
                    sign_key: f.sign_key.as_deref().map(resolve),
                    flush_interval_ms: f.flush_interval_ms,
                    on_disk_full: f.on_disk_full,
                    force: f.force.unwrap_or(false),
                    run_as: None,
                }),
                serve: self.serve.as_deref().map(|p| RawServe::Path(resolve(p))),
                inject: self.inject,
                forward: self.forward.unwrap_or_default(),
                fix_checksums: self.fix_checksums.unwrap_or(false),
                suricata_socket: suricata.as_ref().map(|s| resolve(&s.socket)),
                suricata_output: suricata.and_then(|s| s.output).map(|o| resolve(&o)),
                sample: self.sample,
                max_rate: self.max_rate,
                decap: self.decap,
                consume: self.consume.unwrap_or(false),
                flow_budget: self.flow_budget,
                flow_table_size: self.flow_table_size,
                pretrigger: self.pretrigger,
                store,
                ..RawCapture::default()
            },
        }
    }
}
