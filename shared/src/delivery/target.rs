//! The port every kind of destination implements: apply one record (a put
//! or a tombstone) at one version.

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::error::Result;
use crate::model::Record;

/// One record on its way to a destination.
#[derive(Debug)]
pub struct Outbound<'a> {
    pub destination: &'a str,
    pub record: &'a Record,
    /// The fields sent: the record's data with the destination's field
    /// filter applied (empty for a tombstone).
    pub data: &'a Map<String, Value>,
    /// The destination's id for the record, when an earlier delivery
    /// learned it.
    pub external_id: Option<&'a str>,
    /// Stable per (destination, record, version): the idempotency key and
    /// the webhook message id.
    pub key: &'a str,
}

/// What a destination answered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    /// The destination's id for the record (kept for later updates).
    pub external_id: Option<String>,
    /// The destination already held a newer version (a Redis guard).
    pub stale: bool,
}

/// A kind of destination: Redis, outbound webhooks, a JSON API.
#[async_trait]
pub trait Target: Send + Sync {
    /// Applies `outbound`. Errors say whether another attempt may pass
    /// (`Error::is_retryable`): a 4xx refusal does not.
    async fn apply(&self, outbound: &Outbound<'_>) -> Result<Applied>;
}
