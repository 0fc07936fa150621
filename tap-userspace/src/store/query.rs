//! `tap query`: packets (or flows) of a store, chosen by a filter and a time window.
//!
//! 1. Files: every capture file of the directory, in name order (their order in time), whose
//!    packets' time span (from its index's footer) meets the window. A file without a valid
//!    index (just finished, left by a crash, put there by hand) is indexed on the fly; one that
//!    cannot be read is skipped with a warning and counted.
//! 2. Flows: those of each file the planner ([`super::plan`]) cannot rule out, whose time span
//!    meets the window.
//! 3. Blocks: the blocks of the file holding packets of those flows, whose time span meets the
//!    window; only they are read (one positioned read each, plus the file's header).
//! 4. Packets: each packet of those blocks in the window is tested with the exact evaluator
//!    (`filter::compile`, `filter::eval::Evaluator`), the same code that decides in the kernel.
//! 5. Order: the files' selected packets are merged by timestamp, each file's in its own order,
//!    a tie going to the earlier file: what `mergecap` makes of `tcpdump -r FILE EXPR` of
//!    each file with the same window.
//!
//! The window is `[since, until)`: `--since` inclusive, `--until` exclusive, so adjacent
//! windows never share a packet.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, VecDeque},
    io::{self, Write},
    path::{Path, PathBuf},
};

use tracing::warn;

use super::{
    StoreError,
    blocks::{self, Interface},
    capfile::{self, BlockReader},
    flow::FlowKey,
    index::{Block, BlockKind},
    layout::{self, CaptureFile},
    plan::{self, FlowView},
    reindex,
    table::FlowRow,
};
use crate::{
    filter::{self, Expr, eval::Evaluator},
    sink::{
        file::OutFile,
        pcap,
        pcapng::{self, InterfaceDesc, SectionInfo},
    },
};

/// What to look for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// ns since the epoch, inclusive.
    pub since_ns: Option<u64>,
    /// ns since the epoch, exclusive.
    pub until_ns: Option<u64>,
    /// The filter expression (pcap-filter), empty for all packets.
    pub expr: String,
}

impl Selection {
    /// Validates a query's settings, whatever front door they came through (flags, HTTP
    /// parameters): times (RFC 3339 or relative to now, see [`super::time`]) and the filter
    /// expression (the parser's one-line message when it is bad). Nothing is read.
    ///
    /// # Errors
    ///
    /// [`StoreError::Setting`] naming `since` or `until` and why; [`StoreError::Filter`].
    pub fn parse(since: Option<&str>, until: Option<&str>, expr: &str) -> Result<Self, StoreError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let time = |option: &'static str, v: Option<&str>| {
            v.map(|s| {
                super::time::parse(s, now).map_err(|reason| StoreError::Setting {
                    option,
                    value: s.to_string(),
                    reason,
                })
            })
            .transpose()
        };
        let sel = Self {
            since_ns: time("since", since)?,
            until_ns: time("until", until)?,
            expr: expr.trim().to_string(),
        };
        if let (Some(s), Some(u)) = (sel.since_ns, sel.until_ns) {
            if u <= s {
                return Err(StoreError::Setting {
                    option: "until",
                    value: until.unwrap_or_default().to_string(),
                    reason: "must be after since".into(),
                });
            }
        }
        filter::parse(&sel.expr)?;
        Ok(sel)
    }

    fn in_window(&self, ts: u64) -> bool {
        self.since_ns.is_none_or(|s| ts >= s) && self.until_ns.is_none_or(|u| ts < u)
    }

    /// Whether a span of packet times `[first, last]` meets the window.
    fn meets(&self, first: u64, last: u64) -> bool {
        self.since_ns.is_none_or(|s| last >= s) && self.until_ns.is_none_or(|u| first < u)
    }
}

/// How a query went.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueryStats {
    /// Capture files in the store.
    pub files: u64,
    /// Files whose packets' times miss the window.
    pub files_outside_window: u64,
    /// Files with no flow the filter may select.
    pub files_without_match: u64,
    /// Files read (blocks of them).
    pub files_read: u64,
    /// Files indexed on the fly (no valid index on disk).
    pub files_indexed_now: u64,
    /// Files skipped because they cannot be read, with why.
    pub skipped: Vec<(String, String)>,
    /// Flows selected by the planner.
    pub flows: u64,
    /// Blocks read, and their bytes on disk.
    pub blocks_read: u64,
    pub bytes_read: u64,
    /// Packets tested with the filter, and written.
    pub packets_tested: u64,
    pub packets: u64,
}

/// One capture file's plan.
struct FilePlan {
    capture: CaptureFile,
    /// All its blocks (from the index), and the ordinals of those to read, ascending.
    blocks: Vec<Block>,
    read: Vec<usize>,
    /// Earliest time of its packets that may be selected (for the merge).
    first_ns: u64,
}

/// The flows of one file, as the planner needs them.
struct Flows {
    rows: Vec<FlowRow>,
    first_ns: u64,
    last_ns: u64,
    /// Blocks when the file was indexed on the fly.
    blocks: Option<Vec<Block>>,
}

fn view(row: &FlowRow) -> FlowView<'_> {
    let (ab, ba) = if row.first_forward {
        (row.packets[0], row.packets[1])
    } else {
        (row.packets[1], row.packets[0])
    };
    FlowView {
        key: &row.key,
        forward: ab > 0,
        backward: ba > 0,
    }
}

/// Loads a file's flows: from its index, or by reading it through; `None` when the file has
/// no packet in the window. `want_blocks`: the rows whose block runs are needed. `Err`: skip
/// it (why).
fn flows_of(
    capture: &CaptureFile,
    stats: &mut QueryStats,
    sel: &Selection,
    want_blocks: &dyn Fn(&FlowRow) -> bool,
) -> Result<Option<Flows>, String> {
    // The footer alone rules a file out by time, without decoding its rows.
    let keep = |m: &super::table::Meta| m.packets > 0 && sel.meets(m.first_ns, m.last_ns);
    match reindex::load_flows(capture, &keep, want_blocks) {
        Ok(None) => {
            stats.files_outside_window += 1;
            Ok(None)
        }
        Ok(Some((meta, rows))) => Ok(Some(Flows {
            rows,
            first_ns: meta.first_ns,
            last_ns: meta.last_ns,
            blocks: None,
        })),
        Err(e) => {
            if layout::flows_path(&capture.path).exists() {
                warn!(path = %capture.path.display(), error = %e, "the index cannot be used; reading the file through");
            }
            let scanned = reindex::index_capture(capture, false).map_err(|e| e.to_string())?;
            stats.files_indexed_now += 1;
            let (first_ns, last_ns) = scanned.index.span();
            let rows = scanned
                .index
                .flows
                .iter()
                .map(|f| FlowRow {
                    key: f.key,
                    first_forward: f.first_forward,
                    community_id: None,
                    first_ns: f.first_ns,
                    last_ns: f.last_ns,
                    packets: if f.first_forward {
                        f.packets
                    } else {
                        [f.packets[1], f.packets[0]]
                    },
                    bytes: if f.first_forward {
                        f.bytes
                    } else {
                        [f.bytes[1], f.bytes[0]]
                    },
                    block_runs: super::table::runs(&f.blocks),
                })
                .collect();
            Ok(Some(Flows {
                rows,
                first_ns,
                last_ns,
                blocks: Some(scanned.index.blocks),
            }))
        }
    }
}

fn skip(stats: &mut QueryStats, path: &Path, why: String) {
    warn!(path = %path.display(), reason = %why, "skipped");
    stats.skipped.push((path.display().to_string(), why));
}

/// Plans the packet query over `dir`.
fn plan_files(
    dir: &Path,
    sel: &Selection,
    expr: Option<&Expr>,
    stats: &mut QueryStats,
) -> Result<Vec<FilePlan>, StoreError> {
    let listing = layout::list(dir)?;
    stats.files = listing.captures.len() as u64;
    let mut plans = Vec::new();
    for capture in listing.captures {
        let want = |row: &FlowRow| {
            sel.meets(row.first_ns, row.last_ns) && plan::may_match(expr, &view(row))
        };
        let flows = match flows_of(&capture, stats, sel, &want) {
            Ok(Some(f)) => f,
            Ok(None) => continue,
            Err(why) => {
                skip(stats, &capture.path, why);
                continue;
            }
        };
        if flows.rows.is_empty() || !sel.meets(flows.first_ns, flows.last_ns) {
            stats.files_outside_window += 1;
            continue;
        }
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for row in &flows.rows {
            if want(row) {
                stats.flows += 1;
                runs.extend_from_slice(&row.block_runs);
            }
        }
        if runs.is_empty() {
            stats.files_without_match += 1;
            continue;
        }
        let blocks = match flows.blocks {
            Some(b) => b,
            None => match reindex::load_blocks(&capture) {
                Ok(b) => b,
                Err(e) => {
                    skip(stats, &capture.path, e.to_string());
                    continue;
                }
            },
        };
        let mut wanted = vec![false; blocks.len()];
        let mut damaged = false;
        for (first, n) in runs {
            let (first, n) = (first as usize, n as usize);
            match wanted.get_mut(first..first.saturating_add(n)) {
                Some(w) => w.fill(true),
                None => damaged = true,
            }
        }
        if damaged {
            skip(
                stats,
                &capture.path,
                "the index names blocks it does not hold".into(),
            );
            continue;
        }
        let read: Vec<usize> = (0..blocks.len())
            .filter(|&i| {
                wanted[i]
                    && blocks[i].kind == BlockKind::Packets
                    && sel.meets(blocks[i].first_ns, blocks[i].last_ns)
            })
            .collect();
        if read.is_empty() {
            stats.files_without_match += 1;
            continue;
        }
        let first_ns = read
            .iter()
            .map(|&i| blocks[i].first_ns)
            .min()
            .unwrap_or(0)
            .max(sel.since_ns.unwrap_or(0));
        plans.push(FilePlan {
            capture,
            blocks,
            read,
            first_ns,
        });
    }
    Ok(plans)
}

/// A selected packet.
#[derive(Debug)]
struct Selected {
    ts_ns: u64,
    orig_len: u32,
    data: Vec<u8>,
    flags: u32,
    comment: Option<Vec<u8>>,
    /// Interface id in its file.
    interface: u32,
}

/// The selected packets of one file, block by block.
struct Stream {
    plan: FilePlan,
    reader: BlockReader,
    next: usize,
    ready: VecDeque<Selected>,
}

/// The filter, compiled once.
struct Filter<'a> {
    eval: Option<Evaluator<'a>>,
}

impl Stream {
    fn open(plan: FilePlan) -> Result<Self, StoreError> {
        let first = plan.blocks.first().copied().ok_or_else(|| StoreError::Io {
            path: plan.capture.path.clone(),
            source: io::Error::other("the index has no blocks"),
        })?;
        let reader = BlockReader::open(&plan.capture.path, &first)?;
        Ok(Self {
            plan,
            reader,
            next: 0,
            ready: VecDeque::new(),
        })
    }

    /// Reads blocks until a packet is selected or the blocks run out.
    fn fill(
        &mut self,
        filter: &Filter<'_>,
        sel: &Selection,
        stats: &mut QueryStats,
    ) -> Result<(), StoreError> {
        while self.ready.is_empty() && self.next < self.plan.read.len() {
            let i = self.plan.read[self.next];
            self.next += 1;
            for j in capfile::interface_blocks(&self.plan.blocks, i, self.reader.interfaces.len()) {
                if self.plan.blocks[j].interfaces as usize > self.reader.interfaces.len() {
                    self.reader.learn(&self.plan.blocks[j])?;
                }
            }
            let b = self.plan.blocks[i];
            stats.blocks_read += 1;
            stats.bytes_read += b.len;
            let ready = &mut self.ready;
            let mut tested = 0u64;
            self.reader.read(&b, &mut |p, iface| {
                let ts_ns = blocks::to_ns(p.ts, iface.units);
                if !sel.in_window(ts_ns) {
                    return;
                }
                tested += 1;
                if filter
                    .eval
                    .as_ref()
                    .is_some_and(|e| e.eval(p.data).is_none())
                {
                    return;
                }
                ready.push_back(Selected {
                    ts_ns,
                    orig_len: p.orig_len,
                    data: p.data.to_vec(),
                    flags: p.flags,
                    comment: p.comment.map(<[u8]>::to_vec),
                    interface: p.interface,
                });
            })?;
            stats.packets_tested += tested;
        }
        Ok(())
    }
}

/// Output format of `tap query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// pcap, nanosecond timestamps, Ethernet.
    Pcap,
    /// pcapng: the files' interfaces (merged by name and description), directions, comments.
    Pcapng,
}

/// Where the packets go.
pub enum Sink {
    Stdout,
    File(OutFile),
    /// Any writer (an HTTP response body): a reader that goes away (broken pipe, reset) ends
    /// the query quietly, as `| head` does.
    Writer(Box<dyn Write + Send>),
}

/// Encodes and writes the merged packets.
struct Writer {
    format: Format,
    sink: Sink,
    buf: Vec<u8>,
    /// (stream, interface in its file) → interface id in the output.
    ids: HashMap<(usize, u32), u32>,
    /// Output interfaces, by what describes them.
    described: Vec<Interface>,
    closed: bool,
}

/// Snap length the pcap header announces (libpcap's largest).
const PCAP_SNAPLEN: u32 = 262_144;

impl Writer {
    fn new(format: Format, sink: Sink) -> Self {
        let mut buf = Vec::with_capacity(1 << 20);
        match format {
            Format::Pcap => {
                buf.extend_from_slice(&pcap::global_header(PCAP_SNAPLEN, pcap::LINKTYPE_ETHERNET));
            }
            Format::Pcapng => {
                let mut info = SectionInfo::of_this_host();
                info.application = format!("tap {} query", env!("CARGO_PKG_VERSION"));
                pcapng::section_header(&mut buf, &info);
            }
        }
        Self {
            format,
            sink,
            buf,
            ids: HashMap::new(),
            described: Vec::new(),
            closed: false,
        }
    }

    fn packet(&mut self, stream: usize, iface: &Interface, p: &Selected) -> Result<(), StoreError> {
        match self.format {
            Format::Pcap => pcap::record(&mut self.buf, p.ts_ns, p.orig_len, &p.data),
            Format::Pcapng => {
                let id = if let Some(&id) = self.ids.get(&(stream, p.interface)) {
                    id
                } else {
                    let known = self.described.iter().position(|d| d == iface);
                    let at = known.unwrap_or_else(|| {
                        let desc = InterfaceDesc {
                            ifindex: 0,
                            hook: 0,
                            name: iface.name.clone(),
                            description: iface.description.clone(),
                        };
                        pcapng::interface_description(
                            &mut self.buf,
                            &desc,
                            iface.snaplen,
                            &iface.filter,
                        );
                        self.described.push(iface.clone());
                        self.described.len() - 1
                    });
                    let id = u32::try_from(at).unwrap_or(u32::MAX);
                    self.ids.insert((stream, p.interface), id);
                    id
                };
                pcapng::enhanced_packet(
                    &mut self.buf,
                    id,
                    p.ts_ns,
                    p.orig_len,
                    &p.data,
                    p.flags,
                    p.comment.as_deref(),
                );
            }
        }
        if self.buf.len() >= 1 << 20 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        if self.buf.is_empty() || self.closed {
            self.buf.clear();
            return Ok(());
        }
        match &mut self.sink {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                match out.write_all(&self.buf).and_then(|()| out.flush()) {
                    Ok(()) => {}
                    // `tap query ... | head`: a normal end.
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => self.closed = true,
                    Err(e) => {
                        return Err(StoreError::Io {
                            path: PathBuf::from("-"),
                            source: e,
                        });
                    }
                }
            }
            Sink::Writer(w) => match w.write_all(&self.buf).and_then(|()| w.flush()) {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::BrokenPipe
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    self.closed = true;
                }
                Err(e) => {
                    return Err(StoreError::Io {
                        path: PathBuf::from("(writer)"),
                        source: e,
                    });
                }
            },
            Sink::File(f) => {
                f.append(&self.buf, |_| 0).map_err(|e| StoreError::Io {
                    path: f.current_name().to_path_buf(),
                    source: e.error,
                })?;
            }
        }
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<(), StoreError> {
        self.flush()?;
        if let Sink::File(f) = self.sink {
            f.finish(false)?;
        }
        Ok(())
    }
}

/// Runs a packet query: writes the selected packets, merged in time order, to `sink`.
///
/// # Panics
///
/// Never: the merge only pops streams it holds.
///
/// # Errors
///
/// When a file cannot be read or written, or holds what it should not (the error says which).
pub fn packets(
    dir: &Path,
    sel: &Selection,
    format: Format,
    sink: Sink,
) -> Result<QueryStats, StoreError> {
    let expr = filter::parse(&sel.expr)?;
    let compiled = expr.as_ref().map(filter::compile_expr).transpose()?;
    let filt = Filter {
        eval: compiled.as_ref().map(Evaluator::new),
    };
    let mut stats = QueryStats::default();
    let mut plans = plan_files(dir, sel, expr.as_ref(), &mut stats)?;
    stats.files_read = plans.len() as u64;
    // Files join the merge in order of their first possible packet; ties by name order.
    let mut pending: VecDeque<(usize, FilePlan)> = {
        let mut v: Vec<(usize, FilePlan)> = plans.drain(..).enumerate().collect();
        v.sort_by_key(|(i, p)| (p.first_ns, *i));
        v.into()
    };
    let mut streams: HashMap<usize, Stream> = HashMap::new();
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut out = Writer::new(format, sink);
    loop {
        // Open every file that may hold a packet as early as the earliest head.
        while let Some((_, p)) = pending.front() {
            let earliest = heap.peek().map(|Reverse((ts, _))| *ts);
            if earliest.is_some_and(|h| p.first_ns > h) {
                break;
            }
            let (i, plan) = pending.pop_front().expect("peeked");
            let path = plan.capture.path.clone();
            let mut s = match Stream::open(plan) {
                Ok(s) => s,
                Err(e) => {
                    skip(&mut stats, &path, e.to_string());
                    continue;
                }
            };
            if let Err(e) = s.fill(&filt, sel, &mut stats) {
                skip(&mut stats, &path, e.to_string());
                continue;
            }
            if let Some(p) = s.ready.front() {
                heap.push(Reverse((p.ts_ns, i)));
                streams.insert(i, s);
            }
        }
        let Some(Reverse((_, i))) = heap.pop() else {
            break;
        };
        let s = streams.get_mut(&i).expect("a stream in the heap");
        let p = s.ready.pop_front().expect("a packet at its head");
        let iface = s
            .reader
            .interfaces
            .get(p.interface as usize)
            .cloned()
            .unwrap_or_else(|| Interface {
                linktype: 1,
                snaplen: PCAP_SNAPLEN,
                units: 1_000_000_000,
                name: String::new(),
                description: String::new(),
                filter: String::new(),
            });
        out.packet(i, &iface, &p)?;
        stats.packets += 1;
        if out.closed {
            break;
        }
        let path = s.plan.capture.path.clone();
        if let Err(e) = s.fill(&filt, sel, &mut stats) {
            skip(
                &mut stats,
                &path,
                format!("{e} (packets before it were written)"),
            );
            streams.remove(&i);
            continue;
        }
        match s.ready.front() {
            Some(n) => heap.push(Reverse((n.ts_ns, i))),
            None => {
                streams.remove(&i);
            }
        }
    }
    out.finish()?;
    Ok(stats)
}

/// A flow over the files of a query.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FlowSummary {
    pub community_id: Option<String>,
    pub ip_version: Option<u8>,
    pub protocol: Option<u8>,
    pub ethertype: u16,
    /// The side that sent the flow's first packet.
    pub src: String,
    pub dst: String,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub vlan: Option<u16>,
    pub inner_vlan: Option<u16>,
    pub tunnel: Option<String>,
    pub tunnel_id: Option<u32>,
    /// ns since the epoch.
    pub first_ns: u64,
    pub last_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    pub src_packets: u64,
    pub src_bytes: u64,
    pub dst_packets: u64,
    pub dst_bytes: u64,
    /// Capture files holding it.
    pub files: u64,
}

/// Runs a flow query: the flows of the window the filter may select, summed over files.
///
/// # Errors
///
/// When a file cannot be read or written, or holds what it should not (the error says which).
pub fn flows(dir: &Path, sel: &Selection) -> Result<(Vec<FlowSummary>, QueryStats), StoreError> {
    use super::{
        flow::FAMILY_L2,
        table::{addr_text, tunnel_name},
    };
    let expr = filter::parse(&sel.expr)?;
    let mut stats = QueryStats::default();
    let listing = layout::list(dir)?;
    stats.files = listing.captures.len() as u64;
    // key → (summary so far, a→b first?, [a→b, b→a] packets and bytes)
    let mut by_key: HashMap<FlowKey, (FlowSummary, bool, [u64; 2], [u64; 2])> = HashMap::new();
    let mut order: Vec<FlowKey> = Vec::new();
    for capture in &listing.captures {
        let flows = match flows_of(capture, &mut stats, sel, &|_| false) {
            Ok(Some(f)) => f,
            Ok(None) => continue,
            Err(why) => {
                skip(&mut stats, &capture.path, why);
                continue;
            }
        };
        stats.files_read += 1;
        for row in &flows.rows {
            if !sel.meets(row.first_ns, row.last_ns) || !plan::may_match(expr.as_ref(), &view(row))
            {
                continue;
            }
            stats.flows += 1;
            let (ab_i, ba_i) = if row.first_forward { (0, 1) } else { (1, 0) };
            let e = by_key.entry(row.key).or_insert_with(|| {
                order.push(row.key);
                let k = &row.key;
                let (s, sp, d, dp) = row.endpoints();
                let ip = k.family != FAMILY_L2;
                let ports = k.has_ports();
                (
                    FlowSummary {
                        community_id: row.community_id.clone().or_else(|| k.community_id()),
                        ip_version: ip.then_some(k.family),
                        protocol: ip.then_some(k.proto),
                        ethertype: k.ethertype,
                        src: addr_text(k.family, &s),
                        dst: addr_text(k.family, &d),
                        src_port: ports.then_some(sp),
                        dst_port: ports.then_some(dp),
                        vlan: (k.vlans >= 1).then_some(k.vlan[0]),
                        inner_vlan: (k.vlans >= 2).then_some(k.vlan[1]),
                        tunnel: tunnel_name(k.tunnel).map(ToString::to_string),
                        tunnel_id: tunnel_name(k.tunnel).map(|_| k.tunnel_id),
                        first_ns: row.first_ns,
                        last_ns: row.last_ns,
                        packets: 0,
                        bytes: 0,
                        src_packets: 0,
                        src_bytes: 0,
                        dst_packets: 0,
                        dst_bytes: 0,
                        files: 0,
                    },
                    row.first_forward,
                    [0; 2],
                    [0; 2],
                )
            });
            e.0.first_ns = e.0.first_ns.min(row.first_ns);
            e.0.last_ns = e.0.last_ns.max(row.last_ns);
            e.0.files += 1;
            e.2[0] += row.packets[ab_i];
            e.2[1] += row.packets[ba_i];
            e.3[0] += row.bytes[ab_i];
            e.3[1] += row.bytes[ba_i];
        }
    }
    let mut out: Vec<FlowSummary> = order
        .into_iter()
        .filter_map(|k| by_key.remove(&k))
        .map(|(mut s, ab_first, p, b)| {
            let (si, di) = if ab_first { (0, 1) } else { (1, 0) };
            s.src_packets = p[si];
            s.dst_packets = p[di];
            s.src_bytes = b[si];
            s.dst_bytes = b[di];
            s.packets = p[0] + p[1];
            s.bytes = b[0] + b[1];
            s
        })
        .collect();
    out.sort_by(|a, b| (a.first_ns, &a.src, &a.dst).cmp(&(b.first_ns, &b.src, &b.dst)));
    Ok((out, stats))
}

/// RFC 3339 in UTC with nanoseconds.
#[must_use]
pub fn rfc3339(ns: u64) -> String {
    let secs = i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX);
    let nanos = (ns % 1_000_000_000) as u32;
    chrono::DateTime::from_timestamp(secs, nanos).map_or_else(
        || ns.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer into shared memory that fails with a broken pipe after `limit` bytes (a client
    /// that goes away).
    struct Client {
        got: Arc<Mutex<Vec<u8>>>,
        limit: usize,
    }

    impl Write for Client {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut got = self.got.lock().unwrap();
            if got.len() + buf.len() > self.limit {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            got.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn queries_into_any_writer_and_a_reader_that_leaves_costs_nothing() {
        let dir = std::env::temp_dir().join(format!("tap-query-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let n = super::super::bench::fill(
            &dir,
            20 << 20,
            500,
            50,
            200,
            crate::model::Compression::None,
        )
        .unwrap();
        assert!(n > 40_000);
        let sel = Selection::parse(None, None, super::super::bench::NEEDLE_FILTER).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink::Writer(Box::new(Client {
            got: Arc::clone(&got),
            limit: usize::MAX,
        }));
        let stats = packets(&dir, &sel, Format::Pcap, sink).unwrap();
        assert_eq!(stats.packets, 200);
        let bytes = got.lock().unwrap().clone();
        let mut r = crate::replay::reader::CaptureReader::new(&bytes[..]).unwrap();
        let mut count = 0;
        while let Some(p) = r.next_packet().unwrap() {
            assert_eq!(&p.data[26..30], &[203, 0, 113, 77]);
            count += 1;
        }
        assert_eq!(count, 200);
        // All packets, to a reader that stops after 64 KiB: a quiet end, not an error.
        let all = Selection::parse(None, None, "").unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink::Writer(Box::new(Client {
            got: Arc::clone(&got),
            limit: 64 << 10,
        }));
        let stats = packets(&dir, &all, Format::Pcapng, sink).unwrap();
        assert!(stats.packets < n);
        // Flows: the needle is one of them.
        let (flows, _) = flows(&dir, &sel).unwrap();
        assert_eq!(flows.len(), 1);
        assert_eq!(
            (flows[0].packets, flows[0].src.as_str()),
            (200, "203.0.113.77")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn settings_are_checked_before_anything_is_read() {
        assert!(Selection::parse(Some("-15m"), Some("now"), "tcp").is_ok());
        for (since, until, expr) in [
            (Some("yesterday"), None, ""),
            (None, Some("-1x"), ""),
            (Some("-1m"), Some("-2m"), ""),
            (None, None, "port banana"),
        ] {
            let e = Selection::parse(since, until, expr)
                .unwrap_err()
                .to_string();
            assert!(!e.is_empty() && !e.contains('\n'), "{e}");
        }
    }
}
