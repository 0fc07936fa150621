//! Parser for the pcap-filter subset, following libpcap 1.10's grammar (`grammar.y`) and code
//! generator checks (`gencode.c`), so that what parses here means what it means to tcpdump, and
//! what tcpdump rejects is rejected here with its reason.
//!
//! The grammar, as libpcap has it:
//! ```text
//! expr  := term | expr (and|or) term | expr (and|or) id
//! term  := (not|!) term | head id | '(' expr ')' | pname | vlan [num]
//! head  := [pname] dir [addr] | [pname] addr | [pname] (proto|protochain)
//! id    := (not|!) id | value | '(' id ((and|or) id)* ')'
//! ```
//! `and` and `or` have equal precedence and associate to the left. An `id` after `and`/`or`
//! (a value without qualifiers) takes the qualifiers of the previous primitive: `port 21 or 22`,
//! `not host a and b` (= `not host a and host b`). Those qualifiers are the ones of the last
//! `head`; after `tcp`, `vlan` or similar there are none (a bare value is then an error), and
//! after a parenthesised expression they are those in effect before the parenthesis.

use std::net::{Ipv4Addr, Ipv6Addr};

use tap_common::filter::MAX_VLAN_DEPTH;

use super::{
    FilterError,
    ast::{Dir, Expr, Family, L4, Prim, Test, V4Proto},
    lex::{Tok, Token, tokenize},
    names::{self, EtherName, Listed},
};

/// Parses `input`. `Ok(None)`: the expression is empty (no filter: every packet matches).
pub fn parse(input: &str) -> Result<Option<Expr>, FilterError> {
    // Bounds the time and memory of everything below by the length (nesting and graph size
    // have their own limits).
    if input.len() > super::MAX_EXPRESSION_LEN {
        return Err(FilterError::TooLong {
            length: input.len(),
            max: super::MAX_EXPRESSION_LEN,
        });
    }
    let tokens = tokenize(input);
    if tokens.is_empty() {
        return Ok(None);
    }
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
        nesting: 0,
    };
    let (expr, _) = p.expr(None)?;
    if let Some(t) = p.peek() {
        return Err(p.unexpected(t, "'and', 'or' or the end of the expression"));
    }
    Ok(Some(expr))
}

/// Protocol qualifier (libpcap's `pname`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pq {
    Default,
    Link,
    Ip,
    Ip6,
    Arp,
    Rarp,
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmp6,
    Igmp,
    Igrp,
    Pim,
    Vrrp,
    Carp,
    Ah,
    Esp,
}

impl Pq {
    fn from_word(w: &str) -> Option<Pq> {
        Some(match w {
            "ether" | "link" => Pq::Link,
            "ip" => Pq::Ip,
            "ip6" => Pq::Ip6,
            "arp" => Pq::Arp,
            "rarp" => Pq::Rarp,
            "tcp" => Pq::Tcp,
            "udp" => Pq::Udp,
            "sctp" => Pq::Sctp,
            "icmp" => Pq::Icmp,
            "icmp6" => Pq::Icmp6,
            "igmp" => Pq::Igmp,
            "igrp" => Pq::Igrp,
            "pim" => Pq::Pim,
            "vrrp" => Pq::Vrrp,
            "carp" => Pq::Carp,
            "ah" => Pq::Ah,
            "esp" => Pq::Esp,
            _ => return None,
        })
    }

    fn word(self) -> &'static str {
        match self {
            Pq::Default => "",
            Pq::Link => "ether",
            Pq::Ip => "ip",
            Pq::Ip6 => "ip6",
            Pq::Arp => "arp",
            Pq::Rarp => "rarp",
            Pq::Tcp => "tcp",
            Pq::Udp => "udp",
            Pq::Sctp => "sctp",
            Pq::Icmp => "icmp",
            Pq::Icmp6 => "icmp6",
            Pq::Igmp => "igmp",
            Pq::Igrp => "igrp",
            Pq::Pim => "pim",
            Pq::Vrrp => "vrrp",
            Pq::Carp => "carp",
            Pq::Ah => "ah",
            Pq::Esp => "esp",
        }
    }

    /// The primitive a protocol name is on its own (`tcp`, `ip6`, ...).
    fn alone(self) -> Result<Test, String> {
        let ip = |family, proto| Test::IpProto { family, proto };
        Ok(match self {
            Pq::Default => unreachable!("not a keyword"),
            Pq::Link => return Err("link layer applied in wrong context".into()),
            Pq::Ip => Test::EtherType(0x0800),
            Pq::Ip6 => Test::EtherType(0x86dd),
            Pq::Arp => Test::EtherType(0x0806),
            Pq::Rarp => Test::EtherType(0x8035),
            Pq::Tcp => ip(Family::Any, 6),
            Pq::Udp => ip(Family::Any, 17),
            Pq::Sctp => ip(Family::Any, 132),
            Pq::Icmp => ip(Family::V4, 1),
            Pq::Icmp6 => ip(Family::V6, 58),
            Pq::Igmp => ip(Family::V4, 2),
            Pq::Igrp => ip(Family::V4, 9),
            Pq::Pim => ip(Family::Any, 103),
            Pq::Vrrp | Pq::Carp => ip(Family::V4, 112),
            Pq::Ah => ip(Family::Any, 51),
            Pq::Esp => ip(Family::Any, 50),
        })
    }
}

/// Direction qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dq {
    Default,
    Src,
    Dst,
    Or,
    And,
}

/// Address-type qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aq {
    Default,
    Host,
    Net,
    Port,
    Portrange,
    Proto,
    Protochain,
}

/// The qualifiers of a primitive, which a following bare value inherits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Quals {
    proto: Pq,
    dir: Dq,
    addr: Aq,
}

impl Quals {
    fn text(&self) -> String {
        let dir = match self.dir {
            Dq::Default => "",
            Dq::Src => "src",
            Dq::Dst => "dst",
            Dq::Or => "src or dst",
            Dq::And => "src and dst",
        };
        let addr = match self.addr {
            Aq::Default => "",
            Aq::Host => "host",
            Aq::Net => "net",
            Aq::Port => "port",
            Aq::Portrange => "portrange",
            Aq::Proto => "proto",
            Aq::Protochain => "protochain",
        };
        [self.proto.word(), dir, addr]
            .iter()
            .filter(|w| !w.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn dir(&self) -> Dir {
        match self.dir {
            Dq::Default | Dq::Or => Dir::SrcOrDst,
            Dq::Src => Dir::Src,
            Dq::Dst => Dir::Dst,
            Dq::And => Dir::SrcAndDst,
        }
    }

    /// libpcap's word for the address type in messages.
    fn typestr(&self) -> &'static str {
        if self.addr == Aq::Net { "net" } else { "host" }
    }
}

/// Keywords of the supported language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    And,
    Or,
    Not,
    Src,
    Dst,
    Host,
    Net,
    Port,
    Portrange,
    Proto,
    Protochain,
    Mask,
    Vlan,
    Pname(Pq),
}

fn keyword(word: &str) -> Option<Kw> {
    Some(match word {
        "and" => Kw::And,
        "or" => Kw::Or,
        "not" => Kw::Not,
        "src" => Kw::Src,
        "dst" => Kw::Dst,
        "host" => Kw::Host,
        "net" => Kw::Net,
        "port" => Kw::Port,
        "portrange" => Kw::Portrange,
        "proto" => Kw::Proto,
        "protochain" => Kw::Protochain,
        "mask" => Kw::Mask,
        "vlan" => Kw::Vlan,
        w => Kw::Pname(Pq::from_word(w)?),
    })
}

/// libpcap keywords outside the subset, and what they are about.
const UNSUPPORTED_WORDS: &[(&str, &str)] = &[
    ("less", "packet length tests"),
    ("greater", "packet length tests"),
    ("len", "packet length tests"),
    ("gateway", "gateway tests"),
    ("broadcast", "broadcast tests"),
    ("multicast", "multicast tests"),
    ("inbound", "capture direction tests"),
    ("outbound", "capture direction tests"),
    ("ifindex", "interface tests"),
    ("ifname", "pflog tests"),
    ("on", "pflog tests"),
    ("rnr", "pflog tests"),
    ("rulenum", "pflog tests"),
    ("reason", "pflog tests"),
    ("rset", "pflog tests"),
    ("ruleset", "pflog tests"),
    ("srnr", "pflog tests"),
    ("subrulenum", "pflog tests"),
    ("action", "pflog tests"),
    ("mpls", "MPLS"),
    ("pppoed", "PPPoE"),
    ("pppoes", "PPPoE"),
    ("geneve", "Geneve"),
    ("llc", "802.2 LLC"),
    ("stp", "802.2 LLC"),
    ("ipx", "802.2 LLC"),
    ("netbeui", "802.2 LLC"),
    ("atalk", "AppleTalk"),
    ("aarp", "AppleTalk"),
    ("decnet", "DECnet"),
    ("lat", "DEC protocols"),
    ("sca", "DEC protocols"),
    ("moprc", "DEC protocols"),
    ("mopdl", "DEC protocols"),
    ("iso", "OSI protocols"),
    ("esis", "OSI protocols"),
    ("es-is", "OSI protocols"),
    ("isis", "OSI protocols"),
    ("is-is", "OSI protocols"),
    ("clnp", "OSI protocols"),
    ("l1", "OSI protocols"),
    ("l2", "OSI protocols"),
    ("iih", "OSI protocols"),
    ("lsp", "OSI protocols"),
    ("snp", "OSI protocols"),
    ("csnp", "OSI protocols"),
    ("psnp", "OSI protocols"),
    ("fddi", "other link types"),
    ("tr", "other link types"),
    ("wlan", "other link types"),
    ("slip", "other link types"),
    ("radio", "other link types"),
    ("type", "802.11 fields"),
    ("subtype", "802.11 fields"),
    ("dir", "802.11 fields"),
    ("addr1", "802.11 fields"),
    ("addr2", "802.11 fields"),
    ("addr3", "802.11 fields"),
    ("addr4", "802.11 fields"),
    ("ra", "802.11 fields"),
    ("ta", "802.11 fields"),
    ("vpi", "ATM"),
    ("vci", "ATM"),
    ("lane", "ATM"),
    ("oam", "ATM"),
    ("oamf4", "ATM"),
    ("oamf4ec", "ATM"),
    ("oamf4sc", "ATM"),
    ("metac", "ATM"),
    ("bcc", "ATM"),
    ("sc", "ATM"),
    ("ilmic", "ATM"),
    ("connectmsg", "ATM"),
    ("metaconnect", "ATM"),
    ("fisu", "SS7"),
    ("lssu", "SS7"),
    ("msu", "SS7"),
    ("hfisu", "SS7"),
    ("hlssu", "SS7"),
    ("hmsu", "SS7"),
    ("sio", "SS7"),
    ("opc", "SS7"),
    ("dpc", "SS7"),
    ("sls", "SS7"),
    ("hsio", "SS7"),
    ("hopc", "SS7"),
    ("hdpc", "SS7"),
    ("hsls", "SS7"),
    ("byte", "byte tests"),
];

fn unsupported_word(word: &str) -> Option<&'static str> {
    UNSUPPORTED_WORDS
        .iter()
        .find(|(w, _)| *w == word)
        .map(|&(_, what)| what)
}

/// A value (libpcap's `id`), resolved from one to three tokens.
#[derive(Debug)]
enum Value<'a> {
    /// A number (decimal, `0x` hex or `0` octal).
    Num(u32),
    /// Dotted IPv4, possibly short (`10.1`), with an optional `/len` or `mask M`.
    Hid {
        text: &'a str,
        len: Option<u32>,
        mask: Option<&'a str>,
    },
    /// IPv6, with an optional `/len`.
    Hid6 {
        addr: Ipv6Addr,
        text: &'a str,
        len: Option<u32>,
    },
    /// MAC address.
    Eid([u8; 6]),
    /// A name (service, protocol, host, ...).
    Name(&'a str),
}

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    pos: usize,
    /// `vlan` keywords seen so far.
    depth: u8,
    /// Open parentheses and `not`s around the cursor (bounded, so recursion is).
    nesting: u32,
}

/// Deepest nesting of parentheses and `not`.
const MAX_NESTING: u32 = 200;

type BinOp = fn(Expr, Expr) -> Expr;

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<Token<'a>> {
        self.tokens.get(self.pos + ahead).copied()
    }

    fn peek_kw(&self) -> Option<Kw> {
        self.peek()
            .filter(|t| t.tok == Tok::Word)
            .and_then(|t| keyword(t.text))
    }

    fn bump(&mut self) -> Token<'a> {
        let t = self.tokens[self.pos];
        self.pos += 1;
        t
    }

    fn last_text(&self) -> String {
        self.pos
            .checked_sub(1)
            .and_then(|i| self.tokens.get(i))
            .map_or_else(String::new, |t| t.text.to_string())
    }

    fn end(&self, expected: &'static str) -> FilterError {
        FilterError::UnexpectedEnd {
            last: self.last_text(),
            expected,
        }
    }

    /// The error for token `t` where `expected` was: names unsupported pcap-filter features.
    fn unexpected(&self, t: Token<'_>, expected: &'static str) -> FilterError {
        let unsupported = |what| FilterError::Unsupported {
            token: t.text.to_string(),
            column: t.column,
            what,
        };
        match t.tok {
            Tok::Word => match unsupported_word(t.text) {
                Some(what) => unsupported(what),
                None => FilterError::Unexpected {
                    token: t.text.to_string(),
                    column: t.column,
                    expected,
                },
            },
            Tok::Other => match t.text {
                "[" | "]" => unsupported("byte-offset expressions such as tcp[13]"),
                "=" | "==" | "!=" | "<" | ">" | "+" | "*" | "%" | "^" | "&" | "|" | "~" => {
                    unsupported("arithmetic and comparisons")
                }
                _ => FilterError::Unexpected {
                    token: t.text.to_string(),
                    column: t.column,
                    expected,
                },
            },
            _ => FilterError::Unexpected {
                token: t.text.to_string(),
                column: t.column,
                expected,
            },
        }
    }

    /// Enters a parenthesis or `not` at `t`.
    fn enter(&mut self, t: Token<'_>) -> Result<(), FilterError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(Self::invalid(
                t,
                format!("parentheses and 'not' nest deeper than {MAX_NESTING}"),
            ));
        }
        Ok(())
    }

    fn invalid(t: Token<'_>, reason: impl Into<String>) -> FilterError {
        FilterError::Invalid {
            token: t.text.to_string(),
            column: t.column,
            reason: reason.into(),
        }
    }

    /// `and`/`&&` or `or`/`||` at the cursor, consumed.
    fn binop(&mut self) -> Option<BinOp> {
        let t = self.peek()?;
        let op: BinOp = match (t.tok, t.text) {
            (Tok::AndAnd, _) | (Tok::Word, "and") => Expr::and,
            (Tok::OrOr, _) | (Tok::Word, "or") => Expr::or,
            _ => return None,
        };
        self.pos += 1;
        Some(op)
    }

    fn is_not(t: Token<'_>) -> bool {
        t.tok == Tok::Bang || (t.tok == Tok::Word && t.text == "not")
    }

    fn expect_rparen(&mut self, open: Token<'_>) -> Result<(), FilterError> {
        match self.peek() {
            Some(t) if t.tok == Tok::RParen => {
                self.pos += 1;
                Ok(())
            }
            Some(t) => Err(self.unexpected(t, "')'")),
            None => Err(Self::invalid(open, "this parenthesis is not closed")),
        }
    }

    /// `expr`; `q` is what a bare value would inherit before it. Returns the qualifiers in effect
    /// after it.
    fn expr(&mut self, q: Option<Quals>) -> Result<(Expr, Option<Quals>), FilterError> {
        let (mut e, mut q) = self.term(q)?;
        while let Some(op) = self.binop() {
            let (rhs, q2) = if self.id_follows() {
                (self.id(q)?, q)
            } else {
                self.term(q)?
            };
            e = op(e, rhs);
            q = q2;
        }
        Ok((e, q))
    }

    /// Whether an `id` (a value, possibly behind `not` and parentheses) comes next.
    fn id_follows(&self) -> bool {
        let mut i = self.pos;
        while let Some(t) = self.tokens.get(i) {
            match t.tok {
                Tok::LParen | Tok::Bang => i += 1,
                Tok::Word if t.text == "not" => i += 1,
                Tok::Word => {
                    return keyword(t.text).is_none() && unsupported_word(t.text).is_none();
                }
                Tok::Escaped => return true,
                _ => return false,
            }
        }
        false
    }

    fn term(&mut self, q: Option<Quals>) -> Result<(Expr, Option<Quals>), FilterError> {
        const EXPECTED: &str = "a primitive (host, net, port, tcp, vlan, ...), 'not' or '('";
        let Some(t) = self.peek() else {
            return Err(self.end(EXPECTED));
        };
        if Self::is_not(t) {
            self.pos += 1;
            self.enter(t)?;
            let (e, q) = self.term(q)?;
            self.nesting -= 1;
            return Ok((Expr::Not(Box::new(e)), q));
        }
        match t.tok {
            Tok::LParen => {
                self.pos += 1;
                self.enter(t)?;
                let (e, _) = self.expr(q)?;
                self.expect_rparen(t)?;
                self.nesting -= 1;
                Ok((e, q))
            }
            Tok::Word => match keyword(t.text) {
                Some(Kw::Pname(pq)) => {
                    self.pos += 1;
                    match self.peek_kw() {
                        Some(
                            Kw::Src
                            | Kw::Dst
                            | Kw::Host
                            | Kw::Net
                            | Kw::Port
                            | Kw::Portrange
                            | Kw::Proto
                            | Kw::Protochain,
                        ) => self.head(pq),
                        // `ether broadcast`, `ip multicast`, ...: name the unsupported part.
                        None if self.peek().is_some_and(|n| {
                            n.tok == Tok::Word && unsupported_word(n.text).is_some()
                        }) =>
                        {
                            let n = self.peek().expect("checked");
                            Err(self.unexpected(n, EXPECTED))
                        }
                        _ => {
                            let test = pq.alone().map_err(|reason| Self::invalid(t, reason))?;
                            Ok((self.prim(t, test, pq.word().to_string())?, None))
                        }
                    }
                }
                Some(
                    Kw::Src
                    | Kw::Dst
                    | Kw::Host
                    | Kw::Net
                    | Kw::Port
                    | Kw::Portrange
                    | Kw::Proto
                    | Kw::Protochain,
                ) => self.head(Pq::Default),
                Some(Kw::Vlan) => Ok((self.vlan()?, None)),
                Some(_) => Err(self.unexpected(t, EXPECTED)),
                None if unsupported_word(t.text).is_some() => Err(self.unexpected(t, EXPECTED)),
                None => Err(Self::invalid(
                    t,
                    "a value needs a qualifier before it (host, net, port, proto, ...) \
                     and there is none to repeat here",
                )),
            },
            Tok::Escaped => Err(Self::invalid(
                t,
                "a value needs a qualifier before it (host, net, port, proto, ...)",
            )),
            _ => Err(self.unexpected(t, EXPECTED)),
        }
    }

    /// `[pname] dir [addr] id`, `[pname] addr id`, `[pname] proto id`; the protocol qualifier is
    /// already consumed.
    fn head(&mut self, proto: Pq) -> Result<(Expr, Option<Quals>), FilterError> {
        let mut dir = Dq::Default;
        if let Some(kw @ (Kw::Src | Kw::Dst)) = self.peek_kw() {
            self.pos += 1;
            dir = if kw == Kw::Src { Dq::Src } else { Dq::Dst };
            // `src or dst`, `dst and src`, ...: the second direction must follow directly.
            let other = if kw == Kw::Src { "dst" } else { "src" };
            if let (Some(op), Some(next)) = (self.peek(), self.peek_at(1)) {
                if next.tok == Tok::Word && next.text == other {
                    match (op.tok, op.text) {
                        (Tok::OrOr, _) | (Tok::Word, "or") => dir = Dq::Or,
                        (Tok::AndAnd, _) | (Tok::Word, "and") => dir = Dq::And,
                        _ => {}
                    }
                    if dir == Dq::Or || dir == Dq::And {
                        self.pos += 2;
                    }
                }
            }
        }
        let addr = match self.peek_kw() {
            Some(Kw::Host) => Aq::Host,
            Some(Kw::Net) => Aq::Net,
            Some(Kw::Port) => Aq::Port,
            Some(Kw::Portrange) => Aq::Portrange,
            Some(Kw::Proto) if dir == Dq::Default => Aq::Proto,
            Some(Kw::Protochain) if dir == Dq::Default => Aq::Protochain,
            _ => Aq::Default,
        };
        if addr != Aq::Default {
            self.pos += 1;
        }
        let q = Quals { proto, dir, addr };
        Ok((self.id(Some(q))?, Some(q)))
    }

    /// `vlan [num]`: a VLAN test at the current depth; everything after it is one tag deeper.
    fn vlan(&mut self) -> Result<Expr, FilterError> {
        let kw = self.bump();
        let id = match self.peek() {
            Some(t)
                if t.tok == Tok::LParen
                    || (t.tok == Tok::Word && number(t.text).is_ok_and(|n| n.is_some())) =>
            {
                let (n, t) = self.pnum()?;
                if n > 4095 {
                    return Err(Self::invalid(
                        t,
                        format!("VLAN tag {n} greater than maximum 4095"),
                    ));
                }
                Some(n as u16)
            }
            _ => None,
        };
        let text = id.map_or_else(|| "vlan".to_string(), |n| format!("vlan {n}"));
        let e = self.prim(kw, Test::Vlan(id), text)?;
        self.depth = self.depth.saturating_add(1);
        Ok(e)
    }

    /// `num` or `( num )`.
    fn pnum(&mut self) -> Result<(u32, Token<'a>), FilterError> {
        let Some(t) = self.peek() else {
            return Err(self.end("a number"));
        };
        if t.tok == Tok::LParen {
            self.pos += 1;
            self.enter(t)?;
            let n = self.pnum()?;
            self.expect_rparen(t)?;
            self.nesting -= 1;
            return Ok(n);
        }
        self.pos += 1;
        match (t.tok, number(t.text)) {
            (Tok::Word, Ok(Some(n))) => Ok((n, t)),
            (Tok::Word, Err(reason)) => Err(Self::invalid(t, reason)),
            _ => Err(self.unexpected(t, "a number")),
        }
    }

    /// A primitive at the current VLAN depth.
    fn prim(&self, at: Token<'_>, test: Test, text: String) -> Result<Expr, FilterError> {
        if self.depth > MAX_VLAN_DEPTH {
            return Err(Self::invalid(
                at,
                format!(
                    "it follows {} 'vlan' keywords; tap looks through at most {MAX_VLAN_DEPTH} VLAN tags",
                    self.depth
                ),
            ));
        }
        Ok(Expr::Prim(Prim {
            test,
            depth: self.depth,
            text,
        }))
    }

    /// `id`: a value, `not id`, or `( id and/or id ... )`, with qualifiers `q`.
    fn id(&mut self, q: Option<Quals>) -> Result<Expr, FilterError> {
        const EXPECTED: &str = "an address, number or name";
        let Some(t) = self.peek() else {
            return Err(self.end(EXPECTED));
        };
        if Self::is_not(t) {
            self.pos += 1;
            self.enter(t)?;
            let e = self.id(q)?;
            self.nesting -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        match t.tok {
            Tok::LParen => {
                self.pos += 1;
                self.enter(t)?;
                let mut e = self.id(q)?;
                while let Some(op) = self.binop() {
                    let rhs = self.id(q)?;
                    e = op(e, rhs);
                }
                self.expect_rparen(t)?;
                self.nesting -= 1;
                Ok(e)
            }
            Tok::Word | Tok::Escaped => {
                let Some(q) = q else {
                    if t.tok == Tok::Word
                        && (keyword(t.text).is_some() || unsupported_word(t.text).is_some())
                    {
                        return Err(self.unexpected(t, EXPECTED));
                    }
                    return Err(Self::invalid(
                        t,
                        "a value needs a qualifier before it (host, net, port, proto, ...) \
                         and there is none to repeat here",
                    ));
                };
                let (value, text) = self.value(q)?;
                let test = resolve(q, &value).map_err(|reason| Self::invalid(t, reason))?;
                let quals = q.text();
                let text = if quals.is_empty() {
                    text
                } else {
                    format!("{quals} {text}")
                };
                self.prim(t, test, text)
            }
            _ => Err(self.unexpected(t, EXPECTED)),
        }
    }

    /// Reads a value (with its `/len` or `mask M`), and its text.
    fn value(&mut self, q: Quals) -> Result<(Value<'a>, String), FilterError> {
        let t = self.bump();
        if t.tok == Tok::Escaped {
            return Ok((Value::Name(t.text), format!("\\{}", t.text)));
        }
        if let Some(kw) = keyword(t.text) {
            // `proto tcp`, `ether proto ip`: libpcap wants `\tcp`, tap takes both.
            if matches!(kw, Kw::Pname(_)) && matches!(q.addr, Aq::Proto | Aq::Protochain) {
                return Ok((Value::Name(t.text), t.text.to_string()));
            }
            self.pos -= 1;
            return Err(self.unexpected(t, "an address, number or name"));
        }
        if unsupported_word(t.text).is_some() {
            self.pos -= 1;
            return Err(self.unexpected(t, "an address, number or name"));
        }
        if let Some(mac) = mac(t.text) {
            return Ok((Value::Eid(mac), t.text.to_string()));
        }
        if let Some(n) = number(t.text).map_err(|reason| Self::invalid(t, reason))? {
            return Ok((Value::Num(n), t.text.to_string()));
        }
        if is_dotted(t.text) {
            return match self.peek() {
                Some(s) if s.tok == Tok::Slash => {
                    self.pos += 1;
                    let (len, lt) = self.prefix_len()?;
                    Ok((
                        Value::Hid {
                            text: t.text,
                            len: Some(len),
                            mask: None,
                        },
                        format!("{}/{}", t.text, lt.text),
                    ))
                }
                Some(m) if m.tok == Tok::Word && m.text == "mask" => {
                    self.pos += 1;
                    match self.peek() {
                        Some(mt) if mt.tok == Tok::Word && is_dotted(mt.text) => {
                            self.pos += 1;
                            let text = format!("{} mask {}", t.text, mt.text);
                            Ok((
                                Value::Hid {
                                    text: t.text,
                                    len: None,
                                    mask: Some(mt.text),
                                },
                                text,
                            ))
                        }
                        Some(mt) => {
                            Err(self.unexpected(mt, "a dotted netmask such as 255.255.255.0"))
                        }
                        None => Err(self.end("a dotted netmask such as 255.255.255.0")),
                    }
                }
                _ => Ok((
                    Value::Hid {
                        text: t.text,
                        len: None,
                        mask: None,
                    },
                    t.text.to_string(),
                )),
            };
        }
        if t.text.contains(':') {
            let Ok(addr) = t.text.parse::<Ipv6Addr>() else {
                return Err(Self::invalid(t, "not a valid IPv6 or MAC address"));
            };
            if self.peek().is_some_and(|s| s.tok == Tok::Slash) {
                self.pos += 1;
                let (len, lt) = self.prefix_len()?;
                return Ok((
                    Value::Hid6 {
                        addr,
                        text: t.text,
                        len: Some(len),
                    },
                    format!("{}/{}", t.text, lt.text),
                ));
            }
            return Ok((
                Value::Hid6 {
                    addr,
                    text: t.text,
                    len: None,
                },
                t.text.to_string(),
            ));
        }
        Ok((Value::Name(t.text), t.text.to_string()))
    }

    fn prefix_len(&mut self) -> Result<(u32, Token<'a>), FilterError> {
        const EXPECTED: &str = "a prefix length";
        let Some(t) = self.peek() else {
            return Err(self.end(EXPECTED));
        };
        match (t.tok, number(t.text)) {
            (Tok::Word, Ok(Some(n))) => {
                self.pos += 1;
                Ok((n, t))
            }
            (Tok::Word, Err(reason)) => Err(Self::invalid(t, reason)),
            _ => Err(self.unexpected(t, EXPECTED)),
        }
    }
}

/// A libpcap number: decimal, `0x` hexadecimal, or octal with a leading `0`. `Ok(None)`: not a
/// number at all.
fn number(text: &str) -> Result<Option<u32>, String> {
    let (digits, radix) =
        if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(None);
            }
            (hex, 16)
        } else if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            if text.len() > 1 && text.starts_with('0') {
                if text.bytes().any(|b| b >= b'8') {
                    return Err(format!("number {text} contains non-octal digit"));
                }
                (&text[1..], 8)
            } else {
                (text, 10)
            }
        } else {
            return Ok(None);
        };
    u32::from_str_radix(digits, radix)
        .map(Some)
        .map_err(|_| format!("number {text} overflows 32 bits"))
}

/// libpcap's `HID`: two to four dot-separated numbers.
fn is_dotted(text: &str) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    (2..=4).contains(&parts.len())
        && parts
            .iter()
            .all(|p| number(p).is_ok_and(|n| n.is_some()) || number(p).is_err())
}

/// libpcap's MAC forms: `a:b:c:d:e:f`, `a-b-c-d-e-f`, `a.b.c.d.e.f` (1 or 2 hex digits each),
/// `aabb.ccdd.eeff`, `aabbccddeeff`.
fn mac(text: &str) -> Option<[u8; 6]> {
    let hex = |s: &str, width: std::ops::RangeInclusive<usize>| {
        (width.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u16::from_str_radix(s, 16).ok())?
    };
    let mut out = [0u8; 6];
    for sep in [':', '-', '.'] {
        let parts: Vec<&str> = text.split(sep).collect();
        if parts.len() == 6 {
            for (o, p) in out.iter_mut().zip(&parts) {
                *o = hex(p, 1..=2)? as u8;
            }
            return Some(out);
        }
    }
    let parts: Vec<&str> = text.split('.').collect();
    let groups: Vec<&str> = if parts.len() == 3 && parts.iter().all(|p| p.len() == 4) {
        parts
    } else if text.len() == 12 {
        vec![&text[0..4], &text[4..8], &text[8..12]]
    } else {
        return None;
    };
    for (i, g) in groups.iter().enumerate() {
        let v = hex(g, 4..=4)?;
        out[2 * i] = (v >> 8) as u8;
        out[2 * i + 1] = v as u8;
    }
    Some(out)
}

/// libpcap's `__pcap_atoin`: a dotted, possibly short, IPv4 address and its length in bits.
fn atoin(text: &str) -> Result<(u32, u32), String> {
    let mut addr = 0u32;
    let mut bits = 0;
    for part in text.split('.') {
        let n: u32 = match part.parse() {
            Ok(n) if n <= 255 && part.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(format!("invalid IPv4 address '{text}'")),
        };
        addr = addr << 8 | n;
        bits += 8;
    }
    Ok((addr, bits))
}

/// The qualifier checks and meaning of `q value`, after libpcap's `gen_ncode`, `gen_scode`,
/// `gen_mcode`, `gen_mcode6` and `gen_ecode`. Errors carry libpcap's wording.
fn resolve(q: Quals, value: &Value<'_>) -> Result<Test, String> {
    let dir = q.dir();
    match *value {
        Value::Num(n) => match q.addr {
            Aq::Default | Aq::Host | Aq::Net => {
                if q.proto == Pq::Link {
                    return Err("illegal link layer address".into());
                }
                let (addr, prefix) = if q.addr == Aq::Net {
                    // Promote a short net number: `net 10` is 10.0.0.0/8.
                    let (mut v, mut prefix) = (n, 32u8);
                    while v != 0 && v & 0xff00_0000 == 0 {
                        v <<= 8;
                        prefix -= 8;
                    }
                    (v, prefix)
                } else {
                    (n, 32)
                };
                host4(q, dir, addr, prefix)
            }
            Aq::Port | Aq::Portrange => {
                let l4 = port_l4(q)?;
                let port = port_number(n)?;
                Ok(Test::Port { l4, dir, ports: port..=port })
            }
            Aq::Proto => proto(q.proto, n),
            Aq::Protochain => protochain(q.proto, n),
        },
        Value::Hid { text, len, mask } => {
            ip_address_allowed(q)?;
            let (n, bits) = atoin(text)?;
            let addr = n << (32 - bits);
            match (len, mask) {
                (None, None) => {
                    if q.proto == Pq::Link {
                        return Err("illegal link layer address".into());
                    }
                    // `host 10.1` is 10.1.0.0 with a 16-bit mask, as libpcap promotes it.
                    host4(q, dir, addr, bits as u8)
                }
                (Some(len), _) => {
                    if len > 32 {
                        return Err("mask length must be <= 32".into());
                    }
                    let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                    if addr & !m != 0 {
                        return Err(format!("non-network bits set in \"{text}/{len}\""));
                    }
                    net_only(q)?;
                    host4(q, dir, addr, len as u8)
                }
                (None, Some(mask)) => {
                    let (m, mbits) = atoin(mask)?;
                    let m = m << (32 - mbits);
                    if addr & !m != 0 {
                        return Err(format!("non-network bits set in \"{text} mask {mask}\""));
                    }
                    net_only(q)?;
                    if m.leading_ones() + m.trailing_zeros() != 32 {
                        return Err(format!("non-contiguous netmask {mask} is not supported: use a prefix length"));
                    }
                    host4(q, dir, addr, m.leading_ones() as u8)
                }
            }
        }
        Value::Hid6 { addr, text, len } => {
            ip_address_allowed(q)?;
            let len = len.unwrap_or(128);
            if len > 128 {
                return Err("mask length must be <= 128".into());
            }
            let a = u128::from(addr);
            let m = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            if a & !m != 0 {
                return Err(format!("non-network bits set in \"{text}/{len}\""));
            }
            if len != 128 {
                net_only(q)?;
            }
            match q.proto {
                Pq::Default | Pq::Ip6 => Ok(Test::Net6 { dir, addr, prefix: len as u8 }),
                Pq::Link => Err(format!("link-layer modifier applied to ip6 {}", q.typestr())),
                p => Err(format!("'{}' modifier applied to ip6 {}", p.word(), q.typestr())),
            }
        }
        Value::Eid(mac) => {
            if matches!(q.addr, Aq::Host | Aq::Default) && q.proto == Pq::Link {
                Ok(Test::EtherAddr { dir, mac })
            } else {
                Err("ethernet address used in non-ether expression".into())
            }
        }
        Value::Name(name) => match q.addr {
            Aq::Default | Aq::Host if q.proto == Pq::Link => {
                Err("Ethernet host names need /etc/ethers, which tap does not read: write the MAC address".into())
            }
            Aq::Default | Aq::Host => Err(format!(
                "'{name}' is not an address; host names need a DNS lookup, which tap does not do: write the address"
            )),
            Aq::Net => Err("network names need /etc/networks, which tap does not read: write the address".into()),
            Aq::Port => {
                let l4 = port_l4(q)?;
                let Some((port, listed)) = names::service(name) else {
                    return Err(format!("unknown port '{name}'"));
                };
                let l4 = named_port_l4(l4, listed, &format!("port '{name}'"))?;
                Ok(Test::Port { l4, dir, ports: port..=port })
            }
            Aq::Portrange => {
                let l4 = port_l4(q)?;
                let (a, b, listed) = port_range(name)?;
                let l4 = named_port_l4(l4, listed, &format!("port in range '{name}'"))?;
                Ok(Test::Port { l4, dir, ports: a.min(b)..=a.max(b) })
            }
            Aq::Proto | Aq::Protochain => {
                let v = if q.proto == Pq::Link {
                    match names::ether_protocol(name) {
                        Some(EtherName::Type(t)) => u32::from(t),
                        Some(EtherName::Llc) => {
                            return Err(format!(
                                "'{name}' is an 802.2 LLC/SNAP protocol, which tap does not support"
                            ));
                        }
                        None => return Err(format!("unknown ether proto '{name}'")),
                    }
                } else {
                    names::ip_protocol(name).ok_or_else(|| format!("unknown ip proto '{name}'"))?
                };
                if q.addr == Aq::Proto { proto(q.proto, v) } else { protochain(q.proto, v) }
            }
        },
    }
}

/// libpcap rejects an IP address after `port`, `proto`, ... in the grammar itself.
fn ip_address_allowed(q: Quals) -> Result<(), String> {
    let what = match q.addr {
        Aq::Port => "port",
        Aq::Portrange => "portrange",
        Aq::Proto => "proto",
        Aq::Protochain => "protochain",
        _ => return Ok(()),
    };
    Err(format!("'{what}' modifier applied to IP address"))
}

fn net_only(q: Quals) -> Result<(), String> {
    if q.addr == Aq::Net {
        Ok(())
    } else {
        Err("Mask syntax for networks only".into())
    }
}

/// libpcap's `gen_host` protocol check for IPv4.
fn host4(q: Quals, dir: Dir, addr: u32, prefix: u8) -> Result<Test, String> {
    let proto = match q.proto {
        Pq::Default => V4Proto::Any,
        Pq::Ip => V4Proto::Ip,
        Pq::Arp => V4Proto::Arp,
        Pq::Rarp => V4Proto::Rarp,
        Pq::Link => return Err(format!("link-layer modifier applied to {}", q.typestr())),
        Pq::Ip6 => return Err("'ip6' modifier applied to ip host".into()),
        p => {
            return Err(format!(
                "'{}' modifier applied to {}",
                p.word(),
                q.typestr()
            ));
        }
    };
    Ok(Test::Net4 {
        proto,
        dir,
        addr: Ipv4Addr::from(addr),
        prefix,
    })
}

fn port_l4(q: Quals) -> Result<L4, String> {
    Ok(match q.proto {
        Pq::Default => L4::Any,
        Pq::Tcp => L4::Tcp,
        Pq::Udp => L4::Udp,
        Pq::Sctp => L4::Sctp,
        _ => {
            let what = if q.addr == Aq::Port {
                "port"
            } else {
                "portrange"
            };
            return Err(format!("illegal qualifier of '{what}'"));
        }
    })
}

fn port_number(n: u32) -> Result<u16, String> {
    u16::try_from(n).map_err(|_| format!("illegal port number {n} > 65535"))
}

/// libpcap: a service listed for one transport only restricts the test to it (`port ssh` is
/// `tcp port 22`), and contradicts another transport qualifier.
fn named_port_l4(l4: L4, listed: Listed, what: &str) -> Result<L4, String> {
    match (l4, listed) {
        (L4::Any, Listed::Tcp) => Ok(L4::Tcp),
        (L4::Any, Listed::Udp) => Ok(L4::Udp),
        (L4::Udp | L4::Sctp, Listed::Tcp) => Err(format!("{what} is tcp")),
        (L4::Tcp | L4::Sctp, Listed::Udp) => Err(format!("{what} is udp")),
        (l4, _) => Ok(l4),
    }
}

/// `A-B`, each side a decimal number or a service name (libpcap's `pcap_nametoportrange`).
fn port_range(text: &str) -> Result<(u16, u16, Listed), String> {
    let Some((a, b)) = text.split_once('-') else {
        return Err(format!("unknown port in range '{text}'"));
    };
    let side = |s: &str| -> Result<(u16, Listed), String> {
        if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) {
            let n: u32 = s
                .parse()
                .map_err(|_| format!("illegal port number {s} > 65535"))?;
            Ok((port_number(n)?, Listed::Both))
        } else {
            names::service(s).ok_or_else(|| format!("unknown port in range '{text}'"))
        }
    };
    let (a, la) = side(a)?;
    let (b, lb) = side(b)?;
    Ok((a, b, if la == lb { la } else { Listed::Both }))
}

/// `proto N` with a protocol qualifier (libpcap's `gen_proto`).
fn proto(pq: Pq, v: u32) -> Result<Test, String> {
    let ip = |family| Ok(Test::IpProto { family, proto: v });
    match pq {
        Pq::Default => ip(Family::Any),
        Pq::Ip => ip(Family::V4),
        Pq::Ip6 => ip(Family::V6),
        Pq::Link => {
            if v <= 1500 {
                Err(format!(
                    "ether proto {v} is an 802.3 length, which libpcap turns into an 802.2 LLC SAP test; \
                     tap does not support those"
                ))
            } else if v == 0x809b || v == 0x80f3 {
                Err("AppleTalk ether protos (with their 802.2 SNAP forms) are not supported".into())
            } else {
                Ok(Test::EtherType(v))
            }
        }
        Pq::Arp | Pq::Rarp => Err(format!(
            "{} does not encapsulate another protocol",
            pq.word()
        )),
        p => Err(format!("'{} proto' is bogus", p.word())),
    }
}

fn protochain(pq: Pq, v: u32) -> Result<Test, String> {
    let family = match pq {
        Pq::Default => Family::Any,
        Pq::Ip => Family::V4,
        Pq::Ip6 => Family::V6,
        _ => return Err("bad protocol applied for 'protochain'".into()),
    };
    Ok(Test::Protochain { family, proto: v })
}

#[cfg(test)]
mod tests;
