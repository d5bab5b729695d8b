//! scheduled-sync's events: an EventBridge schedule (or an on-demand
//! invocation) naming sources or "all due", and SQS batches of
//! continuation messages.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::LambdaEvent;
use serde::Deserialize;
use serde_json::{Value, json};

use super::sqs::handle_retry_batch;
use crate::ingest::{RunRequest, SyncEngine, Trigger};
use crate::model::{RunKind, SourceId, Timestamp};
use crate::wiring::ScheduledSync;

/// The `detail` of a schedule event.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Detail {
    /// Sources to run; all due sources when absent.
    #[serde(default)]
    sources: Option<Vec<SourceId>>,
    /// `full` or `incremental`; the engine chooses when absent.
    #[serde(default)]
    kind: Option<RunKind>,
    /// `manual` for on-demand runs.
    #[serde(default)]
    trigger: Option<Trigger>,
}

pub async fn handle_schedule(
    sync: &ScheduledSync,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let engine: &SyncEngine = &sync.engine;
    let (payload, context) = event.into_parts();
    if payload.get("Records").is_some() {
        let sqs: SqsEvent = serde_json::from_value(payload)?;
        let response = handle_retry_batch(&sync.worker, LambdaEvent::new(sqs, context)).await?;
        return Ok(serde_json::to_value(response)?);
    }
    let deadline = Timestamp::from_millis(i64::try_from(context.deadline).unwrap_or(0));
    let detail: Detail = super::event_detail(&payload)?;
    let sources = match detail.sources {
        Some(sources) => sources,
        None => engine.due(Timestamp::now()).await?,
    };
    let mut runs = Vec::new();
    let mut busy = Vec::new();
    for source in sources {
        let request = RunRequest {
            source: source.clone(),
            kind: detail.kind,
            trigger: detail.trigger.unwrap_or(Trigger::Schedule),
        };
        match engine.run(&request, deadline).await? {
            Some(log) => runs.push(log),
            None => busy.push(source),
        }
    }
    // The console's sample of the minute; a failed sample costs a gap in
    // its charts, not the tick.
    if let Err(err) = sync.sampler.take().await {
        tracing::warn!(error = %err.chain(), "taking the console's sample failed");
    }
    Ok(json!({"runs": runs, "busy": busy}))
}
