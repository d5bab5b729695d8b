//! Exactly-once push. Each client numbers its mutations; the server keeps
//! the last processed number per client and advances it in the same
//! transaction as the mutations' effects and the tenant's change sequence.
//! A push is read first, resolved in memory, then written in as few
//! conditional transactions as the 100-item limit allows; a transaction
//! that loses a race is retried from a fresh read.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};

use super::SyncService;
use super::registry::{CONFLICT_ENTITY, EntitySpec, GUARD_ENTITY, Strategy};
use super::wire::{Mutation, MutationResult, Op, PushRequest, PushResponse, RecordView, Status};
use crate::connectors::OverlapIndex;
use crate::error::{Error, Result};
use crate::model::{ClientId, EntityType, Origin, Record, RecordId, TenantId, Timestamp};
use crate::store::{Change, ChangeSet, ClientProgress, Expect, RecordWrite, Trail, TrailPath};

type Key = (EntityType, RecordId);

/// Record writes per transaction beside the client's progress and the
/// change-trail entry.
const MAX_WRITES_PER_COMMIT: usize = ChangeSet::record_room(true, 0, true);
const MAX_ATTEMPTS: u32 = 16;

/// A record as this push sees it while resolving.
#[derive(Debug, Clone)]
struct Working {
    stored: Option<Record>,
    data: Option<Map<String, Value>>,
    deleted: bool,
    origin: Option<Origin>,
    touched: bool,
}

impl Working {
    fn new(stored: Option<Record>) -> Self {
        Self {
            data: stored
                .as_ref()
                .filter(|r| !r.deleted)
                .map(|r| r.data.clone()),
            deleted: stored.as_ref().is_some_and(|r| r.deleted),
            origin: stored.as_ref().and_then(|r| r.origin.clone()),
            stored,
            touched: false,
        }
    }

    fn stored_version(&self) -> Option<u64> {
        self.stored.as_ref().map(|r| r.version.get())
    }

    /// The clock of the latest write, for last-write-wins: the writer's
    /// own, or the server's time for server-side writes.
    fn clock(&self) -> (i64, u32, String) {
        match (&self.origin, &self.stored) {
            (Some(origin), _) => (origin.at, origin.counter, origin.client.clone()),
            (None, Some(record)) => (record.updated_at.as_millis(), 0, String::new()),
            (None, None) => (i64::MIN, 0, String::new()),
        }
    }
}

/// What one mutation came to, before the versions are known.
enum Resolved {
    Applied,
    Conflict {
        resolution: Strategy,
        fields: Vec<String>,
    },
    Manual {
        conflict_id: String,
    },
    Rejected(String),
}

/// A record this push wrote earlier (an earlier transaction of the same
/// push): the client's base version may still be the one before it.
#[derive(Debug, Clone, Copy)]
struct OwnWrite {
    before: Option<u64>,
    after: u64,
}

impl SyncService {
    pub async fn push(&self, tenant: &TenantId, request: &PushRequest) -> Result<PushResponse> {
        self.push_mutations(tenant, request, true).await
    }

    /// With `exactly_once`, the client's last processed mutation id is kept
    /// and advanced atomically; without (clients of the older API, which
    /// have no mutation ids), mutations are applied as they come.
    pub(super) async fn push_mutations(
        &self,
        tenant: &TenantId,
        request: &PushRequest,
        exactly_once: bool,
    ) -> Result<PushResponse> {
        self.check_push(request)?;
        let client = &request.client_id;
        let mut results: BTreeMap<u64, MutationResult> = BTreeMap::new();
        let mut own: HashMap<Key, OwnWrite> = HashMap::new();
        let mut attempt = 0;
        let mut progress = 0;
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
                Ok((chunk_results, written)) => {
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
        Ok(PushResponse {
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
    fn check_push(&self, request: &PushRequest) -> Result<()> {
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

    async fn apply_chunk(
        &self,
        tenant: &TenantId,
        client: &ClientId,
        progress: Option<u64>,
        chunk: &[&Mutation],
        own: &HashMap<Key, OwnWrite>,
    ) -> Result<(Vec<MutationResult>, Vec<(Key, OwnWrite)>)> {
        let mut keys: Vec<Key> = chunk
            .iter()
            .map(|m| (m.entity.clone(), m.record_id.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        // Entities with a no-overlap rule: their guard is read before their
        // bookings, and written with the chunk, so two pushes booking the
        // same entity at once cannot both commit (the loser retries from a
        // fresh read and sees the winner's booking).
        let guarded: Vec<EntityType> = {
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
            guarded
        };
        let guard_entity = EntityType::parse(GUARD_ENTITY)?;
        let mut guard_keys: Vec<Key> = Vec::new();
        for entity in &guarded {
            guard_keys.push((guard_entity.clone(), RecordId::parse(entity.as_str())?));
        }
        let mut guards = self.store.get_many(tenant, &guard_keys).await?;
        // What the commit is based on: the records and guards as read now.
        let mut known = guards.clone();
        let mut bookings: HashMap<EntityType, OverlapIndex> = HashMap::new();
        for entity in &guarded {
            bookings.insert(entity.clone(), self.bookings(tenant, entity).await?);
        }
        let mut stored = self.store.get_many(tenant, &keys).await?;
        known.extend(stored.iter().map(|(k, r)| (k.clone(), r.clone())));
        let mut working: HashMap<Key, Working> = keys
            .iter()
            .map(|key| (key.clone(), Working::new(stored.remove(key))))
            .collect();

        let mut outcomes = Vec::with_capacity(chunk.len());
        let mut conflict_writes = Vec::new();
        for m in chunk {
            let key = (m.entity.clone(), m.record_id.clone());
            let spec = self.registry.get(&m.entity)?;
            let max_bytes = self.registry.max_record_bytes(spec);
            let Some(w) = working.get_mut(&key) else {
                return Err(Error::internal("a mutation's record was not read"));
            };
            let before = spec.no_overlap.is_some().then(|| w.clone());
            let mut resolved = resolve(m, spec, max_bytes, w, own.get(&key), client);
            if let (Some(rule), Some(before), Some(index)) =
                (&spec.no_overlap, before, bookings.get_mut(&m.entity))
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
                conflict_writes.push(conflict_write(conflict_id, m, w, client)?);
            }
            outcomes.push((m.id, key, resolved));
        }

        // In the order the mutations first touched them, so the change
        // sequence follows the client's order.
        let mut order: Vec<&Key> = Vec::new();
        for m in chunk {
            if let Some((key, _)) = working.get_key_value(&(m.entity.clone(), m.record_id.clone()))
                && !order.contains(&key)
            {
                order.push(key);
            }
        }
        let mut writes: Vec<RecordWrite> = order
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
                expect: match &w.stored {
                    Some(record) => Expect::Version(record.version),
                    None => Expect::Absent,
                },
                source: None,
                origin: w.origin.clone(),
                mark: None,
            })
            .collect();
        writes.extend(conflict_writes);
        for (key @ (entity, id), guard) in guard_keys.iter().map(|k| (k, guards.remove(k))) {
            let count = guard
                .as_ref()
                .and_then(|g| g.data.get("commits").and_then(Value::as_u64))
                .unwrap_or(0);
            writes.push(RecordWrite {
                entity: entity.clone(),
                id: id.clone(),
                change: Change::Put(
                    json!({"entity": key.1.as_str(), "commits": count + 1})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                ),
                expect: match &guard {
                    Some(record) => Expect::Version(record.version),
                    None => Expect::Absent,
                },
                source: None,
                origin: None,
                mark: None,
            });
        }
        let committed = self
            .store
            .commit_known(
                &ChangeSet {
                    tenant: tenant.clone(),
                    writes,
                    client: progress.map(|expected| ClientProgress {
                        client: client.clone(),
                        expected,
                        last_mutation_id: chunk.last().map_or(expected, |m| m.id),
                    }),
                    once_only: Vec::new(),
                    trail: Some(Trail::new(
                        if progress.is_some() {
                            TrailPath::Push
                        } else {
                            TrailPath::LegacyPush
                        },
                        client.as_str(),
                        match (chunk.first(), chunk.last()) {
                            (Some(first), Some(last)) if first.id != last.id => {
                                format!("mutations {}-{}", first.id, last.id)
                            }
                            (Some(first), _) => format!("mutation {}", first.id),
                            _ => String::new(),
                        },
                    )),
                },
                known,
            )
            .await?;
        let after: HashMap<Key, Record> = committed
            .into_iter()
            .map(|c| ((c.record.entity.clone(), c.record.id.clone()), c.record))
            .collect();

        let mut written = Vec::new();
        for (key, w) in &working {
            if let (true, Some(record)) = (w.touched, after.get(key)) {
                written.push((
                    key.clone(),
                    OwnWrite {
                        before: w.stored_version(),
                        after: record.version.get(),
                    },
                ));
            }
        }
        let results = outcomes
            .into_iter()
            .map(|(id, key, resolved)| {
                let record = after
                    .get(&key)
                    .or_else(|| working.get(&key).and_then(|w| w.stored.as_ref()))
                    .map(RecordView::from);
                result(id, resolved, record)
            })
            .collect();
        Ok((results, written))
    }
}

impl SyncService {
    /// The live bookings of a no-overlap entity.
    async fn bookings(&self, tenant: &TenantId, entity: &EntityType) -> Result<OverlapIndex> {
        let spec = self.registry.get(entity)?;
        let mut index = OverlapIndex::default();
        let Some(rule) = &spec.no_overlap else {
            return Ok(index);
        };
        let mut after = None;
        loop {
            let page = self
                .store
                .list_records(tenant, entity, 1000, after.as_ref())
                .await?;
            for record in page.items.iter().filter(|r| !r.deleted) {
                // Stored records were admitted when written; one that no
                // longer fits (an earlier rule) still holds its slot.
                let _ = index.admit(rule, &record.id, &Change::Put(record.data.clone()));
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(index),
            }
        }
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

/// What the client asks for, applied to the current content.
fn proposed(m: &Mutation, w: &Working) -> (Option<Map<String, Value>>, bool) {
    match m.op {
        Op::Upsert => (m.data.clone(), false),
        Op::Patch => {
            let mut data = w.data.clone().unwrap_or_default();
            data.extend(m.data.clone().unwrap_or_default());
            (Some(data), false)
        }
        Op::Delete => (None, true),
    }
}

fn check(spec: &EntitySpec, max_bytes: usize, data: &Map<String, Value>) -> Result<(), String> {
    let size = serde_json::to_vec(data).map_or(usize::MAX, |bytes| bytes.len());
    if size > max_bytes {
        return Err(format!(
            "record is {size} bytes; at most {max_bytes} allowed"
        ));
    }
    spec.rules.check(data).map_err(|e| e.to_string())
}

fn resolve(
    m: &Mutation,
    spec: &EntitySpec,
    max_bytes: usize,
    w: &mut Working,
    own: Option<&OwnWrite>,
    client: &ClientId,
) -> Resolved {
    let (data, deleted) = proposed(m, w);
    if let Some(data) = &data
        && let Err(reason) = check(spec, max_bytes, data)
    {
        return Resolved::Rejected(reason);
    }
    let current = w.stored_version();
    // The client's base matches what is stored, or what was stored before
    // this same push wrote it.
    let based_on_current = match (m.base_version, current) {
        (_, None) => true,
        (Some(base), Some(now)) if base == now => true,
        (base, Some(now)) => own.is_some_and(|o| o.after == now && o.before == base),
    };
    let origin = Origin {
        at: m.timestamp.0,
        counter: m.counter,
        client: client.to_string(),
    };
    let apply = |w: &mut Working, data: Option<Map<String, Value>>, deleted: bool| {
        w.data = data;
        w.deleted = deleted;
        w.origin = Some(origin.clone());
        w.touched = true;
    };
    if based_on_current {
        apply(w, data, deleted);
        return Resolved::Applied;
    }
    match spec.conflict {
        Strategy::ServerWins => Resolved::Conflict {
            resolution: Strategy::ServerWins,
            fields: Vec::new(),
        },
        Strategy::ClientWins => {
            apply(w, data, deleted);
            Resolved::Conflict {
                resolution: Strategy::ClientWins,
                fields: Vec::new(),
            }
        }
        Strategy::LastWriteWins => {
            let mine = (origin.at, origin.counter, origin.client.clone());
            if mine > w.clock() {
                apply(w, data, deleted);
            }
            Resolved::Conflict {
                resolution: Strategy::LastWriteWins,
                fields: Vec::new(),
            }
        }
        Strategy::Merge => {
            if deleted || w.deleted {
                // A delete against concurrent edits (or an edit of a record
                // deleted meanwhile) keeps the server's state.
                return Resolved::Conflict {
                    resolution: Strategy::Merge,
                    fields: Vec::new(),
                };
            }
            let (merged, fields) = merge(m, w.data.clone().unwrap_or_default());
            if let Err(reason) = check(spec, max_bytes, &merged) {
                return Resolved::Rejected(reason);
            }
            if Some(&merged) != w.data.as_ref() {
                apply(w, Some(merged), false);
            }
            Resolved::Conflict {
                resolution: Strategy::Merge,
                fields,
            }
        }
        Strategy::Manual => Resolved::Manual {
            conflict_id: uuid::Uuid::new_v4().simple().to_string(),
        },
    }
}

/// Three-way merge of the client's change into `current` against the base
/// the client sent. Returns the merged content and the fields both sides
/// changed (kept at the server's value).
fn merge(m: &Mutation, mut current: Map<String, Value>) -> (Map<String, Value>, Vec<String>) {
    let changes = m.data.clone().unwrap_or_default();
    let mut conflicting = Vec::new();
    let server_unchanged = |field: &str, current: &Map<String, Value>| match &m.base {
        Some(base) => base.get(field) == current.get(field),
        // No base: the client's fields win (patch semantics).
        None => true,
    };
    for (field, value) in &changes {
        if current.get(field) == Some(value) {
            continue;
        }
        if server_unchanged(field, &current) {
            current.insert(field.clone(), value.clone());
        } else {
            conflicting.push(field.clone());
        }
    }
    // An upsert drops the fields it left out, where the server kept them.
    if m.op == Op::Upsert
        && let Some(base) = &m.base
    {
        for field in base.keys().filter(|f| !changes.contains_key(*f)) {
            if server_unchanged(field, &current) {
                current.remove(field);
            } else {
                conflicting.push(field.clone());
            }
        }
    }
    conflicting.sort();
    (current, conflicting)
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
        mark: None,
    })
}

/// Versions, for the conflict resolution route.
pub(super) fn expect_for(record: Option<&Record>) -> Expect {
    match record {
        Some(record) => Expect::Version(record.version),
        None => Expect::Absent,
    }
}
