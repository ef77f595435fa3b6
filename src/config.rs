//! Configuration: every setting from a flag, else an environment variable (a `.env` file in
//! the working directory is read first), else its default; validated at start-up.
//!
//! The old worker's variables keep their names, units and defaults (`SUPABASE_URL`,
//! `SUPABASE_SERVICE_ROLE_KEY`, `WORKER_ID`, `MAX_CONCURRENT`, `POLL_INTERVAL` in ms,
//! `DEBUG`). The settings come in groups, one file each, and each stage takes its group:
//! [`supabase`], [`queue`], [`worker`], [`extract`], [`browser`], [`net`], [`download`],
//! [`storage`], [`http`], [`log`]. A group declares each setting once, as a clap argument
//! with its variable, flag and default (which `--help` prints), and resolves the raw strings
//! so that an error names where the bad value came from: `MAX_CONCURRENT=abc: ...` for a
//! variable, `--max-concurrent=abc: ...` for a flag. Secrets are never echoed. Adding a
//! setting: its argument, its field and its line in `resolve`, in its group's file.

use std::fmt;

use clap::ArgMatches;
use url::Url;

pub mod browser;
pub mod database_url;
pub mod download;
pub mod env_file;
pub mod events;
pub mod extract;
mod field;
pub mod http;
pub mod log;
pub mod net;
pub mod queue;
mod settings;
mod size;
pub mod storage;
pub mod supabase;
pub mod worker;

pub use browser::BrowserSettings;
pub use download::DownloadSettings;
pub use events::EventsSettings;
pub use extract::{DriftDir, ExtractSettings, ImagePolicy};
pub use http::HttpSettings;
pub use log::{LogFormat, LogSettings};
pub use net::NetSettings;
pub use queue::{DbPooler, QueueBackend, QueueSettings};
pub use settings::RawSettings;
pub use storage::{BucketSpec, StorageSettings};
pub use supabase::Supabase;
pub use worker::{WorkerSettings, default_worker_id};

use field::Fields;

/// A configuration value that must not be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret, and registers it so that `crate::redact::scrub` keeps it out of any
    /// upstream text that is logged or stored.
    pub fn new(s: impl Into<String>) -> Self {
        let s = s.into();
        crate::redact::register(&s);
        Self(s)
    }

    /// Wraps a URL that holds a secret (`DATABASE_URL`): only its password and password-like
    /// query parameters are registered for scrubbing, so the rest of it can be shown.
    pub fn url(s: impl Into<String>) -> Self {
        let s = s.into();
        crate::redact::register_url_password(&s);
        Self(s)
    }

    /// The secret itself, for the one place that needs it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The validated configuration, in groups.
#[derive(Clone, Debug)]
pub struct Config {
    /// The Supabase project, if one is configured.
    pub supabase: Option<Supabase>,
    /// Where the queue lives.
    pub queue: QueueSettings,
    /// The worker loop.
    pub worker: WorkerSettings,
    /// Extraction.
    pub extract: ExtractSettings,
    /// The browser strategy.
    pub browser: BrowserSettings,
    /// The network rules of extraction and download.
    pub net: NetSettings,
    /// Downloads.
    pub download: DownloadSettings,
    /// Storage.
    pub storage: StorageSettings,
    /// The HTTP server and the download API.
    pub http: HttpSettings,
    /// The download API's events streams.
    pub events: EventsSettings,
    /// Logging.
    pub log: LogSettings,
}

/// A setting that failed validation; the message names the variable or flag and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ConfigError(pub String);

impl Config {
    /// Validates the raw settings. `matches` tells whether each came from a flag or from the
    /// environment, for the error message; without it, variables are named.
    pub(crate) fn resolve(
        raw: &RawSettings,
        matches: Option<&ArgMatches>,
    ) -> Result<Self, ConfigError> {
        let f = Fields::new(matches);
        let supabase = raw.supabase.resolve(&f)?;
        let worker = raw.worker.resolve(&f)?;
        let queue = raw
            .queue
            .resolve(&f, supabase.is_some(), worker.max_concurrent)?;
        let download = raw.download.resolve(&f)?;
        let storage = raw
            .storage
            .resolve(&f, &queue.data_dir, download.max_video_bytes)?;
        Ok(Config {
            extract: raw.extract.resolve(&f)?,
            browser: raw.browser.resolve(&f)?,
            net: raw.net.resolve(&f)?,
            http: raw.http.resolve(&f)?,
            events: raw.events.resolve(&f)?,
            log: raw.log.resolve(&f)?,
            supabase,
            queue,
            worker,
            download,
            storage,
        })
    }

    /// The settings worth logging at start-up, without secrets.
    pub fn summary(&self) -> String {
        let queue = match &self.queue.backend {
            QueueBackend::Postgres { url } => format!(
                "postgres {} pooler={}",
                redact_url(url.expose()),
                self.queue.db_pooler.as_str()
            ),
            QueueBackend::Supabase => format!(
                "supabase {}",
                self.supabase
                    .as_ref()
                    .map(|s| s.url.as_str())
                    .unwrap_or("?")
            ),
            QueueBackend::Sqlite { path } => format!("sqlite {}", path.display()),
        };
        let w = &self.worker;
        format!(
            "queue={queue} worker_id={} max_concurrent={} poll_interval={}ms lease={}s \
             max_attempts={} retry_base={}s retry_max={}s shutdown_grace={}s temp_dir={} min_free_disk={}",
            w.worker_id,
            w.max_concurrent,
            w.poll_interval.as_millis(),
            w.lease.as_secs(),
            w.max_attempts,
            w.retry_base.as_secs(),
            w.retry_max.as_secs(),
            w.shutdown_grace.as_secs(),
            w.temp_dir.display(),
            w.min_free_disk
        )
    }
}

/// A URL with its password, and the values of its query parameters, replaced by `***`
/// (`?password=` and `?sslpassword=` are secrets too); only `sslmode` and `pgbouncer` show.
pub(crate) fn redact_url(s: &str) -> String {
    match Url::parse(s) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            if url.query().is_some() {
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(k, v)| {
                        let shown = matches!(k.as_ref(), "sslmode" | "ssl-mode" | "pgbouncer");
                        let v = if shown { v.into_owned() } else { "***".into() };
                        (k.into_owned(), v)
                    })
                    .collect();
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
            url.to_string()
        }
        Err(_) => "<unparsable URL>".into(),
    }
}

#[cfg(test)]
mod tests;
