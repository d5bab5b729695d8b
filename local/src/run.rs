//! The whole of syncline in one local process: every
//! function's handler behind one HTTP port, the schedules emulated, the
//! retry queue drained into the retry worker.
//!
//! The handlers are the ones the Lambda binaries run; only the event
//! sources are emulated:
//! - API Gateway: requests to `/v1/webhooks/*`, `/v1/sync/*`,
//!   `/api/client/sync/*` and `/v1/admin/*` go to webhook, sync-api and
//!   admin-api;
//! - the Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`,
//!   what `cargo lambda invoke` calls) reaches scheduled-sync,
//!   discrepancy-check and retry-worker with an event document;
//! - EventBridge: scheduled-sync and discrepancy-check invoked on intervals;
//! - SQS's event source: the retry queue polled into retry-worker;
//! - API Gateway's WebSocket API and DynamoDB Streams: `GET /v1/sync/live`
//!   upgraded to a socket that receives pokes (module `live`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_http::{Body, Request, Response};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};

use syncline::auth::AuthConfig;
use syncline::config;
use syncline::delivery::DeliveryEngine;
use syncline::discrepancy::DiscrepancyChecker;
use syncline::error::{Error, Result};
use syncline::ingest::SyncEngine;
use syncline::lambda::admin_api::{AdminApi, handle_admin};
use syncline::lambda::http::error_response;
use syncline::lambda::sync_api::{SyncApi, handle_sync};
use syncline::lambda::webhook::handle_webhook;
use syncline::model::Timestamp;
use syncline::queue::RetryQueue;
use syncline::retry::{RetryPolicy, RetryWorker};
use syncline::runtime::Adapters;
use syncline::store::{BulkWrites, Store, Tidied};
use syncline::webhooks::WebhookService;
use syncline::wiring::{DiscrepancyCheck, ScheduledSync, Vars, Wiring};

use crate::live::Live;

/// The local defaults: the sample configuration in `events/` and the
/// documented local secrets. The same values `[workspace.metadata.lambda]`
/// gives `cargo lambda watch`. A variable set in the environment wins.
pub const LOCAL_DEFAULTS: &[(&str, &str)] = &[
    (
        "SYNCLINE_WEBHOOK_SOURCES_FILE",
        "events/webhook/sources.json",
    ),
    ("CALENDLY_WEBHOOK_SECRET", "calendly-local-test-secret"),
    ("SYNCLINE_ENTITIES_FILE", "events/sync-api/entities.json"),
    ("SYNCLINE_JWT_HS256_SECRET", "syncline-local-jwt-secret"),
    (
        "SYNCLINE_SOURCES_FILE",
        "events/scheduled-sync/sources.json",
    ),
];

/// An environment variable, else its local default.
pub fn local_var(name: &str) -> Option<String> {
    config::env_var(name).or_else(|| {
        LOCAL_DEFAULTS
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    })
}

/// Every function's handler over one store and one retry queue.
pub struct Functions {
    pub store: Store,
    pub queue: Arc<dyn RetryQueue>,
    pub engine: Arc<SyncEngine>,
    webhook: WebhookService,
    sync: SyncApi,
    admin: AdminApi,
    /// scheduled-sync: its engine, its own worker (continuations inline)
    /// and the console's sampler.
    scheduled: ScheduledSync,
    /// retry-worker: every kind of work.
    worker: RetryWorker,
    checker: DiscrepancyChecker,
    pub delivery: Arc<DeliveryEngine>,
    /// The real-time channel: sockets, connect, pokes.
    pub live: Live,
}

impl std::fmt::Debug for Functions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Functions").finish_non_exhaustive()
    }
}

impl Functions {
    /// Builds every function's handlers with the builders their `main`s
    /// call, reading configuration through `var`.
    pub async fn build(
        adapters: &Adapters,
        var: Vars<'_>,
        auth: &AuthConfig,
        retry: RetryPolicy,
    ) -> Result<Self> {
        let wiring = Wiring::new(adapters, var, retry).with_auth(auth.clone());
        let scheduled = wiring.scheduled_sync()?;
        let engine = scheduled.engine.clone();
        let DiscrepancyCheck { checker, .. } = wiring.discrepancy_check()?;
        Ok(Self {
            webhook: wiring.webhook().await?,
            sync: wiring.sync_api()?,
            admin: wiring.admin_api()?,
            checker,
            scheduled,
            worker: wiring.retry_worker()?,
            delivery: wiring.destinations()?,
            live: Live::new(wiring.realtime()?),
            store: adapters.store.clone(),
            queue: adapters.queue.clone(),
            engine,
        })
    }

    /// The registered entity types of the sync API.
    pub fn entity_types(&self) -> Vec<syncline::model::EntityType> {
        self.sync.service.registry().entity_types()
    }

    /// One API Gateway request, routed by path to webhook, sync-api or
    /// admin-api.
    pub async fn http(&self, request: Request) -> Response<Body> {
        let path = request.uri().path();
        let response = if path.starts_with("/v1/webhooks/") {
            handle_webhook(&self.webhook, request).await
        } else if path == "/v1/admin"
            || path.starts_with("/v1/admin/")
            || path.starts_with("/api/v1/admin/")
            || path.starts_with("/api/sync-worker/")
        {
            handle_admin(&self.admin, request).await
        } else if path.starts_with("/v1/sync/") || path.starts_with("/api/client/sync/") {
            handle_sync(&self.sync, request).await
        } else {
            return error_response(&Error::NotFound("route".into()));
        };
        response.unwrap_or_else(|e| error_response(&Error::internal(e.to_string())))
    }

    /// One invocation of an event-driven function with `payload`, as the
    /// Lambda Invoke API would deliver it; `timeout` is the function's.
    pub async fn invoke(&self, function: &str, payload: Value, timeout: Duration) -> Result<Value> {
        let mut context = Context::default();
        context.request_id = uuid::Uuid::new_v4().to_string();
        context.deadline = Timestamp::now().plus(timeout).as_millis().max(0) as u64;
        let event = LambdaEvent::new(payload, context);
        let failed = |e: lambda_runtime::Error| Error::internal(format!("{function}: {e}"));
        match function {
            "scheduled-sync" => syncline::lambda::schedule::handle_schedule(&self.scheduled, event)
                .await
                .map_err(failed),
            "discrepancy-check" => {
                syncline::lambda::discrepancy::handle_check(&self.engine, &self.checker, event)
                    .await
                    .map_err(failed)
            }
            "delivery" => syncline::lambda::delivery::handle_delivery(&self.delivery, None, event)
                .await
                .map_err(failed),
            "retry-worker" => {
                let (payload, context) = event.into_parts();
                let sqs: SqsEvent = serde_json::from_value(payload)
                    .map_err(|e| Error::validation("event", format!("not an SQS event: {e}")))?;
                let response = syncline::lambda::sqs::handle_retry_batch(
                    &self.worker,
                    LambdaEvent::new(sqs, context),
                )
                .await
                .map_err(failed)?;
                serde_json::to_value(response).map_err(|e| Error::internal(e.to_string()))
            }
            other => Err(Error::NotFound(format!("function {other}"))),
        }
    }

    /// Feeds the retry queue to the retry worker until it is empty, the way
    /// Lambda's SQS event source does. Returns how many messages it handled.
    pub async fn drain(&self) -> Result<usize> {
        let mut handled = 0;
        loop {
            let batch = syncline::lambda::sqs::poll_once(
                &*self.queue,
                &self.worker,
                Duration::from_secs(900),
                Duration::from_secs(900),
                Duration::ZERO,
            )
            .await?;
            if batch == 0 {
                return Ok(handled);
            }
            handled += batch;
        }
    }
}

/// The function timeouts of `infra/template.yaml`, for invocation deadlines.
pub(crate) fn timeout_of(function: &str) -> Duration {
    match function {
        "scheduled-sync" | "discrepancy-check" => Duration::from_secs(900),
        _ => Duration::from_secs(60),
    }
}

/// How often the emulated event sources fire.
#[derive(Debug, Clone, Copy)]
pub struct Schedules {
    /// scheduled-sync with the "all due" schedule event; `None`: never.
    pub sync_every: Option<Duration>,
    /// discrepancy-check of every source (without repair); `None`: never.
    pub check_every: Option<Duration>,
    /// The retry queue polled into retry-worker.
    pub drain_every: Duration,
    /// delivery, as DynamoDB Streams would wake it; `None`: never.
    pub deliver_every: Option<Duration>,
}

impl Schedules {
    /// From `SYNCLINE_LOCAL_SYNC_SECS` (default 60), `SYNCLINE_LOCAL_CHECK_SECS`
    /// (default 3600), 0 turning either off, and `SYNCLINE_LOCAL_DRAIN_SECS`
    /// (default 1).
    pub fn from_vars(var: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let secs = |name: &str, default: u64| -> Result<Option<Duration>> {
            match var(name) {
                None => Ok(Some(Duration::from_secs(default))),
                Some(raw) => raw
                    .parse::<u64>()
                    .map(|s| (s > 0).then(|| Duration::from_secs(s)))
                    .map_err(|_| {
                        Error::Config(format!("{name} must be a whole number of seconds"))
                    }),
            }
        };
        Ok(Self {
            sync_every: secs("SYNCLINE_LOCAL_SYNC_SECS", 60)?,
            check_every: secs("SYNCLINE_LOCAL_CHECK_SECS", 3600)?,
            deliver_every: match var("SYNCLINE_LOCAL_DELIVER_MS") {
                None => Some(Duration::from_millis(250)),
                Some(raw) => raw
                    .parse::<u64>()
                    .map(|ms| (ms > 0).then(|| Duration::from_millis(ms)))
                    .map_err(|_| {
                        Error::Config("SYNCLINE_LOCAL_DELIVER_MS must be whole milliseconds".into())
                    })?,
            },
            drain_every: secs("SYNCLINE_LOCAL_DRAIN_SECS", 1)?.ok_or_else(|| {
                Error::Config("SYNCLINE_LOCAL_DRAIN_SECS must be at least 1".into())
            })?,
        })
    }
}

/// The "all due" schedule event EventBridge sends.
pub fn schedule_event() -> Value {
    json!({"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}})
}

/// One line per run of a scheduled-sync response.
pub fn describe_runs(output: &Value) -> Vec<String> {
    let mut lines: Vec<String> = output["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|run| {
            let counts = &run["counts"];
            format!(
                "scheduled-sync: {} {} {}: seen {}, created {}, updated {}, unchanged {}, deleted {}, failed {}{}",
                run["source"].as_str().unwrap_or("?"),
                run["kind"].as_str().unwrap_or("?"),
                run["status"].as_str().unwrap_or("?"),
                counts["seen"],
                counts["created"],
                counts["updated"],
                counts["unchanged"],
                counts["deleted"],
                counts["failed"],
                run["error"]
                    .as_str()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default(),
            )
        })
        .collect();
    for busy in output["busy"].as_array().into_iter().flatten() {
        lines.push(format!(
            "scheduled-sync: {} is already running",
            busy.as_str().unwrap_or("?")
        ));
    }
    lines
}

/// Runs the emulated schedules and the queue poller until aborted.
/// Each line of output goes to `report`.
pub fn spawn_schedules(
    functions: Arc<Functions>,
    schedules: Schedules,
    report: fn(&str),
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    if let Some(every) = schedules.sync_every {
        let functions = functions.clone();
        tasks.push(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                match functions
                    .invoke(
                        "scheduled-sync",
                        schedule_event(),
                        timeout_of("scheduled-sync"),
                    )
                    .await
                {
                    Ok(output) => describe_runs(&output).iter().for_each(|l| report(l)),
                    Err(e) => report(&format!("scheduled-sync failed: {e}")),
                }
            }
        }));
    }
    if let Some(every) = schedules.check_every {
        let functions = functions.clone();
        tasks.push(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await; // the first check waits one interval
            loop {
                ticks.tick().await;
                match functions
                    .invoke(
                        "discrepancy-check",
                        schedule_event(),
                        timeout_of("discrepancy-check"),
                    )
                    .await
                {
                    Ok(output) => {
                        for report_json in output["reports"].as_array().into_iter().flatten() {
                            report(&format!(
                                "discrepancy-check: {} missing {}, extra {}, stale {}",
                                report_json["source"].as_str().unwrap_or("?"),
                                report_json["missing_total"],
                                report_json["extra_total"],
                                report_json["stale_total"],
                            ));
                        }
                    }
                    Err(e) => report(&format!("discrepancy-check failed: {e}")),
                }
            }
        }));
    }
    if let Some(every) = schedules.deliver_every {
        let functions = functions.clone();
        tasks.push(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let deadline = Timestamp::now().plus(timeout_of("delivery"));
                match functions.delivery.deliver_all(deadline).await {
                    Ok(runs) => {
                        for run in runs.iter().filter(|r| r.delivered + r.failed > 0) {
                            report(&format!(
                                "delivery: {} delivered {}, skipped {}, failed {}",
                                run.destination, run.delivered, run.skipped, run.failed
                            ));
                        }
                    }
                    Err(e) => report(&format!("delivery failed: {e}")),
                }
            }
        }));
    }
    tasks.push(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(schedules.drain_every);
        loop {
            ticks.tick().await;
            match functions.drain().await {
                Ok(0) => {}
                Ok(handled) => report(&format!("retry-worker: handled {handled} message(s)")),
                Err(e) => report(&format!("retry-worker failed: {e}")),
            }
        }
    }));
    tasks
}

/// A signed token for the local JWT secret: `tenant`, optional `scope`,
/// valid for `ttl`.
pub fn local_token(
    secret: &str,
    tenant: &str,
    scope: Option<&str>,
    ttl: Duration,
) -> Result<String> {
    let mut claims = json!({
        "sub": "local-user",
        "tenant": tenant,
        "exp": Timestamp::now().plus(ttl).as_secs(),
    });
    if let Some(scope) = scope {
        claims["scope"] = json!(scope);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| Error::internal(format!("signing a local token: {e}")))
}

/// How long a console sign-in link lasts.
pub const CONSOLE_LINK_TTL: Duration = Duration::from_secs(3600);

/// A sign-in link to the console at `http`: an admin token of `tenant`
/// valid for [`CONSOLE_LINK_TTL`], in the URL's fragment (which a browser
/// never sends to the server; the console takes it out of the address bar).
pub fn console_link(secret: &str, http: &str, tenant: &str) -> Result<String> {
    let token = local_token(secret, tenant, Some("admin"), CONSOLE_LINK_TTL)?;
    Ok(format!("http://{http}/v1/admin/console#token={token}"))
}

/// Binds `addr` on the loopback interface (or wherever it names).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("binding {addr}: {e}")))
}

/// What `syncline-local up` starts.
#[derive(Debug)]
pub struct UpSettings {
    /// Where the embedded store keeps its data.
    pub storage: crate::embedded::Storage,
    /// Where the store is served for other local processes (`cargo lambda
    /// watch`, `syncline-local drain`).
    pub store_addr: SocketAddr,
    /// The one HTTP port for every route and the Invoke API.
    pub http_addr: SocketAddr,
    pub auth: AuthConfig,
    pub retry: RetryPolicy,
    /// Emulated schedules and queue polling; `None` leaves every invocation
    /// to the caller.
    pub schedules: Option<Schedules>,
    /// A retry queue other than the local one kept in the store (SQS).
    pub queue: Option<Arc<dyn RetryQueue>>,
    /// Given the engine's endpoint, the endpoint the functions reach the
    /// store through (a proxy in front of it: the fault and latency tests).
    pub store_front: Option<StoreFront>,
}

/// A running local syncline.
#[derive(Debug)]
pub struct Running {
    /// The address of the HTTP routes.
    pub http: SocketAddr,
    /// The store endpoint other local processes point
    /// `AWS_ENDPOINT_URL_DYNAMODB` at.
    pub store_endpoint: String,
    pub functions: Arc<Functions>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    engine: crate::embedded::EmbeddedEngine,
}

impl Running {
    /// Stops the router, the schedules and the store.
    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.engine.stop().await;
    }
}

/// Starts the store, every function behind one HTTP port, and (when asked)
/// the emulated schedules; secrets named in the documents are read through
/// `var`. Lines of activity go to `report`.
/// See [`UpSettings::store_front`].
#[derive(Clone)]
pub struct StoreFront(pub Arc<dyn Fn(&str) -> String + Send + Sync>);

impl std::fmt::Debug for StoreFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreFront")
    }
}

/// How the local run writes bulk puts and deletes: in transactions, as the
/// embedded engine's own stores do ([`crate::embedded::EmbeddedEngine::store`]),
/// unless `SYNCLINE_BULK_WRITES=held` asks for the way it writes to DynamoDB.
pub fn bulk_writes(var: Vars<'_>) -> Result<BulkWrites> {
    match var("SYNCLINE_BULK_WRITES").as_deref() {
        None | Some("transactions") => Ok(BulkWrites::Transactions),
        Some("held") => Ok(BulkWrites::Held),
        Some(other) => Err(Error::Config(format!(
            "SYNCLINE_BULK_WRITES is {other:?}: say `transactions` or `held`"
        ))),
    }
}

pub async fn up(settings: UpSettings, var: Vars<'_>, report: fn(&str)) -> Result<Running> {
    let engine =
        crate::embedded::EmbeddedEngine::start(settings.storage, settings.store_addr).await?;
    let config = syncline::Config::from_vars(|name| {
        (name == "SYNCLINE_TABLE").then(|| config::DEFAULT_TABLE.to_owned())
    })?;
    // The process's store calls the engine in process; a test's front (a
    // proxy) is reached over HTTP.
    let mut adapters = match &settings.store_front {
        Some(front) => {
            let sdk = engine.sdk_config_via(&(front.0)(engine.endpoint())).await;
            Adapters::with_sdk_config(&config, &sdk).await?
        }
        None => {
            let store = engine.store(config::DEFAULT_TABLE).await;
            Adapters::with_store(&config, &engine.sdk_config().await, store).await?
        }
    };
    adapters.store = adapters.store.clone().with_bulk_writes(bulk_writes(var)?);
    if let Some(queue) = settings.queue {
        adapters.queue = queue;
    }
    adapters.store.ensure_table().await?;
    let functions =
        Arc::new(Functions::build(&adapters, var, &settings.auth, settings.retry).await?);
    // This process is the only one using its store: a lease still held is
    // a killed predecessor's, and waiting it out (a run's deadline plus 15
    // minutes) would only delay the work it stopped.
    // The same holds for the blocks of sequence numbers its bulk writes
    // held: readers would stop before them until their deadlines.
    functions.engine.drop_leases().await?;
    functions.delivery.drop_leases().await?;
    // One Scan of the table: records of an earlier version's store given
    // their feed entries and moved to their shards, and blocks a killed
    // run held ended.
    let Tidied {
        moved,
        resharded,
        holds,
    } = adapters.store.tidy_at_start().await?;
    if moved > 0 {
        tracing::warn!(
            moved,
            "gave the records of a store written by an earlier version their feed entries"
        );
    }
    if resharded > 0 {
        tracing::warn!(
            resharded,
            "moved the records of a store written by an earlier version to their shards"
        );
    }
    if holds > 0 {
        tracing::warn!(
            holds,
            "ended the blocks of sequence numbers a killed run held"
        );
    }
    let listener = bind(settings.http_addr).await?;
    let http = listener
        .local_addr()
        .map_err(|e| Error::Config(format!("local router: {e}")))?;
    let mut tasks = vec![
        crate::router::serve(functions.clone(), listener),
        crate::live::spawn_pokes(functions.clone(), &adapters.store),
    ];
    if let Some(schedules) = settings.schedules {
        tasks.extend(spawn_schedules(functions.clone(), schedules, report));
    }
    Ok(Running {
        http,
        store_endpoint: engine.endpoint().to_owned(),
        functions,
        tasks,
        engine,
    })
}
