use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::connectors::{HttpSource, SourceSpec};
use crate::error::{Error, Result};
use crate::model::{SourceId, Timestamp};
use crate::webhooks::SecretRef;

/// What a source's runs leave for the next one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceState {
    /// The newest updated-at seen by a completed run (as the source wrote
    /// it); the next incremental run starts a lookback before it.
    #[serde(default)]
    pub since: Option<serde_json::Value>,
    /// The source's own sync token for the next incremental run.
    #[serde(default)]
    pub sync_token: Option<String>,
    #[serde(default)]
    pub last_success: Option<Timestamp>,
    #[serde(default)]
    pub last_full: Option<Timestamp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcesDocument {
    sources: BTreeMap<String, SourceSpec>,
}

/// The configured sources, secrets resolved.
#[derive(Debug, Clone, Default)]
pub struct SourceSet {
    sources: BTreeMap<SourceId, Arc<HttpSource>>,
}

impl SourceSet {
    /// Reads the sources document (`SYNCLINE_SOURCES[_FILE]`); secrets come
    /// from `secret` (environment, Secrets Manager or inline).
    pub fn parse(
        json: &str,
        client: impl Into<crate::connectors::SourceClient>,
        secret: impl Fn(&SecretRef) -> Result<String>,
    ) -> Result<Self> {
        let client = client.into();
        let document: SourcesDocument =
            serde_json::from_str(json).map_err(|e| Error::Config(format!("sources: {e}")))?;
        let mut sources = BTreeMap::new();
        for (name, spec) in document.sources {
            let id = SourceId::parse(&name)
                .map_err(|e| Error::Config(format!("source {name:?}: {e}")))?;
            let spec = spec.resolve(&name)?;
            sources.insert(
                id,
                Arc::new(HttpSource::new(spec, client.clone(), &secret)?),
            );
        }
        Ok(Self { sources })
    }

    pub fn get(&self, id: &SourceId) -> Result<&Arc<HttpSource>> {
        self.sources
            .get(id)
            .ok_or_else(|| Error::NotFound(format!("source {id}")))
    }

    pub fn ids(&self) -> impl Iterator<Item = &SourceId> {
        self.sources.keys()
    }
}

/// Resolves secrets that need no network: environment and inline values.
pub fn local_secret(env: impl Fn(&str) -> Option<String>) -> impl Fn(&SecretRef) -> Result<String> {
    move |secret| match secret {
        SecretRef::Value(value) => Ok(value.clone()),
        SecretRef::Env(name) => env(name)
            .ok_or_else(|| Error::Config(format!("environment variable {name} is not set"))),
        SecretRef::SecretsManager(id) => Err(Error::Config(format!(
            "secret {id}: Secrets Manager references are resolved for webhook sources only"
        ))),
    }
}
