//! Operating destinations: their place in the feed and lag, the delivery
//! ledger, enable and disable, replay from a cursor, retry one record.
//! Every change is audited like the other operator actions.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{AUDIT_RETENTION, AdminService, audit_stream};
use crate::delivery::{Delivered, DeliveryWork, DestinationState};
use crate::error::{Error, Result};
use crate::model::{Cursor, EntityType, RecordId, Timestamp};
use crate::store::{LedgerEntry, Page, PageToken};

/// `POST /v1/admin/destinations/{name}/replay`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    /// Re-deliver every change after this cursor (`c1...`; the start of
    /// the feed when absent), even those the ledger shows delivered.
    #[serde(default)]
    pub cursor: Option<String>,
}

impl AdminService {
    /// Every destination with its lag (feed head minus its cursor).
    pub async fn destinations(&self) -> Result<Vec<Value>> {
        self.delivery.status().await
    }

    /// The most lag and the number of disabled destinations, for health.
    pub async fn delivery_health(&self) -> Result<(u64, usize)> {
        let status = self.delivery.status().await?;
        let lag = status
            .iter()
            .filter_map(|s| s["lag"].as_u64())
            .max()
            .unwrap_or(0);
        let disabled = status
            .iter()
            .filter(|s| s["enabled"] == json!(false))
            .count();
        Ok((lag, disabled))
    }

    pub async fn deliveries(
        &self,
        destination: &str,
        limit: u32,
        after: Option<&PageToken>,
    ) -> Result<Page<LedgerEntry>> {
        self.delivery.destination(destination)?;
        self.store
            .ledger_list(destination, limit.clamp(1, 200), after)
            .await
    }

    /// Appends an operator's action to the audit trail.
    pub async fn audit_action(&self, mut audit: Value, who: &str) -> Result<()> {
        audit["who"] = json!(who);
        audit["at"] = json!(Timestamp::now());
        self.store
            .append_log(&audit_stream(), &audit, AUDIT_RETENTION)
            .await
            .map(|_| ())
    }

    /// Enables or disables a destination. Enabling clears the failure
    /// count; the cursor stays where it stopped, so nothing is skipped.
    pub async fn set_destination_enabled(
        &self,
        destination: &str,
        enabled: bool,
        who: &str,
    ) -> Result<DestinationState> {
        let state = self
            .delivery
            .update_state(destination, |state| {
                state.disabled = !enabled;
                if enabled {
                    state.consecutive_failures = 0;
                    state.disabled_reason = None;
                } else {
                    state.disabled_reason = Some(format!("disabled by {who}"));
                }
            })
            .await?;
        let action = if enabled { "enable" } else { "disable" };
        self.audit_action(json!({"action": action, "destination": destination}), who)
            .await?;
        Ok(state)
    }

    /// Moves a destination's cursor back to `replay.cursor` and re-sends
    /// everything after it up to the feed's head now.
    pub async fn replay(
        &self,
        destination: &str,
        replay: &Replay,
        who: &str,
    ) -> Result<DestinationState> {
        let from = match &replay.cursor {
            Some(raw) => Cursor::parse(raw)?.seq().get(),
            None => 0,
        };
        let tenant = self.delivery.destination(destination)?.spec.tenant.clone();
        let head = self.store.latest_seq(&tenant).await?.get();
        let state = self
            .delivery
            .update_state(destination, |state| {
                state.cursor = from.min(state.cursor.max(head));
                state.replay_through = head;
            })
            .await?;
        self.audit_action(
            json!({"action": "replay", "destination": destination, "from": from, "through": head}),
            who,
        )
        .await?;
        Ok(state)
    }

    /// Delivers one record to one destination again now.
    pub async fn retry_delivery(
        &self,
        destination: &str,
        entity: &EntityType,
        id: &RecordId,
        who: &str,
    ) -> Result<Value> {
        let work = DeliveryWork {
            destination: destination.to_owned(),
            entity: entity.clone(),
            id: id.clone(),
        };
        let outcome = self.delivery.redeliver(&work).await;
        self.audit_action(
            json!({"action": "retry_delivery", "destination": destination, "entity": entity, "id": id}),
            who,
        )
        .await?;
        match outcome {
            Ok(Delivered::Delivered) => Ok(json!({"outcome": "delivered"})),
            Ok(Delivered::Skipped(reason)) => Ok(json!({"outcome": "skipped", "reason": reason})),
            Err(err) if matches!(err, Error::NotFound(_)) => Err(err),
            Err(err) => Ok(json!({"outcome": "failed", "error": err.chain()})),
        }
    }
}
