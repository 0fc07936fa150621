//! Validated configuration: what [`crate::capture::run`] needs, checked before anything is
//! loaded or attached.

use std::{path::PathBuf, time::Duration};

use tap_common::config::{DEFAULT_RING_SIZE, DEFAULT_SNAPLEN, MAX_FRAME};

use crate::{
    cli::{CaptureArgs, FilterArgs, HookArg, XdpModeArg},
    error::ConfigError,
    filter::maps::FilterImage,
    iface,
};

/// CPUs the programs may run on.
fn ncpus() -> u32 {
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
    Stdout,
    File(PathBuf),
}

/// A validated capture.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    pub interfaces: Vec<Interface>,
    pub hooks: Vec<Hook>,
    pub xdp_mode: XdpMode,
    /// Bytes kept of each packet, 1..=MAX_FRAME.
    pub snaplen: u32,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    /// Ring buffer size in bytes (power of two, at least a page).
    pub ring_size: u32,
    pub output: Output,
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
        Self { bits: 0, vxlan_port: tap_common::config::VXLAN_PORT }
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
            let bad = || ConfigError::Decap { item: item.to_string() };
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
        let raw = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::FilterFile { path: path.clone(), source })?;
        // tcpdump -F: '#' starts a comment to the end of the line.
        raw.lines().map(|l| l.split('#').next().unwrap_or("")).collect::<Vec<_>>().join(" ")
    } else {
        args.expression.join(" ")
    };
    crate::filter::image(text.trim()).map_err(ConfigError::Filter)
}

fn page_size() -> u64 {
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
            let ifindex = iface::ifindex(&name)
                .ok_or_else(|| ConfigError::UnknownInterface { iface: name.clone() })?;
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
        let snaplen = match args.snaplen {
            // tcpdump's -s 0 means "everything".
            None | Some(0) => DEFAULT_SNAPLEN,
            Some(s) if s > MAX_FRAME => MAX_FRAME,
            Some(s) => s,
        };
        let min_ring = page_size();
        let ring_size = args.ring_size.unwrap_or(u64::from(DEFAULT_RING_SIZE));
        if !ring_size.is_power_of_two() || ring_size < min_ring || ring_size > 1 << 31 {
            return Err(ConfigError::RingSize { size: ring_size, min: min_ring });
        }
        let output = if args.write.as_os_str() == "-" {
            Output::Stdout
        } else {
            Output::File(args.write.clone())
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
            quiet: args.quiet,
            xdp_program: args.xdp_program.clone(),
            filter: filter_from_args(&args.filter)?,
            filter_file: args.filter.filter_file.clone(),
            decap: match &args.decap {
                Some(d) => d.parse()?,
                None => Decap::default(),
            },
            consume: args.consume,
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
        let Command::Capture(args) = cli.command else { panic!("capture") };
        CaptureConfig::from_args(&args)
    }

    #[test]
    fn loopback_resolves_with_defaults() {
        let c = config(&["-i", "lo", "-w", "-"]).unwrap();
        assert_eq!(c.interfaces, [Interface { name: "lo".into(), ifindex: 1 }]);
        assert_eq!(c.hooks, [Hook::TcIngress, Hook::TcEgress]);
        assert_eq!(c.snaplen, DEFAULT_SNAPLEN);
        assert_eq!(c.output, Output::Stdout);
    }

    #[test]
    fn snaplen_zero_means_whole_packet_and_large_is_clamped() {
        assert_eq!(config(&["-i", "lo", "-s", "0", "-w", "x"]).unwrap().snaplen, DEFAULT_SNAPLEN);
        assert_eq!(config(&["-i", "lo", "-s", "65535", "-w", "x"]).unwrap().snaplen, MAX_FRAME);
        assert_eq!(config(&["-i", "lo", "-s", "96", "-w", "x"]).unwrap().snaplen, 96);
    }

    #[test]
    fn decap_lists() {
        use tap_common::config::decap;
        let d: Decap = "vxlan:8472,geneve,gre,erspan".parse().unwrap();
        assert_eq!(d.bits, decap::VXLAN | decap::GENEVE | decap::GRE | decap::ERSPAN);
        assert_eq!(d.vxlan_port, 8472);
        assert_eq!("vxlan".parse::<Decap>().unwrap().vxlan_port, 4789);
        assert!("vxlan:0".parse::<Decap>().is_err());
        assert!("ipip".parse::<Decap>().is_err());
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
