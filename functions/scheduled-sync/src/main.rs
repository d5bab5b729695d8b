//! scheduled-sync: EventBridge schedule -> Lambda. Pulls REST sources.

use lambda_runtime::{Error, run, service_fn};
use syncline::config::{self, Config};
use syncline::ingest::{SourceSet, register_sync_work};
use syncline::lambda::schedule::handle_schedule;
use syncline::retry::RetryWorker;
use syncline::runtime::Adapters;

#[tokio::main]
async fn main() -> Result<(), Error> {
    syncline::telemetry::init();
    let config = Config::from_env()?;
    let adapters = Adapters::from_config(&config).await?;
    let sources = SourceSet::load(&config::document("SYNCLINE_SOURCES")?)?;
    let engine = adapters.sync_engine(sources);
    let mut worker = RetryWorker::new(adapters.store.clone(), adapters.queue.clone(), config.retry);
    register_sync_work(&mut worker, engine.clone());
    run(service_fn(|event| handle_schedule(&engine, &worker, event))).await
}
