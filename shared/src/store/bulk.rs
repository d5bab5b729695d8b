//! Bulk upserts: what sync runs, sweeps and force-syncs write. The records
//! of a batch go through the commit path in chunks, each one transaction
//! with its sequence numbers and change-trail entry.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{BatchOutcome, BulkWrite, Change, ChangeSet, Expect, RecordWrite, Store, Trail};
use crate::error::{Error, Result};
use crate::model::{EntityType, RecordId, SourceId, TenantId, Version};

/// Record writes in one bulk chunk: a transaction's room beside the
/// counter and the trail entry.
const BULK_CHUNK: usize = ChangeSet::record_room(false, 0, true);
/// A bulk chunk closes before its records add up to this much (a
/// transaction carries at most 4 MB).
const BULK_CHUNK_BYTES: usize = 2 * 1024 * 1024;

/// Roughly how many bytes a change adds to a transaction.
fn approximate_size(change: &Change) -> usize {
    fn value(v: &Value) -> usize {
        match v {
            Value::String(s) => s.len() + 3,
            Value::Array(items) => items.iter().map(value).sum::<usize>() + 3,
            Value::Object(map) => object(map),
            _ => 8,
        }
    }
    fn object(map: &Map<String, Value>) -> usize {
        map.iter()
            .map(|(k, v)| k.len() + 3 + value(v))
            .sum::<usize>()
            + 3
    }
    match change {
        Change::Put(data) | Change::Merge(data) => object(data) + 256,
        Change::Delete => 256,
    }
}

impl Store {
    /// Writes many records of one entity type, skipping every record whose
    /// content hash is unchanged. Meant for bulk pulls where the upstream is
    /// the source of truth: each write is applied over whatever is stored.
    ///
    /// The records go in atomic chunks of up to `BULK_CHUNK` (fewer when
    /// they are large), each one TransactWriteItems with its sequence
    /// numbers and its change-trail entry, conditioned on the versions read
    /// (a record changed meanwhile is re-read and the chunk retried).
    pub async fn upsert_batch(
        &self,
        tenant: &TenantId,
        entity: &EntityType,
        source: Option<&SourceId>,
        changes: Vec<(RecordId, Change)>,
        trail: &Trail,
    ) -> Result<BatchOutcome> {
        let writes = changes
            .into_iter()
            .map(|(id, change)| BulkWrite {
                id,
                change,
                source_version: None,
            })
            .collect();
        self.upsert_versioned(tenant, entity, source, writes, trail)
            .await
    }

    /// [`Store::upsert_batch`] of writes that carry the source's version of
    /// each record (see [`crate::model::Record::source_version`]).
    pub async fn upsert_versioned(
        &self,
        tenant: &TenantId,
        entity: &EntityType,
        source: Option<&SourceId>,
        changes: Vec<BulkWrite>,
        trail: &Trail,
    ) -> Result<BatchOutcome> {
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = changes.iter().find(|w| !seen.insert(&w.id)) {
            let dup = &dup.id;
            return Err(Error::validation(
                "records",
                format!("record {dup} appears twice in one batch"),
            ));
        }
        // Puts and deletes replace the content: the stored heads are all they
        // need, read for the whole batch at once.
        let merges = changes.iter().any(|w| matches!(w.change, Change::Merge(_)));
        let mut heads = if merges {
            HashMap::new()
        } else {
            let ids: Vec<&RecordId> = changes.iter().map(|w| &w.id).collect();
            self.read_records(tenant, entity, &ids, true).await?
        };
        let mut outcome = BatchOutcome::default();
        let mut chunk = Vec::new();
        let mut chunk_bytes = 0;
        let mut changes = changes.into_iter().peekable();
        while let Some(BulkWrite {
            id,
            change,
            source_version,
        }) = changes.next()
        {
            chunk_bytes += approximate_size(&change) + id.as_str().len();
            chunk.push(RecordWrite {
                entity: entity.clone(),
                id,
                change,
                expect: Expect::Any,
                source: source.cloned(),
                origin: None,
                source_version,
            });
            let full = chunk.len() == BULK_CHUNK
                || chunk_bytes
                    + changes
                        .peek()
                        .map_or(0, |w| approximate_size(&w.change) + w.id.as_str().len())
                    > BULK_CHUNK_BYTES;
            if full || changes.peek().is_none() {
                let writes = std::mem::take(&mut chunk);
                chunk_bytes = 0;
                let set = ChangeSet {
                    tenant: tenant.clone(),
                    writes,
                    client: None,
                    once_only: Vec::new(),
                    trail: Some(trail.clone()),
                };
                let committed = if merges {
                    self.commit(&set).await?
                } else {
                    let known = set
                        .writes
                        .iter()
                        .filter_map(|w| heads.remove_entry(&w.id))
                        .map(|(id, record)| ((entity.clone(), id), record))
                        .collect();
                    self.commit_heads(&set, known).await?
                };
                for done in committed {
                    match (done.changed, done.record.deleted, done.record.version) {
                        (false, _, _) => outcome.unchanged += 1,
                        (true, true, _) => outcome.deleted += 1,
                        (true, false, Version::FIRST) => outcome.created += 1,
                        (true, false, _) => outcome.updated += 1,
                    }
                }
            }
        }
        Ok(outcome)
    }
}
