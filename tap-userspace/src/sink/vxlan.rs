//! VXLAN export, as cloud vTAPs (AWS Traffic Mirroring, OCI VTAP, Azure vTAP) do it: each
//! captured frame goes to a collector in a VXLAN packet (RFC 7348, UDP 4789 by default).
//!
//! - The UDP source port comes from a hash of the inner 5-tuple, the same for both directions of
//!   a flow, so load balancers in front of a collector pool keep a flow on one collector. The
//!   sender keeps a pool of sockets bound to distinct source ports and picks one by that hash.
//! - Frames longer than the maximum inner length are truncated and counted; the outer packet
//!   carries DF (IP_PMTUDISC_DO), so a packet too big for the path is an error that is counted,
//!   never a silent fragment.
//! - Sends are batched with `sendmmsg`: one syscall per socket per batch.

use std::{
    io,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
};

use super::{CaptureStats, Sink, SinkReport, SinkStop};
use crate::kernel::batch::Batch;
pub use crate::model::VxlanTarget;

/// Errors while opening the sockets.
#[derive(Debug, thiserror::Error)]
pub enum VxlanError {
    #[error("cannot open a UDP socket towards {collector}: {source}")]
    Socket {
        collector: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// Default VXLAN port.
pub const DEFAULT_PORT: u16 = 4789;
/// Default longest inner frame: fits a 1500-byte path MTU under outer IPv4 (20) + UDP (8) +
/// VXLAN (8) headers.
pub const DEFAULT_MAX_INNER: usize = 1464;
/// The same for an IPv6 collector: the outer IPv6 header takes 40 bytes, not 20.
pub const DEFAULT_MAX_INNER_V6: usize = 1444;
/// Sockets (distinct source ports) in the pool.
const POOL: usize = 16;
/// VXLAN header length.
const HEADER: usize = 8;

/// The VXLAN header for `vni`: flags with the I bit, the VNI in bytes 4..7.
pub fn header(vni: u32) -> [u8; HEADER] {
    let v = vni.to_be_bytes();
    [0x08, 0, 0, 0, v[1], v[2], v[3], 0]
}

/// A direction-agnostic hash of the inner frame's 5-tuple (addresses, protocol, ports), or of
/// its MAC addresses when it is not IP. The same for both directions of a flow.
pub fn flow_hash(frame: &[u8]) -> u32 {
    fn fnv(mut h: u32, bytes: &[u8]) -> u32 {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
        h
    }
    let seed = 0x811c_9dc5;
    let sym = |a: &[u8], b: &[u8], rest: &[u8]| {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        fnv(fnv(fnv(seed, lo), hi), rest)
    };
    if frame.len() < 14 {
        return fnv(seed, frame);
    }
    let mut off = 12;
    let mut ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    while matches!(ethertype, 0x8100 | 0x88a8) && frame.len() >= off + 6 {
        off += 4;
        ethertype = u16::from_be_bytes([frame[off], frame[off + 1]]);
    }
    let l3 = off + 2;
    let ports = |l4: usize, proto: u8| -> [u8; 5] {
        let mut r = [proto, 0, 0, 0, 0];
        if matches!(proto, 6 | 17 | 132) && frame.len() >= l4 + 4 {
            let (a, b) = ([frame[l4], frame[l4 + 1]], [frame[l4 + 2], frame[l4 + 3]]);
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            r[1..3].copy_from_slice(&lo);
            r[3..5].copy_from_slice(&hi);
        }
        r
    };
    match ethertype {
        0x0800 if frame.len() >= l3 + 20 => {
            let ihl = usize::from(frame[l3] & 0x0f) * 4;
            let first_fragment = u16::from_be_bytes([frame[l3 + 6], frame[l3 + 7]]) & 0x1fff == 0;
            let proto = frame[l3 + 9];
            let p = if first_fragment {
                ports(l3 + ihl, proto)
            } else {
                [proto, 0, 0, 0, 0]
            };
            sym(&frame[l3 + 12..l3 + 16], &frame[l3 + 16..l3 + 20], &p)
        }
        0x86dd if frame.len() >= l3 + 40 => {
            let p = ports(l3 + 40, frame[l3 + 6]);
            sym(&frame[l3 + 8..l3 + 24], &frame[l3 + 24..l3 + 40], &p)
        }
        _ => sym(&frame[0..6], &frame[6..12], &frame[12..14]),
    }
}

/// The forwarder.
pub struct VxlanSink {
    target: VxlanTarget,
    sockets: Vec<UdpSocket>,
    /// Per-socket queues of datagrams for this batch (reused: no per-packet allocation once warm).
    queues: Vec<Vec<u8>>,
    lengths: Vec<Vec<usize>>,
    report: SinkReport,
    truncated: u64,
    send_errors: u64,
}

impl VxlanSink {
    pub fn open(target: VxlanTarget) -> Result<Self, VxlanError> {
        let bind: SocketAddr = if target.collector.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .expect("literal");
        let mut sockets = Vec::with_capacity(POOL);
        for _ in 0..POOL {
            let socket = UdpSocket::bind(bind)
                .and_then(|s| s.connect(target.collector).map(|()| s))
                .map_err(|source| VxlanError::Socket {
                    collector: target.collector,
                    source,
                })?;
            set_dont_fragment(&socket, target.collector.is_ipv4()).map_err(|source| {
                VxlanError::Socket {
                    collector: target.collector,
                    source,
                }
            })?;
            sockets.push(socket);
        }
        Ok(Self {
            target,
            sockets,
            queues: vec![Vec::new(); POOL],
            lengths: vec![Vec::new(); POOL],
            report: SinkReport::default(),
            truncated: 0,
            send_errors: 0,
        })
    }

    /// Source ports of the pool (for tests and logs).
    pub fn source_ports(&self) -> Vec<u16> {
        self.sockets
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .map(|a| a.port())
            .collect()
    }

    /// Frames cut to the maximum inner length.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// Datagrams the kernel refused (too big for the path, no route, buffer full).
    pub fn send_errors(&self) -> u64 {
        self.send_errors
    }

    fn flush_queues(&mut self) {
        for i in 0..POOL {
            if self.lengths[i].is_empty() {
                continue;
            }
            let (sent, failed) = super::mmsg::send_packed(
                self.sockets[i].as_raw_fd(),
                &self.queues[i],
                &self.lengths[i],
            );
            self.report.written += sent.0;
            self.report.bytes += sent.1;
            self.report.lost += failed;
            self.send_errors += failed;
            self.queues[i].clear();
            self.lengths[i].clear();
        }
    }
}

fn set_dont_fragment(socket: &UdpSocket, v4: bool) -> io::Result<()> {
    let (level, name, value) = if v4 {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        )
    } else {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DO,
        )
    };
    // SAFETY: a valid socket and a c_int option value.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Sink for VxlanSink {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkStop> {
        let header = header(self.target.vni);
        for p in batch.packets() {
            let mut data = p.data;
            if data.len() > self.target.max_inner {
                data = &data[..self.target.max_inner];
                self.truncated += 1;
            }
            let i = flow_hash(p.data) as usize % POOL;
            self.queues[i].extend_from_slice(&header);
            self.queues[i].extend_from_slice(data);
            self.lengths[i].push(HEADER + data.len());
        }
        self.flush_queues();
        Ok(())
    }

    fn finish(mut self: Box<Self>, _stats: &CaptureStats) -> SinkReport {
        self.flush_queues();
        let mut report = std::mem::take(&mut self.report);
        report.notes.push(format!(
            "forward {} (vni {}): {} packets sent, {} truncated to {} bytes, {} lost (send errors)",
            self.target.collector,
            self.target.vni,
            report.written,
            self.truncated,
            self.target.max_inner,
            self.send_errors
        ));
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes() {
        assert_eq!(header(0x12_3456), [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
    }

    fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0, 8, 0, 0]);
        f
    }

    #[test]
    fn flow_hash_is_symmetric_and_spreads() {
        let a = udp4([192, 0, 2, 1], [192, 0, 2, 2], 1000, 53);
        let b = udp4([192, 0, 2, 2], [192, 0, 2, 1], 53, 1000);
        assert_eq!(flow_hash(&a), flow_hash(&b));
        let buckets: std::collections::HashSet<u32> = (0..200u16)
            .map(|p| flow_hash(&udp4([192, 0, 2, 1], [192, 0, 2, 2], 1000 + p, 53)) % POOL as u32)
            .collect();
        assert!(buckets.len() > POOL / 2, "poor spread: {buckets:?}");
        // Junk never panics.
        for n in 0..80 {
            flow_hash(&vec![0x86; n]);
            flow_hash(&vec![0x08; n]);
        }
    }

    #[test]
    fn sends_vxlan_to_a_local_collector() {
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        collector
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let target = VxlanTarget {
            collector: collector.local_addr().unwrap(),
            vni: 99,
            max_inner: 40,
        };
        let mut sink = VxlanSink::open(target).unwrap();
        let mut builder = crate::kernel::batch::BatchBuilder::with_capacity(4096);
        let frame = udp4([192, 0, 2, 1], [192, 0, 2, 2], 1000, 53);
        let header = tap_common::event::PacketHeader {
            orig_len: frame.len() as u32,
            cap_len: frame.len() as u32,
            ..Default::default()
        };
        // SAFETY: plain old data.
        let mut rec = unsafe {
            std::slice::from_raw_parts(
                (&raw const header).cast::<u8>(),
                tap_common::event::HEADER_LEN,
            )
        }
        .to_vec();
        rec.extend_from_slice(&frame);
        builder.push(&rec).unwrap();
        sink.write_batch(&builder.finish()).unwrap();
        let mut buf = [0u8; 2048];
        let (n, from) = collector.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..8], &header_bytes_for(99));
        assert_eq!(&buf[8..n], &frame[..40], "truncated to max_len");
        assert!(sink.source_ports().contains(&from.port()));
        assert_eq!(sink.truncated(), 1);
        let report = Box::new(sink).finish(&CaptureStats::default());
        assert_eq!(report.written, 1);
    }

    fn header_bytes_for(vni: u32) -> [u8; 8] {
        header(vni)
    }
}
