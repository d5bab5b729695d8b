//! The one place that reads environment variables. Read once per cold start;
//! a bad value fails the start, not an invocation.

use std::path::PathBuf;

use crate::error::{Error, Result};
use std::time::Duration;

use crate::queue::definition;
use crate::retry::RetryPolicy;

/// Where records, state and logs live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreBackend {
    /// A DynamoDB table, reached through the standard AWS configuration
    /// (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL[_DYNAMODB]`).
    DynamoDb { table: String },
    /// The embedded engine, started in this process on a SQLite file under
    /// `data_dir`.
    Embedded { data_dir: PathBuf },
}

/// Where failed work waits for a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueBackend {
    Sqs {
        url: String,
        /// Found through the queue's redrive policy when not given.
        dead_letter_url: Option<String>,
    },
    /// A queue kept in the store itself.
    Local { name: String, max_receives: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub store: StoreBackend,
    pub queue: QueueBackend,
    pub retry: RetryPolicy,
}

pub const DEFAULT_TABLE: &str = "syncline";
pub const DEFAULT_DATA_DIR: &str = ".syncline";
pub const DEFAULT_LOCAL_QUEUE: &str = "retry";

impl Config {
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `var` (the environment, or a map in
    /// tests). Empty values count as unset.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let store = match var("SYNCLINE_TABLE") {
            Some(table) => {
                if table.len() < 3 || table.len() > 255 {
                    return Err(Error::Config(
                        "SYNCLINE_TABLE must be 3 to 255 characters".into(),
                    ));
                }
                StoreBackend::DynamoDb { table }
            }
            None => StoreBackend::Embedded {
                data_dir: var("SYNCLINE_DATA_DIR")
                    .unwrap_or_else(|| DEFAULT_DATA_DIR.to_owned())
                    .into(),
            },
        };
        let queue = match var("SYNCLINE_RETRY_QUEUE_URL") {
            Some(url) => QueueBackend::Sqs {
                url,
                dead_letter_url: var("SYNCLINE_DEAD_LETTER_QUEUE_URL"),
            },
            None => QueueBackend::Local {
                name: var("SYNCLINE_LOCAL_QUEUE").unwrap_or_else(|| DEFAULT_LOCAL_QUEUE.to_owned()),
                max_receives: match var("SYNCLINE_MAX_RECEIVES") {
                    Some(raw) => raw.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        Error::Config("SYNCLINE_MAX_RECEIVES must be a positive integer".into())
                    })?,
                    None => definition::MAX_RECEIVES,
                },
            },
        };
        let defaults = RetryPolicy::default();
        let secs = |name: &str, default: Duration| -> Result<Duration> {
            match var(name) {
                Some(raw) => raw
                    .parse::<u64>()
                    .ok()
                    .filter(|s| *s > 0)
                    .map(Duration::from_secs)
                    .ok_or_else(|| {
                        Error::Config(format!("{name} must be a positive number of seconds"))
                    }),
                None => Ok(default),
            }
        };
        let retry = RetryPolicy {
            base_delay: secs("SYNCLINE_RETRY_BASE_DELAY_SECS", defaults.base_delay)?,
            max_delay: secs("SYNCLINE_RETRY_MAX_DELAY_SECS", defaults.max_delay)?,
            max_attempts: match var("SYNCLINE_RETRY_MAX_ATTEMPTS") {
                Some(raw) => raw.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    Error::Config("SYNCLINE_RETRY_MAX_ATTEMPTS must be a positive integer".into())
                })?,
                None => defaults.max_attempts,
            },
        };
        Ok(Self {
            store,
            queue,
            retry,
        })
    }
}

/// One environment variable (empty counts as unset). Secrets named in
/// configuration documents are read through this.
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// How API callers are authenticated (sync-api, admin-api), from the
/// variables read through `var`.
pub fn auth_config_from(var: &dyn Fn(&str) -> Option<String>) -> Result<crate::auth::AuthConfig> {
    let env_var = var;
    let jwks =
        match (
            env_var("SYNCLINE_JWT_JWKS"),
            env_var("SYNCLINE_JWT_JWKS_FILE"),
        ) {
            (Some(json), _) => Some(json),
            (None, Some(path)) => Some(std::fs::read_to_string(&path).map_err(|e| {
                Error::Config(format!("reading SYNCLINE_JWT_JWKS_FILE {path}: {e}"))
            })?),
            (None, None) => None,
        };
    Ok(crate::auth::AuthConfig {
        hs256_secret: env_var("SYNCLINE_JWT_HS256_SECRET"),
        public_key: env_var("SYNCLINE_JWT_PUBLIC_KEY").map(|pem| {
            (
                env_var("SYNCLINE_JWT_ALGORITHM").unwrap_or_else(|| "RS256".to_owned()),
                pem,
            )
        }),
        jwks,
        issuer: env_var("SYNCLINE_JWT_ISSUER"),
        audience: env_var("SYNCLINE_JWT_AUDIENCE"),
        tenant_claim: env_var("SYNCLINE_TENANT_CLAIM").unwrap_or_else(|| "tenant".to_owned()),
        trust_authorizer: env_var("SYNCLINE_TRUST_AUTHORIZER").is_some_and(|v| v == "true"),
    })
}

/// A JSON configuration document: the text of `{name}` or the file named by
/// `{name}_FILE`, read through `var`.
pub fn document_from(var: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<String> {
    let env_var = var;
    if let Some(json) = env_var(name) {
        return Ok(json);
    }
    let file = format!("{name}_FILE");
    let path = env_var(&file)
        .ok_or_else(|| Error::Config(format!("set {name} (JSON) or {file} (a path)")))?;
    std::fs::read_to_string(&path).map_err(|e| Error::Config(format!("reading {file} {path}: {e}")))
}

/// A JSON document that may be absent: `None` when neither `{name}` nor
/// `{name}_FILE` is set.
pub fn optional_document_from(
    var: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<String>> {
    if var(name).is_none() && var(&format!("{name}_FILE")).is_none() {
        return Ok(None);
    }
    document_from(var, name).map(Some)
}

/// The demo REST source of local runs (`syncline-local demo-source`).
pub fn demo_source() -> Result<(std::net::SocketAddr, usize)> {
    let addr = env_var("SYNCLINE_DEMO_SOURCE_ADDR").unwrap_or_else(|| "127.0.0.1:8090".to_owned());
    let count = env_var("SYNCLINE_DEMO_RECORDS").unwrap_or_else(|| "250".to_owned());
    Ok((
        addr.parse().map_err(|_| {
            Error::Config(format!(
                "SYNCLINE_DEMO_SOURCE_ADDR {addr:?} is not host:port"
            ))
        })?,
        count
            .parse()
            .map_err(|_| Error::Config("SYNCLINE_DEMO_RECORDS must be a number".into()))?,
    ))
}

/// Settings of the local store server (`syncline-local`), which serves one
/// embedded store to every local function process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalStoreConfig {
    pub data_dir: PathBuf,
    pub addr: std::net::SocketAddr,
}

pub const DEFAULT_LOCAL_STORE_ADDR: &str = "127.0.0.1:8000";

impl LocalStoreConfig {
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let addr =
            var("SYNCLINE_LOCAL_STORE_ADDR").unwrap_or_else(|| DEFAULT_LOCAL_STORE_ADDR.to_owned());
        Ok(Self {
            data_dir: var("SYNCLINE_DATA_DIR")
                .unwrap_or_else(|| DEFAULT_DATA_DIR.to_owned())
                .into(),
            addr: addr.parse().map_err(|_| {
                Error::Config(format!(
                    "SYNCLINE_LOCAL_STORE_ADDR {addr:?} is not host:port"
                ))
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn nothing_configured_means_the_embedded_default() {
        let config = config(&[]).expect("defaults are valid");
        assert_eq!(
            config.store,
            StoreBackend::Embedded {
                data_dir: PathBuf::from(".syncline")
            }
        );
        assert_eq!(
            config.queue,
            QueueBackend::Local {
                name: "retry".into(),
                max_receives: definition::MAX_RECEIVES
            }
        );
        assert_eq!(config.retry, RetryPolicy::default());
    }

    #[test]
    fn the_retry_schedule_is_configurable() {
        let config = config(&[
            ("SYNCLINE_RETRY_BASE_DELAY_SECS", "5"),
            ("SYNCLINE_RETRY_MAX_DELAY_SECS", "600"),
            ("SYNCLINE_RETRY_MAX_ATTEMPTS", "3"),
        ])
        .expect("valid");
        assert_eq!(config.retry.base_delay, Duration::from_secs(5));
        assert_eq!(config.retry.max_delay, Duration::from_secs(600));
        assert_eq!(config.retry.max_attempts, 3);
        assert!(
            super::Config::from_vars(|n| (n == "SYNCLINE_RETRY_MAX_ATTEMPTS").then(|| "0".into()))
                .is_err()
        );
    }

    #[test]
    fn table_and_queue_url_select_dynamodb_and_sqs() {
        let config = config(&[
            ("SYNCLINE_TABLE", "syncline-prod"),
            (
                "SYNCLINE_RETRY_QUEUE_URL",
                "https://sqs.eu-west-1.amazonaws.com/1/retry",
            ),
        ])
        .expect("valid");
        assert_eq!(
            config.store,
            StoreBackend::DynamoDb {
                table: "syncline-prod".into()
            }
        );
        assert!(matches!(
            config.queue,
            QueueBackend::Sqs {
                dead_letter_url: None,
                ..
            }
        ));
    }

    #[test]
    fn bad_values_fail_at_start() {
        assert!(config(&[("SYNCLINE_TABLE", "ab")]).is_err());
        assert!(config(&[("SYNCLINE_MAX_RECEIVES", "0")]).is_err());
        assert!(config(&[("SYNCLINE_MAX_RECEIVES", "many")]).is_err());
    }
}
