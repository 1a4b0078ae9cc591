//! The one place that decides who a hub request comes from.
//!
//! Every protected route (push, pull, rpc) passes through [`require`], which
//! asks the configured [`Policy`] for a [`Caller`] and stores it in the
//! request's extensions; handlers read it from there and check the role
//! they need with [`Caller::allows`]. With OpenID configured the policy
//! verifies the bearer token ([`bearer`](super::bearer)) and looks the
//! subject up in the members table ([`members`](super::members)); every
//! outcome maps to 400 (more than one `Authorization` header), 401, 403 or
//! 503 here — never 500. A 503 tells the caller only that the provider
//! cannot be reached; the cause (URLs, transport errors) goes to the log at
//! warn, never to an unauthenticated caller. Public routes (`/healthz`,
//! the protected-resource metadata) do not pass through it. It never logs a
//! token: refusals log the reason only, and a subject is logged or shown
//! only once [`bearer`](super::bearer) found it free of control characters.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use heph_core::wire::error_code;

use super::api_error::ApiError;
use super::bearer::{Rejection, Verdict, Verifier};
use super::members::{self, Membership, Role};
use super::routes::HubState;

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Caller {
    /// Nobody verified: the hub runs with `--insecure-no-auth` on loopback.
    Unverified,
    /// A verified member.
    Member { sub: String, role: Role },
}

impl Caller {
    /// Whether this caller has at least `role`.
    pub fn allows(&self, role: Role) -> bool {
        match self {
            Caller::Unverified => true,
            Caller::Member { role: own, .. } => *own >= role,
        }
    }

    /// The 403 for a member whose role is below `needed` for `what`.
    pub fn forbidden(&self, needed: Role, what: &str) -> ApiError {
        let (sub, role) = match self {
            Caller::Member { sub, role } => (sub.as_str(), role.with_article()),
            Caller::Unverified => ("(unverified)", "no member"),
        };
        ApiError::new(
            StatusCode::FORBIDDEN,
            error_code::FORBIDDEN,
            format!(
                "{sub} is {role} of this hub and {what} needs {} or above; an owner can run {} on the hub machine",
                needed.as_str(),
                members::grant_hint(sub, needed)
            ),
        )
    }
}

/// How the hub decides who a request comes from.
#[derive(Clone)]
#[non_exhaustive]
pub enum Policy {
    /// `--insecure-no-auth`: every request is served as [`Caller::Unverified`].
    /// Only allowed on a loopback address (checked at start).
    InsecureNoAuth,
    /// `--oidc-issuer`/`--oidc-audience`: a bearer token and membership.
    Oidc(Arc<Verifier>),
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Policy::InsecureNoAuth => f.write_str("InsecureNoAuth"),
            Policy::Oidc(v) => write!(f, "Oidc({:?})", v.settings),
        }
    }
}

impl Policy {
    /// The caller of a request, or the refusal to send.
    pub async fn identify(
        &self,
        state: &HubState,
        authorization: Option<&[u8]>,
        uri: &Uri,
    ) -> Result<Caller, ApiError> {
        let verifier = match self {
            Policy::InsecureNoAuth => return Ok(Caller::Unverified),
            Policy::Oidc(v) => v,
        };
        let sub = match verifier.verify(authorization, uri.query()).await {
            Verdict::Valid { sub } => sub,
            Verdict::Invalid(rejection) => {
                tracing::info!(path = %uri.path(), reason = %rejection, "refused a bearer token");
                return Err(unauthorized(&rejection, &state.public_url));
            }
            Verdict::Unavailable {
                retry_after,
                reason,
            } => {
                tracing::warn!(reason = %reason, "cannot verify a bearer token: the identity provider's keys are unavailable");
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    error_code::AUTH_UNAVAILABLE,
                    UNAVAILABLE_MESSAGE,
                );
                e.retry_after = Some(retry_after.as_secs().max(1));
                return Err(e);
            }
        };
        let lookup_sub = sub.clone();
        let membership = state
            .db
            .call(move |r| members::membership(r, &lookup_sub))
            .await
            .map_err(|_| ApiError::shutting_down())?
            .map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    error_code::STORE,
                    format!("the hub cannot read its members: {e}"),
                )
            })?;
        match membership {
            Membership::Member(role) => Ok(Caller::Member { sub, role }),
            Membership::NotMember => {
                tracing::info!(sub = %sub, "refused a valid token: not a member of this hub");
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    error_code::NOT_MEMBER,
                    format!(
                        "{sub} is not a member of this hub; an owner can admit it with {} on the hub machine",
                        members::grant_hint(&sub, Role::Writer)
                    ),
                ))
            }
            Membership::Empty => {
                tracing::warn!(sub = %sub, "refused a valid token: this hub has no members yet");
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    error_code::NOT_MEMBER,
                    format!(
                        "this hub has no members yet, so {sub} is not one; on the hub machine restart it with hephd --owner-sub {sub} or run {}",
                        members::grant_hint(&sub, Role::Owner)
                    ),
                ))
            }
        }
    }
}

/// The 503 sentence for a token that cannot be checked: no URL, no
/// transport error (those are logged), nothing the provider sent.
pub const UNAVAILABLE_MESSAGE: &str =
    "the hub cannot reach its identity provider to check the token; try again shortly";

/// The 400 for a request with more than one `Authorization` header (RFC
/// 6750 §3.1 `invalid_request`): which one counts would be a guess.
pub fn duplicate_authorization(public_url: &str) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::BAD_REQUEST,
        error_code::INVALID_REQUEST,
        "the request has more than one Authorization header; send exactly one",
    );
    e.www_authenticate = Some(format!(
        "Bearer error=\"invalid_request\", error_description=\"more than one Authorization header\", resource_metadata=\"{}\"",
        metadata_url(public_url)
    ));
    e
}

fn metadata_url(public_url: &str) -> String {
    format!(
        "{}/.well-known/oauth-protected-resource",
        public_url.trim_end_matches('/')
    )
}

/// The 401 with `WWW-Authenticate` (RFC 6750 §3, RFC 9728 §5.1).
pub fn unauthorized(rejection: &Rejection, public_url: &str) -> ApiError {
    let description: String = rejection
        .to_string()
        .chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '\''
            } else {
                c
            }
        })
        .collect();
    let metadata = metadata_url(public_url);
    let mut e = ApiError::new(
        StatusCode::UNAUTHORIZED,
        error_code::INVALID_TOKEN,
        rejection.to_string(),
    );
    e.www_authenticate = Some(format!(
        "Bearer error=\"invalid_token\", error_description=\"{description}\", resource_metadata=\"{metadata}\""
    ));
    e
}

/// Middleware for protected routes: identifies the caller or refuses.
pub async fn require(State(state): State<Arc<HubState>>, mut req: Request, next: Next) -> Response {
    // Two headers would make the token a guess (first wins? last?): refused.
    if req
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        tracing::info!(path = %req.uri().path(), "refused a request with more than one Authorization header");
        return duplicate_authorization(&state.public_url).into_response();
    }
    // Only what the check needs is copied out: the request itself is not
    // `Sync`, so it cannot be borrowed across the verification's awaits.
    let authorization = req.headers().get(header::AUTHORIZATION).cloned();
    let uri = req.uri().clone();
    let token = authorization.as_ref().map(HeaderValue::as_bytes);
    match state.auth.identify(&state, token, &uri).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}
