//! Glue between Lambda events and the domain: the only place Lambda types
//! appear.

pub mod admin_api;
mod admin_legacy;
pub mod delivery;
pub mod discrepancy;
pub mod http;
pub mod realtime;
pub mod schedule;
pub mod sqs;
pub mod sync_api;
pub mod webhook;

/// The `detail` of an EventBridge event (or of an on-demand invocation
/// shaped like one); the default when it is absent or null.
pub(crate) fn event_detail<T: serde::de::DeserializeOwned + Default>(
    payload: &serde_json::Value,
) -> crate::Result<T> {
    match payload.get("detail") {
        Some(detail) if !detail.is_null() => serde_json::from_value(detail.clone())
            .map_err(|e| crate::Error::validation("detail", e.to_string())),
        _ => Ok(T::default()),
    }
}
