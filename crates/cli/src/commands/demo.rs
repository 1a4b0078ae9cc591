//! `heph demo`: the quickstart. Runs the real `heph` commands a newcomer
//! would type — start the daemon, add tasks and a note, list, finish, tag,
//! show, check the daemon — against a private home in a temporary
//! directory, printing each command and its output, then stops the daemon
//! and says how to run it for real. Nothing outside the temporary directory
//! is read or written. With `--keep`, the directory and the daemon stay,
//! and the commands to keep using them are printed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::context::Ctx;
use crate::exit::CliError;

/// `heph demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Leave the demo's daemon running in its directory and print how to use it
    #[arg(long)]
    pub keep: bool,
}

/// One step of the transcript: what it shows, and the `heph` arguments.
struct Step {
    why: &'static str,
    args: Vec<String>,
}

fn step(why: &'static str, args: &[&str]) -> Step {
    Step {
        why,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
    }
}

/// The environment that confines every path to `home`.
fn private_env(home: &Path) -> Vec<(&'static str, PathBuf)> {
    vec![
        ("HOME", home.join("home")),
        ("XDG_DATA_HOME", home.join("data")),
        ("XDG_CONFIG_HOME", home.join("config")),
        ("XDG_STATE_HOME", home.join("state")),
        ("XDG_RUNTIME_DIR", home.join("run")),
    ]
}

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

struct Runner<'a> {
    ctx: &'a Ctx,
    exe: PathBuf,
    home: PathBuf,
    ran: usize,
}

impl Runner<'_> {
    /// Runs `heph args…` in the private home; prints the command and its output.
    fn run(&mut self, s: &Step) -> Result<String, CliError> {
        let shown: Vec<String> = s.args.iter().map(|a| shell_word(a)).collect();
        self.ctx
            .out
            .print(&format!("\n# {}\n$ heph {}\n", s.why, shown.join(" ")))?;
        let mut cmd = Command::new(&self.exe);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HEPH_") && key != "HEPH_HEPHD" {
                cmd.env_remove(&key);
            }
        }
        cmd.envs(private_env(&self.home)).args(&s.args);
        let out = cmd
            .output()
            .map_err(|e| CliError::io("cannot run heph for the demo", e))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        self.ctx.out.print(&stdout)?;
        if !stderr.is_empty() {
            self.ctx.out.print(&stderr)?;
        }
        if !out.status.success() {
            return Err(CliError::failed(format!(
                "the demo step `heph {}` failed ({})",
                shown.join(" "),
                crate::launch::describe_exit(out.status)
            )));
        }
        self.ran += 1;
        Ok(stdout)
    }
}

/// The id of the first node whose line in `list` output mentions `title`.
fn id_of(list: &str, title: &str) -> Option<String> {
    list.lines()
        .find(|l| l.contains(title))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_owned)
}

pub fn run(ctx: &Ctx, args: Args) -> Result<(), CliError> {
    if ctx.json() {
        return Err(CliError::usage(
            "heph demo prints a transcript for people; it has no --json output",
        ));
    }
    let exe =
        std::env::current_exe().map_err(|e| CliError::io("cannot find the heph executable", e))?;
    let dir = tempfile_dir()?;
    let mut runner = Runner {
        ctx,
        exe,
        home: dir.clone(),
        ran: 0,
    };
    ctx.out.print(&format!(
        "Hephaestus demo: a private daemon and replica in {}\n(nothing outside that directory is touched)\n",
        dir.display()
    ))?;
    let result = script(&mut runner);
    // Stop the daemon whatever happened, unless asked to keep it.
    if !args.keep || result.is_err() {
        let _ = runner.run(&step(
            "stop the daemon (it finishes in-flight requests first)",
            &["daemon", "stop"],
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
    result?;
    let env: Vec<String> = private_env(&dir)
        .iter()
        .map(|(k, v)| format!("{k}={}", shell_word(&v.display().to_string())))
        .collect();
    let mut summary = format!(
        "\nThe demo ran {} real heph commands against a real hephd over its unix socket.\n",
        runner.ran
    );
    if args.keep {
        summary.push_str(&format!(
            "\nThe demo daemon is still running. To use it:\n  export {}\n  heph list --all\nStop it with `heph daemon stop` in that environment, then remove {}.\n",
            env.join(" "),
            dir.display()
        ));
    }
    summary.push_str(
        "\nTo run it for real:\n  heph daemon start        # or: heph daemon install --now (a systemd user service)\n  heph add Buy milk +home due:tomorrow\n  heph list\n",
    );
    ctx.out.print(&summary)
}

fn tempfile_dir() -> Result<PathBuf, CliError> {
    let base = std::env::temp_dir();
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

fn script(r: &mut Runner<'_>) -> Result<(), CliError> {
    r.run(&step(
        "start the daemon in the background; it owns the replica",
        &["daemon", "start"],
    ))?;
    r.run(&step(
        "add tasks; +tag, due: and pri: work inside the title",
        &["add", "Buy", "milk", "+home", "due:tomorrow", "pri:high"],
    ))?;
    r.run(&step(
        "flags work too",
        &[
            "add",
            "Write the quarterly report",
            "--due",
            "+3d",
            "--tag",
            "work",
        ],
    ))?;
    r.run(&step(
        "a note with a body",
        &["note", "Pancake recipe", "--body", "flour, milk, eggs"],
    ))?;
    let list = r.run(&step("open tasks, most urgent first", &["list"]))?;
    let milk = id_of(&list, "Buy milk")
        .ok_or_else(|| CliError::failed("the demo task is missing from `heph list`"))?;
    r.run(&step(
        "any unique prefix of an id will do",
        &["tag", &milk[..4], "errand"],
    ))?;
    r.run(&step("everything about one task", &["show", &milk[..4]]))?;
    r.run(&step("finish it", &["done", &milk[..4]]))?;
    r.run(&step(
        "everything, including done tasks and notes",
        &["list", "--all"],
    ))?;
    r.run(&step(
        "machine-readable output for scripts",
        &["--json", "tags"],
    ))?;
    r.run(&step("the daemon's state", &["daemon", "status"]))?;
    Ok(())
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
}
