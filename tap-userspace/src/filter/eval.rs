//! The user-space evaluator: what the kernel's classifier (`tap-ebpf/src/filter.rs`) decides for
//! a packet, in plain Rust. A product module: `tap query` selects the packets of store files
//! with it, and the tests hold the kernel's decisions against it. [`eval`] walks a compiled graph and looks values up in the
//! map entries the compiler produces; [`eval_expr`] evaluates the expression directly, atom by
//! atom in libpcap's order, without graphs, sets or maps. Both read fields at the offsets libpcap
//! reads them and reject a packet outright when a field lies beyond its end (classic BPF returns
//! 0 on an out-of-bounds load).

use std::collections::HashMap;

use tap_common::filter::{MAX_STEPS, TARGET_ACCEPT, TARGET_REJECT, VLAN_ANY, dir, l4, op};

use super::{
    ast::Expr,
    compile::{
        Bx, CompiledFilter, Values, lower, lpm4_entries, lpm6_entries, mac_entries, port_masks,
    },
};

/// Bytes of the packet the kernel's filter sees.
pub const WINDOW: usize = 128;

/// A field value to look up in a set.
#[derive(Debug, Clone, Copy)]
enum Field {
    A4([u8; 4]),
    A6([u8; 16]),
    Port(u16),
    Mac([u8; 6]),
}

/// The packet's first [`WINDOW`] bytes.
struct Window<'a>(&'a [u8]);

impl Window<'_> {
    fn u8_at(&self, off: usize) -> Option<u8> {
        self.0.get(off).copied()
    }

    fn u16_at(&self, off: usize) -> Option<u16> {
        Some(u16::from(self.u8_at(off)?) << 8 | u16::from(self.u8_at(off + 1)?))
    }

    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        self.0
            .get(off..off + N)
            .map(|b| b.try_into().expect("N bytes"))
    }
}

/// `None`: a needed byte is missing, the packet is rejected outright.
type Truth = Option<bool>;

fn l4_bit(proto: u8) -> u32 {
    match proto {
        6 => l4::TCP,
        17 => l4::UDP,
        132 => l4::SCTP,
        _ => 0,
    }
}

fn by_dir(d: u8, src: impl Fn() -> Truth, dst: impl Fn() -> Truth) -> Truth {
    match d {
        dir::SRC => src(),
        dir::DST => dst(),
        dir::SRC_AND_DST => {
            if src()? {
                dst()
            } else {
                Some(false)
            }
        }
        _ => {
            if src()? {
                Some(true)
            } else {
                dst()
            }
        }
    }
}

/// One atom, as the kernel tests it; `contains` answers set membership.
fn test(node: (u8, u8, u8, u32), w: &Window<'_>, contains: &dyn Fn(Field) -> bool) -> Truth {
    let (op, depth, d, arg) = node;
    let l2 = usize::from(depth & 3) * 4;
    let l3 = l2 + 14;
    let ethertype_is = |v: u32| w.u16_at(l2 + 12).map(|t| u32::from(t) == v);
    match op {
        op::TRUE => Some(true),
        op::ETHERTYPE => ethertype_is(arg),
        op::VLAN => {
            let tpid = w.u16_at(l2 + 12)?;
            if !matches!(tpid, 0x8100 | 0x88a8 | 0x9100) {
                return Some(false);
            }
            if arg == VLAN_ANY {
                return Some(true);
            }
            w.u16_at(l2 + 14).map(|tci| u32::from(tci & 0x0fff) == arg)
        }
        op::IP4_PROTO => {
            if !ethertype_is(0x0800)? {
                return Some(false);
            }
            w.u8_at(l3 + 9).map(|p| u32::from(p) == arg)
        }
        op::IP6_PROTO => {
            if !ethertype_is(0x86dd)? {
                return Some(false);
            }
            match w.u8_at(l3 + 6)? {
                nh if u32::from(nh) == arg => Some(true),
                44 => w.u8_at(l3 + 40).map(|p| u32::from(p) == arg),
                _ => Some(false),
            }
        }
        op::ADDR4 | op::ARP_ADDR => {
            let (ethertype, src, dst) = if op == op::ADDR4 {
                (0x0800, l3 + 12, l3 + 16)
            } else {
                (arg, l3 + 14, l3 + 24)
            };
            if !ethertype_is(ethertype)? {
                return Some(false);
            }
            let at = |off| w.bytes::<4>(off).map(|a| contains(Field::A4(a)));
            by_dir(d, || at(src), || at(dst))
        }
        op::ADDR6 => {
            if !ethertype_is(0x86dd)? {
                return Some(false);
            }
            let at = |off| w.bytes::<16>(off).map(|a| contains(Field::A6(a)));
            by_dir(d, || at(l3 + 8), || at(l3 + 24))
        }
        op::PORT4 => {
            if !ethertype_is(0x0800)? {
                return Some(false);
            }
            if l4_bit(w.u8_at(l3 + 9)?) & arg == 0 {
                return Some(false);
            }
            if w.u16_at(l3 + 6)? & 0x1fff != 0 {
                return Some(false);
            }
            let l4 = l3 + usize::from(w.u8_at(l3)? & 0x0f) * 4;
            let at = |off| w.u16_at(off).map(|p| contains(Field::Port(p)));
            by_dir(d, || at(l4), || at(l4 + 2))
        }
        op::PORT6 => {
            if !ethertype_is(0x86dd)? {
                return Some(false);
            }
            if l4_bit(w.u8_at(l3 + 6)?) & arg == 0 {
                return Some(false);
            }
            let at = |off| w.u16_at(off).map(|p| contains(Field::Port(p)));
            by_dir(d, || at(l3 + 40), || at(l3 + 42))
        }
        op::ETHER_ADDR => {
            let at = |off| w.bytes::<6>(off).map(|m| contains(Field::Mac(m)));
            by_dir(d, || at(6), || at(0))
        }
        op::PROTOCHAIN => protochain(w, l2, arg),
        _ => Some(false),
    }
}

/// The kernel's `protochain`: the IPv4 protocol, or the IPv6 chain through hop-by-hop, routing,
/// fragment, destination options and AH headers (at most 6), within the window.
fn protochain(w: &Window<'_>, l2: usize, want: u32) -> Truth {
    let l3 = l2 + 14;
    match w.u16_at(l2 + 12)? {
        0x0800 => w.u8_at(l3 + 9).map(|p| u32::from(p) == want),
        0x86dd => {
            let mut nh = w.u8_at(l3 + 6)?;
            let mut off = l3 + 40;
            for _ in 0..6 {
                if u32::from(nh) == want {
                    return Some(true);
                }
                let len = match nh {
                    0 | 43 | 60 => match w.u8_at(off + 1) {
                        Some(l) => (usize::from(l) + 1) * 8,
                        None => return Some(false),
                    },
                    44 => 8,
                    51 => match w.u8_at(off + 1) {
                        Some(l) => (usize::from(l) + 2) * 4,
                        None => return Some(false),
                    },
                    _ => return Some(false),
                };
                match w.u8_at(off) {
                    Some(next) => nh = next,
                    None => return Some(false),
                }
                off += len;
            }
            Some(false)
        }
        _ => Some(false),
    }
}

fn window(packet: &[u8]) -> Window<'_> {
    Window(&packet[..packet.len().min(WINDOW)])
}

fn keep4(a: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        a & (u32::MAX << (32 - u32::from(len)))
    }
}

fn keep6(a: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        a & (u128::MAX << (128 - u32::from(len)))
    }
}

/// The compiled filter's map contents, as the kernel's lookups see them.
struct Maps {
    addr4: HashMap<(u32, u8), u64>,
    addr6: HashMap<(u128, u8), u64>,
    ports: HashMap<u16, u64>,
    macs: HashMap<[u8; 6], u64>,
}

impl Maps {
    fn new(c: &CompiledFilter) -> Self {
        Self {
            addr4: lpm4_entries(&c.addr4_sets)
                .into_iter()
                .map(|(a, l, m)| ((u32::from_be_bytes(a), l), m))
                .collect(),
            addr6: lpm6_entries(&c.addr6_sets)
                .into_iter()
                .map(|(a, l, m)| ((u128::from_be_bytes(a), l), m))
                .collect(),
            ports: port_masks(&c.port_sets).into_iter().collect(),
            macs: mac_entries(&c.mac_sets).into_iter().collect(),
        }
    }

    /// The lookup mask of `field` (longest prefix match for addresses).
    fn mask(&self, field: Field) -> u64 {
        match field {
            Field::A4(a) => {
                let a = u32::from_be_bytes(a);
                (0..=32)
                    .rev()
                    .find_map(|l| self.addr4.get(&(keep4(a, l), l)))
                    .copied()
                    .unwrap_or(0)
            }
            Field::A6(a) => {
                let a = u128::from_be_bytes(a);
                (0..=128)
                    .rev()
                    .find_map(|l| self.addr6.get(&(keep6(a, l), l)))
                    .copied()
                    .unwrap_or(0)
            }
            Field::Port(p) => self.ports.get(&p).copied().unwrap_or(0),
            Field::Mac(m) => self.macs.get(&m).copied().unwrap_or(0),
        }
    }
}

/// A compiled filter with its map contents, ready to evaluate many packets.
pub struct Evaluator<'a> {
    filter: &'a CompiledFilter,
    maps: Maps,
}

impl<'a> Evaluator<'a> {
    #[must_use]
    pub fn new(filter: &'a CompiledFilter) -> Self {
        Self {
            filter,
            maps: Maps::new(filter),
        }
    }

    /// Walks the graph over `packet` as the kernel does: `Some(rule)` when a rule accepts it,
    /// `None` when it is rejected (including a missing byte, or a walk longer than
    /// [`MAX_STEPS`]).
    #[must_use]
    pub fn eval(&self, packet: &[u8]) -> Option<u16> {
        let c = self.filter;
        let w = window(packet);
        let mut target = c.entry;
        for _ in 0..=MAX_STEPS {
            if target == TARGET_REJECT {
                return None;
            }
            if target & TARGET_ACCEPT != 0 {
                return Some(target & !TARGET_ACCEPT);
            }
            let node = c.nodes.get(usize::from(target))?;
            let set = node.set;
            let contains = |f: Field| self.maps.mask(f) & (1u64 << (set & 63)) != 0;
            let atom = (node.op, node.depth, node.dir, node.arg);
            target = if test(atom, &w, &contains)? {
                node.jt
            } else {
                node.jf
            };
        }
        None
    }
}

/// [`Evaluator::eval`] for one packet.
#[must_use]
pub fn eval(c: &CompiledFilter, packet: &[u8]) -> Option<u16> {
    Evaluator::new(c).eval(packet)
}

/// Whether `values` holds `field`.
fn holds(values: Option<&Values>, field: Field) -> bool {
    match (values, field) {
        (Some(Values::Lpm4(v)), Field::A4(a)) => {
            let a = u32::from_be_bytes(a);
            v.iter()
                .any(|&(p, l)| keep4(a, l) == keep4(u32::from_be_bytes(p), l))
        }
        (Some(Values::Lpm6(v)), Field::A6(a)) => {
            let a = u128::from_be_bytes(a);
            v.iter()
                .any(|&(p, l)| keep6(a, l) == keep6(u128::from_be_bytes(p), l))
        }
        (Some(Values::Ports(v)), Field::Port(p)) => v.iter().any(|r| r.contains(&p)),
        (Some(Values::Macs(v)), Field::Mac(m)) => v.contains(&m),
        _ => false,
    }
}

fn eval_bx(bx: &Bx, w: &Window<'_>) -> Truth {
    match bx {
        Bx::Const(c) => Some(*c),
        Bx::Leaf(l) => test((l.op, l.depth, l.dir, l.arg), w, &|f| {
            holds(l.values.as_ref(), f)
        }),
        Bx::Not(x) => eval_bx(x, w).map(|v| !v),
        Bx::And(xs) => {
            for x in xs {
                if !eval_bx(x, w)? {
                    return Some(false);
                }
            }
            Some(true)
        }
        Bx::Or(xs) => {
            for x in xs {
                if eval_bx(x, w)? {
                    return Some(true);
                }
            }
            Some(false)
        }
    }
}

/// Evaluates `expr` directly over `packet`, atoms in libpcap's order. `None`: the packet is
/// rejected outright (a needed byte is missing).
#[must_use]
pub fn eval_expr(expr: &Expr, packet: &[u8]) -> Option<bool> {
    eval_bx(&lower(expr), &window(packet))
}
