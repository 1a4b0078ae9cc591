//! `hephd`'s flags and its effective configuration.
//!
//! Flags are parsed by clap; every value is then resolved through
//! [`heph_core::config::Layers`] (flags, then `HEPH_*` environment, then the
//! config file, then defaults) and keeps its [`Source`], which
//! `hephd --print-config` shows.
//! Secret values (none yet; OIDC client secrets later) print as `[redacted]`.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use heph_core::config::{ConfigError, Layers, Paths, Setting, Source, env_var};
use heph_core::hlc::DEFAULT_MAX_CLOCK_SKEW_MS;

/// What a daemon is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The replica and the unix-socket RPC; with --hub-url, a spoke.
    Local,
    /// A hub: the replica, the unix-socket RPC and the HTTP routes.
    Server,
    /// No replica: every RPC is forwarded to the hub's /rpc.
    Client,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Local => "local",
            Mode::Server => "server",
            Mode::Client => "client",
        }
    }
}

/// The default address a hub listens on.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7447";

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Command-line flags of `hephd`.
#[derive(Debug, Parser)]
#[command(
    name = "hephd",
    version,
    about = "The Hephaestus daemon: keeps the local replica and serves heph and heph-tui over a unix socket",
    after_help = "Every flag can also be set with HEPH_<NAME> (e.g. HEPH_DB) or in $XDG_CONFIG_HOME/heph/config.toml \
                  (e.g. db = \"/path/heph.db\"); flags win over the environment, which wins over the file."
)]
pub struct Args {
    /// What this daemon is.
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// The replica database [default: $XDG_DATA_HOME/heph/heph.db].
    #[arg(long, value_name = "PATH", global = true)]
    pub db: Option<PathBuf>,
    /// The RPC socket [default: $XDG_RUNTIME_DIR/heph/hephd.sock, else beside the db].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The config file [default: $XDG_CONFIG_HOME/heph/config.toml].
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. `info` or `hephd=debug` [default: info].
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Refuse ops stamped more than this many seconds ahead of this clock [default: 300].
    #[arg(long, value_name = "SECS")]
    pub max_clock_skew: Option<u64>,
    /// Server mode: the address to serve the hub's HTTP routes on [default: 127.0.0.1:7447].
    #[arg(long, value_name = "ADDR", global = true)]
    pub listen: Option<String>,
    /// Server mode: serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Server mode: the PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Server mode: the hub's public URL, as clients reach it (behind a reverse proxy)
    /// [default: derived from --listen].
    #[arg(long, value_name = "URL", global = true)]
    pub public_url: Option<String>,
    /// Server mode: serve without bearer verification. Only on a loopback address.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Server mode: accept access tokens from this OpenID issuer (needs --oidc-audience).
    #[arg(long, value_name = "URL")]
    pub oidc_issuer: Option<String>,
    /// Server mode: the audience (`aud`) every access token must carry.
    #[arg(long, value_name = "AUD")]
    pub oidc_audience: Option<String>,
    /// Server mode: the OIDC client id spokes should sign in with [default: heph].
    #[arg(long, value_name = "ID")]
    pub oidc_client_id: Option<String>,
    /// Server mode: the scopes spokes should request [default: "openid offline_access"].
    #[arg(long, value_name = "SCOPES")]
    pub oidc_scopes: Option<String>,
    /// Server mode: make this OpenID subject an owner of the hub (kept in its database).
    #[arg(long, value_name = "SUB")]
    pub owner_sub: Option<String>,
    /// The hub to sync with (local mode) or to forward every RPC to (client mode).
    #[arg(long, value_name = "URL")]
    pub hub_url: Option<String>,
    /// A PEM file of extra CA certificates to trust for the hub (a private CA).
    #[arg(long, value_name = "FILE")]
    pub hub_ca: Option<PathBuf>,
    /// Where the spoke's sign-in tokens are kept: keyring, file, command or memory [default: keyring].
    #[arg(long, value_name = "KIND")]
    pub token_store: Option<String>,
    /// The token file of --token-store file (mode 0600, written atomically).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// --token-store command: a shell command that prints the token JSON.
    #[arg(long, value_name = "CMD")]
    pub token_load_cmd: Option<String>,
    /// --token-store command: a shell command that reads the token JSON on stdin.
    #[arg(long, value_name = "CMD")]
    pub token_save_cmd: Option<String>,
    /// Server mode: be the OpenID issuer too, with local accounts (hephd user add) instead of
    /// an external identity provider.
    #[arg(long)]
    pub builtin_issuer: bool,
    /// Built-in issuer: how long its access tokens live, in seconds [default: 600].
    #[arg(long, value_name = "SECS", hide = true)]
    pub issuer_access_ttl: Option<u64>,
    /// Built-in issuer: the device flow's polling interval, in seconds [default: 5].
    #[arg(long, value_name = "SECS", hide = true)]
    pub issuer_poll_interval: Option<u64>,
    /// Built-in issuer: how long a sign-in lasts at most, in seconds; its refresh tokens stop
    /// working then, however often they were used [default: 7776000, 90 days].
    #[arg(long, value_name = "SECS")]
    pub issuer_sign_in_lifetime: Option<u64>,
    /// Built-in issuer: the most unexpired device codes kept at once [default: 10000].
    #[arg(long, value_name = "N", hide = true)]
    pub issuer_max_device_codes: Option<u64>,
    /// Built-in issuer: the most keys each rate-limit table remembers [default: 10000].
    #[arg(long, value_name = "N", hide = true)]
    pub issuer_rate_limit_keys: Option<u64>,
    /// Server mode: the reverse proxies in front of the hub, ADDR[,ADDR]; only their
    /// X-Forwarded-For is believed when rate-limiting sign-ins [default: none].
    #[arg(long, value_name = "ADDRS")]
    pub trusted_proxy: Option<String>,
    /// Built-in issuer: the sender of invitation mail, e.g. "Heph <hub@example.org>"
    /// (the server is smtp_url, set only in HEPH_SMTP_URL or the config file).
    #[arg(long, value_name = "ADDRESS", global = true)]
    pub smtp_from: Option<String>,
    /// Print the effective configuration and where each value came from, then exit.
    #[arg(long)]
    pub print_config: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `hephd`'s subcommands: the operator's tools for a hub's built-in issuer.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Manage the built-in issuer's local accounts (run on the hub machine)
    #[command(subcommand)]
    User(crate::issuer::admin::UserCommand),
    /// Manage the built-in issuer's signing keys (run on the hub machine)
    #[command(subcommand)]
    Issuer(crate::issuer::admin::IssuerCommand),
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Setting<Mode>,
    pub db: Setting<PathBuf>,
    pub socket: Setting<PathBuf>,
    pub config_file: Setting<PathBuf>,
    pub log_format: Setting<LogFormat>,
    pub log_level: Setting<String>,
    pub max_clock_skew_secs: Setting<u64>,
    pub listen: Setting<String>,
    pub tls_cert: Option<Setting<PathBuf>>,
    pub tls_key: Option<Setting<PathBuf>>,
    pub public_url: Option<Setting<String>>,
    pub insecure_no_auth: Setting<bool>,
    pub oidc_issuer: Option<Setting<String>>,
    pub oidc_audience: Option<Setting<String>>,
    pub oidc_client_id: Setting<String>,
    pub oidc_scopes: Setting<String>,
    pub owner_sub: Option<Setting<String>>,
    pub builtin_issuer: Setting<bool>,
    pub issuer_access_ttl_secs: Setting<u64>,
    pub issuer_poll_interval_secs: Setting<u64>,
    pub issuer_sign_in_lifetime_secs: Setting<u64>,
    pub issuer_max_device_codes: Setting<u64>,
    pub issuer_rate_limit_keys: Setting<u64>,
    /// Reverse proxies whose `X-Forwarded-For` is believed (none by default).
    pub trusted_proxy: Option<Setting<crate::issuer::proxy::TrustedProxies>>,
    /// The SMTP server for invitations (may hold a password: never a flag, printed redacted).
    pub smtp_url: Option<Setting<String>>,
    pub smtp_from: Option<Setting<String>>,
    pub hub_url: Option<Setting<String>>,
    pub hub_ca: Option<Setting<PathBuf>>,
    /// Where the spoke's tokens are kept (the source is that of `token_store`).
    pub token_store: Setting<heph_auth::StoreConfig>,
    /// Config-file keys this version does not know.
    pub unknown_keys: Vec<String>,
}

/// Keys the config file may hold.
pub const KNOWN_KEYS: &[&str] = &[
    "mode",
    "db",
    "socket",
    "log_format",
    "log_level",
    "max_clock_skew",
    "listen",
    "tls_cert",
    "tls_key",
    "public_url",
    "insecure_no_auth",
    "oidc_issuer",
    "oidc_audience",
    "oidc_client_id",
    "oidc_scopes",
    "owner_sub",
    "builtin_issuer",
    "issuer_access_ttl",
    "issuer_poll_interval",
    "issuer_sign_in_lifetime",
    "issuer_max_device_codes",
    "issuer_rate_limit_keys",
    "trusted_proxy",
    "smtp_url",
    "smtp_from",
    "hub_url",
    "hub_ca",
    "token_store",
    "token_file",
    "token_load_cmd",
    "token_save_cmd",
];

fn parse_setting<T>(
    s: Setting<String>,
    key: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Setting<T>, ConfigError> {
    match parse(&s.value) {
        Ok(value) => Ok(Setting {
            value,
            source: s.source,
        }),
        Err(reason) => Err(ConfigError::Value {
            key: key.to_owned(),
            source_: s.source,
            reason,
        }),
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("{s:?} is not true or false")),
    }
}

fn value_enum<T: ValueEnum>(s: &str) -> Result<T, String> {
    T::from_str(s, true).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_owned()))
            .collect();
        format!("{s:?} is not one of {}", names.join(", "))
    })
}

impl Config {
    /// Resolves the configuration from flags, an environment lookup and a file reader.
    pub fn resolve(
        args: &Args,
        env: &dyn Fn(&str) -> Option<String>,
        read_file: &dyn Fn(&std::path::Path) -> std::io::Result<String>,
    ) -> Result<Config, ConfigError> {
        let bare = Layers::new(env, None)?;
        let config_file = bare
            .get(
                "config",
                args.config
                    .as_ref()
                    .map(|p| ("--config", p.display().to_string())),
            )?
            .map(|s| s.map(PathBuf::from))
            .unwrap_or_else(|| Setting {
                value: bare.default_config_file(),
                source: Source::Default,
            });
        let text = match read_file(&config_file.value) {
            Ok(text) => Some(text),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && config_file.source == Source::Default =>
            {
                None
            }
            Err(e) => {
                return Err(ConfigError::Parse {
                    path: config_file.value.clone(),
                    reason: e.to_string(),
                });
            }
        };
        let layers = Layers::new(
            env,
            text.as_deref().map(|t| (config_file.value.as_path(), t)),
        )?;
        let paths = Paths::resolve(&layers, args.db.clone(), args.socket.clone())?;
        let mode = layers.get_or(
            "mode",
            args.mode.map(|m| ("--mode", m.as_str().to_owned())),
            "local",
        )?;
        let log_format = layers.get_or(
            "log_format",
            args.log_format
                .map(|f| ("--log-format", format!("{f:?}").to_lowercase())),
            "human",
        )?;
        let log_level = layers.get_or(
            "log_level",
            args.log_level.clone().map(|l| ("--log-level", l)),
            "info",
        )?;
        let skew = layers.get_or(
            "max_clock_skew",
            args.max_clock_skew
                .map(|s| ("--max-clock-skew", s.to_string())),
            (DEFAULT_MAX_CLOCK_SKEW_MS / 1000).to_string(),
        )?;
        let path = |key: &str, flag: &'static str, v: &Option<PathBuf>| {
            layers
                .get(key, v.as_ref().map(|p| (flag, p.display().to_string())))
                .map(|s| s.map(|s| s.map(PathBuf::from)))
        };
        let text = |key: &str, flag: &'static str, v: &Option<String>| {
            layers.get(key, v.clone().map(|t| (flag, t)))
        };
        let insecure = layers.get_or(
            "insecure_no_auth",
            args.insecure_no_auth
                .then(|| ("--insecure-no-auth", "true".to_owned())),
            "false",
        )?;
        let builtin = layers.get_or(
            "builtin_issuer",
            args.builtin_issuer
                .then(|| ("--builtin-issuer", "true".to_owned())),
            "false",
        )?;
        let secs = |key: &str, flag: &'static str, v: Option<u64>, default: &str| {
            layers
                .get_or(key, v.map(|s| (flag, s.to_string())), default)
                .and_then(|s| {
                    parse_setting(s, key, |t| match t.parse::<u64>() {
                        Ok(n) if n > 0 => Ok(n),
                        _ => Err(format!("{t:?} is not a positive whole number of seconds")),
                    })
                })
        };
        let count = |key: &str, flag: &'static str, v: Option<u64>, default: &str| {
            layers
                .get_or(key, v.map(|s| (flag, s.to_string())), default)
                .and_then(|s| {
                    parse_setting(s, key, |t| match t.parse::<u64>() {
                        Ok(n) if n > 0 && n <= u64::from(u32::MAX) => Ok(n),
                        _ => Err(format!("{t:?} is not a positive whole number")),
                    })
                })
        };
        let trusted_proxy = match text("trusted_proxy", "--trusted-proxy", &args.trusted_proxy)? {
            Some(s) => Some(parse_setting(s, "trusted_proxy", |t| {
                crate::issuer::proxy::TrustedProxies::parse(t).map_err(|e| e.to_string())
            })?),
            None => None,
        };
        Ok(Config {
            builtin_issuer: parse_setting(builtin, "builtin_issuer", parse_bool)?,
            issuer_access_ttl_secs: secs(
                "issuer_access_ttl",
                "--issuer-access-ttl",
                args.issuer_access_ttl,
                "600",
            )?,
            issuer_poll_interval_secs: secs(
                "issuer_poll_interval",
                "--issuer-poll-interval",
                args.issuer_poll_interval,
                "5",
            )?,
            issuer_sign_in_lifetime_secs: secs(
                "issuer_sign_in_lifetime",
                "--issuer-sign-in-lifetime",
                args.issuer_sign_in_lifetime,
                &crate::issuer::grants::DEFAULT_SIGN_IN_LIFETIME_SECS.to_string(),
            )?,
            issuer_max_device_codes: count(
                "issuer_max_device_codes",
                "--issuer-max-device-codes",
                args.issuer_max_device_codes,
                "10000",
            )?,
            issuer_rate_limit_keys: count(
                "issuer_rate_limit_keys",
                "--issuer-rate-limit-keys",
                args.issuer_rate_limit_keys,
                "10000",
            )?,
            trusted_proxy,
            smtp_url: layers.get("smtp_url", None)?,
            smtp_from: text("smtp_from", "--smtp-from", &args.smtp_from)?,
            listen: layers.get_or(
                "listen",
                args.listen.clone().map(|l| ("--listen", l)),
                DEFAULT_LISTEN,
            )?,
            tls_cert: path("tls_cert", "--tls-cert", &args.tls_cert)?,
            tls_key: path("tls_key", "--tls-key", &args.tls_key)?,
            public_url: text("public_url", "--public-url", &args.public_url)?,
            insecure_no_auth: parse_setting(insecure, "insecure_no_auth", parse_bool)?,
            oidc_issuer: text("oidc_issuer", "--oidc-issuer", &args.oidc_issuer)?,
            oidc_audience: text("oidc_audience", "--oidc-audience", &args.oidc_audience)?,
            oidc_client_id: layers.get_or(
                "oidc_client_id",
                args.oidc_client_id.clone().map(|c| ("--oidc-client-id", c)),
                "heph",
            )?,
            oidc_scopes: layers.get_or(
                "oidc_scopes",
                args.oidc_scopes.clone().map(|c| ("--oidc-scopes", c)),
                "openid offline_access",
            )?,
            owner_sub: text("owner_sub", "--owner-sub", &args.owner_sub)?,
            hub_url: text("hub_url", "--hub-url", &args.hub_url)?,
            hub_ca: path("hub_ca", "--hub-ca", &args.hub_ca)?,
            token_store: heph_auth::StoreConfig::resolve(
                &layers,
                &heph_auth::StoreFlags {
                    store: args.token_store.clone(),
                    file: args.token_file.clone(),
                    load_cmd: args.token_load_cmd.clone(),
                    save_cmd: args.token_save_cmd.clone(),
                },
            )?,
            mode: parse_setting(mode, "mode", value_enum)?,
            db: paths.db,
            socket: paths.socket,
            config_file,
            log_format: parse_setting(log_format, "log_format", value_enum)?,
            log_level,
            max_clock_skew_secs: parse_setting(skew, "max_clock_skew", |s| {
                s.parse()
                    .map_err(|_| format!("{s:?} is not a whole number of seconds"))
            })?,
            unknown_keys: layers.unknown_file_keys(KNOWN_KEYS),
        })
    }

    /// The text `--print-config` shows: one `key = value  # source` line each.
    pub fn render(&self) -> String {
        let mut rows: Vec<(&str, String, &Source)> = vec![
            (
                "mode",
                self.mode.value.as_str().to_owned(),
                &self.mode.source,
            ),
            ("db", self.db.value.display().to_string(), &self.db.source),
            (
                "socket",
                self.socket.value.display().to_string(),
                &self.socket.source,
            ),
            (
                "config",
                self.config_file.value.display().to_string(),
                &self.config_file.source,
            ),
            (
                "log_format",
                format!("{:?}", self.log_format.value).to_lowercase(),
                &self.log_format.source,
            ),
            (
                "log_level",
                self.log_level.value.clone(),
                &self.log_level.source,
            ),
            (
                "max_clock_skew",
                self.max_clock_skew_secs.value.to_string(),
                &self.max_clock_skew_secs.source,
            ),
            ("listen", self.listen.value.clone(), &self.listen.source),
            (
                "insecure_no_auth",
                self.insecure_no_auth.value.to_string(),
                &self.insecure_no_auth.source,
            ),
            (
                "builtin_issuer",
                self.builtin_issuer.value.to_string(),
                &self.builtin_issuer.source,
            ),
        ];
        if let Some(s) = &self.trusted_proxy {
            rows.push(("trusted_proxy", s.value.to_string(), &s.source));
        }
        if let Some(s) = &self.smtp_url {
            rows.push(("smtp_url", crate::issuer::mail::redact(&s.value), &s.source));
        }
        if let Some(s) = &self.smtp_from {
            rows.push(("smtp_from", s.value.clone(), &s.source));
        }
        if self.builtin_issuer.value {
            for (key, s) in [
                ("issuer_access_ttl", &self.issuer_access_ttl_secs),
                ("issuer_poll_interval", &self.issuer_poll_interval_secs),
                (
                    "issuer_sign_in_lifetime",
                    &self.issuer_sign_in_lifetime_secs,
                ),
                ("issuer_max_device_codes", &self.issuer_max_device_codes),
                ("issuer_rate_limit_keys", &self.issuer_rate_limit_keys),
            ] {
                rows.push((key, s.value.to_string(), &s.source));
            }
        }
        for (key, setting) in [
            ("tls_cert", &self.tls_cert),
            ("tls_key", &self.tls_key),
            ("hub_ca", &self.hub_ca),
        ] {
            if let Some(s) = setting {
                rows.push((key, s.value.display().to_string(), &s.source));
            }
        }
        for (key, setting) in [
            ("oidc_client_id", &self.oidc_client_id),
            ("oidc_scopes", &self.oidc_scopes),
        ] {
            rows.push((key, setting.value.clone(), &setting.source));
        }
        for (key, setting) in [
            ("public_url", &self.public_url),
            ("oidc_issuer", &self.oidc_issuer),
            ("oidc_audience", &self.oidc_audience),
            ("owner_sub", &self.owner_sub),
            ("hub_url", &self.hub_url),
        ] {
            if let Some(s) = setting {
                rows.push((key, s.value.clone(), &s.source));
            }
        }
        let store = &self.token_store;
        rows.push((
            "token_store",
            store.value.kind.as_str().to_owned(),
            &store.source,
        ));
        for (key, value) in [
            (
                "token_file",
                store.value.file.as_ref().map(|p| p.display().to_string()),
            ),
            ("token_load_cmd", store.value.load_cmd.clone()),
            ("token_save_cmd", store.value.save_cmd.clone()),
        ] {
            if let Some(v) = value {
                rows.push((key, v, &store.source));
            }
        }
        let width = rows
            .iter()
            .map(|(k, v, _)| k.len() + v.len())
            .max()
            .unwrap_or(0)
            + 4;
        let mut out =
            String::from("# hephd effective configuration: value, then where it came from\n");
        for (key, value, source) in rows {
            let line = format!("{key} = {value:?}");
            out.push_str(&format!("{line:<width$}  # {source}\n"));
        }
        for key in &self.unknown_keys {
            out.push_str(&format!(
                "# warning: unknown key {key:?} in the config file is ignored\n"
            ));
        }
        out
    }
}

/// The environment variable names hephd reads, for documentation.
pub fn env_vars() -> Vec<String> {
    KNOWN_KEYS
        .iter()
        .map(|k| env_var(k))
        .chain(["HEPH_CONFIG".to_owned()])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(
        argv: &[&str],
        vars: &'static [(&'static str, &'static str)],
        file: Option<&'static str>,
    ) -> Result<Config, ConfigError> {
        let args =
            Args::try_parse_from(std::iter::once("hephd").chain(argv.iter().copied())).unwrap();
        let env = move |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        };
        let read = move |_: &std::path::Path| {
            file.map(str::to_owned)
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        };
        Config::resolve(&args, &env, &read)
    }

    #[test]
    fn print_config_names_every_source() {
        let c = resolve(
            &["--socket", "/flag/s.sock"],
            &[
                ("HOME", "/home/u"),
                ("HEPH_DB", "/env/heph.db"),
                ("HEPH_LOG_LEVEL", ""),
            ],
            Some("log_format = \"json\"\nmax_clock_skew = 60\nfuture_key = 1\n"),
        )
        .unwrap();
        let text = c.render();
        assert!(text.contains("db = \"/env/heph.db\""), "{text}");
        assert!(text.contains("# environment HEPH_DB"), "{text}");
        assert!(text.contains("# flag --socket"), "{text}");
        assert!(text.contains("log_format = \"json\""), "{text}");
        assert!(
            text.contains("# config file /home/u/.config/heph/config.toml"),
            "{text}"
        );
        assert!(
            text.contains("log_level = \"info\""),
            "an empty HEPH_LOG_LEVEL counts as unset: {text}"
        );
        assert!(text.contains("unknown key \"future_key\""), "{text}");
        assert_eq!(c.max_clock_skew_secs.value, 60);
    }

    #[test]
    fn token_store_settings_resolve_and_print() {
        let c = resolve(
            &["--token-store", "file"],
            &[("HOME", "/h"), ("HEPH_TOKEN_FILE", "/h/tokens.json")],
            Some("token_load_cmd = \"pass show heph\"\n"),
        )
        .unwrap();
        assert_eq!(c.token_store.value.kind, heph_auth::StoreKind::File);
        assert_eq!(
            c.token_store.value.file.as_deref(),
            Some(std::path::Path::new("/h/tokens.json"))
        );
        let text = c.render();
        assert!(text.contains("token_store = \"file\""), "{text}");
        assert!(text.contains("token_file = \"/h/tokens.json\""), "{text}");
        assert!(
            text.contains("token_load_cmd = \"pass show heph\""),
            "{text}"
        );
        assert!(!text.contains("unknown key"), "{text}");
        let c = resolve(&[], &[("HOME", "/h")], None).unwrap();
        assert_eq!(c.token_store.value.kind, heph_auth::StoreKind::Keyring);
        let err = resolve(&[], &[("HOME", "/h"), ("HEPH_TOKEN_STORE", "vault")], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value for token_store (environment HEPH_TOKEN_STORE): \"vault\" is not one of keyring, file, command, memory"
        );
    }

    #[test]
    fn trusted_proxies_resolve_print_and_refuse_names() {
        let c = resolve(
            &["--builtin-issuer"],
            &[("HOME", "/h"), ("HEPH_TRUSTED_PROXY", "127.0.0.1, ::1")],
            None,
        )
        .unwrap();
        let text = c.render();
        assert!(text.contains("trusted_proxy = \"127.0.0.1,::1\""), "{text}");
        assert!(text.contains("# environment HEPH_TRUSTED_PROXY"), "{text}");
        assert!(
            text.contains("issuer_sign_in_lifetime = \"7776000\""),
            "{text}"
        );
        let c = resolve(&[], &[("HOME", "/h")], None).unwrap();
        assert!(c.trusted_proxy.is_none(), "no proxy is trusted by default");
        let err = resolve(&["--trusted-proxy", "proxy.lan"], &[("HOME", "/h")], None).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "invalid value for trusted_proxy (flag --trusted-proxy): \"proxy.lan\" is not an IP address"
            ),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_their_source() {
        let err = resolve(&[], &[("HOME", "/h"), ("HEPH_LOG_FORMAT", "xml")], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value for log_format (environment HEPH_LOG_FORMAT): \"xml\" is not one of human, json"
        );
        let err = resolve(&["--config", "/nope.toml"], &[("HOME", "/h")], None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot parse the config file /nope.toml"),
            "{err}"
        );
    }
}
