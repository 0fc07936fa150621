//! Community ID v1 (corelight/community-id-spec): the flow hash Suricata, Zeek, Arkime and
//! Wireshark print, so the store's index joins their logs.
//!
//! `"1:" + base64(sha1(seed . saddr . daddr . proto . 0 . sport . dport))`, every field in
//! network byte order, the endpoints ordered so the smaller (address, port) comes first. ICMP
//! and `ICMPv6` use the type and its counterpart (or the code, for one-way messages) as ports, as
//! Zeek does; other IP protocols hash without ports.

use base64::Engine as _;
use sha1::{Digest as _, Sha1};

/// IP protocol numbers the hash treats specially.
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const SCTP: u8 = 132;
pub const ICMP: u8 = 1;
pub const ICMP6: u8 = 58;

/// The "ports" of an ICMP message: `(type, counterpart type)` for request/reply pairs, `(type,
/// code)` for one-way messages, and whether it is one-way (then the endpoints are not reordered).
#[must_use]
pub fn icmp_ports(proto: u8, icmp_type: u8, code: u8) -> (u16, u16, bool) {
    let counterpart = match proto {
        ICMP => match icmp_type {
            // echo reply / echo, router advertisement / solicitation, timestamp, information,
            // address mask.
            0 => Some(8),
            8 => Some(0),
            9 => Some(10),
            10 => Some(9),
            13 => Some(14),
            14 => Some(13),
            15 => Some(16),
            16 => Some(15),
            17 => Some(18),
            18 => Some(17),
            _ => None,
        },
        _ => match icmp_type {
            // echo, MLD query / report, router solicitation / advertisement, neighbour
            // solicitation / advertisement, node information (WRU), home agent address discovery.
            128 => Some(129),
            129 => Some(128),
            130 => Some(131),
            131 => Some(130),
            133 => Some(134),
            134 => Some(133),
            135 => Some(136),
            136 => Some(135),
            139 => Some(140),
            140 => Some(139),
            144 => Some(145),
            145 => Some(144),
            _ => None,
        },
    };
    match counterpart {
        Some(c) => (u16::from(icmp_type), c, false),
        None => (u16::from(icmp_type), u16::from(code), true),
    }
}

/// The endpoints of a flow as the hash takes them. Addresses are 4 (IPv4) or 16 (IPv6) bytes,
/// network byte order; ports host order (`None` for protocols hashed without ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple<'a> {
    pub src: &'a [u8],
    pub dst: &'a [u8],
    pub proto: u8,
    pub ports: Option<(u16, u16)>,
}

/// Whether (`a`, `pa`) sorts before or equal to (`b`, `pb`): the spec's endpoint order.
#[must_use]
pub fn ordered(a: &[u8], pa: u16, b: &[u8], pb: u16) -> bool {
    a < b || (a == b && pa <= pb)
}

/// The Community ID v1 of `t` with `seed` (0 unless a deployment chose another). The endpoints
/// are ordered here, except for one-way ICMP, which the caller passes as the packet had them
/// with `one_way`.
#[must_use]
pub fn community_id(t: &Tuple<'_>, seed: u16, one_way: bool) -> String {
    let (sp, dp) = t.ports.unwrap_or((0, 0));
    let (src, dst, sp, dp) = if one_way || ordered(t.src, sp, t.dst, dp) {
        (t.src, t.dst, sp, dp)
    } else {
        (t.dst, t.src, dp, sp)
    };
    let mut h = Sha1::new();
    h.update(seed.to_be_bytes());
    h.update(src);
    h.update(dst);
    h.update([t.proto, 0]);
    if t.ports.is_some() {
        h.update(sp.to_be_bytes());
        h.update(dp.to_be_bytes());
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(30);
    out.push_str("1:");
    base64::engine::general_purpose::STANDARD.encode_string(digest, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    /// (protocol, source, destination, ports, Community ID with seed 0[, with seed 1]).
    type Case<'a> = (u8, &'a str, &'a str, Option<(u16, u16)>, &'a str);
    type SeededCase<'a> = (u8, &'a str, &'a str, Option<(u16, u16)>, &'a str, &'a str);

    fn addr(s: &str) -> Vec<u8> {
        match s.parse::<IpAddr>().unwrap() {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    }

    /// The spec's baseline table (baseline/README.md), default seed and seed 1.
    #[test]
    fn spec_baseline_vectors() {
        let v6a = "fe80:0001:0203:0405:0607:0809:0A0B:0C0D";
        let v6b = "fe80:1011:1213:1415:1617:1819:1A1B:1C1D";
        #[rustfmt::skip]
        let cases: &[SeededCase<'_>] = &[
            (6, "1.2.3.4", "5.6.7.8", Some((1122, 3344)), "1:wCb3OG7yAFWelaUydu0D+125CLM=", "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk="),
            (6, "5.6.7.8", "1.2.3.4", Some((3344, 1122)), "1:wCb3OG7yAFWelaUydu0D+125CLM=", "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk="),
            (17, "1.2.3.4", "5.6.7.8", Some((1122, 3344)), "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=", "1:OShq+iKDAMVouh/4bMxB9Sz4amw="),
            (17, "5.6.7.8", "1.2.3.4", Some((3344, 1122)), "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=", "1:OShq+iKDAMVouh/4bMxB9Sz4amw="),
            (132, "1.2.3.4", "5.6.7.8", Some((1122, 3344)), "1:EKt4MsxuyaE6mL+hmrEkQ9csDD8=", "1:uitchpn5MMGAQKBJh7bIr/bAr7s="),
            (132, "5.6.7.8", "1.2.3.4", Some((3344, 1122)), "1:EKt4MsxuyaE6mL+hmrEkQ9csDD8=", "1:uitchpn5MMGAQKBJh7bIr/bAr7s="),
            (46, "1.2.3.4", "5.6.7.8", None, "1:ikv3kmf89luf73WPz1jOs49S768=", "1:/buhqeOmaRCopOZFy9HnoJd5XW8="),
            (46, "5.6.7.8", "1.2.3.4", None, "1:ikv3kmf89luf73WPz1jOs49S768=", "1:/buhqeOmaRCopOZFy9HnoJd5XW8="),
            (46, v6a, v6b, None, "1:wQ/2mwrnXP4lmJcHdGL5ePjR+e0=", "1:j6EyyfBzL4vWKHFXgUqb5Az3OxM="),
            (46, v6b, v6a, None, "1:wQ/2mwrnXP4lmJcHdGL5ePjR+e0=", "1:j6EyyfBzL4vWKHFXgUqb5Az3OxM="),
        ];
        for &(proto, s, d, ports, seed0, seed1) in cases {
            let (src, dst) = (addr(s), addr(d));
            let t = Tuple {
                src: &src,
                dst: &dst,
                proto,
                ports,
            };
            assert_eq!(community_id(&t, 0, false), seed0, "{proto} {s} {d}");
            assert_eq!(community_id(&t, 1, false), seed1, "{proto} {s} {d} seed 1");
        }
    }

    /// ICMP rows of the baseline: the message type maps to ports.
    #[test]
    fn spec_icmp_vectors() {
        let v6a = "fe80:0001:0203:0405:0607:0809:0A0B:0C0D";
        let v6b = "fe80:1011:1213:1415:1617:1819:1A1B:1C1D";
        #[rustfmt::skip]
        let cases: &[(u8, &str, &str, u8, u8, &str, &str)] = &[
            (ICMP, "1.2.3.4", "5.6.7.8", 8, 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0=", "1:9pr4ZGTICiuZoIh90RRYE2RyXpU="),
            (ICMP, "5.6.7.8", "1.2.3.4", 0, 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0=", "1:9pr4ZGTICiuZoIh90RRYE2RyXpU="),
            (ICMP, "1.2.3.4", "5.6.7.8", 11, 0, "1:f/YiSyWqczrTgfUCZlBUnvHRcPk=", "1:1DD7cWGC/Yg91YGsQeni8du3pIA="),
            (ICMP6, v6a, v6b, 128, 0, "1:0bf7hyMJUwt3fMED7z8LIfRpBeo=", "1:IO27GQzPuCtNnwFvjWALMHu5tJE="),
            (ICMP6, v6b, v6a, 129, 0, "1:0bf7hyMJUwt3fMED7z8LIfRpBeo=", "1:IO27GQzPuCtNnwFvjWALMHu5tJE="),
            (ICMP6, v6a, v6b, 146, 0, "1:fYC8+pz24E+EhANP1EZhpX0Dw10=", "1:Cv4IKJe56BNkF0MBW2YxQ3Nwc3s="),
        ];
        for &(proto, s, d, ty, code, seed0, seed1) in cases {
            let (src, dst) = (addr(s), addr(d));
            let (sp, dp, one_way) = icmp_ports(proto, ty, code);
            let t = Tuple {
                src: &src,
                dst: &dst,
                proto,
                ports: Some((sp, dp)),
            };
            assert_eq!(community_id(&t, 0, one_way), seed0, "{s} {d} type {ty}");
            assert_eq!(
                community_id(&t, 1, one_way),
                seed1,
                "{s} {d} type {ty} seed 1"
            );
        }
    }

    /// `baseline_deflt.json`, computed by pycommunityid over the spec's pcaps.
    #[test]
    fn spec_json_vectors() {
        #[rustfmt::skip]
        let cases: &[Case<'_>] = &[
            (58, "fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", Some((135, 136)), "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="),
            (58, "fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", Some((136, 135)), "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="),
            (58, "3ffe:501:1800:2345::2", "3ffe:507:0:1:200:86ff:fe05:80da", Some((3, 0)), "1:2ObVBgIn28oZvibYZhZMBgh7WdQ="),
            (58, "3ffe:501:410:0:2c0:dfff:fe47:33e", "3ffe:507:0:1:200:86ff:fe05:80da", Some((1, 4)), "1:hLZd0XGWojozrvxqE0dWB1iM6R0="),
            (58, "fe80::200:86ff:fe05:80da", "ff02::2", Some((133, 134)), "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0="),
            (1, "192.168.0.89", "192.168.0.1", Some((8, 0)), "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
            (1, "192.168.0.1", "192.168.0.89", Some((0, 8)), "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
            (1, "10.0.0.1", "10.0.0.2", Some((11, 0)), "1:YHxtAirCG//0OzkcVAukqKQN9xM="),
            (6, "2001:470:e5bf:dead:4957:2174:e82c:4887", "2607:f8b0:400c:c03::1a", Some((63943, 25)), "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4="),
            (132, "192.168.170.8", "192.168.170.56", Some((7, 7)), "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="),
            (6, "128.232.110.120", "66.35.250.204", Some((34855, 80)), "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
            (17, "8.8.8.8", "192.168.1.52", Some((53, 54585)), "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
            (46, "10.1.12.2", "10.1.12.1", None, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw="),
        ];
        for &(proto, s, d, ports, want) in cases {
            let (src, dst) = (addr(s), addr(d));
            // The JSON lists ICMP "ports" as pycommunityid derived them: one-way messages keep
            // their order (type 3/1/11 with a code), pairs are ordered like ports.
            let one_way = matches!(proto, ICMP | ICMP6)
                && ports.is_some_and(|(t, _)| icmp_ports(proto, u8::try_from(t).unwrap(), 0).2);
            let t = Tuple {
                src: &src,
                dst: &dst,
                proto,
                ports,
            };
            assert_eq!(community_id(&t, 0, one_way), want, "{proto} {s} {d}");
        }
    }
}
