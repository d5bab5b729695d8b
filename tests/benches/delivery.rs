//! Delivery throughput and latency, each beside a baseline measured in the
//! same run:
//! - Redis: records delivered from the change feed (ledger read, guarded
//!   script, ledger write) next to a bare loop SETting the same JSON to the
//!   same server;
//! - HTTP: records delivered to a JSON API (one POST each, in feed order)
//!   next to a bare loop POSTing the same bodies to the same server;
//! - the local run: an accepted webhook to the Redis key updated, p50, p95
//!   and p99 over 200 events.
//!
//! cargo bench -p syncline-tests --bench delivery

use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use redis::AsyncCommands;
use serde_json::{Value, json};
use sha2::Sha256;
use syncline::connectors::SourceClient;
use syncline::delivery::DeliveryEngine;
use syncline::ingest::local_secret;
use syncline::model::{EntityType, RecordId, TenantId, Timestamp};
use syncline::queue::{LocalQueue, RetryQueue};
use syncline::store::Change;
use syncline_tests::outbound::FakeApi;
use syncline_tests::redis::redis_server;
use syncline_tests::service::{Service, ServiceConfig};
use syncline_tests::{test_store, trail};

const RECORDS: usize = 5_000;
const EVENTS: usize = 200;
const STRIPE_SECRET: &str = "whsec_bench_secret";

fn item(i: usize) -> serde_json::Map<String, Value> {
    json!({"name": format!("Item {i}"), "price": 1000 + i, "city": "Hanoi", "status": "listed",
           "agent": format!("agent-{}", i % 40), "bedrooms": i % 5, "listed_at": "2026-11-01T09:00:00Z"})
    .as_object()
    .cloned()
    .unwrap_or_default()
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

async fn delivered(engine: &DeliveryEngine, name: &str) -> Duration {
    let started = Instant::now();
    loop {
        let run = engine
            .deliver(name, Timestamp::now().plus(Duration::from_secs(900)))
            .await
            .expect("delivery");
        assert_eq!(run.failed, 0, "{run:?}");
        if run.delivered == 0 {
            return started.elapsed();
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    syncline::metrics::silence();
    let t = test_store().await;
    let queue: Arc<dyn RetryQueue> =
        Arc::new(LocalQueue::new(t.store.clone(), "retry", 10).expect("queue"));
    let tenant = TenantId::parse("bench").expect("tenant");
    let entity = EntityType::parse("item").expect("entity");
    for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(500) {
        let changes = chunk
            .iter()
            .map(|i| {
                (
                    RecordId::parse(&format!("i{i:06}")).expect("id"),
                    Change::Put(item(*i)),
                )
            })
            .collect();
        t.store
            .upsert_batch(&tenant, &entity, None, changes, &trail())
            .await
            .expect("records");
    }
    let records: Vec<(String, String)> = (0..RECORDS)
        .map(|i| {
            (
                format!("i{i:06}"),
                serde_json::to_string(&item(i)).expect("json"),
            )
        })
        .collect();

    // Redis: a bare loop of SETs, then the delivery engine.
    let server = redis_server();
    let mut redis = server.connection().await;
    let started = Instant::now();
    for (id, json) in &records {
        let _: () = redis
            .set(format!("bare:item:{id}"), json)
            .await
            .expect("set");
    }
    let bare_redis = started.elapsed();
    let (api, addr) = FakeApi::start().await;
    let document = json!({"destinations": {
        "cache": {"tenant": "bench", "entities": ["item"],
                  "kind": {"redis": {"url": {"value": server.url}, "prefix": "sl:", "index": true}}},
        "api": {"tenant": "bench", "entities": ["item"],
                "kind": {"http": {"base_url": format!("http://{addr}"), "requests_per_second": 1.0e6,
                                  "create": {"method": "POST", "path": "/items"}}}},
        "api8": {"tenant": "bench", "entities": ["item"],
                 "kind": {"http": {"base_url": format!("http://{addr}"), "requests_per_second": 1.0e6,
                                   "concurrency": 8, "create": {"method": "POST", "path": "/items8"}}}},
    }});
    let engine = DeliveryEngine::new(
        t.store.clone(),
        queue,
        &document.to_string(),
        SourceClient::lazy(),
        local_secret(|_: &str| None),
    )
    .expect("destinations");
    let redis_delivery = delivered(&engine, "cache").await;
    let held: Option<String> = redis.get("sl:item:i000042").await.expect("get");
    assert_eq!(held.as_deref(), Some(records[42].1.as_str()));

    // HTTP: a bare loop of POSTs to the same fake API, then the engine.
    let client = reqwest::Client::new();
    let started = Instant::now();
    for (_, json) in &records {
        let response = client
            .post(format!("http://{addr}/bare"))
            .header("content-type", "application/json")
            .body(json.clone())
            .send()
            .await
            .expect("post");
        assert!(response.status().is_success());
    }
    let bare_http = started.elapsed();
    let http_delivery = delivered(&engine, "api").await;
    assert_eq!(api.applied(), 2 * RECORDS, "every record once per loop");
    let http8_delivery = delivered(&engine, "api8").await;
    assert_eq!(api.applied(), 3 * RECORDS, "every record once per loop");

    println!(
        "delivery benchmark: {RECORDS} records of 7 fields, embedded store in memory, Redis and a JSON API on 127.0.0.1"
    );
    let (b, d) = (rate(RECORDS, bare_redis), rate(RECORDS, redis_delivery));
    println!(
        "  redis  bare SET loop: {b:8.0} records/s   delivery: {d:8.0} records/s   delivery / bare: {:.2}",
        d / b
    );
    let (b, d) = (rate(RECORDS, bare_http), rate(RECORDS, http_delivery));
    println!(
        "  http   bare POST loop: {b:7.0} records/s   delivery: {d:8.0} records/s   delivery / bare: {:.2}  (concurrency 1: feed order)",
        d / b
    );
    let d8 = rate(RECORDS, http8_delivery);
    println!(
        "  http   bare POST loop: {b:7.0} records/s   delivery: {d8:8.0} records/s   delivery / bare: {:.2}  (concurrency 8)",
        d8 / b
    );

    latency().await;
}

/// An accepted webhook to the Redis key updated, through the local run with
/// its delivery tick (250 ms, the default).
async fn latency() {
    let server = redis_server();
    let prefix = format!("lat{}:", uuid::Uuid::new_v4().simple());
    let service = Service::start(ServiceConfig {
        webhook_sources: Some(json!({"sources": {"stripe": {
            "tenant": "demo", "verifier": {"kind": "stripe"}, "secrets": [{"value": STRIPE_SECRET}],
            "event_type": "/type", "event_id": {"pointer": "/id"},
            "events": {"payment_intent.succeeded": {
                "entity": "payment", "id": "/data/object/id",
                "fields": {"amount": "/data/object/amount"},
            }},
        }}})),
        destinations: Some(json!({"destinations": {"cache": {
            "tenant": "demo", "entities": ["payment"],
            "kind": {"redis": {"url": {"value": server.url}, "prefix": prefix}},
        }}})),
        schedules: Some(syncline_local::run::Schedules {
            sync_every: None,
            check_every: None,
            drain_every: Duration::from_secs(1),
            deliver_every: Some(Duration::from_millis(250)),
        }),
        ..ServiceConfig::default()
    })
    .await;
    let mut redis = server.connection().await;
    let mut latencies = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let body = serde_json::to_vec(&json!({
            "id": format!("evt_{i}"), "type": "payment_intent.succeeded",
            "data": {"object": {"id": format!("pi_{i}"), "amount": 1000 + i}},
        }))
        .expect("json");
        let t = Timestamp::now().as_secs().to_string();
        let mut mac = Hmac::<Sha256>::new_from_slice(STRIPE_SECRET.as_bytes()).expect("key");
        mac.update(t.as_bytes());
        mac.update(b".");
        mac.update(&body);
        let signature = format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()));
        let started = Instant::now();
        let reply = service
            .send(
                "POST",
                "/v1/webhooks/stripe",
                None,
                &[("stripe-signature", signature.as_str())],
                Some(String::from_utf8(body).expect("utf-8")),
            )
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        let key = format!("{prefix}payment:pi_{i}");
        loop {
            let held: Option<String> = redis.get(&key).await.expect("get");
            if held.is_some() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{key} never arrived"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(started.elapsed());
        // Spread the events over the delivery tick.
        tokio::time::sleep(Duration::from_millis(7 * (i as u64 % 11))).await;
    }
    latencies.sort();
    println!(
        "  webhook accepted -> Redis key updated (local run, 250 ms delivery tick, {EVENTS} events): p50 {:?}  p95 {:?}  p99 {:?}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99)
    );
    service.running.stop().await;
}
