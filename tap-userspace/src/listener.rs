//! The one way tap listens: every socket clients connect to (metrics, the control socket,
//! `--serve` streams, and the query endpoints to come) is served by a [`Listener`], so no client,
//! however many connections it opens and however slowly it talks, can take the descriptors or
//! the attention the capture needs.
//!
//! - **A cap on connections** per listener ([`Limits::max_connections`]): past it, the accept
//!   loop waits for one to end, and new clients wait in the kernel's backlog, which costs tap no
//!   descriptor.
//! - **A process-wide descriptor budget** for all connections together ([`connection_budget`]):
//!   at most a quarter of the descriptor limit (`RLIMIT_NOFILE`), never more than
//!   [`MAX_CONNECTION_BUDGET`]. The rest is the capture path's (rings, maps, links, files,
//!   netlink), which clients can therefore never starve.
//! - **Short timeouts** ([`Limits::header_timeout`], [`Limits::idle_timeout`]): a client has a
//!   moment to send its request and must keep taking its answer, or it is disconnected.
//! - **An accept loop that backs off** on `EMFILE`, `ENFILE`, `ENOBUFS` and `ENOMEM` (10 ms,
//!   doubling to 1 s, one warning per episode) instead of spinning or giving up.
//!
//! A listener is a [`Listen`] (Tokio's TCP and Unix listeners are) and a handler called with
//! each [`Conn`]: the stream, its [`Limits`], and a slot that counts against the caps until it
//! is dropped (a handler may move it to a thread with [`Conn::into_parts`]). Unix sockets are
//! bound with [`bind_unix`]: mode 0600 from birth, a stale socket file replaced, a live one
//! refused, the file removed when the [`UnixSocketFile`] is dropped.

use std::{
    future::Future,
    io,
    os::{
        fd::AsRawFd as _,
        unix::fs::{FileTypeExt as _, MetadataExt as _},
    },
    path::{Path, PathBuf},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinHandle,
};
use tracing::{debug, info, warn};

/// Largest number of client connections of the whole process, whatever the descriptor limit.
pub const MAX_CONNECTION_BUDGET: usize = 256;

/// Fewest connections the budget allows, however low the descriptor limit.
const MIN_CONNECTION_BUDGET: usize = 8;

/// First pause of the accept loop after it ran out of descriptors or memory; it doubles up to
/// [`MAX_BACKOFF`] while that lasts.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The soft limit on open descriptors (`RLIMIT_NOFILE`), raised to the hard limit (at most
/// 65,536) the first time it is asked for: tap uses epoll, never select(2), so a high limit
/// costs nothing.
pub fn descriptor_limit() -> u64 {
    static LIMIT: OnceLock<u64> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a valid rlimit to fill.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut rl) } != 0 {
            return 1024;
        }
        let want = rl.rlim_max.min(65_536);
        if want > rl.rlim_cur {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: rl.rlim_max,
            };
            // SAFETY: a valid rlimit; raising the soft limit up to the hard one needs no privilege.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } == 0 {
                rl.rlim_cur = want;
            }
        }
        rl.rlim_cur
    })
}

/// Client connections the whole process may hold at once: a quarter of
/// [`descriptor_limit`], between 8 and [`MAX_CONNECTION_BUDGET`].
#[must_use]
pub fn connection_budget() -> usize {
    let quarter = usize::try_from(descriptor_limit() / 4).unwrap_or(usize::MAX);
    quarter.clamp(MIN_CONNECTION_BUDGET, MAX_CONNECTION_BUDGET)
}

fn budget() -> &'static Arc<Semaphore> {
    static BUDGET: OnceLock<Arc<Semaphore>> = OnceLock::new();
    BUDGET.get_or_init(|| Arc::new(Semaphore::new(connection_budget())))
}

/// How much a listener serves at once and how long it waits for its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Time from the connection to the end of the request head ([`Conn::read_head`]).
    pub header_timeout: Duration,
    /// Longest one write of the answer may wait for the client to take it ([`Conn::write_all`];
    /// for a stream handed to a thread, its `SO_SNDTIMEO`).
    pub idle_timeout: Duration,
}

/// A listening socket the accept loop can take connections from.
pub trait Listen: Send + Sync + 'static {
    type Stream: Send + 'static;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Stream>>;
}

impl Listen for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Stream>> {
        tokio::net::TcpListener::poll_accept(self, cx).map_ok(|(s, _)| s)
    }
}

impl Listen for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Stream>> {
        tokio::net::UnixListener::poll_accept(self, cx).map_ok(|(s, _)| s)
    }
}

/// Counters of a listener, live.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections open now.
    pub active: AtomicU64,
    /// Accepts that failed (out of descriptors or memory, mostly).
    pub accept_errors: AtomicU64,
    /// Connections closed because the client was too slow (a timeout).
    pub timed_out: AtomicU64,
}

/// A connection's place under the caps; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    _mine: OwnedSemaphorePermit,
    _budget: OwnedSemaphorePermit,
    stats: Arc<ListenerStats>,
}

impl Slot {
    /// Counts a client disconnected for being too slow.
    pub fn timed_out(&self) {
        self.stats.timed_out.fetch_add(1, Relaxed);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats.active.fetch_sub(1, Relaxed);
    }
}

/// One accepted connection.
#[derive(Debug)]
pub struct Conn<S> {
    pub stream: S,
    pub limits: Limits,
    slot: Slot,
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Reads the request head: up to and including the first `end`, at most `max` bytes, within
    /// [`Limits::header_timeout`] of the call. Fewer bytes when the client closes first.
    ///
    /// # Errors
    /// A read error, or `TimedOut` when the head did not arrive in time.
    pub async fn read_head(&mut self, max: usize, end: &[u8]) -> io::Result<Vec<u8>> {
        let mut head = Vec::with_capacity(max.min(1024));
        let mut buf = [0u8; 1024];
        let read = async {
            while !head.windows(end.len()).any(|w| w == end) && head.len() < max {
                let want = buf.len().min(max - head.len());
                let n = self.stream.read(&mut buf[..want]).await?;
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            Ok::<(), io::Error>(())
        };
        let Ok(read) = tokio::time::timeout(self.limits.header_timeout, read).await else {
            self.slot.timed_out();
            return Err(timed_out("no request within the header timeout"));
        };
        read?;
        Ok(head)
    }

    /// Writes all of `data`; the client must take it within [`Limits::idle_timeout`].
    ///
    /// # Errors
    /// A write error, or `TimedOut` when the client did not take it in time.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let Ok(written) =
            tokio::time::timeout(self.limits.idle_timeout, self.stream.write_all(data)).await
        else {
            self.slot.timed_out();
            return Err(timed_out("the client did not take the answer"));
        };
        written
    }

    /// Closes the writing side (bounded like [`Conn::write_all`]).
    ///
    /// # Errors
    /// As [`Conn::write_all`].
    pub async fn shutdown(&mut self) -> io::Result<()> {
        match tokio::time::timeout(self.limits.idle_timeout, self.stream.shutdown()).await {
            Ok(r) => r,
            Err(_) => Err(timed_out("shutdown")),
        }
    }
}

impl<S> Conn<S> {
    /// The stream and the slot, for a handler that serves the client elsewhere (a thread):
    /// the connection counts against the caps until the slot is dropped.
    pub fn into_parts(self) -> (S, Slot) {
        (self.stream, self.slot)
    }
}

/// A running accept loop; dropping it (or [`Listener::stop`]) stops accepting. Connections
/// being served end by themselves, bounded by their timeouts.
#[derive(Debug)]
pub struct Listener {
    name: String,
    task: JoinHandle<()>,
    stats: Arc<ListenerStats>,
}

/// Resource shortages an accept reports: wait for them to pass.
fn is_shortage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

impl Listener {
    /// Starts accepting on `listener` (on the current Tokio runtime), calling `handler` with each
    /// connection in a task of its own. `name` names it in logs.
    pub fn spawn<L, H, F>(name: &str, listener: L, limits: Limits, handler: H) -> Self
    where
        L: Listen,
        H: Fn(Conn<L::Stream>) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let stats = Arc::new(ListenerStats::default());
        let mine = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        let task = tokio::spawn(accept_loop(
            name.to_string(),
            listener,
            limits,
            mine,
            Arc::clone(&stats),
            handler,
        ));
        Self {
            name: name.to_string(),
            task,
            stats,
        }
    }

    #[must_use]
    pub fn stats(&self) -> &Arc<ListenerStats> {
        &self.stats
    }

    /// Stops accepting (the listening socket closes).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        debug!(listener = %self.name, "stops accepting");
        self.task.abort();
    }
}

async fn accept_loop<L, H, F>(
    name: String,
    listener: L,
    limits: Limits,
    mine: Arc<Semaphore>,
    stats: Arc<ListenerStats>,
    handler: H,
) where
    L: Listen,
    H: Fn(Conn<L::Stream>) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let mut backoff = FIRST_BACKOFF;
    let mut warned = false;
    loop {
        // Wait for room first: a connection never exists without its descriptor budgeted.
        let Ok(own) = Arc::clone(&mine).acquire_owned().await else {
            return;
        };
        let Ok(shared) = Arc::clone(budget()).acquire_owned().await else {
            return;
        };
        match std::future::poll_fn(|cx| listener.poll_accept(cx)).await {
            Ok(stream) => {
                if warned {
                    info!(listener = %name, "accepting again");
                    warned = false;
                }
                backoff = FIRST_BACKOFF;
                stats.accepted.fetch_add(1, Relaxed);
                stats.active.fetch_add(1, Relaxed);
                let conn = Conn {
                    stream,
                    limits,
                    slot: Slot {
                        _mine: own,
                        _budget: shared,
                        stats: Arc::clone(&stats),
                    },
                };
                tokio::spawn(handler(conn));
            }
            Err(e) if is_shortage(&e) => {
                stats.accept_errors.fetch_add(1, Relaxed);
                if !warned {
                    warn!(listener = %name, error = %e, "cannot accept connections: backing off (the capture is not affected)");
                    warned = true;
                }
                drop((own, shared));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            // The client gave up before it was accepted, and the like: nothing to wait for.
            Err(e) => {
                stats.accept_errors.fetch_add(1, Relaxed);
                debug!(listener = %name, error = %e, "accept failed");
                drop((own, shared));
                tokio::time::sleep(FIRST_BACKOFF).await;
            }
        }
    }
}

/// A bound Unix socket's file, removed when this is dropped (if it is still the one bound).
#[derive(Debug)]
pub struct UnixSocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl UnixSocketFile {
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UnixSocketFile {
    fn drop(&mut self) {
        // Only our socket: another process may have bound the name since.
        if std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && m.dev() == self.dev && m.ino() == self.ino)
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds a Unix stream socket at `path`, mode 0600 from birth (creating its directory). A
/// socket file nobody answers on (left by a process that died) is replaced; one that answers,
/// or anything that is not a socket, is refused. Returns the non-blocking listener and the
/// guard of its file.
///
/// # Errors
/// Something else at `path` (`AlreadyExists`), a live socket (`AddrInUse`), or the directory,
/// the removal or the bind failing.
pub fn bind_unix(path: &Path) -> io::Result<(std::os::unix::net::UnixListener, UnixSocketFile)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another process answers on it",
            ));
        }
        std::fs::remove_file(path)?;
    }
    // The socket file takes its mode from the umask at bind time: make it 0600 from birth.
    // SAFETY: umask has no preconditions; restored right after.
    let old = unsafe { libc::umask(0o177) };
    let bound = std::os::unix::net::UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = bound?;
    listener.set_nonblocking(true)?;
    let meta = std::fs::symlink_metadata(path)?;
    Ok((
        listener,
        UnixSocketFile {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        },
    ))
}

/// Makes a blocking stream handed to a thread give up a write the client does not take within
/// `timeout` (`SO_SNDTIMEO`).
///
/// # Errors
/// The kernel's refusal of the option.
pub fn set_send_timeout(fd: &impl std::os::fd::AsFd, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
    };
    // SAFETY: a valid timeval of the size given, on a descriptor we own.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            std::ptr::from_ref(&tv).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::timeval>()).unwrap_or(16),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize) -> Limits {
        Limits {
            max_connections: max,
            header_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_millis(200),
        }
    }

    #[test]
    fn the_budget_is_a_quarter_of_the_limit_within_bounds() {
        assert!(descriptor_limit() >= 1024);
        let b = connection_budget();
        assert!(
            (MIN_CONNECTION_BUDGET..=MAX_CONNECTION_BUDGET).contains(&b),
            "{b}"
        );
    }

    #[tokio::test]
    async fn connections_past_the_cap_wait_and_slow_clients_are_cut() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let l = Listener::spawn("test", listener, limits(2), |mut conn| async move {
            if let Ok(head) = conn.read_head(64, b"\n").await {
                let _ = conn.write_all(&head).await;
                let _ = conn.shutdown().await;
            }
        });
        // Two clients that say nothing hold both slots until the header timeout cuts them.
        let idle: Vec<_> = [0, 1]
            .into_iter()
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(l.stats().active.load(Relaxed), 2);
        let started = std::time::Instant::now();
        let answer = tokio::task::spawn_blocking(move || {
            use std::io::{Read as _, Write as _};
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"hello\n").unwrap();
            let mut got = String::new();
            s.read_to_string(&mut got).unwrap();
            got
        })
        .await
        .unwrap();
        assert_eq!(answer, "hello\n");
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "it waited for a slot"
        );
        assert_eq!(l.stats().timed_out.load(Relaxed), 2);
        assert_eq!(l.stats().accepted.load(Relaxed), 3);
        drop(idle);
    }

    #[test]
    fn unix_sockets_are_0600_stale_ones_replaced_live_ones_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("tap-listener-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub/s.sock");
        let (live, file) = bind_unix(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        let e = bind_unix(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        // The process that bound it died without removing it: stale.
        drop(live);
        std::mem::forget(file);
        let (_again, file) = bind_unix(&path).unwrap();
        drop(file);
        assert!(!path.exists(), "the guard removes its file");
        std::fs::write(&path, b"data").unwrap();
        assert_eq!(
            bind_unix(&path).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
