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
        let Command::Capture(args) = cli.command;
        assert_eq!(args.interfaces, ["eth0", "eth1"]);
        assert_eq!(args.snaplen, Some(96));
        assert_eq!(args.count, Some(10));
        assert_eq!(args.write, PathBuf::from("-"));
        assert_eq!(args.hook, HookArg::Tc);
    }

    #[test]
    fn hooks_and_modes() {
        let cli = parse(&["capture", "--hook", "xdp", "--xdp-mode", "generic", "-w", "x"]).unwrap();
        let Command::Capture(args) = cli.command;
        assert_eq!(args.hook, HookArg::Xdp);
        assert_eq!(args.xdp_mode, Some(XdpModeArg::Generic));
        assert!(parse(&["capture", "--hook", "bogus", "-w", "x"]).is_err());
    }

    #[test]
    fn write_is_required() {
        assert!(parse(&["capture", "-i", "eth0"]).is_err());
    }
}
