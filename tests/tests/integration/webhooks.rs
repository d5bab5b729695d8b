//! Webhook ingestion through its Lambda entry point, with the sample events
//! and sources in `events/webhook/`, on the embedded store.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use sha2::Sha256;
use syncline::Error;
use syncline::lambda::sqs::poll_once;
use syncline::lambda::webhook::handle_webhook;
use syncline::model::{Cursor, EntityType, TenantId, Timestamp};
use syncline::queue::{LocalQueue, RetryQueue};
use syncline::retry::{RetryPolicy, RetryWorker};
use syncline::store::Store;
use syncline::webhooks::{
    Encoding, Headers, Verifier, VerifierSpec, WebhookService, WebhookSources,
};
use syncline_tests::{TestStore, stored, test_store};

const CALENDLY_SECRET: &str = "calendly-local-test-secret";
const TOLERANCE: Duration = Duration::from_secs(300);

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    hex::encode(hmac_raw(key, parts))
}

fn hmac_raw(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn now() -> Timestamp {
    Timestamp::now()
}

fn verifier(spec: VerifierSpec, secrets: &[&str]) -> Verifier {
    let secrets: Vec<String> = secrets.iter().map(|s| (*s).to_owned()).collect();
    Verifier::new(spec, &secrets, TOLERANCE).expect("verifier")
}

fn stripe_header(secret: &str, t: i64, body: &[u8]) -> String {
    format!(
        "t={t},v1={}",
        hmac_hex(secret.as_bytes(), &[t.to_string().as_bytes(), b".", body])
    )
}

fn rejected(result: syncline::Result<syncline::webhooks::Verified>) -> bool {
    matches!(result, Err(Error::Unauthorized(_)))
}

// ---- known answers, computed here with the hmac crate -------------------

#[test]
fn stripe_and_calendly_signatures_verify_and_reject_what_they_must() {
    let body = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
    let t = now().as_secs();
    for (spec, header) in [
        (VerifierSpec::Stripe, "Stripe-Signature"),
        (VerifierSpec::Calendly, "Calendly-Webhook-Signature"),
    ] {
        let v = verifier(spec, &["whsec_test"]);
        let good = stripe_header("whsec_test", t, body);
        let ok = |value: &str, body: &[u8]| v.verify(&Headers::new([(header, value)]), body, now());
        assert!(ok(&good, body).is_ok(), "{header}");

        assert!(
            rejected(ok(&stripe_header("whsec_other", t, body), body)),
            "wrong secret"
        );
        assert!(
            rejected(ok(&good, br#"{"id":"evt_1","type":"tampered"}"#)),
            "tampered body"
        );
        assert!(
            rejected(v.verify(&Headers::new([]), body, now())),
            "missing header"
        );
        assert!(rejected(ok("garbage", body)), "garbled header");
        assert!(rejected(ok(&format!("t={t}"), body)), "no v1");
        assert!(rejected(ok(&format!("t={t},v1="), body)), "empty v1");
        assert!(rejected(ok(&format!("t={t},v1=zz"), body)), "non-hex v1");
        let old = t - 301;
        assert!(
            rejected(ok(&stripe_header("whsec_test", old, body), body)),
            "too old"
        );
        let future = t + 301;
        assert!(
            rejected(ok(&stripe_header("whsec_test", future, body), body)),
            "too far ahead"
        );
        // Within the tolerance either way is fine.
        assert!(ok(&stripe_header("whsec_test", t - 290, body), body).is_ok());
        assert!(ok(&stripe_header("whsec_test", t + 290, body), body).is_ok());
        // Several v1 entries: one matching is enough.
        let two = format!("{good},v1={}", "0".repeat(64));
        assert!(ok(&two, body).is_ok());
        // A v0 signature is not accepted on its own.
        let v0 = stripe_header("whsec_test", t, body).replace("v1=", "v0=");
        assert!(rejected(ok(&v0, body)));
    }
}

#[test]
fn rotated_secrets_are_all_accepted_while_configured() {
    let body = br#"{"id":"evt_2"}"#;
    let t = now().as_secs();
    let v = verifier(VerifierSpec::Stripe, &["whsec_old", "whsec_new"]);
    for secret in ["whsec_old", "whsec_new"] {
        let headers = Headers::new([("stripe-signature", stripe_header(secret, t, body).as_str())]);
        assert!(v.verify(&headers, body, now()).is_ok(), "{secret}");
    }
    let retired = verifier(VerifierSpec::Stripe, &["whsec_new"]);
    let headers = Headers::new([(
        "stripe-signature",
        stripe_header("whsec_old", t, body).as_str(),
    )]);
    assert!(rejected(retired.verify(&headers, body, now())));
}

#[test]
fn standard_webhooks_signatures_verify_and_reject_what_they_must() {
    let key = b"0123456789abcdef0123456789abcdef";
    let secret = format!("whsec_{}", BASE64.encode(key));
    let v = verifier(VerifierSpec::StandardWebhooks, &[&secret]);
    let body = br#"{"type":"order.updated"}"#;
    let t = now().as_secs().to_string();
    let sign = |key: &[u8], id: &str, t: &str, body: &[u8]| {
        BASE64.encode(hmac_raw(
            key,
            &[id.as_bytes(), b".", t.as_bytes(), b".", body],
        ))
    };
    let headers = |id: &str, t: &str, sig: &str| {
        Headers::new([
            ("webhook-id", id),
            ("webhook-timestamp", t),
            ("webhook-signature", sig),
        ])
    };
    let good = format!("v1,{}", sign(key, "msg_1", &t, body));
    let verified = v
        .verify(&headers("msg_1", &t, &good), body, now())
        .expect("valid");
    assert_eq!(verified.message_id.as_deref(), Some("msg_1"));
    // Several signatures, space separated: one match suffices.
    let listed = format!("v1,{} {good}", BASE64.encode([0u8; 32]));
    assert!(
        v.verify(&headers("msg_1", &t, &listed), body, now())
            .is_ok()
    );

    assert!(
        rejected(v.verify(&headers("msg_2", &t, &good), body, now())),
        "id is signed"
    );
    assert!(
        rejected(v.verify(&headers("msg_1", &t, &good), b"{}", now())),
        "tampered"
    );
    let wrong = format!(
        "v1,{}",
        sign(b"another key entirely, 32 bytes!!", "msg_1", &t, body)
    );
    assert!(
        rejected(v.verify(&headers("msg_1", &t, &wrong), body, now())),
        "wrong secret"
    );
    assert!(
        rejected(v.verify(&headers("msg_1", &t, "v1,"), body, now())),
        "empty signature"
    );
    assert!(
        rejected(v.verify(&headers("msg_1", &t, "v1,!!!"), body, now())),
        "garbled"
    );
    assert!(
        rejected(v.verify(&headers("msg_1", &t, "v2,abc"), body, now())),
        "other scheme"
    );
    let old = (now().as_secs() - 600).to_string();
    let old_sig = format!("v1,{}", sign(key, "msg_1", &old, body));
    assert!(
        rejected(v.verify(&headers("msg_1", &old, &old_sig), body, now())),
        "too old"
    );
    let ahead = (now().as_secs() + 600).to_string();
    let ahead_sig = format!("v1,{}", sign(key, "msg_1", &ahead, body));
    assert!(
        rejected(v.verify(&headers("msg_1", &ahead, &ahead_sig), body, now())),
        "too new"
    );
    assert!(
        rejected(v.verify(&Headers::new([("webhook-id", "msg_1")]), body, now())),
        "missing"
    );
}

#[test]
fn generic_hmac_headers_verify_in_hex_and_base64() {
    let body = br#"{"topic":"product.updated"}"#;
    let raw = hmac_raw(b"shop-secret", &[body]);
    let hex_v = verifier(
        VerifierSpec::Generic {
            header: "X-Shop-Signature".into(),
            encoding: Encoding::Hex,
            prefix: Some("sha256=".into()),
        },
        &["shop-secret"],
    );
    let good = format!("sha256={}", hex::encode(&raw));
    assert!(
        hex_v
            .verify(
                &Headers::new([("x-shop-signature", good.as_str())]),
                body,
                now()
            )
            .is_ok()
    );
    let no_prefix = hex::encode(&raw);
    assert!(rejected(hex_v.verify(
        &Headers::new([("x-shop-signature", no_prefix.as_str())]),
        body,
        now()
    )));
    assert!(rejected(hex_v.verify(
        &Headers::new([("x-shop-signature", good.as_str())]),
        b"{}",
        now()
    )));
    assert!(rejected(hex_v.verify(
        &Headers::new([("x-shop-signature", "sha256=")]),
        body,
        now()
    )));

    let b64_v = verifier(
        VerifierSpec::Generic {
            header: "X-Signature".into(),
            encoding: Encoding::Base64,
            prefix: None,
        },
        &["shop-secret"],
    );
    let good = BASE64.encode(&raw);
    assert!(
        b64_v
            .verify(&Headers::new([("x-signature", good.as_str())]), body, now())
            .is_ok()
    );
    let truncated = BASE64.encode(&raw[..16]);
    assert!(rejected(b64_v.verify(
        &Headers::new([("x-signature", truncated.as_str())]),
        body,
        now()
    )));
}

// ---- through the handler -------------------------------------------------

struct Rig {
    service: WebhookService,
    store: Store,
    queue: Arc<dyn RetryQueue>,
    /// The queue's own store (working even when `store` is not).
    queue_engine: TestStore,
    _store_engine: Option<TestStore>,
}

fn sources_document() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../events/webhook/sources.json"
    );
    std::fs::read_to_string(path).expect("sources.json")
}

fn local_env(name: &str) -> Option<String> {
    (name == "CALENDLY_WEBHOOK_SECRET").then(|| CALENDLY_SECRET.to_owned())
}

async fn rig_with_store(store: Store) -> Rig {
    let engine = test_store().await;
    let queue: Arc<dyn RetryQueue> =
        Arc::new(LocalQueue::new(engine.store.clone(), "retry", 10).expect("queue"));
    let sources = WebhookSources::load(&sources_document(), local_env, None)
        .await
        .expect("sources load");
    Rig {
        service: WebhookService::new(store.clone(), queue.clone(), sources),
        store,
        queue,
        queue_engine: engine,
        _store_engine: None,
    }
}

async fn rig() -> Rig {
    let engine = test_store().await;
    let mut rig = rig_with_store(engine.store.clone()).await;
    rig._store_engine = Some(engine);
    rig
}

fn sample(name: &str) -> Request {
    let path = format!(
        "{}/../events/webhook/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("sample event");
    lambda_http::request::from_str(&text).expect("an API Gateway event")
}

async fn send(rig: &Rig, request: Request) -> (StatusCode, Value) {
    let response: Response<Body> = handle_webhook(&rig.service, request)
        .await
        .expect("a response");
    let status = response.status();
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().expect("ascii")),
        Some("application/json")
    );
    let body: Value = serde_json::from_slice(response.body().as_ref()).expect("a JSON body");
    (status, body)
}

async fn seq(rig: &Rig) -> u64 {
    rig.store
        .latest_seq(&TenantId::parse("demo").expect("tenant"))
        .await
        .expect("seq")
        .get()
}

#[tokio::test]
async fn every_sample_event_gets_the_answer_its_case_expects() {
    let rig = rig().await;
    let cases = [
        ("calendly-invitee-created", 200, "applied"),
        ("calendly-duplicate", 200, "duplicate"),
        ("calendly-invitee-canceled", 200, "applied"),
        ("stripe-payment-succeeded", 200, "applied"),
        ("stripe-charge-refunded-old-secret", 200, "applied"),
        ("standard-order-updated", 200, "applied"),
        ("generic-product-updated", 200, "applied"),
        ("stripe-tampered", 401, "unauthorized"),
        ("stripe-expired", 401, "unauthorized"),
        ("stripe-future", 401, "unauthorized"),
        ("stripe-invalid-payment", 422, "validation_failed"),
        ("unknown-source", 404, "not_found"),
    ];
    for (name, status, outcome) in cases {
        let (got, body) = send(&rig, sample(name)).await;
        assert_eq!(got.as_u16(), status, "{name}: {body}");
        let found = body["status"].as_str().or(body["error"]["code"].as_str());
        assert_eq!(found, Some(outcome), "{name}: {body}");
    }

    let invitee = "https://api.calendly.com/scheduled_events/EV1001/invitees/INV1001";
    let booking = stored(&rig.store, "demo", "booking", invitee)
        .await
        .expect("booking");
    assert_eq!(booking.data["status"], json!("canceled"));
    assert_eq!(
        booking.data["email"],
        json!("pat@example.com"),
        "a cancel keeps the rest"
    );
    assert_eq!(booking.data["cancel_reason"], json!("conflict"));
    let payment = stored(&rig.store, "demo", "payment", "pi_1001")
        .await
        .expect("payment");
    assert_eq!(payment.data["status"], json!("refunded"));
    assert_eq!(payment.data["amount"], json!(12500));
    assert!(
        stored(&rig.store, "demo", "payment", "pi_1006")
            .await
            .is_none(),
        "422 wrote nothing"
    );
    assert!(
        stored(&rig.store, "demo", "payment", "pi_1003")
            .await
            .is_none(),
        "401 wrote nothing"
    );
    assert!(
        stored(&rig.store, "demo", "order", "ord_2001")
            .await
            .is_some()
    );
    assert!(
        stored(&rig.store, "demo", "product", "prod_3001")
            .await
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_deliveries_of_one_event_change_the_record_once() {
    let rig = Arc::new(rig().await);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let rig = rig.clone();
        tasks.push(tokio::spawn(async move {
            send(&rig, sample("stripe-payment-succeeded")).await
        }));
    }
    let mut applied = 0;
    let mut duplicates = 0;
    for task in tasks {
        let (status, body) = task.await.expect("task");
        assert_eq!(status, StatusCode::OK, "{body}");
        match body["status"].as_str() {
            Some("applied") => applied += 1,
            Some("duplicate") => duplicates += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((applied, duplicates), (1, 19));
    let payment = stored(&rig.store, "demo", "payment", "pi_1001")
        .await
        .expect("payment");
    assert_eq!(payment.version.get(), 1);
    // Exactly one record change: the feed and the trail hold one. (The
    // attempts that lost may each have taken a number they never used.)
    let tenant = TenantId::parse("demo").expect("tenant");
    let feed = rig
        .store
        .changes_since(
            &tenant,
            &[EntityType::parse("payment").expect("entity")],
            Cursor::START,
            100,
        )
        .await
        .expect("feed");
    assert_eq!(feed.records.len(), 1, "exactly one record change");
    let trail = rig
        .store
        .read_trail(&tenant, None, 100, 1000, None)
        .await
        .expect("trail");
    let named: usize = trail.items.iter().map(|(_, e)| e.changes.len()).sum();
    assert_eq!(named, 1, "one trail entry naming it");
}

#[tokio::test]
async fn when_the_store_fails_the_event_is_queued_and_acknowledged() {
    // A store whose endpoint refuses connections.
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url("http://127.0.0.1:9")
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "x", "x", None, None, "t",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let broken = Store::from_sdk_config(&config, "syncline-test");
    let rig = rig_with_store(broken).await;

    let (status, body) = send(&rig, sample("stripe-payment-succeeded")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], json!("queued"));

    // The retry worker, with a working store, applies it later.
    let worker = RetryWorker::new(
        rig.queue_engine.store.clone(),
        rig.queue.clone(),
        RetryPolicy::default(),
    );
    let handled = poll_once(
        &*rig.queue,
        &worker,
        Duration::from_secs(30),
        Duration::from_secs(60),
        Duration::from_secs(1),
    )
    .await
    .expect("poll");
    assert_eq!(handled, 1);
    let payment = stored(&rig.queue_engine.store, "demo", "payment", "pi_1001")
        .await
        .expect("applied by the worker");
    assert_eq!(payment.data["currency"], json!("eur"));
}

fn request(method: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Request {
    let mut builder = lambda_http::http::Request::builder()
        .method(method)
        .uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::from(body)).expect("request")
}

fn signed_stripe(body: &[u8]) -> Request {
    let header = stripe_header("whsec_stripe_local_test_secret_new", now().as_secs(), body);
    request(
        "POST",
        "/v1/webhooks/stripe",
        &[("stripe-signature", &header)],
        body.to_vec(),
    )
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_writes_nothing() {
    let rig = rig().await;
    let cases: Vec<(Request, u16, &str)> = vec![
        (signed_stripe(b"{not json"), 400, "invalid_request"),
        (
            signed_stripe(br#"{"type":"payment_intent.succeeded"}"#),
            400,
            "invalid_request",
        ),
        (
            signed_stripe(&vec![b' '; 300 * 1024]),
            413,
            "payload_too_large",
        ),
        (
            request("POST", "/v1/webhooks/nobody", &[], b"{}".to_vec()),
            404,
            "not_found",
        ),
        (
            request("GET", "/v1/webhooks/stripe", &[], Vec::new()),
            405,
            "method_not_allowed",
        ),
        (
            request("POST", "/v1/webhooks/stripe", &[], b"{}".to_vec()),
            401,
            "unauthorized",
        ),
        (
            request("POST", "/v1/webhooks/", &[], b"{}".to_vec()),
            404,
            "not_found",
        ),
    ];
    for (request, status, code) in cases {
        let (got, body) = send(&rig, request).await;
        assert_eq!(got.as_u16(), status, "{body}");
        assert_eq!(body["error"]["code"], json!(code), "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // An authentic event of a type the source does not map is acknowledged
    // and ignored.
    let (status, body) = send(
        &rig,
        signed_stripe(br#"{"id":"evt_9","type":"customer.created"}"#),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["status"].as_str()),
        (200, Some("ignored"))
    );
    assert_eq!(seq(&rig).await, 0, "nothing was written");
    assert!(
        rig.queue
            .receive(10, Duration::from_secs(1), Duration::ZERO)
            .await
            .expect("receive")
            .is_empty()
    );
}

#[tokio::test]
async fn secrets_can_come_from_secrets_manager() {
    let client = syncline_tests::moto().secrets_manager_client().await;
    let name = format!("syncline/stripe-{}", uuid::Uuid::new_v4().simple());
    client
        .create_secret()
        .name(&name)
        .secret_string("whsec_from_secrets_manager")
        .send()
        .await
        .expect("secret created");
    let document = json!({"sources": {"stripe": {
        "tenant": "demo",
        "verifier": {"kind": "stripe"},
        "secrets": [{"secrets_manager": name}],
        "event_type": "/type",
        "event_id": {"pointer": "/id"},
        "events": {}
    }}})
    .to_string();
    let sources = WebhookSources::load(
        &document,
        |_| None,
        Some(&syncline_tests::moto().sdk_config().await),
    )
    .await
    .expect("load");
    let source = sources.get("stripe").expect("source");
    let body = br#"{"id":"evt_1","type":"x"}"#;
    let header = stripe_header("whsec_from_secrets_manager", now().as_secs(), body);
    assert!(
        source
            .verifier
            .verify(
                &Headers::new([("stripe-signature", header.as_str())]),
                body,
                now()
            )
            .is_ok()
    );

    let missing = json!({"sources": {"stripe": {
        "tenant": "demo", "verifier": {"kind": "stripe"},
        "secrets": [{"env": "NOT_SET_ANYWHERE"}],
        "event_type": "/type", "event_id": "body_hash"
    }}})
    .to_string();
    assert!(matches!(
        WebhookSources::load(&missing, |_| None, None).await,
        Err(Error::Config(_))
    ));
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

        /// Random bytes and headers never panic the handler and always get
        /// a JSON 4xx.
        #[test]
        fn random_deliveries_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..2048),
            source in prop_oneof![
                Just("stripe".to_owned()),
                Just("calendly".to_owned()),
                Just("orders".to_owned()),
                Just("shop".to_owned()),
                "[a-z]{1,8}",
            ],
            header in "[ -~]{0,200}",
            method in prop_oneof![Just("POST"), Just("GET"), Just("PUT")],
        ) {
            let rt = runtime();
            rt.block_on(async {
                let rig = rig().await;
                let names = ["stripe-signature", "calendly-webhook-signature", "webhook-signature", "x-shop-signature"];
                let headers: Vec<(&str, &str)> = names.iter().map(|n| (*n, header.as_str()))
                    .chain([("webhook-id", "msg"), ("webhook-timestamp", header.as_str())]).collect();
                let path = format!("/v1/webhooks/{source}");
                let (status, body) = send(&rig, request(method, &path, &headers, body)).await;
                prop_assert!(status.is_client_error(), "{status} {body}");
                prop_assert!(body["error"]["code"].is_string());
                Ok(())
            })?;
        }

        /// Authentic deliveries with random JSON-ish bodies never panic and
        /// get 200, 400 or 422.
        #[test]
        fn authentic_random_bodies_never_panic(
            kind in prop_oneof![
                Just("payment_intent.succeeded".to_owned()),
                Just("charge.refunded".to_owned()),
                "[a-z.]{1,20}",
            ],
            id in prop_oneof![Just(json!("evt_x")), Just(json!(7)), Just(Value::Null), Just(json!({"a": 1}))],
            object in prop_oneof![
                Just(json!({"id": "pi_1", "amount": 5, "currency": "usd"})),
                Just(json!({"id": 3, "amount": "five"})),
                Just(json!({"payment_intent": "pi_1"})),
                Just(json!([1, 2])),
                Just(Value::Null),
            ],
            garbage in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let rt = runtime();
            rt.block_on(async {
                let rig = rig().await;
                let mut body = serde_json::to_vec(&json!({"id": id, "type": kind, "data": {"object": object}})).expect("json");
                if !garbage.is_empty() && garbage[0] % 4 == 0 {
                    body.extend(garbage);
                }
                let (status, response) = send(&rig, signed_stripe(&body)).await;
                prop_assert!(matches!(status.as_u16(), 200 | 400 | 422), "{status} {response}");
                Ok(())
            })?;
        }
    }
}
