//! The parsed expression. Primitives are already resolved the way libpcap resolves them (short
//! addresses promoted, names looked up, qualifiers checked), so the compiler only maps them to
//! atoms.

use std::{
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
    ops::RangeInclusive,
};

use tap_common::filter::{dir, l4};

/// A boolean expression over primitives. `and` and `or` have equal precedence and associate to
/// the left, as in pcap-filter: `a or b and c` is `And[Or[a, b], c]`. Chains of the same operator
/// are flat (`a or b or c` is `Or[a, b, c]`, whatever the parentheses), so a list of thousands of
/// alternatives is one node, not a recursion as deep as the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Prim(Prim),
    Not(Box<Expr>),
    /// Two or more operands.
    And(Vec<Expr>),
    /// Two or more operands.
    Or(Vec<Expr>),
}

/// One primitive of the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prim {
    pub test: Test,
    /// VLAN depth: the number of `vlan` keywords before this primitive in the text (libpcap
    /// shifts every later offset by 4 bytes per `vlan`), 0..=[`tap_common::filter::MAX_VLAN_DEPTH`].
    pub depth: u8,
    /// Canonical text with the qualifiers spelled out (`port 22` for the `22` of `port 21 or 22`).
    pub text: String,
}

/// Address and port direction; `SrcOrDst` is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dir {
    Src,
    Dst,
    SrcOrDst,
    SrcAndDst,
}

impl Dir {
    /// The [`tap_common::filter::dir`] code.
    pub fn code(self) -> u8 {
        match self {
            Dir::Src => dir::SRC,
            Dir::Dst => dir::DST,
            Dir::SrcOrDst => dir::SRC_OR_DST,
            Dir::SrcAndDst => dir::SRC_AND_DST,
        }
    }
}

/// Which link-layer protocols an IPv4 `host`/`net` looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V4Proto {
    /// No qualifier: IPv4, ARP and RARP (libpcap's default).
    Any,
    Ip,
    Arp,
    Rarp,
}

/// IP version(s) a protocol test applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4 or IPv6.
    Any,
    V4,
    V6,
}

/// Transport protocols a port test accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// TCP, UDP or SCTP.
    Any,
    Tcp,
    Udp,
    Sctp,
}

impl L4 {
    /// The [`tap_common::filter::l4`] mask.
    pub fn mask(self) -> u32 {
        match self {
            L4::Any => l4::ANY,
            L4::Tcp => l4::TCP,
            L4::Udp => l4::UDP,
            L4::Sctp => l4::SCTP,
        }
    }
}

/// What a primitive tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    /// IPv4 `host`/`net`: the address masked to `prefix` bits equals `addr` (host bits zero).
    Net4 {
        proto: V4Proto,
        dir: Dir,
        addr: Ipv4Addr,
        prefix: u8,
    },
    /// IPv6 `host`/`net`.
    Net6 {
        dir: Dir,
        addr: Ipv6Addr,
        prefix: u8,
    },
    /// `ether host/src/dst`.
    EtherAddr { dir: Dir, mac: [u8; 6] },
    /// `port`/`portrange`: a port in `ports` (host order).
    Port {
        l4: L4,
        dir: Dir,
        ports: RangeInclusive<u16>,
    },
    /// EtherType at the primitive's depth (`ip`, `ip6`, `arp`, `rarp`, `ether proto`). Values
    /// above 0xffff are accepted, as libpcap does, and never match.
    EtherType(u32),
    /// `proto`, `ip proto`, `ip6 proto`, `tcp`, `udp`, `icmp`, ... Values above 255 never match.
    IpProto { family: Family, proto: u32 },
    /// `protochain`, `ip protochain`, `ip6 protochain`. Values above 255 never match.
    Protochain { family: Family, proto: u32 },
    /// `vlan` (`None`) or `vlan ID`: a VLAN tag at the primitive's depth.
    Vlan(Option<u16>),
}

impl fmt::Display for Prim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Display for Expr {
    /// Prints with the parentheses pcap-filter needs to read the same tree back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn chain(f: &mut fmt::Formatter<'_>, items: &[Expr], op: &str) -> fmt::Result {
            for (i, e) in items.iter().enumerate() {
                // Left-associative, equal precedence: only a chain after the first operand
                // needs parentheses.
                match (i, e) {
                    (0, _) => write!(f, "{e}")?,
                    (_, Expr::And(_) | Expr::Or(_)) => write!(f, " {op} ({e})")?,
                    _ => write!(f, " {op} {e}")?,
                }
            }
            Ok(())
        }
        match self {
            Expr::Prim(p) => write!(f, "{p}"),
            Expr::Not(e) => match **e {
                Expr::And(_) | Expr::Or(_) => write!(f, "not ({e})"),
                _ => write!(f, "not {e}"),
            },
            Expr::And(items) => chain(f, items, "and"),
            Expr::Or(items) => chain(f, items, "or"),
        }
    }
}

impl Expr {
    /// `a and b`, flattening chains.
    pub fn and(a: Expr, b: Expr) -> Expr {
        match (a, b) {
            (Expr::And(mut x), Expr::And(y)) => {
                x.extend(y);
                Expr::And(x)
            }
            (Expr::And(mut x), b) => {
                x.push(b);
                Expr::And(x)
            }
            (a, Expr::And(mut y)) => {
                y.insert(0, a);
                Expr::And(y)
            }
            (a, b) => Expr::And(vec![a, b]),
        }
    }

    /// `a or b`, flattening chains.
    pub fn or(a: Expr, b: Expr) -> Expr {
        match (a, b) {
            (Expr::Or(mut x), Expr::Or(y)) => {
                x.extend(y);
                Expr::Or(x)
            }
            (Expr::Or(mut x), b) => {
                x.push(b);
                Expr::Or(x)
            }
            (a, Expr::Or(mut y)) => {
                y.insert(0, a);
                Expr::Or(y)
            }
            (a, b) => Expr::Or(vec![a, b]),
        }
    }

    /// The top-level alternatives: the operands of the outermost `or` chain.
    pub fn alternatives(&self) -> Vec<&Expr> {
        match self {
            Expr::Or(items) => items.iter().collect(),
            other => vec![other],
        }
    }

    /// Every primitive, in text order.
    pub fn prims(&self) -> Vec<&Prim> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(e) = stack.pop() {
            match e {
                Expr::Prim(p) => out.push(p),
                Expr::Not(a) => stack.push(a),
                Expr::And(items) | Expr::Or(items) => stack.extend(items.iter().rev()),
            }
        }
        out
    }
}
