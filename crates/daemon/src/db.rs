//! The replica's own thread: the only place SQLite is touched.
//!
//! SQLite calls block, so they never run on the async executor. One thread
//! owns the [`Replica`] and runs jobs in arrival order; async code sends a
//! closure and awaits its answer. When every [`Db`] handle is dropped the
//! thread finishes the queued jobs, closes the database and exits — that is
//! the clean half of shutdown.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use heph_core::hlc::Clock;
use heph_core::store::OpenOptions;
use heph_core::{Replica, ReplicaId, SqliteStore, StoreError};
use tokio::sync::oneshot;

/// The replica type the daemon runs.
pub type LocalReplica = Replica<SqliteStore>;

type Job = Box<dyn FnOnce(&mut LocalReplica) + Send>;

/// A handle to the replica thread. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    jobs: mpsc::Sender<Job>,
}

/// The replica thread has stopped (the daemon is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the daemon is shutting down")]
pub struct Closed;

/// The wall clock, in Unix milliseconds.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// 16 bytes from the operating system's random source.
pub fn random_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    // getrandom only fails when the OS has no entropy source at all.
    if getrandom::fill(&mut b).is_err() {
        let t = SystemClock.now_ms().to_le_bytes();
        b[..8].copy_from_slice(&t);
        b[8..].copy_from_slice(&u64::from(std::process::id()).to_le_bytes());
    }
    b
}

impl Db {
    /// Opens the replica at `path` and starts its thread.
    pub fn open(
        path: &std::path::Path,
        max_skew_ms: u64,
        clock: Arc<dyn Clock>,
    ) -> Result<(Db, JoinHandle<()>), StoreError> {
        let store = SqliteStore::open(path, &OpenOptions::default())?;
        let replica = Replica::open(store, clock, max_skew_ms, || ReplicaId(random_bytes()))?;
        let (jobs, rx) = mpsc::channel::<Job>();
        let handle = std::thread::Builder::new()
            .name("heph-db".into())
            .spawn(move || {
                let mut replica = replica;
                while let Ok(job) = rx.recv() {
                    job(&mut replica);
                }
                drop(replica);
                tracing::debug!("database closed");
            })
            .map_err(|e| StoreError::ReadOnly {
                path: path.to_path_buf(),
                reason: format!("cannot start the database thread: {e}"),
                source: None,
            })?;
        Ok((Db { jobs }, handle))
    }

    /// Runs `f` on the replica thread and returns its result.
    pub async fn call<R, F>(&self, f: F) -> Result<R, Closed>
    where
        R: Send + 'static,
        F: FnOnce(&mut LocalReplica) -> R + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move |replica| {
                let _ = tx.send(f(replica));
            }))
            .map_err(|_| Closed)?;
        rx.await.map_err(|_| Closed)
    }
}
