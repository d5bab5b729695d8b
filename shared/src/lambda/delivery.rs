//! delivery's events: a DynamoDB Streams batch or the backstop schedule.
//! A stream batch names the tenants and entity types that changed: their
//! real-time connections are poked first. Then every destination reads
//! the change feed from its own cursor, so for them the batch is only a
//! wake-up (a lost or repeated batch costs nothing but latency).

use lambda_runtime::LambdaEvent;
use serde_json::{Value, json};

use crate::delivery::DeliveryEngine;
use crate::model::Timestamp;
use crate::realtime::{Poker, touched_by_stream};

pub async fn handle_delivery(
    engine: &DeliveryEngine,
    poker: Option<&Poker>,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let pokes = match poker {
        Some(poker) => Some(poker.poke(&touched_by_stream(&event.payload)).await?),
        None => None,
    };
    let deadline = match event.context.deadline {
        0 => Timestamp::now().plus(std::time::Duration::from_secs(60)),
        ms => Timestamp::from_millis(ms as i64),
    };
    let runs = engine.deliver_all(deadline).await?;
    Ok(json!({"runs": runs, "pokes": pokes}))
}
