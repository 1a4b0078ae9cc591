//! The hub's bearer verification end to end: a real `hephd --mode server`
//! with `--oidc-issuer`/`--oidc-audience` against the real OpenID provider
//! (`tests/oidc`), tokens obtained through the device flow, and plain HTTP
//! push/pull with `Authorization: Bearer`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::harness::{Daemon, TestEnv, wait_until};
use crate::oidc_support::{OidcOptions, OidcProvider, Response, http};

pub(crate) const AUD: &str = "https://hub.e2e.invalid";

/// Starts an OIDC hub for `idp` on a free port; returns it and its base URL.
pub(crate) fn start_hub(env: &TestEnv, issuer: &str, extra: &[&str]) -> (Daemon, String) {
    let mut args = vec![
        "--mode",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--oidc-issuer",
        issuer,
        "--oidc-audience",
        AUD,
    ];
    args.extend_from_slice(extra);
    let (d, port) = env.start_server(&args);
    (d, format!("http://127.0.0.1:{port}"))
}

fn pull(hub: &str, token: &str) -> Response {
    http(
        "GET",
        &format!("{hub}/sync/pull?after=0"),
        &[("authorization", &format!("Bearer {token}"))],
        None,
    )
}

fn push(hub: &str, token: &str, title: &str) -> Response {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let node = format!(
        "{:08x}-0000-4000-8000-{:012x}",
        ms as u32,
        ms as u64 & 0xffff_ffff_ffff
    );
    let body = json!({"ops": [
        {"hlc": format!("{ms:016}-0000-{:032x}", 0xabcdu128), "node": node, "field": "kind", "value": "task"},
        {"hlc": format!("{ms:016}-0001-{:032x}", 0xabcdu128), "node": node, "field": "title", "value": title},
    ]});
    http(
        "POST",
        &format!("{hub}/sync/push"),
        &[
            ("authorization", &format!("Bearer {token}")),
            ("content-type", "application/json"),
        ],
        Some(&serde_json::to_vec(&body).unwrap()),
    )
}

fn message(r: &Response) -> String {
    r.json()["message"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_member_with_a_device_flow_token_pushes_and_pulls() {
    let idp = OidcProvider::start(AUD, OidcOptions::default());
    let env = TestEnv::new();
    let (_hub, url) = start_hub(&env, idp.issuer(), &["--owner-sub", "alice"]);

    let meta = http(
        "GET",
        &format!("{url}/.well-known/oauth-protected-resource"),
        &[],
        None,
    )
    .json();
    assert_eq!(meta["authorization_servers"], json!([idp.issuer()]));
    assert_eq!(meta["heph_client_id"], "heph");
    assert_eq!(
        meta["scopes_supported"],
        json!(["openid", "offline_access"])
    );

    let tokens = idp.login("alice");
    let r = push(&url, &tokens.access_token, "Buy milk");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["accepted"], 2);
    let r = pull(&url, &tokens.access_token);
    assert_eq!(r.status, 200, "{}", r.text());
    let ops = r.json()["ops"].as_array().unwrap().clone();
    assert!(ops.iter().any(|o| o["value"] == "Buy milk"), "{ops:?}");

    // A refreshed access token works as well.
    let (status, body) = idp.refresh(tokens.refresh_token.as_deref().unwrap());
    assert_eq!(status, 200);
    assert_eq!(
        pull(&url, body["access_token"].as_str().unwrap()).status,
        200
    );

    // No token: 401 with the challenge pointing at the metadata.
    let r = http("GET", &format!("{url}/sync/pull"), &[], None);
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{url}/.well-known/oauth-protected-resource\""
        )),
        "{challenge}"
    );
}

#[test]
fn a_non_member_gets_403_naming_the_sub_and_the_grant_command() {
    let idp = OidcProvider::start(AUD, OidcOptions::default());
    let env = TestEnv::new();
    let (_hub, url) = start_hub(&env, idp.issuer(), &["--owner-sub", "alice"]);
    let r = pull(&url, &idp.login("mallory").access_token);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"], "not_member");
    assert!(
        message(&r).contains("mallory is not a member"),
        "{}",
        message(&r)
    );
    assert!(
        message(&r).contains("heph hub grant mallory --role writer"),
        "{}",
        message(&r)
    );
}

#[test]
fn a_hub_without_members_says_how_to_add_the_first_one() {
    let idp = OidcProvider::start(AUD, OidcOptions::default());
    let env = TestEnv::new();
    let (_hub, url) = start_hub(&env, idp.issuer(), &[]);
    let r = pull(&url, &idp.login("alice").access_token);
    assert_eq!(r.status, 403);
    assert!(
        message(&r).contains("hephd --owner-sub alice"),
        "{}",
        message(&r)
    );
}

#[test]
fn a_reader_granted_on_the_hub_socket_can_pull_but_not_push() {
    let idp = OidcProvider::start(AUD, OidcOptions::default());
    let env = TestEnv::new();
    let (_hub, url) = start_hub(&env, idp.issuer(), &["--owner-sub", "alice"]);
    // The operator on the hub machine, over the local socket.
    let out = env
        .command("heph")
        .args(["hub", "grant", "rita", "--role", "reader"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "rita is now a reader\nowner   alice\nreader  rita\n"
    );
    let listed = env.client().ok("hub.members", json!({}));
    assert_eq!(listed["members"].as_array().unwrap().len(), 2);
    let rita = idp.login("rita").access_token;
    assert_eq!(pull(&url, &rita).status, 200);
    let r = push(&url, &rita, "not allowed");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        message(&r).contains("heph hub grant rita --role writer"),
        "{}",
        message(&r)
    );
    // Over /rpc: a reader may read, not write, and only an owner manages members.
    let rpc = |token: &str, method: &str, params: Value| {
        http(
            "POST",
            &format!("{url}/rpc"),
            &[
                ("authorization", &format!("Bearer {token}")),
                ("content-type", "application/json"),
            ],
            Some(
                &serde_json::to_vec(
                    &json!({"jsonrpc":"2.0","id":1,"method":method,"params":params}),
                )
                .unwrap(),
            ),
        )
    };
    assert_eq!(rpc(&rita, "node.list", json!({})).status, 200);
    assert_eq!(rpc(&rita, "node.create", json!({"title": "x"})).status, 403);
    assert_eq!(rpc(&rita, "hub.members", json!({})).status, 403);
    let alice = idp.login("alice").access_token;
    let r = rpc(&alice, "hub.members", json!({}));
    assert_eq!(r.status, 200);
    let members = r.json()["result"]["members"].clone();
    assert_eq!(
        members,
        json!([{"sub":"alice","role":"owner"},{"sub":"rita","role":"reader"}])
    );
    let r = rpc(&alice, "hub.revoke", json!({"sub": "rita"}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        pull(&url, &rita).status,
        403,
        "a revoked member is refused at once"
    );
}

#[test]
fn provider_stopped_gives_503_for_an_unknown_kid_while_cached_keys_keep_working() {
    let mut idp = OidcProvider::start(AUD, OidcOptions::default());
    let env = TestEnv::new();
    let (hub, url) = start_hub(&env, idp.issuer(), &["--owner-sub", "alice"]);
    let old = idp.login("alice").access_token;
    assert_eq!(pull(&url, &old).status, 200, "warms the hub's key cache");

    idp.rotate_keys();
    let new = idp.login("alice").access_token;
    idp.stop();

    let r = pull(&url, &new);
    assert_eq!(r.status, 503, "{}", r.text());
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    assert_eq!(r.json()["error"], "auth_unavailable");
    assert_eq!(
        message(&r),
        "the hub cannot reach its identity provider to check the token; try again shortly",
        "the cause is logged, not shown to an unauthenticated caller"
    );
    assert!(!r.text().contains("127.0.0.1"), "{}", r.text());
    assert_eq!(pull(&url, &old).status, 200, "cached keys keep working");

    // The provider comes back: the new key is fetched once the unknown-kid
    // cooldown (30 s, counted from the failed refetch) allows.
    idp.restart();
    wait_until(
        "the hub to accept the new key",
        Duration::from_secs(45),
        || pull(&url, &new).status == 200,
    );
    assert!(
        hub.log_text()
            .contains("cannot refresh the identity provider's keys")
    );
}

#[test]
fn provider_key_rotation_is_accepted_without_a_hub_restart() {
    let mut idp = OidcProvider::start(AUD, OidcOptions::default());
    let env = TestEnv::new();
    let (_hub, url) = start_hub(&env, idp.issuer(), &["--owner-sub", "alice"]);
    let old = idp.login("alice").access_token;
    assert_eq!(pull(&url, &old).status, 200);
    idp.rotate_keys();
    let new = idp.login("alice").access_token;
    assert_ne!(
        crate::oidc_support::jwt_parts(&new).0["kid"],
        crate::oidc_support::jwt_parts(&old).0["kid"]
    );
    assert_eq!(
        pull(&url, &new).status,
        200,
        "the new key was fetched on demand"
    );
    assert_eq!(
        pull(&url, &old).status,
        200,
        "the old key is still published"
    );
}

#[test]
fn the_hub_starts_while_the_provider_is_down() {
    let mut idp = OidcProvider::start(AUD, OidcOptions::default());
    let token = idp.login("alice").access_token;
    idp.stop();
    let env = TestEnv::new();
    let (_hub, url) = start_hub(&env, idp.issuer(), &["--owner-sub", "alice"]);
    assert_eq!(
        http("GET", &format!("{url}/healthz"), &[], None).status,
        200
    );
    assert_eq!(pull(&url, &token).status, 503);
    idp.restart();
    wait_until(
        "the hub to verify once the provider is up",
        Duration::from_secs(30),
        || pull(&url, &token).status == 200,
    );
}

#[test]
fn a_rejected_tokens_text_never_appears_in_the_hub_log() {
    let idp = OidcProvider::start(AUD, OidcOptions::default());
    let env = TestEnv::new();
    let (hub, url) = start_hub(
        &env,
        idp.issuer(),
        &["--owner-sub", "alice", "--log-level", "debug"],
    );
    let member = idp.login("alice").access_token;
    let outsider = idp.login("mallory").access_token;
    let tampered = format!("{}AAAA", &member[..member.len() - 4]);
    let garbage = "opaque-secret-token-value-1234567890";
    assert_eq!(pull(&url, &outsider).status, 403);
    assert_eq!(pull(&url, &tampered).status, 401);
    assert_eq!(pull(&url, garbage).status, 401);
    let in_query = http(
        "GET",
        &format!("{url}/sync/pull?access_token={member}"),
        &[],
        None,
    );
    assert_eq!(in_query.status, 401);
    wait_until(
        "the hub to log the refusals",
        Duration::from_secs(10),
        || hub.log_text().matches("refused a bearer token").count() >= 3,
    );
    let log = hub.log_text();
    for secret in [&member, &outsider, &tampered, &garbage.to_owned()] {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(
            !log.contains(signature),
            "a token appears in the hub's log:\n{log}"
        );
    }
    assert!(log.contains("not a member"), "{log}");
}

#[test]
fn a_hub_refuses_half_an_oidc_configuration() {
    let env = TestEnv::new();
    for (args, expected) in [
        (
            vec!["--mode", "server", "--oidc-issuer", "https://idp.example"],
            "--oidc-issuer and --oidc-audience go together",
        ),
        (
            vec![
                "--mode",
                "server",
                "--oidc-issuer",
                "http://idp.example",
                "--oidc-audience",
                "a",
            ],
            "use its https:// URL",
        ),
        (
            vec![
                "--mode",
                "server",
                "--insecure-no-auth",
                "--oidc-issuer",
                "https://idp.example",
                "--oidc-audience",
                "a",
            ],
            "exclude each other",
        ),
        (vec!["--owner-sub", "alice"], "use them with --mode server"),
    ] {
        let out = env
            .command("hephd")
            .arg("--db")
            .arg(&env.db)
            .arg("--socket")
            .arg(&env.socket)
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn heph_hub_on_a_machine_that_is_not_the_hub_says_where_to_run_it() {
    let env = TestEnv::new();
    let _daemon = env.start_daemon();
    let out = env
        .command("heph")
        .args(["hub", "members"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("this daemon is not a hub; run it on the hub machine"),
        "{stderr}"
    );
    let out = env
        .command("heph")
        .args(["hub", "grant", "bob", "--role", "admin"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a bad role is a usage error");
}

/// A `(status, WWW-Authenticate, message)` of a pull with `token`.
fn refusal(hub: &str, token: &str) -> (u16, String, String) {
    let r = pull(hub, token);
    let challenge = r.header("www-authenticate").unwrap_or_default().to_owned();
    (r.status, challenge, message(&r))
}

#[test]
fn a_real_id_token_is_refused_as_an_access_token() {
    // Before: the npm provider's ID token (header {alg, kid}, claims aud exp
    // iat iss sub) got 200 from a hub whose audience is the client id, as
    // docs/operations.md told authentik, Kanidm and Dex users to set it.
    for audience in ["heph", AUD] {
        let idp = OidcProvider::start(audience, OidcOptions::default());
        let env = TestEnv::new();
        let (hub, url) = env.start_server(&[
            "--mode",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--oidc-issuer",
            idp.issuer(),
            "--oidc-audience",
            audience,
            "--owner-sub",
            "alice",
        ]);
        let url = format!("http://127.0.0.1:{url}");
        let tokens = idp.login("alice");
        let id_token = tokens.raw["id_token"]
            .as_str()
            .expect("an ID token")
            .to_owned();
        let (header, claims) = crate::oidc_support::jwt_parts(&id_token);
        assert!(header.get("typ").is_none(), "{header}");
        assert_eq!(claims["aud"], "heph", "{claims}");
        let (status, challenge, msg) = refusal(&url, &id_token);
        assert_eq!(status, 401, "audience {audience}: {msg}");
        assert!(
            msg.starts_with("an ID token is not an access token (its only audience is the client id heph and it carries no scope)"),
            "{msg}"
        );
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert!(
            challenge.contains("an ID token is not an access token"),
            "{challenge}"
        );
        // The access token of the same response still passes.
        assert_eq!(
            pull(&url, &tokens.access_token).status,
            200,
            "audience {audience}"
        );
        // Two Authorization headers: 400, not whichever comes first.
        let bearer = format!("Bearer {}", tokens.access_token);
        let r = http(
            "GET",
            &format!("{url}/sync/pull?after=0"),
            &[("authorization", &bearer), ("authorization", "Bearer x")],
            None,
        );
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error"], "invalid_request");
        drop(hub);
    }
}

#[test]
fn a_discovery_document_naming_another_issuer_is_refused_and_logged() {
    // --oidc-issuer says localhost, the provider calls itself 127.0.0.1.
    let idp = OidcProvider::start(AUD, OidcOptions::default());
    let token = idp.login("alice").access_token;
    let configured = idp.issuer().replace("127.0.0.1", "localhost");
    let env = TestEnv::new();
    let (hub, url) = start_hub(&env, &configured, &["--owner-sub", "alice"]);
    let r = pull(&url, &token);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.json()["error"], "auth_unavailable");
    assert!(!r.text().contains("localhost"), "{}", r.text());
    wait_until("the hub to log why", Duration::from_secs(10), || {
        hub.log_text().contains("names the issuer")
    });
    let log = hub.log_text();
    assert!(
        log.contains(&format!("not the configured {configured}")),
        "{log}"
    );
}

#[test]
fn six_requests_while_the_provider_hangs_make_one_connection_to_it() {
    use std::io::Read as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A provider that accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counted.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            held.push(stream);
        }
    });
    let env = TestEnv::new();
    let (_hub, url) = start_hub(&env, &issuer, &["--owner-sub", "alice"]);
    // Unsigned garbage with made-up kids is enough to ask for keys.
    let b64 = |v: Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
    };
    let tokens: Vec<String> = (0..6)
        .map(|i| {
            format!(
                "{}.{}.c2ln",
                b64(json!({"alg": "RS256", "typ": "at+jwt", "kid": format!("made-up-{i}")})),
                b64(json!({"sub": "alice"}))
            )
        })
        .collect();
    let answers: Vec<(u16, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = tokens
            .iter()
            .map(|t| {
                let url = url.clone();
                s.spawn(move || {
                    let r = pull(&url, t);
                    (r.status, r.header("retry-after").is_some())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(answers.iter().all(|a| *a == (503, true)), "{answers:?}");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "one discovery request for six requests (before: six, one after another)"
    );
}
