//! The hub's HTTP wire types (DESIGN §4): push and pull bodies (each answer
//! names the hub log's id, see [`crate::hub_log`]), the error body, health
//! and protected-resource metadata, the limits both sides enforce, and the
//! normalized form of a hub URL.
//!
//! The hub (`hephd --mode server`) and the spoke share these types so they
//! cannot drift. New fields get `#[serde(default)]` so an older peer still
//! parses a newer message. This module does no I/O (except
//! [`HubUrl::is_loopback`], through [`crate::net`]); `docs/protocol.md`
//! shows every route with examples.

use serde::{Deserialize, Serialize};

use crate::hlc::Hlc;
use crate::op::Op;

/// The most ops one push may carry.
pub const MAX_PUSH_OPS: usize = 5_000;
/// The largest push body, in bytes.
pub const MAX_PUSH_BYTES: usize = 8 * 1024 * 1024;
/// The largest `/rpc` body, in bytes (the socket's line limit).
pub const MAX_RPC_BYTES: usize = crate::rpc::MAX_LINE_BYTES;
/// Ops per pull when `limit` is not given.
pub const DEFAULT_PULL_LIMIT: usize = 1_000;
/// The largest `limit` a pull may ask for.
pub const MAX_PULL_LIMIT: usize = 10_000;
/// The longest long poll, in seconds.
pub const MAX_PULL_WAIT_SECS: u64 = 60;

/// Routes the hub serves.
pub mod route {
    pub const PUSH: &str = "/sync/push";
    pub const PULL: &str = "/sync/pull";
    pub const RPC: &str = "/rpc";
    pub const HEALTHZ: &str = "/healthz";
    pub const PROTECTED_RESOURCE: &str = "/.well-known/oauth-protected-resource";
}

/// The `error` codes of an [`ErrorBody`].
pub mod error_code {
    /// The body is not JSON.
    pub const MALFORMED_JSON: &str = "malformed_json";
    /// The body is JSON of the wrong shape (missing key, wrong type, bad HLC or id).
    pub const INVALID_BODY: &str = "invalid_body";
    /// An op's field or value breaks DESIGN §2.
    pub const INVALID_OP: &str = "invalid_op";
    /// A query parameter is missing its value, not a number, or out of range.
    pub const INVALID_QUERY: &str = "invalid_query";
    /// The body or the batch is over its limit.
    pub const TOO_LARGE: &str = "too_large";
    /// The request body uses a `Content-Encoding` the hub does not accept.
    pub const UNSUPPORTED_ENCODING: &str = "unsupported_encoding";
    /// The body is not `application/json`.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// No such route.
    pub const NOT_FOUND: &str = "not_found";
    /// The route exists but not with this method.
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// An op is stamped too far ahead of the hub's clock; retry later.
    pub const CLOCK_SKEW: &str = "clock_skew";
    /// The pull cursor is beyond the hub's log (the hub's database was replaced).
    pub const CURSOR_AHEAD: &str = "cursor_ahead";
    /// 409: an op of the push carries an HLC the hub has logged with different
    /// content (two writers share a replica id); [`ErrorBody::hlc`] names it.
    /// The sender re-stamps its unpushed ops and pushes again.
    pub const HLC_COLLISION: &str = "hlc_collision";
    /// The client sent the body too slowly.
    pub const TIMEOUT: &str = "timeout";
    /// The hub's database failed.
    pub const STORE: &str = "store";
    /// The hub is shutting down.
    pub const SHUTTING_DOWN: &str = "shutting_down";
    /// 401: no bearer token, or one the hub does not accept (see `WWW-Authenticate`).
    pub const INVALID_TOKEN: &str = "invalid_token";
    /// 403: a valid token whose subject is not a member of this hub.
    pub const NOT_MEMBER: &str = "not_member";
    /// 403: a member whose role does not allow this request (a reader pushing).
    pub const FORBIDDEN: &str = "forbidden";
    /// 503: the identity provider or its JWKS cannot be reached to verify tokens.
    pub const AUTH_UNAVAILABLE: &str = "auth_unavailable";
    /// 400: the request's credentials are ambiguous (more than one `Authorization` header).
    pub const INVALID_REQUEST: &str = "invalid_request";
}

/// `POST /sync/push` request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushRequest {
    pub ops: Vec<Op>,
}

/// `POST /sync/push` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushResponse {
    /// Ops logged by this push.
    pub accepted: u64,
    /// Ops the hub already had (a re-sent batch is all duplicates).
    pub duplicates: u64,
    /// The id of the hub's log (absent from an older hub).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// The hub seq of the log's end once the batch committed (0 from an older hub).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
    /// The HLC of the op at `seq`: with `seq`, a position the spoke has
    /// seen in the log (sent back as `seen` and `seen_hlc` in its pulls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hlc: Option<Hlc>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `GET /sync/pull` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullResponse {
    /// Ops with hub `seq > after`, in hub seq order.
    pub ops: Vec<Op>,
    /// The cursor for the next pull: the hub seq of the last op returned
    /// (`after` when none was).
    pub next: u64,
    /// Whether more ops wait beyond `next`.
    pub more: bool,
    /// The id of the hub's log (absent from an older hub). When it is not
    /// the id the spoke sent as `log`, the page is empty with `next` 0: the
    /// spoke's cursors are void, and it pulls from 0 and re-sends all it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

/// The body of every 4xx/5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable code from [`error_code`].
    pub error: String,
    /// One clear sentence.
    pub message: String,
    /// The HLC at fault, for [`error_code::HLC_COLLISION`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hlc: Option<crate::hlc::Hlc>,
}

/// `GET /healthz` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Always `"ok"` when the hub answers.
    pub status: String,
    /// The hub's version.
    pub version: String,
}

/// `GET /.well-known/oauth-protected-resource` reply (RFC 9728).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectedResource {
    /// The hub's own URL.
    pub resource: String,
    /// Issuers whose tokens the hub accepts (empty until OIDC is configured).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_servers: Vec<String>,
    /// How bearer tokens are sent.
    #[serde(default)]
    pub bearer_methods_supported: Vec<String>,
    /// The OIDC client id `heph auth login` should use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heph_client_id: Option<String>,
    /// Scopes to request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
}

/// A hub URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid hub URL {url:?}: {reason}")]
pub struct HubUrlError {
    url: String,
    reason: &'static str,
}

/// A hub URL in its normalized form: lowercase scheme and host, no default
/// port, no trailing slash. It keys per-hub sync state and token stores.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HubUrl {
    normalized: String,
    https: bool,
    host: String,
}

impl HubUrl {
    /// Parses and normalizes `http(s)://host[:port][/path]`.
    pub fn parse(text: &str) -> Result<Self, HubUrlError> {
        let bad = |reason| HubUrlError {
            url: text.chars().take(200).collect(),
            reason,
        };
        let trimmed = text.trim();
        let (scheme, rest) = trimmed
            .split_once("://")
            .ok_or_else(|| bad("it must start with https:// or http://"))?;
        let scheme = scheme.to_ascii_lowercase();
        let https = match scheme.as_str() {
            "https" => true,
            "http" => false,
            _ => return Err(bad("the scheme must be https or http")),
        };
        if rest.contains(['?', '#']) {
            return Err(bad("a hub URL has no query or fragment"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(bad("credentials do not belong in the URL"));
        }
        if authority.is_empty() {
            return Err(bad("the host is missing"));
        }
        let authority = authority.to_ascii_lowercase();
        // Split off a port, minding IPv6 literals like [::1]:8080.
        let (host, port) = match authority.rfind(':') {
            Some(i) if !authority[i..].contains(']') => {
                (authority[..i].to_owned(), Some(&authority[i + 1..]))
            }
            _ => (authority.clone(), None),
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("the host is missing or malformed"));
        }
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(bad("the port must be a number from 1 to 65535")),
                Ok(n) if (https && n == 443) || (!https && n == 80) => None,
                Ok(n) => Some(n),
            },
        };
        let path = path.trim_end_matches('/');
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("the path holds whitespace"));
        }
        let normalized = match port {
            Some(p) => format!("{scheme}://{host}:{p}{path}"),
            None => format!("{scheme}://{host}{path}"),
        };
        Ok(Self {
            normalized,
            https,
            host,
        })
    }

    /// The normalized text.
    pub fn as_str(&self) -> &str {
        &self.normalized
    }

    /// Whether the scheme is https.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The host (an IPv6 literal keeps its brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether the host is this machine: a loopback address, or a
    /// `localhost` name that resolves only to loopback ([`crate::net`]).
    pub fn is_loopback(&self) -> bool {
        crate::net::is_loopback_host(&self.host)
    }

    /// The URL of a route under this hub, e.g. `join("/sync/pull")`.
    pub fn join(&self, route: &str) -> String {
        format!("{}{route}", self.normalized)
    }
}

impl std::fmt::Display for HubUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.normalized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, &str>) {
        match (HubUrl::parse(input), expected) {
            (Ok(u), Ok(want)) => assert_eq!(u.as_str(), want, "{input}"),
            (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{input}: {e}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn hub_urls_normalize() {
        check("https://Hub.Example/", Ok("https://hub.example"));
        check("HTTPS://hub.example:443", Ok("https://hub.example"));
        check("http://hub.example:80/", Ok("http://hub.example"));
        check(
            "https://hub.example:8443/heph/",
            Ok("https://hub.example:8443/heph"),
        );
        check("http://127.0.0.1:9000", Ok("http://127.0.0.1:9000"));
        check("http://[::1]:9000/", Ok("http://[::1]:9000"));
        check("  https://hub.example  ", Ok("https://hub.example"));
        check("ftp://hub.example", Err("scheme must be https or http"));
        check("hub.example", Err("must start with https://"));
        check("https://", Err("host is missing"));
        check("https://u:p@hub.example", Err("credentials"));
        check("https://hub.example?x=1", Err("no query"));
        check("https://hub.example:0", Err("port must be"));
        check("https://hub.example:99999", Err("port must be"));
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for (url, lo) in [
            ("http://127.0.0.1:1", true),
            ("http://127.9.9.9", true),
            ("http://[::1]:8080", true),
            ("http://localhost:8080", true),
            // `*.localhost` counts only if it resolves here: crate::net tests that.
            ("http://localhost.hub.example", false),
            ("http://10.0.0.1", false),
            ("https://hub.example", false),
        ] {
            assert_eq!(HubUrl::parse(url).unwrap().is_loopback(), lo, "{url}");
        }
    }

    #[test]
    fn new_fields_default_when_absent() {
        let r: ProtectedResource =
            serde_json::from_str(r#"{"resource":"https://hub.example"}"#).unwrap();
        assert!(r.authorization_servers.is_empty() && r.heph_client_id.is_none());
        let p: PullResponse = serde_json::from_str(r#"{"ops":[],"next":7,"more":false}"#).unwrap();
        assert_eq!((p.next, p.log), (7, None));
        let p: PushResponse = serde_json::from_str(r#"{"accepted":1,"duplicates":2}"#).unwrap();
        assert_eq!((p.accepted, p.log, p.seq, p.hlc), (1, None, 0, None));
        assert_eq!(
            serde_json::to_string(&PushResponse::default()).unwrap(),
            r#"{"accepted":0,"duplicates":0}"#
        );
    }
}
