//! Production speed and cost: every store request goes through a proxy that
//! adds 8 ms (`SYNCLINE_BENCH_LATENCY_MS`), about what an in-region
//! DynamoDB request takes, and is costed by DynamoDB's capacity rules
//! (`syncline_tests::faults::capacity`). In one run, over the same records
//! (`SYNCLINE_BENCH_RECORDS`, default 100,000, 10 fields, pages of 500):
//! (a) the serial cap: BatchWriteItem of 25 items, one call at a time;
//! (b) a full sync through the engine;
//! (c) an unchanged re-sync;
//! (d) an incremental sync after 1% of the records changed upstream;
//! records/second, the ratio of (b) to (a), and read/write units per record
//! (the floor is 1 write unit per record of up to 1 KB).
//!
//! cargo bench -p syncline-tests --bench store_latency

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use syncline::ingest::{RunRequest, SourceSet, SyncEngine, Trigger, local_secret};
use syncline::model::{RunKind, SourceId, Timestamp};
use syncline::queue::{LocalQueue, RetryQueue};
use syncline::store::Store;
use syncline_local::embedded::{EmbeddedEngine, Storage};
use syncline_tests::faults::{FaultProxy, Faults, Units};

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

#[tokio::main]
async fn main() {
    let records = setting("SYNCLINE_BENCH_RECORDS", 100_000) as usize;
    let latency = Duration::from_millis(setting("SYNCLINE_BENCH_LATENCY_MS", 8));
    let engine = EmbeddedEngine::start(Storage::Memory, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("engine");
    let proxy = FaultProxy::start(1).await;
    proxy.forward_to(engine.endpoint());
    let store =
        Store::from_sdk_config(&engine.sdk_config_via(&proxy.url()).await, "syncline-bench");
    store.ensure_table().await.expect("table");
    let upstream = syncline_local::demo::serve("127.0.0.1:0".parse().expect("addr"), records)
        .await
        .expect("upstream");
    let base = format!("http://{upstream}");
    proxy.set(Faults::latency(latency));
    proxy.count_units();
    proxy.take();

    let serial = serial_batches(&store, records).await;
    let serial_units = FaultProxy::units(&proxy.take());

    let document = json!({"sources": {"bench": {
        "tenant": "bench", "entity": "property", "base_url": base, "path": "/properties",
        "records": "/data", "id": "/id", "updated_at": "/updated_at",
        "incremental": {"param": "updated_since", "lookback_secs": 0},
        "pagination": {"cursor_body": {"cursor_path": "/next_cursor", "param": "cursor"}},
        "page_size": PAGE, "page_size_param": "limit", "requests_per_second": 10000
    }}})
    .to_string();
    let client = syncline::connectors::http_client().expect("client");
    let sources =
        SourceSet::parse(&document, client.clone(), local_secret(|_| None)).expect("sources");
    let queue: Arc<dyn RetryQueue> =
        Arc::new(LocalQueue::new(store.clone(), "retry", 10).expect("queue"));
    let sync = SyncEngine::new(store.clone(), queue, sources);
    let run = |kind| RunRequest {
        source: SourceId::parse("bench").expect("id"),
        kind: Some(kind),
        trigger: Trigger::Manual,
    };
    let far = || Timestamp::now().plus(Duration::from_secs(3600));
    let timed = async |kind| {
        let started = Instant::now();
        let log = sync
            .run(&run(kind), far())
            .await
            .expect("run")
            .expect("lease");
        (started.elapsed(), log, FaultProxy::units(&proxy.take()))
    };
    let (full, full_log, full_units) = timed(RunKind::Full).await;
    assert_eq!(full_log.counts.created as usize, records, "{full_log:?}");
    let (again, again_log, again_units) = timed(RunKind::Full).await;
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
    let (incremental, incremental_log, incremental_units) = timed(RunKind::Incremental).await;
    assert_eq!(
        incremental_log.counts.updated as usize, changed,
        "{incremental_log:?}"
    );

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
        "  full sync vs the floor (1 WCU per record): {:.2}x",
        full_units.write / records as f64
    );
}
