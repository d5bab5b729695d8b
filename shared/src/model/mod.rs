//! The domain model: validated identifiers, records, cursors, run logs,
//! settings, leases and dedupe keys. No AWS types live here.

mod ids;
mod keys;
mod record;
mod run_log;
mod settings;
mod time;

pub use ids::{ClientId, EntityType, RecordId, SourceId, TenantId};
pub use keys::{DedupeKey, Lease};
pub use record::{ContentHash, Cursor, Origin, Record, Seq, Version};
pub use run_log::{MAX_REJECTED_LISTED, Rejected, RunCounts, RunKind, RunLog, RunStatus, Trigger};
pub use settings::{Interval, SourceSettings};
pub use time::{Timestamp, iso};
