//! Scenario 3, the platform's outbound half: a schedule created by a client
//! goes to Notion (a page in a database), Google Calendar (an event) and
//! the Redis cache; the operator sees every destination caught up; an edit
//! and a cancellation follow to all three, each in its API's own request
//! shapes (docs/scenarios.md, scenario 3).

use std::collections::HashMap;

use redis::AsyncCommands;
use serde_json::{Value, json};
use syncline::model::Timestamp;
use syncline_tests::outbound::FakeApi;
use syncline_tests::redis::redis_server;
use syncline_tests::service::{Service, ServiceConfig};

async fn push(service: &Service, id: u64, op: &str, base: Option<u64>, data: Value) {
    let mut mutation = json!({
        "id": id, "op": op, "entity": "booking", "record_id": "b1",
        "timestamp": Timestamp::now().as_millis(), "data": data,
    });
    if let Some(base) = base {
        mutation["base_version"] = json!(base);
    }
    if op == "delete" {
        mutation.as_object_mut().map(|m| m.remove("data"));
    }
    let reply = service
        .client(
            "demo",
            "POST",
            "/v1/sync/push",
            json!({"client_id": "planner", "mutations": [mutation]}),
        )
        .await;
    assert_eq!(
        reply.body["results"][0]["status"],
        json!("applied"),
        "{}",
        reply.body
    );
}

async fn caught_up(service: &Service) -> HashMap<String, Value> {
    let reply = service.invoke("delivery", json!({})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let status = service
        .admin("GET", "/v1/admin/destinations", Value::Null)
        .await;
    status.body["destinations"]
        .as_array()
        .expect("destinations")
        .iter()
        .map(|d| {
            (
                d["destination"].as_str().expect("name").to_owned(),
                d.clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn scenario_3_a_schedule_reaches_notion_google_calendar_and_the_cache() {
    let (notion, notion_addr) = FakeApi::start().await;
    let (calendar, calendar_addr) = FakeApi::start().await;
    let server = redis_server();
    let prefix = format!("platform{}:", uuid::Uuid::new_v4().simple());
    let service = Service::start(ServiceConfig {
        destinations: Some(json!({"destinations": {
            "notion": {"tenant": "demo", "entities": ["booking"], "kind": {"http": {
                "preset": "notion", "base_url": format!("http://{notion_addr}"),
                "auth": {"bearer": {"token": {"value": "secret_notion"}}},
                "vars": {"database": "db-schedules"},
                "body": {"Name": {"title": [{"text": {"content": "{title}"}}]},
                         "Crew": {"rich_text": [{"text": {"content": "{crew}"}}]}},
            }}},
            "calendar": {"tenant": "demo", "entities": ["booking"], "kind": {"http": {
                "preset": "google_calendar", "base_url": format!("http://{calendar_addr}"),
                "vars": {"calendar": "crew-a@example.com"},
                "body": {"summary": "{title}", "start": {"dateTime": "{start}"}, "end": {"dateTime": "{end}"}},
            }}},
            "cache": {"tenant": "demo", "entities": ["booking"],
                      "kind": {"redis": {"url": {"value": server.url}, "prefix": prefix}}},
        }})),
        ..ServiceConfig::default()
    })
    .await;
    let mut redis = server.connection().await;
    let schedule = json!({"title": "Install", "crew": "crew-a",
                          "start": "2026-12-03T08:00:00Z", "end": "2026-12-03T12:00:00Z"});

    // Created: a page, an event and a key, then every destination caught up.
    push(&service, 1, "upsert", None, schedule.clone()).await;
    let status = caught_up(&service).await;
    for name in ["notion", "calendar", "cache"] {
        assert_eq!(status[name]["lag"], json!(0), "{name}: {}", status[name]);
        assert_eq!(status[name]["enabled"], json!(true));
    }
    let page = &notion.received()[0];
    assert_eq!(
        (page.method.as_str(), page.path.as_str()),
        ("POST", "/v1/pages")
    );
    assert_eq!(page.headers["notion-version"], "2022-06-28");
    assert_eq!(page.headers["authorization"], "Bearer secret_notion");
    let body: Value = serde_json::from_str(&page.body).expect("json");
    assert_eq!(body["parent"]["database_id"], json!("db-schedules"));
    assert_eq!(
        body["properties"]["Name"]["title"][0]["text"]["content"],
        json!("Install")
    );
    let event = &calendar.received()[0];
    assert_eq!(
        event.path,
        "/calendar/v3/calendars/crew-a@example.com/events"
    );
    let body: Value = serde_json::from_str(&event.body).expect("json");
    assert_eq!(body["start"]["dateTime"], json!("2026-12-03T08:00:00Z"));
    let cached: String = redis.get(format!("{prefix}booking:b1")).await.expect("get");
    assert_eq!(
        serde_json::from_str::<Value>(&cached).expect("json"),
        schedule
    );
    let ledger = service
        .admin(
            "GET",
            "/v1/admin/destinations/notion/deliveries",
            Value::Null,
        )
        .await;
    assert_eq!(
        ledger.body["deliveries"][0]["external_id"],
        json!("obj_1"),
        "{}",
        ledger.body
    );

    // Moved: the page and the event are updated in place, by their ids.
    let mut moved = schedule.clone();
    moved["start"] = json!("2026-12-04T08:00:00Z");
    moved["end"] = json!("2026-12-04T12:00:00Z");
    push(&service, 2, "upsert", Some(1), moved.clone()).await;
    caught_up(&service).await;
    assert_eq!(
        (
            notion.received()[1].method.as_str(),
            notion.received()[1].path.as_str()
        ),
        ("PATCH", "/v1/pages/obj_1")
    );
    assert_eq!(
        calendar.objects()["obj_1"]["start"]["dateTime"],
        json!("2026-12-04T08:00:00Z")
    );
    let cached: String = redis.get(format!("{prefix}booking:b1")).await.expect("get");
    assert_eq!(serde_json::from_str::<Value>(&cached).expect("json"), moved);

    // Cancelled: Notion archives the page, the event is deleted, the key goes.
    push(&service, 3, "delete", Some(2), Value::Null).await;
    let status = caught_up(&service).await;
    let archive: Value = serde_json::from_str(&notion.received()[2].body).expect("json");
    assert_eq!(archive, json!({"archived": true}));
    assert_eq!(calendar.received()[2].method, "DELETE");
    assert!(calendar.objects().is_empty());
    let gone: Option<String> = redis.get(format!("{prefix}booking:b1")).await.expect("get");
    assert_eq!(gone, None);
    assert!(status.values().all(|d| d["lag"] == json!(0)));
}

#[tokio::test]
async fn zoho_creator_records_are_added_then_updated_by_the_id_zoho_answered() {
    let (zoho, addr) = FakeApi::start().await;
    let service = Service::start(ServiceConfig {
        destinations: Some(json!({"destinations": {"zoho": {"tenant": "demo", "entities": ["booking"], "kind": {"http": {
            "preset": "zoho_creator", "base_url": format!("http://{addr}"),
            "auth": {"header": {"header": "Authorization", "prefix": "Zoho-oauthtoken ", "value": {"value": "t"}}},
            "vars": {"owner": "demo", "app": "field-service", "form": "Job", "report": "All_Jobs"},
            "body": {"Job_Name": "{title}", "Crew": "{crew}"},
        }}}}})),
        ..ServiceConfig::default()
    })
    .await;
    push(
        &service,
        1,
        "upsert",
        None,
        json!({"title": "Install", "crew": "crew-a"}),
    )
    .await;
    caught_up(&service).await;
    push(
        &service,
        2,
        "upsert",
        Some(1),
        json!({"title": "Install", "crew": "crew-b"}),
    )
    .await;
    let status = caught_up(&service).await;
    assert_eq!(status["zoho"]["lag"], json!(0));
    let calls: Vec<(String, String)> = zoho
        .received()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        calls,
        vec![
            (
                "POST".to_owned(),
                "/api/v2.1/demo/field-service/form/Job".to_owned()
            ),
            (
                "PATCH".to_owned(),
                "/api/v2.1/demo/field-service/report/All_Jobs/obj_1".to_owned()
            ),
        ]
    );
    let added: Value = serde_json::from_str(&zoho.received()[0].body).expect("json");
    assert_eq!(
        added,
        json!({"data": {"Job_Name": "Install", "Crew": "crew-a"}})
    );
    assert_eq!(
        zoho.received()[0].headers["authorization"],
        "Zoho-oauthtoken t"
    );
    assert_eq!(zoho.objects()["obj_1"]["data"]["Crew"], json!("crew-b"));
}
