//! Which store the configuration names: `STORAGE_URL` if set, else Supabase Storage with the
//! Supabase settings, else the local folder. Shared by `run`, the admin commands and `doctor`.

use std::sync::Arc;

use super::ObjectBackend;
use crate::config::{StorageSettings, Supabase};

/// The backend the settings name; the error names the setting that is wrong.
pub fn backend(
    storage: &StorageSettings,
    supabase: Option<&Supabase>,
) -> Result<Arc<dyn ObjectBackend>, String> {
    if let Some(url) = &storage.url {
        return Ok(if url.scheme() == "file" {
            let path = url
                .to_file_path()
                .map_err(|_| format!("STORAGE_URL={url}: not a local path"))?;
            Arc::new(super::local::LocalFolder::new(path, &storage.bucket))
        } else {
            Arc::new(super::object::ObjectStoreBackend::from_url(url)?)
        });
    }
    Ok(match supabase {
        Some(project) => Arc::new(super::supabase::SupabaseStorage::new(
            &project.url,
            project.key.clone(),
            &storage.bucket,
        )?),
        None => Arc::new(super::local::LocalFolder::new(
            &storage.dir,
            &storage.bucket,
        )),
    })
}
