//! Bringing a store written by an earlier version up to date:
//!
//! - records then carried their feed number as `ord`, the key of the
//!   `by_ord` local index the feed was read from; now they carry it as
//!   `seq` and feed entries name them (`feed.rs`). Without this, the
//!   records of such a store would be missing from every pull until
//!   rewritten;
//! - records then shared one partition key per tenant and entity type
//!   (`T#<tenant>#E#<entity>`); now they are spread over shards
//!   (`keys::RECORD_SHARDS`). Without the move, they could not be found.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};

use super::feed::entry_item;
use super::keys::{self, COUNTER_SK, LEGACY_LEDGER, LEGACY_LINKS, LEGACY_RECORDS, ORD, PK, SK};
use super::{Store, build_error, store_error, string_value};
use crate::error::Result;
use crate::model::TenantId;

/// Records named by one feed entry of the upgrade.
const PER_ENTRY: usize = 100;

/// Records moved to their shards in one transaction (two actions each).
const PER_MOVE: usize = 25;

/// A Scan filter matching records, ledger entries and links written
/// before shards (the records still carrying `ord` are among them).
const UNSHARDED: &str = "(begins_with(#sk, :record) AND (contains(#pk, :records) \
     OR begins_with(#pk, :ledger))) OR (begins_with(#pk, :links) AND begins_with(#sk, :link))";

type Item = HashMap<String, AttributeValue>;

/// Per tenant: (number, entity type, record id, the item's key).
type Found = BTreeMap<String, Vec<(u64, String, String, String)>>;

/// What [`Store::tidy_at_start`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tidied {
    /// Records given feed entries.
    pub moved: usize,
    /// Records, ledger entries and links moved from their one partition
    /// key to their shard's.
    pub resharded: usize,
    /// Blocks of sequence numbers ended.
    pub holds: usize,
}

/// Notes `item` in `found` if it is a record that still carries `ord`.
fn note_old_record(found: &mut Found, item: &HashMap<String, AttributeValue>) {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(s)) | Some(AttributeValue::N(s)) => Some(s.clone()),
        _ => None,
    };
    let (Some(pk), Some(sk), Some(ord)) = (text(PK), text(SK), text(ORD)) else {
        return;
    };
    let (Some((tenant, entity)), Some(id), Ok(seq)) = (
        keys::parse_records_pk(&pk),
        sk.strip_prefix("R#"),
        ord.parse::<u64>(),
    ) else {
        return;
    };
    found.entry(tenant.to_owned()).or_default().push((
        seq,
        entity.to_owned(),
        id.to_owned(),
        pk.clone(),
    ));
}

impl Store {
    /// What a local run does as it starts, from one Scan of the table:
    ///
    /// - finds the records that still carry `ord`, writes feed entries
    ///   naming them at their numbers, then moves each one's number to
    ///   `seq`. Safe to run again after it was cut short: entries are
    ///   rewritten the same, records already moved are not found;
    /// - ends every hold on every tenant's counter, whoever took it: the
    ///   process knows no one else writes (it starts over the store its
    ///   killed predecessor used, whose blocks would otherwise stop readers
    ///   until their deadlines). What the killed chunks wrote stands;
    ///   nothing more is written under their numbers;
    /// - moves the records, delivery ledger entries and pair links written
    ///   before shards to their shard's partition key, after the records'
    ///   feed entries: each move puts the new item and deletes the old in
    ///   one transaction, so an item is never in both places or in
    ///   neither, and a move cut short is finished by the next start.
    pub async fn tidy_at_start(&self) -> Result<Tidied> {
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression(format!("{UNSHARDED} OR #sk = :counter"))
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":records", string_value(LEGACY_RECORDS))
            .expression_attribute_values(":ledger", string_value(LEGACY_LEDGER))
            .expression_attribute_values(":links", string_value(LEGACY_LINKS))
            .expression_attribute_values(":record", string_value("R#"))
            .expression_attribute_values(":link", string_value("E#"))
            .expression_attribute_values(":counter", string_value(COUNTER_SK))
            .into_paginator()
            .send();
        let mut found = Found::new();
        let mut legacy = Vec::new();
        let mut holds = 0;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| store_error("Scan", e))?;
            for item in page.items() {
                match item.get(SK) {
                    Some(AttributeValue::S(sk)) if sk == COUNTER_SK => {
                        holds += self.drop_counter_holds(item).await?;
                    }
                    _ => {
                        note_old_record(&mut found, item);
                        legacy.extend(sharded(item));
                    }
                }
            }
        }
        let moved = self.give_feed_entries(found).await?;
        Ok(Tidied {
            moved,
            resharded: self.move_to_shards(legacy).await?,
            holds,
        })
    }

    /// Each item of `legacy` (old key, new item) put under its shard's
    /// partition key and deleted from its old one, `PER_MOVE` items a
    /// transaction; after `give_feed_entries`, so a cut-short start that
    /// comes again still finds the records without feed entries.
    async fn move_to_shards(&self, legacy: Vec<(Item, Item)>) -> Result<usize> {
        for chunk in legacy.chunks(PER_MOVE) {
            let mut request = self.client.transact_write_items();
            for (key, item) in chunk {
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item.clone()))
                    .condition_expression("attribute_not_exists(#pk)")
                    .expression_attribute_names("#pk", PK)
                    .build()
                    .map_err(build_error)?;
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key.clone()))
                    .condition_expression("attribute_exists(#pk)")
                    .expression_attribute_names("#pk", PK)
                    .build()
                    .map_err(build_error)?;
                request = request
                    .transact_items(TransactWriteItem::builder().put(put).build())
                    .transact_items(TransactWriteItem::builder().delete(delete).build());
            }
            request
                .send()
                .await
                .map_err(|e| store_error("TransactWriteItems", e))?;
        }
        Ok(legacy.len())
    }

    /// Feed entries naming `found` at their numbers, then each record's
    /// number moved from `ord` to `seq`. Returns how many moved.
    async fn give_feed_entries(&self, found: Found) -> Result<usize> {
        let mut moved = 0;
        for (tenant, mut records) in found {
            let tenant = TenantId::parse(&tenant)?;
            records.sort_unstable();
            for chunk in records.chunks(PER_ENTRY) {
                let changes = chunk
                    .iter()
                    .map(|(seq, entity, id, _)| (entity.as_str(), id.as_str(), *seq));
                if let Some(entry) = entry_item(&tenant, changes) {
                    self.put_unconditional(entry).await?;
                }
                for (_, _, id, pk) in chunk {
                    self.client
                        .update_item()
                        .table_name(&self.table)
                        .key(PK, string_value(pk.as_str()))
                        .key(SK, string_value(format!("R#{id}")))
                        .condition_expression("attribute_exists(#ord)")
                        .update_expression("SET #seq = #ord REMOVE #ord")
                        .expression_attribute_names("#ord", ORD)
                        .expression_attribute_names("#seq", "seq")
                        .send()
                        .await
                        .map_err(|e| store_error("UpdateItem", e))?;
                    moved += 1;
                }
            }
        }
        Ok(moved)
    }
}

/// The key of an item written before shards (a record, a ledger entry, a
/// link), and the item as it is stored now: under its shard's partition
/// key, a record's number in `seq`, not `ord` (where the scanned copy may
/// still carry it). `None` for any other item.
fn sharded(old: &Item) -> Option<(Item, Item)> {
    let (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) = (old.get(PK), old.get(SK))
    else {
        return None;
    };
    let new_pk = if let Some(destination) = pk.strip_prefix(LEGACY_LEDGER) {
        // `R#<entity>#<record id>`: entity types hold no `#`.
        let (_, id) = sk.strip_prefix("R#")?.split_once('#')?;
        keys::ledger_pk(destination, id)
    } else if let Some(source) = pk.strip_prefix(LEGACY_LINKS) {
        keys::link_pk(source, sk.strip_prefix("E#")?)
    } else if pk.contains(LEGACY_RECORDS) {
        let (tenant, entity) = keys::parse_records_pk(pk)?;
        keys::shard_pk(tenant, entity, keys::shard_of(sk.strip_prefix("R#")?))
    } else {
        return None;
    };
    let key = HashMap::from([
        (PK.to_owned(), old[PK].clone()),
        (SK.to_owned(), old[SK].clone()),
    ]);
    let mut item = old.clone();
    if let Some(ord) = item.remove(ORD) {
        item.insert("seq".to_owned(), ord);
    }
    item.insert(PK.to_owned(), string_value(new_pk));
    Some((key, item))
}
