//! Word of commits within this process. Every commit that takes sequence
//! numbers announces the tenant, the entity types it changed and its last
//! sequence number here, so that work waiting on a tenant's feed in the
//! same process (a long-poll pull, the local run's poke fan-out) wakes at
//! once instead of reading the store again and again.
//!
//! It is a hint, never the truth: commits of other processes are not
//! heard (they are found by reading the tenant counter, or arrive through
//! DynamoDB Streams), and a listener that falls behind is told so
//! (`Lagged`) and reads the store.

use tokio::sync::broadcast;

use crate::model::{EntityType, Seq, TenantId};

/// Announcements held for listeners that are behind; a listener further
/// behind than this hears `Lagged` and reads the store instead.
const BACKLOG: usize = 4096;

/// One committed transaction of a tenant's change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub tenant: TenantId,
    /// The entity types it changed, each once.
    pub entities: Vec<EntityType>,
    /// The last sequence number it took: the feed is complete up to here.
    pub seq: Seq,
}

/// The process's commit announcements; clones share one channel.
#[derive(Debug, Clone)]
pub struct CommitSignal {
    sender: broadcast::Sender<Commit>,
}

impl Default for CommitSignal {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(BACKLOG).0,
        }
    }
}

impl CommitSignal {
    /// Announcements from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Commit> {
        self.sender.subscribe()
    }

    pub(super) fn announce(&self, commit: Commit) {
        // Sending fails only when nobody listens, which is the usual case
        // in a Lambda that is not waiting on anything.
        let _ = self.sender.send(commit);
    }
}
