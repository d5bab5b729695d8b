//! Webhook sources as configured: a JSON document (see
//! `events/webhook/sources.json` and docs/WEBHOOKS.md), with secrets taken
//! from environment variables, AWS Secrets Manager, or (local runs only)
//! the document itself.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;

use super::mapping::EventMapping;
use super::verify::{Verifier, VerifierSpec};
use crate::error::{Error, Result};
use crate::model::{SourceId, TenantId};

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretRef {
    /// An environment variable of the function.
    Env(String),
    /// An AWS Secrets Manager secret id or ARN (its string value).
    SecretsManager(String),
    /// The secret itself: for local runs and tests only.
    Value(String),
}

/// Where a delivery's event id is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventIdSpec {
    /// A JSON pointer into the event (`/id` for Stripe).
    Pointer(String),
    /// A header (`webhook-id` for Standard Webhooks).
    Header(String),
    /// No id from the provider: a SHA-256 of the raw body.
    BodyHash,
}

fn default_tolerance() -> u64 {
    300
}

/// Longer than the providers' retry windows (Stripe retries for three days).
fn default_dedupe_retention() -> u64 {
    7 * 24 * 3600
}

fn default_max_body() -> usize {
    256 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceSpec {
    tenant: TenantId,
    verifier: VerifierSpec,
    secrets: Vec<SecretRef>,
    #[serde(default = "default_tolerance")]
    tolerance_secs: u64,
    event_type: String,
    event_id: EventIdSpec,
    #[serde(default = "default_dedupe_retention")]
    dedupe_retention_secs: u64,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    #[serde(default)]
    events: BTreeMap<String, EventMapping>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcesSpec {
    sources: BTreeMap<String, SourceSpec>,
}

/// One configured webhook sender, secrets resolved.
#[derive(Debug, Clone)]
pub struct WebhookSource {
    pub id: SourceId,
    pub tenant: TenantId,
    pub verifier: Verifier,
    /// JSON pointer to the event type.
    pub event_type: String,
    pub event_id: EventIdSpec,
    pub dedupe_retention: Duration,
    pub max_body_bytes: usize,
    pub events: BTreeMap<String, EventMapping>,
}

#[derive(Debug, Clone, Default)]
pub struct WebhookSources(HashMap<String, WebhookSource>);

impl WebhookSources {
    /// Reads the JSON document and resolves every secret: from the
    /// environment through `env`, from Secrets Manager with a client built
    /// from `aws` on the first reference (a document without one builds no
    /// client, which keeps it out of the cold start). Any problem fails
    /// here, at cold start.
    pub async fn load(
        json: &str,
        env: impl Fn(&str) -> Option<String>,
        aws: Option<&aws_config::SdkConfig>,
    ) -> Result<Self> {
        let mut secrets_manager: Option<aws_sdk_secretsmanager::Client> = None;
        let spec: SourcesSpec = serde_json::from_str(json)
            .map_err(|e| Error::Config(format!("webhook sources: {e}")))?;
        let mut sources = HashMap::new();
        for (name, source) in spec.sources {
            let id = SourceId::parse(&name)
                .map_err(|e| Error::Config(format!("webhook source {name:?}: {e}")))?;
            let mut values = Vec::with_capacity(source.secrets.len());
            for secret in &source.secrets {
                if matches!(secret, SecretRef::SecretsManager(_)) && secrets_manager.is_none() {
                    secrets_manager = aws.map(aws_sdk_secretsmanager::Client::new);
                }
                values.push(
                    resolve(secret, &env, secrets_manager.as_ref())
                        .await
                        .map_err(|e| Error::Config(format!("webhook source {name}: {e}")))?,
                );
            }
            let verifier = Verifier::new(
                source.verifier,
                &values,
                Duration::from_secs(source.tolerance_secs),
            )?;
            for pointer in
                std::iter::once(&source.event_type).chain(source.events.values().map(|m| &m.id))
            {
                if !pointer.starts_with('/') {
                    return Err(Error::Config(format!(
                        "webhook source {name}: {pointer:?} is not a JSON pointer"
                    )));
                }
            }
            sources.insert(
                name,
                WebhookSource {
                    id,
                    tenant: source.tenant,
                    verifier,
                    event_type: source.event_type,
                    event_id: source.event_id,
                    dedupe_retention: Duration::from_secs(source.dedupe_retention_secs),
                    max_body_bytes: source.max_body_bytes,
                    events: source.events,
                },
            );
        }
        Ok(Self(sources))
    }

    pub fn get(&self, name: &str) -> Option<&WebhookSource> {
        self.0.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

async fn resolve(
    secret: &SecretRef,
    env: &impl Fn(&str) -> Option<String>,
    client: Option<&aws_sdk_secretsmanager::Client>,
) -> Result<String> {
    match secret {
        SecretRef::Value(value) => Ok(value.clone()),
        SecretRef::Env(name) => env(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::Config(format!("environment variable {name} is not set"))),
        SecretRef::SecretsManager(id) => {
            let client = client.ok_or_else(|| {
                Error::Config("a Secrets Manager secret, but no Secrets Manager client".into())
            })?;
            let out = client
                .get_secret_value()
                .secret_id(id)
                .send()
                .await
                .map_err(|e| {
                    Error::Config(format!(
                        "reading secret {id}: {}",
                        aws_sdk_secretsmanager::error::DisplayErrorContext(e)
                    ))
                })?;
            out.secret_string
                .filter(|s| !s.is_empty())
                .ok_or_else(|| Error::Config(format!("secret {id} has no string value")))
        }
    }
}
