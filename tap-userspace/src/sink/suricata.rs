//! `--suricata-socket PATH`: submits each finished capture file to a Suricata running in
//! unix-socket mode (`suricata --unix-socket=PATH`), the way `suricatasc` does.
//!
//! Protocol (Suricata 7): the client sends `{"version": "0.2"}`, then one JSON command per
//! line; each gets a JSON reply `{"return": "OK"|"NOK", "message": ...}`. Files are submitted
//! with `pcap-file` and absolute paths; Suricata queues them and processes them in order, with
//! flow state reset per file. Continuous mode is never used (it crashed Suricata 7 here).
//!
//! Only files Suricata can open are submitted: after one it cannot (a file without a packet, from
//! a quiet interval under `-G`: "failed to get first packet timestamp"; a compressed file:
//! "unknown file format"), Suricata 7 answers no further command on the socket. Paths are made
//! absolute, since Suricata resolves them in its own working directory.
//!
//! The driver runs on its own thread: capture never waits for Suricata. When Suricata is down or
//! restarts, the driver reconnects with a back-off and submits what it has not yet had accepted.

use std::{
    collections::VecDeque,
    fs::File,
    io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    sync::mpsc::{self, Receiver, RecvTimeoutError, Sender},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

/// What the driver did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SuricataReport {
    /// Files Suricata accepted (`OK`).
    pub accepted: u64,
    /// Files Suricata refused (`NOK`), with its message.
    pub refused: Vec<(PathBuf, String)>,
    /// Files never submitted (Suricata unreachable until the end).
    pub unsent: u64,
    /// Files without a packet, not submitted.
    pub empty: u64,
    /// Connections made (more than one: Suricata restarted or was late).
    pub connections: u64,
}

/// The driver's handle.
pub struct SuricataDriver {
    tx: Option<Sender<PathBuf>>,
    thread: Option<JoinHandle<SuricataReport>>,
}

/// The `pcap-file` command for `file`, results written to `output_dir`.
pub fn pcap_file_command(file: &Path, output_dir: &Path) -> String {
    serde_json::json!({
        "command": "pcap-file",
        "arguments": { "filename": file, "output-dir": output_dir }
    })
    .to_string()
}

/// What a finished capture file holds, as far as Suricata is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileContent {
    /// pcap or pcapng with at least one packet.
    Packets,
    /// pcap or pcapng without a packet (or cut short before its first).
    Empty,
    /// Neither pcap nor pcapng (compressed, say): Suricata cannot read it.
    Foreign,
}

/// Looks at a finished capture file: a pcap file longer than its global header, a pcapng file
/// with a packet block.
pub fn file_content(path: &Path) -> io::Result<FileContent> {
    const PCAP_HEADER: u64 = 24;
    let mut f = File::open(path)?;
    let mut magic = [0u8; 4];
    if f.read_exact(&mut magic).is_err() {
        return Ok(FileContent::Empty);
    }
    match u32::from_le_bytes(magic) {
        0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1 => {
            Ok(if f.metadata()?.len() > PCAP_HEADER {
                FileContent::Packets
            } else {
                FileContent::Empty
            })
        }
        0x0a0d_0d0a => {
            // Block type and length, in the section's byte order (its magic follows the length).
            let mut head = [0u8; 12];
            f.seek(SeekFrom::Start(0))?;
            if f.read_exact(&mut head).is_err() {
                return Ok(FileContent::Empty);
            }
            let le = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) == 0x1a2b_3c4d;
            let word = |b: &[u8]| {
                let a = [b[0], b[1], b[2], b[3]];
                if le {
                    u32::from_le_bytes(a)
                } else {
                    u32::from_be_bytes(a)
                }
            };
            let mut at = 0u64;
            let mut block = [0u8; 8];
            loop {
                f.seek(SeekFrom::Start(at))?;
                if f.read_exact(&mut block).is_err() {
                    return Ok(FileContent::Empty);
                }
                // Enhanced, simple and obsolete packet blocks.
                if matches!(word(&block[..4]), 6 | 3 | 2) {
                    return Ok(FileContent::Packets);
                }
                let len = u64::from(word(&block[4..]));
                if len < 12 {
                    return Ok(FileContent::Empty);
                }
                at += len;
            }
        }
        _ => Ok(FileContent::Foreign),
    }
}

/// Reads one JSON reply (Suricata ends each with a newline).
fn read_reply(reader: &mut BufReader<UnixStream>) -> io::Result<serde_json::Value> {
    let mut line = String::new();
    loop {
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "Suricata closed the socket",
            ));
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line.trim()) {
            return Ok(v);
        }
        if line.len() > 1 << 20 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "reply too long"));
        }
    }
}

struct Connection {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

fn connect(socket: &Path) -> io::Result<Connection> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    writer.write_all(b"{\"version\": \"0.2\"}\n")?;
    let reply = read_reply(&mut reader)?;
    if reply.get("return").and_then(|r| r.as_str()) != Some("OK") {
        return Err(io::Error::other(format!(
            "Suricata refused the handshake: {reply}"
        )));
    }
    Ok(Connection { writer, reader })
}

/// Submits one file; Ok(Ok(())) accepted, Ok(Err(message)) refused, Err(io) connection trouble.
fn submit(conn: &mut Connection, file: &Path, output_dir: &Path) -> io::Result<Result<(), String>> {
    let mut cmd = pcap_file_command(file, output_dir);
    cmd.push('\n');
    conn.writer.write_all(cmd.as_bytes())?;
    let reply = read_reply(&mut conn.reader)?;
    match reply.get("return").and_then(|r| r.as_str()) {
        Some("OK") => Ok(Ok(())),
        _ => Ok(Err(reply
            .get("message")
            .map_or_else(|| reply.to_string(), ToString::to_string))),
    }
}

fn run(socket: PathBuf, output_dir: PathBuf, rx: Receiver<PathBuf>) -> SuricataReport {
    let mut report = SuricataReport::default();
    let mut pending: VecDeque<PathBuf> = VecDeque::new();
    let mut conn: Option<Connection> = None;
    let mut backoff = Duration::from_millis(100);
    let mut next_try = Instant::now();
    let mut closing: Option<Instant> = None;
    loop {
        // Take new files; after the capture ended, keep trying for a bounded time.
        let mut take = |p: PathBuf| match file_content(&p) {
            // A file that cannot be read now: Suricata will say so.
            Ok(FileContent::Packets) | Err(_) => {
                pending.push_back(std::path::absolute(&p).unwrap_or(p));
            }
            Ok(FileContent::Empty) => {
                tracing::info!(file = %p.display(), "no packet in the file: not submitted to Suricata");
                report.empty += 1;
            }
            Ok(FileContent::Foreign) => {
                let message =
                    "neither pcap nor pcapng (compressed?): Suricata cannot read it".to_string();
                tracing::error!(file = %p.display(), %message, "not submitted to Suricata");
                report.refused.push((p, message));
            }
        };
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(p) => take(p),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                if closing.is_none() {
                    closing = Some(Instant::now() + Duration::from_secs(10));
                }
            }
        }
        while let Ok(p) = rx.try_recv() {
            take(p);
        }
        if closing.is_some_and(|deadline| pending.is_empty() || Instant::now() > deadline) {
            break;
        }
        if pending.is_empty() {
            continue;
        }
        if conn.is_none() {
            if Instant::now() < next_try {
                continue;
            }
            match connect(&socket) {
                Ok(c) => {
                    report.connections += 1;
                    tracing::info!(socket = %socket.display(), "connected to Suricata");
                    conn = Some(c);
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    tracing::debug!(socket = %socket.display(), error = %e, "Suricata not reachable yet");
                    next_try = Instant::now() + backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        while let Some(file) = pending.front().cloned() {
            match submit(c, &file, &output_dir) {
                Ok(Ok(())) => {
                    report.accepted += 1;
                    tracing::info!(file = %file.display(), "submitted to Suricata");
                    pending.pop_front();
                }
                Ok(Err(message)) => {
                    tracing::error!(file = %file.display(), %message, "Suricata refused the file");
                    report.refused.push((file, message));
                    pending.pop_front();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lost the connection to Suricata; reconnecting");
                    conn = None;
                    next_try = Instant::now() + backoff;
                    break;
                }
            }
        }
    }
    report.unsent = pending.len() as u64;
    report
}

impl SuricataDriver {
    /// Starts the driver; returns it and the sender to give the writer.
    pub fn start(socket: PathBuf, output_dir: PathBuf) -> (Self, Sender<PathBuf>) {
        let (tx, rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("tap-suricata".into())
            .spawn(move || run(socket, output_dir, rx))
            .ok();
        (
            Self {
                tx: Some(tx.clone()),
                thread,
            },
            tx,
        )
    }

    /// Waits (bounded) for the last files to be submitted; returns lines for the summary.
    pub fn finish(mut self) -> Vec<String> {
        drop(self.tx.take());
        let Some(report) = self.thread.take().and_then(|t| t.join().ok()) else {
            return vec!["suricata: the driver thread failed".to_string()];
        };
        let mut lines = vec![format!(
            "suricata: {} files submitted, {} refused, {} not submitted, {} without packets skipped",
            report.accepted,
            report.refused.len(),
            report.unsent,
            report.empty
        )];
        for (file, message) in report.refused {
            lines.push(format!("suricata refused {}: {message}", file.display()));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    #[test]
    fn command_uses_absolute_paths_as_given() {
        let c = pcap_file_command(Path::new("/var/cap/a.pcap"), Path::new("/var/log/suricata"));
        let v: serde_json::Value = serde_json::from_str(&c).unwrap();
        assert_eq!(v["command"], "pcap-file");
        assert_eq!(v["arguments"]["filename"], "/var/cap/a.pcap");
        assert_eq!(v["arguments"]["output-dir"], "/var/log/suricata");
    }

    #[test]
    fn files_without_packets_are_told_apart() {
        use crate::sink::{pcap, pcapng};
        let dir = std::env::temp_dir().join(format!("tap-suri-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let check = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            file_content(&path).unwrap() == FileContent::Packets
        };
        let mut p = pcap::global_header(262_144, pcap::LINKTYPE_ETHERNET).to_vec();
        assert!(!check("header-only.pcap", &p));
        pcap::record(&mut p, 1, 3, &[1, 2, 3]);
        assert!(check("one.pcap", &p));
        let mut n = Vec::new();
        pcapng::section_header(&mut n, &pcapng::SectionInfo::of_this_host());
        let iface = pcapng::InterfaceDesc::new("eth0", 2, tap_common::event::HOOK_XDP);
        pcapng::interface_description(&mut n, &iface, 262_144, "");
        let mut quiet = n.clone();
        pcapng::interface_statistics(&mut quiet, 0, &pcapng::IfStats::default(), "");
        assert!(!check("quiet.pcapng", &quiet));
        pcapng::enhanced_packet(&mut n, 0, 1, 3, &[1, 2, 3], 0, None);
        assert!(check("one.pcapng", &n));
        assert!(!check("nothing", &[]));
        std::fs::write(dir.join("x.pcap.zst"), [0x28, 0xb5, 0x2f, 0xfd, 0, 0]).unwrap();
        assert_eq!(
            file_content(&dir.join("x.pcap.zst")).unwrap(),
            FileContent::Foreign
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A fake Suricata: handshake, then OK for files ending in .pcap and NOK otherwise; it
    /// closes the first connection after one file to force a reconnect.
    #[test]
    fn submits_reports_nok_and_reconnects() {
        let dir = std::env::temp_dir().join(format!("tap-suri-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("s.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).unwrap();
        let server = thread::spawn(move || {
            let mut seen = Vec::new();
            for round in 0..2 {
                let (stream, _) = listener.accept().unwrap();
                let mut w = stream.try_clone().unwrap();
                let mut r = BufReader::new(stream);
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                w.write_all(b"{\"return\": \"OK\", \"message\": \"0.2\"}\n")
                    .unwrap();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
                    let f = v["arguments"]["filename"].as_str().unwrap().to_string();
                    #[expect(
                        clippy::case_sensitive_file_extension_comparisons,
                        reason = "the capture writes .pcap, in lower case"
                    )]
                    let ok = f.ends_with(".pcap");
                    seen.push(f);
                    let reply = if ok {
                        "{\"return\": \"OK\", \"message\": \"Successfully added file to list\"}\n"
                    } else {
                        "{\"return\": \"NOK\", \"message\": \"File does not exist\"}\n"
                    };
                    w.write_all(reply.as_bytes()).unwrap();
                    if round == 0 {
                        break;
                    }
                }
            }
            seen
        });
        let (driver, tx) = SuricataDriver::start(sock.clone(), dir.clone());
        tx.send(PathBuf::from("/cap/one.pcap")).unwrap();
        thread::sleep(Duration::from_millis(500));
        tx.send(PathBuf::from("/cap/two.pcap")).unwrap();
        tx.send(PathBuf::from("/cap/three.txt")).unwrap();
        drop(tx);
        let lines = driver.finish();
        let seen = server.join().unwrap();
        assert_eq!(seen, ["/cap/one.pcap", "/cap/two.pcap", "/cap/three.txt"]);
        assert_eq!(
            lines[0],
            "suricata: 2 files submitted, 1 refused, 0 not submitted, 0 without packets skipped"
        );
        assert!(lines[1].contains("three.txt") && lines[1].contains("File does not exist"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
