//! delivery's events: a DynamoDB Streams batch or the backstop schedule.
//! Either only wakes it: every destination reads the change feed from its
//! own cursor, so the stream records themselves are not read (a lost or
//! repeated batch costs nothing but a wake-up).

use lambda_runtime::LambdaEvent;
use serde_json::{Value, json};

use crate::delivery::DeliveryEngine;
use crate::model::Timestamp;

pub async fn handle_delivery(
    engine: &DeliveryEngine,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let deadline = match event.context.deadline {
        0 => Timestamp::now().plus(std::time::Duration::from_secs(60)),
        ms => Timestamp::from_millis(ms as i64),
    };
    let runs = engine.deliver_all(deadline).await?;
    Ok(json!({"runs": runs}))
}
