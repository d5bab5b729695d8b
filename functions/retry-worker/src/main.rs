//! retry-worker: SQS -> Lambda. Finishes failed work or dead-letters it.

use lambda_runtime::{Error, run, service_fn};
use syncline::config::{self, Config};
use syncline::ingest::{SourceSet, register_sync_work};
use syncline::lambda::sqs::handle_retry_batch;
use syncline::retry::RetryWorker;
use syncline::runtime::Adapters;

#[tokio::main]
async fn main() -> Result<(), Error> {
    syncline::telemetry::init();
    let config = Config::from_env()?;
    let adapters = Adapters::from_config(&config).await?;
    let mut worker = RetryWorker::new(adapters.store.clone(), adapters.queue.clone(), config.retry);
    // Sync continuations, when this deployment has REST sources.
    if let Some(document) = config::optional_document("SYNCLINE_SOURCES")? {
        let sources = SourceSet::load(&document)?;
        let engine = adapters.sync_engine(sources);
        register_sync_work(&mut worker, engine);
    }
    run(service_fn(|event| handle_retry_batch(&worker, event))).await
}
