//! The local retry queue: SQS semantics on the store, so several local
//! function processes pointed at one store share one queue.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{
    DeadLetter, MAX_RECEIVE, MessageId, ReceiptHandle, Received, RetryQueue, check_send,
    check_visibility,
};
use crate::error::{Error, Result};
use crate::model::Timestamp;
use crate::store::Store;
use crate::store::messages::MessageItem;

const POLL_INTERVAL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct LocalQueue {
    store: Store,
    name: String,
    dead_letter_name: String,
    max_receives: u32,
}

impl LocalQueue {
    /// The queue `name` on `store`, dead-lettering after `max_receives`
    /// receives into `{name}-dlq`.
    pub fn new(store: Store, name: &str, max_receives: u32) -> Result<Self> {
        crate::model::SourceId::parse(name)
            .map_err(|_| Error::validation("queue name", "letters, digits, '_', '-', '.'"))?;
        if max_receives == 0 {
            return Err(Error::validation("max receives", "must be at least 1"));
        }
        Ok(Self {
            store,
            name: name.to_owned(),
            dead_letter_name: format!("{name}-dlq"),
            max_receives,
        })
    }

    async fn put(&self, queue: &str, body: &str, delay: Duration) -> Result<MessageId> {
        check_send(body, delay)?;
        let id = uuid::Uuid::new_v4().to_string();
        let message = MessageItem::new(
            queue,
            id.clone(),
            body.to_owned(),
            Timestamp::now().plus(delay),
        );
        self.store.message_put(&message).await?;
        Ok(MessageId::new(id))
    }

    async fn receive_now(&self, max: u32, visibility: Duration) -> Result<Vec<Received>> {
        let now = Timestamp::now();
        // Read a little more than asked: some candidates may be claimed by
        // another receiver or dead-lettered on the way.
        let candidates = self
            .store
            .messages_visible(&self.name, now, (max * 2) as usize)
            .await?;
        let mut received = Vec::new();
        for message in candidates {
            if received.len() as u32 >= max {
                break;
            }
            if message.receive_count >= self.max_receives {
                let moved = message.moved_to(&self.dead_letter_name, now);
                self.store
                    .message_move(&self.name, &message, &moved)
                    .await?;
                continue;
            }
            let token = uuid::Uuid::new_v4().simple().to_string();
            if self
                .store
                .message_claim(&self.name, &message, now.plus(visibility), &token)
                .await?
            {
                received.push(Received {
                    receipt: ReceiptHandle::new(format!("{}.{token}", message.id)),
                    id: MessageId::new(message.id),
                    body: message.body,
                    receive_count: message.receive_count + 1,
                    sent_at: message.sent_at,
                });
            }
        }
        Ok(received)
    }
}

fn parse_receipt(receipt: &ReceiptHandle) -> Result<(&str, &str)> {
    receipt
        .as_str()
        .split_once('.')
        .ok_or_else(|| Error::validation("receipt handle", "not issued by this queue"))
}

#[async_trait]
impl RetryQueue for LocalQueue {
    async fn send(&self, body: &str, delay: Duration) -> Result<MessageId> {
        self.put(&self.name, body, delay).await
    }

    async fn receive(
        &self,
        max: u32,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Received>> {
        check_visibility(visibility)?;
        let max = max.clamp(1, MAX_RECEIVE);
        let deadline = Instant::now() + wait;
        loop {
            let received = self.receive_now(max, visibility).await?;
            if !received.is_empty() || Instant::now() >= deadline {
                return Ok(received);
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline - Instant::now())).await;
        }
    }

    async fn delete(&self, receipt: &ReceiptHandle) -> Result<()> {
        let (id, token) = parse_receipt(receipt)?;
        if self.store.message_delete(&self.name, id, token).await? {
            return Ok(());
        }
        // Already gone is fine (a delete may be retried); a newer receive
        // owns the message otherwise.
        if self.store.message_exists(&self.name, id).await? {
            Err(Error::Conflict("receipt handle is stale".into()))
        } else {
            Ok(())
        }
    }

    async fn change_visibility(&self, receipt: &ReceiptHandle, visibility: Duration) -> Result<()> {
        check_visibility(visibility)?;
        let (id, token) = parse_receipt(receipt)?;
        let visible_at = Timestamp::now().plus(visibility);
        if self
            .store
            .message_set_visibility(&self.name, id, token, visible_at)
            .await?
        {
            Ok(())
        } else {
            Err(Error::Conflict("receipt handle is stale".into()))
        }
    }

    async fn dead_letter(&self, body: &str) -> Result<MessageId> {
        self.put(&self.dead_letter_name, body, Duration::ZERO).await
    }

    async fn dead_letters(&self, max: u32) -> Result<Vec<DeadLetter>> {
        let messages = self
            .store
            .messages_all(&self.dead_letter_name, max as usize)
            .await?;
        Ok(messages
            .into_iter()
            .map(|m| DeadLetter {
                id: MessageId::new(m.id),
                body: m.body,
                sent_at: m.sent_at,
            })
            .collect())
    }

    async fn dead_letter_count(&self) -> Result<u64> {
        let messages = self
            .store
            .messages_all(&self.dead_letter_name, usize::MAX)
            .await?;
        Ok(messages.len() as u64)
    }

    async fn redrive(&self, ids: Option<&[MessageId]>) -> Result<u32> {
        let now = Timestamp::now();
        let mut moved = 0;
        for message in self
            .store
            .messages_all(&self.dead_letter_name, usize::MAX)
            .await?
        {
            let chosen = ids.is_none_or(|ids| ids.iter().any(|id| id.as_str() == message.id));
            if chosen {
                let back = message.moved_to(&self.name, now);
                if self
                    .store
                    .message_move(&self.dead_letter_name, &message, &back)
                    .await?
                {
                    moved += 1;
                }
            }
        }
        Ok(moved)
    }
}
