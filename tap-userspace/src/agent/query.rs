//! Pulling packets over HTTP: `GET /query?expr=...&since=...&until=...&format=pcap|pcapng`
//! streams the packets of a tap's store (`[tap.store]`) as `tap query` writes them, and
//! `GET /flows?...` returns the flows as a JSON array of the objects `tap query --flows --json`
//! prints, on `agent.query_listen`.
//!
//! - The selection is `tap query`'s ([`Selection::parse`]): a bad one is a 400 with its one-line
//!   reason before any packet is read. `tap=NAME` picks the store when more than one tap has one.
//! - With a token (`agent.query_token_file`; required off loopback) every request needs
//!   `Authorization: Bearer TOKEN`, or gets a 401.
//! - Connections are bounded by the [`Listener`] ([`LIMITS`]); at most [`MAX_QUERIES`] queries
//!   run at once (more get a 503 at once), each on a thread of its own at a lower CPU priority
//!   (nice 10), so the capture threads always come first. A client that stops reading is
//!   dropped after [`Limits::idle_timeout`]; one that disconnects ends its query at the next
//!   write. Stopping the server ends running queries at their next write.

use std::{
    io::{self, Write as _},
    net::{SocketAddr, TcpStream as StdTcpStream},
    path::PathBuf,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tracing::{debug, info, warn};

use super::AgentError;
use crate::{
    model::QueryListen,
    store::query::{self, Format, Selection},
    support::listener::{Conn, Limits, Listener, Slot},
};

/// Clients served at once, and how long each may take. A download may pause for a while (a
/// `| tshark` that is busy), but not forever.
pub const LIMITS: Limits = Limits {
    max_connections: 8,
    header_timeout: Duration::from_secs(5),
    idle_timeout: Duration::from_secs(30),
};

/// Queries running at once; more are answered 503.
pub const MAX_QUERIES: usize = 2;

/// Longest request head read.
const MAX_REQUEST: usize = 8192;

/// Nice value of a query's thread: below the capture's (0).
const QUERY_NICE: libc::c_int = 10;

/// The taps that write a store: (tap name, store directory).
pub type Stores = Vec<(String, PathBuf)>;

/// What the server shares with its connections.
struct Shared {
    token: Option<String>,
    stores: RwLock<Stores>,
    queries: Arc<Semaphore>,
    /// Set when the server stops: running queries end at their next write.
    stopping: Arc<AtomicBool>,
}

/// The listening socket; dropping it (or [`Server::stop`]) closes it and ends running queries.
pub struct Server {
    _listener: Listener,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `q.addr` and serves the stores of `stores`.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn start(q: &QueryListen, stores: Stores) -> Result<Self, AgentError> {
        let addr = q.addr;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AgentError::Query { addr, source })?;
        info!(%addr, token = q.token.is_some(), "store queries at /query and /flows");
        let shared = Arc::new(Shared {
            token: q.token.clone(),
            stores: RwLock::new(stores),
            queries: Arc::new(Semaphore::new(MAX_QUERIES)),
            stopping: Arc::new(AtomicBool::new(false)),
        });
        let for_conns = Arc::clone(&shared);
        let listener = Listener::spawn("query", listener, LIMITS, move |conn| {
            let shared = Arc::clone(&for_conns);
            async move {
                if let Err(e) = serve(conn, shared).await {
                    debug!(error = %e, "query connection");
                }
            }
        });
        Ok(Self {
            _listener: listener,
            shared,
        })
    }

    /// Replaces the stores served (a reload).
    pub fn set_stores(&self, stores: Stores) {
        if let Ok(mut s) = self.shared.stores.write() {
            *s = stores;
        }
    }

    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Relaxed);
    }
}

/// An answer that is not a stream: status line and one line of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: &'static str,
    pub text: String,
}

impl Reply {
    fn new(status: &'static str, text: impl Into<String>) -> Self {
        let mut text: String = text.into().replace(['\r', '\n'], " ");
        text.push('\n');
        Self { status, text }
    }

    fn bytes(&self) -> Vec<u8> {
        let auth = if self.status.starts_with("401") {
            "WWW-Authenticate: Bearer realm=\"tap\"\r\n"
        } else {
            ""
        };
        format!(
            "HTTP/1.1 {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n{}",
            self.status,
            self.text.len(),
            self.text
        )
        .into_bytes()
    }
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    Packets(Format),
    Flows,
}

/// A valid request: what, from which store, which packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub what: What,
    pub dir: PathBuf,
    pub selection: Selection,
}

/// Turns a request head into a job, or the answer that refuses it: 401 without the token (when
/// one is set, for every path), 405 for a method other than GET, 404 for another path, 400 for
/// a bad parameter or selection.
///
/// # Errors
/// The refusal, as a [`Reply`].
pub fn route(head: &[u8], token: Option<&str>, stores: &[(String, PathBuf)]) -> Result<Job, Reply> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut words = lines.next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if let Some(token) = token {
        let given = lines
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("authorization"))
            .and_then(|(_, v)| {
                let v = v.trim();
                let (scheme, rest) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| rest.trim().to_string())
            });
        if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
            return Err(Reply::new(
                "401 Unauthorized",
                "a bearer token is required (Authorization: Bearer TOKEN)",
            ));
        }
    }
    if method != "GET" {
        return Err(Reply::new("405 Method Not Allowed", "use GET"));
    }
    let (path, params) = target.split_once('?').unwrap_or((target, ""));
    let packets = match path {
        "/query" => true,
        "/flows" => false,
        _ => {
            return Err(Reply::new(
                "404 Not Found",
                "not found: use /query or /flows",
            ));
        }
    };
    let bad = |m: String| Reply::new("400 Bad Request", m);
    let mut p = Params::default();
    for pair in params.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(k).map_err(|()| bad("a parameter name is not UTF-8".into()))?;
        let value =
            decode(v).map_err(|()| bad(format!("parameter {key}: the value is not UTF-8")))?;
        let slot = match key.as_str() {
            "expr" => &mut p.expr,
            "since" => &mut p.since,
            "until" => &mut p.until,
            "tap" => &mut p.tap,
            "format" if packets => &mut p.format,
            _ => {
                let known = if packets {
                    "expr, since, until, format, tap"
                } else {
                    "expr, since, until, tap"
                };
                return Err(bad(format!(
                    "unknown parameter '{}': use {known}",
                    crate::support::excerpt::excerpt(&key)
                )));
            }
        };
        if slot.replace(value).is_some() {
            return Err(bad(format!("parameter {key} given twice")));
        }
    }
    let what = if packets {
        match p.format.as_deref() {
            None | Some("pcap") => What::Packets(Format::Pcap),
            Some("pcapng") => What::Packets(Format::Pcapng),
            Some(other) => {
                return Err(bad(format!(
                    "format '{}': use pcap or pcapng",
                    crate::support::excerpt::excerpt(other)
                )));
            }
        }
    } else {
        What::Flows
    };
    let dir = choose_store(p.tap.as_deref(), stores)?;
    let selection = Selection::parse(
        p.since.as_deref(),
        p.until.as_deref(),
        p.expr.as_deref().unwrap_or(""),
    )
    .map_err(|e| bad(one_line(&e)))?;
    Ok(Job {
        what,
        dir,
        selection,
    })
}

/// The store a request names (`tap=NAME`), or the only one.
fn choose_store(tap: Option<&str>, stores: &[(String, PathBuf)]) -> Result<PathBuf, Reply> {
    match (tap, stores) {
        (_, []) => Err(Reply::new(
            "404 Not Found",
            "no tap of this agent writes a store ([tap.store])",
        )),
        (None, [(_, dir)]) => Ok(dir.clone()),
        (None, _) => {
            let names: Vec<&str> = stores.iter().map(|(n, _)| n.as_str()).collect();
            Err(Reply::new(
                "400 Bad Request",
                format!("give tap=NAME, one of {}", names.join(", ")),
            ))
        }
        (Some(name), _) => match stores.iter().find(|(n, _)| n == name) {
            Some((_, dir)) => Ok(dir.clone()),
            None => Err(Reply::new(
                "404 Not Found",
                format!(
                    "no tap '{}' with a store",
                    crate::support::excerpt::excerpt(name)
                ),
            )),
        },
    }
}

#[derive(Default)]
struct Params {
    expr: Option<String>,
    since: Option<String>,
    until: Option<String>,
    tap: Option<String>,
    format: Option<String>,
}

/// A query-string component: `+` is a space, then percent-decoding, then UTF-8.
fn decode(s: &str) -> Result<String, ()> {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| ())
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An error and its causes on one line.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text.replace('\n', " ")
}

/// Answers one request, then closes.
async fn serve(mut conn: Conn<TcpStream>, shared: Arc<Shared>) -> io::Result<()> {
    let head = conn.read_head(MAX_REQUEST, b"\r\n\r\n").await?;
    let routed = {
        let stores = shared.stores.read().map(|s| s.clone()).unwrap_or_default();
        route(&head, shared.token.as_deref(), &stores)
    };
    let job = match routed {
        Ok(job) => job,
        Err(reply) => {
            conn.write_all(&reply.bytes()).await?;
            return conn.shutdown().await;
        }
    };
    let Ok(permit) = Arc::clone(&shared.queries).try_acquire_owned() else {
        let reply = Reply::new(
            "503 Service Unavailable",
            format!("{MAX_QUERIES} queries are running: try again"),
        );
        conn.write_all(&reply.bytes()).await?;
        return conn.shutdown().await;
    };
    let limits = conn.limits;
    let (stream, slot) = conn.into_parts();
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    crate::support::listener::set_send_timeout(&stream, limits.idle_timeout)?;
    let stopping = Arc::clone(&shared.stopping);
    std::thread::Builder::new()
        .name("tap-query".into())
        .spawn(move || run(&job, stream, &slot, &stopping, permit))?;
    Ok(())
}

/// Runs a job on its own thread and answers it.
fn run(
    job: &Job,
    mut stream: StdTcpStream,
    slot: &Slot,
    stopping: &Arc<AtomicBool>,
    _permit: OwnedSemaphorePermit,
) {
    // SAFETY: plain system calls on this thread's own id.
    unsafe {
        libc::setpriority(
            libc::PRIO_PROCESS,
            libc::gettid().cast_unsigned(),
            QUERY_NICE,
        );
    }
    let peer = stream.peer_addr().ok();
    let result = match &job.what {
        What::Flows => flows(job, &mut stream),
        What::Packets(format) => packets(job, *format, &stream, stopping),
    };
    if let Err(e) = result {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            slot.timed_out();
        }
        debug!(peer = ?peer, error = %e, "query ended early");
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

fn flows(job: &Job, stream: &mut StdTcpStream) -> io::Result<()> {
    let reply = match query::flows(&job.dir, &job.selection) {
        Ok((flows, _)) => {
            let list: Vec<serde_json::Value> =
                flows.iter().map(crate::store::cli::flow_json).collect();
            let mut body = serde_json::Value::Array(list).to_string();
            body.push('\n');
            let mut bytes = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            bytes.extend_from_slice(body.as_bytes());
            bytes
        }
        Err(e) => {
            warn!(dir = %job.dir.display(), error = %e, "flow query failed");
            Reply::new("500 Internal Server Error", one_line(&e)).bytes()
        }
    };
    stream.write_all(&reply)
}

fn packets(
    job: &Job,
    format: Format,
    stream: &StdTcpStream,
    stopping: &Arc<AtomicBool>,
) -> io::Result<()> {
    let (content_type, name) = match format {
        Format::Pcap => ("application/vnd.tcpdump.pcap", "tap-query.pcap"),
        Format::Pcapng => ("application/x-pcapng", "tap-query.pcapng"),
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    );
    let started = Arc::new(AtomicBool::new(false));
    let body = Body {
        stream: stream.try_clone()?,
        head: Some(head.into_bytes()),
        started: Arc::clone(&started),
        stopping: Arc::clone(stopping),
    };
    let result = query::packets(
        &job.dir,
        &job.selection,
        format,
        query::Sink::Writer(Box::new(body)),
    );
    let mut stream = stream;
    match result {
        Ok(stats) => {
            debug!(
                packets = stats.packets,
                blocks = stats.blocks_read,
                "query answered"
            );
            if !started.load(Relaxed) {
                // Nothing was written (no output at all): still a valid, empty answer.
                let mut b = Body {
                    stream: stream.try_clone()?,
                    head: Some(head_only(content_type)),
                    started,
                    stopping: Arc::clone(stopping),
                };
                b.write_all(&[])?;
            }
            Ok(())
        }
        Err(e) if !started.load(Relaxed) => {
            warn!(dir = %job.dir.display(), error = %e, "query failed");
            stream.write_all(&Reply::new("500 Internal Server Error", one_line(&e)).bytes())
        }
        Err(e) => Err(io::Error::other(one_line(&e))),
    }
}

fn head_only(content_type: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
}

/// The response body of a packet query: the head goes first, with the first bytes.
struct Body {
    stream: StdTcpStream,
    head: Option<Vec<u8>>,
    started: Arc<AtomicBool>,
    stopping: Arc<AtomicBool>,
}

impl io::Write for Body {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.stopping.load(Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the query server stopped",
            ));
        }
        if let Some(head) = self.head.take() {
            self.started.store(true, Relaxed);
            self.stream.write_all(&head)?;
        }
        if buf.is_empty() {
            return Ok(0);
        }
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// The taps of `config` that write a store.
#[must_use]
pub fn stores(config: &crate::settings::agent_file::AgentConfig) -> Stores {
    config
        .taps
        .iter()
        .filter_map(|t| {
            t.capture
                .output
                .store
                .as_ref()
                .map(|s| (t.name.clone(), s.dir.clone()))
        })
        .collect()
}

/// The address a query server listens on, for logs.
#[must_use]
pub fn describe(q: Option<&QueryListen>) -> String {
    q.map_or_else(|| "off".to_string(), |q| SocketAddr::to_string(&q.addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stores() -> Stores {
        vec![("vms".into(), PathBuf::from("/var/cap"))]
    }

    fn get(target: &str, extra: &str) -> Vec<u8> {
        format!("GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").into_bytes()
    }

    #[test]
    fn routes_a_query_with_its_selection() {
        let job = route(
            &get("/query?expr=udp+and+port%2053&since=-15m&format=pcapng", ""),
            None,
            &stores(),
        )
        .unwrap();
        assert_eq!(job.what, What::Packets(Format::Pcapng));
        assert_eq!(job.dir, PathBuf::from("/var/cap"));
        assert_eq!(job.selection.expr, "udp and port 53");
        assert!(job.selection.since_ns.is_some());
        let job = route(&get("/flows", ""), None, &stores()).unwrap();
        assert_eq!(job.what, What::Flows);
        assert_eq!(job.selection.expr, "");
    }

    #[test]
    fn refusals() {
        let status =
            |head: &[u8], token: Option<&str>| route(head, token, &stores()).unwrap_err().status;
        assert_eq!(
            status(&get("/query?expr=port+99999", ""), None),
            "400 Bad Request"
        );
        assert_eq!(status(&get("/query?expr=(", ""), None), "400 Bad Request");
        assert_eq!(
            status(&get("/query?since=yesterday", ""), None),
            "400 Bad Request"
        );
        assert_eq!(
            status(&get("/query?expr=tcp&expr=udp", ""), None),
            "400 Bad Request"
        );
        assert_eq!(status(&get("/query?foo=1", ""), None), "400 Bad Request");
        assert_eq!(
            status(&get("/flows?format=pcap", ""), None),
            "400 Bad Request"
        );
        assert_eq!(
            status(&get("/query?format=csv", ""), None),
            "400 Bad Request"
        );
        assert_eq!(status(&get("/query?expr=%ff", ""), None), "400 Bad Request");
        assert_eq!(status(&get("/query?tap=other", ""), None), "404 Not Found");
        assert_eq!(status(&get("/metrics", ""), None), "404 Not Found");
        assert_eq!(
            status(b"POST /query HTTP/1.1\r\n\r\n", None),
            "405 Method Not Allowed"
        );
        let tok = Some("s3cret");
        assert_eq!(status(&get("/query", ""), tok), "401 Unauthorized");
        assert_eq!(
            status(&get("/query", "Authorization: Bearer s3cres\r\n"), tok),
            "401 Unauthorized"
        );
        assert_eq!(
            status(&get("/query", "Authorization: Basic s3cret\r\n"), tok),
            "401 Unauthorized"
        );
        // The token comes before everything else: no path or parameter is told apart.
        assert_eq!(status(&get("/nothing?x", ""), tok), "401 Unauthorized");
        assert!(
            route(
                &get("/query", "authorization: bearer s3cret\r\n"),
                tok,
                &stores()
            )
            .is_ok()
        );
        let r = route(&get("/query?expr=(", ""), None, &stores()).unwrap_err();
        assert_eq!(r.text.matches('\n').count(), 1, "{r:?}");
    }

    #[test]
    fn the_store_is_named_when_there_are_several() {
        let two = vec![
            ("a".to_string(), PathBuf::from("/a")),
            ("b".to_string(), PathBuf::from("/b")),
        ];
        let r = route(&get("/query", ""), None, &two).unwrap_err();
        assert_eq!(r.status, "400 Bad Request");
        assert!(r.text.contains("a, b"), "{r:?}");
        let job = route(&get("/query?tap=b", ""), None, &two).unwrap();
        assert_eq!(job.dir, PathBuf::from("/b"));
        let none = route(&get("/query", ""), None, &[]).unwrap_err();
        assert_eq!(none.status, "404 Not Found");
    }
}
