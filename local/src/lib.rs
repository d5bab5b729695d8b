//! syncline on a laptop, with no AWS account: the embedded
//! DynamoDB-compatible store, every function's handlers behind one HTTP
//! port with the schedules and the retry queue's event source emulated, and
//! a demo REST source.
//!
//! Layout:
//! - `embedded`: the dynoxide engine served in-process on 127.0.0.1, and
//!   adapters over it;
//! - `in_process`: the SDK's HTTP client that calls that engine directly,
//!   for the stores of this process;
//! - `run`: the one-process local run (`syncline-local up`): the handlers
//!   built by `syncline::wiring` and the emulated schedules;
//! - `router`: its one HTTP port, with API Gateway's request limits;
//! - `live`: the real-time channel's WebSocket endpoint and pokes;
//! - `demo`: the demo upstream (a paged property API and Calendly, Stripe
//!   and Zoho Creator shapes) the sample configuration points at.
//!
//! None of this is linked into a Lambda binary: the functions depend on the
//! domain crate alone.

pub mod demo;
pub mod embedded;
pub mod in_process;
pub mod live;
pub mod router;
pub mod run;
