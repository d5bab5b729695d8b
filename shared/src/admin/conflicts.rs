//! Manual conflicts for operators: listed with the record as it stands now
//! beside the one the conflict met, and resolved with the sync API's rules
//! (entity rules, lifecycle), audited like every operator action.

use serde_json::{Value, json};

use super::AdminService;
use crate::auth::Principal;
use crate::error::Result;
use crate::model::{EntityType, RecordId};
use crate::store::PageToken;
use crate::sync::{Access, Caller, RecordView, ResolveRequest, SyncService};

/// An operator acting on its tenant's records: every entity type.
fn operator(principal: &Principal) -> Caller {
    Caller {
        tenant: principal.tenant.clone(),
        access: Access::full(),
        device: principal.subject.clone(),
    }
}

impl AdminService {
    /// Open conflicts of the operator's tenant, each with `current`.
    pub async fn conflicts(
        &self,
        sync: &SyncService,
        principal: &Principal,
        limit: u32,
        after: Option<&PageToken>,
    ) -> Result<(Vec<Value>, Option<PageToken>)> {
        let caller = operator(principal);
        let (conflicts, next) = sync.conflicts(&caller, limit.clamp(1, 200), after).await?;
        let mut listed = Vec::with_capacity(conflicts.len());
        for conflict in conflicts {
            let current = match (
                conflict.detail.get("entity").and_then(Value::as_str),
                conflict.detail.get("record_id").and_then(Value::as_str),
            ) {
                (Some(entity), Some(id)) => {
                    self.record(
                        &caller.tenant,
                        &EntityType::parse(entity)?,
                        &RecordId::parse(id)?,
                    )
                    .await?
                }
                _ => None,
            };
            let mut value = json!(conflict);
            value["current"] = json!(current);
            listed.push(value);
        }
        Ok((listed, next))
    }

    /// Resolves a conflict as the sync API does, and audits it.
    pub async fn resolve_conflict(
        &self,
        sync: &SyncService,
        principal: &Principal,
        id: &str,
        resolve: &ResolveRequest,
        who: &str,
    ) -> Result<Option<RecordView>> {
        let record = sync
            .resolve_conflict(&operator(principal), id, resolve, who)
            .await?;
        self.audit_action(
            json!({"action": "resolve_conflict", "conflict": id, "resolution": resolve.resolution}),
            who,
        )
        .await?;
        Ok(record)
    }
}
