//! One evidence file: `DIR/<time>-<sid>-<community-id>.pcapng` ([`EvidenceRequest::file_name`]).
//!
//! pcapng, as the capture writes it (nanosecond timestamps, one interface block per interface
//! and hook, directions in `epb_flags`), plus comments that Wireshark and tshark show:
//! - in the section header (`capinfos` prints them as "Capture comment", Wireshark under
//!   Statistics → Capture File Properties): what the file holds (the flow, the window, the packet
//!   count), `community_id: 1:…`, `suricata flow_id: N`, and one line per alert (sid, rev, gid,
//!   severity, Suricata's timestamp, signature, category), then how many alerts were not listed
//!   and how many packets did not fit;
//! - on the first packet at or after each alert's time (the packet that raised it: Suricata
//!   stamps an alert with its packet's time), `alert sid N severity S: SIGNATURE`, which tshark
//!   shows as `frame.comment` and Wireshark in the packet list and Expert Information.
//!
//! The file is built in memory (at most `max_bytes`; packets past that are left out and counted),
//! written under a temporary name through the capture's safe-create path ([`OutFile`]: 0600,
//! `O_NOFOLLOW`, never over an existing file), synced, renamed, and recorded in the directory's
//! custody manifest.

use std::path::{Path, PathBuf};

use super::{EvidenceError, EvidenceRequest};
use crate::{
    custody::{Custody, Entry, rfc3339},
    sink::{
        file::OutFile,
        pcapng::{
            self, InterfaceDesc, SectionInfo, direction_flags, enhanced_packet,
            interface_description,
        },
        rotate::temp_name,
    },
};

/// One packet of the flow, as the history holds it.
#[derive(Debug, Clone, Copy)]
pub struct EvidencePacket<'a> {
    /// ns since the epoch.
    pub ts_ns: u64,
    /// Length on the wire, bytes.
    pub orig_len: u32,
    /// The captured bytes (Ethernet frame).
    pub data: &'a [u8],
    /// Index into the `interfaces` given to [`write_evidence`].
    pub interface: u32,
    /// `tap_common::event::DIR_*`.
    pub direction: u8,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    pub path: PathBuf,
    pub packets: u64,
    /// Packets given that lie outside the window, or name no interface: not written.
    pub skipped: u64,
    /// Packets in the window left out for the size limit.
    pub left_out: u64,
    pub bytes: u64,
    /// The custody entry, when a manifest was given.
    pub entry: Option<Entry>,
}

fn time(ns: u64) -> String {
    rfc3339(
        i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX),
        u32::try_from(ns % 1_000_000_000).unwrap_or(0),
    )
}

/// The section header's comments.
fn comments(request: &EvidenceRequest, packets: u64, left_out: u64, max_bytes: u64) -> Vec<String> {
    let mut c = vec![
        format!(
            "tap evidence: {packets} packets of {} from {} to {}",
            request.flow.describe(),
            time(request.start_ns),
            time(request.end_ns)
        ),
        match &request.community_id {
            Some(id) => format!("community_id: {id}"),
            None => "community_id: none (Suricata's eve-log output has community-id off)".into(),
        },
    ];
    if let Some(id) = request.flow_id {
        c.push(format!("suricata flow_id: {id}"));
    }
    for a in &request.alerts {
        let mut line = format!(
            "alert: sid {} rev {} gid {} severity {} at {}: {}",
            a.sid, a.rev, a.gid, a.severity, a.timestamp, a.signature
        );
        if !a.category.is_empty() {
            line.push_str(" (");
            line.push_str(&a.category);
            line.push(')');
        }
        c.push(line);
    }
    if request.more_alerts > 0 {
        c.push(format!(
            "more alerts on this flow, not listed: {}",
            request.more_alerts
        ));
    }
    if left_out > 0 {
        c.push(format!(
            "left out: {left_out} packets past the file's size limit of {max_bytes} bytes"
        ));
    }
    c
}

/// Writes `request`'s evidence file into `dir` from `packets` (the flow's packets, oldest
/// first; those outside the window are skipped), at most `max_bytes` long, and records it in
/// `custody` when given.
///
/// # Errors
/// The file cannot be created (it exists, a symbolic link is there, the directory cannot be
/// written) or written; or the manifest cannot be appended to, in which case the file stays, as
/// written.
pub fn write_evidence<'a>(
    dir: &Path,
    request: &EvidenceRequest,
    interfaces: &[InterfaceDesc],
    packets: impl IntoIterator<Item = EvidencePacket<'a>>,
    max_bytes: u64,
    custody: Option<&mut Custody>,
) -> Result<Written, EvidenceError> {
    let mut alert_times: Vec<(u64, String)> = request
        .alerts
        .iter()
        .map(|a| {
            (
                a.time_ns,
                format!(
                    "alert sid {} severity {}: {}",
                    a.sid, a.severity, a.signature
                ),
            )
        })
        .collect();
    alert_times.sort_by_key(|(t, _)| *t);
    let mut next_alert = 0;
    let mut body = Vec::new();
    let (mut written, mut skipped, mut left_out) = (0u64, 0u64, 0u64);
    for p in packets {
        let in_window = (request.start_ns..=request.end_ns).contains(&p.ts_ns);
        if !in_window || p.interface as usize >= interfaces.len() {
            skipped += 1;
            continue;
        }
        // The alerts this packet is the first at or after.
        let mut notes = Vec::new();
        while next_alert < alert_times.len() && alert_times[next_alert].0 <= p.ts_ns {
            notes.push(alert_times[next_alert].1.as_str());
            next_alert += 1;
        }
        let comment = (!notes.is_empty()).then(|| notes.join("; "));
        let len = pcapng::epb_len(p.data.len()) + comment.as_ref().map_or(0, |c| c.len() + 8);
        if (body.len() + len) as u64 > max_bytes {
            left_out += 1;
            continue;
        }
        enhanced_packet(
            &mut body,
            p.interface,
            p.ts_ns,
            p.orig_len,
            p.data,
            direction_flags(p.direction),
            comment.as_deref().map(str::as_bytes),
        );
        written += 1;
    }
    let mut file = pcapng_header(request, interfaces, written, left_out, max_bytes);
    file.extend_from_slice(&body);
    drop(body);

    let path = dir.join(request.file_name());
    let mut out =
        OutFile::create(&path, Some(temp_name(&path)), false).map_err(EvidenceError::Storage)?;
    if let Err(f) = out.append(&file, |_| 0) {
        out.discard();
        return Err(EvidenceError::Storage(crate::sink::StorageError::Write {
            path,
            source: f.error,
        }));
    }
    let created = out.finish(false).map_err(EvidenceError::Storage)?;
    let entry = match custody {
        Some(c) => Some(c.record(&created.path).map_err(EvidenceError::Custody)?),
        None => None,
    };
    Ok(Written {
        path: created.path,
        packets: written,
        skipped,
        left_out,
        bytes: file.len() as u64,
        entry,
    })
}

fn pcapng_header(
    request: &EvidenceRequest,
    interfaces: &[InterfaceDesc],
    packets: u64,
    left_out: u64,
    max_bytes: u64,
) -> Vec<u8> {
    let mut out = Vec::new();
    pcapng::section_header_with_comments(
        &mut out,
        &SectionInfo::of_this_host(),
        &comments(request, packets, left_out, max_bytes),
    );
    for iface in interfaces {
        // Snap length 0: no limit (the packets come from captures with their own).
        interface_description(&mut out, iface, 0, "");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use tap_common::event::{DIR_INBOUND, DIR_OUTBOUND, HOOK_TC_INGRESS};

    use super::*;
    use crate::evidence::{AlertMeta, FlowKey};

    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_795_774_507 * S;

    fn request() -> EvidenceRequest {
        let meta = |t, sid, sev, sig: &str| AlertMeta {
            time_ns: t,
            timestamp: format!("ts-{sid}"),
            sid,
            gid: 1,
            rev: 2,
            signature: sig.into(),
            category: "Test".into(),
            severity: sev,
        };
        EvidenceRequest {
            flow: FlowKey {
                proto: 17,
                src_ip: "192.0.2.1".parse().unwrap(),
                src_port: 5000,
                dest_ip: "198.51.100.2".parse().unwrap(),
                dest_port: 53,
                vlan: Vec::new(),
            },
            community_id: Some("1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=".into()),
            flow_id: Some(987_654_321),
            start_ns: T0 - 2 * S,
            end_ns: T0 + 2 * S,
            alerts: vec![
                meta(T0, 1_000_002, 1, "tap test: token in the URI"),
                meta(T0 + S, 1_000_003, 3, "tap test: second"),
            ],
            more_alerts: 4,
        }
    }

    /// A UDP frame from 192.0.2.1:5000 to 198.51.100.2:53 (or back) with `n` in its payload.
    fn frame(n: u8, back: bool) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let (src, dst) = ([192, 0, 2, 1], [198, 51, 100, 2]);
        let (src, dst) = if back { (dst, src) } else { (src, dst) };
        let (sp, dp): (u16, u16) = if back { (53, 5000) } else { (5000, 53) };
        f.extend_from_slice(&[0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&sp.to_be_bytes());
        f.extend_from_slice(&dp.to_be_bytes());
        f.extend_from_slice(&[0, 12, 0, 0, n, n, n, n]);
        f
    }

    fn tool(program: &str, args: &[&str]) -> String {
        let out = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program} is installed: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// tshark reads the file and shows the comments: on the packets at each alert, and in the
    /// section header (capinfos); the file is in the custody manifest and verifies.
    #[test]
    fn tshark_shows_the_comments() {
        let dir = std::env::temp_dir().join(format!("tap-evidence-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let frames: Vec<Vec<u8>> = (0..6).map(|n| frame(n, n % 2 == 1)).collect();
        // One packet before the window, then packets at T0 - 1 s, T0 (the alert), T0 + 0.5 s,
        // T0 + 1 s (the second alert), and one after the window.
        let times = [T0 - 3 * S, T0 - S, T0, T0 + S / 2, T0 + S, T0 + 3 * S];
        let packets = frames.iter().zip(times).map(|(f, t)| EvidencePacket {
            ts_ns: t,
            orig_len: u32::try_from(f.len()).unwrap(),
            data: f,
            interface: 0,
            direction: if f[26] == 192 {
                DIR_OUTBOUND
            } else {
                DIR_INBOUND
            },
        });
        let ifaces = [InterfaceDesc::new("eth0", 2, HOOK_TC_INGRESS)];
        let mut custody = Custody::open(&dir, None).unwrap();
        let w = write_evidence(
            &dir,
            &request(),
            &ifaces,
            packets.clone(),
            1 << 20,
            Some(&mut custody),
        )
        .unwrap();
        assert_eq!((w.packets, w.skipped, w.left_out), (4, 2, 0));
        assert_eq!(
            w.path.file_name().unwrap().to_string_lossy(),
            "20261127T101507.000000Z-1000002-1_hO-sN4H-MG5MY_8hIrXPqc4ZQz0.pcapng"
        );
        assert_eq!(w.entry.as_ref().map(|e| e.seq), Some(1));
        let file = w.path.to_string_lossy().into_owned();
        let rows = tool(
            "tshark",
            &[
                "-r",
                &file,
                "-T",
                "fields",
                "-E",
                "separator=|",
                "-e",
                "frame.time_epoch",
                "-e",
                "udp.srcport",
                "-e",
                "frame.comment",
            ],
        );
        let rows: Vec<&str> = rows.lines().collect();
        assert_eq!(rows.len(), 4, "{rows:?}");
        assert!(
            rows[0].ends_with('|'),
            "no comment before the alert: {rows:?}"
        );
        assert!(
            rows[1].starts_with("1795774507.000000000|")
                && rows[1].ends_with("|alert sid 1000002 severity 1: tap test: token in the URI"),
            "{rows:?}"
        );
        assert!(rows[2].ends_with('|'), "{rows:?}");
        assert!(
            rows[3].ends_with("|alert sid 1000003 severity 3: tap test: second"),
            "{rows:?}"
        );
        let info = tool("capinfos", &[&file]);
        for line in [
            "Capture comment:     tap evidence: 4 packets of UDP 192.0.2.1:5000 -> 198.51.100.2:53 from 2026-11-27T10:15:05.000000000Z to 2026-11-27T10:15:09.000000000Z",
            "Capture comment:     community_id: 1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=",
            "Capture comment:     suricata flow_id: 987654321",
            "Capture comment:     alert: sid 1000002 rev 2 gid 1 severity 1 at ts-1000002: tap test: token in the URI (Test)",
            "Capture comment:     more alerts on this flow, not listed: 4",
        ] {
            assert!(info.contains(line), "capinfos lacks {line:?}:\n{info}");
        }
        // The same request again: the file is never overwritten.
        assert!(matches!(
            write_evidence(&dir, &request(), &ifaces, packets.clone(), 1 << 20, None),
            Err(EvidenceError::Storage(
                crate::sink::StorageError::Exists { .. }
            ))
        ));
        // A size limit leaves packets out, and says so.
        let small = dir.join("small");
        std::fs::create_dir_all(&small).unwrap();
        let w = write_evidence(&small, &request(), &ifaces, packets, 200, None).unwrap();
        assert_eq!((w.packets, w.left_out), (2, 2));
        assert!(
            tool("capinfos", &[&w.path.to_string_lossy()])
                .contains("left out: 2 packets past the file's size limit of 200 bytes")
        );
        match crate::custody::verify::verify_dir(&dir, None).unwrap() {
            crate::custody::verify::Verdict::Intact(i) => assert_eq!(i.files, 1),
            crate::custody::verify::Verdict::Broken(b) => panic!("{b}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
