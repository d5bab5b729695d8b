//! Discrepancy check on 1,000,000 records with 10 differences (4 missing,
//! 3 stale, 3 extra): prints the time, the records compared one by one, the
//! records read on each side, and peak memory.
//!
//! cargo bench -p syncline-tests --bench discrepancy

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use syncline::discrepancy::DiscrepancyChecker;
use syncline::embedded::{EmbeddedEngine, Storage};
use syncline::ingest::{SourceSet, SyncEngine, local_secret};
use syncline::model::{EntityType, RecordId, SourceId, TenantId};
use syncline::queue::{LocalQueue, RetryQueue};
use syncline::store::{Change, Store};

const RECORDS: usize = 1_000_000;
const MISSING: [usize; 4] = [17, 250_000, 500_001, 999_998];
const STALE: [usize; 3] = [3, 333_333, 777_777];

fn peak_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = EmbeddedEngine::start(
        Storage::File(dir.path().join("store.db")),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("engine");
    let store = Store::from_sdk_config(&engine.sdk_config().await, "syncline-bench");
    store.ensure_table().await.expect("table");
    let upstream = syncline::demo::serve("127.0.0.1:0".parse().expect("addr"), RECORDS)
        .await
        .expect("upstream");
    let source = SourceId::parse("bench").expect("id");
    let tenant = TenantId::parse("bench").expect("t");
    let entity = EntityType::parse("property").expect("e");

    let seeding = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    for i in 0..RECORDS {
        if MISSING.contains(&i) {
            continue;
        }
        let mut item = syncline::demo::property(i);
        if STALE.contains(&i) {
            item["price"] = json!(1);
        }
        let Value::Object(data) = item else { continue };
        batch.push((
            RecordId::parse(&format!("prop-{i:06}")).expect("id"),
            Change::Put(data),
        ));
        if batch.len() == 1000 {
            store
                .upsert_batch(
                    &tenant,
                    &entity,
                    Some(&source),
                    std::mem::take(&mut batch),
                    &syncline_tests::trail(),
                )
                .await
                .expect("seed");
        }
    }
    for extra in ["extra-1", "extra-2", "extra-3"] {
        let Value::Object(data) = json!({"id": extra}) else {
            continue;
        };
        batch.push((RecordId::parse(extra).expect("id"), Change::Put(data)));
    }
    store
        .upsert_batch(
            &tenant,
            &entity,
            Some(&source),
            batch,
            &syncline_tests::trail(),
        )
        .await
        .expect("seed");
    println!(
        "seeded {} records in {:.0} s",
        RECORDS - MISSING.len() + 3,
        seeding.elapsed().as_secs_f64()
    );

    let document = json!({"sources": {"bench": {
        "tenant": "bench", "entity": "property", "base_url": format!("http://{upstream}"), "path": "/properties",
        "records": "/data", "id": "/id",
        "pagination": {"cursor_body": {"cursor_path": "/next_cursor", "param": "cursor"}},
        "page_size": 1000, "page_size_param": "limit", "requests_per_second": 100000
    }}})
    .to_string();
    let sources = SourceSet::parse(
        &document,
        syncline::connectors::http_client().expect("client"),
        local_secret(|_| None),
    )
    .expect("sources");
    let queue: Arc<dyn RetryQueue> =
        Arc::new(LocalQueue::new(store.clone(), "retry", 10).expect("queue"));
    let sync = Arc::new(SyncEngine::new(store.clone(), queue.clone(), sources));
    let checker = DiscrepancyChecker::new(store.clone(), queue, sync);
    let started = Instant::now();
    let report = checker.check(&source, false).await.expect("check");
    let elapsed = started.elapsed();
    assert_eq!(
        (report.missing_total, report.stale_total, report.extra_total),
        (4, 3, 3),
        "{report:?}"
    );
    println!(
        "discrepancy benchmark: {RECORDS} records, 10 differences (4 missing, 3 stale, 3 extra), embedded store on a file"
    );
    println!("  all 10 found exactly in {:.2} s", elapsed.as_secs_f64());
    println!(
        "  records read: {} from the source, {} from the store",
        report.source_count, report.store_count
    );
    println!(
        "  compared one by one: {} ({:.3}% of the records), {} buckets of 4096 differed",
        report.compared,
        100.0 * report.compared as f64 / (report.source_count + report.store_count) as f64,
        report.buckets_differing
    );
    println!("  peak RSS {} MB", peak_mb());
}
