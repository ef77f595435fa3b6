//! The headless-browser strategy (the last of the extraction chain).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::ConfigError;
use super::field::{Fields, field};

/// `BROWSER_ENABLED`, `CHROMIUM_PATH`, `BROWSER_MAX_PAGES`, `BROWSER_TIMEOUT_SECONDS`.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Shared settings: Browser strategy")]
pub struct BrowserArgs {
    /// The Chromium (or Chrome) executable of the browser strategy [default: `chromium`,
    /// `chromium-browser` or `google-chrome` on PATH].
    #[arg(long, env = "CHROMIUM_PATH", global = true, value_name = "PATH")]
    pub chromium_path: Option<String>,

    /// Use the headless-browser strategy when the HTTP strategies fail [default: true when
    /// built with the `browser` feature].
    #[arg(
        long,
        env = "BROWSER_ENABLED",
        global = true,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub browser_enabled: Option<String>,

    /// Pages one browser serves before it is restarted.
    #[arg(
        long,
        env = "BROWSER_MAX_PAGES",
        global = true,
        value_name = "N",
        default_value = "200"
    )]
    pub browser_max_pages: Option<String>,

    /// Time one browser extraction may take, in seconds.
    #[arg(
        long,
        env = "BROWSER_TIMEOUT_SECONDS",
        global = true,
        value_name = "S",
        default_value = "30"
    )]
    pub browser_timeout_seconds: Option<String>,
}

/// The browser strategy's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrowserSettings {
    /// The strategy is used.
    pub enabled: bool,
    /// The browser executable, if set (else searched on PATH).
    pub chromium_path: Option<PathBuf>,
    /// Pages per browser launch.
    pub max_pages: u32,
    /// Time one browser extraction may take.
    pub timeout: Duration,
    /// `BROWSER_ENABLED=true` was given: the operator counts on the browser, so `doctor`
    /// counts a missing one as a failure (`run` still goes on without it).
    pub required: bool,
}

impl BrowserArgs {
    /// The browser strategy's settings.
    pub(crate) fn resolve(&self, f: &Fields) -> Result<BrowserSettings, ConfigError> {
        let enabled_f = field!(f, self.browser_enabled);
        let enabled = enabled_f.boolean_or(cfg!(feature = "browser"))?;
        Ok(BrowserSettings {
            enabled,
            required: enabled && enabled_f.given().is_some(),
            chromium_path: field!(f, self.chromium_path).given().map(PathBuf::from),
            max_pages: field!(f, self.browser_max_pages).number(1, 1_000_000)?,
            timeout: field!(f, self.browser_timeout_seconds).seconds(1, 600)?,
        })
    }
}

impl Default for BrowserSettings {
    /// The declared defaults (what an empty command line and environment give).
    fn default() -> Self {
        BrowserArgs::default()
            .resolve(&Fields::default())
            .expect("the declared defaults are valid")
    }
}
