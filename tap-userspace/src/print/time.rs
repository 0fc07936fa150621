//! The timestamp at the start of each line, in tcpdump's `-t` styles.

use super::{TimeStyle, emit::Emit};

const NS_PER_SEC: u64 = 1_000_000_000;

/// A wall-clock second broken down into calendar fields.
#[derive(Debug, Clone, Copy, Default)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
}

/// Calendar fields of `secs` since the epoch in UTC (days-from-civil, inverted).
fn utc(secs: i64) -> Civil {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        min: (rem % 3600 / 60) as u32,
        sec: (rem % 60) as u32,
    }
}

/// Calendar fields of `secs` in the local time zone (`localtime_r`, as tcpdump uses).
fn local(secs: i64) -> Option<Civil> {
    let t = libc::time_t::try_from(secs).ok()?;
    // SAFETY: an all-zero `tm` is a valid value to be overwritten.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is the thread-safe variant.
    let r = unsafe { libc::localtime_r(&raw const t, &raw mut tm) };
    if r.is_null() {
        return None;
    }
    Some(Civil {
        year: i64::from(tm.tm_year) + 1900,
        month: u32::try_from(tm.tm_mon + 1).ok()?,
        day: u32::try_from(tm.tm_mday).ok()?,
        hour: u32::try_from(tm.tm_hour).ok()?,
        min: u32::try_from(tm.tm_min).ok()?,
        sec: u32::try_from(tm.tm_sec).ok()?,
    })
}

fn two(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 10 % 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

fn hms(out: &mut Vec<u8>, c: &Civil) {
    two(out, c.hour);
    out.push(b':');
    two(out, c.min);
    out.push(b':');
    two(out, c.sec);
}

/// Formats timestamps; holds the previous packet's (for `-ttt`) or the first one's (`-ttttt`),
/// and the last second converted to local time (the conversion costs more than the rest).
#[derive(Debug)]
pub(super) struct Clock {
    style: TimeStyle,
    nanos: bool,
    /// Reference for the relative styles: (seconds, fraction in the print precision).
    reference: Option<(u64, u64)>,
    /// Last local second converted and its fields.
    cached: Option<(u64, Option<Civil>)>,
}

impl Clock {
    pub(super) fn new(style: TimeStyle, nanos: bool) -> Self {
        Self {
            style,
            nanos,
            reference: None,
            cached: None,
        }
    }

    fn frac(&self, out: &mut Vec<u8>, frac: u64) {
        out.push(b'.');
        let (width, mut v) = if self.nanos { (9, frac) } else { (6, frac) };
        let mut tmp = [b'0'; 9];
        for i in (0..width).rev() {
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        out.extend_from_slice(&tmp[..width]);
    }

    fn local_fields(&mut self, sec: u64) -> Option<Civil> {
        match self.cached {
            Some((s, c)) if s == sec => c,
            _ => {
                let c = local(i64::try_from(sec).ok()?);
                self.cached = Some((sec, c));
                c
            }
        }
    }

    /// Appends the timestamp of a packet stamped `ts_ns` (ns since the epoch) and its trailing
    /// space; nothing for [`TimeStyle::None`].
    pub(super) fn write(&mut self, out: &mut Vec<u8>, ts_ns: u64) {
        let sec = ts_ns / NS_PER_SEC;
        let frac = if self.nanos {
            ts_ns % NS_PER_SEC
        } else {
            ts_ns % NS_PER_SEC / 1000
        };
        // tcpdump refuses seconds with the top bit of a 32-bit value set.
        let bad = sec & 0x8000_0000 != 0 || sec > u64::from(u32::MAX);
        match self.style {
            TimeStyle::None => {}
            TimeStyle::Clock | TimeStyle::Date => {
                match (bad, self.local_fields(sec)) {
                    (false, Some(c)) => {
                        if self.style == TimeStyle::Date {
                            out.dec(c.year.unsigned_abs());
                            out.push(b'-');
                            two(out, c.month);
                            out.push(b'-');
                            two(out, c.day);
                            out.push(b' ');
                        }
                        hms(out, &c);
                        self.frac(out, frac);
                    }
                    _ => out.s("[Error converting time]"),
                }
                out.push(b' ');
            }
            TimeStyle::Epoch => {
                if bad {
                    out.s("[Error converting time]");
                } else {
                    out.dec(sec);
                    self.frac(out, frac);
                }
                out.push(b' ');
            }
            TimeStyle::Delta | TimeStyle::SinceFirst => {
                let unit = if self.nanos { NS_PER_SEC } else { 1_000_000 };
                let now = (sec, frac);
                let reference = *self.reference.get_or_insert(now);
                let (negative, (a, b)) = if now < reference {
                    (true, (reference, now))
                } else {
                    (false, (now, reference))
                };
                let (mut ds, df) = if a.1 >= b.1 {
                    (a.0 - b.0, a.1 - b.1)
                } else {
                    (a.0 - b.0 - 1, a.1 + unit - b.1)
                };
                out.push(if negative { b'-' } else { b' ' });
                if ds & 0x8000_0000 != 0 {
                    out.s("[Error converting time]");
                } else {
                    ds = ds.min(u64::from(u32::MAX));
                    hms(out, &utc(i64::try_from(ds).unwrap_or(0)));
                    self.frac(out, df);
                }
                out.push(b' ');
                if self.style == TimeStyle::Delta {
                    self.reference = Some(now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_from_days() {
        let c = utc(1_700_000_000);
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.min, c.sec),
            (2023, 11, 14, 22, 13, 20)
        );
        let c = utc(951_782_400); // 2000-02-29
        assert_eq!((c.year, c.month, c.day), (2000, 2, 29));
        let c = utc(0);
        assert_eq!((c.year, c.month, c.day, c.hour), (1970, 1, 1, 0));
    }

    fn text(style: TimeStyle, nanos: bool, ts: &[u64]) -> Vec<String> {
        let mut c = Clock::new(style, nanos);
        ts.iter()
            .map(|&t| {
                let mut out = Vec::new();
                c.write(&mut out, t);
                String::from_utf8(out).unwrap()
            })
            .collect()
    }

    #[test]
    fn relative_styles() {
        let ts = [
            1_700_000_000_999_999_999,
            1_700_000_001_000_000_001,
            1_700_003_601_500_000_000,
            1_700_000_000_000_000_000,
        ];
        assert_eq!(
            text(TimeStyle::Delta, false, &ts),
            [
                " 00:00:00.000000 ",
                " 00:00:00.000001 ",
                " 01:00:00.500000 ",
                "-01:00:01.500000 "
            ]
        );
        assert_eq!(
            text(TimeStyle::SinceFirst, true, &ts),
            [
                " 00:00:00.000000000 ",
                " 00:00:00.000000002 ",
                " 01:00:00.500000001 ",
                "-00:00:00.999999999 "
            ]
        );
        assert_eq!(
            text(TimeStyle::Epoch, false, &ts[..1]),
            ["1700000000.999999 "]
        );
        assert_eq!(text(TimeStyle::None, false, &ts[..1]), [""]);
    }
}
