//! The admin API's routes (API Gateway HTTP API), for tokens with the
//! `admin` scope only.

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Deserialize;
use serde_json::json;

use super::admin_legacy::{LegacyRoute, dispatch_legacy, legacy_route};
use super::http::{error_response, json_response, query_parameter};
use crate::admin::{
    AdminService, Health, Replay, SettingsChange, SyncTrigger, console_asset, render_dashboard,
};
use crate::auth::Authenticator;
use crate::error::{Error, Result};
use crate::model::{EntityType, RecordId, RunStatus, SourceId, Timestamp};
use crate::queue::MessageId;
use crate::store::PageToken;
use crate::sync::{ResolveRequest, SyncService};

/// The scope (or role) an admin token carries.
pub const ADMIN_SCOPE: &str = "admin";
const MAX_BODY: usize = 64 * 1024;

#[derive(Debug)]
pub struct AdminApi {
    pub service: AdminService,
    pub auth: Authenticator,
    /// The sync API's service, for the manual conflicts of the admin's
    /// tenant (listed and resolved with the sync API's rules).
    pub sync: SyncService,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CheckRequest {
    #[serde(default)]
    repair: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RedriveRequest {
    #[serde(default)]
    ids: Option<Vec<String>>,
}

pub async fn handle_admin(
    api: &AdminApi,
    request: Request,
) -> std::result::Result<Response<Body>, lambda_http::Error> {
    Ok(match dispatch(api, &request).await {
        Ok(response) => response,
        Err(error) => error_response(&error),
    })
}

/// The request body, refused when larger than the admin API takes.
pub(super) fn bytes(request: &Request) -> Result<&[u8]> {
    let bytes = request.body().as_ref();
    if bytes.len() > MAX_BODY {
        return Err(Error::PayloadTooLarge { limit: MAX_BODY });
    }
    Ok(bytes)
}

/// A JSON body; an empty one is `T::default()`.
fn body<T: for<'de> Deserialize<'de> + Default>(request: &Request) -> Result<T> {
    super::http::json_object(bytes(request)?, Some(T::default()))
}

/// `limit` (default `default`) and `cursor` query parameters.
fn paging(request: &Request, default: u32) -> Result<(u32, Option<PageToken>)> {
    let limit = query_parameter(request, "limit")
        .map(|l| {
            l.parse::<u32>()
                .map_err(|_| Error::validation("limit", "a number"))
        })
        .transpose()?
        .unwrap_or(default);
    let after = query_parameter(request, "cursor")
        .as_deref()
        .map(PageToken::parse)
        .transpose()?;
    Ok((limit, after))
}

/// The admin API's routes; path parameters are still raw text.
enum Route<'a> {
    /// The older admin APIs (`lambda/admin_legacy.rs`).
    Legacy(LegacyRoute<'a>),
    Status,
    Health,
    Runs,
    Changes,
    Settings,
    ChangeSettings,
    Sync,
    ForceSync {
        source: &'a str,
        id: &'a str,
    },
    Discrepancies,
    Check {
        source: &'a str,
    },
    DeadLetters,
    Redrive,
    Dashboard,
    History,
    Conflicts,
    ResolveConflict {
        id: &'a str,
    },
    Record {
        entity: &'a str,
        id: &'a str,
    },
    Destinations,
    Deliveries {
        destination: &'a str,
    },
    Enable {
        destination: &'a str,
        enabled: bool,
    },
    Replay {
        destination: &'a str,
    },
    RetryDelivery {
        destination: &'a str,
        entity: &'a str,
        id: &'a str,
    },
}

/// The route at `path` and the method it takes; an unknown path is
/// `NotFound` before any authentication.
fn route<'a>(method: &Method, path: &'a str) -> Result<(Method, Route<'a>)> {
    if let Some((expected, legacy)) = legacy_route(method, path) {
        return Ok((expected, Route::Legacy(legacy)));
    }
    let route = match path {
        "/v1/admin/status" => (Method::GET, Route::Status),
        "/v1/admin/health" => (Method::GET, Route::Health),
        "/v1/admin/runs" => (Method::GET, Route::Runs),
        "/v1/admin/changes" => (Method::GET, Route::Changes),
        "/v1/admin/settings" if *method == Method::PUT => (Method::PUT, Route::ChangeSettings),
        "/v1/admin/settings" => (Method::GET, Route::Settings),
        "/v1/admin/sync" => (Method::POST, Route::Sync),
        "/v1/admin/discrepancies" => (Method::GET, Route::Discrepancies),
        "/v1/admin/dead-letters" => (Method::GET, Route::DeadLetters),
        "/v1/admin/dead-letters/redrive" => (Method::POST, Route::Redrive),
        "/v1/admin/dashboard" => (Method::GET, Route::Dashboard),
        "/v1/admin/history" => (Method::GET, Route::History),
        "/v1/admin/conflicts" => (Method::GET, Route::Conflicts),
        "/v1/admin/destinations" => (Method::GET, Route::Destinations),
        _ => {
            let single = |s: &&str| !s.is_empty() && !s.contains('/');
            let destination = path
                .strip_prefix("/v1/admin/destinations/")
                .and_then(|rest| rest.split_once('/'))
                .filter(|(name, _)| single(name));
            if let Some((destination, action)) = destination {
                let segments: Vec<&str> = action.split('/').collect();
                match segments.as_slice() {
                    ["deliveries"] => (Method::GET, Route::Deliveries { destination }),
                    ["enable"] => (
                        Method::POST,
                        Route::Enable {
                            destination,
                            enabled: true,
                        },
                    ),
                    ["disable"] => (
                        Method::POST,
                        Route::Enable {
                            destination,
                            enabled: false,
                        },
                    ),
                    ["replay"] => (Method::POST, Route::Replay { destination }),
                    ["deliveries", entity, id, "retry"] if !entity.is_empty() && !id.is_empty() => {
                        (
                            Method::POST,
                            Route::RetryDelivery {
                                destination,
                                entity,
                                id,
                            },
                        )
                    }
                    _ => return Err(Error::NotFound("route".into())),
                }
            } else if let Some((source, id)) = path
                .strip_prefix("/v1/admin/sync/")
                .and_then(|rest| rest.split_once("/records/"))
                .filter(|(source, id)| single(source) && !id.is_empty())
            {
                (Method::POST, Route::ForceSync { source, id })
            } else if let Some(source) =
                path.strip_prefix("/v1/admin/discrepancies/").filter(single)
            {
                (Method::POST, Route::Check { source })
            } else if let Some(id) = path
                .strip_prefix("/v1/admin/conflicts/")
                .and_then(|rest| rest.strip_suffix("/resolve"))
                .filter(single)
            {
                (Method::POST, Route::ResolveConflict { id })
            } else if let Some((entity, id)) = path
                .strip_prefix("/v1/admin/records/")
                .and_then(|rest| rest.split_once('/'))
                .filter(|(entity, id)| single(entity) && single(id))
            {
                (Method::GET, Route::Record { entity, id })
            } else {
                return Err(Error::NotFound("route".into()));
            }
        }
    };
    Ok(route)
}

async fn dispatch(api: &AdminApi, request: &Request) -> Result<Response<Body>> {
    let path = match request.raw_http_path() {
        "" => request.uri().path().to_owned(),
        raw => raw.to_owned(),
    };
    let path = path.trim_end_matches('/');
    // The console's page and assets carry no data: every figure on it
    // comes from the routes below, with the token it was given.
    if let Some(asset) = path
        .strip_prefix("/v1/admin/console")
        .and_then(console_asset)
    {
        if request.method() != Method::GET {
            return Err(Error::MethodNotAllowed { allow: "GET" });
        }
        return Ok(asset.response());
    }
    let (expected, route) = route(request.method(), path)?;
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let caller = api
        .auth
        .authenticate(authorization, super::http::authorizer_claims(request))?;
    if !caller.has_scope(ADMIN_SCOPE) {
        return Err(Error::Forbidden);
    }
    let who = caller.subject.clone().unwrap_or_else(|| "unknown".into());
    let service = &api.service;
    let now = Timestamp::now();
    let ok = |value: serde_json::Value| Ok(json_response(StatusCode::OK, &value));
    if request.method() != expected {
        let allow = match &route {
            Route::Legacy(legacy) => legacy.allow(),
            Route::Settings | Route::ChangeSettings => "GET, PUT",
            _ => super::http::allow(&expected),
        };
        return Err(Error::MethodNotAllowed { allow });
    }
    let source_id =
        |source: &str| SourceId::parse(source).map_err(|_| Error::NotFound("source".into()));
    match route {
        Route::Legacy(legacy) => dispatch_legacy(service, request, legacy, &who).await,
        Route::Status => ok(json!({"sources": service.status(now).await?})),
        Route::Health => {
            let (health, body) = service.health(now).await?;
            let status = if health == Health::Healthy {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            Ok(json_response(status, &body))
        }
        Route::Runs => {
            let source = query_parameter(request, "source")
                .as_deref()
                .map(SourceId::parse)
                .transpose()?;
            let status = query_parameter(request, "status")
                .map(|s| {
                    serde_json::from_value::<RunStatus>(json!(s)).map_err(|_| {
                        Error::validation("status", "running, continued, succeeded or failed")
                    })
                })
                .transpose()?;
            let (limit, after) = paging(request, 50)?;
            let (runs, next) = service
                .runs(source.as_ref(), status, limit, after.as_ref())
                .await?;
            ok(json!({"runs": runs, "next": next.map(|n| n.to_string())}))
        }
        Route::Changes => {
            let (limit, after) = paging(request, 50)?;
            let entity = query_parameter(request, "entity")
                .as_deref()
                .map(EntityType::parse)
                .transpose()?;
            let id = query_parameter(request, "id")
                .as_deref()
                .map(RecordId::parse)
                .transpose()?;
            let record = match (&entity, &id) {
                (Some(entity), Some(id)) => Some((entity, id)),
                (None, None) => None,
                _ => {
                    return Err(Error::validation(
                        "id",
                        "give both entity and id, or neither",
                    ));
                }
            };
            let (changes, next) = service
                .changes(&caller.tenant, record, limit, after.as_ref())
                .await?;
            ok(json!({"changes": changes, "next": next.map(|n| n.to_string())}))
        }
        Route::Settings => {
            let settings: Vec<_> = service
                .settings()
                .await?
                .into_iter()
                .map(|(source, s)| json!({"source": source, "settings": s}))
                .collect();
            ok(json!({"sources": settings}))
        }
        Route::ChangeSettings => {
            let change: SettingsChange = super::http::json_object(bytes(request)?, None)?;
            let settings = service.change_settings(&change, &who).await?;
            ok(json!({"source": change.source, "settings": settings}))
        }
        Route::Sync => {
            let trigger: SyncTrigger = body(request)?;
            let id = service.trigger(&trigger, &who).await?;
            Ok(json_response(
                StatusCode::ACCEPTED,
                &json!({"status": "queued", "message_id": id.as_str()}),
            ))
        }
        Route::Discrepancies => ok(json!({"reports": service.discrepancies(50).await?})),
        Route::DeadLetters => ok(json!({"dead_letters": service.dead_letters(100).await?})),
        Route::Redrive => {
            let redrive: RedriveRequest = body(request)?;
            let ids = redrive
                .ids
                .map(|ids| ids.into_iter().map(MessageId::new).collect());
            ok(json!({"moved": service.redrive(ids, &who).await?}))
        }
        Route::Dashboard => {
            let statuses = service.status(now).await?;
            let (health, _) = service.health(now).await?;
            let (failures, _) = service
                .runs(None, Some(RunStatus::Failed), 10, None)
                .await?;
            let dead = service.dead_letters(100).await?.len();
            let html = render_dashboard(health, &statuses, &failures, dead);
            let mut response = Response::new(Body::from(html));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            Ok(response)
        }
        Route::History => {
            let hours = query_parameter(request, "hours")
                .map(|h| {
                    h.parse::<u32>()
                        .ok()
                        .filter(|h| (1..=336).contains(h))
                        .ok_or_else(|| Error::validation("hours", "a number from 1 to 336"))
                })
                .transpose()?
                .unwrap_or(24);
            let since = Timestamp::from_millis(now.as_millis() - i64::from(hours) * 3_600_000);
            ok(json!({"samples": service.history(since).await?}))
        }
        Route::Conflicts => {
            let (limit, after) = paging(request, 50)?;
            let (conflicts, next) = service
                .conflicts(&api.sync, &caller, limit, after.as_ref())
                .await?;
            ok(json!({"conflicts": conflicts, "next": next.map(|n| n.to_string())}))
        }
        Route::ResolveConflict { id } => {
            let resolve: ResolveRequest = super::http::json_object(bytes(request)?, None)?;
            let record = service
                .resolve_conflict(&api.sync, &caller, id, &resolve, &who)
                .await?;
            ok(json!({"conflict": id, "status": "resolved", "record": record}))
        }
        Route::Record { entity, id } => {
            // A name no record can have names no record: 404, like any
            // other missing one.
            let missing = || Error::NotFound("record".into());
            let entity = EntityType::parse(entity).map_err(|_| missing())?;
            let id = RecordId::parse(&super::http::percent_decode(id)).map_err(|_| missing())?;
            let record = service
                .record(&caller.tenant, &entity, &id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("record {entity}/{id}")))?;
            ok(json!(record))
        }
        Route::Destinations => ok(json!({"destinations": service.destinations().await?})),
        Route::Deliveries { destination } => {
            let (limit, after) = paging(request, 50)?;
            let page = service
                .deliveries(destination, limit, after.as_ref())
                .await?;
            ok(json!({"deliveries": page.items, "next": page.next.map(|n| n.to_string())}))
        }
        Route::Enable {
            destination,
            enabled,
        } => {
            let state = service
                .set_destination_enabled(destination, enabled, &who)
                .await?;
            ok(json!({"destination": destination, "state": state}))
        }
        Route::Replay { destination } => {
            let replay: Replay = body(request)?;
            let state = service.replay(destination, &replay, &who).await?;
            ok(json!({"destination": destination, "state": state}))
        }
        Route::RetryDelivery {
            destination,
            entity,
            id,
        } => {
            let entity = EntityType::parse(entity)?;
            let id = RecordId::parse(&super::http::percent_decode(id))?;
            ok(service
                .retry_delivery(destination, &entity, &id, &who)
                .await?)
        }
        Route::Check { source } => {
            let request: CheckRequest = body(request)?;
            let report = service
                .check(&source_id(source)?, request.repair, &who)
                .await?;
            Ok(json_response(StatusCode::OK, &report))
        }
        Route::ForceSync { source, id } => {
            let id = super::http::percent_decode(id);
            let message = service.force_sync(&source_id(source)?, &id, &who).await?;
            Ok(json_response(
                StatusCode::ACCEPTED,
                &json!({"status": "queued", "message_id": message.as_str()}),
            ))
        }
    }
}
