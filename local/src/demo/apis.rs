//! The demo's upstream APIs: the page shapes of the property listing
//! (with range digests and an id listing), Calendly, Stripe and Zoho
//! Creator, over the demo's collections.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Collection, Demo, Shared};
use syncline::discrepancy::ranges::RangeDigest;

#[derive(Debug, Deserialize)]
pub(super) struct PropertyParams {
    #[serde(default)]
    cursor: Option<usize>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    updated_since: Option<String>,
    /// A sparse field set: `fields=id,updated_at` returns those alone.
    #[serde(default)]
    fields: Option<String>,
}

pub(super) async fn properties(
    State(demo): State<Shared>,
    Query(params): Query<PropertyParams>,
) -> Response {
    if demo.outage.load(Ordering::Relaxed) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let count = demo.property_count();
    let from = params.cursor.unwrap_or(0).min(count);
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    let mut data = Vec::with_capacity(limit);
    let mut next = from;
    while next < count && data.len() < limit {
        let item = demo.property_at(next);
        next += 1;
        let fresh = params
            .updated_since
            .as_deref()
            .is_none_or(|since| item["updated_at"].as_str().is_some_and(|u| u >= since));
        if fresh {
            data.push(match &params.fields {
                Some(fields) => {
                    let keep: Vec<&str> = fields.split(',').map(str::trim).collect();
                    let Value::Object(map) = item else {
                        continue;
                    };
                    Value::Object(
                        map.into_iter()
                            .filter(|(k, _)| keep.contains(&k.as_str()))
                            .collect(),
                    )
                }
                None => item,
            });
        }
    }
    let cursor = (next < count).then_some(next);
    Json(json!({"data": data, "next_cursor": cursor})).into_response()
}

/// One property by id (`prop-000042`).
pub(super) async fn one_property(State(demo): State<Shared>, Path(id): Path<String>) -> Response {
    if demo.outage.load(Ordering::Relaxed) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let found = id
        .strip_prefix("prop-")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&i| i < demo.property_count())
        .map(|i| demo.property_at(i))
        .filter(|item| item["id"].as_str() == Some(id.as_str()));
    match found {
        Some(item) => Json(item).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"message": "not found"}))).into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct DigestRequest {
    bounds: Vec<String>,
}

/// Range digests of the properties: one per bound, range i running from
/// `bounds[i]` up to `bounds[i + 1]` (the last to the end).
pub(super) async fn property_digests(
    State(demo): State<Shared>,
    Json(request): Json<DigestRequest>,
) -> Response {
    if demo.outage.load(Ordering::Relaxed) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if request.bounds.first().is_none_or(|b| !b.is_empty())
        || request.bounds.windows(2).any(|w| w[0] >= w[1])
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "bounds must start with \"\" and ascend"})),
        )
            .into_response();
    }
    let ranges: Vec<Value> = demo.with_marks(|marks| {
        let starts: Vec<usize> = request
            .bounds
            .iter()
            .map(|b| marks.partition_point(|(id, _)| id < b))
            .chain([marks.len()])
            .collect();
        starts
            .windows(2)
            .map(|w| {
                let mut digest = RangeDigest::default();
                marks[w[0]..w[1]]
                    .iter()
                    .for_each(|(_, entry)| digest.add_entry(entry));
                json!({"count": digest.count, "digest": digest.hex()})
            })
            .collect()
    });
    Json(json!({ "ranges": ranges })).into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct MarksParams {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// The (id, updated-at) pairs of the properties with ids in `[from, to)`
/// after `after`, in id order.
pub(super) async fn property_marks(
    State(demo): State<Shared>,
    Query(params): Query<MarksParams>,
) -> Response {
    if demo.outage.load(Ordering::Relaxed) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let limit = params.limit.unwrap_or(1000).clamp(1, 1000);
    let ids: Vec<String> = demo.with_marks(|marks| {
        let start = marks.partition_point(|(id, _)| {
            id < &params.from || params.after.as_ref().is_some_and(|a| id <= a)
        });
        marks[start..]
            .iter()
            .take_while(|(id, _)| params.to.as_ref().is_none_or(|to| id < to))
            .take(limit + 1)
            .map(|(id, _)| id.clone())
            .collect()
    });
    let more = ids.len() > limit;
    let records: Vec<Value> = ids
        .iter()
        .take(limit)
        .filter_map(|id| {
            let i = id.strip_prefix("prop-")?.parse::<usize>().ok()?;
            let item = demo.property_at(i);
            Some(json!({"id": id, "mark": item["updated_at"]}))
        })
        .collect();
    let next = more.then(|| ids[limit - 1].clone());
    Json(json!({"records": records, "next": next})).into_response()
}

pub(super) fn param(query: &BTreeMap<String, String>, name: &str) -> Option<usize> {
    query.get(name).and_then(|v| v.parse().ok())
}

pub(super) async fn events(
    State(demo): State<Shared>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if demo.outage.load(Ordering::Relaxed) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let list = demo.list(Collection::Events);
    let size = param(&query, "count").unwrap_or(20).clamp(1, 100);
    let from = param(&query, "page_token").unwrap_or(0).min(list.len());
    let end = (from + size).min(list.len());
    let next = (end < list.len()).then(|| {
        format!(
            "{}/scheduled_events?count={size}&page_token={end}",
            demo.base
        )
    });
    Json(json!({"collection": list[from..end], "pagination": {"count": end - from, "next_page": next}}))
        .into_response()
}

pub(super) async fn one_event(State(demo): State<Shared>, Path(id): Path<String>) -> Response {
    let uri = format!("{}/scheduled_events/{id}", demo.base);
    one(
        &demo,
        Collection::Events,
        &uri,
        |item| json!({"resource": item}),
    )
}

pub(super) async fn payments(
    State(demo): State<Shared>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if demo.outage.load(Ordering::Relaxed) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let since: Option<i64> = query.get("created[gte]").and_then(|v| v.parse().ok());
    let list: Vec<Value> = demo
        .list(Collection::Payments)
        .into_iter()
        .filter(|p| since.is_none_or(|s| p["created"].as_i64().unwrap_or(0) >= s))
        .collect();
    let size = param(&query, "limit").unwrap_or(10).clamp(1, 100);
    let from = query.get("starting_after").map_or(0, |after| {
        list.iter()
            .position(|p| p["id"].as_str() == Some(after.as_str()))
            .map_or(list.len(), |p| p + 1)
    });
    let end = (from + size).min(list.len());
    Json(
        json!({"object": "list", "data": list[from..end], "has_more": end < list.len(),
                "url": "/v1/payment_intents"}),
    )
    .into_response()
}

pub(super) async fn one_payment(State(demo): State<Shared>, Path(id): Path<String>) -> Response {
    one(&demo, Collection::Payments, &id, |item| item)
}

pub(super) async fn jobs(
    State(demo): State<Shared>,
    Path((_owner, _app, _report)): Path<(String, String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if demo.outage.load(Ordering::Relaxed) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let since = query.get("modified_since");
    let list: Vec<Value> = demo
        .list(Collection::Jobs)
        .into_iter()
        .filter(|j| {
            since.is_none_or(|s| j["Modified_Time"].as_str().is_some_and(|m| m >= s.as_str()))
        })
        .collect();
    let size = param(&query, "max_records").unwrap_or(200).clamp(1, 1000);
    let from = headers
        .get("record_cursor")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(list.len());
    let end = (from + size).min(list.len());
    let mut response = Json(json!({"code": 3000, "data": list[from..end]})).into_response();
    if end < list.len() {
        response
            .headers_mut()
            .insert("record_cursor", HeaderValue::from(end));
    }
    response
}

pub(super) async fn one_job(
    State(demo): State<Shared>,
    Path((_owner, _app, _report, id)): Path<(String, String, String, String)>,
) -> Response {
    one(
        &demo,
        Collection::Jobs,
        &id,
        |item| json!({"code": 3000, "data": item}),
    )
}

pub(super) fn one(
    demo: &Demo,
    collection: Collection,
    id: &str,
    wrap: fn(Value) -> Value,
) -> Response {
    let field = collection.id_field();
    if demo.outage.load(Ordering::Relaxed) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    match demo
        .list(collection)
        .into_iter()
        .find(|item| item[field].as_str() == Some(id))
    {
        Some(item) => Json(wrap(item)).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"message": "not found"}))).into_response(),
    }
}
