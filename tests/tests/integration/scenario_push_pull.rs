//! Scenario 4, push/pull: a client speaking the older wire shapes pushes
//! `end_user` and `interactions` records, soft-deletes one, pulls and sees
//! `sync_status`, `version` and `is_deleted` as it expects; every conflict
//! strategy is exercised; a second tenant sees none of it. Run on the local
//! queue and again with the retry queue on SQS (moto). Driven only through
//! HTTP routes and the sample configuration (docs/scenarios.md, scenario 4).

use std::sync::Arc;

use serde_json::{Value, json};
use syncline::queue::{RetryQueue, SqsQueue, create_sqs_queues};
use syncline_tests::moto;
use syncline_tests::service::{Service, ServiceConfig};

async fn legacy(service: &Service, tenant: &str, route: &str, body: Value) -> Value {
    let reply = service
        .client(tenant, "POST", &format!("/api/client/sync/{route}"), body)
        .await;
    assert_eq!(reply.status, 200, "{route}: {}", reply.body);
    assert_eq!(reply.body["success"], json!(true), "{}", reply.body);
    reply.body
}

fn upsert(id: u64, entity: &str, record: &str, base: Option<u64>, data: Value, at: i64) -> Value {
    json!({"id": id, "op": "upsert", "entity": entity, "record_id": record,
           "base_version": base, "data": data, "timestamp": at})
}

async fn scenario(service: &Service) {
    // The older client pushes a user and an interaction (no id: the server
    // assigns one) in its own shape.
    let pushed = legacy(
        service,
        "demo",
        "push",
        json!({"changes": {
            "end_user": [{"id": "u-1001", "name": "John Doe", "email": "john@example.com",
                          "sync_status": "pending", "server_synced": 0, "version": 1}],
            "interactions": [{"id": null, "type": "call", "title": "Follow up call",
                              "date": "2024-01-01T10:00:00Z", "status": "pending"}]
        }}),
    )
    .await;
    let records = pushed["data"].as_array().expect("data");
    assert_eq!(records.len(), 2);
    for record in records {
        assert_eq!(record["sync_status"], json!("synced"), "{record}");
        assert_eq!(record["server_synced"], json!(1));
        assert_eq!(record["is_deleted"], json!(0));
        assert_eq!(record["version"], json!(1));
    }
    let interaction_id = records
        .iter()
        .find(|r| r["type"] == json!("call"))
        .and_then(|r| r["id"].as_str())
        .expect("a generated id")
        .to_owned();

    // It pulls everything since the beginning of time.
    let pulled = legacy(
        service,
        "demo",
        "pull",
        json!({"lastSyncTimestamp": "2024-01-01T00:00:00.000Z",
                                                "entityTypes": ["end_user", "interactions"]}),
    )
    .await;
    assert_eq!(
        pulled["data"]["end_user"][0]["email"],
        json!("john@example.com")
    );
    assert_eq!(
        pulled["data"]["interactions"][0]["id"],
        json!(interaction_id)
    );
    let since = pulled["syncTimestamp"].clone();
    assert!(since.is_string());

    // A soft delete, then a pull from the stamp it was handed.
    legacy(
        service,
        "demo",
        "push",
        json!({"changes": {"end_user": [{"id": "u-1001", "is_deleted": 1, "version": 1}]}}),
    )
    .await;
    let after = legacy(
        service,
        "demo",
        "pull",
        json!({"lastSyncTimestamp": since,
                                               "entityTypes": ["end_user", "interactions"]}),
    )
    .await;
    let users = after["data"]["end_user"].as_array().expect("users");
    assert_eq!(users.len(), 1, "{after}");
    assert_eq!(users[0]["is_deleted"], json!(1));
    assert_eq!(users[0]["version"], json!(2));
    assert_eq!(after["data"]["interactions"], json!([]), "unchanged since");

    // A back-office writer marks an interaction pending; pull-pending
    // returns it to the older client.
    let marked = service.push("back-office", json!([
        {"id": 1, "op": "patch", "entity": "interactions", "record_id": interaction_id,
         "data": {"sync_status": "pending", "title": "Call back"}, "timestamp": 1_795_300_000_000_i64}
    ]))
    .await;
    assert_ne!(marked[0]["status"], json!("rejected"), "{marked:?}");
    let pending = legacy(
        service,
        "demo",
        "pull-pending",
        json!({"entityTypes": ["interactions"]}),
    )
    .await;
    let pending = pending["data"]["interactions"].as_array().expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["title"], json!("Call back"));

    // Every conflict strategy: two devices edit the same record from
    // version 1.
    let t0 = 1_795_300_000_000_i64;
    let mut a = 0;
    let mut b = 0;
    let next = |n: &mut u64| {
        *n += 1;
        *n
    };
    for (entity, data) in [
        ("task", json!({"title": "Paint fence", "done": false})),
        ("note", json!({"body": "gate code 1234", "room": "hall"})),
        (
            "job",
            json!({"crew": "crew-a", "start": "2026-11-23T09:00:00Z", "notes": ""}),
        ),
        ("contact", json!({"name": "Ann", "phone": "111"})),
        ("draft", json!({"text": "v1"})),
    ] {
        let created = service
            .push(
                "device-a",
                json!([upsert(next(&mut a), entity, "r1", None, data, t0)]),
            )
            .await;
        assert_eq!(
            created[0]["status"],
            json!("applied"),
            "{entity}: {created:?}"
        );
    }
    // Device A edits first (version 1 -> 2).
    for (entity, data) in [
        ("task", json!({"title": "Paint fence", "done": true})),
        ("note", json!({"body": "gate code 1234", "room": "kitchen"})),
        (
            "job",
            json!({"crew": "crew-b", "start": "2026-11-23T09:00:00Z", "notes": ""}),
        ),
        ("contact", json!({"name": "Ann", "phone": "222"})),
        ("draft", json!({"text": "v2 from a"})),
    ] {
        let edited = service
            .push(
                "device-a",
                json!([upsert(next(&mut a), entity, "r1", Some(1), data, t0 + 10)]),
            )
            .await;
        assert_eq!(
            edited[0]["status"],
            json!("applied"),
            "{entity}: {edited:?}"
        );
    }
    // Device B, still on version 1, edits too.
    let edits = [
        // last_write_wins: B's clock is later, B wins.
        (
            "task",
            json!({"title": "Paint fence", "done": false}),
            t0 + 20,
        ),
        // merge: B changed body, A changed room: both kept.
        (
            "note",
            json!({"body": "gate code 9876", "room": "hall"}),
            t0 + 20,
        ),
        // manual: stored as a conflict for a person.
        (
            "job",
            json!({"crew": "crew-c", "start": "2026-11-23T09:00:00Z", "notes": ""}),
            t0 + 20,
        ),
        // server_wins: A's phone stays.
        ("contact", json!({"name": "Ann", "phone": "333"}), t0 + 20),
        // client_wins: B's text goes on top.
        ("draft", json!({"text": "v2 from b"}), t0 + 20),
    ];
    let mut results = Vec::new();
    for (entity, data, at) in edits {
        let mut mutation = upsert(next(&mut b), entity, "r1", Some(1), data, at);
        if entity == "note" {
            // A merging client sends the version it started from.
            mutation["base"] = json!({"body": "gate code 1234", "room": "hall"});
        }
        let result = service.push("device-b", json!([mutation])).await;
        results.push((entity, result[0].clone()));
    }
    let by = |entity: &str| {
        results
            .iter()
            .find(|(e, _)| *e == entity)
            .map(|(_, r)| r.clone())
            .expect("result")
    };
    assert_eq!(by("task")["resolution"], json!("last_write_wins"));
    assert_eq!(by("task")["record"]["data"]["done"], json!(false));
    assert_eq!(by("note")["resolution"], json!("merge"));
    assert_eq!(
        by("note")["record"]["data"],
        json!({"body": "gate code 9876", "room": "kitchen"})
    );
    assert_eq!(by("job")["resolution"], json!("manual"));
    let conflict_id = by("job")["conflict_id"]
        .as_str()
        .expect("conflict id")
        .to_owned();
    assert_eq!(by("contact")["resolution"], json!("server_wins"));
    assert_eq!(by("contact")["record"]["data"]["phone"], json!("222"));
    assert_eq!(by("draft")["resolution"], json!("client_wins"));
    assert_eq!(by("draft")["record"]["data"]["text"], json!("v2 from b"));

    // The manual conflict is listed and resolved by a person.
    let conflicts = service
        .client("demo", "GET", "/v1/sync/conflicts", Value::Null)
        .await;
    assert_eq!(conflicts.status, 200, "{}", conflicts.body);
    assert!(
        conflicts.body.to_string().contains(&conflict_id),
        "{}",
        conflicts.body
    );
    let resolved = service
        .client(
            "demo",
            "POST",
            &format!("/v1/sync/conflicts/{conflict_id}/resolve"),
            json!({"resolution": "custom", "data": {"crew": "crew-c", "start": "2026-11-23T09:00:00Z", "notes": "agreed by phone"}}),
        )
        .await;
    assert_eq!(resolved.status, 200, "{}", resolved.body);
    let job = service.pulled("demo", "job", "r1").await.expect("job r1");
    assert_eq!(job["data"]["notes"], json!("agreed by phone"));
    assert_eq!(job["data"]["crew"], json!("crew-c"));

    // A second tenant sees none of it, in either wire shape.
    let other = legacy(
        service,
        "other",
        "pull",
        json!({"lastSyncTimestamp": "2000-01-01T00:00:00.000Z",
                                                "entityTypes": ["end_user", "interactions"]}),
    )
    .await;
    assert_eq!(other["data"]["end_user"], json!([]));
    assert_eq!(other["data"]["interactions"], json!([]));
    for entity in ["task", "note", "job", "contact", "draft", "end_user"] {
        assert!(
            service.pull_all("other", entity).await.is_empty(),
            "{entity}"
        );
    }
    let other_conflicts = service
        .client("other", "GET", "/v1/sync/conflicts", Value::Null)
        .await;
    assert!(!other_conflicts.body.to_string().contains(&conflict_id));

    // Nothing failed along the way.
    let dead = service
        .admin("GET", "/v1/admin/dead-letters", Value::Null)
        .await;
    assert_eq!(dead.status, 200, "{}", dead.body);
    assert_eq!(dead.body["dead_letters"], json!([]), "{}", dead.body);
}

#[tokio::test]
async fn scenario_4_push_pull() {
    let service = Service::start(ServiceConfig::default()).await;
    scenario(&service).await;
    service.running.stop().await;
}

#[tokio::test]
async fn scenario_4_push_pull_with_the_retry_queue_on_sqs() {
    let client = moto().sqs_client().await;
    let name = format!("scenario-4-{}", uuid::Uuid::new_v4().simple());
    let (url, _) = create_sqs_queues(&client, &name, 10).await.expect("queues");
    let queue: Arc<dyn RetryQueue> =
        Arc::new(SqsQueue::connect(client, &url, None).await.expect("sqs"));
    let service = Service::start(ServiceConfig {
        queue: Some(queue),
        ..ServiceConfig::default()
    })
    .await;
    scenario(&service).await;
    service.running.stop().await;
}

/// What the seed's `SyncClient` does: it keeps the `syncTimestamp` of every
/// push and every pull as its next `lastSyncTimestamp`.
struct SeedClient {
    last_sync_timestamp: Value,
}

impl SeedClient {
    async fn push_changes(&mut self, service: &Service, changes: Value) -> Value {
        let result = legacy(service, "demo", "push", json!({"changes": changes})).await;
        self.last_sync_timestamp = result["syncTimestamp"].clone();
        result
    }

    async fn pull_data(&mut self, service: &Service, entity_types: Value) -> Value {
        let result = legacy(
            service,
            "demo",
            "pull",
            json!({"lastSyncTimestamp": self.last_sync_timestamp, "entityTypes": entity_types}),
        )
        .await;
        self.last_sync_timestamp = result["syncTimestamp"].clone();
        result
    }
}

fn ids(result: &Value, entity: &str) -> Vec<String> {
    let mut ids: Vec<String> = result["data"][entity]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn the_seed_client_keeps_a_pushs_timestamp_and_neither_misses_nor_redownloads() {
    let service = Service::start(ServiceConfig::default()).await;
    let mut client = SeedClient {
        last_sync_timestamp: json!("1970-01-01T00:00:00.000Z"),
    };
    client
        .push_changes(
            &service,
            json!({"end_user": [{"id": "u1", "name": "Ann", "version": 1}]}),
        )
        .await;
    let first = client.pull_data(&service, json!(["end_user"])).await;
    assert_eq!(ids(&first, "end_user"), ["u1"]);
    let pulled_at = first["syncTimestamp"].clone();

    // Someone else adds a user; the client pushes one of its own.
    service
        .push(
            "back-office",
            json!([upsert(
                1,
                "end_user",
                "u2",
                None,
                json!({"name": "Bob"}),
                1_795_300_000_000
            )]),
        )
        .await;
    let pushed = client
        .push_changes(
            &service,
            json!({"end_user": [{"id": "u3", "name": "Cy", "version": 1}]}),
        )
        .await;
    assert_eq!(
        pushed["syncTimestamp"], pulled_at,
        "a push answers with the cursor the client's last pull gave it"
    );

    // The next pull brings Bob (not skipped) and the client's own Cy, not
    // the whole data set again.
    let next = client.pull_data(&service, json!(["end_user"])).await;
    assert_eq!(ids(&next, "end_user"), ["u2", "u3"]);

    // A record that breaks a rule comes back rejected, with the reason.
    let refused = client
        .push_changes(
            &service,
            json!({"end_user": [{"id": "u4", "name": "Di", "email": "not-an-email", "version": 1},
                                {"id": "u5", "name": "Ed", "version": 1}]}),
        )
        .await;
    let data = refused["data"].as_array().expect("data");
    assert_eq!(
        data.len(),
        2,
        "every pushed record is answered for: {refused}"
    );
    let rejected = data.iter().find(|r| r["id"] == "u4").expect("u4 answered");
    assert_eq!(rejected["sync_status"], "rejected");
    assert_eq!(rejected["server_synced"], 0);
    assert!(
        rejected["sync_error"]
            .as_str()
            .is_some_and(|e| e.contains("email")),
        "{rejected}"
    );
    assert_eq!(rejected["name"], "Di", "as the client sent it");
    let accepted = data.iter().find(|r| r["id"] == "u5").expect("u5 answered");
    assert_eq!(accepted["sync_status"], "synced");

    // Two devices behind one login name themselves apart.
    let other_device = service
        .send(
            "POST",
            "/api/client/sync/push",
            Some(&Service::token("demo")),
            &[("x-client-id", "tablet")],
            Some(json!({"changes": {"end_user": [{"id": "u6", "name": "Flo"}]}}).to_string()),
        )
        .await;
    assert_eq!(
        other_device.body["syncTimestamp"],
        json!(syncline::model::Cursor::START.to_string()),
        "a device that never pulled starts from the beginning"
    );
}
