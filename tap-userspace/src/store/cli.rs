//! The store's command line: `tap capture --store DIR ...` (flattened into the capture's
//! arguments), `tap query`, `tap store reindex`; raw values here, validated into
//! [`StoreConfig`] (one rule each, worded for a flag and a file alike).

use std::{
    io::IsTerminal as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use clap::{Subcommand, ValueEnum};

use super::{
    StoreError, layout,
    query::{self, FlowSummary, Format, QueryStats, Selection},
    reindex,
};
use crate::{
    cli::{OutputArgs, parse_binary_size},
    config::{Compression, DiskFull, Format as FileFormat, OutputConfig, OutputConfigError},
    sink::file::OutFile,
};

/// `tap capture` options of the store.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreArgs {
    /// Write a packet store into DIR instead of -w: rotating pcapng files (zstd with
    /// --compress zstd) and a Parquet index of each file's flows, for `tap query`. Default
    /// rotation: -G 60 -C 1000.
    #[arg(long, value_name = "DIR", conflicts_with = "write")]
    pub store: Option<PathBuf>,
    /// Keep the store under SIZE bytes (K, M, G: powers of 1024), deleting the oldest files
    /// with their index first.
    #[arg(long, value_name = "SIZE", value_parser = parse_binary_size)]
    pub store_max_bytes: Option<u64>,
    /// Delete files whose last packet is older than DURATION (e.g. 7d, 12h, 90m).
    #[arg(long, value_name = "DURATION")]
    pub store_max_age: Option<String>,
}

/// A validated store: where, and its retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub dir: PathBuf,
    /// Bytes the store may hold (capture and index files).
    pub max_bytes: Option<u64>,
    /// Age of the last packet beyond which a file is deleted.
    pub max_age: Option<Duration>,
}

/// Default rotation of a store: a new file every minute, or at 1 GB.
pub const DEFAULT_ROTATE_SECS: u64 = 60;
pub const DEFAULT_FILE_MB: f64 = 1000.0;

impl StoreConfig {
    /// Whether retention is on (it is what may delete files on a full disk).
    #[must_use]
    pub fn retention(&self) -> bool {
        self.max_bytes.is_some() || self.max_age.is_some()
    }

    /// Validates the store options; `None` without `--store`.
    ///
    /// # Errors
    ///
    /// When a file cannot be read or written, or holds what it should not (the error says which).
    pub fn from_args(args: &StoreArgs) -> Result<Option<Self>, StoreError> {
        let Some(dir) = &args.store else {
            if args.store_max_bytes.is_some() || args.store_max_age.is_some() {
                return Err(StoreError::Setting {
                    option: "--store-max-bytes/--store-max-age",
                    value: String::new(),
                    reason: "retention applies to a store: give --store DIR".into(),
                });
            }
            return Ok(None);
        };
        if dir.as_os_str().is_empty() || dir.as_os_str() == "-" {
            return Err(StoreError::Setting {
                option: "--store",
                value: dir.display().to_string(),
                reason: "give a directory".into(),
            });
        }
        let max_bytes = match args.store_max_bytes {
            Some(0) => {
                return Err(StoreError::Setting {
                    option: "--store-max-bytes",
                    value: "0".into(),
                    reason: "must be positive".into(),
                });
            }
            other => other,
        };
        let max_age = args
            .store_max_age
            .as_deref()
            .map(|s| match humantime::parse_duration(s) {
                Ok(d) if !d.is_zero() => Ok(d),
                Ok(_) => Err("must be positive".to_string()),
                Err(e) => Err(format!("{e}: use e.g. 7d, 12h, 90m")),
            })
            .transpose()
            .map_err(|reason| StoreError::Setting {
                option: "--store-max-age",
                value: args.store_max_age.clone().unwrap_or_default(),
                reason,
            })?;
        Ok(Some(Self {
            dir: std::path::absolute(dir).unwrap_or_else(|_| dir.clone()),
            max_bytes,
            max_age,
        }))
    }

    /// The capture writer's output for this store: pcapng files named by
    /// [`layout::NAME_PATTERN`] in the directory, rotating (-C, -G; by default
    /// [`DEFAULT_ROTATE_SECS`] and [`DEFAULT_FILE_MB`], and files no larger than a quarter of
    /// `--store-max-bytes`, so retention works file by file), numbered on after the files an
    /// earlier run left, and never stopping on a full disk (room is made or drops counted).
    ///
    /// # Errors
    ///
    /// When a file cannot be read or written, or holds what it should not (the error says which).
    pub fn output(&self, args: &OutputArgs) -> Result<OutputConfig, StoreError> {
        let refuse = |option: &'static str, reason: &str| StoreError::Setting {
            option,
            value: String::new(),
            reason: reason.into(),
        };
        if args.format == Some(crate::cli::FormatArg::Pcap) {
            return Err(refuse("--format", "a store writes pcapng"));
        }
        if args.ring_files.is_some() {
            return Err(refuse(
                "-W",
                "with --store, retention is --store-max-bytes and --store-max-age",
            ));
        }
        let mut args = args.clone();
        args.format = Some(crate::cli::FormatArg::Pcapng);
        if args.file_size.is_none() && args.rotate_seconds.is_none() {
            args.file_size = Some(DEFAULT_FILE_MB);
            args.rotate_seconds = Some(DEFAULT_ROTATE_SECS);
        }
        if let Some(max) = self.max_bytes {
            #[expect(clippy::cast_precision_loss, reason = "a size in MB, rounding is fine")]
            let quarter = max as f64 / 4.0 / 1e6;
            let current = args.file_size.unwrap_or(f64::MAX);
            if current > quarter {
                args.file_size = Some(quarter.max(1e-6));
            }
        }
        let pattern = self.dir.join(layout::NAME_PATTERN);
        let mut out =
            OutputConfig::from_args(&pattern, &args).map_err(|e: OutputConfigError| {
                StoreError::Setting {
                    option: "--store",
                    value: self.dir.display().to_string(),
                    reason: e.to_string(),
                }
            })?;
        if let crate::config::Output::File(p) = &mut out.target {
            if out.compression != Compression::None {
                let mut s = p.as_os_str().to_owned();
                s.push(".zst");
                *p = PathBuf::from(s);
            }
        }
        out.format = FileFormat::Pcapng;
        out.on_disk_full = DiskFull::Drop;
        out.resume = true;
        out.store = Some(self.clone());
        Ok(out)
    }
}

/// `tap query`.
#[derive(Debug, clap::Args)]
#[command(after_help = QUERY_HELP)]
#[expect(clippy::struct_excessive_bools, reason = "command-line switches")]
pub struct QueryArgs {
    /// The store's directory.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Packets from this time on (inclusive): RFC 3339 (2026-12-03T14:02:00Z) or relative
    /// (-15m, -2h, -1d).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// Packets before this time (exclusive), as --since.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub until: Option<String>,
    /// Output file, or '-' for standard output (the default when it is not a terminal).
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// Output format (default: pcapng for a name ending in .pcapng, pcap otherwise).
    #[arg(long, value_enum)]
    pub format: Option<QueryFormatArg>,
    /// Overwrite an existing output file.
    #[arg(long)]
    pub force: bool,
    /// List the matching flows instead of writing packets: a table on a terminal.
    #[arg(long)]
    pub flows: bool,
    /// With --flows: one JSON object per flow and line.
    #[arg(long, requires = "flows", conflicts_with = "csv")]
    pub json: bool,
    /// With --flows: CSV with a header line.
    #[arg(long, requires = "flows")]
    pub csv: bool,
    /// Print nothing but errors (no summary on standard error).
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Filter expression (pcap-filter syntax, as for capture), as trailing words.
    #[arg(
        value_name = "EXPR",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub expression: Vec<String>,
}

/// Packet formats of `tap query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryFormatArg {
    Pcap,
    Pcapng,
}

const QUERY_HELP: &str = "\
Result:
  Exactly what `tcpdump -r` of every file of the store with the same expression gives, merged
  in time order (a tie goes to the earlier file, as mergecap does), within [--since, --until).
  The index chooses the files and the blocks to read; every packet read is then tested with
  the whole expression. Files without an index (just finished, left by a crash) are indexed
  on the fly; files that cannot be read are skipped with a warning and counted.

Flows (--flows):
  Flows whose time span meets the window and that the expression may select (exact for host,
  net, port, protocol and VLAN tests), summed over the files: first and last time, packets
  and bytes each way, the Community ID.
";

/// `tap store ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum StoreCommand {
    /// Recover the file a writer left unfinished and rebuild the index of every pcapng file
    /// in DIR. Refused while a capture writes DIR.
    Reindex {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Print what the store holds as JSON: files, bytes, index bytes (per GB of capture),
    /// flows, packets (for `cargo xtask bench`).
    #[command(hide = true)]
    Stats {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Fill a new store in DIR with synthetic traffic and a needle flow spread over it (see
    /// `store::bench`), for timing queries (for `cargo xtask bench`).
    #[command(hide = true)]
    BenchFill {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Packet bytes to write (K, M, G: powers of 1024).
        #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_binary_size)]
        bytes: u64,
        #[arg(long, value_name = "BYTES", default_value_t = 1000)]
        packet_size: usize,
        /// Background flows.
        #[arg(long, value_name = "N", default_value_t = 1000)]
        flows: u16,
        /// Packets of the needle flow.
        #[arg(long, value_name = "N", default_value_t = 300)]
        needle: u64,
        /// Compress with zstd at this level.
        #[arg(long, value_name = "LEVEL")]
        zstd: Option<i32>,
    },
    /// Run `--flows` queries for SECS seconds and print their rate as JSON (for `cargo xtask
    /// bench`).
    #[command(hide = true)]
    BenchFlows {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[arg(long, value_name = "SECS", default_value_t = 5.0)]
        seconds: f64,
        #[arg(value_name = "EXPR", trailing_var_arg = true)]
        expression: Vec<String>,
    },
}

fn selection(args: &QueryArgs) -> Result<Selection, StoreError> {
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
pub fn run_query(args: &QueryArgs) -> Result<(), StoreError> {
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
        (Some(QueryFormatArg::Pcapng), _) => Format::Pcapng,
        (None, Some(w)) if w.to_string_lossy().ends_with(".pcapng") => Format::Pcapng,
        _ => Format::Pcap,
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

fn print_flows(flows: &[FlowSummary], args: &QueryArgs) -> Result<(), StoreError> {
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn capture(args: &[&str]) -> Result<crate::config::CaptureConfig, crate::error::ConfigError> {
        let cli = Cli::try_parse_from(["tap", "capture", "-i", "lo"].iter().chain(args)).unwrap();
        let Command::Capture(args) = cli.command else {
            panic!("capture")
        };
        crate::config::CaptureConfig::from_args(&args)
    }

    #[test]
    fn store_flags_make_a_store_output() {
        let c = capture(&[
            "--store",
            "/tmp/s",
            "--store-max-bytes",
            "400M",
            "--store-max-age",
            "7d",
        ])
        .unwrap();
        let o = &c.output;
        let store = o.store.as_ref().unwrap();
        assert_eq!(store.dir, PathBuf::from("/tmp/s"));
        assert_eq!(store.max_bytes, Some(400 << 20));
        assert_eq!(store.max_age, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(
            o.target,
            crate::config::Output::File(PathBuf::from("/tmp/s/tap-%Y%m%d-%H%M%S.pcapng"))
        );
        assert_eq!(
            (o.format, o.on_disk_full, o.resume),
            (FileFormat::Pcapng, DiskFull::Drop, true)
        );
        // Files of at most a quarter of the size limit; the default minute otherwise.
        assert_eq!(o.rotation.max_bytes, Some((400u64 << 20) / 4));
        assert_eq!(o.rotation.interval_secs, Some(DEFAULT_ROTATE_SECS));
        let z = capture(&["--store", "/tmp/s", "--compress", "zstd", "-G", "10"])
            .unwrap()
            .output;
        assert_eq!(
            z.target,
            crate::config::Output::File(PathBuf::from("/tmp/s/tap-%Y%m%d-%H%M%S.pcapng.zst"))
        );
        assert_eq!(
            (z.rotation.interval_secs, z.rotation.max_bytes),
            (Some(10), None)
        );
    }

    #[test]
    fn bad_store_flags_are_refused() {
        for args in [
            &["--store", "/tmp/s", "--store-max-age", "soon"][..],
            &["--store", "/tmp/s", "--store-max-bytes", "0"],
            &["--store", "/tmp/s", "--format", "pcap"],
            &["--store", "/tmp/s", "-G", "5", "-W", "3"],
        ] {
            let e = capture(args).unwrap_err().to_string();
            assert!(!e.is_empty() && !e.contains('\n'), "{args:?}: {e}");
        }
        let clash = Cli::try_parse_from(["tap", "capture", "--store", "/tmp/s", "-w", "x.pcap"]);
        assert!(clash.is_err());
        assert!(capture(&["-w", "x", "--store-max-bytes", "1G"]).is_err());
    }
}
