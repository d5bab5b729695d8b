//! The vocabulary of record writes: what a write does, the condition it
//! must meet, the change sets that commit atomically, and the record a
//! write produces from the one stored.

use std::time::Duration;

use serde_json::{Map, Value};

use super::Trail;
use super::kv::KvKey;
use crate::model::{
    ClientId, ContentHash, EntityType, Origin, Record, RecordId, Seq, SourceId, TenantId,
    Timestamp, Version,
};

/// DynamoDB's limit of actions in one transaction.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// What a write does to a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Put(Map<String, Value>),
    /// Sets the given top-level fields, keeping the others (a webhook that
    /// reports a status change). On an absent record, the fields are the
    /// new record.
    Merge(Map<String, Value>),
    /// Leaves a tombstone that pulls return until it expires.
    Delete,
}

/// The condition a write must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Whatever is stored now; the write still never overwrites a change it
    /// did not see (it is conditioned on the version it read).
    Any,
    /// The record must not exist (a tombstone counts as existing).
    Absent,
    /// The stored version must be exactly this one.
    Version(Version),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecordWrite {
    pub entity: EntityType,
    pub id: RecordId,
    pub change: Change,
    pub expect: Expect,
    pub source: Option<SourceId>,
    /// The client write's own clock, kept for last-write-wins.
    pub origin: Option<Origin>,
    /// [`Record::source_version`]: set by pulls, empty for other writers.
    pub source_version: Option<String>,
}

/// One record of a bulk write.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkWrite {
    pub id: RecordId,
    pub change: Change,
    /// The source's version of the record ([`Record::source_version`]).
    pub source_version: Option<String>,
}

/// What a bulk write knows, before it writes, of the records it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Nothing: their heads are read first, so that unchanged records are
    /// skipped and changed ones written over the version read.
    Unknown,
    /// None of the entity's records was stored when the writer began (a
    /// first full sync into an empty store): the heads are not read, each
    /// record is inserted, and one stored meanwhile (by a webhook, or an
    /// earlier page naming it too) fails its insert and is written through
    /// the commit path, which reads it.
    NoneAtStart,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    pub unchanged: u64,
}

impl BatchOutcome {
    pub fn written(&self) -> u64 {
        self.created + self.updated + self.deleted
    }
}

/// Advances a client's last processed mutation id from `expected` (0 when the
/// client never pushed) to `last_mutation_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientProgress {
    pub client: ClientId,
    pub expected: u64,
    pub last_mutation_id: u64,
}

/// Everything one atomic write changes for one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeSet {
    pub tenant: TenantId,
    pub writes: Vec<RecordWrite>,
    pub client: Option<ClientProgress>,
    /// Keys that must not exist yet (a webhook's dedupe key); they are
    /// created with the given lifetime.
    pub once_only: Vec<(KvKey, Duration)>,
    /// Who is making the change: recorded in the change trail in the same
    /// transaction, when any record changes.
    pub trail: Option<Trail>,
}

impl ChangeSet {
    /// How many record writes fit in one change set beside its other
    /// actions: the tenant counter and the feed entry always, and the
    /// client's progress, `once_only` keys and the trail entry when it has
    /// them.
    pub const fn record_room(client: bool, once_only: usize, trail: bool) -> usize {
        MAX_TRANSACTION_ITEMS - 2 - client as usize - once_only - trail as usize
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub record: Record,
    /// False when the content was already stored and nothing was written.
    pub changed: bool,
}

/// The record a write produces, or `None` when it would change nothing;
/// `changed_by` is the source making the change, if a source is.
pub(super) fn apply_change(
    tenant: &TenantId,
    write: &RecordWrite,
    current: Option<&Record>,
    now: Timestamp,
    changed_by: Option<&SourceId>,
) -> Option<Record> {
    let (data, deleted) = match &write.change {
        Change::Put(data) => (data.clone(), false),
        Change::Merge(fields) => {
            let mut data = current
                .filter(|c| !c.deleted)
                .map(|c| c.data.clone())
                .unwrap_or_default();
            data.extend(fields.clone());
            (data, false)
        }
        Change::Delete => (Map::new(), true),
    };
    let hash = ContentHash::of(&data, deleted);
    // A write that carries the source's version is also a change when only
    // that version moved (range digests compare it); a write without one
    // leaves an unchanged record alone and clears it from a changed one.
    if current.is_some_and(|c| {
        c.hash == hash
            && c.deleted == deleted
            && (write.source_version.is_none() || c.source_version == write.source_version)
    }) {
        return None;
    }
    Some(Record {
        tenant: tenant.clone(),
        entity: write.entity.clone(),
        id: write.id.clone(),
        data,
        version: current.map_or(Version::FIRST, |c| c.version.next()),
        hash,
        deleted,
        source: write
            .source
            .clone()
            .or_else(|| current.and_then(|c| c.source.clone())),
        created_at: current.map_or(now, |c| c.created_at),
        updated_at: now,
        seq: Seq::ZERO,
        origin: write.origin.clone(),
        source_version: write.source_version.clone(),
        changed_by: changed_by.cloned(),
    })
}
