use serde::{Deserialize, Serialize};

use super::{SourceId, Timestamp};

/// What started a sync run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The EventBridge schedule (or the local run's emulation of it).
    #[default]
    Schedule,
    /// An operator, through the admin API or an on-demand invocation.
    Manual,
    /// A run continued in a new invocation from its checkpoint.
    Continuation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    Incremental,
    Full,
    Discrepancy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    /// Stopped at its time budget and continued in another invocation.
    Continued,
    Failed,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    pub seen: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub deleted: u64,
    pub failed: u64,
}

/// The record every sync run leaves behind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunLog {
    pub id: String,
    pub source: SourceId,
    pub kind: RunKind,
    /// What started it: `schedule`, `manual`, `continuation`.
    #[serde(default)]
    pub trigger: Trigger,
    pub status: RunStatus,
    #[serde(with = "crate::model::iso")]
    pub started_at: Timestamp,
    #[serde(with = "crate::model::iso::option", default)]
    pub finished_at: Option<Timestamp>,
    pub counts: RunCounts,
    pub error: Option<String>,
    /// The first records refused by mapping or validation rules, with why
    /// (`counts.failed` has the total).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Rejected>,
}

/// A record a run refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// The record id, when the item had one.
    pub id: Option<String>,
    pub reason: String,
}

/// How many refused records a run log lists.
pub const MAX_REJECTED_LISTED: usize = 20;
