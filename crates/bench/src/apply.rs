//! DESIGN §9 rows 1–2: applying a large batch to a replica.
//!
//! * `apply_fresh`: 100,000 new ops in one `apply_batch` call (log, registers
//!   and node view) against inserting the same ops into one bare table
//!   `(hlc TEXT PRIMARY KEY, node, field, value)` in one transaction, with the
//!   same journal settings. Budget: ≥ 0.3× the baseline's rate.
//! * `apply_duplicate`: re-applying the same ops (all duplicates) against the
//!   fresh apply. Budget: ≥ 5× faster.

use std::path::Path;

use heph_core::store::OpenOptions;
use heph_core::{Op, SqliteStore, Store};
use rusqlite::{Connection, params};
use tempfile::TempDir;

use crate::Options;
use crate::report::{Budget, Line, median, rate};
use crate::workload;

type Error = Box<dyn std::error::Error>;

fn baseline_insert(path: &Path, ops: &[Op]) -> Result<(), Error> {
    let mut conn = Connection::open(path)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         CREATE TABLE ops (hlc TEXT PRIMARY KEY, node TEXT, field TEXT, value TEXT);",
    )?;
    let tx = conn.transaction()?;
    {
        let mut stmt =
            tx.prepare("INSERT INTO ops (hlc, node, field, value) VALUES (?1, ?2, ?3, ?4)")?;
        for op in ops {
            stmt.execute(params![
                op.hlc.to_string(),
                op.node.as_str(),
                op.field,
                op.value.to_string()
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn fresh_db() -> Result<(TempDir, SqliteStore), Error> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(dir.path().join("heph.db"), &OpenOptions::default())?;
    Ok((dir, store))
}

pub fn run(opts: &Options) -> Result<Vec<Line>, Error> {
    let ops = workload::ops(opts.ops, 0x5eed);
    eprintln!("apply: {} ops, median of {} runs", ops.len(), opts.runs);

    let baseline = median(
        opts.runs,
        || -> Result<_, Error> { Ok(tempfile::tempdir()?) },
        |dir| baseline_insert(&dir.path().join("bare.db"), &ops),
    )?;
    let fresh = median(opts.runs, fresh_db, |(_dir, mut store)| {
        let outcomes = store.apply_batch(&ops)?;
        if outcomes.iter().any(|o| {
            matches!(
                o,
                heph_core::Outcome::Duplicate | heph_core::Outcome::Refused(_)
            )
        }) {
            return Err("a fresh op was reported as a duplicate or refused".into());
        }
        Ok(())
    })?;
    let duplicate = median(
        opts.runs,
        || -> Result<_, Error> {
            let (dir, mut store) = fresh_db()?;
            store.apply_batch(&ops)?;
            Ok((dir, store))
        },
        |(_dir, mut store)| {
            let outcomes = store.apply_batch(&ops)?;
            if outcomes.iter().any(|o| *o != heph_core::Outcome::Duplicate) {
                return Err("a re-applied op was not reported as a duplicate".into());
            }
            Ok(())
        },
    )?;

    let baseline_rate = rate(ops.len(), baseline);
    let fresh_rate = rate(ops.len(), fresh);
    let duplicate_rate = rate(ops.len(), duplicate);
    eprintln!(
        "apply: baseline {:?}, fresh {:?}, duplicate {:?}",
        baseline, fresh, duplicate
    );
    Ok(vec![
        Line {
            name: "apply_fresh",
            value: fresh_rate,
            baseline: baseline_rate,
            budget: Budget::AtLeast(0.3),
            extra: vec![],
        },
        Line {
            name: "apply_duplicate",
            value: duplicate_rate,
            baseline: fresh_rate,
            budget: Budget::AtLeast(5.0),
            extra: vec![],
        },
    ])
}
