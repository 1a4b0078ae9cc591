//! `heph auth login|status|logout` (DESIGN §7.2).
//!
//! `login` runs the device authorization grant itself (blocking, through
//! `heph-auth`): issuer and client id default to the hub's protected-resource
//! metadata; it shows the verification URL (and a QR code, and opens a
//! browser when there is a display), saves the tokens in the configured
//! store, then asks a running daemon to reload them (`auth.reload`).
//! `status` asks the daemon (the only refresher) or, with no daemon, reads
//! the store; it exits 4 when the user must act. `logout` revokes the
//! refresh token when the provider offers revocation, then deletes it.
//! No token is ever printed: only [`heph_auth::TokenInfo`] fields are.

use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::Arc;

use heph_auth::oidc::DEFAULT_SCOPE;
use heph_auth::{
    AuthError, Health, LoginCommand, LoginError, OidcClient, Revocation, StoreConfig, StoreError,
    StoreFlags, SystemPace, TokenSet, TokenStore,
};
use heph_core::config::Layers;
use heph_core::rpc::{AuthStatus, code, method};
use heph_core::wire::HubUrl;

use crate::context::Ctx;
use crate::exit::{CliError, Exit};
use crate::output::{Now, duration};
use crate::rpc_client::{Client, ClientError};

/// `heph auth`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: AuthCommand,
}

/// The `heph auth` verbs.
#[derive(Debug, clap::Subcommand)]
pub enum AuthCommand {
    /// Sign in to a hub with your identity provider (device code flow)
    Login(LoginArgs),
    /// Show whether this device is signed in, and what to run if not; exits 4 when action is needed
    Status(StatusArgs),
    /// Revoke and forget the sign-in for a hub
    Logout(LogoutArgs),
}

/// Where tokens are kept; the same settings `hephd` reads.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreArgs {
    /// Where tokens are kept: keyring, file, command or memory [env: HEPH_TOKEN_STORE] [default: keyring]
    #[arg(long, value_name = "KIND")]
    pub token_store: Option<String>,
    /// The token file of --token-store file (mode 0600) [env: HEPH_TOKEN_FILE]
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// --token-store command: prints the token JSON [env: HEPH_TOKEN_LOAD_CMD]
    #[arg(long, value_name = "CMD")]
    pub token_load_cmd: Option<String>,
    /// --token-store command: reads the token JSON on stdin [env: HEPH_TOKEN_SAVE_CMD]
    #[arg(long, value_name = "CMD")]
    pub token_save_cmd: Option<String>,
}

/// `heph auth login`.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The hub to sign in to [env: HEPH_HUB_URL]
    #[arg(long, value_name = "URL")]
    pub hub_url: Option<String>,
    /// The identity provider [default: the hub's metadata]
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,
    /// The OAuth client id [default: the hub's metadata]
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// Scopes to request [default: the hub's metadata, else "openid offline_access"]
    #[arg(long, value_name = "SCOPE", num_args = 1..)]
    pub scope: Vec<String>,
    /// Do not try to open a browser
    #[arg(long)]
    pub no_browser: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `heph auth status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The hub [env: HEPH_HUB_URL] [default: the daemon's]
    #[arg(long, value_name = "URL")]
    pub hub_url: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `heph auth logout`.
#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// The hub [env: HEPH_HUB_URL]
    #[arg(long, value_name = "URL")]
    pub hub_url: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<(), CliError> {
    match args.command {
        AuthCommand::Login(a) => login(ctx, a),
        AuthCommand::Status(a) => status(ctx, a),
        AuthCommand::Logout(a) => logout(ctx, a),
    }
}

/// The settings layers (environment and config file) `heph` shares with `hephd`.
struct Resolved {
    hub: Option<HubUrl>,
    store: StoreConfig,
}

fn resolve(ctx: &Ctx, hub_flag: Option<String>, store: &StoreArgs) -> Result<Resolved, CliError> {
    let env = |key: &str| std::env::var(key).ok();
    let text = match std::fs::read_to_string(&ctx.settings.config.path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(CliError::io("cannot read the config file", e)),
    };
    let layers = Layers::new(
        &env,
        text.as_deref()
            .map(|t| (ctx.settings.config.path.as_path(), t)),
    )?;
    let hub = match layers.get("hub_url", hub_flag.map(|h| ("--hub-url", h)))? {
        Some(s) => Some(
            HubUrl::parse(&s.value)
                .map_err(|e| CliError::usage(format!("{e} (from {})", s.source)))?,
        ),
        None => None,
    };
    let flags = StoreFlags {
        store: store.token_store.clone(),
        file: store.token_file.clone(),
        load_cmd: store.token_load_cmd.clone(),
        save_cmd: store.token_save_cmd.clone(),
    };
    let store = StoreConfig::resolve(&layers, &flags)?.value;
    Ok(Resolved { hub, store })
}

fn open_store(config: &StoreConfig) -> Result<Arc<dyn TokenStore>, CliError> {
    config.open().map_err(store_error)
}

/// A store failure as a CLI error.
pub fn store_error(e: StoreError) -> CliError {
    if e.is_keyring() {
        CliError::with_hint(
            e.to_string(),
            "heph auth login --hub-url URL --token-store file --token-file ~/.config/heph/tokens.json",
        )
    } else {
        CliError::failed(e.to_string())
    }
}

fn auth_error(e: AuthError, login: &LoginCommand) -> CliError {
    let hint = match &e {
        AuthError::Unreachable { url, .. } => {
            format!("check the URL and that it is up: curl {url}")
        }
        AuthError::NoDeviceFlow { .. } => {
            "see docs/operations.md for your provider's device-flow setting".into()
        }
        AuthError::ResourceMismatch { .. } => {
            "check the hub URL; a hub behind a proxy must be started with --public-url set to the URL you give here".into()
        }
        AuthError::Insecure { .. } => format!(
            "heph auth login --hub-url {} --issuer https://idp.example --client-id {}",
            login.hub,
            login.client_id.as_deref().unwrap_or("heph")
        ),
        AuthError::Untrusted { .. } => {
            "the hub or the identity provider sent a value heph will not show or open; tell its operator".into()
        }
        _ => login.to_string(),
    };
    CliError::with_hint(e.to_string(), hint)
}

fn need_hub(hub: Option<HubUrl>) -> Result<HubUrl, CliError> {
    hub.ok_or_else(|| CliError::Usage {
        message: "no hub is configured, so there is nothing to sign in to".into(),
        hint: Some("heph auth login --hub-url https://hub.example".into()),
    })
}

/// The daemon, if one runs.
fn daemon(ctx: &Ctx) -> Result<Option<Client>, CliError> {
    match Client::connect(&ctx.settings.socket.value) {
        Ok(c) => Ok(Some(c)),
        Err(ClientError::NotRunning { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Asks a running daemon to re-read its token store. `None` when none runs.
fn reload_daemon(ctx: &Ctx) -> Result<Option<AuthStatus>, CliError> {
    let Some(mut client) = daemon(ctx)? else {
        return Ok(None);
    };
    match client.call::<AuthStatus>(method::AUTH_RELOAD, ()) {
        Ok(s) => Ok(Some(s)),
        Err(ClientError::Rpc(e)) if e.code == code::NOT_CONFIGURED => Ok(None),
        Err(ClientError::Rpc(e)) if e.code == code::METHOD_NOT_FOUND => Err(CliError::with_hint(
            "the tokens are saved, but the running daemon is too old to reload them",
            "heph daemon restart",
        )),
        Err(e) => Err(e.into()),
    }
}

/// A unicode QR code of `url` for the terminal.
pub fn qr_text(url: &str) -> Option<String> {
    let code = qrcode::QrCode::new(url.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

/// Opens `url` in a browser when there is a display; never fails.
///
/// `url` comes from the provider: `heph-auth` hands out only absolute
/// http(s) URLs, and this checks again, so the opener can never receive an
/// option (`--help`, `--manual`). No `--` is passed: `xdg-open` takes any
/// argument starting with `-` as an unknown option, and macOS `open` does not
/// document one.
fn open_browser(url: &str) {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return;
    }
    let program = if cfg!(target_os = "macos") {
        "open"
    } else {
        let has_display = ["DISPLAY", "WAYLAND_DISPLAY"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
        if !has_display {
            return;
        }
        "xdg-open"
    };
    let _ = std::process::Command::new(program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// What `login` prints before it waits.
pub fn prompt_text(hub: &HubUrl, auth: &heph_auth::DeviceAuthorization) -> String {
    let mut out = format!(
        "To sign in to {hub}, open this page and approve the code {}:\n\n  {}\n\n",
        auth.user_code,
        auth.url()
    );
    if auth.verification_uri_complete.is_none() {
        out.push_str(&format!("and enter the code: {}\n\n", auth.user_code));
    }
    out
}

fn login(ctx: &Ctx, args: LoginArgs) -> Result<(), CliError> {
    let r = resolve(ctx, args.hub_url, &args.store)?;
    let hub = need_hub(r.hub)?;
    let oidc = OidcClient::new();
    let mut login_cmd = LoginCommand {
        hub: hub.to_string(),
        issuer: args.issuer.clone(),
        client_id: args.client_id.clone(),
    };
    let (issuer, client_id, scope) = {
        let meta = if args.issuer.is_none() || args.client_id.is_none() || args.scope.is_empty() {
            match oidc.protected_resource(&hub) {
                Ok(m) => Some(m),
                Err(e) if args.issuer.is_some() && args.client_id.is_some() => {
                    let _ = e;
                    None
                }
                Err(e) => return Err(auth_error(e, &login_cmd)),
            }
        } else {
            None
        };
        let issuer = match args.issuer.clone().or_else(|| {
            meta.as_ref()
                .and_then(|m| m.authorization_servers.first().cloned())
        }) {
            Some(i) => i,
            None => {
                return Err(CliError::with_hint(
                    format!("the hub at {hub} does not name an identity provider in its metadata"),
                    format!(
                        "heph auth login --hub-url {hub} --issuer https://idp.example --client-id heph"
                    ),
                ));
            }
        };
        let client_id = match args
            .client_id
            .clone()
            .or_else(|| meta.as_ref().and_then(|m| m.heph_client_id.clone()))
        {
            Some(c) => c,
            None => {
                return Err(CliError::with_hint(
                    format!("the hub at {hub} does not name the client id to sign in with"),
                    format!("heph auth login --hub-url {hub} --issuer {issuer} --client-id heph"),
                ));
            }
        };
        let scope = if !args.scope.is_empty() {
            args.scope.join(" ")
        } else {
            match meta.as_ref().map(|m| &m.scopes_supported) {
                Some(s) if !s.is_empty() => s.join(" "),
                _ => DEFAULT_SCOPE.to_owned(),
            }
        };
        (issuer, client_id, scope)
    };
    login_cmd.issuer = Some(issuer.clone());
    login_cmd.client_id = Some(client_id.clone());
    // Try the store first: a locked or absent keyring should fail before
    // the user approves anything.
    let store = open_store(&r.store)?;
    if let Err(e) = store.load(&hub)
        && e.is_keyring()
    {
        return Err(store_error(e));
    }
    let provider = oidc
        .discover(&issuer)
        .map_err(|e| auth_error(e, &login_cmd))?;
    let device = oidc
        .start_device(&provider, &client_id, &scope)
        .map_err(|e| auth_error(e, &login_cmd))?;
    ctx.out.note(&prompt_text(&hub, &device));
    // A QR code is for a person looking at a terminal, not for a log or a pipe.
    if std::io::IsTerminal::is_terminal(&std::io::stderr())
        && let Some(qr) = qr_text(device.url())
    {
        ctx.out.note(&qr);
    }
    if !args.no_browser {
        open_browser(device.url());
    }
    ctx.out.note(&format!(
        "waiting for approval (the code expires in {})",
        duration(device.expires_in.as_millis() as u64)
    ));
    let tokens = oidc
        .poll_device(&provider, &client_id, &device, &SystemPace)
        .map_err(|e| match e {
            LoginError::Auth(a) => auth_error(a, &login_cmd),
            other => CliError::with_hint(other.to_string(), login_cmd.to_string()),
        })?;
    if tokens.refresh_token.is_none() {
        ctx.out.note(&format!(
            "warning: {issuer} issued no refresh token (is offline_access allowed for client {client_id}?); sync stops when the access token expires and you must sign in again"
        ));
    }
    store.save(&hub, &tokens).map_err(store_error)?;
    let reloaded = reload_daemon(ctx)?;
    if let Some(note) = reloaded
        .as_ref()
        .and_then(|s| daemon_mismatch(s, &hub, &store.describe()))
    {
        ctx.out.note(&note);
    }
    let info = tokens.info();
    if ctx.json() {
        ctx.out.json(&serde_json::json!({
            "hub_url": hub.as_str(),
            "issuer": info.issuer,
            "client_id": info.client_id,
            "subject": info.subject,
            "username": info.username,
            "expires_ms": info.expires_at_ms,
            "has_refresh_token": info.has_refresh_token,
            "store": store.describe(),
            "daemon_reloaded": reloaded.is_some(),
        }))?;
    } else {
        let who = match (&info.username, &info.subject) {
            (Some(name), Some(sub)) => format!("{name} ({sub})"),
            (Some(name), None) => name.clone(),
            (None, Some(sub)) => sub.clone(),
            (None, None) => "your account".to_owned(),
        };
        let mut text = format!(
            "signed in to {hub} as {who} (issuer {}); tokens saved in {}\n",
            info.issuer,
            store.describe()
        );
        match &reloaded {
            Some(s) => text.push_str(&format!("the daemon reloaded them: {}\n", s.message)),
            None => text.push_str(
                "no daemon with this hub is running; it uses the sign-in when it starts\n",
            ),
        }
        ctx.out.print(&text)?;
    }
    Ok(())
}

/// A warning when the running daemon will not use this sign-in: it syncs
/// with another hub, or keeps its tokens in another store.
pub fn daemon_mismatch(daemon: &AuthStatus, hub: &HubUrl, store: &str) -> Option<String> {
    match (&daemon.hub_url, &daemon.store) {
        (Some(h), _) if h != hub.as_str() => Some(format!(
            "warning: the running daemon syncs with {h}, not {hub}; this sign-in is saved for {hub} only"
        )),
        (_, Some(s)) if s != store => Some(format!(
            "warning: the running daemon keeps its tokens in {s}, not {store}, so it does not see this sign-in; sign in with the daemon's store, or restart it with the same --token-store settings (heph daemon restart)"
        )),
        _ => None,
    }
}

/// The status a store alone tells (no daemon running).
pub fn offline_status(
    hub: &HubUrl,
    loaded: Result<Option<TokenSet>, StoreError>,
    store: &str,
    now_ms: u64,
    fallback: &LoginCommand,
) -> Result<AuthStatus, StoreError> {
    let (health, tokens) = match loaded {
        Err(e) if e.is_keyring() => (
            Health::KeyringLocked {
                reason: e.to_string(),
            },
            None,
        ),
        Err(e) => return Err(e),
        Ok(None) => (
            Health::NeedsLogin {
                reason: format!("no sign-in is stored in {store}"),
            },
            None,
        ),
        Ok(Some(t)) => {
            let h = if !t.expires_within(now_ms, 0) {
                Health::Valid {
                    expires_at_ms: t.expires_at_ms,
                }
            } else if t.refresh_token.is_some() {
                Health::RefreshDue
            } else {
                Health::NeedsLogin {
                    reason: "the access token expired and there is no refresh token".into(),
                }
            };
            (h, Some(t))
        }
    };
    let login = match &tokens {
        Some(t) => LoginCommand {
            hub: hub.to_string(),
            issuer: Some(t.issuer.clone()),
            client_id: Some(t.client_id.clone()),
        },
        None => fallback.clone(),
    };
    let info = tokens.as_ref().map(TokenSet::info);
    Ok(AuthStatus {
        configured: true,
        state: health.name().into(),
        subject: info.as_ref().and_then(|i| i.subject.clone()),
        username: info.as_ref().and_then(|i| i.username.clone()),
        action_needed: health.action_needed(),
        message: health.sentence(hub.as_str()),
        hint: health.hint(&login),
        hub_url: Some(hub.to_string()),
        issuer: info.as_ref().map(|i| i.issuer.clone()),
        client_id: info.as_ref().map(|i| i.client_id.clone()),
        expires_ms: info.as_ref().and_then(|i| i.expires_at_ms),
        store: Some(store.to_owned()),
    })
}

/// The human view of `heph auth status`.
pub fn status_text(s: &AuthStatus, now: &Now) -> String {
    let mut out = format!("{}\n", s.message);
    let now_ms = u64::try_from(now.instant.as_millisecond()).unwrap_or(0);
    let row =
        |out: &mut String, key: &str, value: &str| out.push_str(&format!("{key:<9}{value}\n"));
    for (key, value) in [
        ("hub", &s.hub_url),
        ("issuer", &s.issuer),
        ("user", &s.username),
        ("subject", &s.subject),
    ] {
        if let Some(v) = value {
            row(&mut out, key, v);
        }
    }
    if let Some(ms) = s.expires_ms {
        let when = if ms > now_ms {
            format!("in {} ({})", duration(ms - now_ms), now.local_time(ms))
        } else {
            format!("{} ago ({})", duration(now_ms - ms), now.local_time(ms))
        };
        row(&mut out, "expires", &when);
    }
    if let Some(store) = &s.store {
        row(&mut out, "store", store);
    }
    row(&mut out, "state", &s.state);
    if let Some(hint) = &s.hint {
        out.push_str(&format!("hint: {hint}\n"));
    }
    out
}

fn status(ctx: &Ctx, args: StatusArgs) -> Result<(), CliError> {
    let r = resolve(ctx, args.hub_url.clone(), &args.store)?;
    let from_daemon = match daemon(ctx)? {
        Some(mut c) => {
            let s: AuthStatus = c.call(method::AUTH_STATUS, ())?;
            let same_hub = match (&r.hub, &s.hub_url) {
                (Some(h), Some(d)) => h.as_str() == d,
                (None, _) => true,
                (Some(_), None) => false,
            };
            (s.configured && same_hub || r.hub.is_none()).then_some(s)
        }
        None => None,
    };
    let s = match from_daemon {
        Some(s) => s,
        None => {
            let hub = need_hub(r.hub)?;
            let store = open_store(&r.store)?;
            let fallback = LoginCommand {
                hub: hub.to_string(),
                issuer: None,
                client_id: None,
            };
            let now_ms = u64::try_from(ctx.now.instant.as_millisecond()).unwrap_or(0);
            offline_status(&hub, store.load(&hub), &store.describe(), now_ms, &fallback)
                .map_err(store_error)?
        }
    };
    if ctx.json() {
        ctx.out.json(&s)?;
    } else {
        ctx.out.print(&status_text(&s, &ctx.now))?;
    }
    if s.action_needed {
        Err(CliError::Reported(Exit::ActionNeeded))
    } else {
        Ok(())
    }
}

fn logout(ctx: &Ctx, args: LogoutArgs) -> Result<(), CliError> {
    let r = resolve(ctx, args.hub_url, &args.store)?;
    let hub = need_hub(r.hub)?;
    let store = open_store(&r.store)?;
    let Some(tokens) = store.load(&hub).map_err(store_error)? else {
        if ctx.json() {
            ctx.out.json(
                &serde_json::json!({"hub_url": hub.as_str(), "revoked": false, "deleted": false}),
            )?;
        } else {
            ctx.out
                .print(&format!("not signed in to {hub}: nothing to do\n"))?;
        }
        return Ok(());
    };
    let mut revoked = false;
    if let Some(refresh) = &tokens.refresh_token {
        let oidc = OidcClient::new();
        let outcome = oidc
            .discover(&tokens.issuer)
            .and_then(|p| oidc.revoke(&p, &tokens.client_id, refresh));
        match outcome {
            Ok(Revocation::Revoked) => revoked = true,
            Ok(Revocation::NotOffered) => ctx.out.note(&format!(
                "{} offers no token revocation; the refresh token is only forgotten here",
                tokens.issuer
            )),
            Err(e) => ctx.out.note(&format!(
                "warning: could not revoke the refresh token ({e}); it is forgotten here but stays valid at the provider until it expires"
            )),
        }
    }
    let deleted = store.delete(&hub).map_err(store_error)?;
    let reloaded = reload_daemon(ctx)?;
    if ctx.json() {
        ctx.out.json(&serde_json::json!({
            "hub_url": hub.as_str(),
            "revoked": revoked,
            "deleted": deleted,
            "daemon_reloaded": reloaded.is_some(),
        }))?;
    } else {
        ctx.out.print(&format!(
            "signed out of {hub}{}; the tokens were deleted from {}\n",
            if revoked {
                " (refresh token revoked)"
            } else {
                ""
            },
            store.describe()
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use heph_auth::{AccessToken, RefreshToken};
    use jiff::Timestamp;
    use jiff::tz::TimeZone;

    const NOW: u64 = 1_764_000_000_000;

    fn now() -> Now {
        Now::at(
            Timestamp::from_millisecond(NOW as i64).unwrap(),
            TimeZone::UTC,
        )
    }

    fn hub() -> HubUrl {
        HubUrl::parse("https://hub.example").unwrap()
    }

    fn tokens(expires: u64, refresh: bool) -> TokenSet {
        TokenSet {
            access_token: AccessToken::new("at-SECRET"),
            refresh_token: refresh.then(|| RefreshToken::new("rt-SECRET")),
            expires_at_ms: Some(expires),
            issuer: "https://idp.example/app/heph/".into(),
            client_id: "heph".into(),
            subject: Some("alice".into()),
            username: None,
            scope: None,
        }
    }

    fn fallback() -> LoginCommand {
        LoginCommand {
            hub: "https://hub.example".into(),
            issuer: None,
            client_id: None,
        }
    }

    fn check(loaded: Result<Option<TokenSet>, StoreError>) -> AuthStatus {
        offline_status(&hub(), loaded, "file /t.json", NOW, &fallback()).unwrap()
    }

    #[test]
    fn offline_status_names_the_state_and_the_command() {
        let s = check(Ok(Some(tokens(NOW + 600_000, true))));
        assert_eq!((s.state.as_str(), s.action_needed), ("valid", false));
        insta::assert_snapshot!(status_text(&s, &now()), @r"
        signed in to https://hub.example
        hub      https://hub.example
        issuer   https://idp.example/app/heph/
        subject  alice
        expires  in 10m (2025-11-24 16:10:00 +00:00)
        store    file /t.json
        state    valid
        ");
        let s = check(Ok(Some(tokens(NOW - 60_000, false))));
        assert_eq!((s.state.as_str(), s.action_needed), ("needs_login", true));
        insta::assert_snapshot!(status_text(&s, &now()), @r"
        sign-in needed for https://hub.example: the access token expired and there is no refresh token
        hub      https://hub.example
        issuer   https://idp.example/app/heph/
        subject  alice
        expires  1m ago (2025-11-24 15:59:00 +00:00)
        store    file /t.json
        state    needs_login
        hint: heph auth login --hub-url https://hub.example --issuer https://idp.example/app/heph/ --client-id heph
        ");
        let s = check(Ok(Some(tokens(NOW - 60_000, true))));
        assert_eq!((s.state.as_str(), s.action_needed), ("refresh_due", false));
        let s = check(Ok(None));
        assert_eq!(
            s.hint.as_deref(),
            Some("heph auth login --hub-url https://hub.example")
        );
        let s = check(Err(StoreError::KeyringTimeout { secs: 3 }));
        assert_eq!(
            (s.state.as_str(), s.action_needed),
            ("keyring_locked", true)
        );
        assert!(s.hint.unwrap().ends_with("--token-store file"));
        let json = serde_json::to_string(&check(Ok(Some(tokens(NOW, true))))).unwrap();
        assert!(!json.contains("SECRET"), "{json}");
    }

    #[test]
    fn a_daemon_on_another_store_or_hub_is_named() {
        let daemon = |hub: &str, store: &str| AuthStatus {
            hub_url: Some(hub.into()),
            store: Some(store.into()),
            ..AuthStatus::default()
        };
        assert_eq!(
            daemon_mismatch(&daemon("https://hub.example", "keyring"), &hub(), "keyring"),
            None
        );
        let w = daemon_mismatch(
            &daemon("https://hub.example", "keyring"),
            &hub(),
            "file /t.json",
        )
        .unwrap();
        assert!(
            w.starts_with(
                "warning: the running daemon keeps its tokens in keyring, not file /t.json"
            ),
            "{w}"
        );
        let w = daemon_mismatch(
            &daemon("https://other.example", "keyring"),
            &hub(),
            "keyring",
        )
        .unwrap();
        assert!(
            w.contains("syncs with https://other.example, not https://hub.example"),
            "{w}"
        );
    }

    #[test]
    fn the_prompt_shows_the_page_and_the_code() {
        let mut d = heph_auth::DeviceAuthorization {
            device_code: heph_auth::DeviceCode::new("dc-SECRET"),
            user_code: "WDJB-MJHT".into(),
            verification_uri: "https://idp.example/device".into(),
            verification_uri_complete: Some(
                "https://idp.example/device?user_code=WDJB-MJHT".into(),
            ),
            expires_in: std::time::Duration::from_secs(600),
            interval: std::time::Duration::from_secs(5),
        };
        insta::assert_snapshot!(prompt_text(&hub(), &d), @r"
        To sign in to https://hub.example, open this page and approve the code WDJB-MJHT:

          https://idp.example/device?user_code=WDJB-MJHT
        ");
        d.verification_uri_complete = None;
        insta::assert_snapshot!(prompt_text(&hub(), &d), @r"
        To sign in to https://hub.example, open this page and approve the code WDJB-MJHT:

          https://idp.example/device

        and enter the code: WDJB-MJHT
        ");
    }

    #[test]
    fn the_qr_code_is_unicode_blocks() {
        let qr = qr_text("http://127.0.0.1:1/device?user_code=ABCD-EFGH").unwrap();
        assert!(qr.lines().count() > 10);
        assert!(qr.chars().any(|c| matches!(c, '█' | '▀' | '▄')), "{qr}");
    }
}
