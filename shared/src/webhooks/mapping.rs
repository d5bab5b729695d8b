//! From a provider event to record changes: which entity type and record
//! id, which fields (JSON pointers into the event), constants to set, and
//! whether the event updates, replaces or deletes the record; then the
//! validation rules (`crate::validation`) the mapped fields must meet.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::model::{EntityType, RecordId};
use crate::retry::ChangeSpec;
use crate::validation::Rules;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Set the mapped fields, keep the record's others.
    #[default]
    Merge,
    /// Replace the record's content with the mapped fields.
    Replace,
    /// Leave a tombstone.
    Delete,
}

/// How one event type becomes a record change.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventMapping {
    pub entity: EntityType,
    /// JSON pointer to the record id (a string or a number).
    pub id: String,
    #[serde(default)]
    pub action: Action,
    /// Record field -> JSON pointer into the event. Absent values are left
    /// out (and caught by `required`).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Record field -> constant, such as `"status": "canceled"`.
    #[serde(default)]
    pub set: Map<String, Value>,
    #[serde(default)]
    pub rules: Rules,
}

fn pointer<'a>(event: &'a Value, path: &str) -> Option<&'a Value> {
    event.pointer(path).filter(|v| !v.is_null())
}

impl EventMapping {
    /// The record change `event` asks for, or [`Error::Unprocessable`] with
    /// every rule it breaks.
    pub fn apply(&self, event: &Value) -> Result<ChangeSpec> {
        let id = match pointer(event, &self.id) {
            Some(Value::String(s)) => RecordId::parse(s),
            Some(Value::Number(n)) => RecordId::parse(&n.to_string()),
            _ => Err(Error::Unprocessable(format!(
                "the event has no record id at {}",
                self.id
            ))),
        }?;
        if self.action == Action::Delete {
            return Ok(ChangeSpec {
                entity: self.entity.clone(),
                id,
                data: None,
                deleted: true,
                merge: false,
            });
        }
        let mut data = Map::new();
        for (field, path) in &self.fields {
            if let Some(value) = pointer(event, path) {
                data.insert(field.clone(), value.clone());
            }
        }
        data.extend(self.set.clone());
        self.rules.check(&data)?;
        Ok(ChangeSpec {
            entity: self.entity.clone(),
            id,
            data: Some(data),
            deleted: false,
            merge: self.action == Action::Merge,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping(value: Value) -> EventMapping {
        serde_json::from_value(value).expect("valid mapping")
    }

    #[test]
    fn fields_come_from_pointers_and_constants() {
        let m = mapping(json!({
            "entity": "booking",
            "id": "/payload/uri",
            "fields": {"email": "/payload/email", "missing": "/payload/nope"},
            "set": {"status": "active"}
        }));
        let change = m
            .apply(&json!({"payload": {"uri": "https://x/1", "email": "a@b.co"}}))
            .expect("maps");
        assert_eq!(change.id.as_str(), "https://x/1");
        assert!(change.merge);
        assert_eq!(
            change.data,
            Some(
                serde_json::from_value(json!({"email": "a@b.co", "status": "active"}))
                    .expect("map")
            )
        );
    }

    #[test]
    fn every_broken_rule_is_reported() {
        let m = mapping(json!({
            "entity": "booking",
            "id": "/id",
            "fields": {"email": "/email", "name": "/name", "start": "/start", "seats": "/seats"},
            "rules": {
                "required": ["email", "name"],
                "types": {"seats": "integer"},
                "formats": {"email": "email", "start": "date-time"}
            }
        }));
        let err = m
            .apply(&json!({"id": 7, "email": "not-an-email", "start": "tomorrow", "seats": 1.5}))
            .expect_err("rules broken");
        let Error::Unprocessable(text) = err else {
            panic!("expected a 422, got {err:?}");
        };
        for expected in [
            "name is required",
            "seats must be of type integer",
            "email is not a valid email",
            "start is not a valid date-time",
        ] {
            assert!(text.contains(expected), "{text} lacks {expected}");
        }
        assert!(m
            .apply(&json!({"id": 7, "email": "a@b.co", "name": "A", "start": "2026-11-23T09:00:00Z", "seats": 2}))
            .is_ok());
    }

    #[test]
    fn a_delete_needs_only_the_id() {
        let m = mapping(json!({"entity": "booking", "id": "/id", "action": "delete"}));
        let change = m.apply(&json!({"id": "b1"})).expect("maps");
        assert!(change.deleted);
        assert!(m.apply(&json!({"other": 1})).is_err());
    }
}
