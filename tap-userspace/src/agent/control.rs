//! The control socket: a Unix stream socket (mode 0600) where `tap ctl` asks for the status or a
//! reload. One request per connection: a line with the command (`status` or `reload`), answered
//! with one line of JSON: `{"ok":true,"status":{...}}`, `{"ok":true,"reload":"what changed"}` or
//! `{"ok":false,"error":"..."}`.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};
use tracing::{debug, info};

use super::{AgentError, AgentShared, Request};
use crate::{
    excerpt::excerpt,
    listener::{self, Conn, Limits, Listener, UnixSocketFile},
};

/// Longest request line read.
const MAX_REQUEST: usize = 1024;

/// Clients served at once, and how long each may take: `tap ctl` sends its line at once.
pub const LIMITS: Limits = Limits {
    max_connections: 8,
    header_timeout: Duration::from_secs(2),
    idle_timeout: Duration::from_secs(10),
};

/// The listening socket; dropping it (or [`Server::stop`]) closes it and removes the file.
#[derive(Debug)]
pub struct Server {
    // Field order is drop order: stop accepting, then remove the file.
    _listener: Listener,
    _file: UnixSocketFile,
}

impl Server {
    /// Binds `path` (creating its directory; replacing a stale socket file, never a live one).
    pub fn start(
        path: &Path,
        shared: Arc<AgentShared>,
        requests: mpsc::Sender<Request>,
    ) -> Result<Self, AgentError> {
        let fail = |source: std::io::Error| AgentError::Control {
            path: path.to_path_buf(),
            source,
        };
        let (listener, file) = listener::bind_unix(path).map_err(fail)?;
        let listener = UnixListener::from_std(listener).map_err(fail)?;
        info!(path = %path.display(), "control socket open");
        let listener = Listener::spawn("control", listener, LIMITS, move |conn| {
            let (shared, requests) = (Arc::clone(&shared), requests.clone());
            async move {
                if let Err(e) = serve(conn, shared, requests).await {
                    debug!(error = %e, "control connection");
                }
            }
        });
        Ok(Self {
            _listener: listener,
            _file: file,
        })
    }

    /// Closes the socket and removes its file.
    pub fn stop(self) {
        drop(self);
    }
}

async fn serve(
    mut conn: Conn<UnixStream>,
    shared: Arc<AgentShared>,
    requests: mpsc::Sender<Request>,
) -> std::io::Result<()> {
    let head = conn.read_head(MAX_REQUEST, b"\n").await?;
    let line = String::from_utf8_lossy(&head);
    let answer = match line.trim() {
        "status" => json!({ "ok": true, "status": shared.status() }),
        "reload" => {
            let (tx, rx) = oneshot::channel();
            if requests.send(Request::Reload(tx)).await.is_err() {
                json!({ "ok": false, "error": "the agent is stopping" })
            } else {
                match rx.await {
                    Ok(Ok(changes)) => json!({ "ok": true, "reload": changes }),
                    Ok(Err(error)) => json!({ "ok": false, "error": error }),
                    Err(_) => json!({ "ok": false, "error": "the agent is stopping" }),
                }
            }
        }
        other => {
            json!({ "ok": false, "error": format!("unknown command '{}': use status or reload", excerpt(other)) })
        }
    };
    let mut text = answer.to_string();
    text.push('\n');
    conn.write_all(text.as_bytes()).await?;
    conn.shutdown().await
}

/// Errors of `tap ctl`.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error(
        "cannot reach the agent at {path}: {source} (is `tap agent` running, and is this its control_socket?)"
    )]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the agent at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the agent's answer is not JSON: {0}")]
    Answer(String),
    #[error("{0}")]
    Refused(String),
}

/// Sends `command` to the agent at `path` and returns its answer (`ok` true), or its error.
pub fn request(path: &Path, command: &str, timeout: Duration) -> Result<Value, CtlError> {
    let mut stream =
        std::os::unix::net::UnixStream::connect(path).map_err(|source| CtlError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
    let io = |source| CtlError::Io {
        path: path.to_path_buf(),
        source,
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream
        .write_all(format!("{command}\n").as_bytes())
        .map_err(io)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(io)?;
    let answer: Value =
        serde_json::from_str(line.trim()).map_err(|_| CtlError::Answer(line.trim().to_string()))?;
    if answer["ok"].as_bool() == Some(true) {
        Ok(answer)
    } else {
        Err(CtlError::Refused(
            answer["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_string(),
        ))
    }
}

/// Bytes as a short human figure (kB, MB, GB: powers of 1000).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1000.0 {
            break;
        }
        v /= 1000.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// `tap ctl status` as text: a line for the agent, then a block per tap.
pub fn format_status(status: &Value) -> String {
    let mut out = String::new();
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    out.push_str(&format!(
        "agent: {}, up {}s, {} reloads, {} refused\n",
        status["config"].as_str().unwrap_or("?"),
        n(&status["uptime_secs"]),
        n(&status["reloads"]),
        n(&status["reload_failures"]),
    ));
    if let Some(e) = status["last_reload_error"].as_str() {
        out.push_str(&format!("last reload refused: {e}\n"));
    }
    for tap in status["taps"].as_array().into_iter().flatten() {
        let s = &tap["stats"];
        let k = &s["kernel"];
        let patterns: Vec<&str> = tap["patterns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let hooks: Vec<&str> = tap["hooks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        out.push_str(&format!(
            "\ntap {}: {}{}\n",
            tap["name"].as_str().unwrap_or("?"),
            tap["state"].as_str().unwrap_or("?"),
            tap["error"]
                .as_str()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
        let mut attached: Vec<String> = Vec::new();
        for a in s["attachments"].as_array().into_iter().flatten() {
            let name = a["interface"].as_str().unwrap_or("?").to_string();
            if !attached.contains(&name) {
                attached.push(name);
            }
        }
        out.push_str(&format!(
            "  interfaces: {} matching {} on {}\n",
            if attached.is_empty() {
                "none".to_string()
            } else {
                attached.join(" ")
            },
            patterns.join(" "),
            hooks.join(" ")
        ));
        for e in s["attach_errors"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  not attached: {}: {}\n",
                e[0].as_str().unwrap_or("?"),
                e[1].as_str().unwrap_or("?")
            ));
        }
        for d in tap["detached"].as_array().into_iter().flatten() {
            let name = d["interface"].as_str().unwrap_or("?");
            let total = d["seconds_total"].as_f64().unwrap_or(0.0);
            match d["now_secs"].as_f64() {
                Some(now) => out.push_str(&format!(
                    "  detached: {name} for {now:.1} s ({total:.1} s in all): {}\n",
                    d["reason"].as_str().unwrap_or("?")
                )),
                None => out.push_str(&format!(
                    "  detached earlier: {name}, {total:.1} s in all; attached now\n"
                )),
            }
        }
        let filter = s["filter"].as_str().unwrap_or("");
        out.push_str(&format!(
            "  filter: {} ({} installed)\n",
            if filter.is_empty() {
                "(all packets)"
            } else {
                filter
            },
            n(&s["filter_installs"])
        ));
        out.push_str(&format!(
            "  packets: {} seen, {} matched, {} captured, {} written, {} ring drops, {} sink drops\n",
            n(&k["seen"]),
            n(&k["matched"]),
            n(&k["copied"]),
            n(&s["written"]),
            n(&k["ring_full"]),
            n(&s["writer_dropped"]),
        ));
        let ring = match (s["ring_pending"].as_u64(), s["ring_size"].as_u64()) {
            (Some(p), Some(size)) if size > 0 => {
                format!(", ring {:.1}% full", p as f64 * 100.0 / size as f64)
            }
            _ => String::new(),
        };
        out.push_str(&format!(
            "  output: {} written, {} files rotated, {} restarts{ring}\n",
            human_bytes(n(&s["written_bytes"])),
            n(&s["files"]),
            n(&tap["restarts"]),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1500), "1.5 kB");
        assert_eq!(human_bytes(2_340_000_000), "2.3 GB");
    }

    #[test]
    fn status_text_has_a_block_per_tap() {
        let status = json!({
            "config": "/etc/tap/tap.toml", "uptime_secs": 5, "reloads": 2, "reload_failures": 1,
            "last_reload_error": "/etc/tap/tap.toml:3:1: name: bad",
            "taps": [{
                "name": "vms", "state": "running", "error": null, "patterns": ["vm*"], "hooks": ["tc-ingress", "tc-egress"], "restarts": 0,
                "stats": {"kernel": {"seen": 10, "matched": 8, "copied": 8, "ring_full": 0}, "written": 8, "writer_dropped": 0,
                          "written_bytes": 1200, "files": 1, "ring_pending": 0, "ring_size": 4096, "filter": "icmp", "filter_installs": 2,
                          "attachments": [{"interface": "vm-a", "hook": "tc-ingress"}, {"interface": "vm-a", "hook": "tc-egress"}],
                          "attach_errors": [["vm-b", "busy"]]},
                "detached": [{"interface": "vm-b", "seconds_total": 12.25, "now_secs": 2.5, "reason": "attaching failed: busy"},
                             {"interface": "vm-c", "seconds_total": 0.5, "now_secs": null, "reason": null}]
            }]
        });
        let text = format_status(&status);
        assert!(text.starts_with("agent: /etc/tap/tap.toml, up 5s, 2 reloads, 1 refused\nlast reload refused: /etc/tap/tap.toml:3:1"), "{text}");
        assert!(text.contains("\ntap vms: running\n  interfaces: vm-a matching vm* on tc-ingress tc-egress\n  not attached: vm-b: busy\n  detached: vm-b for 2.5 s (12.2 s in all): attaching failed: busy\n  detached earlier: vm-c, 0.5 s in all; attached now\n"), "{text}");
        assert!(text.contains("  filter: icmp (2 installed)\n  packets: 10 seen, 8 matched, 8 captured, 8 written, 0 ring drops, 0 sink drops\n"), "{text}");
        assert!(
            text.contains(
                "  output: 1.2 kB written, 1 files rotated, 0 restarts, ring 0.0% full\n"
            ),
            "{text}"
        );
    }
}
