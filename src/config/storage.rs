//! Storage: where stored videos go (an object store, Supabase Storage or a local folder), how
//! their keys are made, and how a bucket the worker creates is set up.

use std::path::{Path, PathBuf};

use clap::Args;
use url::Url;

use super::ConfigError;
use super::field::{Fields, field};

/// The object key template unless `OBJECT_KEY_TEMPLATE` says otherwise.
pub const DEFAULT_KEY_TEMPLATE: &str = "{douyin_id}/{douyin_id}.{ext}";

/// The cover's key template unless `COVER_KEY_TEMPLATE` says otherwise: beside the video.
pub const DEFAULT_COVER_KEY_TEMPLATE: &str = "{douyin_id}/{douyin_id}_cover.{ext}";

/// `STORAGE_URL`, `STORAGE_BUCKET`, `STORAGE_DIR`, `OBJECT_KEY_TEMPLATE`, `STORAGE_PUBLIC`,
/// `STORAGE_FILE_SIZE_LIMIT`, `STORAGE_ALLOWED_MIME_TYPES`, `CACHE_CONTROL_SECONDS`,
/// `STORE_COVERS`, `COVER_KEY_TEMPLATE`.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Shared settings: Storage")]
pub struct StorageArgs {
    /// Object store instead of Supabase Storage or the local folder: `s3://BUCKET` (settings
    /// from the AWS_* variables), `gs://BUCKET`, `az://CONTAINER` or `file:///path`.
    #[arg(long, env = "STORAGE_URL", global = true, value_name = "URL")]
    pub storage_url: Option<String>,

    /// Storage bucket (Supabase Storage) or folder name of the local store.
    #[arg(
        long,
        env = "STORAGE_BUCKET",
        global = true,
        value_name = "NAME",
        default_value = "videos"
    )]
    pub storage_bucket: Option<String>,

    /// Folder of the local store [default: DATA_DIR/STORAGE_BUCKET].
    #[arg(long, env = "STORAGE_DIR", global = true, value_name = "DIR")]
    pub storage_dir: Option<String>,

    /// Object key template with {douyin_id}, {video_id}, {ext}.
    #[arg(
        long,
        env = "OBJECT_KEY_TEMPLATE",
        global = true,
        value_name = "TEMPLATE",
        default_value = DEFAULT_KEY_TEMPLATE
    )]
    pub object_key_template: Option<String>,

    /// A bucket created by the worker is public (readable without a key).
    #[arg(
        long,
        env = "STORAGE_PUBLIC",
        global = true,
        value_name = "BOOL",
        default_value = "true",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub storage_public: Option<String>,

    /// File size limit of a bucket created by the worker, in bytes [default: MAX_VIDEO_BYTES]
    /// (Supabase Storage: none of its own when the project's upload limit is lower).
    #[arg(
        long,
        env = "STORAGE_FILE_SIZE_LIMIT",
        global = true,
        value_name = "BYTES"
    )]
    pub storage_file_size_limit: Option<String>,

    /// Content types a bucket created by the worker accepts, comma-separated.
    #[arg(
        long,
        env = "STORAGE_ALLOWED_MIME_TYPES",
        global = true,
        value_name = "TYPES",
        default_value = "video/mp4,video/quicktime,audio/mp4,audio/mpeg,image/jpeg,image/png,image/webp,image/heic"
    )]
    pub storage_allowed_mime_types: Option<String>,

    /// Cache lifetime of stored objects, in seconds.
    #[arg(
        long,
        env = "CACHE_CONTROL_SECONDS",
        global = true,
        value_name = "S",
        default_value = "3600"
    )]
    pub cache_control_seconds: Option<String>,

    /// Store each video's cover picture beside it and point the row's thumbnail at it.
    #[arg(
        long,
        env = "STORE_COVERS",
        global = true,
        value_name = "BOOL",
        default_value = "true",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub store_covers: Option<String>,

    /// Object key template of covers, with {douyin_id}, {video_id}, {ext}.
    #[arg(
        long,
        env = "COVER_KEY_TEMPLATE",
        global = true,
        value_name = "TEMPLATE",
        default_value = DEFAULT_COVER_KEY_TEMPLATE
    )]
    pub cover_key_template: Option<String>,
}

/// How a bucket the worker creates is set up (`STORAGE_PUBLIC`, `STORAGE_FILE_SIZE_LIMIT`,
/// `STORAGE_ALLOWED_MIME_TYPES`); what the stores' `ensure_bucket` takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BucketSpec {
    /// Readable without a key.
    pub public: bool,
    /// Largest object, in bytes.
    pub file_size_limit: Option<u64>,
    /// Content types accepted (`type/subtype` or `type/*`).
    pub allowed_mime_types: Vec<String>,
}

/// The storage settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageSettings {
    /// Object store URL (`s3://`, `gs://`, `az://`, `file://`).
    pub url: Option<Url>,
    /// Bucket name.
    pub bucket: String,
    /// Local store folder.
    pub dir: PathBuf,
    /// Object key template; checked by `storage::check_key_template` (storage owns
    /// the key rules).
    pub key_template: String,
    /// Cache lifetime of stored objects, in seconds.
    pub cache_control_seconds: u64,
    /// How a bucket the worker creates is set up.
    pub bucket_spec: BucketSpec,
    /// Store each video's cover (`STORE_COVERS`).
    pub store_covers: bool,
    /// The covers' key template (`COVER_KEY_TEMPLATE`); checked like `key_template`.
    pub cover_key_template: String,
}

impl StorageArgs {
    /// The storage settings; the local store defaults to `data_dir/BUCKET`, a bucket's size
    /// limit to `max_video_bytes`.
    pub(crate) fn resolve(
        &self,
        f: &Fields,
        data_dir: &Path,
        max_video_bytes: u64,
    ) -> Result<StorageSettings, ConfigError> {
        let bucket_f = field!(f, self.storage_bucket);
        let bucket = bucket_f.present().unwrap_or("videos").to_string();
        if bucket.len() > 63
            || !bucket
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(
                bucket_f.fail("expected a bucket name of letters, digits, '-', '_' and '.'")
            );
        }
        let mime_f = field!(f, self.storage_allowed_mime_types);
        let allowed_mime_types: Vec<String> = mime_f
            .present()
            .unwrap_or_default()
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        if allowed_mime_types.iter().any(|t| {
            t.split_once('/')
                .is_none_or(|(a, b)| a.is_empty() || b.is_empty())
        }) {
            return Err(mime_f.fail("expected type/subtype entries separated by commas"));
        }
        let url_f = field!(f, self.storage_url);
        let url = match url_f.given() {
            None => None,
            Some(raw) => {
                let url = Url::parse(raw)
                    .map_err(|e| url_f.fail(format_args!("not a valid URL ({e})")))?;
                check_storage_url(&url).map_err(|why| url_f.fail(why))?;
                Some(url)
            }
        };
        Ok(StorageSettings {
            url,
            dir: field!(f, self.storage_dir)
                .given()
                .map(PathBuf::from)
                .unwrap_or_else(|| data_dir.join(&bucket)),
            bucket,
            key_template: field!(f, self.object_key_template)
                .present()
                .unwrap_or_default()
                .to_string(),
            cache_control_seconds: field!(f, self.cache_control_seconds).number(0, 31_536_000)?,
            bucket_spec: BucketSpec {
                public: field!(f, self.storage_public).boolean()?,
                file_size_limit: Some(field!(f, self.storage_file_size_limit).number_or(
                    max_video_bytes,
                    1,
                    u64::MAX / 2,
                )?),
                allowed_mime_types,
            },
            store_covers: field!(f, self.store_covers).boolean()?,
            cover_key_template: field!(f, self.cover_key_template)
                .present()
                .unwrap_or_default()
                .to_string(),
        })
    }
}

/// Checks the form of a `STORAGE_URL`: `s3://BUCKET`, `gs://BUCKET`, `az://CONTAINER` (also
/// `azure://`, and `abfs[s]://CONTAINER@ACCOUNT.dfs.core.windows.net`) or `file:///PATH`. The
/// credentials are the object store's own variables, read when the store is built.
fn check_storage_url(url: &Url) -> Result<(), &'static str> {
    let host = url.host_str().unwrap_or("");
    let no_path = || {
        if url.path().trim_matches('/').is_empty() && url.query().is_none() {
            Ok(())
        } else {
            Err("a path after the bucket is not supported (OBJECT_KEY_TEMPLATE sets the keys)")
        }
    };
    match url.scheme() {
        "s3" | "s3a" if !host.is_empty() => Ok(()),
        "s3" | "s3a" => Err("expected s3://BUCKET"),
        "file" => Ok(()),
        "gs" => {
            // Bucket names: 3 to 222 characters, lower-case letters, digits, `-`, `_`, `.`.
            let ok = (3..=222).contains(&host.len())
                && host
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
            if !ok {
                return Err("expected gs://BUCKET (3 to 222 characters: a-z, 0-9, -, _, .)");
            }
            no_path()
        }
        "az" | "azure" | "abfs" | "abfss" => {
            // abfs[s]://CONTAINER@ACCOUNT.dfs.core.windows.net names the account too.
            let container = if url.username().is_empty() {
                host
            } else {
                url.username()
            };
            // Container names: 3 to 63 characters, lower-case letters, digits and `-`.
            let ok = (3..=63).contains(&container.len())
                && container
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(
                    "expected az://CONTAINER (3 to 63 characters: a-z, 0-9, -; the account is \
                     AZURE_STORAGE_ACCOUNT_NAME)",
                );
            }
            no_path()
        }
        _ => Err("expected s3://BUCKET, gs://BUCKET, az://CONTAINER or file:///PATH"),
    }
}
