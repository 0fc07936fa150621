//! A fleet session: one tap as JSON (as a controller writes it to etcd), with the keys of a
//! `[[tap]]` of the agent's file. A reader that only translates: the document is the agent
//! file's ([`super::document`]), the rules are every front door's, and a refusal names the JSON
//! key (`forward[1]`, `file.rotate_seconds`).

use super::{document::TapDoc, error::Key};
use crate::{settings::agent_file::TapConfig, support::excerpt};

/// Errors of a session document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Not JSON, or not a tap's keys and types.
    #[error("session: {0}")]
    Syntax(String),
    /// A setting the rules refuse: `session 'NAME': KEY: reason`.
    #[error("session '{name}': {key}: {message}")]
    Invalid {
        name: String,
        /// The JSON key (with `[i]` for a list item).
        key: String,
        message: String,
        /// The setting.
        setting: Key,
    },
}

/// A session's tap, validated by the rules of every tap a service runs. Paths are taken as
/// written (a session has no directory of its own to be relative to).
///
/// # Errors
/// The text is not a session document, or a setting is refused.
pub fn parse(text: &str) -> Result<TapConfig, SessionError> {
    let doc: TapDoc = serde_json::from_str(text)
        .map_err(|e| SessionError::Syntax(excerpt::words(&e.to_string()).into_owned()))?;
    let tap = doc.into_raw(&std::path::Path::to_path_buf);
    let name = tap.name.clone();
    TapConfig::from_raw(tap).map_err(|e| {
        let mut key = e.key.name().to_string();
        if let Some(i) = e.index {
            key.push_str(&format!("[{i}]"));
        }
        SessionError::Invalid {
            name: excerpt::excerpt(&name).to_string(),
            key,
            message: e.reason.render_after(e.key, &|k| k.name().to_string()),
            setting: e.key,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Hook, Output};

    #[test]
    fn a_session_validates_like_a_tap() {
        let tap = parse(
            r#"{"name": "s1", "interfaces": ["veth*"], "hook": "tc-ingress", "filter": "icmp",
                "snaplen": 96, "file": {"path": "/var/lib/tap/s1.pcapng", "rotate_seconds": 60}}"#,
        )
        .unwrap();
        assert_eq!(tap.name, "s1");
        assert!(tap.matches("veth-b"));
        assert_eq!(tap.capture.hooks, [Hook::TcIngress]);
        assert_eq!(tap.capture.snaplen, 96);
        assert_eq!(
            tap.capture.output.target,
            Output::File("/var/lib/tap/s1.pcapng".into())
        );
        assert!(tap.capture.output.resume);
    }

    #[test]
    fn refusals_name_the_json_key() {
        let err = |text: &str| match parse(text) {
            Err(SessionError::Invalid { key, message, .. }) => (key, message),
            other => panic!("{text}: {other:?}"),
        };
        let (key, message) = err(
            r#"{"name": "s", "interfaces": ["lo"], "forward": ["vxlan://192.0.2.9?vni=1", "http://x"]}"#,
        );
        assert_eq!(key, "forward[1]");
        assert!(message.contains("not a vxlan:// URL"), "{message}");
        let (key, message) =
            err(r#"{"name": "s", "interfaces": ["lo"], "serve": "/s", "sample": 0}"#);
        assert_eq!(
            (key.as_str(), message.as_str()),
            ("sample", "must be at least 1 (1: keep every packet)")
        );
        assert!(matches!(
            parse(r#"{"name": "s", "interfaces": ["lo"], "fitler": "tcp"}"#),
            Err(SessionError::Syntax(m)) if m.contains("unknown field `fitler`")
        ));
        assert!(matches!(parse("{"), Err(SessionError::Syntax(_))));
    }
}
