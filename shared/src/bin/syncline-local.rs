//! Serves one embedded store for every local function process: processes
//! must not each open the database file (each would cache its own table
//! definitions), so they all point `AWS_ENDPOINT_URL_DYNAMODB` here.

use std::process::ExitCode;

use syncline::config::{DEFAULT_TABLE, LocalStoreConfig};
use syncline::embedded::{EmbeddedEngine, Storage};
use syncline::store::Store;

#[tokio::main]
async fn main() -> ExitCode {
    match serve().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("syncline-local: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> syncline::Result<()> {
    let config = LocalStoreConfig::from_env()?;
    let path = config.data_dir.join("store.db");
    let engine = EmbeddedEngine::start(Storage::File(path.clone()), config.addr).await?;
    Store::from_sdk_config(&engine.sdk_config().await, DEFAULT_TABLE)
        .ensure_table()
        .await?;
    println!(
        "syncline store on {} (data in {})",
        engine.endpoint(),
        path.display()
    );
    println!("point local functions at it with:");
    println!(
        "  export SYNCLINE_TABLE={DEFAULT_TABLE} AWS_ENDPOINT_URL_DYNAMODB={} AWS_REGION=us-east-1 \
         AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local",
        engine.endpoint()
    );
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| syncline::Error::internal(format!("waiting for Ctrl-C: {e}")))?;
    engine.stop().await;
    Ok(())
}
