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

/// A fleet session's capture (`fleet::session`): its filter, snap length and target URL, read
/// into the raw settings and validated by the rules of `tap capture`. Refusals name the session's
/// JSON key (`filter`, `snaplen`, `target`), with the reason `tap capture` gives for the same
/// value, in its flags' words.
///
/// # Errors
/// The target's own syntax, or the first setting a rule refuses.
pub fn fleet_capture(
    filter: &str,
    snaplen: u32,
    target: &str,
) -> Result<crate::model::CaptureConfig, FleetRefusal> {
    let mut raw = super::raw::RawCapture {
        // `lo` exists in every namespace: the rules want an interface to resolve.
        interfaces: vec!["lo".to_string()],
        quiet: true,
        snaplen: Some(snaplen),
        ..super::raw::RawCapture::default()
    };
    if !filter.trim().is_empty() {
        raw.filter.expression = Some(filter.to_string());
    }
    fleet_target(target, &mut raw)?;
    super::rules::capture(&raw, super::raw::Purpose::Command).map_err(|e| {
        let key = match e.key {
            Key::Filter | Key::FilterFile => "filter",
            Key::Snaplen => "snaplen",
            _ => "target",
        };
        // The capture's own words (`tap capture`'s flags name the settings), without the
        // leading name of a setting the session calls by its own key.
        let flag = |k: Key| k.flag().to_string();
        let reason = match e.key {
            Key::Filter | Key::FilterFile | Key::Forward => e.reason.render_after(e.key, &flag),
            _ => e.reason.render(&flag),
        };
        FleetRefusal { key, reason }
    })
}

/// The agent's tap realizing a fleet session on one interface: the session's target, snap
/// length and `filter` (the session's rule on that interface, priorities applied), on `hooks`
/// (TC ingress, egress or both) of interface `iface`, validated by the rules of every tap a
/// service runs.
///
/// # Errors
/// As [`fleet_capture`].
pub fn fleet_tap(
    name: &str,
    iface: &str,
    hooks: &[crate::model::Hook],
    filter: &str,
    snaplen: u32,
    target: &str,
) -> Result<TapConfig, FleetRefusal> {
    use crate::model::{Hook, HookChoice};
    let hook = match hooks {
        [Hook::TcIngress] => HookChoice::TcIngress,
        [Hook::TcEgress] => HookChoice::TcEgress,
        _ => HookChoice::Tc,
    };
    let mut raw = super::raw::RawCapture {
        interfaces: vec![iface.to_string()],
        hook: Some(hook),
        quiet: true,
        snaplen: Some(snaplen),
        ..super::raw::RawCapture::default()
    };
    if !filter.trim().is_empty() {
        raw.filter.expression = Some(filter.to_string());
    }
    fleet_target(target, &mut raw)?;
    TapConfig::from_raw(super::raw::RawTap {
        name: name.to_string(),
        capture: raw,
    })
    .map_err(|e| {
        let key = match e.key {
            Key::Filter | Key::FilterFile => "filter",
            Key::Snaplen => "snaplen",
            Key::Name | Key::Interfaces | Key::Hook => "source",
            _ => "target",
        };
        FleetRefusal {
            key,
            reason: e.reason.render(&|k| k.flag().to_string()),
        }
    })
}

/// A session setting refused: its JSON key and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct FleetRefusal {
    pub key: &'static str,
    pub reason: String,
}

/// A `file:` or `suricata:` target's options, by the names of the agent's `[tap.file]` keys.
const FILE_OPTIONS: &[&str] = &[
    "format",
    "compress",
    "file_size_mb",
    "rotate_seconds",
    "ring_files",
    "flush_interval_ms",
    "on_disk_full",
];

fn target_refusal(url: &str, why: &str) -> FleetRefusal {
    FleetRefusal {
        key: "target",
        reason: format!("'{}': {why}", excerpt::excerpt(url)),
    }
}

/// A target's `key=value` options, in order.
type Options<'a> = Vec<(&'a str, &'a str)>;

/// The path and `key=value` options of a `file:` or `suricata:` target.
fn location<'a>(url: &str, rest: &'a str) -> Result<(&'a str, Options<'a>), FleetRefusal> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut options = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| target_refusal(url, "options are key=value, joined by '&'"))?;
        options.push((k, v));
    }
    if !std::path::Path::new(path).is_absolute() {
        return Err(target_refusal(
            url,
            "the path must be absolute (it is a path on the host that runs it)",
        ));
    }
    Ok((path, options))
}

/// Translates a target URL into the raw settings: `vxlan://` a collector, `file:PATH?OPTIONS` the
/// output, `suricata:SOCKET?file=PATH&OPTIONS` the output and Suricata's socket.
fn fleet_target(url: &str, raw: &mut super::raw::RawCapture) -> Result<(), FleetRefusal> {
    if url.starts_with("vxlan://") {
        raw.forward.push(url.to_string());
        return Ok(());
    }
    let (file, options) = if let Some(rest) = url.strip_prefix("file:") {
        location(url, rest)?
    } else if let Some(rest) = url.strip_prefix("suricata:") {
        let (socket, options) = location(url, rest)?;
        let file = options
            .iter()
            .find(|(k, _)| *k == "file")
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                target_refusal(
                    url,
                    "file=PATH is required (the rotated files Suricata is handed)",
                )
            })?;
        if !std::path::Path::new(file).is_absolute() {
            return Err(target_refusal(url, "file= must be an absolute path"));
        }
        raw.suricata_socket = Some(socket.into());
        (file, options)
    } else if url.starts_with("store:") {
        return Err(target_refusal(
            url,
            "store targets are not realized by fleet sessions yet",
        ));
    } else {
        return Err(target_refusal(
            url,
            "use vxlan://HOST[:PORT]?vni=N, file:PATH[?OPTIONS] or suricata:SOCKET?file=PATH&OPTIONS",
        ));
    };
    let out = &mut raw.output;
    out.path = Some(file.into());
    let suricata = raw.suricata_socket.is_some();
    for (k, v) in options {
        let bad = || {
            target_refusal(
                url,
                &format!("{k}={}: not a valid value", excerpt::excerpt(v)),
            )
        };
        match k {
            "file" if suricata => {}
            "format" => {
                out.format = Some(match v {
                    "pcap" => crate::model::Format::Pcap,
                    "pcapng" => crate::model::Format::Pcapng,
                    _ => return Err(bad()),
                });
            }
            "compress" => out.compress = Some(v.to_string()),
            "file_size_mb" => out.file_size_mb = Some(v.parse().map_err(|_| bad())?),
            "rotate_seconds" => out.rotate_seconds = Some(v.parse().map_err(|_| bad())?),
            "ring_files" => out.ring_files = Some(v.parse().map_err(|_| bad())?),
            "flush_interval_ms" => out.flush_interval_ms = Some(v.parse().map_err(|_| bad())?),
            "on_disk_full" => {
                out.on_disk_full = Some(match v {
                    "stop" => crate::model::DiskFull::Stop,
                    "drop" => crate::model::DiskFull::Drop,
                    _ => return Err(bad()),
                });
            }
            _ => {
                return Err(target_refusal(
                    url,
                    &format!(
                        "unknown option '{}'; use {}",
                        excerpt::excerpt(k),
                        FILE_OPTIONS.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
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
