//! The client sync protocol: exactly-once push with per-entity conflict
//! strategies, gap-free pull from an opaque cursor, stored conflicts, and
//! the shapes older clients speak (docs/PROTOCOL.md).

mod conflicts;
pub mod legacy;
mod push;
mod registry;
mod rules;
mod wire;

pub use conflicts::{ConflictView, Resolution, ResolveRequest};
pub use registry::{CONFLICT_ENTITY, EntityRegistry, EntitySpec, Strategy};
pub use wire::{
    ClientTime, Mutation, MutationResult, Op, PullRequest, PullResponse, PushRequest, PushResponse,
    RecordView, Status, rfc3339,
};

use crate::error::Result;
use crate::model::{Cursor, TenantId, Timestamp};
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct SyncService {
    store: Store,
    registry: EntityRegistry,
}

impl SyncService {
    pub fn new(store: Store, registry: EntityRegistry) -> Self {
        Self { store, registry }
    }

    pub fn registry(&self) -> &EntityRegistry {
        &self.registry
    }

    /// Changes after the request's cursor, in commit order. A cursor older
    /// than the tombstone retention gets a reset: a snapshot from the start.
    pub async fn pull(&self, tenant: &TenantId, request: &PullRequest) -> Result<PullResponse> {
        let entities = match &request.entities {
            Some(entities) => {
                for entity in entities {
                    self.registry.get(entity)?;
                }
                entities.clone()
            }
            None => self.registry.entity_types(),
        };
        let limit = request
            .limit
            .unwrap_or(self.registry.max_page_size)
            .clamp(1, self.registry.max_page_size);
        let mut cursor = request.cursor.unwrap_or(Cursor::START);
        let oldest = Timestamp::now().as_millis()
            - i64::try_from(self.store.tombstone_retention().as_millis()).unwrap_or(i64::MAX);
        let reset = cursor.seq().get() > 0 && cursor.issued_at().as_millis() < oldest;
        if reset {
            cursor = Cursor::START;
        }
        let changes = self
            .store
            .changes_since(tenant, &entities, cursor, limit)
            .await?;
        let last_mutation_id = match &request.client_id {
            Some(client) => Some(self.store.client_progress(tenant, client).await?),
            None => None,
        };
        Ok(PullResponse {
            changes: changes.records.iter().map(RecordView::from).collect(),
            cursor: changes.cursor,
            has_more: changes.has_more,
            reset,
            last_mutation_id,
        })
    }
}
