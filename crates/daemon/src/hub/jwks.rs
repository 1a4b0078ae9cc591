//! The identity provider's signing keys, fetched lazily and cached.
//!
//! [`KeySource`] reads the issuer's discovery document for `jwks_uri`, then
//! the JWKS, and keeps the usable public keys by `kid`. It honours the
//! JWKS's `Cache-Control: max-age` within [`JwksPolicy`]'s bounds, keeps
//! serving the last good keys while a refetch fails, and refetches for an
//! unknown `kid` at most once per cooldown, so a provider's key rotation
//! needs no restart and a flood of made-up `kid`s cannot hammer the
//! provider. Fetches are single-flight. Only asymmetric signing keys are
//! kept (RSA, EC P-256/P-384, Ed25519); a symmetric (`oct`) key in a JWKS
//! is ignored. Responses are size-capped and time-limited. It never sees a
//! token and does not decide what a request may do (see
//! [`bearer`](super::bearer)).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// The largest discovery document or JWKS the hub reads.
pub const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

/// Timing rules of the cache.
#[derive(Debug, Clone)]
pub struct JwksPolicy {
    /// At most one refetch for an unknown `kid` per this interval.
    pub refetch_cooldown: Duration,
    /// After a failed fetch, the next attempt waits at least this long.
    pub failure_retry: Duration,
    /// Cache lifetime when the JWKS sends no usable `max-age`.
    pub default_ttl: Duration,
    /// Bounds on a `max-age` the provider sends.
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    /// Connect plus whole-response timeout of one fetch.
    pub timeout: Duration,
}

impl Default for JwksPolicy {
    fn default() -> Self {
        Self {
            refetch_cooldown: Duration::from_secs(30),
            failure_retry: Duration::from_secs(5),
            default_ttl: Duration::from_secs(300),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(5),
        }
    }
}

/// A public key ready to verify with, and the one algorithm it allows.
#[derive(Clone)]
pub struct VerifyKey {
    pub key: Arc<DecodingKey>,
    /// Set when the JWK names its algorithm (or its curve implies one);
    /// `None` for an RSA key without `alg`, which allows RS*/PS*.
    pub alg: Option<Algorithm>,
    pub family: KeyFamily,
}

/// The kind of an accepted key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    Ec,
    Ed,
}

impl VerifyKey {
    /// Whether a token whose header says `alg` may be checked with this key.
    pub fn allows(&self, alg: Algorithm) -> bool {
        match self.alg {
            Some(own) => own == alg,
            None => {
                self.family == KeyFamily::Rsa
                    && matches!(
                        alg,
                        Algorithm::RS256
                            | Algorithm::RS384
                            | Algorithm::RS512
                            | Algorithm::PS256
                            | Algorithm::PS384
                            | Algorithm::PS512
                    )
            }
        }
    }
}

/// The outcome of looking a key up.
#[derive(Clone)]
pub enum Lookup {
    Found(VerifyKey),
    /// The provider's current JWKS has no key with this `kid` (or, for a
    /// token without `kid`, no single key to use).
    Unknown,
    /// No keys to answer with: the provider or its JWKS cannot be read.
    Unavailable {
        retry_after: Duration,
        reason: String,
    },
}

/// Why a fetch failed (one sentence, names the URL, never secrets).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

/// Where "now" comes from (tests move it by hand).
pub type Now = Arc<dyn Fn() -> Instant + Send + Sync>;

struct Cache {
    keys: HashMap<String, VerifyKey>,
    /// Keys in JWKS order (for tokens without `kid`).
    order: Vec<String>,
    fetched: bool,
    expires: Option<Instant>,
    last_attempt: Option<Instant>,
    last_attempt_failed: bool,
    last_failure: Option<String>,
    last_kid_refetch: Option<Instant>,
    fetches: u64,
}

/// Reads the JWKS document of an issuer this process runs itself (the
/// built-in issuer): the same document its `jwks_uri` serves, without a
/// network round trip.
pub type LocalJwks = Arc<
    dyn Fn()
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, FetchError>> + Send>>
        + Send
        + Sync,
>;

/// Where the keys come from.
enum Origin {
    /// Discovery, then `jwks_uri`, over HTTP(S).
    Http(reqwest::Client),
    /// This process's own issuer.
    Local(LocalJwks),
}

/// The cached keys of one issuer.
pub struct KeySource {
    issuer: String,
    origin: Origin,
    policy: JwksPolicy,
    now: Now,
    cache: Mutex<Cache>,
    /// Single flight: one fetch at a time.
    fetch_lock: tokio::sync::Mutex<()>,
}

impl KeySource {
    /// A source for `issuer`; nothing is fetched until the first token.
    pub fn new(issuer: &str, policy: JwksPolicy) -> Result<Self, FetchError> {
        Self::with_clock(issuer, policy, Arc::new(Instant::now))
    }

    /// [`KeySource::new`] with an injected clock.
    pub fn with_clock(issuer: &str, policy: JwksPolicy, now: Now) -> Result<Self, FetchError> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(policy.timeout)
            .timeout(policy.timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("hephd/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .build()
            .map_err(|e| FetchError(format!("cannot build the HTTP client for the issuer: {e}")))?;
        Ok(Self::build(issuer, Origin::Http(http), policy, now))
    }

    /// A source over this process's own issuer: the JWKS is read by
    /// `local`, and everything else (which keys are accepted, the cache,
    /// the unknown-`kid` refetch) is the same as for a remote issuer.
    pub fn local(issuer: &str, local: LocalJwks, policy: JwksPolicy) -> Self {
        Self::build(issuer, Origin::Local(local), policy, Arc::new(Instant::now))
    }

    fn build(issuer: &str, origin: Origin, policy: JwksPolicy, now: Now) -> Self {
        Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            origin,
            policy,
            now,
            cache: Mutex::new(Cache {
                keys: HashMap::new(),
                order: Vec::new(),
                fetched: false,
                expires: None,
                last_attempt: None,
                last_attempt_failed: false,
                last_failure: None,
                last_kid_refetch: None,
                fetches: 0,
            }),
            fetch_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// How many fetches (discovery + JWKS) were attempted so far.
    pub fn fetch_count(&self) -> u64 {
        self.lock().fetches
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key for `kid`, fetching or refetching as the rules allow.
    pub async fn key(&self, kid: Option<&str>) -> Lookup {
        // 1. Fresh cache, key present: the fast path.
        let now = (self.now)();
        {
            let c = self.lock();
            if let Some(found) = find(&c, kid) {
                if c.expires.is_some_and(|e| now < e) || !self.may_fetch(&c, now) {
                    return Lookup::Found(found);
                }
            }
        }
        let _flight = match self.fetch_lock.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                // A fetch is in flight: a request whose key is cached (even
                // stale) does not wait for it; only the fetching one pays.
                if let Some(found) = find(&self.lock(), kid) {
                    return Lookup::Found(found);
                }
                self.fetch_lock.lock().await
            }
        };
        let now = (self.now)();
        let should_fetch = {
            let mut c = self.lock();
            let found = find(&c, kid);
            let stale = c.expires.is_none_or(|e| now >= e);
            match (&found, c.fetched) {
                // Another request refreshed it while we waited.
                (Some(_), _) if !stale => return Lookup::Found(found.unwrap()),
                // Expired: refresh when allowed, else keep serving it.
                (Some(_), _) => self.may_fetch(&c, now),
                // Never fetched (or every fetch failed): fetch when allowed.
                (None, false) => self.may_fetch(&c, now),
                // Unknown kid with a good cache: one refetch per cooldown.
                (None, true) => {
                    // A failed refetch may be retried after the (shorter)
                    // failure back-off: the provider coming back must not
                    // wait out the whole cooldown.
                    let cooled = c.last_attempt_failed
                        || c.last_kid_refetch
                            .is_none_or(|t| now.duration_since(t) >= self.policy.refetch_cooldown);
                    let allowed = cooled && self.may_fetch(&c, now);
                    if allowed {
                        c.last_kid_refetch = Some(now);
                    }
                    allowed
                }
            }
        };
        if should_fetch {
            self.refresh(now).await;
        }
        let c = self.lock();
        if let Some(found) = find(&c, kid) {
            return Lookup::Found(found);
        }
        if c.last_attempt_failed {
            let waited = c
                .last_attempt
                .map_or(Duration::ZERO, |t| now.duration_since(t));
            let retry_after = self
                .policy
                .failure_retry
                .saturating_sub(waited)
                .max(Duration::from_secs(1));
            return Lookup::Unavailable {
                retry_after,
                reason: c
                    .last_failure
                    .clone()
                    .unwrap_or_else(|| "the identity provider cannot be reached".into()),
            };
        }
        Lookup::Unknown
    }

    /// Whether the failure back-off allows a network fetch now.
    fn may_fetch(&self, c: &Cache, now: Instant) -> bool {
        match c.last_attempt {
            Some(t) if c.last_attempt_failed => now.duration_since(t) >= self.policy.failure_retry,
            _ => true,
        }
    }

    async fn refresh(&self, now: Instant) {
        self.lock().fetches += 1;
        let result = self.fetch().await;
        let mut c = self.lock();
        c.last_attempt = Some(now);
        match result {
            Ok((keys, order, ttl)) => {
                c.keys = keys;
                c.order = order;
                c.fetched = true;
                c.expires = Some(now + ttl);
                c.last_attempt_failed = false;
                c.last_failure = None;
            }
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "cannot refresh the identity provider's keys; keeping the last good ones");
                c.last_attempt_failed = true;
                c.last_failure = Some(e.0);
            }
        }
    }

    async fn fetch(
        &self,
    ) -> Result<(HashMap<String, VerifyKey>, Vec<String>, Duration), FetchError> {
        let (jwks, max_age, jwks_uri) = match &self.origin {
            Origin::Http(http) => self.fetch_remote(http).await?,
            Origin::Local(read) => (read().await?, None, format!("{}/ (built in)", self.issuer)),
        };
        let Some(list) = jwks.get("keys").and_then(Value::as_array) else {
            return Err(FetchError(format!(
                "the JWKS at {jwks_uri} is not a JSON object with a keys array"
            )));
        };
        let mut keys = HashMap::new();
        let mut order = Vec::new();
        for (i, raw) in list.iter().enumerate() {
            if let Some(key) = accept_key(raw) {
                let kid = raw
                    .get("kid")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("#{i}"), str::to_owned);
                order.push(kid.clone());
                keys.insert(kid, key);
            }
        }
        if keys.is_empty() {
            return Err(FetchError(format!(
                "the JWKS at {jwks_uri} holds no usable signing key (RSA, EC P-256/P-384 or Ed25519)"
            )));
        }
        let ttl = max_age
            .unwrap_or(self.policy.default_ttl)
            .clamp(self.policy.min_ttl, self.policy.max_ttl);
        Ok((keys, order, ttl))
    }

    /// Discovery, then the JWKS, over HTTP: the document, its `max-age`
    /// and its URL.
    async fn fetch_remote(
        &self,
        http: &reqwest::Client,
    ) -> Result<(Value, Option<Duration>, String), FetchError> {
        let discovery_url = format!("{}/.well-known/openid-configuration", self.issuer);
        let (discovery, _) = self.get_json(http, &discovery_url).await?;
        let jwks_uri = discovery
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                FetchError(format!(
                    "the discovery document {discovery_url} has no jwks_uri"
                ))
            })?
            .to_owned();
        let (jwks, max_age) = self.get_json(http, &jwks_uri).await?;
        Ok((jwks, max_age, jwks_uri))
    }

    /// GETs a JSON document of at most [`MAX_DOCUMENT_BYTES`], with its `max-age`.
    async fn get_json(
        &self,
        http: &reqwest::Client,
        url: &str,
    ) -> Result<(Value, Option<Duration>), FetchError> {
        let mut resp = http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| FetchError(format!("cannot reach {url}: {}", transport(&e))))?;
        if !resp.status().is_success() {
            return Err(FetchError(format!("{url} answered HTTP {}", resp.status())));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(FetchError(format!(
                "{url} answered more than {} KiB",
                MAX_DOCUMENT_BYTES / 1024
            )));
        }
        let max_age = resp
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_max_age);
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| FetchError(format!("reading {url} failed: {}", transport(&e))))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(FetchError(format!(
                    "{url} answered more than {} KiB",
                    MAX_DOCUMENT_BYTES / 1024
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let value = serde_json::from_slice(&body)
            .map_err(|_| FetchError(format!("{url} did not answer JSON")))?;
        Ok((value, max_age))
    }
}

fn find(c: &Cache, kid: Option<&str>) -> Option<VerifyKey> {
    match kid {
        Some(kid) => c.keys.get(kid).cloned(),
        // No kid: only unambiguous with exactly one key.
        None if c.order.len() == 1 => c.keys.get(&c.order[0]).cloned(),
        None => None,
    }
}

/// The transport cause of a reqwest error, without its URL (named by the caller).
fn transport(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    msg
}

/// `max-age` (or `s-maxage`) of a Cache-Control value; `no-store`/`no-cache` → 0.
pub fn parse_max_age(value: &str) -> Option<Duration> {
    let mut age = None;
    for part in value.split(',') {
        let part = part.trim().to_ascii_lowercase();
        if part == "no-store" || part == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(n) = part.strip_prefix("max-age=") {
            age = n.trim_matches('"').parse().ok().map(Duration::from_secs);
        }
    }
    age
}

/// A JWK the hub may verify with: an asymmetric signing key with an
/// acceptable algorithm. Anything else (HMAC `oct`, encryption keys,
/// unknown curves, broken parameters) is skipped.
fn accept_key(raw: &Value) -> Option<VerifyKey> {
    let jwk: Jwk = serde_json::from_value(raw.clone()).ok()?;
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let declared = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(asymmetric(a)?),
    };
    let (family, implied) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (KeyFamily::Rsa, None),
        AlgorithmParameters::EllipticCurve(p) => (
            KeyFamily::Ec,
            Some(match p.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => return None,
            }),
        ),
        AlgorithmParameters::OctetKeyPair(p) => {
            if p.curve != EllipticCurve::Ed25519 {
                return None;
            }
            (KeyFamily::Ed, Some(Algorithm::EdDSA))
        }
        AlgorithmParameters::OctetKey(_) => return None,
    };
    let alg = match (declared, implied) {
        (Some(d), Some(i)) if d != i => return None,
        (Some(d), _) => Some(d),
        (None, i) => i,
    };
    let fits = match (family, alg) {
        (_, None) => true,
        (KeyFamily::Rsa, Some(a)) => matches!(
            a,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ),
        (KeyFamily::Ec, Some(a)) => matches!(a, Algorithm::ES256 | Algorithm::ES384),
        (KeyFamily::Ed, Some(a)) => a == Algorithm::EdDSA,
    };
    if !fits {
        return None;
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(VerifyKey {
        key: Arc::new(key),
        alg,
        family,
    })
}

/// The signing algorithms the hub accepts (never HMAC, never `none`).
pub fn asymmetric(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_parsing() {
        assert_eq!(
            parse_max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(parse_max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(parse_max_age("public"), None);
        assert_eq!(parse_max_age("max-age=abc"), None);
    }

    #[test]
    fn symmetric_and_encryption_keys_are_never_kept() {
        let oct = serde_json::json!({"kty":"oct","k":"c2VjcmV0","alg":"HS256","kid":"h"});
        assert!(accept_key(&oct).is_none());
        let ec = serde_json::json!({"kty":"EC","crv":"P-256","alg":"ES256","use":"enc",
            "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        assert!(accept_key(&ec).is_none());
        let ec_sig = serde_json::json!({"kty":"EC","crv":"P-256","use":"sig",
            "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        let k = accept_key(&ec_sig).unwrap();
        assert_eq!(k.alg, Some(Algorithm::ES256));
        assert!(!k.allows(Algorithm::HS256) && !k.allows(Algorithm::ES384));
        let mismatch = serde_json::json!({"kty":"EC","crv":"P-256","alg":"RS256",
            "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        assert!(accept_key(&mismatch).is_none());
    }
}
