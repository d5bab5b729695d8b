//! Scheduled pulls from REST sources into the store: full and incremental
//! runs, only changed records written, one run per source at a time, the
//! cursor checkpointed after the records it covers are written, and a time
//! budget that hands the rest of a run to a new invocation through the
//! queue (docs/SOURCES.md).

mod engine;
mod sources;

pub use engine::{Continuation, RunRequest, SyncContinuationHandler, SyncEngine, Trigger};
pub use sources::{SourceSet, SourceState, local_secret};
