//! The bench's packet generator: a fixed number of prepared frames out of one interface as fast
//! as the kernel takes them, from one pinned thread.
//!
//! An AF_PACKET socket with a `PACKET_TX_RING` (TPACKET_V2) and `PACKET_QDISC_BYPASS`, as
//! trafgen uses by default, so the cost per frame is the kernel's transmit path and nothing of
//! ours: the frames sit in the ring from the start (slot `i` holds frame `i % variants`), and
//! each round only flips slot states and makes one `send()`.
//!
//! Why not trafgen: when the receiving veth end has an XDP program, veth queues frames in a ring
//! of its own, and a frame that finds that ring full comes back from the driver as a drop; the
//! TX ring's `send()` then fails with ENOBUFS and trafgen aborts ("Flushing TX_RING failed").
//! The kernel leaves the refused frame in the ring, marked to send: here `send()` is simply
//! called again (counted as a busy retry), which is the back-pressure a real NIC's full queue
//! gives. The socket's send buffer is forced large (`SO_SNDBUFFORCE`, which works inside a
//! namespace where `net.core.wmem_max` cannot be raised), so the socket's own accounting never
//! throttles it.
//!
//! The generator is a process of its own (`xtask bench-generator`, started by
//! [`Generator::prepare`]) so that it can have a scheduling group of its own (see
//! [`super::own_sched_group`]). It enters the namespace with `setns(CLONE_NEWNET)`, pins
//! itself, fills the ring and says it is ready; [`Generator::send`] starts it and waits, so a
//! caller can sample counters right around the sending alone.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use tap_common::frame;

// Kernel ABI (include/uapi/linux/if_packet.h), spelled out rather than taken from a libc
// version that may or may not export them.
const SOL_PACKET: libc::c_int = 263;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_TX_RING: libc::c_int = 13;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const TPACKET_V2: libc::c_int = 1;
const TP_STATUS_AVAILABLE: u32 = 0;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_WRONG_FORMAT: u32 = 4;
/// Where a TPACKET_V2 TX frame's data starts in its slot: `TPACKET2_HDRLEN - sizeof(struct
/// sockaddr_ll)`, the aligned `struct tpacket2_hdr`.
const TX_DATA_OFFSET: usize = 32;
/// Offset of `tp_len` in `struct tpacket2_hdr` (after `tp_status`).
const TP_LEN_OFFSET: usize = 4;

#[repr(C)]
struct TpacketReq {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
}

/// Ring geometry: 64 KiB blocks of 2 KiB slots.
const BLOCK_SIZE: usize = 64 << 10;
const SLOT_SIZE: usize = 2048;
/// At least this many slots (then rounded up to a multiple of the variants).
const MIN_SLOTS: usize = 1024;
/// The socket's send buffer, in bytes.
const SNDBUF: libc::c_int = 256 << 20;

/// What to send.
#[derive(Debug, Clone)]
pub(super) struct Spec {
    /// Network namespace name (a file in /var/run/netns).
    pub netns: String,
    pub iface: String,
    /// CPU the sending thread runs on.
    pub cpu: usize,
    /// Its nice value.
    pub nice: i32,
    /// Frames sent round-robin: frame `i` of the run is `frames[i % frames.len()]`. Each at most
    /// 2016 bytes.
    pub frames: Vec<Vec<u8>>,
    /// Frames to send.
    pub count: u64,
    /// Give up after this long (the frames not sent by then are not offered).
    pub time_limit: Duration,
}

/// What one run sent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[expect(
    clippy::struct_field_names,
    reason = "what was sent, in the bench's own words"
)]
pub(super) struct Sent {
    /// Frames the kernel took (in order: frames `0..sent` of the run).
    pub sent: u64,
    /// From the first `send()` to the last one's return.
    pub elapsed: Duration,
    /// `send()` calls refused with ENOBUFS (a full device queue) and repeated.
    pub busy_retries: u64,
    /// The time limit ended the run before `count` frames were sent.
    pub timed_out: bool,
    /// CPU time of the sending thread from the first `send()` to the end: the transmit path,
    /// and the receive path's softirq work that ran in its context (veth delivers on the
    /// sender's CPU).
    pub thread_cpu: Duration,
}

impl Sent {
    pub(super) fn pps(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A generator process with its ring ready, waiting for [`Generator::send`].
pub(super) struct Generator {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Generator {
    /// Starts the generator process (`xtask bench-generator`, in a scheduling group of its own:
    /// see [`super::own_sched_group`]), which enters the namespace, pins itself, opens and fills
    /// the ring. Returns once it is ready (or with its error).
    pub(super) fn prepare(spec: &Spec) -> Result<Self> {
        check_frames(&spec.frames)?;
        // This very binary, also when a build replaced the file since it started (the bench's
        // own build step does, when xtask runs in release mode).
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg("bench-generator")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        super::own_sched_group(&mut cmd);
        let mut child = cmd.spawn().context("starting the generator process")?;
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("the generator's pipes are missing");
        };
        writeln!(stdin, "{}", spec.to_json()).context("handing the generator its frames")?;
        let mut generator = Self {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        };
        let line = generator.line().context("waiting for the generator")?;
        if line.trim() != "ready" {
            bail!("the generator did not get ready: {}", line.trim());
        }
        Ok(generator)
    }

    fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        if line.is_empty() {
            let status = self.child.wait()?;
            bail!("the generator exited ({status})");
        }
        Ok(line)
    }

    /// Sends, and waits until the last frame is out (or the time limit passed).
    pub(super) fn send(mut self) -> Result<Sent> {
        writeln!(self.stdin, "go").context("starting the generator")?;
        let line = self.line()?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the generator failed ({status}): {}", line.trim());
        }
        Sent::from_json(&line).with_context(|| format!("the generator said {line:?}"))
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `xtask bench-generator`: reads a [`Spec`] (one JSON line) on standard input, prepares, says
/// `ready`, waits for `go`, sends, and prints what it sent (one JSON line).
pub(super) fn child_main() -> Result<()> {
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    stdin
        .read_line(&mut line)
        .context("reading the generator spec")?;
    let spec = Spec::from_json(&line)?;
    check_frames(&spec.frames)?;
    let ring = Ring::open(&spec)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ready")?;
    stdout.flush()?;
    line.clear();
    stdin.read_line(&mut line)?;
    if line.trim() != "go" {
        bail!("expected go, got {line:?}");
    }
    let sent = ring.send_all(spec.count, spec.time_limit)?;
    writeln!(stdout, "{}", sent.to_json())?;
    stdout.flush()?;
    Ok(())
}

fn check_frames(frames: &[Vec<u8>]) -> Result<()> {
    if frames.is_empty()
        || frames
            .iter()
            .any(|f| f.len() < 14 || f.len() > SLOT_SIZE - TX_DATA_OFFSET)
    {
        bail!(
            "generator frames must be 14 to {} bytes",
            SLOT_SIZE - TX_DATA_OFFSET
        );
    }
    Ok(())
}

impl Spec {
    fn to_json(&self) -> String {
        let hex = |f: &Vec<u8>| f.iter().map(|b| format!("{b:02x}")).collect::<String>();
        json!({
            "netns": self.netns,
            "iface": self.iface,
            "cpu": self.cpu,
            "nice": self.nice,
            "count": self.count,
            "time_limit_ms": self.time_limit.as_millis() as u64,
            "frames": self.frames.iter().map(hex).collect::<Vec<_>>(),
        })
        .to_string()
    }

    fn from_json(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text).context("parsing the generator spec")?;
        let str_of = |k: &str| {
            v[k].as_str()
                .map(String::from)
                .with_context(|| format!("no {k}"))
        };
        let u64_of = |k: &str| v[k].as_u64().with_context(|| format!("no {k}"));
        let frames = v["frames"]
            .as_array()
            .context("no frames")?
            .iter()
            .map(|f| {
                let h = f.as_str().context("a frame is not a string")?;
                (0..h.len() / 2)
                    .map(|i| {
                        u8::from_str_radix(&h[2 * i..2 * i + 2], 16).context("a frame is not hex")
                    })
                    .collect::<Result<Vec<u8>>>()
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            netns: str_of("netns")?,
            iface: str_of("iface")?,
            cpu: u64_of("cpu")? as usize,
            nice: v["nice"].as_i64().context("no nice")? as i32,
            count: u64_of("count")?,
            time_limit: Duration::from_millis(u64_of("time_limit_ms")?),
            frames,
        })
    }
}

impl Sent {
    fn to_json(self) -> String {
        json!({
            "sent": self.sent,
            "elapsed_ns": self.elapsed.as_nanos() as u64,
            "busy_retries": self.busy_retries,
            "timed_out": self.timed_out,
            "thread_cpu_ns": self.thread_cpu.as_nanos() as u64,
        })
        .to_string()
    }

    fn from_json(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text)?;
        let u = |k: &str| v[k].as_u64().with_context(|| format!("no {k}"));
        Ok(Self {
            sent: u("sent")?,
            elapsed: Duration::from_nanos(u("elapsed_ns")?),
            busy_retries: u("busy_retries")?,
            timed_out: v["timed_out"].as_bool().context("no timed_out")?,
            thread_cpu: Duration::from_nanos(u("thread_cpu_ns")?),
        })
    }
}

/// The socket and its mapped TX ring.
struct Ring {
    fd: OwnedFd,
    map: *mut u8,
    map_len: usize,
    slots: usize,
    /// Length of the frame each slot holds.
    lens: Vec<u32>,
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, unmapped once; the fd closes after.
        unsafe { libc::munmap(self.map.cast(), self.map_len) };
    }
}

fn check(ret: libc::c_int, what: &str) -> Result<()> {
    if ret < 0 {
        return Err(std::io::Error::last_os_error()).context(what.to_string());
    }
    Ok(())
}

fn setsockopt<T>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
    what: &str,
) -> Result<()> {
    // SAFETY: value points to a live T of the given size.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref::<T>(value).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    check(ret, what)
}

/// Slots: at least [`MIN_SLOTS`], a whole number of blocks, and a multiple of `variants` so
/// that slot `s` always holds frame `s % variants`.
fn slot_count(variants: usize) -> usize {
    let per_block = BLOCK_SIZE / SLOT_SIZE;
    let mut slots = per_block;
    while slots < MIN_SLOTS || !slots.is_multiple_of(variants) {
        slots += per_block;
    }
    slots
}

impl Ring {
    fn open(spec: &Spec) -> Result<Self> {
        let ns_path = format!("/var/run/netns/{}", spec.netns);
        let ns = std::fs::File::open(&ns_path).with_context(|| format!("opening {ns_path}"))?;
        check(
            // SAFETY: a valid namespace fd; the generator process has this one thread.
            unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
            "entering the generator's namespace",
        )?;
        // SAFETY: cpu_set_t is plain data; CPU_SET writes within it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(spec.cpu, &mut set);
            check(
                libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set),
                "pinning the generator",
            )?;
            // Linux keeps a nice value per thread.
            let tid = libc::gettid() as libc::id_t;
            check(
                libc::setpriority(libc::PRIO_PROCESS, tid, spec.nice),
                "setting the generator's nice value",
            )?;
        }
        let ifindex = {
            let name = std::ffi::CString::new(spec.iface.as_str())?;
            // SAFETY: a valid C string.
            let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
            if i == 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("no interface {} in {}", spec.iface, spec.netns));
            }
            i
        };
        // Protocol 0: the socket sends only, nothing is delivered to it.
        // SAFETY: plain socket call.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        check(raw, "opening an AF_PACKET socket")?;
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        setsockopt(
            &fd,
            SOL_PACKET,
            PACKET_VERSION,
            &TPACKET_V2,
            "PACKET_VERSION",
        )?;
        setsockopt(
            &fd,
            SOL_PACKET,
            PACKET_QDISC_BYPASS,
            &1 as &libc::c_int,
            "PACKET_QDISC_BYPASS",
        )?;
        setsockopt(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            &SNDBUF,
            "SO_SNDBUFFORCE",
        )?;
        // A blocking send() waits for its frames to complete; bound that wait.
        let timeout = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        setsockopt(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            &timeout,
            "SO_SNDTIMEO",
        )?;
        let slots = slot_count(spec.frames.len());
        let req = TpacketReq {
            block_size: BLOCK_SIZE as u32,
            block_nr: (slots * SLOT_SIZE / BLOCK_SIZE) as u32,
            frame_size: SLOT_SIZE as u32,
            frame_nr: slots as u32,
        };
        setsockopt(&fd, SOL_PACKET, PACKET_TX_RING, &req, "PACKET_TX_RING")?;
        let map_len = slots * SLOT_SIZE;
        // SAFETY: maps the ring the kernel just allocated for this socket.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mapping the TX ring");
        }
        let mut ring = Self {
            fd,
            map: map.cast(),
            map_len,
            slots,
            lens: Vec::with_capacity(slots),
        };
        for s in 0..slots {
            let frame = &spec.frames[s % spec.frames.len()];
            // SAFETY: slot s lies within the mapping; the data area has room for the frame
            // (checked in prepare); the kernel reads the slot only once marked to send.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    frame.as_ptr(),
                    ring.slot(s).add(TX_DATA_OFFSET),
                    frame.len(),
                );
            }
            ring.lens.push(frame.len() as u32);
        }
        // SAFETY: sockaddr_ll is plain data.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: a valid sockaddr_ll of the given size.
        let ret = unsafe {
            libc::bind(
                ring.fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        check(ret, "binding the generator socket")?;
        Ok(ring)
    }

    fn slot(&self, s: usize) -> *mut u8 {
        debug_assert!(s < self.slots);
        // SAFETY: within the mapping.
        unsafe { self.map.add(s * SLOT_SIZE) }
    }

    fn status(&self, s: usize) -> &std::sync::atomic::AtomicU32 {
        // SAFETY: tp_status, the first u32 of a slot, aligned (slots are 2 KiB apart in a
        // page-aligned mapping); the kernel updates it while we read it.
        unsafe { &*self.slot(s).cast::<std::sync::atomic::AtomicU32>() }
    }

    /// Sends frames `0..count` in ring order, until all are out or `limit` passed.
    fn send_all(&self, count: u64, limit: Duration) -> Result<Sent> {
        use std::sync::atomic::Ordering;
        let started = Instant::now();
        let cpu_start = thread_cpu();
        let (mut queued, mut busy_retries) = (0u64, 0u64);
        let mut timed_out = false;
        loop {
            // Hand every free slot over, in order.
            while queued < count {
                let s = (queued % self.slots as u64) as usize;
                let status = self.status(s).load(Ordering::Acquire);
                if status == TP_STATUS_WRONG_FORMAT {
                    bail!("the kernel refused frame {queued} as malformed");
                }
                if status != TP_STATUS_AVAILABLE {
                    break;
                }
                // SAFETY: tp_len of a slot we own (status available).
                unsafe {
                    self.slot(s)
                        .add(TP_LEN_OFFSET)
                        .cast::<u32>()
                        .write(self.lens[s]);
                };
                self.status(s)
                    .store(TP_STATUS_SEND_REQUEST, Ordering::Release);
                queued += 1;
            }
            // SAFETY: a send of no bytes: the kernel takes the marked slots of the ring.
            let ret = unsafe { libc::send(self.fd.as_raw_fd(), std::ptr::null(), 0, 0) };
            if ret < 0 {
                let err = std::io::Error::last_os_error();
                match err.raw_os_error() {
                    // A full device queue: the refused frame stays marked; try again after
                    // a pause that lets whatever drains the queue (ksoftirqd) run.
                    Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR) => {
                        busy_retries += 1;
                        std::thread::sleep(Duration::from_micros(20));
                    }
                    _ => return Err(err).context("sending on the TX ring"),
                }
            }
            let pending = (0..self.slots)
                .any(|s| self.status(s).load(Ordering::Acquire) != TP_STATUS_AVAILABLE);
            if queued == count && !pending {
                break;
            }
            if started.elapsed() > limit {
                timed_out = true;
                break;
            }
        }
        let elapsed = started.elapsed();
        let thread_cpu = thread_cpu().saturating_sub(cpu_start);
        // Frames still marked were not sent: they are the last ones queued.
        let unsent = (0..self.slots)
            .filter(|&s| self.status(s).load(Ordering::Acquire) != TP_STATUS_AVAILABLE)
            .count() as u64;
        Ok(Sent {
            sent: queued - unsent,
            elapsed,
            busy_retries,
            timed_out,
            thread_cpu,
        })
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    // SAFETY: timespec is plain data that clock_gettime fills in.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a local.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// An Ethernet/IPv4/UDP frame of `len` bytes (no FCS) with valid checksums
/// (`tap_common::frame::udp4`), no longer than a TX ring slot takes.
pub(super) fn udp_frame(len: usize, ends: &frame::Ends) -> Result<Vec<u8>> {
    (len <= SLOT_SIZE - TX_DATA_OFFSET)
        .then(|| frame::udp4(len, ends))
        .flatten()
        .with_context(|| format!("a UDP frame of {len} bytes is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_fill_whole_blocks_and_cycle_the_variants() {
        for variants in [1, 2, 3, 100] {
            let slots = slot_count(variants);
            assert!(slots >= MIN_SLOTS);
            assert_eq!(slots * SLOT_SIZE % BLOCK_SIZE, 0);
            assert_eq!(slots % variants, 0);
        }
    }

    #[test]
    fn udp_frames_fit_a_slot() {
        let ends = frame::Ends {
            macs: ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]),
            ips: ([192, 0, 2, 1], [192, 0, 2, 2]),
            ports: (40000, 5000),
        };
        assert_eq!(udp_frame(1500, &ends).unwrap().len(), 1500);
        assert!(udp_frame(41, &ends).is_err());
        assert!(udp_frame(SLOT_SIZE, &ends).is_err());
    }
}
