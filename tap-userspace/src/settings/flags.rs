//! The command line, in tcpdump's habits: a reader that only translates. The clap types are
//! private to this module; it hands out [`Invocation`], whose capture settings are the raw
//! settings every front door fills, and words the rules' errors with flag names
//! ([`worded`]).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use super::{
    error::{Key, SettingError},
    raw::{RawCapture, RawFilter, RawOutput, RawPrint, RawServe, RawStore},
};
use crate::model::{DirectionChoice, DiskFull, Format, HookChoice, XdpMode};

#[derive(Debug, Parser)]
#[command(name = "tap", version = VERSION, about = "A packet tap on XDP and TC eBPF programs", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log level for tap's own messages (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn", env = "TAP_LOG")]
    log: String,
    /// Log format: human-readable lines, or one JSON object per line (for journald or a log
    /// shipper).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "human",
        env = "TAP_LOG_FORMAT"
    )]
    log_format: LogFormatArg,
}

/// `tap --version`: tap's version and the aya it is built with (the lock file's).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (aya ",
    env!("TAP_AYA_VERSION"),
    ")"
);

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormatArg {
    /// One line per event: time, level, message, fields.
    Human,
    /// One JSON object per event.
    Json,
}

/// `tap agent`: a long-running service of several taps from one configuration file.
#[derive(Debug, clap::Args)]
#[command(after_help = AGENT_HELP)]
struct AgentArgs {
    /// The configuration file (TOML): the taps, their interfaces, filters and sinks.
    #[arg(
        short = 'c',
        long,
        value_name = "FILE",
        default_value = "/etc/tap/tap.toml"
    )]
    config: PathBuf,
    /// Check the configuration file and exit: 0 when it is valid, 1 with the error (file, line,
    /// key) when not. Nothing is loaded or attached.
    #[arg(long)]
    check: bool,
}

/// How `tap agent --help` explains reloads and the control socket.
const AGENT_HELP: &str = "\
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
struct CtlArgs {
    /// The agent's control socket.
    #[arg(long, value_name = "PATH", default_value = super::agent_file::DEFAULT_CONTROL_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: CtlCommand,
}

/// What to ask the agent.
#[derive(Debug, Clone, Subcommand)]
enum CtlCommand {
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
enum GenerateCommand {
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
enum Command {
    /// Capture packets on one or more interfaces and write them as pcap or pcapng.
    #[command(after_help = STORAGE_HELP)]
    Capture(Box<CaptureArgs>),
    /// Write synthetic packets through the capture writer and print its throughput.
    #[cfg(feature = "bench-writer")]
    #[command(hide = true)]
    BenchWriter(BenchWriterArgs),
    /// Run the kernel program over the packets of a pcap file (BPF_PROG_TEST_RUN) and write
    /// the ones the filter selects: test a filter on a saved capture.
    Replay(ReplayArgs),
    /// Time the programs with BPF_PROG_TEST_RUN and print one line of JSON (`cargo xtask bench`).
    #[command(hide = true)]
    BenchProg(BenchProgArgs),
    /// Time the packet printer per packet and print one line of JSON per measurement (`cargo
    /// xtask bench`).
    #[command(hide = true)]
    BenchPrint(BenchPrintArgs),
    /// Run several taps from a configuration file as a service: live reload, interfaces that
    /// come and go, a control socket and Prometheus metrics.
    Agent(AgentArgs),
    /// Ask a running agent for its status, or to reload its configuration.
    Ctl(CtlArgs),
    /// Fleet vTAP sessions in etcd: create, list, show and delete them, the ownership map, roles.
    Session(Box<super::session_flags::SessionArgs>),
    /// Generate shell completions or man pages (for packagers).
    #[command(subcommand)]
    Generate(GenerateCommand),
    /// Check a directory's chain of custody: its manifest, signatures and files.
    Verify(VerifyArgs),
    /// Make ed25519 keys for signing manifests, or sign a directory's manifest now.
    #[command(subcommand)]
    Key(KeyFlags),
    /// Follow Suricata's EVE alerts and print the evidence requests they make (JSON lines).
    #[command(hide = true)]
    Alerts(Box<AlertsArgs>),
    /// Packets or flows of a packet store (`tap capture --store DIR`) by filter and time.
    Query(Box<QueryArgs>),
    /// Maintain a packet store: recover and reindex.
    #[command(subcommand)]
    Store(StoreFlags),
}

#[derive(Debug, clap::Args)]
struct BenchPrintArgs {
    /// Packets formatted per measurement.
    #[arg(long, value_name = "N", default_value_t = 2_000_000)]
    packets: usize,
}

#[derive(Debug, clap::Args)]
struct BenchProgArgs {
    /// Program to time (tc: the TC ingress classifier).
    #[arg(long, value_enum, default_value = "xdp")]
    hook: HookArg,
    /// Length in bytes of the Ethernet/IPv4/UDP test frame (no FCS).
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    frame_len: usize,
    /// Program runs per measurement (a selected frame: once with the ring having room, once
    /// with it full; a rejected frame: once).
    #[arg(long, value_name = "RUNS", default_value_t = 1_000_000)]
    repeat: u64,
    /// IPv4 destination of a test frame (source 192.0.2.1); repeat to time several frames with
    /// one load, one line each. Default: 192.0.2.2.
    #[arg(long = "dst", value_name = "IPV4")]
    dsts: Vec<std::net::Ipv4Addr>,
    /// Filter the program applies (pcap-filter syntax). Default: none, every frame is selected.
    #[arg(long, value_name = "EXPR", conflicts_with = "filter_file")]
    filter: Option<String>,
    /// Read the filter from FILE ('#' starts a comment, as with tcpdump -F).
    #[arg(long, value_name = "FILE")]
    filter_file: Option<PathBuf>,
    /// Count per interface and hook too, as a pcapng output or the agent has the programs do.
    #[arg(long)]
    per_interface: bool,
    /// Time with a per-flow budget and this many flows in its table (the frame's own and
    /// others): the copy within the budget, and the frame's flow over it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=8_388_608))]
    flows: Option<u32>,
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// Input capture (pcap or pcapng).
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    read: PathBuf,
    /// Output pcap file for the selected packets, or '-' for standard output. Created 0600; an
    /// existing file or a symbolic link is refused.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    write: Option<PathBuf>,
    /// Overwrite an existing output file (never through a symbolic link).
    #[arg(long)]
    force: bool,
    /// Which program to run the packets through.
    #[arg(long, value_enum, default_value = "xdp")]
    hook: HookArg,
    /// Print nothing but errors (no summary).
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Strip tunnel headers, as for `tap capture --decap`.
    #[arg(long, value_name = "LIST")]
    decap: Option<String>,
    #[command(flatten)]
    filter: FilterArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HookArg {
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
enum XdpModeArg {
    /// Native (driver) mode, falling back to generic when the driver lacks it.
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode.
    Generic,
}

#[derive(Debug, clap::Args)]
struct CaptureArgs {
    /// Interface to capture on; repeat for several. Default: the default-route interface.
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    interfaces: Vec<String>,
    /// Where in the kernel to tap.
    #[arg(long, value_enum, default_value = "tc")]
    hook: HookArg,
    /// XDP attach mode (with --hook xdp).
    #[arg(long, value_enum)]
    xdp_mode: Option<XdpModeArg>,
    /// Snap length: bytes kept of each packet (the original length is recorded too).
    #[arg(short = 's', long = "snaplen", value_name = "BYTES")]
    snaplen: Option<u32>,
    /// Exit after writing COUNT packets.
    #[arg(short = 'c', long = "count", value_name = "COUNT")]
    count: Option<u64>,
    /// Exit after SECS seconds.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Size of the kernel ring buffer: bytes, or with a K, M or G suffix (powers of 1024), a
    /// power of two. It is the capture's only buffer.
    #[arg(long, value_name = "BYTES", value_parser = parse_binary_size)]
    ring_size: Option<u64>,
    /// Output file (a name pattern with -C/-G), a named pipe, or '-' for standard output. The
    /// name chooses the format: pcapng for '.pcapng' and '.pcapng.zst', pcap otherwise; '.zst'
    /// compresses. Optional when another consumer (--serve, --inject, --forward) is given.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    write: Option<PathBuf>,
    #[command(flatten)]
    consumers: ConsumerArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    output: Box<OutputArgs>,
    /// Print nothing but errors (no summary, no status line); printed packets get less
    /// protocol detail, as tcpdump -q.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Write the final summary as JSON to FILE when the capture ends.
    #[arg(long, value_name = "FILE")]
    stats_json: Option<PathBuf>,
    /// Load this XDP program of the object instead of the tap program (tests only).
    #[arg(long, hide = true)]
    xdp_program: Option<String>,
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    habits: HabitArgs,
    /// Keep 1 in N matched packets (sampling); the others are counted as sampled out.
    #[arg(long, value_name = "N")]
    sample: Option<u32>,
    /// Keep at most this many matched packets per second (spread over CPUs); the rest are
    /// counted as rate-limited.
    #[arg(long, value_name = "PPS")]
    max_rate: Option<u32>,
    /// Strip tunnel headers of mirrored traffic (comma-separated: vxlan[:PORT], geneve, gre,
    /// erspan): filters see and files record the inner frame, with the tunnel id.
    #[arg(long, value_name = "LIST")]
    decap: Option<String>,
    /// Drop every packet after copying it, so mirrored traffic on a dedicated monitor
    /// interface never enters the host's stack (fastest mode).
    #[arg(long)]
    consume: bool,
    /// Measure the kernel programs' own time per packet (the kernel's BPF run-time statistics,
    /// switched on host-wide while tap runs) and report it in the summary. Costs each BPF program
    /// on the host two clock reads per run while on.
    #[arg(long)]
    program_stats: bool,
    /// Copy only the first BYTES of every flow (both directions count as one; K, M, G: powers
    /// of 1024), or its first N packets with a 'p' suffix (200p); TCP SYN, FIN and RST are
    /// always copied. The packets past it are counted, not copied.
    #[arg(long, value_name = "BYTES|Np")]
    flow_budget: Option<String>,
    /// Flows the budget's table holds (default 65536); when it is full, the least recently
    /// seen flow makes room and starts over if it comes back.
    #[arg(long, value_name = "FLOWS", requires = "flow_budget")]
    flow_table_size: Option<u32>,
    /// Hold the last packets in memory: an age (30s), a size (256MiB) or both (30s,256MiB);
    /// the oldest go first. The agent's [evidence] takes alerting flows' history from it; here
    /// the summary reports what it held and how often it wrapped.
    #[arg(long, value_name = "AGE|SIZE")]
    pretrigger: Option<String>,
    /// Read packets from FILE (pcap or pcapng, plain or .zst) instead of an interface, as
    /// tcpdump -r: print them, or write the ones the filter selects with -w.
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    read: Option<PathBuf>,
    #[command(flatten)]
    print: PrintArgs,
}

/// Printing packets as text, with tcpdump's flags (without -w or another output, packets are
/// printed).
#[derive(Debug, Clone, Default, clap::Args)]
#[expect(clippy::struct_excessive_bools, reason = "tcpdump's switches")]
struct PrintArgs {
    /// Print packets on standard output beside the other outputs (-w FILE, --store, ...).
    #[arg(long)]
    print: bool,
    /// Numeric addresses and ports (accepted for tcpdump's habit: tap never looks names up).
    #[arg(short = 'n', action = clap::ArgAction::Count)]
    numeric: u8,
    /// No timestamp (-t); -tt seconds since the epoch, -ttt time since the previous packet,
    /// -tttt date and time, -ttttt time since the first packet.
    #[arg(short = 't', action = clap::ArgAction::Count)]
    time: u8,
    /// Print the link-layer header.
    #[arg(short = 'e')]
    link_header: bool,
    /// More protocol detail (IP header fields, checksums); -vv more still.
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    verbose: u8,
    /// Absolute TCP sequence numbers.
    #[arg(short = 'S')]
    absolute_seq: bool,
    /// Hex dump of each packet (-xx: with its link-layer header).
    #[arg(short = 'x', action = clap::ArgAction::Count)]
    hex: u8,
    /// Hex and ASCII dump of each packet (-XX: with its link-layer header).
    #[arg(short = 'X', action = clap::ArgAction::Count)]
    hex_ascii: u8,
    /// ASCII dump of each packet (-AA: with its link-layer header).
    #[arg(short = 'A', action = clap::ArgAction::Count)]
    ascii: u8,
    /// Line-buffered output: each packet written at once (always so on a terminal).
    #[arg(short = 'l')]
    line_buffered: bool,
}

impl PrintArgs {
    fn raw(self, quiet: bool) -> RawPrint {
        RawPrint {
            enabled: self.print,
            time: self.time,
            link_header: self.link_header,
            verbose: self.verbose,
            quiet,
            absolute_seq: self.absolute_seq,
            hex: self.hex,
            hex_ascii: self.hex_ascii,
            ascii: self.ascii,
            line_buffered: self.line_buffered,
        }
    }
}

/// tcpdump's habits `tap capture` takes (README: "tcpdump flags tap accepts").
#[derive(Debug, Clone, Default, clap::Args)]
struct HabitArgs {
    /// List the interfaces (index, name, state, the hooks each can take) and exit.
    #[arg(short = 'D', long = "list-interfaces")]
    list_interfaces: bool,
    /// Which packets to record, as tcpdump's -Q: in (arriving: TC ingress, or XDP), out
    /// (leaving: TC egress) or inout (both, the TC default). With --hook xdp only in.
    #[arg(short = 'Q', long = "direction", value_enum, value_name = "DIR")]
    direction: Option<DirectionArg>,
    /// Packet-buffered output, as tcpdump's -U: each packet is written out as soon as it is
    /// read from the ring, not held up to --flush-interval.
    #[arg(short = 'U', long = "packet-buffered")]
    packet_buffered: bool,
    /// Ring buffer size in KiB, as tcpdump's -B; rounded up to a power of two (at least a
    /// page), as the kernel's ring needs, and the size taken is said.
    #[arg(short = 'B', long = "buffer-size", value_name = "KiB",
        value_parser = clap::value_parser!(u64).range(1..=MAX_BUFFER_KIB), conflicts_with = "ring_size")]
    buffer_kib: Option<u64>,
    /// Accepted for tcpdump's habit: tap never puts an interface in promiscuous mode, so every
    /// capture is as tcpdump -p's (XDP and TC see what the interface already receives).
    #[arg(short = 'p', long = "no-promiscuous-mode")]
    no_promiscuous: bool,
}

/// The largest -B: the ring's 2 GiB, in KiB.
const MAX_BUFFER_KIB: u64 = (1 << 31) >> 10;

/// `-Q`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DirectionArg {
    /// Packets arriving at the interface.
    In,
    /// Packets leaving it.
    Out,
    /// Both.
    Inout,
}

impl From<DirectionArg> for DirectionChoice {
    fn from(d: DirectionArg) -> Self {
        match d {
            DirectionArg::In => DirectionChoice::In,
            DirectionArg::Out => DirectionChoice::Out,
            DirectionArg::Inout => DirectionChoice::Inout,
        }
    }
}

/// How `tap capture --help` explains file names, rotation and crash safety.
const STORAGE_HELP: &str = "\
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
enum FormatArg {
    /// Classic pcap, nanosecond timestamps.
    Pcap,
    /// pcapng: interface per interface and hook, direction flags, drop statistics.
    Pcapng,
}

/// What to do when the disk is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DiskFullArg {
    /// Finish the current file and end the capture (exit status 1).
    Stop,
    /// Finish the current file and keep capturing, counting packets as dropped.
    Drop,
}

/// Output options of `tap capture`: format, rotation, durability, privileges.
#[derive(Debug, Clone, clap::Args)]
struct OutputArgs {
    /// Output format (default: from the file name; pcap for standard output).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Compress the output: none, zstd, or zstd:LEVEL (1-19, default 1). Default: zstd for
    /// names ending in .zst.
    #[arg(long, value_name = "ALGO")]
    compress: Option<String>,
    /// Start a new file before one would exceed MB megabytes (1,000,000 bytes).
    #[arg(short = 'C', long = "file-size", value_name = "MB")]
    file_size: Option<f64>,
    /// Start a new file every SECS seconds, aligned to the clock.
    #[arg(short = 'G', long = "rotate-seconds", value_name = "SECS")]
    rotate_seconds: Option<u64>,
    /// Keep at most N files (a ring): the oldest this capture wrote is deleted. Needs -C or -G.
    #[arg(short = 'W', long = "ring-files", value_name = "N")]
    ring_files: Option<u32>,
    /// Run CMD on each finished file (the file's path as its argument), in the background.
    #[arg(long, value_name = "CMD")]
    post_rotate: Option<String>,
    /// Sign each entry of the custody manifest (tap-custody.jsonl) with this ed25519 secret key
    /// (PKCS#8 PEM, mode 0600: `tap key generate`).
    #[arg(long, value_name = "FILE")]
    sign_key: Option<PathBuf>,
    /// Write buffered packets at least this often, in milliseconds (0: after every batch).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    flush_interval: u64,
    /// What to do when the disk is full.
    #[arg(long, value_enum, default_value = "stop")]
    on_disk_full: DiskFullArg,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
    /// After attaching, run as USER (its groups too); files are created as that user.
    #[arg(short = 'Z', long = "relinquish-privileges", value_name = "USER")]
    run_as: Option<String>,
}

/// Live consumers besides the file: streams, a monitor interface, remote collectors, Suricata.
#[derive(Debug, Clone, Default, clap::Args)]
struct ConsumerArgs {
    /// Serve live pcap streams on a Unix socket (mode 0600): `unix:PATH`. Every client that
    /// connects gets its own stream, starting with a pcap header; a slow client loses packets
    /// (counted), never slows the capture or the others.
    #[arg(long, value_name = "unix:PATH")]
    serve: Option<String>,
    /// Write captured frames into a monitor interface for an IDS in af-packet mode: an existing
    /// TAP device, an unaddressed veth end (frames arrive on it), or a new TAP device of that name.
    #[arg(long, value_name = "IFACE")]
    inject: Option<String>,
    /// Send each captured frame to a collector, VXLAN-encapsulated as cloud vTAPs do:
    /// `vxlan://HOST[:PORT]?vni=N[&max_len=BYTES]`. Repeat for several collectors.
    #[arg(long, value_name = "URL")]
    forward: Vec<String>,
    /// Recompute IPv4/TCP/UDP/ICMP checksums of the delivered copies (not of the wire traffic),
    /// for consumers that check them (offload leaves them partial on the sending host).
    #[arg(long)]
    fix_checksums: bool,
    /// Submit each finished file (with -C or -G) to Suricata's unix socket (`suricata
    /// --unix-socket=PATH`); reconnects when Suricata restarts.
    #[arg(long, value_name = "PATH")]
    suricata_socket: Option<PathBuf>,
    /// Directory where Suricata writes the results of submitted files.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/log/suricata",
        requires = "suricata_socket"
    )]
    suricata_output: PathBuf,
}

/// `tap capture` options of the packet store.
#[derive(Debug, Clone, Default, clap::Args)]
struct StoreArgs {
    /// Write a packet store into DIR instead of -w: rotating pcapng files (zstd with
    /// --compress zstd) and a Parquet index of each file's flows, for `tap query`. Default
    /// rotation: -G 60 -C 1000.
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Keep the store under SIZE bytes (K, M, G: powers of 1024), deleting the oldest files
    /// with their index first.
    #[arg(long, value_name = "SIZE", value_parser = parse_binary_size)]
    store_max_bytes: Option<u64>,
    /// Delete files whose last packet is older than DURATION (e.g. 7d, 12h, 90m).
    #[arg(long, value_name = "DURATION")]
    store_max_age: Option<String>,
}

/// `tap query`.
#[derive(Debug, clap::Args)]
#[command(after_help = QUERY_HELP)]
#[expect(clippy::struct_excessive_bools, reason = "command-line switches")]
struct QueryArgs {
    /// The store's directory.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Packets from this time on (inclusive): RFC 3339 (2026-12-03T14:02:00Z) or relative
    /// (-15m, -2h, -1d).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    since: Option<String>,
    /// Packets before this time (exclusive), as --since.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    until: Option<String>,
    /// Output file, or '-' for standard output (the default when it is not a terminal).
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    write: Option<PathBuf>,
    /// Output format (default: pcapng for a name ending in .pcapng, pcap otherwise).
    #[arg(long, value_enum)]
    format: Option<QueryFormatArg>,
    /// Overwrite an existing output file.
    #[arg(long)]
    force: bool,
    /// List the matching flows instead of writing packets: a table on a terminal.
    #[arg(long)]
    flows: bool,
    /// With --flows: one JSON object per flow and line.
    #[arg(long, requires = "flows", conflicts_with = "csv")]
    json: bool,
    /// With --flows: CSV with a header line.
    #[arg(long, requires = "flows")]
    csv: bool,
    /// Print nothing but errors (no summary on standard error).
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Filter expression (pcap-filter syntax, as for capture), as trailing words.
    #[arg(
        value_name = "EXPR",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    expression: Vec<String>,
}

/// Packet formats of `tap query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum QueryFormatArg {
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
enum StoreFlags {
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

/// Where the filter expression comes from: trailing words (like tcpdump), `-f`, or `-F FILE`.
#[derive(Debug, Clone, Default, clap::Args)]
struct FilterArgs {
    /// Filter expression (pcap-filter syntax), instead of trailing words.
    #[arg(short = 'f', long = "filter", value_name = "EXPR", conflicts_with_all = ["filter_file", "expression"])]
    filter: Option<String>,
    /// Read the filter expression from FILE (like tcpdump -F).
    #[arg(
        short = 'F',
        long = "filter-file",
        value_name = "FILE",
        conflicts_with = "expression"
    )]
    filter_file: Option<PathBuf>,
    /// Filter expression as trailing words: `tap capture -i eth0 -w x.pcap tcp and port 443`.
    #[arg(value_name = "EXPR", trailing_var_arg = true)]
    expression: Vec<String>,
}

/// `tap verify DIR`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = VERIFY_HELP)]
struct VerifyArgs {
    /// The directory to check (or its tap-custody.jsonl).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// The public key (PEM, from `tap key generate` or `openssl pkey -pubout`) that must have
    /// signed the manifest's head and every signed entry.
    #[arg(long, value_name = "FILE")]
    public_key: Option<PathBuf>,
}

const VERIFY_HELP: &str = "\
Checks, stopping at the first broken link: every line of DIR/tap-custody.jsonl (whole,
unaltered, numbered in order, chained to the line before, its signature valid), then every file
against its latest entry (size and SHA-256; a file tap removed must be gone), then that every
other file of DIR (names starting with '.' aside) is in the manifest.

Prints one line and exits 0 when all is intact; prints the first broken link (the file or the
manifest line) and exits 1 otherwise, or when DIR cannot be checked.";

/// `tap key`: ed25519 keys for signing manifests.
#[derive(Debug, Clone, clap::Subcommand)]
enum KeyFlags {
    /// Write a new key pair: FILE (the secret key, PKCS#8 PEM, mode 0600) and FILE.pub (the
    /// public key, `SubjectPublicKeyInfo` PEM). Existing files are never replaced. OpenSSL makes
    /// and reads the same files (`openssl genpkey -algorithm ed25519`).
    Generate {
        #[arg(value_name = "FILE")]
        secret: PathBuf,
        /// Where the public key goes (default: FILE.pub).
        #[arg(long, value_name = "FILE")]
        public: Option<PathBuf>,
    },
    /// Sign DIR's manifest head now: appends a `seal` entry signed with the key, so `tap verify
    /// --public-key` can show nobody changed the directory since.
    Sign {
        /// The secret key (PEM, mode 0600).
        #[arg(long, value_name = "FILE")]
        sign_key: PathBuf,
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// `tap alerts`.
#[derive(Debug, Clone, clap::Args)]
struct AlertsArgs {
    /// Follow this eve.json (through rotation and truncation).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "eve_socket",
        required_unless_present = "eve_socket"
    )]
    eve: Option<PathBuf>,
    /// Listen on this unix socket for Suricata's `filetype: unix_stream` eve-log output.
    #[arg(long, value_name = "PATH")]
    eve_socket: Option<PathBuf>,
    /// Read the file from its start (default: only alerts written from now on).
    #[arg(long)]
    from_start: bool,
    /// Read the file to its end once, close every case, print, and exit.
    #[arg(long, requires = "eve")]
    once: bool,
    /// Signature ids (and ranges) to select, e.g. 2100498,2200000-2299999.
    #[arg(long, value_name = "LIST")]
    sid: Option<String>,
    /// Select alerts of this severity or more severe (1 is the most severe).
    #[arg(long, value_name = "N")]
    severity: Option<u8>,
    /// Signature ids never to select.
    #[arg(long, value_name = "LIST")]
    exclude_sid: Option<String>,
    /// Seconds of history before the first alert.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    before: f64,
    /// Seconds after each alert.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    after: f64,
    /// Longest window, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600.0)]
    max_window: f64,
    /// Seconds after a window's end before its request is made.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    settle: f64,
    /// Evidence files per second, on average.
    #[arg(long, value_name = "N", default_value_t = 10.0)]
    rate: f64,
    /// Evidence files at once.
    #[arg(long, value_name = "N", default_value_t = 100)]
    burst: u32,
    /// Flows with an open window, at most.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_open: usize,
    /// Alerts listed per file, at most.
    #[arg(long, value_name = "N", default_value_t = 32)]
    max_alerts: usize,
    /// Longest EVE line, bytes.
    #[arg(long, value_name = "BYTES", default_value_t = crate::evidence::DEFAULT_MAX_LINE)]
    max_line: usize,
    /// Suricata connections served at once (socket only).
    #[arg(long, value_name = "N", default_value_t = 4)]
    max_connections: usize,
}

/// Arguments of `tap bench-writer`.
#[cfg(feature = "bench-writer")]
#[derive(Debug, Clone, clap::Args)]
struct BenchWriterArgs {
    /// Directory to write the file into (it is deleted afterwards unless --keep).
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    /// Packet bytes to write: a number with an optional k, M or G (powers of 1000).
    #[arg(long, value_name = "N", default_value = "1G", value_parser = parse_size)]
    bytes: u64,
    /// File format.
    #[arg(long, value_enum, default_value = "pcap")]
    format: FormatArg,
    /// Compress with zstd at this level (1-19).
    #[arg(long, value_name = "LEVEL")]
    zstd: Option<i32>,
    /// Captured bytes per packet.
    #[arg(long, value_name = "BYTES", default_value_t = 1500)]
    packet_size: u32,
    /// Keep the file.
    #[arg(long)]
    keep: bool,
    /// Write a packet store (pcapng files and their flow index) into a fresh directory under
    /// --to instead of one file: the store's cost over plain pcapng.
    #[arg(long)]
    store: bool,
    /// Distinct flows the packets cycle through (source ports and addresses), 1: all one flow.
    /// More flows than one batch holds take that many distinct batches in memory (1M flows of
    /// 1500 bytes: 1.5 GB).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=crate::bench_writer::MAX_FLOWS))]
    flows: u32,
    /// Also hold every batch in a pre-trigger memory (an age, a size or both, as a tap's
    /// `pretrigger`), copied as a batch from the ring is: its cost over the writer alone.
    #[arg(long, value_name = "AGE|SIZE", value_parser = parse_pretrigger)]
    pretrigger: Option<crate::model::PretriggerLimits>,
}

#[cfg(feature = "bench-writer")]
fn parse_pretrigger(s: &str) -> Result<crate::model::PretriggerLimits, String> {
    match super::rules::pretrigger(Some(s)) {
        Ok(Some(l)) => Ok(l),
        Ok(None) => Err("no limit".into()),
        Err(e) => Err(worded(&e).message),
    }
}

#[cfg(feature = "bench-writer")]
fn parse_size(s: &str) -> Result<u64, String> {
    scaled_size(s, 1000)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("not a size: {s}"))
}

// ---- What the command line asks for, in the library's own types ----------------------------

/// A parsed command line.
#[derive(Debug)]
pub struct Invocation {
    /// Log level for tap's own messages (an `EnvFilter` directive).
    pub log: String,
    /// One JSON object per log line, instead of human-readable lines.
    pub json_logs: bool,
    pub command: Request,
}

/// What to do.
#[derive(Debug)]
pub enum Request {
    /// `tap capture`: the raw settings, validated by [`super::rules::capture`].
    Capture {
        capture: Box<RawCapture>,
        /// `--stats-json FILE`.
        stats_json: Option<PathBuf>,
        /// `-r FILE`: packets from a capture file instead of interfaces.
        read: Option<PathBuf>,
        /// What the command line took otherwise than written (a rounded -B), for standard error.
        notes: Vec<String>,
    },
    /// `tap capture -D`: list the interfaces and the hooks each can take.
    ListInterfaces,
    Replay(ReplayRequest),
    BenchProg(BenchProgRequest),
    /// `tap bench-print`: packets formatted per measurement.
    BenchPrint {
        packets: usize,
    },
    #[cfg(feature = "bench-writer")]
    BenchWriter(crate::bench_writer::BenchWriterSpec),
    Agent {
        config: PathBuf,
        /// Check the file and exit.
        check: bool,
    },
    Ctl {
        socket: PathBuf,
        command: CtlRequest,
    },
    /// Shell completions or man pages, made from these very definitions.
    Generate(Generate),
    Verify {
        dir: PathBuf,
        public_key: Option<PathBuf>,
    },
    Key(crate::custody::cli::KeyCommand),
    Alerts(Box<crate::evidence::cli::AlertsOptions>),
    /// `tap query`: its times and expression are checked by
    /// [`crate::store::query::Selection::parse`].
    Query(Box<crate::store::cli::QueryRequest>),
    Store(crate::store::cli::StoreCommand),
    /// `tap session ...`: its session JSON is validated by the capture's rules
    /// ([`super::session::fleet_capture`]).
    Session(Box<super::session_flags::SessionArgs>),
}

/// `tap replay`.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    pub read: PathBuf,
    pub write: Option<PathBuf>,
    pub force: bool,
    pub hook: HookChoice,
    pub quiet: bool,
    pub decap: Option<String>,
    pub filter: RawFilter,
}

/// `tap bench-prog`.
#[derive(Debug, Clone)]
pub struct BenchProgRequest {
    pub hook: HookChoice,
    /// Bytes, no FCS.
    pub frame_len: usize,
    pub repeat: u64,
    pub dsts: Vec<std::net::Ipv4Addr>,
    pub filter: RawFilter,
    /// Count per interface and hook too.
    pub per_interface: bool,
    /// Time with a per-flow budget and this many flows in its table.
    pub flows: Option<u32>,
}

/// `tap ctl`'s question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtlRequest {
    Status { json: bool },
    Reload,
}

/// `tap generate`.
#[derive(Debug)]
pub struct Generate(GenerateCommand);

/// Errors of `tap generate`.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("creating {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("rendering a man page: {0}")]
    Render(#[source] std::io::Error),
    #[error(transparent)]
    Create(#[from] crate::support::safe_create::CreateError),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Generate {
    /// Prints the completion script, or writes the man pages.
    ///
    /// # Errors
    /// A man page directory or file that cannot be made or written.
    pub fn run(&self) -> Result<(), GenerateError> {
        let mut command = <Cli as clap::CommandFactory>::command();
        match &self.0 {
            GenerateCommand::Completions { shell } => {
                clap_complete::generate(*shell, &mut command, "tap", &mut std::io::stdout());
            }
            GenerateCommand::Man { dir, force } => {
                std::fs::create_dir_all(dir).map_err(|source| GenerateError::Dir {
                    path: dir.clone(),
                    source,
                })?;
                let mut command = command.disable_help_subcommand(true);
                command.build();
                write_man_pages(command, dir, *force)?;
            }
        }
        Ok(())
    }
}

/// `tap.1` and a page per visible subcommand, as clap_mangen names them, each written through
/// the one safe-create path.
fn write_man_pages(
    cmd: clap::Command,
    dir: &std::path::Path,
    force: bool,
) -> Result<(), GenerateError> {
    use std::io::Write as _;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
        write_man_pages(sub, dir, force)?;
    }
    let man = clap_mangen::Man::new(cmd);
    let path = dir.join(man.get_filename());
    let mut text = Vec::new();
    man.render(&mut text).map_err(GenerateError::Render)?;
    crate::support::safe_create::create(&path, force)?
        .write_all(&text)
        .map_err(|source| GenerateError::Write { path, source })
}

/// Reads the process's command line; a usage error or `--help` ends the process as clap does.
#[must_use]
pub fn from_env() -> Invocation {
    translate(Cli::parse())
}

/// Reads `args` (the program name first).
///
/// # Errors
/// The words clap refuses, as clap words them.
pub fn try_from_args<I, T>(args: I) -> Result<Invocation, String>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::try_parse_from(args)
        .map(translate)
        .map_err(|e| e.to_string())
}

/// The flag that sets `key`, as the reasons of [`SettingError`] name it.
#[must_use]
pub fn flag(key: Key) -> &'static str {
    key.flag()
}

/// A rule's refusal as the command line says it: the reason, settings named by their flags.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FlagError {
    pub key: Key,
    pub message: String,
}

/// Words `e` for the command line.
#[must_use]
pub fn worded(e: &SettingError) -> FlagError {
    FlagError {
        key: e.key,
        message: e.reason.render(&|k| flag(k).to_string()),
    }
}

impl From<HookArg> for HookChoice {
    fn from(h: HookArg) -> Self {
        match h {
            HookArg::Xdp => HookChoice::Xdp,
            HookArg::Tc => HookChoice::Tc,
            HookArg::TcIngress => HookChoice::TcIngress,
            HookArg::TcEgress => HookChoice::TcEgress,
        }
    }
}

impl From<XdpModeArg> for XdpMode {
    fn from(m: XdpModeArg) -> Self {
        match m {
            XdpModeArg::Auto => XdpMode::Auto,
            XdpModeArg::Native => XdpMode::Native,
            XdpModeArg::Generic => XdpMode::Generic,
        }
    }
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Pcap => Format::Pcap,
            FormatArg::Pcapng => Format::Pcapng,
        }
    }
}

impl From<DiskFullArg> for DiskFull {
    fn from(d: DiskFullArg) -> Self {
        match d {
            DiskFullArg::Stop => DiskFull::Stop,
            DiskFullArg::Drop => DiskFull::Drop,
        }
    }
}

impl From<FilterArgs> for RawFilter {
    fn from(f: FilterArgs) -> Self {
        Self {
            expression: f.filter,
            file: f.filter_file,
            words: f.expression,
        }
    }
}

/// Says how a -B was rounded.
fn habit_notes(habits: &HabitArgs) -> Vec<String> {
    habits
        .buffer_kib
        .and_then(|kib| {
            let bytes = super::rules::ring_from_kib(kib);
            (bytes != kib << 10).then(|| {
                format!(
                    "-B {kib}: the ring is {} KiB (a power of two of at least a page, as the kernel's ring needs)",
                    bytes >> 10
                )
            })
        })
        .into_iter()
        .collect()
}

fn raw_capture(args: CaptureArgs) -> RawCapture {
    let CaptureArgs {
        interfaces,
        hook,
        xdp_mode,
        snaplen,
        count,
        duration,
        ring_size,
        write,
        consumers,
        store,
        output,
        quiet,
        stats_json: _,
        xdp_program,
        filter,
        habits,
        sample,
        max_rate,
        decap,
        consume,
        program_stats,
        flow_budget,
        flow_table_size,
        pretrigger,
        read: _,
        print,
    } = args;
    let o = *output;
    let ring_size = habits
        .buffer_kib
        .map_or(ring_size, |kib| Some(super::rules::ring_from_kib(kib)));
    RawCapture {
        interfaces,
        hook: Some(hook.into()),
        direction: habits.direction.map(Into::into),
        xdp_mode: xdp_mode.map(Into::into),
        filter: filter.into(),
        snaplen,
        count,
        duration,
        ring_size,
        output: RawOutput {
            path: write,
            format: o.format.map(Into::into),
            compress: o.compress,
            file_size_mb: o.file_size,
            rotate_seconds: o.rotate_seconds,
            ring_files: o.ring_files,
            post_rotate: o.post_rotate,
            sign_key: o.sign_key,
            // -U: nothing waits in the writer's buffer.
            flush_interval_ms: Some(if habits.packet_buffered {
                0
            } else {
                o.flush_interval
            }),
            on_disk_full: Some(o.on_disk_full.into()),
            force: o.force,
            run_as: o.run_as,
        },
        store: RawStore {
            dir: store.store,
            max_bytes: store.store_max_bytes.map(super::raw::RawSize::Bytes),
            max_age: store.store_max_age,
        },
        serve: consumers.serve.map(RawServe::Address),
        inject: consumers.inject,
        forward: consumers.forward,
        fix_checksums: consumers.fix_checksums,
        suricata_socket: consumers.suricata_socket,
        suricata_output: Some(consumers.suricata_output),
        quiet,
        xdp_program,
        sample,
        max_rate,
        decap,
        consume,
        program_stats,
        flow_budget,
        flow_table_size,
        pretrigger,
        print: print.raw(quiet),
    }
}

fn translate(cli: Cli) -> Invocation {
    let command = match cli.command {
        Command::Capture(args) if args.habits.list_interfaces => Request::ListInterfaces,
        Command::Capture(args) => {
            let stats_json = args.stats_json.clone();
            let read = args.read.clone();
            let notes = habit_notes(&args.habits);
            Request::Capture {
                capture: Box::new(raw_capture(*args)),
                stats_json,
                read,
                notes,
            }
        }
        Command::Replay(a) => Request::Replay(ReplayRequest {
            read: a.read,
            write: a.write,
            force: a.force,
            hook: a.hook.into(),
            quiet: a.quiet,
            decap: a.decap,
            filter: a.filter.into(),
        }),
        Command::BenchPrint(a) => Request::BenchPrint { packets: a.packets },
        Command::BenchProg(a) => Request::BenchProg(BenchProgRequest {
            hook: a.hook.into(),
            frame_len: a.frame_len,
            repeat: a.repeat,
            dsts: a.dsts,
            filter: RawFilter {
                expression: a.filter,
                file: a.filter_file,
                words: Vec::new(),
            },
            per_interface: a.per_interface,
            flows: a.flows,
        }),
        #[cfg(feature = "bench-writer")]
        Command::BenchWriter(a) => Request::BenchWriter(crate::bench_writer::BenchWriterSpec {
            to: a.to,
            bytes: a.bytes,
            format: a.format.into(),
            zstd: a.zstd,
            packet_size: a.packet_size,
            keep: a.keep,
            store: a.store,
            flows: a.flows,
            pretrigger: a.pretrigger,
        }),
        Command::Agent(a) => Request::Agent {
            config: a.config,
            check: a.check,
        },
        Command::Ctl(a) => Request::Ctl {
            socket: a.socket,
            command: match a.command {
                CtlCommand::Status { json } => CtlRequest::Status { json },
                CtlCommand::Reload => CtlRequest::Reload,
            },
        },
        Command::Generate(g) => Request::Generate(Generate(g)),
        Command::Verify(a) => Request::Verify {
            dir: a.dir,
            public_key: a.public_key,
        },
        Command::Key(k) => Request::Key(match k {
            KeyFlags::Generate { secret, public } => {
                crate::custody::cli::KeyCommand::Generate { secret, public }
            }
            KeyFlags::Sign { sign_key, dir } => {
                crate::custody::cli::KeyCommand::Sign { sign_key, dir }
            }
        }),
        Command::Alerts(a) => {
            let AlertsArgs {
                eve,
                eve_socket,
                from_start,
                once,
                sid,
                severity,
                exclude_sid,
                before,
                after,
                max_window,
                settle,
                rate,
                burst,
                max_open,
                max_alerts,
                max_line,
                max_connections,
            } = *a;
            Request::Alerts(Box::new(crate::evidence::cli::AlertsOptions {
                eve,
                eve_socket,
                from_start,
                once,
                sid,
                severity,
                exclude_sid,
                before,
                after,
                max_window,
                settle,
                rate,
                burst,
                max_open,
                max_alerts,
                max_line,
                max_connections,
            }))
        }
        Command::Session(a) => Request::Session(a),
        Command::Query(a) => {
            let QueryArgs {
                dir,
                since,
                until,
                write,
                format,
                force,
                flows,
                json,
                csv,
                quiet,
                expression,
            } = *a;
            Request::Query(Box::new(crate::store::cli::QueryRequest {
                dir,
                since,
                until,
                write,
                format: format.map(|f| match f {
                    QueryFormatArg::Pcap => crate::store::query::Format::Pcap,
                    QueryFormatArg::Pcapng => crate::store::query::Format::Pcapng,
                }),
                force,
                flows,
                json,
                csv,
                quiet,
                expression,
            }))
        }
        Command::Store(s) => {
            use crate::store::cli::StoreCommand;
            Request::Store(match s {
                StoreFlags::Reindex { dir } => StoreCommand::Reindex { dir },
                StoreFlags::Stats { dir } => StoreCommand::Stats { dir },
                StoreFlags::BenchFill {
                    dir,
                    bytes,
                    packet_size,
                    flows,
                    needle,
                    zstd,
                } => StoreCommand::BenchFill {
                    dir,
                    bytes,
                    packet_size,
                    flows,
                    needle,
                    zstd,
                },
                StoreFlags::BenchFlows {
                    dir,
                    seconds,
                    expression,
                } => StoreCommand::BenchFlows {
                    dir,
                    seconds,
                    expression,
                },
            })
        }
    };
    Invocation {
        log: cli.log,
        json_logs: cli.log_format == LogFormatArg::Json,
        command,
    }
}

pub use super::rules::scaled_size;

/// Parses a size in bytes with an optional K, M or G suffix (powers of 1024).
fn parse_binary_size(s: &str) -> Result<u64, String> {
    super::rules::binary_size(s)
}

#[cfg(test)]
mod size_tests {
    use super::parse_binary_size;
    #[cfg(feature = "bench-writer")]
    use super::parse_size;

    #[cfg(feature = "bench-writer")]
    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("2G"), Ok(2_000_000_000));
        assert_eq!(parse_size("1.5M"), Ok(1_500_000));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("x").is_err());
    }

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

    #[test]
    fn bench_prog_command_line() {
        let cli = Cli::try_parse_from([
            "tap",
            "bench-prog",
            "--hook",
            "tc",
            "--frame-len",
            "1500",
            "--repeat",
            "10",
        ])
        .unwrap();
        let Command::BenchProg(args) = cli.command else {
            panic!("bench-prog")
        };
        assert_eq!(
            (args.hook, args.frame_len, args.repeat),
            (HookArg::Tc, 1500, 10)
        );
        let cli = Cli::try_parse_from(["tap", "bench-prog"]).unwrap();
        let Command::BenchProg(args) = cli.command else {
            panic!("bench-prog")
        };
        assert_eq!(
            (args.hook, args.frame_len, args.repeat),
            (HookArg::Xdp, 64, 1_000_000)
        );
        assert!(args.dsts.is_empty() && args.filter.is_none() && args.filter_file.is_none());
        let cli = Cli::try_parse_from([
            "tap",
            "bench-prog",
            "--filter-file",
            "rules.txt",
            "--dst",
            "10.0.0.1",
            "--dst",
            "192.0.2.2",
        ])
        .unwrap();
        let Command::BenchProg(args) = cli.command else {
            panic!("bench-prog")
        };
        assert_eq!(
            args.dsts,
            [[10, 0, 0, 1], [192, 0, 2, 2]].map(std::net::Ipv4Addr::from)
        );
        assert_eq!(
            args.filter_file.as_deref(),
            Some(std::path::Path::new("rules.txt"))
        );
        assert!(
            Cli::try_parse_from(["tap", "bench-prog", "--filter", "udp", "--filter-file", "x"])
                .is_err()
        );
    }
}
