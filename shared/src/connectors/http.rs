//! A declarative HTTP JSON source: requests with auth, pagination and the
//! incremental lower bound, sent through the one retrying call path
//! (`client::send_with_retry`); single records, range digests and range
//! listings for force-syncs and discrepancy checks.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::client::{RateLimiter, Reading, SOURCE_ATTEMPTS, send_with_retry, upstream};
use super::pagination::{Bounds, Fetched, Page, PageState, next_link};
use super::spec::{AuthSpec, Pagination, SourceSpec};
use crate::error::{Error, Result};

/// How a source is named in upstream errors.
const SOURCE: &str = "source";

pub struct HttpSource {
    spec: SourceSpec,
    client: super::SourceClient,
    /// Resolved auth header (name, value), or the OAuth2 client secret.
    auth: Option<(String, String)>,
    oauth_secret: Option<String>,
    limiter: RateLimiter,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource")
            .field("base_url", &self.spec.base_url)
            .finish_non_exhaustive()
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
            Some(AuthSpec::Oauth2 { client_secret, .. }) => (None, Some(secret(client_secret)?)),
            Some(auth) => (auth_header(auth, &secret)?, None),
        };
        Ok(Self {
            limiter: RateLimiter::new(spec.requests_per_second),
            spec,
            client: client.into(),
            auth,
            oauth_secret,
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
        Self {
            limiter: RateLimiter::new(spec.requests_per_second),
            spec,
            client: self.client.clone(),
            auth: self.auth.clone(),
            oauth_secret: self.oauth_secret.clone(),
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
        let response = self
            .client
            .get()?
            .post(token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| upstream(SOURCE, format!("token request failed: {e}"), true))?;
        if !response.status().is_success() {
            return Err(upstream(
                SOURCE,
                format!("token endpoint answered {}", response.status()),
                response.status().is_server_error(),
            ));
        }
        let token: Value = read_json(response).await.map_err(|e| match e {
            BodyError::TooLarge => upstream(SOURCE, too_large(), false),
            BodyError::Unreadable(e) => upstream(SOURCE, format!("token response: {e}"), true),
        })?;
        let access = token["access_token"]
            .as_str()
            .ok_or_else(|| upstream(SOURCE, "token response has no access_token", false))?;
        Ok(Some(("authorization".into(), format!("Bearer {access}"))))
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
        let method = match spec.method {
            super::spec::Method::Get => Method::GET,
            super::spec::Method::Post => Method::POST,
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
        send_with_retry(
            SOURCE,
            SOURCE_ATTEMPTS,
            &self.limiter,
            || self.request(state, bounds, &auth),
            |response| async move {
                let status = response.status();
                if status == StatusCode::GONE {
                    return Ok(Reading::Done(Fetched::Gone));
                }
                if !status.is_success() {
                    return Err(upstream(SOURCE, format!("HTTP {status}"), false));
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
                let body: Value = match read_json(response).await {
                    Ok(body) => body,
                    Err(BodyError::TooLarge) => {
                        return Err(upstream(SOURCE, too_large(), false));
                    }
                    Err(BodyError::Unreadable(e)) => {
                        return Ok(Reading::Retry(upstream(
                            SOURCE,
                            format!("malformed page: {e}"),
                            true,
                        )));
                    }
                };
                Ok(
                    match Page::parse(&self.spec, state, body, header_cursor, link_next) {
                        Ok(page) => Reading::Done(Fetched::Page(page)),
                        Err(e) => Reading::Retry(e),
                    },
                )
            },
        )
        .await
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
            .ok_or_else(|| upstream(SOURCE, "the digest endpoint answered 404", false))?;
        let ranges = reply["ranges"]
            .as_array()
            .filter(|ranges| ranges.len() == bounds.len())
            .ok_or_else(|| {
                upstream(
                    SOURCE,
                    format!("the digest endpoint did not return {} ranges", bounds.len()),
                    false,
                )
            })?;
        ranges
            .iter()
            .map(
                |range| match (range["count"].as_u64(), range["digest"].as_str()) {
                    (Some(count), Some(digest)) => Ok((count, digest.to_ascii_lowercase())),
                    _ => Err(upstream(
                        SOURCE,
                        format!("malformed range digest: {range}"),
                        false,
                    )),
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
            .ok_or_else(|| upstream(SOURCE, "the range listing answered 404", false))?;
        let records = reply["records"]
            .as_array()
            .ok_or_else(|| upstream(SOURCE, "the range listing has no records array", false))?;
        let mut pairs = Vec::with_capacity(records.len());
        for record in records {
            let id = match &record["id"] {
                Value::String(id) => id.clone(),
                Value::Number(n) => n.to_string(),
                _ => {
                    return Err(upstream(
                        SOURCE,
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
        let build = || {
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
            Ok(request)
        };
        send_with_retry(
            SOURCE,
            SOURCE_ATTEMPTS,
            &self.limiter,
            build,
            |response| async move {
                let status = response.status();
                if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
                    return Ok(Reading::Done(None));
                }
                if !status.is_success() {
                    return Err(upstream(SOURCE, format!("HTTP {status}"), false));
                }
                Ok(match read_json(response).await {
                    Ok(body) => Reading::Done(Some(body)),
                    Err(BodyError::TooLarge) => return Err(upstream(SOURCE, too_large(), false)),
                    Err(BodyError::Unreadable(e)) => {
                        Reading::Retry(upstream(SOURCE, format!("malformed response: {e}"), true))
                    }
                })
            },
        )
        .await
    }
}

/// The most a source's answer (a page, a record, a token) may carry: a
/// page that never ends is cut off here instead of filling memory until
/// the request's timeout.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

enum BodyError {
    TooLarge,
    Unreadable(String),
}

fn too_large() -> String {
    format!("the answer is larger than {MAX_RESPONSE_BYTES} bytes")
}

/// The response's JSON body, read a chunk at a time up to
/// [`MAX_RESPONSE_BYTES`].
async fn read_json(mut response: reqwest::Response) -> std::result::Result<Value, BodyError> {
    if response
        .content_length()
        .is_some_and(|length| length > MAX_RESPONSE_BYTES as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| BodyError::Unreadable(e.to_string()))?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| BodyError::Unreadable(e.to_string()))
}

/// The header a static auth scheme sends (name, value); `None` for OAuth2,
/// whose token is fetched at run time. Shared by sources and destinations.
pub fn auth_header(
    auth: &AuthSpec,
    secret: &impl Fn(&crate::webhooks::SecretRef) -> Result<String>,
) -> Result<Option<(String, String)>> {
    Ok(match auth {
        AuthSpec::Bearer { token } => {
            Some(("authorization".into(), format!("Bearer {}", secret(token)?)))
        }
        AuthSpec::ApiKey { header, value } => Some((header.clone(), secret(value)?)),
        AuthSpec::Basic { username, password } => {
            let pair = format!("{username}:{}", secret(password)?);
            Some((
                "authorization".into(),
                format!("Basic {}", BASE64.encode(pair)),
            ))
        }
        AuthSpec::Header {
            header,
            prefix,
            value,
        } => Some((header.clone(), format!("{prefix}{}", secret(value)?))),
        AuthSpec::Oauth2 { .. } => None,
    })
}
