//! The spoke: a local replica that syncs with one hub (DESIGN §4).
//!
//! [`sync_loop`] runs rounds (pull until `more` is false, then push this
//! replica's own ops), long-polls between them, syncs right after a local
//! edit and backs off ([`backoff`]) when the hub fails. [`hub_client`] is its
//! HTTP side. [`SyncHandle`] is what the RPC methods see: `sync.status` and
//! `sync.now`. The per-hub cursors live in the replica's metadata, keyed by
//! the normalized hub URL and belonging to one id of the hub's log
//! ([`CursorKeys`]): when the hub's log changes, they start over and every
//! op this replica holds is re-sent ([`LogChangeRecord`]). Nothing here
//! serves HTTP.

pub mod auth;
pub mod backoff;
pub mod hub_client;
pub mod sync_loop;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use heph_core::Store;
use heph_core::rpc::{HubLogChange, RpcError, SyncStatus, code};
use heph_core::wire::HubUrl;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

pub use hub_client::{Cause, HubClient, SyncError};

use crate::db::Db;
use crate::events::Events;

/// How long `sync.now` waits for its round.
pub const SYNC_NOW_TIMEOUT: Duration = Duration::from_secs(120);

/// The metadata keys holding one hub's cursors.
#[derive(Debug, Clone)]
pub struct CursorKeys {
    /// The id of the hub's log the cursors below belong to (empty: not yet
    /// known). A different id in a hub's answer voids them.
    pub log: String,
    /// The hub seq this replica has pulled up to.
    pub pulled: String,
    /// This replica's own seq it has pushed up to.
    pub pushed: String,
    /// The furthest position this replica has seen in the hub's log
    /// (`"SEQ HLC"`, [`heph_core::hub_log::Seen`]), sent with every pull.
    pub seen: String,
    /// The last change of the hub's log ([`LogChangeRecord`] as JSON);
    /// while it is not done, a re-push of every op up to its `upto` is due.
    pub change: String,
}

impl CursorKeys {
    /// The keys for the hub `origin` (a normalized hub URL).
    pub fn new(origin: &str) -> Self {
        Self {
            log: format!("sync.log {origin}"),
            pulled: format!("sync.pulled {origin}"),
            pushed: format!("sync.pushed {origin}"),
            seen: format!("sync.seen {origin}"),
            change: format!("sync.log_change {origin}"),
        }
    }
}

/// A change of the hub's log and the re-push it calls for, as kept in the
/// replica's metadata so that a restart mid-re-push finishes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogChangeRecord {
    /// What `sync.status` shows.
    #[serde(flatten)]
    pub public: HubLogChange,
    /// Every op with a local seq up to this one is re-sent, whatever its origin.
    pub upto: u64,
}

impl LogChangeRecord {
    /// Reads the stored form; `None` when absent or unreadable (a damaged
    /// record only loses the report, never data: the cursors were reset).
    pub fn parse(text: Option<&str>) -> Option<Self> {
        serde_json::from_str(text?).ok()
    }

    /// Whether a re-push is still due.
    pub fn pending(&self) -> bool {
        !self.public.done
    }
}

/// The metadata key remembering the last successful round with `origin`, so
/// `sync.status` can still say when that was after a daemon restart.
fn last_success_key(origin: &str) -> String {
    format!("sync.last_success {origin}")
}

/// Saves the last success at most this often (a round can end every few
/// seconds; the time is for people, so a minute is precise enough).
const PERSIST_SUCCESS_EVERY_MS: u64 = 60_000;

/// The sync health a spoke remembers (in memory).
#[derive(Debug, Clone, Default)]
struct Health {
    last_success_ms: Option<u64>,
    /// The last success written to the database.
    persisted_success_ms: Option<u64>,
    last_error: Option<(String, Option<String>)>,
    failures: u32,
}

/// A reply to a waiting `sync.now`: the round's error sentence and hint.
type RoundReply = Result<(), (String, Option<String>)>;

/// What the RPC methods hold of the sync loop. Cheap to clone.
#[derive(Clone)]
pub struct SyncHandle {
    inner: Arc<Shared>,
}

struct Shared {
    hub: HubUrl,
    db: Db,
    events: Events,
    health: Mutex<Health>,
    now: mpsc::Sender<oneshot::Sender<RoundReply>>,
    auth: Option<Arc<auth::SpokeAuth>>,
}

impl SyncHandle {
    /// A handle and the receiving end of `sync.now` requests (for the loop).
    pub fn new(
        hub: HubUrl,
        db: Db,
        events: Events,
        auth: Option<Arc<auth::SpokeAuth>>,
    ) -> (Self, mpsc::Receiver<oneshot::Sender<RoundReply>>) {
        let (now, rx) = mpsc::channel(64);
        let handle = Self {
            inner: Arc::new(Shared {
                hub,
                db,
                events,
                health: Mutex::new(Health::default()),
                now,
                auth,
            }),
        };
        (handle, rx)
    }

    /// The hub.
    pub fn hub(&self) -> &HubUrl {
        &self.inner.hub
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.inner
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The spoke's sign-in.
    pub fn auth(&self) -> Option<&Arc<auth::SpokeAuth>> {
        self.inner.auth.as_ref()
    }

    /// A failure as one sentence and its fix; when the sign-in needs the
    /// user, its cause and the exact login command win.
    pub fn describe(&self, err: &SyncError) -> (String, Option<String>) {
        let auth_failure = matches!(
            err,
            SyncError::Rejected {
                status: 401 | 403,
                ..
            }
        );
        if auth_failure {
            if let Some((sentence, hint)) = self.auth().and_then(|a| a.action_needed()) {
                return (format!("{err}; {sentence}"), hint);
            }
        }
        (err.to_string(), err.hint(self.inner.hub.as_str()))
    }

    /// Records a successful round; publishes `status` when health changed.
    pub(crate) fn succeeded(&self, now_ms: u64) {
        let (changed, persist) = {
            let mut h = self.health();
            let changed = h.last_error.is_some() || h.last_success_ms.is_none();
            h.last_success_ms = Some(now_ms);
            h.last_error = None;
            h.failures = 0;
            let persist = h
                .persisted_success_ms
                .is_none_or(|p| now_ms.saturating_sub(p) >= PERSIST_SUCCESS_EVERY_MS);
            if persist {
                h.persisted_success_ms = Some(now_ms);
            }
            (changed, persist)
        };
        if persist {
            let key = last_success_key(self.inner.hub.as_str());
            let db = self.inner.db.clone();
            tokio::spawn(async move {
                let saved = db
                    .call(move |r| r.set_meta(&[(key.as_str(), now_ms.to_string().as_str())]))
                    .await;
                if let Ok(Err(e)) = saved {
                    tracing::warn!(error = %e, "cannot remember the time of the last sync");
                }
            });
        }
        if changed {
            self.inner.events.status();
        }
    }

    /// Publishes `status` (the hub's log changed, or its re-push finished).
    pub(crate) fn notify(&self) {
        self.inner.events.status();
    }

    /// Records a failed round; publishes `status` when health changed.
    pub(crate) fn failed(&self, err: &SyncError) {
        let (text, hint) = self.describe(err);
        let changed = {
            let mut h = self.health();
            h.failures = h.failures.saturating_add(1);
            let changed = h.last_error.as_ref().map(|(t, _)| t) != Some(&text);
            h.last_error = Some((text, hint));
            changed
        };
        if changed {
            self.inner.events.status();
        }
    }

    /// The answer of `sync.status`.
    pub async fn status(&self) -> SyncStatus {
        let origin = self.inner.hub.to_string();
        let keys = CursorKeys::new(&origin);
        let success_key = last_success_key(&origin);
        type Counts = (u64, Option<u64>, Option<u64>, Option<LogChangeRecord>);
        let counts = self
            .inner
            .db
            .call(move |r| -> Result<Counts, heph_core::StoreError> {
                let store = r.store();
                let pushed = store
                    .meta(&keys.pushed)?
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let pulled = store.meta(&keys.pulled)?.and_then(|v| v.parse().ok());
                let success = store.meta(&success_key)?.and_then(|v| v.parse().ok());
                let change = LogChangeRecord::parse(store.meta(&keys.change)?.as_deref());
                // While a re-push is due, what it has still to send comes
                // first; own ops written after it are counted as usual.
                let pending = match &change {
                    Some(c) if c.pending() => {
                        c.public.ops.saturating_sub(c.public.sent)
                            + store.count_outgoing(pushed.max(c.upto), &origin)?
                    }
                    _ => store.count_outgoing(pushed, &origin)?,
                };
                Ok((pending, pulled, success, change))
            })
            .await;
        let h = self.health().clone();
        let hub = self.inner.hub.to_string();
        let (pending_ops, hub_seq, stored_success, change, store_error) = match counts {
            Ok(Ok((pending, pulled, success, change))) => (pending, pulled, success, change, None),
            Ok(Err(e)) => (0, None, None, None, Some(e.to_string())),
            Err(_) => (
                0,
                None,
                None,
                None,
                Some("the daemon is shutting down".to_owned()),
            ),
        };
        let repushing = change.as_ref().filter(|c| c.pending()).map(|c| &c.public);
        let (message, last_error, hint) = match (&h.last_error, h.last_success_ms) {
            (Some((err, hint)), _) => (
                format!(
                    "sync with {hub} is failing ({} attempt{} in a row); changes stay local and are sent once it works again",
                    h.failures,
                    if h.failures == 1 { "" } else { "s" }
                ),
                Some(err.clone()),
                hint.clone(),
            ),
            (None, _) if repushing.is_some() => (
                format!(
                    "the hub's log at {hub} changed (a restored or new database): re-sending every op this device holds, {pending_ops} still to send"
                ),
                None,
                None,
            ),
            (None, Some(_)) if pending_ops == 0 => (format!("in sync with {hub}"), None, None),
            (None, Some(_)) => (
                format!("syncing with {hub}: {pending_ops} local ops still to send"),
                None,
                None,
            ),
            (None, None) => (
                format!(
                    "not synced with {hub} since the daemon started; the first round is under way"
                ),
                None,
                None,
            ),
        };
        // While the sign-in needs the user, its cause and the exact login
        // command are the truth about sync, even if a round still succeeds
        // on an access token that is about to run out.
        let (last_error, hint) = match self.auth().and_then(|a| a.action_needed()) {
            Some((sentence, auth_hint)) => (Some(sentence), auth_hint.or(hint)),
            None => (last_error, hint),
        };
        SyncStatus {
            configured: true,
            hub_url: Some(hub),
            // The message speaks of this daemon's rounds; the time of the last
            // success also survives restarts.
            last_success_ms: h.last_success_ms.max(stored_success),
            pending_ops,
            hub_seq,
            last_error: last_error.or(store_error),
            message,
            hint,
            hub_log_change: change.map(|c| c.public),
        }
    }

    /// Starts a round at once (interrupting a backoff) without waiting for
    /// it: after a new sign-in, sync resumes right away.
    pub fn wake(&self) {
        let (tx, _rx) = oneshot::channel();
        let _ = self.inner.now.try_send(tx);
    }

    /// `sync.now`: runs a round at once (interrupting a backoff) and waits for it.
    pub async fn sync_now(&self) -> Result<SyncStatus, RpcError> {
        let (tx, rx) = oneshot::channel();
        let shutting_down = || {
            RpcError::new(
                code::SHUTTING_DOWN,
                "the daemon is shutting down; try again once it has restarted",
            )
        };
        self.inner.now.send(tx).await.map_err(|_| shutting_down())?;
        match tokio::time::timeout(SYNC_NOW_TIMEOUT, rx).await {
            Err(_) => Err(RpcError::new(
                code::HUB,
                format!(
                    "the sync round with {} did not finish within {} s; it goes on in the background",
                    self.inner.hub,
                    SYNC_NOW_TIMEOUT.as_secs()
                ),
            )),
            Ok(Err(_)) => Err(shutting_down()),
            Ok(Ok(Err((message, hint)))) => {
                Err(RpcError::new(code::HUB, message).with_data(json!({"hint": hint})))
            }
            Ok(Ok(Ok(()))) => Ok(self.status().await),
        }
    }
}
