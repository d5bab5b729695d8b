//! The embedded default as functions use it: adapters built from the
//! configuration, data kept under `SYNCLINE_DATA_DIR`, and several adapter
//! sets sharing one store endpoint the way local function processes do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use syncline::Config;
use syncline::config::{DEFAULT_TABLE, QueueBackend, StoreBackend};
use syncline::model::{EntityType, RecordId, TenantId};
use syncline::runtime::Adapters;
use syncline::store::{Change, Expect, RecordWrite};
use syncline_local::embedded::{EmbeddedEngine, Storage};
use syncline_tests::data;

fn config(vars: &[(&str, &str)]) -> Config {
    let vars: HashMap<&str, &str> = vars.iter().copied().collect();
    Config::from_vars(|name| vars.get(name).map(|v| (*v).to_owned())).expect("valid config")
}

fn booking(id: &str) -> RecordWrite {
    RecordWrite {
        entity: EntityType::parse("booking").expect("entity"),
        id: RecordId::parse(id).expect("id"),
        change: Change::Put(data(json!({"status": "active"}))),
        expect: Expect::Absent,
        source: None,
        origin: None,
        source_version: None,
    }
}

#[tokio::test]
async fn the_embedded_default_keeps_records_and_queued_work_across_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let config = config(&[("SYNCLINE_DATA_DIR", data_dir.to_str().expect("utf-8"))]);
    assert!(matches!(config.store, StoreBackend::Embedded { .. }));
    assert!(matches!(config.queue, QueueBackend::Local { .. }));
    let acme = TenantId::parse("acme").expect("tenant");

    let first = syncline_local::embedded::adapters(&config)
        .await
        .expect("adapters");
    first
        .store
        .put_record(&acme, booking("b1"))
        .await
        .expect("write");
    first
        .queue
        .send("retry me", Duration::ZERO)
        .await
        .expect("send");
    drop(first);
    assert!(data_dir.join("store.db").exists());

    let second = syncline_local::embedded::adapters(&config)
        .await
        .expect("adapters again");
    let record = second
        .store
        .get_record(
            &acme,
            &EntityType::parse("booking").expect("entity"),
            &RecordId::parse("b1").expect("id"),
        )
        .await
        .expect("read");
    assert!(record.is_some(), "the record survived the restart");
    let received = second
        .queue
        .receive(10, Duration::from_secs(30), Duration::from_secs(1))
        .await
        .expect("receive");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body, "retry me");
}

#[tokio::test]
async fn function_processes_pointed_at_one_store_share_records_and_the_retry_queue() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = EmbeddedEngine::start(
        Storage::File(dir.path().join("store.db")),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("engine");
    let sdk = engine.sdk_config().await;
    // What the local store server sets for every function.
    let config = config(&[("SYNCLINE_TABLE", DEFAULT_TABLE)]);
    let webhook = Adapters::with_sdk_config(&config, &sdk)
        .await
        .expect("adapters");
    webhook.store.ensure_table().await.expect("table");
    let worker = Adapters::with_sdk_config(&config, &sdk)
        .await
        .expect("adapters");

    let acme = TenantId::parse("acme").expect("tenant");
    webhook
        .store
        .put_record(&acme, booking("b1"))
        .await
        .expect("write");
    let id = webhook
        .queue
        .send("work", Duration::ZERO)
        .await
        .expect("send");

    assert!(
        worker
            .store
            .get_record(
                &acme,
                &EntityType::parse("booking").expect("entity"),
                &RecordId::parse("b1").expect("id")
            )
            .await
            .expect("read")
            .is_some()
    );
    let received = worker
        .queue
        .receive(10, Duration::from_secs(30), Duration::from_secs(1))
        .await
        .expect("receive");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].id, id);
    // And the first one no longer sees it: one consumer at a time.
    assert!(
        webhook
            .queue
            .receive(10, Duration::from_secs(30), Duration::ZERO)
            .await
            .expect("receive")
            .is_empty()
    );
}

/// `SYNCLINE_BULK_WRITES` picks how the local run writes a sync page's
/// records (transactions unless told `held`); any other value fails the
/// start with a message naming the variable and the choices.
#[test]
fn the_local_run_writes_bulk_changes_in_transactions_unless_told_held() {
    use syncline::store::BulkWrites;
    use syncline_local::run::bulk_writes;
    let pick = |value: Option<&str>| {
        let value = value.map(str::to_owned);
        bulk_writes(&move |name: &str| {
            (name == "SYNCLINE_BULK_WRITES")
                .then(|| value.clone())
                .flatten()
        })
    };
    assert_eq!(pick(None).expect("default"), BulkWrites::Transactions);
    assert_eq!(
        pick(Some("transactions")).expect("transactions"),
        BulkWrites::Transactions
    );
    assert_eq!(pick(Some("held")).expect("held"), BulkWrites::Held);
    let refused = pick(Some("batches")).expect_err("an unknown mode");
    let message = refused.to_string();
    assert!(
        message.contains("SYNCLINE_BULK_WRITES") && message.contains("held"),
        "{message}"
    );
}
