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
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Capture packets on one or more interfaces and write them as pcap.
    Capture(CaptureArgs),
    /// Run the kernel program over the packets of a pcap file (BPF_PROG_TEST_RUN) and write
    /// the ones the filter selects: test a filter on a saved capture.
    Replay(ReplayArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Input capture (pcap or pcapng).
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    pub read: PathBuf,
    /// Output pcap file for the selected packets, or '-' for standard output.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<PathBuf>,
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
    /// Size of the kernel ring buffer in bytes (a power of two).
    #[arg(long, value_name = "BYTES")]
    pub ring_size: Option<u64>,
    /// Output pcap file, or '-' for standard output.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: PathBuf,
    /// Print nothing but errors (no summary).
    #[arg(short = 'q', long)]
    pub quiet: bool,
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
}

/// Where the filter expression comes from: trailing words (like tcpdump), `-f`, or `-F FILE`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    /// Filter expression (pcap-filter syntax), instead of trailing words.
    #[arg(short = 'f', long = "filter", value_name = "EXPR", conflicts_with_all = ["filter_file", "expression"])]
    pub filter: Option<String>,
    /// Read the filter expression from FILE (like tcpdump -F).
    #[arg(short = 'F', long = "filter-file", value_name = "FILE", conflicts_with = "expression")]
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
        let cli = parse(&["capture", "-i", "eth0", "-i", "eth1", "-s", "96", "-c", "10", "-w", "-"])
            .unwrap();
        let Command::Capture(args) = cli.command else { panic!("capture") };
        assert_eq!(args.interfaces, ["eth0", "eth1"]);
        assert_eq!(args.snaplen, Some(96));
        assert_eq!(args.count, Some(10));
        assert_eq!(args.write, PathBuf::from("-"));
        assert_eq!(args.hook, HookArg::Tc);
    }

    #[test]
    fn hooks_and_modes() {
        let cli = parse(&["capture", "--hook", "xdp", "--xdp-mode", "generic", "-w", "x"]).unwrap();
        let Command::Capture(args) = cli.command else { panic!("capture") };
        assert_eq!(args.hook, HookArg::Xdp);
        assert_eq!(args.xdp_mode, Some(XdpModeArg::Generic));
        assert!(parse(&["capture", "--hook", "bogus", "-w", "x"]).is_err());
    }

    #[test]
    fn filter_from_trailing_words_or_flags() {
        let cli = parse(&["capture", "-i", "lo", "-w", "x", "tcp", "and", "port", "443"]).unwrap();
        let Command::Capture(args) = cli.command else { panic!("capture") };
        assert_eq!(args.filter.expression, ["tcp", "and", "port", "443"]);
        let cli = parse(&["capture", "-w", "x", "-f", "udp"]).unwrap();
        let Command::Capture(args) = cli.command else { panic!("capture") };
        assert_eq!(args.filter.filter.as_deref(), Some("udp"));
        assert!(parse(&["capture", "-w", "x", "-f", "udp", "tcp"]).is_err());
        let cli = parse(&["replay", "-r", "in.pcap", "-w", "out.pcap", "icmp"]).unwrap();
        let Command::Replay(args) = cli.command else { panic!("replay") };
        assert_eq!(args.filter.expression, ["icmp"]);
    }

    #[test]
    fn write_is_required() {
        assert!(parse(&["capture", "-i", "eth0"]).is_err());
    }
}
