//! The local-folder backend, the embedded default: objects are files under
//! `{root}/{key}`, written to a temporary name beside the target and renamed into place
//! (a reader never sees half a file; a retry replaces, never duplicates), with a
//! `{key}.meta.json` sidecar holding content type, cache control, metadata and the etag.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::json;

use super::{BucketOutcome, BucketSpec, ObjectBackend, ObjectInfo, PutRequest, StorageError};

/// Objects in a folder.
#[derive(Clone, Debug)]
pub struct LocalFolder {
    root: PathBuf,
    bucket: String,
}

impl LocalFolder {
    /// Objects under `root`, recorded as bucket `bucket`.
    pub fn new(root: impl Into<PathBuf>, bucket: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            bucket: bucket.into(),
        }
    }

    /// Where the object of `key` lives.
    pub fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn sidecar(path: &Path) -> PathBuf {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".meta.json");
        path.with_file_name(name)
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StorageError {
    let message = format!("{what} {}: {e}", path.display());
    match e.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            StorageError::permanent("storage-denied", message)
        }
        _ => StorageError::transient("storage-io", message),
    }
}

#[async_trait]
impl ObjectBackend for LocalFolder {
    async fn ensure_bucket(&self, _spec: &BucketSpec) -> Result<BucketOutcome, StorageError> {
        if tokio::fs::metadata(&self.root)
            .await
            .is_ok_and(|m| m.is_dir())
        {
            return Ok(BucketOutcome::Exists);
        }
        tokio::fs::create_dir_all(&self.root)
            .await
            .map_err(|e| io("cannot create", &self.root, e))?;
        Ok(BucketOutcome::Created)
    }

    fn provider(&self) -> &'static str {
        "local"
    }

    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put(&self, req: &PutRequest<'_>) -> Result<ObjectInfo, StorageError> {
        let target = self.path_of(req.key);
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io("cannot create", &dir, e))?;
        let tmp = dir.join(format!(".{}.part", uuid::Uuid::new_v4().simple()));
        let copied = async {
            tokio::fs::copy(&req.file.path, &tmp)
                .await
                .map_err(|e| io("cannot write", &tmp, e))?;
            let f = tokio::fs::File::open(&tmp)
                .await
                .map_err(|e| io("cannot open", &tmp, e))?;
            f.sync_all().await.map_err(|e| io("cannot sync", &tmp, e))?;
            let sidecar = Self::sidecar(&target);
            let meta = json!({
                "content_type": req.content_type,
                "cache_control": req.cache_control,
                "etag": req.file.sha256,
                "size": req.file.size,
                "metadata": req.metadata,
            });
            tokio::fs::write(
                &sidecar,
                serde_json::to_vec_pretty(&meta).unwrap_or_default(),
            )
            .await
            .map_err(|e| io("cannot write", &sidecar, e))?;
            tokio::fs::rename(&tmp, &target)
                .await
                .map_err(|e| io("cannot move into place", &target, e))
        }
        .await;
        if copied.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        copied?;
        Ok(ObjectInfo {
            size: req.file.size,
            etag: Some(req.file.sha256.clone()),
        })
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let path = self.path_of(key);
        let meta = match tokio::fs::metadata(&path).await {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("cannot read", &path, e)),
        };
        let etag = tokio::fs::read(Self::sidecar(&path))
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["etag"].as_str().map(str::to_string));
        Ok(Some(ObjectInfo {
            size: meta.len(),
            etag,
        }))
    }
}
