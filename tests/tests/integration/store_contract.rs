//! The storage layer's contract, run against the embedded engine both ways
//! the code reaches it: over its HTTP endpoint, and called in process.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::json;
use syncline::Error;
use syncline::model::{ClientId, Cursor, Seq, SourceId};
use syncline::store::{
    Change, ChangeSet, ClientProgress, Expect, KvExpect, KvKey, LogStream, RecordWrite,
};
use syncline_tests::{
    RequestLog, TestStore, data, entity, id, stored, tenant, test_store, test_store_in_process,
};

fn put(entity_name: &str, record: &str, value: serde_json::Value, expect: Expect) -> RecordWrite {
    RecordWrite {
        entity: entity(entity_name),
        id: id(record),
        change: Change::Put(data(value)),
        expect,
        source: None,
        origin: None,
        source_version: None,
    }
}

async fn conditional_writes_conflict_when_the_expectation_is_stale(t: TestStore) {
    let acme = tenant("acme");

    let created = t
        .store
        .put_record(&acme, put("booking", "b1", json!({"n": 1}), Expect::Absent))
        .await
        .expect("first create succeeds");
    assert_eq!(created.record.version.get(), 1);

    let again = t
        .store
        .put_record(&acme, put("booking", "b1", json!({"n": 2}), Expect::Absent))
        .await;
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");

    let stale = t
        .store
        .put_record(
            &acme,
            put(
                "booking",
                "b1",
                json!({"n": 3}),
                Expect::Version(created.record.version.next()),
            ),
        )
        .await;
    assert!(matches!(stale, Err(Error::Conflict(_))), "{stale:?}");

    let updated = t
        .store
        .put_record(
            &acme,
            put(
                "booking",
                "b1",
                json!({"n": 4}),
                Expect::Version(created.record.version),
            ),
        )
        .await
        .expect("update at the current version succeeds");
    assert_eq!(updated.record.version.get(), 2);
    assert_eq!(updated.record.created_at, created.record.created_at);

    let record = stored(&t.store, "acme", "booking", "b1")
        .await
        .expect("present");
    assert_eq!(record.data, data(json!({"n": 4})));
    assert_eq!(record.version.get(), 2);
}

async fn rewriting_identical_content_writes_nothing(t: TestStore) {
    let acme = tenant("acme");
    let first = t
        .store
        .put_record(
            &acme,
            put("booking", "b1", json!({"a": 1, "b": 2}), Expect::Any),
        )
        .await
        .expect("create");
    t.requests.take();

    let same = t
        .store
        .put_record(
            &acme,
            put("booking", "b1", json!({"b": 2, "a": 1}), Expect::Any),
        )
        .await
        .expect("rewrite");
    assert!(!same.changed);
    assert_eq!(same.record.version, first.record.version);
    let sent = t.requests.take();
    assert_eq!(
        RequestLog::count(&sent, "TransactWriteItems"),
        0,
        "{sent:?}"
    );
}

async fn a_multi_item_write_fails_as_a_whole_and_leaves_nothing_behind(t: TestStore) {
    let acme = tenant("acme");
    let existing = t
        .store
        .put_record(
            &acme,
            put("job", "j1", json!({"crew": "a"}), Expect::Absent),
        )
        .await
        .expect("seed");
    let seq_before = t.store.latest_seq(&acme).await.expect("seq");

    // A new record, a stale update and the client's progress: the stale
    // update must take the other two down with it.
    let set = ChangeSet {
        tenant: acme.clone(),
        writes: vec![
            put("job", "j2", json!({"crew": "b"}), Expect::Absent),
            put(
                "job",
                "j1",
                json!({"crew": "c"}),
                Expect::Version(existing.record.version.next()),
            ),
        ],
        client: Some(ClientProgress {
            client: ClientId::parse("phone-1").expect("client"),
            expected: 0,
            last_mutation_id: 2,
        }),
        once_only: Vec::new(),
        trail: None,
    };
    let failed = t.store.commit(&set).await;
    assert!(matches!(failed, Err(Error::Conflict(_))), "{failed:?}");

    assert!(stored(&t.store, "acme", "job", "j2").await.is_none());
    let j1 = stored(&t.store, "acme", "job", "j1")
        .await
        .expect("present");
    assert_eq!(j1.data, data(json!({"crew": "a"})));
    let phone = ClientId::parse("phone-1").expect("client");
    assert_eq!(
        t.store
            .client_progress(&acme, &phone)
            .await
            .expect("progress"),
        0
    );
    assert_eq!(t.store.latest_seq(&acme).await.expect("seq"), seq_before);
}

async fn records_counter_and_client_progress_commit_together(t: TestStore) {
    let acme = tenant("acme");
    let phone = ClientId::parse("phone-1").expect("client");
    let set = ChangeSet {
        tenant: acme.clone(),
        writes: vec![
            put("job", "j1", json!({"crew": "a"}), Expect::Absent),
            put("job", "j2", json!({"crew": "b"}), Expect::Absent),
        ],
        client: Some(ClientProgress {
            client: phone.clone(),
            expected: 0,
            last_mutation_id: 7,
        }),
        once_only: Vec::new(),
        trail: None,
    };
    t.requests.take();
    let committed = t.store.commit(&set).await.expect("commit");
    let sent = t.requests.take();
    // Two records, the client's progress and the feed entry; the numbers
    // come from a block held on the counter (taken and released around the
    // transaction), so concurrent commits do not cancel each other there.
    assert_eq!(
        RequestLog::sizes(&sent, "TransactWriteItems"),
        vec![4],
        "{sent:?}"
    );
    assert_eq!(RequestLog::count(&sent, "UpdateItem"), 2, "{sent:?}");

    let seqs: Vec<u64> = committed.iter().map(|c| c.record.seq.get()).collect();
    assert_eq!(seqs, vec![1, 2]);
    assert_eq!(t.store.latest_seq(&acme).await.expect("seq").get(), 2);
    assert_eq!(
        t.store
            .client_progress(&acme, &phone)
            .await
            .expect("progress"),
        7
    );

    // Replaying the same push (the client retried) is refused as a whole.
    let replay = t.store.commit(&set).await;
    assert!(matches!(replay, Err(Error::Conflict(_))), "{replay:?}");
    assert_eq!(t.store.latest_seq(&acme).await.expect("seq").get(), 2);
}

async fn a_once_key_applies_its_change_set_exactly_once(t: TestStore) {
    let acme = tenant("acme");
    let key = KvKey::new(KvKey::DEDUPE, "calendly#evt-1");
    let set = ChangeSet {
        tenant: acme.clone(),
        writes: vec![put(
            "booking",
            "b1",
            json!({"status": "active"}),
            Expect::Any,
        )],
        client: None,
        once_only: vec![(key.clone(), Duration::from_secs(3600))],
        trail: None,
    };
    t.store.commit(&set).await.expect("first delivery applies");
    let mut redelivery = set.clone();
    redelivery.writes = vec![put(
        "booking",
        "b1",
        json!({"status": "changed"}),
        Expect::Any,
    )];
    let again = t.store.commit(&redelivery).await;
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
    let record = stored(&t.store, "acme", "booking", "b1")
        .await
        .expect("present");
    assert_eq!(record.data, data(json!({"status": "active"})));
    assert_eq!(record.version.get(), 1);
}

async fn listing_pages_through_every_record_in_id_order_and_only_its_own(t: TestStore) {
    let acme = tenant("acme");
    let other = tenant("other");
    let ids: Vec<String> = (0..53).map(|i| format!("p-{i:03}")).collect();
    let changes = ids
        .iter()
        .map(|i| (id(i), Change::Put(data(json!({"i": i})))))
        .collect();
    t.store
        .upsert_batch(
            &acme,
            &entity("property"),
            None,
            changes,
            &syncline_tests::trail(),
        )
        .await
        .expect("seed");
    t.store
        .upsert_batch(
            &other,
            &entity("property"),
            None,
            vec![(id("x"), Change::Put(data(json!({}))))],
            &syncline_tests::trail(),
        )
        .await
        .expect("seed other tenant");

    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = t
            .store
            .list_records(&acme, &entity("property"), 10, token.as_ref())
            .await
            .expect("page");
        pages += 1;
        assert!(page.items.len() <= 10);
        seen.extend(page.items.into_iter().map(|r| r.id.to_string()));
        match page.next {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every record once, in id order");
    assert!(pages >= 6);

    // A token from one tenant's listing is refused on another's.
    let first = t
        .store
        .list_records(&acme, &entity("property"), 10, None)
        .await
        .expect("page");
    let foreign = t
        .store
        .list_records(&other, &entity("property"), 10, first.next.as_ref())
        .await;
    assert!(
        matches!(foreign, Err(Error::Validation { .. })),
        "{foreign:?}"
    );
}

async fn heads_list_the_same_records_without_their_data(t: TestStore) {
    let acme = tenant("acme");
    let changes = (0..23)
        .map(|i| {
            (
                id(&format!("h-{i:02}")),
                Change::Put(data(json!({"i": i, "text": "x".repeat(200)}))),
            )
        })
        .collect();
    let source = SourceId::parse("api").expect("source");
    t.store
        .upsert_batch(
            &acme,
            &entity("property"),
            Some(&source),
            changes,
            &syncline_tests::trail(),
        )
        .await
        .expect("seed");
    t.store
        .upsert_batch(
            &acme,
            &entity("property"),
            Some(&source),
            vec![(id("h-05"), Change::Delete)],
            &syncline_tests::trail(),
        )
        .await
        .expect("delete");
    let mut full = Vec::new();
    let mut heads = Vec::new();
    let (mut a, mut b) = (None, None);
    loop {
        let page = t
            .store
            .list_records(&acme, &entity("property"), 7, a.as_ref())
            .await
            .expect("page");
        full.extend(page.items);
        let head_page = t
            .store
            .list_record_heads(&acme, &entity("property"), 7, b.as_ref())
            .await
            .expect("heads");
        heads.extend(head_page.items);
        match (page.next, head_page.next) {
            (Some(x), Some(y)) => (a, b) = (Some(x), Some(y)),
            (None, None) => break,
            other => panic!("pages differ: {other:?}"),
        }
    }
    assert_eq!(heads.len(), 23);
    for (record, head) in full.iter().zip(&heads) {
        assert!(head.data.is_empty());
        let mut without_data = record.clone();
        without_data.data = serde_json::Map::new();
        assert_eq!(&without_data, head);
    }
    assert!(heads.iter().any(|h| h.id.as_str() == "h-05" && h.deleted));
    assert!(heads.iter().all(|h| h.source.as_ref() == Some(&source)));
}

async fn batch_upserts_write_each_changed_record_once_under_one_held_block_and_skip_unchanged_records(
    t: TestStore,
) {
    let acme = tenant("acme");
    let property = entity("property");
    let source = SourceId::parse("property-api").expect("source");
    let batch = |salt: &str, changed: usize| {
        (0..60)
            .map(|i| {
                let v = if i < changed { salt } else { "base" };
                (
                    id(&format!("p{i}")),
                    Change::Put(data(json!({"i": i, "v": v}))),
                )
            })
            .collect::<Vec<_>>()
    };

    let first = t
        .store
        .upsert_batch(
            &acme,
            &property,
            Some(&source),
            batch("base", 0),
            &syncline_tests::trail(),
        )
        .await
        .expect("first run");
    assert_eq!((first.created, first.updated, first.unchanged), (60, 0, 0));
    let sent = t.requests.take();
    // No transaction: the records as conditional statements, 25 to a
    // request, a PutItem each for the trail entry and the feed entry, and
    // the counter's hold taken and released.
    let mut writes = RequestLog::record_writes(&sent);
    writes.sort_unstable();
    assert_eq!(writes, vec![10, 25, 25], "{sent:?}");
    assert_eq!(RequestLog::count(&sent, "BatchExecuteStatement"), 3);
    assert_eq!(RequestLog::count(&sent, "PutItem"), 2);
    assert_eq!(RequestLog::count(&sent, "UpdateItem"), 2);
    assert_eq!(RequestLog::count(&sent, "TransactWriteItems"), 0);
    assert_eq!(t.store.latest_seq(&acme).await.expect("seq").get(), 60);
    assert_eq!(t.store.allocated_seq(&acme).await.expect("seq").get(), 60);

    let rerun = t
        .store
        .upsert_batch(
            &acme,
            &property,
            Some(&source),
            batch("base", 0),
            &syncline_tests::trail(),
        )
        .await
        .expect("unchanged rerun");
    assert_eq!((rerun.created, rerun.updated, rerun.unchanged), (0, 0, 60));
    let sent = t.requests.take();
    assert_eq!(RequestLog::record_writes(&sent), Vec::<usize>::new());
    assert_eq!(
        RequestLog::count(&sent, "TransactWriteItems"),
        0,
        "{sent:?}"
    );

    let changed = t
        .store
        .upsert_batch(
            &acme,
            &property,
            Some(&source),
            batch("new", 7),
            &syncline_tests::trail(),
        )
        .await
        .expect("partial change");
    assert_eq!((changed.updated, changed.unchanged), (7, 53));
    let sent = t.requests.take();
    // The seven changed records in one statement batch (UPDATEs).
    assert_eq!(RequestLog::record_writes(&sent), vec![7]);
    let feed = t
        .store
        .changes_since(
            &acme,
            std::slice::from_ref(&property),
            Cursor::at(Seq::new(60)),
            100,
        )
        .await
        .expect("feed");
    let ids: Vec<&str> = feed.records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
    assert_eq!((feed.cursor.seq().get(), feed.has_more), (67, false));

    let p3 = t
        .store
        .get_record(&acme, &property, &id("p3"))
        .await
        .expect("read")
        .expect("present");
    assert_eq!(p3.version.get(), 2);
    assert_eq!(p3.source, Some(source));
}

async fn tombstones_are_returned_by_reads_and_the_change_feed(t: TestStore) {
    let acme = tenant("acme");
    let created = t
        .store
        .put_record(&acme, put("booking", "b1", json!({"x": 1}), Expect::Absent))
        .await
        .expect("create");
    let cursor = Cursor::at(created.record.seq);
    let deleted = t
        .store
        .put_record(
            &acme,
            RecordWrite {
                entity: entity("booking"),
                id: id("b1"),
                change: Change::Delete,
                expect: Expect::Version(created.record.version),
                source: None,
                origin: None,
                source_version: None,
            },
        )
        .await
        .expect("delete");
    assert!(deleted.record.deleted);
    assert_eq!(deleted.record.version.get(), 2);
    let changes = t
        .store
        .changes_since(&acme, &[entity("booking")], cursor, 100)
        .await
        .expect("pull");
    assert_eq!(changes.records.len(), 1);
    assert!(changes.records[0].deleted);
    assert!(changes.cursor > cursor);
}

async fn tombstones_expire_after_the_retention_window(t: TestStore) {
    let store = t
        .store
        .clone()
        .with_tombstone_retention(Duration::from_secs(1));
    let acme = tenant("acme");
    store
        .upsert_batch(
            &acme,
            &entity("booking"),
            None,
            vec![(id("b1"), Change::Put(data(json!({}))))],
            &syncline_tests::trail(),
        )
        .await
        .expect("create");
    store
        .upsert_batch(
            &acme,
            &entity("booking"),
            None,
            vec![(id("b1"), Change::Delete)],
            &syncline_tests::trail(),
        )
        .await
        .expect("delete");
    assert!(
        stored(&store, "acme", "booking", "b1")
            .await
            .is_some_and(|r| r.deleted)
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(stored(&store, "acme", "booking", "b1").await.is_none());
    // The id can be created again after its tombstone expired.
    let again = store
        .put_record(
            &acme,
            put("booking", "b1", json!({"new": true}), Expect::Absent),
        )
        .await
        .expect("recreate");
    assert_eq!(again.record.version.get(), 1);
}

async fn changes_since_a_cursor_are_complete_and_in_commit_order(t: TestStore) {
    let acme = tenant("acme");
    let kinds = [entity("booking"), entity("payment")];
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();

    // A mix of single writes, bulk writes and deletes over two entity types.
    for round in 0..5u64 {
        for (k, kind) in kinds.iter().enumerate() {
            let changes: Vec<_> = (0..12)
                .map(|i| {
                    let change = if round == 4 && i % 5 == 0 {
                        Change::Delete
                    } else {
                        Change::Put(data(json!({"round": round, "i": i})))
                    };
                    (id(&format!("r{i}")), change)
                })
                .collect();
            t.store
                .upsert_batch(&acme, kind, None, changes, &syncline_tests::trail())
                .await
                .expect("bulk");
            let single = t
                .store
                .put_record(
                    &acme,
                    RecordWrite {
                        entity: kind.clone(),
                        id: id(&format!("s{k}")),
                        change: Change::Put(data(json!({"round": round}))),
                        expect: Expect::Any,
                        source: None,
                        origin: None,
                        source_version: None,
                    },
                )
                .await
                .expect("single");
            assert!(single.changed);
        }
    }
    for kind in &kinds {
        let page = t
            .store
            .list_records(&acme, kind, 1000, None)
            .await
            .expect("list");
        for r in page.items {
            expected.insert((r.entity.to_string(), r.id.to_string()), r.version.get());
        }
    }

    // Pull in small pages; apply like a client would.
    let mut cursor = Cursor::START;
    let mut view: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut last_seq = 0;
    let mut pages = 0;
    loop {
        let changes = t
            .store
            .changes_since(&acme, &kinds, cursor, 7)
            .await
            .expect("pull");
        pages += 1;
        assert!(changes.records.len() <= 7);
        assert!(changes.cursor >= cursor, "cursors never go backwards");
        for r in &changes.records {
            assert!(r.seq.get() > last_seq, "commit order");
            last_seq = r.seq.get();
            view.insert((r.entity.to_string(), r.id.to_string()), r.version.get());
        }
        cursor = changes.cursor;
        if !changes.has_more {
            break;
        }
    }
    assert_eq!(view, expected);
    assert!(pages > 3);
    let ids: HashSet<_> = view.keys().collect();
    assert_eq!(ids.len(), 2 * 13);

    // Nothing new: the same cursor comes back with nothing.
    let idle = t
        .store
        .changes_since(&acme, &kinds, cursor, 7)
        .await
        .expect("pull");
    assert!(idle.records.is_empty());
    assert_eq!(idle.cursor, cursor);
}

async fn keyed_items_expire_in_code_and_can_be_taken_again(t: TestStore) {
    let key = KvKey::new(KvKey::IDEMPOTENCY, "msg-1");
    assert!(
        t.store
            .kv_insert(
                &key,
                &json!({"state": "in_progress"}),
                Some(Duration::from_secs(1))
            )
            .await
            .expect("insert")
    );
    assert!(
        !t.store
            .kv_insert(
                &key,
                &json!({"state": "in_progress"}),
                Some(Duration::from_secs(1))
            )
            .await
            .expect("second insert")
    );
    let stored = t
        .store
        .kv_get::<serde_json::Value>(&key)
        .await
        .expect("get")
        .expect("live");
    assert_eq!(stored.revision, 1);

    // Revision-conditioned replace: the stale revision loses.
    let rev = t
        .store
        .kv_put(
            &key,
            &json!({"state": "done"}),
            Some(Duration::from_secs(1)),
            KvExpect::Revision(1),
        )
        .await
        .expect("replace");
    assert_eq!(rev, 2);
    let stale = t
        .store
        .kv_put(&key, &json!({"state": "x"}), None, KvExpect::Revision(1))
        .await;
    assert!(matches!(stale, Err(Error::Conflict(_))), "{stale:?}");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        t.store
            .kv_get::<serde_json::Value>(&key)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        t.store
            .kv_insert(&key, &json!({"state": "in_progress"}), None)
            .await
            .expect("insert after expiry")
    );
}

async fn a_lease_has_one_holder_until_it_expires(t: TestStore) {
    let ttl = Duration::from_secs(1);
    let first = t
        .store
        .acquire_lease("sync:zoho", "run-a", ttl)
        .await
        .expect("acquire")
        .expect("free lease is granted");
    assert!(
        t.store
            .acquire_lease("sync:zoho", "run-b", ttl)
            .await
            .expect("acquire")
            .is_none()
    );
    // The holder can extend its own lease.
    assert!(
        t.store
            .acquire_lease("sync:zoho", "run-a", ttl)
            .await
            .expect("renew")
            .is_some()
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = t
        .store
        .acquire_lease("sync:zoho", "run-b", ttl)
        .await
        .expect("acquire")
        .expect("expired lease is granted");
    // The late first holder cannot release the second holder's lease.
    t.store.release_lease(&first).await.expect("release");
    assert!(
        t.store
            .acquire_lease("sync:zoho", "run-c", ttl)
            .await
            .expect("acquire")
            .is_none()
    );
    t.store.release_lease(&second).await.expect("release");
    assert!(
        t.store
            .acquire_lease("sync:zoho", "run-c", ttl)
            .await
            .expect("acquire")
            .is_some()
    );
}

async fn a_redelivered_webhook_event_is_remembered(t: TestStore) {
    let key =
        syncline::model::DedupeKey::parse(SourceId::parse("stripe").expect("source"), "evt_1")
            .expect("key");
    let week = Duration::from_secs(7 * 24 * 3600);
    assert!(t.store.remember_event(&key, week).await.expect("first"));
    assert!(!t.store.remember_event(&key, week).await.expect("again"));
}

async fn logs_page_newest_first_and_drop_expired_entries(t: TestStore) {
    let runs = LogStream::new("runs").expect("stream");
    for i in 0..23 {
        t.store
            .append_log(&runs, &json!({"run": i}), Duration::from_secs(3600))
            .await
            .expect("append");
        // Distinct milliseconds keep the expected order unambiguous.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = t
            .store
            .read_log::<serde_json::Value>(&runs, 10, token.as_ref())
            .await
            .expect("page");
        seen.extend(
            page.items
                .iter()
                .map(|e| e.entry["run"].as_i64().expect("run")),
        );
        match page.next {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, (0..23).rev().collect::<Vec<_>>());

    let audit = LogStream::new("audit").expect("stream");
    let id = t
        .store
        .append_log(&audit, &json!({"who": "ops"}), Duration::from_secs(1))
        .await
        .expect("append");
    t.store
        .replace_log(
            &audit,
            &id,
            &json!({"who": "ops", "done": true}),
            Duration::from_secs(1),
        )
        .await
        .expect("replace");
    let entry = t
        .store
        .get_log::<serde_json::Value>(&audit, &id)
        .await
        .expect("get")
        .expect("live");
    assert_eq!(entry.entry["done"], json!(true));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let page = t
        .store
        .read_log::<serde_json::Value>(&audit, 10, None)
        .await
        .expect("page");
    assert!(page.items.is_empty(), "{:?}", page.items);
}

/// Every contract test, once over each way of reaching the engine.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod over_http {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::test_store().await).await
            })*
        }
        mod in_process {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::test_store_in_process().await).await
            })*
        }
    };
}

contract!(
    conditional_writes_conflict_when_the_expectation_is_stale,
    rewriting_identical_content_writes_nothing,
    a_multi_item_write_fails_as_a_whole_and_leaves_nothing_behind,
    records_counter_and_client_progress_commit_together,
    a_once_key_applies_its_change_set_exactly_once,
    listing_pages_through_every_record_in_id_order_and_only_its_own,
    heads_list_the_same_records_without_their_data,
    batch_upserts_write_each_changed_record_once_under_one_held_block_and_skip_unchanged_records,
    tombstones_are_returned_by_reads_and_the_change_feed,
    tombstones_expire_after_the_retention_window,
    changes_since_a_cursor_are_complete_and_in_commit_order,
    keyed_items_expire_in_code_and_can_be_taken_again,
    a_lease_has_one_holder_until_it_expires,
    a_redelivered_webhook_event_is_remembered,
    logs_page_newest_first_and_drop_expired_entries,
);
