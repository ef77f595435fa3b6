//! The job handler and the pipeline it runs: extract → download → validate → upload.
//!
//! The worker loop only knows [`JobHandler`]. The real handler is [`Pipeline`], built from
//! one implementation per stage ([`Extractor`], [`Downloader`], [`Validator`], [`Storage`]).
//! [`Pipeline::build`] refuses to build while a stage has no implementation, so `run` can
//! say that it cannot process jobs instead of pretending.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::error::JobError;
use crate::queue::{ClaimedJob, Lease, StoredObject, VideoUpdate};
use crate::workdir::JobWorkdir;

/// What a successful job hands back to the queue.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobOutput {
    /// The stored object.
    pub stored: StoredObject,
    /// Fields to fill in on the video row.
    pub video: VideoUpdate,
}

/// Runs one claimed job. The worker loop calls it once per attempt.
///
/// Implementations watch [`JobContext::cancelled`] for long waits; the loop also drops the
/// future when the job is cancelled, so anything held (temp files) must clean up on drop.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// Processes the job.
    async fn handle(&self, job: &ClaimedJob, ctx: &JobContext) -> Result<JobOutput, JobError>;
}

/// Latest progress of the jobs a worker runs, flushed to the queue at a bounded rate.
#[derive(Debug, Default)]
pub struct ProgressBoard {
    entries: Mutex<HashMap<Lease, ProgressEntry>>,
}

#[derive(Debug, Clone, Copy)]
struct ProgressEntry {
    done: u64,
    total: Option<u64>,
    dirty: bool,
}

impl ProgressBoard {
    /// Records progress; cheap enough to call for every chunk.
    pub fn set(&self, lease: Lease, done: u64, total: Option<u64>) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(
            lease,
            ProgressEntry {
                done,
                total,
                dirty: true,
            },
        );
    }

    /// Forgets a finished job.
    pub fn remove(&self, lease: &Lease) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(lease);
    }

    /// Takes the entries changed since the last call.
    pub fn take_dirty(&self) -> Vec<(Lease, u64, Option<u64>)> {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.iter_mut()
            .filter(|(_, e)| e.dirty)
            .map(|(l, e)| {
                e.dirty = false;
                (*l, e.done, e.total)
            })
            .collect()
    }
}

/// What a handler gets besides the job: cancellation, a temp folder, progress reporting.
#[derive(Debug)]
pub struct JobContext {
    lease: Lease,
    worker_id: Arc<str>,
    cancel: CancellationToken,
    workdir: JobWorkdir,
    progress: Arc<ProgressBoard>,
}

impl JobContext {
    /// A context for one attempt; its temp folder lives under `temp_root`.
    pub fn new(
        lease: Lease,
        worker_id: Arc<str>,
        cancel: CancellationToken,
        temp_root: &Path,
        progress: Arc<ProgressBoard>,
    ) -> Self {
        Self {
            lease,
            worker_id,
            cancel,
            workdir: JobWorkdir::new(temp_root, lease.job_id),
            progress,
        }
    }

    /// The job and its lease.
    pub fn lease(&self) -> Lease {
        self.lease
    }

    /// This worker's id (for object metadata).
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Cancelled when the job must stop: shutdown past the grace period, or the lease lost.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The job's private temp folder, created on first use and removed when the job ends.
    pub fn temp_dir(&self) -> std::io::Result<&Path> {
        self.workdir.path()
    }

    /// Where the temp folder is (it may not exist yet).
    pub fn temp_location(&self) -> &Path {
        self.workdir.location()
    }

    /// Reports bytes done and total; sent to the queue at most about once a second.
    pub fn report_progress(&self, done: u64, total: Option<u64>) {
        self.progress.set(self.lease, done, total);
    }
}

impl Drop for JobContext {
    fn drop(&mut self) {
        self.progress.remove(&self.lease);
    }
}

/// A direct media URL (with mirrors) and what was learnt about the video.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MediaSource {
    /// The aweme id.
    pub douyin_id: String,
    /// Mirrors of the same file, in order of preference.
    pub urls: Vec<String>,
    /// Request headers the CDN expects (User-Agent, Referer, cookies). May hold secrets:
    /// never log them.
    pub headers: Vec<(String, String)>,
    /// The size the source announced, to check the download against.
    pub expected_size: Option<u64>,
    /// Which extraction strategy answered.
    pub strategy: String,
    /// Title and cover to fill in on the video row when empty, and the cache fields.
    pub video: VideoUpdate,
    /// Everything else worth keeping (author, music, statistics, candidates).
    pub metadata: Value,
    /// Inserted before the object key's extension (`_2`, `_music`) for one part of a
    /// multi-file post; `None` for the main file.
    pub key_suffix: Option<String>,
    /// More files of the same post, stored beside the main one under the same key with their
    /// own suffix: an image post's other pictures, live photos' motion, the soundtrack.
    pub parts: Vec<MediaPart>,
}

/// One more file of a multi-file post (see [`MediaSource::parts`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MediaPart {
    /// Inserted before the extension of the post's object key, e.g. `_2`, `_1_live`, `_music`.
    pub key_suffix: String,
    /// Mirrors of the file, in order of preference.
    pub urls: Vec<String>,
    /// The size the source announced.
    pub expected_size: Option<u64>,
}

impl MediaSource {
    /// The source of one part: the same headers and post, that part's URLs and suffix.
    pub fn part(&self, part: &MediaPart) -> MediaSource {
        MediaSource {
            urls: part.urls.clone(),
            expected_size: part.expected_size,
            key_suffix: Some(part.key_suffix.clone()),
            parts: Vec::new(),
            ..self.clone()
        }
    }
}

/// A downloaded file in the job's temp folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadedFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its hex SHA-256.
    pub sha256: String,
}

/// What validation found out about a file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MediaInfo {
    /// Content type, e.g. `video/mp4`.
    pub mime_type: String,
    /// File extension without the dot, e.g. `mp4`.
    pub extension: String,
    /// Duration, dimensions, codecs, brand, fast start.
    pub metadata: Value,
}

/// Stage 1: turns the job's link into a direct, watermark-free media URL.
#[async_trait]
pub trait Extractor: Send + Sync + 'static {
    /// Extracts the media source for the job.
    async fn extract(&self, job: &ClaimedJob, ctx: &JobContext) -> Result<MediaSource, JobError>;

    /// Extracts again without any cached answer (the last URLs were refused as expired).
    async fn extract_fresh(
        &self,
        job: &ClaimedJob,
        ctx: &JobContext,
    ) -> Result<MediaSource, JobError> {
        self.extract(job, ctx).await
    }
}

/// Stage 2: streams the media into the job's temp folder.
#[async_trait]
pub trait Downloader: Send + Sync + 'static {
    /// Downloads the source.
    async fn download(
        &self,
        source: &MediaSource,
        ctx: &JobContext,
    ) -> Result<DownloadedFile, JobError>;
}

/// Stage 3: checks that the file is what it claims to be. Blocking; run off the runtime.
pub trait Validator: Send + Sync + 'static {
    /// Validates the file.
    fn validate(&self, file: &DownloadedFile) -> Result<MediaInfo, JobError>;
}

/// Stage 4: stores the validated file and verifies it arrived.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Uploads the file for the job.
    async fn store(
        &self,
        job: &ClaimedJob,
        source: &MediaSource,
        file: &DownloadedFile,
        info: &MediaInfo,
        ctx: &JobContext,
    ) -> Result<StoredObject, JobError>;
}

/// The stages a pipeline is built from; `None` where no implementation exists yet.
#[derive(Default)]
pub struct Stages {
    /// Extraction.
    pub extractor: Option<Arc<dyn Extractor>>,
    /// Download.
    pub downloader: Option<Arc<dyn Downloader>>,
    /// Validation.
    pub validator: Option<Arc<dyn Validator>>,
    /// Storage.
    pub storage: Option<Arc<dyn Storage>>,
}

/// The pipeline cannot run: some stages have no implementation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot process jobs yet: no implementation for {}", .missing.join(", "))]
pub struct NotReady {
    /// The missing stages.
    pub missing: Vec<&'static str>,
}

/// The real job handler: extract → download → validate → upload.
pub struct Pipeline {
    extractor: Arc<dyn Extractor>,
    downloader: Arc<dyn Downloader>,
    validator: Arc<dyn Validator>,
    storage: Arc<dyn Storage>,
}

impl Pipeline {
    /// Builds the pipeline, or says which stages are missing.
    pub fn build(stages: Stages) -> Result<Self, NotReady> {
        let mut missing = Vec::new();
        if stages.extractor.is_none() {
            missing.push("extraction");
        }
        if stages.downloader.is_none() {
            missing.push("download");
        }
        if stages.validator.is_none() {
            missing.push("validation");
        }
        if stages.storage.is_none() {
            missing.push("storage");
        }
        match stages {
            Stages {
                extractor: Some(extractor),
                downloader: Some(downloader),
                validator: Some(validator),
                storage: Some(storage),
            } => Ok(Self {
                extractor,
                downloader,
                validator,
                storage,
            }),
            _ => Err(NotReady { missing }),
        }
    }
}

#[async_trait]
impl JobHandler for Pipeline {
    async fn handle(&self, job: &ClaimedJob, ctx: &JobContext) -> Result<JobOutput, JobError> {
        let mut source = timed("extract", self.extractor.extract(job, ctx)).await?;
        tracing::info!(strategy = %source.strategy, mirrors = source.urls.len(), "extracted");
        let file = match timed("download", self.downloader.download(&source, ctx)).await {
            // Every mirror refused the signed URL: extract once more for fresh ones.
            Err(e) if e.code == crate::download::CDN_FORBIDDEN => {
                tracing::info!(error = %e, "media URLs expired; extracting again");
                source = timed("extract", self.extractor.extract_fresh(job, ctx)).await?;
                timed("download", self.downloader.download(&source, ctx)).await?
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
        Ok(JobOutput { stored, video })
    }
}

impl Pipeline {
    /// Validates a downloaded file (off the async threads) and stores it.
    async fn validate_and_store(
        &self,
        job: &ClaimedJob,
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
        .map_err(|e| JobError::transient("validate-panic", format!("validation crashed: {e}")))??;
        let stored = timed("upload", self.storage.store(job, source, file, &info, ctx)).await?;
        metrics::counter!(crate::metrics::BYTES_UPLOADED).increment(file.size);
        Ok((info, stored))
    }

    /// Downloads, validates and stores each further part of a multi-file post, one after the
    /// other (each file is removed once stored); returns what was stored, for the metadata.
    async fn store_parts(
        &self,
        job: &ClaimedJob,
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

/// Runs one stage and records how long it took, whatever its outcome.
async fn timed<F: std::future::Future>(stage: &'static str, f: F) -> F::Output {
    let started = std::time::Instant::now();
    let out = f.await;
    metrics::histogram!(crate::metrics::STAGE_SECONDS, "stage" => stage)
        .record(started.elapsed().as_secs_f64());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_names_every_missing_stage() {
        let e = Pipeline::build(Stages::default()).err().unwrap();
        assert_eq!(
            e.to_string(),
            "cannot process jobs yet: no implementation for extraction, download, validation, storage"
        );
    }

    #[test]
    fn progress_board_hands_out_changes_once() {
        let b = ProgressBoard::default();
        let l = Lease {
            job_id: uuid::Uuid::new_v4(),
            lease_id: uuid::Uuid::new_v4(),
        };
        b.set(l, 10, Some(100));
        b.set(l, 20, Some(100));
        assert_eq!(b.take_dirty(), vec![(l, 20, Some(100))]);
        assert!(b.take_dirty().is_empty());
        b.set(l, 30, None);
        b.remove(&l);
        assert!(b.take_dirty().is_empty());
    }
}
