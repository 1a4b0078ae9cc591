//! `hephd`'s log subscriber: the user's filter (`--log-level`, an
//! `EnvFilter` string such as `debug` or `hephd=trace`) for everything, and
//! a fixed cap on the HTTP and TLS libraries that no filter string can lift.
//!
//! At debug and trace those libraries write what crosses the wire: `ureq`'s
//! protocol layer hex-dumps every request and response (a token endpoint's
//! answer holds an access and a refresh token), `hyper`, `h2` and `reqwest`
//! trace headers and frames, `rustls` traces TLS records. The cap is a
//! second filter layered beside the user's, and an event is written only
//! when both let it through, so neither a blanket `trace` nor a directive
//! naming one of those targets (`ureq_proto=trace`,
//! `hyper::proto::h1=trace`, a span or field directive) re-enables them.
//! `log` records (which `ureq` and `rustls` use) pass the same two filters.

use tracing::Subscriber;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Targets (and, by prefix, their modules and `*_…` siblings) capped at
/// [`TRANSPORT_CAP`] whatever the user's filter says.
pub const TRANSPORT_TARGETS: &[&str] = &[
    "h2",
    "hyper",
    "hyper_rustls",
    "hyper_util",
    "lettre",
    "reqwest",
    "rustls",
    "rustls_platform_verifier",
    "tokio_rustls",
    "tower_http",
    "ureq",
    "ureq_proto",
];

/// The most those targets may log: their warnings and errors carry no payload.
pub const TRANSPORT_CAP: LevelFilter = LevelFilter::WARN;

/// The filter used when the user's does not parse.
const FALLBACK: &str = "info";

/// The cap on [`TRANSPORT_TARGETS`]; every other target passes.
pub fn transport_cap() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(TRANSPORT_TARGETS.iter().map(|t| (*t, TRANSPORT_CAP)))
}

/// The user's filter, or [`FALLBACK`] and the reason when `spec` does not parse.
pub fn user_filter(spec: &str) -> (EnvFilter, Option<String>) {
    match EnvFilter::try_new(spec) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new(FALLBACK), Some(e.to_string())),
    }
}

/// The whole subscriber, writing to `writer`; the second value is why the
/// user's filter was replaced by the fallback, if it was.
pub fn subscriber<W>(
    spec: &str,
    format: LogFormat,
    ansi: bool,
    writer: W,
) -> (Box<dyn Subscriber + Send + Sync>, Option<String>)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let (filter, problem) = user_filter(spec);
    let base = tracing_subscriber::registry()
        .with(filter)
        .with(transport_cap());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    let subscriber: Box<dyn Subscriber + Send + Sync> = match format {
        LogFormat::Json => Box::new(base.with(fmt.json())),
        LogFormat::Human => Box::new(base.with(fmt)),
    };
    (subscriber, problem)
}

/// Installs the subscriber for the process, writing to stderr (and routes
/// `log` records through it).
pub fn init(spec: &str, format: LogFormat) {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (subscriber, problem) = subscriber(spec, format, ansi, std::io::stderr);
    if subscriber.try_init().is_ok()
        && let Some(problem) = problem
    {
        tracing::warn!(filter = %spec, %problem, "the log filter does not parse; logging at {FALLBACK}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Everything written, shared with the test.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Capture {
        type Writer = Capture;
        fn make_writer(&'w self) -> Capture {
            self.clone()
        }
    }

    /// Emits one event per (target, level) below and returns what was logged.
    fn logged(spec: &str) -> String {
        let capture = Capture::default();
        let (subscriber, _) = subscriber(spec, LogFormat::Human, false, capture.clone());
        tracing::subscriber::with_default(subscriber, || {
            macro_rules! at_every_level {
                ($($target:literal),*) => {$(
                    let span = tracing::trace_span!(target: $target, "request", x = 1);
                    let _entered = span.enter();
                    tracing::trace!(target: $target, "trace-from-{}", $target);
                    tracing::debug!(target: $target, "debug-from-{}", $target);
                    tracing::info!(target: $target, "info-from-{}", $target);
                    tracing::warn!(target: $target, "warn-from-{}", $target);
                )*};
            }
            at_every_level!(
                "hephd::spoke::auth",
                "ureq_proto::util",
                "ureq::run",
                "hyper::proto::h1::io",
                "hyper_util::client::legacy",
                "reqwest::connect",
                "h2::codec",
                "rustls::conn",
                "tokio_rustls",
                "jsonwebtoken"
            );
        });
        String::from_utf8(capture.0.lock().unwrap().clone()).unwrap()
    }

    const TRANSPORT: &[&str] = &[
        "ureq_proto::util",
        "ureq::run",
        "hyper::proto::h1::io",
        "hyper_util::client::legacy",
        "reqwest::connect",
        "h2::codec",
        "rustls::conn",
        "tokio_rustls",
    ];

    #[test]
    fn no_filter_string_lifts_the_transport_cap() {
        for spec in [
            "trace",
            "ureq_proto=trace,ureq=trace,hyper=trace,hyper_util=trace,reqwest=trace,h2=trace,rustls=trace,tokio_rustls=trace",
            "ureq_proto::util=trace,hyper::proto=trace,hyper_util::client=trace,h2::codec=trace,rustls::conn=trace,reqwest::connect=trace,ureq::run=trace,tokio_rustls=trace",
            "off,[request]=trace",
            "[{x}]=trace",
            "info,ureq_proto[request]=trace",
        ] {
            let out = logged(spec);
            for target in TRANSPORT {
                for level in ["trace", "debug", "info"] {
                    assert!(
                        !out.contains(&format!("{level}-from-{target}")),
                        "{spec}: {level} from {target} got through:\n{out}"
                    );
                }
            }
        }
        // Their warnings still reach the log, as do everyone else's events.
        let out = logged("trace");
        for target in TRANSPORT {
            assert!(
                out.contains(&format!("warn-from-{target}")),
                "{target}:\n{out}"
            );
        }
        assert!(out.contains("trace-from-hephd::spoke::auth"), "{out}");
        assert!(out.contains("trace-from-jsonwebtoken"), "{out}");
    }

    #[test]
    fn the_users_level_still_rules_below_the_cap() {
        let out = logged("warn");
        assert!(!out.contains("info-from-hephd"), "{out}");
        assert!(out.contains("warn-from-hephd::spoke::auth"), "{out}");
        let out = logged("error");
        assert!(!out.contains("warn-from-ureq_proto"), "{out}");
        let out = logged("info,hephd=debug");
        assert!(out.contains("debug-from-hephd::spoke::auth"), "{out}");
        assert!(!out.contains("debug-from-jsonwebtoken"), "{out}");
        // A filter that does not parse falls back to info, and says why.
        let (_, problem) = user_filter("hephd=loud");
        assert!(problem.is_some());
        assert!(logged("hephd=loud").contains("info-from-hephd::spoke::auth"));
    }
}
