//! Range digests over the record-id space: the store side kept between
//! checks, and the digest format a source with a digest endpoint serves.
//!
//! A range holds the ids from its lower bound (inclusive) up to the next
//! range's (exclusive), in byte order; the first range starts at "" and the
//! last runs to the end. Its digest is the count of live records and the XOR
//! of [`entry`] over them, so adding or removing a record changes it and the
//! order records are met in does not.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::model::{EntityType, Seq, SourceId, TenantId};
use crate::store::{KvExpect, KvKey, RecordMark, Store};

/// Bytes of SHA-256 kept per record and per range.
pub const DIGEST_BYTES: usize = 16;
/// Ranges are sized so a store side has about this many.
const TARGET_RANGES: u64 = 4096;
/// The smallest range size aimed at.
const MIN_RANGE: u64 = 16;
/// Ranges per stored chunk item (ids are at most 512 bytes).
const CHUNK_RANGES: usize = 256;
/// Records read per store query page.
const PAGE: u32 = 1000;
const FORMAT: u32 = 2;

/// A record's digest entry: the first 16 bytes of SHA-256 over its id, a
/// zero byte, and the source's version of it (its updated-at as text).
pub fn entry(id: &str, mark: &str) -> [u8; DIGEST_BYTES] {
    let mut hasher = Sha256::new();
    hasher.update(id.as_bytes());
    hasher.update([0]);
    hasher.update(mark.as_bytes());
    let full = hasher.finalize();
    let mut out = [0; DIGEST_BYTES];
    out.copy_from_slice(&full[..DIGEST_BYTES]);
    out
}

/// The count and digest of one range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeDigest {
    pub count: u64,
    pub digest: [u8; DIGEST_BYTES],
}

impl RangeDigest {
    pub fn add(&mut self, id: &str, mark: &str) {
        self.add_entry(&entry(id, mark));
    }

    pub fn add_entry(&mut self, entry: &[u8; DIGEST_BYTES]) {
        self.count += 1;
        for (d, e) in self.digest.iter_mut().zip(entry) {
            *d ^= e;
        }
    }

    fn merge(&mut self, other: &RangeDigest) {
        self.count += other.count;
        for (d, e) in self.digest.iter_mut().zip(other.digest) {
            *d ^= e;
        }
    }

    pub fn hex(&self) -> String {
        hex::encode(self.digest)
    }

    fn from_hex(count: u64, text: &str) -> Option<Self> {
        let bytes = hex::decode(text).ok()?;
        let digest = bytes.try_into().ok()?;
        Some(Self { count, digest })
    }
}

/// The (id, mark) of a live record `source` owns, as a range digest counts
/// it; `None` for tombstones and other owners' records.
pub fn counted(record: RecordMark, source: &SourceId) -> Option<(String, String)> {
    (!record.deleted && record.source.as_ref() == Some(source)).then(|| {
        (
            record.id.to_string(),
            record.source_version.unwrap_or_default(),
        )
    })
}

/// The store side of a source: range bounds, their digests, and the
/// change-feed position they reflect.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreRanges {
    pub bounds: Vec<String>,
    pub digests: Vec<RangeDigest>,
    pub seq: Seq,
    /// The range size aimed at.
    pub target: u64,
}

/// What keeping the store side up to date cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refresh {
    /// Built from scratch (no usable stored ranges).
    pub built: bool,
    /// Records changed since the stored position.
    pub changed: u64,
    /// Ranges listed again.
    pub ranges_listed: u64,
    /// Records read one by one to do it.
    pub records_read: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredHead {
    format: u32,
    scope: String,
    seq: u64,
    target: u64,
    /// The content hash of each chunk, in order: a save rewrites only the
    /// chunks whose hash changed, and a load checks every chunk against it.
    chunks: Vec<String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct StoredChunk {
    /// (lower bound, count, digest hex) per range.
    ranges: Vec<(String, u64, String)>,
}

impl StoredChunk {
    fn content_hash(&self) -> Result<String> {
        let text = serde_json::to_vec(&self.ranges)
            .map_err(|e| Error::internal(format!("serializing range digests: {e}")))?;
        Ok(hex::encode(&Sha256::digest(&text)[..8]))
    }
}

fn head_key(source: &SourceId) -> KvKey {
    KvKey::new(KvKey::DIGESTS, source.as_str())
}

fn chunk_key(source: &SourceId, n: usize) -> KvKey {
    KvKey::new(KvKey::DIGESTS, format!("{source}#{n}"))
}

fn scope(tenant: &TenantId, entity: &EntityType) -> String {
    format!("{tenant}/{entity}")
}

impl StoreRanges {
    /// The range holding `id`.
    pub fn range_of(&self, id: &str) -> usize {
        self.bounds
            .partition_point(|bound| bound.as_str() <= id)
            .saturating_sub(1)
    }

    /// The exclusive upper bound of range `i` (`None`: the last range).
    pub fn upper(&self, i: usize) -> Option<&str> {
        self.bounds.get(i + 1).map(String::as_str)
    }

    pub fn count(&self) -> u64 {
        self.digests.iter().map(|d| d.count).sum()
    }

    /// The stored ranges of `source` brought up to date with the change
    /// feed (only ranges holding a changed record are listed again), or
    /// built in one pass when there are none; saved when they changed.
    pub async fn refresh(
        store: &Store,
        tenant: &TenantId,
        entity: &EntityType,
        source: &SourceId,
    ) -> Result<(Self, Refresh)> {
        let Some(mut ranges) = Self::load(store, tenant, entity, source).await? else {
            return Self::rebuild(store, tenant, entity, source, 0).await;
        };
        let (changed, upto) = store.changed_record_ids(tenant, entity, ranges.seq).await?;
        // More changes than records kept: one pass costs less than listing
        // range after range.
        if changed.len() as u64 > ranges.count().max(MIN_RANGE) {
            return Self::rebuild(store, tenant, entity, source, changed.len() as u64).await;
        }
        let mut dirty: Vec<usize> = changed
            .iter()
            .map(|id| ranges.range_of(id.as_str()))
            .collect();
        dirty.sort_unstable();
        dirty.dedup();
        let mut refresh = Refresh {
            built: false,
            changed: changed.len() as u64,
            ranges_listed: dirty.len() as u64,
            records_read: 0,
        };
        // Rebuilt back to front, so the indices of ranges not yet handled
        // stay valid while earlier ones split or disappear.
        for &i in dirty.iter().rev() {
            let (from, to) = (ranges.bounds[i].clone(), ranges.upper(i).map(str::to_owned));
            let listed = list_range(store, tenant, entity, source, &from, to.as_deref()).await?;
            refresh.records_read += listed.read;
            let (bounds, digests) = split(&from, &listed.records, ranges.target);
            ranges.bounds.splice(i..=i, bounds);
            ranges.digests.splice(i..=i, digests);
        }
        ranges.coalesce_empty();
        // Grown to twice the ranges aimed at: resize them in one pass.
        if ranges.bounds.len() as u64 > 2 * TARGET_RANGES {
            return Self::rebuild(store, tenant, entity, source, changed.len() as u64).await;
        }
        let moved = upto != ranges.seq;
        ranges.seq = upto;
        if moved {
            ranges.save(store, tenant, entity, source).await?;
        }
        Ok((ranges, refresh))
    }

    async fn rebuild(
        store: &Store,
        tenant: &TenantId,
        entity: &EntityType,
        source: &SourceId,
        changed: u64,
    ) -> Result<(Self, Refresh)> {
        let (ranges, read) = Self::build(store, tenant, entity, source).await?;
        ranges.save(store, tenant, entity, source).await?;
        let refresh = Refresh {
            built: true,
            changed,
            ranges_listed: ranges.bounds.len() as u64,
            records_read: read,
        };
        Ok((ranges, refresh))
    }

    /// One pass over the source's records: fine ranges first, then joined
    /// to the size the record count calls for.
    async fn build(
        store: &Store,
        tenant: &TenantId,
        entity: &EntityType,
        source: &SourceId,
    ) -> Result<(Self, u64)> {
        // Read before listing: changes made while listing are listed again
        // by the next refresh.
        let seq = store.latest_seq(tenant).await?;
        let mut fine_bounds = vec![String::new()];
        let mut fine = vec![RangeDigest::default()];
        let mut read = 0;
        let mut after = None;
        loop {
            let page = store
                .list_record_marks(tenant, entity, "", None, PAGE, after.as_ref())
                .await?;
            read += page.items.len() as u64;
            for (id, mark) in page.items.into_iter().filter_map(|r| counted(r, source)) {
                let last = fine.len() - 1;
                if fine[last].count >= MIN_RANGE {
                    fine_bounds.push(id.clone());
                    fine.push(RangeDigest::default());
                }
                let last = fine.len() - 1;
                fine[last].add(&id, &mark);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let total: u64 = fine.iter().map(|d| d.count).sum();
        let target = range_size(total);
        let per = (target / MIN_RANGE).max(1) as usize;
        let mut ranges = Self {
            bounds: Vec::with_capacity(fine.len() / per + 1),
            digests: Vec::with_capacity(fine.len() / per + 1),
            seq,
            target,
        };
        for (bounds, digests) in fine_bounds.chunks(per).zip(fine.chunks(per)) {
            let mut joined = RangeDigest::default();
            digests.iter().for_each(|d| joined.merge(d));
            ranges.bounds.push(bounds[0].clone());
            ranges.digests.push(joined);
        }
        Ok((ranges, read))
    }

    /// Drops empty ranges (but the first): the range before takes their
    /// ids, and an empty range adds nothing to its digest.
    fn coalesce_empty(&mut self) {
        let mut i = 1;
        while i < self.bounds.len() {
            if self.digests[i].count == 0 {
                self.bounds.remove(i);
                self.digests.remove(i);
            } else {
                i += 1;
            }
        }
    }

    async fn load(
        store: &Store,
        tenant: &TenantId,
        entity: &EntityType,
        source: &SourceId,
    ) -> Result<Option<Self>> {
        let Some(head) = store.kv_get::<StoredHead>(&head_key(source)).await? else {
            return Ok(None);
        };
        let head = head.value;
        if head.format != FORMAT || head.scope != scope(tenant, entity) {
            return Ok(None);
        }
        let keys: Vec<KvKey> = (0..head.chunks.len())
            .map(|n| chunk_key(source, n))
            .collect();
        let chunks = futures_util::future::try_join_all(
            keys.iter().map(|key| store.kv_get::<StoredChunk>(key)),
        )
        .await?;
        let mut ranges = Self {
            bounds: Vec::new(),
            digests: Vec::new(),
            seq: Seq::new(head.seq),
            target: head.target,
        };
        for (chunk, expected) in chunks.into_iter().zip(&head.chunks) {
            // A chunk missing or rewritten by a concurrent save: build afresh.
            let Some(chunk) = chunk.map(|c| c.value) else {
                return Ok(None);
            };
            if &chunk.content_hash()? != expected {
                return Ok(None);
            }
            for (bound, count, digest) in chunk.ranges {
                let digest = RangeDigest::from_hex(count, &digest)
                    .ok_or_else(|| Error::internal("a stored range digest is malformed"))?;
                ranges.bounds.push(bound);
                ranges.digests.push(digest);
            }
        }
        if ranges.bounds.first().is_none_or(|first| !first.is_empty()) {
            return Ok(None);
        }
        Ok(Some(ranges))
    }

    /// Writes the chunks whose content changed, then the head naming every
    /// chunk's content, then removes chunks past the new end.
    async fn save(
        &self,
        store: &Store,
        tenant: &TenantId,
        entity: &EntityType,
        source: &SourceId,
    ) -> Result<()> {
        let previous = store
            .kv_get::<StoredHead>(&head_key(source))
            .await?
            .map(|head| head.value.chunks)
            .unwrap_or_default();
        let mut hashes = Vec::new();
        for (n, (bounds, digests)) in self
            .bounds
            .chunks(CHUNK_RANGES)
            .zip(self.digests.chunks(CHUNK_RANGES))
            .enumerate()
        {
            let chunk = StoredChunk {
                ranges: bounds
                    .iter()
                    .zip(digests)
                    .map(|(bound, d)| (bound.clone(), d.count, d.hex()))
                    .collect(),
            };
            let hash = chunk.content_hash()?;
            if previous.get(n) != Some(&hash) {
                store
                    .kv_put(&chunk_key(source, n), &chunk, None, KvExpect::Any)
                    .await?;
            }
            hashes.push(hash);
        }
        let count = hashes.len();
        let head = StoredHead {
            format: FORMAT,
            scope: scope(tenant, entity),
            seq: self.seq.get(),
            target: self.target,
            chunks: hashes,
        };
        store
            .kv_put(&head_key(source), &head, None, KvExpect::Any)
            .await?;
        for n in count..previous.len() {
            store.kv_delete(&chunk_key(source, n), None).await?;
        }
        Ok(())
    }
}

/// The range size for `total` records: about [`TARGET_RANGES`] ranges, at
/// least [`MIN_RANGE`] records each, a multiple of it.
fn range_size(total: u64) -> u64 {
    total
        .div_ceil(TARGET_RANGES)
        .div_ceil(MIN_RANGE)
        .max(1)
        .saturating_mul(MIN_RANGE)
}

/// A range's counted records in id order, and how many items were read.
pub struct Listed {
    pub records: Vec<(String, String)>,
    pub read: u64,
}

/// The records of `source` in `[from, to)` as the store holds them.
pub async fn list_range(
    store: &Store,
    tenant: &TenantId,
    entity: &EntityType,
    source: &SourceId,
    from: &str,
    to: Option<&str>,
) -> Result<Listed> {
    let mut listed = Listed {
        records: Vec::new(),
        read: 0,
    };
    let mut after = None;
    loop {
        let page = store
            .list_record_marks(tenant, entity, from, to, PAGE, after.as_ref())
            .await?;
        listed.read += page.items.len() as u64;
        listed
            .records
            .extend(page.items.into_iter().filter_map(|r| counted(r, source)));
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(listed),
        }
    }
}

/// One listed range as one range, or several of `target` records when it
/// has grown past twice that.
fn split(from: &str, records: &[(String, String)], target: u64) -> (Vec<String>, Vec<RangeDigest>) {
    let pieces = if records.len() as u64 > 2 * target {
        records.chunks(target as usize).collect()
    } else {
        vec![records]
    };
    let mut bounds = Vec::with_capacity(pieces.len());
    let mut digests = Vec::with_capacity(pieces.len());
    for (n, piece) in pieces.into_iter().enumerate() {
        bounds.push(if n == 0 {
            from.to_owned()
        } else {
            piece[0].0.clone()
        });
        let mut digest = RangeDigest::default();
        for (id, mark) in piece {
            digest.add(id, mark);
        }
        digests.push(digest);
    }
    (bounds, digests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_ignore_order_and_see_every_change() {
        let mut a = RangeDigest::default();
        let mut b = RangeDigest::default();
        a.add("p1", "2026-01-01");
        a.add("p2", "2026-01-02");
        b.add("p2", "2026-01-02");
        b.add("p1", "2026-01-01");
        assert_eq!(a, b);
        let mut c = RangeDigest::default();
        c.add("p1", "2026-01-01");
        c.add("p2", "2026-01-03");
        assert_ne!(a, c);
        assert_eq!(RangeDigest::from_hex(2, &a.hex()), Some(a));
    }

    #[test]
    fn ranges_are_found_by_lower_bound_and_sized_for_about_4096() {
        let ranges = StoreRanges {
            bounds: vec![String::new(), "m".into(), "t".into()],
            digests: vec![RangeDigest::default(); 3],
            seq: Seq::ZERO,
            target: 16,
        };
        assert_eq!(ranges.range_of("a"), 0);
        assert_eq!(ranges.range_of("m"), 1);
        assert_eq!(ranges.range_of("s"), 1);
        assert_eq!(ranges.range_of("zz"), 2);
        assert_eq!(ranges.upper(1), Some("t"));
        assert_eq!(ranges.upper(2), None);
        assert_eq!(range_size(0), 16);
        assert_eq!(range_size(2_419), 16);
        assert_eq!(range_size(1_000_000), 256);
        let records: Vec<(String, String)> = (0..40)
            .map(|i| (format!("r{i:02}"), String::new()))
            .collect();
        let (bounds, digests) = split("", &records, 16);
        assert_eq!(bounds, vec!["", "r16", "r32"]);
        assert_eq!(
            digests.iter().map(|d| d.count).collect::<Vec<_>>(),
            vec![16, 16, 8]
        );
    }
}
