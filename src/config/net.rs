//! The network rules of the stages that fetch for a job (extraction and download): the
//! `DOUYIN_UPSTREAM` stand-in and the public-address guard.

use clap::Args;
use url::Url;

use super::ConfigError;
use super::field::{Fields, field};

/// `DOUYIN_UPSTREAM`, `ALLOW_PRIVATE_NETWORKS`.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Shared settings: Network")]
pub struct NetArgs {
    /// Testing aid: send every request to a Douyin host to `{URL}/{host}{path}` instead (a
    /// local fixture server).
    #[arg(long, env = "DOUYIN_UPSTREAM", global = true, value_name = "URL")]
    pub douyin_upstream: Option<String>,

    /// Let requests reach private, loopback and link-local addresses (tests only).
    #[arg(
        long,
        env = "ALLOW_PRIVATE_NETWORKS",
        global = true,
        value_name = "BOOL",
        default_value = "false",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub allow_private_networks: Option<String>,
}

/// The network settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetSettings {
    /// Where Douyin requests go instead of Douyin (tests).
    pub douyin_upstream: Option<Url>,
    /// The public-address guard is lifted.
    pub allow_private_networks: bool,
}

impl NetArgs {
    /// The network settings.
    pub(crate) fn resolve(&self, f: &Fields) -> Result<NetSettings, ConfigError> {
        Ok(NetSettings {
            douyin_upstream: field!(f, self.douyin_upstream).http_url()?,
            allow_private_networks: field!(f, self.allow_private_networks).boolean()?,
        })
    }
}

impl Default for NetSettings {
    /// The declared defaults (what an empty command line and environment give).
    fn default() -> Self {
        NetArgs::default()
            .resolve(&Fields::default())
            .expect("the declared defaults are valid")
    }
}
