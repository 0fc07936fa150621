//! Compiler from [`Expr`] to the kernel's decision graph ([`tap_common::filter`]).
//!
//! 1. Each primitive becomes one or more atoms, as libpcap generates code for Ethernet:
//!    `host X` is `ADDR4 ∨ ARP_ADDR(0x0806) ∨ ARP_ADDR(0x8035)`, `port N` is
//!    `PORT6 ∨ PORT4`, `tcp` is `IP4_PROTO 6 ∨ IP6_PROTO 6`, `ip protochain N` is
//!    `ETHERTYPE 0x0800 ∧ PROTOCHAIN N` (the kernel's PROTOCHAIN accepts either IP version).
//!    Values libpcap accepts but no packet can have (`ip proto 300`, `ether proto 70000`) are
//!    constant false; a `/0` net is just its EtherType test(s), as libpcap's optimizer leaves it.
//! 2. Set merging: in every chain of `or` (flattened), sibling set atoms with the same kind,
//!    depth, argument and direction (source, destination, or either; never "source and
//!    destination", which does not distribute over a union) become one atom over the union of
//!    their values; dually, in a chain of `and`, negated set atoms merge (`not a and not b` is
//!    `not (a or b)`). So 4,096 `host` alternatives cost three atoms.
//! 3. The graph is built like libpcap's (and a BDD's): `compile(a and b, t, f) =
//!    compile(a, compile(b, t, f), f)`, `compile(a or b, t, f) = compile(a, t, compile(b, t, f))`,
//!    `compile(not a, t, f) = compile(a, f, t)`. Nodes are emitted back to front, so every jump
//!    goes forward, and each atom is one node: the graph is linear in the number of atoms.
//!
//! # Rules
//! The top-level alternatives (the outermost `or` chain) are the rules: alternative `i` accepts
//! with [`TARGET_ACCEPT`]` | i`. Alternatives whose atoms were merged share a rule (its text lists
//! them), and rules are renumbered in order of first appearance. Past [`MAX_RULES`], the remaining
//! alternatives fold into the last rule.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    ops::RangeInclusive,
};

use tap_common::filter::{
    FilterNode, MAX_NODES, MAX_RULES, MAX_SETS, MAX_STEPS, TARGET_ACCEPT, TARGET_REJECT, VLAN_ANY,
    dir, op, uses,
};

use super::{
    FilterError,
    ast::{Expr, Family, Prim, Test, V4Proto},
};

/// An IPv4 prefix: address (network byte order) and prefix length in bits (0..=32).
pub type Prefix4 = ([u8; 4], u8);
/// An IPv6 prefix: address (network byte order) and prefix length in bits (0..=128).
pub type Prefix6 = ([u8; 16], u8);

/// A compiled filter: the graph for one slot and the contents of its sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledFilter {
    /// The decision graph, at most [`MAX_NODES`] nodes; every jump is forward.
    pub nodes: Vec<FilterNode>,
    /// First node, or a target when the filter is constant (`TARGET_ACCEPT | 0`,
    /// `TARGET_REJECT`).
    pub entry: u16,
    /// [`tap_common::filter::uses`] bits: the lookups the graph needs.
    pub uses: u32,
    /// IPv4 sets by set number, shared by ADDR4 and ARP_ADDR atoms. Canonical: host bits zero,
    /// sorted, no prefix covered by another of the same set.
    pub addr4_sets: Vec<Vec<Prefix4>>,
    /// IPv6 sets by set number (canonical likewise).
    pub addr6_sets: Vec<Vec<Prefix6>>,
    /// Port sets by set number: sorted, disjoint, non-adjacent ranges (host order).
    pub port_sets: Vec<Vec<RangeInclusive<u16>>>,
    /// MAC sets by set number, sorted.
    pub mac_sets: Vec<Vec<[u8; 6]>>,
    /// Text of each rule, by rule number.
    pub rules: Vec<String>,
}

/// Values of a set atom.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Values {
    Lpm4(Vec<Prefix4>),
    Lpm6(Vec<Prefix6>),
    Ports(Vec<RangeInclusive<u16>>),
    Macs(Vec<[u8; 6]>),
}

impl Values {
    fn extend(&mut self, other: Values) {
        match (self, other) {
            (Values::Lpm4(a), Values::Lpm4(b)) => a.extend(b),
            (Values::Lpm6(a), Values::Lpm6(b)) => a.extend(b),
            (Values::Ports(a), Values::Ports(b)) => a.extend(b),
            (Values::Macs(a), Values::Macs(b)) => a.extend(b),
            _ => unreachable!("merged atoms have the same op, hence the same kind of values"),
        }
    }
}

/// One atom before set numbering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Leaf {
    pub op: u8,
    pub depth: u8,
    /// [`dir`] code for address and port atoms, 0 otherwise.
    pub dir: u8,
    pub arg: u32,
    /// The values of a set atom.
    pub values: Option<Values>,
}

type MergeKey = (u8, u8, u8, u32);

impl Leaf {
    /// Atoms with equal keys may merge under `or`.
    fn merge_key(&self) -> Option<MergeKey> {
        (self.values.is_some() && self.dir != dir::SRC_AND_DST)
            .then_some((self.op, self.depth, self.dir, self.arg))
    }

    fn absorb(&mut self, other: Leaf) {
        if let (Some(a), Some(b)) = (&mut self.values, other.values) {
            a.extend(b);
        }
    }
}

/// A boolean expression over atoms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Bx {
    Leaf(Leaf),
    Const(bool),
    Not(Box<Bx>),
    And(Vec<Bx>),
    Or(Vec<Bx>),
}

/// The atoms of a primitive, in the order libpcap tests them.
fn lower_prim(p: &Prim) -> Bx {
    let leaf = |op, dir, arg, values| {
        Bx::Leaf(Leaf {
            op,
            depth: p.depth,
            dir,
            arg,
            values,
        })
    };
    match &p.test {
        // A /0 net tests nothing but the protocol; libpcap's optimizer drops the address loads
        // (which matters for packets too short to hold the address).
        Test::Net4 {
            proto, prefix: 0, ..
        } => {
            let et = |t| leaf(op::ETHERTYPE, 0, t, None);
            match proto {
                V4Proto::Any => Bx::Or(vec![et(0x0800), et(0x0806), et(0x8035)]),
                V4Proto::Ip => et(0x0800),
                V4Proto::Arp => et(0x0806),
                V4Proto::Rarp => et(0x8035),
            }
        }
        Test::Net6 { prefix: 0, .. } => leaf(op::ETHERTYPE, 0, 0x86dd, None),
        Test::Net4 {
            proto,
            dir,
            addr,
            prefix,
        } => {
            let values = Values::Lpm4(vec![(addr.octets(), *prefix)]);
            let ip = || leaf(op::ADDR4, dir.code(), 0, Some(values.clone()));
            let arp = |ethertype| leaf(op::ARP_ADDR, dir.code(), ethertype, Some(values.clone()));
            match proto {
                V4Proto::Any => Bx::Or(vec![ip(), arp(0x0806), arp(0x8035)]),
                V4Proto::Ip => ip(),
                V4Proto::Arp => arp(0x0806),
                V4Proto::Rarp => arp(0x8035),
            }
        }
        Test::Net6 { dir, addr, prefix } => leaf(
            op::ADDR6,
            dir.code(),
            0,
            Some(Values::Lpm6(vec![(addr.octets(), *prefix)])),
        ),
        Test::EtherAddr { dir, mac } => leaf(
            op::ETHER_ADDR,
            dir.code(),
            0,
            Some(Values::Macs(vec![*mac])),
        ),
        Test::Port { l4, dir, ports } => {
            let values = Values::Ports(vec![ports.clone()]);
            Bx::Or(vec![
                leaf(op::PORT6, dir.code(), l4.mask(), Some(values.clone())),
                leaf(op::PORT4, dir.code(), l4.mask(), Some(values)),
            ])
        }
        Test::EtherType(t) if *t > 0xffff => Bx::Const(false),
        Test::EtherType(t) => leaf(op::ETHERTYPE, 0, *t, None),
        Test::IpProto { proto, .. } | Test::Protochain { proto, .. } if *proto > 255 => {
            Bx::Const(false)
        }
        Test::IpProto { family, proto } => {
            let v4 = || leaf(op::IP4_PROTO, 0, *proto, None);
            let v6 = || leaf(op::IP6_PROTO, 0, *proto, None);
            match family {
                Family::Any => Bx::Or(vec![v4(), v6()]),
                Family::V4 => v4(),
                Family::V6 => v6(),
            }
        }
        Test::Protochain { family, proto } => {
            let chain = leaf(op::PROTOCHAIN, 0, *proto, None);
            match family {
                Family::Any => chain,
                Family::V4 => Bx::And(vec![leaf(op::ETHERTYPE, 0, 0x0800, None), chain]),
                Family::V6 => Bx::And(vec![leaf(op::ETHERTYPE, 0, 0x86dd, None), chain]),
            }
        }
        Test::Vlan(id) => leaf(op::VLAN, 0, id.map_or(VLAN_ANY, u32::from), None),
    }
}

/// The expression over atoms, without merging.
pub(super) fn lower(e: &Expr) -> Bx {
    match e {
        Expr::Prim(p) => lower_prim(p),
        Expr::Not(a) => Bx::Not(Box::new(lower(a))),
        Expr::And(items) => Bx::And(items.iter().map(lower).collect()),
        Expr::Or(items) => Bx::Or(items.iter().map(lower).collect()),
    }
}

/// Merges the set atoms of a flattened `or` chain into the first atom of each kind.
fn merge_or(items: Vec<Bx>) -> Vec<Bx> {
    let mut out: Vec<Bx> = Vec::with_capacity(items.len());
    let mut first: HashMap<MergeKey, usize> = HashMap::new();
    for item in items {
        if let Bx::Leaf(leaf) = &item {
            if let Some(key) = leaf.merge_key() {
                if let Some(&i) = first.get(&key) {
                    let (Bx::Leaf(leaf), Bx::Leaf(into)) = (item, &mut out[i]) else {
                        unreachable!("leaves")
                    };
                    into.absorb(leaf);
                    continue;
                }
                first.insert(key, out.len());
            }
        }
        out.push(item);
    }
    out
}

/// The merge keys of `not leaf` or `not (leaf or leaf ...)`, if it is one.
fn negated_keys(bx: &Bx) -> Option<HashSet<MergeKey>> {
    let Bx::Not(inner) = bx else { return None };
    let keys: HashSet<MergeKey> = match &**inner {
        Bx::Leaf(l) => l.merge_key().into_iter().collect(),
        Bx::Or(items) if items.iter().all(|i| matches!(i, Bx::Leaf(_))) => items
            .iter()
            .filter_map(|i| {
                if let Bx::Leaf(l) = i {
                    l.merge_key()
                } else {
                    None
                }
            })
            .collect(),
        _ => return None,
    };
    (!keys.is_empty()).then_some(keys)
}

/// In a flattened `and` chain, joins negated set atoms that share a kind, by De Morgan:
/// `not a and not b` is `not (a or b)`, whose `or` then merges. The joined test takes the place
/// of the first.
fn merge_and(items: Vec<Bx>) -> Vec<Bx> {
    let mut out: Vec<Bx> = Vec::with_capacity(items.len());
    let mut groups: Vec<(usize, HashSet<MergeKey>)> = Vec::new();
    for item in items {
        if let Some(keys) = negated_keys(&item) {
            if let Some((i, group)) = groups.iter_mut().find(|(_, g)| !g.is_disjoint(&keys)) {
                let (Bx::Not(inner), Bx::Not(into)) = (item, &mut out[*i]) else {
                    unreachable!("negations")
                };
                let mut joined = match std::mem::replace(&mut **into, Bx::Const(false)) {
                    Bx::Or(v) => v,
                    other => vec![other],
                };
                match *inner {
                    Bx::Or(v) => joined.extend(v),
                    other => joined.push(other),
                }
                **into = Bx::Or(joined);
                group.extend(keys);
                continue;
            }
            groups.push((out.len(), keys));
        }
        out.push(item);
    }
    for (i, _) in groups {
        if let Bx::Not(inner) = &mut out[i] {
            let joined = std::mem::replace(&mut **inner, Bx::Const(false));
            **inner = simplify(joined);
        }
    }
    out
}

/// Flattens nested `and`/`or`, folds constants, removes double negations and merges sets.
pub(super) fn simplify(bx: Bx) -> Bx {
    match bx {
        Bx::Leaf(_) | Bx::Const(_) => bx,
        Bx::Not(inner) => match simplify(*inner) {
            Bx::Const(c) => Bx::Const(!c),
            Bx::Not(x) => *x,
            x => Bx::Not(Box::new(x)),
        },
        Bx::And(items) => chain(items, true),
        Bx::Or(items) => chain(items, false),
    }
}

/// A flattened `and` (`is_and`) or `or` chain.
fn chain(items: Vec<Bx>, is_and: bool) -> Bx {
    // The constant that decides the chain (false for and, true for or), and the neutral one.
    let absorbing = !is_and;
    let mut flat = Vec::with_capacity(items.len());
    let mut stack: Vec<Bx> = items.into_iter().rev().collect();
    while let Some(item) = stack.pop() {
        match simplify(item) {
            Bx::And(inner) if is_and => stack.extend(inner.into_iter().rev()),
            Bx::Or(inner) if !is_and => stack.extend(inner.into_iter().rev()),
            Bx::Const(c) if c == absorbing => return Bx::Const(absorbing),
            Bx::Const(_) => {}
            other => flat.push(other),
        }
    }
    let mut merged = if is_and {
        merge_and(flat)
    } else {
        merge_or(flat)
    };
    match merged.len() {
        0 => Bx::Const(!absorbing),
        1 => merged.pop().expect("one item"),
        _ if is_and => Bx::And(merged),
        _ => Bx::Or(merged),
    }
}

/// Jump target while building (emission order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tgt {
    Node(usize),
    Accept(u16),
    Reject,
}

/// Emits nodes back to front.
#[derive(Default)]
struct Builder {
    emitted: Vec<(Leaf, Tgt, Tgt)>,
}

impl Builder {
    fn build(&mut self, bx: &Bx, t: Tgt, f: Tgt) -> Tgt {
        match bx {
            Bx::Const(c) => {
                if *c {
                    t
                } else {
                    f
                }
            }
            Bx::Leaf(l) => {
                self.emitted.push((l.clone(), t, f));
                Tgt::Node(self.emitted.len() - 1)
            }
            Bx::Not(x) => self.build(x, f, t),
            Bx::And(xs) => {
                let mut next = t;
                for x in xs.iter().rev() {
                    next = self.build(x, next, f);
                }
                next
            }
            Bx::Or(xs) => {
                let mut next = f;
                for x in xs.iter().rev() {
                    next = self.build(x, t, next);
                }
                next
            }
        }
    }
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// The text of a rule made of several alternatives.
fn rule_text(texts: &[String]) -> String {
    match texts {
        [] => String::new(),
        [a, b, _, _, ..] => format!("{a} or {b} or … ({} alternatives)", texts.len()),
        _ => texts.join(" or "),
    }
}

/// Set numbering for one kind of set: equal (canonical) sets share a number.
struct Numbering<T> {
    sets: Vec<T>,
    index: HashMap<T, u8>,
    what: &'static str,
}

impl<T: Clone + Eq + std::hash::Hash> Numbering<T> {
    fn new(what: &'static str) -> Self {
        Self {
            sets: Vec::new(),
            index: HashMap::new(),
            what,
        }
    }

    fn number(&mut self, set: T) -> Result<u8, FilterError> {
        if let Some(&n) = self.index.get(&set) {
            return Ok(n);
        }
        if self.sets.len() >= MAX_SETS as usize {
            return Err(FilterError::TooLarge {
                what: self.what,
                count: self.sets.len() + 1,
                max: MAX_SETS as usize,
            });
        }
        let n = self.sets.len() as u8;
        self.sets.push(set.clone());
        self.index.insert(set, n);
        Ok(n)
    }
}

/// Compiles a parsed expression.
pub fn compile_expr(expr: &Expr) -> Result<CompiledFilter, FilterError> {
    let alternatives = expr.alternatives();

    // Top-level items, each with the alternative it comes from: the alternatives' own `or`
    // chains are spliced in so their atoms can merge across alternatives.
    let mut items: Vec<(Bx, usize)> = Vec::new();
    for (i, alt) in alternatives.iter().enumerate() {
        match simplify(lower(alt)) {
            Bx::Or(children) => items.extend(children.into_iter().map(|c| (c, i))),
            Bx::Const(false) => {}
            bx => items.push((bx, i)),
        }
    }
    let mut parent: Vec<usize> = (0..alternatives.len()).collect();
    let mut merged: Vec<(Bx, usize)> = Vec::with_capacity(items.len());
    let mut first: HashMap<MergeKey, usize> = HashMap::new();
    for (bx, alt) in items {
        if let Bx::Leaf(leaf) = &bx {
            if let Some(key) = leaf.merge_key() {
                if let Some(&i) = first.get(&key) {
                    let (Bx::Leaf(leaf), (Bx::Leaf(into), into_alt)) = (bx, &mut merged[i]) else {
                        unreachable!("leaves")
                    };
                    into.absorb(leaf);
                    let (a, b) = (find(&mut parent, *into_alt), find(&mut parent, alt));
                    parent[a.max(b)] = a.min(b);
                    continue;
                }
                first.insert(key, merged.len());
            }
        }
        merged.push((bx, alt));
    }

    // Rule numbers: one per group of merged alternatives, in order of first appearance; the
    // groups past MAX_RULES fold into the last rule.
    let mut rule_of_root: HashMap<usize, u16> = HashMap::new();
    let mut rule_of_alt = vec![0u16; alternatives.len()];
    let mut texts: Vec<Vec<String>> = Vec::new();
    for (i, alt) in alternatives.iter().enumerate() {
        let root = find(&mut parent, i);
        let next = texts.len().min(MAX_RULES as usize - 1) as u16;
        let rule = *rule_of_root.entry(root).or_insert(next);
        if usize::from(rule) == texts.len() {
            texts.push(Vec::new());
        }
        texts[usize::from(rule)].push(alt.to_string());
        rule_of_alt[i] = rule;
    }
    let rules = texts.iter().map(|t| rule_text(t)).collect();

    let mut builder = Builder::default();
    let mut entry = Tgt::Reject;
    for (bx, alt) in merged.iter().rev() {
        entry = builder.build(bx, Tgt::Accept(rule_of_alt[*alt]), entry);
    }
    finish(builder.emitted, entry, rules)
}

/// Numbers the nodes front to back, assigns set numbers, checks the limits.
fn finish(
    emitted: Vec<(Leaf, Tgt, Tgt)>,
    entry: Tgt,
    rules: Vec<String>,
) -> Result<CompiledFilter, FilterError> {
    let n = emitted.len();
    if n > MAX_NODES as usize {
        return Err(FilterError::TooLarge {
            what: "graph nodes",
            count: n,
            max: MAX_NODES as usize,
        });
    }
    let resolve = |t: Tgt| match t {
        Tgt::Node(k) => (n - 1 - k) as u16,
        Tgt::Accept(rule) => TARGET_ACCEPT | rule,
        Tgt::Reject => TARGET_REJECT,
    };
    let mut addr4 = Numbering::new("distinct IPv4 address sets");
    let mut addr6 = Numbering::new("distinct IPv6 address sets");
    let mut ports = Numbering::new("distinct port sets");
    let mut macs = Numbering::new("distinct MAC address sets");
    let mut nodes = Vec::with_capacity(n);
    let mut used = 0;
    for (leaf, t, f) in emitted.into_iter().rev() {
        let set = match leaf.values {
            None => 0,
            Some(Values::Lpm4(v)) => addr4.number(canonical4(&v))?,
            Some(Values::Lpm6(v)) => addr6.number(canonical6(&v))?,
            Some(Values::Ports(v)) => ports.number(canonical_ports(v))?,
            Some(Values::Macs(mut v)) => {
                v.sort_unstable();
                v.dedup();
                macs.number(v)?
            }
        };
        used |= match leaf.op {
            op::ADDR4 => uses::ADDR4,
            op::ADDR6 => uses::ADDR6,
            op::ARP_ADDR => uses::ARP,
            op::PORT4 | op::PORT6 => uses::PORTS,
            op::ETHER_ADDR => uses::MAC,
            _ => 0,
        };
        nodes.push(FilterNode {
            op: leaf.op,
            depth: leaf.depth,
            dir: leaf.dir,
            set,
            arg: leaf.arg,
            jt: resolve(t),
            jf: resolve(f),
            _pad: 0,
        });
    }
    let steps = longest_walk(&nodes, resolve(entry));
    if steps > MAX_STEPS as usize {
        return Err(FilterError::TooLarge {
            what: "tests on its longest path",
            count: steps,
            max: MAX_STEPS as usize,
        });
    }
    Ok(CompiledFilter {
        nodes,
        entry: resolve(entry),
        uses: used,
        addr4_sets: addr4.sets,
        addr6_sets: addr6.sets,
        port_sets: ports.sets,
        mac_sets: macs.sets,
        rules,
    })
}

/// Nodes visited by the longest walk from `entry` (the graph is acyclic: jumps go forward).
pub(super) fn longest_walk(nodes: &[FilterNode], entry: u16) -> usize {
    let mut len = vec![0usize; nodes.len()];
    let at = |len: &[usize], t: u16| len.get(usize::from(t)).copied().unwrap_or(0);
    for i in (0..nodes.len()).rev() {
        len[i] = 1 + at(&len, nodes[i].jt).max(at(&len, nodes[i].jf));
    }
    at(&len, entry)
}

/// `a` with only its first `len` of `bits` bits kept.
fn keep(a: u128, len: u8, bits: u8) -> u128 {
    if len == 0 {
        0
    } else {
        a & (u128::MAX << (128 - u32::from(len.min(bits)))) >> (128 - u32::from(bits))
    }
}

/// Canonical prefix set: host bits zero, prefixes covered by another one dropped, sorted.
fn canonical(prefixes: impl Iterator<Item = (u128, u8)>, bits: u8) -> Vec<(u128, u8)> {
    let mut all: Vec<(u128, u8)> = prefixes
        .map(|(a, l)| (keep(a, l, bits), l.min(bits)))
        .collect();
    all.sort_unstable();
    all.dedup();
    let present: HashSet<(u128, u8)> = all.iter().copied().collect();
    all.retain(|&(a, l)| !(0..l).any(|k| present.contains(&(keep(a, k, bits), k))));
    all
}

fn canonical4(v: &[Prefix4]) -> Vec<Prefix4> {
    canonical(
        v.iter()
            .map(|(a, l)| (u128::from(u32::from_be_bytes(*a)), *l)),
        32,
    )
    .into_iter()
    .map(|(a, l)| ((a as u32).to_be_bytes(), l))
    .collect()
}

fn canonical6(v: &[Prefix6]) -> Vec<Prefix6> {
    canonical(v.iter().map(|(a, l)| (u128::from_be_bytes(*a), *l)), 128)
        .into_iter()
        .map(|(a, l)| (a.to_be_bytes(), l))
        .collect()
}

fn canonical_ports(mut v: Vec<RangeInclusive<u16>>) -> Vec<RangeInclusive<u16>> {
    v.sort_unstable_by_key(|r| (*r.start(), *r.end()));
    let mut out: Vec<RangeInclusive<u16>> = Vec::with_capacity(v.len());
    for r in v {
        if r.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if u32::from(*r.start()) <= u32::from(*last.end()) + 1 => {
                *last = *last.start()..=(*last.end()).max(*r.end());
            }
            _ => out.push(r),
        }
    }
    out
}

/// LPM entries over `bits`-bit prefixes: one per distinct prefix, with the mask of every set
/// holding a prefix that covers it. Sets past the 64th are ignored (the compiler makes at most
/// [`MAX_SETS`]).
fn lpm_entries(sets: Vec<Vec<(u128, u8)>>, bits: u8) -> Vec<(u128, u8, u64)> {
    let mut own: BTreeMap<(u128, u8), u64> = BTreeMap::new();
    for (i, set) in sets.into_iter().enumerate().take(64) {
        for (a, l) in set {
            let l = l.min(bits);
            *own.entry((keep(a, l, bits), l)).or_default() |= 1 << i;
        }
    }
    own.keys()
        .map(|&(a, l)| {
            let mask = (0..=l)
                .filter_map(|k| own.get(&(keep(a, k, bits), k)))
                .fold(0, |m, s| m | s);
            (a, l, mask)
        })
        .collect()
}

/// Entries of the IPv4 LPM trie for `sets` (set `i` is bit `i`): `(address, prefix length
/// 0..=32, mask)`, the address in network byte order with host bits zero. A longest-prefix lookup
/// of an address returns exactly the sets that contain it. Sorted by address, then length.
pub fn lpm4_entries(sets: &[Vec<Prefix4>]) -> Vec<([u8; 4], u8, u64)> {
    let sets = sets
        .iter()
        .map(|s| {
            s.iter()
                .map(|(a, l)| (u128::from(u32::from_be_bytes(*a)), *l))
                .collect()
        })
        .collect();
    lpm_entries(sets, 32)
        .into_iter()
        .map(|(a, l, m)| ((a as u32).to_be_bytes(), l, m))
        .collect()
}

/// Entries of the IPv6 LPM trie for `sets`; see [`lpm4_entries`]. Prefix lengths 0..=128.
pub fn lpm6_entries(sets: &[Vec<Prefix6>]) -> Vec<([u8; 16], u8, u64)> {
    let sets = sets
        .iter()
        .map(|s| {
            s.iter()
                .map(|(a, l)| (u128::from_be_bytes(*a), *l))
                .collect()
        })
        .collect();
    lpm_entries(sets, 128)
        .into_iter()
        .map(|(a, l, m)| (a.to_be_bytes(), l, m))
        .collect()
}

/// Port array entries for `sets` (set `i` is bit `i`): `(port in host order, mask)` for every
/// port in at least one set, ascending.
pub fn port_masks(sets: &[Vec<RangeInclusive<u16>>]) -> Vec<(u16, u64)> {
    let mut masks = vec![0u64; 65536];
    for (i, set) in sets.iter().enumerate().take(64) {
        for r in set {
            for port in r.clone() {
                masks[usize::from(port)] |= 1 << i;
            }
        }
    }
    masks
        .into_iter()
        .enumerate()
        .filter(|&(_, m)| m != 0)
        .map(|(p, m)| (p as u16, m))
        .collect()
}

/// MAC hash entries for `sets` (set `i` is bit `i`): `(address, mask)`, sorted.
pub fn mac_entries(sets: &[Vec<[u8; 6]>]) -> Vec<([u8; 6], u64)> {
    let mut out: BTreeMap<[u8; 6], u64> = BTreeMap::new();
    for (i, set) in sets.iter().enumerate().take(64) {
        for mac in set {
            *out.entry(*mac).or_default() |= 1 << i;
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
pub(super) mod tests;
