//! The retry queue's sync work: an operator's sync run, a run's
//! continuation, and a force-sync of one record, each a `WorkHandler` over
//! the engine.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::engine::SyncEngine;
use super::run::{Continuation, RunRequest};
use crate::connectors::transform;
use crate::error::{Error, Result};
use crate::model::{RecordId, RunKind, RunStatus, SourceId, Timestamp, Trigger};
use crate::retry::{RetryEnvelope, WorkHandler};
use crate::store::{BatchOutcome, BulkWrite, Change, Stored, Trail, TrailPath};

impl SyncEngine {
    /// Re-fetches one record from its source and writes it (a tombstone when
    /// the source no longer has it). Returns what was written.
    pub async fn force_sync(&self, source_id: &SourceId, id: &RecordId) -> Result<BatchOutcome> {
        let source = self.sources.get(source_id)?;
        let spec = source.spec();
        let write = match source.fetch_one(id.as_str()).await? {
            None => BulkWrite {
                id: id.clone(),
                change: Change::Delete,
                source_version: None,
            },
            Some(item) => {
                let item = transform(spec, &item).map_err(Error::Unprocessable)?;
                if &item.id != id {
                    return Err(Error::Upstream {
                        service: "source".into(),
                        reason: format!("asked for {id}, got {}", item.id),
                        retryable: false,
                    });
                }
                item.into_write()
            }
        };
        self.store
            .upsert_versioned(
                &spec.tenant,
                &spec.entity,
                Some(source_id),
                vec![write],
                &Trail::new(TrailPath::ForceSync, source_id.as_str(), id.as_str()),
                Stored::Unknown,
            )
            .await
    }
}

/// The payload of `force_sync` work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForceSyncWork {
    pub source: SourceId,
    pub id: RecordId,
}

/// `force_sync` work: re-fetch one record and write it.
#[derive(Debug, Clone)]
pub struct ForceSyncHandler {
    engine: Arc<SyncEngine>,
}

impl ForceSyncHandler {
    pub fn new(engine: Arc<SyncEngine>) -> Self {
        Self { engine }
    }
}

#[async_trait]
impl WorkHandler for ForceSyncHandler {
    async fn handle(&self, envelope: &RetryEnvelope, _deadline: Timestamp) -> Result<()> {
        let work: ForceSyncWork = serde_json::from_value(envelope.payload.clone())
            .map_err(|e| Error::validation("force sync", e.to_string()))?;
        self.engine
            .force_sync(&work.source, &work.id)
            .await
            .map(|_| ())
    }
}

/// `sync_run` work: a run asked for through the admin API.
#[derive(Debug, Clone)]
pub struct SyncRunHandler {
    engine: Arc<SyncEngine>,
}

impl SyncRunHandler {
    pub fn new(engine: Arc<SyncEngine>) -> Self {
        Self { engine }
    }
}

/// The payload of `sync_run` work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncRunWork {
    /// One source, or every enabled one when absent.
    #[serde(default)]
    pub source: Option<SourceId>,
    #[serde(default)]
    pub kind: Option<RunKind>,
}

#[async_trait]
impl WorkHandler for SyncRunHandler {
    async fn handle(&self, envelope: &RetryEnvelope, deadline: Timestamp) -> Result<()> {
        let work: SyncRunWork = serde_json::from_value(envelope.payload.clone())
            .map_err(|e| Error::validation("sync run", e.to_string()))?;
        let sources = match work.source {
            Some(source) => vec![source],
            None => self.engine.enabled().await?,
        };
        for source in sources {
            let request = RunRequest {
                source: source.clone(),
                kind: work.kind,
                trigger: Trigger::Manual,
            };
            if self.engine.run(&request, deadline).await?.is_none() {
                // Busy: another run of this source is under way; try later.
                return Err(Error::Upstream {
                    service: "sync".into(),
                    reason: format!("source {source} is being synced by another run"),
                    retryable: true,
                });
            }
        }
        Ok(())
    }
}

/// `sync_continuation` work: resumes the run where it stopped.
#[derive(Debug, Clone)]
pub struct SyncContinuationHandler {
    engine: Arc<SyncEngine>,
}

impl SyncContinuationHandler {
    pub fn new(engine: Arc<SyncEngine>) -> Self {
        Self { engine }
    }
}

#[async_trait]
impl WorkHandler for SyncContinuationHandler {
    async fn handle(&self, envelope: &RetryEnvelope, deadline: Timestamp) -> Result<()> {
        let mut continuation: Continuation = serde_json::from_value(envelope.payload.clone())
            .map_err(|e| Error::validation("sync continuation", e.to_string()))?;
        continuation.trigger = Trigger::Continuation;
        let log = self.engine.resume(continuation, deadline).await?;
        match log.status {
            RunStatus::Failed => Err(Error::Upstream {
                service: "source".into(),
                reason: log.error.unwrap_or_default(),
                retryable: true,
            }),
            _ => Ok(()),
        }
    }
}
