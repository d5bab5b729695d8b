//! SQS events for the retry worker, and a poller that feeds the retry queue
//! to the same handler the way Lambda's SQS event source does (for local
//! runs and tests).

use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Context, LambdaEvent};

use crate::error::Result;
use crate::model::Timestamp;
use crate::queue::{ReceiptHandle, Received, RetryQueue};
use crate::retry::{IncomingMessage, RetryWorker};

/// Handles a batch. Each message is read and handled on its own; the ones
/// that must come back later, or whose outcome could not be recorded, are
/// reported in `batchItemFailures` and only those are delivered again.
pub async fn handle_retry_batch(
    worker: &RetryWorker,
    event: LambdaEvent<SqsEvent>,
) -> std::result::Result<SqsBatchResponse, lambda_runtime::Error> {
    let deadline = Timestamp::from_millis(i64::try_from(event.context.deadline).unwrap_or(0));
    let mut response = SqsBatchResponse::default();
    for record in &event.payload.records {
        let Some(message) = incoming(record) else {
            tracing::error!("SQS record without a message id or receipt handle");
            continue;
        };
        let keep = match worker.process(&message, deadline).await {
            Ok(outcome) => {
                let metric = match outcome {
                    crate::retry::Outcome::RetryLater { .. } => Some("Retries"),
                    crate::retry::Outcome::DeadLettered { .. } => Some("DeadLetters"),
                    _ => None,
                };
                if let Some(name) = metric {
                    crate::metrics::emit(
                        &[("function", "retry-worker")],
                        &[(name, 1.0, crate::metrics::Unit::Count)],
                    );
                }
                outcome.keeps_message()
            }
            Err(err) => {
                tracing::error!(message_id = %message.id, error = %err, "could not record the outcome");
                true
            }
        };
        if keep {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message.id;
            response.batch_item_failures.push(failure);
        }
    }
    Ok(response)
}

fn incoming(record: &SqsMessage) -> Option<IncomingMessage> {
    Some(IncomingMessage {
        id: record.message_id.clone()?,
        receipt: ReceiptHandle::new(record.receipt_handle.clone()?),
        body: record.body.clone().unwrap_or_default(),
        receive_count: record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1),
    })
}

fn sqs_message(received: &Received, source_arn: &str) -> SqsMessage {
    let mut message = SqsMessage::default();
    message.message_id = Some(received.id.to_string());
    message.receipt_handle = Some(received.receipt.as_str().to_owned());
    message.body = Some(received.body.clone());
    message.attributes.insert(
        "ApproximateReceiveCount".into(),
        received.receive_count.to_string(),
    );
    message.attributes.insert(
        "SentTimestamp".into(),
        received.sent_at.as_millis().to_string(),
    );
    message.event_source = Some("aws:sqs".into());
    message.event_source_arn = Some(source_arn.to_owned());
    message
}

/// Emulates Lambda's SQS event source: receives a batch, invokes the
/// handler with it as an SQS event, deletes the messages the handler did not
/// report as failed. Returns how many messages the batch had.
pub async fn poll_once(
    queue: &dyn RetryQueue,
    worker: &RetryWorker,
    visibility: Duration,
    timeout: Duration,
    wait: Duration,
) -> Result<usize> {
    let received = queue.receive(10, visibility, wait).await?;
    if received.is_empty() {
        return Ok(0);
    }
    let mut event = SqsEvent::default();
    event.records = received
        .iter()
        .map(|r| sqs_message(r, "arn:aws:sqs:local:000000000000:syncline-retry"))
        .collect();
    let mut context = Context::default();
    context.request_id = uuid::Uuid::new_v4().to_string();
    context.deadline = Timestamp::now().plus(timeout).as_millis() as u64;
    let response = handle_retry_batch(worker, LambdaEvent::new(event, context))
        .await
        .map_err(|e| crate::Error::internal(format!("retry handler failed: {e}")))?;
    for message in &received {
        let failed = response
            .batch_item_failures
            .iter()
            .any(|f| f.item_identifier == message.id.as_str());
        if !failed {
            queue.delete(&message.receipt).await?;
        }
    }
    Ok(received.len())
}
