//! The one place that decides who a hub request comes from.
//!
//! Every protected route (push, pull, rpc) passes through [`require`], which
//! asks the configured [`Policy`] for a [`Caller`] and stores it in the
//! request's extensions; handlers read it from there. Bearer verification
//! (DESIGN §7.1) plugs in here as another policy, without touching the
//! routes. Public routes (`/healthz`, the protected-resource metadata) do
//! not pass through it. It must never log a token.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::api_error::ApiError;
use super::routes::HubState;

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Caller {
    /// Nobody verified: the hub runs with `--insecure-no-auth` on loopback.
    Unverified,
}

/// How the hub decides who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Policy {
    /// `--insecure-no-auth`: every request is served as [`Caller::Unverified`].
    /// Only allowed on a loopback address (checked at start).
    InsecureNoAuth,
}

impl Policy {
    /// The caller of a request with these headers, or the refusal to send.
    pub async fn identify(&self, _headers: &axum::http::HeaderMap) -> Result<Caller, ApiError> {
        match self {
            Policy::InsecureNoAuth => Ok(Caller::Unverified),
        }
    }
}

/// Middleware for protected routes: identifies the caller or refuses.
pub async fn require(State(state): State<Arc<HubState>>, mut req: Request, next: Next) -> Response {
    match state.auth.identify(req.headers()).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}
