//! Running `hephd` as a background process without a service manager:
//! finding the program, spawning it detached, waiting (bounded) until its
//! socket answers or it dies, stopping it by pid, and reading its log.
//!
//! Every wait here has a deadline; nothing waits forever except
//! `heph daemon logs -f`, which a person stops. The sentences these steps
//! end in are built by `commands/daemon.rs`.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use heph_core::rpc::{DaemonInfo, method};

use crate::exit::CliError;
use crate::rpc_client::{Client, ClientError};

/// How long `start` waits for the socket to answer, and `stop` for it to go quiet.
pub const WAIT: Duration = Duration::from_secs(10);
/// How often those waits look.
pub const STEP: Duration = Duration::from_millis(50);

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Searches `PATH` for an executable named `name`.
pub fn find_in_path(name: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path_var?)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
        .and_then(|p| std::path::absolute(p).ok())
}

/// Finds `hephd`: `HEPH_HEPHD`, else beside the running `heph`, else on `PATH`.
/// The result is absolute (symlinks are kept, so upgrades are followed).
pub fn find_hephd(
    env: Option<&Path>,
    exe: Option<&Path>,
    path_var: Option<&OsStr>,
) -> Result<PathBuf, CliError> {
    if let Some(p) = env {
        return if is_executable(p) {
            std::path::absolute(p).map_err(|e| CliError::io("cannot resolve HEPH_HEPHD", e))
        } else {
            Err(CliError::with_hint(
                format!(
                    "HEPH_HEPHD is set to {}, which is not an executable file",
                    p.display()
                ),
                "point HEPH_HEPHD at the hephd program, or unset it",
            ))
        };
    }
    if let Some(dir) = exe.and_then(Path::parent) {
        let beside = dir.join("hephd");
        if is_executable(&beside) {
            return Ok(beside);
        }
    }
    if let Some(p) = find_in_path("hephd", path_var) {
        return Ok(p);
    }
    Err(CliError::with_hint(
        "cannot find the hephd program (not in HEPH_HEPHD, beside heph, or on PATH)",
        "install hephd next to heph, or set HEPH_HEPHD=/path/to/hephd",
    ))
}

/// A daemon this command started.
pub struct Spawned {
    pub child: Child,
    /// The log's length before the child wrote to it.
    pub log_start: u64,
}

/// Opens (creating it and its directory) a log file for appending.
pub fn open_log(log_file: &Path) -> Result<File, CliError> {
    if let Some(dir) = log_file.parent() {
        fs::create_dir_all(dir).map_err(|e| {
            CliError::io(
                format!("cannot create the log directory {}", dir.display()),
                e,
            )
        })?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .map_err(|e| {
            CliError::io(
                format!("cannot open the log file {}", log_file.display()),
                e,
            )
        })
}

/// Starts `hephd` in its own session, stdin closed, output appended to `log_file`.
pub fn spawn_detached(hephd: &Path, args: &[String], log_file: &Path) -> Result<Spawned, CliError> {
    let mut cmd = Command::new(hephd);
    cmd.args(args);
    spawn_command_detached(cmd, log_file)
}

/// Like [`spawn_detached`], for a prepared command (its own environment, say).
pub fn spawn_command_detached(mut cmd: Command, log_file: &Path) -> Result<Spawned, CliError> {
    let log = open_log(log_file)?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let err_log = log
        .try_clone()
        .map_err(|e| CliError::io("cannot share the log file", e))?;
    cmd.stdin(Stdio::null()).stdout(log).stderr(err_log);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        CliError::io(
            format!("cannot run {}", Path::new(cmd.get_program()).display()),
            e,
        )
    })?;
    Ok(Spawned { child, log_start })
}

/// Asks the socket for `daemon.info` once, briefly.
pub fn probe(socket: &Path) -> Result<DaemonInfo, ClientError> {
    let mut client = Client::connect_with_timeout(socket, Duration::from_secs(2))?;
    client.call(method::DAEMON_INFO, ())
}

/// How waiting for a starting daemon ended.
#[derive(Debug)]
pub enum Ready {
    Up(DaemonInfo),
    /// The child exited before its socket answered.
    Exited(ExitStatus),
    /// The deadline passed; the last probe failed like this.
    TimedOut(ClientError),
}

/// Polls `daemon.info` every [`STEP`] until it answers, the child exits, or `limit` passes.
pub fn wait_ready(socket: &Path, mut child: Option<&mut Child>, limit: Duration) -> Ready {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(child) = child.as_deref_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return Ready::Exited(status);
            }
        }
        let last = match probe(socket) {
            Ok(info) => return Ready::Up(info),
            Err(err) => err,
        };
        if Instant::now() >= deadline {
            return Ready::TimedOut(last);
        }
        sleep(STEP);
    }
}

/// "exited with status 1", "was killed by signal 9 (SIGKILL)".
pub fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}{}", signal_name(sig)),
        (None, None) => "exited".to_owned(),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGTERM => " (SIGTERM)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGINT => " (SIGINT)",
        _ => "",
    }
}

/// Sends SIGTERM. `Ok(false)` if no such process exists.
pub fn terminate(pid: u32) -> Result<bool, CliError> {
    let Ok(raw) = i32::try_from(pid) else {
        return Err(CliError::failed(format!(
            "the daemon reported an impossible pid {pid}"
        )));
    };
    if raw <= 1 || pid == std::process::id() {
        return Err(CliError::failed(format!("refusing to signal pid {pid}")));
    }
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(raw, libc::SIGTERM) } == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ESRCH) => Ok(false),
        _ => Err(CliError::io(
            format!("cannot signal the heph daemon (pid {pid})"),
            err,
        )),
    }
}

/// Whether a process with this pid still runs (a zombie does not count).
pub fn is_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence.
    if unsafe { libc::kill(raw, 0) } != 0 {
        return io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_none_or(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Waits until the socket stops answering and `pid` (if known) has exited.
pub fn wait_gone(socket: &Path, pid: Option<u32>, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let quiet = matches!(
            Client::connect_with_timeout(socket, Duration::from_secs(1)),
            Err(ClientError::NotRunning { .. })
        );
        if quiet && !pid.is_some_and(is_alive) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(STEP);
    }
}

/// The last `n` lines of `text` (a final newline does not start a line).
pub fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() || n == 0 {
        return Vec::new();
    }
    let mut lines: Vec<&str> = text.rsplit('\n').take(n).collect();
    lines.reverse();
    lines
}

/// Reads the end of `path` holding at least its last `n` lines, starting
/// no earlier than `from`. Returns the text and the file's length.
pub fn read_tail(path: &Path, n: usize, from: u64) -> io::Result<(String, u64)> {
    const BLOCK: u64 = 64 * 1024;
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    while start > from {
        let step = BLOCK.min(start - from);
        start -= step;
        file.seek(SeekFrom::Start(start))?;
        let mut block = vec![0; usize::try_from(step).unwrap_or(0)];
        file.read_exact(&mut block)?;
        block.extend_from_slice(&buf);
        buf = block;
        // n lines need n + 1 newlines (one ends the line before them).
        if buf.iter().filter(|&&b| b == b'\n').count() > n {
            break;
        }
    }
    Ok((String::from_utf8_lossy(&buf).into_owned(), len))
}

/// Reads what was appended to `path` since `pos`. Returns the new bytes and
/// the new position; a file that shrank (rotated) is read from its start.
pub fn read_since(path: &Path, pos: u64) -> io::Result<(Vec<u8>, u64)> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = if len < pos { 0 } else { pos };
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    let end = start + buf.len() as u64;
    Ok((buf, end))
}

/// Runs a service-manager command with stdin closed and its output on our
/// stderr (so `--json` stdout stays pure).
pub fn run_tool(command: &[String]) -> Result<ExitStatus, CliError> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| CliError::failed("empty command"))?;
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(io::stderr())
        .stderr(io::stderr())
        .status()
        .map_err(|e| CliError::io(format!("cannot run {program}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn executable(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn finds_hephd_in_order() {
        let env_dir = tempfile::tempdir().unwrap();
        let exe_dir = tempfile::tempdir().unwrap();
        let path_dir = tempfile::tempdir().unwrap();
        let from_env = executable(env_dir.path(), "my-hephd");
        let heph = exe_dir.path().join("heph");
        let on_path = executable(path_dir.path(), "hephd");
        let path_var = std::env::join_paths([Path::new("/nonexistent"), path_dir.path()]).unwrap();
        let path_var = Some(path_var.as_os_str());

        assert_eq!(
            find_hephd(Some(&from_env), Some(&heph), path_var).unwrap(),
            from_env
        );
        assert_eq!(find_hephd(None, Some(&heph), path_var).unwrap(), on_path);
        let beside = executable(exe_dir.path(), "hephd");
        assert_eq!(find_hephd(None, Some(&heph), path_var).unwrap(), beside);

        let err = find_hephd(Some(Path::new("/nope/hephd")), None, None)
            .err()
            .unwrap();
        assert_eq!(
            err.report().unwrap().to_string(),
            "error: HEPH_HEPHD is set to /nope/hephd, which is not an executable file\n\
             hint: point HEPH_HEPHD at the hephd program, or unset it\n"
        );
        let err = find_hephd(None, None, None).err().unwrap();
        insta::assert_snapshot!(err.report().unwrap().to_string(), @"
        error: cannot find the hephd program (not in HEPH_HEPHD, beside heph, or on PATH)
        hint: install hephd next to heph, or set HEPH_HEPHD=/path/to/hephd
        ");
        // A file that is not executable is not a candidate.
        fs::write(path_dir.path().join("plain"), "").unwrap();
        assert_eq!(find_in_path("plain", path_var), None);
    }

    #[test]
    fn tails() {
        assert_eq!(last_lines("a\nb\nc\n", 2), ["b", "c"]);
        assert_eq!(last_lines("a\nb\nc", 5), ["a", "b", "c"]);
        assert_eq!(last_lines("", 5), Vec::<&str>::new());
        assert_eq!(last_lines("a\n", 0), Vec::<&str>::new());
        assert_eq!(last_lines("\n\n", 5), ["", ""]);

        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("hephd.log");
        let mut f = File::create(&log).unwrap();
        for i in 0..20_000 {
            writeln!(f, "line {i}").unwrap();
        }
        let (text, len) = read_tail(&log, 3, 0).unwrap();
        assert_eq!(
            last_lines(&text, 3),
            ["line 19997", "line 19998", "line 19999"]
        );
        assert_eq!(len, fs::metadata(&log).unwrap().len());
        assert!(text.len() < 70 * 1024, "read {} bytes", text.len());
        // Lines before `from` are not shown.
        let (text, _) = read_tail(&log, 3, len - 11).unwrap();
        assert_eq!(last_lines(&text, 3), ["line 19999"]);

        writeln!(f, "more").unwrap();
        let (new, pos) = read_since(&log, len).unwrap();
        assert_eq!((new.as_slice(), pos), (&b"more\n"[..], len + 5));
        // Truncated (rotated): read from the start.
        fs::write(&log, "fresh\n").unwrap();
        assert_eq!(read_since(&log, pos).unwrap(), (b"fresh\n".to_vec(), 6));
    }

    #[test]
    fn exit_descriptions() {
        assert_eq!(
            describe_exit(ExitStatus::from_raw(1 << 8)),
            "exited with status 1"
        );
        assert_eq!(
            describe_exit(ExitStatus::from_raw(9)),
            "was killed by signal 9 (SIGKILL)"
        );
    }

    #[test]
    fn a_spawned_child_that_dies_is_reported_with_its_status() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("hephd");
        fs::write(
            &fake,
            "#!/bin/sh\necho \"starting with $*\"\necho 'bad flag' >&2\nexit 7\n",
        )
        .unwrap();
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
        let log = dir.path().join("logs/hephd.log");
        fs::create_dir_all(log.parent().unwrap()).unwrap();
        fs::write(&log, "old run\n").unwrap();
        let mut spawned = spawn_detached(&fake, &["--db".into(), "/x.db".into()], &log).unwrap();
        let socket = dir.path().join("d.sock");
        match wait_ready(&socket, Some(&mut spawned.child), WAIT) {
            Ready::Exited(status) => assert_eq!(describe_exit(status), "exited with status 7"),
            other => panic!("{other:?}"),
        }
        let (text, _) = read_tail(&log, 10, spawned.log_start).unwrap();
        assert_eq!(
            last_lines(&text, 10),
            ["starting with --db /x.db", "bad flag"]
        );
    }
}
