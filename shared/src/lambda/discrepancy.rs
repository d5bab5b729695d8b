//! discrepancy-check's events: a schedule (every source) or an on-demand
//! invocation naming sources, optionally repairing what it finds.

use lambda_runtime::LambdaEvent;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::discrepancy::DiscrepancyChecker;
use crate::ingest::SyncEngine;
use crate::model::SourceId;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Detail {
    /// Sources to check; every configured one when absent.
    #[serde(default)]
    sources: Option<Vec<SourceId>>,
    /// Queue force-syncs for what is found.
    #[serde(default)]
    repair: bool,
}

pub async fn handle_check(
    engine: &SyncEngine,
    checker: &DiscrepancyChecker,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let detail: Detail = super::event_detail(&event.payload)?;
    let sources = detail
        .sources
        .unwrap_or_else(|| engine.sources().ids().cloned().collect());
    let mut reports = Vec::new();
    for source in sources {
        reports.push(checker.check(&source, detail.repair).await?);
    }
    Ok(json!({"reports": reports}))
}
