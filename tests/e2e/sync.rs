//! Hub and spokes as real processes over loopback (DESIGN §4): convergence,
//! the late-arriving op, paging, crashes (kill -9 of spokes and of the hub
//! mid-transfer), a stopped hub, truncated connections, client mode, every
//! bad HTTP request, a bounded randomized test with crashes, a hub
//! restored from a backup or given a new database (the log's identity), and
//! a copied data directory (HLC collisions refused and repaired, issue 13).
//!
//! Every wait is a bounded poll; replicas are compared through their store
//! files after the daemons stopped: the same registers, the same set of op
//! HLCs, and no HLC logged twice.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use heph_core::store::OpenOptions;
use heph_core::{Hlc, NodeId, Op, ReplicaId, SqliteStore, Store};
use serde_json::{Value, json};

use crate::harness::{Client, Daemon, TestEnv, copy_dir, http, wait_until};

const CONVERGE: Duration = Duration::from_secs(90);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A small deterministic generator (xorshift) for test data and choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Writes `n` valid ops (tasks of four fields each) into the database at
/// `db`, as local ops of a replica numbered `replica`, stamped in the past.
fn seed_ops(db: &Path, n: usize, replica: u8) {
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let mut store = SqliteStore::open(db, &OpenOptions::default()).unwrap();
    let start = now_ms() - 3_600_000;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(replica));
    let mut ops = Vec::with_capacity(n);
    let mut node = NodeId::from_random_bytes([0; 16]);
    for i in 0..n {
        if i % 4 == 0 {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&rng.next().to_le_bytes());
            b[8..].copy_from_slice(&rng.next().to_le_bytes());
            node = NodeId::from_random_bytes(b);
        }
        let (field, value) = match i % 4 {
            0 => ("kind", json!("task")),
            1 => ("title", json!(format!("seeded {replica}/{i}"))),
            2 => ("status", json!("todo")),
            _ => ("priority", json!("low")),
        };
        ops.push(Op {
            hlc: Hlc {
                wall_ms: start + i as u64 / 16,
                counter: (i % 16) as u16,
                replica: ReplicaId([replica; 16]),
            },
            node,
            field: field.into(),
            value,
        });
    }
    for chunk in ops.chunks(10_000) {
        store.apply_batch(chunk).unwrap();
    }
}

fn ops(c: &mut Client) -> u64 {
    c.ok("daemon.info", json!({}))["ops"].as_u64().unwrap()
}

/// Ops in a daemon's log, or `None` while it does not answer.
fn try_ops(env: &TestEnv) -> Option<u64> {
    let mut c = Client::connect(&env.socket).ok()?;
    c.try_call("daemon.info", json!({}))?["result"]["ops"].as_u64()
}

fn nodes(c: &mut Client) -> Value {
    c.ok("node.list", json!({"include_deleted": true}))["nodes"].clone()
}

/// Waits until every env's daemon holds `expected` ops (when given) and
/// they all list the same nodes.
fn wait_converged(envs: &[&TestEnv], expected: Option<u64>) {
    let mut last = String::new();
    wait_until("all replicas to converge", CONVERGE, || {
        let mut views = Vec::new();
        let mut counts = Vec::new();
        for env in envs {
            let Ok(mut c) = Client::connect(&env.socket) else {
                return false;
            };
            counts.push(ops(&mut c));
            views.push(nodes(&mut c));
        }
        last = format!("op counts {counts:?}");
        counts.windows(2).all(|w| w[0] == w[1])
            && expected.is_none_or(|n| counts[0] == n)
            && views.windows(2).all(|w| w[0] == w[1])
    });
    let _ = last;
}

/// What a store file holds: registers and the set of logged HLCs. Panics
/// when an HLC is logged twice.
fn store_state(db: &Path) -> (Vec<heph_core::Register>, BTreeSet<Hlc>) {
    let store = SqliteStore::open(db, &OpenOptions::default()).unwrap();
    let logged = store.ops_after(0, usize::MAX).unwrap();
    let hlcs: BTreeSet<Hlc> = logged.iter().map(|l| l.op.hlc).collect();
    assert_eq!(
        hlcs.len(),
        logged.len(),
        "an op is logged twice in {}",
        db.display()
    );
    assert_eq!(store.op_count().unwrap(), logged.len() as u64);
    (store.registers().unwrap(), hlcs)
}

/// Stops every daemon, then checks that all store files hold the same
/// registers and the same ops, none twice.
fn assert_same_stores(daemons: &mut [Daemon], envs: &[&TestEnv], expected_ops: Option<usize>) {
    for d in daemons.iter_mut() {
        assert!(
            d.stop().success(),
            "a daemon did not stop cleanly:\n{}",
            d.log_text()
        );
    }
    let first = store_state(&envs[0].db);
    if let Some(n) = expected_ops {
        assert_eq!(first.1.len(), n, "ops lost or invented");
    }
    for env in &envs[1..] {
        let other = store_state(&env.db);
        assert_eq!(
            other.1,
            first.1,
            "logs differ: {} vs {}",
            env.db.display(),
            envs[0].db.display()
        );
        assert_eq!(other.0, first.0, "registers differ");
    }
}

/// `(accepted, duplicates)` of a push answer.
fn push_counts(reply: &Value) -> (u64, u64) {
    (
        reply["accepted"].as_u64().unwrap(),
        reply["duplicates"].as_u64().unwrap(),
    )
}

fn sync_status(env: &TestEnv) -> Value {
    env.client().ok("sync.status", json!({}))
}

#[test]
fn three_spokes_and_a_hub_converge_after_concurrent_edits_of_the_same_tasks() {
    let hub_env = TestEnv::new();
    let (hub, port) = hub_env.start_hub(None);
    let envs: Vec<TestEnv> = (0..3).map(|_| TestEnv::new()).collect();
    let spokes: Vec<Daemon> = envs.iter().map(|e| e.start_spoke(port)).collect();
    let mut a = envs[0].client();
    let ids: Vec<String> = (0..3)
        .map(|i| {
            a.ok("node.create", json!({"title": format!("shared {i}")}))["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for env in &envs[1..] {
        wait_until("the shared tasks to reach every spoke", CONVERGE, || {
            nodes(&mut env.client()).as_array().unwrap().len() == 3
        });
    }
    // Every spoke edits the same tasks at the same time, from its own thread.
    std::thread::scope(|s| {
        for (n, env) in envs.iter().enumerate() {
            let ids = &ids;
            s.spawn(move || {
                let mut c = env.client();
                for round in 0..10 {
                    for id in ids {
                        c.ok(
                            "node.update",
                            json!({"id": id, "set": {"title": format!("spoke {n} round {round}"), "priority": (["low", "medium", "high"][n])}}),
                        );
                        c.ok("node.tag", json!({"id": id, "add": [format!("s{n}")], "remove": [format!("s{}", (n + 1) % 3)]}));
                    }
                }
            });
        }
    });
    let all: Vec<&TestEnv> = std::iter::once(&hub_env).chain(envs.iter()).collect();
    wait_converged(&all, None);
    for env in &envs {
        let st = sync_status(env);
        assert_eq!(st["pending_ops"], 0, "{st}");
        assert_eq!(st["last_error"], Value::Null, "{st}");
        assert!(st["last_success_ms"].as_u64().is_some(), "{st}");
    }
    let mut daemons: Vec<Daemon> = spokes;
    daemons.push(hub);
    assert_same_stores(&mut daemons, &all, Some(9 + 3 * 10 * 3 * 4));
}

/// DESIGN §4: B was offline and pushes ops stamped *earlier* than ops A
/// has already pulled past. A pull by HLC would never return them; by hub
/// seq it does.
#[test]
fn a_late_arriving_op_with_an_older_hlc_still_reaches_every_spoke() {
    let b_env = TestEnv::new();
    // B edits while offline (no hub yet): these ops carry the older HLCs.
    let mut b = b_env.start_daemon();
    let late = b_env
        .client()
        .ok("node.create", json!({"title": "written offline, long ago"}));
    let late_hlc: Hlc = late["updated"].as_str().unwrap().parse().unwrap();
    b.stop();

    let hub_env = TestEnv::new();
    let (hub, port) = hub_env.start_hub(None);
    let a_env = TestEnv::new();
    let a = a_env.start_spoke(port);
    let newer = a_env
        .client()
        .ok("node.create", json!({"title": "written later"}));
    let newer_hlc: Hlc = newer["updated"].as_str().unwrap().parse().unwrap();
    assert!(late_hlc < newer_hlc);
    wait_until("A's op to reach the hub", CONVERGE, || {
        try_ops(&hub_env) == Some(3)
    });
    let st = a_env.client().ok("sync.now", json!({}));
    assert_eq!(st["hub_seq"], 3, "{st}");

    // B comes online and pushes its older ops; A must still get them.
    let b = b_env.start_spoke(port);
    wait_until("B's late ops to reach A", CONVERGE, || {
        a_env
            .client()
            .call("node.get", json!({"id": late["id"]}))
            .get("result")
            .is_some()
    });
    let got = a_env.client().ok("node.get", json!({"id": late["id"]}));
    assert_eq!(got["title"], "written offline, long ago");
    wait_converged(&[&hub_env, &a_env, &b_env], Some(6));
    assert_same_stores(&mut [a, b, hub], &[&hub_env, &a_env, &b_env], Some(6));
}

#[test]
fn a_spoke_offline_for_thousands_of_ops_catches_up_through_paging() {
    const N: usize = 24_000;
    let a_env = TestEnv::new();
    seed_ops(&a_env.db, N, 0xa1);
    let hub_env = TestEnv::new();
    let (hub, port) = hub_env.start_hub(None);
    // A pushes 24,000 ops: five batches of at most 5,000.
    let a = a_env.start_spoke(port);
    wait_until("A's ops to reach the hub", CONVERGE, || {
        try_ops(&hub_env) == Some(N as u64)
    });
    // The hub pages: 1,000 by default, `more` until the end.
    let (status, page) = http(port, "GET", "/sync/pull?after=0", &[], b"").unwrap();
    assert_eq!(status, 200);
    assert_eq!(page["ops"].as_array().unwrap().len(), 1000);
    assert_eq!(
        (page["next"].as_u64(), page["more"].as_bool()),
        (Some(1000), Some(true))
    );
    let (_, last) = http(
        port,
        "GET",
        &format!("/sync/pull?after={}&limit=10", N - 3),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(
        (last["next"].as_u64(), last["more"].as_bool()),
        (Some(N as u64), Some(false))
    );
    // B, new, pulls them all in pages of 10,000.
    let b_env = TestEnv::new();
    let b = b_env.start_spoke(port);
    wait_converged(&[&hub_env, &a_env, &b_env], Some(N as u64));
    let st = sync_status(&b_env);
    assert_eq!(st["hub_seq"], N as u64, "{st}");
    assert_eq!(sync_status(&a_env)["pending_ops"], 0);
    assert_same_stores(&mut [a, b, hub], &[&hub_env, &a_env, &b_env], Some(N));
}

#[test]
fn kill_9_of_a_spoke_mid_push_loses_and_duplicates_nothing() {
    const N: usize = 40_000;
    let a_env = TestEnv::new();
    seed_ops(&a_env.db, N, 0xb2);
    let hub_env = TestEnv::new();
    let (hub, port) = hub_env.start_hub(None);
    let mut a = a_env.start_spoke(port);
    wait_until("the push to start", CONVERGE, || {
        try_ops(&hub_env).is_some_and(|n| n > 0)
    });
    a.kill9();
    let partial = try_ops(&hub_env).unwrap();
    let a = a_env.start_spoke(port);
    wait_converged(&[&hub_env, &a_env], Some(N as u64));
    assert!(partial <= N as u64);
    assert_same_stores(&mut [a, hub], &[&hub_env, &a_env], Some(N));
}

#[test]
fn kill_9_of_a_spoke_mid_pull_loses_and_duplicates_nothing() {
    const N: usize = 40_000;
    let hub_env = TestEnv::new();
    seed_ops(&hub_env.db, N, 0xc3);
    let (hub, port) = hub_env.start_hub(None);
    let b_env = TestEnv::new();
    let mut b = b_env.start_spoke(port);
    let mut seen = 0;
    wait_until("the pull to start", CONVERGE, || {
        seen = try_ops(&b_env).unwrap_or(0);
        seen > 0
    });
    b.kill9();
    let b = b_env.start_spoke(port);
    wait_converged(&[&hub_env, &b_env], Some(N as u64));
    let st = sync_status(&b_env);
    assert_eq!(st["hub_seq"], N as u64, "{st}");
    // Nothing pulled goes back to the hub.
    assert_eq!(st["pending_ops"], 0, "{st}");
    assert_same_stores(&mut [b, hub], &[&hub_env, &b_env], Some(N));
}

#[test]
fn kill_9_of_the_hub_mid_ingest_loses_and_duplicates_nothing() {
    const N: usize = 40_000;
    let a_env = TestEnv::new();
    seed_ops(&a_env.db, N, 0xd4);
    let hub_env = TestEnv::new();
    let (mut hub, port) = hub_env.start_hub(None);
    let a = a_env.start_spoke(port);
    wait_until("the hub to start ingesting", CONVERGE, || {
        try_ops(&hub_env).is_some_and(|n| n > 0)
    });
    hub.kill9();
    let (hub, _) = hub_env.start_hub(Some(port));
    wait_converged(&[&hub_env, &a_env], Some(N as u64));
    assert_same_stores(&mut [a, hub], &[&hub_env, &a_env], Some(N));
}

#[test]
fn spokes_back_off_while_the_hub_is_down_then_resume() {
    let hub_env = TestEnv::new();
    let (mut hub, port) = hub_env.start_hub(None);
    let a_env = TestEnv::new();
    let b_env = TestEnv::new();
    let a = a_env.start_spoke(port);
    let b = b_env.start_spoke(port);
    a_env
        .client()
        .ok("node.create", json!({"title": "before the outage"}));
    wait_converged(&[&hub_env, &a_env, &b_env], Some(3));
    assert!(hub.stop().success());

    // Edits go on locally; sync reports the real cause and a hint.
    a_env
        .client()
        .ok("node.create", json!({"title": "during the outage, on A"}));
    b_env
        .client()
        .ok("node.create", json!({"title": "during the outage, on B"}));
    // The long poll in flight when the hub stopped fails as "closed"; the
    // attempts after it find nothing listening.
    wait_until("A to report the hub refusing connections", CONVERGE, || {
        sync_status(&a_env)["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused"))
    });
    let st = sync_status(&a_env);
    let err = st["last_error"].as_str().unwrap();
    assert!(err.contains(&format!("http://127.0.0.1:{port}")), "{st}");
    assert!(err.contains("refused"), "{st}");
    assert!(st["hint"].as_str().unwrap().contains("/healthz"), "{st}");
    assert_eq!(st["pending_ops"], 3, "{st}");
    let now = a_env.client().err("sync.now", json!({}));
    assert!(
        now["message"].as_str().unwrap().contains("refused"),
        "{now}"
    );
    // A few failed attempts in a row (backing off, not spinning).
    let log = a.log_text();
    assert!(log.contains("backing off"), "{log}");

    let (hub, _) = hub_env.start_hub(Some(port));
    wait_converged(&[&hub_env, &a_env, &b_env], Some(9));
    wait_until("A's status to clear", CONVERGE, || {
        sync_status(&a_env)["last_error"].is_null()
    });
    assert_same_stores(&mut [a, b, hub], &[&hub_env, &a_env, &b_env], Some(9));
}

/// A push cut off mid-body writes nothing; a hub that cuts its answers
/// short is reported as a closed connection, naming the URL.
#[test]
fn truncated_connections_write_nothing_and_are_named() {
    use std::io::{Read, Write};
    let hub_env = TestEnv::new();
    let (hub, port) = hub_env.start_hub(None);
    let op = json!({"hlc": format!("{:016}-0000-{}", now_ms(), "ab".repeat(16)),
        "node": "00000000-0000-4000-8000-000000000001", "field": "title", "value": "cut"});
    let body = serde_json::to_vec(&json!({"ops": [op]})).unwrap();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /sync/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body[..body.len() / 2]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert_eq!(
        try_ops(&hub_env),
        Some(0),
        "a truncated push wrote something"
    );
    // The same push, whole, works.
    let (status, reply) = http(
        port,
        "POST",
        "/sync/push",
        &[("Content-Type", "application/json")],
        &body,
    )
    .unwrap();
    assert_eq!((status, push_counts(&reply)), (200, (1, 0)), "{reply}");

    // A "hub" that answers with half a response, then hangs up.
    let fake = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_port = fake.local_addr().unwrap().port();
    fake.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let server = std::thread::spawn(move || {
        while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
            match fake.accept() {
                Ok((mut c, _)) => {
                    c.set_nonblocking(false).unwrap();
                    let mut buf = [0u8; 4096];
                    let _ = c.read(&mut buf);
                    let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"ops\":[");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    let s_env = TestEnv::new();
    let spoke = s_env.start_spoke(fake_port);
    wait_until("the spoke to report the cut", CONVERGE, || {
        sync_status(&s_env)["last_error"].as_str().is_some()
    });
    let st = sync_status(&s_env);
    let err = st["last_error"].as_str().unwrap();
    assert!(
        err.contains(&format!("http://127.0.0.1:{fake_port}")),
        "{st}"
    );
    assert!(err.contains("closed before the hub answered"), "{st}");
    drop(spoke);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = server.join();
    drop(hub);
}

#[test]
fn client_mode_forwards_every_rpc_to_the_hub() {
    let hub_env = TestEnv::new();
    let (_hub, port) = hub_env.start_hub(None);
    let c_env = TestEnv::new();
    let _client = c_env.start_daemon_with(&[
        "--mode",
        "client",
        "--hub-url",
        &format!("http://127.0.0.1:{port}"),
    ]);
    let mut c = c_env.client();
    let info = c.ok("daemon.info", json!({}));
    assert_eq!(info["mode"], "client");
    let made = c.ok(
        "node.create",
        json!({"title": "through the hub", "tags": ["x"]}),
    );
    let on_hub = hub_env.client().ok("node.get", json!({"id": made["id"]}));
    assert_eq!(on_hub["title"], "through the hub");
    assert_eq!(
        c.ok("node.list", json!({"tag": "x"}))["nodes"][0]["id"],
        made["id"]
    );
    // Errors come back as the hub's own.
    let err = c.err("node.get", json!({"id": "ffff"}));
    assert_eq!(err["code"], -32001, "{err}");
    assert!(!c_env.db.exists(), "client mode created a replica");
    let st = c.ok("sync.status", json!({}));
    assert_eq!(st["last_error"], Value::Null, "{st}");
}

#[test]
fn a_hub_refuses_to_start_without_auth_or_off_loopback() {
    let env = TestEnv::new();
    for (args, expected) in [
        (vec!["--mode", "server"], "--insecure-no-auth"),
        (
            vec![
                "--mode",
                "server",
                "--insecure-no-auth",
                "--listen",
                "0.0.0.0:7447",
            ],
            "only allowed on a loopback address",
        ),
        (
            vec![
                "--mode",
                "server",
                "--insecure-no-auth",
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                "/nonexistent.pem",
            ],
            "--tls-cert and --tls-key go together",
        ),
        (vec!["--mode", "client"], "--mode client needs --hub-url"),
        (vec!["--hub-url", "ftp://hub.example"], "invalid hub URL"),
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
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn a_hub_warns_at_every_start_without_auth() {
    let env = TestEnv::new();
    let (mut hub, port) = env.start_hub(None);
    hub.stop();
    let (hub, _) = env.start_hub(Some(port));
    assert_eq!(hub.log_text().matches("--insecure-no-auth").count(), 2);
}

/// Every bad request: a 4xx, a JSON `{"error","message"}` body, nothing written.
#[test]
fn bad_http_requests_get_a_4xx_json_error_and_write_nothing() {
    let env = TestEnv::new();
    let (_hub, port) = env.start_hub(None);
    let now = now_ms();
    let op = |hlc: String, field: &str, value: Value| json!({"hlc": hlc, "node": "00000000-0000-4000-8000-000000000001", "field": field, "value": value});
    let hlc = |wall: u64, c: u16| format!("{wall:016}-{c:04x}-{}", "cd".repeat(16));
    let push = |ops: Vec<Value>| serde_json::to_vec(&json!({ "ops": ops })).unwrap();
    let many: Vec<Value> = (0..5001)
        .map(|i| op(hlc(now, i as u16), "title", json!("t")))
        .collect();
    let big = format!("{{\"ops\":[{}]}}", " ".repeat(9 * 1024 * 1024));
    let json_ct = [("Content-Type", "application/json")];
    // (method, path, headers, body, status, error code, words in the message)
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        Vec<u8>,
        u16,
        &'a str,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/sync/push",
            json_ct.to_vec(),
            b"{\"ops\":[".to_vec(),
            400,
            "malformed_json",
            "not valid JSON",
        ),
        (
            "POST",
            "/sync/push",
            json_ct.to_vec(),
            b"".to_vec(),
            400,
            "malformed_json",
            "not valid JSON",
        ),
        (
            "POST",
            "/sync/push",
            json_ct.to_vec(),
            b"{\"ops\":5}".to_vec(),
            400,
            "invalid_body",
            "invalid type",
        ),
        (
            "POST",
            "/sync/push",
            json_ct.to_vec(),
            b"{}".to_vec(),
            400,
            "invalid_body",
            "missing field `ops`",
        ),
        (
            "POST",
            "/sync/push",
            json_ct.to_vec(),
            push(vec![op("yesterday".into(), "title", json!("t"))]),
            400,
            "invalid_body",
            "invalid hlc",
        ),
        (
            "POST",
            "/sync/push",
            json_ct.to_vec(),
            push(vec![
                op(hlc(now, 1), "title", json!("ok")),
                op(hlc(now, 2), "status", json!("finished")),
            ]),
            422,
            "invalid_op",
            "op 1 of the batch was refused",
        ),
        (
            "POST",
            "/sync/push",
            json_ct.to_vec(),
            push(many),
            413,
            "too_large",
            "limit of 5000",
        ),
        (
            "POST",
            "/sync/push",
            json_ct.to_vec(),
            big.into_bytes(),
            413,
            "too_large",
            "limit of 8388608 bytes",
        ),
        (
            "POST",
            "/sync/push",
            vec![
                ("Content-Type", "application/json"),
                ("Content-Encoding", "gzip"),
            ],
            push(vec![op(hlc(now, 3), "title", json!("t"))]),
            415,
            "unsupported_encoding",
            "compressed",
        ),
        (
            "POST",
            "/sync/push",
            vec![("Content-Type", "text/plain")],
            push(vec![]),
            415,
            "unsupported_media_type",
            "application/json",
        ),
        (
            "POST",
            "/sync/push",
            json_ct.to_vec(),
            push(vec![op(
                hlc(now + 3_600_000, 0),
                "title",
                json!("from the future"),
            )]),
            409,
            "clock_skew",
            "ahead of this replica's clock",
        ),
        (
            "GET",
            "/sync/pull?after=-1",
            vec![],
            vec![],
            400,
            "invalid_query",
            "non-negative whole number",
        ),
        (
            "GET",
            "/sync/pull?after=abc",
            vec![],
            vec![],
            400,
            "invalid_query",
            "non-negative whole number",
        ),
        (
            "GET",
            "/sync/pull?limit=0",
            vec![],
            vec![],
            400,
            "invalid_query",
            "limit must be from 1 to 10000",
        ),
        (
            "GET",
            "/sync/pull?limit=10001",
            vec![],
            vec![],
            400,
            "invalid_query",
            "limit must be from 1 to 10000",
        ),
        (
            "GET",
            "/sync/pull?wait=61",
            vec![],
            vec![],
            400,
            "invalid_query",
            "wait must be from 0 to 60",
        ),
        (
            "GET",
            "/sync/pull?after=5",
            vec![],
            vec![],
            409,
            "cursor_ahead",
            "beyond the hub's log",
        ),
        (
            "GET",
            "/sync/pull?log=not-hex",
            vec![],
            vec![],
            400,
            "invalid_query",
            "log must be a log id",
        ),
        (
            "GET",
            "/sync/pull?log=ab&seen=3",
            vec![],
            vec![],
            400,
            "invalid_query",
            "seen (a hub seq above 0) and seen_hlc come together",
        ),
        (
            "GET",
            "/sync/pull?log=ab&seen=3&seen_hlc=yesterday",
            vec![],
            vec![],
            400,
            "invalid_query",
            "seen_hlc must be an HLC",
        ),
        (
            "GET",
            "/sync/nothing",
            vec![],
            vec![],
            404,
            "not_found",
            "no such route",
        ),
        (
            "GET",
            "/",
            vec![],
            vec![],
            404,
            "not_found",
            "no such route",
        ),
        (
            "GET",
            "/sync/push",
            vec![],
            vec![],
            405,
            "method_not_allowed",
            "take POST",
        ),
        (
            "DELETE",
            "/sync/pull",
            vec![],
            vec![],
            405,
            "method_not_allowed",
            "take POST",
        ),
        (
            "POST",
            "/rpc",
            json_ct.to_vec(),
            b"{\"jsonrpc\":".to_vec(),
            400,
            "malformed_json",
            "not valid JSON",
        ),
        (
            "POST",
            "/rpc",
            json_ct.to_vec(),
            vec![b' '; 3 * 1024 * 1024],
            413,
            "too_large",
            "limit of 2097152 bytes",
        ),
    ];
    for (method, path, headers, body, status, code, words) in cases {
        let (got, reply) = http(port, method, path, &headers, &body).unwrap();
        assert_eq!(got, status, "{method} {path}: {reply}");
        assert_eq!(reply["error"], code, "{method} {path}: {reply}");
        let message = reply["message"].as_str().unwrap();
        assert!(message.contains(words), "{method} {path}: {message}");
        assert!(!message.contains('\n'), "{message}");
        assert_eq!(try_ops(&env), Some(0), "{method} {path} wrote something");
    }
    // A JSON-RPC error over /rpc is a JSON-RPC answer, and writes nothing either.
    let (status, reply) = http(
        port, "POST", "/rpc", &json_ct,
        br#"{"jsonrpc":"2.0","id":7,"method":"node.update","params":{"id":"zz","set":{"status":"finished"}}}"#,
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(reply["id"], 7);
    assert!(reply["error"]["code"].as_i64().is_some(), "{reply}");
    assert_eq!(try_ops(&env), Some(0));
    // The public routes.
    let (status, health) = http(port, "GET", "/healthz", &[], b"").unwrap();
    assert_eq!((status, &health["status"]), (200, &json!("ok")));
    let (status, meta) = http(
        port,
        "GET",
        "/.well-known/oauth-protected-resource",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(meta["resource"], format!("http://127.0.0.1:{port}"));
    // The good path, for contrast: accepted, then all duplicates.
    let good = push(vec![op(hlc(now, 9), "title", json!("fine"))]);
    let (status, first) = http(port, "POST", "/sync/push", &json_ct, &good).unwrap();
    assert_eq!((status, push_counts(&first)), (200, (1, 0)), "{first}");
    let (status, again) = http(port, "POST", "/sync/push", &json_ct, &good).unwrap();
    assert_eq!((status, push_counts(&again)), (200, (0, 1)), "{again}");
    // Both answers name the hub's log and its end: the one op, at seq 1.
    assert_eq!(first["log"], again["log"]);
    assert_eq!(first["log"].as_str().map(str::len), Some(32));
    assert_eq!(
        (&again["seq"], &again["hlc"]),
        (&json!(1), &json!(hlc(now, 9)))
    );
    // A pull naming the log and what it saw there is answered as usual; one
    // naming another log gets the start-over page at once, even with a wait.
    let log = again["log"].as_str().unwrap().to_owned();
    let pull = |q: String| http(port, "GET", &format!("/sync/pull?{q}"), &[], b"").unwrap();
    let (status, page) = pull(format!(
        "after=1&wait=1&log={log}&seen=1&seen_hlc={}",
        hlc(now, 9)
    ));
    assert_eq!(
        (status, &page["next"], &page["log"]),
        (200, &json!(1), &json!(log))
    );
    let (status, page) = pull(format!("after=1&wait=60&log={}", "ab".repeat(16)));
    assert_eq!(
        (status, &page["next"], &page["more"]),
        (200, &json!(0), &json!(true))
    );
    assert_eq!(
        page["log"],
        json!(log),
        "another log's id never replaces this one"
    );
    // A claim under this id that the log does not hold (another op at seq
    // 1): the log takes a new id, which every later answer carries.
    let (status, page) = pull(format!("after=1&log={log}&seen=1&seen_hlc={}", hlc(now, 8)));
    assert_eq!((status, &page["next"]), (200, &json!(0)));
    let new_log = page["log"].as_str().unwrap().to_owned();
    assert_ne!(new_log, log);
    assert_eq!(pull("after=0".into()).1["log"], json!(new_log));
    assert_eq!(try_ops(&env), Some(1));
}

/// A long poll holds the request while nothing is new, and returns as soon
/// as an op commits, not when its wait ends.
#[test]
fn a_long_poll_returns_when_an_op_commits() {
    let env = TestEnv::new();
    let (_hub, port) = env.start_hub(None);
    let start = std::time::Instant::now();
    let (status, empty) = http(port, "GET", "/sync/pull?after=0&wait=1", &[], b"").unwrap();
    assert_eq!((status, empty["next"].as_u64()), (200, Some(0)));
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "the poll did not wait"
    );
    let waiter = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        let r = http(port, "GET", "/sync/pull?after=0&wait=60", &[], b"").unwrap();
        (r, start.elapsed())
    });
    // Whether the poll is parked before or after this commit, it must
    // return with the ops well before its 60 s wait.
    env.client().ok("node.create", json!({"title": "wake up"}));
    let ((status, page), took) = waiter.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(page["ops"].as_array().unwrap().len(), 3);
    assert!(
        took < Duration::from_secs(50),
        "the poll waited out its wait: {took:?}"
    );
}

/// Random edits on three spokes with random sync timing and crashes, then
/// a full sync: identical state. Bounded: two cases of 40 steps.
#[test]
fn random_edits_syncs_and_crashes_on_three_spokes_converge() {
    for seed in [0x51u64, 0x7e3] {
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let hub_env = TestEnv::new();
        let (mut hub, port) = hub_env.start_hub(None);
        let envs: Vec<TestEnv> = (0..3).map(|_| TestEnv::new()).collect();
        let mut spokes: Vec<Option<Daemon>> =
            envs.iter().map(|e| Some(e.start_spoke(port))).collect();
        let mut hub_up = true;
        for _ in 0..40 {
            let i = rng.below(3) as usize;
            match rng.below(10) {
                0 => {
                    if let Some(mut d) = spokes[i].take() {
                        d.kill9();
                    } else {
                        spokes[i] = Some(envs[i].start_spoke(port));
                    }
                }
                1 => {
                    if hub_up {
                        hub.kill9();
                    } else {
                        hub = hub_env.start_hub(Some(port)).0;
                    }
                    hub_up = !hub_up;
                }
                2 => {
                    if spokes[i].is_some() {
                        let _ = envs[i].client().call("sync.now", json!({}));
                    }
                }
                _ => {
                    if spokes[i].is_none() {
                        continue;
                    }
                    let mut c = envs[i].client();
                    let list = nodes(&mut c);
                    let known = list.as_array().unwrap();
                    if known.is_empty() || rng.below(3) == 0 {
                        c.ok(
                            "node.create",
                            json!({"title": format!("r{}", rng.below(1000))}),
                        );
                    } else {
                        let id = known[rng.below(known.len() as u64) as usize]["id"].clone();
                        let set = match rng.below(3) {
                            0 => json!({"title": format!("t{}", rng.below(1000))}),
                            1 => {
                                json!({"status": (["todo", "doing", "done"][rng.below(3) as usize])})
                            }
                            _ => json!({format!("tag:g{}", rng.below(3)): rng.below(2) == 0}),
                        };
                        c.ok("node.update", json!({"id": id, "set": set}));
                    }
                }
            }
        }
        if !hub_up {
            hub = hub_env.start_hub(Some(port)).0;
        }
        for (i, s) in spokes.iter_mut().enumerate() {
            if s.is_none() {
                *s = Some(envs[i].start_spoke(port));
            }
        }
        let all: Vec<&TestEnv> = std::iter::once(&hub_env).chain(envs.iter()).collect();
        wait_until("every spoke to sync cleanly", CONVERGE, || {
            envs.iter().all(|e| {
                e.client()
                    .call("sync.now", json!({}))
                    .get("result")
                    .is_some_and(|r| r["pending_ops"] == 0)
            })
        });
        wait_converged(&all, None);
        let mut daemons: Vec<Daemon> = spokes.into_iter().flatten().collect();
        daemons.push(hub);
        assert_same_stores(&mut daemons, &all, None);
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert_path = dir.join("hub-cert.pem");
    let key_path = dir.join("hub-key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

#[test]
fn spokes_sync_over_https_with_a_private_ca_and_name_a_tls_failure() {
    let hub_env = TestEnv::new();
    let (cert, key) = self_signed(hub_env.path());
    let hub = hub_env.start_daemon_with(&[
        "--mode",
        "server",
        "--insecure-no-auth",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let mut port = None;
    wait_until("the hub's https address", Duration::from_secs(20), || {
        port = hub
            .log_text()
            .lines()
            .filter_map(|l| l.split("hub listening on https://127.0.0.1:").nth(1))
            .filter_map(|p| p.trim().parse::<u16>().ok())
            .next_back();
        port.is_some()
    });
    let url = format!("https://127.0.0.1:{}", port.unwrap());

    // Trusting the private CA, two spokes converge over HTTPS.
    let a = TestEnv::new();
    let b = TestEnv::new();
    let _da = a.start_daemon_with(&["--hub-url", &url, "--hub-ca", cert.to_str().unwrap()]);
    let _db = b.start_daemon_with(&["--hub-url", &url, "--hub-ca", cert.to_str().unwrap()]);
    let id = a.client().ok("node.create", json!({"title": "over tls"}))["id"].clone();
    let mut cb = b.client();
    wait_until(
        "the node to reach spoke B over https",
        Duration::from_secs(30),
        || {
            cb.call("node.get", json!({"id": id}))
                .get("result")
                .is_some()
        },
    );

    // Without the CA, the failure names the hub and says it is about TLS.
    let c = TestEnv::new();
    let _dc = c.start_daemon_with(&["--hub-url", &url]);
    let mut cc = c.client();
    let err = cc.err("sync.now", json!({}));
    let message = err["message"].as_str().unwrap().to_owned();
    assert!(message.contains(&url), "{message}");
    assert!(
        message.to_lowercase().contains("tls") || message.contains("certificate"),
        "{message}"
    );
    let status = cc.ok("sync.status", json!({}));
    assert!(
        status["last_error"].as_str().unwrap().contains(&url),
        "{status}"
    );
}

#[test]
fn stalled_clients_are_cut_off_and_cannot_starve_the_hub() {
    use std::io::{Read, Write};
    let env = TestEnv::new();
    let (_hub, port) = env.start_hub(None);
    // 200 clients that send half a request line and then nothing, and 50
    // that send headers promising a body that never comes.
    let mut stalled: Vec<std::net::TcpStream> = (0..200)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"GET /sync/pull?after=0 HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    for _ in 0..50 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"POST /sync/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"ops\":[")
            .unwrap();
        stalled.push(s);
    }
    // The hub keeps serving everyone else meanwhile.
    assert_eq!(
        http(port, "GET", "/healthz", &[], b"").map(|r| r.0),
        Some(200)
    );
    let mut a = env.client();
    a.ok("node.create", json!({"title": "still served"}));
    // A stalled client is disconnected by the hub's header and body timeouts
    // (15 s and 30 s), not held forever.
    for i in [0, 220] {
        let s = &mut stalled[i];
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut buf = Vec::new();
        match s.read_to_end(&mut buf) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("the hub held stalled connection {i} open for 60 s ({e})"),
        }
        let text = String::from_utf8_lossy(&buf);
        assert!(buf.is_empty() || text.starts_with("HTTP/1.1 4"), "{text}");
    }
    assert_eq!(
        http(port, "GET", "/healthz", &[], b"").map(|r| r.0),
        Some(200)
    );
}

#[test]
fn the_time_of_the_last_success_survives_a_spoke_restart() {
    let hub_env = TestEnv::new();
    let (mut hub, port) = hub_env.start_hub(None);
    let a_env = TestEnv::new();
    let mut a = a_env.start_spoke(port);
    a_env
        .client()
        .ok("node.create", json!({"title": "synced once"}));
    wait_converged(&[&hub_env, &a_env], Some(3));
    let success = sync_status(&a_env)["last_success_ms"].as_u64().unwrap();
    // It is remembered in the replica (read it the way the daemon does).
    let key = format!("sync.last_success http://127.0.0.1:{port}");
    wait_until("the last success to be saved", CONVERGE, || {
        SqliteStore::open(&a_env.db, &OpenOptions::default())
            .ok()
            .and_then(|s| s.meta(&key).ok().flatten())
            .is_some()
    });
    assert!(a.stop().success());
    assert!(hub.stop().success());

    // Restarted while the hub is down: the message is about this daemon's
    // rounds, and the time of the last success is still known.
    let _a = a_env.start_spoke(port);
    let st = sync_status(&a_env);
    let remembered = st["last_success_ms"]
        .as_u64()
        .expect("the last success was forgotten");
    // Saved at most once a minute, so it may be a little older, never newer.
    assert!(
        remembered <= success && success - remembered <= 60_000,
        "{success} vs {st}"
    );
    assert!(
        !st["message"].as_str().unwrap().starts_with("in sync"),
        "{st}"
    );
}

// A replaced or restored hub database (issue 13, scenario 1): the hub's log
// has an id, spokes notice a change (a new id, or a log that no longer holds
// what they saw) and pull everything again and re-send every op they hold,
// whatever its origin. After it every replica, and a fresh spoke, holds the
// union.

/// Copies the hub's database while it runs, the way `sqlite3 heph.db
/// ".backup …"` does: one consistent snapshot (`VACUUM INTO`).
fn backup_while_running(db: &Path, to: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute("VACUUM INTO ?1", [to.to_str().unwrap()])
        .unwrap();
}

/// Removes a stopped hub's database with its WAL and shared-memory files.
fn delete_database(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(PathBuf::from(p)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("cannot remove {}: {e}", db.display()),
        }
    }
}

/// Puts the backup `from` in place of a stopped hub's database.
fn restore_database(db: &Path, from: &Path) {
    delete_database(db);
    std::fs::copy(from, db).unwrap();
}

/// Creates `n` tasks titled `{prefix} {i}`.
fn create_tasks(env: &TestEnv, prefix: &str, n: usize) {
    let mut c = env.client();
    for i in 0..n {
        c.ok("node.create", json!({"title": format!("{prefix} {i}")}));
    }
}

/// The titles a daemon lists (deleted nodes included).
fn titles(env: &TestEnv) -> BTreeSet<String> {
    nodes(&mut env.client())
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap().to_owned())
        .collect()
}

/// Starts a fresh spoke and waits until it holds every title of
/// `everything` and has converged with `others` (the hub among them).
fn fresh_spoke_holding(
    port: u16,
    everything: &BTreeSet<String>,
    others: &[&TestEnv],
) -> (TestEnv, Daemon) {
    let env = TestEnv::new();
    let daemon = env.start_spoke(port);
    wait_for_titles(&env, everything);
    let mut all = others.to_vec();
    all.push(&env);
    wait_converged(&all, None);
    (env, daemon)
}

/// Waits (a bounded poll) until `env` lists every title in `want`; names
/// the missing ones when they never come.
fn wait_for_titles(env: &TestEnv, want: &BTreeSet<String>) {
    let start = std::time::Instant::now();
    loop {
        let missing: Vec<String> = want.difference(&titles(env)).cloned().collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < CONVERGE,
            "after {CONVERGE:?}, {} of {} tasks never reached the replica: {missing:?}",
            missing.len(),
            want.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes tasks on `env` until the hub's log is longer than `cursor`, so a
/// spoke holding that cursor is below the new log's end.
fn grow_hub_log_past(hub_env: &TestEnv, env: &TestEnv, cursor: u64, prefix: &str) {
    let mut i = 0;
    while try_ops(hub_env).unwrap_or(0) <= cursor + 3 {
        let before = try_ops(hub_env).unwrap_or(0);
        create_tasks(env, &format!("{prefix} {i}"), 1);
        wait_until("the new task to reach the hub", CONVERGE, || {
            try_ops(hub_env).is_some_and(|n| n > before)
        });
        i += 1;
        assert!(i < 500, "the hub's log does not grow");
    }
}

/// The spoke's report of the hub's log change, once its re-push is done.
fn wait_for_log_change_report(env: &TestEnv) -> Value {
    let mut st = Value::Null;
    wait_until("the spoke to report the hub's log change", CONVERGE, || {
        st = sync_status(env);
        st["hub_log_change"]["done"] == true
    });
    st["hub_log_change"].clone()
}

/// (a) The documented backup, made while the hub ran; both spokes wrote
/// more after it. A was off while the hub was restored and B wrote on, so
/// the new log grew past A's cursor: A must still notice, and its tasks
/// (also held by B) must reach the hub and a fresh spoke.
#[test]
fn a_hub_restored_from_a_backup_made_while_it_ran_gets_back_every_op() {
    let hub_env = TestEnv::new();
    let (mut hub, port) = hub_env.start_hub(None);
    let (a_env, b_env) = (TestEnv::new(), TestEnv::new());
    let mut a = a_env.start_spoke(port);
    let b = b_env.start_spoke(port);
    create_tasks(&a_env, "before the backup, on A", 3);
    create_tasks(&b_env, "before the backup, on B", 2);
    wait_converged(&[&hub_env, &a_env, &b_env], None);
    let copy = hub_env.path().join("hub-backup.db");
    backup_while_running(&hub_env.db, &copy);

    create_tasks(&a_env, "after the backup, on A", 5);
    create_tasks(&b_env, "after the backup, on B", 3);
    wait_converged(&[&hub_env, &a_env, &b_env], None);
    let cursor = sync_status(&a_env)["hub_seq"].as_u64().unwrap();
    assert!(a.stop().success());
    assert!(hub.stop().success());
    restore_database(&hub_env.db, &copy);
    let (hub, _) = hub_env.start_hub(Some(port));
    grow_hub_log_past(&hub_env, &b_env, cursor, "after the restore, on B");

    let a = a_env.start_spoke(port);
    let everything = titles(&b_env);
    let (c_env, c) = fresh_spoke_holding(port, &everything, &[&hub_env, &a_env, &b_env]);
    let change = wait_for_log_change_report(&a_env);
    assert!(change["ops"].as_u64().unwrap() >= cursor, "{change}");
    assert!(a.log_text().contains("the hub's log changed"));
    let total = titles(&hub_env);
    assert_eq!(total, everything);
    assert_same_stores(
        &mut [hub, a, b, c],
        &[&hub_env, &a_env, &b_env, &c_env],
        None,
    );
}

/// (b) The hub's database is deleted: a new, empty one. R's tasks live only
/// on A and B (R is retired), yet they return to the hub.
#[test]
fn a_deleted_hub_database_gets_back_every_op_any_spoke_holds() {
    let hub_env = TestEnv::new();
    let (mut hub, port) = hub_env.start_hub(None);
    let (a_env, b_env, r_env) = (TestEnv::new(), TestEnv::new(), TestEnv::new());
    let a = a_env.start_spoke(port);
    let b = b_env.start_spoke(port);
    let mut r = r_env.start_spoke(port);
    create_tasks(&a_env, "on A", 2);
    create_tasks(&b_env, "on B", 2);
    create_tasks(&r_env, "on R, retired since", 4);
    wait_converged(&[&hub_env, &a_env, &b_env, &r_env], None);
    let everything = titles(&a_env);
    assert!(r.stop().success());

    // The spokes' long polls are waiting when the hub stops.
    assert!(hub.stop().success());
    delete_database(&hub_env.db);
    let (hub, _) = hub_env.start_hub(Some(port));
    create_tasks(&a_env, "after the reset, on A", 1);

    let mut everything = everything;
    everything.insert("after the reset, on A 0".into());
    let (c_env, c) = fresh_spoke_holding(port, &everything, &[&hub_env, &a_env, &b_env]);
    for env in [&a_env, &b_env] {
        let change = wait_for_log_change_report(env);
        assert!(change["ops"].as_u64().unwrap() > 0, "{change}");
    }
    assert_eq!(titles(&hub_env), everything);
    assert_same_stores(
        &mut [hub, a, b, c],
        &[&hub_env, &a_env, &b_env, &c_env],
        None,
    );
}

/// (c) B is offline across the reset (a new database) and wrote while
/// offline; A writes on until the new log is longer than B's cursor. B
/// must not skip the new log's first seqs: it notices the new log, pulls
/// it all and re-sends what it holds.
#[test]
fn a_spoke_offline_across_a_reset_notices_although_the_new_log_passed_its_cursor() {
    let hub_env = TestEnv::new();
    let (mut hub, port) = hub_env.start_hub(None);
    let (a_env, b_env) = (TestEnv::new(), TestEnv::new());
    let a = a_env.start_spoke(port);
    let mut b = b_env.start_spoke(port);
    create_tasks(&a_env, "on A", 2);
    create_tasks(&b_env, "on B", 6);
    wait_converged(&[&hub_env, &a_env, &b_env], None);
    let cursor = sync_status(&b_env)["hub_seq"].as_u64().unwrap();
    assert!(b.stop().success());

    assert!(hub.stop().success());
    delete_database(&hub_env.db);
    let (hub, _) = hub_env.start_hub(Some(port));
    // B, offline, writes too.
    let mut offline = b_env.start_daemon();
    create_tasks(&b_env, "offline, on B", 2);
    assert!(offline.stop().success());
    grow_hub_log_past(&hub_env, &a_env, cursor, "after the reset, on A");

    let b = b_env.start_spoke(port);
    let mut everything = titles(&a_env);
    everything.extend(titles(&b_env));
    let (c_env, c) = fresh_spoke_holding(port, &everything, &[&hub_env, &a_env, &b_env]);
    let change = wait_for_log_change_report(&b_env);
    assert!(change["ops"].as_u64().unwrap() >= cursor, "{change}");
    assert_eq!(titles(&hub_env), everything);
    assert_same_stores(
        &mut [hub, a, b, c],
        &[&hub_env, &a_env, &b_env, &c_env],
        None,
    );
}

/// (d) R wrote after the backup and was retired; its tasks live only on A
/// and B. After the restore they reach the hub and a fresh spoke again.
#[test]
fn a_retired_spokes_ops_return_to_a_hub_restored_from_a_backup() {
    let hub_env = TestEnv::new();
    let (mut hub, port) = hub_env.start_hub(None);
    let (a_env, b_env, r_env) = (TestEnv::new(), TestEnv::new(), TestEnv::new());
    let a = a_env.start_spoke(port);
    let b = b_env.start_spoke(port);
    let mut r = r_env.start_spoke(port);
    create_tasks(&a_env, "before the backup, on A", 2);
    wait_converged(&[&hub_env, &a_env, &b_env, &r_env], None);
    let copy = hub_env.path().join("hub-backup.db");
    backup_while_running(&hub_env.db, &copy);
    create_tasks(&r_env, "after the backup, on R", 5);
    create_tasks(&b_env, "after the backup, on B", 1);
    wait_converged(&[&hub_env, &a_env, &b_env, &r_env], None);
    let everything = titles(&a_env);
    assert!(r.stop().success());

    assert!(hub.stop().success());
    restore_database(&hub_env.db, &copy);
    let (hub, _) = hub_env.start_hub(Some(port));

    let (c_env, c) = fresh_spoke_holding(port, &everything, &[&hub_env, &a_env, &b_env]);
    assert_eq!(titles(&hub_env), everything);
    assert_same_stores(
        &mut [hub, a, b, c],
        &[&hub_env, &a_env, &b_env, &c_env],
        None,
    );
}

/// kill -9 of a spoke in the middle of its re-push after the hub's database
/// was replaced: the restarted spoke finishes the re-push (the pending
/// state is in its database) and reports it once done.
#[test]
fn kill_9_mid_re_push_after_a_reset_finishes_after_the_restart() {
    const N: usize = 40_000;
    let a_env = TestEnv::new();
    seed_ops(&a_env.db, N, 0xe5);
    let hub_env = TestEnv::new();
    let (mut hub, port) = hub_env.start_hub(None);
    let a = a_env.start_spoke(port);
    wait_converged(&[&hub_env, &a_env], Some(N as u64));
    assert!(hub.stop().success());
    delete_database(&hub_env.db);
    let (hub, _) = hub_env.start_hub(Some(port));
    let mut a = a;
    wait_until("the re-push to start", CONVERGE, || {
        try_ops(&hub_env).is_some_and(|n| n > 0)
    });
    a.kill9();
    let partial = try_ops(&hub_env).unwrap();
    let a = a_env.start_spoke(port);
    wait_converged(&[&hub_env, &a_env], Some(N as u64));
    let change = wait_for_log_change_report(&a_env);
    assert_eq!(change["ops"], N as u64, "{change}");
    assert!(partial <= N as u64);
    assert_eq!(sync_status(&a_env)["pending_ops"], 0);
    assert_same_stores(&mut [a, hub], &[&hub_env, &a_env], Some(N));
}

/// The titles of a daemon's nodes that start with `prefix`.
fn titles_with(env: &TestEnv, prefix: &str) -> BTreeSet<String> {
    nodes(&mut env.client())
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["title"].as_str())
        .filter(|t| t.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Issue 13, scenario 2: a device's data directory copied to a second
/// device (a restored backup, a cloned VM). Before the fix both stamped with
/// the replica id stored in the database, their HLCs collided, and the hub
/// took the colliding ops for duplicates: ~25% of each device's acknowledged
/// creates never reached it, with no error anywhere.
#[test]
fn a_copied_data_directory_loses_no_write() {
    const N: usize = 300;
    const EARLIER: usize = 5;
    let hub_env = TestEnv::new();
    let (_hub, port) = hub_env.start_hub(None);
    let a_env = TestEnv::new();
    let mut a = a_env.start_spoke(port);
    for i in 0..EARLIER {
        a_env.client().ok(
            "node.create",
            json!({"title": format!("before the copy {i}")}),
        );
    }
    wait_converged(&[&hub_env, &a_env], Some(3 * EARLIER as u64));
    assert!(a.stop().success(), "{}", a.log_text());
    let b_env = TestEnv::new();
    copy_dir(&a_env.path().join("data"), &b_env.path().join("data"));
    let _a = a_env.start_spoke(port);
    let _b = b_env.start_spoke(port);
    std::thread::scope(|s| {
        for (env, name) in [(&a_env, "a"), (&b_env, "b")] {
            s.spawn(move || {
                let mut c = env.client();
                for i in 0..N {
                    c.ok("node.create", json!({"title": format!("copy {name} {i}")}));
                }
            });
        }
    });
    // Both copies say everything they hold reached the hub.
    wait_until("both copies to push everything", CONVERGE, || {
        [&a_env, &b_env]
            .iter()
            .all(|env| sync_status(env)["pending_ops"] == 0)
    });
    let on_hub = (
        titles_with(&hub_env, "copy a ").len(),
        titles_with(&hub_env, "copy b ").len(),
    );
    assert_eq!(
        on_hub,
        (N, N),
        "the hub holds {} of copy a's and {} of copy b's {N} acknowledged creates",
        on_hub.0,
        on_hub.1
    );
    // A fresh device gets every node, and so does each copy.
    let c_env = TestEnv::new();
    let _c = c_env.start_spoke(port);
    let total = 3 * (EARLIER + 2 * N) as u64;
    wait_converged(&[&hub_env, &a_env, &b_env, &c_env], Some(total));
    assert_eq!(titles_with(&c_env, "copy ").len(), 2 * N);
    assert_eq!(titles_with(&c_env, "before the copy ").len(), EARLIER);
    // Each run stamps with an id of its own.
    let id = |env: &TestEnv| env.client().ok("daemon.info", json!({}))["replica_id"].clone();
    assert_ne!(id(&a_env), id(&b_env));
}

/// The ops of the node titled `title` in the (stopped) daemon's database.
fn ops_of(env: &TestEnv, title: &str) -> Vec<Op> {
    let store = SqliteStore::open(&env.db, &OpenOptions::default()).unwrap();
    let all = store.ops_after(0, usize::MAX).unwrap();
    let node = all
        .iter()
        .find(|l| l.op.field == "title" && l.op.value == json!(title))
        .map(|l| l.op.node)
        .unwrap();
    all.into_iter()
        .map(|l| l.op)
        .filter(|op| op.node == node)
        .collect()
}

/// `ops` as another writer with the same replica id would have made them:
/// the same HLCs, another node, another title.
fn colliding(ops: &[Op], title: &str) -> Vec<Op> {
    let node = NodeId::parse(&uuid_like(title)).unwrap();
    ops.iter()
        .map(|op| Op {
            node,
            value: if op.field == "title" {
                json!(title)
            } else {
                op.value.clone()
            },
            ..op.clone()
        })
        .collect()
}

/// A node id made from a title (deterministic, version 4 shaped).
fn uuid_like(title: &str) -> String {
    let mut b = [0u8; 16];
    for (i, byte) in title.bytes().enumerate() {
        b[i % 16] ^= byte;
    }
    NodeId::from_random_bytes(b).as_str().to_owned()
}

fn push(port: u16, ops: &[Op]) -> (u16, Value) {
    let body = serde_json::to_vec(&json!({ "ops": ops })).unwrap();
    http(
        port,
        "POST",
        "/sync/push",
        &[("Content-Type", "application/json")],
        &body,
    )
    .unwrap()
}

fn hub_ops(env: &TestEnv) -> u64 {
    ops(&mut env.client())
}

/// The hub refuses an op whose HLC it has logged with different content
/// (409 `hlc_collision` naming the HLC, nothing written) while the same op
/// again is a cheap duplicate; a spoke whose unpushed ops collide repairs
/// them by re-stamping, whether it meets the collision on pull or on push,
/// and nothing is lost.
#[test]
fn the_hub_refuses_a_colliding_hlc_and_the_spoke_re_stamps_its_ops() {
    let hub_env = TestEnv::new();
    let (_hub, port) = hub_env.start_hub(None);
    let a_env = TestEnv::new();
    let hub_url = format!("http://127.0.0.1:{port}");

    // Offline (no hub yet), the spoke makes a task; another writer that
    // shares its replica id made a different one under the same HLCs, and
    // that one reached the hub first.
    let mut a = a_env.start_daemon();
    a_env.client().ok("node.create", json!({"title": "mine"}));
    assert!(a.stop().success());
    let mine = ops_of(&a_env, "mine");
    assert_eq!(mine.len(), 3);
    let theirs = colliding(&mine, "theirs");
    let (status, reply) = push(port, &theirs);
    assert_eq!((status, push_counts(&reply)), (200, (3, 0)), "{reply}");

    // HTTP: the same ops again are duplicates; different content under one
    // of those HLCs is refused whole, naming the HLC.
    let (status, reply) = push(port, &theirs);
    assert_eq!((status, push_counts(&reply)), (200, (0, 3)), "{reply}");
    let fresh = Op {
        hlc: Hlc {
            wall_ms: mine[0].hlc.wall_ms - 1,
            ..mine[0].hlc
        },
        ..theirs[0].clone()
    };
    let (status, body) = push(port, &[fresh, mine[1].clone()]);
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "hlc_collision", "{body}");
    assert_eq!(body["hlc"], mine[1].hlc.to_string(), "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.starts_with("op 1 of the batch"), "{message}");
    assert!(
        message.contains(&mine[1].hlc.replica.to_string()),
        "{message}"
    );
    assert_eq!(hub_ops(&hub_env), 3, "a refused push wrote something");

    // On pull: the spoke meets the hub's ops under its own HLCs, moves its
    // ops to a fresh id in the same transaction, and pushes them.
    let mut a = a_env.start_spoke(port);
    wait_converged(&[&hub_env, &a_env], Some(6));
    for env in [&hub_env, &a_env] {
        assert_eq!(
            titles_with(env, ""),
            BTreeSet::from(["mine".to_owned(), "theirs".to_owned()])
        );
    }
    assert!(
        a.log_text().contains("were re-stamped and will be pushed"),
        "{}",
        a.log_text()
    );
    assert!(a.stop().success());

    // On push: the other writer's ops reach the hub after this spoke pulled
    // and before it pushes. A test cannot time that race, so the stopped
    // spoke's pull cursor is moved past them, which is exactly that moment.
    let mut a = a_env.start_daemon();
    a_env
        .client()
        .ok("node.create", json!({"title": "mine again"}));
    assert!(a.stop().success());
    let mine = ops_of(&a_env, "mine again");
    assert_eq!(push(port, &colliding(&mine, "theirs again")).0, 200);
    let hub_seq = hub_env.client().ok("daemon.info", json!({}))["last_seq"]
        .as_u64()
        .unwrap();
    {
        let mut store = SqliteStore::open(&a_env.db, &OpenOptions::default()).unwrap();
        let mut tx = store.begin().unwrap();
        heph_core::Transaction::set_meta(
            &mut tx,
            &format!("sync.pulled {hub_url}"),
            &hub_seq.to_string(),
        )
        .unwrap();
        heph_core::Transaction::commit(tx).unwrap();
    }
    let a = a_env.start_spoke(port);
    wait_until("the re-stamped ops on the hub", CONVERGE, || {
        titles_with(&hub_env, "mine again").len() == 1
    });
    assert_eq!(hub_ops(&hub_env), 12);
    assert_eq!(titles_with(&hub_env, "theirs again").len(), 1);
    let log = a.log_text();
    assert!(
        log.contains("re-stamped this replica's unpushed ops"),
        "{log}"
    );
    wait_until("a clean sync status", CONVERGE, || {
        let st = sync_status(&a_env);
        st["pending_ops"] == 0 && st["last_error"].is_null()
    });
}

/// Issue 13, scenario 5: a local edit or `sync.now` that cut a long poll
/// short dropped the `changed` events of the page it was applying (100 of
/// 1,500 missed, no `resync`), so heph-tui showed stale data. Every pulled
/// commit is now announced: each of A's nodes reaches B's subscriber as a
/// `changed` event, while B keeps editing and asking for syncs.
#[test]
fn pulled_changes_are_announced_even_when_a_local_edit_cuts_the_long_poll_short() {
    const N: usize = 800;
    let hub_env = TestEnv::new();
    let (_hub, port) = hub_env.start_hub(None);
    let (a_env, b_env) = (TestEnv::new(), TestEnv::new());
    let _a = a_env.start_spoke(port);
    let _b = b_env.start_spoke(port);
    let mut sub = b_env.client();
    assert_eq!(sub.ok("events.subscribe", json!({}))["subscribed"], true);

    let stop = std::sync::atomic::AtomicBool::new(false);
    let (mut a_ids, mut seen, mut resyncs) = (BTreeSet::new(), BTreeSet::new(), 0u64);
    std::thread::scope(|s| {
        // B interrupts its own long polls: local edits and sync.now, over and over.
        s.spawn(|| {
            let mut c = b_env.client();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                c.ok("node.create", json!({"title": format!("b local {i}")}));
                c.try_call("sync.now", json!({}));
                i += 1;
            }
        });
        let mut c = a_env.client();
        for i in 0..N {
            let id = c.ok("node.create", json!({"title": format!("a {i}")}))["id"]
                .as_str()
                .unwrap()
                .to_owned();
            a_ids.insert(id);
        }
        // Read B's events until every one of A's nodes was announced (bounded
        // by the subscriber's 30 s read timeout and the deadline).
        let deadline = std::time::Instant::now() + CONVERGE;
        while !a_ids.is_subset(&seen) && std::time::Instant::now() < deadline {
            let Some(ev) = sub.read() else { break };
            match ev["params"]["type"].as_str() {
                Some("changed") => seen.extend(
                    ev["params"]["nodes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|n| n.as_str().unwrap().to_owned()),
                ),
                // A subscriber that fell behind is told to resync: it
                // reloads everything, so nothing is stale. Enough said.
                Some("resync") => {
                    resyncs += 1;
                    break;
                }
                _ => {}
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let missed = a_ids.difference(&seen).count();
    assert!(
        missed == 0 || resyncs > 0,
        "{missed} of {N} pulled nodes were never announced, and no resync was sent"
    );
    // B really holds them (the events were not announced ahead of the data).
    let b_titles = titles_with(&b_env, "a ");
    assert_eq!(b_titles.len(), N);
}
