//! `gc`: deletes stored objects that no video wants any more.
//!
//! Videos deleted by `cleanup_old_low_viral()` or by hand, and videos marked for deletion,
//! leave their objects behind; so does a video stored again under another key (the old
//! worker's timestamped keys). The command lists every object of the configured store, asks
//! the queue which keys videos still want ([`QueueAdmin::wanted_object_keys`]: videos in this
//! bucket or with none recorded, not marked for deletion, whatever their status), and treats
//! the rest as orphans. Objects younger than `--min-age` are kept: an upload in flight is not
//! recorded on its video yet. The store is listed before the queue is asked, so an object
//! recorded in between counts as wanted.
//!
//! The `.{uuid}.part` files of uploads that never finished (a worker killed mid-upload into the
//! local folder) older than `--min-age` go too, listed as unfinished uploads.
//!
//! A dry run (the default) prints what would be deleted; `--apply` deletes and reports each
//! object. Failed deletions are reported, the others still proceed, and the command exits 1.
//! A recorded key that starts with `{bucket}/` also protects the key without that prefix (a
//! writer that put the bucket name in the key). With `--apply`, a queue that wants no key at
//! all while the store has objects is refused: that is a queue pointed at the wrong
//! database far more often than a store to be emptied.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;

use super::table::{self, NONE, Table};
use super::{AdminError, Format, Out, write_json};
use crate::queue::QueueAdmin;
use crate::storage::{ListedObject, ObjectBackend};

/// Deletions in flight at once.
const DELETE_CONCURRENCY: usize = 8;

/// What `gc` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcOptions {
    /// Delete; otherwise only print what would be deleted.
    pub apply: bool,
    /// Keep orphans younger than this (and those whose age the store does not tell, unless
    /// this is zero).
    pub min_age: Duration,
}

/// The default `--min-age`.
pub(crate) const DEFAULT_MIN_AGE: &str = "24h";

/// Parses `--min-age`: `0`, or whole numbers with units `s`, `m`, `h`, `d` (`90m`, `1d12h`);
/// a bare number is seconds.
pub(crate) fn parse_age(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?}: expected a duration such as 24h, 90m, 7d, 1d12h or 0");
    let text = s.trim();
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|n| total.checked_add(n))
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// What happened, or would happen, to one orphan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GcResult {
    /// Dry run: it would be deleted.
    WouldDelete,
    /// Deleted.
    Deleted,
    /// It was gone by the time it was deleted.
    AlreadyGone,
    /// Deleting failed (see the error).
    Failed,
}

impl GcResult {
    fn as_str(self) -> &'static str {
        match self {
            GcResult::WouldDelete => "would delete",
            GcResult::Deleted => "deleted",
            GcResult::AlreadyGone => "already gone",
            GcResult::Failed => "failed",
        }
    }
}

/// One orphan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GcItem {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written, if the store says.
    pub last_modified: Option<DateTime<Utc>>,
    /// What happened to it.
    pub result: GcResult,
    /// Why deleting it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Not an object: what an upload that never finished left behind (a worker killed
    /// mid-upload into the local folder leaves a `.{uuid}.part` file).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub partial_upload: bool,
}

/// What `gc` found and did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// The store's bucket.
    pub bucket: String,
    /// The store's kind (`local`, `supabase`, `s3`).
    pub provider: String,
    /// Whether orphans were deleted (else a dry run).
    pub apply: bool,
    /// `--min-age`, in seconds.
    pub min_age_seconds: u64,
    /// Objects listed in the store.
    pub objects: usize,
    /// Listed objects that videos want.
    pub wanted: usize,
    /// Orphans kept because they are younger than `--min-age` (or of unknown age).
    pub kept_young: usize,
    /// The orphans, by key.
    pub orphans: Vec<GcItem>,
    /// Their size in all.
    pub orphan_bytes: u64,
    /// Orphans deleted (or already gone).
    pub deleted: usize,
    /// Orphans whose deletion failed.
    pub failed: usize,
}

/// Finds the orphans of `store` and, with `opts.apply`, deletes them; prints the report.
pub async fn run(
    queue: &dyn QueueAdmin,
    store: &dyn ObjectBackend,
    opts: GcOptions,
    format: Format,
    out: Out<'_>,
) -> Result<GcReport, AdminError> {
    let mut report = plan(queue, store, opts, Utc::now()).await?;
    if opts.apply {
        delete(store, &mut report).await;
    }
    match format {
        Format::Json => write_json(out, &report)?,
        Format::Table => write_table(&report, out)?,
    }
    if report.failed > 0 {
        return Err(AdminError::Incomplete(format!(
            "{} of {} deletions failed",
            report.failed,
            report.orphans.len()
        )));
    }
    Ok(report)
}

/// Lists the store, asks the queue, and sorts the objects into wanted, young and orphans
/// (all `WouldDelete`).
pub async fn plan(
    queue: &dyn QueueAdmin,
    store: &dyn ObjectBackend,
    opts: GcOptions,
    now: DateTime<Utc>,
) -> Result<GcReport, AdminError> {
    // Listed first: an object recorded after the listing is wanted by the time we ask.
    let mut listed = store.list("").await?;
    let bucket = store.bucket().to_string();
    let wanted = protected_keys(queue.wanted_object_keys(&bucket).await?, &bucket);
    listed.sort_by(|a, b| a.key.cmp(&b.key));
    let mut report = GcReport {
        bucket,
        provider: store.provider().to_string(),
        apply: opts.apply,
        min_age_seconds: opts.min_age.as_secs(),
        objects: listed.len(),
        wanted: 0,
        kept_young: 0,
        orphans: Vec::new(),
        orphan_bytes: 0,
        deleted: 0,
        failed: 0,
    };
    for object in listed {
        // Supabase Studio's marker of an empty folder: not a video, never an orphan.
        if object.key.rsplit('/').next() == Some(".emptyFolderPlaceholder") {
            report.objects -= 1;
            continue;
        }
        if wanted.contains(&object.key) {
            report.wanted += 1;
        } else if too_young(&object, opts.min_age, now) {
            report.kept_young += 1;
        } else {
            report.push_orphan(object, false);
        }
    }
    if opts.apply && wanted.is_empty() && !report.orphans.is_empty() {
        return Err(AdminError::Usage(format!(
            "refusing to delete all {} objects of bucket {} ({}): the {} queue records no \
             stored object at all. Is this the store of that database? Check DATABASE_URL, \
             SUPABASE_URL and DATA_DIR (`gc` without --apply lists what would go)",
            report.orphans.len(),
            report.bucket,
            report.provider,
            queue.backend()
        )));
    }
    // Unfinished uploads are never wanted; those younger than --min-age may be in flight.
    let mut partial = store.list_partial_uploads().await?;
    partial.sort_by(|a, b| a.key.cmp(&b.key));
    for upload in partial {
        if !too_young(&upload, opts.min_age, now) {
            report.push_orphan(upload, true);
        }
    }
    Ok(report)
}

impl GcReport {
    /// Counts `object` as an orphan that would be deleted.
    fn push_orphan(&mut self, object: ListedObject, partial_upload: bool) {
        self.orphan_bytes += object.size;
        self.orphans.push(GcItem {
            key: object.key,
            size: object.size,
            last_modified: object.last_modified,
            result: GcResult::WouldDelete,
            error: None,
            partial_upload,
        });
    }
}

/// The keys gc must not delete: the wanted keys, and each without a leading `{bucket}/`.
fn protected_keys(wanted: HashSet<String>, bucket: &str) -> HashSet<String> {
    let prefix = format!("{bucket}/");
    let stripped: Vec<String> = wanted
        .iter()
        .filter_map(|k| k.strip_prefix(&prefix))
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect();
    let mut keys = wanted;
    keys.extend(stripped);
    keys
}

/// Whether an orphan is kept for its age: younger than `min_age`, or of unknown age (unless
/// `min_age` is zero).
fn too_young(object: &ListedObject, min_age: Duration, now: DateTime<Utc>) -> bool {
    if min_age.is_zero() {
        return false;
    }
    match object.last_modified {
        Some(at) => (now - at).to_std().map_or(true, |age| age < min_age),
        None => true,
    }
}

/// Deletes every orphan of `report`, a few at a time, and records each result.
async fn delete(store: &dyn ObjectBackend, report: &mut GcReport) {
    let results: Vec<_> = futures::stream::iter(report.orphans.iter().map(|o| o.key.clone()))
        .map(|key| async move { store.delete(&key).await })
        .buffered(DELETE_CONCURRENCY)
        .collect()
        .await;
    for (item, result) in report.orphans.iter_mut().zip(results) {
        match result {
            Ok(true) => item.result = GcResult::Deleted,
            Ok(false) => item.result = GcResult::AlreadyGone,
            Err(e) => {
                tracing::warn!(key = %item.key, error = %e, "gc: deleting an orphan failed");
                item.result = GcResult::Failed;
                item.error = Some(e.to_string());
            }
        }
    }
    report.failed = report
        .orphans
        .iter()
        .filter(|o| o.result == GcResult::Failed)
        .count();
    report.deleted = report.orphans.len() - report.failed;
}

/// The orphans, one per row, then a summary line.
pub(crate) fn write_table(r: &GcReport, out: Out<'_>) -> Result<(), AdminError> {
    let now = Utc::now();
    if !r.orphans.is_empty() {
        let mut t = Table::new(["KEY", "SIZE", "AGE", "RESULT"]).right_align(&[1]);
        for o in &r.orphans {
            let age = o
                .last_modified
                .and_then(|at| (now - at).to_std().ok())
                .map_or_else(|| NONE.to_string(), table::age);
            let mut result = match &o.error {
                Some(e) => format!("{}: {e}", o.result.as_str()),
                None => o.result.as_str().to_string(),
            };
            if o.partial_upload {
                result.push_str(" (unfinished upload)");
            }
            t.row([o.key.clone(), table::bytes(o.size), age, result]);
        }
        t.write(out)?;
    }
    let store = format!("bucket {} ({})", r.bucket, r.provider);
    let young = match r.kept_young {
        0 => String::new(),
        n => format!(
            "; kept {n} orphan{} younger than {}",
            plural(n),
            table::age(Duration::from_secs(r.min_age_seconds))
        ),
    };
    let counts = format!("{} objects, {} wanted", r.objects, r.wanted);
    let orphans = r.orphans.len();
    if orphans == 0 {
        writeln!(out, "no orphans to delete in {store} ({counts}){young}")?;
    } else if !r.apply {
        writeln!(
            out,
            "dry run: would delete {orphans} orphan{} ({}) from {store} ({counts}){young}; \
             run with --apply to delete",
            plural(orphans),
            table::bytes(r.orphan_bytes)
        )?;
    } else {
        let failed = match r.failed {
            0 => String::new(),
            n => format!("; {n} failed"),
        };
        writeln!(
            out,
            "deleted {} of {orphans} orphan{} ({}) from {store} ({counts}){failed}{young}",
            r.deleted,
            plural(orphans),
            table::bytes(r.orphan_bytes)
        )?;
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_with_units_and_name_the_bad_value() {
        assert_eq!(parse_age("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_age("0"), Ok(Duration::ZERO));
        assert_eq!(parse_age("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("1d12h"), Ok(Duration::from_secs(129_600)));
        assert_eq!(parse_age("30m"), Ok(Duration::from_secs(1800)));
        for bad in ["", "h", "12x", "1.5h", "24h5", "-1h"] {
            let e = parse_age(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn a_key_recorded_with_the_bucket_in_front_protects_the_bare_key() {
        let keys = protected_keys(
            HashSet::from(["videos/1/1.mp4".to_string(), "2/2.mp4".to_string()]),
            "videos",
        );
        assert!(keys.contains("1/1.mp4") && keys.contains("videos/1/1.mp4"));
        assert!(keys.contains("2/2.mp4"));
        assert_eq!(keys.len(), 3);
    }

    #[test]
    fn young_and_undated_orphans_are_kept_unless_min_age_is_zero() {
        let now = Utc::now();
        let object = |age_secs: Option<i64>| ListedObject {
            key: "k".into(),
            size: 1,
            last_modified: age_secs.map(|s| now - chrono::Duration::seconds(s)),
        };
        let day = Duration::from_secs(86_400);
        assert!(too_young(&object(Some(3600)), day, now));
        assert!(!too_young(&object(Some(2 * 86_400)), day, now));
        assert!(too_young(&object(None), day, now));
        assert!(!too_young(&object(None), Duration::ZERO, now));
        // A clock ahead of ours: kept.
        assert!(too_young(&object(Some(-60)), day, now));
    }
}
