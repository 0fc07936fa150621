//! The rule book: one function per setting, each written once, for every front door. A rule
//! takes a raw value and returns the validated one or a [`SettingError`] naming its key.

use std::{
    net::{SocketAddr, ToSocketAddrs as _},
    path::{Path, PathBuf},
    time::Duration,
};

use tap_common::config::{DEFAULT_RING_SIZE, DEFAULT_SNAPLEN, MAX_SNAPLEN};

use super::{
    error::{Key, Reason, SettingError},
    raw::{
        Purpose, RawCapture, RawEvidence, RawFilter, RawOutput, RawPrint, RawServe, RawSize,
        RawStore,
    },
};
use crate::{
    filter::maps::FilterImage,
    kernel::iface,
    model::{
        CaptureConfig, Compression, Consumers, Decap, DirectionChoice, FlowBudget, FlowUnit, Hook,
        HookChoice, Interface, Output, OutputConfig, PretriggerLimits, PrintConfig, QueryListen,
        Rotation, SignKey, StoreConfig, VxlanTarget, XdpMode, ZSTD_DEFAULT_LEVEL, is_loopback,
    },
    sink::{rotate::NamePattern, vxlan},
    store,
    support::{
        bounded_read,
        excerpt::{excerpt, one_line},
        privilege::RunAs,
    },
};

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// Where Suricata writes the results of submitted files when no one says.
pub const DEFAULT_SURICATA_OUTPUT: &str = "/var/log/suricata";

/// Longest tap name, in bytes.
pub const TAP_NAME_MAX: usize = 64;

type Rule<T> = Result<T, SettingError>;

fn refuse<T>(key: Key, reason: Reason) -> Rule<T> {
    Err(SettingError::new(key, reason))
}

/// CPUs the programs may run on.
pub(crate) fn ncpus() -> u32 {
    aya::util::nr_cpus().map_or(1, |n| u32::try_from(n.max(1)).unwrap_or(u32::MAX))
}

pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|s| *s > 0).unwrap_or(4096)
}

/// The whole capture: every rule, in one order for every front door.
///
/// # Errors
/// The first setting a rule refuses.
pub fn capture(raw: &RawCapture, purpose: Purpose) -> Rule<CaptureConfig> {
    let (interfaces, follow) = match purpose {
        // Globs and `any` are followed as the agent follows them, from an empty start.
        Purpose::Command if follows(&raw.interfaces) => {
            patterns(&raw.interfaces)?;
            (Vec::new(), raw.interfaces.clone())
        }
        Purpose::Command => (interfaces(&raw.interfaces)?, Vec::new()),
        Purpose::Service => {
            patterns(&raw.interfaces)?;
            (Vec::new(), Vec::new())
        }
    };
    let hook = direction(raw.hook, raw.direction)?;
    let (hooks, xdp_mode) = hooks(Some(hook), raw.xdp_mode)?;
    let filter = filter(&raw.filter)?;
    let snaplen = snaplen(raw.snaplen)?;
    let ring_size = ring_size(raw.ring_size)?;
    let sample = sample(raw.sample)?;
    let rate_per_cpu = max_rate(raw.max_rate);
    let flow_budget = flow_budget(raw.flow_budget.as_deref(), raw.flow_table_size)?;
    let decap = decap(raw.decap.as_deref())?;
    let output = match store(&raw.store)? {
        Some(_) if raw.output.path.is_some() => {
            return refuse(
                Key::Store,
                Reason::new()
                    .text("give ")
                    .key(Key::Write)
                    .text(" or ")
                    .key(Key::Store)
                    .text(", not both"),
            );
        }
        Some(store) => store_output(store, &raw.output, purpose)?,
        None => output(&raw.output, purpose)?,
    };
    let consumers = consumers(raw, purpose)?;
    let print = print(&raw.print, &output, &consumers, purpose)?;
    if print.is_none() {
        sinks(&output, &consumers)?;
    }
    if consumers.suricata_socket.is_some() && !output.rotation.active() {
        return refuse(
            Key::SuricataSocket,
            Reason::new()
                .key(Key::SuricataSocket)
                .text(" submits finished files: it needs ")
                .key(Key::FileSize)
                .text(" or ")
                .key(Key::RotateSeconds),
        );
    }
    let run_as = raw.output.run_as.as_deref().map(run_as).transpose()?;
    Ok(CaptureConfig {
        interfaces,
        follow,
        hooks,
        xdp_mode,
        snaplen,
        count: raw.count,
        duration: raw.duration.map(Duration::from_secs_f64),
        ring_size,
        output,
        consumers,
        run_as,
        quiet: raw.quiet || purpose == Purpose::Service,
        xdp_program: raw.xdp_program.clone(),
        filter,
        sample,
        rate_per_cpu,
        decap,
        consume: raw.consume,
        program_stats: raw.program_stats,
        flow_budget,
        print,
    })
}

/// Packets printed as text: asked with `--print`, or implied for `tap capture` when there is
/// no other output (as tcpdump prints without `-w`). A service never prints.
///
/// # Errors
/// Printing for a service, printing beside `-w -` (both would write standard output), or more
/// than five `-t`.
pub fn print(
    raw: &RawPrint,
    output: &OutputConfig,
    consumers: &Consumers,
    purpose: Purpose,
) -> Rule<Option<PrintConfig>> {
    use crate::print::{Dump, DumpStyle, PrintOptions, TimeStyle};
    if purpose == Purpose::Service {
        if raw.enabled {
            return refuse(
                Key::Print,
                Reason::new().text("packets are printed only by tap capture"),
            );
        }
        return Ok(None);
    }
    let implied = output.target == Output::None && output.store.is_none() && !consumers.any();
    if !raw.enabled && !implied {
        return Ok(None);
    }
    if output.target == Output::Stdout {
        return refuse(
            Key::Print,
            Reason::new()
                .key(Key::Print)
                .text(" and ")
                .key(Key::Write)
                .text(" - would both write standard output: give ")
                .key(Key::Write)
                .text(" a file name"),
        );
    }
    let time = match raw.time {
        0 => TimeStyle::Clock,
        1 => TimeStyle::None,
        2 => TimeStyle::Epoch,
        3 => TimeStyle::Delta,
        4 => TimeStyle::Date,
        5 => TimeStyle::SinceFirst,
        _ => {
            return refuse(
                Key::Print,
                Reason::new().text("only -t, -tt, -ttt, -tttt and -ttttt are supported"),
            );
        }
    };
    // tcpdump's order: -X before -x before -A.
    let dump = [
        (raw.hex_ascii, DumpStyle::HexAscii),
        (raw.hex, DumpStyle::Hex),
        (raw.ascii, DumpStyle::Ascii),
    ]
    .into_iter()
    .find(|(n, _)| *n > 0)
    .map(|(n, style)| Dump {
        style,
        link_layer: n > 1,
    });
    Ok(Some(PrintConfig {
        options: PrintOptions {
            time,
            link_header: raw.link_header,
            verbose: raw.verbose,
            quiet: raw.quiet,
            absolute_seq: raw.absolute_seq,
            dump,
            ..PrintOptions::default()
        },
        line_buffered: raw.line_buffered,
    }))
}

/// `tap capture -r FILE`: the output of a capture read from a file. The settings of a live
/// capture mean nothing there and are refused rather than ignored, rotation included (`-r`
/// writes one file).
///
/// # Errors
/// A live capture's setting, or a bad output.
pub fn read(raw: &RawCapture) -> Rule<OutputConfig> {
    let o = &raw.output;
    let live = [
        (!raw.interfaces.is_empty(), Key::Interfaces),
        (raw.ring_size.is_some(), Key::RingSize),
        (raw.store.dir.is_some(), Key::Store),
        (raw.serve.is_some(), Key::Serve),
        (raw.inject.is_some(), Key::Inject),
        (!raw.forward.is_empty(), Key::Forward),
        (raw.suricata_socket.is_some(), Key::SuricataSocket),
        (raw.sample.is_some(), Key::Sample),
        (raw.max_rate.is_some(), Key::MaxRate),
        (raw.flow_budget.is_some(), Key::FlowBudget),
        (o.file_size_mb.is_some(), Key::FileSize),
        (o.rotate_seconds.is_some(), Key::RotateSeconds),
        (o.ring_files.is_some(), Key::RingFiles),
        (o.post_rotate.is_some(), Key::PostRotate),
        (o.run_as.is_some(), Key::RunAs),
    ];
    if let Some((_, key)) = live.iter().find(|(given, _)| *given) {
        return refuse(
            Key::Read,
            Reason::new()
                .key(Key::Read)
                .text(" reads a file: ")
                .key(*key)
                .text(" is for live captures"),
        );
    }
    if raw.duration.is_some() {
        return refuse(
            Key::Read,
            Reason::new()
                .key(Key::Read)
                .text(" reads a file: --duration is for live captures"),
        );
    }
    output(o, Purpose::Command)
}

/// Interface names, resolved now (so an unknown one fails before any program is loaded); none
/// means the interface of the default route.
///
/// # Errors
/// An unknown interface, one listed twice, or no default route.
pub fn interfaces(names: &[String]) -> Rule<Vec<Interface>> {
    let names = if names.is_empty() {
        match iface::default_route_interface() {
            Some(name) => vec![name],
            None => {
                return refuse(
                    Key::Interfaces,
                    Reason::new()
                        .text("no default route to pick an interface from; choose one with ")
                        .key(Key::Interfaces),
                );
            }
        }
    } else {
        names.to_vec()
    };
    let mut interfaces: Vec<Interface> = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        let Some(ifindex) = iface::ifindex(&name) else {
            return Err(SettingError::new(
                Key::Interfaces,
                Reason::new().text(format!("unknown interface '{}'", excerpt(&name))),
            )
            .at(i));
        };
        if interfaces.iter().any(|i| i.ifindex == ifindex) {
            return Err(SettingError::new(
                Key::Interfaces,
                Reason::new().text(format!(
                    "the same interface and hook is listed twice: {}",
                    excerpt(&name)
                )),
            )
            .at(i));
        }
        interfaces.push(Interface { name, ifindex });
    }
    Ok(interfaces)
}

/// The name that stands for every interface that is up, as tcpdump's `-i any`.
pub const ANY: &str = "any";

/// Whether interface `patterns` need following as interfaces come and go (a glob, or [`ANY`])
/// rather than names resolved once.
#[must_use]
pub fn follows(patterns: &[String]) -> bool {
    patterns
        .iter()
        .any(|p| p == ANY || p.contains(['*', '?', '[']))
}

/// Interface names or shell globs of a service, attached as interfaces appear.
///
/// # Errors
/// None given, or one that cannot be an interface name or glob.
pub fn patterns(patterns: &[String]) -> Rule<()> {
    if patterns.is_empty() {
        return refuse(
            Key::Interfaces,
            Reason::new().text("list at least one interface name or glob"),
        );
    }
    for (i, text) in patterns.iter().enumerate() {
        if text.is_empty()
            || text.len() > IFNAME_MAX
            || text.contains(['/', ':'])
            || text.chars().any(char::is_whitespace)
        {
            return Err(SettingError::new(
                Key::Interfaces,
                Reason::new().text(format!(
                    "'{}' is not an interface name or glob (at most {IFNAME_MAX} characters, no '/', ':' or spaces)",
                    excerpt(text)
                )),
            )
            .at(i));
        }
    }
    Ok(())
}

/// The hook with the direction asked (`-Q`, as tcpdump's): on TC, `in` is ingress, `out`
/// egress, `inout` both; XDP sees only arriving packets, so only `in` goes with it. A TC hook of
/// one direction takes only its own.
///
/// # Errors
/// `out` or `inout` with XDP; a direction a one-direction TC hook does not have.
pub fn direction(hook: Option<HookChoice>, direction: Option<DirectionChoice>) -> Rule<HookChoice> {
    let hook = hook.unwrap_or_default();
    let Some(direction) = direction else {
        return Ok(hook);
    };
    match (hook, direction) {
        (HookChoice::Xdp, DirectionChoice::In) => Ok(HookChoice::Xdp),
        (HookChoice::Xdp, _) => refuse(
            Key::Direction,
            Reason::new()
                .key(Key::Direction)
                .text(format!(
                    " {}: XDP sees only arriving packets (in); leaving ones need ",
                    direction.name()
                ))
                .key(Key::Hook)
                .text(" tc"),
        ),
        (HookChoice::Tc | HookChoice::TcIngress, DirectionChoice::In) => Ok(HookChoice::TcIngress),
        (HookChoice::Tc | HookChoice::TcEgress, DirectionChoice::Out) => Ok(HookChoice::TcEgress),
        (HookChoice::Tc, DirectionChoice::Inout) => Ok(HookChoice::Tc),
        (HookChoice::TcIngress | HookChoice::TcEgress, _) => refuse(
            Key::Direction,
            Reason::new()
                .key(Key::Direction)
                .text(format!(
                    " {} goes beyond the one direction of the TC hook chosen; give ",
                    direction.name()
                ))
                .key(Key::Hook)
                .text(" tc"),
        ),
    }
}

/// The hooks, and the XDP mode (only with XDP).
///
/// # Errors
/// An XDP mode with another hook.
pub fn hooks(hook: Option<HookChoice>, mode: Option<XdpMode>) -> Rule<(Vec<Hook>, XdpMode)> {
    let hook = hook.unwrap_or_default();
    if mode.is_some() && hook != HookChoice::Xdp {
        return refuse(
            Key::XdpMode,
            Reason::new()
                .key(Key::XdpMode)
                .text(" applies only to ")
                .key(Key::Hook)
                .text(" xdp"),
        );
    }
    Ok((hook.hooks(), mode.unwrap_or_default()))
}

/// The filter, read from where it was given and compiled. No expression: every packet.
///
/// # Errors
/// More than one source, a filter file that cannot be read, or an expression that does not
/// compile.
pub fn filter(raw: &RawFilter) -> Rule<FilterImage> {
    let sources = usize::from(raw.expression.is_some())
        + usize::from(raw.file.is_some())
        + usize::from(!raw.words.is_empty());
    if sources > 1 {
        let key = if raw.file.is_some() {
            Key::FilterFile
        } else {
            Key::Filter
        };
        return refuse(
            key,
            Reason::new()
                .text("give ")
                .key(Key::Filter)
                .text(" or ")
                .key(Key::FilterFile)
                .text(", not both"),
        );
    }
    let (text, key) = if let Some(f) = &raw.expression {
        (f.clone(), Key::Filter)
    } else if let Some(path) = &raw.file {
        let text = bounded_read::read_text(path, bounded_read::FILTER_FILE_MAX).map_err(|e| {
            SettingError::new(
                Key::FilterFile,
                Reason::new()
                    .key(Key::FilterFile)
                    .text(format!(": {}", one_line(&e))),
            )
        })?;
        // tcpdump -F: '#' starts a comment to the end of the line.
        let text = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ");
        (text, Key::FilterFile)
    } else {
        (raw.words.join(" "), Key::Filter)
    };
    crate::filter::image(text.trim()).map_err(|e| {
        SettingError::new(
            key,
            Reason::new()
                .key(Key::Filter)
                .text(format!(": {}", one_line(&e))),
        )
    })
}

/// Bytes kept of each packet: as tcpdump's `-s`, 0 (or none) means whole packets up to
/// [`MAX_SNAPLEN`], and a larger value is refused rather than silently cut.
///
/// # Errors
/// Above [`MAX_SNAPLEN`].
pub fn snaplen(snaplen: Option<u32>) -> Rule<u32> {
    match snaplen {
        None | Some(0) => Ok(DEFAULT_SNAPLEN),
        Some(s) if s > MAX_SNAPLEN => refuse(
            Key::Snaplen,
            Reason::new().key(Key::Snaplen).text(format!(
                " {s} is out of range: use 1 to {MAX_SNAPLEN} (tcpdump's largest), or 0 for whole packets up to {MAX_SNAPLEN}"
            )),
        ),
        Some(s) => Ok(s),
    }
}

/// Parses a size: a number (fractions allowed) with an optional k, M or G suffix, each `unit`
/// (1000 or 1024) times the one before.
///
/// # Errors
/// Not a number, an unknown suffix, or out of range.
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
    #[expect(clippy::cast_precision_loss, reason = "a bound, not a value")]
    let max = u64::MAX as f64;
    if !(0.0..max).contains(&bytes) {
        return Err(format!("not a size: {s}"));
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "checked to be in range just above"
    )]
    Ok(bytes as u64)
}

/// Parses a size in bytes with an optional K, M or G suffix (powers of 1024).
///
/// # Errors
/// As [`scaled_size`].
pub fn binary_size(s: &str) -> Result<u64, String> {
    scaled_size(s, 1024)
}

/// A per-flow budget: `4096`, `64K` (bytes; K, M, G: powers of 1024) or `200p` (packets), at
/// least 1, with a table of `table_size` flows (default
/// `tap_common::flow::DEFAULT_FLOW_TABLE`).
///
/// # Errors
/// Not a budget, a table size out of range, or a table size without a budget.
pub fn flow_budget(budget: Option<&str>, table_size: Option<u32>) -> Rule<Option<FlowBudget>> {
    let Some(text) = budget else {
        if table_size.is_some() {
            return refuse(
                Key::FlowTableSize,
                Reason::new()
                    .key(Key::FlowTableSize)
                    .text(" needs ")
                    .key(Key::FlowBudget),
            );
        }
        return Ok(None);
    };
    let bad = || {
        SettingError::new(
            Key::FlowBudget,
            Reason::new().key(Key::FlowBudget).text(format!(
                " '{}' is not a budget: give bytes (4096, 64K) or packets (200p), at least 1",
                excerpt(text)
            )),
        )
    };
    let t = text.trim();
    let (limit, unit) = match t.strip_suffix(['p', 'P']) {
        Some(n) => (n.parse::<u64>().map_err(|_| bad())?, FlowUnit::Packets),
        None => (binary_size(t).map_err(|_| bad())?, FlowUnit::Bytes),
    };
    if limit == 0 {
        return Err(bad());
    }
    let max = tap_common::flow::MAX_FLOW_TABLE;
    let table_size = table_size.unwrap_or(tap_common::flow::DEFAULT_FLOW_TABLE);
    if !(1..=max).contains(&table_size) {
        return refuse(
            Key::FlowTableSize,
            Reason::new()
                .key(Key::FlowTableSize)
                .text(format!(" {table_size} is out of range: use 1 to {max}")),
        );
    }
    Ok(Some(FlowBudget {
        limit,
        unit,
        table_size,
    }))
}

/// The ring size for tcpdump's `-B KiB`: the size in bytes rounded up to what the kernel's
/// ring takes (a power of two, at least a page). [`ring_size`] still bounds it.
#[must_use]
pub fn ring_from_kib(kib: u64) -> u64 {
    kib.saturating_mul(1024)
        .checked_next_power_of_two()
        .unwrap_or(u64::MAX)
        .max(page_size())
}

/// The ring buffer's size in bytes.
///
/// # Errors
/// Not a power of two from the page size to 2 GiB.
pub fn ring_size(size: Option<u64>) -> Rule<u32> {
    let size = size.unwrap_or(u64::from(DEFAULT_RING_SIZE));
    let min = page_size();
    match u32::try_from(size) {
        Ok(s) if size.is_power_of_two() && size >= min && size <= 1 << 31 => Ok(s),
        _ => refuse(
            Key::RingSize,
            Reason::new().key(Key::RingSize).text(format!(
                " {size} is not a power of two from {min} (the page size) to 2147483648"
            )),
        ),
    }
}

/// Keep 1 in N matched packets.
///
/// # Errors
/// 0.
pub fn sample(sample: Option<u32>) -> Rule<u32> {
    match sample {
        Some(0) => refuse(
            Key::Sample,
            Reason::new()
                .key(Key::Sample)
                .text(" must be at least 1 (1: keep every packet)"),
        ),
        Some(n) => Ok(n),
        None => Ok(1),
    }
}

/// Packets per second kept, per CPU: each CPU keeps its share, rounded up so the cap is never
/// below what was asked. 0: no cap.
#[must_use]
pub fn max_rate(pps: Option<u32>) -> u32 {
    match pps {
        None | Some(0) => 0,
        Some(pps) => pps.div_ceil(ncpus()),
    }
}

/// `vxlan[:PORT],geneve,gre,erspan` (any subset, comma-separated).
///
/// # Errors
/// An unknown item or a bad port.
pub fn decap(list: Option<&str>) -> Rule<Decap> {
    use tap_common::config::decap;
    let mut out = Decap::default();
    for item in list
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
    {
        let (name, port) = match item.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (item, None),
        };
        let bad = || {
            SettingError::new(
                Key::Decap,
                Reason::new().text("unknown ").key(Key::Decap).text(format!(
                    " item '{}': use vxlan[:PORT], geneve, gre, erspan",
                    excerpt(item)
                )),
            )
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

fn ends_with_ci(name: &str, suffix: &str) -> bool {
    name.len() >= suffix.len()
        && name.is_char_boundary(name.len() - suffix.len())
        && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

/// `none`, `zstd` or `zstd:LEVEL`; none given: zstd for a compressed name.
///
/// # Errors
/// Anything else.
pub fn compression(compress: Option<&str>, compressed_name: bool) -> Rule<Compression> {
    Ok(match compress {
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
            _ => {
                return refuse(
                    Key::Compress,
                    Reason::new()
                        .text("unknown ")
                        .key(Key::Compress)
                        .text(format!(
                            " '{}': use none, zstd or zstd:LEVEL (LEVEL 1 to 19)",
                            excerpt(other)
                        )),
                );
            }
        },
    })
}

/// The rotation limits.
///
/// # Errors
/// A size that is not a positive number of megabytes, an interval or a file count of 0, or a
/// file count without a rotation.
pub fn rotation(raw: &RawOutput) -> Rule<Rotation> {
    let max_bytes = match raw.file_size_mb {
        None => None,
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a positive, finite number of bytes; beyond u64 saturates"
        )]
        Some(mb) if mb.is_finite() && mb > 0.0 && mb * 1e6 >= 1.0 => Some((mb * 1e6) as u64),
        Some(_) => {
            return refuse(
                Key::FileSize,
                Reason::new()
                    .key(Key::FileSize)
                    .text(" must be a positive number of megabytes"),
            );
        }
    };
    if raw.rotate_seconds == Some(0) {
        return refuse(
            Key::RotateSeconds,
            Reason::new()
                .key(Key::RotateSeconds)
                .text(" must be at least 1 second"),
        );
    }
    if raw.ring_files == Some(0) {
        return refuse(
            Key::RingFiles,
            Reason::new()
                .key(Key::RingFiles)
                .text(" must be at least 1"),
        );
    }
    let rotation = Rotation {
        max_bytes,
        interval_secs: raw.rotate_seconds,
        max_files: raw.ring_files,
    };
    if rotation.max_files.is_some() && !rotation.active() {
        return refuse(
            Key::RingFiles,
            Reason::new()
                .key(Key::RingFiles)
                .text(" needs ")
                .key(Key::FileSize)
                .text(" or ")
                .key(Key::RotateSeconds)
                .text(": it keeps the newest files of a rotation"),
        );
    }
    Ok(rotation)
}

/// Where and how packets are stored; the format and compression default from the file name.
/// No path: no file (only consumers).
///
/// # Errors
/// As [`compression`] and [`rotation`], a name pattern that does not parse, rotation or a
/// post-rotate command without a file, and for a service a path that is not a file name.
pub fn output(raw: &RawOutput, purpose: Purpose) -> Rule<OutputConfig> {
    let target = match &raw.path {
        None => Output::None,
        Some(p)
            if purpose == Purpose::Service && (p.as_os_str().is_empty() || p == Path::new("-")) =>
        {
            return refuse(
                Key::Write,
                Reason::new().text("give a file name (standard output is not for a service)"),
            );
        }
        Some(p) if p == Path::new("-") => Output::Stdout,
        Some(p) => Output::File(p.clone()),
    };
    let name = match &target {
        Output::File(p) => p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        Output::Stdout | Output::None => String::new(),
    };
    let compressed_name = ends_with_ci(&name, ".zst") || ends_with_ci(&name, ".zstd");
    let format = raw.format.unwrap_or_else(|| {
        let base = if compressed_name {
            &name[..name.rfind('.').unwrap_or(name.len())]
        } else {
            &name[..]
        };
        if ends_with_ci(base, ".pcapng") {
            crate::model::Format::Pcapng
        } else {
            crate::model::Format::Pcap
        }
    });
    let compression = compression(raw.compress.as_deref(), compressed_name)?;
    let rotation = rotation(raw)?;
    if let Output::File(path) = &target {
        NamePattern::new(path, rotation.active())
            .map_err(|e| SettingError::new(Key::Write, Reason::new().text(one_line(&e))))?;
    } else if rotation.active() {
        return refuse(
            Key::Write,
            Reason::new()
                .key(Key::FileSize)
                .text(", ")
                .key(Key::RotateSeconds)
                .text(" and ")
                .key(Key::RingFiles)
                .text(" need a file name: standard output cannot rotate"),
        );
    } else if raw.post_rotate.is_some() {
        return refuse(
            Key::PostRotate,
            Reason::new()
                .key(Key::PostRotate)
                .text(" needs a file output"),
        );
    }
    let file = matches!(target, Output::File(_));
    let sign_key = sign_key(raw.sign_key.as_deref(), file)?;
    Ok(OutputConfig {
        target,
        format,
        compression,
        rotation,
        post_rotate: raw.post_rotate.clone(),
        flush_interval: Duration::from_millis(raw.flush_interval_ms.unwrap_or(1000)),
        on_disk_full: raw.on_disk_full.unwrap_or_default(),
        force: raw.force,
        // A tap restarted (a reload, the service) goes on numbering after its earlier files.
        resume: file && purpose == Purpose::Service,
        store: None,
        sign_key,
    })
}

/// The custody signing key, read now: a key others may read, or that is no ed25519 PKCS#8 PEM
/// key, is refused before the capture starts, and `-Z` cannot take it away later.
///
/// # Errors
/// A key without a file output (standard output has no manifest), or one that does not load.
pub fn sign_key(path: Option<&Path>, file: bool) -> Rule<Option<SignKey>> {
    let Some(path) = path else {
        return Ok(None);
    };
    if !file {
        return refuse(
            Key::SignKey,
            Reason::new()
                .key(Key::SignKey)
                .text(" signs a file's custody entries: it needs a file output"),
        );
    }
    let key = crate::custody::SecretKey::load(path).map_err(|e| {
        SettingError::new(
            Key::SignKey,
            Reason::new()
                .key(Key::SignKey)
                .text(format!(": {}", one_line(&e))),
        )
    })?;
    Ok(Some(SignKey {
        path: path.to_path_buf(),
        key,
    }))
}

/// The packet store, when one is asked for.
///
/// # Errors
/// Retention without a store, a directory that is empty or `-`, a size of 0, or an age that is
/// not a positive duration.
pub fn store(raw: &RawStore) -> Rule<Option<StoreConfig>> {
    let Some(dir) = &raw.dir else {
        if raw.max_bytes.is_some() || raw.max_age.is_some() {
            let key = if raw.max_bytes.is_some() {
                Key::StoreMaxBytes
            } else {
                Key::StoreMaxAge
            };
            return refuse(
                key,
                Reason::new()
                    .key(Key::StoreMaxBytes)
                    .text(" and ")
                    .key(Key::StoreMaxAge)
                    .text(" are a store's retention: give ")
                    .key(Key::Store),
            );
        }
        return Ok(None);
    };
    if dir.as_os_str().is_empty() || dir.as_os_str() == "-" {
        return refuse(
            Key::Store,
            Reason::new()
                .key(Key::Store)
                .text(" names a directory, not standard output"),
        );
    }
    let max_bytes = match &raw.max_bytes {
        None => None,
        Some(RawSize::Bytes(n)) => Some(*n),
        Some(RawSize::Text(t)) => Some(binary_size(t).map_err(|_| {
            SettingError::new(
                Key::StoreMaxBytes,
                Reason::new().key(Key::StoreMaxBytes).text(format!(
                    " '{}' is not a size: give bytes, or K, M or G (powers of 1024)",
                    excerpt(t)
                )),
            )
        })?),
    };
    if max_bytes == Some(0) {
        return refuse(
            Key::StoreMaxBytes,
            Reason::new()
                .key(Key::StoreMaxBytes)
                .text(" must be positive"),
        );
    }
    let max_age = raw
        .max_age
        .as_deref()
        .map(|text| match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => refuse(
                Key::StoreMaxAge,
                Reason::new()
                    .key(Key::StoreMaxAge)
                    .text(" must be positive"),
            ),
            Err(e) => refuse(
                Key::StoreMaxAge,
                Reason::new().key(Key::StoreMaxAge).text(format!(
                    " '{}': {}: use e.g. 7d, 12h, 90m",
                    excerpt(text),
                    one_line(&e)
                )),
            ),
        })
        .transpose()?;
    Ok(Some(StoreConfig {
        dir: std::path::absolute(dir).unwrap_or_else(|_| dir.clone()),
        max_bytes,
        max_age,
    }))
}

/// A store's output: pcapng files named by [`store::layout::NAME_PATTERN`] in its directory,
/// rotating (by default every [`store::DEFAULT_ROTATE_SECS`] or at [`store::DEFAULT_FILE_MB`],
/// and files no larger than a quarter of the size limit, so retention works file by file),
/// numbered on after the files an earlier run left, never stopping on a full disk (room is
/// made or drops counted).
///
/// # Errors
/// A pcap format or a file count (a store's retention is its own), or as [`output`].
pub fn store_output(store: StoreConfig, raw: &RawOutput, purpose: Purpose) -> Rule<OutputConfig> {
    if raw.format == Some(crate::model::Format::Pcap) {
        return refuse(
            Key::Format,
            Reason::new()
                .key(Key::Format)
                .text(" pcap: ")
                .key(Key::Store)
                .text(" writes pcapng"),
        );
    }
    if raw.ring_files.is_some() {
        return refuse(
            Key::RingFiles,
            Reason::new()
                .text("with ")
                .key(Key::Store)
                .text(", retention is ")
                .key(Key::StoreMaxBytes)
                .text(" and ")
                .key(Key::StoreMaxAge),
        );
    }
    let mut raw = raw.clone();
    raw.format = Some(crate::model::Format::Pcapng);
    if raw.file_size_mb.is_none() && raw.rotate_seconds.is_none() {
        raw.file_size_mb = Some(store::DEFAULT_FILE_MB);
        raw.rotate_seconds = Some(store::DEFAULT_ROTATE_SECS);
    }
    if let Some(max) = store.max_bytes {
        #[expect(clippy::cast_precision_loss, reason = "a size in MB, rounding is fine")]
        let quarter = max as f64 / 4.0 / 1e6;
        if raw.file_size_mb.unwrap_or(f64::MAX) > quarter {
            raw.file_size_mb = Some(quarter.max(1e-6));
        }
    }
    raw.path = Some(store.dir.join(store::layout::NAME_PATTERN));
    let mut out = output(&raw, purpose)?;
    if let Output::File(p) = &mut out.target {
        if out.compression != Compression::None {
            let mut s = p.as_os_str().to_owned();
            s.push(".zst");
            *p = PathBuf::from(s);
        }
    }
    out.format = crate::model::Format::Pcapng;
    out.on_disk_full = crate::model::DiskFull::Drop;
    out.resume = true;
    out.store = Some(store);
    Ok(out)
}

/// The user to run as once attached.
///
/// # Errors
/// An unknown user.
pub fn run_as(user: &str) -> Rule<RunAs> {
    RunAs::lookup(user).map_err(|e| SettingError::new(Key::RunAs, Reason::new().text(one_line(&e))))
}

/// The `--serve` socket.
///
/// # Errors
/// An address that is not `unix:PATH`.
pub fn serve(raw: &RawServe) -> Rule<PathBuf> {
    match raw {
        RawServe::Path(p) => Ok(p.clone()),
        RawServe::Address(s) => match s.strip_prefix("unix:") {
            Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
            _ => refuse(
                Key::Serve,
                Reason::new()
                    .key(Key::Serve)
                    .text(format!(" '{}': use unix:PATH", excerpt(s))),
            ),
        },
    }
}

/// The monitor interface of `--inject`. A service's names are plain names: globs there are
/// patterns of interfaces to tap.
///
/// # Errors
/// For a service, a name that is no interface name.
pub fn inject(name: &str, purpose: Purpose) -> Rule<String> {
    if purpose == Purpose::Service
        && (name.is_empty() || name.len() > IFNAME_MAX || name.contains(['/', ':', '*', '?', '[']))
    {
        return refuse(
            Key::Inject,
            Reason::new().text(format!("'{}' is not an interface name", excerpt(name))),
        );
    }
    Ok(name.to_string())
}

/// A collector: `vxlan://HOST[:PORT]?vni=N[&max_len=BYTES]` (IPv6 hosts in brackets).
///
/// # Errors
/// The URL, its host or its options are wrong; the words say which.
pub fn vxlan_target(url: &str) -> Result<VxlanTarget, String> {
    let bad = |reason: &str| {
        format!(
            "'{}': {reason}; expected vxlan://HOST[:PORT]?vni=N[&max_len=BYTES]",
            excerpt(url)
        )
    };
    let rest = url
        .strip_prefix("vxlan://")
        .ok_or_else(|| bad("not a vxlan:// URL"))?;
    let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
    if hostport.is_empty() {
        return Err(bad("no collector host"));
    }
    let port = vxlan::DEFAULT_PORT;
    let with_port = if hostport.starts_with('[') {
        if hostport.contains("]:") {
            hostport.to_string()
        } else {
            format!("{hostport}:{port}")
        }
    } else if hostport.matches(':').count() == 1 {
        hostport.to_string()
    } else if hostport.contains(':') {
        // A bare IPv6 address.
        format!("[{hostport}]:{port}")
    } else {
        format!("{hostport}:{port}")
    };
    let collector: SocketAddr = with_port
        .to_socket_addrs()
        .map_err(|e| bad(&format!("cannot resolve the collector: {e}")))?
        .next()
        .ok_or_else(|| bad("the collector resolves to no address"))?;
    let mut vni = None;
    // Sent with DF: a default too long for the path would turn every full-size frame into a
    // send error.
    let mut max_inner = if collector.is_ipv4() {
        vxlan::DEFAULT_MAX_INNER
    } else {
        vxlan::DEFAULT_MAX_INNER_V6
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| bad("query items are key=value"))?;
        match k {
            "vni" => {
                let n: u32 = v.parse().map_err(|_| bad("vni is not a number"))?;
                if n >= 1 << 24 {
                    return Err(bad("vni must fit in 24 bits"));
                }
                vni = Some(n);
            }
            "max_len" => {
                max_inner = v.parse().map_err(|_| bad("max_len is not a number"))?;
                if !(64..=65000).contains(&max_inner) {
                    return Err(bad("max_len must be 64 to 65000"));
                }
            }
            other => return Err(bad(&format!("unknown option '{}'", excerpt(other)))),
        }
    }
    let vni = vni.ok_or_else(|| bad("vni=N is required"))?;
    Ok(VxlanTarget {
        collector,
        vni,
        max_inner,
    })
}

/// The `--forward` collectors.
///
/// # Errors
/// The first URL [`vxlan_target`] refuses.
pub fn forward(urls: &[String]) -> Rule<Vec<VxlanTarget>> {
    urls.iter()
        .enumerate()
        .map(|(i, u)| {
            vxlan_target(u).map_err(|reason| {
                SettingError::new(
                    Key::Forward,
                    Reason::new().key(Key::Forward).text(format!(" {reason}")),
                )
                .at(i)
            })
        })
        .collect()
}

/// The live consumers besides the file.
///
/// # Errors
/// As [`serve`], [`inject`] and [`forward`].
pub fn consumers(raw: &RawCapture, purpose: Purpose) -> Rule<Consumers> {
    let serve = raw.serve.as_ref().map(serve).transpose()?;
    let inject = raw
        .inject
        .as_deref()
        .map(|i| inject(i, purpose))
        .transpose()?;
    let forward = forward(&raw.forward)?;
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    Ok(Consumers {
        serve,
        inject,
        forward,
        fix_checksums: raw.fix_checksums,
        suricata_socket: raw.suricata_socket.as_deref().map(absolute),
        suricata_output: absolute(
            raw.suricata_output
                .as_deref()
                .unwrap_or(Path::new(DEFAULT_SURICATA_OUTPUT)),
        ),
        pretrigger: pretrigger(raw.pretrigger.as_deref())?,
    })
}

/// The agent's `[evidence]`: a source (`eve` or `socket`, not both), a directory, the
/// selection, the window and the bounds (defaults as [`crate::evidence::CaseConfig`]). Which taps
/// serve as history is checked against the taps by the agent file's reader.
///
/// # Errors
/// No source or both, no directory, a signature list that does not parse, a severity of 0, a
/// negative or non-finite time, a window longer than an hour, or a bound of 0.
pub fn evidence(raw: &RawEvidence) -> Rule<crate::evidence::EvidenceConfig> {
    use crate::evidence::{CaseConfig, EvidenceConfig, FollowConfig, Selector, Source, Start};
    let source = match (&raw.eve, &raw.socket) {
        (Some(path), None) => Source::File {
            path: path.clone(),
            start: if raw.from_start {
                Start::Beginning
            } else {
                Start::End
            },
        },
        (None, Some(path)) => Source::Socket {
            path: path.clone(),
            max_connections: 4,
        },
        _ => {
            return refuse(
                Key::EvidenceSource,
                Reason::new().text(
                    "give eve (the eve.json to follow) or socket (a unix socket for Suricata's unix_stream eve-log), one of them",
                ),
            );
        }
    };
    let Some(dir) = raw.dir.clone().filter(|d| !d.as_os_str().is_empty()) else {
        return refuse(
            Key::EvidenceDir,
            Reason::new().text("give dir, the directory evidence files are written to"),
        );
    };
    let sids = |text: &Option<String>| {
        text.as_deref()
            .map(Selector::parse_sids)
            .transpose()
            .map(Option::unwrap_or_default)
            .map_err(|e| SettingError::new(Key::EvidenceSids, Reason::new().text(one_line(&e))))
    };
    if raw.severity == Some(0) {
        return refuse(
            Key::EvidenceSeverity,
            Reason::new()
                .text("0 is no severity: 1 is the most severe, 3 the least in most rule sets"),
        );
    }
    let defaults = CaseConfig::default();
    let seconds = |name: &str, value: Option<f64>, default: u64, max: f64| -> Rule<u64> {
        match value {
            None => Ok(default),
            Some(v) if v.is_finite() && (0.0..=max).contains(&v) => Ok(Duration::from_secs_f64(v)
                .as_nanos()
                .try_into()
                .unwrap_or(u64::MAX)),
            Some(v) => refuse(
                Key::EvidenceWindow,
                Reason::new().text(format!("{name} = {v}: give seconds from 0 to {max}")),
            ),
        }
    };
    let before_ns = seconds("before", raw.before, defaults.before_ns, 3600.0)?;
    let after_ns = seconds("after", raw.after, defaults.after_ns, 3600.0)?;
    let max_window_ns = seconds("max_window", raw.max_window, defaults.max_window_ns, 3600.0)?;
    let settle_ns = seconds("settle", raw.settle, defaults.settle_ns, 60.0)?;
    let positive = |name: &str, zero: bool| -> Rule<()> {
        if zero {
            return refuse(
                Key::EvidenceLimits,
                Reason::new().text(format!("{name} must be positive")),
            );
        }
        Ok(())
    };
    positive(
        "rate",
        raw.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)),
    )?;
    positive("burst", raw.burst == Some(0))?;
    positive("max_open", raw.max_open == Some(0))?;
    positive("max_alerts", raw.max_alerts == Some(0))?;
    positive(
        "max_file_mb",
        raw.max_file_mb.is_some_and(|m| !(m.is_finite() && m > 0.0)),
    )?;
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "positive and finite, checked above; saturating"
    )]
    let max_file_bytes = raw.max_file_mb.map_or(256_000_000, |m| (m * 1e6) as u64);
    Ok(EvidenceConfig {
        follow: FollowConfig {
            source,
            selector: Selector {
                sids: sids(&raw.sids)?,
                max_severity: raw.severity,
                exclude: sids(&raw.exclude_sids)?,
            },
            cases: CaseConfig {
                before_ns,
                after_ns,
                max_window_ns: max_window_ns.max(before_ns.saturating_add(after_ns)),
                settle_ns,
                max_open: raw.max_open.unwrap_or(defaults.max_open),
                max_alerts: raw.max_alerts.unwrap_or(defaults.max_alerts),
                rate: raw.rate.unwrap_or(defaults.rate),
                burst: raw.burst.unwrap_or(defaults.burst),
                ..defaults
            },
            max_line: crate::evidence::DEFAULT_MAX_LINE,
            poll: Duration::from_millis(100),
            once: false,
        },
        dir: std::path::absolute(&dir).unwrap_or(dir),
        taps: raw.taps.clone(),
        max_file_bytes,
    })
}

/// Longest pre-trigger age: a day (evidence windows are minutes).
pub const PRETRIGGER_MAX_AGE: Duration = Duration::from_secs(86_400);

/// Pre-trigger memory: an age (`30s`, `5m`: a duration in words), a size (`256MiB`, `1GiB`,
/// `4096B`: bytes with a `B`, K, M and G powers of 1024 as in `KiB` or `KB`), or one of each
/// separated by a comma or a space.
///
/// # Errors
/// Empty, a part that is neither, two of a kind, zero, or an age over a day.
pub fn pretrigger(text: Option<&str>) -> Rule<Option<PretriggerLimits>> {
    let Some(text) = text else {
        return Ok(None);
    };
    let bad = |why: &str| {
        SettingError::new(
            Key::Pretrigger,
            Reason::new().key(Key::Pretrigger).text(format!(
                " '{}' {why}: give an age (30s), a size (256MiB) or both (30s,256MiB)",
                excerpt(text)
            )),
        )
    };
    let mut limits = PretriggerLimits {
        max_age: None,
        max_bytes: None,
    };
    let parts: Vec<&str> = text
        .split([',', ' '])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        return Err(bad("is empty"));
    }
    for part in parts {
        if let Some(size) = part.strip_suffix('B') {
            let size = size
                .strip_suffix('i')
                .unwrap_or(size)
                .trim_end_matches(char::is_whitespace);
            let n = binary_size(size).map_err(|_| bad("has a size that does not parse"))?;
            if n == 0 {
                return Err(bad("holds nothing"));
            }
            if limits.max_bytes.replace(n).is_some() {
                return Err(bad("gives two sizes"));
            }
        } else {
            let d =
                humantime::parse_duration(part).map_err(|_| bad("is neither an age nor a size"))?;
            if d.is_zero() {
                return Err(bad("holds nothing"));
            }
            if d > PRETRIGGER_MAX_AGE {
                return Err(bad("is longer than a day"));
            }
            if limits.max_age.replace(d).is_some() {
                return Err(bad("gives two ages"));
            }
        }
    }
    Ok(Some(limits))
}

/// A capture needs somewhere to put packets.
///
/// # Errors
/// Neither a file nor a consumer.
pub fn sinks(output: &OutputConfig, consumers: &Consumers) -> Rule<()> {
    if output.target == Output::None && !consumers.any() {
        return refuse(
            Key::Sinks,
            Reason::new()
                .text("no sink: give ")
                .key(Key::Write)
                .text(", ")
                .key(Key::Serve)
                .text(", ")
                .key(Key::Inject)
                .text(", ")
                .key(Key::Forward)
                .text(" or ")
                .key(Key::Pretrigger),
        );
    }
    Ok(())
}

/// A tap's name: it names files, metrics labels and log lines.
///
/// # Errors
/// Empty, too long, or other than letters, digits, `-`, `_` and `.`.
pub fn tap_name(name: &str) -> Rule<()> {
    if name.is_empty()
        || name.len() > TAP_NAME_MAX
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return refuse(
            Key::Name,
            Reason::new().text("use 1 to 64 letters, digits, '-', '_' or '.'"),
        );
    }
    Ok(())
}

/// Where the agent serves its metrics.
///
/// # Errors
/// Not an address and port.
pub fn metrics_listen(text: &str) -> Rule<SocketAddr> {
    text.parse::<SocketAddr>().map_err(|_| {
        SettingError::new(
            Key::MetricsListen,
            Reason::new().text(format!(
                "'{}' is not an address and port (e.g. 127.0.0.1:9750)",
                excerpt(text)
            )),
        )
    })
}

/// The agent's query endpoint: the address parses, a token file is given unless the address is
/// loopback, and the file is one only its owner may read (mode 0600 or 0400), of one line of
/// visible ASCII.
///
/// # Errors
/// A token file without an address, an address that does not parse, no token file off loopback,
/// or a token file that cannot be read, is readable by others, or holds no token.
pub fn query_listen(listen: Option<&str>, token_file: Option<&Path>) -> Rule<Option<QueryListen>> {
    let Some(listen) = listen else {
        if token_file.is_some() {
            return refuse(
                Key::QueryTokenFile,
                Reason::new()
                    .key(Key::QueryTokenFile)
                    .text(" is for the query endpoint: give ")
                    .key(Key::QueryListen)
                    .text(" too"),
            );
        }
        return Ok(None);
    };
    let addr = listen.parse::<SocketAddr>().map_err(|_| {
        SettingError::new(
            Key::QueryListen,
            Reason::new().key(Key::QueryListen).text(format!(
                " '{}' is not an address and port (e.g. 127.0.0.1:9751)",
                excerpt(listen)
            )),
        )
    })?;
    let Some(path) = token_file else {
        if is_loopback(&addr) {
            return Ok(Some(QueryListen {
                addr,
                token: None,
                token_file: None,
            }));
        }
        return refuse(
            Key::QueryListen,
            Reason::new()
                .key(Key::QueryListen)
                .text(format!(" {addr} is not loopback: give "))
                .key(Key::QueryTokenFile)
                .text(" (a bearer token, mode 0600)"),
        );
    };
    let token = read_token(path).map_err(|m| {
        SettingError::new(
            Key::QueryTokenFile,
            Reason::new()
                .key(Key::QueryTokenFile)
                .text(format!(": {m}")),
        )
    })?;
    Ok(Some(QueryListen {
        addr,
        token: Some(token),
        token_file: Some(path.to_path_buf()),
    }))
}

/// Longest status lease and inventory resync, seconds.
const FLEET_MAX_SECS: u64 = 3600;

/// The agent's `[fleet]` table: at least one etcd endpoint (`http://HOST:PORT` or
/// `https://HOST:PORT`, all of one scheme, https with a CA), a host name (as a session's names:
/// letters, digits, `-`, `_`, `.`), an absolute key root, a lease of 2 to 3600 seconds (the lease
/// keeper refreshes every third of it), a resync of 1 to 3600 seconds, a password only from a
/// file only its owner may read, and only with a user.
///
/// # Errors
/// The first of these that does not hold.
pub fn fleet(raw: &super::raw::RawFleet) -> Rule<crate::model::FleetConfig> {
    use crate::model::{DEFAULT_ETCD_ROOT, DEFAULT_FLEET_LEASE_SECS, DEFAULT_FLEET_RESYNC_SECS};
    if raw.etcd.is_empty() {
        return refuse(
            Key::FleetEtcd,
            Reason::new()
                .key(Key::FleetEtcd)
                .text(" needs at least one endpoint (e.g. \"http://127.0.0.1:2379\")"),
        );
    }
    let https = crate::support::endpoint::scheme(raw.etcd.iter().map(String::as_str)).map_err(
        |(i, why)| {
            SettingError::new(
                Key::FleetEtcd,
                Reason::new()
                    .key(Key::FleetEtcd)
                    .text(format!(" '{}': {why}", excerpt(&raw.etcd[i]))),
            )
            .at(i)
        },
    )?;
    let https = https.unwrap_or(false);
    let tls = |why: &str| refuse(Key::FleetTls, Reason::new().text(format!("[fleet] {why}")));
    if https && raw.ca_file.is_none() {
        return tls("https endpoints need ca_file, the CA that signed the members' certificates");
    }
    if !https && (raw.ca_file.is_some() || raw.cert_file.is_some()) {
        return tls("ca_file and cert_file need https:// endpoints");
    }
    if raw.cert_file.is_some() != raw.key_file.is_some() {
        return tls("cert_file needs key_file and key_file cert_file");
    }
    let host = raw.host.clone().unwrap_or_default();
    if host.is_empty()
        || host.len() > 64
        || host == "."
        || host == ".."
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return refuse(
            Key::FleetHost,
            Reason::new().key(Key::FleetHost).text(format!(
                " '{}': this host's name in the fleet, 1 to 64 letters, digits, '-', '_' or '.'",
                excerpt(&host)
            )),
        );
    }
    let prefix = raw
        .prefix
        .clone()
        .unwrap_or_else(|| DEFAULT_ETCD_ROOT.to_string());
    if !prefix.starts_with('/') || prefix.contains(char::is_whitespace) || prefix.len() > 256 {
        return refuse(
            Key::FleetPrefix,
            Reason::new().key(Key::FleetPrefix).text(format!(
                " '{}': an absolute key root without spaces (e.g. {DEFAULT_ETCD_ROOT})",
                excerpt(&prefix)
            )),
        );
    }
    for (i, g) in raw.uplinks.iter().enumerate() {
        if g.is_empty() || g.len() > 15 || g.contains(['/', ':']) || g.contains(char::is_whitespace)
        {
            return Err(SettingError::new(
                Key::FleetUplinks,
                Reason::new().key(Key::FleetUplinks).text(format!(
                    " '{}' is not an interface name or glob (at most 15 characters, no '/', ':' or spaces)",
                    excerpt(g)
                )),
            )
            .at(i));
        }
    }
    let seconds = |key: Key, value: Option<u64>, default: u64, min: u64| match value {
        None => Ok(Duration::from_secs(default)),
        Some(v) if (min..=FLEET_MAX_SECS).contains(&v) => Ok(Duration::from_secs(v)),
        Some(v) => refuse(
            key,
            Reason::new()
                .key(key)
                .text(format!(" {v}: give {min} to {FLEET_MAX_SECS} seconds")),
        ),
    };
    let lease = seconds(
        Key::FleetLease,
        raw.lease_seconds,
        DEFAULT_FLEET_LEASE_SECS,
        2,
    )?;
    let resync = seconds(
        Key::FleetResync,
        raw.resync_seconds,
        DEFAULT_FLEET_RESYNC_SECS,
        1,
    )?;
    let password = match (&raw.user, &raw.password_file) {
        (_, None) => None,
        (None, Some(_)) => {
            return refuse(
                Key::FleetUser,
                Reason::new().text("[fleet] password_file needs user"),
            );
        }
        (Some(_), Some(path)) => Some(read_token(path).map_err(|m| {
            SettingError::new(
                Key::FleetUser,
                Reason::new().text(format!("[fleet] password_file: {m}")),
            )
        })?),
    };
    if let Some(u) = &raw.user {
        if u.is_empty() || u.contains([':', '\n']) {
            return refuse(
                Key::FleetUser,
                Reason::new()
                    .key(Key::FleetUser)
                    .text(" must be an etcd user name (no ':')"),
            );
        }
    }
    Ok(crate::model::FleetConfig {
        etcd: raw.etcd.clone(),
        host,
        prefix,
        uplinks: raw.uplinks.clone(),
        lease,
        resync,
        ca_file: raw.ca_file.clone(),
        cert_file: raw.cert_file.clone(),
        key_file: raw.key_file.clone(),
        user: raw.user.clone(),
        password,
    })
}

/// The token in `path`, through the bounded reader, refused when group or others may read it.
fn read_token(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is mode {:04o}: a token file must be readable by its owner only (chmod 600)",
            path.display(),
            mode & 0o7777
        ));
    }
    let text =
        bounded_read::read_text(path, bounded_read::SECRET_FILE_MAX).map_err(|e| e.to_string())?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("{} holds no token", path.display()));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{}: a token is one line of visible ASCII characters",
            path.display()
        ));
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = vxlan_target("vxlan://127.0.0.1?vni=42").unwrap();
        assert_eq!(t.collector, "127.0.0.1:4789".parse().unwrap());
        assert_eq!((t.vni, t.max_inner), (42, vxlan::DEFAULT_MAX_INNER));
        let t = vxlan_target("vxlan://127.0.0.1:8472?vni=7&max_len=9000").unwrap();
        assert_eq!(t.collector.port(), 8472);
        assert_eq!(t.max_inner, 9000);
        let t = vxlan_target("vxlan://[::1]?vni=1").unwrap();
        assert_eq!(t.collector, "[::1]:4789".parse().unwrap());
        // The outer IPv6 header is 20 bytes longer: so is what the default leaves out.
        assert_eq!(t.max_inner, vxlan::DEFAULT_MAX_INNER_V6);
        assert_eq!(vxlan::DEFAULT_MAX_INNER_V6 + 40 + 8 + 8, 1500);
        assert_eq!(
            vxlan_target("vxlan://[::1]?vni=1&max_len=1464")
                .unwrap()
                .max_inner,
            1464
        );
        for bad in [
            "udp://1.2.3.4?vni=1",
            "vxlan://1.2.3.4",
            "vxlan://1.2.3.4?vni=16777216",
            "vxlan://?vni=1",
            "vxlan://1.2.3.4?vni=1&x=2",
        ] {
            assert!(vxlan_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decap_lists() {
        use tap_common::config::decap;
        let d = decap(Some("vxlan:8472,geneve,gre,erspan")).unwrap();
        assert_eq!(
            d.bits,
            decap::VXLAN | decap::GENEVE | decap::GRE | decap::ERSPAN
        );
        assert_eq!(d.vxlan_port, 8472);
        assert_eq!(decap(Some("vxlan")).unwrap().vxlan_port, 4789);
        assert!(decap(Some("vxlan:0")).is_err());
        assert!(decap(Some("ipip")).is_err());
    }
}
