//! The demo REST source of local runs : the page shapes
//! of the APIs syncline's presets speak, with data that can be changed
//! through control routes, so that local walkthroughs show real changes
//! flowing.
//!
//! | route | shape | collection |
//! |---|---|---|
//! | `GET /properties[/{id}]` | cursor in body, `updated_since` filter, `fields` (sparse field set) | generated properties |
//! | `POST /properties/_digests`, `GET /properties/_marks` | range digests and (id, updated-at) listing (docs/DISCREPANCIES.md) | generated properties |
//! | `GET /scheduled_events[/{id}]` | Calendly | events |
//! | `GET /v1/payment_intents[/{id}]` | Stripe (`starting_after`, `created[gte]`) | payments |
//! | `GET /api/v2.1/{owner}/{app}/report/{report}[/{ID}]` | Zoho Creator (`record_cursor` header, `modified_since`) | jobs |
//!
//! Control (not part of any real API): `POST /_demo/{collection}/change`,
//! `POST /_demo/{collection}/add` (body `{"count": n, "backdate": bool}`),
//! `POST /_demo/outage` (`{"on": bool}`: every API route answers 503).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use syncline::connectors::mark_text;
use syncline::discrepancy::ranges::{self, DIGEST_BYTES};
use syncline::error::{Error, Result};
use syncline::model::Timestamp;

mod apis;
use apis::*;

/// How many items each collection starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoCounts {
    pub properties: usize,
    pub events: usize,
    pub payments: usize,
    pub jobs: usize,
}

impl DemoCounts {
    /// Properties only (benchmarks and the property walkthroughs).
    pub const fn properties(count: usize) -> Self {
        Self {
            properties: count,
            events: 0,
            payments: 0,
            jobs: 0,
        }
    }
}

impl Default for DemoCounts {
    fn default() -> Self {
        Self {
            properties: 250,
            events: 12,
            payments: 20,
            jobs: 2355,
        }
    }
}

/// Property `i`, ten fields.
pub fn property(i: usize) -> Value {
    const CITIES: [&str; 4] = ["Hanoi", "Lisbon", "Austin", "Porto"];
    json!({
        "id": format!("prop-{i:06}"),
        "name": format!("Property {i}"),
        "street": format!("{} Market Street", i % 500 + 1),
        "city": CITIES[i % 4],
        "bedrooms": i % 5 + 1,
        "price": 100_000 + (i % 1000) * 250,
        "status": if i.is_multiple_of(7) { "sold" } else { "listed" },
        "agent": format!("agent-{}", i % 40),
        "listed_at": "2026-11-01T09:00:00Z",
        "updated_at": format!("2026-11-01T{:02}:{:02}:{:02}Z", (i / 3600) % 24, (i / 60) % 60, i % 60),
    })
}

/// Calendly scheduled event `i` served from `base`.
fn event(base: &str, i: usize) -> Value {
    let day = 23 + i / 8;
    let hour = 8 + i % 8;
    json!({
        "uri": format!("{base}/scheduled_events/EV{i:04}"),
        "name": format!("Site visit {i}"),
        "status": "active",
        "start_time": format!("2026-11-{day:02}T{hour:02}:00:00.000000Z"),
        "end_time": format!("2026-11-{day:02}T{hour:02}:45:00.000000Z"),
        "event_type": format!("{base}/event_types/site-visit"),
        "location": {"type": "physical", "location": format!("{} Market Street", i + 1)},
        "created_at": "2026-11-01T08:00:00.000000Z",
        "updated_at": "2026-11-01T08:00:00.000000Z",
    })
}

/// Stripe payment intent `i`.
fn payment(i: usize) -> Value {
    json!({
        "id": format!("pi_demo{i:04}"),
        "object": "payment_intent",
        "amount": 5_000 + i * 125,
        "currency": "usd",
        "status": "succeeded",
        "customer": format!("cus_demo{:03}", i % 7),
        "description": format!("Deposit for job {i}"),
        "created": 1_793_500_000 + i as i64 * 60,
    })
}

/// Zoho Creator job record `i`.
fn job(i: usize) -> Value {
    const CREWS: [&str; 6] = ["crew-a", "crew-b", "crew-c", "crew-d", "crew-e", "crew-f"];
    json!({
        "ID": format!("{}", 4_000_000 + i),
        "Job_Name": format!("Job {i}"),
        "Crew": CREWS[i % CREWS.len()],
        "Status": if i.is_multiple_of(5) { "Completed" } else { "Scheduled" },
        "Hours": (i % 8 + 1) as f64 * 0.5,
        // Local business time, as Zoho Creator shows it.
        "Scheduled_Start": format!("2026-11-{:02} {:02}:00:00", 23 + (i / 10) % 7, 7 + i % 10),
        "Modified_Time": format!("2026-11-01T{:02}:{:02}:00Z", (i / 60) % 24, i % 60),
    })
}

/// The demo's collections, as the control routes name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Collection {
    Properties,
    Events,
    Payments,
    Jobs,
}

impl Collection {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "properties" => Self::Properties,
            "events" => Self::Events,
            "payments" => Self::Payments,
            "jobs" => Self::Jobs,
            _ => return None,
        })
    }

    fn id_field(self) -> &'static str {
        match self {
            Self::Events => "uri",
            Self::Jobs => "ID",
            Self::Properties | Self::Payments => "id",
        }
    }

    /// Item `i` as first generated.
    fn generate(self, base: &str, i: usize) -> Value {
        match self {
            Self::Properties => property(i),
            Self::Events => event(base, i),
            Self::Payments => payment(i),
            Self::Jobs => job(i),
        }
    }

    /// Marks `item` modified now, or long ago (before any sync cursor), the
    /// way an import that keeps original times does.
    fn stamp(self, item: &mut Value, backdate: bool) {
        let now = Timestamp::now();
        let (rfc3339, unix) = if backdate {
            ("2026-10-01T00:00:00Z".to_owned(), 1_790_000_000)
        } else {
            (now.to_rfc3339(), now.as_secs())
        };
        match self {
            Self::Properties | Self::Events => item["updated_at"] = json!(rfc3339),
            Self::Payments => item["created"] = json!(unix),
            Self::Jobs => item["Modified_Time"] = json!(rfc3339),
        }
    }

    /// A visible change of `item` (a new price, name, amount or status).
    fn alter(self, item: &mut Value, revision: u64) {
        let bump = |value: &Value, by: i64| json!(value.as_i64().unwrap_or(0) + by);
        match self {
            Self::Properties => item["price"] = bump(&item["price"], 1_000),
            Self::Events => item["name"] = json!(format!("Site visit (rev {revision})")),
            Self::Payments => item["amount"] = bump(&item["amount"], 100),
            Self::Jobs => item["Status"] = json!(format!("Rescheduled (rev {revision})")),
        }
    }
}

/// A property's id and digest entry.
type MarkEntry = (String, [u8; DIGEST_BYTES]);

pub(super) struct Demo {
    base: String,
    counts: DemoCounts,
    /// Properties changed or added (index -> item); the rest are generated.
    properties: Mutex<BTreeMap<usize, Value>>,
    added_properties: Mutex<usize>,
    /// events, payments, jobs: held in full (small).
    collections: Mutex<BTreeMap<Collection, Vec<Value>>>,
    outage: AtomicBool,
    /// Changes made through the control routes, for unique new values.
    revision: AtomicU64,
    /// (id, digest entry) of every property in id order: what a source
    /// with a digest endpoint keeps. Built on the first digest request,
    /// then kept up to date by changes and additions.
    marks: Mutex<Option<Vec<MarkEntry>>>,
}

pub(super) type Shared = Arc<Demo>;

impl Demo {
    fn property_count(&self) -> usize {
        self.counts.properties + *self.added_properties.lock().expect("demo lock")
    }

    fn property_at(&self, i: usize) -> Value {
        self.properties
            .lock()
            .expect("demo lock")
            .get(&i)
            .cloned()
            .unwrap_or_else(|| property(i))
    }

    /// Records `item`'s digest entry, if the entries are kept yet.
    fn remark(&self, item: &Value) {
        let mut marks = self.marks.lock().expect("demo lock");
        let Some(marks) = marks.as_mut() else {
            return;
        };
        let id = item["id"].as_str().unwrap_or_default();
        let entry = ranges::entry(id, &mark_text(&item["updated_at"]));
        match marks.binary_search_by(|(known, _)| known.as_str().cmp(id)) {
            Ok(at) => marks[at].1 = entry,
            Err(at) => marks.insert(at, (id.to_owned(), entry)),
        }
    }

    /// Runs `f` over the digest entries, building them first if needed.
    fn with_marks<T>(&self, f: impl FnOnce(&[MarkEntry]) -> T) -> T {
        let mut marks = self.marks.lock().expect("demo lock");
        let marks = marks.get_or_insert_with(|| {
            let mut all: Vec<MarkEntry> = (0..self.property_count())
                .map(|i| {
                    let item = self.property_at(i);
                    let id = item["id"].as_str().unwrap_or_default().to_owned();
                    let entry = ranges::entry(&id, &mark_text(&item["updated_at"]));
                    (id, entry)
                })
                .collect();
            all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            all
        });
        f(marks)
    }

    fn list(&self, collection: Collection) -> Vec<Value> {
        self.collections
            .lock()
            .expect("demo lock")
            .get(&collection)
            .cloned()
            .unwrap_or_default()
    }
}

#[derive(Debug, Deserialize)]
struct ControlBody {
    #[serde(default = "one_item")]
    count: usize,
    /// Stamp the items as modified long ago (before any sync cursor), the
    /// way an import that keeps original times does.
    #[serde(default)]
    backdate: bool,
    /// Added items carry a start time that is not a date-time.
    #[serde(default)]
    invalid: bool,
}

fn one_item() -> usize {
    1
}

impl Default for ControlBody {
    fn default() -> Self {
        Self {
            count: 1,
            backdate: false,
            invalid: false,
        }
    }
}

/// The answer to a control route naming no collection.
fn no_such_collection() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "no such collection"})),
    )
        .into_response()
}

/// Changes the first `count` items of a collection and returns their ids.
async fn change(
    State(demo): State<Shared>,
    Path(name): Path<String>,
    body: Option<Json<ControlBody>>,
) -> Response {
    let Some(collection) = Collection::parse(&name) else {
        return no_such_collection();
    };
    let Json(body) = body.unwrap_or_default();
    let revision = demo.revision.fetch_add(1, Ordering::Relaxed) + 1;
    let mut changed = Vec::new();
    let mut edit = |item: &mut Value| {
        collection.alter(item, revision);
        collection.stamp(item, body.backdate);
        changed.push(item[collection.id_field()].clone());
    };
    if collection == Collection::Properties {
        let count = body.count.min(demo.property_count());
        let mut overrides = demo.properties.lock().expect("demo lock");
        let mut touched = Vec::with_capacity(count);
        for i in 0..count {
            let item = overrides.entry(i).or_insert_with(|| property(i));
            edit(item);
            touched.push(item.clone());
        }
        // The digest entries are locked after the items, never while.
        drop(overrides);
        touched.iter().for_each(|item| demo.remark(item));
    } else {
        let mut collections = demo.collections.lock().expect("demo lock");
        let list = collections.entry(collection).or_default();
        list.iter_mut().take(body.count).for_each(edit);
    }
    Json(json!({"collection": name, "changed": changed})).into_response()
}

/// Adds `count` new items to a collection and returns their ids.
async fn add(
    State(demo): State<Shared>,
    Path(name): Path<String>,
    body: Option<Json<ControlBody>>,
) -> Response {
    let Some(collection) = Collection::parse(&name) else {
        return no_such_collection();
    };
    let Json(body) = body.unwrap_or_default();
    let fresh = |i: usize| {
        let mut item = collection.generate(&demo.base, i);
        collection.stamp(&mut item, body.backdate);
        if body.invalid {
            item["Scheduled_Start"] = json!("TBD");
            item["start_time"] = json!("TBD");
        }
        item
    };
    let mut added = Vec::new();
    if collection == Collection::Properties {
        let mut count = demo.added_properties.lock().expect("demo lock");
        let mut overrides = demo.properties.lock().expect("demo lock");
        let mut touched = Vec::with_capacity(body.count);
        for _ in 0..body.count {
            let i = demo.counts.properties + *count;
            *count += 1;
            let item = fresh(i);
            added.push(item[collection.id_field()].clone());
            touched.push(item.clone());
            overrides.insert(i, item);
        }
        drop((count, overrides));
        touched.iter().for_each(|item| demo.remark(item));
    } else {
        let mut collections = demo.collections.lock().expect("demo lock");
        let list = collections.entry(collection).or_default();
        for _ in 0..body.count {
            let item = fresh(list.len());
            added.push(item[collection.id_field()].clone());
            list.push(item);
        }
    }
    Json(json!({"collection": name, "added": added})).into_response()
}

#[derive(Debug, Deserialize)]
struct OutageBody {
    on: bool,
}

async fn outage(State(demo): State<Shared>, Json(body): Json<OutageBody>) -> Response {
    demo.outage.store(body.on, Ordering::Relaxed);
    Json(json!({"outage": body.on})).into_response()
}

/// Serves `count` properties (and nothing else) on `addr` until the process
/// ends.
pub async fn serve(addr: SocketAddr, count: usize) -> Result<SocketAddr> {
    serve_demo(addr, DemoCounts::properties(count)).await
}

/// Serves every demo collection on `addr` until the process ends.
pub async fn serve_demo(addr: SocketAddr, counts: DemoCounts) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::internal(format!("demo source: binding {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::internal(format!("demo source: {e}")))?;
    let base = format!("http://{bound}");
    let mut collections = BTreeMap::new();
    for (collection, count) in [
        (Collection::Events, counts.events),
        (Collection::Payments, counts.payments),
        (Collection::Jobs, counts.jobs),
    ] {
        let items = (0..count).map(|i| collection.generate(&base, i)).collect();
        collections.insert(collection, items);
    }
    let demo = Arc::new(Demo {
        base,
        counts,
        properties: Mutex::new(BTreeMap::new()),
        added_properties: Mutex::new(0),
        collections: Mutex::new(collections),
        outage: AtomicBool::new(false),
        revision: AtomicU64::new(0),
        marks: Mutex::new(None),
    });
    use axum::routing::{get, post};
    let app = Router::new()
        .route("/properties", get(properties))
        .route("/properties/_digests", post(property_digests))
        .route("/properties/_marks", get(property_marks))
        .route("/properties/{id}", get(one_property))
        .route("/scheduled_events", get(events))
        .route("/scheduled_events/{id}", get(one_event))
        .route("/v1/payment_intents", get(payments))
        .route("/v1/payment_intents/{id}", get(one_payment))
        .route("/api/v2.1/{owner}/{app}/report/{report}", get(jobs))
        .route("/api/v2.1/{owner}/{app}/report/{report}/{id}", get(one_job))
        .route("/_demo/outage", post(outage))
        .route("/_demo/{collection}/change", post(change))
        .route("/_demo/{collection}/add", post(add))
        .with_state(demo);
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "demo source stopped");
        }
    });
    Ok(bound)
}
