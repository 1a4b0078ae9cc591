//! What every command is given: the settings resolved exactly as `hephd`
//! resolves them, "now" in the local time zone, and the two output streams.
//!
//! [`Settings::resolve`] is pure (the environment and the file reader are
//! passed in); [`Ctx::from_process`] feeds it the real process. [`Out`] is
//! the only place that writes to stdout and stderr: data goes to stdout
//! (pure JSON with `--json`), prose to stderr, and a closed stdout becomes
//! [`CliError::BrokenPipe`] (exit 0) instead of a panic.

use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};

use heph_core::config::{Layers, Paths, Setting, Source};
use heph_core::input::Ymd;
use serde::Serialize;

use crate::cli::GlobalArgs;
use crate::exit::{CliError, Exit};
use crate::output::Now;
use crate::rpc_client::Client;

/// The config file in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub source: Source,
    /// Whether the file exists (a default path that does not is simply unused).
    pub exists: bool,
}

/// Everything `heph` resolved from flags, `HEPH_*` and the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub db: Setting<PathBuf>,
    pub socket: Setting<PathBuf>,
    pub config: ConfigFile,
    /// `log_format`, baked into the service unit.
    pub log_format: Setting<String>,
    /// Where a background daemon's output goes (`HEPH_LOG_FILE`, else
    /// `$XDG_STATE_HOME/heph/hephd.log`); `--log-file` overrides it per command.
    pub log_file: Setting<PathBuf>,
    /// `$XDG_CONFIG_HOME` (where `systemd/user/` lives).
    pub config_home: PathBuf,
    /// `$HOME` (where `Library/LaunchAgents/` lives on macOS).
    pub home: PathBuf,
    /// `HEPH_HEPHD`: the daemon program to run.
    pub hephd: Option<PathBuf>,
    /// Daemon settings beyond the paths that must survive into a service unit.
    pub extra_daemon_args: Vec<String>,
}

impl Settings {
    /// Resolves every setting: flags > environment > config file > defaults.
    pub fn resolve(
        global: &GlobalArgs,
        env: &dyn Fn(&str) -> Option<String>,
        read_file: &dyn Fn(&Path) -> io::Result<String>,
    ) -> Result<Self, CliError> {
        let bare = Layers::new(env, None)?;
        let config = match (&global.config, bare.env("HEPH_CONFIG")) {
            (Some(path), _) => ConfigFile {
                path: path.clone(),
                source: Source::Flag("--config".into()),
                exists: true,
            },
            (None, Some(path)) => ConfigFile {
                path: path.into(),
                source: Source::Env("HEPH_CONFIG".into()),
                exists: true,
            },
            (None, None) => ConfigFile {
                path: bare.default_config_file(),
                source: Source::Default,
                exists: false,
            },
        };
        let text = match read_file(&config.path) {
            Ok(text) => Some(text),
            // Only the default may be missing; a named file must exist.
            Err(e) if e.kind() == ErrorKind::NotFound && config.source == Source::Default => None,
            Err(e) => {
                return Err(CliError::Io {
                    context: format!(
                        "cannot read the config file {} ({})",
                        config.path.display(),
                        config.source
                    ),
                    source: e,
                });
            }
        };
        let config = ConfigFile {
            exists: text.is_some(),
            ..config
        };
        let layers = Layers::new(env, text.as_deref().map(|t| (config.path.as_path(), t)))?;
        let paths = Paths::resolve(&layers, global.db.clone(), global.socket.clone())?;
        let log_format = layers.get_or("log_format", None, "human")?;
        // Only the environment: the daemon does not know a `log_file` key and
        // would warn about it in the config file.
        let log_file = match layers.env("HEPH_LOG_FILE") {
            Some(path) => Setting {
                value: PathBuf::from(path),
                source: Source::Env("HEPH_LOG_FILE".into()),
            },
            None => Setting {
                value: layers.default_log_file(),
                source: Source::Default,
            },
        };
        // default_config_file() is $XDG_CONFIG_HOME/heph/config.toml.
        let default_config = layers.default_config_file();
        let config_home = default_config
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("/"))
            .to_path_buf();
        Ok(Self {
            db: paths.db,
            socket: paths.socket,
            config,
            log_format,
            log_file,
            config_home,
            home: PathBuf::from(layers.env("HOME").unwrap_or_else(|| "/".into())),
            hephd: layers.env("HEPH_HEPHD").map(PathBuf::from),
            extra_daemon_args: crate::service::extra_daemon_args(&layers)?,
        })
    }

    /// The arguments that make `hephd` use these settings: the paths, the
    /// config file, the log format, then [`crate::service::extra_daemon_args`].
    pub fn daemon_args(&self) -> Vec<String> {
        // A service does not start in this directory: make paths absolute.
        let abs = |p: &Path| {
            std::path::absolute(p)
                .unwrap_or_else(|_| p.to_path_buf())
                .display()
                .to_string()
        };
        let mut args = vec![
            "--db".to_owned(),
            abs(&self.db.value),
            "--socket".to_owned(),
            abs(&self.socket.value),
        ];
        if self.config.exists {
            args.push("--config".into());
            args.push(abs(&self.config.path));
        }
        args.push("--log-format".into());
        args.push(self.log_format.value.clone());
        args.extend(self.extra_daemon_args.iter().cloned());
        args
    }
}

/// Writes data to stdout and prose to stderr.
#[derive(Debug, Clone)]
pub struct Out {
    /// `--json`: stdout carries only JSON.
    pub json: bool,
}

impl Out {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Writes `text` to stdout as it is.
    pub fn print(&self, text: &str) -> Result<(), CliError> {
        let mut stdout = io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(stdout_error)
    }

    /// Writes `value` to stdout as one line of JSON.
    pub fn json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), CliError> {
        let mut text = serde_json::to_string(value)
            .map_err(|e| CliError::failed(format!("cannot encode the JSON output: {e}")))?;
        text.push('\n');
        self.print(&text)
    }

    /// Writes prose to stderr; a failing stderr is ignored.
    pub fn note(&self, text: &str) {
        let mut stderr = io::stderr().lock();
        let _ = stderr.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = stderr.write_all(b"\n");
        }
    }

    /// Prints `err` on stderr (if it has anything to say) and returns its exit code.
    pub fn fail(&self, err: &CliError) -> Exit {
        if let Some(report) = err.report() {
            self.note(&report.to_string());
        }
        err.exit()
    }
}

fn stdout_error(e: io::Error) -> CliError {
    if e.kind() == ErrorKind::BrokenPipe {
        CliError::BrokenPipe
    } else {
        CliError::io("cannot write to stdout", e)
    }
}

/// A command's context.
pub struct Ctx {
    pub settings: Settings,
    pub out: Out,
    /// The local date, time zone and instant the command runs at.
    pub now: Now,
}

impl Ctx {
    /// Resolves settings from the real process environment and files.
    pub fn from_process(global: &GlobalArgs, out: Out) -> Result<Self, CliError> {
        let env = |key: &str| std::env::var(key).ok();
        let settings = Settings::resolve(global, &env, &|p| std::fs::read_to_string(p))?;
        Ok(Self {
            settings,
            out,
            now: Now::local(),
        })
    }

    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        self.out.json
    }

    /// Today's local date, for reading relative dates.
    pub fn today(&self) -> Ymd {
        self.now.today
    }

    /// Connects to the daemon on the resolved socket.
    pub fn client(&self) -> Result<Client, CliError> {
        Ok(Client::connect(&self.settings.socket.value)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn files(
        files: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&Path) -> io::Result<String> {
        move |p| {
            files
                .iter()
                .find(|(n, _)| Path::new(n) == p)
                .map(|(_, t)| (*t).to_owned())
                .ok_or_else(|| io::Error::from(ErrorKind::NotFound))
        }
    }

    fn global() -> GlobalArgs {
        GlobalArgs::default()
    }

    #[test]
    fn defaults_follow_xdg_and_skip_a_missing_default_config() {
        let e = env(&[("HOME", "/home/u"), ("XDG_RUNTIME_DIR", "/run/user/1000")]);
        let s = Settings::resolve(&global(), &e, &files(&[])).unwrap();
        assert_eq!(s.db.value, Path::new("/home/u/.local/share/heph/heph.db"));
        assert_eq!(s.socket.value, Path::new("/run/user/1000/heph/hephd.sock"));
        assert_eq!(s.config.path, Path::new("/home/u/.config/heph/config.toml"));
        assert!(!s.config.exists);
        assert_eq!(s.config_home, Path::new("/home/u/.config"));
        assert_eq!(
            s.log_file.value,
            Path::new("/home/u/.local/state/heph/hephd.log")
        );
        assert_eq!(
            s.daemon_args(),
            [
                "--db",
                "/home/u/.local/share/heph/heph.db",
                "--socket",
                "/run/user/1000/heph/hephd.sock",
                "--log-format",
                "human"
            ]
        );
    }

    #[test]
    fn flags_beat_env_beat_the_config_file() {
        let e = env(&[
            ("HOME", "/home/u"),
            ("HEPH_CONFIG", "/etc/heph.toml"),
            ("HEPH_SOCKET", "/env/s.sock"),
            ("HEPH_MAX_CLOCK_SKEW", "60"),
        ]);
        let f = files(&[(
            "/etc/heph.toml",
            "db = \"/file/heph.db\"\nsocket = \"/file/s.sock\"\nlog_format = \"json\"",
        )]);
        let s = Settings::resolve(&global(), &e, &f).unwrap();
        assert_eq!(s.db.value, Path::new("/file/heph.db"));
        assert_eq!(s.socket.value, Path::new("/env/s.sock"));
        assert_eq!(s.log_format.value, "json");
        assert!(s.config.exists);
        assert_eq!(
            s.daemon_args(),
            [
                "--db",
                "/file/heph.db",
                "--socket",
                "/env/s.sock",
                "--config",
                "/etc/heph.toml",
                "--log-format",
                "json",
                "--max-clock-skew",
                "60"
            ]
        );
        let flags = GlobalArgs {
            socket: Some("/flag/s.sock".into()),
            db: Some("/flag/heph.db".into()),
            ..global()
        };
        let s = Settings::resolve(&flags, &e, &f).unwrap();
        assert_eq!(s.db.source, Source::Flag("--db".into()));
        assert_eq!(s.socket.value, Path::new("/flag/s.sock"));
    }

    #[test]
    fn a_named_config_file_must_exist_and_parse() {
        let e = env(&[("HOME", "/home/u")]);
        let named = GlobalArgs {
            config: Some("/nope.toml".into()),
            ..global()
        };
        let err = Settings::resolve(&named, &e, &files(&[])).err().unwrap();
        assert_eq!(
            err.report().unwrap().to_string(),
            "error: cannot read the config file /nope.toml (flag --config): entity not found\n"
        );
        let bad = GlobalArgs {
            config: Some("/bad.toml".into()),
            ..global()
        };
        let err = Settings::resolve(&bad, &e, &files(&[("/bad.toml", "db = ")]))
            .err()
            .unwrap();
        assert!(
            err.report()
                .unwrap()
                .to_string()
                .starts_with("error: cannot parse the config file /bad.toml"),
            "{err}"
        );
    }
}
