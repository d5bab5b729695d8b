//! Production speed and cost: every store request goes through a proxy that
//! adds 8 ms (`SYNCLINE_BENCH_LATENCY_MS`), about what an in-region
//! DynamoDB request takes, and is costed by DynamoDB's capacity rules
//! (`syncline_tests::capacity`). In one run, over the same records
//! (`SYNCLINE_BENCH_RECORDS`, default 100,000, 10 fields, pages of 500):
//! (a) the serial cap: BatchWriteItem of 25 items, one call at a time;
//! (b) a full sync through the engine;
//! (c) an unchanged re-sync;
//! (d) an incremental sync after 1% of the records changed upstream;
//! (e) discrepancy checks of the synced source (the first builds the
//! store's range digests in one pass, the next brings them up to date);
//! (f) 10,000 client mutations, pushes of 100 from 4 clients at once;
//! (g) 2,000 signed webhook events, 16 at once;
//! (h) delivery of those 12,000 records to a JSON API (8 requests at once);
//! (i) (b) again for another tenant, with the proxy answering the records'
//! statement batches without applying them (`FaultProxy::sink_statements`):
//! the rate one invocation reaches when the store's work for the records
//! is done off this machine's cores, as DynamoDB does it;
//! records/second, the ratio of (b) to (a), and read/write units per record
//! (the floor is 1 write unit per record of up to 1 KB); per phase, where
//! the units go and the most write units one partition key took in one
//! second.
//!
//! cargo bench -p syncline-tests --bench store_latency

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lambda_http::Body;
use serde_json::{Value, json};
use syncline::connectors::SourceClient;
use syncline::delivery::DeliveryEngine;
use syncline::discrepancy::DiscrepancyChecker;
use syncline::ingest::{RunRequest, SourceSet, SyncEngine, Trigger, local_secret};
use syncline::lambda::sync_api::handle_sync;
use syncline::lambda::webhook::handle_webhook;
use syncline::model::{RunKind, SourceId, Timestamp};
use syncline::queue::{LocalQueue, RetryQueue};
use syncline::store::Store;
use syncline::sync::EntityRegistry;
use syncline::webhooks::{WebhookService, WebhookSources};
use syncline_local::embedded::{EmbeddedEngine, Storage};
use syncline_tests::faults::{FaultProxy, Faults, Seen, Units};
use syncline_tests::outbound::FakeApi;

const MUTATIONS: usize = 10_000;
const PUSH: usize = 100;
const CLIENTS: usize = 4;
const EVENTS: usize = 2_000;
const EVENTS_AT_ONCE: usize = 16;
const JWT_SECRET: &str = "bench-secret";
const WEBHOOK_SECRET: &str = "whsec_bench_secret";

const PAGE: usize = 500;
/// On-demand prices, us-east-1, per million request units (published
/// 2024-11-01; docs/SOURCES.md "With a store 8 ms away").
const WRITE_PRICE: f64 = 0.625;
const READ_PRICE: f64 = 0.125;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

fn per_record(units: Units, records: usize) -> String {
    let (read, write) = (units.read / records as f64, units.write / records as f64);
    format!(
        "{write:.2} WCU + {read:.2} RCU per record; a million: ${:.2}",
        (write * WRITE_PRICE + read * READ_PRICE)
    )
}

/// Requests and capacity units by operation, largest first: where a
/// phase's units go.
fn breakdown(seen: &[Seen]) -> String {
    let mut by: std::collections::BTreeMap<&str, (usize, Units)> = Default::default();
    for s in seen {
        let entry = by.entry(s.operation.as_str()).or_default();
        entry.0 += 1;
        entry.1 += s.units;
    }
    let mut rows: Vec<_> = by.into_iter().collect();
    rows.sort_by(|a, b| {
        let total = |u: &Units| u.read + u.write;
        total(&b.1.1).total_cmp(&total(&a.1.1))
    });
    let mut parts: Vec<String> = rows
        .iter()
        .map(|(op, (n, u))| format!("{op} {n} req {:.0} WCU {:.0} RCU", u.write, u.read))
        .collect();
    let busiest = FaultProxy::busiest_partitions(seen, 3);
    if !busiest.is_empty() {
        let keys: Vec<String> = busiest
            .iter()
            .map(|(pk, units)| format!("{pk} {units:.0}"))
            .collect();
        parts.push(format!(
            "most WCU in one second on one partition key (DynamoDB's limit 1,000): {}",
            keys.join(", ")
        ));
    }
    parts.join("; ")
}

/// (a): the records written 25 to a BatchWriteItem, one call at a time.
async fn serial_batches(store: &Store, records: usize) -> Duration {
    let started = Instant::now();
    let all: Vec<Value> = (0..records).map(syncline_local::demo::property).collect();
    for chunk in all.chunks(25) {
        let items = chunk
            .iter()
            .map(|r| {
                serde_dynamo::to_item(json!({"pk": "BARE#property", "sk": r["id"], "data": r}))
                    .expect("item")
            })
            .collect();
        syncline_tests::put_batch(store, items).await;
    }
    started.elapsed()
}

/// (f): pushes of 100 mutations from `CLIENTS` clients at once, each
/// client's pushes in order, through the sync API's handler.
async fn pushes(store: &Store) -> Duration {
    let registry = EntityRegistry::parse(
        &json!({"entities": {"task": {"conflict": "last_write_wins"}}}).to_string(),
    )
    .expect("registry");
    let (api, token) = syncline_tests::bench::sync_api(store, registry, JWT_SECRET);
    let started = Instant::now();
    let client = async |c: usize| {
        for push in 0..MUTATIONS / PUSH / CLIENTS {
            let mutations: Vec<_> = (0..PUSH)
                .map(|i| {
                    let n = (c * MUTATIONS / CLIENTS) + push * PUSH + i;
                    json!({"id": push * PUSH + i + 1, "op": "upsert", "entity": "task",
                           "record_id": format!("t{n}"), "data": {"title": format!("task {n}")},
                           "timestamp": n})
                })
                .collect();
            let body = json!({"client_id": format!("client-{c}"), "mutations": mutations});
            let request = lambda_http::http::Request::builder()
                .method("POST")
                .uri("/v1/sync/push")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::from(body.to_string()))
                .expect("request");
            let response = handle_sync(&api, request).await.expect("response");
            assert_eq!(response.status(), 200);
        }
    };
    futures_util::future::join_all((0..CLIENTS).map(client)).await;
    started.elapsed()
}

/// (g): signed Stripe-style events, `EVENTS_AT_ONCE` in flight.
async fn webhooks(store: &Store, queue: Arc<dyn RetryQueue>) -> Duration {
    let document = json!({"sources": {"stripe": {
        "tenant": "bench", "verifier": {"kind": "stripe"},
        "secrets": [{"value": WEBHOOK_SECRET}],
        "event_type": "/type", "event_id": {"pointer": "/id"},
        "events": {"payment_intent.succeeded": {
            "entity": "payment", "id": "/data/object/id",
            "fields": {"amount": "/data/object/amount", "currency": "/data/object/currency"}
        }}
    }}});
    let sources = WebhookSources::load(&document.to_string(), |_| None, None)
        .await
        .expect("sources");
    let service = WebhookService::new(store.clone(), queue, sources);
    let signed = |i: usize| {
        let body = serde_json::to_vec(&json!({
            "id": format!("evt_{i}"), "type": "payment_intent.succeeded",
            "data": {"object": {"id": format!("pi_{i}"), "amount": 1000 + i, "currency": "eur"}}
        }))
        .expect("json");
        syncline_tests::bench::stripe_request(WEBHOOK_SECRET, body)
    };
    let started = Instant::now();
    let mut sent = futures_util::stream::iter(0..EVENTS)
        .map(|i| handle_webhook(&service, signed(i)))
        .buffer_unordered(EVENTS_AT_ONCE);
    while let Some(response) = sent.next().await {
        assert_eq!(response.expect("response").status(), 200);
    }
    started.elapsed()
}

/// (h): every task and payment to a JSON API, until a run delivers nothing.
async fn delivery(store: &Store, queue: Arc<dyn RetryQueue>) -> (Duration, usize) {
    let (api, addr) = FakeApi::start().await;
    let document = json!({"destinations": {"api": {"tenant": "bench", "entities": ["task", "payment"],
        "kind": {"http": {"base_url": format!("http://{addr}"), "requests_per_second": 1.0e6,
                          "concurrency": 8, "create": {"method": "POST", "path": "/items"}}}}}});
    let engine = DeliveryEngine::new(
        store.clone(),
        queue,
        &document.to_string(),
        SourceClient::lazy(),
        local_secret(|_: &str| None),
    )
    .expect("destinations");
    let started = Instant::now();
    loop {
        let run = engine
            .deliver("api", Timestamp::now().plus(Duration::from_secs(900)))
            .await
            .expect("delivery");
        assert_eq!(run.failed, 0, "{run:?}");
        if run.delivered == 0 {
            return (started.elapsed(), api.applied());
        }
    }
}

/// Names the threads of what stands in for DynamoDB and the source API.
const STORE_SIDE: &str = "store-side";

/// The engine, the proxy in front of it and the demo source, on a runtime
/// of their own whose threads are named [`STORE_SIDE`]: deployed, their
/// work is done on other machines, so the CPU a phase used is split into
/// theirs and the client's (the sync engine, the SDK, the handlers).
fn store_side(records: usize) -> (EmbeddedEngine, FaultProxy, std::net::SocketAddr) {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name(STORE_SIDE)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let addr = "127.0.0.1:0".parse().expect("addr");
            let engine = EmbeddedEngine::start(Storage::Memory, addr)
                .await
                .expect("engine");
            let proxy = FaultProxy::start(1).await;
            proxy.answer_with(engine.answerer());
            let upstream = syncline_local::demo::serve(addr, records)
                .await
                .expect("upstream");
            sender.send((engine, proxy, upstream)).expect("send");
            std::future::pending::<()>().await;
        });
    });
    receiver.recv().expect("store side")
}

/// CPU seconds used by the client (every thread but the store side's)
/// since `since`, per record.
struct ClientCpu {
    since: (f64, f64),
}

impl ClientCpu {
    fn start() -> Self {
        Self {
            since: syncline_tests::thread_cpu(STORE_SIDE),
        }
    }

    /// (client, store side) microseconds of CPU per record.
    fn per_record(&self, records: usize) -> (f64, f64) {
        let (store, client) = syncline_tests::thread_cpu(STORE_SIDE);
        let per = |now: f64, then: f64| (now - then) * 1e6 / records as f64;
        (per(client, self.since.1), per(store, self.since.0))
    }
}

#[tokio::main]
async fn main() {
    syncline::metrics::silence();
    let records = setting("SYNCLINE_BENCH_RECORDS", 100_000) as usize;
    let latency = Duration::from_millis(setting("SYNCLINE_BENCH_LATENCY_MS", 8));
    let (engine, proxy, upstream) = store_side(records);
    let store =
        Store::from_sdk_config(&engine.sdk_config_via(&proxy.url()).await, "syncline-bench");
    store.ensure_table().await.expect("table");
    let base = format!("http://{upstream}");
    proxy.set(Faults::latency(latency));
    proxy.count_units();
    proxy.take();

    let serial = serial_batches(&store, records).await;
    let serial_seen = proxy.take();
    println!("    serial batches: {}", breakdown(&serial_seen));
    let serial_units = FaultProxy::units(&serial_seen);

    let source = |tenant: &str| {
        json!({
            "tenant": tenant, "entity": "property", "base_url": base, "path": "/properties",
            "records": "/data", "id": "/id", "updated_at": "/updated_at",
            "incremental": {"param": "updated_since", "lookback_secs": 0},
            "pagination": {"cursor_body": {"cursor_path": "/next_cursor", "param": "cursor"}},
            "page_size": PAGE, "page_size_param": "limit", "requests_per_second": 10000,
            "digests": {"path": "/properties/_digests", "list_path": "/properties/_marks"}
        })
    };
    // `sink` syncs the same records into another tenant for (i).
    let document =
        json!({"sources": {"bench": source("bench"), "sink": source("sink")}}).to_string();
    let client = syncline::connectors::http_client().expect("client");
    let sources =
        SourceSet::parse(&document, client.clone(), local_secret(|_| None)).expect("sources");
    let queue: Arc<dyn RetryQueue> =
        Arc::new(LocalQueue::new(store.clone(), "retry", 10).expect("queue"));
    let sync = Arc::new(SyncEngine::new(store.clone(), queue.clone(), sources));
    let run = |source: &str, kind| RunRequest {
        source: SourceId::parse(source).expect("id"),
        kind: Some(kind),
        trigger: Trigger::Manual,
    };
    let far = || Timestamp::now().plus(Duration::from_secs(3600));
    let timed_run = async |source: &str, kind| {
        let started = Instant::now();
        let cpu = ClientCpu::start();
        let log = sync
            .run(&run(source, kind), far())
            .await
            .expect("run")
            .expect("lease");
        let elapsed = started.elapsed();
        let (client, store) = cpu.per_record(log.counts.seen as usize);
        // Costed now, once the run's time and CPU are taken.
        let seen = proxy.take();
        println!(
            "    {kind:?} sync: {}; CPU per record: client {client:.0} us, store side {store:.0} us",
            breakdown(&seen)
        );
        (elapsed, log, FaultProxy::units(&seen), client)
    };
    let timed = async |kind| timed_run("bench", kind).await;
    let (full, full_log, full_units, full_cpu) = timed(RunKind::Full).await;
    assert_eq!(full_log.counts.created as usize, records, "{full_log:?}");
    let (again, again_log, again_units, _) = timed(RunKind::Full).await;
    assert_eq!(
        again_log.counts.unchanged as usize, records,
        "{again_log:?}"
    );
    let changed = records / 100;
    client
        .post(format!("{base}/_demo/properties/change"))
        .json(&json!({"count": changed}))
        .send()
        .await
        .expect("change");
    let (incremental, incremental_log, incremental_units, _) = timed(RunKind::Incremental).await;
    assert_eq!(
        incremental_log.counts.updated as usize, changed,
        "{incremental_log:?}"
    );

    let checker = DiscrepancyChecker::new(store.clone(), queue.clone(), sync.clone());
    let source = SourceId::parse("bench").expect("id");
    let timed_check = async || {
        let started = Instant::now();
        let report = checker.check(&source, false).await.expect("check");
        assert_eq!(report.differences(), 0, "{report:?}");
        let elapsed = started.elapsed();
        (elapsed, FaultProxy::units(&proxy.take()))
    };
    let (first_check, first_check_units) = timed_check().await;
    let (check, check_units) = timed_check().await;

    let costed = |phase: &str| {
        let seen = proxy.take();
        println!("    {phase}: {}", breakdown(&seen));
        FaultProxy::units(&seen)
    };
    let push = pushes(&store).await;
    let push_units = costed("pushes");
    let webhook = webhooks(&store, queue.clone()).await;
    let webhook_units = costed("webhooks");
    let (delivered, applied) = delivery(&store, queue.clone()).await;
    let delivery_units = costed("delivery");
    assert_eq!(applied, MUTATIONS + EVENTS, "every record delivered once");

    proxy.sink_statements(true);
    let (sunk, sunk_log, sunk_units, sunk_cpu) = timed_run("sink", RunKind::Full).await;
    proxy.sink_statements(false);
    assert_eq!(sunk_log.counts.created as usize, records, "{sunk_log:?}");

    println!(
        "store latency benchmark: {records} records of 10 fields, pages of {PAGE}, {} ms added to every store request",
        latency.as_millis()
    );
    println!(
        "  (a) serial 25-item batches: {:8.0} records/s  ({})",
        rate(records, serial),
        per_record(serial_units, records)
    );
    println!(
        "  (b) full sync:              {:8.0} records/s  ({:.2} of a; {})",
        rate(records, full),
        rate(records, full) / rate(records, serial),
        per_record(full_units, records)
    );
    println!(
        "      the client's CPU per record in (b): {full_cpu:.0} us, {:.0} records/s per core of it alone ({:.2} of b's rate; the store side shares these cores here)",
        1e6 / full_cpu,
        (1e6 / full_cpu) / rate(records, full)
    );
    println!(
        "  (c) unchanged re-sync:      {:8.0} records/s  ({:.2} of a; {})",
        rate(records, again),
        rate(records, again) / rate(records, serial),
        per_record(again_units, records)
    );
    println!(
        "  (d) incremental, {changed} changed: {:.2} s  ({} per changed record)",
        incremental.as_secs_f64(),
        per_record(incremental_units, changed)
    );
    println!(
        "  (e) discrepancy check:      first (builds the range digests) {:.2} s ({}); next {:.2} s ({})",
        first_check.as_secs_f64(),
        per_record(first_check_units, records),
        check.as_secs_f64(),
        per_record(check_units, records)
    );
    println!(
        "  (f) pushes, {CLIENTS} clients:    {:8.0} mutations/s  ({:.2} of a; {})",
        rate(MUTATIONS, push),
        rate(MUTATIONS, push) / rate(records, serial),
        per_record(push_units, MUTATIONS)
    );
    println!(
        "  (g) webhooks, {EVENTS_AT_ONCE} at once:  {:8.0} events/s  ({:.2} of a; {})",
        rate(EVENTS, webhook),
        rate(EVENTS, webhook) / rate(records, serial),
        per_record(webhook_units, EVENTS)
    );
    println!(
        "  (h) delivery to a JSON API: {:8.0} records/s  ({:.2} of a; {})",
        rate(applied, delivered),
        rate(applied, delivered) / rate(records, serial),
        per_record(delivery_units, applied)
    );
    println!(
        "  (i) full sync, the records' statements answered but not applied: {:8.0} records/s  ({:.2} of a; {:.2} of b; client CPU {sunk_cpu:.0} us per record; {})",
        rate(records, sunk),
        rate(records, sunk) / rate(records, serial),
        rate(records, sunk) / rate(records, full),
        per_record(sunk_units, records)
    );
    println!(
        "  full sync vs the floor (1 WCU per record): {:.2}x; incremental {:.2}x",
        full_units.write / records as f64,
        incremental_units.write / changed as f64
    );
}
