//! Real processes for the end-to-end tests: an isolated home, a `hephd`
//! started from the built binary, and a raw JSON-RPC client on its socket.
//!
//! Every wait here is a bounded poll that gives up with a clear panic
//! message; no test sleeps to synchronise.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

/// Polls `f` every 20 ms for up to `limit`; panics with `what` when it never holds.
pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An isolated home: XDG directories, db and socket paths in a temp dir.
pub struct TestEnv {
    pub dir: TempDir,
    pub db: PathBuf,
    pub socket: PathBuf,
}

impl TestEnv {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("data/heph/heph.db");
        let socket = dir.path().join("run/heph/hephd.sock");
        Self { dir, db, socket }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Environment for child processes: everything points into the temp dir.
    pub fn vars(&self) -> Vec<(String, String)> {
        let p = |s: &str| self.path().join(s).display().to_string();
        vec![
            ("HOME".into(), p("home")),
            ("XDG_DATA_HOME".into(), p("data")),
            ("XDG_RUNTIME_DIR".into(), p("run")),
            ("XDG_CONFIG_HOME".into(), p("config")),
            ("XDG_STATE_HOME".into(), p("state")),
            ("NO_COLOR".into(), "1".into()),
        ]
    }

    /// A command for one of the workspace binaries, in this environment.
    pub fn command(&self, bin: &str) -> Command {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin(bin));
        for (k, _) in std::env::vars() {
            if k.starts_with("HEPH_") || k.starts_with("XDG_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.vars());
        cmd.env("HEPH_HEPHD", assert_cmd::cargo::cargo_bin("hephd"));
        cmd
    }

    /// Starts `hephd` on this env's db and socket and waits until it answers.
    pub fn start_daemon(&self) -> Daemon {
        self.start_daemon_with(&[])
    }

    pub fn start_daemon_with(&self, extra: &[&str]) -> Daemon {
        let log = self.path().join("hephd.log");
        let mut child = self
            .command("hephd")
            .arg("--db")
            .arg(&self.db)
            .arg("--socket")
            .arg(&self.socket)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let socket = self.socket.clone();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "hephd exited with {status} before answering; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if let Ok(mut c) = Client::connect(&socket) {
                if c.call("daemon.info", json!({})).get("result").is_some() {
                    break;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "hephd did not answer within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon { child, log }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket).unwrap()
    }
}

/// A running `hephd`; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "hephd did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait(Duration::from_secs(20))
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait(Duration::from_secs(20));
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw line-oriented JSON-RPC client.
pub struct Client {
    reader: BufReader<UnixStream>,
    next_id: u64,
}

impl Client {
    pub fn connect(socket: &Path) -> std::io::Result<Self> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Self {
            reader: BufReader::new(stream),
            next_id: 1,
        })
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// Reads one line as JSON; `None` at EOF.
    pub fn read(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}")),
            ),
        }
    }

    /// Sends a request and returns the whole response object.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params)
            .expect("the daemon closed the connection")
    }

    /// Like [`call`](Self::call), but `None` when the connection is gone.
    pub fn try_call(&mut self, method: &str, params: Value) -> Option<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_raw(format!("{req}\n").as_bytes()).ok()?;
        loop {
            let v = self.read()?;
            // Skip event notifications interleaved with responses.
            if v.get("id") == Some(&json!(id)) {
                return Some(v);
            }
        }
    }

    /// Calls and returns `result`, panicking on an error response.
    pub fn ok(&mut self, method: &str, params: Value) -> Value {
        let v = self.call(method, params);
        match v.get("result") {
            Some(r) => r.clone(),
            None => panic!("{method} failed: {v}"),
        }
    }

    /// Calls and returns `error`, panicking on success.
    pub fn err(&mut self, method: &str, params: Value) -> Value {
        let v = self.call(method, params);
        match v.get("error") {
            Some(e) => e.clone(),
            None => panic!("{method} unexpectedly succeeded: {v}"),
        }
    }
}
