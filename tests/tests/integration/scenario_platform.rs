//! Scenario 3, the platform: one entity (`job`) fed by a scheduled pull
//! (batch, local times normalized to UTC, fields mapped) and by webhooks
//! (real time); a client's concurrent edit resolved by the entity's
//! configured strategy (merge); validation failures recorded and visible;
//! every change traceable in the change trail. Driven only through HTTP
//! routes, the Invoke API and sample configuration (docs/scenarios.md,
//! scenario 3).

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use syncline_local::demo::DemoCounts;
use syncline_tests::service::{Service, demo_control, demo_source, repo_root};

const SOURCE: &str = "field-schedule";

/// A field-app webhook from `docs/scenarios/platform/<file>`, signed the way
/// the walkthrough signs it with openssl.
async fn field_app(service: &Service, file: &str) -> (u16, Value) {
    let body = std::fs::read_to_string(format!("{}/docs/scenarios/platform/{file}", repo_root()))
        .expect("event file");
    let mut mac = Hmac::<Sha256>::new_from_slice(b"field-app-local-secret").expect("key");
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let reply = service
        .send(
            "POST",
            "/v1/webhooks/field-app",
            None,
            &[("x-field-signature", &signature)],
            Some(body),
        )
        .await;
    (reply.status, reply.body)
}

#[tokio::test]
async fn scenario_3_platform() {
    let demo = demo_source(DemoCounts {
        jobs: 30,
        ..DemoCounts::properties(0)
    })
    .await;
    let service = Service::scenario("platform", demo).await;

    // Batch: the scheduled pull maps fields and stores local times in UTC.
    let run = service
        .invoke(
            "scheduled-sync",
            json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}),
        )
        .await;
    assert_eq!(run.status, 200, "{}", run.body);
    assert_eq!(
        run.body["runs"][0]["counts"]["created"],
        json!(30),
        "{}",
        run.body
    );
    let job = service
        .pulled("demo", "job", "4000001")
        .await
        .expect("job 1");
    assert_eq!(
        job["data"],
        json!({"name": "Job 1", "crew": "crew-b", "status": "Scheduled", "hours": 1,
               "start": "2026-11-23T06:00:00Z"}),
        "Scheduled_Start 2026-11-23 08:00:00 at +02:00 is 06:00 UTC"
    );
    assert_eq!(job["version"], json!(1));

    // Real time: the field app reports the crew on site.
    let (status, body) = field_app(&service, "job-on-site.json").await;
    assert_eq!(
        (status, body["status"].clone()),
        (200, json!("applied")),
        "{body}"
    );
    let job = service
        .pulled("demo", "job", "4000001")
        .await
        .expect("job 1");
    assert_eq!(job["data"]["status"], json!("On site"));
    assert_eq!(
        job["data"]["start"],
        json!("2026-11-23T06:00:00Z"),
        "a merge keeps the rest"
    );
    assert_eq!(job["version"], json!(2));

    // A dispatcher who read version 1 changes the crew at the same time:
    // the entity's strategy (merge) keeps both changes.
    let base = json!({"name": "Job 1", "crew": "crew-b", "status": "Scheduled", "hours": 1,
                      "start": "2026-11-23T06:00:00Z"});
    let pushed = service
        .client(
            "demo",
            "POST",
            "/v1/sync/push",
            json!({"client_id": "dispatcher-7", "mutations": [
                {"id": 1, "op": "patch", "entity": "job", "record_id": "4000001",
                 "base_version": 1, "base": base, "data": {"crew": "crew-e"},
                 "timestamp": 1_795_300_000_000_i64}
            ]}),
        )
        .await;
    assert_eq!(pushed.status, 200, "{}", pushed.body);
    let result = &pushed.body["results"][0];
    assert_eq!(result["resolution"], json!("merge"), "{result}");
    assert_eq!(result["record"]["data"]["crew"], json!("crew-e"));
    assert_eq!(result["record"]["data"]["status"], json!("On site"));
    assert_eq!(result["record"]["version"], json!(3));

    // Validation failures, recorded and visible: a webhook without a
    // status is refused with the rule it broke, and a job with a start
    // time that is not one is refused by the next pull and listed in its
    // run log.
    let (status, body) = field_app(&service, "job-no-status.json").await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("status is required")),
        "{body}"
    );
    let added = demo_control(demo, "jobs/add", json!({"count": 1, "invalid": true})).await;
    let broken = added["added"][0].as_str().expect("id").to_owned();
    let rerun = service
        .invoke(
            "scheduled-sync",
            json!({"detail": {"sources": [SOURCE], "trigger": "manual"}}),
        )
        .await;
    let log = &rerun.body["runs"][0];
    assert_eq!(log["counts"]["failed"], json!(1), "{log}");
    let runs = service
        .admin(
            "GET",
            &format!("/v1/admin/runs?source={SOURCE}&limit=1"),
            Value::Null,
        )
        .await;
    let rejected = &runs.body["runs"][0]["rejected"][0];
    assert_eq!(rejected["id"], json!(broken), "{}", runs.body);
    assert!(
        rejected["reason"]
            .as_str()
            .is_some_and(|r| r.contains("start")),
        "{rejected}"
    );
    assert!(service.pulled("demo", "job", &broken).await.is_none());

    // Every change to job 4000001 is in the change trail, newest first:
    // who (path, actor, reference) and which version.
    let trail = service
        .admin(
            "GET",
            "/v1/admin/changes?entity=job&id=4000001",
            Value::Null,
        )
        .await;
    assert_eq!(trail.status, 200, "{}", trail.body);
    let entries = trail.body["changes"].as_array().expect("changes");
    let summary: Vec<(String, String, u64)> = entries
        .iter()
        .map(|e| {
            (
                e["via"].as_str().unwrap_or_default().to_owned(),
                e["actor"].as_str().unwrap_or_default().to_owned(),
                e["changes"][0]["version"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("push".to_owned(), "dispatcher-7".to_owned(), 3),
            ("webhook".to_owned(), "field-app".to_owned(), 2),
            ("sync".to_owned(), SOURCE.to_owned(), 1),
        ]
    );
    assert_eq!(entries[1]["reference"], json!("evt-7001"));
    assert_eq!(entries[2]["reference"], run.body["runs"][0]["id"]);
    assert_eq!(entries[0]["reference"], json!("mutation 1"));
    // The trail is the tenant's own.
    let other = syncline_local::run::local_token(
        syncline_tests::service::JWT_SECRET,
        "other",
        Some("admin"),
        std::time::Duration::from_secs(60),
    )
    .expect("token");
    let foreign = service
        .send(
            "GET",
            "/v1/admin/changes?entity=job&id=4000001",
            Some(&other),
            &[],
            None,
        )
        .await;
    assert_eq!(foreign.body["changes"], json!([]), "{}", foreign.body);
    let half = service
        .admin("GET", "/v1/admin/changes?entity=job", Value::Null)
        .await;
    assert_eq!(half.status, 400);
    service.running.stop().await;
}
