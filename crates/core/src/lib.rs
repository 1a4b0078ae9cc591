//! Hephaestus core: the data model, the hybrid logical clock, the op log, the
//! merge rule and the stores (DESIGN §1–§3).
//!
//! Pure and deterministic: no network, no async, and no wall-clock reads
//! except through an injected [`hlc::Clock`]; settings are resolved from an
//! environment and config text the caller passes in. The one exception is
//! [`net::is_loopback_host`], which asks the system resolver what a
//! `localhost` name points at (its rule is tested with an injected resolver).

pub mod config;
pub mod date;
pub mod field;
pub mod hlc;
pub mod hub_log;
pub mod input;
mod merge;
pub mod net;
pub mod node;
pub mod op;
pub mod replica;
pub mod rpc;
pub mod store;
pub mod text;
pub mod wire;

pub use field::{Field, Invalid, NodeId};
pub use hlc::{Clock, ClockError, Hlc, HlcState, ManualClock, ReplicaId};
pub use node::{Kind, Link, Node, Priority, Query, Register, Status};
pub use op::{LoggedOp, Op, Outcome, Refusal};
pub use replica::{Edit, Replica, ReplicaError};
pub use store::{MemoryStore, Outgoing, Resolved, SqliteStore, Store, StoreError, Transaction};
