//! Glue between Lambda events and the domain: the only place Lambda types
//! appear.

pub mod admin_api;
pub mod discrepancy;
pub mod http;
pub mod schedule;
pub mod sqs;
pub mod sync_api;
pub mod webhook;
