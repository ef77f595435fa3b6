//! The cover picture stored with each video (`STORE_COVERS`), so that thumbnails outlive
//! Douyin's signed cover URLs, which expire.
//!
//! After the video is stored and before the job completes, `Covers::attach` fetches the
//! post's best static cover (the extraction's `MediaSource::cover_urls`: `origin_cover`
//! before `cover`, JPEG or PNG before WebP) through the same guarded downloader as the media
//! (public addresses only, every redirect hop checked) with a small size cap and time limit,
//! checks that it is an image (JPEG, PNG, WebP or HEIC, by its magic bytes and dimensions),
//! and stores it through the storage stage under `COVER_KEY_TEMPLATE`
//! (`{douyin_id}/{douyin_id}_cover.{ext}`) with its content type and cache control; a retry
//! or a forced download replaces it under the same key. An image post's cover is its first
//! picture, already stored as the post's own object: no second copy.
//!
//! The row's thumbnail then lasts: `videos.thumbnail_url` becomes the stored cover's public
//! URL when the store has one (a public Supabase Storage bucket), else the download API's
//! `/api/videos/{id}/thumbnail`, which redirects to a signed link or serves the file. The URL
//! it replaced, and what was stored, go to `storage_metadata.cover`.
//!
//! A cover that cannot be had never fails the video: the job completes without one, the
//! reason is logged (a warning with its code) and counted
//! (`douyin_cover_failures_total{reason}`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::download::HttpDownloader;
use crate::error::JobError;
use crate::queue::{StoredObject, VideoUpdate};
use crate::stage::{DownloadedFile, JobContext, MediaInfo, MediaSource, StageJob, Storage};
use crate::storage::ObjectBackend;

/// Largest cover accepted: Douyin's covers are tens to hundreds of KiB.
pub(crate) const MAX_COVER_BYTES: u64 = 5 * 1024 * 1024;

/// Longest time fetching, checking and storing a cover may take, retries included.
pub(crate) const COVER_TIMEOUT: Duration = Duration::from_secs(60);

/// The download API's route for a video's cover: the lasting thumbnail where the store has no
/// public URL.
pub(crate) fn thumbnail_route(video_id: uuid::Uuid) -> String {
    format!("/api/videos/{video_id}/thumbnail")
}

/// Stores covers for the pipeline.
pub struct Covers {
    downloader: HttpDownloader,
    storage: Arc<dyn Storage>,
    backend: Arc<dyn ObjectBackend>,
    key_template: String,
}

/// A cover that was stored (or, for an image post, found among the post's objects).
struct StoredCover {
    key: String,
    /// What `storage_metadata.cover` records besides the key and URLs.
    details: Value,
}

impl Covers {
    /// Covers fetched by `downloader` (whose size cap should be `MAX_COVER_BYTES`), stored
    /// through `storage` (the pipeline's stage) under `key_template` in `backend` (which
    /// tells the public URL).
    pub fn new(
        downloader: HttpDownloader,
        storage: Arc<dyn Storage>,
        backend: Arc<dyn ObjectBackend>,
        key_template: impl Into<String>,
    ) -> Self {
        Self {
            downloader,
            storage,
            backend,
            key_template: key_template.into(),
        }
    }

    /// Stores the cover of the video `stored` holds and records it on `stored` (metadata) and
    /// `video` (the lasting thumbnail). Never fails: a cover that cannot be had is logged and
    /// counted, and the job goes on without it.
    pub(crate) async fn attach(
        &self,
        job: &StageJob,
        source: &MediaSource,
        stored: &mut StoredObject,
        video: &mut VideoUpdate,
        ctx: &JobContext,
    ) {
        let found = if stored.mime_type.starts_with("image/") {
            // An image post: its first picture is the cover, already stored.
            Ok(StoredCover {
                key: stored.object_key.clone(),
                details: json!({ "first_picture": true, "mime_type": stored.mime_type }),
            })
        } else {
            match tokio::time::timeout(COVER_TIMEOUT, self.fetch_and_store(job, source, ctx)).await
            {
                Ok(found) => found,
                Err(_) => Err(JobError::transient(
                    "cover-timeout",
                    format!("the cover took longer than {COVER_TIMEOUT:?}"),
                )),
            }
        };
        let cover = match found {
            Ok(cover) => cover,
            Err(e) => {
                tracing::warn!(code = e.code, error = %e, "cover not stored; the video completes without one");
                metrics::counter!(crate::metrics::COVER_FAILURES, "reason" => crate::metrics::code_label(e.code))
                    .increment(1);
                return;
            }
        };
        let url = match self.backend.public_url(&cover.key).await {
            Ok(Some(url)) => url,
            Ok(None) => thumbnail_route(job.video_id),
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell the cover's public URL; pointing the thumbnail at the download API");
                thumbnail_route(job.video_id)
            }
        };
        let mut record = cover.details;
        record["key"] = json!(cover.key);
        record["url"] = json!(url);
        record["replaced_thumbnail_url"] = json!(replaced_thumbnail(job, source, &url));
        if let Some(meta) = stored.storage_metadata.as_object_mut() {
            meta.insert("cover".into(), record);
        }
        tracing::info!(key = %cover.key, "cover stored");
        metrics::counter!(crate::metrics::COVERS_STORED).increment(1);
        video.stored_thumbnail_url = Some(url);
    }

    /// Downloads the cover into the job's temp folder, checks it is an image and stores it.
    async fn fetch_and_store(
        &self,
        job: &StageJob,
        source: &MediaSource,
        ctx: &JobContext,
    ) -> Result<StoredCover, JobError> {
        if source.cover_urls.is_empty() {
            return Err(JobError::permanent(
                "no-cover",
                "the post's record lists no static cover",
            ));
        }
        let cover_source = MediaSource {
            urls: source.cover_urls.clone(),
            expected_size: None,
            key_suffix: None,
            parts: Vec::new(),
            cover_urls: Vec::new(),
            key_template: Some(self.key_template.clone()),
            ..source.clone()
        };
        let dir = ctx.temp_dir().map_err(|e| {
            JobError::transient("temp-file", format!("temp folder (TEMP_DIR): {e}"))
        })?;
        let file = self
            .downloader
            .download_to(&cover_source, dir, &|_, _| {})
            .await
            .map_err(|e| {
                if e.code == "too-large" {
                    JobError::permanent(
                        e.code,
                        format!("the cover is larger than {MAX_COVER_BYTES} bytes"),
                    )
                } else {
                    e
                }
            })?;
        let stored = self.check_and_store(job, &cover_source, &file, ctx).await;
        // The job's temp folder goes at the end; the cover need not wait for it.
        let _ = std::fs::remove_file(&file.path);
        stored
    }

    async fn check_and_store(
        &self,
        job: &StageJob,
        cover_source: &MediaSource,
        file: &DownloadedFile,
        ctx: &JobContext,
    ) -> Result<StoredCover, JobError> {
        let path = file.path.clone();
        let info = tokio::task::spawn_blocking(move || validate_cover(&path))
            .await
            .map_err(|e| {
                JobError::transient("validate-panic", format!("validation crashed: {e}"))
            })??;
        let stored = self
            .storage
            .store(job, cover_source, file, &info, ctx)
            .await?;
        Ok(StoredCover {
            key: stored.object_key,
            details: json!({
                "mime_type": stored.mime_type,
                "size": stored.filesize,
                "etag": stored.storage_etag,
                "sha256": file.sha256,
                "media": info.metadata,
            }),
        })
    }
}

/// Checks that the file is an image; what the storage stage records of it.
fn validate_cover(path: &Path) -> Result<MediaInfo, JobError> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| JobError::transient("temp-file", format!("temp file: {e}")))?;
    let info = crate::validate::validate_image(&mut f)?;
    Ok(crate::validate::image_media_info(&info))
}

/// The thumbnail the lasting `url` replaces: the row's, unless it already is a lasting one
/// (a video stored again), else the Douyin cover URL extraction gave.
fn replaced_thumbnail(job: &StageJob, source: &MediaSource, url: &str) -> Option<String> {
    job.thumbnail_url
        .clone()
        .filter(|t| !t.is_empty() && t != url && !t.starts_with("/api/videos/"))
        .or_else(|| source.video.thumbnail_url.clone())
}
