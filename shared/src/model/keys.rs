//! Keys of things that expire or must happen once: webhook dedupe keys,
//! idempotency keys and leases.

use serde::{Deserialize, Serialize};

use super::{SourceId, Timestamp};
use crate::error::{Error, Result};

/// Identifies one delivery of a provider's event, so a redelivery applies
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupeKey {
    source: SourceId,
    event_id: String,
}

impl DedupeKey {
    pub fn parse(source: SourceId, event_id: &str) -> Result<Self> {
        if event_id.is_empty() || event_id.len() > 256 || event_id.chars().any(char::is_control) {
            return Err(Error::validation(
                "event id",
                "must be 1 to 256 printable characters",
            ));
        }
        Ok(Self {
            source,
            event_id: event_id.to_owned(),
        })
    }

    pub fn source(&self) -> &SourceId {
        &self.source
    }

    pub fn event_id(&self) -> &str {
        &self.event_id
    }
}

/// Exclusive right to run something (one sync run per source) until
/// `expires_at`. `owner` is unique per holder, so a holder that outlived its
/// lease cannot release or renew somebody else's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub name: String,
    pub owner: String,
    pub expires_at: Timestamp,
}

impl Lease {
    pub fn is_live_at(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }
}
