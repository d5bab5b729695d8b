//! Scenario 2, the scheduled puller: a paged property API synced on a 12 h
//! interval, switched to 24 h and back, stopped and started; a rerun with no
//! upstream change writes nothing; 15 of 70 properties change and exactly 15
//! are updated; health follows overdue and failing runs; run logs page.
//! Driven only through HTTP routes, the Invoke API and the sample
//! configuration (docs/scenarios.md, scenario 2).

use std::collections::HashSet;

use serde_json::{Value, json};
use syncline_local::demo::DemoCounts;
use syncline_tests::demo_sources;
use syncline_tests::service::{Service, ServiceConfig, demo_control, demo_source, sample};

const SOURCE: &str = "demo-properties";

async fn pull_since(service: &Service, cursor: &Value) -> (Vec<Value>, Value) {
    let reply = service
        .client(
            "demo",
            "POST",
            "/v1/sync/pull",
            json!({"entities": ["property"], "cursor": cursor, "limit": 500}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    (
        reply.body["changes"].as_array().expect("changes").clone(),
        reply.body["cursor"].clone(),
    )
}

async fn schedule(service: &Service) -> Value {
    let reply = service
        .invoke("scheduled-sync", sample("scheduled-sync/schedule.json"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

async fn settings(service: &Service, change: Value) -> Value {
    let reply = service.admin("PUT", "/v1/admin/settings", change).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

async fn health(service: &Service) -> (u16, Value) {
    let reply = service.admin("GET", "/v1/admin/health", Value::Null).await;
    (reply.status, reply.body)
}

#[tokio::test]
async fn scenario_2_scheduled_puller() {
    let demo = demo_source(DemoCounts::properties(70)).await;
    let service = Service::start(ServiceConfig {
        sources: Some(demo_sources(demo)),
        ..ServiceConfig::default()
    })
    .await;

    // Configured on a 12 h interval, never synced: overdue, so unhealthy.
    let status = service.admin("GET", "/v1/admin/status", Value::Null).await;
    assert_eq!(status.body["sources"][0]["interval"], json!("12h"));
    let (code, body) = health(&service).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.to_string().contains("never synced"), "{body}");

    // Stopped, the schedule leaves it alone and it is not counted as overdue.
    let stopped = settings(&service, json!({"source": SOURCE, "enabled": false})).await;
    assert_eq!(stopped["settings"]["enabled"], json!(false));
    let nothing = schedule(&service).await;
    assert_eq!(nothing["runs"], json!([]), "{nothing}");
    assert_eq!(health(&service).await.0, 200);

    // Started again while the upstream is down: the run fails, health says
    // why; once the upstream is back the next scheduled run heals it.
    settings(&service, json!({"source": SOURCE, "enabled": true})).await;
    demo_control(demo, "outage", json!({"on": true})).await;
    let failed = schedule(&service).await;
    assert_eq!(failed["runs"][0]["status"], json!("failed"), "{failed}");
    let (code, body) = health(&service).await;
    assert_eq!(code, 503);
    assert!(body.to_string().contains("failing"), "{body}");
    demo_control(demo, "outage", json!({"on": false})).await;
    let first = schedule(&service).await;
    let run = &first["runs"][0];
    assert_eq!(run["status"], json!("succeeded"), "{first}");
    assert_eq!(run["kind"], json!("full"));
    assert_eq!(run["counts"]["created"], json!(70));
    assert_eq!(health(&service).await.0, 200);
    let (all, cursor) = pull_since(&service, &Value::Null).await;
    assert_eq!(all.len(), 70);

    // 12 h -> 24 h -> 12 h through settings; the next due time follows.
    let status = service.admin("GET", "/v1/admin/status", Value::Null).await;
    let due_12h = syncline_tests::millis(&status.body["sources"][0]["next_due"]).expect("due");
    let changed = settings(&service, json!({"source": SOURCE, "interval": "24h"})).await;
    assert_eq!(changed["settings"]["interval"], json!("24h"));
    let status = service.admin("GET", "/v1/admin/status", Value::Null).await;
    let due_24h = syncline_tests::millis(&status.body["sources"][0]["next_due"]).expect("due");
    assert_eq!(due_24h - due_12h, 12 * 3600 * 1000);
    settings(&service, json!({"source": SOURCE, "interval": "12h"})).await;
    let bad = service
        .admin(
            "PUT",
            "/v1/admin/settings",
            json!({"source": SOURCE, "interval": "12 hours"}),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);

    // A rerun with no upstream change writes nothing.
    let rerun = service
        .invoke("scheduled-sync", sample("scheduled-sync/on-demand.json"))
        .await;
    let counts = &rerun.body["runs"][0]["counts"];
    assert_eq!(counts["unchanged"], json!(70), "{}", rerun.body);
    assert_eq!(
        counts["created"].as_u64().unwrap_or(1) + counts["updated"].as_u64().unwrap_or(1),
        0
    );
    let (nothing, cursor) = pull_since(&service, &cursor).await;
    assert!(
        nothing.is_empty(),
        "no change reached the feed: {nothing:?}"
    );

    // 15 of the 70 change upstream: exactly 15 are updated.
    let changed = demo_control(demo, "properties/change", json!({"count": 15})).await;
    let changed: HashSet<String> = changed["changed"]
        .as_array()
        .expect("changed")
        .iter()
        .map(|id| id.as_str().expect("id").to_owned())
        .collect();
    assert_eq!(changed.len(), 15);
    let run = service
        .invoke(
            "scheduled-sync",
            json!({"detail": {"sources": [SOURCE], "trigger": "manual"}}),
        )
        .await;
    let counts = &run.body["runs"][0]["counts"];
    assert_eq!(counts["updated"], json!(15), "{}", run.body);
    assert_eq!(counts["created"], json!(0));
    let (updates, _) = pull_since(&service, &cursor).await;
    let updated: HashSet<String> = updates
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(updated, changed, "the feed carries exactly the 15");

    // Run logs, newest first, paged two at a time without repeats.
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let path = match &next {
            Some(cursor) => format!("/v1/admin/runs?source={SOURCE}&limit=2&cursor={cursor}"),
            None => format!("/v1/admin/runs?source={SOURCE}&limit=2"),
        };
        let page = service.admin("GET", &path, Value::Null).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let runs = page.body["runs"].as_array().expect("runs");
        assert!(runs.len() <= 2);
        seen.extend(
            runs.iter()
                .map(|r| (r["id"].clone(), syncline_tests::millis(&r["started_at"]))),
        );
        match page.body["next"].as_str() {
            Some(cursor) => next = Some(cursor.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4, "failed, full, rerun, 15 changed: {seen:?}");
    let ids: HashSet<String> = seen.iter().map(|(id, _)| id.to_string()).collect();
    assert_eq!(ids.len(), 4);
    assert!(seen.windows(2).all(|w| w[0].1 >= w[1].1), "newest first");
    let failed_only = service
        .admin("GET", "/v1/admin/runs?status=failed", Value::Null)
        .await;
    assert_eq!(failed_only.body["runs"].as_array().map(Vec::len), Some(1));
    service.running.stop().await;
}

/// One call of the puller's admin API, the way its make targets send it
/// (with the admin token the deployed API requires).
async fn old_admin(
    service: &Service,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let reply = service
        .send(
            method,
            path,
            Some(&Service::admin_token("demo")),
            &[("content-type", "application/json")],
            body.map(|b| b.to_string()),
        )
        .await;
    (reply.status, reply.body)
}

fn iso(value: &Value) -> bool {
    value.as_str().is_some_and(|s| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
    })
}

#[tokio::test]
async fn the_pullers_make_targets_drive_its_own_admin_routes() {
    let demo = demo_source(DemoCounts::properties(70)).await;
    let service = Service::start(ServiceConfig {
        sources: Some(demo_sources(demo)),
        ..ServiceConfig::default()
    })
    .await;

    // make sync-now
    let (status, body) = old_admin(&service, "POST", "/api/v1/admin/sync", None).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["data"]["status"], "running");
    assert_eq!(
        body["data"]["message"],
        "Synchronization started in background"
    );
    assert!(iso(&body["data"]["triggered_at"]), "{body}");
    assert_eq!(service.drain_queue().await, 1);

    // make sync-status
    let (status, body) = old_admin(&service, "GET", "/api/v1/admin/sync/status", None).await;
    assert_eq!(status, 200);
    let data = &body["data"];
    assert_eq!(data["is_running"], true);
    assert!(iso(&data["last_sync"]) && iso(&data["next_sync"]), "{data}");
    assert_eq!(data["total_properties"], 70);
    assert_eq!(data["updated_properties"], 70);
    assert_eq!(data["failed_properties"], 0);
    assert_eq!(data["sync_interval"], "12h");
    assert_eq!(data["last_error"], Value::Null);

    // make sync-health
    let (status, body) = old_admin(&service, "GET", "/api/v1/admin/sync/health", None).await;
    assert_eq!(status, 200);
    let data = &body["data"];
    assert_eq!(data["status"], "healthy");
    assert_eq!(
        (
            data["is_running"].clone(),
            data["is_healthy"].clone(),
            data["is_overdue"].clone()
        ),
        (json!(true), json!(true), json!(false))
    );
    assert_eq!(data["last_sync_age"], "0s");
    assert!(
        data["next_sync_in"]
            .as_str()
            .is_some_and(|d| d.starts_with("11h59m") || d == "12h"),
        "{data}"
    );
    assert_eq!(data["summary"], "Sync service is running");
    assert!(iso(&data["checked_at"]));

    // make sync-start-24h, then make sync-stop
    let (status, body) = old_admin(
        &service,
        "POST",
        "/api/v1/admin/sync/start?interval=24h",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["sync_interval"], "24h");
    let (_, body) = old_admin(&service, "POST", "/api/v1/admin/sync/stop", None).await;
    assert_eq!(body["data"]["is_running"], false);
    assert_eq!(body["data"]["next_sync"], Value::Null);
    let (_, body) = old_admin(&service, "GET", "/api/v1/admin/sync/health", None).await;
    assert_eq!(body["data"]["summary"], "Sync service is stopped");
    let (_, body) = old_admin(&service, "POST", "/api/v1/admin/sync/start", None).await;
    assert_eq!(body["data"]["is_running"], true);
    assert_eq!(
        body["data"]["sync_interval"], "24h",
        "start without an interval keeps it"
    );

    // make sync-logs
    let (status, body) = old_admin(
        &service,
        "GET",
        "/api/v1/admin/sync/logs?limit=10&offset=0",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let logs = body["data"]["logs"].as_array().expect("logs");
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["sync_type"], "full");
    assert_eq!(logs[0]["status"], "succeeded");
    assert_eq!(logs[0]["total_properties"], 70);
    assert!(iso(&logs[0]["started_at"]) && iso(&logs[0]["completed_at"]));
    let (_, past) = old_admin(
        &service,
        "GET",
        "/api/v1/admin/sync/logs?limit=10&offset=1",
        None,
    )
    .await;
    assert_eq!(past["data"]["logs"], json!([]));
    // Found by the fuzzer: an offset near u32::MAX overflowed and dropped
    // the connection. Now a clear 400.
    let (status, body) = old_admin(
        &service,
        "GET",
        "/api/v1/admin/sync/logs?limit=0&offset=4294967294",
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request");

    // make sync-settings, and the README's PUT
    let (_, body) = old_admin(&service, "GET", "/api/v1/admin/sync/settings", None).await;
    let interval = body["data"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["setting_key"] == "sync_interval")
        .expect("sync_interval")
        .clone();
    assert_eq!(interval["setting_value"], "24h");
    let (status, body) = old_admin(
        &service,
        "PUT",
        "/api/v1/admin/sync/settings",
        Some(json!([{"setting_key": "sync_interval", "setting_value": "6h"}])),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["data"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["setting_key"] == "sync_interval" && e["setting_value"] == "6h")
    );
    // Bad input: a clear 400, nothing changed (all entries are checked first).
    for bad in [
        json!([{"setting_key": "sync_interval", "setting_value": "soon"}]),
        json!([{"setting_key": "sync_interval", "setting_value": "1h"}, {"setting_key": "colour", "setting_value": "red"}]),
        json!([]),
        json!({"setting_key": "sync_interval"}),
    ] {
        let (status, body) = old_admin(
            &service,
            "PUT",
            "/api/v1/admin/sync/settings",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"]["message"].is_string());
    }
    let (_, body) = old_admin(&service, "GET", "/api/v1/admin/sync/status", None).await;
    assert_eq!(body["data"]["sync_interval"], "6h");
    // Without a token, as the old scripts called it: refused.
    let reply = service
        .send("GET", "/api/v1/admin/sync/status", None, &[], None)
        .await;
    assert_eq!(reply.status, 401);
}
