//! Record reads: one record, many by id, listings in id order, and the
//! change feed in commit order.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use futures_util::Stream;
use futures_util::stream::{select_all, try_unfold};

use super::keys::{self, RECORD_SHARDS, SK};
use super::paging::{Page, PageToken};
use super::record_item::{
    HEAD, RecordMark, decode_head, decode_mark, decode_record, record_key, record_rows,
};
use super::{Store, store_error, string_value};
use crate::error::Result;
use crate::model::{Cursor, EntityType, Record, RecordId, Seq, TenantId, Timestamp};

/// Heads a page of one shard when all are read at once: 16 pages of 250
/// in flight hold about what one merged page of 1,000 does (16 of 1,000
/// added some 30 MB to the peak of a 100,000-record re-sync).
const SHARD_PAGE: u32 = 250;

/// A query over record heads: the attributes other than the data, and the
/// key (merging shards orders by it).
fn head_rows(mut query: QueryFluentBuilder) -> QueryFluentBuilder {
    let names: Vec<String> = (0..HEAD.len()).map(|i| format!("#h{i}")).collect();
    for (name, attribute) in names.iter().zip(HEAD) {
        query = query.expression_attribute_names(name, *attribute);
    }
    record_rows(query).projection_expression(format!("#sk, {}", names.join(", ")))
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
    /// No sequence number past `cursor` was taken when the page was read:
    /// no bulk write held numbers past it, and nothing committed there.
    /// False while a bulk write holds numbers the page stopped before (a
    /// transaction that committed after the held block included).
    pub settled: bool,
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
    /// their data.
    pub async fn list_record_heads(
        &self,
        tenant: &TenantId,
        entity: &EntityType,
        limit: u32,
        after: Option<&PageToken>,
    ) -> Result<Page<Record>> {
        self.query_shards(
            &keys::listing_key(tenant, entity),
            head_rows,
            limit,
            after,
            |item, now| decode_head(tenant, entity, item, now),
        )
        .await
    }

    /// Every record of one entity type, tombstones included, without their
    /// data, a page at a time in no set order: each shard paged on its own
    /// and all of them at once, so nothing is read twice. What a sweep or a
    /// comparison of content hashes needs.
    pub fn record_heads_unordered(
        &self,
        tenant: &TenantId,
        entity: &EntityType,
    ) -> impl Stream<Item = Result<Vec<Record>>> + Send + use<> {
        let shards = (0..RECORD_SHARDS).map(|shard| {
            let (store, tenant, entity) = (self.clone(), tenant.clone(), entity.clone());
            let pk = keys::shard_pk(&tenant, &entity, shard);
            Box::pin(try_unfold(
                Some(None),
                move |after: Option<Option<PageToken>>| {
                    let (store, tenant, entity, pk) =
                        (store.clone(), tenant.clone(), entity.clone(), pk.clone());
                    async move {
                        let Some(after) = after else {
                            return Ok(None);
                        };
                        let page = store
                            .query_page(&pk, head_rows, SHARD_PAGE, after.as_ref(), |item, now| {
                                decode_head(&tenant, &entity, item, now)
                            })
                            .await?;
                        Ok(Some((page.items, page.next.map(Some))))
                    }
                },
            ))
        });
        select_all(shards)
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
            .query_shards(
                &keys::listing_key(tenant, entity),
                |query| {
                    query
                        .key_condition_expression("#pk = :pk AND #sk BETWEEN :low AND :high")
                        .expression_attribute_names("#sk", SK)
                        .expression_attribute_names("#del", "deleted")
                        .expression_attribute_names("#src", "source")
                        .expression_attribute_names("#mark", "mark")
                        .expression_attribute_names("#exp", keys::EXPIRES_AT)
                        .expression_attribute_values(":low", string_value(low.as_str()))
                        .expression_attribute_values(":high", string_value(high.as_str()))
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
        let entities = std::slice::from_ref(entity);
        let (changes, upto) = self
            .feed_changes(tenant, Some(entities), after.get(), upto.get(), None)
            .await?;
        let mut seen = HashSet::new();
        let ids = changes
            .into_iter()
            .filter(|c| seen.insert(c.id.clone()))
            .map(|c| c.id)
            .collect();
        Ok((ids, Seq::new(upto.max(after.get()))))
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

    /// Every live record of one entity type, in id order, to `visit`, a
    /// page at a time, until `visit` answers false.
    pub async fn visit_live_records(
        &self,
        tenant: &TenantId,
        entity: &EntityType,
        mut visit: impl FnMut(&Record) -> bool,
    ) -> Result<()> {
        let mut after = None;
        loop {
            let page = self
                .list_records(tenant, entity, 1000, after.as_ref())
                .await?;
            for record in page.items.iter().filter(|r| !r.deleted) {
                if !visit(record) {
                    return Ok(());
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Records of one entity type in id order, tombstones included.
    pub async fn list_records(
        &self,
        tenant: &TenantId,
        entity: &EntityType,
        limit: u32,
        after: Option<&PageToken>,
    ) -> Result<Page<Record>> {
        self.query_shards(
            &keys::listing_key(tenant, entity),
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
        self.read_feed(tenant, entities, cursor, limit, false).await
    }

    /// [`Store::changes_since`] for a client, which must not be told its
    /// state is complete while a record it may have written is missing: a
    /// page ends the feed (`has_more` false) only when no record of these
    /// entity types changed past the page while it was read. A record
    /// rewritten meanwhile moved past the counter value the page was read
    /// up to; the page then says `has_more`, and the next pull brings it.
    pub async fn changes_for_client(
        &self,
        tenant: &TenantId,
        entities: &[EntityType],
        cursor: Cursor,
        limit: u32,
    ) -> Result<Changes> {
        self.read_feed(tenant, entities, cursor, limit, true).await
    }

    async fn read_feed(
        &self,
        tenant: &TenantId,
        entities: &[EntityType],
        cursor: Cursor,
        limit: u32,
        for_client: bool,
    ) -> Result<Changes> {
        let limit = limit.clamp(1, 1000) as usize;
        let counter = self.read_counter(tenant).await?;
        let latest = counter.horizon(Timestamp::now());
        let watermark = latest.max(cursor.seq().get());
        let from = cursor.seq().get() + 1;
        if from > watermark {
            // Nothing new; the client is complete up to its cursor as of now.
            return Ok(Changes {
                records: Vec::new(),
                cursor: Cursor::at(cursor.seq()),
                has_more: false,
                settled: counter.value <= cursor.seq().get(),
            });
        }
        // The entries past the cursor name the records changed there; each
        // record is read once, at the newest number named, and kept only
        // if it still has a number of this page (one rewritten since comes
        // at its newer number).
        let (named, mut page_end) = self
            .feed_changes(
                tenant,
                Some(entities),
                cursor.seq().get(),
                watermark,
                Some(limit),
            )
            .await?;
        let mut keys = Vec::new();
        let mut wanted = HashSet::new();
        for change in named.iter().rev() {
            if wanted.insert((&change.entity, &change.id)) {
                keys.push(record_key(tenant, &change.entity, &change.id));
            }
        }
        let now = Timestamp::now();
        let mut records = Vec::new();
        let mut moved_on = false;
        for item in self.batch_get(keys).await? {
            if let Some(record) = decode_record(item, now)? {
                moved_on |= record.seq.get() > watermark;
                records.push(record);
            }
        }
        records.retain(|r| (from..=page_end).contains(&r.seq.get()));
        records.sort_by_key(|r| r.seq);
        if records.len() > limit {
            records.truncate(limit);
            page_end = records.last().map_or(page_end, |r| r.seq.get());
        }
        Ok(Changes {
            records,
            cursor: Cursor::at(Seq::new(page_end)),
            has_more: page_end < watermark || (for_client && moved_on),
            settled: counter.value <= page_end,
        })
    }
}
