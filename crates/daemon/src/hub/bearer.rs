//! Bearer-token verification (DESIGN §7.1): from an `Authorization` header
//! to a typed [`Verdict`].
//!
//! Only asymmetric signatures from the issuer's JWKS count (RS/PS 256–512,
//! ES256/384, EdDSA); the algorithm must be the one the JWK allows, so
//! `alg: none`, every HMAC algorithm and a header/JWK mismatch are refused.
//! `jku`, `x5u` and an embedded `jwk` header are never used to find a key.
//! `exp`, `iss` (exact up to one trailing slash), `aud` (must contain the
//! audience) and `sub` are required, `nbf` is honoured, with 60 s leeway.
//! Oversized and malformed tokens fail before any key lookup.
//!
//! Only access tokens count ([`token_kind`], decided in
//! `docs/decisions.md`, 2026-12-02): a `typ` header of `at+jwt` (RFC 9068)
//! is an access token; any other specific type (`logout+jwt`,
//! `id_token+jwt`, …) is refused before any key lookup; a token without
//! `typ` or with the generic `JWT` must show an access token's shape and
//! none of an ID token's. A `sub` that is empty, over 255 bytes or holds
//! control characters is refused, so no log line or message built from it
//! can carry them. This module never logs or returns a token's text, and
//! it does not know about members (see [`members`](super::members)) or
//! HTTP responses (see [`auth`](super::auth)).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

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
    #[error(
        "the token's sub is empty, longer than 255 bytes or holds control characters; the hub takes it for a name"
    )]
    BadSubject,
    #[error(
        "the token is of type {0}, not an access token (at+jwt); send the access token of the token response"
    )]
    NotAccessToken(String),
    #[error(
        "an ID token is not an access token ({0}); send the access token of the token response, and give the hub an audience of its own (see docs/operations.md)"
    )]
    IdToken(String),
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

/// What a token's `typ` header declares (RFC 7515 §4.1.9, RFC 9068 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    /// `at+jwt` or `application/at+jwt` (any case): an access token.
    AccessToken,
    /// No `typ`, or the generic `JWT`: the claims decide ([`token_kind`]).
    Untyped,
}

/// Claims only an ID token carries (OpenID Connect Core §2, §3.3.2.11; FAPI).
const ID_TOKEN_CLAIMS: [&str; 4] = ["nonce", "at_hash", "c_hash", "s_hash"];

/// Whether verified `claims` of a token that `declared` itself so are an
/// access token for this hub, whose client id is `client_id`.
///
/// A typed access token (`at+jwt`) is one. An untyped token is refused
/// when it carries an ID-token claim (`nonce`, `at_hash`, `c_hash`,
/// `s_hash`) or a `typ` claim other than `Bearer` (Keycloak marks its ID
/// tokens `ID`); it is accepted when it carries a `scope` or `scp`; without
/// one it is refused when its `aud` is only the client id, and when its
/// `aud` names the client id at all unless it carries `client_id` or
/// Keycloak's `typ: Bearer`. What is left names an audience other than the
/// client id and no ID-token claim: an access token for an API audience.
pub fn token_kind(
    declared: Declared,
    claims: &Map<String, Value>,
    client_id: &str,
) -> Result<(), Rejection> {
    if declared == Declared::AccessToken {
        return Ok(());
    }
    if let Some(name) = ID_TOKEN_CLAIMS.iter().find(|c| claims.contains_key(**c)) {
        return Err(Rejection::IdToken(format!(
            "it carries {name}, which only ID tokens do"
        )));
    }
    let bearer = match claims.get("typ") {
        None => false,
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => true,
        Some(Value::String(t)) if t.eq_ignore_ascii_case("id") => {
            return Err(Rejection::IdToken("its typ claim is ID".into()));
        }
        Some(Value::String(t)) => {
            return Err(Rejection::NotAccessToken(format!(
                "{} (its typ claim)",
                printable(t)
            )));
        }
        Some(_) => return Err(Rejection::BadClaim("typ".into())),
    };
    let scoped = claims.get("scope").is_some_and(Value::is_string)
        || claims
            .get("scp")
            .is_some_and(|v| v.is_string() || v.is_array());
    if scoped {
        return Ok(());
    }
    let auds: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let names_client = !client_id.is_empty() && auds.contains(&client_id);
    if names_client && auds.iter().all(|a| *a == client_id) {
        return Err(Rejection::IdToken(format!(
            "its only audience is the client id {} and it carries no scope",
            printable(client_id)
        )));
    }
    let marked = bearer || claims.get("client_id").is_some_and(Value::is_string);
    if names_client && !marked {
        return Err(Rejection::IdToken(format!(
            "its audience names the client id {} and it carries no scope, scp or client_id",
            printable(client_id)
        )));
    }
    Ok(())
}

/// Token-supplied text fit for a message: printable ASCII, at most 40 characters.
fn printable(raw: &str) -> String {
    let shown: String = raw
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(40)
        .collect();
    if shown.is_empty() {
        "(empty)".into()
    } else {
        shown
    }
}

/// Whether `sub` may name a member: not empty, at most 255 bytes, no
/// control or bidirectional-formatting characters (which could forge or
/// disguise log lines and messages).
pub fn valid_subject(sub: &str) -> bool {
    !sub.is_empty()
        && sub.len() <= 255
        && !sub.chars().any(|c| {
            c.is_control()
                || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
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
        let (alg, kid, declared) = match inspect(token) {
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
        // The audience is checked below, after the token's kind, so that an
        // ID token is named as such whatever its audience.
        v.validate_aud = false;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v) {
            Ok(data) => match self.check_claims(declared, &data.claims) {
                Ok(sub) => Verdict::Valid { sub },
                Err(r) => Verdict::Invalid(r),
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

impl Verifier {
    /// The checks after the signature: the token's kind, its audience, its subject.
    fn check_claims(
        &self,
        declared: Declared,
        claims: &Map<String, Value>,
    ) -> Result<String, Rejection> {
        token_kind(declared, claims, &self.settings.client_id)?;
        let audience = self.settings.audience.as_str();
        let for_us = match claims.get("aud") {
            Some(Value::String(a)) => a == audience,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
            None => return Err(Rejection::MissingClaim("aud".into())),
            Some(_) => return Err(Rejection::BadClaim("aud".into())),
        };
        if !for_us {
            return Err(Rejection::WrongAudience(audience.to_owned()));
        }
        match claims.get("sub") {
            None => Err(Rejection::MissingClaim("sub".into())),
            Some(Value::String(sub)) if valid_subject(sub) => Ok(sub.clone()),
            Some(_) => Err(Rejection::BadSubject),
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
/// asymmetric), the `kid` and the declared type (a specific type other
/// than `at+jwt` is refused here). `jku`, `x5u`, `jwk` are deliberately
/// unread.
fn inspect(token: &str) -> Result<(Algorithm, Option<String>, Declared), Rejection> {
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
    let declared = match obj.get("typ") {
        None => Declared::Untyped,
        Some(Value::String(t)) => {
            // RFC 7515 §4.1.9: "application/" may be left out; case-insensitive.
            let lower = t.to_ascii_lowercase();
            match lower.strip_prefix("application/").unwrap_or(&lower) {
                "at+jwt" => Declared::AccessToken,
                "jwt" => Declared::Untyped,
                _ => return Err(Rejection::NotAccessToken(printable(t))),
            }
        }
        Some(_) => return Err(Rejection::Malformed("its typ is not a string")),
    };
    Ok((alg, kid, declared))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    fn check_shape(token: &str, want: Result<&str, Rejection>) {
        match (inspect(token), want) {
            (Ok((alg, _, _)), Ok(a)) => assert_eq!(format!("{alg:?}"), a),
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
