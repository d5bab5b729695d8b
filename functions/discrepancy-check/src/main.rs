//! discrepancy-check: EventBridge schedule or on demand -> Lambda. Finds
//! what differs between each source and the store.

use lambda_runtime::{Error, run, service_fn};
use syncline::config::Config;
use syncline::lambda::discrepancy::handle_check;
use syncline::runtime::Adapters;
use syncline::wiring::Wiring;

#[tokio::main]
async fn main() -> Result<(), Error> {
    syncline::telemetry::init();
    let config = Config::from_env()?;
    let adapters = Adapters::from_config(&config).await?;
    let check = Wiring::from_env(&config, &adapters).discrepancy_check()?;
    run(service_fn(|event| {
        handle_check(&check.engine, &check.checker, event)
    }))
    .await
}
