//! Exactly-once push. Each client numbers its mutations; the server keeps
//! the last processed number per client and advances it in the same
//! transaction as the mutations' effects and the tenant's change sequence.
//! A push is read first, resolved in memory, then written in as few
//! conditional transactions as the 100-item limit allows; a transaction
//! that loses a race is retried from a fresh read.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::registry::{CONFLICT_ENTITY, GUARD_ENTITY, Strategy};
use super::rules::{OwnWrite, Resolved, Working, resolve};
use super::wire::{Mutation, MutationResult, Op, PushRequest, PushResponse, RecordView, Status};
use super::{Caller, SyncService};
use crate::connectors::OverlapIndex;
use crate::error::{Error, Result};
use crate::model::{ClientId, Cursor, EntityType, Record, RecordId, Seq, TenantId, Timestamp};
use crate::store::{Change, ChangeSet, ClientProgress, Expect, RecordWrite, Trail, TrailPath};

type Key = (EntityType, RecordId);

/// Record writes per transaction beside the client's progress and the
/// change-trail entry.
const MAX_WRITES_PER_COMMIT: usize = ChangeSet::record_room(true, 0, true);
const MAX_ATTEMPTS: u32 = 16;

impl SyncService {
    pub async fn push(&self, caller: &Caller, request: &PushRequest) -> Result<PushResponse> {
        self.push_mutations(caller, request, true).await
    }

    /// With `exactly_once`, the client's last processed mutation id is kept
    /// and advanced atomically; without (clients of the older API, which
    /// have no mutation ids), mutations are applied as they come.
    pub(super) async fn push_mutations(
        &self,
        caller: &Caller,
        request: &PushRequest,
        exactly_once: bool,
    ) -> Result<PushResponse> {
        let tenant = &caller.tenant;
        self.check_push(caller, request)?;
        let client = &request.client_id;
        let mut results: BTreeMap<u64, MutationResult> = BTreeMap::new();
        let mut own: HashMap<Key, OwnWrite> = HashMap::new();
        let mut attempt = 0;
        let mut progress = 0;
        // The newest sequence number this push's commits took.
        let mut committed_up_to: Option<u64> = None;
        // Read the client's progress at the start and after a lost race;
        // after a committed chunk it is known.
        let mut stale = true;
        loop {
            if stale && exactly_once {
                progress = self.store.client_progress(tenant, client).await?;
            }
            stale = false;
            if results.is_empty()
                && let Some(first) = request.mutations.first()
                && first.id > progress + 1
            {
                return Err(Error::validation(
                    "mutations",
                    format!(
                        "mutation ids out of order: the next one expected is {}",
                        progress + 1
                    ),
                ));
            }
            for m in request.mutations.iter().filter(|m| m.id <= progress) {
                results
                    .entry(m.id)
                    .or_insert_with(|| already_processed(m.id));
            }
            let pending: Vec<&Mutation> = request
                .mutations
                .iter()
                .filter(|m| m.id > progress && !results.contains_key(&m.id))
                .collect();
            if pending.is_empty() {
                break;
            }
            let chunk = take_chunk(&pending, &self.registry);
            let tracked = exactly_once.then_some(progress);
            match self
                .apply_chunk(tenant, client, tracked, &chunk, &own)
                .await
            {
                Ok((chunk_results, written, seq)) => {
                    committed_up_to = committed_up_to.max(seq);
                    for result in chunk_results {
                        results.insert(result.id, result);
                    }
                    for (key, write) in written {
                        own.entry(key)
                            .and_modify(|w| w.after = write.after)
                            .or_insert(write);
                    }
                    if exactly_once {
                        progress = chunk.last().map_or(progress, |m| m.id);
                    }
                    attempt = 0;
                }
                Err(Error::Conflict(why)) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!(%why, attempt, "push lost a race; retrying from a fresh read");
                    attempt += 1;
                    stale = true;
                    crate::store::backoff(attempt).await;
                }
                Err(Error::Conflict(why)) => {
                    return Err(Error::Store {
                        operation: "TransactWriteItems",
                        retryable: true,
                        source: format!("push kept losing races: {why}").into(),
                    });
                }
                Err(err) => return Err(err),
            }
        }
        // Mutations an earlier push processed, or that changed nothing, were
        // committed before the counter's current value: it covers them.
        let covers_all = results
            .values()
            .all(|r| r.status != Status::AlreadyProcessed);
        let cursor = match committed_up_to {
            Some(seq) if covers_all => Seq::new(seq),
            _ => self.store.allocated_seq(tenant).await?,
        };
        Ok(PushResponse {
            cursor: Cursor::at(cursor),
            last_mutation_id: results
                .keys()
                .next_back()
                .copied()
                .unwrap_or(progress)
                .max(progress),
            results: results.into_values().collect(),
        })
    }

    /// Bad input is refused as a whole, before anything is written.
    fn check_push(&self, caller: &Caller, request: &PushRequest) -> Result<()> {
        if request.mutations.len() > self.registry.max_mutations_per_push {
            return Err(Error::validation(
                "mutations",
                format!(
                    "at most {} mutations per push",
                    self.registry.max_mutations_per_push
                ),
            ));
        }
        for pair in request.mutations.windows(2) {
            if pair[1].id != pair[0].id + 1 {
                return Err(Error::validation(
                    "mutations",
                    "mutation ids out of order: each must be one more than the one before",
                ));
            }
        }
        for m in &request.mutations {
            caller.access.check_write(&m.entity)?;
            self.registry.get(&m.entity)?;
            if m.id == 0 {
                return Err(Error::validation("mutations", "mutation ids start at 1"));
            }
            if matches!(m.op, Op::Upsert | Op::Patch) && m.data.is_none() {
                return Err(Error::validation(
                    "mutations",
                    format!("mutation {} ({:?}) needs data", m.id, m.op).to_lowercase(),
                ));
            }
        }
        Ok(())
    }
}

/// What a chunk is resolved against: the records it touches as read now,
/// and the booking guards and bookings of its no-overlap entities.
struct ChunkRead {
    /// Every item read, as the commit's base.
    known: HashMap<Key, Record>,
    working: HashMap<Key, Working>,
    guards: Vec<(Key, Option<Record>)>,
    bookings: HashMap<EntityType, OverlapIndex>,
}

/// What each mutation of a chunk came to, and the stored conflicts it leaves.
struct ChunkResolved {
    outcomes: Vec<(u64, Key, Resolved)>,
    conflicts: Vec<RecordWrite>,
}

impl SyncService {
    /// One chunk of a push in one transaction: read, resolve, write, and
    /// what each mutation came to with the records this push wrote.
    async fn apply_chunk(
        &self,
        tenant: &TenantId,
        client: &ClientId,
        progress: Option<u64>,
        chunk: &[&Mutation],
        own: &HashMap<Key, OwnWrite>,
    ) -> Result<(Vec<MutationResult>, Vec<(Key, OwnWrite)>, Option<u64>)> {
        let mut read = self.read_chunk(tenant, chunk).await?;
        let resolved = self.resolve_chunk(chunk, &mut read, own, client)?;
        let mut writes = record_writes(chunk, &read.working);
        writes.extend(resolved.conflicts);
        writes.extend(guard_writes(&read.guards));
        let set = ChangeSet {
            tenant: tenant.clone(),
            writes,
            client: progress.map(|expected| ClientProgress {
                client: client.clone(),
                expected,
                last_mutation_id: chunk.last().map_or(expected, |m| m.id),
            }),
            once_only: Vec::new(),
            trail: Some(trail(progress.is_some(), client, chunk)),
        };
        let committed = self.store.commit_known(&set, read.known).await?;
        let seq = committed
            .iter()
            .filter(|c| c.changed)
            .map(|c| c.record.seq.get())
            .max();
        let after: HashMap<Key, Record> = committed
            .into_iter()
            .map(|c| ((c.record.entity.clone(), c.record.id.clone()), c.record))
            .collect();
        let written = read
            .working
            .iter()
            .filter(|(_, w)| w.touched)
            .filter_map(|(key, w)| {
                let record = after.get(key)?;
                Some((
                    key.clone(),
                    OwnWrite {
                        before: w.stored_version(),
                        after: record.version.get(),
                    },
                ))
            })
            .collect();
        let results = resolved
            .outcomes
            .into_iter()
            .map(|(id, key, resolved)| {
                let record = after
                    .get(&key)
                    .or_else(|| read.working.get(&key).and_then(|w| w.stored.as_ref()))
                    .map(RecordView::from);
                result(id, resolved, record)
            })
            .collect();
        Ok((results, written, seq))
    }

    /// Reads what `chunk` touches. Entities with a no-overlap rule: their
    /// guard is read before their bookings, and written with the chunk, so
    /// two pushes booking the same entity at once cannot both commit (the
    /// loser retries from a fresh read and sees the winner's booking).
    async fn read_chunk(&self, tenant: &TenantId, chunk: &[&Mutation]) -> Result<ChunkRead> {
        let mut keys: Vec<Key> = chunk
            .iter()
            .map(|m| (m.entity.clone(), m.record_id.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        let mut guarded: Vec<EntityType> = chunk
            .iter()
            .filter(|m| {
                self.registry
                    .get(&m.entity)
                    .is_ok_and(|spec| spec.no_overlap.is_some())
            })
            .map(|m| m.entity.clone())
            .collect();
        guarded.sort();
        guarded.dedup();
        let guard_entity = EntityType::parse(GUARD_ENTITY)?;
        let mut guard_keys: Vec<Key> = Vec::new();
        for entity in &guarded {
            guard_keys.push((guard_entity.clone(), RecordId::parse(entity.as_str())?));
        }
        let mut guards = self.store.get_many(tenant, &guard_keys).await?;
        let mut known = guards.clone();
        let mut bookings = HashMap::new();
        for entity in &guarded {
            bookings.insert(entity.clone(), self.bookings(tenant, entity).await?);
        }
        let mut stored = self.store.get_many(tenant, &keys).await?;
        known.extend(stored.iter().map(|(k, r)| (k.clone(), r.clone())));
        let working = keys
            .iter()
            .map(|key| (key.clone(), Working::new(stored.remove(key))))
            .collect();
        let guards = guard_keys
            .into_iter()
            .map(|key| {
                let guard = guards.remove(&key);
                (key, guard)
            })
            .collect();
        Ok(ChunkRead {
            known,
            working,
            guards,
            bookings,
        })
    }

    /// Resolves each mutation in order over the records as this push sees
    /// them; a booking that would overlap another is rejected and leaves
    /// its record as it was.
    fn resolve_chunk(
        &self,
        chunk: &[&Mutation],
        read: &mut ChunkRead,
        own: &HashMap<Key, OwnWrite>,
        client: &ClientId,
    ) -> Result<ChunkResolved> {
        let mut outcomes = Vec::with_capacity(chunk.len());
        let mut conflicts = Vec::new();
        for m in chunk {
            let key = (m.entity.clone(), m.record_id.clone());
            let spec = self.registry.get(&m.entity)?;
            let max_bytes = self.registry.max_record_bytes(spec);
            let Some(w) = read.working.get_mut(&key) else {
                return Err(Error::internal("a mutation's record was not read"));
            };
            let before = (spec.no_overlap.is_some() || spec.lifecycle.is_some()).then(|| w.clone());
            let mut resolved = resolve(m, spec, max_bytes, w, own.get(&key), client);
            if let (Some(lifecycle), Some(before)) = (&spec.lifecycle, &before)
                && !matches!(resolved, Resolved::Rejected(_) | Resolved::Manual { .. })
                && let Err(reason) = lifecycle.check(
                    before.data.as_ref().filter(|_| !before.deleted),
                    w.data.as_ref().filter(|_| !w.deleted),
                )
            {
                *w = before.clone();
                resolved = Resolved::Rejected(reason);
            }
            if let (Some(rule), Some(before), Some(index)) =
                (&spec.no_overlap, before, read.bookings.get_mut(&m.entity))
                && !matches!(resolved, Resolved::Rejected(_) | Resolved::Manual { .. })
            {
                let admitted = match (&w.data, w.deleted) {
                    (Some(data), false) => {
                        index.admit(rule, &m.record_id, &Change::Put(data.clone()))
                    }
                    _ => {
                        index.release(&m.record_id);
                        Ok(())
                    }
                };
                if let Err(reason) = admitted {
                    *w = before;
                    resolved = Resolved::Rejected(reason);
                }
            }
            if let Resolved::Manual { conflict_id } = &resolved {
                conflicts.push(conflict_write(conflict_id, m, w, client)?);
            }
            outcomes.push((m.id, key, resolved));
        }
        Ok(ChunkResolved {
            outcomes,
            conflicts,
        })
    }
}

/// The records the chunk changed, in the order its mutations first touched
/// them, so the change sequence follows the client's order.
fn record_writes(chunk: &[&Mutation], working: &HashMap<Key, Working>) -> Vec<RecordWrite> {
    let mut order: Vec<&Key> = Vec::new();
    for m in chunk {
        if let Some((key, _)) = working.get_key_value(&(m.entity.clone(), m.record_id.clone()))
            && !order.contains(&key)
        {
            order.push(key);
        }
    }
    order
        .into_iter()
        .filter_map(|key| working.get(key).map(|w| (key, w)))
        .filter(|(_, w)| w.touched)
        .map(|((entity, id), w)| RecordWrite {
            entity: entity.clone(),
            id: id.clone(),
            change: match (&w.data, w.deleted) {
                (Some(data), false) => Change::Put(data.clone()),
                _ => Change::Delete,
            },
            expect: expect_for(w.stored.as_ref()),
            source: None,
            origin: w.origin.clone(),
            source_version: None,
        })
        .collect()
}

/// Each booking guard rewritten (its commit count bumped), conditioned on
/// the version read, so concurrent bookings of one entity serialize.
fn guard_writes(guards: &[(Key, Option<Record>)]) -> Vec<RecordWrite> {
    guards
        .iter()
        .map(|((entity, id), guard)| {
            let commits = guard
                .as_ref()
                .and_then(|g| g.data.get("commits").and_then(Value::as_u64))
                .unwrap_or(0);
            RecordWrite {
                entity: entity.clone(),
                id: id.clone(),
                change: Change::Put(
                    json!({"entity": id.as_str(), "commits": commits + 1})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                ),
                expect: expect_for(guard.as_ref()),
                source: None,
                origin: None,
                source_version: None,
            }
        })
        .collect()
}

/// The change-trail label of a chunk: the path, the client, the mutations.
fn trail(exactly_once: bool, client: &ClientId, chunk: &[&Mutation]) -> Trail {
    let path = if exactly_once {
        TrailPath::Push
    } else {
        TrailPath::LegacyPush
    };
    let reference = match (chunk.first(), chunk.last()) {
        (Some(first), Some(last)) if first.id != last.id => {
            format!("mutations {}-{}", first.id, last.id)
        }
        (Some(first), _) => format!("mutation {}", first.id),
        _ => String::new(),
    };
    Trail::new(path, client.as_str(), reference)
}

impl SyncService {
    /// The live bookings of a no-overlap entity.
    async fn bookings(&self, tenant: &TenantId, entity: &EntityType) -> Result<OverlapIndex> {
        let spec = self.registry.get(entity)?;
        let mut index = OverlapIndex::default();
        let Some(rule) = &spec.no_overlap else {
            return Ok(index);
        };
        self.store
            .visit_live_records(tenant, entity, |record| {
                // Stored records were admitted when written; one that no
                // longer fits (an earlier rule) still holds its slot.
                let _ = index.admit(rule, &record.id, &Change::Put(record.data.clone()));
                true
            })
            .await?;
        Ok(index)
    }
}

fn already_processed(id: u64) -> MutationResult {
    MutationResult {
        id,
        status: Status::AlreadyProcessed,
        resolution: None,
        record: None,
        reason: None,
        conflicting_fields: Vec::new(),
        conflict_id: None,
    }
}

fn result(id: u64, resolved: Resolved, record: Option<RecordView>) -> MutationResult {
    let mut result = already_processed(id);
    match resolved {
        Resolved::Applied => {
            result.status = Status::Applied;
            result.record = record;
        }
        Resolved::Conflict { resolution, fields } => {
            result.status = Status::Conflict;
            result.resolution = Some(resolution);
            result.conflicting_fields = fields;
            result.record = record;
        }
        Resolved::Manual { conflict_id } => {
            result.status = Status::Conflict;
            result.resolution = Some(Strategy::Manual);
            result.conflict_id = Some(conflict_id);
            result.record = record;
        }
        Resolved::Rejected(reason) => {
            result.status = Status::Rejected;
            result.reason = Some(reason);
        }
    }
    result
}

/// The longest prefix of `pending` whose writes fit one transaction.
fn take_chunk<'a>(pending: &[&'a Mutation], registry: &super::EntityRegistry) -> Vec<&'a Mutation> {
    let mut keys: Vec<Key> = Vec::new();
    let mut manual = 0;
    let mut guarded: Vec<&EntityType> = Vec::new();
    let mut chunk = Vec::new();
    for m in pending {
        let key = (m.entity.clone(), m.record_id.clone());
        let new_key = !keys.contains(&key);
        let spec = registry.get(&m.entity).ok();
        let is_manual = spec.is_some_and(|spec| spec.conflict == Strategy::Manual);
        let new_guard =
            spec.is_some_and(|spec| spec.no_overlap.is_some()) && !guarded.contains(&&m.entity);
        let needed = keys.len()
            + usize::from(new_key)
            + manual
            + usize::from(is_manual)
            + guarded.len()
            + usize::from(new_guard);
        if needed > MAX_WRITES_PER_COMMIT && !chunk.is_empty() {
            break;
        }
        if new_key {
            keys.push(key);
        }
        manual += usize::from(is_manual);
        if new_guard {
            guarded.push(&m.entity);
        }
        chunk.push(*m);
    }
    chunk
}

/// The stored conflict a manual-strategy mutation leaves for a person.
fn conflict_write(
    conflict_id: &str,
    m: &Mutation,
    w: &Working,
    client: &ClientId,
) -> Result<RecordWrite> {
    let server = w.stored.as_ref().map(RecordView::from);
    let data = json!({
        "status": "open",
        "entity": m.entity,
        "record_id": m.record_id,
        "client_id": client,
        "mutation": m,
        "server": server,
        "created_at": super::rfc3339(Timestamp::now()),
    });
    let Value::Object(data) = data else {
        return Err(Error::internal("a conflict is not an object"));
    };
    Ok(RecordWrite {
        entity: EntityType::parse(CONFLICT_ENTITY)?,
        id: RecordId::parse(conflict_id)?,
        change: Change::Put(data),
        expect: Expect::Absent,
        source: None,
        origin: None,
        source_version: None,
    })
}

/// Versions, for the conflict resolution route.
pub(super) fn expect_for(record: Option<&Record>) -> Expect {
    match record {
        Some(record) => Expect::Version(record.version),
        None => Expect::Absent,
    }
}
