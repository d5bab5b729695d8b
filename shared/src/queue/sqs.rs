//! The SQS adapter. SQS itself counts receives and moves a message to the
//! dead-letter queue named in the queue's redrive policy.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};

use super::{
    DeadLetter, MAX_RECEIVE, MessageId, ReceiptHandle, Received, RetryQueue, check_send,
    check_visibility, definition,
};
use crate::error::{Error, Result};
use crate::model::Timestamp;

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    dead_letter_url: String,
}

fn queue_error<E>(operation: &'static str, err: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let retryable = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            service.raw().status().is_server_error()
                || matches!(
                    service.err().code(),
                    Some("ThrottlingException" | "RequestThrottled" | "ServiceUnavailable")
                )
        }
        _ => false,
    };
    Error::Queue {
        operation,
        retryable,
        source: Box::new(err),
    }
}

fn secs(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}

impl SqsQueue {
    /// The queue at `url`. Without `dead_letter_url`, the dead-letter queue
    /// is found through the queue's redrive policy.
    pub async fn connect(client: Client, url: &str, dead_letter_url: Option<&str>) -> Result<Self> {
        let dead_letter_url = match dead_letter_url {
            Some(url) => url.to_owned(),
            None => find_dead_letter_queue(&client, url).await?,
        };
        Ok(Self {
            client,
            url: url.to_owned(),
            dead_letter_url,
        })
    }

    async fn send_to(&self, url: &str, body: &str, delay: Duration) -> Result<MessageId> {
        check_send(body, delay)?;
        let out = self
            .client
            .send_message()
            .queue_url(url)
            .message_body(body)
            .delay_seconds(secs(delay))
            .send()
            .await
            .map_err(|e| queue_error("SendMessage", e))?;
        out.message_id
            .map(MessageId::new)
            .ok_or_else(|| Error::internal("SendMessage returned no id"))
    }

    /// Takes up to `max` messages off the dead-letter queue for a moment
    /// (they stay there, hidden for `hold`).
    async fn sweep_dead_letters(
        &self,
        max: u32,
        hold: Duration,
    ) -> Result<Vec<aws_sdk_sqs::types::Message>> {
        let mut found: Vec<aws_sdk_sqs::types::Message> = Vec::new();
        while (found.len() as u32) < max {
            let out = self
                .client
                .receive_message()
                .queue_url(&self.dead_letter_url)
                .max_number_of_messages((max - found.len() as u32).min(MAX_RECEIVE) as i32)
                .visibility_timeout(secs(hold))
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .send()
                .await
                .map_err(|e| queue_error("ReceiveMessage", e))?;
            let batch = out.messages.unwrap_or_default();
            if batch.is_empty() {
                break;
            }
            found.extend(batch);
        }
        Ok(found)
    }

    async fn release(&self, messages: &[aws_sdk_sqs::types::Message]) -> Result<()> {
        for message in messages {
            if let Some(receipt) = message.receipt_handle() {
                self.client
                    .change_message_visibility()
                    .queue_url(&self.dead_letter_url)
                    .receipt_handle(receipt)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .map_err(|e| queue_error("ChangeMessageVisibility", e))?;
            }
        }
        Ok(())
    }
}

fn sent_at(attributes: Option<&HashMap<MessageSystemAttributeName, String>>) -> Timestamp {
    attributes
        .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
        .and_then(|t| t.parse().ok())
        .map_or_else(Timestamp::now, Timestamp::from_millis)
}

async fn find_dead_letter_queue(client: &Client, url: &str) -> Result<String> {
    let out = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .map_err(|e| queue_error("GetQueueAttributes", e))?;
    let missing = || {
        Error::Config(format!(
            "queue {url} has no redrive policy; set SYNCLINE_DEAD_LETTER_QUEUE_URL"
        ))
    };
    let policy = out
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::RedrivePolicy))
        .ok_or_else(missing)?;
    let policy: serde_json::Value = serde_json::from_str(&policy).map_err(|_| missing())?;
    let arn = policy["deadLetterTargetArn"].as_str().ok_or_else(missing)?;
    // arn:aws:sqs:region:account:name
    let mut parts = arn.rsplit(':');
    let name = parts.next().ok_or_else(missing)?;
    let account = parts.next().ok_or_else(missing)?;
    let out = client
        .get_queue_url()
        .queue_name(name)
        .queue_owner_aws_account_id(account)
        .send()
        .await
        .map_err(|e| queue_error("GetQueueUrl", e))?;
    out.queue_url.ok_or_else(missing)
}

/// Creates the retry queue `name` and its dead-letter queue `{name}-dlq`
/// with the deployed shape ([`definition`]); returns both URLs. For tests
/// and local SQS emulators: in AWS the template creates them.
pub async fn create_sqs_queues(
    client: &Client,
    name: &str,
    max_receives: u32,
) -> Result<(String, String)> {
    let dead_letter = client
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .attributes(
            QueueAttributeName::MessageRetentionPeriod,
            definition::DEAD_LETTER_RETENTION.as_secs().to_string(),
        )
        .send()
        .await
        .map_err(|e| queue_error("CreateQueue", e))?;
    let dead_letter_url = dead_letter
        .queue_url
        .ok_or_else(|| Error::internal("CreateQueue returned no URL"))?;
    let arn = client
        .get_queue_attributes()
        .queue_url(&dead_letter_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| queue_error("GetQueueAttributes", e))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| Error::internal("dead-letter queue has no ARN"))?;
    let policy = serde_json::json!({
        "deadLetterTargetArn": arn,
        "maxReceiveCount": max_receives.to_string(),
    });
    let queue = client
        .create_queue()
        .queue_name(name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            definition::VISIBILITY_TIMEOUT.as_secs().to_string(),
        )
        .attributes(QueueAttributeName::RedrivePolicy, policy.to_string())
        .send()
        .await
        .map_err(|e| queue_error("CreateQueue", e))?;
    let url = queue
        .queue_url
        .ok_or_else(|| Error::internal("CreateQueue returned no URL"))?;
    Ok((url, dead_letter_url))
}

#[async_trait]
impl RetryQueue for SqsQueue {
    async fn send(&self, body: &str, delay: Duration) -> Result<MessageId> {
        self.send_to(&self.url, body, delay).await
    }

    async fn receive(
        &self,
        max: u32,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Received>> {
        check_visibility(visibility)?;
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, MAX_RECEIVE) as i32)
            .visibility_timeout(secs(visibility))
            .wait_time_seconds(secs(wait).min(20))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| queue_error("ReceiveMessage", e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Some(Received {
                    sent_at: sent_at(m.attributes()),
                    id: MessageId::new(m.message_id?),
                    receipt: ReceiptHandle::new(m.receipt_handle?),
                    body: m.body.unwrap_or_default(),
                    receive_count,
                })
            })
            .collect())
    }

    async fn delete(&self, receipt: &ReceiptHandle) -> Result<()> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt.as_str())
            .send()
            .await
            .map_err(|e| queue_error("DeleteMessage", e))?;
        Ok(())
    }

    async fn change_visibility(&self, receipt: &ReceiptHandle, visibility: Duration) -> Result<()> {
        check_visibility(visibility)?;
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt.as_str())
            .visibility_timeout(secs(visibility))
            .send()
            .await
            .map_err(|e| queue_error("ChangeMessageVisibility", e))?;
        Ok(())
    }

    async fn dead_letter(&self, body: &str) -> Result<MessageId> {
        self.send_to(&self.dead_letter_url, body, Duration::ZERO)
            .await
    }

    async fn dead_letters(&self, max: u32) -> Result<Vec<DeadLetter>> {
        // SQS has no peek: hold the messages briefly, then make them visible
        // again.
        let messages = self
            .sweep_dead_letters(max, Duration::from_secs(30))
            .await?;
        self.release(&messages).await?;
        Ok(messages
            .into_iter()
            .filter_map(|m| {
                Some(DeadLetter {
                    sent_at: sent_at(m.attributes()),
                    id: MessageId::new(m.message_id?),
                    body: m.body.unwrap_or_default(),
                })
            })
            .collect())
    }

    async fn dead_letter_count(&self) -> Result<u64> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.dead_letter_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| queue_error("GetQueueAttributes", e))?;
        Ok(out
            .attributes()
            .into_iter()
            .flat_map(HashMap::values)
            .filter_map(|count| count.parse::<u64>().ok())
            .sum())
    }

    async fn redrive(&self, ids: Option<&[MessageId]>) -> Result<u32> {
        let messages = self
            .sweep_dead_letters(u32::MAX, Duration::from_secs(60))
            .await?;
        let mut moved = 0;
        let mut kept = Vec::new();
        for message in messages {
            let chosen = ids.is_none_or(|ids| {
                ids.iter()
                    .any(|id| Some(id.as_str()) == message.message_id())
            });
            let (Some(receipt), true) = (message.receipt_handle(), chosen) else {
                kept.push(message);
                continue;
            };
            // Send first, then delete: a crash in between duplicates the
            // message (handlers are idempotent) but never loses it.
            self.client
                .send_message()
                .queue_url(&self.url)
                .message_body(message.body().unwrap_or_default())
                .send()
                .await
                .map_err(|e| queue_error("SendMessage", e))?;
            self.client
                .delete_message()
                .queue_url(&self.dead_letter_url)
                .receipt_handle(receipt)
                .send()
                .await
                .map_err(|e| queue_error("DeleteMessage", e))?;
            moved += 1;
        }
        self.release(&kept).await?;
        Ok(moved)
    }
}
