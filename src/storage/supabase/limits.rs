//! Size limits as Supabase projects really have them, and the bucket created within them.
//!
//! Every storage-api server has a global upload limit (`UPLOAD_FILE_SIZE_LIMIT`: 50 MB on
//! Supabase's Free plan and in the self-hosting compose file, higher on paid plans), and a
//! bucket may have a smaller one of its own. The server refuses a bucket whose own limit is
//! above the global one (`EntityTooLarge` on `POST /bucket`), and a bucket without one
//! (`file_size_limit: null`) takes the global one. So the bucket is created with the
//! configured limit (`STORAGE_FILE_SIZE_LIMIT`, by default `MAX_VIDEO_BYTES`) and, when that
//! is refused for its size, again without a limit of its own, with one log line saying so.
//!
//! Before an upload, the file is checked against the limits the server will apply: the
//! bucket's (`GET /bucket/{id}`) and the project's (`Tus-Max-Size` of `OPTIONS
//! /upload/resumable`, which storage-api sets to the global limit). Learnt at most once a
//! minute; a limit that cannot be learnt is not checked (the server still is). A file above
//! either, and an upload the server refuses for its size anyway, is a permanent failure that
//! names the limit and `MAX_VIDEO_BYTES`.

use super::*;

/// How long learnt limits are trusted before they are asked again (a limit raised in the
/// dashboard takes effect within it).
const LIMITS_TTL: Duration = Duration::from_secs(60);

/// Where the project's upload limit is set, for messages.
const PROJECT_LIMIT_SETTING: &str = "the Storage settings' \"Upload file size limit\" \
     (50 MB on Supabase's Free plan; UPLOAD_FILE_SIZE_LIMIT when self-hosted)";

/// The size limits a bucket's uploads are held to (`None`: not known, or none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UploadLimits {
    /// The bucket's own `file_size_limit`.
    pub bucket: Option<u64>,
    /// The project's global upload limit.
    pub project: Option<u64>,
}

/// The last limits learnt, and when.
pub(super) type LimitsCache = Arc<Mutex<Option<(tokio::time::Instant, UploadLimits)>>>;

impl SupabaseStorage {
    /// The limits uploads to the bucket are held to, from the server at most once a minute.
    pub async fn upload_limits(&self) -> UploadLimits {
        let now = tokio::time::Instant::now();
        if let Some((at, limits)) = *self.limits.lock().unwrap_or_else(|e| e.into_inner())
            && now.duration_since(at) < LIMITS_TTL
        {
            return limits;
        }
        let (bucket, project) = tokio::join!(self.bucket_limit(), self.project_limit());
        let limits = UploadLimits { bucket, project };
        *self.limits.lock().unwrap_or_else(|e| e.into_inner()) = Some((now, limits));
        limits
    }

    /// The bucket's settings as the server has them (`GET /bucket/{id}`: `public`,
    /// `file_size_limit`, `allowed_mime_types`; a null limit or list is none).
    pub(super) async fn bucket_spec(&self) -> Result<BucketSpec, StorageError> {
        let url = self.url(&format!("bucket/{}", self.bucket));
        let row: serde_json::Value = self
            .call(self.client.get(url))
            .await?
            .json()
            .await
            .map_err(|e| StorageError::transient("storage-error", format!("bucket: {e}")))?;
        let types = row["allowed_mime_types"].as_array().into_iter().flatten();
        Ok(BucketSpec {
            public: row["public"].as_bool().unwrap_or(false),
            file_size_limit: row["file_size_limit"].as_u64().filter(|l| *l > 0),
            allowed_mime_types: types.filter_map(|t| t.as_str().map(String::from)).collect(),
        })
    }

    /// The bucket's own `file_size_limit` (`GET /bucket/{id}`), if it has one and may be read.
    async fn bucket_limit(&self) -> Option<u64> {
        let url = self.url(&format!("bucket/{}", self.bucket));
        let row: serde_json::Value = self
            .call(self.client.get(url))
            .await
            .inspect_err(|e| tracing::debug!(error = %e, "bucket limit not read"))
            .ok()?
            .json()
            .await
            .ok()?;
        row["file_size_limit"].as_u64().filter(|l| *l > 0)
    }

    /// The project's upload limit: `Tus-Max-Size` of the TUS endpoint's `OPTIONS` (contract
    /// §7: "`Tus-Max-Size` = global upload limit").
    async fn project_limit(&self) -> Option<u64> {
        let response = self
            .authed(
                self.client
                    .request(reqwest::Method::OPTIONS, self.url("upload/resumable")),
            )
            .header("Tus-Resumable", "1.0.0")
            .send()
            .await
            .inspect_err(|e| tracing::debug!(error = %e, "project upload limit not read"))
            .ok()?;
        response
            .headers()
            .get("tus-max-size")?
            .to_str()
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|l| *l > 0)
    }

    /// Refuses, before any byte is sent, a file above a limit the server would hold it to.
    pub(super) async fn check_size(&self, size: u64) -> Result<(), StorageError> {
        let limits = self.upload_limits().await;
        let over_bucket = limits.bucket.filter(|l| size > *l);
        let over_project = limits.project.filter(|l| size > *l);
        // The smaller limit is the one to name: raising the other would not help.
        match (over_bucket, over_project) {
            (Some(b), p) if p.is_none_or(|p| b <= p) => Err(StorageError::permanent(
                "entity-too-large",
                format!(
                    "the file is {size} bytes, above the file size limit of bucket {bucket} \
                     ({b} bytes): raise the bucket's limit (dashboard: Storage → {bucket} → \
                     Edit bucket), or set MAX_VIDEO_BYTES to at most {b} so that larger videos \
                     are refused before they are downloaded",
                    bucket = self.bucket
                ),
            )),
            (_, Some(p)) => Err(StorageError::permanent(
                "entity-too-large",
                format!(
                    "the file is {size} bytes, above the project's upload limit of {p} bytes \
                     ({PROJECT_LIMIT_SETTING}): raise it, or set MAX_VIDEO_BYTES to at most \
                     {p} so that larger videos are refused before they are downloaded"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// What to say when the server refuses an upload for its size although the file passed
    /// [`SupabaseStorage::check_size`] (a limit that could not be read, or changed since).
    pub(super) fn refused_for_size(&self, size: u64, e: StorageError) -> StorageError {
        if e.code != "entity-too-large" {
            return e;
        }
        StorageError::permanent(
            e.code,
            format!(
                "{}: the file ({size} bytes) is above the file size limit of bucket {} or the \
                 project's upload limit ({PROJECT_LIMIT_SETTING}): raise the limit, or set \
                 MAX_VIDEO_BYTES at or below it so that larger videos are refused before they \
                 are downloaded",
                e.message, self.bucket
            ),
        )
    }

    /// Creates the bucket with `spec`; when the server refuses its size limit (above the
    /// project's upload limit), creates it with no limit of its own and logs one line saying
    /// so.
    pub(super) async fn create_bucket(
        &self,
        spec: &BucketSpec,
    ) -> Result<BucketOutcome, StorageError> {
        let refused = match self.post_bucket(spec, spec.file_size_limit).await {
            Err(e) if e.code == "entity-too-large" && spec.file_size_limit.is_some() => e,
            other => return other,
        };
        let outcome = self.post_bucket(spec, None).await?;
        if outcome == BucketOutcome::Exists {
            // Another worker created it meanwhile (and said so).
            return Ok(outcome);
        }
        let limit = spec.file_size_limit.unwrap_or_default();
        let project = match self.project_limit().await {
            Some(p) => format!(" of {p} bytes"),
            None => String::new(),
        };
        tracing::warn!(
            bucket = %self.bucket,
            error = %refused,
            "bucket created with no file size limit of its own: Supabase Storage refused \
             {limit} bytes (STORAGE_FILE_SIZE_LIMIT, by default MAX_VIDEO_BYTES) as above the \
             project's upload limit{project}, which applies instead; set \
             STORAGE_FILE_SIZE_LIMIT at or below it to give the bucket a limit of its own"
        );
        Ok(outcome)
    }

    /// `POST /bucket` with `file_size_limit` (`None`: no limit of its own); an existing
    /// bucket is no error.
    async fn post_bucket(
        &self,
        spec: &BucketSpec,
        file_size_limit: Option<u64>,
    ) -> Result<BucketOutcome, StorageError> {
        let body = serde_json::json!({
            "id": self.bucket,
            "name": self.bucket,
            "public": spec.public,
            "file_size_limit": file_size_limit,
            "allowed_mime_types": if spec.allowed_mime_types.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::json!(spec.allowed_mime_types)
            },
        });
        let created = self
            .authed(self.client.post(self.url("bucket")))
            .json(&body)
            .send()
            .await
            .map_err(network)?;
        if created.status().is_success() {
            return Ok(BucketOutcome::Created);
        }
        let err = rest_error(created).await;
        if err.message.contains("BucketAlreadyExists") {
            return Ok(BucketOutcome::Exists);
        }
        Err(err)
    }
}
