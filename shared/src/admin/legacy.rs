//! The admin APIs of the systems syncline replaces, in their own shapes,
//! over the same service calls (the same rules, the same audit):
//! - the property puller's `/api/v1/admin/sync/*` (`{"success": true,
//!   "data": {...}}`, Go-style durations such as `2h30m`);
//! - the Zoho sync worker's `/api/sync-worker/*`.
//!
//! Times are ISO 8601 (RFC 3339, UTC). With several sources, a `source`
//! query parameter picks one; without it, start, stop and settings apply
//! to every source and status sums them.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{AdminService, Health, SettingsChange, SourceStatus, SyncTrigger};
use crate::error::{Error, Result};
use crate::model::{Interval, RunKind, RunLog, RunStatus, SourceId, Timestamp};
use crate::sync::rfc3339;

/// The deepest page the logs route reads to (it reads every run before it).
const MAX_OFFSET: u32 = 10_000;
/// Runs read to total up the worker's statistics.
const STATS_RUNS: u32 = 1000;

/// `{"setting_key", "setting_value"}`, as the puller's settings table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingEntry {
    pub setting_key: String,
    pub setting_value: String,
}

fn iso(at: Option<Timestamp>) -> Value {
    at.map_or(Value::Null, |at| json!(rfc3339(at)))
}

/// A duration the way Go prints it, to the second: `2h30m`, `45m10s`, `8s`.
pub fn go_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

fn since(earlier: Timestamp, now: Timestamp) -> Duration {
    Duration::from_millis(u64::try_from(now.as_millis() - earlier.as_millis()).unwrap_or(0))
}

fn ok(data: Value) -> Value {
    json!({"success": true, "data": data})
}

impl AdminService {
    /// The sources a legacy call is about: the one named, or all.
    fn chosen(&self, source: Option<&SourceId>) -> Result<Vec<SourceId>> {
        match source {
            Some(source) => {
                self.engine.sources().get(source)?;
                Ok(vec![source.clone()])
            }
            None => Ok(self.engine.sources().ids().cloned().collect()),
        }
    }

    async fn chosen_statuses(
        &self,
        source: Option<&SourceId>,
        now: Timestamp,
    ) -> Result<Vec<SourceStatus>> {
        let chosen = self.chosen(source)?;
        Ok(self
            .status(now)
            .await?
            .into_iter()
            .filter(|s| chosen.contains(&s.source))
            .collect())
    }

    /// `GET /api/v1/admin/sync/status`.
    pub async fn legacy_status(&self, source: Option<&SourceId>, now: Timestamp) -> Result<Value> {
        let statuses = self.chosen_statuses(source, now).await?;
        Ok(ok(status_data(&statuses)))
    }

    /// `GET /api/v1/admin/sync/health`: the verdict is in the body
    /// (`is_healthy`), so the status code is 200 either way.
    pub async fn legacy_health(&self, source: Option<&SourceId>, now: Timestamp) -> Result<Value> {
        let statuses = self.chosen_statuses(source, now).await?;
        let health = statuses
            .iter()
            .map(|s| s.health)
            .max_by_key(|h| *h as u8)
            .unwrap_or(Health::Healthy);
        let is_running = statuses.iter().any(|s| s.enabled);
        let is_overdue = statuses
            .iter()
            .any(|s| s.reasons.iter().any(|r| r.starts_with("overdue")));
        let last_success = statuses.iter().filter_map(|s| s.last_success).max();
        let next = statuses
            .iter()
            .filter(|s| s.enabled)
            .filter_map(|s| s.next_due)
            .min();
        let reasons: Vec<&String> = statuses.iter().flat_map(|s| &s.reasons).collect();
        let summary = match (is_running, reasons.is_empty()) {
            (false, _) => "Sync service is stopped".to_owned(),
            (true, true) => "Sync service is running".to_owned(),
            (true, false) => format!(
                "Sync service is running; {}",
                reasons
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        };
        Ok(ok(json!({
            "status": health,
            "is_running": is_running,
            "is_healthy": health == Health::Healthy,
            "is_overdue": is_overdue,
            "last_sync_age": last_success.map(|at| go_duration(since(at, now))),
            "next_sync_in": next.map(|at| go_duration(since(now, at))),
            "sync_interval": shortest_interval(&statuses),
            "summary": summary,
            "checked_at": rfc3339(now),
        })))
    }

    /// `POST /api/v1/admin/sync/start[?interval=24h]` and `.../stop`: the
    /// sources enabled (with the interval) or disabled, audited.
    pub async fn legacy_run_state(
        &self,
        source: Option<&SourceId>,
        enabled: bool,
        interval: Option<Interval>,
        who: &str,
    ) -> Result<()> {
        self.change_chosen(
            source,
            |source| SettingsChange {
                source,
                interval,
                enabled: Some(enabled),
                page_size: None,
                requests_per_second: None,
            },
            who,
        )
        .await
    }

    /// One settings change, as `change` makes it for each chosen source.
    async fn change_chosen(
        &self,
        source: Option<&SourceId>,
        change: impl Fn(SourceId) -> SettingsChange,
        who: &str,
    ) -> Result<()> {
        for source in self.chosen(source)? {
            self.change_settings(&change(source), who).await?;
        }
        Ok(())
    }

    /// `POST /api/v1/admin/sync`: a run of every source, queued now.
    pub async fn legacy_trigger(
        &self,
        source: Option<&SourceId>,
        kind: Option<RunKind>,
        who: &str,
    ) -> Result<Value> {
        let id = self
            .trigger(
                &SyncTrigger {
                    source: source.cloned(),
                    kind,
                },
                who,
            )
            .await?;
        let statuses = self.chosen_statuses(source, Timestamp::now()).await?;
        let estimate = statuses
            .iter()
            .filter_map(|s| s.last_run.as_ref())
            .filter_map(|r| Some(since(r.started_at, r.finished_at?)))
            .max();
        Ok(ok(json!({
            "status": "running",
            "message": "Synchronization started in background",
            "estimated_duration": estimate.map(go_duration),
            "triggered_at": rfc3339(Timestamp::now()),
            "message_id": id.as_str(),
        })))
    }

    /// `GET /api/v1/admin/sync/logs?limit=&offset=`: runs newest first.
    pub async fn legacy_logs(
        &self,
        source: Option<&SourceId>,
        limit: u32,
        offset: u32,
    ) -> Result<Value> {
        let limit = limit.clamp(1, 200);
        if offset > MAX_OFFSET {
            return Err(Error::validation("offset", format!("at most {MAX_OFFSET}")));
        }
        let wanted = (offset + limit + 1) as usize;
        let mut runs: Vec<RunLog> = Vec::new();
        let mut token = None;
        loop {
            let (page, next) = self.runs(source, None, 200, token.as_ref()).await?;
            runs.extend(page);
            if runs.len() >= wanted || next.is_none() {
                break;
            }
            token = next;
        }
        let has_more = runs.len() > (offset + limit) as usize;
        let logs: Vec<Value> = runs
            .iter()
            .skip(offset as usize)
            .take(limit as usize)
            .map(log_entry)
            .collect();
        Ok(ok(json!({
            "logs": logs, "limit": limit, "offset": offset, "has_more": has_more
        })))
    }

    /// `GET /api/v1/admin/sync/settings`: one entry per setting and source.
    pub async fn legacy_settings(&self, source: Option<&SourceId>) -> Result<Value> {
        let chosen = self.chosen(source)?;
        let mut entries = Vec::new();
        for (source, settings) in self.settings().await? {
            if !chosen.contains(&source) {
                continue;
            }
            for (key, value, description) in [
                (
                    "sync_interval",
                    settings.interval.to_string(),
                    "time between scheduled runs (1m to 31d)",
                ),
                (
                    "sync_enabled",
                    settings.enabled.to_string(),
                    "whether scheduled runs happen",
                ),
                (
                    "sync_batch_size",
                    settings.page_size.to_string(),
                    "records asked for per page",
                ),
                (
                    "sync_rate_limit",
                    settings.requests_per_second.to_string(),
                    "requests per second to the source",
                ),
            ] {
                entries.push(json!({"setting_key": key, "setting_value": value,
                                    "description": description, "source": source}));
            }
        }
        Ok(ok(json!(entries)))
    }

    /// `PUT /api/v1/admin/sync/settings` with `[{"setting_key",
    /// "setting_value"}]`: every entry checked before any is applied.
    pub async fn legacy_change_settings(
        &self,
        source: Option<&SourceId>,
        entries: &[SettingEntry],
        who: &str,
    ) -> Result<Value> {
        if entries.is_empty() {
            return Err(Error::validation("settings", "name at least one setting"));
        }
        let (mut interval, mut enabled, mut page_size, mut requests_per_second) =
            (None, None, None, None);
        for entry in entries {
            let value = entry.setting_value.trim();
            let invalid = |what: &str| Error::validation(&entry.setting_key, what);
            match entry.setting_key.as_str() {
                "sync_interval" => interval = Some(Interval::parse(value)?),
                "sync_enabled" | "enable_auto_sync" => {
                    enabled = Some(value.parse().map_err(|_| invalid("true or false"))?);
                }
                "sync_batch_size" => {
                    page_size = Some(value.parse().map_err(|_| invalid("a whole number"))?);
                }
                "sync_rate_limit" => {
                    requests_per_second = Some(value.parse().map_err(|_| invalid("a number"))?);
                }
                other => {
                    return Err(Error::validation(
                        "setting_key",
                        format!(
                            "unknown setting {other:?} (sync_interval, sync_enabled, \
                             sync_batch_size, sync_rate_limit)"
                        ),
                    ));
                }
            }
        }
        self.change_chosen(
            source,
            |source| SettingsChange {
                source,
                interval,
                enabled,
                page_size,
                requests_per_second,
            },
            who,
        )
        .await?;
        self.legacy_settings(None).await
    }

    /// `GET /api/sync-worker/status`: running, its configuration, totals
    /// over the runs kept (the newest 1,000), the last run's time.
    pub async fn worker_status(&self, now: Timestamp) -> Result<Value> {
        let statuses = self.status(now).await?;
        let (runs, _) = self.runs(None, None, STATS_RUNS, None).await?;
        let finished: Vec<&RunLog> = runs
            .iter()
            .filter(|r| matches!(r.status, RunStatus::Succeeded | RunStatus::Failed))
            .collect();
        let sum = |f: fn(&RunLog) -> u64| finished.iter().map(|r| f(r)).sum::<u64>();
        let settings = self.settings().await?;
        let interval_ms = statuses
            .iter()
            .map(|s| s.interval.duration().as_millis() as u64)
            .min();
        Ok(json!({
            "success": true,
            "is_running": statuses.iter().any(|s| s.enabled),
            "config": {
                "syncIntervalMs": interval_ms,
                "batchSize": settings.iter().map(|(_, s)| s.page_size).max(),
                // Retries of one request to the source (failed runs are
                // retried by the next schedule tick).
                "maxRetries": crate::connectors::SOURCE_ATTEMPTS - 1,
                "enableAutoSync": statuses.iter().any(|s| s.enabled),
                "enableDiscrepancyDetection": true,
            },
            "stats": {
                "total_syncs": finished.len(),
                "successful_syncs": finished.iter().filter(|r| r.status == RunStatus::Succeeded).count(),
                "failed_syncs": finished.iter().filter(|r| r.status == RunStatus::Failed).count(),
                "records_added": sum(|r| r.counts.created),
                "records_updated": sum(|r| r.counts.updated),
                "records_removed": sum(|r| r.counts.deleted),
                "last_sync_duration": finished.first()
                    .and_then(|r| Some(since(r.started_at, r.finished_at?).as_millis() as u64))
                    .unwrap_or(0),
            },
            "last_sync_time": iso(finished.first().and_then(|r| r.finished_at)),
        }))
    }

    /// `POST /api/sync-worker/force-sync/{group}`: every stored record of
    /// the group (the sources' `group_by` field equal to it) synced again
    /// from the source, one queued force-sync each.
    pub async fn force_sync_group(
        &self,
        source: Option<&SourceId>,
        group: &str,
        who: &str,
    ) -> Result<Value> {
        let mut queued = Vec::new();
        let mut grouped_sources = 0;
        for source in self.chosen(source)? {
            let spec = self.engine.sources().get(&source)?.spec();
            let Some(field) = spec.group_by.clone() else {
                continue;
            };
            grouped_sources += 1;
            let mut members = Vec::new();
            self.store
                .visit_live_records(&spec.tenant, &spec.entity, |record| {
                    if record.field_is(&field, group) {
                        members.push(record.id.to_string());
                    }
                    true
                })
                .await?;
            for id in members {
                self.force_sync(&source, &id, who).await?;
                queued.push(id);
            }
        }
        if grouped_sources == 0 {
            return Err(Error::NotFound(
                "a source that groups its records (group_by)".into(),
            ));
        }
        Ok(json!({"success": true, "group": group, "queued": queued.len(), "records": queued}))
    }

    /// `GET /api/sync-worker/discrepancy-check`: every source checked now,
    /// without repair.
    pub async fn worker_discrepancy_check(&self, who: &str) -> Result<Value> {
        let mut reports = Vec::new();
        for source in self.chosen(None)? {
            reports.push(self.check(&source, false, who).await?);
        }
        let total = |f: fn(&crate::discrepancy::Report) -> u64| reports.iter().map(f).sum::<u64>();
        Ok(json!({
            "success": true,
            "has_discrepancies": reports.iter().any(|r| r.differences() > 0),
            "source_count": total(|r| r.source_count),
            "store_count": total(|r| r.store_count),
            "missing": total(|r| r.missing_total),
            "extra": total(|r| r.extra_total),
            "stale": total(|r| r.stale_total),
            "reports": reports,
        }))
    }
}

fn shortest_interval(statuses: &[SourceStatus]) -> Option<String> {
    statuses
        .iter()
        .map(|s| s.interval)
        .min_by_key(|i| i.duration())
        .map(|i| i.to_string())
}

fn status_data(statuses: &[SourceStatus]) -> Value {
    let last_runs: Vec<&RunLog> = statuses
        .iter()
        .filter_map(|s| s.last_run.as_ref())
        .collect();
    let sum = |f: fn(&RunLog) -> u64| last_runs.iter().map(|r| f(r)).sum::<u64>();
    json!({
        "is_running": statuses.iter().any(|s| s.enabled),
        "last_sync": iso(statuses.iter().filter_map(|s| s.last_success).max()),
        "next_sync": iso(statuses.iter().filter(|s| s.enabled).filter_map(|s| s.next_due).min()),
        "total_properties": sum(|r| r.counts.seen),
        "updated_properties": sum(|r| r.counts.created + r.counts.updated),
        "failed_properties": sum(|r| r.counts.failed),
        "sync_interval": shortest_interval(statuses),
        "last_error": statuses.iter().find_map(|s| s.last_error.clone()),
        "sources": statuses.iter().map(|s| json!({
            "source": s.source,
            "is_running": s.enabled,
            "in_progress": s.running,
            "sync_interval": s.interval.to_string(),
            "last_sync": iso(s.last_success),
            "next_sync": iso(s.next_due.filter(|_| s.enabled)),
            "health": s.health,
        })).collect::<Vec<_>>(),
    })
}

/// A run as a row of the puller's `sync_logs` table.
fn log_entry(run: &RunLog) -> Value {
    json!({
        "id": run.id,
        "sync_id": run.id,
        "source": run.source,
        "sync_type": run.kind,
        "trigger": run.trigger,
        "status": run.status,
        "started_at": rfc3339(run.started_at),
        "completed_at": iso(run.finished_at),
        "total_properties": run.counts.seen,
        "updated_properties": run.counts.created + run.counts.updated,
        "failed_properties": run.counts.failed,
        "error_message": run.error,
        "created_at": rfc3339(run.started_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_the_way_go_prints_them() {
        let d = |secs| go_duration(Duration::from_secs(secs));
        assert_eq!(d(9000), "2h30m");
        assert_eq!(d(12 * 3600), "12h");
        assert_eq!(d(2710), "45m10s");
        assert_eq!(d(600), "10m");
        assert_eq!(d(8), "8s");
    }
}
