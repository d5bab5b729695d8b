//! A declarative JSON API writer: per action (create, update, delete) a
//! method, a path template and a body template over the record's fields;
//! the created object's id read from the response and kept for updates;
//! an idempotency key per (destination, record, version) where the API
//! takes one. Requests go through the connectors' one call path (rate
//! limit, Retry-After, backoff).

use std::collections::BTreeMap;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};

use super::config::{ActionSpec, HttpSpec};
use super::target::{Applied, Outbound, Target};
use crate::connectors::{RateLimiter, Reading, SourceClient, send_with_retry, upstream};
use crate::error::{Error, Result};

/// Quick attempts inside one delivery before the retry queue takes over.
const ATTEMPTS: u32 = 2;
/// How much of a refusal's body is kept as the ledger's error.
const MAX_ERROR_TEXT: usize = 500;

pub struct HttpTarget {
    spec: HttpSpec,
    auth: Option<(String, String)>,
    client: SourceClient,
    limiter: RateLimiter,
}

impl std::fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTarget")
            .field("base_url", &self.spec.base_url)
            .finish_non_exhaustive()
    }
}

/// Which action a record takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Create,
    Update,
    Delete,
}

/// The value a `{name}` placeholder stands for.
fn lookup(name: &str, outbound: &Outbound<'_>, vars: &BTreeMap<String, String>) -> Option<Value> {
    match name {
        "id" => Some(Value::String(outbound.record.id.to_string())),
        "entity" => Some(Value::String(outbound.record.entity.to_string())),
        "version" => Some(Value::from(outbound.record.version.get())),
        "external_id" => outbound.external_id.map(|e| Value::String(e.to_owned())),
        "key" => Some(Value::String(outbound.key.to_owned())),
        _ => vars
            .get(name)
            .map(|v| Value::String(v.clone()))
            .or_else(|| outbound.data.get(name).cloned()),
    }
}

/// `text` with every `{name}` filled in (absent values become empty).
fn fill(text: &str, outbound: &Outbound<'_>, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &rest[start + 1..start + end];
        match lookup(name, outbound, vars) {
            Some(Value::String(s)) => out.push_str(&s),
            Some(Value::Null) | None => {}
            Some(other) => out.push_str(&other.to_string()),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// A body template rendered: a string that is exactly `{name}` becomes the
/// value itself (numbers stay numbers); other strings are filled in.
fn render(template: &Value, outbound: &Outbound<'_>, vars: &BTreeMap<String, String>) -> Value {
    match template {
        Value::String(s) => match s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            Some(name) if !name.contains(['{', '}']) => {
                lookup(name, outbound, vars).unwrap_or(Value::Null)
            }
            _ => Value::String(fill(s, outbound, vars)),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| render(item, outbound, vars))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), render(v, outbound, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A JSON object as form fields, nested keys as `a[b]` (Stripe's style).
fn form_pairs(prefix: Option<&str>, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = prefix.map_or_else(|| k.clone(), |p| format!("{p}[{k}]"));
                form_pairs(Some(&key), v, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let key = prefix.map_or_else(|| i.to_string(), |p| format!("{p}[{i}]"));
                form_pairs(Some(&key), v, out);
            }
        }
        Value::Null => {}
        Value::String(s) => out.push((prefix.unwrap_or_default().to_owned(), s.clone())),
        other => out.push((prefix.unwrap_or_default().to_owned(), other.to_string())),
    }
}

impl HttpTarget {
    pub fn new(
        spec: HttpSpec,
        auth: Option<(String, String)>,
        client: SourceClient,
    ) -> Result<Self> {
        Ok(Self {
            limiter: RateLimiter::new(spec.requests_per_second),
            spec,
            auth,
            client,
        })
    }

    fn action(&self, outbound: &Outbound<'_>) -> Option<(Act, &ActionSpec)> {
        let spec = &self.spec;
        if outbound.record.deleted {
            return spec.delete.as_ref().map(|a| (Act::Delete, a));
        }
        match (outbound.external_id, &spec.create, &spec.update) {
            (Some(_), _, Some(update)) => Some((Act::Update, update)),
            (None, Some(create), _) => Some((Act::Create, create)),
            // An API with only one write (a refund) takes every change as it.
            (_, Some(create), None) => Some((Act::Create, create)),
            (None, None, Some(update)) => Some((Act::Update, update)),
            (Some(_), None, None) | (None, None, None) => None,
        }
    }

    fn request(
        &self,
        method: &Method,
        url: &str,
        body: &Option<Value>,
        key: &str,
    ) -> Result<reqwest::RequestBuilder> {
        let mut request = self
            .client
            .get()?
            .request(method.clone(), url)
            .timeout(std::time::Duration::from_secs(self.spec.timeout_secs));
        if let Some((name, value)) = &self.auth {
            request = request.header(name.as_str(), value.as_str());
        }
        for (name, value) in &self.spec.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(header) = &self.spec.idempotency_header {
            request = request.header(header.as_str(), key);
        }
        if let Some(body) = body {
            request = if self.spec.form {
                let mut pairs = Vec::new();
                form_pairs(None, body, &mut pairs);
                request.form(&pairs)
            } else {
                request.json(body)
            };
        }
        Ok(request)
    }
}

#[async_trait]
impl Target for HttpTarget {
    async fn apply(&self, outbound: &Outbound<'_>) -> Result<Applied> {
        let Some((act, action)) = self.action(outbound) else {
            return Err(Error::Unprocessable(
                "this destination has no action for the change".into(),
            ));
        };
        if act != Act::Create
            && action.path.contains("{external_id}")
            && outbound.external_id.is_none()
        {
            // Never created there (or created before the ledger knew it):
            // nothing to change.
            return Ok(Applied::default());
        }
        let method = Method::from_bytes(action.method.as_bytes())
            .map_err(|_| Error::Config(format!("{:?} is not an HTTP method", action.method)))?;
        let url = format!(
            "{}{}",
            self.spec.base_url.trim_end_matches('/'),
            fill(&action.path, outbound, &self.spec.vars)
        );
        let body = match (&action.body, act) {
            (Some(template), _) => Some(render(template, outbound, &self.spec.vars)),
            (None, Act::Delete) => None,
            (None, _) => match &self.spec.body {
                Some(template) => Some(render(template, outbound, &self.spec.vars)),
                None => Some(Value::Object(outbound.data.clone())),
            },
        };
        let id_pointer = self.spec.id_pointer.as_deref();
        let known = outbound.external_id.map(str::to_owned);
        send_with_retry(
            "destination",
            ATTEMPTS,
            &self.limiter,
            || self.request(&method, &url, &body, outbound.key),
            |response| {
                let known = known.clone();
                async move {
                    let status = response.status();
                    if act == Act::Delete
                        && (status == StatusCode::NOT_FOUND || status == StatusCode::GONE)
                    {
                        return Ok(Reading::Done(Applied::default()));
                    }
                    if !status.is_success() {
                        let text = response.text().await.unwrap_or_default();
                        let text: String = text.chars().take(MAX_ERROR_TEXT).collect();
                        return Err(upstream(
                            "destination",
                            format!("HTTP {status}: {text}"),
                            status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::CONFLICT,
                        ));
                    }
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    let created = match (act, id_pointer) {
                        (Act::Create, Some(pointer)) => {
                            body.pointer(pointer).and_then(|v| match v {
                                Value::String(s) => Some(s.clone()),
                                Value::Number(n) => Some(n.to_string()),
                                _ => None,
                            })
                        }
                        _ => None,
                    };
                    Ok(Reading::Done(Applied {
                        external_id: created.or(known),
                        stale: false,
                    }))
                }
            },
        )
        .await
    }
}

/// The fields of `data` a destination takes.
pub fn filtered(data: &Map<String, Value>, fields: Option<&[String]>) -> Map<String, Value> {
    match fields {
        None => data.clone(),
        Some(fields) => data
            .iter()
            .filter(|(k, _)| fields.iter().any(|f| f == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}
