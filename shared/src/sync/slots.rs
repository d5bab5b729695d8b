//! Free time slots of a resource (`getAvailableTimeSlots(date, duration)`
//! of the orchestrator syncline replaces): the gaps between the bookings a
//! no-overlap entity holds for it, within a day's opening hours in a zone,
//! cut into slots of the asked duration.

use jiff::Timestamp;
use jiff::civil::{Date, Time};
use serde::Serialize;

use super::{Access, Caller, SyncService};
use crate::connectors::times::{Zone, instant};
use crate::error::{Error, Result};
use crate::model::EntityType;

/// What a slot query asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotQuery {
    pub entity: EntityType,
    pub resource: String,
    /// `YYYY-MM-DD`, in `zone`.
    pub date: String,
    pub duration_minutes: u32,
    /// Opening hours, `HH:MM` (default the whole day).
    pub from: Option<String>,
    pub to: Option<String>,
    /// Default UTC.
    pub zone: Option<String>,
    /// Between slot starts (default the duration).
    pub step_minutes: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Slot {
    pub start: String,
    pub end: String,
}

fn invalid(field: &str, why: &str) -> Error {
    Error::validation(field, why)
}

fn minutes(field: &str, value: u32) -> Result<i64> {
    if !(1..=1440).contains(&value) {
        return Err(invalid(field, "1 to 1440 minutes"));
    }
    Ok(i64::from(value) * 60)
}

impl SyncService {
    /// The free slots of `query.resource` on `query.date`.
    pub async fn free_slots(&self, caller: &Caller, query: &SlotQuery) -> Result<Vec<Slot>> {
        if !caller.access.can_read(&query.entity) {
            return Err(Access::hidden(&query.entity));
        }
        let spec = self.registry.get(&query.entity)?;
        let rule = spec
            .no_overlap
            .as_ref()
            .ok_or_else(|| invalid("entity", "has no no_overlap rule: it books nothing"))?;
        let zone = match &query.zone {
            Some(name) => Zone::parse(name)
                .ok_or_else(|| invalid("zone", "an IANA name, an offset or UTC"))?,
            None => Zone::utc(),
        };
        let duration = minutes("duration", query.duration_minutes)?;
        let step = minutes("step", query.step_minutes.unwrap_or(query.duration_minutes))?;
        let date: Date = query
            .date
            .parse()
            .map_err(|_| invalid("date", "YYYY-MM-DD"))?;
        let time =
            |field: &str, text: &Option<String>, default: &str| -> Result<Option<Timestamp>> {
                let text = text.as_deref().unwrap_or(default);
                if text == "24:00" {
                    let next = date
                        .tomorrow()
                        .map_err(|_| invalid("date", "out of range"))?;
                    return Ok(instant(&next.to_string(), &zone));
                }
                let at: Time = text.parse().map_err(|_| invalid(field, "HH:MM"))?;
                Ok(instant(&date.to_datetime(at).to_string(), &zone))
            };
        let (Some(open), Some(close)) = (
            time("from", &query.from, "00:00")?,
            time("to", &query.to, "24:00")?,
        ) else {
            return Err(invalid("date", "not a time in that zone"));
        };
        if close <= open {
            return Err(invalid("to", "after from"));
        }
        // The resource's bookings that touch the window, as [start, end).
        let mut busy: Vec<(i64, i64)> = Vec::new();
        self.store
            .visit_live_records(&caller.tenant, &query.entity, |record| {
                let at = |field: &str| {
                    record
                        .data
                        .get(field)
                        .and_then(serde_json::Value::as_str)
                        .and_then(|t| instant(t, &Zone::utc()))
                        .map(|t| t.as_second())
                };
                if record.field_is(&rule.resource, &query.resource)
                    && let (Some(start), Some(end)) = (at(&rule.start), at(&rule.end))
                    && start < close.as_second()
                    && end > open.as_second()
                {
                    busy.push((start, end));
                }
                true
            })
            .await?;
        busy.sort_unstable();
        let mut slots = Vec::new();
        let mut start = open.as_second();
        let end_of_day = close.as_second();
        while start + duration <= end_of_day {
            let end = start + duration;
            match busy
                .iter()
                .find(|(b_start, b_end)| *b_start < end && *b_end > start)
            {
                // Next try at the step after the clash ends.
                Some((_, b_end)) => {
                    let steps = (b_end - open.as_second() + step - 1) / step;
                    start = start.max(open.as_second() + steps * step);
                }
                None => {
                    slots.push(Slot {
                        start: text(start),
                        end: text(end),
                    });
                    start += step;
                }
            }
        }
        Ok(slots)
    }
}

fn text(secs: i64) -> String {
    Timestamp::from_second(secs).map_or_else(|_| String::new(), |t| t.to_string())
}
