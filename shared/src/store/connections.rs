//! Real-time connections: one item per open WebSocket under its tenant
//! (`C#<tenant>` / `WS#<id>`, listed when a tenant's commit is poked) and a
//! lookup by connection id (`WS#<id>` / `WS`, for `$disconnect`, which
//! names only the connection). Both expire with the connection (TTL, and
//! checked in code: DynamoDB deletes expired items late). Neither key
//! starts with `T#`, so connecting and leaving do not wake the delivery
//! function through the table's stream.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};

use super::keys::{PK, SK};
use super::{Store, build_error, mapping_error, store_error, string_value};
use crate::error::{Error, Result};
use crate::model::{TenantId, Timestamp};

const PREFIX: &str = "WS#";
const LOOKUP_SK: &str = "WS";

/// One open connection of a tenant's client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub id: String,
    pub tenant: TenantId,
    /// The entity types its token may read; `None`: all of them.
    pub reads: Option<Vec<String>>,
    pub connected_at: Timestamp,
    pub expires_at: Timestamp,
}

/// `expires_at` is the table's TTL attribute (epoch seconds).
#[derive(Debug, Serialize, Deserialize)]
struct ConnectionItem {
    pk: String,
    sk: String,
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reads: Option<Vec<String>>,
    connected_at: i64,
    expires_at: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct LookupItem {
    pk: String,
    sk: String,
    tenant: String,
    expires_at: i64,
}

/// A connection id as API Gateway issues it (`L0SM9cOFvHcCIhw=`) or the
/// local run does (a UUID): printable, no `#`.
fn connections_pk(tenant: &TenantId) -> String {
    format!("C#{tenant}")
}

fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic() && b != b'#') {
        return Err(Error::validation("connection", "not a connection id"));
    }
    Ok(())
}

fn key(pk: String, sk: String) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_owned(), string_value(pk)),
        (SK.to_owned(), string_value(sk)),
    ])
}

fn tenant_key(tenant: &TenantId, id: &str) -> HashMap<String, AttributeValue> {
    key(connections_pk(tenant), format!("{PREFIX}{id}"))
}

fn lookup_key(id: &str) -> HashMap<String, AttributeValue> {
    key(format!("{PREFIX}{id}"), LOOKUP_SK.to_owned())
}

impl Store {
    /// Records an open connection (both items, in one transaction).
    pub async fn put_connection(&self, connection: &Connection) -> Result<()> {
        check_id(&connection.id)?;
        let item = ConnectionItem {
            pk: connections_pk(&connection.tenant),
            sk: format!("{PREFIX}{}", connection.id),
            id: connection.id.clone(),
            reads: connection.reads.clone(),
            connected_at: connection.connected_at.as_millis(),
            expires_at: connection.expires_at.as_secs(),
        };
        let lookup = LookupItem {
            pk: format!("{PREFIX}{}", connection.id),
            sk: LOOKUP_SK.to_owned(),
            tenant: connection.tenant.to_string(),
            expires_at: connection.expires_at.as_secs(),
        };
        let put = |item| -> Result<TransactWriteItem> {
            Ok(TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .build()
                        .map_err(build_error)?,
                )
                .build())
        };
        self.client
            .transact_write_items()
            .transact_items(put(
                serde_dynamo::to_item(item).map_err(|e| mapping_error("connection", e))?
            )?)
            .transact_items(put(
                serde_dynamo::to_item(lookup).map_err(|e| mapping_error("connection", e))?
            )?)
            .send()
            .await
            .map_err(|e| store_error("TransactWriteItems", e))?;
        Ok(())
    }

    /// Forgets a connection of `tenant` (both items; absent ones are fine).
    pub async fn delete_connection(&self, tenant: &TenantId, id: &str) -> Result<()> {
        check_id(id)?;
        let delete = |key| -> Result<TransactWriteItem> {
            Ok(TransactWriteItem::builder()
                .delete(
                    Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(key))
                        .build()
                        .map_err(build_error)?,
                )
                .build())
        };
        self.client
            .transact_write_items()
            .transact_items(delete(tenant_key(tenant, id))?)
            .transact_items(delete(lookup_key(id))?)
            .send()
            .await
            .map_err(|e| store_error("TransactWriteItems", e))?;
        Ok(())
    }

    /// Forgets a connection known only by its id (`$disconnect`); the
    /// tenant it belonged to, if it was known.
    pub async fn drop_connection(&self, id: &str) -> Result<Option<TenantId>> {
        check_id(id)?;
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(lookup_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let lookup: LookupItem =
            serde_dynamo::from_item(item).map_err(|e| mapping_error("connection", e))?;
        let tenant = TenantId::parse(&lookup.tenant)?;
        self.delete_connection(&tenant, id).await?;
        Ok(Some(tenant))
    }

    /// The tenant's connections, expired ones included (the caller drops
    /// those: it can also close them).
    pub async fn connections(&self, tenant: &TenantId) -> Result<Vec<Connection>> {
        let mut connections = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", string_value(connections_pk(tenant)))
                .expression_attribute_values(":prefix", string_value(PREFIX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| store_error("Query", e))?;
            for item in out.items.unwrap_or_default() {
                let item: ConnectionItem =
                    serde_dynamo::from_item(item).map_err(|e| mapping_error("connection", e))?;
                connections.push(Connection {
                    id: item.id,
                    tenant: tenant.clone(),
                    reads: item.reads,
                    connected_at: Timestamp::from_millis(item.connected_at),
                    expires_at: Timestamp::from_millis(item.expires_at.saturating_mul(1000)),
                });
            }
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(connections),
            }
        }
    }
}
