//! `-x`, `-X` and `-A` dumps (tcpdump's `print-ascii.c`): 16 bytes a line, offsets in hex.

use super::emit::Emit;

const HEX: &[u8; 16] = b"0123456789abcdef";

fn graph(b: u8) -> u8 {
    if b.is_ascii_graphic() { b } else { b'.' }
}

fn hex_byte(out: &mut Vec<u8>, b: u8) {
    out.push(HEX[usize::from(b >> 4)]);
    out.push(HEX[usize::from(b & 0xf)]);
}

/// Hex and ASCII, each line `IDENT0xOFFS:  hhhh hhhh ...  ascii` (the hex padded to 40
/// columns), offsets starting at `offset`. Each line is built in a stack buffer and appended
/// once: a full-size frame's dump is most of what `-X` costs.
pub(super) fn hex_ascii(out: &mut Vec<u8>, ident: &str, b: &[u8], offset: usize) {
    out.reserve(b.len().div_ceil(16) * (ident.len() + 66));
    for (n, line) in b.chunks(16).enumerate() {
        out.s(ident);
        let mut buf = [b' '; 66];
        let off = offset + 16 * n;
        buf[0] = b'0';
        buf[1] = b'x';
        for (i, shift) in [12u32, 8, 4, 0].into_iter().enumerate() {
            buf[2 + i] = HEX[(off >> shift) & 0xf];
        }
        buf[6] = b':';
        // Hex from column 8: " hhhh" per pair, 40 columns; then two spaces, then the ASCII.
        for (i, &x) in line.iter().enumerate() {
            let at = 9 + (i / 2) * 5 + (i % 2) * 2;
            buf[at] = HEX[usize::from(x >> 4)];
            buf[at + 1] = HEX[usize::from(x & 0xf)];
            buf[50 + i] = graph(x);
        }
        out.extend_from_slice(&buf[..50 + line.len()]);
    }
}

/// Hex only, each line `IDENT0xOFFS:  hhhh hhhh ...`.
pub(super) fn hex(out: &mut Vec<u8>, ident: &str, b: &[u8]) {
    for (n, line) in b.chunks(16).enumerate() {
        out.s(ident);
        out.s("0x");
        out.hex_w((16 * n) as u64, 4);
        out.s(": ");
        for pair in line.chunks(2) {
            out.push(b' ');
            for &x in pair {
                hex_byte(out, x);
            }
        }
    }
}

/// ASCII (`-A`): a newline, then the bytes with unprintable ones as `.`; tabs, spaces and
/// newlines kept, carriage returns dropped before a newline or at the end.
pub(super) fn ascii(out: &mut Vec<u8>, b: &[u8]) {
    out.push(b'\n');
    for (i, &x) in b.iter().enumerate() {
        if x == b'\r' {
            let left = b.len() - i - 1;
            if left > 1 && b[i + 1] != b'\n' {
                out.push(b'.');
            }
        } else if x.is_ascii_graphic() || x == b'\t' || x == b' ' || x == b'\n' {
            out.push(x);
        } else {
            out.push(b'.');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        let data = b"Hello, World!\n";
        let mut out = Vec::new();
        hex(&mut out, "\n\t", data);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\n\t0x0000:  4865 6c6c 6f2c 2057 6f72 6c64 210a"
        );
        let mut out = Vec::new();
        hex_ascii(&mut out, "\n\t", data, 0);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\n\t0x0000:  4865 6c6c 6f2c 2057 6f72 6c64 210a       Hello,.World!."
        );
        let mut out = Vec::new();
        hex(&mut out, "\n\t", &[1, 2, 3]);
        assert_eq!(String::from_utf8(out).unwrap(), "\n\t0x0000:  0102 03");
    }
}
