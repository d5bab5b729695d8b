//! The deployed real-time path, with only AWS's own endpoints stood in for:
//! the realtime function's WebSocket routes (the sample events), and the
//! delivery function poking through API Gateway's management API, whose
//! requests are checked against what the SDK sends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use syncline::config::Config;
use syncline::lambda::delivery::handle_delivery;
use syncline::lambda::realtime::handle_socket;
use syncline::model::{EntityType, RecordId, TenantId, Timestamp};
use syncline::retry::RetryPolicy;
use syncline::runtime::Adapters;
use syncline::store::{Change, Expect, RecordWrite};
use syncline::wiring::Wiring;
use syncline_local::run::local_token;
use syncline_tests::service::{JWT_SECRET, repo_root};
use syncline_tests::{TestStore, data, test_store};

/// One request the fake management API received.
#[derive(Debug, Clone)]
struct Received {
    method: Method,
    path: String,
    authorization: String,
    body: Vec<u8>,
}

/// API Gateway's management API for one stage: 410 GoneException for the
/// connections in `gone`, 200 otherwise.
#[derive(Clone, Default)]
struct FakeGateway {
    received: Arc<Mutex<Vec<Received>>>,
    gone: Arc<Mutex<Vec<String>>>,
}

impl FakeGateway {
    async fn start(&self) -> String {
        let fake = self.clone();
        let app =
            axum::Router::new().fallback(
                move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                    let fake = fake.clone();
                    async move {
                        let path = uri.path().to_owned();
                        fake.received.lock().expect("lock").push(Received {
                            method,
                            path: path.clone(),
                            authorization: headers
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned(),
                            body: body.to_vec(),
                        });
                        let gone =
                            fake.gone.lock().expect("lock").iter().any(|id| {
                                path.ends_with(&format!("/@connections/{}", urlencode(id)))
                            });
                        if gone {
                            (
                                StatusCode::GONE,
                                [("x-amzn-errortype", "GoneException")],
                                r#"{"message": "Gone"}"#,
                            )
                        } else {
                            (StatusCode::OK, [("x-amzn-errortype", "")], "")
                        }
                    }
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        format!("http://{addr}/prod")
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

fn urlencode(id: &str) -> String {
    id.replace('=', "%3D")
        .replace('+', "%2B")
        .replace('/', "%2F")
}

fn sample(name: &str, token: &str) -> ApiGatewayWebsocketProxyRequest {
    let path = format!("{}/events/realtime/{name}.json", repo_root());
    let text = std::fs::read_to_string(path)
        .expect("sample")
        .replace("{{token}}", token);
    serde_json::from_str(&text).expect("a WebSocket event")
}

struct Rig {
    adapters: Adapters,
    gateway: FakeGateway,
    endpoint: String,
    _store: TestStore,
}

async fn rig() -> Rig {
    let store = test_store().await;
    let sdk = store.engine.sdk_config().await;
    let config =
        Config::from_vars(|name| (name == "SYNCLINE_TABLE").then(|| "syncline-test".to_owned()))
            .expect("config");
    let adapters = Adapters::with_store(&config, &sdk, store.store.clone())
        .await
        .expect("adapters");
    let gateway = FakeGateway::default();
    let endpoint = gateway.start().await;
    Rig {
        adapters,
        gateway,
        endpoint,
        _store: store,
    }
}

impl Rig {
    fn vars(&self) -> HashMap<&'static str, String> {
        HashMap::from([
            ("SYNCLINE_JWT_HS256_SECRET", JWT_SECRET.to_owned()),
            ("SYNCLINE_WEBSOCKET_ENDPOINT", self.endpoint.clone()),
        ])
    }

    async fn socket(&self, name: &str, token: &str) -> (i64, HeaderMap, Value) {
        let vars = self.vars();
        let var = move |name: &str| vars.get(name).cloned();
        let realtime = Wiring::new(&self.adapters, &var, RetryPolicy::default())
            .realtime()
            .expect("realtime");
        let response = handle_socket(
            &realtime,
            LambdaEvent::new(sample(name, token), Context::default()),
        )
        .await
        .expect("a response");
        let body = match response.body {
            Some(aws_lambda_events::encodings::Body::Text(text)) => {
                serde_json::from_str(&text).expect("JSON")
            }
            _ => Value::Null,
        };
        (response.status_code, response.headers, body)
    }

    async fn connections(&self, tenant: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .adapters
            .store
            .connections(&TenantId::parse(tenant).expect("tenant"))
            .await
            .expect("connections")
            .into_iter()
            .map(|c| c.id)
            .collect();
        ids.sort();
        ids
    }

    /// A committed task of `tenant`, as the sample stream batch names it.
    async fn write_task(&self, tenant: &TenantId) {
        self.adapters
            .store
            .put_record(
                tenant,
                RecordWrite {
                    entity: EntityType::parse("task").expect("entity"),
                    id: RecordId::parse("t1").expect("id"),
                    change: Change::Put(data(json!({"title": "x"}))),
                    expect: Expect::Absent,
                    source: None,
                    origin: None,
                    source_version: None,
                },
            )
            .await
            .expect("write");
    }

    async fn deliver(&self, event: Value) -> Value {
        let vars = self.vars();
        let var = move |name: &str| vars.get(name).cloned();
        let delivery = Wiring::new(&self.adapters, &var, RetryPolicy::default())
            .delivery()
            .expect("delivery with only a WebSocket endpoint");
        handle_delivery(
            &delivery.engine,
            delivery.poker.as_ref(),
            LambdaEvent::new(event, Context::default()),
        )
        .await
        .expect("delivered")
    }
}

fn token(tenant: &str) -> String {
    local_token(JWT_SECRET, tenant, None, Duration::from_secs(3600)).expect("token")
}

#[tokio::test]
async fn the_sample_websocket_events_connect_message_and_disconnect() {
    let rig = rig().await;
    let (status, _, _) = rig.socket("connect", &token("demo")).await;
    assert_eq!(status, 200);
    let (status, headers, _) = rig.socket("connect-browser", &token("demo")).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("syncline"),
        "a browser that offered the protocol gets it back"
    );
    assert_eq!(
        rig.connections("demo").await,
        ["L0SM9cOFvHcCIhw=", "M1TN0dPGwIdDJix="]
    );

    let (status, _, body) = rig.socket("connect-no-token", "").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _, body) = rig.socket("connect", "forged.token.here").await;
    assert_eq!(status, 401, "{body}");

    let (status, _, _) = rig.socket("message", "").await;
    assert_eq!(status, 200);

    let (status, _, _) = rig.socket("disconnect", "").await;
    assert_eq!(status, 200);
    assert_eq!(rig.connections("demo").await, ["M1TN0dPGwIdDJix="]);
    // A second disconnect of the same connection is fine.
    let (status, _, _) = rig.socket("disconnect", "").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_stream_batch_pokes_through_the_management_api_and_forgets_gone_connections() {
    let rig = rig().await;
    rig.socket("connect", &token("demo")).await;
    rig.socket("connect-browser", &token("demo")).await;
    // Another tenant's connection is never poked by demo's changes.
    let mut other = sample("connect", &token("globex"));
    other.request_context.connection_id = Some("O3VP2fRIyKfFLkz=".into());
    let vars = rig.vars();
    let var = move |name: &str| vars.get(name).cloned();
    let realtime = Wiring::new(&rig.adapters, &var, RetryPolicy::default())
        .realtime()
        .expect("realtime");
    handle_socket(&realtime, LambdaEvent::new(other, Context::default()))
        .await
        .expect("connected");
    rig.gateway
        .gone
        .lock()
        .expect("lock")
        .push("M1TN0dPGwIdDJix=".into());

    let demo = TenantId::parse("demo").expect("tenant");
    rig.write_task(&demo).await;
    let seq = rig.adapters.store.latest_seq(&demo).await.expect("seq");

    let stream = syncline_tests::service::sample("delivery/stream.json");
    let output = rig.deliver(stream).await;
    assert_eq!(output["pokes"]["sent"], 1, "{output}");
    assert_eq!(output["pokes"]["gone"], 1, "{output}");

    let received = rig.gateway.received();
    assert_eq!(received.len(), 2, "{received:?}");
    for request in &received {
        assert_eq!(request.method, Method::POST);
        assert!(
            request.path.starts_with("/prod/@connections/"),
            "{}",
            request.path
        );
        assert!(
            request.authorization.starts_with("AWS4-HMAC-SHA256 ")
                && request.authorization.contains("/execute-api/aws4_request"),
            "signed for execute-api: {}",
            request.authorization
        );
        let poke: Value = serde_json::from_slice(&request.body).expect("a JSON poke");
        let cursor = syncline::model::Cursor::parse(poke["cursor"].as_str().expect("cursor"))
            .expect("a cursor");
        assert_eq!(cursor.seq(), seq);
    }
    let mut paths: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/prod/@connections/L0SM9cOFvHcCIhw%3D",
            "/prod/@connections/M1TN0dPGwIdDJix%3D"
        ]
    );
    // The gone connection is forgotten; globex's was never touched.
    assert_eq!(rig.connections("demo").await, ["L0SM9cOFvHcCIhw="]);
    assert_eq!(rig.connections("globex").await, ["O3VP2fRIyKfFLkz="]);

    // The schedule's event pokes nobody.
    let before = rig.gateway.received().len();
    let output = rig
        .deliver(syncline_tests::service::sample("delivery/schedule.json"))
        .await;
    assert_eq!(output["pokes"]["sent"], 0);
    assert_eq!(rig.gateway.received().len(), before);
}

#[tokio::test]
async fn an_expired_connection_is_closed_through_the_management_api_and_forgotten() {
    let rig = rig().await;
    let short = local_token(JWT_SECRET, "demo", None, Duration::from_secs(1)).expect("token");
    rig.socket("connect", &short).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let demo = TenantId::parse("demo").expect("tenant");
    assert!(
        rig.adapters.store.connections(&demo).await.expect("c")[0].expires_at <= Timestamp::now()
    );
    rig.write_task(&demo).await;
    let output = rig
        .deliver(syncline_tests::service::sample("delivery/stream.json"))
        .await;
    assert_eq!(output["pokes"]["expired"], 1, "{output}");
    assert_eq!(output["pokes"]["sent"], 0, "{output}");
    let received = rig.gateway.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, Method::DELETE);
    assert_eq!(received[0].path, "/prod/@connections/L0SM9cOFvHcCIhw%3D");
    assert!(rig.connections("demo").await.is_empty());
}
