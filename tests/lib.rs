//! Nothing lives here: the end-to-end tests are in `e2e/`, one test binary
//! with a module per area, so cold builds link it once.
