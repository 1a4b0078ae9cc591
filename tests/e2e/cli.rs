//! The real `heph` binary against a real `hephd`: everyday flows, errors
//! (wording pinned with snapshots), exit codes, `--json`, pipes, concurrent
//! writers, and `heph daemon …` managing a real background daemon.

use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{TestEnv, wait_until};

/// Runs `heph args…` in `env`.
fn heph(env: &TestEnv, args: &[&str]) -> Output {
    env.command("heph").args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stderr with the temp dir replaced, so snapshots are stable.
fn stderr(env: &TestEnv, o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).replace(&env.path().display().to_string(), "[TMP]")
}

fn json_out(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "heph failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not pure JSON ({e}): {}", stdout(o)))
}

#[test]
fn every_command_says_when_the_daemon_is_not_running() {
    let env = TestEnv::new();
    for args in [
        &["list"][..],
        &["add", "x"],
        &["show", "abc"],
        &["done", "abc"],
        &["tags"],
        &["daemon", "status"],
        &["--json", "list"],
    ] {
        let o = heph(&env, args);
        assert_eq!(o.status.code(), Some(3), "{args:?}");
        assert!(o.stdout.is_empty(), "{args:?} wrote to stdout");
        insta::assert_snapshot!("not_running", stderr(&env, &o));
    }
}

#[test]
fn everyday_flow_through_a_background_daemon() {
    let env = TestEnv::new();
    let o = heph(&env, &["daemon", "start"]);
    assert!(o.status.success(), "{}", stderr(&env, &o));
    assert!(
        stdout(&o).starts_with("started the heph daemon (pid "),
        "{}",
        stdout(&o)
    );
    // Starting again is not an error.
    let again = heph(&env, &["daemon", "start"]);
    assert!(again.status.success());

    let added = json_out(&heph(
        &env,
        &[
            "--json",
            "add",
            "Buy",
            "milk",
            "+home",
            "due:2026-12-01",
            "pri:high",
        ],
    ));
    assert_eq!(added["title"], "Buy milk");
    assert_eq!(added["tags"], json!(["home"]));
    assert_eq!(
        (added["due"].as_str(), added["priority"].as_str()),
        (Some("2026-12-01"), Some("high"))
    );
    let id = added["id"].as_str().unwrap().to_owned();
    let report = json_out(&heph(
        &env,
        &[
            "--json",
            "add",
            "Write report",
            "--due",
            "2026-11-30",
            "-t",
            "work",
        ],
    ));
    let rid = report["id"].as_str().unwrap().to_owned();
    let note = json_out(&heph(
        &env,
        &[
            "--json",
            "note",
            "Recipes",
            "--body",
            "Pancakes: flour, milk",
        ],
    ));
    assert_eq!(
        (note["kind"].as_str(), note["status"].clone()),
        (Some("note"), Value::Null)
    );

    // Human list: open tasks, the earlier due date first.
    let list = stdout(&heph(&env, &["list"]));
    let report_at = list.find("Write report").unwrap();
    let milk_at = list.find("Buy milk").unwrap();
    assert!(report_at < milk_at, "{list}");
    assert!(
        !list.contains("Recipes"),
        "notes are not open tasks: {list}"
    );
    assert!(stdout(&heph(&env, &["list", "--all"])).contains("Recipes"));

    // Prefix ids everywhere.
    let show = stdout(&heph(&env, &["show", &id[..8]]));
    assert!(
        show.contains("Buy milk") && show.contains("+home") && show.contains(&id),
        "{show}"
    );
    let edited = json_out(&heph(
        &env,
        &[
            "--json",
            "edit",
            &id[..8],
            "--title",
            "Buy oat milk",
            "--no-due",
        ],
    ));
    assert_eq!(
        (edited["title"].as_str(), edited["due"].clone()),
        (Some("Buy oat milk"), Value::Null)
    );
    json_out(&heph(&env, &["--json", "tag", &id[..8], "errand"]));
    let untagged = json_out(&heph(
        &env,
        &["--json", "tag", &id[..8], "home", "--remove"],
    ));
    assert_eq!(untagged["tags"], json!(["errand"]));
    let linked = json_out(&heph(
        &env,
        &["--json", "link", &id[..8], "blocks", &rid[..8]],
    ));
    assert_eq!(linked["links"], json!([{"rel": "blocks", "target": rid}]));
    let by_tag = json_out(&heph(&env, &["--json", "list", "--tag", "errand"]));
    assert_eq!(by_tag["nodes"].as_array().unwrap().len(), 1);

    let done = heph(&env, &["done", &id[..8]]);
    assert!(done.status.success());
    assert!(!stdout(&heph(&env, &["list"])).contains("oat milk"));
    let rm = heph(&env, &["rm", &rid[..8]]);
    assert!(rm.status.success());
    assert!(!stdout(&heph(&env, &["list", "--all"])).contains("Write report"));

    let status = json_out(&heph(&env, &["--json", "daemon", "status"]));
    assert_eq!(status["mode"], "local");
    let stop = heph(&env, &["daemon", "stop"]);
    assert!(stop.status.success(), "{}", stderr(&env, &stop));
    assert_eq!(heph(&env, &["daemon", "status"]).status.code(), Some(3));
    assert!(!env.socket.exists());

    // The data outlives the daemon.
    assert!(heph(&env, &["daemon", "start"]).status.success());
    let all = json_out(&heph(&env, &["--json", "list", "--all"]));
    assert!(
        all["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["title"] == "Buy oat milk")
    );
    let logs = stdout(&heph(&env, &["daemon", "logs", "-n", "50"]));
    assert!(logs.contains("hephd ready"), "{logs}");
    assert!(heph(&env, &["daemon", "stop"]).status.success());
}

#[test]
fn error_messages_are_one_sentence_with_a_hint() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let mut c = env.client();
    let (ids, digit) = c.nodes_sharing_a_prefix("task");

    let o = heph(&env, &["show", &digit]);
    assert_eq!(o.status.code(), Some(1));
    let text = stderr(&env, &o);
    assert!(
        text.starts_with(&format!(
            "error: the id \"{digit}\" is ambiguous: it starts "
        )),
        "{text}"
    );
    assert!(
        text.trim_end().ends_with("hint: type more of the id"),
        "{text}"
    );
    let candidates = text
        .lines()
        .filter(|l| l.trim_start().starts_with(&digit) && l.contains("task "))
        .count();
    assert!(candidates >= 2, "the candidates are listed: {text}");

    let o = heph(&env, &["show", "zzzz"]);
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!("unknown_id", stderr(&env, &o));

    let o = heph(&env, &["add", "x", "--due", "someday"]);
    assert_eq!(o.status.code(), Some(2));
    insta::assert_snapshot!("bad_date", stderr(&env, &o));

    let o = heph(&env, &["edit", &ids[0]]);
    assert_eq!(o.status.code(), Some(2));
    insta::assert_snapshot!("edit_without_change", stderr(&env, &o));

    let o = heph(&env, &["tag", &ids[0], "two words"]);
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!("invalid_tag", stderr(&env, &o));

    let o = heph(&env, &["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn two_cli_writers_at_once() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    std::thread::scope(|s| {
        for w in 0..2 {
            let env = &env;
            s.spawn(move || {
                for i in 0..25 {
                    let o = heph(env, &["add", &format!("writer {w} task {i}")]);
                    assert!(o.status.success(), "{}", stderr(env, &o));
                }
            });
        }
    });
    let all = json_out(&heph(&env, &["--json", "list", "--all"]));
    assert_eq!(all["nodes"].as_array().unwrap().len(), 50);
}

#[test]
fn a_closed_stdout_pipe_is_not_an_error() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let mut c = env.client();
    for i in 0..2000 {
        c.ok(
            "node.create",
            json!({"title": format!("a fairly long task title to fill the pipe {i}")}),
        );
    }
    let mut child = env
        .command("heph")
        .arg("list")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is gone now, like `heph list | head -1`.
    let out = child.wait_with_output().unwrap();
    assert!(first.starts_with("ID"), "{first}");
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn daemon_start_replaces_a_stale_socket_after_kill_9() {
    let env = TestEnv::new();
    let mut d = env.start_daemon();
    let mut c = env.client();
    let id = c.ok("node.create", json!({"title": "survives"}))["id"].clone();
    drop(c);
    d.kill9();
    assert!(env.socket.exists());
    assert_eq!(
        heph(&env, &["list"]).status.code(),
        Some(3),
        "a stale socket is 'not running'"
    );
    let o = heph(&env, &["daemon", "start"]);
    assert!(o.status.success(), "{}", stderr(&env, &o));
    let node = json_out(&heph(&env, &["--json", "show", id.as_str().unwrap()]));
    assert_eq!(node["title"], "survives");
    assert!(heph(&env, &["daemon", "stop"]).status.success());
    wait_until("the socket to go", Duration::from_secs(10), || {
        !env.socket.exists()
    });
}

#[test]
fn daemon_install_bakes_the_settings_into_a_unit() {
    let env = TestEnv::new();
    let db = env.path().join("custom place/heph.db");
    let o = env
        .command("heph")
        .arg("--db")
        .arg(&db)
        .args(["daemon", "install"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&env, &o));
    let unit_path = env.path().join("config/systemd/user/hephd.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    let hephd = crate::harness::bin("hephd");
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(exec.contains(&hephd.display().to_string()), "{exec}");
    assert!(
        exec.contains("\"--db\" \"") || exec.contains("--db \""),
        "the db path with a space is quoted: {exec}"
    );
    assert!(exec.contains("custom place/heph.db"), "{exec}");
    assert!(exec.contains("--socket"), "{exec}");
    assert!(unit.contains("Restart=on-failure"));
    assert!(unit.contains("WantedBy=default.target"));
    let o = heph(&env, &["daemon", "uninstall"]);
    assert!(o.status.success(), "{}", stderr(&env, &o));
    assert!(!unit_path.exists());
}

#[test]
fn heph_sync_reports_success_and_the_real_cause_of_failure() {
    let hub_env = TestEnv::new();
    let (mut hub, port) = hub_env.start_hub(None);
    let env = TestEnv::new();
    let _spoke = env.start_spoke(port);
    json_out(&heph(&env, &["--json", "add", "synced task"]));

    let o = heph(&env, &["sync"]);
    assert!(o.status.success(), "{}", stderr(&env, &o));
    let text = stdout(&o);
    assert!(
        text.starts_with(&format!("synced with http://127.0.0.1:{port}")),
        "{text}"
    );
    assert!(text.contains("0 local ops still to send"), "{text}");
    let status = heph(&env, &["sync", "--status"]);
    assert!(status.status.success(), "{}", stderr(&env, &status));
    assert!(
        stdout(&status).contains("last success"),
        "{}",
        stdout(&status)
    );
    let json = json_out(&heph(&env, &["--json", "sync", "--status"]));
    assert_eq!(json["configured"], true);
    assert_eq!(json["pending_ops"], 0);

    // The hub goes away: sync says so, naming the hub, and --status exits 1.
    assert!(hub.stop().success());
    let o = heph(&env, &["sync"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&env, &o);
    assert!(
        err.starts_with("error: ") && err.contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    let o = heph(&env, &["sync", "--status"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("last error"), "{}", stdout(&o));
}

#[test]
fn heph_sync_without_a_hub_says_so() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let o = heph(&env, &["sync"]);
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!("sync_without_hub", stderr(&env, &o));
    let o = heph(&env, &["sync", "--status"]);
    assert!(o.status.success());
    assert!(
        stdout(&o).starts_with("no hub is configured"),
        "{}",
        stdout(&o)
    );
}

/// Issue 13: `heph done` / `heph edit` on a deleted node printed "updated"
/// and exited 0 while the change stayed invisible. Now they refuse, name
/// the node and the way back, and `heph restore` brings it back whole.
#[test]
fn changing_a_deleted_node_says_so_and_restore_brings_it_back() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let added = json_out(&heph(
        &env,
        &["--json", "add", "Renew", "passport", "+admin"],
    ));
    let id = added["id"].as_str().unwrap().to_owned();
    assert!(heph(&env, &["rm", &id[..8]]).status.success());

    for args in [
        vec!["done", &id[..8]],
        vec!["edit", &id[..8], "--title", "Renew visa"],
        vec!["tag", &id[..8], "urgent"],
    ] {
        let o = heph(&env, &args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stdout(&o));
        assert_eq!(
            stderr(&env, &o),
            format!(
                "error: \"Renew passport\" ({id}) is deleted, so it was not changed\nhint: heph restore {id}\n"
            ),
            "{args:?}"
        );
    }
    // Nothing of the refused changes was written.
    let shown = json_out(&heph(&env, &["--json", "list", "--deleted"]));
    let node = &shown["nodes"][0];
    assert_eq!(
        (
            node["title"].clone(),
            node["status"].clone(),
            node["deleted"].clone()
        ),
        (json!("Renew passport"), json!("todo"), json!(true)),
        "{node}"
    );

    let restored = heph(&env, &["restore", &id[..8]]);
    assert!(restored.status.success(), "{}", stderr(&env, &restored));
    assert!(
        stdout(&restored).starts_with("restored"),
        "{}",
        stdout(&restored)
    );
    let listed = json_out(&heph(&env, &["--json", "list"]));
    assert_eq!(listed["nodes"][0]["tags"], json!(["admin"]));
    assert!(heph(&env, &["done", &id[..8]]).status.success());
}
