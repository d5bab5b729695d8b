//! How a run ends and holds its source: the run lease, finishing (the
//! source's cursor saved only now), failing, closing the run log, and
//! giving up after a store error.

use std::time::Duration;

use super::{
    LEASE_SLACK, RUN_LOG_RETENTION, SyncEngine, later, lease_name, runs_stream, state_key, zone_of,
};
use crate::connectors::times;
use crate::error::{Error, Result};
use crate::ingest::run::{Run, emit_run_metrics};
use crate::model::{RunKind, RunLog, RunStatus, SourceId, Timestamp};
use crate::store::{KvExpect, LogId, LogStream};

impl SyncEngine {
    /// Drops every source's run lease, whoever holds it (a local run
    /// starting after its predecessor was killed mid-run).
    pub async fn drop_leases(&self) -> Result<()> {
        for source in self.sources.ids() {
            self.store.drop_lease(&lease_name(source)).await?;
        }
        Ok(())
    }

    /// After a run stopped on an error of the store: its log says failed
    /// and its lease is given up, as far as the store lets that happen now
    /// (otherwise the lease runs out and the log stays `running`). What the
    /// run wrote is committed; the source's cursor moves only when a run
    /// finishes, so the next run covers the rest.
    pub(super) async fn abandon(
        &self,
        source: &SourceId,
        run_id: &str,
        log_id: Option<&LogId>,
        error: &Error,
    ) {
        tracing::error!(%source, error = %error.chain(), "sync run stopped");
        let stream = LogStream::runs_of(source);
        let entry = match log_id {
            Some(log_id) => self.store.get_log::<RunLog>(&stream, log_id).await,
            None => Ok(None),
        };
        match entry {
            Ok(Some(entry)) if entry.entry.status == RunStatus::Running => {
                let mut log = entry.entry;
                log.status = RunStatus::Failed;
                log.finished_at = Some(Timestamp::now());
                log.error = Some(error.chain());
                if let Err(err) = self.write_run_log(&entry.id, &log).await {
                    tracing::warn!(%source, error = %err.chain(), "marking the stopped run failed");
                }
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(%source, error = %err.chain(), "reading the stopped run's log");
            }
        }
        let lease = crate::model::Lease {
            name: lease_name(source),
            owner: run_id.to_owned(),
            expires_at: Timestamp::now(),
        };
        if let Err(err) = self.store.release_lease(&lease).await {
            tracing::warn!(%source, error = %err.chain(), "releasing the stopped run's lease");
        }
    }

    pub(super) async fn take_lease(
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

    pub(super) async fn finish(&self, run: Run) -> Result<RunLog> {
        let mut state = self.state(&run.progress.source).await?;
        let zone = self
            .sources
            .get(&run.progress.source)
            .map_or_else(|_| times::Zone::utc(), |s| zone_of(s.spec()));
        if let Some(max) = run.progress.max_updated.clone()
            && (run.progress.kind == RunKind::Full
                || state
                    .since
                    .as_ref()
                    .is_none_or(|old| later(&max, old, &zone)))
        {
            state.since = Some(max);
        }
        if run.next_sync_token.is_some() || run.progress.kind == RunKind::Full {
            state.sync_token = run.next_sync_token.clone();
        }
        let now = Timestamp::now();
        state.last_success = Some(now);
        if run.progress.kind == RunKind::Full {
            state.last_full = Some(now);
        }
        // Written only now: every record the new cursor covers is stored.
        self.store
            .kv_put(
                &state_key(&run.progress.source),
                &state,
                None,
                KvExpect::Any,
            )
            .await?;
        self.close(run, RunStatus::Succeeded, None).await
    }

    pub(super) async fn fail(&self, run: Run, error: &Error) -> Result<RunLog> {
        tracing::error!(source = %run.progress.source, error = %error.chain(), "sync run failed");
        self.close(run, RunStatus::Failed, Some(error.chain()))
            .await
    }

    /// Rewrites a run's log entry, in the stream of all runs and in its
    /// source's.
    pub(super) async fn write_run_log(&self, id: &LogId, log: &RunLog) -> Result<()> {
        for stream in [runs_stream(), LogStream::runs_of(&log.source)] {
            self.store
                .put_log(&stream, id, log, RUN_LOG_RETENTION)
                .await?;
        }
        Ok(())
    }

    pub(super) async fn close(
        &self,
        run: Run,
        status: RunStatus,
        error: Option<String>,
    ) -> Result<RunLog> {
        let log = run.progress.log(status, error);
        self.write_run_log(&run.progress.log_id, &log).await?;
        emit_run_metrics(&log);
        if let Ok(source) = self.sources.get(&log.source)
            && source.spec().notify
        {
            let kind = match status {
                RunStatus::Failed => "sync.run.failed",
                _ => "sync.run.succeeded",
            };
            crate::delivery::publish(
                &self.store,
                &source.spec().tenant,
                &log.source,
                &log.id,
                kind,
                &log,
            )
            .await;
        }
        let lease = crate::model::Lease {
            name: lease_name(&run.progress.source),
            owner: run.progress.run_id.clone(),
            expires_at: Timestamp::now(),
        };
        self.store.release_lease(&lease).await?;
        Ok(log)
    }
}
