//! The op — one assignment of a JSON value to one register — and what applying it did.
//!
//! This is the unit of the log and of the wire: hub, spoke, CLI and TUI all
//! use these types, so they cannot drift apart.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::field::{Field, Invalid, NodeId};
use crate::hlc::{ClockError, Hlc};

/// One op as it travels and as the log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// The op's clock stamp and unique id.
    pub hlc: Hlc,
    /// The node whose register it assigns.
    pub node: NodeId,
    /// The register's field name, kept as written so unknown fields survive.
    pub field: String,
    /// The assigned value.
    pub value: Value,
}

impl Op {
    /// Parses the field and checks the value against DESIGN §2.
    pub fn check(&self) -> Result<Field, Invalid> {
        let field = Field::parse(&self.field)?;
        field.validate(&self.value)?;
        Ok(field)
    }
}

/// An op as the log holds it: with its local arrival sequence number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedOp {
    /// Local arrival order; strictly increasing per store.
    pub seq: u64,
    /// The op.
    #[serde(flatten)]
    pub op: Op,
}

/// What applying one op did. Expected results are variants, not errors.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Logged, and its value is now the register's value.
    Applied,
    /// Logged, but a greater HLC already holds (or in this batch took) the register.
    Superseded,
    /// Its HLC was already in the log (or earlier in this batch) with the same
    /// node, field and value: nothing changed.
    Duplicate,
    /// Not logged, for the reason given.
    Refused(Refusal),
}

/// Why an op was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The field or value breaks DESIGN §2.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The op is stamped too far ahead of this replica's clock.
    #[error(transparent)]
    ClockSkew(#[from] ClockError),
    /// Another op with different content is already logged (or earlier in
    /// the batch) under the same HLC: two writers minted the same stamp,
    /// which happens only when they share a replica id (a copied data
    /// directory). Not a duplicate: taking it as one would lose an op.
    #[error(
        "op {hlc} has the same HLC as a different op already logged here, so two writers share the replica id {}; the sender must re-stamp it",
        hlc.replica
    )]
    Collision {
        /// The HLC both ops carry.
        hlc: Hlc,
    },
}

impl Op {
    /// Whether `other` is the same assignment: node, field and value.
    /// Two ops with one HLC must be the same op, or they collide.
    pub fn same_content(&self, other: &Op) -> bool {
        self.node == other.node && self.field == other.field && self.value == other.value
    }
}
