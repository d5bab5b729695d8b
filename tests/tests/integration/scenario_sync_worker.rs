//! Scenario 5, the sync worker: a Zoho Creator-style source ends up with
//! 2,419 records while the store holds 2,355 (64 were imported upstream with
//! their old modified times, so incremental runs cannot see them). Full,
//! incremental and force-sync of one record work; the discrepancy check
//! names exactly the 64, repair fixes them, the next check is clean.
//! Driven only through HTTP routes, the Invoke API and sample configuration
//! (docs/scenarios.md, scenario 5).

use std::collections::BTreeSet;

use serde_json::{Value, json};
use syncline_local::demo::DemoCounts;
use syncline_tests::service::{Service, demo_control, demo_source};

const SOURCE: &str = "zoho-jobs";

async fn run(service: &Service, kind: Option<&str>) -> Value {
    let mut detail = json!({"sources": [SOURCE], "trigger": "manual"});
    if let Some(kind) = kind {
        detail["kind"] = json!(kind);
    }
    let reply = service
        .invoke("scheduled-sync", json!({"detail": detail}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let run = reply.body["runs"][0].clone();
    assert_eq!(run["status"], json!("succeeded"), "{run}");
    run
}

async fn check(service: &Service, repair: bool) -> Value {
    let reply = service
        .invoke(
            "discrepancy-check",
            json!({"detail": {"sources": [SOURCE], "repair": repair}}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["reports"][0].clone()
}

#[tokio::test]
async fn scenario_5_sync_worker() {
    let demo = demo_source(DemoCounts {
        jobs: 2355,
        ..DemoCounts::properties(0)
    })
    .await;
    let service = Service::scenario("sync-worker", demo).await;

    // Full run: every job, mapped.
    let full = run(&service, Some("full")).await;
    assert_eq!(full["kind"], json!("full"));
    assert_eq!(full["counts"]["created"], json!(2355));
    let job = service
        .pulled("demo", "job", "4000007")
        .await
        .expect("job 7");
    assert_eq!(
        job["data"],
        json!({"name": "Job 7", "crew": "crew-b", "status": "Scheduled", "hours": 4})
    );

    // Upstream: one job edited today, and 64 imported with old modified
    // times. The incremental run sees the edit and not the import.
    let edited = demo_control(demo, "jobs/change", json!({"count": 1})).await;
    assert_eq!(edited["changed"], json!(["4000000"]));
    let imported = demo_control(demo, "jobs/add", json!({"count": 64, "backdate": true})).await;
    let imported: BTreeSet<String> = imported["added"]
        .as_array()
        .expect("added")
        .iter()
        .map(|id| id.as_str().expect("id").to_owned())
        .collect();
    assert_eq!(imported.len(), 64);
    let incremental = run(&service, None).await;
    assert_eq!(incremental["kind"], json!("incremental"), "{incremental}");
    assert_eq!(incremental["counts"]["updated"], json!(1), "{incremental}");
    assert_eq!(incremental["counts"]["created"], json!(0), "{incremental}");

    // Force-sync of one record: an edit the incremental filter cannot see.
    demo_control(demo, "jobs/change", json!({"count": 1, "backdate": true})).await;
    let forced = service
        .admin(
            "POST",
            &format!("/v1/admin/sync/{SOURCE}/records/4000000"),
            Value::Null,
        )
        .await;
    assert_eq!(forced.status, 202, "{}", forced.body);
    assert_eq!(service.drain_queue().await, 1);
    let job0 = service
        .pulled("demo", "job", "4000000")
        .await
        .expect("job 0");
    assert_eq!(job0["data"]["status"], json!("Rescheduled (rev 2)"));

    // The check: 2,419 upstream, 2,355 here, exactly the 64 named.
    let report = check(&service, false).await;
    assert_eq!(report["source_count"], json!(2419), "{report}");
    assert_eq!(report["store_count"], json!(2355));
    assert_eq!(report["missing_total"], json!(64));
    assert_eq!(report["extra_total"], json!(0));
    assert_eq!(report["stale_total"], json!(0));
    let missing: BTreeSet<String> = report["missing"]
        .as_array()
        .expect("missing")
        .iter()
        .map(|id| id.as_str().expect("id").to_owned())
        .collect();
    assert_eq!(missing, imported, "exactly the imported 64");
    assert!(
        report["compared"].as_u64().expect("compared") < 2419,
        "only differing buckets are compared one by one: {report}"
    );

    // Repair, through the retry queue and the retry worker.
    let repaired = check(&service, true).await;
    assert_eq!(repaired["repairs_queued"], json!(64), "{repaired}");
    assert_eq!(service.drain_queue().await, 64);
    let clean = check(&service, false).await;
    assert_eq!(clean["missing_total"], json!(0), "{clean}");
    assert_eq!(clean["extra_total"], json!(0));
    assert_eq!(clean["stale_total"], json!(0));
    assert_eq!(clean["store_count"], json!(2419));
    // A client starting from scratch gets each job once, at its latest
    // version.
    assert_eq!(service.pull_all("demo", "job").await.len(), 2419);

    // The reports are readable through the admin API.
    let reports = service
        .admin("GET", "/v1/admin/discrepancies", Value::Null)
        .await;
    assert_eq!(reports.status, 200, "{}", reports.body);
    let totals: Vec<u64> = reports.body["reports"]
        .as_array()
        .expect("reports")
        .iter()
        .map(|r| r["missing_total"].as_u64().expect("total"))
        .collect();
    assert_eq!(totals, [0, 64, 64], "newest first");
    service.running.stop().await;
}

async fn worker(service: &Service, method: &str, path: &str) -> (u16, Value) {
    let reply = service
        .send(method, path, Some(&Service::admin_token("demo")), &[], None)
        .await;
    (reply.status, reply.body)
}

#[tokio::test]
async fn the_workers_own_routes_start_sync_force_a_group_and_find_the_gap() {
    let demo = demo_source(DemoCounts {
        jobs: 2355,
        ..DemoCounts::properties(0)
    })
    .await;
    let service = Service::scenario("sync-worker", demo).await;

    // POST /api/sync-worker/start, then GET .../status
    let (status, body) = worker(&service, "POST", "/api/sync-worker/start").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["is_running"], true);
    let (_, body) = worker(&service, "POST", "/api/sync-worker/full-sync").await;
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(service.drain_queue().await, 1);
    let (status, body) = worker(&service, "GET", "/api/sync-worker/status").await;
    assert_eq!(status, 200);
    assert_eq!(body["config"]["syncIntervalMs"], 12 * 3600 * 1000);
    assert_eq!(body["config"]["enableAutoSync"], true);
    assert_eq!(body["stats"]["total_syncs"], 1);
    assert_eq!(body["stats"]["successful_syncs"], 1);
    assert_eq!(body["stats"]["records_added"], 2355);
    assert!(
        body["last_sync_time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{body}"
    );

    // 64 jobs imported upstream with old modified times: an incremental
    // run cannot see them; the discrepancy check names them.
    demo_control(demo, "jobs/add", json!({"count": 64, "backdate": true})).await;
    worker(&service, "POST", "/api/sync-worker/incremental-sync").await;
    service.drain_queue().await;
    let (status, body) = worker(&service, "GET", "/api/sync-worker/discrepancy-check").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["has_discrepancies"], true);
    assert_eq!(body["source_count"], 2419);
    assert_eq!(body["store_count"], 2355);
    assert_eq!(body["missing"], 64);

    // Force-sync of one group: every stored job of crew-c fetched again.
    let crew_c = service
        .pull_all("demo", "job")
        .await
        .iter()
        .filter(|j| j["data"]["crew"] == "crew-c")
        .count();
    assert!(crew_c > 300, "{crew_c}");
    let (status, body) = worker(&service, "POST", "/api/sync-worker/force-sync/crew-c").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["queued"], crew_c);
    assert_eq!(service.drain_queue().await, crew_c);
    let (_, body) = worker(&service, "POST", "/api/sync-worker/force-sync/no-such-crew").await;
    assert_eq!(body["queued"], 0);

    // POST .../stop: scheduled runs off.
    let (_, body) = worker(&service, "POST", "/api/sync-worker/stop").await;
    assert_eq!(body["is_running"], false);
    assert_eq!(body["config"]["enableAutoSync"], false);
}
