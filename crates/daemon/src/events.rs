//! Change notifications for `events.subscribe`.
//!
//! A broadcast channel: writers publish after they commit and never wait
//! for subscribers. A subscriber that falls more than [`CAPACITY`] events
//! behind loses the oldest ones and is told to resync instead — a slow
//! client can never stall a write.

use std::collections::BTreeSet;

use heph_core::NodeId;
use heph_core::rpc::Event;
use tokio::sync::broadcast;

/// Events a subscriber may fall behind by before it is told to resync.
pub const CAPACITY: usize = 256;

/// The publishing side. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self { tx }
    }

    /// Publishes that `nodes` changed and the log now ends at `last_seq`.
    pub fn changed(&self, nodes: BTreeSet<NodeId>, last_seq: u64) {
        // No subscriber is not an error.
        let _ = self.tx.send(Event::Changed {
            nodes: nodes.into_iter().collect(),
            last_seq,
        });
    }

    /// Publishes that sync or auth health changed.
    pub fn status(&self) {
        let _ = self.tx.send(Event::Status);
    }

    /// A new subscription.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
