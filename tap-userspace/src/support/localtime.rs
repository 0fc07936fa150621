//! Broken-down time (local or UTC) from seconds since the epoch, for file names and
//! timestamps in words.

/// Broken-down local time, as the name fields need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// Seconds since the Unix epoch.
    pub epoch: i64,
    pub year: i32,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// Day of the year, 1..=366.
    pub yday: u32,
    /// Offset of local time from UTC, in seconds (east positive).
    pub gmtoff: i64,
}

impl LocalTime {
    /// The local time at `epoch` seconds.
    pub fn at(epoch: i64) -> Self {
        let t: libc::time_t = epoch;
        // SAFETY: tm is plain old data; localtime_r only writes into it.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for the call; localtime_r is the thread-safe variant.
        let ok = !unsafe { libc::localtime_r(&raw const t, &raw mut tm) }.is_null();
        if !ok {
            return Self::utc(epoch);
        }
        Self {
            epoch,
            year: tm.tm_year + 1900,
            month: (tm.tm_mon + 1) as u32,
            day: tm.tm_mday as u32,
            hour: tm.tm_hour as u32,
            minute: tm.tm_min as u32,
            second: tm.tm_sec as u32,
            yday: (tm.tm_yday + 1) as u32,
            gmtoff: tm.tm_gmtoff,
        }
    }

    /// UTC, computed without the C library (civil-from-days, H. Hinnant).
    pub fn utc(epoch: i64) -> Self {
        const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let days = epoch.div_euclid(86_400);
        let secs = epoch.rem_euclid(86_400) as u32;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let yday = CUM[month as usize - 1] + day + u32::from(leap && month > 2);
        Self {
            epoch,
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
            yday,
            gmtoff: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_breakdown() {
        // 2026-11-27 10:15:07 UTC
        let t = LocalTime::utc(1_795_774_507);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second),
            (2026, 11, 27, 10, 15, 7)
        );
        assert_eq!(t.yday, 331);
        let t = LocalTime::utc(951_782_400); // 2000-02-29
        assert_eq!((t.year, t.month, t.day, t.yday), (2000, 2, 29, 60));
        let t = LocalTime::utc(0);
        assert_eq!((t.year, t.month, t.day, t.hour, t.yday), (1970, 1, 1, 0, 1));
    }
}
