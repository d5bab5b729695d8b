//! retry-worker: SQS -> Lambda. Finishes failed work or dead-letters it.

use lambda_runtime::{Error, run, service_fn};
use syncline::Config;
use syncline::lambda::sqs::handle_retry_batch;
use syncline::retry::RetryWorker;
use syncline::runtime::Adapters;

#[tokio::main]
async fn main() -> Result<(), Error> {
    syncline::telemetry::init();
    let config = Config::from_env()?;
    let adapters = Adapters::from_config(&config).await?;
    let worker = RetryWorker::new(adapters.store.clone(), adapters.queue.clone(), config.retry);
    run(service_fn(|event| handle_retry_batch(&worker, event))).await
}
