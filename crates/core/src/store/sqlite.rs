//! The SQLite store: the replica on disk.
//!
//! WAL journal, `synchronous=FULL` (a committed batch survives a crash or a
//! power cut), a busy timeout, ordered migrations from [`schema`](super::schema),
//! cached statements on the hot path. Every SQLite error is classified into a
//! [`StoreError`] that names the file and says what to do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params, params_from_iter};
use serde_json::Value;

use super::schema::{MIGRATIONS, supported_version};
use super::{AMBIGUOUS_LIST, Outgoing, Resolved, Store, StoreError, Transaction, plausible_prefix};
use crate::field::NodeId;
use crate::hlc::Hlc;
use crate::merge::{self, Logged};
use crate::node::{Node, Query, Register};
use crate::op::{LoggedOp, Op, Outcome};

/// How to open a database.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// How long to wait for another connection's lock before giving up.
    pub busy_timeout: Duration,
    /// Create the file when it does not exist.
    pub create: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            create: true,
        }
    }
}

/// A replica stored in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

/// Turns a rusqlite error into a [`StoreError`] about `path`.
fn classify(path: &Path, err: rusqlite::Error) -> StoreError {
    let path = path.to_path_buf();
    match err.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path,
            source: Some(err),
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Locked { path, source: err }
        }
        Some(ErrorCode::ReadOnly) => StoreError::ReadOnly {
            path,
            reason: "the file or its directory is read-only".into(),
            source: Some(err),
        },
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => StoreError::ReadOnly {
            path,
            reason: "the file cannot be opened; check that its directory exists and is writable"
                .into(),
            source: Some(err),
        },
        Some(ErrorCode::DiskFull) => StoreError::ReadOnly {
            path,
            reason: "the disk is full".into(),
            source: Some(err),
        },
        _ => StoreError::Sqlite { path, source: err },
    }
}

impl SqliteStore {
    /// Opens (creating if asked) the database at `path` and migrates it.
    pub fn open(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if options.create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(&path, flags).map_err(|e| classify(&path, e))?;
        Self::init(conn, path, options)
    }

    /// A private database that lives in memory (for tests and benchmarks).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(|e| classify(Path::new(":memory:"), e))?;
        Self::init(conn, PathBuf::from(":memory:"), &OpenOptions::default())
    }

    fn init(conn: Connection, path: PathBuf, options: &OpenOptions) -> Result<Self, StoreError> {
        let err = |e| classify(&path, e);
        conn.busy_timeout(options.busy_timeout).map_err(err)?;
        // Refuse a foreign or newer database before anything writes to it:
        // switching the journal to WAL rewrites the file header.
        refuse_foreign_or_newer(&conn, &path)?;
        // journal_mode answers with the mode now in effect; a read-only
        // location cannot switch to WAL and says so here.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(err)?;
        if path != Path::new(":memory:") && !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::ReadOnly {
                path: path.clone(),
                reason: format!("the journal cannot be switched to WAL (it stays {mode})"),
                source: None,
            });
        }
        // A 16 MiB page cache: big batches touch registers all over the
        // table (node ids are random), and the 2 MiB default thrashes.
        conn.execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF; PRAGMA cache_size = -16384;",
        )
        .map_err(err)?;
        conn.set_prepared_statement_cache_capacity(64);
        let mut store = Self { conn, path };
        store.migrate()?;
        Ok(store)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |e| classify(&self.path, e)
    }

    /// Applies missing migrations; refuses a newer database or a foreign one.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |e| classify(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let has_schema: bool = tx
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'heph_schema'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(err)?
            > 0;
        if !has_schema {
            // `refuse_foreign_or_newer` already turned a foreign database away.
            tx.execute_batch(
                "CREATE TABLE heph_schema (version INTEGER PRIMARY KEY, description TEXT NOT NULL)",
            )
            .map_err(err)?;
        }
        let found: i64 = tx
            .query_row(
                "SELECT coalesce(max(version), 0) FROM heph_schema",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        if found > supported_version() {
            return Err(StoreError::NewerSchema {
                path,
                found,
                supported: supported_version(),
            });
        }
        for (i, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(found).unwrap_or(0))
        {
            let version = i as i64 + 1;
            tx.execute_batch(sql).map_err(err)?;
            let description = sql
                .trim()
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("-- ");
            tx.execute(
                "INSERT INTO heph_schema (version, description) VALUES (?1, ?2)",
                params![version, description],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs SQLite's `quick_check`; a damaged file yields [`StoreError::Corrupt`].
    pub fn check_integrity(&self) -> Result<(), StoreError> {
        let result: String = self
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(self.err())?;
        if result == "ok" {
            Ok(())
        } else {
            Err(StoreError::Corrupt {
                path: self.path.clone(),
                source: None,
            })
        }
    }

    fn bad_row(&self, reason: impl std::fmt::Display) -> StoreError {
        StoreError::BadRow {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    fn load_node(&self, id: &NodeId) -> Result<Option<Node>, StoreError> {
        load_node(&self.conn, &self.path, id)
    }

    /// The row id of an origin name, or -1 (matching no op) when it was never recorded.
    fn origin_id(&self, name: &str) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT id FROM origins WHERE name = ?1")
            .and_then(|mut s| s.query_row([name], |r| r.get(0)).optional())
            .map_err(self.err())?
            .unwrap_or(-1))
    }

    /// Runs a `SELECT seq, hlc, node, field, value …` and decodes the rows.
    fn read_ops(
        &self,
        sql: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<LoggedOp>, StoreError> {
        let err = self.err();
        let mut stmt = self.conn.prepare_cached(sql).map_err(&err)?;
        let mut rows = stmt.query(args).map_err(&err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(&err)? {
            let text = |i| {
                row.get_ref(i)
                    .map(|v| v.as_str().unwrap_or_default().to_owned())
            };
            let seq: i64 = row.get(0).map_err(&err)?;
            let op = Op {
                hlc: decode_hlc(&self.path, &text(1).map_err(&err)?)?,
                node: decode_node_id(&self.path, &text(2).map_err(&err)?)?,
                field: text(3).map_err(&err)?,
                value: decode_value(&self.path, &text(4).map_err(&err)?)?,
            };
            out.push(LoggedOp {
                seq: u64::try_from(seq).map_err(|_| self.bad_row("a negative seq"))?,
                op,
            });
        }
        Ok(out)
    }
}

/// Refuses, without writing, a database that holds tables but no
/// `heph_schema`, or whose schema is newer than this build's.
fn refuse_foreign_or_newer(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let err = |e| classify(path, e);
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).map_err(err);
    if count("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'heph_schema'")?
        == 0
    {
        if count("SELECT count(*) FROM sqlite_master WHERE type = 'table'")? > 0 {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                source: None,
            });
        }
        return Ok(());
    }
    let found = count("SELECT coalesce(max(version), 0) FROM heph_schema")?;
    if found > supported_version() {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: supported_version(),
        });
    }
    Ok(())
}

fn decode_value(path: &Path, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::BadRow {
        path: path.to_path_buf(),
        reason: format!("a stored value is not JSON: {e}"),
    })
}

fn decode_hlc(path: &Path, text: &str) -> Result<Hlc, StoreError> {
    text.parse().map_err(|e| StoreError::BadRow {
        path: path.to_path_buf(),
        reason: format!("{e}"),
    })
}

fn decode_node_id(path: &Path, text: &str) -> Result<NodeId, StoreError> {
    NodeId::parse(text).map_err(|e| StoreError::BadRow {
        path: path.to_path_buf(),
        reason: format!("stored node id {text:?}: {e}"),
    })
}

/// Reads a node's registers and builds its view.
fn load_node(conn: &Connection, path: &Path, id: &NodeId) -> Result<Option<Node>, StoreError> {
    let err = |e| classify(path, e);
    let mut stmt = conn
        .prepare_cached("SELECT field, value, hlc FROM registers WHERE node = ?1")
        .map_err(err)?;
    let mut rows = stmt.query([id.as_str()]).map_err(err)?;
    let mut regs: Vec<(String, Value, Hlc)> = Vec::new();
    while let Some(row) = rows.next().map_err(err)? {
        let field: String = row.get(0).map_err(err)?;
        let value = decode_value(
            path,
            row.get_ref(1).map_err(err)?.as_str().unwrap_or_default(),
        )?;
        let hlc = decode_hlc(
            path,
            row.get_ref(2).map_err(err)?.as_str().unwrap_or_default(),
        )?;
        regs.push((field, value, hlc));
    }
    Ok(Node::from_registers(
        *id,
        regs.iter().map(|(f, v, h)| (f.as_str(), v, *h)),
    ))
}

/// A write transaction on a [`SqliteStore`].
#[derive(Debug)]
pub struct SqliteTx<'a> {
    tx: rusqlite::Transaction<'a>,
    path: &'a Path,
}

impl SqliteTx<'_> {
    /// Which of `ops` (whose HLC texts are `hlcs`) are already in the log,
    /// and whether the logged op has the same content.
    ///
    /// One ordered range scan merge-joined with the sorted batch answers a
    /// whole batch at once (a replay of 100,000 ops costs one index walk, not
    /// 100,000 probes), reading each logged op's content in the same step.
    /// The scan stops after a few rows per op, so a small batch spanning a
    /// long stretch of history falls back to probing.
    fn logged(&self, ops: &[Op], hlcs: &[String]) -> Result<Vec<Logged>, StoreError> {
        let err = |e| classify(self.path, e);
        let mut logged = vec![Logged::No; hlcs.len()];
        let mut order: Vec<usize> = (0..hlcs.len()).collect();
        order.sort_by(|&a, &b| hlcs[a].cmp(&hlcs[b]));
        let (Some(&first), Some(&last)) = (order.first(), order.last()) else {
            return Ok(logged);
        };
        let mut text = Vec::new();
        let budget = hlcs.len() * 4 + 64;
        let mut scan = self
            .tx
            .prepare_cached(
                "SELECT hlc, node, field, value FROM ops WHERE hlc >= ?1 AND hlc <= ?2 ORDER BY hlc LIMIT ?3",
            )
            .map_err(err)?;
        let mut rows = scan
            .query(params![hlcs[first], hlcs[last], budget as i64])
            .map_err(err)?;
        let mut next = 0; // index into `order` of the smallest batch HLC not yet passed
        let mut scanned = 0;
        let mut last_seen: Option<String> = None;
        while let Some(row) = rows.next().map_err(err)? {
            scanned += 1;
            let stored = row.get_ref(0).map_err(err)?.as_str().unwrap_or_default();
            while next < order.len() && hlcs[order[next]].as_str() < stored {
                next += 1;
            }
            let mut j = next;
            while j < order.len() && hlcs[order[j]] == stored {
                logged[order[j]] = self.compare(row, &ops[order[j]], &mut text)?;
                j += 1;
            }
            if scanned == budget {
                last_seen = Some(stored.to_owned());
            }
        }
        drop(rows);
        if let Some(last_seen) = last_seen {
            // The scan was cut short: probe what lies beyond it one by one.
            let mut probe = self
                .tx
                .prepare_cached("SELECT hlc, node, field, value FROM ops WHERE hlc = ?1")
                .map_err(err)?;
            for &i in order.iter().filter(|&&i| hlcs[i] > last_seen) {
                let mut rows = probe.query([&hlcs[i]]).map_err(err)?;
                if let Some(row) = rows.next().map_err(err)? {
                    logged[i] = self.compare(row, &ops[i], &mut text)?;
                }
            }
        }
        Ok(logged)
    }

    /// Whether the logged op in `row` (`hlc, node, field, value`) has the
    /// content of `op`. `text` is a reusable buffer.
    fn compare(
        &self,
        row: &rusqlite::Row<'_>,
        op: &Op,
        text: &mut Vec<u8>,
    ) -> Result<Logged, StoreError> {
        let err = |e| classify(self.path, e);
        let node = row.get_ref(1).map_err(err)?.as_str().unwrap_or_default();
        let field = row.get_ref(2).map_err(err)?.as_str().unwrap_or_default();
        let value = row.get_ref(3).map_err(err)?.as_str().unwrap_or_default();
        let same = node == op.node.as_str() && field == op.field && {
            // The log holds values as serde_json writes them, so equal values
            // are equal text; only a mismatch is parsed to be sure (-0.0 and
            // 0.0 are equal values with different text).
            text.clear();
            serde_json::to_writer(&mut *text, &op.value).map_err(|e| StoreError::BadRow {
                path: self.path.to_path_buf(),
                reason: format!("a value does not serialize: {e}"),
            })?;
            text.as_slice() == value.as_bytes()
                || serde_json::from_str::<Value>(value).is_ok_and(|v| v == op.value)
        };
        Ok(if same {
            Logged::Same
        } else {
            Logged::Different
        })
    }

    /// Rebuilds the node row of `id` (and its tag rows when a tag changed)
    /// from its registers.
    fn refresh_node(&self, id: &NodeId, tags_changed: bool) -> Result<(), StoreError> {
        let err = |e| classify(self.path, e);
        let Some(node) = load_node(&self.tx, self.path, id)? else {
            return Ok(());
        };
        self.tx
            .prepare_cached(
                "INSERT INTO nodes (id, kind, status, parent, deleted, due_key, title, body, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, status = excluded.status,
                   parent = excluded.parent, deleted = excluded.deleted, due_key = excluded.due_key,
                   title = excluded.title, body = excluded.body, created = excluded.created",
            )
            .map_err(err)?
            .execute(params![
                id.as_str(),
                node.kind.map(|k| k.as_str()),
                node.status.map(|s| s.as_str()),
                node.parent.as_ref().map(NodeId::as_str),
                node.deleted,
                node.due_key(),
                node.title,
                node.body,
                node.created.to_string(),
            ])
            .map_err(err)?;
        if !tags_changed {
            return Ok(());
        }
        self.tx
            .prepare_cached("DELETE FROM node_tags WHERE node = ?1")
            .map_err(err)?
            .execute([id.as_str()])
            .map_err(err)?;
        let mut insert = self
            .tx
            .prepare_cached("INSERT INTO node_tags (tag, node) VALUES (?1, ?2)")
            .map_err(err)?;
        for tag in &node.tags {
            insert.execute([tag.as_str(), id.as_str()]).map_err(err)?;
        }
        Ok(())
    }
}

impl Transaction for SqliteTx<'_> {
    fn apply_from(&mut self, ops: &[Op], origin: Option<&str>) -> Result<Vec<Outcome>, StoreError> {
        let path = self.path;
        let err = |e| classify(path, e);
        let hlcs: Vec<String> = ops.iter().map(|op| op.hlc.to_string()).collect();
        let logged = self.logged(ops, &hlcs)?;
        let mut plan = merge::plan(ops, |i| Ok::<_, StoreError>(logged[i]))?;
        let origin_id: Option<i64> = match origin {
            Some(name) if !plan.fresh.is_empty() => {
                self.tx
                    .prepare_cached(
                        "INSERT INTO origins (name) VALUES (?1) ON CONFLICT (name) DO NOTHING",
                    )
                    .and_then(|mut s| s.execute([name]))
                    .map_err(err)?;
                Some(
                    self.tx
                        .prepare_cached("SELECT id FROM origins WHERE name = ?1")
                        .and_then(|mut s| s.query_row([name], |r| r.get(0)))
                        .map_err(err)?,
                )
            }
            _ => None,
        };
        // Each fresh op's value as JSON text, written to the log and reused
        // for its register.
        let mut values: Vec<Option<String>> = vec![None; ops.len()];
        {
            let mut insert = self
                .tx
                .prepare_cached(
                    "INSERT INTO ops (hlc, node, field, value, origin) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(err)?;
            for &i in &plan.fresh {
                let op = &ops[i];
                let value = op.value.to_string();
                insert
                    .execute(params![
                        op.hlc.to_string(),
                        op.node.as_str(),
                        op.field,
                        value,
                        origin_id
                    ])
                    .map_err(err)?;
                values[i] = Some(value);
            }
        }
        // Touched nodes, and whether one of their tags changed.
        let mut touched: BTreeMap<NodeId, bool> = BTreeMap::new();
        {
            let mut upsert = self
                .tx
                .prepare_cached(
                    "INSERT INTO registers (node, field, value, hlc) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (node, field) DO UPDATE SET value = excluded.value, hlc = excluded.hlc
                     WHERE excluded.hlc > registers.hlc",
                )
                .map_err(err)?;
            // In key order, so the B-tree is walked once instead of hit at
            // random (node ids are random): far fewer page misses on large batches.
            let mut by_key = plan.candidates.clone();
            by_key.sort_unstable_by(|&a, &b| {
                (&ops[a].node, &ops[a].field).cmp(&(&ops[b].node, &ops[b].field))
            });
            for &i in &by_key {
                let op = &ops[i];
                let changed = upsert
                    .execute(params![
                        op.node.as_str(),
                        op.field,
                        values[i],
                        op.hlc.to_string()
                    ])
                    .map_err(err)?;
                if changed == 0 {
                    plan.outcomes[i] = Outcome::Superseded;
                } else {
                    *touched.entry(op.node).or_default() |= op.field.starts_with("tag:");
                }
            }
        }
        for (id, tags_changed) in &touched {
            self.refresh_node(id, *tags_changed)?;
        }
        Ok(plan.outcomes)
    }

    fn restamp(&mut self, moves: &[(Hlc, Hlc)]) -> Result<Vec<NodeId>, StoreError> {
        let path = self.path;
        let err = |e| classify(path, e);
        let mut touched: BTreeMap<NodeId, bool> = BTreeMap::new();
        for (old, new) in moves {
            let (old_text, new_text) = (old.to_string(), new.to_string());
            let row: Option<(i64, String, String, String)> = self
                .tx
                .prepare_cached("SELECT seq, node, field, value FROM ops WHERE hlc = ?1")
                .and_then(|mut s| {
                    s.query_row([&old_text], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .optional()
                })
                .map_err(err)?;
            let Some((seq, node, field, value)) = row else {
                continue;
            };
            // Appended before the old row goes, so the new seq is greater
            // than every seq ever handed out (the rowid is max + 1).
            self.tx
                .prepare_cached(
                    "INSERT INTO ops (hlc, node, field, value, origin) VALUES (?1, ?2, ?3, ?4, NULL)",
                )
                .and_then(|mut s| s.execute(params![new_text, node, field, value]))
                .map_err(err)?;
            self.tx
                .prepare_cached("DELETE FROM ops WHERE seq = ?1")
                .and_then(|mut s| s.execute([seq]))
                .map_err(err)?;
            let held: Option<String> = self
                .tx
                .prepare_cached("SELECT hlc FROM registers WHERE node = ?1 AND field = ?2")
                .and_then(|mut s| s.query_row([&node, &field], |r| r.get(0)).optional())
                .map_err(err)?;
            // The register is the greatest HLC of its ops; only the moved op changed.
            let winner = match held {
                Some(h) if h == old_text && new < old => {
                    // Another op of this register between `new` and `old`
                    // (the same wall time and counter) may now be the greatest.
                    self.tx
                        .prepare_cached(
                            "SELECT value, hlc FROM ops WHERE hlc > ?1 AND hlc < ?2
                             AND node = ?3 AND field = ?4 ORDER BY hlc DESC LIMIT 1",
                        )
                        .and_then(|mut s| {
                            s.query_row(params![new_text, old_text, node, field], |r| {
                                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                            })
                            .optional()
                        })
                        .map_err(err)?
                        .or(Some((value, new_text)))
                }
                Some(h) if h == old_text || new_text > h => Some((value, new_text)),
                Some(_) => None,
                None => Some((value, new_text)),
            };
            if let Some((value, hlc)) = winner {
                self.tx
                    .prepare_cached(
                        "INSERT INTO registers (node, field, value, hlc) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (node, field) DO UPDATE SET value = excluded.value, hlc = excluded.hlc",
                    )
                    .and_then(|mut s| s.execute(params![node, field, value, hlc]))
                    .map_err(err)?;
            }
            let id = decode_node_id(path, &node)?;
            *touched.entry(id).or_default() |= field.starts_with("tag:");
        }
        for (id, tags_changed) in &touched {
            self.refresh_node(id, *tags_changed)?;
        }
        Ok(touched.into_keys().collect())
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .and_then(|mut s| s.execute([key, value]))
            .map(|_| ())
            .map_err(|e| classify(self.path, e))
    }

    fn commit(self) -> Result<(), StoreError> {
        let path = self.path;
        self.tx.commit().map_err(|e| classify(path, e))
    }
}

impl Store for SqliteStore {
    type Tx<'a> = SqliteTx<'a>;

    fn begin(&mut self) -> Result<SqliteTx<'_>, StoreError> {
        let path = self.path.as_path();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| classify(path, e))?;
        Ok(SqliteTx { tx, path })
    }

    fn ops_after(&self, after: u64, limit: usize) -> Result<Vec<LoggedOp>, StoreError> {
        self.read_ops(
            "SELECT seq, hlc, node, field, value FROM ops WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            params![
                i64::try_from(after).unwrap_or(i64::MAX),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
        )
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        let seq: i64 = self
            .conn
            .query_row("SELECT coalesce(max(seq), 0) FROM ops", [], |r| r.get(0))
            .map_err(self.err())?;
        u64::try_from(seq).map_err(|_| self.bad_row("a negative seq"))
    }

    fn max_hlc(&self) -> Result<Option<Hlc>, StoreError> {
        let text: Option<String> = self
            .conn
            .query_row("SELECT max(hlc) FROM ops", [], |r| r.get(0))
            .map_err(self.err())?;
        text.map(|t| decode_hlc(&self.path, &t)).transpose()
    }

    fn op_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM ops", [], |r| r.get(0))
            .map_err(self.err())?;
        Ok(n.max(0) as u64)
    }

    fn registers(&self) -> Result<Vec<Register>, StoreError> {
        let err = self.err();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT node, field, value, hlc FROM registers ORDER BY node, field")
            .map_err(&err)?;
        let mut rows = stmt.query([]).map_err(&err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(&err)? {
            let text = |i| {
                row.get_ref(i)
                    .map(|v| v.as_str().unwrap_or_default().to_owned())
            };
            out.push(Register {
                node: decode_node_id(&self.path, &text(0).map_err(&err)?)?,
                field: text(1).map_err(&err)?,
                value: decode_value(&self.path, &text(2).map_err(&err)?)?,
                hlc: decode_hlc(&self.path, &text(3).map_err(&err)?)?,
            });
        }
        Ok(out)
    }

    fn node(&self, id: &NodeId) -> Result<Option<Node>, StoreError> {
        self.load_node(id)
    }

    fn resolve_prefix(&self, prefix: &str, include_deleted: bool) -> Result<Resolved, StoreError> {
        if !plausible_prefix(prefix) {
            return Ok(Resolved::NotFound);
        }
        let err = self.err();
        let upper = format!("{prefix}\u{7f}");
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id FROM nodes WHERE id >= ?1 AND id < ?2 AND (?3 OR deleted = 0) ORDER BY id LIMIT ?4",
            )
            .map_err(&err)?;
        let ids: Vec<String> = stmt
            .query_map(
                params![prefix, upper, include_deleted, AMBIGUOUS_LIST as i64],
                |r| r.get(0),
            )
            .map_err(&err)?
            .collect::<Result<_, _>>()
            .map_err(&err)?;
        let mut ids: Vec<NodeId> = ids
            .iter()
            .map(|s| decode_node_id(&self.path, s))
            .collect::<Result<_, _>>()?;
        Ok(match ids.len() {
            0 => Resolved::NotFound,
            1 => Resolved::One(ids.remove(0)),
            _ => Resolved::Ambiguous(ids),
        })
    }

    fn query(&self, query: &Query) -> Result<Vec<Node>, StoreError> {
        let prepared = query.prepare()?;
        let mut sql = String::from("SELECT id FROM nodes WHERE 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut arg = |sql: &mut String, clause: &str, v: rusqlite::types::Value| {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
        };
        use rusqlite::types::Value as V;
        if !query.include_deleted {
            sql.push_str(" AND deleted = 0");
        }
        if let Some(kind) = query.kind {
            arg(&mut sql, " AND kind = ?", V::Text(kind.as_str().into()));
        }
        if !query.status.is_empty() {
            sql.push_str(" AND status IN (NULL");
            for s in &query.status {
                arg(&mut sql, ", ?", V::Text(s.as_str().into()));
            }
            sql.push(')');
        }
        if let Some(tag) = &query.tag {
            arg(
                &mut sql,
                " AND EXISTS (SELECT 1 FROM node_tags t WHERE t.tag = ? AND t.node = nodes.id)",
                V::Text(tag.clone()),
            );
        }
        if let Some(parent) = &query.parent {
            arg(&mut sql, " AND parent = ?", V::Text(parent.as_str().into()));
        }
        if let Some(from) = &prepared.due_from {
            arg(&mut sql, " AND due_key >= ?", V::Text(from.clone()));
        }
        if let Some(to) = &prepared.due_to_exclusive {
            arg(&mut sql, " AND due_key < ?", V::Text(to.clone()));
        }
        if let Some(text) = &prepared.text_lower {
            arg(
                &mut sql,
                " AND (instr(lower(coalesce(title, '')), ?) > 0",
                V::Text(text.clone()),
            );
            arg(
                &mut sql,
                " OR instr(lower(body), ?) > 0)",
                V::Text(text.clone()),
            );
        }
        sql.push_str(" ORDER BY created, id");
        if let Some(limit) = query.limit {
            arg(
                &mut sql,
                " LIMIT ?",
                V::Integer(i64::try_from(limit).unwrap_or(i64::MAX)),
            );
        }
        let err = self.err();
        let mut stmt = self.conn.prepare_cached(&sql).map_err(&err)?;
        let ids: Vec<String> = stmt
            .query_map(params_from_iter(args.iter()), |r| r.get(0))
            .map_err(&err)?
            .collect::<Result<_, _>>()
            .map_err(&err)?;
        let mut nodes = Vec::with_capacity(ids.len());
        for id in ids {
            let id = decode_node_id(&self.path, &id)?;
            if let Some(node) = self.load_node(&id)? {
                nodes.push(node);
            }
        }
        Ok(nodes)
    }

    fn tag_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let err = self.err();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT t.tag, count(*) FROM node_tags t JOIN nodes n ON n.id = t.node
                 WHERE n.deleted = 0 GROUP BY t.tag ORDER BY t.tag",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })
            .map_err(&err)?;
        rows.collect::<Result<_, _>>().map_err(&err)
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(self.err())
    }

    fn origin(&self, hlc: &Hlc) -> Result<Option<Option<String>>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT g.name FROM ops o LEFT JOIN origins g ON g.id = o.origin WHERE o.hlc = ?1",
            )
            .and_then(|mut s| s.query_row([hlc.to_string()], |r| r.get(0)).optional())
            .map_err(self.err())
    }

    fn outgoing(
        &self,
        after: u64,
        limit: usize,
        skip_origin: &str,
    ) -> Result<Outgoing, StoreError> {
        let skip = self.origin_id(skip_origin)?;
        let ops = self.read_ops(
            "SELECT seq, hlc, node, field, value FROM ops
             WHERE seq > ?1 AND (origin IS NULL OR origin != ?2) ORDER BY seq LIMIT ?3",
            params![
                i64::try_from(after).unwrap_or(i64::MAX),
                skip,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
        )?;
        let scanned_to = if ops.len() < limit {
            after.max(self.last_seq()?)
        } else {
            ops.last().map_or(after, |l| l.seq)
        };
        Ok(Outgoing { ops, scanned_to })
    }

    fn count_outgoing(&self, after: u64, skip_origin: &str) -> Result<u64, StoreError> {
        let skip = self.origin_id(skip_origin)?;
        let n: i64 = self
            .conn
            .prepare_cached(
                "SELECT count(*) FROM ops WHERE seq > ?1 AND (origin IS NULL OR origin != ?2)",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![i64::try_from(after).unwrap_or(i64::MAX), skip],
                    |r| r.get(0),
                )
            })
            .map_err(self.err())?;
        Ok(n.max(0) as u64)
    }
}

#[cfg(test)]
mod conformance_in_memory {
    crate::store_conformance!(super::SqliteStore::open_in_memory().unwrap());
}

#[cfg(test)]
mod conformance_on_disk {
    fn make() -> super::SqliteStore {
        // Leaked on purpose: the directory must outlive the store the test uses.
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        super::SqliteStore::open(dir.path().join("heph.db"), &super::OpenOptions::default())
            .unwrap()
    }
    crate::store_conformance!(make());
}

#[cfg(test)]
mod migration_2 {
    use super::*;
    use crate::store::conformance::op;

    /// A database written before origins existed opens, keeps its ops, and
    /// reads them back as local.
    #[test]
    fn a_version_1_database_gains_origins_without_losing_ops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heph.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE heph_schema (version INTEGER PRIMARY KEY, description TEXT NOT NULL)",
            )
            .unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute("INSERT INTO heph_schema VALUES (1, 'v1')", [])
                .unwrap();
            let o = op(1000, 0, 1, 1, "title", serde_json::json!("old"));
            conn.execute(
                "INSERT INTO ops (hlc, node, field, value) VALUES (?1, ?2, 'title', '\"old\"')",
                params![o.hlc.to_string(), o.node.as_str()],
            )
            .unwrap();
        }
        let mut s = SqliteStore::open(&path, &OpenOptions::default()).unwrap();
        let old = op(1000, 0, 1, 1, "title", serde_json::json!("old"));
        assert_eq!(s.origin(&old.hlc).unwrap(), Some(None));
        let pulled = op(2000, 0, 2, 1, "title", serde_json::json!("new"));
        s.apply_batch_from(std::slice::from_ref(&pulled), Some("https://hub.example"))
            .unwrap();
        assert_eq!(
            s.outgoing(0, 10, "https://hub.example").unwrap().ops.len(),
            1
        );
        let version: i64 = s
            .conn
            .query_row("SELECT max(version) FROM heph_schema", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 2);
    }
}
