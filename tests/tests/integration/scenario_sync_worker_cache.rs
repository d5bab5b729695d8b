//! Scenario 5 with its cache: the sync worker existed to keep a Redis cache
//! the app reads. Zoho Creator jobs reach the Redis keys; the 64 jobs the
//! cache missed (2,419 upstream, 2,355 cached) arrive after a discrepancy
//! check and its repair. Driven through the Invoke API with the sample
//! configuration (docs/scenarios.md, scenario 5).

use redis::AsyncCommands;
use serde_json::{Value, json};
use syncline_local::demo::DemoCounts;
use syncline_tests::redis::redis_server;
use syncline_tests::service::{
    Service, ServiceConfig, demo_control, demo_source, scenario_document,
};

async fn invoke(service: &Service, function: &str, detail: Value) -> Value {
    let reply = service.invoke(function, json!({"detail": detail})).await;
    assert_eq!(reply.status, 200, "{function}: {}", reply.body);
    reply.body
}

#[tokio::test]
async fn scenario_5_the_cache_the_app_reads_holds_every_job_after_the_repair() {
    let demo = demo_source(DemoCounts {
        jobs: 2355,
        ..DemoCounts::properties(0)
    })
    .await;
    let server = redis_server();
    let mut destinations = scenario_document("sync-worker", "destinations.json", demo);
    let prefix = format!("zoho{}:", uuid::Uuid::new_v4().simple());
    destinations["destinations"]["app-cache"]["kind"]["redis"]["prefix"] = json!(prefix);
    let service = Service::start(ServiceConfig {
        sources: Some(scenario_document("sync-worker", "sources.json", demo)),
        destinations: Some(destinations),
        vars: vec![("REDIS_URL", server.url.clone())],
        ..ServiceConfig::default()
    })
    .await;
    let mut redis = server.connection().await;

    let full = invoke(
        &service,
        "scheduled-sync",
        json!({"sources": ["zoho-jobs"], "kind": "full"}),
    )
    .await;
    assert_eq!(full["runs"][0]["counts"]["created"], json!(2355), "{full}");
    let delivered = invoke(&service, "delivery", json!({})).await;
    assert_eq!(
        delivered["runs"][0]["delivered"],
        json!(2355),
        "{delivered}"
    );
    let cached: usize = redis.scard(format!("{prefix}job")).await.expect("scard");
    assert_eq!(cached, 2355);
    let job: String = redis
        .get(format!("{prefix}job:4000007"))
        .await
        .expect("get");
    assert_eq!(
        serde_json::from_str::<Value>(&job).expect("json"),
        json!({"name": "Job 7", "crew": "crew-b", "status": "Scheduled", "hours": 4}),
        "the app reads the mapped job"
    );

    // 64 jobs imported upstream with old modified times: no incremental
    // run sees them, so neither does the cache.
    demo_control(demo, "jobs/add", json!({"count": 64, "backdate": true})).await;
    invoke(
        &service,
        "scheduled-sync",
        json!({"sources": ["zoho-jobs"]}),
    )
    .await;
    invoke(&service, "delivery", json!({})).await;
    let cached: usize = redis.scard(format!("{prefix}job")).await.expect("scard");
    assert_eq!(cached, 2355, "the incremental run missed them");

    let checked = invoke(
        &service,
        "discrepancy-check",
        json!({"sources": ["zoho-jobs"], "repair": true}),
    )
    .await;
    assert_eq!(
        checked["reports"][0]["missing_total"],
        json!(64),
        "{checked}"
    );
    assert_eq!(service.drain_queue().await, 64, "the repairs ran");
    let delivered = invoke(&service, "delivery", json!({})).await;
    assert_eq!(delivered["runs"][0]["delivered"], json!(64), "{delivered}");
    let cached: usize = redis.scard(format!("{prefix}job")).await.expect("scard");
    assert_eq!(cached, 2419, "all 2,419 in the cache");
    let keys: Vec<String> = redis.keys(format!("{prefix}job:*")).await.expect("keys");
    assert_eq!(
        keys.iter().filter(|k| !k.ends_with(":version")).count(),
        2419,
        "one JSON key per job"
    );

    let status = service
        .admin("GET", "/v1/admin/destinations", Value::Null)
        .await;
    assert_eq!(
        status.body["destinations"][0]["lag"],
        json!(0),
        "{}",
        status.body
    );
    service.running.stop().await;
}
