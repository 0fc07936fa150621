//! The record a program puts in the ring: a [`PacketHeader`] followed by `cap_len` packet bytes.

/// Which program produced a record.
pub type Hook = u8;
/// XDP, on ingress (kernel 5.9+ for XDP links).
pub const HOOK_XDP: Hook = 1;
/// TC classifier on ingress (tcx on 6.6+, clsact before).
pub const HOOK_TC_INGRESS: Hook = 2;
/// TC classifier on egress.
pub const HOOK_TC_EGRESS: Hook = 3;

/// Direction of a packet relative to the interface it was seen on.
pub type Direction = u8;
/// Received by the interface.
pub const DIR_INBOUND: Direction = 1;
/// Sent by the interface.
pub const DIR_OUTBOUND: Direction = 2;

/// Header of a ring record. All fields are in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketHeader {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC, nanoseconds.
    pub ts_ns: u64,
    /// Interface index the packet was seen on.
    pub ifindex: u32,
    /// Length of the packet on the wire, in bytes.
    pub orig_len: u32,
    /// Packet bytes that follow this header (at most the snap length), in bytes.
    pub cap_len: u32,
    /// RX queue for XDP; 0 for TC.
    pub queue: u32,
    /// One of the `HOOK_*` constants.
    pub hook: Hook,
    /// One of the `DIR_*` constants.
    pub direction: Direction,
    /// Tunnel the packet was decapsulated from: one of the `TUNNEL_*` constants.
    pub tunnel: u8,
    pub _pad: u8,
    /// Filter rule that selected the packet (0 when no filter is set).
    pub rule: u32,
    /// Tunnel id: VXLAN/GENEVE VNI, GRE key, ERSPAN session id (0 when not decapsulated).
    pub tunnel_id: u32,
    /// Bytes of outer headers removed by decapsulation.
    pub outer_len: u16,
    pub _pad2: u16,
}

/// Not decapsulated.
pub const TUNNEL_NONE: u8 = 0;
/// VXLAN (RFC 7348), UDP.
pub const TUNNEL_VXLAN: u8 = 1;
/// GENEVE (RFC 8926), UDP 6081.
pub const TUNNEL_GENEVE: u8 = 2;
/// GRE carrying Ethernet (transparent Ethernet bridging, 0x6558).
pub const TUNNEL_GRE: u8 = 3;
/// ERSPAN type II (GRE 0x88be).
pub const TUNNEL_ERSPAN2: u8 = 4;
/// ERSPAN type III (GRE 0x22eb).
pub const TUNNEL_ERSPAN3: u8 = 5;

/// Size of [`PacketHeader`] in bytes.
pub const HEADER_LEN: usize = size_of::<PacketHeader>();

#[cfg(feature = "user")]
mod user {
    // SAFETY: PacketHeader is repr(C), all integers, explicit padding, no invalid bit patterns.
    unsafe impl aya::Pod for super::PacketHeader {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(HEADER_LEN, 40);
        assert_eq!(align_of::<PacketHeader>(), 8);
        assert_eq!(core::mem::offset_of!(PacketHeader, ifindex), 8);
        assert_eq!(core::mem::offset_of!(PacketHeader, cap_len), 16);
        assert_eq!(core::mem::offset_of!(PacketHeader, hook), 24);
        assert_eq!(core::mem::offset_of!(PacketHeader, rule), 28);
        assert_eq!(core::mem::offset_of!(PacketHeader, tunnel_id), 32);
    }

    #[test]
    fn size_classes_cover_jumbo() {
        use crate::config::*;
        assert_eq!(size_class(1), Some(64));
        assert_eq!(size_class(64), Some(64));
        assert_eq!(size_class(65), Some(128));
        assert_eq!(size_class(1514), Some(1536));
        assert_eq!(size_class(1537), Some(2048));
        assert_eq!(size_class(MAX_CLASS), Some(MAX_CLASS));
        assert_eq!(size_class(MAX_CLASS + 1), None);
        // Each class is a power of two or a multiple of 512 (the programs mask a length by the
        // next power of two, then bound it by the class).
        for c in SIZE_CLASSES {
            assert!(c.is_power_of_two() || c % 512 == 0);
        }
    }
}
