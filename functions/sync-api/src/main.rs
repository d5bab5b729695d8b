//! sync-api: API Gateway HTTP -> Lambda. Exactly-once push, gap-free pull.

use lambda_http::{Error, run, service_fn};
use syncline::auth::Authenticator;
use syncline::config::{self, Config};
use syncline::lambda::sync_api::{SyncApi, handle_sync};
use syncline::runtime::Adapters;
use syncline::sync::{EntityRegistry, SyncService};

#[tokio::main]
async fn main() -> Result<(), Error> {
    syncline::telemetry::init();
    let config = Config::from_env()?;
    let adapters = Adapters::from_config(&config).await?;
    let registry = EntityRegistry::parse(&config::document("SYNCLINE_ENTITIES")?)?;
    let api = SyncApi {
        service: SyncService::new(adapters.store.clone(), registry),
        auth: Authenticator::new(&config::auth_config()?)?,
    };
    run(service_fn(|request| handle_sync(&api, request))).await
}
