//! The identity of a hub's log and the check of a spoke's claim about it
//! (DESIGN §4; the rule is in `docs/protocol.md`, "The hub's log").
//!
//! A hub's log has an id, made with its database and kept in its metadata
//! ([`LOG_ID_KEY`]). A copy of the database (a `.backup`) carries the same
//! id, so an id alone cannot tell a restored log from the original: a
//! spoke also says where it has *seen* the log — a hub seq and the HLC of
//! the op at that seq — and [`check`] compares that with the log as it is.
//! A log that ends before that seq, or holds another op there, is not the
//! log the spoke synced with. Pure: the caller brings the store, and a
//! fresh id when one is needed; this module makes no ids and does no I/O.

use crate::hlc::Hlc;
use crate::store::{Store, StoreError};

/// The metadata key holding a hub's log id.
pub const LOG_ID_KEY: &str = "hub.log_id";

/// A position a spoke has seen in a hub's log: the op with this HLC had
/// this hub seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The hub seq.
    pub seq: u64,
    /// The HLC of the op the hub logged at `seq`.
    pub hlc: Hlc,
}

impl Seen {
    /// Parses the stored form `"SEQ HLC"` (the form [`Display`](std::fmt::Display) writes).
    pub fn parse(text: &str) -> Option<Self> {
        let (seq, hlc) = text.split_once(' ')?;
        Some(Self {
            seq: seq.parse().ok()?,
            hlc: hlc.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.seq, self.hlc)
    }
}

/// What a spoke's claim about the log says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The spoke names this log, and what it saw is still there: its
    /// cursors hold.
    Same,
    /// The spoke names another log (an older id, or none of this hub's):
    /// its cursors are void; it must pull from 0 and re-send what it holds.
    Other,
    /// The spoke names this log's id, but the log does not hold what the
    /// spoke saw: the database was restored from a copy. The log must get
    /// a new id (so every spoke starts over), and this spoke too.
    Changed {
        /// Why, as a phrase for the log.
        reason: String,
    },
}

/// The HLC of the op at hub seq `seq`, if the log holds one there.
pub fn hlc_at<S: Store>(store: &S, seq: u64) -> Result<Option<Hlc>, StoreError> {
    if seq == 0 {
        return Ok(None);
    }
    Ok(store
        .ops_after(seq - 1, 1)?
        .into_iter()
        .find(|l| l.seq == seq)
        .map(|l| l.op.hlc))
}

/// The log's end: its last seq and the HLC of the op there (`None` while
/// the log is empty).
pub fn end<S: Store>(store: &S) -> Result<Option<Seen>, StoreError> {
    let seq = store.last_seq()?;
    Ok(hlc_at(store, seq)?.map(|hlc| Seen { seq, hlc }))
}

/// Checks a spoke's claim: it synced with the log `claimed`, pulled up to
/// `after`, and saw `seen`. `current` is this log's id.
pub fn check<S: Store>(
    store: &S,
    current: &str,
    claimed: &str,
    after: u64,
    seen: Option<Seen>,
) -> Result<Verdict, StoreError> {
    if claimed != current {
        return Ok(Verdict::Other);
    }
    let last = store.last_seq()?;
    if after > last {
        return Ok(Verdict::Changed {
            reason: format!("the spoke's cursor {after} is beyond the log's end {last}"),
        });
    }
    let Some(seen) = seen else {
        return Ok(Verdict::Same);
    };
    if seen.seq > last {
        return Ok(Verdict::Changed {
            reason: format!("the spoke saw seq {} but the log ends at {last}", seen.seq),
        });
    }
    match hlc_at(store, seen.seq)? {
        Some(hlc) if hlc == seen.hlc => Ok(Verdict::Same),
        Some(hlc) => Ok(Verdict::Changed {
            reason: format!(
                "the spoke saw op {} at seq {}, the log holds {hlc} there",
                seen.hlc, seen.seq
            ),
        }),
        None => Ok(Verdict::Changed {
            reason: format!("the log holds no op at seq {}", seen.seq),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use crate::store::conformance::op;
    use serde_json::json;

    fn log(n: u64) -> MemoryStore {
        let mut s = MemoryStore::new();
        let ops: Vec<_> = (1..=n)
            .map(|i| op(1000 + i, 0, 1, i as u8, "title", json!(format!("t{i}"))))
            .collect();
        s.apply_batch(&ops).unwrap();
        s
    }

    fn seen(store: &MemoryStore, seq: u64) -> Seen {
        Seen {
            seq,
            hlc: hlc_at(store, seq).unwrap().unwrap(),
        }
    }

    #[test]
    fn a_claim_holds_only_for_this_log_as_the_spoke_saw_it() {
        let s = log(5);
        let at3 = seen(&s, 3);
        let check = |claimed: &str, after, seen| check(&s, "aa", claimed, after, seen).unwrap();
        assert_eq!(check("aa", 3, Some(at3)), Verdict::Same);
        assert_eq!(check("aa", 5, None), Verdict::Same);
        assert_eq!(check("aa", 0, None), Verdict::Same);
        assert_eq!(check("bb", 3, Some(at3)), Verdict::Other);
        assert!(matches!(check("aa", 6, None), Verdict::Changed { .. }));
        let beyond = Seen { seq: 9, ..at3 };
        assert!(matches!(
            check("aa", 3, Some(beyond)),
            Verdict::Changed { .. }
        ));
        // Another op at the seen seq: a log that grew past the cursor
        // after a restore is not the log the spoke saw.
        let moved = Seen { seq: 4, ..at3 };
        let Verdict::Changed { reason } = check("aa", 3, Some(moved)) else {
            panic!("a different op at seq 4 must be a change");
        };
        assert!(reason.contains("seq 4"), "{reason}");
    }

    #[test]
    fn positions_round_trip_and_the_end_is_the_last_op() {
        let s = log(4);
        let e = end(&s).unwrap().unwrap();
        assert_eq!(e, seen(&s, 4));
        assert_eq!(Seen::parse(&e.to_string()), Some(e));
        assert_eq!(Seen::parse("x"), None);
        assert_eq!(end(&MemoryStore::new()).unwrap(), None);
        assert_eq!(hlc_at(&s, 0).unwrap(), None);
        assert_eq!(hlc_at(&s, 5).unwrap(), None);
    }
}
