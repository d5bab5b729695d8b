//! A destination as configured, and its place in the feed (kept in the
//! store): cursor, enabled, failures in a row, the replay bound; what the
//! admin API reads and changes.

use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

use super::config::{DestinationSpec, KindSpec};
use super::engine::{DeliveryEngine, REDIS_IN_FLIGHT};
use super::target::Target;
use crate::error::{Error, Result};
use crate::model::{Cursor, EntityType, Seq};
use crate::store::{KvExpect, KvKey};

/// One configured destination.
pub struct Destination {
    pub name: String,
    pub spec: DestinationSpec,
    pub(super) target: Arc<dyn Target>,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Destination {
    /// Whether the destination takes changes of `entity`.
    pub fn takes(&self, entity: &EntityType) -> bool {
        self.spec.entities.contains(entity)
    }

    pub fn kind(&self) -> &'static str {
        match self.spec.kind {
            KindSpec::Redis(_) => "redis",
            KindSpec::Webhook(_) => "webhook",
            KindSpec::Http(_) => "http",
        }
    }

    /// Changes applied at once: a cache takes many; an API or endpoint as
    /// many as it is configured for (one keeps the feed's order).
    pub(super) fn in_flight(&self) -> usize {
        match &self.spec.kind {
            KindSpec::Redis(_) => REDIS_IN_FLIGHT,
            KindSpec::Webhook(hook) => hook.concurrency.clamp(1, 64),
            KindSpec::Http(http) => http.concurrency.clamp(1, 64),
        }
    }

    pub(super) fn disable_after(&self) -> Option<u32> {
        match &self.spec.kind {
            KindSpec::Webhook(hook) => Some(hook.disable_after.max(1)),
            _ => None,
        }
    }
}

/// A destination's place in the feed, kept in the store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DestinationState {
    /// The last feed position delivered (or handed to the retry queue).
    pub cursor: u64,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    #[serde(default)]
    pub consecutive_failures: u32,
    /// A replay re-sends the changes up to here even where the ledger says
    /// they were delivered.
    #[serde(default)]
    pub replay_through: u64,
}

fn state_key(destination: &str) -> KvKey {
    KvKey::new(KvKey::DESTINATION, destination)
}

impl DeliveryEngine {
    pub fn destinations(&self) -> impl Iterator<Item = &Arc<Destination>> {
        self.destinations.values()
    }

    /// Drops every destination's delivery lease, whoever holds it (a local
    /// run starting after its predecessor was killed mid-delivery).
    pub async fn drop_leases(&self) -> Result<()> {
        for name in self.destinations.keys() {
            self.store
                .drop_lease(&super::engine::lease_name(name))
                .await?;
        }
        Ok(())
    }

    pub fn destination(&self, name: &str) -> Result<&Arc<Destination>> {
        self.destinations
            .get(name)
            .ok_or_else(|| Error::NotFound(format!("destination {name}")))
    }

    pub async fn state(&self, name: &str) -> Result<DestinationState> {
        Ok(self
            .store
            .kv_get::<DestinationState>(&state_key(name))
            .await?
            .map(|s| s.value)
            .unwrap_or_default())
    }

    pub(super) async fn save_state(&self, name: &str, state: &DestinationState) -> Result<()> {
        self.store
            .kv_put(&state_key(name), state, None, KvExpect::Any)
            .await
            .map(|_| ())
    }

    /// Changes `f` makes to a destination's state (enable, disable, replay).
    pub async fn update_state(
        &self,
        name: &str,
        f: impl FnOnce(&mut DestinationState),
    ) -> Result<DestinationState> {
        self.destination(name)?;
        let mut state = self.state(name).await?;
        f(&mut state);
        self.save_state(name, &state).await?;
        Ok(state)
    }

    /// Each destination with its place in the feed: lag is the tenant's
    /// feed head minus the destination's cursor.
    pub async fn status(&self) -> Result<Vec<serde_json::Value>> {
        let mut out = Vec::new();
        for destination in self.destinations.values() {
            let state = self.state(&destination.name).await?;
            let head = self.store.latest_seq(&destination.spec.tenant).await?.get();
            out.push(json!({
                "destination": destination.name,
                "kind": destination.kind(),
                "tenant": destination.spec.tenant,
                "entities": destination.spec.entities,
                "enabled": !state.disabled,
                "disabled_reason": state.disabled_reason,
                "cursor": Cursor::at(Seq::new(state.cursor)).to_string(),
                "head": Cursor::at(Seq::new(head)).to_string(),
                "lag": head.saturating_sub(state.cursor),
                "consecutive_failures": state.consecutive_failures,
            }));
        }
        Ok(out)
    }
}
