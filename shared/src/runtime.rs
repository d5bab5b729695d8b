//! Builds the adapters a function needs from its configuration, once per
//! cold start.

use std::sync::Arc;

use crate::config::{Config, QueueBackend, StoreBackend};
#[cfg(not(feature = "embedded"))]
use crate::error::Error;
use crate::error::Result;
use crate::queue::{LocalQueue, RetryQueue, SqsQueue};
use crate::store::Store;

/// The store and retry queue a function works with.
#[derive(Debug, Clone)]
pub struct Adapters {
    pub store: Store,
    pub queue: Arc<dyn RetryQueue>,
    /// The AWS configuration the adapters were built from, for other
    /// clients (Secrets Manager).
    pub sdk: aws_config::SdkConfig,
    /// Keeps an in-process embedded engine alive as long as the adapters.
    #[cfg(feature = "embedded")]
    _engine: Option<Arc<crate::embedded::EmbeddedEngine>>,
}

impl Adapters {
    /// A sync engine over `sources`, on these adapters' store and queue.
    pub fn sync_engine(&self, sources: crate::ingest::SourceSet) -> Arc<crate::ingest::SyncEngine> {
        Arc::new(crate::ingest::SyncEngine::new(
            self.store.clone(),
            self.queue.clone(),
            sources,
        ))
    }

    pub fn secrets_manager(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.sdk)
    }

    /// The adapters `config` names, with the AWS configuration (region,
    /// credentials, `AWS_ENDPOINT_URL*`) read from the environment.
    pub async fn from_config(config: &Config) -> Result<Self> {
        let sdk = aws_config::load_from_env().await;
        Self::with_sdk_config(config, &sdk).await
    }

    /// The adapters `config` names, reaching AWS (or a local endpoint)
    /// through `sdk`. An embedded store ignores `sdk`.
    pub async fn with_sdk_config(config: &Config, sdk: &aws_config::SdkConfig) -> Result<Self> {
        #[cfg(feature = "embedded")]
        let mut engine = None;
        let store = match &config.store {
            StoreBackend::DynamoDb { table } => Store::from_sdk_config(sdk, table.as_str()),
            #[cfg(feature = "embedded")]
            StoreBackend::Embedded { data_dir } => {
                let (store, started) = crate::embedded::start_store(
                    crate::embedded::Storage::File(data_dir.join("store.db")),
                    crate::config::DEFAULT_TABLE,
                )
                .await?;
                engine = Some(Arc::new(started));
                store
            }
            #[cfg(not(feature = "embedded"))]
            StoreBackend::Embedded { .. } => {
                return Err(Error::Config(
                    "SYNCLINE_TABLE is not set and this build has no embedded store \
                     (build with the `embedded` feature, or set SYNCLINE_TABLE)"
                        .into(),
                ));
            }
        };
        let queue: Arc<dyn RetryQueue> = match &config.queue {
            QueueBackend::Sqs {
                url,
                dead_letter_url,
            } => {
                let client = aws_sdk_sqs::Client::new(sdk);
                Arc::new(SqsQueue::connect(client, url, dead_letter_url.as_deref()).await?)
            }
            QueueBackend::Local { name, max_receives } => {
                Arc::new(LocalQueue::new(store.clone(), name, *max_receives)?)
            }
        };
        Ok(Self {
            store,
            queue,
            sdk: sdk.clone(),
            #[cfg(feature = "embedded")]
            _engine: engine,
        })
    }
}
