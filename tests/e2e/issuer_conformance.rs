//! The built-in issuer (`hephd --builtin-issuer`) judged by an independent
//! client: `tests/oidc/openid_client_check.mjs` runs panva's `openid-client`
//! and `jose` against a real hub — discovery, the device flow approved on
//! the hub's HTML verification page, ID and access token verification,
//! refresh rotation, revocation, and a bearer call to `/rpc` — so the
//! issuer is held to what a stock OpenID client library accepts, not to
//! what Hephaestus's own client expects.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Daemon, TestEnv};
use crate::oidc_support::oidc_dir;

const USER: &str = "olga";
/// Distinctive, so a leak into a log cannot be a coincidence.
const PASSWORD: &str = "conformance-Pa55word-7f3k";
/// The check script's own limit is 60 s; this one only catches a hang.
const CHECK_LIMIT: Duration = Duration::from_secs(90);

/// Starts a hub that is its own issuer on a free port; returns it and its URL.
fn start_issuer_hub(env: &TestEnv) -> (Daemon, String) {
    let (d, port) = env.start_server(&[
        "--mode",
        "server",
        "--builtin-issuer",
        "--issuer-poll-interval",
        "1",
        "--listen",
        "127.0.0.1:0",
    ]);
    (d, format!("http://127.0.0.1:{port}"))
}

/// `hephd user add NAME --db DB` with the password on stdin; returns stdout.
fn add_user(env: &TestEnv, name: &str, password: &str) -> String {
    let mut child = env
        .command("hephd")
        .args(["user", "add", name, "--db"])
        .arg(&env.db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = wait_bounded(child, Duration::from_secs(30), "hephd user add");
    assert!(
        out.status.success(),
        "hephd user add failed: {}{}",
        out.stdout,
        out.stderr
    );
    out.stdout
}

struct Finished {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

/// Waits for `child` (stdout and stderr piped) for at most `limit`,
/// killing it and panicking when it takes longer.
fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> Finished {
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let mut status = None;
    let start = std::time::Instant::now();
    while status.is_none() {
        status = child.try_wait().unwrap();
        if status.is_none() && start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {limit:?}; stderr:\n{}",
                stderr.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Finished {
        status: status.unwrap(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Runs the openid-client check against `issuer`; the secrets it saw
/// (tokens, codes, cookies) go to `secrets_file`, one a line, for the
/// leak check — never to its output.
fn run_check(issuer: &str, secrets_file: &Path) -> Finished {
    let child = Command::new("node")
        .arg(oidc_dir().join("openid_client_check.mjs"))
        .args(["--issuer", issuer, "--username", USER])
        .env("HEPH_CHECK_PASSWORD", PASSWORD)
        .env("HEPH_CHECK_SECRETS_FILE", secrets_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is not on PATH; the OpenID client tests need Node.js 20+");
    wait_bounded(child, CHECK_LIMIT, "openid_client_check.mjs")
}

#[test]
fn openid_client_discovers_signs_in_verifies_refreshes_and_revokes() {
    assert!(
        oidc_dir().join("node_modules/openid-client").is_dir()
            && oidc_dir().join("node_modules/jose").is_dir(),
        "openid-client is not installed; run `npm ci --prefix tests/oidc`"
    );
    let env = TestEnv::new();
    let (hub, issuer) = start_issuer_hub(&env);
    let added = add_user(&env, USER, PASSWORD);
    let sub = added
        .split("(subject ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no subject in the output of hephd user add: {added}"));
    assert!(
        added.contains("an owner of this hub"),
        "the first account should own the hub: {added}"
    );

    let secrets_file = env.path().join("check-secrets.txt");
    let out = run_check(&issuer, &secrets_file);
    assert!(
        out.status.success(),
        "openid-client rejected the built-in issuer: {}\nstdout: {}\nhub log:\n{}",
        out.stderr,
        out.stdout,
        hub.log_text()
    );
    let line = out.stdout.lines().last().unwrap_or_default();
    let summary: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("the check's summary is not JSON ({e}): {}", out.stdout));
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(summary["issuer"], issuer.as_str(), "{summary}");
    for step in [
        "discovery",
        "device_authorization",
        "approved_in_browser",
        "device_grant",
        "refresh_rotated",
        "revoked",
    ] {
        assert_eq!(summary[step], true, "{step} in {summary}");
    }
    assert_eq!(summary["id_token_sub"], sub, "{summary}");
    assert_eq!(summary["access_token"]["alg"], "ES256", "{summary}");
    assert_eq!(summary["access_token"]["typ"], "at+jwt", "{summary}");
    assert_eq!(
        summary["access_token"]["scope"], "openid offline_access",
        "{summary}"
    );
    assert_eq!(summary["rpc_status"], 200, "{summary}");
    // openid-client waits the advertised interval, so it is never told to
    // slow down; the device and refresh grants succeeded, the revoked
    // token's refresh did not.
    let answers = &summary["token_endpoint_answers"];
    assert!(answers.get("slow_down").is_none(), "{summary}");
    assert_eq!(answers["200"], 2, "{summary}");
    assert_eq!(answers["invalid_grant"], 1, "{summary}");

    // No secret reached any output: the check's, `user add`'s, the hub's log.
    let secrets = std::fs::read_to_string(&secrets_file).unwrap();
    let secrets: Vec<&str> = secrets.lines().filter(|s| !s.is_empty()).collect();
    assert!(
        secrets.len() >= 8,
        "the check recorded too few secrets: {}",
        secrets.len()
    );
    let log = hub.log_text();
    for (name, text) in [
        ("the hub's log", log.as_str()),
        ("the check's stdout", out.stdout.as_str()),
        ("the check's stderr", out.stderr.as_str()),
        ("hephd user add's output", added.as_str()),
    ] {
        assert!(!text.contains(PASSWORD), "the password is in {name}");
        for (i, secret) in secrets.iter().enumerate() {
            assert!(!text.contains(secret), "secret #{i} is in {name}");
        }
        // Any JWT (ID or access token) starts with a base64url JSON header.
        assert!(!text.contains("eyJ"), "a JWT is in {name}");
    }
}
