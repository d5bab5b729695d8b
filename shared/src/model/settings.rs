use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A sync interval written the way operators write it: `30m`, `6h`, `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval(Duration);

impl Interval {
    const MIN: Duration = Duration::from_secs(60);
    const MAX: Duration = Duration::from_secs(31 * 24 * 3600);

    pub fn parse(raw: &str) -> Result<Self> {
        let invalid = || {
            Error::validation(
                "interval",
                "expected a number and a unit (m, h or d) between 1m and 31d, such as 12h",
            )
        };
        let raw = raw.trim();
        // The unit is the last character, whatever its width (splitting at
        // a byte inside a character would panic).
        let split = raw
            .char_indices()
            .last()
            .map(|(i, _)| i)
            .ok_or_else(invalid)?;
        let (number, unit) = raw.split_at(split);
        let number: u64 = number.parse().map_err(|_| invalid())?;
        let unit_secs = match unit {
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(invalid()),
        };
        let duration = Duration::from_secs(number.checked_mul(unit_secs).ok_or_else(invalid)?);
        if !(Self::MIN..=Self::MAX).contains(&duration) {
            return Err(invalid());
        }
        Ok(Self(duration))
    }

    /// `hours` hours; for defaults (no validation needed for sane constants).
    pub const fn hours(hours: u64) -> Self {
        Self(Duration::from_secs(hours * 3600))
    }

    pub const fn duration(self) -> Duration {
        self.0
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hours read best for sync intervals (6h, 12h, 24h, 48h).
        let secs = self.0.as_secs();
        if secs.is_multiple_of(3600) {
            write!(f, "{}h", secs / 3600)
        } else {
            write!(f, "{}m", secs / 60)
        }
    }
}

impl Serialize for Interval {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Operator-controlled settings of one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceSettings {
    pub interval: Interval,
    pub enabled: bool,
    pub page_size: u32,
    pub requests_per_second: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_operator_notation_and_print_it_back() {
        for text in ["6h", "12h", "24h", "90m"] {
            let interval = Interval::parse(text).expect("valid interval");
            assert_eq!(interval.to_string(), text);
        }
        assert_eq!(Interval::parse("1d").expect("valid").to_string(), "24h");
        assert_eq!(
            Interval::parse("24h").expect("valid").duration(),
            Duration::from_secs(86_400)
        );
    }

    #[test]
    fn intervals_reject_nonsense_and_out_of_range_values() {
        for text in [
            "",
            "h",
            "12",
            "12x",
            "0h",
            "30s",
            "32d",
            "-1h",
            "99999999999999999999d",
            // Found by the fuzzer: a wide last character panicked.
            "12é",
            "\u{10ffff}",
            "1ß",
        ] {
            assert!(Interval::parse(text).is_err(), "{text} should be rejected");
        }
    }
}
