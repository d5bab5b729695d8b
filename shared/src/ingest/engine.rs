use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use serde_json::Value;

use super::run::{Continuation, Run, RunRequest};
use super::sources::{SourceSet, SourceState};
use super::writing::{Settled, Writing, finish_writing};
use crate::connectors::times;
use crate::connectors::{
    Bounds, Fetched, HttpSource, OverlapIndex, PageState, TimeFormat, transform,
};
use crate::error::{Error, Result};
use crate::model::{RunCounts, RunKind, RunLog, RunStatus, SourceId, SourceSettings, Timestamp};
use crate::queue::RetryQueue;
use crate::retry::{RetryEnvelope, WorkKind};
use crate::store::{BulkWrite, Change, KvExpect, KvKey, LogId, LogStream, Store};

/// Time kept in hand before the invocation's deadline: the rest of the run
/// is handed on while a page can still be written and the message sent.
const SAFETY_MARGIN: Duration = Duration::from_secs(20);
/// How long the lease outlives the invocation, so the continuation finds
/// it still held.
const LEASE_SLACK: Duration = Duration::from_secs(15 * 60);
pub const RUN_LOG_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);
const SEEN_CHUNK: usize = 2000;

pub struct SyncEngine {
    pub(super) store: Store,
    queue: Arc<dyn RetryQueue>,
    pub(super) sources: SourceSet,
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

mod ending;

fn lease_name(source: &SourceId) -> String {
    format!("sync:{source}")
}

pub fn runs_stream() -> LogStream {
    LogStream::runs()
}

/// The incremental lower bound: the newest updated-at seen, less the
/// lookback, in the source's format.
fn since_bound(source: &HttpSource, max: &Value) -> Option<String> {
    let spec = source.spec();
    let incremental = spec.incremental.as_ref()?;
    let lookback = i64::try_from(incremental.lookback_secs).unwrap_or(i64::MAX);
    let zone = zone_of(spec);
    let at = match max {
        Value::Number(n) => {
            let n = n.as_i64()?;
            // Seconds or milliseconds since the epoch.
            if n > 100_000_000_000 { n / 1000 } else { n }
        }
        Value::String(s) => times::unix_seconds(times::instant(s, &zone)?),
        _ => return None,
    } - lookback;
    let at = jiff::Timestamp::from_second(at).ok()?;
    Some(match incremental.format {
        TimeFormat::Unix => times::unix_seconds(at).to_string(),
        TimeFormat::Rfc3339 => times::rfc3339_utc(at),
        TimeFormat::Zoho => times::zoho(at, &zone),
    })
}

/// The zone of a source's local times (checked when the source was read).
fn zone_of(spec: &crate::connectors::SourceSpec) -> times::Zone {
    spec.time_zone
        .as_deref()
        .and_then(times::Zone::parse)
        .unwrap_or_else(times::Zone::utc)
}

/// Whether `a` is later than `b` (numbers by value, text by the instant it
/// names in `zone`, else by text).
fn later(a: &Value, b: &Value, zone: &times::Zone) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() > y.as_f64(),
        (Value::String(x), Value::String(y)) => {
            match (times::instant(x, zone), times::instant(y, zone)) {
                (Some(x), Some(y)) => x > y,
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
        let mut log_id = None;
        let outcome = async {
            let state = self.state(&request.source).await?;
            let kind = match request.kind {
                Some(kind) => kind,
                None if state.last_success.is_none() => RunKind::Full,
                None => RunKind::Incremental,
            };
            let incremental = kind == RunKind::Incremental;
            // A first full sync into an empty store has nothing to sweep:
            // one read of a single head spares reading them all at the end.
            let sweep = kind == RunKind::Full
                && !self
                    .store
                    .list_record_heads(&source.spec().tenant, &source.spec().entity, 1, None)
                    .await?
                    .items
                    .is_empty();
            let mut progress = Continuation {
                source: request.source.clone(),
                run_id: run_id.clone(),
                // Replaced by the id the log entry gets when it is appended.
                log_id: LogId::new(Timestamp::now()),
                kind,
                trigger: request.trigger,
                started_at: Timestamp::now(),
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
                sweep,
                rejected: Vec::new(),
            };
            let log = progress.log(RunStatus::Running, None);
            progress.log_id = self
                .store
                .append_log(&runs_stream(), &log, RUN_LOG_RETENTION)
                .await?;
            self.store
                .put_log(
                    &LogStream::runs_of(&request.source),
                    &progress.log_id,
                    &log,
                    RUN_LOG_RETENTION,
                )
                .await?;
            log_id = Some(progress.log_id.clone());
            let run = Run {
                progress,
                seen: HashSet::new(),
                next_sync_token: None,
            };
            self.execute(&source, run, deadline).await
        }
        .await;
        match outcome {
            Ok(log) => Ok(Some(log)),
            Err(error) => {
                // Nothing retries this run under its id (a continuation
                // would): mark it failed and free the source now rather
                // than when the lease runs out.
                self.abandon(&request.source, &run_id, log_id.as_ref(), &error)
                    .await;
                Err(error)
            }
        }
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
            progress: continuation,
            seen,
            next_sync_token: None,
        };
        self.execute(&source, run, deadline).await
    }

    async fn execute(
        &self,
        source: &HttpSource,
        mut run: Run,
        deadline: Timestamp,
    ) -> Result<RunLog> {
        let spec = source.spec();
        let mut overlap = OverlapIndex::default();
        // The page to read next: the one after the page being written.
        let mut reading = run.progress.page.clone();
        // The next page, fetched while the last one was handed to a writer.
        let mut prefetched: Option<Result<Fetched>> = None;
        // The last page's write, still going on while the run reads on.
        let mut writing: Option<Writing> = None;
        loop {
            if Timestamp::now().plus(SAFETY_MARGIN) >= deadline
                && (run.progress.pages_done > 0 || writing.is_some())
            {
                if let Some(last) = writing.take() {
                    match self.settle(spec, &mut run, last).await {
                        Ok(Settled::Next) => {}
                        Ok(Settled::End) => break,
                        Err(error) => return self.fail(run, &error).await,
                    }
                }
                return self.continue_later(run).await;
            }
            let bounds = Bounds {
                since: run.progress.since.clone(),
                sync_token: run.progress.sync_token.clone(),
            };
            let fetched = match prefetched.take() {
                Some(fetched) => fetched,
                None => source.fetch(&reading, &bounds).await,
            };
            let page = match fetched {
                Ok(Fetched::Page(page)) => page,
                Ok(Fetched::Gone) => {
                    if let Some(last) = writing.take()
                        && let Err(error) = self.settle(spec, &mut run, last).await
                    {
                        return self.fail(run, &error).await;
                    }
                    tracing::warn!(source = %run.progress.source, "sync token expired; running a full resync");
                    run.progress.kind = RunKind::Full;
                    run.progress.sweep = true;
                    run.progress.page = PageState::First;
                    reading = PageState::First;
                    run.progress.since = None;
                    run.progress.sync_token = None;
                    run.seen.clear();
                    continue;
                }
                Err(error) => {
                    finish_writing(writing).await;
                    return self.fail(run, &error).await;
                }
            };
            let mut changes: Vec<BulkWrite> = Vec::with_capacity(page.items.len());
            let mut ids = HashSet::new();
            for item in &page.items {
                run.progress.counts.seen += 1;
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
                                .progress
                                .max_updated
                                .as_ref()
                                .is_none_or(|max| later(updated, max, &zone_of(spec)))
                        {
                            run.progress.max_updated = Some(updated.clone());
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
            if spec.linked {
                changes = match self.linked(spec, &run.progress.source, changes).await {
                    Ok(changes) => changes,
                    Err(error) => {
                        finish_writing(writing).await;
                        return self.fail(run, &error).await;
                    }
                };
            }
            if run.progress.kind == RunKind::Full {
                run.seen.extend(changes.iter().map(|w| w.id.to_string()));
            }
            // This page's write starts while the last page's goes on, unless
            // they share a record: then the last one's lands first.
            if let Some(last) =
                writing.take_if(|last| changes.iter().any(|w| last.ids.contains(w.id.as_str())))
                && let Err(error) = self.settle(spec, &mut run, last).await
            {
                return self.fail(run, &error).await;
            }
            let in_flight = 1 + u64::from(writing.is_some());
            // The page after this one is read now, unless it is one the
            // checks below stop the run at.
            let next = page.next.clone().filter(|next| {
                *next != reading && run.progress.pages_done + in_flight < spec.max_pages
            });
            let this = Writing {
                ids: changes.iter().map(|w| w.id.to_string()).collect(),
                task: self.spawn_write(spec, &run, changes),
                next: page.next,
                sync_token: page.sync_token,
            };
            // While this page is written: the last page's write is settled
            // (in page order, so the run's position only ever moves past
            // written pages) and the next page is read.
            let last = writing.replace(this);
            let (settled, fetched) = tokio::join!(
                async {
                    match last {
                        Some(last) => self.settle(spec, &mut run, last).await.map(Some),
                        None => Ok(None),
                    }
                },
                async {
                    match &next {
                        Some(next) => Some(source.fetch(next, &bounds).await),
                        None => None,
                    }
                }
            );
            if let Err(error) = settled {
                finish_writing(writing).await;
                return self.fail(run, &error).await;
            }
            match next {
                Some(next) => {
                    reading = next;
                    prefetched = fetched;
                }
                // The end of the source, or a page the checks refuse.
                None => {
                    let Some(last) = writing.take() else { break };
                    match self.settle(spec, &mut run, last).await {
                        Ok(Settled::End) => break,
                        Ok(Settled::Next) => reading = run.progress.page.clone(),
                        Err(error) => return self.fail(run, &error).await,
                    }
                }
            }
        }
        if run.progress.kind == RunKind::Full
            && run.progress.sweep
            && let Err(error) = self.sweep(source, &mut run).await
        {
            return self.fail(run, &error).await;
        }
        self.finish(run).await
    }

    /// A two-way pair's items under the records they are linked to: an
    /// object the paired destination created carries its external id here.
    async fn linked(
        &self,
        spec: &crate::connectors::SourceSpec,
        source: &SourceId,
        changes: Vec<BulkWrite>,
    ) -> Result<Vec<BulkWrite>> {
        let ids: Vec<&str> = changes.iter().map(|w| w.id.as_str()).collect();
        let links = self.store.links_get_many(source, &ids).await?;
        if links.is_empty() {
            return Ok(changes);
        }
        let mut mapped: Vec<BulkWrite> = Vec::with_capacity(changes.len());
        for mut write in changes {
            if let Some((entity, id)) = links.get(write.id.as_str())
                && *entity == spec.entity
            {
                write.id = id.clone();
            }
            // An object and its linked record in one page: the last wins.
            mapped.retain(|w| w.id != write.id);
            mapped.push(write);
        }
        Ok(mapped)
    }

    /// Tombstones the source's records that a full run did not see.
    async fn sweep(&self, source: &HttpSource, run: &mut Run) -> Result<()> {
        let spec = source.spec();
        let mut pages = self
            .store
            .record_heads_unordered(&spec.tenant, &spec.entity);
        while let Some(page) = pages.try_next().await? {
            let gone: Vec<BulkWrite> = page
                .iter()
                .filter(|r| !r.deleted && r.source.as_ref() == Some(&run.progress.source))
                .filter(|r| !run.seen.contains(r.id.as_str()))
                .map(|r| BulkWrite {
                    id: r.id.clone(),
                    change: Change::Delete,
                    source_version: None,
                })
                .collect();
            if !gone.is_empty() {
                let outcome = self.write_batch(spec, run, gone).await?;
                run.progress.counts.deleted += outcome.deleted;
            }
        }
        Ok(())
    }

    /// Checkpoints the run and queues its continuation.
    async fn continue_later(&self, mut run: Run) -> Result<RunLog> {
        let mut ids: Vec<String> = run.seen.drain().collect();
        ids.sort();
        let chunks: Vec<&[String]> = ids.chunks(SEEN_CHUNK).collect();
        for (n, chunk) in chunks.iter().enumerate() {
            let key = seen_key(&run.progress.source, &run.progress.run_id, n as u32);
            self.store
                .kv_put(
                    &key,
                    &chunk.to_vec(),
                    Some(Duration::from_secs(24 * 3600)),
                    KvExpect::Any,
                )
                .await?;
        }
        run.progress.seen_chunks = chunks.len() as u32;
        let payload = serde_json::to_value(&run.progress).map_err(|e| Error::Internal {
            context: "serializing a continuation".into(),
            source: Some(Box::new(e)),
        })?;
        let mut envelope = RetryEnvelope::new(
            WorkKind::SyncContinuation,
            payload,
            format!("{}:{}", run.progress.run_id, run.progress.pages_done),
            "time budget reached",
        );
        envelope.attempt = 0;
        envelope.last_error = None;
        envelope.source = Some(run.progress.source.clone());
        self.queue
            .send(&envelope.to_body()?, Duration::ZERO)
            .await?;
        let log = run.progress.log(RunStatus::Continued, None);
        self.write_run_log(&run.progress.log_id, &log).await?;
        Ok(log)
    }
}
