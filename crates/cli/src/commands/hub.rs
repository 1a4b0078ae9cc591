//! `heph hub grant|revoke|members`: manage who may use a hub (DESIGN §7.1).
//!
//! Run on the hub machine, these talk to the hub's own daemon over its
//! local socket (the operator is trusted there); against a client-mode
//! daemon they reach the hub's `/rpc` and need an owner's token. The hub
//! decides; this only sends `hub.grant`, `hub.revoke`, `hub.members` and
//! prints the members afterwards.

use heph_core::rpc::{HubMembers, method};
use serde_json::json;

use crate::context::Ctx;
use crate::exit::CliError;

/// `heph hub`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: HubCommand,
}

/// The roles a member can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Pull and read; no push
    Reader,
    /// Pull, push and edit
    Writer,
    /// Everything, and manage members
    Owner,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Owner => "owner",
        }
    }
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum HubCommand {
    /// Admit an OpenID subject (the sub claim; heph auth status shows yours) with a role
    Grant {
        /// The subject, exactly as the identity provider puts it in `sub`
        sub: String,
        /// What the member may do
        #[arg(long, value_enum, default_value = "writer")]
        role: Role,
    },
    /// Remove a member
    Revoke {
        /// The subject to remove
        sub: String,
    },
    /// List the members and their roles
    Members,
}

/// The members table as text: one `role  sub` line each, then the change.
pub fn members_text(m: &HubMembers) -> String {
    let mut out = String::new();
    if !m.message.is_empty() {
        out.push_str(&format!("{}\n", m.message));
    }
    if m.members.is_empty() {
        out.push_str(
            "this hub has no members; add the first owner with: heph hub grant SUB --role owner\n",
        );
    }
    for member in &m.members {
        out.push_str(&format!("{:<7} {}\n", member.role, member.sub));
    }
    out
}

pub fn run(ctx: &Ctx, args: Args) -> Result<(), CliError> {
    let mut client = ctx.client()?;
    let members: HubMembers = match args.command {
        HubCommand::Grant { sub, role } => client.call(
            method::HUB_GRANT,
            json!({"sub": sub, "role": role.as_str()}),
        )?,
        HubCommand::Revoke { sub } => client.call(method::HUB_REVOKE, json!({"sub": sub}))?,
        HubCommand::Members => client.call(method::HUB_MEMBERS, json!({}))?,
    };
    if ctx.json() {
        ctx.out.json(&members)
    } else {
        ctx.out.print(&members_text(&members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heph_core::rpc::HubMember;

    #[test]
    fn members_views() {
        let m = HubMembers {
            members: vec![
                HubMember {
                    sub: "alice".into(),
                    role: "owner".into(),
                },
                HubMember {
                    sub: "rita".into(),
                    role: "reader".into(),
                },
            ],
            message: "rita is now a reader".into(),
        };
        assert_eq!(
            members_text(&m),
            "rita is now a reader\nowner   alice\nreader  rita\n"
        );
        assert_eq!(
            members_text(&HubMembers::default()),
            "this hub has no members; add the first owner with: heph hub grant SUB --role owner\n"
        );
    }
}
