//! Validated configuration: what [`crate::capture::run`] needs, checked before anything is
//! loaded or attached.

use std::{path::PathBuf, time::Duration};

use tap_common::config::{DEFAULT_RING_SIZE, DEFAULT_SNAPLEN, MAX_SNAPLEN};

use crate::{
    cli::{CaptureArgs, DiskFullArg, FilterArgs, FormatArg, HookArg, OutputArgs, XdpModeArg},
    error::ConfigError,
    filter::maps::FilterImage,
    iface,
};

/// CPUs the programs may run on.
pub(crate) fn ncpus() -> u32 {
    aya::util::nr_cpus().map_or(1, |n| n.max(1) as u32)
}

/// A kernel attach point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    Xdp,
    TcIngress,
    TcEgress,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::TcIngress => "tc-ingress",
            Hook::TcEgress => "tc-egress",
        }
    }
}

/// XDP attach mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    Auto,
    Native,
    Generic,
}

/// One interface to tap, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
}

/// Where packets go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// No file or stream: only the consumers (--serve, --inject, --forward) get packets.
    None,
    Stdout,
    /// A file, or with rotation a name pattern (see [`crate::sink::rotate`]).
    File(PathBuf),
}

/// File format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pcap,
    Pcapng,
}

/// Compression of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    /// zstd at this level (1..=19); each write is a whole frame.
    Zstd {
        level: i32,
    },
}

/// zstd level when none is given: the fastest, so the writer keeps up (level 1 compresses about
/// twice as fast as zstd's own default, 3, at a slightly lower ratio).
pub const ZSTD_DEFAULT_LEVEL: i32 = 1;

/// What a full disk does to the capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFull {
    /// Finish the current file and stop capturing.
    Stop,
    /// Finish the current file and count the packets that follow as dropped.
    Drop,
}

/// When to start the next file. All `None`: one file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Bytes a file may hold (on disk, so compressed bytes when compressing).
    pub max_bytes: Option<u64>,
    /// Seconds per file, aligned to the local clock.
    pub interval_secs: Option<u64>,
    /// Files of this capture kept; older ones are deleted.
    pub max_files: Option<u32>,
}

impl Rotation {
    pub fn active(&self) -> bool {
        self.max_bytes.is_some() || self.interval_secs.is_some()
    }
}

/// Where and how packets are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputConfig {
    pub target: Output,
    pub format: Format,
    pub compression: Compression,
    pub rotation: Rotation,
    /// Command run on each finished file, with the file as its argument.
    pub post_rotate: Option<String>,
    /// Longest time a packet stays in tap's buffer before it is written.
    pub flush_interval: Duration,
    pub on_disk_full: DiskFull,
    /// Overwrite existing files.
    pub force: bool,
    /// With rotation, a file name already taken (by an earlier run: `tap agent` restarting a
    /// tap) is skipped and the sequence goes on after it, instead of failing. Files of earlier
    /// runs do not count towards `max_files`.
    pub resume: bool,
    /// A packet store (`--store`): the files are indexed, retention applies
    /// ([`crate::store`]).
    pub store: Option<crate::store::StoreConfig>,
}

/// Errors in the output options.
#[derive(Debug, thiserror::Error)]
pub enum OutputConfigError {
    #[error("-C, -G and -W need a file name: standard output cannot rotate")]
    RotationToStdout,
    #[error("--post-rotate needs a file output")]
    PostRotateToStdout,
    #[error("-W needs -C or -G: it keeps the newest files of a rotation")]
    RingWithoutRotation,
    #[error("-C must be a positive number of megabytes")]
    FileSize,
    #[error("-G must be at least 1 second")]
    Interval,
    #[error("-W must be at least 1")]
    RingFiles,
    #[error("unknown --compress '{}': use none, zstd or zstd:LEVEL (LEVEL 1 to 19)", crate::excerpt::excerpt(.0))]
    Compress(String),
    #[error(transparent)]
    Pattern(#[from] crate::sink::rotate::PatternError),
    #[error(transparent)]
    User(#[from] crate::privilege::PrivilegeError),
}

fn ends_with_ci(name: &str, suffix: &str) -> bool {
    name.len() >= suffix.len() && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

impl OutputConfig {
    /// Validates the output options; the format and compression default from the file name.
    pub fn from_args(
        write: &std::path::Path,
        args: &OutputArgs,
    ) -> Result<Self, OutputConfigError> {
        let target = if write.as_os_str() == "-" {
            Output::Stdout
        } else {
            Output::File(write.to_path_buf())
        };
        let name = match &target {
            Output::File(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Output::Stdout | Output::None => String::new(),
        };
        let compressed_name = ends_with_ci(&name, ".zst") || ends_with_ci(&name, ".zstd");
        let format = match args.format {
            Some(FormatArg::Pcap) => Format::Pcap,
            Some(FormatArg::Pcapng) => Format::Pcapng,
            None => {
                let base = if compressed_name {
                    &name[..name.rfind('.').unwrap_or(name.len())]
                } else {
                    &name[..]
                };
                if ends_with_ci(base, ".pcapng") {
                    Format::Pcapng
                } else {
                    Format::Pcap
                }
            }
        };
        let compression = match args.compress.as_deref() {
            None if compressed_name => Compression::Zstd {
                level: ZSTD_DEFAULT_LEVEL,
            },
            None | Some("none") => Compression::None,
            Some("zstd") => Compression::Zstd {
                level: ZSTD_DEFAULT_LEVEL,
            },
            Some(other) => match other
                .strip_prefix("zstd:")
                .and_then(|l| l.parse::<i32>().ok())
            {
                Some(level) if (1..=19).contains(&level) => Compression::Zstd { level },
                _ => return Err(OutputConfigError::Compress(other.to_string())),
            },
        };
        let max_bytes = match args.file_size {
            None => None,
            Some(mb) if mb.is_finite() && mb > 0.0 && mb * 1e6 >= 1.0 => Some((mb * 1e6) as u64),
            Some(_) => return Err(OutputConfigError::FileSize),
        };
        let interval_secs = match args.rotate_seconds {
            Some(0) => return Err(OutputConfigError::Interval),
            other => other,
        };
        let max_files = match args.ring_files {
            Some(0) => return Err(OutputConfigError::RingFiles),
            other => other,
        };
        let rotation = Rotation {
            max_bytes,
            interval_secs,
            max_files,
        };
        if max_files.is_some() && !rotation.active() {
            return Err(OutputConfigError::RingWithoutRotation);
        }
        if let Output::File(path) = &target {
            crate::sink::rotate::NamePattern::new(path, rotation.active())?;
        } else if rotation.active() {
            return Err(OutputConfigError::RotationToStdout);
        } else if args.post_rotate.is_some() {
            return Err(OutputConfigError::PostRotateToStdout);
        }
        Ok(Self {
            target,
            format,
            compression,
            rotation,
            post_rotate: args.post_rotate.clone(),
            flush_interval: Duration::from_millis(args.flush_interval),
            on_disk_full: match args.on_disk_full {
                DiskFullArg::Stop => DiskFull::Stop,
                DiskFullArg::Drop => DiskFull::Drop,
            },
            force: args.force,
            resume: false,
            store: None,
        })
    }
}

/// A validated capture.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    pub interfaces: Vec<Interface>,
    pub hooks: Vec<Hook>,
    pub xdp_mode: XdpMode,
    /// Bytes kept of each packet, 1..=[`MAX_SNAPLEN`].
    pub snaplen: u32,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    /// Ring buffer size in bytes (power of two, at least a page).
    pub ring_size: u32,
    pub output: OutputConfig,
    /// Live consumers besides the output.
    pub consumers: Consumers,
    /// Run as this user once the programs are attached (`-Z`).
    pub run_as: Option<crate::privilege::RunAs>,
    pub quiet: bool,
    pub xdp_program: Option<String>,
    pub filter: FilterImage,
    /// The `-F` file, re-read on SIGHUP to replace the filter of a running capture.
    pub filter_file: Option<PathBuf>,
    /// Keep 1 in `sample` matched packets (1: all).
    pub sample: u32,
    /// Matched packets per second kept, per CPU (0: no cap).
    pub rate_per_cpu: u32,
    /// Tunnels to decapsulate.
    pub decap: Decap,
    /// Drop every packet after copying it (XDP_DROP / TC_ACT_SHOT).
    pub consume: bool,
    /// Switch on the kernel's BPF run-time statistics and report the programs' cost.
    pub program_stats: bool,
    /// `--flow-budget`: copy only the first bytes or packets of every flow.
    pub flow_budget: Option<FlowBudget>,
}

/// What a per-flow budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowUnit {
    /// Bytes of the packets as recorded (original lengths, from the Ethernet header).
    Bytes,
    Packets,
}

/// A per-flow budget: see `tap_common::flow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowBudget {
    /// At least 1, in `unit`s.
    pub limit: u64,
    pub unit: FlowUnit,
    /// Flows the table holds, 1..=`tap_common::flow::MAX_FLOW_TABLE`.
    pub table_size: u32,
}

impl std::fmt::Display for FlowBudget {
    /// `4096 bytes`, `200 packets`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.unit {
            FlowUnit::Bytes => "bytes",
            FlowUnit::Packets => "packets",
        };
        write!(f, "{} {unit}", self.limit)
    }
}

impl FlowBudget {
    /// `4096`, `64K` (bytes; K, M, G: powers of 1024) or `200p` (packets), at least 1, with the
    /// default table size.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::FlowBudget {
            value: text.to_string(),
        };
        let t = text.trim();
        let (limit, unit) = match t.strip_suffix(['p', 'P']) {
            Some(n) => (n.parse::<u64>().map_err(|_| bad())?, FlowUnit::Packets),
            None => (
                crate::cli::parse_binary_size(t).map_err(|_| bad())?,
                FlowUnit::Bytes,
            ),
        };
        if limit == 0 {
            return Err(bad());
        }
        Ok(Self {
            limit,
            unit,
            table_size: tap_common::flow::DEFAULT_FLOW_TABLE,
        })
    }

    /// The budget with a table of `size` flows, 1..=`MAX_FLOW_TABLE`.
    pub fn with_table_size(self, size: u32) -> Result<Self, ConfigError> {
        let max = tap_common::flow::MAX_FLOW_TABLE;
        if !(1..=max).contains(&size) {
            return Err(ConfigError::FlowTableSize { size, max });
        }
        Ok(Self {
            table_size: size,
            ..self
        })
    }
}

/// Live consumers, validated.
#[derive(Debug, Clone, Default)]
pub struct Consumers {
    /// `--serve unix:PATH`.
    pub serve: Option<PathBuf>,
    pub inject: Option<String>,
    pub forward: Vec<crate::sink::vxlan::VxlanTarget>,
    pub fix_checksums: bool,
    pub suricata_socket: Option<PathBuf>,
    pub suricata_output: PathBuf,
}

impl Consumers {
    pub fn from_args(args: &crate::cli::ConsumerArgs) -> Result<Self, ConfigError> {
        let serve = match &args.serve {
            None => None,
            Some(s) => match s.strip_prefix("unix:") {
                Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
                _ => return Err(ConfigError::Serve { value: s.clone() }),
            },
        };
        let forward = args
            .forward
            .iter()
            .map(|u| crate::sink::vxlan::VxlanTarget::parse(u).map_err(ConfigError::Forward))
            .collect::<Result<Vec<_>, _>>()?;
        let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
        Ok(Self {
            serve,
            inject: args.inject.clone(),
            forward,
            fix_checksums: args.fix_checksums,
            suricata_socket: args.suricata_socket.as_ref().map(absolute),
            suricata_output: absolute(&args.suricata_output),
        })
    }

    /// True when a consumer besides the file output is configured.
    pub fn any(&self) -> bool {
        self.serve.is_some() || self.inject.is_some() || !self.forward.is_empty()
    }
}

/// Which tunnels the programs strip, so filters and files see the inner frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decap {
    /// `tap_common::config::decap` bits.
    pub bits: u32,
    /// VXLAN UDP port, host order.
    pub vxlan_port: u16,
}

impl Default for Decap {
    fn default() -> Self {
        Self {
            bits: 0,
            vxlan_port: tap_common::config::VXLAN_PORT,
        }
    }
}

impl std::str::FromStr for Decap {
    type Err = ConfigError;

    /// `vxlan[:PORT],geneve,gre,erspan` (any subset, comma-separated).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use tap_common::config::decap;
        let mut out = Decap::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, port) = match item.split_once(':') {
                Some((n, p)) => (n, Some(p)),
                None => (item, None),
            };
            let bad = || ConfigError::Decap {
                item: item.to_string(),
            };
            match (name, port) {
                ("vxlan", None) => out.bits |= decap::VXLAN,
                ("vxlan", Some(p)) => {
                    out.bits |= decap::VXLAN;
                    out.vxlan_port = p.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
                }
                ("geneve", None) => out.bits |= decap::GENEVE,
                ("gre", None) => out.bits |= decap::GRE,
                ("erspan", None) => out.bits |= decap::ERSPAN,
                _ => return Err(bad()),
            }
        }
        Ok(out)
    }
}

/// Reads the filter expression from where the user gave it and compiles it. An empty
/// expression means no filter (every packet).
pub fn filter_from_args(args: &FilterArgs) -> Result<FilterImage, ConfigError> {
    let text = if let Some(f) = &args.filter {
        f.clone()
    } else if let Some(path) = &args.filter_file {
        let raw = crate::bounded_read::read_text(path, crate::bounded_read::FILTER_FILE_MAX)
            .map_err(ConfigError::FilterFile)?;
        // tcpdump -F: '#' starts a comment to the end of the line.
        raw.lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        args.expression.join(" ")
    };
    crate::filter::image(text.trim()).map_err(ConfigError::Filter)
}

/// The snap length in bytes: as tcpdump's `-s`, 0 (or none) means whole packets up to
/// [`MAX_SNAPLEN`], and a larger value is refused rather than silently cut.
pub fn snaplen(asked: Option<u32>) -> Result<u32, ConfigError> {
    match asked {
        None | Some(0) => Ok(DEFAULT_SNAPLEN),
        Some(s) if s > MAX_SNAPLEN => Err(ConfigError::SnapLen {
            snaplen: s,
            max: MAX_SNAPLEN,
        }),
        Some(s) => Ok(s),
    }
}

pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as u64 } else { 4096 }
}

impl CaptureConfig {
    /// Validates raw arguments. Resolves interfaces (so an unknown one fails here, before any
    /// program is loaded).
    pub fn from_args(args: &CaptureArgs) -> Result<Self, ConfigError> {
        let names = if args.interfaces.is_empty() {
            vec![iface::default_route_interface()?]
        } else {
            args.interfaces.clone()
        };
        let mut interfaces: Vec<Interface> = Vec::with_capacity(names.len());
        for name in names {
            let ifindex = iface::ifindex(&name).ok_or_else(|| ConfigError::UnknownInterface {
                iface: name.clone(),
            })?;
            if interfaces.iter().any(|i| i.ifindex == ifindex) {
                return Err(ConfigError::DuplicateInterface { iface: name });
            }
            interfaces.push(Interface { name, ifindex });
        }
        let hooks = match args.hook {
            HookArg::Xdp => vec![Hook::Xdp],
            HookArg::Tc => vec![Hook::TcIngress, Hook::TcEgress],
            HookArg::TcIngress => vec![Hook::TcIngress],
            HookArg::TcEgress => vec![Hook::TcEgress],
        };
        if args.xdp_mode.is_some() && args.hook != HookArg::Xdp {
            return Err(ConfigError::XdpModeWithoutXdp);
        }
        let xdp_mode = match args.xdp_mode.unwrap_or(XdpModeArg::Auto) {
            XdpModeArg::Auto => XdpMode::Auto,
            XdpModeArg::Native => XdpMode::Native,
            XdpModeArg::Generic => XdpMode::Generic,
        };
        let snaplen = snaplen(args.snaplen)?;
        let min_ring = page_size();
        let ring_size = args.ring_size.unwrap_or(u64::from(DEFAULT_RING_SIZE));
        if !ring_size.is_power_of_two() || ring_size < min_ring || ring_size > 1 << 31 {
            return Err(ConfigError::RingSize {
                size: ring_size,
                min: min_ring,
            });
        }
        let consumers = Consumers::from_args(&args.consumers)?;
        let store = crate::store::StoreConfig::from_args(&args.store).map_err(Box::new)?;
        let output = match (&args.write, store) {
            (_, Some(store)) => store.output(&args.output).map_err(Box::new)?,
            (Some(write), None) => OutputConfig::from_args(write, &args.output)?,
            (None, None) if consumers.any() => {
                let mut o = OutputConfig::from_args(std::path::Path::new("-"), &args.output)?;
                o.target = Output::None;
                o
            }
            (None, None) => return Err(ConfigError::NoOutput),
        };
        if consumers.suricata_socket.is_some() && !output.rotation.active() {
            return Err(ConfigError::SuricataWithoutRotation);
        }
        let run_as = match &args.output.run_as {
            Some(user) => {
                Some(crate::privilege::RunAs::lookup(user).map_err(OutputConfigError::User)?)
            }
            None => None,
        };
        Ok(Self {
            interfaces,
            hooks,
            xdp_mode,
            snaplen,
            count: args.count,
            duration: args.duration.map(Duration::from_secs_f64),
            ring_size: ring_size as u32,
            output,
            run_as,
            quiet: args.quiet,
            xdp_program: args.xdp_program.clone(),
            consumers,
            filter: filter_from_args(&args.filter)?,
            filter_file: args.filter.filter_file.clone(),
            decap: match &args.decap {
                Some(d) => d.parse()?,
                None => Decap::default(),
            },
            consume: args.consume,
            program_stats: args.program_stats,
            flow_budget: match &args.flow_budget {
                None => None,
                Some(text) => {
                    let budget = FlowBudget::parse(text)?;
                    Some(match args.flow_table_size {
                        Some(size) => budget.with_table_size(size)?,
                        None => budget,
                    })
                }
            },
            sample: match args.sample {
                Some(0) => return Err(ConfigError::Sample),
                Some(n) => n,
                None => 1,
            },
            rate_per_cpu: match args.max_rate {
                None | Some(0) => 0,
                // Each CPU keeps its share, rounded up so the cap is never below what was asked.
                Some(pps) => pps.div_ceil(ncpus()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn config(args: &[&str]) -> Result<CaptureConfig, ConfigError> {
        let cli = Cli::try_parse_from(["tap", "capture"].iter().chain(args.iter())).unwrap();
        let Command::Capture(args) = cli.command else {
            panic!("capture")
        };
        CaptureConfig::from_args(&args)
    }

    #[test]
    fn loopback_resolves_with_defaults() {
        let c = config(&["-i", "lo", "-w", "-"]).unwrap();
        assert_eq!(
            c.interfaces,
            [Interface {
                name: "lo".into(),
                ifindex: 1
            }]
        );
        assert_eq!(c.hooks, [Hook::TcIngress, Hook::TcEgress]);
        assert_eq!(c.snaplen, DEFAULT_SNAPLEN);
        assert_eq!(c.output.target, Output::Stdout);
        assert_eq!(c.output.format, Format::Pcap);
    }

    #[test]
    fn snaplen_zero_means_whole_packet_and_too_large_is_refused() {
        assert_eq!(
            config(&["-i", "lo", "-s", "0", "-w", "x"]).unwrap().snaplen,
            DEFAULT_SNAPLEN
        );
        assert_eq!(DEFAULT_SNAPLEN, 262_144, "tcpdump's default");
        assert_eq!(
            config(&["-i", "lo", "-s", "65535", "-w", "x"])
                .unwrap()
                .snaplen,
            65535
        );
        assert_eq!(
            config(&["-i", "lo", "-s", "262144", "-w", "x"])
                .unwrap()
                .snaplen,
            MAX_SNAPLEN
        );
        let e = config(&["-i", "lo", "-s", "262145", "-w", "x"]).unwrap_err();
        assert!(matches!(
            e,
            ConfigError::SnapLen {
                snaplen: 262_145,
                max: MAX_SNAPLEN
            }
        ));
        assert!(e.to_string().contains("262144"), "{e}");
        assert_eq!(
            config(&["-i", "lo", "-s", "96", "-w", "x"])
                .unwrap()
                .snaplen,
            96
        );
    }

    #[test]
    fn an_output_or_a_consumer_is_required() {
        assert!(matches!(config(&["-i", "lo"]), Err(ConfigError::NoOutput)));
        let c = config(&["-i", "lo", "--serve", "unix:/tmp/x.sock"]).unwrap();
        assert_eq!(c.output.target, Output::None);
        assert!(matches!(
            config(&["-i", "lo", "--serve", "/tmp/x.sock"]),
            Err(ConfigError::Serve { .. })
        ));
        assert!(matches!(
            config(&["-i", "lo", "--forward", "vxlan://192.0.2.9"]),
            Err(ConfigError::Forward(_))
        ));
        assert!(matches!(
            config(&[
                "-i",
                "lo",
                "-w",
                "x.pcap",
                "--suricata-socket",
                "/run/s.sock"
            ]),
            Err(ConfigError::SuricataWithoutRotation)
        ));
    }

    #[test]
    fn decap_lists() {
        use tap_common::config::decap;
        let d: Decap = "vxlan:8472,geneve,gre,erspan".parse().unwrap();
        assert_eq!(
            d.bits,
            decap::VXLAN | decap::GENEVE | decap::GRE | decap::ERSPAN
        );
        assert_eq!(d.vxlan_port, 8472);
        assert_eq!("vxlan".parse::<Decap>().unwrap().vxlan_port, 4789);
        assert!("vxlan:0".parse::<Decap>().is_err());
        assert!("ipip".parse::<Decap>().is_err());
    }

    #[test]
    fn output_format_and_compression_follow_the_name() {
        let out = |args: &[&str]| config(&[&["-i", "lo"][..], args].concat()).unwrap().output;
        let o = out(&["-w", "/d/x.pcapng.zst"]);
        assert_eq!(
            (o.format, o.compression),
            (
                Format::Pcapng,
                Compression::Zstd {
                    level: ZSTD_DEFAULT_LEVEL
                }
            )
        );
        let o = out(&["-w", "/d/x.PCAPNG"]);
        assert_eq!(
            (o.format, o.compression),
            (Format::Pcapng, Compression::None)
        );
        let o = out(&["-w", "/d/x.pcap.zst"]);
        assert_eq!(
            (o.format, o.compression),
            (
                Format::Pcap,
                Compression::Zstd {
                    level: ZSTD_DEFAULT_LEVEL
                }
            )
        );
        let o = out(&["-w", "x.pcap", "--format", "pcapng", "--compress", "zstd:7"]);
        assert_eq!(
            (o.format, o.compression),
            (Format::Pcapng, Compression::Zstd { level: 7 })
        );
        let o = out(&["-w", "x.pcap.zst", "--compress", "none"]);
        assert_eq!(o.compression, Compression::None);
        let o = out(&["-w", "-"]);
        assert_eq!(
            (o.target, o.format, o.flush_interval),
            (Output::Stdout, Format::Pcap, Duration::from_secs(1))
        );
        assert!(!o.force && o.on_disk_full == DiskFull::Stop && o.rotation == Rotation::default());
    }

    #[test]
    fn rotation_options() {
        let c = config(&[
            "-i",
            "lo",
            "-w",
            "cap.pcap",
            "-C",
            "2.5",
            "-G",
            "60",
            "-W",
            "4",
            "--flush-interval",
            "250",
            "--on-disk-full",
            "drop",
            "--force",
            "--post-rotate",
            "gzip",
        ])
        .unwrap();
        let o = c.output;
        assert_eq!(
            o.rotation,
            Rotation {
                max_bytes: Some(2_500_000),
                interval_secs: Some(60),
                max_files: Some(4)
            }
        );
        assert_eq!(
            (o.flush_interval, o.on_disk_full, o.force),
            (Duration::from_millis(250), DiskFull::Drop, true)
        );
        assert_eq!(o.post_rotate.as_deref(), Some("gzip"));
        assert_eq!(
            config(&["-i", "lo", "-w", "x", "-Z", "root"])
                .unwrap()
                .run_as
                .unwrap()
                .uid,
            0
        );
    }

    #[test]
    fn bad_output_options_are_refused() {
        use OutputConfigError as E;
        let err = |args: &[&str]| match config(&[&["-i", "lo"][..], args].concat()) {
            Err(ConfigError::Output(e)) => e,
            other => panic!("{args:?}: {other:?}"),
        };
        assert!(matches!(err(&["-w", "-", "-C", "1"]), E::RotationToStdout));
        assert!(matches!(
            err(&["-w", "-", "--post-rotate", "true"]),
            E::PostRotateToStdout
        ));
        assert!(matches!(
            err(&["-w", "x", "-W", "3"]),
            E::RingWithoutRotation
        ));
        assert!(matches!(err(&["-w", "x", "-C", "0"]), E::FileSize));
        assert!(matches!(err(&["-w", "x", "-C", "1e-9"]), E::FileSize));
        assert!(matches!(err(&["-w", "x", "-G", "0"]), E::Interval));
        assert!(matches!(
            err(&["-w", "x", "-G", "1", "-W", "0"]),
            E::RingFiles
        ));
        assert!(matches!(
            err(&["-w", "x", "--compress", "lz4"]),
            E::Compress(_)
        ));
        assert!(matches!(
            err(&["-w", "x", "--compress", "zstd:30"]),
            E::Compress(_)
        ));
        assert!(matches!(
            err(&["-w", "x-%Q.pcap", "-G", "5"]),
            E::Pattern(_)
        ));
        assert!(matches!(
            err(&["-w", "x", "-Z", "no-such-user-tap"]),
            E::User(_)
        ));
        // Without rotation the name is literal.
        assert!(config(&["-i", "lo", "-w", "x-%Q.pcap"]).is_ok());
    }

    #[test]
    fn flow_budgets() {
        let budget = |args: &[&str]| config(&[&["-i", "lo", "-w", "x"][..], args].concat());
        assert_eq!(budget(&[]).unwrap().flow_budget, None);
        let b = budget(&["--flow-budget", "4096"])
            .unwrap()
            .flow_budget
            .unwrap();
        assert_eq!(
            (b.limit, b.unit, b.table_size),
            (4096, FlowUnit::Bytes, 65_536)
        );
        let b = budget(&["--flow-budget", "64K", "--flow-table-size", "1000"])
            .unwrap()
            .flow_budget
            .unwrap();
        assert_eq!((b.limit, b.table_size), (64 << 10, 1000));
        let b = budget(&["--flow-budget", "200p"])
            .unwrap()
            .flow_budget
            .unwrap();
        assert_eq!((b.limit, b.unit), (200, FlowUnit::Packets));
        for bad in ["0", "0p", "p", "-5", "4X", "1.5p", ""] {
            // `=`: clap takes "-5" after a space for a flag, not a value.
            let e = budget(&[&format!("--flow-budget={bad}")]).unwrap_err();
            assert!(matches!(e, ConfigError::FlowBudget { .. }), "{bad}: {e}");
        }
        for size in ["0", "16777217"] {
            assert!(matches!(
                budget(&["--flow-budget", "1K", "--flow-table-size", size]),
                Err(ConfigError::FlowTableSize { .. })
            ));
        }
        // A table size means nothing without a budget.
        let cli = Cli::try_parse_from(["tap", "capture", "--flow-table-size", "5", "-w", "x"]);
        assert!(cli.is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(matches!(
            config(&["-i", "no-such-if0", "-w", "x"]),
            Err(ConfigError::UnknownInterface { .. })
        ));
        assert!(matches!(
            config(&["-i", "lo", "--ring-size", "12345", "-w", "x"]),
            Err(ConfigError::RingSize { .. })
        ));
        assert!(matches!(
            config(&["-i", "lo", "-i", "lo", "-w", "x"]),
            Err(ConfigError::DuplicateInterface { .. })
        ));
        assert!(matches!(
            config(&["-i", "lo", "--xdp-mode", "native", "-w", "x"]),
            Err(ConfigError::XdpModeWithoutXdp)
        ));
    }
}
