//! A status field that may only move along declared transitions (a
//! contract: draft -> sent -> signed, or cancelled), declared per entity
//! type beside its content rules, with the fields a record must carry on
//! entering a state (a signature to be signed, a reason to be cancelled).
//! Checked on every client push; a mutation that breaks it is rejected
//! with the reason and changes nothing.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    /// The field that holds the state.
    pub field: String,
    /// The states a new record may start in.
    pub initial: Vec<String>,
    /// Each state and the states it may move to (none: final).
    pub transitions: BTreeMap<String, Vec<String>>,
    /// Fields a record must carry, not empty, on entering a state.
    #[serde(default)]
    pub requires: BTreeMap<String, Vec<String>>,
}

fn state<'a>(data: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    data.get(field).and_then(Value::as_str)
}

fn present(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

impl Lifecycle {
    /// A lifecycle whose states all lead somewhere declared.
    pub fn validate(&self, entity: &str) -> Result<()> {
        let problem =
            |what: String| Err(Error::Config(format!("entity {entity}: lifecycle: {what}")));
        if self.initial.is_empty() {
            return problem("name at least one initial state".into());
        }
        for state in self
            .initial
            .iter()
            .chain(self.transitions.values().flatten())
            .chain(self.requires.keys())
        {
            if !self.transitions.contains_key(state) {
                return problem(format!(
                    "state {state:?} is not listed in transitions (list final states with [])"
                ));
            }
        }
        Ok(())
    }

    /// Whether a record may go from `before` to `after` (`None`: absent
    /// or deleted); the reason when not.
    pub fn check(
        &self,
        before: Option<&Map<String, Value>>,
        after: Option<&Map<String, Value>>,
    ) -> std::result::Result<(), String> {
        let Some(after) = after else {
            return Ok(());
        };
        let field = &self.field;
        let Some(to) = state(after, field) else {
            return Err(format!("{field} is required (one of {})", self.states()));
        };
        let from = before.and_then(|b| state(b, field));
        match from {
            None if !self.initial.iter().any(|s| s == to) => {
                return Err(format!(
                    "a new record starts as {}, not {to}",
                    self.initial.join(" or ")
                ));
            }
            Some(from) if from == to => return Ok(()),
            Some(from) => {
                let next = self.transitions.get(from).cloned().unwrap_or_default();
                if !next.iter().any(|s| s == to) {
                    return Err(if next.is_empty() {
                        format!("{field} {from} is final; it cannot become {to}")
                    } else {
                        format!(
                            "{field} cannot go from {from} to {to} (from {from}: {})",
                            next.join(", ")
                        )
                    });
                }
            }
            None => {}
        }
        if !self.transitions.contains_key(to) {
            return Err(format!("{field} {to} is not one of {}", self.states()));
        }
        let missing: Vec<&str> = self
            .requires
            .get(to)
            .into_iter()
            .flatten()
            .filter(|f| !present(after.get(f.as_str())))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(format!("{to} needs {}", missing.join(" and ")));
        }
        Ok(())
    }

    fn states(&self) -> String {
        self.transitions
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn contract() -> Lifecycle {
        serde_json::from_value(json!({
            "field": "status", "initial": ["draft"],
            "transitions": {"draft": ["sent", "cancelled"], "sent": ["signed", "cancelled"],
                            "signed": [], "cancelled": []},
            "requires": {"signed": ["signature"], "cancelled": ["cancel_reason"]}
        }))
        .expect("lifecycle")
    }

    fn data(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn a_contract_moves_along_its_transitions_only() {
        let l = contract();
        let draft = data(json!({"status": "draft"}));
        let sent = data(json!({"status": "sent"}));
        let signed =
            data(json!({"status": "signed", "signature": {"by": "Ann", "image": "data:..."}}));
        assert!(l.check(None, Some(&draft)).is_ok());
        assert_eq!(
            l.check(None, Some(&sent)).expect_err("refused"),
            "a new record starts as draft, not sent"
        );
        assert!(l.check(Some(&draft), Some(&sent)).is_ok());
        assert!(l.check(Some(&sent), Some(&signed)).is_ok());
        assert_eq!(
            l.check(Some(&draft), Some(&signed)).expect_err("refused"),
            "status cannot go from draft to signed (from draft: sent, cancelled)"
        );
        assert_eq!(
            l.check(Some(&signed), Some(&sent)).expect_err("refused"),
            "status signed is final; it cannot become sent"
        );
        assert!(
            l.check(Some(&signed), Some(&signed)).is_ok(),
            "other fields may change"
        );
        assert!(
            l.check(Some(&signed), None).is_ok(),
            "a delete is not a transition"
        );
    }

    #[test]
    fn entering_a_state_needs_its_fields() {
        let l = contract();
        let sent = data(json!({"status": "sent"}));
        assert_eq!(
            l.check(
                Some(&sent),
                Some(&data(json!({"status": "signed", "signature": ""})))
            )
            .expect_err("refused"),
            "signed needs signature"
        );
        assert_eq!(
            l.check(Some(&sent), Some(&data(json!({"status": "cancelled"}))))
                .expect_err("refused"),
            "cancelled needs cancel_reason"
        );
        assert!(l.check(None, Some(&data(json!({"title": "x"})))).is_err());
    }

    #[test]
    fn a_lifecycle_naming_unknown_states_is_refused() {
        let mut l = contract();
        l.transitions.insert("sent".into(), vec!["archived".into()]);
        assert!(l.validate("contract").is_err());
        assert!(contract().validate("contract").is_ok());
    }
}
