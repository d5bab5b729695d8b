//! How a tenant's records of one type are spread over partition keys
//! (`store::RECORD_SHARDS`): every shard takes its share, listings merge
//! them in id order, and a store written before shards is moved to them.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use futures_util::TryStreamExt;
use serde_json::json;
use syncline::model::{Cursor, SourceId, Timestamp};
use syncline::store::{
    Change, DeliveryStatus, LedgerEntry, LedgerWrite, PageToken, RECORD_SHARDS, Tidied,
};
use syncline_tests::{data, entity, id, stored, tenant};

fn source(raw: &str) -> SourceId {
    SourceId::parse(raw).expect("source")
}

/// Every item of the raw table.
async fn scan_all(t: &syncline_tests::TestStore) -> Vec<HashMap<String, AttributeValue>> {
    let mut items = Vec::new();
    let mut pages = t
        .store
        .client()
        .scan()
        .table_name(t.store.table())
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        items.extend(page.expect("scan").items.unwrap_or_default());
    }
    items
}

/// Records per partition key, from a Scan of the raw table.
async fn records_per_partition(t: &syncline_tests::TestStore) -> BTreeMap<String, usize> {
    let mut per = BTreeMap::new();
    for item in scan_all(t).await {
        if item["sk"].as_s().expect("sk").starts_with("R#") {
            *per.entry(item["pk"].as_s().expect("pk").clone())
                .or_default() += 1;
        }
    }
    per
}

/// 1,600 records written by a bulk upsert land evenly on the 16 partition
/// keys of their tenant and type (so DynamoDB's 1,000 write units a second
/// per key bound a full sync at 16 times that), and listings of any page
/// size, whole or over an id range, merge the shards back in id order;
/// read unordered, each shard is paged on its own.
#[tokio::test]
async fn one_type_s_records_spread_over_every_shard_and_list_back_in_id_order() {
    let t = syncline_tests::test_store().await;
    let acme = tenant("acme");
    let job = entity("job");
    let ids: Vec<String> = (0..1600).map(|i| format!("job-{i:05}")).collect();
    for chunk in ids.chunks(800) {
        let changes = chunk
            .iter()
            .map(|i| (id(i), Change::Put(data(json!({"n": i})))))
            .collect();
        t.store
            .upsert_batch(&acme, &job, None, changes, &syncline_tests::trail())
            .await
            .expect("written");
    }

    let per = records_per_partition(&t).await;
    assert_eq!(per.len(), RECORD_SHARDS as usize, "{per:?}");
    let share = 1600 / RECORD_SHARDS as usize;
    for (pk, count) in &per {
        assert!(pk.starts_with("T#acme#R#job#"), "{pk}");
        assert!(
            (share * 7 / 10..=share * 13 / 10).contains(count),
            "{pk} holds {count} of 1,600: {per:?}"
        );
    }

    for limit in [1, 7, 100, 1000] {
        // Limit 1 for the first pages only: 16 queries a page.
        let pages = if limit == 1 { 40 } else { usize::MAX };
        let mut seen = Vec::new();
        let mut after = None;
        for _ in 0..pages {
            let page = t
                .store
                .list_records(&acme, &job, limit, after.as_ref())
                .await
                .expect("page");
            assert!(page.items.len() <= limit as usize);
            seen.extend(page.items.into_iter().map(|r| r.id.to_string()));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let wanted = &ids[..ids.len().min(pages)];
        assert!(seen == wanted, "limit {limit}: {} listed", seen.len());
    }

    // A token naming this listing but no record key is refused as the
    // caller's mistake, before DynamoDB would refuse the queries.
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"pk": "T#acme#R#job", "sk": "ZZZ"}).to_string());
    let forged = PageToken::parse(&forged).expect("a well-formed token");
    assert!(matches!(
        t.store.list_records(&acme, &job, 10, Some(&forged)).await,
        Err(syncline::Error::Validation { .. })
    ));

    // Every head once, the shards paged on their own at once.
    let mut pages = t.store.record_heads_unordered(&acme, &job);
    let mut heads = Vec::new();
    let mut page_count = 0;
    while let Some(page) = pages.try_next().await.expect("heads page") {
        page_count += 1;
        heads.extend(page.into_iter().map(|r| {
            assert!(r.data.is_empty(), "a head carries no data");
            r.id.to_string()
        }));
    }
    heads.sort();
    assert_eq!(heads, ids);
    assert_eq!(page_count, RECORD_SHARDS, "one page of up to 250 per shard");

    let mut range = Vec::new();
    let mut after = None;
    loop {
        let page = t
            .store
            .list_record_marks(
                &acme,
                &job,
                "job-01000",
                Some("job-01500"),
                64,
                after.as_ref(),
            )
            .await
            .expect("range page");
        range.extend(page.items.into_iter().map(|m| m.id.to_string()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(range, ids[1000..1500]);
}

/// A store written before feed entries and shards (records numbered by
/// their `ord` index attribute, no entries, one partition key per tenant
/// and entity type, per destination's ledger and per paired source's
/// links): the upgrade the local run makes at start gives every record its
/// entry and moves every item to its shard, so pulls, listings and reads
/// find them all, and a second run finds nothing left to do.
#[tokio::test]
async fn a_store_written_before_feed_entries_and_shards_is_upgraded_without_losing_a_record() {
    let t = syncline_tests::test_store().await;
    let acme = tenant("acme");
    let property = entity("property");
    let changes: Vec<_> = (0..130)
        .map(|i| (id(&format!("p{i:03}")), Change::Put(data(json!({"i": i})))))
        .collect();
    t.store
        .upsert_batch(&acme, &property, None, changes, &syncline_tests::trail())
        .await
        .expect("written");
    // Delivered to a destination, one of them created there by a paired
    // destination (its link).
    let writes: Vec<LedgerWrite> = ["p000", "p001", "p002"]
        .iter()
        .map(|record| LedgerWrite {
            entry: LedgerEntry {
                entity: property.clone(),
                id: id(record),
                status: DeliveryStatus::Delivered,
                version: 1,
                delivered_version: 1,
                hash: None,
                external_id: Some(format!("ev-{record}")),
                attempts: 0,
                last_error: None,
                reason: None,
                updated_at: Timestamp::now(),
            },
            read: None,
            link: (*record == "p001").then(|| (source("gcal"), "ev-p001".to_owned())),
        })
        .collect();
    let not_written = t
        .store
        .ledger_put_many("calendar", &writes)
        .await
        .expect("ledger");
    assert!(not_written.is_empty());
    // Back to the earlier layout: `seq` as `ord`, the feed entries gone,
    // every record under one partition key, and so every ledger entry of a
    // destination and every link of a paired source.
    let client = t.store.client();
    let items = scan_all(&t).await;
    let mut entries = 0;
    for item in items {
        let pk = item["pk"].as_s().expect("pk").clone();
        let sk = item["sk"].as_s().expect("sk").clone();
        let unsharded = if pk.starts_with("DL#calendar#") {
            "D#calendar"
        } else if pk.starts_with("KL#gcal#") {
            "K#gcal"
        } else {
            "T#acme#E#property"
        };
        if sk.starts_with("R#") || sk.starts_with("E#") {
            let mut old = item.clone();
            old.insert("pk".into(), AttributeValue::S(unsharded.into()));
            if let Some(seq) = old.remove("seq") {
                old.insert("ord".into(), seq);
            }
            client
                .put_item()
                .table_name(t.store.table())
                .set_item(Some(old))
                .send()
                .await
                .expect("old layout");
        } else if !pk.starts_with("F#") {
            continue;
        }
        // The feed entries, and the sharded copies.
        client
            .delete_item()
            .table_name(t.store.table())
            .key("pk", AttributeValue::S(pk.clone()))
            .key("sk", AttributeValue::S(sk))
            .send()
            .await
            .expect("deleted");
        entries += usize::from(pk.starts_with("F#"));
    }
    assert!(entries >= 1);
    let entities = std::slice::from_ref(&property);
    let before = t
        .store
        .changes_since(&acme, entities, Cursor::START, 1000)
        .await;
    assert!(
        before.is_err() || before.as_ref().is_ok_and(|c| c.records.is_empty()),
        "the earlier layout is not read as it is"
    );

    assert!(
        stored(&t.store, "acme", "property", "p000").await.is_none(),
        "the earlier layout is not read as it is"
    );

    let upgraded = t.store.tidy_at_start().await.expect("upgrade");
    // 130 records, 3 ledger entries, 1 link.
    assert_eq!((upgraded.moved, upgraded.resharded), (130, 134));
    assert_eq!(
        t.store.tidy_at_start().await.expect("again"),
        Tidied::default()
    );
    let feed = t
        .store
        .changes_since(&acme, entities, Cursor::START, 1000)
        .await
        .expect("feed");
    let seqs: Vec<u64> = feed.records.iter().map(|r| r.seq.get()).collect();
    assert_eq!(seqs, (1..=130).collect::<Vec<_>>());
    assert!(!feed.has_more);
    let listed = t
        .store
        .list_records(&acme, &property, 1000, None)
        .await
        .expect("list");
    let ids: Vec<String> = listed.items.iter().map(|r| r.id.to_string()).collect();
    let expected: Vec<String> = (0..130).map(|i| format!("p{i:03}")).collect();
    assert_eq!((ids, listed.next), (expected, None));
    let p007 = stored(&t.store, "acme", "property", "p007")
        .await
        .expect("found at its shard");
    assert_eq!(p007.data, data(json!({"i": 7})));
    let delivered = t
        .store
        .ledger_list("calendar", 2, None)
        .await
        .expect("ledger page");
    let rest = t
        .store
        .ledger_list("calendar", 2, delivered.next.as_ref())
        .await
        .expect("ledger page");
    let listed: Vec<String> = delivered
        .items
        .iter()
        .chain(&rest.items)
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(listed, ["p000", "p001", "p002"]);
    let ledgered = t
        .store
        .ledger_get("calendar", &property, &id("p002"))
        .await
        .expect("ledger get")
        .expect("found at its shard");
    assert_eq!(ledgered.entry.external_id.as_deref(), Some("ev-p002"));
    let links = t
        .store
        .links_get_many(&source("gcal"), &["ev-p001"])
        .await
        .expect("links");
    assert_eq!(links["ev-p001"], (property.clone(), id("p001")));
    for item in &scan_all(&t).await {
        let pk = item["pk"].as_s().expect("pk");
        assert!(
            !pk.contains("#E#") && !pk.starts_with("D#") && !pk.starts_with("K#"),
            "left under its old key: {item:?}"
        );
        if pk.starts_with("T#acme#R#") {
            assert!(item.contains_key("seq") && !item.contains_key("ord"));
        }
    }
}
