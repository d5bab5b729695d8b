//! admin-api: API Gateway HTTP -> Lambda. Status, health, runs, settings,
//! triggers and dead letters for operators.

use lambda_http::{Error, run, service_fn};
use syncline::admin::AdminService;
use syncline::auth::Authenticator;
use syncline::config::{self, Config};
use syncline::ingest::SourceSet;
use syncline::lambda::admin_api::{AdminApi, handle_admin};
use syncline::runtime::Adapters;

#[tokio::main]
async fn main() -> Result<(), Error> {
    syncline::telemetry::init();
    let config = Config::from_env()?;
    let adapters = Adapters::from_config(&config).await?;
    let sources = match config::optional_document("SYNCLINE_SOURCES")? {
        Some(document) => SourceSet::load(&document)?,
        None => SourceSet::default(),
    };
    let engine = adapters.sync_engine(sources);
    let api = AdminApi {
        service: AdminService::new(adapters.store.clone(), adapters.queue.clone(), engine),
        auth: Authenticator::new(&config::auth_config()?)?,
    };
    run(service_fn(|request| handle_admin(&api, request))).await
}
