//! Bulk chunks written under a held block of sequence numbers (what
//! `BulkWrites::Held` stores do on DynamoDB): one UpdateItem on the tenant
//! counter takes the block (beside the chunk's trail entry), one PutItem
//! writes its feed entry, the chunk's records go as conditional PartiQL
//! statements, up to 25 to a BatchExecuteStatement and the batches at
//! once, and a second UpdateItem releases the block.
//!
//! A statement is billed as the PutItem it replaces (one write unit per
//! KB, where a transaction costs two), and succeeds or fails on its own: a
//! record that moved since its head was read fails its condition and goes
//! through [`Store::commit`] with a number of its own. One request carries
//! 25 records where a PutItem carried one, so a chunk of 100 costs four
//! round trips, all in flight together.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeValue, BatchStatementErrorCodeEnum as Code, BatchStatementRequest,
};

use super::keys::{PK, SK};
use super::logs::LogId;
use super::record_item::{HEAD, RecordItem};
use super::tenant::HeldBlock;
use super::write::apply_change;
use super::{
    ChangeSet, Committed, RecordWrite, Store, Trail, TrailChange, TrailEntry, backoff, build_error,
    number_value, store_error,
};
use crate::error::{Error, Result};
use crate::model::{EntityType, Record, RecordId, Seq, TenantId, Timestamp};

/// How long a chunk holds its block of sequence numbers at most; readers
/// wait at most this long behind a chunk that was cut short.
pub(super) const HOLD: std::time::Duration = std::time::Duration::from_secs(60);
/// A chunk starts no record write later than this before its hold ends.
const HOLD_MARGIN_MS: i64 = 20_000;
/// How long one request of a held block's record writes may take, its
/// retries included, before the client gives it up: well inside the
/// margin, so a write started before the margin ends before the hold does.
pub(super) const HELD_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Statements in one BatchExecuteStatement: DynamoDB's limit.
const STATEMENTS_PER_BATCH: usize = 25;
/// Sends of one batch while some of its statements are throttled.
const BATCH_ATTEMPTS: u32 = 6;
/// Tries at releasing a block (each with the SDK's own retries): a block
/// left held stops the tenant's readers until its deadline.
const RELEASE_ATTEMPTS: u32 = 4;

/// What became of one record's statement.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Written {
    Yes,
    /// Its condition failed: the record moved since its head was read, or
    /// an earlier send of the same statement wrote it and its answer was
    /// lost (told apart by the record's number afterwards).
    ConditionFailed,
}

impl Store {
    /// One chunk of puts and deletes over the heads read for it, without a
    /// transaction: the chunk holds a block of sequence numbers, writes its
    /// trail entry, then its records in conditional statements, all at
    /// once, and releases the block.
    ///
    /// Cut short (a crash, a store error), the records written stand, each
    /// complete with its number; the rest were never written, and the run
    /// that failed writes them again. Readers never pass a held block, so
    /// no record lands behind a cursor already handed out.
    pub(super) async fn write_held(
        &self,
        tenant: &TenantId,
        writes: Vec<RecordWrite>,
        heads: HashMap<RecordId, Record>,
        trail: &Trail,
    ) -> Result<Vec<Committed>> {
        let now = Timestamp::now();
        let changed_by = trail.source();
        let mut committed = Vec::with_capacity(writes.len());
        let mut planned = Vec::new();
        for write in writes {
            let current = heads.get(&write.id);
            match apply_change(tenant, &write, current, now, changed_by.as_ref()) {
                Some(record) => planned.push((write, current.cloned(), record)),
                None => committed.extend(current.map(|c| Committed {
                    record: c.clone(),
                    changed: false,
                })),
            }
        }
        if planned.is_empty() {
            return Ok(committed);
        }
        let entry_id = LogId::generate(now);
        let entry = |records: &mut dyn Iterator<Item = &Record>| TrailEntry {
            trail: trail.clone(),
            changes: records.map(TrailChange::of).collect(),
        };
        let intent = entry(&mut planned.iter().map(|(_, _, r)| r));
        let (block, intent_written) = tokio::join!(
            self.hold_block(tenant, planned.len() as u64, HOLD),
            self.put_trail(tenant, &entry_id, &intent, now),
        );
        let block = block?;
        for (n, (_, _, record)) in planned.iter_mut().enumerate() {
            record.seq = Seq::new(block.first + n as u64);
        }
        // The feed entry goes before the records: a reader that passes the
        // block once it is released must find it. Records it names that
        // are not written under its numbers (moved, or never written) are
        // skipped by readers.
        let entry_written = match (
            intent_written,
            super::feed::feed_item(tenant, planned.iter().map(|(_, _, r)| r)),
        ) {
            (Ok(()), Some(item)) => self.put_unconditional(item).await,
            (written, _) => written,
        };
        if let Err(error) = entry_written {
            // Nothing was written under the block: end it now rather than
            // have readers wait for its deadline.
            self.release_block(tenant, &block).await?;
            return Err(error);
        }
        let batches = planned.chunks(STATEMENTS_PER_BATCH).map(|batch| {
            let batch: Vec<_> = batch.iter().map(|(_, c, r)| (r, c.as_ref())).collect();
            self.write_statements(batch, &block)
        });
        let results = futures_util::future::join_all(batches).await;
        let released = self.release_block(tenant, &block).await;
        let mut outcomes = Vec::with_capacity(planned.len());
        for result in results {
            outcomes.extend(result?);
        }
        released?;
        let refused: Vec<(EntityType, RecordId)> = planned
            .iter()
            .zip(&outcomes)
            .filter(|(_, w)| **w == Written::ConditionFailed)
            .map(|((_, _, r), _)| (r.entity.clone(), r.id.clone()))
            .collect();
        // A record that carries the number this chunk gave it was written by
        // this chunk (numbers are never given twice).
        let stored = if refused.is_empty() {
            HashMap::new()
        } else {
            self.get_many(tenant, &refused).await?
        };
        let mut moved = Vec::new();
        for ((write, _, record), written) in planned.into_iter().zip(outcomes) {
            let ours = written == Written::Yes
                || stored
                    .get(&(record.entity.clone(), record.id.clone()))
                    .is_some_and(|s| s.seq == record.seq && s.version == record.version);
            if ours {
                committed.push(Committed {
                    record,
                    changed: true,
                });
            } else {
                moved.push(write);
            }
        }
        if let Some(last) = committed
            .iter()
            .filter(|c| c.changed)
            .map(|c| c.record.seq)
            .max()
        {
            self.signal
                .announce(super::commit::announcement(tenant, &committed, last.get()));
        }
        if !moved.is_empty() {
            // The entry names only what this chunk wrote; the records that
            // moved get their own entry from the commit.
            let applied = entry(&mut committed.iter().filter(|c| c.changed).map(|c| &c.record));
            self.put_trail(tenant, &entry_id, &applied, now).await?;
            let set = ChangeSet {
                tenant: tenant.clone(),
                writes: moved,
                client: None,
                once_only: Vec::new(),
                trail: Some(trail.clone()),
            };
            committed.extend(self.commit(&set).await?);
        }
        Ok(committed)
    }

    /// Writes up to 25 records of a held block in one BatchExecuteStatement,
    /// each on the condition that it still is what its head said; the
    /// statements throttled are sent again.
    async fn write_statements(
        &self,
        records: Vec<(&Record, Option<&Record>)>,
        block: &HeldBlock,
    ) -> Result<Vec<Written>> {
        let statements = records
            .iter()
            .map(|(record, current)| self.held_statement(record, *current))
            .collect::<Result<Vec<_>>>()?;
        let mut written: Vec<Option<Written>> = vec![None; statements.len()];
        let mut attempt = 0;
        loop {
            // Past this, a write could outlive the hold that readers wait on.
            if Timestamp::now().as_millis() + HOLD_MARGIN_MS > block.deadline_ms {
                return Err(Error::Store {
                    operation: "BatchExecuteStatement",
                    retryable: true,
                    source: "a bulk chunk outran the hold on its sequence numbers".into(),
                });
            }
            let pending: Vec<usize> = (0..statements.len())
                .filter(|&i| written[i].is_none())
                .collect();
            let out = self
                .held_client
                .batch_execute_statement()
                .set_statements(Some(
                    pending.iter().map(|&i| statements[i].clone()).collect(),
                ))
                .send()
                .await
                .map_err(|e| store_error("BatchExecuteStatement", e))?;
            let responses = out.responses.unwrap_or_default();
            if responses.len() != pending.len() {
                return Err(Error::internal(format!(
                    "BatchExecuteStatement answered {} of {} statements",
                    responses.len(),
                    pending.len()
                )));
            }
            let mut throttled = false;
            for (&i, response) in pending.iter().zip(responses) {
                let Some(error) = response.error else {
                    written[i] = Some(Written::Yes);
                    continue;
                };
                match error.code {
                    Some(Code::ConditionalCheckFailed | Code::DuplicateItem) => {
                        written[i] = Some(Written::ConditionFailed);
                    }
                    Some(
                        Code::ProvisionedThroughputExceeded
                        | Code::RequestLimitExceeded
                        | Code::ThrottlingError
                        | Code::TransactionConflict
                        | Code::InternalServerError,
                    ) => throttled = true,
                    code => {
                        return Err(Error::Store {
                            operation: "BatchExecuteStatement",
                            retryable: false,
                            source: format!(
                                "a statement failed: {} {}",
                                code.as_ref().map_or("", |c| c.as_str()),
                                error.message.unwrap_or_default()
                            )
                            .into(),
                        });
                    }
                }
            }
            if !throttled {
                return Ok(written
                    .into_iter()
                    .map(|w| w.unwrap_or(Written::ConditionFailed))
                    .collect());
            }
            attempt += 1;
            if attempt >= BATCH_ATTEMPTS {
                return Err(Error::Store {
                    operation: "BatchExecuteStatement",
                    retryable: true,
                    source: "statements still throttled after every attempt".into(),
                });
            }
            backoff(attempt).await;
        }
    }

    /// The statement writing `record` over `current`: an INSERT where no
    /// record was read (it fails if one exists), else an UPDATE of every
    /// attribute conditioned on the version read (it fails if the record
    /// moved or is gone).
    fn held_statement(
        &self,
        record: &Record,
        current: Option<&Record>,
    ) -> Result<BatchStatementRequest> {
        let mut item = RecordItem::from_record(record, self.tombstone_retention).to_item()?;
        let table = &self.table;
        let (text, parameters) = match current {
            None => {
                let mut names: Vec<String> = item.keys().cloned().collect();
                names.sort_unstable();
                let fields: Vec<String> = names.iter().map(|n| format!("'{n}': ?")).collect();
                let parameters = names.iter().filter_map(|n| item.remove(n)).collect();
                let text = format!("INSERT INTO \"{table}\" VALUE {{{}}}", fields.join(", "));
                (text, parameters)
            }
            Some(current) => {
                let key = |name: &str, item: &mut HashMap<String, AttributeValue>| {
                    item.remove(name)
                        .ok_or_else(|| Error::internal(format!("a record item without {name}")))
                };
                let (pk, sk) = (key(PK, &mut item)?, key(SK, &mut item)?);
                let mut names: Vec<String> = item.keys().cloned().collect();
                names.sort_unstable();
                let mut text = format!("UPDATE \"{table}\"");
                for name in &names {
                    text.push_str(&format!(" SET \"{name}\" = ?"));
                }
                // What the new version lacks goes (a tombstone's expiry on
                // a revived record, a client's clock on a source's write).
                for name in HEAD.iter().chain(&["data"]) {
                    if !item.contains_key(*name) {
                        text.push_str(&format!(" REMOVE \"{name}\""));
                    }
                }
                text.push_str(" WHERE \"pk\" = ? AND \"sk\" = ? AND \"version\" = ?");
                let mut parameters: Vec<AttributeValue> =
                    names.iter().filter_map(|n| item.remove(n)).collect();
                parameters.extend([pk, sk, number_value(current.version.get())]);
                (text, parameters)
            }
        };
        BatchStatementRequest::builder()
            .statement(text)
            .set_parameters(Some(parameters))
            .build()
            .map_err(build_error)
    }

    /// Ends a block (and the expired holds found beside it), trying again
    /// on a retryable failure: a block left held stops the tenant's readers
    /// until its deadline.
    pub(super) async fn release_block(&self, tenant: &TenantId, block: &HeldBlock) -> Result<()> {
        let mut attempt = 0;
        loop {
            match self.end_hold(tenant, block).await {
                Err(error) if error.is_retryable() && attempt + 1 < RELEASE_ATTEMPTS => {
                    attempt += 1;
                    backoff(attempt).await;
                }
                done => return done,
            }
        }
    }
}
