//! Scheduled sync against fake upstreams on 127.0.0.1, on the embedded
//! store: every pagination style and preset, faults, resumption, sweeps.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use syncline::ingest::{
    RunRequest, SourceSet, SyncEngine, Trigger, local_secret, register_sync_work,
};
use syncline::lambda::sqs::poll_once;
use syncline::model::{EntityType, RunKind, RunLog, RunStatus, SourceId, TenantId, Timestamp};
use syncline::queue::{LocalQueue, RetryQueue};
use syncline::retry::{RetryPolicy, RetryWorker};
use syncline::store::Store;
use syncline_tests::upstream::{Fault, Upstream};
use syncline_tests::{RequestLog, TestStore, test_store};

struct Rig {
    engine: Arc<SyncEngine>,
    store: Store,
    queue: Arc<dyn RetryQueue>,
    t: TestStore,
    upstream: Upstream,
}

async fn rig(sources: impl FnOnce(&str) -> Value) -> Rig {
    let upstream = Upstream::start().await;
    let t = test_store().await;
    let document = json!({"sources": sources(&upstream.url)}).to_string();
    let set = SourceSet::parse(
        &document,
        syncline::connectors::http_client().expect("client"),
        local_secret(|name| (name == "DEMO_TOKEN").then(|| "demo-token".to_owned())),
    )
    .expect("sources");
    let queue: Arc<dyn RetryQueue> =
        Arc::new(LocalQueue::new(t.store.clone(), "retry", 10).expect("queue"));
    Rig {
        engine: Arc::new(SyncEngine::new(t.store.clone(), queue.clone(), set)),
        store: t.store.clone(),
        queue,
        t,
        upstream,
    }
}

fn source(style: &str, base_url: &str, pagination: Value) -> Value {
    json!({
        "tenant": "demo", "entity": "property", "base_url": base_url, "path": format!("/{style}"),
        "records": if style == "link" { "" } else { "/data" },
        "id": "/id", "updated_at": "/updated_at",
        "pagination": pagination, "page_size": 10,
        "page_size_param": if style == "page" { "per_page" } else { "limit" },
        "incremental": {"param": "updated_since", "lookback_secs": 0},
        "requests_per_second": 200,
        "auth": {"bearer": {"token": {"env": "DEMO_TOKEN"}}},
        "timeout_secs": 1
    })
}

fn item(i: usize, version: &str) -> Value {
    json!({"id": format!("p{i:03}"), "name": format!("Property {i} {version}"), "price": 1000 + i,
           "updated_at": format!("2026-11-01T00:{:02}:{:02}Z", i / 60, i % 60)})
}

fn seed(rig: &Rig, n: usize) {
    for i in 0..n {
        rig.upstream.state.put(&format!("p{i:03}"), item(i, "v1"));
    }
}

fn far() -> Timestamp {
    Timestamp::now().plus(Duration::from_secs(600))
}

async fn run(rig: &Rig, source: &str, kind: Option<RunKind>) -> RunLog {
    rig.engine
        .run(
            &RunRequest {
                source: SourceId::parse(source).expect("id"),
                kind,
                trigger: Trigger::Manual,
            },
            far(),
        )
        .await
        .expect("run")
        .expect("lease free")
}

/// Live records of `entity`, id -> content.
async fn live(rig: &Rig, entity: &str) -> BTreeMap<String, Value> {
    let page = rig
        .store
        .list_records(
            &TenantId::parse("demo").expect("t"),
            &EntityType::parse(entity).expect("e"),
            1000,
            None,
        )
        .await
        .expect("list");
    page.items
        .into_iter()
        .filter(|r| !r.deleted)
        .map(|r| (r.id.to_string(), Value::Object(r.data)))
        .collect()
}

/// The upstream's items, id -> content, by `id` field.
fn upstream_items(rig: &Rig, id_field: &str, skip_cancelled: bool) -> BTreeMap<String, Value> {
    rig.upstream
        .state
        .items
        .lock()
        .expect("lock")
        .values()
        .filter(|v| !(skip_cancelled && v["status"] == json!("cancelled")))
        .map(|v| {
            (
                v[id_field]
                    .as_str()
                    .map_or_else(|| v[id_field].to_string(), str::to_owned),
                v.clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_pagination_style_syncs_every_record() {
    let styles = [
        (
            "cursor",
            json!({"cursor_body": {"cursor_path": "/next_cursor", "param": "cursor"}}),
        ),
        ("next", json!({"next_link": {"path": "/links/next"}})),
        ("link", json!("link_header")),
        ("page", json!({"page_number": {"param": "page"}})),
        ("offset", json!({"offset": {"param": "offset"}})),
    ];
    for (style, pagination) in styles {
        let rig = rig(|url| json!({"props": source(style, url, pagination.clone())})).await;
        seed(&rig, 47);
        let log = run(&rig, "props", None).await;
        assert_eq!(log.status, RunStatus::Succeeded, "{style}: {log:?}");
        assert_eq!(log.kind, RunKind::Full, "the first run is full");
        assert_eq!((log.counts.seen, log.counts.created), (47, 47), "{style}");
        assert_eq!(
            live(&rig, "property").await,
            upstream_items(&rig, "id", false),
            "{style}"
        );
        let requests = rig.upstream.state.requests();
        assert!(requests.len() >= 5, "{style}: paged ({requests:?})");
    }
}

#[tokio::test]
async fn every_preset_syncs_its_real_page_shapes() {
    let rig = rig(|url| json!({
        "calendly": {"preset": "calendly", "tenant": "demo", "entity": "event", "base_url": url, "page_size": 7, "requests_per_second": 200},
        "stripe": {"preset": "stripe", "tenant": "demo", "entity": "payment", "base_url": url, "page_size": 7, "requests_per_second": 200},
        "zoho": {"preset": "zoho_creator", "tenant": "demo", "entity": "booking", "base_url": url,
                 "path": "/api/v2.1/owner/app/report/All_Bookings", "page_size": 7, "requests_per_second": 200,
                 "auth": {"header": {"header": "Authorization", "prefix": "Zoho-oauthtoken ", "value": {"value": "t"}}}},
        "notion": {"preset": "notion", "tenant": "demo", "entity": "page", "base_url": url, "path": "/v1/databases/db1/query",
                   "page_size": 7, "requests_per_second": 200},
        "google": {"preset": "google_calendar", "tenant": "demo", "entity": "calendar_event", "base_url": url,
                   "path": "/calendar/v3/calendars/primary/events", "page_size": 7, "requests_per_second": 200}
    })).await;
    // One upstream serves every shape; each preset reads its own fields.
    for i in 0..23 {
        rig.upstream.state.put(&format!("x{i:02}"), json!({
            "uri": format!("https://api.calendly.com/scheduled_events/EV{i:02}"),
            "id": format!("x{i:02}"), "ID": format!("{}", 4000 + i),
            "updated_at": "2026-11-01T00:00:00Z", "created": 1_790_000_000 + i,
            "Modified_Time": "2026-11-01 10:00:00", "last_edited_time": "2026-11-01T00:00:00Z",
            "updated": "2026-11-01T00:00:00Z", "status": "confirmed", "name": format!("item {i}")
        }));
    }
    for (source, entity) in [
        ("calendly", "event"),
        ("stripe", "payment"),
        ("zoho", "booking"),
        ("notion", "page"),
        ("google", "calendar_event"),
    ] {
        let log = run(&rig, source, None).await;
        assert_eq!(log.status, RunStatus::Succeeded, "{source}: {log:?}");
        assert_eq!(log.counts.created, 23, "{source}: {log:?}");
        assert_eq!(live(&rig, entity).await.len(), 23, "{source}");
    }
    let requests = rig.upstream.state.requests();
    assert!(
        requests.iter().any(|r| r.contains("starting_after=x")),
        "stripe pages by the last id"
    );
    assert!(
        requests.iter().any(|r| r.contains("page_token=7")),
        "calendly follows next_page"
    );
    assert!(
        requests.iter().any(|r| r.contains("pageToken=7")),
        "google pages by token"
    );
    // The next Stripe run is incremental, from `created` less the lookback.
    let log = run(&rig, "stripe", None).await;
    assert_eq!(log.kind, RunKind::Incremental);
    assert!(
        rig.upstream
            .state
            .requests()
            .iter()
            .any(|r| r.contains("created[gte]=") || r.contains("created%5Bgte%5D="))
    );
}

#[tokio::test]
async fn a_second_run_without_upstream_changes_writes_nothing_and_an_update_writes_only_it() {
    let rig = rig(|url| json!({"props": source("cursor", url, json!({"cursor_body": {"cursor_path": "/next_cursor", "param": "cursor"}}))})).await;
    seed(&rig, 70);
    run(&rig, "props", None).await;
    rig.t.requests.take();

    let again = run(&rig, "props", Some(RunKind::Full)).await;
    assert_eq!(
        (
            again.counts.unchanged,
            again.counts.created,
            again.counts.updated,
            again.counts.deleted
        ),
        (70, 0, 0, 0)
    );
    let sent = rig.t.requests.take();
    assert_eq!(
        RequestLog::record_writes(&sent),
        Vec::<usize>::new(),
        "zero records written"
    );
    assert_eq!(RequestLog::count(&sent, "BatchWriteItem"), 0);

    // 15 of 70 change upstream, with newer updated_at.
    for i in (0..70).step_by(4).take(15) {
        let mut changed = item(i, "v2");
        changed["updated_at"] = json!("2026-11-02T00:00:00Z");
        rig.upstream.state.put(&format!("p{i:03}"), changed);
    }
    let incremental = run(&rig, "props", None).await;
    assert_eq!(incremental.kind, RunKind::Incremental);
    assert_eq!(incremental.counts.updated, 15, "{incremental:?}");
    assert_eq!(incremental.counts.created + incremental.counts.deleted, 0);
    let sent = rig.t.requests.take();
    let written: usize = RequestLog::record_writes(&sent).iter().sum();
    assert_eq!(written as u64, incremental.counts.updated);
    assert!(
        rig.upstream
            .state
            .requests()
            .iter()
            .any(|r| r.contains("updated_since=2026-11-01T00")),
        "incremental bound sent"
    );
    assert_eq!(
        live(&rig, "property").await,
        upstream_items(&rig, "id", false)
    );
}

#[tokio::test]
async fn a_full_run_tombstones_only_its_own_records_gone_upstream() {
    let rig =
        rig(|url| json!({"props": source("offset", url, json!({"offset": {"param": "offset"}}))}))
            .await;
    seed(&rig, 30);
    run(&rig, "props", None).await;
    // A record another writer owns must survive the sweep.
    rig.store
        .put_record(
            &TenantId::parse("demo").expect("t"),
            syncline::store::RecordWrite {
                entity: EntityType::parse("property").expect("e"),
                id: syncline::model::RecordId::parse("manual-1").expect("id"),
                change: syncline::store::Change::Put(syncline_tests::data(json!({"name": "kept"}))),
                expect: syncline::store::Expect::Absent,
                source: None,
                origin: None,
                source_version: None,
            },
        )
        .await
        .expect("write");
    for id in ["p003", "p017", "p029"] {
        rig.upstream.state.remove(id);
    }
    let log = run(&rig, "props", Some(RunKind::Full)).await;
    assert_eq!(log.counts.deleted, 3, "{log:?}");
    let mut expected = upstream_items(&rig, "id", false);
    expected.insert("manual-1".into(), json!({"name": "kept"}));
    assert_eq!(live(&rig, "property").await, expected);
    let gone = syncline_tests::stored(&rig.store, "demo", "property", "p017")
        .await
        .expect("tombstone");
    assert!(gone.deleted);
}

#[tokio::test]
async fn a_first_full_run_keeps_what_its_source_wrote_meanwhile_and_the_next_sweeps_it() {
    // Ten pages at 20 requests a second: the run takes about half a second.
    let rig = rig(|url| {
        let mut props = source("offset", url, json!({"offset": {"param": "offset"}}));
        props["requests_per_second"] = json!(20);
        json!({"props": props})
    })
    .await;
    seed(&rig, 100);
    let tenant = TenantId::parse("demo").expect("t");
    let entity = EntityType::parse("property").expect("e");
    let done = std::sync::atomic::AtomicBool::new(false);
    let running = async {
        let log = run(&rig, "props", None).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        log
    };
    // A webhook of the same source, landing once the run has written its
    // first page: a record the source's listing does not hold.
    let meanwhile = async {
        while rig
            .store
            .list_record_heads(&tenant, &entity, 1, None)
            .await
            .expect("heads")
            .items
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        rig.store
            .put_record(
                &tenant,
                syncline::store::RecordWrite {
                    entity: entity.clone(),
                    id: syncline::model::RecordId::parse("hooked-1").expect("id"),
                    change: syncline::store::Change::Put(syncline_tests::data(
                        json!({"name": "from a webhook"}),
                    )),
                    expect: syncline::store::Expect::Absent,
                    source: Some(SourceId::parse("props").expect("id")),
                    origin: None,
                    source_version: None,
                },
            )
            .await
            .expect("write");
        done.load(std::sync::atomic::Ordering::SeqCst)
    };
    let (log, finished_first) = tokio::join!(running, meanwhile);
    assert!(
        !finished_first,
        "the write landed after the run: nothing tested"
    );
    assert_eq!(
        (log.counts.created, log.counts.deleted),
        (100, 0),
        "{log:?}"
    );
    // The store was empty as the run began: every record in it was written
    // during the run, by the run or by someone newer than its listing.
    let mut expected = upstream_items(&rig, "id", false);
    expected.insert("hooked-1".into(), json!({"name": "from a webhook"}));
    assert_eq!(live(&rig, "property").await, expected);
    // The next full run found records in place and sweeps what the
    // source no longer lists.
    let log = run(&rig, "props", Some(RunKind::Full)).await;
    assert_eq!(log.counts.deleted, 1, "{log:?}");
    assert_eq!(
        live(&rig, "property").await,
        upstream_items(&rig, "id", false)
    );
}

/// Two pages naming one record (it moved while the source was paged):
/// the next page's write waits for the page being written, so the later
/// version is the one kept, though pages are otherwise written at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_on_two_pages_keeps_the_later_page_s_version() {
    // Page 0: 300 records, the shared one last (three chunks to write);
    // page 1: the shared one first, then 10 more (one quick chunk).
    let mut first: Vec<Value> = (0..300).map(|i| item(i, "v1")).collect();
    first.push(json!({"id": "moved", "name": "first page"}));
    let mut second = vec![json!({"id": "moved", "name": "second page"})];
    second.extend((300..310).map(|i| item(i, "v1")));
    let pages: Arc<Vec<Value>> = Arc::new(vec![
        json!({"data": first, "next": "1"}),
        json!({"data": second, "next": null}),
    ]);
    let app = axum::Router::new().route(
        "/pages",
        axum::routing::get(
            async move |axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>| {
                let n: usize = q.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
                axum::Json(pages[n].clone())
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    for round in 0..5 {
        let rig = rig(|_| {
            json!({"moving": {
                "tenant": "demo", "entity": "property", "base_url": url, "path": "/pages",
                "records": "/data", "id": "/id",
                "pagination": {"cursor_body": {"cursor_path": "/next", "param": "cursor"}},
                "requests_per_second": 1000
            }})
        })
        .await;
        let log = run(&rig, "moving", Some(RunKind::Full)).await;
        assert_eq!(log.counts.created, 311, "round {round}: {log:?}");
        let stored = live(&rig, "property").await;
        assert_eq!(
            stored["moved"],
            json!({"id": "moved", "name": "second page"}),
            "round {round}"
        );
    }
}

#[tokio::test]
async fn rate_limits_server_errors_timeouts_and_malformed_pages_are_retried_to_an_exact_copy() {
    let rig = rig(
        |url| json!({"props": source("next", url, json!({"next_link": {"path": "/links/next"}}))}),
    )
    .await;
    seed(&rig, 35);
    let state = &rig.upstream.state;
    state.fault(Fault::TooManyRequests {
        retry_after_secs: 1,
    });
    state.fault(Fault::ServerError);
    state.fault(Fault::ServerError);
    state.fault(Fault::Slow(Duration::from_secs(2)));
    state.fault(Fault::Malformed);
    let started = Instant::now();
    let log = run(&rig, "props", None).await;
    assert_eq!(log.status, RunStatus::Succeeded, "{log:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    assert_eq!(log.counts.created, 35);
    assert_eq!(
        live(&rig, "property").await,
        upstream_items(&rig, "id", false)
    );
    assert!(
        state.faults.lock().expect("lock").is_empty(),
        "every fault was hit"
    );
}

#[tokio::test]
async fn a_source_failing_for_good_fails_the_run_and_keeps_the_cursor() {
    let rig = rig(|url| json!({"props": source("cursor", url, json!({"cursor_body": {"cursor_path": "/next_cursor", "param": "cursor"}}))})).await;
    seed(&rig, 12);
    for _ in 0..6 {
        rig.upstream.state.fault(Fault::ServerError);
    }
    let log = run(&rig, "props", None).await;
    assert_eq!(log.status, RunStatus::Failed);
    assert!(
        log.error.as_deref().is_some_and(|e| e.contains("500")),
        "{log:?}"
    );
    let state = rig
        .engine
        .state(&SourceId::parse("props").expect("id"))
        .await
        .expect("state");
    assert!(state.last_success.is_none() && state.since.is_none());
    // The next run starts over and gets everything.
    let log = run(&rig, "props", None).await;
    assert_eq!(
        (log.status, log.kind, log.counts.created),
        (RunStatus::Succeeded, RunKind::Full, 12)
    );
}

#[tokio::test]
async fn an_expired_sync_token_triggers_a_full_resync() {
    let rig = rig(|url| json!({"cal": {"preset": "google_calendar", "tenant": "demo", "entity": "calendar_event",
        "base_url": url, "path": "/calendar/v3/calendars/primary/events", "page_size": 5, "requests_per_second": 200}})).await;
    let event = |i: usize, status: &str| json!({"id": format!("e{i}"), "status": status, "summary": format!("event {i}"), "updated": "2026-11-01T00:00:00Z"});
    for i in 0..12 {
        rig.upstream
            .state
            .put(&format!("e{i}"), event(i, "confirmed"));
    }
    let first = run(&rig, "cal", None).await;
    assert_eq!(first.counts.created, 12);
    // Incremental by sync token: a cancellation becomes a tombstone.
    rig.upstream.state.put("e3", event(3, "cancelled"));
    let incremental = run(&rig, "cal", None).await;
    assert_eq!(
        (
            incremental.kind,
            incremental.counts.seen,
            incremental.counts.deleted
        ),
        (RunKind::Incremental, 1, 1)
    );
    // The token expires upstream (HTTP 410): the run resyncs in full.
    *rig.upstream.state.tokens_expired.lock().expect("lock") = true;
    rig.upstream.state.put("e5", event(5, "cancelled"));
    let resync = run(&rig, "cal", None).await;
    assert_eq!(
        (resync.status, resync.kind),
        (RunStatus::Succeeded, RunKind::Full),
        "{resync:?}"
    );
    assert_eq!(
        live(&rig, "calendar_event")
            .await
            .keys()
            .collect::<Vec<_>>(),
        upstream_items(&rig, "id", true).keys().collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_run_cut_off_midway_continues_through_the_queue_without_duplicates() {
    let rig = rig(|url| json!({"props": source("cursor", url, json!({"cursor_body": {"cursor_path": "/next_cursor", "param": "cursor"}}))})).await;
    seed(&rig, 47);
    rig.t.requests.take();
    // A deadline inside the safety margin: one page, then hand on.
    let log = rig
        .engine
        .run(
            &RunRequest {
                source: SourceId::parse("props").expect("id"),
                kind: None,
                trigger: Trigger::Schedule,
            },
            Timestamp::now().plus(Duration::from_secs(20)),
        )
        .await
        .expect("run")
        .expect("lease");
    assert_eq!(log.status, RunStatus::Continued, "{log:?}");
    assert_eq!(log.counts.seen, 10);
    // Another scheduled run cannot start while the continuation is pending.
    assert!(
        rig.engine
            .run(
                &RunRequest {
                    source: SourceId::parse("props").expect("id"),
                    kind: None,
                    trigger: Trigger::Schedule
                },
                far()
            )
            .await
            .expect("run")
            .is_none()
    );

    let mut worker = RetryWorker::new(rig.store.clone(), rig.queue.clone(), RetryPolicy::default());
    register_sync_work(&mut worker, rig.engine.clone());
    let handled = poll_once(
        &*rig.queue,
        &worker,
        Duration::from_secs(60),
        Duration::from_secs(600),
        Duration::from_secs(1),
    )
    .await
    .expect("poll");
    assert_eq!(handled, 1);
    assert!(
        rig.queue
            .receive(10, Duration::from_secs(1), Duration::ZERO)
            .await
            .expect("receive")
            .is_empty()
    );
    assert_eq!(
        live(&rig, "property").await,
        upstream_items(&rig, "id", false)
    );
    let sent = rig.t.requests.take();
    let written: usize = RequestLog::record_writes(&sent).iter().sum();
    assert_eq!(written, 47, "each record written exactly once, none swept");
    let logs = rig
        .store
        .read_log::<RunLog>(&syncline::store::LogStream::runs(), 10, None)
        .await
        .expect("logs");
    let finished = logs
        .items
        .iter()
        .find(|l| l.entry.id == log.id)
        .expect("the run's log");
    assert_eq!(finished.entry.status, RunStatus::Succeeded);
    assert_eq!(finished.entry.counts.created, 47);
    let state = rig
        .engine
        .state(&SourceId::parse("props").expect("id"))
        .await
        .expect("state");
    assert_eq!(
        state.since,
        Some(json!("2026-11-01T00:00:46Z")),
        "cursor checkpointed at the end"
    );
}

#[tokio::test]
async fn a_crew_cannot_be_booked_twice_at_the_same_time() {
    let rig = rig(|url| json!({"jobs": {
        "tenant": "demo", "entity": "job", "base_url": url, "path": "/cursor", "records": "/data", "id": "/id",
        "pagination": {"cursor_body": {"cursor_path": "/next_cursor", "param": "cursor"}}, "page_size": 10,
        "page_size_param": "limit", "requests_per_second": 200,
        "mapping": {"fields": {"crew": "/crew", "start": "/start", "end": "/end"}, "timezones": {"start": "+01:00", "end": "+01:00"}},
        "no_overlap": {"resource": "crew", "start": "start", "end": "end"}
    }})).await;
    let job = |id: &str, crew: &str, start: &str, end: &str| json!({"id": id, "crew": crew, "start": start, "end": end, "updated_at": "2026-11-01T00:00:00Z"});
    rig.upstream.state.put(
        "j1",
        job("j1", "crew-a", "2026-11-23 09:00:00", "2026-11-23 11:00:00"),
    );
    rig.upstream.state.put(
        "j2",
        job("j2", "crew-a", "2026-11-23 10:00:00", "2026-11-23 12:00:00"),
    );
    rig.upstream.state.put(
        "j3",
        job("j3", "crew-b", "2026-11-23 10:00:00", "2026-11-23 12:00:00"),
    );
    let log = run(&rig, "jobs", None).await;
    assert_eq!((log.counts.created, log.counts.failed), (2, 1), "{log:?}");
    let jobs = live(&rig, "job").await;
    assert!(!jobs.contains_key("j2"), "the double booking was refused");
    assert_eq!(
        jobs["j1"]["start"],
        json!("2026-11-23T08:00:00Z"),
        "normalized to UTC"
    );
}

#[tokio::test]
async fn only_due_and_enabled_sources_are_selected() {
    let rig = rig(|url| json!({
        "a": source("offset", url, json!({"offset": {"param": "offset"}})),
        "b": {"tenant": "demo", "entity": "x", "base_url": url, "path": "/offset", "records": "/data", "id": "/id", "enabled": false}
    })).await;
    seed(&rig, 3);
    let ids = |v: Vec<SourceId>| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    assert_eq!(
        ids(rig.engine.due(Timestamp::now()).await.expect("due")),
        vec!["a"]
    );
    run(&rig, "a", None).await;
    assert!(
        rig.engine
            .due(Timestamp::now())
            .await
            .expect("due")
            .is_empty(),
        "ran within its interval"
    );
    let later = Timestamp::now().plus(Duration::from_secs(13 * 3600));
    assert_eq!(ids(rig.engine.due(later).await.expect("due")), vec!["a"]);
}

#[tokio::test]
async fn a_schedule_tick_with_nothing_due_reads_a_few_items_and_writes_nothing() {
    // The deployed schedule fires every minute (the shortest interval a
    // source takes); a tick that finds nothing due must cost next to nothing.
    let rig = rig(|url| {
        json!({
            "a": source("offset", url, json!({"offset": {"param": "offset"}})),
            "b": source("offset", url, json!({"offset": {"param": "offset"}}))
        })
    })
    .await;
    seed(&rig, 3);
    run(&rig, "a", None).await;
    run(&rig, "b", None).await;
    rig.t.requests.take();
    let due = rig.engine.due(Timestamp::now()).await.expect("due");
    assert!(due.is_empty(), "{due:?}");
    let sent = rig.t.requests.take();
    assert!(
        sent.iter()
            .all(|r| ["GetItem", "BatchGetItem", "Query"].contains(&r.operation.as_str())),
        "reads only: {sent:?}"
    );
    assert!(
        sent.len() <= 4,
        "{} requests for two sources: {sent:?}",
        sent.len()
    );
}

#[tokio::test]
async fn the_sample_events_run_through_the_function_handler() {
    let demo = syncline_local::demo::serve("127.0.0.1:0".parse().expect("addr"), 250)
        .await
        .expect("demo source");
    let syncline_tests::SyncRig {
        t,
        queue,
        engine,
        worker,
    } = syncline_tests::sync_rig(&syncline_tests::demo_sources(demo)).await;
    let delivery = std::sync::Arc::new(syncline::delivery::DeliveryEngine::none(
        t.store.clone(),
        queue.clone(),
    ));
    let sync = syncline::wiring::ScheduledSync {
        engine,
        worker,
        sampler: syncline::admin::Sampler::new(t.store.clone(), queue.clone(), delivery),
    };
    let event = |name: &str| {
        let path = format!(
            "{}/../events/scheduled-sync/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let payload: Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("sample")).expect("json");
        let mut context = lambda_runtime::Context::default();
        context.deadline = far().as_millis() as u64;
        lambda_runtime::LambdaEvent::new(payload, context)
    };
    use syncline::lambda::schedule::handle_schedule;

    let scheduled = handle_schedule(&sync, event("schedule"))
        .await
        .expect("schedule");
    assert_eq!(
        scheduled["runs"][0]["status"],
        json!("succeeded"),
        "{scheduled}"
    );
    assert_eq!(
        scheduled["runs"][0]["counts"]["created"],
        json!(250),
        "{scheduled}"
    );
    assert_eq!(scheduled["runs"][0]["kind"], json!("full"));
    // The tick took the console's sample of the minute.
    let samples = t
        .store
        .read_log::<syncline::admin::Sample>(&syncline::store::LogStream::samples(), 10, None)
        .await
        .expect("samples");
    assert_eq!(samples.items.len(), 1);
    assert_eq!(samples.items[0].entry.dead_letters, 0);

    let continued = handle_schedule(&sync, event("continuation"))
        .await
        .expect("continuation");
    assert_eq!(continued["batchItemFailures"], json!([]), "{continued}");

    let manual = handle_schedule(&sync, event("on-demand"))
        .await
        .expect("on demand");
    assert_eq!(manual["runs"][0]["trigger"], json!("manual"));
    assert_eq!(
        manual["runs"][0]["counts"]["unchanged"],
        json!(250),
        "{manual}"
    );
    let stored = t
        .store
        .list_records(
            &TenantId::parse("demo").expect("t"),
            &EntityType::parse("property").expect("e"),
            1000,
            None,
        )
        .await
        .expect("list");
    assert_eq!(stored.items.len(), 250);
    assert!(
        stored
            .items
            .iter()
            .all(|r| r.data["price"].is_number() && r.data.len() == 8)
    );
}

#[tokio::test]
async fn every_auth_scheme_sends_its_credentials() {
    let with_auth = |url: &str, auth: Value| {
        let mut spec = source("offset", url, json!({"offset": {"param": "offset"}}));
        spec["auth"] = auth;
        spec
    };
    let rig = rig(|url| json!({
        "bearer": with_auth(url, json!({"bearer": {"token": {"env": "DEMO_TOKEN"}}})),
        "key": with_auth(url, json!({"api_key": {"header": "X-Api-Key", "value": {"value": "k-1"}}})),
        "basic": with_auth(url, json!({"basic": {"username": "u", "password": {"value": "p"}}})),
        "oauth": with_auth(url, json!({"oauth2": {"token_url": format!("{url}/oauth/token"), "client_id": "c",
                                                  "client_secret": {"value": "s3cret"}, "scope": "read"}}))
    })).await;
    seed(&rig, 3);
    for source in ["bearer", "key", "basic", "oauth"] {
        let log = run(&rig, source, None).await;
        assert_eq!(log.status, RunStatus::Succeeded, "{source}: {log:?}");
    }
    let seen = rig.upstream.state.credentials.lock().expect("lock").clone();
    for expected in [
        "authorization: Bearer demo-token",
        "x-api-key: k-1",
        "authorization: Basic dTpw",
        "authorization: Bearer tok-123",
    ] {
        assert!(
            seen.iter().any(|c| c == expected),
            "{expected} not in {seen:?}"
        );
    }
}

#[tokio::test]
async fn zoho_dates_in_a_named_zone_are_stored_in_utc_and_bound_the_next_run() {
    let rig = rig(|url| {
        let mut spec = source("offset", url, json!({"offset": {"param": "offset"}}));
        spec["time_zone"] = json!("Europe/Berlin");
        spec["incremental"] =
            json!({"param": "updated_since", "format": "zoho", "lookback_secs": 300});
        spec["mapping"] = json!({
            "fields": {"name": "/name", "modified": "/updated_at"},
            "timezones": {"modified": "Europe/Berlin"}
        });
        json!({"zoho": spec})
    })
    .await;
    // Zoho Creator's own format, in the account's zone (Berlin: +01:00 in
    // January, +02:00 in July); July is the later instant, not the later text.
    rig.upstream.state.put(
        "p000",
        json!({"id": "p000", "name": "winter", "updated_at": "15-Jan-2026 10:30:00"}),
    );
    rig.upstream.state.put(
        "p001",
        json!({"id": "p001", "name": "summer", "updated_at": "15-Jul-2026 10:30:00"}),
    );
    rig.upstream.state.put(
        "p002",
        json!({"id": "p002", "name": "spring", "updated_at": "09-Apr-2026 23:59:59"}),
    );
    let first = run(&rig, "zoho", None).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{first:?}");
    assert_eq!(first.counts.created, 3);
    let stored = |id: &str| {
        let store = rig.store.clone();
        let id = id.to_owned();
        async move {
            syncline_tests::stored(&store, "demo", "property", &id)
                .await
                .expect("stored")
                .data["modified"]
                .clone()
        }
    };
    assert_eq!(stored("p000").await, json!("2026-01-15T09:30:00Z"));
    assert_eq!(stored("p001").await, json!("2026-07-15T08:30:00Z"));

    // The next run asks for changes since the latest instant less the
    // lookback, written back in Zoho's format and zone.
    run(&rig, "zoho", None).await;
    let requests = rig.upstream.state.requests();
    let last = requests.last().expect("a request");
    assert!(
        last.contains("updated_since=15-Jul-2026%2010%3A25%3A00")
            || last.contains("updated_since=15-Jul-2026+10%3A25%3A00"),
        "{last}"
    );

    // A zone nobody knows is refused when the sources are read.
    let bad = SourceSet::parse(
        &json!({"sources": {"z": {"tenant": "demo", "entity": "x", "base_url": "http://127.0.0.1:1",
                                  "records": "/data", "id": "/id", "time_zone": "Europe/Atlantis"}}})
        .to_string(),
        syncline::connectors::http_client().expect("client"),
        local_secret(|_| None),
    );
    assert!(
        bad.as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("Europe/Atlantis")),
        "{:?}",
        bad.err()
    );
}
