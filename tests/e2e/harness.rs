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

/// The path of a workspace binary (`heph`, `hephd`, `heph-tui`) built by
/// the same `cargo test --workspace` run: it sits beside this test's `deps/`.
pub fn bin(name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(format!("CARGO_BIN_EXE_{name}")) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run the suite with `cargo test --workspace` (it builds every binary)",
        path.display()
    );
    path
}

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

/// Copies the directory `from` and everything in it to `to` (a backup
/// restored on another machine, a cloned virtual machine's disk).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
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
        let mut cmd = Command::new(self::bin(bin));
        for (k, _) in std::env::vars() {
            if k.starts_with("HEPH_") || k.starts_with("XDG_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.vars());
        cmd.env("HEPH_HEPHD", self::bin("hephd"));
        cmd
    }

    /// Starts `hephd` on this env's db and socket and waits until it answers.
    pub fn start_daemon(&self) -> Daemon {
        self.start_daemon_with(&[])
    }

    pub fn start_daemon_with(&self, extra: &[&str]) -> Daemon {
        self.start_daemon_from(self.command("hephd"), extra)
    }

    /// Like [`start_daemon_with`](Self::start_daemon_with), from a prepared
    /// `hephd` command (one with extra environment, say).
    pub fn start_daemon_from(&self, mut cmd: Command, extra: &[&str]) -> Daemon {
        let log = self.path().join("hephd.log");
        let mut child = cmd
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

    /// Creates 40 tasks titled `{title} {i}` and returns their ids and a
    /// one-hex-digit prefix at least two of them share (40 ids over 16
    /// digits always share one).
    pub fn nodes_sharing_a_prefix(&mut self, title: &str) -> (Vec<String>, String) {
        let ids: Vec<String> = (0..40)
            .map(|i| {
                self.ok("node.create", json!({"title": format!("{title} {i}")}))["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let digit = (0..16)
            .map(|d| format!("{d:x}"))
            .find(|d| ids.iter().filter(|id| id.starts_with(d.as_str())).count() >= 2)
            .unwrap();
        (ids, digit)
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

/// The address line a hub logs once it listens.
const LISTENING: &str = "hub listening on http://";

impl TestEnv {
    /// The daemon's `auth.status`.
    pub fn auth_status(&self) -> Value {
        self.client().ok("auth.status", json!({}))
    }

    /// Runs sync rounds until `auth.status` reaches `state` (within 30 s);
    /// returns the last status.
    pub fn sync_until_auth(&self, state: &str) -> Value {
        let mut last = Value::Null;
        wait_until(
            &format!("auth state {state}"),
            Duration::from_secs(30),
            || {
                let _ = self.client().call("sync.now", json!({}));
                last = self.auth_status();
                last["state"] == state
            },
        );
        last
    }

    /// Starts a hub (`--mode server --insecure-no-auth`) on 127.0.0.1: on
    /// `port`, or on a free port the kernel picks (read back from its log).
    /// Returns the daemon and its port.
    pub fn start_hub(&self, port: Option<u16>) -> (Daemon, u16) {
        let listen = format!("127.0.0.1:{}", port.unwrap_or(0));
        let (d, port) = self.start_server(&[
            "--mode",
            "server",
            "--insecure-no-auth",
            "--listen",
            &listen,
        ]);
        wait_until("the hub's /healthz", Duration::from_secs(20), || {
            http(port, "GET", "/healthz", &[], b"").map(|r| r.0) == Some(200)
        });
        (d, port)
    }

    /// Starts `hephd ARGS` (a hub: `--mode server … --listen 127.0.0.1:P`)
    /// and returns it with the port it listens on, read back from its log
    /// (so `--listen 127.0.0.1:0` works).
    pub fn start_server(&self, args: &[&str]) -> (Daemon, u16) {
        let before = std::fs::read_to_string(self.path().join("hephd.log"))
            .map(|t| t.len())
            .unwrap_or(0);
        let d = self.start_daemon_with(args);
        let mut found = None;
        wait_until(
            "the hub's listening address",
            Duration::from_secs(20),
            || {
                let text = d.log_text();
                found = text[before.min(text.len())..]
                    .lines()
                    .filter_map(|l| l.split(LISTENING).nth(1))
                    .filter_map(|rest| rest.split(':').nth(1))
                    .filter_map(|p| p.trim().parse::<u16>().ok())
                    .next_back();
                found.is_some()
            },
        );
        (d, found.unwrap())
    }

    /// Starts a spoke of the hub on `port`.
    pub fn start_spoke(&self, port: u16) -> Daemon {
        self.start_daemon_with(&["--hub-url", &format!("http://127.0.0.1:{port}")])
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port` with `Connection: close`.
/// Returns the status and the body parsed as JSON (`Null` when empty or not
/// JSON); `None` when the connection failed.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, Value)> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(90))).ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).ok()?;
    // The hub may answer (413) and close before the whole body is sent.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let status: u16 = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// Runs `heph auth login …` (`cmd`, which should include `--no-browser`):
/// reads its stderr until the verification URL, lets `approve` act on it
/// as the person at the browser would, then waits for the login to end.
/// Returns (exit code, stdout, stderr).
pub fn run_login(mut cmd: Command, approve: impl FnOnce(&str)) -> (i32, String, String) {
    const LIMIT: Duration = Duration::from_secs(30);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let url = loop {
        let line = rx
            .recv_timeout(LIMIT)
            .expect("heph auth login printed no verification URL");
        if let Some(url) = line.strip_prefix("  http") {
            break format!("http{url}");
        }
    };
    assert!(url.contains("user_code="), "{url}");
    approve(&url);
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let mut status = None;
    wait_until("heph auth login to finish", LIMIT, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let stderr = reader.join().unwrap();
    (status.unwrap().code().unwrap_or(-1), stdout, stderr)
}
