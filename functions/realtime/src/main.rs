//! realtime: API Gateway WebSocket routes -> Lambda. Checks a client's
//! token at `$connect` and keeps its connection; forgets it at
//! `$disconnect`. The pokes themselves are sent by delivery.

use lambda_runtime::{Error, run, service_fn};
use syncline::config::Config;
use syncline::lambda::realtime::handle_socket;
use syncline::runtime::Adapters;
use syncline::wiring::Wiring;

#[tokio::main]
async fn main() -> Result<(), Error> {
    syncline::telemetry::init();
    let config = Config::from_env()?;
    let adapters = Adapters::from_config(&config).await?;
    let realtime = Wiring::from_env(&config, &adapters).realtime()?;
    run(service_fn(|event| handle_socket(&realtime, event))).await
}
