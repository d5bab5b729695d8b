//! Webhook throughput: verified-and-stored events per second through the
//! Lambda handler, against the embedded store in memory, beside a baseline
//! that commits the same changes straight to the store (no HTTP, signature,
//! parsing or mapping). Prints both rates and their ratio.
//!
//! cargo bench -p syncline-tests --bench webhook

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use syncline::lambda::webhook::handle_webhook;
use syncline::model::{EntityType, RecordId, SourceId, TenantId};
use syncline::queue::{LocalQueue, RetryQueue};
use syncline::retry::{ApplyChanges, ChangeSpec, DedupeSpec};
use syncline::webhooks::{WebhookService, WebhookSources};
use syncline_tests::test_store;

const EVENTS: usize = 2000;
const SECRET: &str = "whsec_bench_secret";

fn sources() -> String {
    json!({"sources": {"stripe": {
        "tenant": "bench",
        "verifier": {"kind": "stripe"},
        "secrets": [{"value": SECRET}],
        "event_type": "/type",
        "event_id": {"pointer": "/id"},
        "events": {"payment_intent.succeeded": {
            "entity": "payment",
            "id": "/data/object/id",
            "fields": {"amount": "/data/object/amount", "currency": "/data/object/currency"},
            "rules": {"required": ["amount", "currency"], "types": {"amount": "integer"}}
        }}
    }}})
    .to_string()
}

fn event(i: usize, run: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": format!("evt_{run}_{i}"),
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": format!("pi_{run}_{i}"), "amount": 1000 + i, "currency": "eur"}}
    }))
    .expect("json")
}

fn signed(body: Vec<u8>) -> lambda_http::Request {
    syncline_tests::bench::stripe_request(SECRET, body)
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let t = test_store().await;
    let queue: Arc<dyn RetryQueue> =
        Arc::new(LocalQueue::new(t.store.clone(), "retry", 10).expect("queue"));
    let sources = WebhookSources::load(&sources(), |_| None, None)
        .await
        .expect("sources");
    let service = WebhookService::new(t.store.clone(), queue, sources);
    let tenant = TenantId::parse("bench").expect("tenant");
    let source = SourceId::parse("stripe").expect("source");

    // Warm up both paths.
    for i in 0..50 {
        let response = handle_webhook(&service, signed(event(i, "warm")))
            .await
            .expect("response");
        assert_eq!(response.status(), 200);
    }

    let mut baseline = Duration::ZERO;
    let mut handler = Duration::ZERO;
    // Interleave rounds so machine noise hits both alike.
    for round in 0..4 {
        let run = format!("b{round}");
        let sets: Vec<_> = (0..EVENTS / 4)
            .map(|i| {
                let mut data = serde_json::Map::new();
                data.insert("amount".into(), json!(1000 + i));
                data.insert("currency".into(), json!("eur"));
                ApplyChanges {
                    tenant: tenant.clone(),
                    source: Some(source.clone()),
                    changes: vec![ChangeSpec {
                        entity: EntityType::parse("payment").expect("entity"),
                        id: RecordId::parse(&format!("pi_{run}_{i}")).expect("id"),
                        data: Some(data),
                        deleted: false,
                        merge: true,
                    }],
                    dedupe: Some(DedupeSpec {
                        source: source.clone(),
                        event_id: format!("evt_{run}_{i}"),
                        retention_secs: 604_800,
                    }),
                }
                .change_set()
                .expect("change set")
            })
            .collect();
        let started = Instant::now();
        for set in &sets {
            t.store.commit(set).await.expect("commit");
        }
        baseline += started.elapsed();

        let run = format!("h{round}");
        let requests: Vec<_> = (0..EVENTS / 4).map(|i| signed(event(i, &run))).collect();
        let started = Instant::now();
        for request in requests {
            let response = handle_webhook(&service, request).await.expect("response");
            assert_eq!(response.status(), 200);
        }
        handler += started.elapsed();
    }
    let baseline_rate = rate(EVENTS, baseline);
    let handler_rate = rate(EVENTS, handler);
    println!("webhook benchmark: {EVENTS} distinct events each, embedded store in memory");
    println!("  baseline (store.commit of the same changes): {baseline_rate:8.0} events/s");
    println!("  handler  (verify + parse + map + commit):    {handler_rate:8.0} events/s");
    println!("  handler / baseline: {:.2}", handler_rate / baseline_rate);
}
