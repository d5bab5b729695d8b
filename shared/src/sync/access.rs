//! What a client may do with the entity types, from its token's scopes.
//!
//! A token without a `scope` (or `scp`) claim may read and write every
//! entity type, as tokens always could. A token WITH one gets exactly what
//! its `sync:` scopes grant and nothing else (deny by default):
//!
//! | scope | grants |
//! |---|---|
//! | `sync:read` | read every entity type |
//! | `sync:write` | read and write every entity type |
//! | `sync:read:<entity>` | read one entity type |
//! | `sync:write:<entity>` | read and write one entity type |
//!
//! An entity type a client may not read does not exist for it: asking for
//! it gets the same answer as a name that was never registered.

use std::collections::BTreeSet;

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::model::{EntityType, TenantId};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Grant {
    All,
    Only(BTreeSet<String>),
}

impl Grant {
    fn allows(&self, entity: &EntityType) -> bool {
        match self {
            Grant::All => true,
            Grant::Only(names) => names.contains(entity.as_str()),
        }
    }

    fn add(&mut self, entity: Option<&str>) {
        match (entity, &mut *self) {
            (_, Grant::All) => {}
            (None, grant) => *grant = Grant::All,
            (Some(name), Grant::Only(names)) => {
                names.insert(name.to_owned());
            }
        }
    }
}

/// Who a sync request is for: the tenant from the token, and what the
/// token lets it do there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: TenantId,
    pub access: Access,
    /// Which client this is, for what the older routes remember per client
    /// (they send no client id): the `X-Client-Id` header, else the
    /// token's subject.
    pub device: Option<String>,
}

impl Caller {
    pub fn of(principal: &Principal) -> Self {
        Self {
            tenant: principal.tenant.clone(),
            access: Access::of(principal),
            device: principal.subject.clone(),
        }
    }

    /// With the client named by an `X-Client-Id` header (printable, at most
    /// 128 bytes; anything else is refused).
    pub fn with_device(mut self, header: Option<&str>) -> crate::error::Result<Self> {
        if let Some(device) = header {
            if device.is_empty()
                || device.len() > 128
                || !device.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(Error::validation(
                    "x-client-id",
                    "1 to 128 printable characters",
                ));
            }
            self.device = Some(device.to_owned());
        }
        Ok(self)
    }
}

/// A client's rights over the entity types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    read: Grant,
    write: Grant,
}

impl Access {
    /// Every entity type, read and write.
    pub fn full() -> Self {
        Self {
            read: Grant::All,
            write: Grant::All,
        }
    }

    /// From the caller's token: full without a scope claim, else what its
    /// `sync:` scopes grant.
    pub fn of(principal: &Principal) -> Self {
        if !principal.scope_claim {
            return Self::full();
        }
        let mut access = Self {
            read: Grant::Only(BTreeSet::new()),
            write: Grant::Only(BTreeSet::new()),
        };
        for scope in &principal.scopes {
            let Some(rest) = scope.strip_prefix("sync:") else {
                continue;
            };
            let (right, entity) = match rest.split_once(':') {
                Some((right, entity)) if !entity.is_empty() => (right, Some(entity)),
                Some(_) => continue,
                None => (rest, None),
            };
            match right {
                "read" => access.read.add(entity),
                "write" => {
                    access.read.add(entity);
                    access.write.add(entity);
                }
                _ => {}
            }
        }
        access
    }

    pub fn can_read(&self, entity: &EntityType) -> bool {
        self.read.allows(entity)
    }

    pub fn can_write(&self, entity: &EntityType) -> bool {
        self.write.allows(entity)
    }

    /// The entity types it may read, `None` for all: what a real-time
    /// connection keeps.
    pub fn reads(&self) -> Option<Vec<String>> {
        match &self.read {
            Grant::All => None,
            Grant::Only(names) => Some(names.iter().cloned().collect()),
        }
    }

    /// Read access to `reads` (`None`: every type), no writes.
    pub fn reading(reads: Option<&[String]>) -> Self {
        Self {
            read: match reads {
                None => Grant::All,
                Some(names) => Grant::Only(names.iter().cloned().collect()),
            },
            write: Grant::Only(BTreeSet::new()),
        }
    }

    /// Whether this is every entity type, read and write.
    pub fn is_full(&self) -> bool {
        self.read == Grant::All && self.write == Grant::All
    }

    /// The error for an entity type this client may not read: the one an
    /// unregistered name gets, so that it learns nothing.
    pub fn hidden(entity: &EntityType) -> Error {
        Error::validation("entity", format!("unknown entity type {entity}"))
    }

    /// `Ok` when the client may write `entity` (which it may read).
    pub fn check_write(&self, entity: &EntityType) -> Result<()> {
        if !self.can_read(entity) {
            return Err(Self::hidden(entity));
        }
        if !self.can_write(entity) {
            return Err(Error::Forbidden);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(scopes: Option<&[&str]>) -> Principal {
        Principal {
            tenant: TenantId::parse("acme").expect("tenant"),
            subject: None,
            scope_claim: scopes.is_some(),
            expires_at: None,
            scopes: scopes
                .unwrap_or_default()
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }

    fn entity(name: &str) -> EntityType {
        EntityType::parse(name).expect("entity")
    }

    #[test]
    fn a_token_without_a_scope_claim_reads_and_writes_everything() {
        let access = Access::of(&principal(None));
        assert!(access.is_full());
        assert!(access.check_write(&entity("task")).is_ok());
    }

    #[test]
    fn a_scope_claim_without_sync_scopes_grants_nothing() {
        let access = Access::of(&principal(Some(&["openid", "profile", "admin"])));
        assert!(!access.can_read(&entity("task")));
        assert!(!access.can_write(&entity("task")));
        assert!(!access.is_full());
    }

    #[test]
    fn entity_scopes_grant_those_types_and_write_implies_read() {
        let access = Access::of(&principal(Some(&["sync:read:note", "sync:write:task"])));
        assert!(access.can_read(&entity("note")));
        assert!(!access.can_write(&entity("note")));
        assert!(access.can_read(&entity("task")) && access.can_write(&entity("task")));
        assert!(!access.can_read(&entity("job")));
        assert!(matches!(
            access.check_write(&entity("note")),
            Err(Error::Forbidden)
        ));
        assert!(matches!(
            access.check_write(&entity("job")),
            Err(Error::Validation { .. })
        ));
    }

    #[test]
    fn read_only_everywhere() {
        let access = Access::of(&principal(Some(&["sync:read"])));
        assert!(access.can_read(&entity("anything")));
        assert!(!access.can_write(&entity("anything")));
        let malformed = Access::of(&principal(Some(&["sync:read:", "sync:admin"])));
        assert!(!malformed.can_read(&entity("task")));
    }
}
