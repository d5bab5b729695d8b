//! sync-api: API Gateway HTTP -> Lambda. Exactly-once push, gap-free pull.

use lambda_http::{Error, run, service_fn};
use syncline::config::Config;
use syncline::lambda::sync_api::handle_sync;
use syncline::runtime::Adapters;
use syncline::wiring::Wiring;

#[tokio::main]
async fn main() -> Result<(), Error> {
    syncline::telemetry::init();
    let config = Config::from_env()?;
    let adapters = Adapters::from_config(&config).await?;
    let api = Wiring::from_env(&config, &adapters).sync_api()?;
    run(service_fn(|request| handle_sync(&api, request))).await
}
