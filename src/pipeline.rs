//! The pipeline a job runs: extract → download → validate → upload, then the further files
//! of a multi-file post and the cover ([`crate::cover`]). Built from one implementation of
//! each stage ([`crate::stage`]).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::JobError;
use crate::queue::{ClaimedJob, Learned, StoredObject};
use crate::stage::{
    CACHED_STRATEGY, DownloadError, DownloadedFile, Downloader, Extractor, JobContext, JobHandler,
    JobOutput, MediaInfo, MediaSource, StageJob, Storage, Validator,
};

/// The real job handler: extract → download → validate → upload.
pub struct Pipeline {
    extractor: Arc<dyn Extractor>,
    downloader: Arc<dyn Downloader>,
    validator: Arc<dyn Validator>,
    storage: Arc<dyn Storage>,
    covers: Option<Arc<crate::cover::Covers>>,
}

impl Pipeline {
    /// The pipeline over these four stages.
    pub fn new(
        extractor: Arc<dyn Extractor>,
        downloader: Arc<dyn Downloader>,
        validator: Arc<dyn Validator>,
        storage: Arc<dyn Storage>,
    ) -> Self {
        Self {
            extractor,
            downloader,
            validator,
            storage,
            covers: None,
        }
    }

    /// The same pipeline, storing each video's cover with it (`STORE_COVERS`).
    pub(crate) fn with_covers(mut self, covers: Arc<crate::cover::Covers>) -> Self {
        self.covers = Some(covers);
        self
    }
}

#[async_trait]
impl JobHandler for Pipeline {
    async fn handle(&self, job: &ClaimedJob, ctx: &JobContext) -> Result<JobOutput, JobError> {
        let mut stage_job = StageJob::from(job);
        let mut source = timed("extract", self.extractor.extract(&stage_job, ctx)).await?;
        tracing::info!(strategy = %source.strategy, mirrors = source.urls.len(), "extracted");
        learn_douyin_id(&mut stage_job, &source, ctx).await?;
        let job = &stage_job;
        let file = match timed("download", self.downloader.download(&source, ctx)).await {
            // Every mirror refused the signed URL: extract once more, without the cache.
            Err(DownloadError::Expired(e)) => {
                tracing::info!(error = %e, "media URLs expired; extracting again");
                let fresh = job.without_cache();
                source = timed("extract", self.extractor.extract(&fresh, ctx)).await?;
                timed("download", self.downloader.download(&source, ctx)).await?
            }
            Err(DownloadError::Failed(e)) if e.code == SIZE_MISMATCH => {
                return Err(blame_cache(&source, e));
            }
            other => other?,
        };
        metrics::counter!(crate::metrics::BYTES_DOWNLOADED).increment(file.size);
        tracing::info!(bytes = file.size, "downloaded");
        let (_, mut stored) = self.validate_and_store(job, &source, &file, ctx).await?;
        tracing::info!(bucket = %stored.bucket, key = %stored.object_key, "uploaded");
        if !source.parts.is_empty() {
            let parts = self.store_parts(job, &source, ctx).await?;
            if let Some(meta) = stored.storage_metadata.as_object_mut() {
                meta.insert("parts".into(), Value::Array(parts));
            }
        }
        let mut video = source.video.clone();
        if video.douyin_id.is_none() && !source.douyin_id.is_empty() {
            video.douyin_id = Some(source.douyin_id.clone());
        }
        if let Some(covers) = &self.covers {
            covers
                .attach(job, &source, &mut stored, &mut video, ctx)
                .await;
        }
        Ok(JobOutput { stored, video })
    }
}

impl Pipeline {
    /// Validates a downloaded file (off the async threads) and stores it.
    async fn validate_and_store(
        &self,
        job: &StageJob,
        source: &MediaSource,
        file: &DownloadedFile,
        ctx: &JobContext,
    ) -> Result<(MediaInfo, StoredObject), JobError> {
        let validator = self.validator.clone();
        let to_check = file.clone();
        let info = timed(
            "validate",
            tokio::task::spawn_blocking(move || validator.validate(&to_check)),
        )
        .await
        .map_err(|e| JobError::transient("validate-panic", format!("validation crashed: {e}")))?
        .map_err(|e| blame_cache(source, e))?;
        let stored = timed("upload", self.storage.store(job, source, file, &info, ctx)).await?;
        metrics::counter!(crate::metrics::BYTES_UPLOADED).increment(file.size);
        Ok((info, stored))
    }

    /// Downloads, validates and stores each further part of a multi-file post, one after the
    /// other (each file is removed once stored); returns what was stored, for the metadata.
    async fn store_parts(
        &self,
        job: &StageJob,
        source: &MediaSource,
        ctx: &JobContext,
    ) -> Result<Vec<Value>, JobError> {
        let mut stored_parts = Vec::with_capacity(source.parts.len());
        for part in &source.parts {
            let part_source = source.part(part);
            let file = timed("download", self.downloader.download(&part_source, ctx)).await?;
            metrics::counter!(crate::metrics::BYTES_DOWNLOADED).increment(file.size);
            let (info, stored) = self
                .validate_and_store(job, &part_source, &file, ctx)
                .await?;
            tracing::info!(key = %stored.object_key, bytes = file.size, "uploaded a part");
            // The job's temp folder goes at the end; a post of many pictures need not keep
            // them all until then.
            let _ = std::fs::remove_file(&file.path);
            stored_parts.push(serde_json::json!({
                "key": stored.object_key,
                "size": stored.filesize,
                "mime_type": stored.mime_type,
                "etag": stored.storage_etag,
                "sha256": file.sha256,
                "media": info.metadata,
            }));
        }
        Ok(stored_parts)
    }
}

/// A job whose video row had no Douyin id (a short link queued before it could be resolved)
/// records the one extraction learnt: when another row has it, this row is merged into that
/// one, and the job either carries on for it (`job` now names it) or stops
/// ([`crate::error::MERGED`]) because that row is stored or downloaded by its own job.
async fn learn_douyin_id(
    job: &mut StageJob,
    source: &MediaSource,
    ctx: &JobContext,
) -> Result<(), JobError> {
    if job.douyin_id.as_deref().is_some_and(|id| !id.is_empty()) || source.douyin_id.is_empty() {
        return Ok(());
    }
    let learned = ctx.learn_douyin_id(&source.douyin_id).await.map_err(|e| {
        JobError::transient(
            "queue-unavailable",
            format!("cannot record the Douyin id {}: {e}", source.douyin_id),
        )
    })?;
    match learned {
        Learned::Kept => {}
        Learned::Moved(video) => {
            tracing::info!(%video, douyin_id = %source.douyin_id, "another row has this Douyin id: merged into it, downloading for it");
            job.video_id = video;
        }
        Learned::Merged(video) => {
            return Err(JobError::permanent(
                crate::error::MERGED,
                format!(
                    "merged into video {video}, which has Douyin id {} and is stored or has a job of its own",
                    source.douyin_id
                ),
            ));
        }
        Learned::LeaseLost => {
            return Err(JobError::transient(
                crate::error::LEASE_LOST,
                "the lease was taken over while recording the Douyin id",
            ));
        }
    }
    job.douyin_id = Some(source.douyin_id.clone());
    Ok(())
}

/// The code of a download whose size is not the one announced.
const SIZE_MISMATCH: &str = "size-mismatch";

/// `e`, caused by the file `source` gave: when that source was the direct URL cached on the
/// video row, the error names it, and the queue forgets it so that the next attempt extracts
/// afresh instead of downloading the same bad file again.
fn blame_cache(source: &MediaSource, e: JobError) -> JobError {
    match source.urls.first() {
        Some(url) if source.strategy == CACHED_STRATEGY => {
            tracing::info!(
                code = e.code,
                "the cached direct URL gave a bad file: forgetting it"
            );
            e.with_stale_direct_url(url.clone())
        }
        _ => e,
    }
}

/// Runs one stage and records how long it took, whatever its outcome.
async fn timed<F: std::future::Future>(stage: &'static str, f: F) -> F::Output {
    let started = std::time::Instant::now();
    let out = f.await;
    metrics::histogram!(crate::metrics::STAGE_SECONDS, "stage" => stage)
        .record(started.elapsed().as_secs_f64());
    out
}
