//! Push throughput: 10,000 mutations through the sync API's Lambda handler
//! against the embedded store in memory, in pushes of 100, beside a baseline
//! that commits the same records straight to the store in the largest
//! transactions DynamoDB allows. Prints mutations per second, their ratio,
//! and DynamoDB requests per mutation (counted on the wire).
//!
//! cargo bench -p syncline-tests --bench push

use std::time::{Duration, Instant};

use lambda_http::Body;
use serde_json::json;
use syncline::lambda::sync_api::handle_sync;
use syncline::model::{EntityType, RecordId, TenantId};
use syncline::store::{Change, ChangeSet, Expect, RecordWrite};
use syncline::sync::EntityRegistry;
use syncline_tests::{RequestLog, data, test_store};

const MUTATIONS: u64 = 10_000;
const PER_PUSH: u64 = 100;
const SECRET: &str = "bench-secret";

fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let t = test_store().await;
    let registry = EntityRegistry::parse(
        &json!({"entities": {"task": {"conflict": "last_write_wins",
            "rules": {"required": ["title"]}}}})
        .to_string(),
    )
    .expect("registry");
    let (api, token) = syncline_tests::bench::sync_api(&t.store, registry, SECRET);

    // Baseline: the same records, 98 to a transaction, straight to the store.
    let tenant = TenantId::parse("baseline").expect("tenant");
    let task = EntityType::parse("task").expect("entity");
    let started = Instant::now();
    let ids: Vec<u64> = (0..MUTATIONS).collect();
    for chunk in ids.chunks(98) {
        let writes = chunk
            .iter()
            .map(|i| RecordWrite {
                entity: task.clone(),
                id: RecordId::parse(&format!("t{i}")).expect("id"),
                change: Change::Put(data(json!({"title": format!("task {i}")}))),
                expect: Expect::Absent,
                source: None,
                origin: None,
                source_version: None,
            })
            .collect();
        t.store
            .commit(&ChangeSet {
                tenant: tenant.clone(),
                writes,
                client: None,
                once_only: Vec::new(),
                trail: None,
            })
            .await
            .expect("commit");
    }
    let baseline = started.elapsed();
    t.requests.take();

    // Through the handler: pushes of 100 mutations from one client.
    let started = Instant::now();
    for push in 0..MUTATIONS / PER_PUSH {
        let mutations: Vec<_> = (0..PER_PUSH)
            .map(|i| {
                let n = push * PER_PUSH + i;
                json!({"id": n + 1, "op": "upsert", "entity": "task", "record_id": format!("t{n}"),
                       "data": {"title": format!("task {n}")}, "timestamp": n})
            })
            .collect();
        let body = json!({"client_id": "bench-client", "mutations": mutations}).to_string();
        let request = lambda_http::http::Request::builder()
            .method("POST")
            .uri("/v1/sync/push")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(body))
            .expect("request");
        let response = handle_sync(&api, request).await.expect("response");
        assert_eq!(response.status(), 200);
    }
    let handler = started.elapsed();
    let sent = t.requests.take();

    let handler_rate = rate(MUTATIONS, handler);
    let baseline_rate = rate(MUTATIONS, baseline);
    println!(
        "push benchmark: {MUTATIONS} mutations, {PER_PUSH} per push, embedded store in memory"
    );
    println!("  baseline (store.commit, 98 records a transaction): {baseline_rate:8.0} records/s");
    println!("  handler  (auth + parse + resolve + commit):        {handler_rate:8.0} mutations/s");
    println!("  handler / baseline: {:.2}", handler_rate / baseline_rate);
    println!(
        "  DynamoDB requests: {} for {MUTATIONS} mutations = {:.3} per mutation \
         (GetItem {}, BatchGetItem {}, TransactWriteItems {})",
        sent.len(),
        sent.len() as f64 / MUTATIONS as f64,
        RequestLog::count(&sent, "GetItem"),
        RequestLog::count(&sent, "BatchGetItem"),
        RequestLog::count(&sent, "TransactWriteItems"),
    );
}
