//! `tap session ...`: create, list, show and delete fleet sessions, keep the ownership map, set
//! up etcd's roles and users. Its flags are read in `settings::session_flags`.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

pub use crate::settings::session_flags::{
    CreateArgs, DirectionArg, EtcdArgs, OwnerCommand, SessionArgs, SessionCommand, SetupAuthArgs,
};

use super::{
    auth::{self, AuthSetup},
    etcd::{Etcd, EtcdError, EtcdSettings},
    keys::Keys,
    owners::{Ownership, RawOwner},
    session::{
        Direction, FORMAT_VERSION, RawSession, Session, SessionError, SessionId, Source,
        check_name, validate,
    },
    status::{Counters, Status},
};

/// Largest password file read, in bytes.
const MAX_PASSWORD_FILE: u64 = 4096;

/// Errors of `tap session`, one line each.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error("session {id}: {source}")]
    Session {
        id: String,
        #[source]
        source: SessionError,
    },
    #[error("session {0} exists: delete it first")]
    Exists(SessionId),
    #[error("no session {0}")]
    NotFound(SessionId),
    #[error("no tenant: give --tenant (or --etcd-user, whose name is the tenant's)")]
    NoTenant,
    #[error("cannot read {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{0}")]
    Usage(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("writing the output: {0}")]
    Output(#[source] std::io::Error),
}

fn read_secret(path: &Path) -> Result<String, CommandError> {
    use std::io::Read as _;
    let fail = |reason: String| CommandError::File {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let mut text = String::new();
    file.take(MAX_PASSWORD_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| fail(e.to_string()))?;
    if text.len() as u64 > MAX_PASSWORD_FILE {
        return Err(fail(format!("longer than {MAX_PASSWORD_FILE} bytes")));
    }
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

impl EtcdArgs {
    /// The settings these flags describe (files are read here, bounded).
    ///
    /// # Errors
    /// An unreadable password file or a timeout that is not a positive number.
    pub fn settings(&self) -> Result<EtcdSettings, CommandError> {
        let (user, mut password) = match self.user.as_deref().map(|u| u.split_once(':')) {
            Some(Some((u, p))) => (Some(u.to_string()), Some(p.to_string())),
            Some(None) => (self.user.clone(), None),
            None => (None, None),
        };
        if let Some(f) = &self.password_file {
            password = Some(read_secret(f)?);
        } else if password.is_none() && user.is_some() {
            password = std::env::var("TAP_ETCD_PASSWORD").ok();
        }
        if !(self.timeout.is_finite() && self.timeout > 0.0 && self.timeout <= 3600.0) {
            return Err(CommandError::Usage(
                "--etcd-timeout must be a number of seconds from 0 to 3600".into(),
            ));
        }
        let timeout = Duration::from_secs_f64(self.timeout);
        Ok(EtcdSettings {
            endpoints: self
                .endpoints
                .iter()
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect(),
            ca_file: self.ca.clone(),
            cert_file: self.cert.clone(),
            key_file: self.key.clone(),
            user,
            password,
            root: self.root.clone(),
            connect_timeout: timeout.min(super::etcd::DEFAULT_CONNECT_TIMEOUT),
            request_timeout: timeout,
        })
    }

    fn tenant(&self, tenant: Option<&String>) -> Result<String, CommandError> {
        let t = tenant
            .cloned()
            .or_else(|| {
                self.user
                    .as_deref()
                    .map(|u| u.split_once(':').map_or(u, |(u, _)| u).to_string())
            })
            .ok_or(CommandError::NoTenant)?;
        check_name("tenant", &t).map_err(|source| CommandError::Session {
            id: t.clone(),
            source,
        })?;
        Ok(t)
    }
}

/// Runs `tap session ...` to completion, printing to `out`.
///
/// # Errors
/// What went wrong, in one line.
pub fn main(args: &SessionArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CommandError::Runtime)?;
    runtime.block_on(run(args, out))
}

fn id_of(args: &EtcdArgs, tenant: Option<&String>, name: &str) -> Result<SessionId, CommandError> {
    let tenant = args.tenant(tenant)?;
    check_name("name", name).map_err(|source| CommandError::Session {
        id: format!("{tenant}/{name}"),
        source,
    })?;
    Ok(SessionId {
        tenant,
        name: name.to_string(),
    })
}

/// `tap session ...` on a runtime.
///
/// # Errors
/// What went wrong, in one line.
pub async fn run(args: &SessionArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let w = |out: &mut dyn Write, text: String| {
        out.write_all(text.as_bytes()).map_err(CommandError::Output)
    };
    // Validate before connecting: a bad session is refused even with etcd down.
    let created = match &args.command {
        SessionCommand::Create(c) => {
            let id = id_of(&args.etcd, c.tenant.as_ref(), &c.name)?;
            let raw = RawSession {
                version: FORMAT_VERSION,
                tenant: id.tenant.clone(),
                name: id.name.clone(),
                source: c.source.clone(),
                direction: match c.direction {
                    DirectionArg::In => Direction::In,
                    DirectionArg::Out => Direction::Out,
                    DirectionArg::Both => Direction::Both,
                },
                filter: c.filter.clone(),
                snaplen: c.snaplen,
                priority: c.priority,
                target: c.target.clone(),
            };
            Some(validate(raw).map_err(|source| CommandError::Session {
                id: id.to_string(),
                source,
            })?)
        }
        _ => None,
    };
    let settings = args.etcd.settings()?;
    let etcd = Etcd::connect(&settings).await?;
    let keys = etcd.keys().clone();
    match &args.command {
        SessionCommand::Create(_) => {
            let s = created.expect("validated above");
            let id = s.id();
            if !etcd
                .create(&keys.session(&id), s.to_json().as_bytes())
                .await?
            {
                return Err(CommandError::Exists(id));
            }
            w(out, format!("created {id}\n"))?;
        }
        SessionCommand::List { tenant, json } => {
            let prefix = match tenant {
                Some(t) => keys.tenant_sessions(&args.etcd.tenant(Some(t))?),
                None => match &settings.user {
                    // A tenant may read only its own prefix.
                    Some(u) if u != "root" && u != auth::OPERATOR && u != auth::AGENT => {
                        keys.tenant_sessions(&args.etcd.tenant(None)?)
                    }
                    _ => keys.sessions(),
                },
            };
            let snap = etcd.get_prefix(&prefix).await?;
            let mut rows: Vec<(String, Result<Session, String>)> = Vec::new();
            for kv in &snap.kvs {
                let tail = Keys::tail(&kv.key, &keys.sessions()).map_or_else(
                    || String::from_utf8_lossy(&kv.key).into_owned(),
                    str::to_string,
                );
                let parsed = match Keys::session_id(&tail) {
                    None => Err("the key is not sessions/TENANT/NAME".to_string()),
                    Some(id) => Session::decode(&id, &kv.value).map_err(|e| e.to_string()),
                };
                rows.push((tail, parsed));
            }
            if *json {
                let all: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|(key, r)| match r {
                        Ok(s) => serde_json::to_value(&s.raw).expect("serialisable"),
                        Err(e) => serde_json::json!({"key": key, "invalid": e}),
                    })
                    .collect();
                w(
                    out,
                    format!(
                        "{}\n",
                        serde_json::to_string_pretty(&all).expect("serialisable")
                    ),
                )?;
            } else {
                for (key, r) in rows {
                    match r {
                        Ok(s) => w(
                            out,
                            format!(
                                "{key}  {}  {}  priority {}  -> {}{}\n",
                                s.raw.source,
                                s.raw.direction.name(),
                                s.raw.priority,
                                s.raw.target,
                                if s.raw.filter.trim().is_empty() {
                                    String::new()
                                } else {
                                    format!("  filter '{}'", s.raw.filter)
                                }
                            ),
                        )?,
                        Err(e) => w(out, format!("{key}  invalid: {e}\n"))?,
                    }
                }
            }
        }
        SessionCommand::Show { name, tenant, json } => {
            let id = id_of(&args.etcd, tenant.as_ref(), name)?;
            let Some(kv) = etcd.get(&keys.session(&id)).await? else {
                return Err(CommandError::NotFound(id));
            };
            let session = Session::decode(&id, &kv.value);
            let statuses = etcd.get_prefix(&keys.session_statuses(&id)).await?;
            let mut hosts: Vec<(String, Result<Status, String>)> = Vec::new();
            for s in &statuses.kvs {
                let host = Keys::tail(&s.key, &keys.session_statuses(&id))
                    .unwrap_or("?")
                    .to_string();
                hosts.push((host, Status::decode(&s.value)));
            }
            let mut total = Counters::default();
            for (_, s) in &hosts {
                if let Ok(s) = s {
                    total += s.counters;
                }
            }
            if *json {
                let v = serde_json::json!({
                    "session": match &session {
                        Ok(s) => serde_json::to_value(&s.raw).expect("serialisable"),
                        Err(e) => serde_json::json!({"invalid": e.to_string()}),
                    },
                    "hosts": hosts.iter().map(|(h, s)| match s {
                        Ok(s) => serde_json::to_value(s).expect("serialisable"),
                        Err(e) => serde_json::json!({"host": h, "invalid": e}),
                    }).collect::<Vec<_>>(),
                    "total": total,
                });
                w(
                    out,
                    format!(
                        "{}\n",
                        serde_json::to_string_pretty(&v).expect("serialisable")
                    ),
                )?;
            } else {
                match &session {
                    Ok(s) => w(
                        out,
                        format!(
                            "session {id}\n  source     {}\n  direction  {}\n  filter     {}\n  snaplen    {}\n  priority   {}\n  target     {}\n",
                            s.raw.source,
                            s.raw.direction.name(),
                            if s.raw.filter.trim().is_empty() {
                                "(every packet)"
                            } else {
                                &s.raw.filter
                            },
                            s.snaplen,
                            s.raw.priority,
                            s.raw.target
                        ),
                    )?,
                    Err(e) => w(out, format!("session {id}\n  invalid: {e}\n"))?,
                }
                if hosts.is_empty() {
                    w(out, "  not running on any host\n".to_string())?;
                }
                for (host, s) in &hosts {
                    match s {
                        Ok(s) => {
                            let ifaces: Vec<String> = s
                                .interfaces
                                .iter()
                                .map(|i| format!("{} ({})", i.name, i.hooks.join(", ")))
                                .collect();
                            w(
                                out,
                                format!(
                                    "  on {host}: {}{}  {} packets, {} bytes, {} dropped{}\n",
                                    s.state.name(),
                                    if ifaces.is_empty() {
                                        String::new()
                                    } else {
                                        format!(" on {}", ifaces.join(", "))
                                    },
                                    s.counters.packets,
                                    s.counters.bytes,
                                    s.counters.dropped,
                                    s.error
                                        .as_ref()
                                        .map(|e| format!("  error: {e}"))
                                        .unwrap_or_default()
                                ),
                            )?;
                        }
                        Err(e) => w(out, format!("  on {host}: unreadable status: {e}\n"))?,
                    }
                }
                if hosts.len() > 1 {
                    w(
                        out,
                        format!(
                            "  total: {} packets, {} bytes, {} dropped\n",
                            total.packets, total.bytes, total.dropped
                        ),
                    )?;
                }
            }
        }
        SessionCommand::Delete { name, tenant } => {
            let id = id_of(&args.etcd, tenant.as_ref(), name)?;
            if etcd.delete(&keys.session(&id)).await? == 0 {
                return Err(CommandError::NotFound(id));
            }
            w(out, format!("deleted {id}\n"))?;
        }
        SessionCommand::Owner(o) => match o {
            OwnerCommand::Set { source, tenant } => {
                let s = Source::parse(source).map_err(|e| CommandError::Usage(e.to_string()))?;
                check_name("tenant", tenant).map_err(|e| CommandError::Usage(e.to_string()))?;
                let value = serde_json::to_string(&RawOwner {
                    tenant: tenant.clone(),
                })
                .expect("serialisable");
                etcd.put(&keys.owner(&s), value.as_bytes(), 0).await?;
                w(out, format!("{s} belongs to {tenant}\n"))?;
            }
            OwnerCommand::Delete { source } => {
                let s = Source::parse(source).map_err(|e| CommandError::Usage(e.to_string()))?;
                if etcd.delete(&keys.owner(&s)).await? == 0 {
                    return Err(CommandError::Usage(format!("{s} has no owner")));
                }
                w(out, format!("{s} has no owner now\n"))?;
            }
            OwnerCommand::List => {
                let snap = etcd.get_prefix(&keys.owners()).await?;
                let owners = Ownership::from_entries(snap.kvs.iter().filter_map(|kv| {
                    Keys::tail(&kv.key, &keys.owners()).map(|t| (t, kv.value.as_slice()))
                }));
                for (s, t) in &owners.entries {
                    w(out, format!("{s}  {t}\n"))?;
                }
                for (k, e) in &owners.errors {
                    w(out, format!("{k}  invalid: {e}\n"))?;
                }
            }
        },
        SessionCommand::SetupAuth(a) => {
            for t in &a.tenants {
                check_name("tenant", t).map_err(|e| CommandError::Usage(e.to_string()))?;
            }
            let mut passwords = Vec::new();
            for p in &a.passwords {
                let (user, file) = p.split_once('=').ok_or_else(|| {
                    CommandError::Usage(format!("--password '{p}': use USER=FILE"))
                })?;
                passwords.push((user.to_string(), read_secret(Path::new(file))?));
            }
            let done = auth::apply(
                &etcd,
                &AuthSetup {
                    tenants: a.tenants.clone(),
                    passwords,
                    enable: a.enable,
                },
            )
            .await?;
            for d in done {
                w(out, format!("{d}\n"))?;
            }
        }
    }
    Ok(())
}
