//! The hub (`hephd --mode server`): the HTTP side of DESIGN §4.
//!
//! [`serve`] owns the TCP listener, TLS, the connection limit and the
//! timeouts that keep slow or stalled clients from exhausting the hub;
//! [`routes`] holds the handlers; [`auth`] is the one place that decides
//! who a request comes from; [`api_error`] shapes every refusal. Nothing
//! outside this module knows about HTTP serving.

pub mod api_error;
pub mod auth;
pub mod routes;
pub mod serve;

pub use serve::{HubError, load_tls};
