//! The tenant's bookkeeping items: the change counter every commit bumps,
//! and each client's progress (the last mutation id processed).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

use super::keys::{self, COUNTER_SK, PK, SK};
use super::{
    ClientProgress, Store, build_error, mapping_error, number_value, store_error, string_value,
};
use crate::error::Result;
use crate::model::{ClientId, Seq, TenantId, Timestamp};

/// The tenant's counter item: the last allocated sequence number. Every
/// change takes its numbers in the transaction that writes it, so every
/// number up to `value` is committed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Counter {
    #[serde(default)]
    pub value: u64,
}

impl Counter {
    /// The condition that the counter still holds what was read.
    pub(super) fn guard(&self) -> CounterGuard {
        if self.value == 0 {
            CounterGuard {
                expression: "attribute_not_exists(#pk)",
                name: ("#pk", PK),
                old: None,
            }
        } else {
            CounterGuard {
                expression: "#value = :old",
                name: ("#value", "value"),
                old: Some(number_value(self.value)),
            }
        }
    }
}

pub(super) struct CounterGuard {
    expression: &'static str,
    name: (&'static str, &'static str),
    old: Option<AttributeValue>,
}

impl CounterGuard {
    /// Expression names of `SET #value = :new` under the guard.
    fn names(&self) -> HashMap<String, String> {
        [self.name, ("#value", "value")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Expression values of `SET #value = :new` under the guard.
    fn values(&self, new_value: u64) -> HashMap<String, AttributeValue> {
        std::iter::once((":new".to_owned(), number_value(new_value)))
            .chain(self.old.clone().map(|old| (":old".to_owned(), old)))
            .collect()
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ClientItem {
    pk: String,
    sk: String,
    pub last_mutation_id: u64,
    updated_at: Timestamp,
}

pub(super) fn counter_key(tenant: &TenantId) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_owned(), string_value(keys::tenant_pk(tenant))),
        (SK.to_owned(), string_value(COUNTER_SK)),
    ])
}

pub(super) fn client_key(tenant: &TenantId, client: &ClientId) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_owned(), string_value(keys::tenant_pk(tenant))),
        (SK.to_owned(), string_value(keys::client_sk(client))),
    ])
}

impl Store {
    pub(super) async fn read_counter(&self, tenant: &TenantId) -> Result<Counter> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(counter_key(tenant)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        match out.item {
            Some(item) => serde_dynamo::from_item(item).map_err(|e| mapping_error("counter", e)),
            None => Ok(Counter::default()),
        }
    }

    /// The last mutation id processed for `client` (0 if none).
    pub async fn client_progress(&self, tenant: &TenantId, client: &ClientId) -> Result<u64> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(client_key(tenant, client)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        match out.item {
            Some(item) => serde_dynamo::from_item::<_, ClientItem>(item)
                .map(|c| c.last_mutation_id)
                .map_err(|e| mapping_error("client progress", e)),
            None => Ok(0),
        }
    }

    /// The newest allocated change sequence number of a tenant.
    pub async fn latest_seq(&self, tenant: &TenantId) -> Result<Seq> {
        Ok(Seq::new(self.read_counter(tenant).await?.value))
    }

    pub(super) fn counter_bump(
        &self,
        tenant: &TenantId,
        counter: &Counter,
        new_value: u64,
    ) -> Result<TransactWriteItem> {
        let guard = counter.guard();
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(counter_key(tenant)))
            .update_expression("SET #value = :new")
            .condition_expression(guard.expression)
            .set_expression_attribute_names(Some(guard.names()))
            .set_expression_attribute_values(Some(guard.values(new_value)))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    pub(super) fn client_put(
        &self,
        tenant: &TenantId,
        progress: &ClientProgress,
        now: Timestamp,
    ) -> Result<TransactWriteItem> {
        let item = ClientItem {
            pk: keys::tenant_pk(tenant),
            sk: keys::client_sk(&progress.client),
            last_mutation_id: progress.last_mutation_id,
            updated_at: now,
        };
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(
                serde_dynamo::to_item(&item).map_err(|e| mapping_error("client progress", e))?,
            ))
            .condition_expression("attribute_not_exists(#pk) OR #last = :expected")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#last", "last_mutation_id")
            .expression_attribute_values(":expected", number_value(progress.expected))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}
