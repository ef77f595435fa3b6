//! The clouds behind [`super::object::ObjectStoreBackend`]: which one a `STORAGE_URL` names,
//! how each one's store is built from its standard environment variables, and the one thing
//! `object_store` cannot do for us, creating the bucket (one submodule per cloud, each signing
//! its one request with object_store's own credentials).
//!
//! - `s3://BUCKET`: `AmazonS3Builder::from_env` (`AWS_*`).
//! - `gs://BUCKET`: `GoogleCloudStorageBuilder::from_env` (`GOOGLE_SERVICE_ACCOUNT`,
//!   `GOOGLE_SERVICE_ACCOUNT_PATH`, `GOOGLE_SERVICE_ACCOUNT_KEY`,
//!   `GOOGLE_APPLICATION_CREDENTIALS`, else the gcloud default credentials or the metadata
//!   server).
//! - `az://CONTAINER`: `MicrosoftAzureBuilder::from_env` (`AZURE_STORAGE_ACCOUNT_NAME`,
//!   `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_KEY`, `AZURE_STORAGE_CLIENT_ID` /
//!   `_SECRET` / `AZURE_STORAGE_TENANT_ID`, `AZURE_STORAGE_ENDPOINT`,
//!   `AZURE_STORAGE_USE_EMULATOR`, ...).
//!
//! Builder errors name the setting, never its value: keys and service-account JSON stay out of
//! logs and errors.

mod azure;
mod gcs;
mod s3;

use std::time::Duration;

use reqwest::StatusCode;

pub use azure::{AzureContainer, azure_from_builder, azure_from_url};
pub use gcs::{GcsBucket, gcs_from_builder, gcs_from_url};
pub use s3::{S3Bucket, s3_from_builder, s3_from_url};

use super::{BucketOutcome, BucketSpec, StorageError};

/// The object store a backend talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cloud {
    /// AWS S3 and S3-compatible stores (MinIO, R2, Supabase's S3 endpoint).
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    Azure,
}

impl Cloud {
    /// The cloud a `STORAGE_URL` scheme names (`s3`, `s3a`, `gs`, `az`, `azure`, `abfs`,
    /// `abfss`).
    pub(crate) fn of_scheme(scheme: &str) -> Option<Cloud> {
        match scheme {
            "s3" | "s3a" => Some(Cloud::S3),
            "gs" => Some(Cloud::Gcs),
            "az" | "azure" | "abfs" | "abfss" => Some(Cloud::Azure),
            _ => None,
        }
    }

    /// `videos.storage_provider`: `s3`, `gcs` or `azure`.
    pub fn provider(self) -> &'static str {
        match self {
            Cloud::S3 => "s3",
            Cloud::Gcs => "gcs",
            Cloud::Azure => "azure",
        }
    }

    /// What to check when the store refuses the credentials.
    pub(crate) fn credential_hint(self) -> &'static str {
        match self {
            Cloud::S3 => "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            Cloud::Gcs => {
                "check GOOGLE_SERVICE_ACCOUNT (or GOOGLE_APPLICATION_CREDENTIALS) and the \
                 account's roles on the bucket"
            }
            Cloud::Azure => {
                "check AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY (or the SAS or \
                 service principal settings)"
            }
        }
    }
}

/// Creates a missing bucket on its cloud.
#[derive(Clone, Debug)]
pub(crate) enum BucketCreator {
    /// An S3 bucket (`PUT /BUCKET`, SigV4).
    S3(S3Bucket),
    /// A Google Cloud Storage bucket (JSON API `buckets.insert`).
    Gcs(GcsBucket),
    /// An Azure container (`PUT ?restype=container`).
    Azure(AzureContainer),
}

impl BucketCreator {
    /// Creates the bucket; one that turns out to exist already is [`BucketOutcome::Exists`].
    pub async fn create(&self, spec: &BucketSpec) -> Result<BucketOutcome, StorageError> {
        match self {
            BucketCreator::S3(b) => b.create(spec).await,
            BucketCreator::Gcs(b) => b.create(spec).await,
            BucketCreator::Azure(c) => c.create(spec).await,
        }
    }
}

impl From<S3Bucket> for BucketCreator {
    fn from(b: S3Bucket) -> Self {
        BucketCreator::S3(b)
    }
}

impl From<GcsBucket> for BucketCreator {
    fn from(b: GcsBucket) -> Self {
        BucketCreator::Gcs(b)
    }
}

impl From<AzureContainer> for BucketCreator {
    fn from(c: AzureContainer) -> Self {
        BucketCreator::Azure(c)
    }
}

/// The HTTP client a bucket creation uses (one short request).
fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}

/// A credential object_store could not get: the request is never sent.
fn no_credential(cloud: Cloud, what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::permanent(
        "storage-access-denied",
        format!("{what}: no credential: {e}: {}", cloud.credential_hint()),
    )
}

/// Sends a `PUT` that object_store's own signer for the cloud (`sign`) signs first: it signs
/// an `http::Request` (method, URL, `headers`, body), which reqwest then sends as it is.
async fn put_signed(
    http: &reqwest::Client,
    url: &url::Url,
    headers: &[(&'static str, &'static str)],
    body: bytes::Bytes,
    what: &str,
    sign: impl FnOnce(&mut object_store::client::HttpRequest) -> object_store::Result<()>,
) -> Result<reqwest::Response, StorageError> {
    let config = |e: &dyn std::fmt::Display| {
        StorageError::permanent("storage-config", format!("{what}: {e}"))
    };
    let mut req = axum::http::Request::builder()
        .method(axum::http::Method::PUT)
        .uri(url.as_str());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut req = req
        .body(object_store::client::HttpRequestBody::from(body.clone()))
        .map_err(|e| config(&e))?;
    sign(&mut req).map_err(|e| config(&e))?;
    let (parts, _) = req.into_parts();
    http.request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .header(reqwest::header::CONTENT_LENGTH, body.len())
        .body(body)
        .send()
        .await
        .map_err(|e| unreachable(what, e))
}

/// The request could not be sent or answered: worth another try.
fn unreachable(what: &str, e: reqwest::Error) -> StorageError {
    StorageError::transient(
        "storage-unavailable",
        format!("{what}: {}", e.without_url()),
    )
}

/// What a cloud answered to a bucket creation, read the same way on every cloud: 2xx created;
/// `exists` (a code, or `None` for any 409) means it was there; a refused public bucket says
/// to set `STORAGE_PUBLIC=false`; 401/403 point at the credentials; 408, 429 and 5xx are
/// worth another try; anything else is refused for good. `detail` is the store's own error
/// code and message, never a credential.
fn creation_answer(
    cloud: Cloud,
    what: &str,
    status: StatusCode,
    detail: &str,
    exists: bool,
    public_refused: bool,
) -> Result<BucketOutcome, StorageError> {
    let detail = detail.trim();
    let told = if detail.is_empty() {
        status.to_string()
    } else {
        format!("{status} {detail}")
    };
    match status.as_u16() {
        200..=299 => Ok(BucketOutcome::Created),
        _ if exists => Ok(BucketOutcome::Exists),
        _ if public_refused => Err(StorageError::permanent(
            "storage-public-access-denied",
            format!(
                "{what}: {told}: the account does not allow public buckets: set \
                 STORAGE_PUBLIC=false (the download API hands out signed links), or allow \
                 public access on the account"
            ),
        )),
        401 | 403 => Err(StorageError::permanent(
            "storage-access-denied",
            format!("{what}: {told}: {}", cloud.credential_hint()),
        )),
        408 | 429 | 500..=599 => Err(StorageError::transient(
            "storage-unavailable",
            format!("{what}: {told}"),
        )),
        _ => Err(StorageError::permanent(
            "storage-rejected",
            format!("{what}: {told}"),
        )),
    }
}

/// A boolean setting as object_store reads it.
fn truthy(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "1" | "true" | "on" | "yes" | "y"
    )
}
