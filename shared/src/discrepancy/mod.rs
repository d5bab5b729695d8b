//! Finding what differs between a source and the store. A source that
//! serves range digests is compared range by range against digests the
//! store side keeps up to date from its change feed ([`ranges`]); any other
//! source is listed in one streaming pass into hash buckets over the
//! record-id space. Either way only ranges or buckets whose digests differ
//! are compared record by record. The report names the missing, extra and
//! stale ids; repair queues force-syncs for them (docs/DISCREPANCIES.md).

pub mod ranges;

use std::collections::HashMap;

use ranges::StoreRanges;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::connectors::{Bounds, Fetched, HttpSource, PageState, transform};
use crate::error::{Error, Result};
use crate::ingest::{ForceSyncWork, SyncEngine};
use crate::model::{ContentHash, RecordId, SourceId, Timestamp};
use crate::queue::RetryQueue;
use crate::retry::{RetryEnvelope, WorkKind};
use crate::store::{Change, LogStream, Store};

/// Buckets over the id space (the first 12 bits of SHA-256 of the id).
const BUCKETS: usize = 4096;
/// Ids listed per kind in a report; the totals count them all.
const REPORT_CAP: usize = 1000;
pub const REPORT_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

pub fn reports_stream() -> LogStream {
    LogStream::discrepancies()
}

/// One check's findings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub id: String,
    pub source: SourceId,
    #[serde(with = "crate::model::iso")]
    pub at: Timestamp,
    pub duration_ms: u64,
    pub source_count: u64,
    pub store_count: u64,
    pub missing: Vec<String>,
    pub extra: Vec<String>,
    pub stale: Vec<String>,
    pub missing_total: u64,
    pub extra_total: u64,
    pub stale_total: u64,
    /// How the sides were compared: `ranges` (the source's range digests
    /// against the store's) or `listing` (both listed into hash buckets).
    #[serde(default = "listing")]
    pub method: String,
    /// Ranges or buckets the id space was cut into.
    #[serde(default)]
    pub buckets: u64,
    /// Buckets whose digests differed.
    pub buckets_differing: u64,
    /// Records compared one by one (those in differing buckets).
    pub compared: u64,
    /// Records read one by one from the source, and from the store
    /// (including what keeping the store's range digests up to date read).
    #[serde(default)]
    pub read_source: u64,
    #[serde(default)]
    pub read_store: u64,
    /// Force-syncs queued for repair.
    pub repairs_queued: u64,
}

fn listing() -> String {
    METHOD_LISTING.into()
}

const METHOD_LISTING: &str = "listing";
const METHOD_RANGES: &str = "ranges";
const METHOD_ID_LISTING: &str = "id_listing";
/// Pairs asked for per page of a source's range listing.
const RANGE_PAGE: u32 = 1000;

impl Report {
    pub fn differences(&self) -> u64 {
        self.missing_total + self.extra_total + self.stale_total
    }
}

/// (id, content hash) per bucket, and each bucket's digest.
#[derive(Default)]
struct Side {
    entries: HashMap<usize, Vec<(String, String)>>,
    digests: HashMap<usize, [u8; 32]>,
    count: u64,
}

fn bucket_of(id: &str) -> usize {
    let digest = Sha256::digest(id.as_bytes());
    (usize::from(digest[0]) << 4 | usize::from(digest[1] >> 4)) % BUCKETS
}

impl Side {
    fn add(&mut self, id: String, hash: String) {
        let bucket = bucket_of(&id);
        let mut h = Sha256::new();
        h.update(id.as_bytes());
        h.update([0]);
        h.update(hash.as_bytes());
        let entry: [u8; 32] = h.finalize().into();
        let digest = self.digests.entry(bucket).or_insert([0; 32]);
        for (d, e) in digest.iter_mut().zip(entry) {
            *d ^= e;
        }
        self.entries.entry(bucket).or_default().push((id, hash));
        self.count += 1;
    }
}

pub struct DiscrepancyChecker {
    store: Store,
    queue: Arc<dyn RetryQueue>,
    engine: Arc<SyncEngine>,
}

impl std::fmt::Debug for DiscrepancyChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscrepancyChecker").finish_non_exhaustive()
    }
}

impl DiscrepancyChecker {
    pub fn new(store: Store, queue: Arc<dyn RetryQueue>, engine: Arc<SyncEngine>) -> Self {
        Self {
            store,
            queue,
            engine,
        }
    }

    /// Compares `source` with the store, stores the report, and with
    /// `repair` queues a force-sync for every differing id.
    pub async fn check(&self, source_id: &SourceId, repair: bool) -> Result<Report> {
        let started = Instant::now();
        let source = self.engine.sources().get(source_id)?;
        let mut report = Report {
            id: uuid::Uuid::new_v4().simple().to_string(),
            source: source_id.clone(),
            at: Timestamp::now(),
            duration_ms: 0,
            source_count: 0,
            store_count: 0,
            missing: Vec::new(),
            extra: Vec::new(),
            stale: Vec::new(),
            missing_total: 0,
            extra_total: 0,
            stale_total: 0,
            method: String::new(),
            buckets: 0,
            buckets_differing: 0,
            compared: 0,
            read_source: 0,
            read_store: 0,
            repairs_queued: 0,
        };
        if source.spec().digests.is_some() {
            self.compare_ranges(source, &mut report).await?;
        } else if source.spec().id_listing.is_some() {
            self.compare_id_listing(source, &mut report).await?;
        } else {
            self.compare_listings(source, &mut report).await?;
        }
        for list in [&mut report.missing, &mut report.extra, &mut report.stale] {
            list.sort();
        }
        if repair && report.differences() > 0 {
            report.repairs_queued = self.repair(source_id, &report).await?;
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        let id = self
            .store
            .append_log(&reports_stream(), &report, REPORT_RETENTION)
            .await?;
        self.store
            .put_log(
                &LogStream::discrepancies_of(source_id),
                &id,
                &report,
                REPORT_RETENTION,
            )
            .await?;
        if source.spec().notify {
            crate::delivery::publish(
                &self.store,
                &source.spec().tenant,
                source_id,
                &report.id,
                "discrepancy.report",
                &report,
            )
            .await;
        }
        Ok(report)
    }

    /// The store's ranges of `source`, brought up to date, noted in the
    /// report of a check by `method`.
    async fn store_ranges(
        &self,
        source: &HttpSource,
        report: &mut Report,
        method: &str,
    ) -> Result<StoreRanges> {
        let spec = source.spec();
        let (stored, refresh) =
            StoreRanges::refresh(&self.store, &spec.tenant, &spec.entity, &report.source).await?;
        report.method = method.into();
        report.buckets = stored.bounds.len() as u64;
        report.read_store = refresh.records_read;
        report.store_count = stored.count();
        Ok(stored)
    }

    /// Range `i` as the store holds it, compared with the source's pairs.
    async fn diff_range(
        &self,
        source: &HttpSource,
        report: &mut Report,
        stored: &StoreRanges,
        i: usize,
        upstream: &[(String, String)],
    ) -> Result<()> {
        let spec = source.spec();
        let (from, to) = (stored.bounds[i].as_str(), stored.upper(i));
        let local = ranges::list_range(
            &self.store,
            &spec.tenant,
            &spec.entity,
            &report.source,
            from,
            to,
        )
        .await?;
        report.read_store += local.read;
        diff(report, upstream, &local.records);
        Ok(())
    }

    /// The source's range digests against the store's, kept up to date
    /// from the change feed; only differing ranges are listed, on both
    /// sides.
    async fn compare_ranges(&self, source: &HttpSource, report: &mut Report) -> Result<()> {
        let stored = self.store_ranges(source, report, METHOD_RANGES).await?;
        let theirs = source.range_digests(&stored.bounds).await?;
        report.source_count = theirs.iter().map(|(count, _)| count).sum();
        for (i, ((count, digest), ours)) in theirs.iter().zip(&stored.digests).enumerate() {
            if *count == ours.count && *digest == ours.hex() {
                continue;
            }
            report.buckets_differing += 1;
            let (from, to) = (stored.bounds[i].as_str(), stored.upper(i));
            let mut upstream = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let (page, next) = source
                    .range_marks(from, to, after.as_deref(), RANGE_PAGE)
                    .await?;
                upstream.extend(page);
                match next {
                    Some(next) if after.as_ref().is_none_or(|a| next > *a) => after = Some(next),
                    Some(_) => {
                        return Err(Error::Upstream {
                            service: "source".into(),
                            reason: "the range listing did not move forward".into(),
                            retryable: false,
                        });
                    }
                    None => break,
                }
            }
            report.read_source += upstream.len() as u64;
            self.diff_range(source, report, &stored, i, &upstream)
                .await?;
        }
        Ok(())
    }

    /// The source listed with ids and updated-at only, into the store's
    /// ranges (kept up to date from the change feed); only differing ranges
    /// are listed on the store side.
    async fn compare_id_listing(&self, source: &HttpSource, report: &mut Report) -> Result<()> {
        let spec = source.spec();
        let Some(listing) = &spec.id_listing else {
            return Err(Error::internal("the source has no id listing"));
        };
        let stored = self.store_ranges(source, report, METHOD_ID_LISTING).await?;

        let lister = source.with_query(&listing.query);
        let mut theirs = vec![ranges::RangeDigest::default(); stored.bounds.len()];
        let mut pairs: Vec<Vec<(String, String)>> = vec![Vec::new(); stored.bounds.len()];
        report.read_source += list_source(&lister, |item| {
            if let Some((id, mark)) = id_and_mark(spec, item) {
                let i = stored.range_of(&id);
                theirs[i].add(&id, &mark);
                pairs[i].push((id, mark));
            }
        })
        .await?;
        report.source_count = theirs.iter().map(|d| d.count).sum();
        for (i, (digest, upstream)) in theirs.iter().zip(&pairs).enumerate() {
            if digest == &stored.digests[i] {
                continue;
            }
            report.buckets_differing += 1;
            self.diff_range(source, report, &stored, i, upstream)
                .await?;
        }
        Ok(())
    }

    /// Both sides listed in full into hash buckets; only differing buckets
    /// are compared record by record.
    async fn compare_listings(&self, source: &HttpSource, report: &mut Report) -> Result<()> {
        let spec = source.spec();

        // The source, page by page: ids and content hashes only are kept.
        let mut upstream = Side::default();
        report.read_source += list_source(source, |item| {
            // Items that cannot become records are not compared.
            if let Ok(item) = transform(spec, item)
                && let Change::Put(data) = &item.change
            {
                let hash = ContentHash::of(data, false);
                upstream.add(item.id.to_string(), hash.as_str().to_owned());
            }
        })
        .await?;

        // The store: the source's live records.
        let mut stored = Side::default();
        let mut pages = self
            .store
            .record_heads_unordered(&spec.tenant, &spec.entity);
        while let Some(listed) = pages.try_next().await? {
            report.read_store += listed.len() as u64;
            for record in listed
                .iter()
                .filter(|r| !r.deleted && r.source.as_ref() == Some(&report.source))
            {
                stored.add(record.id.to_string(), record.hash.as_str().to_owned());
            }
        }

        report.method = METHOD_LISTING.into();
        report.buckets = BUCKETS as u64;
        report.source_count = upstream.count;
        report.store_count = stored.count;
        let zero = [0u8; 32];
        for bucket in 0..BUCKETS {
            let a = upstream.digests.get(&bucket).unwrap_or(&zero);
            let b = stored.digests.get(&bucket).unwrap_or(&zero);
            if a == b {
                continue;
            }
            report.buckets_differing += 1;
            let empty = Vec::new();
            diff(
                report,
                upstream.entries.get(&bucket).unwrap_or(&empty),
                stored.entries.get(&bucket).unwrap_or(&empty),
            );
        }
        Ok(())
    }

    /// Queues a force-sync per differing id (capped ids; beyond the cap a
    /// full resync is queued instead).
    async fn repair(&self, source: &SourceId, report: &Report) -> Result<u64> {
        let listed = report.missing.len() + report.extra.len() + report.stale.len();
        let all_listed = listed as u64 == report.differences();
        let has_record_path = self
            .engine
            .sources()
            .get(source)?
            .spec()
            .record_path
            .is_some();
        let mut queued = 0;
        if !all_listed || !has_record_path {
            let work = crate::ingest::SyncRunWork {
                source: Some(source.clone()),
                kind: Some(crate::model::RunKind::Full),
            };
            self.send(
                WorkKind::SyncRun,
                &work,
                source,
                &format!("repair:{}", report.id),
            )
            .await?;
            return Ok(1);
        }
        for id in report
            .missing
            .iter()
            .chain(&report.extra)
            .chain(&report.stale)
        {
            let work = ForceSyncWork {
                source: source.clone(),
                id: RecordId::parse(id)?,
            };
            self.send(
                WorkKind::ForceSync,
                &work,
                source,
                &format!("repair:{}:{id}", report.id),
            )
            .await?;
            queued += 1;
        }
        Ok(queued)
    }

    async fn send(
        &self,
        kind: WorkKind,
        work: &impl Serialize,
        source: &SourceId,
        key: &str,
    ) -> Result<()> {
        let payload = serde_json::to_value(work).map_err(|e| Error::Internal {
            context: "serializing repair work".into(),
            source: Some(Box::new(e)),
        })?;
        let mut envelope = RetryEnvelope::new(kind, payload, key, "");
        envelope.attempt = 0;
        envelope.last_error = None;
        envelope.source = Some(source.clone());
        self.queue
            .send(&envelope.to_body()?, Duration::ZERO)
            .await?;
        Ok(())
    }

    /// Stored reports, newest first: of every source, or of one.
    pub async fn reports(&self, source: Option<&SourceId>, limit: u32) -> Result<Vec<Report>> {
        let stream = source.map_or_else(reports_stream, LogStream::discrepancies_of);
        let page = self.store.read_log::<Report>(&stream, limit, None).await?;
        Ok(page.items.into_iter().map(|e| e.entry).collect())
    }
}

/// Lists `source` in full (no incremental bound), handing each item to
/// `each`; returns how many items were read.
async fn list_source(source: &HttpSource, mut each: impl FnMut(&Value)) -> Result<u64> {
    let mut read = 0;
    let mut page = PageState::First;
    loop {
        let fetched = match source.fetch(&page, &Bounds::default()).await? {
            Fetched::Page(fetched) => fetched,
            Fetched::Gone => {
                return Err(Error::Upstream {
                    service: "source".into(),
                    reason: "the source refused a full listing (HTTP 410)".into(),
                    retryable: true,
                });
            }
        };
        read += fetched.items.len() as u64;
        fetched.items.iter().for_each(&mut each);
        match fetched.next {
            Some(next) => page = next,
            None => return Ok(read),
        }
    }
}

/// A listed item's id and updated-at (as text); `None` for items without an
/// id and for deletion markers.
fn id_and_mark(spec: &crate::connectors::SourceSpec, item: &Value) -> Option<(String, String)> {
    let id = match item.pointer(&spec.id)? {
        Value::String(id) => id.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    if let Some((pointer, value)) = &spec.deleted_when
        && item.pointer(pointer) == Some(value)
    {
        return None;
    }
    let mark = spec
        .updated_at
        .as_ref()
        .and_then(|p| item.pointer(p))
        .filter(|v| !v.is_null())
        .map(crate::connectors::mark_text)
        .unwrap_or_default();
    Some((id, mark))
}

/// Compares one bucket's (id, version) pairs: the source's against the
/// store's.
fn diff(report: &mut Report, upstream: &[(String, String)], stored: &[(String, String)]) {
    let ours: HashMap<&str, &str> = stored
        .iter()
        .map(|(id, v)| (id.as_str(), v.as_str()))
        .collect();
    let theirs: HashMap<&str, &str> = upstream
        .iter()
        .map(|(id, v)| (id.as_str(), v.as_str()))
        .collect();
    report.compared += (ours.len() + theirs.len()) as u64;
    for (id, version) in &theirs {
        match ours.get(id) {
            None => push(&mut report.missing, &mut report.missing_total, id),
            Some(v) if v != version => push(&mut report.stale, &mut report.stale_total, id),
            Some(_) => {}
        }
    }
    for id in ours.keys().filter(|id| !theirs.contains_key(*id)) {
        push(&mut report.extra, &mut report.extra_total, id);
    }
}

fn push(list: &mut Vec<String>, total: &mut u64, id: &str) {
    *total += 1;
    if list.len() < REPORT_CAP {
        list.push(id.to_owned());
    }
}
