//! Where the built-in issuer keeps its state: tables beside the replica's
//! in the same SQLite file (one file to back up), on a connection of its
//! own so a slow sign-in never queues behind sync.
//!
//! Secrets are never stored: device codes, user codes, refresh tokens and
//! invite links are kept as SHA-256 hashes ([`hash_secret`]), passwords as
//! Argon2id hashes. Every multi-step change (redeeming a device code,
//! rotating a refresh token) is one transaction, so two concurrent
//! requests can never both win. This module holds the SQL and nothing
//! about HTTP or OAuth wording (see [`grants`](super::grants)).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use super::keys::{SigningKey, hash_secret, random_token};

/// This code's issuer schema version.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA_V1: &str = "
CREATE TABLE issuer_keys (
    kid TEXT PRIMARY KEY,
    pkcs8 BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    retired_ms INTEGER
);
CREATE TABLE issuer_accounts (
    sub TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE issuer_device_codes (
    device_hash TEXT PRIMARY KEY,
    user_code_hash TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    interval_s INTEGER NOT NULL,
    last_poll_ms INTEGER,
    state TEXT NOT NULL,
    sub TEXT,
    auth_time_ms INTEGER
);
CREATE TABLE issuer_families (
    family TEXT PRIMARY KEY,
    sub TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    auth_time_ms INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER,
    revoked_why TEXT
);
CREATE TABLE issuer_refresh_tokens (
    hash TEXT PRIMARY KEY,
    family TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    used_ms INTEGER
);
CREATE INDEX issuer_refresh_by_family ON issuer_refresh_tokens (family);
CREATE TABLE issuer_invites (
    hash TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    role TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    used_ms INTEGER
);
";

/// Version 2: device codes are found by expiry through an index (the
/// sweep of expired ones no longer scans the table), remember the
/// refresh-token family they were exchanged for (so a replayed code can
/// revoke it), and families are found by subject.
const SCHEMA_V2: &str = "
CREATE INDEX issuer_device_codes_by_expiry ON issuer_device_codes (expires_ms);
ALTER TABLE issuer_device_codes ADD COLUMN family TEXT;
CREATE INDEX issuer_families_by_sub ON issuer_families (sub);
";

/// Why the issuer's store failed. Each reads as one sentence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerStoreError {
    #[error("the issuer's tables in {}: {source}", .path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the issuer's tables in {} are version {found}, newer than this hephd understands ({supported}); upgrade hephd",
        .path.display()
    )]
    Newer {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error(transparent)]
    Key(#[from] super::keys::KeyError),
    #[error("there is no account named {0:?}; list them with hephd user list")]
    NoAccount(String),
    #[error(
        "an account named {0:?} already exists; change its password with hephd user passwd {0}"
    )]
    AccountExists(String),
}

type Result<T> = std::result::Result<T, IssuerStoreError>;

/// A local account (never with its password hash in `Debug`).
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct Account {
    pub sub: String,
    pub username: String,
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub disabled: bool,
    pub created_ms: i64,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("sub", &self.sub)
            .field("username", &self.username)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// A pending (or decided) device authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub client_id: String,
    pub scope: String,
    pub expires_ms: i64,
    pub interval_s: i64,
    pub last_poll_ms: Option<i64>,
    pub state: DeviceState,
    pub sub: Option<String>,
    pub auth_time_ms: Option<i64>,
    /// The refresh-token family this code was exchanged for (set when an
    /// approved code is exchanged).
    pub family: Option<String>,
}

/// Where a device authorization stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    Pending,
    Approved,
    Denied,
    /// Approved and exchanged for tokens: a second exchange is refused.
    Used,
}

impl DeviceState {
    fn as_str(self) -> &'static str {
        match self {
            DeviceState::Pending => "pending",
            DeviceState::Approved => "approved",
            DeviceState::Denied => "denied",
            DeviceState::Used => "used",
        }
    }
    fn parse(s: &str) -> DeviceState {
        match s {
            "approved" => DeviceState::Approved,
            "denied" => DeviceState::Denied,
            "used" => DeviceState::Used,
            _ => DeviceState::Pending,
        }
    }
}

/// A refresh-token family: every token rotated from one sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    pub family: String,
    pub sub: String,
    pub client_id: String,
    pub scope: String,
    pub auth_time_ms: i64,
}

/// What presenting a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// Valid: it is now spent, and `new_token` (already stored) replaces it.
    Rotated {
        family: Family,
        new_token: String,
    },
    /// Already spent once: the whole family is now revoked.
    Reused {
        family: Family,
    },
    /// Its family was revoked (sign-out, reuse, disabled account, a new
    /// password, a replayed device code).
    Revoked,
    Expired,
    /// Its family is older than the absolute lifetime of a sign-in.
    SignInTooOld,
    Unknown,
}

/// What recording a new device authorization did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceInsert {
    Inserted,
    /// As many codes as allowed are live already: nothing was recorded.
    Full,
}

/// What polling a device code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePoll {
    /// The row as it was before this poll.
    pub row: DeviceRow,
    /// Set when this poll exchanged an approved code: the id of the family
    /// its tokens must belong to.
    pub family: Option<String>,
    /// True when an already exchanged code came back: the family it was
    /// exchanged for is now revoked.
    pub revoked_family: bool,
}

/// The device authorization whose `column` (a hash column) is `hash`.
fn query_device(
    conn: &Connection,
    column: &str,
    hash: &str,
) -> rusqlite::Result<Option<DeviceRow>> {
    conn.query_row(
        &format!(
            "SELECT client_id, scope, expires_ms, interval_s, last_poll_ms, state, sub, auth_time_ms, family
             FROM issuer_device_codes WHERE {column} = ?1"
        ),
        [hash],
        |r| {
            Ok(DeviceRow {
                client_id: r.get(0)?,
                scope: r.get(1)?,
                expires_ms: r.get(2)?,
                interval_s: r.get(3)?,
                last_poll_ms: r.get(4)?,
                state: DeviceState::parse(&r.get::<_, String>(5)?),
                sub: r.get(6)?,
                auth_time_ms: r.get(7)?,
                family: r.get(8)?,
            })
        },
    )
    .optional()
}

/// Wraps a SQLite error with the database's path (a closure that does not
/// borrow the store, for use while a transaction borrows its connection).
fn sql_error(path: &Path) -> impl Fn(rusqlite::Error) -> IssuerStoreError + use<> {
    let path = path.to_path_buf();
    move |source| IssuerStoreError::Sqlite {
        path: path.clone(),
        source,
    }
}

/// Revokes every live refresh-token family of `sub`, saying why.
fn revoke_account_families(
    conn: &Connection,
    sub: &str,
    why: &str,
    now_ms: i64,
) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE issuer_families SET revoked_ms = ?2, revoked_why = ?3
         WHERE sub = ?1 AND revoked_ms IS NULL",
        params![sub, now_ms, why],
    )
}

/// An invite that was spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redeemed {
    pub username: String,
    /// The role the invite offers (for a new account).
    pub role: String,
    pub sub: String,
    /// Whether the account was made by this invite (else its password was reset).
    pub created: bool,
}

/// The issuer's tables, on their own connection.
pub struct IssuerStore {
    conn: Connection,
    path: PathBuf,
}

impl IssuerStore {
    /// Opens the issuer's tables in the replica database at `path` (which
    /// the replica has already created), creating them when missing.
    pub fn open(path: &Path) -> Result<Self> {
        let err = |source| IssuerStoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .map_err(err)?;
        let mut store = Self {
            conn,
            path: path.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    fn err(&self, source: rusqlite::Error) -> IssuerStoreError {
        IssuerStoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn migrate(&mut self) -> Result<()> {
        let sql = sql_error(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&sql)?;
        let run = |tx: &rusqlite::Transaction<'_>| -> rusqlite::Result<Option<i64>> {
            tx.execute(
                "CREATE TABLE IF NOT EXISTS issuer_schema (version INTEGER PRIMARY KEY)",
                [],
            )?;
            let found: i64 = tx.query_row(
                "SELECT coalesce(max(version), 0) FROM issuer_schema",
                [],
                |r| r.get(0),
            )?;
            if found > SCHEMA_VERSION {
                return Ok(Some(found));
            }
            if found < 1 {
                tx.execute_batch(SCHEMA_V1)?;
                tx.execute("INSERT INTO issuer_schema (version) VALUES (1)", [])?;
            }
            if found < 2 {
                tx.execute_batch(SCHEMA_V2)?;
                tx.execute("INSERT INTO issuer_schema (version) VALUES (2)", [])?;
            }
            Ok(None)
        };
        match run(&tx) {
            Ok(Some(found)) => Err(IssuerStoreError::Newer {
                path: self.path.clone(),
                found,
                supported: SCHEMA_VERSION,
            }),
            Ok(None) => tx.commit().map_err(&sql),
            Err(e) => Err(sql(e)),
        }
    }

    // ---- keys ----

    /// The newest unretired key, made (and stored) when there is none.
    pub fn signing_key(&mut self, now_ms: i64) -> Result<SigningKey> {
        let row: Option<(String, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT kid, pkcs8 FROM issuer_keys WHERE retired_ms IS NULL
                 ORDER BY created_ms DESC, rowid DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        match row {
            Some((kid, der)) => Ok(SigningKey::from_pkcs8(&kid, &der)?),
            None => self.add_key(now_ms),
        }
    }

    /// Adds a fresh key and retires every other one; returns the new key.
    /// Keys retired more than `keep_ms` ago (their tokens have all expired)
    /// are deleted.
    pub fn rotate_key(&mut self, now_ms: i64, keep_ms: i64) -> Result<SigningKey> {
        self.conn
            .execute(
                "DELETE FROM issuer_keys WHERE retired_ms IS NOT NULL AND retired_ms < ?1",
                [now_ms - keep_ms],
            )
            .map_err(|e| self.err(e))?;
        self.conn
            .execute(
                "UPDATE issuer_keys SET retired_ms = ?1 WHERE retired_ms IS NULL",
                [now_ms],
            )
            .map_err(|e| self.err(e))?;
        self.add_key(now_ms)
    }

    fn add_key(&mut self, now_ms: i64) -> Result<SigningKey> {
        let key = SigningKey::generate()?;
        self.conn
            .execute(
                "INSERT INTO issuer_keys (kid, pkcs8, created_ms) VALUES (?1, ?2, ?3)",
                params![key.kid, key.pkcs8(), now_ms],
            )
            .map_err(|e| self.err(e))?;
        Ok(key)
    }

    /// The public JWKs to publish: every unretired key, and retired ones
    /// for `keep_ms` after retirement (their tokens may still be live).
    pub fn published_jwks(&self, now_ms: i64, keep_ms: i64) -> Result<Vec<serde_json::Value>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT kid, pkcs8 FROM issuer_keys WHERE retired_ms IS NULL OR retired_ms >= ?1
                 ORDER BY created_ms DESC, rowid DESC",
            )
            .map_err(|e| self.err(e))?;
        let rows: Vec<(String, Vec<u8>)> = stmt
            .query_map([now_ms - keep_ms], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(sql_error(&self.path))?;
        rows.iter()
            .map(|(kid, der)| Ok(SigningKey::from_pkcs8(kid, der)?.jwk))
            .collect()
    }

    // ---- accounts ----

    /// Creates an account; returns its subject (a random, stable id).
    pub fn add_account(
        &mut self,
        username: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<String> {
        if self.account(username)?.is_some() {
            return Err(IssuerStoreError::AccountExists(username.to_owned()));
        }
        let sub = format!("u-{}", random_token(12));
        self.conn
            .execute(
                "INSERT INTO issuer_accounts (sub, username, password_hash, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![sub, username, password_hash, now_ms],
            )
            .map_err(|e| self.err(e))?;
        Ok(sub)
    }

    fn account_where(&self, clause: &str, value: &str) -> Result<Option<Account>> {
        self.conn
            .query_row(
                &format!(
                    "SELECT sub, username, password_hash, disabled, created_ms FROM issuer_accounts WHERE {clause} = ?1"
                ),
                [value],
                |r| {
                    Ok(Account {
                        sub: r.get(0)?,
                        username: r.get(1)?,
                        password_hash: r.get(2)?,
                        disabled: r.get::<_, i64>(3)? != 0,
                        created_ms: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The account with this user name (names are kept lowercase).
    pub fn account(&self, username: &str) -> Result<Option<Account>> {
        self.account_where("username", username)
    }

    /// The account with this subject.
    pub fn account_by_sub(&self, sub: &str) -> Result<Option<Account>> {
        self.account_where("sub", sub)
    }

    /// Every account, by name.
    pub fn accounts(&self) -> Result<Vec<Account>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT sub, username, disabled, created_ms FROM issuer_accounts ORDER BY username",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| {
            Ok(Account {
                sub: r.get(0)?,
                username: r.get(1)?,
                password_hash: None,
                disabled: r.get::<_, i64>(2)? != 0,
                created_ms: r.get(3)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// Gives an account a new password and revokes every refresh token it
    /// holds (whoever knew the old password may have signed in with it),
    /// in one transaction.
    pub fn change_password(
        &mut self,
        username: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<()> {
        let sql = sql_error(&self.path);
        let tx = self.conn.transaction().map_err(&sql)?;
        let sub: Option<String> = tx
            .query_row(
                "SELECT sub FROM issuer_accounts WHERE username = ?1",
                [username],
                |r| r.get(0),
            )
            .optional()
            .map_err(&sql)?;
        let Some(sub) = sub else {
            return Err(IssuerStoreError::NoAccount(username.to_owned()));
        };
        tx.execute(
            "UPDATE issuer_accounts SET password_hash = ?2, updated_ms = ?3 WHERE sub = ?1",
            params![sub, password_hash, now_ms],
        )
        .map_err(&sql)?;
        revoke_account_families(&tx, &sub, "password changed", now_ms).map_err(&sql)?;
        tx.commit().map_err(&sql)
    }

    /// Replaces a password hash by one of the same password made under
    /// newer parameters (sign-ins stay valid).
    pub fn rehash_password(
        &mut self,
        username: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE issuer_accounts SET password_hash = ?2, updated_ms = ?3 WHERE username = ?1",
                params![username, password_hash, now_ms],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Disables or re-enables an account. Disabling also revokes every
    /// refresh token the account holds. Returns its subject.
    pub fn set_disabled(&mut self, username: &str, disabled: bool, now_ms: i64) -> Result<String> {
        let account = self
            .account(username)?
            .ok_or_else(|| IssuerStoreError::NoAccount(username.to_owned()))?;
        let tx = self.conn.transaction().map_err(sql_error(&self.path))?;
        let run = || -> rusqlite::Result<()> {
            tx.execute(
                "UPDATE issuer_accounts SET disabled = ?2, updated_ms = ?3 WHERE username = ?1",
                params![username, i64::from(disabled), now_ms],
            )?;
            if disabled {
                revoke_account_families(&tx, &account.sub, "account disabled", now_ms)?;
                // A link sent before must not hand the account back.
                tx.execute(
                    "UPDATE issuer_invites SET used_ms = ?2 WHERE username = ?1 AND used_ms IS NULL",
                    params![username, now_ms],
                )?;
            }
            Ok(())
        };
        run().map_err(sql_error(&self.path))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(account.sub)
    }

    // ---- device authorizations ----

    /// Records a new device authorization (codes stored hashed), unless
    /// `max_live` unexpired ones exist already. The count reads the expiry
    /// index and stops at `max_live`; expired rows are left to
    /// [`prune_devices`](Self::prune_devices), off the request path.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_device(
        &mut self,
        device_code: &str,
        user_code: &str,
        client_id: &str,
        scope: &str,
        now_ms: i64,
        expires_ms: i64,
        interval_s: i64,
        max_live: u32,
    ) -> Result<DeviceInsert> {
        // A pending code lost to a power cut costs one new `heph auth
        // login`: its commit need not wait for the disk (WAL mode keeps the
        // file consistent; the next durable commit syncs it too). This keeps
        // a flood of device authorizations from holding the store, and so
        // every refresh, behind one fsync each.
        self.conn
            .execute_batch("PRAGMA synchronous = NORMAL")
            .map_err(|e| self.err(e))?;
        let inserted = self.conn.execute(
                "INSERT INTO issuer_device_codes
                 (device_hash, user_code_hash, client_id, scope, created_ms, expires_ms, interval_s, state)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending'
                 WHERE (SELECT count(*) FROM (SELECT 1 FROM issuer_device_codes
                        WHERE expires_ms > ?5 LIMIT ?8)) < ?8",
                params![
                    hash_secret(device_code),
                    hash_secret(user_code),
                    client_id,
                    scope,
                    now_ms,
                    expires_ms,
                    interval_s,
                    max_live
                ],
            );
        let durable = self.conn.execute_batch("PRAGMA synchronous = FULL");
        let n = inserted.map_err(|e| self.err(e))?;
        durable.map_err(|e| self.err(e))?;
        Ok(if n == 1 {
            DeviceInsert::Inserted
        } else {
            DeviceInsert::Full
        })
    }

    /// Deletes at most `batch` device authorizations that expired before
    /// `before_ms`; returns how many. Called in a loop by the issuer's
    /// sweeper, one short transaction per batch, so a request waits for
    /// one batch at most.
    pub fn prune_devices(&mut self, before_ms: i64, batch: u32) -> Result<usize> {
        self.conn
            .execute(
                "DELETE FROM issuer_device_codes WHERE rowid IN
                 (SELECT rowid FROM issuer_device_codes WHERE expires_ms < ?1 LIMIT ?2)",
                params![before_ms, batch],
            )
            .map_err(|e| self.err(e))
    }

    /// How many device authorizations are stored (live or not).
    pub fn device_count(&self) -> Result<i64> {
        self.conn
            .query_row("SELECT count(*) FROM issuer_device_codes", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    fn device_where(&self, column: &str, hash: &str) -> Result<Option<DeviceRow>> {
        query_device(&self.conn, column, hash).map_err(|e| self.err(e))
    }

    /// The authorization a user code belongs to.
    pub fn device_by_user_code(&self, user_code: &str) -> Result<Option<DeviceRow>> {
        self.device_where("user_code_hash", &hash_secret(user_code))
    }

    /// Approves (with the account's subject) or denies a pending
    /// authorization; false when it is no longer pending.
    pub fn decide_device(
        &mut self,
        user_code: &str,
        approve: Option<&str>,
        now_ms: i64,
    ) -> Result<bool> {
        let (state, sub) = match approve {
            Some(sub) => (DeviceState::Approved, Some(sub)),
            None => (DeviceState::Denied, None),
        };
        let n = self
            .conn
            .execute(
                "UPDATE issuer_device_codes SET state = ?2, sub = ?3, auth_time_ms = ?4
                 WHERE user_code_hash = ?1 AND state = 'pending' AND expires_ms > ?4",
                params![hash_secret(user_code), state.as_str(), sub, now_ms],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    /// One poll of the token endpoint for `device_code`, in one
    /// transaction: returns the row as it was and records this poll's time.
    /// An approved code is marked used and given the id of the family its
    /// tokens will belong to (so it is exchanged exactly once); a used code
    /// presented again revokes that family (RFC 6749 §4.1.2: a code used
    /// twice means someone else has it).
    pub fn poll_device(&mut self, device_code: &str, now_ms: i64) -> Result<Option<DevicePoll>> {
        let hash = hash_secret(device_code);
        let sql = sql_error(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&sql)?;
        let Some(row) = query_device(&tx, "device_hash", &hash).map_err(&sql)? else {
            return Ok(None);
        };
        let (next, family) = match row.state {
            DeviceState::Approved => (DeviceState::Used, Some(random_token(12))),
            other => (other, row.family.clone()),
        };
        tx.execute(
            "UPDATE issuer_device_codes SET last_poll_ms = ?2, state = ?3, family = ?4 WHERE device_hash = ?1",
            params![hash, now_ms, next.as_str(), family],
        )
        .map_err(&sql)?;
        let mut revoked_family = false;
        if row.state == DeviceState::Used
            && let Some(f) = &row.family
        {
            revoked_family = tx
                .execute(
                    "UPDATE issuer_families SET revoked_ms = ?2, revoked_why = 'device code presented again'
                     WHERE family = ?1 AND revoked_ms IS NULL",
                    params![f, now_ms],
                )
                .map_err(&sql)?
                > 0;
        }
        tx.commit().map_err(&sql)?;
        let exchanged = (row.state == DeviceState::Approved)
            .then_some(family)
            .flatten();
        Ok(Some(DevicePoll {
            row,
            family: exchanged,
            revoked_family,
        }))
    }

    /// Makes polling slower for this device code (after a `slow_down`).
    pub fn slow_device(&mut self, device_code: &str, interval_s: i64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE issuer_device_codes SET interval_s = ?2 WHERE device_hash = ?1",
                params![hash_secret(device_code), interval_s],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    // ---- refresh tokens ----

    /// Starts a family for a new sign-in and returns its first refresh token.
    pub fn new_family(&mut self, family: &Family, now_ms: i64, ttl_ms: i64) -> Result<String> {
        let token = random_token(32);
        let tx = self.conn.transaction().map_err(sql_error(&self.path))?;
        let run = || -> rusqlite::Result<()> {
            tx.execute(
                "INSERT INTO issuer_families (family, sub, client_id, scope, auth_time_ms, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    family.family,
                    family.sub,
                    family.client_id,
                    family.scope,
                    family.auth_time_ms,
                    now_ms
                ],
            )?;
            tx.execute(
                "INSERT INTO issuer_refresh_tokens (hash, family, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)",
                params![hash_secret(&token), family.family, now_ms, now_ms + ttl_ms],
            )?;
            Ok(())
        };
        run().map_err(sql_error(&self.path))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(token)
    }

    /// Presents a refresh token: rotates it, or detects reuse and revokes
    /// its family, in one transaction. A family older than `max_age_ms`
    /// (the absolute lifetime of a sign-in) is over however recently its
    /// tokens were rotated, and a rotated token never outlives its family.
    pub fn use_refresh(
        &mut self,
        token: &str,
        now_ms: i64,
        ttl_ms: i64,
        max_age_ms: i64,
    ) -> Result<RefreshUse> {
        let hash = hash_secret(token);
        let sql = sql_error(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&sql)?;
        let found: Option<(String, i64, Option<i64>)> = tx
            .query_row(
                "SELECT family, expires_ms, used_ms FROM issuer_refresh_tokens WHERE hash = ?1",
                [&hash],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(&sql)?;
        let Some((family_id, expires_ms, used_ms)) = found else {
            return Ok(RefreshUse::Unknown);
        };
        let family: (Family, Option<i64>, i64) = tx
            .query_row(
                "SELECT family, sub, client_id, scope, auth_time_ms, revoked_ms, created_ms FROM issuer_families WHERE family = ?1",
                [&family_id],
                |r| {
                    Ok((
                        Family {
                            family: r.get(0)?,
                            sub: r.get(1)?,
                            client_id: r.get(2)?,
                            scope: r.get(3)?,
                            auth_time_ms: r.get(4)?,
                        },
                        r.get(5)?,
                        r.get(6)?,
                    ))
                },
            )
            .map_err(&sql)?;
        let (family, revoked, created_ms) = family;
        if revoked.is_some() {
            return Ok(RefreshUse::Revoked);
        }
        if used_ms.is_some() {
            tx.execute(
                "UPDATE issuer_families SET revoked_ms = ?2, revoked_why = 'refresh token reused'
                 WHERE family = ?1",
                params![family.family, now_ms],
            )
            .map_err(&sql)?;
            tx.commit().map_err(&sql)?;
            return Ok(RefreshUse::Reused { family });
        }
        if expires_ms <= now_ms {
            return Ok(RefreshUse::Expired);
        }
        let family_ends_ms = created_ms.saturating_add(max_age_ms);
        if family_ends_ms <= now_ms {
            return Ok(RefreshUse::SignInTooOld);
        }
        let new_token = random_token(32);
        tx.execute(
            "UPDATE issuer_refresh_tokens SET used_ms = ?2 WHERE hash = ?1",
            params![hash, now_ms],
        )
        .map_err(&sql)?;
        tx.execute(
            "INSERT INTO issuer_refresh_tokens (hash, family, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)",
            params![
                hash_secret(&new_token),
                family.family,
                now_ms,
                (now_ms + ttl_ms).min(family_ends_ms)
            ],
        )
        .map_err(&sql)?;
        // Spent tokens older than a day are kept only to detect reuse; a
        // family's history beyond that is not needed.
        tx.execute(
            "DELETE FROM issuer_refresh_tokens WHERE family = ?1 AND used_ms IS NOT NULL AND used_ms < ?2",
            params![family.family, now_ms - 30 * 86_400_000],
        )
        .map_err(&sql)?;
        tx.commit().map_err(&sql)?;
        Ok(RefreshUse::Rotated { family, new_token })
    }

    /// Revokes the family of a refresh token (RFC 7009); false when the
    /// token is unknown.
    pub fn revoke_refresh(&mut self, token: &str, now_ms: i64) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE issuer_families SET revoked_ms = ?2, revoked_why = 'revoked by the client'
                 WHERE revoked_ms IS NULL AND family =
                   (SELECT family FROM issuer_refresh_tokens WHERE hash = ?1)",
                params![hash_secret(token), now_ms],
            )
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// Revokes one family, saying why.
    pub fn revoke_family(&mut self, family: &str, why: &str, now_ms: i64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE issuer_families SET revoked_ms = ?2, revoked_why = ?3
                 WHERE family = ?1 AND revoked_ms IS NULL",
                params![family, now_ms, why],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    // ---- invites ----

    /// Records a single-use invite link for `username`; returns its secret.
    pub fn add_invite(
        &mut self,
        username: &str,
        role: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<String> {
        let secret = random_token(32);
        self.conn
            .execute(
                "INSERT INTO issuer_invites (hash, username, role, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![hash_secret(&secret), username, role, now_ms, now_ms + ttl_ms],
            )
            .map_err(|e| self.err(e))?;
        Ok(secret)
    }

    /// The user name and role of a live, unused invite.
    pub fn invite(&self, secret: &str, now_ms: i64) -> Result<Option<(String, String)>> {
        self.conn
            .query_row(
                "SELECT username, role FROM issuer_invites WHERE hash = ?1 AND used_ms IS NULL AND expires_ms > ?2",
                params![hash_secret(secret), now_ms],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Spends an invite and creates (or resets the password of) its account
    /// with `password_hash`, in one transaction. An existing account keeps
    /// its state: a disabled one stays disabled. Returns the redeemed
    /// invite, or `None` when it is no longer live.
    pub fn redeem_invite(
        &mut self,
        secret: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<Option<Redeemed>> {
        let sql = sql_error(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&sql)?;
        let n = tx
            .execute(
                "UPDATE issuer_invites SET used_ms = ?2 WHERE hash = ?1 AND used_ms IS NULL AND expires_ms > ?2",
                params![hash_secret(secret), now_ms],
            )
            .map_err(&sql)?;
        if n != 1 {
            return Ok(None);
        }
        let (username, role): (String, String) = tx
            .query_row(
                "SELECT username, role FROM issuer_invites WHERE hash = ?1",
                [hash_secret(secret)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(&sql)?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT sub FROM issuer_accounts WHERE username = ?1",
                [&username],
                |r| r.get(0),
            )
            .optional()
            .map_err(&sql)?;
        let created = existing.is_none();
        let sub = match existing {
            Some(sub) => {
                tx.execute(
                    "UPDATE issuer_accounts SET password_hash = ?2, updated_ms = ?3 WHERE sub = ?1",
                    params![sub, password_hash, now_ms],
                )
                .map_err(&sql)?;
                // A reset is a new password: the sign-ins made with the old
                // one end, as with `hephd user passwd`.
                revoke_account_families(&tx, &sub, "password reset by invite", now_ms)
                    .map_err(&sql)?;
                sub
            }
            None => {
                let sub = format!("u-{}", random_token(12));
                tx.execute(
                    "INSERT INTO issuer_accounts (sub, username, password_hash, created_ms, updated_ms)
                     VALUES (?1, ?2, ?3, ?4, ?4)",
                    params![sub, username, password_hash, now_ms],
                )
                .map_err(&sql)?;
                sub
            }
        };
        tx.commit().map_err(&sql)?;
        Ok(Some(Redeemed {
            username,
            role,
            sub,
            created,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, IssuerStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heph.db");
        let store = IssuerStore::open(&path).unwrap();
        (dir, store)
    }

    const DAY: i64 = 86_400_000;

    fn family(sub: &str) -> Family {
        Family {
            family: random_token(12),
            sub: sub.into(),
            client_id: "heph".into(),
            scope: "openid offline_access".into(),
            auth_time_ms: 1,
        }
    }

    #[test]
    fn rotation_spends_each_token_once_and_reuse_revokes_the_family() {
        let (_d, mut s) = open();
        let first = s.new_family(&family("u-1"), 1_000, 60_000).unwrap();
        let RefreshUse::Rotated {
            new_token: second, ..
        } = s.use_refresh(&first, 2_000, 60_000, DAY).unwrap()
        else {
            panic!("first use rotates");
        };
        let RefreshUse::Rotated {
            new_token: third, ..
        } = s.use_refresh(&second, 3_000, 60_000, DAY).unwrap()
        else {
            panic!("second use rotates");
        };
        // An attacker replays the first token: the whole family dies,
        // including the legitimate holder's current token.
        assert!(matches!(
            s.use_refresh(&first, 4_000, 60_000, DAY).unwrap(),
            RefreshUse::Reused { .. }
        ));
        assert_eq!(
            s.use_refresh(&third, 5_000, 60_000, DAY).unwrap(),
            RefreshUse::Revoked
        );
        assert_eq!(
            s.use_refresh("made-up", 5_000, 60_000, DAY).unwrap(),
            RefreshUse::Unknown
        );
    }

    #[test]
    fn refresh_tokens_expire_and_revocation_ends_the_family() {
        let (_d, mut s) = open();
        let t = s.new_family(&family("u-1"), 1_000, 10_000).unwrap();
        assert_eq!(
            s.use_refresh(&t, 20_000, 10_000, DAY).unwrap(),
            RefreshUse::Expired
        );
        let t = s.new_family(&family("u-1"), 1_000, 10_000).unwrap();
        assert!(s.revoke_refresh(&t, 2_000).unwrap());
        assert!(!s.revoke_refresh("unknown", 2_000).unwrap());
        assert_eq!(
            s.use_refresh(&t, 3_000, 10_000, DAY).unwrap(),
            RefreshUse::Revoked
        );
    }

    #[test]
    fn secrets_are_not_stored_in_the_clear() {
        let (dir, mut s) = open();
        let t = s.new_family(&family("u-1"), 1_000, 10_000).unwrap();
        s.insert_device(
            "device-secret",
            "USERCODE",
            "heph",
            "openid",
            0,
            10_000,
            5,
            10,
        )
        .unwrap();
        let invite = s.add_invite("a@example.org", "writer", 0, 10_000).unwrap();
        drop(s);
        let bytes = std::fs::read(dir.path().join("heph.db")).unwrap();
        let wal = std::fs::read(dir.path().join("heph.db-wal")).unwrap_or_default();
        for secret in [t.as_str(), "device-secret", "USERCODE", invite.as_str()] {
            for file in [&bytes, &wal] {
                assert!(
                    !file.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{secret} is stored in the clear"
                );
            }
        }
    }

    #[test]
    fn a_device_code_is_decided_once_and_exchanged_once() {
        let (_d, mut s) = open();
        s.insert_device("dc", "ABCDEFGH", "heph", "openid", 0, 60_000, 5, 10)
            .unwrap();
        assert_eq!(
            s.poll_device("dc", 1).unwrap().unwrap().row.state,
            DeviceState::Pending
        );
        assert!(s.decide_device("ABCDEFGH", Some("u-1"), 2).unwrap());
        assert!(
            !s.decide_device("ABCDEFGH", None, 3).unwrap(),
            "already decided"
        );
        let poll = s.poll_device("dc", 4).unwrap().unwrap();
        assert_eq!(
            (poll.row.state, poll.row.sub.as_deref()),
            (DeviceState::Approved, Some("u-1"))
        );
        let family_id = poll.family.expect("an exchange names its family");
        let mut f = family("u-1");
        f.family = family_id;
        let t = s.new_family(&f, 4, 60_000).unwrap();
        // Presented again: refused, and the sign-in it gave is revoked.
        let again = s.poll_device("dc", 5).unwrap().unwrap();
        assert_eq!(
            (again.row.state, again.family, again.revoked_family),
            (DeviceState::Used, None, true)
        );
        assert_eq!(
            s.use_refresh(&t, 6, 60_000, DAY).unwrap(),
            RefreshUse::Revoked
        );
        assert!(s.poll_device("other", 5).unwrap().is_none());
        // An expired code cannot be approved.
        s.insert_device("dc2", "ZZZZZZZZ", "heph", "openid", 0, 10, 5, 10)
            .unwrap();
        assert!(!s.decide_device("ZZZZZZZZ", Some("u-1"), 11).unwrap());
    }

    #[test]
    fn a_password_change_ends_sign_ins_and_a_rehash_does_not() {
        let (_d, mut s) = open();
        let sub = s.add_account("alice", "$argon2id$old", 0).unwrap();
        let mut f = family(&sub);
        f.sub = sub.clone();
        let t = s.new_family(&f, 0, 60_000).unwrap();
        s.rehash_password("alice", "$argon2id$same-password", 1)
            .unwrap();
        let RefreshUse::Rotated { new_token: t, .. } = s.use_refresh(&t, 2, 60_000, DAY).unwrap()
        else {
            panic!("a rehash keeps sign-ins");
        };
        s.change_password("alice", "$argon2id$new", 3).unwrap();
        assert_eq!(
            s.use_refresh(&t, 4, 60_000, DAY).unwrap(),
            RefreshUse::Revoked
        );
        assert_eq!(
            s.account("alice")
                .unwrap()
                .unwrap()
                .password_hash
                .as_deref(),
            Some("$argon2id$new")
        );
        // A reset through an invite link is a password change too.
        let t = s.new_family(&family(&sub), 5, 60_000).unwrap();
        let link = s.add_invite("alice", "writer", 5, 900_000).unwrap();
        assert!(
            !s.redeem_invite(&link, "$argon2id$newer", 6)
                .unwrap()
                .unwrap()
                .created
        );
        assert_eq!(
            s.use_refresh(&t, 7, 60_000, DAY).unwrap(),
            RefreshUse::Revoked,
            "a reset by invite left the old sign-in working"
        );
    }

    #[test]
    fn a_sign_in_ends_at_its_absolute_lifetime_however_often_it_rotates() {
        let (_d, mut s) = open();
        let mut t = s.new_family(&family("u-1"), 0, 10_000).unwrap();
        // Rotated every 5 s with a 10 s token life and a 22 s sign-in life.
        for now in [5_000, 10_000, 15_000, 20_000] {
            let RefreshUse::Rotated { new_token, .. } =
                s.use_refresh(&t, now, 10_000, 22_000).unwrap()
            else {
                panic!("rotates at {now}");
            };
            t = new_token;
        }
        // The last token was cut to the family's end (22 s), not 30 s.
        assert_eq!(
            s.use_refresh(&t, 22_000, 10_000, 22_000).unwrap(),
            RefreshUse::Expired
        );
        let t = s.new_family(&family("u-2"), 0, 60_000).unwrap();
        assert_eq!(
            s.use_refresh(&t, 30_000, 60_000, 22_000).unwrap(),
            RefreshUse::SignInTooOld
        );
    }

    /// Issue 12 item 5: live codes are capped, and expired ones are swept
    /// in bounded batches by an indexed delete.
    #[test]
    fn device_codes_are_capped_and_pruned_in_batches() {
        let (_d, mut s) = open();
        for i in 0..5 {
            let got = s
                .insert_device(
                    &format!("d{i}"),
                    &format!("U{i}"),
                    "heph",
                    "openid",
                    0,
                    1_000,
                    5,
                    5,
                )
                .unwrap();
            assert_eq!(got, DeviceInsert::Inserted);
        }
        assert_eq!(
            s.insert_device("d5", "U5", "heph", "openid", 0, 1_000, 5, 5)
                .unwrap(),
            DeviceInsert::Full
        );
        // Expired codes do not count against the cap.
        assert_eq!(
            s.insert_device("d6", "U6", "heph", "openid", 2_000, 3_000, 5, 5)
                .unwrap(),
            DeviceInsert::Inserted
        );
        assert_eq!(s.device_count().unwrap(), 6);
        assert_eq!(s.prune_devices(1_500, 2).unwrap(), 2);
        assert_eq!(s.prune_devices(1_500, 2).unwrap(), 2);
        assert_eq!(s.prune_devices(1_500, 2).unwrap(), 1);
        assert_eq!(s.prune_devices(1_500, 2).unwrap(), 0);
        assert_eq!(s.device_count().unwrap(), 1, "the live one stays");
        let plan: String = s
            .conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT rowid FROM issuer_device_codes WHERE expires_ms < 1 LIMIT 1",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("issuer_device_codes_by_expiry"), "{plan}");
    }

    #[test]
    fn a_version_1_database_is_migrated_to_2() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heph.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA_V1).unwrap();
            conn.execute_batch(
                "CREATE TABLE issuer_schema (version INTEGER PRIMARY KEY);
                 INSERT INTO issuer_schema VALUES (1);
                 INSERT INTO issuer_device_codes (device_hash, user_code_hash, client_id, scope,
                   created_ms, expires_ms, interval_s, state) VALUES ('h', 'u', 'heph', 'openid', 0, 1, 5, 'pending');",
            )
            .unwrap();
        }
        let mut s = IssuerStore::open(&path).unwrap();
        assert_eq!(s.device_count().unwrap(), 1, "rows are kept");
        assert_eq!(s.prune_devices(2, 10).unwrap(), 1);
        let version: i64 = s
            .conn
            .query_row("SELECT max(version) FROM issuer_schema", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 2);
        drop(s);
        // Opening again is a no-op.
        IssuerStore::open(&path).unwrap();
    }

    #[test]
    fn keys_rotate_and_retired_keys_are_published_for_a_while() {
        let (_d, mut s) = open();
        let first = s.signing_key(0).unwrap();
        assert_eq!(s.signing_key(1).unwrap().kid, first.kid, "the key is kept");
        let second = s.rotate_key(1_000, 5_000).unwrap();
        assert_eq!(s.signing_key(1_001).unwrap().kid, second.kid);
        let kids = |v: Vec<serde_json::Value>| -> Vec<String> {
            v.iter()
                .map(|k| k["kid"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            kids(s.published_jwks(2_000, 5_000).unwrap()),
            [second.kid.clone(), first.kid.clone()]
        );
        assert_eq!(
            kids(s.published_jwks(7_000, 5_000).unwrap()),
            std::slice::from_ref(&second.kid)
        );
        // The next rotation deletes keys whose tokens have all expired.
        let third = s.rotate_key(20_000, 5_000).unwrap();
        assert_eq!(
            kids(s.published_jwks(20_001, i64::MAX / 2).unwrap()),
            vec![third.kid, second.kid],
            "the first key is gone from the database"
        );
    }

    #[test]
    fn accounts_disable_revokes_their_tokens_and_invites_are_single_use() {
        let (_d, mut s) = open();
        let sub = s.add_account("alice", "$argon2id$x", 0).unwrap();
        assert!(matches!(
            s.add_account("alice", "h", 0),
            Err(IssuerStoreError::AccountExists(_))
        ));
        let mut f = family(&sub);
        f.sub = sub.clone();
        let t = s.new_family(&f, 0, 60_000).unwrap();
        s.set_disabled("alice", true, 1).unwrap();
        assert!(s.account("alice").unwrap().unwrap().disabled);
        assert_eq!(
            s.use_refresh(&t, 2, 60_000, DAY).unwrap(),
            RefreshUse::Revoked
        );
        assert!(matches!(
            s.change_password("bob", "h", 0),
            Err(IssuerStoreError::NoAccount(_))
        ));

        let link = s
            .add_invite("bob@example.org", "reader", 0, 900_000)
            .unwrap();
        assert_eq!(
            s.invite(&link, 1).unwrap(),
            Some(("bob@example.org".into(), "reader".into()))
        );
        let r = s.redeem_invite(&link, "$argon2id$y", 2).unwrap().unwrap();
        assert_eq!(
            (r.username.as_str(), r.role.as_str(), r.created),
            ("bob@example.org", "reader", true)
        );
        assert!(
            s.redeem_invite(&link, "$argon2id$z", 3).unwrap().is_none(),
            "single use"
        );
        let late = s.add_invite("carol", "writer", 0, 10).unwrap();
        assert!(s.invite(&late, 11).unwrap().is_none(), "expired");

        // A reset link for an existing account keeps it as it is; disabling
        // it voids the links already sent.
        let reset = s.add_invite("alice", "writer", 20, 900_000).unwrap();
        let r = s
            .redeem_invite(&reset, "$argon2id$new", 21)
            .unwrap()
            .unwrap();
        assert!(!r.created);
        assert!(
            s.account("alice").unwrap().unwrap().disabled,
            "still disabled"
        );
        s.set_disabled("alice", false, 22).unwrap();
        let old_link = s.add_invite("alice", "writer", 23, 900_000).unwrap();
        s.set_disabled("alice", true, 24).unwrap();
        assert!(
            s.redeem_invite(&old_link, "$argon2id$x", 25)
                .unwrap()
                .is_none()
        );
    }
}
