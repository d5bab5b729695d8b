//! Conflicts left by the manual strategy: listed per tenant and resolved
//! through the API. Resolving writes the chosen content as a new version of
//! the record and closes the conflict, in one atomic write.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::push::expect_for;
use super::registry::CONFLICT_ENTITY;
use super::wire::{Mutation, Op, RecordView};
use super::{Caller, SyncService};
use crate::error::{Error, Result};
use crate::model::{EntityType, RecordId};
use crate::store::{Change, ChangeSet, Expect, PageToken, RecordWrite};

/// How a person settled a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Keep the record as the server has it.
    Server,
    /// Apply the client's mutation on top of the current record.
    Client,
    /// Write the given content.
    Custom,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    pub resolution: Resolution,
    #[serde(default)]
    pub data: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConflictView {
    pub id: String,
    #[serde(flatten)]
    pub detail: Map<String, Value>,
}

fn conflict_entity() -> Result<EntityType> {
    EntityType::parse(CONFLICT_ENTITY)
}

impl SyncService {
    /// Open conflicts, oldest first by id, a page at a time.
    pub async fn conflicts(
        &self,
        caller: &Caller,
        limit: u32,
        after: Option<&PageToken>,
    ) -> Result<(Vec<ConflictView>, Option<PageToken>)> {
        let page = self
            .store
            .list_records(&caller.tenant, &conflict_entity()?, limit, after)
            .await?;
        let open = page
            .items
            .into_iter()
            .filter(|r| r.data.get("status") == Some(&Value::String("open".into())))
            .filter(|r| conflict_entity_of(&r.data).is_some_and(|e| caller.access.can_read(&e)))
            .map(|r| ConflictView {
                id: r.id.to_string(),
                detail: r.data,
            })
            .collect();
        Ok((open, page.next))
    }

    pub async fn resolve_conflict(
        &self,
        caller: &Caller,
        conflict_id: &str,
        request: &ResolveRequest,
        who: &str,
    ) -> Result<Option<RecordView>> {
        let tenant = &caller.tenant;
        let entity = conflict_entity()?;
        let id = RecordId::parse(conflict_id)
            .map_err(|_| Error::NotFound(format!("conflict {conflict_id}")))?;
        let conflict = self
            .store
            .get_record(tenant, &entity, &id)
            .await?
            .filter(|c| !c.deleted)
            // A conflict over an entity type the caller cannot read does
            // not exist for it.
            .filter(|c| conflict_entity_of(&c.data).is_some_and(|e| caller.access.can_read(&e)))
            .ok_or_else(|| Error::NotFound(format!("conflict {conflict_id}")))?;
        if conflict.data.get("status") != Some(&Value::String("open".into())) {
            return Err(Error::Conflict(format!(
                "conflict {conflict_id} is already resolved"
            )));
        }
        let mutation: Mutation = serde_json::from_value(
            conflict
                .data
                .get("mutation")
                .cloned()
                .unwrap_or(Value::Null),
        )
        .map_err(|e| Error::Internal {
            context: "a stored conflict has no readable mutation".into(),
            source: Some(Box::new(e)),
        })?;
        caller.access.check_write(&mutation.entity)?;
        let current = self
            .store
            .get_record(tenant, &mutation.entity, &mutation.record_id)
            .await?;
        let live = current.as_ref().filter(|r| !r.deleted);
        let change = match request.resolution {
            Resolution::Server => None,
            Resolution::Client => Some(match mutation.op {
                Op::Upsert => Change::Put(mutation.data.clone().unwrap_or_default()),
                Op::Patch => Change::Merge(mutation.data.clone().unwrap_or_default()),
                Op::Delete => Change::Delete,
            }),
            Resolution::Custom => {
                Some(Change::Put(request.data.clone().ok_or_else(|| {
                    Error::validation("data", "a custom resolution needs data")
                })?))
            }
        };
        if let Some(Change::Put(data) | Change::Merge(data)) = &change {
            let spec = self.registry.get(&mutation.entity)?;
            let mut full = match &change {
                Some(Change::Merge(_)) => live.map(|r| r.data.clone()).unwrap_or_default(),
                _ => Map::new(),
            };
            full.extend(data.clone());
            spec.rules.check(&full)?;
            // A resolution is one more change of the record: it keeps to
            // the entity's lifecycle like a push does.
            if let Some(lifecycle) = &spec.lifecycle {
                lifecycle
                    .check(live.map(|r| &r.data), Some(&full))
                    .map_err(Error::Unprocessable)?;
            }
        }
        let mut resolved = conflict.data.clone();
        resolved.insert("status".into(), Value::String("resolved".into()));
        resolved.insert(
            "resolution".into(),
            serde_json::to_value(request.resolution).unwrap_or(Value::Null),
        );
        let mut writes = vec![RecordWrite {
            entity,
            id,
            change: Change::Put(resolved),
            expect: Expect::Version(conflict.version),
            source: None,
            origin: None,
            source_version: None,
        }];
        if let Some(change) = change {
            writes.push(RecordWrite {
                entity: mutation.entity.clone(),
                id: mutation.record_id.clone(),
                change,
                expect: expect_for(current.as_ref()),
                source: None,
                origin: None,
                source_version: None,
            });
        }
        let committed = self
            .store
            .commit(&ChangeSet {
                tenant: tenant.clone(),
                writes,
                client: None,
                once_only: Vec::new(),
                trail: Some(crate::store::Trail::new(
                    crate::store::TrailPath::ConflictResolution,
                    who,
                    conflict_id,
                )),
            })
            .await?;
        Ok(committed
            .iter()
            .find(|c| c.record.entity == mutation.entity)
            .map(|c| RecordView::from(&c.record))
            .or_else(|| current.as_ref().map(RecordView::from)))
    }
}

/// The entity type a stored conflict is about.
fn conflict_entity_of(data: &Map<String, Value>) -> Option<EntityType> {
    data.get("mutation")?
        .get("entity")?
        .as_str()
        .and_then(|e| EntityType::parse(e).ok())
}
