//! The printing path's cost per packet, for `cargo xtask bench`: typical 64-byte and
//! 1,500-byte TCP and UDP frames through [`Printer::format`].

use std::time::Instant;

use super::{Direction, Dump, DumpStyle, LINKTYPE_ETHERNET, PacketRef, PrintOptions, Printer};

/// One measurement: what was printed, how, and nanoseconds per packet.
#[derive(Debug, Clone, PartialEq)]
pub struct PrintBench {
    pub packets: &'static str,
    pub flags: &'static str,
    pub ns_per_packet: f64,
}

fn frame(proto: u8, len: usize) -> Vec<u8> {
    let mut f = vec![
        0x02, 0, 0x5e, 0x10, 0, 2, 0x02, 0, 0x5e, 0x10, 0, 1, 0x08, 0,
    ];
    let ip_len = len - 14;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&(ip_len as u16).to_be_bytes());
    f.extend_from_slice(&[
        0, 1, 0x40, 0, 64, proto, 0, 0, 192, 0, 2, 1, 198, 51, 100, 2,
    ]);
    if proto == 6 {
        f.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb]);
        f.extend_from_slice(&1_000_000u32.to_be_bytes());
        f.extend_from_slice(&2_000_000u32.to_be_bytes());
        f.extend_from_slice(&[0x50, 0x18, 0x01, 0xf6, 0, 0, 0, 0]);
    } else {
        f.extend_from_slice(&[0x9c, 0x40, 0x13, 0x89]);
        f.extend_from_slice(&((ip_len - 20) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
    }
    f.resize(len, 0x61);
    f
}

/// Nanoseconds per packet of `opts` over `frames` (cycled), `iterations` packets in all.
#[must_use]
pub fn ns_per_packet(frames: &[Vec<u8>], opts: &PrintOptions, iterations: usize) -> f64 {
    if frames.is_empty() || iterations == 0 {
        return 0.0;
    }
    let mut printer = Printer::new(opts.clone());
    let mut out = Vec::with_capacity(256 * 1024);
    let start = Instant::now();
    for i in 0..iterations {
        if out.len() > 192 * 1024 {
            out.clear();
        }
        let data = &frames[i % frames.len()];
        printer.format(
            &PacketRef {
                ts_ns: 1_700_000_000_000_000_000 + i as u64 * 1000,
                interface: None,
                direction: Direction::Unknown,
                linktype: LINKTYPE_ETHERNET,
                orig_len: data.len() as u32,
                data,
            },
            &mut out,
        );
    }
    std::hint::black_box(&out);
    start.elapsed().as_secs_f64() * 1e9 / iterations as f64
}

/// The standard measurements: 64- and 1,500-byte TCP and UDP frames with tcpdump's default
/// output, with `-v`, and with `-X` (whose hex dump dominates for large frames).
#[must_use]
pub fn run(iterations: usize) -> Vec<PrintBench> {
    let sets: [(&'static str, Vec<Vec<u8>>); 4] = [
        ("64-byte TCP", vec![frame(6, 64)]),
        ("1500-byte TCP", vec![frame(6, 1500)]),
        ("64-byte UDP", vec![frame(17, 64)]),
        ("1500-byte UDP", vec![frame(17, 1500)]),
    ];
    let flags: [(&'static str, PrintOptions); 3] = [
        ("-n", PrintOptions::default()),
        (
            "-n -v",
            PrintOptions {
                verbose: 1,
                ..PrintOptions::default()
            },
        ),
        (
            "-n -X",
            PrintOptions {
                dump: Some(Dump {
                    style: DumpStyle::HexAscii,
                    link_layer: false,
                }),
                ..PrintOptions::default()
            },
        ),
    ];
    let mut v = Vec::new();
    for (packets, frames) in &sets {
        for (f, opts) in &flags {
            v.push(PrintBench {
                packets,
                flags: f,
                ns_per_packet: ns_per_packet(frames, opts, iterations),
            });
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_prints_the_frames() {
        let results = run(10);
        assert_eq!(results.len(), 12);
        let mut out = Vec::new();
        let mut p = Printer::new(PrintOptions {
            time: super::super::TimeStyle::None,
            ..PrintOptions::default()
        });
        for (proto, len) in [(6, 64), (17, 1500)] {
            let f = frame(proto, len);
            p.format(
                &PacketRef {
                    ts_ns: 0,
                    interface: None,
                    direction: Direction::Unknown,
                    linktype: LINKTYPE_ETHERNET,
                    orig_len: f.len() as u32,
                    data: &f,
                },
                &mut out,
            );
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "IP 192.0.2.1.40000 > 198.51.100.2.443: Flags [P.], seq 1000000:1000010, \
             ack 2000000, win 502, length 10\n\
             IP 192.0.2.1.40000 > 198.51.100.2.5001: UDP, length 1458\n"
        );
    }
}
