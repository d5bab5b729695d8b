//! Discrepancy check on 1,000,000 records with 10 differences (4 missing,
//! 3 stale, 3 extra, made on both sides) against a source serving range
//! digests: prints the time, the records compared one by one, the records
//! read on each side and peak memory, next to a baseline measured in the
//! same run (one bare listing of the store side, the least a check that
//! reads the store in full must do).
//!
//! cargo bench -p syncline-tests --bench discrepancy

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use syncline::discrepancy::DiscrepancyChecker;
use syncline::ingest::{SourceSet, SyncEngine, local_secret};
use syncline::model::{EntityType, RecordId, SourceId, TenantId};
use syncline::queue::{LocalQueue, RetryQueue};
use syncline::store::{BulkWrite, Change};
use syncline_local::embedded::{EmbeddedEngine, Storage};

const RECORDS: usize = 1_000_000;
/// Deleted from the store after the first check (missing).
const DELETED: [usize; 2] = [250_000, 999_998];
/// Rewritten in the store by another writer (stale).
const REWRITTEN: usize = 777_777;

fn id(i: usize) -> RecordId {
    RecordId::parse(&format!("prop-{i:06}")).expect("id")
}

fn object(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
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
    let store = engine.store("syncline-bench").await;
    store.ensure_table().await.expect("table");
    let upstream = syncline_local::demo::serve("127.0.0.1:0".parse().expect("addr"), RECORDS)
        .await
        .expect("upstream");
    let base = format!("http://{upstream}");
    let source = SourceId::parse("bench").expect("id");
    let tenant = TenantId::parse("bench").expect("t");
    let entity = EntityType::parse("property").expect("e");
    let trail = syncline_tests::trail();

    // The store holds what a full sync wrote: every record with the
    // source's updated-at.
    let seeding = Instant::now();
    for start in (0..RECORDS).step_by(1000) {
        let batch = (start..start + 1000)
            .map(|i| {
                let item = syncline_local::demo::property(i);
                BulkWrite {
                    id: id(i),
                    source_version: item["updated_at"].as_str().map(str::to_owned),
                    change: Change::Put(object(item)),
                }
            })
            .collect();
        store
            .upsert_versioned(
                &tenant,
                &entity,
                Some(&source),
                batch,
                &trail,
                syncline::store::Stored::Unknown,
            )
            .await
            .expect("seed");
    }
    println!(
        "seeded {RECORDS} records in {:.0} s",
        seeding.elapsed().as_secs_f64()
    );

    let queue: Arc<dyn RetryQueue> =
        Arc::new(LocalQueue::new(store.clone(), "retry", 10).expect("queue"));
    // The same source, compared by its range digests or by listing its ids
    // and updated-at (a sparse field set).
    let checker_with = |compare: Value| {
        let mut spec = json!({
            "tenant": "bench", "entity": "property", "base_url": base, "path": "/properties",
            "records": "/data", "id": "/id", "updated_at": "/updated_at",
            "pagination": {"cursor_body": {"cursor_path": "/next_cursor", "param": "cursor"}},
            "page_size": 1000, "page_size_param": "limit", "requests_per_second": 100000
        });
        if let (Value::Object(spec), Value::Object(compare)) = (&mut spec, compare) {
            spec.extend(compare);
        }
        let sources = SourceSet::parse(
            &json!({"sources": {"bench": spec}}).to_string(),
            syncline::connectors::http_client().expect("client"),
            local_secret(|_| None),
        )
        .expect("sources");
        let sync = Arc::new(SyncEngine::new(store.clone(), queue.clone(), sources));
        DiscrepancyChecker::new(store.clone(), queue.clone(), sync)
    };
    let checker = checker_with(json!({
        "digests": {"path": "/properties/_digests", "list_path": "/properties/_marks"}
    }));
    let id_checker = checker_with(json!({"id_listing": {"query": {"fields": "id,updated_at"}}}));

    // Baseline: one bare listing of the store side (record heads, pages of
    // 1,000).
    let started = Instant::now();
    let mut listed = 0;
    let mut after = None;
    loop {
        let page = store
            .list_record_heads(&tenant, &entity, 1000, after.as_ref())
            .await
            .expect("list");
        listed += page.items.len();
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let baseline = started.elapsed();
    assert_eq!(listed, RECORDS);

    // First check: the store's range digests are built in one pass (and
    // the source builds its own).
    let started = Instant::now();
    let first = checker.check(&source, false).await.expect("first check");
    let first_time = started.elapsed();
    assert_eq!(first.differences(), 0, "{first:?}");
    assert_eq!(first.method, "ranges");

    // Ten differences, on both sides.
    let control = reqwest::Client::new();
    for (route, count) in [("add", 2), ("change", 2)] {
        control
            .post(format!("{base}/_demo/properties/{route}"))
            .json(&json!({"count": count}))
            .send()
            .await
            .expect("demo control")
            .error_for_status()
            .expect("demo control status");
    }
    let mut changes: Vec<(RecordId, Change)> =
        DELETED.iter().map(|&i| (id(i), Change::Delete)).collect();
    let mut rewritten = syncline_local::demo::property(REWRITTEN);
    rewritten["price"] = json!(1);
    changes.push((id(REWRITTEN), Change::Put(object(rewritten))));
    for extra in ["extra-1", "extra-2", "extra-3"] {
        changes.push((
            RecordId::parse(extra).expect("id"),
            Change::Put(object(json!({"id": extra}))),
        ));
    }
    store
        .upsert_batch(&tenant, &entity, Some(&source), changes, &trail)
        .await
        .expect("store changes");

    let started = Instant::now();
    let report = checker.check(&source, false).await.expect("check");
    let elapsed = started.elapsed();
    assert_eq!(
        (report.missing_total, report.stale_total, report.extra_total),
        (4, 3, 3),
        "{report:?}"
    );
    assert_eq!(
        report.missing,
        vec!["prop-1000000", "prop-1000001", "prop-250000", "prop-999998"]
    );
    assert_eq!(
        report.stale,
        vec!["prop-000000", "prop-000001", "prop-777777"]
    );
    assert_eq!(report.extra, vec!["extra-1", "extra-2", "extra-3"]);

    // The same differences by listing the source's ids and updated-at.
    let started = Instant::now();
    let by_ids = id_checker.check(&source, false).await.expect("id check");
    let by_ids_time = started.elapsed();
    assert_eq!(by_ids.method, "id_listing");
    assert_eq!(
        (by_ids.missing, by_ids.stale, by_ids.extra),
        (
            report.missing.clone(),
            report.stale.clone(),
            report.extra.clone()
        )
    );

    println!(
        "discrepancy benchmark: {RECORDS} records, 10 differences (4 missing, 3 stale, 3 extra; 4 made at the source, 6 in the store), embedded store on a file, source serving range digests"
    );
    println!(
        "  baseline, one bare listing of the store's {RECORDS} record heads: {:.2} s",
        baseline.as_secs_f64()
    );
    println!(
        "  first check, building the store's range digests in one pass: {:.2} s, {} ranges",
        first_time.as_secs_f64(),
        first.buckets
    );
    println!(
        "  check: all 10 found exactly in {:.3} s ({:.3} of the baseline)",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() / baseline.as_secs_f64()
    );
    println!(
        "  counts: {} at the source, {} in the store",
        report.source_count, report.store_count
    );
    println!(
        "  read one by one: {} from the source, {} from the store; compared one by one: {} ({:.4}% of the records); {} of {} ranges differed",
        report.read_source,
        report.read_store,
        report.compared,
        100.0 * report.compared as f64 / (report.source_count + report.store_count) as f64,
        report.buckets_differing,
        report.buckets
    );
    println!(
        "  the same source listed as ids and updated-at only (no digest endpoint): all 10 found exactly in {:.2} s ({:.3} of the baseline); read one by one: {} from the source, {} from the store",
        by_ids_time.as_secs_f64(),
        by_ids_time.as_secs_f64() / baseline.as_secs_f64(),
        by_ids.read_source,
        by_ids.read_store
    );
    println!(
        "  peak RSS {} MB",
        syncline_tests::memory_kb("self", "VmHWM:") / 1024
    );
}
