//! Structured JSON logs through `tracing`, filtered by `RUST_LOG` (default
//! `info`). CloudWatch adds the timestamp and request id of each line.

use tracing_subscriber::EnvFilter;

/// Installs the JSON log subscriber once per process.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .try_init();
}
