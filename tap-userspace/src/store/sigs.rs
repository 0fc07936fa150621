//! Packet signatures and the table that maps them to flows: the part of the index that runs
//! for every packet, so it is built for the cache.
//!
//! A signature ([`Sig`]) is the fields of a plain IPv4 or IPv6 packet that decide its flow and
//! direction, as they lie in the frame: two packets with the same signature have the same key
//! and direction, so the key is parsed once per flow and direction, and a signature says
//! everything the key needs ([`key_of`] parses a frame made from it).
//!
//! The table ([`SigTable`]) is open addressing with linear probing over slots of one cache line
//! each (the signature, the flow and its direction), hashed with a multiply-shift over the
//! signature's words. A lookup costs one line when the table is larger than the caches, and the
//! indexer asks for that line some packets before it needs it ([`prefetch`]).

use super::flow::{self, Parsed};

/// See the module notes: `[tunnel kind << 40 | tunnel id << 8 | family, ...]`.
pub type Sig = [u64; 6];

#[inline]
fn be32(f: &[u8], at: usize) -> u64 {
    f.get(at..at + 4).map_or(0, |b| {
        u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    })
}

/// Equality of two signatures without a call to `memcmp` (this runs for every packet).
#[inline]
#[must_use]
pub fn same(a: &Sig, b: &Sig) -> bool {
    a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The signature of an untagged IPv4 (no options, not a later fragment) or IPv6 (no extension
/// headers) packet of TCP, UDP, SCTP, ICMP or `ICMPv6` whose ports (types) are in the frame;
/// `None` for anything else, which is parsed in full.
#[inline]
#[must_use]
pub fn signature(f: &[u8], tunnel: (u8, u32)) -> Option<Sig> {
    let t = u64::from(tunnel.0) << 40 | u64::from(tunnel.1) << 8;
    match (f.get(12), f.get(13)) {
        (Some(0x08), Some(0x00))
            if f.len() >= 38 && f[14] == 0x45 && (f[20] & 0x1f) | f[21] == 0 =>
        {
            let proto = f[23];
            if !matches!(proto, 1 | 6 | 17 | 132) {
                return None;
            }
            // ICMP: the type and code only (not the checksum after them).
            let l4 = if proto == 1 {
                be32(f, 34) >> 16
            } else {
                be32(f, 34)
            };
            Some([
                t | 4,
                u64::from(proto),
                be32(f, 26) << 32 | be32(f, 30),
                l4,
                0,
                0,
            ])
        }
        (Some(0x86), Some(0xdd)) if f.len() >= 58 => {
            let nh = f[20];
            if !matches!(nh, 6 | 17 | 58 | 132) {
                return None;
            }
            let w = |at| be32(f, at) << 32 | be32(f, at + 4);
            let l4 = if nh == 58 {
                be32(f, 54) >> 16
            } else {
                be32(f, 54)
            };
            Some([t | 6, u64::from(nh) << 32 | l4, w(22), w(30), w(38), w(46)])
        }
        _ => None,
    }
}

/// The key and direction of the packets of signature `s`: the key of the smallest frame that
/// has this signature (a signature holds every field the key is made of).
#[must_use]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the words hold fields of these widths"
)]
pub fn key_of(s: &Sig) -> Parsed {
    let (kind, id) = ((s[0] >> 40) as u8, (s[0] >> 8) as u32);
    let mut f = [0u8; 58];
    if s[0] & 0xff == 4 {
        f[12..15].copy_from_slice(&[0x08, 0x00, 0x45]);
        let proto = s[1] as u8;
        f[23] = proto;
        f[26..34].copy_from_slice(&s[2].to_be_bytes());
        if proto == 1 {
            f[34..36].copy_from_slice(&(s[3] as u16).to_be_bytes());
        } else {
            f[34..38].copy_from_slice(&(s[3] as u32).to_be_bytes());
        }
        flow::parse(&f[..38], kind, id)
    } else {
        f[12..15].copy_from_slice(&[0x86, 0xdd, 0x60]);
        let nh = (s[1] >> 32) as u8;
        f[20] = nh;
        for (i, w) in s[2..].iter().enumerate() {
            f[22 + 8 * i..30 + 8 * i].copy_from_slice(&w.to_be_bytes());
        }
        let l4 = s[1] as u32;
        if nh == 58 {
            f[54..56].copy_from_slice(&(l4 as u16).to_be_bytes());
        } else {
            f[54..58].copy_from_slice(&l4.to_be_bytes());
        }
        flow::parse(&f, kind, id)
    }
}

/// Multiply-shift over the words (only the top bits are used: [`SigTable`] shifts).
#[inline]
#[must_use]
pub fn hash(s: &Sig) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let h = s
        .iter()
        .fold(0u64, |h, &w| (h ^ w).wrapping_mul(K).rotate_left(23));
    (h ^ (h >> 31)).wrapping_mul(K)
}

/// Asks the CPU for the cache line at `p` (a hint: it never faults, whatever `p` is).
#[inline]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults and touches no memory the program can
    // see, whatever the address; `p` is not dereferenced.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// A slot: a signature, its flow and direction; one cache line.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Slot {
    sig: Sig,
    /// [`EMPTY`]: a free slot.
    flow: u32,
    forward: bool,
}

const EMPTY: u32 = u32::MAX;

const FREE: Slot = Slot {
    sig: [0; 6],
    flow: EMPTY,
    forward: false,
};

/// `n` free slots. A large table asks for huge pages before its memory is touched: with 4 KiB
/// pages, most lookups in a table of many flows would miss the TLB as well as the cache.
fn slots(n: usize) -> Vec<Slot> {
    let mut v: Vec<Slot> = Vec::with_capacity(n);
    let bytes = n * size_of::<Slot>();
    if bytes >= 4 << 20 {
        let start = v.as_mut_ptr() as usize;
        let aligned = start.next_multiple_of(4096);
        let len = (bytes - (aligned - start)) & !4095;
        // SAFETY: the range lies inside the vector's own allocation, which nothing has read or
        // written yet; the advice changes how the kernel backs it, never its contents. A
        // failure (no transparent huge pages) leaves 4 KiB pages, which is fine.
        unsafe {
            libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
    }
    v.resize(n, FREE);
    v
}

/// Slots of a new table (a power of two).
const INITIAL: usize = 1 << 12;

/// Signature → (flow, direction), see the module notes.
#[derive(Debug)]
pub struct SigTable {
    slots: Vec<Slot>,
    /// `64 - log2(slots)`: a hash's top bits choose its first slot.
    shift: u32,
    len: usize,
}

impl Default for SigTable {
    fn default() -> Self {
        Self {
            slots: slots(INITIAL),
            shift: 64 - INITIAL.trailing_zeros(),
            len: 0,
        }
    }
}

impl SigTable {
    /// Signatures held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every signature (keeps the memory).
    pub fn clear(&mut self) {
        if self.len > 0 {
            self.slots.fill(FREE);
            self.len = 0;
        }
    }

    #[inline]
    fn first(&self, h: u64) -> usize {
        usize::try_from(h >> self.shift).unwrap_or(0)
    }

    /// Asks for the line of the first slot of hash `h` (see [`prefetch`]).
    #[inline]
    pub fn prefetch(&self, h: u64) {
        prefetch(self.slots.as_ptr().wrapping_add(self.first(h)));
    }

    /// The flow and direction of `s` (hash `h`), if it is held.
    #[inline]
    #[must_use]
    pub fn get(&self, s: &Sig, h: u64) -> Option<(u32, bool)> {
        let mask = self.slots.len() - 1;
        let mut i = self.first(h);
        loop {
            let slot = &self.slots[i];
            if slot.flow == EMPTY {
                return None;
            }
            if same(&slot.sig, s) {
                return Some((slot.flow, slot.forward));
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `s` (hash `h`, not held yet).
    pub fn insert(&mut self, s: &Sig, h: u64, hit: (u32, bool)) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        self.place(
            Slot {
                sig: *s,
                flow: hit.0,
                forward: hit.1,
            },
            h,
        );
        self.len += 1;
    }

    fn place(&mut self, slot: Slot, h: u64) {
        let mask = self.slots.len() - 1;
        let mut i = self.first(h);
        while self.slots[i].flow != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = slot;
    }

    fn grow(&mut self) {
        let n = self.slots.len() * 2;
        let old = std::mem::replace(&mut self.slots, slots(n));
        self.shift = 64 - n.trailing_zeros();
        for s in old.into_iter().filter(|s| s.flow != EMPTY) {
            self.place(s, hash(&s.sig));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(proto: u8, l4: [u8; 4], tunnel: (u8, u32)) -> (Vec<u8>, (u8, u32)) {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x20, 0, 64, proto, 0, 0]);
        f.extend_from_slice(&[192, 0, 2, 200, 198, 51, 100, 3]);
        f.extend_from_slice(&l4);
        f.extend_from_slice(&[0xaa; 16]);
        (f, tunnel)
    }

    fn v6(nh: u8, l4: [u8; 4]) -> (Vec<u8>, (u8, u32)) {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
        f.extend_from_slice(&[0x60, 0, 0, 0, 0, 8, nh, 64]);
        f.extend_from_slice(
            &"2001:db8::ff"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        f.extend_from_slice(
            &"2001:db8::1:2"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        f.extend_from_slice(&l4);
        f.extend_from_slice(&[0x55; 8]);
        (f, (0, 0))
    }

    #[test]
    fn a_signature_says_what_the_key_needs() {
        let frames = [
            v4(17, [0x13, 0x88, 0, 53], (0, 0)),
            v4(6, [0, 80, 0xc3, 0x50], (0, 0)),
            v4(132, [0, 1, 0, 2], (1, 4242)),
            v4(1, [8, 0, 0x12, 0x34], (0, 0)),
            v4(1, [0, 0, 0x12, 0x34], (3, 7)),
            v4(1, [3, 3, 0, 0], (0, 0)),
            v6(17, [0, 53, 0x13, 0x88]),
            v6(58, [128, 0, 1, 2]),
            v6(58, [129, 0, 1, 2]),
            v6(6, [0xff, 0xff, 0, 1]),
        ];
        for (f, t) in &frames {
            let s = signature(f, *t).expect("a plain packet has a signature");
            assert_eq!(key_of(&s), flow::parse(f, t.0, t.1), "{f:?}");
        }
    }

    #[test]
    fn the_table_finds_what_it_holds_across_growth() {
        let mut t = SigTable::default();
        let sig = |i: u64| [4, 17, i * 7919, i, 0, 0];
        for i in 0..20_000u64 {
            let s = sig(i);
            assert_eq!(t.get(&s, hash(&s)), None);
            t.insert(&s, hash(&s), (u32::try_from(i).unwrap(), i % 2 == 0));
        }
        assert_eq!(t.len(), 20_000);
        for i in 0..20_000u64 {
            let s = sig(i);
            assert_eq!(
                t.get(&s, hash(&s)),
                Some((u32::try_from(i).unwrap(), i % 2 == 0))
            );
        }
        t.clear();
        assert!(t.is_empty());
        assert_eq!(t.get(&sig(5), hash(&sig(5))), None);
    }
}
