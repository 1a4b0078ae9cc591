//! A replica: one store plus the clock that stamps its local edits.
//!
//! [`Replica::commit_local`] stamps edits with the send rule and applies them;
//! [`Replica::receive`] applies ops from elsewhere after the skew check and
//! advances the clock past them (the receive rule). Both are atomic: a batch
//! with one refused op writes nothing. The replica id lives in the store's
//! metadata, so a reopened replica keeps its identity and its clock never
//! runs behind its own log.

use std::sync::Arc;

use serde_json::Value;

use crate::field::NodeId;
use crate::hlc::{Clock, ClockError, HlcState, ReplicaId};
use crate::op::{Op, Outcome, Refusal};
use crate::store::{Store, StoreError, Transaction};

/// The metadata key holding the replica id.
pub const REPLICA_ID_KEY: &str = "replica_id";

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
    /// Opens a replica on `store`. A store without a replica id gets the one
    /// `new_id` makes (the caller brings the randomness; core has none).
    pub fn open(
        mut store: S,
        clock: Arc<dyn Clock>,
        max_skew_ms: u64,
        new_id: impl FnOnce() -> ReplicaId,
    ) -> Result<Self, StoreError> {
        let id = match store.meta(REPLICA_ID_KEY)? {
            Some(text) => ReplicaId::parse(&text).map_err(|e| StoreError::BadRow {
                path: "replica metadata".into(),
                reason: e.to_string(),
            })?,
            None => {
                let id = new_id();
                let mut tx = store.begin()?;
                tx.set_meta(REPLICA_ID_KEY, &id.to_string())?;
                tx.commit()?;
                id
            }
        };
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
        let mut tx = self.store.begin()?;
        let outcomes = tx.apply_all(ops, origin)?;
        for (key, value) in meta {
            tx.set_meta(key, value)?;
        }
        tx.commit()?;
        if let Some(max) = ops.iter().map(|op| op.hlc).max() {
            self.hlc.observe(&max);
        }
        Ok(outcomes)
    }
}
