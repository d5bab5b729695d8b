//! The retry queue port and its two adapters: SQS in AWS, and a local queue
//! on the store for the embedded default. Both pass the same contract suite
//! (`tests/tests/integration/queue_contract.rs`).

mod local;
mod sqs;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

pub use local::LocalQueue;
pub use sqs::{SqsQueue, create_sqs_queues};

use crate::error::{Error, Result};
use crate::model::Timestamp;

/// SQS's longest send delay; longer waits are the caller's to split.
pub const MAX_DELAY: Duration = Duration::from_secs(900);
/// SQS's longest visibility timeout.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// SQS's largest message body.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// At most this many messages come back from one receive.
pub const MAX_RECEIVE: u32 = 10;

/// The shape the deployed queue has (`infra/template.yaml`), and the local
/// queue mirrors.
pub mod definition {
    use std::time::Duration;

    /// Receives before a message moves to the dead-letter queue. A backstop
    /// above the retry worker's own attempt limit (8 by default), which
    /// dead-letters with the error first; this catches crashes and timeouts.
    pub const MAX_RECEIVES: u32 = 10;
    /// At least six times the retry worker's timeout (60 s), as Lambda
    /// advises for SQS event sources.
    pub const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(360);
    /// How long dead letters are kept (the SQS maximum, 14 days).
    pub const DEAD_LETTER_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageId(String);

impl MessageId {
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Proof of one receive; needed to delete the message or change its
/// visibility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptHandle(String);

impl ReceiptHandle {
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub id: MessageId,
    pub receipt: ReceiptHandle,
    pub body: String,
    /// 1 on the first receive.
    pub receive_count: u32,
    pub sent_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: MessageId,
    pub body: String,
    pub sent_at: Timestamp,
}

/// Where failed work waits for another attempt.
#[async_trait]
pub trait RetryQueue: Send + Sync + fmt::Debug {
    /// Enqueues `body`, invisible for `delay` (at most [`MAX_DELAY`]).
    async fn send(&self, body: &str, delay: Duration) -> Result<MessageId>;

    /// Up to `max` visible messages, each hidden from other receivers for
    /// `visibility`. Waits up to `wait` for the first one. A message received
    /// more often than the queue's maximum moves to the dead-letter queue
    /// instead of being returned.
    async fn receive(
        &self,
        max: u32,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Received>>;

    /// Removes a received message for good.
    async fn delete(&self, receipt: &ReceiptHandle) -> Result<()>;

    /// Makes a received message visible again after `visibility`
    /// (zero: now).
    async fn change_visibility(&self, receipt: &ReceiptHandle, visibility: Duration) -> Result<()>;

    /// Puts `body` straight onto the dead-letter queue (work that failed for
    /// good, with its reason inside the body).
    async fn dead_letter(&self, body: &str) -> Result<MessageId>;

    /// Up to `max` messages waiting in the dead-letter queue.
    async fn dead_letters(&self, max: u32) -> Result<Vec<DeadLetter>>;

    /// How many messages wait in the dead-letter queue (SQS: its
    /// approximate counts), without receiving any.
    async fn dead_letter_count(&self) -> Result<u64>;

    /// Moves dead letters back onto the queue, received zero times: the ones
    /// named, or all when `ids` is `None`. Returns how many moved.
    async fn redrive(&self, ids: Option<&[MessageId]>) -> Result<u32>;
}

pub(crate) fn check_send(body: &str, delay: Duration) -> Result<()> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Error::validation(
            "message",
            format!("body exceeds {MAX_BODY_BYTES} bytes"),
        ));
    }
    if delay > MAX_DELAY {
        return Err(Error::validation("delay", "at most 15 minutes"));
    }
    Ok(())
}

pub(crate) fn check_visibility(visibility: Duration) -> Result<()> {
    if visibility > MAX_VISIBILITY {
        return Err(Error::validation("visibility timeout", "at most 12 hours"));
    }
    Ok(())
}
