//! From an upstream item to a record change: id, deletion marker, field
//! mapping, defaults, type and time-zone normalization, validation; plus the
//! no-overlap rule across the records of a run.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::spec::{NoOverlap, SourceSpec};
use crate::model::RecordId;
use crate::store::{BulkWrite, Change};

/// One item made ready for the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: RecordId,
    pub change: Change,
    /// The item's updated-at, as the source wrote it.
    pub updated_at: Option<Value>,
}

impl Item {
    /// The bulk write that stores the item, carrying the source's version.
    pub fn into_write(self) -> BulkWrite {
        BulkWrite {
            source_version: self.updated_at.as_ref().map(mark_text),
            id: self.id,
            change: self.change,
        }
    }
}

/// A source's version of a record (its updated-at value) as text: a string
/// as it is, anything else as its JSON text.
pub fn mark_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Turns an item into a record change, or says why it cannot be one.
pub fn transform(spec: &SourceSpec, item: &Value) -> Result<Item, String> {
    let id = match item.pointer(&spec.id) {
        Some(Value::String(s)) => RecordId::parse(s).map_err(|e| e.to_string())?,
        Some(Value::Number(n)) => RecordId::parse(&n.to_string()).map_err(|e| e.to_string())?,
        _ => return Err(format!("the item has no id at {}", spec.id)),
    };
    let updated_at = spec
        .updated_at
        .as_ref()
        .and_then(|p| item.pointer(p))
        .filter(|v| !v.is_null())
        .cloned();
    if let Some((pointer, value)) = &spec.deleted_when
        && item.pointer(pointer) == Some(value)
    {
        return Ok(Item {
            id,
            change: Change::Delete,
            updated_at,
        });
    }
    let mapping = &spec.mapping;
    let mut data: Map<String, Value> = if mapping.fields.is_empty() {
        match item {
            Value::Object(map) => map.clone(),
            _ => return Err("the item is not an object".into()),
        }
    } else {
        mapping
            .fields
            .iter()
            .filter_map(|(field, pointer)| {
                item.pointer(pointer)
                    .filter(|v| !v.is_null())
                    .map(|v| (field.clone(), v.clone()))
            })
            .collect()
    };
    for (field, value) in &mapping.defaults {
        data.entry(field.clone()).or_insert_with(|| value.clone());
    }
    for (field, kind) in &mapping.types {
        if let Some(value) = data.get_mut(field) {
            *value = convert(value, kind).ok_or_else(|| format!("{field} is not a {kind}"))?;
        }
    }
    for (field, zone) in &mapping.timezones {
        if let Some(value) = data.get_mut(field) {
            *value = to_utc(value, zone).ok_or_else(|| format!("{field} is not a date-time"))?;
        }
    }
    spec.rules.check(&data).map_err(|e| e.to_string())?;
    Ok(Item {
        id,
        change: Change::Put(data),
        updated_at,
    })
}

fn convert(value: &Value, kind: &str) -> Option<Value> {
    match (kind, value) {
        ("string", Value::String(_)) => Some(value.clone()),
        ("string", Value::Number(n)) => Some(Value::String(n.to_string())),
        ("string", Value::Bool(b)) => Some(Value::String(b.to_string())),
        ("number", Value::Number(_)) => Some(value.clone()),
        ("number", Value::String(s)) => s.trim().parse::<f64>().ok().map(Value::from),
        ("integer", Value::Number(n)) => n.as_i64().map(Value::from).or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0)
                .map(|f| Value::from(f as i64))
        }),
        ("integer", Value::String(s)) => s.trim().parse::<i64>().ok().map(Value::from),
        ("boolean", Value::Bool(_)) => Some(value.clone()),
        ("boolean", Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Some(Value::Bool(true)),
            "false" | "no" | "0" => Some(Value::Bool(false)),
            _ => None,
        },
        _ => None,
    }
}

/// A date-time as UTC RFC 3339: with an offset, converted; without one
/// (ISO or Zoho's `dd-MMM-yyyy HH:mm:ss`), read in `zone` (a fixed offset
/// or an IANA name).
fn to_utc(value: &Value, zone: &str) -> Option<Value> {
    let zone = super::times::Zone::parse(zone)?;
    let at = super::times::instant(value.as_str()?, &zone)?;
    Some(Value::String(super::times::rfc3339_utc(at)))
}

/// Bookings per resource seen in a run, to refuse overlaps.
#[derive(Debug, Default)]
pub struct OverlapIndex {
    spans: HashMap<String, Vec<(i64, i64, RecordId)>>,
}

impl OverlapIndex {
    /// Records `change`'s span, or says which record it overlaps.
    pub fn admit(
        &mut self,
        rule: &NoOverlap,
        id: &RecordId,
        change: &Change,
    ) -> Result<(), String> {
        let Change::Put(data) = change else {
            return Ok(());
        };
        let Some(resource) = data.get(&rule.resource).map(|v| v.to_string()) else {
            return Ok(());
        };
        let time = |field: &str| {
            data.get(field)
                .and_then(Value::as_str)
                .and_then(|t| super::times::instant(t, &super::times::Zone::utc()))
                .map(|t| t.as_second())
        };
        let (Some(start), Some(end)) = (time(&rule.start), time(&rule.end)) else {
            return Err(format!(
                "{} and {} must be date-times",
                rule.start, rule.end
            ));
        };
        if end <= start {
            return Err(format!("{} must be after {}", rule.end, rule.start));
        }
        let spans = self.spans.entry(resource.clone()).or_default();
        if let Some((_, _, other)) = spans
            .iter()
            .find(|(s, e, other)| other != id && start < *e && *s < end)
        {
            return Err(format!(
                "{} {resource} is already booked by {other} in that time",
                rule.resource
            ));
        }
        spans.retain(|(_, _, other)| other != id);
        spans.push((start, end, id.clone()));
        Ok(())
    }

    /// Forgets `id`'s span (the record was deleted or moved elsewhere).
    pub fn release(&mut self, id: &RecordId) {
        for spans in self.spans.values_mut() {
            spans.retain(|(_, _, other)| other != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn local_times_are_stored_in_utc() {
        assert_eq!(
            to_utc(&json!("2026-11-23 09:00:00"), "+02:00"),
            Some(json!("2026-11-23T07:00:00Z"))
        );
        assert_eq!(
            to_utc(&json!("2026-11-23T09:00:00-05:00"), "+02:00"),
            Some(json!("2026-11-23T14:00:00Z"))
        );
        assert_eq!(to_utc(&json!("tomorrow"), "+02:00"), None);
    }

    #[test]
    fn types_convert_or_refuse() {
        assert_eq!(convert(&json!("12.5"), "number"), Some(json!(12.5)));
        assert_eq!(convert(&json!("7"), "integer"), Some(json!(7)));
        assert_eq!(convert(&json!(3), "string"), Some(json!("3")));
        assert_eq!(convert(&json!("yes"), "boolean"), Some(json!(true)));
        assert_eq!(convert(&json!("abc"), "number"), None);
    }

    #[test]
    fn a_resource_cannot_be_booked_twice_at_once() {
        let rule = NoOverlap {
            resource: "crew".into(),
            start: "start".into(),
            end: "end".into(),
        };
        let job = |crew: &str, start: &str, end: &str| {
            Change::Put(
                serde_json::from_value(json!({"crew": crew, "start": start, "end": end}))
                    .expect("map"),
            )
        };
        let id = |s: &str| RecordId::parse(s).expect("id");
        let mut index = OverlapIndex::default();
        assert!(
            index
                .admit(
                    &rule,
                    &id("j1"),
                    &job("a", "2026-11-23T09:00:00Z", "2026-11-23T11:00:00Z")
                )
                .is_ok()
        );
        assert!(
            index
                .admit(
                    &rule,
                    &id("j2"),
                    &job("a", "2026-11-23T10:00:00Z", "2026-11-23T12:00:00Z")
                )
                .is_err()
        );
        assert!(
            index
                .admit(
                    &rule,
                    &id("j3"),
                    &job("a", "2026-11-23T11:00:00Z", "2026-11-23T12:00:00Z")
                )
                .is_ok()
        );
        assert!(
            index
                .admit(
                    &rule,
                    &id("j4"),
                    &job("b", "2026-11-23T10:00:00Z", "2026-11-23T12:00:00Z")
                )
                .is_ok()
        );
        // The same job moving within its own slot is fine.
        assert!(
            index
                .admit(
                    &rule,
                    &id("j1"),
                    &job("a", "2026-11-23T08:00:00Z", "2026-11-23T10:30:00Z")
                )
                .is_ok()
        );
    }
}
