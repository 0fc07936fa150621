//! The store's commands: `tap query` and `tap store ...`, as the settings hand them over
//! (`tap capture --store DIR` is a capture's output, validated by the settings' rule book).

use std::{
    io::IsTerminal as _,
    path::{Path, PathBuf},
    time::Instant,
};

use super::{
    StoreError, layout,
    query::{self, FlowSummary, Format, QueryStats, Selection},
    reindex,
};
use crate::{model::Compression, sink::file::OutFile};

/// `tap query`: what a front door asked for, not yet checked ([`Selection::parse`] checks the
/// times and the expression).
#[derive(Debug, Clone, Default)]
#[expect(clippy::struct_excessive_bools, reason = "command-line switches")]
pub struct QueryRequest {
    /// The store's directory.
    pub dir: PathBuf,
    /// From this time on (inclusive): RFC 3339 or relative (`-15m`).
    pub since: Option<String>,
    /// Before this time (exclusive), as `since`.
    pub until: Option<String>,
    /// Output file, or `-` for standard output (the default).
    pub write: Option<PathBuf>,
    /// Packet format; none: pcapng for a name ending in `.pcapng`, pcap otherwise.
    pub format: Option<Format>,
    /// Overwrite an existing output file.
    pub force: bool,
    /// List the matching flows instead of writing packets.
    pub flows: bool,
    /// With `flows`: one JSON object per flow and line.
    pub json: bool,
    /// With `flows`: CSV with a header line.
    pub csv: bool,
    /// No summary on standard error.
    pub quiet: bool,
    /// Filter expression words, joined by spaces.
    pub expression: Vec<String>,
}

/// `tap store ...`.
#[derive(Debug, Clone)]
pub enum StoreCommand {
    /// Recover the file a writer left unfinished and rebuild every index.
    Reindex { dir: PathBuf },
    /// What the store holds, as JSON.
    Stats { dir: PathBuf },
    /// Fill a new store with synthetic traffic and a needle flow (see [`super::bench`]).
    BenchFill {
        dir: PathBuf,
        /// Packet bytes to write.
        bytes: u64,
        packet_size: usize,
        /// Background flows.
        flows: u16,
        /// Packets of the needle flow.
        needle: u64,
        /// zstd level.
        zstd: Option<i32>,
    },
    /// Run `--flows` queries for `seconds` and print their rate as JSON.
    BenchFlows {
        dir: PathBuf,
        seconds: f64,
        expression: Vec<String>,
    },
}

fn selection(args: &QueryRequest) -> Result<Selection, StoreError> {
    Selection::parse(
        args.since.as_deref(),
        args.until.as_deref(),
        &args.expression.join(" "),
    )
}

fn check_dir(dir: &Path) -> Result<(), StoreError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(StoreError::Dir {
            dir: dir.to_path_buf(),
            source: std::io::Error::other("not a directory"),
        }),
        Err(source) => Err(StoreError::Dir {
            dir: dir.to_path_buf(),
            source,
        }),
    }
}

/// Runs `tap query`; the summary line goes to standard error unless `--quiet`.
///
/// # Errors
///
/// When a file cannot be read or written, or holds what it should not (the error says which).
pub fn run_query(args: &QueryRequest) -> Result<(), StoreError> {
    check_dir(&args.dir)?;
    let sel = selection(args)?;
    let started = Instant::now();
    if args.flows {
        let (flows, stats) = query::flows(&args.dir, &sel)?;
        print_flows(&flows, args)?;
        if !args.quiet {
            eprintln!("{}", summary(&stats, flows.len() as u64, started, true));
        }
        return Ok(());
    }
    let to_stdout = args.write.as_ref().is_none_or(|w| w.as_os_str() == "-");
    if to_stdout && std::io::stdout().is_terminal() {
        return Err(StoreError::Setting {
            option: "-w",
            value: "-".into(),
            reason: "standard output is a terminal: give -w FILE, pipe it (| tcpdump -r -), or use --flows".into(),
        });
    }
    let format = match (args.format, &args.write) {
        (Some(f), _) => f,
        (None, Some(w)) if w.to_string_lossy().ends_with(".pcapng") => Format::Pcapng,
        (None, _) => Format::Pcap,
    };
    let sink = if to_stdout {
        query::Sink::Stdout
    } else {
        let path = args.write.clone().unwrap_or_default();
        query::Sink::File(OutFile::create(&path, None, args.force)?)
    };
    let stats = query::packets(&args.dir, &sel, format, sink)?;
    if !args.quiet {
        eprintln!("{}", summary(&stats, stats.packets, started, false));
    }
    Ok(())
}

fn summary(s: &QueryStats, n: u64, started: Instant, flows: bool) -> String {
    use std::fmt::Write as _;
    let mut line = if flows {
        format!("{n} flows from {} of {} files", s.files_read, s.files)
    } else {
        format!(
            "{n} packets from {} of {} files ({} blocks, {} bytes read, {} packets tested)",
            s.files_read, s.files, s.blocks_read, s.bytes_read, s.packets_tested
        )
    };
    let _ = write!(line, " in {:.3} s", started.elapsed().as_secs_f64());
    if s.files_indexed_now > 0 {
        let _ = write!(
            line,
            "; {} files without an index read through (`tap store reindex` writes it)",
            s.files_indexed_now
        );
    }
    if !s.skipped.is_empty() {
        let _ = write!(
            line,
            "; {} files skipped (see the warnings)",
            s.skipped.len()
        );
    }
    line
}

const FLOW_COLUMNS: [&str; 14] = [
    "first",
    "last",
    "proto",
    "src",
    "sport",
    "dst",
    "dport",
    "vlan",
    "packets",
    "bytes",
    "src_packets",
    "dst_packets",
    "community_id",
    "files",
];

fn cells(f: &FlowSummary) -> [String; 14] {
    let opt = |v: Option<u16>| v.map(|v| v.to_string()).unwrap_or_default();
    let proto = match (f.ip_version, f.protocol) {
        (Some(_), Some(6)) => "tcp".to_string(),
        (Some(_), Some(17)) => "udp".to_string(),
        (Some(_), Some(132)) => "sctp".to_string(),
        (Some(4), Some(1)) => "icmp".to_string(),
        (Some(6), Some(58)) => "icmp6".to_string(),
        (Some(_), Some(p)) => format!("ip-{p}"),
        _ => format!("ether-{:04x}", f.ethertype),
    };
    [
        query::rfc3339(f.first_ns),
        query::rfc3339(f.last_ns),
        proto,
        f.src.clone(),
        opt(f.src_port),
        f.dst.clone(),
        opt(f.dst_port),
        opt(f.vlan),
        f.packets.to_string(),
        f.bytes.to_string(),
        f.src_packets.to_string(),
        f.dst_packets.to_string(),
        f.community_id.clone().unwrap_or_default(),
        f.files.to_string(),
    ]
}

/// A flow as `tap query --flows --json` prints it (and the agent's `/flows` returns it): the
/// [`FlowSummary`] fields, and `first` and `last` in RFC 3339.
#[must_use]
pub fn flow_json(f: &FlowSummary) -> serde_json::Value {
    let mut v = serde_json::to_value(f).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.insert("first".into(), query::rfc3339(f.first_ns).into());
        m.insert("last".into(), query::rfc3339(f.last_ns).into());
    }
    v
}

fn print_flows(flows: &[FlowSummary], args: &QueryRequest) -> Result<(), StoreError> {
    use std::{fmt::Write as _, io::Write as _};
    let mut text = String::new();
    if args.json {
        for f in flows {
            text.push_str(&flow_json(f).to_string());
            text.push('\n');
        }
    } else if args.csv {
        text.push_str(&FLOW_COLUMNS.join(","));
        text.push('\n');
        for f in flows {
            text.push_str(&cells(f).join(","));
            text.push('\n');
        }
    } else {
        let rows: Vec<[String; 14]> = flows.iter().map(cells).collect();
        let mut widths = FLOW_COLUMNS.map(str::len);
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.len());
            }
        }
        let line = |cols: &[String]| {
            let mut s = String::new();
            for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
                if i > 0 {
                    s.push_str("  ");
                }
                let _ = write!(s, "{c:<w$}");
            }
            s.trim_end().to_string() + "\n"
        };
        text.push_str(&line(&FLOW_COLUMNS.map(String::from)));
        for r in &rows {
            text.push_str(&line(r));
        }
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(StoreError::Io {
            path: PathBuf::from("-"),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Runs `tap store ...`.
///
/// # Errors
///
/// When a file cannot be read or written, or holds what it should not (the error says which).
pub fn run_store(command: &StoreCommand) -> Result<(), StoreError> {
    match command {
        StoreCommand::Reindex { dir } => {
            check_dir(dir)?;
            let _lock = layout::Lock::acquire(dir)?;
            let report = reindex::reindex(dir, true)?;
            eprintln!("{report}");
            for (path, why) in &report.skipped {
                eprintln!("skipped {}: {why}", path.display());
            }
            Ok(())
        }
        StoreCommand::Stats { dir } => {
            check_dir(dir)?;
            println!("{}", stats_json(dir)?);
            Ok(())
        }
        StoreCommand::BenchFill {
            dir,
            bytes,
            packet_size,
            flows,
            needle,
            zstd,
        } => {
            let compression = zstd.map_or(Compression::None, |level| Compression::Zstd {
                level: level.clamp(1, 19),
            });
            let started = Instant::now();
            let n = super::bench::fill(dir, *bytes, *packet_size, *flows, *needle, compression)?;
            println!(
                "{}",
                serde_json::json!({"packets": n, "seconds": started.elapsed().as_secs_f64(), "needle_filter": super::bench::NEEDLE_FILTER})
            );
            Ok(())
        }
        StoreCommand::BenchFlows {
            dir,
            seconds,
            expression,
        } => {
            check_dir(dir)?;
            let sel = Selection {
                expr: expression.join(" "),
                ..Selection::default()
            };
            let started = Instant::now();
            let mut queries = 0u64;
            let mut flows = 0;
            while started.elapsed().as_secs_f64() < *seconds || queries == 0 {
                flows = query::flows(dir, &sel)?.0.len();
                queries += 1;
            }
            let secs = started.elapsed().as_secs_f64();
            #[expect(clippy::cast_precision_loss, reason = "a rate")]
            let rate = queries as f64 / secs;
            println!(
                "{}",
                serde_json::json!({"queries": queries, "seconds": secs, "queries_per_second": rate, "flows": flows})
            );
            Ok(())
        }
    }
}

/// What a store holds, as JSON: capture files and bytes, index bytes, index bytes per GB
/// (10^9 bytes) of capture, flows and packets (from the indexes).
///
/// # Errors
///
/// When a file cannot be read or written, or holds what it should not (the error says which).
pub fn stats_json(dir: &Path) -> Result<serde_json::Value, StoreError> {
    let listing = layout::list(dir)?;
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let (mut capture, mut index, mut flows, mut packets, mut unindexed) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for c in &listing.captures {
        capture += c.len;
        index += size(&layout::flows_path(&c.path)) + size(&layout::blocks_path(&c.path));
        match reindex::load_meta(c) {
            Ok(m) => {
                flows += m.flows;
                packets += m.packets;
            }
            Err(_) => unindexed += 1,
        }
    }
    #[expect(clippy::cast_precision_loss, reason = "a ratio")]
    let per_gb = if capture == 0 {
        0.0
    } else {
        index as f64 / (capture as f64 / 1e9)
    };
    Ok(serde_json::json!({
        "files": listing.captures.len(),
        "unindexed_files": unindexed,
        "capture_bytes": capture,
        "index_bytes": index,
        "index_bytes_per_gb": per_gb,
        "flows": flows,
        "packets": packets,
    }))
}
