//! A demo REST source for local runs (feature `embedded`): paginated JSON
//! properties with a cursor and an `updated_since` filter, generated from
//! their index so any number can be served without holding them.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::Query;
use axum::response::{IntoResponse, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{Error, Result};

#[derive(Debug, Deserialize)]
struct Params {
    #[serde(default)]
    cursor: Option<usize>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    updated_since: Option<String>,
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

/// Serves `count` properties on `addr` at `/properties` until the task is
/// dropped.
pub async fn serve(addr: SocketAddr, count: usize) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::internal(format!("demo source: binding {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::internal(format!("demo source: {e}")))?;
    let app = Router::new().route(
        "/properties",
        axum::routing::get(move |Query(params): Query<Params>| async move {
            let from = params.cursor.unwrap_or(0).min(count);
            let limit = params.limit.unwrap_or(100).clamp(1, 1000);
            let mut data = Vec::with_capacity(limit);
            let mut next = from;
            while next < count && data.len() < limit {
                let item = property(next);
                next += 1;
                let fresh = params
                    .updated_since
                    .as_deref()
                    .is_none_or(|since| item["updated_at"].as_str().is_some_and(|u| u >= since));
                if fresh {
                    data.push(item);
                }
            }
            let cursor = (next < count).then_some(next);
            Json(json!({"data": data, "next_cursor": cursor})).into_response()
        }),
    );
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "demo source stopped");
        }
    });
    Ok(bound)
}
