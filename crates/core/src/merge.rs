//! The merge rule: per register, the op with the greatest HLC wins.
//!
//! [`plan`] decides, for one batch, which ops are refused, which are
//! duplicates (the same HLC with the same content), which collide (the same
//! HLC with different content: refused, never taken for a duplicate), which
//! are logged, and which one op per register is the
//! batch's candidate for the register. A store then logs the fresh ops and
//! writes each candidate only if its HLC beats the stored one. Pre-merging per
//! register keeps a batch to one register write per `(node, field)`, however
//! many ops it holds for it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::field::NodeId;
use crate::hlc::Hlc;
use crate::op::{Op, Outcome, Refusal};

/// What a store must do to apply one batch.
#[derive(Debug)]
pub(crate) struct Plan {
    /// One outcome per op; `Applied` is provisional for candidates until the
    /// store compares them with the stored register.
    pub outcomes: Vec<Outcome>,
    /// Indexes of ops to append to the log, in batch order.
    pub fresh: Vec<usize>,
    /// Index of the greatest fresh op per register.
    pub candidates: Vec<usize>,
}

/// Whether an op's HLC is already in a store's log, and with what content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Logged {
    /// The HLC is not logged.
    No,
    /// Logged with the same node, field and value: a duplicate.
    Same,
    /// Logged with different content: a collision.
    Different,
}

/// Plans a batch. `logged(i)` answers whether `ops[i]`'s HLC is already in
/// the store's log, and whether the logged op has the same content.
pub(crate) fn plan<E>(
    ops: &[Op],
    mut logged: impl FnMut(usize) -> Result<Logged, E>,
) -> Result<Plan, E> {
    let mut outcomes = Vec::with_capacity(ops.len());
    let mut fresh = Vec::with_capacity(ops.len());
    let mut seen: HashMap<Hlc, usize> = HashMap::with_capacity(ops.len());
    let mut best: HashMap<(&NodeId, &str), usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        let collision = || Outcome::Refused(Refusal::Collision { hlc: op.hlc });
        // A logged HLC was checked when it was logged: answer before
        // validating, which keeps replays cheap.
        match seen.entry(op.hlc) {
            Entry::Occupied(e) => {
                outcomes.push(if ops[*e.get()].same_content(op) {
                    Outcome::Duplicate
                } else {
                    collision()
                });
                continue;
            }
            Entry::Vacant(e) => {
                e.insert(i);
            }
        }
        match logged(i)? {
            Logged::No => {}
            Logged::Same => {
                outcomes.push(Outcome::Duplicate);
                continue;
            }
            Logged::Different => {
                outcomes.push(collision());
                continue;
            }
        }
        if let Err(invalid) = op.check() {
            outcomes.push(Outcome::Refused(Refusal::Invalid(invalid)));
            continue;
        }
        fresh.push(i);
        match best.entry((&op.node, op.field.as_str())) {
            Entry::Vacant(e) => {
                e.insert(i);
                outcomes.push(Outcome::Applied);
            }
            Entry::Occupied(mut e) => {
                let prev = *e.get();
                if op.hlc > ops[prev].hlc {
                    outcomes[prev] = Outcome::Superseded;
                    e.insert(i);
                    outcomes.push(Outcome::Applied);
                } else {
                    outcomes.push(Outcome::Superseded);
                }
            }
        }
    }
    let mut candidates: Vec<usize> = best.into_values().collect();
    candidates.sort_unstable();
    Ok(Plan {
        outcomes,
        fresh,
        candidates,
    })
}
