//! A fake destination API that records every request and can be told to
//! fail: answer a status for the next requests, or apply a request and then
//! lose the response (a 500 after the write). It honours `Idempotency-Key`
//! the way Stripe does (a repeated key gets the first answer, applies
//! nothing), gives created objects ids, and keeps the objects it holds.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    /// Statuses to answer, in order, before behaving normally.
    failures: Vec<u16>,
    /// Requests to apply and then answer 500 for.
    lose_responses: usize,
    /// Idempotency key -> the first answer.
    keys: HashMap<String, (u16, Value)>,
    /// Objects by id (what creates made, updates changed, deletes removed).
    objects: BTreeMap<String, Value>,
    /// Applied writes (creates, updates, deletes), idempotent repeats not counted.
    applied: usize,
    next_id: u64,
}

#[derive(Clone, Default)]
pub struct FakeApi(Arc<Mutex<Inner>>);

impl FakeApi {
    pub async fn start() -> (Self, SocketAddr) {
        let api = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().fallback(handle).with_state(api.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (api, addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().expect("fake api lock")
    }

    pub fn fail_next(&self, statuses: &[u16]) {
        self.lock().failures.extend_from_slice(statuses);
    }

    pub fn lose_next_responses(&self, n: usize) {
        self.lock().lose_responses += n;
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    pub fn objects(&self) -> BTreeMap<String, Value> {
        self.lock().objects.clone()
    }

    pub fn applied(&self) -> usize {
        self.lock().applied
    }

    /// An edit made in the destination's own system (not through its API's
    /// write routes): `changes` merged into object `id`.
    pub fn edit(&self, id: &str, changes: Value) {
        let mut inner = self.lock();
        if let (Some(Value::Object(object)), Value::Object(changes)) =
            (inner.objects.get_mut(id), changes)
        {
            object.extend(changes);
        }
    }
}

async fn handle(
    State(api): State<FakeApi>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received = Received {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let mut inner = api.lock();
    inner.received.push(received.clone());
    if !inner.failures.is_empty() {
        let status = inner.failures.remove(0);
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (
            code,
            axum::Json(json!({"error": {"message": format!("refused with {status}")}})),
        )
            .into_response();
        if status == 429 {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        return response;
    }
    let key = received.headers.get("idempotency-key").cloned();
    if let Some(key) = &key
        && let Some((status, answer)) = inner.keys.get(key).cloned()
    {
        return (
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            axum::Json(answer),
        )
            .into_response();
    }
    let parsed: Value = serde_json::from_str(&received.body).unwrap_or_else(|_| {
        // A form body: kept as its pairs.
        Value::Object(
            received
                .body
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
                .collect(),
        )
    });
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let answer = match method {
        Method::POST => {
            inner.next_id += 1;
            let id = format!("obj_{}", inner.next_id);
            let mut object = parsed;
            object["id"] = json!(id);
            inner.objects.insert(id.clone(), object.clone());
            inner.applied += 1;
            if uri.path().starts_with("/api/v2.1/") {
                // Zoho Creator's answer to an added record.
                json!({"code": 3000, "data": {"ID": id}, "message": "success"})
            } else {
                object
            }
        }
        Method::PATCH | Method::PUT => {
            let id = segments.last().copied().unwrap_or_default().to_owned();
            let Some(object) = inner.objects.get_mut(&id) else {
                return (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"error": "not found"})),
                )
                    .into_response();
            };
            if let (Value::Object(object), Value::Object(changes)) = (object, parsed) {
                object.extend(changes);
            }
            inner.applied += 1;
            inner.objects.get(&id).cloned().unwrap_or_default()
        }
        Method::GET => {
            // A listing (a source's pull): every object, not recorded as a write.
            inner.received.pop();
            return axum::Json(
                json!({"items": inner.objects.values().cloned().collect::<Vec<_>>()}),
            )
            .into_response();
        }
        Method::DELETE => {
            let id = segments.last().copied().unwrap_or_default().to_owned();
            if inner.objects.remove(&id).is_none() {
                return (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"error": "not found"})),
                )
                    .into_response();
            }
            inner.applied += 1;
            json!({})
        }
        _ => json!({}),
    };
    if let Some(key) = key {
        inner.keys.insert(key, (200, answer.clone()));
    }
    if inner.lose_responses > 0 {
        inner.lose_responses -= 1;
        return (StatusCode::INTERNAL_SERVER_ERROR, "lost").into_response();
    }
    axum::Json(answer).into_response()
}
