//! Destinations: the outbound half. Each destination reads its tenant's
//! change feed from its own cursor (the feed is the outbox: nothing
//! committed is missed, nothing needs a second write path) and writes to a
//! Redis cache, an outbound webhook endpoint or a JSON API, exactly once
//! per version, never echoing a change back to the system it came from
//! (docs/DESTINATIONS.md).

mod config;
mod destination;
mod engine;
mod events;
mod handler;
mod http;
mod ledger;
mod redis;
mod target;
mod webhook;

pub use config::{ActionSpec, DestinationSpec, DestinationsDocument, HttpSpec, KindSpec};
pub use destination::{Destination, DestinationState};
pub use engine::{Delivered, DeliveryEngine, DeliveryWork, RunSummary, delivery_key};
pub use events::{EVENT_ENTITY, publish};
pub use handler::DeliveryHandler;
pub use redis::RedisTarget;
pub use target::{Applied, Outbound, Target};
pub use webhook::sign;
