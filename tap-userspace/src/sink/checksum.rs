//! `--fix-checksums`: recomputes the IPv4 header and the TCP, UDP, ICMP and ICMPv6 checksums of
//! delivered copies (never of the traffic on the wire). Frames captured on a host carry
//! offload-partial checksums (the NIC, or nobody on a veth, would finish them); consumers that
//! check them, such as Suricata without `-k none`, then ignore the flows.
//!
//! Only whole packets are fixed: a frame cut by the snap length keeps what it had.

use crate::kernel::batch::{Batch, BatchBuilder};

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn add(sum: u64, bytes: &[u8]) -> u64 {
    let mut s = sum;
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        s += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        s += u64::from(*last) << 8;
    }
    s
}

/// Fixes the checksums of one Ethernet frame in place. Returns true when it changed anything.
pub fn fix_frame(frame: &mut [u8]) -> bool {
    if frame.len() < 14 {
        return false;
    }
    let mut l3 = 14;
    let mut ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    for _ in 0..2 {
        if matches!(ethertype, 0x8100 | 0x88a8) && frame.len() >= l3 + 4 {
            ethertype = u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]);
            l3 += 4;
        }
    }
    let before = frame.to_vec();
    match ethertype {
        0x0800 => fix_v4(frame, l3),
        0x86dd => fix_v6(frame, l3),
        _ => {}
    }
    before != frame
}

fn fix_v4(frame: &mut [u8], l3: usize) {
    if frame.len() < l3 + 20 || frame[l3] >> 4 != 4 {
        return;
    }
    let ihl = usize::from(frame[l3] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]));
    if ihl < 20 || total < ihl || frame.len() < l3 + total {
        return;
    }
    frame[l3 + 10] = 0;
    frame[l3 + 11] = 0;
    let c = fold(add(0, &frame[l3..l3 + ihl]));
    frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    // Fragments: the transport checksum spans the whole datagram; leave them.
    let frag = u16::from_be_bytes([frame[l3 + 6], frame[l3 + 7]]);
    if frag & 0x3fff != 0 {
        return;
    }
    let proto = frame[l3 + 9];
    let l4 = l3 + ihl;
    let end = l3 + total;
    let mut pseudo = add(0, &frame[l3 + 12..l3 + 20]);
    pseudo += u64::from(proto) + (end - l4) as u64;
    fix_l4(frame, l4, end, proto, pseudo, false);
}

fn fix_v6(frame: &mut [u8], l3: usize) {
    if frame.len() < l3 + 40 {
        return;
    }
    let payload = usize::from(u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]));
    let end = l3 + 40 + payload;
    if frame.len() < end {
        return;
    }
    // Transport directly after the fixed header only (extension headers: left as they are).
    let proto = frame[l3 + 6];
    let l4 = l3 + 40;
    let mut pseudo = add(0, &frame[l3 + 8..l3 + 40]);
    pseudo += u64::from(proto) + (end - l4) as u64;
    fix_l4(frame, l4, end, proto, pseudo, true);
}

fn fix_l4(frame: &mut [u8], l4: usize, end: usize, proto: u8, pseudo: u64, v6: bool) {
    let (at, with_pseudo) = match proto {
        6 => (16, true),
        17 => (6, true),
        1 if !v6 => (2, false),
        58 if v6 => (2, true),
        _ => return,
    };
    if end < l4 + at + 2 {
        return;
    }
    // UDP over IPv4 may leave the checksum off (zero); keep it off.
    if proto == 17 && !v6 && frame[l4 + 6] == 0 && frame[l4 + 7] == 0 {
        return;
    }
    frame[l4 + at] = 0;
    frame[l4 + at + 1] = 0;
    let mut c = fold(add(if with_pseudo { pseudo } else { 0 }, &frame[l4..end]));
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    frame[l4 + at..l4 + at + 2].copy_from_slice(&c.to_be_bytes());
}

/// A copy of `batch` with every whole frame's checksums fixed.
pub fn fix_batch(batch: &Batch) -> Batch {
    let mut builder = BatchBuilder::with_capacity(batch.byte_len());
    let mut frame = Vec::new();
    for p in batch.packets() {
        frame.clear();
        frame.extend_from_slice(p.data);
        if p.data.len() as u32 == p.header.orig_len {
            fix_frame(&mut frame);
        }
        builder.push_parts(&p.header, &frame);
    }
    builder.finish_with_offset(batch.offset_ns())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IPv4/UDP with a valid checksum, from a known capture (ping-like payload).
    fn udp_frame() -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        let payload = b"hello";
        let total = 20 + 8 + payload.len();
        f.extend_from_slice(&[
            0x45,
            0,
            0,
            total as u8,
            0x12,
            0x34,
            0x40,
            0,
            64,
            17,
            0,
            0,
            192,
            0,
            2,
            1,
            192,
            0,
            2,
            2,
        ]);
        f.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, (8 + payload.len()) as u8, 0, 0]);
        f.extend_from_slice(payload);
        f
    }

    fn verify_v4(frame: &[u8]) {
        assert_eq!(fold(add(0, &frame[14..34])), 0, "IPv4 header checksum");
        let len = frame.len() - 34;
        let mut pseudo = add(0, &frame[26..34]);
        pseudo += 17 + len as u64;
        assert_eq!(fold(add(pseudo, &frame[34..])), 0, "UDP checksum");
    }

    #[test]
    fn fixes_zeroed_and_wrong_checksums() {
        let mut f = udp_frame();
        f[40] = 0xde; // a partial (wrong) UDP checksum
        f[41] = 0xad;
        assert!(fix_frame(&mut f));
        verify_v4(&f);
        // Fixing twice changes nothing.
        assert!(!fix_frame(&mut f));
    }

    #[test]
    fn truncated_or_foreign_frames_are_left_alone() {
        let mut f = udp_frame();
        f.truncate(30);
        let before = f.clone();
        assert!(!fix_frame(&mut f));
        assert_eq!(f, before);
        let mut arp = vec![0u8; 42];
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert!(!fix_frame(&mut arp));
        for n in 0..80 {
            let mut junk = vec![0x45u8; n];
            if n > 13 {
                junk[12] = 0x08;
                junk[13] = 0x00;
            }
            fix_frame(&mut junk);
        }
    }
}
