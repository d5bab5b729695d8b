//! The operator console in a real browser: Debian's chromium, driven by
//! Playwright (tests/browser/console.mjs), against the local run. This test
//! prepares what a person acts on (runs, a dead letter, a conflict, a
//! discrepancy), runs the script, then checks in the store that what the
//! person did happened once, was audited, and that bad input wrote nothing.
//!
//! Needs `node`, `npm ci --prefix tests/browser` and `/usr/bin/chromium`
//! (.ci/run installs them); fails, never skips, without them.
//! `SYNCLINE_CONSOLE_SHOTS=docs/console` keeps the screenshots.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use syncline::retry::RetryPolicy;
use syncline_local::run::{Schedules, console_link};
use syncline_tests::demo_sources;
use syncline_tests::service::{JWT_SECRET, Service, ServiceConfig, demo_control, repo_root};

const SOURCE: &str = "demo-properties";

/// A webhook receiver that answers 200 to everything.
async fn sink() -> SocketAddr {
    let app = axum::Router::new().fallback(|| async { "ok" });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("sink") });
    addr
}

fn upsert(id: u64, record: &str, base: Option<u64>, crew: &str, at: i64) -> Value {
    json!({"id": id, "op": "upsert", "entity": "job", "record_id": record, "base_version": base,
           "data": {"crew": crew, "start": "2026-12-03T09:00:00Z", "notes": ""}, "timestamp": at})
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_works_the_console_in_a_real_browser() {
    let root = repo_root();
    let browser_dir = format!("{root}/tests/browser");
    assert!(
        std::path::Path::new(&format!("{browser_dir}/node_modules/playwright-core")).exists(),
        "playwright-core is not installed: run `npm ci --prefix tests/browser`"
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "chromium is not installed: apt-get install -y chromium"
    );

    let demo = syncline_tests::service::demo_source(syncline_local::demo::DemoCounts {
        properties: 120,
        ..syncline_local::demo::DemoCounts::default()
    })
    .await;
    let sink = sink().await;
    let service = Service::start(ServiceConfig {
        sources: Some(demo_sources(demo)),
        destinations: Some(json!({"destinations": {
            "cache-hook": {"tenant": "demo", "entities": ["property", "job"],
                           "kind": {"webhook": {"url": format!("http://{sink}/hook"), "secret": {"value": "whsec_c3luY2xpbmUtb3V0Ym91bmQtdGVzdC1zZWNyZXQ="}}}},
        }})),
        schedules: Some(Schedules {
            sync_every: None,
            check_every: None,
            drain_every: Duration::from_millis(200),
            deliver_every: Some(Duration::from_millis(500)),
        }),
        retry: Some(RetryPolicy {
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_millis(400),
            max_attempts: 2,
        }),
        ..ServiceConfig::default()
    })
    .await;

    // Runs for the charts: a full sync, changes, incremental syncs; each
    // tick also takes the minute's sample.
    let tick = json!({"detail": {"sources": [SOURCE]}});
    for round in 0..3 {
        if round > 0 {
            demo_control(demo, "properties/change", json!({"count": 10 * round})).await;
        }
        let run = service.invoke("scheduled-sync", tick.clone()).await;
        assert_eq!(run.status, 200, "{}", run.body);
        assert_eq!(
            run.body["runs"][0]["status"],
            json!("succeeded"),
            "{}",
            run.body
        );
    }

    // A dead letter: a force-sync during an outage fails every attempt.
    demo_control(demo, "outage", json!({"on": true})).await;
    let forced = service
        .admin(
            "POST",
            &format!("/v1/admin/sync/{SOURCE}/records/prop-000007"),
            Value::Null,
        )
        .await;
    assert_eq!(forced.status, 202, "{}", forced.body);
    wait_for("the force-sync to be dead-lettered", async || {
        let dead = service
            .admin("GET", "/v1/admin/dead-letters", Value::Null)
            .await;
        dead.body["dead_letters"]
            .as_array()
            .is_some_and(|d| d.len() == 1)
    })
    .await;
    demo_control(demo, "outage", json!({"on": false})).await;
    // Samples now see it waiting.
    for _ in 0..2 {
        let run = service.invoke("scheduled-sync", tick.clone()).await;
        assert_eq!(run.status, 200, "{}", run.body);
    }

    // A conflict: two devices edit job r1 from version 1.
    let t0 = 1_796_000_000_000_i64;
    let created = service
        .push("device-a", json!([upsert(1, "r1", None, "crew-a", t0)]))
        .await;
    assert_eq!(created[0]["status"], json!("applied"), "{created:?}");
    let edited = service
        .push(
            "device-a",
            json!([upsert(2, "r1", Some(1), "crew-b", t0 + 10)]),
        )
        .await;
    assert_eq!(edited[0]["status"], json!("applied"), "{edited:?}");
    let clash = service
        .push(
            "device-b",
            json!([upsert(1, "r1", Some(1), "crew-c", t0 + 20)]),
        )
        .await;
    assert_eq!(clash[0]["resolution"], json!("manual"), "{clash:?}");

    // Once the destination has caught up, one more sample.
    wait_for("the destination to catch up", async || {
        let status = service
            .admin("GET", "/v1/admin/destinations", Value::Null)
            .await;
        status.body["destinations"][0]["lag"] == json!(0)
    })
    .await;
    let run = service.invoke("scheduled-sync", tick.clone()).await;
    assert_eq!(run.status, 200, "{}", run.body);

    // A discrepancy: three records upstream that an incremental sync does
    // not see (their updated-at is in the past).
    demo_control(
        demo,
        "properties/add",
        json!({"count": 3, "backdate": true}),
    )
    .await;

    let settings_before = service
        .admin("GET", "/v1/admin/settings", Value::Null)
        .await;
    let http = service.url.trim_start_matches("http://").to_owned();
    let mut script = tokio::process::Command::new("node");
    script
        .arg("console.mjs")
        .current_dir(&browser_dir)
        .env("SYNCLINE_URL", &service.url)
        .env("SYNCLINE_ADMIN_TOKEN", Service::admin_token("demo"))
        .env("SYNCLINE_JWT_SECRET", JWT_SECRET)
        .env(
            "SYNCLINE_LINK",
            console_link(JWT_SECRET, &http, "demo").expect("link"),
        )
        .env("SYNCLINE_SOURCE", SOURCE)
        .env("SYNCLINE_RECORD", "job/r1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Ok(shots) = std::env::var("SYNCLINE_CONSOLE_SHOTS") {
        script.env("SYNCLINE_SHOTS", format!("{root}/{shots}"));
    }
    let output = tokio::time::timeout(Duration::from_secs(240), script.output())
        .await
        .expect("the browser script finishes within 4 minutes")
        .expect("node runs (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let dead = service
            .admin("GET", "/v1/admin/dead-letters", Value::Null)
            .await;
        panic!(
            "the browser script failed:\n{stdout}\n{stderr}\ndead letters now: {}",
            dead.body
        );
    }
    assert!(stdout.contains("ok: "), "{stdout}");

    // What the person did, seen from the store.
    let dead = service
        .admin("GET", "/v1/admin/dead-letters", Value::Null)
        .await;
    assert_eq!(dead.body["dead_letters"], json!([]), "redriven");
    wait_for("the redriven force-sync to finish", async || {
        service.drain_queue().await;
        service
            .pulled("demo", "property", "prop-000007")
            .await
            .is_some()
    })
    .await;
    let job = service.pulled("demo", "job", "r1").await.expect("job r1");
    assert_eq!(
        job["data"]["crew"],
        json!("crew-c"),
        "the client's change won"
    );
    assert_eq!(job["version"], json!(3), "applied once: {job}");
    let conflicts = service
        .admin("GET", "/v1/admin/conflicts", Value::Null)
        .await;
    assert_eq!(conflicts.body["conflicts"], json!([]));
    // The refused interval wrote nothing.
    let settings_after = service
        .admin("GET", "/v1/admin/settings", Value::Null)
        .await;
    assert_eq!(settings_before.body, settings_after.body);
    // Every action is in the audit trail, by the console's token subject.
    let audit = service
        .store
        .read_log::<Value>(&syncline::store::LogStream::audit(), 100, None)
        .await
        .expect("audit");
    let actions: Vec<(String, String)> = audit
        .items
        .iter()
        .map(|e| {
            (
                e.entry["action"].as_str().unwrap_or_default().to_owned(),
                e.entry["who"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for action in ["sync", "redrive", "resolve_conflict", "discrepancy_check"] {
        assert!(
            actions
                .iter()
                .any(|(a, who)| a == action && who == "local-user"),
            "{action} audited: {actions:?}"
        );
    }
    service.running.stop().await;
}

/// The page and its assets need no token and carry no data; every route
/// the page calls wants an admin token.
#[tokio::test]
async fn the_console_is_served_without_a_token_and_its_data_only_with_one() {
    let service = Service::start(ServiceConfig::default()).await;
    let client = reqwest::Client::new();
    for (path, kind) in [
        ("/v1/admin/console", "text/html"),
        ("/v1/admin/console/", "text/html"),
        ("/v1/admin/console/console.js", "text/javascript"),
        ("/v1/admin/console/console.css", "text/css"),
        ("/v1/admin/console/uplot.js", "text/javascript"),
        ("/v1/admin/console/uplot.css", "text/css"),
    ] {
        let reply = client
            .get(format!("{}{path}", service.url))
            .send()
            .await
            .expect("answered");
        assert_eq!(reply.status(), 200, "{path}");
        let header = |name: &str| {
            reply
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        let policy = header("content-security-policy");
        assert!(
            policy.contains("script-src 'self'") && policy.contains("connect-src 'self'"),
            "{path}: {policy}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("referrer-policy"), "no-referrer");
        let body = reply.text().await.expect("body");
        assert!(!body.contains("eyJ"), "{path} carries no token");
    }
    // Nothing but those files.
    let missing = service
        .send("GET", "/v1/admin/console/secrets.json", None, &[], None)
        .await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    // The page's own HTML fetches nothing from elsewhere.
    let page = client
        .get(format!("{}/v1/admin/console", service.url))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );

    // The routes it calls: 401 without a token, 403 with a client token.
    for path in [
        "/v1/admin/history",
        "/v1/admin/conflicts",
        "/v1/admin/records/job/r1",
    ] {
        let anonymous = service.send("GET", path, None, &[], None).await;
        assert_eq!(anonymous.status, 401, "{path}: {}", anonymous.body);
        let client_token = Service::token("demo");
        let client = service
            .send("GET", path, Some(&client_token), &[], None)
            .await;
        assert_eq!(client.status, 403, "{path}: {}", client.body);
    }
    let bad = service
        .admin("GET", "/v1/admin/history?hours=0", Value::Null)
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(
        bad.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("hours")),
        "{}",
        bad.body
    );
    for path in [
        "/v1/admin/records/job/nope",
        // Not a name an entity type can have (found by the fuzzer: a 400).
        "/v1/admin/records/%C3%AA%3C%3E/nope",
    ] {
        let none = service.admin("GET", path, Value::Null).await;
        assert_eq!(none.status, 404, "{path}: {}", none.body);
    }
    let unknown = service
        .admin(
            "POST",
            "/v1/admin/conflicts/nope/resolve",
            json!({"resolution": "server"}),
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let invalid = service
        .admin(
            "POST",
            "/v1/admin/conflicts/nope/resolve",
            json!({"resolution": "maybe"}),
        )
        .await;
    assert_eq!(invalid.status, 400, "{}", invalid.body);
    service.running.stop().await;
}
