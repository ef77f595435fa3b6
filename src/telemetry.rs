//! Logging with `tracing`: human-readable lines by default, JSON with `LOG_FORMAT=json`;
//! `DEBUG=true` raises the level; `RUST_LOG` overrides both.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// The filter: `RUST_LOG` if set, else `info` (or `debug` for this crate with `debug`).
pub fn filter(debug: bool) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        if debug {
            EnvFilter::new("info,douyin_worker=debug")
        } else {
            EnvFilter::new("info,sqlx=warn")
        }
    })
}

/// Installs the global subscriber writing to `sink`. Returns false if one was already set.
/// Colours are used only when `ansi` (e.g. stderr is a terminal).
pub fn init<W>(format: LogFormat, debug: bool, ansi: bool, sink: W) -> bool
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(debug))
        .with_ansi(ansi)
        .with_writer(sink);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
            .is_ok(),
        LogFormat::Text => builder.with_target(debug).try_init().is_ok(),
    }
}
