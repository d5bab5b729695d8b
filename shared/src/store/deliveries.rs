//! The delivery ledger: per destination and record, what was delivered
//! (status, version, content hash, external id, attempts, last error). A
//! destination's entries are spread over shards as its records are (one
//! partition key would take at most 1,000 write units a second, about 500
//! deliveries), listed merged; every write is conditioned on the revision
//! read, so two deliverers of one record never both record a delivery.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};

use super::keys::{self, PK, SK};
use super::paging::{Page, PageToken};
use super::{Store, mapping_error, number_value, store_error, string_value};
use crate::error::Result;
use crate::model::{ContentHash, EntityType, RecordId, SourceId, Timestamp};

/// Where a record stands with one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// The destination has `version`.
    Delivered,
    /// The last attempt failed; a retry is queued (or the destination
    /// refused the record for good, with its message in `last_error`).
    Failed,
    /// Retries ran out; the work is on the dead-letter queue.
    Dead,
    /// Not written: the change came from the destination's own system, or
    /// its content is what the destination already has.
    Skipped,
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub entity: EntityType,
    pub id: RecordId,
    pub status: DeliveryStatus,
    /// The record version this entry is about.
    pub version: u64,
    /// The version the destination last took (delivered or skipped).
    #[serde(default)]
    pub delivered_version: u64,
    /// The content hash of what the destination last took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<ContentHash>,
    /// The destination's id for the record (an event id, a page id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Failed attempts at `version`.
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Why a change was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(with = "crate::model::iso")]
    pub updated_at: Timestamp,
}

/// A ledger entry as read, with the revision a write must be based on.
#[derive(Debug, Clone, PartialEq)]
pub struct Ledgered {
    pub entry: LedgerEntry,
    pub revision: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct LedgerItem {
    pk: String,
    sk: String,
    revision: u64,
    #[serde(flatten)]
    entry: LedgerEntry,
}

/// A two-way pair's link: the record a destination created an object for,
/// under the paired source and the object's id there.
#[derive(Debug, Serialize, Deserialize)]
struct LinkItem {
    pk: String,
    sk: String,
    entity: EntityType,
    id: RecordId,
}

fn link_sk(external_id: &str) -> String {
    format!("E#{external_id}")
}

/// One ledger write: the entry, the revision it is based on, and the link
/// (paired source, external id) to record with it.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerWrite {
    pub entry: LedgerEntry,
    pub read: Option<u64>,
    pub link: Option<(SourceId, String)>,
}

fn ledger_sk(entity: &EntityType, id: &RecordId) -> String {
    format!("R#{entity}#{id}")
}

impl Store {
    /// The ledger entry of one record at one destination.
    pub async fn ledger_get(
        &self,
        destination: &str,
        entity: &EntityType,
        id: &RecordId,
    ) -> Result<Option<Ledgered>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, string_value(keys::ledger_pk(destination, id.as_str())))
            .key(SK, string_value(ledger_sk(entity, id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        out.item
            .map(|item| {
                let item: LedgerItem =
                    serde_dynamo::from_item(item).map_err(|e| mapping_error("ledger", e))?;
                Ok(Ledgered {
                    entry: item.entry,
                    revision: item.revision,
                })
            })
            .transpose()
    }

    /// The ledger entries of many records at one destination, in one
    /// consistent batched read.
    pub async fn ledger_get_many(
        &self,
        destination: &str,
        records: &[(EntityType, RecordId)],
    ) -> Result<HashMap<(EntityType, RecordId), Ledgered>> {
        let keys = records
            .iter()
            .map(|(entity, id)| {
                HashMap::from([
                    (
                        PK.to_owned(),
                        string_value(keys::ledger_pk(destination, id.as_str())),
                    ),
                    (SK.to_owned(), string_value(ledger_sk(entity, id))),
                ])
            })
            .collect();
        let mut found = HashMap::new();
        for item in self.batch_get(keys).await? {
            let item: LedgerItem =
                serde_dynamo::from_item(item).map_err(|e| mapping_error("ledger", e))?;
            found.insert(
                (item.entry.entity.clone(), item.entry.id.clone()),
                Ledgered {
                    entry: item.entry,
                    revision: item.revision,
                },
            );
        }
        Ok(found)
    }

    /// Writes many entries, each over the revision read and with its link,
    /// in transactions of up to 100 actions (an entry and its link commit
    /// together). Returns the indexes of the writes not done: those of a
    /// transaction a concurrent writer cancelled (the caller retries them
    /// one by one).
    pub async fn ledger_put_many(
        &self,
        destination: &str,
        writes: &[LedgerWrite],
    ) -> Result<Vec<usize>> {
        let mut not_written = Vec::new();
        let mut start = 0;
        while start < writes.len() {
            let mut actions = Vec::new();
            let mut end = start;
            while end < writes.len() {
                let needed = 1 + usize::from(writes[end].link.is_some());
                if actions.len() + needed > super::MAX_TRANSACTION_ITEMS {
                    break;
                }
                actions.extend(self.ledger_actions(destination, &writes[end])?);
                end += 1;
            }
            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(actions))
                .send()
                .await;
            match sent {
                Ok(_) => {}
                Err(SdkError::ServiceError(service))
                    if matches!(
                        service.err(),
                        TransactWriteItemsError::TransactionCanceledException(_)
                    ) =>
                {
                    not_written.extend(start..end);
                }
                Err(err) => return Err(store_error("TransactWriteItems", err)),
            }
            start = end;
        }
        Ok(not_written)
    }

    fn ledger_actions(
        &self,
        destination: &str,
        write: &LedgerWrite,
    ) -> Result<Vec<TransactWriteItem>> {
        let item = LedgerItem {
            pk: keys::ledger_pk(destination, write.entry.id.as_str()),
            sk: ledger_sk(&write.entry.entity, &write.entry.id),
            revision: write.read.map_or(1, |r| r + 1),
            entry: write.entry.clone(),
        };
        let item = serde_dynamo::to_item(&item).map_err(|e| mapping_error("ledger", e))?;
        let put = Put::builder().table_name(&self.table).set_item(Some(item));
        let put = match write.read {
            None => put
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK),
            Some(read) => put
                .condition_expression("#rev = :rev")
                .expression_attribute_names("#rev", "revision")
                .expression_attribute_values(":rev", number_value(read)),
        };
        let mut actions = vec![
            TransactWriteItem::builder()
                .put(put.build().map_err(super::build_error)?)
                .build(),
        ];
        if let Some((source, external_id)) = &write.link {
            let link = LinkItem {
                pk: keys::link_pk(source, external_id),
                sk: link_sk(external_id),
                entity: write.entry.entity.clone(),
                id: write.entry.id.clone(),
            };
            let item = serde_dynamo::to_item(&link).map_err(|e| mapping_error("link", e))?;
            actions.push(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(item))
                            .build()
                            .map_err(super::build_error)?,
                    )
                    .build(),
            );
        }
        Ok(actions)
    }

    /// The records a paired destination created the objects `external_ids`
    /// of `source` for, by external id.
    pub async fn links_get_many(
        &self,
        source: &SourceId,
        external_ids: &[&str],
    ) -> Result<HashMap<String, (EntityType, RecordId)>> {
        let keys = external_ids
            .iter()
            .map(|external| {
                HashMap::from([
                    (PK.to_owned(), string_value(keys::link_pk(source, external))),
                    (SK.to_owned(), string_value(link_sk(external))),
                ])
            })
            .collect();
        let mut found = HashMap::new();
        for item in self.batch_get(keys).await? {
            let link: LinkItem =
                serde_dynamo::from_item(item).map_err(|e| mapping_error("link", e))?;
            if let Some(external) = link.sk.strip_prefix("E#") {
                found.insert(external.to_owned(), (link.entity, link.id));
            }
        }
        Ok(found)
    }

    /// A destination's ledger in record order, paged.
    pub async fn ledger_list(
        &self,
        destination: &str,
        limit: u32,
        after: Option<&PageToken>,
    ) -> Result<Page<LedgerEntry>> {
        self.query_shards(
            &keys::ledger_base(destination),
            |query| {
                query
                    .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                    .expression_attribute_names("#sk", SK)
                    .expression_attribute_values(":prefix", AttributeValue::S("R#".into()))
            },
            limit,
            after,
            |item, _| {
                let item: LedgerItem =
                    serde_dynamo::from_item(item).map_err(|e| mapping_error("ledger", e))?;
                Ok(Some(item.entry))
            },
        )
        .await
    }
}
