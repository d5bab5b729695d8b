//! Feed entries: the change feed as one item per change set. Every
//! transaction that numbers records, and every held bulk chunk, writes one
//! entry naming each record it numbered with its sequence number, under
//! the tenant's feed partition and sorted by the set's last number. A
//! reader queries the entries past its cursor and reads the records they
//! name; a record whose number has moved on since (rewritten later) is
//! skipped there and read at its newer number.
//!
//! A record then costs no index entry (the `by_ord` local index, which
//! billed a second write unit for every record written, is left to the
//! local queue): one entry of about 3 KB covers a chunk of 100 records.
//! Entries are kept as long as the records: a client starting from
//! cursor 0 reads every entry of its tenant.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::keys::{PK, SK};
use super::{Store, store_error, string_value};
use crate::error::{Error, Result};
use crate::model::{EntityType, Record, RecordId, TenantId};

/// One record a feed entry names: its entity type, id and the sequence
/// number the change set gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FeedChange {
    pub seq: u64,
    pub entity: EntityType,
    pub id: RecordId,
}

/// Entries read by one query of a feed read at most.
const ENTRIES_PER_QUERY: usize = 100;
/// Entries the first query of a page's read asks for, before the number
/// of records an entry names is known.
const FIRST_QUERY: usize = 8;

fn feed_pk(tenant: &TenantId) -> String {
    format!("F#{tenant}")
}

/// Sequence numbers as fixed-width hex, so they sort as strings.
fn feed_sk(seq: u64) -> String {
    format!("{seq:016x}")
}

/// The entry naming `records` (each with its new number).
pub(super) fn feed_item<'a>(
    tenant: &TenantId,
    records: impl IntoIterator<Item = &'a Record>,
) -> Option<HashMap<String, AttributeValue>> {
    entry_item(
        tenant,
        records
            .into_iter()
            .map(|r| (r.entity.as_str(), r.id.as_str(), r.seq.get())),
    )
}

/// The entry naming `(entity type, record id, number)` changes: per entity
/// type, one string of `<seq hex> <id>` lines (record ids hold no control
/// characters), sorted by the last number. `None` when there are none.
pub(super) fn entry_item<'a>(
    tenant: &TenantId,
    changes: impl IntoIterator<Item = (&'a str, &'a str, u64)>,
) -> Option<HashMap<String, AttributeValue>> {
    let mut lines: HashMap<String, String> = HashMap::new();
    let mut last = 0;
    for (entity, id, seq) in changes {
        last = last.max(seq);
        let text = lines.entry(entity.to_owned()).or_default();
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("{seq:x} {id}"));
    }
    if last == 0 {
        return None;
    }
    let changes = lines
        .into_iter()
        .map(|(entity, text)| (entity, AttributeValue::S(text)))
        .collect();
    Some(HashMap::from([
        (PK.to_owned(), string_value(feed_pk(tenant))),
        (SK.to_owned(), string_value(feed_sk(last))),
        ("c".to_owned(), AttributeValue::M(changes)),
    ]))
}

/// The changes an entry names, of the entity types `wanted` (all when
/// `None`), in the entry's order.
fn decode_entry(
    item: &HashMap<String, AttributeValue>,
    wanted: Option<&[EntityType]>,
) -> Result<Vec<FeedChange>> {
    let Some(AttributeValue::M(changes)) = item.get("c") else {
        return Err(Error::internal("a feed entry without changes"));
    };
    let mut out = Vec::new();
    for (entity, text) in changes {
        if wanted.is_some_and(|w| !w.iter().any(|e| e.as_str() == entity)) {
            continue;
        }
        let entity = EntityType::parse(entity)?;
        let AttributeValue::S(text) = text else {
            return Err(Error::internal("a feed entry's changes are not text"));
        };
        for line in text.split('\n') {
            let (seq, id) = line
                .split_once(' ')
                .ok_or_else(|| Error::internal("a feed entry line without an id"))?;
            let seq = u64::from_str_radix(seq, 16)
                .map_err(|_| Error::internal("a feed entry line without a number"))?;
            out.push(FeedChange {
                seq,
                entity: entity.clone(),
                id: RecordId::parse(id)?,
            });
        }
    }
    out.sort_unstable_by_key(|c| c.seq);
    Ok(out)
}

impl Store {
    /// The changes to `entities` (all when `None`) that the entries after
    /// `after` name, up to number `upto`, in order, reading entries until
    /// `enough` changes are found (`None`: all of them). Returns the
    /// changes and the number they are complete up to: `upto`, or the last
    /// number of the last entry read when reading stopped early.
    pub(super) async fn feed_changes(
        &self,
        tenant: &TenantId,
        entities: Option<&[EntityType]>,
        after: u64,
        upto: u64,
        enough: Option<usize>,
    ) -> Result<(Vec<FeedChange>, u64)> {
        let mut changes = Vec::new();
        if upto <= after {
            return Ok((changes, upto));
        }
        let mut start = None;
        let mut entries_read = 0usize;
        loop {
            // Entries name 1 (a webhook's) to 100 (a bulk chunk's) records:
            // ask for about as many more entries as the records still
            // wanted take at the rate seen so far.
            let limit = match enough {
                Some(n) if entries_read > 0 => {
                    let per_entry = changes.len().max(1).div_ceil(entries_read);
                    (n.saturating_sub(changes.len()).div_ceil(per_entry) + 1)
                        .clamp(1, ENTRIES_PER_QUERY)
                }
                Some(_) => FIRST_QUERY,
                None => ENTRIES_PER_QUERY,
            };
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", string_value(feed_pk(tenant)))
                .expression_attribute_values(":from", string_value(feed_sk(after + 1)))
                .expression_attribute_values(":to", string_value(feed_sk(upto)))
                .consistent_read(true)
                .limit(limit as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| store_error("Query", e))?;
            for item in out.items.unwrap_or_default() {
                entries_read += 1;
                changes.extend(
                    decode_entry(&item, entities)?
                        .into_iter()
                        .filter(|c| c.seq > after && c.seq <= upto),
                );
                if enough.is_some_and(|n| changes.len() >= n) {
                    // Complete up to this entry's last number.
                    let last = match item.get(SK) {
                        Some(AttributeValue::S(sk)) => u64::from_str_radix(sk, 16).ok(),
                        _ => None,
                    };
                    return Ok((changes, last.unwrap_or(after).min(upto)));
                }
            }
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok((changes, upto)),
            }
        }
    }
}
