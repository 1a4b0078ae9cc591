//! `hephd` over its real unix socket: the methods, bad input, concurrency,
//! events, shutdown, crashes and single-instance rules.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use heph_core::store::OpenOptions;
use heph_core::{SqliteStore, Store};
use serde_json::{Value, json};

use crate::harness::{Client, TestEnv, wait_until};

fn ops(c: &mut Client) -> u64 {
    c.ok("daemon.info", json!({}))["ops"].as_u64().unwrap()
}

#[test]
fn everyday_methods() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let mut c = env.client();

    let milk = c.ok(
        "node.create",
        json!({"title": "Buy milk", "tags": ["home"], "due": "2026-11-26", "priority": "high"}),
    );
    assert_eq!(milk["status"], "todo");
    assert_eq!(milk["kind"], "task");
    let id = milk["id"].as_str().unwrap().to_owned();
    let note = c.ok(
        "node.create",
        json!({"kind": "note", "title": "Recipes", "body": "pancakes", "parent": &id[..8]}),
    );
    assert_eq!(note["status"], Value::Null);
    assert_eq!(note["parent"], json!(id));

    // Get by a unique prefix.
    assert_eq!(
        c.ok("node.get", json!({"id": &id[..6]}))["title"],
        "Buy milk"
    );
    // Update, tag, link.
    let up = c.ok(
        "node.update",
        json!({"id": &id[..8], "set": {"title": "Buy oat milk", "due": null}}),
    );
    assert_eq!(
        (up["title"].as_str(), &up["due"]),
        (Some("Buy oat milk"), &Value::Null)
    );
    let tagged = c.ok(
        "node.tag",
        json!({"id": id, "add": ["errand"], "remove": ["home"]}),
    );
    assert_eq!(tagged["tags"], json!(["errand"]));
    let linked = c.ok(
        "node.link",
        json!({"id": id, "rel": "relates", "target": note["id"]}),
    );
    assert_eq!(
        linked["links"],
        json!([{"rel": "relates", "target": note["id"]}])
    );
    // List with filters.
    let all = c.ok("node.list", json!({}));
    assert_eq!(all["nodes"].as_array().unwrap().len(), 2);
    let notes = c.ok("node.list", json!({"kind": "note"}));
    assert_eq!(notes["nodes"][0]["title"], "Recipes");
    let errands = c.ok("node.list", json!({"tag": "errand"}));
    assert_eq!(errands["nodes"][0]["id"], json!(id));
    let found = c.ok("node.list", json!({"text": "PANCAKE"}));
    assert_eq!(found["nodes"][0]["title"], "Recipes");
    assert_eq!(
        c.ok("tags.list", json!({}))["tags"],
        json!([{"tag": "errand", "count": 1}])
    );
    // Done and delete.
    let done = c.ok("node.update", json!({"id": id, "set": {"status": "done"}}));
    assert_eq!(done["status"], "done");
    assert_eq!(
        c.ok("node.list", json!({"status": ["todo", "doing"]}))["nodes"],
        json!([])
    );
    let gone = c.ok("node.delete", json!({"id": note["id"]}));
    assert_eq!(gone["deleted"], true);
    assert_eq!(
        c.ok("node.list", json!({}))["nodes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A tombstone still resolves, so it can be restored.
    let back = c.ok(
        "node.update",
        json!({"id": note["id"], "set": {"deleted": false}}),
    );
    assert_eq!(back["deleted"], false);

    let info = c.ok("daemon.info", json!({}));
    assert_eq!(info["mode"], "local");
    assert_eq!(info["db"], json!(env.db.display().to_string()));
    assert!(info["ops"].as_u64().unwrap() >= 10);
    let sync = c.ok("sync.status", json!({}));
    assert_eq!(sync["configured"], false);
    let auth = c.ok("auth.status", json!({}));
    assert_eq!(auth["state"], "not_configured");
}

#[test]
fn ambiguous_and_unknown_ids() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let mut c = env.client();
    let (_, digit) = c.nodes_sharing_a_prefix("t");
    let err = c.err("node.get", json!({"id": digit}));
    assert_eq!(err["code"], -32002);
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("the id prefix \"{digit}\" matches"))
    );
    let candidates = err["data"]["candidates"].as_array().unwrap();
    assert!(candidates.len() >= 2 && candidates.iter().all(|c| c["title"].is_string()));
    let err = c.err("node.get", json!({"id": "zzz"}));
    assert_eq!(err["code"], -32001);
    assert_eq!(err["message"], "no node has an id starting with \"zzz\"");
}

#[test]
fn bad_input_gets_an_error_and_writes_nothing() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let mut c = env.client();
    c.ok("node.create", json!({"title": "keep me"}));
    let before = ops(&mut c);

    c.send_raw(b"{not json\n").unwrap();
    let v = c.read().unwrap();
    assert_eq!(v["error"]["code"], -32700);
    assert_eq!(v["id"], Value::Null);

    c.send_raw(b"{\"jsonrpc\":\"1.0\",\"id\":7,\"method\":\"node.list\"}\n")
        .unwrap();
    let v = c.read().unwrap();
    assert_eq!(
        (v["id"].clone(), v["error"]["code"].clone()),
        (json!(7), json!(-32600))
    );

    let e = c.err("node.explode", json!({}));
    assert_eq!(
        (e["code"].clone(), e["message"].clone()),
        (json!(-32601), json!("unknown method \"node.explode\""))
    );

    let e = c.err("node.create", json!({"title": 5}));
    assert_eq!(e["code"], -32602);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid params for node.create"),
        "{e}"
    );

    let e = c.err("node.create", json!({"title": "x", "colour": "red"}));
    assert_eq!(e["code"], -32602, "unknown parameters are refused: {e}");

    for (params, field) in [
        (json!({"title": ""}), "title"),
        (json!({"title": "x", "due": "someday"}), "due"),
        (json!({"title": "x".repeat(1001)}), "title"),
        (
            json!({"title": "ok", "tags": ["two words"]}),
            "tag:two words",
        ),
    ] {
        let e = c.err("node.create", params);
        assert_eq!(e["code"], -32003, "{e}");
        assert_eq!(e["data"]["field"], field, "{e}");
    }
    let id = c.ok("node.list", json!({}))["nodes"][0]["id"].clone();
    let e = c.err(
        "node.update",
        json!({"id": id, "set": {"status": "finished", "title": "half"}}),
    );
    assert_eq!(
        e["message"],
        "invalid status: must be one of todo, doing, done, cancelled"
    );

    // A batch is answered as a batch; a notification gets no answer.
    c.send_raw(b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tags.list\"},{\"jsonrpc\":\"2.0\",\"method\":\"tags.list\"}]\n")
        .unwrap();
    let v = c.read().unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(1));

    assert_eq!(ops(&mut c), before, "a refused request wrote something");
    assert_eq!(c.ok("node.get", json!({"id": id}))["title"], "keep me");
}

#[test]
fn an_oversized_line_closes_only_that_connection() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let mut other = env.client();
    let mut big = env.client();
    let mut line = vec![b'x'; 2 * 1024 * 1024 + 10];
    line.push(b'\n');
    // The daemon may close before reading everything; a write error is fine.
    let _ = big.send_raw(&line);
    let v = big.read().expect("an error line before the close");
    assert_eq!(v["error"]["code"], -32600);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("longer than the limit")
    );
    assert!(
        big.read().is_none(),
        "the connection stays open after an oversized line"
    );
    assert_eq!(other.ok("tags.list", json!({}))["tags"], json!([]));
}

#[test]
fn a_client_that_disconnects_mid_request_changes_nothing() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let mut half = env.client();
    half.send_raw(
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"node.create\",\"params\":{\"title\":\"half",
    )
    .unwrap();
    drop(half);
    let mut c = env.client();
    assert_eq!(ops(&mut c), 0);
    assert_eq!(c.ok("node.list", json!({}))["nodes"], json!([]));
}

#[test]
fn concurrent_clients_all_land() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let socket = env.socket.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&socket).unwrap();
                for i in 0..100 {
                    c.ok("node.create", json!({"title": format!("w{t}-{i}")}));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut c = env.client();
    assert_eq!(
        c.ok("node.list", json!({}))["nodes"]
            .as_array()
            .unwrap()
            .len(),
        400
    );
}

#[test]
fn subscribers_see_changes_and_a_stalled_one_never_blocks_writers() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let mut sub = env.client();
    let r = sub.ok("events.subscribe", json!({}));
    assert_eq!(r["subscribed"], true);
    let mut stalled = env.client();
    stalled.ok("events.subscribe", json!({}));

    let mut w = env.client();
    let id = w.ok("node.create", json!({"title": "seen"}))["id"].clone();
    let ev = sub.read().unwrap();
    assert_eq!(ev["method"], "event");
    assert_eq!(ev["params"]["type"], "changed");
    assert_eq!(ev["params"]["nodes"], json!([id]));

    // The stalled subscriber reads nothing while thousands of writes go through.
    for i in 0..3000 {
        w.ok(
            "node.update",
            json!({"id": id, "set": {"title": format!("v{i}")}}),
        );
    }
    // It is then told to resync rather than replayed everything.
    let mut resync = false;
    while let Some(v) = stalled.read() {
        if v["params"]["type"] == "resync" {
            resync = true;
            break;
        }
    }
    assert!(resync, "a lagging subscriber was never told to resync");
}

#[test]
fn sigterm_finishes_and_cleans_up() {
    let env = TestEnv::new();
    let mut d = env.start_daemon();
    let mut c = env.client();
    c.ok("node.create", json!({"title": "before stop"}));
    let status = d.stop();
    assert!(
        status.success(),
        "hephd exited with {status}: {}",
        d.log_text()
    );
    assert!(!env.socket.exists(), "the socket was left behind");
    let store = SqliteStore::open(&env.db, &OpenOptions::default()).unwrap();
    store.check_integrity().unwrap();
    assert_eq!(
        store.query(&Default::default()).unwrap()[0]
            .title
            .as_deref(),
        Some("before stop")
    );
    assert!(d.log_text().contains("SIGTERM"));
}

#[test]
fn kill_9_mid_write_loses_no_acknowledged_write() {
    let env = TestEnv::new();
    let mut d = env.start_daemon();
    let socket = env.socket.clone();
    let writer = std::thread::spawn(move || {
        let mut c = Client::connect(&socket).unwrap();
        let mut acked = Vec::new();
        for i in 0..100_000 {
            let Some(v) = c.try_call("node.create", json!({"title": format!("w{i}")})) else {
                break;
            };
            match v.get("result") {
                Some(node) => acked.push(node["id"].as_str().unwrap().to_owned()),
                None => break,
            }
        }
        acked
    });
    // Kill once a good number of writes were acknowledged.
    let mut probe = env.client();
    wait_until("200 acknowledged writes", Duration::from_secs(60), || {
        ops(&mut probe) >= 200 * 3
    });
    drop(probe);
    d.kill9();
    let acked = writer.join().unwrap();
    assert!(acked.len() >= 200);
    assert!(env.socket.exists(), "kill -9 leaves the socket behind");

    // The stale socket is replaced and every acknowledged node is there.
    let _d2 = env.start_daemon();
    let mut c = env.client();
    let nodes = c.ok("node.list", json!({}))["nodes"]
        .as_array()
        .unwrap()
        .clone();
    let present: std::collections::HashSet<&str> =
        nodes.iter().map(|n| n["id"].as_str().unwrap()).collect();
    for id in &acked {
        assert!(
            present.contains(id.as_str()),
            "acknowledged node {id} was lost"
        );
    }
    assert!(_d2.log_text().contains("replaced a stale socket"));
}

#[test]
fn a_second_daemon_is_refused_with_the_first_ones_pid() {
    let env = TestEnv::new();
    let d = env.start_daemon();
    let out = env
        .command("hephd")
        .arg("--db")
        .arg(&env.db)
        .arg("--socket")
        .arg(env.path().join("other.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "another hephd (pid {}) is already running on the database",
            d.pid()
        )),
        "{stderr}"
    );
    // Same socket, other database.
    let out = env
        .command("hephd")
        .arg("--db")
        .arg(env.path().join("other/heph.db"))
        .arg("--socket")
        .arg(&env.socket)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "another hephd (pid {}) is already listening on the socket",
            d.pid()
        )),
        "{stderr}"
    );
    // The first one is unharmed.
    assert_eq!(env.client().ok("tags.list", json!({}))["tags"], json!([]));
}

#[test]
fn socket_and_directories_are_private() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&env.socket), 0o600);
    assert_eq!(mode(env.socket.parent().unwrap()), 0o700);
    assert_eq!(mode(env.db.parent().unwrap()), 0o700);
    assert_eq!(mode(&env.db), 0o600);
}

#[test]
fn print_config_shows_sources() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.path().join("config/heph")).unwrap();
    let mut f = std::fs::File::create(env.path().join("config/heph/config.toml")).unwrap();
    writeln!(f, "log_format = \"json\"").unwrap();
    let out = env
        .command("hephd")
        .arg("--print-config")
        .env("HEPH_DB", env.path().join("x.db"))
        .env("HEPH_SOCKET", "")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("# environment HEPH_DB"), "{text}");
    assert!(
        text.contains("socket = ") && text.contains("hephd.sock\""),
        "{text}"
    );
    assert!(text.contains("log_format = \"json\""), "{text}");
    assert!(text.contains("config file"), "{text}");
}

#[test]
fn json_logs_are_one_json_object_per_line() {
    let env = TestEnv::new();
    let mut d = env.start_daemon_with(&["--log-format", "json"]);
    env.client().ok("node.create", json!({"title": "logged"}));
    assert!(d.stop().success());
    let text = d.log_text();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "{text}");
    for line in lines {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v.get("level").is_some() && v.get("fields").is_some(),
            "{line}"
        );
    }
    assert!(!text.contains("logged"), "a node title reached the log");
}
