//! Accepting hub connections: plain HTTP or HTTPS (rustls, aws-lc-rs),
//! HTTP/1.1 via hyper, with limits.
//!
//! At most [`MAX_CONNECTIONS`] connections are served at once (more wait in
//! the kernel's backlog); a TLS handshake must finish within
//! [`HANDSHAKE_TIMEOUT`], request headers within [`HEADER_TIMEOUT`] (this
//! also closes idle keep-alive connections), and bodies within
//! [`BODY_TIMEOUT`](super::routes::BODY_TIMEOUT). On shutdown no new
//! connection is accepted, in-flight requests finish (long polls return at
//! once) and stragglers are cut after [`DRAIN_TIMEOUT`]. Routing lives in
//! [`routes`](super::routes); this module never looks inside a request.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// Connections served at once. Each idle long poll holds one.
pub const MAX_CONNECTIONS: usize = 4096;
/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send request headers (and stay idle between requests).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(15);
/// How long shutdown waits for in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head hyper buffers.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Why the hub cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    #[error("cannot read the TLS {what} {}: {source}", .path.display())]
    TlsFile {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the TLS certificate {} and key {} cannot be used together: {source}", .cert.display(), .key.display())]
    TlsConfig {
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// Builds the TLS acceptor from PEM files (aws-lc-rs, TLS 1.2 and 1.3).
pub fn load_tls(cert: &Path, key: &Path) -> Result<TlsAcceptor, HubError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect())
        .map_err(|source| HubError::TlsFile {
            what: "certificate",
            path: cert.to_path_buf(),
            source,
        })?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|source| HubError::TlsFile {
        what: "key",
        path: key.to_path_buf(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config_err = |source| HubError::TlsConfig {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        source,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_err)?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(config_err)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The address a request's connection comes from (a request extension;
/// the issuer's sign-in rate limit reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::SocketAddr);

async fn serve_connection<S>(
    stream: S,
    app: Router,
    watcher: hyper_util::server::graceful::Watcher,
    peer: std::net::SocketAddr,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = tower::ServiceExt::map_request(
        app,
        move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(PeerAddr(peer));
            req
        },
    );
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "hub connection ended with an error");
    }
}

/// Serves `app` on `listener` until `shutdown` turns true, then drains.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let mut conns = JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.wait_for(|&s| s) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|&s| s) => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(error = %e, "cannot accept a hub connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        conns.spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(stream, app, watcher, peer).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            serve_connection(tls_stream, app, watcher, peer).await
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
    if drained.is_err() {
        tracing::warn!("hub requests still running after {DRAIN_TIMEOUT:?}; closing them");
    }
    conns.shutdown().await;
}
