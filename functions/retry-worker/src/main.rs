//! retry-worker: SQS -> Lambda. Finishes failed work or dead-letters it.

use lambda_runtime::{Error, run, service_fn};
use syncline::config::Config;
use syncline::lambda::sqs::handle_retry_batch;
use syncline::runtime::Adapters;
use syncline::wiring::Wiring;

#[tokio::main]
async fn main() -> Result<(), Error> {
    syncline::telemetry::init();
    let config = Config::from_env()?;
    let adapters = Adapters::from_config(&config).await?;
    let worker = Wiring::from_env(&config, &adapters).retry_worker()?;
    run(service_fn(|event| handle_retry_batch(&worker, event))).await
}
