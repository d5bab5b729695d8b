//! The retry worker through its Lambda entry point (SQS events), fed by the
//! local queue and by SQS on moto the way Lambda's event source feeds it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;
use syncline::Error;
use syncline::lambda::sqs::{handle_retry_batch, poll_once};
use syncline::model::{EntityType, RecordId, TenantId, Timestamp};
use syncline::queue::{LocalQueue, ReceiptHandle, RetryQueue, SqsQueue, create_sqs_queues};
use syncline::retry::{
    IncomingMessage, Outcome, RetryEnvelope, RetryPolicy, RetryWorker, WorkHandler, WorkKind,
};
use syncline::store::Store;
use syncline_tests::{TestStore, moto, test_store};

const TEST_POLICY: RetryPolicy = RetryPolicy {
    base_delay: Duration::from_secs(1),
    max_delay: Duration::from_secs(8),
    max_attempts: 3,
};

/// Fails with a retryable error `failures` times, then succeeds; records
/// when it was called.
#[derive(Default)]
struct Flaky {
    failures: AtomicU32,
    calls: Mutex<Vec<Instant>>,
}

impl Flaky {
    fn failing(times: u32) -> Arc<Self> {
        Arc::new(Self {
            failures: AtomicU32::new(times),
            calls: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> Vec<Instant> {
        self.calls.lock().expect("lock").clone()
    }
}

#[async_trait]
impl WorkHandler for Flaky {
    async fn handle(
        &self,
        _envelope: &RetryEnvelope,
        _deadline: Timestamp,
    ) -> syncline::Result<()> {
        self.calls.lock().expect("lock").push(Instant::now());
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(Error::Upstream {
                service: "calendly".into(),
                reason: "HTTP 503".into(),
                retryable: true,
            });
        }
        Ok(())
    }
}

/// Fails for good.
struct Invalid;

#[async_trait]
impl WorkHandler for Invalid {
    async fn handle(
        &self,
        _envelope: &RetryEnvelope,
        _deadline: Timestamp,
    ) -> syncline::Result<()> {
        Err(Error::validation("payload", "missing record id"))
    }
}

/// Counts its effects; takes a while, so concurrent deliveries overlap.
#[derive(Default)]
struct Counting {
    effects: AtomicU32,
}

#[async_trait]
impl WorkHandler for Counting {
    async fn handle(
        &self,
        _envelope: &RetryEnvelope,
        _deadline: Timestamp,
    ) -> syncline::Result<()> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.effects.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

struct Rig {
    store: Store,
    queue: Arc<dyn RetryQueue>,
    worker: RetryWorker,
    _engine: TestStore,
}

impl Rig {
    fn register(&mut self, kind: WorkKind, handler: Arc<dyn WorkHandler>) {
        self.worker.register(kind, handler);
    }

    async fn send(&self, kind: WorkKind, key: &str) -> String {
        let envelope = RetryEnvelope::new(kind, json!({}), key, "first try failed");
        self.queue
            .send(&envelope.to_body().expect("body"), Duration::ZERO)
            .await
            .expect("send")
            .to_string()
    }

    /// One round of what Lambda's SQS event source does: receive a batch,
    /// invoke the handler, delete what it did not report as failed.
    async fn poll(&self) -> usize {
        poll_once(
            &*self.queue,
            &self.worker,
            Duration::from_secs(30),
            Duration::from_secs(60),
            Duration::ZERO,
        )
        .await
        .expect("poll")
    }

    /// Feeds the queue to the worker until `done` holds or 30 s pass.
    async fn run_until(&self, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "timed out feeding the worker");
            if self.poll().await == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    async fn dead_letters(&self) -> Vec<RetryEnvelope> {
        self.queue
            .dead_letters(10)
            .await
            .expect("dead letters")
            .iter()
            .map(|d| RetryEnvelope::parse(&d.body).expect("dead letters are envelopes"))
            .collect()
    }

    async fn queue_is_empty(&self) -> bool {
        self.queue
            .receive(10, Duration::from_secs(30), Duration::ZERO)
            .await
            .expect("receive")
            .is_empty()
    }
}

async fn local() -> Rig {
    let engine = test_store().await;
    let store = engine.store.clone();
    let queue: Arc<dyn RetryQueue> =
        Arc::new(LocalQueue::new(store.clone(), "retry", 10).expect("queue"));
    Rig {
        worker: RetryWorker::new(store.clone(), queue.clone(), TEST_POLICY),
        store,
        queue,
        _engine: engine,
    }
}

async fn sqs() -> Rig {
    let engine = test_store().await;
    let store = engine.store.clone();
    let client = moto().sqs_client().await;
    let name = format!("retry-{}", uuid::Uuid::new_v4().simple());
    let (url, _) = create_sqs_queues(&client, &name, 10).await.expect("queues");
    let queue: Arc<dyn RetryQueue> = Arc::new(
        SqsQueue::connect(client, &url, None)
            .await
            .expect("connect"),
    );
    Rig {
        worker: RetryWorker::new(store.clone(), queue.clone(), TEST_POLICY),
        store,
        queue,
        _engine: engine,
    }
}

macro_rules! on_both_queues {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test]
                async fn local_queue() {
                    super::$case(super::local().await).await;
                }

                #[tokio::test]
                async fn sqs_queue() {
                    super::$case(super::sqs().await).await;
                }
            }
        )*
    };
}

on_both_queues!(
    poison_work_is_dead_lettered_after_the_configured_attempts_with_its_error,
    a_transient_failure_succeeds_on_a_later_attempt_after_a_growing_delay,
    an_unreadable_message_is_dead_lettered_at_once,
    a_redelivered_message_has_its_effect_once,
    work_of_a_kind_without_a_handler_yet_is_retried_not_dead_lettered,
);

async fn work_of_a_kind_without_a_handler_yet_is_retried_not_dead_lettered(mut rig: Rig) {
    // A worker deployed without the sync handlers (no REST sources) gets an
    // operator's sync run: the handler may come with the next deploy.
    rig.send(WorkKind::SyncRun, "sync-run-1").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while rig.poll().await == 0 && Instant::now() < deadline {}
    assert!(
        rig.dead_letters().await.is_empty(),
        "a known kind is never dead-lettered for want of a handler"
    );
    // The next deploy brings the handler: the same message is done then.
    let counting = Arc::new(Counting::default());
    rig.register(WorkKind::SyncRun, counting.clone());
    rig.run_until(|| counting.effects.load(Ordering::SeqCst) == 1)
        .await;
    assert_eq!(counting.effects.load(Ordering::SeqCst), 1);
    assert!(rig.dead_letters().await.is_empty());
}

async fn poison_work_is_dead_lettered_after_the_configured_attempts_with_its_error(mut rig: Rig) {
    let always = Flaky::failing(u32::MAX);
    rig.register(WorkKind::SyncRun, always.clone());
    rig.send(WorkKind::SyncRun, "poison-1").await;

    rig.run_until(|| always.calls().len() >= 3).await;
    // Give a fourth attempt every chance to happen: it must not.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..5 {
        rig.poll().await;
    }
    assert_eq!(always.calls().len(), 3, "exactly the configured attempts");

    let dead = rig.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].kind, WorkKind::SyncRun);
    assert_eq!(dead[0].idempotency_key, "poison-1");
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("HTTP 503")),
        "{dead:?}"
    );
    assert_eq!(dead[0].dead_lettered.as_ref().map(|d| d.attempts), Some(3));
    assert!(rig.queue_is_empty().await);
}

async fn a_transient_failure_succeeds_on_a_later_attempt_after_a_growing_delay(mut rig: Rig) {
    let flaky = Flaky::failing(2);
    rig.register(WorkKind::ForceSync, flaky.clone());
    rig.send(WorkKind::ForceSync, "flaky-1").await;

    rig.run_until(|| flaky.calls().len() >= 3).await;
    let calls = flaky.calls();
    let first_gap = calls[1] - calls[0];
    let second_gap = calls[2] - calls[1];
    // Backoff ceilings 1 s then 2 s, with jitter in [0.75, 1] of each.
    assert!(first_gap >= Duration::from_millis(700), "{first_gap:?}");
    assert!(second_gap >= Duration::from_millis(1400), "{second_gap:?}");
    assert!(second_gap > first_gap, "{first_gap:?} then {second_gap:?}");

    assert!(rig.dead_letters().await.is_empty());
    assert!(
        rig.queue_is_empty().await,
        "the finished message was deleted"
    );
}

async fn an_unreadable_message_is_dead_lettered_at_once(rig: Rig) {
    rig.queue
        .send("{definitely not an envelope", Duration::ZERO)
        .await
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        rig.poll().await;
        let dead = rig.dead_letters().await;
        if !dead.is_empty() || Instant::now() > deadline {
            break dead;
        }
    };
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].kind, WorkKind::Unreadable);
    assert_eq!(dead[0].payload, json!("{definitely not an envelope"));
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("invalid retry message"))
    );
    assert!(rig.queue_is_empty().await);
}

async fn a_redelivered_message_has_its_effect_once(mut rig: Rig) {
    let counting = Arc::new(Counting::default());
    rig.register(WorkKind::SyncContinuation, counting.clone());
    // The same work enqueued twice (a producer retried its send).
    rig.send(WorkKind::SyncContinuation, "once-1").await;
    rig.send(WorkKind::SyncContinuation, "once-1").await;

    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        rig.poll().await;
        if counting.effects.load(Ordering::SeqCst) >= 1 && rig.queue_is_empty().await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(counting.effects.load(Ordering::SeqCst), 1);
    assert!(rig.dead_letters().await.is_empty());
}

fn incoming(id: &str, body: &str, receipt: &str) -> IncomingMessage {
    IncomingMessage {
        id: id.to_owned(),
        receipt: ReceiptHandle::new(receipt),
        body: body.to_owned(),
        receive_count: 1,
    }
}

#[tokio::test]
async fn two_invocations_handling_the_same_work_at_once_apply_it_once() {
    let mut rig = local().await;
    let counting = Arc::new(Counting::default());
    rig.register(WorkKind::SyncContinuation, counting.clone());
    let body = RetryEnvelope::new(WorkKind::SyncContinuation, json!({}), "same-work", "e")
        .to_body()
        .expect("body");
    let deadline = Timestamp::now().plus(Duration::from_secs(60));
    let first = incoming("m1", &body, "m1.r");
    let second = incoming("m2", &body, "m2.r");
    let (a, b) = tokio::join!(
        rig.worker.process(&first, deadline),
        rig.worker.process(&second, deadline)
    );
    let outcomes = [a.expect("first"), b.expect("second")];
    assert_eq!(counting.effects.load(Ordering::SeqCst), 1);
    assert_eq!(outcomes.iter().filter(|o| **o == Outcome::Done).count(), 1);
    assert!(outcomes.iter().any(|o| o.keeps_message()), "{outcomes:?}");

    // When the other one comes back, the work is known to be done.
    let again = rig.worker.process(&second, deadline).await.expect("again");
    assert_eq!(again, Outcome::AlreadyDone);
    assert_eq!(counting.effects.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_permanent_failure_is_dead_lettered_without_another_attempt() {
    let mut rig = local().await;
    rig.register(WorkKind::DiscrepancyRepair, Arc::new(Invalid));
    let body = RetryEnvelope::new(WorkKind::DiscrepancyRepair, json!({}), "invalid-1", "e")
        .to_body()
        .expect("body");
    let outcome = rig
        .worker
        .process(
            &incoming("m1", &body, "m1.r"),
            Timestamp::now().plus(Duration::from_secs(60)),
        )
        .await
        .expect("process");
    assert!(
        matches!(outcome, Outcome::DeadLettered { ref error } if error.contains("missing record id")),
        "{outcome:?}"
    );
    let dead = rig.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].dead_lettered.as_ref().map(|d| d.attempts), Some(1));
}

#[tokio::test]
async fn a_redriven_dead_letter_gets_a_fresh_cycle_and_can_succeed() {
    let mut rig = local().await;
    // Fails through its first cycle of three attempts, then works.
    let flaky = Flaky::failing(3);
    rig.register(WorkKind::ForceSync, flaky.clone());
    rig.send(WorkKind::ForceSync, "redrive-1").await;
    let queue = rig.queue.clone();
    rig.run_until(|| flaky.calls().len() >= 3).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while rig.dead_letters().await.is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(queue.redrive(None).await.expect("redrive"), 1);
    rig.run_until(|| flaky.calls().len() >= 4).await;
    let finish = Instant::now() + Duration::from_secs(5);
    while !rig.queue_is_empty().await {
        assert!(Instant::now() < finish);
        rig.poll().await;
    }
    assert!(rig.dead_letters().await.is_empty());
    assert_eq!(flaky.calls().len(), 4);
}

fn sample_event(name: &str) -> LambdaEvent<SqsEvent> {
    let path = format!(
        "{}/../events/retry-worker/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("sample event");
    let event: SqsEvent = serde_json::from_str(&text).expect("an SQS event");
    let mut context = Context::default();
    context.deadline = Timestamp::now().plus(Duration::from_secs(60)).as_millis() as u64;
    LambdaEvent::new(event, context)
}

fn failed_ids(response: &aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<&str> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect()
}

#[tokio::test]
async fn a_mixed_batch_reports_exactly_the_failed_message_ids() {
    let rig = local().await;
    let response = handle_retry_batch(&rig.worker, sample_event("mixed-batch.json"))
        .await
        .expect("handled");
    // The good one is applied, the poison one dead-lettered, the retryable
    // one (a known kind with no handler in this build) comes back later.
    assert_eq!(
        failed_ids(&response),
        vec!["2f0d0f3e-0006-4c6b-9d55-000000000006"]
    );
    let demo = TenantId::parse("demo").expect("tenant");
    let booking = rig
        .store
        .get_record(
            &demo,
            &EntityType::parse("booking").expect("entity"),
            &RecordId::parse("inv-1002").expect("id"),
        )
        .await
        .expect("read")
        .expect("applied");
    assert_eq!(booking.data["status"], json!("canceled"));
    let dead = rig.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].kind, WorkKind::Unreadable);
}

#[tokio::test]
async fn every_sample_event_gets_the_response_its_case_expects() {
    let rig = local().await;

    let good = handle_retry_batch(&rig.worker, sample_event("good.json"))
        .await
        .expect("good");
    assert!(good.batch_item_failures.is_empty());
    let demo = TenantId::parse("demo").expect("tenant");
    let booking = EntityType::parse("booking").expect("entity");
    let id = RecordId::parse("inv-1001").expect("id");
    let first = rig
        .store
        .get_record(&demo, &booking, &id)
        .await
        .expect("read")
        .expect("applied");
    // Delivered again: applied once (same version).
    let again = handle_retry_batch(&rig.worker, sample_event("good.json"))
        .await
        .expect("again");
    assert!(again.batch_item_failures.is_empty());
    let second = rig
        .store
        .get_record(&demo, &booking, &id)
        .await
        .expect("read")
        .expect("there");
    assert_eq!(first.version, second.version);

    let poison = handle_retry_batch(&rig.worker, sample_event("poison.json"))
        .await
        .expect("poison");
    assert!(
        poison.batch_item_failures.is_empty(),
        "dead-lettered, not retried"
    );
    assert_eq!(rig.dead_letters().await.len(), 1);

    let retryable = handle_retry_batch(&rig.worker, sample_event("retryable.json"))
        .await
        .expect("retryable");
    assert_eq!(
        failed_ids(&retryable),
        vec!["2f0d0f3e-0003-4c6b-9d55-000000000003"]
    );
}
