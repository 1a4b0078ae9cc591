//! An in-memory store with the same semantics as the SQLite one.
//!
//! It exists for tests (property tests run thousands of replicas) and as the
//! reference the conformance suite holds the SQLite store to. A transaction
//! works on a copy of the state and swaps it in on commit, so an uncommitted
//! transaction leaves nothing behind.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::{AMBIGUOUS_LIST, Outgoing, Resolved, Store, StoreError, Transaction, plausible_prefix};
use crate::field::NodeId;
use crate::hlc::Hlc;
use crate::merge::{self, Logged};
use crate::node::{Node, Query, Register};
use crate::op::{LoggedOp, Op, Outcome};

#[derive(Debug, Clone, Default)]
struct State {
    log: Vec<LoggedOp>,
    by_hlc: HashMap<Hlc, u64>,
    registers: BTreeMap<(NodeId, String), (Value, Hlc)>,
    meta: BTreeMap<String, String>,
    /// The origin of each logged op that has one, by seq.
    origins: HashMap<u64, String>,
}

impl State {
    /// Where the op with this seq sits in the log (sorted by seq; a
    /// re-stamp leaves gaps, so seq is not the index).
    fn index_of(&self, seq: u64) -> Option<usize> {
        self.log.binary_search_by_key(&seq, |l| l.seq).ok()
    }

    fn logged(&self, seq: u64) -> Option<&LoggedOp> {
        self.index_of(seq).map(|i| &self.log[i])
    }

    /// The index of the first op with a seq greater than `after`.
    fn start_after(&self, after: u64) -> usize {
        self.log.partition_point(|l| l.seq <= after)
    }
}

/// A store that lives in memory and is gone when dropped.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: State,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn build(&self, id: &NodeId) -> Option<Node> {
        let from = (*id, String::new());
        let regs = self
            .state
            .registers
            .range(from..)
            .take_while(|((n, _), _)| n == id)
            .map(|((_, f), (v, h))| (f.as_str(), v, *h));
        Node::from_registers(*id, regs)
    }

    fn node_ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.state.registers.keys().map(|(n, _)| *n).collect();
        ids.dedup();
        ids
    }
}

/// A write transaction on a [`MemoryStore`].
#[derive(Debug)]
pub struct MemoryTx<'a> {
    store: &'a mut MemoryStore,
    staged: State,
}

impl Transaction for MemoryTx<'_> {
    fn apply_from(&mut self, ops: &[Op], origin: Option<&str>) -> Result<Vec<Outcome>, StoreError> {
        let state = &mut self.staged;
        let mut plan = merge::plan(ops, |i| {
            Ok::<_, StoreError>(match state.by_hlc.get(&ops[i].hlc) {
                None => Logged::No,
                Some(seq) => match state.logged(*seq) {
                    Some(l) if l.op.same_content(&ops[i]) => Logged::Same,
                    _ => Logged::Different,
                },
            })
        })?;
        for &i in &plan.fresh {
            let seq = state.log.last().map_or(0, |l| l.seq) + 1;
            state.by_hlc.insert(ops[i].hlc, seq);
            if let Some(origin) = origin {
                state.origins.insert(seq, origin.to_owned());
            }
            state.log.push(LoggedOp {
                seq,
                op: ops[i].clone(),
            });
        }
        for &i in &plan.candidates {
            let op = &ops[i];
            let key = (op.node, op.field.clone());
            match state.registers.get(&key) {
                Some((_, stored)) if *stored >= op.hlc => plan.outcomes[i] = Outcome::Superseded,
                _ => {
                    state.registers.insert(key, (op.value.clone(), op.hlc));
                }
            }
        }
        Ok(plan.outcomes)
    }

    fn restamp(&mut self, moves: &[(Hlc, Hlc)]) -> Result<Vec<NodeId>, StoreError> {
        let state = &mut self.staged;
        let mut touched = Vec::new();
        for (old, new) in moves {
            let Some(old_seq) = state.by_hlc.remove(old) else {
                continue;
            };
            let at = state.index_of(old_seq).expect("by_hlc names logged seqs");
            let mut op = state.log.remove(at).op;
            state.origins.remove(&old_seq);
            op.hlc = *new;
            let seq = state.log.last().map_or(0, |l| l.seq).max(old_seq) + 1;
            state.by_hlc.insert(*new, seq);
            let key = (op.node, op.field.clone());
            // The register is the greatest HLC of its ops; only the moved op changed.
            let greatest = state
                .log
                .iter()
                .filter(|l| l.op.node == op.node && l.op.field == op.field)
                .map(|l| (l.op.hlc, &l.op.value))
                .chain([(op.hlc, &op.value)])
                .max_by_key(|(h, _)| *h)
                .map(|(h, v)| (v.clone(), h));
            if let Some(reg) = greatest {
                state.registers.insert(key, reg);
            }
            touched.push(op.node);
            state.log.push(LoggedOp { seq, op });
        }
        touched.sort_unstable();
        touched.dedup();
        Ok(touched)
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.staged.meta.insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    fn commit(self) -> Result<(), StoreError> {
        self.store.state = self.staged;
        Ok(())
    }
}

impl Store for MemoryStore {
    type Tx<'a> = MemoryTx<'a>;

    fn begin(&mut self) -> Result<MemoryTx<'_>, StoreError> {
        let staged = self.state.clone();
        Ok(MemoryTx {
            store: self,
            staged,
        })
    }

    fn ops_after(&self, after: u64, limit: usize) -> Result<Vec<LoggedOp>, StoreError> {
        let start = self.state.start_after(after);
        Ok(self.state.log[start..]
            .iter()
            .take(limit)
            .cloned()
            .collect())
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        Ok(self.state.log.last().map_or(0, |l| l.seq))
    }

    fn max_hlc(&self) -> Result<Option<Hlc>, StoreError> {
        Ok(self.state.by_hlc.keys().max().copied())
    }

    fn op_count(&self) -> Result<u64, StoreError> {
        Ok(self.state.log.len() as u64)
    }

    fn registers(&self) -> Result<Vec<Register>, StoreError> {
        Ok(self
            .state
            .registers
            .iter()
            .map(|((node, field), (value, hlc))| Register {
                node: *node,
                field: field.clone(),
                value: value.clone(),
                hlc: *hlc,
            })
            .collect())
    }

    fn node(&self, id: &NodeId) -> Result<Option<Node>, StoreError> {
        Ok(self.build(id))
    }

    fn resolve_prefix(&self, prefix: &str, include_deleted: bool) -> Result<Resolved, StoreError> {
        if !plausible_prefix(prefix) {
            return Ok(Resolved::NotFound);
        }
        let mut hits: Vec<NodeId> = self
            .node_ids()
            .into_iter()
            .filter(|id| id.as_str().starts_with(prefix))
            .filter(|id| include_deleted || self.build(id).is_some_and(|n| !n.deleted))
            .take(AMBIGUOUS_LIST)
            .collect();
        Ok(match hits.len() {
            0 => Resolved::NotFound,
            1 => Resolved::One(hits.remove(0)),
            _ => Resolved::Ambiguous(hits),
        })
    }

    fn query(&self, query: &Query) -> Result<Vec<Node>, StoreError> {
        let prepared = query.prepare()?;
        let mut nodes: Vec<Node> = self
            .node_ids()
            .iter()
            .filter_map(|id| self.build(id))
            .filter(|n| prepared.matches(n))
            .collect();
        nodes.sort_by_key(|n| (n.created, n.id));
        if let Some(limit) = query.limit {
            nodes.truncate(limit);
        }
        Ok(nodes)
    }

    fn tag_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for node in self.node_ids().iter().filter_map(|id| self.build(id)) {
            if !node.deleted {
                for tag in node.tags {
                    *counts.entry(tag).or_default() += 1;
                }
            }
        }
        Ok(counts.into_iter().collect())
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.state.meta.get(key).cloned())
    }

    fn origin(&self, hlc: &Hlc) -> Result<Option<Option<String>>, StoreError> {
        Ok(self
            .state
            .by_hlc
            .get(hlc)
            .map(|seq| self.state.origins.get(seq).cloned()))
    }

    fn outgoing(
        &self,
        after: u64,
        limit: usize,
        skip_origin: &str,
    ) -> Result<Outgoing, StoreError> {
        let start = self.state.start_after(after);
        let mut out = Outgoing {
            ops: Vec::new(),
            scanned_to: after.max(self.state.log.last().map_or(0, |l| l.seq)),
        };
        for logged in &self.state.log[start..] {
            if out.ops.len() == limit {
                out.scanned_to = out.ops.last().map_or(after, |l: &LoggedOp| l.seq);
                break;
            }
            if self.state.origins.get(&logged.seq).map(String::as_str) != Some(skip_origin) {
                out.ops.push(logged.clone());
            }
        }
        Ok(out)
    }

    fn count_outgoing(&self, after: u64, skip_origin: &str) -> Result<u64, StoreError> {
        Ok(self
            .state
            .log
            .iter()
            .filter(|l| l.seq > after)
            .filter(|l| self.state.origins.get(&l.seq).map(String::as_str) != Some(skip_origin))
            .count() as u64)
    }
}

#[cfg(test)]
mod conformance {
    crate::store_conformance!(super::MemoryStore::new());
}
