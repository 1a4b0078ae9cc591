//! Token stores, keyed by the normalized hub URL (DESIGN §7.2).
//!
//! - [`KeyringStore`]: the OS keyring through `keyring-core` (Secret Service
//!   on Linux, the login keychain on macOS: `store/keychain.rs`). Every call
//!   runs under a timeout (≤ 3 s) so a locked or absent keyring never hangs;
//!   the error then names `--token-store file`.
//! - [`FileStore`]: one JSON file (`--token-file`) holding every hub's
//!   tokens, mode 0600, written atomically (a temp file with an
//!   unpredictable name created exclusively in the same directory, fsync,
//!   rename, fsync of the directory) under an exclusive `flock` on
//!   `FILE.lock`, opened with `O_NOFOLLOW`, so one writer at a time changes
//!   it and nobody sharing the directory can redirect or block a save with a
//!   planted file or symlink.
//! - [`CommandStore`]: `--token-load-cmd` prints one hub's token JSON;
//!   `--token-save-cmd` reads it on stdin (never argv). Both run with
//!   `HEPH_HUB_URL` and `HEPH_TOKEN_ACTION` (`load`, `save` or `delete`).
//! - [`MemoryStore`]: for tests.
//!
//! No error here quotes a token.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use heph_core::wire::HubUrl;

use crate::tokens::{TokenSet, sanitized};

#[cfg(target_os = "macos")]
mod keychain;

/// The keyring service name entries are filed under.
pub const KEYRING_SERVICE: &str = "heph";
/// The longest a keyring call may take.
pub const KEYRING_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest a token command may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong with a token store. Each reads as one sentence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The keyring did not answer in time.
    #[error(
        "the OS keyring did not answer within {secs} s (is it locked, waiting for you to allow access, or absent on this machine?); use --token-store file --token-file PATH instead"
    )]
    KeyringTimeout { secs: u64 },
    /// The keyring is locked or refuses access.
    #[error(
        "the OS keyring is locked or refuses access ({reason}); unlock it, or use --token-store file --token-file PATH instead"
    )]
    KeyringLocked { reason: String },
    /// The keyring cannot be used at all.
    #[error(
        "the OS keyring is not available ({reason}); use --token-store file --token-file PATH instead"
    )]
    KeyringUnavailable { reason: String },
    /// A file operation failed.
    #[error("cannot {action} the token file {}: {source}", .path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The lock file is a symbolic link (someone may be redirecting it).
    #[error(
        "the token lock file {} is a symbolic link, which heph never creates; remove it (rm {}) and check who can write to its directory",
        .path.display(), .path.display()
    )]
    LockIsSymlink { path: PathBuf },
    /// The token file is readable by others.
    #[error("the token file {} can be read by other users; run: chmod 600 {}", .path.display(), .path.display())]
    Permissions { path: PathBuf },
    /// A token command failed.
    #[error("the token command {flag} {outcome}")]
    Command { flag: &'static str, outcome: String },
    /// The stored tokens cannot be read.
    #[error(
        "the tokens for {hub} in {store} cannot be read: {reason}; sign in again to replace them"
    )]
    Corrupt {
        hub: String,
        store: String,
        reason: String,
    },
    /// The settings do not make a store.
    #[error("{0}")]
    Settings(String),
}

impl StoreError {
    /// Whether this is the keyring being locked, absent or hung.
    pub fn is_keyring(&self) -> bool {
        matches!(
            self,
            StoreError::KeyringTimeout { .. }
                | StoreError::KeyringLocked { .. }
                | StoreError::KeyringUnavailable { .. }
        )
    }
}

/// Where tokens are kept.
pub trait TokenStore: Send + Sync {
    /// The tokens for `hub`, if any.
    fn load(&self, hub: &HubUrl) -> Result<Option<TokenSet>, StoreError>;
    /// Saves (replaces) the tokens for `hub`.
    fn save(&self, hub: &HubUrl, tokens: &TokenSet) -> Result<(), StoreError>;
    /// Deletes the tokens for `hub`; whether there were any.
    fn delete(&self, hub: &HubUrl) -> Result<bool, StoreError>;
    /// What this store is, for status output (`keyring`, `file /path`, …).
    fn describe(&self) -> String;
}

/// The kinds of store (`--token-store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Keyring,
    File,
    Command,
    Memory,
}

impl StoreKind {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Keyring => "keyring",
            StoreKind::File => "file",
            StoreKind::Command => "command",
            StoreKind::Memory => "memory",
        }
    }

    /// Reads a flag value.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "keyring" => Ok(StoreKind::Keyring),
            "file" => Ok(StoreKind::File),
            "command" => Ok(StoreKind::Command),
            "memory" => Ok(StoreKind::Memory),
            _ => Err(format!(
                "{text:?} is not one of keyring, file, command, memory"
            )),
        }
    }
}

/// The token-store settings (`--token-store`, `--token-file`,
/// `--token-load-cmd`, `--token-save-cmd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub kind: StoreKind,
    pub file: Option<PathBuf>,
    pub load_cmd: Option<String>,
    pub save_cmd: Option<String>,
}

impl StoreConfig {
    /// Opens the configured store.
    pub fn open(&self) -> Result<Arc<dyn TokenStore>, StoreError> {
        Ok(match self.kind {
            StoreKind::Keyring => Arc::new(KeyringStore::platform()),
            StoreKind::File => Arc::new(FileStore::new(self.file.clone().ok_or_else(|| {
                StoreError::Settings(
                    "--token-store file needs --token-file PATH (or HEPH_TOKEN_FILE)".into(),
                )
            })?)),
            StoreKind::Command => match (&self.load_cmd, &self.save_cmd) {
                (Some(load), Some(save)) => Arc::new(CommandStore::new(load, save)),
                _ => {
                    return Err(StoreError::Settings(
                        "--token-store command needs both --token-load-cmd and --token-save-cmd"
                            .into(),
                    ));
                }
            },
            StoreKind::Memory => Arc::new(MemoryStore::default()),
        })
    }
}

/// The config keys (and `HEPH_*` variables) of the token-store settings.
pub const STORE_KEYS: [&str; 4] = [
    "token_store",
    "token_file",
    "token_load_cmd",
    "token_save_cmd",
];

/// The token-store flags as given on a command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreFlags {
    pub store: Option<String>,
    pub file: Option<PathBuf>,
    pub load_cmd: Option<String>,
    pub save_cmd: Option<String>,
}

impl StoreConfig {
    /// Resolves the token-store settings through core's layers (flags >
    /// `HEPH_*` > config file > default `keyring`), exactly as `hephd`,
    /// `heph` and `heph-tui` all do.
    pub fn resolve(
        layers: &heph_core::config::Layers<'_>,
        flags: &StoreFlags,
    ) -> Result<heph_core::config::Setting<StoreConfig>, heph_core::config::ConfigError> {
        let kind = layers.get_or(
            "token_store",
            flags.store.clone().map(|v| ("--token-store", v)),
            "keyring",
        )?;
        let parsed = StoreKind::parse(&kind.value).map_err(|reason| {
            heph_core::config::ConfigError::Value {
                key: "token_store".into(),
                source_: kind.source.clone(),
                reason,
            }
        })?;
        let file = layers
            .get(
                "token_file",
                flags
                    .file
                    .as_ref()
                    .map(|p| ("--token-file", p.display().to_string())),
            )?
            .map(|s| PathBuf::from(s.value));
        let load_cmd = layers
            .get(
                "token_load_cmd",
                flags.load_cmd.clone().map(|v| ("--token-load-cmd", v)),
            )?
            .map(|s| s.value);
        let save_cmd = layers
            .get(
                "token_save_cmd",
                flags.save_cmd.clone().map(|v| ("--token-save-cmd", v)),
            )?
            .map(|s| s.value);
        Ok(heph_core::config::Setting {
            value: StoreConfig {
                kind: parsed,
                file,
                load_cmd,
                save_cmd,
            },
            source: kind.source,
        })
    }
}

// ---------------------------------------------------------------- memory

/// Tokens in memory only (tests).
#[derive(Default)]
pub struct MemoryStore {
    tokens: Mutex<HashMap<String, TokenSet>>,
}

impl TokenStore for MemoryStore {
    fn load(&self, hub: &HubUrl) -> Result<Option<TokenSet>, StoreError> {
        Ok(self
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(hub.as_str())
            .cloned())
    }
    fn save(&self, hub: &HubUrl, tokens: &TokenSet) -> Result<(), StoreError> {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hub.to_string(), tokens.clone());
        Ok(())
    }
    fn delete(&self, hub: &HubUrl) -> Result<bool, StoreError> {
        Ok(self
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(hub.as_str())
            .is_some())
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}

// ---------------------------------------------------------------- file

/// All hubs' tokens in one JSON file: `{"version":1,"tokens":{"<hub>":{…}}}`.
pub struct FileStore {
    path: PathBuf,
}

/// An exclusive `flock`, released when dropped (or when the process dies).
struct FileLock(File);

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: flock on a descriptor this struct owns.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl FileStore {
    /// A store in the file `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, action: &'static str) -> impl Fn(std::io::Error) -> StoreError + '_ {
        move |source| StoreError::File {
            action,
            path: self.path.clone(),
            source,
        }
    }

    fn lock_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".lock");
        p.into()
    }

    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        }
    }

    /// Takes the writers' lock (blocking until the current writer is done).
    fn lock(&self) -> Result<FileLock, StoreError> {
        let dir = self.dir();
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(self.err("create the directory of"))?;
        }
        // O_NOFOLLOW: a planted symlink must not make us create or lock
        // (or, with another flag, clobber) a file somewhere else.
        let lock_path = self.lock_path();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    StoreError::LockIsSymlink {
                        path: lock_path.clone(),
                    }
                } else {
                    self.err("create the lock file of")(e)
                }
            })?;
        loop {
            // SAFETY: flock on a descriptor we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(FileLock(file));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(self.err("lock")(e));
            }
        }
    }

    fn read_all(&self) -> Result<BTreeMap<String, serde_json::Value>, StoreError> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(self.err("open")(e)),
        };
        let mode = file
            .metadata()
            .map_err(self.err("inspect"))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(StoreError::Permissions {
                path: self.path.clone(),
            });
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(self.err("read"))?;
        #[derive(serde::Deserialize)]
        struct Doc {
            version: u32,
            #[serde(default)]
            tokens: BTreeMap<String, serde_json::Value>,
        }
        let doc: Doc = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            hub: "every hub".into(),
            store: self.describe(),
            reason: sanitized(e),
        })?;
        if doc.version != 1 {
            return Err(StoreError::Corrupt {
                hub: "every hub".into(),
                store: self.describe(),
                reason: format!(
                    "format version {} is not one this heph reads (1)",
                    doc.version
                ),
            });
        }
        Ok(doc.tokens)
    }

    /// Writes the whole file atomically: a private temp file with an
    /// unpredictable name (created with `O_EXCL`, mode 0600), fsync, rename
    /// over the file, fsync the directory. A failed write leaves no temp file.
    fn write_all(&self, tokens: &BTreeMap<String, serde_json::Value>) -> Result<(), StoreError> {
        let text = serde_json::to_vec_pretty(&serde_json::json!({"version": 1, "tokens": tokens}))
            .unwrap_or_default();
        let name = self
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("tokens");
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .permissions(fs::Permissions::from_mode(0o600))
            .tempfile_in(self.dir())
            .map_err(self.err("create a temporary file beside"))?;
        (|| {
            tmp.write_all(&text)?;
            tmp.as_file().sync_all()
        })()
        .map_err(self.err("write"))?;
        tmp.persist(&self.path)
            .map_err(|e| self.err("replace")(e.error))?;
        File::open(self.dir())
            .and_then(|d| d.sync_all())
            .map_err(self.err("sync the directory of"))
    }

    fn update(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, serde_json::Value>) -> bool,
    ) -> Result<bool, StoreError> {
        let _lock = self.lock()?;
        let mut all = self.read_all()?;
        let changed = change(&mut all);
        if changed {
            self.write_all(&all)?;
        }
        Ok(changed)
    }
}

impl TokenStore for FileStore {
    fn load(&self, hub: &HubUrl) -> Result<Option<TokenSet>, StoreError> {
        // The rename makes every read see a whole file: no lock needed.
        match self.read_all()?.remove(hub.as_str()) {
            None => Ok(None),
            Some(v) => {
                TokenSet::from_store_value(v)
                    .map(Some)
                    .map_err(|reason| StoreError::Corrupt {
                        hub: hub.to_string(),
                        store: self.describe(),
                        reason,
                    })
            }
        }
    }
    fn save(&self, hub: &HubUrl, tokens: &TokenSet) -> Result<(), StoreError> {
        self.update(|all| {
            all.insert(hub.to_string(), tokens.to_store_value());
            true
        })
        .map(|_| ())
    }
    fn delete(&self, hub: &HubUrl) -> Result<bool, StoreError> {
        self.update(|all| all.remove(hub.as_str()).is_some())
    }
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

// ---------------------------------------------------------------- command

/// An external command pair.
pub struct CommandStore {
    load_cmd: String,
    save_cmd: String,
}

impl CommandStore {
    pub fn new(load_cmd: &str, save_cmd: &str) -> Self {
        Self {
            load_cmd: load_cmd.to_owned(),
            save_cmd: save_cmd.to_owned(),
        }
    }

    /// Runs `sh -c cmd` with the hub and action in its environment, feeding
    /// `input` on stdin; returns its stdout.
    fn run(
        &self,
        flag: &'static str,
        cmd: &str,
        action: &str,
        hub: &HubUrl,
        input: &str,
    ) -> Result<String, StoreError> {
        let fail = |outcome: String| StoreError::Command { flag, outcome };
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .env("HEPH_HUB_URL", hub.as_str())
            .env("HEPH_TOKEN_ACTION", action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| fail(format!("cannot start: {e}")))?;
        let mut stdin = child.stdin.take();
        let input = input.to_owned();
        let writer = std::thread::spawn(move || {
            if let Some(s) = stdin.as_mut() {
                let _ = s.write_all(input.as_bytes());
            }
        });
        let mut stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(s) = stdout.as_mut() {
                let _ = s.take(4 * 1024 * 1024).read_to_end(&mut out);
            }
            out
        });
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() >= COMMAND_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail(format!(
                        "did not finish within {} s and was stopped",
                        COMMAND_TIMEOUT.as_secs()
                    )));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(fail(format!("cannot be waited for: {e}"))),
            }
        };
        let _ = writer.join();
        let out = reader.join().unwrap_or_default();
        if !status.success() {
            return Err(fail(format!("failed ({status})")));
        }
        String::from_utf8(out).map_err(|_| fail("printed something that is not UTF-8".into()))
    }
}

impl TokenStore for CommandStore {
    fn load(&self, hub: &HubUrl) -> Result<Option<TokenSet>, StoreError> {
        let out = self.run("--token-load-cmd", &self.load_cmd, "load", hub, "")?;
        if out.trim().is_empty() {
            return Ok(None);
        }
        TokenSet::from_store_json(&out)
            .map(Some)
            .map_err(|reason| StoreError::Corrupt {
                hub: hub.to_string(),
                store: self.describe(),
                reason,
            })
    }
    fn save(&self, hub: &HubUrl, tokens: &TokenSet) -> Result<(), StoreError> {
        let json = tokens.to_store_json();
        self.run(
            "--token-save-cmd",
            &self.save_cmd,
            "save",
            hub,
            json.expose(),
        )
        .map(|_| ())
    }
    fn delete(&self, hub: &HubUrl) -> Result<bool, StoreError> {
        let had = self.load(hub)?.is_some();
        self.run("--token-save-cmd", &self.save_cmd, "delete", hub, "")?;
        Ok(had)
    }
    fn describe(&self) -> String {
        "command".into()
    }
}

// ---------------------------------------------------------------- keyring

type Opener = dyn Fn() -> keyring_core::Result<Arc<keyring_core::CredentialStore>> + Send + Sync;

/// The OS keyring through `keyring-core`, every call under a timeout.
pub struct KeyringStore {
    open: Arc<Opener>,
    timeout: Duration,
    store: Arc<Mutex<Option<Arc<keyring_core::CredentialStore>>>>,
}

fn keyring_error(e: keyring_core::Error) -> StoreError {
    use keyring_core::Error as K;
    #[cfg(target_os = "macos")]
    let e = keychain::classify(e);
    match e {
        K::NoStorageAccess(p) => StoreError::KeyringLocked {
            reason: p.to_string(),
        },
        K::PlatformFailure(p) => StoreError::KeyringUnavailable {
            reason: p.to_string(),
        },
        // Never print the bytes these carry.
        K::BadEncoding(_) | K::BadDataFormat(..) => StoreError::KeyringUnavailable {
            reason: "the stored entry is not readable text".into(),
        },
        other => StoreError::KeyringUnavailable {
            reason: other.to_string(),
        },
    }
}

impl KeyringStore {
    /// The platform's keyring (Secret Service on Linux, the login keychain on macOS).
    pub fn platform() -> Self {
        Self::with_opener(Arc::new(platform_store), KEYRING_TIMEOUT)
    }

    /// A store on an explicit keyring-core store (tests: `mock::Store`).
    pub fn on(store: Arc<keyring_core::CredentialStore>) -> Self {
        Self::with_opener(Arc::new(move || Ok(store.clone())), KEYRING_TIMEOUT)
    }

    /// A store whose keyring is opened by `open`, each call limited to `timeout`.
    pub fn with_opener(open: Arc<Opener>, timeout: Duration) -> Self {
        Self {
            open,
            timeout,
            store: Arc::new(Mutex::new(None)),
        }
    }

    /// Runs `f` on the entry for `hub` on another thread, giving up after the timeout.
    fn call<T: Send + 'static>(
        &self,
        hub: &HubUrl,
        f: impl FnOnce(&keyring_core::Entry) -> keyring_core::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let open = self.open.clone();
        let cache = self.store.clone();
        let user = hub.to_string();
        std::thread::spawn(move || {
            let result = (|| {
                let cached = cache.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let store = match cached {
                    Some(s) => s,
                    None => {
                        let s = open()?;
                        *cache.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.clone());
                        s
                    }
                };
                let entry = keyring_core::Entry::new_in_store(&store, KEYRING_SERVICE, &user)?;
                f(&entry)
            })();
            let _ = tx.send(result);
        });
        match rx.recv_timeout(self.timeout) {
            Ok(r) => r.map_err(keyring_error),
            Err(_) => Err(StoreError::KeyringTimeout {
                secs: self.timeout.as_secs().max(1),
            }),
        }
    }
}

#[cfg(target_os = "linux")]
fn platform_store() -> keyring_core::Result<Arc<keyring_core::CredentialStore>> {
    let store: Arc<keyring_core::CredentialStore> =
        dbus_secret_service_keyring_store::Store::new()?;
    Ok(store)
}

#[cfg(target_os = "macos")]
fn platform_store() -> keyring_core::Result<Arc<keyring_core::CredentialStore>> {
    keychain::open()
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn platform_store() -> keyring_core::Result<Arc<keyring_core::CredentialStore>> {
    Err(keyring_core::Error::NotSupportedByStore(
        "this build of heph has no keyring store for this platform".into(),
    ))
}

impl TokenStore for KeyringStore {
    fn load(&self, hub: &HubUrl) -> Result<Option<TokenSet>, StoreError> {
        let got = self.call(hub, |e| match e.get_password() {
            Ok(p) => Ok(Some(p)),
            Err(keyring_core::Error::NoEntry) => Ok(None),
            Err(e) => Err(e),
        })?;
        match got {
            None => Ok(None),
            Some(text) => TokenSet::from_store_json(&text)
                .map(Some)
                .map_err(|reason| StoreError::Corrupt {
                    hub: hub.to_string(),
                    store: self.describe(),
                    reason,
                }),
        }
    }
    fn save(&self, hub: &HubUrl, tokens: &TokenSet) -> Result<(), StoreError> {
        let json = tokens.to_store_json();
        self.call(hub, move |e| e.set_password(json.expose()))
    }
    fn delete(&self, hub: &HubUrl) -> Result<bool, StoreError> {
        self.call(hub, |e| match e.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring_core::Error::NoEntry) => Ok(false),
            Err(e) => Err(e),
        })
    }
    fn describe(&self) -> String {
        "keyring".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{AccessToken, RefreshToken};

    fn tokens(n: u32) -> TokenSet {
        TokenSet {
            access_token: AccessToken::new(format!("at-SECRET-{n}")),
            refresh_token: Some(RefreshToken::new(format!("rt-SECRET-{n}"))),
            expires_at_ms: Some(u64::from(n)),
            issuer: "http://127.0.0.1:1/".into(),
            client_id: "heph".into(),
            subject: Some("alice".into()),
            username: None,
            scope: None,
        }
    }

    fn hub(n: u32) -> HubUrl {
        HubUrl::parse(&format!("http://127.0.0.1:{}/", 7000 + n)).unwrap()
    }

    /// The behaviour every store shares.
    fn conformance(store: &dyn TokenStore) {
        assert!(store.load(&hub(1)).unwrap().is_none());
        store.save(&hub(1), &tokens(1)).unwrap();
        store.save(&hub(2), &tokens(2)).unwrap();
        // Keyed by the normalized URL: another spelling finds the same entry.
        let again = HubUrl::parse("HTTP://127.0.0.1:7001").unwrap();
        assert_eq!(store.load(&again).unwrap(), Some(tokens(1)));
        store.save(&hub(1), &tokens(3)).unwrap();
        assert_eq!(store.load(&hub(1)).unwrap(), Some(tokens(3)));
        assert_eq!(store.load(&hub(2)).unwrap(), Some(tokens(2)));
        assert!(store.delete(&hub(1)).unwrap());
        assert!(!store.delete(&hub(1)).unwrap());
        assert!(store.load(&hub(1)).unwrap().is_none());
        assert_eq!(store.load(&hub(2)).unwrap(), Some(tokens(2)));
    }

    #[test]
    fn memory_store_conforms() {
        conformance(&MemoryStore::default());
    }

    #[test]
    fn file_store_conforms_with_mode_0600_and_no_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/tokens.json");
        let store = FileStore::new(&path);
        conformance(&store);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        let names: Vec<String> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains(".tmp")), "{names:?}");
    }

    #[test]
    fn a_symlinked_lock_file_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let lock = dir.path().join("tokens.json.lock");
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep me").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&victim, &lock).unwrap();
        let store = FileStore::new(&path);
        let err = store.save(&hub(1), &tokens(1)).unwrap_err();
        assert!(matches!(err, StoreError::LockIsSymlink { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "the token lock file {} is a symbolic link, which heph never creates; remove it (rm {}) and check who can write to its directory",
                lock.display(),
                lock.display()
            )
        );
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
        assert_eq!(
            fs::metadata(&victim).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert!(!path.exists(), "nothing was saved");
        // A dangling symlink is not followed to create its target either.
        let elsewhere = dir.path().join("created-elsewhere");
        fs::remove_file(&lock).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &lock).unwrap();
        assert!(matches!(
            store.delete(&hub(1)),
            Err(StoreError::LockIsSymlink { .. })
        ));
        assert!(!elsewhere.exists());
    }

    #[test]
    fn planted_temp_paths_neither_redirect_nor_block_a_save() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep me").unwrap();
        // The temp names an earlier version used: `.tokens.json.tmp-<pid>`.
        // One is a symlink to the victim, one a directory that cannot be
        // removed with remove_file (as another user's file in a sticky
        // directory could not): the old code failed every save on it.
        let old_name = dir
            .path()
            .join(format!(".tokens.json.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &old_name).unwrap();
        let store = FileStore::new(&path);
        store.save(&hub(1), &tokens(1)).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
        let _ = fs::remove_file(&old_name);
        let planted_dir = old_name;
        fs::create_dir(&planted_dir).unwrap();
        fs::write(planted_dir.join("x"), "").unwrap();
        store.save(&hub(2), &tokens(2)).unwrap();
        assert_eq!(store.load(&hub(1)).unwrap(), Some(tokens(1)));
        assert_eq!(store.load(&hub(2)).unwrap(), Some(tokens(2)));
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(
            meta.file_type().is_file(),
            "the token file is a regular file"
        );
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(planted_dir.join("x").exists());
    }

    #[test]
    fn file_store_refuses_a_file_others_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let store = FileStore::new(&path);
        store.save(&hub(1), &tokens(1)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = store.load(&hub(1)).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("run: chmod 600 {}", path.display())),
            "{err}"
        );
    }

    #[test]
    fn file_store_writers_take_turns_and_readers_see_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        FileStore::new(&path).save(&hub(0), &tokens(0)).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                let store = FileStore::new(&path);
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Every read sees a complete, parseable file.
                    assert!(store.load(&hub(0)).unwrap().is_some());
                    reads += 1;
                }
                reads
            })
        };
        // Separate stores (as separate processes would be) writing different hubs:
        // without the lock, read-modify-write would lose entries.
        let writers: Vec<_> = (1..=4)
            .map(|w| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let store = FileStore::new(&path);
                    for i in 0..25 {
                        store.save(&hub(w * 100 + i), &tokens(i)).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        let store = FileStore::new(&path);
        for w in 1..=4 {
            for i in 0..25 {
                assert_eq!(
                    store.load(&hub(w * 100 + i)).unwrap(),
                    Some(tokens(i)),
                    "{w}/{i}"
                );
            }
        }
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"version\": 1"));
    }

    #[test]
    fn command_store_pipes_tokens_on_stdin_never_argv() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        // Files named after the action and hub port; the argv log proves no token was passed.
        let save = format!(
            r#"echo "$0 $*" >> {d}/argv; f={d}/$(echo "$HEPH_HUB_URL" | tr -c 'a-z0-9' _); if [ "$HEPH_TOKEN_ACTION" = delete ]; then rm -f "$f"; else cat > "$f"; fi"#
        );
        let load = format!(
            r#"echo "$0 $*" >> {d}/argv; f={d}/$(echo "$HEPH_HUB_URL" | tr -c 'a-z0-9' _); [ -f "$f" ] && cat "$f"; true"#
        );
        let store = CommandStore::new(&load, &save);
        conformance(&store);
        let argv = fs::read_to_string(dir.path().join("argv")).unwrap();
        assert!(!argv.contains("SECRET"), "{argv}");
        // A failing command is an error naming its flag; stdout garbage is corrupt, not quoted.
        let err = CommandStore::new("exit 3", "true")
            .load(&hub(1))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the token command --token-load-cmd failed"),
            "{err}"
        );
        let err = CommandStore::new("echo '{\"access_token\": 5, \"x\": \"at-SECRET\"}'", "true")
            .load(&hub(1))
            .unwrap_err();
        assert!(
            !err.to_string().contains("SECRET") && err.to_string().contains("cannot be read"),
            "{err}"
        );
    }

    #[test]
    fn keyring_store_conforms_on_the_mock_and_maps_errors() {
        let mock = keyring_core::mock::Store::new().unwrap();
        let store = KeyringStore::on(mock.clone());
        conformance(&store);
        // A locked keyring: the mock fails the next call on this entry.
        store.save(&hub(5), &tokens(5)).unwrap();
        let entry = keyring_core::Entry::new_in_store(
            &(mock.clone() as Arc<keyring_core::CredentialStore>),
            KEYRING_SERVICE,
            hub(5).as_str(),
        )
        .unwrap();
        let cred: &keyring_core::mock::Cred = entry.as_any().downcast_ref().unwrap();
        cred.set_error(keyring_core::Error::NoStorageAccess(
            "collection is locked".into(),
        ));
        let err = store.load(&hub(5)).unwrap_err();
        assert!(matches!(err, StoreError::KeyringLocked { .. }), "{err:?}");
        assert!(err.to_string().contains("--token-store file"), "{err}");
        // The error was consumed: the entry is intact.
        assert_eq!(store.load(&hub(5)).unwrap(), Some(tokens(5)));
        // Bad bytes are never printed.
        cred.set_error(keyring_core::Error::BadEncoding(b"at-SECRET".to_vec()));
        let err = store.load(&hub(5)).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("SECRET"), "{err:?}");
    }

    #[test]
    fn a_hanging_keyring_times_out_naming_the_file_store() {
        let store = KeyringStore::with_opener(
            Arc::new(|| {
                // What a Secret Service with no session bus may do.
                std::thread::sleep(Duration::from_secs(30));
                Err(keyring_core::Error::NoStorageAccess("never".into()))
            }),
            Duration::from_millis(200),
        );
        let started = Instant::now();
        let err = store.load(&hub(1)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(err, StoreError::KeyringTimeout { .. }), "{err:?}");
        assert!(err.is_keyring());
        assert!(err.to_string().contains("use --token-store file"), "{err}");
    }

    #[test]
    fn store_settings_resolve_through_the_layers() {
        use heph_core::config::{Layers, Source};
        let env = |k: &str| match k {
            "HEPH_TOKEN_STORE" => Some("file".to_owned()),
            "HEPH_TOKEN_FILE" => Some("/env/t.json".to_owned()),
            _ => None,
        };
        let file = "token_store = \"command\"\ntoken_load_cmd = \"pass show heph\"\n";
        let layers = Layers::new(&env, Some((Path::new("/c.toml"), file))).unwrap();
        let s = StoreConfig::resolve(&layers, &StoreFlags::default()).unwrap();
        assert_eq!(s.value.kind, StoreKind::File);
        assert_eq!(s.source, Source::Env("HEPH_TOKEN_STORE".into()));
        assert_eq!(s.value.file.as_deref(), Some(Path::new("/env/t.json")));
        assert_eq!(s.value.load_cmd.as_deref(), Some("pass show heph"));
        let flags = StoreFlags {
            store: Some("memory".into()),
            ..StoreFlags::default()
        };
        assert_eq!(
            StoreConfig::resolve(&layers, &flags).unwrap().value.kind,
            StoreKind::Memory
        );
        let none = |_: &str| None;
        let layers = Layers::new(&none, None).unwrap();
        let s = StoreConfig::resolve(&layers, &StoreFlags::default()).unwrap();
        assert_eq!(
            (s.value.kind, s.source),
            (StoreKind::Keyring, Source::Default)
        );
        let bad = StoreFlags {
            store: Some("vault".into()),
            ..StoreFlags::default()
        };
        let err = StoreConfig::resolve(&layers, &bad).unwrap_err();
        assert!(
            err.to_string().contains("token_store (flag --token-store)"),
            "{err}"
        );
    }

    #[test]
    fn store_config_opens_what_it_names() {
        let cfg = |kind, file: Option<&str>| StoreConfig {
            kind,
            file: file.map(PathBuf::from),
            load_cmd: None,
            save_cmd: None,
        };
        assert_eq!(
            cfg(StoreKind::File, Some("/t.json"))
                .open()
                .unwrap()
                .describe(),
            "file /t.json"
        );
        let Err(err) = cfg(StoreKind::File, None).open() else {
            panic!()
        };
        assert!(err.to_string().contains("needs --token-file"), "{err}");
        let Err(err) = cfg(StoreKind::Command, None).open() else {
            panic!()
        };
        assert!(
            err.to_string()
                .contains("--token-load-cmd and --token-save-cmd"),
            "{err}"
        );
        assert_eq!(StoreKind::parse("Keyring"), Ok(StoreKind::Keyring));
        assert!(StoreKind::parse("vault").is_err());
    }
}
