//! The engine's ledger bookkeeping: a page's entries written in the
//! background, one entry at a time after a conflict, failures and dead
//! letters marked, retries queued.

use std::time::Duration;

use super::destination::Destination;
use super::engine::{DeliveryEngine, DeliveryWork, Pending, delivery_key};
use crate::error::{Error, Result};
use crate::model::{EntityType, Record, RecordId, Timestamp};
use crate::retry::{RetryEnvelope, WorkKind};
use crate::store::{DeliveryStatus, LedgerEntry, LedgerWrite};

/// A page's ledger writes under way: what is left to write one by one.
pub(super) type LedgerTask = tokio::task::JoinHandle<Result<Vec<Pending>>>;

impl DeliveryEngine {
    /// Writes a page's ledger entries in the background (in a few
    /// transactions), while the next page is delivered.
    pub(super) fn spawn_ledger(&self, name: &str, pending: Vec<Pending>) -> LedgerTask {
        let (store, name) = (self.store.clone(), name.to_owned());
        tokio::spawn(async move {
            let not_written = store.ledger_put_many(&name, &pending).await?;
            Ok(not_written
                .into_iter()
                .map(|index| pending[index].clone())
                .collect())
        })
    }

    /// Waits for a page's ledger writes; the entries a concurrent writer
    /// got in the way of are written one by one.
    pub(super) async fn finish_ledger(&self, name: &str, task: LedgerTask) -> Result<()> {
        let left = task
            .await
            .map_err(|e| Error::internal(format!("ledger write task: {e}")))??;
        for write in left {
            self.write_ledger(name, write).await?;
        }
        Ok(())
    }

    /// Writes one entry (and its link); false when a concurrent writer's
    /// entry came first.
    async fn put_ledger(&self, name: &str, write: &LedgerWrite) -> Result<bool> {
        Ok(self
            .store
            .ledger_put_many(name, std::slice::from_ref(write))
            .await?
            .is_empty())
    }

    /// Writes `write` (with its link) unless a concurrent deliverer
    /// recorded this version or a newer one first.
    pub(super) async fn write_ledger(&self, name: &str, mut write: LedgerWrite) -> Result<()> {
        for _ in 0..4 {
            if self.put_ledger(name, &write).await? {
                return Ok(());
            }
            let now = self
                .store
                .ledger_get(name, &write.entry.entity, &write.entry.id)
                .await?;
            match now {
                Some(now) if now.entry.delivered_version >= write.entry.delivered_version => {
                    return Ok(());
                }
                now => write.read = now.map(|n| n.revision),
            }
        }
        Err(Error::Conflict(format!(
            "the ledger of {}/{} at {name} kept changing",
            write.entry.entity, write.entry.id
        )))
    }

    /// Marks the change failed in the ledger (its delivered version and
    /// external id kept).
    pub(super) async fn record_failure(
        &self,
        destination: &Destination,
        record: &Record,
        error: &Error,
    ) -> Result<()> {
        self.mark(destination, record, DeliveryStatus::Failed, &error.chain())
            .await
    }

    /// Sets the ledger's status for `record` at its version, keeping what
    /// the destination last took.
    pub async fn mark(
        &self,
        destination: &Destination,
        record: &Record,
        status: DeliveryStatus,
        error: &str,
    ) -> Result<()> {
        let name = destination.name.as_str();
        for _ in 0..4 {
            let read = self
                .store
                .ledger_get(name, &record.entity, &record.id)
                .await?;
            if read
                .as_ref()
                .is_some_and(|r| r.entry.delivered_version >= record.version.get())
            {
                return Ok(());
            }
            let previous = read.as_ref().map(|r| r.entry.clone());
            let entry = LedgerEntry {
                entity: record.entity.clone(),
                id: record.id.clone(),
                status,
                version: record.version.get(),
                delivered_version: previous.as_ref().map_or(0, |p| p.delivered_version),
                hash: previous.as_ref().and_then(|p| p.hash.clone()),
                external_id: previous.as_ref().and_then(|p| p.external_id.clone()),
                attempts: previous
                    .as_ref()
                    .filter(|p| p.version == record.version.get())
                    .map_or(0, |p| p.attempts)
                    + 1,
                last_error: Some(error.to_owned()),
                reason: None,
                updated_at: Timestamp::now(),
            };
            let write = LedgerWrite {
                entry,
                read: read.map(|r| r.revision),
                link: None,
            };
            // Not written: a concurrent writer came first; read again.
            if self.put_ledger(name, &write).await? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Hands one change to the retry queue (its retries deliver the newest
    /// version, once).
    pub async fn queue_retry(
        &self,
        destination: &Destination,
        record: &Record,
        error: &Error,
    ) -> Result<()> {
        let work = DeliveryWork {
            destination: destination.name.clone(),
            entity: record.entity.clone(),
            id: record.id.clone(),
        };
        let payload = serde_json::to_value(&work)
            .map_err(|e| Error::internal(format!("delivery work: {e}")))?;
        let mut envelope = RetryEnvelope::new(
            WorkKind::Delivery,
            payload,
            delivery_key(&destination.name, record),
            error.chain(),
        );
        envelope.tenant = Some(destination.spec.tenant.clone());
        self.queue
            .send(&envelope.to_body()?, Duration::from_secs(1))
            .await?;
        Ok(())
    }

    /// A record as stored now.
    pub async fn record(
        &self,
        tenant: &crate::model::TenantId,
        entity: &EntityType,
        id: &RecordId,
    ) -> Result<Option<Record>> {
        self.store.get_record(tenant, entity, id).await
    }
}
