//! Suricata's unix-socket EVE output: Suricata connects (`filetype: unix_stream`, `filename:
//! PATH` in its eve-log output) to a socket tap listens on, and writes one alert per line.
//!
//! The socket is created 0600 (a stale socket left at the path is replaced; any other file
//! there is refused). At most `max_connections` are served at once (Suricata opens one per
//! eve-log output; more are closed at once and counted); lines are bounded as in the file
//! follower. Each connection's lines go to a bounded queue: when the pipeline falls behind,
//! reading stops and Suricata's writes wait in the socket, so memory stays bounded.

use std::{
    os::unix::fs::{FileTypeExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use tokio::{
    io::AsyncReadExt as _,
    net::{UnixListener, UnixStream},
    sync::mpsc,
};
use tracing::{info, warn};

use super::{EvidenceError, follow::LineBuffer};

/// Counts of the socket.
#[derive(Debug, Default)]
pub struct SocketCounts {
    pub connections: AtomicU64,
    pub refused: AtomicU64,
    pub lines: AtomicU64,
    pub long_lines: AtomicU64,
    pub partial_dropped: AtomicU64,
    active: AtomicUsize,
}

/// Binds the listening socket at `path`.
///
/// # Errors
/// Something other than a socket is at `path`, or binding fails.
pub fn bind(path: &Path) -> Result<UnixListener, EvidenceError> {
    let err = |source| EvidenceError::Socket {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path).map_err(err)?,
        Ok(_) => {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is there",
            )));
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

/// Accepts connections on `listener` until the receiver of `lines` is gone, handing over each
/// whole line.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    max_connections: usize,
    max_line: usize,
    lines: mpsc::Sender<Vec<u8>>,
    counts: Arc<SocketCounts>,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!(socket = %path.display(), error = %e, "eve socket: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = lines.closed() => return,
        };
        if counts.active.load(Ordering::Relaxed) >= max_connections {
            counts.refused.fetch_add(1, Ordering::Relaxed);
            warn!(socket = %path.display(), max_connections, "eve socket: too many connections; one closed");
            drop(stream);
            continue;
        }
        counts.connections.fetch_add(1, Ordering::Relaxed);
        counts.active.fetch_add(1, Ordering::Relaxed);
        info!(socket = %path.display(), "eve socket: Suricata connected");
        let (tx, c) = (lines.clone(), Arc::clone(&counts));
        tokio::spawn(async move {
            read_connection(stream, max_line, &tx, &c).await;
            c.active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn read_connection(
    mut stream: UnixStream,
    max_line: usize,
    tx: &mpsc::Sender<Vec<u8>>,
    counts: &SocketCounts,
) {
    let mut buffer = LineBuffer::new(max_line);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut whole: Vec<Vec<u8>> = Vec::new();
        buffer.push(&chunk[..n], &mut |l| whole.push(l.to_vec()), &mut || {
            counts.long_lines.fetch_add(1, Ordering::Relaxed);
        });
        counts
            .lines
            .fetch_add(whole.len() as u64, Ordering::Relaxed);
        for line in whole {
            if tx.send(line).await.is_err() {
                return;
            }
        }
    }
    if buffer.reset() {
        counts.partial_dropped.fetch_add(1, Ordering::Relaxed);
    }
}
