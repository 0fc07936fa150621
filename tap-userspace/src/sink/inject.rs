//! Monitor-interface output (`--inject IFACE`): captured frames are written into an interface
//! that an IDS (Suricata, Zeek, Snort) reads in af-packet mode, as it would read a SPAN port.
//!
//! - An existing TAP device (`ip tuntap add mode tap`): tap attaches to it and writes frames,
//!   which the device receives.
//! - An existing veth end: frames are sent out of its peer (AF_PACKET, `sendmmsg` batches), so
//!   they arrive on the named end, where the consumer listens. Leave that end unaddressed.
//! - A name that does not exist: tap creates a TAP device of that name (IFF_TAP|IFF_NO_PI), up,
//!   MTU 9000, which disappears when tap exits.
//!
//! Frames longer than the interface's MTU (plus the Ethernet header) are truncated and counted.

use std::{
    ffi::CString,
    fs::{File, OpenOptions},
    io::{self, Write},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use super::{CaptureStats, Sink, SinkReport, SinkStop};
use crate::{kernel::batch::Batch, kernel::iface};

/// Errors opening the monitor interface.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("--inject {iface}: {op}: {source}")]
    Io {
        iface: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("--inject {iface}: interface names are at most 15 bytes")]
    Name { iface: String },
}

enum Out {
    /// A TAP device's file: one frame per write.
    Tap(File),
    /// An AF_PACKET socket bound to the peer of a veth end.
    Packet(OwnedFd),
}

/// The monitor-interface sink.
pub struct InjectSink {
    iface: String,
    out: Out,
    /// Longest frame the interface carries: MTU + Ethernet header.
    max_frame: usize,
    report: SinkReport,
    /// Frames cut to the interface's MTU.
    pub truncated: u64,
    batch: Vec<u8>,
    lens: Vec<usize>,
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

fn io_err<'a>(iface: &'a str, op: &'static str) -> impl Fn(io::Error) -> InjectError + 'a {
    move |source| InjectError::Io {
        iface: iface.to_string(),
        op,
        source,
    }
}

fn read_sys(iface: &str, what: &str) -> Option<String> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/{what}"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// A request for interface ioctls: name + 16 bytes of union.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> Self {
        let mut r = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: [0; 24],
        };
        for (d, s) in r.name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        r
    }
}

fn ioctl(fd: i32, request: libc::c_ulong, req: &mut IfReq) -> io::Result<()> {
    // SAFETY: req is a valid, writable ifreq-sized buffer for these requests.
    let rc = unsafe { libc::ioctl(fd, request as _, std::ptr::from_mut::<IfReq>(req)) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sets an interface up with the given MTU (through an AF_INET datagram socket's ioctls).
fn set_up(iface: &str, mtu: Option<i32>) -> io::Result<()> {
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is owned here.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    if let Some(mtu) = mtu {
        let mut req = IfReq::new(iface);
        req.data[..4].copy_from_slice(&mtu.to_ne_bytes());
        ioctl(sock.as_raw_fd(), libc::SIOCSIFMTU, &mut req)?;
    }
    let mut req = IfReq::new(iface);
    ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req)?;
    let flags = i16::from_ne_bytes([req.data[0], req.data[1]]) | libc::IFF_UP as i16;
    req.data[..2].copy_from_slice(&flags.to_ne_bytes());
    ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req)
}

fn open_tap(iface: &str) -> Result<File, InjectError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(io_err(iface, "opening /dev/net/tun"))?;
    let mut req = IfReq::new(iface);
    req.data[..2].copy_from_slice(&(IFF_TAP | IFF_NO_PI).to_ne_bytes());
    ioctl(file.as_raw_fd(), TUNSETIFF, &mut req)
        .map_err(io_err(iface, "attaching to the TAP device"))?;
    Ok(file)
}

fn packet_socket(iface: &str, ifindex: u32) -> Result<OwnedFd, InjectError> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io_err(iface, "opening an AF_PACKET socket")(
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: fd was just created and is owned here.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; zero then fill.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto;
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: a valid sockaddr_ll of the right size.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io_err(iface, "binding the AF_PACKET socket")(
            io::Error::last_os_error(),
        ));
    }
    // A large send buffer: bursts queue in the kernel instead of failing.
    let size: libc::c_int = 8 << 20;
    // SAFETY: valid socket and option value.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            (&raw const size).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    Ok(sock)
}

impl InjectSink {
    pub fn open(iface: &str) -> Result<Self, InjectError> {
        if iface.is_empty() || iface.len() >= libc::IFNAMSIZ || CString::new(iface).is_err() {
            return Err(InjectError::Name {
                iface: iface.to_string(),
            });
        }
        let out = match iface::ifindex(iface) {
            None => {
                let file = open_tap(iface)?;
                set_up(iface, Some(9000)).map_err(io_err(iface, "bringing the TAP device up"))?;
                tracing::info!(iface, "created TAP device for --inject");
                Out::Tap(file)
            }
            Some(index) => {
                if read_sys(iface, "tun_flags").is_some() {
                    let file = open_tap(iface)?;
                    set_up(iface, None).map_err(io_err(iface, "bringing the TAP device up"))?;
                    Out::Tap(file)
                } else {
                    // A veth end: send out of its peer so frames arrive on this end.
                    let peer = read_sys(iface, "iflink")
                        .and_then(|s| s.parse::<u32>().ok())
                        .filter(|p| *p != index);
                    let target = peer.unwrap_or(index);
                    if peer.is_none() {
                        tracing::warn!(
                            iface,
                            "not a veth end or TAP device: sending out of it directly"
                        );
                    }
                    if let Some(name) = iface::ifname(target) {
                        let _ = set_up(&name, None);
                    }
                    let _ = set_up(iface, None);
                    Out::Packet(packet_socket(iface, target)?)
                }
            }
        };
        let mtu: usize = read_sys(iface, "mtu")
            .and_then(|m| m.parse().ok())
            .unwrap_or(1500);
        Ok(Self {
            iface: iface.to_string(),
            out,
            max_frame: mtu + 14,
            report: SinkReport::default(),
            truncated: 0,
            batch: Vec::new(),
            lens: Vec::new(),
        })
    }

    fn send_packets(&mut self) {
        let Out::Packet(sock) = &self.out else { return };
        let ((sent, bytes), failed) =
            super::mmsg::send_packed(sock.as_raw_fd(), &self.batch, &self.lens);
        self.report.written += sent;
        self.report.bytes += bytes;
        self.report.lost += failed;
        self.batch.clear();
        self.lens.clear();
    }
}

impl Sink for InjectSink {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkStop> {
        for p in batch.packets() {
            let mut data = p.data;
            if data.len() > self.max_frame {
                data = &data[..self.max_frame];
                self.truncated += 1;
            }
            match &mut self.out {
                Out::Tap(file) => match file.write(data) {
                    Ok(n) => {
                        self.report.written += 1;
                        self.report.bytes += n as u64;
                    }
                    Err(_) => self.report.lost += 1,
                },
                Out::Packet(_) => {
                    self.batch.extend_from_slice(data);
                    self.lens.push(data.len());
                }
            }
        }
        self.send_packets();
        Ok(())
    }

    fn finish(mut self: Box<Self>, _stats: &CaptureStats) -> SinkReport {
        self.send_packets();
        let mut report = std::mem::take(&mut self.report);
        report.notes.push(format!(
            "inject {}: {} frames written, {} truncated to the MTU, {} lost",
            self.iface, report.written, self.truncated, report.lost
        ));
        report
    }
}
