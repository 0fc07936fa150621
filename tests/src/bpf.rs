//! What is attached to an interface, asked of the kernel three ways, and whether a device takes
//! native XDP at all, asked without tap.
//!
//! `ip -d link` and `bpftool net` show XDP and old-style TC (clsact) programs, but the bpftool we
//! have (7.1) predates tcx and lists nothing for it; tcx is asked with `BPF_PROG_QUERY` directly.

use std::{fs::File, io, os::fd::AsRawFd as _};

use crate::{Netns, run_stdout};

// From include/uapi/linux/bpf.h (stable ABI).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// A zeroed `union bpf_attr`, larger than any command we use (the kernel wants the tail zero).
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Self {
        Self([0; 128])
    }

    fn u32(mut self, offset: usize, v: u32) -> Self {
        self.0[offset..offset + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn u64(mut self, offset: usize, v: u64) -> Self {
        self.0[offset..offset + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn get_u32(&self, offset: usize) -> u32 {
        u32::from_ne_bytes(self.0[offset..offset + 4].try_into().unwrap())
    }

    /// The `bpf(2)` call; returns its non-negative result.
    fn call(&mut self, cmd: libc::c_long) -> io::Result<i64> {
        // SAFETY: the attr buffer is valid, 8-aligned and as large as we say; every pointer in it
        // points at memory that outlives the call.
        let rc =
            unsafe { libc::syscall(libc::SYS_bpf, cmd, self.0.as_mut_ptr(), self.0.len() as u32) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }
}

/// Runs `f` on a thread that has entered the network namespace `ns` (network namespaces are per
/// thread, so the test process itself stays where it is).
fn in_netns<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{}", ns.name);
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
            // SAFETY: a valid namespace fd; this thread is ours and ends after `f`.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "setns into {}: {}",
                ns.name,
                io::Error::last_os_error()
            );
            f()
        })
        .join()
        .expect("thread in netns panicked")
    })
}

fn ifindex(iface: &str) -> u32 {
    let name = std::ffi::CString::new(iface).unwrap();
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(
        index,
        0,
        "no interface {iface}: {}",
        io::Error::last_os_error()
    );
    index
}

/// Number of programs attached through tcx to `iface` in `ns`: (ingress, egress).
pub fn tcx_programs(ns: &Netns, iface: &str) -> (u32, u32) {
    in_netns(ns, || {
        let index = ifindex(iface);
        let count = |attach_type: u32| {
            // query: target_ifindex @0, attach_type @4, prog_ids @16 (null: just count),
            // prog_cnt @24.
            let mut attr = Attr::new().u32(0, index).u32(4, attach_type);
            attr.call(BPF_PROG_QUERY)
                .unwrap_or_else(|e| panic!("BPF_PROG_QUERY tcx on {iface}: {e}"));
            attr.get_u32(24)
        };
        (count(BPF_TCX_INGRESS), count(BPF_TCX_EGRESS))
    })
}

/// Tries to attach a two-instruction XDP program (`return XDP_PASS`) to `iface` in `ns` in
/// native (driver) mode, through a link that is closed again at once. Tells whether the device
/// supports native XDP, independently of tap.
pub fn try_native_xdp(ns: &Netns, iface: &str) -> io::Result<()> {
    in_netns(ns, || {
        let index = ifindex(iface);
        // r0 = XDP_PASS (2); exit
        let insns: [u64; 2] = [0xb7 | (2 << 32), 0x95];
        let license = c"GPL";
        // prog_load: prog_type @0, insn_cnt @4, insns @8, license @16, expected_attach_type @68.
        let mut load = Attr::new()
            .u32(0, BPF_PROG_TYPE_XDP)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .u32(68, BPF_XDP);
        let prog = load.call(BPF_PROG_LOAD)?;
        // SAFETY: the kernel just gave us this fd.
        let _prog =
            unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(prog as i32) };
        // link_create: prog_fd @0, target_ifindex @4, attach_type @8, flags @12.
        let mut link = Attr::new()
            .u32(0, prog as u32)
            .u32(4, index)
            .u32(8, BPF_XDP)
            .u32(12, XDP_FLAGS_DRV_MODE);
        let link = link.call(BPF_LINK_CREATE)?;
        // SAFETY: as above; closing the link detaches the program.
        drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(link as i32) });
        Ok(())
    })
}

/// Everything attached to one interface that tap could have left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachments {
    /// XDP as `ip -d link` shows it: the `xdp`/`xdpgeneric` flag and `prog/xdp` lines.
    pub ip_link_xdp: Vec<String>,
    /// Entries `bpftool net show dev` lists (XDP, clsact filters, flow dissector).
    pub bpftool: Vec<String>,
    /// Programs attached through tcx, ingress.
    pub tcx_ingress: u32,
    /// Programs attached through tcx, egress.
    pub tcx_egress: u32,
}

impl Attachments {
    /// Asks `ip`, `bpftool` and the kernel what is attached to `iface` in `ns`.
    pub fn of(ns: &Netns, iface: &str) -> Self {
        let link = run_stdout(ns.cmd("ip").args(["-d", "link", "show", "dev", iface]));
        let ip_link_xdp = link
            .split_whitespace()
            .filter(|w| w.starts_with("xdp") || w.starts_with("prog/xdp"))
            .map(ToString::to_string)
            .collect();
        let net = run_stdout(ns.cmd("bpftool").args(["net", "show", "dev", iface]));
        // Section headings ("xdp:", "tc:", ...) end in a colon; anything else is an attachment.
        let bpftool = net
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.ends_with(':'))
            .map(ToString::to_string)
            .collect();
        let (tcx_ingress, tcx_egress) = tcx_programs(ns, iface);
        Self {
            ip_link_xdp,
            bpftool,
            tcx_ingress,
            tcx_egress,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ip_link_xdp.is_empty()
            && self.bpftool.is_empty()
            && self.tcx_ingress == 0
            && self.tcx_egress == 0
    }
}

/// Fails unless nothing at all is attached to `iface` in `ns`.
pub fn assert_nothing_attached(ns: &Netns, iface: &str) {
    let found = Attachments::of(ns, iface);
    assert!(
        found.is_empty(),
        "programs left attached to {iface}: {found:#?}"
    );
}
