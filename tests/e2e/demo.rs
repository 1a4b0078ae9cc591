//! `heph demo`, the README's first command, as a newcomer runs it: the real
//! `heph` starts a real hub with its built-in issuer, two devices sign in
//! through the device flow, a task travels between them; then nothing is
//! left running and the demo's directory is gone. With `--keep`, the hub
//! and the daemons answer afterwards and the printed commands stop them.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::harness::{TestEnv, wait_until};

/// Runs `heph demo args…` with its temporary directory inside `env`.
fn demo(env: &TestEnv, args: &[&str]) -> (Output, String) {
    let o = env
        .command("heph")
        .arg("demo")
        .args(args)
        .env("TMPDIR", env.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    (o, text)
}

/// Whether `pid` still runs (a zombie waiting for its reaper does not count).
fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_none_or(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// The number after `before` on every line that has it.
fn numbers_after(text: &str, before: &str) -> Vec<i32> {
    text.lines()
        .filter_map(|l| l.split(before).nth(1))
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .collect()
}

/// The output of the transcript step whose command line is `command`.
fn step_output<'a>(text: &'a str, command: &str) -> &'a str {
    let start = text
        .find(&format!("\n{command}\n"))
        .unwrap_or_else(|| panic!("no step {command:?} in:\n{text}"))
        + command.len()
        + 2;
    let rest = &text[start..];
    &rest[..rest.find("\n\n").unwrap_or(rest.len())]
}

/// Directories the demo made in `env`.
fn demo_dirs(env: &TestEnv) -> Vec<PathBuf> {
    std::fs::read_dir(env.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("heph-demo-"))
        .map(|e| e.path())
        .collect()
}

/// Checks the journey every run of the demo shows.
fn assert_journey(text: &str) {
    for expected in [
        "hub$ hephd --mode server --builtin-issuer --listen 127.0.0.1:0",
        "hub$ hephd user add demo",
        "laptop$ heph daemon start",
        "phone$ heph daemon start",
        "laptop$ heph auth login --no-browser",
        "phone$ heph auth login --no-browser",
        "laptop$ heph add Buy milk +home due:tomorrow pri:high",
        "What ran: ",
        "To run it for real:",
        "heph auth login",
        "heph daemon install --now",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // Both devices were approved in the verification page as the demo account…
    assert_eq!(
        text.matches("→ 200 \"Approve this device?\", signed in as demo")
            .count(),
        2,
        "{text}"
    );
    assert_eq!(
        text.matches("→ 200 \"Device approved\"").count(),
        2,
        "{text}"
    );
    // …and both logins saved tokens for the account `hephd user add` made.
    let sub = text
        .split("added demo (subject ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no subject in:\n{text}"));
    assert_eq!(
        text.matches(&format!(" as demo ({sub}) (issuer http://127.0.0.1:"))
            .count(),
        2,
        "{text}"
    );
    assert_eq!(
        text.matches("the daemon reloaded them: signed in to http://127.0.0.1:")
            .count(),
        2,
        "{text}"
    );
    // The tasks added on the laptop are listed on the phone…
    let phone_list = step_output(text, "phone$ heph list");
    assert!(phone_list.contains("Buy milk +home"), "{phone_list}");
    assert!(
        phone_list.contains("Write the quarterly report +work"),
        "{phone_list}"
    );
    // …and the one finished on the phone is done on the laptop.
    let laptop_list = step_output(text, "laptop$ heph list --all");
    let milk = laptop_list
        .lines()
        .find(|l| l.contains("Buy milk"))
        .unwrap_or_else(|| panic!("{laptop_list}"));
    assert!(milk.split_whitespace().any(|w| w == "done"), "{milk}");
    let auth = step_output(text, "laptop$ heph auth status");
    assert!(auth.contains("state    valid"), "{auth}");
    assert!(auth.contains(&format!("subject  {sub}")), "{auth}");
    let sync = step_output(text, "laptop$ heph sync --status");
    assert!(sync.starts_with("in sync with http://127.0.0.1:"), "{sync}");
    assert!(
        sync.contains("pending      0 local ops not yet on the hub"),
        "{sync}"
    );
}

#[test]
fn the_quickstart_demo_runs_the_whole_journey_and_cleans_up() {
    let env = TestEnv::new();
    let (_, text) = demo(&env, &[]);
    assert_journey(&text);
    assert!(text.contains("phone$ heph daemon stop"), "{text}");
    assert!(text.contains("laptop$ heph daemon stop"), "{text}");
    assert!(text.contains("Everything was stopped and "), "{text}");
    let mut pids = numbers_after(&text, "started the heph daemon (pid ");
    assert_eq!(pids.len(), 2, "{text}");
    pids.extend(numbers_after(&text, "hub$ kill -TERM "));
    assert_eq!(pids.len(), 3, "{text}");
    for pid in pids {
        assert!(!alive(pid), "process {pid} of the demo is still running");
    }
    assert!(
        demo_dirs(&env).is_empty(),
        "the demo left its directory behind"
    );
}

/// Stops what a `--keep` demo left, even when an assertion failed first.
struct Leftovers(Vec<i32>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for pid in &self.0 {
            // SAFETY: kill(2) on a process this test's demo started.
            unsafe { libc::kill(*pid, libc::SIGTERM) };
        }
    }
}

#[test]
fn the_quickstart_demo_with_keep_leaves_a_working_hub_and_says_how_to_stop_it() {
    let env = TestEnv::new();
    let (_, text) = demo(&env, &["--keep"]);
    let mut pids = numbers_after(&text, "started the heph daemon (pid ");
    pids.extend(numbers_after(&text, "  kill "));
    let _leftovers = Leftovers(pids.clone());
    assert_eq!(pids.len(), 3, "{text}");
    assert_journey(&text);
    assert!(text.contains("Still running (--keep)"), "{text}");
    assert!(
        text.contains("The demo account is demo, password "),
        "{text}"
    );
    let dirs = demo_dirs(&env);
    assert_eq!(dirs.len(), 1, "{text}");
    let dir = &dirs[0];
    assert!(text.contains(&format!("  D={}\n", dir.display())), "{text}");
    for pid in &pids {
        assert!(alive(*pid), "process {pid} stopped despite --keep");
    }
    // The devices still answer and still sync: the printed exports work.
    let socket = |name: &str| dir.join(name).join("run/heph/hephd.sock");
    let heph = |name: &str, args: &[&str]| {
        let o = env
            .command("heph")
            .env("HEPH_SOCKET", socket(name))
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(text.contains("export HOME=\"$D/laptop/home\""), "{text}");
    heph("phone", &["add", "Call the plumber"]);
    wait_until(
        "the phone's task on the laptop",
        Duration::from_secs(20),
        || heph("laptop", &["list"]).contains("Call the plumber"),
    );
    // The printed commands stop everything.
    for name in ["laptop", "phone"] {
        assert!(
            text.contains(&format!("HEPH_SOCKET=\"$D/{name}/run/heph/hephd.sock\"")),
            "{text}"
        );
        assert!(heph(name, &["daemon", "stop"]).contains("stopped the heph daemon"));
    }
    let hub = pids[2];
    // SAFETY: the hub this test's demo started, as the printed `kill` does.
    unsafe { libc::kill(hub, libc::SIGTERM) };
    wait_until(
        "the demo's processes to stop",
        Duration::from_secs(20),
        || pids.iter().all(|p| !alive(*p)),
    );
    assert!(Path::new(dir).exists());
}
