//! Records: reads, listing, the change feed in commit order, and the batched
//! upsert used by bulk pulls.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::keys::{self, BY_ORD, ORD, PK, SK};
use super::paging::{Page, PageToken};
use super::{Store, backoff, mapping_error, n, s, store_error};
use crate::error::{Error, Result};
use crate::model::{
    ContentHash, Cursor, EntityType, Origin, Record, RecordId, Seq, SourceId, TenantId, Timestamp,
    Version,
};

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
    /// The source's own version of the record (its updated-at, as the
    /// source wrote it), set by pulls; other writers leave it empty.
    pub mark: Option<String>,
}

/// One record of a bulk write.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkWrite {
    pub id: RecordId,
    pub change: Change,
    /// The source's version of the record (see [`RecordWrite::mark`]).
    pub mark: Option<String>,
}

/// What `changes_since` returns: changed records in commit order and the
/// cursor to continue from.
#[derive(Debug, Clone, PartialEq)]
pub struct Changes {
    pub records: Vec<Record>,
    pub cursor: Cursor,
    /// More changes can be read right now beyond `cursor`. Changes still
    /// being written by a bulk upsert show up on a later pull.
    pub has_more: bool,
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

/// A record as stored: the model plus its keys, the feed position and expiry.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct RecordItem {
    pk: String,
    sk: String,
    ord: u64,
    tenant: TenantId,
    entity: EntityType,
    id: RecordId,
    data: Map<String, Value>,
    version: Version,
    hash: ContentHash,
    deleted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<SourceId>,
    created_at: Timestamp,
    updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origin: Option<Origin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mark: Option<String>,
}

/// A query over the record items of one partition (tenant and entity).
fn record_rows(
    query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
    query
        .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
        .expression_attribute_names("#sk", SK)
        .expression_attribute_values(":prefix", s("R#"))
}

/// The attributes of a record item other than its data.
const HEAD: &[&str] = &[
    "id",
    "version",
    "hash",
    "deleted",
    "source",
    "created_at",
    "updated_at",
    "expires_at",
    "origin",
    "ord",
    "mark",
];

/// A record without its data, from a projected item; `None` when it is a
/// tombstone past its retention.
fn decode_head(
    tenant: &TenantId,
    entity: &EntityType,
    item: HashMap<String, AttributeValue>,
    now: Timestamp,
) -> Result<Option<Record>> {
    let head: RecordHead = serde_dynamo::from_item(item).map_err(|e| mapping_error("record", e))?;
    if head.expires_at.is_some_and(|at| now.as_secs() >= at) {
        return Ok(None);
    }
    Ok(Some(Record {
        tenant: tenant.clone(),
        entity: entity.clone(),
        id: head.id,
        data: Map::new(),
        version: head.version,
        hash: head.hash,
        deleted: head.deleted,
        source: head.source,
        created_at: head.created_at,
        updated_at: head.updated_at,
        seq: Seq::new(head.ord),
        origin: head.origin,
        mark: head.mark,
    }))
}

/// A stored record reduced to its id, state, owner and the source's version
/// of it: what a range digest is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMark {
    pub id: RecordId,
    pub deleted: bool,
    pub source: Option<SourceId>,
    pub mark: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MarkItem {
    sk: String,
    deleted: bool,
    #[serde(default)]
    source: Option<SourceId>,
    #[serde(default)]
    mark: Option<String>,
    #[serde(default)]
    expires_at: Option<i64>,
}

/// A projected record item as a [`RecordMark`]; `None` when it is a
/// tombstone past its retention.
fn decode_mark(
    item: HashMap<String, AttributeValue>,
    now: Timestamp,
) -> Result<Option<RecordMark>> {
    let item: MarkItem = serde_dynamo::from_item(item).map_err(|e| mapping_error("record", e))?;
    if item.expires_at.is_some_and(|at| now.as_secs() >= at) {
        return Ok(None);
    }
    let id = item
        .sk
        .strip_prefix("R#")
        .ok_or_else(|| Error::internal(format!("not a record key: {}", item.sk)))?;
    Ok(Some(RecordMark {
        id: RecordId::parse(id)?,
        deleted: item.deleted,
        source: item.source,
        mark: item.mark,
    }))
}

/// A stored record without its data.
#[derive(Debug, Deserialize)]
struct RecordHead {
    id: RecordId,
    version: Version,
    hash: ContentHash,
    deleted: bool,
    #[serde(default)]
    source: Option<SourceId>,
    created_at: Timestamp,
    updated_at: Timestamp,
    #[serde(default)]
    expires_at: Option<i64>,
    #[serde(default)]
    origin: Option<Origin>,
    ord: u64,
    #[serde(default)]
    mark: Option<String>,
}

impl RecordItem {
    pub(super) fn from_record(record: &Record, tombstone_retention: Duration) -> Self {
        Self {
            pk: keys::records_pk(&record.tenant, &record.entity),
            sk: keys::record_sk(&record.id),
            ord: record.seq.get(),
            tenant: record.tenant.clone(),
            entity: record.entity.clone(),
            id: record.id.clone(),
            data: record.data.clone(),
            version: record.version,
            hash: record.hash.clone(),
            deleted: record.deleted,
            source: record.source.clone(),
            created_at: record.created_at,
            updated_at: record.updated_at,
            expires_at: record
                .deleted
                .then(|| super::kv::ttl_secs(record.updated_at, tombstone_retention)),
            origin: record.origin.clone(),
            mark: record.mark.clone(),
        }
    }

    pub(super) fn into_record(self) -> Record {
        Record {
            tenant: self.tenant,
            entity: self.entity,
            id: self.id,
            data: self.data,
            version: self.version,
            hash: self.hash,
            deleted: self.deleted,
            source: self.source,
            created_at: self.created_at,
            updated_at: self.updated_at,
            seq: Seq::new(self.ord),
            origin: self.origin,
            mark: self.mark,
        }
    }

    fn expired_at(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| now.as_secs() >= at)
    }

    pub(super) fn to_item(&self) -> Result<HashMap<String, AttributeValue>> {
        serde_dynamo::to_item(self).map_err(|e| mapping_error("record", e))
    }
}

/// Decodes a stored record, hiding tombstones past their retention.
pub(super) fn decode_record(
    item: HashMap<String, AttributeValue>,
    now: Timestamp,
) -> Result<Option<Record>> {
    let item: RecordItem = serde_dynamo::from_item(item).map_err(|e| mapping_error("record", e))?;
    Ok((!item.expired_at(now)).then(|| item.into_record()))
}

pub(super) fn record_key(
    tenant: &TenantId,
    entity: &EntityType,
    id: &RecordId,
) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_owned(), s(keys::records_pk(tenant, entity))),
        (SK.to_owned(), s(keys::record_sk(id))),
    ])
}

/// The record a write produces, or `None` when it would change nothing.
pub(super) fn apply_change(
    tenant: &TenantId,
    write: &RecordWrite,
    current: Option<&Record>,
    now: Timestamp,
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
        c.hash == hash && c.deleted == deleted && (write.mark.is_none() || c.mark == write.mark)
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
        mark: write.mark.clone(),
    })
}

/// BatchGetItem's limit of keys per call.
const BATCH_GET_MAX: usize = 100;
/// Record writes in one bulk chunk: a transaction's 100 actions less the
/// counter and the trail entry.
pub const BULK_CHUNK: usize = super::commit::MAX_TRANSACTION_ITEMS - 2;
/// A bulk chunk closes before its records add up to this much (a
/// transaction carries at most 4 MB).
const BULK_CHUNK_BYTES: usize = 2 * 1024 * 1024;
/// BatchGetItem calls in flight at once for one read.
const READ_CONCURRENCY: usize = 4;

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
    pub async fn get_record(
        &self,
        tenant: &TenantId,
        entity: &EntityType,
        id: &RecordId,
    ) -> Result<Option<Record>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(record_key(tenant, entity, id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        match out.item {
            Some(item) => decode_record(item, Timestamp::now()),
            None => Ok(None),
        }
    }

    /// Reads many items by key with strongly consistent reads, retrying
    /// unprocessed keys. Returns the raw items found.
    pub(super) async fn batch_get(
        &self,
        keys: Vec<HashMap<String, AttributeValue>>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>> {
        self.batch_get_projected(keys, None).await
    }

    /// [`Store::batch_get`] reading only the `attributes` named.
    async fn batch_get_projected(
        &self,
        keys: Vec<HashMap<String, AttributeValue>>,
        attributes: Option<&[&str]>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>> {
        let calls: Vec<_> = keys
            .chunks(BATCH_GET_MAX)
            .map(|chunk| self.get_chunk(chunk.to_vec(), attributes))
            .collect();
        let mut calls = futures_util::stream::iter(calls).buffer_unordered(READ_CONCURRENCY);
        let mut found = Vec::with_capacity(keys.len());
        while let Some(items) = calls.next().await {
            found.extend(items?);
        }
        Ok(found)
    }

    async fn get_chunk(
        &self,
        keys: Vec<HashMap<String, AttributeValue>>,
        attributes: Option<&[&str]>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>> {
        let mut found = Vec::with_capacity(keys.len());
        let mut request = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true);
        if let Some(attributes) = attributes {
            let names: Vec<String> = (0..attributes.len()).map(|i| format!("#a{i}")).collect();
            request = request.projection_expression(names.join(", "));
            for (name, attribute) in names.iter().zip(attributes) {
                request = request.expression_attribute_names(name, *attribute);
            }
        }
        let mut pending = Some(request.build().map_err(|e| Error::Internal {
            context: "building a batch read".into(),
            source: Some(Box::new(e)),
        })?);
        let mut attempt = 0;
        while let Some(request) = pending.take() {
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| store_error("BatchGetItem", e))?;
            if let Some(mut responses) = out.responses {
                found.extend(responses.remove(&self.table).unwrap_or_default());
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .filter(|k| !k.keys().is_empty());
            if pending.is_some() {
                backoff(attempt).await;
                attempt += 1;
            }
        }
        Ok(found)
    }

    /// Current records by id (absent ones are left out), keyed by id.
    pub async fn get_records(
        &self,
        tenant: &TenantId,
        entity: &EntityType,
        ids: &[&RecordId],
    ) -> Result<HashMap<RecordId, Record>> {
        self.read_records(tenant, entity, ids, false).await
    }

    /// Current records by id; with `heads_only`, without their data (enough
    /// to decide whether a put or delete changes anything).
    pub(super) async fn read_records(
        &self,
        tenant: &TenantId,
        entity: &EntityType,
        ids: &[&RecordId],
        heads_only: bool,
    ) -> Result<HashMap<RecordId, Record>> {
        let keys = ids
            .iter()
            .map(|id| record_key(tenant, entity, id))
            .collect();
        let items = self
            .batch_get_projected(keys, heads_only.then_some(HEAD))
            .await?;
        let now = Timestamp::now();
        let mut records = HashMap::new();
        for item in items {
            let record = if heads_only {
                decode_head(tenant, entity, item, now)?
            } else {
                decode_record(item, now)?
            };
            if let Some(record) = record {
                records.insert(record.id.clone(), record);
            }
        }
        Ok(records)
    }

    /// Records of one entity type in id order, tombstones included, without
    /// their data: what a sweep or a comparison of content hashes needs.
    pub async fn list_record_heads(
        &self,
        tenant: &TenantId,
        entity: &EntityType,
        limit: u32,
        after: Option<&PageToken>,
    ) -> Result<Page<Record>> {
        self.query_page(
            &keys::records_pk(tenant, entity),
            |mut query| {
                let names: Vec<String> = (0..HEAD.len()).map(|i| format!("#h{i}")).collect();
                for (name, attribute) in names.iter().zip(HEAD) {
                    query = query.expression_attribute_names(name, *attribute);
                }
                record_rows(query).projection_expression(names.join(", "))
            },
            limit,
            after,
            |item, now| decode_head(tenant, entity, item, now),
        )
        .await
    }

    /// Records of one entity type with ids from `from` (inclusive) up to
    /// `to` (exclusive; `None`: to the end) in id order, tombstones
    /// included, reduced to what a range digest needs.
    pub async fn list_record_marks(
        &self,
        tenant: &TenantId,
        entity: &EntityType,
        from: &str,
        to: Option<&str>,
        limit: u32,
        after: Option<&PageToken>,
    ) -> Result<Page<RecordMark>> {
        let low = format!("R#{from}");
        // `$` sorts right after `#`: past every record key.
        let high = to.map_or_else(|| "R$".to_owned(), |to| format!("R#{to}"));
        let page = self
            .query_page(
                &keys::records_pk(tenant, entity),
                |query| {
                    query
                        .key_condition_expression("#pk = :pk AND #sk BETWEEN :low AND :high")
                        .expression_attribute_names("#sk", SK)
                        .expression_attribute_names("#del", "deleted")
                        .expression_attribute_names("#src", "source")
                        .expression_attribute_names("#mark", "mark")
                        .expression_attribute_names("#exp", keys::EXPIRES_AT)
                        .expression_attribute_values(":low", s(low))
                        .expression_attribute_values(":high", s(high))
                        .projection_expression("#sk, #del, #src, #mark, #exp")
                },
                limit,
                after,
                decode_mark,
            )
            .await?;
        // BETWEEN includes its upper end; `to` belongs to the next range.
        let items = page
            .items
            .into_iter()
            .filter(|m| to.is_none_or(|to| m.id.as_str() < to))
            .collect();
        Ok(Page {
            items,
            next: page.next,
        })
    }

    /// A consistent query of the change-feed index (keys only) for the
    /// records of one entity type with sequence numbers `from..=to`.
    fn feed_query(
        &self,
        tenant: &TenantId,
        entity: &EntityType,
        from: u64,
        to: u64,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(BY_ORD)
            .key_condition_expression("#pk = :pk AND #ord BETWEEN :from AND :to")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#ord", ORD)
            .expression_attribute_values(":pk", s(keys::records_pk(tenant, entity)))
            .expression_attribute_values(":from", n(from))
            .expression_attribute_values(":to", n(to))
            .consistent_read(true)
    }

    /// Ids of the records of one entity type changed after `after` in the
    /// change feed, and the sequence number they are complete up to (every
    /// change up to it is among them, or was overwritten by one that is).
    pub async fn changed_record_ids(
        &self,
        tenant: &TenantId,
        entity: &EntityType,
        after: Seq,
    ) -> Result<(Vec<RecordId>, Seq)> {
        let upto = self.latest_seq(tenant).await?;
        let mut ids = Vec::new();
        if upto <= after {
            return Ok((ids, after));
        }
        let mut start = None;
        loop {
            let out = self
                .feed_query(tenant, entity, after.get() + 1, upto.get())
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| store_error("Query", e))?;
            for item in out.items.unwrap_or_default() {
                if let Some(AttributeValue::S(sk)) = item.get(SK)
                    && let Some(id) = sk.strip_prefix("R#")
                {
                    ids.push(RecordId::parse(id)?);
                }
            }
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok((ids, upto)),
            }
        }
    }

    /// Current records of any entity types by key (absent ones left out).
    pub async fn get_many(
        &self,
        tenant: &TenantId,
        keys: &[(EntityType, RecordId)],
    ) -> Result<HashMap<(EntityType, RecordId), Record>> {
        let items = self
            .batch_get(
                keys.iter()
                    .map(|(entity, id)| record_key(tenant, entity, id))
                    .collect(),
            )
            .await?;
        let now = Timestamp::now();
        let mut records = HashMap::new();
        for item in items {
            if let Some(record) = decode_record(item, now)? {
                records.insert((record.entity.clone(), record.id.clone()), record);
            }
        }
        Ok(records)
    }

    /// Records of one entity type in id order, tombstones included.
    pub async fn list_records(
        &self,
        tenant: &TenantId,
        entity: &EntityType,
        limit: u32,
        after: Option<&PageToken>,
    ) -> Result<Page<Record>> {
        self.query_page(
            &keys::records_pk(tenant, entity),
            record_rows,
            limit,
            after,
            decode_record,
        )
        .await
    }

    /// Every change to the given entity types committed after `cursor`, in
    /// commit order, at most `limit` records a page.
    ///
    /// Gap-free: every change, bulk or not, takes its sequence number from
    /// the tenant counter inside the transaction that writes it, so a change
    /// that commits later never lands behind a cursor already handed out,
    /// and everything up to the counter's value is readable.
    pub async fn changes_since(
        &self,
        tenant: &TenantId,
        entities: &[EntityType],
        cursor: Cursor,
        limit: u32,
    ) -> Result<Changes> {
        let limit = limit.clamp(1, 1000) as usize;
        let latest = self.latest_seq(tenant).await?.get();
        let watermark = latest.max(cursor.seq().get());
        let from = cursor.seq().get() + 1;
        if from > watermark {
            // Nothing new; the client is complete up to its cursor as of now.
            return Ok(Changes {
                records: Vec::new(),
                cursor: Cursor::at(cursor.seq()),
                has_more: false,
            });
        }
        let now = Timestamp::now();
        let mut records = Vec::new();
        // Each entity type is read up to `limit`; the page ends where the
        // first truncated entity type ends, so nothing is skipped.
        let mut page_end = watermark;
        for entity in entities {
            let out = self
                .feed_query(tenant, entity, from, watermark)
                .limit(limit as i32)
                .send()
                .await
                .map_err(|e| store_error("Query", e))?;
            // The index holds keys only (cheap to write); the records come
            // with one consistent batch read.
            let entries = out.items.unwrap_or_default();
            let last = entries.last().and_then(|e| match e.get(ORD) {
                Some(AttributeValue::N(n)) => n.parse::<u64>().ok(),
                _ => None,
            });
            let keys = entries
                .iter()
                .filter_map(|e| {
                    Some(HashMap::from([
                        (PK.to_owned(), e.get(PK)?.clone()),
                        (SK.to_owned(), e.get(SK)?.clone()),
                    ]))
                })
                .collect();
            for item in self.batch_get(keys).await? {
                records.extend(decode_record(item, now)?);
            }
            if out.last_evaluated_key.is_some() {
                page_end = page_end.min(last.unwrap_or(from - 1));
            }
        }
        // A record rewritten since the index was read carries a newer
        // sequence number; it comes with a later pull.
        records.retain(|r| (from..=page_end).contains(&r.seq.get()));
        records.sort_by_key(|r| r.seq);
        if records.len() > limit {
            records.truncate(limit);
            page_end = records.last().map_or(page_end, |r| r.seq.get());
        }
        Ok(Changes {
            records,
            cursor: Cursor::at(Seq::new(page_end)),
            has_more: page_end < watermark,
        })
    }

    /// Writes many records of one entity type, skipping every record whose
    /// content hash is unchanged. Meant for bulk pulls where the upstream is
    /// the source of truth: each write is applied over whatever is stored.
    ///
    /// The records go in atomic chunks of up to [`BULK_CHUNK`] (fewer when
    /// they are large), each one TransactWriteItems with its sequence
    /// numbers and its change-trail entry, conditioned on the versions read
    /// (a record changed meanwhile is re-read and the chunk retried).
    pub async fn upsert_batch(
        &self,
        tenant: &TenantId,
        entity: &EntityType,
        source: Option<&SourceId>,
        changes: Vec<(RecordId, Change)>,
        trail: &super::Trail,
    ) -> Result<BatchOutcome> {
        let writes = changes
            .into_iter()
            .map(|(id, change)| BulkWrite {
                id,
                change,
                mark: None,
            })
            .collect();
        self.upsert_marked(tenant, entity, source, writes, trail)
            .await
    }

    /// [`Store::upsert_batch`] of writes that carry the source's version of
    /// each record (see [`RecordWrite::mark`]).
    pub async fn upsert_marked(
        &self,
        tenant: &TenantId,
        entity: &EntityType,
        source: Option<&SourceId>,
        changes: Vec<BulkWrite>,
        trail: &super::Trail,
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
        while let Some(BulkWrite { id, change, mark }) = changes.next() {
            chunk_bytes += approximate_size(&change) + id.as_str().len();
            chunk.push(RecordWrite {
                entity: entity.clone(),
                id,
                change,
                expect: Expect::Any,
                source: source.cloned(),
                origin: None,
                mark,
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
                let set = super::ChangeSet {
                    tenant: tenant.clone(),
                    writes,
                    client: None,
                    once: Vec::new(),
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

    /// Writes one record under a condition; see [`Store::commit`] for the
    /// atomic write of several.
    pub async fn put_record(
        &self,
        tenant: &TenantId,
        write: RecordWrite,
    ) -> Result<super::Committed> {
        let set = super::ChangeSet {
            tenant: tenant.clone(),
            writes: vec![write],
            client: None,
            once: Vec::new(),
            trail: None,
        };
        let mut committed = self.commit(&set).await?;
        committed
            .pop()
            .ok_or_else(|| Error::internal("a one-write commit returned nothing"))
    }
}
