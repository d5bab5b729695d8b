//! The client sync protocol: exactly-once push with per-entity conflict
//! strategies, gap-free pull from an opaque cursor, stored conflicts, and
//! the shapes older clients speak (docs/PROTOCOL.md).

mod access;
mod conflicts;
pub mod legacy;
mod lifecycle;
mod push;
mod registry;
mod rules;
mod slots;
mod wait;
mod wire;

pub use access::{Access, Caller};
pub use conflicts::{ConflictView, Resolution, ResolveRequest};
pub use lifecycle::Lifecycle;
pub use registry::{CONFLICT_ENTITY, EntityRegistry, EntitySpec, Strategy};
pub use slots::{Slot, SlotQuery};
pub use wire::{
    ClientTime, MAX_WAIT_SECS, Mutation, MutationResult, Op, PullRequest, PullResponse,
    PushRequest, PushResponse, RecordView, Status, rfc3339,
};

use crate::error::Result;
use crate::model::{Cursor, EntityType, Timestamp};
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

    /// One record as it stands (a tombstone says `deleted`), of an entity
    /// type the caller may read; absent: 404.
    pub async fn record(
        &self,
        caller: &Caller,
        entity: &EntityType,
        id: &crate::model::RecordId,
    ) -> Result<RecordView> {
        if !caller.access.can_read(entity) {
            return Err(Access::hidden(entity));
        }
        self.registry.get(entity)?;
        self.store
            .get_record(&caller.tenant, entity, id)
            .await?
            .map(|r| RecordView::from(&r))
            .ok_or_else(|| crate::error::Error::NotFound(format!("{entity} {id}")))
    }

    /// The entity types a request names (all the caller may read when it
    /// names none), each registered and readable.
    fn readable(
        &self,
        caller: &Caller,
        named: Option<&Vec<EntityType>>,
    ) -> Result<Vec<EntityType>> {
        match named {
            Some(entities) => {
                for entity in entities {
                    if !caller.access.can_read(entity) {
                        return Err(Access::hidden(entity));
                    }
                    self.registry.get(entity)?;
                }
                Ok(entities.clone())
            }
            None => Ok(self
                .registry
                .entity_types()
                .into_iter()
                .filter(|e| caller.access.can_read(e))
                .collect()),
        }
    }

    /// Changes after the request's cursor, in commit order. A cursor older
    /// than the tombstone retention gets a reset: a snapshot from the start.
    /// With `wait`, an empty answer is held until the feed passes the
    /// cursor or the wait ends.
    ///
    /// Read-your-writes: the client's progress is read before the feed, and
    /// reported only on a page that ends the feed with nothing held past it
    /// (a bulk write still writing), so every mutation up to
    /// the `last_mutation_id` a pull reports is in the state that pull
    /// brings the client to (docs/PROTOCOL.md, "Read your writes").
    pub async fn pull(&self, caller: &Caller, request: &PullRequest) -> Result<PullResponse> {
        let tenant = &caller.tenant;
        let entities = self.readable(caller, request.entities.as_ref())?;
        let wait = request.wait_duration()?;
        let until = tokio::time::Instant::now() + wait;
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
        loop {
            let progress = match &request.client_id {
                Some(client) => Some(self.store.client_progress(tenant, client).await?),
                None => None,
            };
            let changes = match entities.is_empty() {
                // Nothing readable: an empty feed that stays where it is.
                true => crate::store::Changes {
                    records: Vec::new(),
                    cursor: Cursor::at(cursor.seq()),
                    has_more: false,
                    settled: true,
                },
                false => {
                    self.store
                        .changes_for_client(tenant, &entities, cursor, limit)
                        .await?
                }
            };
            let waiting = changes.records.is_empty()
                && !changes.has_more
                && !reset
                && !entities.is_empty()
                && tokio::time::Instant::now() < until;
            if waiting && wait::past(&self.store, tenant, changes.cursor.seq(), until).await? {
                // The feed moved: read it again (an entity type this pull
                // does not read may have moved it; then wait on from there).
                cursor = changes.cursor;
                continue;
            }
            return Ok(PullResponse {
                changes: changes.records.iter().map(RecordView::from).collect(),
                cursor: changes.cursor,
                has_more: changes.has_more,
                reset,
                last_mutation_id: progress.filter(|_| !changes.has_more && changes.settled),
            });
        }
    }
}
