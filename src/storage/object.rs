//! S3-compatible object stores through the `object_store` crate (`STORAGE_URL=s3://bucket`):
//! AWS S3, MinIO, Cloudflare R2, Supabase's `/storage/v1/s3` endpoint. Settings come from the
//! standard `AWS_*` variables (`AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_REGION`, `AWS_ALLOW_HTTP`, `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`).
//!
//! Files are uploaded with a multipart upload in 8 MiB parts read from the validated file
//! (never the whole file in memory), with content type, cache control and user metadata.
//!
//! Operations: `list` is object_store's recursive listing; `open` streams a `GET`; `delete`
//! asks `HEAD` first, because S3 deletes succeed whether or not the object was there (so its
//! answer is "it existed just before the delete"); signed URLs are SigV4 presigned `GET`s,
//! made locally without a request, when the store is an [`AmazonS3`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as StorePath;
use object_store::signer::{Method, Signer};
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt, PutMultipartOptions, WriteMultipart,
};
use tokio::io::AsyncReadExt;

use super::{
    BucketOutcome, BucketSpec, ListedObject, ObjectBackend, ObjectInfo, ObjectStream, PutRequest,
    StorageError, check_key, check_prefix,
};

/// Size of one multipart part.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded at once.
const PARALLEL_PARTS: usize = 2;
/// The longest validity S3 accepts for a presigned URL (SigV4: seven days).
pub const MAX_SIGNED_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// An S3-compatible bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    store: Arc<dyn ObjectStore>,
    /// The same store when it is S3, for presigned URLs.
    signer: Option<Arc<AmazonS3>>,
    bucket: String,
}

impl S3Store {
    /// The bucket named by `url` (`s3://bucket`), configured from the `AWS_*` variables.
    pub fn from_url(url: &url::Url) -> Result<Self, String> {
        let bucket = url
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| format!("STORAGE_URL={url}: expected s3://BUCKET"))?
            .to_string();
        let store = AmazonS3Builder::from_env()
            .with_url(url.as_str())
            .build()
            .map_err(|e| format!("STORAGE_URL={url}: {e}"))?;
        Ok(Self::amazon(store, bucket))
    }

    /// A bucket over an S3 store built elsewhere; it can sign URLs.
    pub fn amazon(store: AmazonS3, bucket: impl Into<String>) -> Self {
        let store = Arc::new(store);
        Self {
            store: store.clone(),
            signer: Some(store),
            bucket: bucket.into(),
        }
    }

    /// A bucket over any object store (tests, other providers); it cannot sign URLs.
    pub fn new(store: Arc<dyn ObjectStore>, bucket: impl Into<String>) -> Self {
        Self {
            store,
            signer: None,
            bucket: bucket.into(),
        }
    }
}

fn classify(e: object_store::Error, what: &str) -> StorageError {
    use object_store::Error as E;
    let text = format!("{what}: {e}");
    match &e {
        E::NotFound { .. } => StorageError::permanent("no-such-bucket", text),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => StorageError::permanent(
            "storage-access-denied",
            format!("{text}: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        ),
        E::NotSupported { .. } | E::NotImplemented { .. } => {
            StorageError::permanent("storage-not-supported", text)
        }
        _ if text.contains("SignatureDoesNotMatch")
            || text.contains("InvalidAccessKeyId")
            || text.contains("AccessDenied") =>
        {
            StorageError::permanent(
                "storage-access-denied",
                format!("{text}: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
            )
        }
        _ if text.contains("NoSuchBucket") => StorageError::permanent("no-such-bucket", text),
        _ => StorageError::transient("storage-unavailable", text),
    }
}

#[async_trait]
impl ObjectBackend for S3Store {
    async fn ensure_bucket(&self, _spec: &BucketSpec) -> Result<BucketOutcome, StorageError> {
        // object_store cannot create buckets: check that it exists and is reachable.
        match self
            .store
            .head(&StorePath::from(".douyin-worker-probe"))
            .await
        {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(BucketOutcome::Exists),
            Err(e) => Err(classify(e, &format!("bucket {}", self.bucket))),
        }
    }

    fn provider(&self) -> &'static str {
        "s3"
    }

    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put(&self, req: &PutRequest<'_>) -> Result<ObjectInfo, StorageError> {
        let path = StorePath::from(req.key);
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, req.content_type.to_string().into());
        attributes.insert(
            Attribute::CacheControl,
            req.cache_control.to_string().into(),
        );
        for (k, v) in req.metadata {
            attributes.insert(Attribute::Metadata(k.clone().into()), v.clone().into());
        }
        let upload = self
            .store
            .put_multipart_opts(
                &path,
                PutMultipartOptions {
                    attributes,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| classify(e, "starting the upload"))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut file = tokio::fs::File::open(&req.file.path)
            .await
            .map_err(|e| StorageError::transient("temp-file", format!("temp file: {e}")))?;
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let n = file
                .read(&mut buf)
                .await
                .map_err(|e| StorageError::transient("temp-file", format!("temp file: {e}")))?;
            if n == 0 {
                break;
            }
            // Bound the parts in flight, so memory stays at a few parts.
            writer
                .wait_for_capacity(PARALLEL_PARTS)
                .await
                .map_err(|e| classify(e, "uploading a part"))?;
            writer.write(&buf[..n]);
        }
        let done = writer
            .finish()
            .await
            .map_err(|e| classify(e, "finishing the upload"))?;
        Ok(ObjectInfo {
            size: req.file.size,
            etag: done.e_tag.map(|t| t.trim_matches('"').to_string()),
        })
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        match self.store.head(&StorePath::from(key)).await {
            Ok(meta) => Ok(Some(ObjectInfo {
                size: meta.size,
                etag: meta.e_tag.map(|t| t.trim_matches('"').to_string()),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(classify(e, key)),
        }
    }

    /// Lists from the prefix's folder (the part up to its last `/`) and keeps the keys that
    /// start with the prefix; sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, StorageError> {
        check_prefix(prefix)?;
        let folder = prefix
            .rsplit_once('/')
            .map(|(dir, _)| StorePath::from(dir))
            .filter(|dir| !dir.as_ref().is_empty());
        let mut listing = self.store.list(folder.as_ref());
        let mut found = Vec::new();
        while let Some(meta) = listing
            .try_next()
            .await
            .map_err(|e| classify(e, &format!("listing bucket {}", self.bucket)))?
        {
            let key = meta.location.to_string();
            if key.starts_with(prefix) {
                found.push(ListedObject {
                    key,
                    size: meta.size,
                    last_modified: Some(meta.last_modified),
                });
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    /// `HEAD`, then `DELETE`: `true` when the object was there just before (a concurrent
    /// delete between the two may make both callers see `true`).
    async fn delete(&self, key: &str) -> Result<bool, StorageError> {
        check_key(key)?;
        if self.head(key).await?.is_none() {
            return Ok(false);
        }
        match self.store.delete(&StorePath::from(key)).await {
            Ok(()) => Ok(true),
            // Stores other than S3 say so when it is already gone.
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(classify(e, key)),
        }
    }

    async fn open(&self, key: &str) -> Result<Option<ObjectStream>, StorageError> {
        check_key(key)?;
        let got = match self.store.get(&StorePath::from(key)).await {
            Ok(got) => got,
            Err(e @ object_store::Error::NotFound { .. }) => {
                // A GET's 404 carries S3's code: a missing bucket is not a missing object.
                return if e.to_string().contains("NoSuchBucket") {
                    Err(classify(e, key))
                } else {
                    Ok(None)
                };
            }
            Err(e) => return Err(classify(e, key)),
        };
        let content_type = got
            .attributes
            .get(&Attribute::ContentType)
            .map(|v| v.to_string());
        let size = got.meta.size;
        let shown = key.to_string();
        let body = got
            .into_stream()
            .map_err(move |e| classify(e, &format!("reading {shown}")));
        Ok(Some(ObjectStream {
            size: Some(size),
            content_type,
            body: Box::pin(body),
        }))
    }

    /// A SigV4 presigned `GET`, valid for `ttl` (at least a second, at most
    /// [`MAX_SIGNED_TTL`]). Made without a request: a missing object's URL answers 404.
    async fn signed_url(&self, key: &str, ttl: Duration) -> Result<String, StorageError> {
        check_key(key)?;
        let Some(signer) = &self.signer else {
            return Err(StorageError::permanent(
                "no-signed-urls",
                "this object store cannot sign URLs",
            ));
        };
        let ttl = ttl.clamp(Duration::from_secs(1), MAX_SIGNED_TTL);
        signer
            .signed_url(Method::GET, &StorePath::from(key), ttl)
            .await
            .map(|url| url.to_string())
            .map_err(|e| classify(e, &format!("signing {key}")))
    }
}
