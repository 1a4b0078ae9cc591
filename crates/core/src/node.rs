//! The materialized view of a node: the current value of each of its registers,
//! and the query that selects nodes.
//!
//! Both stores build [`Node`] with [`Node::from_registers`] and filter with
//! [`Query::matches`] semantics (SQLite translates the same rules to SQL), so
//! the two answer every query identically — the conformance suite checks it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::date;
use crate::field::{Field, NodeId};
use crate::hlc::Hlc;

/// One register: the value of the greatest-HLC op that assigned it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Register {
    pub node: NodeId,
    pub field: String,
    pub value: Value,
    pub hlc: Hlc,
}

/// Task or note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Task,
    Note,
}

/// A task's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Todo,
    Doing,
    Done,
    Cancelled,
}

/// How urgent a node is; ordered from `None` to `High`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    #[default]
    None,
    Low,
    Medium,
    High,
}

macro_rules! str_enum {
    ($t:ty { $($v:ident = $s:literal),* }) => {
        impl $t {
            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
            /// Parses the wire name.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }
    };
}
str_enum!(Kind { Task = "task", Note = "note" });
str_enum!(Status { Todo = "todo", Doing = "doing", Done = "done", Cancelled = "cancelled" });
str_enum!(Priority { None = "none", Low = "low", Medium = "medium", High = "high" });

/// A typed link to another node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Link {
    pub rel: String,
    pub target: NodeId,
}

/// The current state of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: NodeId,
    /// `None` until the op that sets the kind arrives.
    pub kind: Option<Kind>,
    pub title: Option<String>,
    #[serde(default)]
    pub body: String,
    pub status: Option<Status>,
    #[serde(default)]
    pub priority: Priority,
    pub due: Option<String>,
    pub scheduled: Option<String>,
    pub parent: Option<NodeId>,
    #[serde(default)]
    pub deleted: bool,
    /// Tags whose register is `true`, sorted.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Links whose register is `true`, sorted.
    #[serde(default)]
    pub links: Vec<Link>,
    /// Registers of fields this version does not know, kept as they are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Value>,
    /// The smallest HLC among its registers.
    pub created: Hlc,
    /// The greatest HLC among its registers.
    pub updated: Hlc,
}

impl Node {
    /// A node with no register set yet: every field at its default, both
    /// HLCs at [`Hlc::ZERO`].
    pub fn empty(id: NodeId) -> Node {
        Node {
            id,
            kind: None,
            title: None,
            body: String::new(),
            status: None,
            priority: Priority::None,
            due: None,
            scheduled: None,
            parent: None,
            deleted: false,
            tags: Vec::new(),
            links: Vec::new(),
            extra: BTreeMap::new(),
            created: Hlc::ZERO,
            updated: Hlc::ZERO,
        }
    }

    /// Builds the view from a node's registers (any order). `None` if empty.
    pub fn from_registers<'a>(
        id: NodeId,
        regs: impl IntoIterator<Item = (&'a str, &'a Value, Hlc)>,
    ) -> Option<Node> {
        let mut node = Node::empty(id);
        let mut any = false;
        for (name, value, hlc) in regs {
            if !any || hlc < node.created {
                node.created = hlc;
            }
            if !any || hlc > node.updated {
                node.updated = hlc;
            }
            any = true;
            let s = value.as_str();
            match Field::parse(name) {
                Ok(Field::Kind) => node.kind = s.and_then(Kind::parse),
                Ok(Field::Title) => node.title = s.map(str::to_owned),
                Ok(Field::Body) => node.body = s.unwrap_or_default().to_owned(),
                Ok(Field::Status) => node.status = s.and_then(Status::parse),
                Ok(Field::Priority) => {
                    node.priority = s.and_then(Priority::parse).unwrap_or_default()
                }
                Ok(Field::Due) => node.due = s.map(str::to_owned),
                Ok(Field::Scheduled) => node.scheduled = s.map(str::to_owned),
                Ok(Field::Parent) => node.parent = s.and_then(|s| NodeId::parse(s).ok()),
                Ok(Field::Deleted) => node.deleted = value.as_bool().unwrap_or(false),
                Ok(Field::Tag(tag)) => {
                    if value.as_bool() == Some(true) {
                        node.tags.push(tag);
                    }
                }
                Ok(Field::Link { rel, target }) => {
                    if value.as_bool() == Some(true) {
                        node.links.push(Link { rel, target });
                    }
                }
                Ok(Field::Unknown(name)) => {
                    node.extra.insert(name, value.clone());
                }
                // Registers only ever hold checked fields.
                Err(_) => {}
            }
        }
        node.tags.sort();
        node.links.sort();
        any.then_some(node)
    }

    /// The key range queries order `due` by (see [`date::sort_key`]).
    pub fn due_key(&self) -> Option<String> {
        self.due.as_deref().and_then(date::sort_key)
    }
}

/// A selection of nodes. Every set criterion must hold (logical and).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Query {
    pub kind: Option<Kind>,
    /// Any of these statuses (empty: any status, including none).
    pub status: Vec<Status>,
    /// Carries this tag.
    pub tag: Option<String>,
    /// `due` at or after this date or date-time.
    pub due_from: Option<String>,
    /// `due` at or before this date or date-time (a date includes its whole day).
    pub due_to: Option<String>,
    /// Children of this node.
    pub parent: Option<NodeId>,
    /// Case-insensitive (ASCII) substring of the title or the body.
    pub text: Option<String>,
    /// Include tombstoned nodes.
    pub include_deleted: bool,
    /// At most this many results.
    pub limit: Option<usize>,
}

/// A query whose bounds are not valid dates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid query: {0}")]
pub struct QueryError(pub String);

/// A query with its date bounds turned into sort keys.
#[derive(Debug, Clone)]
pub(crate) struct PreparedQuery<'q> {
    pub q: &'q Query,
    pub due_from: Option<String>,
    pub due_to_exclusive: Option<String>,
    pub text_lower: Option<String>,
}

impl Query {
    pub(crate) fn prepare(&self) -> Result<PreparedQuery<'_>, QueryError> {
        let bound = |v: &Option<String>, f: fn(&str) -> Option<String>, name: &str| {
            v.as_deref()
                .map(|s| {
                    f(s).ok_or_else(|| {
                        QueryError(format!("{name} {s:?} is not an RFC 3339 date or date-time"))
                    })
                })
                .transpose()
        };
        Ok(PreparedQuery {
            q: self,
            due_from: bound(&self.due_from, date::sort_key, "due_from")?,
            due_to_exclusive: bound(&self.due_to, date::upper_bound_key, "due_to")?,
            text_lower: self.text.as_ref().map(|t| t.to_ascii_lowercase()),
        })
    }
}

impl PreparedQuery<'_> {
    /// Whether `node` is selected; the SQLite store's SQL says the same.
    pub(crate) fn matches(&self, node: &Node) -> bool {
        let q = self.q;
        if !q.include_deleted && node.deleted {
            return false;
        }
        if q.kind.is_some() && node.kind != q.kind {
            return false;
        }
        if !q.status.is_empty() && !node.status.is_some_and(|s| q.status.contains(&s)) {
            return false;
        }
        if let Some(tag) = &q.tag {
            if !node.tags.iter().any(|t| t == tag) {
                return false;
            }
        }
        if q.parent.is_some() && node.parent != q.parent {
            return false;
        }
        if self.due_from.is_some() || self.due_to_exclusive.is_some() {
            let Some(key) = node.due_key() else {
                return false;
            };
            if self.due_from.as_ref().is_some_and(|from| &key < from) {
                return false;
            }
            if self.due_to_exclusive.as_ref().is_some_and(|to| &key >= to) {
                return false;
            }
        }
        if let Some(text) = &self.text_lower {
            let hit = |s: &str| s.to_ascii_lowercase().contains(text.as_str());
            if !(node.title.as_deref().is_some_and(hit) || hit(&node.body)) {
                return false;
            }
        }
        true
    }
}
