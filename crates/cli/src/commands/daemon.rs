//! `heph daemon start|stop|restart|status|logs|install|uninstall`: managing
//! `hephd` (DESIGN §5).
//!
//! Without an installed service, `start` spawns `hephd` detached with the
//! resolved settings and `stop` signals the pid `daemon.info` reports. Once
//! `heph daemon install` has written a systemd user unit (or launchd agent),
//! `start`/`stop`/`restart` go through `systemctl --user` (or `launchctl`) so
//! the settings baked into the unit are never dropped. Every wait is bounded
//! ([`launch::WAIT`]). The sentences are pure functions at the end of this
//! module, pinned by snapshot tests.

use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use clap::Subcommand;
use heph_core::rpc::DaemonInfo;
use serde::Serialize;

use crate::context::Ctx;
use crate::exit::{CliError, START_HINT};
use crate::launch::{self, Ready, WAIT};
use crate::rpc_client::ClientError;
use crate::service::{Manager, ServiceSpec, shell_line};

/// `heph daemon`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

/// What to do with the daemon.
#[derive(Debug, Clone, Subcommand)]
pub enum Action {
    /// Start hephd in the background (through the service, once installed)
    Start(StartArgs),
    /// Stop the running daemon
    Stop,
    /// Stop, then start
    Restart(StartArgs),
    /// Show whether the daemon runs, and its pid, paths and counters
    Status,
    /// Print the end of the daemon's log
    Logs(LogsArgs),
    /// Install a systemd user unit (launchd agent on macOS) with the current settings baked in
    Install(InstallArgs),
    /// Remove the installed unit
    Uninstall(UninstallArgs),
}

/// Flags of `start` and `restart`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StartArgs {
    /// Append the daemon's output here [env: HEPH_LOG_FILE] [default: $XDG_STATE_HOME/heph/hephd.log]
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

/// Flags of `logs`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// How many lines to print
    #[arg(short = 'n', long, value_name = "N", default_value_t = 50)]
    pub lines: usize,
    /// Keep printing lines as they are written (Ctrl-C stops)
    #[arg(short, long)]
    pub follow: bool,
    /// Read this log file instead
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

/// Flags of `install`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct InstallArgs {
    /// Also enable and start the service now
    #[arg(long)]
    pub now: bool,
    /// Where the service appends its output [default: $XDG_STATE_HOME/heph/hephd.log]
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

/// Flags of `uninstall`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UninstallArgs {
    /// Also stop and disable the service now
    #[arg(long)]
    pub now: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<(), CliError> {
    match args.action {
        Action::Start(a) => start(ctx, &a),
        Action::Stop => stop(ctx),
        Action::Restart(a) => restart(ctx, &a),
        Action::Status => status(ctx),
        Action::Logs(a) => logs(ctx, &a),
        Action::Install(a) => install(ctx, &a),
        Action::Uninstall(a) => uninstall(ctx, &a),
    }
}

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

fn path_var() -> Option<OsString> {
    std::env::var_os("PATH")
}

fn socket(ctx: &Ctx) -> &Path {
    &ctx.settings.socket.value
}

/// The installed unit, if any.
fn installed(ctx: &Ctx) -> Option<(Manager, PathBuf)> {
    let manager = Manager::for_this_os();
    let unit = manager.unit_path(&ctx.settings);
    unit.exists().then_some((manager, unit))
}

/// Whether a daemon answers: `Ok(None)` when nobody listens.
fn running(ctx: &Ctx) -> Result<Option<DaemonInfo>, CliError> {
    match launch::probe(socket(ctx)) {
        Ok(info) => Ok(Some(info)),
        Err(ClientError::NotRunning { .. }) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Runs a service-manager command, failing with a clear sentence.
fn run_manager(manager: Manager, unit: &Path, command: &[String]) -> Result<(), CliError> {
    if launch::find_in_path(manager.tool(), path_var().as_deref()).is_none() {
        return Err(tool_missing(manager, unit));
    }
    let status = launch::run_tool(command)?;
    if status.success() {
        Ok(())
    } else {
        Err(tool_failed(
            manager,
            command,
            &launch::describe_exit(status),
        ))
    }
}

fn log_file(ctx: &Ctx, flag: Option<&PathBuf>) -> PathBuf {
    let path = flag
        .cloned()
        .unwrap_or_else(|| ctx.settings.log_file.value.clone());
    std::path::absolute(&path).unwrap_or(path)
}

/// Starts a daemon (none is running). Returns its info and how it was started.
fn start_fresh(ctx: &Ctx, args: &StartArgs) -> Result<DaemonInfo, CliError> {
    if let Some((manager, unit)) = installed(ctx) {
        run_manager(manager, &unit, &manager.start_command(uid()))?;
        return match launch::wait_ready(socket(ctx), None, WAIT) {
            Ready::Up(info) => Ok(info),
            Ready::Exited(_) | Ready::TimedOut(_) => {
                Err(service_did_not_answer(manager, &unit, socket(ctx)))
            }
        };
    }
    let exe = std::env::current_exe().ok();
    let hephd = launch::find_hephd(
        ctx.settings.hephd.as_deref(),
        exe.as_deref(),
        path_var().as_deref(),
    )?;
    let log = log_file(ctx, args.log_file.as_ref());
    let mut spawned = launch::spawn_detached(&hephd, &ctx.settings.daemon_args(), &log)?;
    match launch::wait_ready(socket(ctx), Some(&mut spawned.child), WAIT) {
        Ready::Up(info) => Ok(info),
        Ready::Exited(status) => {
            let tail = launch::read_tail(&log, 10, spawned.log_start)
                .map(|(text, _)| launch::last_lines(&text, 10).join("\n"))
                .unwrap_or_default();
            Err(exited_early(
                &launch::describe_exit(status),
                socket(ctx),
                &tail,
                &log,
            ))
        }
        Ready::TimedOut(last) => Err(no_answer(spawned.child.id(), socket(ctx), &last)),
    }
}

fn start(ctx: &Ctx, args: &StartArgs) -> Result<(), CliError> {
    if let Some(info) = running(ctx)? {
        ctx.out.note(&already_running(&info));
        return if ctx.json() {
            ctx.out.json(&info)
        } else {
            Ok(())
        };
    }
    let info = start_fresh(ctx, args)?;
    report_started(ctx, &info)
}

fn report_started(ctx: &Ctx, info: &DaemonInfo) -> Result<(), CliError> {
    if ctx.json() {
        return ctx.out.json(info);
    }
    let service = installed(ctx).map(|(m, unit)| m.describe(&unit));
    let log = service.is_none().then(|| log_file(ctx, None));
    ctx.out
        .print(&started(info, service.as_deref(), log.as_deref()))
}

/// The JSON of `stop`.
#[derive(Debug, Serialize)]
struct Stopped {
    /// Whether a daemon was running and is now stopped.
    stopped: bool,
    pid: Option<u32>,
}

/// Stops the daemon; returns the pid it had, `None` if none was running.
fn stop_daemon(ctx: &Ctx) -> Result<Option<u32>, CliError> {
    let info = running(ctx)?;
    if let Some((manager, unit)) = installed(ctx) {
        // Also ends a restart loop of a unit whose daemon never answers. If
        // it fails, a daemon started outside the service is stopped by pid below.
        if let Err(err) = run_manager(manager, &unit, &manager.stop_command(uid())) {
            if let Some(report) = err.report() {
                ctx.out.note(&format!("warning: {}", report.message));
            }
        }
    }
    let Some(info) = info else {
        return Ok(None);
    };
    let gone = |limit| launch::wait_gone(socket(ctx), Some(info.pid), limit);
    if !gone(Duration::ZERO) {
        launch::terminate(info.pid)?;
        if !gone(WAIT) {
            return Err(did_not_stop(info.pid));
        }
    }
    Ok(Some(info.pid))
}

fn stop(ctx: &Ctx) -> Result<(), CliError> {
    let pid = stop_daemon(ctx)?;
    match pid {
        Some(pid) if !ctx.json() => ctx.out.print(&stopped(pid))?,
        None => ctx.out.note(NOT_RUNNING_NOTE),
        Some(_) => {}
    }
    if ctx.json() {
        ctx.out.json(&Stopped {
            stopped: pid.is_some(),
            pid,
        })?;
    }
    Ok(())
}

fn restart(ctx: &Ctx, args: &StartArgs) -> Result<(), CliError> {
    if let Some(pid) = stop_daemon(ctx)? {
        ctx.out.note(&stopped(pid));
    }
    let info = start_fresh(ctx, args)?;
    report_started(ctx, &info)
}

fn status(ctx: &Ctx) -> Result<(), CliError> {
    let info: DaemonInfo = ctx
        .client()?
        .call(heph_core::rpc::method::DAEMON_INFO, ())?;
    if ctx.json() {
        return ctx.out.json(&info);
    }
    let service = installed(ctx).map(|(m, unit)| m.describe(&unit));
    ctx.out.print(&crate::output::daemon_status(
        &info,
        &ctx.now,
        service.as_deref(),
    ))
}

/// The JSON of `logs` without `--follow`.
#[derive(Debug, Serialize)]
struct LogLines<'a> {
    path: &'a Path,
    lines: Vec<&'a str>,
}

fn logs(ctx: &Ctx, args: &LogsArgs) -> Result<(), CliError> {
    // A unit may have been installed with its own --log-file.
    let from_unit = installed(ctx).and_then(|(manager, unit)| {
        fs::read_to_string(unit)
            .ok()
            .and_then(|text| manager.log_file_in(&text))
    });
    let path = args
        .log_file
        .clone()
        .or(from_unit)
        .unwrap_or_else(|| ctx.settings.log_file.value.clone());
    let (text, mut pos) = match launch::read_tail(&path, args.lines, 0) {
        Ok(read) => read,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(no_log(&path)),
        Err(e) => {
            return Err(CliError::io(
                format!("cannot read the log file {}", path.display()),
                e,
            ));
        }
    };
    let lines = launch::last_lines(&text, args.lines);
    if ctx.json() && !args.follow {
        return ctx.out.json(&LogLines { path: &path, lines });
    }
    let print_line = |line: &str| {
        if ctx.json() {
            ctx.out.json(line)
        } else {
            ctx.out.print(&format!("{line}\n"))
        }
    };
    for line in lines {
        print_line(line)?;
    }
    if !args.follow {
        return Ok(());
    }
    let mut partial: Vec<u8> = Vec::new();
    loop {
        sleep(Duration::from_millis(250));
        let (bytes, next) = match launch::read_since(&path, pos) {
            Ok(read) => read,
            // Rotated away: wait for the new file.
            Err(e) if e.kind() == ErrorKind::NotFound => (Vec::new(), 0),
            Err(e) => return Err(CliError::io(format!("cannot read {}", path.display()), e)),
        };
        if next < pos {
            partial.clear();
        }
        pos = next;
        partial.extend_from_slice(&bytes);
        while let Some(i) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=i).collect();
            print_line(String::from_utf8_lossy(&line[..i]).as_ref())?;
        }
    }
}

/// The JSON of `install`.
#[derive(Debug, Serialize)]
struct Installed<'a> {
    path: &'a Path,
    manager: &'static str,
    /// A unit was there before and was replaced.
    replaced: bool,
    /// Whether it was started (`--now`).
    started: bool,
    /// The commands that enable and start it (run with `--now`, else to run by hand).
    commands: Vec<String>,
    pid: Option<u32>,
}

fn write_atomically(path: &Path, text: &str) -> Result<(), CliError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)
        .map_err(|e| CliError::io(format!("cannot create {}", dir.display()), e))?;
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text)
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| CliError::io(format!("cannot write {}", path.display()), e))
}

fn install(ctx: &Ctx, args: &InstallArgs) -> Result<(), CliError> {
    let manager = Manager::for_this_os();
    let unit = manager.unit_path(&ctx.settings);
    if args.now && launch::find_in_path(manager.tool(), path_var().as_deref()).is_none() {
        return Err(cannot_start_now(manager));
    }
    let exe = std::env::current_exe().ok();
    let hephd = launch::find_hephd(
        ctx.settings.hephd.as_deref(),
        exe.as_deref(),
        path_var().as_deref(),
    )?;
    let spec = ServiceSpec {
        hephd,
        args: ctx.settings.daemon_args(),
        log_file: log_file(ctx, args.log_file.as_ref()),
    };
    let running_pid = running(ctx)?.map(|i| i.pid);
    if args.now && running_pid.is_some() {
        // The service must own the socket: stop whatever runs now first.
        if let Some(pid) = stop_daemon(ctx)? {
            ctx.out.note(&stopped(pid));
        }
    }
    let replaced = unit.exists();
    launch::open_log(&spec.log_file)?;
    write_atomically(&unit, &manager.unit_text(&spec))?;
    let commands = manager.enable_commands(&unit, uid(), replaced);
    let mut info = None;
    if args.now {
        for command in &commands {
            if let Err(err) = run_manager(manager, &unit, command) {
                ctx.out.note(&format!(
                    "wrote the {}, but could not start it:",
                    manager.describe(&unit)
                ));
                return Err(err);
            }
        }
        info = match launch::wait_ready(socket(ctx), None, WAIT) {
            Ready::Up(info) => Some(info),
            _ => return Err(service_did_not_answer(manager, &unit, socket(ctx))),
        };
    }
    if ctx.json() {
        return ctx.out.json(&Installed {
            path: &unit,
            manager: manager.tool(),
            replaced,
            started: info.is_some(),
            commands: commands
                .iter()
                .map(|c| shell_line(std::slice::from_ref(c)))
                .collect(),
            pid: info.as_ref().map(|i| i.pid),
        });
    }
    let running_pid = if args.now { None } else { running_pid };
    ctx.out.print(&installed_message(
        manager,
        &unit,
        replaced,
        &commands,
        info.as_ref(),
        running_pid,
    ))
}

/// The JSON of `uninstall`.
#[derive(Debug, Serialize)]
struct Uninstalled<'a> {
    path: &'a Path,
    removed: bool,
}

fn uninstall(ctx: &Ctx, args: &UninstallArgs) -> Result<(), CliError> {
    let manager = Manager::for_this_os();
    let unit = manager.unit_path(&ctx.settings);
    if !unit.exists() {
        ctx.out.note(&not_installed(&unit));
        return if ctx.json() {
            ctx.out.json(&Uninstalled {
                path: &unit,
                removed: false,
            })
        } else {
            Ok(())
        };
    }
    if args.now {
        for command in manager.disable_commands(uid()) {
            run_manager(manager, &unit, &command)?;
        }
    }
    fs::remove_file(&unit)
        .map_err(|e| CliError::io(format!("cannot remove {}", unit.display()), e))?;
    if let Some(link) = manager.enable_link(&ctx.settings) {
        if fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
            let _ = fs::remove_file(&link);
        }
    }
    let forget = manager.forget_commands(uid());
    if args.now && manager == Manager::Systemd {
        // The unit file is gone; let systemd drop it too.
        if let Some(reload) = forget.last() {
            run_manager(manager, &unit, reload)?;
        }
    }
    if ctx.json() {
        return ctx.out.json(&Uninstalled {
            path: &unit,
            removed: true,
        });
    }
    ctx.out
        .print(&uninstalled_message(manager, &unit, args.now, &forget))
}

// ---- the sentences -------------------------------------------------------

/// What `stop` says when nothing runs.
pub const NOT_RUNNING_NOTE: &str = "the heph daemon is not running";

/// `start` when a daemon already answers.
pub fn already_running(info: &DaemonInfo) -> String {
    format!(
        "the heph daemon is already running (pid {}, socket {})",
        info.pid, info.socket
    )
}

/// `start`/`restart` succeeded.
pub fn started(info: &DaemonInfo, service: Option<&str>, log: Option<&Path>) -> String {
    let mut out = format!(
        "started the heph daemon (pid {}, socket {})\n",
        info.pid, info.socket
    );
    match (service, log) {
        (Some(service), _) => out.push_str(&format!("managed by the {service}\n")),
        (None, Some(log)) => out.push_str(&format!("its log is {}\n", log.display())),
        (None, None) => {}
    }
    out
}

/// `stop` succeeded.
pub fn stopped(pid: u32) -> String {
    format!("stopped the heph daemon (pid {pid})\n")
}

/// `hephd` died before its socket answered.
pub fn exited_early(how: &str, socket: &Path, log_tail: &str, log: &Path) -> CliError {
    CliError::Failed {
        message: format!("hephd {how} before answering on {}", socket.display()),
        details: log_tail.lines().map(str::to_owned).collect(),
        hint: Some(format!(
            "the whole log: heph daemon logs (in {})",
            log.display()
        )),
    }
}

/// `hephd` runs but its socket did not answer in time.
pub fn no_answer(pid: u32, socket: &Path, last: &ClientError) -> CliError {
    let why = match last {
        ClientError::NotRunning { .. } => String::new(),
        other => format!(" (last attempt: {other})"),
    };
    CliError::with_hint(
        format!(
            "hephd (pid {pid}) started but did not answer on {} within {} s{why}",
            socket.display(),
            WAIT.as_secs()
        ),
        "heph daemon logs",
    )
}

/// The service was started but its socket did not answer.
pub fn service_did_not_answer(manager: Manager, unit: &Path, socket: &Path) -> CliError {
    let hint = match manager {
        Manager::Systemd => "systemctl --user status hephd.service, and heph daemon logs",
        Manager::Launchd => "heph daemon logs",
    };
    CliError::with_hint(
        format!(
            "the {} was started but the daemon did not answer on {} within {} s",
            manager.describe(unit),
            socket.display(),
            WAIT.as_secs()
        ),
        hint,
    )
}

/// SIGTERM did not stop it in time.
pub fn did_not_stop(pid: u32) -> CliError {
    CliError::with_hint(
        format!(
            "the heph daemon (pid {pid}) did not stop within {} s",
            WAIT.as_secs()
        ),
        format!("kill -9 {pid}"),
    )
}

/// A unit is installed but its manager's tool is missing.
pub fn tool_missing(manager: Manager, unit: &Path) -> CliError {
    CliError::with_hint(
        format!(
            "the heph daemon is installed as a {}, but {} is not available to run it",
            manager.describe(unit),
            manager.tool()
        ),
        "heph daemon uninstall, then heph daemon start",
    )
}

/// A manager command failed.
pub fn tool_failed(manager: Manager, command: &[String], how: &str) -> CliError {
    let hint = match manager {
        Manager::Systemd => "systemctl --user status hephd.service",
        Manager::Launchd => "heph daemon logs",
    };
    CliError::with_hint(format!("{} {how}", shell_line(&[command.to_vec()])), hint)
}

/// `install --now` without the manager's tool.
pub fn cannot_start_now(manager: Manager) -> CliError {
    CliError::with_hint(
        format!(
            "cannot start the service now: {} is not available",
            manager.tool()
        ),
        format!("heph daemon install without --now, or {START_HINT}"),
    )
}

/// `logs` without a log file.
pub fn no_log(path: &Path) -> CliError {
    CliError::with_hint(
        format!("there is no daemon log at {}", path.display()),
        "heph daemon start runs the daemon in the background with a log",
    )
}

/// `uninstall` with nothing installed.
pub fn not_installed(unit: &Path) -> String {
    format!(
        "no heph service is installed ({} does not exist)",
        unit.display()
    )
}

/// `install` succeeded.
pub fn installed_message(
    manager: Manager,
    unit: &Path,
    replaced: bool,
    commands: &[Vec<String>],
    started: Option<&DaemonInfo>,
    running_pid: Option<u32>,
) -> String {
    let verb = if replaced { "rewrote" } else { "wrote" };
    let mut out = format!("{verb} the {}\n", manager.describe(unit));
    if let Some(info) = started {
        out.push_str(&format!(
            "it is enabled at login and running now (pid {}, socket {})\n",
            info.pid, info.socket
        ));
        return out;
    }
    let mut line = shell_line(commands);
    if let Some(pid) = running_pid {
        out.push_str(&format!(
            "a heph daemon is running (pid {pid}); the command below stops it first so the service can own the socket\n"
        ));
        line = format!("heph daemon stop && {line}");
    }
    let when = if replaced {
        "to use the new settings, run:"
    } else {
        "to start it now and at every login, run:"
    };
    out.push_str(&format!(
        "{when}\n  {line}\n(or run heph daemon install --now)\n"
    ));
    out
}

/// `uninstall` succeeded.
pub fn uninstalled_message(
    manager: Manager,
    unit: &Path,
    now: bool,
    forget: &[Vec<String>],
) -> String {
    let mut out = format!("removed the {}\n", manager.describe(unit));
    if !now {
        out.push_str(&format!(
            "a daemon it started keeps running; to stop it, run:\n  {}\n",
            shell_line(forget)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> DaemonInfo {
        DaemonInfo {
            version: "0.1.0".into(),
            pid: 4242,
            mode: "local".into(),
            db: "/home/u/.local/share/heph/heph.db".into(),
            socket: "/run/user/1000/heph/hephd.sock".into(),
            replica_id: "6f1c0a9e4b2d4c1f8a3e5b7d9c0e1f2a".into(),
            started_ms: 0,
            ops: 0,
            last_seq: 0,
            schema_version: 1,
        }
    }

    fn report(err: CliError) -> String {
        err.report().unwrap().to_string()
    }

    const UNIT: &str = "/home/u/.config/systemd/user/hephd.service";

    #[test]
    fn start_and_stop_sentences() {
        let socket = Path::new("/run/user/1000/heph/hephd.sock");
        insta::assert_snapshot!(already_running(&info()), @"the heph daemon is already running (pid 4242, socket /run/user/1000/heph/hephd.sock)");
        insta::assert_snapshot!(started(&info(), None, Some(Path::new("/home/u/.local/state/heph/hephd.log"))), @"
        started the heph daemon (pid 4242, socket /run/user/1000/heph/hephd.sock)
        its log is /home/u/.local/state/heph/hephd.log
        ");
        insta::assert_snapshot!(started(&info(), Some(&Manager::Systemd.describe(Path::new(UNIT))), None), @"
        started the heph daemon (pid 4242, socket /run/user/1000/heph/hephd.sock)
        managed by the systemd user unit /home/u/.config/systemd/user/hephd.service
        ");
        insta::assert_snapshot!(stopped(4242), @"stopped the heph daemon (pid 4242)");
        insta::assert_snapshot!(report(exited_early(
            "exited with status 2",
            socket,
            "error: the database /x.db was written by a newer hephd (schema 9)\nhint: upgrade hephd",
            Path::new("/home/u/.local/state/heph/hephd.log"),
        )), @"
        error: hephd exited with status 2 before answering on /run/user/1000/heph/hephd.sock
          error: the database /x.db was written by a newer hephd (schema 9)
          hint: upgrade hephd
        hint: the whole log: heph daemon logs (in /home/u/.local/state/heph/hephd.log)
        ");
        insta::assert_snapshot!(report(no_answer(4242, socket, &ClientError::NotRunning { socket: socket.into() })), @"
        error: hephd (pid 4242) started but did not answer on /run/user/1000/heph/hephd.sock within 10 s
        hint: heph daemon logs
        ");
        insta::assert_snapshot!(report(did_not_stop(4242)), @"
        error: the heph daemon (pid 4242) did not stop within 10 s
        hint: kill -9 4242
        ");
        insta::assert_snapshot!(report(service_did_not_answer(Manager::Systemd, Path::new(UNIT), socket)), @"
        error: the systemd user unit /home/u/.config/systemd/user/hephd.service was started but the daemon did not answer on /run/user/1000/heph/hephd.sock within 10 s
        hint: systemctl --user status hephd.service, and heph daemon logs
        ");
        insta::assert_snapshot!(report(tool_missing(Manager::Systemd, Path::new(UNIT))), @"
        error: the heph daemon is installed as a systemd user unit /home/u/.config/systemd/user/hephd.service, but systemctl is not available to run it
        hint: heph daemon uninstall, then heph daemon start
        ");
        insta::assert_snapshot!(report(tool_failed(
            Manager::Systemd,
            &Manager::Systemd.start_command(1000),
            "exited with status 5",
        )), @"
        error: systemctl --user start hephd.service exited with status 5
        hint: systemctl --user status hephd.service
        ");
        insta::assert_snapshot!(report(cannot_start_now(Manager::Systemd)), @"
        error: cannot start the service now: systemctl is not available
        hint: heph daemon install without --now, or heph daemon start
        ");
        insta::assert_snapshot!(report(no_log(Path::new("/home/u/.local/state/heph/hephd.log"))), @"
        error: there is no daemon log at /home/u/.local/state/heph/hephd.log
        hint: heph daemon start runs the daemon in the background with a log
        ");
    }

    #[test]
    fn install_sentences() {
        let unit = Path::new(UNIT);
        let fresh = Manager::Systemd.enable_commands(unit, 1000, false);
        let again = Manager::Systemd.enable_commands(unit, 1000, true);
        insta::assert_snapshot!(installed_message(Manager::Systemd, unit, false, &fresh, None, None), @"
        wrote the systemd user unit /home/u/.config/systemd/user/hephd.service
        to start it now and at every login, run:
          systemctl --user daemon-reload && systemctl --user enable --now hephd.service
        (or run heph daemon install --now)
        ");
        insta::assert_snapshot!(installed_message(Manager::Systemd, unit, true, &again, None, Some(4242)), @"
        rewrote the systemd user unit /home/u/.config/systemd/user/hephd.service
        a heph daemon is running (pid 4242); the command below stops it first so the service can own the socket
        to use the new settings, run:
          heph daemon stop && systemctl --user daemon-reload && systemctl --user enable hephd.service && systemctl --user restart hephd.service
        (or run heph daemon install --now)
        ");
        insta::assert_snapshot!(installed_message(Manager::Systemd, unit, false, &fresh, Some(&info()), None), @"
        wrote the systemd user unit /home/u/.config/systemd/user/hephd.service
        it is enabled at login and running now (pid 4242, socket /run/user/1000/heph/hephd.sock)
        ");
        insta::assert_snapshot!(uninstalled_message(Manager::Systemd, unit, false, &Manager::Systemd.forget_commands(1000)), @"
        removed the systemd user unit /home/u/.config/systemd/user/hephd.service
        a daemon it started keeps running; to stop it, run:
          systemctl --user stop hephd.service && systemctl --user daemon-reload
        ");
        insta::assert_snapshot!(uninstalled_message(Manager::Systemd, unit, true, &[]), @"removed the systemd user unit /home/u/.config/systemd/user/hephd.service");
        insta::assert_snapshot!(not_installed(unit), @"no heph service is installed (/home/u/.config/systemd/user/hephd.service does not exist)");
    }
}
