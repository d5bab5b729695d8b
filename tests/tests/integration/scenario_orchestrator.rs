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
