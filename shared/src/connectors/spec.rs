//! A declarative HTTP JSON source as configured (docs/SOURCES.md), and the
//! presets for real APIs, which are the same spec with their defaults
//! filled in.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::model::{EntityType, Interval, TenantId};
use crate::validation::Rules;
use crate::webhooks::SecretRef;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthSpec {
    Bearer {
        token: SecretRef,
    },
    ApiKey {
        header: String,
        value: SecretRef,
    },
    Basic {
        username: String,
        password: SecretRef,
    },
    /// OAuth2 client credentials; the token is fetched once per run.
    Oauth2 {
        token_url: String,
        client_id: String,
        client_secret: SecretRef,
        #[serde(default)]
        scope: Option<String>,
    },
    /// A fixed header value with a prefix (Zoho: `Zoho-oauthtoken <token>`).
    Header {
        header: String,
        prefix: String,
        value: SecretRef,
    },
}

/// How the next page is found.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Pagination {
    /// A cursor in the body, sent back as a query parameter (or a body
    /// field for POST sources).
    CursorBody {
        cursor_path: String,
        param: String,
        #[serde(default)]
        has_more_path: Option<String>,
    },
    /// The next page's URL in the body.
    NextLink { path: String },
    /// RFC 8288 `Link: <...>; rel="next"`.
    LinkHeader,
    /// `?page=N`, until a short or empty page.
    PageNumber {
        param: String,
        #[serde(default = "one")]
        start: u64,
    },
    /// `?offset=N`, until a short or empty page.
    Offset { param: String },
    /// The last record's id as `starting_after` (Stripe) while `has_more`.
    StartingAfter {
        param: String,
        has_more_path: String,
    },
    /// A cursor in a response header, sent back as a request header
    /// (Zoho Creator's `record_cursor`).
    HeaderCursor { header: String },
    /// Page tokens, then a sync token for the next run (Google Calendar).
    SyncToken {
        page_token_path: String,
        page_token_param: String,
        sync_token_path: String,
        sync_token_param: String,
    },
    /// A single page.
    None,
}

fn one() -> u64 {
    1
}

/// How only recently changed records are asked for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incremental {
    /// Query parameter carrying the lower bound (for POST sources with
    /// `body_filter`, the placeholder `{since}` in the body instead).
    #[serde(default)]
    pub param: Option<String>,
    /// `rfc3339` (default), `unix` seconds, or `zoho` (Zoho Creator's
    /// `dd-MMM-yyyy HH:mm:ss`, in the source's `time_zone`).
    #[serde(default)]
    pub format: TimeFormat,
    /// Re-read this far back, for late-arriving updates (inclusive bound).
    #[serde(default = "default_lookback")]
    pub lookback_secs: u64,
    /// Body to merge into the request on incremental runs, with `{since}`.
    #[serde(default)]
    pub body_filter: Option<Value>,
}

fn default_lookback() -> u64 {
    300
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    #[default]
    Rfc3339,
    Unix,
    Zoho,
}

/// Record content from the upstream item.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingSpec {
    /// Record field -> JSON pointer. Without fields, the whole item is kept.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Values for fields the item lacks.
    #[serde(default)]
    pub defaults: Map<String, Value>,
    /// Local date-times (without offset) in these fields are in this zone:
    /// a fixed offset (`+02:00`) or an IANA name (`Europe/Berlin`); every
    /// date-time field listed is stored in UTC. Zoho's `dd-MMM-yyyy
    /// HH:mm:ss` is read too (`connectors::times`).
    #[serde(default)]
    pub timezones: BTreeMap<String, String>,
    /// Convert to a type: `number`, `integer`, `string`, `boolean`.
    #[serde(default)]
    pub types: BTreeMap<String, String>,
}

/// No two records with the same `resource` may overlap in time.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoOverlap {
    pub resource: String,
    pub start: String,
    pub end: String,
}

/// The HTTP method a source's list endpoint takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Method {
    #[default]
    #[serde(rename = "GET")]
    Get,
    /// A query in the body (Notion's database query).
    #[serde(rename = "POST")]
    Post,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub tenant: TenantId,
    pub entity: EntityType,
    /// The source of a two-way pair: an item whose id is the external id of
    /// an object the paired destination created updates that record
    /// (docs/DESTINATIONS.md).
    #[serde(default)]
    pub linked: bool,
    /// Finished runs and discrepancy reports of this source are also
    /// written as `_event` records for destinations (docs/DESTINATIONS.md).
    #[serde(default)]
    pub notify: bool,
    #[serde(default)]
    pub preset: Option<String>,
    pub base_url: String,
    #[serde(default)]
    pub auth: Option<AuthSpec>,
    #[serde(default)]
    pub method: Method,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<Value>,
    /// JSON pointer to the array of records in a page.
    #[serde(default)]
    pub records: String,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Items matching `{pointer: value}` are deletions (Google's cancelled).
    #[serde(default)]
    pub deleted_when: Option<(String, Value)>,
    #[serde(default)]
    pub pagination: Option<Pagination>,
    #[serde(default)]
    pub page_size: Option<u32>,
    #[serde(default)]
    pub page_size_param: Option<String>,
    #[serde(default)]
    pub incremental: Option<Incremental>,
    #[serde(default = "default_rps")]
    pub requests_per_second: f64,
    #[serde(default = "default_interval")]
    pub interval: Interval,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub mapping: MappingSpec,
    #[serde(default)]
    pub rules: Rules,
    #[serde(default)]
    pub no_overlap: Option<NoOverlap>,
    /// The zone of the source's local times (its updated-at values and
    /// incremental bound when they carry no offset): `UTC` (default), a
    /// fixed offset or an IANA name. Zoho Creator answers in the account's
    /// zone.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// A stored field that groups records (an event's registrations): the
    /// older worker API's force-sync of a group re-syncs each of them.
    #[serde(default)]
    pub group_by: Option<String>,
    /// Where one record lives, for force-sync: a path with `{id}` (or
    /// `{id}` alone when ids are URLs).
    #[serde(default)]
    pub record_path: Option<String>,
    /// JSON pointer to the record in that response (whole body if absent).
    #[serde(default)]
    pub record_pointer: Option<String>,
    /// Per-request timeout.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Pages one run reads at most: a source whose pagination never ends
    /// fails the run here (docs/SOURCES.md).
    #[serde(default = "default_max_pages")]
    pub max_pages: u64,
    /// The source keeps range digests of its records, so discrepancy checks
    /// compare without listing it (docs/DISCREPANCIES.md).
    #[serde(default)]
    pub digests: Option<DigestSpec>,
    /// The source can list ids and updated-at alone: discrepancy checks
    /// list it with these extra query parameters (a sparse field set) and
    /// compare without downloading whole records.
    #[serde(default)]
    pub id_listing: Option<IdListing>,
}

/// Query parameters that make the source's listing return ids and
/// updated-at only (`{"fields": "id,updated_at"}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdListing {
    pub query: BTreeMap<String, String>,
}

/// Where a source serves range digests over its record ids and the
/// (id, updated-at) pairs of one range.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestSpec {
    /// POST `{"bounds": [...]}` -> `{"ranges": [{"count", "digest"}, ...]}`.
    pub path: String,
    /// GET `?from=&to=&after=&limit=` -> `{"records": [{"id", "mark"}],
    /// "next"}`.
    pub list_path: String,
}

fn yes() -> bool {
    true
}

fn default_rps() -> f64 {
    10.0
}

fn default_interval() -> Interval {
    Interval::hours(12)
}

fn default_timeout() -> u64 {
    30
}

fn default_max_pages() -> u64 {
    100_000
}

/// Fills a preset's defaults into the fields the configuration left empty.
fn apply_preset(mut spec: SourceSpec) -> Result<SourceSpec> {
    let Some(preset) = spec.preset.clone() else {
        return Ok(spec);
    };
    let set = |field: &mut String, value: &str| {
        if field.is_empty() {
            *field = value.to_owned();
        }
    };
    match preset.as_str() {
        "calendly" => {
            set(&mut spec.path, "/scheduled_events");
            set(&mut spec.records, "/collection");
            set(&mut spec.id, "/uri");
            spec.updated_at.get_or_insert_with(|| "/updated_at".into());
            spec.pagination.get_or_insert(Pagination::NextLink {
                path: "/pagination/next_page".into(),
            });
            spec.page_size.get_or_insert(100);
            spec.page_size_param.get_or_insert_with(|| "count".into());
            spec.record_path.get_or_insert_with(|| "{id}".into());
            spec.record_pointer
                .get_or_insert_with(|| "/resource".into());
        }
        "stripe" => {
            set(&mut spec.path, "/v1/payment_intents");
            set(&mut spec.records, "/data");
            set(&mut spec.id, "/id");
            spec.updated_at.get_or_insert_with(|| "/created".into());
            spec.pagination.get_or_insert(Pagination::StartingAfter {
                param: "starting_after".into(),
                has_more_path: "/has_more".into(),
            });
            spec.page_size.get_or_insert(100);
            spec.page_size_param.get_or_insert_with(|| "limit".into());
            spec.record_path
                .get_or_insert_with(|| "/v1/payment_intents/{id}".into());
            spec.incremental.get_or_insert(Incremental {
                param: Some("created[gte]".into()),
                format: TimeFormat::Unix,
                lookback_secs: default_lookback(),
                body_filter: None,
            });
        }
        "zoho_creator" => {
            set(&mut spec.records, "/data");
            set(&mut spec.id, "/ID");
            spec.updated_at
                .get_or_insert_with(|| "/Modified_Time".into());
            spec.pagination.get_or_insert(Pagination::HeaderCursor {
                header: "record_cursor".into(),
            });
            spec.page_size.get_or_insert(1000);
            spec.page_size_param
                .get_or_insert_with(|| "max_records".into());
        }
        "notion" => {
            spec.method = Method::Post;
            set(&mut spec.records, "/results");
            set(&mut spec.id, "/id");
            spec.updated_at
                .get_or_insert_with(|| "/last_edited_time".into());
            spec.pagination.get_or_insert(Pagination::CursorBody {
                cursor_path: "/next_cursor".into(),
                param: "start_cursor".into(),
                has_more_path: Some("/has_more".into()),
            });
            spec.page_size.get_or_insert(100);
            spec.page_size_param
                .get_or_insert_with(|| "page_size".into());
            spec.incremental.get_or_insert(Incremental {
                param: None,
                format: TimeFormat::Rfc3339,
                lookback_secs: default_lookback(),
                body_filter: Some(serde_json::json!({"filter": {
                    "timestamp": "last_edited_time",
                    "last_edited_time": {"on_or_after": "{since}"}
                }})),
            });
        }
        "google_calendar" => {
            set(&mut spec.records, "/items");
            set(&mut spec.id, "/id");
            spec.updated_at.get_or_insert_with(|| "/updated".into());
            spec.deleted_when
                .get_or_insert(("/status".into(), Value::String("cancelled".into())));
            spec.pagination.get_or_insert(Pagination::SyncToken {
                page_token_path: "/nextPageToken".into(),
                page_token_param: "pageToken".into(),
                sync_token_path: "/nextSyncToken".into(),
                sync_token_param: "syncToken".into(),
            });
            spec.page_size.get_or_insert(250);
            spec.page_size_param
                .get_or_insert_with(|| "maxResults".into());
        }
        other => {
            return Err(Error::Config(format!("unknown source preset {other:?}")));
        }
    }
    Ok(spec)
}

impl SourceSpec {
    /// The spec with its preset applied, checked.
    pub fn resolve(self, name: &str) -> Result<Self> {
        let spec = apply_preset(self)?;
        let problem = |what: &str| Err(Error::Config(format!("source {name}: {what}")));
        if spec.id.is_empty() || !spec.id.starts_with('/') {
            return problem("`id` must be a JSON pointer such as /id");
        }
        if !spec.records.is_empty() && !spec.records.starts_with('/') {
            return problem("`records` must be a JSON pointer (or empty for a top-level array)");
        }
        if spec.requests_per_second.is_nan() || spec.requests_per_second <= 0.0 {
            return problem("`requests_per_second` must be positive");
        }
        for zone in spec.time_zone.iter().chain(spec.mapping.timezones.values()) {
            if super::times::Zone::parse(zone).is_none() {
                return problem(&format!(
                    "unknown time zone {zone:?} (an IANA name such as Europe/Berlin, \
                     an offset such as +02:00, or UTC)"
                ));
            }
        }
        if (spec.digests.is_some() || spec.id_listing.is_some()) && spec.updated_at.is_none() {
            return problem(
                "`digests` and `id_listing` compare each record's updated-at: set `updated_at` (a JSON pointer)",
            );
        }
        Ok(spec)
    }
}
