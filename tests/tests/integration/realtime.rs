//! The real-time channel through the local run, with a real WebSocket
//! client: pokes on commit, the handshake's token checks, tenant and scope
//! isolation, and connections that leave nothing behind.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use syncline::model::{TenantId, Timestamp};
use syncline_local::run::local_token;
use syncline_tests::live::{self, LiveClient};
use syncline_tests::service::{JWT_SECRET, Service, ServiceConfig};

fn token(tenant: &str, scope: Option<&str>) -> String {
    local_token(JWT_SECRET, tenant, scope, Duration::from_secs(3600)).expect("token")
}

async fn service() -> Service {
    Service::start(ServiceConfig::default()).await
}

async fn push_task(service: &Service, tenant: &str, client: &str, id: u64, record: &str) -> Value {
    let reply = service
        .client(
            tenant,
            "POST",
            "/v1/sync/push",
            json!({"client_id": client, "mutations": [
                {"id": id, "op": "upsert", "entity": "task", "record_id": record,
                 "data": {"title": format!("task {record}")}, "timestamp": Timestamp::now().as_millis()}]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body
}

async fn connect(service: &Service, token: &str) -> LiveClient {
    live::connect(&service.url, token)
        .await
        .expect("the handshake is accepted")
}

/// Connection items of any tenant left in the table (both kinds).
async fn connection_items(service: &Service) -> usize {
    let mut count = 0;
    let mut start = None;
    loop {
        let out = service
            .store
            .client()
            .scan()
            .table_name(service.store.table())
            .filter_expression("begins_with(pk, :ws) OR begins_with(sk, :ws)")
            .expression_attribute_values(
                ":ws",
                aws_sdk_dynamodb::types::AttributeValue::S("WS".into()),
            )
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan");
        count += out.items.unwrap_or_default().len();
        match out.last_evaluated_key {
            Some(key) => start = Some(key),
            None => return count,
        }
    }
}

async fn wait_for_items(service: &Service, expected: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let count = connection_items(service).await;
        if count == expected || Instant::now() > deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sockets the local run holds, once they reach `expected` (an
/// upgrade completes just after the client's handshake returns).
async fn open_sockets(service: &Service, expected: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = service.live.channel.open();
        if open == expected || Instant::now() > deadline {
            return open;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_push_pokes_the_tenants_sockets_with_a_cursor_that_covers_it() {
    let service = service().await;
    let mut by_query = connect(&service, &token("acme", None)).await;
    let mut browser = live::connect_as_browser(&service.url, &token("acme", None))
        .await
        .expect("the browser handshake is accepted");
    assert_eq!(browser.protocol.as_deref(), Some("syncline"));
    assert_eq!(by_query.protocol, None);

    let started = Instant::now();
    let pushed = push_task(&service, "acme", "phone-1", 1, "t1").await;
    let poke = by_query
        .next_poke(Duration::from_secs(2))
        .await
        .expect("a poke");
    let second = browser
        .next_poke(Duration::from_secs(2))
        .await
        .expect("a poke for the browser too");
    let latency = started.elapsed();

    assert_eq!(poke, second);
    let keys: Vec<&String> = poke.as_object().expect("an object").keys().collect();
    assert_eq!(keys, ["cursor"], "a poke carries the cursor only: {poke}");
    let cursor = poke["cursor"].as_str().expect("cursor");
    let covers = pushed["cursor"].as_str().expect("the push's cursor");
    assert!(cursor >= covers, "{cursor} covers the push at {covers}");
    assert!(latency < Duration::from_secs(1), "poked in {latency:?}");

    // The poke's cursor is where a pull from the start ends: the change is there.
    let pulled = service
        .client("acme", "POST", "/v1/sync/pull", json!({}))
        .await;
    let seq = |c: &Value| {
        syncline::model::Cursor::parse(c.as_str().expect("cursor"))
            .expect("a cursor")
            .seq()
    };
    assert_eq!(seq(&pulled.body["cursor"]), seq(&poke["cursor"]));
    assert_eq!(pulled.body["changes"][0]["id"], "t1");
}

#[tokio::test]
async fn a_bad_or_expired_token_is_refused_at_connect_and_stores_nothing() {
    let service = service().await;
    let expired = {
        let claims = json!({"sub": "u", "tenant": "acme", "exp": Timestamp::now().as_secs() - 120});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .expect("token")
    };
    let forged =
        local_token("another-secret", "acme", None, Duration::from_secs(60)).expect("token");
    let cases: Vec<(&str, Result<LiveClient, live::Refused>)> = vec![
        ("no token", live::connect_without_token(&service.url).await),
        ("garbage", live::connect(&service.url, "not-a-jwt").await),
        ("forged", live::connect(&service.url, &forged).await),
        ("expired", live::connect(&service.url, &expired).await),
        (
            "expired, as a browser",
            live::connect_as_browser(&service.url, &expired).await,
        ),
    ];
    for (case, outcome) in cases {
        let refused = outcome.err().unwrap_or_else(|| panic!("{case}: accepted"));
        assert_eq!(refused.status, 401, "{case}");
        assert_eq!(refused.body["error"]["code"], "unauthorized", "{case}");
    }
    assert_eq!(connection_items(&service).await, 0);
}

#[tokio::test]
async fn a_client_of_one_tenant_never_receives_a_poke_of_another() {
    let service = service().await;
    let mut acme = connect(&service, &token("acme", None)).await;
    let mut globex = connect(&service, &token("globex", None)).await;

    push_task(&service, "globex", "g-1", 1, "g1").await;
    assert!(globex.next_poke(Duration::from_secs(2)).await.is_some());
    assert_eq!(acme.next_poke(Duration::from_millis(1500)).await, None);

    push_task(&service, "acme", "a-1", 1, "a1").await;
    assert!(acme.next_poke(Duration::from_secs(2)).await.is_some());
    assert_eq!(globex.next_poke(Duration::from_millis(500)).await, None);
}

#[tokio::test]
async fn a_scoped_token_is_poked_only_for_entity_types_it_may_read() {
    let service = service().await;
    let mut notes_only = connect(&service, &token("acme", Some("sync:read:note"))).await;
    let mut nothing = connect(&service, &token("acme", Some("openid profile"))).await;
    let mut everything = connect(&service, &token("acme", None)).await;

    push_task(&service, "acme", "phone-1", 1, "t1").await;
    assert!(everything.next_poke(Duration::from_secs(2)).await.is_some());
    assert_eq!(
        notes_only.next_poke(Duration::from_millis(1000)).await,
        None
    );

    let reply = service
        .client(
            "acme",
            "POST",
            "/v1/sync/push",
            json!({"client_id": "phone-1", "mutations": [
                {"id": 2, "op": "upsert", "entity": "note", "record_id": "n1",
                 "data": {"body": "hello"}, "timestamp": 1}]}),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert!(notes_only.next_poke(Duration::from_secs(2)).await.is_some());
    assert!(everything.next_poke(Duration::from_secs(2)).await.is_some());
    assert_eq!(nothing.next_poke(Duration::from_millis(500)).await, None);
}

#[tokio::test]
async fn a_thousand_connections_opened_and_dropped_leave_no_items_behind() {
    let service = service().await;
    let token = token("acme", None);
    let mut clients = Vec::new();
    for _ in 0..10 {
        let batch =
            futures_util::future::join_all((0..100).map(|_| live::connect(&service.url, &token)))
                .await;
        clients.extend(batch.into_iter().map(|c| c.expect("accepted")));
    }
    assert_eq!(open_sockets(&service, 1000).await, 1000);
    // Two items per connection: under its tenant, and the lookup by id.
    assert_eq!(connection_items(&service).await, 2000);

    // Half leave with a close frame, half just vanish.
    for (index, client) in clients.into_iter().enumerate() {
        if index % 2 == 0 {
            client.close().await;
        } else {
            client.abandon();
        }
    }
    let left = wait_for_items(&service, 0, Duration::from_secs(20)).await;
    assert_eq!(left, 0, "connection items left behind");
    assert_eq!(open_sockets(&service, 0).await, 0);

    // A commit now pokes nobody and finds nothing to forget.
    push_task(&service, "acme", "phone-1", 1, "t1").await;
    assert_eq!(connection_items(&service).await, 0);
}

#[tokio::test]
async fn a_connection_ends_when_its_token_expires() {
    let service = service().await;
    // The token is accepted (30 s leeway for clocks) and ends in 2 s.
    let short = local_token(JWT_SECRET, "acme", None, Duration::from_secs(2)).expect("token");
    let mut client = connect(&service, &short).await;
    assert_eq!(connection_items(&service).await, 2);
    let stored = service
        .store
        .connections(&TenantId::parse("acme").expect("tenant"))
        .await
        .expect("connections");
    assert!(stored[0].expires_at <= Timestamp::now().plus(Duration::from_secs(3)));

    assert!(
        client.closed_within(Duration::from_secs(5)).await,
        "closed at expiry"
    );
    assert_eq!(wait_for_items(&service, 0, Duration::from_secs(5)).await, 0);
}

#[tokio::test]
async fn messages_from_clients_are_ignored_and_the_socket_stays_open() {
    let service = service().await;
    let mut client = connect(&service, &token("acme", None)).await;
    client.say("{\"action\": \"ping\"}").await;
    client.say("not json at all").await;
    push_task(&service, "acme", "phone-1", 1, "t1").await;
    assert!(client.next_poke(Duration::from_secs(2)).await.is_some());
}
