//! End-to-end tests: the real `hephd` and `heph` binaries over real sockets,
//! each test in its own temporary home.

mod cli;
mod daemon;
mod demo;
mod harness;
mod issuer;
mod issuer_conformance;
mod oidc_hub;
mod oidc_spoke;
mod oidc_support;
mod rpc_authz;
mod sync;
mod tui;
