//! The whole of syncline as `syncline-local up` runs it (every function
//! behind one HTTP port on 127.0.0.1, one embedded store, the retry queue),
//! driven over HTTP the way a user's curl would.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use syncline::auth::AuthConfig;
use syncline::queue::RetryQueue;
use syncline::retry::RetryPolicy;
use syncline_local::embedded::Storage;
use syncline_local::run::{Running, Schedules, UpSettings, local_token, local_var};

/// The repository root, where the sample configuration lives.
pub fn repo_root() -> String {
    format!("{}/..", env!("CARGO_MANIFEST_DIR"))
}

/// What a test service is started with; unset documents fall back to the
/// samples in `events/` (the local defaults).
#[derive(Default)]
pub struct ServiceConfig {
    pub sources: Option<Value>,
    pub webhook_sources: Option<Value>,
    pub entities: Option<Value>,
    pub destinations: Option<Value>,
    /// Variables seen by the configuration (secrets named by the documents).
    pub vars: Vec<(&'static str, String)>,
    pub schedules: Option<Schedules>,
    /// A retry queue other than the local one (SQS on moto).
    pub queue: Option<Arc<dyn RetryQueue>>,
    /// A retry policy other than the default (short delays for tests).
    pub retry: Option<RetryPolicy>,
    /// A proxy every store request goes through (faults, latency).
    pub store_proxy: Option<crate::faults::FaultProxy>,
}

/// Schedules that only drain the retry queue (every 200 ms): syncs,
/// checks and deliveries wait for the test.
pub fn drain_only() -> Schedules {
    Schedules {
        sync_every: None,
        check_every: None,
        drain_every: std::time::Duration::from_millis(200),
        deliver_every: None,
    }
}

pub const JWT_SECRET: &str = "syncline-local-jwt-secret";

/// A running service and an HTTP client for it.
pub struct Service {
    pub running: Running,
    pub url: String,
    client: reqwest::Client,
}

impl std::ops::Deref for Service {
    type Target = syncline_local::run::Functions;
    fn deref(&self) -> &Self::Target {
        &self.running.functions
    }
}

/// A response: status and JSON body (null when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Service {
    pub async fn start(config: ServiceConfig) -> Self {
        let root = repo_root();
        let mut vars: HashMap<String, String> = HashMap::new();
        for (name, value) in [
            ("SYNCLINE_SOURCES", config.sources.as_ref()),
            ("SYNCLINE_WEBHOOK_SOURCES", config.webhook_sources.as_ref()),
            ("SYNCLINE_ENTITIES", config.entities.as_ref()),
            ("SYNCLINE_DESTINATIONS", config.destinations.as_ref()),
        ] {
            if let Some(value) = value {
                vars.insert(name.to_owned(), value.to_string());
            }
        }
        for (name, value) in &config.vars {
            vars.insert((*name).to_owned(), value.clone());
        }
        // The local defaults name files relative to the repository root.
        let var = move |name: &str| -> Option<String> {
            if let Some(value) = vars.get(name) {
                return Some(value.clone());
            }
            let base = name.strip_suffix("_FILE").unwrap_or(name);
            if vars.contains_key(base) {
                return None;
            }
            local_var(name).map(|value| {
                if name.ends_with("_FILE") {
                    format!("{root}/{value}")
                } else {
                    value
                }
            })
        };
        let settings = UpSettings {
            storage: Storage::Memory,
            store_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            auth: AuthConfig {
                hs256_secret: Some(JWT_SECRET.into()),
                tenant_claim: "tenant".into(),
                ..AuthConfig::default()
            },
            retry: config.retry.unwrap_or_default(),
            schedules: config.schedules,
            queue: config.queue,
            store_front: config.store_proxy.map(|proxy| {
                syncline_local::run::StoreFront(std::sync::Arc::new(move |engine: &str| {
                    proxy.forward_to(engine);
                    proxy.url()
                }))
            }),
        };
        let running = syncline_local::run::up(settings, &var, |_| {})
            .await
            .expect("the local service starts");
        Self {
            url: format!("http://{}", running.http),
            running,
            client: reqwest::Client::new(),
        }
    }

    /// A client token for `tenant`.
    pub fn token(tenant: &str) -> String {
        local_token(JWT_SECRET, tenant, None, Duration::from_secs(3600)).expect("token")
    }

    /// The local run over the demo source with `records` properties (not
    /// synced yet).
    pub async fn with_demo(records: usize) -> Self {
        let demo = syncline_local::demo::serve(SocketAddr::from(([127, 0, 0, 1], 0)), records)
            .await
            .expect("demo");
        Self::start(ServiceConfig {
            sources: Some(crate::demo_sources(demo)),
            ..ServiceConfig::default()
        })
        .await
    }

    /// An admin token for `tenant`.
    pub fn admin_token(tenant: &str) -> String {
        local_token(JWT_SECRET, tenant, Some("admin"), Duration::from_secs(3600)).expect("token")
    }

    /// One HTTP request with optional bearer token, extra headers and body.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("the local service answers");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        Reply {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    /// A JSON request as `tenant`'s client.
    pub async fn client(&self, tenant: &str, method: &str, path: &str, body: Value) -> Reply {
        let body = (!body.is_null()).then(|| body.to_string());
        self.send(method, path, Some(&Self::token(tenant)), &[], body)
            .await
    }

    /// A push of `client` in tenant demo, answered 200; its results.
    pub async fn push(&self, client: &str, mutations: Value) -> Vec<Value> {
        let reply = self.try_push(client, &mutations).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body["results"].as_array().expect("results").clone()
    }

    /// A push of `client` in tenant demo, whatever the answer.
    pub async fn try_push(&self, client: &str, mutations: &Value) -> Reply {
        self.client(
            "demo",
            "POST",
            "/v1/sync/push",
            json!({"client_id": client, "mutations": mutations}),
        )
        .await
    }

    /// A JSON request as `tenant`'s operator.
    pub async fn admin(&self, method: &str, path: &str, body: Value) -> Reply {
        let body = (!body.is_null()).then(|| body.to_string());
        self.send(method, path, Some(&Self::admin_token("demo")), &[], body)
            .await
    }

    /// An invocation through the Lambda Invoke API, as `cargo lambda invoke`
    /// sends it.
    pub async fn invoke(&self, function: &str, event: Value) -> Reply {
        self.send(
            "POST",
            &format!("/2015-03-31/functions/{function}/invocations"),
            None,
            &[],
            Some(event.to_string()),
        )
        .await
    }

    /// An API Gateway sample event from `events/` replayed as HTTP: same
    /// method, path, query, headers and body.
    pub async fn replay(&self, event: &Value) -> Reply {
        let method = event["requestContext"]["http"]["method"]
            .as_str()
            .expect("method");
        let mut path = event["rawPath"].as_str().expect("rawPath").to_owned();
        if let Some(query) = event["rawQueryString"].as_str().filter(|q| !q.is_empty()) {
            path = format!("{path}?{query}");
        }
        let headers: Vec<(String, String)> = event["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let body = event["body"].as_str().map(|body| {
            if event["isBase64Encoded"] == json!(true) {
                use base64::Engine as _;
                String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(body)
                        .expect("base64 body"),
                )
                .expect("utf-8 body")
            } else {
                body.to_owned()
            }
        });
        self.send(method, &path, None, &headers, body).await
    }

    /// Feeds the retry queue to the retry worker until it is empty.
    pub async fn drain_queue(&self) -> usize {
        self.running.functions.drain().await.expect("drain")
    }

    /// [`Service::drain_queue`] while the store may fail: a failed drain
    /// counts as one message still to handle.
    pub async fn drain_queue_lenient(&self) -> usize {
        self.running.functions.drain().await.unwrap_or(1)
    }
}

/// A sample event file from `events/`.
pub fn sample(path: &str) -> Value {
    let full = format!("{}/events/{path}", repo_root());
    serde_json::from_str(&std::fs::read_to_string(&full).expect("sample")).expect("sample json")
}

/// A configuration document of a scenario in `docs/scenarios/<scenario>/`,
/// with the demo source's documented address replaced by `demo`'s.
pub fn scenario_document(scenario: &str, file: &str, demo: SocketAddr) -> Value {
    let path = format!("{}/docs/scenarios/{scenario}/{file}", repo_root());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let text = text.replace("http://127.0.0.1:8090", &format!("http://{demo}"));
    serde_json::from_str(&text).expect("scenario json")
}

/// The bundled demo source with `counts`, on a free port.
pub async fn demo_source(counts: syncline_local::demo::DemoCounts) -> SocketAddr {
    syncline_local::demo::serve_demo(SocketAddr::from(([127, 0, 0, 1], 0)), counts)
        .await
        .expect("demo source")
}

/// A control request to the demo source (`/_demo/...`).
pub async fn demo_control(demo: SocketAddr, path: &str, body: Value) -> Value {
    reqwest::Client::new()
        .post(format!("http://{demo}/_demo/{path}"))
        .json(&body)
        .send()
        .await
        .expect("demo control")
        .json()
        .await
        .expect("demo control json")
}

impl Service {
    /// Every change of `entity` visible to `tenant`, pulled page by page.
    pub async fn pull_all(&self, tenant: &str, entity: &str) -> Vec<Value> {
        let mut changes = Vec::new();
        let mut cursor = Value::Null;
        loop {
            let mut body = json!({"entities": [entity], "limit": 500});
            if !cursor.is_null() {
                body["cursor"] = cursor.clone();
            }
            let reply = self.client(tenant, "POST", "/v1/sync/pull", body).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            changes.extend(reply.body["changes"].as_array().expect("changes").clone());
            cursor = reply.body["cursor"].clone();
            if reply.body["has_more"] != json!(true) {
                return changes;
            }
        }
    }

    /// The live record `entity/id` as the last pull shows it.
    pub async fn pulled(&self, tenant: &str, entity: &str, id: &str) -> Option<Value> {
        self.pull_all(tenant, entity)
            .await
            .into_iter()
            .rev()
            .find(|c| c["id"] == json!(id))
            .filter(|c| c["deleted"] != json!(true))
    }

    /// The newest run log of `source`.
    pub async fn last_run(&self, source: &str) -> Value {
        let runs = self
            .admin(
                "GET",
                &format!("/v1/admin/runs?source={source}&limit=1"),
                Value::Null,
            )
            .await;
        assert_eq!(runs.status, 200, "{}", runs.body);
        runs.body["runs"][0].clone()
    }
}

impl Service {
    /// The service with a scenario's configuration from
    /// `docs/scenarios/<scenario>/` (`sources.json`, `webhook-sources.json`,
    /// `entities.json`, each when present; the samples otherwise), against
    /// the demo source at `demo`.
    pub async fn scenario(scenario: &str, demo: SocketAddr) -> Self {
        let load = |file: &str| {
            std::path::Path::new(&format!("{}/docs/scenarios/{scenario}/{file}", repo_root()))
                .exists()
                .then(|| scenario_document(scenario, file, demo))
        };
        Self::start(ServiceConfig {
            sources: load("sources.json"),
            webhook_sources: load("webhook-sources.json"),
            entities: load("entities.json"),
            ..ServiceConfig::default()
        })
        .await
    }
}
