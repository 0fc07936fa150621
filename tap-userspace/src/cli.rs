//! Command line, in tcpdump's habits. Raw values only; [`crate::config`] validates them.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "tap", version, about = "A packet tap on XDP and TC eBPF programs", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log level for tap's own messages (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn", env = "TAP_LOG")]
    pub log: String,
    /// Log format: human-readable lines, or one JSON object per line (for journald or a log
    /// shipper).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "human",
        env = "TAP_LOG_FORMAT"
    )]
    pub log_format: LogFormatArg,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// One line per event: time, level, message, fields.
    Human,
    /// One JSON object per event.
    Json,
}

/// `tap agent`: a long-running service of several taps from one configuration file.
#[derive(Debug, clap::Args)]
#[command(after_help = AGENT_HELP)]
pub struct AgentArgs {
    /// The configuration file (TOML): the taps, their interfaces, filters and sinks.
    #[arg(
        short = 'c',
        long,
        value_name = "FILE",
        default_value = "/etc/tap/tap.toml"
    )]
    pub config: PathBuf,
    /// Check the configuration file and exit: 0 when it is valid, 1 with the error (file, line,
    /// key) when not. Nothing is loaded or attached.
    #[arg(long)]
    pub check: bool,
}

/// How `tap agent --help` explains reloads and the control socket.
pub const AGENT_HELP: &str = "\
Reload:
  SIGHUP or `tap ctl reload` re-reads the file. A file that does not validate is refused and
  logged (file:line: key: reason); the running taps go on unchanged. Otherwise a changed
  filter, sample or max_rate is applied in place (no detach, no loss), changed interface
  patterns attach and detach only the interfaces concerned, added and removed taps start and
  stop, and any other change restarts only the tap it concerns.

Interfaces:
  Names or shell globs (`vm*`, `tap[0-9]*`); interfaces that appear later are attached within
  half a second, those that disappear are released. A tap with no interface waits.

Control and metrics:
  `tap ctl status` and `tap ctl reload` talk to the control socket (agent.control_socket,
  default /run/tap/tap.sock, mode 0600). agent.metrics_listen = \"127.0.0.1:9750\" serves
  Prometheus metrics at /metrics (off by default).
";

/// `tap ctl`: talk to a running agent.
#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// The agent's control socket.
    #[arg(long, value_name = "PATH", default_value = crate::agent::DEFAULT_CONTROL_SOCKET)]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// What to ask the agent.
#[derive(Debug, Clone, Subcommand)]
pub enum CtlCommand {
    /// Print each tap's state, interfaces and counters.
    Status {
        /// Print the agent's answer as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Re-read the configuration file (as SIGHUP does) and report whether it was applied.
    Reload,
}

/// `tap generate`: shell completions and man pages from these definitions (for packagers).
#[derive(Debug, Clone, Subcommand)]
pub enum GenerateCommand {
    /// Print the completion script for SHELL to standard output.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (tap.1 and one per subcommand) into DIR.
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Overwrite man pages already there.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Capture packets on one or more interfaces and write them as pcap or pcapng.
    #[command(after_help = STORAGE_HELP)]
    Capture(Box<CaptureArgs>),
    /// Write synthetic packets through the capture writer and print its throughput.
    #[command(hide = true)]
    BenchWriter(crate::bench_writer::BenchWriterArgs),
    /// Run the kernel program over the packets of a pcap file (BPF_PROG_TEST_RUN) and write
    /// the ones the filter selects: test a filter on a saved capture.
    Replay(ReplayArgs),
    /// Time the programs with BPF_PROG_TEST_RUN and print one line of JSON (`cargo xtask bench`).
    #[command(hide = true)]
    BenchProg(BenchProgArgs),
    /// Run several taps from a configuration file as a service: live reload, interfaces that
    /// come and go, a control socket and Prometheus metrics.
    Agent(AgentArgs),
    /// Ask a running agent for its status, or to reload its configuration.
    Ctl(CtlArgs),
    /// Fleet vTAP sessions in etcd: create, list, show and delete them, the ownership map, roles.
    Session(Box<crate::fleet::command::SessionArgs>),
    /// Generate shell completions or man pages.
    #[command(hide = true, subcommand)]
    Generate(GenerateCommand),
    /// Check a directory's chain of custody: its manifest, signatures and files.
    Verify(crate::custody::cli::VerifyArgs),
    /// Make ed25519 keys for signing manifests, or sign a directory's manifest now.
    #[command(subcommand)]
    Key(crate::custody::cli::KeyCommand),
    /// Follow Suricata's EVE alerts and print the evidence requests they make (JSON lines).
    #[command(hide = true)]
    Alerts(crate::evidence::cli::AlertsArgs),
    /// Packets or flows of a packet store (`tap capture --store DIR`) by filter and time.
    Query(Box<crate::store::cli::QueryArgs>),
    /// Maintain a packet store: recover and reindex.
    #[command(subcommand)]
    Store(crate::store::cli::StoreCommand),
}

#[derive(Debug, clap::Args)]
pub struct BenchProgArgs {
    /// Program to time (tc: the TC ingress classifier).
    #[arg(long, value_enum, default_value = "xdp")]
    pub hook: HookArg,
    /// Length in bytes of the Ethernet/IPv4/UDP test frame (no FCS).
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    pub frame_len: usize,
    /// Program runs per measurement (a selected frame: once with the ring having room, once
    /// with it full; a rejected frame: once).
    #[arg(long, value_name = "RUNS", default_value_t = 1_000_000)]
    pub repeat: u64,
    /// IPv4 destination of a test frame (source 192.0.2.1); repeat to time several frames with
    /// one load, one line each. Default: 192.0.2.2.
    #[arg(long = "dst", value_name = "IPV4")]
    pub dsts: Vec<std::net::Ipv4Addr>,
    /// Filter the program applies (pcap-filter syntax). Default: none, every frame is selected.
    #[arg(long, value_name = "EXPR", conflicts_with = "filter_file")]
    pub filter: Option<String>,
    /// Read the filter from FILE ('#' starts a comment, as with tcpdump -F).
    #[arg(long, value_name = "FILE")]
    pub filter_file: Option<PathBuf>,
    /// Count per interface and hook too, as a pcapng output or the agent has the programs do.
    #[arg(long)]
    pub per_interface: bool,
    /// Time with a per-flow budget and this many flows in its table (the frame's own and
    /// others): the copy within the budget, and the frame's flow over it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=8_388_608))]
    pub flows: Option<u32>,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Input capture (pcap or pcapng).
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    pub read: PathBuf,
    /// Output pcap file for the selected packets, or '-' for standard output. Created 0600; an
    /// existing file or a symbolic link is refused.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// Overwrite an existing output file (never through a symbolic link).
    #[arg(long)]
    pub force: bool,
    /// Which program to run the packets through.
    #[arg(long, value_enum, default_value = "xdp")]
    pub hook: HookArg,
    /// Print nothing but errors (no summary).
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Strip tunnel headers, as for `tap capture --decap`.
    #[arg(long, value_name = "LIST")]
    pub decap: Option<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HookArg {
    /// XDP: ingress only, earliest point, cheapest.
    Xdp,
    /// TC ingress and egress: both directions of the host's traffic.
    Tc,
    /// TC ingress only.
    TcIngress,
    /// TC egress only.
    TcEgress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum XdpModeArg {
    /// Native (driver) mode, falling back to generic when the driver lacks it.
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode.
    Generic,
}

#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    /// Interface to capture on; repeat for several. Default: the default-route interface.
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub interfaces: Vec<String>,
    /// Where in the kernel to tap.
    #[arg(long, value_enum, default_value = "tc")]
    pub hook: HookArg,
    /// XDP attach mode (with --hook xdp).
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpModeArg>,
    /// Snap length: bytes kept of each packet (the original length is recorded too).
    #[arg(short = 's', long = "snaplen", value_name = "BYTES")]
    pub snaplen: Option<u32>,
    /// Exit after writing COUNT packets.
    #[arg(short = 'c', long = "count", value_name = "COUNT")]
    pub count: Option<u64>,
    /// Exit after SECS seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Size of the kernel ring buffer: bytes, or with a K, M or G suffix (powers of 1024), a
    /// power of two. It is the capture's only buffer.
    #[arg(long, value_name = "BYTES", value_parser = parse_binary_size)]
    pub ring_size: Option<u64>,
    /// Output file (a name pattern with -C/-G), a named pipe, or '-' for standard output. The
    /// name chooses the format: pcapng for '.pcapng' and '.pcapng.zst', pcap otherwise; '.zst'
    /// compresses. Optional when another consumer (--serve, --inject, --forward) is given.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<PathBuf>,
    #[command(flatten)]
    pub consumers: ConsumerArgs,
    #[command(flatten)]
    pub store: crate::store::cli::StoreArgs,
    #[command(flatten)]
    pub output: Box<OutputArgs>,
    /// Print nothing but errors (no summary, no status line).
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Write the final summary as JSON to FILE when the capture ends.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
    /// Load this XDP program of the object instead of the tap program (tests only).
    #[arg(long, hide = true)]
    pub xdp_program: Option<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Keep 1 in N matched packets (sampling); the others are counted as sampled out.
    #[arg(long, value_name = "N")]
    pub sample: Option<u32>,
    /// Keep at most this many matched packets per second (spread over CPUs); the rest are
    /// counted as rate-limited.
    #[arg(long, value_name = "PPS")]
    pub max_rate: Option<u32>,
    /// Strip tunnel headers of mirrored traffic (comma-separated: vxlan[:PORT], geneve, gre,
    /// erspan): filters see and files record the inner frame, with the tunnel id.
    #[arg(long, value_name = "LIST")]
    pub decap: Option<String>,
    /// Drop every packet after copying it, so mirrored traffic on a dedicated monitor
    /// interface never enters the host's stack (fastest mode).
    #[arg(long)]
    pub consume: bool,
    /// Measure the kernel programs' own time per packet (the kernel's BPF run-time statistics,
    /// switched on host-wide while tap runs) and report it in the summary. Costs each BPF program
    /// on the host two clock reads per run while on.
    #[arg(long)]
    pub program_stats: bool,
    /// Copy only the first BYTES of every flow (both directions count as one; K, M, G: powers
    /// of 1024), or its first N packets with a 'p' suffix (200p); TCP SYN, FIN and RST are
    /// always copied. The packets past it are counted, not copied.
    #[arg(long, value_name = "BYTES|Np")]
    pub flow_budget: Option<String>,
    /// Flows the budget's table holds (default 65536); when it is full, the least recently
    /// seen flow makes room and starts over if it comes back.
    #[arg(long, value_name = "FLOWS", requires = "flow_budget")]
    pub flow_table_size: Option<u32>,
}

/// How `tap capture --help` explains file names, rotation and crash safety.
pub const STORAGE_HELP: &str = "\
Output files:
  Files are created 0600 and never overwritten (use --force); a symbolic link at the name is
  refused; a device or named pipe (/dev/null) is written to. Data reaches the file at least every --flush-interval ms, in whole records: after a
  crash (even kill -9) the file reads cleanly up to the last packet written.

Rotation (-C, -G, -W):
  Each file gets a sequence number, _NNNNN from _00001, before its extension, and strftime
  fields in the name (%Y %m %d %H %M %S %j %y %s %%) take the local time the file starts:
    -w /data/cap-%Y%m%d-%H%M%S.pcapng -G 60   /data/cap-20261127-101500_00001.pcapng, ...
    -w /data/cap.pcap -C 100 -W 10            /data/cap_00001.pcap ... at most 10 files
  A file being written is named .NAME.part in the same directory and renamed to NAME once
  complete, so a consumer watching the directory only sees whole files (after a crash the last
  file keeps its .part name). -C counts megabytes of 1,000,000 bytes on disk; a file never
  goes past it unless a single packet does (compressed files: by at most one 1 MiB block).
  -G starts files at multiples of SECS on the local clock (-G 60: every minute, on the minute),
  also when no packet arrived. -W keeps the newest N files of this capture, deleting the oldest
  (never a file tap did not create). --post-rotate CMD runs `sh -c 'CMD \"$1\"' FILE` on each
  finished file, the last one included, without waiting for it.

Full disk:
  The current file is cut back to its last whole record and finished; the error is reported
  once. --on-disk-full stop (default) ends the capture with exit status 1; drop keeps
  capturing and counts the packets as dropped by the writer (with -G, a new file is tried at
  the next interval).
";

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Classic pcap, nanosecond timestamps.
    Pcap,
    /// pcapng: interface per interface and hook, direction flags, drop statistics.
    Pcapng,
}

/// What to do when the disk is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiskFullArg {
    /// Finish the current file and end the capture (exit status 1).
    Stop,
    /// Finish the current file and keep capturing, counting packets as dropped.
    Drop,
}

/// Output options of `tap capture`: format, rotation, durability, privileges.
#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// Output format (default: from the file name; pcap for standard output).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Compress the output: none, zstd, or zstd:LEVEL (1-19, default 1). Default: zstd for
    /// names ending in .zst.
    #[arg(long, value_name = "ALGO")]
    pub compress: Option<String>,
    /// Start a new file before one would exceed MB megabytes (1,000,000 bytes).
    #[arg(short = 'C', long = "file-size", value_name = "MB")]
    pub file_size: Option<f64>,
    /// Start a new file every SECS seconds, aligned to the clock.
    #[arg(short = 'G', long = "rotate-seconds", value_name = "SECS")]
    pub rotate_seconds: Option<u64>,
    /// Keep at most N files (a ring): the oldest this capture wrote is deleted. Needs -C or -G.
    #[arg(short = 'W', long = "ring-files", value_name = "N")]
    pub ring_files: Option<u32>,
    /// Run CMD on each finished file (the file's path as its argument), in the background.
    #[arg(long, value_name = "CMD")]
    pub post_rotate: Option<String>,
    /// Write buffered packets at least this often, in milliseconds (0: after every batch).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub flush_interval: u64,
    /// What to do when the disk is full.
    #[arg(long, value_enum, default_value = "stop")]
    pub on_disk_full: DiskFullArg,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
    /// After attaching, run as USER (its groups too); files are created as that user.
    #[arg(short = 'Z', long = "relinquish-privileges", value_name = "USER")]
    pub run_as: Option<String>,
}

/// Live consumers besides the file: streams, a monitor interface, remote collectors, Suricata.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConsumerArgs {
    /// Serve live pcap streams on a Unix socket (mode 0600): `unix:PATH`. Every client that
    /// connects gets its own stream, starting with a pcap header; a slow client loses packets
    /// (counted), never slows the capture or the others.
    #[arg(long, value_name = "unix:PATH")]
    pub serve: Option<String>,
    /// Write captured frames into a monitor interface for an IDS in af-packet mode: an existing
    /// TAP device, an unaddressed veth end (frames arrive on it), or a new TAP device of that name.
    #[arg(long, value_name = "IFACE")]
    pub inject: Option<String>,
    /// Send each captured frame to a collector, VXLAN-encapsulated as cloud vTAPs do:
    /// `vxlan://HOST[:PORT]?vni=N[&max_len=BYTES]`. Repeat for several collectors.
    #[arg(long, value_name = "URL")]
    pub forward: Vec<String>,
    /// Recompute IPv4/TCP/UDP/ICMP checksums of the delivered copies (not of the wire traffic),
    /// for consumers that check them (offload leaves them partial on the sending host).
    #[arg(long)]
    pub fix_checksums: bool,
    /// Submit each finished file (with -C or -G) to Suricata's unix socket (`suricata
    /// --unix-socket=PATH`); reconnects when Suricata restarts.
    #[arg(long, value_name = "PATH")]
    pub suricata_socket: Option<PathBuf>,
    /// Directory where Suricata writes the results of submitted files.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/log/suricata",
        requires = "suricata_socket"
    )]
    pub suricata_output: PathBuf,
}

/// Where the filter expression comes from: trailing words (like tcpdump), `-f`, or `-F FILE`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    /// Filter expression (pcap-filter syntax), instead of trailing words.
    #[arg(short = 'f', long = "filter", value_name = "EXPR", conflicts_with_all = ["filter_file", "expression"])]
    pub filter: Option<String>,
    /// Read the filter expression from FILE (like tcpdump -F).
    #[arg(
        short = 'F',
        long = "filter-file",
        value_name = "FILE",
        conflicts_with = "expression"
    )]
    pub filter_file: Option<PathBuf>,
    /// Filter expression as trailing words: `tap capture -i eth0 -w x.pcap tcp and port 443`.
    #[arg(value_name = "EXPR", trailing_var_arg = true)]
    pub expression: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tap").chain(args.iter().copied()))
    }

    #[test]
    fn tcpdump_style_flags() {
        let cli = parse(&[
            "capture", "-i", "eth0", "-i", "eth1", "-s", "96", "-c", "10", "-w", "-",
        ])
        .unwrap();
        let Command::Capture(args) = cli.command else {
            panic!("capture")
        };
        assert_eq!(args.interfaces, ["eth0", "eth1"]);
        assert_eq!(args.snaplen, Some(96));
        assert_eq!(args.count, Some(10));
        assert_eq!(args.write, Some(PathBuf::from("-")));
        assert_eq!(args.hook, HookArg::Tc);
    }

    #[test]
    fn hooks_and_modes() {
        let cli = parse(&[
            "capture",
            "--hook",
            "xdp",
            "--xdp-mode",
            "generic",
            "-w",
            "x",
        ])
        .unwrap();
        let Command::Capture(args) = cli.command else {
            panic!("capture")
        };
        assert_eq!(args.hook, HookArg::Xdp);
        assert_eq!(args.xdp_mode, Some(XdpModeArg::Generic));
        assert!(parse(&["capture", "--hook", "bogus", "-w", "x"]).is_err());
    }

    #[test]
    fn filter_from_trailing_words_or_flags() {
        let cli = parse(&[
            "capture", "-i", "lo", "-w", "x", "tcp", "and", "port", "443",
        ])
        .unwrap();
        let Command::Capture(args) = cli.command else {
            panic!("capture")
        };
        assert_eq!(args.filter.expression, ["tcp", "and", "port", "443"]);
        let cli = parse(&["capture", "-w", "x", "-f", "udp"]).unwrap();
        let Command::Capture(args) = cli.command else {
            panic!("capture")
        };
        assert_eq!(args.filter.filter.as_deref(), Some("udp"));
        assert!(parse(&["capture", "-w", "x", "-f", "udp", "tcp"]).is_err());
        let cli = parse(&["replay", "-r", "in.pcap", "-w", "out.pcap", "icmp"]).unwrap();
        let Command::Replay(args) = cli.command else {
            panic!("replay")
        };
        assert_eq!(args.filter.expression, ["icmp"]);
    }

    #[test]
    fn consumers_parse() {
        let cli = parse(&[
            "capture",
            "--serve",
            "unix:/run/tap.sock",
            "--forward",
            "vxlan://192.0.2.9?vni=5",
            "--fix-checksums",
        ])
        .unwrap();
        let Command::Capture(args) = cli.command else {
            panic!("capture")
        };
        assert_eq!(args.write, None);
        assert_eq!(args.consumers.serve.as_deref(), Some("unix:/run/tap.sock"));
        assert_eq!(args.consumers.forward, ["vxlan://192.0.2.9?vni=5"]);
        assert!(args.consumers.fix_checksums);
    }
}

/// Parses a size: a number (fractions allowed) with an optional k, M or G suffix, each `unit`
/// (1000 or 1024) times the one before.
pub fn scaled_size(s: &str, unit: u32) -> Result<u64, String> {
    let (number, power) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => match c.to_ascii_uppercase() {
            'K' => (&s[..i], 1),
            'M' => (&s[..i], 2),
            'G' => (&s[..i], 3),
            other => return Err(format!("unknown unit {other:?} in {s}: use K, M or G")),
        },
        _ => (s, 0),
    };
    let n: f64 = number.parse().map_err(|_| format!("not a size: {s}"))?;
    let bytes = n * f64::from(unit).powi(power);
    if !(0.0..u64::MAX as f64).contains(&bytes) {
        return Err(format!("not a size: {s}"));
    }
    Ok(bytes as u64)
}

/// Parses a size in bytes with an optional K, M or G suffix (powers of 1024).
pub fn parse_binary_size(s: &str) -> Result<u64, String> {
    scaled_size(s, 1024)
}

#[cfg(test)]
mod size_tests {
    use super::parse_binary_size;

    #[test]
    fn binary_sizes() {
        assert_eq!(parse_binary_size("4096"), Ok(4096));
        assert_eq!(parse_binary_size("256M"), Ok(256 << 20));
        assert_eq!(parse_binary_size("32k"), Ok(32 << 10));
        assert_eq!(parse_binary_size("1G"), Ok(1 << 30));
        assert!(parse_binary_size("8X").is_err());
        assert!(parse_binary_size("M").is_err());
        assert!(parse_binary_size("99999999999999G").is_err());
    }
}
