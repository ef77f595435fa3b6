//! Uploads above the standard limit with Supabase Storage's TUS resumable protocol: 6 MiB
//! chunks, `x-upsert` on every request, and after an interrupted chunk the server's offset is
//! asked and the upload continues from there.
//!
//! An upload whose URL has expired (contract §7: "Upload URLs expire after
//! `TUS_URL_EXPIRY_MS` (default 1 h)"; the server then answers 410) or vanished (404) is not
//! resumed, asked about or terminated: its bytes are gone, and the try fails at once
//! (`tus-upload-expired`, transient) so that the next one starts a new upload.
//!
//! An upload that is given up is terminated (`DELETE` on its URL, contract §7 "Cancel"), or
//! it would stay open on the server, its bytes included, until it expires: at once when it
//! fails (for good, or after its chunk attempts), and in the background when its future is
//! dropped (a cancelled job), which `drain` waits for before the process exits. Each
//! termination is bounded by `terminate_timeout` and only logged when it fails.

use super::*;

/// A created upload that is neither finished nor terminated yet: dropped while it still holds
/// the upload's URL, it terminates the upload in the background.
struct OpenUpload {
    storage: SupabaseStorage,
    location: Option<Url>,
    key: String,
}

impl OpenUpload {
    /// The upload is done: nothing to terminate.
    fn finished(mut self) {
        self.location = None;
    }

    /// Terminates the upload now (a drop meanwhile terminates it in the background).
    async fn terminate(mut self) {
        if let Some(location) = &self.location {
            self.storage.terminate(location, &self.key).await;
        }
        self.location = None;
    }
}

impl Drop for OpenUpload {
    fn drop(&mut self) {
        let Some(location) = self.location.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(key = %self.key, "TUS upload abandoned without a runtime to terminate it");
            return;
        };
        let storage = self.storage.clone();
        let key = std::mem::take(&mut self.key);
        self.storage.background.spawn_on(
            async move { storage.terminate(&location, &key).await },
            &runtime,
        );
    }
}

impl SupabaseStorage {
    /// `DELETE` on the upload's URL, within `terminate_timeout`; a failure is logged, never
    /// returned (the server expires the upload in the end). When that URL cannot be reached
    /// and is not under the storage root (a `Location` built from a host the worker cannot
    /// reach), the same upload is terminated under the root: the contract's `Location` is
    /// `$STORAGE/upload/resumable/<upload-id>`.
    async fn terminate(&self, location: &Url, key: &str) {
        let at_root = location
            .path_segments()
            .and_then(|mut s| s.next_back())
            .filter(|id| !id.is_empty())
            .map(|id| self.url(&format!("upload/resumable/{id}")))
            .filter(|u| u != location);
        let mut unreachable = None;
        for url in std::iter::once(location.clone()).chain(at_root) {
            let sent = self
                .authed(self.client.delete(url))
                .header("Tus-Resumable", "1.0.0")
                .timeout(self.terminate_timeout)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    return tracing::info!(key, "unfinished TUS upload terminated");
                }
                // Gone already (expired, or terminated by an earlier try).
                Ok(r) if r.status() == StatusCode::NOT_FOUND => {
                    return tracing::debug!(key, "unfinished TUS upload already gone");
                }
                Ok(r) => {
                    return tracing::warn!(
                        key,
                        status = r.status().as_u16(),
                        "the unfinished TUS upload could not be terminated; the server expires it"
                    );
                }
                Err(e) => unreachable = Some(network(e)),
            }
        }
        if let Some(e) = unreachable {
            tracing::warn!(
                key,
                error = %e,
                "the unfinished TUS upload could not be terminated; the server expires it"
            );
        }
    }

    pub(super) async fn put_tus(&self, req: &PutRequest<'_>) -> Result<(), StorageError> {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let seconds = req
            .cache_control
            .trim_start_matches("max-age=")
            .parse::<u64>()
            .unwrap_or(3600)
            .to_string();
        let meta_json = serde_json::to_string(req.metadata).unwrap_or_default();
        let upload_metadata = format!(
            "bucketName {},objectName {},contentType {},cacheControl {},metadata {}",
            b64(&self.bucket),
            b64(req.key),
            b64(req.content_type),
            b64(&seconds),
            b64(&meta_json)
        );
        let response = self
            .authed(self.client.post(self.url("upload/resumable")))
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Length", req.file.size)
            .header("Upload-Metadata", upload_metadata)
            .header("x-upsert", "true")
            .timeout(self.upload_timeout)
            .send()
            .await
            .map_err(network)?;
        if response.status() != StatusCode::CREATED {
            return Err(tus_error("creating the upload", response).await);
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| self.root.join(l).ok())
            .ok_or_else(|| {
                StorageError::transient("tus", "the TUS create answer had no Location")
            })?;
        let upload = OpenUpload {
            storage: self.clone(),
            location: Some(location.clone()),
            key: req.key.to_string(),
        };
        match self.send_chunks(req, &location).await {
            Ok(()) => {
                upload.finished();
                Ok(())
            }
            // Nothing left on the server to terminate.
            Err(e) if e.code == UPLOAD_GONE => {
                upload.finished();
                Err(e)
            }
            Err(e) => {
                upload.terminate().await;
                Err(e)
            }
        }
    }

    /// The file's bytes in chunks from offset 0, resuming at the server's offset after a
    /// failed chunk, until all are there or the upload must be given up.
    async fn send_chunks(&self, req: &PutRequest<'_>, location: &Url) -> Result<(), StorageError> {
        let size = req.file.size;
        let mut offset = 0u64;
        let mut failures = 0u32;
        while offset < size {
            let len = TUS_CHUNK.min(size - offset);
            let sent = self
                .authed(self.client.patch(location.clone()))
                .header("Tus-Resumable", "1.0.0")
                .header("Upload-Offset", offset)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/offset+octet-stream",
                )
                .header(reqwest::header::CONTENT_LENGTH, len)
                .header("x-upsert", "true")
                .body(Self::body(&req.file.path, offset, len).await?)
                .timeout(self.upload_timeout)
                .send()
                .await;
            let why = match sent {
                Ok(r) if r.status() == StatusCode::NO_CONTENT => {
                    offset = upload_offset(r.headers()).unwrap_or(offset + len);
                    failures = 0;
                    continue;
                }
                Ok(r) if gone(r.status()) => return Err(upload_gone(offset, size, r.status())),
                Ok(r) if matches!(r.status().as_u16(), 413 | 415) => {
                    return Err(tus_error("uploading", r).await);
                }
                Ok(r) => format!("HTTP {}", r.status().as_u16()),
                Err(e) => network(e).message,
            };
            failures += 1;
            if failures >= self.chunk_attempts {
                return Err(StorageError::transient(
                    "tus",
                    format!("TUS upload stopped at byte {offset} of {size}: {why}"),
                ));
            }
            tracing::info!(offset, why = %why, "TUS chunk failed; asking the server where to resume");
            let wait =
                crate::retry::Backoff::new(Duration::from_millis(200), Duration::from_secs(5))
                    .after(failures);
            tokio::time::sleep(wait).await;
            // The server's offset is the truth after an interrupted PATCH.
            let head = self
                .authed(self.client.head(location.clone()))
                .header("Tus-Resumable", "1.0.0")
                .header("x-upsert", "true")
                .send()
                .await
                .map_err(network)?;
            match head.status() {
                StatusCode::OK => {
                    offset = upload_offset(head.headers()).unwrap_or(offset);
                }
                s if gone(s) => return Err(upload_gone(offset, size, s)),
                s => {
                    return Err(StorageError::transient(
                        "tus",
                        format!("HEAD of the TUS upload answered HTTP {}", s.as_u16()),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The code of an upload whose URL no longer leads anywhere (expired, or terminated): its
/// bytes are gone with it, so the next try starts a new upload.
pub(super) const UPLOAD_GONE: &str = "tus-upload-expired";

/// Whether an answer on the upload's URL says the upload is gone: 410 once its URL expired
/// (`@tus/server`'s "The file for this url no longer exists"), 404 once it is unknown.
fn gone(status: StatusCode) -> bool {
    matches!(status, StatusCode::GONE | StatusCode::NOT_FOUND)
}

fn upload_gone(offset: u64, size: u64, status: StatusCode) -> StorageError {
    StorageError::transient(
        UPLOAD_GONE,
        format!(
            "the TUS upload's URL expired or vanished at byte {offset} of {size} (HTTP {}; \
             Supabase Storage keeps an upload URL for TUS_URL_EXPIRY_MS from its creation, an \
             hour by default): the next try starts a new upload",
            status.as_u16()
        ),
    )
}

fn upload_offset(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get("upload-offset")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Maps a TUS error: real statuses, plain-text bodies.
async fn tus_error(what: &str, response: reqwest::Response) -> StorageError {
    let status = response.status().as_u16();
    let body = crate::redact::excerpt(&response.text().await.unwrap_or_default(), 200);
    let text = format!(
        "Supabase Storage TUS {what}: HTTP {status}: {}",
        body.trim()
    );
    match status {
        413 => StorageError::permanent("entity-too-large", text),
        415 => StorageError::permanent("invalid-mime-type", text),
        401 | 403 => StorageError::permanent("storage-access-denied", text),
        404 => StorageError::permanent(
            "no-such-bucket",
            format!("{text}: create the bucket (douyin-worker setup-storage, or the dashboard)"),
        ),
        _ => StorageError::transient("tus", text),
    }
}
