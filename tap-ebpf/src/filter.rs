//! Classification: walks the active slot's decision graph over a window of the packet's first
//! bytes, reading fields at the offsets libpcap's generated code reads them.
//!
//! The header window is copied into per-CPU scratch memory first (one helper call, whatever the
//! hook), so the same code serves XDP and TC, and every read is a masked index into a fixed-size
//! buffer that the verifier accepts without per-field packet-pointer proofs.

use core::ffi::c_void;

use aya_ebpf::{helpers::generated::bpf_loop, maps::lpm_trie::Key};
use tap_common::filter::{
    Addr4Data, Addr6Data, FilterNode, FilterSlot, MAX_NODES, MAX_RULES, MAX_STEPS, MacKey,
    TARGET_ACCEPT, TARGET_REJECT, dir, l4, op,
};

use crate::{
    TAP_FILTER_ADDR4, TAP_FILTER_ADDR6, TAP_FILTER_CTL, TAP_FILTER_MACS, TAP_FILTER_NODES,
    TAP_FILTER_PORTS, TAP_FILTER_SLOTS, TAP_RULE_HITS,
};

/// Bytes of the packet the filter can see. Every offset libpcap reads for our atoms lies below
/// 96 (two VLAN tags + IPv4 with options + ports); 128 leaves room.
pub const WINDOW: usize = 128;

/// The packet's first bytes, in scratch memory.
#[derive(Clone, Copy)]
pub struct Window {
    pub bytes: *const [u8; WINDOW],
    /// Bytes valid in `bytes` (the packet may be shorter than the window).
    pub len: u32,
}

/// Result of testing one atom.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Truth {
    False,
    True,
    /// A byte the test needs lies beyond the packet: classic BPF rejects the packet outright.
    Reject,
}

impl Window {
    #[inline(always)]
    pub(crate) fn u8_at(&self, off: u32) -> Option<u8> {
        if off >= self.len || off as usize >= WINDOW {
            return None;
        }
        // SAFETY: off < WINDOW; the mask keeps the verifier convinced.
        Some(unsafe { (*self.bytes)[off as usize & (WINDOW - 1)] })
    }

    #[inline(always)]
    pub(crate) fn u16_at(&self, off: u32) -> Option<u16> {
        Some(u16::from(self.u8_at(off)?) << 8 | u16::from(self.u8_at(off + 1)?))
    }

    #[inline(always)]
    pub(crate) fn bytes_at<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        if off as usize + N > WINDOW || off + N as u32 > self.len {
            return None;
        }
        let mut out = [0u8; N];
        let mut i = 0;
        while i < N {
            // SAFETY: off + i < WINDOW by the check above; masked for the verifier.
            out[i] = unsafe { (*self.bytes)[(off as usize + i) & (WINDOW - 1)] };
            i += 1;
        }
        Some(out)
    }
}

/// Outcome of the filter for one packet.
pub enum Verdict {
    /// Selected by rule number `rule`.
    Match(u32),
    NoMatch,
    /// The graph could not be walked (too long, missing node): counted, treated as no match.
    Error,
}

/// Evaluates the active filter; `window` loads the header window (only when a filter is set),
/// and is left in `loaded` for the copy that follows a match.
#[inline(always)]
pub fn classify(window: impl FnOnce() -> Option<Window>, loaded: &mut Option<Window>) -> Verdict {
    let Some(ctl) = TAP_FILTER_CTL.get(0) else {
        return Verdict::Error;
    };
    // SAFETY: a u32 read of a map value; user space flips it with one map update.
    let slot = unsafe { core::ptr::read_volatile(&ctl.active) } & 1;
    let Some(info) = TAP_FILTER_SLOTS.get(slot) else {
        return Verdict::Error;
    };
    let info: &FilterSlot = info;
    if info.enabled == 0 {
        hit(slot, 0);
        return Verdict::Match(0);
    }
    let Some(window) = window() else {
        return Verdict::Error;
    };
    *loaded = Some(window);
    let mut walk = Walk {
        window,
        slot,
        target: info.entry,
        rejected: 0,
        error: 0,
    };
    // bpf_loop (5.17+) has the verifier check one step once, instead of unrolling MAX_STEPS
    // copies of the whole atom switch.
    // SAFETY: `step` has the callback signature bpf_loop expects and `walk` outlives the call.
    unsafe {
        bpf_loop(MAX_STEPS, step as *mut c_void, (&raw mut walk).cast(), 0);
    }
    let target = walk.target;
    if walk.error != 0 {
        Verdict::Error
    } else if walk.rejected != 0 || target == TARGET_REJECT {
        Verdict::NoMatch
    } else if target & TARGET_ACCEPT != 0 {
        let rule = u32::from(target & !TARGET_ACCEPT);
        hit(slot, rule);
        Verdict::Match(rule)
    } else {
        // Steps exhausted: the graph is longer than the compiler allows.
        Verdict::Error
    }
}

/// State of a graph walk, shared with the [`step`] callback.
struct Walk {
    window: Window,
    slot: u32,
    target: u16,
    rejected: u8,
    error: u8,
}

/// One step of the walk; returns 1 to stop.
extern "C" fn step(_index: u32, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer `classify` gave it, to a live `Walk`.
    let walk = unsafe { &mut *ctx.cast::<Walk>() };
    let target = walk.target;
    if target & TARGET_ACCEPT != 0 {
        return 1;
    }
    let slot = walk.slot & 1;
    let Some(node) = TAP_FILTER_NODES.get(slot * MAX_NODES + (u32::from(target) & (MAX_NODES - 1)))
    else {
        walk.error = 1;
        return 1;
    };
    let next = match test(node, slot as u8, &walk.window) {
        Truth::True => node.jt,
        Truth::False => node.jf,
        Truth::Reject => {
            walk.rejected = 1;
            return 1;
        }
    };
    walk.target = next;
    // Accept and reject targets both carry TARGET_ACCEPT's bit: stop here rather than spend a
    // step finding out.
    i64::from(next & TARGET_ACCEPT != 0)
}

#[inline(always)]
fn hit(slot: u32, rule: u32) {
    if let Some(c) = TAP_RULE_HITS.get_ptr_mut(slot * MAX_RULES + (rule & (MAX_RULES - 1))) {
        // SAFETY: per-CPU slot.
        unsafe { *c += 1 };
    }
}

/// Folds a source and a destination test per the direction.
#[inline(always)]
fn by_dir(d: u8, src: impl Fn() -> Option<bool>, dst: impl Fn() -> Option<bool>) -> Truth {
    // libpcap tests the source first, then the destination; a missing byte rejects.
    let r = match d {
        dir::SRC => src(),
        dir::DST => dst(),
        dir::SRC_AND_DST => match src() {
            Some(true) => dst(),
            other => other,
        },
        _ => match src() {
            Some(false) => dst(),
            other => other,
        },
    };
    match r {
        Some(true) => Truth::True,
        Some(false) => Truth::False,
        None => Truth::Reject,
    }
}

#[inline(always)]
fn ethertype_is(w: &Window, l2: u32, value: u16) -> Option<bool> {
    Some(w.u16_at(l2 + 12)? == value)
}

#[inline(always)]
fn lookup4(slot: u8, addr: [u8; 4], set: u8) -> bool {
    let key = Key::new(
        40,
        Addr4Data {
            slot,
            addr,
            _pad: [0; 3],
        },
    );
    TAP_FILTER_ADDR4
        .get(&key)
        .is_some_and(|m| m & (1u64 << (set & 63)) != 0)
}

#[inline(always)]
fn lookup6(slot: u8, addr: [u8; 16], set: u8) -> bool {
    let key = Key::new(
        136,
        Addr6Data {
            slot,
            addr,
            _pad: [0; 3],
        },
    );
    TAP_FILTER_ADDR6
        .get(&key)
        .is_some_and(|m| m & (1u64 << (set & 63)) != 0)
}

#[inline(always)]
fn lookup_port(slot: u8, port: u16, set: u8) -> bool {
    TAP_FILTER_PORTS
        .get(u32::from(slot & 1) * 65536 + u32::from(port))
        .is_some_and(|m| m & (1u64 << (set & 63)) != 0)
}

#[inline(always)]
fn lookup_mac(slot: u8, mac: [u8; 6], set: u8) -> bool {
    let key = MacKey { slot, _pad: 0, mac };
    // SAFETY: the value is read, not kept.
    unsafe { TAP_FILTER_MACS.get(&key) }.is_some_and(|m| m & (1u64 << (set & 63)) != 0)
}

fn l4_bit(proto: u8) -> u32 {
    match proto {
        6 => l4::TCP,
        17 => l4::UDP,
        132 => l4::SCTP,
        _ => 0,
    }
}

/// Tests one atom. `l2` is the VLAN-shifted link-layer offset (4 bytes per depth, as libpcap).
#[inline(always)]
fn test(node: &FilterNode, slot: u8, w: &Window) -> Truth {
    let l2 = u32::from(node.depth & 3) * 4;
    let l3 = l2 + 14;
    let set = node.set;
    let tri = |r: Option<bool>| match r {
        Some(true) => Truth::True,
        Some(false) => Truth::False,
        None => Truth::Reject,
    };
    // Runs `rest` when the EtherType matches; a missing EtherType rejects.
    macro_rules! when_ethertype {
        ($value:expr, $rest:expr) => {
            match ethertype_is(w, l2, $value) {
                None => Truth::Reject,
                Some(false) => Truth::False,
                Some(true) => $rest,
            }
        };
    }
    match node.op {
        op::TRUE => Truth::True,
        op::ETHERTYPE => tri(ethertype_is(w, l2, node.arg as u16)),
        op::VLAN => {
            let Some(tpid) = w.u16_at(l2 + 12) else {
                return Truth::Reject;
            };
            if tpid != 0x8100 && tpid != 0x88a8 && tpid != 0x9100 {
                return Truth::False;
            }
            if node.arg == tap_common::filter::VLAN_ANY {
                return Truth::True;
            }
            tri(w
                .u16_at(l2 + 14)
                .map(|tci| u32::from(tci & 0x0fff) == node.arg))
        }
        op::IP4_PROTO => when_ethertype!(
            0x0800,
            tri(w.u8_at(l3 + 9).map(|p| u32::from(p) == node.arg))
        ),
        op::IP6_PROTO => when_ethertype!(0x86dd, {
            match w.u8_at(l3 + 6) {
                None => Truth::Reject,
                Some(nh) if u32::from(nh) == node.arg => Truth::True,
                Some(44) => tri(w.u8_at(l3 + 40).map(|p| u32::from(p) == node.arg)),
                Some(_) => Truth::False,
            }
        }),
        op::ADDR4 => when_ethertype!(
            0x0800,
            by_dir(
                node.dir,
                || w.bytes_at::<4>(l3 + 12).map(|a| lookup4(slot, a, set)),
                || w.bytes_at::<4>(l3 + 16).map(|a| lookup4(slot, a, set)),
            )
        ),
        op::ADDR6 => when_ethertype!(
            0x86dd,
            by_dir(
                node.dir,
                || w.bytes_at::<16>(l3 + 8).map(|a| lookup6(slot, a, set)),
                || w.bytes_at::<16>(l3 + 24).map(|a| lookup6(slot, a, set)),
            )
        ),
        op::ARP_ADDR => when_ethertype!(
            node.arg as u16,
            by_dir(
                node.dir,
                || w.bytes_at::<4>(l3 + 14).map(|a| lookup4(slot, a, set)),
                || w.bytes_at::<4>(l3 + 24).map(|a| lookup4(slot, a, set)),
            )
        ),
        op::PORT4 => when_ethertype!(0x0800, {
            let Some(proto) = w.u8_at(l3 + 9) else {
                return Truth::Reject;
            };
            if l4_bit(proto) & node.arg == 0 {
                return Truth::False;
            }
            let Some(frag) = w.u16_at(l3 + 6) else {
                return Truth::Reject;
            };
            if frag & 0x1fff != 0 {
                return Truth::False;
            }
            let Some(vihl) = w.u8_at(l3) else {
                return Truth::Reject;
            };
            let l4 = l3 + u32::from(vihl & 0x0f) * 4;
            by_dir(
                node.dir,
                || w.u16_at(l4).map(|p| lookup_port(slot, p, set)),
                || w.u16_at(l4 + 2).map(|p| lookup_port(slot, p, set)),
            )
        }),
        op::PORT6 => when_ethertype!(0x86dd, {
            let Some(nh) = w.u8_at(l3 + 6) else {
                return Truth::Reject;
            };
            if l4_bit(nh) & node.arg == 0 {
                return Truth::False;
            }
            by_dir(
                node.dir,
                || w.u16_at(l3 + 40).map(|p| lookup_port(slot, p, set)),
                || w.u16_at(l3 + 42).map(|p| lookup_port(slot, p, set)),
            )
        }),
        op::ETHER_ADDR => by_dir(
            node.dir,
            || w.bytes_at::<6>(6).map(|m| lookup_mac(slot, m, set)),
            || w.bytes_at::<6>(0).map(|m| lookup_mac(slot, m, set)),
        ),
        op::PROTOCHAIN => protochain(w, l2, node.arg),
        _ => Truth::False,
    }
}

/// `protochain`: the header chain walked as libpcap walks it: for IPv4 through AH (51) headers,
/// for IPv6 through hop-by-hop (0), routing (43), fragment (44), destination options (60) and
/// AH (51) headers, within the window. A chain that runs past the packet rejects it, as libpcap's
/// out-of-bounds load does.
#[inline(always)]
fn protochain(w: &Window, l2: u32, want: u32) -> Truth {
    let l3 = l2 + 14;
    let (mut nh, mut off) = match w.u16_at(l2 + 12) {
        None => return Truth::Reject,
        Some(0x0800) => {
            let (Some(vihl), Some(p)) = (w.u8_at(l3), w.u8_at(l3 + 9)) else {
                return Truth::Reject;
            };
            (p, l3 + u32::from(vihl & 0x0f) * 4)
        }
        Some(0x86dd) => match w.u8_at(l3 + 6) {
            None => return Truth::Reject,
            Some(p) => (p, l3 + 40),
        },
        Some(_) => return Truth::False,
    };
    let v6 = off >= l3 + 40 && w.u16_at(l2 + 12) == Some(0x86dd);
    let mut i = 0;
    while i < 8 {
        if u32::from(nh) == want {
            return Truth::True;
        }
        let len = match nh {
            // libpcap advances over a fragment header by its second byte too (reserved, so
            // normally 0: 8 bytes).
            0 | 43 | 44 | 60 if v6 => match w.u8_at(off + 1) {
                Some(l) => (u32::from(l) + 1) * 8,
                None => return Truth::Reject,
            },
            51 => match w.u8_at(off + 1) {
                Some(l) => (u32::from(l) + 2) * 4,
                None => return Truth::Reject,
            },
            _ => return Truth::False,
        };
        match w.u8_at(off) {
            Some(next) => nh = next,
            None => return Truth::Reject,
        }
        off += len;
        i += 1;
    }
    Truth::False
}
