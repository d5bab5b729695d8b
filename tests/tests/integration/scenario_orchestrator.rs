//! Scenario 1, the orchestrator: Calendly and a Stripe-style payment source,
//! their webhooks (one delivered twice), a scheduled Calendly pull, "sync
//! all", "sync one system", "force-sync one record", a job schedule that
//! refuses a double-booked crew, and a status that shows every source.
//! Driven only through HTTP routes, the Invoke API and sample files
//! (docs/scenarios.md, scenario 1).

use serde_json::{Value, json};
use syncline_local::demo::DemoCounts;
use syncline_tests::service::{Service, demo_control, demo_source, sample};

#[tokio::test]
async fn scenario_1_orchestrator() {
    let demo = demo_source(DemoCounts::default()).await;
    let service = Service::scenario("orchestrator", demo).await;

    // A scheduled Calendly pull (the EventBridge event names the source).
    let scheduled = service
        .invoke(
            "scheduled-sync",
            json!({"detail-type": "Scheduled Event", "source": "aws.events",
                   "detail": {"sources": ["calendly"]}}),
        )
        .await;
    assert_eq!(scheduled.status, 200, "{}", scheduled.body);
    let run = &scheduled.body["runs"][0];
    assert_eq!(run["status"], json!("succeeded"), "{run}");
    assert_eq!(run["trigger"], json!("schedule"));
    assert_eq!(run["counts"]["created"], json!(12));
    let events = service.pull_all("demo", "event").await;
    assert_eq!(events.len(), 12);
    assert!(
        events[0]["data"]["start_time"].is_string() && events[0]["data"]["location"].is_string(),
        "mapped fields: {}",
        events[0]
    );

    // Webhooks: Calendly invitee created (delivered twice), canceled, and a
    // payment.
    let created = sample("webhook/calendly-invitee-created.json");
    let first = service.replay(&created).await;
    assert_eq!(
        (first.status, first.body["status"].clone()),
        (200, json!("applied"))
    );
    let again = service.replay(&created).await;
    assert_eq!(
        (again.status, again.body["status"].clone()),
        (200, json!("duplicate"))
    );
    let canceled = service
        .replay(&sample("webhook/calendly-invitee-canceled.json"))
        .await;
    assert_eq!(
        canceled.body["status"],
        json!("applied"),
        "{}",
        canceled.body
    );
    let paid = service
        .replay(&sample("webhook/stripe-payment-succeeded.json"))
        .await;
    assert_eq!(paid.body["status"], json!("applied"), "{}", paid.body);
    let booking = service
        .pulled(
            "demo",
            "booking",
            "https://api.calendly.com/scheduled_events/EV1001/invitees/INV1001",
        )
        .await
        .expect("the booking");
    assert_eq!(booking["data"]["status"], json!("canceled"));
    assert_eq!(booking["data"]["email"], json!("pat@example.com"));
    assert_eq!(
        booking["version"],
        json!(2),
        "created once, canceled once: the duplicate wrote nothing"
    );
    let payment = service
        .pulled("demo", "payment", "pi_1001")
        .await
        .expect("pi_1001");
    assert_eq!(payment["data"]["amount"], json!(12500));

    // "Sync all": every enabled source runs, queued and handled by the
    // retry worker.
    let all = service.admin("POST", "/v1/admin/sync", json!({})).await;
    assert_eq!(all.status, 202, "{}", all.body);
    assert!(service.drain_queue().await >= 1);
    let stripe = service.last_run("stripe").await;
    assert_eq!(stripe["status"], json!("succeeded"), "{stripe}");
    assert_eq!(stripe["trigger"], json!("manual"));
    assert_eq!(stripe["counts"]["created"], json!(20));
    assert_eq!(
        stripe["counts"]["deleted"],
        json!(0),
        "the payment a webhook delivered is not the pull's to sweep: {stripe}"
    );
    let calendly = service.last_run("calendly").await;
    assert_eq!(calendly["trigger"], json!("manual"));
    assert_eq!(calendly["counts"]["unchanged"], json!(12));
    assert_eq!(calendly["counts"]["created"], json!(0));
    let payments = service.pull_all("demo", "payment").await;
    assert_eq!(
        payments
            .iter()
            .filter(|p| p["deleted"] == json!(false))
            .count(),
        21
    );
    assert!(service.pulled("demo", "payment", "pi_1001").await.is_some());

    // "Sync one system": two payments change upstream; only stripe runs.
    let changed = demo_control(demo, "payments/change", json!({"count": 2})).await;
    assert_eq!(changed["changed"], json!(["pi_demo0000", "pi_demo0001"]));
    let one = service
        .admin("POST", "/v1/admin/sync", json!({"source": "stripe"}))
        .await;
    assert_eq!(one.status, 202, "{}", one.body);
    service.drain_queue().await;
    let stripe = service.last_run("stripe").await;
    assert_eq!(stripe["kind"], json!("incremental"), "{stripe}");
    assert_eq!(stripe["counts"]["updated"], json!(2), "{stripe}");
    assert_eq!(
        service.last_run("calendly").await["id"],
        calendly["id"],
        "calendly did not run"
    );

    // "Force-sync one record": a change the incremental filter cannot see
    // (back-dated), fetched by id.
    demo_control(
        demo,
        "payments/change",
        json!({"count": 1, "backdate": true}),
    )
    .await;
    let forced = service
        .admin(
            "POST",
            "/v1/admin/sync/stripe/records/pi_demo0000",
            Value::Null,
        )
        .await;
    assert_eq!(forced.status, 202, "{}", forced.body);
    service.drain_queue().await;
    let pi = service
        .pulled("demo", "payment", "pi_demo0000")
        .await
        .expect("pi_demo0000");
    assert_eq!(
        pi["data"]["amount"],
        json!(5_200),
        "5,000 + 100 + 100 after two changes"
    );

    // A job schedule with a no-overlap rule refuses a double-booked crew.
    let pushed = service
        .client(
            "demo",
            "POST",
            "/v1/sync/push",
            json!({"client_id": "dispatch-board", "mutations": [
                {"id": 1, "op": "upsert", "entity": "job_schedule", "record_id": "job-1",
                 "data": {"crew": "crew-a", "start": "2026-11-23T09:00:00Z", "end": "2026-11-23T12:00:00Z"},
                 "timestamp": 1_795_300_000_000_i64},
                {"id": 2, "op": "upsert", "entity": "job_schedule", "record_id": "job-2",
                 "data": {"crew": "crew-a", "start": "2026-11-23T10:30:00Z", "end": "2026-11-23T11:30:00Z"},
                 "timestamp": 1_795_300_000_001_i64}
            ]}),
        )
        .await;
    assert_eq!(pushed.status, 200, "{}", pushed.body);
    assert_eq!(pushed.body["results"][0]["status"], json!("applied"));
    assert_eq!(pushed.body["results"][1]["status"], json!("rejected"));
    assert_eq!(
        pushed.body["results"][1]["reason"],
        json!("crew \"crew-a\" is already booked by job-1 in that time")
    );

    // Status: every source with its last run, healthy.
    let status = service.admin("GET", "/v1/admin/status", Value::Null).await;
    assert_eq!(status.status, 200, "{}", status.body);
    let sources = status.body["sources"].as_array().expect("sources");
    assert_eq!(sources.len(), 2);
    for source in sources {
        assert_eq!(source["health"], json!("healthy"), "{source}");
        assert_eq!(source["last_run"]["status"], json!("succeeded"), "{source}");
    }
    service.running.stop().await;
}

fn outcome(result: &Value) -> (String, String) {
    (
        result["status"].as_str().expect("status").to_owned(),
        result["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn contracts_move_only_along_their_lifecycle_and_slots_come_from_the_bookings() {
    let service = Service::start(syncline_tests::service::ServiceConfig::default()).await;
    let op = |id: u64, op: &str, record: &str, data: Value| {
        json!({"id": id, "op": op, "entity": "contract", "record_id": record,
               "data": data, "timestamp": 1_795_300_000_000_i64 + id as i64})
    };
    // createContract, a send, a sign without and with the signature data,
    // then a cancel of a signed contract; cancelContract(id, reason) of another.
    let results = service.push("office", json!([
        op(1, "upsert", "c-1", json!({"job": "job-1", "status": "draft", "amount": 1200})),
        op(2, "upsert", "c-2", json!({"job": "job-2", "status": "signed"})),
        op(3, "patch", "c-1", json!({"status": "sent"})),
        op(4, "patch", "c-1", json!({"status": "signed"})),
        op(5, "patch", "c-1", json!({"status": "signed", "signature": {"name": "Ann Lee", "image": "data:image/png;base64,iVBOR"},
                                     "signed_at": "2026-11-23T10:00:00Z"})),
        op(6, "patch", "c-1", json!({"status": "cancelled", "cancel_reason": "changed mind"})),
        op(7, "upsert", "c-3", json!({"job": "job-3", "status": "draft"})),
        op(8, "patch", "c-3", json!({"status": "cancelled"})),
        op(9, "patch", "c-3", json!({"status": "cancelled", "cancel_reason": "customer moved away"})),
        op(10, "patch", "c-1", json!({"amount": 1300})),
    ]))
    .await;
    let outcomes: Vec<(String, String)> = results.iter().map(outcome).collect();
    assert_eq!(outcomes[0].0, "applied");
    assert_eq!(
        outcomes[1],
        (
            "rejected".into(),
            "a new record starts as draft, not signed".into()
        )
    );
    assert_eq!(outcomes[2].0, "applied");
    assert_eq!(
        outcomes[3],
        (
            "rejected".into(),
            "signed needs signature and signed_at".into()
        )
    );
    assert_eq!(outcomes[4].0, "applied");
    assert_eq!(
        outcomes[5],
        (
            "rejected".into(),
            "status signed is final; it cannot become cancelled".into()
        )
    );
    assert_eq!(outcomes[6].0, "applied");
    assert_eq!(
        outcomes[7],
        ("rejected".into(), "cancelled needs cancel_reason".into())
    );
    assert_eq!(outcomes[8].0, "applied");
    assert_eq!(
        outcomes[9].0, "applied",
        "other fields of a signed contract may change"
    );
    // get(contractId): the record as it stands.
    let c1 = service
        .client("demo", "GET", "/v1/sync/records/contract/c-1", Value::Null)
        .await;
    assert_eq!(c1.body["record"]["data"]["status"], "signed");
    assert_eq!(c1.body["record"]["data"]["signature"]["name"], "Ann Lee");
    assert_eq!(c1.body["record"]["data"]["amount"], 1300);
    let c2 = service
        .client("demo", "GET", "/v1/sync/records/contract/c-2", Value::Null)
        .await;
    assert_eq!(c2.status, 404, "a rejected create wrote nothing");

    // getAvailableTimeSlots(date, duration): crew-a is booked 09:00-12:00
    // and 13:00-14:00 (UTC) on 23 November; crew-b's booking does not count.
    let book = |id: u64, record: &str, crew: &str, start: &str, end: &str| {
        json!({"id": id, "op": "upsert", "entity": "job_schedule", "record_id": record,
               "data": {"crew": crew, "start": start, "end": end}, "timestamp": 1})
    };
    let booked = service
        .push(
            "dispatch",
            json!([
                book(
                    1,
                    "job-1",
                    "crew-a",
                    "2026-11-23T09:00:00Z",
                    "2026-11-23T12:00:00Z"
                ),
                book(
                    2,
                    "job-2",
                    "crew-a",
                    "2026-11-23T13:00:00Z",
                    "2026-11-23T14:00:00Z"
                ),
                book(
                    3,
                    "job-3",
                    "crew-b",
                    "2026-11-23T08:00:00Z",
                    "2026-11-23T17:00:00Z"
                ),
            ]),
        )
        .await;
    assert!(
        booked.iter().all(|r| r["status"] == "applied"),
        "{booked:?}"
    );
    let slots = |query: &str| {
        let service = &service;
        let path = format!("/v1/sync/slots?{query}");
        async move { service.client("demo", "GET", &path, Value::Null).await }
    };
    let free = slots(
        "entity=job_schedule&resource=crew-a&date=2026-11-23&duration=60&from=08:00&to=17:00",
    )
    .await;
    assert_eq!(free.status, 200, "{}", free.body);
    let starts: Vec<&str> = free.body["slots"]
        .as_array()
        .expect("slots")
        .iter()
        .map(|s| s["start"].as_str().expect("start"))
        .collect();
    assert_eq!(
        starts,
        [
            "2026-11-23T08:00:00Z",
            "2026-11-23T12:00:00Z",
            "2026-11-23T14:00:00Z",
            "2026-11-23T15:00:00Z",
            "2026-11-23T16:00:00Z"
        ]
    );
    assert_eq!(free.body["slots"][0]["end"], "2026-11-23T09:00:00Z");
    // Two-hour slots every 30 minutes, opening hours in Berlin (UTC+1 in
    // November): 08:00-17:00 local is 07:00-16:00 UTC.
    let berlin = slots("entity=job_schedule&resource=crew-a&date=2026-11-23&duration=120&step=30&from=08:00&to=17:00&zone=Europe/Berlin").await;
    let starts: Vec<&str> = berlin.body["slots"]
        .as_array()
        .expect("slots")
        .iter()
        .map(|s| s["start"].as_str().expect("start"))
        .collect();
    assert_eq!(starts, ["2026-11-23T07:00:00Z", "2026-11-23T14:00:00Z"]);
    // Bad input: a clear 400.
    for bad in [
        "entity=job_schedule&resource=crew-a&date=23-11-2026&duration=60",
        "entity=job_schedule&resource=crew-a&date=2026-11-23&duration=0",
        "entity=job_schedule&resource=crew-a&date=2026-11-23&duration=60&from=17:00&to=08:00",
        "entity=job_schedule&resource=crew-a&date=2026-11-23&duration=60&zone=Mars/Base",
        "entity=task&resource=crew-a&date=2026-11-23&duration=60",
        "entity=job_schedule&date=2026-11-23&duration=60",
    ] {
        let reply = slots(bad).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
    }
}
