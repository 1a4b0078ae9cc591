//! Settings shared by `hephd`, `heph` and `heph-tui`: where things live and
//! which layer each value came from.
//!
//! Precedence is flags > environment (`HEPH_*`; an empty value counts as
//! unset) > the config file (`$XDG_CONFIG_HOME/heph/config.toml`) >
//! defaults. This module is pure: callers pass the environment as a lookup
//! function and the config file as text, so every rule here is testable
//! without touching the process.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag, e.g. `--db`.
    Flag(String),
    /// An environment variable, e.g. `HEPH_DB`.
    Env(String),
    /// A key of the config file.
    File(PathBuf),
    /// The built-in default.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "flag {flag}"),
            Source::Env(var) => write!(f, "environment {var}"),
            Source::File(path) => write!(f, "config file {}", path.display()),
            Source::Default => f.write_str("default"),
        }
    }
}

/// One resolved setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Setting<T> {
    /// Transforms the value, keeping the source.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Setting<U> {
        Setting {
            value: f(self.value),
            source: self.source,
        }
    }
}

/// A config file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot parse the config file {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("invalid value for {key} ({source_}): {reason}")]
    Value {
        key: String,
        source_: Source,
        reason: String,
    },
}

/// The environment variable for a setting key: `log_format` → `HEPH_LOG_FORMAT`.
pub fn env_var(key: &str) -> String {
    format!("HEPH_{}", key.to_ascii_uppercase())
}

/// The environment and config-file layers, ready to resolve settings.
pub struct Layers<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    file: Option<(PathBuf, toml::Table)>,
}

impl<'a> Layers<'a> {
    /// Builds the layers. `file` is the config file's path and text, if it exists.
    pub fn new(
        env: &'a dyn Fn(&str) -> Option<String>,
        file: Option<(&Path, &str)>,
    ) -> Result<Self, ConfigError> {
        let file = match file {
            None => None,
            Some((path, text)) => {
                let table: toml::Table =
                    text.parse()
                        .map_err(|e: toml::de::Error| ConfigError::Parse {
                            path: path.to_path_buf(),
                            reason: e.message().to_owned(),
                        })?;
                Some((path.to_path_buf(), table))
            }
        };
        Ok(Self { env, file })
    }

    /// An environment variable, with an empty value counting as unset.
    pub fn env(&self, var: &str) -> Option<String> {
        (self.env)(var).filter(|v| !v.is_empty())
    }

    /// Resolves `key` from a flag value (if given), `HEPH_<KEY>`, the file, or nothing.
    pub fn get(
        &self,
        key: &str,
        flag: Option<(&str, String)>,
    ) -> Result<Option<Setting<String>>, ConfigError> {
        if let Some((name, value)) = flag {
            return Ok(Some(Setting {
                value,
                source: Source::Flag(name.to_owned()),
            }));
        }
        let var = env_var(key);
        if let Some(value) = self.env(&var) {
            return Ok(Some(Setting {
                value,
                source: Source::Env(var),
            }));
        }
        if let Some((path, table)) = &self.file {
            if let Some(v) = table.get(key) {
                let value = match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    _ => {
                        return Err(ConfigError::Value {
                            key: key.to_owned(),
                            source_: Source::File(path.clone()),
                            reason: "expected a string, number or boolean".into(),
                        });
                    }
                };
                return Ok(Some(Setting {
                    value,
                    source: Source::File(path.clone()),
                }));
            }
        }
        Ok(None)
    }

    /// Like [`get`](Self::get), falling back to `default`.
    pub fn get_or(
        &self,
        key: &str,
        flag: Option<(&str, String)>,
        default: impl Into<String>,
    ) -> Result<Setting<String>, ConfigError> {
        Ok(self.get(key, flag)?.unwrap_or_else(|| Setting {
            value: default.into(),
            source: Source::Default,
        }))
    }

    /// Keys of the config file that are not in `known` (to warn about typos).
    pub fn unknown_file_keys(&self, known: &[&str]) -> Vec<String> {
        self.file
            .as_ref()
            .map(|(_, t)| {
                t.keys()
                    .filter(|k| !known.contains(&k.as_str()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn home_dir(&self, xdg: &str, fallback: &str) -> PathBuf {
        match self.env(xdg) {
            Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
            _ => PathBuf::from(self.env("HOME").unwrap_or_else(|| "/".into())).join(fallback),
        }
    }

    /// `$XDG_CONFIG_HOME/heph/config.toml`.
    pub fn default_config_file(&self) -> PathBuf {
        self.home_dir("XDG_CONFIG_HOME", ".config")
            .join("heph/config.toml")
    }

    /// `$XDG_DATA_HOME/heph/heph.db`.
    pub fn default_db(&self) -> PathBuf {
        self.home_dir("XDG_DATA_HOME", ".local/share")
            .join("heph/heph.db")
    }

    /// `$XDG_RUNTIME_DIR/heph/hephd.sock`, or beside the db without a runtime dir.
    pub fn default_socket(&self, db: &Path) -> PathBuf {
        match self.env("XDG_RUNTIME_DIR") {
            Some(dir) if Path::new(&dir).is_absolute() => {
                PathBuf::from(dir).join("heph/hephd.sock")
            }
            _ => db.parent().unwrap_or(Path::new(".")).join("hephd.sock"),
        }
    }

    /// `$XDG_STATE_HOME/heph/hephd.log`: where a background daemon writes.
    pub fn default_log_file(&self) -> PathBuf {
        self.home_dir("XDG_STATE_HOME", ".local/state")
            .join("heph/hephd.log")
    }
}

/// The paths every binary agrees on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub db: Setting<PathBuf>,
    pub socket: Setting<PathBuf>,
}

impl Paths {
    /// Resolves the db and socket paths (flags first).
    pub fn resolve(
        layers: &Layers<'_>,
        db_flag: Option<PathBuf>,
        socket_flag: Option<PathBuf>,
    ) -> Result<Self, ConfigError> {
        let db = layers
            .get("db", db_flag.map(|p| ("--db", p.display().to_string())))?
            .map(|s| s.map(PathBuf::from))
            .unwrap_or_else(|| Setting {
                value: layers.default_db(),
                source: Source::Default,
            });
        let socket = layers
            .get(
                "socket",
                socket_flag.map(|p| ("--socket", p.display().to_string())),
            )?
            .map(|s| s.map(PathBuf::from))
            .unwrap_or_else(|| Setting {
                value: layers.default_socket(&db.value),
                source: Source::Default,
            });
        Ok(Self { db, socket })
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

    #[test]
    fn precedence_is_flag_env_file_default() {
        let e = env(&[("HEPH_DB", "/env/heph.db"), ("HOME", "/home/u")]);
        let file = Some((
            Path::new("/cfg/config.toml"),
            "db = \"/file/heph.db\"\nsocket = \"/file/s.sock\"",
        ));
        let layers = Layers::new(&e, file).unwrap();
        let flag = layers
            .get("db", Some(("--db", "/flag/heph.db".into())))
            .unwrap()
            .unwrap();
        assert_eq!(
            (flag.value.as_str(), flag.source),
            ("/flag/heph.db", Source::Flag("--db".into()))
        );
        let env_won = layers.get("db", None).unwrap().unwrap();
        assert_eq!(
            (env_won.value.as_str(), env_won.source),
            ("/env/heph.db", Source::Env("HEPH_DB".into()))
        );
        let file_won = layers.get("socket", None).unwrap().unwrap();
        assert_eq!(file_won.source, Source::File("/cfg/config.toml".into()));
        let default = layers.get_or("log_format", None, "human").unwrap();
        assert_eq!(
            (default.value.as_str(), default.source),
            ("human", Source::Default)
        );
    }

    #[test]
    fn an_empty_environment_value_counts_as_unset() {
        let e = env(&[("HEPH_DB", ""), ("HOME", "/home/u")]);
        let layers = Layers::new(&e, Some((Path::new("/c.toml"), "db = \"/file.db\""))).unwrap();
        assert_eq!(layers.get("db", None).unwrap().unwrap().value, "/file.db");
    }

    #[test]
    fn default_paths_follow_xdg() {
        let e = env(&[("HOME", "/home/u"), ("XDG_RUNTIME_DIR", "/run/user/1000")]);
        let layers = Layers::new(&e, None).unwrap();
        let paths = Paths::resolve(&layers, None, None).unwrap();
        assert_eq!(
            paths.db.value,
            Path::new("/home/u/.local/share/heph/heph.db")
        );
        assert_eq!(
            paths.socket.value,
            Path::new("/run/user/1000/heph/hephd.sock")
        );
        assert_eq!(
            layers.default_config_file(),
            Path::new("/home/u/.config/heph/config.toml")
        );

        // Without a runtime dir the socket sits beside the db.
        let e = env(&[("HOME", "/home/u"), ("XDG_DATA_HOME", "/data")]);
        let layers = Layers::new(&e, None).unwrap();
        let paths = Paths::resolve(&layers, None, None).unwrap();
        assert_eq!(paths.db.value, Path::new("/data/heph/heph.db"));
        assert_eq!(paths.socket.value, Path::new("/data/heph/hephd.sock"));
        // A relative XDG value is ignored, as the spec says.
        let e = env(&[("HOME", "/home/u"), ("XDG_DATA_HOME", "rel")]);
        let layers = Layers::new(&e, None).unwrap();
        assert_eq!(
            layers.default_db(),
            Path::new("/home/u/.local/share/heph/heph.db")
        );
    }

    #[test]
    fn a_broken_config_file_names_itself() {
        let e = env(&[]);
        let err = Layers::new(&e, Some((Path::new("/c.toml"), "db = ")))
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .starts_with("cannot parse the config file /c.toml"),
            "{err}"
        );
        let layers = Layers::new(&e, Some((Path::new("/c.toml"), "db = [1]\ncolour = 1"))).unwrap();
        assert!(layers.get("db", None).is_err());
        assert_eq!(layers.unknown_file_keys(&["db"]), vec!["colour".to_owned()]);
    }
}
