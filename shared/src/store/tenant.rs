//! The tenant's bookkeeping items: the change counter every commit bumps
//! (with the blocks of numbers bulk writes hold while they write), and
//! each client's progress (the last mutation id processed).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

use super::keys::{self, COUNTER_SK, PK, SK};
use super::{
    ClientProgress, Store, build_error, mapping_error, number_value, store_error, string_value,
};
use crate::error::Result;
use crate::model::{ClientId, Seq, TenantId, Timestamp};

/// The tenant's counter item: the last allocated sequence number, and the
/// blocks held by bulk writes still writing. A transaction takes its
/// numbers in the write that commits them; a bulk chunk holds a block
/// ([`Store::hold_block`]) while its records go out one by one, so the feed
/// is complete up to [`Counter::horizon`], not always up to `value`.
#[derive(Debug, Clone, Default)]
pub(super) struct Counter {
    pub value: u64,
    /// Live holds: the number before each held block, keyed by attribute.
    holds: Vec<Hold>,
}

/// A block of sequence numbers a bulk write holds: `after + 1 ..` are being
/// written until `deadline_ms`, past which nothing of it is written and
/// readers pass it.
#[derive(Debug, Clone)]
struct Hold {
    attribute: String,
    after: u64,
    deadline_ms: i64,
}

/// Counter attributes that are holds start with this, then the deadline
/// (epoch ms) and a random suffix: `h_<deadline>_<suffix>`.
const HOLD_PREFIX: &str = "h_";

/// A block of sequence numbers taken by [`Store::hold_block`].
#[derive(Debug, Clone)]
pub(super) struct HeldBlock {
    pub first: u64,
    pub attribute: String,
    pub deadline_ms: i64,
    /// Holds past their deadline found on the counter, removed with this one.
    pub expired: Vec<String>,
}

impl Counter {
    pub(super) fn from_item(item: &HashMap<String, AttributeValue>) -> Self {
        let number = |v: &AttributeValue| v.as_n().ok().and_then(|n| n.parse::<u64>().ok());
        let mut counter = Counter {
            value: item.get("value").and_then(number).unwrap_or(0),
            holds: Vec::new(),
        };
        for (name, value) in item {
            let Some(rest) = name.strip_prefix(HOLD_PREFIX) else {
                continue;
            };
            let deadline_ms = rest.split('_').next().and_then(|d| d.parse::<i64>().ok());
            if let (Some(deadline_ms), Some(after)) = (deadline_ms, number(value)) {
                counter.holds.push(Hold {
                    attribute: name.clone(),
                    after,
                    deadline_ms,
                });
            }
        }
        counter
    }

    /// The number the feed is complete up to at `now`: the counter's value,
    /// or just before the oldest block still held.
    pub(super) fn horizon(&self, now: Timestamp) -> u64 {
        self.holds
            .iter()
            .filter(|h| h.deadline_ms > now.as_millis())
            .map(|h| h.after)
            .fold(self.value, u64::min)
    }

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
        Ok(out
            .item
            .as_ref()
            .map(Counter::from_item)
            .unwrap_or_default())
    }

    /// Takes `n` sequence numbers for a bulk write and holds them until
    /// `hold` has passed: readers stop before the block until it is
    /// released ([`Store::release_block`]) or its deadline passes, so a
    /// record written under one of its numbers never lands behind a cursor
    /// already handed out. One UpdateItem; concurrent holds do not conflict.
    pub(super) async fn hold_block(
        &self,
        tenant: &TenantId,
        n: u64,
        hold: std::time::Duration,
    ) -> Result<HeldBlock> {
        let now = Timestamp::now();
        let deadline_ms = now.as_millis() + i64::try_from(hold.as_millis()).unwrap_or(i64::MAX);
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let attribute = format!("{HOLD_PREFIX}{deadline_ms}_{suffix}");
        // Both operands read the item as it was: the hold keeps the value
        // before the block, the counter moves past it.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(counter_key(tenant)))
            .update_expression(
                "SET #value = if_not_exists(#value, :zero) + :n, #hold = if_not_exists(#value, :zero)",
            )
            .expression_attribute_names("#value", "value")
            .expression_attribute_names("#hold", &attribute)
            .expression_attribute_values(":zero", number_value(0))
            .expression_attribute_values(":n", number_value(n))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| store_error("UpdateItem", e))?;
        let counter = Counter::from_item(&out.attributes.unwrap_or_default());
        let Some(mine) = counter.holds.iter().find(|h| h.attribute == attribute) else {
            return Err(crate::Error::internal("the counter did not keep the hold"));
        };
        Ok(HeldBlock {
            first: mine.after + 1,
            deadline_ms,
            expired: counter
                .holds
                .iter()
                .filter(|h| h.deadline_ms <= now.as_millis())
                .map(|h| h.attribute.clone())
                .collect(),
            attribute,
        })
    }

    /// Ends a hold (and removes the expired ones it found).
    pub(super) async fn end_hold(&self, tenant: &TenantId, block: &HeldBlock) -> Result<()> {
        let names: Vec<&str> = std::iter::once(&block.attribute)
            .chain(&block.expired)
            .map(String::as_str)
            .collect();
        self.remove_holds(counter_key(tenant), &names).await
    }

    /// Removes the hold attributes `names` from the counter item at `key`.
    async fn remove_holds(
        &self,
        key: HashMap<String, AttributeValue>,
        names: &[&str],
    ) -> Result<()> {
        let placeholders: Vec<String> = (0..names.len()).map(|i| format!("#h{i}")).collect();
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .set_expression_attribute_names(Some(
                placeholders
                    .iter()
                    .cloned()
                    .zip(names.iter().map(|n| (*n).to_owned()))
                    .collect(),
            ))
            .update_expression(format!("REMOVE {}", placeholders.join(", ")))
            .send()
            .await
            .map_err(|e| store_error("UpdateItem", e))?;
        Ok(())
    }

    /// Ends every block a tenant's counter item holds; how many it held.
    pub(super) async fn drop_counter_holds(
        &self,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<usize> {
        let holds = Counter::from_item(item).holds;
        let (Some(pk), false) = (item.get(PK), holds.is_empty()) else {
            return Ok(0);
        };
        let key = HashMap::from([
            (PK.to_owned(), pk.clone()),
            (SK.to_owned(), string_value(COUNTER_SK)),
        ]);
        let names: Vec<&str> = holds.iter().map(|h| h.attribute.as_str()).collect();
        self.remove_holds(key, &names).await?;
        Ok(holds.len())
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

    /// The sequence number a tenant's feed is complete up to: every change
    /// numbered up to it is readable, and nothing will be written under a
    /// number at or below it. What readers and cursors go by.
    pub async fn latest_seq(&self, tenant: &TenantId) -> Result<Seq> {
        Ok(Seq::new(
            self.read_counter(tenant).await?.horizon(Timestamp::now()),
        ))
    }

    /// The newest sequence number taken, committed or still being written
    /// (at or past [`Store::latest_seq`]): a write checkpoint covering every
    /// change committed so far.
    pub async fn allocated_seq(&self, tenant: &TenantId) -> Result<Seq> {
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
