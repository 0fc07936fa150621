//! Where a packet's bytes and facts come from: the XDP buffer or the socket buffer behind one
//! [`Source`] trait, and the [`Meta`] the hook knows besides the bytes. Every part of the program
//! (filter, flow budget, ring records small and large) reads packets through these.

use aya_ebpf::{
    EbpfContext,
    helpers::generated::{bpf_skb_load_bytes, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    programs::{TcContext, XdpContext},
};
use tap_common::config::XDP_MAX_END;

/// Where the packet bytes come from.
pub(crate) trait Source {
    /// One past the furthest byte [`Source::load`] can read, in bytes from the packet's start.
    const MAX_END: u32;
    /// Length of the whole packet in bytes (all fragments).
    fn len(&self) -> u32;
    /// Copies `len` bytes from offset `off` to `dst`; 0 on success.
    ///
    /// # Safety
    /// `dst` must be valid for `len` bytes of writes.
    unsafe fn load(&self, off: u32, dst: *mut u8, len: u32) -> i64;
}

pub(crate) struct XdpSource<'a>(&'a XdpContext);

impl<'a> XdpSource<'a> {
    pub(crate) fn new(ctx: &'a XdpContext) -> Self {
        Self(ctx)
    }
}

impl Source for XdpSource<'_> {
    const MAX_END: u32 = XDP_MAX_END;

    #[inline(always)]
    fn len(&self) -> u32 {
        // Includes the fragments of a multi-buffer (jumbo) frame.
        // SAFETY: the helper only reads the context.
        unsafe { bpf_xdp_get_buff_len(self.0.ctx) as u32 }
    }

    #[inline(always)]
    unsafe fn load(&self, off: u32, dst: *mut u8, len: u32) -> i64 {
        // SAFETY: the caller guarantees dst is valid for len bytes.
        unsafe { bpf_xdp_load_bytes(self.0.ctx, off, dst.cast(), len) }
    }
}

pub(crate) struct SkbSource<'a>(&'a TcContext);

impl<'a> SkbSource<'a> {
    pub(crate) fn new(ctx: &'a TcContext) -> Self {
        Self(ctx)
    }
}

impl Source for SkbSource<'_> {
    const MAX_END: u32 = u32::MAX;

    #[inline(always)]
    fn len(&self) -> u32 {
        self.0.len()
    }

    #[inline(always)]
    unsafe fn load(&self, off: u32, dst: *mut u8, len: u32) -> i64 {
        // SAFETY: the caller guarantees dst is valid for len bytes.
        unsafe { bpf_skb_load_bytes(self.0.as_ptr(), off, dst.cast(), len) }
    }
}

/// What the program knows about the packet besides its bytes.
#[derive(Clone, Copy)]
pub(crate) struct Meta {
    pub ifindex: u32,
    pub queue: u32,
    pub hook: u8,
    pub direction: u8,
    pub rule: u32,
    /// Decapsulation: where the inner frame starts, and what carried it.
    pub offset: u32,
    pub tunnel: u8,
    pub tunnel_id: u32,
}
