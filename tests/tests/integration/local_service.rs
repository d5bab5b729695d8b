//! `syncline-local up`: the whole service on one local port, the schedules
//! emulated, a demo source syncing records that a pull then returns.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use syncline_local::run::{LOCAL_DEFAULTS, Schedules};
use syncline_tests::demo_sources;
use syncline_tests::service::{Service, ServiceConfig, repo_root, sample};

async fn demo_source(records: usize) -> SocketAddr {
    syncline_local::demo::serve(SocketAddr::from(([127, 0, 0, 1], 0)), records)
        .await
        .expect("demo source")
}

#[tokio::test]
async fn the_local_run_syncs_the_demo_source_on_its_schedule_and_a_pull_returns_the_records() {
    let demo = demo_source(250).await;
    let service = Service::start(ServiceConfig {
        sources: Some(demo_sources(demo)),
        schedules: Some(Schedules {
            sync_every: Some(Duration::from_secs(3600)),
            check_every: None,
            drain_every: Duration::from_millis(200),
            deliver_every: None,
        }),
        ..ServiceConfig::default()
    })
    .await;

    // The emulated schedule fires at start: the demo source is due.
    let deadline = Instant::now() + Duration::from_secs(60);
    let pulled = loop {
        let pulled = service.pull_all("demo", "property").await;
        if pulled.len() == 250 || Instant::now() > deadline {
            break pulled;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(pulled.len(), 250, "every demo property arrives");
    let first = pulled
        .iter()
        .find(|c| c["id"] == json!("prop-000001"))
        .expect("prop-000001");
    assert_eq!(first["data"]["name"], json!("Property 1"));
    assert_eq!(first["data"]["price"], json!(100_250));

    // Status shows the scheduled run.
    let status = service.admin("GET", "/v1/admin/status", Value::Null).await;
    assert_eq!(status.status, 200, "{}", status.body);
    let demo_status = &status.body["sources"][0];
    assert_eq!(demo_status["source"], json!("demo-properties"));
    assert_eq!(demo_status["last_run"]["status"], json!("succeeded"));
    assert_eq!(demo_status["last_run"]["trigger"], json!("schedule"));
    assert_eq!(demo_status["last_run"]["counts"]["created"], json!(250));

    // Another tenant sees nothing of it.
    assert!(service.pull_all("other", "property").await.is_empty());
    service.running.stop().await;
}

#[tokio::test]
async fn every_function_answers_on_the_one_port() {
    let demo = demo_source(30).await;
    let service = Service::start(ServiceConfig {
        sources: Some(demo_sources(demo)),
        ..ServiceConfig::default()
    })
    .await;

    // scheduled-sync and discrepancy-check through the Invoke API with their
    // sample events.
    let run = service
        .invoke("scheduled-sync", sample("scheduled-sync/on-demand.json"))
        .await;
    assert_eq!(run.status, 200, "{}", run.body);
    assert_eq!(run.body["runs"][0]["counts"]["created"], json!(30));
    assert_eq!(run.body["runs"][0]["trigger"], json!("manual"));
    let check = service
        .invoke(
            "discrepancy-check",
            sample("discrepancy-check/schedule.json"),
        )
        .await;
    assert_eq!(check.status, 200, "{}", check.body);
    assert_eq!(check.body["reports"][0]["source_count"], json!(30));
    assert_eq!(check.body["reports"][0]["missing_total"], json!(0));
    // Asked to repair, a clean check queues nothing.
    let repair = service
        .invoke(
            "discrepancy-check",
            sample("discrepancy-check/on-demand.json"),
        )
        .await;
    assert_eq!(
        repair.body["reports"][0]["repairs_queued"],
        json!(0),
        "{}",
        repair.body
    );
    assert_eq!(service.drain_queue().await, 0);

    // webhook: a signed sample is applied, then recognised as a duplicate.
    let created = sample("webhook/calendly-invitee-created.json");
    let first = service.replay(&created).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["status"], json!("applied"));
    let again = service.replay(&created).await;
    assert_eq!(again.body["status"], json!("duplicate"), "{}", again.body);
    let tampered = service
        .replay(&sample("webhook/stripe-tampered.json"))
        .await;
    assert_eq!(tampered.status, 401, "{}", tampered.body);

    // retry-worker: an SQS batch through the Invoke API.
    let batch = service
        .invoke("retry-worker", sample("retry-worker/good.json"))
        .await;
    assert_eq!(batch.status, 200, "{}", batch.body);
    assert_eq!(batch.body["batchItemFailures"], json!([]));
    let booking = service
        .client(
            "demo",
            "POST",
            "/v1/sync/pull",
            json!({"entities": ["booking"]}),
        )
        .await;
    let ids: Vec<&str> = booking.body["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert!(ids.contains(&"inv-1001"), "{ids:?}");

    // Errors are JSON with a 4xx status, unknown routes included.
    let unknown = service.send("GET", "/nowhere", None, &[], None).await;
    assert_eq!(unknown.status, 404);
    assert!(
        unknown.body["error"]["code"].is_string(),
        "{}",
        unknown.body
    );
    let no_function = service.invoke("no-such-function", json!({})).await;
    assert_eq!(no_function.status, 404);
    let bad_event = service
        .send(
            "POST",
            "/2015-03-31/functions/scheduled-sync/invocations",
            None,
            &[],
            Some("{not json".into()),
        )
        .await;
    assert_eq!(bad_event.status, 400, "{}", bad_event.body);
    let unauthenticated = service
        .send("POST", "/v1/sync/pull", None, &[], Some("{}".into()))
        .await;
    assert_eq!(unauthenticated.status, 401);
    let not_admin = service
        .client("demo", "GET", "/v1/admin/status", Value::Null)
        .await;
    assert_eq!(not_admin.status, 403);
    service.running.stop().await;
}

#[test]
fn the_local_defaults_are_the_cargo_lambda_environment() {
    let manifest: toml_like::Manifest = toml_like::read(&format!("{}/Cargo.toml", repo_root()));
    for (name, value) in LOCAL_DEFAULTS {
        assert_eq!(
            manifest.watch_env(name).as_deref(),
            Some(*value),
            "{name} in [workspace.metadata.lambda.watch.env]"
        );
        if name.ends_with("_FILE") {
            assert!(
                std::path::Path::new(&format!("{}/{value}", repo_root())).exists(),
                "{value} exists"
            );
        }
    }
}

/// Just enough of Cargo.toml: `KEY = "value"` lines of one table.
mod toml_like {
    pub struct Manifest(String);

    pub fn read(path: &str) -> Manifest {
        Manifest(std::fs::read_to_string(path).expect("Cargo.toml"))
    }

    impl Manifest {
        pub fn watch_env(&self, name: &str) -> Option<String> {
            let table = self
                .0
                .split("[workspace.metadata.lambda.watch.env]")
                .nth(1)?;
            let table = table.split("\n[").next()?;
            table.lines().find_map(|line| {
                let (key, value) = line.split_once('=')?;
                (key.trim() == name).then(|| value.trim().trim_matches('"').to_owned())
            })
        }
    }
}
