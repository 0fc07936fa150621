//! The control socket: a Unix stream socket (mode 0600) where `tap ctl` asks for the status or a
//! reload. One request per connection: a line with the command (`status` or `reload`), answered
//! with one line of JSON: `{"ok":true,"status":{...}}`, `{"ok":true,"reload":"what changed"}` or
//! `{"ok":false,"error":"..."}`.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tracing::{debug, info, warn};

use super::{AgentError, AgentShared, Request};

/// Longest request line read.
const MAX_REQUEST: usize = 1024;
/// Longest a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The listening socket and its task; [`Server::stop`] closes it and removes the file.
#[derive(Debug)]
pub struct Server {
    path: PathBuf,
    task: JoinHandle<()>,
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
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(fail(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another agent answers on it",
                )));
            }
            std::fs::remove_file(path).map_err(fail)?;
        }
        let listener = UnixListener::bind(path).map_err(fail)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
        info!(path = %path.display(), "control socket open");
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let (shared, requests) = (Arc::clone(&shared), requests.clone());
                        tokio::spawn(async move {
                            if let Err(e) = serve(stream, shared, requests).await {
                                debug!(error = %e, "control connection");
                            }
                        });
                    }
                    Err(e) => {
                        warn!(error = %e, "control socket accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(Self {
            path: path.to_path_buf(),
            task,
        })
    }

    /// Closes the socket and removes its file.
    pub fn stop(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve(
    stream: UnixStream,
    shared: Arc<AgentShared>,
    requests: mpsc::Sender<Request>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read).take(MAX_REQUEST as u64);
    use tokio::io::AsyncReadExt as _;
    tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request"))??;
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
            json!({ "ok": false, "error": format!("unknown command '{other}': use status or reload") })
        }
    };
    let mut text = answer.to_string();
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await
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
                          "attach_errors": [["vm-b", "busy"]]}
            }]
        });
        let text = format_status(&status);
        assert!(text.starts_with("agent: /etc/tap/tap.toml, up 5s, 2 reloads, 1 refused\nlast reload refused: /etc/tap/tap.toml:3:1"), "{text}");
        assert!(text.contains("\ntap vms: running\n  interfaces: vm-a matching vm* on tc-ingress tc-egress\n  not attached: vm-b: busy\n"), "{text}");
        assert!(text.contains("  filter: icmp (2 installed)\n  packets: 10 seen, 8 matched, 8 captured, 8 written, 0 ring drops, 0 sink drops\n"), "{text}");
        assert!(
            text.contains(
                "  output: 1.2 kB written, 1 files rotated, 0 restarts, ring 0.0% full\n"
            ),
            "{text}"
        );
    }
}
