//! Extraction: how a Douyin link becomes a media URL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::field::{Fields, field};
use super::{ConfigError, Secret};

/// `DOUYIN_COOKIE`, `PREFER_H264`, `EXTRACT_TIMEOUT_SECONDS`, `IMAGE_POSTS`, `DRIFT_DIR`.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Shared settings: Extraction")]
pub struct ExtractArgs {
    /// A browser cookie string sent to Douyin hosts only (helps when Douyin asks for a
    /// captcha). Never logged.
    #[arg(
        long,
        env = "DOUYIN_COOKIE",
        global = true,
        value_name = "COOKIE",
        hide_env_values = true
    )]
    pub douyin_cookie: Option<String>,

    /// Prefer H.264 over H.265 when both exist (true/false).
    #[arg(
        long,
        env = "PREFER_H264",
        global = true,
        value_name = "BOOL",
        default_value = "true",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub prefer_h264: Option<String>,

    /// Timeout of one request to Douyin, in seconds.
    #[arg(
        long,
        env = "EXTRACT_TIMEOUT_SECONDS",
        global = true,
        value_name = "S",
        default_value = "15"
    )]
    pub extract_timeout_seconds: Option<String>,

    /// Image posts (photo slideshows): `refuse` (the job fails for good with "image post (N
    /// images)") or `store` (the pictures, live photos' motion and the soundtrack).
    #[arg(
        long,
        env = "IMAGE_POSTS",
        global = true,
        value_name = "POLICY",
        default_value = "refuse"
    )]
    pub image_posts: Option<String>,

    /// Where Douyin's answers in a shape no parser knows are kept for the fix (secrets and
    /// cookie values removed; one per strategy per hour, at most 100 files), or `off`
    /// [default: DATA_DIR/drift].
    #[arg(long, env = "DRIFT_DIR", global = true, value_name = "DIR")]
    pub drift_dir: Option<String>,
}

/// What to do with image posts (`IMAGE_POSTS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ImagePolicy {
    /// Fail the job permanently with "image post (N images)".
    #[default]
    Refuse,
    /// Store the pictures (and live photos' motion) and the soundtrack.
    Store,
}

/// The extraction settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtractSettings {
    /// Cookie for Douyin hosts.
    pub douyin_cookie: Option<Secret>,
    /// Prefer H.264.
    pub prefer_h264: bool,
    /// Timeout of one request to Douyin.
    pub timeout: Duration,
    /// What to do with image posts.
    pub image_posts: ImagePolicy,
    /// Where drift answers are kept.
    pub drift_dir: DriftDir,
}

/// Where drift answers are kept (`DRIFT_DIR`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum DriftDir {
    /// `DATA_DIR/drift`.
    #[default]
    InDataDir,
    /// This folder.
    At(PathBuf),
    /// Nowhere (`off`).
    Off,
}

impl DriftDir {
    /// The folder, given the data folder.
    pub fn folder(&self, data_dir: &Path) -> Option<PathBuf> {
        match self {
            DriftDir::InDataDir => Some(data_dir.join("drift")),
            DriftDir::At(dir) => Some(dir.clone()),
            DriftDir::Off => None,
        }
    }
}

impl ExtractArgs {
    /// The extraction settings; the cookie's values are registered as secrets.
    pub(crate) fn resolve(&self, f: &Fields) -> Result<ExtractSettings, ConfigError> {
        let douyin_cookie = field!(f, self.douyin_cookie).given().map(|c| {
            crate::redact::register_cookie(c);
            Secret::new(c)
        });
        let images_f = field!(f, self.image_posts);
        let image_posts = match images_f.one_of(&["refuse", "store"])?.as_str() {
            "store" => ImagePolicy::Store,
            _ => ImagePolicy::Refuse,
        };
        let drift_dir = match field!(f, self.drift_dir).present() {
            None => DriftDir::InDataDir,
            Some(v) if v.eq_ignore_ascii_case("off") => DriftDir::Off,
            Some(v) => DriftDir::At(PathBuf::from(v)),
        };
        Ok(ExtractSettings {
            douyin_cookie,
            prefer_h264: field!(f, self.prefer_h264).boolean()?,
            timeout: field!(f, self.extract_timeout_seconds).seconds(1, 600)?,
            image_posts,
            drift_dir,
        })
    }
}

impl Default for ExtractSettings {
    /// The declared defaults (what an empty command line and environment give).
    fn default() -> Self {
        ExtractArgs::default()
            .resolve(&Fields::default())
            .expect("the declared defaults are valid")
    }
}
