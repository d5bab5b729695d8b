//! Processes one retry message: read the envelope, claim its idempotency
//! key, run the kind's handler, and decide what happens next: done, another
//! attempt after a backoff delay, or the dead-letter queue with the error.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::apply::ApplyChangesHandler;
use super::idempotency::{Claim, Idempotency};
use super::{DeadLettered, RetryEnvelope, RetryPolicy, WorkKind};
use crate::error::{Error, Result};
use crate::model::Timestamp;
use crate::queue::{ReceiptHandle, RetryQueue};
use crate::store::Store;

/// Does one kind of work. Return a retryable error (see
/// [`Error::is_retryable`]) for failures that may pass, any other error for
/// work that can never succeed.
#[async_trait]
pub trait WorkHandler: Send + Sync {
    /// Does the work before `deadline` (the invocation's end).
    async fn handle(&self, envelope: &RetryEnvelope, deadline: Timestamp) -> Result<()>;

    /// Told when work of this kind was dead-lettered with `error`, so the
    /// handler's own records can say so (the delivery ledger's `dead`).
    async fn dead_lettered(&self, _envelope: &RetryEnvelope, _error: &str) -> Result<()> {
        Ok(())
    }
}

/// A message as the queue delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    pub id: String,
    pub receipt: ReceiptHandle,
    pub body: String,
    /// Deliveries of this message so far, this one included.
    pub receive_count: u32,
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The work is done; delete the message.
    Done,
    /// It was done before; delete the message.
    AlreadyDone,
    /// Try again after `delay` (the message stays on the queue, hidden until
    /// then); report it as a failed batch item.
    RetryLater { delay: Duration, error: String },
    /// Given up: a copy with the error is on the dead-letter queue; delete
    /// the message.
    DeadLettered { error: String },
}

impl Outcome {
    /// Whether the message must stay on the queue.
    pub fn keeps_message(&self) -> bool {
        matches!(self, Self::RetryLater { .. })
    }
}

pub struct RetryWorker {
    queue: Arc<dyn RetryQueue>,
    policy: RetryPolicy,
    idempotency: Idempotency,
    handlers: HashMap<WorkKind, Arc<dyn WorkHandler>>,
}

impl std::fmt::Debug for RetryWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryWorker")
            .field("policy", &self.policy)
            .field("kinds", &self.handlers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// How long a claim is held when the invocation's deadline is unknown or
/// already past.
const MIN_HOLD: Duration = Duration::from_secs(1);

impl RetryWorker {
    /// A worker with the built-in handlers registered.
    pub fn new(store: Store, queue: Arc<dyn RetryQueue>, policy: RetryPolicy) -> Self {
        let mut worker = Self {
            queue,
            policy,
            idempotency: Idempotency::new(store.clone()),
            handlers: HashMap::new(),
        };
        worker.register(
            WorkKind::ApplyChanges,
            Arc::new(ApplyChangesHandler::new(store)),
        );
        worker
    }

    /// Adds (or replaces) the handler of `kind`.
    pub fn register(&mut self, kind: WorkKind, handler: Arc<dyn WorkHandler>) {
        self.handlers.insert(kind, handler);
    }

    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// Handles one message before `deadline` (the invocation's end). An
    /// `Err` means the outcome could not be recorded (the queue or store is
    /// unreachable): leave the message for SQS to deliver again.
    pub async fn process(&self, message: &IncomingMessage, deadline: Timestamp) -> Result<Outcome> {
        let mut envelope = match RetryEnvelope::parse(&message.body) {
            Ok(envelope) => envelope,
            Err(err) => return self.dead_letter_unreadable(message, &err).await,
        };
        // Deliveries in this cycle: SQS counts receives, and a redriven
        // message starts from zero again.
        let attempt = message.receive_count.max(1);
        let Some(handler) = self.handlers.get(&envelope.kind) else {
            let error = Error::Config(format!("no handler for work of kind {}", envelope.kind));
            // The handler may come with the next deploy; an unreadable
            // message is only ever kept for inspection.
            let retryable = envelope.kind != WorkKind::Unreadable;
            return self
                .after_failure(message, &mut envelope, attempt, &error, retryable)
                .await;
        };

        let hold = Duration::from_millis(
            deadline
                .as_millis()
                .saturating_sub(Timestamp::now().as_millis())
                .max(0) as u64,
        )
        .max(MIN_HOLD);
        let lease = match self
            .idempotency
            .claim(&envelope.idempotency_key, hold)
            .await?
        {
            Claim::Completed => return Ok(Outcome::AlreadyDone),
            Claim::InProgress { until } => {
                let wait = until.map_or(self.policy.base_delay, |until| {
                    Duration::from_millis(
                        (until.as_millis() - Timestamp::now().as_millis()).max(0) as u64
                    )
                });
                let delay = Duration::from_secs(wait.as_secs() + 1);
                self.hide(message, delay).await;
                return Ok(Outcome::RetryLater {
                    delay,
                    error: "the same work is in progress elsewhere".into(),
                });
            }
            Claim::Acquired(lease) => lease,
        };

        match handler.handle(&envelope, deadline).await {
            Ok(()) => {
                self.idempotency
                    .complete(&envelope.idempotency_key, &lease)
                    .await?;
                Ok(Outcome::Done)
            }
            Err(error) => {
                self.idempotency.abandon(&lease).await?;
                let retryable = error.is_retryable();
                self.after_failure(message, &mut envelope, attempt, &error, retryable)
                    .await
            }
        }
    }

    async fn after_failure(
        &self,
        message: &IncomingMessage,
        envelope: &mut RetryEnvelope,
        attempt: u32,
        error: &Error,
        retryable: bool,
    ) -> Result<Outcome> {
        let text = error.chain();
        if retryable && self.policy.allows_another(attempt) {
            let delay = self.policy.delay(attempt);
            tracing::warn!(
                message_id = %message.id, kind = %envelope.kind, attempt,
                delay_secs = delay.as_secs(), error = %text, "work failed; retrying later"
            );
            self.hide(message, delay).await;
            return Ok(Outcome::RetryLater { delay, error: text });
        }
        tracing::error!(
            message_id = %message.id, kind = %envelope.kind, attempt, retryable,
            error = %text, "work failed for good; dead-lettering"
        );
        envelope.attempt += attempt;
        envelope.last_error = Some(text.clone());
        envelope.dead_lettered = Some(DeadLettered {
            at: Timestamp::now(),
            attempts: attempt,
        });
        self.queue.dead_letter(&envelope.to_body()?).await?;
        if let Some(handler) = self.handlers.get(&envelope.kind)
            && let Err(err) = handler.dead_lettered(envelope, &text).await
        {
            tracing::warn!(message_id = %message.id, error = %err, "the handler could not record the dead letter");
        }
        Ok(Outcome::DeadLettered { error: text })
    }

    async fn dead_letter_unreadable(
        &self,
        message: &IncomingMessage,
        error: &Error,
    ) -> Result<Outcome> {
        let text = error.chain();
        tracing::error!(message_id = %message.id, error = %text, "unreadable retry message; dead-lettering");
        let mut envelope = RetryEnvelope::new(
            WorkKind::Unreadable,
            serde_json::Value::String(message.body.clone()),
            message.id.clone(),
            text.clone(),
        );
        envelope.attempt = message.receive_count.max(1);
        envelope.dead_lettered = Some(DeadLettered {
            at: Timestamp::now(),
            attempts: envelope.attempt,
        });
        self.queue.dead_letter(&envelope.to_body()?).await?;
        Ok(Outcome::DeadLettered { error: text })
    }

    /// Keeps the message hidden for `delay`. If that fails it reappears after
    /// the queue's own visibility timeout instead: later, never lost.
    async fn hide(&self, message: &IncomingMessage, delay: Duration) {
        if let Err(err) = self.queue.change_visibility(&message.receipt, delay).await {
            tracing::warn!(message_id = %message.id, error = %err, "could not set the retry delay");
        }
    }
}
