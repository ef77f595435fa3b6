//! Downloads: limits and timeouts of the media transfer.

use std::time::Duration;

use clap::Args;

use super::ConfigError;
use super::field::{Fields, field};

/// `MAX_VIDEO_BYTES`, `DOWNLOAD_CONNECT_TIMEOUT_SECONDS`, `DOWNLOAD_IDLE_TIMEOUT_SECONDS`,
/// `DOWNLOAD_TIMEOUT_SECONDS`, `DOWNLOAD_MAX_RESUMES`.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Shared settings: Download")]
pub struct DownloadArgs {
    /// Largest media file accepted, in bytes.
    #[arg(
        long,
        env = "MAX_VIDEO_BYTES",
        global = true,
        value_name = "BYTES",
        default_value = "2147483648"
    )]
    pub max_video_bytes: Option<String>,

    /// Connect timeout of downloads, in seconds.
    #[arg(
        long,
        env = "DOWNLOAD_CONNECT_TIMEOUT_SECONDS",
        global = true,
        value_name = "S",
        default_value = "10"
    )]
    pub download_connect_timeout_seconds: Option<String>,

    /// A download with no byte for this many seconds is resumed.
    #[arg(
        long,
        env = "DOWNLOAD_IDLE_TIMEOUT_SECONDS",
        global = true,
        value_name = "S",
        default_value = "30"
    )]
    pub download_idle_timeout_seconds: Option<String>,

    /// Longest time for one whole download, in seconds.
    #[arg(
        long,
        env = "DOWNLOAD_TIMEOUT_SECONDS",
        global = true,
        value_name = "S",
        default_value = "3600"
    )]
    pub download_timeout_seconds: Option<String>,

    /// Resumes of one download after dropped connections, per mirror.
    #[arg(
        long,
        env = "DOWNLOAD_MAX_RESUMES",
        global = true,
        value_name = "N",
        default_value = "5"
    )]
    pub download_max_resumes: Option<String>,
}

/// The download settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadSettings {
    /// Largest media file.
    pub max_video_bytes: u64,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes.
    pub idle_timeout: Duration,
    /// Longest time for one whole download.
    pub total_timeout: Duration,
    /// Resumes per mirror.
    pub max_resumes: u32,
}

impl DownloadArgs {
    /// The download settings.
    pub(crate) fn resolve(&self, f: &Fields) -> Result<DownloadSettings, ConfigError> {
        Ok(DownloadSettings {
            max_video_bytes: field!(f, self.max_video_bytes).number(1, u64::MAX / 2)?,
            connect_timeout: field!(f, self.download_connect_timeout_seconds).seconds(1, 600)?,
            idle_timeout: field!(f, self.download_idle_timeout_seconds).seconds(1, 3600)?,
            total_timeout: field!(f, self.download_timeout_seconds).seconds(1, 7 * 86_400)?,
            max_resumes: field!(f, self.download_max_resumes).number(0, 1000)?,
        })
    }
}

impl Default for DownloadSettings {
    /// The declared defaults (what an empty command line and environment give).
    fn default() -> Self {
        DownloadArgs::default()
            .resolve(&Fields::default())
            .expect("the declared defaults are valid")
    }
}
