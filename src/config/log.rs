//! Logging: the level and the format.

use clap::Args;

use super::ConfigError;
use super::field::{Fields, field};

/// `DEBUG`, `LOG_FORMAT`.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Shared settings: Logging")]
pub struct LogArgs {
    /// Debug logging (true/false).
    #[arg(
        long,
        env = "DEBUG",
        global = true,
        value_name = "BOOL",
        default_value = "false",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub debug: Option<String>,

    /// Log format: `text` or `json` (one object per line).
    #[arg(
        long,
        env = "LOG_FORMAT",
        global = true,
        value_name = "FORMAT",
        default_value = "text"
    )]
    pub log_format: Option<String>,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The logging settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogSettings {
    /// Debug logging.
    pub debug: bool,
    /// The format.
    pub format: LogFormat,
}

impl LogArgs {
    /// The logging settings.
    pub(crate) fn resolve(&self, f: &Fields) -> Result<LogSettings, ConfigError> {
        let format_f = field!(f, self.log_format);
        let format = match format_f
            .one_of(&["text", "pretty", "json"])
            .map_err(|_| format_f.fail("expected text or json"))?
            .as_str()
        {
            "json" => LogFormat::Json,
            _ => LogFormat::Text,
        };
        Ok(LogSettings {
            debug: field!(f, self.debug).boolean()?,
            format,
        })
    }
}
