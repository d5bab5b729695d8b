//! syncline's domain crate: every function's logic, over the storage layer
//! on the DynamoDB API and the retry-queue port. Each Lambda function is a
//! thin `main.rs` that builds its handler with [`wiring`] and runs it.
//!
//! # Layout
//!
//! The functions, from their event to the domain module that does the
//! work:
//!
//! | function | glue (`lambda/`) | domain |
//! |---|---|---|
//! | webhook | `lambda/webhook.rs` | [`webhooks`]: verify, dedupe, map, store |
//! | scheduled-sync | `lambda/schedule.rs` | [`ingest`] (runs, leases, continuations) over [`connectors`] (HTTP sources) |
//! | sync-api | `lambda/sync_api.rs` | [`sync`]: push, pull, conflict rules, the older shapes |
//! | admin-api | `lambda/admin_api.rs` | [`admin`]: status, health, settings, triggers, dead letters |
//! | discrepancy-check | `lambda/discrepancy.rs` | [`discrepancy`]: range digests, id listings, repairs |
//! | retry-worker | `lambda/sqs.rs` | [`retry`]: envelopes, backoff policy, idempotency, handlers |
//! | delivery | `lambda/delivery.rs` | [`delivery`]: destinations over the change feed; [`realtime`]'s pokes |
//! | realtime | `lambda/realtime.rs` | [`realtime`]: WebSocket connect and disconnect |
//!
//! Shared by all: [`model`] (validated ids, records, cursors), [`store`]
//! (one table: records, the change feed, keyed items, logs, the local
//! queue's messages), [`queue`] (the `RetryQueue` port, SQS and local),
//! [`auth`], [`validation`], [`backoff`], [`config`] (every environment
//! variable), [`runtime`] (adapters from the configuration), [`error`],
//! [`metrics`] and [`telemetry`].
//!
//! The local run (one process, the embedded store, the demo source) is the
//! separate crate `syncline-local`; nothing here depends on it.

pub mod admin;
pub mod auth;
pub mod backoff;
pub mod config;
pub mod connectors;
pub mod delivery;
pub mod discrepancy;
pub mod error;
pub mod ingest;
pub mod lambda;
pub mod metrics;
pub mod model;
pub mod queue;
pub mod realtime;
pub mod retry;
pub mod runtime;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod validation;
pub mod webhooks;
pub mod wiring;

pub use config::Config;
pub use error::{Error, Result};
