//! A replica: one store plus the clock that stamps its local edits.
//!
//! [`Replica::commit_local`] stamps edits with the send rule and applies them;
//! [`Replica::receive`] applies ops from elsewhere after the skew check and
//! advances the clock past them (the receive rule). Both are atomic: a batch
//! with one refused op writes nothing.
//!
//! A replica id names one run of one writer, never a database: every
//! [`Replica::open`] takes a fresh id, and the clock starts past the greatest
//! HLC in the log, so a reopened replica never stamps behind its own log and
//! two copies of one database never mint the same HLC (DESIGN §4). Should
//! two writers share an id anyway (a running virtual machine cloned), the
//! collision is refused, never taken for a duplicate, and
//! [`Replica::restamp_unpushed`] / [`Replica::receive_repairing`] move this
//! replica's colliding ops to HLCs of a fresh id.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::field::NodeId;
use crate::hlc::{Clock, ClockError, Hlc, HlcState, ReplicaId};
use crate::op::{Op, Outcome, Refusal};
use crate::store::{Store, StoreError, Transaction};

/// What a repair re-stamped: each moved op's old and new HLC, and the nodes
/// whose view changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restamped {
    /// `(old, new)` per moved op, in old-HLC order.
    pub moved: Vec<(Hlc, Hlc)>,
    /// Nodes whose view changed.
    pub nodes: Vec<NodeId>,
}

/// How many draws [`fresh_above`] makes before it settles for any fresh id.
const DRAWS: usize = 64;

/// A fresh id greater than `old` when one comes within [`DRAWS`] draws, so a
/// re-stamped HLC is greater than the one it replaces.
fn fresh_above(old: ReplicaId, fresh: &mut impl FnMut() -> ReplicaId) -> ReplicaId {
    let mut id = fresh();
    for _ in 1..DRAWS {
        if id > old {
            break;
        }
        id = fresh();
    }
    id
}

/// The new HLC of each of `old`: the same wall time and counter, so the op
/// keeps its place among every op it is not concurrent with, and a fresh
/// replica id per old id, so the moves stay distinct and nobody else holds
/// the new stamps.
fn moves(mut old: Vec<Hlc>, fresh: &mut impl FnMut() -> ReplicaId) -> Vec<(Hlc, Hlc)> {
    old.sort_unstable();
    old.dedup();
    let mut ids: HashMap<ReplicaId, ReplicaId> = HashMap::new();
    old.into_iter()
        .map(|h| {
            let replica = *ids
                .entry(h.replica)
                .or_insert_with(|| fresh_above(h.replica, fresh));
            (h, Hlc { replica, ..h })
        })
        .collect()
}

/// What went wrong applying ops to a replica.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Clock(#[from] ClockError),
}

/// One edit a local user makes: a value for one register.
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    pub node: NodeId,
    pub field: String,
    pub value: Value,
}

impl Edit {
    /// An edit of `field` of `node`.
    pub fn new(node: NodeId, field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self {
            node,
            field: field.into(),
            value: value.into(),
        }
    }
}

/// A store with its clock.
pub struct Replica<S> {
    store: S,
    clock: Arc<dyn Clock>,
    hlc: HlcState,
}

impl<S: Store> Replica<S> {
    /// Opens a replica on `store`, stamping with the id `new_id` makes for
    /// this run (the caller brings the randomness; core has none). The id is
    /// never read from the store: a copy of the database opened elsewhere
    /// gets its own, so the two never mint the same HLC. The clock starts
    /// past the greatest HLC in the log, whoever stamped it.
    pub fn open(
        store: S,
        clock: Arc<dyn Clock>,
        max_skew_ms: u64,
        new_id: impl FnOnce() -> ReplicaId,
    ) -> Result<Self, StoreError> {
        let id = new_id();
        let mut hlc = HlcState::new(id).with_max_skew_ms(max_skew_ms);
        if let Some(max) = store.max_hlc()? {
            hlc.observe(&max);
        }
        Ok(Self { store, clock, hlc })
    }

    /// This replica's id.
    pub fn id(&self) -> ReplicaId {
        self.hlc.replica()
    }

    /// The store, for reads.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, for writes that are not ops (metadata such as sync cursors).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The clock's current reading.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Sets metadata values in one transaction (sync cursors and the like).
    pub fn set_meta(&mut self, meta: &[(&str, &str)]) -> Result<(), StoreError> {
        let mut tx = self.store.begin()?;
        for (key, value) in meta {
            tx.set_meta(key, value)?;
        }
        tx.commit()
    }

    /// Stamps and applies local edits as one atomic batch; returns the ops.
    pub fn commit_local(&mut self, edits: &[Edit]) -> Result<Vec<Op>, ReplicaError> {
        let now = self.clock.now_ms();
        let mut ops = Vec::with_capacity(edits.len());
        for edit in edits {
            ops.push(Op {
                hlc: self.hlc.send(now)?,
                node: edit.node,
                field: edit.field.clone(),
                value: edit.value.clone(),
            });
        }
        self.store.apply_batch(&ops)?;
        Ok(ops)
    }

    /// Applies ops from another replica as one atomic batch. An op stamped
    /// more than `max_clock_skew` ahead refuses the batch (the sender keeps it
    /// and retries later).
    pub fn receive(&mut self, ops: &[Op]) -> Result<Vec<Outcome>, ReplicaError> {
        self.receive_from(ops, None, &[])
    }

    /// [`receive`](Self::receive), recording `origin` on the ops it logs and
    /// setting `meta` in the same transaction — so a sync cursor moves
    /// exactly when the ops it covers are committed, never before.
    pub fn receive_from(
        &mut self,
        ops: &[Op],
        origin: Option<&str>,
        meta: &[(&str, &str)],
    ) -> Result<Vec<Outcome>, ReplicaError> {
        self.check_skew(ops)?;
        let mut tx = self.store.begin()?;
        let outcomes = tx.apply_all(ops, origin)?;
        for (key, value) in meta {
            tx.set_meta(key, value)?;
        }
        tx.commit()?;
        self.observe_max(ops);
        Ok(outcomes)
    }

    /// Refuses the batch when an op is stamped more than `max_clock_skew` ahead.
    fn check_skew(&self, ops: &[Op]) -> Result<(), ReplicaError> {
        let now = self.clock.now_ms();
        for (index, op) in ops.iter().enumerate() {
            if let Err(e) = self.hlc.check(&op.hlc, now) {
                return Err(StoreError::BatchRefused {
                    index,
                    refusal: Refusal::ClockSkew(e),
                }
                .into());
            }
        }
        Ok(())
    }

    /// The receive rule for an applied batch: the clock moves past its greatest HLC.
    fn observe_max(&mut self, ops: &[Op]) {
        if let Some(max) = ops.iter().map(|op| op.hlc).max() {
            self.hlc.observe(&max);
        }
    }

    /// Repairs a collision the hub reported on push: moves every op after
    /// the push cursor `after` (skipping ops from `skip_origin`, as a push
    /// does) that is stamped by `shared` to an HLC of a fresh id, in one
    /// transaction. None of them reached the hub (a refused batch writes
    /// nothing), so nobody else holds the new stamps. When `shared` is this
    /// replica's own id, it stamps with a fresh one from now on.
    pub fn restamp_unpushed(
        &mut self,
        after: u64,
        skip_origin: &str,
        shared: ReplicaId,
        mut fresh: impl FnMut() -> ReplicaId,
    ) -> Result<Restamped, ReplicaError> {
        let out = self.store.outgoing(after, usize::MAX, skip_origin)?;
        let old: Vec<Hlc> = out
            .ops
            .iter()
            .map(|l| l.op.hlc)
            .filter(|h| h.replica == shared)
            .collect();
        let moved = moves(old, &mut fresh);
        let mut tx = self.store.begin()?;
        let nodes = tx.restamp(&moved)?;
        tx.commit()?;
        if shared == self.id() {
            self.hlc.renew(fresh());
        }
        Ok(Restamped { moved, nodes })
    }

    /// [`receive_from`](Self::receive_from) that repairs collisions: when
    /// received ops carry HLCs logged here with different content, this
    /// replica's ops under those HLCs move to HLCs of a fresh id (whatever
    /// their origin: the sender's op takes the HLC, ours keeps its
    /// assignment under the new one and is sent on as our own), then the
    /// ops are applied and `meta` set — all in one transaction. Returns the
    /// outcomes and what moved (nothing, usually).
    pub fn receive_repairing(
        &mut self,
        ops: &[Op],
        origin: Option<&str>,
        meta: &[(&str, &str)],
        mut fresh: impl FnMut() -> ReplicaId,
    ) -> Result<(Vec<Outcome>, Restamped), ReplicaError> {
        self.check_skew(ops)?;
        let collisions: Vec<Hlc> = {
            let mut tx = self.store.begin()?;
            let outcomes = tx.apply_from(ops, origin)?;
            let collisions: Vec<Hlc> = ops
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| matches!(o, Outcome::Refused(Refusal::Collision { .. })))
                .map(|(op, _)| op.hlc)
                .collect();
            if collisions.is_empty() {
                // The usual case: one pass, exactly as `receive_from`.
                if let Some((index, Outcome::Refused(refusal))) = outcomes
                    .iter()
                    .enumerate()
                    .find(|(_, o)| matches!(o, Outcome::Refused(_)))
                {
                    return Err(StoreError::BatchRefused {
                        index,
                        refusal: refusal.clone(),
                    }
                    .into());
                }
                for (key, value) in meta {
                    tx.set_meta(key, value)?;
                }
                tx.commit()?;
                self.observe_max(ops);
                return Ok((outcomes, Restamped::default()));
            }
            // Dropped uncommitted: the repair below starts over.
            collisions
        };
        let ours_shared = collisions.iter().any(|h| h.replica == self.id());
        let moved = moves(collisions, &mut fresh);
        let mut tx = self.store.begin()?;
        let mut nodes = tx.restamp(&moved)?;
        let outcomes = tx.apply_all(ops, origin)?;
        for (key, value) in meta {
            tx.set_meta(key, value)?;
        }
        tx.commit()?;
        self.observe_max(ops);
        if ours_shared {
            self.hlc.renew(fresh());
        }
        nodes.sort_unstable();
        nodes.dedup();
        Ok((outcomes, Restamped { moved, nodes }))
    }
}
