//! The delivery engine: each destination reads its tenant's gap-free
//! change feed (the one pulls read) from its own cursor, applies each
//! change, records it in the ledger, and advances the cursor only after
//! the changes before it were delivered or handed to the retry queue.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::{DestinationsDocument, KindSpec};
use super::destination::{Destination, DestinationState};
use super::http::{HttpTarget, filtered};
use super::ledger::LedgerTask;
use super::redis::RedisTarget;
use super::target::{Outbound, Target};
use super::webhook::WebhookTarget;
use crate::connectors::{SourceClient, auth_header};
use crate::error::{Error, Result};
use crate::model::{ContentHash, Cursor, EntityType, Record, RecordId, Seq, Timestamp};
use crate::queue::RetryQueue;
use crate::store::{Changes, DeliveryStatus, LedgerEntry, LedgerWrite, Store};
use crate::webhooks::SecretRef;

/// Changes read from the feed per page.
const PAGE: u32 = 500;
/// Consecutive retryable failures after which a run stops without
/// advancing past them (the destination looks down; the next wake-up
/// tries again). Webhook endpoints are disabled after their own limit.
pub(super) const DOWN_AFTER: u32 = 5;
/// Changes of one page written to a cache at once (each a different
/// record: a page holds each record once).
pub(super) const REDIS_IN_FLIGHT: usize = 32;
/// How long a delivery run holds its destination.
const LEASE: Duration = Duration::from_secs(120);

pub(super) fn lease_name(destination: &str) -> String {
    format!("deliver:{destination}")
}

/// A ledger entry to write, with the revision it is based on and its link.
pub(super) type Pending = LedgerWrite;

/// What one delivery run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    pub destination: String,
    pub delivered: u64,
    pub skipped: u64,
    pub failed: u64,
    /// Set when another run held the destination.
    pub busy: bool,
    pub cursor: u64,
}

/// What became of one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    Delivered,
    Skipped(String),
}

/// The body of a `delivery` retry message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryWork {
    pub destination: String,
    pub entity: EntityType,
    pub id: RecordId,
}

pub struct DeliveryEngine {
    pub(super) store: Store,
    pub(super) queue: Arc<dyn RetryQueue>,
    pub(super) destinations: BTreeMap<String, Arc<Destination>>,
}

impl std::fmt::Debug for DeliveryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryEngine")
            .field(
                "destinations",
                &self.destinations.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// How far the slowest destination is behind (the lag alarm's metric).
fn emit_lag(lag: u64) {
    crate::metrics::emit(
        &[("function", "delivery")],
        &[("DeliveryLag", lag as f64, crate::metrics::Unit::Count)],
    );
}

/// The idempotency key of one version of one record at one destination.
pub fn delivery_key(destination: &str, record: &Record) -> String {
    let digest = Sha256::digest(
        format!(
            "{destination}\n{}\n{}\n{}",
            record.entity,
            record.id,
            record.version.get()
        )
        .as_bytes(),
    );
    format!("sl_{}", hex::encode(&digest[..16]))
}

impl DeliveryEngine {
    /// The destinations of `document`, secrets resolved through `secret`,
    /// requests sent by `client`.
    pub fn new(
        store: Store,
        queue: Arc<dyn RetryQueue>,
        document: &str,
        client: SourceClient,
        secret: impl Fn(&SecretRef) -> Result<String>,
    ) -> Result<Self> {
        let document = DestinationsDocument::parse(document)?;
        let mut destinations = BTreeMap::new();
        for (name, spec) in document.destinations {
            let target: Arc<dyn Target> = match &spec.kind {
                KindSpec::Redis(redis) => Arc::new(RedisTarget::new(
                    &secret(&redis.url)?,
                    &redis.prefix,
                    redis.index,
                )?),
                KindSpec::Webhook(hook) => Arc::new(WebhookTarget::new(
                    &hook.url,
                    &secret(&hook.secret)?,
                    hook.requests_per_second,
                    hook.timeout_secs,
                    client.clone(),
                )?),
                KindSpec::Http(http) => {
                    let http = (**http).clone().resolve(&name)?;
                    let auth = http
                        .auth
                        .as_ref()
                        .map(|auth| auth_header(auth, &secret))
                        .transpose()?
                        .flatten();
                    Arc::new(HttpTarget::new(http, auth, client.clone())?)
                }
            };
            destinations.insert(name.clone(), Arc::new(Destination { name, spec, target }));
        }
        Ok(Self {
            store,
            queue,
            destinations,
        })
    }

    /// No destinations (a deployment that only pulls).
    pub fn none(store: Store, queue: Arc<dyn RetryQueue>) -> Self {
        Self {
            store,
            queue,
            destinations: BTreeMap::new(),
        }
    }

    /// Every destination's run, one after another, each before `deadline`.
    pub async fn deliver_all(&self, deadline: Timestamp) -> Result<Vec<RunSummary>> {
        let mut runs = Vec::new();
        for name in self.destinations.keys() {
            runs.push(self.deliver(name, deadline).await?);
        }
        Ok(runs)
    }

    /// Delivers what the feed holds past the destination's cursor. Cheap
    /// when nothing changed: the state and the tenant's counter are read,
    /// nothing is written.
    pub async fn deliver(&self, name: &str, deadline: Timestamp) -> Result<RunSummary> {
        let destination = self.destination(name)?.clone();
        let mut summary = RunSummary {
            destination: name.to_owned(),
            ..RunSummary::default()
        };
        let mut state = self.state(name).await?;
        summary.cursor = state.cursor;
        let head = self.store.latest_seq(&destination.spec.tenant).await?.get();
        if state.disabled {
            emit_lag(head.saturating_sub(state.cursor));
        }
        if state.disabled || head <= state.cursor {
            return Ok(summary);
        }
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let lease_name = lease_name(name);
        let Some(lease) = self.store.acquire_lease(&lease_name, &owner, LEASE).await? else {
            summary.busy = true;
            return Ok(summary);
        };
        let result = self
            .deliver_leased(&destination, &mut state, &mut summary, deadline)
            .await;
        self.store.release_lease(&lease).await?;
        result.map(|()| summary)
    }

    async fn deliver_leased(
        &self,
        destination: &Destination,
        state: &mut DestinationState,
        summary: &mut RunSummary,
        deadline: Timestamp,
    ) -> Result<()> {
        let spec = &destination.spec;
        // Re-read under the lease: another run may have moved it.
        *state = self.state(&destination.name).await?;
        let margin = Duration::from_secs(5);
        // The current run of consecutive retryable failures: the cursor
        // before its first change, and the changes in it. A success after
        // it means they were bad records: their retries go to the queue.
        // A streak that trips the breaker leaves them all in the feed.
        let mut streak: Option<(u64, Vec<(Record, Error)>)> = None;
        let mut writing: Option<LedgerTask> = None;
        let mut prefetched: Option<tokio::task::JoinHandle<Result<Changes>>> = None;
        'pages: loop {
            let changes = match prefetched.take() {
                Some(task) => task
                    .await
                    .map_err(|e| Error::internal(format!("feed read task: {e}")))??,
                None => {
                    self.store
                        .changes_since(
                            &spec.tenant,
                            &spec.entities,
                            Cursor::at(Seq::new(state.cursor)),
                            PAGE,
                        )
                        .await?
                }
            };
            if changes.has_more {
                // The next page is read while this one is delivered.
                let (store, tenant, entities, from) = (
                    self.store.clone(),
                    spec.tenant.clone(),
                    spec.entities.clone(),
                    changes.cursor,
                );
                prefetched = Some(tokio::spawn(async move {
                    store.changes_since(&tenant, &entities, from, PAGE).await
                }));
            }
            let (outcomes, pending) = self
                .deliver_page(
                    destination,
                    &changes.records,
                    state.replay_through,
                    state.consecutive_failures,
                )
                .await?;
            if let Some(task) = writing.take() {
                self.finish_ledger(&destination.name, task).await?;
            }
            writing = Some(self.spawn_ledger(&destination.name, pending));
            for (record, outcome) in changes.records.iter().zip(outcomes) {
                match outcome {
                    Ok(outcome) => {
                        match outcome {
                            Delivered::Delivered => summary.delivered += 1,
                            Delivered::Skipped(_) => summary.skipped += 1,
                        }
                        state.consecutive_failures = 0;
                        if let Some((_, failed)) = streak.take() {
                            for (record, error) in failed {
                                self.queue_retry(destination, &record, &error).await?;
                            }
                        }
                    }
                    Err(error) if error.is_retryable() => {
                        summary.failed += 1;
                        state.consecutive_failures += 1;
                        self.record_failure(destination, record, &error).await?;
                        let before = state.cursor;
                        let (start, failed) = streak.get_or_insert_with(|| (before, Vec::new()));
                        failed.push((record.clone(), error));
                        let start = *start;
                        let tripped = match destination.disable_after() {
                            Some(limit) if state.consecutive_failures >= limit => {
                                // Disabled, with every change of the streak
                                // and after it kept in the feed for a replay.
                                state.disabled = true;
                                state.disabled_reason = Some(format!(
                                    "{} consecutive failed deliveries; last: {}",
                                    state.consecutive_failures,
                                    failed.last().map_or_else(String::new, |(_, e)| e.chain())
                                ));
                                true
                            }
                            // Down: the next run starts at the streak.
                            None => state.consecutive_failures >= DOWN_AFTER,
                            Some(_) => false,
                        };
                        if tripped {
                            state.cursor = start;
                            streak = None;
                            break 'pages;
                        }
                    }
                    Err(error) => {
                        // Refused for good (a 4xx): recorded, and the rest go on.
                        summary.failed += 1;
                        self.record_failure(destination, record, &error).await?;
                    }
                }
                state.cursor = record.seq.get();
                if Timestamp::now().plus(margin) >= deadline {
                    break 'pages;
                }
            }
            if streak.is_none() {
                state.cursor = state.cursor.max(changes.cursor.seq().get());
            }
            if !changes.has_more {
                break;
            }
        }
        if let Some(task) = prefetched.take() {
            task.abort();
        }
        if let Some(task) = writing.take() {
            self.finish_ledger(&destination.name, task).await?;
        }
        // A streak at the end of the run: retried from the queue with
        // backoff, not by the next wake-up at once.
        if let Some((_, failed)) = streak {
            for (record, error) in failed {
                self.queue_retry(destination, &record, &error).await?;
            }
        }
        summary.cursor = state.cursor;
        self.save_state(&destination.name, state).await?;
        let head = self.store.latest_seq(&spec.tenant).await?.get();
        emit_lag(head.saturating_sub(state.cursor));
        crate::metrics::emit(
            &[
                ("function", "delivery"),
                ("destination", destination.name.as_str()),
            ],
            &[
                (
                    "Delivered",
                    summary.delivered as f64,
                    crate::metrics::Unit::Count,
                ),
                (
                    "DeliveryFailed",
                    summary.failed as f64,
                    crate::metrics::Unit::Count,
                ),
            ],
        );
        Ok(())
    }

    /// Delivers the record as stored now (a retry of an older version
    /// delivers the newest), once per version.
    pub async fn redeliver(&self, work: &DeliveryWork) -> Result<Delivered> {
        let destination = self.destination(&work.destination)?.clone();
        if self.state(&work.destination).await?.disabled {
            // The change stays in the feed past the cursor: it goes out
            // after the destination is enabled again.
            return Ok(Delivered::Skipped("the destination is disabled".into()));
        }
        let record = self
            .store
            .get_record(&destination.spec.tenant, &work.entity, &work.id)
            .await?;
        let Some(record) = record else {
            return Ok(Delivered::Skipped("the record is gone".into()));
        };
        let result = self.deliver_record(&destination, &record, false).await;
        if let Err(error) = &result {
            self.record_failure(&destination, &record, error).await?;
        }
        result
    }

    /// Delivers a page of the feed: its ledger entries in one batched
    /// read, then the changes, several at a time where the destination
    /// takes that (a page holds each record once, so per-record order
    /// holds), else one by one, stopping when the failures in a row reach
    /// the breaker (so nothing after them goes out before them). The
    /// outcomes come in feed order, one per change attempted.
    async fn deliver_page(
        &self,
        destination: &Destination,
        records: &[Record],
        replay_through: u64,
        failures_in_a_row: u32,
    ) -> Result<(Vec<Result<Delivered>>, Vec<Pending>)> {
        let keys: Vec<(EntityType, RecordId)> = records
            .iter()
            .map(|r| (r.entity.clone(), r.id.clone()))
            .collect();
        let mut ledgers = self.store.ledger_get_many(&destination.name, &keys).await?;
        let work: Vec<_> = records
            .iter()
            .map(|record| {
                let ledgered = ledgers.remove(&(record.entity.clone(), record.id.clone()));
                let force = record.seq.get() <= replay_through;
                self.deliver_known(destination, record, force, ledgered)
            })
            .collect();
        let in_flight = destination.in_flight();
        let applied: Vec<Result<(Delivered, Option<Pending>)>> = if in_flight > 1 {
            futures_util::stream::iter(work)
                .buffered(in_flight)
                .collect()
                .await
        } else {
            let breaker = destination.disable_after().unwrap_or(DOWN_AFTER);
            let mut in_a_row = failures_in_a_row;
            let mut applied = Vec::with_capacity(records.len());
            for delivery in work {
                let outcome = delivery.await;
                in_a_row = match &outcome {
                    Err(error) if error.is_retryable() => in_a_row + 1,
                    _ => 0,
                };
                applied.push(outcome);
                if in_a_row >= breaker {
                    break;
                }
            }
            applied
        };
        // The page's ledger entries in a few transactions; any a concurrent
        // writer got in the way of, one by one.
        let mut outcomes = Vec::with_capacity(applied.len());
        let mut pending = Vec::new();
        for outcome in applied {
            outcomes.push(outcome.map(|(delivered, entry)| {
                pending.extend(entry);
                delivered
            }));
        }
        Ok((outcomes, pending))
    }

    /// Applies one change unless the ledger shows it delivered, it came
    /// from the destination's own system, or its content is what the
    /// destination already has. The ledger entry, with the external id,
    /// is written after the destination answered.
    pub async fn deliver_record(
        &self,
        destination: &Destination,
        record: &Record,
        force: bool,
    ) -> Result<Delivered> {
        let ledgered = self
            .store
            .ledger_get(&destination.name, &record.entity, &record.id)
            .await?;
        let (delivered, entry) = self
            .deliver_known(destination, record, force, ledgered)
            .await?;
        if let Some(write) = entry {
            self.write_ledger(&destination.name, write).await?;
        }
        Ok(delivered)
    }

    /// [`DeliveryEngine::deliver_record`] over the ledger entry just read;
    /// the entry to write (and the revision it is based on) is returned,
    /// none when nothing changed.
    async fn deliver_known(
        &self,
        destination: &Destination,
        record: &Record,
        force: bool,
        ledgered: Option<crate::store::Ledgered>,
    ) -> Result<(Delivered, Option<Pending>)> {
        let name = destination.name.as_str();
        let previous = ledgered.as_ref().map(|l| &l.entry);
        if !force && previous.is_some_and(|p| p.delivered_version >= record.version.get()) {
            return Ok((Delivered::Skipped("already delivered".into()), None));
        }
        let data = if record.deleted {
            serde_json::Map::new()
        } else {
            filtered(&record.data, destination.spec.fields.as_deref())
        };
        let hash = ContentHash::of(&data, record.deleted);
        let skip = if record.changed_by.as_ref().is_some_and(|s| {
            destination.spec.echo_of.contains(s) || destination.spec.pair.as_ref() == Some(s)
        }) {
            record
                .changed_by
                .as_ref()
                .map(|s| format!("echo: the change came from {s}"))
        } else if !force && previous.is_some_and(|p| p.hash.as_ref() == Some(&hash)) {
            Some("unchanged: the destination has this content".into())
        } else {
            None
        };
        let mut entry = LedgerEntry {
            entity: record.entity.clone(),
            id: record.id.clone(),
            status: DeliveryStatus::Delivered,
            version: record.version.get(),
            delivered_version: record.version.get(),
            hash: Some(hash),
            external_id: previous.and_then(|p| p.external_id.clone()),
            attempts: 0,
            last_error: None,
            reason: None,
            updated_at: Timestamp::now(),
        };
        let mut link = None;
        let outcome = match skip {
            Some(reason) => {
                entry.status = DeliveryStatus::Skipped;
                entry.reason = Some(reason.clone());
                Delivered::Skipped(reason)
            }
            None => {
                let key = delivery_key(name, record);
                let applied = destination
                    .target
                    .apply(&Outbound {
                        destination: name,
                        record,
                        data: &data,
                        external_id: entry.external_id.as_deref(),
                        key: &key,
                    })
                    .await?;
                if let Some(external) = applied.external_id {
                    if entry.external_id.as_ref() != Some(&external) {
                        link = destination
                            .spec
                            .pair
                            .clone()
                            .map(|source| (source, external.clone()));
                    }
                    entry.external_id = Some(external);
                }
                if applied.stale {
                    entry.reason = Some("the destination holds a newer version".into());
                }
                Delivered::Delivered
            }
        };
        Ok((
            outcome,
            Some(LedgerWrite {
                entry,
                read: ledgered.map(|l| l.revision),
                link,
            }),
        ))
    }
}
