//! The storage layer, implemented once on the DynamoDB API. In AWS it talks
//! to DynamoDB; locally and in tests the same code talks to the embedded
//! engine through `AWS_ENDPOINT_URL_DYNAMODB`. Items are converted to and from
//! the model inside this module only.
//!
//! One table holds every item type; `docs/ARCHITECTURE.md` lists the keys,
//! the index and the access patterns.

mod bulk;
pub use bulk::TRANSACTIONS_IN_FLIGHT;
mod commit;
mod connections;
mod deliveries;
mod feed;
mod held;
mod items;
mod keys;
mod kv;
mod logs;
pub(crate) mod messages;
mod paging;
mod record_item;
mod records;
pub mod schema;
mod signal;
mod tenant;
mod trail;
mod upgrade;
mod write;

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

pub use connections::Connection;
pub use deliveries::{DeliveryStatus, LedgerEntry, LedgerWrite, Ledgered};
pub use keys::{RECORD_SHARDS, parse_records_pk, record_shard};
pub use kv::{KvExpect, KvKey, StoredValue};
pub use logs::{LogEntry, LogId, LogStream};
pub use paging::{Page, PageToken};
pub use record_item::RecordMark;
pub use records::Changes;
pub use signal::{Commit, CommitSignal};
pub use trail::{TRAIL_RETENTION, Trail, TrailChange, TrailEntry, TrailPath, trail_stream};
pub use upgrade::Tidied;
pub use write::{
    BatchOutcome, BulkWrite, Change, ChangeSet, ClientProgress, Committed, Expect,
    MAX_TRANSACTION_ITEMS, RecordWrite, Stored,
};

use crate::error::Error;

/// How long a tombstone stays readable by pulls before it expires. A client
/// whose cursor is older than this must reset.
pub const DEFAULT_TOMBSTONE_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Handle to syncline's table. Cheap to clone; build it once per cold start.
#[derive(Clone, Debug)]
pub struct Store {
    client: Client,
    /// The same client with every request bounded in time, for the record
    /// writes of a held block: none of them lands after its hold ends.
    held_client: Client,
    table: String,
    tombstone_retention: Duration,
    signal: CommitSignal,
    bulk_writes: BulkWrites,
}

/// How a bulk write of puts and deletes (a sync page) reaches the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BulkWrites {
    /// Each chunk holds a block of sequence numbers and writes every record
    /// with its own conditional PutItem, several chunks at once: one write
    /// unit per KB and round trips overlapped, for DynamoDB.
    #[default]
    Held,
    /// Each chunk is one transaction: one request and one commit for up to
    /// 98 records, for the embedded engine, where a request costs CPU, not
    /// a round trip, and no write unit is billed.
    Transactions,
}

/// How the SDK retries one store request that failed in a way worth
/// retrying (throttling, a 5xx, a dropped or timed-out connection): standard
/// mode, at most 4 attempts, each wait drawn at random up to 50 ms x 2^n
/// (at most 2 s), with the SDK's retry quota (a run of failures stops
/// retrying early). Anything else, and the last failure, goes to the caller
/// (docs/RETRIES.md "Store requests").
pub fn store_retry() -> aws_sdk_dynamodb::config::retry::RetryConfig {
    aws_sdk_dynamodb::config::retry::RetryConfig::standard()
        .with_max_attempts(STORE_ATTEMPTS)
        .with_initial_backoff(std::time::Duration::from_millis(50))
        .with_max_backoff(std::time::Duration::from_secs(2))
}

/// Attempts per store request, the first included.
pub const STORE_ATTEMPTS: u32 = 4;

impl Store {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        let held_client = Client::from_conf(
            client
                .config()
                .to_builder()
                .timeout_config(
                    aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                        .operation_timeout(held::HELD_WRITE_TIMEOUT)
                        .build(),
                )
                .build(),
        );
        Self {
            client,
            held_client,
            table: table.into(),
            tombstone_retention: DEFAULT_TOMBSTONE_RETENTION,
            signal: CommitSignal::default(),
            bulk_writes: BulkWrites::default(),
        }
    }

    /// The store writing bulk puts and deletes as `mode` says.
    pub fn with_bulk_writes(mut self, mode: BulkWrites) -> Self {
        self.bulk_writes = mode;
        self
    }

    pub fn with_tombstone_retention(mut self, retention: Duration) -> Self {
        self.tombstone_retention = retention;
        self
    }

    /// The store through `config`, retrying requests as [`store_retry`]
    /// says.
    pub fn from_sdk_config(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        let config = aws_sdk_dynamodb::config::Builder::from(config)
            .retry_config(store_retry())
            .build();
        Self::new(Client::from_conf(config), table)
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The commits this process makes through any clone of this store.
    pub fn commits(&self) -> &CommitSignal {
        &self.signal
    }

    pub fn tombstone_retention(&self) -> Duration {
        self.tombstone_retention
    }

    /// Creates the table with its index and TTL setting if it does not exist.
    pub async fn ensure_table(&self) -> crate::Result<()> {
        schema::ensure_table(&self.client, &self.table).await
    }
}

/// Translates an SDK failure into the domain error, keeping it as the source.
pub(crate) fn store_error<E>(operation: &'static str, err: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let retryable = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => matches!(
            service.err().code(),
            Some(
                "ProvisionedThroughputExceededException"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
                    | "InternalServerError"
                    | "ServiceUnavailable"
                    | "TransactionConflictException"
                    | "TransactionInProgressException"
            )
        ),
        _ => false,
    };
    Error::Store {
        operation,
        retryable,
        source: Box::new(err),
    }
}

/// Whether an SDK failure is a failed condition expression.
pub(crate) fn is_condition_failure<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    matches!(err, SdkError::ServiceError(service)
        if service.err().code() == Some("ConditionalCheckFailedException"))
}

pub(crate) fn mapping_error(what: &'static str, err: serde_dynamo::Error) -> Error {
    Error::Internal {
        context: format!("stored {what} item has an unexpected shape"),
        source: Some(Box::new(err)),
    }
}

/// A DynamoDB string value.
pub(crate) fn string_value(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A DynamoDB number value.
pub(crate) fn number_value(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Between retried storage calls: full jitter under a ceiling of 10 ms
/// doubling to 1 s.
const STORE_BACKOFF: crate::backoff::Backoff =
    crate::backoff::Backoff::new(Duration::from_millis(10), Duration::from_secs(1), 0.0);

/// Waits before retrying a storage call after `attempt` failed ones.
pub(crate) async fn backoff(attempt: u32) {
    STORE_BACKOFF.wait(attempt).await;
}

/// A request the SDK refused to build (a missing required field: a bug).
pub(crate) fn build_error(err: aws_sdk_dynamodb::error::BuildError) -> crate::Error {
    crate::Error::Internal {
        context: "building a DynamoDB request".into(),
        source: Some(Box::new(err)),
    }
}
