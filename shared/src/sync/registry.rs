//! The entity types clients may sync, each with its conflict strategy,
//! content rules and size limit, plus the push limits; read from a JSON
//! document (`SYNCLINE_ENTITIES` / `SYNCLINE_ENTITIES_FILE`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::EntityType;
use crate::validation::Rules;

/// What happens when a client's change was based on an older version than
/// the one stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The stored record stays; the client's change is dropped.
    ServerWins,
    /// The client's change is applied on top.
    ClientWins,
    /// The later write by the writers' clocks (client timestamp or hybrid
    /// logical clock; ties broken by client id) wins.
    LastWriteWins,
    /// Field by field against the base the client started from: fields only
    /// the client changed take the client's value, fields only the server
    /// changed keep the server's, fields both changed keep the server's.
    Merge,
    /// Stored as a conflict for a person to resolve through the API.
    Manual,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntitySpec {
    pub conflict: Strategy,
    #[serde(default)]
    pub rules: Rules,
    /// Largest record content (JSON bytes); the document's default if absent.
    #[serde(default)]
    pub max_record_bytes: Option<usize>,
    /// No two live records with the same resource (a crew) may overlap in
    /// time; a mutation that would double-book is rejected.
    #[serde(default)]
    pub no_overlap: Option<crate::connectors::NoOverlap>,
    /// A status field that moves only along declared transitions.
    #[serde(default)]
    pub lifecycle: Option<super::Lifecycle>,
}

fn default_max_record_bytes() -> usize {
    64 * 1024
}

fn default_max_mutations() -> usize {
    500
}

fn default_max_body_bytes() -> usize {
    1024 * 1024
}

fn default_page_limit() -> u32 {
    500
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryDocument {
    #[serde(default = "default_max_record_bytes")]
    max_record_bytes: usize,
    #[serde(default = "default_max_mutations")]
    max_mutations_per_push: usize,
    #[serde(default = "default_max_body_bytes")]
    max_body_bytes: usize,
    #[serde(default = "default_page_limit")]
    max_page_size: u32,
    entities: BTreeMap<String, EntitySpec>,
}

#[derive(Debug, Clone)]
pub struct EntityRegistry {
    entities: BTreeMap<EntityType, EntitySpec>,
    pub max_record_bytes: usize,
    pub max_mutations_per_push: usize,
    pub max_body_bytes: usize,
    pub max_page_size: u32,
}

/// Entity types starting with `_` are syncline's own (stored conflicts).
pub const CONFLICT_ENTITY: &str = "_conflict";

/// One record per no-overlap entity, written with every push that books
/// it, so concurrent bookings of one entity serialize.
pub const GUARD_ENTITY: &str = "_guard";

impl EntityRegistry {
    pub fn parse(json: &str) -> Result<Self> {
        let document: RegistryDocument = serde_json::from_str(json)
            .map_err(|e| Error::Config(format!("entity registry: {e}")))?;
        let mut entities = BTreeMap::new();
        for (name, spec) in document.entities {
            let entity = EntityType::parse(&name)
                .map_err(|e| Error::Config(format!("entity registry: {e}")))?;
            if name.starts_with('_') {
                return Err(Error::Config(format!(
                    "entity registry: {name}: names starting with '_' are reserved"
                )));
            }
            if let Some(lifecycle) = &spec.lifecycle {
                lifecycle.validate(&name)?;
            }
            entities.insert(entity, spec);
        }
        Ok(Self {
            entities,
            max_record_bytes: document.max_record_bytes,
            max_mutations_per_push: document.max_mutations_per_push,
            max_body_bytes: document.max_body_bytes,
            max_page_size: document.max_page_size.max(1),
        })
    }

    /// The spec of `entity`; an unregistered type is the caller's error.
    pub fn get(&self, entity: &EntityType) -> Result<&EntitySpec> {
        self.entities
            .get(entity)
            .ok_or_else(|| Error::validation("entity", format!("unknown entity type {entity}")))
    }

    pub fn entity_types(&self) -> Vec<EntityType> {
        self.entities.keys().cloned().collect()
    }

    pub fn max_record_bytes(&self, spec: &EntitySpec) -> usize {
        spec.max_record_bytes.unwrap_or(self.max_record_bytes)
    }
}
