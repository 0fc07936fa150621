//! Batched sends with `sendmmsg`: one syscall for up to 64 packets, shared by the senders that
//! write many small datagrams or frames (VXLAN forwarding, the monitor interface).

use std::os::fd::RawFd;

/// Packets per `sendmmsg` call.
const CHUNK: usize = 64;

/// Sends the packets packed back to back in `buf`, of the lengths in `lens`, on the connected
/// or bound socket `fd`. Returns ((packets sent, bytes sent), packets that failed). A packet the
/// kernel refuses (EMSGSIZE, ENOBUFS, ECONNREFUSED, ...) is counted and skipped; the rest go on.
pub(super) fn send_packed(fd: RawFd, buf: &[u8], lens: &[usize]) -> ((u64, u64), u64) {
    let mut sent = (0u64, 0u64);
    let mut failed = 0u64;
    let mut offsets = Vec::with_capacity(lens.len());
    let mut off = 0;
    for l in lens {
        offsets.push(off);
        off += l;
    }
    let mut i = 0;
    while i < lens.len() {
        let n = (lens.len() - i).min(CHUNK);
        let mut iovs: Vec<libc::iovec> = (0..n)
            .map(|k| libc::iovec {
                iov_base: buf[offsets[i + k]..].as_ptr() as *mut _,
                iov_len: lens[i + k],
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = (0..n)
            .map(|k| {
                // SAFETY: mmsghdr is plain data; zero is a valid "no name, no control" header.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = &raw mut iovs[k];
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // SAFETY: msgs holds n initialised headers whose iovecs point into `buf`.
        let rc = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as u32, 0) };
        if rc <= 0 {
            failed += 1;
            i += 1;
            continue;
        }
        for m in &msgs[..rc as usize] {
            sent.0 += 1;
            sent.1 += u64::from(m.msg_len);
        }
        i += rc as usize;
    }
    (sent, failed)
}
