//! Keyed items with an optional expiry: webhook dedupe keys, idempotency
//! keys, leases, settings and per-source state. Every read checks expiry in
//! code, because DynamoDB deletes expired items up to days late, and every
//! write that must not race is conditional.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, Put};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::keys::{PK, SK};
use super::{Store, is_condition_failure, mapping_error, number_value, store_error, string_value};
use crate::error::{Error, Result};
use crate::model::{DedupeKey, Lease, Timestamp};

/// The key of a keyed item: a namespace (what kind of item) and an id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KvKey {
    namespace: &'static str,
    id: String,
}

impl KvKey {
    pub const DEDUPE: &'static str = "dedupe";
    pub const IDEMPOTENCY: &'static str = "idem";
    pub const LEASE: &'static str = "lease";
    pub const SETTINGS: &'static str = "settings";
    pub const SOURCE_STATE: &'static str = "source";
    /// A source's range digests on the store side.
    pub const DIGESTS: &'static str = "digests";
    /// Per destination: its cursor over the change feed, enabled, failures.
    pub const DESTINATION: &'static str = "destination";
    /// Per older client (tenant and device): the last cursor a pull gave it.
    pub const LEGACY_CURSOR: &'static str = "legacy-cursor";

    /// `namespace` is one of the constants above (or another fixed name
    /// without `#`); `id` is any text.
    pub fn new(namespace: &'static str, id: impl Into<String>) -> Self {
        debug_assert!(!namespace.contains('#'));
        Self {
            namespace,
            id: id.into(),
        }
    }

    pub fn dedupe(key: &DedupeKey) -> Self {
        Self::new(Self::DEDUPE, format!("{}#{}", key.source(), key.event_id()))
    }

    fn pk(&self) -> String {
        format!("X#{}#{}", self.namespace, self.id)
    }

    fn key(&self) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (PK.to_owned(), string_value(self.pk())),
            (SK.to_owned(), string_value("X")),
        ])
    }
}

/// A stored value with its revision (1 on insert, +1 on every replace), the
/// token for conditional replaces and deletes.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredValue<T> {
    pub value: T,
    pub revision: u64,
    pub expires_at: Option<Timestamp>,
}

/// The condition a keyed write must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvExpect {
    Any,
    /// Absent or expired.
    Absent,
    /// Live, at exactly this revision.
    Revision(u64),
}

#[derive(Debug, Serialize, Deserialize)]
struct KvItem<T> {
    pk: String,
    sk: String,
    value: T,
    revision: u64,
    /// Epoch seconds (the table's TTL attribute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
    /// Epoch milliseconds, for precise expiry checks in code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_ms: Option<i64>,
    /// Lease holder, kept top-level so conditions can name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
}

impl<T> KvItem<T> {
    fn live_at(&self, now: Timestamp) -> bool {
        self.expires_ms.is_none_or(|at| now.as_millis() < at)
    }
}

/// TTL attribute value for an item that expires `ttl` after `from`: rounded
/// up, so DynamoDB never removes it early.
pub(super) fn ttl_secs(from: Timestamp, ttl: Duration) -> i64 {
    let ms = from.plus(ttl).as_millis();
    ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) != 0)
}

const LIVE_OR_ABSENT: &str = "attribute_not_exists(#pk) OR #exp <= :now_ms";

impl Store {
    pub async fn kv_get<T: DeserializeOwned>(&self, key: &KvKey) -> Result<Option<StoredValue<T>>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key.key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let item: KvItem<T> =
            serde_dynamo::from_item(item).map_err(|e| mapping_error("keyed", e))?;
        if !item.live_at(Timestamp::now()) {
            return Ok(None);
        }
        Ok(Some(StoredValue {
            value: item.value,
            revision: item.revision,
            expires_at: item.expires_ms.map(Timestamp::from_millis),
        }))
    }

    /// Writes `value` under `expect`, expiring after `ttl` if given. Returns
    /// the new revision; a failed condition is [`Error::Conflict`].
    pub async fn kv_put<T: Serialize>(
        &self,
        key: &KvKey,
        value: &T,
        ttl: Option<Duration>,
        expect: KvExpect,
    ) -> Result<u64> {
        let now = Timestamp::now();
        let revision = match expect {
            KvExpect::Revision(r) => r + 1,
            KvExpect::Absent => 1,
            KvExpect::Any => match self.kv_get::<serde_json::Value>(key).await? {
                Some(found) => found.revision + 1,
                None => 1,
            },
        };
        let put = self.kv_item_put(key, value, ttl, None, revision, now, expect)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(put.item)
            .set_condition_expression(put.condition)
            .set_expression_attribute_names(put.names)
            .set_expression_attribute_values(put.values)
            .send()
            .await
            .map_err(|err| {
                if is_condition_failure(&err) {
                    Error::Conflict(format!("{} {} changed", key.namespace, key.id))
                } else {
                    store_error("PutItem", err)
                }
            })?;
        Ok(revision)
    }

    /// Inserts `value` unless a live item holds the key. Returns whether it
    /// was inserted.
    pub async fn kv_insert<T: Serialize>(
        &self,
        key: &KvKey,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<bool> {
        match self.kv_put(key, value, ttl, KvExpect::Absent).await {
            Ok(_) => Ok(true),
            Err(Error::Conflict(_)) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Deletes the key; with a revision, only if it is still at that
    /// revision (else [`Error::Conflict`]).
    pub async fn kv_delete(&self, key: &KvKey, revision: Option<u64>) -> Result<()> {
        let mut delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key.key()));
        if let Some(revision) = revision {
            delete = delete
                .condition_expression("#rev = :rev")
                .expression_attribute_names("#rev", "revision")
                .expression_attribute_values(":rev", number_value(revision));
        }
        delete.send().await.map_err(|err| {
            if is_condition_failure(&err) {
                Error::Conflict(format!("{} {} changed", key.namespace, key.id))
            } else {
                store_error("DeleteItem", err)
            }
        })?;
        Ok(())
    }

    /// Records that a provider's event was seen. True the first time within
    /// `retention`, false for every redelivery.
    pub async fn remember_event(&self, key: &DedupeKey, retention: Duration) -> Result<bool> {
        self.kv_insert(&KvKey::dedupe(key), &Timestamp::now(), Some(retention))
            .await
    }

    /// Takes the lease `name` for `owner` if it is free, expired, or already
    /// held by `owner` (which extends it). `None` while another holder has it.
    pub async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let key = KvKey::new(KvKey::LEASE, name);
        let now = Timestamp::now();
        let lease = Lease {
            name: name.to_owned(),
            owner: owner.to_owned(),
            expires_at: now.plus(ttl),
        };
        let put = self.kv_item_put(
            &key,
            &lease,
            Some(ttl),
            Some(owner),
            1,
            now,
            KvExpect::Absent,
        )?;
        let sent = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(put.item)
            .condition_expression(format!("{LIVE_OR_ABSENT} OR #owner = :owner"))
            .set_expression_attribute_names(put.names.map(|mut names| {
                names.insert("#owner".into(), "owner".into());
                names
            }))
            .set_expression_attribute_values(put.values.map(|mut values| {
                values.insert(":owner".into(), string_value(owner));
                values
            }))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(Some(lease)),
            Err(err) if is_condition_failure(&err) => Ok(None),
            Err(err) => Err(store_error("PutItem", err)),
        }
    }

    /// Removes the lease `name` whoever holds it: for a process that knows
    /// no one else can (a local run starting over the store its killed
    /// predecessor used).
    pub async fn drop_lease(&self, name: &str) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(KvKey::new(KvKey::LEASE, name).key()))
            .send()
            .await
            .map_err(|e| store_error("DeleteItem", e))?;
        Ok(())
    }

    /// Gives the lease up, only if `lease.owner` still holds it.
    pub async fn release_lease(&self, lease: &Lease) -> Result<()> {
        let key = KvKey::new(KvKey::LEASE, lease.name.as_str());
        let sent = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key.key()))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", string_value(lease.owner.as_str()))
            .send()
            .await;
        match sent {
            // Someone else holds it now (ours expired): nothing to release.
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(&err) => Ok(()),
            Err(err) => Err(store_error("DeleteItem", err)),
        }
    }

    /// The conditional put of a once-only key inside a transaction.
    pub(super) fn once_put(&self, key: &KvKey, ttl: Duration, now: Timestamp) -> Result<Put> {
        let put = self.kv_item_put(key, &now, Some(ttl), None, 1, now, KvExpect::Absent)?;
        Put::builder()
            .table_name(&self.table)
            .set_item(put.item)
            .set_condition_expression(put.condition)
            .set_expression_attribute_names(put.names)
            .set_expression_attribute_values(put.values)
            .build()
            .map_err(|e| Error::Internal {
                context: "building a once-only key".into(),
                source: Some(Box::new(e)),
            })
    }

    #[allow(clippy::too_many_arguments)]
    fn kv_item_put<T: Serialize>(
        &self,
        key: &KvKey,
        value: &T,
        ttl: Option<Duration>,
        owner: Option<&str>,
        revision: u64,
        now: Timestamp,
        expect: KvExpect,
    ) -> Result<PreparedPut> {
        let item = KvItem {
            pk: key.pk(),
            sk: "X".to_owned(),
            value,
            revision,
            expires_at: ttl.map(|ttl| ttl_secs(now, ttl)),
            expires_ms: ttl.map(|ttl| now.plus(ttl).as_millis()),
            owner: owner.map(str::to_owned),
        };
        let item = serde_dynamo::to_item(&item).map_err(|e| mapping_error("keyed", e))?;
        let (condition, names, values) = match expect {
            KvExpect::Any => (None, None, None),
            KvExpect::Absent => (
                Some(LIVE_OR_ABSENT.to_owned()),
                Some(HashMap::from([
                    ("#pk".to_owned(), PK.to_owned()),
                    ("#exp".to_owned(), "expires_ms".to_owned()),
                ])),
                Some(HashMap::from([(
                    ":now_ms".to_owned(),
                    number_value(now.as_millis()),
                )])),
            ),
            KvExpect::Revision(r) => (
                Some("#rev = :rev AND (attribute_not_exists(#exp) OR #exp > :now_ms)".to_owned()),
                Some(HashMap::from([
                    ("#rev".to_owned(), "revision".to_owned()),
                    ("#exp".to_owned(), "expires_ms".to_owned()),
                ])),
                Some(HashMap::from([
                    (":rev".to_owned(), number_value(r)),
                    (":now_ms".to_owned(), number_value(now.as_millis())),
                ])),
            ),
        };
        Ok(PreparedPut {
            item: Some(item),
            condition,
            names,
            values,
        })
    }
}

struct PreparedPut {
    item: Option<HashMap<String, AttributeValue>>,
    condition: Option<String>,
    names: Option<HashMap<String, String>>,
    values: Option<HashMap<String, AttributeValue>>,
}
