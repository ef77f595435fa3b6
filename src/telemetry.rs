//! Logging with `tracing`: human-readable lines by default, JSON with `LOG_FORMAT=json`;
//! `DEBUG=true` raises the level; `RUST_LOG` overrides both.

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// The filter: `RUST_LOG` if set, else `info` (or `debug` for this crate with `debug`).
/// chromiumoxide is kept to errors: it warns about every DevTools event newer than its
/// protocol definitions, which is harmless.
pub fn filter(debug: bool) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        if debug {
            EnvFilter::new("info,douyin_worker=debug,chromiumoxide=error")
        } else {
            EnvFilter::new("info,sqlx=warn,chromiumoxide=error")
        }
    })
}

/// The subscriber the binary installs, writing to `sink`; colours only when `ansi`. In JSON
/// each line carries the fields of the current span, so a line logged inside a job names the
/// job, its video and its Douyin id.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    ansi: bool,
    sink: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(sink);
    match format {
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
        LogFormat::Text => Box::new(builder.finish()),
    }
}

/// Installs [`subscriber`] globally. Returns false if one was already set.
pub fn init<W>(format: LogFormat, debug: bool, ansi: bool, sink: W) -> bool
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing::subscriber::set_global_default(subscriber(format, filter(debug), ansi, sink)).is_ok()
}
