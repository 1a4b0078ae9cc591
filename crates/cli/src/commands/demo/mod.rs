//! `heph demo`: the quickstart. On this machine, in a temporary directory,
//! it runs the whole journey with the real programs: a hub that is its own
//! OpenID issuer (`hephd --builtin-issuer` on 127.0.0.1), an account on it,
//! two devices ("laptop" and "phone") each with its own daemon and replica,
//! both signed in with `heph auth login` through the device flow (the demo
//! plays the person at the browser), a task added on one arriving on the
//! other, then `heph auth status` and `heph sync --status`. Each step
//! prints why, the command, and its real output. Then it stops everything
//! and removes the directory, or with `--keep` leaves it all running and
//! says how to use it.
//!
//! Nothing outside the temporary directory is read or written, the hub
//! listens on loopback only, every wait is bounded, and a failure or Ctrl-C
//! stops everything the demo started ([`procs::Guard`]).

mod browser;
mod login;
mod procs;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::context::{Ctx, Out};
use crate::exit::CliError;
use crate::launch;
use procs::{Guard, Place, interrupted};

/// `heph demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Leave the demo's hub and daemons running in its directory and print how to use them
    #[arg(long)]
    pub keep: bool,
}

/// The demo account.
const ACCOUNT: &str = "demo";
/// How long the hub may take to listen and answer.
const HUB_WAIT: Duration = Duration::from_secs(15);
/// How long a change may take to travel from one device to the other.
const SYNC_WAIT: Duration = Duration::from_secs(15);
/// How often a retried command runs again.
const RETRY_EVERY: Duration = Duration::from_millis(200);
/// The line a hub logs once it listens.
const LISTENING: &str = "hub listening on ";

/// Quotes an argument for display when it needs it.
fn shell_word(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-_.:/=@".contains(c))
    {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// The id of the first node whose line in `list` output mentions `title`.
fn id_of(list: &str, title: &str) -> Option<String> {
    list.lines()
        .find(|l| l.contains(title))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_owned)
}

/// A step that went wrong: what the demo was doing, why, and which log says more.
struct StepFailed {
    step: String,
    cause: String,
    log: PathBuf,
    /// Writing the transcript failed (a closed pipe ends the demo quietly).
    stdout: Option<Box<CliError>>,
}

type Step<T> = Result<T, StepFailed>;

fn failed(step: &str, log: &Path, cause: impl std::fmt::Display) -> StepFailed {
    StepFailed {
        step: step.to_owned(),
        cause: cause.to_string(),
        log: log.to_owned(),
        stdout: None,
    }
}

/// The running demo: where it is, what it started, what it printed.
struct Demo<'a> {
    out: &'a Out,
    dir: PathBuf,
    heph: PathBuf,
    hephd: PathBuf,
    guard: Guard,
    /// Commands shown with their real output.
    ran: usize,
}

/// The hub, once it answers.
struct Hub {
    place: Place,
    url: String,
    pid: u32,
}

impl Demo<'_> {
    fn print(&self, text: &str) -> Step<()> {
        self.out.print(text).map_err(|e| StepFailed {
            stdout: Some(Box::new(e)),
            ..failed("print the transcript", &self.dir, "")
        })
    }

    /// `# why`, then `place$ command`.
    fn show(&self, why: &str, place: &Place, program: &str, args: &[&str]) -> Step<()> {
        let line: Vec<String> = std::iter::once(program.to_owned())
            .chain(args.iter().map(|a| shell_word(a)))
            .collect();
        self.print(&format!("\n# {why}\n{}$ {}\n", place.name, line.join(" ")))
    }

    /// Runs `heph args…` at `place` without showing it.
    fn heph_quietly(&self, place: &Place, args: &[&str]) -> Result<Output, String> {
        place
            .command(&self.heph)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {} ({e})", self.heph.display()))
    }

    /// Prints a command's output; fails the step when it failed.
    fn report(&mut self, step: &str, log: &Path, o: &Output) -> Step<String> {
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        self.print(&stdout)?;
        self.print(&stderr)?;
        if interrupted() {
            return Err(failed(step, log, "the demo was interrupted"));
        }
        if !o.status.success() {
            return Err(failed(step, log, launch::describe_exit(o.status)));
        }
        self.ran += 1;
        Ok(stdout)
    }

    /// Shows and runs `heph args…` at `place`; returns its stdout.
    fn heph(&mut self, place: &Place, why: &str, args: &[&str]) -> Step<String> {
        let step = format!("{}$ heph {}", place.name, args.join(" "));
        self.show(why, place, "heph", args)?;
        let o = self
            .heph_quietly(place, args)
            .map_err(|e| failed(&step, &place.log(), e))?;
        self.report(&step, &place.log(), &o)
    }

    /// Runs `heph args…` at `place` until its output satisfies `ready` (at
    /// most [`SYNC_WAIT`]), then shows only that last run.
    fn heph_until(
        &mut self,
        place: &Place,
        why: &str,
        args: &[&str],
        ready: impl Fn(&str) -> bool,
        waiting_for: &str,
    ) -> Step<String> {
        let step = format!("{}$ heph {}", place.name, args.join(" "));
        let deadline = Instant::now() + SYNC_WAIT;
        loop {
            let o = self
                .heph_quietly(place, args)
                .map_err(|e| failed(&step, &place.log(), e))?;
            let done = o.status.success() && ready(&String::from_utf8_lossy(&o.stdout));
            if done || Instant::now() >= deadline || interrupted() {
                self.show(why, place, "heph", args)?;
                let stdout = self.report(&step, &place.log(), &o)?;
                if !done {
                    return Err(failed(
                        &step,
                        &place.log(),
                        format!("{waiting_for} within {} s", SYNC_WAIT.as_secs()),
                    ));
                }
                return Ok(stdout);
            }
            sleep(RETRY_EVERY);
        }
    }

    /// Starts the hub as a child of the demo and waits until it answers.
    fn start_hub(&mut self) -> Step<Hub> {
        let place = Place::hub(&self.dir);
        let log = place.log();
        let step = "start the hub";
        let args = [
            "--mode",
            "server",
            "--builtin-issuer",
            "--listen",
            "127.0.0.1:0",
            "--db",
            "hub/heph.db",
            "--socket",
            "hub/hephd.sock",
            "--issuer-poll-interval",
            "1",
        ];
        self.show(
            "start a hub that is its own OpenID issuer, on a free port of 127.0.0.1, in the background\n\
# (its log is hub/hephd.log; the hidden --issuer-poll-interval 1 makes the sign-ins below quicker than the default 5 s)",
            &place,
            "hephd",
            &args,
        )?;
        let mut cmd = place.command(&self.hephd);
        cmd.args(args);
        let spawned = launch::spawn_command_detached(cmd, &log).map_err(|e| {
            failed(
                step,
                &log,
                e.report().map(|r| r.to_string()).unwrap_or_default().trim(),
            )
        })?;
        let pid = spawned.child.id();
        self.guard.hub(spawned.child);
        let deadline = Instant::now() + HUB_WAIT;
        let url = loop {
            let text = launch::read_since(&log, spawned.log_start)
                .map(|(bytes, _)| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default();
            if let Some(url) = text
                .lines()
                .filter_map(|l| l.split(LISTENING).nth(1))
                .map(|rest| rest.split_whitespace().next().unwrap_or_default())
                .find(|u| u.starts_with("http://127.0.0.1:"))
            {
                break url.to_owned();
            }
            if let Some(status) = self
                .guard
                .hub_child()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.print(&text)?;
                return Err(failed(
                    step,
                    &log,
                    format!("hephd {} before listening", launch::describe_exit(status)),
                ));
            }
            if interrupted() {
                return Err(failed(step, &log, "the demo was interrupted"));
            }
            if Instant::now() >= deadline {
                return Err(failed(
                    step,
                    &log,
                    format!("the hub did not listen within {} s", HUB_WAIT.as_secs()),
                ));
            }
            sleep(launch::STEP);
        };
        let health = format!("{url}/healthz");
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .new_agent();
        while !agent
            .get(&health)
            .call()
            .is_ok_and(|r| r.status().as_u16() == 200)
        {
            if interrupted() || Instant::now() >= deadline {
                return Err(failed(
                    step,
                    &log,
                    format!(
                        "{health} did not answer 200 within {} s",
                        HUB_WAIT.as_secs()
                    ),
                ));
            }
            sleep(launch::STEP);
        }
        let text = launch::read_since(&log, spawned.log_start)
            .map(|(bytes, _)| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        self.print(&text)?;
        self.ran += 1;
        Ok(Hub { place, url, pid })
    }

    /// `hephd user add demo`, the password on stdin.
    fn add_account(&mut self, hub: &Hub, password: &str) -> Step<()> {
        let step = "create the demo account";
        let log = hub.place.log();
        let args = [
            "user",
            "add",
            ACCOUNT,
            "--db",
            "hub/heph.db",
            "--public-url",
            &hub.url,
        ];
        self.show(
            "create an account on the hub (hephd reads its password from stdin: a random one)",
            &hub.place,
            "hephd",
            &args,
        )?;
        let mut child = hub
            .place
            .command(&self.hephd)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(step, &log, format!("cannot run hephd ({e})")))?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            writeln!(stdin, "{password}")
                .map_err(|e| failed(step, &log, format!("cannot give hephd the password ({e})")))?;
        }
        let o = child
            .wait_with_output()
            .map_err(|e| failed(step, &log, format!("hephd did not finish ({e})")))?;
        self.report(step, &log, &o).map(drop)
    }

    /// Starts a device's daemon.
    fn start_device(&mut self, device: &Place) -> Step<()> {
        let settings: Vec<String> = device
            .shown_env
            .iter()
            .map(|(k, v)| format!("{k}={}", shell_word(&device.shown(v))))
            .collect();
        self.guard.daemon(device.socket());
        self.heph(
            device,
            &format!(
                "the {0}: a private home in {0}/, set to sync with the hub and keep its sign-in in a file:\n#   {1}\n# start its daemon; it owns the {0}'s replica",
                device.name,
                settings.join(" ")
            ),
            &["daemon", "start"],
        )
        .map(drop)
    }

    /// Signs a device in through the device flow, approving as the demo account.
    fn sign_in(&mut self, device: &Place, hub: &Hub, password: &str) -> Step<()> {
        let step = format!("sign in the {}", device.name);
        let log = hub.place.log();
        let args = ["auth", "login", "--no-browser"];
        self.show(
            &format!(
                "sign the {} in: heph auth login asks the hub for a code, shows a link, and waits for someone to approve it",
                device.name
            ),
            device,
            "heph",
            &args,
        )?;
        let mut cmd = device.command(&self.heph);
        cmd.args(args);
        let mut run = login::Login::spawn(cmd)
            .map_err(|e| failed(&step, &log, format!("cannot run heph auth login ({e})")))?;
        let (lines, link) = run.wait_for_link().map_err(|e| failed(&step, &log, e))?;
        self.print(&transcript_lines(&lines))?;
        self.print(&format!(
            "\n# meanwhile the demo does what you would do in a browser: open the link, sign in as {ACCOUNT}, approve\n"
        ))?;
        let (requests, who) =
            browser::approve(&link, ACCOUNT, password).map_err(|e| failed(&step, &log, e))?;
        let mut text = String::new();
        for r in requests {
            text.push_str(&format!("  {r}\n"));
        }
        text.push_str(&format!(
            "\n# the {}'s heph auth login sees the approval, saves the tokens and hands them to its daemon\n",
            device.name
        ));
        self.print(&text)?;
        let finished = run.finish().map_err(|e| failed(&step, &log, e))?;
        self.print(&transcript_lines(&finished.notes))?;
        self.print(&finished.stdout)?;
        if who != ACCOUNT {
            return Err(failed(
                &step,
                &log,
                format!("the approval page signed in {who:?}, not {ACCOUNT:?}"),
            ));
        }
        self.ran += 1;
        Ok(())
    }

    /// The whole journey.
    fn script(&mut self) -> Step<Journey> {
        let hub = self.start_hub()?;
        let password = random_password().map_err(|e| failed("make a password", &self.dir, e))?;
        self.add_account(&hub, &password)?;
        let laptop = Place::device(&self.dir, "laptop", &hub.url, &self.hephd);
        let phone = Place::device(&self.dir, "phone", &hub.url, &self.hephd);
        for device in [&laptop, &phone] {
            self.start_device(device)?;
            self.sign_in(device, &hub, &password)?;
        }
        self.heph(
            &laptop,
            "add tasks on the laptop; +tag, due: and pri: work inside the title",
            &["add", "Buy", "milk", "+home", "due:tomorrow", "pri:high"],
        )?;
        self.heph(
            &laptop,
            "flags work too",
            &[
                "add",
                "Write the quarterly report",
                "--due",
                "+3d",
                "--tag",
                "work",
            ],
        )?;
        self.heph(
            &laptop,
            "sync now (the daemon also syncs by itself right after every change)",
            &["sync"],
        )?;
        let list = self.heph_until(
            &phone,
            "on the phone they have arrived: its daemon long-polls the hub",
            &["list"],
            |out| out.contains("Buy milk") && out.contains("Write the quarterly report"),
            "the tasks added on the laptop did not reach the phone",
        )?;
        let milk = id_of(&list, "Buy milk").ok_or_else(|| {
            failed(
                "find the task on the phone",
                &phone.log(),
                "the task is missing from heph list",
            )
        })?;
        self.heph(&phone, "finish one on the phone", &["done", &milk])?;
        self.heph_until(
            &laptop,
            "and the laptop sees it done",
            &["list", "--all"],
            |out| {
                out.lines()
                    .any(|l| l.contains("Buy milk") && l.split_whitespace().any(|w| w == "done"))
            },
            "the task finished on the phone was not done on the laptop",
        )?;
        self.heph(
            &laptop,
            "how the laptop's sign-in stands (its daemon refreshes the tokens by itself)",
            &["auth", "status"],
        )?;
        self.heph(
            &laptop,
            "how the laptop's sync stands",
            &["sync", "--status"],
        )?;
        Ok(Journey {
            hub,
            password,
            devices: vec![laptop, phone],
        })
    }

    /// Stops the devices' daemons and the hub, showing how.
    fn stop(&mut self, journey: &Journey) -> Step<()> {
        for device in journey.devices.iter().rev() {
            self.heph(
                device,
                &format!(
                    "stop the {}'s daemon (it finishes in-flight requests first)",
                    device.name
                ),
                &["daemon", "stop"],
            )?;
        }
        let hub = &journey.hub;
        let pid = hub.pid.to_string();
        self.show(
            "stop the hub the same way: SIGTERM",
            &hub.place,
            "kill",
            &["-TERM", &pid],
        )?;
        let status = self.guard.stop_hub();
        let (tail, _) = launch::read_tail(&hub.place.log(), 1, 0).unwrap_or_default();
        self.print(&format!("{}\n", launch::last_lines(&tail, 1).join("\n")))?;
        match status {
            Some(s) if s.success() => {
                self.ran += 1;
                Ok(())
            }
            Some(s) => Err(failed(
                "stop the hub",
                &hub.place.log(),
                launch::describe_exit(s),
            )),
            None => Err(failed("stop the hub", &hub.place.log(), "it did not stop")),
        }
    }
}

/// What the journey left behind.
struct Journey {
    hub: Hub,
    password: String,
    devices: Vec<Place>,
}

/// Stderr lines of `heph auth login` for the transcript (it draws no QR
/// code when its stderr is not a terminal).
fn transcript_lines(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// A throwaway password for the demo account: 16 random letters and digits.
fn random_password() -> std::io::Result<String> {
    const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut out = String::new();
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(char::from(ALPHABET[usize::from(b % 32)]));
    }
    Ok(out)
}

/// What the closing summary needs.
struct Summary {
    ran: usize,
    secs: f64,
    hub_url: String,
    dir: String,
    keep: Option<Kept>,
}

/// What `--keep` left running.
struct Kept {
    /// `(name, the variables that make heph use that device)`.
    devices: Vec<(String, Vec<(String, String)>)>,
    hub_pid: u32,
    hub_log: String,
    password: String,
    /// How to call heph from any shell.
    heph: String,
}

fn summary_text(s: &Summary) -> String {
    let mut lines: Vec<String> = vec![
        String::new(),
        format!(
            "What ran: {} real commands in {:.1} s, all on this machine.",
            s.ran, s.secs
        ),
        format!(
            "  hub      {}: hephd --mode server --builtin-issuer, its own OpenID issuer",
            s.hub_url
        ),
        format!("  account  {ACCOUNT}, made with hephd user add"),
        "  devices  laptop and phone: a daemon and a replica each, signed in through the device flow".into(),
        "  sync     the tasks added on the laptop reached the phone; the one finished on the phone is done on the laptop".into(),
    ];
    match &s.keep {
        None => lines.push(format!("Everything was stopped and {} removed.", s.dir)),
        Some(k) => {
            // Paths under the demo directory are written "$D/…", so the lines stay short.
            let prefix = format!("{}/", s.dir);
            let value = |v: &str| match v.strip_prefix(&prefix) {
                Some(rest) => format!("\"$D/{rest}\""),
                None => shell_word(v),
            };
            lines.push(String::new());
            lines.push(format!(
                "Still running (--keep): the hub (pid {}, its log {}) and both daemons.",
                k.hub_pid, k.hub_log
            ));
            lines.push("To use a device, in another shell:".into());
            lines.push(format!("  D={}", shell_word(&s.dir)));
            for (name, env) in &k.devices {
                let vars: Vec<String> = env
                    .iter()
                    .map(|(key, v)| format!("{key}={}", value(v)))
                    .collect();
                lines.push(format!("  # the {name}"));
                lines.push(format!("  export {}", vars.join(" ")));
            }
            lines.push(format!(
                "  {0} list --all; {0} add Call the plumber +home; {0} sync --status",
                k.heph
            ));
            lines.push(format!(
                "The demo account is {ACCOUNT}, password {} (a throwaway for this local demo):",
                k.password
            ));
            lines.push(format!(
                "sign in with it at {}/device when a device shows a code.",
                s.hub_url
            ));
            lines.push("To stop everything (D as above):".into());
            for (name, env) in &k.devices {
                if let Some((_, run)) = env.iter().find(|(key, _)| key == "XDG_RUNTIME_DIR") {
                    lines.push(format!(
                        "  HEPH_SOCKET={} {} daemon stop    # the {name}",
                        value(&format!("{run}/heph/hephd.sock")),
                        k.heph
                    ));
                }
            }
            lines.push(format!("  kill {}    # the hub", k.hub_pid));
            lines.push("  rm -rf \"$D\"".into());
        }
    }
    lines.extend(
        [
            "",
            "To run it for real:",
            "  on the server    hephd --mode server --builtin-issuer --public-url https://hub.example",
            "                     # on 127.0.0.1:7447 behind your TLS proxy, or --tls-cert/--tls-key (docs/operations.md)",
            "                   hephd user add you           # asks for a password",
            "  on each device   export HEPH_HUB_URL=https://hub.example   # or hub_url = \"…\" in ~/.config/heph/config.toml",
            "                   heph auth login              # open the link it shows, sign in as you, approve",
            "                   heph daemon install --now    # a systemd user service (launchd on macOS) with these settings",
        ]
        .map(str::to_owned),
    );
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

fn tempfile_dir() -> Result<PathBuf, CliError> {
    let base = std::path::absolute(std::env::temp_dir())
        .map_err(|e| CliError::io("cannot find the temporary directory", e))?;
    for attempt in 0..100u32 {
        let dir = base.join(format!("heph-demo-{}-{attempt}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(CliError::io("cannot create the demo directory", e)),
        }
    }
    Err(CliError::failed(
        "cannot find a free name for the demo directory",
    ))
}

/// How to call this `heph` from another shell: `heph` when that is this
/// program on `PATH`, else its full path.
fn heph_for_shell(exe: &Path) -> String {
    let on_path = launch::find_in_path("heph", std::env::var_os("PATH").as_deref());
    let same = on_path
        .and_then(|p| std::fs::canonicalize(p).ok())
        .zip(std::fs::canonicalize(exe).ok())
        .is_some_and(|(a, b)| a == b);
    if same {
        "heph".into()
    } else {
        shell_word(&exe.display().to_string())
    }
}

pub fn run(ctx: &Ctx, args: Args) -> Result<(), CliError> {
    if ctx.json() {
        return Err(CliError::usage(
            "heph demo prints a transcript for people; it has no --json output",
        ));
    }
    let started = Instant::now();
    let heph =
        std::env::current_exe().map_err(|e| CliError::io("cannot find the heph executable", e))?;
    let hephd = launch::find_hephd(
        ctx.settings.hephd.as_deref(),
        Some(&heph),
        std::env::var_os("PATH").as_deref(),
    )?;
    procs::catch_interrupts();
    let dir = tempfile_dir()?;
    ctx.out.print(&format!(
        "Hephaestus demo: a hub and two devices on this machine, in {}\n\
(nothing outside that directory is touched; the hub listens on 127.0.0.1 only)\n",
        dir.display()
    ))?;
    let mut demo = Demo {
        out: &ctx.out,
        dir: dir.clone(),
        heph: heph.clone(),
        hephd,
        guard: Guard::default(),
        ran: 0,
    };
    let result = demo.script().and_then(|journey| {
        if !args.keep {
            demo.stop(&journey)?;
        }
        Ok(journey)
    });
    let journey = match result {
        Ok(j) => j,
        Err(f) => {
            let stuck = demo.guard.stop_all();
            let stopped = match stuck.first() {
                None => "everything it started was stopped".to_owned(),
                Some(s) => format!(
                    "everything it started was stopped except the daemon on {}",
                    s.display()
                ),
            };
            if let Some(e) = f.stdout {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(*e);
            }
            if interrupted() {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(CliError::failed(format!(
                    "the demo was interrupted at `{}`; {stopped} and {} removed",
                    f.step,
                    dir.display()
                )));
            }
            return Err(CliError::with_hint(
                format!("the demo failed at `{}`: {}", f.step, f.cause),
                format!(
                    "its log is {}; {stopped}, and {} is kept for the logs",
                    f.log.display(),
                    dir.display()
                ),
            ));
        }
    };
    let keep = if args.keep {
        let hub_pid = demo.guard.release().unwrap_or(journey.hub.pid);
        Some(Kept {
            devices: journey
                .devices
                .iter()
                .map(|d| {
                    let env = d
                        .env
                        .iter()
                        .filter(|(k, _)| k != "HEPH_HEPHD")
                        .cloned()
                        .collect();
                    (d.name.to_owned(), env)
                })
                .collect(),
            hub_pid,
            hub_log: journey.hub.place.log().display().to_string(),
            password: journey.password.clone(),
            heph: heph_for_shell(&heph),
        })
    } else {
        let _ = std::fs::remove_dir_all(&dir);
        None
    };
    let summary = Summary {
        ran: demo.ran,
        secs: started.elapsed().as_secs_f64(),
        hub_url: journey.hub.url.clone(),
        dir: dir.display().to_string(),
        keep,
    };
    ctx.out.print(&summary_text(&summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("due:tomorrow"), "due:tomorrow");
        assert_eq!(shell_word("Write the report"), "'Write the report'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn ids_come_from_list_lines() {
        let list = "ID        PRI   DUE         STATUS  TITLE\n2422eda7  high  2026-11-26  todo    Buy milk +home\n";
        assert_eq!(id_of(list, "Buy milk").as_deref(), Some("2422eda7"));
        assert_eq!(id_of(list, "Nope"), None);
    }

    #[test]
    fn passwords_are_random_and_long_enough() {
        let a = random_password().unwrap();
        assert_eq!(a.len(), 19, "{a}");
        assert_ne!(a, random_password().unwrap());
    }

    fn summary(keep: bool) -> Summary {
        Summary {
            ran: 17,
            secs: 4.25,
            hub_url: "http://127.0.0.1:40001".into(),
            dir: "/tmp/heph-demo-7-0".into(),
            keep: keep.then(|| Kept {
                devices: vec![(
                    "laptop".into(),
                    vec![
                        ("HOME".into(), "/tmp/heph-demo-7-0/laptop/home".into()),
                        (
                            "XDG_RUNTIME_DIR".into(),
                            "/tmp/heph-demo-7-0/laptop/run".into(),
                        ),
                        ("HEPH_TOKEN_STORE".into(), "file".into()),
                    ],
                )],
                hub_pid: 42,
                hub_log: "/tmp/heph-demo-7-0/hub/hephd.log".into(),
                password: "abcd-efgh-ijkm-npqr".into(),
                heph: "heph".into(),
            }),
        }
    }

    #[test]
    fn the_summary_says_what_ran_and_how_to_run_it_for_real() {
        insta::assert_snapshot!("summary", summary_text(&summary(false)));
        insta::assert_snapshot!("summary_with_keep", summary_text(&summary(true)));
    }
}
