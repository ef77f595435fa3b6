//! Cloud object stores through the `object_store` crate: one backend for
//!
//! - `STORAGE_URL=s3://BUCKET`: AWS S3 and S3-compatible stores (MinIO, Cloudflare R2,
//!   Supabase's `/storage/v1/s3` endpoint), from the standard `AWS_*` variables (`AWS_ENDPOINT`,
//!   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`,
//!   `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`);
//! - `gs://BUCKET`: Google Cloud Storage, from the `GOOGLE_*` variables;
//! - `az://CONTAINER`: Azure Blob Storage, from the `AZURE_*` variables.
//!
//! [`super::cloud`] builds each store. A file of up to one part (8 MiB) is uploaded in one
//! request; a larger one with a multipart upload in 8 MiB parts read from the validated file
//! (never the whole file in memory; S3 and GCS multipart uploads, Azure blocks). Both carry
//! content type, cache control and user metadata.
//!
//! Operations: `list` is object_store's recursive listing; `open` streams a `GET`; `delete`
//! asks `HEAD` first, because S3 deletes succeed whether or not the object was there (so its
//! answer is "it existed just before the delete"); signed URLs are made locally without a
//! request: SigV4 presigned `GET`s on S3, V4 signed URLs on GCS (with a service-account key;
//! other GCS credentials ask the IAM signBlob API), service SAS on Azure (with an account key).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::aws::AmazonS3;
use object_store::azure::MicrosoftAzure;
use object_store::gcp::GoogleCloudStorage;
use object_store::path::Path as StorePath;
use object_store::signer::{Method, Signer};
use object_store::{
    Attribute, Attributes, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMultipartOptions,
    PutOptions, PutPayload, WriteMultipart,
};
use tokio::io::AsyncReadExt;

use super::cloud::{AzureContainer, BucketCreator, Cloud, GcsBucket, S3Bucket};
use super::{
    BucketOutcome, BucketSpec, ListedObject, ObjectBackend, ObjectInfo, ObjectStream, PutRequest,
    StorageError, check_key, check_prefix,
};

/// Size of one multipart part.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded at once.
const PARALLEL_PARTS: usize = 2;
/// The longest validity S3 and GCS accept for a signed URL (V4 signatures: seven days); Azure
/// links are held to the same.
pub(crate) const MAX_SIGNED_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// A bucket (a container on Azure) of a cloud object store.
#[derive(Debug, Clone)]
pub struct ObjectStoreBackend {
    store: Arc<dyn ObjectStore>,
    /// The same store when it can sign URLs.
    signer: Option<Arc<dyn Signer>>,
    bucket: String,
    cloud: Cloud,
    /// What creates the bucket when it is missing.
    creator: Option<BucketCreator>,
}

/// The backend's name from when it served S3 only.
pub type S3Store = ObjectStoreBackend;

impl ObjectStoreBackend {
    /// A GET of the object, or of `range` of it: the stream's size is what comes.
    async fn get(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Option<ObjectStream>, StorageError> {
        check_key(key)?;
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..Default::default()
        };
        let got = match self.store.get_opts(&StorePath::from(key), options).await {
            Ok(got) => got,
            Err(e @ object_store::Error::NotFound { .. }) => {
                // A GET's 404 carries the store's code: a missing bucket is not a missing object.
                let text = e.to_string();
                return if text.contains("NoSuchBucket") || text.contains("ContainerNotFound") {
                    Err(self.classify(e, key))
                } else {
                    Ok(None)
                };
            }
            Err(e) => return Err(self.classify(e, key)),
        };
        let content_type = got
            .attributes
            .get(&Attribute::ContentType)
            .map(|v| v.to_string());
        let size = got.range.end - got.range.start;
        let shown = key.to_string();
        let cloud = self.cloud;
        let body = got
            .into_stream()
            .map_err(move |e| classify(e, &format!("reading {shown}"), cloud));
        Ok(Some(ObjectStream {
            size: Some(size),
            content_type,
            body: Box::pin(body),
        }))
    }
    /// The bucket named by `url` (`s3://BUCKET`, `gs://BUCKET`, `az://CONTAINER`), configured
    /// from that cloud's standard environment variables.
    pub(crate) fn from_url(url: &url::Url) -> Result<Self, String> {
        match Cloud::of_scheme(url.scheme()) {
            Some(Cloud::S3) => {
                let (store, bucket) = super::cloud::s3_from_url(url)?;
                Ok(Self::amazon(store, bucket))
            }
            Some(Cloud::Gcs) => {
                let (store, bucket) = super::cloud::gcs_from_url(url)?;
                Ok(Self::gcs(store, bucket))
            }
            Some(Cloud::Azure) => {
                let (store, container) = super::cloud::azure_from_url(url)?;
                Ok(Self::azure(store, container))
            }
            None => Err(format!(
                "STORAGE_URL={url}: expected s3://BUCKET, gs://BUCKET or az://CONTAINER"
            )),
        }
    }

    /// An S3 bucket, with what creates it when it is missing (see
    /// [`super::cloud::s3_from_builder`]); it can sign URLs.
    pub fn amazon(store: AmazonS3, bucket: S3Bucket) -> Self {
        let name = bucket.name().to_string();
        Self::signing(Arc::new(store), name, Cloud::S3, bucket.into())
    }

    /// A Google Cloud Storage bucket, with what creates it when it is missing (see
    /// [`super::cloud::gcs_from_builder`]); it can sign URLs.
    pub fn gcs(store: GoogleCloudStorage, bucket: GcsBucket) -> Self {
        let name = bucket.name().to_string();
        Self::signing(Arc::new(store), name, Cloud::Gcs, bucket.into())
    }

    /// An Azure container, with what creates it when it is missing (see
    /// [`super::cloud::azure_from_builder`]); it can sign URLs.
    pub fn azure(store: MicrosoftAzure, container: AzureContainer) -> Self {
        let name = container.name().to_string();
        Self::signing(Arc::new(store), name, Cloud::Azure, container.into())
    }

    fn signing<S: ObjectStore + Signer>(
        store: Arc<S>,
        bucket: String,
        cloud: Cloud,
        creator: BucketCreator,
    ) -> Self {
        Self {
            store: store.clone(),
            signer: Some(store),
            bucket,
            cloud,
            creator: Some(creator),
        }
    }

    /// An S3 bucket over any object store (tests, benchmarks); it cannot sign URLs.
    pub fn new(store: Arc<dyn ObjectStore>, bucket: impl Into<String>) -> Self {
        Self {
            store,
            signer: None,
            bucket: bucket.into(),
            cloud: Cloud::S3,
            creator: None,
        }
    }

    /// The cloud it talks to.
    pub fn cloud(&self) -> Cloud {
        self.cloud
    }

    fn classify(&self, e: object_store::Error, what: &str) -> StorageError {
        classify(e, what, self.cloud)
    }

    /// The bucket as a URL, for messages.
    fn shown(&self) -> String {
        let scheme = match self.cloud {
            Cloud::S3 => "s3",
            Cloud::Gcs => "gs",
            Cloud::Azure => "az",
        };
        format!("{scheme}://{}", self.bucket)
    }
}

/// A listing's answer when the bucket itself is missing (object_store reports a listing's 404
/// as a generic error; the store's code says what is missing).
fn is_missing_bucket(e: &object_store::Error) -> bool {
    let text = e.to_string();
    matches!(e, object_store::Error::NotFound { .. })
        || text.contains("NoSuchBucket")
        || text.contains("ContainerNotFound")
}

fn classify(e: object_store::Error, what: &str, cloud: Cloud) -> StorageError {
    use object_store::Error as E;
    let text = format!("{what}: {e}");
    let denied = || {
        StorageError::permanent(
            "storage-access-denied",
            format!("{text}: {}", cloud.credential_hint()),
        )
    };
    match &e {
        E::NotFound { .. } => StorageError::permanent("no-such-bucket", text),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => denied(),
        E::NotSupported { .. } | E::NotImplemented { .. } => {
            StorageError::permanent("storage-not-supported", text)
        }
        // S3 and GCS (XML API) error codes; Azure's.
        _ if [
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId",
            "AccessDenied",
            "AuthenticationFailed",
            "AuthorizationFailure",
        ]
        .iter()
        .any(|c| text.contains(c)) =>
        {
            denied()
        }
        _ if text.contains("NoSuchBucket") || text.contains("ContainerNotFound") => {
            StorageError::permanent("no-such-bucket", text)
        }
        _ => StorageError::transient("storage-unavailable", text),
    }
}

#[async_trait]
impl ObjectBackend for ObjectStoreBackend {
    /// A one-page listing tells a missing bucket from an empty one (a `HEAD` cannot: S3
    /// answers a missing bucket's `HEAD` with a bare 404, as for a missing key); a missing
    /// bucket is created. Credentials that may not list fall back to a `HEAD` of a probe key,
    /// which at least proves the bucket is reachable.
    async fn ensure_bucket(&self, spec: &BucketSpec) -> Result<BucketOutcome, StorageError> {
        let probe = StorePath::from(".douyin-worker-probe");
        let what = format!("bucket {}", self.shown());
        match self.store.list_with_delimiter(Some(&probe)).await {
            Ok(_) => return Ok(BucketOutcome::Exists),
            Err(e) if is_missing_bucket(&e) => {
                return match &self.creator {
                    Some(creator) => creator.create(spec).await,
                    None => Err(StorageError::permanent(
                        "no-such-bucket",
                        format!("{what} does not exist: create it"),
                    )),
                };
            }
            Err(object_store::Error::PermissionDenied { .. }) => {}
            Err(e) => return Err(self.classify(e, &what)),
        }
        match self.store.head(&probe).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(BucketOutcome::Exists),
            Err(e) => Err(self.classify(e, &what)),
        }
    }

    fn provider(&self) -> &'static str {
        self.cloud.provider()
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
        // A file that fits in one part goes in one request (a multipart upload would take
        // three); it is read into memory, which stays within the size of a part.
        if req.file.size <= PART_SIZE as u64 {
            let bytes = tokio::fs::read(&req.file.path)
                .await
                .map_err(|e| StorageError::transient("temp-file", format!("temp file: {e}")))?;
            let done = self
                .store
                .put_opts(
                    &path,
                    PutPayload::from(bytes),
                    PutOptions {
                        attributes,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| self.classify(e, "uploading"))?;
            return Ok(ObjectInfo {
                size: req.file.size,
                etag: done.e_tag.map(|t| t.trim_matches('"').to_string()),
            });
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
            .map_err(|e| self.classify(e, "starting the upload"))?;
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
                .map_err(|e| self.classify(e, "uploading a part"))?;
            writer.write(&buf[..n]);
        }
        let done = writer
            .finish()
            .await
            .map_err(|e| self.classify(e, "finishing the upload"))?;
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
            Err(e) => Err(self.classify(e, key)),
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
            .map_err(|e| self.classify(e, &format!("listing bucket {}", self.shown())))?
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
            Err(e) => Err(self.classify(e, key)),
        }
    }

    async fn open(&self, key: &str) -> Result<Option<ObjectStream>, StorageError> {
        self.get(key, None).await
    }

    async fn open_range(
        &self,
        key: &str,
        start: u64,
        end: u64,
    ) -> Result<Option<ObjectStream>, StorageError> {
        super::check_range(key, start, end)?;
        self.get(key, Some(start..end + 1)).await
    }

    /// A signed `GET` (S3 SigV4, GCS V4, Azure service SAS), valid for `ttl` (at least a
    /// second, at most `MAX_SIGNED_TTL`). Made without a request (except GCS credentials
    /// without a private key, which ask IAM to sign): a missing object's URL answers 404.
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
            .map_err(|e| self.classify(e, &format!("signing {key}")))
    }
}
