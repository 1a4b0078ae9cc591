//! `heph-auth`: signing in to a hub's identity provider and keeping the
//! tokens (DESIGN §7.2). Blocking, with no async runtime, so the `heph`
//! command line uses it directly and the daemon calls it through
//! `spawn_blocking`.
//!
//! - [`secret`] — the secret newtypes: `Debug` and `Display` print
//!   `[redacted]`, and none of them is `Serialize`.
//! - [`tokens`] — [`TokenSet`] (what a sign-in yields) and [`TokenInfo`]
//!   (the same without secrets, safe to print and serialize).
//! - [`oidc`] — the OpenID Connect client over `ureq`: discovery, the device
//!   authorization grant (RFC 8628), refresh, revocation (RFC 7009), and the
//!   hub's protected-resource metadata (RFC 9728). Time enters only through
//!   [`Pace`], so the polling rules are tested without real waits.
//! - [`error`] — failures classified as `Unreachable`, `Rejected` or
//!   `Other`, never collapsed.
//! - [`store`] — token stores keyed by the normalized hub URL: OS keyring
//!   (with a timeout), JSON file (0600, atomic, locked), an external command
//!   pair, memory.
//! - [`health`] — the typed auth state of a spoke, each state with its
//!   sentence and the command that fixes it.
//!
//! This crate never logs and never puts a secret in an error message.

pub mod error;
pub mod health;
pub mod oidc;
pub mod secret;
pub mod store;
pub mod tokens;

#[cfg(test)]
mod fake;

pub use error::{AuthError, ErrorClass, LoginError};
pub use health::{Health, LoginCommand};
/// The keyring API, for tests that build a failing keyring.
pub use keyring_core;
pub use oidc::{
    DeviceAuthorization, OidcClient, Pace, Provider, Refreshed, Revocation, SystemPace,
};
pub use secret::{AccessToken, DeviceCode, RefreshToken, StoreJson};
pub use store::{StoreConfig, StoreError, StoreFlags, StoreKind, TokenStore};
pub use tokens::{TokenInfo, TokenSet};

/// Installs aws-lc-rs as the process's rustls provider (the only one built
/// in); `ureq` uses the process default. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The refresh margin: tokens are refreshed this long before they expire.
pub const REFRESH_SKEW_MS: u64 = 30_000;

/// Unix milliseconds now, from the system clock.
pub fn system_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
