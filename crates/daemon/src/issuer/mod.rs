//! The built-in OpenID issuer (`hephd --mode server --builtin-issuer`,
//! DESIGN §7.3 and §7.5): for self-hosters who run no identity provider.
//!
//! The hub becomes a standards-conformant issuer at its own public URL:
//! discovery, a JWKS of ES256 keys kept in the database ([`keys`],
//! [`store`]), the device flow of RFC 8628 with a server-rendered
//! verification page ([`page`]), a token endpoint with refresh-token
//! rotation and reuse detection, and RFC 7009 revocation ([`grants`],
//! [`routes`]). Local accounts have Argon2id passwords ([`passwords`]) and
//! sign-in and device authorization are rate-limited per client
//! ([`limiter`], the client found by [`proxy`]); [`admin`] is `hephd user …` and
//! `hephd issuer rotate-key`, and [`mail`] sends invitations over SMTP. The hub verifies these tokens with the same
//! verifier as an external issuer's, reading the JWKS from the database
//! instead of over HTTP.

pub mod admin;
pub mod grants;
pub mod keys;
pub mod limiter;
pub mod mail;
pub mod page;
pub mod passwords;
pub mod proxy;
pub mod routes;
pub mod store;

pub use grants::{Issuer, IssuerSettings};
pub use store::IssuerStore;
