//! The OAuth side of the built-in issuer: what each endpoint decides.
//!
//! [`Issuer`] turns requests into answers — a device authorization
//! (RFC 8628 §3.2), tokens for an approved device code or a refresh token
//! (RFC 6749 §5, rotation with reuse detection), revocation (RFC 7009),
//! the discovery document and the JWKS — and runs sign-in for the
//! verification page (Argon2id, rate limits, no account oracle). Every
//! refusal is an [`OAuthError`] with the RFC's `error` code. It owns no
//! HTTP (see [`routes`](super::routes) and [`page`](super::page)); the
//! state lives in [`store`](super::store), reached on a blocking thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use heph_core::hlc::Clock;
use serde::Serialize;
use serde_json::{Value, json};

use super::keys::random_token;
use super::limiter::{Budget, Limiter};
use super::passwords::{self, Check};
use super::store::{
    Account, DeviceInsert, DevicePoll, DeviceState, Family, IssuerStore, IssuerStoreError,
    RefreshUse,
};

/// The OAuth grant type of the device flow.
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Scopes the issuer grants.
pub const SUPPORTED_SCOPES: &[&str] = &["openid", "offline_access", "profile"];
/// Letters of user codes: no vowels (no words), no look-alikes (RFC 8628 §6.1).
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

/// The default absolute lifetime of a sign-in (90 days).
pub const DEFAULT_SIGN_IN_LIFETIME_SECS: u64 = 90 * 86_400;
/// How long an expired device code is kept, so that a late poll hears
/// `expired_token` rather than `invalid_grant`.
const EXPIRED_DEVICE_GRACE_MS: i64 = 15 * 60_000;
/// Device codes deleted per sweep transaction.
const PRUNE_BATCH: u32 = 500;

/// The built-in issuer's settings.
#[derive(Debug, Clone)]
pub struct IssuerSettings {
    /// The issuer URL (the hub's public URL, no trailing slash).
    pub issuer: String,
    /// The audience of access tokens (the hub).
    pub audience: String,
    /// The one client: public, no secret.
    pub client_id: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub device_ttl: Duration,
    pub poll_interval: Duration,
    /// The absolute lifetime of a sign-in: its refresh tokens stop working
    /// this long after the device was approved, however often they rotate.
    pub sign_in_lifetime: Duration,
    /// The most unexpired device authorizations kept at once.
    pub max_live_device_codes: u32,
    /// Device authorizations per client address per minute.
    pub device_codes_per_minute: u32,
    /// The reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: super::proxy::TrustedProxies,
}

impl IssuerSettings {
    /// Defaults for an issuer at `url`.
    pub fn new(url: &str) -> Self {
        let url = url.trim_end_matches('/').to_owned();
        Self {
            audience: url.clone(),
            issuer: url,
            client_id: "heph".into(),
            access_ttl: Duration::from_secs(600),
            refresh_ttl: Duration::from_secs(30 * 86_400),
            device_ttl: Duration::from_secs(600),
            poll_interval: Duration::from_secs(5),
            sign_in_lifetime: Duration::from_secs(DEFAULT_SIGN_IN_LIFETIME_SECS),
            max_live_device_codes: 10_000,
            device_codes_per_minute: 20,
            trusted_proxies: super::proxy::TrustedProxies::default(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}

/// A refusal in RFC 6749 §5.2 terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {description}")]
pub struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
    /// When to try again (sent as `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl OAuthError {
    pub fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            retry_after: None,
        }
    }
    fn grant(description: impl Into<String>) -> Self {
        Self::new(400, "invalid_grant", description)
    }
    fn server(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "the built-in issuer failed");
        Self::new(
            500,
            "server_error",
            "the issuer could not complete the request; see the hub's log",
        )
    }
}

/// What the device authorization endpoint answers.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceGrant {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: u64,
    pub interval: u64,
}

/// What the token endpoint answers.
#[derive(Clone, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Why a sign-in on the verification page failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInError {
    /// Unknown user or wrong password: the same answer for both.
    Wrong,
    Disabled,
    RateLimited(Duration),
    Unavailable,
}

/// A code shown on the verification page before approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCode {
    pub user_code: String,
    pub client_id: String,
    pub scope: String,
}

/// The built-in issuer.
pub struct Issuer {
    pub settings: IssuerSettings,
    store: Arc<Mutex<IssuerStore>>,
    clock: Arc<dyn Clock>,
    limits: SignInLimits,
    device_per_address: Limiter,
    /// Until when (ms) the live device codes are known to be at their cap:
    /// a flood past the cap is refused without touching the store.
    device_full_until_ms: AtomicU64,
}

/// The sign-in limits (docs/decisions.md, 2026-12-02): a stranger cannot
/// lock a chosen account from one address, since the tight limit is per
/// (account, address) pair; the per-account limit is looser and needs
/// many addresses to reach; the per-address limit stops one address from
/// trying many accounts.
struct SignInLimits {
    /// Five wrong guesses per account from one address per 15 minutes.
    pair: Limiter,
    /// Fifty per account per hour, from all addresses together.
    account: Limiter,
    /// Thirty per address per 10 minutes (a household behind one NAT).
    address: Limiter,
}

impl SignInLimits {
    fn new(max_keys: usize) -> Self {
        let budget = |attempts, secs| Budget {
            attempts,
            window: Duration::from_secs(secs),
        };
        Self {
            pair: Limiter::with_capacity(budget(5, 900), max_keys),
            account: Limiter::with_capacity(budget(50, 3_600), max_keys),
            address: Limiter::with_capacity(budget(30, 600), max_keys),
        }
    }
}

impl Issuer {
    pub fn new(settings: IssuerSettings, store: IssuerStore, clock: Arc<dyn Clock>) -> Self {
        Self::with_limiter_capacity(settings, store, clock, super::limiter::MAX_KEYS)
    }

    /// [`new`](Self::new) with rate-limit tables of `max_keys` keys each
    /// (a small table lets a test fill it).
    pub fn with_limiter_capacity(
        settings: IssuerSettings,
        store: IssuerStore,
        clock: Arc<dyn Clock>,
        max_keys: usize,
    ) -> Self {
        let device_per_address = Limiter::with_capacity(
            Budget {
                attempts: settings.device_codes_per_minute.max(1),
                window: Duration::from_secs(60),
            },
            max_keys,
        );
        Self {
            settings,
            store: Arc::new(Mutex::new(store)),
            clock,
            limits: SignInLimits::new(max_keys),
            device_per_address,
            device_full_until_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms() as i64
    }

    /// Runs `f` on the store on a blocking thread.
    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut IssuerStore) -> Result<T, IssuerStoreError> + Send + 'static,
    ) -> Result<T, OAuthError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = store.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut s)
        })
        .await
        .map_err(OAuthError::server)?
        .map_err(OAuthError::server)
    }

    /// The rate-limit key of the client that sent a request (see
    /// [`proxy`](super::proxy)).
    pub fn client_key(
        &self,
        headers: &axum::http::HeaderMap,
        peer: Option<std::net::SocketAddr>,
    ) -> String {
        super::proxy::rate_key(self.settings.trusted_proxies.client(headers, peer))
    }

    /// The OpenID discovery document.
    pub fn discovery(&self) -> Value {
        let s = &self.settings;
        json!({
            "issuer": s.issuer,
            "jwks_uri": s.url("/oauth/jwks"),
            "device_authorization_endpoint": s.url("/oauth/device_authorization"),
            "token_endpoint": s.url("/oauth/token"),
            "revocation_endpoint": s.url("/oauth/revoke"),
            "grant_types_supported": [DEVICE_GRANT, "refresh_token"],
            "response_types_supported": ["none"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": SUPPORTED_SCOPES,
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "preferred_username"],
        })
    }

    /// The published keys (current and recently retired).
    pub async fn jwks(&self) -> Result<Value, OAuthError> {
        let now = self.now_ms();
        let keep = retired_key_keep_ms(self.settings.access_ttl);
        let keys = self
            .with_store(move |s| {
                s.signing_key(now)?;
                s.published_jwks(now, keep)
            })
            .await?;
        Ok(json!({ "keys": keys }))
    }

    fn check_client(&self, client_id: Option<&str>) -> Result<(), OAuthError> {
        match client_id {
            Some(c) if c == self.settings.client_id => Ok(()),
            Some(c) => Err(OAuthError::new(
                401,
                "invalid_client",
                format!(
                    "this issuer knows only the client {:?}, not {c:?}",
                    self.settings.client_id
                ),
            )),
            None => Err(OAuthError::new(
                400,
                "invalid_request",
                "client_id is missing",
            )),
        }
    }

    fn check_scope(scope: Option<&str>) -> Result<String, OAuthError> {
        let scope = scope.unwrap_or("openid offline_access");
        let mut out: Vec<&str> = Vec::new();
        for s in scope.split_whitespace() {
            if !SUPPORTED_SCOPES.contains(&s) {
                return Err(OAuthError::new(
                    400,
                    "invalid_scope",
                    format!(
                        "the scope {s:?} is not offered; use {}",
                        SUPPORTED_SCOPES.join(" ")
                    ),
                ));
            }
            if !out.contains(&s) {
                out.push(s);
            }
        }
        Ok(out.join(" "))
    }

    /// The device authorization endpoint, for a client at `address` (a
    /// rate-limit key, see [`proxy`](super::proxy)). Each address gets
    /// [`IssuerSettings::device_codes_per_minute`]; past it, 429
    /// `slow_down` before any store work. At most
    /// [`IssuerSettings::max_live_device_codes`] live codes exist at once;
    /// past that, 503 `temporarily_unavailable`.
    pub async fn authorize_device(
        &self,
        client_id: Option<&str>,
        scope: Option<&str>,
        address: &str,
    ) -> Result<DeviceGrant, OAuthError> {
        if let Err(refused) = self
            .device_per_address
            .attempt(&format!("device:{address}"), self.clock.now_ms())
        {
            let after = refused.retry_after();
            return Err(OAuthError {
                retry_after: Some(after),
                ..OAuthError::new(
                    429,
                    "slow_down",
                    format!(
                        "too many device authorizations from this address; try again in {} s",
                        after.as_secs()
                    ),
                )
            });
        }
        self.check_client(client_id)?;
        let scope = Self::check_scope(scope)?;
        let full = || OAuthError {
            retry_after: Some(Duration::from_secs(60)),
            ..OAuthError::new(
                503,
                "temporarily_unavailable",
                "too many sign-ins are pending on this hub; try again in a minute",
            )
        };
        if self.clock.now_ms() < self.device_full_until_ms.load(Ordering::Relaxed) {
            return Err(full());
        }
        let device_code = random_token(32);
        let user_code = new_user_code();
        let now = self.now_ms();
        let ttl = self.settings.device_ttl;
        let interval = self.settings.poll_interval.as_secs().max(1);
        let client = self.settings.client_id.clone();
        let (dc, uc) = (device_code.clone(), normalize_user_code(&user_code));
        let max_live = self.settings.max_live_device_codes;
        let inserted = self
            .with_store(move |s| {
                s.insert_device(
                    &dc,
                    &uc,
                    &client,
                    &scope,
                    now,
                    now + ttl.as_millis() as i64,
                    interval as i64,
                    max_live,
                )
            })
            .await?;
        if inserted == DeviceInsert::Full {
            // Counted again in a second at the earliest.
            self.device_full_until_ms
                .store(self.clock.now_ms() + 1_000, Ordering::Relaxed);
            tracing::warn!(
                max_live,
                "refused a device authorization: the most live device codes the issuer keeps are pending"
            );
            return Err(full());
        }
        Ok(DeviceGrant {
            device_code,
            verification_uri: self.settings.url("/device"),
            verification_uri_complete: self.settings.url(&format!("/device?user_code={user_code}")),
            user_code,
            expires_in: ttl.as_secs(),
            interval,
        })
    }

    /// The token endpoint, for the device grant.
    pub async fn exchange_device_code(
        &self,
        client_id: Option<&str>,
        device_code: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        self.check_client(client_id)?;
        let Some(device_code) = device_code.map(str::to_owned) else {
            return Err(OAuthError::new(
                400,
                "invalid_request",
                "device_code is missing",
            ));
        };
        let now = self.now_ms();
        let dc = device_code.clone();
        let Some(DevicePoll {
            row,
            family,
            revoked_family,
        }) = self.with_store(move |s| s.poll_device(&dc, now)).await?
        else {
            return Err(OAuthError::grant(
                "the device code is not one this issuer gave out",
            ));
        };
        if revoked_family {
            tracing::warn!(sub = ?row.sub, "a device code was presented again after it was exchanged: revoked the sign-in it gave");
        }
        // An approved code must also be exchanged before it expires: a
        // device that comes back later starts again.
        if row.expires_ms <= now {
            return Err(OAuthError::new(
                400,
                "expired_token",
                "the device code has expired; start the sign-in again",
            ));
        }
        match row.state {
            DeviceState::Pending => {
                let too_soon = row
                    .last_poll_ms
                    .is_some_and(|last| now - last < row.interval_s * 1000 - 200);
                if too_soon {
                    let slower = row.interval_s + 5;
                    self.with_store(move |s| s.slow_device(&device_code, slower))
                        .await?;
                    return Err(OAuthError::new(
                        400,
                        "slow_down",
                        format!(
                            "polling faster than every {} s; wait {slower} s between polls",
                            row.interval_s
                        ),
                    ));
                }
                Err(OAuthError::new(
                    400,
                    "authorization_pending",
                    "the code has not been approved yet",
                ))
            }
            DeviceState::Denied => Err(OAuthError::new(
                400,
                "access_denied",
                "the sign-in was denied on the verification page",
            )),
            DeviceState::Used => Err(OAuthError::grant(
                "the device code was already exchanged for tokens",
            )),
            DeviceState::Approved => {
                let sub = row.sub.unwrap_or_default();
                let family = Family {
                    family: family.unwrap_or_else(|| random_token(12)),
                    sub,
                    client_id: row.client_id,
                    scope: row.scope,
                    auth_time_ms: row.auth_time_ms.unwrap_or(now),
                };
                self.issue(family, None).await
            }
        }
    }

    /// The token endpoint, for the refresh grant: rotates the token.
    pub async fn refresh(
        &self,
        client_id: Option<&str>,
        refresh_token: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        self.check_client(client_id)?;
        let Some(token) = refresh_token.map(str::to_owned) else {
            return Err(OAuthError::new(
                400,
                "invalid_request",
                "refresh_token is missing",
            ));
        };
        let now = self.now_ms();
        let ttl = self.settings.refresh_ttl.as_millis() as i64;
        let max_age = self.settings.sign_in_lifetime.as_millis() as i64;
        match self
            .with_store(move |s| s.use_refresh(&token, now, ttl, max_age))
            .await?
        {
            RefreshUse::Rotated { family, new_token } => self.issue(family, Some(new_token)).await,
            RefreshUse::Reused { family } => {
                tracing::warn!(sub = %family.sub, "a spent refresh token was presented again: revoked every token of that sign-in");
                Err(OAuthError::grant(
                    "the refresh token was already used once, so every token of this sign-in is now revoked; sign in again",
                ))
            }
            RefreshUse::Revoked => Err(OAuthError::grant(
                "the refresh token has been revoked; sign in again",
            )),
            RefreshUse::Expired => Err(OAuthError::grant(
                "the refresh token has expired; sign in again",
            )),
            RefreshUse::SignInTooOld => Err(OAuthError::grant(format!(
                "this sign-in is older than {} days, the most a sign-in lasts on this hub; sign in again",
                self.settings.sign_in_lifetime.as_secs() / 86_400
            ))),
            RefreshUse::Unknown => Err(OAuthError::grant(
                "the refresh token is not one this issuer gave out",
            )),
        }
    }

    /// Signs the tokens of `family`; a new family's first refresh token is
    /// created here, a rotated one arrives as `rotated`.
    async fn issue(
        &self,
        family: Family,
        rotated: Option<String>,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.now_ms();
        let offline = family
            .scope
            .split_whitespace()
            .any(|s| s == "offline_access");
        let ttl = self.settings.refresh_ttl.as_millis() as i64;
        // One trip to the store: the account, the refresh token of a new
        // sign-in (or the end of the family of a disabled account), the key.
        let f = family.clone();
        let found = self
            .with_store(move |s| {
                let account = match s.account_by_sub(&f.sub)? {
                    Some(a) if !a.disabled => a,
                    gone => {
                        let _ = s.revoke_family(&f.family, "account disabled or removed", now);
                        return Ok(Err(gone.is_some()));
                    }
                };
                let refresh_token = match rotated {
                    Some(t) => Some(t),
                    None if offline => Some(s.new_family(&f, now, ttl)?),
                    None => None,
                };
                Ok(Ok((account, refresh_token, s.signing_key(now)?)))
            })
            .await?;
        let (account, refresh_token, key) = match found {
            Ok(found) => found,
            Err(disabled) => {
                return Err(OAuthError::grant(if disabled {
                    "the account is disabled; ask the hub's operator"
                } else {
                    "the account no longer exists"
                }));
            }
        };
        let s = &self.settings;
        let iat = now / 1000;
        let exp = iat + s.access_ttl.as_secs() as i64;
        let auth_time = family.auth_time_ms / 1000;
        let access = json!({
            "iss": s.issuer,
            "sub": account.sub,
            "aud": s.audience,
            "exp": exp,
            "iat": iat,
            "jti": random_token(16),
            "client_id": family.client_id,
            "scope": family.scope,
            "auth_time": auth_time,
        });
        let access_token = key.sign("at+jwt", &access).map_err(OAuthError::server)?;
        let id_token = if family.scope.split_whitespace().any(|s| s == "openid") {
            let id = json!({
                "iss": s.issuer,
                "sub": account.sub,
                "aud": family.client_id,
                "exp": exp,
                "iat": iat,
                "auth_time": auth_time,
                "preferred_username": account.username,
            });
            Some(key.sign("JWT", &id).map_err(OAuthError::server)?)
        } else {
            None
        };
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: s.access_ttl.as_secs(),
            scope: family.scope,
            refresh_token,
            id_token,
        })
    }

    /// RFC 7009: revokes the sign-in a refresh token belongs to. Unknown
    /// tokens and access tokens (which simply expire) are not an error.
    pub async fn revoke(
        &self,
        client_id: Option<&str>,
        token: Option<&str>,
    ) -> Result<(), OAuthError> {
        self.check_client(client_id)?;
        let Some(token) = token.map(str::to_owned) else {
            return Err(OAuthError::new(400, "invalid_request", "token is missing"));
        };
        let now = self.now_ms();
        self.with_store(move |s| s.revoke_refresh(&token, now))
            .await?;
        Ok(())
    }

    /// The code a user typed, if it is pending and live.
    pub async fn pending_code(&self, user_code: &str) -> Result<Option<PendingCode>, OAuthError> {
        let code = normalize_user_code(user_code);
        if code.len() != 8 {
            return Ok(None);
        }
        let now = self.now_ms();
        let lookup = code.clone();
        let row = self
            .with_store(move |s| s.device_by_user_code(&lookup))
            .await?;
        Ok(row
            .filter(|r| r.state == DeviceState::Pending && r.expires_ms > now)
            .map(|r| PendingCode {
                user_code: format_user_code(&code),
                client_id: r.client_id,
                scope: r.scope,
            }))
    }

    /// Approves (for `sub`) or denies a pending code; false when it is no
    /// longer pending.
    pub async fn decide(
        &self,
        user_code: &str,
        approve_for: Option<String>,
    ) -> Result<bool, OAuthError> {
        let code = normalize_user_code(user_code);
        let now = self.now_ms();
        self.with_store(move |s| s.decide_device(&code, approve_for.as_deref(), now))
            .await
    }

    /// Signs a local account in: rate-limited per address, per (account,
    /// address) pair and, more loosely, per account (see [`SignInLimits`]);
    /// the same answer (after the same work) for an unknown user and a wrong
    /// password, and a hash made under older parameters is upgraded.
    /// `address` is a rate-limit key (see [`proxy`](super::proxy)).
    pub async fn sign_in(
        &self,
        username: &str,
        password: &str,
        address: &str,
    ) -> Result<Account, SignInError> {
        let name = normalize_username(username);
        let now = self.clock.now_ms();
        let account_key = format!("account:{name}");
        let pair_key = format!("pair:{address} {name}");
        self.limits
            .address
            .attempt(&format!("address:{address}"), now)
            .map_err(|r| SignInError::RateLimited(r.retry_after()))?;
        self.limits
            .pair
            .attempt(&pair_key, now)
            .map_err(|r| SignInError::RateLimited(r.retry_after()))?;
        self.limits
            .account
            .attempt(&account_key, now)
            .map_err(|r| SignInError::RateLimited(r.retry_after()))?;
        let store = self.store.clone();
        let password = password.to_owned();
        let lookup = name.clone();
        let outcome = tokio::task::spawn_blocking(
            move || -> Result<(Option<Account>, Check), IssuerStoreError> {
                let account = store
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .account(&lookup)?;
                let check = passwords::verify_or_dummy(
                    account.as_ref().and_then(|a| a.password_hash.as_deref()),
                    &password,
                );
                if check == Check::RightNeedsUpgrade
                    && let Ok(new_hash) = passwords::hash(&password)
                {
                    let _ = store
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .rehash_password(&lookup, &new_hash, now as i64);
                }
                Ok((account, check))
            },
        )
        .await;
        let (account, check) = match outcome {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "sign-in could not read the accounts");
                return Err(SignInError::Unavailable);
            }
            Err(_) => return Err(SignInError::Unavailable),
        };
        match (account, check) {
            (Some(a), Check::Right | Check::RightNeedsUpgrade) => {
                self.limits.pair.clear(&pair_key);
                self.limits.account.clear(&account_key);
                if a.disabled {
                    Err(SignInError::Disabled)
                } else {
                    Ok(a)
                }
            }
            _ => Err(SignInError::Wrong),
        }
    }

    /// Deletes device authorizations that expired more than a grace period
    /// ago, in batches of [`PRUNE_BATCH`] (the store is free between
    /// batches); returns how many. Run periodically by
    /// [`run_sweeper`](Self::run_sweeper), never on a request.
    pub async fn prune_device_codes(&self) -> Result<usize, OAuthError> {
        let before = self.now_ms() - EXPIRED_DEVICE_GRACE_MS;
        let mut total = 0;
        loop {
            let n = self
                .with_store(move |s| s.prune_devices(before, PRUNE_BATCH))
                .await?;
            total += n;
            if n < PRUNE_BATCH as usize {
                return Ok(total);
            }
        }
    }

    /// Prunes expired device codes every `every` until `shutdown` turns true.
    pub async fn run_sweeper(
        self: Arc<Self>,
        every: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    match self.prune_device_codes().await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(deleted = n, "pruned expired device codes"),
                        Err(e) => tracing::warn!(error = %e, "could not prune expired device codes"),
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }

    /// The live invite behind a link: its user name.
    pub async fn invite(&self, secret: &str) -> Result<Option<String>, OAuthError> {
        let now = self.now_ms();
        let secret = secret.to_owned();
        Ok(self
            .with_store(move |s| s.invite(&secret, now))
            .await?
            .map(|(name, _)| name))
    }

    /// Spends an invite: sets the password (creating the account when
    /// needed).
    pub async fn redeem_invite(
        &self,
        secret: &str,
        password: &str,
    ) -> Result<Option<super::store::Redeemed>, InviteError> {
        let hash = {
            let password = password.to_owned();
            tokio::task::spawn_blocking(move || passwords::hash(&password))
                .await
                .map_err(|_| InviteError::Unavailable)?
                .map_err(InviteError::Password)?
        };
        let now = self.now_ms();
        let secret = secret.to_owned();
        self.with_store(move |s| s.redeem_invite(&secret, &hash, now))
            .await
            .map_err(|_| InviteError::Unavailable)
    }
}

/// Why redeeming an invite failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteError {
    Password(passwords::PasswordError),
    Unavailable,
}

/// How long a retired signing key stays published: until every token it
/// signed has expired, plus 5 minutes of leeway for verifiers' clocks.
pub fn retired_key_keep_ms(access_ttl: Duration) -> i64 {
    access_ttl.as_millis() as i64 + 5 * 60_000
}

/// A fresh user code, `XXXX-XXXX`, from [`USER_CODE_ALPHABET`] (~34 bits).
pub fn new_user_code() -> String {
    let mut bytes = [0u8; 8];
    super::keys::fill_random(&mut bytes);
    let n = USER_CODE_ALPHABET.len();
    // 256 % 20 != 0: reject the biased top of the byte range.
    let mut letters = String::with_capacity(8);
    let mut pool = bytes.to_vec();
    while letters.len() < 8 {
        if pool.is_empty() {
            let mut more = [0u8; 8];
            super::keys::fill_random(&mut more);
            pool.extend_from_slice(&more);
        }
        let b = pool.pop().unwrap_or(0) as usize;
        if b < 256 - 256 % n {
            letters.push(USER_CODE_ALPHABET[b % n] as char);
        }
    }
    format_user_code(&letters)
}

/// `ABCDEFGH` → `ABCD-EFGH`.
fn format_user_code(code: &str) -> String {
    if code.len() == 8 {
        format!("{}-{}", &code[..4], &code[4..])
    } else {
        code.to_owned()
    }
}

/// What a person typed, as stored: letters only, upper case.
pub fn normalize_user_code(typed: &str) -> String {
    typed
        .chars()
        .filter(char::is_ascii_alphabetic)
        .map(|c| c.to_ascii_uppercase())
        .take(16)
        .collect()
}

/// User names are compared without case and surrounding space.
pub fn normalize_username(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Checks a new user name: 1–64 characters, letters, digits and `.-_@+`.
pub fn check_username(name: &str) -> Result<String, String> {
    let name = normalize_username(name);
    if name.is_empty() || name.chars().count() > 64 {
        return Err("a user name has 1 to 64 characters".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || ".-_@+".contains(*c)))
    {
        return Err(format!(
            "a user name may hold letters, digits and . - _ @ +, not {c:?}"
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_readable_and_normalize() {
        for _ in 0..50 {
            let c = new_user_code();
            assert_eq!(c.len(), 9);
            assert_eq!(&c[4..5], "-");
            assert!(
                c.chars()
                    .filter(|c| *c != '-')
                    .all(|c| USER_CODE_ALPHABET.contains(&(c as u8)))
            );
        }
        assert_eq!(normalize_user_code(" bcdf-ghjk "), "BCDFGHJK");
        assert_eq!(
            format_user_code("BCDFGHJK"),
            "BCDFGHJK"[..4].to_owned() + "-GHJK"
        );
    }

    #[test]
    fn user_names() {
        assert_eq!(
            check_username(" Alice@Example.org ").unwrap(),
            "alice@example.org"
        );
        assert!(check_username("").is_err());
        assert!(check_username("a b").is_err());
        assert!(check_username(&"a".repeat(65)).is_err());
    }

    #[tokio::test]
    async fn an_approved_code_must_be_exchanged_before_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = IssuerStore::open(&dir.path().join("heph.db")).unwrap();
        let sub = store.add_account("alice", "$argon2id$unused", 0).unwrap();
        let clock = Arc::new(heph_core::ManualClock::new(1_000_000));
        let issuer = Issuer::new(
            IssuerSettings::new("http://127.0.0.1:1"),
            store,
            clock.clone(),
        );
        let grant = issuer
            .authorize_device(Some("heph"), None, "192.0.2.1")
            .await
            .unwrap();
        assert!(issuer.decide(&grant.user_code, Some(sub)).await.unwrap());
        clock.advance(grant.expires_in * 1000 + 1);
        let e = issuer
            .exchange_device_code(Some("heph"), Some(&grant.device_code))
            .await
            .unwrap_err();
        assert_eq!(e.error, "expired_token");
        // And it stays spent.
        let e = issuer
            .exchange_device_code(Some("heph"), Some(&grant.device_code))
            .await
            .unwrap_err();
        assert_ne!(e.error, "authorization_pending");
    }

    #[test]
    fn scopes_are_checked_and_deduplicated() {
        assert_eq!(Issuer::check_scope(None).unwrap(), "openid offline_access");
        assert_eq!(
            Issuer::check_scope(Some("openid openid profile")).unwrap(),
            "openid profile"
        );
        assert_eq!(
            Issuer::check_scope(Some("admin")).unwrap_err().error,
            "invalid_scope"
        );
    }
}
