//! etcd roles and users for the fleet (`tap session setup-auth`). What it creates, for the
//! layout under ROOT (see [`super::keys`]):
//!
//! | Role | Permissions | User |
//! |---|---|---|
//! | `tap-operator` | readwrite `ROOT/` (everything, the ownership map included) | `tap-operator` |
//! | `tap-agent` | read `ROOT/v1/sessions/`, read `ROOT/v1/owners/`, readwrite `ROOT/v1/status/` | `tap-agent` |
//! | `tap-tenant-T` | readwrite `ROOT/v1/sessions/T/`, read `ROOT/v1/status/T/` | `T` |
//!
//! Every permission is a prefix ending in `/`. Enabling auth (`--enable`) needs etcd's `root`
//! user (etcd refuses to enable auth without it), which gets the built-in `root` role.
//! Running it again is safe: roles and users that exist are kept, their permissions granted
//! again (etcd ignores a grant it has), and a password given for an existing user replaces its
//! password.

use etcd_client::Permission;

use super::{
    etcd::{Etcd, EtcdError},
    keys::Keys,
};

pub const OPERATOR: &str = "tap-operator";
pub const AGENT: &str = "tap-agent";

/// The role of tenant `tenant`.
#[must_use]
pub fn tenant_role(tenant: &str) -> String {
    format!("tap-tenant-{tenant}")
}

/// Read or readwrite on a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    ReadWrite,
}

/// One role and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSpec {
    pub role: String,
    pub user: String,
    /// Prefixes, each ending in `/`.
    pub grants: Vec<(Access, String)>,
}

/// The roles for `tenants` (operator and agent first).
#[must_use]
pub fn roles(keys: &Keys, tenants: &[String]) -> Vec<RoleSpec> {
    let root = keys
        .base()
        .trim_end_matches('/')
        .rsplit_once('/')
        .map_or_else(|| "/".to_string(), |(r, _)| format!("{r}/"));
    let mut out = vec![
        RoleSpec {
            role: OPERATOR.into(),
            user: OPERATOR.into(),
            grants: vec![(Access::ReadWrite, root)],
        },
        RoleSpec {
            role: AGENT.into(),
            user: AGENT.into(),
            grants: vec![
                (Access::Read, keys.sessions()),
                (Access::Read, keys.owners()),
                (Access::ReadWrite, keys.statuses()),
            ],
        },
    ];
    for t in tenants {
        out.push(RoleSpec {
            role: tenant_role(t),
            user: t.clone(),
            grants: vec![
                (Access::ReadWrite, keys.tenant_sessions(t)),
                (Access::Read, keys.tenant_statuses(t)),
            ],
        });
    }
    out
}

/// What `setup-auth` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct AuthSetup {
    pub tenants: Vec<String>,
    /// Passwords by user name (`root`, `tap-operator`, `tap-agent`, tenants). A user without one
    /// is created only if it does not exist... and then needs one: see [`apply`].
    pub passwords: Vec<(String, String)>,
    /// Enable authentication at the end (needs `root`'s password when `root` does not exist).
    pub enable: bool,
}

/// One thing done, for the report.
pub type Done = String;

fn already(e: &EtcdError) -> bool {
    e.to_string().contains("already exists")
}

/// Creates the roles and users, grants the permissions, and enables auth if asked.
///
/// # Errors
/// The first etcd request that fails (with what was done before it left in place: running it
/// again finishes the job), or a user to create without a password.
pub async fn apply(etcd: &Etcd, setup: &AuthSetup) -> Result<Vec<Done>, EtcdError> {
    let mut c = etcd.client();
    let mut done = Vec::new();
    let request = |op: &'static str, key: &str, e: etcd_client::Error| {
        let reason = match &e {
            etcd_client::Error::GRpcStatus(s) => s.message().to_string(),
            other => other.to_string(),
        };
        if reason.contains("permission denied") {
            EtcdError::Denied {
                op,
                key: key.to_string(),
                user: None,
            }
        } else {
            EtcdError::Request {
                op,
                key: key.to_string(),
                reason,
            }
        }
    };
    let password = |user: &str| {
        setup
            .passwords
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, p)| p.clone())
    };
    let existing: Vec<String> = c
        .user_list()
        .await
        .map_err(|e| request("user list", "", e))?
        .users()
        .to_vec();
    let mut users: Vec<(String, Option<String>)> = Vec::new();
    for spec in roles(etcd.keys(), &setup.tenants) {
        match c.role_add(spec.role.clone()).await {
            Ok(_) => done.push(format!("role {} created", spec.role)),
            Err(e) => {
                let e = request("role add", &spec.role, e);
                if !already(&e) {
                    return Err(e);
                }
            }
        }
        for (access, prefix) in &spec.grants {
            let perm = match access {
                Access::Read => Permission::read(prefix.as_str()),
                Access::ReadWrite => Permission::read_write(prefix.as_str()),
            }
            .with_prefix();
            c.role_grant_permission(spec.role.clone(), perm)
                .await
                .map_err(|e| request("role grant", &spec.role, e))?;
            done.push(format!(
                "role {} may {} {prefix}",
                spec.role,
                match access {
                    Access::Read => "read",
                    Access::ReadWrite => "read and write",
                }
            ));
        }
        users.push((spec.user.clone(), Some(spec.role.clone())));
    }
    if setup.enable {
        users.push(("root".into(), Some("root".into())));
    }
    for (user, role) in users {
        let exists = existing.contains(&user);
        match (exists, password(&user)) {
            (false, None) => {
                return Err(EtcdError::Request {
                    op: "user add",
                    key: user.clone(),
                    reason: "no password given for a new user".into(),
                });
            }
            (false, Some(p)) => {
                c.user_add(user.clone(), p, None)
                    .await
                    .map_err(|e| request("user add", &user, e))?;
                done.push(format!("user {user} created"));
            }
            (true, Some(p)) => {
                c.user_change_password(user.clone(), p)
                    .await
                    .map_err(|e| request("user change password", &user, e))?;
                done.push(format!("user {user}: password changed"));
            }
            (true, None) => {}
        }
        if let Some(role) = role {
            c.user_grant_role(user.clone(), role.clone())
                .await
                .map_err(|e| request("user grant role", &user, e))?;
            done.push(format!("user {user} has role {role}"));
        }
    }
    if setup.enable {
        match c.auth_enable().await {
            Ok(_) => done.push("authentication enabled".into()),
            Err(e) => return Err(request("auth enable", "", e)),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_roles() {
        let r = roles(&Keys::default(), &["acme".into()]);
        type Row = (String, String, Vec<(Access, String)>);
        let show: Vec<Row> = r.into_iter().map(|s| (s.role, s.user, s.grants)).collect();
        assert_eq!(
            show,
            [
                (
                    "tap-operator".into(),
                    "tap-operator".into(),
                    vec![(Access::ReadWrite, "/tap/".into())]
                ),
                (
                    "tap-agent".into(),
                    "tap-agent".into(),
                    vec![
                        (Access::Read, "/tap/v1/sessions/".into()),
                        (Access::Read, "/tap/v1/owners/".into()),
                        (Access::ReadWrite, "/tap/v1/status/".into())
                    ]
                ),
                (
                    "tap-tenant-acme".into(),
                    "acme".into(),
                    vec![
                        (Access::ReadWrite, "/tap/v1/sessions/acme/".into()),
                        (Access::Read, "/tap/v1/status/acme/".into())
                    ]
                ),
            ]
        );
    }
}
