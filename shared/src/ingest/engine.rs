use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::sources::{SourceSet, SourceState};
use crate::connectors::{
    Bounds, Fetched, HttpSource, OverlapIndex, PageState, TimeFormat, transform,
};
use crate::error::{Error, Result};
use crate::model::{
    MAX_REJECTED_LISTED, RecordId, Rejected, RunCounts, RunKind, RunLog, RunStatus, SourceId,
    SourceSettings, Timestamp,
};
use crate::queue::RetryQueue;
use crate::retry::{RetryEnvelope, WorkHandler, kinds};
use crate::store::{
    BatchOutcome, BulkWrite, Change, KvExpect, KvKey, LogId, LogStream, Store, Trail,
};

/// Time kept in hand before the invocation's deadline: the rest of the run
/// is handed on while a page can still be written and the message sent.
const SAFETY_MARGIN: Duration = Duration::from_secs(20);
/// How long the lease outlives the invocation, so the continuation finds
/// it still held.
const LEASE_SLACK: Duration = Duration::from_secs(15 * 60);
pub const RUN_LOG_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);
const SEEN_CHUNK: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Schedule,
    Manual,
    Continuation,
}

impl Trigger {
    fn name(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::Manual => "manual",
            Self::Continuation => "continuation",
        }
    }
}

/// What a run should do: `kind` None lets the engine choose (full on the
/// first run, incremental after).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    pub source: SourceId,
    pub kind: Option<RunKind>,
    pub trigger: Trigger,
}

/// Where a run that ran out of time stands; the body of a
/// `sync_continuation` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Continuation {
    pub source: SourceId,
    pub run_id: String,
    pub log_id: LogId,
    pub kind: RunKind,
    pub trigger: Trigger,
    pub started_at: Timestamp,
    pub page: PageState,
    pub pages_done: u64,
    pub since: Option<String>,
    pub sync_token: Option<String>,
    pub max_updated: Option<Value>,
    pub counts: RunCounts,
    /// Chunks of ids seen so far in a full run, kept in the store.
    pub seen_chunks: u32,
    /// The first refused records.
    #[serde(default)]
    pub rejected: Vec<Rejected>,
}

struct Run {
    c: Continuation,
    seen: HashSet<String>,
    next_sync_token: Option<String>,
}

impl Run {
    /// Counts a refused record and lists the first few with their reason.
    fn reject(&mut self, id: Option<String>, reason: String) {
        tracing::warn!(source = %self.c.source, id = id.as_deref().unwrap_or("-"), %reason, "record refused");
        self.c.counts.failed += 1;
        if self.c.rejected.len() < MAX_REJECTED_LISTED {
            self.c.rejected.push(Rejected { id, reason });
        }
    }
}

pub struct SyncEngine {
    store: Store,
    queue: Arc<dyn RetryQueue>,
    sources: SourceSet,
}

impl std::fmt::Debug for SyncEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncEngine")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

fn state_key(source: &SourceId) -> KvKey {
    KvKey::new(KvKey::SOURCE_STATE, source.as_str())
}

fn settings_key(source: &SourceId) -> KvKey {
    KvKey::new(KvKey::SETTINGS, source.as_str())
}

fn seen_key(source: &SourceId, run_id: &str, chunk: u32) -> KvKey {
    KvKey::new(
        KvKey::SOURCE_STATE,
        format!("{source}#{run_id}#seen#{chunk}"),
    )
}

fn lease_name(source: &SourceId) -> String {
    format!("sync:{source}")
}

pub fn runs_stream() -> LogStream {
    LogStream::runs()
}

/// The incremental lower bound: the newest updated-at seen, less the
/// lookback, in the source's format.
fn since_bound(source: &HttpSource, max: &Value) -> Option<String> {
    let incremental = source.spec().incremental.as_ref()?;
    let lookback = i64::try_from(incremental.lookback_secs).unwrap_or(i64::MAX);
    let at = match max {
        Value::Number(n) => {
            let n = n.as_i64()?;
            // Seconds or milliseconds since the epoch.
            if n > 100_000_000_000 { n / 1000 } else { n }
        }
        Value::String(s) => OffsetDateTime::parse(s, &Rfc3339).ok()?.unix_timestamp(),
        _ => return None,
    } - lookback;
    Some(match incremental.format {
        TimeFormat::Unix => at.to_string(),
        TimeFormat::Rfc3339 => OffsetDateTime::from_unix_timestamp(at)
            .ok()?
            .format(&Rfc3339)
            .ok()?,
    })
}

/// Whether `a` is later than `b` (numbers by value, text by RFC 3339 time,
/// else by text).
fn later(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() > y.as_f64(),
        (Value::String(x), Value::String(y)) => {
            match (
                OffsetDateTime::parse(x, &Rfc3339),
                OffsetDateTime::parse(y, &Rfc3339),
            ) {
                (Ok(x), Ok(y)) => x > y,
                _ => x > y,
            }
        }
        _ => false,
    }
}

impl SyncEngine {
    pub fn new(store: Store, queue: Arc<dyn RetryQueue>, sources: SourceSet) -> Self {
        Self {
            store,
            queue,
            sources,
        }
    }

    pub fn sources(&self) -> &SourceSet {
        &self.sources
    }

    pub async fn state(&self, source: &SourceId) -> Result<SourceState> {
        Ok(self
            .store
            .kv_get::<SourceState>(&state_key(source))
            .await?
            .map(|s| s.value)
            .unwrap_or_default())
    }

    /// Operator settings, or the source's configured defaults.
    pub async fn settings(&self, source: &SourceId) -> Result<SourceSettings> {
        if let Some(stored) = self
            .store
            .kv_get::<SourceSettings>(&settings_key(source))
            .await?
        {
            return Ok(stored.value);
        }
        let spec = self.sources.get(source)?.spec();
        Ok(SourceSettings {
            interval: spec.interval,
            enabled: spec.enabled,
            page_size: spec.page_size.unwrap_or(0),
            requests_per_second: spec.requests_per_second,
        })
    }

    /// The enabled sources whose interval has passed since their last
    /// successful run (or that never ran).
    /// Every enabled source, due or not ("sync all" from an operator).
    pub async fn enabled(&self) -> Result<Vec<SourceId>> {
        let mut enabled = Vec::new();
        for id in self.sources.ids() {
            if self.settings(id).await?.enabled {
                enabled.push(id.clone());
            }
        }
        Ok(enabled)
    }

    pub async fn due(&self, now: Timestamp) -> Result<Vec<SourceId>> {
        let mut due = Vec::new();
        for id in self.sources.ids() {
            let settings = self.settings(id).await?;
            if !settings.enabled {
                continue;
            }
            let state = self.state(id).await?;
            if state
                .last_success
                .is_none_or(|at| at.plus(settings.interval.duration()) <= now)
            {
                due.push(id.clone());
            }
        }
        Ok(due)
    }

    /// Runs one source until it is done or the time is up. Returns the run
    /// log, or `None` when another run of the source holds the lease.
    pub async fn run(&self, request: &RunRequest, deadline: Timestamp) -> Result<Option<RunLog>> {
        let settings = self.settings(&request.source).await?;
        let source = self
            .sources
            .get(&request.source)?
            .tuned(settings.page_size, settings.requests_per_second);
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let Some(_) = self.take_lease(&request.source, &run_id, deadline).await? else {
            return Ok(None);
        };
        let state = self.state(&request.source).await?;
        let kind = match request.kind {
            Some(kind) => kind,
            None if state.last_success.is_none() => RunKind::Full,
            None => RunKind::Incremental,
        };
        let started_at = Timestamp::now();
        let log = RunLog {
            id: run_id.clone(),
            source: request.source.clone(),
            kind,
            trigger: request.trigger.name().into(),
            status: RunStatus::Running,
            started_at,
            finished_at: None,
            counts: RunCounts::default(),
            error: None,
            rejected: Vec::new(),
        };
        let log_id = self
            .store
            .append_log(&runs_stream(), &log, RUN_LOG_RETENTION)
            .await?;
        self.store
            .put_log(
                &LogStream::runs_of(&request.source),
                &log_id,
                &log,
                RUN_LOG_RETENTION,
            )
            .await?;
        let incremental = kind == RunKind::Incremental;
        let run = Run {
            c: Continuation {
                source: request.source.clone(),
                run_id,
                log_id,
                kind,
                trigger: request.trigger,
                started_at,
                page: PageState::First,
                pages_done: 0,
                since: state
                    .since
                    .as_ref()
                    .filter(|_| incremental)
                    .and_then(|m| since_bound(&source, m)),
                sync_token: state.sync_token.clone().filter(|_| incremental),
                max_updated: None,
                counts: RunCounts::default(),
                seen_chunks: 0,
                rejected: Vec::new(),
            },
            seen: HashSet::new(),
            next_sync_token: None,
        };
        self.execute(&source, run, deadline).await.map(Some)
    }

    /// Continues a run handed on by an earlier invocation.
    pub async fn resume(&self, continuation: Continuation, deadline: Timestamp) -> Result<RunLog> {
        let settings = self.settings(&continuation.source).await?;
        let source = self
            .sources
            .get(&continuation.source)?
            .tuned(settings.page_size, settings.requests_per_second);
        if self
            .take_lease(&continuation.source, &continuation.run_id, deadline)
            .await?
            .is_none()
        {
            return Err(Error::Conflict(format!(
                "source {} is being synced by another run",
                continuation.source
            )));
        }
        let mut seen = HashSet::new();
        for chunk in 0..continuation.seen_chunks {
            let key = seen_key(&continuation.source, &continuation.run_id, chunk);
            if let Some(ids) = self.store.kv_get::<Vec<String>>(&key).await? {
                seen.extend(ids.value);
            }
        }
        let run = Run {
            c: continuation,
            seen,
            next_sync_token: None,
        };
        self.execute(&source, run, deadline).await
    }

    async fn take_lease(
        &self,
        source: &SourceId,
        owner: &str,
        deadline: Timestamp,
    ) -> Result<Option<crate::model::Lease>> {
        let remaining = Duration::from_millis(
            (deadline.as_millis() - Timestamp::now().as_millis()).max(0) as u64,
        );
        self.store
            .acquire_lease(&lease_name(source), owner, remaining + LEASE_SLACK)
            .await
    }

    async fn execute(
        &self,
        source: &HttpSource,
        mut run: Run,
        deadline: Timestamp,
    ) -> Result<RunLog> {
        let spec = source.spec();
        let mut overlap = OverlapIndex::default();
        loop {
            if Timestamp::now().plus(SAFETY_MARGIN) >= deadline && run.c.pages_done > 0 {
                return self.hand_on(run).await;
            }
            let bounds = Bounds {
                since: run.c.since.clone(),
                sync_token: run.c.sync_token.clone(),
            };
            let page = match source.fetch(&run.c.page, &bounds).await {
                Ok(Fetched::Page(page)) => page,
                Ok(Fetched::Gone) => {
                    tracing::warn!(source = %run.c.source, "sync token expired; running a full resync");
                    run.c.kind = RunKind::Full;
                    run.c.page = PageState::First;
                    run.c.since = None;
                    run.c.sync_token = None;
                    run.seen.clear();
                    continue;
                }
                Err(error) => return self.fail(run, &error).await,
            };
            let mut changes: Vec<BulkWrite> = Vec::with_capacity(page.items.len());
            let mut ids = HashSet::new();
            for item in &page.items {
                run.c.counts.seen += 1;
                match transform(spec, item) {
                    Ok(item) => {
                        if let Some(rule) = &spec.no_overlap
                            && let Err(reason) = overlap.admit(rule, &item.id, &item.change)
                        {
                            run.reject(Some(item.id.to_string()), reason);
                            continue;
                        }
                        if let Some(updated) = &item.updated_at
                            && run
                                .c
                                .max_updated
                                .as_ref()
                                .is_none_or(|max| later(updated, max))
                        {
                            run.c.max_updated = Some(updated.clone());
                        }
                        if run.c.kind == RunKind::Full {
                            run.seen.insert(item.id.to_string());
                        }
                        // A page that repeats an id keeps its last version.
                        if !ids.insert(item.id.clone()) {
                            changes.retain(|w| w.id != item.id);
                        }
                        changes.push(item.into_write());
                    }
                    Err(reason) => {
                        let id = item.pointer(&spec.id).map(|id| match id {
                            Value::String(id) => id.clone(),
                            other => other.to_string(),
                        });
                        run.reject(id, reason);
                    }
                }
            }
            let written = self.write_batch(spec, &run, changes).await;
            let outcome = match written {
                Ok(outcome) => outcome,
                Err(error) => return self.fail(run, &error).await,
            };
            run.c.counts.created += outcome.created;
            run.c.counts.updated += outcome.updated;
            run.c.counts.unchanged += outcome.unchanged;
            run.c.counts.deleted += outcome.deleted;
            run.c.pages_done += 1;
            if page.sync_token.is_some() {
                run.next_sync_token = page.sync_token.clone();
            }
            match page.next {
                Some(next) => run.c.page = next,
                None => break,
            }
        }
        if run.c.kind == RunKind::Full
            && let Err(error) = self.sweep(source, &mut run).await
        {
            return self.fail(run, &error).await;
        }
        self.finish(run).await
    }

    /// Writes a batch of a run's records, noted in the change trail under
    /// the run's id.
    async fn write_batch(
        &self,
        spec: &crate::connectors::SourceSpec,
        run: &Run,
        changes: Vec<BulkWrite>,
    ) -> Result<BatchOutcome> {
        self.store
            .upsert_marked(
                &spec.tenant,
                &spec.entity,
                Some(&run.c.source),
                changes,
                &Trail::new("sync", run.c.source.as_str(), run.c.run_id.as_str()),
            )
            .await
    }

    /// Tombstones the source's records that a full run did not see.
    async fn sweep(&self, source: &HttpSource, run: &mut Run) -> Result<()> {
        let spec = source.spec();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_record_heads(&spec.tenant, &spec.entity, 1000, after.as_ref())
                .await?;
            let gone: Vec<BulkWrite> = page
                .items
                .iter()
                .filter(|r| !r.deleted && r.source.as_ref() == Some(&run.c.source))
                .filter(|r| !run.seen.contains(r.id.as_str()))
                .map(|r| BulkWrite {
                    id: r.id.clone(),
                    change: Change::Delete,
                    mark: None,
                })
                .collect();
            if !gone.is_empty() {
                let outcome = self.write_batch(spec, run, gone).await?;
                run.c.counts.deleted += outcome.deleted;
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(()),
            }
        }
    }

    async fn finish(&self, run: Run) -> Result<RunLog> {
        let mut state = self.state(&run.c.source).await?;
        if let Some(max) = run.c.max_updated.clone()
            && (run.c.kind == RunKind::Full
                || state.since.as_ref().is_none_or(|old| later(&max, old)))
        {
            state.since = Some(max);
        }
        if run.next_sync_token.is_some() || run.c.kind == RunKind::Full {
            state.sync_token = run.next_sync_token.clone();
        }
        let now = Timestamp::now();
        state.last_success = Some(now);
        if run.c.kind == RunKind::Full {
            state.last_full = Some(now);
        }
        // Written only now: every record the new cursor covers is stored.
        self.store
            .kv_put(&state_key(&run.c.source), &state, None, KvExpect::Any)
            .await?;
        self.close(run, RunStatus::Succeeded, None).await
    }

    async fn fail(&self, run: Run, error: &Error) -> Result<RunLog> {
        tracing::error!(source = %run.c.source, error = %error.chain(), "sync run failed");
        self.close(run, RunStatus::Failed, Some(error.chain()))
            .await
    }

    /// Rewrites a run's log entry, in the stream of all runs and in its
    /// source's.
    async fn write_run_log(&self, id: &LogId, log: &RunLog) -> Result<()> {
        for stream in [runs_stream(), LogStream::runs_of(&log.source)] {
            self.store
                .put_log(&stream, id, log, RUN_LOG_RETENTION)
                .await?;
        }
        Ok(())
    }

    async fn close(&self, run: Run, status: RunStatus, error: Option<String>) -> Result<RunLog> {
        let log = RunLog {
            id: run.c.run_id.clone(),
            source: run.c.source.clone(),
            kind: run.c.kind,
            trigger: run.c.trigger.name().into(),
            status,
            started_at: run.c.started_at,
            finished_at: Some(Timestamp::now()),
            counts: run.c.counts,
            error,
            rejected: run.c.rejected.clone(),
        };
        self.write_run_log(&run.c.log_id, &log).await?;
        let counts = &log.counts;
        crate::metrics::emit(
            &[
                ("function", "scheduled-sync"),
                ("source", log.source.as_str()),
            ],
            &[
                (
                    "RecordsSynced",
                    (counts.created + counts.updated + counts.deleted) as f64,
                    crate::metrics::Unit::Count,
                ),
                (
                    "RecordsFailed",
                    counts.failed as f64,
                    crate::metrics::Unit::Count,
                ),
                (
                    "RunFailed",
                    f64::from(u8::from(status == RunStatus::Failed)),
                    crate::metrics::Unit::Count,
                ),
                (
                    "RunSucceeded",
                    f64::from(u8::from(status == RunStatus::Succeeded)),
                    crate::metrics::Unit::Count,
                ),
                (
                    "RunDuration",
                    (Timestamp::now().as_millis() - log.started_at.as_millis()) as f64,
                    crate::metrics::Unit::Milliseconds,
                ),
            ],
        );
        let lease = crate::model::Lease {
            name: lease_name(&run.c.source),
            owner: run.c.run_id.clone(),
            expires_at: Timestamp::now(),
        };
        self.store.release_lease(&lease).await?;
        Ok(log)
    }

    /// Checkpoints the run and queues its continuation.
    async fn hand_on(&self, mut run: Run) -> Result<RunLog> {
        let mut ids: Vec<String> = run.seen.drain().collect();
        ids.sort();
        let chunks: Vec<&[String]> = ids.chunks(SEEN_CHUNK).collect();
        for (n, chunk) in chunks.iter().enumerate() {
            let key = seen_key(&run.c.source, &run.c.run_id, n as u32);
            self.store
                .kv_put(
                    &key,
                    &chunk.to_vec(),
                    Some(Duration::from_secs(24 * 3600)),
                    KvExpect::Any,
                )
                .await?;
        }
        run.c.seen_chunks = chunks.len() as u32;
        let payload = serde_json::to_value(&run.c).map_err(|e| Error::Internal {
            context: "serializing a continuation".into(),
            source: Some(Box::new(e)),
        })?;
        let mut envelope = RetryEnvelope::new(
            kinds::SYNC_CONTINUATION,
            payload,
            format!("{}:{}", run.c.run_id, run.c.pages_done),
            "time budget reached",
        );
        envelope.attempt = 0;
        envelope.last_error = None;
        envelope.source = Some(run.c.source.clone());
        self.queue
            .send(&envelope.to_body()?, Duration::ZERO)
            .await?;
        let log = RunLog {
            id: run.c.run_id.clone(),
            source: run.c.source.clone(),
            kind: run.c.kind,
            trigger: run.c.trigger.name().into(),
            status: RunStatus::Continued,
            started_at: run.c.started_at,
            finished_at: None,
            counts: run.c.counts,
            error: None,
            rejected: run.c.rejected.clone(),
        };
        self.write_run_log(&run.c.log_id, &log).await?;
        Ok(log)
    }
}

impl SyncEngine {
    /// Re-fetches one record from its source and writes it (a tombstone when
    /// the source no longer has it). Returns what was written.
    pub async fn force_sync(&self, source_id: &SourceId, id: &RecordId) -> Result<BatchOutcome> {
        let source = self.sources.get(source_id)?;
        let spec = source.spec();
        let write = match source.fetch_one(id.as_str()).await? {
            None => BulkWrite {
                id: id.clone(),
                change: Change::Delete,
                mark: None,
            },
            Some(item) => {
                let item = transform(spec, &item).map_err(Error::Unprocessable)?;
                if &item.id != id {
                    return Err(Error::Upstream {
                        service: "source".into(),
                        reason: format!("asked for {id}, got {}", item.id),
                        retryable: false,
                    });
                }
                item.into_write()
            }
        };
        self.store
            .upsert_marked(
                &spec.tenant,
                &spec.entity,
                Some(source_id),
                vec![write],
                &Trail::new("force_sync", source_id.as_str(), id.as_str()),
            )
            .await
    }
}

/// The payload of `force_sync` work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForceSyncWork {
    pub source: SourceId,
    pub id: RecordId,
}

/// `force_sync` work: re-fetch one record and write it.
#[derive(Debug, Clone)]
pub struct ForceSyncHandler {
    engine: Arc<SyncEngine>,
}

impl ForceSyncHandler {
    pub fn new(engine: Arc<SyncEngine>) -> Self {
        Self { engine }
    }
}

#[async_trait]
impl WorkHandler for ForceSyncHandler {
    async fn handle(&self, envelope: &RetryEnvelope, _deadline: Timestamp) -> Result<()> {
        let work: ForceSyncWork = serde_json::from_value(envelope.payload.clone())
            .map_err(|e| Error::validation("force sync", e.to_string()))?;
        self.engine
            .force_sync(&work.source, &work.id)
            .await
            .map(|_| ())
    }
}

/// `sync_run` work: a run asked for through the admin API.
#[derive(Debug, Clone)]
pub struct SyncRunHandler {
    engine: Arc<SyncEngine>,
}

impl SyncRunHandler {
    pub fn new(engine: Arc<SyncEngine>) -> Self {
        Self { engine }
    }
}

/// The payload of `sync_run` work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncRunWork {
    /// One source, or every enabled one when absent.
    #[serde(default)]
    pub source: Option<SourceId>,
    #[serde(default)]
    pub kind: Option<RunKind>,
}

#[async_trait]
impl WorkHandler for SyncRunHandler {
    async fn handle(&self, envelope: &RetryEnvelope, deadline: Timestamp) -> Result<()> {
        let work: SyncRunWork = serde_json::from_value(envelope.payload.clone())
            .map_err(|e| Error::validation("sync run", e.to_string()))?;
        let sources = match work.source {
            Some(source) => vec![source],
            None => self.engine.enabled().await?,
        };
        for source in sources {
            let request = RunRequest {
                source: source.clone(),
                kind: work.kind,
                trigger: Trigger::Manual,
            };
            if self.engine.run(&request, deadline).await?.is_none() {
                // Busy: another run of this source is under way; try later.
                return Err(Error::Upstream {
                    service: "sync".into(),
                    reason: format!("source {source} is being synced by another run"),
                    retryable: true,
                });
            }
        }
        Ok(())
    }
}

/// `sync_continuation` work: resumes the run where it stopped.
#[derive(Debug, Clone)]
pub struct SyncContinuationHandler {
    engine: Arc<SyncEngine>,
}

impl SyncContinuationHandler {
    pub fn new(engine: Arc<SyncEngine>) -> Self {
        Self { engine }
    }
}

#[async_trait]
impl WorkHandler for SyncContinuationHandler {
    async fn handle(&self, envelope: &RetryEnvelope, deadline: Timestamp) -> Result<()> {
        let mut continuation: Continuation = serde_json::from_value(envelope.payload.clone())
            .map_err(|e| Error::validation("sync continuation", e.to_string()))?;
        continuation.trigger = Trigger::Continuation;
        let log = self.engine.resume(continuation, deadline).await?;
        match log.status {
            RunStatus::Failed => Err(Error::Upstream {
                service: "source".into(),
                reason: log.error.unwrap_or_default(),
                retryable: true,
            }),
            _ => Ok(()),
        }
    }
}
