//! Who may run what over the hub's `/rpc` and the daemon's socket, attacked
//! with every request shape JSON allows: a real hub with the real OpenID
//! provider's tokens for an owner, a writer and a reader.
//!
//! Regression for issue 12's critical hole: a reader sent the array-shaped
//! batch item `["2.0",3,"hub.grant",{"sub":"rita","role":"owner"}]`, no role
//! check saw a method, the request type's derived `Deserialize` accepted the
//! array in field order, and the reader became an owner.

use serde_json::{Value, json};

use crate::harness::{Client, Daemon, TestEnv};
use crate::oidc_hub::{AUD, start_hub};
use crate::oidc_support::{OidcOptions, OidcProvider, Response, http};

struct Hub {
    _idp: OidcProvider,
    env: TestEnv,
    _daemon: Daemon,
    url: String,
    owner: String,
    writer: String,
    reader: String,
}

impl Hub {
    /// A hub owned by alice, with wendy a writer and rita a reader.
    fn start() -> Self {
        let idp = OidcProvider::start(AUD, OidcOptions::default());
        let env = TestEnv::new();
        let (daemon, url) = start_hub(&env, idp.issuer(), &["--owner-sub", "alice"]);
        let mut c = env.client();
        c.ok("hub.grant", json!({"sub": "wendy", "role": "writer"}));
        c.ok("hub.grant", json!({"sub": "rita", "role": "reader"}));
        Hub {
            owner: idp.login("alice").access_token,
            writer: idp.login("wendy").access_token,
            reader: idp.login("rita").access_token,
            _idp: idp,
            env,
            _daemon: daemon,
            url,
        }
    }

    fn rpc(&self, token: &str, body: &[u8]) -> Response {
        http(
            "POST",
            &format!("{}/rpc", self.url),
            &[
                ("authorization", &format!("Bearer {token}")),
                ("content-type", "application/json"),
            ],
            Some(body),
        )
    }

    /// The members as `sub:role` words, read on the hub's socket.
    fn members(&self) -> Vec<String> {
        let listed = self.env.client().ok("hub.members", json!({}));
        listed["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                format!(
                    "{}:{}",
                    m["sub"].as_str().unwrap(),
                    m["role"].as_str().unwrap()
                )
            })
            .collect()
    }

    fn node_count(&self) -> usize {
        let listed = self.env.client().ok("node.list", json!({}));
        listed["nodes"].as_array().unwrap().len()
    }
}

/// What a request must get: an HTTP 403, or a 200/204 whose JSON-RPC
/// replies carry exactly these error codes (0 for a success, in order).
#[derive(Debug)]
enum Want {
    Forbidden,
    Codes(&'static [i64]),
}

const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

fn codes(r: &Response) -> Vec<i64> {
    if r.status == 204 {
        return Vec::new();
    }
    let one = |v: &Value| v["error"]["code"].as_i64().unwrap_or(0);
    match r.json() {
        Value::Array(items) => items.iter().map(one).collect(),
        single => vec![one(&single)],
    }
}

#[test]
fn no_request_shape_lets_a_member_past_its_role() {
    let hub = Hub::start();
    let before = hub.members();
    assert_eq!(before, ["alice:owner", "rita:reader", "wendy:writer"]);
    let grant = r#"{"sub":"rita","role":"owner"}"#;
    let revoke = r#"{"sub":"alice"}"#;
    let create = r#"{"title":"planted"}"#;
    // (request body, what a reader gets, what a writer gets)
    let table: Vec<(String, Want, Want)> = vec![
        // The reported attack, and the same shape for a write.
        (
            format!(r#"[["2.0",3,"hub.grant",{grant}]]"#),
            Want::Codes(&[INVALID_REQUEST]),
            Want::Codes(&[INVALID_REQUEST]),
        ),
        (
            format!(r#"[["2.0",4,"hub.revoke",{revoke}]]"#),
            Want::Codes(&[INVALID_REQUEST]),
            Want::Codes(&[INVALID_REQUEST]),
        ),
        (
            format!(r#"[["2.0",5,"node.create",{create}]]"#),
            Want::Codes(&[INVALID_REQUEST]),
            Want::Codes(&[INVALID_REQUEST]),
        ),
        // A single request as an array: each element is a non-request.
        (
            format!(r#"["2.0",3,"hub.grant",{grant}]"#),
            Want::Codes(&[INVALID_REQUEST; 4]),
            Want::Codes(&[INVALID_REQUEST; 4]),
        ),
        // Nested batches.
        (
            format!(r#"[[{{"jsonrpc":"2.0","id":1,"method":"hub.grant","params":{grant}}}]]"#),
            Want::Codes(&[INVALID_REQUEST]),
            Want::Codes(&[INVALID_REQUEST]),
        ),
        // The object forms: the role check sees them.
        (
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"hub.grant","params":{grant}}}"#),
            Want::Forbidden,
            Want::Forbidden,
        ),
        (
            format!(r#"{{"jsonrpc":"2.0","id":null,"method":"hub.grant","params":{grant}}}"#),
            Want::Forbidden,
            Want::Forbidden,
        ),
        (
            format!(r#"{{"jsonrpc":"2.0","method":"hub.grant","params":{grant}}}"#),
            Want::Forbidden,
            Want::Forbidden,
        ),
        (
            format!(
                r#"[{{"jsonrpc":"2.0","id":1,"method":"node.list"}},{{"jsonrpc":"2.0","id":2,"method":"hub.revoke","params":{revoke}}}]"#
            ),
            Want::Forbidden,
            Want::Forbidden,
        ),
        (
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"node.create","params":{create}}}"#),
            Want::Forbidden,
            Want::Codes(&[0]),
        ),
        // Duplicate members, in both orders.
        (
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"node.list","method":"hub.grant","params":{grant}}}"#
            ),
            Want::Codes(&[INVALID_REQUEST]),
            Want::Codes(&[INVALID_REQUEST]),
        ),
        (
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"hub.grant","method":"node.list","params":{grant}}}"#
            ),
            Want::Codes(&[INVALID_REQUEST]),
            Want::Codes(&[INVALID_REQUEST]),
        ),
        (
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"hub.grant","params":{grant},"params":{{}}}}"#),
            Want::Codes(&[INVALID_REQUEST]),
            Want::Codes(&[INVALID_REQUEST]),
        ),
        // Method names are exact.
        (
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"Hub.Grant","params":{grant}}}"#),
            Want::Codes(&[METHOD_NOT_FOUND]),
            Want::Codes(&[METHOD_NOT_FOUND]),
        ),
        (
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":" hub.grant","params":{grant}}}"#),
            Want::Codes(&[METHOD_NOT_FOUND]),
            Want::Codes(&[METHOD_NOT_FOUND]),
        ),
        (
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"hub.grant\n","params":{grant}}}"#),
            Want::Codes(&[METHOD_NOT_FOUND]),
            Want::Codes(&[METHOD_NOT_FOUND]),
        ),
        (
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"HUB.GRANT","params":{grant}}}"#),
            Want::Codes(&[METHOD_NOT_FOUND]),
            Want::Codes(&[METHOD_NOT_FOUND]),
        ),
        // Positional params are not named params (refused before anything runs).
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"node.create","params":["task","planted"]}"#
                .into(),
            Want::Codes(&[INVALID_PARAMS]),
            Want::Codes(&[INVALID_PARAMS]),
        ),
        // A reader may read.
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"node.list"},{"jsonrpc":"2.0","id":2,"method":"tags.list"}]"#
                .into(),
            Want::Codes(&[0, 0]),
            Want::Codes(&[0, 0]),
        ),
    ];
    for (body, for_reader, for_writer) in &table {
        for (who, token, want) in [
            ("reader", &hub.reader, for_reader),
            ("writer", &hub.writer, for_writer),
        ] {
            let r = hub.rpc(token, body.as_bytes());
            match want {
                Want::Forbidden => {
                    assert_eq!(r.status, 403, "{who} {body}: {}", r.text());
                    assert_eq!(r.json()["error"], "forbidden", "{who} {body}");
                }
                Want::Codes(want) => {
                    assert!(
                        r.status == 200 || r.status == 204,
                        "{who} {body}: {} {}",
                        r.status,
                        r.text()
                    );
                    assert_eq!(codes(&r), *want, "{who} {body}: {}", r.text());
                }
            }
            assert_eq!(
                hub.members(),
                before,
                "{who} changed the members with {body}"
            );
        }
    }
    // Only the writer's one legitimate node.create wrote anything.
    assert_eq!(hub.node_count(), 1);
    // The owner still can.
    let r = hub.rpc(
        &hub.owner,
        br#"[{"jsonrpc":"2.0","id":1,"method":"hub.grant","params":{"sub":"rita","role":"writer"}}]"#,
    );
    assert_eq!(codes(&r), [0], "{}", r.text());
    assert_eq!(
        hub.members(),
        ["alice:owner", "rita:writer", "wendy:writer"]
    );
}

#[test]
fn batches_and_their_replies_are_bounded() {
    let hub = Hub::start();
    // Enough data that 100 listings would be far over 8 MiB (~0.4 MB each).
    let mut c = hub.env.client();
    let body = "x".repeat(2000);
    for i in 0..200 {
        c.ok(
            "node.create",
            json!({"title": format!("task {i}"), "body": body}),
        );
    }
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"node.list"}"#;
    let batch = |n: usize| format!("[{}]", vec![list; n].join(","));

    // Over the item limit: refused whole, nothing runs.
    let r = hub.rpc(&hub.reader, batch(101).as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(codes(&r), [INVALID_REQUEST]);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("more than the limit of 100"),
        "{}",
        r.text()
    );

    // At the limit: the replies stop at 8 MiB, the rest say they did not run.
    let r = hub.rpc(&hub.reader, batch(100).as_bytes());
    assert_eq!(r.status, 200);
    assert!(
        r.body.len() <= 8 * 1024 * 1024 + 100 * 400,
        "{} bytes",
        r.body.len()
    );
    let replies = r.json();
    let replies = replies.as_array().unwrap();
    assert_eq!(replies.len(), 100);
    let ran = replies
        .iter()
        .take_while(|r| r.get("result").is_some())
        .count();
    assert!((1..100).contains(&ran), "{ran} ran");
    assert!(
        replies[ran]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("would take the batch's replies past the limit of 8 MiB"),
        "{}",
        replies[ran]
    );
    for later in &replies[ran + 1..] {
        assert!(
            later["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("not run: the batch's replies reached the limit"),
            "{later}"
        );
    }

    // The same limits hold on the socket.
    let mut raw = Client::connect(&hub.env.socket).unwrap();
    raw.send_raw(format!("{}\n", batch(101)).as_bytes())
        .unwrap();
    let reply = raw.read().unwrap();
    assert_eq!(reply["error"]["code"], INVALID_REQUEST, "{reply}");
    raw.send_raw(format!("{}\n", batch(100)).as_bytes())
        .unwrap();
    let reply = raw.read().unwrap();
    let replies = reply.as_array().unwrap();
    assert_eq!(replies.len(), 100);
    assert!(
        replies.last().unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("not run")
    );
}

#[test]
fn the_socket_refuses_array_shaped_requests_too() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let mut raw = Client::connect(&env.socket).unwrap();
    for line in [
        r#"["2.0",1,"node.create",{"title":"planted"}]"#,
        r#"[["2.0",1,"node.create",{"title":"planted"}]]"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"node.list","method":"node.create","params":{"title":"planted"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"Node.Create","params":{"title":"planted"}}"#,
    ] {
        raw.send_raw(format!("{line}\n").as_bytes()).unwrap();
        let reply = raw.read().unwrap();
        let errors: Vec<i64> = match &reply {
            Value::Array(items) => items
                .iter()
                .map(|i| i["error"]["code"].as_i64().unwrap())
                .collect(),
            one => vec![one["error"]["code"].as_i64().unwrap()],
        };
        assert!(
            errors
                .iter()
                .all(|&c| c == INVALID_REQUEST || c == METHOD_NOT_FOUND),
            "{line}: {reply}"
        );
    }
    let listed = env.client().ok("node.list", json!({}));
    assert_eq!(listed["nodes"].as_array().unwrap().len(), 0);
}

#[test]
fn a_readers_daemon_info_leaves_out_the_hubs_paths_and_pid() {
    let hub = Hub::start();
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"daemon.info"}"#;
    for (token, full) in [
        (&hub.reader, false),
        (&hub.writer, false),
        (&hub.owner, true),
    ] {
        let r = hub.rpc(token, body);
        assert_eq!(r.status, 200, "{}", r.text());
        let info = &r.json()["result"];
        assert!(info["last_seq"].is_u64(), "{info}");
        for private in ["pid", "db", "socket"] {
            assert_eq!(info.get(private).is_some(), full, "{private} in {info}");
        }
        assert!(
            !r.text().contains(hub.env.path().to_str().unwrap()) || full,
            "{}",
            r.text()
        );
    }
}
