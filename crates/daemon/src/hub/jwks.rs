//! The identity provider's signing keys, fetched lazily and cached.
//!
//! [`KeySource`] reads the issuer's discovery document, then the JWKS, and
//! keeps the usable public keys by `kid`. The discovery document must name
//! the configured issuer (exactly, up to one trailing slash) and an https
//! `jwks_uri` (plain http only when the issuer itself is on loopback), and
//! a redirect may not leave https. It honours the JWKS's `Cache-Control:
//! max-age` within [`JwksPolicy`]'s bounds and keeps serving the last good
//! keys while a refetch fails, so a provider's key rotation needs no
//! restart.
//!
//! Fetches are single flight: at most one runs, as its own task (a caller
//! that goes away does not cancel it), and every request waiting for it
//! takes its result, failure included; nobody starts a second fetch
//! because the first failed. An unknown `kid` refetches at most once per
//! cooldown, a failed fetch is not retried before the back-off (counted
//! from when it failed), and a request that waits on a fetch another
//! request started waits at most [`JwksPolicy::wait_limit`]; so neither a
//! flood of made-up `kid`s nor a hanging provider can hammer the provider
//! or pile up waiting requests. Only asymmetric signing keys are kept (RSA,
//! EC P-256/P-384, Ed25519); a symmetric (`oct`) key in a JWKS is ignored.
//! Responses are size-capped and time-limited. It never sees a token and
//! does not decide what a request may do (see [`bearer`](super::bearer)).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use reqwest::Url;
use serde_json::Value;

/// The largest discovery document or JWKS the hub reads.
pub const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

/// Timing rules of the cache.
#[derive(Debug, Clone)]
pub struct JwksPolicy {
    /// At most one refetch for an unknown `kid` per this interval, whether
    /// the last one succeeded or failed.
    pub refetch_cooldown: Duration,
    /// After a failed fetch, the next attempt waits at least this long
    /// (counted from when the failure was known).
    pub failure_retry: Duration,
    /// Cache lifetime when the JWKS sends no usable `max-age`.
    pub default_ttl: Duration,
    /// Bounds on a `max-age` the provider sends.
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    /// Bound on one whole fetch (discovery plus JWKS, connect included).
    pub timeout: Duration,
    /// How long a request waits for a fetch that another request started
    /// before it answers 503 (the request that started it waits for it,
    /// at most `timeout`).
    pub wait_limit: Duration,
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
            wait_limit: Duration::from_secs(2),
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
    /// `reason` is for the operator's log, not for the caller.
    Unavailable {
        retry_after: Duration,
        reason: String,
    },
}

/// Why a fetch failed: each names the URL it concerns and never a secret.
/// Text that came from the provider is shown escaped and shortened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    #[error("cannot build the HTTP client for the issuer")]
    Client(#[source] reqwest::Error),
    #[error("cannot reach {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered HTTP {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("{url} answered more than {} KiB", MAX_DOCUMENT_BYTES / 1024)]
    TooLarge { url: String },
    #[error("{url} did not answer JSON")]
    NotJson {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the discovery document {url} has no jwks_uri")]
    NoJwksUri { url: String },
    #[error(
        "the discovery document names the issuer {found}, not the configured {expected}; --oidc-issuer must be the provider's issuer exactly (one trailing slash aside)"
    )]
    IssuerMismatch { expected: String, found: String },
    #[error("the discovery document's jwks_uri {url} is not an absolute URL")]
    BadEndpoint { url: String },
    #[error(
        "the discovery document names the jwks_uri {url}, which is not https; keys are fetched over plain http only from an issuer on this machine (loopback)"
    )]
    InsecureEndpoint { url: String },
    #[error("the JWKS at {url} is not a JSON object with a keys array")]
    NotAJwks { url: String },
    #[error("the JWKS at {url} holds no usable signing key (RSA, EC P-256/P-384 or Ed25519)")]
    NoUsableKey { url: String },
    #[error("the identity provider did not answer within {} s", .0.as_secs())]
    TimedOut(Duration),
    /// The built-in issuer could not read its own keys.
    #[error("{0}")]
    Local(String),
}

/// `e` and its causes on one line (for the operator's log).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// Text from the network, quoted with control characters escaped and cut
/// to a readable length, so it cannot forge log lines.
fn shown(raw: &str) -> String {
    let cut: String = raw.chars().take(120).collect();
    let mut text = format!("{cut:?}");
    if cut.len() < raw.len() {
        text.push('…');
    }
    text
}

/// Where "now" comes from (tests move it by hand).
pub type Now = Arc<dyn Fn() -> Instant + Send + Sync>;

struct Cache {
    keys: HashMap<String, VerifyKey>,
    /// Keys in JWKS order (for tokens without `kid`).
    order: Vec<String>,
    /// Whether a fetch ever succeeded.
    fetched: bool,
    expires: Option<Instant>,
    /// When the last failed fetch ended (the back-off counts from here).
    failed_at: Option<Instant>,
    /// Why the last fetch failed; `None` once one succeeds.
    last_failure: Option<Arc<FetchError>>,
    /// When the last refetch for an unknown `kid` started.
    last_kid_refetch: Option<Instant>,
    /// Fetches started so far; the number of the current one.
    started: u64,
    /// The number of the last fetch that finished.
    finished: u64,
}

impl Cache {
    fn in_flight(&self) -> bool {
        self.started > self.finished
    }
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
    inner: Arc<Inner>,
}

struct Inner {
    /// The configured issuer, without a trailing slash.
    issuer: String,
    origin: Origin,
    policy: JwksPolicy,
    now: Now,
    cache: Mutex<Cache>,
    /// The number of the last finished fetch, for the requests waiting on it.
    done: tokio::sync::watch::Sender<u64>,
}

impl KeySource {
    /// A source for `issuer`; nothing is fetched until the first token.
    pub fn new(issuer: &str, policy: JwksPolicy) -> Result<Self, FetchError> {
        Self::with_clock(issuer, policy, Arc::new(Instant::now))
    }

    /// [`KeySource::new`] with an injected clock.
    pub fn with_clock(issuer: &str, policy: JwksPolicy, now: Now) -> Result<Self, FetchError> {
        crate::install_crypto_provider();
        let plain_http_ok = is_loopback_url(issuer);
        let http = reqwest::Client::builder()
            .connect_timeout(policy.timeout)
            .timeout(policy.timeout)
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 3 {
                    attempt.error("more than 3 redirects")
                } else if attempt.url().scheme() != "https"
                    && !(plain_http_ok && is_loopback_host(attempt.url()))
                {
                    attempt.error("a redirect away from https")
                } else {
                    attempt.follow()
                }
            }))
            .user_agent(concat!("hephd/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .build()
            .map_err(FetchError::Client)?;
        Ok(Self::build(issuer, Origin::Http(http), policy, now))
    }

    /// A source over this process's own issuer: the JWKS is read by
    /// `local`, and everything else (which keys are accepted, the cache,
    /// the unknown-`kid` refetch) is the same as for a remote issuer.
    pub fn local(issuer: &str, local: LocalJwks, policy: JwksPolicy) -> Self {
        Self::build(issuer, Origin::Local(local), policy, Arc::new(Instant::now))
    }

    /// [`KeySource::local`] with an injected clock (tests).
    pub fn local_with_clock(issuer: &str, local: LocalJwks, policy: JwksPolicy, now: Now) -> Self {
        Self::build(issuer, Origin::Local(local), policy, now)
    }

    fn build(issuer: &str, origin: Origin, policy: JwksPolicy, now: Now) -> Self {
        Self {
            inner: Arc::new(Inner {
                issuer: issuer.trim_end_matches('/').to_owned(),
                origin,
                policy,
                now,
                cache: Mutex::new(Cache {
                    keys: HashMap::new(),
                    order: Vec::new(),
                    fetched: false,
                    expires: None,
                    failed_at: None,
                    last_failure: None,
                    last_kid_refetch: None,
                    started: 0,
                    finished: 0,
                }),
                done: tokio::sync::watch::Sender::new(0),
            }),
        }
    }

    /// How many fetches (discovery + JWKS) were started so far.
    pub fn fetch_count(&self) -> u64 {
        self.inner.lock().started
    }

    /// The key for `kid`, fetching or refetching as the rules allow.
    pub async fn key(&self, kid: Option<&str>) -> Lookup {
        let inner = &self.inner;
        // The fetch whose result this request takes, once it has waited.
        let mut awaited: Option<u64> = None;
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let (flight, started_it, mut done) = {
                let mut c = inner.lock();
                let now = (inner.now)();
                let found = find(&c, kid);
                if let Some(flight) = awaited
                    && c.finished >= flight
                {
                    // The fetch we waited for is over: its result is ours,
                    // failure included. No second fetch for this request.
                    return match found {
                        Some(k) => Lookup::Found(k),
                        None => inner.miss(&c, now),
                    };
                }
                let fresh = c.expires.is_some_and(|e| now < e);
                match found {
                    // Fresh; or stale while a refresh runs or may not run
                    // yet: the cached key serves without waiting.
                    Some(k) if fresh || c.in_flight() || !inner.may_fetch(&c, now) => {
                        return Lookup::Found(k);
                    }
                    // Stale: this request refreshes (and waits for it).
                    Some(_) => {}
                    // A fetch is running: wait for its result.
                    None if c.in_flight() => {}
                    None => {
                        if !inner.may_fetch_for_missing(&mut c, now) {
                            return inner.miss(&c, now);
                        }
                    }
                }
                let (flight, started_it) = if c.in_flight() {
                    (c.started, false)
                } else {
                    (Inner::start(inner, &mut c), true)
                };
                // Subscribed under the cache lock: the fetch's end, which
                // is published after it updates the cache, cannot be missed.
                (flight, started_it, inner.done.subscribe())
            };
            awaited = Some(flight);
            let limit = if started_it {
                // The fetch itself is bounded by `timeout`.
                inner.policy.timeout + Duration::from_secs(1)
            } else {
                inner.policy.wait_limit
            };
            let until = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + limit);
            let ended = tokio::time::timeout_at(until, done.wait_for(|&f| f >= flight))
                .await
                .is_ok();
            if !ended {
                return Lookup::Unavailable {
                    retry_after: inner.policy.failure_retry.max(Duration::from_secs(1)),
                    reason: format!(
                        "the identity provider's keys were still being fetched after {} s",
                        inner.policy.wait_limit.as_secs_f32()
                    ),
                };
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the failure back-off allows a network fetch now.
    fn may_fetch(&self, c: &Cache, now: Instant) -> bool {
        match (c.failed_at, &c.last_failure) {
            (Some(t), Some(_)) => now.duration_since(t) >= self.policy.failure_retry,
            _ => true,
        }
    }

    /// Whether a key that is not cached may be fetched now: before the
    /// first good fetch and after the cache expired, as the back-off
    /// allows; for an unknown `kid` in a fresh cache, once per cooldown
    /// (whatever the last attempt's outcome), which this stamps.
    fn may_fetch_for_missing(&self, c: &mut Cache, now: Instant) -> bool {
        let stale = c.expires.is_none_or(|e| now >= e);
        if !c.fetched || stale {
            return self.may_fetch(c, now);
        }
        let cooled = c
            .last_kid_refetch
            .is_none_or(|t| now.duration_since(t) >= self.policy.refetch_cooldown);
        let allowed = cooled && self.may_fetch(c, now);
        if allowed {
            c.last_kid_refetch = Some(now);
        }
        allowed
    }

    /// The answer for a key that is not cached and will not be fetched now.
    fn miss(&self, c: &Cache, now: Instant) -> Lookup {
        let Some(failure) = &c.last_failure else {
            return Lookup::Unknown;
        };
        let since = |t: Option<Instant>| t.map_or(Duration::MAX, |t| now.duration_since(t));
        let mut wait = self.policy.failure_retry.saturating_sub(since(c.failed_at));
        if c.fetched && c.expires.is_some_and(|e| now < e) {
            wait = wait.max(
                self.policy
                    .refetch_cooldown
                    .saturating_sub(since(c.last_kid_refetch)),
            );
        }
        Lookup::Unavailable {
            retry_after: wait.max(Duration::from_secs(1)),
            reason: error_chain(failure.as_ref()),
        }
    }

    /// Starts fetch number `started + 1` as its own task; returns its number.
    fn start(this: &Arc<Self>, c: &mut Cache) -> u64 {
        c.started += 1;
        let flight = c.started;
        let inner = this.clone();
        tokio::spawn(async move { inner.refresh(flight).await });
        flight
    }

    async fn refresh(&self, flight: u64) {
        let result = match tokio::time::timeout(self.policy.timeout, self.fetch()).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::TimedOut(self.policy.timeout)),
        };
        let now = (self.now)();
        {
            let mut c = self.lock();
            match result {
                Ok((keys, order, ttl)) => {
                    c.keys = keys;
                    c.order = order;
                    c.fetched = true;
                    c.expires = Some(now + ttl);
                    c.failed_at = None;
                    c.last_failure = None;
                }
                Err(e) => {
                    tracing::warn!(issuer = %self.issuer, error = %error_chain(&e), "cannot refresh the identity provider's keys; keeping the last good ones");
                    c.failed_at = Some(now);
                    c.last_failure = Some(Arc::new(e));
                }
            }
            c.finished = flight;
        }
        self.done.send_replace(flight);
    }

    async fn fetch(
        &self,
    ) -> Result<(HashMap<String, VerifyKey>, Vec<String>, Duration), FetchError> {
        let (jwks, max_age, jwks_uri) = match &self.origin {
            Origin::Http(http) => self.fetch_remote(http).await?,
            Origin::Local(read) => (read().await?, None, format!("{}/ (built in)", self.issuer)),
        };
        let Some(list) = jwks.get("keys").and_then(Value::as_array) else {
            return Err(FetchError::NotAJwks { url: jwks_uri });
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
            return Err(FetchError::NoUsableKey { url: jwks_uri });
        }
        let ttl = max_age
            .unwrap_or(self.policy.default_ttl)
            .clamp(self.policy.min_ttl, self.policy.max_ttl);
        Ok((keys, order, ttl))
    }

    /// Discovery (checked: its issuer, its `jwks_uri`'s scheme), then the
    /// JWKS, over HTTP: the document, its `max-age` and its URL.
    async fn fetch_remote(
        &self,
        http: &reqwest::Client,
    ) -> Result<(Value, Option<Duration>, String), FetchError> {
        let discovery_url = format!("{}/.well-known/openid-configuration", self.issuer);
        let (discovery, _) = get_json(http, &discovery_url).await?;
        check_issuer(&self.issuer, discovery.get("issuer"))?;
        let raw_uri = discovery
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| FetchError::NoJwksUri {
                url: discovery_url.clone(),
            })?;
        let jwks_uri = check_endpoint(&self.issuer, raw_uri)?;
        let (jwks, max_age) = get_json(http, jwks_uri.as_str()).await?;
        Ok((jwks, max_age, jwks_uri.to_string()))
    }
}

/// The discovery document's `issuer` must be the configured one (which
/// has no trailing slash), exactly or with one trailing slash — the same
/// tolerance as the tokens' `iss` check.
pub fn check_issuer(configured: &str, found: Option<&Value>) -> Result<(), FetchError> {
    let configured = configured.trim_end_matches('/');
    match found.and_then(Value::as_str) {
        Some(f) if f == configured || f.strip_suffix('/') == Some(configured) => Ok(()),
        Some(f) => Err(FetchError::IssuerMismatch {
            expected: configured.to_owned(),
            found: shown(f),
        }),
        None => Err(FetchError::IssuerMismatch {
            expected: configured.to_owned(),
            found: "(none)".to_owned(),
        }),
    }
}

/// An endpoint named by the discovery document, accepted only over https,
/// or over plain http on loopback when the issuer itself is on loopback.
pub fn check_endpoint(issuer: &str, raw: &str) -> Result<Url, FetchError> {
    let url = Url::parse(raw).map_err(|_| FetchError::BadEndpoint { url: shown(raw) })?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback_url(issuer) && is_loopback_host(&url) => Ok(url),
        _ => Err(FetchError::InsecureEndpoint {
            url: url.to_string(),
        }),
    }
}

/// Whether a URL's host is `localhost` or a loopback address.
fn is_loopback_host(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_loopback_url(raw: &str) -> bool {
    Url::parse(raw).is_ok_and(|u| is_loopback_host(&u))
}

/// GETs a JSON document of at most [`MAX_DOCUMENT_BYTES`], with its `max-age`.
async fn get_json(
    http: &reqwest::Client,
    url: &str,
) -> Result<(Value, Option<Duration>), FetchError> {
    let unreachable = |source| FetchError::Unreachable {
        url: url.to_owned(),
        source,
    };
    let mut resp = http
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(unreachable)?;
    if !resp.status().is_success() {
        return Err(FetchError::Status {
            url: url.to_owned(),
            status: resp.status(),
        });
    }
    let too_large = || FetchError::TooLarge {
        url: url.to_owned(),
    };
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(too_large());
    }
    let max_age = resp
        .headers()
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_max_age);
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    let value = serde_json::from_slice(&body).map_err(|source| FetchError::NotJson {
        url: url.to_owned(),
        source,
    })?;
    Ok((value, max_age))
}

fn find(c: &Cache, kid: Option<&str>) -> Option<VerifyKey> {
    match kid {
        Some(kid) => c.keys.get(kid).cloned(),
        // No kid: only unambiguous with exactly one key.
        None if c.order.len() == 1 => c.keys.get(&c.order[0]).cloned(),
        None => None,
    }
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
