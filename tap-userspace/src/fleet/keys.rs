//! Where the fleet's state lives in etcd. Under a root (default `/tap`) and the format version:
//!
//! | Key | Value | Written by |
//! |---|---|---|
//! | `ROOT/v1/sessions/TENANT/NAME` | a session ([`super::session::RawSession`] JSON) | the tenant |
//! | `ROOT/v1/status/TENANT/NAME/HOST` | what HOST realized ([`super::status::Status`] JSON), under the agent's lease | the agents |
//! | `ROOT/v1/owners/SOURCE` | `{"tenant":"T"}`: SOURCE (`mac:…`, `ip:…`, `iface:HOST:GLOB`) belongs to T | the operator |
//!
//! Tenant, name and host are [`super::session::check_name`] names, so `/` never appears inside
//! one and every prefix ends with `/` (tenant `acme` never reads `acme2`'s keys).

use super::session::{FORMAT_VERSION, SessionId, Source};

/// The root when none is given (`--etcd-prefix`, `[fleet] prefix`).
pub const DEFAULT_ROOT: &str = crate::model::DEFAULT_ETCD_ROOT;

/// The key layout under one root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// `ROOT/vN/`.
    base: String,
}

impl Default for Keys {
    fn default() -> Self {
        Self::new(DEFAULT_ROOT)
    }
}

impl Keys {
    /// The layout under `root` (a trailing `/` is ignored).
    #[must_use]
    pub fn new(root: &str) -> Self {
        Self {
            base: format!("{}/v{FORMAT_VERSION}/", root.trim_end_matches('/')),
        }
    }

    /// Everything of this format version: `ROOT/v1/`.
    #[must_use]
    pub fn base(&self) -> &str {
        &self.base
    }

    /// All sessions: `ROOT/v1/sessions/`.
    #[must_use]
    pub fn sessions(&self) -> String {
        format!("{}sessions/", self.base)
    }

    /// One tenant's sessions: `ROOT/v1/sessions/TENANT/` (what a tenant's role may write).
    #[must_use]
    pub fn tenant_sessions(&self, tenant: &str) -> String {
        format!("{}sessions/{tenant}/", self.base)
    }

    #[must_use]
    pub fn session(&self, id: &SessionId) -> String {
        format!("{}sessions/{}/{}", self.base, id.tenant, id.name)
    }

    /// All status entries: `ROOT/v1/status/`.
    #[must_use]
    pub fn statuses(&self) -> String {
        format!("{}status/", self.base)
    }

    /// One tenant's status entries (what a tenant's role may read).
    #[must_use]
    pub fn tenant_statuses(&self, tenant: &str) -> String {
        format!("{}status/{tenant}/", self.base)
    }

    /// The status entries of one session, one per host: `ROOT/v1/status/TENANT/NAME/`.
    #[must_use]
    pub fn session_statuses(&self, id: &SessionId) -> String {
        format!("{}status/{}/{}/", self.base, id.tenant, id.name)
    }

    /// The status of the session stored under `session_key` (its key below `sessions/`, as it
    /// is, even when it does not name a valid session) on `host`.
    #[must_use]
    pub fn status_for_key(&self, session_tail: &str, host: &str) -> String {
        format!("{}status/{session_tail}/{host}", self.base)
    }

    /// The ownership map: `ROOT/v1/owners/`.
    #[must_use]
    pub fn owners(&self) -> String {
        format!("{}owners/", self.base)
    }

    #[must_use]
    pub fn owner(&self, source: &Source) -> String {
        format!("{}owners/{source}", self.base)
    }

    /// The part of `key` after `prefix`, if it is under it and valid UTF-8.
    #[must_use]
    pub fn tail<'k>(key: &'k [u8], prefix: &str) -> Option<&'k str> {
        key.strip_prefix(prefix.as_bytes())
            .and_then(|t| std::str::from_utf8(t).ok())
    }

    /// The session a key below `sessions/` names, if it is `TENANT/NAME` with valid names.
    #[must_use]
    pub fn session_id(tail: &str) -> Option<SessionId> {
        let (tenant, name) = tail.split_once('/')?;
        (super::session::check_name("tenant", tenant).is_ok()
            && super::session::check_name("name", name).is_ok())
        .then(|| SessionId {
            tenant: tenant.to_string(),
            name: name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let k = Keys::new("/tap/");
        let id = SessionId {
            tenant: "acme".into(),
            name: "web".into(),
        };
        assert_eq!(k.session(&id), "/tap/v1/sessions/acme/web");
        assert_eq!(k.tenant_sessions("acme"), "/tap/v1/sessions/acme/");
        assert_eq!(k.session_statuses(&id), "/tap/v1/status/acme/web/");
        assert_eq!(
            k.status_for_key("acme/web", "hv1"),
            "/tap/v1/status/acme/web/hv1"
        );
        assert_eq!(
            k.owner(&Source::Mac([2, 0, 0x5e, 0, 0x53, 1])),
            "/tap/v1/owners/mac:02:00:5e:00:53:01"
        );
        assert_eq!(Keys::session_id("acme/web"), Some(id));
        assert_eq!(Keys::session_id("acme"), None);
        assert_eq!(Keys::session_id("acme/web/x"), None);
        assert_eq!(
            Keys::tail(b"/tap/v1/sessions/a/b", &k.sessions()),
            Some("a/b")
        );
        assert_eq!(Keys::tail(b"/tap/v1/sessions/\xff", &k.sessions()), None);
    }
}
