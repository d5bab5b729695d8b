//! Writing a run's pages: each page on a task of its own, so that the run
//! reads its next page, and hands it to the next writer, while this one
//! writes; and settling those writes in page order (docs/SOURCES.md, "A
//! run", step 3).

use std::collections::HashSet;

use super::engine::SyncEngine;
use super::run::Run;
use crate::connectors::{PageState, SourceSpec};
use crate::error::{Error, Result};
use crate::store::{BatchOutcome, BulkWrite, Stored, Trail, TrailPath};

/// A page's records being written on a task of their own.
pub(super) struct Writing {
    pub(super) task: tokio::task::JoinHandle<Result<BatchOutcome>>,
    /// The ids it writes: a later page holding one waits for it.
    pub(super) ids: HashSet<String>,
    /// The page after it, as the source said.
    pub(super) next: Option<PageState>,
    pub(super) sync_token: Option<String>,
}

/// Where a run stands once a page's write is settled.
pub(super) enum Settled {
    Next,
    End,
}

/// Lets a page's write finish before the run stops (it is applied or not
/// as a whole per chunk either way; waiting keeps the run's lease until
/// nothing of it is still writing).
pub(super) async fn finish_writing(writing: Option<Writing>) {
    if let Some(writing) = writing {
        let _ = writing.task.await;
    }
}

/// What a write's task returned.
async fn joined(task: tokio::task::JoinHandle<Result<BatchOutcome>>) -> Result<BatchOutcome> {
    task.await.map_err(|e| Error::Internal {
        context: "writing a page of a run".into(),
        source: Some(Box::new(e)),
    })?
}

impl SyncEngine {
    /// Writes a batch of a run's records on a task of its own, noted in the
    /// change trail under the run's id.
    pub(super) fn spawn_write(
        &self,
        spec: &SourceSpec,
        run: &Run,
        changes: Vec<BulkWrite>,
    ) -> tokio::task::JoinHandle<Result<BatchOutcome>> {
        let store = self.store.clone();
        let (tenant, entity) = (spec.tenant.clone(), spec.entity.clone());
        let source = run.progress.source.clone();
        let stored = if run.progress.empty_at_start() {
            Stored::NoneAtStart
        } else {
            Stored::Unknown
        };
        let trail = Trail::new(
            TrailPath::Sync,
            run.progress.source.as_str(),
            run.progress.run_id.as_str(),
        );
        tokio::spawn(async move {
            store
                .upsert_versioned(&tenant, &entity, Some(&source), changes, &trail, stored)
                .await
        })
    }

    /// [`Self::spawn_write`], waited for.
    pub(super) async fn write_batch(
        &self,
        spec: &SourceSpec,
        run: &Run,
        changes: Vec<BulkWrite>,
    ) -> Result<BatchOutcome> {
        joined(self.spawn_write(spec, run, changes)).await
    }

    /// Waits for a page's write and moves the run past the page: its
    /// counts, its sync token, and the page after it, or the end.
    pub(super) async fn settle(
        &self,
        spec: &SourceSpec,
        run: &mut Run,
        writing: Writing,
    ) -> Result<Settled> {
        let outcome = joined(writing.task).await?;
        run.progress.counts.created += outcome.created;
        run.progress.counts.updated += outcome.updated;
        run.progress.counts.unchanged += outcome.unchanged;
        run.progress.counts.deleted += outcome.deleted;
        run.progress.pages_done += 1;
        if writing.sync_token.is_some() {
            run.next_sync_token = writing.sync_token;
        }
        match writing.next {
            // A source answering with the page it was asked for would be
            // read forever.
            Some(next) if next == run.progress.page => Err(crate::connectors::upstream(
                "source",
                format!("the next page is the page just read ({next:?})"),
                false,
            )),
            Some(_) if run.progress.pages_done >= spec.max_pages => {
                Err(crate::connectors::upstream(
                    "source",
                    format!("more than {} pages in one run (max_pages)", spec.max_pages),
                    false,
                ))
            }
            Some(next) => {
                run.progress.page = next;
                Ok(Settled::Next)
            }
            None => Ok(Settled::End),
        }
    }
}
