//! Idempotent processing: an in-progress claim (a lease that expires with
//! the invocation) and a completed marker kept long after. A second delivery
//! of finished work is skipped; a concurrent one is told to come back later.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::{Lease, Timestamp};
use crate::store::{KvExpect, KvKey, Store};

/// How long a completed marker is kept: longer than SQS keeps a message
/// (14 days), so no redelivery can outlive it.
pub const COMPLETED_RETENTION: Duration = Duration::from_secs(15 * 24 * 3600);

#[derive(Debug, Serialize, Deserialize)]
struct Completed {
    at: Timestamp,
}

/// The result of trying to start work under a key.
#[derive(Debug)]
pub enum Claim {
    /// Nobody did it yet; do it, then [`Idempotency::complete`] or
    /// [`Idempotency::abandon`].
    Acquired(Lease),
    /// It was done before.
    Completed,
    /// Another invocation is doing it now, until `until` at the latest.
    InProgress { until: Option<Timestamp> },
}

#[derive(Debug, Clone)]
pub struct Idempotency {
    store: Store,
}

fn lease_name(key: &str) -> String {
    format!("idem:{key}")
}

impl Idempotency {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Claims `key` for `hold` (the invocation's remaining time: a crashed
    /// invocation frees the key when it would have been stopped anyway).
    pub async fn claim(&self, key: &str, hold: Duration) -> Result<Claim> {
        let marker = KvKey::new(KvKey::IDEMPOTENCY, key);
        if self.store.kv_get::<Completed>(&marker).await?.is_some() {
            return Ok(Claim::Completed);
        }
        let owner = uuid::Uuid::new_v4().to_string();
        let Some(lease) = self
            .store
            .acquire_lease(&lease_name(key), &owner, hold)
            .await?
        else {
            let until = self
                .store
                .kv_get::<serde_json::Value>(&KvKey::new(KvKey::LEASE, lease_name(key)))
                .await?
                .and_then(|held| held.expires_at);
            return Ok(Claim::InProgress { until });
        };
        // The holder before us may have completed between our first look and
        // our claim (it writes the marker before it lets go).
        if self.store.kv_get::<Completed>(&marker).await?.is_some() {
            self.store.release_lease(&lease).await?;
            return Ok(Claim::Completed);
        }
        Ok(Claim::Acquired(lease))
    }

    /// Marks the work done, then lets go of the claim.
    pub async fn complete(&self, key: &str, lease: &Lease) -> Result<()> {
        let marker = KvKey::new(KvKey::IDEMPOTENCY, key);
        let done = Completed {
            at: Timestamp::now(),
        };
        self.store
            .kv_put(&marker, &done, Some(COMPLETED_RETENTION), KvExpect::Any)
            .await?;
        self.store.release_lease(lease).await
    }

    /// Lets go of the claim without marking the work done, so the next
    /// attempt can take it at once.
    pub async fn abandon(&self, lease: &Lease) -> Result<()> {
        self.store.release_lease(lease).await
    }
}
