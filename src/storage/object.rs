//! S3-compatible object stores through the `object_store` crate (`STORAGE_URL=s3://bucket`):
//! AWS S3, MinIO, Cloudflare R2, Supabase's `/storage/v1/s3` endpoint. Settings come from the
//! standard `AWS_*` variables (`AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_REGION`, `AWS_ALLOW_HTTP`, `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`).
//!
//! Files are uploaded with a multipart upload in 8 MiB parts read from the validated file
//! (never the whole file in memory), with content type, cache control and user metadata.

use std::sync::Arc;

use async_trait::async_trait;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as StorePath;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt, PutMultipartOptions, WriteMultipart,
};
use tokio::io::AsyncReadExt;

use super::{BucketOutcome, BucketSpec, ObjectBackend, ObjectInfo, PutRequest, StorageError};

/// Size of one multipart part.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded at once.
const PARALLEL_PARTS: usize = 2;

/// An S3-compatible bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    store: Arc<dyn ObjectStore>,
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
        Ok(Self {
            store: Arc::new(store),
            bucket,
        })
    }

    /// A bucket over an already built store (tests, other providers).
    pub fn new(store: Arc<dyn ObjectStore>, bucket: impl Into<String>) -> Self {
        Self {
            store,
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
}
