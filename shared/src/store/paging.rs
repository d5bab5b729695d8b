//! Opaque page tokens: the last evaluated key, encoded, and checked to
//! belong to the partition it is used on (a token from one tenant's listing
//! is rejected on another's).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;

use futures_util::future::try_join_all;

use super::keys::{self, PK, RECORD_SHARDS, SK};
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

    /// The sort key to continue after, checked to belong to listing `key`.
    fn start_sk(&self, key: &str) -> Result<String> {
        match self.start_key(key)?.remove(SK) {
            Some(AttributeValue::S(sk)) => Ok(sk),
            _ => Err(Error::validation(
                "page token",
                "not a token this server issued",
            )),
        }
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
    /// A strongly consistent query of at most `limit` items of partition
    /// `pk` (`#pk = :pk` in the key condition), from after `start`.
    fn partition_query(
        &self,
        pk: &str,
        limit: u32,
        start: Option<HashMap<String, AttributeValue>>,
    ) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", string_value(pk))
            .consistent_read(true)
            .limit(limit as i32)
            .set_exclusive_start_key(start)
    }

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
        let query = self.partition_query(pk, limit.clamp(1, 1000), start);
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

/// What one shard's query of a merged page returned.
struct ShardPage {
    items: Vec<(String, HashMap<String, AttributeValue>)>,
    /// The sort key the shard's query stopped at, when more may follow.
    stopped_at: Option<String>,
}

impl Store {
    /// One page of a strongly consistent query over every shard of the
    /// sharded collection `base` (`keys::shard_key`), merged in sort-key
    /// order: the shards are read at once, each for a share of `limit`
    /// (and a margin), and the page ends at the lowest key a shard with
    /// more to read stopped at, so no item below it is left out. What a
    /// shard read past that key is read again by the next page: about a
    /// third more read units than one partition's query would take for
    /// long listings (`Store::record_heads_unordered` reads none twice,
    /// for what needs no order).
    pub(super) async fn query_shards<T>(
        &self,
        base: &str,
        shape: impl Fn(QueryFluentBuilder) -> QueryFluentBuilder,
        limit: u32,
        after: Option<&PageToken>,
        decode: impl Fn(HashMap<String, AttributeValue>, Timestamp) -> Result<Option<T>>,
    ) -> Result<Page<T>> {
        let start = after.map(|t| t.start_sk(base)).transpose()?;
        // Every sharded item's key starts so; a start key outside the
        // query's range would make DynamoDB refuse the query.
        if start.as_ref().is_some_and(|sk| !sk.starts_with("R#")) {
            return Err(Error::validation(
                "page token",
                "not a token this server issued",
            ));
        }
        let limit = limit.clamp(1, 1000);
        let share = ((limit + limit / 4).div_ceil(RECORD_SHARDS) + 1).min(limit);
        let reads = (0..RECORD_SHARDS).map(|shard| {
            let pk = keys::shard_key(base, shard);
            let start = start.as_ref().map(|sk| {
                HashMap::from([
                    (PK.to_owned(), string_value(pk.as_str())),
                    (SK.to_owned(), string_value(sk.as_str())),
                ])
            });
            let query = shape(self.partition_query(&pk, share, start));
            async move {
                let out = query.send().await.map_err(|e| store_error("Query", e))?;
                let items = out
                    .items
                    .unwrap_or_default()
                    .into_iter()
                    .map(|item| Ok((sort_key(&item)?, item)))
                    .collect::<Result<_>>()?;
                let stopped_at = out.last_evaluated_key.as_ref().map(sort_key).transpose()?;
                Ok::<_, Error>(ShardPage { items, stopped_at })
            }
        });
        let pages = try_join_all(reads).await?;
        let mut end = pages.iter().filter_map(|p| p.stopped_at.clone()).min();
        let mut merged: Vec<_> = pages
            .into_iter()
            .flat_map(|p| p.items)
            .filter(|(sk, _)| end.as_ref().is_none_or(|end| sk <= end))
            .collect();
        merged.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if merged.len() > limit as usize {
            merged.truncate(limit as usize);
            end = merged.last().map(|(sk, _)| sk.clone());
        }
        let now = Timestamp::now();
        let mut items = Vec::new();
        for (_, item) in merged {
            items.extend(decode(item, now)?);
        }
        let next = end
            .map(|sk| {
                PageToken::encode(&HashMap::from([
                    (PK.to_owned(), string_value(base)),
                    (SK.to_owned(), string_value(sk)),
                ]))
            })
            .transpose()?;
        Ok(Page { items, next })
    }
}

/// The sort key of an item a merged query returned (its projection must
/// name it).
fn sort_key(item: &HashMap<String, AttributeValue>) -> Result<String> {
    match item.get(SK) {
        Some(AttributeValue::S(sk)) => Ok(sk.clone()),
        _ => Err(Error::internal(
            "a merged query's item without its sort key",
        )),
    }
}
