//! Logging with `tracing`: human-readable lines by default, JSON with `LOG_FORMAT=json`;
//! `DEBUG=true` raises the level; `RUST_LOG` overrides both. Every line passes through
//! `crate::redact::scrub` on its way out, so no configured secret reaches the log whatever
//! logged it (a dependency's debug line included).

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
        .with_writer(Scrubbed(sink));
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
pub(crate) fn init<W>(format: LogFormat, debug: bool, ansi: bool, sink: W) -> bool
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing::subscriber::set_global_default(subscriber(format, filter(debug), ansi, sink)).is_ok()
}

/// A [`MakeWriter`] whose writers scrub the registered secrets out of each line. The fmt
/// layer writes an event in one `write`, so a secret is never split between two.
pub(crate) struct Scrubbed<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Scrubbed<M> {
    type Writer = ScrubbingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbingWriter(self.0.make_writer())
    }
}

/// The writer of [`Scrubbed`].
pub(crate) struct ScrubbingWriter<W>(W);

impl<W: std::io::Write> std::io::Write for ScrubbingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Ok(text) = std::str::from_utf8(buf) else {
            return self.0.write(buf);
        };
        match crate::redact::scrub(text) {
            std::borrow::Cow::Borrowed(_) => self.0.write_all(buf)?,
            std::borrow::Cow::Owned(clean) => self.0.write_all(clean.as_bytes())?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Sink {
        type Writer = Sink;
        fn make_writer(&'a self) -> Sink {
            self.clone()
        }
    }

    #[test]
    fn no_registered_secret_reaches_a_log_line_in_either_format() {
        crate::redact::register("sb_secret_logged_by_mistake_123");
        crate::redact::register_cookie("sessionid=cookie-value-in-a-log; ttwid=x");
        for format in [LogFormat::Text, LogFormat::Json] {
            let sink = Sink::default();
            let subscriber = subscriber(format, EnvFilter::new("debug"), false, sink.clone());
            tracing::subscriber::with_default(subscriber, || {
                tracing::debug!(
                    header = "Bearer sb_secret_logged_by_mistake_123",
                    "upstream said: Cookie: sessionid=cookie-value-in-a-log"
                );
            });
            let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
            assert!(out.contains("upstream said"), "{format:?}: {out}");
            assert!(
                !out.contains("sb_secret_logged_by_mistake_123"),
                "{format:?}: {out}"
            );
            assert!(!out.contains("cookie-value-in-a-log"), "{format:?}: {out}");
            assert_eq!(
                out.matches(crate::redact::REDACTED).count(),
                2,
                "{format:?}: {out}"
            );
        }
    }
}
