//! From the sessions, the ownership map and this host's inventory to the captures this host should
//! run: pure, so every decision is a unit test.
//!
//! # Where a source is
//! - `mac:M`
//!   - on a **bridge port** whose bridge has learned M there: a bridge FDB entry for M that is not
//!     permanent (permanent entries are the host's own port addresses), on a port of kind veth or
//!     tun/tap that is enslaved to a bridge and matches none of the host's `uplinks` globs (an
//!     uplink learns the MACs of workloads on other hosts, which those hosts mirror). The port
//!     faces the workload.
//!   - on an interface whose own address is M and that is neither a bridge nor a bridge port: the
//!     workload's own interface (a host or a container mirrored from inside).
//! - `ip:A/L`
//!   - on an interface with an address inside A/L (bridges included: the host's own address
//!     there is a source like any other): the workload's own interface.
//!   - through the neighbour table: every usable entry (not failed or incomplete) with an IP
//!     inside A/L names a MAC, which is then found on a bridge port as for `mac:`. So an IP source
//!     behind a bridge is seen only once the host has a neighbour entry for it (it routes for the
//!     workload, or answers it); a plain L2 hypervisor should use `mac:` sources.
//! - `iface:HOST:GLOB`: on this host's interfaces whose name matches GLOB, when HOST is this
//!   host's name or `*`. The interface faces the workload.
//!
//! # Hooks and tests
//! Directions are the workload's. On an interface that faces the workload (a port) the workload's
//! `out` is the port's TC ingress and `in` its TC egress; on the workload's own interface it is the
//! other way round. Each session's rule tests the source too, so other traffic on the same
//! interface is not taken: `ether src M` (out), `ether dst M` (in), `ether host M` (both); for IP
//! sources `src net A/L`, `dst net A/L`, `net A/L` (IPv4 with ARP and RARP, or IPv6, as
//! pcap-filter reads them, on untagged frames); `iface:` sources test nothing more. Frames a
//! workload receives as broadcast or multicast are not `ether dst M`: mirror the port with an
//! `iface:` source to see them.
//!
//! # Priority
//! On each interface and hook the sessions are ordered by priority (lower first), then tenant
//! and name; each becomes one top-level alternative of one filter, so one kernel rule, and the
//! kernel stops at the first rule that matches: a packet two sessions select goes to the one
//! with the lower number only. A session whose rule is identical to an earlier one can never
//! match and is left out (noted in its status). libpcap's `vlan` shifts every test after it in
//! the expression, so a session whose filter uses `vlan` must be the last on its interface; one
//! that is not is refused there.
//!
//! # Snap length
//! The kernel's snap length is per capture: the widest of its sessions. User space cuts each
//! packet further to its session's own ([`RuleTarget::snaplen`]).

use std::collections::BTreeMap;

use super::{
    inventory::{Inventory, Link, LinkKind},
    owners::Ownership,
    session::{Direction, Session, SessionId, Source, format_mac, masked},
};
use crate::{
    filter::{Expr, maps::FilterImage},
    model::{Hook, Interface},
};

/// Always true, in two tests the compiler keeps: appended to every rule so that no rule is a
/// single set test, which the compiler would merge with another rule's (making two sessions share
/// a rule number).
const KEEP_APART: &str = "not (ip and not ip)";

/// What this host contributes to the reconciliation besides the inventory.
#[derive(Debug, Clone, Default)]
pub struct HostSettings {
    /// This host's name, as `iface:HOST:GLOB` sources and status keys use it.
    pub host: String,
    /// Interface globs that are uplinks (never a workload's port, whatever their kind).
    pub uplinks: Vec<String>,
}

/// Where a session's packets come from on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub interface: Interface,
    pub hooks: Vec<Hook>,
}

/// What kernel rule `i` of a capture delivers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTarget {
    pub session: SessionId,
    /// This session's snap length in bytes: packets are cut to it in user space.
    pub snaplen: u32,
}

/// One capture object to run: one interface, one or both TC hooks, one combined filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCapture {
    pub interface: Interface,
    pub hooks: Vec<Hook>,
    /// The combined filter; rule `i` is `rules[i]`.
    pub filter: FilterImage,
    pub rules: Vec<RuleTarget>,
    /// The kernel's snap length: the widest of the rules'.
    pub snaplen: u32,
}

/// What became of one session on this host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionPlan {
    /// Where it is realized; empty when its source is not on this host (or it was refused).
    pub attachments: Vec<Attachment>,
    /// Why it may not be realized here although its source is here.
    pub refused: Option<String>,
    /// Interfaces where it could not be realized, and why.
    pub errors: Vec<String>,
    /// Things worth knowing that are not failures (an interface refused among others, a rule
    /// shadowed by an earlier session's).
    pub notes: Vec<String>,
}

impl SessionPlan {
    /// True when the source is on this host in some form: the agent writes a status then.
    #[must_use]
    pub fn present(&self) -> bool {
        !self.attachments.is_empty() || self.refused.is_some() || !self.errors.is_empty()
    }
}

/// The desired state of this host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub captures: Vec<LocalCapture>,
    /// Every session given, by identity.
    pub sessions: BTreeMap<SessionId, SessionPlan>,
}

/// Whether an interface is the workload's own or faces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Facing {
    Own,
    Port,
}

/// The hooks that see `direction` of a workload on an interface facing it as `facing`.
fn hooks(direction: Direction, facing: Facing) -> Vec<Hook> {
    let (out_hook, in_hook) = match facing {
        Facing::Port => (Hook::TcIngress, Hook::TcEgress),
        Facing::Own => (Hook::TcEgress, Hook::TcIngress),
    };
    let mut v = Vec::new();
    if direction.wants_out() {
        v.push(out_hook);
    }
    if direction.wants_in() {
        v.push(in_hook);
    }
    v.sort_by_key(|h| hook_order(*h));
    v
}

fn hook_order(h: Hook) -> u8 {
    match h {
        Hook::Xdp => 0,
        Hook::TcIngress => 1,
        Hook::TcEgress => 2,
    }
}

/// The source test of a session's rule, `None` for interface sources.
fn source_test(source: &Source, direction: Direction) -> Option<String> {
    let (src, dst, either) = ("src ", "dst ", "");
    let d = match direction {
        Direction::Out => src,
        Direction::In => dst,
        Direction::Both => either,
    };
    match source {
        Source::Mac(m) => {
            let q = match direction {
                Direction::Out => "src",
                Direction::In => "dst",
                Direction::Both => "host",
            };
            Some(format!("ether {q} {}", format_mac(*m)))
        }
        Source::Ip { addr, prefix } => Some(format!("{d}net {addr}/{prefix}")),
        Source::Iface { .. } => None,
    }
}

fn is_uplink(settings: &HostSettings, link: &Link) -> bool {
    settings
        .uplinks
        .iter()
        .any(|g| crate::settings::agent_file::glob_match(g, &link.name))
}

/// Bridge ports facing a workload whose bridge learned `mac` there.
fn ports_of_mac<'i>(inv: &'i Inventory, settings: &HostSettings, mac: [u8; 6]) -> Vec<&'i Link> {
    let mut out: Vec<&Link> = Vec::new();
    for e in inv.fdb.iter().filter(|e| e.mac == mac && !e.local) {
        let Some(port) = inv.link(e.port) else {
            continue;
        };
        let Some(bridge) = port.master.and_then(|m| inv.link(m)) else {
            continue;
        };
        let workload_port = matches!(port.kind, LinkKind::Veth | LinkKind::Tun)
            && bridge.kind == LinkKind::Bridge
            && e.bridge == Some(bridge.index)
            && !is_uplink(settings, port);
        if workload_port && !out.iter().any(|l| l.index == port.index) {
            out.push(port);
        }
    }
    out
}

/// The interfaces carrying `source` on this host, each with how it faces the workload.
fn locate<'i>(
    inv: &'i Inventory,
    settings: &HostSettings,
    source: &Source,
) -> Vec<(&'i Link, Facing)> {
    let mut found: Vec<(&Link, Facing)> = Vec::new();
    let mut add = |l: &'i Link, f: Facing| {
        if !found.iter().any(|(x, _)| x.index == l.index) {
            found.push((l, f));
        }
    };
    match source {
        Source::Mac(m) => {
            for p in ports_of_mac(inv, settings, *m) {
                add(p, Facing::Port);
            }
            let enslaved = |l: &Link| l.master.is_some() || l.kind == LinkKind::Bridge;
            for l in inv
                .links
                .iter()
                .filter(|l| l.mac == Some(*m) && !enslaved(l))
            {
                add(l, Facing::Own);
            }
        }
        Source::Ip { addr, prefix } => {
            let inside = |ip: std::net::IpAddr| {
                ip.is_ipv4() == addr.is_ipv4() && masked(ip, *prefix) == *addr
            };
            for a in inv.addresses.iter().filter(|a| inside(a.addr)) {
                if let Some(l) = inv.link(a.index) {
                    add(l, Facing::Own);
                }
            }
            for n in inv.neighbours.iter().filter(|n| inside(n.ip)) {
                for p in ports_of_mac(inv, settings, n.mac) {
                    add(p, Facing::Port);
                }
            }
        }
        Source::Iface { host, glob } if *host == settings.host || host == "*" => {
            for l in inv
                .links
                .iter()
                .filter(|l| crate::settings::agent_file::glob_match(glob, &l.name))
            {
                add(l, Facing::Port);
            }
        }
        Source::Iface { .. } => {}
    }
    found.sort_by_key(|(l, _)| l.index);
    found
}

/// One session's rule on one interface and hook.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// Index into the sorted sessions.
    session: usize,
    text: String,
    uses_vlan: bool,
}

fn rule_text(test: Option<&str>, filter: Option<&str>, uses_vlan: bool) -> String {
    let mut parts: Vec<String> = Vec::new();
    parts.extend(test.map(|t| format!("({t})")));
    // After a `vlan` every test is one tag deeper, the keep-apart one too: put it before.
    if uses_vlan {
        parts.push(format!("({KEEP_APART})"));
    }
    parts.extend(filter.map(|f| format!("({f})")));
    if !uses_vlan {
        parts.push(format!("({KEEP_APART})"));
    }
    parts.join(" and ")
}

/// A session's own rule, as a filter expression: its source test (see the module's table) and
/// its filter. The agent runs it, with the rules of the sessions before it on the same interface
/// excluded, as the tap realizing the session there.
#[must_use]
pub fn session_rule(s: &Session) -> String {
    let test = source_test(&s.source, s.raw.direction);
    let filter = s.expr.as_ref().map(|_| s.raw.filter.trim());
    match (test, filter) {
        (Some(t), Some(f)) => format!("({t}) and ({f})"),
        (Some(t), None) => t,
        (None, Some(f)) => f.to_string(),
        // Every packet: a test that is always true (an empty rule would be no filter at all,
        // which excludes nothing when a later session says `not (...)`).
        (None, None) => KEEP_APART.to_string(),
    }
}

/// Computes the desired captures of this host.
#[must_use]
pub fn reconcile(
    settings: &HostSettings,
    sessions: &[Session],
    owners: &Ownership,
    inv: &Inventory,
) -> Plan {
    let mut order: Vec<&Session> = sessions.iter().collect();
    order.sort_by(|a, b| {
        (a.raw.priority, &a.raw.tenant, &a.raw.name).cmp(&(
            b.raw.priority,
            &b.raw.tenant,
            &b.raw.name,
        ))
    });
    let mut plan = Plan::default();
    // (ifindex, hook) -> rules in priority order.
    let mut per_hook: BTreeMap<(u32, u8), Vec<Rule>> = BTreeMap::new();
    let mut names: BTreeMap<u32, Interface> = BTreeMap::new();
    for (i, s) in order.iter().enumerate() {
        let mut sp = SessionPlan::default();
        let found = locate(inv, settings, &s.source);
        let mut usable: Vec<(&Link, Facing)> = Vec::new();
        match &s.source {
            Source::Iface { .. } => {
                let mut refusals = Vec::new();
                for (l, f) in found {
                    match owners.check(&s.raw.tenant, &s.source, Some(&l.name)) {
                        Ok(()) => usable.push((l, f)),
                        Err(reason) => refusals.push(reason),
                    }
                }
                if usable.is_empty() {
                    sp.refused = refusals.into_iter().next();
                } else {
                    sp.notes.extend(refusals);
                }
            }
            _ if found.is_empty() => {}
            _ => match owners.check(&s.raw.tenant, &s.source, None) {
                Ok(()) => usable = found,
                Err(reason) => sp.refused = Some(reason),
            },
        }
        let test = source_test(&s.source, s.raw.direction);
        let filter = s.expr.as_ref().map(|_| s.raw.filter.trim());
        let uses_vlan = s.expr.as_ref().is_some_and(|e| {
            e.prims()
                .iter()
                .any(|p| matches!(p.test, crate::filter::ast::Test::Vlan(_)))
        });
        let text = rule_text(test.as_deref(), filter, uses_vlan);
        for (l, facing) in usable {
            names.entry(l.index).or_insert_with(|| Interface {
                name: l.name.clone(),
                ifindex: l.index,
            });
            for h in hooks(s.raw.direction, facing) {
                per_hook
                    .entry((l.index, hook_order(h)))
                    .or_default()
                    .push(Rule {
                        session: i,
                        text: text.clone(),
                        uses_vlan,
                    });
            }
        }
        plan.sessions.insert(s.id(), sp);
    }

    let id_of = |i: usize| order[i].id();
    for (ifindex, iface) in &names {
        let mut lists: Vec<(Hook, Vec<Rule>)> = Vec::new();
        for h in [Hook::TcIngress, Hook::TcEgress] {
            let Some(rules) = per_hook.remove(&(*ifindex, hook_order(h))) else {
                continue;
            };
            let mut kept: Vec<Rule> = Vec::new();
            for r in rules {
                if let Some(first) = kept.iter().find(|k| k.text == r.text) {
                    let note = format!(
                        "{} {}: shadowed by {} (the same packets, a lower priority number)",
                        iface.name,
                        h.name(),
                        id_of(first.session)
                    );
                    push_unique(&mut plan_of(&mut plan, &id_of(r.session)).notes, note);
                    continue;
                }
                kept.push(r);
            }
            let last = kept.len().saturating_sub(1);
            let mut ordered = Vec::with_capacity(kept.len());
            for (n, r) in kept.into_iter().enumerate() {
                if r.uses_vlan && n != last {
                    let error = format!(
                        "{} {}: a filter with 'vlan' must be the last rule on an interface (give it the highest priority number there)",
                        iface.name,
                        h.name()
                    );
                    push_unique(&mut plan_of(&mut plan, &id_of(r.session)).errors, error);
                    continue;
                }
                ordered.push(r);
            }
            if !ordered.is_empty() {
                lists.push((h, ordered));
            }
        }
        // One capture for both hooks when they take the same rules, else one per hook.
        let groups: Vec<(Vec<Hook>, Vec<Rule>)> = match lists.as_slice() {
            [(a, x), (b, y)] if x == y => vec![(vec![*a, *b], x.clone())],
            _ => lists.into_iter().map(|(h, r)| (vec![h], r)).collect(),
        };
        for (hooks, rules) in groups {
            match build_capture(iface, &hooks, &rules, &order) {
                Ok(capture) => {
                    for r in &rules {
                        plan_of(&mut plan, &id_of(r.session))
                            .attachments
                            .push(Attachment {
                                interface: iface.clone(),
                                hooks: hooks.clone(),
                            });
                    }
                    plan.captures.push(capture);
                }
                Err(e) => {
                    let hook_names: Vec<&str> = hooks.iter().map(|h| h.name()).collect();
                    for r in &rules {
                        push_unique(
                            &mut plan_of(&mut plan, &id_of(r.session)).errors,
                            format!("{} {}: {e}", iface.name, hook_names.join("+")),
                        );
                    }
                }
            }
        }
    }
    // A session attached to both hooks of an interface through two captures is one attachment.
    for sp in plan.sessions.values_mut() {
        let mut merged: Vec<Attachment> = Vec::new();
        for a in sp.attachments.drain(..) {
            match merged
                .iter_mut()
                .find(|m| m.interface.ifindex == a.interface.ifindex)
            {
                Some(m) => {
                    m.hooks.extend(a.hooks);
                    m.hooks.sort_by_key(|h| hook_order(*h));
                    m.hooks.dedup();
                }
                None => merged.push(a),
            }
        }
        sp.attachments = merged;
    }
    plan
}

fn plan_of<'p>(plan: &'p mut Plan, id: &SessionId) -> &'p mut SessionPlan {
    plan.sessions.entry(id.clone()).or_default()
}

fn push_unique(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

/// Compiles the rules of one capture and checks that rule `i` is the `i`-th session's.
fn build_capture(
    iface: &Interface,
    hooks: &[Hook],
    rules: &[Rule],
    order: &[&Session],
) -> Result<LocalCapture, String> {
    let text = rules
        .iter()
        .map(|r| format!("({})", r.text))
        .collect::<Vec<_>>()
        .join(" or ");
    let filter = crate::filter::image(&text).map_err(|e| format!("the combined filter: {e}"))?;
    if filter.rules.len() != rules.len() {
        return Err(format!(
            "the combined filter has {} rules for {} sessions (at most {} fit)",
            filter.rules.len(),
            rules.len(),
            tap_common::filter::MAX_RULES
        ));
    }
    // The same rules built from the parsed parts: proves that joining the texts changed no
    // session's meaning (what `vlan` would do to the rules after it).
    let keep = crate::filter::parse(KEEP_APART)
        .ok()
        .flatten()
        .ok_or_else(|| "internal: the keep-apart test does not parse".to_string())?;
    let mut alternatives: Vec<Expr> = Vec::with_capacity(rules.len());
    for r in rules {
        let s = order[r.session];
        let mut e: Option<Expr> = None;
        let mut and = |x: Expr| {
            e = Some(match e.take() {
                Some(a) => Expr::and(a, x),
                None => x,
            });
        };
        if let Some(t) = source_test(&s.source, s.raw.direction) {
            let t = crate::filter::parse(&t)
                .ok()
                .flatten()
                .ok_or_else(|| format!("internal: the source test '{t}' does not parse"))?;
            and(t);
        }
        if r.uses_vlan {
            and(keep.clone());
        }
        if let Some(f) = &s.expr {
            and(f.clone());
        }
        if !r.uses_vlan {
            and(keep.clone());
        }
        alternatives.push(e.expect("at least the keep-apart test"));
    }
    let combined = match alternatives.len() {
        1 => alternatives.pop().expect("one"),
        _ => Expr::Or(alternatives),
    };
    let expected =
        crate::filter::compile_expr(&combined).map_err(|e| format!("the combined filter: {e}"))?;
    if filter.graph.as_ref().map(|g| &g.nodes) != Some(&expected.nodes) {
        return Err("the combined filter does not keep each session's meaning".into());
    }
    let targets: Vec<RuleTarget> = rules
        .iter()
        .map(|r| RuleTarget {
            session: order[r.session].id(),
            snaplen: order[r.session].snaplen,
        })
        .collect();
    let snaplen = targets.iter().map(|t| t.snaplen).max().unwrap_or(0);
    Ok(LocalCapture {
        interface: iface.clone(),
        hooks: hooks.to_vec(),
        filter,
        rules: targets,
        snaplen,
    })
}

#[cfg(test)]
mod tests;
