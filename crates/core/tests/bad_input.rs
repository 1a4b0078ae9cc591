//! The stores facing bad files and bad batches.
//!
//! Garbage, truncated, foreign, newer, locked and unwritable database files,
//! batches with a refused op, and ops with adversarial values. Nothing may
//! panic, nothing refused may be written (or, for a refused file, altered),
//! and every error reads as one lowercase sentence without a trailing period
//! that names the file it is about.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use heph_core::field::{MAX_BODY_BYTES, MAX_FIELD_BYTES, MAX_NAME_CHARS, MAX_TITLE_CHARS};
use heph_core::replica::Edit;
use heph_core::store::OpenOptions;
use heph_core::store::schema::supported_version;
use heph_core::{
    Hlc, ManualClock, MemoryStore, NodeId, Op, Outcome, Query, Refusal, Replica, ReplicaError,
    ReplicaId, SqliteStore, Store, StoreError,
};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Helpers

fn node(n: u8) -> NodeId {
    NodeId::from_random_bytes([n; 16])
}

fn op(wall: u64, counter: u16, node_n: u8, field: &str, value: Value) -> Op {
    Op {
        hlc: Hlc {
            wall_ms: wall,
            counter,
            replica: ReplicaId([1; 16]),
        },
        node: node(node_n),
        field: field.to_owned(),
        value,
    }
}

/// `n` valid ops over 50 nodes, with bodies long enough to fill many pages.
fn valid_ops(n: usize, first_wall: u64) -> Vec<Op> {
    (0..n)
        .map(|i| {
            let (field, value) = match i % 3 {
                0 => ("title", json!(format!("task number {i}"))),
                1 => ("body", json!(format!("{i}: {}", "lorem ipsum ".repeat(12)))),
                _ => ("tag:t", json!(i % 2 == 0)),
            };
            op(first_wall + i as u64, 0, (i % 50) as u8, field, value)
        })
        .collect()
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

fn open(path: &Path) -> Result<SqliteStore, StoreError> {
    SqliteStore::open(path, &OpenOptions::default())
}

fn quick_lock_options() -> OpenOptions {
    OpenOptions {
        busy_timeout: Duration::from_millis(200),
        ..OpenOptions::default()
    }
}

/// Asserts that `message` reads as one lowercase sentence without a trailing
/// period, of a reasonable length, naming `path` when given.
#[track_caller]
fn assert_sentence(message: &str, path: Option<&Path>) {
    let head: String = message.chars().take(200).collect();
    assert!(
        message.chars().next().is_some_and(char::is_lowercase),
        "not a lowercase sentence: {head}"
    );
    assert!(!message.ends_with('.'), "ends with a period: {head}");
    assert!(!message.contains('\n'), "more than one line: {head}");
    assert!(
        message.len() <= 600,
        "{} bytes long: {head}…",
        message.len()
    );
    if let Some(path) = path {
        assert!(
            message.contains(&path.display().to_string()),
            "does not name {}: {message}",
            path.display()
        );
    }
}

/// Creates a heph database at `path` holding `ops` and closes it, leaving no
/// `-wal` or `-shm` file behind.
fn make_db(path: &Path, ops: &[Op]) {
    let mut store = open(path).unwrap();
    for chunk in ops.chunks(1000) {
        store.apply_batch(chunk).unwrap();
    }
    drop(store);
    for suffix in ["-wal", "-shm"] {
        let side = sidecar(path, suffix);
        if side.exists() {
            std::fs::remove_file(side).unwrap();
        }
    }
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------
// Bad files

#[test]
fn garbage_at_the_db_path_is_refused_as_corrupt_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut with_magic = b"SQLite format 3\0".to_vec();
    with_magic.extend(garbage(8192, 7));
    let cases = [
        ("two bytes", garbage(2, 1)),
        ("short", garbage(100, 2)),
        ("page", garbage(4096, 3)),
        ("big", garbage(65_536, 4)),
        ("magic", with_magic),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(format!("{name}.db"));
        std::fs::write(&path, &bytes).unwrap();
        match open(&path) {
            Err(err @ StoreError::Corrupt { .. }) => {
                let message = err.to_string();
                assert_sentence(&message, Some(&path));
                assert!(message.contains("is damaged or is not a heph database"));
            }
            other => panic!("{name}: expected Corrupt, got {other:?}"),
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{name}: the file changed"
        );
    }
}

/// Whatever a store opened on a damaged file answers: every full read either
/// reports `Corrupt` or returns exactly what was written.
fn read_everything(path: &Path, ops: &[Op]) -> Result<(), String> {
    let store = match open(path) {
        Ok(store) => store,
        Err(StoreError::Corrupt { .. }) => return Err("open".into()),
        Err(other) => panic!("open: expected Corrupt, got {other:?}"),
    };
    let mut corrupt = Vec::new();
    let mut outcome = |what: &str, result: Result<bool, StoreError>| match result {
        Ok(intact) => assert!(intact, "{what} returned damaged data without an error"),
        Err(StoreError::Corrupt { .. }) => corrupt.push(what.to_owned()),
        Err(other) => panic!("{what}: expected Corrupt, got {other:?}"),
    };
    outcome(
        "ops_after",
        store
            .ops_after(0, usize::MAX)
            .map(|log| log.iter().map(|l| &l.op).eq(ops.iter())),
    );
    outcome(
        "query",
        store
            .query(&Query {
                include_deleted: true,
                ..Query::default()
            })
            .map(|nodes| nodes.len() == 50),
    );
    outcome("check_integrity", store.check_integrity().map(|()| true));
    if corrupt.is_empty() {
        Ok(())
    } else {
        Err(corrupt.join(", "))
    }
}

#[test]
fn a_truncated_database_is_reported_corrupt_never_read_as_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template.db");
    let ops = valid_ops(3000, 1_000_000);
    make_db(&template, &ops);
    assert_eq!(files_in(dir.path()), vec!["template.db"]);
    let bytes = std::fs::read(&template).unwrap();
    assert!(bytes.len() > 200_000, "the database is too small to cut");
    let len = bytes.len();
    for cut in [
        len / 2,
        len / 4,
        len * 3 / 4,
        len - 4096,
        4096 + 1,
        4096,
        100,
    ] {
        let path = dir.path().join(format!("cut-{cut}.db"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        match read_everything(&path, &ops) {
            Err(corrupt) => {
                // The error names the file in one sentence.
                if let Err(err) = open(&path) {
                    assert_sentence(&err.to_string(), Some(&path));
                }
                assert!(!corrupt.is_empty());
            }
            Ok(()) => panic!("cut to {cut} of {len} bytes, and nothing noticed"),
        }
    }
}

#[test]
fn a_sqlite_database_of_another_program_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invoices.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL);
         INSERT INTO invoices (amount) VALUES (1200), (3400);",
    )
    .unwrap();
    drop(conn);
    match open(&path) {
        Err(err @ StoreError::Corrupt { .. }) => {
            let message = err.to_string();
            assert_sentence(&message, Some(&path));
            assert!(message.contains("is not a heph database"), "{message}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(tables, vec!["invoices"], "heph created tables in it");
}

/// Writes a database in SQLite's default rollback-journal mode with `sql`.
fn rollback_journal_db(path: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(sql).unwrap();
}

/// Adds a `heph_schema` row for version 99 to a heph database.
fn mark_newer(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute(
        "INSERT INTO heph_schema (version, description) VALUES (99, 'written by heph 9')",
        [],
    )
    .unwrap();
}

#[test]
fn a_database_from_a_newer_heph_is_refused_with_its_version_and_not_touched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heph.db");
    make_db(&path, &valid_ops(30, 1_000_000));
    mark_newer(&path);
    let schema_rows = |path: &Path| -> Vec<(i64, String)> {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare("SELECT version, description FROM heph_schema ORDER BY version")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let rows_before = schema_rows(&path);
    assert_eq!(rows_before.last().map(|r| r.0), Some(99));
    let before = std::fs::read(&path).unwrap();

    match open(&path) {
        Err(
            err @ StoreError::NewerSchema {
                found: 99,
                supported,
                ..
            },
        ) => {
            assert_eq!(supported, supported_version());
            let message = err.to_string();
            assert_sentence(&message, Some(&path));
            assert!(message.contains("schema version 99"), "{message}");
            assert!(message.contains("upgrade heph"), "{message}");
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file changed");
    assert_eq!(files_in(dir.path()), vec!["heph.db"]);
    assert_eq!(schema_rows(&path), rows_before);
}

/// STYLE: "a database written by a newer version is refused with a clear
/// message, never silently altered" — and neither is a database that is not
/// heph's at all. Every refused file must keep every byte.
#[test]
fn a_refused_database_is_left_byte_for_byte_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases: Vec<(&str, PathBuf)> = Vec::new();

    let foreign = dir.path().join("foreign.db");
    rollback_journal_db(
        &foreign,
        "CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount INTEGER);
         INSERT INTO invoices (amount) VALUES (5);",
    );
    cases.push(("another program's database (rollback journal)", foreign));

    let newer_rollback = dir.path().join("newer-rollback.db");
    rollback_journal_db(
        &newer_rollback,
        "CREATE TABLE heph_schema (version INTEGER PRIMARY KEY, description TEXT NOT NULL);
         INSERT INTO heph_schema VALUES (1, 'v1'), (99, 'written by heph 9');",
    );
    cases.push(("a newer heph's database (rollback journal)", newer_rollback));

    let newer_wal = dir.path().join("newer-wal.db");
    make_db(&newer_wal, &valid_ops(10, 1_000_000));
    mark_newer(&newer_wal);
    cases.push(("a newer heph's database (WAL)", newer_wal));

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, garbage(10_000, 9)).unwrap();
    cases.push(("garbage", junk));

    let mut altered = Vec::new();
    for (what, path) in &cases {
        let before = std::fs::read(path).unwrap();
        let result = open(path);
        assert!(
            matches!(
                result,
                Err(StoreError::Corrupt { .. } | StoreError::NewerSchema { .. })
            ),
            "{what}: {result:?}"
        );
        drop(result);
        let after = std::fs::read(path).unwrap();
        if after != before {
            let first = before.iter().zip(&after).position(|(a, b)| a != b);
            altered.push(format!(
                "{what}: first changed byte at offset {first:?} (bytes 18-19, the journal mode, were {:?} and are {:?})",
                &before[18..20],
                &after[18..20]
            ));
        }
    }
    assert!(
        altered.is_empty(),
        "SqliteStore::open altered files it refused:\n  {}",
        altered.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// Locks

/// Another process's connection holding a write lock on `path`.
fn hold_exclusive_lock(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "BEGIN EXCLUSIVE;
         INSERT INTO meta (key, value) VALUES ('held-by', 'another process');",
    )
    .unwrap();
    conn
}

#[track_caller]
fn assert_locked<T: std::fmt::Debug>(result: Result<T, StoreError>, path: &Path) {
    match result {
        Err(err @ StoreError::Locked { .. }) => {
            let message = err.to_string();
            assert_sentence(&message, Some(path));
            assert!(
                message.contains("is locked by another process"),
                "{message}"
            );
        }
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn opening_a_database_another_connection_holds_locked_reports_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heph.db");
    let ops = valid_ops(20, 1_000_000);
    make_db(&path, &ops);

    let other = hold_exclusive_lock(&path);
    assert_locked(SqliteStore::open(&path, &quick_lock_options()), &path);
    other.execute_batch("ROLLBACK").unwrap();
    drop(other);

    // The other process's exclusive locking mode blocks even readers.
    let other = rusqlite::Connection::open(&path).unwrap();
    let mode: String = other
        .query_row("PRAGMA locking_mode = EXCLUSIVE", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "exclusive");
    other
        .execute_batch("INSERT INTO meta (key, value) VALUES ('k', 'v')")
        .unwrap();
    assert_locked(SqliteStore::open(&path, &quick_lock_options()), &path);
    drop(other);

    // Released, the file opens and holds what it held.
    let store = SqliteStore::open(&path, &quick_lock_options()).unwrap();
    assert_eq!(store.op_count().unwrap(), ops.len() as u64);
    assert_eq!(store.meta("held-by").unwrap(), None);
    assert_eq!(store.meta("k").unwrap().as_deref(), Some("v"));
}

#[test]
fn a_write_while_another_connection_holds_the_lock_reports_locked_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heph.db");
    make_db(&path, &valid_ops(20, 1_000_000));
    let mut store = SqliteStore::open(&path, &quick_lock_options()).unwrap();
    let batch = valid_ops(5, 2_000_000);

    let other = hold_exclusive_lock(&path);
    assert_locked(store.begin().map(|_| ()), &path);
    assert_locked(store.apply_batch(&batch), &path);
    // Readers are not blocked by a writer in WAL mode.
    assert_eq!(store.op_count().unwrap(), 20);
    other.execute_batch("COMMIT").unwrap();
    drop(other);

    // The same batch, retried, goes through whole.
    let outcomes = store.apply_batch(&batch).unwrap();
    assert_eq!(outcomes.len(), 5);
    assert!(outcomes.iter().all(|o| *o != Outcome::Duplicate));
    assert_eq!(store.op_count().unwrap(), 25);
    assert_eq!(
        store.meta("held-by").unwrap().as_deref(),
        Some("another process")
    );
}

// ---------------------------------------------------------------------------
// Unwritable locations. The tests run as root, for whom permission bits do not
// stop writes; these locations fail for root too.

#[track_caller]
fn assert_read_only<T: std::fmt::Debug>(result: Result<T, StoreError>, path: &Path) {
    match result {
        Err(err @ StoreError::ReadOnly { .. }) => {
            let message = err.to_string();
            assert_sentence(&message, Some(path));
            assert!(
                message.starts_with("cannot write the database"),
                "{message}"
            );
        }
        other => panic!("expected ReadOnly for {}, got {other:?}", path.display()),
    }
}

#[test]
fn a_database_under_a_regular_file_cannot_be_created() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"just a file").unwrap();
    let path = file.join("heph.db");
    assert_read_only(open(&path), &path);
    assert_eq!(std::fs::read(&file).unwrap(), b"just a file");
}

#[cfg(target_os = "linux")]
#[test]
fn a_database_in_procfs_cannot_be_created() {
    // procfs takes no new files, whoever asks.
    let path = Path::new("/proc/self/heph.db");
    assert_read_only(open(path), path);
}

#[test]
fn an_existing_database_whose_wal_file_cannot_be_created_is_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heph.db");
    make_db(&path, &valid_ops(10, 1_000_000));
    // A directory where the write-ahead log must go.
    std::fs::create_dir(sidecar(&path, "-wal")).unwrap();
    assert_read_only(open(&path), &path);
}

#[cfg(unix)]
#[test]
fn a_read_only_directory_refuses_a_new_and_an_existing_database() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("heph.db");
    make_db(&existing, &valid_ops(10, 1_000_000));
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root (or any process with CAP_DAC_OVERRIDE) writes through permission
    // bits, so whether they bind is asked of the system, not of the uid.
    let binding = std::fs::write(dir.path().join("probe"), b"").is_err();
    let new = dir.path().join("new.db");
    let results = binding.then(|| (open(&new).map(|_| ()), open(&existing).map(|_| ())));
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    match results {
        Some((new_result, existing_result)) => {
            assert_read_only(new_result, &new);
            assert_read_only(existing_result, &existing);
        }
        None => eprintln!(
            "permission bits do not stop this process's writes (root?); \
             the unwritable-location tests above cover it"
        ),
    }
}

// ---------------------------------------------------------------------------
// Bad batches

/// Applies a batch to one store and reports what happened.
type Apply = Box<dyn FnMut(&[Op]) -> BatchResult>;

/// Every store the batch tests run against, freshly made.
fn stores(dir: &Path) -> Vec<(&'static str, Apply)> {
    let mut memory = MemoryStore::new();
    let mut in_memory = SqliteStore::open_in_memory().unwrap();
    let mut on_disk = open(&dir.join("batch.db")).unwrap();
    vec![
        (
            "memory",
            Box::new(move |ops| BatchResult::of(&mut memory, ops)),
        ),
        (
            "sqlite in memory",
            Box::new(move |ops| BatchResult::of(&mut in_memory, ops)),
        ),
        (
            "sqlite on disk",
            Box::new(move |ops| BatchResult::of(&mut on_disk, ops)),
        ),
    ]
}

/// What applying a batch did, and what the store then held.
struct BatchResult {
    result: Result<Vec<Outcome>, StoreError>,
    op_count: u64,
    registers: usize,
}

impl BatchResult {
    fn of<S: Store>(store: &mut S, ops: &[Op]) -> Self {
        let result = store.apply_batch(ops);
        Self {
            result,
            op_count: store.op_count().unwrap(),
            registers: store.registers().unwrap().len(),
        }
    }
}

/// Applies `ops` after a valid batch of 10 and checks that the store refused
/// them at `index` as invalid with a message containing `reason`, writing
/// nothing.
#[track_caller]
fn check_refused(ops: &[Op], index: usize, reason: &str) {
    let dir = tempfile::tempdir().unwrap();
    let before = valid_ops(10, 1);
    for (name, mut apply) in stores(dir.path()) {
        let first = apply(&before);
        assert!(first.result.is_ok(), "{name}");
        let BatchResult {
            result,
            op_count,
            registers,
        } = apply(ops);
        let err = match result {
            Err(err) => err,
            Ok(outcomes) => panic!("{name}: accepted, {:?}", &outcomes[..outcomes.len().min(5)]),
        };
        let StoreError::BatchRefused {
            index: got,
            refusal: Refusal::Invalid(_),
        } = &err
        else {
            panic!("{name}: expected an invalid-op refusal, got {err}");
        };
        assert_eq!(*got, index, "{name}");
        let message = err.to_string();
        assert_sentence(&message, None);
        assert!(
            message.starts_with(&format!(
                "op {index} of the batch was refused, so none of the batch was written: invalid "
            )),
            "{name}: {message}"
        );
        assert!(
            message.contains(reason),
            "{name}: {message:?} lacks {reason:?}"
        );
        assert_eq!(
            op_count, first.op_count,
            "{name}: a refused batch wrote ops"
        );
        assert_eq!(
            registers, first.registers,
            "{name}: a refused batch wrote registers"
        );
    }
}

/// The wall time of refused ops: distinct from every valid op's, since an op
/// whose HLC is already logged is a duplicate whatever it holds.
const BAD_WALL: u64 = 500_000;

/// A batch of `valid` ops with `bad` at `index`.
fn batch_with(bad: Op, index: usize, valid: usize) -> Vec<Op> {
    let mut ops = valid_ops(valid, 1_000_000);
    ops.insert(index, bad);
    ops
}

#[test]
fn a_batch_with_one_invalid_op_among_valid_ones_writes_nothing() {
    let bad = op(BAD_WALL, 0, 1, "status", json!("finished"));
    check_refused(
        &batch_with(bad.clone(), 3, 6),
        3,
        "invalid status: must be one of todo, doing, done, cancelled",
    );
    check_refused(&batch_with(bad.clone(), 0, 6), 0, "invalid status");
}

#[test]
fn a_batch_of_5000_ops_whose_last_op_is_invalid_writes_nothing() {
    let bad = op(BAD_WALL, 0, 1, "kind", json!("event"));
    let ops = batch_with(bad, 4999, 4999);
    assert_eq!(ops.len(), 5000);
    check_refused(&ops, 4999, "invalid kind: must be \"task\" or \"note\"");

    // Through a replica, too: nothing written, the clock untouched.
    let dir = tempfile::tempdir().unwrap();
    let clock = std::sync::Arc::new(ManualClock::new(2_000_000));
    let store = open(&dir.path().join("replica.db")).unwrap();
    let mut replica = Replica::open(store, clock, 300_000, || ReplicaId([9; 16])).unwrap();
    match replica.receive(&ops) {
        Err(ReplicaError::Store(StoreError::BatchRefused { index: 4999, .. })) => {}
        other => panic!("expected op 4999 refused, got {:?}", other.map(|o| o.len())),
    }
    assert_eq!(replica.store().op_count().unwrap(), 0);
    let local = replica
        .commit_local(&[Edit::new(node(1), "title", "local")])
        .unwrap();
    assert_eq!(local[0].hlc.wall_ms, 2_000_000);
    // Without the bad op the batch is accepted whole.
    let outcomes = replica.receive(&ops[..4999]).unwrap();
    assert_eq!(outcomes.len(), 4999);
    assert_eq!(replica.store().op_count().unwrap(), 5000);
}

#[test]
fn adversarial_values_are_refused_cleanly() {
    let cases: Vec<(&str, Op, &str)> = vec![
        (
            "a body of 1 MiB + 1",
            op(
                BAD_WALL,
                0,
                1,
                "body",
                json!("b".repeat(MAX_BODY_BYTES + 1)),
            ),
            "invalid body: is 1048577 bytes, more than the limit of 1 MiB",
        ),
        (
            "a title of 1001 characters",
            op(
                BAD_WALL,
                0,
                1,
                "title",
                json!("é".repeat(MAX_TITLE_CHARS + 1)),
            ),
            "invalid title: is 1001 characters, more than the limit of 1000",
        ),
        (
            "a field name of 10,000 bytes",
            op(BAD_WALL, 0, 1, &"f".repeat(10_000), json!(1)),
            "a field name must be 1 to 256 bytes",
        ),
        (
            "a tag name of 10,000 bytes",
            op(
                BAD_WALL,
                0,
                1,
                &format!("tag:{}", "t".repeat(10_000)),
                json!(true),
            ),
            "a tag name must be 1 to 100 characters",
        ),
        (
            "a NUL in a tag name",
            op(BAD_WALL, 0, 1, "tag:a\0b", json!(true)),
            "a tag name must not contain spaces or control characters",
        ),
        (
            "a NUL in an unknown field's name",
            op(BAD_WALL, 0, 1, "x-fu\0ture", json!(1)),
            "a field name must not contain control characters",
        ),
        (
            "a NUL in a link relation",
            op(
                BAD_WALL,
                0,
                1,
                &format!("link:blo\0cks:{}", node(2)),
                json!(true),
            ),
            "a link relation must not contain spaces or control characters",
        ),
        (
            "an unknown field's value over 1 MiB",
            op(
                BAD_WALL,
                0,
                1,
                "x-future",
                json!(["v".repeat(MAX_BODY_BYTES)]),
            ),
            "invalid x-future: is larger than 1 MiB",
        ),
        (
            "a title that is not a string",
            op(BAD_WALL, 0, 1, "title", json!(["\0"])),
            "invalid title: must be a string",
        ),
    ];
    for (what, bad, reason) in cases {
        eprintln!("case: {what}");
        check_refused(&batch_with(bad, 1, 2), 1, reason);
    }
}

#[test]
fn values_at_the_limits_are_accepted_and_read_back_intact() {
    let at_limits = vec![
        op(5, 0, 1, "body", json!("b".repeat(MAX_BODY_BYTES))),
        op(5, 1, 1, "title", json!("é".repeat(MAX_TITLE_CHARS))),
        op(
            5,
            2,
            1,
            &"f".repeat(MAX_FIELD_BYTES),
            json!({"k": [1, "\0"]}),
        ),
        op(
            5,
            3,
            1,
            &format!("tag:{}", "t".repeat(MAX_NAME_CHARS)),
            json!(true),
        ),
        op(5, 4, 1, "x-future", json!("nul \0 inside a value")),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut disk = open(&dir.path().join("limits.db")).unwrap();
    let mut memory = MemoryStore::new();
    assert_eq!(
        disk.apply_batch(&at_limits).unwrap(),
        vec![Outcome::Applied; 5]
    );
    memory.apply_batch(&at_limits).unwrap();
    drop(disk);
    let disk = open(&dir.path().join("limits.db")).unwrap();
    let logged: Vec<Op> = disk
        .ops_after(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|l| l.op)
        .collect();
    assert!(
        logged == at_limits,
        "the log does not hold the ops as written"
    );
    assert!(disk.node(&node(1)).unwrap() == memory.node(&node(1)).unwrap());
    assert!(disk.registers().unwrap() == memory.registers().unwrap());
}

// ---------------------------------------------------------------------------
// Deeply nested values

/// `[[[…[1]…]]]`, `depth` arrays deep, built without recursion.
fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = Value::Array(vec![v]);
    }
    v
}

/// Takes a nested value apart without recursion (a recursive drop of a
/// 10,000-deep value would itself overflow the stack).
fn dismantle(mut v: Value) {
    loop {
        v = match v {
            Value::Array(mut items) => match items.pop() {
                Some(inner) => inner,
                None => return,
            },
            _ => return,
        };
    }
}

/// A value deeper than JSON on the wire can carry (serde_json refuses more
/// than 128 levels) but shallow enough for any stack. Either the store refuses
/// it, or it must read it back: never accept what it cannot read.
#[test]
fn a_value_nested_200_deep_is_refused_or_read_back_intact() {
    const DEPTH: usize = 200;
    let mut problems = Vec::new();
    // The deep op either takes the register or loses to a newer op.
    for (position, newer) in [("wins its register", false), ("is superseded", true)] {
        let mut verdicts = Vec::new();
        let dir = tempfile::tempdir().unwrap();
        for (name, mut apply) in stores(dir.path()) {
            if newer {
                assert!(
                    apply(&[op(9, 0, 1, "x-future", json!("newer"))])
                        .result
                        .is_ok()
                );
            }
            let deep = op(5, 0, 1, "x-future", nested(DEPTH));
            let r = apply(std::slice::from_ref(&deep));
            let verdict = match &r.result {
                Ok(_) => "accepted",
                Err(StoreError::BatchRefused { .. }) => "refused",
                Err(_) => "failed",
            };
            verdicts.push(format!("{name}: {verdict}"));
            if let Err(e) = &r.result {
                if !matches!(e, StoreError::BatchRefused { .. }) {
                    problems.push(format!(
                        "{position}, {name}: apply_batch failed with {e:?} instead of refusing the op"
                    ));
                }
            }
            dismantle(deep.value);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep.db");
        let mut disk = open(&path).unwrap();
        if newer {
            disk.apply_batch(&[op(9, 0, 1, "x-future", json!("newer"))])
                .unwrap();
        }
        let applied = disk
            .apply_batch(&[op(5, 0, 1, "x-future", nested(DEPTH))])
            .is_ok();
        if applied {
            // Accepted: every read must still work.
            if let Err(e) = disk.ops_after(0, usize::MAX) {
                problems.push(format!(
                    "{position}: sqlite committed the op, then ops_after fails for good: {e}"
                ));
            }
            if let Err(e) = disk.registers() {
                problems.push(format!("{position}: registers() fails: {e}"));
            }
        }
        if verdicts.iter().any(|v| !v.ends_with("accepted"))
            && verdicts.iter().any(|v| v.ends_with("accepted"))
        {
            problems.push(format!("{position}: the stores disagree: {verdicts:?}"));
        }
    }
    assert!(problems.is_empty(), "\n  {}", problems.join("\n  "));
}

/// The wire path: JSON nested 10,000 deep is refused by the parser, cleanly.
#[test]
fn json_nested_10000_deep_on_the_wire_does_not_parse() {
    let text = format!(
        r#"{{"hlc":"0000000001000000-0000-01010101010101010101010101010101","node":"{}","field":"x-future","value":{}1{}}}"#,
        node(1),
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let err = serde_json::from_str::<Op>(&text).unwrap_err();
    assert!(
        err.to_string().contains("recursion limit exceeded"),
        "{err}"
    );
}

const DEEP_CHILD_ENV: &str = "HEPH_TEST_DEEP_NESTING_CHILD";
const DEEP_TEST: &str = "a_value_nested_10000_deep_is_refused_without_overflowing_the_stack";

/// Built in-process (by a library user, or a future RPC path), a value nested
/// 10,000 deep must be refused, not crash the process. A stack overflow
/// aborts the whole process, so the test runs itself again as a child
/// process, on a 2 MiB thread stack (the test and tokio default), and looks at
/// how the child ended.
#[test]
fn a_value_nested_10000_deep_is_refused_without_overflowing_the_stack() {
    if std::env::var_os(DEEP_CHILD_ENV).is_some() {
        let worker = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(deep_nesting_in_this_process)
            .unwrap();
        worker.join().unwrap();
        return;
    }
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", DEEP_TEST, "--nocapture", "--test-threads=1"])
        .env(DEEP_CHILD_ENV, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&child.stderr);
    let mut tail = stderr.len().saturating_sub(2000);
    while !stderr.is_char_boundary(tail) {
        tail += 1;
    }
    let stderr = &stderr[tail..];
    let ran = String::from_utf8_lossy(&child.stdout).contains("1 passed");
    assert!(
        child.status.success() && ran,
        "the child process ended with {} (a stack overflow aborts with SIGABRT); \
         last step and output:\n{stderr}",
        child.status
    );
}

fn deep_nesting_in_this_process() {
    const DEPTH: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    for (name, mut apply) in stores(dir.path()) {
        eprintln!("step: apply_batch on {name} with a value nested {DEPTH} deep");
        let deep = op(5, 0, 1, "x-future", nested(DEPTH));
        let batch = [op(4, 0, 1, "title", json!("fine")), deep];
        let r = apply(&batch);
        let [_, deep] = batch;
        dismantle(deep.value);
        match r.result {
            Err(StoreError::BatchRefused {
                index: 1,
                refusal: Refusal::Invalid(inv),
            }) => {
                assert_eq!(inv.field, "x-future");
                assert_sentence(&inv.to_string(), None);
            }
            Err(other) => panic!("{name}: expected op 1 refused as invalid, got {other}"),
            Ok(_) => panic!("{name}: a value nested {DEPTH} deep was accepted"),
        }
        assert_eq!(r.op_count, 0, "{name}: a refused batch wrote ops");
        eprintln!("step: {name} refused it");
    }
}
