//! Operational events as records: a finished or failed sync run and a
//! discrepancy report are written to the reserved entity type `_event` of
//! the source's tenant, so a destination that takes `_event` (a webhook
//! endpoint, say) gets them through the same feed, ledger and retries as
//! any change. Clients cannot pull `_event`: it is not in the registry.

use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::model::{EntityType, RecordId, SourceId, TenantId};
use crate::store::{Change, Expect, RecordWrite, Store};

/// The reserved entity type of operational events.
pub const EVENT_ENTITY: &str = "_event";

/// Writes event `id` of `kind` (`sync.run.succeeded`, `discrepancy.report`)
/// with `body`'s fields. A failure is logged, not returned: the run or
/// report it tells of is already stored.
pub async fn publish(
    store: &Store,
    tenant: &TenantId,
    source: &SourceId,
    id: &str,
    kind: &str,
    body: &impl Serialize,
) {
    if let Err(err) = try_publish(store, tenant, source, id, kind, body).await {
        tracing::warn!(%source, id, kind, error = %err.chain(), "could not publish the event");
    }
}

async fn try_publish(
    store: &Store,
    tenant: &TenantId,
    source: &SourceId,
    id: &str,
    kind: &str,
    body: &impl Serialize,
) -> Result<()> {
    let mut data = match serde_json::to_value(body)
        .map_err(|e| crate::Error::internal(format!("event body: {e}")))?
    {
        Value::Object(map) => map,
        other => [("body".to_owned(), other)].into_iter().collect(),
    };
    data.insert("type".into(), Value::String(kind.to_owned()));
    store
        .put_record(
            tenant,
            RecordWrite {
                entity: EntityType::parse(EVENT_ENTITY)?,
                id: RecordId::parse(id)?,
                change: Change::Put(data),
                expect: Expect::Any,
                source: Some(source.clone()),
                origin: None,
                source_version: None,
            },
        )
        .await
        .map(|_| ())
}
