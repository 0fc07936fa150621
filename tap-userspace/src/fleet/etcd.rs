//! The etcd client the agent and `tap session` share: endpoints over http or https (a CA file,
//! optionally a client certificate), an optional user and password, and a bound on every wait.
//!
//! - Unary requests (get, put, delete, txn, lease grant) each end within
//!   [`EtcdSettings::request_timeout`] or fail with [`EtcdError::Timeout`].
//! - [`Etcd::watch_prefix`] starts at a revision, and [`PrefixWatch::resume_revision`] says where
//!   to start again after the stream breaks, so no change is missed or seen twice; a revision
//!   etcd has compacted away is [`EtcdError::Compacted`] (read the prefix anew).
//! - [`Lease`] keeps itself alive in a task and says when it was lost.
//!
//! Speaks the etcd v3 API (etcd 3.4 and later) through `etcd-client` (tonic, rustls with ring).

use std::{path::PathBuf, sync::Arc, time::Duration};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions,
    Identity, PutOptions, TlsOptions, Txn, TxnOp, WatchOptions, WatchStream,
};
use tokio::sync::watch;

use super::keys::Keys;

/// Time to set up a connection to one endpoint.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time a unary request may take.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest certificate or key file read, in bytes.
const MAX_PEM: u64 = 1 << 20;

/// How to reach etcd: the raw values of `--etcd`/`TAP_ETCD`, `--etcd-ca`, ... or `[fleet]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// `http://HOST:PORT` or `https://HOST:PORT`, at least one, all of one scheme.
    pub endpoints: Vec<String>,
    /// PEM CA bundle that signed the members' certificates (required for https).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for members that check clients (`--client-cert-auth`).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// etcd user (with auth enabled) and its password.
    pub user: Option<String>,
    pub password: Option<String>,
    /// Root of the key layout ([`Keys`]).
    pub root: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for EtcdSettings {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            user: None,
            password: None,
            root: super::keys::DEFAULT_ROOT.to_string(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// Errors talking to etcd. One line each, naming the operation and key.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("no etcd endpoint: give --etcd URL,... or TAP_ETCD")]
    NoEndpoint,
    #[error("etcd endpoint '{endpoint}': {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("etcd TLS: {0}")]
    Tls(String),
    #[error("cannot read {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to etcd at {endpoints}: {reason}")]
    Connect { endpoints: String, reason: String },
    #[error("etcd {op} {key}: no answer within {after:?}")]
    Timeout {
        op: &'static str,
        key: String,
        after: Duration,
    },
    #[error("etcd refused {op} {key}: permission denied{}", user.as_ref().map(|u| format!(" for user '{u}'")).unwrap_or_default())]
    Denied {
        op: &'static str,
        key: String,
        user: Option<String>,
    },
    #[error("etcd {op} {key}: {reason}")]
    Request {
        op: &'static str,
        key: String,
        reason: String,
    },
    #[error("etcd watch of {prefix}: revision {revision} was compacted; read the prefix again")]
    Compacted { prefix: String, revision: i64 },
    #[error("etcd watch of {prefix}: {reason}")]
    Watch { prefix: String, reason: String },
}

/// A one-line reason from an etcd-client error (the gRPC message, not its debug dump).
fn reason(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.message().to_string(),
        other => crate::support::excerpt::one_line(other),
    }
}

impl EtcdSettings {
    /// Checks the endpoints and the TLS and user settings go together.
    ///
    /// # Errors
    /// The first that does not, in one line.
    pub fn check(&self) -> Result<(), EtcdError> {
        if self.endpoints.is_empty() {
            return Err(EtcdError::NoEndpoint);
        }
        let https = crate::support::endpoint::scheme(self.endpoints.iter().map(String::as_str))
            .map_err(|(i, reason)| EtcdError::Endpoint {
                endpoint: self.endpoints[i].clone(),
                reason: reason.to_string(),
            })?;
        let https = https.unwrap_or(false);
        if https && self.ca_file.is_none() {
            return Err(EtcdError::Tls(
                "https endpoints need the CA that signed the members' certificates (--etcd-ca)"
                    .into(),
            ));
        }
        if !https && (self.ca_file.is_some() || self.cert_file.is_some()) {
            return Err(EtcdError::Tls(
                "a CA or client certificate needs https:// endpoints".into(),
            ));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(EtcdError::Tls(
                "a client certificate needs its key and a key its certificate".into(),
            ));
        }
        if self.password.is_some() && self.user.is_none() {
            return Err(EtcdError::Connect {
                endpoints: self.endpoints.join(","),
                reason: "a password without a user".into(),
            });
        }
        Ok(())
    }

    fn read_pem(path: &PathBuf) -> Result<Vec<u8>, EtcdError> {
        use std::io::Read as _;
        let file = std::fs::File::open(path).map_err(|source| EtcdError::File {
            path: path.clone(),
            source,
        })?;
        let mut pem = Vec::new();
        file.take(MAX_PEM + 1)
            .read_to_end(&mut pem)
            .map_err(|source| EtcdError::File {
                path: path.clone(),
                source,
            })?;
        if pem.len() as u64 > MAX_PEM {
            return Err(EtcdError::Tls(format!(
                "{} is larger than {MAX_PEM} bytes: not a PEM file",
                path.display()
            )));
        }
        Ok(pem)
    }

    fn options(&self) -> Result<ConnectOptions, EtcdError> {
        let mut o = ConnectOptions::new()
            .with_connect_timeout(self.connect_timeout)
            // HTTP/2 pings notice a member that went away under a long-lived watch.
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            .with_keep_alive_while_idle(true)
            // A member cut off from the others answers nothing rather than stale data.
            .with_require_leader(true)
            .with_auto_token_refresh(true);
        if let Some(ca) = &self.ca_file {
            let mut tls =
                TlsOptions::new().ca_certificate(Certificate::from_pem(Self::read_pem(ca)?));
            if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
                tls = tls.identity(Identity::from_pem(
                    Self::read_pem(cert)?,
                    Self::read_pem(key)?,
                ));
            }
            o = o.with_tls(tls);
        }
        if let Some(user) = &self.user {
            o = o.with_user(user.clone(), self.password.clone().unwrap_or_default());
        }
        Ok(o)
    }
}

/// One key and value read from etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub mod_revision: i64,
    /// The lease it is attached to, 0 for none.
    pub lease: i64,
}

/// A prefix as of one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The store's revision the read saw: watch from `revision + 1` to follow it.
    pub revision: i64,
    pub kvs: Vec<Kv>,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        mod_revision: i64,
    },
    Delete {
        key: Vec<u8>,
        mod_revision: i64,
    },
}

/// A connected client, with the key layout.
#[derive(Clone)]
pub struct Etcd {
    client: Client,
    keys: Keys,
    timeout: Duration,
    user: Option<String>,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("keys", &self.keys)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Etcd {
    /// Connects (and authenticates, with a user) and checks that a member answers, all within
    /// the connect and request timeouts.
    ///
    /// # Errors
    /// Bad settings, unreadable TLS files, no member answering, a refused user.
    pub async fn connect(settings: &EtcdSettings) -> Result<Self, EtcdError> {
        settings.check()?;
        let options = settings.options()?;
        let endpoints = settings.endpoints.join(",");
        let bound = settings.connect_timeout + settings.request_timeout;
        let deadline = tokio::time::Instant::now() + bound;
        // With a user, connecting authenticates at once, on whichever member the balancer
        // picked: one that is down is tried again, as requests are.
        let client = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let attempt = tokio::time::timeout(
                left,
                Client::connect(&settings.endpoints, Some(options.clone())),
            )
            .await
            .map_err(|_| EtcdError::Connect {
                endpoints: endpoints.clone(),
                reason: format!("no answer within {bound:?}"),
            })?;
            match attempt {
                Ok(c) => break c,
                Err(e) if not_sent(&e) && tokio::time::Instant::now() + RETRY_PAUSE < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => {
                    return Err(EtcdError::Connect {
                        endpoints: endpoints.clone(),
                        reason: reason(&e),
                    });
                }
            }
        };
        let etcd = Self {
            client,
            keys: Keys::new(&settings.root),
            timeout: settings.request_timeout,
            user: settings.user.clone(),
        };
        // The connection is made lazily: a first request shows whether anyone answers.
        etcd.probe().await.map_err(|e| match e {
            EtcdError::Denied { .. } => e,
            other => EtcdError::Connect {
                endpoints,
                reason: match other {
                    EtcdError::Request { reason, .. } => reason,
                    EtcdError::Timeout { after, .. } => format!("no answer within {after:?}"),
                    o => o.to_string(),
                },
            },
        })?;
        Ok(etcd)
    }

    /// The key layout.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The underlying client, for what the wrapper does not cover (users and roles).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The bound on each request.
    pub fn request_timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `call` (given a client) within the request timeout. A request that never left (no
    /// connection to the member the balancer picked: it is down) is tried again, on another
    /// member when one answers, until the timeout; nothing is retried once it may have reached
    /// a member.
    async fn bounded<T, F, Fut>(&self, op: &'static str, key: &str, call: F) -> Result<T, EtcdError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, call(self.client.clone())).await {
                Err(_) => {
                    return Err(EtcdError::Timeout {
                        op,
                        key: key.to_string(),
                        after: self.timeout,
                    });
                }
                Ok(Err(e)) if denied(&e) => {
                    return Err(EtcdError::Denied {
                        op,
                        key: key.to_string(),
                        user: self.user.clone(),
                    });
                }
                Ok(Err(e))
                    if not_sent(&e) && tokio::time::Instant::now() + RETRY_PAUSE < deadline =>
                {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Ok(Err(e)) => {
                    return Err(EtcdError::Request {
                        op,
                        key: key.to_string(),
                        reason: reason(&e),
                    });
                }
                Ok(Ok(v)) => return Ok(v),
            }
        }
    }

    /// A read any user may make that needs a working member (a count of nothing).
    async fn probe(&self) -> Result<(), EtcdError> {
        self.bounded("status", "", |mut c| async move { c.status().await })
            .await
            .map(|_| ())
            .or_else(|e| match e {
                // A user without maintenance rights still proves the member answers.
                EtcdError::Denied { .. } => Ok(()),
                other => Err(other),
            })
    }

    /// The value at `key`, if any.
    ///
    /// # Errors
    /// Timeout, permission, or the member's error.
    pub async fn get(&self, key: &str) -> Result<Option<Kv>, EtcdError> {
        let mut r = self
            .bounded("get", key, |mut c| async move { c.get(key, None).await })
            .await?;
        Ok(r.take_kvs().into_iter().next().map(kv))
    }

    /// Every key under `prefix`, with the revision of the read.
    ///
    /// # Errors
    /// Timeout, permission, or the member's error.
    pub async fn get_prefix(&self, prefix: &str) -> Result<Snapshot, EtcdError> {
        let mut r = self
            .bounded("get", prefix, |mut c| async move {
                c.get(prefix, Some(GetOptions::new().with_prefix())).await
            })
            .await?;
        let revision = r.header().map_or(0, etcd_client::ResponseHeader::revision);
        Ok(Snapshot {
            revision,
            kvs: r.take_kvs().into_iter().map(kv).collect(),
        })
    }

    /// Writes `value` at `key`, attached to `lease` (0: none); returns the revision.
    ///
    /// # Errors
    /// Timeout, permission, or the member's error.
    pub async fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<i64, EtcdError> {
        let options = (lease != 0).then(|| PutOptions::new().with_lease(lease));
        let r = self
            .bounded("put", key, |mut c| {
                let options = options.clone();
                async move { c.put(key, value, options).await }
            })
            .await?;
        Ok(r.header().map_or(0, etcd_client::ResponseHeader::revision))
    }

    /// Writes `value` at `key` only if nothing is there: `false` when something was.
    ///
    /// # Errors
    /// Timeout, permission, or the member's error.
    pub async fn create(&self, key: &str, value: &[u8]) -> Result<bool, EtcdError> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.to_vec(), None)]);
        Ok(self.txn("create", key, txn).await?.succeeded())
    }

    /// Runs a transaction; `op` and `key` name it in errors.
    ///
    /// # Errors
    /// Timeout, permission, or the member's error.
    pub async fn txn(
        &self,
        op: &'static str,
        key: &str,
        txn: Txn,
    ) -> Result<etcd_client::TxnResponse, EtcdError> {
        self.bounded(op, key, |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    /// Deletes `key`; returns how many keys went (0 or 1).
    ///
    /// # Errors
    /// Timeout, permission, or the member's error.
    pub async fn delete(&self, key: &str) -> Result<i64, EtcdError> {
        let r = self
            .bounded(
                "delete",
                key,
                |mut c| async move { c.delete(key, None).await },
            )
            .await?;
        Ok(r.deleted())
    }

    /// Deletes every key under `prefix`; returns how many went.
    ///
    /// # Errors
    /// Timeout, permission, or the member's error.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<i64, EtcdError> {
        let r = self
            .bounded("delete", prefix, |mut c| async move {
                c.delete(prefix, Some(DeleteOptions::new().with_prefix()))
                    .await
            })
            .await?;
        Ok(r.deleted())
    }

    /// Follows every change under `prefix` from `revision` on (inclusive; use a snapshot's
    /// revision + 1). Establishing the watch is bounded; the stream then lasts until it breaks.
    ///
    /// # Errors
    /// Timeout, permission (a watch the user may not read is canceled at once), a compacted
    /// revision.
    pub async fn watch_prefix(
        &self,
        prefix: &str,
        revision: i64,
    ) -> Result<PrefixWatch, EtcdError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision)
            .with_progress_notify();
        let mut stream = self
            .bounded("watch", prefix, |mut c| {
                let options = options.clone();
                async move { c.watch(prefix, Some(options)).await }
            })
            .await?;
        // The first answer says whether the watch was created or refused.
        let first = tokio::time::timeout(self.timeout, stream.message())
            .await
            .map_err(|_| EtcdError::Timeout {
                op: "watch",
                key: prefix.to_string(),
                after: self.timeout,
            })?
            .map_err(|e| EtcdError::Watch {
                prefix: prefix.to_string(),
                reason: reason(&e),
            })?;
        let mut w = PrefixWatch {
            stream,
            prefix: prefix.to_string(),
            next: revision,
            pending: Vec::new(),
        };
        match first {
            None => {
                return Err(EtcdError::Watch {
                    prefix: prefix.to_string(),
                    reason: "the stream ended before the watch was created".into(),
                });
            }
            Some(r) => w.absorb(&r)?,
        }
        Ok(w)
    }

    /// Grants a lease of `ttl` (whole seconds, at least 1) and keeps it alive in a task until
    /// [`Lease::revoke`] or drop.
    ///
    /// # Errors
    /// Timeout, or the member's error.
    pub async fn grant_lease(&self, ttl: Duration) -> Result<Lease, EtcdError> {
        // etcd's leases are whole seconds, at most about 9e10 (its MaxLeaseTTL).
        let whole = ttl.as_secs().clamp(1, 90_000_000_000);
        let secs = i64::try_from(whole).expect("clamped below i64::MAX");
        let r = self
            .bounded("lease grant", "", |mut c| async move {
                c.lease_grant(secs, None).await
            })
            .await?;
        let id = r.id();
        let (lost_tx, lost) = watch::channel(None);
        let keeper = tokio::spawn(keep_alive(
            self.client.clone(),
            id,
            Duration::from_secs(whole),
            lost_tx,
        ));
        Ok(Lease {
            id,
            ttl: Duration::from_secs(whole),
            lost,
            keeper: Some(Arc::new(KeeperTask(keeper))),
            client: self.client.clone(),
            timeout: self.timeout,
        })
    }
}

/// Pause between tries of a request that found no connection.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The request never reached a member: connecting failed (the member is down or unreachable).
fn not_sent(e: &etcd_client::Error) -> bool {
    let text = match e {
        etcd_client::Error::GRpcStatus(s) => s.message().to_string(),
        other => other.to_string(),
    };
    text.contains("connect error") || text.contains("error trying to connect")
}

/// etcd says "etcdserver: permission denied" (gRPC `PermissionDenied`) for a key the user's roles
/// do not cover.
fn denied(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("permission denied"))
}

fn kv(k: etcd_client::KeyValue) -> Kv {
    let (mod_revision, lease) = (k.mod_revision(), k.lease());
    let (key, value) = k.into_key_value();
    Kv {
        key,
        value,
        mod_revision,
        lease,
    }
}

/// A watch on a prefix.
#[derive(Debug)]
pub struct PrefixWatch {
    stream: WatchStream,
    prefix: String,
    /// The first revision not yet delivered.
    next: i64,
    pending: Vec<WatchEvent>,
}

impl PrefixWatch {
    /// Where a new watch must start so that nothing is missed or delivered twice.
    #[must_use]
    pub fn resume_revision(&self) -> i64 {
        self.next
    }

    fn absorb(&mut self, r: &etcd_client::WatchResponse) -> Result<(), EtcdError> {
        if r.compact_revision() > 0 {
            return Err(EtcdError::Compacted {
                prefix: self.prefix.clone(),
                revision: self.next,
            });
        }
        if r.canceled() {
            let why = r.cancel_reason();
            return Err(if why.contains("permission denied") {
                EtcdError::Denied {
                    op: "watch",
                    key: self.prefix.clone(),
                    user: None,
                }
            } else {
                EtcdError::Watch {
                    prefix: self.prefix.clone(),
                    reason: if why.is_empty() {
                        "canceled".into()
                    } else {
                        why.to_string()
                    },
                }
            });
        }
        for e in r.events() {
            let Some(k) = e.kv() else { continue };
            let mod_revision = k.mod_revision();
            self.pending.push(match e.event_type() {
                EventType::Put => WatchEvent::Put {
                    key: k.key().to_vec(),
                    value: k.value().to_vec(),
                    mod_revision,
                },
                EventType::Delete => WatchEvent::Delete {
                    key: k.key().to_vec(),
                    mod_revision,
                },
            });
            self.next = self.next.max(mod_revision + 1);
        }
        // A progress notification: nothing under the prefix changed up to this revision.
        if r.events().is_empty() {
            if let Some(h) = r.header() {
                self.next = self.next.max(h.revision() + 1);
            }
        }
        Ok(())
    }

    /// The next changes, in revision order (one response's worth). Waits as long as nothing
    /// changes; cancel-safe.
    ///
    /// # Errors
    /// The stream broke (resume from [`PrefixWatch::resume_revision`] with a new watch), or the
    /// revision was compacted (read the prefix again).
    pub async fn next(&mut self) -> Result<Vec<WatchEvent>, EtcdError> {
        loop {
            if !self.pending.is_empty() {
                return Ok(std::mem::take(&mut self.pending));
            }
            let r = self.stream.message().await.map_err(|e| EtcdError::Watch {
                prefix: self.prefix.clone(),
                reason: reason(&e),
            })?;
            let Some(r) = r else {
                return Err(EtcdError::Watch {
                    prefix: self.prefix.clone(),
                    reason: "the stream ended".into(),
                });
            };
            self.absorb(&r)?;
        }
    }
}

struct KeeperTask(tokio::task::JoinHandle<()>);

impl Drop for KeeperTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A lease kept alive in the background. Keys put with [`Lease::id`] vanish when it ends: on
/// [`Lease::revoke`], or `ttl` after the keep-alives stop (the process died, etcd was out of
/// reach).
pub struct Lease {
    id: i64,
    ttl: Duration,
    lost: watch::Receiver<Option<String>>,
    keeper: Option<Arc<KeeperTask>>,
    client: Client,
    timeout: Duration,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("id", &self.id)
            .field("ttl", &self.ttl)
            .field("lost", &*self.lost.borrow())
            .finish_non_exhaustive()
    }
}

impl Lease {
    pub fn id(&self) -> i64 {
        self.id
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Why the lease is gone, once it is: its keys are gone too and must be written again under
    /// a new lease.
    pub fn lost(&self) -> Option<String> {
        self.lost.borrow().clone()
    }

    /// Waits until the lease is lost; returns why.
    pub async fn wait_lost(&mut self) -> String {
        loop {
            if let Some(why) = self.lost.borrow_and_update().clone() {
                return why;
            }
            if self.lost.changed().await.is_err() {
                return "the keep-alive task ended".into();
            }
        }
    }

    /// Ends the lease now: its keys go at once.
    ///
    /// # Errors
    /// Timeout or the member's error (the lease then ends by itself after its time to live).
    pub async fn revoke(mut self) -> Result<(), EtcdError> {
        self.keeper.take();
        let mut c = self.client.clone();
        let id = self.id;
        match tokio::time::timeout(self.timeout, c.lease_revoke(id)).await {
            Err(_) => Err(EtcdError::Timeout {
                op: "lease revoke",
                key: format!("{id:x}"),
                after: self.timeout,
            }),
            Ok(Err(e)) => Err(EtcdError::Request {
                op: "lease revoke",
                key: format!("{id:x}"),
                reason: reason(&e),
            }),
            Ok(Ok(_)) => Ok(()),
        }
    }
}

/// Refreshes the lease every third of its time to live; re-opens the keep-alive stream when it
/// breaks, and gives up (reporting why) once etcd says the lease is gone or the time to live has
/// passed without a refresh.
async fn keep_alive(client: Client, id: i64, ttl: Duration, lost: watch::Sender<Option<String>>) {
    let every = (ttl / 3).max(Duration::from_millis(300));
    let mut last_ok = tokio::time::Instant::now();
    let mut stream: Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)> = None;
    loop {
        if last_ok.elapsed() > ttl {
            let _ = lost.send(Some(format!(
                "not refreshed for {ttl:?} (etcd out of reach)"
            )));
            return;
        }
        if stream.is_none() {
            let mut c = client.clone();
            match tokio::time::timeout(every, c.lease_keep_alive(id)).await {
                Ok(Ok(s)) => {
                    last_ok = tokio::time::Instant::now();
                    stream = Some(s);
                }
                Ok(Err(e)) if reason(&e).contains("lease not found") => {
                    let _ = lost.send(Some("etcd says the lease expired".into()));
                    return;
                }
                Ok(Err(_)) | Err(_) => {
                    tokio::time::sleep(every / 2).await;
                    continue;
                }
            }
        }
        tokio::time::sleep(every).await;
        let Some((keeper, answers)) = stream.as_mut() else {
            continue;
        };
        let refreshed = async {
            keeper.keep_alive().await?;
            answers.message().await
        };
        match tokio::time::timeout(every, refreshed).await {
            Ok(Ok(Some(r))) if r.ttl() > 0 => last_ok = tokio::time::Instant::now(),
            Ok(Ok(Some(_))) => {
                let _ = lost.send(Some("etcd says the lease expired".into()));
                return;
            }
            Ok(Ok(None) | Err(_)) | Err(_) => stream = None,
        }
    }
}
