//! Scheduled-sync throughput: 100,000 records of 10 fields in pages of 500
//! from a local server. In one run it prints records/second for
//! (a) a bare fetch-and-parse loop over the same pages,
//! (b) a bare batch-write loop of the same records into the same store,
//! (c) a full sync through the engine, and
//! (d) a re-sync with no upstream change,
//! the ratio of (c) and (d) to the slower of (a) and (b), and peak memory.
//!
//! cargo bench -p syncline-tests --bench sync

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use syncline::ingest::{RunRequest, SourceSet, SyncEngine, Trigger, local_secret};
use syncline::model::{RunKind, SourceId, Timestamp};
use syncline::queue::{LocalQueue, RetryQueue};
use syncline::store::Store;
use syncline_local::embedded::{EmbeddedEngine, Storage};

const RECORDS: usize = 100_000;
const PAGE: usize = 500;

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

#[derive(Serialize)]
struct BareItem<'a> {
    pk: &'a str,
    sk: String,
    data: &'a Value,
    /// Set for the variant with a `by_ord` local-index entry per item (what
    /// every record cost before the change feed moved to feed entries).
    #[serde(skip_serializing_if = "Option::is_none")]
    ord: Option<u64>,
}

/// Writes every record with BatchWriteItem, 25 a call, one call at a time.
async fn bare_write(store: &Store, pk: &str, indexed: bool) -> Duration {
    let started = Instant::now();
    for page_start in (0..RECORDS).step_by(PAGE) {
        let records: Vec<Value> = (page_start..page_start + PAGE)
            .map(syncline_local::demo::property)
            .collect();
        for (n, chunk) in records.chunks(25).enumerate() {
            let items = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    serde_dynamo::to_item(BareItem {
                        pk,
                        sk: r["id"].as_str().unwrap_or_default().to_owned(),
                        data: r,
                        ord: indexed.then_some((page_start + n * 25 + i) as u64),
                    })
                    .expect("item")
                })
                .collect();
            syncline_tests::put_batch(store, items).await;
        }
    }
    started.elapsed()
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
    let client = syncline::connectors::http_client().expect("client");
    let rss_start = syncline_tests::memory_kb("self", "VmRSS:");

    // (a) bare fetch-and-parse loop.
    let started = Instant::now();
    let mut fetched = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/properties?limit={PAGE}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client
            .get(&url)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        fetched += page["data"].as_array().map_or(0, Vec::len);
        match &page["next_cursor"] {
            Value::Number(n) => cursor = Some(n.to_string()),
            _ => break,
        }
    }
    let fetch = started.elapsed();
    assert_eq!(fetched, RECORDS);

    // (b) bare batch-write loop: the same records, 25 to a BatchWriteItem;
    // (b') the same with a local-index entry per item, as records had
    // before feed entries.
    let write = bare_write(&store, "BARE#property", false).await;
    let write_indexed = bare_write(&store, "BARE#indexed", true).await;

    // (c) and (d): the engine, a full sync then an unchanged re-sync.
    let document = json!({"sources": {"bench": {
        "tenant": "bench", "entity": "property", "base_url": base, "path": "/properties",
        "records": "/data", "id": "/id", "updated_at": "/updated_at",
        "pagination": {"cursor_body": {"cursor_path": "/next_cursor", "param": "cursor"}},
        "page_size": PAGE, "page_size_param": "limit", "requests_per_second": 10000
    }}})
    .to_string();
    let sources =
        SourceSet::parse(&document, client.clone(), local_secret(|_| None)).expect("sources");
    let queue: Arc<dyn RetryQueue> =
        Arc::new(LocalQueue::new(store.clone(), "retry", 10).expect("queue"));
    let sync = SyncEngine::new(store.clone(), queue, sources);
    let request = RunRequest {
        source: SourceId::parse("bench").expect("id"),
        kind: Some(RunKind::Full),
        trigger: Trigger::Manual,
    };
    let far = || Timestamp::now().plus(Duration::from_secs(3600));
    let rss_before_sync = syncline_tests::memory_kb("self", "VmRSS:");
    let started = Instant::now();
    let full = sync
        .run(&request, far())
        .await
        .expect("run")
        .expect("lease");
    let full_time = started.elapsed();
    assert_eq!(full.counts.created as usize, RECORDS, "{full:?}");
    let rss_after_sync = syncline_tests::memory_kb("self", "VmRSS:");
    let started = Instant::now();
    let again = sync
        .run(&request, far())
        .await
        .expect("run")
        .expect("lease");
    let again_time = started.elapsed();
    assert_eq!(again.counts.unchanged as usize, RECORDS, "{again:?}");
    assert_eq!(
        again.counts.created + again.counts.updated + again.counts.deleted,
        0
    );

    let slower = rate(RECORDS, fetch).min(rate(RECORDS, write));
    println!(
        "sync benchmark: {RECORDS} records of 10 fields, pages of {PAGE}, embedded store on a file"
    );
    println!(
        "  (a) bare fetch + parse:   {:8.0} records/s",
        rate(RECORDS, fetch)
    );
    println!(
        "  (b) bare batch write:     {:8.0} records/s",
        rate(RECORDS, write)
    );
    println!(
        "  (b') bare batch write with a local-index entry each: {:8.0} records/s; full sync is {:.2} of it",
        rate(RECORDS, write_indexed),
        rate(RECORDS, full_time) / rate(RECORDS, write_indexed)
    );
    println!(
        "  (c) full sync:            {:8.0} records/s  ({:.2} of the slower of a, b)",
        rate(RECORDS, full_time),
        rate(RECORDS, full_time) / slower
    );
    println!(
        "  (d) unchanged re-sync:    {:8.0} records/s  ({:.2} of the slower of a, b), 0 records written",
        rate(RECORDS, again_time),
        rate(RECORDS, again_time) / slower
    );
    println!(
        "  memory: RSS {} MB at start, {} MB before the full sync, {} MB after it; peak RSS {} MB (engine, store and upstream share this process)",
        rss_start / 1024,
        rss_before_sync / 1024,
        rss_after_sync / 1024,
        syncline_tests::memory_kb("self", "VmHWM:") / 1024
    );
}
