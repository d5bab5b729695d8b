//! Key layout of the single table. Tenant, entity, source and client ids
//! cannot contain `#` (see `model::ids`), so these keys never collide.

use crate::model::{ClientId, EntityType, RecordId, TenantId};

pub const PK: &str = "pk";
pub const SK: &str = "sk";
/// Sort key of the `by_ord` local secondary index: a queued message's
/// visible-at time (records carry their feed number as `seq`, outside any
/// index: `feed.rs`).
pub const ORD: &str = "ord";
/// Epoch seconds; the table's TTL attribute. Expiry is also checked in code
/// because DynamoDB deletes expired items late.
pub const EXPIRES_AT: &str = "expires_at";
pub const BY_ORD: &str = "by_ord";

pub fn records_pk(tenant: &TenantId, entity: &EntityType) -> String {
    format!("T#{tenant}#E#{entity}")
}

pub fn record_sk(id: &RecordId) -> String {
    format!("R#{id}")
}

pub fn tenant_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}")
}

pub const COUNTER_SK: &str = "SEQ";

pub fn client_sk(client: &ClientId) -> String {
    format!("CLIENT#{client}")
}
