//! `tap capture -r FILE [EXPR]`, as tcpdump -r: the packets of a capture file (pcap or pcapng,
//! plain or zstd-compressed: everything tap writes), selected by the expression with the
//! userspace evaluator (the same language and compiler as the kernel's filter, as `tap query`
//! uses), printed as text, or with `-w OUT` written as pcap or pcapng.

use std::{
    io::{self, IsTerminal as _, Write},
    path::Path,
    process::ExitCode,
};

use anyhow::{Context as _, bail};
use tap::{
    filter::{self, eval::Evaluator},
    model::{Compression, Consumers, Format, Output},
    print::{LINKTYPE_ETHERNET, PacketRef, Printer},
    replay::capture_file::open_capture,
    settings::{Purpose, RawCapture, flags, rules},
    sink::{pcap, pcapng},
};

/// Snap length written files announce (libpcap's largest).
const SNAPLEN: u32 = 262_144;

/// Bytes buffered before a write.
const BLOCK: usize = 64 * 1024;

pub(crate) fn run(path: &Path, raw: &RawCapture) -> anyhow::Result<ExitCode> {
    let output = rules::read(raw).map_err(|e| flags::worded(&e))?;
    let image = rules::filter(&raw.filter).map_err(|e| flags::worded(&e))?;
    let print = rules::print(&raw.print, &output, &Consumers::default(), Purpose::Command)
        .map_err(|e| flags::worded(&e))?;
    if output.target == Output::Stdout && io::stdout().is_terminal() {
        bail!("standard output is a terminal: -w - writes binary packets; give -w FILE or pipe it");
    }
    let expression = filter::parse(&image.expression)
        .map_err(|e| anyhow::anyhow!("filter: {}", tap::support::excerpt::one_line(&e)))?;
    let compiled = expression
        .as_ref()
        .map(filter::compile_expr)
        .transpose()
        .map_err(|e| anyhow::anyhow!("filter: {}", tap::support::excerpt::one_line(&e)))?;
    let evaluator = compiled.as_ref().map(Evaluator::new);
    let (mut reader, _) = open_capture(path)?;

    let mut writer = match &output.target {
        Output::None => None,
        Output::Stdout => Some(FileOut::new(Box::new(io::stdout()), &output)?),
        Output::File(out) => {
            let file = tap::support::safe_create::create(out, output.force)
                .with_context(|| format!("-w {}", out.display()))?;
            Some(FileOut::new(Box::new(file), &output)?)
        }
    };
    let mut printer = print.as_ref().map(|p| {
        let line_buffered = p.line_buffered || io::stdout().is_terminal();
        (Printer::new(p.options.clone()), line_buffered)
    });
    let stdout = io::stdout();
    let mut text = Vec::with_capacity(BLOCK * 2);
    let (mut read, mut selected) = (0u64, 0u64);
    let mut closed = false;
    let mut damaged = None;
    while raw.count.is_none_or(|c| selected < c) {
        let p = match reader.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => {
                damaged = Some(e);
                break;
            }
        };
        read += 1;
        if let Some(ev) = &evaluator {
            if p.linktype != LINKTYPE_ETHERNET {
                bail!(
                    "{}: a filter needs Ethernet packets (link type {})",
                    path.display(),
                    p.linktype
                );
            }
            if ev.eval(&p.data).is_none() {
                continue;
            }
        }
        selected += 1;
        if let Some(w) = &mut writer {
            let name = reader.interface_name(p.interface).map(str::to_owned);
            if !w.packet(&p, name.as_deref())? {
                closed = true;
                break;
            }
        }
        if let Some((printer, line_buffered)) = &mut printer {
            printer.format(
                &PacketRef {
                    ts_ns: p.ts_ns,
                    interface: None,
                    direction: tap::print::Direction::Unknown,
                    linktype: p.linktype,
                    orig_len: p.orig_len,
                    data: &p.data,
                },
                &mut text,
            );
            if *line_buffered || text.len() >= BLOCK {
                if !write_stdout(&stdout, &text, *line_buffered)? {
                    closed = true;
                    break;
                }
                text.clear();
            }
        }
    }
    if !closed {
        write_stdout(&stdout, &text, true)?;
        if let Some(w) = writer {
            w.finish()?;
        }
    }
    if !raw.quiet {
        eprintln!("{read} packets read, {selected} selected");
    }
    if let Some(e) = damaged {
        bail!("{}: {e}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `text`; false when the reader went away (a normal end, `| head`).
fn write_stdout(stdout: &io::Stdout, text: &[u8], flush: bool) -> anyhow::Result<bool> {
    let mut out = stdout.lock();
    let r = out
        .write_all(text)
        .and_then(|()| if flush { out.flush() } else { Ok(()) });
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing standard output"),
    }
}

/// The `-w` output of `-r`: pcap or pcapng, plain or zstd.
struct FileOut {
    out: Box<dyn Write>,
    format: Format,
    buf: Vec<u8>,
    /// pcap: the link type of the file's header, once written.
    linktype: Option<u32>,
    /// pcapng: output interface ids by input interface id.
    ids: Vec<Option<u32>>,
    described: u32,
}

impl FileOut {
    fn new(out: Box<dyn Write>, output: &tap::model::OutputConfig) -> anyhow::Result<Self> {
        let out: Box<dyn Write> = match output.compression {
            Compression::None => out,
            Compression::Zstd { level } => Box::new(
                zstd::stream::write::Encoder::new(out, level)
                    .context("zstd")?
                    .auto_finish(),
            ),
        };
        let mut buf = Vec::with_capacity(BLOCK * 2);
        if output.format == Format::Pcapng {
            let mut info = pcapng::SectionInfo::of_this_host();
            info.application = format!("tap {} -r", env!("CARGO_PKG_VERSION"));
            pcapng::section_header(&mut buf, &info);
        }
        Ok(Self {
            out,
            format: output.format,
            buf,
            linktype: None,
            ids: Vec::new(),
            described: 0,
        })
    }

    /// False when the reader of a pipe went away.
    fn packet(
        &mut self,
        p: &tap::replay::reader::FilePacket,
        name: Option<&str>,
    ) -> anyhow::Result<bool> {
        match self.format {
            Format::Pcap => {
                match self.linktype {
                    None => {
                        self.buf
                            .extend_from_slice(&pcap::global_header(SNAPLEN, p.linktype));
                        self.linktype = Some(p.linktype);
                    }
                    Some(l) if l != p.linktype => {
                        bail!(
                            "-w: pcap holds one link type; the file mixes {l} and {}: use .pcapng",
                            p.linktype
                        );
                    }
                    Some(_) => {}
                }
                pcap::record(&mut self.buf, p.ts_ns, p.orig_len, &p.data);
            }
            Format::Pcapng => {
                if p.linktype != LINKTYPE_ETHERNET {
                    bail!(
                        "-w: pcapng output takes Ethernet packets (link type {})",
                        p.linktype
                    );
                }
                let at = p.interface as usize;
                if self.ids.len() <= at {
                    self.ids.resize(at + 1, None);
                }
                let id = if let Some(id) = self.ids[at] {
                    id
                } else {
                    let name = name.map_or_else(|| format!("if{at}"), str::to_owned);
                    let desc = pcapng::InterfaceDesc {
                        ifindex: 0,
                        hook: 0,
                        description: name.clone(),
                        name,
                    };
                    pcapng::interface_description(&mut self.buf, &desc, SNAPLEN, "");
                    let id = self.described;
                    self.described += 1;
                    self.ids[at] = Some(id);
                    id
                };
                pcapng::enhanced_packet(
                    &mut self.buf,
                    id,
                    p.ts_ns,
                    p.orig_len,
                    &p.data,
                    p.flags,
                    None,
                );
            }
        }
        if self.buf.len() >= BLOCK {
            return self.flush();
        }
        Ok(true)
    }

    fn flush(&mut self) -> anyhow::Result<bool> {
        let r = self
            .out
            .write_all(&self.buf)
            .and_then(|()| self.out.flush());
        self.buf.clear();
        match r {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(e).context("-w"),
        }
    }

    fn finish(mut self) -> anyhow::Result<()> {
        if self.format == Format::Pcap && self.linktype.is_none() {
            self.buf
                .extend_from_slice(&pcap::global_header(SNAPLEN, LINKTYPE_ETHERNET));
        }
        self.flush()?;
        Ok(())
    }
}
