//! The operators' view: per-source status and health, run logs, settings
//! with an audit trail, sync triggers and dead letters (docs/OPERATIONS.md).

mod conflicts;
mod console;
mod dashboard;
mod destinations;
mod history;
mod legacy;

pub use console::{ConsoleAsset, console_asset};
pub use history::{DestinationSample, MAX_SAMPLES, SAMPLE_RETENTION, Sample, Sampler};

pub use destinations::Replay;
pub use legacy::{SettingEntry, go_duration};

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use dashboard::render_dashboard;

use crate::discrepancy::{DiscrepancyChecker, Report};
use crate::error::{Error, Result};
use crate::ingest::{SourceState, SyncEngine, SyncRunWork, runs_stream};
use crate::model::{
    EntityType, Interval, RecordId, RunKind, RunLog, RunStatus, SourceId, SourceSettings, TenantId,
    Timestamp,
};
use crate::queue::{MessageId, RetryQueue};
use crate::retry::{RetryEnvelope, WorkKind};
use crate::store::{KvExpect, KvKey, LogStream, PageToken, Store};

/// How long audit entries are kept.
/// A destination this many changes behind its feed makes health degraded.
const LAGGING: u64 = 1000;
pub(super) const AUDIT_RETENTION: Duration = Duration::from_secs(400 * 24 * 3600);
/// Runs read per source to judge failing / last run / last error.
const RECENT_RUNS: u32 = 20;
/// Change-trail entries read for one request at most (a record filter may
/// match few of them; `next` continues).
const TRAIL_SCAN: u32 = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy,
    Degraded,
    Unhealthy,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceStatus {
    pub source: SourceId,
    pub enabled: bool,
    pub interval: Interval,
    pub last_run: Option<RunLog>,
    #[serde(serialize_with = "crate::model::iso::option::serialize")]
    pub last_success: Option<Timestamp>,
    #[serde(serialize_with = "crate::model::iso::option::serialize")]
    pub next_due: Option<Timestamp>,
    pub running: bool,
    pub last_error: Option<String>,
    pub health: Health,
    pub reasons: Vec<String>,
}

/// A settings change; absent fields stay as they are.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsChange {
    pub source: SourceId,
    #[serde(default)]
    pub interval: Option<Interval>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub page_size: Option<u32>,
    #[serde(default)]
    pub requests_per_second: Option<f64>,
}

/// What an operator asks to run.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SyncTrigger {
    #[serde(default)]
    pub source: Option<SourceId>,
    /// `full` for a full resync.
    #[serde(default)]
    pub kind: Option<RunKind>,
}

pub struct AdminService {
    store: Store,
    queue: Arc<dyn RetryQueue>,
    engine: Arc<SyncEngine>,
    checker: DiscrepancyChecker,
    delivery: Arc<crate::delivery::DeliveryEngine>,
}

impl std::fmt::Debug for AdminService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminService").finish_non_exhaustive()
    }
}

pub(super) fn audit_stream() -> LogStream {
    LogStream::audit()
}

impl AdminService {
    pub fn new(store: Store, queue: Arc<dyn RetryQueue>, engine: Arc<SyncEngine>) -> Self {
        Self {
            checker: DiscrepancyChecker::new(store.clone(), queue.clone(), engine.clone()),
            delivery: Arc::new(crate::delivery::DeliveryEngine::none(
                store.clone(),
                queue.clone(),
            )),
            store,
            queue,
            engine,
        }
    }

    /// The service with the destinations of `delivery`.
    pub fn with_delivery(mut self, delivery: Arc<crate::delivery::DeliveryEngine>) -> Self {
        self.delivery = delivery;
        self
    }

    /// Stored discrepancy reports, newest first.
    pub async fn discrepancies(&self, limit: u32) -> Result<Vec<Report>> {
        self.checker.reports(None, limit.clamp(1, 200)).await
    }

    /// Runs a check now (and queues repairs when asked).
    pub async fn check(&self, source: &SourceId, repair: bool, who: &str) -> Result<Report> {
        let report = self.checker.check(source, repair).await?;
        self.store
            .append_log(
                &audit_stream(),
                &json!({"who": who, "at": Timestamp::now(), "action": "discrepancy_check",
                        "source": source, "repair": repair, "report": report.id}),
                AUDIT_RETENTION,
            )
            .await?;
        Ok(report)
    }

    /// The newest runs of one source.
    async fn recent_runs(&self, source: &SourceId) -> Result<Vec<RunLog>> {
        let page = self
            .store
            .read_log::<RunLog>(&LogStream::runs_of(source), RECENT_RUNS, None)
            .await?;
        Ok(page.items.into_iter().map(|e| e.entry).collect())
    }

    /// Every source's state, judged at `now`.
    pub async fn status(&self, now: Timestamp) -> Result<Vec<SourceStatus>> {
        let mut statuses = Vec::new();
        for source in self.engine.sources().ids() {
            let settings = self.engine.settings(source).await?;
            let state: SourceState = self.engine.state(source).await?;
            let mine = self.recent_runs(source).await?;
            let report = self.checker.reports(Some(source), 1).await?.pop();
            let finished: Vec<&RunLog> = mine
                .iter()
                .filter(|r| matches!(r.status, RunStatus::Succeeded | RunStatus::Failed))
                .collect();
            let running = self
                .store
                .kv_get::<Value>(&KvKey::new(KvKey::LEASE, format!("sync:{source}")))
                .await?
                .is_some();
            let interval = settings.interval.duration();
            let next_due = state.last_success.map(|at| at.plus(interval));
            let mut reasons = Vec::new();
            let mut health = Health::Healthy;
            if settings.enabled {
                // Overdue: no success within the interval plus half of it.
                let grace = interval / 2;
                let overdue = state
                    .last_success
                    .is_none_or(|at| at.plus(interval + grace) < now);
                if overdue {
                    health = Health::Unhealthy;
                    reasons.push(match state.last_success {
                        Some(_) => "overdue: no successful run within its interval".to_owned(),
                        None => "overdue: never synced successfully".to_owned(),
                    });
                }
                if finished
                    .first()
                    .is_some_and(|r| r.status == RunStatus::Failed)
                {
                    if health == Health::Healthy {
                        health = Health::Degraded;
                    }
                    reasons.push("failing: the last run failed".to_owned());
                }
            }
            if let Some(report) = &report
                && report.differences() > 0
            {
                if health == Health::Healthy {
                    health = Health::Degraded;
                }
                reasons.push(format!(
                    "discrepancies open: {} missing, {} extra, {} stale",
                    report.missing_total, report.extra_total, report.stale_total
                ));
            }
            statuses.push(SourceStatus {
                source: source.clone(),
                enabled: settings.enabled,
                interval: settings.interval,
                last_run: mine.first().cloned(),
                last_success: state.last_success,
                next_due,
                running,
                last_error: finished.iter().find_map(|r| r.error.clone()),
                health,
                reasons,
            });
        }
        Ok(statuses)
    }

    /// Overall health: the worst source, degraded while dead letters wait.
    pub async fn health(&self, now: Timestamp) -> Result<(Health, Value)> {
        let statuses = self.status(now).await?;
        let dead_letters = self.queue.dead_letter_count().await?;
        let mut overall = statuses
            .iter()
            .map(|s| s.health)
            .max_by_key(|h| *h as u8)
            .unwrap_or(Health::Healthy);
        let mut reasons = Vec::new();
        if dead_letters > 0 {
            if overall == Health::Healthy {
                overall = Health::Degraded;
            }
            reasons.push(format!("{dead_letters} dead letter(s) waiting"));
        }
        let destinations = self.destinations().await?;
        for destination in &destinations {
            let name = destination["destination"].as_str().unwrap_or("?");
            let lag = destination["lag"].as_u64().unwrap_or(0);
            let why = if destination["enabled"] == json!(false) {
                Some(format!(
                    "destination {name} is disabled with {lag} change(s) waiting"
                ))
            } else if lag >= LAGGING {
                Some(format!("destination {name} is {lag} changes behind"))
            } else {
                None
            };
            if let Some(why) = why {
                if overall == Health::Healthy {
                    overall = Health::Degraded;
                }
                reasons.push(why);
            }
        }
        let sources: Vec<Value> = statuses
            .iter()
            .map(|s| json!({"source": s.source, "health": s.health, "reasons": s.reasons}))
            .collect();
        Ok((
            overall,
            json!({"health": overall, "reasons": reasons, "sources": sources, "destinations": destinations}),
        ))
    }

    /// Run logs, newest first, optionally of one source or status.
    pub async fn runs(
        &self,
        source: Option<&SourceId>,
        status: Option<RunStatus>,
        limit: u32,
        after: Option<&PageToken>,
    ) -> Result<(Vec<RunLog>, Option<PageToken>)> {
        let limit = limit.clamp(1, 200);
        let mut found = Vec::new();
        let mut token = after.cloned();
        // One source's runs have a stream of their own; a status filter
        // applies after reading: keep reading until the page is full.
        let stream = source.map_or_else(runs_stream, LogStream::runs_of);
        loop {
            let page = self
                .store
                .read_log::<RunLog>(&stream, limit, token.as_ref())
                .await?;
            found.extend(
                page.items
                    .into_iter()
                    .map(|e| e.entry)
                    .filter(|r| status.is_none_or(|st| r.status == st)),
            );
            token = page.next;
            if found.len() >= limit as usize || token.is_none() {
                return Ok((found, token));
            }
        }
    }

    /// The tenant's change trail, newest first: who changed which records
    /// to which version; with `record`, only that record's changes.
    pub async fn changes(
        &self,
        tenant: &TenantId,
        record: Option<(&EntityType, &RecordId)>,
        limit: u32,
        after: Option<&PageToken>,
    ) -> Result<(Vec<Value>, Option<PageToken>)> {
        let page = self
            .store
            .read_trail(tenant, record, limit.clamp(1, 200), TRAIL_SCAN, after)
            .await?;
        let entries = page
            .items
            .into_iter()
            .map(|(at, entry)| {
                let mut value = json!(entry);
                value["at"] = json!(at.to_rfc3339());
                value
            })
            .collect();
        Ok((entries, page.next))
    }

    pub async fn settings(&self) -> Result<Vec<(SourceId, SourceSettings)>> {
        let mut all = Vec::new();
        for source in self.engine.sources().ids() {
            all.push((source.clone(), self.engine.settings(source).await?));
        }
        Ok(all)
    }

    /// Applies a change, audited with who made it.
    pub async fn change_settings(
        &self,
        change: &SettingsChange,
        who: &str,
    ) -> Result<SourceSettings> {
        self.engine.sources().get(&change.source)?;
        let old = self.engine.settings(&change.source).await?;
        let mut new = old.clone();
        if let Some(interval) = change.interval {
            new.interval = interval;
        }
        if let Some(enabled) = change.enabled {
            new.enabled = enabled;
        }
        if let Some(page_size) = change.page_size {
            if !(1..=10_000).contains(&page_size) {
                return Err(Error::validation("page_size", "between 1 and 10000"));
            }
            new.page_size = page_size;
        }
        if let Some(rate) = change.requests_per_second {
            if !(0.001..=1000.0).contains(&rate) {
                return Err(Error::validation(
                    "requests_per_second",
                    "from 0.001 to 1000",
                ));
            }
            new.requests_per_second = rate;
        }
        self.store
            .kv_put(
                &KvKey::new(KvKey::SETTINGS, change.source.as_str()),
                &new,
                None,
                KvExpect::Any,
            )
            .await?;
        self.store
            .append_log(
                &audit_stream(),
                &json!({"who": who, "at": Timestamp::now(), "action": "settings",
                        "source": change.source, "old": old, "new": new}),
                AUDIT_RETENTION,
            )
            .await?;
        Ok(new)
    }

    /// Queues a run (one source, or every due one); returns the message id.
    pub async fn trigger(&self, trigger: &SyncTrigger, who: &str) -> Result<MessageId> {
        if let Some(source) = &trigger.source {
            self.engine.sources().get(source)?;
        }
        let work = SyncRunWork {
            source: trigger.source.clone(),
            kind: trigger.kind,
        };
        let audit = json!({"action": "sync", "source": trigger.source, "kind": trigger.kind});
        self.enqueue(WorkKind::SyncRun, &work, trigger.source.clone(), who, audit)
            .await
    }

    /// Queues a force-sync of one record; returns the message id.
    pub async fn force_sync(&self, source: &SourceId, id: &str, who: &str) -> Result<MessageId> {
        self.engine.sources().get(source)?;
        let work = crate::ingest::ForceSyncWork {
            source: source.clone(),
            id: crate::model::RecordId::parse(id)?,
        };
        let audit = json!({"action": "force_sync", "source": source, "id": id});
        self.enqueue(WorkKind::ForceSync, &work, Some(source.clone()), who, audit)
            .await
    }

    /// Puts operator-requested work on the queue and audits it.
    async fn enqueue(
        &self,
        kind: WorkKind,
        work: &impl Serialize,
        source: Option<SourceId>,
        who: &str,
        mut audit: Value,
    ) -> Result<MessageId> {
        let payload = serde_json::to_value(work).map_err(|e| Error::Internal {
            context: format!("serializing {kind} work"),
            source: Some(Box::new(e)),
        })?;
        let mut envelope = RetryEnvelope::new(
            kind,
            payload,
            format!("{kind}:{}", uuid::Uuid::new_v4().simple()),
            "",
        );
        envelope.attempt = 0;
        envelope.last_error = None;
        envelope.source = source;
        let message = self
            .queue
            .send(&envelope.to_body()?, Duration::ZERO)
            .await?;
        audit["who"] = json!(who);
        audit["at"] = json!(Timestamp::now());
        audit["message_id"] = json!(message.as_str());
        self.store
            .append_log(&audit_stream(), &audit, AUDIT_RETENTION)
            .await?;
        Ok(message)
    }

    /// One record of `tenant` as the sync API shows it, deleted ones too.
    pub async fn record(
        &self,
        tenant: &TenantId,
        entity: &EntityType,
        id: &RecordId,
    ) -> Result<Option<crate::sync::RecordView>> {
        Ok(self
            .store
            .get_record(tenant, entity, id)
            .await?
            .as_ref()
            .map(crate::sync::RecordView::from))
    }

    /// Dead letters with their reasons.
    pub async fn dead_letters(&self, max: u32) -> Result<Vec<Value>> {
        Ok(self
            .queue
            .dead_letters(max)
            .await?
            .into_iter()
            .map(|letter| match RetryEnvelope::parse(&letter.body) {
                Ok(envelope) => json!({
                    "id": letter.id.as_str(), "kind": envelope.kind, "source": envelope.source,
                    "idempotency_key": envelope.idempotency_key, "attempts": envelope.attempt,
                    "error": envelope.last_error, "first_failed_at": envelope.first_failed_at,
                    "sent_at": letter.sent_at,
                }),
                Err(_) => {
                    json!({"id": letter.id.as_str(), "kind": "unreadable", "body": letter.body})
                }
            })
            .collect())
    }

    pub async fn redrive(&self, ids: Option<Vec<MessageId>>, who: &str) -> Result<u32> {
        let moved = self.queue.redrive(ids.as_deref()).await?;
        self.store
            .append_log(
                &audit_stream(),
                &json!({"who": who, "at": Timestamp::now(), "action": "redrive",
                        "ids": ids.map(|ids| ids.iter().map(|i| i.to_string()).collect::<Vec<_>>()),
                        "moved": moved}),
                AUDIT_RETENTION,
            )
            .await?;
        Ok(moved)
    }
}
