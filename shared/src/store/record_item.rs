//! The record item: how a record is stored (keys, feed position, expiry)
//! and decoded, whole or as a head without its data.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::keys::{self, PK, SK};
use super::{mapping_error, string_value};
use crate::error::{Error, Result};
use crate::model::{
    ContentHash, EntityType, Origin, Record, RecordId, Seq, SourceId, TenantId, Timestamp, Version,
};

/// A record as stored: the model plus its keys, the feed position and expiry.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct RecordItem {
    pk: String,
    sk: String,
    /// The record's number in the change feed (not an index key: feed
    /// entries name it, `feed.rs`).
    seq: u64,
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
    #[serde(rename = "mark")]
    source_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    by: Option<SourceId>,
}

/// A query over the record items of one shard of a tenant's entity type.
pub(super) fn record_rows(
    query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
    query
        .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
        .expression_attribute_names("#sk", SK)
        .expression_attribute_values(":prefix", string_value("R#"))
}

/// The attributes of a record item other than its data.
pub(super) const HEAD: &[&str] = &[
    "id",
    "version",
    "hash",
    "deleted",
    "source",
    "created_at",
    "updated_at",
    "expires_at",
    "origin",
    "seq",
    "mark",
    "by",
];

/// A record without its data, from a projected item; `None` when it is a
/// tombstone past its retention.
pub(super) fn decode_head(
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
        seq: Seq::new(head.seq),
        origin: head.origin,
        source_version: head.source_version,
        changed_by: head.by,
    }))
}

/// A stored record reduced to its id, state, owner and the source's version
/// of it: what a range digest is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMark {
    pub id: RecordId,
    pub deleted: bool,
    pub source: Option<SourceId>,
    pub source_version: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MarkItem {
    sk: String,
    deleted: bool,
    #[serde(default)]
    source: Option<SourceId>,
    #[serde(default)]
    #[serde(rename = "mark")]
    source_version: Option<String>,
    #[serde(default)]
    expires_at: Option<i64>,
}

/// A projected record item as a [`RecordMark`]; `None` when it is a
/// tombstone past its retention.
pub(super) fn decode_mark(
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
        source_version: item.source_version,
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
    seq: u64,
    #[serde(default)]
    #[serde(rename = "mark")]
    source_version: Option<String>,
    #[serde(default)]
    by: Option<SourceId>,
}

impl RecordItem {
    pub(super) fn from_record(record: &Record, tombstone_retention: Duration) -> Self {
        Self {
            pk: keys::records_pk(&record.tenant, &record.entity, &record.id),
            sk: keys::record_sk(&record.id),
            seq: record.seq.get(),
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
            source_version: record.source_version.clone(),
            by: record.changed_by.clone(),
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
            seq: Seq::new(self.seq),
            origin: self.origin,
            source_version: self.source_version,
            changed_by: self.by,
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
        (
            PK.to_owned(),
            string_value(keys::records_pk(tenant, entity, id)),
        ),
        (SK.to_owned(), string_value(keys::record_sk(id))),
    ])
}
