//! The store misbehaving: every store request of the local run goes through
//! a proxy (`syncline_tests::faults`) that throttles, answers 500, loses
//! responses after applying the request and cancels transactions, 10% of
//! requests in all. Each workload runs through the entry points users use
//! (scheduled-sync's Invoke API, pushes, signed webhooks, the delivery loop)
//! with callers retrying what was not acknowledged, then the faults stop and
//! the outcome is checked against the model. The proxy's request log checks
//! the retry behaviour docs/RETRIES.md states for store requests.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use syncline_local::run::Schedules;
use syncline_tests::demo_sources;
use syncline_tests::faults::{FaultProxy, Faults, Outcome, Seen};
use syncline_tests::outbound::FakeApi;
use syncline_tests::service::{Service, ServiceConfig, demo_control};

/// The share of store requests that fail: 10%, or `SYNCLINE_FAULT_RATE`
/// (the longer form: docs/RETRIES.md "Store faults").
fn rate() -> f64 {
    std::env::var("SYNCLINE_FAULT_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0.10)
}
const SOURCE: &str = "demo-properties";

async fn service(proxy: &FaultProxy, config: ServiceConfig) -> Service {
    Service::start(ServiceConfig {
        store_proxy: Some(proxy.clone()),
        retry: Some(syncline::retry::RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(400),
            max_attempts: 20,
        }),
        ..config
    })
    .await
}

/// What the proxy saw while faults were on, checked against the retry rules:
/// no request (same operation and body) was sent more than the SDK's 4
/// attempts in a row of failures, and a retry after a fault never came at
/// once (jittered backoff, no hot loop). Returns (requests, faults).
fn retries_as_documented(seen: &[Seen]) -> (usize, usize) {
    let faults = seen
        .iter()
        .filter(|s| s.outcome != Outcome::Forwarded)
        .count();
    // Consecutive failed attempts of one request.
    let mut streak: BTreeMap<(String, u64), (usize, Instant)> = BTreeMap::new();
    let mut immediate = 0;
    let mut gaps = Vec::new();
    for s in seen {
        let key = (s.operation.clone(), s.body);
        if let Some((failed, last)) = streak.get(&key).copied()
            && failed > 0
        {
            let gap = s.at.duration_since(last);
            gaps.push(gap);
            if gap < Duration::from_micros(200) {
                immediate += 1;
            }
        }
        let entry = streak.entry(key).or_insert((0, s.at));
        if s.outcome == Outcome::Forwarded {
            *entry = (0, s.at);
        } else {
            *entry = (entry.0 + 1, s.at);
            assert!(
                entry.0 <= syncline::store::STORE_ATTEMPTS as usize,
                "{} sent {} times in a row after faults",
                s.operation,
                entry.0
            );
        }
    }
    // Full jitter draws some waits near zero; a hot loop makes them all so.
    assert!(
        immediate * 4 <= gaps.len().max(1),
        "{immediate} of {} retries came at once",
        gaps.len()
    );
    (seen.len(), faults)
}

/// Runs `f` until it returns `Some`, at most `tries` times.
async fn until<T>(what: &str, tries: usize, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..tries {
        if let Some(value) = f().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: gave up after {tries} tries");
}

/// The discrepancy check with the store healthy: nothing missing, extra or
/// stale, and the store holds `expected` records.
async fn store_equals_upstream(service: &Service, expected: u64) {
    let report = service
        .admin(
            "POST",
            &format!("/v1/admin/discrepancies/{SOURCE}"),
            json!({}),
        )
        .await;
    assert_eq!(report.status, 200, "{}", report.body);
    let body = &report.body;
    assert_eq!(
        (
            body["missing_total"].as_u64(),
            body["extra_total"].as_u64(),
            body["stale_total"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{body}"
    );
    assert_eq!(body["store_count"], json!(expected), "{body}");
}

/// A scheduled-sync invocation retried (as the next tick would) until its
/// run succeeds.
async fn sync_until_done(service: &Service, kind: &str) -> Value {
    until("a sync run", 40, async || {
        let run = service
            .invoke(
                "scheduled-sync",
                json!({"detail": {"sources": [SOURCE], "kind": kind}}),
            )
            .await;
        // Continuations go through the queue; let the worker take them.
        service.drain_queue_lenient().await;
        if std::env::var("SYNCLINE_FAULT_TRACE").is_ok() {
            eprintln!("sync: {} {}", run.status, run.body);
        }
        (run.status == 200 && run.body["runs"][0]["status"] == json!("succeeded"))
            .then(|| run.body["runs"][0].clone())
    })
    .await
}

/// The demo source with `properties` and the local run syncing it through
/// `proxy`, its bulk writes as `bulk_writes` says (`held`, as on DynamoDB,
/// or `transactions`).
async fn synced_service(
    proxy: &FaultProxy,
    properties: usize,
    bulk_writes: &str,
) -> (std::net::SocketAddr, Service) {
    let demo = syncline_tests::service::demo_source(syncline_local::demo::DemoCounts {
        properties,
        ..syncline_local::demo::DemoCounts::default()
    })
    .await;
    let service = service(
        proxy,
        ServiceConfig {
            sources: Some(demo_sources(demo)),
            vars: vec![("SYNCLINE_BULK_WRITES", bulk_writes.to_owned())],
            ..ServiceConfig::default()
        },
    )
    .await;
    (demo, service)
}

/// Pushes `mutations` as `client` until the push is acknowledged, as a
/// client does; every result must be applied (or already processed by a
/// push whose answer was lost). Returns how many pushes were refused (5xx).
async fn push_until_acknowledged(service: &Service, client: &str, mutations: &[Value]) -> usize {
    let mut refused = 0;
    loop {
        let reply = service.try_push(client, &json!(mutations)).await;
        if reply.status == 200 {
            let results = reply.body["results"].as_array().expect("results");
            assert!(
                results.iter().all(|r| r["status"] == json!("applied")
                    || r["status"] == json!("already_processed")),
                "{}",
                reply.body
            );
            return refused;
        }
        assert!(
            reply.status >= 500,
            "only the store's trouble refuses a push: {} {}",
            reply.status,
            reply.body
        );
        refused += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_and_incremental_syncs_end_exact_under_store_faults() {
    let proxy = FaultProxy::start(21).await;
    let (demo, service) = synced_service(&proxy, 1200, "held").await;
    proxy.take();
    proxy.set(Faults::mixed(rate()));
    sync_until_done(&service, "full").await;
    proxy.set(Faults::default());
    let full = proxy.take();
    store_equals_upstream(&service, 1200).await;

    demo_control(demo, "properties/change", json!({"count": 150})).await;
    demo_control(demo, "properties/add", json!({"count": 40})).await;
    proxy.take();
    proxy.set(Faults::mixed(rate()));
    sync_until_done(&service, "incremental").await;
    proxy.set(Faults::default());
    let incremental = proxy.take();
    store_equals_upstream(&service, 1240).await;

    // The records went out as DynamoDB gets them: conditional statements,
    // up to 25 to a BatchExecuteStatement.
    let batches = full
        .iter()
        .filter(|s| s.operation == "BatchExecuteStatement")
        .count();
    assert!(
        (48..200).contains(&batches),
        "{batches} BatchExecuteStatement requests for 1,200 records"
    );
    let (requests, faults) = retries_as_documented(&full);
    assert!(faults > 0, "faults were injected");
    let (requests2, faults2) = retries_as_documented(&incremental);
    assert!(faults2 > 0, "faults were injected");
    println!(
        "store faults, syncs: full {requests} requests / {faults} faults, incremental {requests2} / {faults2}"
    );
    service.running.stop().await;
}

/// A run the store stops (its record writes fail every attempt) is marked
/// failed; a run stopped where it cannot record that (its log entry cannot
/// be written) still frees its source: the next tick runs, rather than
/// waiting out the lease (the run's deadline plus 15 minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_by_the_store_frees_its_source() {
    let proxy = FaultProxy::start(25).await;
    let (_, service) = synced_service(&proxy, 300, "transactions").await;
    let tick = json!({"detail": {"sources": [SOURCE], "kind": "full"}});

    // Record writes fail (the local run writes each chunk of a page in one
    // transaction): the run says so.
    proxy.set(Faults {
        server_error: 1.0,
        only: Some("TransactWriteItems"),
        ..Faults::default()
    });
    let failed = service.invoke("scheduled-sync", tick.clone()).await;
    assert_eq!(failed.status, 200, "{}", failed.body);
    assert_eq!(
        failed.body["runs"][0]["status"],
        json!("failed"),
        "{}",
        failed.body
    );
    let writes = proxy
        .take()
        .iter()
        .filter(|s| s.operation == "TransactWriteItems")
        .count();
    // The first page's chunks go a few at a time: the first to fail
    // stops the run, and no later chunk or page is written.
    let attempts = syncline::store::STORE_ATTEMPTS as usize;
    assert!(
        (attempts..=attempts * syncline::store::TRANSACTIONS_IN_FLIGHT).contains(&writes),
        "{writes} writes: the chunks in flight, each tried {attempts} times, then the run stopped"
    );

    // The lease is taken (the first PutItem), then the run's log cannot be
    // written: the invocation fails, and the lease is given back.
    proxy.set(Faults {
        server_error: 1.0,
        only: Some("PutItem"),
        skip: 1,
        ..Faults::default()
    });
    let stopped = service.invoke("scheduled-sync", tick.clone()).await;
    assert_eq!(stopped.status, 500, "{}", stopped.body);
    proxy.set(Faults::default());
    let next = service.invoke("scheduled-sync", tick).await;
    assert_eq!(next.status, 200, "{}", next.body);
    assert_eq!(
        next.body["busy"],
        json!([]),
        "the source is free: {}",
        next.body
    );
    assert_eq!(
        next.body["runs"][0]["status"],
        json!("succeeded"),
        "{}",
        next.body
    );
    store_equals_upstream(&service, 300).await;
    service.running.stop().await;
}

/// Round `n` of a record only this client writes: based on the version
/// the previous round made.
fn upsert(id: u64, record: &str, n: u64, at: i64) -> Value {
    json!({"id": id, "op": "upsert", "entity": "task", "record_id": record,
           "base_version": (n > 1).then_some(n - 1),
           "data": {"title": format!("{record} #{n}"), "done": false}, "timestamp": at})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_from_several_clients_apply_once_under_store_faults() {
    let proxy = FaultProxy::start(22).await;
    let service = service(&proxy, ServiceConfig::default()).await;
    proxy.take();
    proxy.set(Faults::mixed(rate()));
    const CLIENTS: usize = 4;
    const RECORDS: u64 = 8;
    const ROUNDS: u64 = 6;
    let t0 = 1_796_000_000_000_i64;
    let mut unacknowledged = 0;
    let pushes = (0..CLIENTS).map(|c| {
        let service = &service;
        async move {
            let client = format!("device-{c}");
            let mut id = 0;
            let mut retries = 0;
            for round in 1..=ROUNDS {
                let mutations: Vec<Value> = (0..RECORDS)
                    .map(|r| {
                        id += 1;
                        upsert(id, &format!("{client}-r{r}"), round, t0 + id as i64)
                    })
                    .collect();
                retries += push_until_acknowledged(service, &client, &mutations).await;
            }
            retries
        }
    });
    for retries in futures_util::future::join_all(pushes).await {
        unacknowledged += retries;
    }
    proxy.set(Faults::default());
    let seen = proxy.take();
    // Every mutation applied exactly once: each record has one version per
    // round and the last round's content.
    let pulled = service.pull_all("demo", "task").await;
    let latest: BTreeMap<String, &Value> = pulled
        .iter()
        .map(|c| (c["id"].as_str().expect("id").to_owned(), c))
        .collect();
    assert_eq!(latest.len(), CLIENTS * RECORDS as usize);
    for (id, change) in &latest {
        assert_eq!(change["version"], json!(ROUNDS), "{id}: {change}");
        assert_eq!(
            change["data"]["title"],
            json!(format!("{id} #{ROUNDS}")),
            "{id}"
        );
    }
    let (requests, faults) = retries_as_documented(&seen);
    assert!(faults > 0, "faults were injected");
    println!(
        "store faults, pushes: {requests} requests / {faults} faults, {unacknowledged} pushes answered 5xx and retried"
    );
    service.running.stop().await;
}

fn shop_event(event: &str, product: &str, n: u64) -> (String, String) {
    let body = json!({"id": event, "topic": "product.updated",
                      "product": {"id": product, "title": format!("{product} v{n}"), "price": n}})
    .to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(b"shop-local-test-secret").expect("key");
    mac.update(body.as_bytes());
    (
        body,
        format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_apply_once_under_store_faults() {
    let proxy = FaultProxy::start(23).await;
    let service = service(
        &proxy,
        ServiceConfig {
            schedules: Some(syncline_tests::service::drain_only()),
            ..ServiceConfig::default()
        },
    )
    .await;
    proxy.take();
    proxy.set(Faults::mixed(rate()));
    // 200 events over 20 products, and 20 of them delivered twice (the
    // provider retrying), each sent until acknowledged.
    let mut events: Vec<(String, String, u64)> = (0..200u64)
        .map(|i| (format!("evt-{i:04}"), format!("p{:02}", i % 20), i / 20 + 1))
        .collect();
    let duplicates: Vec<_> = events.iter().step_by(10).cloned().collect();
    events.extend(duplicates);
    let mut refused = 0;
    for (event, product, n) in &events {
        let (body, signature) = shop_event(event, product, *n);
        loop {
            let reply = service
                .send(
                    "POST",
                    "/v1/webhooks/shop",
                    None,
                    &[("x-shop-signature", &signature)],
                    Some(body.clone()),
                )
                .await;
            if (200..300).contains(&reply.status) {
                break;
            }
            assert!(
                reply.status >= 500 || reply.status == 409,
                "{} {}",
                reply.status,
                reply.body
            );
            refused += 1;
        }
    }
    // Work a webhook handed to the retry queue finishes there.
    until("the retry queue to empty", 300, async || {
        (service.drain_queue_lenient().await == 0).then_some(())
    })
    .await;
    proxy.set(Faults::default());
    until("the retry queue to empty", 100, async || {
        (service.drain_queue().await == 0).then_some(())
    })
    .await;
    let seen = proxy.take();
    // Each event changed its product exactly once: the trail names every
    // event once and no event twice.
    let mut referenced: BTreeMap<String, usize> = BTreeMap::new();
    for p in 0..20 {
        let product = format!("p{p:02}");
        let trail = service
            .admin(
                "GET",
                &format!("/v1/admin/changes?entity=product&id={product}&limit=200"),
                Value::Null,
            )
            .await;
        for change in trail.body["changes"].as_array().expect("changes") {
            *referenced
                .entry(change["reference"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        let record = service
            .pulled("demo", "product", &product)
            .await
            .expect("product");
        assert_eq!(
            record["data"]["title"],
            json!(format!("{product} v10")),
            "{record}"
        );
        assert_eq!(record["version"], json!(10), "{record}");
    }
    let expected: BTreeSet<String> = (0..200).map(|i| format!("evt-{i:04}")).collect();
    assert_eq!(
        referenced.keys().cloned().collect::<BTreeSet<_>>(),
        expected
    );
    assert!(referenced.values().all(|n| *n == 1), "{referenced:?}");
    let (requests, faults) = retries_as_documented(&seen);
    assert!(faults > 0, "faults were injected");
    println!(
        "store faults, webhooks: {requests} requests / {faults} faults, {refused} deliveries answered 5xx and resent"
    );
    service.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_misses_nothing_and_sends_no_version_twice_under_store_faults() {
    let (api, addr) = FakeApi::start().await;
    let proxy = FaultProxy::start(24).await;
    let service = service(
        &proxy,
        ServiceConfig {
            destinations: Some(json!({"destinations": {"hook": {
                "tenant": "demo", "entities": ["task"],
                "kind": {"webhook": {"url": format!("http://{addr}/hooks"),
                                     "secret": {"value": "whsec_c3luY2xpbmUtb3V0Ym91bmQtdGVzdC1zZWNyZXQ="}}},
            }}})),
            schedules: Some(Schedules {
                sync_every: None,
                check_every: None,
                drain_every: Duration::from_millis(200),
                deliver_every: Some(Duration::from_millis(300)),
            }),
            ..ServiceConfig::default()
        },
    )
    .await;
    proxy.take();
    proxy.set(Faults::mixed(rate()));
    // 60 records, three versions each, pushed while deliveries run.
    let t0 = 1_796_000_000_000_i64;
    let mut id = 0;
    for round in 1..=3u64 {
        let mutations: Vec<Value> = (0..60)
            .map(|r| {
                id += 1;
                upsert(id, &format!("t{r:02}"), round, t0 + id as i64)
            })
            .collect();
        push_until_acknowledged(&service, "writer", &mutations).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // Deliveries catch up while the store keeps failing, then it recovers.
    until(
        "the destination to catch up under faults",
        600,
        async || {
            let status = service
                .admin("GET", "/v1/admin/destinations", Value::Null)
                .await;
            service.drain_queue_lenient().await;
            (status.status == 200 && status.body["destinations"][0]["lag"] == json!(0))
                .then_some(())
        },
    )
    .await;
    proxy.set(Faults::default());
    let seen = proxy.take();
    until("the retry queue to empty", 100, async || {
        (service.drain_queue().await == 0).then_some(())
    })
    .await;
    // Nothing missed: every record's last version arrived. Nothing twice:
    // a version arrives under one webhook id (repeats of an id are the same
    // effect, the receiver drops them).
    let mut ids_of: BTreeMap<(String, u64), BTreeSet<String>> = BTreeMap::new();
    let mut newest: BTreeMap<String, u64> = BTreeMap::new();
    for received in api.received() {
        let body: Value = serde_json::from_str(&received.body).expect("json");
        let record = body["data"]["id"].as_str().expect("id").to_owned();
        let version = body["data"]["version"].as_u64().expect("version");
        let webhook_id = received
            .headers
            .get("webhook-id")
            .cloned()
            .expect("webhook-id");
        ids_of
            .entry((record.clone(), version))
            .or_default()
            .insert(webhook_id);
        let entry = newest.entry(record).or_default();
        *entry = (*entry).max(version);
    }
    assert_eq!(newest.len(), 60, "every record delivered");
    assert!(newest.values().all(|v| *v == 3), "{newest:?}");
    assert!(
        ids_of.values().all(|ids| ids.len() == 1),
        "a version sent under two ids: {ids_of:?}"
    );
    let (requests, faults) = retries_as_documented(&seen);
    let mut by_operation: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &seen {
        *by_operation.entry(s.operation.as_str()).or_default() += 1;
    }
    assert!(
        faults > 0,
        "faults were injected: {by_operation:?} {:?}",
        FaultProxy::tally(&seen)
    );
    println!(
        "store faults, delivery: {requests} requests / {faults} faults, {} webhooks for {} versions",
        api.received().len(),
        ids_of.len()
    );
    service.running.stop().await;
}

/// A bulk write holds the sequence numbers it is writing: while its
/// record writes are slow (400 ms each, through the proxy), a reader on
/// the same store sees the feed end before the block, even past a
/// transaction that committed after it; when the chunks are done the feed
/// holds all of it, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_pass_a_bulk_write_still_writing() {
    use syncline::model::{Cursor, EntityType, RecordId, Seq, TenantId};
    use syncline::store::{Change, Expect, RecordWrite, Trail, TrailPath};

    let (_engine, direct, slow) = slowed_statements(31, Duration::from_millis(400)).await;
    let tenant = TenantId::parse("acme").expect("tenant");
    let entity = EntityType::parse("property").expect("entity");
    let data = |i: usize| json!({"i": i}).as_object().cloned().expect("object");
    let changes = puts(150);
    let trail = Trail::new(TrailPath::Sync, "property-api", "run-1");
    let writing = {
        let (slow, tenant, entity) = (slow.clone(), tenant.clone(), entity.clone());
        tokio::spawn(async move {
            slow.upsert_batch(&tenant, &entity, None, changes, &trail)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(direct.allocated_seq(&tenant).await.expect("seq").get(), 150);
    assert_eq!(direct.latest_seq(&tenant).await.expect("seq").get(), 0);
    // A transaction commits meanwhile, after the held block.
    let other = direct
        .put_record(
            &tenant,
            RecordWrite {
                entity: entity.clone(),
                id: RecordId::parse("x").expect("id"),
                change: Change::Put(data(999)),
                expect: Expect::Absent,
                source: None,
                origin: None,
                source_version: None,
            },
        )
        .await
        .expect("committed");
    assert_eq!(other.record.seq.get(), 151);
    let entities = std::slice::from_ref(&entity);
    let early = direct
        .changes_since(&tenant, entities, Cursor::START, 1000)
        .await
        .expect("feed");
    assert!(early.records.is_empty(), "{:?}", early.records);
    assert_eq!(early.cursor.seq(), Seq::new(0));
    let early = direct
        .changes_for_client(&tenant, entities, Cursor::START, 1000)
        .await
        .expect("feed");
    // A client is not told its state is complete while numbers are held.
    assert!(early.records.is_empty() && !early.has_more && !early.settled);

    let outcome = writing.await.expect("task").expect("written");
    assert_eq!(outcome.created, 150);
    assert_eq!(direct.latest_seq(&tenant).await.expect("seq").get(), 151);
    let feed = direct
        .changes_since(&tenant, entities, Cursor::START, 1000)
        .await
        .expect("feed");
    let seqs: Vec<u64> = feed.records.iter().map(|r| r.seq.get()).collect();
    assert_eq!(seqs, (1..=151).collect::<Vec<_>>());
    assert_eq!(feed.records.last().map(|r| r.id.as_str()), Some("x"));
    assert!(!feed.has_more && feed.settled);
}

/// A statement batch whose answer is lost is sent again; its statements
/// then fail their conditions on the records they wrote themselves. Those
/// are told apart by the sequence number they carry: the chunk counts
/// them as written (created, not unchanged), the trail entry keeps them,
/// and nothing is written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_batch_whose_answer_was_lost_counts_what_it_wrote() {
    use syncline::model::{Cursor, EntityType, RecordId, TenantId};
    use syncline::store::{Change, Store, Trail, TrailPath};
    use syncline_local::embedded::{EmbeddedEngine, Storage};

    let engine = EmbeddedEngine::start(Storage::Memory, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("engine");
    let proxy = FaultProxy::start(33).await;
    proxy.forward_to(engine.endpoint());
    let store = Store::from_sdk_config(&engine.sdk_config_via(&proxy.url()).await, "held");
    store.ensure_table().await.expect("table");
    let tenant = TenantId::parse("acme").expect("tenant");
    let entity = EntityType::parse("property").expect("entity");
    let batch = |v: &str| -> Vec<(RecordId, Change)> {
        (0..60)
            .map(|i| {
                let data = json!({"i": i, "v": v})
                    .as_object()
                    .cloned()
                    .expect("object");
                (
                    RecordId::parse(&format!("p{i:02}")).expect("id"),
                    Change::Put(data),
                )
            })
            .collect()
    };
    let trail = Trail::new(TrailPath::Sync, "property-api", "run-1");

    // Every batch's first answer is lost (inserts, then updates).
    for (round, (v, created, updated)) in [("a", 60, 0), ("b", 0, 60)].into_iter().enumerate() {
        proxy.take();
        proxy.set(Faults {
            lost_response: 1.0,
            only: Some("BatchExecuteStatement"),
            limit: Some(3),
            ..Faults::default()
        });
        let outcome = store
            .upsert_batch(&tenant, &entity, None, batch(v), &trail)
            .await
            .expect("written");
        proxy.set(Faults::default());
        let lost = proxy
            .take()
            .iter()
            .filter(|s| s.outcome == Outcome::LostResponse)
            .count();
        assert_eq!(lost, 3, "round {round}: three answers lost");
        assert_eq!(
            (outcome.created, outcome.updated, outcome.unchanged),
            (created, updated, 0),
            "round {round}"
        );
    }
    // Two versions of each record, each under one number, and the trail
    // names every version once.
    let feed = store
        .changes_since(&tenant, std::slice::from_ref(&entity), Cursor::START, 1000)
        .await
        .expect("feed");
    assert_eq!(feed.records.len(), 60);
    assert!(feed.records.iter().all(|r| r.version.get() == 2));
    assert!(feed.records.iter().all(|r| r.data["v"] == json!("b")));
    assert_eq!(store.allocated_seq(&tenant).await.expect("seq").get(), 120);
    let entries = store
        .read_trail(&tenant, None, 100, 1000, None)
        .await
        .expect("trail");
    let mut named: Vec<(String, u64)> = entries
        .items
        .iter()
        .flat_map(|(_, e)| e.changes.iter())
        .map(|c| (c.id.as_str().to_owned(), c.version))
        .collect();
    named.sort();
    let expected: Vec<(String, u64)> = (0..60)
        .flat_map(|i| [(format!("p{i:02}"), 1), (format!("p{i:02}"), 2)])
        .collect();
    assert_eq!(named, expected);
}

/// A bulk write stopped while its blocks are held (its process killed)
/// leaves readers stopped before them until their deadlines; the Scan a
/// local run starts with ends them, and gives no feed entries to a store
/// that needs none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_start_ends_the_blocks_a_stopped_bulk_write_held() {
    use syncline::model::{EntityType, TenantId};
    use syncline::store::{Tidied, Trail, TrailPath};

    let (_engine, direct, slow) = slowed_statements(37, Duration::from_secs(30)).await;
    let tenant = TenantId::parse("acme").expect("tenant");
    let entity = EntityType::parse("property").expect("entity");
    let changes = puts(150);
    let writing = {
        let (slow, tenant, entity) = (slow.clone(), tenant.clone(), entity.clone());
        tokio::spawn(async move {
            let trail = Trail::new(TrailPath::Sync, "property-api", "run-1");
            slow.upsert_batch(&tenant, &entity, None, changes, &trail)
                .await
        })
    };
    let started = Instant::now();
    while direct.allocated_seq(&tenant).await.expect("seq").get() < 150 {
        assert!(started.elapsed() < Duration::from_secs(10), "no block held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writing.abort();
    assert_eq!(direct.latest_seq(&tenant).await.expect("seq").get(), 0);
    // Two chunks (100 and 50 records), one block each.
    assert_eq!(
        direct.tidy_at_start().await.expect("tidy"),
        Tidied {
            holds: 2,
            ..Tidied::default()
        }
    );
    assert_eq!(direct.latest_seq(&tenant).await.expect("seq").get(), 150);
    assert_eq!(
        direct.tidy_at_start().await.expect("again"),
        Tidied::default()
    );
}

/// An engine on table `held`, a store on it, and a store reaching it
/// through a proxy (answering from the engine in process) that delays
/// every BatchExecuteStatement by `delay`: a bulk write's records, slowed.
async fn slowed_statements(
    seed: u64,
    delay: Duration,
) -> (
    syncline_local::embedded::EmbeddedEngine,
    syncline::store::Store,
    syncline::store::Store,
) {
    use syncline::store::Store;
    use syncline_local::embedded::{EmbeddedEngine, Storage};

    let engine = EmbeddedEngine::start(Storage::Memory, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("engine");
    let proxy = FaultProxy::start(seed).await;
    proxy.answer_with(engine.answerer());
    let direct = Store::from_sdk_config(&engine.sdk_config().await, "held");
    direct.ensure_table().await.expect("table");
    let slow = Store::from_sdk_config(&engine.sdk_config_via(&proxy.url()).await, "held");
    proxy.set(Faults {
        only: Some("BatchExecuteStatement"),
        ..Faults::latency(delay)
    });
    (engine, direct, slow)
}

/// Puts of `{"i": i}` as records p000, p001, ...
fn puts(count: usize) -> Vec<(syncline::model::RecordId, syncline::store::Change)> {
    (0..count)
        .map(|i| {
            let data = json!({"i": i}).as_object().cloned().expect("object");
            (
                syncline::model::RecordId::parse(&format!("p{i:03}")).expect("id"),
                syncline::store::Change::Put(data),
            )
        })
        .collect()
}
