//! The capture writer's hook: finished files are hashed on a thread of their own, so a 100 MB
//! file's SHA-256 never holds up the writer (and the ring behind it).

use std::{
    fs::File,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread::JoinHandle,
};

use tracing::{debug, error};

use super::{Custody, SecretKey, open_to_hash};

/// Files waiting to be hashed before [`Recorder::record`] blocks: each holds only an open file,
/// and hashing (about 1.5 GB/s here) outruns any capture, so the bound is only a backstop.
const QUEUE: usize = 64;

enum Job {
    /// The file, opened when it was finished, and its name.
    Add(PathBuf, File),
    Remove(PathBuf),
}

/// Records finished files into their directory's manifest in the background, in the order they
/// are handed over. The manifest is created with the first entry, so a capture that finishes no
/// file leaves none. Failures are logged and counted, never fatal: the capture goes on.
#[derive(Debug)]
pub struct Recorder {
    tx: Option<mpsc::SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    failures: Arc<AtomicU64>,
}

impl Recorder {
    /// Starts the thread for manifests in `dir`; entries are signed with `signer`.
    pub fn spawn(dir: PathBuf, signer: Option<SecretKey>) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let failures = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&failures);
        let thread = std::thread::Builder::new()
            .name("tap-custody".into())
            .spawn(move || {
                let mut signer = signer;
                let mut custody: Option<Custody> = None;
                for job in rx {
                    let path = match &job {
                        Job::Add(p, _) | Job::Remove(p) => p.clone(),
                    };
                    let result = match custody.as_mut() {
                        Some(c) => Ok(c),
                        None => Custody::open(&dir, signer.take()).map(|c| custody.insert(c)),
                    }
                    .and_then(|c| match job {
                        Job::Add(p, f) => c.record_file(&p, f),
                        Job::Remove(p) => c.record_removal(&p),
                    });
                    match result {
                        Ok(entry) => {
                            debug!(file = %path.display(), seq = entry.seq, "custody: recorded");
                        }
                        Err(e) => {
                            counted.fetch_add(1, Ordering::Relaxed);
                            error!(file = %path.display(), error = %e, "custody: not recorded");
                        }
                    }
                }
            });
        match thread {
            Ok(thread) => Self {
                tx: Some(tx),
                thread: Some(thread),
                failures,
            },
            Err(e) => {
                error!(error = %e, "custody: cannot start the recording thread; files will not be recorded");
                Self {
                    tx: None,
                    thread: None,
                    failures,
                }
            }
        }
    }

    fn send(&self, job: Job, path: &Path) {
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(job).is_ok());
        if !sent {
            self.failures.fetch_add(1, Ordering::Relaxed);
            error!(file = %path.display(), "custody: not recorded (the recording thread is gone)");
        }
    }

    /// Records `path`, just finished. The file is opened now, so what gets hashed is what it
    /// holds now, even if a post-rotate command moves or replaces it meanwhile.
    pub fn record(&self, path: &Path) {
        match open_to_hash(path) {
            Ok(file) => self.send(Job::Add(path.to_path_buf(), file), path),
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                error!(file = %path.display(), error = %e, "custody: not recorded");
            }
        }
    }

    /// Records that tap deleted `path` (the rotation ring).
    pub fn removed(&self, path: &Path) {
        self.send(Job::Remove(path.to_path_buf()), path);
    }

    /// Files that could not be recorded so far.
    #[must_use]
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Waits until every file handed over is recorded; returns the failures.
    #[must_use = "the failures are worth reporting"]
    pub fn finish(mut self) -> u64 {
        self.close();
        self.failures()
    }

    fn close(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                error!("custody: the recording thread panicked");
            }
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.close();
    }
}
