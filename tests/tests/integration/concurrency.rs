//! Races: conditional writes from many tasks, counter allocation inside
//! transactions, and pulls running while writers commit.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde_json::json;
use syncline::Error;
use syncline::model::{Cursor, TenantId, Version};
use syncline::store::{Change, ChangeSet, Expect, RecordWrite};
use syncline_tests::{data, entity, id, test_store};
use tokio::sync::Barrier;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_writers_racing_on_one_version_have_exactly_one_winner_each_round() {
    let t = test_store().await;
    let acme = TenantId::parse("acme").expect("tenant");
    let job = entity("job");
    let created = t
        .store
        .put_record(
            &acme,
            RecordWrite {
                entity: job.clone(),
                id: id("j1"),
                change: Change::Put(data(json!({"total": 0}))),
                expect: Expect::Absent,
                source: None,
                origin: None,
                source_version: None,
            },
        )
        .await
        .expect("seed");
    let mut version = created.record.version;

    for round in 0..100u64 {
        let barrier = Arc::new(Barrier::new(16));
        let mut tasks = Vec::new();
        for writer in 0..16u64 {
            let store = t.store.clone();
            let (acme, job, barrier) = (acme.clone(), job.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                let write = RecordWrite {
                    entity: job,
                    id: id("j1"),
                    // Each winner adds one to what it read.
                    change: Change::Put(data(json!({"total": round + 1, "writer": writer}))),
                    expect: Expect::Version(version),
                    source: None,
                    origin: None,
                    source_version: None,
                };
                barrier.wait().await;
                store.put_record(&acme, write).await
            }));
        }
        let mut winners = Vec::new();
        let mut conflicts = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(committed) => winners.push(committed.record.version),
                Err(Error::Conflict(_)) => conflicts += 1,
                Err(other) => panic!("round {round}: unexpected error {other:?}"),
            }
        }
        assert_eq!(winners, vec![version.next()], "round {round}");
        assert_eq!(conflicts, 15, "round {round}");
        version = version.next();
    }

    let stored = t
        .store
        .get_record(&acme, &job, &id("j1"))
        .await
        .expect("read")
        .expect("present");
    assert_eq!(stored.version, Version::parse(101).expect("version"));
    assert_eq!(stored.data["total"], json!(100), "no update lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_tasks_bumping_the_tenant_counter_never_get_the_same_value() {
    let t = test_store().await;
    let acme = TenantId::parse("acme").expect("tenant");
    let barrier = Arc::new(Barrier::new(8));
    let mut tasks = Vec::new();
    for task in 0..8 {
        let store = t.store.clone();
        let (acme, barrier) = (acme.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut seqs = Vec::new();
            for i in 0..40 {
                let set = ChangeSet {
                    tenant: acme.clone(),
                    writes: vec![RecordWrite {
                        entity: entity("job"),
                        id: id(&format!("t{task}-{i}")),
                        change: Change::Put(data(json!({"i": i}))),
                        expect: Expect::Absent,
                        source: None,
                        origin: None,
                        source_version: None,
                    }],
                    client: None,
                    once_only: Vec::new(),
                    trail: None,
                };
                let committed = store.commit(&set).await.expect("commit");
                seqs.push(committed[0].record.seq.get());
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    let distinct: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), 320, "duplicate sequence values");
    assert_eq!(distinct, (1..=320).collect::<HashSet<u64>>());
    assert_eq!(t.store.latest_seq(&acme).await.expect("seq").get(), 320);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pull_running_while_writers_commit_never_skips_a_change() {
    let t = test_store().await;
    let acme = TenantId::parse("acme").expect("tenant");
    let kinds = vec![entity("booking"), entity("payment")];

    let mut writers = Vec::new();
    for w in 0..4u64 {
        let store = t.store.clone();
        let (acme, kind) = (acme.clone(), kinds[(w % 2) as usize].clone());
        writers.push(tokio::spawn(async move {
            for round in 0..15u64 {
                if w < 2 {
                    // Bulk writers: chunks of records in one transaction
                    // each. New ids every round, so a skipped change would
                    // leave a record the puller never saw.
                    let changes = (0..20)
                        .map(|i| {
                            let record = id(&format!("w{w}-{round}-{i}"));
                            (record, Change::Put(data(json!({"round": round, "i": i}))))
                        })
                        .collect();
                    store
                        .upsert_batch(&acme, &kind, None, changes, &syncline_tests::trail())
                        .await
                        .expect("bulk write");
                } else {
                    let set = ChangeSet {
                        tenant: acme.clone(),
                        writes: (0..3)
                            .map(|i| RecordWrite {
                                entity: kind.clone(),
                                id: id(&format!("w{w}-{round}-{i}")),
                                change: Change::Put(data(json!({"round": round}))),
                                expect: Expect::Any,
                                source: None,
                                origin: None,
                                source_version: None,
                            })
                            .collect(),
                        client: None,
                        once_only: Vec::new(),
                        trail: None,
                    };
                    store.commit(&set).await.expect("commit");
                }
            }
        }));
    }

    let mut view: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut cursor = Cursor::START;
    let pull = |cursor| {
        let (store, acme, kinds) = (t.store.clone(), acme.clone(), kinds.clone());
        async move { store.changes_since(&acme, &kinds, cursor, 25).await }
    };
    let mut pulls_during_writes = 0;
    while writers.iter().any(|w| !w.is_finished()) {
        pulls_during_writes += 1;
        let changes = pull(cursor).await.expect("pull");
        for r in changes.records {
            view.insert((r.entity.to_string(), r.id.to_string()), r.version.get());
        }
        assert!(changes.cursor >= cursor);
        cursor = changes.cursor;
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    assert!(pulls_during_writes >= 5, "the pull must race the writers");
    loop {
        let changes = pull(cursor).await.expect("pull");
        for r in &changes.records {
            view.insert((r.entity.to_string(), r.id.to_string()), r.version.get());
        }
        cursor = changes.cursor;
        if !changes.has_more {
            break;
        }
    }

    let mut stored = BTreeMap::new();
    for kind in &kinds {
        for r in t
            .store
            .list_records(&acme, kind, 1000, None)
            .await
            .expect("list")
            .items
        {
            stored.insert((r.entity.to_string(), r.id.to_string()), r.version.get());
        }
    }
    assert_eq!(stored.len(), 2 * 15 * 20 + 2 * 15 * 3);
    let missing: Vec<_> = stored
        .iter()
        .filter(|(key, version)| view.get(*key) != Some(*version))
        .map(|(key, _)| key)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} records never reached the puller, first: {:?}",
        missing.len(),
        stored.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(view.len(), stored.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bulk_writers_racing_on_the_same_records_never_lose_a_version() {
    // Four bulk writers rewrite the same 30 records five times each. Every
    // write that lands must be numbered from the version it replaced: the
    // change trail then names each version of each record exactly once, and
    // the last version equals the number of writes that landed.
    let t = test_store().await;
    let acme = TenantId::parse("acme").expect("tenant");
    let property = entity("property");
    let start = Arc::new(Barrier::new(4));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (store, acme, property, start) = (
            t.store.clone(),
            acme.clone(),
            property.clone(),
            start.clone(),
        );
        writers.push(tokio::spawn(async move {
            start.wait().await;
            let mut written = 0;
            for round in 0..5u64 {
                let changes = (0..30)
                    .map(|i| {
                        let content = json!({"writer": w, "round": round, "i": i});
                        (id(&format!("p{i}")), Change::Put(data(content)))
                    })
                    .collect();
                let outcome = store
                    .upsert_batch(&acme, &property, None, changes, &syncline_tests::trail())
                    .await
                    .expect("bulk write");
                written += outcome.written();
            }
            written
        }));
    }
    let mut landed = 0;
    for writer in writers {
        landed += writer.await.expect("writer");
    }
    assert_eq!(landed, 4 * 5 * 30, "every write changes the content");

    let mut versions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut after = None;
    loop {
        let page = t
            .store
            .read_trail(&acme, None, 100, 10_000, after.as_ref())
            .await
            .expect("trail");
        for (_, entry) in page.items {
            for change in entry.changes {
                versions
                    .entry(change.id.to_string())
                    .or_default()
                    .push(change.version);
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(versions.len(), 30);
    for (record, mut seen) in versions {
        seen.sort_unstable();
        assert_eq!(seen, (1..=20).collect::<Vec<u64>>(), "{record}");
        let stored = t
            .store
            .get_record(&acme, &property, &id(&record))
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(stored.version, Version::parse(20).expect("version"));
    }
}
