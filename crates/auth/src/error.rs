//! Failures talking to an identity provider or a hub's metadata, classified
//! (DESIGN §7.2): [`AuthError::Unreachable`] is a transport failure and
//! names the URL and cause; [`AuthError::Rejected`] is an HTTP error answer
//! with its status and RFC 6749 §5.2 `error`/`error_description`;
//! [`AuthError::Insecure`], [`AuthError::Untrusted`] and
//! [`AuthError::ResourceMismatch`] are answers refused before they are used
//! (plain http to another machine, terminal escapes or a non-web URL, a hub
//! metadata document about another resource); [`AuthError::Other`] is
//! anything else (a malformed answer, an issuer that does not match). A
//! provider that answered is never "unreachable". No message here ever holds
//! a token, and every server-supplied string in one has passed through
//! [`heph_core::text`].

/// The three classes every failure falls into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Unreachable,
    Rejected,
    Other,
}

/// What went wrong talking to the provider (or the hub's metadata).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Transport failure: DNS, connect, TLS, timeout, a closed connection.
    #[error("cannot reach {url}: {cause}")]
    Unreachable { url: String, cause: String },
    /// The server answered with an HTTP error.
    #[error("{url} refused the request with HTTP {status}{}", oauth_detail(.error, .description))]
    Rejected {
        url: String,
        status: u16,
        /// RFC 6749 §5.2 `error`, when the body had one.
        error: Option<String>,
        /// RFC 6749 §5.2 `error_description`, when the body had one.
        description: Option<String>,
    },
    /// The provider does not offer the device authorization grant.
    #[error(
        "the identity provider {issuer} does not offer the device authorization grant (its discovery document has no device_authorization_endpoint); enable the device code flow (RFC 8628) for the client, or in the provider"
    )]
    NoDeviceFlow { issuer: String },
    /// A URL that would carry tokens or a sign-in in clear: plain http to a
    /// host that is not this machine.
    #[error(
        "{what} {url} is plain http:// to another machine, so the sign-in and its tokens would cross the network unencrypted; use the provider's https:// URL"
    )]
    Insecure {
        /// What the URL is, e.g. "the issuer" or "the token_endpoint of https://idp.example".
        what: String,
        url: String,
    },
    /// A value the server sent that must not be used: terminal escapes, a
    /// URL that is not an absolute http(s) URL.
    #[error("{from} sent {what} that {reason}; refusing to use it")]
    Untrusted {
        /// The URL that sent it.
        from: String,
        /// What the value is, e.g. "a user_code".
        what: String,
        /// Why it is refused, e.g. "holds control characters".
        reason: &'static str,
    },
    /// The hub's protected-resource metadata names another resource than
    /// the hub URL it was fetched from (RFC 9728 §3.3).
    #[error(
        "the hub at {hub} describes itself as {resource:?}, not {hub}, so its metadata cannot be trusted to name this hub's identity provider (RFC 9728 §3.3)"
    )]
    ResourceMismatch {
        hub: String,
        /// The `resource` value, with unsafe characters removed.
        resource: String,
    },
    /// Anything else: a malformed answer, a mismatched issuer.
    #[error("{0}")]
    Other(String),
}

fn oauth_detail(error: &Option<String>, description: &Option<String>) -> String {
    match (error, description) {
        (Some(e), Some(d)) => format!(": {e} ({d})"),
        (Some(e), None) => format!(": {e}"),
        (None, Some(d)) => format!(": {d}"),
        (None, None) => String::new(),
    }
}

impl AuthError {
    /// The class of this failure.
    pub fn class(&self) -> ErrorClass {
        match self {
            AuthError::Unreachable { .. } => ErrorClass::Unreachable,
            AuthError::Rejected { .. } => ErrorClass::Rejected,
            AuthError::NoDeviceFlow { .. }
            | AuthError::Insecure { .. }
            | AuthError::Untrusted { .. }
            | AuthError::ResourceMismatch { .. }
            | AuthError::Other(_) => ErrorClass::Other,
        }
    }

    /// The RFC 6749 `error` code of a rejection.
    pub fn oauth_error(&self) -> Option<&str> {
        match self {
            AuthError::Rejected { error, .. } => error.as_deref(),
            _ => None,
        }
    }

    /// Whether the provider refused a refresh token or grant for good
    /// (`invalid_grant`): only signing in again helps.
    pub fn is_invalid_grant(&self) -> bool {
        self.oauth_error() == Some("invalid_grant")
    }
}

/// How a device-flow sign-in ends when it does not yield tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// The user (or the provider's policy) refused the request.
    #[error("the sign-in was denied at the identity provider (access_denied)")]
    Denied,
    /// The code expired before it was approved.
    #[error(
        "the sign-in code expired before it was approved (expired_token); run the login again and approve it sooner"
    )]
    Expired,
    #[error(transparent)]
    Auth(#[from] AuthError),
}
