//! Persistence for the local retry queue: messages are items in the table,
//! ordered by the time they become visible (the `by_ord` index), claimed
//! with conditional updates so two consumers never receive the same message
//! at once. The queue semantics live in `queue::local`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};

use super::build_error;
use super::keys::{BY_ORD, ORD, PK, SK};
use super::{Store, is_condition_failure, mapping_error, number_value, store_error, string_value};
use crate::error::Result;
use crate::model::Timestamp;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MessageItem {
    pk: String,
    sk: String,
    /// When the message becomes visible (epoch ms).
    pub ord: i64,
    pub id: String,
    pub body: String,
    pub receive_count: u32,
    pub sent_at: Timestamp,
    /// Token of the latest receive; deletes and visibility changes must
    /// present it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
}

impl MessageItem {
    pub fn new(queue: &str, id: String, body: String, visible_at: Timestamp) -> Self {
        Self {
            pk: queue_pk(queue),
            sk: message_sk(&id),
            ord: visible_at.as_millis(),
            id,
            body,
            receive_count: 0,
            sent_at: Timestamp::now(),
            receipt: None,
        }
    }

    /// The same message placed on another queue, received zero times.
    pub fn moved_to(&self, queue: &str, visible_at: Timestamp) -> Self {
        Self {
            pk: queue_pk(queue),
            ord: visible_at.as_millis(),
            receipt: None,
            receive_count: 0,
            ..self.clone()
        }
    }
}

fn queue_pk(queue: &str) -> String {
    format!("Q#{queue}")
}

fn message_sk(id: &str) -> String {
    format!("M#{id}")
}

fn message_key(queue: &str, id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_owned(), string_value(queue_pk(queue))),
        (SK.to_owned(), string_value(message_sk(id))),
    ])
}

impl Store {
    pub(crate) async fn message_put(&self, message: &MessageItem) -> Result<()> {
        let item = serde_dynamo::to_item(message).map_err(|e| mapping_error("message", e))?;
        self.put_unconditional(item).await
    }

    /// Messages of `queue` visible at `now`, earliest first.
    pub(crate) async fn messages_visible(
        &self,
        queue: &str,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<MessageItem>> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_ORD)
            .key_condition_expression("#pk = :pk AND #ord <= :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#ord", ORD)
            .expression_attribute_values(":pk", string_value(queue_pk(queue)))
            .expression_attribute_values(":now", number_value(now.as_millis()))
            .consistent_read(true)
            .limit(limit.clamp(1, 1000) as i32)
            .send()
            .await
            .map_err(|e| store_error("Query", e))?;
        // The index holds keys only; read the messages themselves.
        let keys = out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|e| {
                Some(HashMap::from([
                    (PK.to_owned(), e.get(PK)?.clone()),
                    (SK.to_owned(), e.get(SK)?.clone()),
                ]))
            })
            .collect();
        let mut messages = decode_all(self.batch_get(keys).await?)?;
        messages.retain(|m| m.ord <= now.as_millis());
        messages.sort_by_key(|m| m.ord);
        Ok(messages)
    }

    pub(crate) async fn message_exists(&self, queue: &str, id: &str) -> Result<bool> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(message_key(queue, id)))
            .consistent_read(true)
            .projection_expression("#pk")
            .expression_attribute_names("#pk", PK)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        Ok(out.item.is_some())
    }

    /// Every message of `queue` in id order, at most `limit`.
    pub(crate) async fn messages_all(&self, queue: &str, limit: usize) -> Result<Vec<MessageItem>> {
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", string_value(queue_pk(queue)))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| store_error("Query", e))?;
            found.extend(decode_all(out.items.unwrap_or_default())?);
            start = out.last_evaluated_key;
            if start.is_none() || found.len() >= limit {
                found.truncate(limit);
                return Ok(found);
            }
        }
    }

    /// Takes `message` for one receiver: hides it until `visible_at` and
    /// counts the receive, only if nobody else claimed it since it was read.
    pub(crate) async fn message_claim(
        &self,
        queue: &str,
        message: &MessageItem,
        visible_at: Timestamp,
        receipt: &str,
    ) -> Result<bool> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(message_key(queue, &message.id)))
            .update_expression("SET #ord = :visible, #count = :count, #receipt = :receipt")
            .condition_expression("#ord = :old AND #count = :old_count")
            .expression_attribute_names("#ord", ORD)
            .expression_attribute_names("#count", "receive_count")
            .expression_attribute_names("#receipt", "receipt")
            .expression_attribute_values(":visible", number_value(visible_at.as_millis()))
            .expression_attribute_values(":count", number_value(message.receive_count + 1))
            .expression_attribute_values(":receipt", string_value(receipt))
            .expression_attribute_values(":old", number_value(message.ord))
            .expression_attribute_values(":old_count", number_value(message.receive_count))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(err) if is_condition_failure(&err) => Ok(false),
            Err(err) => Err(store_error("UpdateItem", err)),
        }
    }

    /// Deletes a message if `receipt` is still its latest receipt.
    pub(crate) async fn message_delete(
        &self,
        queue: &str,
        id: &str,
        receipt: &str,
    ) -> Result<bool> {
        let sent = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(message_key(queue, id)))
            .condition_expression("#receipt = :receipt")
            .expression_attribute_names("#receipt", "receipt")
            .expression_attribute_values(":receipt", string_value(receipt))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(err) if is_condition_failure(&err) => Ok(false),
            Err(err) => Err(store_error("DeleteItem", err)),
        }
    }

    /// Makes a received message visible again at `visible_at`, if `receipt`
    /// is still its latest receipt.
    pub(crate) async fn message_set_visibility(
        &self,
        queue: &str,
        id: &str,
        receipt: &str,
        visible_at: Timestamp,
    ) -> Result<bool> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(message_key(queue, id)))
            .update_expression("SET #ord = :visible")
            .condition_expression("#receipt = :receipt")
            .expression_attribute_names("#ord", ORD)
            .expression_attribute_names("#receipt", "receipt")
            .expression_attribute_values(":visible", number_value(visible_at.as_millis()))
            .expression_attribute_values(":receipt", string_value(receipt))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(err) if is_condition_failure(&err) => Ok(false),
            Err(err) => Err(store_error("UpdateItem", err)),
        }
    }

    /// Moves `message` from `from` to another queue atomically, if it is
    /// unchanged since it was read. False when somebody else moved or
    /// claimed it first.
    pub(crate) async fn message_move(
        &self,
        from: &str,
        message: &MessageItem,
        moved: &MessageItem,
    ) -> Result<bool> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(message_key(from, &message.id)))
            .condition_expression("#ord = :old AND #count = :old_count")
            .expression_attribute_names("#ord", ORD)
            .expression_attribute_names("#count", "receive_count")
            .expression_attribute_values(":old", number_value(message.ord))
            .expression_attribute_values(":old_count", number_value(message.receive_count))
            .build()
            .map_err(build_error)?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(
                serde_dynamo::to_item(moved).map_err(|e| mapping_error("message", e))?,
            ))
            .build()
            .map_err(build_error)?;
        let sent = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build())
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(aws_sdk_dynamodb::error::SdkError::ServiceError(e))
                if e.err().is_transaction_canceled_exception() =>
            {
                Ok(false)
            }
            Err(err) => Err(store_error("TransactWriteItems", err)),
        }
    }
}

fn decode_all(items: Vec<HashMap<String, AttributeValue>>) -> Result<Vec<MessageItem>> {
    items
        .into_iter()
        .map(|item| serde_dynamo::from_item(item).map_err(|e| mapping_error("message", e)))
        .collect()
}
