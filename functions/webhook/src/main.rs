//! webhook: API Gateway HTTP -> Lambda. Verified, deduplicated ingestion.

use lambda_http::{Error, run, service_fn};
use syncline::config::Config;
use syncline::lambda::webhook::handle_webhook;
use syncline::runtime::Adapters;
use syncline::wiring::Wiring;

#[tokio::main]
async fn main() -> Result<(), Error> {
    syncline::telemetry::init();
    let config = Config::from_env()?;
    let adapters = Adapters::from_config(&config).await?;
    let service = Wiring::from_env(&config, &adapters).webhook().await?;
    run(service_fn(|request| handle_webhook(&service, request))).await
}
