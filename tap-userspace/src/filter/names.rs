//! Built-in name tables, so a filter means the same on every host and never reads
//! `/etc/services`, `/etc/protocols` or DNS. The entries are those of Debian's netbase (the files
//! the reference tcpdump reads), including which transport each service is listed for: libpcap
//! turns `port ssh` into `tcp port 22` because ssh is listed for TCP only.

/// The transports a service name is listed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Listed {
    Tcp,
    Udp,
    /// TCP and UDP, same port: no restriction.
    Both,
}

use Listed::{Both, Tcp, Udp};

/// Service names (and aliases), port (host order), transports.
const SERVICES: &[(&str, u16, Listed)] = &[
    ("echo", 7, Both),
    ("discard", 9, Both),
    ("null", 9, Both),
    ("sink", 9, Both),
    ("daytime", 13, Both),
    ("chargen", 19, Both),
    ("source", 19, Both),
    ("ttytst", 19, Both),
    ("ftp-data", 20, Tcp),
    ("ftp", 21, Tcp),
    ("ssh", 22, Tcp),
    ("telnet", 23, Tcp),
    ("smtp", 25, Tcp),
    ("mail", 25, Tcp),
    ("time", 37, Both),
    ("timserver", 37, Both),
    ("whois", 43, Tcp),
    ("nicname", 43, Tcp),
    ("tacacs", 49, Both),
    ("domain", 53, Both),
    ("bootps", 67, Udp),
    ("bootpc", 68, Udp),
    ("tftp", 69, Udp),
    ("gopher", 70, Tcp),
    ("finger", 79, Tcp),
    ("http", 80, Tcp),
    ("www", 80, Tcp),
    ("kerberos", 88, Both),
    ("kerberos-sec", 88, Both),
    ("kerberos5", 88, Both),
    ("krb5", 88, Both),
    ("pop3", 110, Tcp),
    ("pop-3", 110, Tcp),
    ("sunrpc", 111, Both),
    ("portmapper", 111, Both),
    ("auth", 113, Tcp),
    ("authentication", 113, Tcp),
    ("ident", 113, Tcp),
    ("tap", 113, Tcp),
    ("nntp", 119, Tcp),
    ("readnews", 119, Tcp),
    ("untp", 119, Tcp),
    ("ntp", 123, Udp),
    ("epmap", 135, Tcp),
    ("loc-srv", 135, Tcp),
    ("netbios-ns", 137, Udp),
    ("netbios-dgm", 138, Udp),
    ("netbios-ssn", 139, Tcp),
    ("imap2", 143, Tcp),
    ("imap", 143, Tcp),
    ("snmp", 161, Both),
    ("snmp-trap", 162, Both),
    ("snmptrap", 162, Both),
    ("xdmcp", 177, Udp),
    ("bgp", 179, Tcp),
    ("ldap", 389, Both),
    ("https", 443, Both),
    ("microsoft-ds", 445, Tcp),
    ("kpasswd", 464, Both),
    ("submissions", 465, Tcp),
    ("smtps", 465, Tcp),
    ("ssmtp", 465, Tcp),
    ("urd", 465, Tcp),
    ("isakmp", 500, Udp),
    ("rtsp", 554, Both),
    ("ipp", 631, Tcp),
    ("ldaps", 636, Both),
    ("exec", 512, Tcp),
    ("biff", 512, Udp),
    ("comsat", 512, Udp),
    ("login", 513, Tcp),
    ("who", 513, Udp),
    ("whod", 513, Udp),
    ("shell", 514, Tcp),
    ("cmd", 514, Tcp),
    ("syslog", 514, Both),
    ("printer", 515, Tcp),
    ("spooler", 515, Tcp),
    ("talk", 517, Udp),
    ("ntalk", 518, Udp),
    ("route", 520, Udp),
    ("routed", 520, Udp),
    ("router", 520, Udp),
    ("uucp", 540, Tcp),
    ("uucpd", 540, Tcp),
    ("dhcpv6-client", 546, Udp),
    ("dhcpv6-server", 547, Udp),
    ("submission", 587, Tcp),
    ("domain-s", 853, Both),
    ("rsync", 873, Tcp),
    ("ftps-data", 989, Tcp),
    ("ftps", 990, Tcp),
    ("telnets", 992, Tcp),
    ("imaps", 993, Tcp),
    ("pop3s", 995, Tcp),
    ("socks", 1080, Tcp),
    ("openvpn", 1194, Both),
    ("ms-sql-s", 1433, Tcp),
    ("ms-sql-m", 1434, Udp),
    ("l2f", 1701, Udp),
    ("l2tp", 1701, Udp),
    ("radius", 1812, Both),
    ("radius-acct", 1813, Both),
    ("radacct", 1813, Both),
    ("nfs", 2049, Both),
    ("mysql", 3306, Tcp),
    ("ms-wbt-server", 3389, Tcp),
    ("sip", 5060, Both),
    ("sip-tls", 5061, Both),
    ("xmpp-client", 5222, Tcp),
    ("jabber-client", 5222, Tcp),
    ("xmpp-server", 5269, Tcp),
    ("jabber-server", 5269, Tcp),
    ("mdns", 5353, Udp),
    ("postgresql", 5432, Tcp),
    ("postgres", 5432, Tcp),
    ("amqps", 5671, Tcp),
    ("amqp", 5672, Tcp),
    ("x11", 6000, Tcp),
    ("x11-0", 6000, Tcp),
    ("redis", 6379, Tcp),
    ("http-alt", 8080, Tcp),
    ("webcache", 8080, Tcp),
    ("ipsec-nat-t", 4500, Udp),
    ("ptp-event", 319, Udp),
    ("ptp-general", 320, Udp),
    ("git", 9418, Tcp),
];

/// IP protocol names and aliases (`proto \gre`), as in netbase's `/etc/protocols`, plus `icmp6`.
/// Values above 255 (`mptcp`) are listed there too; they never match a packet.
const IP_PROTOCOLS: &[(&str, u32)] = &[
    ("ip", 0),
    ("IP", 0),
    ("hopopt", 0),
    ("HOPOPT", 0),
    ("icmp", 1),
    ("ICMP", 1),
    ("igmp", 2),
    ("IGMP", 2),
    ("ggp", 3),
    ("GGP", 3),
    ("ipencap", 4),
    ("IP-ENCAP", 4),
    ("st", 5),
    ("ST", 5),
    ("tcp", 6),
    ("TCP", 6),
    ("egp", 8),
    ("EGP", 8),
    ("igp", 9),
    ("IGP", 9),
    ("pup", 12),
    ("PUP", 12),
    ("udp", 17),
    ("UDP", 17),
    ("hmp", 20),
    ("HMP", 20),
    ("xns-idp", 22),
    ("XNS-IDP", 22),
    ("rdp", 27),
    ("RDP", 27),
    ("iso-tp4", 29),
    ("ISO-TP4", 29),
    ("dccp", 33),
    ("DCCP", 33),
    ("xtp", 36),
    ("XTP", 36),
    ("ddp", 37),
    ("DDP", 37),
    ("idpr-cmtp", 38),
    ("IDPR-CMTP", 38),
    ("ipv6", 41),
    ("IPv6", 41),
    ("ipv6-route", 43),
    ("IPv6-Route", 43),
    ("ipv6-frag", 44),
    ("IPv6-Frag", 44),
    ("idrp", 45),
    ("IDRP", 45),
    ("rsvp", 46),
    ("RSVP", 46),
    ("gre", 47),
    ("GRE", 47),
    ("esp", 50),
    ("IPSEC-ESP", 50),
    ("ah", 51),
    ("IPSEC-AH", 51),
    ("skip", 57),
    ("SKIP", 57),
    ("ipv6-icmp", 58),
    ("IPv6-ICMP", 58),
    ("ipv6-nonxt", 59),
    ("IPv6-NoNxt", 59),
    ("ipv6-opts", 60),
    ("IPv6-Opts", 60),
    ("rspf", 73),
    ("RSPF", 73),
    ("CPHB", 73),
    ("vmtp", 81),
    ("VMTP", 81),
    ("eigrp", 88),
    ("EIGRP", 88),
    ("ospf", 89),
    ("OSPFIGP", 89),
    ("ax.25", 93),
    ("AX.25", 93),
    ("ipip", 94),
    ("IPIP", 94),
    ("etherip", 97),
    ("ETHERIP", 97),
    ("encap", 98),
    ("ENCAP", 98),
    ("pim", 103),
    ("PIM", 103),
    ("ipcomp", 108),
    ("IPCOMP", 108),
    ("vrrp", 112),
    ("VRRP", 112),
    ("l2tp", 115),
    ("L2TP", 115),
    ("isis", 124),
    ("ISIS", 124),
    ("sctp", 132),
    ("SCTP", 132),
    ("fc", 133),
    ("FC", 133),
    ("mobility-header", 135),
    ("Mobility-Header", 135),
    ("udplite", 136),
    ("UDPLite", 136),
    ("mpls-in-ip", 137),
    ("MPLS-in-IP", 137),
    ("manet", 138),
    ("hip", 139),
    ("HIP", 139),
    ("shim6", 140),
    ("Shim6", 140),
    ("wesp", 141),
    ("WESP", 141),
    ("rohc", 142),
    ("ROHC", 142),
    ("ethernet", 143),
    ("Ethernet", 143),
    ("mptcp", 262),
    ("MPTCP", 262),
    ("icmp6", 58),
];

/// The port and transports of a service name.
pub(super) fn service(name: &str) -> Option<(u16, Listed)> {
    SERVICES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, port, listed)| (port, listed))
}

/// The number of an IP protocol name.
pub(super) fn ip_protocol(name: &str) -> Option<u32> {
    IP_PROTOCOLS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, v)| v)
}

/// What an `ether proto` name means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EtherName {
    /// An EtherType (host order).
    Type(u16),
    /// A name libpcap compiles to 802.2 LLC/SNAP tests, which tap does not implement.
    Llc,
}

/// libpcap's `ether proto` names (`eproto_db` and `llc_db`).
pub(super) fn ether_protocol(name: &str) -> Option<EtherName> {
    Some(match name {
        "ip" => EtherName::Type(0x0800),
        "ip6" => EtherName::Type(0x86dd),
        "arp" => EtherName::Type(0x0806),
        "rarp" => EtherName::Type(0x8035),
        "decnet" => EtherName::Type(0x6003),
        "lat" => EtherName::Type(0x6004),
        "loopback" => EtherName::Type(0x9000),
        "mopdl" => EtherName::Type(0x6001),
        "moprc" => EtherName::Type(0x6002),
        "sca" => EtherName::Type(0x6007),
        "atalk" | "aarp" | "iso" | "stp" | "ipx" | "netbeui" => EtherName::Llc,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        assert_eq!(service("http"), Some((80, Tcp)));
        assert_eq!(service("domain"), Some((53, Both)));
        assert_eq!(service("ntp"), Some((123, Udp)));
        assert_eq!(service("nope"), None);
        assert_eq!(ip_protocol("gre"), Some(47));
        assert_eq!(ip_protocol("TCP"), Some(6));
        assert_eq!(ip_protocol("icmp6"), Some(58));
        assert_eq!(ether_protocol("ip6"), Some(EtherName::Type(0x86dd)));
        assert_eq!(ether_protocol("stp"), Some(EtherName::Llc));
    }

    #[test]
    fn tables_have_no_duplicate_names() {
        let mut names: Vec<_> = SERVICES.iter().map(|s| s.0).collect();
        names.sort_unstable();
        assert!(names.windows(2).all(|w| w[0] != w[1]), "duplicate service");
        let mut names: Vec<_> = IP_PROTOCOLS.iter().map(|s| s.0).collect();
        names.sort_unstable();
        assert!(names.windows(2).all(|w| w[0] != w[1]), "duplicate protocol");
    }
}
