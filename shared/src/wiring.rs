//! How each function is put together from its configuration. One builder
//! per function, called by that function's `main.rs` and by the local run
//! (crate `syncline-local`), so the two cannot drift apart.

use std::sync::{Arc, OnceLock};

use crate::admin::{AdminService, Sampler};
use crate::auth::{AuthConfig, Authenticator};
use crate::config::{self, Config};
use crate::connectors::SourceClient;
use crate::delivery::{DeliveryEngine, DeliveryHandler};
use crate::discrepancy::DiscrepancyChecker;
use crate::error::Result;
use crate::ingest::{SourceSet, SyncEngine, local_secret, register_sync_work};
use crate::lambda::admin_api::AdminApi;
use crate::lambda::sync_api::SyncApi;
use crate::realtime::{ApiGatewayChannel, Poker, Realtime};
use crate::retry::{RetryPolicy, RetryWorker, WorkKind};
use crate::runtime::Adapters;
use crate::sync::{EntityRegistry, SyncService};
use crate::webhooks::{WebhookService, WebhookSources};

/// Reads a configuration variable (the environment in Lambda; the
/// environment over the local defaults in the local run).
pub type Vars<'a> = &'a (dyn Fn(&str) -> Option<String> + Sync);

/// What every function is built from.
pub struct Wiring<'a> {
    adapters: &'a Adapters,
    var: Vars<'a>,
    auth: Option<AuthConfig>,
    retry: RetryPolicy,
    /// One sync engine per process, shared by every handler that needs it.
    engine: OnceLock<Arc<SyncEngine>>,
    /// Likewise the delivery engine.
    delivery: OnceLock<Arc<DeliveryEngine>>,
}

/// scheduled-sync: the engine and the worker that runs its continuations.
pub struct ScheduledSync {
    pub engine: Arc<SyncEngine>,
    pub worker: RetryWorker,
    /// The console's samples (dead letters, destination lag), one a tick.
    pub sampler: Sampler,
}

/// delivery: the destinations' engine and, with a WebSocket API, the pokes.
pub struct Delivery {
    pub engine: Arc<DeliveryEngine>,
    pub poker: Option<Poker>,
}

/// discrepancy-check: the checker and the engine whose sources it reads.
pub struct DiscrepancyCheck {
    pub engine: Arc<SyncEngine>,
    pub checker: DiscrepancyChecker,
}

impl<'a> Wiring<'a> {
    /// A function in Lambda: variables from the environment, the retry
    /// policy of `config`.
    pub fn from_env(config: &Config, adapters: &'a Adapters) -> Self {
        Self::new(adapters, &config::env_var, config.retry)
    }

    /// Variables read through `var`; authentication configured from them
    /// unless [`Wiring::with_auth`] says otherwise.
    pub fn new(adapters: &'a Adapters, var: Vars<'a>, retry: RetryPolicy) -> Self {
        Self {
            adapters,
            var,
            auth: None,
            retry,
            engine: OnceLock::new(),
            delivery: OnceLock::new(),
        }
    }

    pub fn with_auth(mut self, auth: AuthConfig) -> Self {
        self.auth = Some(auth);
        self
    }

    fn authenticator(&self) -> Result<Authenticator> {
        match &self.auth {
            Some(auth) => Authenticator::new(auth),
            None => Authenticator::new(&config::auth_config_from(self.var)?),
        }
    }

    /// The sync engine over the REST sources document; `required`: a
    /// missing document fails the start, otherwise it means no sources.
    fn engine(&self, required: bool) -> Result<Arc<SyncEngine>> {
        if let Some(engine) = self.engine.get() {
            return Ok(engine.clone());
        }
        self.engine_over(self.document("SYNCLINE_SOURCES", required)?)
    }

    /// The sync engine over a sources document already read.
    fn engine_over(&self, document: Option<String>) -> Result<Arc<SyncEngine>> {
        if let Some(engine) = self.engine.get() {
            return Ok(engine.clone());
        }
        let sources = match document {
            Some(document) => {
                SourceSet::parse(&document, SourceClient::lazy(), local_secret(self.var))?
            }
            None => SourceSet::default(),
        };
        Ok(self
            .engine
            .get_or_init(|| self.adapters.sync_engine(sources))
            .clone())
    }

    /// The JSON document `{name}` or `{name}_FILE`; `required`: a missing
    /// one fails the start, otherwise it is `None`.
    fn document(&self, name: &str, required: bool) -> Result<Option<String>> {
        if required {
            config::document_from(self.var, name).map(Some)
        } else {
            config::optional_document_from(self.var, name)
        }
    }

    /// The delivery engine over the destinations document
    /// (`SYNCLINE_DESTINATIONS[_FILE]`); a missing one means none.
    fn delivery_engine(&self) -> Result<Arc<DeliveryEngine>> {
        if let Some(engine) = self.delivery.get() {
            return Ok(engine.clone());
        }
        self.delivery_over(self.document("SYNCLINE_DESTINATIONS", false)?)
    }

    /// The delivery engine over a destinations document already read.
    fn delivery_over(&self, document: Option<String>) -> Result<Arc<DeliveryEngine>> {
        if let Some(engine) = self.delivery.get() {
            return Ok(engine.clone());
        }
        let (store, queue) = (self.adapters.store.clone(), self.adapters.queue.clone());
        let engine = match document {
            Some(document) => DeliveryEngine::new(
                store,
                queue,
                &document,
                SourceClient::lazy(),
                local_secret(self.var),
            )?,
            None => DeliveryEngine::none(store, queue),
        };
        Ok(self.delivery.get_or_init(|| Arc::new(engine)).clone())
    }

    fn worker(&self) -> RetryWorker {
        RetryWorker::new(
            self.adapters.store.clone(),
            self.adapters.queue.clone(),
            self.retry,
        )
    }

    /// sync-api: the entity registry (`SYNCLINE_ENTITIES[_FILE]`, required)
    /// and token checks.
    pub fn sync_api(&self) -> Result<SyncApi> {
        let registry =
            EntityRegistry::parse(&config::document_from(self.var, "SYNCLINE_ENTITIES")?)?;
        Ok(SyncApi {
            service: SyncService::new(self.adapters.store.clone(), registry),
            auth: self.authenticator()?,
        })
    }

    /// admin-api: the sources, when this deployment has any, and token checks.
    pub fn admin_api(&self) -> Result<AdminApi> {
        let engine = self.engine(false)?;
        let registry = match self.document("SYNCLINE_ENTITIES", false)? {
            Some(document) => EntityRegistry::parse(&document)?,
            None => EntityRegistry::parse(r#"{"entities": {}}"#)?,
        };
        Ok(AdminApi {
            sync: SyncService::new(self.adapters.store.clone(), registry),
            service: AdminService::new(
                self.adapters.store.clone(),
                self.adapters.queue.clone(),
                engine,
            )
            .with_delivery(self.delivery_engine()?),
            auth: self.authenticator()?,
        })
    }

    /// delivery: the destinations (`SYNCLINE_DESTINATIONS[_FILE]`) and the
    /// pokes of the real-time channel (`SYNCLINE_WEBSOCKET_ENDPOINT`, the
    /// WebSocket API's management endpoint); at least one of the two.
    pub fn delivery(&self) -> Result<Delivery> {
        let document = self.document("SYNCLINE_DESTINATIONS", false)?;
        let endpoint = (self.var)("SYNCLINE_WEBSOCKET_ENDPOINT").filter(|e| !e.is_empty());
        if document.is_none() && endpoint.is_none() {
            return Err(crate::Error::Config(
                "delivery has nothing to do: set SYNCLINE_DESTINATIONS (or _FILE) \
                 or SYNCLINE_WEBSOCKET_ENDPOINT"
                    .into(),
            ));
        }
        Ok(Delivery {
            engine: self.delivery_over(document)?,
            poker: endpoint.map(|endpoint| {
                Poker::new(
                    self.adapters.store.clone(),
                    Arc::new(ApiGatewayChannel::new(&self.adapters.sdk, &endpoint)),
                )
            }),
        })
    }

    /// The destinations when the deployment has any, else none (the local
    /// run delivers whatever is configured).
    pub fn destinations(&self) -> Result<Arc<DeliveryEngine>> {
        self.delivery_engine()
    }

    /// realtime: WebSocket connect and disconnect, with the sync API's
    /// token checks (a WebSocket API has no JWT authorizer: the function
    /// checks tokens itself, so a key source must be configured).
    pub fn realtime(&self) -> Result<Realtime> {
        Ok(Realtime::new(
            self.adapters.store.clone(),
            self.authenticator()?,
        ))
    }

    /// webhook: the webhook sources (`SYNCLINE_WEBHOOK_SOURCES[_FILE]`,
    /// required) with their secrets.
    pub async fn webhook(&self) -> Result<WebhookService> {
        let document = config::document_from(self.var, "SYNCLINE_WEBHOOK_SOURCES")?;
        let sources = WebhookSources::load(&document, self.var, Some(&self.adapters.sdk)).await?;
        Ok(WebhookService::new(
            self.adapters.store.clone(),
            self.adapters.queue.clone(),
            sources,
        ))
    }

    /// scheduled-sync: the REST sources (required).
    pub fn scheduled_sync(&self) -> Result<ScheduledSync> {
        let engine = self.engine(true)?;
        let mut worker = self.worker();
        register_sync_work(&mut worker, engine.clone());
        let sampler = Sampler::new(
            self.adapters.store.clone(),
            self.adapters.queue.clone(),
            self.delivery_engine()?,
        );
        Ok(ScheduledSync {
            engine,
            worker,
            sampler,
        })
    }

    /// discrepancy-check: the REST sources (required).
    pub fn discrepancy_check(&self) -> Result<DiscrepancyCheck> {
        let engine = self.engine(true)?;
        let checker = DiscrepancyChecker::new(
            self.adapters.store.clone(),
            self.adapters.queue.clone(),
            engine.clone(),
        );
        Ok(DiscrepancyCheck { engine, checker })
    }

    /// retry-worker: every kind of work, sync work included when this
    /// deployment has REST sources, deliveries when it has destinations.
    pub fn retry_worker(&self) -> Result<RetryWorker> {
        let mut worker = self.worker();
        // Each document is read once: whether it is there decides which
        // work this worker takes.
        if let Some(document) = self.document("SYNCLINE_SOURCES", false)? {
            register_sync_work(&mut worker, self.engine_over(Some(document))?);
        }
        if let Some(document) = self.document("SYNCLINE_DESTINATIONS", false)? {
            worker.register(
                WorkKind::Delivery,
                Arc::new(DeliveryHandler::new(self.delivery_over(Some(document))?)),
            );
        }
        Ok(worker)
    }
}
