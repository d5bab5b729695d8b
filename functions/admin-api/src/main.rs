//! admin-api: API Gateway HTTP -> Lambda. Status, health, runs, settings,
//! triggers and dead letters for operators.

use lambda_http::{Error, run, service_fn};
use syncline::config::Config;
use syncline::lambda::admin_api::handle_admin;
use syncline::runtime::Adapters;
use syncline::wiring::Wiring;

#[tokio::main]
async fn main() -> Result<(), Error> {
    syncline::telemetry::init();
    let config = Config::from_env()?;
    let adapters = Adapters::from_config(&config).await?;
    let api = Wiring::from_env(&config, &adapters).admin_api()?;
    run(service_fn(|request| handle_admin(&api, request))).await
}
