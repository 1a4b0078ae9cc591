//! End-to-end tests: the real `hephd` and `heph` binaries over real sockets,
//! each test in its own temporary home.

mod cli;
mod daemon;
mod harness;
mod issuer;
mod oidc_hub;
mod oidc_spoke;
mod oidc_support;
mod sync;
mod tui;
