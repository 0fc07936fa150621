//! Suricata's EVE alerts: one JSON object per line; only `event_type: "alert"` lines are kept.
//!
//! Fields read (Suricata 7): `timestamp` (`2026-11-27T10:15:07.123456+0000`), `flow_id`,
//! `community_id` (written when the eve-log output sets `community-id: true`), `src_ip`,
//! `src_port`, `dest_ip`, `dest_port`, `proto` (a name such as `TCP`, or a number), `vlan` (the
//! tags, outer first), and in `alert`: `signature_id`, `gid`, `rev`, `signature`, `category`,
//! `severity` (1 is the most severe). Other fields are ignored.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Why a line is not an alert tap can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EveError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("bad timestamp '{0}'")]
    Timestamp(String),
    #[error("alert without {0}")]
    Missing(&'static str),
    #[error("bad {field} '{value}'")]
    Bad { field: &'static str, value: String },
}

/// A flow as Suricata's alert names it: the alerting packet's direction (`src` sent it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FlowKey {
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 `ICMPv6`, 132 SCTP).
    pub proto: u8,
    pub src_ip: IpAddr,
    /// 0 for protocols without ports.
    pub src_port: u16,
    pub dest_ip: IpAddr,
    pub dest_port: u16,
    /// VLAN ids, outer first; empty for untagged traffic.
    pub vlan: Vec<u16>,
}

impl FlowKey {
    /// The same key for both directions: the lower (address, port) first.
    #[must_use]
    pub fn normalized(&self) -> Self {
        let a = (self.src_ip, self.src_port);
        let b = (self.dest_ip, self.dest_port);
        let ((src_ip, src_port), (dest_ip, dest_port)) = if a <= b { (a, b) } else { (b, a) };
        Self {
            proto: self.proto,
            src_ip,
            src_port,
            dest_ip,
            dest_port,
            vlan: self.vlan.clone(),
        }
    }

    /// Whether a packet of `proto` from `(a, pa)` to `(b, pb)` (either direction) on VLANs
    /// `vlan` belongs to this flow.
    #[must_use]
    pub fn matches(&self, proto: u8, a: IpAddr, pa: u16, b: IpAddr, pb: u16, vlan: &[u16]) -> bool {
        proto == self.proto
            && vlan == self.vlan.as_slice()
            && ((a, pa, b, pb) == (self.src_ip, self.src_port, self.dest_ip, self.dest_port)
                || (b, pb, a, pa) == (self.src_ip, self.src_port, self.dest_ip, self.dest_port))
    }

    /// `TCP 192.0.2.1:40000 -> 198.51.100.1:80`, with ` vlan 10/20` when tagged.
    #[must_use]
    pub fn describe(&self) -> String {
        let name = proto_name(self.proto);
        let end = |ip: &IpAddr, port: u16| match (ip, port) {
            (_, 0) => ip.to_string(),
            (IpAddr::V6(_), p) => format!("[{ip}]:{p}"),
            (IpAddr::V4(_), p) => format!("{ip}:{p}"),
        };
        let mut s = format!(
            "{name} {} -> {}",
            end(&self.src_ip, self.src_port),
            end(&self.dest_ip, self.dest_port)
        );
        if !self.vlan.is_empty() {
            let ids: Vec<String> = self.vlan.iter().map(u16::to_string).collect();
            s.push_str(" vlan ");
            s.push_str(&ids.join("/"));
        }
        s
    }
}

/// The protocol's name as Suricata writes it, or its number.
fn proto_name(proto: u8) -> String {
    match proto {
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        58 => "IPv6-ICMP".into(),
        132 => "SCTP".into(),
        n => n.to_string(),
    }
}

/// The protocol number of Suricata's `proto` field.
fn proto_number(text: &str) -> Option<u8> {
    match text.to_ascii_uppercase().as_str() {
        "ICMP" => Some(1),
        "TCP" => Some(6),
        "UDP" => Some(17),
        "IPV6-ICMP" | "ICMPV6" => Some(58),
        "SCTP" => Some(132),
        "GRE" => Some(47),
        "ESP" => Some(50),
        other => other.parse().ok(),
    }
}

/// What an evidence file says about one alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertMeta {
    /// ns since the epoch (UTC).
    pub time_ns: u64,
    /// As Suricata wrote it.
    pub timestamp: String,
    pub sid: u64,
    pub gid: u64,
    pub rev: u64,
    pub signature: String,
    pub category: String,
    /// 1 (most severe) to 255; Suricata's default is 3.
    pub severity: u8,
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub meta: AlertMeta,
    /// Suricata's id of the flow (unique within one Suricata process).
    pub flow_id: Option<u64>,
    /// Community ID v1 of the flow (`1:` and base64), when Suricata writes it.
    pub community_id: Option<String>,
    pub flow: FlowKey,
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    event_type: Option<std::borrow::Cow<'a, str>>,
    timestamp: Option<String>,
    flow_id: Option<u64>,
    community_id: Option<String>,
    src_ip: Option<String>,
    src_port: Option<u16>,
    dest_ip: Option<String>,
    dest_port: Option<u16>,
    proto: Option<serde_json::Value>,
    vlan: Option<Vec<u16>>,
    alert: Option<RecordAlert>,
}

#[derive(Deserialize)]
struct RecordAlert {
    signature_id: Option<u64>,
    gid: Option<u64>,
    rev: Option<u64>,
    signature: Option<String>,
    category: Option<String>,
    severity: Option<u8>,
}

/// Parses one EVE line: `Ok(None)` for a well-formed event that is not an alert.
///
/// # Errors
/// A line that is not JSON, or an alert without its timestamp, signature id, addresses or
/// protocol, or with malformed ones.
pub fn parse_line(line: &[u8]) -> Result<Option<Alert>, EveError> {
    let r: Record<'_> = serde_json::from_slice(line).map_err(|e| EveError::Json(e.to_string()))?;
    if r.event_type.as_deref() != Some("alert") {
        return Ok(None);
    }
    let a = r.alert.ok_or(EveError::Missing("alert"))?;
    let timestamp = r.timestamp.ok_or(EveError::Missing("timestamp"))?;
    let time_ns =
        parse_timestamp(&timestamp).ok_or_else(|| EveError::Timestamp(timestamp.clone()))?;
    let ip = |field: &'static str, v: Option<String>| -> Result<IpAddr, EveError> {
        let v = v.ok_or(EveError::Missing(field))?;
        v.parse().map_err(|_| EveError::Bad { field, value: v })
    };
    let proto = match r.proto.ok_or(EveError::Missing("proto"))? {
        serde_json::Value::String(s) => proto_number(&s).ok_or(EveError::Bad {
            field: "proto",
            value: s,
        })?,
        serde_json::Value::Number(n) => {
            n.as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .ok_or(EveError::Bad {
                    field: "proto",
                    value: n.to_string(),
                })?
        }
        other => {
            return Err(EveError::Bad {
                field: "proto",
                value: other.to_string(),
            });
        }
    };
    Ok(Some(Alert {
        meta: AlertMeta {
            time_ns,
            timestamp,
            sid: a.signature_id.ok_or(EveError::Missing("signature_id"))?,
            gid: a.gid.unwrap_or(1),
            rev: a.rev.unwrap_or(0),
            signature: a.signature.unwrap_or_default(),
            category: a.category.unwrap_or_default(),
            severity: a.severity.unwrap_or(3),
        },
        flow_id: r.flow_id,
        community_id: r.community_id.filter(|c| !c.is_empty()),
        flow: FlowKey {
            proto,
            src_ip: ip("src_ip", r.src_ip)?,
            src_port: r.src_port.unwrap_or(0),
            dest_ip: ip("dest_ip", r.dest_ip)?,
            dest_port: r.dest_port.unwrap_or(0),
            vlan: r.vlan.unwrap_or_default(),
        },
    }))
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HHMM|±HH:MM)` into ns since the epoch.
#[must_use]
pub fn parse_timestamp(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let s = text.get(from..from + len)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: u64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + u64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = (i - start).min(9);
        if digits == 0 {
            return None;
        }
        nanos *= 10u64.pow(u32::try_from(9 - digits).ok()?);
    }
    let offset: i64 = match &b[i..] {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let digits: Vec<u8> = rest.iter().copied().filter(|&c| c != b':').collect();
            if digits.len() != 4 || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let v = |k: usize| i64::from(digits[k] - b'0');
            let secs = (v(0) * 10 + v(1)) * 3600 + (v(2) * 10 + v(3)) * 60;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
        - offset;
    u64::try_from(secs)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALERT: &str = r#"{"timestamp":"2026-11-27T11:15:07.123456+0100","flow_id":1234567,"pcap_cnt":4,"event_type":"alert","src_ip":"192.0.2.1","src_port":40000,"dest_ip":"198.51.100.1","dest_port":80,"proto":"TCP","vlan":[10,20],"community_id":"1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=","alert":{"action":"allowed","gid":1,"signature_id":1000002,"rev":3,"signature":"tap test: token","category":"","severity":2},"http":{"url":"/x"}}"#;

    #[test]
    fn alerts_parse() {
        let a = parse_line(ALERT.as_bytes()).unwrap().unwrap();
        assert_eq!(a.meta.sid, 1_000_002);
        assert_eq!(a.meta.rev, 3);
        assert_eq!(a.meta.severity, 2);
        assert_eq!(a.meta.signature, "tap test: token");
        // 10:15:07.123456 UTC
        assert_eq!(a.meta.time_ns, 1_795_774_507_123_456_000);
        assert_eq!(a.flow_id, Some(1_234_567));
        assert_eq!(
            a.community_id.as_deref(),
            Some("1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=")
        );
        assert_eq!(a.flow.proto, 6);
        assert_eq!(a.flow.vlan, [10, 20]);
        assert_eq!(
            a.flow.describe(),
            "TCP 192.0.2.1:40000 -> 198.51.100.1:80 vlan 10/20"
        );
        let n = a.flow.normalized();
        let reverse = FlowKey {
            src_ip: a.flow.dest_ip,
            src_port: a.flow.dest_port,
            dest_ip: a.flow.src_ip,
            dest_port: a.flow.src_port,
            ..a.flow.clone()
        };
        assert_eq!(reverse.normalized(), n);
        assert!(a.flow.matches(
            6,
            "198.51.100.1".parse().unwrap(),
            80,
            "192.0.2.1".parse().unwrap(),
            40000,
            &[10, 20]
        ));
        assert!(!a.flow.matches(
            6,
            "198.51.100.1".parse().unwrap(),
            80,
            "192.0.2.1".parse().unwrap(),
            40000,
            &[10]
        ));
    }

    #[test]
    fn other_events_and_bad_lines() {
        assert_eq!(
            parse_line(br#"{"timestamp":"x","event_type":"flow"}"#),
            Ok(None)
        );
        assert!(matches!(parse_line(b"{\"event"), Err(EveError::Json(_))));
        let no_sid = ALERT.replace("\"signature_id\":1000002,", "");
        assert_eq!(
            parse_line(no_sid.as_bytes()),
            Err(EveError::Missing("signature_id"))
        );
        let bad_ip = ALERT.replace("192.0.2.1", "192.0.2.300");
        assert!(matches!(
            parse_line(bad_ip.as_bytes()),
            Err(EveError::Bad {
                field: "src_ip",
                ..
            })
        ));
        let icmp6 = ALERT
            .replace("\"TCP\"", "\"IPv6-ICMP\"")
            .replace("192.0.2.1", "2001:db8::1")
            .replace("\"src_port\":40000,", "");
        let a = parse_line(icmp6.as_bytes()).unwrap().unwrap();
        assert_eq!((a.flow.proto, a.flow.src_port), (58, 0));
        assert_eq!(
            a.flow.describe(),
            "IPv6-ICMP 2001:db8::1 -> 198.51.100.1:80 vlan 10/20"
        );
    }

    #[test]
    fn timestamps() {
        let t = |s| parse_timestamp(s);
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(t("1970-01-01T00:00:01.5+0000"), Some(1_500_000_000));
        assert_eq!(t("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(t("1969-12-31T23:00:00-0100"), Some(0));
        assert_eq!(
            t("2000-02-29T00:00:00.000000001Z"),
            Some(951_782_400_000_000_001)
        );
        assert_eq!(
            t("2026-11-27T10:15:07.1234567891Z"),
            Some(1_795_774_507_123_456_789)
        );
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-11-27T10:15:07",
            "2026-11-27T10:15:07.Z",
            "2026-11-27T10:15:07+01",
            "1969-12-31T23:59:59Z",
            "20x6-11-27T10:15:07Z",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }
}
