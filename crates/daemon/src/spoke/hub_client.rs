//! The HTTP client a spoke (and a client-mode daemon) uses to talk to its hub.
//!
//! Owns the reqwest client (rustls with the platform's roots, plus the
//! `--hub-ca` file), the push/pull/rpc calls, and the classification of every
//! failure into a [`SyncError`] that names the hub URL and the real cause
//! (DNS, refused, TLS, timeout, or the hub's own error body). It does not
//! touch the replica and keeps no sync state.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use heph_core::rpc::{Request, Response, RpcError, code};
use heph_core::wire::{
    ErrorBody, HubUrl, PullResponse, PushRequest, PushResponse, error_code, route,
};
use heph_core::{Hlc, Op};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::auth::{AfterUnauthorized, SpokeAuth};

/// How long to wait for a TCP (and TLS) connection to the hub.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request may take beyond any long-poll wait it asked for.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a transport-level failure happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// The host name does not resolve.
    Dns,
    /// Nothing listens at the address.
    Refused,
    /// The TLS handshake or certificate check failed.
    Tls(String),
    /// The hub did not answer in time.
    Timeout,
    /// The connection was closed or reset mid-request.
    Closed,
    /// Anything else, with the underlying sentence.
    Other(String),
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Dns => f.write_str("the host name does not resolve (DNS)"),
            Cause::Refused => f.write_str("the connection was refused (is the hub running?)"),
            Cause::Tls(detail) => write!(f, "the TLS handshake failed: {detail}"),
            Cause::Timeout => f.write_str("the hub did not answer in time"),
            Cause::Closed => f.write_str("the connection was closed before the hub answered"),
            Cause::Other(detail) => f.write_str(detail),
        }
    }
}

/// What went wrong talking to the hub. Each reads as one sentence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The hub could not be reached at all.
    #[error("cannot reach the hub at {url}: {cause}")]
    Unreachable {
        url: String,
        cause: Cause,
        #[source]
        source: Option<reqwest::Error>,
    },
    /// The hub answered with an error status.
    #[error("the hub at {url} refused the request with {status} {code}: {message}")]
    Rejected {
        url: String,
        status: u16,
        code: String,
        message: String,
    },
    /// The hub refused a push because one of its ops carries an HLC the hub
    /// has logged with different content (409 `hlc_collision`): another
    /// writer shares this replica's id. The sync loop repairs it itself.
    #[error("the hub at {url} refused a push: {message}")]
    Collision {
        url: String,
        /// The HLC both ops carry.
        hlc: Hlc,
        message: String,
    },
    /// The hub's answer is not what a heph hub sends.
    #[error("the hub at {url} sent an answer this spoke cannot read: {reason}")]
    BadResponse { url: String, reason: String },
    /// This replica could not apply or read ops.
    #[error("this replica cannot {what}: {reason}")]
    Local { what: &'static str, reason: String },
    /// The daemon is shutting down.
    #[error("the daemon is shutting down")]
    ShuttingDown,
    /// The configured hub settings cannot be used.
    #[error("cannot set up the connection to the hub: {0}")]
    Setup(String),
}

impl SyncError {
    /// The command or action that fixes it, if there is one.
    pub fn hint(&self, hub: &str) -> Option<String> {
        match self {
            SyncError::Unreachable {
                cause: Cause::Tls(_),
                ..
            } => Some(format!(
                "if the hub's certificate comes from a private CA, start hephd with --hub-url {hub} --hub-ca /path/to/ca.pem"
            )),
            SyncError::Unreachable {
                cause: Cause::Refused | Cause::Timeout | Cause::Closed,
                ..
            } => Some(format!(
                "check that the hub is running and reachable: curl {hub}/healthz"
            )),
            SyncError::Unreachable {
                cause: Cause::Dns, ..
            } => Some(format!("check the hub URL {hub} and this device's DNS")),
            SyncError::Rejected { status: 401, .. } | SyncError::Rejected { status: 403, .. } => {
                Some(format!("heph auth login --hub-url {hub}"))
            }
            SyncError::Rejected { code, .. } if code == error_code::AUTH_UNAVAILABLE => Some(
                "the hub cannot reach its identity provider to check tokens; sync retries on its own".into(),
            ),
            SyncError::Rejected { code, .. } if code == error_code::CLOCK_SKEW => {
                Some("check this device's clock (enable NTP); sync retries on its own".into())
            }
            SyncError::Local { what, .. } if what.contains("clock") => Some(
                "check this device's clock and the hub's (enable NTP); sync retries on its own"
                    .into(),
            ),
            _ => None,
        }
    }

    /// Whether the hub answered `cursor_ahead` (its database was replaced).
    pub fn is_cursor_ahead(&self) -> bool {
        matches!(self, SyncError::Rejected { code, .. } if code == error_code::CURSOR_AHEAD)
    }
}

/// Names the cause of a transport failure from its error chain.
pub fn classify(err: &reqwest::Error) -> Cause {
    if err.is_timeout() {
        return Cause::Timeout;
    }
    let mut chain = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Cause::Refused,
                std::io::ErrorKind::TimedOut => return Cause::Timeout,
                _ => {}
            }
        }
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Cause::Tls(tls.to_string());
        }
        chain.push(e.to_string());
        current = e.source();
    }
    classify_text(&chain)
}

/// The text half of [`classify`]: names a cause from the messages of an error chain.
pub fn classify_text(chain: &[String]) -> Cause {
    let all = chain.join(": ").to_ascii_lowercase();
    let innermost = chain.last().cloned().unwrap_or_default();
    if all.contains("dns error")
        || all.contains("failed to lookup address")
        || all.contains("name or service not known")
        || all.contains("no address associated")
    {
        Cause::Dns
    } else if all.contains("connection refused") {
        Cause::Refused
    } else if all.contains("certificate")
        || all.contains("tls")
        || all.contains("handshake")
        || all.contains("invalidcontenttype")
    {
        Cause::Tls(innermost)
    } else if all.contains("timed out") || all.contains("timeout") {
        Cause::Timeout
    } else if all.contains("connection closed")
        || all.contains("connection reset")
        || all.contains("broken pipe")
        || all.contains("incomplete message")
        || all.contains("unexpected eof")
        || all.contains("end of file")
    {
        Cause::Closed
    } else {
        Cause::Other(innermost)
    }
}

/// The `error_description` of a 401's `WWW-Authenticate: Bearer …` header.
fn bearer_error_description(resp: &reqwest::Response) -> String {
    let header = resp
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    header
        .split("error_description=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(|d| d.chars().take(300).collect())
        .unwrap_or_else(|| "401 Unauthorized".to_owned())
}

/// A client for one hub. Cheap to clone.
#[derive(Clone)]
pub struct HubClient {
    http: reqwest::Client,
    hub: HubUrl,
    /// The sign-in whose bearer token goes with every request.
    auth: Option<Arc<SpokeAuth>>,
}

impl HubClient {
    /// A client for `hub`, trusting the platform's roots plus those in `ca` (PEM).
    pub fn new(hub: HubUrl, ca: Option<&Path>) -> Result<Self, SyncError> {
        crate::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // Below the hub's idle-connection timeout, so a pooled connection
            // is never reused just as the hub closes it.
            .pool_idle_timeout(Duration::from_secs(5))
            .user_agent(concat!("hephd/", env!("CARGO_PKG_VERSION")))
            .no_proxy();
        if let Some(path) = ca {
            let pem = std::fs::read(path).map_err(|e| {
                SyncError::Setup(format!("cannot read --hub-ca {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                SyncError::Setup(format!(
                    "--hub-ca {} holds no usable PEM certificate: {e}",
                    path.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(SyncError::Setup(format!(
                    "--hub-ca {} holds no PEM certificate",
                    path.display()
                )));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| SyncError::Setup(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            hub,
            auth: None,
        })
    }

    /// Sends `auth`'s bearer token with every request.
    pub fn with_auth(mut self, auth: Arc<SpokeAuth>) -> Self {
        self.auth = Some(auth);
        self
    }

    /// The sign-in, if any.
    pub fn auth(&self) -> Option<Arc<SpokeAuth>> {
        self.auth.clone()
    }

    /// Sends a request built by `build`, with the bearer token. A 401 gets
    /// one refresh and one retry; a 403 `not_member` and every answer are
    /// reported to the sign-in's health.
    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, SyncError> {
        let mut retried = false;
        loop {
            let mut request = build();
            if let Some(auth) = &self.auth {
                if let Some(token) = auth.bearer().await {
                    request = request.bearer_auth(token.expose());
                }
            }
            let resp = request.send().await.map_err(|e| self.unreachable(e))?;
            let Some(auth) = &self.auth else {
                return Ok(resp);
            };
            match resp.status().as_u16() {
                401 => {
                    let description = bearer_error_description(&resp);
                    if auth.unauthorized(&description, retried).await == AfterUnauthorized::Retry {
                        retried = true;
                        continue;
                    }
                }
                403 => {}
                s if s < 400 => auth.accepted(),
                _ => {}
            }
            return Ok(resp);
        }
    }

    /// The hub this client talks to.
    pub fn hub(&self) -> &HubUrl {
        &self.hub
    }

    fn unreachable(&self, e: reqwest::Error) -> SyncError {
        SyncError::Unreachable {
            url: self.hub.to_string(),
            cause: classify(&e),
            source: Some(e),
        }
    }

    /// Reads a JSON answer, turning an error status into [`SyncError::Rejected`].
    async fn answer<T: DeserializeOwned>(&self, resp: reqwest::Response) -> Result<T, SyncError> {
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        if !status.is_success() {
            let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(ErrorBody {
                    error,
                    message,
                    hlc: Some(hlc),
                }) if error == error_code::HLC_COLLISION => {
                    return Err(SyncError::Collision {
                        url: self.hub.to_string(),
                        hlc,
                        message,
                    });
                }
                Ok(body) => (body.error, body.message),
                Err(_) => (
                    "http_error".to_owned(),
                    format!(
                        "{} (the body is not a heph error: {:?})",
                        status.canonical_reason().unwrap_or("error"),
                        String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                    ),
                ),
            };
            if status.as_u16() == 403 && code == "not_member" {
                if let Some(auth) = &self.auth {
                    auth.not_member(&message);
                }
            }
            return Err(SyncError::Rejected {
                url: self.hub.to_string(),
                status: status.as_u16(),
                code,
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| SyncError::BadResponse {
            url: self.hub.to_string(),
            reason: e.to_string(),
        })
    }

    /// `GET /sync/pull?after=…&limit=…&wait=…`.
    pub async fn pull(
        &self,
        after: u64,
        limit: usize,
        wait_secs: u64,
    ) -> Result<PullResponse, SyncError> {
        self.pull_checked(after, limit, wait_secs, None, None).await
    }

    /// [`pull`](Self::pull) naming the hub log the cursor belongs to and a
    /// position seen in it, so the hub says at once when its log changed
    /// (see [`heph_core::hub_log`]).
    pub async fn pull_checked(
        &self,
        after: u64,
        limit: usize,
        wait_secs: u64,
        log: Option<&str>,
        seen: Option<heph_core::hub_log::Seen>,
    ) -> Result<PullResponse, SyncError> {
        let mut url = format!("{}?after={after}&limit={limit}", self.hub.join(route::PULL));
        if wait_secs > 0 {
            url.push_str(&format!("&wait={wait_secs}"));
        }
        if let Some(log) = log {
            url.push_str(&format!("&log={log}"));
            if let Some(seen) = seen {
                url.push_str(&format!("&seen={}&seen_hlc={}", seen.seq, seen.hlc));
            }
        }
        let resp = self
            .send(|| {
                self.http
                    .get(&url)
                    .timeout(REQUEST_TIMEOUT + Duration::from_secs(wait_secs))
            })
            .await?;
        self.answer(resp).await
    }

    /// `POST /sync/push` with an already-encoded `{"ops":[…]}` body.
    pub async fn push_encoded(&self, body: Vec<u8>) -> Result<PushResponse, SyncError> {
        let body = hyper::body::Bytes::from(body);
        let resp = self
            .send(|| {
                self.http
                    .post(self.hub.join(route::PUSH))
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .timeout(REQUEST_TIMEOUT)
                    .body(body.clone())
            })
            .await?;
        self.answer(resp).await
    }

    /// `POST /sync/push`.
    pub async fn push(&self, ops: &[Op]) -> Result<PushResponse, SyncError> {
        let body = serde_json::to_vec(&PushRequest { ops: ops.to_vec() })
            .map_err(|e| SyncError::Setup(format!("cannot encode ops: {e}")))?;
        self.push_encoded(body).await
    }

    /// One JSON-RPC call through the hub's `/rpc` (client mode).
    pub async fn rpc(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let request = Request {
            jsonrpc: "2.0".into(),
            id: Some(Value::from(1)),
            method: method.into(),
            params,
        };
        let sent = self
            .send(|| {
                self.http
                    .post(self.hub.join(route::RPC))
                    .timeout(REQUEST_TIMEOUT)
                    .json(&request)
            })
            .await;
        let resp: Result<Response, SyncError> = match sent {
            Ok(resp) => self.answer(resp).await,
            Err(e) => Err(e),
        };
        match resp {
            Ok(Response {
                error: Some(err), ..
            }) => Err(err),
            Ok(Response {
                result: Some(result),
                ..
            }) => Ok(result),
            Ok(_) => Err(RpcError::new(
                code::INTERNAL,
                format!(
                    "the hub at {} sent a response with neither result nor error",
                    self.hub
                ),
            )),
            Err(e) => Err(RpcError::new(code::HUB, e.to_string())
                .with_data(serde_json::json!({"hint": e.hint(self.hub.as_str())}))),
        }
    }

    /// `GET /healthz`: whether the hub answers.
    pub async fn health(&self) -> Result<heph_core::wire::Health, SyncError> {
        let resp = self
            .http
            .get(self.hub.join(route::HEALTHZ))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.answer(resp).await
    }

    /// `sync.status` of a client-mode daemon; with `probe`, asks the hub first.
    pub async fn client_status(&self, _probe: bool) -> heph_core::rpc::SyncStatus {
        let hub = self.hub.to_string();
        if let Some((sentence, hint)) = self.auth.as_ref().and_then(|a| a.action_needed()) {
            return heph_core::rpc::SyncStatus {
                configured: true,
                hub_url: Some(hub.clone()),
                hint,
                last_error: Some(sentence),
                message: format!("client mode: the hub at {hub} needs a sign-in"),
                ..Default::default()
            };
        }
        match self.health().await {
            Ok(_) => heph_core::rpc::SyncStatus {
                configured: true,
                hub_url: Some(hub.clone()),
                message: format!("client mode: every request goes to the hub at {hub}"),
                ..Default::default()
            },
            Err(e) => heph_core::rpc::SyncStatus {
                configured: true,
                hub_url: Some(hub.clone()),
                hint: e.hint(&hub),
                last_error: Some(e.to_string()),
                message: format!("client mode: the hub at {hub} does not answer"),
                ..Default::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(chain: &[&str], expected: Cause) {
        let chain: Vec<String> = chain.iter().map(|s| s.to_string()).collect();
        assert_eq!(classify_text(&chain), expected, "{chain:?}");
    }

    #[test]
    fn causes_are_named_from_the_chain() {
        check(
            &[
                "error sending request",
                "client error (Connect)",
                "dns error",
                "failed to lookup address information: Name or service not known",
            ],
            Cause::Dns,
        );
        check(
            &[
                "error sending request",
                "tcp connect error",
                "Connection refused (os error 111)",
            ],
            Cause::Refused,
        );
        check(
            &[
                "error sending request",
                "invalid peer certificate: UnknownIssuer",
            ],
            Cause::Tls("invalid peer certificate: UnknownIssuer".into()),
        );
        check(
            &["error sending request", "operation timed out"],
            Cause::Timeout,
        );
        check(
            &[
                "error sending request",
                "connection closed before message completed",
            ],
            Cause::Closed,
        );
        check(&["something odd"], Cause::Other("something odd".into()));
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_url_and_the_cause() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let hub = HubUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let client = HubClient::new(hub, None).unwrap();
        let err = client.pull(0, 10, 0).await.unwrap_err();
        assert!(
            matches!(
                &err,
                SyncError::Unreachable {
                    cause: Cause::Refused,
                    ..
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains(&format!("http://127.0.0.1:{port}")), "{text}");
        assert!(text.contains("refused"), "{text}");
    }

    /// A hub that accepts only `Bearer at-2` on pulls, refuses pushes as a
    /// non-member, and records every `Authorization` header.
    async fn fake_hub(seen: Arc<std::sync::Mutex<Vec<String>>>) -> HubUrl {
        use axum::http::{HeaderMap, StatusCode, header};
        use axum::routing::{get, post};
        let pull = move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                let auth = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                seen.lock().unwrap().push(auth.clone());
                if auth == "Bearer at-2" {
                    (
                        StatusCode::OK,
                        HeaderMap::new(),
                        r#"{"ops":[],"next":0,"more":false}"#,
                    )
                } else {
                    let mut h = HeaderMap::new();
                    h.insert(
                        header::WWW_AUTHENTICATE,
                        r#"Bearer error="invalid_token", error_description="the token has expired""#
                            .parse()
                            .unwrap(),
                    );
                    (
                        StatusCode::UNAUTHORIZED,
                        h,
                        r#"{"error":"invalid_token","message":"expired"}"#,
                    )
                }
            }
        };
        let app = axum::Router::new().route(route::PULL, get(pull)).route(
            route::PUSH,
            post(|| async {
                (
                    axum::http::StatusCode::FORBIDDEN,
                    r#"{"error":"not_member","message":"alice is not a member of this hub; its owner can run heph hub grant alice --role writer"}"#,
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = HubUrl::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn every_request_carries_the_bearer_and_a_401_refreshes_once() {
        use crate::spoke::auth::tests::{start_fake, tokens};
        use heph_auth::TokenStore;
        let provider = start_fake().await;
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let hub = fake_hub(seen.clone()).await;
        let store = Arc::new(heph_auth::store::MemoryStore::default());
        let issuer = provider.issuer.lock().unwrap().clone();
        let now = 1_000_000;
        store.save(&hub, &tokens(&issuer, now + 600_000)).unwrap();
        let auth = Arc::new(SpokeAuth::new(
            store.clone(),
            hub.clone(),
            Arc::new(heph_core::hlc::ManualClock::new(now)),
            crate::events::Events::new(),
        ));
        auth.reload().await;
        provider.script.lock().unwrap().push((
            200,
            serde_json::json!({"access_token": "at-2", "refresh_token": "rt-2", "expires_in": 300}),
        ));
        let client = HubClient::new(hub.clone(), None)
            .unwrap()
            .with_auth(auth.clone());
        let page = client.pull(0, 10, 0).await.unwrap();
        assert_eq!(page.next, 0);
        assert_eq!(*seen.lock().unwrap(), ["Bearer at-1", "Bearer at-2"]);
        assert_eq!(*provider.seen.lock().unwrap(), ["rt-1"]);
        assert_eq!(
            store
                .load(&hub)
                .unwrap()
                .unwrap()
                .refresh_token
                .unwrap()
                .expose(),
            "rt-2"
        );

        // A 403 not_member becomes the auth state, with the grant command.
        let err = client.push(&[]).await.unwrap_err();
        assert!(
            matches!(err, SyncError::Rejected { status: 403, .. }),
            "{err:?}"
        );
        let s = auth.status();
        assert_eq!((s.state.as_str(), s.action_needed), ("not_member", true));
        assert_eq!(
            s.hint.as_deref(),
            Some("ask the hub's owner to run: heph hub grant alice --role writer")
        );
    }

    #[test]
    fn a_missing_ca_file_is_a_clear_error() {
        let hub = HubUrl::parse("https://hub.example").unwrap();
        let Err(err) = HubClient::new(hub, Some(Path::new("/nonexistent/ca.pem"))) else {
            panic!("a missing CA file was accepted");
        };
        assert!(
            err.to_string()
                .contains("cannot read --hub-ca /nonexistent/ca.pem"),
            "{err}"
        );
    }
}
