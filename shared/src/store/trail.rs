//! The change trail: who changed which records, to which version. One entry
//! per atomic change set, a bulk chunk included (written in the same
//! transaction as the records), in a log stream per tenant, read newest
//! first and filtered by record.

use std::time::Duration;

use aws_sdk_dynamodb::types::TransactWriteItem;
use serde::{Deserialize, Serialize};

use super::Store;
use super::logs::{LogId, LogStream};
use super::paging::{Page, PageToken};
use crate::error::Result;
use crate::model::{EntityType, Record, RecordId, TenantId, Timestamp};

/// How long change-trail entries are kept.
pub const TRAIL_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// The path a change came by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrailPath {
    /// A webhook event (or its retry).
    Webhook,
    /// A scheduled or manual sync run of a REST source.
    Sync,
    /// A client push through `/v1/sync/push`.
    Push,
    /// A client push through the older `/api/client/sync/push`.
    LegacyPush,
    /// An operator or client resolving a stored conflict.
    ConflictResolution,
    /// One record re-fetched from its source.
    ForceSync,
}

/// Who made a change: the path it came by, the actor on that path and the
/// reference that identifies the cause there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trail {
    pub via: TrailPath,
    /// The webhook or REST source, or the client id.
    pub actor: String,
    /// The event id, run id or mutation ids.
    pub reference: String,
}

impl Trail {
    /// The source making the change, when a source is (a webhook, a sync
    /// run, a force-sync); a client or an operator is none.
    pub fn source(&self) -> Option<crate::model::SourceId> {
        match self.via {
            TrailPath::Webhook | TrailPath::Sync | TrailPath::ForceSync => {
                crate::model::SourceId::parse(&self.actor).ok()
            }
            TrailPath::Push | TrailPath::LegacyPush | TrailPath::ConflictResolution => None,
        }
    }

    pub fn new(via: TrailPath, actor: impl Into<String>, reference: impl Into<String>) -> Self {
        Self {
            via,
            actor: actor.into(),
            reference: reference.into(),
        }
    }
}

/// One record changed by a trail entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrailChange {
    pub entity: EntityType,
    pub id: RecordId,
    pub version: u64,
    pub deleted: bool,
}

impl TrailChange {
    pub fn of(record: &Record) -> Self {
        Self {
            entity: record.entity.clone(),
            id: record.id.clone(),
            version: record.version.get(),
            deleted: record.deleted,
        }
    }
}

/// An entry of the change trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrailEntry {
    #[serde(flatten)]
    pub trail: Trail,
    pub changes: Vec<TrailChange>,
}

/// The trail of one tenant.
pub fn trail_stream(tenant: &TenantId) -> LogStream {
    LogStream::named(format!("changes.{}", tenant.as_str()))
}

impl Store {
    /// The trail entry of a transaction, as one of its actions.
    pub(super) fn trail_put(
        &self,
        tenant: &TenantId,
        entry: &TrailEntry,
        now: Timestamp,
    ) -> Result<TransactWriteItem> {
        let item = super::logs::log_item(
            &trail_stream(tenant),
            &LogId::generate(now),
            now,
            entry,
            TRAIL_RETENTION,
        )?;
        self.put_action(item)
    }

    /// Writes a trail entry on its own (not in a transaction), under `id`:
    /// a bulk chunk writes its entry before its records and, when some of
    /// them went another way, writes it again with only those that applied.
    pub(super) async fn put_trail(
        &self,
        tenant: &TenantId,
        id: &LogId,
        entry: &TrailEntry,
        now: Timestamp,
    ) -> Result<()> {
        let item = super::logs::log_item(&trail_stream(tenant), id, now, entry, TRAIL_RETENTION)?;
        self.put_unconditional(item).await
    }

    /// Trail entries newest first; with `record`, only entries that changed
    /// it (and only that record's change in each), each version once: the
    /// newest entry naming it (a bulk chunk cut short names versions it
    /// did not write; the write that did came later). Reads at most `scan`
    /// entries; `next` continues from where it stopped.
    pub async fn read_trail(
        &self,
        tenant: &TenantId,
        record: Option<(&EntityType, &RecordId)>,
        limit: u32,
        scan: u32,
        after: Option<&PageToken>,
    ) -> Result<Page<(Timestamp, TrailEntry)>> {
        let stream = trail_stream(tenant);
        let mut found = Vec::new();
        let mut scanned = 0;
        let mut after = after.cloned();
        let mut versions = std::collections::HashSet::new();
        loop {
            let page = self
                .read_log::<TrailEntry>(&stream, limit.min(100), after.as_ref())
                .await?;
            scanned += page.items.len() as u32;
            for entry in page.items {
                let mut trail = entry.entry;
                if let Some((entity, id)) = record {
                    trail.changes.retain(|c| {
                        &c.entity == entity && &c.id == id && versions.insert(c.version)
                    });
                    if trail.changes.is_empty() {
                        continue;
                    }
                }
                found.push((entry.at, trail));
            }
            after = page.next;
            if after.is_none() || found.len() >= limit as usize || scanned >= scan {
                return Ok(Page {
                    items: found,
                    next: after,
                });
            }
        }
    }
}
