//! The SQLite schema as ordered migrations, recorded in the database itself.
//!
//! Migration `n` moves a database from version `n - 1` to `n`. The versions
//! applied are rows of `heph_schema`; a database whose greatest version is
//! beyond [`MIGRATIONS`] was written by a newer heph and is refused, never
//! altered. Append new migrations; never edit a released one.
//!
//! Migration 1's comment says ops are never deleted; since 2026-12-02 a
//! re-stamp (`Transaction::restamp`) deletes an op's row after appending it
//! again under its new HLC, so the rowid still only grows.

/// Every migration, in order. Index `i` holds version `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: the op log, registers, the node view and metadata.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;

    -- The log. seq is the rowid: ops are never deleted, so it only grows.
    CREATE TABLE ops (
        seq   INTEGER PRIMARY KEY,
        hlc   TEXT NOT NULL UNIQUE,
        node  TEXT NOT NULL,
        field TEXT NOT NULL,
        value TEXT NOT NULL
    );

    -- The current value of every register: the greatest-HLC op's value.
    CREATE TABLE registers (
        node  TEXT NOT NULL,
        field TEXT NOT NULL,
        value TEXT NOT NULL,
        hlc   TEXT NOT NULL,
        PRIMARY KEY (node, field)
    ) WITHOUT ROWID;

    -- The node view, rebuilt from registers whenever a register changes.
    CREATE TABLE nodes (
        id      TEXT PRIMARY KEY,
        kind    TEXT,
        status  TEXT,
        parent  TEXT,
        deleted INTEGER NOT NULL,
        due_key TEXT,
        title   TEXT,
        body    TEXT NOT NULL,
        created TEXT NOT NULL
    );
    CREATE INDEX nodes_created ON nodes (created, id);
    CREATE INDEX nodes_kind ON nodes (kind, status);
    CREATE INDEX nodes_due ON nodes (due_key) WHERE due_key IS NOT NULL;
    CREATE INDEX nodes_parent ON nodes (parent) WHERE parent IS NOT NULL;

    CREATE TABLE node_tags (
        tag  TEXT NOT NULL,
        node TEXT NOT NULL,
        PRIMARY KEY (tag, node)
    ) WITHOUT ROWID;
    CREATE INDEX node_tags_node ON node_tags (node);
    "#,
    // 2: where each logged op came from, so a spoke never pushes back what a hub sent it.
    r#"
    -- 2: op origins (the hub an op was pulled from; NULL for local edits and pushes received)
    CREATE TABLE origins (
        id   INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    ALTER TABLE ops ADD COLUMN origin INTEGER REFERENCES origins (id);
    "#,
];

/// The newest schema version this build knows.
pub fn supported_version() -> i64 {
    MIGRATIONS.len() as i64
}
