//! Identifier newtypes. Tenant, entity, source and client ids become parts of
//! composite storage keys, so they are restricted to a character set that can
//! never contain the key separator `#`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const MAX_NAME_LEN: usize = 64;
const MAX_RECORD_ID_LEN: usize = 512;

fn parse_name(field: &'static str, raw: &str) -> Result<String> {
    if raw.is_empty() || raw.len() > MAX_NAME_LEN {
        return Err(Error::validation(
            field,
            format!("must be 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(Error::validation(
            field,
            "may contain only letters, digits, '_', '-' and '.'",
        ));
    }
    Ok(raw.to_owned())
}

macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident, $field:literal, $parse:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self> {
                let parse: fn(&'static str, &str) -> Result<String> = $parse;
                parse($field, raw).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(raw: String) -> Result<Self> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_id!(
    /// The tenant every key is scoped to.
    TenantId,
    "tenant",
    parse_name
);
name_id!(
    /// A kind of record: `booking`, `payment`, `property`.
    EntityType,
    "entity type",
    parse_name
);
name_id!(
    /// A configured external system (webhook sender or REST source).
    SourceId,
    "source",
    parse_name
);
name_id!(
    /// An offline client (device or installation) that pushes mutations.
    ClientId,
    "client id",
    parse_name
);
name_id!(
    /// A record's id, unique within its tenant and entity type. Any printable
    /// text: upstream systems choose it.
    RecordId,
    "record id",
    |field, raw| {
        if raw.is_empty() || raw.len() > MAX_RECORD_ID_LEN {
            return Err(Error::validation(
                field,
                format!("must be 1 to {MAX_RECORD_ID_LEN} bytes"),
            ));
        }
        if raw.chars().any(char::is_control) {
            return Err(Error::validation(field, "must not contain control characters"));
        }
        Ok(raw.to_owned())
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_reject_the_key_separator_and_empty_values() {
        assert!(TenantId::parse("acme-co_1.eu").is_ok());
        assert!(TenantId::parse("a#b").is_err());
        assert!(TenantId::parse("").is_err());
        assert!(EntityType::parse(&"x".repeat(65)).is_err());
        assert!(SourceId::parse("zoho creator").is_err());
    }

    #[test]
    fn record_ids_accept_upstream_text_but_not_control_characters() {
        assert!(RecordId::parse("evt_1#part/2 ü").is_ok());
        assert!(RecordId::parse("a\nb").is_err());
        assert!(RecordId::parse("").is_err());
    }

    #[test]
    fn ids_deserialize_through_parse() {
        let bad: std::result::Result<TenantId, _> = serde_json::from_str("\"a#b\"");
        assert!(bad.is_err());
        let good: TenantId = serde_json::from_str("\"acme\"").expect("valid tenant");
        assert_eq!(good.as_str(), "acme");
    }
}
