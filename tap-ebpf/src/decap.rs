//! Decapsulation of mirrored traffic arriving on a monitor port: VXLAN, GENEVE, GRE (Ethernet
//! payload), ERSPAN II and III. Finds where the inner Ethernet frame starts, so the filter sees
//! and the ring records the inner frame, with the tunnel id kept in the record header.
//!
//! The outer frame may carry up to two VLAN tags and IPv4 (any IHL) or IPv6 (no extension
//! headers: mirroring sessions do not use them). Anything else is left as it is.

use tap_common::{
    config::{GENEVE_PORT, decap},
    event::{TUNNEL_ERSPAN2, TUNNEL_ERSPAN3, TUNNEL_GENEVE, TUNNEL_GRE, TUNNEL_VXLAN},
};

use crate::filter::Window;

/// Where the inner frame starts and what carried it.
pub struct Inner {
    pub offset: u32,
    pub kind: u8,
    pub id: u32,
}

const ETH_P_TEB: u16 = 0x6558;
const ETH_P_ERSPAN2: u16 = 0x88be;
const ETH_P_ERSPAN3: u16 = 0x22eb;

#[inline(always)]
fn u24(w: &Window, off: u32) -> Option<u32> {
    Some(u32::from(w.u8_at(off)?) << 16 | u32::from(w.u16_at(off + 1)?))
}

/// Finds the inner frame of a tunnelled packet, per the enabled `bits`.
#[inline(always)]
pub fn inner(w: &Window, bits: u32, vxlan_port: u32) -> Option<Inner> {
    let mut l2 = 0u32;
    let mut ethertype = w.u16_at(12)?;
    let mut tags = 0;
    while tags < 2 && (ethertype == 0x8100 || ethertype == 0x88a8) {
        l2 += 4;
        ethertype = w.u16_at(l2 + 12)?;
        tags += 1;
    }
    let l3 = l2 + 14;
    let (proto, l4) = match ethertype {
        0x0800 => {
            let vihl = w.u8_at(l3)?;
            // A non-first fragment carries no tunnel header.
            if w.u16_at(l3 + 6)? & 0x1fff != 0 {
                return None;
            }
            (w.u8_at(l3 + 9)?, l3 + u32::from(vihl & 0x0f) * 4)
        }
        0x86dd => (w.u8_at(l3 + 6)?, l3 + 40),
        _ => return None,
    };
    match proto {
        17 => {
            let dport = u32::from(w.u16_at(l4 + 2)?);
            let hdr = l4 + 8;
            if bits & decap::VXLAN != 0 && dport == vxlan_port {
                // Flags: the I bit says the VNI is valid.
                if w.u8_at(hdr)? & 0x08 == 0 {
                    return None;
                }
                return Some(Inner {
                    offset: hdr + 8,
                    kind: TUNNEL_VXLAN,
                    id: u24(w, hdr + 4)?,
                });
            }
            if bits & decap::GENEVE != 0 && dport == u32::from(GENEVE_PORT) {
                let opt_len = u32::from(w.u8_at(hdr)? & 0x3f) * 4;
                if w.u16_at(hdr + 2)? != ETH_P_TEB {
                    return None;
                }
                return Some(Inner {
                    offset: hdr + 8 + opt_len,
                    kind: TUNNEL_GENEVE,
                    id: u24(w, hdr + 4)?,
                });
            }
            None
        }
        47 if bits & (decap::GRE | decap::ERSPAN) != 0 => {
            let flags = u32::from(w.u16_at(l4)?);
            let gre_proto = w.u16_at(l4 + 2)?;
            // The optional words (checksum and reserved, key, sequence number: 4 bytes each,
            // present per the C, K and S bits) are sized by arithmetic, not by branches: each
            // branch would be a path of its own through the whole filter for the verifier, and
            // eight layouts times the tunnels' variants overran its budget (1M instructions).
            let key_at = l4 + 4 + ((flags >> 13) & 4);
            let end = key_at + ((flags >> 11) & 4) + ((flags >> 10) & 4);
            let key = if flags & 0x2000 != 0 {
                u32::from(w.u16_at(key_at)?) << 16 | u32::from(w.u16_at(key_at + 2)?)
            } else {
                0
            };
            match gre_proto {
                ETH_P_TEB if bits & decap::GRE != 0 => Some(Inner {
                    offset: end,
                    kind: TUNNEL_GRE,
                    id: key,
                }),
                ETH_P_ERSPAN2 if bits & decap::ERSPAN != 0 => {
                    // Version 1; session id: low 10 bits of bytes 2..4.
                    let session = u32::from(w.u16_at(end + 2)? & 0x03ff);
                    Some(Inner {
                        offset: end + 8,
                        kind: TUNNEL_ERSPAN2,
                        id: session,
                    })
                }
                ETH_P_ERSPAN3 if bits & decap::ERSPAN != 0 => {
                    let session = u32::from(w.u16_at(end + 2)? & 0x03ff);
                    // The O flag (last bit of the 12-byte header) adds an 8-byte platform
                    // subheader (arithmetic again, for the same reason).
                    let optional = (u32::from(w.u8_at(end + 11)?) & 0x01) << 3;
                    Some(Inner {
                        offset: end + 12 + optional,
                        kind: TUNNEL_ERSPAN3,
                        id: session,
                    })
                }
                _ => None,
            }
        }
        _ => None,
    }
}
