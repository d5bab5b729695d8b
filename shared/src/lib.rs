//! syncline's domain crate: the model, the storage layer on the DynamoDB API,
//! the retry-queue port with its adapters, and the configuration that wires
//! them. Every Lambda function is a thin `main.rs` over this crate.

pub mod admin;
pub mod auth;
pub mod config;
pub mod connectors;
#[cfg(feature = "embedded")]
pub mod demo;
pub mod discrepancy;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod error;
pub mod ingest;
pub mod lambda;
#[cfg(feature = "embedded")]
pub mod local;
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

pub use config::Config;
pub use error::{Error, Result};
