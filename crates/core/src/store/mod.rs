//! The `Store` trait: an op log plus the materialized registers and nodes.
//!
//! Every store keeps each accepted op once with a strictly increasing local
//! `seq`, the current value of every register, and a node view that answers
//! queries. Writes happen in a [`Transaction`]; dropping one without
//! [`commit`](Transaction::commit) writes nothing. [`Store::apply_batch`] is
//! the atomic entry point the rest of the system uses: one refused op refuses
//! the whole batch (see `docs/protocol.md`). An op whose HLC is logged with
//! the same content is a `Duplicate`; with different content it is refused as
//! a [`Refusal::Collision`], never taken for a duplicate. `seq` only grows:
//! the one change that removes a logged row, [`Transaction::restamp`], first
//! appends the op again under its new HLC.

use std::path::PathBuf;

use crate::field::NodeId;
use crate::hlc::Hlc;
use crate::node::{Node, Query, QueryError, Register};
use crate::op::{LoggedOp, Op, Outcome, Refusal};

pub mod memory;
pub mod schema;
pub mod sqlite;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use memory::MemoryStore;
pub use sqlite::{OpenOptions, SqliteStore};

/// What went wrong in a store. Each variant reads as one clear sentence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file is not an SQLite database, or its pages are damaged.
    #[error(
        "the database {path} is damaged or is not a heph database; restore it from a backup or move it aside"
    )]
    Corrupt {
        path: PathBuf,
        #[source]
        source: Option<rusqlite::Error>,
    },
    /// Another connection holds a lock longer than the busy timeout.
    #[error("the database {path} is locked by another process (is another hephd running on it?)")]
    Locked {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The database cannot be created or written where it is.
    #[error("cannot write the database {path}: {reason}")]
    ReadOnly {
        path: PathBuf,
        reason: String,
        #[source]
        source: Option<rusqlite::Error>,
    },
    /// The database was written by a newer version of heph.
    #[error(
        "the database {path} has schema version {found}, newer than this heph supports ({supported}); upgrade heph to open it"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// A batch held an op that cannot be accepted; nothing of the batch was written.
    #[error("op {index} of the batch was refused, so none of the batch was written: {refusal}")]
    BatchRefused { index: usize, refusal: Refusal },
    /// A query with invalid bounds.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A stored row that does not decode (written by hand or by a broken tool).
    #[error("the database {path} holds a row that does not decode: {reason}")]
    BadRow { path: PathBuf, reason: String },
    /// Any other SQLite failure.
    #[error("database error on {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

/// How an id prefix resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Exactly one node has this prefix.
    One(NodeId),
    /// Several do; here are (up to 10 of) them.
    Ambiguous(Vec<NodeId>),
    /// None does.
    NotFound,
}

/// The most ids [`Store::resolve_prefix`] lists for an ambiguous prefix.
pub const AMBIGUOUS_LIST: usize = 10;

/// The ops a spoke should send next, and how far its scan of the log went.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outgoing {
    /// Ops after the cursor that did not come from the skipped origin, in `seq` order.
    pub ops: Vec<LoggedOp>,
    /// The greatest `seq` the scan covered (skipped ops included): once `ops`
    /// are delivered, the push cursor may move here.
    pub scanned_to: u64,
}

/// Writes to a store, all or nothing.
pub trait Transaction {
    /// Applies ops in order, returning one outcome per op. Invalid ops are
    /// `Refused` and not written; the valid ones are written within this
    /// transaction. Use [`Store::apply_batch`] for the all-or-nothing rule.
    fn apply(&mut self, ops: &[Op]) -> Result<Vec<Outcome>, StoreError> {
        self.apply_from(ops, None)
    }
    /// Like [`apply`](Self::apply), recording `origin` (e.g. the normalized
    /// URL of the hub the ops were pulled from) on every op this logs.
    /// `None` means a local edit or an op pushed to this replica.
    fn apply_from(&mut self, ops: &[Op], origin: Option<&str>) -> Result<Vec<Outcome>, StoreError>;
    /// [`apply_from`](Self::apply_from) with the all-or-nothing rule: the first
    /// refused op becomes [`StoreError::BatchRefused`], and the caller must
    /// drop the transaction uncommitted.
    fn apply_all(&mut self, ops: &[Op], origin: Option<&str>) -> Result<Vec<Outcome>, StoreError> {
        let outcomes = self.apply_from(ops, origin)?;
        if let Some((index, Outcome::Refused(refusal))) = outcomes
            .iter()
            .enumerate()
            .find(|(_, o)| matches!(o, Outcome::Refused(_)))
        {
            return Err(StoreError::BatchRefused {
                index,
                refusal: refusal.clone(),
            });
        }
        Ok(outcomes)
    }
    /// Moves each logged op from the HLC `old` to the HLC `new`, keeping its
    /// node, field and value: the op is appended again under `new` with a
    /// fresh `seq` and no origin (it is this replica's own op now: nobody
    /// else has `new`), then its row under `old` is deleted, and its register
    /// and node view are set as if the op had always carried `new`. An `old`
    /// that is not logged is skipped. Returns the nodes whose view changed.
    /// This is how a replica repairs an HLC collision (see
    /// [`Refusal::Collision`]); nothing else ever deletes a logged op.
    fn restamp(&mut self, moves: &[(Hlc, Hlc)]) -> Result<Vec<NodeId>, StoreError>;
    /// Sets a metadata value (sync cursors, …).
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError>;
    /// Makes every write of this transaction durable.
    fn commit(self) -> Result<(), StoreError>;
}

/// An op log with materialized registers and nodes.
pub trait Store {
    /// The write transaction; dropping it uncommitted rolls back.
    type Tx<'a>: Transaction
    where
        Self: 'a;

    /// Starts a write transaction.
    fn begin(&mut self) -> Result<Self::Tx<'_>, StoreError>;

    /// Up to `limit` logged ops with `seq > after`, in `seq` order.
    fn ops_after(&self, after: u64, limit: usize) -> Result<Vec<LoggedOp>, StoreError>;
    /// The greatest `seq` in the log (0 when empty).
    fn last_seq(&self) -> Result<u64, StoreError>;
    /// The greatest HLC in the log.
    fn max_hlc(&self) -> Result<Option<Hlc>, StoreError>;
    /// The number of ops in the log.
    fn op_count(&self) -> Result<u64, StoreError>;
    /// Every register, ordered by node then field.
    fn registers(&self) -> Result<Vec<Register>, StoreError>;
    /// One node, deleted or not.
    fn node(&self, id: &NodeId) -> Result<Option<Node>, StoreError>;
    /// Finds the node whose id starts with `prefix` (tombstoned nodes only
    /// when `include_deleted`).
    fn resolve_prefix(&self, prefix: &str, include_deleted: bool) -> Result<Resolved, StoreError>;
    /// Nodes matching `query`, ordered by creation HLC then id.
    fn query(&self, query: &Query) -> Result<Vec<Node>, StoreError>;
    /// Every tag carried by a live (not deleted) node, with how many carry it, sorted by tag.
    fn tag_counts(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// A metadata value.
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Where the logged op with this HLC came from: `Ok(None)` when it is
    /// not logged, `Ok(Some(None))` for a local (or pushed-in) op.
    fn origin(&self, hlc: &Hlc) -> Result<Option<Option<String>>, StoreError>;
    /// Up to `limit` ops with `seq > after` that did not come from
    /// `skip_origin`, and how far the scan went (see [`Outgoing`]).
    fn outgoing(&self, after: u64, limit: usize, skip_origin: &str)
    -> Result<Outgoing, StoreError>;
    /// How many ops with `seq > after` did not come from `skip_origin`.
    fn count_outgoing(&self, after: u64, skip_origin: &str) -> Result<u64, StoreError>;

    /// Applies a batch atomically: if any op is refused, nothing is written
    /// and the first refusal is returned as [`StoreError::BatchRefused`].
    fn apply_batch(&mut self, ops: &[Op]) -> Result<Vec<Outcome>, StoreError> {
        self.apply_batch_from(ops, None)
    }

    /// [`apply_batch`](Self::apply_batch), recording `origin` on the ops it logs.
    fn apply_batch_from(
        &mut self,
        ops: &[Op],
        origin: Option<&str>,
    ) -> Result<Vec<Outcome>, StoreError> {
        let mut tx = self.begin()?;
        let outcomes = tx.apply_all(ops, origin)?;
        tx.commit()?;
        Ok(outcomes)
    }
}

/// Whether `prefix` could start a node id at all (hex digits and hyphens).
pub(crate) fn plausible_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 36
        && prefix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-')
}
