//! Scheduled pulls from REST sources into the store: full and incremental
//! runs, only changed records written, one run per source at a time, the
//! cursor checkpointed after the records it covers are written, and a time
//! budget that hands the rest of a run to a new invocation through the
//! queue (docs/SOURCES.md).

mod engine;
mod handlers;
mod run;
mod sources;
mod writing;

pub use crate::model::Trigger;
pub use engine::{SyncEngine, runs_stream};
pub use handlers::{
    ForceSyncHandler, ForceSyncWork, SyncContinuationHandler, SyncRunHandler, SyncRunWork,
};
pub use run::{Continuation, RunRequest};
pub use sources::{SourceSet, SourceState, local_secret};

use crate::retry::WorkKind;
use std::sync::Arc;

/// Registers the sync work kinds (`sync_run`, `force_sync`,
/// `sync_continuation`) with a
/// retry worker.
pub fn register_sync_work(worker: &mut crate::retry::RetryWorker, engine: Arc<SyncEngine>) {
    worker.register(
        WorkKind::SyncRun,
        Arc::new(SyncRunHandler::new(engine.clone())),
    );
    worker.register(
        WorkKind::ForceSync,
        Arc::new(ForceSyncHandler::new(engine.clone())),
    );
    worker.register(
        WorkKind::SyncContinuation,
        Arc::new(SyncContinuationHandler::new(engine)),
    );
}
