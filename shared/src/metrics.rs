//! Metrics in CloudWatch Embedded Metric Format: one JSON line on stdout
//! per event, which CloudWatch Logs turns into metrics in the `syncline`
//! namespace, dimensioned by function and (where there is one) source.

use serde_json::{Map, Value, json};

use crate::model::Timestamp;

pub const NAMESPACE: &str = "syncline";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
        }
    }
}

/// The EMF document for `metrics` with `dimensions`. With more than one
/// dimension, the metrics are also published under the first one alone
/// (per function across sources), which the alarms in `infra/` watch.
pub fn document(dimensions: &[(&str, &str)], metrics: &[(&str, f64, Unit)]) -> Value {
    let mut sets = vec![dimensions.iter().map(|(k, _)| *k).collect::<Vec<_>>()];
    if dimensions.len() > 1 {
        sets.push(vec![dimensions[0].0]);
    }
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": Timestamp::now().as_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": sets,
                "Metrics": metrics.iter().map(|(name, _, unit)| json!({"Name": name, "Unit": unit.name()})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (key, value) in dimensions {
        root.insert((*key).to_owned(), json!(value));
    }
    for (name, value, _) in metrics {
        root.insert((*name).to_owned(), json!(value));
    }
    Value::Object(root)
}

static SILENCED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Stops printing metrics in this process (the local all-in-one run, whose
/// stdout is for people).
pub fn silence() {
    SILENCED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Prints the EMF line. Lambda ships stdout to CloudWatch Logs.
pub fn emit(dimensions: &[(&str, &str)], metrics: &[(&str, f64, Unit)]) {
    if metrics.is_empty() || SILENCED.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    println!("{}", document(dimensions, metrics));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_follow_the_embedded_metric_format() {
        let doc = document(
            &[("function", "scheduled-sync"), ("source", "zoho")],
            &[
                ("RecordsSynced", 42.0, Unit::Count),
                ("RunDuration", 1500.0, Unit::Milliseconds),
            ],
        );
        let spec = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(spec["Namespace"], json!("syncline"));
        assert_eq!(
            spec["Dimensions"],
            json!([["function", "source"], ["function"]]),
            "per source, and per function across sources"
        );
        assert_eq!(
            spec["Metrics"][1],
            json!({"Name": "RunDuration", "Unit": "Milliseconds"})
        );
        assert_eq!(doc["RecordsSynced"], json!(42.0));
        assert_eq!(doc["source"], json!("zoho"));
        assert!(doc["_aws"]["Timestamp"].as_i64().is_some_and(|t| t > 0));
    }
}
