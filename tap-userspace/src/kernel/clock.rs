//! Kernel time → wall-clock time.
//!
//! The programs stamp records with `bpf_ktime_get_ns()`, which is CLOCK_MONOTONIC. The offset to
//! CLOCK_REALTIME is sampled once per batch, so a clock step (NTP) shows up within one batch.

/// Reads a clock in nanoseconds.
fn now_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; these clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &raw mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Offset in nanoseconds to add to a CLOCK_MONOTONIC time to get CLOCK_REALTIME.
///
/// Takes the realtime reading between two monotonic ones and keeps the tightest of a few tries,
/// so the error is bounded by the shortest sandwich (well under a microsecond).
pub fn realtime_offset_ns() -> i64 {
    let mut best: Option<(i128, i128)> = None;
    for _ in 0..3 {
        let m1 = now_ns(libc::CLOCK_MONOTONIC);
        let r = now_ns(libc::CLOCK_REALTIME);
        let m2 = now_ns(libc::CLOCK_MONOTONIC);
        let width = m2 - m1;
        let offset = r - (m1 + width / 2);
        if best.is_none_or(|(w, _)| width < w) {
            best = Some((width, offset));
        }
    }
    best.map_or(0, |(_, o)| o as i64)
}

/// Converts a kernel monotonic timestamp to wall-clock nanoseconds since the Unix epoch.
pub fn to_realtime_ns(mono_ns: u64, offset_ns: i64) -> u64 {
    mono_ns.saturating_add_signed(offset_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converted_monotonic_time_is_close_to_realtime() {
        let offset = realtime_offset_ns();
        let mono = now_ns(libc::CLOCK_MONOTONIC) as u64;
        let real = now_ns(libc::CLOCK_REALTIME);
        let converted = i128::from(to_realtime_ns(mono, offset));
        assert!(
            (converted - real).abs() < 1_000_000,
            "off by {} ns",
            converted - real
        );
    }

    #[test]
    fn conversion_clamps_instead_of_wrapping() {
        assert_eq!(to_realtime_ns(5, -10), 0);
        assert_eq!(to_realtime_ns(u64::MAX, 10), u64::MAX);
        assert_eq!(to_realtime_ns(1_000, 500), 1_500);
    }
}
