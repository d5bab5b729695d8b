//! The cold-start baseline: a bare lambda_runtime function that echoes its
//! event, built with the same profile as syncline's functions
//! (`tests/benches/cold_start.rs`).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}
