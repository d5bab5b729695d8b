//! scheduled-sync: EventBridge schedule -> Lambda. Pulls REST sources.

use lambda_runtime::{Error, run, service_fn};
use syncline::config::Config;
use syncline::lambda::schedule::handle_schedule;
use syncline::runtime::Adapters;
use syncline::wiring::Wiring;

#[tokio::main]
async fn main() -> Result<(), Error> {
    syncline::telemetry::init();
    let config = Config::from_env()?;
    let adapters = Adapters::from_config(&config).await?;
    let sync = Wiring::from_env(&config, &adapters).scheduled_sync()?;
    run(service_fn(|event| handle_schedule(&sync, event))).await
}
