//! Every sample event is run through its function by a test; this keeps the
//! list honest: a sample nobody runs, or a listed sample that is gone, fails.

use std::collections::BTreeSet;

/// The samples the per-function tests run (see each module's
/// `every_sample_event_...` / `the_sample_events_...` test).
const RUN_BY_TESTS: &[(&str, &str)] = &[
    ("admin-api", "dead-letters"),
    ("admin-api", "forbidden"),
    ("admin-api", "health"),
    ("admin-api", "runs"),
    ("admin-api", "settings-change"),
    ("admin-api", "status"),
    ("admin-api", "sync-now"),
    ("delivery", "schedule"),
    ("delivery", "stream"),
    ("discrepancy-check", "on-demand"),
    ("realtime", "connect"),
    ("realtime", "connect-browser"),
    ("realtime", "connect-no-token"),
    ("realtime", "disconnect"),
    ("realtime", "message"),
    ("discrepancy-check", "schedule"),
    ("retry-worker", "good"),
    ("retry-worker", "mixed-batch"),
    ("retry-worker", "poison"),
    ("retry-worker", "retryable"),
    ("scheduled-sync", "continuation"),
    ("scheduled-sync", "on-demand"),
    ("scheduled-sync", "schedule"),
    ("sync-api", "conflict"),
    ("sync-api", "conflicts"),
    ("sync-api", "legacy-pull"),
    ("sync-api", "legacy-pull-pending"),
    ("sync-api", "legacy-push"),
    ("sync-api", "pull"),
    ("sync-api", "push"),
    ("sync-api", "unauthorized"),
    ("webhook", "calendly-duplicate"),
    ("webhook", "calendly-invitee-canceled"),
    ("webhook", "calendly-invitee-created"),
    ("webhook", "generic-product-updated"),
    ("webhook", "standard-order-updated"),
    ("webhook", "stripe-charge-refunded-old-secret"),
    ("webhook", "stripe-expired"),
    ("webhook", "stripe-future"),
    ("webhook", "stripe-invalid-payment"),
    ("webhook", "stripe-payment-succeeded"),
    ("webhook", "stripe-tampered"),
    ("webhook", "unknown-source"),
];

/// Configuration documents that live beside the samples.
const DOCUMENTS: &[&str] = &["sources.json", "entities.json"];

#[test]
fn every_sample_event_is_run_by_a_test_and_every_listed_one_exists() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../events");
    let mut found = BTreeSet::new();
    for function in std::fs::read_dir(root).expect("events/") {
        let function = function.expect("entry");
        let name = function.file_name().to_string_lossy().into_owned();
        for file in std::fs::read_dir(function.path()).expect("a function's samples") {
            let file = file
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            if let Some(case) = file.strip_suffix(".json")
                && !DOCUMENTS.contains(&file.as_str())
            {
                found.insert((name.clone(), case.to_owned()));
            }
        }
    }
    let listed: BTreeSet<(String, String)> = RUN_BY_TESTS
        .iter()
        .map(|(f, c)| ((*f).to_owned(), (*c).to_owned()))
        .collect();
    let unrun: Vec<_> = found.difference(&listed).collect();
    let gone: Vec<_> = listed.difference(&found).collect();
    assert!(unrun.is_empty(), "samples no test runs: {unrun:?}");
    assert!(
        gone.is_empty(),
        "listed samples that do not exist: {gone:?}"
    );
    // Every function crate has samples.
    let functions: BTreeSet<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../functions"))
            .expect("functions/")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
    let with_samples: BTreeSet<String> = found.iter().map(|(f, _)| f.clone()).collect();
    assert_eq!(functions, with_samples);
}
