//! A sync run as it goes: what was asked, where it stands (the
//! continuation a later invocation resumes from), and the log entry and
//! metrics it leaves.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connectors::PageState;
use crate::model::{
    MAX_REJECTED_LISTED, Rejected, RunCounts, RunKind, RunLog, RunStatus, SourceId, Timestamp,
    Trigger,
};
use crate::store::LogId;

/// What a run should do: `kind` None lets the engine choose (full on the
/// first run, incremental after).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    pub source: SourceId,
    pub kind: Option<RunKind>,
    pub trigger: Trigger,
}

/// Where a run that ran out of time stands; the body of a
/// `sync_continuation` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Continuation {
    pub source: SourceId,
    pub run_id: String,
    pub log_id: LogId,
    pub kind: RunKind,
    pub trigger: Trigger,
    pub started_at: Timestamp,
    pub page: PageState,
    pub pages_done: u64,
    pub since: Option<String>,
    pub sync_token: Option<String>,
    pub max_updated: Option<Value>,
    pub counts: RunCounts,
    /// Chunks of ids seen so far in a full run, kept in the store.
    pub seen_chunks: u32,
    /// Whether a full run ends by tombstoning the source's records it did
    /// not see: false when the store held no record of the entity as the
    /// run began, so that every record there was written during the run.
    #[serde(default = "sweeps")]
    pub sweep: bool,
    /// The first refused records.
    #[serde(default)]
    pub rejected: Vec<Rejected>,
}

fn sweeps() -> bool {
    true
}

impl Continuation {
    /// Whether this is a full run that began on a store holding no record
    /// of its entity (so it writes without reading what is stored).
    pub fn empty_at_start(&self) -> bool {
        self.kind == RunKind::Full && !self.sweep
    }
}

pub(super) struct Run {
    pub progress: Continuation,
    pub seen: HashSet<String>,
    pub next_sync_token: Option<String>,
}

impl Run {
    /// Counts a refused record and lists the first few with their reason.
    pub(super) fn reject(&mut self, id: Option<String>, reason: String) {
        tracing::warn!(source = %self.progress.source, id = id.as_deref().unwrap_or("-"), %reason, "record refused");
        self.progress.counts.failed += 1;
        if self.progress.rejected.len() < MAX_REJECTED_LISTED {
            self.progress.rejected.push(Rejected { id, reason });
        }
    }
}

impl Continuation {
    /// The run's log entry as of now, with `status`; a finished run
    /// (succeeded or failed) is stamped with the time it ended.
    pub fn log(&self, status: RunStatus, error: Option<String>) -> RunLog {
        RunLog {
            id: self.run_id.clone(),
            source: self.source.clone(),
            kind: self.kind,
            trigger: self.trigger,
            status,
            started_at: self.started_at,
            finished_at: matches!(status, RunStatus::Succeeded | RunStatus::Failed)
                .then(Timestamp::now),
            counts: self.counts,
            error,
            rejected: self.rejected.clone(),
        }
    }
}

/// The CloudWatch metrics of a finished run.
pub(super) fn emit_run_metrics(log: &RunLog) {
    let status = log.status;
    let counts = &log.counts;
    crate::metrics::emit(
        &[
            ("function", "scheduled-sync"),
            ("source", log.source.as_str()),
        ],
        &[
            (
                "RecordsSynced",
                (counts.created + counts.updated + counts.deleted) as f64,
                crate::metrics::Unit::Count,
            ),
            (
                "RecordsFailed",
                counts.failed as f64,
                crate::metrics::Unit::Count,
            ),
            (
                "RunFailed",
                f64::from(u8::from(status == RunStatus::Failed)),
                crate::metrics::Unit::Count,
            ),
            (
                "RunSucceeded",
                f64::from(u8::from(status == RunStatus::Succeeded)),
                crate::metrics::Unit::Count,
            ),
            (
                "RunDuration",
                (Timestamp::now().as_millis() - log.started_at.as_millis()) as f64,
                crate::metrics::Unit::Milliseconds,
            ),
        ],
    );
}
