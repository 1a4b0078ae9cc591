//! The RPC methods of DESIGN §6: what each does to the replica.
//!
//! [`dispatch`] takes a parsed [`Method`] and its params and returns the
//! result or an [`RpcError`] with a clear message. It knows nothing about
//! sockets or HTTP, so the unix-socket server and the hub's `/rpc` route
//! share it. Every write is one atomic batch on the replica thread; its
//! change notification (and the log-seq signal long polls wait on) goes out
//! only after it committed. In client mode there is no replica: every
//! method but `daemon.info` and the `sync.*` pair is forwarded to the hub.

use std::collections::BTreeSet;

use heph_core::rpc::{
    AuthStatus, CreateParams, DaemonInfo, IdParams, LinkParams, ListParams, ListResult, Method,
    RpcError, SyncStatus, TagCount, TagParams, TagsResult, UpdateParams, code,
};
use heph_core::store::schema::supported_version;
use heph_core::{
    Edit, Kind, Node, NodeId, Refusal, ReplicaError, Resolved, Status, Store, StoreError,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use std::sync::Arc;

use tokio::sync::{Notify, watch};

use crate::db::{Db, LocalReplica, random_bytes};
use crate::events::Events;
use crate::spoke::{HubClient, SyncHandle};

/// What the methods need from the daemon.
pub struct Context {
    /// The replica (absent in client mode).
    pub db: Option<Db>,
    pub events: Events,
    pub info: StaticInfo,
    /// The log's last seq, sent after every commit (hub long polls wait on it).
    pub log_seq: watch::Sender<u64>,
    /// Woken after every local edit, so a spoke syncs right away.
    pub local_edit: Arc<Notify>,
    /// The spoke's sync loop, when a hub is configured in local mode.
    pub sync: Option<SyncHandle>,
    /// Client mode: the hub every RPC goes to.
    pub remote: Option<HubClient>,
}

impl Context {
    /// A context for a replica with no hub (local mode without `--hub-url`).
    pub fn local(db: Db, info: StaticInfo, last_seq: u64) -> Self {
        Self {
            db: Some(db),
            events: Events::new(),
            info,
            log_seq: watch::Sender::new(last_seq),
            local_edit: Arc::new(Notify::new()),
            sync: None,
            remote: None,
        }
    }

    /// Records that the log now ends at `last_seq` and that `nodes` changed.
    pub fn committed(&self, nodes: BTreeSet<NodeId>, last_seq: u64) {
        self.log_seq.send_if_modified(|seq| {
            let grew = last_seq > *seq;
            if grew {
                *seq = last_seq;
            }
            grew
        });
        if !nodes.is_empty() {
            self.events.changed(nodes, last_seq);
        }
    }
}

/// The parts of `daemon.info` fixed at start.
#[derive(Debug, Clone)]
pub struct StaticInfo {
    pub mode: String,
    pub db: String,
    pub socket: String,
    pub started_ms: u64,
}

fn params<T: DeserializeOwned>(method: Method, params: Value) -> Result<T, RpcError> {
    let params = if params.is_null() { json!({}) } else { params };
    serde_json::from_value(params).map_err(|e| {
        RpcError::new(
            code::INVALID_PARAMS,
            format!("invalid params for {method}: {e}"),
        )
    })
}

/// Turns a store failure into the RPC error a client shows.
pub fn store_error(e: StoreError) -> RpcError {
    match e {
        StoreError::BatchRefused {
            refusal: Refusal::Invalid(inv),
            ..
        } => RpcError::new(code::INVALID_VALUE, inv.to_string())
            .with_data(json!({"field": inv.field, "reason": inv.reason})),
        StoreError::BatchRefused {
            refusal: Refusal::ClockSkew(c),
            ..
        } => RpcError::new(code::CLOCK, c.to_string()),
        StoreError::Query(q) => RpcError::new(code::INVALID_PARAMS, q.to_string()),
        other => RpcError::new(code::STORE, other.to_string()),
    }
}

fn replica_error(e: ReplicaError) -> RpcError {
    match e {
        ReplicaError::Store(s) => store_error(s),
        ReplicaError::Clock(c) => RpcError::new(code::CLOCK, c.to_string()),
        other => RpcError::new(code::INTERNAL, other.to_string()),
    }
}

fn closed() -> RpcError {
    RpcError::new(
        code::SHUTTING_DOWN,
        "the daemon is shutting down; try again once it has restarted",
    )
}

/// Finds the node an id or unique prefix names (live nodes first, then tombstones).
fn resolve(r: &LocalReplica, text: &str) -> Result<NodeId, RpcError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(RpcError::new(
            code::INVALID_PARAMS,
            "a node id or id prefix is required",
        ));
    }
    let store = r.store();
    let not_found = || {
        RpcError::new(
            code::NOT_FOUND,
            format!("no node has an id starting with {text:?}"),
        )
        .with_data(json!({"id": text}))
    };
    for include_deleted in [false, true] {
        match store
            .resolve_prefix(text, include_deleted)
            .map_err(store_error)?
        {
            Resolved::One(id) => return Ok(id),
            Resolved::Ambiguous(ids) => {
                let candidates: Vec<Value> = ids
                    .iter()
                    .map(|id| {
                        let title = store.node(id).ok().flatten().and_then(|n| n.title);
                        json!({"id": id, "title": title})
                    })
                    .collect();
                return Err(RpcError::new(
                    code::AMBIGUOUS,
                    format!("the id prefix {text:?} matches {} nodes", candidates.len()),
                )
                .with_data(json!({"id": text, "candidates": candidates})));
            }
            Resolved::NotFound => {}
        }
    }
    Err(not_found())
}

fn load(r: &LocalReplica, id: &NodeId) -> Result<Node, RpcError> {
    r.store()
        .node(id)
        .map_err(store_error)?
        .ok_or_else(|| RpcError::new(code::NOT_FOUND, format!("node {id} does not exist")))
}

/// Applies local edits and returns the node, the changed ids and the new last seq.
fn write(r: &mut LocalReplica, id: NodeId, edits: &[Edit]) -> Result<(Node, u64), RpcError> {
    r.commit_local(edits).map_err(replica_error)?;
    let node = load(r, &id)?;
    let seq = r.store().last_seq().map_err(store_error)?;
    Ok((node, seq))
}

fn create(r: &mut LocalReplica, p: CreateParams) -> Result<(Node, u64), RpcError> {
    let id = NodeId::from_random_bytes(random_bytes());
    let kind = p.kind.unwrap_or(Kind::Task);
    let mut edits = vec![
        Edit::new(id, "kind", kind.as_str()),
        Edit::new(id, "title", p.title),
    ];
    let status = match (kind, p.status) {
        (_, Some(s)) => Some(s),
        (Kind::Task, None) => Some(Status::Todo),
        (Kind::Note, None) => None,
    };
    if let Some(s) = status {
        edits.push(Edit::new(id, "status", s.as_str()));
    }
    if let Some(body) = p.body {
        edits.push(Edit::new(id, "body", body));
    }
    if let Some(pr) = p.priority {
        edits.push(Edit::new(id, "priority", pr.as_str()));
    }
    if let Some(due) = p.due {
        edits.push(Edit::new(id, "due", due));
    }
    if let Some(s) = p.scheduled {
        edits.push(Edit::new(id, "scheduled", s));
    }
    if let Some(parent) = p.parent {
        let parent = resolve(r, &parent)?;
        edits.push(Edit::new(id, "parent", parent.to_string()));
    }
    for tag in p.tags {
        edits.push(Edit::new(id, format!("tag:{tag}"), true));
    }
    for link in p.links {
        let target = resolve(r, &link.target)?;
        edits.push(Edit::new(id, format!("link:{}:{target}", link.rel), true));
    }
    write(r, id, &edits)
}

/// Refuses to change a deleted node: an edit there would be saved but stay
/// invisible, so the user is told to restore it first.
fn not_deleted(r: &LocalReplica, id: &NodeId) -> Result<(), RpcError> {
    let node = load(r, id)?;
    if !node.deleted {
        return Ok(());
    }
    let title = node.title.clone().unwrap_or_default();
    Err(RpcError::new(
        code::DELETED,
        format!("node {id} ({title:?}) is deleted; restore it before changing it"),
    )
    .with_data(json!({"id": id, "title": node.title})))
}

fn update(r: &mut LocalReplica, p: UpdateParams) -> Result<(Node, u64), RpcError> {
    let id = resolve(r, &p.id)?;
    if p.set.is_empty() {
        return Err(RpcError::new(
            code::INVALID_PARAMS,
            "nothing to change: `set` is empty",
        ));
    }
    // Restoring (`"deleted": false`) is the one change a deleted node takes.
    if p.set.get("deleted") != Some(&Value::Bool(false)) {
        not_deleted(r, &id)?;
    }
    let mut edits = Vec::with_capacity(p.set.len());
    for (field, value) in p.set {
        // A parent given by prefix is resolved to the full id.
        let value = match (field.as_str(), &value) {
            ("parent", Value::String(prefix)) => Value::String(resolve(r, prefix)?.to_string()),
            _ => value,
        };
        edits.push(Edit::new(id, field, value));
    }
    write(r, id, &edits)
}

fn tag(r: &mut LocalReplica, p: TagParams) -> Result<(Node, u64), RpcError> {
    let id = resolve(r, &p.id)?;
    not_deleted(r, &id)?;
    if p.add.is_empty() && p.remove.is_empty() {
        return Err(RpcError::new(
            code::INVALID_PARAMS,
            "nothing to change: no tag to add or remove",
        ));
    }
    let edits: Vec<Edit> = p
        .add
        .iter()
        .map(|t| Edit::new(id, format!("tag:{t}"), true))
        .chain(
            p.remove
                .iter()
                .map(|t| Edit::new(id, format!("tag:{t}"), false)),
        )
        .collect();
    write(r, id, &edits)
}

fn link(r: &mut LocalReplica, p: LinkParams) -> Result<(Node, u64), RpcError> {
    let id = resolve(r, &p.id)?;
    not_deleted(r, &id)?;
    let target = resolve(r, &p.target)?;
    write(
        r,
        id,
        &[Edit::new(id, format!("link:{}:{target}", p.rel), !p.remove)],
    )
}

/// Runs one method. `Ok` holds the JSON result.
pub async fn dispatch(ctx: &Context, method: Method, raw: Value) -> Result<Value, RpcError> {
    if let Some(remote) = &ctx.remote {
        return match method {
            Method::DaemonInfo => client_info(ctx),
            Method::AuthStatus | Method::AuthReload => auth_rpc(remote.auth(), method).await,
            Method::SyncStatus | Method::SyncNow => {
                serde_json::to_value(remote.client_status(method == Method::SyncNow).await)
                    .map_err(|e| RpcError::new(code::INTERNAL, e.to_string()))
            }
            _ => remote.rpc(method.as_str(), raw).await,
        };
    }
    let Some(db) = &ctx.db else {
        return Err(RpcError::new(
            code::INTERNAL,
            "this daemon has neither a replica nor a hub to answer from",
        ));
    };
    if method.is_hub_admin() {
        return crate::hub::members::rpc(ctx, db, method, raw).await;
    }
    type WriteFn = Box<dyn FnOnce(&mut LocalReplica) -> Result<(Node, u64), RpcError> + Send>;
    let write_fn: WriteFn = match method {
        Method::NodeCreate => {
            let p: CreateParams = params(method, raw)?;
            Box::new(move |r| create(r, p))
        }
        Method::NodeUpdate => {
            let p: UpdateParams = params(method, raw)?;
            Box::new(move |r| update(r, p))
        }
        Method::NodeDelete => {
            let p: IdParams = params(method, raw)?;
            Box::new(move |r| {
                let id = resolve(r, &p.id)?;
                write(r, id, &[Edit::new(id, "deleted", true)])
            })
        }
        Method::NodeTag => {
            let p: TagParams = params(method, raw)?;
            Box::new(move |r| tag(r, p))
        }
        Method::NodeLink => {
            let p: LinkParams = params(method, raw)?;
            Box::new(move |r| link(r, p))
        }
        _ => return read(ctx, db, method, raw).await,
    };
    let (node, last_seq) = db.call(write_fn).await.map_err(|_| closed())??;
    ctx.committed(BTreeSet::from([node.id]), last_seq);
    ctx.local_edit.notify_one();
    serde_json::to_value(node).map_err(|e| RpcError::new(code::INTERNAL, e.to_string()))
}

/// `auth.status` and `auth.reload`: the spoke's sign-in, if it has a hub.
async fn auth_rpc(
    auth: Option<Arc<crate::spoke::auth::SpokeAuth>>,
    method: Method,
) -> Result<Value, RpcError> {
    let status = match auth {
        Some(auth) => {
            if method == Method::AuthReload {
                auth.reload().await;
            }
            auth.status()
        }
        None if method == Method::AuthReload => {
            return Err(RpcError::new(
                code::NOT_CONFIGURED,
                "no hub is configured, so there is no sign-in to reload",
            ));
        }
        None => AuthStatus {
            configured: false,
            state: "not_configured".into(),
            message: "no hub is configured, so no sign-in is needed".into(),
            ..AuthStatus::default()
        },
    };
    serde_json::to_value(status).map_err(|e| RpcError::new(code::INTERNAL, e.to_string()))
}

/// `daemon.info` of a client-mode daemon: it has no replica of its own.
fn client_info(ctx: &Context) -> Result<Value, RpcError> {
    let info = DaemonInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        mode: ctx.info.mode.clone(),
        db: String::new(),
        socket: ctx.info.socket.clone(),
        replica_id: String::new(),
        started_ms: ctx.info.started_ms,
        ops: 0,
        last_seq: 0,
        schema_version: supported_version(),
    };
    serde_json::to_value(info).map_err(|e| RpcError::new(code::INTERNAL, e.to_string()))
}

async fn read(ctx: &Context, db: &Db, method: Method, raw: Value) -> Result<Value, RpcError> {
    let to_value = |v: Result<Value, serde_json::Error>| {
        v.map_err(|e| RpcError::new(code::INTERNAL, e.to_string()))
    };
    match method {
        Method::NodeGet => {
            let p: IdParams = params(method, raw)?;
            let node = db
                .call(move |r| {
                    let id = resolve(r, &p.id)?;
                    load(r, &id)
                })
                .await
                .map_err(|_| closed())??;
            to_value(serde_json::to_value(node))
        }
        Method::NodeList => {
            let q: ListParams = params(method, raw)?;
            let nodes = db
                .call(move |r| r.store().query(&q).map_err(store_error))
                .await
                .map_err(|_| closed())??;
            to_value(serde_json::to_value(ListResult { nodes }))
        }
        Method::TagsList => {
            let _: Value = params::<Value>(method, raw)?;
            let tags = db
                .call(|r| r.store().tag_counts().map_err(store_error))
                .await
                .map_err(|_| closed())??;
            let tags = tags
                .into_iter()
                .map(|(tag, count)| TagCount { tag, count })
                .collect();
            to_value(serde_json::to_value(TagsResult { tags }))
        }
        Method::DaemonInfo => {
            let info = ctx.info.clone();
            let result = db
                .call(move |r| -> Result<DaemonInfo, RpcError> {
                    Ok(DaemonInfo {
                        version: env!("CARGO_PKG_VERSION").into(),
                        pid: std::process::id(),
                        mode: info.mode,
                        db: info.db,
                        socket: info.socket,
                        replica_id: r.id().to_string(),
                        started_ms: info.started_ms,
                        ops: r.store().op_count().map_err(store_error)?,
                        last_seq: r.store().last_seq().map_err(store_error)?,
                        schema_version: supported_version(),
                    })
                })
                .await
                .map_err(|_| closed())??;
            to_value(serde_json::to_value(result))
        }
        Method::SyncStatus => {
            let _: Value = params::<Value>(method, raw)?;
            match &ctx.sync {
                Some(sync) => to_value(serde_json::to_value(sync.status().await)),
                None if ctx.info.mode == "server" => to_value(serde_json::to_value(SyncStatus {
                    configured: false,
                    message: "this daemon is the hub: spokes sync with it".into(),
                    ..SyncStatus::default()
                })),
                None => to_value(serde_json::to_value(SyncStatus {
                    configured: false,
                    message:
                        "no hub is configured: this replica works offline and keeps every change locally"
                            .into(),
                    hint: Some("hephd --hub-url https://hub.example".into()),
                    ..SyncStatus::default()
                })),
            }
        }
        Method::SyncNow => {
            let _: Value = params::<Value>(method, raw)?;
            match &ctx.sync {
                Some(sync) => to_value(serde_json::to_value(sync.sync_now().await?)),
                None if ctx.info.mode == "server" => Err(RpcError::new(
                    code::NOT_CONFIGURED,
                    "this daemon is the hub, so there is nothing to sync with",
                )),
                None => Err(RpcError::new(
                    code::NOT_CONFIGURED,
                    "no hub is configured, so there is nothing to sync with",
                )
                .with_data(json!({
                    "hint": "run the daemon with --hub-url URL (or hub_url = \"URL\" in config.toml), then heph daemon restart"
                }))),
            }
        }
        Method::AuthStatus | Method::AuthReload => {
            let _: Value = params::<Value>(method, raw)?;
            let status = auth_rpc(ctx.sync.as_ref().and_then(|s| s.auth().cloned()), method).await;
            if let (Some(sync), Method::AuthReload) = (&ctx.sync, method) {
                sync.wake();
            }
            status
        }
        Method::EventsSubscribe => Err(RpcError::new(
            code::INVALID_REQUEST,
            "events.subscribe needs its own unix-socket connection",
        )),
        Method::NodeCreate
        | Method::NodeUpdate
        | Method::NodeDelete
        | Method::NodeTag
        | Method::NodeLink
        | Method::HubGrant
        | Method::HubRevoke
        | Method::HubMembers => Err(RpcError::new(
            code::INTERNAL,
            format!("{method} is not a read"),
        )),
    }
}
