//! Fetching pages from a declarative HTTP JSON source: requests with auth,
//! pagination, the incremental lower bound, a token-bucket rate limit that
//! honours `Retry-After`, and exponential backoff with jitter on 429, 5xx,
//! timeouts and malformed pages.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;

use super::spec::{AuthSpec, Pagination, SourceSpec};
use crate::error::{Error, Result};

/// Where the next request goes; checkpointed between invocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageState {
    First,
    Cursor(String),
    Url(String),
    Number(u64),
    Offset(u64),
}

/// One fetched page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Value>,
    pub next: Option<PageState>,
    /// The token for the next incremental run (sync-token sources).
    pub sync_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    Page(Page),
    /// The source no longer honours our sync token (HTTP 410): resync.
    Gone,
}

/// What a run asks for besides the page.
#[derive(Debug, Clone, Default)]
pub struct Bounds {
    /// Incremental lower bound, already formatted for the source.
    pub since: Option<String>,
    pub sync_token: Option<String>,
}

const MAX_ATTEMPTS: u32 = 6;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Set by a 429's Retry-After: nothing goes out before then.
    paused_until: Option<Instant>,
}

pub struct HttpSource {
    spec: SourceSpec,
    client: super::SourceClient,
    /// Resolved auth header (name, value), or the OAuth2 client secret.
    auth: Option<(String, String)>,
    oauth_secret: Option<String>,
    bucket: Mutex<Bucket>,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource")
            .field("base_url", &self.spec.base_url)
            .finish_non_exhaustive()
    }
}

fn upstream(reason: impl Into<String>, retryable: bool) -> Error {
    Error::Upstream {
        service: "source".into(),
        reason: reason.into(),
        retryable,
    }
}

impl HttpSource {
    /// `secret` resolves the secrets the auth spec names.
    pub fn new(
        spec: SourceSpec,
        client: impl Into<super::SourceClient>,
        secret: impl Fn(&crate::webhooks::SecretRef) -> Result<String>,
    ) -> Result<Self> {
        let (auth, oauth_secret) = match &spec.auth {
            None => (None, None),
            Some(AuthSpec::Bearer { token }) => (
                Some(("authorization".into(), format!("Bearer {}", secret(token)?))),
                None,
            ),
            Some(AuthSpec::ApiKey { header, value }) => {
                (Some((header.clone(), secret(value)?)), None)
            }
            Some(AuthSpec::Basic { username, password }) => {
                let pair = format!("{username}:{}", secret(password)?);
                (
                    Some((
                        "authorization".into(),
                        format!("Basic {}", BASE64.encode(pair)),
                    )),
                    None,
                )
            }
            Some(AuthSpec::Header {
                header,
                prefix,
                value,
            }) => (
                Some((header.clone(), format!("{prefix}{}", secret(value)?))),
                None,
            ),
            Some(AuthSpec::Oauth2 { client_secret, .. }) => (None, Some(secret(client_secret)?)),
        };
        let burst = spec.requests_per_second.max(1.0);
        Ok(Self {
            spec,
            client: client.into(),
            auth,
            oauth_secret,
            bucket: Mutex::new(Bucket {
                tokens: burst,
                refilled: Instant::now(),
                paused_until: None,
            }),
        })
    }

    pub fn spec(&self) -> &SourceSpec {
        &self.spec
    }

    /// The same source with an operator's page size and rate limit (zero or
    /// less keeps the configured value).
    pub fn tuned(&self, page_size: u32, requests_per_second: f64) -> Self {
        let mut spec = self.spec.clone();
        if page_size > 0 {
            spec.page_size = Some(page_size);
        }
        if requests_per_second > 0.0 {
            spec.requests_per_second = requests_per_second;
        }
        self.with_spec(spec)
    }

    /// The same source listing with `extra` query parameters too (a sparse
    /// field set: ids and updated-at only).
    pub fn with_query(&self, extra: &BTreeMap<String, String>) -> Self {
        let mut spec = self.spec.clone();
        spec.query
            .extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.with_spec(spec)
    }

    fn with_spec(&self, spec: SourceSpec) -> Self {
        let burst = spec.requests_per_second.max(1.0);
        Self {
            spec,
            client: self.client.clone(),
            auth: self.auth.clone(),
            oauth_secret: self.oauth_secret.clone(),
            bucket: Mutex::new(Bucket {
                tokens: burst,
                refilled: Instant::now(),
                paused_until: None,
            }),
        }
    }

    /// An OAuth2 client-credentials token, for sources that use one.
    async fn oauth_header(&self) -> Result<Option<(String, String)>> {
        let (
            Some(AuthSpec::Oauth2 {
                token_url,
                client_id,
                scope,
                ..
            }),
            Some(secret),
        ) = (&self.spec.auth, &self.oauth_secret)
        else {
            return Ok(self.auth.clone());
        };
        let mut form = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", client_id.clone()),
            ("client_secret", secret.clone()),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope.clone()));
        }
        let body = serde_urlencoded_form(&form);
        let response = self
            .client
            .get()?
            .post(token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| upstream(format!("token request failed: {e}"), true))?;
        if !response.status().is_success() {
            return Err(upstream(
                format!("token endpoint answered {}", response.status()),
                response.status().is_server_error(),
            ));
        }
        let token: Value = response
            .json()
            .await
            .map_err(|e| upstream(format!("token response: {e}"), true))?;
        let access = token["access_token"]
            .as_str()
            .ok_or_else(|| upstream("token response has no access_token", false))?;
        Ok(Some(("authorization".into(), format!("Bearer {access}"))))
    }

    async fn wait_for_token(&self) {
        loop {
            let wait = {
                let mut bucket = self.bucket.lock().await;
                let now = Instant::now();
                if let Some(until) = bucket.paused_until.filter(|u| *u > now) {
                    until - now
                } else {
                    let rate = self.spec.requests_per_second;
                    let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
                    bucket.tokens = (bucket.tokens + elapsed * rate).min(rate.max(1.0));
                    bucket.refilled = now;
                    if bucket.tokens >= 1.0 {
                        bucket.tokens -= 1.0;
                        return;
                    }
                    Duration::from_secs_f64((1.0 - bucket.tokens) / rate)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn pause(&self, for_how_long: Duration) {
        self.bucket.lock().await.paused_until = Some(Instant::now() + for_how_long);
    }

    fn url(&self, state: &PageState) -> String {
        match state {
            PageState::Url(url) if url.starts_with("http://") || url.starts_with("https://") => {
                url.clone()
            }
            PageState::Url(path) => format!("{}{path}", self.spec.base_url.trim_end_matches('/')),
            _ => format!(
                "{}{}",
                self.spec.base_url.trim_end_matches('/'),
                self.spec.path
            ),
        }
    }

    fn request(
        &self,
        state: &PageState,
        bounds: &Bounds,
        auth: &Option<(String, String)>,
    ) -> Result<reqwest::RequestBuilder> {
        let spec = &self.spec;
        let method = if spec.method == "POST" {
            Method::POST
        } else {
            Method::GET
        };
        let mut request = self.client.get()?.request(method.clone(), self.url(state));
        request = request.timeout(Duration::from_secs(spec.timeout_secs));
        if let Some((name, value)) = auth {
            request = request.header(name.as_str(), value.as_str());
        }
        let mut query: Vec<(String, String)> = Vec::new();
        let mut body = spec
            .body
            .clone()
            .unwrap_or(Value::Object(Default::default()));
        if !matches!(state, PageState::Url(_)) {
            query.extend(spec.query.iter().map(|(k, v)| (k.clone(), v.clone())));
            if let (Some(size), Some(param)) = (spec.page_size, &spec.page_size_param) {
                if method == Method::POST {
                    body[param.as_str()] = Value::from(size);
                } else {
                    query.push((param.clone(), size.to_string()));
                }
            }
            if let (Some(incremental), Some(since)) = (&spec.incremental, &bounds.since) {
                if let Some(param) = &incremental.param {
                    query.push((param.clone(), since.clone()));
                }
                if let (Some(filter), Value::Object(target)) = (&incremental.body_filter, &mut body)
                {
                    let text = filter.to_string().replace("{since}", since);
                    if let Ok(Value::Object(filter)) = serde_json::from_str::<Value>(&text) {
                        target.extend(filter);
                    }
                }
            }
        }
        match (&spec.pagination, state) {
            (Some(Pagination::CursorBody { param, .. }), PageState::Cursor(cursor))
            | (Some(Pagination::StartingAfter { param, .. }), PageState::Cursor(cursor)) => {
                if method == Method::POST {
                    body[param.as_str()] = Value::String(cursor.clone());
                } else {
                    query.push((param.clone(), cursor.clone()));
                }
            }
            (Some(Pagination::PageNumber { param, .. }), PageState::Number(n))
            | (Some(Pagination::Offset { param }), PageState::Offset(n)) => {
                query.push((param.clone(), n.to_string()));
            }
            (Some(Pagination::PageNumber { param, start }), PageState::First) => {
                query.push((param.clone(), start.to_string()));
            }
            (Some(Pagination::Offset { param }), PageState::First) => {
                query.push((param.clone(), "0".into()));
            }
            (Some(Pagination::HeaderCursor { header }), PageState::Cursor(cursor)) => {
                request = request.header(header.as_str(), cursor.as_str());
            }
            (
                Some(Pagination::SyncToken {
                    page_token_param, ..
                }),
                PageState::Cursor(token),
            ) => {
                query.push((page_token_param.clone(), token.clone()));
            }
            (
                Some(Pagination::SyncToken {
                    sync_token_param, ..
                }),
                PageState::First,
            ) => {
                if let Some(token) = &bounds.sync_token {
                    query.push((sync_token_param.clone(), token.clone()));
                }
            }
            _ => {}
        }
        if !query.is_empty() {
            request = request.query(&query);
        }
        if method == Method::POST {
            request = request.json(&body);
        }
        Ok(request)
    }

    /// Fetches the page at `state`, retrying what may pass.
    pub async fn fetch(&self, state: &PageState, bounds: &Bounds) -> Result<Fetched> {
        let auth = self.oauth_header().await?;
        let mut last_error = upstream("no attempt made", true);
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                let ceiling = 100u64.saturating_mul(1 << attempt.min(6)).min(5_000);
                let delay = rand::rng().random_range(ceiling / 2..=ceiling);
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            self.wait_for_token().await;
            let response = match self.request(state, bounds, &auth)?.send().await {
                Ok(response) => response,
                Err(e) => {
                    last_error = upstream(format!("request failed: {e}"), true);
                    continue;
                }
            };
            let status = response.status();
            if status == StatusCode::GONE {
                return Ok(Fetched::Gone);
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                let wait = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or(Duration::from_secs(1), Duration::from_secs)
                    .min(MAX_RETRY_AFTER);
                self.pause(wait).await;
                last_error = upstream("rate limited (HTTP 429)", true);
                continue;
            }
            if status.is_server_error() {
                last_error = upstream(format!("HTTP {status}"), true);
                continue;
            }
            if !status.is_success() {
                return Err(upstream(format!("HTTP {status}"), false));
            }
            let header_cursor = match &self.spec.pagination {
                Some(Pagination::HeaderCursor { header }) => response
                    .headers()
                    .get(header.as_str())
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                _ => None,
            };
            let link_next = response
                .headers()
                .get("link")
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let body: Value = match response.json().await {
                Ok(body) => body,
                Err(e) => {
                    last_error = upstream(format!("malformed page: {e}"), true);
                    continue;
                }
            };
            match self.page(state, body, header_cursor, link_next) {
                Ok(page) => return Ok(Fetched::Page(page)),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// One record by id, for force-sync; `None` when the source says it is
    /// gone (404 or 410).
    pub async fn fetch_one(&self, id: &str) -> Result<Option<Value>> {
        let template = self.spec.record_path.as_deref().ok_or_else(|| {
            Error::validation(
                "source",
                "this source has no record_path for single records",
            )
        })?;
        let body = self
            .call(Method::GET, &template.replace("{id}", id), &[], None)
            .await?;
        Ok(body.and_then(|body| match &self.spec.record_pointer {
            Some(pointer) => body.pointer(pointer).cloned(),
            None => Some(body),
        }))
    }

    /// Range digests for `bounds` from the source's digest endpoint: one
    /// `(count, digest)` per bound, range i running from `bounds[i]` up to
    /// `bounds[i + 1]` (the last to the end).
    pub async fn range_digests(&self, bounds: &[String]) -> Result<Vec<(u64, String)>> {
        let spec = self.digest_spec()?;
        let body = serde_json::json!({ "bounds": bounds });
        let reply = self
            .call(Method::POST, &spec.path, &[], Some(&body))
            .await?
            .ok_or_else(|| upstream("the digest endpoint answered 404", false))?;
        let ranges = reply["ranges"]
            .as_array()
            .filter(|ranges| ranges.len() == bounds.len())
            .ok_or_else(|| {
                upstream(
                    format!("the digest endpoint did not return {} ranges", bounds.len()),
                    false,
                )
            })?;
        ranges
            .iter()
            .map(
                |range| match (range["count"].as_u64(), range["digest"].as_str()) {
                    (Some(count), Some(digest)) => Ok((count, digest.to_ascii_lowercase())),
                    _ => Err(upstream(format!("malformed range digest: {range}"), false)),
                },
            )
            .collect()
    }

    /// One page of (id, mark) pairs with ids in `[from, to)` after `after`,
    /// in id order, and the id to continue after.
    pub async fn range_marks(
        &self,
        from: &str,
        to: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<(String, String)>, Option<String>)> {
        let spec = self.digest_spec()?;
        let mut query = vec![("from", from.to_owned()), ("limit", limit.to_string())];
        if let Some(to) = to {
            query.push(("to", to.to_owned()));
        }
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        let reply = self
            .call(Method::GET, &spec.list_path, &query, None)
            .await?
            .ok_or_else(|| upstream("the range listing answered 404", false))?;
        let records = reply["records"]
            .as_array()
            .ok_or_else(|| upstream("the range listing has no records array", false))?;
        let mut pairs = Vec::with_capacity(records.len());
        for record in records {
            let id = match &record["id"] {
                Value::String(id) => id.clone(),
                Value::Number(n) => n.to_string(),
                _ => {
                    return Err(upstream(
                        format!("a listed record has no id: {record}"),
                        false,
                    ));
                }
            };
            pairs.push((id, super::transform::mark_text(&record["mark"])));
        }
        let next = reply["next"].as_str().map(str::to_owned);
        Ok((pairs, next))
    }

    fn digest_spec(&self) -> Result<&super::spec::DigestSpec> {
        self.spec
            .digests
            .as_ref()
            .ok_or_else(|| Error::validation("source", "this source does not serve range digests"))
    }

    /// A JSON call to `target` (a path under the base URL, or a full URL),
    /// retried like page fetches; `None` when the source answers 404 or 410.
    async fn call(
        &self,
        method: Method,
        target: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Option<Value>> {
        let url = if target.starts_with("http://") || target.starts_with("https://") {
            target.to_owned()
        } else {
            format!("{}{target}", self.spec.base_url.trim_end_matches('/'))
        };
        let auth = self.oauth_header().await?;
        let mut last_error = upstream("no attempt made", true);
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
            }
            self.wait_for_token().await;
            let mut request = self
                .client
                .get()?
                .request(method.clone(), &url)
                .timeout(Duration::from_secs(self.spec.timeout_secs));
            if let Some((name, value)) = &auth {
                request = request.header(name.as_str(), value.as_str());
            }
            if !query.is_empty() {
                request = request.query(query);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) => {
                    last_error = upstream(format!("request failed: {e}"), true);
                    continue;
                }
            };
            let status = response.status();
            if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
                return Ok(None);
            }
            if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                last_error = upstream(format!("HTTP {status}"), true);
                continue;
            }
            if !status.is_success() {
                return Err(upstream(format!("HTTP {status}"), false));
            }
            match response.json::<Value>().await {
                Ok(body) => return Ok(Some(body)),
                Err(e) => last_error = upstream(format!("malformed response: {e}"), true),
            }
        }
        Err(last_error)
    }

    fn page(
        &self,
        state: &PageState,
        body: Value,
        header_cursor: Option<String>,
        link_next: Option<String>,
    ) -> Result<Page> {
        let spec = &self.spec;
        let items = if spec.records.is_empty() {
            Some(&body)
        } else {
            body.pointer(&spec.records)
        };
        let items = match items {
            Some(Value::Array(items)) => items.clone(),
            Some(Value::Null) | None
                if matches!(body, Value::Object(_)) && spec.records.is_empty() =>
            {
                Vec::new()
            }
            _ => {
                return Err(upstream(
                    format!("malformed page: no array at {:?}", spec.records),
                    true,
                ));
            }
        };
        // Cursors and tokens may come as text or as numbers.
        let text = |path: &str| match body.pointer(path) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let full = spec
            .page_size
            .is_none_or(|size| items.len() >= size as usize)
            && !items.is_empty();
        let mut sync_token = None;
        let next = match &spec.pagination {
            None | Some(Pagination::None) => None,
            Some(Pagination::CursorBody {
                cursor_path,
                has_more_path,
                ..
            }) => {
                let more = has_more_path
                    .as_ref()
                    .is_none_or(|p| body.pointer(p) == Some(&Value::Bool(true)));
                text(cursor_path)
                    .filter(|c| more && !c.is_empty())
                    .map(PageState::Cursor)
            }
            Some(Pagination::NextLink { path }) => {
                text(path).filter(|l| !l.is_empty()).map(PageState::Url)
            }
            Some(Pagination::LinkHeader) => link_next.map(PageState::Url),
            Some(Pagination::PageNumber { start, .. }) => full.then(|| {
                PageState::Number(match state {
                    PageState::Number(n) => n + 1,
                    _ => start + 1,
                })
            }),
            Some(Pagination::Offset { .. }) => full.then(|| {
                PageState::Offset(match state {
                    PageState::Offset(n) => n + items.len() as u64,
                    _ => items.len() as u64,
                })
            }),
            Some(Pagination::StartingAfter { has_more_path, .. }) => {
                let more = body.pointer(has_more_path) == Some(&Value::Bool(true));
                let last = items
                    .last()
                    .and_then(|i| i.pointer(&spec.id))
                    .and_then(Value::as_str);
                last.filter(|_| more)
                    .map(|id| PageState::Cursor(id.to_owned()))
            }
            Some(Pagination::HeaderCursor { .. }) => header_cursor
                .filter(|c| !c.is_empty())
                .map(PageState::Cursor),
            Some(Pagination::SyncToken {
                page_token_path,
                sync_token_path,
                ..
            }) => {
                sync_token = text(sync_token_path);
                text(page_token_path).map(PageState::Cursor)
            }
        };
        Ok(Page {
            items,
            next,
            sync_token,
        })
    }
}

/// The `rel="next"` target of an RFC 8288 Link header.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        let target = target.trim();
        (is_next && target.starts_with('<') && target.ends_with('>'))
            .then(|| target[1..target.len() - 1].to_owned())
    })
}

fn serde_urlencoded_form(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_yield_the_next_target() {
        let header = r#"<https://api.example.com/items?page=3>; rel="next", <https://api.example.com/items?page=1>; rel="first""#;
        assert_eq!(
            next_link(header).as_deref(),
            Some("https://api.example.com/items?page=3")
        );
        assert_eq!(next_link(r#"<https://x/1>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
    }
}
