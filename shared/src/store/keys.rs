//! Key layout of the single table. Tenant, entity, source and client ids
//! cannot contain `#` (see `model::ids`), so these keys never collide.

use std::fmt::Display;

use sha2::{Digest, Sha256};

use crate::model::{ClientId, EntityType, RecordId, TenantId};

pub const PK: &str = "pk";
pub const SK: &str = "sk";
/// Sort key of the `by_ord` local secondary index: a queued message's
/// visible-at time (records carry their feed number as `seq`, outside any
/// index: `feed.rs`).
pub const ORD: &str = "ord";
/// Epoch seconds; the table's TTL attribute. Expiry is also checked in code
/// because DynamoDB deletes expired items late.
pub const EXPIRES_AT: &str = "expires_at";
pub const BY_ORD: &str = "by_ord";

/// Partition keys the records of one tenant and entity type are spread
/// over, by a hash of the record id: one partition key takes at most 1,000
/// write units a second on DynamoDB, and none may split while the table has
/// a local index, so one key would cap an entity type near 1,000 new
/// records a second. Listings read every shard and merge them in id order.
pub const RECORD_SHARDS: u32 = 16;

/// The shard a record id lives in: the first four bytes of the id's
/// SHA-256, which never change with the platform or the release (the key
/// of every record depends on it), and spread any id scheme evenly
/// (sequential numbers, UUIDs, slugs).
pub fn record_shard(id: &RecordId) -> u32 {
    shard_of(id.as_str())
}

pub(super) fn shard_of(id: &str) -> u32 {
    let digest = Sha256::digest(id.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % RECORD_SHARDS
}

/// The partition key of record `id`.
pub fn records_pk(tenant: &TenantId, entity: &EntityType, id: &RecordId) -> String {
    shard_pk(tenant, entity, record_shard(id))
}

/// The partition key of one shard of a tenant's records of one type.
pub fn shard_pk(tenant: impl Display, entity: impl Display, shard: u32) -> String {
    shard_key(&listing_key(tenant, entity), shard)
}

/// The partition key of one shard of the sharded collection `base` (a
/// tenant's records of one type, a destination's ledger).
pub fn shard_key(base: &str, shard: u32) -> String {
    format!("{base}#{shard}")
}

/// What names a destination's ledger across its shards.
pub fn ledger_base(destination: impl Display) -> String {
    format!("DL#{destination}")
}

/// The partition key of a destination's ledger entry for record `id`
/// (any type): the record's shard, so a destination's deliveries spread as
/// its records do.
pub fn ledger_pk(destination: impl Display, id: &str) -> String {
    shard_key(&ledger_base(destination), shard_of(id))
}

/// The partition key of a two-way pair's link from `external_id`, the
/// object's id at paired `source`: spread by that id, as links are only
/// ever read by it.
pub fn link_pk(source: impl Display, external_id: &str) -> String {
    shard_key(&format!("KL#{source}"), shard_of(external_id))
}

/// What names a listing of a tenant's records of one type across its
/// shards (in page tokens): no item has it as its partition key.
pub fn listing_key(tenant: impl Display, entity: impl Display) -> String {
    format!("T#{tenant}#R#{entity}")
}

/// The tenant and entity type of a record item's partition key, sharded
/// (`T#<tenant>#R#<entity>#<shard>`) or as stores before shards wrote it
/// (`T#<tenant>#E#<entity>`); `None` for any other item.
pub fn parse_records_pk(pk: &str) -> Option<(&str, &str)> {
    let rest = pk.strip_prefix("T#")?;
    if let Some((tenant, entity)) = rest.split_once(LEGACY_RECORDS) {
        return Some((tenant, entity));
    }
    let (tenant, sharded) = rest.split_once("#R#")?;
    let (entity, shard) = sharded.rsplit_once('#')?;
    shard.parse::<u32>().ok()?;
    Some((tenant, entity))
}

/// The infix of a record partition key written before records were
/// sharded: `T#<tenant>#E#<entity>`, one key per tenant and type; and the
/// prefixes of a destination's ledger (`D#<destination>`) and of a paired
/// source's links (`K#<source>`) when each had one partition key.
pub const LEGACY_RECORDS: &str = "#E#";
pub const LEGACY_LEDGER: &str = "D#";
pub const LEGACY_LINKS: &str = "K#";

pub fn record_sk(id: &RecordId) -> String {
    format!("R#{id}")
}

pub fn tenant_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}")
}

pub const COUNTER_SK: &str = "SEQ";

pub fn client_sk(client: &ClientId) -> String {
    format!("CLIENT#{client}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_s_shard_never_changes_with_the_release() {
        // Pinned: every stored record's key depends on these. The SHA-256
        // of "a" starts ca978112.
        let shard = |raw: &str| record_shard(&RecordId::parse(raw).expect("id"));
        assert_eq!([shard("a"), shard("job-00001"), shard("p007")], [2, 11, 5]);
    }

    #[test]
    fn sharded_keys_name_their_collection_and_records_either_layout() {
        let tenant = TenantId::parse("acme").expect("tenant");
        let entity = EntityType::parse("task").expect("entity");
        let id = RecordId::parse("a").expect("id");
        assert_eq!(records_pk(&tenant, &entity, &id), "T#acme#R#task#2");
        // A record's ledger entries share its shard; links go by the id.
        assert_eq!(ledger_pk("calendar", "a"), "DL#calendar#2");
        assert_eq!(link_pk("gcal", "a"), "KL#gcal#2");
        assert_eq!(parse_records_pk("T#acme#R#task#2"), Some(("acme", "task")));
        assert_eq!(parse_records_pk("T#acme#E#task"), Some(("acme", "task")));
        for other in [
            "T#acme",
            "T#acme#R#task",
            "T#acme#R#task#x",
            "X#lease#a",
            "F#acme",
        ] {
            assert_eq!(parse_records_pk(other), None, "{other}");
        }
    }
}
