//! The embedded DynamoDB-compatible engine (dynoxide) for local runs and
//! tests: served on 127.0.0.1 for other processes, and called directly by
//! the stores of this process (`in_process`), so the storage code talks to
//! it over the same DynamoDB API it uses in AWS. Never linked into a Lambda
//! binary.
//!
//! Several processes must not open one database file each (every process
//! caches table definitions): one process serves the engine and the others
//! are pointed at its endpoint with `AWS_ENDPOINT_URL_DYNAMODB`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use syncline::config::{Config, DEFAULT_TABLE, StoreBackend};
use syncline::error::{Error, Result};
use syncline::runtime::Adapters;
use syncline::store::{BulkWrites, Store};

/// Where the embedded engine keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    Memory,
    /// A SQLite file; its directory is created if missing.
    File(PathBuf),
}

/// A running engine; stops when dropped.
#[derive(Debug)]
pub struct EmbeddedEngine {
    endpoint: String,
    /// The engine called without HTTP, for this process's SDK clients.
    http_client: aws_sdk_dynamodb::config::SharedHttpClient,
    answerer: crate::in_process::Answerer,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

fn engine_error(context: &str, err: impl std::fmt::Display) -> Error {
    Error::Internal {
        context: format!("embedded store: {context}: {err}"),
        source: None,
    }
}

impl EmbeddedEngine {
    /// Serves `storage` on `addr` (use port 0 for any free port).
    pub async fn start(storage: Storage, addr: SocketAddr) -> Result<Self> {
        let database = match &storage {
            Storage::Memory => dynoxide::Database::memory(),
            Storage::File(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| engine_error("creating the data directory", e))?;
                }
                let path = path
                    .to_str()
                    .ok_or_else(|| engine_error("opening", "path is not UTF-8"))?;
                dynoxide::Database::new(path)
            }
        }
        .map_err(|e| engine_error("opening the database", e))?;
        // A commit reaches the write-ahead log without waiting for the disk:
        // what a killed process wrote survives (only a power cut can lose
        // the last commits), and a sync commits several times a second.
        // dynoxide opens with SQLite's default (FULL, an fsync a commit);
        // this call sets its "normal" pragmas: synchronous = NORMAL and the
        // default cache.
        database
            .disable_bulk_loading()
            .map_err(|e| engine_error("setting synchronous = NORMAL", e))?;
        let http_client = crate::in_process::http_client(database.clone());
        let answerer = crate::in_process::Answerer::new(database.clone());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| engine_error("binding", e))?;
        let bound = listener
            .local_addr()
            .map_err(|e| engine_error("reading the bound address", e))?;
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stopped = async {
                let _ = stop.await;
            };
            if let Err(err) =
                dynoxide::server::serve_with_shutdown(listener, database, stopped).await
            {
                tracing::error!(error = %err, "embedded store stopped");
            }
        });
        Ok(Self {
            endpoint: format!("http://{bound}"),
            http_client,
            answerer,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The engine's operations called without HTTP, for a server in front
    /// of it (see [`crate::in_process::Answerer`]).
    pub fn answerer(&self) -> crate::in_process::Answerer {
        self.answerer.clone()
    }

    /// SDK configuration pointed at this engine's HTTP endpoint, with
    /// placeholder credentials (the engine does not check signatures).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        self.sdk_config_via(&self.endpoint).await
    }

    /// SDK configuration reaching this engine over HTTP through `endpoint`
    /// (its own, or a proxy in front of it).
    pub async fn sdk_config_via(&self, endpoint: &str) -> aws_config::SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new("local", "local", None, None, "syncline"))
            .load()
            .await
    }

    /// A store on `table` of this engine, writing bulk puts and deletes in
    /// transactions: here a request costs CPU and a commit, not a round
    /// trip, and nothing is billed per write.
    ///
    /// The store calls the engine in this process (`in_process`), not over
    /// its HTTP endpoint.
    pub async fn store(&self, table: &str) -> Store {
        let config = self.in_process_config().await.build();
        Store::new(aws_sdk_dynamodb::Client::from_conf(config), table)
            .with_bulk_writes(BulkWrites::Transactions)
    }

    /// DynamoDB client configuration calling this engine in this process,
    /// retrying as [`syncline::store::store_retry`] says.
    pub async fn in_process_config(&self) -> aws_sdk_dynamodb::config::Builder {
        aws_sdk_dynamodb::config::Builder::from(&self.sdk_config().await)
            .http_client(self.http_client.clone())
            .retry_config(syncline::store::store_retry())
    }

    /// Stops serving and waits until open connections are done.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EmbeddedEngine {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Starts an engine on a free port of 127.0.0.1, creates `table` in it and
/// returns a store on that table.
pub async fn start_store(storage: Storage, table: &str) -> Result<(Store, EmbeddedEngine)> {
    let engine = EmbeddedEngine::start(storage, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let store = engine.store(table).await;
    store.ensure_table().await?;
    Ok((store, engine))
}

/// The adapters `config` names, with the embedded store when it names no
/// table: the engine then runs in this process, keeps its data under the
/// data directory, and lives as long as the adapters.
pub async fn adapters(config: &Config) -> Result<Adapters> {
    match &config.store {
        StoreBackend::Embedded { data_dir } => {
            let (store, engine) =
                start_store(Storage::File(data_dir.join("store.db")), DEFAULT_TABLE).await?;
            let sdk = engine.sdk_config().await;
            Ok(Adapters::with_store(config, &sdk, store)
                .await?
                .keeping(Arc::new(engine)))
        }
        StoreBackend::DynamoDb { .. } => Adapters::from_config(config).await,
    }
}
