//! Load-time configuration shared by the loader and the programs.

/// Largest frame captured whole: jumbo frames of 9,216 bytes.
pub const MAX_FRAME: u32 = 9216;

/// Default snap length, as tcpdump's (262,144 bytes) clamped to what we can carry.
pub const DEFAULT_SNAPLEN: u32 = MAX_FRAME;

/// Ring record payload size classes, in bytes: powers of two from 64 to 8 KiB, plus 1,536 for
/// the frames of a 1500-byte MTU (a quarter less ring than 2 KiB) and [`MAX_FRAME`] for jumbo
/// frames. A record for a packet of `n` captured bytes is `size_of::<PacketHeader>() + class(n)`
/// long, so small frames take small slots.
pub const SIZE_CLASSES: [u32; 10] = [64, 128, 256, 512, 1024, 1536, 2048, 4096, 8192, MAX_FRAME];

/// Default ring size in bytes (a power of two and a multiple of the page size).
pub const DEFAULT_RING_SIZE: u32 = 32 << 20;

/// Smallest payload class holding `len` bytes, or `None` above the largest.
pub const fn size_class(len: u32) -> Option<u32> {
    let mut i = 0;
    while i < SIZE_CLASSES.len() {
        if len <= SIZE_CLASSES[i] {
            return Some(SIZE_CLASSES[i]);
        }
        i += 1;
    }
    None
}

/// Decapsulation switches (bits of the `TAP_DECAP` global).
pub mod decap {
    /// VXLAN on the UDP port in `TAP_VXLAN_PORT` (4789 by default).
    pub const VXLAN: u32 = 1;
    /// GENEVE on UDP 6081.
    pub const GENEVE: u32 = 2;
    /// GRE carrying Ethernet.
    pub const GRE: u32 = 4;
    /// ERSPAN type II and III (over GRE).
    pub const ERSPAN: u32 = 8;
}

/// Default VXLAN UDP port (IANA).
pub const VXLAN_PORT: u16 = 4789;
/// GENEVE UDP port (IANA).
pub const GENEVE_PORT: u16 = 6081;
