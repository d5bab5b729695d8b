//! The retry queue's contract, run on both adapters: the local queue on the
//! embedded store, and SQS on moto's server.

use std::time::Duration;

use syncline::Error;
use syncline::queue::{LocalQueue, RetryQueue, SqsQueue, create_sqs_queues};
use syncline_tests::{TestStore, moto, test_store};

/// Receives before a message is dead-lettered, in every contract queue.
const MAX_RECEIVES: u32 = 2;
const NO_WAIT: Duration = Duration::ZERO;

/// A queue under test and whatever must live as long as it.
struct Harness {
    queue: Box<dyn RetryQueue>,
    _store: Option<TestStore>,
}

async fn local() -> Harness {
    let t = test_store().await;
    let queue = LocalQueue::new(t.store.clone(), "retry", MAX_RECEIVES).expect("queue");
    Harness {
        queue: Box::new(queue),
        _store: Some(t),
    }
}

async fn sqs() -> Harness {
    let client = moto().sqs_client().await;
    let name = format!("retry-{}", uuid::Uuid::new_v4().simple());
    let (url, _dead_letter_url) = create_sqs_queues(&client, &name, MAX_RECEIVES)
        .await
        .expect("queues created");
    // The dead-letter queue is found through the redrive policy, as in AWS.
    let queue = SqsQueue::connect(client, &url, None)
        .await
        .expect("connect");
    Harness {
        queue: Box::new(queue),
        _store: None,
    }
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test]
                async fn local_queue() {
                    super::$case(&*super::local().await.queue).await;
                }

                #[tokio::test]
                async fn sqs_queue() {
                    super::$case(&*super::sqs().await.queue).await;
                }
            }
        )*
    };
}

contract!(
    a_sent_message_is_received_once_and_gone_after_delete,
    a_delayed_message_stays_invisible_until_its_delay_passes,
    a_received_message_reappears_after_its_visibility_timeout,
    changing_visibility_to_zero_makes_a_message_visible_now,
    a_message_received_too_often_moves_to_the_dead_letter_queue_and_can_be_redriven,
    redrive_by_id_moves_only_the_named_dead_letters,
    oversized_bodies_and_overlong_delays_are_refused,
    a_visibility_longer_than_fifteen_minutes_is_accepted,
);

async fn a_visibility_longer_than_fifteen_minutes_is_accepted(queue: &dyn RetryQueue) {
    queue.send("later", Duration::ZERO).await.expect("send");
    let received = queue
        .receive(1, Duration::from_secs(30), Duration::from_secs(2))
        .await
        .expect("receive");
    assert_eq!(received.len(), 1);
    queue
        .change_visibility(&received[0].receipt, Duration::from_secs(2 * 3600))
        .await
        .expect("two hours is allowed");
    assert!(
        queue
            .receive(1, Duration::from_secs(30), NO_WAIT)
            .await
            .expect("receive")
            .is_empty()
    );
    assert!(matches!(
        queue
            .change_visibility(&received[0].receipt, Duration::from_secs(13 * 3600))
            .await,
        Err(Error::Validation { .. })
    ));
}

async fn a_sent_message_is_received_once_and_gone_after_delete(queue: &dyn RetryQueue) {
    let id = queue
        .send(r#"{"kind":"webhook"}"#, Duration::ZERO)
        .await
        .expect("send");
    let received = queue
        .receive(10, Duration::from_secs(30), Duration::from_secs(2))
        .await
        .expect("receive");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].id, id);
    assert_eq!(received[0].body, r#"{"kind":"webhook"}"#);
    assert_eq!(received[0].receive_count, 1);

    // Hidden from other receivers while it is being worked on.
    assert!(
        queue
            .receive(10, Duration::from_secs(30), NO_WAIT)
            .await
            .expect("receive")
            .is_empty()
    );

    queue.delete(&received[0].receipt).await.expect("delete");
    queue
        .change_visibility(&received[0].receipt, Duration::ZERO)
        .await
        .ok();
    assert!(
        queue
            .receive(10, Duration::from_secs(30), NO_WAIT)
            .await
            .expect("receive")
            .is_empty()
    );
    assert!(
        queue
            .dead_letters(10)
            .await
            .expect("dead letters")
            .is_empty()
    );
}

async fn a_delayed_message_stays_invisible_until_its_delay_passes(queue: &dyn RetryQueue) {
    queue
        .send("later", Duration::from_secs(2))
        .await
        .expect("send");
    assert!(
        queue
            .receive(10, Duration::from_secs(30), NO_WAIT)
            .await
            .expect("receive")
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let received = queue
        .receive(10, Duration::from_secs(30), Duration::from_secs(2))
        .await
        .expect("receive");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body, "later");
}

async fn a_received_message_reappears_after_its_visibility_timeout(queue: &dyn RetryQueue) {
    let id = queue.send("work", Duration::ZERO).await.expect("send");
    let first = queue
        .receive(1, Duration::from_secs(1), Duration::from_secs(2))
        .await
        .expect("receive");
    assert_eq!(first.len(), 1);
    assert!(
        queue
            .receive(1, Duration::from_secs(1), NO_WAIT)
            .await
            .expect("receive")
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = queue
        .receive(1, Duration::from_secs(1), Duration::from_secs(2))
        .await
        .expect("receive");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].id, id);
    assert_eq!(second[0].receive_count, 2);
    assert_ne!(second[0].receipt, first[0].receipt);
}

async fn changing_visibility_to_zero_makes_a_message_visible_now(queue: &dyn RetryQueue) {
    queue.send("work", Duration::ZERO).await.expect("send");
    let first = queue
        .receive(1, Duration::from_secs(60), Duration::from_secs(2))
        .await
        .expect("receive");
    assert_eq!(first.len(), 1);
    queue
        .change_visibility(&first[0].receipt, Duration::ZERO)
        .await
        .expect("change visibility");
    let again = queue
        .receive(1, Duration::from_secs(60), Duration::from_secs(2))
        .await
        .expect("receive");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, first[0].id);
    assert_eq!(again[0].receive_count, 2);
}

async fn a_message_received_too_often_moves_to_the_dead_letter_queue_and_can_be_redriven(
    queue: &dyn RetryQueue,
) {
    queue.send("poison", Duration::ZERO).await.expect("send");
    for attempt in 1..=MAX_RECEIVES {
        let received = queue
            .receive(1, Duration::ZERO, Duration::from_secs(2))
            .await
            .expect("receive");
        assert_eq!(received.len(), 1, "attempt {attempt}");
        assert_eq!(received[0].receive_count, attempt);
    }
    // One receive too many: the message goes to the dead-letter queue.
    assert!(
        queue
            .receive(1, Duration::ZERO, Duration::from_secs(1))
            .await
            .expect("receive")
            .is_empty()
    );
    let dead = queue.dead_letters(10).await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "poison");
    // Listing does not consume them.
    assert_eq!(queue.dead_letters(10).await.expect("dead letters").len(), 1);

    assert_eq!(queue.redrive(None).await.expect("redrive"), 1);
    assert!(
        queue
            .dead_letters(10)
            .await
            .expect("dead letters")
            .is_empty()
    );
    let back = queue
        .receive(1, Duration::from_secs(30), Duration::from_secs(2))
        .await
        .expect("receive");
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].body, "poison");
    assert_eq!(back[0].receive_count, 1, "a redriven message starts over");
}

async fn redrive_by_id_moves_only_the_named_dead_letters(queue: &dyn RetryQueue) {
    for body in ["a", "b", "c"] {
        queue.send(body, Duration::ZERO).await.expect("send");
    }
    // Receive everything until all three are dead-lettered.
    for _ in 0..10 {
        let got = queue
            .receive(10, Duration::ZERO, Duration::from_millis(200))
            .await
            .expect("receive");
        if got.is_empty() && queue.dead_letters(10).await.expect("list").len() == 3 {
            break;
        }
    }
    let dead = queue.dead_letters(10).await.expect("dead letters");
    assert_eq!(dead.len(), 3);
    assert_eq!(queue.dead_letter_count().await.expect("count"), 3);
    let b = dead.iter().find(|d| d.body == "b").expect("b is dead");
    assert_eq!(
        queue
            .redrive(Some(std::slice::from_ref(&b.id)))
            .await
            .expect("redrive"),
        1
    );
    let mut left: Vec<String> = queue
        .dead_letters(10)
        .await
        .expect("dead letters")
        .into_iter()
        .map(|d| d.body)
        .collect();
    left.sort();
    assert_eq!(left, vec!["a", "c"]);
    assert_eq!(queue.dead_letter_count().await.expect("count"), 2);
    let back = queue
        .receive(10, Duration::from_secs(30), Duration::from_secs(2))
        .await
        .expect("receive");
    assert_eq!(
        back.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        vec!["b"]
    );
}

async fn oversized_bodies_and_overlong_delays_are_refused(queue: &dyn RetryQueue) {
    let big = "x".repeat(256 * 1024 + 1);
    assert!(matches!(
        queue.send(&big, Duration::ZERO).await,
        Err(Error::Validation { .. })
    ));
    assert!(matches!(
        queue.send("x", Duration::from_secs(901)).await,
        Err(Error::Validation { .. })
    ));
    assert!(
        queue
            .receive(10, Duration::ZERO, NO_WAIT)
            .await
            .expect("receive")
            .is_empty()
    );
}
