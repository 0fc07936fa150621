//! `tap replay`: the very same kernel program, run over the packets of a file with
//! BPF_PROG_TEST_RUN (kernel 4.12+ for XDP test runs; frags-capable XDP test runs 5.18+).
//! Users test a filter on a saved capture; the tests get a deterministic bed.
//!
//! Each packet runs once; the program either puts a record in the ring (selected) or not. The
//! selected packets are written with their original bytes and timestamps; with `--decap`, a
//! packet the program decapsulated is written as the inner frame it recorded, as a capture
//! would write it.

pub mod capture_file;
pub mod reader;

use std::{
    fs::File,
    io::{self, BufReader},
    path::{Path, PathBuf},
};

use aya::programs::{SchedClassifier, TestRun, TestRunOptions, Xdp};
use tap_common::{
    config::MAX_SNAPLEN,
    event::{HEADER_LEN, TUNNEL_NONE},
};

use crate::{
    filter::maps::FilterImage,
    kernel::batch::parse_record,
    kernel::counters::KernelCounters,
    kernel::counters::read_counters,
    kernel::loader::LoadError,
    kernel::loader::{self, LoadSpec},
    model::Hook,
    pipeline::run::CaptureError,
    replay::reader::{CaptureReader, ReadError},
    sink::pcap::PcapWriter,
};

/// Smallest frame a test run accepts (an Ethernet header).
const MIN_FRAME: usize = 14;

/// A validated replay.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    pub input: PathBuf,
    /// `None`: count only. `Some("-")`: standard output.
    pub output: Option<PathBuf>,
    pub hook: Hook,
    pub filter: FilterImage,
    /// Decapsulation bits and VXLAN port, as for a capture.
    pub decap: u32,
    pub vxlan_port: u16,
    /// Overwrite an existing output file (`--force`).
    pub force: bool,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub read: u64,
    pub matched: u64,
    pub not_matched: u64,
    /// Frames shorter than an Ethernet header, which the kernel will not run (they match only
    /// when there is no filter, as in tcpdump, where any test reads past their end).
    pub too_short: u64,
    pub kernel: KernelCounters,
    /// `(rule, hits)` of the filter.
    pub rules: Vec<(String, u64)>,
}

impl std::fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} packets read", self.read)?;
        writeln!(f, "{} packets matched", self.matched)?;
        write!(f, "{} packets not matched", self.not_matched)?;
        if self.too_short > 0 {
            write!(
                f,
                "\n{} packets shorter than an Ethernet header",
                self.too_short
            )?;
        }
        for (i, (rule, hits)) in self.rules.iter().enumerate() {
            write!(f, "\nrule {i}: {hits} hits: {rule}")?;
        }
        Ok(())
    }
}

/// Errors of a replay. aya's `ProgramError` is boxed, as in [`LoadError`]: it is large.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: ReadError,
    },
    #[error("{path}: packet {index} has link type {linktype}; only Ethernet (1) is supported")]
    LinkType {
        path: PathBuf,
        index: u64,
        linktype: u32,
    },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("BPF_PROG_TEST_RUN failed on packet {index}: {source}")]
    TestRun {
        index: u64,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error(transparent)]
    Output(#[from] CaptureError),
}

pub fn run(config: &ReplayConfig) -> Result<ReplaySummary, ReplayError> {
    // The output first: a name that cannot be written fails before any work, and the file,
    // created here, is removed again if the replay fails.
    let mut output = match &config.output {
        None => None,
        Some(path) => Some(Output::open(path, config.force)?),
    };
    let file = File::open(&config.input).map_err(|source| ReplayError::Open {
        path: config.input.clone(),
        source,
    })?;
    let mut reader =
        CaptureReader::new(BufReader::new(file)).map_err(|source| ReplayError::Read {
            path: config.input.clone(),
            source,
        })?;
    let spec = LoadSpec {
        interfaces: &[],
        hooks: &[config.hook],
        xdp_mode: crate::model::XdpMode::Auto,
        snaplen: MAX_SNAPLEN,
        // One packet in flight at a time: a small ring is plenty.
        ring_size: 1 << 20,
        xdp_program: None,
        filter: config.filter.clone(),
        sample: 1,
        rate_per_cpu: 0,
        decap: config.decap,
        vxlan_port: config.vxlan_port,
        consume: false,
        per_interface: false,
        flow_budget: None,
    };
    let (ebpf, maps) = loader::load(&spec)?;
    let loaded = loader::load_program(ebpf, config.hook, None)?;
    let name = loader::program_name(config.hook, None);
    let program = loaded.ebpf().program(name).ok_or(LoadError::Missing {
        kind: "program",
        name: name.into(),
    })?;
    let no_filter = config.filter.graph.is_none();

    let mut writer = match output.as_mut() {
        None => None,
        Some(out) => Some(out.writer()?),
    };
    let mut summary = ReplaySummary::default();
    while let Some(packet) = reader.next_packet().map_err(|source| ReplayError::Read {
        path: config.input.clone(),
        source,
    })? {
        let index = summary.read;
        summary.read += 1;
        // The inner frame and its length, when the program stripped a tunnel.
        let mut inner: Option<(u32, Vec<u8>)> = None;
        if packet.linktype != 1 {
            return Err(ReplayError::LinkType {
                path: config.input.clone(),
                index,
                linktype: packet.linktype,
            });
        }
        let selected = if packet.data.len() < MIN_FRAME {
            summary.too_short += 1;
            no_filter
        } else {
            let opts = TestRunOptions {
                data_in: Some(&packet.data),
                ..Default::default()
            };
            let result = match program {
                aya::programs::Program::Xdp(p) => <Xdp as TestRun>::test_run(p, opts),
                aya::programs::Program::SchedClassifier(p) => {
                    <SchedClassifier as TestRun>::test_run(p, opts)
                }
                _ => unreachable!("replay loads XDP or TC programs only"),
            };
            result.map_err(|source| ReplayError::TestRun {
                index,
                source: Box::new(source),
            })?;
            let mut got = false;
            maps.ring.ring.consume(|item| {
                // A record is the program saying "selected"; its bytes are checked for sanity.
                if item.len() >= HEADER_LEN {
                    if let Ok((header, data)) = parse_record(item) {
                        got = true;
                        if header.tunnel != TUNNEL_NONE {
                            inner = Some((header.orig_len, data.to_vec()));
                        }
                    }
                }
            });
            got
        };
        if selected {
            summary.matched += 1;
            if let Some(w) = writer.as_mut() {
                let (orig_len, data) = match &inner {
                    Some((orig_len, data)) => (*orig_len, data.as_slice()),
                    None => (packet.orig_len, packet.data.as_slice()),
                };
                w.write_packet(packet.ts_ns, orig_len, data)
                    .map_err(|source| CaptureError::Write {
                        what: "replay output".into(),
                        source,
                    })?;
            }
        } else {
            summary.not_matched += 1;
        }
    }
    if let Some(w) = writer {
        let mut out = w.into_inner().map_err(|source| CaptureError::Write {
            what: "replay output".into(),
            source,
        })?;
        io::Write::flush(&mut out).map_err(|source| CaptureError::Write {
            what: "replay output".into(),
            source,
        })?;
    }
    if let Some(out) = output.as_mut() {
        out.keep();
    }
    summary.kernel = read_counters(&maps.counters);
    summary.rules = if no_filter {
        Vec::new()
    } else {
        maps.filter.rule_hits()
    };
    Ok(summary)
}

/// The replay's output: standard output, or a file made by the one safe-create path (0600,
/// never through a symbolic link, never over an existing file without `--force`), removed on
/// drop unless kept, when this run created it.
struct Output {
    path: PathBuf,
    file: Option<File>,
    created: bool,
    keep: bool,
}

impl Output {
    fn open(path: &Path, force: bool) -> Result<Self, ReplayError> {
        if path.as_os_str() == "-" {
            return Ok(Self {
                path: path.to_path_buf(),
                file: None,
                created: false,
                keep: true,
            });
        }
        let created = std::fs::symlink_metadata(path).is_err();
        let file = crate::support::safe_create::create(path, force)
            .map_err(|e| CaptureError::Storage(e.into()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Some(file),
            created,
            keep: false,
        })
    }

    fn writer(&mut self) -> Result<PcapWriter<Box<dyn io::Write>>, ReplayError> {
        let out: Box<dyn io::Write> = match self.file.take() {
            Some(f) => Box::new(f),
            None => Box::new(io::stdout()),
        };
        Ok(
            PcapWriter::new(out, MAX_SNAPLEN).map_err(|source| CaptureError::Write {
                what: self.path.display().to_string(),
                source,
            })?,
        )
    }

    fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if self.created && !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
