//! Real time: clients hold a WebSocket and are told, with no data, that
//! their tenant's feed moved past a cursor (a poke); they then pull, so
//! the pull stays the one source of truth and a lost poke costs only
//! latency (docs/PROTOCOL.md, "Real time").
//!
//! - `connect`: the handshake (the sync API's bearer token, from a query
//!   parameter or the `Sec-WebSocket-Protocol` header) and the connection
//!   items it leaves in the table;
//! - `poke`: the fan-out of a tenant's commits to its connections, each
//!   told only of entity types its token may read;
//! - `channel`: the port that reaches a connection: API Gateway's
//!   management API deployed, the local run's sockets on a laptop.

mod channel;
mod connect;
mod poke;

pub use channel::{ApiGatewayChannel, Channel, Sent};
pub use connect::{CONNECTION_TTL, Handshake, PROTOCOL, Realtime};
pub use poke::{PokeSummary, Poker, Touched, touched_by_stream};
