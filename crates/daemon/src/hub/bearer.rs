//! Bearer-token verification (DESIGN §7.1): from an `Authorization` header
//! to a typed [`Verdict`].
//!
//! Only asymmetric signatures from the issuer's JWKS count (RS/PS 256–512,
//! ES256/384, EdDSA); the algorithm must be the one the JWK allows, so
//! `alg: none`, every HMAC algorithm and a header/JWK mismatch are refused.
//! `jku`, `x5u` and an embedded `jwk` header are never used to find a key.
//! `exp`, `iss` (exact up to one trailing slash), `aud` (must contain the
//! audience) and `sub` are required, `nbf` is honoured, with 60 s leeway.
//! Oversized and malformed tokens fail before any key lookup. This module
//! never logs or returns a token's text, and it does not know about members
//! (see [`members`](super::members)) or HTTP responses (see [`auth`](super::auth)).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::jwks::{JwksPolicy, KeySource, Lookup};

/// The largest `Authorization` value read (a real access token is a few KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Clock leeway for `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 60;

/// The hub's OpenID settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// The issuer URL as configured (compared tolerating one trailing slash).
    pub issuer: String,
    /// The audience every token must carry.
    pub audience: String,
    /// The client id spokes should use (published in the metadata).
    pub client_id: String,
    /// The scopes spokes should request (published in the metadata).
    pub scopes: Vec<String>,
}

/// Why a token was refused; each reads as one sentence for
/// `error_description` (never containing the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    #[error(
        "no bearer token: send Authorization: Bearer <access token>; sign in with heph auth login"
    )]
    Missing,
    #[error("the Authorization header is not a Bearer token")]
    NotBearer,
    #[error("the access token is larger than {} KiB", MAX_TOKEN_BYTES / 1024)]
    TooLarge,
    #[error("access tokens are accepted only in the Authorization header, never in the URL")]
    InQuery,
    #[error(
        "the access token is not a JWT: the identity provider issues opaque access tokens; configure it to issue JWT access tokens for this hub's audience (see docs/operations.md)"
    )]
    Opaque,
    #[error(
        "the access token is encrypted (JWE); configure the provider to issue signed JWT access tokens (see docs/operations.md)"
    )]
    Encrypted,
    #[error("the access token is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "the token's algorithm {0} is not accepted; only RS256/384/512, PS256/384/512, ES256/384 and EdDSA signatures from the provider's keys are"
    )]
    Algorithm(String),
    #[error("the token's algorithm {header} does not match its signing key")]
    AlgorithmMismatch { header: String },
    #[error("the token is signed by a key the identity provider does not publish")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired; heph refreshes it, or sign in again with heph auth login")]
    Expired,
    #[error("the token is not valid yet (nbf is in the future); check this machine's clock")]
    NotYetValid,
    #[error("the token was issued by another issuer than {0}")]
    WrongIssuer(String),
    #[error("the token is not meant for this hub: its aud does not contain {0}")]
    WrongAudience(String),
    #[error("the token has no {0} claim")]
    MissingClaim(String),
    #[error("the token's {0} claim is invalid")]
    BadClaim(String),
}

/// The outcome of checking a request's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A valid token for this hub, from this subject.
    Valid { sub: String },
    /// Refused: a 401.
    Invalid(Rejection),
    /// The provider's keys cannot be read: a 503.
    Unavailable {
        retry_after: Duration,
        reason: String,
    },
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<Value>,
}

/// Verifies bearer tokens for one issuer and audience.
pub struct Verifier {
    pub settings: OidcSettings,
    keys: KeySource,
}

impl Verifier {
    /// A verifier; nothing is fetched until the first token arrives.
    pub fn new(
        settings: OidcSettings,
        policy: JwksPolicy,
    ) -> Result<Self, super::jwks::FetchError> {
        let keys = KeySource::new(&settings.issuer, policy)?;
        Ok(Self { settings, keys })
    }

    /// A verifier over an existing key source (tests inject a clock).
    pub fn with_keys(settings: OidcSettings, keys: KeySource) -> Self {
        Self { settings, keys }
    }

    /// The key source (for fetch counts in tests).
    pub fn keys(&self) -> &KeySource {
        &self.keys
    }

    /// Checks the `Authorization` header value (None when absent) and the
    /// raw query string (a token there is refused).
    pub async fn verify(&self, authorization: Option<&[u8]>, query: Option<&str>) -> Verdict {
        if query.is_some_and(query_has_token) {
            return Verdict::Invalid(Rejection::InQuery);
        }
        let token = match bearer_token(authorization) {
            Ok(t) => t,
            Err(r) => return Verdict::Invalid(r),
        };
        let (alg, kid) = match inspect(token) {
            Ok(h) => h,
            Err(r) => return Verdict::Invalid(r),
        };
        let key = match self.keys.key(kid.as_deref()).await {
            Lookup::Found(k) => k,
            Lookup::Unknown => return Verdict::Invalid(Rejection::UnknownKey),
            Lookup::Unavailable {
                retry_after,
                reason,
            } => {
                return Verdict::Unavailable {
                    retry_after,
                    reason,
                };
            }
        };
        if !key.allows(alg) {
            return Verdict::Invalid(Rejection::AlgorithmMismatch {
                header: format!("{alg:?}"),
            });
        }
        let issuer = self.settings.issuer.trim_end_matches('/');
        let mut v = Validation::new(alg);
        v.algorithms = vec![alg];
        v.leeway = LEEWAY_SECS;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_issuer(&[issuer.to_owned(), format!("{issuer}/")]);
        v.set_audience(&[self.settings.audience.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        match jsonwebtoken::decode::<Claims>(token, &key.key, &v) {
            Ok(data) => match data.claims.sub {
                None => Verdict::Invalid(Rejection::MissingClaim("sub".into())),
                Some(Value::String(sub)) if !sub.is_empty() && sub.len() <= 255 => {
                    Verdict::Valid { sub }
                }
                _ => Verdict::Invalid(Rejection::BadClaim("sub".into())),
            },
            Err(e) => Verdict::Invalid(match e.kind() {
                ErrorKind::ExpiredSignature => Rejection::Expired,
                ErrorKind::ImmatureSignature => Rejection::NotYetValid,
                ErrorKind::InvalidIssuer => Rejection::WrongIssuer(issuer.to_owned()),
                ErrorKind::InvalidAudience => {
                    Rejection::WrongAudience(self.settings.audience.clone())
                }
                ErrorKind::MissingRequiredClaim(c) => Rejection::MissingClaim(c.clone()),
                ErrorKind::InvalidClaimFormat(c) => Rejection::BadClaim(c.clone()),
                ErrorKind::InvalidSignature => Rejection::BadSignature,
                ErrorKind::InvalidAlgorithm => Rejection::AlgorithmMismatch {
                    header: format!("{alg:?}"),
                },
                ErrorKind::Json(_) => {
                    Rejection::Malformed("its claims are not a JSON object with the expected types")
                }
                _ => Rejection::Malformed("it cannot be decoded"),
            }),
        }
    }
}

/// Whether a query string carries an `access_token` parameter (RFC 6750 §2.3,
/// which the hub refuses).
fn query_has_token(query: &str) -> bool {
    query.split('&').any(|p| {
        let key = p.split_once('=').map_or(p, |(k, _)| k);
        key.eq_ignore_ascii_case("access_token")
    })
}

/// The token of `Authorization: Bearer <token>`.
fn bearer_token(header: Option<&[u8]>) -> Result<&str, Rejection> {
    let raw = header.ok_or(Rejection::Missing)?;
    if raw.len() > MAX_TOKEN_BYTES + 7 {
        return Err(Rejection::TooLarge);
    }
    let text = std::str::from_utf8(raw).map_err(|_| Rejection::Malformed("it is not text"))?;
    let (scheme, token) = text.split_once(' ').ok_or(Rejection::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Rejection::NotBearer);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Rejection::Missing);
    }
    Ok(token)
}

/// Shape and header checks before any key lookup: the algorithm (must be
/// asymmetric) and the `kid`. `jku`, `x5u`, `jwk` are deliberately unread.
fn inspect(token: &str) -> Result<(Algorithm, Option<String>), Rejection> {
    let is_b64 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let parts: Vec<&str> = token.split('.').collect();
    match parts.len() {
        1 => return Err(Rejection::Opaque),
        3 => {}
        5 => return Err(Rejection::Encrypted),
        _ => return Err(Rejection::Malformed("a JWT has three dot-separated parts")),
    }
    if parts.iter().any(|p| !is_b64(p)) {
        return Err(Rejection::Malformed("it is not base64url"));
    }
    if parts[0].is_empty() || parts[1].is_empty() {
        return Err(Rejection::Malformed("its header or claims are empty"));
    }
    if parts[2].is_empty() {
        return Err(Rejection::Malformed("it is unsigned"));
    }
    let header_bytes = URL_SAFE_NO_PAD
        .decode(parts[0])
        .map_err(|_| Rejection::Malformed("its header is not base64url"))?;
    let header: Value = serde_json::from_slice(&header_bytes)
        .map_err(|_| Rejection::Malformed("its header is not JSON"))?;
    let obj = header
        .as_object()
        .ok_or(Rejection::Malformed("its header is not a JSON object"))?;
    if obj.contains_key("crit") {
        return Err(Rejection::Malformed(
            "its header lists critical extensions the hub does not support",
        ));
    }
    let alg_text = obj
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(Rejection::Malformed("its header has no alg"))?;
    let alg = match alg_text {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        other => {
            let shown: String = other
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(16)
                .collect();
            return Err(Rejection::Algorithm(if shown.is_empty() {
                "(empty)".into()
            } else {
                shown
            }));
        }
    };
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(k)) if k.len() <= 256 => Some(k.clone()),
        Some(_) => return Err(Rejection::Malformed("its kid is not a short string")),
    };
    Ok((alg, kid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    fn check_shape(token: &str, want: Result<&str, Rejection>) {
        match (inspect(token), want) {
            (Ok((alg, _)), Ok(a)) => assert_eq!(format!("{alg:?}"), a),
            (Err(got), Err(w)) => assert_eq!(got, w, "{token:.60}"),
            (got, w) => panic!("{token:.60}: got {got:?}, want {w:?}"),
        }
    }

    #[test]
    fn shapes_and_algorithms_are_checked_before_any_key_lookup() {
        let claims = b64(&serde_json::json!({"sub":"a"}));
        let h = |v: Value| format!("{}.{claims}.c2ln", b64(&v));
        check_shape(
            &h(serde_json::json!({"alg":"RS256","kid":"k"})),
            Ok("RS256"),
        );
        check_shape(&h(serde_json::json!({"alg":"EdDSA"})), Ok("EdDSA"));
        check_shape(
            &h(serde_json::json!({"alg":"none"})),
            Err(Rejection::Algorithm("none".into())),
        );
        check_shape(
            &h(serde_json::json!({"alg":"HS256"})),
            Err(Rejection::Algorithm("HS256".into())),
        );
        check_shape(
            &h(serde_json::json!({"alg":"HS512"})),
            Err(Rejection::Algorithm("HS512".into())),
        );
        check_shape(
            &h(serde_json::json!({"typ":"JWT"})),
            Err(Rejection::Malformed("its header has no alg")),
        );
        check_shape(
            &h(serde_json::json!({"alg":"RS256","crit":["b64"]})),
            Err(Rejection::Malformed(
                "its header lists critical extensions the hub does not support",
            )),
        );
        check_shape("opaqueTokenWithoutDots", Err(Rejection::Opaque));
        check_shape("a.b.c.d.e", Err(Rejection::Encrypted));
        check_shape(
            "a.b",
            Err(Rejection::Malformed("a JWT has three dot-separated parts")),
        );
        check_shape("a$.b.c", Err(Rejection::Malformed("it is not base64url")));
        check_shape(
            &format!("{}.{claims}.", b64(&serde_json::json!({"alg":"none"}))),
            Err(Rejection::Malformed("it is unsigned")),
        );
        check_shape(
            "e30.e30.c2ln",
            Err(Rejection::Malformed("its header has no alg")),
        );
        check_shape(
            "bm90anNvbg.e30.c2ln",
            Err(Rejection::Malformed("its header is not JSON")),
        );
    }

    #[test]
    fn only_the_authorization_header_carries_a_token() {
        assert_eq!(bearer_token(None), Err(Rejection::Missing));
        assert_eq!(
            bearer_token(Some(b"Basic dXNlcjpwdw==")),
            Err(Rejection::NotBearer)
        );
        assert_eq!(bearer_token(Some(b"Bearer ")), Err(Rejection::Missing));
        assert_eq!(bearer_token(Some(b"bearer abc")), Ok("abc"));
        let huge = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert_eq!(
            bearer_token(Some(huge.as_bytes())),
            Err(Rejection::TooLarge)
        );
        assert!(query_has_token("after=0&access_token=x"));
        assert!(query_has_token("ACCESS_TOKEN"));
        assert!(!query_has_token("after=0&limit=10"));
    }
}
