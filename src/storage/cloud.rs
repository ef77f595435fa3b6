//! The clouds behind [`super::object::ObjectStoreBackend`]: which one a `STORAGE_URL` names,
//! how each one's store is built from its standard environment variables, and the one thing
//! `object_store` cannot do for us, creating an Azure container.
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

use std::time::Duration;

use object_store::azure::{
    AzureAuthorizer, AzureConfigKey, AzureCredentialProvider, MicrosoftAzure, MicrosoftAzureBuilder,
};
use object_store::gcp::{GoogleCloudStorage, GoogleCloudStorageBuilder};
use url::Url;

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
    pub fn of_scheme(scheme: &str) -> Option<Cloud> {
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
    pub fn credential_hint(self) -> &'static str {
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

/// The bucket of a `gs://BUCKET` URL, configured from the `GOOGLE_*` variables.
pub fn gcs_from_url(url: &Url) -> Result<(GoogleCloudStorage, String), String> {
    let bucket = url
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| format!("STORAGE_URL={url}: expected gs://BUCKET"))?
        .to_string();
    let store = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(&bucket)
        .build()
        .map_err(|e| format!("STORAGE_URL={url}: Google Cloud Storage settings: {e}"))?;
    Ok((store, bucket))
}

/// The container of an `az://CONTAINER` URL (or `abfs[s]://CONTAINER@ACCOUNT.dfs.core.windows.net`),
/// configured from the `AZURE_*` variables.
pub fn azure_from_url(url: &Url) -> Result<(MicrosoftAzure, AzureContainer), String> {
    let host = url.host_str().unwrap_or("");
    let mut builder = MicrosoftAzureBuilder::from_env();
    let container = if url.username().is_empty() {
        host
    } else {
        // abfs[s]://CONTAINER@ACCOUNT.dfs.core.windows.net
        if let Some((account, _)) = host.split_once('.') {
            builder = builder.with_account(account);
        }
        url.username()
    };
    if container.is_empty() {
        return Err(format!("STORAGE_URL={url}: expected az://CONTAINER"));
    }
    azure_from_builder(builder.with_container_name(container))
        .map_err(|e| format!("STORAGE_URL={url}: {e}"))
}

/// A container from a configured builder (its container name set), with what creating the
/// container needs.
pub fn azure_from_builder(
    builder: MicrosoftAzureBuilder,
) -> Result<(MicrosoftAzure, AzureContainer), String> {
    let value = |key| builder.get_config_value(&key).filter(|v| !v.is_empty());
    let container = value(AzureConfigKey::ContainerName)
        .ok_or("Azure settings: no container name (az://CONTAINER)")?;
    let emulator = value(AzureConfigKey::UseEmulator).is_some_and(|v| truthy(&v));
    let account = value(AzureConfigKey::AccountName);
    // The same account URL object_store computes (its own is private).
    let (account, mut container_url) = if emulator {
        let account = account.unwrap_or_else(|| "devstoreaccount1".into());
        let base = std::env::var("AZURITE_BLOB_STORAGE_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:10000".into());
        let mut url = Url::parse(&base)
            .map_err(|_| "AZURITE_BLOB_STORAGE_URL: not a valid URL".to_string())?;
        url.path_segments_mut()
            .map_err(|_| "AZURITE_BLOB_STORAGE_URL: not a valid URL".to_string())?
            .pop_if_empty()
            .push(&account);
        (account, url)
    } else {
        let account = account.ok_or(
            "Azure settings: no storage account: set AZURE_STORAGE_ACCOUNT_NAME (or \
             AZURE_STORAGE_USE_EMULATOR=true for Azurite)",
        )?;
        let endpoint = match value(AzureConfigKey::Endpoint) {
            Some(e) => e,
            None if value(AzureConfigKey::UseFabricEndpoint).is_some_and(|v| truthy(&v)) => {
                format!("https://{account}.blob.fabric.microsoft.com")
            }
            None => format!("https://{account}.blob.core.windows.net"),
        };
        let url = Url::parse(&endpoint)
            .map_err(|_| "AZURE_STORAGE_ENDPOINT: not a valid URL".to_string())?;
        (account, url)
    };
    container_url
        .path_segments_mut()
        .map_err(|_| "Azure endpoint: not a valid URL".to_string())?
        .pop_if_empty()
        .push(&container);
    let store = builder
        .build()
        .map_err(|e| format!("Azure settings: {e}"))?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let creator = AzureContainer {
        name: container,
        url: container_url,
        account,
        credentials: store.credentials().clone(),
        http,
    };
    Ok((store, creator))
}

/// A boolean setting as object_store reads it.
fn truthy(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "1" | "true" | "on" | "yes" | "y"
    )
}

/// Creates an Azure container (object_store reads and writes blobs only).
#[derive(Clone)]
pub struct AzureContainer {
    name: String,
    /// `https://ACCOUNT.blob.core.windows.net/CONTAINER` (Azurite: `http://HOST:PORT/ACCOUNT/CONTAINER`).
    url: Url,
    account: String,
    credentials: AzureCredentialProvider,
    http: reqwest::Client,
}

impl std::fmt::Debug for AzureContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureContainer")
            .field("url", &self.url.as_str())
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl AzureContainer {
    /// The container's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates the container (`PUT ?restype=container`, with blob-level public read access
    /// when `spec.public`); an existing container is [`BucketOutcome::Exists`]. Size limits and
    /// content types have no container-level equivalent on Azure.
    pub async fn create(&self, spec: &BucketSpec) -> Result<BucketOutcome, StorageError> {
        let what = format!("creating container {}", self.url);
        let credential = self.credentials.get_credential().await.map_err(|e| {
            StorageError::permanent(
                "storage-access-denied",
                format!(
                    "{what}: no credential: {e}: {}",
                    Cloud::Azure.credential_hint()
                ),
            )
        })?;
        let mut url = self.url.clone();
        url.query_pairs_mut().append_pair("restype", "container");
        let mut req = axum::http::Request::builder()
            .method(axum::http::Method::PUT)
            .uri(url.as_str());
        if spec.public {
            req = req.header("x-ms-blob-public-access", "blob");
        }
        let mut req = req
            .body(object_store::client::HttpRequestBody::empty())
            .map_err(|e| StorageError::permanent("storage-config", format!("{what}: {e}")))?;
        AzureAuthorizer::new(&credential, &self.account)
            .try_authorize(&mut req)
            .map_err(|e| StorageError::permanent("storage-config", format!("{what}: {e}")))?;
        let (parts, _) = req.into_parts();
        let resp = self
            .http
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .header(reqwest::header::CONTENT_LENGTH, "0")
            .send()
            .await
            .map_err(|e| {
                StorageError::transient(
                    "storage-unavailable",
                    format!("{what}: {}", e.without_url()),
                )
            })?;
        let status = resp.status();
        let code = resp
            .headers()
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        match status.as_u16() {
            200..=299 => Ok(BucketOutcome::Created),
            409 if code == "ContainerAlreadyExists" => Ok(BucketOutcome::Exists),
            409 if code == "PublicAccessNotPermitted" => Err(StorageError::permanent(
                "storage-public-access-denied",
                format!(
                    "{what}: the account does not allow public containers: set \
                     STORAGE_PUBLIC=false, or allow blob public access on the account"
                ),
            )),
            401 | 403 => Err(StorageError::permanent(
                "storage-access-denied",
                format!(
                    "{what}: {status} {code}: {}",
                    Cloud::Azure.credential_hint()
                ),
            )),
            408 | 429 | 500..=599 => Err(StorageError::transient(
                "storage-unavailable",
                format!("{what}: {status} {code}"),
            )),
            _ => Err(StorageError::permanent(
                "storage-rejected",
                format!("{what}: {status} {code}"),
            )),
        }
    }
}
