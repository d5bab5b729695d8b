//! Destinations through the local run: clients push, the delivery function
//! runs (as DynamoDB Streams or its schedule would invoke it), and a real
//! Redis server, a signed-webhook receiver and fake JSON APIs in the real
//! request shapes receive each change once, never echoed back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde_json::{Value, json};
use syncline::delivery::{Outbound, RedisTarget, Target};
use syncline::model::{
    ContentHash, EntityType, Record, RecordId, Seq, TenantId, Timestamp, Version,
};
use syncline::webhooks::{Headers, Verifier, VerifierSpec};
use syncline_tests::demo_sources;
use syncline_tests::outbound::FakeApi;
use syncline_tests::redis::redis_server;
use syncline_tests::service::{Service, ServiceConfig, demo_source};

const WEBHOOK_SECRET: &str = "whsec_c3luY2xpbmUtb3V0Ym91bmQtdGVzdC1zZWNyZXQ=";

fn prefix() -> String {
    format!("t{}:", uuid::Uuid::new_v4().simple())
}

async fn start(destinations: Value) -> Service {
    Service::start(ServiceConfig {
        destinations: Some(destinations),
        ..ServiceConfig::default()
    })
    .await
}

/// Pushes upserts (`Some(data)`) and deletes (`None`) of tasks for the
/// tenant `demo`; a record pushed before is changed on top of its version
/// (the pushes of a test are its only writers).
async fn push(service: &Service, client: &str, first_id: u64, changes: &[(&str, Option<Value>)]) {
    let mut versions = Vec::new();
    for (id, _) in changes {
        versions.push(
            service
                .pulled("demo", "task", id)
                .await
                .and_then(|r| r["version"].as_u64()),
        );
    }
    let mutations: Vec<Value> = changes
        .iter()
        .zip(versions)
        .enumerate()
        .map(|(i, ((id, data), base))| {
            let mut m = json!({
                "id": first_id + i as u64, "entity": "task", "record_id": id,
                "timestamp": Timestamp::now().as_millis(),
            });
            if let Some(base) = base {
                m["base_version"] = json!(base);
            }
            match data {
                Some(data) => {
                    m["op"] = json!("upsert");
                    m["data"] = data.clone();
                }
                None => m["op"] = json!("delete"),
            }
            m
        })
        .collect();
    for result in service.push(client, json!(mutations)).await {
        assert_eq!(result["status"], json!("applied"), "{result}");
    }
}

/// Pushes tasks `t1`..`tn` whose titles name payment intents `pi_1`..`pi_n`.
async fn push_payments(service: &Service, n: usize) {
    let changes: Vec<(String, Option<Value>)> = (1..=n)
        .map(|i| (format!("t{i}"), Some(json!({"title": format!("pi_{i}")}))))
        .collect();
    let borrowed: Vec<(&str, Option<Value>)> = changes
        .iter()
        .map(|(id, data)| (id.as_str(), data.clone()))
        .collect();
    push(service, "phone", 1, &borrowed).await;
}

async fn deliver(service: &Service) -> Value {
    let reply = service.invoke("delivery", json!({})).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body
}

fn run_of<'a>(output: &'a Value, destination: &str) -> &'a Value {
    output["runs"]
        .as_array()
        .and_then(|runs| runs.iter().find(|r| r["destination"] == json!(destination)))
        .expect("a run of the destination")
}

async fn ledger(service: &Service, destination: &str) -> HashMap<String, Value> {
    let reply = service
        .admin(
            "GET",
            &format!("/v1/admin/destinations/{destination}/deliveries"),
            Value::Null,
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| (d["id"].as_str().expect("id").to_owned(), d.clone()))
        .collect()
}

fn redis_destination(prefix: &str) -> Value {
    json!({"destinations": {"cache": {
        "tenant": "demo", "entities": ["task"],
        "kind": {"redis": {"url": {"value": redis_server().url}, "prefix": prefix, "index": true}},
    }}})
}

#[tokio::test]
async fn redis_holds_each_record_as_json_with_an_index_and_deletes_remove_it() {
    let prefix = prefix();
    let service = start(redis_destination(&prefix)).await;
    let mut redis = redis_server().connection().await;

    push(
        &service,
        "phone",
        1,
        &[
            ("t1", Some(json!({"title": "Quote", "done": false}))),
            ("t2", Some(json!({"title": "Visit"}))),
        ],
    )
    .await;
    let first = deliver(&service).await;
    assert_eq!(run_of(&first, "cache")["delivered"], json!(2));
    let t1: String = redis.get(format!("{prefix}task:t1")).await.expect("get");
    assert_eq!(
        serde_json::from_str::<Value>(&t1).expect("json"),
        json!({"title": "Quote", "done": false})
    );
    let mut index: Vec<String> = redis
        .smembers(format!("{prefix}task"))
        .await
        .expect("smembers");
    index.sort();
    assert_eq!(index, vec!["t1", "t2"]);

    push(
        &service,
        "phone",
        3,
        &[
            ("t1", Some(json!({"title": "Quote", "done": true}))),
            ("t2", None),
        ],
    )
    .await;
    let second = deliver(&service).await;
    assert_eq!(run_of(&second, "cache")["delivered"], json!(2));
    let t1: String = redis.get(format!("{prefix}task:t1")).await.expect("get");
    assert_eq!(
        serde_json::from_str::<Value>(&t1).expect("json")["done"],
        json!(true)
    );
    let t2: Option<String> = redis.get(format!("{prefix}task:t2")).await.expect("get");
    assert_eq!(t2, None, "the delete removed the key");
    let index: Vec<String> = redis
        .smembers(format!("{prefix}task"))
        .await
        .expect("smembers");
    assert_eq!(index, vec!["t1"]);

    // Nothing new: the run reads and writes nothing.
    let idle = deliver(&service).await;
    assert_eq!(run_of(&idle, "cache")["delivered"], json!(0));
    let ledger = ledger(&service, "cache").await;
    assert_eq!(ledger["t1"]["status"], json!("delivered"));
    assert_eq!(ledger["t1"]["delivered_version"], json!(2));
    assert_eq!(ledger["t2"]["delivered_version"], json!(2));
}

fn task(id: &str, version: u64, data: Value, deleted: bool) -> Record {
    let data = data.as_object().cloned().unwrap_or_default();
    let mut version_of = Version::FIRST;
    for _ in 1..version {
        version_of = version_of.next();
    }
    Record {
        tenant: TenantId::parse("demo").expect("tenant"),
        entity: EntityType::parse("task").expect("entity"),
        id: RecordId::parse(id).expect("id"),
        hash: ContentHash::of(&data, deleted),
        data,
        version: version_of,
        deleted,
        source: None,
        created_at: Timestamp::now(),
        updated_at: Timestamp::now(),
        seq: Seq::new(version),
        origin: None,
        source_version: None,
        changed_by: None,
    }
}

#[tokio::test]
async fn a_late_or_redelivered_older_version_never_overwrites_a_newer_one_in_redis() {
    let prefix = prefix();
    let target = RedisTarget::new(&redis_server().url, &prefix, true).expect("target");
    let mut redis = redis_server().connection().await;
    let apply = |record: &Record| {
        let data = record.data.clone();
        let record = record.clone();
        let target = &target;
        async move {
            target
                .apply(&Outbound {
                    destination: "cache",
                    record: &record,
                    data: &data,
                    external_id: None,
                    key: "k",
                })
                .await
                .expect("apply")
        }
    };
    let newer = apply(&task("t1", 2, json!({"title": "new"}), false)).await;
    assert!(!newer.stale);
    let late = apply(&task("t1", 1, json!({"title": "old"}), false)).await;
    assert!(late.stale, "the guard refused the older version");
    let again = apply(&task("t1", 2, json!({"title": "new"}), false)).await;
    assert!(
        again.stale,
        "a redelivery of the same version writes nothing"
    );
    let value: String = redis.get(format!("{prefix}task:t1")).await.expect("get");
    assert_eq!(value, r#"{"title":"new"}"#);

    // A tombstone keeps its version: an older put cannot bring it back.
    apply(&task("t1", 3, json!({}), true)).await;
    let resurrect = apply(&task("t1", 2, json!({"title": "new"}), false)).await;
    assert!(resurrect.stale);
    let gone: Option<String> = redis.get(format!("{prefix}task:t1")).await.expect("get");
    assert_eq!(gone, None);
    let members: Vec<String> = redis
        .smembers(format!("{prefix}task"))
        .await
        .expect("smembers");
    assert!(members.is_empty(), "{members:?}");
}

fn webhook_destination(url: &str, disable_after: u32) -> Value {
    json!({"destinations": {"hooks": {
        "tenant": "demo", "entities": ["task"],
        "kind": {"webhook": {"url": url, "secret": {"value": WEBHOOK_SECRET}, "disable_after": disable_after}},
    }}})
}

#[tokio::test]
async fn webhooks_are_signed_and_an_endpoint_that_keeps_failing_is_disabled_with_its_events_kept() {
    let (api, addr) = FakeApi::start().await;
    let service = start(webhook_destination(&format!("http://{addr}/hooks"), 3)).await;
    push(
        &service,
        "phone",
        1,
        &[
            ("t1", Some(json!({"title": "a"}))),
            ("t2", Some(json!({"title": "b"}))),
            ("t3", Some(json!({"title": "c"}))),
            ("t4", Some(json!({"title": "d"}))),
        ],
    )
    .await;

    // Down: every attempt answers 503 (two quick attempts per change).
    api.fail_next(&[503; 6]);
    let down = deliver(&service).await;
    assert_eq!(run_of(&down, "hooks")["failed"], json!(3));
    let status = service
        .admin("GET", "/v1/admin/destinations", Value::Null)
        .await;
    let hooks = &status.body["destinations"][0];
    assert_eq!(hooks["enabled"], json!(false), "{hooks}");
    assert!(
        hooks["disabled_reason"]
            .as_str()
            .is_some_and(|r| r.contains("3 consecutive"))
    );
    assert!(
        hooks["lag"].as_u64().is_some_and(|lag| lag >= 2),
        "the events are kept: {hooks}"
    );
    let idle = deliver(&service).await;
    assert_eq!(
        run_of(&idle, "hooks")["delivered"],
        json!(0),
        "a disabled endpoint gets nothing"
    );

    // Back, and re-enabled: every change arrives, in feed order, once.
    let enabled = service
        .admin("POST", "/v1/admin/destinations/hooks/enable", Value::Null)
        .await;
    assert_eq!(enabled.status, 200, "{:?}", enabled.body);
    deliver(&service).await;
    service.drain_queue().await;
    let ok: Vec<_> = api.received().into_iter().skip(6).collect();
    let ids: Vec<String> = ok
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(&r.body).expect("json")["data"]["id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect();
    assert_eq!(ids, vec!["t1", "t2", "t3", "t4"], "each once, in order");

    let secret = WEBHOOK_SECRET.to_owned();
    let verifier = Verifier::new(
        VerifierSpec::StandardWebhooks,
        &[secret],
        Duration::from_secs(300),
    )
    .expect("verifier");
    let mut message_ids = Vec::new();
    for request in &ok {
        let headers = Headers::new(
            request
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let verified = verifier
            .verify(&headers, request.body.as_bytes(), Timestamp::now())
            .expect("a valid Standard Webhooks signature");
        message_ids.push(verified.message_id.expect("webhook-id"));
        let body: Value = serde_json::from_str(&request.body).expect("json");
        assert_eq!(body["type"], json!("record.created"));
    }
    message_ids.sort();
    message_ids.dedup();
    assert_eq!(message_ids.len(), 4, "one stable message id per change");
}

fn stripe_destination(url: &str) -> Value {
    json!({"destinations": {"refunds": {
        "tenant": "demo", "entities": ["task"],
        "kind": {"http": {
            "preset": "stripe", "base_url": url,
            "auth": {"bearer": {"token": {"value": "sk_test_123"}}},
            "create": {"method": "POST", "path": "/v1/refunds",
                       "body": {"payment_intent": "{title}", "metadata": {"record": "{id}"}}},
        }},
    }}})
}

#[tokio::test]
async fn a_response_lost_after_the_upstream_applied_a_write_creates_nothing_twice() {
    let (api, addr) = FakeApi::start().await;
    let service = start(stripe_destination(&format!("http://{addr}"))).await;
    push(
        &service,
        "phone",
        1,
        &[("t1", Some(json!({"title": "pi_123"})))],
    )
    .await;

    api.lose_next_responses(1);
    let run = deliver(&service).await;
    assert_eq!(run_of(&run, "refunds")["delivered"], json!(1), "{run}");
    let received = api.received();
    assert_eq!(received.len(), 2, "the lost answer was retried");
    assert_eq!(api.applied(), 1, "one refund, however many attempts");
    let keys: Vec<&String> = received
        .iter()
        .map(|r| &r.headers["idempotency-key"])
        .collect();
    assert_eq!(
        keys[0], keys[1],
        "the retry carried the same idempotency key"
    );
    assert_eq!(
        received[0].headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert!(
        received[0].body.contains("payment_intent=pi_123")
            && received[0].body.contains("metadata%5Brecord%5D=t1"),
        "{}",
        received[0].body
    );
    assert_eq!(received[0].headers["authorization"], "Bearer sk_test_123");
    let ledger = ledger(&service, "refunds").await;
    assert_eq!(ledger["t1"]["external_id"], json!("obj_1"));
}

#[tokio::test]
async fn google_calendar_events_are_inserted_then_patched_then_deleted_by_their_stored_id() {
    let (api, addr) = FakeApi::start().await;
    let service = start(json!({"destinations": {"calendar": {
        "tenant": "demo", "entities": ["task"], "fields": ["title"],
        "kind": {"http": {
            "preset": "google_calendar", "base_url": format!("http://{addr}"),
            "vars": {"calendar": "primary"}, "body": {"summary": "{title}"},
        }},
    }}}))
    .await;
    push(
        &service,
        "phone",
        1,
        &[("t1", Some(json!({"title": "Site visit", "secret": "x"})))],
    )
    .await;
    deliver(&service).await;
    push(
        &service,
        "phone",
        2,
        &[("t1", Some(json!({"title": "Site visit (moved)"})))],
    )
    .await;
    deliver(&service).await;
    assert_eq!(
        api.objects()["obj_1"]["summary"],
        json!("Site visit (moved)")
    );
    push(&service, "phone", 3, &[("t1", None)]).await;
    deliver(&service).await;

    let calls: Vec<(String, String)> = api
        .received()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        calls,
        vec![
            (
                "POST".to_owned(),
                "/calendar/v3/calendars/primary/events".to_owned()
            ),
            (
                "PATCH".to_owned(),
                "/calendar/v3/calendars/primary/events/obj_1".to_owned()
            ),
            (
                "DELETE".to_owned(),
                "/calendar/v3/calendars/primary/events/obj_1".to_owned()
            ),
        ]
    );
    assert!(
        !api.received()[0].body.contains("secret"),
        "only the chosen fields are sent"
    );
    assert!(api.objects().is_empty());
}

#[tokio::test]
async fn a_destination_that_refuses_a_record_marks_it_failed_with_its_message_and_the_rest_go_on() {
    let (api, addr) = FakeApi::start().await;
    let service = start(stripe_destination(&format!("http://{addr}"))).await;
    push(
        &service,
        "phone",
        1,
        &[
            ("t1", Some(json!({"title": "pi_bad"}))),
            ("t2", Some(json!({"title": "pi_good"}))),
        ],
    )
    .await;
    api.fail_next(&[400]);
    let run = deliver(&service).await;
    assert_eq!(run_of(&run, "refunds")["failed"], json!(1));
    assert_eq!(run_of(&run, "refunds")["delivered"], json!(1));
    let ledger = ledger(&service, "refunds").await;
    assert_eq!(ledger["t1"]["status"], json!("failed"));
    assert!(
        ledger["t1"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP 400") && e.contains("refused with 400")),
        "{}",
        ledger["t1"]
    );
    assert_eq!(ledger["t2"]["status"], json!("delivered"));
    assert_eq!(api.received().len(), 2, "a 4xx is not retried");
}

#[tokio::test]
async fn a_destination_down_for_a_while_gets_everything_when_it_is_back() {
    let (api, addr) = FakeApi::start().await;
    let service = start(stripe_destination(&format!("http://{addr}"))).await;
    push_payments(&service, 8).await;

    api.fail_next(&[503; 10]);
    let down = deliver(&service).await;
    assert_eq!(
        run_of(&down, "refunds")["failed"],
        json!(5),
        "the run stops once it looks down"
    );
    let status = service
        .admin("GET", "/v1/admin/destinations", Value::Null)
        .await;
    assert!(
        status.body["destinations"][0]["lag"]
            .as_u64()
            .is_some_and(|l| l >= 4)
    );

    let back = deliver(&service).await;
    service.drain_queue().await;
    assert!(
        run_of(&back, "refunds")["delivered"]
            .as_u64()
            .is_some_and(|n| n >= 4),
        "{back}"
    );
    // Retries queued while it was down deliver the rest (their delays
    // are short in tests), each record once.
    let deadline = Instant::now() + Duration::from_secs(20);
    while api.applied() < 8 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        service.drain_queue().await;
        deliver(&service).await;
    }
    assert_eq!(api.applied(), 8, "nothing lost, nothing twice");
    let applied: Vec<String> = api
        .received()
        .iter()
        .skip(10)
        .map(|r| {
            r.body
                .split('&')
                .find_map(|p| p.strip_prefix("payment_intent="))
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let expected: Vec<String> = (1..=8).map(|i| format!("pi_{i}")).collect();
    assert_eq!(applied, expected, "in the order of the feed");
    let ledger = ledger(&service, "refunds").await;
    assert!(
        ledger.values().all(|d| d["status"] == json!("delivered")),
        "{ledger:?}"
    );
}

#[tokio::test]
async fn eight_delivery_runs_at_once_on_one_destination_deliver_each_change_once() {
    let (api, addr) = FakeApi::start().await;
    let service = start(stripe_destination(&format!("http://{addr}"))).await;
    push_payments(&service, 30).await;

    let deadline = Timestamp::now().plus(Duration::from_secs(60));
    let runs = futures_util::future::join_all(
        (0..8).map(|_| service.delivery.deliver("refunds", deadline)),
    )
    .await;
    let delivered: u64 = runs
        .iter()
        .map(|r| r.as_ref().expect("run").delivered)
        .sum();
    assert_eq!(delivered, 30);
    assert!(
        runs.iter()
            .filter(|r| r.as_ref().is_ok_and(|r| r.busy))
            .count()
            >= 1
    );
    assert_eq!(api.applied(), 30, "no change was applied twice");
    let mut keys: Vec<String> = api
        .received()
        .iter()
        .map(|r| r.headers["idempotency-key"].clone())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 30);
}

#[tokio::test]
async fn a_change_that_came_from_the_destinations_own_system_is_not_written_back() {
    let demo = demo_source(syncline_local::demo::DemoCounts {
        properties: 5,
        ..syncline_local::demo::DemoCounts::default()
    })
    .await;
    let (api, addr) = FakeApi::start().await;
    let sources = demo_sources(demo);
    let source = "demo-properties".to_owned();
    let tenant = sources["sources"][&source]["tenant"].clone();
    let entity = sources["sources"][&source]["entity"].clone();
    let service = Service::start(ServiceConfig {
        sources: Some(sources),
        destinations: Some(json!({"destinations": {"upstream": {
            "tenant": tenant, "entities": [entity], "echo_of": [source],
            "kind": {"webhook": {"url": format!("http://{addr}/hooks"), "secret": {"value": WEBHOOK_SECRET}}},
        }}})),
        ..ServiceConfig::default()
    })
    .await;
    let sync = service
        .invoke(
            "scheduled-sync",
            json!({"detail": {"sources": [source], "kind": "full"}}),
        )
        .await;
    assert_eq!(sync.status, 200, "{:?}", sync.body);
    let run = deliver(&service).await;
    assert_eq!(run_of(&run, "upstream")["skipped"], json!(5), "{run}");
    assert!(
        api.received().is_empty(),
        "nothing went back to the system it came from"
    );
    let ledger = ledger(&service, "upstream").await;
    assert!(ledger.values().all(|d| d["status"] == json!("skipped")
        && d["reason"].as_str().is_some_and(|r| r.starts_with("echo"))));
}

#[tokio::test]
async fn a_bad_destinations_document_fails_the_start_with_a_clear_error() {
    for (document, expected) in [
        (
            json!({"destinations": {"x": {"tenant": "demo", "entities": [], "kind": {"redis": {"url": {"value": "redis://127.0.0.1"}}}}}}),
            "at least one entity",
        ),
        (
            json!({"destinations": {"x": {"tenant": "demo", "entities": ["task"], "kind": {"http": {"preset": "nope", "base_url": "http://x"}}}}}),
            "unknown preset",
        ),
        (
            json!({"destinations": {"x": {"tenant": "demo", "entities": ["task"], "kind": {"http": {"base_url": "http://x"}}}}}),
            "needs a create, update or delete",
        ),
        (
            json!({"destinations": {"x": {"tenant": "demo", "entities": ["task"], "kind": {"webhook": {"url": "ftp://x", "secret": {"value": WEBHOOK_SECRET}}}}}}),
            "http(s)",
        ),
        (
            json!({"destinations": {"x": {"tenant": "demo", "entities": ["task"], "kind": {"carrier_pigeon": {}}}}}),
            "destinations:",
        ),
    ] {
        let store = syncline_tests::test_store().await;
        let queue: std::sync::Arc<dyn syncline::queue::RetryQueue> = std::sync::Arc::new(
            syncline::queue::LocalQueue::new(store.store.clone(), "retry", 10).expect("queue"),
        );
        let error = syncline::delivery::DeliveryEngine::new(
            store.store.clone(),
            queue,
            &document.to_string(),
            syncline::connectors::SourceClient::lazy(),
            syncline::ingest::local_secret(|_: &str| None),
        )
        .expect_err("a bad document is refused");
        assert!(matches!(error, syncline::Error::Config(_)), "{error:?}");
        assert!(
            error.to_string().contains(expected),
            "{error} should say {expected}"
        );
    }
}

#[tokio::test]
async fn every_sample_event_wakes_delivery_whatever_it_carries() {
    let prefix = prefix();
    let service = start(redis_destination(&prefix)).await;
    let mut redis = redis_server().connection().await;
    for (n, sample) in ["stream", "schedule"].into_iter().enumerate() {
        let id = format!("s{n}");
        push(
            &service,
            "phone",
            n as u64 + 1,
            &[(id.as_str(), Some(json!({"title": sample})))],
        )
        .await;
        let reply = service
            .invoke(
                "delivery",
                syncline_tests::service::sample(&format!("delivery/{sample}.json")),
            )
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(
            run_of(&reply.body, "cache")["delivered"],
            json!(1),
            "{sample}"
        );
        let stored: Option<String> = redis.get(format!("{prefix}task:{id}")).await.expect("get");
        assert!(stored.is_some_and(|v| v.contains(sample)), "{sample}");
    }
}

#[tokio::test]
async fn a_two_way_pair_under_an_edit_storm_converges_with_no_echo_writes() {
    let (api, addr) = FakeApi::start().await;
    let calendar = format!("http://{addr}");
    let service = Service::start(ServiceConfig {
        sources: Some(json!({"sources": {"gcal": {
            "tenant": "demo", "entity": "task", "linked": true,
            "base_url": calendar, "path": "/calendar/v3/calendars/primary/events",
            "records": "/items", "id": "/id", "pagination": "none",
            "mapping": {"fields": {"title": "/summary"}},
        }}})),
        destinations: Some(json!({"destinations": {"calendar": {
            "tenant": "demo", "entities": ["task"], "fields": ["title"], "pair": "gcal",
            "kind": {"http": {"preset": "google_calendar", "base_url": calendar,
                              "vars": {"calendar": "primary"}, "body": {"summary": "{title}"}}},
        }}})),
        ..ServiceConfig::default()
    })
    .await;
    let pull_upstream = || async {
        let reply = service
            .invoke(
                "scheduled-sync",
                json!({"detail": {"sources": ["gcal"], "kind": "full"}}),
            )
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(
            reply.body["runs"][0]["status"],
            json!("succeeded"),
            "{}",
            reply.body
        );
    };

    // Created in syncline, then edited in the calendar: the edit comes back
    // to the same record, and is not written back.
    push(
        &service,
        "phone",
        1,
        &[("t1", Some(json!({"title": "Visit"})))],
    )
    .await;
    deliver(&service).await;
    assert_eq!(api.objects()["obj_1"]["summary"], json!("Visit"));
    api.edit("obj_1", json!({"summary": "Visit (moved in the calendar)"}));
    pull_upstream().await;
    let t1 = service.pulled("demo", "task", "t1").await.expect("t1");
    assert_eq!(t1["data"]["title"], json!("Visit (moved in the calendar)"));
    assert!(
        service.pulled("demo", "task", "obj_1").await.is_none(),
        "no second record"
    );
    let writes_before = api.received().len();
    let run = deliver(&service).await;
    assert_eq!(run_of(&run, "calendar")["skipped"], json!(1), "{run}");
    assert_eq!(
        api.received().len(),
        writes_before,
        "the calendar's own edit is not echoed"
    );

    // The storm: both sides edit, each round syncs both ways.
    let mut mutation = 2;
    let mut syncline_edits = 0;
    for round in 0..8 {
        if round % 2 == 0 {
            push(
                &service,
                "phone",
                mutation,
                &[("t1", Some(json!({"title": format!("syncline {round}")})))],
            )
            .await;
            mutation += 1;
            syncline_edits += 1;
        } else {
            api.edit("obj_1", json!({"summary": format!("calendar {round}")}));
        }
        deliver(&service).await;
        pull_upstream().await;
        deliver(&service).await;
    }
    let writes: Vec<_> = api
        .received()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    let patches = writes.iter().filter(|r| r.method == "PATCH").count();
    assert_eq!(
        patches, syncline_edits,
        "one write per syncline edit, none echoed: {writes:?}"
    );
    assert_eq!(
        writes.iter().filter(|r| r.method == "POST").count(),
        1,
        "created once"
    );
    let here = service.pulled("demo", "task", "t1").await.expect("t1");
    assert_eq!(
        here["data"]["title"],
        api.objects()["obj_1"]["summary"],
        "both sides converge"
    );
    assert_eq!(
        service.pull_all("demo", "task").await.len(),
        1,
        "one record, one object"
    );
}

#[tokio::test]
async fn a_notifying_sources_finished_runs_reach_a_webhook_as_events() {
    let demo = demo_source(syncline_local::demo::DemoCounts {
        properties: 3,
        ..syncline_local::demo::DemoCounts::default()
    })
    .await;
    let (api, addr) = FakeApi::start().await;
    let mut sources = demo_sources(demo);
    sources["sources"]["demo-properties"]["notify"] = json!(true);
    let service = Service::start(ServiceConfig {
        sources: Some(sources),
        destinations: Some(json!({"destinations": {"ops": {
            "tenant": "demo", "entities": ["_event"],
            "kind": {"webhook": {"url": format!("http://{addr}/hooks"), "secret": {"value": WEBHOOK_SECRET}}},
        }}})),
        ..ServiceConfig::default()
    })
    .await;
    let sync = service
        .invoke(
            "scheduled-sync",
            json!({"detail": {"sources": ["demo-properties"], "kind": "full"}}),
        )
        .await;
    assert_eq!(sync.status, 200, "{:?}", sync.body);
    let run_id = sync.body["runs"][0]["id"]
        .as_str()
        .expect("run id")
        .to_owned();
    let run = deliver(&service).await;
    assert_eq!(run_of(&run, "ops")["delivered"], json!(1), "{run}");
    let received = api.received();
    assert_eq!(received.len(), 1);
    let body: Value = serde_json::from_str(&received[0].body).expect("json");
    assert_eq!(body["type"], json!("sync.run.succeeded"));
    assert_eq!(body["data"]["id"], json!(run_id));
    assert_eq!(
        body["data"]["data"]["counts"]["created"],
        json!(3),
        "{body}"
    );
    // Clients cannot pull the reserved type.
    let pulled = service
        .client(
            "demo",
            "POST",
            "/v1/sync/pull",
            json!({"entities": ["_event"]}),
        )
        .await;
    assert_eq!(pulled.status, 400, "{:?}", pulled.body);
}

#[tokio::test]
async fn a_429_pauses_the_destination_for_its_retry_after_then_the_change_goes_through() {
    let (api, addr) = FakeApi::start().await;
    let service = start(stripe_destination(&format!("http://{addr}"))).await;
    push(
        &service,
        "phone",
        1,
        &[("t1", Some(json!({"title": "pi_1"})))],
    )
    .await;
    api.fail_next(&[429]);
    let started = Instant::now();
    let run = deliver(&service).await;
    assert_eq!(run_of(&run, "refunds")["delivered"], json!(1), "{run}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the Retry-After of 1 s was honoured: {:?}",
        started.elapsed()
    );
    assert_eq!(api.received().len(), 2);
    assert_eq!(api.applied(), 1);
}
