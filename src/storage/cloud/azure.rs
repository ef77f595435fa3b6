//! Azure Blob Storage: the container of an `az://` URL, and creating it.

use object_store::azure::{
    AzureAuthorizer, AzureConfigKey, AzureCredentialProvider, MicrosoftAzure, MicrosoftAzureBuilder,
};
use reqwest::StatusCode;
use url::Url;

use super::{Cloud, creation_answer, http_client, no_credential, put_signed, truthy};
use crate::storage::{BucketOutcome, BucketSpec, StorageError};

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
    let http = http_client()?;
    let creator = AzureContainer {
        name: container,
        url: container_url,
        account,
        credentials: store.credentials().clone(),
        http,
    };
    Ok((store, creator))
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
        let credential = self
            .credentials
            .get_credential()
            .await
            .map_err(|e| no_credential(Cloud::Azure, &what, e))?;
        let mut url = self.url.clone();
        url.query_pairs_mut().append_pair("restype", "container");
        let headers: &[(&str, &str)] = if spec.public {
            &[("x-ms-blob-public-access", "blob")]
        } else {
            &[]
        };
        let signer = AzureAuthorizer::new(&credential, &self.account);
        let resp = put_signed(
            &self.http,
            &url,
            headers,
            bytes::Bytes::new(),
            &what,
            |req| signer.try_authorize(req),
        )
        .await?;
        let status = resp.status();
        let code = resp
            .headers()
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        creation_answer(
            Cloud::Azure,
            &what,
            status,
            &code,
            status == StatusCode::CONFLICT && code == "ContainerAlreadyExists",
            status == StatusCode::CONFLICT && code == "PublicAccessNotPermitted",
        )
    }
}
