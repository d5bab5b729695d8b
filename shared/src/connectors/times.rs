//! Upstream dates and times, read with jiff: RFC 3339 with an offset, or a
//! local date-time (ISO `2026-01-15T10:30:00` / `2026-01-15 10:30:00`,
//! Zoho Creator's `15-Jan-2026 10:30:00`, a bare date) in a zone that is
//! UTC, a fixed offset (`+02:00`) or an IANA name (`Europe/Berlin`,
//! daylight saving included; an ambiguous or skipped local time resolves
//! the way RFC 5545 and Temporal do).

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::fmt::strtime;
use jiff::tz::{Offset, TimeZone};

/// Local formats tried in order when the text has no offset.
const LOCAL_FORMATS: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%d-%b-%Y %H:%M:%S",
    "%d-%b-%Y %H:%M",
];
const LOCAL_DATES: &[&str] = &["%Y-%m-%d", "%d-%b-%Y"];

/// Where local times are: `Z`/`UTC`, `+HH:MM`/`-HH:MM`, or an IANA name.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone(TimeZone);

impl Zone {
    pub fn utc() -> Self {
        Self(TimeZone::UTC)
    }

    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text == "Z" || text.eq_ignore_ascii_case("UTC") {
            return Some(Self::utc());
        }
        if let Some(sign) = match text.as_bytes().first()? {
            b'+' => Some(1),
            b'-' => Some(-1),
            _ => None,
        } {
            let (hours, minutes) = text[1..].split_once(':')?;
            let (hours, minutes) = (hours.parse::<i32>().ok()?, minutes.parse::<i32>().ok()?);
            if !(0..=23).contains(&hours) || !(0..=59).contains(&minutes) {
                return None;
            }
            let offset = Offset::from_seconds(sign * (hours * 3600 + minutes * 60)).ok()?;
            return Some(Self(TimeZone::fixed(offset)));
        }
        TimeZone::get(text).ok().map(Self)
    }
}

/// The instant `text` names: its own offset when it has one, else read
/// as a local time in `zone`.
pub fn instant(text: &str, zone: &Zone) -> Option<Timestamp> {
    let text = text.trim();
    if let Ok(at) = text.parse::<Timestamp>() {
        return Some(at);
    }
    let local = LOCAL_FORMATS
        .iter()
        .find_map(|format| strtime::parse(format, text).ok()?.to_datetime().ok())
        .or_else(|| {
            LOCAL_DATES.iter().find_map(|format| {
                let date = strtime::parse(format, text).ok()?.to_date().ok()?;
                Some(DateTime::from(date))
            })
        })?;
    Some(local.to_zoned_datetime(zone.0.clone()).ok()?.timestamp())
}

/// `at` as UTC RFC 3339 (`2026-01-15T09:30:00Z`).
pub fn rfc3339_utc(at: Timestamp) -> String {
    at.to_string()
}

/// `at` in Zoho Creator's `dd-MMM-yyyy HH:mm:ss`, in `zone`.
pub fn zoho(at: Timestamp, zone: &Zone) -> String {
    at.to_zoned_datetime(zone.0.clone())
        .strftime("%d-%b-%Y %H:%M:%S")
        .to_string()
}

/// Seconds since the epoch.
pub fn unix_seconds(at: Timestamp) -> i64 {
    at.as_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str, zone: &str) -> String {
        let zone = Zone::parse(zone).expect("zone");
        rfc3339_utc(instant(text, &zone).expect("parsed"))
    }

    #[test]
    fn zoho_dates_read_in_a_named_zone_with_daylight_saving() {
        // Berlin is +01:00 in January and +02:00 in July.
        assert_eq!(
            utc("15-Jan-2026 10:30:00", "Europe/Berlin"),
            "2026-01-15T09:30:00Z"
        );
        assert_eq!(
            utc("15-Jul-2026 10:30:00", "Europe/Berlin"),
            "2026-07-15T08:30:00Z"
        );
        assert_eq!(
            utc("15-Jan-2026", "Asia/Ho_Chi_Minh"),
            "2026-01-14T17:00:00Z"
        );
    }

    #[test]
    fn offsets_in_the_text_win_and_fixed_offsets_and_utc_work() {
        assert_eq!(
            utc("2026-01-15T10:30:00+05:30", "Europe/Berlin"),
            "2026-01-15T05:00:00Z"
        );
        assert_eq!(utc("2026-01-15 10:30:00", "-05:00"), "2026-01-15T15:30:00Z");
        assert_eq!(
            utc("2026-01-15T10:30:00.250", "Z"),
            "2026-01-15T10:30:00.25Z"
        );
    }

    #[test]
    fn unknown_zones_and_texts_are_refused() {
        assert!(Zone::parse("Mars/Olympus").is_none());
        assert!(Zone::parse("+25:00").is_none());
        assert!(instant("next tuesday", &Zone::utc()).is_none());
        assert!(instant("31-Feb-2026 10:00:00", &Zone::utc()).is_none());
    }
}
