//! One frame builder for every set of test frames (the filter corpus, the tunnel cases, the
//! printer's frames): Ethernet with its tags, UDP, and the Internet checksum with and without
//! a pseudo-header, each written once.

/// An Ethernet address.
pub type Mac = [u8; 6];

/// A VLAN tag: (TPID, TCI).
pub type Tag = (u16, u16);

/// Network byte order.
#[must_use]
pub fn be16(v: u16) -> [u8; 2] {
    v.to_be_bytes()
}

/// One's complement sum of 16-bit big-endian words (odd tail padded with zero), not yet folded.
fn sum16(data: &[u8]) -> u32 {
    let mut sum = 0u32;
    for chunk in data.chunks(2) {
        let hi = u32::from(chunk[0]) << 8;
        let lo = chunk.get(1).map_or(0, |&b| u32::from(b));
        sum += hi | lo;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).expect("folded to 16 bits")
}

/// The Internet checksum (RFC 1071) of `data`.
#[must_use]
pub fn inet_checksum(data: &[u8]) -> u16 {
    fold(sum16(data))
}

/// Stores at `at` the checksum of an upper-layer segment over the pseudo-header of `src` and
/// `dst` (4 bytes each for IPv4, 16 for IPv6). UDP's 0 is sent as 0xffff (RFC 768).
///
/// # Panics
/// A segment shorter than `at + 2`, or longer than its length field holds.
pub fn l4_checksum(src: &[u8], dst: &[u8], proto: u8, seg: &mut [u8], at: usize) {
    seg[at..at + 2].copy_from_slice(&[0, 0]);
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(src);
    pseudo.extend_from_slice(dst);
    if src.len() == 16 {
        pseudo.extend_from_slice(
            &u32::try_from(seg.len())
                .expect("segment length")
                .to_be_bytes(),
        );
        pseudo.extend_from_slice(&[0, 0, 0, proto]);
    } else {
        pseudo.extend_from_slice(&[0, proto]);
        pseudo.extend_from_slice(&be16(u16::try_from(seg.len()).expect("segment length")));
    }
    let mut c = fold(sum16(&pseudo) + sum16(seg));
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    seg[at..at + 2].copy_from_slice(&be16(c));
}

/// Ethernet header with optional tags, outermost first, then `payload`.
#[must_use]
pub fn ether(dst: Mac, src: Mac, tags: &[Tag], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 4 * tags.len() + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    for &(tpid, tci) in tags {
        f.extend_from_slice(&be16(tpid));
        f.extend_from_slice(&be16(tci));
    }
    f.extend_from_slice(&be16(ethertype));
    f.extend_from_slice(payload);
    f
}

/// Pads a frame with zeros to the Ethernet minimum of 60 bytes (without FCS).
#[must_use]
pub fn pad60(mut f: Vec<u8>) -> Vec<u8> {
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// A UDP datagram, its checksum left zero (see [`l4_checksum`], offset 6).
///
/// # Panics
/// A payload too long for a datagram.
#[must_use]
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(8 + payload.len());
    s.extend_from_slice(&be16(sport));
    s.extend_from_slice(&be16(dport));
    s.extend_from_slice(&be16(u16::try_from(8 + payload.len()).expect("udp length")));
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(payload);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify_to_zero() {
        // An IPv4 header with its checksum sums to zero (RFC 1071).
        let mut h = vec![
            0x45, 0, 0, 28, 0, 1, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 1, 198, 51, 100, 2,
        ];
        let c = inet_checksum(&h);
        h[10..12].copy_from_slice(&be16(c));
        assert_eq!(inet_checksum(&h), 0);
        let mut seg = udp(1, 2, b"x");
        l4_checksum(&[192, 0, 2, 1], &[198, 51, 100, 2], 17, &mut seg, 6);
        assert_ne!(seg[6..8], [0, 0]);
    }
}
