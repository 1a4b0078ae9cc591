//! End-to-end tests: the real `hephd` and `heph` binaries over real sockets,
//! each test in its own temporary home.

mod daemon;
mod harness;
