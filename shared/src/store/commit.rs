//! Atomic multi-item writes (TransactWriteItems) and the per-tenant change
//! sequence. A commit allocates its sequence numbers from the tenant's
//! counter item inside the same transaction as the record changes, the
//! client's last mutation id and any once-only keys: all commit or none do.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};

use super::keys::{COUNTER_SK, EXPIRES_AT, PK, SK};
use super::record_item::{RecordItem, decode_record, record_key};
use super::tenant::{ClientItem, Counter, client_key, counter_key};
use super::write::apply_change;
use super::{
    BulkWrites, ChangeSet, Committed, Expect, RecordWrite, Store, Trail, backoff, build_error,
    mapping_error, number_value, store_error,
};
use crate::error::{Error, Result};
use crate::model::{EntityType, Record, RecordId, Seq, TenantId, Timestamp};

const MAX_COMMIT_ATTEMPTS: u32 = 64;

/// What each transaction action is, to explain a cancellation.
#[derive(Debug, Clone, Copy)]
enum Action {
    Counter,
    Record { retry_on_conflict: bool },
    Client,
    Once,
    Trail,
    Feed,
}

/// Where a commit's sequence numbers come from ([`Store::numbers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Numbers {
    /// A held block, taken before the transaction and released after it.
    Held,
    /// The tenant counter, bumped in the transaction.
    Counter,
}

struct Snapshot {
    counter: Counter,
    client_progress: u64,
    records: HashMap<(EntityType, RecordId), Record>,
}

impl Store {
    /// The counter, the client's progress and (with `with_records`) the
    /// records `set` writes, in one consistent batch read.
    async fn read_snapshot(
        &self,
        set: &ChangeSet,
        with_records: bool,
        numbers: Numbers,
    ) -> Result<Snapshot> {
        // Held commits take their numbers from a block, not from the
        // value read.
        let mut keys = Vec::new();
        if numbers == Numbers::Counter {
            keys.push(counter_key(&set.tenant));
        }
        if let Some(progress) = &set.client {
            keys.push(client_key(&set.tenant, &progress.client));
        }
        if with_records {
            keys.extend(
                set.writes
                    .iter()
                    .map(|w| record_key(&set.tenant, &w.entity, &w.id)),
            );
        }
        let now = Timestamp::now();
        let mut snapshot = Snapshot {
            counter: Counter::default(),
            client_progress: 0,
            records: HashMap::new(),
        };
        for item in self.batch_get(keys).await? {
            let sk = match item.get(SK) {
                Some(AttributeValue::S(sk)) => sk.clone(),
                _ => continue,
            };
            if sk == COUNTER_SK {
                snapshot.counter = Counter::from_item(&item);
            } else if sk.starts_with("CLIENT#") {
                let client: ClientItem = serde_dynamo::from_item(item)
                    .map_err(|e| mapping_error("client progress", e))?;
                snapshot.client_progress = client.last_mutation_id;
            } else if let Some(record) = decode_record(item, now)? {
                snapshot
                    .records
                    .insert((record.entity.clone(), record.id.clone()), record);
            }
        }
        Ok(snapshot)
    }

    /// Applies a change set atomically: every record write (each under its
    /// condition), the sequence numbers they take, the client's progress and
    /// the once-only keys commit together or not at all. Writes whose
    /// content is already stored are skipped. Conditions that fail because
    /// of what the caller expected give [`Error::Conflict`]; contention on
    /// the tenant counter is retried.
    pub async fn commit(&self, set: &ChangeSet) -> Result<Vec<Committed>> {
        self.commit_over(set, None, self.numbers()).await
    }

    /// [`Store::commit`] numbering its changes from a held block on every
    /// store, so that commits of one tenant run side by side (the bulk
    /// chunks of a store writing in transactions).
    pub(super) async fn commit_beside_others(&self, set: &ChangeSet) -> Result<Vec<Committed>> {
        self.commit_over(set, None, Numbers::Held).await
    }

    /// Where commits take their sequence numbers by default: on DynamoDB
    /// from a held block (one UpdateItem that never conflicts), so that
    /// concurrent commits of a tenant do not cancel each other on the
    /// counter; on the embedded engine from the counter, bumped in the
    /// transaction and conditioned on the value read (one request fewer,
    /// and no round trip to save).
    fn numbers(&self) -> Numbers {
        match self.bulk_writes {
            BulkWrites::Held => Numbers::Held,
            BulkWrites::Transactions => Numbers::Counter,
        }
    }

    /// [`Store::commit`] over records the caller has just read (absent ones
    /// left out): the first attempt reads only the client's progress (and,
    /// on the embedded engine, the counter); the transaction still holds every write to the version it
    /// was based on, so a record that moved meanwhile is a conflict (or, for
    /// [`Expect::Any`], a retry from a fresh read).
    pub async fn commit_known(
        &self,
        set: &ChangeSet,
        known: HashMap<(EntityType, RecordId), Record>,
    ) -> Result<Vec<Committed>> {
        self.commit_over(set, Some(known), self.numbers()).await
    }

    /// The commit loop: the records from `known` on the first attempt, then
    /// read afresh. The tenant counter is read only when the set writes
    /// something, and only on the embedded engine (held commits take a
    /// block instead).
    async fn commit_over(
        &self,
        set: &ChangeSet,
        mut known: Option<HashMap<(EntityType, RecordId), Record>>,
        numbers: Numbers,
    ) -> Result<Vec<Committed>> {
        validate(set)?;
        let changed_by = set.trail.as_ref().and_then(Trail::source);
        for attempt in 0..MAX_COMMIT_ATTEMPTS {
            let snapshot = match known.take() {
                // Nothing to write: no counter, no client, no once-only key.
                Some(records)
                    if set.client.is_none() && set.once_only.is_empty() && {
                        let now = Timestamp::now();
                        set.writes.iter().all(|w| {
                            let current = records.get(&(w.entity.clone(), w.id.clone()));
                            apply_change(&set.tenant, w, current, now, changed_by.as_ref())
                                .is_none()
                        })
                    } =>
                {
                    Snapshot {
                        counter: Counter::default(),
                        client_progress: 0,
                        records,
                    }
                }
                Some(records) => Snapshot {
                    records,
                    ..self.read_snapshot(set, false, numbers).await?
                },
                None => self.read_snapshot(set, true, numbers).await?,
            };
            if let Some(committed) = self.try_commit(set, &snapshot, attempt, numbers).await? {
                return Ok(committed);
            }
        }
        Err(contention("committing a change set"))
    }

    /// One attempt at writing `set` over what `snapshot` read: the committed
    /// records, or `None` when the attempt lost a race worth retrying.
    async fn try_commit(
        &self,
        set: &ChangeSet,
        snapshot: &Snapshot,
        attempt: u32,
        numbers: Numbers,
    ) -> Result<Option<Vec<Committed>>> {
        check_expectations(set, snapshot)?;
        let now = Timestamp::now();
        let changed_by = set.trail.as_ref().and_then(Trail::source);
        let mut committed = Vec::with_capacity(set.writes.len());
        let mut currents = Vec::new();
        for write in &set.writes {
            let current = snapshot
                .records
                .get(&(write.entity.clone(), write.id.clone()));
            match apply_change(&set.tenant, write, current, now, changed_by.as_ref()) {
                Some(record) => {
                    currents.push((current, write.expect == Expect::Any));
                    committed.push(Committed {
                        record,
                        changed: true,
                    });
                }
                None => committed.extend(current.map(|current| Committed {
                    record: current.clone(),
                    changed: false,
                })),
            }
        }
        let numbered = currents.len() as u64;
        let block = match (numbered, numbers) {
            (1.., Numbers::Held) => Some(
                self.hold_block(&set.tenant, numbered, super::held::HOLD)
                    .await?,
            ),
            _ => None,
        };
        let first = block
            .as_ref()
            .map_or(snapshot.counter.value + 1, |b| b.first);
        let mut actions = Vec::new();
        let mut kinds = Vec::new();
        if numbered > 0 && block.is_none() {
            let last = snapshot.counter.value + numbered;
            actions.push(self.counter_bump(&set.tenant, &snapshot.counter, last)?);
            kinds.push(Action::Counter);
        }
        let mut seq = first - 1;
        let changed = committed.iter_mut().filter(|c| c.changed);
        for (done, (current, retry_on_conflict)) in changed.zip(currents) {
            seq += 1;
            done.record.seq = Seq::new(seq);
            actions.push(self.record_put(&done.record, current, now)?);
            kinds.push(Action::Record { retry_on_conflict });
        }
        if let Some(progress) = &set.client {
            actions.push(self.client_put(&set.tenant, progress, now)?);
            kinds.push(Action::Client);
        }
        for (key, ttl) in &set.once_only {
            actions.push(
                TransactWriteItem::builder()
                    .put(self.once_put(key, *ttl, now)?)
                    .build(),
            );
            kinds.push(Action::Once);
        }
        if let Some(trail) = &set.trail
            && numbered > 0
        {
            let entry = super::TrailEntry {
                trail: trail.clone(),
                changes: committed
                    .iter()
                    .filter(|c| c.changed)
                    .map(|c| super::TrailChange::of(&c.record))
                    .collect(),
            };
            actions.push(self.trail_put(&set.tenant, &entry, now)?);
            kinds.push(Action::Trail);
        }
        if let Some(entry) = super::feed::feed_item(
            &set.tenant,
            committed.iter().filter(|c| c.changed).map(|c| &c.record),
        ) {
            actions.push(self.put_action(entry)?);
            kinds.push(Action::Feed);
        }
        if actions.is_empty() {
            return Ok(Some(committed));
        }
        let client = if block.is_some() {
            // Bounded like a held chunk's writes: nothing lands under the
            // block's numbers after its hold ends.
            &self.held_client
        } else {
            &self.client
        };
        let sent = client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await;
        if let Some(block) = &block
            && let Err(error) = self.release_block(&set.tenant, block).await
        {
            // Readers pass the hold at its deadline; what committed stands.
            tracing::warn!(error = %error.chain(), "a commit's held block was not released");
        }
        match sent {
            Ok(_) => {
                if numbered > 0 {
                    self.signal
                        .announce(announcement(&set.tenant, &committed, seq));
                }
                Ok(Some(committed))
            }
            Err(err) => match explain_cancellation(&err, &kinds) {
                Some(Cancelled::Retry) => {
                    backoff(attempt).await;
                    Ok(None)
                }
                Some(Cancelled::Conflict(why)) => Err(Error::Conflict(why)),
                None => Err(store_error("TransactWriteItems", err)),
            },
        }
    }

    fn record_put(
        &self,
        record: &Record,
        current: Option<&Record>,
        now: Timestamp,
    ) -> Result<TransactWriteItem> {
        let item = RecordItem::from_record(record, self.tombstone_retention).to_item()?;
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        put = match current {
            Some(current) => put
                .condition_expression("#version = :version")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":version", number_value(current.version.get())),
            // A tombstone past retention reads as absent; it may be replaced.
            None => put
                .condition_expression("attribute_not_exists(#pk) OR #exp <= :now")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#exp", EXPIRES_AT)
                .expression_attribute_values(":now", number_value(now.as_secs())),
        };
        Ok(TransactWriteItem::builder()
            .put(put.build().map_err(build_error)?)
            .build())
    }

    /// Writes one record under a condition; see [`Store::commit`] for the
    /// atomic write of several.
    pub async fn put_record(
        &self,
        tenant: &TenantId,
        write: RecordWrite,
    ) -> Result<super::Committed> {
        let set = super::ChangeSet {
            tenant: tenant.clone(),
            writes: vec![write],
            client: None,
            once_only: Vec::new(),
            trail: None,
        };
        let mut committed = self.commit(&set).await?;
        committed
            .pop()
            .ok_or_else(|| Error::internal("a one-write commit returned nothing"))
    }
}

/// What a committed transaction tells the process's listeners.
pub(super) fn announcement(tenant: &TenantId, committed: &[Committed], seq: u64) -> super::Commit {
    let mut entities: Vec<EntityType> = committed
        .iter()
        .filter(|c| c.changed)
        .map(|c| c.record.entity.clone())
        .collect();
    entities.sort();
    entities.dedup();
    super::Commit {
        tenant: tenant.clone(),
        entities,
        seq: Seq::new(seq),
    }
}

fn contention(what: &str) -> Error {
    Error::Store {
        operation: "TransactWriteItems",
        retryable: true,
        source: format!("gave up {what} after {MAX_COMMIT_ATTEMPTS} attempts under contention")
            .into(),
    }
}

fn validate(set: &ChangeSet) -> Result<()> {
    let room = ChangeSet::record_room(
        set.client.is_some(),
        set.once_only.len(),
        set.trail.is_some(),
    );
    if set.writes.len() > room {
        return Err(Error::validation(
            "change set",
            format!("at most {room} record writes fit in one atomic write"),
        ));
    }
    let mut seen = HashSet::new();
    for write in &set.writes {
        if !seen.insert((&write.entity, &write.id)) {
            return Err(Error::validation(
                "change set",
                format!("{}/{} is written twice", write.entity, write.id),
            ));
        }
    }
    if let Some(progress) = &set.client
        && progress.last_mutation_id < progress.expected
    {
        return Err(Error::validation(
            "last mutation id",
            "must not move backwards",
        ));
    }
    Ok(())
}

fn check_expectations(set: &ChangeSet, snapshot: &Snapshot) -> Result<()> {
    for write in &set.writes {
        let current = snapshot
            .records
            .get(&(write.entity.clone(), write.id.clone()));
        match (write.expect, current) {
            (Expect::Any, _) | (Expect::Absent, None) => {}
            (Expect::Absent, Some(found)) => {
                return Err(Error::Conflict(format!(
                    "{}/{} already exists at version {}",
                    write.entity, write.id, found.version
                )));
            }
            (Expect::Version(v), Some(found)) if found.version == v => {}
            (Expect::Version(v), found) => {
                return Err(Error::Conflict(format!(
                    "{}/{} is at version {}, not {v}",
                    write.entity,
                    write.id,
                    found.map_or_else(|| "none".to_owned(), |f| f.version.to_string())
                )));
            }
        }
    }
    if let Some(progress) = &set.client
        && snapshot.client_progress != progress.expected
    {
        return Err(Error::Conflict(format!(
            "client {} has processed mutation {}, not {}",
            progress.client, snapshot.client_progress, progress.expected
        )));
    }
    Ok(())
}

enum Cancelled {
    Retry,
    Conflict(String),
}

fn explain_cancellation(
    err: &SdkError<TransactWriteItemsError>,
    kinds: &[Action],
) -> Option<Cancelled> {
    let SdkError::ServiceError(service) = err else {
        return None;
    };
    match service.err() {
        TransactWriteItemsError::TransactionCanceledException(cancelled) => {
            for (reason, kind) in cancelled.cancellation_reasons().iter().zip(kinds) {
                match (reason.code(), kind) {
                    (None | Some("None"), _)
                    | (Some("ConditionalCheckFailed"), Action::Counter)
                    | (
                        Some("ConditionalCheckFailed"),
                        Action::Record {
                            retry_on_conflict: true,
                        },
                    ) => {}
                    (Some("ConditionalCheckFailed"), Action::Record { .. }) => {
                        return Some(Cancelled::Conflict(
                            "a record changed while the write was prepared".into(),
                        ));
                    }
                    (Some("ConditionalCheckFailed"), Action::Client) => {
                        return Some(Cancelled::Conflict(
                            "the client's mutations were processed concurrently".into(),
                        ));
                    }
                    (Some("ConditionalCheckFailed"), Action::Once) => {
                        return Some(Cancelled::Conflict("already applied".into()));
                    }
                    // TransactionConflict, throttling: try again.
                    (Some(_), _) => {}
                }
            }
            // Only retryable reasons remain: the counter moved, a record
            // written under `Expect::Any` moved, or transient contention.
            Some(Cancelled::Retry)
        }
        _ => None,
    }
}
