//! `apply_changes`: record changes accepted earlier (a verified webhook whose
//! write failed) applied now, once.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{RetryEnvelope, WorkHandler};
use crate::error::{Error, Result};
use crate::model::{DedupeKey, EntityType, RecordId, SourceId, TenantId};
use crate::store::{Change, ChangeSet, Expect, KvKey, RecordWrite, Store};

/// One record change: new content, or a tombstone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeSpec {
    pub entity: EntityType,
    pub id: RecordId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Map<String, Value>>,
    #[serde(default)]
    pub deleted: bool,
    /// Set only the fields in `data`, keeping the record's others.
    #[serde(default)]
    pub merge: bool,
}

/// The provider event the changes came from, so they apply once however
/// often the event was delivered or retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DedupeSpec {
    pub source: SourceId,
    pub event_id: String,
    pub retention_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyChanges {
    pub tenant: TenantId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceId>,
    pub changes: Vec<ChangeSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe: Option<DedupeSpec>,
}

impl ChangeSpec {
    /// The store write this change asks for: whatever is stored now is
    /// updated (or created). A webhook does not take ownership of a record:
    /// `source` on a record names the REST source that owns it (its full
    /// runs sweep what they no longer see, its checks compare it), and a
    /// webhook source may share that source's name; the owner stays.
    pub fn to_write(&self) -> Result<RecordWrite> {
        let change = match (&self.data, self.deleted) {
            (_, true) => Change::Delete,
            (Some(data), false) if self.merge => Change::Merge(data.clone()),
            (Some(data), false) => Change::Put(data.clone()),
            (None, false) => {
                return Err(Error::validation(
                    "change",
                    format!("{}/{} has neither data nor deleted", self.entity, self.id),
                ));
            }
        };
        Ok(RecordWrite {
            entity: self.entity.clone(),
            id: self.id.clone(),
            change,
            expect: Expect::Any,
            source: None,
            origin: None,
            source_version: None,
        })
    }
}

impl ApplyChanges {
    /// The atomic write that applies these changes, with the event's dedupe
    /// key when there is one.
    pub fn change_set(&self) -> Result<ChangeSet> {
        let writes = self
            .changes
            .iter()
            .map(ChangeSpec::to_write)
            .collect::<Result<Vec<_>>>()?;
        let once = match &self.dedupe {
            Some(dedupe) => vec![(
                KvKey::dedupe(&DedupeKey::parse(dedupe.source.clone(), &dedupe.event_id)?),
                Duration::from_secs(dedupe.retention_secs),
            )],
            None => Vec::new(),
        };
        let trail = crate::store::Trail::new(
            crate::store::TrailPath::Webhook,
            self.source.as_ref().map_or("unknown", SourceId::as_str),
            self.dedupe
                .as_ref()
                .map_or_else(String::new, |d| d.event_id.clone()),
        );
        Ok(ChangeSet {
            tenant: self.tenant.clone(),
            writes,
            client: None,
            once_only: once,
            trail: Some(trail),
        })
    }
}

/// Commits the changes in one atomic write, with the dedupe key when there
/// is one.
#[derive(Debug, Clone)]
pub struct ApplyChangesHandler {
    store: Store,
}

impl ApplyChangesHandler {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl WorkHandler for ApplyChangesHandler {
    async fn handle(
        &self,
        envelope: &RetryEnvelope,
        _deadline: crate::model::Timestamp,
    ) -> Result<()> {
        let work: ApplyChanges = serde_json::from_value(envelope.payload.clone())
            .map_err(|e| Error::validation("apply_changes payload", e.to_string()))?;
        let set = work.change_set()?;
        match self.store.commit(&set).await {
            Ok(_) => Ok(()),
            // The dedupe key exists: this event was applied already.
            Err(Error::Conflict(_)) if !set.once_only.is_empty() => Ok(()),
            Err(err) => Err(err),
        }
    }
}
