//! Test frames: Ethernet/IPv4/UDP frames with valid checksums, built the same way for the
//! programs' test runs (`tap bench-prog`, the program tests) and the bench's traffic generator.

use std::vec::Vec;

/// Shortest frame [`udp4`] builds: Ethernet (14) + IPv4 (20) + UDP (8) headers, no payload.
pub const MIN_UDP4: usize = 42;
/// Longest: an IPv4 total length of 65,535.
pub const MAX_UDP4: usize = 14 + 65_535;

/// Who a frame goes between: `(source, destination)` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ends {
    pub macs: ([u8; 6], [u8; 6]),
    pub ips: ([u8; 4], [u8; 4]),
    pub ports: (u16, u16),
}

/// A frame of exactly `len` bytes (no FCS): IPv4 with DF and TTL 64, UDP with a payload of
/// bytes `i % 251`, both checksums valid. None unless `len` is [`MIN_UDP4`]..=[`MAX_UDP4`].
pub fn udp4(len: usize, ends: &Ends) -> Option<Vec<u8>> {
    if !(MIN_UDP4..=MAX_UDP4).contains(&len) {
        return None;
    }
    let ip_len = (len - 14) as u16;
    let udp_len = ip_len - 20;
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&ends.macs.1);
    f.extend_from_slice(&ends.macs.0);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    // IPv4: version 4, 20-byte header, DF, TTL 64, UDP.
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&ip_len.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&ends.ips.0);
    f.extend_from_slice(&ends.ips.1);
    let ip_sum = !fold(sum16(&f[14..34]));
    f[24..26].copy_from_slice(&ip_sum.to_be_bytes());
    f.extend_from_slice(&ends.ports.0.to_be_bytes());
    f.extend_from_slice(&ends.ports.1.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend((0..len - MIN_UDP4).map(|i| (i % 251) as u8));
    // UDP checksum over the pseudo-header (addresses, protocol, length) and the datagram.
    let pseudo = sum16(&f[26..34]) + 17 + u64::from(udp_len);
    let udp_sum = match !fold(pseudo + sum16(&f[34..])) {
        // 0 means "no checksum" in UDP over IPv4; all ones is the same value in one's complement.
        0 => 0xffff,
        s => s,
    };
    f[40..42].copy_from_slice(&udp_sum.to_be_bytes());
    Some(f)
}

/// Sum of big-endian 16-bit words (an odd last byte padded with zero), unfolded.
pub fn sum16(bytes: &[u8]) -> u64 {
    bytes
        .chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum()
}

/// Folds a sum into 16 bits, one's complement style.
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENDS: Ends = Ends {
        macs: ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]),
        ips: ([192, 0, 2, 1], [198, 51, 100, 7]),
        ports: (40000, 5000),
    };

    #[test]
    fn frames_have_the_asked_length_addresses_and_valid_checksums() {
        for len in [MIN_UDP4, 43, 64, 1500, 9216, MAX_UDP4] {
            let f = udp4(len, &ENDS).unwrap();
            assert_eq!(f.len(), len);
            assert_eq!((&f[0..6], &f[6..12]), (&ENDS.macs.1[..], &ENDS.macs.0[..]));
            assert_eq!(&f[12..14], &[0x08, 0x00]);
            assert_eq!((&f[26..30], &f[30..34]), (&ENDS.ips.0[..], &ENDS.ips.1[..]));
            assert_eq!(&f[34..38], &[0x9c, 0x40, 0x13, 0x88]);
            assert_eq!(
                usize::from(u16::from_be_bytes([f[16], f[17]])),
                len - 14,
                "IPv4 total length"
            );
            assert_eq!(
                usize::from(u16::from_be_bytes([f[38], f[39]])),
                len - 34,
                "UDP length"
            );
            assert_eq!(fold(sum16(&f[14..34])), 0xffff, "IPv4 header checksum");
            let udp_len = (len - 34) as u64;
            assert_eq!(
                fold(sum16(&f[26..34]) + 17 + udp_len + sum16(&f[34..])),
                0xffff,
                "UDP checksum"
            );
        }
    }

    #[test]
    fn impossible_lengths_build_nothing() {
        assert_eq!(udp4(MIN_UDP4 - 1, &ENDS), None);
        assert_eq!(udp4(MAX_UDP4 + 1, &ENDS), None);
    }

    #[test]
    fn checksum_helpers() {
        assert_eq!(sum16(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(fold(0x1_fffe), 0xffff);
        assert_eq!(fold(0x2_0001), 0x0003);
    }
}
