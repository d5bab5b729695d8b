//! The sync API's routes (API Gateway HTTP API): authentication, limits,
//! JSON in and out, errors through `http::error_response`.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::http::{error_response, json_response, query_parameter};
use crate::auth::{Authenticator, Principal};
use crate::error::{Error, Result};
use crate::store::PageToken;
use crate::sync::{Caller, SyncService};

/// The sync function's state, built once per cold start.
#[derive(Debug)]
pub struct SyncApi {
    pub service: SyncService,
    pub auth: Authenticator,
}

enum Route {
    Push,
    Pull,
    Conflicts,
    Resolve(String),
    Record { entity: String, id: String },
    Slots,
    LegacyPush,
    LegacyPull,
    LegacyPending,
}

fn route(method: &Method, path: &str) -> Result<Route> {
    let path = path.trim_end_matches('/');
    let (expected, route) = match path {
        "/v1/sync/push" => (Method::POST, Route::Push),
        "/v1/sync/pull" => (Method::POST, Route::Pull),
        "/v1/sync/conflicts" => (Method::GET, Route::Conflicts),
        "/v1/sync/slots" => (Method::GET, Route::Slots),
        "/api/client/sync/push" => (Method::POST, Route::LegacyPush),
        "/api/client/sync/pull" => (Method::POST, Route::LegacyPull),
        "/api/client/sync/pull-pending" => (Method::POST, Route::LegacyPending),
        _ if path.starts_with("/v1/sync/records/") => {
            match path
                .strip_prefix("/v1/sync/records/")
                .and_then(|rest| rest.split_once('/'))
                .filter(|(entity, id)| !entity.is_empty() && !id.is_empty() && !id.contains('/'))
            {
                Some((entity, id)) => (
                    Method::GET,
                    Route::Record {
                        entity: entity.to_owned(),
                        id: super::http::percent_decode(id),
                    },
                ),
                None => return Err(Error::NotFound("route".into())),
            }
        }
        _ => match path
            .strip_prefix("/v1/sync/conflicts/")
            .and_then(|rest| rest.strip_suffix("/resolve"))
            .filter(|id| !id.is_empty() && !id.contains('/'))
        {
            Some(id) => (Method::POST, Route::Resolve(id.to_owned())),
            None => return Err(Error::NotFound("route".into())),
        },
    };
    if *method != expected {
        return Err(Error::MethodNotAllowed {
            allow: super::http::allow(&expected),
        });
    }
    Ok(route)
}

pub async fn handle_sync(
    api: &SyncApi,
    request: Request,
) -> std::result::Result<Response<Body>, lambda_http::Error> {
    Ok(match dispatch(api, &request).await {
        Ok((status, body)) => json_response(status, &body),
        Err(error) => error_response(&error),
    })
}

fn principal(api: &SyncApi, request: &Request) -> Result<Principal> {
    let header = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    api.auth
        .authenticate(header, super::http::authorizer_claims(request))
}

fn body<T: DeserializeOwned>(api: &SyncApi, request: &Request) -> Result<T> {
    body_or(api, request, None)
}

/// A JSON object body, or `empty` when the body is empty and may be.
fn body_or<T: DeserializeOwned>(api: &SyncApi, request: &Request, empty: Option<T>) -> Result<T> {
    let bytes = request.body().as_ref();
    let limit = api.service.registry().max_body_bytes;
    if bytes.len() > limit {
        return Err(Error::PayloadTooLarge { limit });
    }
    super::http::json_object(bytes, empty)
}

async fn dispatch(api: &SyncApi, request: &Request) -> Result<(StatusCode, serde_json::Value)> {
    let path = match request.raw_http_path() {
        "" => request.uri().path().to_owned(),
        raw => raw.to_owned(),
    };
    let route = route(request.method(), &path)?;
    let principal = principal(api, request)?;
    let caller = &Caller::of(&principal).with_device(
        request
            .headers()
            .get("x-client-id")
            .and_then(|v| v.to_str().ok()),
    )?;
    let service = &api.service;
    let ok = |value| Ok((StatusCode::OK, value));
    match route {
        Route::Push => {
            let response = service.push(caller, &body(api, request)?).await?;
            let count = |status| {
                response
                    .results
                    .iter()
                    .filter(|r| r.status == status)
                    .count() as f64
            };
            crate::metrics::emit(
                &[("function", "sync-api")],
                &[
                    (
                        "MutationsApplied",
                        count(crate::sync::Status::Applied),
                        crate::metrics::Unit::Count,
                    ),
                    (
                        "Conflicts",
                        count(crate::sync::Status::Conflict),
                        crate::metrics::Unit::Count,
                    ),
                    (
                        "MutationsRejected",
                        count(crate::sync::Status::Rejected),
                        crate::metrics::Unit::Count,
                    ),
                ],
            );
            ok(json(&response)?)
        }
        Route::Pull => {
            // An empty body is a pull of everything from the start.
            let pull = body_or(api, request, Some(crate::sync::PullRequest::default()))?;
            ok(json(&service.pull(caller, &pull).await?)?)
        }
        Route::Conflicts => {
            let limit = query_parameter(request, "limit")
                .map(|l| {
                    l.parse::<u32>()
                        .map_err(|_| Error::validation("limit", "a number"))
                })
                .transpose()?
                .unwrap_or(100);
            let after = query_parameter(request, "cursor")
                .as_deref()
                .map(PageToken::parse)
                .transpose()?;
            let (conflicts, next) = service.conflicts(caller, limit, after.as_ref()).await?;
            ok(json!({"conflicts": conflicts, "next": next.map(|n| n.to_string())}))
        }
        Route::Resolve(id) => {
            let record = service
                .resolve_conflict(
                    caller,
                    &id,
                    &body(api, request)?,
                    principal.subject.as_deref().unwrap_or("unknown"),
                )
                .await?;
            ok(json!({"id": id, "status": "resolved", "record": record}))
        }
        Route::Record { entity, id } => {
            let entity = crate::model::EntityType::parse(&entity)?;
            let id = crate::model::RecordId::parse(&id)?;
            ok(json!({"record": service.record(caller, &entity, &id).await?}))
        }
        Route::Slots => {
            let text = |name: &str| query_parameter(request, name);
            let required =
                |name: &str| text(name).ok_or_else(|| Error::validation(name, "required"));
            let number = |name: &str| {
                text(name)
                    .map(|v| {
                        v.parse::<u32>()
                            .map_err(|_| Error::validation(name, "whole minutes"))
                    })
                    .transpose()
            };
            let query = crate::sync::SlotQuery {
                entity: crate::model::EntityType::parse(&required("entity")?)?,
                resource: required("resource")?,
                date: required("date")?,
                duration_minutes: number("duration")?
                    .ok_or_else(|| Error::validation("duration", "required"))?,
                from: text("from"),
                to: text("to"),
                zone: text("zone"),
                step_minutes: number("step")?,
            };
            let slots = service.free_slots(caller, &query).await?;
            ok(json!({"resource": query.resource, "date": query.date,
                      "duration_minutes": query.duration_minutes, "slots": slots}))
        }
        Route::LegacyPush => ok(service.legacy_push(caller, &body(api, request)?).await?),
        Route::LegacyPull => ok(service.legacy_pull(caller, &body(api, request)?).await?),
        Route::LegacyPending => ok(service
            .legacy_pull_pending(caller, &body(api, request)?)
            .await?),
    }
}

fn json(value: &impl serde::Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::Internal {
        context: "serializing a response".into(),
        source: Some(Box::new(e)),
    })
}
