//! Helpers for syncline's integration tests: an embedded store per test,
//! a log of the DynamoDB requests the store sends, and moto's SQS server
//! started on 127.0.0.1.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use syncline::store::Store;
use syncline_local::embedded::{EmbeddedEngine, Storage};

pub mod bench;
pub mod capacity;
pub mod faults;
pub mod live;
pub mod outbound;
pub mod redis;
pub mod service;
pub mod upstream;

pub const TEST_TABLE: &str = "syncline-test";

/// One DynamoDB request as it went over the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRequest {
    pub operation: String,
    /// Items in a BatchWriteItem or TransactWriteItems, keys in a
    /// BatchGetItem; 1 otherwise.
    pub items: usize,
    /// Record items it puts (sort key `R#...`), in any write operation.
    pub records: usize,
}

/// Records every request a store's client sends.
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<SentRequest>>>);

impl RequestLog {
    pub fn take(&self) -> Vec<SentRequest> {
        std::mem::take(&mut *self.0.lock().expect("request log lock"))
    }

    pub fn count(requests: &[SentRequest], operation: &str) -> usize {
        requests.iter().filter(|r| r.operation == operation).count()
    }

    /// Record items put by each request that put any, in order.
    pub fn record_writes(requests: &[SentRequest]) -> Vec<usize> {
        requests
            .iter()
            .filter(|r| r.records > 0)
            .map(|r| r.records)
            .collect()
    }

    pub fn sizes(requests: &[SentRequest], operation: &str) -> Vec<usize> {
        requests
            .iter()
            .filter(|r| r.operation == operation)
            .map(|r| r.items)
            .collect()
    }
}

fn items_in(operation: &str, body: &serde_json::Value) -> usize {
    let count_lists = |field: &str| {
        body[field]
            .as_object()
            .map(|tables| {
                tables
                    .values()
                    .map(|v| {
                        v.as_array()
                            .map(Vec::len)
                            .or_else(|| v["Keys"].as_array().map(Vec::len))
                            .unwrap_or(0)
                    })
                    .sum()
            })
            .unwrap_or(0)
    };
    match operation {
        "BatchWriteItem" => count_lists("RequestItems"),
        "BatchGetItem" => count_lists("RequestItems"),
        "TransactWriteItems" => body["TransactItems"].as_array().map_or(0, Vec::len),
        "BatchExecuteStatement" => body["Statements"].as_array().map_or(0, Vec::len),
        _ => 1,
    }
}

/// Record items (sort key `R#...`) a write request puts.
fn records_in(body: &serde_json::Value) -> usize {
    let is_record = |item: &serde_json::Value| {
        item["sk"]["S"]
            .as_str()
            .is_some_and(|sk| sk.starts_with("R#"))
    };
    let batched = body["RequestItems"]
        .as_object()
        .into_iter()
        .flat_map(|tables| tables.values())
        .filter_map(serde_json::Value::as_array)
        .flatten()
        .filter(|request| is_record(&request["PutRequest"]["Item"]))
        .count();
    let transacted = body["TransactItems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|action| is_record(&action["Put"]["Item"]))
        .count();
    // A PartiQL INSERT or UPDATE of a record names the record's `sk`
    // among its parameters.
    let statements = body["Statements"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|statement| {
            statement["Parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|parameter| parameter["S"].as_str().is_some_and(|s| s.starts_with("R#")))
        })
        .count();
    batched + transacted + statements + usize::from(is_record(&body["Item"]))
}

impl Intercept for RequestLog {
    fn name(&self) -> &'static str {
        "RequestLog"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let request = context.request();
        let operation = request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("unknown")
            .to_owned();
        let body: serde_json::Value = request
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default();
        let items = items_in(&operation, &body);
        let records = records_in(&body);
        self.0.lock().expect("request log lock").push(SentRequest {
            operation,
            items,
            records,
        });
        Ok(())
    }
}

/// Puts `items` with one BatchWriteItem (up to 25), sending what comes
/// back unprocessed again until none is left.
pub async fn put_batch(
    store: &Store,
    items: Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
) {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    let mut requests: Vec<WriteRequest> = items
        .into_iter()
        .map(|item| {
            WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .expect("put"),
                )
                .build()
        })
        .collect();
    while !requests.is_empty() {
        let out = store
            .client()
            .batch_write_item()
            .request_items(store.table(), requests)
            .send()
            .await
            .expect("batch write");
        requests = out
            .unprocessed_items
            .and_then(|mut u| u.remove(store.table()))
            .unwrap_or_default();
    }
}

/// A store on a fresh in-memory embedded engine.
pub struct TestStore {
    pub store: Store,
    pub requests: RequestLog,
    pub engine: EmbeddedEngine,
}

/// A store on a fresh in-memory embedded engine, reached over its HTTP
/// endpoint (as other processes reach it).
pub async fn test_store() -> TestStore {
    test_store_by(false).await
}

/// [`test_store`] calling the engine in process, as the local run's own
/// store does.
pub async fn test_store_in_process() -> TestStore {
    test_store_by(true).await
}

async fn test_store_by(in_process: bool) -> TestStore {
    let engine = EmbeddedEngine::start(Storage::Memory, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("embedded engine starts");
    let requests = RequestLog::default();
    let config = if in_process {
        engine.in_process_config().await
    } else {
        aws_sdk_dynamodb::config::Builder::from(&engine.sdk_config().await)
    };
    let config = config.interceptor(requests.clone()).build();
    let store = Store::new(aws_sdk_dynamodb::Client::from_conf(config), TEST_TABLE);
    store.ensure_table().await.expect("table created");
    requests.take();
    TestStore {
        store,
        requests,
        engine,
    }
}

/// moto's server, serving SQS on a free port of 127.0.0.1 until dropped.
/// It also stops when the test process exits: it is started behind a shell
/// that kills it when its standard input closes.
pub struct Moto {
    pub endpoint: String,
    child: Child,
    stdin: Option<ChildStdin>,
}

/// A memory figure of a process in KB (`field` as `/proc/<process>/status`
/// names it: `VmRSS:`, `VmHWM:`), 0 where it cannot be read; `process` is a
/// pid or `self`.
pub fn memory_kb(process: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{process}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user and system) used so far by this process's live
/// threads, split by name: those whose name starts with `prefix`, and the
/// others. Threads that have ended are not counted.
pub fn thread_cpu(prefix: &str) -> (f64, f64) {
    // Linux reports thread times in USER_HZ, 100 a second on every
    // architecture it runs on.
    const TICKS: f64 = 100.0;
    let (mut named, mut others) = (0.0, 0.0);
    let tasks = std::fs::read_dir("/proc/self/task").into_iter().flatten();
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // The fields after the name (which may hold spaces) in parentheses:
        // the state, ..., utime (the 12th), stime (the 13th).
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
            .sum();
        if name.starts_with(prefix) {
            named += ticks / TICKS;
        } else {
            others += ticks / TICKS;
        }
    }
    (named, others)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl Moto {
    /// Starts `moto_server` (from `pip install 'moto[server]'`). Panics,
    /// never skips, when it cannot start.
    pub fn start() -> Self {
        let port = free_port();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "moto_server -H 127.0.0.1 -p {port} >/dev/null 2>&1 & pid=$!; \
                 cat >/dev/null; kill $pid"
            ))
            .stdin(Stdio::piped())
            .spawn()
            .expect("sh runs");
        let stdin = child.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "moto_server did not start on 127.0.0.1:{port} within 30 s; \
                     install it with: pip install 'moto[server]'"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
            stdin,
        }
    }

    pub async fn sqs_client(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk_config().await)
    }

    pub async fn secrets_manager_client(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.sdk_config().await)
    }

    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .load()
            .await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.child.wait();
    }
}

/// One moto server for the whole test binary; each test makes its own
/// queues on it.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(Moto::start)
}

/// A sync engine over a sources document, with the local queue and a retry
/// worker that handles sync work, on a fresh embedded store.
pub struct SyncRig {
    pub t: TestStore,
    pub queue: Arc<dyn syncline::queue::RetryQueue>,
    pub engine: Arc<syncline::ingest::SyncEngine>,
    pub worker: syncline::retry::RetryWorker,
}

pub async fn sync_rig(document: &serde_json::Value) -> SyncRig {
    let t = test_store().await;
    let sources = syncline::ingest::SourceSet::parse(
        &document.to_string(),
        syncline::connectors::http_client().expect("client"),
        syncline::ingest::local_secret(|_| None),
    )
    .expect("sources");
    let queue: Arc<dyn syncline::queue::RetryQueue> =
        Arc::new(syncline::queue::LocalQueue::new(t.store.clone(), "retry", 10).expect("queue"));
    let engine = Arc::new(syncline::ingest::SyncEngine::new(
        t.store.clone(),
        queue.clone(),
        sources,
    ));
    let mut worker = syncline::retry::RetryWorker::new(
        t.store.clone(),
        queue.clone(),
        syncline::retry::RetryPolicy::default(),
    );
    syncline::ingest::register_sync_work(&mut worker, engine.clone());
    SyncRig {
        t,
        queue,
        engine,
        worker,
    }
}

impl SyncRig {
    /// Feeds the queue to the worker until it is empty, as Lambda would.
    pub async fn drain(&self) {
        while syncline::lambda::sqs::poll_once(
            &*self.queue,
            &self.worker,
            Duration::from_secs(60),
            Duration::from_secs(600),
            Duration::ZERO,
        )
        .await
        .expect("poll")
            > 0
        {}
    }
}

/// The sample sources document with the demo source at `addr`.
pub fn demo_sources(addr: SocketAddr) -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../events/scheduled-sync/sources.json"
    );
    let mut document: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("sources")).expect("json");
    document["sources"]["demo-properties"]["base_url"] =
        serde_json::json!(format!("http://{addr}"));
    document
}

/// The stored record `tenant/entity/id`, read through the public API.
pub async fn stored(
    store: &Store,
    tenant: &str,
    entity: &str,
    id: &str,
) -> Option<syncline::model::Record> {
    store
        .get_record(
            &syncline::model::TenantId::parse(tenant).expect("tenant"),
            &syncline::model::EntityType::parse(entity).expect("entity"),
            &syncline::model::RecordId::parse(id).expect("record id"),
        )
        .await
        .expect("read")
}

/// A tenant id the tests know is valid.
pub fn tenant(name: &str) -> syncline::model::TenantId {
    syncline::model::TenantId::parse(name).expect("tenant")
}

/// An entity type the tests know is valid.
pub fn entity(name: &str) -> syncline::model::EntityType {
    syncline::model::EntityType::parse(name).expect("entity")
}

/// A record id the tests know is valid.
pub fn id(raw: &str) -> syncline::model::RecordId {
    syncline::model::RecordId::parse(raw).expect("id")
}

/// A JSON object literal as the record data map.
pub fn data(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match value {
        serde_json::Value::Object(map) => map,
        other => panic!("record data must be an object, got {other}"),
    }
}

/// The change-trail note of writes the tests make directly.
pub fn trail() -> syncline::store::Trail {
    syncline::store::Trail::new(syncline::store::TrailPath::Sync, "tests", "")
}

/// Epoch milliseconds of an RFC 3339 time in an API answer.
pub fn millis(value: &serde_json::Value) -> Option<i64> {
    let at = time::OffsetDateTime::parse(
        value.as_str()?,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}
