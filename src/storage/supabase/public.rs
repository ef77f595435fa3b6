//! Public object URLs (`{SUPABASE_URL}/storage/v1/object/public/{bucket}/{key}`), which
//! download an object of a public bucket without a key and never expire.
//!
//! Whether the bucket is public is asked once (`GET /bucket/{id}`, contract §2: the bucket
//! row with its `public` flag) and kept for the process: a bucket made public or private
//! later is seen after a restart.

use serde::Deserialize;

use super::{StorageError, SupabaseStorage, check_key};

/// The part of the bucket row this needs.
#[derive(Deserialize)]
struct BucketRow {
    #[serde(default)]
    public: bool,
}

impl SupabaseStorage {
    /// The object's public URL when the bucket is public, else `None`.
    pub(super) async fn public_object_url(
        &self,
        key: &str,
    ) -> Result<Option<String>, StorageError> {
        check_key(key)?;
        if !self.bucket_is_public().await? {
            return Ok(None);
        }
        Ok(Some(self.object_url("object/public", key).to_string()))
    }

    /// Whether the bucket is public, asked once.
    async fn bucket_is_public(&self) -> Result<bool, StorageError> {
        self.public
            .get_or_try_init(|| async {
                let url = self.url(&format!("bucket/{}", self.bucket));
                let row: BucketRow = self
                    .call(self.client.get(url))
                    .await?
                    .json()
                    .await
                    .map_err(|e| {
                        StorageError::transient("storage-error", format!("bucket row: {e}"))
                    })?;
                Ok(row.public)
            })
            .await
            .copied()
    }
}
