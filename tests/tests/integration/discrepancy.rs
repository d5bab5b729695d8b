//! Discrepancy checks against a fake upstream, on the embedded store.

use serde_json::{Value, json};
use std::net::SocketAddr;
use syncline::discrepancy::DiscrepancyChecker;
use syncline::ingest::{RunRequest, Trigger};
use syncline::model::{EntityType, RecordId, RunKind, SourceId, TenantId, Timestamp};
use syncline::store::Change;

use syncline_tests::service::demo_control;
use syncline_tests::upstream::Upstream;
use syncline_tests::{demo_sources, sync_rig};

fn item(i: usize) -> Value {
    json!({"id": format!("ev-{i:05}"), "title": format!("Event {i}"), "seats": i % 40})
}

#[tokio::test]
async fn the_2419_vs_2355_case_is_found_exactly_and_repaired() {
    let upstream = Upstream::start().await;
    for i in 0..2419 {
        upstream.state.put(&format!("ev-{i:05}"), item(i));
    }
    let document = json!({"sources": {"zoho": {
        "tenant": "demo", "entity": "event", "base_url": upstream.url, "path": "/cursor",
        "records": "/data", "id": "/id", "record_path": "/items/{id}",
        "pagination": {"cursor_body": {"cursor_path": "/next_cursor", "param": "cursor"}},
        "page_size": 200, "page_size_param": "limit", "requests_per_second": 1000
    }}});
    let rig = sync_rig(&document).await;
    let (t, queue, engine) = (&rig.t, &rig.queue, &rig.engine);
    let checker = DiscrepancyChecker::new(t.store.clone(), queue.clone(), engine.clone());
    let zoho = SourceId::parse("zoho").expect("id");

    // The cache: 2,355 of the 2,419 (64 missing), 3 of them stale, 2 extra.
    let missing: Vec<usize> = (0..2419).filter(|i| i % 37 == 5).take(64).collect();
    assert_eq!(missing.len(), 64);
    let stale = [10usize, 500, 2400];
    let mut changes = Vec::new();
    for i in (0..2419).filter(|i| !missing.contains(i)) {
        let mut data = item(i);
        if stale.contains(&i) {
            data["title"] = json!("outdated");
        }
        let Value::Object(data) = data else {
            unreachable!()
        };
        changes.push((
            RecordId::parse(&format!("ev-{i:05}")).expect("id"),
            Change::Put(data),
        ));
    }
    for extra in ["ev-90001", "ev-90002"] {
        let Value::Object(data) = json!({"id": extra, "title": "gone upstream", "seats": 1}) else {
            unreachable!()
        };
        changes.push((RecordId::parse(extra).expect("id"), Change::Put(data)));
    }
    let tenant = TenantId::parse("demo").expect("t");
    let entity = EntityType::parse("event").expect("e");
    for chunk in changes.chunks(500) {
        t.store
            .upsert_batch(
                &tenant,
                &entity,
                Some(&zoho),
                chunk.to_vec(),
                &syncline_tests::trail(),
            )
            .await
            .expect("seed");
    }

    let report = checker.check(&zoho, false).await.expect("check");
    assert_eq!((report.source_count, report.store_count), (2419, 2357));
    assert_eq!(
        (report.missing_total, report.stale_total, report.extra_total),
        (64, 3, 2),
        "{report:?}"
    );
    let expected_missing: Vec<String> = missing.iter().map(|i| format!("ev-{i:05}")).collect();
    assert_eq!(report.missing, expected_missing);
    assert_eq!(report.stale, vec!["ev-00010", "ev-00500", "ev-02400"]);
    assert_eq!(report.extra, vec!["ev-90001", "ev-90002"]);
    assert!(
        report.compared < (2419 + 2357) / 10,
        "only differing buckets are compared: {}",
        report.compared
    );

    // Repair through the retry worker, then check again.
    let repaired = checker.check(&zoho, true).await.expect("check and repair");
    assert_eq!(repaired.repairs_queued, 69);
    rig.drain().await;
    assert!(
        queue
            .dead_letters(10)
            .await
            .expect("dead letters")
            .is_empty()
    );
    let after = checker.check(&zoho, false).await.expect("check");
    assert_eq!(after.differences(), 0, "{after:?}");
    assert_eq!((after.source_count, after.store_count), (2419, 2419));
    let reports = checker.reports(None, 10).await.expect("reports");
    assert_eq!(reports.len(), 3);
    assert_eq!(reports[0].id, after.id, "newest first");
}

#[tokio::test]
async fn the_sample_events_run_through_the_function_handler() {
    let demo = syncline_local::demo::serve("127.0.0.1:0".parse().expect("addr"), 120)
        .await
        .expect("demo");
    let rig = sync_rig(&demo_sources(demo)).await;
    let engine = &rig.engine;
    let checker = DiscrepancyChecker::new(rig.t.store.clone(), rig.queue.clone(), engine.clone());
    let event = |name: &str| {
        let path = format!(
            "{}/../events/discrepancy-check/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let payload: Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("sample")).expect("json");
        lambda_runtime::LambdaEvent::new(payload, lambda_runtime::Context::default())
    };
    use syncline::lambda::discrepancy::handle_check;
    // Nothing synced yet: everything is missing.
    let scheduled = handle_check(engine, &checker, event("schedule"))
        .await
        .expect("schedule");
    assert_eq!(
        scheduled["reports"][0]["missing_total"],
        json!(120),
        "{scheduled}"
    );
    // On demand with repair: a force-sync per missing record (the demo
    // source serves single records), compared by range digests.
    let on_demand = handle_check(engine, &checker, event("on-demand"))
        .await
        .expect("on demand");
    assert_eq!(on_demand["reports"][0]["method"], json!("ranges"));
    assert_eq!(on_demand["reports"][0]["repairs_queued"], json!(120));
    rig.drain().await;
    let after = handle_check(engine, &checker, event("schedule"))
        .await
        .expect("schedule");
    assert_eq!(after["reports"][0]["missing_total"], json!(0), "{after}");
    assert_eq!(after["reports"][0]["store_count"], json!(120));
    assert_eq!(after["reports"][0]["compared"], json!(0), "{after}");
}

/// A demo source serving 2,419 properties with range digests, synced in
/// full through the engine.
async fn digest_rig() -> (syncline_tests::SyncRig, SocketAddr, DiscrepancyChecker) {
    props_rig(json!({
        "digests": {"path": "/properties/_digests", "list_path": "/properties/_marks"}
    }))
    .await
}

/// A demo source serving 2,419 properties, compared as `compare` says,
/// synced in full through the engine.
async fn props_rig(compare: Value) -> (syncline_tests::SyncRig, SocketAddr, DiscrepancyChecker) {
    let demo = syncline_local::demo::serve("127.0.0.1:0".parse().expect("addr"), 2419)
        .await
        .expect("demo source");
    let base = format!("http://{demo}");
    let mut spec = json!({
        "tenant": "demo", "entity": "property", "base_url": base, "path": "/properties",
        "records": "/data", "id": "/id", "updated_at": "/updated_at",
        "record_path": "/properties/{id}",
        "pagination": {"cursor_body": {"cursor_path": "/next_cursor", "param": "cursor"}},
        "page_size": 500, "page_size_param": "limit", "requests_per_second": 1000
    });
    if let (Value::Object(spec), Value::Object(compare)) = (&mut spec, compare) {
        spec.extend(compare);
    }
    let document = json!({"sources": {"props": spec}});
    let rig = sync_rig(&document).await;
    let full = full_sync(&rig).await;
    assert_eq!(full.counts.created, 2419, "{full:?}");
    let checker =
        DiscrepancyChecker::new(rig.t.store.clone(), rig.queue.clone(), rig.engine.clone());
    (rig, demo, checker)
}

/// A full run of source `props`.
async fn full_sync(rig: &syncline_tests::SyncRig) -> syncline::model::RunLog {
    rig.engine
        .run(
            &RunRequest {
                source: SourceId::parse("props").expect("id"),
                kind: Some(RunKind::Full),
                trigger: Trigger::Manual,
            },
            Timestamp::now().plus(std::time::Duration::from_secs(600)),
        )
        .await
        .expect("run")
        .expect("lease")
}

/// Tombstones properties `ids` in the store as source `props` (the store
/// loses them; the source still has them).
async fn forget(rig: &syncline_tests::SyncRig, ids: impl Iterator<Item = usize>) {
    rig.t
        .store
        .upsert_batch(
            &TenantId::parse("demo").expect("t"),
            &EntityType::parse("property").expect("e"),
            Some(&SourceId::parse("props").expect("id")),
            ids.map(|i| (prop(i), Change::Delete)).collect(),
            &syncline_tests::trail(),
        )
        .await
        .expect("deletes");
}

fn prop(i: usize) -> RecordId {
    RecordId::parse(&format!("prop-{i:06}")).expect("id")
}

#[tokio::test]
async fn a_source_with_range_digests_is_compared_without_being_listed() {
    let (rig, demo, checker) = digest_rig().await;
    let props = SourceId::parse("props").expect("id");
    let tenant = TenantId::parse("demo").expect("t");
    let entity = EntityType::parse("property").expect("e");
    let write = |changes: Vec<(RecordId, Change)>| {
        let (store, tenant, entity, props) = (&rig.t.store, &tenant, &entity, &props);
        async move {
            store
                .upsert_batch(
                    tenant,
                    entity,
                    Some(props),
                    changes,
                    &syncline_tests::trail(),
                )
                .await
                .expect("write")
        }
    };

    // The store loses 64 records, 3 go stale (another writer's content)
    // and 2 appear that the source never had.
    let missing: Vec<usize> = (0..2419).filter(|i| i % 37 == 5).take(64).collect();
    write(missing.iter().map(|&i| (prop(i), Change::Delete)).collect()).await;
    let stale = [10usize, 500, 2400];
    let outdated = |i: usize| {
        let mut item = syncline_local::demo::property(i);
        item["price"] = json!(1);
        let Value::Object(data) = item else {
            unreachable!()
        };
        (prop(i), Change::Put(data))
    };
    write(stale.iter().map(|&i| outdated(i)).collect()).await;
    let extra = |id: &str| {
        let Value::Object(data) = json!({"id": id, "name": "gone upstream"}) else {
            unreachable!()
        };
        (RecordId::parse(id).expect("id"), Change::Put(data))
    };
    write(vec![extra("prop-900001"), extra("prop-900002")]).await;

    // First check: the store's ranges are built in one pass; the source is
    // not listed, only its digests and the differing ranges.
    let report = checker.check(&props, false).await.expect("check");
    assert_eq!(report.method, "ranges");
    assert_eq!((report.source_count, report.store_count), (2419, 2357));
    assert_eq!(
        (report.missing_total, report.stale_total, report.extra_total),
        (64, 3, 2),
        "{report:?}"
    );
    let expected: Vec<String> = missing.iter().map(|&i| prop(i).to_string()).collect();
    assert_eq!(report.missing, expected);
    assert_eq!(
        report.stale,
        vec!["prop-000010", "prop-000500", "prop-002400"]
    );
    assert_eq!(report.extra, vec!["prop-900001", "prop-900002"]);
    assert!(report.buckets > 100, "{} ranges", report.buckets);
    assert!(
        report.read_source < 2419 / 2 && report.compared < (2419 + 2357) / 2,
        "only differing ranges are listed: {report:?}"
    );

    // Repair through the retry worker; the next check reads only the
    // ranges the repairs touched on the store side.
    let repaired = checker.check(&props, true).await.expect("check and repair");
    assert_eq!(repaired.repairs_queued, 69);
    rig.drain().await;
    let after = checker.check(&props, false).await.expect("check");
    assert_eq!(after.differences(), 0, "{after:?}");
    assert_eq!((after.source_count, after.store_count), (2419, 2419));
    assert!(after.read_store < 2419 / 2, "{after:?}");

    // Nothing changed on either side: nothing is read one by one.
    let quiet = checker.check(&props, false).await.expect("check");
    assert_eq!(
        (quiet.differences(), quiet.read_source, quiet.read_store),
        (0, 0, 0),
        "{quiet:?}"
    );
    assert_eq!(quiet.compared, 0);

    // One record changes upstream: exactly it is stale, found in one range.
    let changed = demo_control(demo, "properties/change", json!({"count": 1})).await;
    assert_eq!(changed["changed"], json!(["prop-000000"]));
    let one = checker.check(&props, false).await.expect("check");
    assert_eq!(one.stale, vec!["prop-000000"], "{one:?}");
    assert_eq!((one.missing_total, one.extra_total), (0, 0));
    assert_eq!(one.buckets_differing, 1);
    assert!(one.compared <= 64, "{one:?}");
}

#[tokio::test]
async fn range_digests_follow_growth_and_emptied_ranges() {
    let (rig, demo, checker) = digest_rig().await;
    let props = SourceId::parse("props").expect("id");
    let first = checker.check(&props, false).await.expect("check");
    assert_eq!(first.differences(), 0, "{first:?}");
    let ranges_before = first.buckets;

    // 100 records appear upstream, all after the last stored id: the last
    // range grows past twice its size and is split when it is re-listed.
    let added = demo_control(demo, "properties/add", json!({"count": 100})).await;
    assert_eq!(added["added"].as_array().map(Vec::len), Some(100));
    let missing = checker.check(&props, false).await.expect("check");
    assert_eq!(missing.missing_total, 100, "{missing:?}");
    let synced = full_sync(&rig).await;
    assert_eq!(synced.counts.created, 100, "{synced:?}");
    let grown = checker.check(&props, false).await.expect("check");
    assert_eq!(grown.differences(), 0, "{grown:?}");
    assert_eq!(grown.store_count, 2519);
    assert!(
        grown.buckets >= ranges_before + 5,
        "{ranges_before} ranges became {}",
        grown.buckets
    );
    assert!(grown.read_store < 200, "only the grown range: {grown:?}");

    // Every record of a stretch of ids disappears from the store: emptied
    // ranges merge into the one before, and the comparison still names
    // each missing id.
    forget(&rig, 1000..1040).await;
    let emptied = checker.check(&props, false).await.expect("check");
    assert_eq!(emptied.missing_total, 40, "{emptied:?}");
    assert_eq!(
        emptied.missing,
        (1000..1040)
            .map(|i| prop(i).to_string())
            .collect::<Vec<_>>()
    );
    assert_eq!((emptied.extra_total, emptied.stale_total), (0, 0));
    assert!(emptied.buckets < grown.buckets, "{emptied:?}");
}

#[tokio::test]
async fn the_store_side_ranges_are_kept_from_the_change_feed_and_rebuilt_when_torn() {
    use syncline::discrepancy::ranges::StoreRanges;
    use syncline::store::{KvExpect, KvKey};
    let t = syncline_tests::test_store().await;
    let (tenant, entity) = (
        TenantId::parse("demo").expect("t"),
        EntityType::parse("property").expect("e"),
    );
    let source = SourceId::parse("props").expect("id");
    // Writes as a pull does: each record with the source's updated-at.
    let write = |range: std::ops::Range<usize>, version: u64| {
        let changes = range
            .map(|i| {
                let Value::Object(data) = json!({"i": i, "version": version}) else {
                    unreachable!()
                };
                syncline::store::BulkWrite {
                    id: prop(i),
                    change: Change::Put(data),
                    source_version: Some(format!("2026-11-0{version}")),
                }
            })
            .collect();
        let (store, tenant, entity, source) = (&t.store, &tenant, &entity, &source);
        async move {
            store
                .upsert_versioned(
                    tenant,
                    entity,
                    Some(source),
                    changes,
                    &syncline_tests::trail(),
                    syncline::store::Stored::Unknown,
                )
                .await
                .expect("write")
        }
    };
    write(0..5000, 1).await;

    // Built in one pass: 5,000 records in ranges of 16, two stored chunks.
    let (built, refresh) = StoreRanges::refresh(&t.store, &tenant, &entity, &source)
        .await
        .expect("build");
    assert!(refresh.built);
    assert_eq!(refresh.records_read, 5000);
    assert_eq!((built.count(), built.bounds.len()), (5000, 313));
    let head = KvKey::new(KvKey::DIGESTS, "props");
    let first_head = t
        .store
        .kv_get::<Value>(&head)
        .await
        .expect("head")
        .expect("saved");

    // Nothing changed: nothing is read.
    let (same, refresh) = StoreRanges::refresh(&t.store, &tenant, &entity, &source)
        .await
        .expect("refresh");
    assert!(same == built, "unchanged ranges");
    assert_eq!((refresh.built, refresh.records_read), (false, 0));

    // Two records change: only their ranges are listed again, and the
    // digests equal those of a build from scratch.
    write(3..4, 2).await;
    write(4001..4002, 2).await;
    let (kept, refresh) = StoreRanges::refresh(&t.store, &tenant, &entity, &source)
        .await
        .expect("refresh");
    assert_eq!(
        (refresh.built, refresh.changed, refresh.ranges_listed),
        (false, 2, 2)
    );
    assert!(refresh.records_read <= 32, "{refresh:?}");
    let moved = kept
        .digests
        .iter()
        .zip(&built.digests)
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(moved, 2, "the two ranges holding the changes");
    t.store.kv_delete(&head, None).await.expect("drop");
    let (fresh, refresh) = StoreRanges::refresh(&t.store, &tenant, &entity, &source)
        .await
        .expect("rebuild");
    assert!(refresh.built);
    assert!(
        fresh.digests == kept.digests && fresh.bounds == kept.bounds,
        "kept up to date = built from scratch"
    );

    // Chunks that no longer match their head (a concurrent save tore them
    // apart) are not trusted: the ranges are built again.
    t.store
        .kv_put(&head, &first_head.value, None, KvExpect::Any)
        .await
        .expect("an older head over newer chunks");
    let (_, refresh) = StoreRanges::refresh(&t.store, &tenant, &entity, &source)
        .await
        .expect("refresh");
    assert!(refresh.built, "{refresh:?}");
}

#[tokio::test]
async fn a_source_listing_ids_and_updated_at_is_compared_without_whole_records() {
    let (rig, demo, checker) =
        props_rig(json!({"id_listing": {"query": {"fields": "id,updated_at"}}})).await;
    let props = SourceId::parse("props").expect("id");
    let first = checker.check(&props, false).await.expect("check");
    assert_eq!(first.method, "id_listing");
    assert_eq!(first.differences(), 0, "{first:?}");
    assert_eq!((first.source_count, first.store_count), (2419, 2419));

    // The store loses 5 records; 2 change and 1 appears upstream.
    let missing: Vec<usize> = vec![5, 600, 1200, 1800, 2400];
    forget(&rig, missing.iter().copied()).await;
    demo_control(demo, "properties/change", json!({"count": 2})).await;
    demo_control(demo, "properties/add", json!({"count": 1})).await;
    let report = checker.check(&props, true).await.expect("check");
    let mut expected: Vec<String> = missing.iter().map(|&i| prop(i).to_string()).collect();
    expected.push("prop-002419".into());
    expected.sort();
    assert_eq!(report.missing, expected, "{report:?}");
    assert_eq!(report.stale, vec!["prop-000000", "prop-000001"]);
    assert_eq!(report.extra_total, 0);
    // Every id and updated-at was listed at the source; the store side read
    // only the ranges that changed or differ, never all 2,419 records.
    assert_eq!(report.read_source, 2420);
    assert!(report.read_store < 2419 / 10, "{report:?}");
    assert_eq!(report.repairs_queued, 8);
    rig.drain().await;
    let after = checker.check(&props, false).await.expect("check");
    assert_eq!(after.differences(), 0, "{after:?}");
    assert_eq!((after.source_count, after.store_count), (2420, 2420));
}
