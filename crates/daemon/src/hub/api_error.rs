//! The hub's error answers: a status code plus `{"error","message"}`.
//!
//! Every refusal the HTTP routes make goes through [`ApiError`], so each
//! one has a stable code from [`heph_core::wire::error_code`] and one clear
//! sentence. It knows nothing about the replica or the routes.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use heph_core::Hlc;
use heph_core::wire::{ErrorBody, error_code};

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// `Retry-After` seconds (503s; defaults to 5).
    pub retry_after: Option<u64>,
    /// A `WWW-Authenticate` challenge (401s).
    pub www_authenticate: Option<String>,
    /// The HLC at fault (409 `hlc_collision`); boxed, so every other
    /// refusal stays small.
    pub hlc: Option<Box<Hlc>>,
}

impl ApiError {
    /// An error with this status, code and sentence.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            www_authenticate: None,
            hlc: None,
        }
    }

    /// A 409 `hlc_collision`: the push carries `hlc`, which the hub has
    /// logged with different content.
    pub fn collision(hlc: Hlc, message: impl Into<String>) -> Self {
        Self {
            hlc: Some(Box::new(hlc)),
            ..Self::new(StatusCode::CONFLICT, error_code::HLC_COLLISION, message)
        }
    }

    /// A 400 `invalid_query`.
    pub fn query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error_code::INVALID_QUERY, message)
    }

    /// A 413 `too_large`.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            error_code::TOO_LARGE,
            message,
        )
    }

    /// The 400/422 for a body that does not parse as `what`.
    pub fn json(err: &serde_json::Error, what: &str) -> Self {
        use serde_json::error::Category;
        match err.classify() {
            Category::Syntax | Category::Eof | Category::Io => Self::new(
                StatusCode::BAD_REQUEST,
                error_code::MALFORMED_JSON,
                format!("the request body is not valid JSON: {err}"),
            ),
            Category::Data => Self::new(
                StatusCode::BAD_REQUEST,
                error_code::INVALID_BODY,
                format!("the request body is not {what}: {err}"),
            ),
        }
    }

    /// A 503 for a daemon that is stopping.
    pub fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            error_code::SHUTTING_DOWN,
            "the hub is shutting down; retry once it has restarted",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(ErrorBody {
                error: self.code.to_owned(),
                message: self.message,
                hlc: self.hlc.map(|h| *h),
            }),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(self.retry_after.unwrap_or(5)),
            );
        }
        if let Some(challenge) = self
            .www_authenticate
            .and_then(|c| axum::http::HeaderValue::from_str(&c).ok())
        {
            resp.headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, challenge);
        }
        resp
    }
}
