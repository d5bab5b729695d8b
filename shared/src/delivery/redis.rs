//! A Redis (Valkey, ElastiCache) cache: the record's JSON under
//! `{prefix}{entity}:{id}`, its version under the same key with `:version`,
//! and optionally the live ids of each entity type in the set
//! `{prefix}{entity}`. One script does each write, guarded by the version,
//! so a late or redelivered older version never overwrites a newer one;
//! a deleted record keeps its version key, so an older put cannot bring it
//! back.

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use tokio::sync::OnceCell;

use super::target::{Applied, Outbound, Target};
use crate::error::{Error, Result};

/// KEYS: value, version, index set (or "" for none). ARGV: version, JSON
/// (empty for a delete), id. Returns 1 when written, 0 when the cache
/// already holds this version or a newer one.
const GUARDED_WRITE: &str = r"
local held = tonumber(redis.call('GET', KEYS[2]) or '0')
local version = tonumber(ARGV[1])
if version <= held then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  if KEYS[3] ~= '' then redis.call('SREM', KEYS[3], ARGV[3]) end
else
  redis.call('SET', KEYS[1], ARGV[2])
  if KEYS[3] ~= '' then redis.call('SADD', KEYS[3], ARGV[3]) end
end
return 1
";

pub struct RedisTarget {
    client: redis::Client,
    connection: OnceCell<MultiplexedConnection>,
    script: redis::Script,
    prefix: String,
    index: bool,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(err: redis::RedisError) -> Error {
    Error::Upstream {
        service: "redis".into(),
        reason: err.to_string(),
        retryable: true,
    }
}

impl RedisTarget {
    /// A cache at `url` (`redis://host:port/db`); connects on first use.
    pub fn new(url: &str, prefix: &str, index: bool) -> Result<Self> {
        let client =
            redis::Client::open(url).map_err(|e| Error::Config(format!("redis url: {e}")))?;
        Ok(Self {
            client,
            connection: OnceCell::new(),
            script: redis::Script::new(GUARDED_WRITE),
            prefix: prefix.to_owned(),
            index,
        })
    }

    /// The key of a record's JSON value.
    pub fn key(&self, entity: &str, id: &str) -> String {
        format!("{}{entity}:{id}", self.prefix)
    }

    async fn connection(&self) -> Result<MultiplexedConnection> {
        self.connection
            .get_or_try_init(|| async {
                self.client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(unavailable)
            })
            .await
            .cloned()
    }
}

#[async_trait]
impl Target for RedisTarget {
    async fn apply(&self, outbound: &Outbound<'_>) -> Result<Applied> {
        let record = outbound.record;
        let key = self.key(record.entity.as_str(), record.id.as_str());
        let json = if record.deleted {
            String::new()
        } else {
            serde_json::to_string(outbound.data)
                .map_err(|e| Error::internal(format!("record as JSON: {e}")))?
        };
        let index = if self.index {
            format!("{}{}", self.prefix, record.entity)
        } else {
            String::new()
        };
        let mut connection = self.connection().await?;
        let written: i64 = self
            .script
            .key(&key)
            .key(format!("{key}:version"))
            .key(index)
            .arg(record.version.get())
            .arg(json)
            .arg(record.id.as_str())
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(Applied {
            external_id: None,
            stale: written == 0,
        })
    }
}
