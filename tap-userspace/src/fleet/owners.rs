//! The ownership map: which tenant each source belongs to. Written only by the operator (see
//! [`super::auth`]); agents read it and refuse to realize a session whose source its tenant does
//! not own.
//!
//! One key per source, `ROOT/v1/owners/SOURCE`, value `{"tenant":"T"}`: a source has one owner,
//! which etcd's one-value-per-key makes impossible to get wrong.
//!
//! # What "owns" means
//! - `mac:M`: the tenant owns exactly `mac:M`.
//! - `ip:A/L`: the most specific owned prefix holding A/L is the tenant's, and no other tenant owns
//!   a prefix inside A/L (a /24 session cannot take in another tenant's /32).
//! - `iface:HOST:GLOB`: each interface the session's glob selects on HOST must match an owned
//!   `iface:HOST:G` (or `iface:*:G`) of the tenant's and no other tenant's.

use serde::{Deserialize, Serialize};

use super::session::{Source, check_name};

/// The value of an ownership key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOwner {
    pub tenant: String,
}

/// The ownership map as read from etcd, with the entries that could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ownership {
    /// Source and owning tenant.
    pub entries: Vec<(Source, String)>,
    /// Key (below `owners/`) and why it was ignored.
    pub errors: Vec<(String, String)>,
}

impl Ownership {
    /// Reads `(key below owners/, value)` pairs. A malformed one is kept in `errors` and owns
    /// nothing.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        let mut out = Self::default();
        for (tail, value) in entries {
            match Self::entry(tail, value) {
                Ok(e) => out.entries.push(e),
                Err(reason) => out.errors.push((tail.to_string(), reason)),
            }
        }
        out
    }

    fn entry(tail: &str, value: &[u8]) -> Result<(Source, String), String> {
        let source = Source::parse(tail).map_err(|e| e.to_string())?;
        if source.to_string() != tail {
            return Err(format!("the key is not canonical: use {source}"));
        }
        if value.len() > 4096 {
            return Err(format!("the value is {} bytes; at most 4096", value.len()));
        }
        let raw: RawOwner =
            serde_json::from_slice(value).map_err(|e| format!("not owner JSON: {e}"))?;
        check_name("tenant", &raw.tenant).map_err(|e| e.to_string())?;
        Ok((source, raw.tenant))
    }

    /// Whether `tenant` owns `source`; for an `iface:` source, the interface `iface` it selected.
    ///
    /// # Errors
    /// The reason, for the session's status. It never names another tenant.
    pub fn check(&self, tenant: &str, source: &Source, iface: Option<&str>) -> Result<(), String> {
        let refuse = || format!("tenant '{tenant}' does not own {source}");
        match source {
            Source::Mac(_) => self
                .entries
                .iter()
                .any(|(s, t)| s == source && t == tenant)
                .then_some(())
                .ok_or_else(refuse),
            Source::Ip { prefix, .. } => {
                let covering = self
                    .entries
                    .iter()
                    .filter(|(s, _)| source.within(s))
                    .max_by_key(|(s, _)| match s {
                        Source::Ip { prefix, .. } => *prefix,
                        _ => 0,
                    });
                let Some((_, owner)) = covering else {
                    return Err(refuse());
                };
                if owner != tenant {
                    return Err(refuse());
                }
                let taken = self.entries.iter().any(|(s, t)| {
                    t != tenant
                        && matches!(s, Source::Ip { prefix: p, .. } if p > prefix)
                        && s.within(source)
                });
                if taken {
                    return Err(format!(
                        "{source} holds addresses owned by another tenant: narrow it"
                    ));
                }
                Ok(())
            }
            Source::Iface { host, glob } => {
                let name = iface.unwrap_or(glob);
                let owners: Vec<&String> = self
                    .entries
                    .iter()
                    .filter_map(|(s, t)| match s {
                        Source::Iface { host: h, glob: g }
                            if (h == host || h == "*")
                                && crate::agent::config::glob_match(g, name) =>
                        {
                            Some(t)
                        }
                        _ => None,
                    })
                    .collect();
                if owners.is_empty() || owners.iter().any(|t| *t != tenant) {
                    return Err(format!(
                        "tenant '{tenant}' does not own interface {name} on {host}"
                    ));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> Ownership {
        Ownership::from_entries(entries.iter().map(|(k, v)| (*k, v.as_bytes())))
    }

    #[test]
    fn owners_by_kind() {
        let m = map(&[
            ("mac:02:00:5e:00:53:01", r#"{"tenant":"acme"}"#),
            ("ip:192.0.2.0/24", r#"{"tenant":"acme"}"#),
            ("ip:192.0.2.128/25", r#"{"tenant":"bravo"}"#),
            ("iface:hv1:acme-*", r#"{"tenant":"acme"}"#),
            ("iface:*:shared*", r#"{"tenant":"acme"}"#),
            ("iface:hv1:shared9", r#"{"tenant":"bravo"}"#),
        ]);
        assert!(m.errors.is_empty(), "{:?}", m.errors);
        let p = |s| Source::parse(s).unwrap();
        let mac = p("mac:02:00:5e:00:53:01");
        assert_eq!(m.check("acme", &mac, None), Ok(()));
        assert_eq!(
            m.check("bravo", &mac, None).unwrap_err(),
            "tenant 'bravo' does not own mac:02:00:5e:00:53:01"
        );
        assert!(m.check("acme", &p("ip:192.0.2.7"), None).is_ok());
        assert!(m.check("acme", &p("ip:192.0.2.0/25"), None).is_ok());
        // The most specific owner wins, both ways.
        assert!(m.check("acme", &p("ip:192.0.2.200"), None).is_err());
        assert!(m.check("bravo", &p("ip:192.0.2.200"), None).is_ok());
        let e = m.check("acme", &p("ip:192.0.2.0/24"), None).unwrap_err();
        assert!(e.contains("another tenant"), "{e}");
        assert!(m.check("acme", &p("ip:198.51.100.1"), None).is_err());
        let iface = p("iface:hv1:*");
        assert!(m.check("acme", &iface, Some("acme-vm1")).is_ok());
        assert!(m.check("acme", &iface, Some("shared1")).is_ok());
        assert!(m.check("acme", &iface, Some("shared9")).is_err());
        assert!(m.check("acme", &iface, Some("other")).is_err());
        assert!(
            m.check("acme", &p("iface:hv2:acme-vm1"), Some("acme-vm1"))
                .is_err()
        );
    }

    #[test]
    fn malformed_entries_own_nothing() {
        let m = map(&[
            ("mac:02:00:5E:00:53:01", r#"{"tenant":"acme"}"#),
            ("mac:02:00:5e:00:53:02", "{"),
            ("mac:02:00:5e:00:53:03", r#"{"tenant":"a/b"}"#),
            ("junk", r#"{"tenant":"acme"}"#),
            ("mac:02:00:5e:00:53:04", r#"{"tenant":"acme","x":1}"#),
        ]);
        assert!(m.entries.is_empty());
        assert_eq!(m.errors.len(), 5);
    }
}
