//! The storage stage: one trait for the backends, and the stage that names the object,
//! uploads the validated file with its metadata, retries transient failures, and checks the
//! object arrived before the job may complete.
//!
//! - [`local`]: a local folder, the embedded default (`./data/videos`).
//! - [`supabase`]: Supabase Storage (standard uploads and TUS).
//! - [`object`]: S3, GCS and Azure through `object_store` ([`cloud`] builds the stores).
//! - [`configured`]: which of them the configuration names; `keys`: object keys and their
//!   rules.

pub mod cloud;
pub mod configured;
mod keys;
pub mod local;
pub mod object;
pub mod supabase;

pub(crate) use keys::check_range;
pub use keys::{
    DEFAULT_COVER_KEY_TEMPLATE, DEFAULT_KEY_TEMPLATE, MAX_KEY_BYTES, check_key, check_key_template,
    check_prefix, object_key, with_suffix,
};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::error::{ErrorClass, JobError};
use crate::queue::StoredObject;
use crate::retry::Backoff;
use crate::stage::{DownloadedFile, JobContext, MediaInfo, MediaSource, StageJob, Storage};

/// An upload.
#[derive(Clone, Debug)]
pub struct PutRequest<'a> {
    /// The object key.
    pub key: &'a str,
    /// The validated file.
    pub file: &'a DownloadedFile,
    /// `Content-Type`.
    pub content_type: &'a str,
    /// `Cache-Control`.
    pub cache_control: &'a str,
    /// User metadata (Douyin id, checksum, dimensions, source, worker).
    pub metadata: &'a BTreeMap<String, String>,
}

/// What a backend knows about a stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Size in bytes.
    pub size: u64,
    /// Entity tag.
    pub etag: Option<String>,
}

/// One object of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    /// Its key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was last written, if the store says.
    pub last_modified: Option<chrono::DateTime<chrono::Utc>>,
}

/// An object opened for reading: its body arrives as a stream of chunks.
pub struct ObjectStream {
    /// Size in bytes, if known.
    pub size: Option<u64>,
    /// Content type, if the store keeps one.
    pub content_type: Option<String>,
    /// The bytes.
    pub body: futures::stream::BoxStream<'static, Result<bytes::Bytes, StorageError>>,
}

impl std::fmt::Debug for ObjectStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStream")
            .field("size", &self.size)
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

/// A storage failure, transient or not.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct StorageError {
    /// Whether a retry can help.
    pub class: ErrorClass,
    /// Stable code.
    pub code: &'static str,
    /// What went wrong (the configured secrets are scrubbed out when the error is made).
    pub message: String,
}

impl StorageError {
    /// A failure that may pass.
    pub fn transient(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Transient,
            code,
            message: crate::redact::scrub_owned(message.into()),
        }
    }

    /// A failure that will not.
    pub fn permanent(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Permanent,
            code,
            message: crate::redact::scrub_owned(message.into()),
        }
    }
}

impl From<StorageError> for JobError {
    fn from(e: StorageError) -> Self {
        JobError::new(e.class, e.code, e.message)
    }
}

pub use crate::config::BucketSpec;

/// What setting up the bucket did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BucketOutcome {
    /// It was there.
    Exists,
    /// It was created.
    Created,
}

/// A place objects go.
#[async_trait]
pub trait ObjectBackend: Send + Sync + 'static {
    /// Creates the bucket (or folder) if it is missing.
    async fn ensure_bucket(&self, spec: &BucketSpec) -> Result<BucketOutcome, StorageError>;

    /// How the bucket is set up, where the store keeps such settings (Supabase Storage);
    /// `None` elsewhere.
    async fn bucket_settings(&self) -> Result<Option<BucketSpec>, StorageError> {
        Ok(None)
    }

    /// `videos.storage_provider`: `local`, `supabase`, `s3`, ...
    fn provider(&self) -> &'static str;
    /// `videos.bucket`.
    fn bucket(&self) -> &str;
    /// Stores the file under the key, replacing what is there (a retry never adds a copy).
    async fn put(&self, req: &PutRequest<'_>) -> Result<ObjectInfo, StorageError>;
    /// What is stored under the key, if anything.
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError>;

    /// The objects whose keys start with `prefix` (`""`: the whole bucket), in any order.
    async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, StorageError> {
        let _ = prefix;
        Err(StorageError::permanent(
            "unsupported",
            format!("the {} store cannot list objects", self.provider()),
        ))
    }

    /// What uploads that never finished left behind (the local folder's `.{uuid}.part` files
    /// of a worker killed mid-upload), listed like objects under keys [`ObjectBackend::delete`]
    /// takes, for `gc`. Stores that keep nothing of an unfinished upload list nothing.
    async fn list_partial_uploads(&self) -> Result<Vec<ListedObject>, StorageError> {
        Ok(Vec::new())
    }

    /// Deletes the object; returns whether it was there. Deleting a missing object is not an
    /// error. S3 cannot tell in one request: there it means "it was there just before".
    async fn delete(&self, key: &str) -> Result<bool, StorageError> {
        let _ = key;
        Err(StorageError::permanent(
            "unsupported",
            format!("the {} store cannot delete objects", self.provider()),
        ))
    }

    /// Opens the object for streaming, if it exists (`None` when it does not). The body is
    /// never read whole.
    async fn open(&self, key: &str) -> Result<Option<ObjectStream>, StorageError> {
        let _ = key;
        Err(StorageError::permanent(
            "unsupported",
            format!("the {} store cannot read objects", self.provider()),
        ))
    }

    /// Opens bytes `start..=end` of the object for streaming (the caller learned its size
    /// from [`ObjectBackend::head`] and keeps `start <= end < size`); the stream's `size` is
    /// the part's length. `None` when the object does not exist. A store that cannot read a
    /// part answers the `unsupported` error, and the caller reads the whole object instead.
    async fn open_range(
        &self,
        key: &str,
        start: u64,
        end: u64,
    ) -> Result<Option<ObjectStream>, StorageError> {
        let _ = (key, start, end);
        Err(StorageError::permanent(
            "unsupported",
            format!(
                "the {} store cannot read part of an object",
                self.provider()
            ),
        ))
    }

    /// Waits for the cleanup the backend started in the background and has not finished
    /// (the termination of an upload whose job was cancelled), each bounded in time. Called
    /// before the process exits.
    async fn drain(&self) {}

    /// A URL that downloads the object without a key and without expiry, when the bucket is
    /// readable by anyone (a public Supabase Storage bucket); `None` when there is none (a
    /// private bucket, the local folder, S3, GCS and Azure, whose public access the worker
    /// cannot see), where the download API serves or signs links instead.
    async fn public_url(&self, key: &str) -> Result<Option<String>, StorageError> {
        let _ = key;
        Ok(None)
    }

    /// A URL that downloads the object without a key for `ttl`.
    async fn signed_url(&self, key: &str, ttl: Duration) -> Result<String, StorageError> {
        let _ = (key, ttl);
        Err(StorageError::permanent(
            "no-signed-urls",
            format!("the {} store cannot sign URLs", self.provider()),
        ))
    }
}

/// How the storage stage behaves.
#[derive(Clone, Debug)]
pub struct StorageOptions {
    /// Object key template.
    pub key_template: String,
    /// `Cache-Control` of stored objects.
    pub cache_control: String,
    /// Attempts at a transient failure before the job's attempt fails.
    pub attempts: u32,
    /// First backoff between them.
    pub backoff: Duration,
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self {
            key_template: DEFAULT_KEY_TEMPLATE.into(),
            cache_control: "max-age=3600".into(),
            attempts: 3,
            backoff: Duration::from_millis(500),
        }
    }
}

/// The pipeline's storage stage over one backend.
pub struct StorageStage {
    backend: Arc<dyn ObjectBackend>,
    opts: StorageOptions,
}

impl StorageStage {
    /// A stage over `backend`.
    pub fn new(backend: Arc<dyn ObjectBackend>, opts: StorageOptions) -> Self {
        Self { backend, opts }
    }

    async fn put_with_retries(&self, req: &PutRequest<'_>) -> Result<ObjectInfo, StorageError> {
        let mut backoff = Backoff::new(self.opts.backoff, Duration::from_secs(30));
        let mut attempt = 1;
        loop {
            match self.backend.put(req).await {
                Ok(info) => return Ok(info),
                Err(e) if e.class != ErrorClass::Permanent && attempt < self.opts.attempts => {
                    let wait = backoff.next_wait();
                    tracing::warn!(error = %e, attempt, retry_in = ?wait, "upload failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[async_trait]
impl Storage for StorageStage {
    async fn store(
        &self,
        job: &StageJob,
        source: &MediaSource,
        file: &DownloadedFile,
        info: &MediaInfo,
        ctx: &JobContext,
    ) -> Result<StoredObject, JobError> {
        let douyin_id = if source.douyin_id.is_empty() {
            job.douyin_id
                .clone()
                .unwrap_or_else(|| job.video_id.to_string())
        } else {
            source.douyin_id.clone()
        };
        let template = source
            .key_template
            .as_deref()
            .unwrap_or(&self.opts.key_template);
        let key = object_key(
            template,
            &douyin_id,
            &job.video_id.to_string(),
            &info.extension,
        )?;
        let key = match &source.key_suffix {
            Some(suffix) => with_suffix(&key, suffix)?,
            None => key,
        };
        let mut metadata = BTreeMap::new();
        metadata.insert("douyin_id".to_string(), douyin_id.clone());
        metadata.insert("sha256".to_string(), file.sha256.clone());
        metadata.insert("worker_id".to_string(), ctx.worker_id().to_string());
        for field in ["duration_seconds", "width", "height"] {
            if let Some(v) = info.metadata.get(field).filter(|v| !v.is_null()) {
                metadata.insert(field.to_string(), v.to_string());
            }
        }
        if let Some(url) = source.urls.first() {
            // The host only: signed URLs carry tokens.
            if let Ok(u) = url::Url::parse(url) {
                metadata.insert("source_host".into(), u.host_str().unwrap_or("").to_string());
            }
        }
        if let Some(link) = job.link.as_deref() {
            metadata.insert("source_link".into(), link.to_string());
        }
        let req = PutRequest {
            key: &key,
            file,
            content_type: &info.mime_type,
            cache_control: &self.opts.cache_control,
            metadata: &metadata,
        };
        let put = self.put_with_retries(&req).await?;
        // The job completes only once the object is there with the right size.
        let stored = self.backend.head(&key).await?.ok_or_else(|| {
            JobError::transient(
                "upload-missing",
                format!("{key} is not in the store after the upload"),
            )
        })?;
        if stored.size != file.size {
            return Err(JobError::transient(
                "upload-size-mismatch",
                format!(
                    "{key} holds {} bytes, the file has {}",
                    stored.size, file.size
                ),
            ));
        }
        let storage_metadata: Value = json!({
            "sha256": file.sha256,
            "media": info.metadata,
            "source": source.metadata,
            "strategy": source.strategy,
            "worker_id": ctx.worker_id(),
            "cache_control": self.opts.cache_control,
            "user_metadata": metadata,
        });
        Ok(StoredObject {
            storage_provider: self.backend.provider().to_string(),
            bucket: self.backend.bucket().to_string(),
            object_key: key,
            storage_etag: stored.etag.or(put.etag),
            filesize: file.size as i64,
            mime_type: info.mime_type.clone(),
            storage_metadata,
        })
    }
}
