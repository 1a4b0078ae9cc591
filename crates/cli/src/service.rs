//! The service that keeps `hephd` running: a systemd user unit on Linux, a
//! launchd agent on macOS (DESIGN §5).
//!
//! Owns the unit file's text, where it lives, the `systemctl`/`launchctl`
//! commands that drive it, and which daemon settings are baked into it.
//! Everything here is pure (text in, text out) so the exact unit content is
//! snapshot-tested; `commands/daemon.rs` does the writing and the running.

use std::path::{Path, PathBuf};

use heph_core::config::{ConfigError, Layers, Source};

use crate::context::Settings;

/// The systemd unit's name.
pub const SYSTEMD_UNIT: &str = "hephd.service";
/// The launchd agent's label (and plist file stem).
pub const LAUNCHD_LABEL: &str = "org.hephaestus.hephd";

/// How a baked setting is passed to `hephd`.
#[derive(Debug, Clone, Copy)]
enum Flag {
    /// `--flag VALUE`.
    Value(&'static str),
    /// `--flag` when the value is `true`.
    Switch(&'static str),
}

/// Settings (config key, `hephd` flag) that must survive into a service
/// unit when they come from the environment: a unit does not inherit the
/// shell's `HEPH_*` variables. Values from the config file are not baked,
/// because the unit passes `--config` and the daemon reads the file itself,
/// so later edits to it still take effect. `db`, `socket`, `config` and
/// `log_format` are always passed (see [`Settings::daemon_args`]).
///
/// New daemon settings (OIDC issuer/audience/client id, token-store flags,
/// …) are added here, and nowhere else.
const BAKED_FROM_ENV: &[(&str, Flag)] = &[
    ("mode", Flag::Value("--mode")),
    ("log_level", Flag::Value("--log-level")),
    ("max_clock_skew", Flag::Value("--max-clock-skew")),
    ("listen", Flag::Value("--listen")),
    ("tls_cert", Flag::Value("--tls-cert")),
    ("tls_key", Flag::Value("--tls-key")),
    ("public_url", Flag::Value("--public-url")),
    ("insecure_no_auth", Flag::Switch("--insecure-no-auth")),
    ("hub_url", Flag::Value("--hub-url")),
    ("hub_ca", Flag::Value("--hub-ca")),
    ("token_store", Flag::Value("--token-store")),
    ("token_file", Flag::Value("--token-file")),
    ("token_load_cmd", Flag::Value("--token-load-cmd")),
    ("token_save_cmd", Flag::Value("--token-save-cmd")),
];

/// The daemon arguments beyond `--db`, `--socket`, `--config` and
/// `--log-format` that the settings in effect require.
pub fn extra_daemon_args(layers: &Layers<'_>) -> Result<Vec<String>, ConfigError> {
    let mut args = Vec::new();
    for (key, flag) in BAKED_FROM_ENV {
        let Some(setting) = layers.get(key, None)? else {
            continue;
        };
        if !matches!(setting.source, Source::Env(_)) {
            continue;
        }
        match flag {
            Flag::Value(flag) => {
                args.push((*flag).to_owned());
                args.push(setting.value);
            }
            Flag::Switch(flag) => {
                if matches!(setting.value.trim(), "true" | "1" | "yes") {
                    args.push((*flag).to_owned());
                }
            }
        }
    }
    Ok(args)
}

/// What a service runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The absolute path of `hephd`.
    pub hephd: PathBuf,
    /// Its arguments (all settings baked in).
    pub args: Vec<String>,
    /// Where its stdout and stderr are appended.
    pub log_file: PathBuf,
}

/// The service manager of this platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Systemd,
    Launchd,
}

impl Manager {
    /// launchd on macOS, systemd everywhere else.
    pub fn for_this_os() -> Self {
        if cfg!(target_os = "macos") {
            Self::Launchd
        } else {
            Self::Systemd
        }
    }

    /// How messages name the service.
    pub fn describe(self, path: &Path) -> String {
        match self {
            Self::Systemd => format!("systemd user unit {}", path.display()),
            Self::Launchd => format!("launchd agent {}", path.display()),
        }
    }

    /// The program that drives it.
    pub fn tool(self) -> &'static str {
        match self {
            Self::Systemd => "systemctl",
            Self::Launchd => "launchctl",
        }
    }

    /// Where the unit file lives.
    pub fn unit_path(self, settings: &Settings) -> PathBuf {
        match self {
            Self::Systemd => settings.config_home.join("systemd/user").join(SYSTEMD_UNIT),
            Self::Launchd => settings
                .home
                .join("Library/LaunchAgents")
                .join(format!("{LAUNCHD_LABEL}.plist")),
        }
    }

    /// The unit file's text.
    pub fn unit_text(self, spec: &ServiceSpec) -> String {
        match self {
            Self::Systemd => systemd_unit(spec),
            Self::Launchd => launchd_plist(spec),
        }
    }

    /// Reads back the log file a unit appends to.
    pub fn log_file_in(self, text: &str) -> Option<PathBuf> {
        match self {
            Self::Systemd => text.lines().find_map(|l| {
                l.strip_prefix("StandardOutput=append:")
                    .map(|p| PathBuf::from(p.replace("%%", "%")))
            }),
            Self::Launchd => {
                let after = text.split_once("<key>StandardOutPath</key>")?.1;
                let value = after.split_once("<string>")?.1.split_once("</string>")?.0;
                Some(PathBuf::from(xml_unescape(value)))
            }
        }
    }

    /// The commands that load a freshly written unit and start it now and at
    /// every login (`replaced`: a unit was there before, and may be running).
    pub fn enable_commands(self, unit: &Path, uid: u32, replaced: bool) -> Vec<Vec<String>> {
        match (self, replaced) {
            (Self::Systemd, false) => vec![
                systemctl(&["daemon-reload"]),
                systemctl(&["enable", "--now", SYSTEMD_UNIT]),
            ],
            (Self::Systemd, true) => vec![
                systemctl(&["daemon-reload"]),
                systemctl(&["enable", SYSTEMD_UNIT]),
                systemctl(&["restart", SYSTEMD_UNIT]),
            ],
            (Self::Launchd, replaced) => {
                let mut cmds = Vec::new();
                if replaced {
                    cmds.push(launchctl(&[
                        "bootout",
                        &format!("gui/{uid}/{LAUNCHD_LABEL}"),
                    ]));
                }
                cmds.push(launchctl(&[
                    "bootstrap",
                    &format!("gui/{uid}"),
                    &unit.display().to_string(),
                ]));
                cmds
            }
        }
    }

    /// The command that starts the service.
    pub fn start_command(self, uid: u32) -> Vec<String> {
        match self {
            Self::Systemd => systemctl(&["start", SYSTEMD_UNIT]),
            Self::Launchd => launchctl(&["kickstart", &format!("gui/{uid}/{LAUNCHD_LABEL}")]),
        }
    }

    /// The command that stops the service (without disabling it).
    pub fn stop_command(self, uid: u32) -> Vec<String> {
        match self {
            Self::Systemd => systemctl(&["stop", SYSTEMD_UNIT]),
            Self::Launchd => launchctl(&["kill", "SIGTERM", &format!("gui/{uid}/{LAUNCHD_LABEL}")]),
        }
    }

    /// The commands that stop and disable the service before its file goes.
    pub fn disable_commands(self, uid: u32) -> Vec<Vec<String>> {
        match self {
            Self::Systemd => vec![systemctl(&["disable", "--now", SYSTEMD_UNIT])],
            Self::Launchd => vec![launchctl(&[
                "bootout",
                &format!("gui/{uid}/{LAUNCHD_LABEL}"),
            ])],
        }
    }

    /// The commands that make the manager forget a removed unit that may still run.
    pub fn forget_commands(self, uid: u32) -> Vec<Vec<String>> {
        match self {
            Self::Systemd => vec![
                systemctl(&["stop", SYSTEMD_UNIT]),
                systemctl(&["daemon-reload"]),
            ],
            Self::Launchd => self.disable_commands(uid),
        }
    }

    /// The `WantedBy` symlink `systemctl enable` made, if this manager has one.
    pub fn enable_link(self, settings: &Settings) -> Option<PathBuf> {
        match self {
            Self::Systemd => Some(
                settings
                    .config_home
                    .join("systemd/user/default.target.wants")
                    .join(SYSTEMD_UNIT),
            ),
            Self::Launchd => None,
        }
    }
}

fn systemctl(args: &[&str]) -> Vec<String> {
    ["systemctl", "--user"]
        .iter()
        .chain(args)
        .map(|s| (*s).to_owned())
        .collect()
}

fn launchctl(args: &[&str]) -> Vec<String> {
    std::iter::once("launchctl")
        .chain(args.iter().copied())
        .map(str::to_owned)
        .collect()
}

/// Quotes one word of a systemd command line (`ExecStart=`): `%` and `$`
/// are doubled so specifiers and variables are not expanded, and a word
/// with spaces, quotes or backslashes is double-quoted with C escapes.
pub fn systemd_quote(word: &str) -> String {
    let word = word.replace('%', "%%").replace('$', "$$");
    let needs_quotes = word.is_empty()
        || word == ";"
        || word
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'));
    if !needs_quotes {
        return word;
    }
    let mut out = String::from("\"");
    for c in word.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Quotes one word for a POSIX shell, only when needed.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Commands as one line a person can paste: `a b && c d`.
pub fn shell_line(commands: &[Vec<String>]) -> String {
    commands
        .iter()
        .map(|c| {
            c.iter()
                .map(|w| shell_quote(w))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join(" && ")
}

/// The systemd user unit.
pub fn systemd_unit(spec: &ServiceSpec) -> String {
    let exec: Vec<String> = std::iter::once(spec.hephd.display().to_string())
        .chain(spec.args.iter().cloned())
        .map(|w| systemd_quote(&w))
        .collect();
    let log = spec.log_file.display().to_string().replace('%', "%%");
    format!(
        "\
# Written by `heph daemon install`; `heph daemon uninstall` removes it.
# The settings in effect at install time are baked into ExecStart: after
# changing them, run `heph daemon install` again.
[Unit]
Description=Hephaestus daemon (hephd): local task and notes replica

[Service]
Type=simple
ExecStart={exec}
Restart=on-failure
RestartSec=2s
StandardOutput=append:{log}
StandardError=append:{log}

[Install]
WantedBy=default.target
",
        exec = exec.join(" "),
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The launchd agent.
pub fn launchd_plist(spec: &ServiceSpec) -> String {
    let args: String = std::iter::once(spec.hephd.display().to_string())
        .chain(spec.args.iter().cloned())
        .map(|a| format!("    <string>{}</string>\n", xml_escape(&a)))
        .collect();
    let log = xml_escape(&spec.log_file.display().to_string());
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Written by `heph daemon install`; `heph daemon uninstall` removes it.
     The settings in effect at install time are baked into ProgramArguments:
     after changing them, run `heph daemon install` again. -->
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>{LAUNCHD_LABEL}</string>
  <key>ProgramArguments</key>
  <array>
{args}  </array>
  <key>RunAtLoad</key>
  <true/>
  <key>KeepAlive</key>
  <dict>
    <key>SuccessfulExit</key>
    <false/>
  </dict>
  <key>StandardOutPath</key>
  <string>{log}</string>
  <key>StandardErrorPath</key>
  <string>{log}</string>
</dict>
</plist>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            hephd: "/home/u/.cargo/bin/hephd".into(),
            args: [
                "--db",
                "/home/u/.local/share/heph/heph.db",
                "--socket",
                "/run/user/1000/heph/hephd.sock",
                "--log-format",
                "human",
            ]
            .map(String::from)
            .to_vec(),
            log_file: "/home/u/.local/state/heph/hephd.log".into(),
        }
    }

    fn awkward() -> ServiceSpec {
        ServiceSpec {
            hephd: "/Applications/My Tools/hephd".into(),
            args: [
                "--db",
                "/home/u/My Data/heph \"main\".db",
                "--socket",
                "/tmp/100%/$HOME/s.sock",
                "--config",
                r"C:\odd\config.toml",
                "--log-format",
                "json",
            ]
            .map(String::from)
            .to_vec(),
            log_file: "/home/u/logs 50%/hephd <x>.log".into(),
        }
    }

    #[test]
    fn systemd_unit_text() {
        insta::assert_snapshot!(systemd_unit(&spec()), @"
        # Written by `heph daemon install`; `heph daemon uninstall` removes it.
        # The settings in effect at install time are baked into ExecStart: after
        # changing them, run `heph daemon install` again.
        [Unit]
        Description=Hephaestus daemon (hephd): local task and notes replica

        [Service]
        Type=simple
        ExecStart=/home/u/.cargo/bin/hephd --db /home/u/.local/share/heph/heph.db --socket /run/user/1000/heph/hephd.sock --log-format human
        Restart=on-failure
        RestartSec=2s
        StandardOutput=append:/home/u/.local/state/heph/hephd.log
        StandardError=append:/home/u/.local/state/heph/hephd.log

        [Install]
        WantedBy=default.target
        ");
    }

    #[test]
    fn systemd_unit_quotes_awkward_paths() {
        insta::assert_snapshot!(systemd_unit(&awkward()), @r#"
        # Written by `heph daemon install`; `heph daemon uninstall` removes it.
        # The settings in effect at install time are baked into ExecStart: after
        # changing them, run `heph daemon install` again.
        [Unit]
        Description=Hephaestus daemon (hephd): local task and notes replica

        [Service]
        Type=simple
        ExecStart="/Applications/My Tools/hephd" --db "/home/u/My Data/heph \"main\".db" --socket /tmp/100%%/$$HOME/s.sock --config "C:\\odd\\config.toml" --log-format json
        Restart=on-failure
        RestartSec=2s
        StandardOutput=append:/home/u/logs 50%%/hephd <x>.log
        StandardError=append:/home/u/logs 50%%/hephd <x>.log

        [Install]
        WantedBy=default.target
        "#);
        let text = systemd_unit(&awkward());
        assert_eq!(
            Manager::Systemd.log_file_in(&text),
            Some(PathBuf::from("/home/u/logs 50%/hephd <x>.log"))
        );
    }

    #[test]
    fn launchd_plist_text() {
        insta::assert_snapshot!(launchd_plist(&awkward()), @r#"
        <?xml version="1.0" encoding="UTF-8"?>
        <!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
        <!-- Written by `heph daemon install`; `heph daemon uninstall` removes it.
             The settings in effect at install time are baked into ProgramArguments:
             after changing them, run `heph daemon install` again. -->
        <plist version="1.0">
        <dict>
          <key>Label</key>
          <string>org.hephaestus.hephd</string>
          <key>ProgramArguments</key>
          <array>
            <string>/Applications/My Tools/hephd</string>
            <string>--db</string>
            <string>/home/u/My Data/heph &quot;main&quot;.db</string>
            <string>--socket</string>
            <string>/tmp/100%/$HOME/s.sock</string>
            <string>--config</string>
            <string>C:\odd\config.toml</string>
            <string>--log-format</string>
            <string>json</string>
          </array>
          <key>RunAtLoad</key>
          <true/>
          <key>KeepAlive</key>
          <dict>
            <key>SuccessfulExit</key>
            <false/>
          </dict>
          <key>StandardOutPath</key>
          <string>/home/u/logs 50%/hephd &lt;x&gt;.log</string>
          <key>StandardErrorPath</key>
          <string>/home/u/logs 50%/hephd &lt;x&gt;.log</string>
        </dict>
        </plist>
        "#);
        assert_eq!(
            Manager::Launchd.log_file_in(&launchd_plist(&awkward())),
            Some(PathBuf::from("/home/u/logs 50%/hephd <x>.log"))
        );
    }

    #[test]
    fn settings_from_the_environment_are_baked_and_file_ones_are_not() {
        let env = |k: &str| {
            [
                ("HEPH_HUB_URL", "https://hub.example"),
                ("HEPH_INSECURE_NO_AUTH", "true"),
                ("HEPH_LOG_LEVEL", ""),
                ("HEPH_MODE", "local"),
                ("HEPH_TOKEN_STORE", "file"),
                ("HEPH_TOKEN_FILE", "/home/u/.config/heph/tokens.json"),
            ]
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
        };
        let file = "max_clock_skew = 60\nlog_level = \"debug\"";
        let layers = Layers::new(&env, Some((Path::new("/c.toml"), file))).unwrap();
        assert_eq!(
            extra_daemon_args(&layers).unwrap(),
            [
                "--mode",
                "local",
                "--insecure-no-auth",
                "--hub-url",
                "https://hub.example",
                "--token-store",
                "file",
                "--token-file",
                "/home/u/.config/heph/tokens.json"
            ]
        );
    }

    #[test]
    fn quoting() {
        let check =
            |word: &str, expected: &str| assert_eq!(systemd_quote(word), expected, "{word:?}");
        check("/usr/bin/hephd", "/usr/bin/hephd");
        check("a b", "\"a b\"");
        check("", "\"\"");
        check(";", "\";\"");
        check("50%", "50%%");
        check("$HOME", "$$HOME");
        check(r#"say "hi"\now"#, r#""say \"hi\"\\now""#);
        check("it's", "\"it's\"");
        assert_eq!(shell_quote("hephd.service"), "hephd.service");
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
        assert_eq!(
            shell_line(&Manager::Systemd.enable_commands(Path::new("/x"), 1000, false)),
            "systemctl --user daemon-reload && systemctl --user enable --now hephd.service"
        );
        assert_eq!(
            shell_line(&Manager::Launchd.enable_commands(Path::new("/a b/x.plist"), 501, false)),
            "launchctl bootstrap gui/501 '/a b/x.plist'"
        );
    }
}
