//! The fault proxy as a stand-in for DynamoDB's bill: what the benchmarks
//! print as capacity units, per request and per partition key, must follow
//! DynamoDB's rules (`syncline_tests::capacity`).

use syncline_tests::faults::FaultProxy;

/// The proxy's costing, through the SDK and the engine answering in
/// process: a put is billed per KB (2 units for 1.5 KB), a read per 4 KB,
/// a key read but not found the smallest read (1 unit), alone or in a
/// batch, an item written in a transaction twice, as DynamoDB bills them;
/// each write's units fall on the partition key it wrote; and statement
/// batches a sinking proxy answers are billed but not applied.
#[tokio::test]
async fn the_proxy_bills_requests_by_dynamodb_s_rules() {
    use aws_sdk_dynamodb::types::{
        AttributeValue, BatchStatementRequest, KeysAndAttributes, Put, TransactWriteItem, Update,
    };
    use syncline::store::Store;
    use syncline_local::embedded::{EmbeddedEngine, Storage};

    let engine = EmbeddedEngine::start(Storage::Memory, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("engine");
    let proxy = FaultProxy::start(5).await;
    proxy.answer_with(engine.answerer());
    let config = engine.sdk_config_via(&proxy.url()).await;
    Store::from_sdk_config(&config, "billed")
        .ensure_table()
        .await
        .expect("table");
    let client = aws_sdk_dynamodb::Client::new(&config);
    let key = |sk: &str| {
        [
            ("pk".to_owned(), AttributeValue::S("t".into())),
            ("sk".to_owned(), AttributeValue::S(sk.into())),
        ]
        .into_iter()
        .collect::<std::collections::HashMap<_, _>>()
    };
    proxy.count_units();
    proxy.take();
    let mut small = key("small");
    small.insert("blob".into(), AttributeValue::S("x".repeat(1500)));
    let mut large = key("large");
    large.insert("blob".into(), AttributeValue::S("y".repeat(5000)));
    for item in [small, large] {
        client
            .put_item()
            .table_name("billed")
            .set_item(Some(item))
            .send()
            .await
            .expect("put");
    }
    let missing = client
        .get_item()
        .table_name("billed")
        .set_key(Some(key("missing")))
        .consistent_read(true)
        .send()
        .await
        .expect("get");
    assert!(missing.item.is_none());
    let keys = KeysAndAttributes::builder()
        .set_keys(Some(vec![key("large"), key("gone-1"), key("gone-2")]))
        .consistent_read(true)
        .build()
        .expect("keys");
    let batch = client
        .batch_get_item()
        .request_items("billed", keys)
        .send()
        .await
        .expect("batch");
    assert_eq!(batch.responses.expect("responses")["billed"].len(), 1);
    let mut other = key("other");
    other.insert("pk".into(), AttributeValue::S("u".into()));
    client
        .transact_write_items()
        .transact_items(
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name("billed")
                        .set_item(Some(other))
                        .build()
                        .expect("put"),
                )
                .build(),
        )
        .transact_items(
            TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name("billed")
                        .set_key(Some(key("small")))
                        .update_expression("SET n = :n")
                        .expression_attribute_values(":n", AttributeValue::N("1".into()))
                        .build()
                        .expect("update"),
                )
                .build(),
        )
        .send()
        .await
        .expect("transaction");
    let statement = BatchStatementRequest::builder()
        .statement("INSERT INTO \"billed\" VALUE {'pk': ?, 'sk': ?}")
        .parameters(AttributeValue::S("v".into()))
        .parameters(AttributeValue::S("one".into()))
        .build()
        .expect("statement");
    client
        .batch_execute_statement()
        .statements(statement)
        .send()
        .await
        .expect("statement");
    let seen = proxy.take();
    let billed: Vec<(&str, f64, f64)> = seen
        .iter()
        .map(|s| (s.operation.as_str(), s.units.write, s.units.read))
        .collect();
    assert_eq!(
        billed,
        [
            ("PutItem", 2.0, 0.0),
            ("PutItem", 5.0, 0.0),
            ("GetItem", 0.0, 1.0),
            // The 5 KB item is 2 units; each key not found, 1.
            ("BatchGetItem", 0.0, 4.0),
            // Each item written in a transaction is billed twice.
            ("TransactWriteItems", 4.0, 0.0),
            ("BatchExecuteStatement", 1.0, 0.0),
        ]
    );
    // Write units by the partition key they fell on.
    let writes: Vec<(String, f64)> = seen.iter().flat_map(|s| s.writes.clone()).collect();
    let on = |pk: &str, units: f64| (pk.to_owned(), units);
    assert_eq!(
        writes,
        [
            on("t", 2.0),
            on("t", 5.0),
            on("u", 2.0),
            on("t", 2.0),
            on("v", 1.0)
        ]
    );
    assert_eq!(
        FaultProxy::busiest_partitions(&seen, 2),
        [on("t", 9.0), on("u", 2.0)]
    );

    // A sinking proxy answers statement batches as if every statement
    // succeeded, bills them, and applies nothing.
    proxy.sink_statements(true);
    let insert = |sk: &str| {
        BatchStatementRequest::builder()
            .statement("INSERT INTO \"billed\" VALUE {'pk': ?, 'sk': ?}")
            .parameters(AttributeValue::S("w".into()))
            .parameters(AttributeValue::S(sk.into()))
            .build()
            .expect("statement")
    };
    let answered = client
        .batch_execute_statement()
        .statements(insert("one"))
        .statements(insert("two"))
        .send()
        .await
        .expect("sunk");
    proxy.sink_statements(false);
    let answers = answered.responses.expect("responses");
    assert_eq!(answers.len(), 2);
    assert!(answers.iter().all(|a| a.error.is_none()));
    let stored = client
        .get_item()
        .table_name("billed")
        .set_key(Some(
            [("pk", "w"), ("sk", "one")]
                .map(|(k, v)| (k.to_owned(), AttributeValue::S(v.into())))
                .into_iter()
                .collect(),
        ))
        .consistent_read(true)
        .send()
        .await
        .expect("get");
    assert!(stored.item.is_none(), "a sunk statement applies nothing");
    let sunk = proxy.take();
    assert_eq!(sunk[0].writes, [on("w", 1.0), on("w", 1.0)]);
}
