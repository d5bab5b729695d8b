//! Bringing a store written before feed entries up to date. Records then
//! carried their feed number as `ord`, the key of the `by_ord` local
//! index the feed was read from; now they carry it as `seq` and feed
//! entries name them (`feed.rs`). Without this, the records of such a
//! store would be missing from every pull until rewritten.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;

use super::feed::entry_item;
use super::keys::{COUNTER_SK, ORD, PK, SK};
use super::{Store, store_error, string_value};
use crate::error::Result;
use crate::model::TenantId;

/// Records named by one feed entry of the upgrade.
const PER_ENTRY: usize = 100;

/// A Scan filter matching records that still carry `ord`.
const OLD_RECORDS: &str = "begins_with(#sk, :record) AND attribute_exists(#ord)";

/// Per tenant: (number, entity type, record id, the item's key).
type Found = BTreeMap<String, Vec<(u64, String, String, String)>>;

/// What [`Store::tidy_at_start`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tidied {
    /// Records given feed entries.
    pub moved: usize,
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
    let parts = pk
        .strip_prefix("T#")
        .and_then(|rest| rest.split_once("#E#"));
    let (Some((tenant, entity)), Some(id), Ok(seq)) =
        (parts, sk.strip_prefix("R#"), ord.parse::<u64>())
    else {
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
    ///   nothing more is written under their numbers.
    pub async fn tidy_at_start(&self) -> Result<Tidied> {
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression(format!("({OLD_RECORDS}) OR #sk = :counter"))
            .expression_attribute_names("#sk", SK)
            .expression_attribute_names("#ord", ORD)
            .expression_attribute_values(":record", string_value("R#"))
            .expression_attribute_values(":counter", string_value(COUNTER_SK))
            .into_paginator()
            .send();
        let mut found = Found::new();
        let mut holds = 0;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| store_error("Scan", e))?;
            for item in page.items() {
                match item.get(SK) {
                    Some(AttributeValue::S(sk)) if sk == COUNTER_SK => {
                        holds += self.drop_counter_holds(item).await?;
                    }
                    _ => note_old_record(&mut found, item),
                }
            }
        }
        Ok(Tidied {
            moved: self.give_feed_entries(found).await?,
            holds,
        })
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
