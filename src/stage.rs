//! The stages' shared words: what a job's stages hand each other, and the four stage traits
//! ([`Extractor`], [`Downloader`], [`Validator`], [`Storage`]) that the
//! pipeline (`pipeline::Pipeline`) runs in order.
//!
//! The stages know the job only as a [`StageJob`], built once from the claimed job, so
//! extraction and storage do not depend on the queue's row. The worker loop knows only
//! [`JobHandler`], runs it with a [`JobContext`] (cancellation, temp folder, progress) and
//! records its [`JobOutput`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::JobError;
use crate::queue::{ClaimedJob, JobQueue, Learned, Lease, QueueError};
pub use crate::queue::{StoredObject, VideoUpdate};
use crate::workdir::JobWorkdir;

pub mod progress;
pub use progress::ProgressBoard;

/// What the stages know of a job, taken once from the claimed job.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StageJob {
    /// `download_jobs.video_id`.
    pub video_id: Uuid,
    /// `videos.douyin_id`, when known (a short link's id is learnt by extraction).
    pub douyin_id: Option<String>,
    /// `videos.video_url`, the Douyin page link.
    pub link: Option<String>,
    /// `download_jobs.payload`, e.g. `{"url": "..."}`.
    pub payload: Option<Value>,
    /// The direct media URL an earlier extraction cached on the video row.
    pub cached: Option<CachedMedia>,
    /// `videos.thumbnail_url` when the job was claimed.
    pub thumbnail_url: Option<String>,
}

/// A direct media URL cached on the video row (`video_url_direct`, `video_url_meta`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CachedMedia {
    /// The URL.
    pub url: String,
    /// What is known about it (its candidate with mirrors and size, the post's metadata).
    pub meta: Option<Value>,
}

impl StageJob {
    /// The same job without the cached URL: extraction must ask Douyin again.
    pub(crate) fn without_cache(&self) -> Self {
        Self {
            cached: None,
            ..self.clone()
        }
    }
}

impl From<&ClaimedJob> for StageJob {
    fn from(job: &ClaimedJob) -> Self {
        Self {
            video_id: job.video_id,
            douyin_id: job.video.douyin_id.clone(),
            link: job.video.video_url.clone(),
            payload: job.payload.clone(),
            cached: job.video.video_url_direct.clone().map(|url| CachedMedia {
                url,
                meta: job.video.video_url_meta.clone(),
            }),
            thumbnail_url: job.video.thumbnail_url.clone(),
        }
    }
}

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

/// What a handler gets besides the job: cancellation, a temp folder, progress reporting.
#[derive(Debug)]
pub struct JobContext {
    lease: Lease,
    worker_id: Arc<str>,
    cancel: CancellationToken,
    workdir: JobWorkdir,
    progress: Arc<ProgressBoard>,
    queue: Option<Arc<dyn JobQueue>>,
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
            queue: None,
        }
    }

    /// The same context, able to record what the job learns on `queue`
    /// ([`JobContext::learn_douyin_id`]); the worker gives every job its queue.
    pub(crate) fn with_queue(mut self, queue: Arc<dyn JobQueue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Records the Douyin id extraction learnt for a job whose video row had none, merging
    /// the row into another that has it (see `JobQueue::learn_douyin_id`). Without a queue
    /// (a job run outside a worker) there is nothing to merge: `Kept`.
    pub async fn learn_douyin_id(&self, douyin_id: &str) -> Result<Learned, QueueError> {
        match &self.queue {
            Some(q) => {
                q.learn_douyin_id(&self.worker_id, &self.lease, douyin_id)
                    .await
            }
            None => Ok(Learned::Kept),
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
    pub(crate) fn temp_location(&self) -> &Path {
        self.workdir.location()
    }

    /// Reports bytes done and total; written to the queue at most once per whole percent and
    /// per half second, the final 100 % at once (see [`progress`]).
    pub fn report_progress(&self, done: u64, total: Option<u64>) {
        self.progress.set(self.lease, done, total);
    }
}

impl Drop for JobContext {
    fn drop(&mut self) {
        self.progress.remove(&self.lease);
    }
}

/// The [`MediaSource::strategy`] of a source answered from the direct URL cached on the video
/// row ([`StageJob::cached`]) instead of a fresh extraction.
pub(crate) const CACHED_STRATEGY: &str = "cache";

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
    /// Mirrors of the post's best static cover picture, best first (stored beside the video
    /// when `STORE_COVERS` is on).
    pub cover_urls: Vec<String>,
    /// The object key template of this file when it is not the configured one (the cover's
    /// `COVER_KEY_TEMPLATE`).
    pub key_template: Option<String>,
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
            cover_urls: Vec::new(),
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
    /// Extracts the media source for the job; a job with [`StageJob::cached`] may be answered
    /// from the cache.
    async fn extract(&self, job: &StageJob, ctx: &JobContext) -> Result<MediaSource, JobError>;
}

/// Stage 2: streams the media into the job's temp folder.
#[async_trait]
pub trait Downloader: Send + Sync + 'static {
    /// Downloads the source.
    async fn download(
        &self,
        source: &MediaSource,
        ctx: &JobContext,
    ) -> Result<DownloadedFile, DownloadError>;
}

/// Why a download gave no file.
#[derive(Clone, Debug, thiserror::Error)]
pub enum DownloadError {
    /// Every mirror refused the signed URLs as expired: a fresh extraction may give new ones.
    #[error("{0}")]
    Expired(JobError),
    /// Any other failure.
    #[error("{0}")]
    Failed(JobError),
}

impl From<DownloadError> for JobError {
    fn from(e: DownloadError) -> Self {
        match e {
            DownloadError::Expired(e) | DownloadError::Failed(e) => e,
        }
    }
}

impl From<JobError> for DownloadError {
    fn from(e: JobError) -> Self {
        DownloadError::Failed(e)
    }
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
        job: &StageJob,
        source: &MediaSource,
        file: &DownloadedFile,
        info: &MediaInfo,
        ctx: &JobContext,
    ) -> Result<StoredObject, JobError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_download_is_a_job_error_with_its_code() {
        let e: JobError =
            DownloadError::Expired(JobError::transient("cdn-forbidden", "403")).into();
        assert_eq!(e.code, "cdn-forbidden");
    }
}
