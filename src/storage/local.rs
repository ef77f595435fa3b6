//! The local-folder backend, the embedded default: objects are files under
//! `{root}/{key}`, written to a temporary name beside the target and renamed into place
//! (a reader never sees half a file; a retry replaces, never duplicates), with a
//! `{key}.meta.json` sidecar holding content type, cache control, metadata and the etag.
//! Objects get the mode of any new file (`0o666` less the umask), not the owner-only mode of
//! the download, so a web server running as another user can serve the folder.
//!
//! Listing walks the folder and reports only objects: the sidecars, the `.{uuid}.part` files of
//! uploads in progress, symbolic links and anything that is not a regular file are skipped.
//! Deleting removes the object and its sidecar, then the folders it leaves empty, up to the
//! store's root and never the root itself. Listing, opening and deleting never follow a
//! symbolic link inside the store.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::TryStreamExt;
use serde_json::json;

use super::{
    BucketOutcome, BucketSpec, ListedObject, ObjectBackend, ObjectInfo, ObjectStream, PutRequest,
    StorageError, check_key, check_prefix,
};

/// Suffix of the sidecar beside each object.
const SIDECAR_SUFFIX: &str = ".meta.json";
/// Suffix of an upload in progress (`.{uuid}.part`, beside its target).
const PART_SUFFIX: &str = ".part";

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
    pub(crate) fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn sidecar(path: &Path) -> PathBuf {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(SIDECAR_SUFFIX);
        path.with_file_name(name)
    }

    /// What the sidecar of the object at `path` says, if it can be read.
    async fn sidecar_of(path: &Path) -> Option<serde_json::Value> {
        let bytes = tokio::fs::read(Self::sidecar(path)).await.ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The path of `key` if every folder on the way from the root is a real folder (not a
    /// symbolic link, which could lead out of the root); `None` otherwise or when missing.
    async fn inside(&self, key: &str) -> Result<Option<PathBuf>, StorageError> {
        let mut path = self.root.clone();
        let mut segments = key.split('/').peekable();
        while let Some(segment) = segments.next() {
            path.push(segment);
            if segments.peek().is_none() {
                break;
            }
            match tokio::fs::symlink_metadata(&path).await {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io("cannot read", &path, e)),
            }
        }
        Ok(Some(path))
    }

    /// Removes the folders from `dir` up to the root (excluded) while they are empty.
    async fn prune(&self, mut dir: &Path) {
        while dir != self.root && dir.starts_with(&self.root) {
            // Fails, and stops the walk, on the first folder that is not empty.
            if tokio::fs::remove_dir(dir).await.is_err() {
                return;
            }
            match dir.parent() {
                Some(parent) => dir = parent,
                None => return,
            }
        }
    }
}

/// Whether a file name is an object's (not a sidecar, not an upload in progress).
fn is_object_name(name: &str) -> bool {
    !(name.ends_with(SIDECAR_SUFFIX) || is_part_name(name))
}

/// Whether a file name is an upload's in progress (`.{uuid}.part`).
fn is_part_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(PART_SUFFIX)
}

/// The content type an object's extension implies, for objects without a sidecar.
pub(crate) fn content_type_of(key: &str) -> Option<&'static str> {
    let ext = key.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "m4a" => "audio/mp4",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "heic" => "image/heic",
        _ => return None,
    })
}

/// Copies the downloaded file (owner-only) to `to`, created as any new file is (`0o666` less
/// the umask: a web server running as another user can serve the folder), and syncs it.
async fn copy_shared(from: &Path, to: &Path) -> std::io::Result<()> {
    let (from, to) = (from.to_path_buf(), to.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let mut src = std::fs::File::open(&from)?;
        let mut dst = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&to)?;
        std::io::copy(&mut src, &mut dst)?;
        dst.sync_all()
    })
    .await
    .map_err(std::io::Error::other)?
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
        check_key(req.key)?;
        let target = self.path_of(req.key);
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io("cannot create", &dir, e))?;
        let tmp = dir.join(format!(".{}.part", uuid::Uuid::new_v4().simple()));
        let copied = async {
            copy_shared(&req.file.path, &tmp)
                .await
                .map_err(|e| io("cannot write", &tmp, e))?;
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
        check_key(key)?;
        let path = self.path_of(key);
        let meta = match tokio::fs::metadata(&path).await {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("cannot read", &path, e)),
        };
        if !meta.is_file() {
            return Ok(None);
        }
        let etag = Self::sidecar_of(&path)
            .await
            .and_then(|v| v["etag"].as_str().map(str::to_string));
        Ok(Some(ObjectInfo {
            size: meta.len(),
            etag,
        }))
    }

    /// Walks the folders from the root, entering only those whose keys can start with the
    /// prefix, and keeps the keys that start with it; sorted by key. A missing root lists
    /// nothing.
    async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, StorageError> {
        check_prefix(prefix)?;
        self.walk(prefix, is_object_name).await
    }

    /// The `.{uuid}.part` files of uploads that never finished (a worker killed mid-upload).
    async fn list_partial_uploads(&self) -> Result<Vec<ListedObject>, StorageError> {
        self.walk("", is_part_name).await
    }

    async fn delete(&self, key: &str) -> Result<bool, StorageError> {
        check_key(key)?;
        let Some(path) = self.inside(key).await? else {
            return Ok(false);
        };
        match tokio::fs::symlink_metadata(&path).await {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io("cannot read", &path, e)),
        }
        let existed = match tokio::fs::remove_file(&path).await {
            Ok(()) => true,
            // Deleted by someone else in between.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io("cannot delete", &path, e)),
        };
        let sidecar = Self::sidecar(&path);
        match tokio::fs::remove_file(&sidecar).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("cannot delete", &sidecar, e)),
        }
        if let Some(parent) = path.parent() {
            self.prune(parent).await;
        }
        Ok(existed)
    }

    /// The content type is the sidecar's (what the upload said), else the extension's.
    async fn open(&self, key: &str) -> Result<Option<ObjectStream>, StorageError> {
        let Some((file, size, content_type, path)) = self.open_file(key).await? else {
            return Ok(None);
        };
        let body = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024)
            .map_err(move |e| io("cannot read", &path, e));
        Ok(Some(ObjectStream {
            size: Some(size),
            content_type,
            body: Box::pin(body),
        }))
    }

    async fn open_range(
        &self,
        key: &str,
        start: u64,
        end: u64,
    ) -> Result<Option<ObjectStream>, StorageError> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let Some((mut file, size, content_type, path)) = self.open_file(key).await? else {
            return Ok(None);
        };
        if start > end || end >= size {
            return Err(StorageError::permanent(
                "bad-range",
                format!("bytes {start}-{end} of {} ({size} bytes)", path.display()),
            ));
        }
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| io("cannot read", &path, e))?;
        let len = end - start + 1;
        let body = tokio_util::io::ReaderStream::with_capacity(file.take(len), 64 * 1024)
            .map_err(move |e| io("cannot read", &path, e));
        Ok(Some(ObjectStream {
            size: Some(len),
            content_type,
            body: Box::pin(body),
        }))
    }
}

impl LocalFolder {
    /// The regular files under the root whose names pass `keep` and whose keys start with
    /// `prefix`, sorted by key; entering only the folders on the way to the prefix, or under
    /// it, and never following a symbolic link (it could lead out of the root).
    async fn walk(
        &self,
        prefix: &str,
        keep: fn(&str) -> bool,
    ) -> Result<Vec<ListedObject>, StorageError> {
        // From the root, level by level, so that no symbolic link is ever followed.
        let mut pending = vec![(self.root.clone(), String::new())];
        let mut found = Vec::new();
        while let Some((dir, key_prefix)) = pending.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io("cannot list", &dir, e)),
            };
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(|e| io("cannot list", &dir, e))?
            {
                // Names that are not UTF-8 were not written by this store.
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let key = format!("{key_prefix}{name}");
                // Never follows symbolic links: they could lead out of the root.
                let kind = match entry.file_type().await {
                    Ok(kind) => kind,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io("cannot list", &entry.path(), e)),
                };
                if kind.is_dir() {
                    // Only folders on the way to the prefix, or under it.
                    let folder_key = format!("{key}/");
                    if folder_key.starts_with(prefix) || prefix.starts_with(&folder_key) {
                        pending.push((entry.path(), folder_key));
                    }
                    continue;
                }
                if !kind.is_file() || !keep(&name) || !key.starts_with(prefix) {
                    continue;
                }
                let meta = match entry.metadata().await {
                    Ok(meta) => meta,
                    // Deleted or renamed since the folder was read.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io("cannot read", &entry.path(), e)),
                };
                found.push(ListedObject {
                    key,
                    size: meta.len(),
                    last_modified: meta.modified().ok().map(chrono::DateTime::from),
                });
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }
}

impl LocalFolder {
    /// The object's file opened for reading, with its size (of the file opened, even if a
    /// retry renames a new one into place meanwhile), content type and path.
    async fn open_file(
        &self,
        key: &str,
    ) -> Result<Option<(tokio::fs::File, u64, Option<String>, PathBuf)>, StorageError> {
        check_key(key)?;
        let Some(path) = self.inside(key).await? else {
            return Ok(None);
        };
        match tokio::fs::symlink_metadata(&path).await {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("cannot read", &path, e)),
        }
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("cannot open", &path, e)),
        };
        let meta = file
            .metadata()
            .await
            .map_err(|e| io("cannot read", &path, e))?;
        if !meta.is_file() {
            return Ok(None);
        }
        let content_type = Self::sidecar_of(&path)
            .await
            .and_then(|v| v["content_type"].as_str().map(str::to_string))
            .or_else(|| content_type_of(key).map(str::to_string));
        Ok(Some((file, meta.len(), content_type, path)))
    }
}
