//! Scheduled pulls from REST sources into the store: full and incremental
//! runs, only changed records written, one run per source at a time, the
//! cursor checkpointed after the records it covers are written, and a time
//! budget that hands the rest of a run to a new invocation through the
//! queue (docs/SOURCES.md).

mod engine;
mod sources;

pub use engine::{
    Continuation, ForceSyncHandler, ForceSyncWork, RunRequest, SyncContinuationHandler, SyncEngine,
    SyncRunHandler, SyncRunWork, Trigger, runs_stream,
};
pub use sources::{SourceSet, SourceState, local_secret};

use std::sync::Arc;

/// Registers the sync work kinds (`sync_run`, `force_sync`,
/// `sync_continuation`) with a
/// retry worker.
pub fn register_sync_work(worker: &mut crate::retry::RetryWorker, engine: Arc<SyncEngine>) {
    use crate::retry::kinds;
    worker.register(
        kinds::SYNC_RUN,
        Arc::new(SyncRunHandler::new(engine.clone())),
    );
    worker.register(
        kinds::FORCE_SYNC,
        Arc::new(ForceSyncHandler::new(engine.clone())),
    );
    worker.register(
        kinds::SYNC_CONTINUATION,
        Arc::new(SyncContinuationHandler::new(engine)),
    );
}
