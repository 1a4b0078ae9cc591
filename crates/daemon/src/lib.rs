//! `hephd`, the Hephaestus daemon, as a library: the binary parses flags and
//! calls [`run`]; tests start the same code in-process.
//!
//! In local mode the daemon owns the replica (on its own thread, see [`db`])
//! and serves the JSON-RPC of DESIGN §6 on a unix socket ([`rpc`]); with a
//! hub URL it is also a spoke ([`spoke`]). In server mode it adds the hub's
//! HTTP routes ([`hub`]); in client mode it has no replica and forwards every
//! RPC to the hub. It refuses to share its database or socket with another
//! daemon ([`instance`]), and on shutdown it finishes in-flight requests,
//! closes the database and removes its socket.

pub mod config;
pub mod db;
pub mod events;
pub mod hub;
pub mod instance;
pub mod issuer;
pub mod logging;
pub mod rpc;
pub mod spoke;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use heph_core::StoreError;
use heph_core::hlc::Clock;
use heph_core::wire::HubUrl;
use tokio::net::UnixListener;
use tokio::sync::watch;

pub use config::Config;
use config::Mode;
use instance::InstanceError;
use rpc::methods::{Context, StaticInfo};

/// Why the daemon stopped with an error. Each reads as one sentence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    #[error(transparent)]
    Instance(#[from] InstanceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on the socket {}: {source}", .path.display())]
    Bind {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The settings do not make a daemon that can start.
    #[error("{0}")]
    Settings(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Hub(#[from] hub::HubError),
    #[error(transparent)]
    Sync(#[from] spoke::SyncError),
}

/// Installs aws-lc-rs as the process's rustls provider (the only one built
/// in). Idempotent; `main`, tests and the HTTP client call it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Runs one of `hephd`'s subcommands (`user …`, `issuer …`) on the hub's database.
pub fn run_command(
    config: &Config,
    command: config::Command,
) -> Result<(), issuer::admin::AdminError> {
    // The URL devices use: --public-url, else the listen address when one
    // was set; the default listen address may not be where the hub runs.
    let public_url = match &config.public_url {
        Some(u) => Some(u.value.trim_end_matches('/').to_owned()),
        None if config.listen.source != heph_core::config::Source::Default => {
            let scheme = if config.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            Some(format!("{scheme}://{}", config.listen.value))
        }
        None => None,
    };
    let mail = match (&config.smtp_url, &config.smtp_from) {
        (Some(url), Some(from)) => Some(issuer::mail::MailSettings {
            url: url.value.clone(),
            from: from.value.clone(),
        }),
        (Some(_), None) => {
            return Err(issuer::admin::AdminError(
                "smtp_url is set but smtp_from is not; add --smtp-from 'Heph <hub@example.org>' (or smtp_from in the config file)".into(),
            ));
        }
        _ => None,
    };
    let ctx = issuer::admin::AdminContext {
        db: &config.db.value,
        public_url,
        access_ttl_secs: config.issuer_access_ttl_secs.value,
        mail,
    };
    match command {
        config::Command::User(c) => issuer::admin::run_user(&ctx, c),
        config::Command::Issuer(c) => issuer::admin::run_issuer(&ctx, c),
    }
}

/// Runs the daemon until `shutdown` turns true.
pub async fn run(config: &Config, shutdown: watch::Receiver<bool>) -> Result<(), DaemonError> {
    run_with_clock(config, Arc::new(db::SystemClock), shutdown).await
}

/// The hub URL setting, parsed, with the start-up warning for plain HTTP.
fn hub_url(config: &Config) -> Result<Option<HubUrl>, DaemonError> {
    let Some(setting) = &config.hub_url else {
        return Ok(None);
    };
    let url = HubUrl::parse(&setting.value)
        .map_err(|e| DaemonError::Settings(format!("{e} (from {})", setting.source)))?;
    if !url.is_https() && !url.is_loopback() {
        tracing::warn!(hub = %url, "the hub URL is plain http:// to a host that is not this machine: ops travel unencrypted; use https://");
    }
    Ok(Some(url))
}

/// The hub's checked settings: address, TLS and auth policy.
struct HubSettings {
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    public_url: String,
    /// `None` with the built-in issuer: its policy is made once the
    /// public URL (the issuer) is known.
    auth: Option<hub::auth::Policy>,
    owner_sub: Option<String>,
}

/// The scopes the hub tells spokes to request (`--oidc-scopes`).
fn published_scopes(config: &Config) -> Vec<String> {
    config
        .oidc_scopes
        .value
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The hub's auth policy from the OIDC flags (or `--insecure-no-auth`).
fn hub_policy(config: &Config, addr: SocketAddr) -> Result<hub::auth::Policy, DaemonError> {
    match (&config.oidc_issuer, &config.oidc_audience) {
        (Some(issuer), Some(audience)) => {
            if config.insecure_no_auth.value {
                return Err(DaemonError::Settings(
                    "--insecure-no-auth and --oidc-issuer exclude each other; drop --insecure-no-auth".into(),
                ));
            }
            let url = HubUrl::parse(&issuer.value).map_err(|e| {
                DaemonError::Settings(format!("--oidc-issuer: {e} (from {})", issuer.source))
            })?;
            if !url.is_https() && !url.is_loopback() {
                return Err(DaemonError::Settings(format!(
                    "--oidc-issuer {} is plain http:// to another machine, so its keys could be forged in transit; use its https:// URL",
                    issuer.value
                )));
            }
            if audience.value.trim().is_empty() {
                return Err(DaemonError::Settings(
                    "--oidc-audience is empty; give the audience (aud) the provider puts in access tokens for this hub".into(),
                ));
            }
            let settings = hub::bearer::OidcSettings {
                issuer: issuer.value.trim_end_matches('/').to_owned(),
                audience: audience.value.clone(),
                client_id: config.oidc_client_id.value.clone(),
                scopes: published_scopes(config),
            };
            let verifier =
                hub::bearer::Verifier::new(settings, hub::jwks::JwksPolicy::default())
                    .map_err(|e| DaemonError::Settings(e.to_string()))?;
            Ok(hub::auth::Policy::Oidc(Arc::new(verifier)))
        }
        (Some(_), None) | (None, Some(_)) => Err(DaemonError::Settings(
            "--oidc-issuer and --oidc-audience go together; give both (see docs/operations.md)".into(),
        )),
        (None, None) if config.insecure_no_auth.value => {
            if !addr.ip().is_loopback() {
                return Err(DaemonError::Settings(format!(
                    "--insecure-no-auth is only allowed on a loopback address, and {addr} is not one; use --listen 127.0.0.1:PORT"
                )));
            }
            Ok(hub::auth::Policy::InsecureNoAuth)
        }
        (None, None) => Err(DaemonError::Settings(
            "--mode server needs bearer verification: add --oidc-issuer URL --oidc-audience AUD (see docs/operations.md), or --insecure-no-auth with a loopback --listen address for a test hub".into(),
        )),
    }
}

fn hub_settings(config: &Config) -> Result<HubSettings, DaemonError> {
    if config.hub_url.is_some() {
        return Err(DaemonError::Settings(
            "--hub-url is for local and client modes; a hub does not sync with another hub".into(),
        ));
    }
    let listen = &config.listen.value;
    let addr: SocketAddr = listen.parse().map_err(|_| {
        DaemonError::Settings(format!(
            "--listen {listen:?} is not an IP address and port, e.g. 127.0.0.1:7447 or [::]:7447"
        ))
    })?;
    let auth = if config.builtin_issuer.value {
        if config.oidc_issuer.is_some() || config.insecure_no_auth.value {
            return Err(DaemonError::Settings(
                "--builtin-issuer excludes --oidc-issuer and --insecure-no-auth: the hub is then its own issuer".into(),
            ));
        }
        None
    } else {
        Some(hub_policy(config, addr)?)
    };
    let owner_sub = match &config.owner_sub {
        Some(s) => {
            hub::members::check_sub(&s.value)
                .map_err(|e| DaemonError::Settings(format!("--owner-sub: {e}")))?;
            Some(s.value.clone())
        }
        None => None,
    };
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(hub::load_tls(&cert.value, &key.value)?),
        (None, None) => None,
        _ => {
            return Err(DaemonError::Settings(
                "--tls-cert and --tls-key go together; give both or neither".into(),
            ));
        }
    };
    let public_url = match &config.public_url {
        Some(u) => Some(
            HubUrl::parse(&u.value)
                .map_err(|e| DaemonError::Settings(format!("{e} (from {})", u.source)))?,
        ),
        None => None,
    };
    if config.builtin_issuer.value {
        issuer_transport(tls.is_some(), public_url.as_ref(), addr)
            .map_err(DaemonError::Settings)?;
    } else if config.trusted_proxy.is_some() {
        tracing::warn!(
            "--trusted-proxy is read only by the built-in issuer's rate limits; without --builtin-issuer it changes nothing"
        );
    }
    let public_url = public_url.map(|u| u.to_string()).unwrap_or_default();
    Ok(HubSettings {
        addr,
        tls,
        public_url,
        auth,
        owner_sub,
    })
}

/// Whether the built-in issuer's pages and token endpoint would be
/// reached over TLS: the hub's own (`--tls-cert`), or a TLS-terminating
/// proxy in front, which an `https://` public URL states. Plain http is
/// allowed only when both the public URL and the listener are loopback
/// (a hub for this machine alone); anything else would carry passwords
/// and refresh tokens across the network in clear.
fn issuer_transport(
    tls: bool,
    public_url: Option<&HubUrl>,
    listen: SocketAddr,
) -> Result<(), String> {
    if tls || public_url.is_some_and(HubUrl::is_https) {
        return Ok(());
    }
    let shown = public_url.map_or_else(|| format!("http://{listen}"), ToString::to_string);
    let local_url = public_url.is_none_or(HubUrl::is_loopback);
    if local_url && listen.ip().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "--builtin-issuer refuses the plain http:// address {shown}, which would carry passwords and refresh tokens across the network in clear; add --tls-cert and --tls-key, or put a TLS-terminating proxy in front and give its address with --public-url https://…"
    ))
}

/// Raises the open-file limit to its hard maximum: each idle long poll holds a socket.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on our own process with a valid struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max.min(65_536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// [`run`] with an injected clock (tests).
pub async fn run_with_clock(
    config: &Config,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let mode = config.mode.value;
    let socket = &config.socket.value;
    let hub = hub_url(config)?;
    if mode == Mode::Client {
        let Some(hub) = hub else {
            return Err(DaemonError::Settings(
                "--mode client needs --hub-url: every request goes to that hub".into(),
            ));
        };
        let events = events::Events::new();
        let auth = spoke::auth::SpokeAuth::start(
            &config.token_store.value,
            hub.clone(),
            clock.clone(),
            events.clone(),
        )
        .await
        .map_err(|e| DaemonError::Settings(e.to_string()))?;
        let client = spoke::HubClient::new(hub, config.hub_ca.as_ref().map(|s| s.value.as_path()))?
            .with_auth(auth);
        let listener = bind_socket(socket)?;
        let ctx = Arc::new(Context {
            db: None,
            events,
            info: StaticInfo {
                mode: mode.as_str().into(),
                db: String::new(),
                socket: socket.display().to_string(),
                started_ms: clock.now_ms(),
            },
            log_seq: watch::Sender::new(0),
            local_edit: Arc::new(tokio::sync::Notify::new()),
            sync: None,
            remote: Some(client.clone()),
        });
        tracing::info!(socket = %socket.display(), hub = %client.hub(), pid = std::process::id(), "hephd ready (client mode)");
        rpc::server::serve(listener, ctx, shutdown).await;
        let _ = std::fs::remove_file(socket);
        tracing::info!("hephd stopped");
        return Ok(());
    }
    let hub_settings = if mode == Mode::Server {
        let settings = hub_settings(config)?;
        raise_fd_limit();
        Some(settings)
    } else {
        if config.owner_sub.is_some() || config.oidc_issuer.is_some() || config.builtin_issuer.value
        {
            return Err(DaemonError::Settings(
                "--owner-sub, --oidc-issuer and --builtin-issuer configure a hub; use them with --mode server".into(),
            ));
        }
        None
    };

    let db_path = &config.db.value;
    instance::create_private_dir(db_path.parent().unwrap_or(Path::new("")))?;
    let lock = instance::lock_db(db_path)?;
    let max_skew_ms = config.max_clock_skew_secs.value.saturating_mul(1000);
    let (db, db_thread) = db::Db::open(db_path, max_skew_ms, clock.clone())?;
    let last_seq = db
        .call(|r| heph_core::Store::last_seq(r.store()))
        .await
        .map_err(|_| DaemonError::Settings("the database thread stopped at start".into()))??;
    if hub_settings.is_some() {
        // The log's identity is made with the hub's database (DESIGN §4).
        let fresh = hub::log_id::fresh();
        let (log, made) = db
            .call(move |r| hub::log_id::ensure(r, fresh))
            .await
            .map_err(|_| DaemonError::Settings("the database thread stopped at start".into()))??;
        if made {
            tracing::info!(log = %log, "the hub's log has a new id");
        } else {
            tracing::debug!(log = %log, "the hub's log id");
        }
    }
    if let Some(sub) = hub_settings.as_ref().and_then(|s| s.owner_sub.clone()) {
        let seeded = db
            .call({
                let sub = sub.clone();
                move |r| hub::members::seed_owner(r, &sub)
            })
            .await
            .map_err(|_| DaemonError::Settings("the database thread stopped at start".into()))??;
        if seeded {
            tracing::info!(sub = %sub, "--owner-sub: made this subject an owner of the hub");
        }
    }
    let tcp = match &hub_settings {
        Some(s) => Some(
            tokio::net::TcpListener::bind(s.addr)
                .await
                .map_err(|source| DaemonError::Listen {
                    addr: s.addr.to_string(),
                    source,
                })?,
        ),
        None => None,
    };
    let listener = bind_socket(socket)?;

    let info = StaticInfo {
        mode: mode.as_str().into(),
        db: db_path.display().to_string(),
        socket: socket.display().to_string(),
        started_ms: clock.now_ms(),
    };
    let mut ctx = Context::local(db.clone(), info, last_seq);
    let mut sync_parts = None;
    if let Some(hub) = hub {
        let client = spoke::HubClient::new(
            hub.clone(),
            config.hub_ca.as_ref().map(|s| s.value.as_path()),
        )?;
        let auth = spoke::auth::SpokeAuth::start(
            &config.token_store.value,
            hub.clone(),
            clock.clone(),
            ctx.events.clone(),
        )
        .await
        .map_err(|e| DaemonError::Settings(e.to_string()))?;
        let client = client.with_auth(auth.clone());
        let (handle, now_rx) =
            spoke::SyncHandle::new(hub, db.clone(), ctx.events.clone(), Some(auth));
        ctx.sync = Some(handle.clone());
        sync_parts = Some((client, handle, now_rx));
    }
    let ctx = Arc::new(ctx);
    let sync_task = sync_parts.map(|(client, handle, now_rx)| {
        tracing::info!(hub = %client.hub(), "syncing with the hub");
        let lp = spoke::sync_loop::SyncLoop::new(ctx.clone(), db.clone(), client, handle);
        tokio::spawn(lp.run(now_rx, shutdown.clone()))
    });
    let mut sweeper = None;
    let hub_task = match (hub_settings, tcp) {
        (Some(settings), Some(tcp)) => {
            let bound = tcp.local_addr().map_err(|source| DaemonError::Listen {
                addr: settings.addr.to_string(),
                source,
            })?;
            let scheme = if settings.tls.is_some() {
                "https"
            } else {
                "http"
            };
            let public_url = if settings.public_url.is_empty() {
                format!("{scheme}://{bound}")
            } else {
                settings.public_url.clone()
            };
            let (auth, builtin) = match settings.auth {
                Some(policy) => (policy, None),
                None => {
                    let (policy, issuer) =
                        builtin_issuer(config, db_path, &public_url, clock.clone())?;
                    tracing::info!(issuer = %public_url, "the hub is its own OpenID issuer (--builtin-issuer); add accounts with hephd user add");
                    sweeper = Some(tokio::spawn(
                        issuer
                            .clone()
                            .run_sweeper(std::time::Duration::from_secs(60), shutdown.clone()),
                    ));
                    (policy, Some(issuer))
                }
            };
            let insecure = matches!(auth, hub::auth::Policy::InsecureNoAuth);
            let state = Arc::new(hub::routes::HubState {
                ctx: ctx.clone(),
                db: db.clone(),
                auth,
                public_url,
                shutdown: shutdown.clone(),
                issuer: builtin,
            });
            if insecure {
                tracing::warn!(
                    "the hub runs with --insecure-no-auth: every local process that can reach {bound} may read and write all data"
                );
            }
            tracing::info!("hub listening on {scheme}://{bound}");
            Some(tokio::spawn(hub::serve::serve(
                tcp,
                settings.tls,
                hub::routes::router(state),
                shutdown.clone(),
            )))
        }
        _ => None,
    };
    drop(db);
    tracing::info!(
        db = %db_path.display(),
        socket = %socket.display(),
        pid = std::process::id(),
        mode = mode.as_str(),
        "hephd ready"
    );
    rpc::server::serve(listener, ctx, shutdown).await;
    if let Some(t) = hub_task {
        let _ = t.await;
    }
    if let Some(t) = sweeper {
        let _ = t.await;
    }
    if let Some(t) = sync_task {
        let _ = t.await;
    }

    // Only the daemon that bound the socket removes it.
    let _ = std::fs::remove_file(socket);
    // Every handle to the replica is gone now; wait for its thread to close the db.
    let _ = tokio::task::spawn_blocking(move || db_thread.join()).await;
    drop(lock);
    tracing::info!("hephd stopped");
    Ok(())
}

/// The built-in issuer at `public_url`, and the policy that verifies its
/// tokens through the same verifier as an external issuer's.
fn builtin_issuer(
    config: &Config,
    db_path: &Path,
    public_url: &str,
    clock: Arc<dyn Clock>,
) -> Result<(hub::auth::Policy, Arc<issuer::Issuer>), DaemonError> {
    let store =
        issuer::IssuerStore::open(db_path).map_err(|e| DaemonError::Settings(e.to_string()))?;
    let mut settings = issuer::IssuerSettings::new(public_url);
    settings.access_ttl = std::time::Duration::from_secs(config.issuer_access_ttl_secs.value);
    settings.poll_interval = std::time::Duration::from_secs(config.issuer_poll_interval_secs.value);
    settings.sign_in_lifetime =
        std::time::Duration::from_secs(config.issuer_sign_in_lifetime_secs.value);
    settings.max_live_device_codes = config.issuer_max_device_codes.value as u32;
    if let Some(p) = &config.trusted_proxy {
        settings.trusted_proxies = p.value.clone();
    }
    let oidc = hub::bearer::OidcSettings {
        issuer: settings.issuer.clone(),
        audience: settings.audience.clone(),
        client_id: settings.client_id.clone(),
        scopes: published_scopes(config),
    };
    let issuer = Arc::new(issuer::Issuer::with_limiter_capacity(
        settings,
        store,
        clock,
        config.issuer_rate_limit_keys.value as usize,
    ));
    let source = issuer.clone();
    let read: hub::jwks::LocalJwks = Arc::new(move || {
        let source = source.clone();
        Box::pin(async move {
            source
                .jwks()
                .await
                .map_err(|e| hub::jwks::FetchError::Local(e.description))
        })
    });
    // The keys are read from our own database: an unknown kid (a key
    // rotated by `hephd issuer rotate-key` a moment ago) may be looked up
    // again after a second rather than the remote issuer's 30.
    let policy = hub::jwks::JwksPolicy {
        refetch_cooldown: std::time::Duration::from_secs(1),
        failure_retry: std::time::Duration::from_secs(1),
        ..hub::jwks::JwksPolicy::default()
    };
    let keys = hub::jwks::KeySource::local(&oidc.issuer, read, policy);
    let verifier = hub::bearer::Verifier::with_keys(oidc, keys);
    Ok((hub::auth::Policy::Oidc(Arc::new(verifier)), issuer))
}

fn bind_socket(socket: &Path) -> Result<UnixListener, DaemonError> {
    instance::create_private_dir(socket.parent().unwrap_or(Path::new("")))?;
    if instance::clear_socket(socket)? {
        tracing::info!(socket = %socket.display(), "replaced a stale socket left by a daemon that did not shut down cleanly");
    }
    let listener = UnixListener::bind(socket).map_err(|source| DaemonError::Bind {
        path: socket.to_path_buf(),
        source,
    })?;
    instance::restrict_socket(socket)?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(tls, public URL, listen)` → whether the built-in issuer may start.
    fn check(tls: bool, public_url: Option<&str>, listen: &str, ok: bool) {
        let url = public_url.map(|u| HubUrl::parse(u).unwrap());
        let got = issuer_transport(tls, url.as_ref(), listen.parse().unwrap());
        assert_eq!(got.is_ok(), ok, "{tls} {public_url:?} {listen}: {got:?}");
        if let Err(e) = got {
            assert!(e.contains("--public-url https://"), "{e}");
        }
    }

    #[test]
    fn the_builtin_issuer_needs_tls_off_this_machine() {
        check(false, None, "127.0.0.1:7447", true);
        check(false, Some("http://localhost:7447"), "[::1]:7447", true);
        check(false, None, "0.0.0.0:7447", false);
        check(
            false,
            Some("http://hub.example.org"),
            "127.0.0.1:7447",
            false,
        );
        check(false, Some("http://192.0.2.7:7447"), "0.0.0.0:7447", false);
        // A loopback URL does not make a listener on every interface safe.
        check(false, Some("http://127.0.0.1:7447"), "0.0.0.0:7447", false);
        // TLS here, or a TLS-terminating proxy stated by an https URL.
        check(true, None, "0.0.0.0:7447", true);
        check(true, Some("http://hub.example.org"), "0.0.0.0:7447", true);
        check(
            false,
            Some("https://hub.example.org"),
            "127.0.0.1:7447",
            true,
        );
        check(false, Some("https://hub.example.org"), "0.0.0.0:7447", true);
    }
}
