//! Supabase Storage: standard uploads up to a threshold, the TUS resumable protocol above it,
//! always streamed from the validated file.
//!
//! Wire facts (from the storage-api contract): the key goes in `apikey` and
//! `Authorization: Bearer`, opaque; REST routes answer errors as HTTP 400 with the real status
//! inside the body (`statusCode`, `code`); TUS routes answer real statuses with plain-text
//! bodies; TUS needs 6 MiB chunks except the last, `x-upsert` on every request, and after an
//! interrupted `PATCH` the server's `HEAD` offset is the truth.
//!
//! Operations (contract §5, §6): the list route answers one folder level at a time (objects,
//! and sub-folders as entries with a `null` id) in `limit`/`offset` pages, so a listing walks
//! the folders; deletes go through the batch route, whose answer lists the rows it deleted;
//! downloads stream `GET /object/authenticated/{bucket}/{key}`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use url::Url;

use super::{
    BucketOutcome, BucketSpec, ListedObject, ObjectBackend, ObjectInfo, ObjectStream, PutRequest,
    StorageError, check_key, check_prefix,
};
use crate::config::Secret;

mod limits;
mod public;
mod tus;

pub use limits::UploadLimits;

/// The chunk size hosted Supabase Storage requires for every TUS chunk but the last.
pub const TUS_CHUNK: u64 = 6 * 1024 * 1024;

/// A bucket of a Supabase project's Storage.
#[derive(Clone)]
pub struct SupabaseStorage {
    client: reqwest::Client,
    root: Url,
    key: Secret,
    bucket: String,
    /// Files above this size go through TUS.
    pub tus_threshold: u64,
    /// Attempts at a TUS chunk before the upload fails.
    pub chunk_attempts: u32,
    /// Entries asked for per page of a folder listing.
    pub list_page_size: u32,
    /// Longest time one upload request (a standard upload, a TUS create or one chunk of at
    /// most 6 MiB) may take from start to answer: a store that hangs fails the attempt
    /// (transient) instead of holding the job's slot.
    pub upload_timeout: Duration,
    /// Longest time the termination (`DELETE`) of a TUS upload that is given up may take.
    pub terminate_timeout: Duration,
    /// The upload limits last learnt (see `limits`).
    limits: limits::LimitsCache,
    /// Terminations of TUS uploads dropped mid-way (a cancelled job), which
    /// [`ObjectBackend::drain`] waits for.
    background: tokio_util::task::TaskTracker,
    /// Whether the bucket is public, once asked (see `public`).
    public: Arc<tokio::sync::OnceCell<bool>>,
}

impl std::fmt::Debug for SupabaseStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupabaseStorage")
            .field("root", &self.root.as_str())
            .field("bucket", &self.bucket)
            .finish()
    }
}

/// The REST routes' error body.
#[derive(Debug, Default, Deserialize)]
struct RestError {
    #[serde(rename = "statusCode")]
    status_code: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

impl SupabaseStorage {
    /// The bucket `bucket` of the project at `supabase_url`.
    pub fn new(supabase_url: &Url, key: Secret, bucket: &str) -> Result<Self, String> {
        let mut base = supabase_url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let root = base
            .join("storage/v1/")
            .map_err(|e| format!("SUPABASE_URL: {e}"))?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("douyin-worker/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            client,
            root,
            key,
            bucket: bucket.to_string(),
            tus_threshold: TUS_CHUNK,
            chunk_attempts: 5,
            list_page_size: 1000,
            upload_timeout: Duration::from_secs(300),
            terminate_timeout: Duration::from_secs(10),
            limits: Arc::default(),
            background: tokio_util::task::TaskTracker::new(),
            public: Arc::default(),
        })
    }

    /// Sends a REST request with the key; an answer other than 2xx becomes its typed error.
    async fn call(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, StorageError> {
        let response = self.authed(request).send().await.map_err(network)?;
        if !response.status().is_success() {
            return Err(rest_error(response).await);
        }
        Ok(response)
    }

    fn url(&self, path: &str) -> Url {
        self.root.join(path).expect("a relative storage path")
    }

    /// `{root}/{route}/{bucket}/{key}`, each segment of the key percent-encoded (a key may
    /// hold characters a URL path cannot, such as `?`, `#` or spaces).
    fn object_url(&self, route: &str, key: &str) -> Url {
        let mut url = self.root.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .extend(route.split('/'))
                .push(&self.bucket)
                .extend(key.split('/'));
        }
        url
    }

    /// One page of one folder level.
    async fn list_page(
        &self,
        folder: &str,
        search: &str,
        offset: u64,
    ) -> Result<Vec<ListEntry>, StorageError> {
        let url = self.url(&format!("object/list/{}", self.bucket));
        let mut body = serde_json::json!({
            "prefix": folder,
            "limit": self.list_page_size,
            "offset": offset,
            "sortBy": {"column": "name", "order": "asc"},
        });
        if !search.is_empty() {
            body["search"] = search.into();
        }
        let response = self.call(self.client.post(url).json(&body)).await?;
        response
            .json()
            .await
            .map_err(|e| StorageError::transient("storage-error", format!("listing: {e}")))
    }

    fn authed(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        rb.header("apikey", self.key.expose())
            .bearer_auth(self.key.expose())
    }

    /// `[offset, offset + len)` of the file as a streamed request body.
    async fn body(
        path: &std::path::Path,
        offset: u64,
        len: u64,
    ) -> Result<reqwest::Body, StorageError> {
        let mut f = tokio::fs::File::open(path)
            .await
            .map_err(|e| StorageError::transient("temp-file", format!("temp file: {e}")))?;
        f.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| StorageError::transient("temp-file", format!("temp file: {e}")))?;
        let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), 64 * 1024);
        Ok(reqwest::Body::wrap_stream(stream))
    }

    async fn put_standard(&self, req: &PutRequest<'_>) -> Result<(), StorageError> {
        let url = self.object_url("object", req.key);
        let metadata = base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_vec(req.metadata).unwrap_or_default());
        let response = self
            .authed(self.client.post(url))
            .header(reqwest::header::CONTENT_TYPE, req.content_type)
            .header(reqwest::header::CACHE_CONTROL, req.cache_control)
            .header(reqwest::header::CONTENT_LENGTH, req.file.size)
            .header("x-upsert", "true")
            .header("x-metadata", metadata)
            .body(Self::body(&req.file.path, 0, req.file.size).await?)
            .timeout(self.upload_timeout)
            .send()
            .await
            .map_err(network)?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(rest_error(response).await)
    }
}

fn network(e: reqwest::Error) -> StorageError {
    let mut detail = String::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect to Supabase Storage"
    } else {
        "request to Supabase Storage failed"
    };
    StorageError::transient("storage-network", format!("{what}: {detail}"))
}

/// Maps a REST error: the real status is `statusCode` in the body.
async fn rest_error(response: reqwest::Response) -> StorageError {
    let http = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    let e: RestError = serde_json::from_slice(&body).unwrap_or_default();
    let status: u16 = e
        .status_code
        .as_deref()
        .and_then(|s| s.parse().ok())
        .unwrap_or(http);
    let code = e.code.unwrap_or_default();
    let message = crate::redact::excerpt(
        &e.message
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()),
        300,
    );
    let code = crate::redact::excerpt(&code, 60);
    let text = if code.is_empty() {
        format!("Supabase Storage: {message} (HTTP {status})")
    } else {
        format!("Supabase Storage: {message} ({code}, {status})")
    };
    match code.as_str() {
        "NoSuchBucket" => StorageError::permanent(
            "no-such-bucket",
            format!("{text}: create the bucket (douyin-worker setup-storage, or the dashboard)"),
        ),
        "EntityTooLarge" => StorageError::permanent("entity-too-large", text),
        "InvalidMimeType" => StorageError::permanent("invalid-mime-type", text),
        "AccessDenied" | "InvalidJWT" | "InvalidRequest" => StorageError::permanent(
            "storage-access-denied",
            format!("{text}: SUPABASE_SERVICE_ROLE_KEY must be the service role key"),
        ),
        // The API gateway's own refusal of the `apikey` (contract §0: it "rejects requests
        // without a valid `apikey`"), answered before storage-api, without a storage code.
        "" if status == 401 => StorageError::permanent(
            "storage-access-denied",
            format!("{text}: SUPABASE_SERVICE_ROLE_KEY must be a key of this project"),
        ),
        "KeyAlreadyExists" => StorageError::transient("key-exists", text),
        "SlowDown" => StorageError::transient("slow-down", text),
        _ if status >= 500 || status == 429 || status == 408 => {
            StorageError::transient("storage-unavailable", text)
        }
        _ => StorageError::transient("storage-error", text),
    }
}

/// A refusal while setting up the bucket, with what to do about it.
fn explain_rights(e: StorageError) -> StorageError {
    if e.code == "storage-access-denied" {
        StorageError::permanent(
            e.code,
            format!(
                "{}: the key may not read or create buckets; use the project's service role key, \
                 or create the bucket in the dashboard (Storage → New bucket)",
                e.message
            ),
        )
    } else {
        e
    }
}

/// One entry of a folder listing: an object, or a sub-folder (no id).
#[derive(Deserialize)]
struct ListEntry {
    name: String,
    id: Option<String>,
    updated_at: Option<String>,
    metadata: Option<serde_json::Value>,
}

impl ListEntry {
    fn into_listed(self, key: String) -> ListedObject {
        let meta = self.metadata.unwrap_or_default();
        let size = meta["size"]
            .as_u64()
            .or_else(|| meta["contentLength"].as_u64())
            .unwrap_or(0);
        let last_modified = self
            .updated_at
            .as_deref()
            .or_else(|| meta["lastModified"].as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc));
        ListedObject {
            key,
            size,
            last_modified,
        }
    }
}

#[derive(Deserialize)]
struct Info {
    size: u64,
    etag: Option<String>,
}

#[async_trait]
impl ObjectBackend for SupabaseStorage {
    async fn ensure_bucket(&self, spec: &BucketSpec) -> Result<BucketOutcome, StorageError> {
        let url = self.url(&format!("bucket/{}", self.bucket));
        let got = self
            .authed(self.client.get(url))
            .send()
            .await
            .map_err(network)?;
        if got.status().is_success() {
            return Ok(BucketOutcome::Exists);
        }
        let err = rest_error(got).await;
        if err.code != "no-such-bucket" {
            return Err(explain_rights(err));
        }
        self.create_bucket(spec).await.map_err(explain_rights)
    }

    async fn bucket_settings(&self) -> Result<Option<BucketSpec>, StorageError> {
        self.bucket_spec().await.map(Some)
    }

    fn provider(&self) -> &'static str {
        "supabase"
    }

    /// Waits for the terminations of TUS uploads dropped mid-way (each bounded by
    /// `terminate_timeout`).
    async fn drain(&self) {
        self.background.close();
        self.background.wait().await;
        self.background.reopen();
    }

    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put(&self, req: &PutRequest<'_>) -> Result<ObjectInfo, StorageError> {
        let size = req.file.size;
        self.check_size(size).await?;
        if size <= self.tus_threshold {
            self.put_standard(req).await
        } else {
            self.put_tus(req).await
        }
        .map_err(|e| self.refused_for_size(size, e))?;
        Ok(ObjectInfo {
            size: req.file.size,
            etag: None,
        })
    }

    async fn public_url(&self, key: &str) -> Result<Option<String>, StorageError> {
        self.public_object_url(key).await
    }

    async fn signed_url(&self, key: &str, ttl: Duration) -> Result<String, StorageError> {
        let url = self.object_url("object/sign", key);
        let response = self
            .call(
                self.client
                    .post(url)
                    .json(&serde_json::json!({"expiresIn": ttl.as_secs().max(1)})),
            )
            .await?;
        #[derive(Deserialize)]
        struct Signed {
            #[serde(rename = "signedURL")]
            signed_url: String,
        }
        let signed: Signed = response
            .json()
            .await
            .map_err(|e| StorageError::transient("storage-error", format!("sign: {e}")))?;
        // The answer is relative to the storage root.
        self.root
            .join(signed.signed_url.trim_start_matches('/'))
            .map(|u| u.to_string())
            .map_err(|e| StorageError::transient("storage-error", format!("sign: {e}")))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let url = self.object_url("object/info", key);
        let response = self
            .authed(self.client.get(url))
            .send()
            .await
            .map_err(network)?;
        if response.status().is_success() {
            let info: Info = response.json().await.map_err(|e| {
                StorageError::transient("storage-error", format!("object info: {e}"))
            })?;
            return Ok(Some(ObjectInfo {
                size: info.size,
                etag: info.etag.map(|e| e.trim_matches('"').to_string()),
            }));
        }
        let err = rest_error(response).await;
        if err.message.contains("NoSuchKey") {
            return Ok(None);
        }
        Err(err)
    }

    /// Walks the folders from the prefix's own (the part up to its last `/`), page by page,
    /// and keeps the keys that start with the prefix; sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, StorageError> {
        check_prefix(prefix)?;
        let (folder, rest) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        // `search` narrows the first level (a case-insensitive pattern on the server: the
        // exact prefix test below decides).
        let mut pending = vec![(folder.to_string(), rest.to_string())];
        let mut found = Vec::new();
        while let Some((folder, search)) = pending.pop() {
            let base = if folder.is_empty() {
                String::new()
            } else {
                format!("{folder}/")
            };
            let mut offset = 0u64;
            loop {
                let page = self.list_page(&folder, &search, offset).await?;
                let n = page.len() as u64;
                for entry in page {
                    let key = format!("{base}{}", entry.name);
                    if entry.id.is_none() {
                        if format!("{key}/").starts_with(prefix) {
                            pending.push((key, String::new()));
                        }
                    } else if key.starts_with(prefix) {
                        found.push(entry.into_listed(key));
                    }
                }
                if n < u64::from(self.list_page_size) {
                    break;
                }
                offset += n;
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    /// Through the batch route (`{"prefixes":[key]}`), whose answer lists the rows deleted:
    /// `true` when the key is among them, `false` when the object was not there.
    async fn delete(&self, key: &str) -> Result<bool, StorageError> {
        check_key(key)?;
        let url = self.url(&format!("object/{}", self.bucket));
        let response = self
            .call(
                self.client
                    .delete(url)
                    .json(&serde_json::json!({ "prefixes": [key] })),
            )
            .await?;
        #[derive(Deserialize)]
        struct Deleted {
            name: String,
        }
        let rows: Vec<Deleted> = response
            .json()
            .await
            .map_err(|e| StorageError::transient("storage-error", format!("delete: {e}")))?;
        Ok(rows.iter().any(|r| r.name == key))
    }

    async fn open(&self, key: &str) -> Result<Option<ObjectStream>, StorageError> {
        self.download(key, None).await
    }

    async fn open_range(
        &self,
        key: &str,
        start: u64,
        end: u64,
    ) -> Result<Option<ObjectStream>, StorageError> {
        super::check_range(key, start, end)?;
        self.download(key, Some((start, end))).await
    }
}

impl SupabaseStorage {
    /// A download of the object, or of bytes `start..=end` of it (`Range`, answered 206).
    async fn download(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Option<ObjectStream>, StorageError> {
        check_key(key)?;
        let url = self.object_url("object/authenticated", key);
        let mut request = self.authed(self.client.get(url));
        if let Some((start, end)) = range {
            request = request.header(reqwest::header::RANGE, format!("bytes={start}-{end}"));
        }
        let response = request.send().await.map_err(network)?;
        let expected = if range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        };
        if response.status() != expected {
            if range.is_some() && response.status() == StatusCode::OK {
                // The whole object instead of the part: the caller reads it whole.
                return Err(StorageError::permanent(
                    "unsupported",
                    "Supabase Storage answered the whole object to a Range request",
                ));
            }
            let err = rest_error(response).await;
            if err.message.contains("NoSuchKey") {
                return Ok(None);
            }
            return Err(err);
        }
        let headers = response.headers();
        let size = headers
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = futures::TryStreamExt::map_err(response.bytes_stream(), network);
        Ok(Some(ObjectStream {
            size,
            content_type,
            body: Box::pin(body),
        }))
    }
}
