//! Retries of accepted work: one message envelope for every kind of work,
//! a handler per kind, exponential backoff with jitter, idempotent
//! processing, and the dead-letter queue (with the last error) for work that
//! failed for good.

mod apply;
mod idempotency;
mod policy;
mod worker;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use apply::{ApplyChanges, ApplyChangesHandler, ChangeSpec, DedupeSpec};
pub use idempotency::{Claim, Idempotency};
pub use policy::RetryPolicy;
pub use worker::{IncomingMessage, Outcome, RetryWorker, WorkHandler};

use crate::error::{Error, Result};
use crate::model::{SourceId, TenantId, Timestamp};

/// The kinds of work syncline retries. Work of a kind whose handler is not
/// registered in a worker (a producer deployed ahead of the worker) is
/// retried with backoff; a message naming no kind here cannot be read and
/// is dead-lettered at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkKind {
    /// Apply record changes (and a webhook's dedupe key) that could not be
    /// stored when they were accepted.
    ApplyChanges,
    /// Run a source (or every due one) now, as an operator asked.
    SyncRun,
    /// Continue a scheduled sync run from its checkpoint.
    SyncContinuation,
    /// Re-fetch one record from its source and write it.
    ForceSync,
    /// Repair the differences a discrepancy check found.
    DiscrepancyRepair,
    /// Deliver one record to one destination again.
    Delivery,
    /// A message whose body could not be read; kept for inspection only.
    Unreadable,
}

impl WorkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApplyChanges => "apply_changes",
            Self::SyncRun => "sync_run",
            Self::SyncContinuation => "sync_continuation",
            Self::ForceSync => "force_sync",
            Self::DiscrepancyRepair => "discrepancy_repair",
            Self::Delivery => "delivery",
            Self::Unreadable => "unreadable",
        }
    }
}

impl std::fmt::Display for WorkKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why and when a message was dead-lettered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLettered {
    #[serde(with = "crate::model::iso")]
    pub at: Timestamp,
    /// Attempts made before giving up.
    pub attempts: u32,
}

/// One unit of retried work, the body of every retry-queue message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryEnvelope {
    pub kind: WorkKind,
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceId>,
    /// The work's effect happens once per key, however often it is delivered.
    pub idempotency_key: String,
    /// Attempts made before this delivery: the producer's own (a producer
    /// that tried once before handing the work over enqueues it with 1), and
    /// on a dead letter every attempt made. For operators; the attempt limit
    /// counts deliveries of the message (SQS's receive count), so a
    /// redriven message gets a fresh cycle.
    #[serde(default)]
    pub attempt: u32,
    #[serde(with = "crate::model::iso")]
    pub first_failed_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Set on messages in the dead-letter queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_lettered: Option<DeadLettered>,
}

impl RetryEnvelope {
    /// New work of `kind` that failed once in its producer with `error`.
    pub fn new(
        kind: WorkKind,
        payload: Value,
        idempotency_key: impl Into<String>,
        error: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            payload,
            tenant: None,
            source: None,
            idempotency_key: idempotency_key.into(),
            attempt: 1,
            first_failed_at: Timestamp::now(),
            last_error: Some(error.into()),
            dead_lettered: None,
        }
    }

    pub fn parse(body: &str) -> Result<Self> {
        let envelope: Self = serde_json::from_str(body)
            .map_err(|e| Error::validation("retry message", e.to_string()))?;
        if envelope.idempotency_key.is_empty() {
            return Err(Error::validation(
                "retry message",
                "idempotency_key must not be empty",
            ));
        }
        Ok(envelope)
    }

    pub fn to_body(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::Internal {
            context: "serializing a retry message".into(),
            source: Some(Box::new(e)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_envelope_round_trips_through_its_body() {
        let mut envelope =
            RetryEnvelope::new(WorkKind::ApplyChanges, json!({"a": 1}), "k1", "boom");
        envelope.tenant = Some(TenantId::parse("acme").expect("tenant"));
        let parsed = RetryEnvelope::parse(&envelope.to_body().expect("body")).expect("parse");
        assert_eq!(parsed, envelope);
    }

    #[test]
    fn every_kind_keeps_its_wire_name() {
        for kind in [
            WorkKind::ApplyChanges,
            WorkKind::SyncRun,
            WorkKind::SyncContinuation,
            WorkKind::ForceSync,
            WorkKind::DiscrepancyRepair,
            WorkKind::Delivery,
            WorkKind::Unreadable,
        ] {
            assert_eq!(
                serde_json::to_value(kind).expect("json"),
                json!(kind.as_str())
            );
        }
    }

    #[test]
    fn unreadable_bodies_are_validation_errors() {
        for body in [
            "",
            "not json",
            "{}",
            r#"{"kind":"","payload":null,"idempotency_key":"k","first_failed_at":0}"#,
            r#"{"kind":"sync_everything","payload":null,"idempotency_key":"k","first_failed_at":0}"#,
            r#"{"kind":"sync_run","payload":null,"idempotency_key":"","first_failed_at":0}"#,
        ] {
            assert!(
                matches!(RetryEnvelope::parse(body), Err(Error::Validation { .. })),
                "{body}"
            );
        }
    }
}
