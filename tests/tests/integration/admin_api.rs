//! The admin API through its Lambda entry point, over data the other
//! functions really produced: sync runs against a fake upstream and a
//! dead letter from a real poison message.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header, encode};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request};
use serde_json::{Value, json};
use syncline::admin::AdminService;
use syncline::auth::{AuthConfig, Authenticator};
use syncline::ingest::{RunRequest, SourceSet, SyncEngine, Trigger, local_secret};
use syncline::lambda::admin_api::{AdminApi, handle_admin};
use syncline::model::{RunLog, SourceId, Timestamp};
use syncline::queue::{LocalQueue, RetryQueue};
use syncline::store::LogStream;
use syncline_tests::upstream::Upstream;
use syncline_tests::{SyncRig, sync_rig, test_store};

const SECRET: &str = "admin-test-secret";

struct Rig {
    api: AdminApi,
    sync: SyncRig,
    _upstream: Upstream,
}

/// The engine, queue, worker and store of the sync rig, by their names.
impl std::ops::Deref for Rig {
    type Target = SyncRig;
    fn deref(&self) -> &SyncRig {
        &self.sync
    }
}

async fn rig() -> Rig {
    let upstream = Upstream::start().await;
    for i in 0..25 {
        upstream.state.put(&format!("p{i:02}"), json!({"id": format!("p{i:02}"), "name": format!("P{i}"), "updated_at": "2026-11-01T00:00:00Z"}));
    }
    let document = json!({"sources": {
        "props": {"tenant": "demo", "entity": "property", "base_url": upstream.url, "path": "/cursor",
                  "records": "/data", "id": "/id", "updated_at": "/updated_at", "page_size": 10,
                  "page_size_param": "limit", "requests_per_second": 200, "interval": "12h",
                  "record_path": "/items/{id}",
                  "pagination": {"cursor_body": {"cursor_path": "/next_cursor", "param": "cursor"}}},
        "broken": {"tenant": "demo", "entity": "thing", "base_url": upstream.url, "path": "/nowhere",
                   "records": "/data", "id": "/id", "requests_per_second": 200}
    }});
    let rig = sync_rig(&document).await;
    let auth = Authenticator::new(&AuthConfig {
        hs256_secret: Some(SECRET.into()),
        tenant_claim: "tenant".into(),
        ..AuthConfig::default()
    })
    .expect("auth");
    Rig {
        api: AdminApi {
            service: AdminService::new(rig.t.store.clone(), rig.queue.clone(), rig.engine.clone()),
            auth,
            sync: no_entities(&rig.t.store),
        },
        sync: rig,
        _upstream: upstream,
    }
}

/// The sync service of a deployment without entity types.
fn no_entities(store: &syncline::store::Store) -> syncline::sync::SyncService {
    let registry =
        syncline::sync::EntityRegistry::parse(r#"{"entities": {}}"#).expect("empty registry");
    syncline::sync::SyncService::new(store.clone(), registry)
}

fn token(scope: Option<&str>) -> String {
    let mut claims = json!({"sub": "ops@example.com", "tenant": "demo", "exp": Timestamp::now().as_secs() + 600});
    if let Some(scope) = scope {
        claims["scope"] = json!(scope);
    }
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token")
}

fn request(method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Request {
    let mut builder = lambda_http::http::Request::builder()
        .method(method)
        .uri(path);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder
        .body(body.map_or(Body::Empty, |b| Body::from(b.to_string())))
        .expect("request")
}

async fn call(rig: &Rig, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let admin = token(Some("admin sync:read"));
    let response = handle_admin(&rig.api, request(method, path, Some(&admin), body))
        .await
        .expect("response");
    let status = response.status();
    (
        status,
        serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null),
    )
}

async fn sync(rig: &Rig, source: &str) -> RunLog {
    rig.engine
        .run(
            &RunRequest {
                source: SourceId::parse(source).expect("id"),
                kind: None,
                trigger: Trigger::Schedule,
            },
            Timestamp::now().plus(Duration::from_secs(600)),
        )
        .await
        .expect("run")
        .expect("lease")
}

#[tokio::test]
async fn status_runs_and_health_reflect_real_sync_runs() {
    let rig = rig().await;
    sync(&rig, "props").await;
    sync(&rig, "broken").await;

    let (status, body) = call(&rig, "GET", "/v1/admin/status", None).await;
    assert_eq!(status, StatusCode::OK);
    let sources = body["sources"].as_array().expect("sources");
    let props = sources
        .iter()
        .find(|s| s["source"] == json!("props"))
        .expect("props");
    assert_eq!(props["health"], json!("healthy"), "{props}");
    assert_eq!(props["last_run"]["status"], json!("succeeded"));
    assert_eq!(props["last_run"]["counts"]["created"], json!(25));
    assert_eq!(props["interval"], json!("12h"));
    assert!(
        syncline_tests::millis(&props["next_due"])
            .is_some_and(|due| due > Timestamp::now().as_millis())
    );
    assert_eq!(props["running"], json!(false));
    let broken = sources
        .iter()
        .find(|s| s["source"] == json!("broken"))
        .expect("broken");
    assert_eq!(broken["health"], json!("unhealthy"));
    assert!(
        broken["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("404")),
        "{broken}"
    );
    let reasons = broken["reasons"].to_string();
    assert!(
        reasons.contains("overdue") && reasons.contains("failing"),
        "{reasons}"
    );

    let (status, health) = call(&rig, "GET", "/v1/admin/health", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert_eq!(health["health"], json!("unhealthy"));

    // Stopping the broken source makes the service healthy.
    let (status, _) = call(
        &rig,
        "PUT",
        "/v1/admin/settings",
        Some(json!({"source": "broken", "enabled": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, health) = call(&rig, "GET", "/v1/admin/health", None).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["health"], json!("healthy"));

    // Run logs: newest first, filtered, paged.
    sync(&rig, "props").await;
    let (_, runs) = call(&rig, "GET", "/v1/admin/runs?source=props", None).await;
    assert_eq!(runs["runs"].as_array().expect("runs").len(), 2, "{runs}");
    let (_, failed) = call(&rig, "GET", "/v1/admin/runs?status=failed", None).await;
    let failed = failed["runs"].as_array().expect("runs");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["source"], json!("broken"));
    let (_, first) = call(&rig, "GET", "/v1/admin/runs?limit=1", None).await;
    assert_eq!(first["runs"].as_array().expect("runs").len(), 1);
    let next = first["next"].as_str().expect("a next page");
    let (_, second) = call(
        &rig,
        "GET",
        &format!("/v1/admin/runs?limit=1&cursor={next}"),
        None,
    )
    .await;
    assert_ne!(second["runs"][0]["id"], first["runs"][0]["id"]);
    let (status, _) = call(&rig, "GET", "/v1/admin/runs?status=sleeping", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn settings_are_validated_and_every_change_is_audited() {
    let rig = rig().await;
    let (status, body) = call(
        &rig,
        "PUT",
        "/v1/admin/settings",
        Some(json!({"source": "props", "interval": "7x"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = call(
        &rig,
        "PUT",
        "/v1/admin/settings",
        Some(json!({"source": "props", "page_size": 0})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Found by the fuzzer: a rate too small for the store's numbers was
    // accepted and the write failed (503). Now a clear 400.
    let (status, body) = call(
        &rig,
        "PUT",
        "/v1/admin/settings",
        Some(json!({"source": "props", "requests_per_second": 5e-324})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = call(
        &rig,
        "PUT",
        "/v1/admin/settings",
        Some(json!({"source": "nope", "interval": "6h"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, all) = call(&rig, "GET", "/v1/admin/settings", None).await;
    let props = all["sources"]
        .as_array()
        .expect("list")
        .iter()
        .find(|s| s["source"] == json!("props"))
        .expect("props")
        .clone();
    assert_eq!(
        props["settings"]["interval"],
        json!("12h"),
        "nothing changed"
    );

    for interval in ["24h", "12h"] {
        let (status, changed) = call(
            &rig,
            "PUT",
            "/v1/admin/settings",
            Some(json!({"source": "props", "interval": interval})),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(changed["settings"]["interval"], json!(interval));
    }
    let audit = rig
        .t
        .store
        .read_log::<Value>(&LogStream::audit(), 10, None)
        .await
        .expect("audit");
    assert_eq!(audit.items.len(), 2);
    let newest = &audit.items[0].entry;
    assert_eq!(newest["who"], json!("ops@example.com"));
    assert_eq!(
        (
            newest["old"]["interval"].clone(),
            newest["new"]["interval"].clone()
        ),
        (json!("24h"), json!("12h"))
    );
}

#[tokio::test]
async fn a_triggered_sync_is_queued_and_run_by_the_worker() {
    let rig = rig().await;
    let (status, body) = call(
        &rig,
        "POST",
        "/v1/admin/sync",
        Some(json!({"source": "props", "kind": "full"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(body["message_id"].is_string());
    rig.drain().await;
    let (_, runs) = call(&rig, "GET", "/v1/admin/runs?source=props", None).await;
    let run = &runs["runs"][0];
    assert_eq!(
        (
            run["trigger"].clone(),
            run["kind"].clone(),
            run["status"].clone()
        ),
        (json!("manual"), json!("full"), json!("succeeded"))
    );
    let (status, _) = call(
        &rig,
        "POST",
        "/v1/admin/sync",
        Some(json!({"source": "nope"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn dead_letters_are_listed_with_their_reason_and_redriven() {
    let rig = rig().await;
    rig.queue
        .send("{not an envelope", Duration::ZERO)
        .await
        .expect("send");
    rig.drain().await;
    let (_, listed) = call(&rig, "GET", "/v1/admin/dead-letters", None).await;
    let letters = listed["dead_letters"].as_array().expect("list");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["kind"], json!("unreadable"));
    assert!(
        letters[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid retry message"))
    );
    let (status, health) = call(&rig, "GET", "/v1/admin/health", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(health["reasons"].to_string().contains("dead letter"));

    let id = letters[0]["id"].clone();
    let (status, moved) = call(
        &rig,
        "POST",
        "/v1/admin/dead-letters/redrive",
        Some(json!({"ids": [id]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(moved["moved"], json!(1));
    let (_, listed) = call(&rig, "GET", "/v1/admin/dead-letters", None).await;
    assert!(listed["dead_letters"].as_array().expect("list").is_empty());
}

#[tokio::test]
async fn only_admin_tokens_get_in() {
    let rig = rig().await;
    let no_scope = token(None);
    let tenant_scoped = token(Some("sync:read"));
    for (token, expected) in [
        (None, 401),
        (Some(no_scope.as_str()), 403),
        (Some(tenant_scoped.as_str()), 403),
        (Some("junk"), 401),
    ] {
        let response = handle_admin(&rig.api, request("GET", "/v1/admin/status", token, None))
            .await
            .expect("response");
        assert_eq!(response.status().as_u16(), expected, "{token:?}");
        let body: Value = serde_json::from_slice(response.body().as_ref()).expect("json");
        assert!(body["error"]["code"].is_string());
    }
    let (status, _) = call(&rig, "GET", "/v1/admin/nowhere", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&rig, "DELETE", "/v1/admin/status", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn the_dashboard_is_one_self_contained_html_page() {
    let rig = rig().await;
    sync(&rig, "props").await;
    sync(&rig, "broken").await;
    let admin = token(Some("admin"));
    let response = handle_admin(
        &rig.api,
        request("GET", "/v1/admin/dashboard", Some(&admin), None),
    )
    .await
    .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let html = String::from_utf8(response.body().to_vec()).expect("utf-8");
    for expected in [
        "<!doctype html>",
        "props",
        "broken",
        "unhealthy",
        "healthy",
        "HTTP 404",
    ] {
        assert!(html.contains(expected), "{expected} missing");
    }
    assert!(
        !html.contains("<script") && !html.contains("http://") && !html.contains("https://"),
        "no scripts or external assets"
    );
    if let Ok(path) = std::env::var("SYNCLINE_DASHBOARD_OUT") {
        std::fs::write(path, html).expect("write the page");
    }
}

#[tokio::test]
async fn force_sync_refetches_one_record_and_tombstones_it_when_gone() {
    let rig = rig().await;
    sync(&rig, "props").await;
    // Changed upstream without a newer updated_at: only a force-sync sees it.
    rig._upstream.state.put(
        "p07",
        json!({"id": "p07", "name": "P7 renamed", "updated_at": "2026-11-01T00:00:00Z"}),
    );
    let (status, body) = call(&rig, "POST", "/v1/admin/sync/props/records/p07", None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    rig.drain().await;
    let p07 = syncline_tests::stored(&rig.t.store, "demo", "property", "p07")
        .await
        .expect("p07");
    assert_eq!(p07.data["name"], json!("P7 renamed"));
    assert_eq!(p07.version.get(), 2);

    rig._upstream.state.remove("p08");
    call(&rig, "POST", "/v1/admin/sync/props/records/p08", None).await;
    rig.drain().await;
    assert!(
        syncline_tests::stored(&rig.t.store, "demo", "property", "p08")
            .await
            .expect("p08")
            .deleted
    );

    let (status, _) = call(&rig, "POST", "/v1/admin/sync/nope/records/x", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&rig, "GET", "/v1/admin/sync/props/records/p07", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        rig.queue
            .dead_letters(10)
            .await
            .expect("dead letters")
            .is_empty()
    );
}

#[tokio::test]
async fn every_sample_event_gets_the_answer_its_case_expects() {
    let upstream = Upstream::start().await;
    let t = test_store().await;
    let document = json!({"sources": {"demo-properties": {"tenant": "demo", "entity": "property",
        "base_url": upstream.url, "path": "/offset", "records": "/data", "id": "/id",
        "pagination": {"offset": {"param": "offset"}}, "requests_per_second": 200}}})
    .to_string();
    let sources = SourceSet::parse(
        &document,
        syncline::connectors::http_client().expect("client"),
        local_secret(|_| None),
    )
    .expect("sources");
    let queue: Arc<dyn RetryQueue> =
        Arc::new(LocalQueue::new(t.store.clone(), "retry", 10).expect("queue"));
    let engine = Arc::new(SyncEngine::new(t.store.clone(), queue.clone(), sources));
    let api = AdminApi {
        sync: no_entities(&t.store),
        service: AdminService::new(t.store.clone(), queue, engine),
        auth: Authenticator::new(&AuthConfig {
            hs256_secret: Some("syncline-local-jwt-secret".into()),
            tenant_claim: "tenant".into(),
            ..AuthConfig::default()
        })
        .expect("auth"),
    };
    for (name, expected) in [
        ("status", 200),
        ("health", 503),
        ("runs", 200),
        ("settings-change", 200),
        ("sync-now", 202),
        ("dead-letters", 200),
        ("forbidden", 403),
    ] {
        let path = format!(
            "{}/../events/admin-api/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let event = lambda_http::request::from_str(&std::fs::read_to_string(path).expect("sample"))
            .expect("event");
        let response = handle_admin(&api, event).await.expect("response");
        assert_eq!(response.status().as_u16(), expected, "{name}");
    }
}

#[tokio::test]
async fn discrepancies_are_checked_on_demand_listed_and_repaired() {
    let rig = rig().await;
    sync(&rig, "props").await;
    rig._upstream.state.remove("p03");
    let (status, report) = call(&rig, "POST", "/v1/admin/discrepancies/props", None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["extra"], json!(["p03"]));
    assert_eq!(
        (
            report["missing_total"].clone(),
            report["stale_total"].clone()
        ),
        (json!(0), json!(0))
    );
    let (_, listed) = call(&rig, "GET", "/v1/admin/discrepancies", None).await;
    assert_eq!(listed["reports"].as_array().expect("reports").len(), 1);
    let (_, status_body) = call(&rig, "GET", "/v1/admin/status", None).await;
    assert!(
        status_body
            .to_string()
            .contains("discrepancies open: 0 missing, 1 extra, 0 stale")
    );

    let (_, repaired) = call(
        &rig,
        "POST",
        "/v1/admin/discrepancies/props",
        Some(json!({"repair": true})),
    )
    .await;
    assert_eq!(repaired["repairs_queued"], json!(1));
    rig.drain().await;
    let (_, after) = call(&rig, "POST", "/v1/admin/discrepancies/props", None).await;
    assert_eq!(after["extra_total"], json!(0), "{after}");
    let (status, _) = call(&rig, "POST", "/v1/admin/discrepancies/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_source_that_ran_long_ago_keeps_its_status_behind_many_newer_runs() {
    let rig = rig().await;
    sync(&rig, "broken").await;
    let props = sync(&rig, "props").await;
    // 250 newer run logs of another source in the log of all runs.
    for _ in 0..250 {
        rig.t
            .store
            .append_log(
                &syncline::store::LogStream::runs(),
                &props,
                Duration::from_secs(3600),
            )
            .await
            .expect("run log");
    }
    let (status, body) = call(&rig, "GET", "/v1/admin/status", None).await;
    assert_eq!(status, StatusCode::OK);
    let broken = body["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["source"] == json!("broken"))
        .expect("broken")
        .clone();
    assert_eq!(broken["last_run"]["status"], json!("failed"), "{broken}");
    assert!(
        broken["reasons"].to_string().contains("failing"),
        "{broken}"
    );
    let (_, runs) = call(&rig, "GET", "/v1/admin/runs?source=broken", None).await;
    let runs = runs["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], json!("failed"));
}
