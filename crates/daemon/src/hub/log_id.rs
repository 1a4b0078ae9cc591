//! The hub log's id (DESIGN §4, `docs/protocol.md` "The hub's log"): made
//! with the hub's database, sent in every push and pull answer, and replaced
//! when a spoke shows that the log is not the one it synced with (the
//! database was restored from a copy, which carries the old id).
//!
//! The rule itself is [`heph_core::hub_log`]; this module only keeps the id
//! in the replica's metadata and makes fresh ones. It runs on the replica
//! thread (through [`crate::db::Db`]) and knows nothing about HTTP.

use heph_core::hub_log::{self, LOG_ID_KEY, Seen, Verdict};
use heph_core::{Store, StoreError};

use crate::db::{LocalReplica, random_bytes};

/// A fresh random log id: 32 lowercase hex digits.
pub fn fresh() -> String {
    random_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// The log's id, made (with `fresh`) when the database has none yet.
/// Returns it and whether it was made now.
pub fn ensure(r: &mut LocalReplica, fresh: String) -> Result<(String, bool), StoreError> {
    if let Some(id) = current(r)? {
        return Ok((id, false));
    }
    r.set_meta(&[(LOG_ID_KEY, &fresh)])?;
    Ok((fresh, true))
}

/// The log's id, if it has one.
pub fn current(r: &LocalReplica) -> Result<Option<String>, StoreError> {
    Ok(r.store().meta(LOG_ID_KEY)?.filter(|id| !id.is_empty()))
}

/// Checks a spoke's claim (see [`hub_log::check`]); when it shows the log
/// changed under an id the spoke still holds, the log takes the id `fresh`,
/// so every other spoke holding the old id starts over too. Returns the
/// verdict and the log's id after the check.
pub fn check_claim(
    r: &mut LocalReplica,
    claimed: &str,
    after: u64,
    seen: Option<Seen>,
    fresh: String,
) -> Result<(Verdict, String), StoreError> {
    let (id, _) = ensure(r, fresh.clone())?;
    let verdict = hub_log::check(r.store(), &id, claimed, after, seen)?;
    if let Verdict::Changed { reason } = &verdict {
        r.set_meta(&[(LOG_ID_KEY, &fresh)])?;
        tracing::warn!(
            old = %id,
            new = %fresh,
            %reason,
            "a spoke shows this hub's log is not the one it synced with (was the database restored from a backup?); the log takes a new id, so every spoke pulls everything again and re-sends all it holds"
        );
        return Ok((verdict, fresh));
    }
    Ok((verdict, id))
}
