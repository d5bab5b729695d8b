//! Bringing a store written before feed entries up to date. Records then
//! carried their feed number as `ord`, the key of the `by_ord` local
//! index the feed was read from; now they carry it as `seq` and feed
//! entries name them (`feed.rs`). Without this, the records of such a
//! store would be missing from every pull until rewritten.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::feed::entry_item;
use super::keys::{ORD, PK, SK};
use super::{Store, store_error, string_value};
use crate::error::Result;
use crate::model::TenantId;

/// Records named by one feed entry of the upgrade.
const PER_ENTRY: usize = 100;

impl Store {
    /// Finds the records that still carry `ord` (one Scan of the table),
    /// writes feed entries naming them at their numbers, then moves each
    /// one's number to `seq`. Safe to run again after it was cut short:
    /// entries are rewritten the same, records already moved are not
    /// found. Returns how many records it moved.
    pub async fn upgrade_feed(&self) -> Result<usize> {
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(#sk, :record) AND attribute_exists(#ord)")
            .expression_attribute_names("#sk", SK)
            .expression_attribute_names("#ord", ORD)
            .expression_attribute_values(":record", string_value("R#"))
            .projection_expression("#pk, #sk, #ord")
            .expression_attribute_names("#pk", PK)
            .into_paginator()
            .send();
        // Per tenant: (number, entity type, record id, the item's key).
        let mut found: BTreeMap<String, Vec<(u64, String, String, String)>> = BTreeMap::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| store_error("Scan", e))?;
            for item in page.items() {
                let text = |name: &str| match item.get(name) {
                    Some(AttributeValue::S(s)) | Some(AttributeValue::N(s)) => Some(s.clone()),
                    _ => None,
                };
                let (Some(pk), Some(sk), Some(ord)) = (text(PK), text(SK), text(ORD)) else {
                    continue;
                };
                let parts = pk
                    .strip_prefix("T#")
                    .and_then(|rest| rest.split_once("#E#"));
                let (Some((tenant, entity)), Some(id), Ok(seq)) =
                    (parts, sk.strip_prefix("R#"), ord.parse::<u64>())
                else {
                    continue;
                };
                found.entry(tenant.to_owned()).or_default().push((
                    seq,
                    entity.to_owned(),
                    id.to_owned(),
                    pk.clone(),
                ));
            }
        }
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
