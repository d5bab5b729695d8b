//! delivery: DynamoDB Streams and a schedule -> Lambda. Pokes the
//! real-time connections of the tenants a stream batch touched, and
//! delivers the change feed to destinations.

use lambda_runtime::{Error, run, service_fn};
use syncline::config::Config;
use syncline::lambda::delivery::handle_delivery;
use syncline::runtime::Adapters;
use syncline::wiring::Wiring;

#[tokio::main]
async fn main() -> Result<(), Error> {
    syncline::telemetry::init();
    let config = Config::from_env()?;
    let adapters = Adapters::from_config(&config).await?;
    let delivery = Wiring::from_env(&config, &adapters).delivery()?;
    run(service_fn(|event| {
        handle_delivery(&delivery.engine, delivery.poker.as_ref(), event)
    }))
    .await
}
