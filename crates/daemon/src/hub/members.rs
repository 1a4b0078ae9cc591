//! Hub members (DESIGN §7.1): which OpenID subjects may use this hub, and
//! with which [`Role`].
//!
//! The table lives in the replica's metadata under [`MEMBERS_KEY`] as one
//! JSON object `{sub: role}`, read and written on the database thread, so
//! every change is one transaction and the hub reads it fresh for each
//! request (no cache to go stale; see docs/decisions.md). This module owns
//! the `hub.grant`, `hub.revoke` and `hub.members` RPC methods; who may call
//! them (the local socket, or an owner's token over `/rpc`) is decided by
//! the caller ([`auth`](super::auth), [`routes`](super::routes)).

use std::collections::BTreeMap;

use heph_core::Store;
use heph_core::rpc::{HubMember, HubMembers, Method, RpcError, code};
use serde::Deserialize;
use serde_json::Value;

use crate::db::{Db, LocalReplica};
use crate::rpc::methods::{Context, store_error};

/// The metadata key of the members table.
pub const MEMBERS_KEY: &str = "hub.members";

/// What a member may do. Ordered: each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Pull and read-only RPC.
    Reader,
    /// Also push and every node-editing RPC.
    Writer,
    /// Also manage members.
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Owner => "owner",
        }
    }

    /// The role with its article, for sentences: "an owner", "a writer".
    pub fn with_article(self) -> &'static str {
        match self {
            Role::Reader => "a reader",
            Role::Writer => "a writer",
            Role::Owner => "an owner",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "reader" => Some(Role::Reader),
            "writer" => Some(Role::Writer),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }

    /// The least role allowed to call `method` over `/rpc`.
    pub fn needed_for(method: Method) -> Role {
        // Exhaustive on purpose: a new method does not compile until it is
        // given a role here.
        match method {
            Method::NodeGet
            | Method::NodeList
            | Method::TagsList
            | Method::DaemonInfo
            | Method::SyncStatus
            | Method::AuthStatus
            | Method::EventsSubscribe => Role::Reader,
            Method::NodeCreate
            | Method::NodeUpdate
            | Method::NodeDelete
            | Method::NodeTag
            | Method::NodeLink
            | Method::SyncNow
            | Method::AuthReload => Role::Writer,
            Method::HubGrant | Method::HubRevoke | Method::HubMembers => Role::Owner,
        }
    }
}

/// The command an operator runs on the hub machine to admit `sub`.
pub fn grant_hint(sub: &str, role: Role) -> String {
    format!(
        "heph hub grant {} --role {}",
        shell_word(sub),
        role.as_str()
    )
}

/// `s` as one shell word (subjects are often UUIDs or emails; quote the rest).
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@:+=/".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The members table.
pub fn load(r: &LocalReplica) -> Result<BTreeMap<String, Role>, heph_core::StoreError> {
    let Some(text) = r.store().meta(MEMBERS_KEY)? else {
        return Ok(BTreeMap::new());
    };
    let raw: BTreeMap<String, String> = serde_json::from_str(&text).unwrap_or_default();
    Ok(raw
        .into_iter()
        .filter_map(|(sub, role)| Role::parse(&role).map(|r| (sub, r)))
        .collect())
}

fn save(
    r: &mut LocalReplica,
    members: &BTreeMap<String, Role>,
) -> Result<(), heph_core::StoreError> {
    let raw: BTreeMap<&str, &str> = members
        .iter()
        .map(|(s, r)| (s.as_str(), r.as_str()))
        .collect();
    let text = serde_json::to_string(&raw).unwrap_or_else(|_| "{}".into());
    r.set_meta(&[(MEMBERS_KEY, &text)])
}

/// What the hub knows about a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    Member(Role),
    NotMember,
    /// The hub has no member at all.
    Empty,
}

/// Looks `sub` up.
pub fn membership(r: &LocalReplica, sub: &str) -> Result<Membership, heph_core::StoreError> {
    let members = load(r)?;
    Ok(match members.get(sub) {
        Some(role) => Membership::Member(*role),
        None if members.is_empty() => Membership::Empty,
        None => Membership::NotMember,
    })
}

/// Makes `sub` an owner when it is not a member yet (`hephd --owner-sub`).
pub fn seed_owner(r: &mut LocalReplica, sub: &str) -> Result<bool, heph_core::StoreError> {
    let mut members = load(r)?;
    if members.get(sub) == Some(&Role::Owner) {
        return Ok(false);
    }
    members.insert(sub.to_owned(), Role::Owner);
    save(r, &members)?;
    Ok(true)
}

/// Gives `sub` exactly `role` (an invite redeemed, `hephd user add`);
/// returns the role it had before.
pub fn set_role(
    r: &mut LocalReplica,
    sub: &str,
    role: Role,
) -> Result<Option<Role>, heph_core::StoreError> {
    let mut members = load(r)?;
    let before = members.insert(sub.to_owned(), role);
    if before != Some(role) {
        save(r, &members)?;
    }
    Ok(before)
}

/// Checks a subject given to grant/revoke.
pub fn check_sub(sub: &str) -> Result<(), String> {
    if sub.is_empty() || sub.len() > 255 || sub.chars().any(char::is_control) {
        return Err("a subject is 1 to 255 printable characters: the sub claim of the member's tokens (heph auth status shows it)".into());
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantParams {
    sub: String,
    role: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeParams {
    sub: String,
}

fn listing(members: &BTreeMap<String, Role>, message: String) -> HubMembers {
    HubMembers {
        members: members
            .iter()
            .map(|(sub, role)| HubMember {
                sub: sub.clone(),
                role: role.as_str().to_owned(),
            })
            .collect(),
        message,
    }
}

fn invalid(message: impl Into<String>) -> RpcError {
    RpcError::new(code::INVALID_PARAMS, message)
}

fn grant(r: &mut LocalReplica, p: GrantParams) -> Result<HubMembers, RpcError> {
    check_sub(&p.sub).map_err(invalid)?;
    let role = Role::parse(&p.role).ok_or_else(|| {
        invalid(format!(
            "{:?} is not a role; use owner, writer or reader",
            p.role
        ))
    })?;
    let mut members = load(r).map_err(store_error)?;
    let before = members.get(&p.sub).copied();
    let owners = members.values().filter(|r| **r == Role::Owner).count();
    if before == Some(Role::Owner) && role != Role::Owner && owners == 1 {
        return Err(invalid(format!(
            "{} is the hub's only owner; grant another owner first, then change this one",
            p.sub
        )));
    }
    members.insert(p.sub.clone(), role);
    save(r, &members).map_err(store_error)?;
    let message = match before {
        Some(b) if b == role => format!("{} already was {}", p.sub, role.with_article()),
        Some(b) => format!(
            "{} is now {} (was {})",
            p.sub,
            role.with_article(),
            b.with_article()
        ),
        None => format!("{} is now {}", p.sub, role.with_article()),
    };
    Ok(listing(&members, message))
}

fn revoke(r: &mut LocalReplica, p: RevokeParams) -> Result<HubMembers, RpcError> {
    let mut members = load(r).map_err(store_error)?;
    let owners = members.values().filter(|r| **r == Role::Owner).count();
    match members.get(&p.sub) {
        None => {
            return Err(RpcError::new(
                code::NOT_FOUND,
                format!(
                    "{} is not a member of this hub; heph hub members lists them",
                    p.sub
                ),
            ));
        }
        Some(Role::Owner) if owners == 1 => {
            return Err(invalid(format!(
                "{} is the hub's only owner; grant another owner first, then revoke this one",
                p.sub
            )));
        }
        Some(_) => {}
    }
    members.remove(&p.sub);
    save(r, &members).map_err(store_error)?;
    Ok(listing(
        &members,
        format!("{} is no longer a member", p.sub),
    ))
}

/// Runs `hub.grant`, `hub.revoke` or `hub.members` on a hub's replica.
pub async fn rpc(ctx: &Context, db: &Db, method: Method, raw: Value) -> Result<Value, RpcError> {
    if ctx.info.mode != "server" {
        return Err(RpcError::new(
            code::NOT_CONFIGURED,
            format!(
                "{method} manages a hub's members and this daemon is not a hub; run it on the hub machine"
            ),
        ));
    }
    let raw = if raw.is_null() {
        serde_json::json!({})
    } else {
        raw
    };
    let bad = |e: serde_json::Error| invalid(format!("invalid params for {method}: {e}"));
    let result = match method {
        Method::HubMembers => {
            let _: serde_json::Map<String, Value> = serde_json::from_value(raw).map_err(bad)?;
            db.call(|r| {
                load(r)
                    .map(|m| listing(&m, String::new()))
                    .map_err(store_error)
            })
            .await
        }
        Method::HubGrant => {
            let p: GrantParams = serde_json::from_value(raw).map_err(bad)?;
            db.call(move |r| grant(r, p)).await
        }
        Method::HubRevoke => {
            let p: RevokeParams = serde_json::from_value(raw).map_err(bad)?;
            db.call(move |r| revoke(r, p)).await
        }
        _ => {
            return Err(RpcError::new(
                code::METHOD_NOT_FOUND,
                format!("no method {method}; the hub has hub.grant, hub.revoke and hub.members"),
            ));
        }
    };
    let members = result.map_err(|_| {
        RpcError::new(
            code::SHUTTING_DOWN,
            "the daemon is shutting down; try again once it has restarted",
        )
    })??;
    if method != Method::HubMembers {
        tracing::info!(method = method.as_str(), change = %members.message, "hub members changed");
    }
    serde_json::to_value(members).map_err(|e| RpcError::new(code::INTERNAL, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_order_and_method_needs() {
        assert!(Role::Owner > Role::Writer && Role::Writer > Role::Reader);
        assert_eq!(Role::needed_for(Method::NodeList), Role::Reader);
        assert_eq!(Role::needed_for(Method::NodeCreate), Role::Writer);
        assert_eq!(Role::needed_for(Method::SyncNow), Role::Writer);
        assert_eq!(Role::needed_for(Method::HubMembers), Role::Owner);
        assert_eq!(Role::needed_for(Method::HubGrant), Role::Owner);
    }

    fn hub_ctx(dir: &std::path::Path) -> (Context, Db) {
        let (db, _thread) = Db::open(
            &dir.join("hub.db"),
            300_000,
            std::sync::Arc::new(crate::db::SystemClock),
        )
        .unwrap();
        let info = crate::rpc::methods::StaticInfo {
            mode: "server".into(),
            db: String::new(),
            socket: String::new(),
            started_ms: 0,
        };
        (Context::local(db.clone(), info, 0), db)
    }

    async fn call(
        ctx: &Context,
        db: &Db,
        method: &str,
        params: Value,
    ) -> Result<HubMembers, String> {
        rpc(ctx, db, Method::parse(method).unwrap(), params)
            .await
            .map(|v| serde_json::from_value(v).unwrap())
            .map_err(|e| e.message)
    }

    #[tokio::test]
    async fn grant_revoke_and_the_last_owner_rule() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, db) = hub_ctx(dir.path());
        let m = call(&ctx, &db, "hub.members", Value::Null).await.unwrap();
        assert!(m.members.is_empty());
        assert!(db.call(|r| seed_owner(r, "alice").unwrap()).await.unwrap());
        assert!(
            !db.call(|r| seed_owner(r, "alice").unwrap()).await.unwrap(),
            "seeding twice changes nothing"
        );
        let m = call(
            &ctx,
            &db,
            "hub.grant",
            serde_json::json!({"sub": "bob", "role": "reader"}),
        )
        .await
        .unwrap();
        assert_eq!(m.message, "bob is now a reader");
        assert_eq!(m.members.len(), 2);
        let m = call(
            &ctx,
            &db,
            "hub.grant",
            serde_json::json!({"sub": "bob", "role": "reader"}),
        )
        .await
        .unwrap();
        assert_eq!(m.message, "bob already was a reader");
        let e = call(
            &ctx,
            &db,
            "hub.grant",
            serde_json::json!({"sub": "bob", "role": "admin"}),
        )
        .await
        .unwrap_err();
        assert_eq!(e, "\"admin\" is not a role; use owner, writer or reader");
        let e = call(
            &ctx,
            &db,
            "hub.grant",
            serde_json::json!({"sub": "", "role": "reader"}),
        )
        .await
        .unwrap_err();
        assert!(
            e.starts_with("a subject is 1 to 255 printable characters"),
            "{e}"
        );
        let e = call(
            &ctx,
            &db,
            "hub.grant",
            serde_json::json!({"sub": "alice", "role": "writer"}),
        )
        .await
        .unwrap_err();
        assert!(e.contains("only owner; grant another owner first"), "{e}");
        let e = call(&ctx, &db, "hub.revoke", serde_json::json!({"sub": "alice"}))
            .await
            .unwrap_err();
        assert!(e.contains("only owner"), "{e}");
        let e = call(
            &ctx,
            &db,
            "hub.revoke",
            serde_json::json!({"sub": "nobody"}),
        )
        .await
        .unwrap_err();
        assert_eq!(
            e,
            "nobody is not a member of this hub; heph hub members lists them"
        );
        call(
            &ctx,
            &db,
            "hub.grant",
            serde_json::json!({"sub": "bob", "role": "owner"}),
        )
        .await
        .unwrap();
        let m = call(&ctx, &db, "hub.revoke", serde_json::json!({"sub": "alice"}))
            .await
            .unwrap();
        assert_eq!(
            m.members,
            vec![HubMember {
                sub: "bob".into(),
                role: "owner".into()
            }]
        );
        let e = call(
            &ctx,
            &db,
            "hub.grant",
            serde_json::json!({"sub": "x", "role": "reader", "extra": 1}),
        )
        .await
        .unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        let who = db.call(|r| membership(r, "bob").unwrap()).await.unwrap();
        assert_eq!(who, Membership::Member(Role::Owner));
        let who = db.call(|r| membership(r, "alice").unwrap()).await.unwrap();
        assert_eq!(who, Membership::NotMember);
    }

    #[tokio::test]
    async fn hub_methods_refuse_on_a_daemon_that_is_not_a_hub() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ctx, db) = hub_ctx(dir.path());
        ctx.info.mode = "local".into();
        let e = call(&ctx, &db, "hub.members", Value::Null)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            "hub.members manages a hub's members and this daemon is not a hub; run it on the hub machine"
        );
    }

    #[test]
    fn grant_hint_quotes_subjects_for_the_shell() {
        assert_eq!(
            grant_hint("alice", Role::Writer),
            "heph hub grant alice --role writer"
        );
        assert_eq!(
            grant_hint("a b'c", Role::Owner),
            r"heph hub grant 'a b'\''c' --role owner"
        );
        assert_eq!(
            grant_hint("auth0|123", Role::Reader),
            "heph hub grant 'auth0|123' --role reader"
        );
    }
}
