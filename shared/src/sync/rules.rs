//! The conflict rules of a push, pure: what a mutation asks for, whether
//! it was based on what is stored, and, when it was not, what the entity's
//! strategy makes of it (server-wins, client-wins, last-write-wins,
//! three-way merge against the client's base, or a stored conflict for a
//! person). No I/O: the push reads before and writes after.

use serde_json::{Map, Value};

use super::registry::{EntitySpec, Strategy};
use super::wire::{Mutation, Op};
use crate::model::{ClientId, Origin, Record};

/// A record as this push sees it while resolving.
#[derive(Debug, Clone)]
pub(super) struct Working {
    pub stored: Option<Record>,
    pub data: Option<Map<String, Value>>,
    pub deleted: bool,
    pub origin: Option<Origin>,
    /// A mutation of this push changed it: it is written.
    pub touched: bool,
}

impl Working {
    pub fn new(stored: Option<Record>) -> Self {
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

    pub fn stored_version(&self) -> Option<u64> {
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
pub(super) enum Resolved {
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
pub(super) struct OwnWrite {
    pub before: Option<u64>,
    pub after: u64,
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

/// Resolves `m` against the record as this push sees it (`w`, updated
/// in place when the mutation takes effect).
pub(super) fn resolve(
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{ContentHash, EntityType, RecordId, Seq, TenantId, Timestamp, Version};

    fn mutation(value: Value) -> Mutation {
        let mut m = json!({
            "id": 1, "op": "patch", "entity": "job", "record_id": "j1", "timestamp": 2_000,
        });
        if let (Value::Object(m), Value::Object(fields)) = (&mut m, value) {
            m.extend(fields);
        }
        serde_json::from_value(m).expect("mutation")
    }

    fn spec(conflict: &str) -> EntitySpec {
        serde_json::from_value(json!({"conflict": conflict})).expect("spec")
    }

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("object")
    }

    /// A stored record at version 2, last written by the server at 1 s.
    fn stored(data: Value) -> Working {
        let data = object(data);
        Working::new(Some(Record {
            tenant: TenantId::parse("acme").expect("tenant"),
            entity: EntityType::parse("job").expect("entity"),
            id: RecordId::parse("j1").expect("id"),
            hash: ContentHash::of(&data, false),
            data,
            version: Version::FIRST.next(),
            deleted: false,
            source: None,
            created_at: Timestamp::from_millis(1_000),
            updated_at: Timestamp::from_millis(1_000),
            seq: Seq::new(2),
            origin: None,
            source_version: None,
            changed_by: None,
        }))
    }

    fn client() -> ClientId {
        ClientId::parse("phone").expect("client")
    }

    #[test]
    fn a_mutation_based_on_the_stored_version_applies_whatever_the_strategy() {
        for strategy in [
            "server_wins",
            "client_wins",
            "last_write_wins",
            "merge",
            "manual",
        ] {
            let mut w = stored(json!({"status": "new"}));
            let m = mutation(json!({"base_version": 2, "data": {"status": "done"}}));
            let resolved = resolve(&m, &spec(strategy), 1024, &mut w, None, &client());
            assert!(matches!(resolved, Resolved::Applied), "{strategy}");
            assert!(w.touched);
            assert_eq!(w.data, Some(object(json!({"status": "done"}))));
        }
    }

    #[test]
    fn server_wins_keeps_the_stored_record_on_a_stale_base() {
        let mut w = stored(json!({"status": "new"}));
        let m = mutation(json!({"base_version": 1, "data": {"status": "done"}}));
        let resolved = resolve(&m, &spec("server_wins"), 1024, &mut w, None, &client());
        assert!(matches!(
            resolved,
            Resolved::Conflict {
                resolution: Strategy::ServerWins,
                ..
            }
        ));
        assert!(!w.touched);
        assert_eq!(w.data, Some(object(json!({"status": "new"}))));
    }

    #[test]
    fn last_write_wins_compares_the_clients_clock_with_the_stored_writes() {
        let mut older = stored(json!({"status": "new"}));
        let early = mutation(json!({"base_version": 1, "timestamp": 500, "data": {"status": "x"}}));
        resolve(
            &early,
            &spec("last_write_wins"),
            1024,
            &mut older,
            None,
            &client(),
        );
        assert!(!older.touched, "a write older than the stored one loses");

        let mut newer = stored(json!({"status": "new"}));
        let late =
            mutation(json!({"base_version": 1, "timestamp": 5_000, "data": {"status": "y"}}));
        resolve(
            &late,
            &spec("last_write_wins"),
            1024,
            &mut newer,
            None,
            &client(),
        );
        assert!(newer.touched);
        assert_eq!(newer.data, Some(object(json!({"status": "y"}))));
    }

    #[test]
    fn merge_takes_fields_only_the_client_changed_and_reports_the_rest() {
        let m = mutation(json!({
            "base_version": 1,
            "base": {"status": "new", "crew": "a", "notes": "x"},
            "data": {"status": "done", "crew": "b"},
        }));
        // The server changed the crew meanwhile; the status is the client's.
        let (merged, conflicting) = merge(
            &m,
            object(json!({"status": "new", "crew": "c", "notes": "x"})),
        );
        assert_eq!(
            merged,
            object(json!({"status": "done", "crew": "c", "notes": "x"}))
        );
        assert_eq!(conflicting, vec!["crew".to_owned()]);
    }

    #[test]
    fn an_upsert_merge_drops_the_fields_it_left_out_unless_the_server_changed_them() {
        let m = mutation(json!({
            "op": "upsert",
            "base_version": 1,
            "base": {"status": "new", "notes": "x", "crew": "a"},
            "data": {"status": "new"},
        }));
        let (merged, conflicting) = merge(
            &m,
            object(json!({"status": "new", "notes": "x", "crew": "b"})),
        );
        assert_eq!(merged, object(json!({"status": "new", "crew": "b"})));
        assert_eq!(conflicting, vec!["crew".to_owned()]);
    }

    #[test]
    fn content_over_the_size_limit_is_rejected_before_any_strategy() {
        let mut w = stored(json!({"status": "new"}));
        let m = mutation(json!({"base_version": 2, "data": {"notes": "x".repeat(100)}}));
        let resolved = resolve(&m, &spec("client_wins"), 64, &mut w, None, &client());
        assert!(matches!(resolved, Resolved::Rejected(reason) if reason.contains("at most 64")));
        assert!(!w.touched);
    }

    #[test]
    fn a_base_from_before_this_pushs_own_earlier_write_still_counts_as_current() {
        let mut w = stored(json!({"status": "new"}));
        let m = mutation(json!({"base_version": 1, "data": {"status": "done"}}));
        let own = OwnWrite {
            before: Some(1),
            after: 2,
        };
        let resolved = resolve(
            &m,
            &spec("server_wins"),
            1024,
            &mut w,
            Some(&own),
            &client(),
        );
        assert!(matches!(resolved, Resolved::Applied));
    }
}
