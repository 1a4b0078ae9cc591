//! `heph-tui`'s flags and where the daemon's socket is, resolved exactly as
//! `hephd` resolves it: flags > `HEPH_*` environment > the config file
//! (`--config`, `HEPH_CONFIG`, or `$XDG_CONFIG_HOME/heph/config.toml`) >
//! defaults, through [`heph_core::config`].
//!
//! Pure: the environment and the file reader are passed in.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use clap::Parser;
use heph_core::config::{Layers, Paths, Setting, Source};

/// Command-line flags of `heph-tui`.
#[derive(Debug, Default, Parser)]
#[command(
    name = "heph-tui",
    version,
    about = "The Hephaestus terminal UI: a live agenda, notes, quick add, and sync and sign-in health",
    after_help = "It talks to hephd over its socket, found as hephd finds it: --socket, HEPH_SOCKET, \
                  the config file, or $XDG_RUNTIME_DIR/heph/hephd.sock. Set NO_COLOR for a \
                  colourless screen. Press ? inside for the keys."
)]
pub struct Args {
    /// The daemon's RPC socket [default: $XDG_RUNTIME_DIR/heph/hephd.sock, else beside the db].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The replica database, used only to find the socket beside it [default: $XDG_DATA_HOME/heph/heph.db].
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// The config file [default: $XDG_CONFIG_HOME/heph/config.toml].
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// What `heph-tui` runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub socket: Setting<PathBuf>,
    /// `NO_COLOR` unset or empty.
    pub color: bool,
}

impl Settings {
    /// Resolves the settings; the error is one sentence naming the file or value.
    pub fn resolve(
        args: &Args,
        env: &dyn Fn(&str) -> Option<String>,
        read_file: &dyn Fn(&Path) -> std::io::Result<String>,
    ) -> Result<Self, String> {
        let bare = Layers::new(env, None).map_err(|e| e.to_string())?;
        let config = bare
            .get(
                "config",
                args.config
                    .as_ref()
                    .map(|p| ("--config", p.display().to_string())),
            )
            .map_err(|e| e.to_string())?
            .map(|s| s.map(PathBuf::from))
            .unwrap_or_else(|| Setting {
                value: bare.default_config_file(),
                source: Source::Default,
            });
        let text = match read_file(&config.value) {
            Ok(text) => Some(text),
            // Only the default may be missing; a named file must exist.
            Err(e) if e.kind() == ErrorKind::NotFound && config.source == Source::Default => None,
            Err(e) => {
                return Err(format!(
                    "cannot read the config file {} ({}): {e}",
                    config.value.display(),
                    config.source
                ));
            }
        };
        let layers = Layers::new(env, text.as_deref().map(|t| (config.value.as_path(), t)))
            .map_err(|e| e.to_string())?;
        let paths = Paths::resolve(&layers, args.db.clone(), args.socket.clone())
            .map_err(|e| e.to_string())?;
        Ok(Self {
            socket: paths.socket,
            color: bare.env("NO_COLOR").is_none(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn no_file(_: &Path) -> io::Result<String> {
        Err(io::ErrorKind::NotFound.into())
    }

    #[test]
    fn the_socket_is_found_as_the_daemon_finds_it() {
        let e = env(&[("HOME", "/home/u"), ("XDG_RUNTIME_DIR", "/run/user/1")]);
        let s = Settings::resolve(&Args::default(), &e, &no_file).unwrap();
        assert_eq!(s.socket.value, Path::new("/run/user/1/heph/hephd.sock"));
        assert!(s.color);
        // Beside the db without a runtime dir.
        let e = env(&[
            ("HOME", "/home/u"),
            ("HEPH_DB", "/data/x.db"),
            ("NO_COLOR", "1"),
        ]);
        let s = Settings::resolve(&Args::default(), &e, &no_file).unwrap();
        assert_eq!(s.socket.value, Path::new("/data/hephd.sock"));
        assert!(!s.color);
        // The flag wins over the environment.
        let e = env(&[
            ("HOME", "/h"),
            ("HEPH_SOCKET", "/env.sock"),
            ("NO_COLOR", ""),
        ]);
        let args = Args {
            socket: Some("/flag.sock".into()),
            ..Args::default()
        };
        let s = Settings::resolve(&args, &e, &no_file).unwrap();
        assert_eq!(
            (s.socket.value.as_path(), s.socket.source, s.color),
            (
                Path::new("/flag.sock"),
                Source::Flag("--socket".into()),
                true
            )
        );
    }

    #[test]
    fn the_config_file_is_read_from_heph_config() {
        let e = env(&[("HOME", "/h"), ("HEPH_CONFIG", "/etc/heph.toml")]);
        let read = |p: &Path| -> io::Result<String> {
            assert_eq!(p, Path::new("/etc/heph.toml"));
            Ok("socket = \"/file.sock\"".into())
        };
        let s = Settings::resolve(&Args::default(), &e, &read).unwrap();
        assert_eq!(s.socket.value, Path::new("/file.sock"));
        assert_eq!(s.socket.source, Source::File("/etc/heph.toml".into()));
    }

    #[test]
    fn a_named_config_file_must_exist() {
        let e = env(&[("HOME", "/h")]);
        let args = Args {
            config: Some("/nope.toml".into()),
            ..Args::default()
        };
        assert_eq!(
            Settings::resolve(&args, &e, &no_file).unwrap_err(),
            "cannot read the config file /nope.toml (flag --config): entity not found"
        );
        let bad = |_: &Path| -> io::Result<String> { Ok("socket = ".into()) };
        let err = Settings::resolve(&Args::default(), &e, &bad).unwrap_err();
        assert!(
            err.starts_with("cannot parse the config file /h/.config/heph/config.toml"),
            "{err}"
        );
    }
}
