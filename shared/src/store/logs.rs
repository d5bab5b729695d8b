//! Append-only logs with paging and retention: sync run logs, the audit
//! trail, discrepancy reports. Entries sort by time within their stream and
//! read newest first; expired entries are skipped in code and removed by TTL.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::kv::ttl_secs;
use super::paging::{Page, PageToken};
use super::{Store, is_condition_failure, mapping_error, store_error, string_value};
use crate::error::{Error, Result};
use crate::model::Timestamp;

/// A named log: `runs`, `audit`, `discrepancies`, or one per source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogStream(String);

impl LogStream {
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        crate::model::SourceId::parse(&name).map_err(|_| {
            Error::validation("log stream", "letters, digits, '_', '-' and '.' only")
        })?;
        Ok(Self(name))
    }

    /// A stream whose name is known to be valid (built from validated ids).
    pub(super) fn named(name: String) -> Self {
        Self(name)
    }

    /// The audit trail of operators' actions.
    pub fn audit() -> Self {
        Self("audit".to_owned())
    }

    /// Discrepancy reports of every source.
    pub fn discrepancies() -> Self {
        Self("discrepancies".to_owned())
    }

    /// The console's samples over time (`admin::Sampler`).
    pub fn samples() -> Self {
        Self("samples".to_owned())
    }

    /// The run logs of every source.
    pub fn runs() -> Self {
        Self("runs".to_owned())
    }

    /// The run logs of one source (each also in [`LogStream::runs`]).
    pub fn runs_of(source: &crate::model::SourceId) -> Self {
        Self(format!("runs.{source}"))
    }

    /// The discrepancy reports of one source (each also in
    /// [`LogStream::discrepancies`]).
    pub fn discrepancies_of(source: &crate::model::SourceId) -> Self {
        Self(format!("discrepancies.{source}"))
    }

    fn pk(&self) -> String {
        format!("L#{}", self.0)
    }
}

/// Position of an entry in its stream: its time, then a random suffix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LogId(String);

impl LogId {
    pub fn parse(raw: &str) -> Result<Self> {
        let valid = raw.len() == 15 + 1 + 32
            && raw.as_bytes()[15] == b'-'
            && raw
                .bytes()
                .enumerate()
                .all(|(i, b)| i == 15 || b.is_ascii_hexdigit());
        if !valid {
            return Err(Error::validation("log id", "not a log id"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub(super) fn generate(at: Timestamp) -> Self {
        Self::new(at)
    }

    pub(crate) fn new(at: Timestamp) -> Self {
        Self(format!(
            "{:015}-{}",
            at.as_millis().max(0),
            uuid::Uuid::new_v4().simple()
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry<T> {
    pub id: LogId,
    pub at: Timestamp,
    pub entry: T,
}

#[derive(Debug, Serialize, Deserialize)]
struct LogItem<T> {
    pk: String,
    sk: LogId,
    at: Timestamp,
    entry: T,
    expires_at: i64,
}

impl Store {
    /// Appends `entry` to `stream`, kept for `retention`.
    pub async fn append_log<T: Serialize>(
        &self,
        stream: &LogStream,
        entry: &T,
        retention: Duration,
    ) -> Result<LogId> {
        let at = Timestamp::now();
        let id = LogId::new(at);
        self.write_log(stream, &id, at, entry, retention, false)
            .await?;
        Ok(id)
    }

    /// Rewrites an existing entry (a run log moving from running to
    /// finished). [`Error::NotFound`] if it is not there.
    pub async fn replace_log<T: Serialize>(
        &self,
        stream: &LogStream,
        id: &LogId,
        entry: &T,
        retention: Duration,
    ) -> Result<()> {
        self.write_log(stream, id, Timestamp::now(), entry, retention, true)
            .await
    }

    /// Writes the entry under `id`, whether or not it exists yet (a run
    /// continued in another invocation keeps its log entry).
    pub async fn put_log<T: Serialize>(
        &self,
        stream: &LogStream,
        id: &LogId,
        entry: &T,
        retention: Duration,
    ) -> Result<()> {
        match self.replace_log(stream, id, entry, retention).await {
            Err(Error::NotFound(_)) => {
                self.write_log(stream, id, Timestamp::now(), entry, retention, false)
                    .await
            }
            other => other,
        }
    }

    async fn write_log<T: Serialize>(
        &self,
        stream: &LogStream,
        id: &LogId,
        at: Timestamp,
        entry: &T,
        retention: Duration,
        must_exist: bool,
    ) -> Result<()> {
        let item = log_item(stream, id, at, entry, retention)?;
        let condition = if must_exist {
            "attribute_exists(#pk)"
        } else {
            "attribute_not_exists(#pk)"
        };
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .expression_attribute_names("#pk", "pk")
            .send()
            .await
            .map_err(|err| match (is_condition_failure(&err), must_exist) {
                (true, true) => Error::NotFound(format!("log entry {}", id.as_str())),
                (true, false) => Error::Conflict("log id already used".into()),
                _ => store_error("PutItem", err),
            })?;
        Ok(())
    }

    /// One entry by id, unless it expired.
    pub async fn get_log<T: DeserializeOwned>(
        &self,
        stream: &LogStream,
        id: &LogId,
    ) -> Result<Option<LogEntry<T>>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(HashMap::from([
                ("pk".to_owned(), string_value(stream.pk())),
                ("sk".to_owned(), string_value(id.as_str())),
            ])))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        out.item
            .map(|item| decode(item, Timestamp::now()))
            .transpose()
            .map(Option::flatten)
    }

    /// Entries newest first, `limit` a page, expired ones left out.
    pub async fn read_log<T: DeserializeOwned>(
        &self,
        stream: &LogStream,
        limit: u32,
        after: Option<&PageToken>,
    ) -> Result<Page<LogEntry<T>>> {
        self.query_page(
            &stream.pk(),
            |query| {
                query
                    .key_condition_expression("#pk = :pk")
                    .scan_index_forward(false)
            },
            limit,
            after,
            decode,
        )
        .await
    }
}

/// The item of a log entry.
pub(super) fn log_item<T: Serialize>(
    stream: &LogStream,
    id: &LogId,
    at: Timestamp,
    entry: &T,
    retention: Duration,
) -> Result<HashMap<String, AttributeValue>> {
    let item = LogItem {
        pk: stream.pk(),
        sk: id.clone(),
        at,
        entry,
        expires_at: ttl_secs(at, retention),
    };
    serde_dynamo::to_item(&item).map_err(|e| mapping_error("log", e))
}

fn decode<T: DeserializeOwned>(
    item: HashMap<String, AttributeValue>,
    now: Timestamp,
) -> Result<Option<LogEntry<T>>> {
    let item: LogItem<T> = serde_dynamo::from_item(item).map_err(|e| mapping_error("log", e))?;
    if now.as_secs() >= item.expires_at {
        return Ok(None);
    }
    Ok(Some(LogEntry {
        id: item.sk,
        at: item.at,
        entry: item.entry,
    }))
}
