//! The destinations document (`SYNCLINE_DESTINATIONS[_FILE]`): per
//! destination its tenant, the entity types it takes (and optionally which
//! fields), the sources of its own system (whose changes it never gets
//! back), and its kind: a Redis cache, outbound webhooks, or a declarative
//! JSON API writer with presets (docs/DESTINATIONS.md).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::connectors::AuthSpec;
use crate::error::{Error, Result};
use crate::model::{EntityType, SourceId, TenantId};
use crate::webhooks::SecretRef;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationsDocument {
    pub destinations: BTreeMap<String, DestinationSpec>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSpec {
    pub tenant: TenantId,
    pub entities: Vec<EntityType>,
    /// Only these top-level fields are sent (all when absent).
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// Sources on the destination's own system (its webhook or its pull):
    /// a change they brought in is not written back.
    #[serde(default)]
    pub echo_of: Vec<SourceId>,
    /// The source that reads this same system (a two-way pair): its changes
    /// are not written back, and each object this destination creates is
    /// linked to its record, so the source's pull of that object (an edit
    /// made there) updates the same record. The source sets `linked`.
    #[serde(default)]
    pub pair: Option<SourceId>,
    pub kind: KindSpec,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KindSpec {
    Redis(RedisSpec),
    Webhook(WebhookSpec),
    Http(Box<HttpSpec>),
}

/// A Redis (or Valkey, ElastiCache) cache: one JSON value per record under
/// `{prefix}{entity}:{id}`, its version beside it, and optionally one set
/// of ids per entity type (`{prefix}{entity}`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSpec {
    pub url: SecretRef,
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub index: bool,
}

/// Outbound webhooks signed per the Standard Webhooks spec.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    pub url: String,
    /// `whsec_` + base64.
    pub secret: SecretRef,
    #[serde(default = "default_rate")]
    pub requests_per_second: f64,
    /// Consecutive failed deliveries after which the endpoint is disabled;
    /// its events stay in the feed for a replay after re-enabling.
    #[serde(default = "default_disable_after")]
    pub disable_after: u32,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Deliveries in flight at once; 1 (the default) keeps the feed's order
    /// across records.
    #[serde(default = "one")]
    pub concurrency: usize,
}

/// One action of a JSON API writer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    pub method: String,
    /// A path under the base URL; `{id}`, `{external_id}`, `{entity}`, any
    /// `vars` and record fields are filled in.
    pub path: String,
    /// A JSON template: a string that is exactly `"{field}"` becomes that
    /// record field's value (any type); other strings are filled in.
    #[serde(default)]
    pub body: Option<Value>,
}

/// A declarative JSON API writer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    #[serde(default)]
    pub preset: Option<String>,
    pub base_url: String,
    #[serde(default)]
    pub auth: Option<AuthSpec>,
    #[serde(default)]
    pub create: Option<ActionSpec>,
    #[serde(default)]
    pub update: Option<ActionSpec>,
    #[serde(default)]
    pub delete: Option<ActionSpec>,
    /// The record content as the body of creates and updates, when their
    /// action has none.
    #[serde(default)]
    pub body: Option<Value>,
    /// Where the created object's id is in a create's response.
    #[serde(default)]
    pub id_pointer: Option<String>,
    /// Bodies as `application/x-www-form-urlencoded` (Stripe), nested
    /// objects flattened as `a[b]=c`.
    #[serde(default)]
    pub form: bool,
    /// The header that carries the idempotency key (`Idempotency-Key`).
    #[serde(default)]
    pub idempotency_header: Option<String>,
    /// Extra headers on every request (`Notion-Version`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Values for path and body templates (`calendar`, `database`).
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    #[serde(default = "default_rate")]
    pub requests_per_second: f64,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Deliveries in flight at once; 1 (the default) keeps the feed's order
    /// across records.
    #[serde(default = "one")]
    pub concurrency: usize,
}

fn one() -> usize {
    1
}

fn default_rate() -> f64 {
    10.0
}

fn default_disable_after() -> u32 {
    20
}

fn default_timeout() -> u64 {
    10
}

fn action(method: &str, path: &str, body: Option<Value>) -> Option<ActionSpec> {
    Some(ActionSpec {
        method: method.into(),
        path: path.into(),
        body,
    })
}

impl HttpSpec {
    /// Fills in what a preset knows (the real request shapes of the API);
    /// what the document sets wins.
    pub fn resolve(mut self, name: &str) -> Result<Self> {
        let problem = |why: &str| Error::Config(format!("destination {name:?}: {why}"));
        let body = || self.body.clone();
        let (create, update, delete, id_pointer) = match self.preset.as_deref() {
            None => (None, None, None, None),
            // Events: insert, patch, delete.
            Some("google_calendar") => (
                action("POST", "/calendar/v3/calendars/{calendar}/events", body()),
                action(
                    "PATCH",
                    "/calendar/v3/calendars/{calendar}/events/{external_id}",
                    body(),
                ),
                action(
                    "DELETE",
                    "/calendar/v3/calendars/{calendar}/events/{external_id}",
                    None,
                ),
                Some("/id"),
            ),
            // Pages: create in a database, update properties, archive.
            Some("notion") => {
                self.headers
                    .entry("Notion-Version".into())
                    .or_insert_with(|| "2022-06-28".into());
                (
                    action(
                        "POST",
                        "/v1/pages",
                        Some(serde_json::json!({
                            "parent": {"database_id": "{database}"},
                            "properties": body().unwrap_or(Value::Null),
                        })),
                    ),
                    action(
                        "PATCH",
                        "/v1/pages/{external_id}",
                        Some(serde_json::json!({"properties": body().unwrap_or(Value::Null)})),
                    ),
                    action(
                        "PATCH",
                        "/v1/pages/{external_id}",
                        Some(serde_json::json!({"archived": true})),
                    ),
                    Some("/id"),
                )
            }
            // Records: add to a form, update and delete in a report.
            Some("zoho_creator") => (
                action(
                    "POST",
                    "/api/v2.1/{owner}/{app}/form/{form}",
                    Some(serde_json::json!({"data": body().unwrap_or(Value::Null)})),
                ),
                action(
                    "PATCH",
                    "/api/v2.1/{owner}/{app}/report/{report}/{external_id}",
                    Some(serde_json::json!({"data": body().unwrap_or(Value::Null)})),
                ),
                action(
                    "DELETE",
                    "/api/v2.1/{owner}/{app}/report/{report}/{external_id}",
                    None,
                ),
                Some("/data/ID"),
            ),
            // Form-encoded, idempotent requests; the actions (a refund, a
            // capture) come from the document.
            Some("stripe") => {
                self.form = true;
                self.idempotency_header
                    .get_or_insert_with(|| "Idempotency-Key".into());
                (None, None, None, Some("/id"))
            }
            // Cancelling a scheduled event is the one write Calendly's API
            // takes: a delete of the record.
            Some("calendly") => (
                None,
                None,
                action(
                    "POST",
                    "/scheduled_events/{external_id}/cancellation",
                    Some(serde_json::json!({"reason": "{cancel_reason}"})),
                ),
                None,
            ),
            Some(other) => return Err(problem(&format!("unknown preset {other:?}"))),
        };
        self.create = self.create.or(create);
        self.update = self.update.or(update);
        self.delete = self.delete.or(delete);
        if self.id_pointer.is_none() {
            self.id_pointer = id_pointer.map(str::to_owned);
        }
        if self.create.is_none() && self.update.is_none() && self.delete.is_none() {
            return Err(problem(
                "an http destination needs a create, update or delete",
            ));
        }
        for spec in [&self.create, &self.update, &self.delete]
            .into_iter()
            .flatten()
        {
            if reqwest::Method::from_bytes(spec.method.as_bytes()).is_err() {
                return Err(problem(&format!("{:?} is not an HTTP method", spec.method)));
            }
            if !spec.path.starts_with('/') {
                return Err(problem("an action's path starts with /"));
            }
        }
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return Err(problem("base_url must be an http(s) URL"));
        }
        if self.requests_per_second.is_nan() || self.requests_per_second <= 0.0 {
            return Err(problem("requests_per_second must be positive"));
        }
        if matches!(self.auth, Some(AuthSpec::Oauth2 { .. })) {
            return Err(problem(
                "oauth2 is not supported for destinations; use a token",
            ));
        }
        Ok(self)
    }
}

impl DestinationsDocument {
    pub fn parse(json: &str) -> Result<Self> {
        let document: Self =
            serde_json::from_str(json).map_err(|e| Error::Config(format!("destinations: {e}")))?;
        for (name, spec) in &document.destinations {
            crate::model::SourceId::parse(name)
                .map_err(|e| Error::Config(format!("destination {name:?}: {e}")))?;
            if spec.entities.is_empty() {
                return Err(Error::Config(format!(
                    "destination {name:?}: name at least one entity type"
                )));
            }
            if let KindSpec::Webhook(hook) = &spec.kind {
                if !(hook.url.starts_with("http://") || hook.url.starts_with("https://")) {
                    return Err(Error::Config(format!(
                        "destination {name:?}: the webhook url must be http(s)"
                    )));
                }
                if hook.requests_per_second.is_nan() || hook.requests_per_second <= 0.0 {
                    return Err(Error::Config(format!(
                        "destination {name:?}: requests_per_second must be positive"
                    )));
                }
            }
        }
        Ok(document)
    }
}
