//! webhook: API Gateway HTTP -> Lambda. Verified, deduplicated ingestion.

use lambda_http::{Error, run, service_fn};
use syncline::config::{self, Config};
use syncline::lambda::webhook::handle_webhook;
use syncline::runtime::Adapters;
use syncline::webhooks::{WebhookService, WebhookSources};

#[tokio::main]
async fn main() -> Result<(), Error> {
    syncline::telemetry::init();
    let config = Config::from_env()?;
    let adapters = Adapters::from_config(&config).await?;
    let document = config::webhook_sources_document()?;
    let sources = WebhookSources::load(&document, config::env_var, Some(&adapters.sdk)).await?;
    let service = WebhookService::new(adapters.store.clone(), adapters.queue.clone(), sources);
    run(service_fn(|request| handle_webhook(&service, request))).await
}
