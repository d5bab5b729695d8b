//! The embedded engine reached from this process without HTTP: an HTTP
//! client for the AWS SDK that hands each request to the engine's own
//! operations and answers with the engine's response, so the storage code
//! still speaks the DynamoDB API (the SDK builds, signs and parses every
//! request as it does against AWS) while no request crosses a socket,
//! hyper or the engine's HTTP layer.
//!
//! What the engine's HTTP layer adds and this skips is its checking of
//! malformed JSON (a whole second parse of every body), which the SDK never
//! sends. Transactions are run without their idempotency token: the token
//! lets DynamoDB recognise the retry of a transaction whose answer was lost
//! on the way, and here no answer is lost, so the SDK retries only an
//! attempt that was answered with an error, which applied nothing; the
//! engine would otherwise hash every transaction to remember it.

use aws_sdk_dynamodb::config::http::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use dynoxide::DynoxideError;
use dynoxide::actions;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The SDK's target prefix for DynamoDB operations.
const TARGET_PREFIX: &str = "DynamoDB_20120810.";

/// An SDK HTTP client whose every request is answered by `database`.
pub fn http_client(database: dynoxide::Database) -> SharedHttpClient {
    let connector = SharedHttpConnector::new(Engine { database });
    http_client_fn(move |_, _| connector.clone())
}

#[derive(Clone)]
struct Engine {
    database: dynoxide::Database,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("in-process embedded engine")
    }
}

impl HttpConnector for Engine {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let engine = self.clone();
        HttpConnectorFuture::new(async move {
            // A request to a store elsewhere leaves its caller free while it
            // is out; so does this one: the engine answers on a thread of
            // its own, while the caller's task (a sync building its next
            // transaction, say) goes on on another core.
            let answered = tokio::task::spawn_blocking(move || engine.respond(&request)).await;
            match answered {
                Ok(response) => response.map_err(|err| ConnectorError::other(err, None)),
                Err(join) => Err(ConnectorError::other(join.into(), None)),
            }
        })
    }
}

impl Engine {
    fn respond(&self, request: &HttpRequest) -> Result<HttpResponse, BoxError> {
        let operation = request
            .headers()
            .get("x-amz-target")
            .and_then(|target| target.strip_prefix(TARGET_PREFIX))
            .unwrap_or_default();
        let body = request.body().bytes().unwrap_or_default();
        // The engine runs the operation to completion on this thread, as
        // its HTTP handler does: one mutex serialises its storage, while
        // requests are parsed and answers written side by side.
        let (status, body) = answer(&self.database, operation, body, Tokens::Dropped);
        let mut response = HttpResponse::new(StatusCode::try_from(status)?, SdkBody::from(body));
        response
            .headers_mut()
            .insert("content-type", "application/x-amz-json-1.0");
        Ok(response)
    }
}

/// Whether a transaction's idempotency token reaches the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tokens {
    /// Dropped: no answer is lost between caller and engine.
    Dropped,
    /// Kept: a server in front of the engine may lose an answer, and the
    /// caller's retry must be recognised as DynamoDB recognises it.
    Kept,
}

/// Answers DynamoDB requests with the engine's own operations, for a server
/// in front of the engine (a test's proxy) that would otherwise forward
/// each request over HTTP: the engine's HTTP layer (hyper, and its second
/// parse of every body for malformed JSON) is skipped, the operations are
/// those its endpoint runs, and transactions keep their idempotency token.
#[derive(Clone)]
pub struct Answerer {
    database: dynoxide::Database,
}

impl std::fmt::Debug for Answerer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("in-process answerer")
    }
}

impl Answerer {
    pub(crate) fn new(database: dynoxide::Database) -> Self {
        Self { database }
    }

    /// The status and body the engine's endpoint answers `body` with, for
    /// `operation` (`PutItem`, say: the target header without its prefix).
    /// Blocks while the engine applies it.
    pub fn answer(&self, operation: &str, body: &[u8]) -> (u16, Vec<u8>) {
        answer(&self.database, operation, body, Tokens::Kept)
    }
}

/// The status and body the engine answers a request body with.
fn answer(db: &dynoxide::Database, operation: &str, body: &[u8], tokens: Tokens) -> (u16, Vec<u8>) {
    match apply(db, operation, body, tokens) {
        Ok(json) => (200, json),
        Err(err) => (err.status_code(), err.to_json().into_bytes()),
    }
}

/// Runs one operation of the engine on a request body.
fn apply(
    db: &dynoxide::Database,
    operation: &str,
    body: &[u8],
    tokens: Tokens,
) -> dynoxide::Result<Vec<u8>> {
    match operation {
        "PutItem" => run(body, |r| db.put_item(r)),
        "GetItem" => run(body, |r| db.get_item(r)),
        "DeleteItem" => run(body, |r| db.delete_item(r)),
        "UpdateItem" => run(body, |r| db.update_item(r)),
        "Query" => run(body, |r| db.query(r)),
        "Scan" => run(body, |r| db.scan(r)),
        "BatchGetItem" => run(body, |r| db.batch_get_item(r)),
        "BatchWriteItem" => run(body, |r| db.batch_write_item(r)),
        "BatchExecuteStatement" => run(body, |r| db.batch_execute_statement(r)),
        "TransactWriteItems" => run(
            body,
            |mut r: actions::transact_write_items::TransactWriteItemsRequest| {
                if tokens == Tokens::Dropped {
                    r.client_request_token = None;
                }
                db.transact_write_items(r)
            },
        ),
        "TransactGetItems" => run(body, |r| db.transact_get_items(r)),
        "CreateTable" => run(body, |r| db.create_table(r)),
        "DeleteTable" => run(body, |r| db.delete_table(r)),
        "DescribeTable" => run(body, |r| db.describe_table(r)),
        "UpdateTable" => run(body, |r| db.update_table(r)),
        "ListTables" => run(body, |r| db.list_tables(r)),
        "UpdateTimeToLive" => run(body, |r| db.update_time_to_live(r)),
        "DescribeTimeToLive" => run(body, |r| db.describe_time_to_live(r)),
        other => Err(DynoxideError::ValidationException(format!(
            "operation {other:?} is not served in process"
        ))),
    }
}

fn run<Req, Resp>(
    body: &[u8],
    operation: impl FnOnce(Req) -> dynoxide::Result<Resp>,
) -> dynoxide::Result<Vec<u8>>
where
    Req: DeserializeOwned,
    Resp: Serialize,
{
    // DynamoDB answers a value it cannot read (an empty set, say) with a
    // ValidationException; the SDK sends no other kind of unreadable body.
    let request = serde_json::from_slice(body)
        .map_err(|e| DynoxideError::ValidationException(e.to_string()))?;
    let response = operation(request)?;
    serde_json::to_vec(&response).map_err(|e| DynoxideError::InternalServerError(e.to_string()))
}
