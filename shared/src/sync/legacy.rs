//! The request and response shapes of the older client API
//! (`/api/client/sync/...`), mapped onto the same engine. Their
//! "timestamps" are opaque cursors now; records carry `version`,
//! `sync_status`, `server_synced`, `is_deleted` and `updatedAt` as those
//! clients expect. They have no mutation ids, so their pushes are applied
//! as they come (conflicts are still detected by version).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::wire::{ClientTime, Mutation, Op, PullRequest, PushRequest, RecordView, Status};
use super::{Access, Caller, SyncService};
use crate::error::{Error, Result};
use crate::model::{ClientId, Cursor, EntityType, RecordId, Timestamp};
use crate::store::{KvExpect, KvKey};

/// Fields the older API keeps beside the content; not stored as content.
const META: &[&str] = &[
    "id",
    "version",
    "sync_status",
    "server_synced",
    "is_deleted",
    "isDeleted",
    "updatedAt",
    "updated_at",
    "last_updated",
    "createdAt",
];

/// Largest number of records one legacy pull returns; the rest come with
/// the next pull.
const MAX_LEGACY_PULL: usize = 10_000;

#[derive(Debug, Deserialize)]
pub struct LegacyPush {
    pub changes: BTreeMap<String, Vec<Map<String, Value>>>,
    #[serde(default, rename = "lastSyncTimestamp")]
    pub last_sync_timestamp: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LegacyPull {
    #[serde(default, rename = "lastSyncTimestamp")]
    pub last_sync_timestamp: Option<String>,
    #[serde(rename = "entityTypes")]
    pub entity_types: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct LegacyPending {
    #[serde(rename = "entityTypes")]
    pub entity_types: Vec<String>,
}

fn truthy(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        Some(Value::String(s)) => s == "1" || s == "true",
        _ => false,
    }
}

fn client_time(record: &Map<String, Value>) -> i64 {
    ["updatedAt", "updated_at", "last_updated"]
        .iter()
        .filter_map(|f| record.get(*f).and_then(Value::as_str))
        .find_map(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
        .map_or_else(
            || Timestamp::now().as_millis(),
            |t| (t.unix_timestamp_nanos() / 1_000_000) as i64,
        )
}

/// A cursor this server issued, or the start (an old wall-clock timestamp
/// from the previous system, or nothing: a full snapshot never misses).
fn cursor_or_start(raw: Option<&str>) -> Cursor {
    raw.and_then(|r| Cursor::parse(r).ok())
        .unwrap_or(Cursor::START)
}

fn status_text(status: Status, result: &super::wire::MutationResult) -> &'static str {
    match status {
        Status::Conflict if result.conflict_id.is_some() => "conflict",
        Status::Rejected => "rejected",
        _ => "synced",
    }
}

fn cursor_key(caller: &Caller) -> Option<KvKey> {
    let device = caller.device.as_deref()?;
    Some(KvKey::new(
        KvKey::LEGACY_CURSOR,
        format!("{}#{device}", caller.tenant),
    ))
}

/// A record in the older API's shape.
pub fn legacy_record(view: &RecordView, status: &str) -> Value {
    let mut record = view.data.clone();
    record.insert("id".into(), json!(view.id));
    record.insert("version".into(), json!(view.version));
    record.insert("sync_status".into(), json!(status));
    record.insert("server_synced".into(), json!(i32::from(status == "synced")));
    record.insert("is_deleted".into(), json!(i32::from(view.deleted)));
    record.insert("updatedAt".into(), json!(view.updated_at));
    record.insert("last_updated".into(), json!(view.updated_at));
    Value::Object(record)
}

/// A registered entity type the caller may read.
fn entity(name: &str, caller: &Caller, service: &SyncService) -> Result<EntityType> {
    let entity = EntityType::parse(name)?;
    if !caller.access.can_read(&entity) {
        return Err(Access::hidden(&entity));
    }
    service.registry().get(&entity)?;
    Ok(entity)
}

impl SyncService {
    /// The last cursor a pull gave this client, or the start.
    async fn remembered_cursor(&self, caller: &Caller) -> Result<Cursor> {
        let Some(key) = cursor_key(caller) else {
            return Ok(Cursor::START);
        };
        Ok(self
            .store
            .kv_get::<String>(&key)
            .await?
            .and_then(|stored| Cursor::parse(&stored.value).ok())
            .unwrap_or(Cursor::START))
    }

    async fn remember_cursor(&self, caller: &Caller, cursor: Cursor) -> Result<()> {
        if let Some(key) = cursor_key(caller) {
            // Kept as long as tombstones are: an older cursor resets anyway.
            let ttl = self.store.tombstone_retention();
            self.store
                .kv_put(&key, &cursor.to_string(), Some(ttl), KvExpect::Any)
                .await?;
        }
        Ok(())
    }

    /// `POST /api/client/sync/push`: every record becomes an upsert (or a
    /// delete when `is_deleted`) based on its `version`.
    pub async fn legacy_push(&self, caller: &Caller, request: &LegacyPush) -> Result<Value> {
        let mut mutations = Vec::new();
        // The record each mutation came from, by mutation id, to answer
        // for those the push refused (they have no stored record).
        let mut pushed: Vec<&Map<String, Value>> = Vec::new();
        for (name, records) in &request.changes {
            let entity = entity(name, caller, self)?;
            for record in records {
                let id = match record.get("id") {
                    Some(Value::String(id)) if !id.is_empty() => RecordId::parse(id)?,
                    Some(Value::Number(n)) => RecordId::parse(&n.to_string())?,
                    _ => RecordId::parse(&uuid::Uuid::new_v4().to_string())?,
                };
                let deleted = truthy(record.get("is_deleted")) || truthy(record.get("isDeleted"));
                let data: Map<String, Value> = record
                    .iter()
                    .filter(|(k, _)| !META.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                mutations.push(Mutation {
                    id: mutations.len() as u64 + 1,
                    op: if deleted { Op::Delete } else { Op::Upsert },
                    entity: entity.clone(),
                    record_id: id,
                    base_version: record.get("version").and_then(Value::as_u64),
                    data: (!deleted).then_some(data),
                    base: None,
                    timestamp: ClientTime(client_time(record)),
                    counter: 0,
                });
                pushed.push(record);
            }
        }
        let push = PushRequest {
            client_id: ClientId::parse("legacy")?,
            mutations,
        };
        let response = self.push_mutations(caller, &push, false).await?;
        let mut data = Vec::with_capacity(response.results.len());
        for r in &response.results {
            let status = status_text(r.status, r);
            // Mutation ids are the records' positions, from 1.
            let index = usize::try_from(r.id).unwrap_or(0).saturating_sub(1);
            let mut record = match (&r.record, r.status) {
                (Some(view), status_now) if status_now != Status::Rejected => {
                    legacy_record(view, status)
                }
                // Refused: the record as the client sent it, marked, with
                // the id it was given.
                _ => {
                    let mut record = pushed.get(index).map(|r| (*r).clone()).unwrap_or_default();
                    if let Some(m) = push.mutations.get(index) {
                        record.insert("id".into(), json!(m.record_id));
                    }
                    record.insert("sync_status".into(), json!(status));
                    record.insert("server_synced".into(), json!(0));
                    Value::Object(record)
                }
            };
            if let (Some(reason), Value::Object(map)) = (&r.reason, &mut record) {
                map.insert("sync_error".into(), json!(reason));
            }
            data.push(record);
        }
        // These clients keep a push's syncTimestamp as their next pull
        // cursor. The answer is the cursor they were last given by a pull
        // (or the one they sent): never past a change they have not pulled,
        // and not the start, which would download everything again.
        let cursor = match request
            .last_sync_timestamp
            .as_deref()
            .and_then(|raw| Cursor::parse(raw).ok())
        {
            Some(cursor) => cursor,
            None => self.remembered_cursor(caller).await?,
        };
        Ok(json!({"success": true, "data": data, "syncTimestamp": cursor.to_string()}))
    }

    /// `POST /api/client/sync/pull`: changes since `lastSyncTimestamp` (a
    /// cursor), grouped by entity type, tombstones included.
    pub async fn legacy_pull(&self, caller: &Caller, request: &LegacyPull) -> Result<Value> {
        let entities = request
            .entity_types
            .iter()
            .map(|name| entity(name, caller, self))
            .collect::<Result<Vec<_>>>()?;
        let mut cursor = cursor_or_start(request.last_sync_timestamp.as_deref());
        let mut grouped: BTreeMap<String, Vec<Value>> = request
            .entity_types
            .iter()
            .map(|name| (name.clone(), Vec::new()))
            .collect();
        let mut count = 0;
        loop {
            let page = self
                .pull(
                    caller,
                    &PullRequest {
                        cursor: Some(cursor),
                        entities: Some(entities.clone()),
                        ..PullRequest::default()
                    },
                )
                .await?;
            if page.reset {
                grouped.values_mut().for_each(Vec::clear);
            }
            count += page.changes.len();
            for view in &page.changes {
                if let Some(list) = grouped.get_mut(view.entity.as_str()) {
                    list.push(legacy_record(view, "synced"));
                }
            }
            cursor = page.cursor;
            if !page.has_more || count >= MAX_LEGACY_PULL {
                break;
            }
        }
        self.remember_cursor(caller, cursor).await?;
        Ok(json!({"success": true, "data": grouped, "syncTimestamp": cursor.to_string()}))
    }

    /// `POST /api/client/sync/pull-pending`: live records whose
    /// `sync_status` is `pending`.
    pub async fn legacy_pull_pending(
        &self,
        caller: &Caller,
        request: &LegacyPending,
    ) -> Result<Value> {
        let tenant = &caller.tenant;
        let mut grouped = BTreeMap::new();
        for name in &request.entity_types {
            let entity = entity(name, caller, self)?;
            let mut pending = Vec::new();
            self.store
                .visit_live_records(tenant, &entity, |r| {
                    if r.field_is("sync_status", "pending") {
                        pending.push(legacy_record(&RecordView::from(r), "pending"));
                    }
                    pending.len() < MAX_LEGACY_PULL
                })
                .await?;
            grouped.insert(name.clone(), pending);
        }
        if grouped.is_empty() {
            return Err(Error::validation(
                "entityTypes",
                "name at least one entity type",
            ));
        }
        Ok(json!({"success": true, "data": grouped, "syncTimestamp": Cursor::START.to_string()}))
    }
}
