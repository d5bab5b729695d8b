//! What a client reads through the local run's sync API: long-polls that
//! answer when the feed moves, its own writes never hidden by a pull, and
//! token scopes on every route.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use syncline::model::Cursor;
use syncline_local::run::local_token;
use syncline_tests::service::{JWT_SECRET, Reply, Service, ServiceConfig};

async fn service() -> Service {
    Service::start(ServiceConfig::default()).await
}

fn token(scope: Option<&str>) -> String {
    local_token(JWT_SECRET, "acme", scope, Duration::from_secs(3600)).expect("token")
}

async fn call(service: &Service, token: &str, path: &str, body: Value) -> Reply {
    service
        .send("POST", path, Some(token), &[], Some(body.to_string()))
        .await
}

fn mutation(id: u64, entity: &str, record: &str, data: Value) -> Value {
    json!({"id": id, "op": "upsert", "entity": entity, "record_id": record,
           "data": data, "timestamp": syncline::model::Timestamp::now().as_millis()})
}

fn seq(cursor: &Value) -> u64 {
    Cursor::parse(cursor.as_str().expect("a cursor"))
        .expect("a cursor")
        .seq()
        .get()
}

#[tokio::test]
async fn a_waiting_pull_answers_as_soon_as_the_feed_passes_its_cursor() {
    let service = Arc::new(service().await);
    let everything = token(None);
    let start = call(&service, &everything, "/v1/sync/pull", json!({})).await;
    let cursor = start.body["cursor"].clone();

    let waiting = {
        let (service, everything, cursor) = (service.clone(), everything.clone(), cursor.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let reply = call(
                &service,
                &everything,
                "/v1/sync/pull",
                json!({"cursor": cursor, "wait": 10}),
            )
            .await;
            (reply, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let pushed = call(
        &service,
        &everything,
        "/v1/sync/push",
        json!({"client_id": "phone-1", "mutations": [mutation(1, "task", "t1", json!({"title": "a"}))]}),
    )
    .await;
    assert_eq!(pushed.status, 200);
    let (reply, waited) = waiting.await.expect("the pull answers");
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["changes"][0]["id"], "t1");
    assert!(
        waited >= Duration::from_millis(400),
        "it waited: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(2),
        "answered on the commit: {waited:?}"
    );
    assert!(seq(&reply.body["cursor"]) >= seq(&pushed.body["cursor"]));
}

#[tokio::test]
async fn a_waiting_pull_ends_empty_at_the_wait_and_waits_on_through_other_entity_types() {
    let service = Arc::new(service().await);
    let notes = token(Some("sync:read:note sync:write:task"));
    let everything = token(None);
    let start = call(&service, &everything, "/v1/sync/pull", json!({})).await;
    let waiting = {
        let (service, cursor) = (service.clone(), start.body["cursor"].clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let reply = call(
                &service,
                &notes,
                "/v1/sync/pull",
                json!({"cursor": cursor, "entities": ["note"], "wait": 2}),
            )
            .await;
            (reply, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A task moves the feed; the note pull keeps waiting.
    call(
        &service,
        &everything,
        "/v1/sync/push",
        json!({"client_id": "phone-1", "mutations": [mutation(1, "task", "t1", json!({"title": "a"}))]}),
    )
    .await;
    let (reply, waited) = waiting.await.expect("answered");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["changes"], json!([]));
    assert_eq!(reply.body["has_more"], false);
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    // Its cursor moved past the task it does not read.
    assert!(seq(&reply.body["cursor"]) > seq(&start.body["cursor"]));

    for wait in [json!(21), json!(-1), json!("soon")] {
        let refused = call(
            &service,
            &everything,
            "/v1/sync/pull",
            json!({"wait": wait}),
        )
        .await;
        assert_eq!(refused.status, 400, "{wait}: {:?}", refused.body);
    }
}

#[tokio::test]
async fn a_push_answers_with_a_cursor_that_covers_it_even_when_retried() {
    let service = service().await;
    let everything = token(None);
    let body = json!({"client_id": "phone-1", "mutations": [
        mutation(1, "task", "t1", json!({"title": "a"})),
        mutation(2, "task", "t2", json!({"title": "b"}))]});
    let first = call(&service, &everything, "/v1/sync/push", body.clone()).await;
    call(
        &service,
        &everything,
        "/v1/sync/push",
        json!({"client_id": "other", "mutations": [mutation(1, "task", "t3", json!({"title": "c"}))]}),
    )
    .await;
    let retried = call(&service, &everything, "/v1/sync/push", body).await;
    assert_eq!(
        retried.body["results"][0]["status"], "already_processed",
        "{:?}",
        retried.body
    );
    let pulled = call(
        &service,
        &everything,
        "/v1/sync/pull",
        json!({"client_id": "phone-1"}),
    )
    .await;
    let covers = seq(&first.body["cursor"]);
    assert_eq!(covers, 2, "the push's own two changes");
    assert!(seq(&retried.body["cursor"]) >= covers);
    assert!(seq(&pulled.body["cursor"]) >= seq(&retried.body["cursor"]));
    assert_eq!(pulled.body["last_mutation_id"], 2);
    // The cursor strings order as the positions do.
    assert!(
        first.body["cursor"].as_str() <= pulled.body["cursor"].as_str(),
        "{} then {}",
        first.body["cursor"],
        pulled.body["cursor"]
    );
}

/// One pull's view: the last mutation id it reported and the versions the
/// client held after applying it.
type View = (u64, HashMap<String, u64>);

#[tokio::test]
async fn pushes_and_pulls_racing_never_show_a_client_less_than_its_acknowledged_writes() {
    let service = Arc::new(service().await);
    let everything = token(None);
    const PUSHES: u64 = 120;
    // Client "mine" rewrites five drafts; "theirs" rewrites the same ones.
    let mine = {
        let (service, everything) = (service.clone(), everything.clone());
        tokio::spawn(async move {
            let mut versions = HashMap::new();
            for id in 1..=PUSHES {
                let record = format!("d{}", id % 5);
                let reply = call(
                    &service,
                    &everything,
                    "/v1/sync/push",
                    json!({"client_id": "mine", "mutations": [mutation(id, "draft", &record, json!({"n": id}))]}),
                )
                .await;
                assert_eq!(reply.status, 200, "{:?}", reply.body);
                let version = reply.body["results"][0]["record"]["version"]
                    .as_u64()
                    .expect("applied with a version");
                versions.insert(id, (record, version));
            }
            versions
        })
    };
    let theirs = {
        let (service, everything) = (service.clone(), everything.clone());
        tokio::spawn(async move {
            for id in 1..=PUSHES {
                call(
                    &service,
                    &everything,
                    "/v1/sync/push",
                    json!({"client_id": "theirs", "mutations": [
                        mutation(id, "draft", &format!("d{}", (id + 2) % 5), json!({"m": id}))]}),
                )
                .await;
            }
        })
    };
    let puller = {
        let (service, everything) = (service.clone(), everything.clone());
        tokio::spawn(async move {
            let mut held: HashMap<String, u64> = HashMap::new();
            let mut cursor = Value::Null;
            let mut views: Vec<View> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let mut body = json!({"client_id": "mine", "limit": 1, "entities": ["draft"]});
                if !cursor.is_null() {
                    body["cursor"] = cursor.clone();
                }
                let reply = call(&service, &everything, "/v1/sync/pull", body).await;
                assert_eq!(reply.status, 200, "{:?}", reply.body);
                for change in reply.body["changes"].as_array().expect("changes") {
                    let id = change["id"].as_str().expect("id").to_owned();
                    let version = change["version"].as_u64().expect("version");
                    let entry = held.entry(id).or_default();
                    *entry = (*entry).max(version);
                }
                cursor = reply.body["cursor"].clone();
                if let Some(last) = reply.body["last_mutation_id"].as_u64() {
                    assert_eq!(
                        reply.body["has_more"], false,
                        "reported on a final page only"
                    );
                    views.push((last, held.clone()));
                    if last == PUSHES {
                        return views;
                    }
                }
                assert!(Instant::now() < deadline, "the puller caught up");
            }
        })
    };
    let versions = mine.await.expect("pushed");
    theirs.await.expect("pushed");
    let views = puller.await.expect("pulled");
    assert!(
        views.len() >= 2,
        "pulls reported progress {} times",
        views.len()
    );
    let mut checked = 0;
    for (last, held) in &views {
        for id in 1..=*last {
            let (record, version) = &versions[&id];
            let seen = held.get(record).copied().unwrap_or(0);
            assert!(
                seen >= *version,
                "a pull said mutation {id} is processed (last {last}) but the client holds \
                 {record} at version {seen}, older than the {version} that mutation wrote"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= PUSHES as usize,
        "{checked} acknowledged writes checked"
    );
}

#[tokio::test]
async fn scopes_limit_every_route_and_hide_the_types_a_client_may_not_read() {
    let service = service().await;
    let everything = token(None);
    // Seed one record of each of four types, and a manual conflict on a job.
    let seeded = call(
        &service,
        &everything,
        "/v1/sync/push",
        json!({"client_id": "seed", "mutations": [
            mutation(1, "task", "t1", json!({"title": "a"})),
            mutation(2, "note", "n1", json!({"body": "b"})),
            mutation(3, "job", "j1", json!({"crew": "c", "start": "2026-12-01T10:00:00Z"})),
            mutation(4, "draft", "d1", json!({"text": "d"}))]}),
    )
    .await;
    assert_eq!(seeded.status, 200);
    let conflict = call(
        &service,
        &everything,
        "/v1/sync/push",
        json!({"client_id": "seed", "mutations": [{"id": 5, "op": "upsert", "entity": "job", "record_id": "j1",
               "base_version": 0, "data": {"crew": "d", "start": "2026-12-01T11:00:00Z"}, "timestamp": 1}]}),
    )
    .await;
    let conflict_id = conflict.body["results"][0]["conflict_id"]
        .as_str()
        .expect("a manual conflict")
        .to_owned();

    let scoped = token(Some("sync:read:note sync:write:task"));
    let entities = |reply: &Reply| -> Vec<String> {
        let mut names: Vec<String> = reply.body["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .map(|c| c["entity"].as_str().expect("entity").to_owned())
            .collect();
        names.sort();
        names
    };
    let pulled = call(&service, &scoped, "/v1/sync/pull", json!({})).await;
    assert_eq!(entities(&pulled), ["note", "task"]);

    let unknown = call(
        &service,
        &scoped,
        "/v1/sync/pull",
        json!({"entities": ["spaceship"]}),
    )
    .await;
    let hidden = call(
        &service,
        &scoped,
        "/v1/sync/pull",
        json!({"entities": ["job"]}),
    )
    .await;
    assert_eq!(hidden.status, 400);
    assert_eq!(
        hidden.body["error"]["message"]
            .as_str()
            .map(|m| m.replace("job", "?")),
        unknown.body["error"]["message"]
            .as_str()
            .map(|m| m.replace("spaceship", "?")),
        "a hidden type answers exactly as an unknown one"
    );

    let push = |id: u64, entity: &str| json!({"client_id": "scoped", "mutations": [mutation(id, entity, "x1", json!({"title": "t", "body": "b"}))]});
    assert_eq!(
        call(&service, &scoped, "/v1/sync/push", push(1, "note"))
            .await
            .status,
        403
    );
    let job = call(&service, &scoped, "/v1/sync/push", push(1, "job")).await;
    assert_eq!(job.status, 400);
    assert!(
        job.body["error"]["message"]
            .as_str()
            .expect("m")
            .contains("unknown entity type")
    );
    assert_eq!(
        call(&service, &scoped, "/v1/sync/push", push(1, "task"))
            .await
            .status,
        200
    );

    // Conflicts: the job's is neither listed nor resolvable.
    let listed = service
        .send("GET", "/v1/sync/conflicts", Some(&scoped), &[], None)
        .await;
    assert_eq!(listed.body["conflicts"], json!([]));
    let everyone = service
        .send("GET", "/v1/sync/conflicts", Some(&everything), &[], None)
        .await;
    assert_eq!(everyone.body["conflicts"].as_array().map(Vec::len), Some(1));
    let resolve = call(
        &service,
        &scoped,
        &format!("/v1/sync/conflicts/{conflict_id}/resolve"),
        json!({"resolution": "server"}),
    )
    .await;
    assert_eq!(resolve.status, 404);

    // The older routes.
    let legacy_pull = call(
        &service,
        &scoped,
        "/api/client/sync/pull",
        json!({"entityTypes": ["job"]}),
    )
    .await;
    assert_eq!(legacy_pull.status, 400);
    let legacy_push = call(
        &service,
        &scoped,
        "/api/client/sync/push",
        json!({"changes": {"note": [{"id": "n2", "body": "x"}]}}),
    )
    .await;
    assert_eq!(legacy_push.status, 403);
    let legacy_ok = call(
        &service,
        &scoped,
        "/api/client/sync/pull",
        json!({"entityTypes": ["note", "task"]}),
    )
    .await;
    assert_eq!(legacy_ok.status, 200);

    // Read only: pulls, no pushes.
    let reader = token(Some("sync:read"));
    assert_eq!(
        entities(&call(&service, &reader, "/v1/sync/pull", json!({})).await).len(),
        5
    );
    assert_eq!(
        call(&service, &reader, "/v1/sync/push", push(1, "task"))
            .await
            .status,
        403
    );

    // A scope claim with nothing for sync: nothing at all.
    let stranger = token(Some("openid profile"));
    let empty = call(&service, &stranger, "/v1/sync/pull", json!({})).await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.body["changes"], json!([]));
    assert_eq!(
        call(&service, &stranger, "/v1/sync/push", push(1, "task"))
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn one_record_is_read_by_entity_and_id_within_the_tokens_scopes() {
    let service = service().await;
    let everything = token(None);
    call(
        &service,
        &everything,
        "/v1/sync/push",
        json!({"client_id": "office", "mutations": [
            mutation(1, "job", "job 7/a", json!({"crew": "c", "start": "2026-12-01T10:00:00Z"})),
            mutation(2, "task", "t1", json!({"title": "x"})),
            {"id": 3, "op": "delete", "entity": "task", "record_id": "t1", "timestamp": 1}]}),
    )
    .await;
    let get = |token: String, path: &'static str| {
        let service = &service;
        async move { service.send("GET", path, Some(&token), &[], None).await }
    };
    // Ids travel percent-encoded in the path.
    let job = get(everything.clone(), "/v1/sync/records/job/job%207%2Fa").await;
    assert_eq!(job.status, 200, "{:?}", job.body);
    assert_eq!(job.body["record"]["id"], "job 7/a");
    assert_eq!(job.body["record"]["data"]["crew"], "c");
    assert_eq!(job.body["record"]["version"], 1);
    let gone = get(everything.clone(), "/v1/sync/records/task/t1").await;
    assert_eq!(gone.body["record"]["deleted"], true);
    assert_eq!(
        get(everything.clone(), "/v1/sync/records/job/nope")
            .await
            .status,
        404
    );
    assert_eq!(
        get(everything, "/v1/sync/records/spaceship/x").await.status,
        400
    );
    // A type the token may not read does not exist for it.
    let notes = token(Some("sync:read:note"));
    let hidden = get(notes, "/v1/sync/records/job/job%207%2Fa").await;
    assert_eq!(hidden.status, 400);
    assert!(
        hidden.body["error"]["message"]
            .as_str()
            .expect("m")
            .contains("unknown entity type job")
    );
}

#[tokio::test]
async fn a_manual_conflicts_resolution_keeps_to_the_entitys_lifecycle() {
    let service = Service::start(ServiceConfig {
        entities: Some(json!({"entities": {"deal": {
            "conflict": "manual",
            "lifecycle": {"field": "status", "initial": ["draft"],
                          "transitions": {"draft": ["sent"], "sent": ["signed"], "signed": []}}}}})),
        ..ServiceConfig::default()
    })
    .await;
    let everything = token(None);
    let push = |client: &str, id: u64, base: Option<u64>, status: &str| {
        json!({"client_id": client, "mutations": [{"id": id, "op": "upsert", "entity": "deal",
               "record_id": "d1", "base_version": base, "data": {"status": status}, "timestamp": 1}]})
    };
    let created = call(
        &service,
        &everything,
        "/v1/sync/push",
        push("a", 1, None, "draft"),
    )
    .await;
    assert_eq!(created.body["results"][0]["status"], "applied");
    // A stale edit: stored as a manual conflict.
    let stale = call(
        &service,
        &everything,
        "/v1/sync/push",
        push("b", 1, Some(7), "sent"),
    )
    .await;
    let conflict = stale.body["results"][0]["conflict_id"]
        .as_str()
        .expect("a stored conflict")
        .to_owned();
    let resolve = |data: Value| json!({"resolution": "custom", "data": data});
    let path = format!("/v1/sync/conflicts/{conflict}/resolve");
    let skipping = call(
        &service,
        &everything,
        &path,
        resolve(json!({"status": "signed"})),
    )
    .await;
    assert_eq!(skipping.status, 422, "{:?}", skipping.body);
    assert!(
        skipping.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot go from draft to signed")),
        "{:?}",
        skipping.body
    );
    let record = service
        .send(
            "GET",
            "/v1/sync/records/deal/d1",
            Some(&everything),
            &[],
            None,
        )
        .await;
    assert_eq!(
        record.body["record"]["data"]["status"], "draft",
        "nothing changed"
    );
    let resolved = call(
        &service,
        &everything,
        &path,
        resolve(json!({"status": "sent"})),
    )
    .await;
    assert_eq!(resolved.status, 200, "{:?}", resolved.body);
    assert_eq!(resolved.body["record"]["data"]["status"], "sent");
}
