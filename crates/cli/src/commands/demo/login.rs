//! A running `heph auth login --no-browser`, for `heph demo`: its stderr is
//! read line by line until the verification link shows, the demo approves
//! it, then the process is waited for (bounded) and its output collected.
//! A login that is dropped unfinished is killed.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::procs::interrupted;
use crate::launch::describe_exit;

/// How long the login may take to show its link.
const LINK_WAIT: Duration = Duration::from_secs(20);
/// How long it may take to see the approval (a few poll intervals).
const FINISH_WAIT: Duration = Duration::from_secs(30);
/// How long to wait for the lines that follow the link.
const SETTLE: Duration = Duration::from_secs(2);
/// How often the waits look at the clock and the interrupt flag.
const TICK: Duration = Duration::from_millis(100);

/// A login in progress.
pub struct Login {
    child: Option<Child>,
    lines: Receiver<String>,
    stdout: Option<JoinHandle<String>>,
}

/// Where a login ended up.
pub struct Finished {
    /// The stderr lines after the link.
    pub notes: Vec<String>,
    /// Its stdout.
    pub stdout: String,
}

impl Login {
    /// Starts `cmd` with its output piped.
    pub fn spawn(mut cmd: Command) -> std::io::Result<Self> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let (tx, lines) = channel();
        let stderr = child.stderr.take();
        let mut stdout = child.stdout.take();
        thread::spawn(move || {
            if let Some(stderr) = stderr {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        });
        let stdout = thread::spawn(move || {
            let mut text = String::new();
            if let Some(out) = stdout.as_mut() {
                let _ = out.read_to_string(&mut text);
            }
            text
        });
        Ok(Self {
            child: Some(child),
            lines,
            stdout: Some(stdout),
        })
    }

    /// The exit status, once it exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Reads stderr until the verification link and the lines right after
    /// it. Returns those lines and the link.
    pub fn wait_for_link(&mut self) -> Result<(Vec<String>, String), String> {
        let mut seen = Vec::new();
        let mut link: Option<String> = None;
        let mut deadline = Instant::now() + LINK_WAIT;
        loop {
            if interrupted() {
                return Err("the demo was interrupted".into());
            }
            match self.lines.recv_timeout(TICK) {
                Ok(line) => {
                    if link.is_none() && is_link(&line) {
                        link = Some(line.trim().to_owned());
                        deadline = Instant::now() + SETTLE;
                    }
                    let done = link.is_some() && line.starts_with("waiting for approval");
                    seen.push(line);
                    if done {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    if link.is_some() {
                        break;
                    }
                    let status = self.wait_exit(Duration::from_secs(2));
                    return Err(format!(
                        "heph auth login {} before showing a link{}",
                        status.map_or_else(|| "stopped".into(), describe_exit),
                        last_words(&seen)
                    ));
                }
            }
            if Instant::now() >= deadline {
                if link.is_some() {
                    break;
                }
                return Err(format!(
                    "heph auth login showed no link within {} s{}",
                    LINK_WAIT.as_secs(),
                    last_words(&seen)
                ));
            }
        }
        let link = link.unwrap_or_default();
        Ok((seen, link))
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline || interrupted() {
                return None;
            }
            thread::sleep(TICK);
        }
    }

    /// Waits (bounded) for the login to exit and collects what it printed.
    pub fn finish(mut self) -> Result<Finished, String> {
        let status = self.wait_exit(FINISH_WAIT);
        let mut notes = Vec::new();
        let drain_until = Instant::now() + SETTLE;
        while Instant::now() < drain_until {
            match self.lines.recv_timeout(TICK) {
                Ok(line) => notes.push(line),
                Err(RecvTimeoutError::Timeout) if status.is_none() => break,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let Some(status) = status else {
            return Err(if interrupted() {
                "the demo was interrupted".into()
            } else {
                format!(
                    "heph auth login did not finish within {} s of the approval{}",
                    FINISH_WAIT.as_secs(),
                    last_words(&notes)
                )
            });
        };
        let stdout = self
            .stdout
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if !status.success() {
            return Err(format!(
                "heph auth login {}{}",
                describe_exit(status),
                last_words(&notes)
            ));
        }
        Ok(Finished { notes, stdout })
    }
}

impl Drop for Login {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether `line` is the verification link `heph auth login` shows.
pub fn is_link(line: &str) -> bool {
    let line = line.trim();
    (line.starts_with("http://") || line.starts_with("https://")) && line.contains("user_code=")
}

/// `: <its last line>` when the process said anything.
fn last_words(lines: &[String]) -> String {
    lines
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| !l.is_empty())
        .map(|l| format!(" ({l})"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_and_the_last_words_are_recognised() {
        assert!(is_link("  http://127.0.0.1:9/device?user_code=ABCD-EFGH"));
        assert!(!is_link(
            "To sign in to http://127.0.0.1:9, open this page and approve the code ABCD-EFGH:"
        ));
        assert_eq!(
            last_words(&["error: nope".into(), String::new()]),
            " (error: nope)"
        );
        assert_eq!(last_words(&[]), "");
    }
}
