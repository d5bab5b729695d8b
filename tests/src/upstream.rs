//! A fake REST upstream on 127.0.0.1 that speaks the page shapes of every
//! pagination style and preset syncline supports, with injectable faults.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// What the next request gets instead of its page.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    TooManyRequests {
        retry_after_secs: u64,
    },
    ServerError,
    /// Answers after this long (longer than the client's timeout).
    Slow(Duration),
    /// A truncated JSON body.
    Malformed,
}

#[derive(Debug, Default)]
pub struct UpstreamState {
    /// Items by id, as the upstream stores them.
    pub items: Mutex<BTreeMap<String, Value>>,
    pub faults: Mutex<VecDeque<Fault>>,
    /// Every request's path and query, in order.
    pub requests: Mutex<Vec<String>>,
    /// Every request's credentials (`authorization` or `x-api-key`).
    pub credentials: Mutex<Vec<String>>,
    /// Google-style sync tokens answer 410 while set.
    pub tokens_expired: Mutex<bool>,
    /// Modification counter for sync tokens, and each item's revision.
    pub revision: Mutex<(u64, HashMap<String, u64>)>,
}

impl UpstreamState {
    pub fn put(&self, id: &str, item: Value) {
        self.items.lock().expect("lock").insert(id.to_owned(), item);
        let mut revision = self.revision.lock().expect("lock");
        revision.0 += 1;
        let current = revision.0;
        revision.1.insert(id.to_owned(), current);
    }

    pub fn remove(&self, id: &str) {
        self.items.lock().expect("lock").remove(id);
    }

    pub fn fault(&self, fault: Fault) {
        self.faults.lock().expect("lock").push_back(fault);
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }
}

pub struct Upstream {
    pub url: String,
    pub state: Arc<UpstreamState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl Upstream {
    pub async fn start() -> Self {
        let state = Arc::new(UpstreamState::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let app = Router::new().fallback(serve).with_state(state.clone());
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop.await;
                })
                .await;
        });
        Self {
            url,
            state,
            shutdown: Some(shutdown),
        }
    }
}

fn param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        let k = k.replace("%5B", "[").replace("%5D", "]");
        (k == name).then(|| v.replace("%3A", ":").replace("%2B", "+"))
    })
}

fn number(uri: &Uri, name: &str, default: usize) -> usize {
    param(uri, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn later_or_equal(value: Option<&Value>, since: &str) -> bool {
    match value {
        Some(Value::String(s)) => s.as_str() >= since,
        Some(Value::Number(n)) => since
            .parse::<i64>()
            .is_ok_and(|s| n.as_i64().unwrap_or(0) >= s),
        _ => true,
    }
}

async fn serve(
    axum::extract::State(state): axum::extract::State<Arc<UpstreamState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.requests.lock().expect("lock").push(
        uri.path_and_query()
            .map_or_else(String::new, |p| p.to_string()),
    );
    for name in ["authorization", "x-api-key"] {
        if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
            state
                .credentials
                .lock()
                .expect("lock")
                .push(format!("{name}: {value}"));
        }
    }
    if method == Method::POST && uri.path() == "/oauth/token" {
        let form = String::from_utf8_lossy(&body).to_string();
        let ok =
            form.contains("grant_type=client_credentials") && form.contains("client_secret=s3cret");
        return if ok {
            axum::Json(
                json!({"access_token": "tok-123", "token_type": "bearer", "expires_in": 3600}),
            )
            .into_response()
        } else {
            StatusCode::UNAUTHORIZED.into_response()
        };
    }
    let fault = state.faults.lock().expect("lock").pop_front();
    match fault {
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let mut response = StatusCode::TOO_MANY_REQUESTS.into_response();
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(retry_after_secs));
            return response;
        }
        Some(Fault::ServerError) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Some(Fault::Slow(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::Malformed) => {
            return (
                StatusCode::OK,
                [("content-type", "application/json")],
                "{\"data\": [{\"id\":",
            )
                .into_response();
        }
        None => {}
    }
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let items: Vec<(String, Value)> = state
        .items
        .lock()
        .expect("lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let path = uri.path().to_owned();
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // A page of `items` after position `from`, `size` long.
    let slice = |list: &[Value], from: usize, size: usize| -> (Vec<Value>, bool) {
        let end = (from + size).min(list.len());
        (
            list.get(from..end)
                .map(<[Value]>::to_vec)
                .unwrap_or_default(),
            end < list.len(),
        )
    };
    let filtered = |field: &str, since: Option<String>| -> Vec<Value> {
        items
            .iter()
            .map(|(_, v)| v.clone())
            .filter(|v| {
                since
                    .as_ref()
                    .is_none_or(|s| later_or_equal(v.get(field), s))
            })
            .collect()
    };
    let position = |list: &[Value], field: &str, after: Option<String>| -> usize {
        after.map_or(0, |a| {
            list.iter()
                .position(|v| v[field].as_str() == Some(a.as_str()))
                .map_or(list.len(), |p| p + 1)
        })
    };
    match (method, path.as_str()) {
        (Method::GET, "/cursor") => {
            let list = filtered("updated_at", param(&uri, "updated_since"));
            let size = number(&uri, "limit", 10);
            let from = position(&list, "id", param(&uri, "cursor"));
            let (page, more) = slice(&list, from, size);
            let next = more.then(|| page.last().map(|v| v["id"].clone())).flatten();
            axum::Json(json!({"data": page, "next_cursor": next})).into_response()
        }
        (Method::GET, "/next") => {
            let list = filtered("updated_at", param(&uri, "updated_since"));
            let size = number(&uri, "limit", 10);
            let page_no = number(&uri, "page", 1);
            let (page, more) = slice(&list, (page_no - 1) * size, size);
            let next = more.then(|| format!("/next?page={}&limit={size}", page_no + 1));
            axum::Json(json!({"data": page, "links": {"next": next}})).into_response()
        }
        (Method::GET, "/link") => {
            let list = filtered("updated_at", param(&uri, "updated_since"));
            let size = number(&uri, "limit", 10);
            let page_no = number(&uri, "page", 1);
            let (page, more) = slice(&list, (page_no - 1) * size, size);
            let mut response = axum::Json(json!(page)).into_response();
            if more {
                let link = format!(
                    "<http://{host}/link?page={}&limit={size}>; rel=\"next\"",
                    page_no + 1
                );
                response
                    .headers_mut()
                    .insert("link", HeaderValue::from_str(&link).expect("header"));
            }
            response
        }
        (Method::GET, "/page") => {
            let list = filtered("updated_at", param(&uri, "updated_since"));
            let size = number(&uri, "per_page", 10);
            let page_no = number(&uri, "page", 1);
            let (page, _) = slice(&list, (page_no - 1) * size, size);
            axum::Json(json!({"data": page})).into_response()
        }
        (Method::GET, "/offset") => {
            let list = filtered("updated_at", param(&uri, "updated_since"));
            let size = number(&uri, "limit", 10);
            let (page, _) = slice(&list, number(&uri, "offset", 0), size);
            axum::Json(json!({"data": page})).into_response()
        }
        (Method::GET, "/scheduled_events") => {
            let list = filtered("updated_at", None);
            let size = number(&uri, "count", 20);
            let from = number(&uri, "page_token", 0);
            let (page, more) = slice(&list, from, size);
            let next = more.then(|| {
                format!(
                    "http://{host}/scheduled_events?count={size}&page_token={}",
                    from + size
                )
            });
            axum::Json(
                json!({"collection": page, "pagination": {"count": page.len(), "next_page": next}}),
            )
            .into_response()
        }
        (Method::GET, "/v1/payment_intents") => {
            let list = filtered("created", param(&uri, "created[gte]"));
            let size = number(&uri, "limit", 10);
            let from = position(&list, "id", param(&uri, "starting_after"));
            let (page, more) = slice(&list, from, size);
            axum::Json(json!({"object": "list", "data": page, "has_more": more, "url": "/v1/payment_intents"})).into_response()
        }
        (Method::GET, p) if p.starts_with("/api/v2.1/") => {
            let list = filtered("Modified_Time", None);
            let size = number(&uri, "max_records", 200);
            let from = headers
                .get("record_cursor")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let (page, more) = slice(&list, from, size);
            let mut response = axum::Json(json!({"code": 3000, "data": page})).into_response();
            if more {
                response
                    .headers_mut()
                    .insert("record_cursor", HeaderValue::from(from + size));
            }
            response
        }
        (Method::POST, p) if p.starts_with("/v1/databases/") => {
            let since = json_body
                .pointer("/filter/last_edited_time/on_or_after")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let list = filtered("last_edited_time", since);
            let size = json_body["page_size"].as_u64().unwrap_or(100) as usize;
            let from = json_body["start_cursor"]
                .as_str()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let (page, more) = slice(&list, from, size);
            let next = more.then(|| (from + size).to_string());
            axum::Json(
                json!({"object": "list", "results": page, "next_cursor": next, "has_more": more}),
            )
            .into_response()
        }
        (Method::GET, p) if p.starts_with("/calendar/v3/") => {
            let size = number(&uri, "maxResults", 250);
            let (current, revisions) = state.revision.lock().expect("lock").clone();
            let list: Vec<Value> = match param(&uri, "syncToken") {
                Some(token) => {
                    if *state.tokens_expired.lock().expect("lock") {
                        return StatusCode::GONE.into_response();
                    }
                    let since: u64 = token.trim_start_matches('v').parse().unwrap_or(0);
                    items
                        .iter()
                        .filter(|(id, _)| revisions.get(id).is_some_and(|r| *r > since))
                        .map(|(_, v)| v.clone())
                        .collect()
                }
                None => items
                    .iter()
                    .map(|(_, v)| v.clone())
                    .filter(|v| v["status"] != json!("cancelled"))
                    .collect(),
            };
            let from = param(&uri, "pageToken")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let (page, more) = slice(&list, from, size);
            let mut body = json!({"kind": "calendar#events", "items": page});
            if more {
                body["nextPageToken"] = json!((from + size).to_string());
            } else {
                body["nextSyncToken"] = json!(format!("v{current}"));
            }
            axum::Json(body).into_response()
        }
        (Method::GET, p) if p.starts_with("/items/") => {
            let id = &p["/items/".len()..];
            match items.iter().find(|(k, _)| k == id) {
                Some((_, item)) => axum::Json(item.clone()).into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}
