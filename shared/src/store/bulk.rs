//! Bulk upserts: what sync runs, sweeps and force-syncs write. Puts and
//! deletes go in chunks that hold a block of sequence numbers and write
//! their records with conditional statements, several chunks at once
//! (`held.rs`); merges, and every bulk write of a store set to
//! [`BulkWrites::Transactions`], go through the commit path, one
//! transaction per chunk with its sequence numbers and change-trail entry.

use std::collections::HashMap;

use futures_util::StreamExt;
use serde_json::{Map, Value};

use super::{
    BatchOutcome, BulkWrite, BulkWrites, Change, ChangeSet, Committed, Expect, RecordWrite, Store,
    Stored, Trail,
};
use crate::error::{Error, Result};
use crate::model::{EntityType, RecordId, SourceId, TenantId, Version};

/// Record writes in one bulk chunk: a transaction's room beside the
/// counter and the trail entry.
const BULK_CHUNK: usize = ChangeSet::record_room(false, 0, true);
/// Records in one chunk of puts and deletes, written at once under one
/// held block of sequence numbers.
const HELD_CHUNK: usize = 100;
/// Chunks of one batch written at the same time: with a store some
/// milliseconds away, what keeps a sync from waiting on each round trip.
const CHUNKS_IN_FLIGHT: usize = 8;
/// Transactions of one batch applied at the same time on a store writing
/// in transactions: the engine applies one at a time, while the others are
/// built, sent and answered on the other cores.
pub const TRANSACTIONS_IN_FLIGHT: usize = 2;
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
        self.upsert_versioned(tenant, entity, source, writes, trail, Stored::Unknown)
            .await
    }

    /// [`Store::upsert_batch`] of writes that carry the source's version of
    /// each record (see [`crate::model::Record::source_version`]), and what
    /// the caller knows of what is stored.
    pub async fn upsert_versioned(
        &self,
        tenant: &TenantId,
        entity: &EntityType,
        source: Option<&SourceId>,
        changes: Vec<BulkWrite>,
        trail: &Trail,
        stored: Stored,
    ) -> Result<BatchOutcome> {
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = changes.iter().find(|w| !seen.insert(&w.id)) {
            let dup = &dup.id;
            return Err(Error::validation(
                "records",
                format!("record {dup} appears twice in one batch"),
            ));
        }
        // Held chunks of puts and deletes need only the stored heads (the
        // content is replaced), read for the whole batch at once, unless
        // none was stored; merges, and stores writing in transactions, go
        // through the commit path, which reads what it needs.
        let transactions = self.bulk_writes == BulkWrites::Transactions
            || changes.iter().any(|w| matches!(w.change, Change::Merge(_)));
        let mut heads = if transactions || stored == Stored::NoneAtStart {
            HashMap::new()
        } else {
            let ids: Vec<&RecordId> = changes.iter().map(|w| &w.id).collect();
            self.read_records(tenant, entity, &ids, true).await?
        };
        let mut chunks: Vec<Vec<RecordWrite>> = Vec::new();
        let mut chunk_bytes = 0;
        for BulkWrite {
            id,
            change,
            source_version,
        } in changes
        {
            let size = approximate_size(&change) + id.as_str().len();
            let room = if transactions { BULK_CHUNK } else { HELD_CHUNK };
            match chunks.last() {
                Some(last) if last.len() < room && chunk_bytes + size <= BULK_CHUNK_BYTES => {}
                _ => {
                    chunks.push(Vec::new());
                    chunk_bytes = 0;
                }
            }
            chunk_bytes += size;
            if let Some(chunk) = chunks.last_mut() {
                chunk.push(RecordWrite {
                    entity: entity.clone(),
                    id,
                    change,
                    expect: Expect::Any,
                    source: source.cloned(),
                    origin: None,
                    source_version,
                });
            }
        }
        let mut outcome = BatchOutcome::default();
        if transactions {
            let sets = chunks.into_iter().map(|writes| ChangeSet {
                tenant: tenant.clone(),
                writes,
                client: None,
                once_only: Vec::new(),
                trail: Some(trail.clone()),
            });
            // Chunks number their changes from held blocks, so that one is
            // built and parsed while another (of this batch, or of the
            // batch a sync run writes beside it) is applied.
            let commits = sets.map(async |set| self.commit_beside_others(&set).await);
            let mut commits =
                futures_util::stream::iter(commits).buffer_unordered(TRANSACTIONS_IN_FLIGHT);
            while let Some(committed) = commits.next().await {
                outcome.count(&committed?);
            }
            return Ok(outcome);
        }
        let chunks = chunks.into_iter().map(|writes| {
            let known = writes
                .iter()
                .filter_map(|w| heads.remove_entry(&w.id))
                .collect::<HashMap<_, _>>();
            self.write_held(tenant, writes, known, trail)
        });
        let mut chunks = futures_util::stream::iter(chunks).buffer_unordered(CHUNKS_IN_FLIGHT);
        while let Some(committed) = chunks.next().await {
            outcome.count(&committed?);
        }
        Ok(outcome)
    }
}

impl BatchOutcome {
    fn count(&mut self, committed: &[Committed]) {
        for done in committed {
            match (done.changed, done.record.deleted, done.record.version) {
                (false, _, _) => self.unchanged += 1,
                (true, true, _) => self.deleted += 1,
                (true, false, Version::FIRST) => self.created += 1,
                (true, false, _) => self.updated += 1,
            }
        }
    }
}
