//! The hub (`hephd --mode server`): the HTTP side of DESIGN §4.
//!
//! [`serve`] owns the TCP listener, TLS, the connection limit and the
//! timeouts that keep slow or stalled clients from exhausting the hub;
//! [`routes`] holds the handlers; [`auth`] is the one place that decides
//! who a request comes from, using [`bearer`] (token checks), [`jwks`] (the
//! provider's keys) and [`members`] (who may do what); [`api_error`] shapes every refusal;
//! [`log_id`] keeps the identity of the hub's log. Nothing outside this
//! module knows about HTTP serving.

pub mod api_error;
pub mod auth;
pub mod bearer;
pub mod jwks;
pub mod log_id;
pub mod members;
pub mod routes;
pub mod serve;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
#[cfg(test)]
mod tests;

pub use serve::{HubError, load_tls};
