//! The poke fan-out: a tenant's feed moved, so each of its connections
//! whose token may read one of the changed entity types is sent
//! `{"cursor": "..."}`. Gone connections are forgotten; expired ones are
//! closed and forgotten.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::channel::{Channel, Sent};
use crate::error::Result;
use crate::model::{Cursor, EntityType, Seq, TenantId, Timestamp};
use crate::store::{Commit, Connection, Store};
use crate::sync::Access;

/// Messages in flight at once during a fan-out.
const IN_FLIGHT: usize = 32;

/// What changed for one tenant: its entity types, and the feed's position
/// when known (a commit announced in-process knows it; a stream record
/// names keys only, and the counter is read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched {
    pub tenant: TenantId,
    pub entities: BTreeSet<EntityType>,
    pub seq: Option<Seq>,
}

impl Touched {
    /// Commits merged per tenant; internal entity types (`_...`) left out.
    pub fn from_commits(commits: &[Commit]) -> Vec<Touched> {
        let mut by_tenant: BTreeMap<TenantId, Touched> = BTreeMap::new();
        for commit in commits {
            let touched = by_tenant
                .entry(commit.tenant.clone())
                .or_insert_with(|| Touched {
                    tenant: commit.tenant.clone(),
                    entities: BTreeSet::new(),
                    seq: Some(Seq::ZERO),
                });
            touched.entities.extend(commit.entities.iter().cloned());
            touched.seq = touched.seq.max(Some(commit.seq));
        }
        by_tenant
            .into_values()
            .map(Touched::visible)
            .filter(|t| !t.entities.is_empty())
            .collect()
    }

    fn visible(mut self) -> Self {
        self.entities.retain(|e| !e.as_str().starts_with('_'));
        self
    }
}

#[derive(Debug, Deserialize)]
struct StreamEvent {
    #[serde(rename = "Records", default)]
    records: Vec<StreamRecord>,
}

#[derive(Debug, Deserialize)]
struct StreamRecord {
    #[serde(default)]
    dynamodb: Option<StreamKeys>,
}

#[derive(Debug, Deserialize)]
struct StreamKeys {
    #[serde(rename = "Keys", default)]
    keys: BTreeMap<String, Value>,
}

/// The tenants and entity types a DynamoDB Streams batch touched, from the
/// record items' keys (`T#<tenant>#R#<entity>#<shard>`); anything else (a
/// schedule event, other items) touches nothing.
pub fn touched_by_stream(event: &Value) -> Vec<Touched> {
    let Ok(event) = serde_json::from_value::<StreamEvent>(event.clone()) else {
        return Vec::new();
    };
    let mut by_tenant: BTreeMap<TenantId, Touched> = BTreeMap::new();
    for record in event.records {
        let Some(pk) = record
            .dynamodb
            .as_ref()
            .and_then(|d| d.keys.get("pk"))
            .and_then(|pk| pk.get("S"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        let Some((tenant, entity)) = crate::store::parse_records_pk(pk) else {
            continue;
        };
        let (Ok(tenant), Ok(entity)) = (TenantId::parse(tenant), EntityType::parse(entity)) else {
            continue;
        };
        by_tenant
            .entry(tenant.clone())
            .or_insert_with(|| Touched {
                tenant,
                entities: BTreeSet::new(),
                seq: None,
            })
            .entities
            .insert(entity);
    }
    by_tenant
        .into_values()
        .map(Touched::visible)
        .filter(|t| !t.entities.is_empty())
        .collect()
}

/// What one fan-out did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PokeSummary {
    pub tenants: usize,
    pub sent: usize,
    /// Connections the channel no longer knew, forgotten.
    pub gone: usize,
    /// Connections past their end, closed and forgotten.
    pub expired: usize,
    /// Sends that failed (a poke is a hint: the client's next pull or
    /// poke catches up).
    pub failed: usize,
}

impl PokeSummary {
    fn add(&mut self, other: &PokeSummary) {
        self.tenants += other.tenants;
        self.sent += other.sent;
        self.gone += other.gone;
        self.expired += other.expired;
        self.failed += other.failed;
    }
}

enum Outcome {
    Sent,
    Skipped,
    Gone,
    Expired,
    Failed,
}

pub struct Poker {
    store: Store,
    channel: Arc<dyn Channel>,
}

impl std::fmt::Debug for Poker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poker").finish_non_exhaustive()
    }
}

impl Poker {
    pub fn new(store: Store, channel: Arc<dyn Channel>) -> Self {
        Self { store, channel }
    }

    /// Pokes every connection of each touched tenant that may read one of
    /// its changed entity types.
    pub async fn poke(&self, touched: &[Touched]) -> Result<PokeSummary> {
        let mut summary = PokeSummary::default();
        for one in touched {
            summary.add(&self.poke_tenant(one).await?);
        }
        Ok(summary)
    }

    async fn poke_tenant(&self, touched: &Touched) -> Result<PokeSummary> {
        let connections = self.store.connections(&touched.tenant).await?;
        let mut summary = PokeSummary {
            tenants: 1,
            ..PokeSummary::default()
        };
        if connections.is_empty() {
            return Ok(summary);
        }
        let seq = match touched.seq {
            Some(seq) => seq,
            None => self.store.latest_seq(&touched.tenant).await?,
        };
        let message = json!({"cursor": Cursor::at(seq)}).to_string();
        let now = Timestamp::now();
        let outcomes: Vec<Outcome> = futures_util::stream::iter(connections)
            .map(|connection| self.poke_one(connection, touched, &message, now))
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        for outcome in outcomes {
            match outcome {
                Outcome::Sent => summary.sent += 1,
                Outcome::Skipped => {}
                Outcome::Gone => summary.gone += 1,
                Outcome::Expired => summary.expired += 1,
                Outcome::Failed => summary.failed += 1,
            }
        }
        Ok(summary)
    }

    async fn poke_one(
        &self,
        connection: Connection,
        touched: &Touched,
        message: &str,
        now: Timestamp,
    ) -> Outcome {
        if connection.expires_at <= now {
            if let Err(err) = self.channel.close(&connection.id).await {
                tracing::warn!(error = %err.chain(), "closing an expired connection failed");
            }
            return self.forget(&connection, Outcome::Expired).await;
        }
        let access = Access::reading(connection.reads.as_deref());
        if !touched.entities.iter().any(|e| access.can_read(e)) {
            return Outcome::Skipped;
        }
        match self.channel.send(&connection.id, message).await {
            Ok(Sent::Delivered) => Outcome::Sent,
            Ok(Sent::Gone) => self.forget(&connection, Outcome::Gone).await,
            Err(err) => {
                tracing::warn!(error = %err.chain(), connection = %connection.id, "a poke failed");
                Outcome::Failed
            }
        }
    }
}

impl Poker {
    async fn forget(&self, connection: &Connection, outcome: Outcome) -> Outcome {
        match self
            .store
            .delete_connection(&connection.tenant, &connection.id)
            .await
        {
            Ok(()) => outcome,
            Err(err) => {
                tracing::warn!(error = %err.chain(), connection = %connection.id, "forgetting a connection failed");
                Outcome::Failed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_batch_names_the_tenants_and_entity_types_it_touched() {
        let event = json!({"Records": [
            {"eventName": "MODIFY", "dynamodb": {"Keys": {"pk": {"S": "T#acme#R#task#11"}, "sk": {"S": "R#1"}}}},
            {"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "T#acme#E#note"}, "sk": {"S": "R#2"}}}},
            {"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "T#acme#R#bad#x"}, "sk": {"S": "R#3"}}}},
            {"eventName": "MODIFY", "dynamodb": {"Keys": {"pk": {"S": "T#acme"}, "sk": {"S": "SEQ"}}}},
            {"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "T#acme#R#_guard#0"}, "sk": {"S": "R#job"}}}},
            {"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "T#globex#R#_guard#7"}, "sk": {"S": "R#job"}}}},
            {"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "X#dedupe#a"}, "sk": {"S": "X"}}}}]});
        let touched = touched_by_stream(&event);
        assert_eq!(touched.len(), 1, "{touched:?}");
        assert_eq!(touched[0].tenant.as_str(), "acme");
        let names: Vec<&str> = touched[0].entities.iter().map(EntityType::as_str).collect();
        assert_eq!(names, ["note", "task"]);
        assert_eq!(touched[0].seq, None);
        assert!(touched_by_stream(&json!({"detail-type": "Scheduled Event"})).is_empty());
    }
}
