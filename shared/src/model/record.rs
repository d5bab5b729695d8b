//! Records and the values that order them: a per-record version that only the
//! server increments, a per-tenant change sequence allocated in the same
//! atomic write as the change, and the opaque cursor built from it.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{EntityType, RecordId, SourceId, TenantId, Timestamp};
use crate::error::{Error, Result};

/// A record's version: 1 on creation, +1 on every write, assigned by the
/// server only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(u64);

impl Version {
    pub const FIRST: Version = Version(1);

    pub fn parse(raw: u64) -> Result<Self> {
        if raw == 0 {
            return Err(Error::validation("version", "versions start at 1"));
        }
        Ok(Self(raw))
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    pub const fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Position of a change in its tenant's commit order. Allocated from the
/// tenant's counter inside the same atomic write as the change, so it never
/// depends on anybody's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seq(u64);

impl Seq {
    pub const ZERO: Seq = Seq(0);

    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }

    pub const fn get(self) -> u64 {
        self.0
    }
}

/// Where a client's pull stands: a change sequence number and when the
/// client was known to be complete up to it (for the tombstone retention
/// check). Opaque to clients: they hand back what they were given. Ordered
/// by the sequence number; it never moves backwards.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cursor {
    seq: u64,
    issued_ms: i64,
}

const CURSOR_PREFIX: &str = "c1";

impl Cursor {
    /// The beginning: a pull from here is a full snapshot.
    pub const START: Cursor = Cursor {
        seq: 0,
        issued_ms: 0,
    };

    /// Complete up to `seq`, as of now.
    pub fn at(seq: Seq) -> Self {
        Self {
            seq: seq.0,
            issued_ms: Timestamp::now().as_millis(),
        }
    }

    pub const fn seq(self) -> Seq {
        Seq(self.seq)
    }

    pub fn issued_at(self) -> Timestamp {
        Timestamp::from_millis(self.issued_ms)
    }

    pub fn parse(raw: &str) -> Result<Self> {
        let invalid = || Error::validation("cursor", "not a cursor this server issued");
        let hex = raw.strip_prefix(CURSOR_PREFIX).ok_or_else(invalid)?;
        if hex.len() != 28 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        let seq = u64::from_str_radix(&hex[..16], 16).map_err(|_| invalid())?;
        let issued_ms = i64::from_str_radix(&hex[16..], 16).map_err(|_| invalid())?;
        Ok(Self { seq, issued_ms })
    }
}

impl PartialEq for Cursor {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}

impl Eq for Cursor {}

impl PartialOrd for Cursor {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Cursor {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.seq.cmp(&other.seq)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{CURSOR_PREFIX}{:016x}{:012x}",
            self.seq,
            self.issued_ms.clamp(0, 0xFFFF_FFFF_FFFF)
        )
    }
}

impl Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// SHA-256 over a canonical form of a record's content (keys sorted at every
/// level, tombstone flag included), so equal content always hashes equal and
/// an unchanged record is never rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContentHash(String);

impl ContentHash {
    pub fn of(data: &Map<String, Value>, deleted: bool) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(if deleted { b"D" } else { b"L" });
        hash_object(&mut hasher, data);
        Self(hex::encode(hasher.finalize()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn hash_value(hasher: &mut Sha256, value: &Value) {
    match value {
        Value::Object(map) => hash_object(hasher, map),
        Value::Array(items) => {
            hasher.update(b"[");
            for item in items {
                hash_value(hasher, item);
                hasher.update(b",");
            }
            hasher.update(b"]");
        }
        // Scalars: their JSON text is already canonical.
        scalar => hasher.update(scalar.to_string().as_bytes()),
    }
}

fn hash_object(hasher: &mut Sha256, map: &Map<String, Value>) {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    hasher.update(b"{");
    for key in keys {
        hasher.update(Value::String(key.clone()).to_string().as_bytes());
        hasher.update(b":");
        hash_value(hasher, &map[key]);
        hasher.update(b",");
    }
    hasher.update(b"}");
}

/// Who made a record's latest write and when, by their clock: what
/// last-write-wins compares. Server-side writers (webhooks, pulls) leave it
/// empty and count as the server at `updated_at`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Origin {
    /// Milliseconds since the epoch on the writer's clock (or the physical
    /// part of its hybrid logical clock).
    pub at: i64,
    /// Logical counter of a hybrid logical clock; 0 for plain timestamps.
    #[serde(default)]
    pub counter: u32,
    /// Breaks ties deterministically.
    pub client: String,
}

/// One business record as the store holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub tenant: TenantId,
    pub entity: EntityType,
    pub id: RecordId,
    pub data: Map<String, Value>,
    pub version: Version,
    pub hash: ContentHash,
    /// A tombstone: pulls return it so clients delete their copy; it expires
    /// after the retention window.
    pub deleted: bool,
    pub source: Option<SourceId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub seq: Seq,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// The source's own version of the record (its updated-at as the source
    /// wrote it), from the pull that last wrote it; empty after any other
    /// write. What range digests compare (docs/DISCREPANCIES.md). Stored
    /// as `mark`.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "mark")]
    pub source_version: Option<String>,
    /// The source (REST or webhook) whose write made this version; empty
    /// when a client, an operator or a conflict resolution made it. What
    /// destinations check to never echo a change back to where it came
    /// from. Stored as `by`.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "by")]
    pub changed_by: Option<SourceId>,
}

impl Record {
    /// Whether `field` holds `text` (a string equal to it, or a number
    /// that reads as it): how a resource or a group is named in a query.
    pub fn field_is(&self, field: &str, text: &str) -> bool {
        match self.data.get(field) {
            Some(Value::String(s)) => s == text,
            Some(Value::Number(n)) => n.to_string() == text,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn content_hash_ignores_key_order_but_not_values_or_deletion() {
        let a = object(json!({"a": 1, "b": {"y": [1, 2], "x": "s"}}));
        let b = object(json!({"b": {"x": "s", "y": [1, 2]}, "a": 1}));
        let c = object(json!({"a": 1, "b": {"x": "s", "y": [2, 1]}}));
        assert_eq!(ContentHash::of(&a, false), ContentHash::of(&b, false));
        assert_ne!(ContentHash::of(&a, false), ContentHash::of(&c, false));
        assert_ne!(ContentHash::of(&a, false), ContentHash::of(&a, true));
    }

    #[test]
    fn cursor_round_trips_and_rejects_foreign_text() {
        let cursor = Cursor::at(Seq::new(12345));
        let text = cursor.to_string();
        let parsed = Cursor::parse(&text).expect("own cursor");
        assert_eq!(parsed, cursor);
        assert_eq!(parsed.issued_at(), cursor.issued_at());
        assert!(Cursor::parse("2024-01-01T00:00:00Z").is_err());
        assert!(Cursor::parse("c1zz").is_err());
    }

    #[test]
    fn versions_start_at_one() {
        assert!(Version::parse(0).is_err());
        assert_eq!(Version::FIRST.next().get(), 2);
    }
}
