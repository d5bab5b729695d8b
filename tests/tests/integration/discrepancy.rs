//! Discrepancy checks against a fake upstream, on the embedded store.

use serde_json::{Value, json};
use syncline::discrepancy::DiscrepancyChecker;
use syncline::model::{EntityType, RecordId, SourceId, TenantId};
use syncline::store::Change;
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
    let reports = checker.reports(10).await.expect("reports");
    assert_eq!(reports.len(), 3);
    assert_eq!(reports[0].id, after.id, "newest first");
}

#[tokio::test]
async fn the_sample_events_run_through_the_function_handler() {
    let demo = syncline::demo::serve("127.0.0.1:0".parse().expect("addr"), 120)
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
    // On demand with repair: a full resync is queued (the demo source has no record_path).
    let on_demand = handle_check(engine, &checker, event("on-demand"))
        .await
        .expect("on demand");
    assert_eq!(on_demand["reports"][0]["repairs_queued"], json!(1));
    rig.drain().await;
    let after = handle_check(engine, &checker, event("schedule"))
        .await
        .expect("schedule");
    assert_eq!(after["reports"][0]["missing_total"], json!(0), "{after}");
    assert_eq!(after["reports"][0]["store_count"], json!(120));
}
