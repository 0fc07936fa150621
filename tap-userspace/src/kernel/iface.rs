//! Interface names, indexes and the default-route interface.

use std::ffi::CString;

/// Index of the interface `name`, if it exists.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// Name of the interface with index `index`, if it exists.
pub fn ifname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf holds IF_NAMESIZE bytes as the call requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated string into buf.
    Some(
        unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// The interface of the IPv4 default route (lowest metric), else of the IPv6 one, as tcpdump
/// picks "the first interface that is up" but more usefully for a host with one uplink.
pub fn default_route_interface() -> Option<String> {
    if let Ok(table) = std::fs::read_to_string("/proc/net/route") {
        if let Some(name) = default_v4(&table) {
            return Some(name);
        }
    }
    if let Ok(table) = std::fs::read_to_string("/proc/net/ipv6_route") {
        if let Some(name) = default_v6(&table) {
            return Some(name);
        }
    }
    None
}

fn default_v4(table: &str) -> Option<String> {
    const RTF_UP: u32 = 0x1;
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, flags, metric, mask) =
                (f.first()?, f.get(1)?, f.get(3)?, f.get(6)?, f.get(7)?);
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let metric: u32 = metric.parse().ok()?;
            (*dest == "00000000" && *mask == "00000000" && flags & RTF_UP != 0)
                .then(|| (metric, iface.to_string()))
        })
        .min()
        .map(|(_, name)| name)
}

fn default_v6(table: &str) -> Option<String> {
    table
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dest, plen, metric, iface) = (f.first()?, f.get(1)?, f.get(5)?, f.get(9)?);
            let metric = u32::from_str_radix(metric, 16).ok()?;
            (dest.chars().all(|c| c == '0') && *plen == "00" && *iface != "lo")
                .then(|| (metric, iface.to_string()))
        })
        .min()
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_lowest_metric_default_v4() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth1\t00000000\t0102A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0\n\
            eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(default_v4(table).as_deref(), Some("eth0"));
        assert_eq!(default_v4("Iface\tDestination\n"), None);
    }

    #[test]
    fn picks_default_v6() {
        let table = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 ens3\n\
            20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 ens3\n";
        assert_eq!(default_v6(table).as_deref(), Some("ens3"));
    }

    #[test]
    fn loopback_index_roundtrip() {
        let index = ifindex("lo").unwrap();
        assert_eq!(ifname(index).as_deref(), Some("lo"));
        assert_eq!(ifindex("definitely-not-here"), None);
    }
}
