//! Appending text to the line buffer without going through `core::fmt` for the common pieces
//! (decimal numbers, addresses): they are most of what a packet line holds.

/// Text output into a byte buffer (always ASCII here).
pub(super) trait Emit {
    fn s(&mut self, s: &str);
    fn c(&mut self, c: u8);
    /// Decimal, like `%u`.
    fn dec(&mut self, v: u64);
    /// Lower-case hexadecimal without leading zeros, like `%x`.
    fn hex(&mut self, v: u64);
    /// Lower-case hexadecimal, zero-padded to `width` digits, like `%0*x`.
    fn hex_w(&mut self, v: u64, width: usize);
    /// Dotted quad.
    fn ipv4(&mut self, a: &[u8]);
    /// IPv6 text as tcpdump's `addrtostr6` writes it (longest run of two or more zero words
    /// as `::`, the first on a tie; `::a.b.c.d` and `::ffff:a.b.c.d` for embedded IPv4).
    fn ipv6(&mut self, a: &[u8]);
    /// Colon-separated lower-case hex bytes (an Ethernet address is six of them).
    fn mac(&mut self, a: &[u8]);
    /// `s` left-justified in `width` columns, like `%-*s`.
    fn pad_right(&mut self, s: &str, width: usize);
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl Emit for Vec<u8> {
    #[inline]
    fn s(&mut self, s: &str) {
        self.extend_from_slice(s.as_bytes());
    }

    #[inline]
    fn c(&mut self, c: u8) {
        self.push(c);
    }

    #[inline]
    fn dec(&mut self, mut v: u64) {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.extend_from_slice(&tmp[i..]);
    }

    fn hex(&mut self, mut v: u64) {
        let mut tmp = [0u8; 16];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = HEX[(v & 0xf) as usize];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        self.extend_from_slice(&tmp[i..]);
    }

    fn hex_w(&mut self, v: u64, width: usize) {
        let digits = if v == 0 {
            1
        } else {
            (64 - v.leading_zeros() as usize).div_ceil(4)
        };
        for _ in digits..width {
            self.push(b'0');
        }
        self.hex(v);
    }

    #[inline]
    fn ipv4(&mut self, a: &[u8]) {
        for (i, b) in a.iter().take(4).enumerate() {
            if i > 0 {
                self.push(b'.');
            }
            self.dec(u64::from(*b));
        }
    }

    fn ipv6(&mut self, a: &[u8]) {
        let mut words = [0u16; 8];
        for (i, w) in words.iter_mut().enumerate() {
            *w = u16::from_be_bytes([a[2 * i], a[2 * i + 1]]);
        }
        // The longest run of zero words (first on a tie), if at least two long.
        let (mut best, mut best_len) = (usize::MAX, 0);
        let (mut cur, mut cur_len) = (usize::MAX, 0);
        for (i, &w) in words.iter().enumerate() {
            if w == 0 {
                if cur == usize::MAX {
                    (cur, cur_len) = (i, 1);
                } else {
                    cur_len += 1;
                }
            } else if cur != usize::MAX {
                if best == usize::MAX || cur_len > best_len {
                    (best, best_len) = (cur, cur_len);
                }
                cur = usize::MAX;
            }
        }
        if cur != usize::MAX && (best == usize::MAX || cur_len > best_len) {
            (best, best_len) = (cur, cur_len);
        }
        if best != usize::MAX && best_len < 2 {
            best = usize::MAX;
        }
        for (i, &w) in words.iter().enumerate() {
            if best != usize::MAX && i >= best && i < best + best_len {
                if i == best {
                    self.push(b':');
                }
                continue;
            }
            if i != 0 {
                self.push(b':');
            }
            if i == 6 && best == 0 && (best_len == 6 || (best_len == 5 && words[5] == 0xffff)) {
                self.ipv4(&a[12..16]);
                return;
            }
            self.hex(u64::from(w));
        }
        if best != usize::MAX && best + best_len == 8 {
            self.push(b':');
        }
    }

    fn mac(&mut self, a: &[u8]) {
        for (i, b) in a.iter().enumerate() {
            if i > 0 {
                self.push(b':');
            }
            self.push(HEX[usize::from(b >> 4)]);
            self.push(HEX[usize::from(b & 0xf)]);
        }
    }

    fn pad_right(&mut self, s: &str, width: usize) {
        self.s(s);
        for _ in s.len()..width {
            self.push(b' ');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> String {
        let a: std::net::Ipv6Addr = s.parse().unwrap();
        let mut out = Vec::new();
        out.ipv6(&a.octets());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn ipv6_text_follows_addrtostr6() {
        for (addr, text) in [
            ("::", "::"),
            ("::1", "::1"),
            ("2001:db8::1", "2001:db8::1"),
            ("2001:db8:0:1:0:0:0:1", "2001:db8:0:1::1"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("2001:0:1:1:1:1:1:1", "2001:0:1:1:1:1:1:1"),
            ("fe80::", "fe80::"),
            ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
            ("::192.0.2.1", "::192.0.2.1"),
            ("ff02::1:ff00:2", "ff02::1:ff00:2"),
        ] {
            assert_eq!(v6(addr), text, "{addr}");
        }
    }

    #[test]
    fn numbers() {
        let mut out = Vec::new();
        out.dec(0);
        out.c(b' ');
        out.dec(u64::MAX);
        out.c(b' ');
        out.hex(0xabc);
        out.c(b' ');
        out.hex_w(0x1f, 4);
        out.c(b' ');
        out.hex_w(0, 2);
        out.c(b' ');
        out.hex_w(0x12345, 4);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "0 18446744073709551615 abc 001f 00 12345"
        );
    }
}
