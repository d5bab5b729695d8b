//! Poison and overload at the edges: oversized and deeply nested JSON on
//! every route, request bodies trickled a byte at a time, sources whose
//! pagination never ends or whose page never ends, and a flood of webhooks
//! with duplicates. Each gets a clear answer, holds bounded memory, and
//! loses nothing that was acknowledged.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use syncline_tests::service::{Service, ServiceConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the store holds that a request could have written: trail entries,
/// audit entries, runs, stored records of the demo tenant.
async fn written(service: &Service) -> (usize, usize, usize, usize) {
    let store = &service.store;
    let count = |stream: syncline::store::LogStream| async move {
        store
            .read_log::<Value>(&stream, 1000, None)
            .await
            .expect("log")
            .items
            .len()
    };
    let tenant = syncline::model::TenantId::parse("demo").expect("tenant");
    let mut records = 0;
    for entity in ["task", "property", "job", "product", "order", "_conflict"] {
        records += store
            .list_records(
                &tenant,
                &syncline::model::EntityType::parse(entity).expect("entity"),
                1000,
                None,
            )
            .await
            .expect("records")
            .items
            .len();
    }
    let trail = service
        .admin("GET", "/v1/admin/changes?limit=200", Value::Null)
        .await;
    (
        trail.body["changes"].as_array().map_or(0, Vec::len),
        count(syncline::store::LogStream::audit()).await,
        count(syncline::store::LogStream::runs()).await,
        records,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_deeply_nested_bodies_get_a_clear_4xx_on_every_route_and_write_nothing() {
    let service = Service::with_demo(5).await;
    let token = Service::admin_token("demo");
    let before = written(&service).await;
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let nested_object = format!("{}1{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    let oversized = format!("{{\"a\": \"{}\"}}", "x".repeat(11 * 1024 * 1024));
    let mut checked = 0;
    // Routes that take a body; the rest ignore one (the older worker
    // routes are called without).
    for route in super::openapi::with_body() {
        let (method, path) = route.split_once(' ').expect("method and path");
        let path = super::openapi::concrete(path, "demo-properties");
        for (what, body) in [
            ("nested arrays", &nested),
            ("nested objects", &nested_object),
            ("11 MiB", &oversized),
        ] {
            let started = Instant::now();
            let reply = service
                .send(
                    method,
                    &path,
                    Some(&token),
                    &[("x-shop-signature", "sha256=00")],
                    Some(body.clone()),
                )
                .await;
            assert!(
                (400..500).contains(&reply.status),
                "{route} with {what}: {} {}",
                reply.status,
                reply.body
            );
            assert!(
                reply.body["error"]["code"].is_string(),
                "{route} with {what}: a JSON error body, got {}",
                reply.body
            );
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{route} with {what}: answered in {:?}",
                started.elapsed()
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 42,
        "{checked} route/body pairs (14 routes take a body)"
    );
    assert_eq!(written(&service).await, before, "nothing written");
    let health = service.admin("GET", "/v1/admin/status", Value::Null).await;
    assert_eq!(health.status, 200, "still serving: {}", health.body);
    service.running.stop().await;
}

/// Request bodies trickled a byte every 500 ms: each connection is answered
/// 408 after the local run's 10 s body timeout, and other requests are
/// served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_bodies_are_cut_off_and_do_not_block_others() {
    let service = Service::start(ServiceConfig::default()).await;
    let addr = service.url.trim_start_matches("http://").to_owned();
    let token = Service::token("demo");
    let loris = (0..20).map(|_| {
        let addr = addr.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let mut socket = tokio::net::TcpStream::connect(&addr).await.expect("connect");
            let head = format!(
                "POST /v1/sync/push HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n"
            );
            socket.write_all(head.as_bytes()).await.expect("head");
            let started = Instant::now();
            let mut answer = Vec::new();
            let mut buffer = [0u8; 4096];
            loop {
                tokio::select! {
                    read = socket.read(&mut buffer) => match read {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            answer.extend_from_slice(&buffer[..n]);
                            if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                                break;
                            }
                        }
                    },
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {
                        if socket.write_all(b" ").await.is_err() {
                            break;
                        }
                    }
                }
                assert!(started.elapsed() < Duration::from_secs(30), "still open after 30 s");
            }
            (started.elapsed(), String::from_utf8_lossy(&answer).into_owned())
        })
    });
    let loris: Vec<_> = loris.collect();
    // Meanwhile the service answers others at once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..5 {
        let started = Instant::now();
        let pull = service
            .client(
                "demo",
                "POST",
                "/v1/sync/pull",
                json!({"entities": ["task"]}),
            )
            .await;
        assert_eq!(pull.status, 200, "{}", pull.body);
        // Milliseconds normally; blocked behind the slow clients, 10 s.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a pull waited {:?}",
            started.elapsed()
        );
    }
    for slow in loris {
        let (took, answer) = slow.await.expect("slow client");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("request_timeout"), "{answer}");
        assert!(
            took >= Duration::from_secs(9) && took < Duration::from_secs(15),
            "cut off after {took:?}"
        );
    }
    service.running.stop().await;
}

/// A source that never stops paginating, one that answers the same cursor
/// again, and one whose page never ends.
async fn misbehaving_source() -> String {
    async fn endless(Query(q): Query<BTreeMap<String, String>>) -> axum::Json<Value> {
        let n: u64 = q.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
        axum::Json(
            json!({"data": [{"id": format!("e-{n}"), "name": "endless", "price": n}],
                          "next_cursor": (n + 1).to_string()}),
        )
    }
    async fn same() -> axum::Json<Value> {
        axum::Json(json!({"data": [{"id": "s-1", "name": "same", "price": 1}], "next_cursor": "7"}))
    }
    async fn forever() -> axum::response::Response {
        let chunk = bytes_of(64 * 1024);
        let stream = futures_util::stream::unfold(0u64, move |n| {
            let chunk = chunk.clone();
            async move {
                let piece = if n == 0 {
                    axum::body::Bytes::from_static(b"{\"data\": [")
                } else {
                    chunk
                };
                Some((Ok::<_, std::io::Error>(piece), n + 1))
            }
        });
        axum::response::Response::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from_stream(stream))
            .expect("response")
    }
    let app = Router::new()
        .route("/endless", get(endless))
        .route("/same", get(same))
        .route("/forever", get(forever));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("upstream") });
    format!("http://{addr}")
}

fn bytes_of(n: usize) -> axum::body::Bytes {
    axum::body::Bytes::from(" ".repeat(n))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_pagination_and_endless_pages_fail_the_run_clearly() {
    let url = misbehaving_source().await;
    let source = |path: &str| {
        json!({"tenant": "demo", "entity": "property", "base_url": url, "path": path,
               "records": "/data", "id": "/id", "page_size": 1, "page_size_param": "limit",
               "requests_per_second": 1000, "max_pages": 25,
               "pagination": {"cursor_body": {"cursor_path": "/next_cursor", "param": "cursor"}}})
    };
    let service = Service::start(ServiceConfig {
        sources: Some(json!({"sources": {
            "endless": source("/endless"), "same": source("/same"), "forever": source("/forever"),
        }})),
        ..ServiceConfig::default()
    })
    .await;
    for (name, expected) in [
        ("endless", "more than 25 pages in one run (max_pages)"),
        ("same", "the next page is the page just read"),
        ("forever", "larger than 33554432 bytes"),
    ] {
        let started = Instant::now();
        let run = service
            .invoke("scheduled-sync", json!({"detail": {"sources": [name]}}))
            .await;
        assert_eq!(run.status, 200, "{name}: {}", run.body);
        let log = &run.body["runs"][0];
        assert_eq!(log["status"], json!("failed"), "{name}: {log}");
        assert!(
            log["error"].as_str().is_some_and(|e| e.contains(expected)),
            "{name}: {log}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{name}: {:?}",
            started.elapsed()
        );
        // The source is free for the next run.
        let again = service
            .invoke("scheduled-sync", json!({"detail": {"sources": [name]}}))
            .await;
        assert_eq!(again.body["busy"], json!([]), "{name}: {}", again.body);
    }
    // What the endless source's pages held before the cut is stored.
    let stored = service.pull_all("demo", "property").await;
    assert!(stored.iter().any(|c| c["id"] == json!("e-0")), "{stored:?}");
    service.running.stop().await;
}

fn signed_shop_event(event: &str, product: &str) -> (String, String) {
    let body = json!({"id": event, "topic": "product.updated",
                      "product": {"id": product, "title": format!("{product} title"), "price": 1}})
    .to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(b"shop-local-test-secret").expect("key");
    mac.update(body.as_bytes());
    (
        body,
        format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
    )
}

/// Resident memory of this process (kB), from /proc.
fn resident_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_webhooks_with_duplicates_is_applied_once_each() {
    // 1,000 + 111 in the test command; SYNCLINE_FLOOD_EVENTS=9000 is the
    // flood of 10,000 (docs/OPERATIONS.md "Poison and overload").
    let events: usize = std::env::var("SYNCLINE_FLOOD_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    let duplicates = events / 9;
    let service = Service::start(ServiceConfig {
        schedules: Some(syncline_tests::service::drain_only()),
        ..ServiceConfig::default()
    })
    .await;
    let mut deliveries: Vec<(String, String)> = (0..events)
        .map(|i| signed_shop_event(&format!("flood-{i:05}"), &format!("fp-{i:05}")))
        .collect();
    // A tenth again, as providers redeliver, spread through the flood.
    let again: Vec<_> = deliveries
        .iter()
        .step_by(events / duplicates)
        .take(duplicates)
        .cloned()
        .collect();
    for (n, delivery) in again.into_iter().enumerate() {
        deliveries.insert((n * 10 + 5).min(deliveries.len()), delivery);
    }
    assert_eq!(deliveries.len(), events + duplicates);
    let memory_before = resident_kb();
    let started = Instant::now();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut peak = memory_before;
    let service_ref = &service;
    for batch in deliveries.chunks(64) {
        let replies =
            futures_util::future::join_all(batch.iter().map(|(body, signature)| async move {
                service_ref
                    .send(
                        "POST",
                        "/v1/webhooks/shop",
                        None,
                        &[("x-shop-signature", signature)],
                        Some(body.clone()),
                    )
                    .await
            }))
            .await;
        for reply in replies {
            *statuses.entry(reply.status).or_default() += 1;
        }
        peak = peak.max(resident_kb());
    }
    let took = started.elapsed();
    assert!(
        statuses.keys().all(|s| (200..300).contains(s)),
        "every delivery acknowledged: {statuses:?}"
    );
    // Every event stored once: one product each, at version 1, and the
    // trail names each event once.
    let products = service.pull_all("demo", "product").await;
    let flood: Vec<_> = products
        .iter()
        .filter(|c| c["id"].as_str().is_some_and(|id| id.starts_with("fp-")))
        .collect();
    assert_eq!(flood.len(), events);
    assert!(flood.iter().all(|c| c["version"] == json!(1)));
    let mut references: BTreeMap<String, usize> = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/admin/changes?limit=200&cursor={c}"),
            None => "/v1/admin/changes?limit=200".to_owned(),
        };
        let page = service.admin("GET", &path, Value::Null).await;
        for entry in page.body["changes"].as_array().expect("changes") {
            if entry["via"] == json!("webhook") {
                *references
                    .entry(entry["reference"].as_str().unwrap_or_default().to_owned())
                    .or_default() += 1;
            }
        }
        match page.body["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(references.len(), events, "each event in the trail");
    assert!(references.values().all(|n| *n == 1), "none twice");
    println!(
        "webhook flood: {} deliveries ({duplicates} duplicates) in {:.1} s, {statuses:?}, resident {} MB -> peak {} MB",
        events + duplicates,
        took.as_secs_f64(),
        memory_before / 1024,
        peak / 1024
    );
    assert!(
        peak.saturating_sub(memory_before) < 256 * 1024,
        "memory grew by {} MB",
        (peak - memory_before) / 1024
    );
    service.running.stop().await;
}
