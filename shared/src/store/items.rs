//! Consistent reads of many items by key (BatchGetItem in calls of 100
//! keys, a few in flight, unprocessed keys retried with backoff), and
//! unconditional puts of whole items, alone or in a transaction.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem};
use futures_util::StreamExt;

use super::{Store, backoff, build_error, store_error};
use crate::error::{Error, Result};

/// BatchGetItem's limit of keys per call.
const BATCH_GET_MAX: usize = 100;
/// BatchGetItem calls in flight at once for one read: a sync page's 500
/// record heads in one round trip.
const READ_CONCURRENCY: usize = 8;

impl Store {
    /// `item` put without a condition, as one action of a transaction.
    pub(super) fn put_action(
        &self,
        item: HashMap<String, AttributeValue>,
    ) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// `item` put on its own, without a condition.
    pub(super) async fn put_unconditional(
        &self,
        item: HashMap<String, AttributeValue>,
    ) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| store_error("PutItem", e))?;
        Ok(())
    }

    /// Reads many items by key with strongly consistent reads, retrying
    /// unprocessed keys. Returns the raw items found.
    pub(super) async fn batch_get(
        &self,
        keys: Vec<HashMap<String, AttributeValue>>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>> {
        self.batch_get_projected(keys, None).await
    }

    /// [`Store::batch_get`] reading only the `attributes` named.
    pub(super) async fn batch_get_projected(
        &self,
        keys: Vec<HashMap<String, AttributeValue>>,
        attributes: Option<&[&str]>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>> {
        let calls: Vec<_> = keys
            .chunks(BATCH_GET_MAX)
            .map(|chunk| self.get_chunk(chunk.to_vec(), attributes))
            .collect();
        let mut calls = futures_util::stream::iter(calls).buffer_unordered(READ_CONCURRENCY);
        let mut found = Vec::with_capacity(keys.len());
        while let Some(items) = calls.next().await {
            found.extend(items?);
        }
        Ok(found)
    }

    async fn get_chunk(
        &self,
        keys: Vec<HashMap<String, AttributeValue>>,
        attributes: Option<&[&str]>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>> {
        let mut found = Vec::with_capacity(keys.len());
        let mut request = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true);
        if let Some(attributes) = attributes {
            let names: Vec<String> = (0..attributes.len()).map(|i| format!("#a{i}")).collect();
            request = request.projection_expression(names.join(", "));
            for (name, attribute) in names.iter().zip(attributes) {
                request = request.expression_attribute_names(name, *attribute);
            }
        }
        let mut pending = Some(request.build().map_err(|e| Error::Internal {
            context: "building a batch read".into(),
            source: Some(Box::new(e)),
        })?);
        let mut attempt = 0;
        while let Some(request) = pending.take() {
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| store_error("BatchGetItem", e))?;
            if let Some(mut responses) = out.responses {
                found.extend(responses.remove(&self.table).unwrap_or_default());
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .filter(|k| !k.keys().is_empty());
            if pending.is_some() {
                backoff(attempt).await;
                attempt += 1;
            }
        }
        Ok(found)
    }
}
