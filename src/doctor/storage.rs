//! The store: the bucket there (created when missing, as `run` does), then a small object
//! under `.doctor/` written, read back and compared, signed where the store can (and the
//! signed URL fetched), and deleted: on every path, a failure or a timeout included.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::{Check, Outcome};
use crate::config::Config;
use crate::stage::DownloadedFile;
use crate::storage::{BucketOutcome, ObjectBackend, PutRequest, StorageError};

/// Longest time the test object's deletion may take, after the round trip.
const DELETE_TIMEOUT: Duration = Duration::from_secs(10);

const CREDENTIALS: &str = "check the store's credentials (SUPABASE_SERVICE_ROLE_KEY, AWS_*, \
                           GOOGLE_*, AZURE_*) and that they may use this bucket";

/// The store's checks: `storage bucket` and `storage round trip`.
pub async fn checks(config: &Config, budget: Duration) -> Vec<Check> {
    let store = match crate::storage::configured::backend(&config.storage, config.supabase.as_ref())
    {
        Ok(store) => store,
        Err(why) => {
            return vec![Check::new(
                "storage bucket",
                0,
                Outcome::fail(why, CREDENTIALS),
            )];
        }
    };
    let bucket =
        super::report::timed("storage bucket", budget, bucket(store.as_ref(), config)).await;
    let round_trip = if bucket.status == super::Status::Fail {
        Check::new(
            "storage round trip",
            0,
            Outcome::skip("the bucket cannot be used"),
        )
    } else {
        round_trip(store, config, budget).await
    };
    vec![bucket, round_trip]
}

async fn bucket(store: &dyn ObjectBackend, config: &Config) -> Outcome {
    let spec = &config.storage.bucket_spec;
    let name = format!("bucket {} ({})", store.bucket(), store.provider());
    let done = match store.ensure_bucket(spec).await {
        Ok(BucketOutcome::Exists) => "exists",
        Ok(BucketOutcome::Created) => "was missing: created as `run` creates it",
        Err(e) => return Outcome::fail(format!("{name}: {e}"), CREDENTIALS),
    };
    match store.bucket_settings().await {
        Ok(None) => Outcome::pass(format!("{name} {done}")),
        Ok(Some(has)) if !accepts(&has, "video/mp4") => Outcome::fail(
            format!("{name} {done}, but refuses video/mp4 ({})", describe(&has)),
            "add video/mp4 (and the image and audio types of STORAGE_ALLOWED_MIME_TYPES) to the \
             bucket's allowed MIME types",
        ),
        Ok(Some(has)) => Outcome::pass(format!("{name} {done} ({})", describe(&has))),
        Err(e) => Outcome::fail(format!("{name}: its settings: {e}"), CREDENTIALS),
    }
}

/// A bucket's settings, for people.
fn describe(spec: &crate::storage::BucketSpec) -> String {
    let types = match spec.allowed_mime_types.len() {
        0 => "any content type".to_string(),
        n => format!("{n} content types"),
    };
    format!(
        "{}, file size limit {}, {types}",
        if spec.public { "public" } else { "private" },
        spec.file_size_limit
            .map(crate::admin::table::bytes)
            .unwrap_or_else(|| "the project's".into()),
    )
}

/// Whether a bucket with `spec` takes objects of `content_type` (no list: any; `type/*`).
fn accepts(spec: &crate::storage::BucketSpec, content_type: &str) -> bool {
    let family = content_type.split('/').next().unwrap_or_default();
    spec.allowed_mime_types.is_empty()
        || spec
            .allowed_mime_types
            .iter()
            .any(|t| t == content_type || *t == format!("{family}/*") || t == "*/*")
}

/// Writes, reads back, signs and deletes the test object; the deletion runs whatever
/// happened before it, with its own time limit.
async fn round_trip(store: Arc<dyn ObjectBackend>, config: &Config, budget: Duration) -> Check {
    let started = Instant::now();
    let key = format!(".doctor/{}.bin", uuid::Uuid::new_v4().simple());
    let payload = format!("douyin-worker doctor {key}\n").into_bytes();
    let steps = tokio::time::timeout(budget, steps(store.as_ref(), config, &key, &payload)).await;
    let deleted = tokio::time::timeout(DELETE_TIMEOUT, store.delete(&key)).await;
    let outcome = match (steps, deleted) {
        (Err(_), _) => Outcome::fail(
            format!("no answer within {budget:?}"),
            "the store hangs: check that it is reachable from this machine",
        ),
        (Ok(Err(outcome)), _) => outcome,
        (Ok(Ok(_)), Err(_)) | (Ok(Ok(_)), Ok(Err(_))) => Outcome::fail(
            format!("{key} was written but could not be deleted"),
            format!("delete {key} by hand; {CREDENTIALS}"),
        ),
        (Ok(Ok(done)), Ok(Ok(_))) => Outcome::pass(format!("{key}: {done}, deleted")),
    };
    Check::new(
        "storage round trip",
        started.elapsed().as_millis() as u64,
        outcome,
    )
}

/// Written, read back and compared, signed: what was done, or the failure.
async fn steps(
    store: &dyn ObjectBackend,
    config: &Config,
    key: &str,
    payload: &[u8],
) -> Result<String, Outcome> {
    let failed =
        |what: &str, e: StorageError| Outcome::fail(format!("{what} {key}: {e}"), CREDENTIALS);
    let file = temp_file(config, payload).map_err(|e| {
        Outcome::fail(
            format!("the test object's file: {e}"),
            "see the temp folder's check",
        )
    })?;
    let spec = &config.storage.bucket_spec;
    let content_type = spec
        .allowed_mime_types
        .iter()
        .find(|t| !t.ends_with('*'))
        .map_or("application/octet-stream", String::as_str);
    let metadata = Default::default();
    let stored = DownloadedFile {
        path: file.path().to_path_buf(),
        size: payload.len() as u64,
        sha256: format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(payload)),
    };
    let req = PutRequest {
        key,
        file: &stored,
        content_type,
        cache_control: "no-cache",
        metadata: &metadata,
    };
    store.put(&req).await.map_err(|e| failed("write", e))?;
    let read = read_back(store, key).await.map_err(|e| failed("read", e))?;
    if read != payload {
        return Err(Outcome::fail(
            format!(
                "read {key}: {} bytes came back, not the {} written",
                read.len(),
                payload.len()
            ),
            "the store does not give back what it was given: see its log",
        ));
    }
    let signed = match store.signed_url(key, Duration::from_secs(60)).await {
        Ok(url) => match fetch(&url).await {
            Ok(body) if body == payload => "written, read back, signed URL serves it".to_string(),
            Ok(_) => {
                return Err(Outcome::fail(
                    format!("the signed URL of {key} serves other bytes"),
                    "see the store's log",
                ));
            }
            Err(why) => {
                return Err(Outcome::fail(
                    format!("the signed URL of {key}: {why}"),
                    "the download API's links will not work: check the store's public address",
                ));
            }
        },
        Err(e) if e.code == "no-signed-urls" => {
            "written, read back (this store signs no URL: the download API serves files itself)"
                .to_string()
        }
        Err(e) => return Err(failed("sign", e)),
    };
    Ok(signed)
}

/// The test object's bytes in a file of the temp folder (else the system's), removed on drop.
fn temp_file(config: &Config, payload: &[u8]) -> std::io::Result<tempfile::NamedTempFile> {
    use std::io::Write;
    let mut file = tempfile::Builder::new()
        .prefix(".douyin-worker-doctor-")
        .tempfile_in(&config.worker.temp_dir)
        .or_else(|_| tempfile::NamedTempFile::new())?;
    file.write_all(payload)?;
    file.flush()?;
    Ok(file)
}

async fn read_back(store: &dyn ObjectBackend, key: &str) -> Result<Vec<u8>, StorageError> {
    let Some(mut stream) = store.open(key).await? else {
        return Err(StorageError::permanent(
            "missing",
            "not found right after it was written",
        ));
    };
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.body.next().await {
        bytes.extend_from_slice(&chunk?);
    }
    Ok(bytes)
}

/// The body of a signed URL (a small object: read whole).
async fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| {
            format!(
                "cannot fetch it ({})",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "request failed".into())
            )
        })?;
    if !response.status().is_success() {
        return Err(format!("answered HTTP {}", response.status().as_u16()));
    }
    response
        .bytes()
        .await
        .map(|b| b.to_vec())
        .map_err(|_| "the body was cut short".into())
}
