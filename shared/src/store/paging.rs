//! Opaque page tokens: the last evaluated key, encoded, and checked to
//! belong to the partition it is used on (a token from one tenant's listing
//! is rejected on another's).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;

use super::keys::PK;
use super::{Store, store_error, string_value};
use crate::error::{Error, Result};
use crate::model::Timestamp;

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Present when more items may follow.
    pub next: Option<PageToken>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken(String);

impl PageToken {
    pub fn parse(raw: &str) -> Result<Self> {
        let token = Self(raw.to_owned());
        token.decode()?;
        Ok(token)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn encode(key: &HashMap<String, AttributeValue>) -> Result<Self> {
        let json: serde_json::Value = serde_dynamo::from_item(key.clone())
            .map_err(|e| super::mapping_error("page key", e))?;
        Ok(Self(URL_SAFE_NO_PAD.encode(json.to_string())))
    }

    fn decode(&self) -> Result<HashMap<String, AttributeValue>> {
        let invalid = || Error::validation("page token", "not a token this server issued");
        let bytes = URL_SAFE_NO_PAD.decode(&self.0).map_err(|_| invalid())?;
        let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if !json.is_object() {
            return Err(invalid());
        }
        serde_dynamo::to_item(json).map_err(|_| invalid())
    }

    /// The start key, checked to lie in partition `pk`.
    pub(crate) fn start_key(&self, pk: &str) -> Result<HashMap<String, AttributeValue>> {
        let key = self.decode()?;
        match key.get(PK) {
            Some(AttributeValue::S(found)) if found == pk => Ok(key),
            _ => Err(Error::validation(
                "page token",
                "belongs to a different listing",
            )),
        }
    }
}

impl std::fmt::Display for PageToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Store {
    /// One page of a strongly consistent query on partition `pk`: `shape`
    /// adds the rest of the key condition and the order, `decode` turns an
    /// item into a value (or drops it, when it expired).
    pub(super) async fn query_page<T>(
        &self,
        pk: &str,
        shape: impl FnOnce(QueryFluentBuilder) -> QueryFluentBuilder,
        limit: u32,
        after: Option<&PageToken>,
        decode: impl Fn(HashMap<String, AttributeValue>, Timestamp) -> Result<Option<T>>,
    ) -> Result<Page<T>> {
        let start = after.map(|t| t.start_key(pk)).transpose()?;
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", string_value(pk))
            .consistent_read(true)
            .limit(limit.clamp(1, 1000) as i32)
            .set_exclusive_start_key(start);
        let out = shape(query)
            .send()
            .await
            .map_err(|e| store_error("Query", e))?;
        let now = Timestamp::now();
        let mut items = Vec::new();
        for item in out.items.unwrap_or_default() {
            items.extend(decode(item, now)?);
        }
        let next = out
            .last_evaluated_key
            .map(|k| PageToken::encode(&k))
            .transpose()?;
        Ok(Page { items, next })
    }
}
