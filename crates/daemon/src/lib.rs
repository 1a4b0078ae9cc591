//! `hephd`, the Hephaestus daemon, as a library: the binary parses flags and
//! calls [`run`]; tests start the same code in-process.
//!
//! In local mode the daemon owns the replica (on its own thread, see [`db`])
//! and serves the JSON-RPC of DESIGN §6 on a unix socket ([`rpc`]). It
//! refuses to share its database or socket with another daemon
//! ([`instance`]), and on shutdown it finishes in-flight requests, closes
//! the database and removes its socket.

pub mod config;
pub mod db;
pub mod events;
pub mod instance;
pub mod rpc;

use std::path::Path;
use std::sync::Arc;

use heph_core::StoreError;
use heph_core::hlc::Clock;
use tokio::net::UnixListener;
use tokio::sync::watch;

pub use config::Config;
use instance::InstanceError;
use rpc::methods::{Context, StaticInfo};

/// Why the daemon stopped with an error. Each reads as one sentence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    #[error(transparent)]
    Instance(#[from] InstanceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on the socket {}: {source}", .path.display())]
    Bind {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the daemon until `shutdown` turns true.
pub async fn run(config: &Config, shutdown: watch::Receiver<bool>) -> Result<(), DaemonError> {
    run_with_clock(config, Arc::new(db::SystemClock), shutdown).await
}

/// [`run`] with an injected clock (tests).
pub async fn run_with_clock(
    config: &Config,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let db_path = &config.db.value;
    let socket = &config.socket.value;
    instance::create_private_dir(db_path.parent().unwrap_or(Path::new("")))?;
    let lock = instance::lock_db(db_path)?;
    let max_skew_ms = config.max_clock_skew_secs.value.saturating_mul(1000);
    let (db, db_thread) = db::Db::open(db_path, max_skew_ms, clock.clone())?;

    instance::create_private_dir(socket.parent().unwrap_or(Path::new("")))?;
    if instance::clear_socket(socket)? {
        tracing::info!(socket = %socket.display(), "replaced a stale socket left by a daemon that did not shut down cleanly");
    }
    let listener = UnixListener::bind(socket).map_err(|source| DaemonError::Bind {
        path: socket.clone(),
        source,
    })?;
    instance::restrict_socket(socket)?;

    let ctx = Arc::new(Context {
        db,
        events: events::Events::new(),
        info: StaticInfo {
            mode: config.mode.value.as_str().into(),
            db: db_path.display().to_string(),
            socket: socket.display().to_string(),
            started_ms: clock.now_ms(),
        },
    });
    tracing::info!(
        db = %db_path.display(),
        socket = %socket.display(),
        pid = std::process::id(),
        "hephd ready"
    );
    rpc::server::serve(listener, ctx, shutdown).await;

    // Only the daemon that bound the socket removes it.
    let _ = std::fs::remove_file(socket);
    // Every handle to the replica is gone now; wait for its thread to close the db.
    let _ = tokio::task::spawn_blocking(move || db_thread.join()).await;
    drop(lock);
    tracing::info!("hephd stopped");
    Ok(())
}
