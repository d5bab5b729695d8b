//! Builds the adapters a function needs from its configuration, once per
//! cold start.

use std::sync::Arc;

use crate::config::{Config, QueueBackend, StoreBackend};
use crate::error::{Error, Result};
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
    /// Whatever must live as long as the adapters (an in-process store
    /// engine of the local run).
    _keep: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

/// The root CAs of AWS's service endpoints (Amazon Trust Services: Amazon
/// Root CA 1 to 4 and Starfield Services Root G2, from the Mozilla bundle).
const AWS_ROOTS: &str = include_str!("aws-roots.pem");

/// The SDK's HTTPS client trusting only AWS's root CAs, when the SDK talks to
/// AWS itself: parsing five roots instead of the system's ~150 takes most of
/// the TLS setup out of a cold start. `None` (the SDK's default client with
/// the system's roots) when an `AWS_ENDPOINT_URL*` points elsewhere
/// (LocalStack, a proxy) or `SYNCLINE_AWS_SYSTEM_ROOTS=true`.
pub fn aws_https_client(
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<aws_sdk_dynamodb::config::SharedHttpClient>> {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
    let custom_endpoint = [
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    ]
    .iter()
    .any(|name| var(name).is_some());
    if custom_endpoint || var("SYNCLINE_AWS_SYSTEM_ROOTS").is_some_and(|v| v == "true") {
        return Ok(None);
    }
    let context = TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_pem_certificate(AWS_ROOTS.as_bytes()))
        .build()
        .map_err(|e| crate::Error::Config(format!("TLS trust store: {e}")))?;
    Ok(Some(
        aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .tls_context(context)
            .build_https(),
    ))
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

    /// The adapters `config` names, with the AWS configuration (region,
    /// credentials, `AWS_ENDPOINT_URL*`) read from the environment.
    pub async fn from_config(config: &Config) -> Result<Self> {
        let var = crate::config::env_var;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(client) = aws_https_client(var)? {
            loader = loader.http_client(client);
        }
        // Lambda puts the region and the function's credentials in the
        // environment: read them there rather than building the default
        // provider chains (profile files, SSO, web identity, ECS, IMDS),
        // which would find the same values first anyway.
        if var("AWS_ACCESS_KEY_ID").is_some() && var("AWS_SECRET_ACCESS_KEY").is_some() {
            loader = loader.credentials_provider(
                aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
            );
        }
        if let Some(region) = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")) {
            loader = loader.region(aws_config::Region::new(region));
        }
        let sdk = loader.load().await;
        Self::with_sdk_config(config, &sdk).await
    }

    /// The adapters `config` names, reaching AWS (or a local endpoint)
    /// through `sdk`. The embedded store is the local run's
    /// (`syncline_local::adapters`): a Lambda build has none.
    pub async fn with_sdk_config(config: &Config, sdk: &aws_config::SdkConfig) -> Result<Self> {
        let store = match &config.store {
            StoreBackend::DynamoDb { table } => Store::from_sdk_config(sdk, table.as_str()),
            StoreBackend::Embedded { .. } => {
                return Err(Error::Config(
                    "SYNCLINE_TABLE is not set and a function has no embedded store \
                     (set SYNCLINE_TABLE, or run it with syncline-local)"
                        .into(),
                ));
            }
        };
        Self::with_store(config, sdk, store).await
    }

    /// The adapters over `store`, with the queue `config` names.
    pub async fn with_store(
        config: &Config,
        sdk: &aws_config::SdkConfig,
        store: Store,
    ) -> Result<Self> {
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
            _keep: None,
        })
    }

    /// Keeps `guard` alive as long as these adapters (and their clones).
    pub fn keeping(mut self, guard: Arc<dyn std::any::Any + Send + Sync>) -> Self {
        self._keep = Some(guard);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aws_roots_are_the_five_amazon_trust_services_roots() {
        let certs: Vec<_> = AWS_ROOTS
            .split("-----BEGIN CERTIFICATE-----")
            .skip(1)
            .collect();
        assert_eq!(certs.len(), 5);
        assert!(
            certs
                .iter()
                .all(|c| c.contains("-----END CERTIFICATE-----"))
        );
    }

    #[test]
    fn aws_itself_gets_the_aws_roots_and_other_endpoints_the_system_roots() {
        let none = |_: &str| None;
        assert!(aws_https_client(none).expect("client").is_some());
        let localstack =
            |name: &str| (name == "AWS_ENDPOINT_URL").then(|| "https://localhost:4566".to_owned());
        assert!(aws_https_client(localstack).expect("client").is_none());
        let dynamodb = |name: &str| {
            (name == "AWS_ENDPOINT_URL_DYNAMODB").then(|| "http://127.0.0.1:8000".to_owned())
        };
        assert!(aws_https_client(dynamodb).expect("client").is_none());
        let opt_out = |name: &str| (name == "SYNCLINE_AWS_SYSTEM_ROOTS").then(|| "true".to_owned());
        assert!(aws_https_client(opt_out).expect("client").is_none());
    }
}
