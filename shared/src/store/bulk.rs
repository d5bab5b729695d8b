//! Bulk upserts: what sync runs, sweeps and force-syncs write. Puts and
//! deletes go in chunks that hold a block of sequence numbers and write
//! each record with its own conditional PutItem, several chunks at once;
//! merges, and every bulk write of a store set to
//! [`BulkWrites::Transactions`], go through the commit path, one
//! transaction per chunk with its sequence numbers and change-trail entry.

use std::collections::HashMap;

use futures_util::StreamExt;
use serde_json::{Map, Value};

use super::keys::{EXPIRES_AT, PK};
use super::logs::LogId;
use super::record_item::RecordItem;
use super::tenant::HeldBlock;
use super::write::apply_change;
use super::{
    BatchOutcome, BulkWrite, BulkWrites, Change, ChangeSet, Committed, Expect, RecordWrite, Store,
    Trail, TrailChange, TrailEntry, is_condition_failure, number_value, store_error,
};
use crate::error::{Error, Result};
use crate::model::{EntityType, Record, RecordId, Seq, SourceId, TenantId, Timestamp, Version};

/// Record writes in one bulk chunk: a transaction's room beside the
/// counter and the trail entry.
const BULK_CHUNK: usize = ChangeSet::record_room(false, 0, true);
/// Records in one chunk of puts and deletes, written at once under one
/// held block of sequence numbers.
const HELD_CHUNK: usize = 100;
/// Chunks of one batch written at the same time: with a store some
/// milliseconds away, what keeps a sync from waiting on each round trip.
const CHUNKS_IN_FLIGHT: usize = 8;
/// How long a chunk holds its block of sequence numbers at most; readers
/// wait at most this long behind a chunk that was cut short.
const HOLD: std::time::Duration = std::time::Duration::from_secs(60);
/// A chunk starts no record write later than this before its hold ends.
const HOLD_MARGIN_MS: i64 = 20_000;
/// How long one record write of a held block may take, its retries
/// included, before the client gives it up: well inside the margin, so a
/// write started before the margin ends before the hold does.
pub(super) const HELD_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
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
        // Held chunks of puts and deletes need only the stored heads (the
        // content is replaced), read for the whole batch at once; merges,
        // and stores writing in transactions, go through the commit path,
        // which reads what it needs.
        let transactions = self.bulk_writes == BulkWrites::Transactions
            || changes.iter().any(|w| matches!(w.change, Change::Merge(_)));
        let mut heads = if transactions {
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
            for writes in chunks {
                let set = ChangeSet {
                    tenant: tenant.clone(),
                    writes,
                    client: None,
                    once_only: Vec::new(),
                    trail: Some(trail.clone()),
                };
                outcome.count(&self.commit(&set).await?);
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

    /// One chunk of puts and deletes over the heads read for it, without a
    /// transaction: the chunk holds a block of sequence numbers, writes its
    /// trail entry, then each record with a conditional PutItem (one write
    /// unit per KB, where a transaction costs two), all at once, and
    /// releases the block. A record that moved since its head was read
    /// goes through [`Store::commit`] instead, with a number of its own.
    ///
    /// Cut short (a crash, a store error), the records written stand, each
    /// complete with its number; the rest were never written, and the run
    /// that failed writes them again. Readers never pass a held block, so
    /// no record lands behind a cursor already handed out.
    async fn write_held(
        &self,
        tenant: &TenantId,
        writes: Vec<RecordWrite>,
        heads: HashMap<RecordId, Record>,
        trail: &Trail,
    ) -> Result<Vec<Committed>> {
        let now = Timestamp::now();
        let changed_by = trail.source();
        let mut committed = Vec::with_capacity(writes.len());
        let mut planned = Vec::new();
        for write in writes {
            let current = heads.get(&write.id);
            match apply_change(tenant, &write, current, now, changed_by.as_ref()) {
                Some(record) => planned.push((write, current.cloned(), record)),
                None => committed.extend(current.map(|c| Committed {
                    record: c.clone(),
                    changed: false,
                })),
            }
        }
        if planned.is_empty() {
            return Ok(committed);
        }
        let entry_id = LogId::generate(now);
        let entry = |records: &mut dyn Iterator<Item = &Record>| TrailEntry {
            trail: trail.clone(),
            changes: records.map(TrailChange::of).collect(),
        };
        let intent = entry(&mut planned.iter().map(|(_, _, r)| r));
        let (block, ()) = tokio::try_join!(
            self.hold_block(tenant, planned.len() as u64, HOLD),
            self.put_trail(tenant, &entry_id, &intent, now),
        )?;
        for (n, (_, _, record)) in planned.iter_mut().enumerate() {
            record.seq = Seq::new(block.first + n as u64);
        }
        let puts = planned
            .iter()
            .map(|(_, current, record)| self.put_held(record, current.as_ref(), &block, now));
        let results = futures_util::future::join_all(puts).await;
        let mut moved = Vec::new();
        let mut failure = None;
        for ((write, _, record), result) in planned.into_iter().zip(results) {
            match result {
                Ok(true) => committed.push(Committed {
                    record,
                    changed: true,
                }),
                Ok(false) => moved.push(write),
                Err(error) => failure = Some(error),
            }
        }
        let released = self.release_block(tenant, &block).await;
        if let Some(error) = failure {
            return Err(error);
        }
        released?;
        if let Some(last) = committed
            .iter()
            .filter(|c| c.changed)
            .map(|c| c.record.seq)
            .max()
        {
            let mut entities: Vec<EntityType> =
                committed.iter().map(|c| c.record.entity.clone()).collect();
            entities.dedup();
            self.signal.announce(super::Commit {
                tenant: tenant.clone(),
                entities,
                seq: last,
            });
        }
        if !moved.is_empty() {
            // The entry names only what this chunk wrote; the records that
            // moved get their own entry from the commit.
            let applied = entry(&mut committed.iter().filter(|c| c.changed).map(|c| &c.record));
            self.put_trail(tenant, &entry_id, &applied, now).await?;
            let set = ChangeSet {
                tenant: tenant.clone(),
                writes: moved,
                client: None,
                once_only: Vec::new(),
                trail: Some(trail.clone()),
            };
            committed.extend(self.commit(&set).await?);
        }
        Ok(committed)
    }

    /// Writes one record of a held block under the condition that it still
    /// is what its head said: true when written, false when it moved.
    async fn put_held(
        &self,
        record: &Record,
        current: Option<&Record>,
        block: &HeldBlock,
        now: Timestamp,
    ) -> Result<bool> {
        // Past this, a write could outlive the hold that readers wait on.
        if Timestamp::now().as_millis() + HOLD_MARGIN_MS > block.deadline_ms {
            return Err(Error::Store {
                operation: "PutItem",
                retryable: true,
                source: "a bulk chunk outran the hold on its sequence numbers".into(),
            });
        }
        let item = RecordItem::from_record(record, self.tombstone_retention).to_item()?;
        let put = self
            .held_client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let put = match current {
            Some(current) => put
                .condition_expression("#version = :version")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":version", number_value(current.version.get())),
            None => put
                .condition_expression("attribute_not_exists(#pk) OR #exp <= :now")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#exp", EXPIRES_AT)
                .expression_attribute_values(":now", number_value(now.as_secs())),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(err) if is_condition_failure(&err) => Ok(false),
            Err(err) => Err(store_error("PutItem", err)),
        }
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
