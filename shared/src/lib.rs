//! syncline's domain crate: the model, the storage layer on the DynamoDB API,
//! the retry-queue port with its adapters, and the configuration that wires
//! them. Every Lambda function is a thin `main.rs` over this crate.

pub mod admin;
pub mod auth;
pub mod backoff;
pub mod config;
pub mod connectors;
pub mod discrepancy;
pub mod error;
pub mod ingest;
pub mod lambda;
pub mod metrics;
pub mod model;
pub mod queue;
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
