//! The operator's commands for the built-in issuer, run on the hub machine
//! against the hub's database (the hub may be running: SQLite's WAL lets
//! both work on the file):
//! `hephd user add|passwd|disable|enable|list|invite` and
//! `hephd issuer rotate-key`.
//!
//! Passwords are read from the terminal with echo off (asked twice), or
//! as one line from standard input when it is not a terminal — never from
//! the command line. Each command prints one clear line of what it did.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use heph_core::hlc::Clock;
use heph_core::store::OpenOptions;
use heph_core::{Replica, ReplicaId, SqliteStore};

use super::grants::{check_username, normalize_username};
use super::passwords;
use super::store::IssuerStore;
use crate::db::{LocalReplica, SystemClock, random_bytes};
use crate::hub::members::{self, Role};

/// `hephd user …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum UserCommand {
    /// Create a local account (the password is read from the terminal or stdin)
    Add {
        /// The user name (letters, digits and . - _ @ +)
        name: String,
        /// The account's role on this hub [default: owner for the first member, else writer]
        #[arg(long, value_name = "ROLE")]
        role: Option<String>,
    },
    /// Set a new password for an account (read from the terminal or stdin)
    Passwd { name: String },
    /// Stop an account from signing in, and revoke every refresh token it holds
    Disable { name: String },
    /// Let a disabled account sign in again
    Enable { name: String },
    /// List the accounts with their subjects and roles
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Make a single-use link (valid 15 minutes) where someone sets their password
    Invite {
        /// The new user's name (an email address works)
        name: String,
        /// The role the account gets on this hub
        #[arg(long, value_name = "ROLE", default_value = "writer")]
        role: String,
    },
}

/// `hephd issuer …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum IssuerCommand {
    /// Start signing with a new key; the old one stays published until its tokens expire
    RotateKey,
}

/// An operator command failed; one sentence, with the fix where there is one.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AdminError(pub String);

fn fail(e: impl std::fmt::Display) -> AdminError {
    AdminError(e.to_string())
}

/// What the commands need to know.
pub struct AdminContext<'a> {
    pub db: &'a Path,
    /// The hub's public URL (for invite links), when the settings say it.
    pub public_url: Option<String>,
    /// How long access tokens live (how long a retired key stays published).
    pub access_ttl_secs: u64,
    /// Where invitations are mailed; `None` prints the link instead.
    pub mail: Option<super::mail::MailSettings>,
}

fn open(db: &Path) -> Result<(LocalReplica, IssuerStore), AdminError> {
    if let Some(dir) = db.parent() {
        crate::instance::create_private_dir(dir).map_err(fail)?;
    }
    let store = SqliteStore::open(db, &OpenOptions::default()).map_err(fail)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let replica =
        Replica::open(store, clock, u64::MAX / 2, || ReplicaId(random_bytes())).map_err(fail)?;
    let issuer = IssuerStore::open(db).map_err(fail)?;
    Ok((replica, issuer))
}

fn now_ms() -> i64 {
    SystemClock.now_ms() as i64
}

fn parse_role(role: &str) -> Result<Role, AdminError> {
    Role::parse(role).ok_or_else(|| {
        AdminError(format!(
            "{role:?} is not a role; use owner, writer or reader"
        ))
    })
}

/// Reads a new password: twice from a terminal, or one line from stdin.
fn read_new_password(name: &str) -> Result<String, AdminError> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = prompt_hidden(&format!("New password for {name}: "))?;
        passwords::check_new(&first).map_err(fail)?;
        let second = prompt_hidden("The same again: ")?;
        if first != second {
            return Err(AdminError(
                "the two passwords differ; nothing was changed".into(),
            ));
        }
        first
    } else {
        let mut line = String::new();
        stdin.lock().read_line(&mut line).map_err(|e| {
            AdminError(format!("cannot read the password from standard input: {e}"))
        })?;
        let line = line.trim_end_matches(['\n', '\r']).to_owned();
        if line.is_empty() {
            return Err(AdminError(
                "no password on standard input; pipe it in (printf '%s\\n' \"$PASSWORD\" | hephd user …) or run from a terminal".into(),
            ));
        }
        line
    };
    passwords::check_new(&password).map_err(fail)?;
    Ok(password)
}

/// Restores the terminal's echo when dropped.
struct EchoOff {
    saved: libc::termios,
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings read from the same fd.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.saved) };
    }
}

fn prompt_hidden(prompt: &str) -> Result<String, AdminError> {
    let mut err = std::io::stderr();
    let _ = write!(err, "{prompt}");
    let _ = err.flush();
    // SAFETY: tcgetattr/tcsetattr on stdin with a zeroed termios to fill.
    let guard = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(0, &mut t) != 0 {
            return Err(AdminError(
                "cannot read the terminal's settings to hide the password".into(),
            ));
        }
        let saved = t;
        t.c_lflag &= !libc::ECHO;
        t.c_lflag |= libc::ECHONL;
        libc::tcsetattr(0, libc::TCSANOW, &t);
        EchoOff { saved }
    };
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    drop(guard);
    read.map_err(|e| AdminError(format!("cannot read the password: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Runs `hephd user …`.
pub fn run_user(ctx: &AdminContext<'_>, cmd: UserCommand) -> Result<(), AdminError> {
    let (mut replica, mut issuer) = open(ctx.db)?;
    match cmd {
        UserCommand::Add { name, role } => {
            let name = check_username(&name).map_err(AdminError)?;
            if issuer.account(&name).map_err(fail)?.is_some() {
                return Err(AdminError(format!(
                    "an account named {name} already exists; change its password with hephd user passwd {name}"
                )));
            }
            let role = match role {
                Some(r) => parse_role(&r)?,
                None if members::load(&replica).map_err(fail)?.is_empty() => Role::Owner,
                None => Role::Writer,
            };
            let password = read_new_password(&name)?;
            let hash = passwords::hash(&password).map_err(fail)?;
            let sub = issuer.add_account(&name, &hash, now_ms()).map_err(fail)?;
            members::set_role(&mut replica, &sub, role).map_err(fail)?;
            println!(
                "added {name} (subject {sub}), {} of this hub; sign in on a device with: heph auth login --hub-url {}",
                role.with_article(),
                ctx.public_url.as_deref().unwrap_or("URL-OF-THIS-HUB")
            );
        }
        UserCommand::Passwd { name } => {
            let name = normalize_username(&name);
            if issuer.account(&name).map_err(fail)?.is_none() {
                return Err(AdminError(format!(
                    "there is no account named {name}; list them with hephd user list"
                )));
            }
            let password = read_new_password(&name)?;
            let hash = passwords::hash(&password).map_err(fail)?;
            issuer
                .change_password(&name, &hash, now_ms())
                .map_err(fail)?;
            println!(
                "changed the password of {name} and signed out every device signed in as {name}: they refresh no more, and their access tokens expire within {} minutes",
                ctx.access_ttl_secs.div_ceil(60)
            );
        }
        UserCommand::Disable { name } => {
            let name = normalize_username(&name);
            issuer.set_disabled(&name, true, now_ms()).map_err(fail)?;
            println!(
                "disabled {name}: it cannot sign in, its refresh tokens are revoked, and its access tokens expire within {} minutes",
                ctx.access_ttl_secs.div_ceil(60)
            );
        }
        UserCommand::Enable { name } => {
            let name = normalize_username(&name);
            issuer.set_disabled(&name, false, now_ms()).map_err(fail)?;
            println!(
                "enabled {name}: it can sign in again (devices must sign in anew with heph auth login)"
            );
        }
        UserCommand::List { json } => {
            let roles = members::load(&replica).map_err(fail)?;
            let accounts = issuer.accounts().map_err(fail)?;
            if json {
                let rows: Vec<serde_json::Value> = accounts
                    .iter()
                    .map(|a| {
                        serde_json::json!({
                            "name": a.username,
                            "sub": a.sub,
                            "role": roles.get(&a.sub).map(|r| r.as_str()),
                            "disabled": a.disabled,
                            "created_ms": a.created_ms,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else if accounts.is_empty() {
                println!("no accounts yet; add one with hephd user add NAME");
            } else {
                println!("{:<24} {:<20} {:<8} STATE", "NAME", "SUBJECT", "ROLE");
                for a in &accounts {
                    println!(
                        "{:<24} {:<20} {:<8} {}",
                        a.username,
                        a.sub,
                        roles.get(&a.sub).map_or("none", |r| r.as_str()),
                        if a.disabled { "disabled" } else { "active" }
                    );
                }
            }
        }
        UserCommand::Invite { name, role } => {
            let name = check_username(&name).map_err(AdminError)?;
            let role = parse_role(&role)?;
            if let Some(mail) = &ctx.mail {
                super::mail::check(mail).map_err(fail)?;
            }
            let secret = issuer
                .add_invite(&name, role.as_str(), now_ms(), 15 * 60_000)
                .map_err(fail)?;
            let Some(hub) = ctx.public_url.as_deref() else {
                return Err(AdminError(
                    "an invitation link needs the hub's public URL; add --public-url https://hub.example (or public_url in the config file, as the hub has it)".into(),
                ));
            };
            let link = format!("{hub}/invite?token={secret}");
            match &ctx.mail {
                Some(mail) => match super::mail::send_invite(mail, &name, hub, &link) {
                    Ok(()) => println!(
                        "mailed {name} a single-use link to set a password (valid 15 minutes); they become {} of this hub",
                        role.with_article()
                    ),
                    Err(e) => {
                        return Err(AdminError(format!(
                            "{e}; the invitation was not mailed, so pass this single-use link (valid 15 minutes) to {name} yourself:\n{link}"
                        )));
                    }
                },
                None => println!(
                    "send this single-use link to {name} (valid 15 minutes; whoever opens it first sets the password; set smtp_url to have it mailed):\n{link}"
                ),
            }
        }
    }
    Ok(())
}

/// Runs `hephd issuer …`.
pub fn run_issuer(ctx: &AdminContext<'_>, cmd: IssuerCommand) -> Result<(), AdminError> {
    let (_replica, mut issuer) = open(ctx.db)?;
    match cmd {
        IssuerCommand::RotateKey => {
            let keep = super::grants::retired_key_keep_ms(std::time::Duration::from_secs(
                ctx.access_ttl_secs,
            ));
            let key = issuer.rotate_key(now_ms(), keep).map_err(fail)?;
            println!(
                "the issuer now signs with key {}; the previous key stays published for {} more minutes so tokens it signed keep working",
                key.kid,
                (keep as u64).div_ceil(60_000)
            );
        }
    }
    Ok(())
}
