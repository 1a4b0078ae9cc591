//! The spoke's sync loop: rounds, long polls, backoff (DESIGN §4).
//!
//! One round pulls until the hub says `more: false`, then pushes this
//! replica's own ops after the `pushed` cursor in batches, skipping ops that
//! came from this hub. Every step is safe to interrupt: pulled ops and the
//! `pulled` cursor commit in one transaction, and `pushed` moves only after
//! the hub acknowledged the batch (a re-sent batch is all duplicates).
//! The cursors belong to one id of the hub's log: every pull names it and a
//! position seen in the log, and when an answer carries another id (a
//! restored or new hub database) the spoke starts over — cursors to 0 and a
//! re-push of every op it holds, whatever its origin, recorded in the same
//! transaction so that a restart finishes it.
//! Between rounds the loop long-polls the hub, and a local edit or
//! `sync.now` starts a round at once. It owns no HTTP server and no socket.
//!
//! HLC collisions (another writer shares a replica id of ours, DESIGN §4)
//! are repaired here, never swallowed: a pulled op whose HLC this replica
//! holds with different content moves ours to a fresh id in the same
//! transaction that applies the page; a push the hub refuses with
//! `hlc_collision` moves every unpushed op of that id, then pushes again.

use std::sync::Arc;

use heph_core::hub_log::Seen;
use heph_core::rpc::HubLogChange;
use heph_core::wire::{MAX_PULL_LIMIT, MAX_PUSH_BYTES, MAX_PUSH_OPS, PullResponse, error_code};
use heph_core::{Hlc, Outgoing, ReplicaError, ReplicaId, Store, StoreError};
use tokio::sync::{mpsc, oneshot, watch};

use super::backoff::{Backoff, random_unit};
use super::{CursorKeys, HubClient, LogChangeRecord, RoundReply, SyncError, SyncHandle};
use crate::db::{Db, SystemClock, random_bytes};
use crate::rpc::methods::Context;
use heph_core::hlc::Clock;

/// How long one long poll asks the hub to hold the request.
pub const LONG_POLL_SECS: u64 = 30;

/// During a catch-up, pulled pages are applied together up to this many
/// ops per transaction: each commit rewrites every index page it touched,
/// so 100 commits of 10,000 ops cost several times one of 100,000 (a new
/// spoke's first pull of 1,000,000 ops: ~33 s in 10,000-op commits). The
/// pull cursor still moves only with the data it covers.
pub const BULK_APPLY_OPS: usize = 100_000;

/// Adds a pulled `page` to the ops gathered so far; says whether the batch
/// is ready to apply: caught up (`more` is false), or [`BULK_APPLY_OPS`]
/// reached. The batch's cursor is the last page's.
fn gather(pending: Option<PullResponse>, page: PullResponse) -> (PullResponse, bool) {
    let batch = match pending {
        Some(mut b) => {
            b.ops.extend(page.ops);
            b.next = page.next;
            b.more = page.more;
            b
        }
        None => page,
    };
    let ready = !batch.more || batch.ops.len() >= BULK_APPLY_OPS;
    (batch, ready)
}

/// Hands memory freed after a big catch-up back to the operating system,
/// so a daemon that pulled a million ops does not idle at its peak size.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How many collision repairs one push may make before it gives up and
/// reports the refusal (each repair moves every unpushed op of one replica
/// id, so more than a few means something else is wrong).
const MAX_REPAIRS: usize = 8;

/// Room left in a push body for the envelope.
const ENVELOPE: usize = 64;

/// Aborts a spawned task when dropped (an unused prefetch).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a round stopped short.
enum Halt {
    /// A failure to report.
    Sync(SyncError),
    /// The hub answered with another log id than the cursors belong to.
    LogChanged { log: Option<String> },
}

impl From<SyncError> for Halt {
    fn from(e: SyncError) -> Self {
        Halt::Sync(e)
    }
}

/// The per-hub state a round starts from (see [`CursorKeys`]).
#[derive(Debug, Clone, Default)]
struct State {
    log: Option<String>,
    pulled: u64,
    pushed: u64,
    seen: Option<Seen>,
    change: Option<LogChangeRecord>,
}

/// The loop's state.
pub struct SyncLoop {
    ctx: Arc<Context>,
    db: Db,
    client: HubClient,
    handle: SyncHandle,
    origin: String,
    keys: CursorKeys,
}

fn local(what: &'static str) -> impl Fn(ReplicaError) -> SyncError {
    move |e| match e {
        ReplicaError::Clock(c) => SyncError::Local {
            what: "accept the hub's ops because of the clock",
            reason: c.to_string(),
        },
        ReplicaError::Store(StoreError::BatchRefused {
            refusal: heph_core::Refusal::ClockSkew(c),
            ..
        }) => SyncError::Local {
            what: "accept the hub's ops because of the clock",
            reason: c.to_string(),
        },
        other => SyncError::Local {
            what,
            reason: other.to_string(),
        },
    }
}

fn store(what: &'static str) -> impl Fn(StoreError) -> SyncError {
    move |e| SyncError::Local {
        what,
        reason: e.to_string(),
    }
}

/// Encodes as many of `out`'s ops as fit one push body. Returns the body
/// (`None` when there is no op) and the seq the push cursor may move to once
/// the hub accepted it.
pub fn encode_batch(out: &Outgoing, after: u64) -> (Option<Vec<u8>>, u64) {
    if out.ops.is_empty() {
        return (None, out.scanned_to.max(after));
    }
    let mut body = Vec::with_capacity(64 * out.ops.len());
    body.extend_from_slice(b"{\"ops\":[");
    let mut upto = out.scanned_to;
    for (i, logged) in out.ops.iter().enumerate() {
        let Ok(text) = serde_json::to_vec(&logged.op) else {
            continue;
        };
        if i > 0 && body.len() + text.len() + 1 + ENVELOPE > MAX_PUSH_BYTES {
            // The previous op is the last that fits.
            upto = out.ops[i - 1].seq;
            break;
        }
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&text);
    }
    body.extend_from_slice(b"]}");
    (Some(body), upto)
}

impl SyncLoop {
    /// A loop for the hub `client` talks to.
    pub fn new(ctx: Arc<Context>, db: Db, client: HubClient, handle: SyncHandle) -> Self {
        let origin = client.hub().to_string();
        let keys = CursorKeys::new(&origin);
        Self {
            ctx,
            db,
            client,
            handle,
            origin,
            keys,
        }
    }

    async fn state(&self) -> Result<State, SyncError> {
        let keys = self.keys.clone();
        self.db
            .call(move |r| -> Result<State, StoreError> {
                let store = r.store();
                let get = |k: &str| -> Result<u64, StoreError> {
                    Ok(store.meta(k)?.and_then(|v| v.parse().ok()).unwrap_or(0))
                };
                Ok(State {
                    log: store.meta(&keys.log)?.filter(|l| !l.is_empty()),
                    pulled: get(&keys.pulled)?,
                    pushed: get(&keys.pushed)?,
                    seen: store.meta(&keys.seen)?.and_then(|v| Seen::parse(&v)),
                    change: LogChangeRecord::parse(store.meta(&keys.change)?.as_deref()),
                })
            })
            .await
            .map_err(|_| SyncError::ShuttingDown)?
            .map_err(store("read its sync cursors"))
    }

    /// Compares the log id of a hub answer with the one the cursors belong
    /// to: `Ok(Some(id))` adopts the id of a hub first heard of (or an
    /// upgraded one), a different id halts the round.
    fn check_log(known: Option<&str>, answered: Option<&str>) -> Result<Option<String>, Halt> {
        match (known, answered) {
            (_, None) => Ok(None),
            (None, Some(a)) => Ok(Some(a.to_owned())),
            (Some(k), Some(a)) if k == a => Ok(None),
            (Some(_), Some(a)) => Err(Halt::LogChanged {
                log: Some(a.to_owned()),
            }),
        }
    }

    /// Applies one pulled page and moves `pulled` (and `seen`, and the log
    /// id when first learned) in the same transaction.
    async fn apply_page(
        &self,
        page: PullResponse,
        after: u64,
        adopt: Option<String>,
    ) -> Result<u64, SyncError> {
        if page.next < after {
            return Err(SyncError::BadResponse {
                url: self.origin.clone(),
                reason: format!("the pull cursor went back from {after} to {}", page.next),
            });
        }
        if page.ops.is_empty() && page.next == after && adopt.is_none() {
            return Ok(after);
        }
        let origin = self.origin.clone();
        let keys = self.keys.clone();
        let next = page.next;
        let ops = page.ops;
        let ctx = self.ctx.clone();
        let restamped = self
            .db
            .call(move |r| -> Result<_, ReplicaError> {
                let mut meta = vec![(keys.pulled.clone(), next.to_string())];
                if let Some(last) = ops.last() {
                    let seen = Seen {
                        seq: next,
                        hlc: last.hlc,
                    };
                    let known = r.store().meta(&keys.seen)?.and_then(|v| Seen::parse(&v));
                    if known.is_none_or(|k| k.seq <= next) {
                        meta.push((keys.seen.clone(), seen.to_string()));
                    }
                }
                if let Some(log) = adopt {
                    meta.push((keys.log.clone(), log));
                }
                let meta: Vec<(&str, &str)> =
                    meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let (outcomes, restamped) =
                    r.receive_repairing(&ops, Some(&origin), &meta, || ReplicaId(random_bytes()))?;
                let nodes = ops
                    .iter()
                    .zip(&outcomes)
                    .filter(|(_, o)| matches!(o, heph_core::Outcome::Applied))
                    .map(|(op, _)| op.node)
                    .chain(restamped.nodes.iter().copied())
                    .collect();
                // Announced here, on the replica thread, right after the
                // commit: a caller cancelled meanwhile (a long poll cut
                // short by a local edit) cannot lose the event.
                ctx.committed(nodes, r.store().last_seq()?);
                Ok(restamped)
            })
            .await
            .map_err(|_| SyncError::ShuttingDown)?
            .map_err(local("apply the ops pulled from the hub"))?;
        if let Some((old, new)) = restamped.moved.first() {
            tracing::warn!(
                hub = %self.origin,
                ops = restamped.moved.len(),
                first = %old,
                now = %new,
                "the hub sent ops whose HLCs this replica holds with different content: another writer shares a replica id (a copied data directory?); this replica's ops under those HLCs were re-stamped and will be pushed, nothing is lost"
            );
        }
        Ok(next)
    }

    async fn set_meta(&self, meta: Vec<(String, String)>) -> Result<(), SyncError> {
        self.db
            .call(move |r| {
                let meta: Vec<(&str, &str)> =
                    meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                r.set_meta(&meta)
            })
            .await
            .map_err(|_| SyncError::ShuttingDown)?
            .map_err(store("save its sync cursor"))
    }

    /// Pulls until `more` is false, fetching the next page while the
    /// current one is applied. Every page names the log the cursor belongs
    /// to and a position seen in it, so a changed log halts the pull before
    /// anything of it is applied under the old cursor.
    async fn pull_all(&self, state: &State) -> Result<u64, Halt> {
        let mut pulled = state.pulled;
        let mut log = state.log.clone();
        let fetch = |after: u64, seen: Option<Seen>, log: Option<String>| {
            let client = self.client.clone();
            AbortOnDrop(tokio::spawn(async move {
                client
                    .pull_checked(after, MAX_PULL_LIMIT, 0, log.as_deref(), seen)
                    .await
            }))
        };
        let mut next = Some(fetch(pulled, state.seen, log.clone()));
        let mut pending: Option<PullResponse> = None;
        let mut adopt: Option<String> = None;
        while let Some(mut task) = next.take() {
            let fetched = match (&mut task.0).await {
                Ok(r) => r,
                Err(_) => Err(SyncError::ShuttingDown),
            };
            let page = match fetched {
                Ok(page) => page,
                Err(e) => {
                    // Keep what already arrived before reporting the failure.
                    if let Some(b) = pending.take() {
                        self.apply_page(b, pulled, adopt.take()).await?;
                    }
                    return Err(e.into());
                }
            };
            if let Some(new) = Self::check_log(log.as_deref(), page.log.as_deref())? {
                log = Some(new.clone());
                adopt = Some(new);
            }
            if page.more {
                let seen = page.ops.last().map(|op| Seen {
                    seq: page.next,
                    hlc: op.hlc,
                });
                next = Some(fetch(page.next, seen, log.clone()));
            }
            let (batch, ready) = gather(pending.take(), page);
            if !ready {
                pending = Some(batch);
                continue;
            }
            let bulk = batch.ops.len() >= BULK_APPLY_OPS / 2;
            pulled = self.apply_page(batch, pulled, adopt.take()).await?;
            if bulk && next.is_none() {
                release_freed_memory();
            }
        }
        Ok(pulled)
    }

    /// The next ops to push after `pushed`: while a re-push is due, every
    /// op up to its `upto` whatever its origin; then this replica's own.
    async fn next_outgoing(
        &self,
        pushed: u64,
        repush_upto: Option<u64>,
    ) -> Result<Outgoing, SyncError> {
        let origin = self.origin.clone();
        self.db
            .call(move |r| -> Result<Outgoing, StoreError> {
                match repush_upto {
                    Some(upto) if pushed < upto => {
                        let mut ops = r.store().ops_after(pushed, MAX_PUSH_OPS)?;
                        ops.retain(|l| l.seq <= upto);
                        let scanned_to = if ops.len() == MAX_PUSH_OPS {
                            ops.last().map_or(upto, |l| l.seq)
                        } else {
                            upto
                        };
                        Ok(Outgoing { ops, scanned_to })
                    }
                    _ => r.store().outgoing(pushed, MAX_PUSH_OPS, &origin),
                }
            })
            .await
            .map_err(|_| SyncError::ShuttingDown)?
            .map_err(store("read its ops to push"))
    }

    /// Pushes this replica's own ops after `pushed` in batches — and first,
    /// while a re-push is due after a change of the hub's log, every op it
    /// holds. `pushed`, `seen` and the re-push's progress move together,
    /// after the hub acknowledged each batch. A batch the hub refuses as an
    /// HLC collision is repaired ([`Self::repair`]) and pushed again.
    async fn push_all(&self, state: State) -> Result<(), Halt> {
        let State {
            log,
            mut pushed,
            mut seen,
            mut change,
            ..
        } = state;
        let mut repairs = 0;
        loop {
            let repush_upto = change.as_ref().filter(|c| c.pending()).map(|c| c.upto);
            let out = self.next_outgoing(pushed, repush_upto).await?;
            let repushing = repush_upto.is_some_and(|u| pushed < u);
            if out.ops.is_empty() && out.scanned_to <= pushed && !repushing {
                return Ok(());
            }
            let (body, upto) = encode_batch(&out, pushed);
            let sent = out.ops.iter().filter(|l| l.seq <= upto).count() as u64;
            let mut meta = vec![(self.keys.pushed.clone(), upto.to_string())];
            let mut accepted = 0;
            if let Some(body) = body {
                match self.client.push_encoded(body).await {
                    Ok(reply) => {
                        tracing::debug!(
                            accepted = reply.accepted,
                            duplicates = reply.duplicates,
                            "pushed"
                        );
                        if let Some(new) = Self::check_log(log.as_deref(), reply.log.as_deref())? {
                            meta.push((self.keys.log.clone(), new));
                        }
                        if let Some(hlc) = reply.hlc {
                            if seen.is_none_or(|s| s.seq < reply.seq) {
                                let s = Seen {
                                    seq: reply.seq,
                                    hlc,
                                };
                                meta.push((self.keys.seen.clone(), s.to_string()));
                                seen = Some(s);
                            }
                        }
                        accepted = reply.accepted;
                    }
                    Err(SyncError::Rejected {
                        status: 403,
                        code,
                        message,
                        ..
                    }) if repushing && code == error_code::FORBIDDEN => {
                        // A reader may not push: it cannot give the hub back
                        // what it holds. Its own pending ops fail as before.
                        tracing::warn!(hub = %self.origin, %message, "the hub's log changed, but this device may not push, so it cannot re-send the ops it holds");
                        if let Some(c) = change.as_mut() {
                            c.public.done = true;
                            let upto = c.upto;
                            meta[0].1 = upto.max(pushed).to_string();
                            meta.push((
                                self.keys.change.clone(),
                                serde_json::to_string(c).unwrap_or_default(),
                            ));
                            self.set_meta(meta).await?;
                            pushed = upto.max(pushed);
                            continue;
                        }
                    }
                    Err(SyncError::Collision { hlc, message, url }) if repairs < MAX_REPAIRS => {
                        repairs += 1;
                        if self.repair(pushed, hlc).await? == 0 {
                            // None of ours carries that id: re-stamping cannot help.
                            return Err(SyncError::Collision { url, hlc, message }.into());
                        }
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if repushing {
                if let Some(c) = change.as_mut() {
                    c.public.sent = (c.public.sent + sent).min(c.public.ops);
                    c.public.accepted += accepted;
                    if upto >= c.upto {
                        c.public.done = true;
                        c.public.sent = c.public.ops;
                    }
                    meta.push((
                        self.keys.change.clone(),
                        serde_json::to_string(c).unwrap_or_default(),
                    ));
                }
            }
            self.set_meta(meta).await?;
            pushed = upto;
            if let Some(c) = change.as_ref().filter(|c| repushing && c.public.done) {
                tracing::info!(
                    hub = %self.origin,
                    resent = c.public.ops,
                    new_to_hub = c.public.accepted,
                    "re-sent every op this device held after the hub's log changed"
                );
                self.handle.notify();
            }
        }
    }

    /// Starts over with the hub's log `log` (`None`: not yet known): the
    /// cursors go back to 0, and a re-push of every op held now is due. One
    /// transaction, so a restart finishes what this began.
    async fn start_over(&self, log: Option<String>) -> Result<(), SyncError> {
        let keys = self.keys.clone();
        let now = SystemClock.now_ms();
        let record = self
            .db
            .call(move |r| -> Result<LogChangeRecord, StoreError> {
                let record = LogChangeRecord {
                    public: HubLogChange {
                        at_ms: now,
                        ops: r.store().op_count()?,
                        ..HubLogChange::default()
                    },
                    upto: r.store().last_seq()?,
                };
                let json = serde_json::to_string(&record).unwrap_or_default();
                r.set_meta(&[
                    (&keys.log, log.as_deref().unwrap_or("")),
                    (&keys.pulled, "0"),
                    (&keys.pushed, "0"),
                    (&keys.seen, ""),
                    (&keys.change, &json),
                ])?;
                Ok(record)
            })
            .await
            .map_err(|_| SyncError::ShuttingDown)?
            .map_err(store("reset its sync cursors"))?;
        tracing::warn!(
            hub = %self.origin,
            ops = record.public.ops,
            "the hub's log changed (its database was restored from a backup or replaced); pulling everything again and re-sending every op this device holds"
        );
        self.handle.notify();
        Ok(())
    }

    /// Moves every op after `pushed` stamped by the replica id of `hlc` to a
    /// fresh id, after the hub refused a push as an HLC collision. Returns
    /// how many moved.
    async fn repair(&self, pushed: u64, hlc: Hlc) -> Result<usize, SyncError> {
        let origin = self.origin.clone();
        let ctx = self.ctx.clone();
        let restamped = self
            .db
            .call(move |r| -> Result<_, ReplicaError> {
                let restamped =
                    r.restamp_unpushed(pushed, &origin, hlc.replica, || ReplicaId(random_bytes()))?;
                ctx.committed(
                    restamped.nodes.iter().copied().collect(),
                    r.store().last_seq()?,
                );
                Ok(restamped)
            })
            .await
            .map_err(|_| SyncError::ShuttingDown)?
            .map_err(local("re-stamp its unpushed ops"))?;
        tracing::warn!(
            hub = %self.origin,
            %hlc,
            replica = %hlc.replica,
            ops = restamped.moved.len(),
            "the hub holds a different op under an HLC this replica pushed: another writer shares the replica id (a copied data directory?); re-stamped this replica's unpushed ops of that id and pushing them again, nothing is lost"
        );
        Ok(restamped.moved.len())
    }

    /// One round: pull everything, then push everything. When the hub's
    /// log changed, start over once within the same round.
    pub async fn round(&self) -> Result<(), SyncError> {
        let mut started_over = false;
        loop {
            let halt = match self.try_round().await {
                Ok(()) => return Ok(()),
                Err(h) => h,
            };
            let log = match halt {
                Halt::Sync(e) if e.is_cursor_ahead() && !started_over => None,
                Halt::LogChanged { log } if !started_over => log,
                Halt::Sync(e) => return Err(e),
                Halt::LogChanged { .. } => {
                    return Err(SyncError::BadResponse {
                        url: self.origin.clone(),
                        reason: "the hub's log changed again while this spoke started over".into(),
                    });
                }
            };
            self.start_over(log).await?;
            started_over = true;
        }
    }

    async fn try_round(&self) -> Result<(), Halt> {
        let state = self.state().await?;
        self.pull_all(&state).await?;
        // Re-read: the pull may have learned the log id and a new position.
        let state = self.state().await?;
        self.push_all(state).await
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(
        self,
        mut now_rx: mpsc::Receiver<oneshot::Sender<RoundReply>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut backoff = Backoff::new();
        let mut waiters: Vec<oneshot::Sender<RoundReply>> = Vec::new();
        loop {
            // Requests that arrived before this round starts are answered by it.
            while let Ok(w) = now_rx.try_recv() {
                waiters.push(w);
            }
            let result = tokio::select! {
                r = self.round() => r,
                _ = shutdown.wait_for(|&s| s) => return,
            };
            let result = match result {
                Ok(()) => {
                    backoff.reset();
                    self.handle.succeeded(SystemClock.now_ms());
                    for w in waiters.drain(..) {
                        let _ = w.send(Ok(()));
                    }
                    // Idle: long-poll until something happens.
                    tokio::select! {
                        r = self.long_poll() => r,
                        _ = self.ctx.local_edit.notified() => Ok(()),
                        Some(w) = now_rx.recv() => { waiters.push(w); Ok(()) }
                        _ = shutdown.wait_for(|&s| s) => return,
                    }
                }
                Err(e) => Err(e),
            };
            let Err(e) = result else { continue };
            if matches!(e, SyncError::ShuttingDown) {
                return;
            }
            tracing::warn!(hub = %self.origin, error = %e, "sync failed");
            self.handle.failed(&e);
            let reply = self.handle.describe(&e);
            for w in waiters.drain(..) {
                let _ = w.send(Err(reply.clone()));
            }
            let delay = backoff.fail(random_unit());
            tracing::info!(hub = %self.origin, retry_in_ms = delay.as_millis() as u64, "backing off");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                Some(w) = now_rx.recv() => waiters.push(w),
                _ = shutdown.wait_for(|&s| s) => return,
            }
        }
    }

    /// One long poll; applies what it brings. The hub checks the log id
    /// and position before it waits, so a changed log ends the poll at once
    /// and the spoke starts over.
    async fn long_poll(&self) -> Result<(), SyncError> {
        let state = self.state().await?;
        let page = self
            .client
            .pull_checked(
                state.pulled,
                MAX_PULL_LIMIT,
                LONG_POLL_SECS,
                state.log.as_deref(),
                state.seen,
            )
            .await?;
        match Self::check_log(state.log.as_deref(), page.log.as_deref()) {
            Ok(adopt) => {
                self.apply_page(page, state.pulled, adopt).await?;
            }
            Err(Halt::LogChanged { log }) => self.start_over(log).await?,
            Err(Halt::Sync(e)) => return Err(e),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heph_core::LoggedOp;
    use heph_core::store::conformance::op;
    use serde_json::json;

    fn logged(seq: u64, size: usize) -> LoggedOp {
        LoggedOp {
            seq,
            op: op(1000 + seq, 0, 1, 1, "body", json!("x".repeat(size))),
        }
    }

    #[test]
    fn pulled_pages_are_gathered_in_order_up_to_the_bulk_size() {
        let page = |from: usize, n: usize, more: bool| PullResponse {
            ops: (from..from + n)
                .map(|i| op(1000 + i as u64, 0, 1, 1, "title", json!(i)))
                .collect(),
            next: (from + n) as u64,
            more,
            log: None,
        };
        // Caught up at once: apply.
        let (b, ready) = gather(None, page(0, 10, false));
        assert!(ready);
        assert_eq!(b.next, 10);
        // More to come and small: keep gathering, cursor from the last page.
        let (b, ready) = gather(None, page(0, 10_000, true));
        assert!(!ready);
        let (b, ready) = gather(Some(b), page(10_000, 10_000, true));
        assert!(!ready);
        assert_eq!((b.ops.len(), b.next), (20_000, 20_000));
        assert_eq!(b.ops[10_000], page(10_000, 1, true).ops[0], "in hub order");
        // The last page, or the bulk size, makes it ready.
        let (b2, ready) = gather(Some(b.clone()), page(20_000, 5, false));
        assert!(ready && !b2.more && b2.next == 20_005);
        let mut big = b;
        while big.ops.len() < BULK_APPLY_OPS - 10_000 {
            let from = big.ops.len();
            big = gather(Some(big), page(from, 10_000, true)).0;
        }
        let from = big.ops.len();
        let (big, ready) = gather(Some(big), page(from, 10_000, true));
        assert!(ready && big.more, "{} ops", big.ops.len());
    }

    #[test]
    fn a_batch_is_cut_to_fit_the_push_limit() {
        let out = Outgoing {
            ops: (1..=20).map(|s| logged(s, 1024 * 1024 - 200)).collect(),
            scanned_to: 25,
        };
        let (body, upto) = encode_batch(&out, 0);
        let body = body.unwrap();
        assert!(body.len() <= MAX_PUSH_BYTES);
        let parsed: heph_core::wire::PushRequest = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed.ops.len() as u64, upto);
        assert!((7..20).contains(&upto), "{upto}");

        let small = Outgoing {
            ops: vec![logged(3, 10), logged(5, 10)],
            scanned_to: 9,
        };
        let (body, upto) = encode_batch(&small, 2);
        assert_eq!(
            upto, 9,
            "everything fit, so the cursor passes skipped ops too"
        );
        let parsed: heph_core::wire::PushRequest = serde_json::from_slice(&body.unwrap()).unwrap();
        assert_eq!(parsed.ops.len(), 2);

        let none = Outgoing {
            ops: vec![],
            scanned_to: 12,
        };
        assert_eq!(encode_batch(&none, 4), (None, 12));
    }
}
