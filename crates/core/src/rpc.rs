//! The local RPC's wire types (DESIGN §6): JSON-RPC 2.0 envelopes, every
//! method's parameters and results, and the error codes.
//!
//! `hephd` serves these over its unix socket (and, later, the hub at
//! `/rpc`); `heph` and `heph-tui` speak them. Keeping them here means the
//! daemon and its clients cannot drift. New fields get `#[serde(default)]`
//! so an older peer still parses a newer message. `docs/protocol.md` shows
//! each method with an example.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::field::NodeId;
use crate::node::{Kind, Node, Priority, Query, Status};

/// The longest request line the daemon reads; a longer one closes the connection.
pub const MAX_LINE_BYTES: usize = 2 * 1024 * 1024;

/// Method names.
pub mod method {
    pub const NODE_CREATE: &str = "node.create";
    pub const NODE_UPDATE: &str = "node.update";
    pub const NODE_DELETE: &str = "node.delete";
    pub const NODE_GET: &str = "node.get";
    pub const NODE_LIST: &str = "node.list";
    pub const NODE_TAG: &str = "node.tag";
    pub const NODE_LINK: &str = "node.link";
    pub const TAGS_LIST: &str = "tags.list";
    pub const DAEMON_INFO: &str = "daemon.info";
    pub const SYNC_STATUS: &str = "sync.status";
    pub const SYNC_NOW: &str = "sync.now";
    pub const AUTH_STATUS: &str = "auth.status";
    /// Re-reads the token store (after `heph auth login` or `logout`); returns `auth.status`.
    pub const AUTH_RELOAD: &str = "auth.reload";
    pub const EVENTS_SUBSCRIBE: &str = "events.subscribe";
    /// Hub members (server mode; the local socket or an owner's token).
    pub const HUB_GRANT: &str = "hub.grant";
    pub const HUB_REVOKE: &str = "hub.revoke";
    pub const HUB_MEMBERS: &str = "hub.members";
    /// The notification method of an `events.subscribe` stream.
    pub const EVENT: &str = "event";
}

/// The most requests one batch may hold (on the socket and at the hub's `/rpc`).
pub const MAX_BATCH_ITEMS: usize = 100;

/// The most bytes the replies to one batch may add up to; requests after
/// the one that reaches it are not run and are answered with an error.
pub const MAX_BATCH_REPLY_BYTES: usize = 8 * 1024 * 1024;

/// A method the daemon serves, parsed from its exact name.
///
/// Deciding on this value (never on the raw name) keeps authorization and
/// dispatch in step: both see the same method, and a new method cannot be
/// added without the compiler asking which role it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    NodeCreate,
    NodeUpdate,
    NodeDelete,
    NodeGet,
    NodeList,
    NodeTag,
    NodeLink,
    TagsList,
    DaemonInfo,
    SyncStatus,
    SyncNow,
    AuthStatus,
    AuthReload,
    EventsSubscribe,
    HubGrant,
    HubRevoke,
    HubMembers,
}

impl Method {
    /// Every method, in the order of [`method`]'s constants.
    pub const ALL: [Method; 17] = [
        Method::NodeCreate,
        Method::NodeUpdate,
        Method::NodeDelete,
        Method::NodeGet,
        Method::NodeList,
        Method::NodeTag,
        Method::NodeLink,
        Method::TagsList,
        Method::DaemonInfo,
        Method::SyncStatus,
        Method::SyncNow,
        Method::AuthStatus,
        Method::AuthReload,
        Method::EventsSubscribe,
        Method::HubGrant,
        Method::HubRevoke,
        Method::HubMembers,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::NodeCreate => method::NODE_CREATE,
            Method::NodeUpdate => method::NODE_UPDATE,
            Method::NodeDelete => method::NODE_DELETE,
            Method::NodeGet => method::NODE_GET,
            Method::NodeList => method::NODE_LIST,
            Method::NodeTag => method::NODE_TAG,
            Method::NodeLink => method::NODE_LINK,
            Method::TagsList => method::TAGS_LIST,
            Method::DaemonInfo => method::DAEMON_INFO,
            Method::SyncStatus => method::SYNC_STATUS,
            Method::SyncNow => method::SYNC_NOW,
            Method::AuthStatus => method::AUTH_STATUS,
            Method::AuthReload => method::AUTH_RELOAD,
            Method::EventsSubscribe => method::EVENTS_SUBSCRIBE,
            Method::HubGrant => method::HUB_GRANT,
            Method::HubRevoke => method::HUB_REVOKE,
            Method::HubMembers => method::HUB_MEMBERS,
        }
    }

    /// The method with exactly this name: no case folding, no trimming.
    pub fn parse(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// Whether it manages a hub's members (`hub.*`).
    pub fn is_hub_admin(self) -> bool {
        matches!(
            self,
            Method::HubGrant | Method::HubRevoke | Method::HubMembers
        )
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error codes: the JSON-RPC 2.0 ones, then heph's own.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL: i64 = -32603;
    /// No node has this id or prefix. `data`: `{"id": "…"}`.
    pub const NOT_FOUND: i64 = -32001;
    /// Several nodes share this prefix. `data`: `{"id": "…", "candidates": [{"id","title"}…]}`.
    pub const AMBIGUOUS: i64 = -32002;
    /// A field value breaks the rules. `data`: `{"field": "…", "reason": "…"}`.
    pub const INVALID_VALUE: i64 = -32003;
    /// The database failed (locked, damaged, disk full).
    pub const STORE: i64 = -32004;
    /// The clock cannot stamp or accept an op.
    pub const CLOCK: i64 = -32005;
    /// The daemon is shutting down and takes no new work.
    pub const SHUTTING_DOWN: i64 = -32006;
    /// This feature is not configured (no hub, no sign-in).
    pub const NOT_CONFIGURED: i64 = -32007;
    /// Client mode: the hub cannot be reached or refused the request.
    /// `data`: `{"hint": "…"}`.
    pub const HUB: i64 = -32008;
    /// The node is deleted: restore it (`node.update` with
    /// `"deleted": false`) before changing it. `data`: `{"id": "…", "title": "…"}`.
    pub const DELETED: i64 = -32009;
}

/// A request. `id` absent means a notification (no response).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub jsonrpc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    pub method: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub params: Value,
}

impl Request {
    /// A request with a numeric id.
    pub fn new(id: u64, method: &str, params: impl Serialize) -> Self {
        Self {
            jsonrpc: "2.0".into(),
            id: Some(Value::from(id)),
            method: method.into(),
            params: serde_json::to_value(params).unwrap_or(Value::Null),
        }
    }
}

/// The error object of a failed response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    /// An error without data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// Attaches structured data.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

/// A response: exactly one of `result` and `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub jsonrpc: String,
    /// `null` when the request could not be read far enough to know its id.
    pub id: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

impl Response {
    pub fn ok(id: Value, result: Value) -> Self {
        Self {
            jsonrpc: "2.0".into(),
            id,
            result: Some(result),
            error: None,
        }
    }

    pub fn err(id: Value, error: RpcError) -> Self {
        Self {
            jsonrpc: "2.0".into(),
            id,
            result: None,
            error: Some(error),
        }
    }
}

/// A server-to-client notification (used by `events.subscribe`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub jsonrpc: String,
    pub method: String,
    pub params: Value,
}

/// A typed link in a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkSpec {
    pub rel: String,
    /// A node id or unique prefix.
    pub target: String,
}

/// `node.create`: a new task or note. Returns the [`Node`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CreateParams {
    /// Defaults to `task`.
    pub kind: Option<Kind>,
    pub title: String,
    pub body: Option<String>,
    /// Defaults to `todo` for a task; notes have none.
    pub status: Option<Status>,
    pub priority: Option<Priority>,
    /// RFC 3339 date or date-time.
    pub due: Option<String>,
    pub scheduled: Option<String>,
    /// A node id or unique prefix.
    pub parent: Option<String>,
    pub tags: Vec<String>,
    pub links: Vec<LinkSpec>,
}

/// `node.update`: sets registers of one node. Returns the [`Node`].
///
/// `set` maps field names to values exactly as ops carry them: `"due": null`
/// clears the due date, `"tag:home": false` removes a tag, and fields this
/// version does not know are passed through.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateParams {
    /// A node id or unique prefix.
    pub id: String,
    pub set: BTreeMap<String, Value>,
}

/// `node.get` and `node.delete`: one node by id or unique prefix. Returns the [`Node`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdParams {
    pub id: String,
}

/// `node.list`: a [`Query`]. Returns [`ListResult`].
pub type ListParams = Query;

/// The result of `node.list`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListResult {
    pub nodes: Vec<Node>,
}

/// `node.tag`: adds and removes tags of one node. Returns the [`Node`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TagParams {
    pub id: String,
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

/// `node.link`: adds (or with `remove`, removes) a typed link. Returns the source [`Node`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkParams {
    pub id: String,
    pub rel: String,
    pub target: String,
    pub remove: bool,
}

/// One entry of `tags.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagCount {
    pub tag: String,
    /// Live (not deleted) nodes carrying it.
    pub count: u64,
}

/// The result of `tags.list`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TagsResult {
    pub tags: Vec<TagCount>,
}

/// The result of `daemon.info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub version: String,
    pub pid: u32,
    pub mode: String,
    pub db: String,
    pub socket: String,
    /// The replica id this run stamps with (a fresh one every start).
    pub replica_id: String,
    /// Unix milliseconds at start.
    pub started_ms: u64,
    pub ops: u64,
    pub last_seq: u64,
    pub schema_version: i64,
}

/// The result of `sync.status` (and of `auth.status`, with its own fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// Whether a hub is configured.
    pub configured: bool,
    #[serde(default)]
    pub hub_url: Option<String>,
    /// Unix milliseconds of the last successful round.
    #[serde(default)]
    pub last_success_ms: Option<u64>,
    /// Local ops not yet pushed.
    #[serde(default)]
    pub pending_ops: u64,
    /// The hub seq this replica has pulled up to.
    #[serde(default)]
    pub hub_seq: Option<u64>,
    /// The cause of the last failure, as one sentence.
    #[serde(default)]
    pub last_error: Option<String>,
    /// One sentence describing the state.
    pub message: String,
    /// The command that fixes or configures it, if any.
    #[serde(default)]
    pub hint: Option<String>,
    /// The last time the hub's log changed under this spoke (a restored or
    /// new hub database), and the re-sending that followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_log_change: Option<HubLogChange>,
}

/// A change of the hub's log seen by a spoke, and what it re-sent after it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubLogChange {
    /// Unix milliseconds when the spoke noticed the change.
    pub at_ms: u64,
    /// Ops this spoke held then, all of which it re-sends whatever their origin.
    pub ops: u64,
    /// Of those, how many it has re-sent so far.
    #[serde(default)]
    pub sent: u64,
    /// Of those sent, how many the hub did not have.
    #[serde(default)]
    pub accepted: u64,
    /// Whether the re-sending is finished.
    #[serde(default)]
    pub done: bool,
}

/// The result of `auth.status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuthStatus {
    pub configured: bool,
    /// A state name such as `not_configured`, `valid`, `needs_login`.
    pub state: String,
    #[serde(default)]
    pub subject: Option<String>,
    /// The user's name at the provider (`preferred_username`), when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Whether the user must act (sign in again).
    #[serde(default)]
    pub action_needed: bool,
    pub message: String,
    #[serde(default)]
    pub hint: Option<String>,
    /// The hub signed in to (normalized).
    #[serde(default)]
    pub hub_url: Option<String>,
    /// The identity provider that issued the tokens.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The OAuth client id the tokens were issued to.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Unix milliseconds when the access token expires.
    #[serde(default)]
    pub expires_ms: Option<u64>,
    /// Where the tokens are kept (`keyring`, `file /path`, `command`, `memory`).
    #[serde(default)]
    pub store: Option<String>,
}

/// The `params` of an `event` notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Sent once when the subscription starts.
    Subscribed { last_seq: u64 },
    /// Nodes changed; `last_seq` is the log's seq after the change.
    Changed { nodes: Vec<NodeId>, last_seq: u64 },
    /// The subscriber fell behind and `skipped` events were dropped: reload everything.
    Resync { skipped: u64 },
    /// Sync or auth health changed: call `sync.status` / `auth.status`.
    Status,
}

/// A member of a hub: an OpenID subject and its role (`owner`, `writer`, `reader`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubMember {
    pub sub: String,
    pub role: String,
}

/// The result of `hub.members`, `hub.grant` and `hub.revoke`: every member afterwards.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubMembers {
    pub members: Vec<HubMember>,
    /// What the call changed, as one sentence (empty for `hub.members`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}
