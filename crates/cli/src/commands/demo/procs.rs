//! The processes `heph demo` starts, and the promise that none outlives a
//! failed or interrupted demo.
//!
//! A [`Place`] is one machine of the demo — the hub or a device — as a
//! private home under the demo directory: every command run there gets an
//! environment that points all of heph's paths inside it and none of the
//! caller's `HEPH_*` or `XDG_*` settings. The [`Guard`] holds the hub
//! process and the sockets of the device daemons; dropping it stops them
//! all (SIGTERM, a bounded wait, then SIGKILL for the hub) unless the demo
//! [`released`](Guard::release) them for `--keep`. Ctrl-C and SIGTERM only
//! set a flag here, so the demo's waits end and the guard still runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::sleep;
use std::time::Instant;

use crate::launch::{self, STEP, WAIT};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// From now on, Ctrl-C and SIGTERM set [`interrupted`] instead of ending
/// the process (the commands the demo runs in the foreground still get
/// Ctrl-C from the terminal, and end).
pub fn catch_interrupts() {
    let handler = on_signal as extern "C" fn(libc::c_int);
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

/// Whether the demo was asked to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The environment that confines every default path to `home`.
pub fn private_env(home: &Path) -> Vec<(String, String)> {
    [
        ("HOME", "home"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_STATE_HOME", "state"),
        ("XDG_RUNTIME_DIR", "run"),
    ]
    .iter()
    .map(|(k, d)| ((*k).to_owned(), home.join(d).display().to_string()))
    .collect()
}

/// One machine of the demo.
pub struct Place {
    /// `hub`, `laptop`, `phone`: the prompt of its commands.
    pub name: &'static str,
    /// The demo directory: every command runs there.
    pub dir: PathBuf,
    /// This machine's home, under `dir`.
    pub home: PathBuf,
    /// Its whole environment of heph settings.
    pub env: Vec<(String, String)>,
    /// The variables shown to the reader (the rest only confine paths).
    pub shown_env: Vec<(String, String)>,
}

impl Place {
    /// The hub machine: its db, socket and log in `dir/hub`.
    pub fn hub(dir: &Path) -> Self {
        let home = dir.join("hub");
        Self {
            name: "hub",
            dir: dir.to_owned(),
            env: private_env(&home),
            home,
            shown_env: Vec::new(),
        }
    }

    /// A device whose daemon syncs with `hub_url` and keeps its sign-in in a
    /// file; its daemon is `hephd`.
    pub fn device(dir: &Path, name: &'static str, hub_url: &str, hephd: &Path) -> Self {
        let home = dir.join(name);
        let shown_env = vec![
            ("HEPH_HUB_URL".to_owned(), hub_url.to_owned()),
            ("HEPH_TOKEN_STORE".to_owned(), "file".to_owned()),
            (
                "HEPH_TOKEN_FILE".to_owned(),
                home.join("tokens.json").display().to_string(),
            ),
        ];
        let mut env = private_env(&home);
        env.extend(shown_env.iter().cloned());
        env.push(("HEPH_HEPHD".into(), hephd.display().to_string()));
        Self {
            name,
            dir: dir.to_owned(),
            home,
            env,
            shown_env,
        }
    }

    /// `program` set up to run here.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("HEPH_") || k.starts_with("XDG_") {
                cmd.env_remove(&key);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.dir);
        cmd
    }

    /// This machine's daemon log.
    pub fn log(&self) -> PathBuf {
        if self.name == "hub" {
            self.home.join("hephd.log")
        } else {
            self.home.join("state/heph/hephd.log")
        }
    }

    /// This device's daemon socket (heph's default under `XDG_RUNTIME_DIR`).
    pub fn socket(&self) -> PathBuf {
        self.home.join("run/heph/hephd.sock")
    }

    /// `path` as the reader sees it: relative to the demo directory.
    pub fn shown(&self, path: &str) -> String {
        let prefix = format!("{}/", self.dir.display());
        path.strip_prefix(&prefix).unwrap_or(path).to_owned()
    }
}

/// Stops a child: SIGTERM, up to [`WAIT`] for it to finish, then SIGKILL.
pub fn stop_child(child: &mut Child) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    let _ = launch::terminate(child.id());
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        sleep(STEP);
    }
    let _ = child.kill();
    child.wait().ok()
}

/// Stops the daemon answering on `socket`, if one does. Whether it is gone.
fn stop_daemon_on(socket: &Path) -> bool {
    let Ok(info) = launch::probe(socket) else {
        return true;
    };
    let _ = launch::terminate(info.pid);
    launch::wait_gone(socket, Some(info.pid), WAIT)
}

/// Everything the demo started that is still running.
#[derive(Default)]
pub struct Guard {
    hub: Option<Child>,
    daemons: Vec<PathBuf>,
}

impl Guard {
    /// From now on the hub `child` is stopped with the demo.
    pub fn hub(&mut self, child: Child) {
        self.hub = Some(child);
    }

    /// The hub process, while it runs.
    pub fn hub_child(&mut self) -> Option<&mut Child> {
        self.hub.as_mut()
    }

    /// From now on the daemon on `socket` is stopped with the demo.
    pub fn daemon(&mut self, socket: PathBuf) {
        self.daemons.push(socket);
    }

    /// Stops the hub now; its exit status.
    pub fn stop_hub(&mut self) -> Option<ExitStatus> {
        self.hub.take().as_mut().and_then(stop_child)
    }

    /// Stops everything. Returns the sockets of daemons that would not stop.
    pub fn stop_all(&mut self) -> Vec<PathBuf> {
        let stuck = self
            .daemons
            .drain(..)
            .filter(|s| !stop_daemon_on(s))
            .collect();
        self.stop_hub();
        stuck
    }

    /// Leaves everything running (`--keep`); returns the hub's pid.
    pub fn release(&mut self) -> Option<u32> {
        self.daemons.clear();
        self.hub.take().map(|c| c.id())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_is_confined_to_its_home_and_shows_its_hub_settings() {
        let dir = Path::new("/tmp/heph-demo-1-0");
        let d = Place::device(dir, "laptop", "http://127.0.0.1:9", Path::new("/bin/hephd"));
        let get = |k: &str| {
            d.env
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("HOME"), Some("/tmp/heph-demo-1-0/laptop/home"));
        assert_eq!(
            get("XDG_RUNTIME_DIR"),
            Some("/tmp/heph-demo-1-0/laptop/run")
        );
        assert_eq!(get("HEPH_TOKEN_STORE"), Some("file"));
        assert_eq!(get("HEPH_HEPHD"), Some("/bin/hephd"));
        let shown: Vec<String> = d
            .shown_env
            .iter()
            .map(|(k, v)| format!("{k}={}", d.shown(v)))
            .collect();
        assert_eq!(
            shown,
            [
                "HEPH_HUB_URL=http://127.0.0.1:9",
                "HEPH_TOKEN_STORE=file",
                "HEPH_TOKEN_FILE=laptop/tokens.json"
            ]
        );
        assert_eq!(
            d.socket(),
            Path::new("/tmp/heph-demo-1-0/laptop/run/heph/hephd.sock")
        );
        assert_eq!(
            Place::hub(dir).log(),
            Path::new("/tmp/heph-demo-1-0/hub/hephd.log")
        );
    }
}
