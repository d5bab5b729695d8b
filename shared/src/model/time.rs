use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Self(i64::try_from(millis).unwrap_or(i64::MAX))
    }

    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds, the unit DynamoDB's TTL attribute uses.
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// RFC 3339 in UTC, to the millisecond.
    pub fn to_rfc3339(self) -> String {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    }

    pub fn plus(self, duration: Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(millis))
    }
}

/// Serde for the times people and older clients read: RFC 3339 in UTC
/// (`2026-12-01T10:30:00.123Z`) out; that or epoch milliseconds in, so
/// entries stored before still read.
pub mod iso {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Timestamp;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Millis(i64),
        Text(String),
    }

    fn read<E: serde::de::Error>(either: Either) -> Result<Timestamp, E> {
        match either {
            Either::Millis(ms) => Ok(Timestamp::from_millis(ms)),
            Either::Text(text) => text
                .parse::<jiff::Timestamp>()
                .map(|at| Timestamp::from_millis(at.as_millisecond()))
                .map_err(|_| E::custom("a time must be RFC 3339 or epoch milliseconds")),
        }
    }

    pub fn serialize<S: Serializer>(at: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&at.to_rfc3339())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        read(Either::deserialize(deserializer)?)
    }

    /// The same for an optional time (`null` when absent).
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            at: &Option<Timestamp>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => serializer.serialize_str(&at.to_rfc3339()),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Timestamp>, D::Error> {
            Option::<Either>::deserialize(deserializer)?
                .map(read)
                .transpose()
        }
    }
}

#[cfg(test)]
mod iso_tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Shown {
        #[serde(with = "iso")]
        at: Timestamp,
        #[serde(with = "iso::option", default)]
        until: Option<Timestamp>,
    }

    #[test]
    fn times_are_written_as_rfc3339_and_read_from_either_form() {
        let shown = Shown {
            at: Timestamp::from_millis(1_796_000_000_123),
            until: None,
        };
        let json = serde_json::to_value(&shown).expect("json");
        assert_eq!(json["at"], "2026-11-30T00:53:20.123Z");
        assert_eq!(json["until"], serde_json::Value::Null);
        let back: Shown = serde_json::from_value(json).expect("read back");
        assert_eq!(back, shown);
        let old: Shown =
            serde_json::from_str(r#"{"at": 1796000000123, "until": 1796000000000}"#).expect("old");
        assert_eq!(old.at, shown.at);
        assert_eq!(old.until, Some(Timestamp::from_millis(1_796_000_000_000)));
        assert!(serde_json::from_str::<Shown>(r#"{"at": "yesterday"}"#).is_err());
    }
}
