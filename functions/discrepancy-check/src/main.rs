//! discrepancy-check: EventBridge schedule or on demand -> Lambda. Finds
//! what differs between each source and the store.

use lambda_runtime::{Error, run, service_fn};
use syncline::config::{self, Config};
use syncline::discrepancy::DiscrepancyChecker;
use syncline::ingest::SourceSet;
use syncline::lambda::discrepancy::handle_check;
use syncline::runtime::Adapters;

#[tokio::main]
async fn main() -> Result<(), Error> {
    syncline::telemetry::init();
    let config = Config::from_env()?;
    let adapters = Adapters::from_config(&config).await?;
    let sources = SourceSet::load(&config::document("SYNCLINE_SOURCES")?)?;
    let engine = adapters.sync_engine(sources);
    let checker = DiscrepancyChecker::new(
        adapters.store.clone(),
        adapters.queue.clone(),
        engine.clone(),
    );
    run(service_fn(|event| handle_check(&engine, &checker, event))).await
}
