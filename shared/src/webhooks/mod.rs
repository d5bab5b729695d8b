//! Webhook ingestion: verify the signature over the raw body, dedupe on the
//! provider's event id, map the event to record changes, validate, and
//! commit the changes together with the dedupe key. If storing fails after
//! the delivery was verified, the work goes to the retry queue and the
//! delivery is still acknowledged: nothing acknowledged is lost.

mod config;
mod mapping;
mod verify;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

pub use crate::validation::{FieldType, Format, Rules};
pub use config::{EventIdSpec, SecretRef, WebhookSource, WebhookSources};
pub use mapping::{Action, EventMapping};
pub use verify::{Encoding, Verified, Verifier, VerifierSpec};

use crate::error::{Error, Result};
use crate::model::{SourceId, Timestamp};
use crate::queue::RetryQueue;
use crate::retry::{ApplyChanges, DedupeSpec, RetryEnvelope, WorkKind};
use crate::store::Store;

/// Request headers by lower-case name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(HashMap<String, String>);

impl Headers {
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// What happened to an accepted delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// Stored now.
    Applied { event_id: String, records: usize },
    /// Seen before: nothing changed.
    Duplicate { event_id: String },
    /// Authentic, but of an event type this source does not map.
    Ignored { event_type: String },
    /// Authentic and valid, but the store failed: the changes are on the
    /// retry queue.
    Queued { event_id: String },
}

pub struct WebhookService {
    store: Store,
    queue: Arc<dyn RetryQueue>,
    sources: WebhookSources,
}

impl std::fmt::Debug for WebhookService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookService")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

impl WebhookService {
    pub fn new(store: Store, queue: Arc<dyn RetryQueue>, sources: WebhookSources) -> Self {
        Self {
            store,
            queue,
            sources,
        }
    }

    /// Takes one delivery for `source`, as received, at `now`.
    pub async fn receive(
        &self,
        source: &str,
        headers: &Headers,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Receipt> {
        let source = self
            .sources
            .get(source)
            .ok_or_else(|| Error::NotFound(format!("webhook source {source:?}")))?;
        if body.len() > source.max_body_bytes {
            return Err(Error::PayloadTooLarge {
                limit: source.max_body_bytes,
            });
        }
        let verified = source.verifier.verify(headers, body, now)?;
        let event: Value = serde_json::from_slice(body)
            .map_err(|e| Error::validation("body", format!("not JSON: {e}")))?;
        let event_id = event_id(source, headers, &verified, &event, body)?;
        let event_type = match event.pointer(&source.event_type) {
            Some(Value::String(kind)) => kind.clone(),
            _ => {
                return Err(Error::Unprocessable(format!(
                    "the event has no type at {}",
                    source.event_type
                )));
            }
        };
        let Some(mapping) = source.events.get(&event_type) else {
            return Ok(Receipt::Ignored { event_type });
        };
        let change = mapping.apply(&event)?;

        let work = ApplyChanges {
            tenant: source.tenant.clone(),
            source: Some(source.id.clone()),
            changes: vec![change],
            dedupe: Some(DedupeSpec {
                source: source.id.clone(),
                event_id: event_id.clone(),
                retention_secs: source.dedupe_retention.as_secs(),
            }),
        };
        let set = work.change_set()?;
        match self.store.commit(&set).await {
            Ok(_) => Ok(Receipt::Applied {
                event_id,
                records: work.changes.len(),
            }),
            Err(Error::Conflict(_)) => Ok(Receipt::Duplicate { event_id }),
            Err(err) => {
                tracing::warn!(source = %source.id, %event_id, error = %err, "store failed; queueing the event");
                self.enqueue(&work, &event_id, &err).await?;
                Ok(Receipt::Queued { event_id })
            }
        }
    }

    async fn enqueue(&self, work: &ApplyChanges, event_id: &str, error: &Error) -> Result<()> {
        let source = work.source.as_ref().map_or("", SourceId::as_str);
        let payload = serde_json::to_value(work).map_err(|e| Error::Internal {
            context: "serializing queued webhook work".into(),
            source: Some(Box::new(e)),
        })?;
        let mut envelope = RetryEnvelope::new(
            WorkKind::ApplyChanges,
            payload,
            format!("webhook:{source}:{event_id}"),
            error.to_string(),
        );
        envelope.tenant = Some(work.tenant.clone());
        envelope.source = work.source.clone();
        self.queue
            .send(&envelope.to_body()?, Duration::ZERO)
            .await?;
        Ok(())
    }
}

/// The provider's id of the event, or a hash of the body for providers
/// without one.
fn event_id(
    source: &WebhookSource,
    headers: &Headers,
    verified: &Verified,
    event: &Value,
    body: &[u8],
) -> Result<String> {
    let missing = |what: &str| Error::validation("event id", format!("the delivery has no {what}"));
    let id = match &source.event_id {
        EventIdSpec::Pointer(path) => match event.pointer(path) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(missing(path)),
        },
        EventIdSpec::Header(name) => match (verified.message_id.as_ref(), headers.get(name)) {
            (_, Some(value)) if !value.is_empty() => value.to_owned(),
            (Some(id), _) => id.clone(),
            _ => return Err(missing(name)),
        },
        EventIdSpec::BodyHash => format!("sha256:{}", hex::encode(Sha256::digest(body))),
    };
    if id.len() > 256 || id.chars().any(char::is_control) {
        return Err(Error::validation(
            "event id",
            "must be 1 to 256 printable characters",
        ));
    }
    Ok(id)
}
