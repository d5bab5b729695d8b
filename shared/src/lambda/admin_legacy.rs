//! The older admin routes, served by admin-api with the same checks as
//! `/v1/admin/*` (an admin token; 404 before auth, 405 after): the property
//! puller's `/api/v1/admin/sync/*` and the Zoho worker's
//! `/api/sync-worker/*` (shapes in `admin::legacy`).

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};

use super::http::{json_response, query_parameter};
use crate::admin::{AdminService, SettingEntry};
use crate::error::{Error, Result};
use crate::model::{Interval, RunKind, SourceId, Timestamp};

pub(super) enum LegacyRoute<'a> {
    Sync,
    Status,
    Start,
    Stop,
    Health,
    Logs,
    Settings,
    ChangeSettings,
    WorkerStatus,
    WorkerStart,
    WorkerStop,
    WorkerFullSync,
    WorkerIncrementalSync,
    WorkerForceSync { group: &'a str },
    WorkerDiscrepancyCheck,
}

impl LegacyRoute<'_> {
    /// The methods the route's path takes, for `Allow`.
    pub(super) fn allow(&self) -> &'static str {
        match self {
            LegacyRoute::Settings | LegacyRoute::ChangeSettings => "GET, PUT",
            LegacyRoute::Status
            | LegacyRoute::Health
            | LegacyRoute::Logs
            | LegacyRoute::WorkerStatus
            | LegacyRoute::WorkerDiscrepancyCheck => "GET",
            _ => "POST",
        }
    }
}

/// The older route at `path` and the method it takes, if it is one.
pub(super) fn legacy_route<'a>(
    method: &Method,
    path: &'a str,
) -> Option<(Method, LegacyRoute<'a>)> {
    let route = match path {
        "/api/v1/admin/sync" => (Method::POST, LegacyRoute::Sync),
        "/api/v1/admin/sync/status" => (Method::GET, LegacyRoute::Status),
        "/api/v1/admin/sync/start" => (Method::POST, LegacyRoute::Start),
        "/api/v1/admin/sync/stop" => (Method::POST, LegacyRoute::Stop),
        "/api/v1/admin/sync/health" => (Method::GET, LegacyRoute::Health),
        "/api/v1/admin/sync/logs" => (Method::GET, LegacyRoute::Logs),
        "/api/v1/admin/sync/settings" if *method == Method::PUT => {
            (Method::PUT, LegacyRoute::ChangeSettings)
        }
        "/api/v1/admin/sync/settings" => (Method::GET, LegacyRoute::Settings),
        "/api/sync-worker/status" => (Method::GET, LegacyRoute::WorkerStatus),
        "/api/sync-worker/start" => (Method::POST, LegacyRoute::WorkerStart),
        "/api/sync-worker/stop" => (Method::POST, LegacyRoute::WorkerStop),
        "/api/sync-worker/full-sync" => (Method::POST, LegacyRoute::WorkerFullSync),
        "/api/sync-worker/incremental-sync" => (Method::POST, LegacyRoute::WorkerIncrementalSync),
        "/api/sync-worker/discrepancy-check" => (Method::GET, LegacyRoute::WorkerDiscrepancyCheck),
        _ => {
            let group = path
                .strip_prefix("/api/sync-worker/force-sync/")
                .filter(|g| !g.is_empty() && !g.contains('/'))?;
            (Method::POST, LegacyRoute::WorkerForceSync { group })
        }
    };
    Some(route)
}

fn number(request: &Request, name: &str, default: u32) -> Result<u32> {
    query_parameter(request, name)
        .map(|v| {
            v.parse::<u32>()
                .map_err(|_| Error::validation(name, "a whole number"))
        })
        .transpose()
        .map(|v| v.unwrap_or(default))
}

pub(super) async fn dispatch_legacy(
    service: &AdminService,
    request: &Request,
    route: LegacyRoute<'_>,
    who: &str,
) -> Result<Response<Body>> {
    let source = query_parameter(request, "source")
        .as_deref()
        .map(SourceId::parse)
        .transpose()?;
    let source = source.as_ref();
    let now = Timestamp::now();
    let ok = |value| Ok(json_response(StatusCode::OK, &value));
    match route {
        LegacyRoute::Sync => Ok(json_response(
            StatusCode::ACCEPTED,
            &service.legacy_trigger(source, None, who).await?,
        )),
        LegacyRoute::Status => ok(service.legacy_status(source, now).await?),
        LegacyRoute::Health => ok(service.legacy_health(source, now).await?),
        LegacyRoute::Start | LegacyRoute::Stop => {
            let enabled = matches!(route, LegacyRoute::Start);
            let interval = query_parameter(request, "interval")
                .as_deref()
                .map(Interval::parse)
                .transpose()?;
            service
                .legacy_run_state(source, enabled, interval, who)
                .await?;
            ok(service.legacy_status(source, now).await?)
        }
        LegacyRoute::Logs => {
            let limit = number(request, "limit", 10)?;
            let offset = number(request, "offset", 0)?;
            ok(service.legacy_logs(source, limit, offset).await?)
        }
        LegacyRoute::Settings => ok(service.legacy_settings(source).await?),
        LegacyRoute::ChangeSettings => {
            let entries: Vec<SettingEntry> =
                serde_json::from_slice(super::admin_api::bytes(request)?)
                    .map_err(|e| Error::validation("settings", e.to_string()))?;
            ok(service
                .legacy_change_settings(source, &entries, who)
                .await?)
        }
        LegacyRoute::WorkerStatus => ok(service.worker_status(now).await?),
        LegacyRoute::WorkerStart | LegacyRoute::WorkerStop => {
            let enabled = matches!(route, LegacyRoute::WorkerStart);
            service.legacy_run_state(source, enabled, None, who).await?;
            ok(service.worker_status(now).await?)
        }
        LegacyRoute::WorkerFullSync | LegacyRoute::WorkerIncrementalSync => {
            let kind = match route {
                LegacyRoute::WorkerFullSync => RunKind::Full,
                _ => RunKind::Incremental,
            };
            Ok(json_response(
                StatusCode::ACCEPTED,
                &service.legacy_trigger(source, Some(kind), who).await?,
            ))
        }
        LegacyRoute::WorkerForceSync { group } => {
            let group = super::http::percent_decode(group);
            Ok(json_response(
                StatusCode::ACCEPTED,
                &service.force_sync_group(source, &group, who).await?,
            ))
        }
        LegacyRoute::WorkerDiscrepancyCheck => ok(service.worker_discrepancy_check(who).await?),
    }
}
