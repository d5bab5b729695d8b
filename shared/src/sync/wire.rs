//! The sync API's request and response bodies (docs/PROTOCOL.md).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::registry::Strategy;
use crate::model::{ClientId, Cursor, EntityType, Record, RecordId, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Create or replace the record's content.
    Upsert,
    /// Set the given fields, keep the others.
    Patch,
    Delete,
}

/// A client clock reading: milliseconds since the epoch, or RFC 3339 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ClientTime(pub i64);

impl<'de> Deserialize<'de> for ClientTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => n
                .as_i64()
                .map(ClientTime)
                .ok_or_else(|| serde::de::Error::custom("timestamp must be whole milliseconds")),
            Value::String(s) => OffsetDateTime::parse(&s, &Rfc3339)
                .map(|t| ClientTime((t.unix_timestamp_nanos() / 1_000_000) as i64))
                .map_err(|_| {
                    serde::de::Error::custom("timestamp must be RFC 3339 or milliseconds")
                }),
            _ => Err(serde::de::Error::custom(
                "timestamp must be RFC 3339 or milliseconds",
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mutation {
    /// The client's own sequence number: each push continues where the last
    /// processed one ended, one by one.
    pub id: u64,
    pub op: Op,
    pub entity: EntityType,
    pub record_id: RecordId,
    /// The version the client last saw (none for a record it created).
    #[serde(default)]
    pub base_version: Option<u64>,
    #[serde(default)]
    pub data: Option<Map<String, Value>>,
    /// The record content the client started from, for field-level merge.
    #[serde(default)]
    pub base: Option<Map<String, Value>>,
    /// When the client made the change, by its clock.
    pub timestamp: ClientTime,
    /// Hybrid logical clock counter (0 for plain timestamps).
    #[serde(default)]
    pub counter: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    pub client_id: ClientId,
    pub mutations: Vec<Mutation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Applied,
    Conflict,
    Rejected,
    /// Processed by an earlier push (the client retried).
    AlreadyProcessed,
}

/// A record as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordView {
    pub entity: EntityType,
    pub id: RecordId,
    pub version: u64,
    pub deleted: bool,
    pub data: Map<String, Value>,
    pub updated_at: String,
}

pub fn rfc3339(at: Timestamp) -> String {
    at.to_rfc3339()
}

impl From<&Record> for RecordView {
    fn from(record: &Record) -> Self {
        Self {
            entity: record.entity.clone(),
            id: record.id.clone(),
            version: record.version.get(),
            deleted: record.deleted,
            data: record.data.clone(),
            updated_at: rfc3339(record.updated_at),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MutationResult {
    pub id: u64,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Strategy>,
    /// The record as it stands after the mutation (the winner of a conflict).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Fields both sides changed (merge), kept at the server's value.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conflicting_fields: Vec<String>,
    /// The stored conflict to resolve (manual).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PushResponse {
    pub last_mutation_id: u64,
    /// A cursor that covers every mutation of this push (a write
    /// checkpoint): a pull that answers with this cursor or a later one
    /// (cursors of a tenant order as strings) includes them. Not a pull
    /// cursor: pulling from it would skip what others changed before.
    pub cursor: Cursor,
    pub results: Vec<MutationResult>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    #[serde(default)]
    pub cursor: Option<Cursor>,
    /// All registered types when absent.
    #[serde(default)]
    pub entities: Option<Vec<EntityType>>,
    #[serde(default)]
    pub limit: Option<u32>,
    /// Whose last processed mutation id to report (on the page that ends
    /// the feed).
    #[serde(default)]
    pub client_id: Option<ClientId>,
    /// Seconds to hold an empty answer until something changes past the
    /// cursor (long-poll), at most [`MAX_WAIT_SECS`].
    #[serde(default)]
    pub wait: Option<u32>,
}

/// The longest a pull may wait (API Gateway ends a request at 30 s).
pub const MAX_WAIT_SECS: u32 = 20;

impl PullRequest {
    pub fn wait_duration(&self) -> crate::error::Result<std::time::Duration> {
        match self.wait {
            Some(secs) if secs > MAX_WAIT_SECS => Err(crate::error::Error::validation(
                "wait",
                format!("at most {MAX_WAIT_SECS} seconds"),
            )),
            secs => Ok(std::time::Duration::from_secs(u64::from(secs.unwrap_or(0)))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PullResponse {
    /// Puts and tombstones in commit order.
    pub changes: Vec<RecordView>,
    pub cursor: Cursor,
    pub has_more: bool,
    /// The cursor was too old: this is a snapshot from the start; drop the
    /// local copy first.
    pub reset: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_mutation_id: Option<u64>,
}
