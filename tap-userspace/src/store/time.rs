//! Times of `--since` and `--until`: RFC 3339 (`2026-12-03T14:02:00Z`,
//! `2026-12-03T15:02:00.5+01:00`) or relative to now (`-15m`, `-2h30m`, `-1d`; `now`).

/// Parses a time into ns since the epoch; `now_ns` is what relative times count back from.
///
/// # Errors
///
/// When a file cannot be read or written, or holds what it should not (the error says which).
pub fn parse(s: &str, now_ns: u64) -> Result<u64, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now_ns);
    }
    if let Some(rel) = s.strip_prefix('-') {
        let d = humantime::parse_duration(rel)
            .map_err(|e| format!("not a relative time ({e}): use e.g. -15m, -2h, -1d"))?;
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        return Ok(now_ns.saturating_sub(ns));
    }
    let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| {
        format!("not an RFC 3339 time ({e}): use e.g. 2026-12-03T14:02:00Z, or -15m")
    })?;
    let ns = t
        .timestamp_nanos_opt()
        .ok_or_else(|| "out of range".to_string())?;
    u64::try_from(ns).map_err(|_| "before 1970".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_and_relative() {
        let now = 1_800_000_000_000_000_000;
        assert_eq!(
            parse("2026-12-03T14:02:00Z", now),
            Ok(1_796_306_520_000_000_000)
        );
        assert_eq!(
            parse("2026-12-03T15:02:00.25+01:00", now),
            Ok(1_796_306_520_250_000_000)
        );
        assert_eq!(parse("-15m", now), Ok(now - 900_000_000_000));
        assert_eq!(parse("-1h30m", now), Ok(now - 5_400_000_000_000));
        assert_eq!(parse("now", now), Ok(now));
        for bad in [
            "yesterday",
            "-15x",
            "2026-13-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "",
        ] {
            assert!(parse(bad, now).is_err(), "{bad}");
        }
    }
}
