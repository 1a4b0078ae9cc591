//! `heph-tui` as a person meets it: the real binary in a real terminal
//! (a detached `tmux` session of fixed size on a private tmux server)
//! against a real `hephd`. The screen is read with `capture-pane` and keys
//! are typed with `send-keys`; every wait is a bounded poll.
//!
//! Needs `tmux` (Debian: `apt-get install -y tmux`); without it the test
//! fails and says so, it never skips.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::harness::{TestEnv, wait_until};

const WAIT: Duration = Duration::from_secs(20);

/// A private tmux server with one 100×30 session running a program
/// (`heph-tui`, or any command that needs a real terminal).
pub(crate) struct Tmux {
    server: String,
    dir: PathBuf,
}

impl Tmux {
    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.server)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run tmux ({e}); install it with: apt-get install -y tmux")
            })
    }

    /// Starts `heph-tui` in `env`'s home, with stderr kept in a file.
    fn start(env: &TestEnv) -> Self {
        let tui = crate::harness::bin("heph-tui");
        assert!(
            tui.exists(),
            "{} is not built; run the suite with `cargo test --workspace`",
            tui.display()
        );
        let stderr = env.path().join("heph-tui.stderr");
        let status = env.path().join("heph-tui.status");
        // The shell waits for heph-tui and writes its exit status to a file:
        // tmux's own pane_dead_status is not always filled in (tmux may see
        // the pty close and never report the status it reaped).
        Self::run(
            env,
            &format!(
                "'{}' 2>'{}'; echo $? >'{}'",
                tui.display(),
                stderr.display(),
                status.display()
            ),
        )
    }

    /// Runs the shell command `shell` in a terminal, in `env`'s home.
    pub(crate) fn run(env: &TestEnv, shell: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let server = format!(
            "heph-tui-e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = env.path().to_path_buf();
        let conf = dir.join("tmux.conf");
        // The pane stays after the program exits, so its exit status and
        // terminal state can be read; no status bar takes a row.
        std::fs::write(&conf, "set -g remain-on-exit on\nset -g status off\n").unwrap();
        let mut cmd = Command::new("tmux");
        for (k, _) in std::env::vars() {
            if k.starts_with("HEPH_") || k.starts_with("XDG_") || k.starts_with("TMUX") {
                cmd.env_remove(k);
            }
        }
        let out = cmd
            .envs(env.vars())
            .env("TERM", "xterm-256color")
            .args(["-L", &server, "-f"])
            .arg(&conf)
            .args([
                "new-session",
                "-d",
                "-s",
                "tui",
                "-x",
                "100",
                "-y",
                "30",
                shell,
            ])
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run tmux ({e}); install it with: apt-get install -y tmux")
            });
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { server, dir }
    }

    pub(crate) fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "tui"]).stdout)
            .into_owned()
    }

    /// A tmux format variable of the pane, e.g. `pane_dead`.
    pub(crate) fn pane(&self, var: &str) -> String {
        let format = format!("#{{{var}}}");
        let out = self.tmux(&["display-message", "-p", "-t", "tui", &format]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub(crate) fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "tui"];
        args.extend(keys);
        assert!(
            self.tmux(&args).status.success(),
            "send-keys {keys:?} failed"
        );
    }

    /// Polls the screen until `pred` holds; on timeout shows the last screen.
    pub(crate) fn wait_for(&self, what: &str, mut pred: impl FnMut(&str) -> bool) -> String {
        let last = RefCell::new(String::new());
        let result = catch_unwind(AssertUnwindSafe(|| {
            wait_until(what, WAIT, || {
                let s = self.screen();
                let ok = pred(&s);
                *last.borrow_mut() = s;
                ok
            })
        }));
        if let Err(panic) = result {
            eprintln!(
                "the screen when giving up on {what}:\n{}\nheph-tui's stderr:\n{}",
                last.borrow(),
                std::fs::read_to_string(self.dir.join("heph-tui.stderr")).unwrap_or_default()
            );
            resume_unwind(panic);
        }
        last.into_inner()
    }

    pub(crate) fn wait_for_text(&self, text: &str) -> String {
        self.wait_for(&format!("{text:?} on screen"), |s| s.contains(text))
    }
}

/// The pid of a child process of `parent` (from /proc).
fn child_of(parent: i32) -> Option<i32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // pid (comm) state ppid …; comm may hold spaces, so split after ')'.
            let ppid: i32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == parent).then_some(pid)
        })
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

#[test]
fn heph_tui_shows_changes_live_and_survives_a_daemon_restart() {
    let env = TestEnv::new();
    let mut daemon = env.start_daemon();
    let tui = Tmux::start(&env);
    let first = tui.wait_for_text("○ local only");
    assert!(first.contains("Nothing on the agenda."), "{first}");
    assert_eq!(
        tui.pane("alternate_on"),
        "1",
        "heph-tui draws on the alternate screen"
    );

    // A task added with the CLI appears without a key press.
    let out = env
        .command("heph")
        .args(["add", "Buy oat milk", "+home", "due:today", "pri:high"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "heph add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let screen = tui.wait_for_text("Buy oat milk");
    let row = screen
        .lines()
        .find(|l| l.contains("[ ]") && l.contains("Buy oat milk"))
        .unwrap();
    assert!(
        row.contains("!!!") && row.contains("+home") && row.contains("today"),
        "{row}"
    );
    assert!(screen.contains("Today 1"), "{screen}");

    // Quick add from the TUI reaches the daemon.
    tui.keys(&["a"]);
    tui.wait_for_text("add task ›");
    tui.keys(&["-l", "Water the plants +garden due:tomorrow"]);
    tui.keys(&["Enter"]);
    tui.wait_for_text("Water the plants");
    let mut client = env.client();
    let nodes = client.ok("node.list", json!({"tag": "garden"}))["nodes"].clone();
    assert_eq!(nodes[0]["title"], "Water the plants", "{nodes}");

    // The daemon stops: the chip says so and how to fix it; the agenda stays.
    drop(client);
    daemon.stop();
    let down = tui.wait_for_text("✕ daemon not running · heph daemon start");
    assert!(down.contains("Buy oat milk"), "{down}");

    // It comes back: heph-tui reconnects by itself and sees later changes.
    let _daemon = env.start_daemon();
    tui.wait_for("the local-only chip instead of the daemon chip", |s| {
        s.contains("○ local only") && !s.contains("daemon not running")
    });
    let out = env
        .command("heph")
        .args(["add", "Call the plumber"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tui.wait_for_text("Call the plumber");

    // SIGTERM ends it cleanly and leaves the terminal as it found it.
    let shell: i32 = tui.pane("pane_pid").parse().unwrap();
    let pid = child_of(shell).expect("heph-tui runs under the pane's shell");
    // SAFETY: kill(2) on heph-tui, which this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status_file = env.path().join("heph-tui.status");
    let mut status = String::new();
    wait_until("heph-tui to exit on SIGTERM", WAIT, || {
        status = std::fs::read_to_string(&status_file).unwrap_or_default();
        status.ends_with('\n')
    });
    assert_eq!(status.trim(), "0", "heph-tui's exit status on SIGTERM");
    wait_until("the pane's shell to end", WAIT, || {
        tui.pane("pane_dead") == "1"
    });
    assert_eq!(
        tui.pane("alternate_on"),
        "0",
        "the alternate screen was left"
    );
    assert!(!tui.screen().contains("Buy oat milk"));
}
