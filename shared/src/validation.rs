//! Rules that record content must meet: required fields, field types and
//! formats. Webhook mappings and the sync API's entity registry use them.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Number,
    Integer,
    Boolean,
    Object,
    Array,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// RFC 3339, such as `2026-11-23T09:00:00Z`.
    DateTime,
    Email,
    Uri,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(default)]
    pub required: Vec<String>,
    #[serde(default)]
    pub types: BTreeMap<String, FieldType>,
    #[serde(default)]
    pub formats: BTreeMap<String, Format>,
}

impl Rules {
    pub fn check(&self, data: &Map<String, Value>) -> Result<()> {
        let mut broken = Vec::new();
        for field in &self.required {
            if data.get(field).is_none_or(Value::is_null) {
                broken.push(format!("{field} is required"));
            }
        }
        for (field, expected) in &self.types {
            if let Some(value) = data.get(field).filter(|v| !v.is_null())
                && !expected.accepts(value)
            {
                broken.push(format!("{field} must be of type {expected:?}").to_lowercase());
            }
        }
        for (field, format) in &self.formats {
            if let Some(value) = data.get(field).filter(|v| !v.is_null())
                && !format.accepts(value)
            {
                broken.push(format!("{field} is not a valid {}", format.name()));
            }
        }
        if broken.is_empty() {
            Ok(())
        } else {
            Err(Error::Unprocessable(broken.join("; ")))
        }
    }
}

impl FieldType {
    fn accepts(self, value: &Value) -> bool {
        match self {
            Self::String => value.is_string(),
            Self::Number => value.is_number(),
            Self::Integer => value.is_i64() || value.is_u64(),
            Self::Boolean => value.is_boolean(),
            Self::Object => value.is_object(),
            Self::Array => value.is_array(),
        }
    }
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Self::DateTime => "date-time",
            Self::Email => "email address",
            Self::Uri => "URI",
        }
    }

    fn accepts(self, value: &Value) -> bool {
        let Some(text) = value.as_str() else {
            return false;
        };
        match self {
            Self::DateTime => OffsetDateTime::parse(text, &Rfc3339).is_ok(),
            Self::Email => text.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.starts_with('.')
                    && domain.contains('.')
                    && !domain.ends_with('.')
                    && !text.chars().any(char::is_whitespace)
            }),
            Self::Uri => text.split_once("://").is_some_and(|(scheme, rest)| {
                !scheme.is_empty()
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                    && !rest.is_empty()
                    && !text.chars().any(char::is_whitespace)
            }),
        }
    }
}
