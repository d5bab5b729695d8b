//! The retry queue's `delivery` work: one record to one destination again,
//! at the version stored now; its dead letter marks the ledger `dead`.

use std::sync::Arc;

use async_trait::async_trait;

use super::engine::{DeliveryEngine, DeliveryWork};
use crate::error::{Error, Result};
use crate::model::Timestamp;
use crate::retry::{RetryEnvelope, WorkHandler};
use crate::store::DeliveryStatus;

pub struct DeliveryHandler {
    engine: Arc<DeliveryEngine>,
}

impl DeliveryHandler {
    pub fn new(engine: Arc<DeliveryEngine>) -> Self {
        Self { engine }
    }
}

fn work(envelope: &RetryEnvelope) -> Result<DeliveryWork> {
    serde_json::from_value(envelope.payload.clone())
        .map_err(|e| Error::validation("delivery work", e.to_string()))
}

#[async_trait]
impl WorkHandler for DeliveryHandler {
    async fn handle(&self, envelope: &RetryEnvelope, _deadline: Timestamp) -> Result<()> {
        self.engine.redeliver(&work(envelope)?).await.map(|_| ())
    }

    async fn dead_lettered(&self, envelope: &RetryEnvelope, error: &str) -> Result<()> {
        crate::metrics::emit(
            &[("function", "delivery")],
            &[("DeliveriesDead", 1.0, crate::metrics::Unit::Count)],
        );
        let work = work(envelope)?;
        let destination = self.engine.destination(&work.destination)?.clone();
        let store_record = self
            .engine
            .record(&destination.spec.tenant, &work.entity, &work.id)
            .await?;
        match store_record {
            Some(record) => {
                self.engine
                    .mark(&destination, &record, DeliveryStatus::Dead, error)
                    .await
            }
            None => Ok(()),
        }
    }
}
