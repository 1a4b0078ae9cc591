//! The built-in issuer's HTTP routes: discovery (OpenID Connect Discovery
//! and RFC 8414), the JWKS, device authorization (RFC 8628), the token
//! endpoint and revocation (RFC 7009), plus the verification and invite
//! pages from [`page`](super::page).
//!
//! Requests are `application/x-www-form-urlencoded` as the RFCs say;
//! answers are JSON with `Cache-Control: no-store`, and refusals carry
//! RFC 6749 §5.2 `error`/`error_description`. This module translates HTTP
//! to [`Issuer`] calls and back, and decides nothing itself.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::grants::{DEVICE_GRANT, Issuer, OAuthError};
use super::page::{self, PageState};
use crate::db::Db;
use crate::hub::routes::{BODY_TIMEOUT, BodyError, read_limited};
use crate::hub::serve::PeerAddr;

/// Paths the issuer serves.
pub mod path {
    pub const DISCOVERY: &str = "/.well-known/openid-configuration";
    pub const AS_METADATA: &str = "/.well-known/oauth-authorization-server";
    pub const JWKS: &str = "/oauth/jwks";
    pub const DEVICE_AUTHORIZATION: &str = "/oauth/device_authorization";
    pub const TOKEN: &str = "/oauth/token";
    pub const REVOKE: &str = "/oauth/revoke";
    pub const DEVICE_PAGE: &str = "/device";
    pub const DEVICE_DECISION: &str = "/device/decision";
    pub const INVITE_PAGE: &str = "/invite";
}

/// The largest form body read.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The issuer's routes, to merge into the hub's router.
pub fn router(issuer: Arc<Issuer>, db: Db) -> Router {
    let pages = Arc::new(PageState::new(issuer.clone(), db));
    let oauth = Router::new()
        .route(path::DISCOVERY, get(discovery))
        .route(path::AS_METADATA, get(discovery))
        .route(path::JWKS, get(jwks))
        .route(path::DEVICE_AUTHORIZATION, post(device_authorization))
        .route(path::TOKEN, post(token))
        .route(path::REVOKE, post(revoke))
        .with_state(issuer);
    oauth.merge(page::router(pages))
}

/// Reads a form body (at most [`MAX_FORM_BYTES`], within the hub's body
/// timeout) into its fields; a
/// repeated field is refused, as RFC 6749 §3.1 asks.
pub async fn read_form(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<HashMap<String, String>, OAuthError> {
    let bad = |d: &str| OAuthError::new(400, "invalid_request", d);
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(bad("the body must be application/x-www-form-urlencoded"));
    }
    let bytes = read_limited(body, MAX_FORM_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => OAuthError::new(
                413,
                "invalid_request",
                format!("the form is larger than {MAX_FORM_BYTES} bytes"),
            ),
            BodyError::Timeout => OAuthError::new(
                408,
                "invalid_request",
                format!(
                    "the form did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            ),
            BodyError::Broken(cause) => bad(&format!("the form could not be read: {cause}")),
        })?;
    let mut fields = HashMap::new();
    let pairs =
        form_urlencoded(&bytes).ok_or_else(|| bad("the form is not valid UTF-8 form encoding"))?;
    for (k, v) in pairs {
        if fields.insert(k.clone(), v).is_some() {
            return Err(bad(&format!("the field {k} is repeated")));
        }
    }
    Ok(fields)
}

/// Decodes `a=b&c=d` (with `+` and `%XX`); `None` when it is not a form.
pub fn form_urlencoded(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    serde_urlencoded::from_bytes(bytes).ok()
}

fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut resp = no_store(
            (
                status,
                axum::Json(json!({"error": self.error, "error_description": self.description})),
            )
                .into_response(),
        );
        if let Some(after) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

async fn discovery(State(issuer): State<Arc<Issuer>>) -> Response {
    let mut resp = axum::Json(issuer.discovery()).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

async fn jwks(State(issuer): State<Arc<Issuer>>) -> Response {
    match issuer.jwks().await {
        Ok(keys) => {
            let mut resp = axum::Json(keys).into_response();
            // Short: a rotated key must reach external verifiers soon.
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=60"),
            );
            resp
        }
        Err(e) => e.into_response(),
    }
}

fn field<'a>(form: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    form.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

async fn device_authorization(
    State(issuer): State<Arc<Issuer>>,
    peer: Option<axum::Extension<PeerAddr>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Response {
    let form = match read_form(&headers, body).await {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let address = issuer.client_key(&headers, peer.map(|p| p.0.0));
    match issuer
        .authorize_device(field(&form, "client_id"), field(&form, "scope"), &address)
        .await
    {
        Ok(grant) => no_store(axum::Json(grant).into_response()),
        Err(e) => e.into_response(),
    }
}

async fn token(
    State(issuer): State<Arc<Issuer>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Response {
    let form = match read_form(&headers, body).await {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let client = field(&form, "client_id");
    let result = match field(&form, "grant_type") {
        Some(DEVICE_GRANT) => {
            issuer
                .exchange_device_code(client, field(&form, "device_code"))
                .await
        }
        Some("refresh_token") => issuer.refresh(client, field(&form, "refresh_token")).await,
        Some(other) => Err(OAuthError::new(
            400,
            "unsupported_grant_type",
            format!("this issuer offers the device_code and refresh_token grants, not {other:?}"),
        )),
        None => Err(OAuthError::new(
            400,
            "invalid_request",
            "grant_type is missing",
        )),
    };
    match result {
        Ok(tokens) => no_store(axum::Json(tokens).into_response()),
        Err(e) => e.into_response(),
    }
}

async fn revoke(
    State(issuer): State<Arc<Issuer>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Response {
    let form = match read_form(&headers, body).await {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    match issuer
        .revoke(field(&form, "client_id"), field(&form, "token"))
        .await
    {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode() {
        assert_eq!(
            form_urlencoded(b"a=b+c&d=%41%2b&e").unwrap(),
            vec![
                ("a".into(), "b c".into()),
                ("d".into(), "A+".into()),
                ("e".into(), String::new()),
            ]
        );
    }
}
