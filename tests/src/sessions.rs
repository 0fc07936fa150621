//! Whole conversations built byte by byte, for Suricata to read offline (`suricata -r`): HTTP
//! over TCP (handshake, requests and responses, close) and ICMP echo requests, with correct
//! checksums and timestamps the test chooses. Documentation addresses only.

use std::{net::Ipv4Addr, path::Path};

use crate::{
    corpus::inet_checksum,
    pcap::{Pcap, Record},
};

const MAC_CLIENT: [u8; 6] = [0x02, 0, 0x5e, 0x20, 0, 1];
const MAC_SERVER: [u8; 6] = [0x02, 0, 0x5e, 0x20, 0, 2];

/// Frames with their timestamps (ns since the epoch), in order.
#[derive(Debug, Default, Clone)]
pub struct Frames {
    pub frames: Vec<(u64, Vec<u8>)>,
}

impl Frames {
    /// Writes them as a microsecond pcap (Ethernet).
    ///
    /// # Panics
    /// A timestamp past 2106 or a frame over 4 GiB; a file that cannot be written.
    pub fn write(&self, path: &Path) {
        let records = self
            .frames
            .iter()
            .map(|(ts, f)| Record {
                ts_sec: u32::try_from(ts / 1_000_000_000).expect("timestamp fits"),
                ts_frac: u32::try_from(ts % 1_000_000_000 / 1000).expect("µs"),
                orig_len: u32::try_from(f.len()).expect("frame length"),
                data: f.clone(),
            })
            .collect();
        Pcap {
            nanos: false,
            snaplen: 65535,
            linktype: 1,
            records,
        }
        .write(path);
    }

    /// An HTTP conversation from `client:port` to `server:80`, one GET per path in `paths`
    /// (each answered with an empty 200), starting at `t0` ns with `step` ns between frames.
    /// Returns the time after its last frame.
    ///
    /// # Panics
    /// A request longer than a segment can be.
    pub fn http(
        &mut self,
        client: Ipv4Addr,
        port: u16,
        server: Ipv4Addr,
        paths: &[String],
        t0: u64,
        step: u64,
    ) -> u64 {
        let mut t = t0;
        let mut push = |f: Vec<u8>, t: &mut u64| {
            self.frames.push((*t, f));
            *t += step;
        };
        let (mut cseq, mut sseq) = (1000u32, 5000u32);
        let c2s = |seq, ack, flags, data: &[u8]| {
            tcp(client, port, server, 80, seq, ack, flags, data, true)
        };
        let s2c = |seq, ack, flags, data: &[u8]| {
            tcp(server, 80, client, port, seq, ack, flags, data, false)
        };
        push(c2s(cseq, 0, SYN, &[]), &mut t);
        push(s2c(sseq, cseq + 1, SYN | ACK, &[]), &mut t);
        cseq += 1;
        sseq += 1;
        push(c2s(cseq, sseq, ACK, &[]), &mut t);
        for p in paths {
            let req = format!(
                "GET {p} HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: tap-test\r\n\r\n"
            );
            push(c2s(cseq, sseq, PSH | ACK, req.as_bytes()), &mut t);
            cseq += u32::try_from(req.len()).expect("short request");
            let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
            push(s2c(sseq, cseq, PSH | ACK, resp), &mut t);
            sseq += u32::try_from(resp.len()).expect("short response");
            push(c2s(cseq, sseq, ACK, &[]), &mut t);
        }
        push(c2s(cseq, sseq, FIN | ACK, &[]), &mut t);
        push(s2c(sseq, cseq + 1, FIN | ACK, &[]), &mut t);
        push(c2s(cseq + 1, sseq + 1, ACK, &[]), &mut t);
        t
    }

    /// One ICMP echo request from `src` to `dst` at `t` ns.
    pub fn echo(&mut self, src: Ipv4Addr, dst: Ipv4Addr, id: u16, t: u64) {
        let mut icmp = vec![8, 0, 0, 0];
        icmp.extend_from_slice(&id.to_be_bytes());
        icmp.extend_from_slice(&1u16.to_be_bytes());
        icmp.extend_from_slice(b"tap test echo payload...");
        let sum = inet_checksum(&icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        self.frames
            .push((t, ipv4_frame(src, dst, 1, &icmp, MAC_CLIENT, MAC_SERVER)));
    }
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

#[expect(clippy::too_many_arguments, reason = "one TCP segment's fields")]
fn tcp(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    data: &[u8],
    from_client: bool,
) -> Vec<u8> {
    let mut seg = Vec::with_capacity(20 + data.len());
    seg.extend_from_slice(&sport.to_be_bytes());
    seg.extend_from_slice(&dport.to_be_bytes());
    seg.extend_from_slice(&seq.to_be_bytes());
    seg.extend_from_slice(&ack.to_be_bytes());
    seg.extend_from_slice(&[0x50, flags]);
    seg.extend_from_slice(&65535u16.to_be_bytes());
    seg.extend_from_slice(&[0, 0, 0, 0]);
    seg.extend_from_slice(data);
    let mut pseudo = Vec::with_capacity(12 + seg.len());
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(
        &u16::try_from(seg.len())
            .expect("short segment")
            .to_be_bytes(),
    );
    pseudo.extend_from_slice(&seg);
    let sum = inet_checksum(&pseudo);
    seg[16..18].copy_from_slice(&sum.to_be_bytes());
    let (smac, dmac) = if from_client {
        (MAC_CLIENT, MAC_SERVER)
    } else {
        (MAC_SERVER, MAC_CLIENT)
    };
    ipv4_frame(src, dst, 6, &seg, smac, dmac)
}

fn ipv4_frame(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    payload: &[u8],
    smac: [u8; 6],
    dmac: [u8; 6],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(34 + payload.len());
    f.extend_from_slice(&dmac);
    f.extend_from_slice(&smac);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = u16::try_from(20 + payload.len()).expect("short packet");
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let sum = inet_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(payload);
    f
}
