//! Google Cloud Storage: the bucket of a `gs://` URL, and creating it.

use object_store::gcp::{
    GcpCredentialProvider, GoogleCloudStorage, GoogleCloudStorageBuilder, GoogleConfigKey,
};
use reqwest::StatusCode;
use url::Url;

use super::{Cloud, creation_answer, http_client, no_credential, unreachable};
use crate::storage::{BucketOutcome, BucketSpec, StorageError};

/// Google's endpoint, unless the settings name another (`google_base_url`, or a
/// service-account file's `gcs_base_url`, as object_store reads them).
const DEFAULT_BASE_URL: &str = "https://storage.googleapis.com";

/// The bucket of a `gs://BUCKET` URL, configured from the `GOOGLE_*` variables; a missing
/// bucket is created in `GOOGLE_CLOUD_PROJECT`, else in the service account's own project.
pub fn gcs_from_url(url: &Url) -> Result<(GoogleCloudStorage, GcsBucket), String> {
    let bucket = url
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| format!("STORAGE_URL={url}: expected gs://BUCKET"))?;
    let project = std::env::var("GOOGLE_CLOUD_PROJECT")
        .ok()
        .filter(|p| !p.trim().is_empty());
    gcs_from_builder(
        GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket),
        project,
    )
    .map_err(|e| format!("STORAGE_URL={url}: Google Cloud Storage settings: {e}"))
}

/// A bucket from a configured builder (its bucket name set), with what creating the bucket
/// needs. `project` is where a missing bucket is created; without it, the service account's
/// `project_id`.
pub fn gcs_from_builder(
    builder: GoogleCloudStorageBuilder,
    project: Option<String>,
) -> Result<(GoogleCloudStorage, GcsBucket), String> {
    let value = |key| builder.get_config_value(&key).filter(|v| !v.is_empty());
    let name = value(GoogleConfigKey::Bucket).ok_or("no bucket name (gs://BUCKET)")?;
    // The service-account JSON, for its project and endpoint (object_store keeps its parsed
    // copy private). Unreadable here means object_store's own build below says why.
    let account: serde_json::Value = value(GoogleConfigKey::ServiceAccountKey)
        .or_else(|| {
            value(GoogleConfigKey::ServiceAccount)
                .or_else(|| value(GoogleConfigKey::ApplicationCredentials))
                .and_then(|path| std::fs::read_to_string(path).ok())
        })
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default();
    let field = |name: &str| {
        account
            .get(name)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let base = value(GoogleConfigKey::BaseUrl)
        .or_else(|| field("gcs_base_url"))
        .unwrap_or_else(|| DEFAULT_BASE_URL.into());
    let mut api = Url::parse(&base).map_err(|_| "the GCS base URL is not a valid URL")?;
    api.path_segments_mut()
        .map_err(|_| "the GCS base URL is not a valid URL")?
        .pop_if_empty()
        .extend(["storage", "v1", "b"]);
    let project = project.or_else(|| field("project_id"));
    let store = builder.build().map_err(|e| e.to_string())?;
    let bucket = GcsBucket {
        name,
        api,
        project,
        credentials: store.credentials().clone(),
        http: http_client()?,
    };
    Ok((store, bucket))
}

/// Creates a Google Cloud Storage bucket (object_store reads and writes objects only).
#[derive(Clone)]
pub struct GcsBucket {
    name: String,
    /// The JSON API's bucket collection: `https://storage.googleapis.com/storage/v1/b`.
    api: Url,
    project: Option<String>,
    credentials: GcpCredentialProvider,
    http: reqwest::Client,
}

impl std::fmt::Debug for GcsBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsBucket")
            .field("name", &self.name)
            .field("api", &self.api.as_str())
            .field("project", &self.project)
            .finish_non_exhaustive()
    }
}

impl GcsBucket {
    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates the bucket in the project (JSON API `buckets.insert`). Private: uniform
    /// bucket-level access, readable through signed links only. Public: objects readable by
    /// anyone (`predefinedDefaultObjectAcl=publicRead`, which needs fine-grained access); a
    /// project that forbids public objects refuses, and the error says to set
    /// `STORAGE_PUBLIC=false`. A 409 means the name is taken: by this project (it exists), or
    /// by another one, which the next request tells as access denied. Size limits and content
    /// types have no bucket-level equivalent on GCS.
    pub async fn create(&self, spec: &BucketSpec) -> Result<BucketOutcome, StorageError> {
        let what = format!("creating bucket gs://{}", self.name);
        let Some(project) = &self.project else {
            return Err(StorageError::permanent(
                "no-such-bucket",
                format!(
                    "bucket gs://{0} does not exist: set GOOGLE_CLOUD_PROJECT to the project to \
                     create it in, or create it yourself (gcloud storage buckets create gs://{0})",
                    self.name
                ),
            ));
        };
        let credential = self
            .credentials
            .get_credential()
            .await
            .map_err(|e| no_credential(Cloud::Gcs, &what, e))?;
        let mut url = self.api.clone();
        url.query_pairs_mut().append_pair("project", project);
        if spec.public {
            url.query_pairs_mut()
                .append_pair("predefinedDefaultObjectAcl", "publicRead");
        }
        let body = serde_json::json!({
            "name": self.name,
            "iamConfiguration": {
                "uniformBucketLevelAccess": { "enabled": !spec.public },
            },
        });
        let mut req = self.http.post(url).json(&body);
        // Empty with `disable_oauth` (emulators).
        if !credential.bearer.is_empty() {
            req = req.bearer_auth(&credential.bearer);
        }
        let resp = req.send().await.map_err(|e| unreachable(&what, e))?;
        let status = resp.status();
        let answer: serde_json::Value = resp.json().await.unwrap_or_default();
        let message = answer
            .pointer("/error/message")
            .and_then(|m| m.as_str())
            .unwrap_or("");
        creation_answer(
            Cloud::Gcs,
            &what,
            status,
            message,
            status == StatusCode::CONFLICT,
            spec.public
                && matches!(
                    status,
                    StatusCode::BAD_REQUEST | StatusCode::PRECONDITION_FAILED
                ),
        )
    }
}
