//! Load-time configuration shared by the loader and the programs.

/// Largest payload of a fixed-size ring record class, in bytes: jumbo frames of 9,216 bytes.
/// Longer captures take a record reserved at its exact size (see [`MAX_SNAPLEN`]).
pub const MAX_CLASS: u32 = 9216;

/// Largest snap length, in bytes: tcpdump's (`MAXIMUM_SNAPLEN`, 262,144), which holds a GSO or
/// GRO packet of 64 KiB whole and the first 256 KiB of a BIG TCP one.
pub const MAX_SNAPLEN: u32 = 262_144;

/// Default snap length (`-s 0` too): tcpdump's, [`MAX_SNAPLEN`].
pub const DEFAULT_SNAPLEN: u32 = MAX_SNAPLEN;

/// Ring record payload size classes, in bytes: powers of two from 64 to 8 KiB, plus 1,536 for
/// the frames of a 1500-byte MTU (a quarter less ring than 2 KiB) and [`MAX_CLASS`] for jumbo
/// frames. A record for a packet of `n` captured bytes is `size_of::<PacketHeader>() + class(n)`
/// long, so small frames take small slots; above [`MAX_CLASS`] a record is
/// `size_of::<PacketHeader>() + n` bytes (reserved at its exact size).
pub const SIZE_CLASSES: [u32; 10] = [64, 128, 256, 512, 1024, 1536, 2048, 4096, 8192, MAX_CLASS];

/// Pieces in which a capture longer than [`MAX_CLASS`] is copied, in bytes. The last piece
/// ends at the capture's end and may overlap the one before it.
pub const LARGE_CHUNK: u32 = 8192;

/// The furthest byte of a frame XDP can copy, in bytes: `bpf_xdp_load_bytes` refuses offsets
/// above 65,535, and the last piece of [`LARGE_CHUNK`] bytes starts at most there. A longer XDP
/// frame (only generic XDP on a GRO packet can be one) is cut here and counted
/// ([`crate::counters::TRUNCATED`]).
pub const XDP_MAX_END: u32 = 0xffff + LARGE_CHUNK;

// The pieces cover every capture above the largest class, the longest one in whole pieces, and
// a 64 KiB IP packet in an Ethernet frame lies within XDP's reach.
const _: () = assert!(
    LARGE_CHUNK <= MAX_CLASS
        && MAX_SNAPLEN.is_multiple_of(LARGE_CHUNK)
        && XDP_MAX_END >= 14 + 65_535
);

/// Default ring size in bytes (a power of two and a multiple of the page size).
pub const DEFAULT_RING_SIZE: u32 = 32 << 20;

/// Smallest payload class holding `len` bytes, or `None` above the largest (an exact-size
/// record then).
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
