//! Filters: a pcap-filter expression, compiled into the decision graph and set maps the eBPF
//! programs evaluate (`tap_common::filter`), and installed into those maps.
//!
//! - [`parse()`] reads the tcpdump language (the subset tap implements; anything else is a
//!   [`FilterError`] naming the token and its column) into an [`Expr`], resolving primitives the
//!   way libpcap 1.10 does for Ethernet captures.
//! - [`compile()`] turns it into a [`CompiledFilter`]: a forward-only graph of atoms, with OR-ed
//!   hosts, nets, ports and MAC addresses merged into set atoms whose values go into maps
//!   ([`lpm4_entries`], [`lpm6_entries`], [`port_masks`], [`mac_entries`]).
//! - [`image`] does both and produces what [`maps::FilterMaps::install`] writes.
//! - [`eval`](mod@eval) is a reference evaluator of a compiled filter over packet bytes, for tests.
//!
//! # libpcap's semantics, quirks included
//! The goal is that tap selects what `tcpdump -r FILE EXPR` (libpcap 1.10) selects:
//! - `and` and `or` have equal precedence, left to right: `a or b and c` is `(a or b) and c`.
//! - A bare value after `and`/`or` repeats the qualifiers of the last primitive with a
//!   qualifier (`port 21 or 22`; `not host a and b` is `not host a and host b`); after `tcp`,
//!   `vlan` and the like there are none, and a bare value is an error; after `( ... )` they are
//!   those from before the parenthesis.
//! - `host`/`net` without a protocol is IPv4, ARP and RARP; `port` is TCP, UDP and SCTP over IPv4
//!   (not in non-first fragments) and IPv6 (next header only, no extension headers).
//! - Service names restrict the transport the way netbase lists them: `port ssh` is
//!   `tcp port 22`, `port ntp` is `udp port 123`; `udp port ssh` is an error.
//! - Short addresses are promoted: `net 10` is 10.0.0.0/8, `net 192.0.2` 192.0.2.0/24,
//!   `host 10.1` tests 10.1.0.0/16, `host 53` is 0.0.0.53; numbers may be hex (`0x50`) or octal
//!   (`010`).
//! - Every primitive after a `vlan` keyword in the text (whatever the `and`/`or`/`not`
//!   structure) is evaluated one tag deeper; tap follows at most 2 tags.
//!
//! Not reproduced: libpcap refusing an expression its optimizer proves false ("expression rejects
//! all packets": tap compiles it, and it matches nothing), and the rare selections where
//! libpcap 1.10's optimizer changes the result (`tcpdump -O` agrees with tap there).

pub mod ast;
pub mod compile;
pub mod eval;
mod lex;
pub mod maps;
mod names;
pub mod parse;
#[cfg(test)]
mod proptests;

pub use ast::Expr;
pub use compile::{
    CompiledFilter, compile_expr, lpm4_entries, lpm6_entries, mac_entries, port_masks,
};
pub use parse::parse;

use tap_common::filter::{MAX_ADDRS, MAX_MACS};

use crate::excerpt::{excerpt, words};

/// What tap's filter language covers, for error messages.
pub const SUPPORTED: &str = "tap supports host, net (ADDR/LEN, ADDR mask MASK), port, portrange, \
    src/dst qualifiers, ether host/src/dst/proto, ip, ip6, arp, rarp, tcp, udp, sctp, icmp, icmp6, \
    [ip|ip6] proto, protochain, vlan [ID], and/or/not and parentheses";

/// Longest expression parsed, in bytes (1 MiB). Parsing and compiling cost time and memory in
/// proportion to the expression's length (at the limit, at worst about 0.6 s and 90 MB), so
/// this bounds both; it leaves room for the largest set the kernel program takes (65,536 hosts
/// written `host A or B or ...`).
pub const MAX_EXPRESSION_LEN: usize = 1 << 20;

/// Why a filter expression was refused. One line each; positions are 1-based columns; a token
/// is echoed as a short excerpt ([`crate::excerpt`]), whatever its length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A pcap-filter feature outside tap's subset.
    #[error(
        "'{}' at column {column}: {what} are not supported; {SUPPORTED}",
        excerpt(token)
    )]
    Unsupported {
        token: String,
        column: usize,
        what: &'static str,
    },
    /// A token where the grammar wants something else.
    #[error(
        "unexpected '{}' at column {column}: expected {expected}",
        excerpt(token)
    )]
    Unexpected {
        token: String,
        column: usize,
        expected: &'static str,
    },
    /// The expression stops in the middle of a primitive.
    #[error("the expression ends after '{}': expected {expected}", excerpt(last))]
    UnexpectedEnd {
        last: String,
        expected: &'static str,
    },
    /// A well-formed primitive that means nothing (libpcap's semantic errors, unknown names).
    #[error("'{}' at column {column}: {}", excerpt(token), words(reason))]
    Invalid {
        token: String,
        column: usize,
        reason: String,
    },
    /// The expression is longer than [`MAX_EXPRESSION_LEN`]: refused before it is parsed.
    #[error(
        "the expression is {length} bytes; the limit is {max} (write large sets as nets, or as fewer and wider rules)"
    )]
    TooLong { length: usize, max: usize },
    /// The compiled filter does not fit the kernel program's limits.
    #[error("the filter needs {count} {what}; the kernel program allows at most {max}")]
    TooLarge {
        what: &'static str,
        count: usize,
        max: usize,
    },
}

/// Compiles `expr`; `Ok(None)` when it is empty (no filter: every packet matches, rule 0).
pub fn compile(expr: &str) -> Result<Option<CompiledFilter>, FilterError> {
    parse(expr)?.map(|e| compile_expr(&e)).transpose()
}

/// Compiles `expr` into what the filter maps take: the graph and the entries of the set maps.
pub fn image(expr: &str) -> Result<maps::FilterImage, FilterError> {
    let Some(c) = compile(expr)? else {
        return Ok(maps::FilterImage {
            expression: expr.to_string(),
            ..Default::default()
        });
    };
    let image = maps::FilterImage {
        graph: Some(maps::Graph {
            nodes: c.nodes.clone(),
            entry: c.entry,
            uses: c.uses,
        }),
        addr4: lpm4_entries(&c.addr4_sets),
        addr6: lpm6_entries(&c.addr6_sets),
        ports: port_masks(&c.port_sets),
        macs: mac_entries(&c.mac_sets),
        rules: c.rules,
        expression: expr.to_string(),
    };
    let check = |what, count: usize, max: u32| {
        if count > max as usize {
            Err(FilterError::TooLarge {
                what,
                count,
                max: max as usize,
            })
        } else {
            Ok(())
        }
    };
    check("IPv4 prefixes", image.addr4.len(), MAX_ADDRS)?;
    check("IPv6 prefixes", image.addr6.len(), MAX_ADDRS)?;
    check("MAC addresses", image.macs.len(), MAX_MACS)?;
    Ok(image)
}
