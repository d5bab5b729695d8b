//! The sync API through its Lambda entry point, on the embedded store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header, encode};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use syncline::auth::{AuthConfig, Authenticator};
use syncline::lambda::sync_api::{SyncApi, handle_sync};
use syncline::model::{EntityType, TenantId, Timestamp};
use syncline::store::Store;
use syncline::sync::{EntityRegistry, SyncService};
use syncline_tests::{TestStore, data, stored, test_store};

const SECRET: &str = "syncline-local-jwt-secret";

fn registry() -> EntityRegistry {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../events/sync-api/entities.json"
    );
    EntityRegistry::parse(&std::fs::read_to_string(path).expect("entities.json")).expect("registry")
}

fn auth(trust_authorizer: bool) -> Authenticator {
    Authenticator::new(&AuthConfig {
        hs256_secret: Some(SECRET.into()),
        tenant_claim: "tenant".into(),
        trust_authorizer,
        ..AuthConfig::default()
    })
    .expect("authenticator")
}

struct Rig {
    api: SyncApi,
    store: Store,
    _engine: TestStore,
}

async fn rig_with(store_tweak: impl FnOnce(Store) -> Store) -> Rig {
    let engine = test_store().await;
    let store = store_tweak(engine.store.clone());
    Rig {
        api: SyncApi {
            service: SyncService::new(store.clone(), registry()),
            auth: auth(false),
        },
        store,
        _engine: engine,
    }
}

async fn rig() -> Rig {
    rig_with(|s| s).await
}

fn token_with(claims: Value, secret: &str) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("token")
}

fn token(tenant: &str) -> String {
    let exp = Timestamp::now().as_secs() + 3600;
    token_with(json!({"sub": "user", "tenant": tenant, "exp": exp}), SECRET)
}

fn request(method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Request {
    let mut builder = lambda_http::http::Request::builder()
        .method(method)
        .uri(path);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let body = body.map_or(Body::Empty, |b| Body::from(b.to_string()));
    builder.body(body).expect("request")
}

async fn call(rig: &Rig, request: Request) -> (StatusCode, Value) {
    let response = handle_sync(&rig.api, request).await.expect("a response");
    let status = response.status();
    let body = serde_json::from_slice(response.body().as_ref()).expect("a JSON body");
    (status, body)
}

async fn push(rig: &Rig, tenant: &str, client: &str, mutations: Value) -> (StatusCode, Value) {
    call(
        rig,
        request(
            "POST",
            "/v1/sync/push",
            Some(&token(tenant)),
            Some(json!({"client_id": client, "mutations": mutations})),
        ),
    )
    .await
}

async fn pull(rig: &Rig, tenant: &str, body: Value) -> (StatusCode, Value) {
    call(
        rig,
        request("POST", "/v1/sync/pull", Some(&token(tenant)), Some(body)),
    )
    .await
}

fn upsert(id: u64, entity: &str, record: &str, base: Option<u64>, data: Value, ts: i64) -> Value {
    json!({"id": id, "op": "upsert", "entity": entity, "record_id": record,
           "base_version": base, "data": data, "timestamp": ts})
}

async fn seq(rig: &Rig, tenant: &str) -> u64 {
    rig.store
        .latest_seq(&TenantId::parse(tenant).expect("tenant"))
        .await
        .expect("seq")
        .get()
}

fn statuses(body: &Value) -> Vec<&str> {
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["status"].as_str().expect("status"))
        .collect()
}

#[tokio::test]
async fn a_push_then_a_pull_round_trips_records_and_progress() {
    let rig = rig().await;
    let (status, body) = push(
        &rig,
        "acme",
        "phone-1",
        json!([
            upsert(1, "task", "t1", None, json!({"title": "one"}), 1000),
            upsert(2, "task", "t2", None, json!({"title": "two"}), 1001),
            {"id": 3, "op": "patch", "entity": "task", "record_id": "t1", "base_version": null,
             "data": {"done": true}, "timestamp": 1002},
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(statuses(&body), vec!["applied"; 3]);
    assert_eq!(body["last_mutation_id"], json!(3));
    assert_eq!(
        body["results"][2]["record"]["data"],
        json!({"title": "one", "done": true})
    );

    let (status, page) = pull(&rig, "acme", json!({"client_id": "phone-1"})).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["last_mutation_id"], json!(3));
    assert_eq!(page["reset"], json!(false));
    let changes = page["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["id"], json!("t1"));
    assert_eq!(changes[0]["version"], json!(1));

    let cursor = page["cursor"].as_str().expect("cursor").to_owned();
    assert!(
        cursor.starts_with("c1"),
        "opaque cursor, not a time: {cursor}"
    );
    let (_, again) = pull(&rig, "acme", json!({"cursor": cursor})).await;
    assert!(again["changes"].as_array().expect("changes").is_empty());
    assert_eq!(again["has_more"], json!(false));
}

#[tokio::test]
async fn a_retried_push_applies_each_mutation_exactly_once() {
    let rig = rig().await;
    let batch = json!([
        upsert(1, "task", "t1", None, json!({"title": "one"}), 1000),
        upsert(2, "task", "t2", None, json!({"title": "two"}), 1001),
        upsert(3, "task", "t3", None, json!({"title": "three"}), 1002),
    ]);
    let (_, first) = push(&rig, "acme", "phone-1", batch.clone()).await;
    assert_eq!(statuses(&first), vec!["applied"; 3]);
    let after_first = seq(&rig, "acme").await;

    // The response was lost; the client sends the same push again.
    let (status, retried) = push(&rig, "acme", "phone-1", batch).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(statuses(&retried), vec!["already_processed"; 3]);
    assert_eq!(
        seq(&rig, "acme").await,
        after_first,
        "nothing written twice"
    );

    // A retry that overlaps new work: the done part is skipped.
    let (_, overlap) = push(
        &rig,
        "acme",
        "phone-1",
        json!([
            upsert(3, "task", "t3", None, json!({"title": "three"}), 1002),
            upsert(4, "task", "t4", None, json!({"title": "four"}), 1003),
        ]),
    )
    .await;
    assert_eq!(statuses(&overlap), vec!["already_processed", "applied"]);
    assert_eq!(overlap["last_mutation_id"], json!(4));
    let t3 = stored(&rig.store, "acme", "task", "t3").await.expect("t3");
    assert_eq!(t3.version.get(), 1);
}

#[tokio::test]
async fn an_invalid_mutation_is_rejected_but_processed_so_the_client_moves_on() {
    let rig = rig().await;
    let (_, body) = push(
        &rig,
        "acme",
        "phone-1",
        json!([
            upsert(1, "task", "t1", None, json!({"done": false}), 1000),
            upsert(
                2,
                "draft",
                "d1",
                None,
                json!({"text": "x".repeat(5000)}),
                1000
            ),
            upsert(3, "task", "t2", None, json!({"title": "fine"}), 1001),
        ]),
    )
    .await;
    assert_eq!(statuses(&body), vec!["rejected", "rejected", "applied"]);
    assert!(
        body["results"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("title is required"))
    );
    assert!(
        body["results"][1]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("at most 4096"))
    );
    assert_eq!(body["last_mutation_id"], json!(3));
    assert!(stored(&rig.store, "acme", "task", "t1").await.is_none());
    // The next push continues after the rejected ones.
    let (_, next) = push(
        &rig,
        "acme",
        "phone-1",
        json!([upsert(
            4,
            "task",
            "t1",
            None,
            json!({"title": "fixed"}),
            1002
        )]),
    )
    .await;
    assert_eq!(statuses(&next), vec!["applied"]);
}

async fn seed(rig: &Rig, entity: &str, data: Value) {
    let (_, body) = push(
        rig,
        "acme",
        "seed",
        json!([upsert(1, entity, "r1", None, data, 1000)]),
    )
    .await;
    assert_eq!(statuses(&body), vec!["applied"], "{body}");
}

#[tokio::test]
async fn server_wins_keeps_the_stored_record() {
    let rig = rig().await;
    seed(&rig, "contact", json!({"name": "A"})).await;
    push(
        &rig,
        "acme",
        "b",
        json!([upsert(
            1,
            "contact",
            "r1",
            Some(1),
            json!({"name": "B"}),
            2000
        )]),
    )
    .await;
    let (_, body) = push(
        &rig,
        "acme",
        "a",
        json!([upsert(
            1,
            "contact",
            "r1",
            Some(1),
            json!({"name": "C"}),
            3000
        )]),
    )
    .await;
    let result = &body["results"][0];
    assert_eq!(
        (result["status"].as_str(), result["resolution"].as_str()),
        (Some("conflict"), Some("server_wins"))
    );
    assert_eq!(result["record"]["data"], json!({"name": "B"}));
    assert_eq!(result["record"]["version"], json!(2));
    assert_eq!(
        stored(&rig.store, "acme", "contact", "r1")
            .await
            .expect("r1")
            .version
            .get(),
        2
    );
}

#[tokio::test]
async fn client_wins_applies_the_stale_change_on_top() {
    let rig = rig().await;
    seed(&rig, "draft", json!({"text": "A"})).await;
    push(
        &rig,
        "acme",
        "b",
        json!([upsert(
            1,
            "draft",
            "r1",
            Some(1),
            json!({"text": "B"}),
            2000
        )]),
    )
    .await;
    let (_, body) = push(
        &rig,
        "acme",
        "a",
        json!([upsert(
            1,
            "draft",
            "r1",
            Some(1),
            json!({"text": "C"}),
            1500
        )]),
    )
    .await;
    let result = &body["results"][0];
    assert_eq!(result["resolution"], json!("client_wins"));
    assert_eq!(result["record"]["data"], json!({"text": "C"}));
    assert_eq!(result["record"]["version"], json!(3));
}

#[tokio::test]
async fn last_write_wins_compares_client_clocks_not_arrival_order() {
    let rig = rig().await;
    seed(&rig, "task", json!({"title": "A"})).await;
    // B wrote at t=5000 (arrives first).
    push(
        &rig,
        "acme",
        "b",
        json!([upsert(
            1,
            "task",
            "r1",
            Some(1),
            json!({"title": "B"}),
            5000
        )]),
    )
    .await;
    // A wrote earlier (t=4000) but arrives later: B's write stays.
    let (_, older) = push(
        &rig,
        "acme",
        "a",
        json!([upsert(
            1,
            "task",
            "r1",
            Some(1),
            json!({"title": "A-old"}),
            4000
        )]),
    )
    .await;
    assert_eq!(older["results"][0]["resolution"], json!("last_write_wins"));
    assert_eq!(older["results"][0]["record"]["data"]["title"], json!("B"));
    // A writes later (t=6000): A wins.
    let (_, newer) = push(
        &rig,
        "acme",
        "a",
        json!([upsert(
            2,
            "task",
            "r1",
            Some(1),
            json!({"title": "A-new"}),
            6000
        )]),
    )
    .await;
    assert_eq!(
        newer["results"][0]["record"]["data"]["title"],
        json!("A-new")
    );
    // A tie on the clock is broken by client id: "z" > "a".
    let (_, tie_low) = push(
        &rig,
        "acme",
        "0",
        json!([upsert(
            1,
            "task",
            "r1",
            Some(1),
            json!({"title": "zero"}),
            6000
        )]),
    )
    .await;
    assert_eq!(
        tie_low["results"][0]["record"]["data"]["title"],
        json!("A-new")
    );
    let (_, tie_high) = push(
        &rig,
        "acme",
        "z",
        json!([upsert(
            1,
            "task",
            "r1",
            Some(1),
            json!({"title": "zed"}),
            6000
        )]),
    )
    .await;
    assert_eq!(
        tie_high["results"][0]["record"]["data"]["title"],
        json!("zed")
    );
}

#[tokio::test]
async fn merge_combines_fields_changed_on_different_sides() {
    let rig = rig().await;
    let base = json!({"title": "a", "body": "x", "tag": "t"});
    seed(&rig, "note", base.clone()).await;
    // B changes the body.
    push(
        &rig,
        "acme",
        "b",
        json!([{"id": 1, "op": "patch", "entity": "note", "record_id": "r1",
        "base_version": 1, "data": {"body": "y"}, "timestamp": 2000}]),
    )
    .await;
    // A, from the same base, changes the title and the body.
    let (_, body) = push(
        &rig,
        "acme",
        "a",
        json!([{"id": 1, "op": "patch", "entity": "note", "record_id": "r1",
        "base_version": 1, "base": base, "data": {"title": "b", "body": "z"}, "timestamp": 3000}]),
    )
    .await;
    let result = &body["results"][0];
    assert_eq!(result["resolution"], json!("merge"));
    assert_eq!(result["conflicting_fields"], json!(["body"]));
    assert_eq!(
        result["record"]["data"],
        json!({"title": "b", "body": "y", "tag": "t"})
    );
    assert_eq!(result["record"]["version"], json!(3));
}

#[tokio::test]
async fn manual_conflicts_are_stored_listed_and_resolved_into_a_new_version() {
    let rig = rig().await;
    let job = |crew: &str| json!({"crew": crew, "start": "2026-11-23T09:00:00Z"});
    seed(&rig, "job", job("a")).await;
    push(
        &rig,
        "acme",
        "b",
        json!([upsert(1, "job", "r1", Some(1), job("b"), 2000)]),
    )
    .await;
    let (_, body) = push(
        &rig,
        "acme",
        "a",
        json!([upsert(1, "job", "r1", Some(1), job("c"), 3000)]),
    )
    .await;
    let result = &body["results"][0];
    assert_eq!(result["resolution"], json!("manual"));
    assert_eq!(
        result["record"]["data"]["crew"],
        json!("b"),
        "unchanged until resolved"
    );
    let conflict_id = result["conflict_id"]
        .as_str()
        .expect("conflict id")
        .to_owned();

    let (status, listed) = call(
        &rig,
        request("GET", "/v1/sync/conflicts", Some(&token("acme")), None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let conflicts = listed["conflicts"].as_array().expect("list");
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0]["id"], json!(conflict_id));
    assert_eq!(conflicts[0]["mutation"]["data"]["crew"], json!("c"));
    assert_eq!(conflicts[0]["server"]["data"]["crew"], json!("b"));

    // Another tenant cannot see or resolve it.
    let (_, other) = call(
        &rig,
        request("GET", "/v1/sync/conflicts", Some(&token("other")), None),
    )
    .await;
    assert!(other["conflicts"].as_array().expect("list").is_empty());
    let path = format!("/v1/sync/conflicts/{conflict_id}/resolve");
    let (status, _) = call(
        &rig,
        request(
            "POST",
            &path,
            Some(&token("other")),
            Some(json!({"resolution": "client"})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, resolved) = call(
        &rig,
        request(
            "POST",
            &path,
            Some(&token("acme")),
            Some(json!({"resolution": "client"})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert_eq!(resolved["record"]["data"]["crew"], json!("c"));
    assert_eq!(resolved["record"]["version"], json!(3));
    let (_, listed) = call(
        &rig,
        request("GET", "/v1/sync/conflicts", Some(&token("acme")), None),
    )
    .await;
    assert!(listed["conflicts"].as_array().expect("list").is_empty());
    let (status, _) = call(
        &rig,
        request(
            "POST",
            &path,
            Some(&token("acme")),
            Some(json!({"resolution": "server"})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn tenants_never_see_or_touch_each_others_records() {
    let rig = rig().await;
    push(
        &rig,
        "acme",
        "p",
        json!([upsert(
            1,
            "task",
            "secret",
            None,
            json!({"title": "acme only"}),
            1
        )]),
    )
    .await;
    let (_, other_pull) = pull(&rig, "other", json!({})).await;
    assert!(
        other_pull["changes"]
            .as_array()
            .expect("changes")
            .is_empty()
    );
    // The same record id in another tenant is another record.
    let (_, body) = push(
        &rig,
        "other",
        "p",
        json!([upsert(
            1,
            "task",
            "secret",
            None,
            json!({"title": "other"}),
            1
        )]),
    )
    .await;
    assert_eq!(statuses(&body), vec!["applied"]);
    let acme = stored(&rig.store, "acme", "task", "secret")
        .await
        .expect("acme's");
    assert_eq!(acme.data["title"], json!("acme only"));
    // A cursor from one tenant gives nothing of the other.
    let (_, acme_pull) = pull(&rig, "acme", json!({})).await;
    let (_, with_foreign_cursor) =
        pull(&rig, "other", json!({"cursor": acme_pull["cursor"]})).await;
    assert!(
        with_foreign_cursor["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .all(|c| c["data"]["title"] != json!("acme only"))
    );
}

#[tokio::test]
async fn bad_credentials_get_401_and_bad_input_a_clear_4xx_writing_nothing() {
    let rig = rig().await;
    let expired = token_with(
        json!({"tenant": "acme", "exp": Timestamp::now().as_secs() - 600}),
        SECRET,
    );
    let forged = token_with(
        json!({"tenant": "acme", "exp": Timestamp::now().as_secs() + 600}),
        "not-the-secret",
    );
    let no_tenant = token_with(json!({"exp": Timestamp::now().as_secs() + 600}), SECRET);
    let body = json!({"client_id": "p", "mutations": []});
    for token in [
        None,
        Some("garbage"),
        Some(expired.as_str()),
        Some(forged.as_str()),
        Some(no_tenant.as_str()),
    ] {
        let (status, response) = call(
            &rig,
            request("POST", "/v1/sync/push", token, Some(body.clone())),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}: {response}");
        assert_eq!(response["error"]["code"], json!("unauthorized"));
    }

    let acme = token("acme");
    let raw = |method: &str, path: &str, text: &str| {
        lambda_http::http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {acme}"))
            .body(Body::from(text.to_owned()))
            .expect("request")
    };
    let too_many: Vec<Value> = (1..=501)
        .map(|i| upsert(i, "task", &format!("t{i}"), None, json!({"title": "x"}), 1))
        .collect();
    let cases: Vec<(Request, u16)> = vec![
        (raw("POST", "/v1/sync/push", "{not json"), 400),
        (raw("POST", "/v1/sync/push", &"x".repeat(1024 * 1024 + 1)), 413),
        (raw("POST", "/v1/sync/push", &json!({"client_id": "p", "mutations": [upsert(1, "spaceship", "s", None, json!({}), 1)]}).to_string()), 400),
        (raw("POST", "/v1/sync/push", &json!({"client_id": "p", "mutations": [upsert(2, "task", "t", None, json!({"title": "x"}), 1)]}).to_string()), 400),
        (raw("POST", "/v1/sync/push", &json!({"client_id": "p", "mutations": [upsert(1, "task", "t", None, json!({"title": "x"}), 1), upsert(3, "task", "u", None, json!({"title": "x"}), 1)]}).to_string()), 400),
        (raw("POST", "/v1/sync/push", &json!({"client_id": "p", "mutations": too_many}).to_string()), 400),
        (raw("POST", "/v1/sync/push", &json!({"client_id": "bad id!", "mutations": []}).to_string()), 400),
        (raw("POST", "/v1/sync/pull", &json!({"cursor": "2024-01-01T00:00:00Z"}).to_string()), 400),
        (raw("POST", "/v1/sync/pull", &json!({"entities": ["spaceship"]}).to_string()), 400),
        // serde would read a struct from an array; bodies must be objects.
        (raw("POST", "/v1/sync/pull", "[null, null]"), 400),
        (raw("POST", "/v1/sync/push", &json!(["p", []]).to_string()), 400),
        (raw("POST", "/v1/sync/pull", &json!({"wait": 21}).to_string()), 400),
        (raw("GET", "/v1/sync/push", ""), 405),
        (raw("POST", "/v1/nowhere", "{}"), 404),
    ];
    for (request, expected) in cases {
        let path = request.uri().path().to_owned();
        let (status, response) = call(&rig, request).await;
        assert_eq!(status.as_u16(), expected, "{path}: {response}");
        assert!(
            response["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    assert_eq!(seq(&rig, "acme").await, 0, "nothing was written");
    let phone = syncline::model::ClientId::parse("p").expect("client");
    assert_eq!(
        rig.store
            .client_progress(&TenantId::parse("acme").expect("t"), &phone)
            .await
            .expect("p"),
        0
    );
}

#[tokio::test]
async fn claims_from_an_api_gateway_authorizer_are_trusted_when_configured() {
    let mut rig = rig().await;
    rig.api.auth = auth(true);
    let mut event: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../events/sync-api/unauthorized.json"
        ))
        .expect("sample"),
    )
    .expect("json");
    event["requestContext"]["authorizer"] =
        json!({"jwt": {"claims": {"tenant": "acme", "sub": "u"}, "scopes": null}});
    let request = lambda_http::request::from_str(&event.to_string()).expect("event");
    let (status, body) = call(&rig, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn an_old_cursor_gets_a_reset_instead_of_silently_missing_deletes() {
    let rig = rig_with(|s| s.with_tombstone_retention(Duration::from_secs(1))).await;
    push(
        &rig,
        "acme",
        "p",
        json!([upsert(1, "task", "t1", None, json!({"title": "x"}), 1)]),
    )
    .await;
    let (_, page) = pull(&rig, "acme", json!({})).await;
    let cursor = page["cursor"].clone();
    push(&rig, "acme", "p", json!([{"id": 2, "op": "delete", "entity": "task", "record_id": "t1", "base_version": 1, "timestamp": 2}])).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_, late) = pull(&rig, "acme", json!({"cursor": cursor})).await;
    assert_eq!(late["reset"], json!(true), "{late}");
    let (_, fresh) = pull(&rig, "acme", json!({})).await;
    assert_eq!(fresh["reset"], json!(false));
}

#[tokio::test]
async fn older_clients_round_trip_in_their_own_shapes() {
    let rig = rig().await;
    let acme = token("acme");
    let legacy = |path: &str, body: Value| request("POST", path, Some(&acme), Some(body));
    let (status, pushed) = call(&rig, legacy("/api/client/sync/push", json!({"changes": {
        "end_user": [{"id": "u1", "name": "John", "email": "john@example.com", "sync_status": "pending", "server_synced": 0, "version": 1}],
        "interactions": [{"id": null, "type": "call", "title": "Follow up", "status": "pending"}]
    }}))).await;
    assert_eq!(status, StatusCode::OK, "{pushed}");
    assert_eq!(pushed["success"], json!(true));
    let records = pushed["data"].as_array().expect("records");
    assert_eq!(records.len(), 2);
    let user = records.iter().find(|r| r["id"] == json!("u1")).expect("u1");
    assert_eq!(user["sync_status"], json!("synced"));
    assert_eq!(user["server_synced"], json!(1));
    assert_eq!(user["is_deleted"], json!(0));
    assert_eq!(user["version"], json!(1));
    let generated = records
        .iter()
        .find(|r| r["type"] == json!("call"))
        .expect("interaction");
    assert!(
        generated["id"].as_str().is_some_and(|id| id.len() == 36),
        "an id was generated"
    );
    assert!(pushed["syncTimestamp"].is_string());

    let (_, pulled) = call(&rig, legacy("/api/client/sync/pull", json!({"lastSyncTimestamp": "2024-01-01T00:00:00.000Z", "entityTypes": ["end_user", "interactions"]}))).await;
    assert_eq!(pulled["success"], json!(true));
    assert_eq!(
        pulled["data"]["end_user"].as_array().expect("users").len(),
        1
    );
    assert_eq!(
        pulled["data"]["interactions"]
            .as_array()
            .expect("list")
            .len(),
        1
    );
    assert_eq!(
        pulled["data"]["end_user"][0]["email"],
        json!("john@example.com")
    );
    let since = pulled["syncTimestamp"].clone();

    // A soft delete in the old shape, then a pull from the handed-back stamp.
    call(
        &rig,
        legacy(
            "/api/client/sync/push",
            json!({"changes": {"end_user": [{"id": "u1", "is_deleted": 1, "version": 1}]}}),
        ),
    )
    .await;
    let (_, after) = call(
        &rig,
        legacy(
            "/api/client/sync/pull",
            json!({"lastSyncTimestamp": since, "entityTypes": ["end_user", "interactions"]}),
        ),
    )
    .await;
    assert_eq!(
        after["data"]["end_user"].as_array().expect("users").len(),
        1
    );
    assert_eq!(after["data"]["end_user"][0]["is_deleted"], json!(1));
    assert!(
        after["data"]["interactions"]
            .as_array()
            .expect("list")
            .is_empty()
    );

    // Pending: records a server-side writer marked pending.
    rig.store
        .put_record(
            &TenantId::parse("acme").expect("t"),
            syncline::store::RecordWrite {
                entity: EntityType::parse("interactions").expect("e"),
                id: syncline::model::RecordId::parse("i-9").expect("id"),
                change: syncline::store::Change::Put(data(
                    json!({"title": "call back", "sync_status": "pending"}),
                )),
                expect: syncline::store::Expect::Absent,
                source: None,
                origin: None,
                source_version: None,
            },
        )
        .await
        .expect("server-side write");
    let (_, pending) = call(
        &rig,
        legacy(
            "/api/client/sync/pull-pending",
            json!({"entityTypes": ["interactions"]}),
        ),
    )
    .await;
    let list = pending["data"]["interactions"].as_array().expect("pending");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], json!("i-9"));
}

#[tokio::test]
async fn every_sample_event_gets_the_answer_its_case_expects() {
    let rig = rig().await;
    let sample = |name: &str| {
        let path = format!(
            "{}/../events/sync-api/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        lambda_http::request::from_str(&std::fs::read_to_string(path).expect("sample"))
            .expect("event")
    };
    let cases = [
        ("push", 200),
        ("conflict", 200),
        ("pull", 200),
        ("conflicts", 200),
        ("unauthorized", 401),
        ("legacy-push", 200),
        ("legacy-pull", 200),
        ("legacy-pull-pending", 200),
    ];
    let mut bodies = HashMap::new();
    for (name, expected) in cases {
        let (status, body) = call(&rig, sample(name)).await;
        assert_eq!(status.as_u16(), expected, "{name}: {body}");
        bodies.insert(name, body);
    }
    assert_eq!(statuses(&bodies["push"]), vec!["applied", "applied"]);
    assert_eq!(
        bodies["conflict"]["results"][0]["resolution"],
        json!("manual")
    );
    assert_eq!(
        bodies["conflicts"]["conflicts"]
            .as_array()
            .expect("list")
            .len(),
        1
    );
    assert_eq!(bodies["pull"]["last_mutation_id"], json!(2));
}

/// One offline client in the convergence test.
struct Client {
    name: String,
    next_id: u64,
    cursor: Option<Value>,
    replica: BTreeMap<(String, String), (u64, bool, Value)>,
    /// Mutation ids the server reported processed, with how often.
    processed: HashMap<u64, u32>,
    pulled_versions: HashMap<(String, String), u64>,
}

impl Client {
    async fn pull_all(&mut self, rig: &Rig) {
        loop {
            let mut body = json!({"limit": 20, "client_id": self.name});
            if let Some(cursor) = &self.cursor {
                body["cursor"] = cursor.clone();
            }
            let (status, page) = pull(rig, "acme", body).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            assert_eq!(page["reset"], json!(false));
            for change in page["changes"].as_array().expect("changes") {
                let key = (
                    change["entity"].as_str().expect("e").to_owned(),
                    change["id"].as_str().expect("id").to_owned(),
                );
                let version = change["version"].as_u64().expect("version");
                // Replaying the stream: versions of a record only go up.
                let seen = self.pulled_versions.entry(key.clone()).or_default();
                assert!(version > *seen, "{key:?}: version {version} after {seen}");
                *seen = version;
                self.replica.insert(
                    key,
                    (
                        version,
                        change["deleted"].as_bool().expect("d"),
                        change["data"].clone(),
                    ),
                );
            }
            self.cursor = Some(page["cursor"].clone());
            if page["has_more"] != json!(true) {
                return;
            }
        }
    }

    fn mutations(&mut self, rng: &mut StdRng, shared_ids: &[String], n: usize) -> Vec<Value> {
        (0..n)
            .map(|_| {
                let entity = ["task", "note", "draft"][rng.random_range(0..3)];
                let record = shared_ids[rng.random_range(0..shared_ids.len())].clone();
                let known = self.replica.get(&(entity.to_owned(), record.clone())).cloned();
                let base = known.as_ref().map(|(v, _, _)| *v);
                let id = self.next_id;
                self.next_id += 1;
                let ts = Timestamp::now().as_millis() + rng.random_range(-50..50);
                let roll = rng.random_range(0..10);
                match (roll, known) {
                    (0, Some(_)) => json!({"id": id, "op": "delete", "entity": entity, "record_id": record, "base_version": base, "timestamp": ts}),
                    (1..=3, Some((_, false, data))) => json!({"id": id, "op": "patch", "entity": entity, "record_id": record,
                        "base_version": base, "base": data, "data": {"body": format!("{}-{id}", self.name)}, "timestamp": ts}),
                    _ => json!({"id": id, "op": "upsert", "entity": entity, "record_id": record, "base_version": base,
                        "data": {"title": format!("{}-{id}", self.name), "text": "t", "body": "b"}, "timestamp": ts}),
                }
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_clients_converge_and_every_mutation_applies_exactly_once() {
    let rig = Arc::new(rig().await);
    let shared_ids: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
    let mut tasks = Vec::new();
    for c in 0..8u64 {
        let rig = rig.clone();
        let shared_ids = shared_ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(0x5eed + c);
            let mut client = Client {
                name: format!("client-{c}"),
                next_id: 1,
                cursor: None,
                replica: BTreeMap::new(),
                processed: HashMap::new(),
                pulled_versions: HashMap::new(),
            };
            while client.next_id <= 200 {
                let n = rng.random_range(1..=12).min(201 - client.next_id as usize);
                let batch = client.mutations(&mut rng, &shared_ids, n);
                let lost = rng.random_range(0..5) == 0;
                let (status, response) =
                    push(&rig, "acme", &client.name, Value::Array(batch.clone())).await;
                assert_eq!(status, StatusCode::OK, "{response}");
                let responses = if lost {
                    // The first response never arrived: push the same again.
                    let (status, retried) =
                        push(&rig, "acme", &client.name, Value::Array(batch)).await;
                    assert_eq!(status, StatusCode::OK, "{retried}");
                    vec![response, retried]
                } else {
                    vec![response]
                };
                for response in responses {
                    for result in response["results"].as_array().expect("results") {
                        if result["status"] != json!("already_processed") {
                            *client
                                .processed
                                .entry(result["id"].as_u64().expect("id"))
                                .or_default() += 1;
                        }
                    }
                }
                if rng.random_range(0..2) == 0 {
                    client.pull_all(&rig).await;
                }
            }
            client
        }));
    }
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(task.await.expect("client"));
    }

    let tenant = TenantId::parse("acme").expect("tenant");
    let mut server = BTreeMap::new();
    for entity in ["task", "note", "draft"] {
        let page = rig
            .store
            .list_records(&tenant, &EntityType::parse(entity).expect("e"), 1000, None)
            .await
            .expect("list");
        for r in page.items {
            server.insert(
                (entity.to_owned(), r.id.to_string()),
                (r.version.get(), r.deleted, Value::Object(r.data)),
            );
        }
    }
    assert!(!server.is_empty());
    for client in &mut clients {
        client.pull_all(&rig).await;
        assert_eq!(client.replica, server, "{} diverged", client.name);
        let ids: HashSet<u64> = client.processed.keys().copied().collect();
        assert_eq!(
            ids,
            (1..=200).collect::<HashSet<u64>>(),
            "{}: every mutation processed",
            client.name
        );
        assert!(
            client.processed.values().all(|n| *n == 1),
            "{}: a mutation was processed twice",
            client.name
        );
        let progress = rig
            .store
            .client_progress(
                &tenant,
                &syncline::model::ClientId::parse(&client.name).expect("c"),
            )
            .await
            .expect("p");
        assert_eq!(progress, 200);
    }
}

fn job(id: u64, record: &str, crew: &str, start: &str, end: &str) -> Value {
    upsert(
        id,
        "job_schedule",
        record,
        None,
        json!({"crew": crew, "start": start, "end": end}),
        1_795_300_000_000 + id as i64,
    )
}

#[tokio::test]
async fn a_double_booked_crew_is_rejected_with_the_booking_it_clashes_with() {
    let rig = rig().await;
    let (status, body) = push(
        &rig,
        "acme",
        "dispatch",
        json!([
            job(
                1,
                "job-1",
                "crew-a",
                "2026-11-23T09:00:00Z",
                "2026-11-23T12:00:00Z"
            ),
            job(
                2,
                "job-2",
                "crew-a",
                "2026-11-23T11:00:00Z",
                "2026-11-23T13:00:00Z"
            ),
            job(
                3,
                "job-3",
                "crew-b",
                "2026-11-23T11:00:00Z",
                "2026-11-23T13:00:00Z"
            ),
            job(
                4,
                "job-4",
                "crew-a",
                "2026-11-23T12:00:00Z",
                "2026-11-23T14:00:00Z"
            ),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        statuses(&body),
        ["applied", "rejected", "applied", "applied"]
    );
    let reason = body["results"][1]["reason"].as_str().expect("reason");
    assert!(
        reason.contains("crew") && reason.contains("job-1"),
        "a clear reason: {reason}"
    );
    assert!(
        stored(&rig.store, "acme", "job_schedule", "job-2")
            .await
            .is_none()
    );

    // Against stored bookings, in a later push: moving job-3 onto crew-a's
    // morning is refused; once job-1 is deleted the slot is free.
    let (_, body) = push(
        &rig,
        "acme",
        "dispatch",
        json!([job(
            5,
            "job-3",
            "crew-a",
            "2026-11-23T08:00:00Z",
            "2026-11-23T10:00:00Z"
        )]),
    )
    .await;
    assert_eq!(statuses(&body), ["rejected"], "{body}");
    let kept = stored(&rig.store, "acme", "job_schedule", "job-3")
        .await
        .expect("job-3");
    assert_eq!(
        kept.data["crew"],
        json!("crew-b"),
        "a rejected move changes nothing"
    );
    let (_, body) = push(
        &rig,
        "acme",
        "dispatch",
        json!([
            {"id": 6, "op": "delete", "entity": "job_schedule", "record_id": "job-1", "timestamp": 1_795_300_000_100_i64},
            job(7, "job-3", "crew-a", "2026-11-23T08:00:00Z", "2026-11-23T10:00:00Z"),
        ]),
    )
    .await;
    // (No base version given: last-write-wins resolves both onto the stored
    // records, so they report "conflict" with the resolution.)
    assert!(!statuses(&body).contains(&"rejected"), "{body}");
    let moved = stored(&rig.store, "acme", "job_schedule", "job-3")
        .await
        .expect("job-3");
    assert_eq!(
        moved.data["crew"],
        json!("crew-a"),
        "the freed slot is taken"
    );

    // Another tenant's crew-a is another crew.
    let (_, body) = push(
        &rig,
        "globex",
        "dispatch",
        json!([job(
            1,
            "job-9",
            "crew-a",
            "2026-11-23T08:00:00Z",
            "2026-11-23T10:00:00Z"
        )]),
    )
    .await;
    assert_eq!(statuses(&body), ["applied"], "{body}");

    // Bookings are not visible as a pullable type.
    let (_, pulled) = pull(&rig, "acme", json!({})).await;
    assert!(
        pulled["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .all(|c| c["entity"] != json!("_guard")),
        "{pulled}"
    );
}

#[tokio::test]
async fn concurrent_pushes_booking_one_crew_in_one_slot_admit_exactly_one() {
    let rig = Arc::new(rig().await);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let rig = rig.clone();
        tasks.push(tokio::spawn(async move {
            let (status, body) = push(
                &rig,
                "acme",
                &format!("dispatcher-{i}"),
                json!([job(
                    1,
                    &format!("job-{i}"),
                    "crew-a",
                    "2026-11-24T09:00:00Z",
                    "2026-11-24T12:00:00Z"
                )]),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["results"][0]["status"]
                .as_str()
                .expect("status")
                .to_owned()
        }));
    }
    let mut applied = 0;
    for task in tasks {
        if task.await.expect("task") == "applied" {
            applied += 1;
        }
    }
    assert_eq!(applied, 1, "exactly one of eight overlapping bookings wins");
    let mut booked = 0;
    for i in 0..8 {
        if stored(&rig.store, "acme", "job_schedule", &format!("job-{i}"))
            .await
            .is_some()
        {
            booked += 1;
        }
    }
    assert_eq!(booked, 1);
}

#[tokio::test]
async fn a_waiting_pull_reads_the_counter_once_a_second_instead_of_looping() {
    let rig = rig().await;
    let (_, start) = pull(&rig, "acme", json!({})).await;
    rig._engine.requests.take();
    let started = std::time::Instant::now();
    let (status, page) = pull(&rig, "acme", json!({"cursor": start["cursor"], "wait": 3})).await;
    let waited = started.elapsed();
    let sent = rig._engine.requests.take();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["changes"], json!([]));
    assert!(waited >= Duration::from_secs(3), "{waited:?}");
    // The pull itself reads the counter, then the wait reads it once a
    // second: about four reads in three seconds, never a loop.
    let gets = syncline_tests::RequestLog::count(&sent, "GetItem");
    assert!((3..=6).contains(&gets), "{gets} counter reads: {sent:?}");
    assert_eq!(sent.len(), gets, "nothing but counter reads: {sent:?}");
}

#[tokio::test]
async fn a_waiting_pull_finds_a_commit_of_another_process_by_reading_the_counter() {
    let rig = rig().await;
    let (_, start) = pull(&rig, "acme", json!({})).await;
    // Another Lambda instance: its own store handle, whose commits this
    // process never hears of.
    let elsewhere = SyncService::new(
        Store::new(rig.store.client().clone(), rig.store.table()),
        registry(),
    );
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let push: syncline::sync::PushRequest = serde_json::from_value(json!({
            "client_id": "other-instance",
            "mutations": [upsert(1, "task", "t1", None, json!({"title": "from elsewhere"}), 1)]}))
        .expect("push");
        let caller = syncline::sync::Caller {
            tenant: TenantId::parse("acme").expect("tenant"),
            access: syncline::sync::Access::full(),
            device: None,
        };
        elsewhere.push(&caller, &push).await.expect("pushed")
    });
    let started = std::time::Instant::now();
    let (status, page) = pull(&rig, "acme", json!({"cursor": start["cursor"], "wait": 10})).await;
    let waited = started.elapsed();
    writer.await.expect("writer");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["changes"][0]["id"], "t1");
    // Found by the once-a-second read, not at the end of the wait.
    assert!(waited < Duration::from_millis(2500), "{waited:?}");
}
